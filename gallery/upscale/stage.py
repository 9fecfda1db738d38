"""The optional upscale stage: cached renders -> upscaled entries in the same cache.

Each upscaled image is an entry of its own, keyed by the source image's key and the upscaler
with its settings (see plan.UpscaleJob), written like a render (PNG with its recipe, then the
sidecar). Lanczos (Pillow) needs no model; the work goes to every core (gallery.pool). A model
upscaler runs here, in this process, on the render device: a super-resolution network in tiles
(gallery.upscale.tiled) or a latent upscaler (gallery.upscale.latent). Its result (the model's
own scale) is resized with Lanczos where another factor or size was asked.
"""

from __future__ import annotations

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
    """Upscale jobs whose source is rendered and whose result is not cached yet."""
    return [u for job in plan.jobs if (u := plan.upscales.get(job.key)) and job.key in entries and u.key not in entries]


def run(plan: Plan, cache: Cache, todo: list[UpscaleJob], progress=None) -> list[tuple[UpscaleJob, str]]:
    """Upscale `todo` into the cache; return the images that came out unusable (not cached), and why."""
    upscale = plan.config.upscale
    assert upscale is not None  # only a plan with upscale jobs comes here
    loader = upscale.kind.loader
    if loader == "pillow":
        map_images(
            _lanczos,
            [_task(cache, u) for u in todo],
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
        store=lambda u, image, made: _store(_task(cache, u), image, made),
        progress=progress,
    )
    return stored.rejected


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _task(cache: Cache, u: UpscaleJob) -> dict:
    job = u.source
    recipe, source_recipe = u.recipe, job.recipe
    parameters = metadata.a1111_parameters(source_recipe, job.picture.model_name)
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
