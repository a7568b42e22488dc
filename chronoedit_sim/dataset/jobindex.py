"""A compact set of job ids: sorted 64-bit hashes, 8 bytes a job, read from shards without Python strings.

A job id is 20 hex digits (scenario.make_job_id); its hash is the first 16 read as a number. Any other id (a
foreign dataset, a test's "j0") is hashed with BLAKE2b, row by row. Two jobs share a hash with probability
about n^2 / 2^65: 3e-8 at 10^6 jobs.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

_DIGITS = "0123456789abcdef"
# ASCII byte -> its hex digit's value (255: not a lower-case hex digit)
_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(_DIGITS.encode(), np.uint8)] = np.arange(16, dtype=np.uint8)
_SHIFTS = np.arange(60, -4, -4, dtype=np.uint64)
_ID_LEN = 20
# additions are buffered in a Python set and merged into the sorted array past this many
_MERGE_AT = 1 << 16


def job_hash(job_id: str) -> int:
    """The same number column_hashes reads: the first 16 digits of a 20-character id whose 16 are lower-case hex."""
    head = job_id[:16]
    # the length in bytes, as column_hashes reads it: a foreign id of 20 bytes in fewer characters is hashed alike
    if len(job_id.encode()) == _ID_LEN and not head.strip(_DIGITS):
        return int(head, 16)
    return _other(job_id)


def _other(job_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=8).digest(), "big")


def column_hashes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The hashes of a string column of job ids, read from its buffers: no Python string per row."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = [np.empty(0, np.uint64)]
    for chunk in chunks:
        chunk = chunk.cast(pa.large_string())
        n = len(chunk)
        if not n:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], np.int64)[chunk.offset:chunk.offset + n + 1]
        data = np.frombuffer(chunk.buffers()[2], np.uint8)
        if chunk.null_count == 0 and (np.diff(offsets) == _ID_LEN).all():
            digits = _HEX[data[offsets[:-1, None] + np.arange(16)]]
            if (digits != 255).all():
                out.append(np.bitwise_or.reduce(digits.astype(np.uint64) << _SHIFTS, axis=1))
                continue
        out.append(np.array([job_hash(s) for s in chunk.to_pylist() if s is not None], np.uint64))
    return np.concatenate(out)


class JobIndex:
    """A set of job ids as sorted unique 64-bit hashes; `in` takes a job id."""

    def __init__(self, hashes: np.ndarray | None = None):
        self._sorted = np.unique(np.asarray(hashes, np.uint64)) if hashes is not None else np.empty(0, np.uint64)
        self._recent: set[int] = set()

    @classmethod
    def of(cls, job_ids) -> "JobIndex":
        return cls(np.array([job_hash(j) for j in job_ids], np.uint64))

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def _has(self, h: int) -> bool:
        if h in self._recent:
            return True
        i = int(np.searchsorted(self._sorted, np.uint64(h)))
        return i < len(self._sorted) and int(self._sorted[i]) == h

    def __contains__(self, job_id: str) -> bool:
        return bool(len(self)) and self._has(job_hash(job_id))

    def add(self, job_id: str) -> bool:
        """Add a job; False when it was there already."""
        h = job_hash(job_id)
        if self._has(h):
            return False
        self._recent.add(h)
        if len(self._recent) >= _MERGE_AT:
            self.hashes()
        return True

    def hashes(self) -> np.ndarray:
        if self._recent:
            self._sorted = np.union1d(self._sorted, np.fromiter(self._recent, np.uint64, len(self._recent)))
            self._recent = set()
        return self._sorted

    def union(self, *others: "JobIndex") -> "JobIndex":
        return JobIndex(np.concatenate([self.hashes(), *(o.hashes() for o in others)]))

    def __eq__(self, other) -> bool:
        return isinstance(other, JobIndex) and np.array_equal(self.hashes(), other.hashes())

    def __getstate__(self):
        return self.hashes()

    def __setstate__(self, state) -> None:
        self._sorted, self._recent = state, set()
