"""Tests for chronoedit_sim.scoring.clip: the tiny random CLIP, caption caching, offline weight resolution.

The tiny CLIP (32-d embeddings, random weights) is written once per module and loads in about a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chronoedit_sim.config import ClipConfig
from chronoedit_sim.engine.tiny import TINY_MARKER
from chronoedit_sim.engine.weights import MissingWeightsError
from chronoedit_sim.scoring.clip import TINY_CLIP_CONFIG, ClipEmbedder, resolve_clip_weights, write_tiny_clip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def embedder(tiny_clip_dir):
    return ClipEmbedder(ClipConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu", batch_size=2))


def _frames(frame):
    return [frame, np.ascontiguousarray(frame[::-1]), 255 - frame]


# ---- write_tiny_clip and loading -------------------------------------------------------


def test_write_tiny_clip_layout(tiny_clip_dir):
    assert sorted(p.name for p in tiny_clip_dir.iterdir()) == sorted(
        ["open_clip_config.json", "open_clip_model.safetensors", TINY_MARKER])
    config = json.loads((tiny_clip_dir / "open_clip_config.json").read_text())
    assert config == {"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}
    marker = json.loads((tiny_clip_dir / TINY_MARKER).read_text())
    assert (marker["random_weights"], marker["seed"]) == (True, 0)


def test_write_tiny_clip_returns_the_directory_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "clip"
    assert write_tiny_clip(target, seed=3) == target
    assert (target / "open_clip_model.safetensors").is_file()
    assert json.loads((target / TINY_MARKER).read_text())["seed"] == 3


def test_resolve_local_dir(tiny_clip_dir):
    assert resolve_clip_weights(ClipConfig(model=f"local-dir:{tiny_clip_dir}")) == (f"local-dir:{tiny_clip_dir}", None)


def test_loads_through_open_clip(embedder, tiny_clip_dir):
    import open_clip

    assert isinstance(embedder.model, open_clip.CLIP)
    assert embedder.device == "cpu"
    assert embedder.model.training is False
    assert embedder.model.visual.image_size == (32, 32)
    assert embedder.random_weights is True
    assert json.loads(embedder.identity) == {"model": f"local-dir:{tiny_clip_dir}", "pretrained": None,
                                             "random_weights": True}
    assert '"random_weights": true' in embedder.identity


def test_loaded_weights_are_the_written_ones(embedder, tiny_clip_dir):
    from safetensors.torch import load_file

    written = load_file(str(tiny_clip_dir / "open_clip_model.safetensors"))
    loaded = embedder.model.state_dict()
    assert set(written) == set(loaded)
    for key in ("visual.conv1.weight", "token_embedding.weight", "text_projection"):
        assert np.array_equal(written[key].numpy(), loaded[key].numpy()), key


def test_image_embeddings_shape_and_unit_norm(embedder, frame):
    # batch_size=2: three frames take two forward passes
    emb = embedder.images(_frames(frame))
    assert emb.shape == (3, 32)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(emb).all()
    # different images, different embeddings
    assert not np.allclose(emb[0], emb[1])
    assert not np.allclose(emb[0], emb[2])


def test_image_embeddings_deterministic(embedder, frame):
    first = embedder.images(_frames(frame))
    second = embedder.images(_frames(frame))
    assert np.array_equal(first, second)


def test_image_embedding_independent_of_batch_neighbours(embedder, frame):
    alone = embedder.images([frame])[0]
    batched = embedder.images(_frames(frame))[0]
    np.testing.assert_allclose(alone, batched, atol=1e-6)


def test_images_of_any_size(embedder, frame):
    small = np.ascontiguousarray(frame[:20, :30])
    emb = embedder.images([small, frame])
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_caption_embeddings_shape_and_unit_norm(tiny_clip_dir):
    clip = ClipEmbedder(ClipConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu"))
    emb = clip.captions(["a street", "a street in the rain"])
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])


def test_same_seed_same_bytes_different_seed_differs(tmp_path, tiny_clip_dir):
    again = write_tiny_clip(tmp_path / "again", seed=0)
    other = write_tiny_clip(tmp_path / "other", seed=1)
    weights = "open_clip_model.safetensors"
    assert (again / weights).read_bytes() == (tiny_clip_dir / weights).read_bytes()
    assert (other / weights).read_bytes() != (tiny_clip_dir / weights).read_bytes()


def test_different_seed_gives_different_embeddings(tmp_path, embedder, frame):
    other = ClipEmbedder(ClipConfig(model=f"local-dir:{write_tiny_clip(tmp_path / 'other', seed=1)}", device="cpu"))
    assert not np.allclose(other.images([frame]), embedder.images([frame]))


def test_local_dir_without_marker_is_not_random(tmp_path, tiny_clip_dir):
    import shutil

    copy = tmp_path / "real-looking"
    shutil.copytree(tiny_clip_dir, copy)
    (copy / TINY_MARKER).unlink()
    clip = ClipEmbedder(ClipConfig(model=f"local-dir:{copy}", device="cpu"))
    assert clip.random_weights is False
    assert json.loads(clip.identity)["random_weights"] is False


# ---- caption cache ------------------------------------------------------------------------


def test_caption_cache_encodes_each_distinct_caption_once(tiny_clip_dir):
    clip = ClipEmbedder(ClipConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu"))
    assert clip.text_encodes == 0
    first = clip.captions(["a", "b", "a", "a", "b"])
    assert clip.text_encodes == 2
    assert first.shape == (5, 32)
    assert np.array_equal(first[0], first[2]) and np.array_equal(first[0], first[3])
    assert np.array_equal(first[1], first[4])
    assert not np.allclose(first[0], first[1])
    second = clip.captions(["a", "c"])
    assert clip.text_encodes == 3
    assert np.array_equal(second[0], first[0])
    assert not np.allclose(second[1], first[0]) and not np.allclose(second[1], first[1])
    clip.captions(["c", "b", "a"])
    assert clip.text_encodes == 3


def test_cached_caption_equals_a_fresh_encoding(tiny_clip_dir):
    """The cache returns what the text tower would compute for the caption on its own."""
    warm = ClipEmbedder(ClipConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu"))
    cached = warm.captions(["x", "a street", "y"])[1]
    fresh = ClipEmbedder(ClipConfig(model=f"local-dir:{tiny_clip_dir}", device="cpu")).captions(["a street"])[0]
    np.testing.assert_allclose(cached, fresh, atol=1e-6)


# ---- resolve_clip_weights errors ------------------------------------------------------------


def test_local_dir_without_config(tmp_path):
    cfg = ClipConfig(model=f"local-dir:{tmp_path}")
    with pytest.raises(MissingWeightsError) as err:
        resolve_clip_weights(cfg)
    msg = str(err.value)
    assert msg.startswith(f"CLIP weights not found: local-dir:{tmp_path}: no open_clip_config.json in {tmp_path}. ")
    assert "make-tiny-model" in msg and "scoring.clip.enabled=false" in msg


def test_local_dir_missing_folder(tmp_path):
    with pytest.raises(MissingWeightsError, match="no open_clip_config.json"):
        resolve_clip_weights(ClipConfig(model=f"local-dir:{tmp_path / 'nope'}"))


def test_local_dir_with_config_but_no_weights(tmp_path, tiny_clip_dir):
    (tmp_path / "open_clip_config.json").write_text((tiny_clip_dir / "open_clip_config.json").read_text())
    with pytest.raises(MissingWeightsError) as err:
        resolve_clip_weights(ClipConfig(model=f"local-dir:{tmp_path}"))
    assert str(err.value).startswith(f"CLIP weights not found: local-dir:{tmp_path}: no weight file in {tmp_path}. ")
    with pytest.raises(MissingWeightsError, match="no weight file"):
        ClipEmbedder(ClipConfig(model=f"local-dir:{tmp_path}", device="cpu"))


def test_local_dir_with_bin_weights_resolves(tmp_path):
    (tmp_path / "open_clip_config.json").write_text("{}")
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"")
    assert resolve_clip_weights(ClipConfig(model=f"local-dir:{tmp_path}")) == (f"local-dir:{tmp_path}", None)


def test_local_dir_expands_home(tmp_path, monkeypatch, tiny_clip_dir):
    import shutil

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_clip_dir, tmp_path / "clip")
    assert resolve_clip_weights(ClipConfig(model="local-dir:~/clip")) == (f"local-dir:{tmp_path / 'clip'}", None)


def test_unknown_architecture():
    with pytest.raises(MissingWeightsError) as err:
        resolve_clip_weights(ClipConfig(model="ViT-Q-99"))
    assert str(err.value) == ("scoring.clip.model: 'ViT-Q-99' is not an open_clip architecture "
                              "(see open_clip.list_models()) nor local-dir:PATH")


def test_pretrained_neither_file_nor_tag(tmp_path):
    cfg = ClipConfig(model="ViT-B-32", pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(MissingWeightsError) as err:
        resolve_clip_weights(cfg)
    assert str(err.value).startswith(f"CLIP weights not found: scoring.clip.pretrained='{tmp_path / 'missing.pt'}' "
                                     "is neither a file nor an open_clip tag of ViT-B-32. ")


def test_pretrained_unknown_tag():
    with pytest.raises(MissingWeightsError, match="is neither a file nor an open_clip tag of ViT-B-32"):
        resolve_clip_weights(ClipConfig(model="ViT-B-32", pretrained="no_such_tag"))


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache and an empty ~/.cache/clip."""
    import huggingface_hub.constants

    hub, home = tmp_path / "hub", tmp_path / "home"
    hub.mkdir()
    home.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub, home


def test_pretrained_tag_not_cached(empty_caches):
    _, home = empty_caches
    cfg = ClipConfig(model="ViT-B-32", pretrained="openai")
    with pytest.raises(MissingWeightsError) as err:
        resolve_clip_weights(cfg)
    msg = str(err.value)
    assert msg.startswith("CLIP weights not found: ViT-B-32 / openai: tried ")
    assert "(scoring.clip.allow_download is false)" in msg
    tried = msg.split(": tried ", 1)[1].split(" (scoring.clip", 1)[0].split(", ")
    assert tried == ["timm/vit_base_patch32_clip_224.openai/open_clip_pytorch_model.safetensors",
                     "timm/vit_base_patch32_clip_224.openai/open_clip_pytorch_model.bin",
                     str(home / ".cache" / "clip" / "ViT-B-32.pt")]
    # the hint names the command that fills the cache
    assert "open_clip.create_model_and_transforms('ViT-B-32', pretrained='openai')" in msg


def test_slash_architecture_name_is_normalised(empty_caches):
    with pytest.raises(MissingWeightsError, match=r"^CLIP weights not found: ViT-B-32 / openai: tried "):
        resolve_clip_weights(ClipConfig(model="ViT-B/32", pretrained="openai"))


def test_pretrained_tag_found_in_the_clip_cache(empty_caches):
    _, home = empty_caches
    cached = home / ".cache" / "clip" / "ViT-B-32.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really weights")
    assert resolve_clip_weights(ClipConfig(model="ViT-B-32", pretrained="openai")) == ("ViT-B-32", str(cached))


def test_pretrained_tag_found_in_the_hub_cache_prefers_safetensors(empty_caches):
    hub, _ = empty_caches
    repo = Path(hub) / "models--timm--vit_base_patch32_clip_224.openai"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"bin")
    name, path = resolve_clip_weights(ClipConfig(model="ViT-B-32", pretrained="openai"))
    assert (name, Path(path)) == ("ViT-B-32", snapshot / "open_clip_pytorch_model.bin")
    (snapshot / "open_clip_pytorch_model.safetensors").write_bytes(b"st")
    name, path = resolve_clip_weights(ClipConfig(model="ViT-B-32", pretrained="openai"))
    assert (name, Path(path)) == ("ViT-B-32", snapshot / "open_clip_pytorch_model.safetensors")


def test_pretrained_existing_file_is_returned_as_is(tmp_path):
    weights = tmp_path / "my_clip.pt"
    weights.write_bytes(b"dummy")
    assert resolve_clip_weights(ClipConfig(model="ViT-B-32", pretrained=str(weights))) == ("ViT-B-32", str(weights))


def test_pretrained_file_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "w.safetensors").write_bytes(b"dummy")
    assert resolve_clip_weights(ClipConfig(model="ViT-B-32", pretrained="~/w.safetensors")) == (
        "ViT-B-32", str(tmp_path / "w.safetensors"))


def test_pretrained_file_does_not_rescue_an_unknown_architecture(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"dummy")
    with pytest.raises(MissingWeightsError, match="'NotAClip' is not an open_clip architecture"):
        resolve_clip_weights(ClipConfig(model="NotAClip", pretrained=str(weights)))
