"""The static HTML report of a dataset: build.py (orchestration), gallery.py (one streaming pass: cards,
thumbnails, counts), charts.py (matplotlib PNGs), html.py (the page, escaping), static/ (its CSS and script)."""
