"""`gallery serve`: look at the generated page without Jekyll.

Only the little Liquid our own templates use is understood ({% include %} and
{{ '...' | relative_url }}); the page body goes through the `markdown` package, and a plain
shell stands in for the site's layout. For the real thing, run `jekyll serve` in site/.
"""

from __future__ import annotations

import functools
import html
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import markdown

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


def serve(site_dir: Path, slug: str, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for site_dir whose / and /projects/<slug>/ answer with the rendered page."""
    page_paths = {"/", "/index.html", f"/projects/{slug}/", f"/projects/{slug}/index.html"}

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):  # http.server names it so
            if self.path.split("?", 1)[0] in page_paths:
                data = render_page(site_dir, slug).encode("utf-8")  # rendered per request: edits show on reload
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            super().do_GET()

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
