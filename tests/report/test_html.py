"""report.html: every string from the data escaped, JSON safe inside a script. Pure Python, milliseconds."""

from __future__ import annotations

import json

from chronoedit_sim.report import html

ATTACK = "<script>window.__pwned=1</script><img src=x onerror=alert(1)>\"'&<!--\u2028"


def test_esc_escapes_markup_quotes_and_ampersands():
    assert html.esc(ATTACK).startswith("&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x ")
    assert html.esc('"\'&') == "&quot;&#x27;&amp;" and html.esc(None) == "" and html.esc(3) == "3"


def test_script_json_cannot_close_its_script_and_round_trips():
    text = html.script_json({"prompt": ATTACK, "n": [1, None]})
    assert not set("<>&") & set(text) and "\u2028" not in text  # no </script>, no <!--, no line separator
    assert json.loads(text) == {"prompt": ATTACK, "n": [1, None]}


def test_tables_sections_and_the_page_escape_what_comes_from_data():
    manifest = {"model": {"id": ATTACK, "preset": "tiny"}, "runs": [{"run_id": ATTACK, "status": "finished"}],
                "rescored_from": {"path": ATTACK}}
    models = [{"model_id": ATTACK, "model_hash": "h", "random_weights": True, "rows": 2}]
    scorers = [{"model": ATTACK, "random_weights": False, "rows": 2}]
    per_edit = {f"s/{ATTACK}": {"planned": 3, "written": 2, "kept": 1, "rejected": 1, "failed": 0,
                                "rejected_by": {ATTACK: 1}, "failed_by_stage": {}}}
    totals = {"written": 2, "kept": 1, "rejected": 1, "failed": 0}
    failures = [{"row": 0, "source": ATTACK, "edit": "s/e", "stage": "read", "error": ATTACK}]
    parts = [html.overview(manifest, models, scorers, per_edit, totals), html.failures_section(failures, 1),
             html.table([ATTACK], [[ATTACK]]), html.page(ATTACK, ATTACK, {"p": ATTACK}, "", "", ATTACK)]
    for part in parts:
        assert "<script>window" not in part and "<img src=x" not in part and "&lt;script&gt;" in part.replace(
            "\\u003cscript\\u003e", "&lt;script&gt;")
    assert html.failures_section([], 0).count("None.") == 1


def test_a_banner_for_each_kind_of_random_weights():
    random_edit = [{"random_weights": True}]
    assert html.banners([], []) == ""
    assert html.banners(random_edit, []).count('class="banner"') == 1
    both = html.banners(random_edit, [{"random_weights": True}])
    assert both.count('class="banner"') == 2 and "randomly initialised CLIP" in both
    vlm = html.banners([], [{"random_weights": True, "role": "judge"}])
    assert vlm.count('class="banner"') == 1 and "vision-language model" in vlm and "CLIP" not in vlm


def test_the_temporal_section_lists_the_worst_sequences_first():
    assert html.temporal_section({}) == ""
    part = html.temporal_section({"ep0 | light/relight #0": {"frames": 6, "mean": 0.01, "worst": 0.02, "worst_frame": "a"},
                                  "ep1 | light/relight #0": {"frames": 4, "mean": 0.2, "worst": 0.5, "worst_frame": "b"}})
    assert 'id="temporal"' in part and part.index("ep1 | light") < part.index("ep0 | light")
    assert "<td>0.5000</td><td>b</td>" in part
