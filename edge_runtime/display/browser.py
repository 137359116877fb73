"""A headless Chromium for looking at the page the way a person does: the browser tests and the demo's
screenshots. Uses Debian's chromium and chromium-driver (installed by `make test` and `make demo`) through
Selenium (the dev extra); the bedside itself never needs a browser."""

from __future__ import annotations

import shutil
from typing import Any

from edge_runtime.errors import FattyLiverError

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")


class BrowserMissing(FattyLiverError):
    """No Chromium or chromedriver on PATH."""


def headless_chromium(width: int = 1920, height: int = 1080) -> Any:
    """A Selenium driver of a headless Chromium with a full-HD window (the bedside monitor's size)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        raise BrowserMissing("chromium and chromedriver are not installed (apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)
