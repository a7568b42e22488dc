"""detect: a user's detector over images, for `evaluate`; and the read step that feeds it from the shards.

The detector is `module:callable` or `path/to/file.py:callable`. A class is instantiated once per actor
(its __init__ loads the weights; it gets `device=` when it takes one); a function is called as it is.
Called with a list of PIL images, it returns per image a list of detections
{"box": [x0, y0, x1, y1], "label": str, "score": float} in that image's pixels (each image's size goes
with them: evaluate refuses boxes outside it).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import os

from .. import storage
from ..errors import UserError
from .base import Resources, Stage

# a row's error when the detector could not be built (its class's __init__ raised)
START_FAILED = "the detector cannot start: "
# a row's error when its shard could not be read (deleted or replaced since the index, unreadable, the store
# unreachable): the image is left out like a failed one, and the detector is not blamed
READ_FAILED = "cannot read shard "


def load_callable(spec: str):
    """The object `spec` names; a UserError that says what is wrong otherwise."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"--detector {spec!r}: expected module:callable or path/to/file.py:callable")
    try:
        if module_name.endswith(".py"):
            path = os.path.abspath(module_name)
            if not os.path.isfile(path):
                raise UserError(f"--detector {spec!r}: {path} does not exist")
            loader = importlib.util.spec_from_file_location(f"_detector_{abs(hash(path))}", path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"--detector {spec!r}: cannot import {module_name} ({type(e).__name__}: {e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"--detector {spec!r}: {module_name} has no callable {attr!r}")
    return fn


class ExitCalled(Exception):
    pass


def _refuse_exit(code: int) -> None:
    raise ExitCalled(f"it called os._exit({code}) while starting")


def _check(dets, n: int) -> list[list[dict]]:
    if not isinstance(dets, (list, tuple)) or len(dets) != n:
        raise ValueError(f"the detector returned {type(dets).__name__} of length "
                         f"{len(dets) if hasattr(dets, '__len__') else '?'} for {n} image(s); expected a list per image")
    out = []
    for per_image in dets:
        if isinstance(per_image, str):  # a classifier: one label per image
            out.append(per_image)
            continue
        checked = []
        for d in per_image:
            box = [float(v) for v in d["box"]]
            if len(box) != 4:
                raise ValueError(f"a detection's box has {len(box)} values, not 4: {d}")
            checked.append({"box": box, "label": str(d["label"]), "score": float(d["score"])})
        out.append(checked)
    return out


class DetectStage(Stage):
    """Rows {"job_id": image key, "image": bytes, "batch": ..., "error": None} in; "detections" out, image
    dropped. The reader groups a detector call's images under one `batch` value: they travel to the actor as
    one Ray Data row (per-row overhead is tens of milliseconds on a small machine, per image)."""

    name = "detect"
    group_by = "batch"

    def __init__(self, spec: str, device: str, resources: Resources):
        self.spec, self.device = spec, device
        self.resources, self.batch_size = resources, 1  # one reader batch per call
        self.fn, self.broken = None, ""

    def setup(self) -> None:
        """A detector that raises while starting is not retried: each of its rows says so (START_FAILED),
        and evaluate stops with one line instead of Ray's traceback of every actor restart."""
        real_exit = os._exit
        # a detector that ends its own process while starting (os._exit) would have Ray restart the actor
        # and print each death: while it starts, that call raises instead, and is reported like an error
        os._exit = _refuse_exit
        try:
            obj = load_callable(self.spec)
            if inspect.isclass(obj):
                takes_device = "device" in inspect.signature(obj).parameters
                obj = obj(device=self._device()) if takes_device else obj()
        except Exception as exc:  # the user's code: anything may come out of it
            text = str(exc).strip()
            self.broken = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
            return
        finally:
            os._exit = real_exit
        self.fn = obj

    def _device(self) -> str:
        """"auto" is cuda where this actor was given a GPU (Ray sets what it sees), else cpu."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def process_batch(self, rows: list[dict]) -> list[dict]:
        from PIL import Image

        def work(rows):
            images = [Image.open(io.BytesIO(r.pop("image"))).convert("RGB") for r in rows]
            for row, image, dets in zip(rows, images, _check(self.fn(images), len(images))):
                row["detections"], row["size"] = dets, image.size
            return rows

        live = [r for r in rows if not r["error"]]
        if self.broken:
            for r in live:
                r["error"] = START_FAILED + self.broken
        else:
            self.guard(live, work)
        for r in rows:
            r.pop("image", None)
        return rows


class ShardImagesStage(Stage):
    """A shard's wanted images, one row each: the edited image of each job, the source image where the
    job stands for its frame in the clean split, in groups of one detector call. Runs as tasks, beside the
    detector actors."""

    name = "images"

    def __init__(self, images_per_batch: int):
        self.images_per_batch = images_per_batch
        self.resources, self.batch_size = Resources(cpus=None), 1

    def process_batch(self, tasks: list[dict]) -> list[dict]:
        return [row for part in self.iter_batch(tasks) for row in part]

    def iter_batch(self, tasks: list[dict]):
        """A record batch of images at a time: a shard holds hundreds of them, and the detector can start on
        the first while the rest are read."""
        for task in tasks:
            missing = set(task["edited"]) | {"clean:" + j for j in task["clean"]}
            out: list[dict] = []
            why = "not in it any more (replaced since the index was read)"
            try:
                for row in self._images(task):
                    out.append(row)
                    missing.discard(row["job_id"])
                    if len(out) == self.images_per_batch:
                        yield self._tagged(task["shard"], out)
                        out = []
            except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid (a corrupt shard) is a ValueError
                text = str(exc).strip()
                why = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
            # nothing is lost: an image the shard did not give is an error row, left out of the numbers
            out += [{"job_id": key, "image": b"", "error": f"{READ_FAILED}{task['shard'].rsplit('/', 1)[-1]}: {why}"}
                    for key in sorted(missing)]
            if out:
                yield self._tagged(task["shard"], out)

    @staticmethod
    def _images(task: dict):
        """The wanted images of a task's shard, one row each, as the shard is read."""
        shard = storage.parquet(task["shard"])
        for batch in shard.iter_batches(columns=["job_id", "source_image", "edited_image"], batch_size=16):
            for row in batch.to_pylist():
                if row["job_id"] in task["edited"]:
                    yield {"job_id": row["job_id"], "image": row["edited_image"]["bytes"]}
                if row["job_id"] in task["clean"]:
                    yield {"job_id": "clean:" + row["job_id"], "image": row["source_image"]["bytes"]}

    def _tagged(self, shard: str, rows: list[dict]) -> list[dict]:
        tag = f"{shard}:{rows[0]['job_id']}"  # one value per detector call
        return [{"error": None, **r, "batch": tag} for r in rows]
