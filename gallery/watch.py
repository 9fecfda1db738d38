"""`gallery serve --watch`: the editing loop. Edit prompts.yaml (or a template) and the open preview
fills in as images land.

Three threads beside the preview server's:
- the watcher (the caller's thread): `watchfiles` reports a change to prompts.yaml or a template;
  prompts.yaml is loaded and planned again. A mistake is printed (file, line) and shown on the
  page as a banner; the last good plan stays, and so does its page.
- the renderer: renders what the current plan misses, batch by batch. A new plan stops it after
  the batch under way (every finished image is in the cache: a cancel between batches loses
  nothing), and it starts again on what the new plan misses: what no longer applies is dropped.
- the site writer: rewrites the site (gallery.site.build_site) when an image lands or the plan
  changes, at most one write at a time, however many images land meanwhile.

Each site write moves `Live.site` on; the preview tells open pages through Server-Sent Events
(gallery.preview), and their script fetches the manifest again (templates/preview/live.js).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from gallery.cache import Cache
from gallery.errors import GalleryError
from gallery.plan import Plan
from gallery.preview import Live
from gallery.project import Project, open_project

# The least time between two site writes: images landing faster are shown together.
SITE_INTERVAL = 0.25


class Superseded(Exception):
    """The plan a render was for, or its order, is no longer the current one (raised between batches)."""


@dataclasses.dataclass(frozen=True)
class Stages:
    """What the watch does as `gallery build` does it (the CLI's own, passed in: gallery.cli)."""

    # the upscale stage on what is missing, telling the last argument of each image; how many it refused
    upscale: Callable[[Plan, Cache, dict, Callable[[], None]], int]
    at_its_line: Callable  # a decorator: a setting only the model judges -> a ConfigError at its line
    unusable: Callable[[str, list], int]  # say the images a stage refused to cache
    on_wait: Callable[[], None]  # another build holds the cache lock


class _Landing(Cache):
    """The cache, telling `landed` of each image as it is stored (from the renderer's writer thread)."""

    def __init__(self, root: Path, landed: Callable[[], None]):
        super().__init__(root)
        self._landed = landed

    def put(self, key: str, png: bytes, sidecar: dict) -> None:
        super().put(key, png, sidecar)
        self._landed()


class Watch:
    def __init__(
        self,
        config_path: str | Path,
        stages: Stages,
        *,
        any_size: bool = False,
        say: Callable[[str], None] | None = None,
    ):
        self.config_path = Path(config_path)
        self.stages = stages
        self.any_size = any_size
        self.say = say or (lambda text: print(text, flush=True))
        self.live = Live()
        self.stop = threading.Event()
        self._site_due = threading.Event()
        self._render_due = threading.Event()
        # the plan now, and its generation (which moves on with each new plan: a render of an
        # older one stops), in one tuple: the renderer reads both at once
        self.current: tuple[Project, int] = (open_project(self.config_path, any_size=any_size), 0)
        self._moving = threading.Lock()  # held to change `current` (the watcher and the server's threads)
        self._why = ""  # why the generation last moved on, for the terminal
        self._errors: dict[str, str | None] = {"config": None, "site": None, "render": None}
        self._view = ""  # the query of the page the reader has open (its view): those cells render first
        self._running: tuple[list[str], list[int]] | None = None  # the render's order (cell paths), how many done
        self.live.on_view = self.look

    # -- what the threads share -------------------------------------------------------------------

    @property
    def project(self) -> Project:
        return self.current[0]

    @property
    def generation(self) -> int:
        return self.current[1]

    @property
    def slug(self) -> str:
        return self.project.config.page.slug

    @property
    def site_dir(self) -> Path:
        return self.project.config.site_dir

    def _error(self, where: str, message: str | None) -> None:
        """Set or clear the mistake of one part (config, site, render); the page shows the first."""
        self._errors[where] = message
        self.live.update(error=next((m for m in self._errors.values() if m), None))

    def _shape(self, project: Project) -> str:
        """A hash of what the page's HTML holds beyond the manifest's data (axes and their labels,
        the page's settings, the samples, the templates): the open page reloads when it changes.
        New options of an axis are not in it: the page's script adds them to its dropdown."""
        config = project.config
        parts = [repr(config.page), repr(config.site), str(config.runtime.samples)]
        parts += [f"{axis.name}={axis.label}" for axis in config.axes]
        for folder in self.template_dirs():
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    stat = path.stat()
                    parts.append(f"{path}:{stat.st_mtime_ns}:{stat.st_size}")
        return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]

    def template_dirs(self) -> list[Path]:
        from gallery.site import BUILTIN_TEMPLATES

        folders = [self.project.config.templates_dir, BUILTIN_TEMPLATES]
        return [
            f for i, f in enumerate(folders) if f.is_dir() and f.resolve() not in {g.resolve() for g in folders[:i]}
        ]

    # -- the watcher ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the site writer and the renderer (write_site first: the preview serves its site)."""
        for target, name in ((self._site_loop, "gallery-site"), (self._render_loop, "gallery-render")):
            threading.Thread(target=target, name=name, daemon=True).start()
        self._render_due.set()

    def run(self) -> None:
        """Watch until Ctrl-C (KeyboardInterrupt) or `stop`."""
        try:
            self._watch()
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        self._site_due.set()
        self._render_due.set()
        self.live.close()

    def _watch(self) -> None:
        import watchfiles

        source = self.config_path.resolve()
        # folders, not files: an editor that saves by renaming a new file into place would end a
        # file's watch; each folder alone (not recursive): the project's folder holds site/ and the cache
        folders = {source.parent}
        for root in self.template_dirs():
            folders |= {root.resolve(), *(p.resolve() for p in root.rglob("*") if p.is_dir())}
        template_dirs = [d.resolve() for d in self.template_dirs()]

        def relevant(_change, path: str) -> bool:
            p = Path(path)
            return p == source or (any(p.is_relative_to(d) for d in template_dirs) and not p.name.startswith("."))

        self.say(f"watch: {self.config_path} and the templates: an edit plans again, renders what is missing")
        for changes in watchfiles.watch(
            *sorted(folders),
            watch_filter=relevant,
            recursive=False,
            debounce=400,
            step=50,
            stop_event=self.stop,
            rust_timeout=500,
            yield_on_timeout=False,
        ):
            paths = {Path(path) for _, path in changes}
            if source in paths:
                self.reload()
            if paths - {source}:
                self.say("watch: a template changed: writing the site again")
                self._site_due.set()

    def reload(self) -> bool:
        """Load and plan prompts.yaml again; on a mistake, say it and keep the last good plan."""
        try:
            project = open_project(self.config_path, any_size=self.any_size)
        except GalleryError as err:
            self.say(f"watch: {err}\nwatch: the page keeps the last good version; fix the file and save it again")
            self._error("config", str(err))
            return False
        self._error("config", None)
        if project.config.site_dir != self.site_dir:
            self._error("config", f"site.dir changed to {project.config.site_dir}: restart gallery serve to serve it")
            return False
        same = project.plan.keys == self.project.plan.keys
        # the same images (an edit of the page's text, a render setting): the render goes on
        with self._moving:
            self.current = (project, self.generation + (not same))
            self._why = "the plan changed"
        self.say("watch: prompts.yaml changed" + ("" if same else ": planning again"))
        self._site_due.set()
        if not same or self._errors["render"]:  # (a render that failed is tried again)
            self._render_due.set()
        return True

    # -- the reader's view --------------------------------------------------------------------------

    def look(self, query: str) -> None:
        """The open page shows the view of `query` (its URL's: cell, grid axes): its cells render
        first. A render under way that would do them later stops after its batch and starts again."""
        self._view = query
        running = self._running
        if running is None:
            return
        order, done = running
        wanted = in_view(self.project, query)
        later = order[done[0] :]
        first_other = next((i for i, path in enumerate(later) if path not in wanted), len(later))
        if any(path in wanted for path in later[first_other:]):
            with self._moving:
                project, generation = self.current
                self.current = (project, generation + 1)
                self._why = "the page shows other cells: they render first"
            self._render_due.set()

    # -- the site writer --------------------------------------------------------------------------

    def _site_loop(self) -> None:
        while True:
            self._site_due.wait()
            if self.stop.is_set():
                return
            self._site_due.clear()
            self.write_site()
            time.sleep(SITE_INTERVAL)

    def write_site(self) -> None:
        from jinja2 import TemplateError

        from gallery.site import build_site

        project = self.project
        # the shape of what this write reads, taken before it reads the templates: a template saved
        # during the write moves the shape on at the next write, which then reloads the page (taken
        # after, it would be reported with this write, whose page may hold the old template)
        shape = self._shape(project)
        try:
            build_site(project.plan, project.cache)
        except (GalleryError, TemplateError) as err:
            where, line = getattr(err, "filename", None), getattr(err, "lineno", None)
            message = f"{where}:{line}: {err}" if where and line else str(err)
            self.say(f"watch: the site cannot be written: {message}")
            self._error("site", message)
        except Exception:  # a fault of ours: said, and the loop goes on
            self.say(f"watch: the site stage failed:\n{traceback.format_exc()}")
            self._error("site", "the site stage failed; see the terminal")
        else:
            self._error("site", None)
            # told only now: a page reloaded before the site is written would show the old one
            self.live.update(site=True, shape=shape)

    def _landed(self) -> None:
        self._site_due.set()

    # -- the renderer -----------------------------------------------------------------------------

    def _render_loop(self) -> None:
        renderer = None
        while True:
            self._render_due.wait()
            if self.stop.is_set():
                return
            self._render_due.clear()
            try:
                renderer = self._render(renderer)
                self._error("render", None)
            except Superseded:
                self.say(f"watch: {self._why}: the render goes on in the new order (finished images are kept)")
            except GalleryError as err:
                self.say(f"watch: {err}")
                self._error("render", str(err))
            except Exception:
                self.say(f"watch: the render failed:\n{traceback.format_exc()}")
                self._error("render", "the render failed; see the terminal")
            finally:
                self.live.update(status="")
                self._site_due.set()

    def _render(self, renderer):
        """Render (then upscale) what the current plan misses; returns the renderer, kept for the
        next plan while the settings that make it (device, dtype, batch size ...) stay the same."""
        project, generation = self.current
        config, plan = project.config, project.plan
        cache = _Landing(config.cache_dir, self._landed)
        entries = cache.whole_entries(plan.keys)
        missing = [job for job in plan.jobs if job.key not in entries]
        wanted = in_view(project, self._view)
        missing.sort(key=lambda job: "/".join(job.cell) not in wanted)  # the reader's cells first
        if missing:
            from gallery.render import Renderer

            if renderer is None or _making(renderer.runtime) != _making(config.runtime):
                renderer = Renderer(config.runtime)
            self._render_jobs(renderer, project, cache, missing, generation)
            entries.update(cache.whole_entries(job.key for job in missing))
        if generation != self.generation:
            raise Superseded
        self.stages.upscale(plan, cache, entries, self._landed)
        project.memo.save()
        return renderer

    def _render_jobs(self, renderer, project: Project, cache: Cache, missing: list, generation: int) -> None:
        watch = self

        class Progress:
            """The renderer's progress object: told after each batch; a new plan stops the render there."""

            def __init__(self, cells: list[str]) -> None:
                self.done = [0]  # shared with look(), which reads how far the render is
                self.total = len(cells)
                watch._running = (cells, self.done)

            def update(self, n: int) -> None:
                self.done[0] += n
                watch.live.update(status=f"Rendering: {self.done[0]} of {self.total} images done")
                if generation != watch.generation or watch.stop.is_set():
                    raise Superseded

        @self.stages.at_its_line
        def render(config, jobs: list) -> None:
            renderer.check(jobs)  # a model that cannot load, or a setting it refuses, is said before anything else
            with cache.locked(on_wait=self.stages.on_wait):
                cache.clean_temp_files()
                jobs = cache.missing(jobs)  # another build may have rendered some meanwhile
                self.say(f"watch: rendering {len(jobs)} images on {renderer.target.device}")
                self.live.update(status=f"Rendering {len(jobs)} images")
                try:
                    progress = Progress(["/".join(job.cell) for job in jobs])
                    report = renderer.render(jobs, cache, progress=progress)
                finally:
                    self._running = None
            self.say(f"watch: rendered {report.rendered} images in {report.seconds:.1f}s")
            self.stages.unusable("render", report.rejected)

        render(project.config, missing)


def _making(runtime) -> object:
    """What of the render settings the Renderer holds (not the samples or the seed: they are the plan's)."""
    return dataclasses.replace(runtime, samples=0, seed=0)


def in_view(project: Project, query: str) -> set[str]:
    """The paths of the cells a page of this query shows, read as the page's script reads its URL
    (prompt-gallery.js readState): the cell its axes name (else the default), or in the grid view
    every cell of its rows and columns."""
    config = project.config
    params = {name: values[0] for name, values in urllib.parse.parse_qs(query.lstrip("?")).items()}
    cell = [
        params[axis.name] if any(o.key == params.get(axis.name) for o in axis.options) else default
        for axis, default in zip(config.axes, config.page.default, strict=True)
    ]
    view = config.page.view
    if params.get("view", view.mode) != "grid" or len(project.plan.cells) < 2:
        return {"/".join(cell)}
    spans = {params.get("rows", view.rows), params.get("cols", view.columns)}
    free = [i for i, axis in enumerate(config.axes) if axis.name in spans]
    cells = set()
    for options in itertools.product(*(config.axes[i].options for i in free)):
        for i, option in zip(free, options, strict=True):
            cell[i] = option.key
        cells.add("/".join(cell))
    return cells
