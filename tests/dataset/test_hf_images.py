"""A real run's Parquet read back through Hugging Face `datasets`: every image column decodes to PIL.

Written against datasets 5.2.0 (the version installed when this test was added), which maps the
schema's `Sequence` features of images to `List(Image())`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import SCORED_LABELS, SCORED_PREVIEW_EVERY, SCORED_STEPS, scored_frame

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def hf_rows(scored_dataset):
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(scored_dataset / "data" / "*.parquet"), split="train")
    assert len(ds) == 4
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
        assert kinds(previews) == [("Image", (160, 96))] * (SCORED_STEPS // SCORED_PREVIEW_EVERY)
        # decodable, not just headers: the pixels load
        for img in (source, edited, frames[0], frames[-1], previews[-1]):
            assert np.asarray(img.convert("RGB")).shape[2] == 3


def test_source_image_round_trips_the_input_pixels(hf_rows):
    for row in hf_rows:
        expected = scored_frame(int(Path(row["source_id"]).stem))  # training/image_2/000000.png ...
        np.testing.assert_array_equal(np.asarray(row["source_image"].convert("RGB")), expected)


def test_ground_truth_loads_as_a_list_of_objects_scaled_to_the_edited_image(hf_rows):
    # the KITTI labels beside the frames, carried by the scenario's default policy (keep): the box in the
    # edited image's pixels (160x96, twice the source's 80x48), the label file's box beside it
    for row in hf_rows:
        labels = SCORED_LABELS[int(Path(row["source_id"]).stem)]
        anns = row["annotations"]
        assert [(a["label"], a["source_box"]) for a in anns] == [(label, list(box)) for label, box in labels]
        assert [a["box"] for a in anns] == [[2 * v for v in box] for _, box in labels]
        assert [a["ignore"] for a in anns] == [label == "DontCare" for label, _ in labels]
        assert not any(a["synthetic"] for a in anns)
