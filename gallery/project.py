"""prompts.yaml -> Config -> each model's identity -> Plan, in one place: the CLI, the tests and the
benchmarks all start here. plan.py stays pure; the identity of a local model needs its files read
(remembered in the cache folder's Memo), so that step lives here, between the two."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gallery.cache import Cache
from gallery.config import Config, load_config
from gallery.errors import ConfigError
from gallery.fingerprint import Memo, lora_identities, model_identities
from gallery.modelinfo import model_facts
from gallery.plan import Plan, expand, lora_files, models, pipelines


def plan_of(config: Config, memo: Memo | None = None) -> Plan:
    """Every job of `config` with its cache key; local models and LoRA files are hashed (digests
    remembered in `memo`, by default the one in config's cache folder; nothing is saved: see
    Memo.save), and each model's config files read for what its settings do (gallery.modelinfo)."""
    memo = memo if memo is not None else Memo(config.cache_dir)
    ids = model_identities(models(config), memo) | lora_identities(lora_files(config), memo)
    return expand(config, ids, model_facts(pipelines(config)))


@dataclass(frozen=True)
class Project:
    """A prompts file, planned, with its cache."""

    plan: Plan
    cache: Cache
    memo: Memo  # save it once the models are known to load, so a failed build leaves nothing behind

    @property
    def config(self) -> Config:
        return self.plan.config


def image_count(config: Config) -> int:
    """How many images the matrix holds, from the option counts alone (nothing expanded)."""
    return math.prod(len(axis.options) for axis in config.axes) * config.runtime.samples


def check_size(config: Config) -> None:
    """Refuse a matrix larger than limits.max_images before expanding it (7 axes of 10 options
    would be 10 million jobs in memory before anything else could say no)."""
    count = image_count(config)
    if count > config.max_images:
        sizes = " x ".join(str(len(axis.options)) for axis in config.axes)
        raise ConfigError(
            f"{count:,} images ({sizes} options x {config.runtime.samples} samples) is more than "
            f"limits.max_images ({config.max_images:,})",
            file=str(config.source),
            line=config.line("limits.max_images"),
            key="limits.max_images",
            hint="raise limits.max_images, or pass --yes to go on anyway",
        )


def open_project(path: str | Path, *, any_size: bool = False) -> Project:
    """The prompts file at `path`, planned; larger than limits.max_images only with `any_size`."""
    config = load_config(path)
    if not any_size:
        check_size(config)
    memo = Memo(config.cache_dir)
    return Project(plan_of(config, memo), Cache(config.cache_dir), memo)
