"""Plan + what is cached -> `gallery plan --json`: the whole plan as one JSON document, for scripts
that drive or audit a build. Its format is documented in the README ("The plan as JSON") and
described by plan.schema.json beside this module; PLAN_JSON_VERSION changes when a field changes
meaning or goes away (a new field does not change it). Pure, apart from reading the cache's sidecars."""

from __future__ import annotations

import json
from pathlib import Path

from gallery import __version__
from gallery.cache import Cache
from gallery.manifest import axes_data
from gallery.plan import KEY_FORMAT, Plan

PLAN_JSON_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("plan.schema.json")


def plan_document(plan: Plan, cache: Cache) -> dict:
    """Everything the plan holds, in plan order (axes and options as prompts.yaml lists them; cells
    as the axes' product, the last axis fastest; samples in order): each image with its cache key,
    seed, recipe (plan.recipe: the settings that decide it, whose canonical JSON the key hashes) and
    whether a whole entry for it is cached, and each planned upscale likewise."""
    config = plan.config
    whole = cache.whole_entries(plan.keys)
    upscale = config.upscale
    cells = []
    for cell in plan.cells:
        cells.append(
            {
                "path": cell.path,
                "options": {axis.name: key for axis, key in zip(config.axes, cell.keys, strict=True)},
                "prompt": cell.prompt,
                "negative_prompt": cell.picture.negative_prompt if cell.effect.negative else "",
                "model": cell.picture.model_name,
                "images": [
                    {
                        "sample": job.sample,
                        "seed": job.seed,
                        "key": job.key,
                        "cached": job.key in whole,
                        "recipe": job.recipe,
                    }
                    for job in cell.jobs
                ],
            }
        )
    upscales = (
        [
            {"key": u.key, "source": u.source.key, "cached": u.key in whole, "recipe": u.recipe}
            for u in (plan.upscales[job.key] for job in plan.jobs)
        ]
        if plan.upscales
        else []
    )
    images = len(plan.jobs)
    return {
        "version": PLAN_JSON_VERSION,
        "generator": f"prompt-gallery {__version__}",
        "key_format": KEY_FORMAT,
        "source": str(config.source),
        "cache_dir": str(config.cache_dir),
        "site_dir": str(config.site_dir),
        "samples": config.runtime.samples,
        "seed": config.runtime.seed,
        "axes": axes_data(config),
        "counts": {
            "cells": len(plan.cells),
            "images": images,
            "cached": sum(job.key in whole for job in plan.jobs),
            "upscales": len(upscales),
            "upscaled": sum(u["cached"] for u in upscales),
        },
        "cells": cells,
        "upscaler": upscale.label if upscale else None,
        "upscales": upscales,
    }


def plan_json(plan: Plan, cache: Cache) -> str:
    """The document as text: keys sorted, two-space indents, UTF-8 as written (not \\u escapes), a
    final newline; the same plan and cache give the same bytes."""
    return json.dumps(plan_document(plan, cache), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
