"""Open a page in Debian's headless Chromium with no network (its own empty network namespace): DOM and console.

Shared by the tests of HTML that menndl writes.  ``unshare --net`` leaves the browser without any network
interface but loopback, so anything the page tried to fetch would fail (and show as a console error).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)")
REQUEST = re.compile(r"NotifyBeforeURLRequest: (\S+)")
# The software WebGL driver's own performance notes ("GPU stall due to ReadPixels"): not the page's errors
# Chromium's own services (network time, component updates), asked whatever the page; a page of ours never
# names these hosts
BROWSER_OWN = re.compile(r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gstatic\.com)/")
GL_PERFORMANCE = re.compile(r"GL Driver Message \(OpenGL, Performance,")


@dataclass
class Page:
    """What the browser made of a page: its DOM after the load event, the console messages its own scripts
    caused (the browser's internal pages and the software GL driver's performance notes left out), what it
    fetched."""

    dom: str
    console: list[str]
    requests: list[str]  # URLs the page asked for beyond file:, data: and the browser's own chrome: pages
    stderr: str


def open_offline(page: Path, screenshot: Path | None = None, timeout: float = 120) -> Page:
    """Load ``page`` from ``file://`` in headless Chromium without network; ``screenshot`` also writes a PNG."""
    assert CHROMIUM is not None
    base = ["unshare", "--net", CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader", "--enable-logging=stderr", "--v=1", "--window-size=1200,900",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-domain-reliability", "--user-data-dir=" + str(page.parent / ".chromium")]  # fmt: skip
    done = subprocess.run([*base, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if screenshot is not None:
        subprocess.run([*base, "--window-size=1200,2600", f"--screenshot={screenshot}", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=timeout)  # fmt: skip
    uri = page.resolve().as_uri()
    console = [line for line in (match.group(1) for match in CONSOLE.finditer(done.stderr))
               if f"source: {uri} " in line and not GL_PERFORMANCE.search(line)]  # fmt: skip
    requests = [url for url in REQUEST.findall(done.stderr)
                if not url.startswith(("file:", "data:", "chrome")) and not BROWSER_OWN.match(url)]  # fmt: skip
    return Page(done.stdout, console, requests, done.stderr)


def can_open_offline() -> bool:
    """Whether this machine has Chromium and lets a process have its own network namespace."""
    if CHROMIUM is None:
        return False
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
