"""A headless Chromium, driven by Playwright, for the browser tests.

Playwright's own browser download is not used: the tests drive the system's
Chromium (Debian package `chromium`, or DRIFTLOOP_CHROMIUM=/path/to/chrome)
and are skipped, saying how to install it, when there is none. Screenshots of
every step go to test-output/browser/<test>/ so a failure shows what a person
would have seen.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output" / "browser"


def chromium_path() -> str | None:
    configured = os.environ.get("DRIFTLOOP_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium for the browser tests: install it with `sudo apt-get install -y "
            "chromium` (Debian/Ubuntu) or point DRIFTLOOP_CHROMIUM at a Chrome/Chromium binary"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _folder(request: pytest.FixtureRequest) -> Path:
    return OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)


@pytest.fixture
def page(chromium, request: pytest.FixtureRequest) -> Iterator[object]:
    context = chromium.new_context(viewport={"width": 1400, "height": 1600})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            path = _folder(request) / "99-at-failure.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
            print(f"screenshot at failure: {path} (page {page.url})")
        context.close()


@pytest.fixture
def shot(page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """shot("02-form") saves a full-page screenshot of the current page; returns its path."""
    folder = _folder(request)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    count = iter(range(1, 100))

    def take(name: str) -> Path:
        path = folder / f"{next(count):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    return take
