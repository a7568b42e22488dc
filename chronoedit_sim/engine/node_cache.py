"""Weights on an object store, copied once per node into a local folder that from_pretrained reads.

model.path, model.transformer_path and a LoRA's path may be URLs (storage.is_url). The driver reads them
where they are (weights.py: a listing, the configs, sampled digests; never a whole weight file); each actor
calls `on_this_node`, which copies the objects into `<model.cache_dir>/<name>-<hash of the URL>/`, with its
lock and manifest beside it (`<folder>.lock`, `<folder>.json`: the folder holds the checkpoint alone):

- once per node: the copy runs under an exclusive flock of `<folder>.lock`, so the actors of one node that
  start together wait for one download and then find it done (the kernel drops the lock of a killed process);
- each file is downloaded to a temporary name beside it and renamed, so no file is ever seen half written;
- the manifest (each object's size and version, storage.listing's) vouches for the files in place: a start
  whose listing matches it downloads nothing; an object whose size or ETag changed is fetched again, and a
  file no longer listed is removed. While a copy runs it names only the files that stay, and after a failed
  one also those that arrived whole, so the next start fetches only the rest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path

from .. import storage
from ..errors import MissingWeightsError

log = logging.getLogger(__name__)


def on_this_node(location: str, cache_dir: str, skip: tuple[str, ...] = ()) -> str:
    """`location` itself when it is local (a path, a repo id); for a URL, its copy on this node, without the
    files under the folders `skip` names (e.g. "transformer/" when a transformer kept apart replaces it)."""
    return str(materialise(location, cache_dir, skip)) if storage.is_url(location) else location


def transformer_on_this_node(location: str, cache_dir: str) -> str:
    """model.transformer_path on this node: of a whole checkpoint on a store, only its transformer/ folder."""
    if storage.is_url(location) and storage.path(location.rstrip("/")).joinpath("transformer").is_dir():
        location = f"{location.rstrip('/')}/transformer"
    return on_this_node(location, cache_dir)


def cache_folder(url: str, cache_dir: str) -> Path:
    """Where `url` is copied: its last name (for people) and a hash of the whole URL (for uniqueness)."""
    url = url.rstrip("/")
    name = url.rsplit("/", 1)[-1]
    return Path(cache_dir).expanduser() / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def materialise(url: str, cache_dir: str, skip: tuple[str, ...] = ()) -> Path:
    """The local copy of the folder (or single file) at `url`, complete and current but for the folders `skip`
    names (neither fetched nor removed); MissingWeightsError when nothing is there or the copy fails."""
    remote = storage.path(url.rstrip("/"))
    folder = cache_folder(url, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        try:
            wanted = storage.listing(remote)
        except OSError as exc:  # credentials, endpoint
            raise MissingWeightsError(f"weights at {url}: listing failed: {exc}") from None
        if not wanted:
            raise MissingWeightsError(f"weights not found: {url} holds no objects (check the bucket, the prefix "
                                      "and the credentials)")
        single = remote.fs.isfile(remote.path)  # a LoRA's file, not a folder
        _update(remote, folder, wanted, single, skip)
    return folder / remote.name if single else folder


def _update(remote, folder: Path, listed: dict[str, tuple[int, str]], single: bool, skip: tuple[str, ...]) -> None:
    """Bring `folder` to `listed` (storage.listing of `remote`) but for the folders `skip` names, fetching only
    what differs."""
    manifest = folder.parent / f"{folder.name}.json"
    try:
        have = {rel: tuple(v) for rel, v in json.loads(manifest.read_text())["objects"].items()}
    except (OSError, ValueError, KeyError):  # none yet, or an older or damaged one: compare nothing
        have = {}
    wanted = {rel: v for rel, v in listed.items() if not rel.startswith(skip)}
    # what the manifest vouches for in the skipped folders stays vouched for (a run without skip may use it)
    skipped = {rel: v for rel, v in have.items() if rel.startswith(skip) and listed.get(rel) == v}
    have = {rel: v for rel, v in have.items() if not rel.startswith(skip)}
    local = storage.listing(folder)
    # files no longer listed, and the parts a killed copy left behind
    stale = [rel for rel in local if rel not in listed]
    # what the manifest does not vouch for as the object listed now, or what is not there at its size
    fetch = sorted(rel for rel, (size, _) in wanted.items()
                   if have.get(rel) != wanted[rel] or local.get(rel, (None,))[0] != size)
    if not fetch and not stale and have == wanted:
        return
    # from here the manifest vouches only for the files that stay: a copy killed midway is resumed from them
    kept = {**skipped, **{rel: wanted[rel] for rel in wanted if rel not in fetch and have.get(rel) == wanted[rel]}}
    _write_manifest(manifest, remote, kept)
    for rel in stale:
        (folder / rel).unlink()
    keys = [remote.path if single else f"{remote.path}/{rel}" for rel in fetch]
    parts = [folder / f"{rel}.part-{os.getpid()}" for rel in fetch]
    for part in parts:
        part.parent.mkdir(parents=True, exist_ok=True)
    try:
        remote.fs.get(keys, [str(p) for p in parts])  # one call: a store's client fetches them concurrently
    except OSError as exc:
        # the files that arrived whole are kept and vouched for, so a retry over a flaky link converges
        for part, rel in zip(parts, fetch):
            if part.exists() and part.stat().st_size == wanted[rel][0]:
                os.replace(part, folder / rel)
                kept[rel] = wanted[rel]
            part.unlink(missing_ok=True)
        _write_manifest(manifest, remote, kept)
        raise MissingWeightsError(f"weights at {remote}: copying to {folder} failed ({len(kept)} of {len(wanted)} "
                                  f"files are there; the next start fetches the rest): {exc}") from None
    for part, rel in zip(parts, fetch):
        os.replace(part, folder / rel)
    _write_manifest(manifest, remote, {**skipped, **wanted})
    log.info("weights: fetched %d of %d files (%.1f MB) of %s into %s", len(fetch), len(wanted),
             sum(wanted[rel][0] for rel in fetch) / 1e6, remote, folder)


def _write_manifest(manifest: Path, remote, objects: dict) -> None:
    tmp = manifest.with_name(f"{manifest.name}.part-{os.getpid()}")
    tmp.write_text(json.dumps({"url": str(remote), "objects": objects}, sort_keys=True))
    os.replace(tmp, manifest)
