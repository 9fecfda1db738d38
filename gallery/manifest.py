"""Plan + what is cached -> the manifest: the one description of the gallery that the page,
the no-JavaScript fallback and the script all read. Pure."""

from __future__ import annotations

from gallery import schedulers
from gallery.plan import Cell, Job, Plan
from gallery.webimages import thumb_size

MANIFEST_VERSION = 1


def image_dir(plan: Plan) -> str:
    """Where this gallery's web images live, relative to the site root."""
    return f"assets/img/{plan.config.page.slug}"


def manifest_path(plan: Plan) -> str:
    return f"{image_dir(plan)}/manifest.json"


def cover_path(plan: Plan) -> str:
    return f"{image_dir(plan)}/cover.webp"


def web_paths(plan: Plan, cell: Cell, job: Job) -> tuple[str, str]:
    """(thumbnail, full-size) paths of a job's web copies; the key in the name busts caches."""
    stem = f"{image_dir(plan)}/{cell.path}/{job.sample:02d}-{job.key[:12]}"
    return f"{stem}-thumb.webp", f"{stem}-full.webp"


def settings_of(cell: Cell) -> dict:
    p = cell.picture
    return {"model": p.model_name, "scheduler": schedulers.resolve(p.scheduler).label, "steps": p.steps,
            "guidance": p.guidance, "width": p.width, "height": p.height}


def build(plan: Plan, available: set[str]) -> dict:
    config = plan.config
    cells = {}
    for cell in plan.cells:
        images = []
        for job in cell.jobs:
            if job.key not in available:
                continue
            thumb, full = web_paths(plan, cell, job)
            tw, th = thumb_size(cell.picture.width, cell.picture.height)
            images.append({"sample": job.sample, "seed": job.seed, "key": job.key, "thumb": thumb, "full": full,
                           "width": tw, "height": th,
                           "full_width": cell.picture.width, "full_height": cell.picture.height})
        cells[cell.path] = {"prompt": cell.prompt, "negative_prompt": cell.picture.negative_prompt,
                            "settings": settings_of(cell), "images": images}
    return {
        "version": MANIFEST_VERSION,
        "slug": config.page.slug,
        "title": config.page.title,
        "samples": config.runtime.samples,
        "axes": [{"name": a.name, "label": a.label, "options": [{"key": o.key, "label": o.label} for o in a.options]}
                 for a in config.axes],
        "default": list(config.page.default),
        "cells": cells,
    }
