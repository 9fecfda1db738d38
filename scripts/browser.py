"""Debian's Chromium, as the dev tools that look at the page launch it (tests/test_browser.py,
scripts/screenshot.py, benchmarks/page_weight.py), and a quiet static server for a built site."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"  # apt-get install chromium; never `playwright install`
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def serve_static(root: Path, errors: set[str] | None = None) -> Iterator[str]:
    """`root` over HTTP on 127.0.0.1, in a thread; yields the base URL. Error answers go into
    `errors` where given (the browser's own requests, such as /favicon.ico, never reach
    Playwright's events)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            if errors is not None and str(code).isdigit() and int(code) >= 400:
                errors.add(f"server answered {int(code)}: {self.path}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
