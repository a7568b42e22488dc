"""Where data lives: a local path, or a URL that fsspec resolves (s3://, gs://, az://, ...).

`path()` is the one place a location given by a user (a config value, --output, a row's shard) becomes
a path object: a plain `pathlib.Path` for a local location, so local runs behave and perform exactly as
before, and a universal_pathlib `UPath` over fsspec for a URL. Both have the pathlib API (`/`, glob,
exists, open, read_text ...), so the code above reads and writes through one API; the few things an
object store does differently live here too:

- no rename: a file becomes visible by one PUT (or one completed multipart or resumable upload) of its
  whole bytes under its final key (`put`), so readers never see a partial object;
- a lock is an object created only if absent (`create`: S3's `If-None-Match: *`, GCS's `ifGenerationMatch=0`);
- pyarrow reads through `arrow()`/`parquet()`, with fsspec's file system wrapped for pyarrow;
- libraries that need a real file (OpenCV's video decoder) get a local copy (`local_copy`).

Credentials and endpoints come from each library's usual environment and config files (for S3:
AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/config, AWS_ENDPOINT_URL ...; for GCS: GOOGLE_APPLICATION_CREDENTIALS,
gcloud's application default credentials, STORAGE_EMULATOR_HOST); nothing here reads or prints them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePath


def is_url(location) -> bool:
    """True for 'scheme://...' other than file://."""
    text = str(location)
    return "://" in text and not text.startswith("file://") and text.split("://", 1)[0].replace("+", "").isalnum()


def path(location):
    """The path object for a location: `pathlib.Path` when local, a `UPath` (fsspec) for a URL."""
    if isinstance(location, PurePath) or (hasattr(location, "fs") and hasattr(location, "protocol")):
        return location
    text = os.fspath(location) if not isinstance(location, str) else location
    if is_url(text):
        from upath import UPath  # only where a URL is used: local runs never import fsspec's backends

        # no listings cache: other processes write the same prefix (drivers, a resumed run, another node),
        # and a stale listing would hide their shards from the resume index and rerun their jobs
        return UPath(text, use_listings_cache=False)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def is_remote(p) -> bool:
    """A location on an object store (or any fsspec file system), not a local path."""
    return not isinstance(p, PurePath)


def absolute(location) -> str:
    """The location as a run records it: a local path made absolute, a URL as given."""
    p = path(location)
    return str(p) if is_remote(p) else str(p.expanduser().resolve())


def located(location):
    """An input's path object: a local path absolute with ~ expanded (symlinks kept as given), a URL as is."""
    p = path(location)
    return p if is_remote(p) else Path(os.path.abspath(os.path.expanduser(str(p))))


def scandir(location) -> list[tuple[str, bool]]:
    """(name, is a folder) of a folder's entries, unsorted: os.scandir locally, one listing on a store."""
    p = path(location)
    if not is_remote(p):
        with os.scandir(p) as it:
            return [(e.name, e.is_dir()) for e in it]
    return [(e["name"].rstrip("/").rsplit("/", 1)[-1], e["type"] == "directory") for e in p.fs.ls(p.path, detail=True)]


# what an object store's listing says changes when an object is rewritten: S3's ETag (s3fs), GCS's and Azure's
# etag; the modification time where a store has neither
_VERSION_KEYS = ("ETag", "etag", "LastModified", "mtime", "updated")


def listing(location) -> dict[str, tuple[int, str]]:
    """Every file under a folder, or the file itself under its own name: relative name -> (size, version), the
    version changing with the content (the modification time locally, the ETag on a store). One listing
    request on a store; {} when nothing is there."""
    p = path(location)
    if not is_remote(p):
        files = [(p.name, p)] if p.is_file() else [(f.relative_to(p).as_posix(), f) for f in p.rglob("*")
                                                      if f.is_file()]
        return {rel: (st.st_size, str(st.st_mtime_ns)) for rel, f in files for st in [f.stat()]}
    try:
        found = p.fs.find(p.path, detail=True)
    except FileNotFoundError:  # no such bucket
        return {}
    root = p.path.rstrip("/")
    # keys ending in "/" are folder markers (the S3 console's "Create folder", sync tools), not files
    return {(key[len(root):].lstrip("/") if key != root else p.name): (int(info["size"]), version(info))
            for key, info in found.items() if not key.endswith("/") and key != root + "/"}


def version(info: dict) -> str:
    """An object's version from its fsspec info (listing or info()): changes whenever the object is rewritten."""
    return next((str(info[k]) for k in _VERSION_KEYS if info.get(k)), "")


def open_ranges(p, block: int = 1 << 16):
    """A file opened to read a few ranges of it (headers, samples): a local file, or on a store one ranged
    GET per read, with no read-ahead beyond `block` bytes, so a large object is never fetched whole."""
    p = path(p)
    return p.open("rb", block_size=block, cache_type="none") if is_remote(p) else open(p, "rb")


def read_ranges(p, ranges: list[tuple[int, int]]) -> list[bytes]:
    """The bytes [start, end) of each range of a file; on a store, ranged GETs sent side by side."""
    p = path(p)
    if is_remote(p):
        return p.fs.cat_ranges([p.path] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges])
    out = []
    with open(p, "rb") as f:
        for a, b in ranges:
            f.seek(a)
            out.append(f.read(b - a))
    return out


def arrow(p) -> tuple[str, object]:
    """(path, filesystem) for pyarrow: a local path with filesystem None (pyarrow's own), or the key and
    fsspec's file system wrapped for pyarrow."""
    p = path(p)
    if not is_remote(p):
        return str(p), None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return p.path, PyFileSystem(FSSpecHandler(p.fs))


def arrow_name(name: str, like) -> str:
    """A file name that pyarrow reports (a dataset's __filename) as a location beside `like`: on an object
    store pyarrow names the key only, so it gets the URL's scheme back."""
    p = path(like)
    return f"{p.protocol}://{name}" if is_remote(p) else name


def parquet(p, **kwargs):
    """pyarrow's ParquetFile for a path on any file system (footer, schema, row groups, batches)."""
    import pyarrow.parquet as pq

    where, fs = arrow(p)
    return pq.ParquetFile(where, filesystem=fs, **kwargs)


def read_table(p, **kwargs):
    """pq.read_table on any file system (columns=, filters= as pyarrow takes them)."""
    import pyarrow.parquet as pq

    where, fs = arrow(p)
    return pq.read_table(where, filesystem=fs, **kwargs)


def parquet_dataset(paths: list):
    """One pyarrow dataset over Parquet files that live on one file system."""
    import pyarrow.dataset as pads

    located = [arrow(p) for p in paths]
    return pads.dataset([where for where, _ in located], format="parquet",
                        filesystem=located[0][1] if located else None)


def put(p, data: bytes) -> None:
    """Write a whole object under its final key in one request (for large data s3fs sends a multipart upload,
    gcsfs a resumable one, each completed only at the end): it is visible complete or not at all."""
    p.fs.pipe_file(p.path, data)


# the fsspec back-ends whose create-if-absent is one conditional request; fsspec's default for the others
# checks for the object and then writes it, which two writers can both pass
CONDITIONAL_CREATE = ("s3", "gs")


def conditional_create(p) -> bool:
    """Whether `create` is atomic on p's store (a conditional write the store itself decides)."""
    protocol = p.fs.protocol
    return any(name in CONDITIONAL_CREATE for name in ((protocol,) if isinstance(protocol, str) else protocol))


def create(p, data: bytes) -> bool:
    """Create the object only if nothing is at its key (S3: PutObject with If-None-Match: *; GCS: an upload
    with ifGenerationMatch=0); False when something is. A store that cannot do a conditional write raises
    (NotImplementedError or OSError)."""
    try:
        p.fs.pipe_file(p.path, data, mode="create")
    except FileExistsError:
        return False
    return True


def move(src, dst) -> None:
    """Rename a file or folder; on an object store a copy of each object and a delete (not atomic)."""
    if is_remote(src):
        fs = src.fs
        for key in fs.find(src.path):  # object by object: fsspec's recursive mv also copies the folder's own key
            fs.copy(key, dst.path + key[len(src.path):])
        fs.rm(src.path, recursive=True)
    else:
        src.rename(dst)


def rmtree(p) -> None:
    """Remove a folder (or a prefix on an object store) and everything under it; absent is fine."""
    if is_remote(p):
        if p.exists():
            p.fs.rm(p.path, recursive=True)
    elif p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


@contextmanager
def local_copy(p):
    """A local file path for a library that opens files by name itself: the path itself when local, else a
    temporary download that is removed afterwards."""
    p = path(p)
    if not is_remote(p):
        yield str(p)
        return
    with tempfile.TemporaryDirectory(prefix="cesim-") as tmp:
        local = os.path.join(tmp, p.name)
        p.fs.get_file(p.path, local)
        yield local
