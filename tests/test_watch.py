"""The editing loop, driven for real: `gallery serve --watch` as a process on a tiny random-weight
model, its page open in Chromium, prompts.yaml edited under it. New images reach the open page
without a reload and without moving the reader; a bad edit shows a banner and keeps the page; an
edit during a render stops what no longer applies and keeps every finished image."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, write_prompts
from test_browser import pytestmark as browser_mark

pytestmark = browser_mark
SLUG = "live"


def prompts_text(model: Path, styles: str, samples: int = 2, extra: str = "", more: str = "") -> str:
    return f"""
        page: {{title: Live, slug: {SLUG}}}
        render: {{model: {model}, steps: 2, width: 64, height: 64, samples: {samples}{extra}}}
        axes:
          subject: {{cat: a cat}}
          style: {{{styles}}}
        {more}
    """


class Watching:
    """`gallery serve --watch` in a process of its own, its output kept line by line."""

    def __init__(self, prompts: Path):
        self.prompts = prompts
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gallery", "serve", "--watch", "--port", "0", "-c", str(prompts)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # a shell runs a background job with SIGINT ignored, which the child would inherit, and
            # stop()'s Ctrl-C would then do nothing: the child takes the default back
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: list[str] = []
        self._more = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self.wait_line("serve: http://").split()[1]

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._more:
                self.lines.append(line.rstrip("\n"))
                self._more.notify_all()

    def wait_line(self, text: str, after: int = 0, timeout: float = 120) -> str:
        """The first line from number `after` on that holds `text`, once the process has printed it."""
        deadline = time.monotonic() + timeout
        with self._more:
            while True:
                found = next((line for line in self.lines[after:] if text in line), None)
                if found is not None:
                    return found
                assert self.proc.poll() is None, "gallery serve --watch ended:\n" + "\n".join(self.lines)
                assert time.monotonic() < deadline, f"no line with {text!r} in:\n" + "\n".join(self.lines)
                self._more.wait(1)

    def edit(self, text: str) -> int:
        """Write prompts.yaml as an editor does (a new file renamed into place); the line number to
        wait from."""
        mark = len(self.lines)
        write_prompts(self.prompts.parent / "edit", text).replace(self.prompts)
        return mark

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def watching(tmp_path_factory, tiny_sd):
    """One `gallery serve --watch` for the module's tests; each writes the prompts.yaml it needs."""
    work = tmp_path_factory.mktemp("watch")
    (work / "templates").mkdir()  # the project's own templates, none yet: watched from the start
    server = Watching(write_prompts(work, prompts_text(tiny_sd, "oil: oil painting, ink: ink drawing")))
    yield server, tiny_sd
    server.stop()
    assert server.proc.returncode == 0, "\n".join(server.lines)


def open_page(browser, url: str, **context):
    page = browser.new_context(**context).new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.goto(url)
    page.wait_for_selector("select[data-axis]:not([disabled])", state="attached")
    return page, problems


def page_on(server: Watching, browser, text: str):
    """prompts.yaml as `text` (whose default cell holds 2 images), and a page open on it once they show."""
    server.wait_line("watch: prompts.yaml changed", server.edit(text))
    page, problems = open_page(browser, server.url)
    page.wait_for_function("document.querySelectorAll('.pg-grid img').length === 2", timeout=120_000)
    return page, problems


THUMBS = "els => els.map(e => e.src)"

# each grid cell as "images/placeholder" (a grid image loads as it comes into view: its link counts)
TABLE = """() => [...document.querySelectorAll('.pg-table tbody td')].map(td =>
    td.querySelectorAll('a.pg-glink').length + '/' + (td.querySelector('.pg-gpending')?.textContent ?? ''))"""


def test_an_edit_reaches_the_open_page_without_a_reload_or_moving_the_reader(watching, browser):
    server, model = watching
    page, problems = open_page(
        browser, server.url + "?view=grid&rows=subject&cols=style&sample=all", viewport={"width": 500, "height": 300}
    )
    page.wait_for_function(f"JSON.stringify(({TABLE})()) === JSON.stringify(['2/', '2/'])", timeout=120_000)
    # the reader's place: the lightbox open on the first image, the page scrolled to it; a marker
    # that a reload would lose
    page.locator(".pg-table a.pg-glink").first.click()
    page.wait_for_function("document.querySelector('dialog.pg-lightbox').open")
    shown = page.locator(".pg-lb-img").get_attribute("src")
    page.evaluate("window.pgMarker = 1")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0

    server.edit(prompts_text(model, "oil: oil painting, ink: ink drawing, wash: watercolour wash"))
    # the new column comes with its placeholder, then its images, into the open page
    page.wait_for_function(
        "document.querySelectorAll('.pg-table thead th').length === 3 && "
        f"JSON.stringify(({TABLE})()) === JSON.stringify(['2/', '2/', '2/'])",
        timeout=120_000,
    )
    assert page.evaluate("window.pgMarker") == 1  # no reload
    assert page.evaluate("window.scrollY") == scrolled
    assert page.evaluate("document.querySelector('dialog.pg-lightbox').open")
    assert page.locator(".pg-lb-img").get_attribute("src") == shown
    # the new option is in the dropdowns too, for the cell view
    options = page.eval_on_selector_all("select[data-axis=style] option", "os => os.map(o => o.value)")
    assert options == ["oil", "ink", "wash"]
    page.keyboard.press("Escape")
    page.select_option("select[data-control=view]", "cell")
    page.select_option("select[data-axis=style]", "wash")
    page.wait_for_function("document.querySelectorAll('.pg-grid img').length === 2")
    assert page.locator(".pg-prompt-text").inner_text() == "a cat watercolour wash"
    assert problems == []
    page.context.close()
    # the site that would be published has none of the live preview's code
    site = server.prompts.parent / "site"
    texts = [p.read_text(encoding="utf-8") for p in site.rglob("*") if p.suffix in {".js", ".html", ".md"}]
    assert texts and not any("EventSource" in text or "/__gallery/" in text for text in texts)


def test_a_bad_edit_shows_a_banner_and_keeps_the_page(watching, browser):
    server, model = watching
    good = prompts_text(model, "oil: oil painting, ink: ink drawing")
    page, problems = page_on(server, browser, good)
    thumbs = page.eval_on_selector_all(".pg-grid img", THUMBS)
    page.evaluate("window.pgMarker = 1")

    mark = server.edit(good.replace("samples: 2", "samples: -3"))
    said = server.wait_line("render.samples", mark)
    assert "prompts.yaml:2" in said  # the file and line, in the terminal
    banner = page.locator(".pg-live-banner")
    banner.wait_for(state="visible")
    assert "prompts.yaml:2" in banner.inner_text() and "render.samples" in banner.inner_text()
    assert page.eval_on_selector_all(".pg-grid img", THUMBS) == thumbs  # the page stays
    # and a reload shows the last good page, with the banner
    page.reload()
    page.locator(".pg-live-banner").wait_for(state="visible")
    assert page.eval_on_selector_all(".pg-grid img", THUMBS) == thumbs

    server.edit(good)  # fixed: the banner goes
    page.locator(".pg-live-banner").wait_for(state="hidden")
    assert page.eval_on_selector_all(".pg-grid img", THUMBS) == thumbs
    assert problems == []
    page.context.close()


def cached(folder: Path) -> set[str]:
    return {p.stem for p in (folder / ".gallery-cache" / "images").rglob("*.json")}


def test_an_edit_during_a_render_stops_what_no_longer_applies_and_keeps_what_is_finished(watching, browser):
    server, model = watching
    folder = server.prompts.parent
    # one image a batch, many of them (a fast machine too is still rendering when the edit comes)
    start = cached(folder)
    mark = server.edit(prompts_text(model, "sketch: pencil sketch", samples=120, extra=", batch_size: 1"))
    server.wait_line("watch: rendering", mark)
    page, problems = open_page(browser, server.url + "?style=sketch")
    page.wait_for_function("document.querySelectorAll('.pg-grid img').length >= 3", timeout=120_000)
    before = cached(folder)

    mark = server.edit(prompts_text(model, "sketch: pencil sketch", samples=3, extra=", batch_size: 1"))
    server.wait_line("watch: the plan changed: the render goes on in the new order", mark)
    # the page (reloaded: the samples changed what it is made of) shows the new plan, whole
    page.wait_for_function(
        "document.querySelectorAll('.pg-grid img').length === 3 && !document.querySelector('.pg-pending')",
        timeout=120_000,
    )
    after = cached(folder)
    assert before <= after  # nothing finished was lost
    manifest = json.loads((folder / f"site/assets/img/{SLUG}/manifest.json").read_text())
    assert manifest["missing"] == 0 and manifest["samples"] == 3
    rendered = [line for line in server.lines[mark:] if line.startswith("watch: rendering")]
    assert rendered == []  # the first three samples were among those finished: nothing more to render
    assert len(after - start) < 120  # they were not all rendered
    assert problems == []
    page.context.close()


def rendered_at(folder: Path) -> dict[str, list[int]]:
    """Cell path -> when each of its cached PNGs was written (ns), from the sidecars."""
    times: dict[str, list[int]] = {}
    for sidecar in (folder / ".gallery-cache" / "images").rglob("*.json"):
        side = json.loads(sidecar.read_text())
        times.setdefault("/".join(side["cell"]), []).append(side["png"]["mtime_ns"])
    return times


def test_the_cells_the_reader_looks_at_render_first(watching, browser):
    server, model = watching
    folder = server.prompts.parent
    styles = "oil: oil painting"
    server.wait_line("watch: prompts.yaml changed", server.edit(prompts_text(model, styles)))
    # the page is open on a cell the next edit adds, last in the plan's order; it tells the preview
    page = browser.new_context().new_page()
    told = lambda r: r.url.endswith("/__gallery/view") and r.request.method == "POST"  # noqa: E731
    with page.expect_response(told) as response:
        page.goto(server.url + "?subject=cat&style=z3")
    assert response.value.status == 204 and response.value.request.post_data == "?subject=cat&style=z3"

    more = f"{styles}, z1: charcoal, z2: pastel, z3: gouache"
    mark = server.edit(prompts_text(model, more, extra=", batch_size: 1"))
    assert server.wait_line("watch: rendering", mark) == "watch: rendering 6 images on cpu"
    page.wait_for_function(
        "document.querySelectorAll('.pg-grid img').length === 2 && "
        "document.querySelector('.pg-prompt-text').textContent === 'a cat gouache'",
        timeout=120_000,
    )
    server.wait_line("watch: rendered", mark)
    times = rendered_at(folder)
    # the cell in view came first (a file time's tick may hold two images: <=)
    assert max(times["cat/z3"]) <= min(times["cat/z1"] + times["cat/z2"])
    page.context.close()


def test_a_view_that_a_render_would_reach_later_starts_it_again_in_its_order(tmp_path, tiny_sd):
    from gallery.watch import Watch, in_view

    prompts = write_prompts(tmp_path, prompts_text(tiny_sd, "a: a, b: b, c: c, d: d"))
    watch = Watch(prompts, stages=None, say=lambda text: None)
    project = watch.project
    assert in_view(project, "?subject=cat&style=c") == {"cat/c"}
    assert in_view(project, "?style=nope") == {"cat/a"}  # as the page falls back: the default cell
    assert in_view(project, "?view=grid&rows=subject&cols=style") == {"cat/a", "cat/b", "cat/c", "cat/d"}
    watch._running = (["cat/a", "cat/a", "cat/b", "cat/b", "cat/c", "cat/d"], [2])  # two done
    watch.look("?style=b")  # next anyway: nothing changes
    assert watch.generation == 0 and watch._view == "?style=b"
    watch.look("?style=a")  # done already
    assert watch.generation == 0
    watch.look("?style=d")  # last: the render starts again, d first
    assert watch.generation == 1 and watch._render_due.is_set()


def test_a_template_saved_during_a_site_write_reloads_the_page_at_the_next_one(tmp_path, tiny_sd, monkeypatch):
    """The page's shape (a change reloads it) is taken before the site is written: a template saved
    while a write reads the old one moves the shape on at the next write, which holds the new
    template. Taken after, the first write would report it, and the page, reloaded on the old
    template, would not reload again."""
    from gallery import site
    from gallery.watch import Watch

    (tmp_path / "templates").mkdir()
    watch = Watch(write_prompts(tmp_path, prompts_text(tiny_sd, "oil: oil painting")), stages=None, say=print)
    override = tmp_path / "templates" / "gallery.html"
    builtin = (REPO / "templates" / "gallery.html").read_text(encoding="utf-8")
    write = site.build_site

    def saved_meanwhile(*args, **kwargs):
        report = write(*args, **kwargs)  # with the built-in template
        override.write_text(
            builtin.replace('<p class="pg-prompt">', '<p class="pg-mine">Mine</p><p class="pg-prompt">')
        )
        return report

    monkeypatch.setattr(site, "build_site", saved_meanwhile)
    watch.write_site()
    first = watch.live.state["shape"]
    monkeypatch.setattr(site, "build_site", write)
    watch.write_site()
    assert watch.live.state["shape"] != first  # the page reloads now, on the new template
    assert "pg-mine" in (watch.site_dir / "_includes" / "prompt_gallery" / SLUG / "gallery.html").read_text()


def test_a_template_edit_reloads_the_page_and_a_broken_one_shows_a_banner(watching, browser):
    server, model = watching
    folder = server.prompts.parent
    page, problems = page_on(server, browser, prompts_text(model, "oil: oil painting"))
    builtin = (REPO / "templates" / "gallery.html").read_text(encoding="utf-8")
    override = folder / "templates" / "gallery.html"
    override.write_text(builtin.replace('<p class="pg-prompt">', '<p class="pg-mine">Mine</p>\n<p class="pg-prompt">'))
    page.locator(".pg-mine").wait_for()  # the page reloaded with the new template
    page.wait_for_function("document.querySelectorAll('.pg-grid img').length === 2")

    override.write_text(builtin.replace("[% endfor %]", "[% endfore %]", 1))  # a Jinja mistake
    banner = page.locator(".pg-live-banner")
    banner.wait_for(state="visible")
    assert f"{override}:" in banner.inner_text() and "endfore" in banner.inner_text()
    assert page.locator(".pg-mine").count() == 1  # the last good page stays

    override.unlink()  # back to the built-in one
    page.locator(".pg-mine").wait_for(state="detached")
    assert page.locator(".pg-live-banner").is_hidden()
    assert problems == []
    page.context.close()


def test_an_upscale_added_under_the_watch_fills_the_page_with_the_upscaled_pictures(watching, browser):
    server, model = watching
    page, problems = page_on(server, browser, prompts_text(model, "oil: oil painting"))
    before = page.eval_on_selector_all(".pg-grid img", THUMBS)

    mark = server.edit(prompts_text(model, "oil: oil painting", more="upscale: {upscaler: lanczos, factor: 2}"))
    server.wait_line("upscale: 2 images (Lanczos 2x)", mark)  # nothing to render: only the upscale stage
    page.wait_for_function(
        "before => { const now = [...document.querySelectorAll('.pg-grid img')].map(e => e.src);"
        " return now.length === 2 && now.every(src => !before.includes(src)); }",
        arg=before,
        timeout=120_000,
    )
    page.locator(".pg-grid a.pg-link").first.click()
    page.wait_for_function("document.querySelector('.pg-lb-img').naturalWidth === 128")
    assert problems == []
    page.context.close()
