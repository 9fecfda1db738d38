"""Cached renders -> upscaled pictures through a super-resolution network (ESRGAN family, loaded by
spandrel). The only place that runs one.

A picture larger than `upscale.tile` is cut into tiles of that size that overlap by
`upscale.tile_overlap` pixels, so memory stays bounded whatever the picture's size. Each tile's
result is weighted by a ramp that falls off towards its edges inside the overlap (where the
network saw least of the picture) and the weighted tiles are summed: no visible seam. Tiles of one size,
from one picture or from many, share a model call; out of memory halves it, as rendering does.
The network is deterministic, so a picture comes out the same alone or in any batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gallery import loading
from gallery.batching import in_batches
from gallery.config import Runtime
from gallery.plan import UpscaleJob
from gallery.upscale.model_upscaler import ModelUpscaler, by_size

Box = tuple[int, int, int, int]  # left, top, right, bottom, in source pixels


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of tiles of `tile` pixels covering 0..length, neighbours sharing at least
    `overlap`; the last one ends at `length` (it shares more), so every tile has the same size.
    A side no longer than the tile (or tile 0) is one span."""
    if not tile or length <= tile:
        return [(0, length)]
    starts = list(range(0, length - tile, tile - overlap)) + [length - tile]
    return [(s, s + tile) for s in starts]


def tile_boxes(width: int, height: int, tile: int, overlap: int) -> list[Box]:
    return [
        (x0, y0, x1, y1) for y0, y1 in tile_spans(height, tile, overlap) for x0, x1 in tile_spans(width, tile, overlap)
    ]


def ramp(start: int, end: int, length: int, fade: int):
    """Weights along one side of a tile's output, 0..1. Towards an edge that lies inside the picture
    (a neighbour covers it too) over `fade` pixels: none in the outer quarter, where the network saw
    least around a pixel, then rising over the middle half; flat at the picture's own border.
    (Measured against an untiled result, this cuts the seam error 5-40x against a plain linear ramp.)"""
    import numpy as np

    n = end - start
    weights = np.ones(n, dtype=np.float32)
    if fade:
        rise = np.clip((np.arange(n, dtype=np.float32) + 0.5 - fade / 4) / (fade / 2), 1e-6, 1.0)
        if start > 0:
            weights *= rise
        if end < length:
            weights *= rise[::-1]
    return weights


def blend_weights(boxes: Sequence[Box], width: int, height: int, scale: int, overlap: int) -> list:
    """Each tile's weights at the output's scale, (h, w), normalised so that the tiles sum to 1."""
    import numpy as np

    fade = overlap * scale
    weights = [
        np.outer(ramp(y0 * scale, y1 * scale, height * scale, fade), ramp(x0 * scale, x1 * scale, width * scale, fade))
        for x0, y0, x1, y1 in boxes
    ]
    total = np.zeros((height * scale, width * scale), dtype=np.float32)
    for (x0, y0, x1, y1), w in zip(boxes, weights, strict=True):
        total[y0 * scale : y1 * scale, x0 * scale : x1 * scale] += w
    return [
        w / total[y0 * scale : y1 * scale, x0 * scale : x1 * scale]
        for (x0, y0, x1, y1), w in zip(boxes, weights, strict=True)
    ]


def auto_batch_size(tile_width: int, tile_height: int, device: str) -> int:
    """A first guess at tiles per call: a few 512px tiles on a GPU (out of memory halves it)."""
    if not device.startswith("cuda"):
        return 1  # a CPU gains nothing from a batch: 0.88x at 4 tiles per call (BENCHMARKS.md)
    return max(1, min(16, (512 * 512 * 4) // (tile_width * tile_height)))


@dataclass
class _Picture:
    """One picture being upscaled: its source pixels and its output so far."""

    pixels: Any  # torch tensor (3, h, w), 0..1
    output: Any  # numpy (3, h * scale, w * scale), the weighted tiles so far
    tiles_left: int
    seconds: float = 0.0


class TiledUpscaler(ModelUpscaler):
    def load(self, runtime: Runtime) -> None:
        self.model = loading.load_sr_model(self.upscale, self.target)

    def batches(self, todo: Sequence[UpscaleJob], source: Callable[[UpscaleJob], object]) -> Iterator[tuple]:
        """One finished picture at a time, at the model's own scale."""
        model = self.model
        made = {
            "device": self.target.device,
            "dtype": str(model.dtype).removeprefix("torch."),
            "architecture": model.architecture.name,
            "model_scale": model.scale,
            "versions": loading.versions("spandrel"),
        }
        for (width, height), group in by_size(todo).items():
            for u, array, seconds, tiles, batch in self.upscale_pictures(group, source, width, height):
                yield [u], [array], dict(made, tiles=tiles, batch_size=batch, seconds=round(seconds, 4))

    def upscale_pictures(self, items: Sequence, read: Callable, width: int, height: int) -> Iterator[tuple]:
        """(item, float array (h * scale, w * scale, 3) in 0..1, seconds, tiles, tiles per call) for
        each of `items`, in order, as each is finished; `read(item)` gives its width x height picture."""
        import numpy as np
        import torch

        scale, overlap = self.model.scale, self.upscale.tile_overlap or 0
        boxes = tile_boxes(width, height, self.upscale.tile or 0, overlap)
        weights = blend_weights(boxes, width, height, scale, overlap)
        tile_w, tile_h = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
        batch = self.upscale.batch_size or auto_batch_size(tile_w, tile_h, self.target.device)
        device, dtype = self.model.device, self.model.dtype
        pictures: dict[int, _Picture] = {}

        def picture(n: int) -> _Picture:
            if n not in pictures:
                pixels = torch.from_numpy(np.asarray(read(items[n]), dtype=np.float32).transpose(2, 0, 1) / 255.0)
                pictures[n] = _Picture(pixels, np.zeros((3, height * scale, width * scale), np.float32), len(boxes))
            return pictures[n]

        def call(chunk):
            tiles = []
            for n, i in chunk:
                x0, y0, x1, y1 = boxes[i]
                tiles.append(picture(n).pixels[:, y0:y1, x0:x1])
            batch = torch.stack(tiles).to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            return self.model(batch).float().cpu().numpy()

        work = [(n, i) for n in range(len(items)) for i in range(len(boxes))]
        at_one = (
            f"out of GPU memory upscaling one {tile_w}x{tile_h} tile; set upscale.tile smaller "
            "(e.g. 256), or use upscaler: lanczos"
        )
        for chunk, outputs, seconds in in_batches(work, batch, call, self.warn, "upscale batch size (tiles)", at_one):
            for (n, i), out in zip(chunk, outputs, strict=True):
                x0, y0, x1, y1 = (v * scale for v in boxes[i])
                p = pictures[n]
                p.output[:, y0:y1, x0:x1] += out * weights[i]
                p.seconds += seconds / len(chunk)
                p.tiles_left -= 1
                if not p.tiles_left:
                    del pictures[n]
                    yield items[n], p.output.transpose(1, 2, 0), p.seconds, len(boxes), len(chunk)
