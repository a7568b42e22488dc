"""Finding an editor's weights on disk (ChronoEdit, Qwen-Image-Edit, FLUX.1 Kontext), checking they are
complete, and naming them.

A model path is a local diffusers-layout directory, a Hugging Face repo id that
is resolved from the local hub cache (downloaded only with model.allow_download),
or a URL (s3://...), checked and named where it is (its configs and sampled digests,
never a whole weight file) and copied to each node by node_cache before it loads.
Anything missing is reported once, naming what was tried, the missing component
and how to get the weights, instead of a stack trace from inside diffusers.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import storage
from ..errors import MissingWeightsError
from .tiny import TINY_MARKER

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# components whose folders hold weights, and the files that can hold them
_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json", "vocab.json")
_CONFIG_FILES = {
    "tokenizer": _TOKENIZER_FILES,
    "tokenizer_2": _TOKENIZER_FILES,
    "scheduler": ("scheduler_config.json",),
    "image_processor": ("preprocessor_config.json",),
    # transformers 5 writes processor_config.json, the released repos carry preprocessor_config.json
    "processor": ("preprocessor_config.json", "processor_config.json"),
}
REQUIRED_COMPONENTS = ("tokenizer", "text_encoder", "image_encoder", "image_processor", "transformer", "vae", "scheduler")


@dataclass(frozen=True)
class Checkpoint:
    """What one editor backend's diffusers checkpoint holds, and how messages name it."""

    # the model's name in messages ("ChronoEdit weights not found: ...")
    title: str
    # the released diffusers repo, for the download hint
    repo: str
    # component folders model_index.json must list, each with its config and weights
    components: tuple[str, ...]
    # the tiny preset that goes with `make-tiny-model --backend`
    tiny_preset: str


# keyed by model.backend
CHECKPOINTS = {
    "chronoedit": Checkpoint("ChronoEdit", "nvidia/ChronoEdit-14B-Diffusers", REQUIRED_COMPONENTS, "tiny"),
    "qwen_image_edit": Checkpoint("Qwen-Image-Edit", "Qwen/Qwen-Image-Edit-2509",
                                  ("tokenizer", "processor", "text_encoder", "transformer", "vae", "scheduler"),
                                  "tiny-qwen-image-edit"),
    "flux_kontext": Checkpoint("FLUX.1 Kontext", "black-forest-labs/FLUX.1-Kontext-dev",
                               ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "transformer", "vae",
                                "scheduler"), "tiny-flux-kontext"),
}


def _how_to_get(path: str, backend: str = "chronoedit") -> str:
    if "ChronoEdit-2B" in path:
        return (
            "ChronoEdit-2B is announced by NVIDIA but not released; when it is, download it and set "
            "model.path=/path/to/ChronoEdit-2B-Diffusers."
        )
    ckpt = CHECKPOINTS[backend]
    repo = path if _REPO_ID.match(path) else ckpt.repo
    flag = "" if backend == "chronoedit" else f" --backend {backend}"
    return (
        f"Download them on a machine with network access (`hf download {repo} --local-dir DIR`) and set "
        f"model.path=DIR, or pre-populate the Hugging Face cache (HF_HOME) and keep model.path={repo}. "
        f"For tests and demos: `chronoedit-sim make-tiny-model{flag} DIR` writes a tiny random-weight checkpoint "
        f"(model={ckpt.tiny_preset} model.path=DIR)."
    )


def is_repo_id(path: str) -> bool:
    return not Path(path).expanduser().exists() and bool(_REPO_ID.match(path)) and not path.startswith(".")


def resolve_model_root(path: str, revision: str | None = None, allow_download: bool = False,
                       backend: str = "chronoedit", apart: tuple[str, ...] = ()) -> Path:
    """The folder holding `backend`'s checkpoint (a CHECKPOINTS key), complete but for the components `apart`
    names (loaded from elsewhere: a transformer kept apart), or MissingWeightsError: a local directory, or a
    URL's path object (storage.path)."""
    root, tried = local_root(path, revision, allow_download, what=f"{CHECKPOINTS[backend].title} weights",
                             how=lambda p: _how_to_get(p, backend))
    check_complete(root, tried, path, backend, apart)
    return root


def resolve_transformer(path: str, allow_download: bool = False) -> Path:
    """The folder of a transformer kept apart from the checkpoint (model.transformer_path): a
    diffusers-layout checkpoint's transformer/ folder, or a folder holding the transformer's own files."""
    root, tried = local_root(path, None, allow_download)
    for folder in (root / "transformer", root):
        if (folder / "config.json").exists() and has_weights(folder):
            return folder
    raise MissingWeightsError(
        f"model.transformer_path: {tried} holds no transformer (neither transformer/ nor the folder itself has "
        "a config.json and complete weight files)")


def local_root(path: str, revision: str | None, allow_download: bool, what: str = "ChronoEdit weights",
               how=_how_to_get, flag: str = "model.allow_download") -> tuple[Path, str]:
    """(local folder, how it was found) of a directory or a cached repo id; `how(path)` says how to get them."""
    if is_repo_id(path):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            root = Path(snapshot_download(path, revision=revision, local_files_only=not allow_download))
        except LocalEntryNotFoundError:
            raise MissingWeightsError(
                f"{what} not found: repo id {path!r}"
                f"{f' (revision {revision})' if revision else ''} is not in the local Hugging Face cache "
                f"and {flag} is false. {how(path)}"
            ) from None
        except Exception as exc:  # network errors, gated repos, bad revisions
            raise MissingWeightsError(f"{what} not found: fetching {path!r} failed: {exc}. {how(path)}") from None
        tried = f"repo id {path!r} (cached at {root})"
    elif storage.is_url(path):
        # read where it is (a listing, configs, sampled digests); actors copy it to their node (node_cache)
        root, tried = storage.path(path), f"URL {path!r}"
        try:
            found = root.is_dir()
        except OSError as exc:  # credentials, endpoint
            raise MissingWeightsError(f"{what} not found: reading {tried} failed: {exc}") from None
        if not found:
            raise MissingWeightsError(f"{what} not found: {tried} holds no objects (check the bucket, the prefix "
                                      f"and the credentials). {how(path)}")
    else:
        root = Path(path).expanduser()
        tried = f"directory {str(root)!r}"
        if not root.is_dir():
            raise MissingWeightsError(f"{what} not found: {tried} does not exist. {how(path)}")
    return root, tried


def has_weights(folder: Path) -> bool:
    for pattern in _WEIGHT_GLOBS:
        for f in folder.glob(pattern):
            if not f.name.endswith(".index.json"):
                return True
            shards = set(json.loads(f.read_text()).get("weight_map", {}).values())
            return bool(shards) and all((folder / s).exists() for s in shards)
    return False


def check_complete(root: Path, tried: str, path: str, backend: str = "chronoedit", apart: tuple[str, ...] = ()) -> None:
    ckpt = CHECKPOINTS[backend]
    index = root / "model_index.json"
    if not index.exists():
        raise MissingWeightsError(
            f"{ckpt.title} weights incomplete: {tried} has no model_index.json (not a diffusers-layout checkpoint). "
            f"{_how_to_get(path, backend)}"
        )
    listed = json.loads(index.read_text())
    for name in (c for c in ckpt.components if c not in apart):
        entry = listed.get(name)
        folder = root / name
        if not entry or entry[0] is None:
            problem = "is not listed in model_index.json"
        elif not folder.is_dir():
            problem = f"folder {name}/ is missing"
        elif name in _CONFIG_FILES:
            problem = None if any((folder / f).exists() for f in _CONFIG_FILES[name]) else "has no config file"
        elif not (folder / "config.json").exists():
            problem = "has no config.json"
        elif not has_weights(folder):
            problem = "has no (or an incomplete set of) weight files"
        else:
            problem = None
        if problem:
            raise MissingWeightsError(
                f"{ckpt.title} weights incomplete: {tried}: component '{name}' {problem}. {_how_to_get(path, backend)}"
            )


def resolve_lora_path(lora_path: str, root: Path, allow_download: bool = False) -> Path:
    """A LoRA file given absolutely, relative to the model root, or as `<repo id>:<file>` resolved from the
    Hugging Face cache (the LoRAs NVIDIA ships in repos of their own, e.g. the PaintBrush and Upscaler)."""
    repo, sep, name = lora_path.partition(":")
    if sep and is_repo_id(repo) and name:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo, name, local_files_only=not allow_download))
        except Exception as exc:  # not cached (LocalEntryNotFoundError), or the fetch failed
            raise MissingWeightsError(
                f"LoRA weights not found: {name!r} of repo {repo!r} is not in the local Hugging Face cache"
                f"{'' if allow_download else ' and model.allow_download is false'} ({type(exc).__name__}). "
                f"Download it on a machine with network access (`hf download {repo} --local-dir DIR`) and set the "
                f"LoRA's path to DIR/{name}, or pre-populate the cache (HF_HOME)."
            ) from None
    if storage.is_url(lora_path):
        candidate = storage.path(lora_path)
    else:
        candidate = Path(lora_path).expanduser()
        if not candidate.is_absolute():  # `root` may be a URL's: its LoRAs travel with it
            inside = root / candidate.as_posix()
            candidate = inside if inside.exists() else candidate.resolve()
    if not candidate.is_file():
        raise MissingWeightsError(
            f"LoRA weights not found: {lora_path!r} (tried {candidate}, and relative to the model root {root}). "
            "The distill preset expects lora/chronoedit_distill_lora.safetensors inside the ChronoEdit-14B-Diffusers "
            "download; set model.loras.0.path to where it is."
        )
    return candidate


# a weight file's content digest reads the safetensors header whole and this many evenly spaced chunks of the
# data (the first and the last among them): a few MiB for a 14B checkpoint, against tens of GB to read it all.
# Another training run, seed or precision changes every chunk; a fine-tune touching a few tensors may not.
DIGEST_SAMPLES, DIGEST_CHUNK = 16, 1 << 16
# files of a folder on a store whose digests are read at once
_READERS = 16


def file_digest(path, cache: dict | None = None, stamp: tuple[int, str] | None = None) -> str:
    """Size, safetensors header and sampled data of one file, local or on a store (the same bytes read either
    way: a store gets ranged GETs, never the whole of a large file). `cache` (location -> {size, version,
    digest}) spares the reads when neither the size nor the version (storage.listing's) changed; `stamp`:
    (size, version) when a listing already gave them."""
    path = storage.path(path)
    size, version = stamp or storage.listing(path)[path.name]
    key = str(path) if storage.is_remote(path) else str(path.resolve())
    hit = (cache or {}).get(key)
    if hit and hit["size"] == size and hit.get("version") == version:
        return hit["digest"]
    h = hashlib.sha256(str(size).encode())
    with storage.open_ranges(path, DIGEST_CHUNK) as f:
        start = 0
        if path.suffix == ".safetensors" and size >= 8:
            header = int.from_bytes(f.read(8), "little")
            if header <= size - 8:
                h.update(f.read(header))
                start = 8 + header
        span = size - start
        if span <= DIGEST_SAMPLES * DIGEST_CHUNK:  # small files whole
            h.update(f.read())
        else:
            for i in range(DIGEST_SAMPLES):
                f.seek(start + (span - DIGEST_CHUNK) * i // (DIGEST_SAMPLES - 1))
                h.update(f.read(DIGEST_CHUNK))
    digest = h.hexdigest()[:16]
    if cache is not None:
        cache[key] = {"size": size, "version": version, "digest": digest}
    return digest


def folder_digests(folder, cache: dict | None = None, prefix: str = "") -> dict[str, str]:
    """Each file under `folder` (a local folder or a URL's; relative name, with `prefix`) -> its digest:
    configs whole, weights sampled. Named in path order (by path components), the same on disk and on a store."""
    folder = storage.path(folder)
    files = storage.listing(folder)
    names = [rel for rel in sorted(files, key=lambda r: r.split("/")) if rel.rsplit("/", 1)[-1] != TINY_MARKER]

    def digest(rel: str) -> str:
        f = folder / rel
        if f.suffix == ".json":
            return hashlib.sha256(f.read_bytes()).hexdigest()[:16]
        return file_digest(f, cache, files[rel])

    if storage.is_remote(folder):  # a store answers each read in tens of ms: the files are read side by side
        with ThreadPoolExecutor(_READERS) as pool:
            return {prefix + rel: d for rel, d in zip(names, pool.map(digest, names))}
    return {prefix + rel: digest(rel) for rel in names}


def checkpoint_components(root: Path, transformer: Path | None = None, cache: dict | None = None) -> dict[str, str]:
    """A diffusers checkpoint's identity per component folder (transformer, vae, ...; files at the root under
    "index"), a transformer kept apart (model.transformer_path) as "transformer": what changed, by name."""
    files = folder_digests(root, cache)
    if transformer is not None:
        files = {k: v for k, v in files.items() if not k.startswith("transformer/")}
        files.update(folder_digests(transformer, cache, prefix="transformer/"))
    parts = {}
    for rel, digest in files.items():
        component = rel.split("/", 1)[0] if "/" in rel else "index"
        parts.setdefault(component, hashlib.sha256()).update(f"{rel}\0{digest}\0".encode())
    return {name: h.hexdigest()[:16] for name, h in sorted(parts.items())}


def model_hash(root: Path, lora_files: list[tuple[Path, float]], transformer: Path | None = None,
               cache: dict | None = None) -> str:
    """Hash of every component's files (configs whole, weights by file_digest), each LoRA's digest and scale,
    and a transformer kept apart (model.transformer_path) in the transformer's place."""
    h = hashlib.sha256()
    for name, digest in checkpoint_components(root, transformer, cache).items():
        h.update(f"{name}\0{digest}\0".encode())
    for path, scale in lora_files:
        h.update(file_digest(path, cache).encode() + repr(float(scale)).encode())
    return h.hexdigest()[:16]


def is_random_tiny(root: Path) -> bool:
    """A tiny checkpoint's root, or one of its component folders (a transformer given on its own)."""
    return (root / TINY_MARKER).exists() or (root.parent / TINY_MARKER).exists()
