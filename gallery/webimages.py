"""Web copies of cached renders: a small WebP thumbnail for the cell view, a full-size WebP, and
(where the page can show a grid view) a still smaller one for the grid's many cells.

The page never links the cache's PNGs: they are large and carry the raw recipe. Web copies
are named by the image's key, so an existing file is already right and is skipped.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gallery.fsutil import atomic_write_bytes
from gallery.pool import map_images

THUMB_MAX = 384  # px on the long side: sharp at 2x in a four-column grid
THUMB_QUALITY = 80
FULL_QUALITY = 90
GRID_MAX = 160  # px on the long side: a grid cell is drawn about 80 px wide (sharp at 2x)
GRID_QUALITY = 72


@dataclass(frozen=True)
class WebImage:
    key: str
    source: Path  # the cached PNG
    sha256: str  # what its sidecar says the PNG's bytes hash to
    thumb: Path
    full: Path
    grid: Path | None = None  # the grid view's copy, where the page can show a grid


def thumb_size(width: int, height: int, longest: int = THUMB_MAX) -> tuple[int, int]:
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def grid_size(width: int, height: int) -> tuple[int, int]:
    return thumb_size(width, height, GRID_MAX)


def derive(images: list[WebImage]) -> tuple[int, set[str]]:
    """Write the web copies of `images` (on every core). Return how many were converted, and the
    keys of sources that do not match their sidecar (those are never published)."""
    results = map_images(_convert, images, few=32)
    refused = {image.key for image, ok in zip(images, results, strict=True) if not ok}
    return len(images) - len(refused), refused


def _convert(image: WebImage) -> bool:
    data = image.source.read_bytes()
    if hashlib.sha256(data).hexdigest() != image.sha256:
        return False
    with Image.open(io.BytesIO(data)) as src:
        src = src.convert("RGB")
        copies = {image.grid: _webp(src, GRID_MAX, GRID_QUALITY)} if image.grid is not None else {}
        copies[image.full] = _webp(src, None, FULL_QUALITY)
        copies[image.thumb] = _webp(src, THUMB_MAX, THUMB_QUALITY)
    for path, webp in copies.items():
        atomic_write_bytes(path, webp)
    return True


def _webp(src: Image.Image, longest: int | None, quality: int) -> bytes:
    """`src` as WebP, scaled down to `longest` px on its long side where it is larger."""
    if longest is not None and max(src.size) > longest:
        src = src.resize(thumb_size(*src.size, longest), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    src.save(out, format="WEBP", quality=quality, method=4)
    return out.getvalue()
