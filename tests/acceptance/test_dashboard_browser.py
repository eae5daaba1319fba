"""The dashboard in a real headless Chromium, against a real ``quick dashboard`` process.

Skipped, with the reason, only where Chromium or its driver cannot be found (``.ci/run``
installs Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.extras import require_dashboard

require_dashboard()

import quick
from tests.acceptance.dashboard_store import dead_letter
from tests.acceptance.processes import ROOT, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A ``quick dashboard --allow-actions`` process on a store with one dead letter."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with quick.open(url) as db:
        quick.enqueue(db, "tenant-7", "email:send", {"to": "grace@example.com"})
        dead_letter(db, "tenant-7", {"to": "<script>alert(1)</script>"}, error="SMTP 550")
    port = _free_port()
    argv = ["--db", url, "dashboard", "--allow-actions", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "quick", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: _listening(port) or process.poll() is not None, 20, "the dashboard")
        assert process.poll() is None, process.communicate()[0].decode()
        yield url, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=10)  # reaps it and closes the pipe


def test_dashboard_browser_requeues_a_dead_letter_through_the_form(
    dashboard: tuple[str, str], tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, base = dashboard
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        browser.set_page_load_timeout(30)
        browser.get(base + "/")
        assert "Overview" in browser.title
        browser.find_element(By.LINK_TEXT, "tenant-7").click()
        assert "Queue tenant-7" in browser.title

        def dead_cell() -> str:
            cells = browser.find_elements(By.CSS_SELECTOR, "table.narrow tbody td")
            return str(cells[3].text)

        assert dead_cell() == "1"
        browser.find_element(By.PARTIAL_LINK_TEXT, "dead letters").click()
        assert "SMTP 550" in browser.page_source
        buttons = browser.find_elements(By.XPATH, "//tbody//button[normalize-space()='Requeue']")
        assert len(buttons) == 1
        buttons[0].click()
        # The click submits the form; the page after its redirect comes when it comes.
        flash = (
            WebDriverWait(browser, 15)
            .until(lambda page: page.find_element(By.CSS_SELECTOR, ".flash"))
            .text
        )
        assert flash.startswith("requeued ")
        assert "no dead letters" in browser.page_source
        browser.save_screenshot(str(tmp_path / "dead-letters-after-requeue.png"))
        browser.find_element(By.LINK_TEXT, "tenant-7").click()
        assert dead_cell() == "0"
        browser.save_screenshot(str(tmp_path / "queue-after-requeue.png"))
    finally:
        browser.quit()
    with quick.open(url) as db:
        assert quick.queue_counts(db, "tenant-7")["dead"] == 0
        assert quick.queue_counts(db, "tenant-7")["ready"] == 2
