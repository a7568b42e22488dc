"""A Qwen-VL model through transformers: the prompt enhancer's rewrite and the judge's ratings.

Weights come from `vlm.path`, a local directory or a repo id resolved from the local Hugging Face cache (the
same offline resolution and missing-weights message as the editor's). Qwen3-VL (MoE and dense) and
Qwen2.5-VL load through AutoModelForImageTextToText. The judge reads a rating off the next-token
probabilities of the digits (G-Eval's expectation) instead of parsing generated text: two generated tokens
per rating, a value for every pair, and no parse failures.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .. import storage
from ..config import VlmConfig
from ..errors import MissingWeightsError, UserError
from . import vlm_prompts
from .editor import Editor
from .weights import has_weights, is_random_tiny, is_repo_id, local_root, model_hash

log = logging.getLogger(__name__)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def _how_to_get(path: str) -> str:
    repo = path if is_repo_id(path) else "Qwen/Qwen3-VL-30B-A3B-Instruct"  # a folder is no repo to download
    return (f"Download it on a machine with network access (`hf download {repo} --local-dir DIR`) and set vlm.path=DIR, "
            f"or pre-populate the Hugging Face cache (HF_HOME) and keep vlm.path={repo}. For tests and demos: "
            "`chronoedit-sim make-tiny-model DIR` writes a tiny random Qwen-VL to DIR-vlm.")


def resolve_vlm_root(cfg: VlmConfig) -> Path:
    """The local folder of the VLM, complete (config, weights, tokenizer, processor), or MissingWeightsError."""
    if storage.is_url(cfg.path):  # the editor's weights only are copied from a store to each node (node_cache)
        raise MissingWeightsError(f"vlm.path={cfg.path}: the VLM is not read from a URL; copy it to each node and "
                                  "set vlm.path to its folder")
    root, tried = local_root(cfg.path, cfg.revision, cfg.allow_download, what="VLM weights", how=_how_to_get,
                             flag="vlm.allow_download")
    for problem, ok in (("no config.json", (root / "config.json").is_file()),
                        ("no (or an incomplete set of) weight files", has_weights(root)),
                        ("no tokenizer files", any((root / f).is_file() for f in _TOKENIZER_FILES)),
                        ("no image processor config", any((root / f).is_file() for f in _PROCESSOR_FILES))):
        if not ok:
            raise MissingWeightsError(f"VLM weights incomplete: {tried} has {problem}. {_how_to_get(cfg.path)}")
    return root


def _image(rgb: np.ndarray, max_side: int):
    """PIL image with its shortest side capped at max_side, as the official scripts do."""
    from PIL import Image

    img = Image.fromarray(rgb)
    w, h = img.size
    if min(w, h) > max_side:
        scale = max_side / min(w, h)
        img = img.resize((int(w * scale), int(h * scale)), Image.LANCZOS)
    return img


class VisionLanguageModel:
    """One loaded Qwen-VL. `calls` counts what it was asked: rewrites and ratings."""

    def __init__(self, cfg: VlmConfig):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        root = resolve_vlm_root(cfg)
        self.device = Editor._pick_device(cfg.device)
        self.model = AutoModelForImageTextToText.from_pretrained(root, dtype=getattr(torch, cfg.dtype)).to(self.device)
        self.model.eval()
        self.processor = AutoProcessor.from_pretrained(root)
        self.processor.tokenizer.padding_side = "left"  # decoder-only generation pads on the left
        tok = self.processor.tokenizer
        digits = [tok.encode(str(d), add_special_tokens=False) for d in range(10)]
        if any(len(ids) != 1 for ids in digits):
            raise UserError(f"vlm.path={cfg.path}: its tokenizer does not give each digit one token; the judge "
                            "reads ratings off single-digit tokens (Qwen's tokenizers do)")
        self.digit_ids = [ids[0] for ids in digits]
        self.end_ids = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")} if isinstance(i, int)]
        self.random_weights = is_random_tiny(root)
        self.identity = json.dumps({"model": cfg.path, "model_hash": model_hash(root, []), "dtype": cfg.dtype,
                                    "random_weights": self.random_weights}, sort_keys=True)
        self.calls = {"enhance": 0, "judge": 0}
        if self.random_weights:
            log.warning("VLM %s has RANDOM weights (tiny test model): its rewrites are noise, its ratings meaningless",
                        cfg.path)

    def _inputs(self, conversations: list[list[dict]], images: list):
        texts = [self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                 for c in conversations]
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def enhance(self, items: list[tuple[np.ndarray, str]], max_new_tokens: int) -> list[str]:
        """The rewritten instruction of each (frame, instruction), greedy decoding, in one batch."""
        import torch

        if not items:
            return []
        conversations = [[{"role": "system", "content": [{"type": "text",
                                                          "text": vlm_prompts.ENHANCE.format(instruction=text)}]},
                          {"role": "user", "content": [{"type": "image"}]}] for _, text in items]
        inputs = self._inputs(conversations, [_image(rgb, self.cfg.max_side) for rgb, _ in items])
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        self.calls["enhance"] += len(items)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True,
                                                               clean_up_tokenization_spaces=False)]

    def judge(self, pairs: list[tuple[np.ndarray, np.ndarray, str]]) -> list[tuple[float, float]]:
        """(consistency, quality), each 0-10, of every (source, edited, instruction)."""
        if not pairs:
            return []
        prompts = [([src, edit], vlm_prompts.CONSISTENCY.format(instruction=text)) for src, edit, text in pairs]
        prompts += [([edit], vlm_prompts.QUALITY) for _, edit, _ in pairs]
        ratings = self.rate(prompts)
        self.calls["judge"] += len(pairs)
        return list(zip(ratings[:len(pairs)], ratings[len(pairs):]))

    def rate(self, prompts: list[tuple[list[np.ndarray], str]]) -> list[float]:
        """The expected 0-10 answer to each (images, question): over the first token's digit probabilities,
        with "1" read as 10 in proportion to how likely "0" follows it (a second token, forced "1")."""
        import torch

        conversations = [[{"role": "user", "content": [*({"type": "image"} for _ in images),
                                                        {"type": "text", "text": text}]}] for images, text in prompts]
        inputs = self._inputs(conversations, [_image(rgb, self.cfg.max_side) for images, _ in prompts for rgb in images])
        start, one = inputs["input_ids"].shape[1], self.digit_ids[1]

        def force_one(_batch_id, ids):
            return [one] if ids.shape[-1] == start else self.end_ids[:1]

        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=2, do_sample=False, prefix_allowed_tokens_fn=force_one,
                                      output_logits=True, return_dict_in_generate=True)
        first = torch.softmax(out.logits[0][:, self.digit_ids].float(), dim=-1)
        second = torch.softmax(out.logits[1][:, [self.digit_ids[0], *self.end_ids]].float(), dim=-1)[:, 0]
        values = first @ torch.arange(10, dtype=torch.float32, device=first.device) + first[:, 1] * second * 9
        return [round(float(v), 4) for v in values.cpu()]
