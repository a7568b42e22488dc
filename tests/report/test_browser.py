"""The report of `report_dataset` in a real headless Chromium: the system's `chromium` (Debian's package;
`make test` installs it where it can) driven by Playwright's Python package through `executable_path`.
Nothing is downloaded. Skipped, with the reason, only where Chromium or Playwright cannot be found."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from conftest import MARKUP_PROMPT

# CHROMIUM=/path/to/chrome picks another binary
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next(filter(None, map(shutil.which, CANDIDATES)), None)


def why_not() -> str | None:
    """Why this machine cannot run the test, or None. Decided at collection, before the session's dataset
    is built for nothing."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright's Python package is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return (f"no Chromium on PATH ({', '.join(CANDIDATES)}): `apt-get install -y chromium` as root (`make test` "
                "does), or set CHROMIUM=/path/to/chrome")
    return None


WHY_NOT = why_not()
pytestmark = [pytest.mark.ray, pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path())
        yield browser
        browser.close()


def test_the_report_in_chromium(browser, report_dataset, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs, errors = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((report_dataset / "report" / "index.html").as_uri())
    cards = page.locator("#cards .card")
    expect(cards).to_have_count(6)  # every row: 2 kept, 2 rejected, 2 failed
    # the prompt with <script> and <img onerror> is text on its cards, and ran nothing
    assert page.locator(".card .prompt").all_text_contents().count(MARKUP_PROMPT) == 3
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#cards script, #cards img[src='x']").count() == 0
    # a thumbnail loads (lazily: once scrolled to)
    thumb = page.locator(".card.kept .pics img").first
    thumb.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    # the trajectory plays on hover
    film = page.locator(".card.kept .player img").first
    page.locator(".card.kept .player").first.hover()
    page.wait_for_function("img => img.style.transform.startsWith('translateX(-')", arg=film.element_handle())
    # filter to the rejected rows, then sort them by a score
    page.select_option("#f-outcome", "rejected")
    expect(cards).to_have_count(2)
    assert set(cards.evaluate_all("nodes => nodes.map(n => n.dataset.outcome)")) == {"rejected"}
    expect(page.locator("#pager")).to_have_text("page 1 of 1 (2 of 6 rows)")
    page.select_option("#sort", "ssim:asc")
    expect(cards).to_have_count(2)
    # a card opens the full-size images
    page.locator(".card .pics img").first.click()
    full = page.locator("#viewer[open] .full img").nth(1)  # the edit, as stored (160x96), not its thumbnail
    page.wait_for_function("img => img.complete && img.naturalWidth === 160 && img.src.includes('/f/')",
                           arg=full.element_handle())
    assert "ssim 0.5" in page.locator("#viewer .reasons").text_content()
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert not dialogs and not errors
