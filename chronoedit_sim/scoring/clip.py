"""CLIP embeddings with open_clip: weights resolution (offline), a tiny random model, and caching.

Weights come from `scoring.clip.pretrained` (a local file, or an open_clip tag resolved from the
local cache) or from `scoring.clip.model=local-dir:PATH`. Nothing is downloaded unless
`scoring.clip.allow_download`. The tiny model written by `make-tiny-model` has RANDOM weights and
says so in every row's `scorer` column.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..config import ClipConfig
from ..engine.tiny import TINY_MARKER
from ..errors import MissingWeightsError

log = logging.getLogger(__name__)
LOCAL_DIR = "local-dir:"
# the bundled BPE tokenizer's vocabulary: a custom text tower must match it
TOKENIZER_VOCAB = 49408

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": TOKENIZER_VOCAB, "width": 32, "heads": 2, "layers": 2},
}


def write_tiny_clip(directory: str | Path, seed: int = 0) -> Path:
    """A randomly initialised open_clip model in `local-dir:` layout (config JSON + safetensors)."""
    import torch
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = CLIP(**TINY_CLIP_CONFIG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "open_clip_model.safetensors"))
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}},
                                                                indent=2) + "\n")
    (directory / TINY_MARKER).write_text(json.dumps({"random_weights": True, "seed": seed,
                                                     "note": "random open_clip model for tests and the demo"}) + "\n")
    return directory


def _how_to_get(cfg: ClipConfig) -> str:
    if cfg.model.startswith(LOCAL_DIR):
        return ("Point it at a folder holding an open_clip model (open_clip_config.json + weights), or write "
                "the tiny random test model there with `chronoedit-sim make-tiny-model DIR` (it goes to DIR-clip); "
                "scoring.clip.enabled=false keeps only the weight-free scores.")
    return (f"On a machine with network access run `python -c \"import open_clip; open_clip.create_model_and_transforms"
            f"('{cfg.model}', pretrained='{cfg.pretrained}')\"` to fill the cache, or download the weights and set "
            "scoring.clip.pretrained=/path/to/weights, or scoring.clip.model=local-dir:/path. "
            "For tests and demos: chronoedit-sim make-tiny-model writes a random tiny CLIP; "
            "scoring.clip.enabled=false keeps only the weight-free scores.")


def resolve_clip_weights(cfg: ClipConfig) -> tuple[str, str | None]:
    """(model name for open_clip, weights path or None for local-dir) or MissingWeightsError."""
    if cfg.model.startswith(LOCAL_DIR):
        folder = Path(cfg.model[len(LOCAL_DIR):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise MissingWeightsError(f"CLIP weights not found: {cfg.model}: no open_clip_config.json in {folder}. "
                                      + _how_to_get(cfg))
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
            raise MissingWeightsError(f"CLIP weights not found: {cfg.model}: no weight file in {folder}. "
                                      + _how_to_get(cfg))
        return f"{LOCAL_DIR}{folder}", None
    import open_clip

    name = cfg.model.replace("/", "-")
    if name not in open_clip.list_models():
        raise MissingWeightsError(f"scoring.clip.model: {cfg.model!r} is not an open_clip architecture "
                                  "(see open_clip.list_models()) nor local-dir:PATH")
    if os.path.isfile(os.path.expanduser(cfg.pretrained)):
        return name, os.path.expanduser(cfg.pretrained)
    tag = open_clip.get_pretrained_cfg(name, cfg.pretrained)
    if not tag:
        raise MissingWeightsError(f"CLIP weights not found: scoring.clip.pretrained={cfg.pretrained!r} is neither a "
                                  f"file nor an open_clip tag of {name}. " + _how_to_get(cfg))
    tried = []
    if tag.get("hf_hub"):
        from huggingface_hub import hf_hub_download

        repo, filename = os.path.split(tag["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        for candidate in (filename.rsplit(".", 1)[0] + ".safetensors", filename):
            tried.append(f"{repo}/{candidate}")
            try:
                return name, hf_hub_download(repo, candidate, local_files_only=not cfg.allow_download)
            except Exception:  # not cached / not on the hub: try the next name, then report all
                continue
    if tag.get("url"):
        cached = Path("~/.cache/clip").expanduser() / os.path.basename(tag["url"])
        tried.append(str(cached))
        if cached.is_file():
            return name, str(cached)
        if cfg.allow_download:
            from open_clip.pretrained import download_pretrained_from_url

            return name, download_pretrained_from_url(tag["url"])
    raise MissingWeightsError(f"CLIP weights not found: {name} / {cfg.pretrained}: tried {', '.join(tried)} "
                              f"(scoring.clip.allow_download is {str(cfg.allow_download).lower()}). " + _how_to_get(cfg))


class ClipEmbedder:
    """One loaded open_clip model; L2-normalised image and caption embeddings, captions cached."""

    def __init__(self, cfg: ClipConfig):
        import open_clip
        import torch

        self.cfg = cfg
        name, weights = resolve_clip_weights(cfg)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(name, pretrained=weights,
                                                                               device=self.device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        folder = Path(name[len(LOCAL_DIR):]) if name.startswith(LOCAL_DIR) else None
        self.random_weights = bool(folder and (folder / TINY_MARKER).exists())
        self.identity = json.dumps({"model": name, "pretrained": None if folder else cfg.pretrained,
                                    "random_weights": self.random_weights}, sort_keys=True)
        self._captions: dict[str, np.ndarray] = {}
        # how many captions went through the text tower (the cache makes this distinct captions)
        self.text_encodes = 0
        if self.random_weights:
            log.warning("CLIP %s has RANDOM weights: its scores mean nothing", name)

    def images(self, frames: list[np.ndarray]) -> np.ndarray:
        """(N, D) normalised embeddings of uint8 RGB frames, cfg.batch_size per forward pass."""
        import torch
        from PIL import Image

        out = []
        for start in range(0, len(frames), self.cfg.batch_size):
            batch = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames[start:start + self.cfg.batch_size]])
            with torch.no_grad():
                emb = self.model.encode_image(batch.to(self.device)).float()
            out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def captions(self, texts: list[str]) -> np.ndarray:
        """(N, D) normalised caption embeddings; each distinct caption is encoded once per embedder."""
        import torch

        new = [t for t in dict.fromkeys(texts) if t not in self._captions]
        if new:
            with torch.no_grad():
                emb = self.model.encode_text(self.tokenizer(new).to(self.device)).float()
            for text, vec in zip(new, torch.nn.functional.normalize(emb, dim=-1).cpu().numpy()):
                self._captions[text] = vec
            self.text_encodes += len(new)
        return np.stack([self._captions[t] for t in texts])
