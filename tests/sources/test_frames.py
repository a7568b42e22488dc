"""Tests for chronoedit_sim.sources.frames; every input is generated in tmp_path."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from chronoedit_sim.config import InputConfig
from chronoedit_sim.sources.decode import DecodedImage, FrameError
from chronoedit_sim.sources.frames import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FrameRef,
    InputError,
    list_frames,
    read_frames,
)

W, H = 64, 48
BITS = 7  # frame numbers up to 127, one 8-px column per bit in the top half


def png_bytes(color=(10, 20, 30), size=(32, 24), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def encode_frame(i: int) -> np.ndarray:
    """BGR frame: the frame number in binary as white columns on top, pure blue (BGR 255,0,0) below."""
    f = np.zeros((H, W, 3), np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            f[: H // 2, b * 8 : (b + 1) * 8] = 255
    f[H // 2 :, :] = (255, 0, 0)
    return f


def decode_frame_number(rgb: np.ndarray) -> int:
    """Reads encode_frame's number back, sampling column centres so codec noise at edges does not matter."""
    top = rgb[4 : H // 2 - 4].mean(axis=(0, 2))
    return sum(1 << b for b in range(BITS) if top[b * 8 + 2 : b * 8 + 6].mean() > 128)


def write_video(path: Path, n: int, fps: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    assert vw.isOpened()
    for i in range(n):
        vw.write(encode_frame(i))
    vw.release()
    return path


@pytest.fixture
def image_tree(tmp_path) -> Path:
    root = tmp_path / "frames"
    for rel in ["b.PNG", "a.jpg", "cam1/002.JPEG", "cam1/001.png", "cam0/sub/x.webp", "cam0/000.bmp", "z.Jpg"]:
        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}[Path(rel).suffix.lower()]
        write(root / rel, png_bytes(fmt=fmt))
    write(root / ".hidden/h.png", png_bytes())  # hidden dir: skipped
    write(root / "cam0/.h.png", png_bytes())  # hidden file: skipped
    write(root / "notes.txt", b"not an image")  # wrong extension: skipped
    write(root / "cam0/empty.png", b"")  # zero bytes: kept, becomes an error row later
    return root


ORDERED = ["a.jpg", "b.PNG", "z.Jpg", "cam0/000.bmp", "cam0/empty.png", "cam0/sub/x.webp", "cam1/001.png", "cam1/002.JPEG"]


def test_image_folder_ids_order_and_fields(image_tree):
    refs = list_frames(InputConfig(path=str(image_tree)))
    assert [r.source_id for r in refs] == ORDERED
    r = refs[3]
    assert r == FrameRef(
        source_id="cam0/000.bmp",
        source_uri=str(image_tree / "cam0/000.bmp"),
        path=str(image_tree / "cam0/000.bmp"),
        frame_index=-1,
        timestamp_s=None,
    )


def test_image_folder_stride_and_max_frames(image_tree):
    assert [r.source_id for r in list_frames(InputConfig(path=str(image_tree), stride=2))] == ORDERED[::2]
    refs = list_frames(InputConfig(path=str(image_tree), stride=2, max_frames=3))
    assert [r.source_id for r in refs] == ["a.jpg", "z.Jpg", "cam0/empty.png"]
    assert [r.source_id for r in list_frames(InputConfig(path=str(image_tree), max_frames=2))] == ["a.jpg", "b.PNG"]


def test_image_ids_stable_across_locations(image_tree, tmp_path):
    copy = shutil.copytree(image_tree, tmp_path / "elsewhere/deeper/copy")
    a = list_frames(InputConfig(path=str(image_tree)))
    b = list_frames(InputConfig(path=str(copy) + "/"))  # a trailing slash must not change ids
    assert [r.source_id for r in a] == [r.source_id for r in b] == ORDERED
    assert all(r.path.startswith(str(copy)) for r in b)


def test_single_image_file(image_tree):
    for type_ in ("auto", "images"):
        refs = list_frames(InputConfig(path=str(image_tree / "cam1/001.png"), type=type_))
        assert [(r.source_id, r.path, r.frame_index) for r in refs] == [("001.png", str(image_tree / "cam1/001.png"), -1)]


def test_relative_input_path_gives_absolute_paths(image_tree, monkeypatch):
    monkeypatch.chdir(image_tree.parent)
    refs = list_frames(InputConfig(path="frames"))
    assert [r.source_id for r in refs] == ORDERED
    assert refs[0].path == str(image_tree / "a.jpg") and refs[0].source_uri == refs[0].path


def test_input_errors(tmp_path):
    with pytest.raises(InputError) as e:
        list_frames(InputConfig(path=""))
    assert str(e.value) == "input.path: not set (use --input PATH)"

    missing = str(tmp_path / "nope")
    with pytest.raises(InputError) as e:
        list_frames(InputConfig(path=missing))
    assert str(e.value) == f"input.path: {missing} does not exist"

    empty = tmp_path / "empty"
    write(empty / "readme.txt", b"x")
    write(empty / ".hidden/a.png", png_bytes())
    with pytest.raises(InputError) as e:
        list_frames(InputConfig(path=str(empty)))
    assert str(e.value) == f"input.path: {empty}: no images (.jpg, .jpeg, .png, .webp, .bmp) found"

    txt = write(tmp_path / "data.csv", b"a,b")
    with pytest.raises(InputError) as e:
        list_frames(InputConfig(path=str(txt)))
    msg = str(e.value)
    assert msg.startswith(f"input.path: {txt}: unsupported file type")
    assert all(ext in msg for ext in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)


def test_unreadable_subfolder_is_an_input_error(image_tree, monkeypatch):
    import os

    real_scandir = os.scandir
    locked = str(image_tree / "cam1")

    def scandir(path="."):
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError) as e:
        list_frames(InputConfig(path=str(image_tree)))
    assert str(e.value) == f"input.path: cannot list {locked}: Permission denied"


def test_forced_type_mismatch(tmp_path):
    img = write(tmp_path / "a.png", png_bytes())
    vid = write_video(tmp_path / "clip.mp4", 3)
    with pytest.raises(InputError, match=r"input.type=video needs a folder or a video file"):
        list_frames(InputConfig(path=str(img), type="video"))
    with pytest.raises(InputError, match=r"input.type=images needs a folder or an image file"):
        list_frames(InputConfig(path=str(vid), type="images"))
    folder = tmp_path / "imgs"
    write(folder / "a.png", png_bytes())
    with pytest.raises(InputError) as e:
        list_frames(InputConfig(path=str(folder), type="video"))
    assert str(e.value) == f"input.path: {folder}: no videos (.mp4, .avi, .mov, .mkv, .webm) found"


def test_unopenable_and_empty_video(tmp_path):
    bad = write(tmp_path / "bad.mp4", b"this is not a video")
    with pytest.raises(InputError) as e:
        list_frames(InputConfig(path=str(bad)))
    assert str(e.value).startswith(f"input.path: {bad}: cannot open video bad.mp4")
    zero = write(tmp_path / "zero.mp4", b"")
    with pytest.raises(InputError, match="cannot open video"):
        list_frames(InputConfig(path=str(zero)))


def test_video_list_stride(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 12)
    refs = list_frames(InputConfig(path=str(clip), stride=3))
    assert [r.source_id for r in refs] == ["clip.mp4@000000@0.000s", "clip.mp4@000003@0.300s", "clip.mp4@000006@0.600s", "clip.mp4@000009@0.900s"]
    assert [r.timestamp_s for r in refs] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert [r.frame_index for r in refs] == [0, 3, 6, 9]
    assert refs[1].path == str(clip) and refs[1].source_uri == f"{clip}#frame=3"
    refs = list_frames(InputConfig(path=str(clip), stride=3, max_frames=2))
    assert [r.source_id for r in refs] == ["clip.mp4@000000@0.000s", "clip.mp4@000003@0.300s"]


def test_video_read_right_frames_rgb(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 12)
    refs = list_frames(InputConfig(path=str(clip), stride=3))
    out = read_frames(refs, max_pixels=10_000_000, min_side=16)
    assert all(isinstance(o, DecodedImage) for o in out)
    assert [decode_frame_number(o.rgb) for o in out] == [0, 3, 6, 9]
    for o in out:
        assert o.rgb.shape == (H, W, 3) and o.rgb.dtype == np.uint8
        blue = o.rgb[H // 2 + 4 : H - 4, 8:-8].reshape(-1, 3).mean(axis=0)
        assert blue[0] < 20 and blue[1] < 20 and blue[2] > 235, blue  # BGR (255,0,0) reads as RGB (0,0,255)


def test_video_read_order_seek_and_duplicates(tmp_path):
    clip = write_video(tmp_path / "long.mp4", 100)
    by_index = {r.frame_index: r for r in list_frames(InputConfig(path=str(clip)))}
    wanted = [99, 2, 50, 2, 3, 40, 97]  # unsorted, a duplicate, jumps > 30 frames (seek path)
    out = read_frames([by_index[i] for i in wanted], max_pixels=10_000_000, min_side=16)
    assert [decode_frame_number(o.rgb) for o in out] == wanted
    assert out[1].rgb is not out[3].rgb  # duplicates do not share a buffer


def test_video_folder_type_video(tmp_path):
    root = tmp_path / "drives"
    write_video(root / "b/run.mp4", 4)
    write_video(root / "a.mp4", 2)
    write(root / "a.png", png_bytes())  # not a video: ignored
    refs = list_frames(InputConfig(path=str(root), type="video", stride=2))
    assert [r.source_id for r in refs] == ["a.mp4@000000@0.000s", "b/run.mp4@000000@0.000s", "b/run.mp4@000002@0.200s"]
    out = read_frames(refs, max_pixels=10_000_000, min_side=16)
    assert [decode_frame_number(o.rgb) for o in out] == [0, 0, 2]
    refs = list_frames(InputConfig(path=str(root), type="video", max_frames=3))
    assert [r.source_id for r in refs] == ["a.mp4@000000@0.000s", "a.mp4@000001@0.100s", "b/run.mp4@000000@0.000s"]


def test_video_frame_beyond_end_and_min_side(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 12)
    refs = [
        FrameRef("clip.mp4@000100@10.000s", f"{clip}#frame=100", str(clip), 100, 10.0, kind="video"),
        FrameRef("clip.mp4@000005@0.500s", f"{clip}#frame=5", str(clip), 5, 0.5, kind="video"),
    ]
    out = read_frames(refs, max_pixels=10_000_000, min_side=16)
    assert isinstance(out[0], FrameError)
    assert str(out[0]) == f"{clip}#frame=100: video ended or frame unreadable at frame 100"
    assert decode_frame_number(out[1].rgb) == 5
    out = read_frames(refs[1:], max_pixels=10_000_000, min_side=100)
    assert str(out[0]) == f"{clip}#frame=5: image is 64x48, smaller than the minimum side of 100 px"


def test_video_deleted_after_listing(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 4)
    refs = list_frames(InputConfig(path=str(clip)))
    clip.unlink()
    out = read_frames(refs, max_pixels=10_000_000, min_side=16)
    assert [str(o) for o in out] == [f"{clip}#frame={i}: cannot open video at frame {i}" for i in range(4)]


def test_read_images_bad_files_in_order(tmp_path):
    root = tmp_path / "imgs"
    good_jpg = png_bytes((200, 10, 10), (40, 30), "JPEG")
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG")  # noise: the entropy-coded data is long enough to cut into
    write(root / "a_good.png", png_bytes((1, 2, 3), (32, 24)))
    write(root / "b_trunc.jpg", buf.getvalue()[: len(buf.getvalue()) * 7 // 10])
    write(root / "c_zero.png", b"")
    write(root / "d_text.png", b"hello, not a png")
    write(root / "e_good.jpg", good_jpg)
    write(root / "f_gone.png", png_bytes())
    refs = list_frames(InputConfig(path=str(root)))
    assert [r.source_id for r in refs] == ["a_good.png", "b_trunc.jpg", "c_zero.png", "d_text.png", "e_good.jpg", "f_gone.png"]
    (root / "f_gone.png").unlink()  # vanished between listing and reading
    out = read_frames(refs, max_pixels=10_000_000, min_side=16)
    assert [type(o) for o in out] == [DecodedImage, FrameError, FrameError, FrameError, DecodedImage, FrameError]
    uri = {r.source_id: r.source_uri for r in refs}
    assert (out[0].rgb == np.array([1, 2, 3], np.uint8)).all() and out[0].rgb.shape == (24, 32, 3)
    assert str(out[1]).startswith(f"{uri['b_trunc.jpg']}: corrupt or truncated image data (OSError: image file is truncated")
    assert str(out[2]) == f"{uri['c_zero.png']}: empty file (0 bytes)"
    assert str(out[3]) == f"{uri['d_text.png']}: not a recognised image (16 bytes)"
    assert out[4].rgb.shape == (30, 40, 3) and abs(int(out[4].rgb[..., 0].mean()) - 200) < 10
    assert str(out[5]) == f"{uri['f_gone.png']}: cannot read: No such file or directory"


def test_read_images_min_side_and_max_pixels(tmp_path):
    small = write(tmp_path / "s.png", png_bytes(size=(10, 40)))
    refs = list_frames(InputConfig(path=str(small)))
    (out,) = read_frames(refs, max_pixels=10_000_000, min_side=16)
    assert str(out) == f"{small}: image is 10x40, smaller than the minimum side of 16 px"
    (out,) = read_frames(refs, max_pixels=399, min_side=1)
    assert str(out) == f"{small}: 10x40 = 400 pixels exceeds the limit of 399 (input.max_pixels)"


def test_mixed_images_and_video_keep_order(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 6)
    img = write(tmp_path / "a.png", png_bytes())
    v = list_frames(InputConfig(path=str(clip), stride=2))
    i = list_frames(InputConfig(path=str(img)))
    refs = [v[2], i[0], v[0]]
    out = read_frames(refs, max_pixels=10_000_000, min_side=16)
    assert decode_frame_number(out[0].rgb) == 4 and out[1].rgb.shape == (24, 32, 3) and decode_frame_number(out[2].rgb) == 0
    assert read_frames([], max_pixels=1, min_side=1) == []


def test_include_and_exclude_globs_select_images(tmp_path):
    for rel in ("cam_front/a.png", "cam_front/sub/b.png", "cam_back/c.png", "cam_front/skip_d.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / rel)
    cfg = InputConfig(path=str(tmp_path), include=["cam_front/*"], exclude=["*/skip_*"])
    assert [r.source_id for r in list_frames(cfg)] == ["cam_front/a.png", "cam_front/sub/b.png"]
    with pytest.raises(InputError, match="no images left after input.include/input.exclude"):
        list_frames(InputConfig(path=str(tmp_path), include=["nothing/*"]))


def test_video_start_and_end_times(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 12)
    refs = list_frames(InputConfig(path=str(clip), start_s=0.25, end_s=0.6, stride=1))
    assert [r.frame_index for r in refs] == [3, 4, 5, 6]
    assert refs[0].source_id == "clip.mp4@000003@0.300s" and refs[0].timestamp_s == pytest.approx(0.3)


def test_av1_video_is_decoded_through_pyav(tmp_path):
    """OpenCV's wheel opens AV1 but cannot decode it; the frames must still come back, exactly."""
    import av

    path = tmp_path / "av1.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libsvtav1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 6 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    refs = list_frames(InputConfig(path=str(path)))
    assert len(refs) == 40 and refs[35].source_id == "av1.mp4@000035@3.500s"
    picked = [refs[i] for i in (35, 2, 36)]  # out of order, and far enough to seek
    results = read_frames(picked + [FrameRef("x", "x#frame=90", str(path), 90, 9.0, kind="video")],
                          max_pixels=50_000_000, min_side=1)
    for ref, res in zip(picked, results):
        assert isinstance(res, DecodedImage) and abs(float(res.rgb.mean()) - 6 * ref.frame_index) < 4
    assert isinstance(results[3], FrameError) and "video ended or frame unreadable at frame 90" in str(results[3])


def test_a_folder_named_like_an_image_is_listed_and_reads_as_an_error(tmp_path):
    """`x.png/` was walked into and skipped: no row, no notice. Now it is a frame that fails to read."""
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "x.png").mkdir()
    (tmp_path / "x.png" / "inner.png").write_bytes(png_bytes())
    refs = list_frames(InputConfig(path=str(tmp_path)))
    assert [r.source_id for r in refs] == ["a.png", "x.png", "x.png/inner.png"]
    good, folder, inner = read_frames(refs, max_pixels=10_000_000, min_side=16)
    assert isinstance(good, DecodedImage) and isinstance(inner, DecodedImage)
    assert isinstance(folder, FrameError) and str(folder) == f"{tmp_path}/x.png: cannot read: Is a directory"
