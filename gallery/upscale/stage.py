"""The optional upscale stage: cached renders -> upscaled entries in the same cache.

Each upscaled image is an entry of its own, keyed by the source image's key and the upscaler
with its settings (see plan.UpscaleJob), written like a render (PNG with its recipe, then the
sidecar). Lanczos (Pillow) needs no model; the work goes to every core (gallery.pool). A model
upscaler runs here, in this process, on the render device: a super-resolution network in tiles
(gallery.upscale.tiled) or a latent upscaler (gallery.upscale.latent). Its result (the model's
own scale) is resized with Lanczos where another factor or size was asked.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from gallery import metadata
from gallery.cache import Cache
from gallery.plan import Plan, UpscaleJob, output_size
from gallery.pool import map_images

if TYPE_CHECKING:
    from gallery.upscale.model_upscaler import ModelUpscaler


def missing(plan: Plan, entries: dict[str, dict]) -> list[UpscaleJob]:
    """Upscale jobs whose source is rendered and whose result is not cached yet, or stale."""
    return [
        u
        for job in plan.jobs
        if (u := plan.upscales.get(job.key)) and job.key in entries and (u.key not in entries or stale(u, entries))
    ]


def stale(u: UpscaleJob, entries: dict[str, dict]) -> bool:
    """An upscaled entry made from other bytes than its source holds now (the source was damaged and
    rendered again): it is made again, so the page never shows the upscale of another picture.
    Entries from before the source's hash was recorded are taken as they are."""
    made_from = entries.get(u.key, {}).get("source_sha256")
    source = entries.get(u.source.key)
    return made_from is not None and source is not None and made_from != source["png"]["sha256"]


def run(
    plan: Plan, cache: Cache, todo: list[UpscaleJob], entries: dict[str, dict], progress=None
) -> list[tuple[UpscaleJob, str]]:
    """Upscale `todo` into the cache; return the images that came out unusable (not cached), and why.
    A source whose bytes no longer match its sidecar is set aside (the next build renders it again)
    and not upscaled: an upscale never starts from a damaged or replaced picture."""
    upscale = plan.config.upscale
    assert upscale is not None  # only a plan with upscale jobs comes here
    rejected = []
    for u in [u for u in todo if not _source_intact(cache, u, entries)]:
        cache.set_aside(u.source.key)
        entries.pop(u.source.key, None)  # the site stage must not publish it either
        rejected.append((u, "its rendered source changed on disk; set aside, the next build renders it again"))
        todo = [t for t in todo if t is not u]
    return rejected + _upscale(plan, cache, todo, entries, progress)


def _source_intact(cache: Cache, u: UpscaleJob, entries: dict[str, dict]) -> bool:
    try:
        data = cache.png_path(u.source.key).read_bytes()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == entries[u.source.key]["png"]["sha256"]


def _upscale(
    plan: Plan, cache: Cache, todo: list[UpscaleJob], entries: dict[str, dict], progress=None
) -> list[tuple[UpscaleJob, str]]:
    upscale = plan.config.upscale
    assert upscale is not None
    loader = upscale.kind.loader
    if loader == "pillow":
        map_images(
            _lanczos,
            [_task(cache, u, entries) for u in todo],
            few=16,
            chunksize=4,
            on_each=(lambda: progress.update(1)) if progress is not None else None,
        )
        return []
    # these import torch: only now that a model must run
    upscaler_class: type[ModelUpscaler]
    if loader == "spandrel":
        from gallery.upscale.tiled import TiledUpscaler as upscaler_class
    else:
        from gallery.upscale.latent import LatentUpscaler as upscaler_class

    upscaler = upscaler_class(upscale, plan.config.runtime)
    stored = upscaler.run(
        todo,
        source=lambda u: open_rgb(cache.png_path(u.source.key)),
        store=lambda u, image, made: _store(_task(cache, u, entries), image, made),
        progress=progress,
    )
    return stored.rejected


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _task(cache: Cache, u: UpscaleJob, entries: dict[str, dict]) -> dict:
    job = u.source
    recipe, source_recipe = u.recipe, job.recipe
    source = entries[job.key]
    parameters = metadata.a1111_parameters(
        source_recipe,
        job.picture.model_name,
        metadata.sampler_of(source),
        effect=job.effect,
        loras=metadata.loras_of(source),
    )
    long_side = max(job.picture.width, job.picture.height)
    scale = u.upscale.factor or round((u.upscale.size or long_side) / long_side, 3)
    hires = f"Hires upscale: {scale}, Hires upscaler: {u.upscale.label}"
    if u.upscale.steps:
        hires += f", Hires steps: {u.upscale.steps}"
    return {
        "root": str(cache.root),
        "source": str(cache.png_path(job.key)),
        "key": u.key,
        "size": output_size(job.picture, u.upscale),
        "recipe": recipe,
        "parameters": f"{parameters}, {hires}",  # A1111 writes its "hires" upscale on the settings line
        "sidecar": {
            "key": u.key,
            "source": job.key,
            "cell": list(job.cell),
            "sample": job.sample,
            "recipe": recipe,
            "source_recipe": source_recipe,
            "upscaler": u.upscale.label,
            "source_sha256": entries[job.key]["png"]["sha256"],  # what it was made from (see stale)
        },
    }


def _lanczos(task: dict) -> None:
    _store(task, open_rgb(task["source"]), {})


def _store(task: dict, image: Image.Image, made: dict) -> None:
    """Bring `image` to the asked size (Lanczos) and put it in the cache with its recipe."""
    size = tuple(task["size"])
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    png = metadata.encode_png(image, task["parameters"], task["recipe"])
    sidecar = dict(
        task["sidecar"],
        made=dict(made, created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
        png={"width": image.width, "height": image.height},
    )
    Cache(Path(task["root"])).put(task["key"], png, sidecar)
