"""Page weight: bytes the browser transfers for the gallery page, next to the hand-made original.

What is measured
    The first view of the gallery page (its default cell) and one dropdown change (the next
    style), in Debian's Chromium driven by Playwright, at a desktop viewport (1280x800, 1x) and a
    phone viewport (390x844, 3x). Bytes are what Chromium reports per request in
    `Request.sizes()`: response headers + response body as transferred. The page lazy-loads
    images below the fold, so "first view" is what the browser actually fetched; the page is
    then scrolled to the bottom to count the whole cell too. Each viewport runs in fresh browser
    contexts (empty cache) several times; medians are printed, with the JSON files each phase
    fetched (the first view fetches the manifest index only: the default cell is in the HTML).

    The original hand-made page showed, per cell, 16 full PNGs upscaled 2x (Real-ESRGAN) to
    512x512 and little else, and loaded 16 new PNGs on every change. Its weight is the file
    size of those PNGs for the same cells (they are also fetched once through the same server to
    confirm that transfer ~= file size).

How
    The gallery is the committed prompts.yaml's matrix (or --config FILE), built with the
    project's own code from a cache filled without any model: each "render" is a photo from
    scikit-image's bundled test images (astronaut, chelsea, coffee, ...), cropped differently
    per image and resized to the render size, because compression ratios depend on content
    and noise would be unfair to both sides. The original's PNGs are the same renders upscaled
    with Lanczos (standing in for Real-ESRGAN), saved with Pillow's default settings. The site
    is built with `jekyll build --baseurl /repo` and served by Python's http.server on
    127.0.0.1 without compression (GitHub Pages gzips HTML/CSS/JS/JSON; an extra row estimates
    that).

The grid view (--grid)
    (a) the same gallery as a grid, subjects as rows and styles as columns, one sample per cell:
    the first view's bytes at both viewports; (b) a 25 x 25 x 16 gallery (10,000 images, the
    committed render settings) as a grid with all samples: image requests before the reader
    scrolls, the time from navigation to the grid's first paint (medians of --runs fresh visits, the
    load average printed beside: the time depends on the machine's load), then, in the last visit,
    every part of the grid scrolled into view (all images must arrive), and the tab's memory: the
    JS heap and DOM nodes Chromium reports (CDP Performance.getMetrics) and the resident memory of
    its renderer processes (/proc), after everything was shown.

Run (needs /usr/bin/chromium, jekyll, and scikit-image in the venv: .venv/bin/pip install scikit-image)
    .venv/bin/python benchmarks/page_weight.py [--config prompts.yaml] [--runs 3] [--keep DIR]
    .venv/bin/python benchmarks/page_weight.py --grid [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import gzip
import hashlib
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from gallery import metadata  # noqa: E402
from gallery.cache import Cache  # noqa: E402
from gallery.config import load_config  # noqa: E402
from gallery.plan import Cell, Job, Plan  # noqa: E402
from gallery.project import plan_of  # noqa: E402
from gallery.site import build_site  # noqa: E402
from scripts.browser import CHROMIUM, FLAGS, serve_static  # noqa: E402

VIEWPORTS = {
    "desktop 1280x800 @1x": dict(viewport={"width": 1280, "height": 800}, device_scale_factor=1),
    "phone 390x844 @3x": dict(
        viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True, has_touch=True
    ),
}
# Colour photographs shipped inside the scikit-image wheel (nothing is downloaded).
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")
ORIGINAL_SCALE = 2  # the original upscaled 256 px renders to 512 px
BASEURL = "/repo"
QUIET_S = 0.5  # the network counts as idle after this long with nothing in flight
KIB = 1024


# -- the gallery, built from photos instead of renders ---------------------------------------------


@functools.cache
def photos() -> tuple[Image.Image, ...]:
    try:
        from importlib.resources import files

        folder = files("skimage.data")
    except ModuleNotFoundError:
        sys.exit("scikit-image is needed for its bundled photos: .venv/bin/pip install scikit-image")
    return tuple(Image.open(folder / name).convert("RGB") for name in PHOTOS)


def fake_render(job: Job) -> Image.Image:
    """A photo-like stand-in for `job`'s render: a different crop of a real photo per job."""
    rng = random.Random(job.key)  # deterministic, and different for every image
    # Each cell cycles through the photos (from its own start), so every cell has a similar mix.
    start = int(hashlib.sha256("/".join(job.cell).encode()).hexdigest()[:8], 16)
    photo = photos()[(start + job.sample) % len(PHOTOS)]
    w, h = job.picture.width, job.picture.height
    side = rng.uniform(0.45, 1.0) * min(photo.width / w, photo.height / h)  # crop scale, keeps aspect
    cw, ch = max(8, int(w * side)), max(8, int(h * side))
    x, y = rng.randrange(photo.width - cw + 1), rng.randrange(photo.height - ch + 1)
    image = photo.crop((x, y, x + cw, y + ch)).resize((w, h), Image.LANCZOS)
    return image.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def store(cache: Cache, job: Job, make=fake_render) -> None:
    """One cache entry, as render._store writes it (PNG with the recipe, then the sidecar); `make`
    draws the stand-in picture."""
    image = make(job)
    recipe = job.recipe
    png = metadata.encode_png(image, metadata.a1111_parameters(recipe, job.picture.model_name), recipe)
    sidecar = {
        "key": job.key,
        "cell": list(job.cell),
        "sample": job.sample,
        "recipe": recipe,
        "model_name": job.picture.model_name,
        "made": {"device": "benchmark: photo crop"},
        "png": {"width": image.width, "height": image.height},
    }  # put() adds its hash and size
    cache.put(job.key, png, sidecar)


def build_gallery(config_path: Path, work: Path) -> tuple[Plan, str]:
    """Fill a cache for every job without a model, write the site source, and `jekyll build` it.
    Returns the plan and how long each step took."""
    clock = Stopwatch()
    config = load_config(config_path)
    config = dataclasses.replace(config, cache_dir=work / "cache", site_dir=work / "site")
    plan = plan_of(config)
    cache = Cache(config.cache_dir)
    with ProcessPoolExecutor() as pool:  # processes: Pillow holds the GIL while it encodes
        list(pool.map(functools.partial(store, cache), cache.missing(plan.jobs), chunksize=32))
    clock.lap("cache")
    build_site(plan, cache)
    clock.lap("gallery site")
    subprocess.run(
        [
            "jekyll",
            "build",
            "--quiet",
            "--source",
            str(config.site_dir),
            "--destination",
            str(work / "www" / BASEURL.strip("/")),
            "--baseurl",
            BASEURL,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    clock.lap("jekyll")
    return plan, str(clock)


class Stopwatch:
    def __init__(self):
        self.last = time.perf_counter()
        self.laps: list[str] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append(f"{name} {now - self.last:.0f}s")
        self.last = now

    def __str__(self) -> str:
        return ", ".join(self.laps)


def original_pngs(cell: Cell) -> list[bytes]:
    """The original page's images for `cell`: each render upscaled, saved as Pillow's default PNG."""
    out = []
    for job in cell.jobs:
        image = fake_render(job)
        big = image.resize((image.width * ORIGINAL_SCALE, image.height * ORIGINAL_SCALE), Image.LANCZOS)
        buffer = io.BytesIO()
        big.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def write_original_page(folder: Path, pngs: list[bytes]) -> None:
    """A bare page with the 16 PNGs, to fetch them through the same server and browser."""
    folder.mkdir(parents=True, exist_ok=True)
    tags = []
    for i, png in enumerate(pngs):
        (folder / f"{i:02d}.png").write_bytes(png)
        tags.append(f'<img src="{i:02d}.png" width="512" height="512" alt="">')
    (folder / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(tags) + "\n</body></html>\n")


# -- measuring in the browser ------------------------------------------------------------------------

KINDS = {"document": "html", "stylesheet": "css", "script": "js", "fetch": "json", "xhr": "json", "image": "images"}


@dataclasses.dataclass
class Hit:
    url: str
    kind: str
    bytes: int  # response headers + body, as transferred
    gzipped: int  # the same if a text body were gzipped (GitHub Pages does); images unchanged
    status: int


class Meter:
    """Counts every response of one page, by phase, and waits for the network to go quiet."""

    def __init__(self, page, notes: set[str]):
        self.hits: list[Hit] = []
        self.inflight = 0
        self.last = time.monotonic()
        self.notes = notes
        page.on("request", self._started)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", self._failed)
        page.on("console", lambda m: m.type in ("error", "warning") and notes.add(f"console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: notes.add(f"page error: {e}"))

    def _started(self, request) -> None:
        self.inflight += 1
        self.last = time.monotonic()

    async def _finished(self, request) -> None:
        try:
            sizes = await request.sizes()
            response = await request.response()
            transferred = sizes["responseHeadersSize"] + sizes["responseBodySize"]
            kind = KINDS.get(request.resource_type, "other")
            gzipped = transferred
            if kind in ("html", "css", "js", "json"):
                body = await response.body()
                gzipped = sizes["responseHeadersSize"] + len(gzip.compress(body, 6))
            if response.status >= 400:
                self.notes.add(f"HTTP {response.status}: {request.url}")
            self.hits.append(Hit(request.url, kind, transferred, gzipped, response.status))
        finally:
            self.inflight -= 1
            self.last = time.monotonic()

    def _failed(self, request) -> None:
        self.notes.add(f"request failed ({request.failure}): {request.url}")
        self.inflight -= 1
        self.last = time.monotonic()

    async def idle(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.inflight > 0 or time.monotonic() - self.last < QUIET_S:
            if time.monotonic() > deadline:
                raise TimeoutError(f"network not idle after {timeout}s ({self.inflight} requests in flight)")
            await asyncio.sleep(0.05)

    def take(self) -> list[Hit]:
        """The responses since the last take."""
        hits, self.hits = self.hits, []
        return hits


def summary(hits: list[Hit]) -> dict[str, float]:
    out = {
        "bytes": sum(h.bytes for h in hits),
        "gzipped": sum(h.gzipped for h in hits),
        "image count": sum(h.kind == "images" for h in hits),
    }
    for kind in ("html", "css", "js", "json", "images", "other"):
        out[kind] = sum(h.bytes for h in hits if h.kind == kind)
        out[f"{kind} gz"] = sum(h.gzipped for h in hits if h.kind == kind)
    return out


def json_paths(hits: list[Hit]) -> tuple[str, ...]:
    """The JSON files fetched, in order (path and KiB transferred), to show what the JSON bytes are."""
    return tuple(f"{urllib.parse.urlsplit(h.url).path} ({kib(h.bytes)} KiB)" for h in hits if h.kind == "json")


async def scroll_through(page) -> None:
    """Scroll down a screen at a time, as a reader would, so lazy images come into range."""
    height = await page.evaluate("document.documentElement.scrollHeight")
    step = await page.evaluate("window.innerHeight")
    for y in range(0, height + step, step):
        await page.evaluate(f"window.scrollTo(0, {y})")
        await asyncio.sleep(0.05)


async def shown_images(page) -> list[str]:
    return await page.eval_on_selector_all(
        ".pg-img", "els => els.map(e => e.complete && e.naturalWidth > 0 ? e.currentSrc || e.src : '')"
    )


async def one_visit(browser, url: str, device: dict, change: tuple[str, str, str], notes: set[str]) -> dict:
    """Fresh context: first view, scroll, back to top, change axis to option (showing cell `expect`), scroll."""
    axis, option, expect = change
    context = await browser.new_context(**device)
    page = await context.new_page()
    meter = Meter(page, notes)
    phases = {}
    try:
        await page.goto(url, wait_until="load")
        await meter.idle()
        hits = meter.take()
        phases["first view"] = summary(hits)
        phases["first view json"] = json_paths(hits)
        await scroll_through(page)
        await meter.idle()
        phases["rest of cell"] = summary(meter.take())
        phases["first cell shown"] = sum(bool(s) for s in await shown_images(page))
        await page.evaluate("window.scrollTo(0, 0)")
        await meter.idle()
        meter.take()  # nothing expected; not part of any phase
        await page.select_option(f"select[data-axis={axis}]", option)
        await meter.idle()
        hits = meter.take()
        phases["one change"] = summary(hits)
        phases["one change json"] = json_paths(hits)
        await scroll_through(page)
        await meter.idle()
        phases["rest of changed cell"] = summary(meter.take())
        shown = await shown_images(page)
        phases["changed cell shown"] = sum(bool(s) for s in shown)
        phases["changed cell ok"] = all(f"/{expect}/" in s for s in shown if s)
    finally:
        await context.close()
    return phases


async def measure(site_url: str, original_url: str, change: tuple[str, str, str], runs: int):
    """Per viewport, the median of each number over `runs` fresh visits; and the original, once."""
    from playwright.async_api import async_playwright

    notes: set[str] = set()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        results = {}
        for name, device in VIEWPORTS.items():
            visits = [await one_visit(browser, site_url, device, change, notes) for _ in range(runs)]
            results[name] = median_of(visits)
        original = await fetch_original(browser, original_url, notes)
        await browser.close()
    return results, original, notes


async def fetch_original(browser, url: str, notes: set[str]) -> dict:
    context = await browser.new_context(**VIEWPORTS["desktop 1280x800 @1x"])
    page = await context.new_page()
    meter = Meter(page, notes)
    await page.goto(url, wait_until="load")
    await meter.idle()
    await context.close()
    return summary([h for h in meter.take() if h.kind == "images"])


def median_of(visits: list[dict]) -> dict:
    out = {}
    for key, value in visits[0].items():
        if isinstance(value, dict):
            out[key] = {k: statistics.median(v[key][k] for v in visits) for k in value}
        elif isinstance(value, bool):
            out[key] = all(v[key] for v in visits)
        elif isinstance(value, tuple):  # the same in every visit, or each different one is listed
            out[key] = tuple(dict.fromkeys(item for v in visits for item in v[key]))
        else:
            out[key] = statistics.median(v[key] for v in visits)
    return out


# -- report --------------------------------------------------------------------------------------------


def kib(n: float) -> str:
    return f"{n / KIB:.1f}"


def ratio(original: float, ours: float) -> str:
    return f"1/{original / ours:.0f}" if ours else "-"


def report(
    plan: Plan,
    change: tuple[str, str],
    results: dict,
    original: dict,
    fetched_original: dict,
    runs: int,
    notes: set[str],
) -> None:
    config = plan.config
    shape = " x ".join(f"{len(a.options)} {a.name}" for a in config.axes)
    print(
        f"gallery: {config.source.name}: {shape} x {config.runtime.samples} samples = {len(plan.jobs)} images "
        f"at {config.picture.width}x{config.picture.height}; default cell {'/'.join(config.page.default)}; "
        f"change: {change[0]} -> {change[1]}"
    )
    print(
        "bytes: response headers + body per request, from Chromium's Request.sizes(); local http.server, "
        f"no compression; median of {runs} fresh visits per viewport"
    )
    print(
        f"original: 16 PNGs per cell at {ORIGINAL_SCALE}x (Lanczos), Pillow default PNG: "
        f"first cell {kib(original['first'])} KiB, changed cell {kib(original['change'])} KiB; through the "
        f"same server {kib(fetched_original['images'])} KiB for {fetched_original['image count']:.0f} images "
        f"(files {kib(original['first'])} KiB + headers)"
    )
    for name, r in results.items():
        first = r["first view"]
        print(f"\n{name}")
        by_type = ", ".join(f"{k} {kib(first[k])} (gz {kib(first[k + ' gz'])})" for k in ("html", "css", "js", "json"))
        print(
            f"  first view by type (KiB): {by_type}, images {kib(first['images'])} "
            f"({first['image count']:.0f} images), other {kib(first['other'])}"
        )
        for phase in ("first view", "one change"):
            files = r[f"{phase} json"]
            print(f"  {phase} fetched {len(files)} JSON file(s): {', '.join(files) or 'none'}")
        if any("/cell-" in f for f in r["first view json"]):
            notes.add(f"{name}: the first view fetched a cell's file, but the default cell is in the HTML")
        rows = [
            ("first view", first, original["first"]),
            ("first view, text gzipped*", {**first, "bytes": first["gzipped"]}, original["first"]),
            ("whole first cell (scrolled)", add(first, r["rest of cell"]), original["first"]),
            ("one change", r["one change"], original["change"]),
            ("whole changed cell (scrolled)", add(r["one change"], r["rest of changed cell"]), original["change"]),
        ]
        print(f"  {'view':32} {'ours bytes':>11} {'ours KiB':>9} {'images':>6} {'original KiB':>13} {'orig/ours':>9}")
        for label, ours, orig in rows:
            print(
                f"  {label:32} {ours['bytes']:>11.0f} {kib(ours['bytes']):>9} {ours['image count']:>6.0f} "
                f"{kib(orig):>13} {orig / ours['bytes']:>9.1f}"
            )
        print(
            f"  images shown after scrolling: first cell {r['first cell shown']:.0f}, changed cell "
            f"{r['changed cell shown']:.0f}" + ("" if r["changed cell ok"] else "  (WRONG CELL SHOWN)")
        )
    print("\n* text gzipped: HTML/CSS/JS/JSON bodies gzip -6, as GitHub Pages would serve them")
    print("notes:" if notes else "notes: no HTTP errors, failed requests or console errors")
    for note in sorted(notes):
        print(f"  {note}")
    print()
    for name, r in results.items():
        ours = r["first view"]["bytes"]
        verdict = "meets" if ours * 10 <= original["first"] else "MISSES"
        print(
            f"first view ({name}): ours {kib(ours)} KiB vs original {kib(original['first'])} KiB = "
            f"{ratio(original['first'], ours)} ({verdict} the goal of <= 1/10)"
        )


def add(a: dict, b: dict) -> dict:
    return {k: a[k] + b[k] for k in a}


# -- main ----------------------------------------------------------------------------------------------


def next_option(plan: Plan, axis_name: str) -> tuple[str, str]:
    """The option after the default one on `axis_name` (the last axis when it does not exist)."""
    axes = plan.config.axes
    index = next((i for i, a in enumerate(axes) if a.name == axis_name), len(axes) - 1)
    keys = [o.key for o in axes[index].options]
    current = plan.config.page.default[index]
    return axes[index].name, keys[(keys.index(current) + 1) % len(keys)]


def run(config_path: Path, work: Path, runs: int) -> None:
    started = time.perf_counter()
    plan, build_times = build_gallery(config_path, work)
    config = plan.config
    axis, option = next_option(plan, "style")
    index = [a.name for a in config.axes].index(axis)
    changed = tuple(option if i == index else k for i, k in enumerate(config.page.default))
    first_pngs = original_pngs(plan.cell(config.page.default))
    original = {"first": sum(map(len, first_pngs)), "change": sum(map(len, original_pngs(plan.cell(changed))))}
    write_original_page(work / "www" / "original", first_pngs)
    server_errors: set[str] = set()
    with serve_static(work / "www", server_errors) as base:
        site_url = f"{base}{BASEURL}/projects/{config.page.slug}/"
        change = (axis, option, "/".join(changed))
        results, fetched, notes = asyncio.run(measure(site_url, f"{base}/original/", change, runs))
    report(plan, (axis, option), results, original, fetched, runs, notes | server_errors)
    print(f"\n(build: {build_times}; total {time.perf_counter() - started:.0f}s; served from {work / 'www'})")


# -- the grid view -----------------------------------------------------------------------------------

GRID_PAINT = """
new MutationObserver((_, observer) => {
  const body = document.querySelector('.pg-table tbody');
  if (!body || !body.children.length) return;
  observer.disconnect();
  requestAnimationFrame(() => setTimeout(() => { window.__pgGridPaint = performance.now(); }));
}).observe(document, {childList: true, subtree: true});
"""


def big_config(folder: Path, base: Path, rows: int = 25, columns: int = 25, samples: int = 16) -> Path:
    """A `rows` x `columns` x `samples` gallery with the render settings of `base` (prompts.yaml)."""
    import yaml

    data = yaml.safe_load(base.read_text())
    subjects = {f"s{i:02d}": f"subject number {i}" for i in range(rows)}
    styles = {f"t{i:02d}": f"in style number {i}" for i in range(columns)}
    render = {**data.get("render", {}), "samples": samples}
    text = yaml.safe_dump(
        {
            "page": {"title": "Big grid", "slug": "big-grid"},
            "render": render,
            "axes": {"subject": subjects, "style": styles},
        }
    )
    path = folder / "prompts.yaml"
    path.write_text(text)
    return path


def _ours(pid: str) -> bool:
    """Whether process `pid` descends from this one (our Playwright driver's Chromium)."""
    me = str(os.getpid())
    while pid not in ("0", "1"):
        if pid == me:
            return True
        try:
            pid = (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            return False
    return False


def renderer_rss() -> int:
    """Resident bytes of the Chromium renderer processes this benchmark started (not another's)."""
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or b"--type=renderer" not in (proc / "cmdline").read_bytes():
                continue
            if not _ours(proc.name):
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


async def scroll_grid(page) -> None:
    """Bring every part of the grid's scrolling box into view, a box at a time (rows, then columns)."""
    await page.evaluate("document.querySelector('.pg-table-wrap').scrollIntoView()")
    box = await page.evaluate(
        "(() => { const w = document.querySelector('.pg-table-wrap');"
        " return [w.scrollWidth, w.scrollHeight, w.clientWidth, w.clientHeight]; })()"
    )
    width, height, step_x, step_y = box
    for y in range(0, height + step_y, step_y):
        for x in range(0, width + step_x, step_x):
            # each box is drawn at least twice (the page sees what is in view at a frame), however
            # slow the machine's frames are, then stays a little: a reader glancing at each screenful
            await page.evaluate(
                f"document.querySelector('.pg-table-wrap').scrollTo({x}, {y});"
                " new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
            )
            await asyncio.sleep(0.03)


async def grid_visit(browser, url: str, device: dict, notes: set[str], everything: bool) -> dict:
    context = await browser.new_context(**device)
    await context.add_init_script(GRID_PAINT)
    page = await context.new_page()
    meter = Meter(page, notes)
    out: dict = {}
    try:
        await page.goto(url, wait_until="load")
        await page.wait_for_function("window.__pgGridPaint !== undefined", timeout=60_000)
        await meter.idle()
        out["first view"] = summary(meter.take())
        out["grid paint ms"] = await page.evaluate("window.__pgGridPaint")
        # the boxes out of view are filled after the first paint (pg-grid.js): count them all
        await page.wait_for_function("!document.querySelector('.pg-table').hasAttribute('aria-busy')")
        out["images in grid"] = await page.locator(".pg-table img").count()
        if everything:
            await scroll_grid(page)
            await meter.idle(timeout=120)
            out["rest"] = summary(meter.take())
            out["shown"] = await page.evaluate(
                "[...document.querySelectorAll('.pg-table img')].filter(i => i.complete && i.naturalWidth > 0).length"
            )
            cdp = await context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            metrics = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
            out["js heap"] = metrics.get("JSHeapUsedSize", 0)
            out["dom nodes"] = metrics.get("Nodes", 0)
            out["renderer rss"] = renderer_rss()
    finally:
        await context.close()
    return out


async def measure_grid(url: str, runs: int, everything: bool) -> tuple[dict, set[str]]:
    """`runs` fresh visits per viewport; with `everything`, the last one then scrolls through it all."""
    from playwright.async_api import async_playwright

    notes: set[str] = set()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        results = {}
        for name, device in VIEWPORTS.items():
            results[name] = [
                await grid_visit(browser, url, device, notes, everything and i == runs - 1) for i in range(runs)
            ]
        await browser.close()
    return results, notes


def grid_report(title: str, results: dict, notes: set[str]) -> None:
    print(f"\n{title}")
    for name, visits in results.items():
        first = [v["first view"] for v in visits]
        line = (
            f"  {name}: first view {kib(statistics.median(f['bytes'] for f in first))}"
            f" ({kib(statistics.median(f['gzipped'] for f in first))} gzipped),"
            f" {statistics.median(f['image count'] for f in first):.0f} image requests"
            f" (of {visits[0]['images in grid']} in the grid),"
            f" first grid paint {statistics.median(v['grid paint ms'] for v in visits):.0f} ms"
            f" (median of {len(visits)}: {', '.join(str(round(v['grid paint ms'])) for v in visits)})"
        )
        print(line)
        if "rest" in visits[-1]:
            v = visits[-1]
            print(
                f"    scrolled through: {v['rest']['image count']:.0f} more image requests, {v['shown']} of"
                f" {v['images in grid']} shown; JS heap {v['js heap'] / 2**20:.1f} MiB, {v['dom nodes']:.0f} DOM"
                f" nodes, renderer processes {v['renderer rss'] / 2**20:.0f} MiB resident"
            )
    for note in sorted(notes):
        print(f"  note: {note}")


def run_grid(config_path: Path, work: Path, runs: int) -> None:
    started = time.perf_counter()
    plan, build_times = build_gallery(config_path, work / "a")
    axes = [a.name for a in plan.config.axes]
    query = f"?view=grid&rows={axes[0]}&cols={axes[-1]}"
    with serve_static(work / "a" / "www") as base:
        url = f"{base}{BASEURL}/projects/{plan.config.page.slug}/{query}&sample=1"
        results, notes = asyncio.run(measure_grid(url, runs, everything=False))
    grid_report(f"(a) {config_path.name} as a grid, one sample per cell ({url.split('?')[1]})", results, notes)
    print(f"  (build: {build_times})")
    (work / "b").mkdir(exist_ok=True)
    big = big_config(work / "b", config_path)
    plan, build_times = build_gallery(big, work / "b")
    with serve_static(work / "b" / "www") as base:
        url = f"{base}{BASEURL}/projects/{plan.config.page.slug}/?view=grid&rows=subject&cols=style&sample=all"
        results, notes = asyncio.run(measure_grid(url, runs, everything=True))
    index = work / "b" / "www" / BASEURL.strip("/") / "assets/img/big-grid/manifest.json"
    grid_file = next(index.parent.glob("grid-*.json"))
    grid_report(f"(b) 25 x 25 x 16 = {len(plan.jobs):,} images as a grid, all samples", results, notes)
    print(
        f"  manifest index {kib(index.stat().st_size)}, grid file {kib(grid_file.stat().st_size)}"
        f" ({kib(len(gzip.compress(grid_file.read_bytes())))} gzipped)"
    )
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(f"  (build: {build_times}; total {time.perf_counter() - started:.0f}s; load average now {load})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "prompts.yaml", help="default: the repo's prompts.yaml")
    parser.add_argument("--runs", type=int, default=3, help="fresh visits per viewport (median is reported)")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="build in DIR (new or empty) and leave it there: cache, site source, built site",
    )
    parser.add_argument("--grid", action="store_true", help="measure the grid view instead (see above)")
    args = parser.parse_args(argv)
    job = run_grid if args.grid else run
    if not Path(CHROMIUM).exists() or not shutil.which("jekyll"):
        sys.exit(f"needs {CHROMIUM} and jekyll (apt-get install chromium jekyll)")
    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            sys.exit(f"--keep {args.keep}: not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        job(args.config, args.keep.resolve(), args.runs)
    else:
        with tempfile.TemporaryDirectory(prefix="page-weight-") as tmp:
            job(args.config, Path(tmp), args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
