"""Session-wide fixtures: one tiny random-weight ChronoEdit checkpoint and one loaded Editor."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# the tests must never reach a hub: a missing file fails instead of downloading
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from chronoedit_sim.engine.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-chronoedit", seed=0)


@pytest.fixture(scope="session")
def tiny_overrides(tiny_model_dir):
    return ["model=tiny", f"model.path={tiny_model_dir}"]


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
