"""Headless Chromium for the dashboard tests, driven by Selenium: Debian's
`chromium` and `chromium-driver` (scripts/install-envoy.sh installs them; no
browser is downloaded at run time), a new empty profile per browser.

    with chromium() as driver: driver.get(url) ...
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SWITCHYARD_CHROMEDRIVER", "/usr/bin/chromedriver")
# Selenium Manager would look for (and download) drivers: ours are given.
os.environ.setdefault("SE_OFFLINE", "true")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


def available() -> str | None:
    """None when Chromium and its driver are installed, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    return f"not installed: {', '.join(missing)}" if missing else None


@contextlib.contextmanager
def chromium(log_dir: Path, trust_spki: str | None = None) -> Iterator[WebDriver]:
    """A headless Chromium; `trust_spki` (base64 SHA-256 of a certificate's public
    key) makes it accept that one server key, for an API on a test CA."""
    profile = tempfile.mkdtemp(prefix="switchyard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    extra = [f"--ignore-certificate-errors-spki-list={trust_spki}"] if trust_spki else []
    for flag in FLAGS + extra + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log_dir / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, what: str, check: Callable[[WebDriver], object], timeout: float = 15.0):
    """Waits until `check` returns something truthy (polling every 0.1 s). The
    pages redraw as data arrives, so an element found a moment ago may be gone:
    that is "not yet", as is an element not there."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        check, message=f"{what}: not after {timeout}s")


def text_of(driver: WebDriver, selector: str) -> str | None:
    """The text of the first element matching `selector`, read in one step (a
    page that redraws cannot make it stale); None if there is none."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", selector)


def click(driver: WebDriver, selector: str, timeout: float = 10.0) -> None:
    """A real click on the first element matching `selector`, found again if the
    page redrew it in between."""
    def attempt(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, selector).click()
        return True
    wait(driver, f"click {selector}", attempt, timeout)


def sign_in(driver: WebDriver, base: str, token: str) -> None:
    driver.get(base + "/ui/")
    box = wait(driver, "the sign-in form", lambda d: d.find_element(By.ID, "token"))
    box.send_keys(token)
    driver.find_element(By.ID, "sign-in-button").click()
    wait(driver, "signed in", lambda d: d.find_element(By.ID, "who-text").text.startswith("signed in"))
