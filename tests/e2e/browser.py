"""Headless chromium for the model browser's tests: Debian's chromium driven through its
chromedriver (Selenium), and the helpers the tests share. Screenshots go to
``test-artifacts/ui/`` at the repository root."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.server import wait_for

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def chromium() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, f"{missing}: apt-get install chromium chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(browser, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(800, min(int(height) + 40, 6000)))
    assert browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def wait_in(browser, condition, what: str):
    return wait_for(lambda: condition(browser), what, seconds=20)


def wait_for_model_list(browser, what: str = "the model list"):
    """Until the index has listed every model: it appends a row per model as that model's card
    arrives and shows the table (removes ``hidden``) only after the last one."""
    return wait_in(browser, lambda b: css(b, "#models:not([hidden]) tbody tr[data-model]"), what)
