#!/usr/bin/env python3
"""The README's screenshot of the dashboard, made for real: two peers on this
machine ("laptop" and "desktop", loopback only, discovery off, a cluster
secret), a folder that changes on both, and desktop's page in headless
Chromium (tests/browser.py), its time slider moved back before a delete.

    .venv/bin/python scripts/gui_screenshot.py     # writes docs/dashboard.png (or: make screenshot)
    .venv/bin/python scripts/gui_screenshot.py --out FILE.png

Needs `make install` and Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

import browser  # noqa: E402
from peers import Peer, converged, wait_until  # noqa: E402

SECRET = "a long phrase only your machines know"
WIDTH, HEIGHT = 1400, 1200


def scene(laptop: Peer, desktop: Peer) -> None:
    """A folder with a little history: files on both peers, an edit, a rename and a delete."""
    def settle():
        wait_until(lambda: converged(laptop, desktop), 30, "the peers to converge")
        time.sleep(1.1)   # one second between steps: the timeline's times differ

    laptop.write("docs/plan.md", b"# Plan\n\n- ship the dashboard\n- write the docs\n")
    laptop.write("docs/old-draft.txt", b"an early draft nobody needs any more\n" * 40)
    laptop.write("notes.txt", b"groceries: bread, coffee\n")
    settle()
    desktop.write("photos/2026/beach.jpg", os.urandom(340_000))
    desktop.write("photos/2026/hills.jpg", os.urandom(210_000))
    settle()
    desktop.write("notes.txt", b"groceries: bread, coffee, oranges\n")
    settle()
    os.rename(laptop.path("docs/plan.md"), laptop.path("docs/roadmap.md"))
    settle()
    os.remove(laptop.path("docs/old-draft.txt"))
    settle()


def click(driver, selector: str) -> bool:
    """Click the element, if it is there and was not just redrawn."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True
    except (NoSuchElementException, StaleElementReferenceException):
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE.parent / "docs" / "dashboard.png"))
    args = parser.parse_args(argv)
    reason = browser.missing()
    if reason:
        print(f"gui_screenshot: {reason}", file=sys.stderr)
        return 1
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    with tempfile.TemporaryDirectory(prefix="p2p-shot.") as tmp:
        base = Path(tmp)
        laptop = Peer(base, "laptop", secret=SECRET, gui="127.0.0.1:0").start()
        desktop = Peer(base, "desktop", secret=SECRET, peers=[laptop], gui="127.0.0.1:0").start()
        driver = None
        try:
            scene(laptop, desktop)
            driver = browser.start(base / "chromium", WIDTH, HEIGHT)
            driver.get(desktop.gui_url())
            wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#timeline li[data-id]")) >= 8, 20,
                       "the timeline")
            wait_until(lambda: driver.find_element(By.ID, "folder-state").text == "in sync", 20, "in sync")
            slider = driver.find_element(By.ID, "slider")
            for _ in range(3):   # back before the delete and the rename
                slider.send_keys(Keys.ARROW_LEFT)
            wait_until(lambda: "update notes.txt" in driver.find_element(By.ID, "moment-label").text, 20, "moment")
            wait_until(lambda: click(driver, "#tree-entries tr[data-path='docs'] a"), 20, "docs/ at that moment")
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#tree-entries tr.gone"), 20, "an older tree")
            Select(driver.find_element(By.ID, "remote-peer")).select_by_index(1)   # laptop's folder, as it says
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#remote-entries tr[data-path]"), 20, "ls")
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",   # the whole page in one shot
                                   {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})
            time.sleep(0.5)   # let the last render and the QR code paint
            driver.save_screenshot(args.out)
        finally:
            if driver is not None:
                driver.quit()
            desktop.stop()
            laptop.stop()
    print(f"gui_screenshot: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
