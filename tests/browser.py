"""Headless Chromium for the web pages' tests: Debian's browser, driven through its chromedriver.

Pages are tested as a person sees them: a real browser loads them from a
real server, and each test saves screenshots under ``test-artifacts/`` (or
``SCANTRAIL_ARTIFACTS``) for a human to look at. Selenium is pointed at
Debian's ``/usr/bin/chromedriver`` explicitly, so it never tries to fetch a
driver or a browser of its own.

Use :func:`open_browser` as a context manager, or the ``browser_factory``
fixture in ``tests/conftest.py``::

    with open_browser(width=390, height=844, lang="zh-CN") as browser:
        browser.get(url)
        save_screenshot(browser, "checkin-green")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SCANTRAIL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SCANTRAIL_CHROMEDRIVER", "/usr/bin/chromedriver")

#: A phone's viewport (CSS pixels), for pages that residents open on their phones.
PHONE = (390, 844)
#: A command-centre desk screen.
DESKTOP = (1440, 900)


def artifacts_dir() -> Path:
    """Where screenshots go: kept after the run so people (and CI logs) can look at them."""
    path = Path(os.environ.get("SCANTRAIL_ARTIFACTS", "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_chromium() -> None:
    """Fail (not skip) when the browser is missing: `make install` puts it there."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            pytest.fail(f"{binary} is missing: run `make install` (deploy/local/system-deps.sh)")


@contextmanager
def open_browser(
    *, width: int = DESKTOP[0], height: int = DESKTOP[1], lang: str = "en"
) -> Iterator[Any]:
    """A headless Chromium window of the given size and preferred language, closed afterwards."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="scantrail-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        f"--lang={lang}",
    ):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_window_size(width, height)
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def save_screenshot(driver: Any, name: str) -> Path:
    """Save the current page as ``<artifacts>/<name>.png`` and return its path."""
    path = artifacts_dir() / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait(driver: Any, seconds: float, poll_frequency: float = 0.5) -> Any:
    """A ``WebDriverWait`` that also looks again when an element went stale.

    Pages here replace their content (a redirect after a form, SSE updates), so
    an element found on one poll can be gone by the time its text is read; that
    is "not yet", not a failure.
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver,
        seconds,
        poll_frequency=poll_frequency,
        ignored_exceptions=(StaleElementReferenceException,),
    )
