"""The run's input to Ray Data, streamed from the plan."""

from __future__ import annotations

from ray.data import Datasource

from ..dataset.jobindex import JobIndex
from .adapter import PAYLOAD, to_payload
from .plan import RunPlan


class PlanSource(Datasource):
    """The run's input to Ray Data: one read task that lists the input and expands its jobs as the pipeline
    pulls them (a streaming generator: Ray Data's backpressure pauses it), one frame task a block. The driver
    never holds the frame or job list; a corpus's first job starts after its first frame is listed."""

    def __init__(self, plan: RunPlan, skip: JobIndex):
        self.plan, self.skip = plan, skip

    def estimate_inmemory_data_size(self) -> None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list:
        import pyarrow as pa
        from ray.data.block import BlockMetadata
        from ray.data.datasource import ReadTask

        plan, skip = self.plan, self.skip

        def read():
            for task in plan.frame_tasks(skip):
                yield pa.table({PAYLOAD: pa.array(to_payload([task])[PAYLOAD], pa.binary())})

        return [ReadTask(read, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None))]
