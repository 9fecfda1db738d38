"""The manifest index's size (fetched on every first view) as the matrix grows, without building
a site: the plan and the manifest code make the index and its cell blocks as the site stage does
(gallery/site.py), with stand-in cell file names of the real length (their content hashes need the
images). Beside it, the index as it was before the blocks (every cell's file listed in it).

Run: .venv/bin/python benchmarks/index_size.py [--config prompts.yaml]
Galleries: the config's own matrix, then 25 x 25, 100 x 100 and 25 x 25 x 16 cells with its render
settings (page_weight.big_config, a third axis added); bytes as written, and gzip -6 as GitHub Pages
serves JSON. The index keeps a part that grows with the options (their labels and prompts, which
the search box reads) and about 50 bytes a block of cells."""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.page_weight import big_config  # noqa: E402
from gallery import manifest  # noqa: E402
from gallery.config import load_config  # noqa: E402
from gallery.project import plan_of  # noqa: E402
from gallery.site import _json  # noqa: E402


def sizes(config_path: Path) -> tuple[int, dict[str, tuple[int, int]]]:
    plan = plan_of(load_config(config_path))
    files = {cell.path: manifest.cell_path(plan, cell, cell.path.encode()) for cell in plan.cells}
    blocks = [_json(block) for block in manifest.cell_blocks(plan, files)]
    grid = manifest.grid_file_path(plan, b"grid")
    index = manifest.build_index(plan, [manifest.block_path(plan, data) for data in blocks], grid)
    before = {k: v for k, v in index.items() if k != "cell_blocks"} | {"cells": files}
    measured = {
        "index": _json(index),
        "index before (cells listed)": _json(before),
        "largest block": max(blocks, key=len),
    }
    return len(plan.cells), {name: (len(data), len(gzip.compress(data, 6))) for name, data in measured.items()}


def three_axes(two_axes: Path, options: int) -> Path:
    """The gallery of `two_axes` (big_config's) with a third axis of `options` options."""
    data = yaml.safe_load(two_axes.read_text())
    data["axes"]["light"] = {f"l{i:02d}": f"in light number {i}" for i in range(options)}
    path = two_axes.with_name("three-axes.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "prompts.yaml")
    args = parser.parse_args()
    print(f"{manifest.BLOCK_SIZE} cells a block; bytes (gzip -6)")
    with tempfile.TemporaryDirectory() as tmp:
        configs = [(args.config.name, args.config)]
        for n in (25, 100):
            folder = Path(tmp) / str(n)
            folder.mkdir()
            configs.append((f"{n} x {n}", big_config(folder, args.config, n, n, 1)))
        configs.append(("25 x 25 x 16", three_axes(Path(tmp) / "25" / "prompts.yaml", 16)))
        for name, path in configs:
            cells, measured = sizes(path)
            text = ", ".join(f"{what} {size:,} ({gz:,})" for what, (size, gz) in measured.items())
            print(f"{name}: {cells:,} cells: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
