"""The output folder of a run or a rescoring: what may be resumed, refused, or replaced.

Checked before any model loads. A folder that is not a chronoedit-sim dataset is never
resumed into or deleted; a dataset made with another config is never mixed with; with
--overwrite the old dataset is ignored at once and deleted only once the new plan is valid.
"""

from __future__ import annotations

import errno
import json
from contextlib import contextmanager
from pathlib import Path

from .. import storage
from ..dataset.lock import lock_path
from ..dataset.manifest import FORMAT, read_manifest
from ..config import to_dict
from ..dataset.jobindex import JobIndex
from ..dataset.sink import (STATE, SinkWriteError, atomic_write_bytes, leftover_manifests, quarantine,
                            readable_shards, resume_index)
from ..errors import UserError
from .plan import comparable_content, content_config, content_hash

# OUT/_state/weights.json: the weight files' digests by path, size and version (engine.weights: the
# modification time on disk, the ETag on a store)
DIGESTS = "weights.json"


class OutputConflict(UserError):
    """The output directory holds something this run must not mix with or delete."""


class OutputWriteFailed(UserError):
    """Writing into the output failed (full disk, quota, I/O error); what is written stays and resumes."""

    exit_code = 4


def previous_manifest(out: Path, overwrite: bool) -> dict | None:
    """The manifest to resume from (None: start fresh), or OutputConflict for a foreign folder."""
    nearest = out if storage.is_remote(out) else next(p for p in (out, *out.parents) if p.exists())
    if nearest.exists() and not nearest.is_dir():
        raise OutputConflict(f"{out}: {nearest} is a file, not a folder; choose another --output")
    # a folder holding only _state (and a run.json being written when its writer died) is a dataset whose
    # first writer has not written run.json yet
    ours = {STATE, *(p.name for p in leftover_manifests(out))}
    try:
        manifest = read_manifest(out) if out.exists() else None
    except ValueError:  # ours are written whole (atomic_write): a run.json that is not JSON is someone else's
        raise OutputConflict(f"{out}: its run.json is not JSON: not a chronoedit-sim dataset; choose another "
                             "--output") from None
    if out.exists() and any(p.name not in ours for p in out.iterdir()) and manifest is None:
        raise OutputConflict(f"{out}: exists, is not empty and has no run.json: not a chronoedit-sim dataset; "
                             "choose another --output")
    if manifest is not None and manifest.get("schema") != FORMAT:
        raise OutputConflict(f"{out}: its run.json is not a chronoedit-sim dataset's (schema "
                             f"{manifest.get('schema')!r}, not {FORMAT!r}); choose another --output")
    return None if overwrite else manifest


def check_compatible(out: Path, previous: dict | None, config_hash: str, what: str, changes: list[str] = (),
                     as_recorded: str | None = None) -> None:
    """Refuse to resume a dataset made with `what` (e.g. "a different config"), told by its config hash;
    `changes` names what differs (config_changes). `as_recorded`: the hash the toolkit that made the dataset
    would give this config (plan.content_hash with `recorded`), so that keys added since do not refuse it."""
    if previous and previous.get("config_hash") not in {config_hash, as_recorded} - {None}:
        said = f"{', '.join(changes[:8])}{' ...' if len(changes) > 8 else ''}; " if changes else ""
        raise OutputConflict(f"{out}: the output was made with {what} ({said}config hash "
                             f"{previous.get('config_hash')} != {config_hash}); use another --output or --overwrite")


# keys of the unhashed sections that still decide a row's bytes: source_format says whether source_image is the
# frame the run edited (png) or a lossy copy of it (reproduce reads it from run.json). Checked apart from the
# hash, which datasets made before this check would no longer match.
STORED_KEYS = ("output.source_format",)


def check_plan(out: Path, previous: dict | None, plan) -> None:
    """Refuse to resume a dataset made with another config or other scenarios than the plan's (a RunPlan),
    naming what changed."""
    if previous:
        check_compatible(out, previous, plan.config_hash, "a different config or scenarios",
                         config_changes(previous, plan.cfg, plan.scenarios),
                         content_hash(plan.cfg, plan.scenarios, previous.get("config") or {}))
        old, new = _flat(previous.get("config") or {}), _flat(to_dict(plan.cfg))
        stored = [f"{key} {old[key]!r} -> {new[key]!r}" for key in STORED_KEYS if old.get(key, new[key]) != new[key]]
        if stored:
            raise OutputConflict(f"{out}: the output stores its rows otherwise ({', '.join(stored)}); use another "
                                 "--output or --overwrite")


def _flat(data, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    return {k: v for key, value in data.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def config_changes(previous: dict | None, cfg, scenarios) -> list[str]:
    """The config keys whose values differ from the recorded run's (as `key old -> new`), and the scenarios
    added, removed or edited: what a refused resume names."""
    if not previous:
        return []
    recorded = previous.get("config") or {}
    # a key added to the toolkit since the dataset was made, at its default, is no change (as in the hash)
    old, new = _flat(content_config(recorded)), _flat(comparable_content(cfg, recorded))
    old["input.path"], new["input.path"] = previous.get("input_path"), storage.absolute(cfg.input.path)
    changes = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(old.keys() | new.keys())
               if old.get(key) != new.get(key)]
    before = {s["name"]: s["sha256"] for s in previous.get("scenarios") or []}
    after = {s.name: s.sha256 for s in scenarios}
    for name in sorted(before.keys() | after.keys()):
        if before.get(name) != after.get(name):
            changes.append(f"scenario {name} " + ("added" if name not in before else "removed" if name not in after
                                                  else "edited"))
    return changes


def check_weights(out: Path, previous: dict | None, weights: dict[str, str]) -> None:
    """Refuse to resume a dataset whose recorded weights differ from those at the same paths now."""
    before = (previous or {}).get("weights") or {}
    changed = sorted(k for k in before.keys() & weights.keys() if before[k] != weights[k])
    if changed:
        raise OutputConflict(f"{out}: the weights changed since the output was made: {', '.join(changed)} "
                             "(same paths, other files); mixing them would give rows from two models under one "
                             "config; use another --output or --overwrite")


def read_digests(out: Path) -> dict:
    """The digest cache of OUT (empty when there is none or it cannot be read: it only spares reads)."""
    try:
        return json.loads((out / STATE / DIGESTS).read_text())
    except (OSError, ValueError):
        return {}


def write_digests(out: Path, cache: dict) -> None:
    (out / STATE).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / STATE / DIGESTS, json.dumps(cache, sort_keys=True).encode())


def prepare(out: Path, overwrite: bool) -> None:
    """Delete the old dataset (--overwrite; previous_manifest vouched it is one) and create OUT.

    The lock file stays: a new file at its path would be a second lock that a second writer could take; so do
    the takeover markers beside it on a store (dataset.lock): without its marker, a second taker of the same
    dead lock could take it again."""
    if overwrite and out.exists():
        lock = lock_path(out)
        for path in out.iterdir():
            if path.name == STATE:
                for inner in path.iterdir():
                    if inner != lock and not inner.name.startswith(f"{lock.name}.takeover-"):
                        storage.rmtree(inner)
            else:
                storage.rmtree(path)
    out.mkdir(parents=True, exist_ok=True)


def writer_index(out: Path, echo) -> JobIndex:
    """The writer's (lock held) resume index of OUT: a shard that cannot be read (its footer or its job ids)
    is moved to the quarantine with a notice, so its jobs leave the index and are done again."""

    def move(shard: Path, reason: str) -> None:
        dest = quarantine(out, shard)
        echo(f"notice: {shard.relative_to(out)} cannot be read ({reason}): moved to {dest.relative_to(out)}; "
             "its jobs will be done again")

    return resume_index(out, on_damaged=move)


@contextmanager
def write_errors(out: Path):
    """A failed write into OUT ends the run with one line: the folder, what is safe, what to do (exit 4)."""
    try:
        yield
    except SinkWriteError as exc:
        shards = readable_shards(out, on_damaged=lambda *_: None)
        rows = sum(storage.parquet(s).metadata.num_rows for s in shards)
        when = "once there is room" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "once it can be written again"
        raise OutputWriteFailed(f"cannot write to {exc.filename}: {exc.strerror}; {rows} row(s) are safe in "
                                f"{len(shards)} complete shard(s) of {out} and nothing half-written was kept; rerun "
                                f"the same command to resume {when}") from exc
