"""The example site (examples/django) in a real browser: Debian's Chromium,
headless, driven by Selenium, against a real daemon and Django's runserver.

Run by ``bash client-py/tests_django/run_browser.sh``. Needs ``chromium`` and
``chromium-driver`` (apt); without them the test is skipped, or fails when
``CI=true``. Nothing is downloaded: Selenium is given the driver and the
browser, and Selenium Manager is kept offline.

What it checks: two browsers (separate profiles) sign in; one lists the
user's sessions, revokes the other, and the other is signed out at its next
request; a transfer from a.localhost to b.localhost brings the session
along (a key of b's own, the same data), and its redeem URL, replayed, is
refused. It saves a screenshot of the sessions page under
client-py/.cache/artifacts/ and prints its path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import Any

CLIENT_PY = Path(__file__).resolve().parents[1]
REPO = CLIENT_PY.parent
EXAMPLE = REPO / "examples" / "django"
ARTIFACTS = CLIENT_PY / ".cache" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SESSIOND = Path(os.environ.get("SESSIOND_BIN", REPO / "target" / "debug" / "sessiond"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
]
WAIT = 20.0  # seconds, for any one page or process


def missing() -> str | None:
    """Why the browser test cannot run here, or ``None``."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: apt-get install -y chromium chromium-driver (Debian's {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (run_browser.sh installs it into client-py/.cache/venv)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, ready: Any, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {WAIT} s:\n{log.read_text(errors='replace')[-3000:]}")


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


REASON = missing()


@unittest.skipIf(REASON is not None and os.environ.get("CI") != "true", f"no browser: {REASON}")
class BrowserTests(unittest.TestCase):
    tmp: Path
    processes: list[subprocess.Popen[bytes]]
    port: int

    @classmethod
    def setUpClass(cls) -> None:
        if REASON is not None:  # CI=true: a missing browser is a failure, not a skip
            raise RuntimeError(f"the browser test cannot run (CI=true): {REASON}")
        cls.tmp = Path(tempfile.mkdtemp(prefix="sessiond-browser-"))
        cls.processes = []
        cls.drivers: list[Any] = []
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls) -> None:
        cls.port = port = free_port()
        for _ in range(120):  # the lead may be rebuilding the binary: up to 60 s
            if os.access(SESSIOND, os.X_OK):
                break
            time.sleep(0.5)
        config = cls.tmp / "sessiond.toml"
        config.write_text(f'[transfer]\nsites = ["a.localhost:{port}", "b.localhost:{port}"]\n')
        out, log = cls.tmp / "sessiond.out", cls.tmp / "sessiond.log"
        daemon = cls.spawn(
            [str(SESSIOND), "--data-dir", str(cls.tmp / "d"), "--threads", "1", "--config", str(config)], out, log
        )
        wait_for("sessiond", lambda: out.read_text().startswith("sessiond ready"), daemon, log)
        env = dict(
            os.environ,
            SESSIOND_SOCKET=str(cls.tmp / "d" / "sessiond.sock"),
            DEMO_DATA=str(cls.tmp / "site"),
            PYTHONPATH=str(CLIENT_PY),
            PYTHONUNBUFFERED="1",
        )
        site_log = cls.tmp / "site.log"
        site = cls.spawn(
            [sys.executable, str(EXAMPLE / "run.py"), "--port", str(port), "--noreload"], site_log, site_log, env
        )
        wait_for("the example site", lambda: accepts(port), site, site_log)

    @classmethod
    def spawn(cls, argv: list[str], out: Path, err: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(out, "wb") as o, open(err, "ab") as e:
            process = subprocess.Popen(argv, stdout=o, stderr=e if err != out else subprocess.STDOUT, env=env)
        cls.processes.append(process)
        return process

    @classmethod
    def tearDownClass(cls) -> None:
        for driver in getattr(cls, "drivers", []):
            with contextlib.suppress(Exception):
                driver.quit()
        for process in reversed(getattr(cls, "processes", [])):
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        if hasattr(cls, "tmp"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # Browsers.

    def browser(self, name: str) -> Any:
        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download anything
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        profile = self.tmp / f"profile-{name}"
        profile.mkdir()
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        service = Service(CHROMEDRIVER, log_output=str(self.tmp / f"chromedriver-{name}.log"))
        driver = webdriver.Chrome(service=service, options=options)
        self.drivers.append(driver)
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        return driver

    def url(self, host: str, path: str) -> str:
        return f"http://{host}.localhost:{self.port}{path}"

    def text(self, driver: Any, element_id: str) -> str:
        from selenium.webdriver.common.by import By

        return str(driver.find_element(By.ID, element_id).text)

    def click(self, driver: Any, css: str) -> None:
        """Clicks and waits for the next page to load.

        The old page is marked with a window property; the next document
        starts without it. Polling through the navigation can meet a page that
        is half torn down, which the driver reports as an error rather than as
        "not yet"; ignored_exceptions makes those mean "poll again". (Waiting
        for the old <html> element to go stale raced that way.)
        """
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.execute_script("window.__sessiondOldPage = true;")
        driver.find_element(By.CSS_SELECTOR, css).click()
        WebDriverWait(driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script(
                "return window.__sessiondOldPage === undefined && document.readyState === 'complete'"
            )
        )

    def sign_in(self, driver: Any) -> None:
        from selenium.webdriver.common.by import By

        driver.get(self.url("a", "/login/"))
        driver.find_element(By.NAME, "username").send_keys("demo")
        driver.find_element(By.NAME, "password").send_keys("demo")
        self.click(driver, "#submit")
        self.assertEqual(self.text(driver, "who"), "signed in as demo")

    def session_cookie(self, driver: Any) -> str | None:
        cookie = driver.get_cookie("sessionid")  # for the page's host
        return None if cookie is None else str(cookie["value"])

    def visited(self, driver: Any) -> list[str]:
        """The URLs the browser requested since the last call (redirects included)."""
        urls = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    # The test.

    def test_sessions_page_revocation_and_transfer(self) -> None:
        from selenium.webdriver.common.by import By

        first, second = self.browser("first"), self.browser("second")
        self.sign_in(first)
        self.sign_in(second)

        # The first lists the user's sessions: two, itself marked.
        first.get(self.url("a", "/sessions/"))
        rows = first.find_elements(By.CSS_SELECTOR, "#sessions tr[data-handle]")
        self.assertEqual(len(rows), 2)
        current = first.find_elements(By.CSS_SELECTOR, "#sessions tr.current")
        self.assertEqual(len(current), 1)
        self.assertIn("127.0.0.1", current[0].text)
        self.assertIn("HeadlessChrome", current[0].text)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "active-sessions.png"
        self.assertTrue(first.save_screenshot(str(shot)))
        print(f"\nscreenshot of the sessions page: {shot}", file=sys.stderr)

        # ...revokes the other; the other is signed out at its next request.
        self.click(first, "#sessions tr.other button.revoke")
        self.assertEqual(self.text(first, "message"), "Session ended.")
        self.assertEqual(len(first.find_elements(By.CSS_SELECTOR, "#sessions tr[data-handle]")), 1)
        second.get(self.url("a", "/"))
        self.assertEqual(self.text(second, "who"), "not signed in")
        second.get(self.url("a", "/sessions/"))
        self.assertTrue(second.current_url.startswith(self.url("a", "/login/")))
        first.get(self.url("a", "/"))
        self.assertEqual(self.text(first, "who"), "signed in as demo")

        # The first counts on a.localhost, then follows the link to b.localhost.
        for _ in range(2):
            self.click(first, "#increment")
        self.assertEqual(self.text(first, "count"), "2")
        key_a = self.session_cookie(first)
        self.visited(first)  # forget what came before
        self.click(first, f'a.sessiond-shared[href*="b.localhost:{self.port}"]')
        self.assertEqual(first.current_url, self.url("b", "/"))
        self.assertEqual(self.text(first, "host"), f"b.localhost:{self.port}")
        self.assertEqual(self.text(first, "who"), "signed in as demo")
        self.assertEqual(self.text(first, "count"), "2")
        key_b = self.session_cookie(first)
        self.assertIsNotNone(key_b)
        self.assertNotEqual(key_b, key_a)  # b's own key to the same session
        redeems = [u for u in self.visited(first) if "/shared-session/redeem/" in u]
        self.assertEqual(len(redeems), 1, redeems)
        self.assertIn("token=", redeems[0])
        # The same session on both sites: a count on b is seen on a.
        self.click(first, "#increment")
        first.get(self.url("a", "/"))
        self.assertEqual(self.text(first, "count"), "3")

        # The redeem URL, replayed, is refused: in the same browser, and in another.
        for driver in (first, second):
            driver.get(redeems[0])
            self.assertEqual(driver.find_element(By.TAG_NAME, "body").text.strip(), "transfer refused")
        second.get(self.url("b", "/"))
        self.assertEqual(self.text(second, "who"), "not signed in")


if __name__ == "__main__":
    unittest.main(verbosity=2)
