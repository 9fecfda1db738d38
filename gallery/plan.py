"""Config -> Plan: one Job per image (cell x sample), each with its seed and cache key. Pure."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gallery import families, schedulers
from gallery.config import Axis, Config, Picture, Upscale
from gallery.families import Effect, ModelFacts

# Bump when the meaning of a key changes; old cache entries then simply stop matching.
KEY_FORMAT = 1


@dataclass(frozen=True)
class Job:
    cell: tuple[str, ...]  # one option key per axis, in axis order
    sample: int  # 0-based index within the cell
    seed: int  # base seed + sample: the same noise for sample i in every cell
    prompt: str
    picture: Picture  # after the cell's per-option overrides
    model_id: str  # the model's identity in the key (hub id@revision, or a content fingerprint)
    key: str
    effect: Effect  # what the picture's settings do on its model: what the recipe records
    config_id: str | None = None  # a single-file model's `config:` (its identity), where set
    lora_ids: tuple[str, ...] = ()  # the identity of each of picture.loras, in order

    @property
    def recipe(self) -> dict:
        return recipe(self.picture, self.model_id, self.prompt, self.seed, self.effect, self.config_id, self.lora_ids)


@dataclass(frozen=True)
class Cell:
    keys: tuple[str, ...]
    prompt: str
    picture: Picture
    jobs: tuple[Job, ...]
    effect: Effect

    @property
    def path(self) -> str:
        """The cell's name in file paths, URLs and the manifest: 'cat/van_gogh'."""
        return "/".join(self.keys)


@dataclass(frozen=True)
class UpscaleJob:
    """The optional second stage for one image: its key follows from the source's key and the
    upscaler, so changing the upscaler re-runs only this stage."""

    source: Job
    upscale: Upscale
    key: str
    model_id: str | None = None  # a model upscaler's identity (see fingerprint); None: no model

    @property
    def recipe(self) -> dict:
        return upscale_recipe(self.source, self.upscale, self.model_id)


@dataclass(frozen=True)
class Plan:
    config: Config
    cells: tuple[Cell, ...]
    upscales: Mapping[str, UpscaleJob] = field(default_factory=dict)  # by source key; empty: no upscaling

    @property
    def keys(self) -> list[str]:
        """Every cache key the plan needs: renders, and upscales if any."""
        return [job.key for job in self.jobs] + [u.key for u in self.upscales.values()]

    def published_key(self, job: Job) -> str:
        """The cache entry whose picture the page shows for `job`: the upscaled one if any."""
        return self.upscales[job.key].key if self.upscales else job.key

    @property
    def jobs(self) -> tuple[Job, ...]:
        return tuple(job for cell in self.cells for job in cell.jobs)

    def cell(self, keys: tuple[str, ...]) -> Cell:
        return next(c for c in self.cells if c.keys == keys)


def combinations(config: Config):
    """(options, picture) for every cell, in axis order; the picture has the options' overrides."""
    for options in itertools.product(*(axis.options for axis in config.axes)):
        picture = config.picture
        for option in options:  # later axes win when two options change the same setting
            if option.overrides:
                picture = replace(picture, **dict(option.overrides))
        yield options, picture


def models(config: Config) -> set[tuple[str, str | None]]:
    """Every (model, revision) the plan will use, the upscaler's included."""
    pictures = [p for _, p in combinations(config)]
    used = {(p.model, p.revision) for p in pictures}
    used |= {(p.config_source, p.revision) for p in pictures if p.config_source}
    if config.upscale and config.upscale.model:
        used.add((config.upscale.model, config.upscale.revision))
    return used


def lora_files(config: Config) -> set[tuple[str, str | None]]:
    """Every LoRA file (model, revision) the plan will use."""
    return {(lora.model, lora.revision) for _, p in combinations(config) for lora in p.loras}


def pipelines(config: Config) -> set[tuple[str, str | None, str, str | None]]:
    """Every (model, revision, pipeline setting, config source) a picture uses: what decides its
    family's facts (see modelinfo)."""
    return {(p.model, p.revision, p.pipeline, p.config_source) for _, p in combinations(config)}


def expand(
    config: Config,
    model_ids: Mapping[tuple[str, str | None], str],
    facts: Mapping[tuple[str, str | None, str, str | None], ModelFacts | None] | None = None,
) -> Plan:
    """Every combination of options; `model_ids` maps each model and LoRA file to its identity (see fingerprint),
    `facts` each model and pipeline setting to what its files say (see modelinfo; absent: unknown,
    and every setting is recorded)."""
    cells = []
    for options, picture in combinations(config):
        keys = tuple(o.key for o in options)
        prompt = build_prompt(config, config.axes, options)
        model_id = model_ids[(picture.model, picture.revision)]
        entry = (picture.model, picture.revision, picture.pipeline, picture.config_source)
        effect = effect_of(picture, (facts or {}).get(entry))
        config_id = model_ids[(picture.config_source, picture.revision)] if picture.config_source else None
        lora_ids = tuple(model_ids[(lora.model, lora.revision)] for lora in picture.loras)
        jobs = tuple(
            Job(
                keys,
                i,
                config.runtime.seed + i,
                prompt,
                picture,
                model_id,
                cache_key(
                    picture,
                    model_id,
                    prompt,
                    config.runtime.seed + i,
                    effect=effect,
                    config_id=config_id,
                    lora_ids=lora_ids,
                ),
                effect,
                config_id,
                lora_ids,
            )
            for i in range(config.runtime.samples)
        )
        cells.append(Cell(keys, prompt, picture, jobs, effect))
    upscales = {}
    if config.upscale:
        upscale = config.upscale
        upscaler_id = model_ids[(upscale.model, upscale.revision)] if upscale.model else None
        for cell in cells:
            for job in cell.jobs:
                upscales[job.key] = UpscaleJob(
                    job, upscale, recipe_key(upscale_recipe(job, upscale, upscaler_id)), upscaler_id
                )
    return Plan(config, tuple(cells), upscales)


def upscale_recipe(source: Job, upscale: Upscale, model_id: str | None = None) -> dict:
    """Everything that decides an upscaled picture: its source and the upscaler with its settings."""
    recipe_ = {
        "format": KEY_FORMAT,
        "source": source.key,
        "upscaler": upscale.upscaler,
        "factor": upscale.factor,
        "size": upscale.size,
    }
    if upscale.model:
        recipe_.update(model=model_id)
        recipe_.update(
            {k: getattr(upscale, k) for k in ("steps", "guidance", "noise_level") if getattr(upscale, k) is not None}
        )
    if upscale.tile is not None:  # tiles change a picture a little; a source that fits in one tile is not tiled
        tiled = upscale.tile and max(source.picture.width, source.picture.height) > upscale.tile
        recipe_.update(tile=upscale.tile if tiled else 0, tile_overlap=upscale.tile_overlap if tiled else 0)
    if upscale.kind.loader == "diffusers":  # it draws noise: the source's seed, so a column stays comparable
        recipe_.update(seed=source.seed)
    negative = source.picture.negative_prompt
    if upscale.upscaler == "sd-x4" and negative and not source.effect.negative:  # sd-x4 reads it, the source's key not
        recipe_.update(negative_prompt=negative)
    return recipe_


def output_size(picture: Picture, upscale: Upscale | None) -> tuple[int, int]:
    """The size of the picture the page shows: the render's, or the upscaled one."""
    w, h = picture.width, picture.height
    if upscale is None:
        return w, h
    if upscale.factor:
        return w * upscale.factor, h * upscale.factor
    assert upscale.size is not None  # the reader gives one of factor and size
    scale = upscale.size / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def build_prompt(config: Config, axes: tuple[Axis, ...], options) -> str:
    fragments = {axis.name: option.prompt.strip() for axis, option in zip(axes, options, strict=True)}
    if config.prompt_template is None:
        return " ".join(f for f in fragments.values() if f)
    text = config.prompt_template.format(**fragments)
    return re.sub(r"\s{2,}", " ", text).strip()  # an empty fragment leaves no double space


def effect_of(picture: Picture, facts: ModelFacts | None) -> Effect:
    """What `picture`'s guidance and negative prompt do on the model `facts` describe."""
    return families.effect(facts, picture.guidance, picture.negative_prompt, dict(picture.call))


def recipe(
    picture: Picture,
    model_id: str,
    prompt: str,
    seed: int,
    effect: Effect | None = None,
    config_id: str | None = None,
    lora_ids: tuple[str, ...] = (),
) -> dict:
    """The canonical form of everything that decides the picture (and nothing else): a negative
    prompt or a guidance that took no effect (`effect`; None: unknown, kept) is left out, so
    changing it re-renders nothing. `config_id`: the identity of a single-file model's `config:`;
    the pipeline's own call arguments and the LoRAs (with `lora_ids`, each one's identity): each
    appears only where set, so the keys of a file without them stay as they were."""
    effect = effect or effect_of(picture, None)
    recipe_ = {
        "format": KEY_FORMAT,
        "model": model_id,
        "pipeline": picture.pipeline,
        "scheduler": picture.scheduler,
        "scheduler_options": dict(schedulers.choice(picture.scheduler).options + picture.scheduler_options),
        "prompt": prompt,
        "negative_prompt": picture.negative_prompt if effect.negative else "",
        "seed": seed,
        "steps": picture.steps,
        "guidance": float(picture.guidance) if effect.guidance else None,
        "width": picture.width,
        "height": picture.height,
    }
    if picture.quantize != "none":  # smaller weights change the pixels a little; absent, so other keys stay
        recipe_["quantize"] = picture.quantize
    if config_id:
        recipe_["config"] = config_id
    if picture.call:
        recipe_["call"] = {name: list(v) if isinstance(v, tuple) else v for name, v in sorted(picture.call)}
    if picture.loras:
        assert len(lora_ids) == len(picture.loras), "each LoRA needs its identity"
        recipe_["loras"] = [
            {"model": lora_id, "scale": float(lora.scale)}
            for lora, lora_id in zip(picture.loras, lora_ids, strict=True)
        ]
    return recipe_


def cache_key(picture: Picture, model_id: str, prompt: str, seed: int, **more: Any) -> str:
    """The key of recipe(); `more`: its keyword arguments (effect, config_id, lora_ids)."""
    return recipe_key(recipe(picture, model_id, prompt, seed, **more))


def recipe_key(recipe_: dict) -> str:
    """SHA-256 of the recipe's canonical JSON; `verify` recomputes it from a sidecar."""
    canonical = json.dumps(recipe_, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
