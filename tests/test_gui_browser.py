"""The dashboard in a real headless browser (tests/browser.py: Debian's
chromium through selenium), with two real peers on loopback: a file written
on one appears in the other's page; the time slider shows the folder as it
was before a delete; restoring from the page brings the file back on both
peers. Skipped, with the reason, where chromium or its driver is missing
(.ci/run installs them, so CI always runs it)."""

import os

import pytest

import browser
from peers import wait_until

pytestmark = pytest.mark.slow

ROWS = "return [...document.querySelectorAll('#tree-entries tr[data-path]')].map(r => [r.dataset.path, r.className])"


def rows(driver) -> dict:
    return dict(driver.execute_script(ROWS))


def test_the_page_shows_syncs_rewinds_and_restores(make_peer, tmp_path):
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    a = make_peer("a", gui="127.0.0.1:0").start()
    b = make_peer("b", peers=[a], gui="127.0.0.1:0").start()
    driver = browser.start(tmp_path / "chromium")
    try:
        driver.get(a.gui_url())
        a_tab = driver.current_window_handle
        wait_until(lambda: driver.execute_script(
            "return document.querySelector('#peers tbody tr[data-state=connected]') !== null"), 20, "b on a's page")
        driver.switch_to.new_window("tab")
        driver.get(b.gui_url())
        assert "?token" not in driver.current_url   # the token went into a cookie
        wait_until(lambda: driver.find_element(By.ID, "device-name").text == "b", 20, "b's page")

        a.write("hello.txt", b"hello from a")
        wait_until(lambda: "hello.txt" in rows(driver), 20, "a's file in b's page")
        wait_until(lambda: b.has("hello.txt", b"hello from a"), 20, "a's file on b")   # the page may show it first

        os.remove(a.path("hello.txt"))
        wait_until(lambda: b.lacks("hello.txt"), 20, "the delete on b")
        wait_until(lambda: "hello.txt" not in rows(driver), 20, "the delete in b's page")
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#timeline li[data-id]")) == 2, 20,
                   "both events in the timeline")

        slider = driver.find_element(By.ID, "slider")
        slider.send_keys(Keys.ARROW_LEFT)     # just after the delete: still gone
        wait_until(lambda: "delete hello.txt" in driver.find_element(By.ID, "moment-label").text, 10, "moment 1")
        slider.send_keys(Keys.ARROW_LEFT)     # just after the create: there, and marked deleted since
        wait_until(lambda: "create hello.txt" in driver.find_element(By.ID, "moment-label").text, 10, "moment 0")
        wait_until(lambda: rows(driver).get("hello.txt") == "gone", 10, "the older tree")

        driver.find_element(By.CSS_SELECTOR, "button.restore[data-path='hello.txt']").click()
        wait_until(lambda: b.has("hello.txt", b"hello from a"), 20, "restored on b")
        wait_until(lambda: a.has("hello.txt", b"hello from a"), 20, "restored on a")
        assert "restored hello.txt" in driver.find_element(By.ID, "message").text

        driver.switch_to.window(a_tab)        # a's page follows live
        wait_until(lambda: "hello.txt" in rows(driver), 20, "the restored file in a's page")
        assert driver.find_element(By.ID, "folder-state").text in ("in sync", "syncing")
    finally:
        driver.quit()
