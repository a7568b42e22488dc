"""Perception: ground truth after an edit (labels.py), change-mask localisation (localize.py), benchmark
exports (export.py) and detector evaluation (evaluate.py). Weight-free: nothing here loads a model."""
