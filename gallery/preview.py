"""`gallery serve`: look at the generated page without Jekyll.

Only the little Liquid our own templates use is understood ({% include %} and
{{ '...' | relative_url }}); the page body goes through the `markdown` package, and a plain
shell stands in for the site's layout. For the real thing, run `jekyll serve` in site/.
"""

from __future__ import annotations

import functools
import html
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import markdown

from gallery.site import BUILTIN_TEMPLATES

# gallery serve --watch: the script that keeps an open page up to date, and where it listens
LIVE_SCRIPT = BUILTIN_TEMPLATES / "preview" / "live.js"
LIVE_SCRIPT_URL = "/__gallery/live.js"
EVENTS_URL = "/__gallery/events"
VIEW_URL = "/__gallery/view"

_INCLUDE = re.compile(r"\{%-?\s*include\s+(\S+)\s*-?%\}")
_RELATIVE_URL = re.compile(r"\{\{-?\s*'([^']*)'\s*\|\s*relative_url\s*-?\}\}")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def render_page(site_dir: Path, slug: str) -> str:
    """The gallery page as the browser would get it from Jekyll, near enough to judge it."""
    import yaml

    source = (site_dir / "_projects" / f"{slug}.md").read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(source)
    front = yaml.safe_load(match.group(1)) if match else {}
    body = _liquid(source[match.end() :] if match else source, site_dir)
    content = markdown.markdown(body, extensions=["extra"])
    title = html.escape(str(front.get("title", slug)))
    description = html.escape(str(front.get("description", "")))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{title} (preview)</title>\n<link rel="stylesheet" href="/assets/css/site.css">\n</head>\n<body>\n'
        f'<main class="site-main">\n<h1 class="post-title">{title}</h1>\n'
        + (f'<p class="post-description">{description}</p>\n' if description else "")
        + f"{content}\n</main>\n</body>\n</html>\n"
    )


def _liquid(text: str, site_dir: Path, depth: int = 0) -> str:
    if depth > 10:
        raise ValueError("includes nest too deeply")
    text = _INCLUDE.sub(
        lambda m: _liquid((site_dir / "_includes" / m.group(1)).read_text(encoding="utf-8"), site_dir, depth + 1), text
    )
    return _RELATIVE_URL.sub(lambda m: "/" + m.group(1).lstrip("/"), text)


class Live:
    """What the preview's open pages learn: `site`, which grows each time the site was written;
    `error`, the mistake that keeps the last good page; `shape`, what the page's HTML depends on
    beyond the manifest (a change reloads the page); `status`, what is rendering. `version` grows
    on any change; `wait` blocks until it does."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.version = 0
        self.closed = False
        self.state: dict = {"site": 0, "error": None, "shape": "", "status": ""}
        self.on_view: Callable[[str], None] = lambda query: None  # an open page's view (its URL's query)

    def update(self, **changes) -> None:
        with self._changed:
            if changes.get("site"):  # a count, not a value: each write moves it on
                changes["site"] = self.state["site"] + 1
            if all(self.state.get(k) == v for k, v in changes.items()):
                return
            self.state.update(changes)
            self.version += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> tuple[int, dict] | None:
        """(version, state) once the version is past `seen`; None after `timeout` seconds or on close."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self.closed, timeout)
            if self.closed or self.version == seen:
                return None
            return self.version, dict(self.state)

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


def serve(
    site_dir: Path, slug: str | Callable[[], str], host: str = "127.0.0.1", port: int = 8000, live: Live | None = None
) -> ThreadingHTTPServer:
    """A server for site_dir whose / and /projects/<slug>/ answer with the rendered page. With
    `live` (gallery serve --watch) the page also gets the live script, which learns of each new
    site from /__gallery/events (Server-Sent Events); a published page never has it."""
    slug_of = slug if callable(slug) else lambda: slug

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):  # http.server names it so
            path = self.path.split("?", 1)[0]
            name = slug_of()
            if path in {"/", "/index.html", f"/projects/{name}/", f"/projects/{name}/index.html"}:
                page = render_page(site_dir, name)  # rendered per request: edits show on reload
                if live is not None:
                    # the shape the page is made of: a page of another shape than the live one reloads
                    shape = urllib.parse.quote(live.state["shape"])
                    script = f'<script type="module" src="{LIVE_SCRIPT_URL}?shape={shape}"></script>'
                    page = page.replace("</body>", f"{script}\n</body>")
                self._send(page.encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/favicon.ico" and not (site_dir / "favicon.ico").is_file():
                self.send_response(204)  # none: no error in the terminal nor in the browser's console
                self.end_headers()
            elif live is not None and path == LIVE_SCRIPT_URL:
                self._send(LIVE_SCRIPT.read_bytes(), "text/javascript; charset=utf-8")
            elif live is not None and path == EVENTS_URL:
                self._events(live)
            else:
                if path.endswith(".json"):
                    # answered whole each time: http.server compares If-Modified-Since in whole
                    # seconds, so a manifest rewritten within the second would be "not modified"
                    del self.headers["If-Modified-Since"]
                super().do_GET()

        def do_POST(self):  # the live page tells which view it shows (its URL's query)
            if live is None or self.path != VIEW_URL:
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= 64 * 1024:
                self.send_error(413)
                return
            live.on_view(self.rfile.read(length).decode("utf-8", "replace"))
            self.send_response(204)
            self.end_headers()

        def _send(self, data: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _events(self, live: Live) -> None:
            """The live state as Server-Sent Events: at once, then on each change; a comment now and
            then finds a page that has gone (the write fails) and ends the thread."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = -1
            try:
                while not live.closed:
                    news = live.wait(seen, timeout=10)
                    if news is None:
                        self.wfile.write(b": still here\n\n")
                    else:
                        seen, state = news
                        self.wfile.write(f"data: {json.dumps(state)}\n\n".encode())
                    self.wfile.flush()
            except OSError:  # the page closed or reloaded
                pass

        def log_message(self, format, *args):  # keep the terminal for errors
            if args and str(args[1] if len(args) > 1 else "").startswith(("4", "5")):
                super().log_message(format, *args)

    handler = functools.partial(Handler, directory=str(site_dir))
    return ThreadingHTTPServer((host, port), handler)


def serve_in_thread(site_dir: Path, slug: str, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    server = serve(site_dir, slug, port=port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.socket.getsockname()[:2]
    return server, f"http://{host}:{port}/projects/{slug}/"
