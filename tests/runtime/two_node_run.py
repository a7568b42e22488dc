"""Run by test_cluster.py in its own process: a two-node Ray cluster on this machine (ray.cluster_utils),
a run whose worker node is removed as soon as one of its edits has come back, and a JSON summary written to
SUMMARY (a file: Ray's own lines, `(raylet) Task ... failed`, land on this process's stdout too).

Usage: python two_node_run.py SCENARIO FRAMES OUT TEMP_DIR SUMMARY OVERRIDE...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from chronoedit_sim.runtime.run import run


def main(scenario: str, frames: str, out: str, temp_dir: str, summary: str, *overrides: str) -> None:
    # Cluster records its address in /tmp/ray/ray_current_cluster whatever temp_dir says
    os.makedirs("/tmp/ray", exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "include_dashboard": False,
                                                            "temp_dir": temp_dir})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    removed = []

    def lose_the_worker(row: dict) -> None:
        # deterministic: the first edit that comes back from the worker node takes the node with it,
        # while its actor still holds queued jobs (runtime.queue_per_actor)
        if not removed and row["nodes"] and json.loads(row["nodes"]).get("edit") == worker.node_id:
            cluster.remove_node(worker, allow_graceful=False)
            removed.append(row["job_id"])

    code = run([scenario], frames, out, list(overrides), quiet=True, echo=lambda *_: None, on_row=lose_the_worker)
    Path(summary).write_text(json.dumps({"code": code, "head": cluster.head_node.node_id, "worker": worker.node_id,
                                         "removed_after": removed}))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
