"""Take a screenshot of the built gallery page in a real browser (Debian's Chromium via Playwright).

    python scripts/screenshot.py [--config prompts.yaml] [--out docs/screenshot.png] [--lightbox]
                                 [--query '?view=grid&rows=subject&cols=style&sample=1']
                                 [--query '?compare=cat/oil:1,cat/ink:1']   (the compare dialog)

The site is built with Jekyll when it is installed (otherwise shown through `gallery serve`'s
preview) and served from 127.0.0.1; nothing is fetched from anywhere else.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gallery.config import load_config
from gallery.preview import serve_in_thread
from scripts.browser import CHROMIUM, FLAGS, serve_static


@contextlib.contextmanager
def page_url(site_dir: Path, slug: str, tmp: Path) -> Iterator[str]:
    """The page served from 127.0.0.1: Jekyll's real output if we can, else the preview."""
    jekyll = shutil.which("jekyll")
    if jekyll is None:
        yield serve_in_thread(site_dir, slug)[1]
        return
    subprocess.run(
        [
            jekyll,
            "build",
            "--source",
            str(site_dir),
            "--destination",
            str(tmp / "_site"),
            "--baseurl",
            "",
            "--disable-disk-cache",
            "--quiet",
        ],
        check=True,
    )
    with serve_static(tmp / "_site") as base:
        yield f"{base}/projects/{slug}/"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="prompts.yaml")
    parser.add_argument("--out", default="docs/screenshot.png", type=Path)
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--query", default="", help="e.g. '?subject=cat&style=monet'")
    parser.add_argument("--lightbox", action="store_true", help="open the lightbox on the second image")
    args = parser.parse_args()
    config = load_config(args.config)
    if not (config.site_dir / "_projects" / f"{config.page.slug}.md").is_file():
        print(f"error: no page in {config.site_dir}; run `gallery build` first", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as tmp,
        page_url(config.site_dir, config.page.slug, Path(tmp)) as url,
        sync_playwright() as p,
    ):
        url += args.query
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(url)
        page.wait_for_function("document.querySelector('select[data-axis]:not([disabled])')")  # the script ran
        page.wait_for_load_state("networkidle")
        if args.lightbox:
            page.locator(".pg-grid a.pg-link").nth(1).click()
            page.wait_for_function("document.querySelector('.pg-lb-img').complete")
        dialog = args.lightbox or "compare=" in args.query
        if "compare=" in args.query:
            page.wait_for_function("document.querySelector('dialog.pg-compare')?.open === true")
            page.wait_for_function("[...document.querySelectorAll('dialog.pg-compare img')].every(i => i.complete)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=not dialog)
        browser.close()
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
