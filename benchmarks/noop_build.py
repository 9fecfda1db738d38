"""Nothing to do: how long a build takes when every image is cached, and the site stage at scale.

    .venv/bin/python benchmarks/noop_build.py [--config prompts.yaml] [--big 10000] [--runs 5]

The cache is filled without any model (small stand-in PNGs under the plan's real keys), the
site is built once, then `gallery build` and `gallery plan` run again in fresh processes: their
wall time (median of --runs) and whether torch or diffusers got imported. The same is done for
a generated matrix of about --big images to see how the site stage scales (first build, which
converts every image, and a second build with nothing to do).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gallery.metadata import a1111_parameters, encode_png  # noqa: E402
from gallery.project import open_project  # noqa: E402

PROBE = (
    "import sys, time; t = time.perf_counter(); from gallery.cli import main; rc = main(sys.argv[1:]); "
    "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules); "
    "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)"
)


def project(folder: Path, config_text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prompts.yaml"
    path.write_text(config_text, encoding="utf-8")
    return path


def fill_cache(prompts: Path) -> int:
    """Stand-in entries for every job: a small gradient PNG with the real recipe and sidecar."""
    project = open_project(prompts)
    plan, cache = project.plan, project.cache
    w, h = project.config.picture.width, project.config.picture.height
    for n, job in enumerate(plan.jobs):
        image = Image.new("RGB", (w, h), ((n * 37) % 256, (n * 91) % 256, (n * 13) % 256))
        png = encode_png(image, a1111_parameters(job.recipe, job.picture.model_name), job.recipe)
        cache.put(
            job.key,
            png,
            {
                "key": job.key,
                "cell": list(job.cell),
                "sample": job.sample,
                "recipe": job.recipe,
                "made": {"device": "none", "note": "benchmark stand-in"},
                "png": {"width": w, "height": h},
            },
        )
    return len(plan.jobs)


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    heavy = next(line for line in result.stderr.splitlines() if line.startswith("HEAVY"))
    return seconds, heavy


def big_config(images: int) -> str:
    """About `images` images: 25 x N options x 16 samples."""
    styles = max(1, round(images / (25 * 16)))
    subjects = "\n".join(f"      s{i}: subject {i}" for i in range(25))
    style_lines = "\n".join(f"      t{i}: style {i}" for i in range(styles))
    return (
        f"page: {{slug: big}}\nrender: {{samples: 16, width: 256, height: 256}}\n"
        f"axes:\n  subject:\n    options:\n{subjects}\n  style:\n    options:\n{style_lines}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "prompts.yaml"))
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="noop-build-"))
    try:
        text = Path(args.config).read_text(encoding="utf-8")
        prompts = project(
            work / "example", text + "\npaths: {cache: .gallery-cache, site: site}\n" if "paths:" not in text else text
        )
        t0 = time.perf_counter()
        count = fill_cache(prompts)
        print(f"example: {count} images; cache filled in {time.perf_counter() - t0:.1f}s")
        first, _ = timed(["build", "-c", str(prompts)], prompts.parent)
        print(f"  first build (site stage converts {count} images): {first:.2f}s")
        for command in (["build"], ["plan"], ["site"]):
            runs = [timed(command + ["-c", str(prompts)], prompts.parent) for _ in range(args.runs)]
            median = statistics.median(s for s, _ in runs)
            print(
                f"  gallery {command[0]:<5} with everything cached: median {median:.3f}s of {args.runs} "
                f"(min {min(s for s, _ in runs):.3f}s); imports {runs[0][1].removeprefix('HEAVY ')}"
            )
        if args.big:
            big = project(work / "big", big_config(args.big))
            t0 = time.perf_counter()
            count = fill_cache(big)
            print(f"big matrix: {count} images; cache filled in {time.perf_counter() - t0:.1f}s")
            first, _ = timed(["site", "-c", str(big)], big.parent)
            again = statistics.median(timed(["site", "-c", str(big)], big.parent)[0] for _ in range(3))
            build = statistics.median(timed(["build", "-c", str(big)], big.parent)[0] for _ in range(3))
            print(
                f"  site stage, first (converts all): {first:.1f}s ({count / first:.0f} img/s on {os.cpu_count()} "
                f"cores); again, nothing to do: median {again:.3f}s; whole build, nothing to do: {build:.3f}s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
