"""Images per second of the esrgan upscale stage against a plain spandrel loop, side by side.

    .venv/bin/python benchmarks/upscale_speed.py [--workload x2plus|x4plus|tiny] [--size PX] [--images N]
        [--repeats N] [--dtype auto|float32|float16|bfloat16] [--batch auto|N] [--tile N]

The network is a full-size Real-ESRGAN generator with random weights (speed does not depend on
the weight values), saved as .safetensors to a temporary folder and read from there by both sides:

  x2plus  RealESRGAN_x2plus.pth's architecture (RRDBNet, 64 features, 23 blocks, pixel unshuffle),
          the original page's step: 256px renders to 512px
  x4plus  RealESRGAN_x4plus.pth's (the same at 4x)
  tiny    the tests' tiny RRDBNet on 64px pictures: the CI-sized run (a test runs it)

plain: spandrel's ModelLoader().load_from_file, float32 on the device, one whole picture per call,
       PIL in and out, each result saved as PNG.
ours:  gallery's upscale stage (gallery.upscale.stage.run) on a plan whose sources are in a fresh cache:
       the render device's dtype (auto: bfloat16/float16 on a GPU), tiles batched per call, results
       written as cache entries with their recipe.
Each side loads the weights and upscales all pictures in every repeat (loading is timed too, on
both sides alike); the sides take turns, the order turning, and the median is reported.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from render_speed import _load, _sync, side_by_side  # noqa: E402  (the same folder)

WORKLOADS = {"x2plus": (2, 256), "x4plus": (4, 256), "tiny": (2, 64)}  # scale, default picture size


def build(name: str, path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    scale = WORKLOADS[name][0]
    if name == "tiny":
        from tests.tiny_pipelines import tiny_rrdbnet

        net = tiny_rrdbnet(scale)
    else:
        from spandrel.architectures.ESRGAN import ESRGAN

        fold = 4 if scale == 2 else 1  # x2plus folds 2x2 pixels into channels first
        net = ESRGAN(
            in_nc=3 * fold, out_nc=3, num_filters=64, num_blocks=23, scale=4, shuffle_factor=2 if scale == 2 else None
        )
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def pictures(folder: Path, count: int, size: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        yy, xx = np.mgrid[0:size, 0:size]
        picture = np.stack([xx / size, yy / size, 0.5 + 0.4 * np.sin((xx + i) / 5.0) * np.cos(yy / 7.0)], -1)
        picture = np.clip(picture + rng.normal(0, 0.05, picture.shape), 0, 1)
        paths.append(folder / f"{i:04d}.png")
        Image.fromarray((picture * 255).astype(np.uint8)).save(paths[-1])
    return paths


class Plain:
    label = "plain"

    def __init__(self, weights: Path, sources: list[Path], device: str, out: Path):
        self.weights, self.sources, self.device, self.out = weights, sources, device, out

    def once(self, r: int) -> float:
        import numpy as np
        import spandrel
        import torch
        from PIL import Image

        folder = self.out / f"plain-{r}"
        folder.mkdir()
        _sync(self.device)
        t0 = time.perf_counter()
        model = spandrel.ModelLoader(self.device).load_from_file(str(self.weights)).eval()
        for path in self.sources:
            x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255)
            y = model(x[None].to(self.device))[0].permute(1, 2, 0).cpu().numpy()
            Image.fromarray((y * 255).round().astype(np.uint8)).save(folder / path.name)
        _sync(self.device)
        rate = len(self.sources) / (time.perf_counter() - t0)
        shutil.rmtree(folder, ignore_errors=True)
        return rate


class Ours:
    def __init__(
        self, weights: Path, sources: list[Path], size: int, scale: int, out: Path, dtype: str, batch: str, tile: int
    ):
        from gallery.project import open_project

        self.label = "ours" if batch == "auto" else f"ours batch {batch}"
        self.project, self.sources = out / self.label.replace(" ", "-"), sources
        self.project.mkdir()
        prompts = self.project / "prompts.yaml"
        options = ", ".join(f"p{i}: picture {i}" for i in range(len(sources)))
        # render.model is never loaded: the sources are put in the cache as if rendered
        prompts.write_text(
            f"render: {{model: bench/not-loaded, width: {size}, height: {size}, samples: 1, dtype: {dtype}}}\n"
            f"axes: {{picture: {{{options}}}}}\n"
            f"upscale: {{upscaler: esrgan, model: {weights}, factor: {scale}, batch_size: {batch}, tile: {tile}}}\n",
            encoding="utf-8",
        )
        self.plan = open_project(prompts).plan
        self.config = self.plan.config
        self.used: dict = {}

    def once(self, r: int) -> float:
        from gallery.cache import Cache
        from gallery.upscale import stage

        cache = Cache(self.project / f"cache-{r}")
        for job, path in zip(self.plan.jobs, self.sources, strict=True):
            cache.put(job.key, path.read_bytes(), {"key": job.key, "recipe": job.recipe})
        entries = cache.whole_entries(job.key for job in self.plan.jobs)
        todo = stage.missing(self.plan, entries)
        _sync(self.config.runtime.device)
        t0 = time.perf_counter()
        rejected = stage.run(self.plan, cache, todo, entries)
        _sync(self.config.runtime.device)
        seconds = time.perf_counter() - t0
        if rejected or len(cache.whole_entries(u.key for u in todo)) != len(todo):
            raise SystemExit("ours: not every picture reached the cache")
        side = next(iter(cache.whole_entries(u.key for u in todo).values()))
        self.used = side["made"]
        shutil.rmtree(cache.root, ignore_errors=True)
        return len(todo) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=tuple(WORKLOADS), default="tiny")
    parser.add_argument("--size", type=int, default=None, help="the source pictures' side (default: the workload's)")
    parser.add_argument("--images", type=int, default=None, help="per side and repeat (default: CPU 4, GPU 64)")
    parser.add_argument("--repeats", type=int, default=None, help="default: 1 on CPU, 3 on GPU; the median is reported")
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"), help="ours' dtype"
    )
    parser.add_argument(
        "--batch",
        default="auto",
        help="ours' batch_size (tiles per call): auto or a number, or several (auto,8,16): one side each",
    )
    parser.add_argument("--tile", type=int, default=512, help="ours' tile (0: whole pictures)")
    args = parser.parse_args()
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, Path.cwd()), *sys.argv])

    import spandrel
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device == "cuda"
    scale, size = WORKLOADS[args.workload][0], args.size or WORKLOADS[args.workload][1]
    images, repeats = args.images or (64 if gpu else 4), args.repeats or (3 if gpu else 1)
    where = (
        torch.cuda.get_device_name(0)
        if gpu
        else f"CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )
    print(f"upscale speed: {where}; torch {torch.__version__}, spandrel {spandrel.__version__}")
    print(f"load average at start: {_load()}")
    work = Path(tempfile.mkdtemp(prefix="upscale-speed-"))
    try:
        weights = work / f"{args.workload}.safetensors"
        build(args.workload, weights)
        sources = pictures(work / "sources", images, size)
        print(f"== {args.workload}: {size}px -> {size * scale}px, {images} pictures, {repeats} repeat(s)")
        ours = [
            Ours(weights, sources, size, scale, work, args.dtype, batch, args.tile) for batch in args.batch.split(",")
        ]
        measured = side_by_side([Plain(weights, sources, device, work), *ours], repeats)
        plain = statistics.median(measured["plain"])
        print(f"  plain float32: {', '.join(f'{x:.3f}' for x in measured['plain'])} img/s")
        for side in ours:
            used = side.used
            print(
                f"  {side.label} {used['dtype']}: {', '.join(f'{x:.3f}' for x in measured[side.label])} img/s; "
                f"{used['tiles']} tile(s) per picture, up to {used['batch_size']} per call, {used['device']}"
            )
        print(f"load average at end: {_load()}")
        print("\n| workload | device | ours | ours dtype | pictures | plain img/s | ours img/s | ours/plain |")
        print("|---|---|---|---|---|---|---|---|")
        for side in ours:
            rate = statistics.median(measured[side.label])
            print(
                f"{args.workload} | {where} | {side.label} | {side.used['dtype']} | {images} x {size}px | "
                f"{plain:.3f} | {rate:.3f} | {rate / plain:.2f}x |"
            )
        print(f"\ncommand: {command}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
