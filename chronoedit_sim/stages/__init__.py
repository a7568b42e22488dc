"""The pipeline's stages, one module each. A stage knows rows, models and config, never the runtime."""
