"""The `gallery` command: plan, render, site, build (= render + upscale + site), serve, publish, verify, prune."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from gallery import __version__
from gallery.cache import Cache
from gallery.config import Config, Picture, load_config
from gallery.errors import ConfigError, GalleryError, SettingError
from gallery.families import Effect
from gallery.fingerprint import Memo
from gallery.plan import Plan
from gallery.project import open_project

P = ParamSpec("P")
R = TypeVar("R")

# What follows a render on many processes: one process fills any gap, upscales, writes the site.
NEXT_AFTER_MANY = (
    "`gallery build` once (one process): it renders what a failed process left, upscales, and writes the site"
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except GalleryError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: every finished image is in the cache; run the same command to go on", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gallery", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gallery {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, run, help_text: str, *, plans: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-c", "--config", default="prompts.yaml", help="the prompts file (default: prompts.yaml)")
        if plans:
            p.add_argument("-y", "--yes", action="store_true", help="go on with a matrix larger than limits.max_images")
        p.set_defaults(run=run)
        return p

    plan = command("plan", run_plan, "print the matrix: cells, images, how many are cached and to render")
    plan.add_argument(
        "--json",
        action="store_true",
        help="print the whole plan as JSON instead (axes, cells, each image's key, seed, recipe and whether "
        "it is cached, upscales): see 'The plan as JSON' in the README",
    )
    for name, run, text in (
        (
            "build",
            run_build,
            "render and upscale what is missing, then write the site (after "
            "rendering on many processes, the command to run next, once)",
        ),
        (
            "render",
            run_render,
            "render (then upscale) what is missing into the cache; one of "
            "many processes renders only its share and upscales nothing",
        ),
    ):
        command(name, run, text)
    site = command("site", run_site, "write the site from what is cached (renders and upscales nothing)")
    for p in (site, sub.choices["build"]):
        p.add_argument(
            "--into",
            metavar="PATH",
            type=Path,
            help="write only the gallery (page, includes, script, style, images) into an existing "
            "Jekyll/al-folio site at PATH, instead of the standalone site/",
        )
    command(
        "verify",
        run_verify,
        "check every cached image of the plan in full; set broken ones aside "
        "(in the cache's quarantine/) so the next build renders them again",
    )
    prune = command(
        "prune", run_prune, "remove cache entries that are no longer in the plan (a dry run unless --delete)"
    )
    prune.add_argument("--delete", action="store_true", help="really delete them")
    pub = command("publish", run_publish, "build site/ with Jekyll and push it to the gh-pages branch", plans=False)
    pub.add_argument("--remote", default="origin", help="git remote name or URL (default: origin)")
    pub.add_argument("--branch", default="gh-pages", help="branch to push (default: gh-pages)")
    pub.add_argument(
        "--baseurl",
        help="e.g. /repo for user.github.io/repo/ (default: site.baseurl, or guessed from a github.com remote)",
    )
    pub.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files on the branch that no earlier publish wrote (every other file on it stays)",
    )
    pub.add_argument(
        "--source-branch",
        action="store_true",
        help="publish even into a branch that holds your sources (the remote's default, or the one checked out)",
    )
    sheet = command(
        "sheet",
        run_sheet,
        "draw one labelled grid picture (rows x columns of two axes) from the cached renders, like "
        "AUTOMATIC1111's X/Y plot; see 'A grid picture to share' in the README",
    )
    sheet.add_argument("--rows", metavar="AXIS", help="the axis down the side (default: one row)")
    sheet.add_argument("--cols", metavar="AXIS", required=True, help="the axis across the top")
    which = sheet.add_mutually_exclusive_group()
    which.add_argument(
        "--sample", type=int, default=1, metavar="N", help="the sample each cell shows, from 1 (default 1)"
    )
    which.add_argument("--samples", choices=["all"], help="all: every sample of each cell, in a small block")
    sheet.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="AXIS=OPTION",
        help="the option another axis keeps (repeat for more; default: the page's default cell)",
    )
    sheet.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="FILE.png, .jpg or .webp")
    sheet.add_argument("--tile", type=int, metavar="PX", help="each picture's long side (default: the renders' own)")
    sheet.add_argument(
        "--fit",
        choices=["scale", "split"],
        default="scale",
        help="a sheet too large for the format: scale its tiles down (default; split below 64 px tiles) "
        "or split it into several files at full size",
    )
    sheet.add_argument("--font", type=Path, metavar="FILE", help="a TrueType/OpenType font for the labels")
    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of prompts.yaml, for editors",
        description="print the JSON Schema of prompts.yaml (editors validate and complete the "
        "file as it is typed; see the README)",
    )
    schema.add_argument("-o", "--output", type=Path, help="write it to this file instead")
    schema.set_defaults(run=run_schema)
    serve = command(
        "serve", run_serve, "preview the page from site/ on http://127.0.0.1:PORT (no Jekyll needed)", plans=False
    )
    serve.add_argument("--port", type=_port, default=8000, help="0 to 65535 (default 8000; 0: any free one)")
    serve.add_argument(
        "--watch",
        action="store_true",
        help="the editing loop: write the site, render what is missing in the background, and on each "
        "edit of prompts.yaml or a template plan again; the open page fills in as images land",
    )
    serve.add_argument(
        "-y", "--yes", action="store_true", help="with --watch: go on with a matrix larger than limits.max_images"
    )
    return parser


def _load(args) -> tuple[Config, Plan, Cache, Memo]:
    project = open_project(args.config, any_size=args.yes)
    return project.config, project.plan, project.cache, project.memo


def run_plan(args) -> int:
    config, plan, cache, memo = _load(args)
    memo.save()
    if args.json:
        from gallery.planjson import plan_json

        sys.stdout.write(plan_json(plan, cache))
        return 0
    jobs = plan.jobs
    cached = len(cache.whole_entries(j.key for j in jobs))
    axes = " x ".join(f"{len(a.options)} {a.label.lower()}" for a in config.axes)
    print(f"{config.source}: {axes} = {len(plan.cells)} cells x {config.runtime.samples} samples = {len(jobs)} images")
    pictures = {(c.picture, c.effect) for c in plan.cells}
    for p, effect in sorted(pictures, key=repr):
        print(
            f"  model {p.model_name}, {p.scheduler}, {p.steps} steps, {_guidance(p, effect)}, {p.width}x{p.height}"
            + (f", LoRAs {' + '.join(f'{lora.name} {lora.scale:g}' for lora in p.loras)}" if p.loras else "")
            + (f", call {', '.join(f'{name}={value!r}' for name, value in p.call)}" if p.call else "")
        )
    if any(not effect.known for _, effect in pictures):
        print(
            "  (a model's files could not be read here, so its recipes record every setting, "
            "whether or not the model uses it)"
        )
    print(f"  cached: {cached}   to render: {len(jobs) - cached}")
    if plan.upscales:
        upscaled = len(cache.whole_entries(u.key for u in plan.upscales.values()))
        print(f"  upscale: {_upscaler(config)}; cached: {upscaled}   to upscale: {len(plan.upscales) - upscaled}")
    print(f"  cache: {config.cache_dir}   site: {config.site_dir}")
    return 0


def run_sheet(args) -> int:
    from gallery.sheet import Request, make_sheet, output_format

    output_format(args.output)  # before planning: a wrong name is the first thing said
    _, plan, cache, memo = _load(args)
    memo.save()
    request = Request(
        rows=args.rows,
        cols=args.cols,
        sample=None if args.samples else args.sample,
        where=tuple(args.where),
        tile=args.tile,
        fit=args.fit,
        font=args.font,
    )
    report = make_sheet(plan, cache, request, args.output)
    limits = "WebP's 16,383 px side, JPEG's 65,535 px side, Pillow's 89,478,485 px"
    for path, page in report.files:
        rows, cols = len(page.rows), len(page.cols)
        print(
            f"sheet: wrote {path}: {page.size[0]:,} x {page.size[1]:,} px, {rows} row{'s' * (rows != 1)} x "
            f"{cols} column{'s' * (cols != 1)}"
        )
    shown = f"{report.images} images"
    if report.missing:
        shown += f", {report.missing} not rendered yet (grey placeholders; `gallery build` renders them)"
    print(f"sheet: {shown}; labels in {report.font}")
    if report.how == "whole":
        print(f"sheet: one file, tiles at {report.tile} px: within the limits ({limits}), nothing scaled or split")
    elif report.how == "scaled":
        print(f"sheet: tiles scaled from {report.asked_tile} to {report.tile} px to stay within {report.limit}")
    else:
        print(
            f"sheet: split into {len(report.files)} files, tiles at {report.tile} px, as one file would pass "
            f"{report.limit}" + (" even at the smallest tiles" if args.fit == "scale" else "")
        )
    if report.unshown:
        print(
            f"sheet: the font has no glyph for {report.unshown!r} (drawn as boxes); pass --font with a font that "
            "has them" + ("" if "DejaVu" in report.font else ", or install matplotlib for DejaVu Sans"),
            file=sys.stderr,
        )
    return 0


def _guidance(p: Picture, effect: Effect) -> str:
    """What guidance and the negative prompt do for these pictures, as `gallery plan` says it."""
    said = []
    if effect.cfg is not None:
        said.append(f"CFG scale {effect.cfg:g}")
    if effect.distilled is not None:
        said.append(f"distilled guidance {effect.distilled:g}")
    if not said:
        said.append(f"guidance {p.guidance:g} unused" if effect.known else f"guidance {p.guidance:g}")
    if p.negative_prompt:
        said.append(f"negative prompt: {p.negative_prompt!r}" + ("" if effect.negative else " (no effect)"))
    return ", ".join(said)


def run_render(args) -> int:
    config, plan, cache, memo = _load(args)
    entries = cache.whole_entries(plan.keys)
    from gallery.workers import this_process

    share = this_process()
    if share.alone:
        _check_upscaler(plan, entries)
    rejected = _render(config, plan, cache, entries)
    memo.save()
    if share.alone:
        rejected += _upscale(plan, cache, entries)
    elif share.rank == 0:  # the upscale stage and the site run once, after every process is done
        print(f"render: when all {share.world} processes have finished, run {NEXT_AFTER_MANY}", file=sys.stderr)
    return 1 if rejected else 0


def run_site(args) -> int:
    _check_into(args.into)
    config, plan, cache, memo = _load(args)
    _site(config, plan, cache, args.into)
    memo.save()
    return 0


def run_build(args) -> int:
    from gallery.workers import this_process

    if not this_process().alone:
        raise GalleryError(
            "`gallery build` runs as one process; render on many with "
            f"`accelerate launch ... -m gallery render`, then run {NEXT_AFTER_MANY}"
        )
    _check_into(args.into)  # before rendering, not after it
    config, plan, cache, memo = _load(args)
    entries = cache.whole_entries(plan.keys)
    _check_upscaler(plan, entries)
    rejected = _render(config, plan, cache, entries)
    memo.save()  # after rendering, so a model that fails to load leaves nothing behind
    rejected += _upscale(plan, cache, entries)
    _site(config, plan, cache, args.into, entries)
    return 1 if rejected else 0


def run_verify(args) -> int:
    from gallery.plan import recipe_key
    from gallery.upscale import stage

    _, plan, cache, _ = _load(args)
    entries = [(job, job.key, "") for job in plan.jobs]
    entries += [(u.source, u.key, " (upscaled)") for u in plan.upscales.values()]
    with cache.locked(on_wait=_say_waiting):
        problems = [(job, key, what, cache.check(key, recipe_key)) for job, key, what in entries]
        broken = [p for p in problems if p[3] not in (None, "missing")]
        missing = sum(p[3] == "missing" for p in problems)
        whole = cache.whole_entries(key for _, key, _, fault in problems if fault is None)
        broken += [
            (u.source, u.key, " (upscaled)", "made from other pixels than its source holds now")
            for u in plan.upscales.values()
            if stage.stale(u, whole)
        ]
        for job, key, what, fault in broken:
            print(f"verify: {'/'.join(job.cell)} sample {job.sample}{what}: {fault} ({key[:12]})")
            cache.set_aside(key)
    good = len(entries) - len(broken) - missing
    print(f"verify: {good} good, {len(broken)} broken, {missing} not rendered yet")
    if broken:
        print(f"verify: broken entries moved to {cache.quarantine}; `gallery build` renders them again")
        return 1
    return 0


def run_prune(args) -> int:
    _, plan, cache, _ = _load(args)
    with cache.locked(on_wait=_say_waiting):
        stale, freed = cache.prune(set(plan.keys), delete=args.delete)
    verb = "removed" if args.delete else "would remove"
    print(
        f"prune: {verb} {stale} entries no longer in the plan ({freed / 1e6:.1f} MB)"
        + ("" if args.delete or not stale else "; run `gallery prune --delete` to do it")
    )
    return 0


def _say_waiting() -> None:
    print("another build holds the cache lock; waiting for it to finish...", file=sys.stderr)


def run_publish(args) -> int:
    from gallery.publish import publish

    config = load_config(args.config)
    if not (config.site_dir / "_config.yml").is_file():
        raise GalleryError(f"{config.site_dir} has no site yet; run `gallery build` first")
    baseurl = args.baseurl if args.baseurl is not None else (config.site.baseurl or None)
    publish(
        config.site_dir,
        remote=args.remote,
        branch=args.branch,
        repo_dir=config.source.resolve().parent,
        baseurl=baseurl,
        overwrite=args.overwrite,
        source_branch=args.source_branch,
    )
    return 0


def run_schema(args) -> int:
    from gallery.schema import json_text

    if args.output is None:
        sys.stdout.write(json_text())
    else:
        args.output.write_text(json_text(), encoding="utf-8")
        print(f"schema: wrote {args.output}; point your editor at it (see the README)")
    return 0


def run_serve(args) -> int:
    from gallery.preview import serve

    watch = None
    if args.watch:  # the editing loop: gallery.watch; a mistake in prompts.yaml now stops it (exit 2)
        from gallery.watch import Stages, Watch

        stages = Stages(upscale=_upscale_all, at_its_line=_at_its_line, unusable=_report_unusable, on_wait=_say_waiting)
        watch = Watch(args.config, stages, any_size=args.yes)
        watch.write_site()  # of what is cached, for the preview to serve
        config = watch.project.config
    else:
        config = load_config(args.config)
        page = config.site_dir / "_projects" / f"{config.page.slug}.md"
        if not page.is_file():
            raise GalleryError(f"{page} does not exist yet; run `gallery build` (or `gallery site`) first")
    try:
        if watch is None:
            server = serve(config.site_dir, config.page.slug, port=args.port)
        else:
            server = serve(config.site_dir, lambda: watch.slug, port=args.port, live=watch.live)
    except OSError as err:  # the port is taken, or not ours to open
        raise GalleryError(
            f"cannot serve on 127.0.0.1:{args.port}: {err.strerror or err}; pass another --port, "
            "e.g. --port 8001 (0 picks a free one)"
        ) from None
    host, port = server.socket.getsockname()[:2]
    what = "live: it fills in as images land" if watch else "preview without Jekyll"
    print(f"serve: http://{host}:{port}/projects/{config.page.slug}/  ({what}; Ctrl-C stops)", flush=True)
    try:
        if watch is None:
            server.serve_forever()
        else:
            threading.Thread(target=server.serve_forever, name="gallery-serve", daemon=True).start()
            watch.start()
            watch.run()
    except KeyboardInterrupt:
        pass
    finally:
        if watch is not None:
            server.shutdown()
            print("serve: stopped; every finished image is in the cache", file=sys.stderr)
        server.server_close()
    return 0


def _at_its_line(stage: Callable[Concatenate[Config, P], R]) -> Callable[Concatenate[Config, P], R]:
    """A setting only the model could judge (gallery.errors.SettingError) is a prompts.yaml mistake:
    said at the line that sets it, exit 2."""

    def run(config: Config, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return stage(config, *args, **kwargs)
        except SettingError as err:
            key = config.setting_key(err.picture, err.setting)
            raise ConfigError(
                err.message, file=str(config.source), line=config.line(key), key=key, hint=err.hint
            ) from None

    return run


@_at_its_line
def _render(config: Config, plan: Plan, cache: Cache, entries: dict) -> int:
    """Render what is missing; return how many images came out unusable (not cached).
    `entries` (the whole entries found before) is brought up to date with what was rendered."""
    missing = [job for job in plan.jobs if job.key not in entries]
    if not missing:
        print(f"render: all {len(plan.jobs)} images are cached")
        return 0
    # Imported only now: a fully cached build never loads torch or diffusers.
    from tqdm import tqdm

    from gallery.render import Renderer
    from gallery.workers import this_process

    share = this_process()
    renderer = Renderer(config.runtime, share)
    renderer.check(missing)  # a model that cannot load, or a setting it refuses, fails before any write
    # One of many processes: no build lock (they would take turns); atomic writes keep them apart.
    with cache.locked(on_wait=_say_waiting) if share.alone else contextlib.nullcontext():
        if share.alone:
            cache.clean_temp_files()  # left by a build that was killed mid-write
        missing = share.take(cache.missing(plan.jobs))  # another build may have rendered some
        who = "" if share.alone else f" (process {share.rank} of {share.world})"
        print(
            f"render{who}: {len(missing)} of {len(plan.jobs)} images on {renderer.target.device} "
            f"({renderer.target.dtype})",
            file=sys.stderr,
        )
        with tqdm(
            total=len(missing),
            unit="img",
            desc="render",
            dynamic_ncols=True,
            file=sys.stderr,
            disable=share.local_rank != 0,
        ) as bar:
            report = renderer.render(missing, cache, progress=bar)
    rate = report.rendered / report.seconds if report.seconds else 0.0
    print(
        f"render: {report.rendered} images in {_duration(report.seconds)} ({rate:.2f} img/s, "
        f"batch up to {report.batch_size}, {report.device}, {report.dtype}); "
        f"{len(plan.jobs) - report.rendered} were cached"
        + (
            f"; of that, about {_duration(report.compile_seconds)} compiling (render.compile)"
            if report.compile_seconds
            else ""
        )
    )
    entries.update(cache.whole_entries(job.key for job in missing))
    return _report_unusable("render", report.rejected)


def _check_upscaler(plan: Plan, entries: dict) -> None:
    """A model upscaler that cannot load stops the build before anything is rendered (as a render
    model does); checked only when something is left to upscale, so a cached build imports no torch."""
    upscale = plan.config.upscale
    if upscale and upscale.model and any(u.key not in entries for u in plan.upscales.values()):
        from gallery.loading import check_upscaler

        check_upscaler(upscale)


def _upscale(plan: Plan, cache: Cache, entries: dict, landed: Callable[[], None] | None = None) -> int:
    """The optional stage after rendering; like rendering, only what is missing.
    Returns how many images came out unusable (not cached). `landed` is told after each image
    (gallery serve --watch writes the site then)."""
    if not plan.upscales:
        return 0
    from tqdm import tqdm

    from gallery.upscale import stage

    if not stage.missing(plan, entries):
        return 0
    started = time.perf_counter()
    with cache.locked(on_wait=_say_waiting):
        # what another build upscaled while this one waited for the lock is done
        entries.update(cache.whole_entries(u.key for u in plan.upscales.values()))
        todo = stage.missing(plan, entries)
        if not todo:
            return 0
        with tqdm(total=len(todo), unit="img", desc="upscale", dynamic_ncols=True, file=sys.stderr) as bar:
            rejected = stage.run(plan, cache, todo, entries, _Telling(bar, landed) if landed else bar)
    entries.update(cache.whole_entries(u.key for u in todo))
    print(f"upscale: {len(todo)} images ({_upscaler(plan.config)}) in {_duration(time.perf_counter() - started)}")
    return _report_unusable("upscale", [(u.source, fault) for u, fault in rejected])


def _upscale_all(plan: Plan, cache: Cache, entries: dict, landed: Callable[[], None]) -> int:
    """The upscale stage after a render of `gallery serve --watch`: the upscaler checked, then run."""
    _check_upscaler(plan, entries)
    return _upscale(plan, cache, entries, landed)


class _Telling:
    """A progress bar that also tells `landed` after each step."""

    def __init__(self, bar, landed: Callable[[], None]):
        self.bar, self.landed = bar, landed

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        self.landed()


def _report_unusable(stage: str, rejected: list) -> int:
    """Name each image a stage refused to cache (NaN, black), by its source job; return how many."""
    for job, fault in rejected:
        print(
            f"{stage}: NOT cached: {'/'.join(job.cell)} sample {job.sample} (seed {job.seed}): {fault}", file=sys.stderr
        )
    if rejected:
        print(
            f"{stage}: {len(rejected)} images came out unusable and were not cached; the page leaves them out, "
            "and the next build tries them again",
            file=sys.stderr,
        )
    return len(rejected)


def _check_into(into: Path | None) -> None:
    if into is not None and not (into / "_config.yml").is_file():
        raise GalleryError(f"--into {into}: no _config.yml there; point it at the root of a Jekyll site")


def _site(config: Config, plan: Plan, cache: Cache, into: Path | None = None, entries: dict | None = None) -> None:
    from gallery.site import build_site

    started = time.perf_counter()
    report = build_site(
        plan,
        cache,
        into,
        standalone=into is None,
        entries=entries,
        on_wait=lambda: print("another site stage is writing this site; waiting for it to finish...", file=sys.stderr),
    )
    print(
        f"site: {report.images} images on the page ({report.converted} converted), {report.files_written} "
        f"files written, {report.files_removed} removed, in {_duration(time.perf_counter() - started)} "
        f"-> {into or config.site_dir}"
    )
    if report.missing:
        print(f"site: {report.missing} planned images are not rendered yet; `gallery build` renders them")
    if report.not_upscaled:
        print(
            f"site: {report.not_upscaled} rendered images are not upscaled yet ({_upscaler(config)}), so the page "
            "leaves them out; `gallery build` upscales them"
        )
    if report.completed_interrupted:
        print("site: the last site stage was stopped midway; this one completed the site")
    if report.refused:
        print(
            f"site: {report.refused} cached images do not match their sidecar and were left out; "
            "run `gallery verify`, then `gallery build`",
            file=sys.stderr,
        )


def _upscaler(config: Config) -> str:
    return config.upscale.label if config.upscale else "none"


def _port(text: str) -> int:
    """A TCP port for --port: 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give 0 to 65535 (0 picks a free one)")
    return port


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def console_script() -> None:
    sys.exit(main())
