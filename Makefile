# Two-command quick start: `make demo`, `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.chronoedit-sim-installed
DEMO_DIR ?= .demo
export RAY_AUTH_MODE ?= disabled

.PHONY: install test demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# pip (not uv): pip takes torch from this machine's local wheels instead of downloading gigabytes
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) -m chronoedit_sim.cli make-tiny-model $(DEMO_DIR)/tiny-chronoedit
	$(PY) -m chronoedit_sim.cli edit examples/frames/driving/road_day_000.png \
		--prompt "Add a pedestrian crossing the road ahead. Keep the camera, road layout and vehicles unchanged." \
		--output $(DEMO_DIR)/edit/road_edit.png model=tiny model.path=$(DEMO_DIR)/tiny-chronoedit \
		generation.temporal_reasoning=true

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
