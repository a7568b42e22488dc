"""#23: model weights on object storage: checked and hashed where they are, copied once per node."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from chronoedit_sim import storage
from chronoedit_sim.engine import weights
from chronoedit_sim.engine.node_cache import cache_folder, materialise
from chronoedit_sim.engine.weights import MissingWeightsError, checkpoint_components, model_hash, resolve_model_root
from helpers import flock_waiters


@pytest.fixture
def remote_model(s3, tiny_model_dir) -> str:
    """The tiny checkpoint uploaded under the test's prefix."""
    url = f"{s3}/tiny-chronoedit"
    dst = storage.path(url)
    dst.fs.put(str(tiny_model_dir) + "/", dst.path, recursive=True)
    return url


def whole_gets(requests, url: str) -> list[str]:
    """The objects under `url` that were downloaded whole (GET answered 200), relative names, sorted."""
    prefix = storage.path(url).path + "/"
    return sorted(key[len(prefix):] for method, key, status in requests
                  if method == "GET" and status == 200 and key.startswith(prefix))


def test_a_checkpoint_on_s3_has_the_components_and_hash_of_the_same_files_on_disk(remote_model, tiny_model_dir):
    root = resolve_model_root(remote_model)
    assert storage.is_remote(root)
    assert checkpoint_components(root) == checkpoint_components(tiny_model_dir)
    assert model_hash(root, []) == model_hash(tiny_model_dir, [])


def test_the_driver_check_reads_ranges_of_weight_files_never_a_whole_one(remote_model, tiny_model_dir,
                                                                         s3_requests, monkeypatch):
    # samples small enough that the tiny weight files (35-120 KB) are sampled as a 14B checkpoint's are
    monkeypatch.setattr(weights, "DIGEST_SAMPLES", 2)
    monkeypatch.setattr(weights, "DIGEST_CHUNK", 4096)
    local = model_hash(tiny_model_dir, [])
    asked = {}  # weight file -> bytes its GETs asked for, from the Range header of each request sent

    def on_send(request, **_):
        name = request.url.split("/", 4)[-1]
        if name.endswith(".safetensors"):
            first, last = request.headers["Range"].decode().removeprefix("bytes=").split("-")
            asked[name] = asked.get(name, 0) + int(last) - int(first) + 1

    events = storage.path(remote_model).fs.s3.meta.events
    events.register("before-send.s3.GetObject", on_send)
    s3_requests.clear()
    try:
        assert model_hash(resolve_model_root(remote_model), []) == local
    finally:
        events.unregister("before-send.s3.GetObject", on_send)
    assert whole_gets(s3_requests, remote_model) == []  # every GET answered 206 (configs too are ranged reads)
    expected, prefix = {}, remote_model.split("://")[1].split("/", 1)[1]  # the key, without the bucket
    for f in sorted(tiny_model_dir.rglob("*.safetensors")):
        header = int.from_bytes(f.read_bytes()[:8], "little")
        expected[f"{prefix}/{f.relative_to(tiny_model_dir)}"] = 8 + header + 2 * 4096
        assert 8 + header + 2 * 4096 < f.stat().st_size / 2
    # each weight file: its header's length, its header, the two sampled chunks
    assert asked == expected


@pytest.mark.parametrize("what, message", [
    ("nothing", "holds no objects (check the bucket, the prefix and the credentials)"),
    ("no index", "has no model_index.json (not a diffusers-layout checkpoint)"),
])
def test_a_url_without_a_checkpoint_is_one_clear_line(remote_model, what, message):
    url = remote_model + "-absent" if what == "nothing" else remote_model
    if what == "no index":
        storage.path(url).joinpath("model_index.json").unlink()
    with pytest.raises(MissingWeightsError) as err:
        resolve_model_root(url)
    assert message in str(err.value) and repr(url) in str(err.value) and "\n" not in str(err.value)


def test_an_actor_given_a_url_with_nothing_there_says_so_in_one_line(s3, tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        materialise(f"{s3}/nothing", str(tmp_path / "cache"))
    assert str(err.value) == (f"weights not found: {s3}/nothing holds no objects (check the bucket, the prefix and "
                              "the credentials)")


def test_a_node_copies_the_checkpoint_once_then_only_what_changed(remote_model, tiny_model_dir, s3_requests, tmp_path):
    cache = str(tmp_path / "cache")
    names = sorted(storage.listing(tiny_model_dir))
    root = materialise(remote_model, cache)
    assert root == cache_folder(remote_model, cache) and root.with_name(root.name + ".json").is_file()
    assert whole_gets(s3_requests, remote_model) == names
    assert model_hash(root, []) == model_hash(tiny_model_dir, [])
    s3_requests.clear()
    assert materialise(remote_model, cache) == root
    assert whole_gets(s3_requests, remote_model) == []  # a listing, no object
    # one object rewritten (same size, other bytes: a new ETag), one removed
    config = storage.path(remote_model) / "vae" / "config.json"
    before = config.read_text()
    config.write_text(before.replace(" ", "\t", 1))  # still JSON, same size
    assert storage.listing(config)["config.json"][0] == len(before)
    storage.path(remote_model).joinpath("image_processor", "preprocessor_config.json").unlink()
    s3_requests.clear()
    materialise(remote_model, cache)
    assert whole_gets(s3_requests, remote_model) == ["vae/config.json"]
    assert (root / "vae" / "config.json").read_text() == config.read_text()
    assert not (root / "image_processor" / "preprocessor_config.json").exists()
    assert sorted(storage.listing(root)) == [n for n in names if n != "image_processor/preprocessor_config.json"]


def test_a_copy_that_fails_leaves_no_partial_file_under_a_final_name_and_the_next_start_fetches_only_the_rest(
        remote_model, tiny_model_dir, s3_requests, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    folder = cache_folder(remote_model, cache)
    leftover = folder / "vae" / "config.json.part-99999"  # a killed copy's
    leftover.parent.mkdir(parents=True)
    leftover.write_text("{")
    fs = storage.path(remote_model).fs
    real_get = fs.get
    arrived = []

    def dropped(keys, parts):  # half the files arrive, the next one is cut short, then the connection drops
        half = len(keys) // 2
        real_get(keys[:half], parts[:half])
        arrived.extend(p.rsplit(".part-", 1)[0][len(str(folder)) + 1:] for p in parts[:half])
        with open(parts[half], "wb") as cut:
            cut.write(b"{")
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(fs, "get", dropped)
    with pytest.raises(MissingWeightsError) as err:
        materialise(remote_model, cache)
    files = storage.listing(tiny_model_dir)
    assert str(err.value) == (f"weights at {remote_model}: copying to {folder} failed ({len(arrived)} of "
                              f"{len(files)} files are there; the next start fetches the rest): connection reset by peer")
    # only whole files under final names, each as big as its source; no part left
    assert sorted(storage.listing(folder)) == sorted(arrived) and len(arrived) == len(files) // 2
    assert all((folder / rel).stat().st_size == files[rel][0] for rel in arrived)
    monkeypatch.setattr(fs, "get", real_get)
    s3_requests.clear()
    assert materialise(remote_model, cache) == folder
    assert whole_gets(s3_requests, remote_model) == sorted(set(files) - set(arrived))
    assert sorted(storage.listing(folder)) == sorted(files)
    assert all((folder / rel).read_bytes() == (tiny_model_dir / rel).read_bytes() for rel in files)


def test_a_resume_on_the_same_output_reads_no_object_again(remote_model, s3_requests):
    from chronoedit_sim.config import load_config
    from chronoedit_sim.runtime.run import weights_identity

    cfg = load_config(["model=tiny", f"model.path={remote_model}", "scoring.clip.enabled=false"])
    cache = {}
    first = weights_identity(cfg, cache)
    # each weight file's digest under its URL, stamped with its size and ETag
    assert {key: (entry["size"], entry["version"]) for key, entry in cache.items()} == {
        f"{remote_model}/{rel}": stamp for rel, stamp in storage.listing(remote_model).items()
        if rel.endswith(".safetensors")}
    s3_requests.clear()
    assert weights_identity(cfg, cache) == first
    read = {key for method, key, status in s3_requests if method == "GET" and status == 206}
    # configs are read again (they are hashed whole, not by their stamp); weight files are not
    assert read and not [key for key in read if key.endswith(".safetensors")], read


def test_two_actors_starting_together_on_one_node_download_once(remote_model, tiny_model_dir, s3_requests, tmp_path):
    cache = str(tmp_path / "cache")
    folder = cache_folder(remote_model, cache)
    folder.mkdir(parents=True)
    code = f"from chronoedit_sim.engine.node_cache import materialise; print(materialise({remote_model!r}, {cache!r}))"
    with open(folder.parent / f"{folder.name}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as an actor that is downloading
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
        deadline = time.monotonic() + 60
        while flock_waiters(held.name) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flock_waiters(held.name) == 2
        assert whole_gets(s3_requests, remote_model) == []  # both wait; neither has listed or fetched
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == [str(folder)] * 2 and all(p.returncode == 0 for p in procs)
    assert whole_gets(s3_requests, remote_model) == sorted(storage.listing(tiny_model_dir))  # each object once


def test_an_editor_loads_from_s3_and_edits_as_from_the_local_folder(remote_model, editor, tiny_cfg, frame, tmp_path):
    from chronoedit_sim.engine.editor import Editor

    remote = Editor(replace(tiny_cfg.model, path=remote_model, cache_dir=str(tmp_path / "cache")))
    assert remote.root == cache_folder(remote_model, str(tmp_path / "cache"))
    assert remote.identity.model_id == remote_model and remote.identity.random_weights
    assert remote.identity.model_hash == editor.identity.model_hash
    a = remote.edit(frame, "Add a red car.", seed=5, gen=tiny_cfg.generation)
    b = editor.edit(frame, "Add a red car.", seed=5, gen=tiny_cfg.generation)
    assert np.array_equal(a.edited, b.edited)


def test_a_lora_header_is_read_alike_from_disk_and_from_s3_alphas_and_all(s3, tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from chronoedit_sim.engine.lora import _header_tensors

    local = tmp_path / "a.safetensors"
    save_file({"blocks.0.q.lora_A.weight": torch.ones(4, 24), "blocks.0.q.alpha": torch.tensor(8.0),
               "blocks.1.q.alpha": torch.tensor(2.5, dtype=torch.bfloat16),
               "blocks.2.q.alpha": torch.tensor(3, dtype=torch.int8),
               "blocks.3.q.alpha": torch.tensor(1.5, dtype=torch.float8_e4m3fn)}, str(local))
    remote = storage.path(f"{s3}/a.safetensors")
    storage.put(remote, local.read_bytes())
    with safe_open(str(local), "pt") as f:
        expected = {k: f.get_tensor(k) for k in f.keys()}
    for where in (local, remote):
        got = _header_tensors(where)
        assert sorted(got) == sorted(expected)
        assert got["blocks.0.q.lora_A.weight"].is_meta and got["blocks.0.q.lora_A.weight"].shape == (4, 24)
        for k in ("blocks.0.q.alpha", "blocks.1.q.alpha", "blocks.2.q.alpha", "blocks.3.q.alpha"):
            assert got[k].dtype == expected[k].dtype and torch.equal(got[k].float(), expected[k].float()), where


def test_a_transformer_and_loras_on_s3_are_checked_where_they_are_and_load_from_node_copies(
        s3, remote_model, tiny_model_dir, tiny_cfg, frame, tmp_path, s3_requests):
    import shutil

    from chronoedit_sim.config import load_config
    from chronoedit_sim.engine.editor import Editor
    from chronoedit_sim.runtime.run import weights_identity
    from helpers import write_diffsynth_lora

    local = shutil.copytree(tiny_model_dir, tmp_path / "local")
    (local / "lora").mkdir()
    inside, apart = write_diffsynth_lora(local / "lora" / "in.safetensors", 1), write_diffsynth_lora(
        tmp_path / "apart.safetensors", 2)
    root = storage.path(remote_model)
    root.fs.put_file(str(inside), f"{root.path}/lora/in.safetensors")
    root.fs.put_file(str(apart), storage.path(f"{s3}/apart.safetensors").path)
    donor = f"{s3}/donor"
    root.fs.put(str(tiny_model_dir) + "/", storage.path(donor).path, recursive=True)
    common = ["model=tiny", "scoring.clip.enabled=false", f"model.cache_dir={tmp_path / 'cache'}"]
    on_s3 = load_config([*common, f"model.path={remote_model}", f"model.transformer_path={donor}",
                         f"model.loras=[{{path: lora/in.safetensors}}, {{path: {s3}/apart.safetensors}}]"])
    on_disk = load_config([*common, f"model.path={local}", f"model.transformer_path={tiny_model_dir}",
                           f"model.loras=[{{path: lora/in.safetensors}}, {{path: {apart}}}]"])
    s3_requests.clear()
    assert weights_identity(on_s3) == weights_identity(on_disk)
    assert whole_gets(s3_requests, s3) == []  # the driver: listings and ranged reads only
    assert not (tmp_path / "cache").exists()
    a, b = Editor(on_s3.model), Editor(on_disk.model)
    # the node copies what it loads: not model.path's own transformer, and of the donor only its transformer/
    assert a.transformer_dir == cache_folder(f"{donor}/transformer", str(tmp_path / "cache"))
    assert not (a.root / "transformer").exists() and (a.root / "vae").is_dir()
    fetched = whole_gets(s3_requests, s3)
    assert fetched and not [f for f in fetched if f.startswith("tiny-chronoedit/transformer/")]
    assert sorted(f for f in fetched if f.startswith("donor/")) == sorted(
        f"donor/{rel}" for rel in storage.listing(tiny_model_dir) if rel.startswith("transformer/"))
    assert a.identity.model_hash == b.identity.model_hash and a.identity.loras == b.identity.loras
    assert np.array_equal(a.edit(frame, "Add a red car.", seed=5, gen=tiny_cfg.generation).edited,
                          b.edit(frame, "Add a red car.", seed=5, gen=tiny_cfg.generation).edited)


def test_on_a_cluster_the_driver_refuses_a_url_without_a_checkpoint_before_ray(remote_model, tiny_overrides,
                                                                               one_edit_scenario, tmp_path, capsys,
                                                                               monkeypatch):
    from PIL import Image

    from chronoedit_sim.cli import main
    from chronoedit_sim.runtime import run as run_module

    monkeypatch.setattr(run_module, "execute", lambda *a, **k: pytest.fail("the run reached Ray"))
    (tmp_path / "frames").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "frames" / "f.png")
    storage.path(remote_model).joinpath("model_index.json").unlink()
    assert main(["run", str(one_edit_scenario), "--input", str(tmp_path / "frames"), "--output",
                 str(tmp_path / "out"), "-q", *tiny_overrides, f"model.path={remote_model}",
                 "runtime.address=127.0.0.1:1"]) == 2
    # the S3 server runs in this process: its access log reaches the command's log handler too
    err = [line for line in capsys.readouterr().err.splitlines() if " werkzeug: " not in line]
    assert len(err) == 1 and not (tmp_path / "out").exists()
    assert err[0].startswith(f"error: ChronoEdit weights incomplete: URL {remote_model!r} has no model_index.json")


def test_a_vlm_on_a_url_is_refused_in_one_line():
    from chronoedit_sim.config import VlmConfig
    from chronoedit_sim.engine.vlm import resolve_vlm_root

    with pytest.raises(MissingWeightsError) as err:
        resolve_vlm_root(VlmConfig(path="s3://bucket/Qwen3-VL"))
    assert str(err.value) == ("vlm.path=s3://bucket/Qwen3-VL: the VLM is not read from a URL; copy it to each node "
                              "and set vlm.path to its folder")


def test_folder_marker_objects_are_not_files_of_the_checkpoint(remote_model, tiny_model_dir, tmp_path):
    """Zero-byte keys ending in "/" (the S3 console's "Create folder", sync tools) are listed by the store as
    files; the checkpoint is the same without them."""
    fs, key = storage.path(remote_model).fs, storage.path(remote_model).path
    for marker in (f"{key}/", f"{key}/vae/"):
        fs.pipe_file(marker, b"")
    fs.invalidate_cache()
    assert {f"{key}/", f"{key}/vae/"} <= set(fs.find(key))  # the store lists them among the files
    assert sorted(storage.listing(remote_model)) == sorted(storage.listing(tiny_model_dir))
    assert model_hash(resolve_model_root(remote_model), []) == model_hash(tiny_model_dir, [])
    copy = materialise(remote_model, str(tmp_path / "cache"))
    assert sorted(storage.listing(copy)) == sorted(storage.listing(tiny_model_dir))


def test_a_copy_without_a_folder_leaves_that_folder_as_it_is_and_a_later_whole_copy_fetches_only_it(
        remote_model, tiny_model_dir, s3_requests, tmp_path):
    cache = str(tmp_path / "cache")
    files = storage.listing(tiny_model_dir)
    inside = sorted(rel for rel in files if rel.startswith("transformer/"))
    folder = materialise(remote_model, cache, skip=("transformer/",))
    assert sorted(storage.listing(folder)) == sorted(set(files) - set(inside))
    s3_requests.clear()
    assert materialise(remote_model, cache) == folder and whole_gets(s3_requests, remote_model) == inside
    # an object changes: a copy without the transformer fetches it; what it skips stays, vouched for
    vae = storage.path(remote_model) / "vae" / "config.json"
    vae.write_text((tiny_model_dir / "vae" / "config.json").read_text() + " ")
    s3_requests.clear()
    materialise(remote_model, cache, skip=("transformer/",))
    assert whole_gets(s3_requests, remote_model) == ["vae/config.json"] and sorted(storage.listing(folder)) == sorted(files)
    s3_requests.clear()
    materialise(remote_model, cache)
    assert whole_gets(s3_requests, remote_model) == []
