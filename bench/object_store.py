"""Seconds per shard written to a local S3 server (moto's standalone server on localhost) against local disk.

The same ShardWriter writes the same rows (64x64 PNG images, 50 rows a shard) into a temporary folder (tmp +
fsync + rename) and into s3:// on the local server (one PUT of the whole shard). The server is moto's Python
server on this machine, not a real S3: the figure is the client-side cost (encoding, fsspec, HTTP) plus
moto's, never S3's latency or bandwidth.

Run: python bench/object_store.py [--quick | --smoke]    (quick: 5 shards; smoke: 2; default 20)
Prints a table and writes bench/results/object_store.json.
"""

from __future__ import annotations

import common  # noqa: F401  (puts this checkout's package first on the path)

import argparse  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROWS = 50


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seconds_per_shard(out, shards: int) -> float:
    import sys

    sys.path.insert(0, str(common.ROOT / "tests"))
    from verify_helpers import fake_row

    from chronoedit_sim.config import OutputConfig
    from chronoedit_sim.dataset.sink import ShardWriter

    rows = [fake_row(i) for i in range(ROWS)]
    writer = ShardWriter(out, OutputConfig(shard_max_rows=ROWS))
    t0 = time.perf_counter()
    for _ in range(shards):
        for row in rows:
            writer.add(row)
    return (time.perf_counter() - t0) / shards


def main() -> None:
    args = common.parse_args(argparse.ArgumentParser(description=__doc__), quick="5 shards instead of 20")
    shards = 2 if args.smoke else 5 if args.quick else 20
    port = _port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    import logging

    from moto.server import ThreadedMotoServer

    from chronoedit_sim import storage

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the server's line per request, not the table

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        storage.path("s3://bench").fs.mkdir("bench")
        with tempfile.TemporaryDirectory() as tmp:
            seconds_per_shard(os.path.join(tmp, "warm"), 1)  # imports and first-call costs out of both figures
            seconds_per_shard("s3://bench/warm", 1)
            rows = [{"target": "local disk", "s_per_shard": round(seconds_per_shard(tmp, shards), 4)},
                    {"target": "local S3 server (moto)", "s_per_shard": round(seconds_per_shard("s3://bench/out", shards), 4)}]
    finally:
        server.stop()
    for row in rows:
        row.update(shards=shards, rows_per_shard=ROWS)
    common.print_table(rows, ["target", "s_per_shard", "shards", "rows_per_shard"])
    common.write_result("object_store", {"machine": common.machine(), "rows": rows})


if __name__ == "__main__":
    main()
