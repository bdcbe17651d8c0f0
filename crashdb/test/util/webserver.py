"""``crashdb serve`` in a subprocess and headless Chromium, for the web front end's tests.

The browser is Debian's ``chromium`` driven through Debian's ``chromium-driver``, both named by
path: Selenium's own driver manager never runs, so nothing is downloaded at test time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

CHROMIUM = os.environ.get("CRASHDB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CRASHDB_CHROMEDRIVER", "/usr/bin/chromedriver")
SERVING = re.compile(r"on (http://127\.0\.0\.1:\d+/)")


class Server:
    """``crashdb serve --port 0 OPTIONS...`` on ``url``'s database; ``base`` is its address."""

    def __init__(self, url: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crashdb", "serve", "--db", url, "--port", "0", *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = SERVING.search(line)
        if found is None:
            self.stop()
            raise RuntimeError(f"crashdb serve did not start: {line!r} "
                               f"{self.process.stderr.read() if self.process.stderr else ''}")
        self.base = found.group(1).rstrip("/")

    def get(self, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of a request to ``path``, errors included."""
        request = urllib.request.Request(self.base + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        status, _, body = self.get(path, headers)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def stop(self) -> str:
        """Stop the server (ours, by its pid); its stderr, for a failing test to show."""
        self.process.terminate()
        try:
            _, errors = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate()
        return errors or ""


def newBrowser() -> Any:
    """Headless Chromium under Selenium, keeping the console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.set_page_load_timeout(120)
    return browser


def crashdbCommand(*args: str) -> subprocess.CompletedProcess:
    """Run ``crashdb ARGS...`` to completion."""
    return subprocess.run([sys.executable, "-m", "crashdb", *args], capture_output=True,
                          text=True, timeout=300)


class Site:
    """A filled database (:mod:`crashdb.test.util.sitedata`; a SQLite file in ``directory``
    unless ``url`` names another, migrated or empty), a token named ``tester`` made by
    ``crashdb tokens create``, and ``crashdb serve`` over them."""

    def __init__(self, directory: Any, crashes: int = 600, url: str | None = None) -> None:
        self.url = url or f"sqlite:///{directory / 'site.sqlite'}"
        filled = subprocess.run(
            [sys.executable, "-m", "crashdb.test.util.sitedata", self.url, str(crashes)],
            capture_output=True, text=True, timeout=600)
        assert filled.returncode == 0, filled.stderr
        self.uuids: list[str] = json.loads(filled.stdout)
        created = crashdbCommand("tokens", "create", "tester", "--db", self.url)
        assert created.returncode == 0, created.stderr
        self.token = created.stdout.splitlines()[0].strip()
        self.server = Server(self.url)

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}
