"""Plan + cache -> site/: web images, the manifest, and the page through Jinja templates.

Templates use [[ ]] and [% %] so that Jekyll's own {{ }} and {% %} pass through them as text.
Every value a template prints is HTML-escaped and has its braces turned into entities, so
prompt text can never become markup or Liquid; trusted Markdown (the page's intro and body,
written by the page's author) is passed in already marked safe.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from gallery import manifest as manifest_mod
from gallery.cache import Cache
from gallery.fsutil import write_if_changed
from gallery.plan import Plan
from gallery.webimages import WebImage, derive

# Inside an installed wheel the templates ship in the package; in a checkout they stand at the top.
_HERE = Path(__file__).resolve().parent
BUILTIN_TEMPLATES = next((p for p in (_HERE / "templates", _HERE.parent / "templates") if p.is_dir()),
                         _HERE.parent / "templates")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


@dataclass
class SiteReport:
    images: int = 0  # images on the page
    converted: int = 0  # web copies made this run
    files_written: int = 0
    files_removed: int = 0
    missing: int = 0  # planned images not rendered yet


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


def environment(templates_dir: Path) -> Environment:
    loaders = [FileSystemLoader(str(templates_dir))] if templates_dir.is_dir() else []
    if BUILTIN_TEMPLATES.is_dir() and BUILTIN_TEMPLATES != templates_dir:
        loaders.append(FileSystemLoader(str(BUILTIN_TEMPLATES)))  # a user's folder may override a few
    env = Environment(
        loader=ChoiceLoader(loaders),
        variable_start_string="[[", variable_end_string="]]",
        block_start_string="[%", block_end_string="%]",
        comment_start_string="[#", comment_end_string="#]",
        autoescape=True, finalize=liquid_safe, undefined=StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["url_path"] = url_path
    env.filters["json_attr"] = lambda v: liquid_safe(json.dumps(v, ensure_ascii=False))
    return env


def build_site(plan: Plan, cache: Cache, site_dir: Path | None = None, *, standalone: bool = True) -> SiteReport:
    config = plan.config
    out = site_dir or config.site_dir
    report = SiteReport()
    available = {job.key for job in plan.jobs if cache.has(job.key)}
    report.missing = len(plan.jobs) - len(available)
    manifest = manifest_mod.build(plan, available)

    # Web copies of every available image, and the cover.
    webs = []
    for cell in plan.cells:
        for job in cell.jobs:
            if job.key in available:
                thumb, full = manifest_mod.web_paths(plan, cell, job)
                webs.append(WebImage(cache.png_path(job.key), out / thumb, out / full))
    report.images = len(webs)
    report.converted = derive(webs)
    cover_cell = manifest["cells"]["/".join(config.page.cover)]
    cover = None
    if cover_cell["images"]:
        cover = manifest_mod.cover_path(plan)
        write_if_changed(out / cover, (out / cover_cell["images"][0]["thumb"]).read_bytes())

    files = _page_files(plan, manifest, cover, environment(config.templates_dir), standalone)
    files[manifest_mod.manifest_path(plan)] = (json.dumps(manifest, ensure_ascii=False, separators=(",", ":"))
                                                + "\n").encode("utf-8")
    for rel, data in files.items():
        report.files_written += write_if_changed(out / rel, data)

    keep = {out / rel for rel in files} | {w.thumb for w in webs} | {w.full for w in webs}
    if cover:
        keep.add(out / cover)
    report.files_removed = _prune(out / manifest_mod.image_dir(plan), keep)
    return report


def _page_files(plan: Plan, manifest: dict, cover: str | None, env: Environment, standalone: bool) -> dict:
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
        "default": dict(zip((a.name for a in config.axes), page.default)),
        "cell": manifest["cells"][default_cell.path],
        "cell_labels": [a.option(k).label for a, k in zip(config.axes, page.default)],
        "front_matter": Markup(_front_matter(plan, cover)),
        "intro": Markup(page.intro),
        "body": Markup(page.body),
    }
    include_dir = f"_includes/prompt_gallery/{slug}"
    files = {
        f"_projects/{slug}.md": env.get_template("page.md").render(context),
        f"{include_dir}/gallery.html": env.get_template("gallery.html").render(context),
        "assets/js/prompt-gallery.js": env.get_template("assets/prompt-gallery.js").render(context),
        "assets/css/prompt-gallery.css": env.get_template("assets/prompt-gallery.css").render(context),
    }
    for axis in config.axes:
        files[f"{include_dir}/select-{axis.name}.html"] = env.get_template("select.html").render(
            context, axis=axis, selected=context["default"][axis.name])
    if standalone:
        for name in ("_config.yml", "_layouts/default.html", "_layouts/page.html", "index.html",
                     "assets/css/site.css"):
            files[name] = env.get_template(f"site/{name}").render(context)
    return {rel: text.encode("utf-8") for rel, text in files.items()}


def _front_matter(plan: Plan, cover: str | None) -> str:
    page = plan.config.page
    data = {"layout": page.layout, "title": page.title}
    if page.description:
        data["description"] = page.description
    if cover:
        data["img"] = cover
    if page.importance is not None:
        data["importance"] = page.importance
    if page.category:
        data["category"] = page.category
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000).strip()


def _prune(folder: Path, keep: set[Path]) -> int:
    """Remove files in this gallery's own image folder that left the matrix (never elsewhere)."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed
