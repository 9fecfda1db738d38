"""prompts.yaml -> Config -> each model's identity -> Plan, in one place: the CLI, the tests and the
benchmarks all start here. plan.py stays pure; the identity of a local model needs its files read
(remembered in the cache folder's Memo), so that step lives here, between the two."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gallery.cache import Cache
from gallery.config import Config, load_config
from gallery.fingerprint import Memo, model_identities
from gallery.plan import Plan, expand, models


def plan_of(config: Config, memo: Memo | None = None) -> Plan:
    """Every job of `config` with its cache key; local models are hashed (digests remembered in
    `memo`, by default the one in config's cache folder; nothing is saved: see Memo.save)."""
    memo = memo if memo is not None else Memo(config.cache_dir)
    return expand(config, model_identities(models(config), memo))


@dataclass(frozen=True)
class Project:
    """A prompts file, planned, with its cache."""

    plan: Plan
    cache: Cache
    memo: Memo  # save it once the models are known to load, so a failed build leaves nothing behind

    @property
    def config(self) -> Config:
        return self.plan.config


def open_project(path: str | Path) -> Project:
    config = load_config(path)
    memo = Memo(config.cache_dir)
    return Project(plan_of(config, memo), Cache(config.cache_dir), memo)
