"""Headless Chromium (the Debian package) for the page tests: dump the DOM after scripts ran, take screenshots.

Each call gets a new empty profile and every background feature that could reach the
network is off, so a run is hermetic: the page has nothing to fetch, and neither does
the browser.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("chromium is not installed: run `make chromium` (apt-get install -y chromium)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="netpol-guard-chromium-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, check=True)


def dump_dom(url: str) -> str:
    """The DOM serialised after the page's scripts ran."""
    return _run("--virtual-time-budget=2000", "--dump-dom", url).stdout


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 1000) -> None:
    _run(f"--window-size={width},{height}", f"--screenshot={out.resolve()}", page.resolve().as_uri())
