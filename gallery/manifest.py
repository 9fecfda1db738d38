"""Plan + what is cached -> the manifest: the one description of the gallery that the page,
the no-JavaScript fallback and the script all read. Pure.

It comes in two parts: an index (axes, default cell, where each cell's file is) and one small
file per cell (prompt, settings, images), so a first view costs kilobytes however large the matrix."""

from __future__ import annotations

import hashlib

from gallery import metadata, schedulers
from gallery.config import Upscale
from gallery.plan import Cell, Job, Plan, output_size
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
    stem = f"{image_dir(plan)}/{cell.path}/{job.sample:02d}-{plan.published_key(job)[:12]}"
    return f"{stem}-thumb.webp", f"{stem}-full.webp"


def cell_path(plan: Plan, cell: Cell, data: bytes) -> str:
    """Each cell's images and recipe live in a file of their own, fetched when the cell is shown. It
    is named by its content: a new version never replaces a file that an open page (or a browser's
    cache) holds, and the manifest, one file replaced whole, moves the gallery's data from the old
    version to the new one at once."""
    return f"{image_dir(plan)}/{cell.path}/cell-{hashlib.sha256(data).hexdigest()[:12]}.json"


def settings_of(
    cell: Cell, upscale: Upscale | None = None, made_with: str | None = None, rendered: tuple[int, int] | None = None
) -> dict:
    """The cell's recipe for the lightbox; `made_with` is the label of the model's own scheduler,
    for a config that left the scheduler at 'default' (the sidecars record it); `rendered` the size
    the pipeline made, where it is not the one asked (a family with sizes of its own)."""
    p = cell.picture
    scheduler = schedulers.choice(p.scheduler).label
    if p.scheduler == "default" and made_with:
        scheduler = made_with
    settings = {
        "model": p.model_name,
        "scheduler": scheduler,
        "steps": p.steps,
        "width": rendered[0] if rendered else p.width,
        "height": rendered[1] if rendered else p.height,
    }
    if cell.effect.cfg is not None:  # what guidance did, as the PNG says it (see metadata.a1111_parameters)
        settings["cfg"] = cell.effect.cfg
    if cell.effect.distilled is not None:
        settings["distilled_cfg"] = cell.effect.distilled
    if p.quantize != "none":  # only where set, as in the recipe
        settings["quantize"] = p.quantize
    if p.loras:  # as the PNG names them: the file's name without its suffix
        settings["loras"] = [{"name": lora.name, "scale": lora.scale} for lora in p.loras]
    if p.call:
        settings["call"] = {name: list(v) if isinstance(v, tuple) else v for name, v in p.call}
    if upscale:
        settings["upscaler"] = upscale.label
    return settings


def build_cell(plan: Plan, cell: Cell, available: set[str], entries: dict[str, dict] | None = None) -> dict:
    images = []
    size, rendered = output_size(cell.picture, plan.config.upscale), None
    shown = next((j for j in cell.jobs if entries and j.key in available and j.key in entries), None)
    if entries and shown:  # the sizes the pictures are, as their sidecars say
        size = _size_of(entries.get(plan.published_key(shown)), size)
        rendered = _size_of(entries[shown.key], (cell.picture.width, cell.picture.height))
    tw, th = thumb_size(*size)
    for job in cell.jobs:
        if job.key in available:
            thumb, full = web_paths(plan, cell, job)
            images.append({"sample": job.sample, "seed": job.seed, "thumb": thumb, "full": full})
    made_with = next(
        (metadata.sampler_of(entries[j.key]) for j in cell.jobs if entries and j.key in entries and j.key in available),
        None,
    )
    return {
        "prompt": cell.prompt,
        "negative_prompt": cell.picture.negative_prompt if cell.effect.negative else "",
        "settings": settings_of(cell, plan.config.upscale, made_with, rendered),
        "thumb_size": [tw, th],
        "full_size": list(size),
        "images": images,
    }


def _size_of(sidecar: dict | None, fallback: tuple[int, int]) -> tuple[int, int]:
    png = (sidecar or {}).get("png", {})
    width, height = png.get("width"), png.get("height")
    return (width, height) if isinstance(width, int) and isinstance(height, int) else fallback


def build_index(plan: Plan, cell_files: dict[str, str]) -> dict:
    """What the page needs before any cell: the axes, the default, and where each cell's file is
    (`cell_files`: cell path -> its file, see cell_path). Small on purpose: it is fetched on every
    first view (the default cell is already in the HTML)."""
    config = plan.config
    return {
        "generator": "Generated by prompt-gallery",
        "version": MANIFEST_VERSION,
        "slug": config.page.slug,
        "title": config.page.title,
        "samples": config.runtime.samples,
        "axes": [
            {
                "name": a.name,
                "label": a.label,
                # the prompt fragment too, which the search box finds options by: bytes per option, not per cell
                "options": [{"key": o.key, "label": o.label, "prompt": o.prompt} for o in a.options],
            }
            for a in config.axes
        ],
        "default": list(config.page.default),
        "cells": cell_files,
    }
