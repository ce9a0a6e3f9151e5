"""Debian's Chromium, headless, driven through Selenium and chromium-driver; always quit.

Why Debian's: Playwright's and selenium-manager's own browsers cannot be downloaded here,
so the driver path is explicit (selenium-manager never runs) and the browser is the
``chromium`` package (tools/setup.sh installs it with ``chromium-driver``). The flags are
the report render test's: ``--headless=new`` (the real browser, not the old headless
shell), ``--no-sandbox`` (CI runs as root), a throwaway profile.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from forgebench.errors import ForgebenchError

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)


def missing_tools(chromium: str = CHROMIUM, chromedriver: str = CHROMEDRIVER) -> list[str]:
    """What is missing to drive the browser: executables and the selenium package."""
    missing = [p for p in (chromium, chromedriver) if shutil.which(p) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (Python)")
    return missing


@contextmanager
def chromium(
    *,
    width: int = 1280,
    height: int = 900,
    chromium_path: str = CHROMIUM,
    chromedriver_path: str = CHROMEDRIVER,
    capabilities: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A headless Chromium WebDriver with a ``width`` × ``height`` viewport; quit on exit."""
    missing = missing_tools(chromium_path, chromedriver_path)
    if missing:
        raise ForgebenchError(
            f"headless Chromium needs {', '.join(missing)} "
            "(tools/setup.sh installs chromium, chromium-driver and selenium)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="forgebench-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium_path
        for arg in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(arg)
        for key, value in (capabilities or {}).items():
            options.set_capability(key, value)
        driver = webdriver.Chrome(service=Service(chromedriver_path), options=options)
        try:
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            yield driver
        finally:
            driver.quit()
