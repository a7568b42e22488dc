"""A real run's Parquet read back through Hugging Face `datasets`: every image column decodes to PIL.

Written against datasets 5.2.0 (the version installed when this test was added), which maps the
schema's `Sequence` features of images to `List(Image())`.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from chronoedit_sim.runtime.run import run

pytestmark = pytest.mark.ray

STEPS, PREVIEW_EVERY = 4, 2  # the tiny preset's 4 steps; a preview every 2 steps


@pytest.fixture(scope="module")
def hf_rows(ray_session, run_overrides, one_edit_scenario, tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("hf_images")
    frames = root / "frames"
    frames.mkdir()
    y, x = np.mgrid[0:48, 0:80]
    Image.fromarray(np.stack([x * 3, y * 5, (x + y) % 256], -1).astype(np.uint8)).save(frames / "f0.png")
    out = root / "out"
    overrides = [*run_overrides, "generation.temporal_reasoning=true",
                 f"generation.num_inference_steps={STEPS}", f"generation.denoise_preview_every={PREVIEW_EVERY}",
                 "output.source_format=png"]  # lossless, so the source pixels can be compared
    assert run([str(one_edit_scenario)], str(frames), str(out), overrides, quiet=True, echo=lambda *_: None) == 0
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert len(ds) >= 1
    return list(ds)


def kinds(values):
    """What each element decoded to: ("Image", (w, h)) for PIL images, the type's name otherwise."""
    return [("Image", v.size) if isinstance(v, Image.Image) else type(v).__name__ for v in values]


def test_every_image_column_loads_as_pil_images_of_the_right_size(hf_rows, tiny_cfg):
    # tiny preset: 9 frames = 3 latent frames; 4 steps with 2 reasoning steps = partial reasoning
    num_frames = tiny_cfg.generation.num_frames
    assert num_frames == 9
    for row in hf_rows:
        assert row["error"] is None
        assert row["reasoning_kind"] == "x0_at_step_k"
        source = row["source_image"]
        assert isinstance(source, Image.Image) and source.size == (80, 48)  # the input, as read
        edited = row["edited_image"]
        assert isinstance(edited, Image.Image) and edited.size == (160, 96)  # fitted into the tiny max_area

        frames = row["reasoning_frames"]
        assert isinstance(frames, list)
        assert kinds(frames) == [("Image", (160, 96))] * num_frames

        previews = row["previews"]
        assert isinstance(previews, list)
        assert kinds(previews) == [("Image", (160, 96))] * (STEPS // PREVIEW_EVERY)
        # decodable, not just headers: the pixels load
        for img in (source, edited, frames[0], frames[-1], previews[-1]):
            assert np.asarray(img.convert("RGB")).shape[2] == 3


def test_source_image_round_trips_the_input_pixels(hf_rows):
    y, x = np.mgrid[0:48, 0:80]
    expected = np.stack([x * 3, y * 5, (x + y) % 256], -1).astype(np.uint8)
    for row in hf_rows:
        np.testing.assert_array_equal(np.asarray(row["source_image"].convert("RGB")), expected)
