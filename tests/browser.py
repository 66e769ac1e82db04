"""Headless Chromium for the dashboard's browser test and the README's
screenshot (scripts/gui_screenshot.py): Debian's ``chromium`` and
``chromium-driver`` driven by ``selenium``; never a browser or driver
downloaded at run time (the driver's path is given, so Selenium Manager is
not asked for one).

The flags keep the browser off the network: no background requests, no
component updates, no sync, no QUIC, and a host resolver that knows no name
but loopback; a fresh profile each time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--metrics-recording-only", "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
INSTALL = "apt-get install chromium chromium-driver (and pip install selenium, in the test extras)"


def missing() -> Optional[str]:
    """Why no browser test can run here, or None."""
    for path, what in ((CHROMIUM, "chromium"), (DRIVER, "chromium-driver (chromedriver)")):
        if not os.access(path, os.X_OK):
            return f"{what} is not installed: {INSTALL}"
    try:
        import selenium  # noqa: F401  (only whether it is there)
    except ImportError:
        return f"selenium is not installed: {INSTALL}"
    return None


def start(profile: Path, width: int = 1400, height: int = 1000):
    """A headless Chromium with a fresh profile in ``profile``; ``quit()`` it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
