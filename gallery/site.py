"""Plan + cache -> site/: web images, the manifest, and the page through Jinja templates.

Templates use [[ ]] and [% %] so that Jekyll's own {{ }} and {% %} pass through them as text.
Every value a template prints is HTML-escaped and has its braces turned into entities, so
prompt text can never become markup or Liquid; trusted Markdown (the page's intro and body,
written by the page's author) is passed in already marked safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from gallery import manifest as manifest_mod
from gallery.cache import Cache
from gallery.errors import GalleryError
from gallery.fsutil import TEMP_PREFIX, write_if_changed
from gallery.ownership import SiteRecords
from gallery.plan import Plan
from gallery.upscale import stage as upscale_stage
from gallery.webimages import WebImage, derive

# Inside an installed wheel the templates ship in the package; in a checkout they stand at the top.
_HERE = Path(__file__).resolve().parent
BUILTIN_TEMPLATES = next(
    (p for p in (_HERE / "templates", _HERE.parent / "templates") if p.is_dir()), _HERE.parent / "templates"
)
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")
STANDALONE_FILES = ("_config.yml", "_layouts/default.html", "_layouts/page.html", "index.html", "assets/css/site.css")


@dataclass
class SiteReport:
    images: int = 0  # images on the page
    converted: int = 0  # web copies made this run
    files_written: int = 0
    files_removed: int = 0
    missing: int = 0  # planned images not rendered yet
    not_upscaled: int = 0  # rendered, but the upscale stage has not run on them yet
    refused: int = 0  # cached PNGs that do not match their sidecar: left off the page
    completed_interrupted: bool = False  # the last site stage of this gallery was stopped midway


def liquid_safe(value) -> Markup:
    """HTML-escape, and hide braces from Liquid: '{{' in a prompt must stay text."""
    if isinstance(value, Markup):
        return value
    text = str(escape(value))
    return Markup(text.replace("{", "&#123;").replace("}", "&#125;"))


def url_path(value: str) -> Markup:
    """A site-relative path for a Liquid string literal; only ever built from validated keys."""
    if not _SAFE_PATH.match(value) or ".." in value:
        raise ValueError(f"unsafe path in template: {value!r}")
    return Markup(value)


def yaml_string(value) -> Markup:
    """Any text as a YAML double-quoted scalar that Jekyll's parser reads back as the same text:
    emoji, right-to-left text, quotes, newlines (JSON's surrogate-pair escapes are not YAML)."""
    return Markup(yaml.safe_dump(str(value), allow_unicode=True, default_style='"', width=float("inf")).strip())


def environment(templates_dir: Path) -> Environment:
    loaders = [FileSystemLoader(str(templates_dir))] if templates_dir.is_dir() else []
    if BUILTIN_TEMPLATES.is_dir() and templates_dir != BUILTIN_TEMPLATES:
        loaders.append(FileSystemLoader(str(BUILTIN_TEMPLATES)))  # a user's folder may override a few
    env = Environment(
        loader=ChoiceLoader(loaders),
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        autoescape=True,
        finalize=liquid_safe,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["url_path"] = url_path
    env.filters["yaml_string"] = yaml_string
    return env


def build_site(
    plan: Plan,
    cache: Cache,
    site_dir: Path | None = None,
    *,
    standalone: bool = True,
    entries: dict[str, dict] | None = None,
    on_wait=lambda: None,
) -> SiteReport:
    """Write the gallery into `site_dir` (default: config's site/). `standalone` adds the Jekyll
    site around it (whose own files come from the prompts.yaml beside the site, where that one has
    a gallery in it: SiteRecords.writes_site_files); without it (`--into` an existing site) only
    the gallery's own files are written, and a file of the same name that this tool did not write
    stops the build.
    `entries` (the cache's whole entries, if the caller has them) saves reading the sidecars again.

    Safe to stop at any moment: every file is written whole (temp file + rename), images before
    the files that show them, old files removed last; the files the stage may write are recorded
    (gallery.ownership) before the first is written, so the next run completes what was left."""
    out = site_dir or plan.config.site_dir
    try:
        with SiteRecords.locked(out, on_wait) as records:
            return _build(plan, cache, out, records, standalone, entries)
    except OSError as err:  # a full disk, a read-only folder: the previous site is still whole
        where = f" ({err.filename})" if err.filename else ""
        raise GalleryError(
            f"cannot write the site: {err.strerror or err}{where}; fix that and run again: every "
            "file already written is whole, and the next run completes the site"
        ) from None


def _build(
    plan: Plan, cache: Cache, out: Path, records: SiteRecords, standalone: bool, entries: dict[str, dict] | None
) -> SiteReport:
    config = plan.config
    slug, source = config.page.slug, config.source.resolve()
    report = SiteReport()
    if entries is None:
        entries = cache.whole_entries(plan.keys)
    shown = {job.key: plan.published_key(job) for job in plan.jobs}  # the render, or its upscale
    available = {
        key
        for key, published in shown.items()
        if published in entries and not (plan.upscales and upscale_stage.stale(plan.upscales[key], entries))
    }
    report.not_upscaled = sum(job.key not in available and job.key in entries for job in plan.jobs)
    report.missing = len(plan.jobs) - len(available) - report.not_upscaled
    image_dir = manifest_mod.image_dir(plan)
    site_files = standalone and records.writes_site_files(source)  # _config.yml etc.: one gallery's say
    page_templates = _page_templates(plan, site_files)
    records.claim(slug, source, list(page_templates), image_dir, standalone=standalone)
    report.completed_interrupted = slug in records.records and not records.records[slug].finished
    _remove_temp_files(out, list(page_templates), image_dir)  # left by a stage that was killed mid-write

    webs: dict[str, tuple[str, ...]] = {}  # published key -> (thumbnail, full size[, grid]), paths in the site
    grid = manifest_mod.has_grid(plan)
    for cell in plan.cells:
        for job in cell.jobs:
            if job.key in available:
                thumb, full = manifest_mod.web_paths(plan, cell, job)
                webs[shown[job.key]] = (thumb, full, manifest_mod.grid_path(thumb)) if grid else (thumb, full)
    data_paths = [manifest_mod.manifest_path(plan), manifest_mod.cover_path(plan)]
    records.begin(slug, source, [*page_templates, *data_paths, *(rel for pair in webs.values() for rel in pair)])

    recorded = records.records[slug].files
    root = str(out)  # plain strings: thousands of paths, where pathlib's overhead would dominate
    todo = [
        WebImage(
            key,
            cache.png_path(key),
            entries[key]["png"]["sha256"],
            out / paths[0],
            out / paths[1],
            out / paths[2] if len(paths) > 2 else None,
        )
        for key, paths in webs.items()
        if not all(_whole(root, rel, recorded) for rel in paths)
    ]
    report.converted, refused = derive(todo)
    report.refused = len(refused)
    available = {key for key in available if shown[key] not in refused}
    webs = {key: pair for key, pair in webs.items() if key not in refused}
    report.images = len(webs)

    cells = {cell.path: manifest_mod.build_cell(plan, cell, available, entries) for cell in plan.cells}
    cell_data = {path: _json(cell) for path, cell in cells.items()}
    cell_files = {cell.path: manifest_mod.cell_path(plan, cell, cell_data[cell.path]) for cell in plan.cells}
    grid_data = _json(manifest_mod.build_grid(plan, cells, available)) if grid else None
    grid_file = manifest_mod.grid_file_path(plan, grid_data) if grid_data else None
    blocks = {
        manifest_mod.block_path(plan, data): data for data in map(_json, manifest_mod.cell_blocks(plan, cell_files))
    }
    index = manifest_mod.build_index(plan, list(blocks), grid_file, sum(cell["missing"] for cell in cells.values()))
    cover_images = cells["/".join(config.page.cover)]["images"]
    cover = manifest_mod.cover_path(plan) if cover_images else None
    records.begin(slug, source, [*cell_files.values(), *blocks, *([grid_file] if grid_file else [])])  # known only now
    # In this order, so that a reader at any moment finds every file that another one names: the
    # cells (new names beside the old: see cell_path), the blocks that name them (the same), the
    # cover, the manifest (replaced whole, it moves the page's data from the old blocks and cells to
    # the new), the page.
    files = {cell_files[path]: data for path, data in cell_data.items()}
    files.update(blocks)
    if grid_file and grid_data:
        files[grid_file] = grid_data
    if cover:
        files[cover] = (out / cover_images[0]["thumb"]).read_bytes()
    files[manifest_mod.manifest_path(plan)] = _json(index)
    files.update(_page_files(plan, index, cells, cover, environment(config.templates_dir), page_templates))
    for rel, data in files.items():
        report.files_written += write_if_changed(out / rel, data)

    written: dict[str, int | None] = {rel: len(data) for rel, data in files.items()}
    written.update({rel: os.stat(os.path.join(root, rel)).st_size for pair in webs.values() for rel in pair})
    report.files_removed = _remove(out, records.stale(slug, source, set(written)))
    records.forget_other_slugs(slug, source)
    records.finish(slug, source, written)
    return report


def _whole(root: str, rel: str, recorded: dict[str, int | None]) -> bool:
    """A web copy already written whole: its size is the recorded one (any, if not recorded yet:
    files are renamed into place whole). A truncated or emptied copy is made again."""
    try:
        size = os.stat(os.path.join(root, rel)).st_size
    except OSError:
        return False
    return size > 0 and recorded.get(rel) in (None, size)


def _remove_temp_files(out: Path, page_files: list[str], image_dir: str) -> None:
    """Temp files (ours: the fsutil prefix) in the folders the stage writes: the page files' own
    folders, and the whole image folder."""
    folders = {os.path.dirname(os.path.join(out, rel)) for rel in page_files}
    for folder, _, names in os.walk(os.path.join(out, image_dir)):
        for name in names:
            if name.startswith(TEMP_PREFIX):
                os.unlink(os.path.join(folder, name))
    for folder in folders:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if name.startswith(TEMP_PREFIX):
                    os.unlink(os.path.join(folder, name))


def _page_templates(plan: Plan, site_files: bool) -> dict[str, tuple[str, dict]]:
    """Each page file this tool writes (outside its image folder): path -> (template, extra context),
    with the Jekyll site's own files where `site_files`. The one list of them, read both to check
    ownership and to render."""
    config = plan.config
    include_dir = f"_includes/prompt_gallery/{config.page.slug}"
    files: dict[str, tuple[str, dict]] = {
        f"_projects/{config.page.slug}.md": ("page.md", {}),
        f"{include_dir}/gallery.html": ("gallery.html", {}),
        "assets/js/prompt-gallery.js": ("assets/prompt-gallery.js", {}),
        "assets/js/pg-grid.js": ("assets/pg-grid.js", {}),  # imported by the first when a grid shows
        "assets/js/pg-search.js": ("assets/pg-search.js", {}),
        "assets/css/prompt-gallery.css": ("assets/prompt-gallery.css", {}),
        # the compare view, loaded by prompt-gallery.js when first needed
        "assets/js/pg-compare.js": ("assets/pg-compare.js", {}),
        "assets/css/pg-compare.css": ("assets/pg-compare.css", {}),
    }
    for axis, selected in zip(config.axes, config.page.default, strict=True):
        files[f"{include_dir}/select-{axis.name}.html"] = ("select.html", {"axis": axis, "selected": selected})
    if site_files:
        files.update({name: (f"site/{name}", {}) for name in STANDALONE_FILES})
    return files


def _json(data: dict) -> bytes:
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _page_files(
    plan: Plan, manifest: dict, cells: dict, cover: str | None, env: Environment, templates: dict[str, tuple[str, dict]]
) -> dict:
    """The page files of `templates` (_page_templates), rendered."""
    config = plan.config
    page = config.page
    slug = page.slug
    default_cell = plan.cell(page.default)
    context = {
        "slug": slug,
        "page": page,
        "site": config.site,
        "axes": config.axes,
        "manifest": manifest,
        "manifest_url": manifest_mod.manifest_path(plan),
        "default": dict(zip((a.name for a in config.axes), page.default, strict=True)),
        "cell": cells[default_cell.path],
        "cell_labels": [a.option(k).label for a, k in zip(config.axes, page.default, strict=True)],
        "front_matter": Markup(_front_matter(plan, cover)),
        "intro": Markup(page.intro),
        "body": Markup(page.body),
    }
    return {
        rel: env.get_template(template).render(context, **extra).encode("utf-8")
        for rel, (template, extra) in templates.items()
    }


def _front_matter(plan: Plan, cover: str | None) -> str:
    page = plan.config.page
    data: dict[str, str | int] = {"layout": page.layout, "title": page.title}
    if page.description:
        data["description"] = page.description
    if cover:
        data["img"] = cover
    if page.importance is not None:
        data["importance"] = page.importance
    if page.category:
        data["category"] = page.category
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000).strip()


def _remove(out: Path, stale: set[str]) -> int:
    """Remove files the gallery no longer writes (old cells, an old slug's page), then the folders
    this leaves empty; never a file another gallery's record lists (see SiteRecords.stale)."""
    removed = 0
    for rel in sorted(stale):
        path = out / rel
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        for folder in path.parents:
            if folder == out or not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
    return removed
