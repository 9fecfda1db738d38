"""What the model upscalers (tiled.TiledUpscaler, latent.LatentUpscaler) share: the render settings'
device, the render pipeline's memory let go before their model loads, and the store loop."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from gallery.batching import Stored, free_memory, store_good
from gallery.config import Runtime, Upscale
from gallery.plan import UpscaleJob

if TYPE_CHECKING:
    from PIL import Image


class ModelUpscaler:
    """Subclasses load their model (`load`) and yield its results (`batches`)."""

    def __init__(
        self, upscale: Upscale, runtime: Runtime, *, warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)
    ):
        import torch

        from gallery.loading import choose_target

        self.upscale = upscale
        self.warn = warn
        self.target = choose_target(runtime)
        free_memory(torch)  # the render pipeline, if this build rendered, is garbage now
        self.load(runtime)

    def load(self, runtime: Runtime) -> None:
        raise NotImplementedError

    def batches(
        self, todo: Sequence[UpscaleJob], source: Callable[[UpscaleJob], object]
    ) -> Iterator[tuple[Sequence[UpscaleJob], Sequence, dict]]:
        """(jobs, float pictures (h, w, 3) in 0..1 at the model's own scale, how they were made) per
        model call or finished picture; `source(job)` is the job's source picture (RGB)."""
        raise NotImplementedError

    def run(
        self,
        todo: Sequence[UpscaleJob],
        source: Callable[[UpscaleJob], object],
        store: Callable[[UpscaleJob, Image.Image, dict], None],
        progress=None,
    ) -> Stored[UpscaleJob]:
        """Upscale each job's source picture and hand the result, at the model's own scale, to
        `store(job, picture, made)`; an unusable one (NaN, black) is reported instead."""
        return store_good(self.batches(todo, source), store, progress)


def by_size(todo: Sequence[UpscaleJob]) -> dict[tuple[int, int], list[UpscaleJob]]:
    """Jobs whose sources have one size (they can share a model call), in first-seen order."""
    groups: dict[tuple[int, int], list[UpscaleJob]] = {}
    for u in todo:
        groups.setdefault((u.source.picture.width, u.source.picture.height), []).append(u)
    return groups
