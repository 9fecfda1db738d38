"""The accelerations (render.compile, render.channels_last, render.fuse_qkv) on the CPU with the tiny
Stable Diffusion model: each one's image is the image without it, within rounding, and none of them
is in the cache key. Their speed is measured on a GPU (benchmarks/gpu.sh, BENCHMARKS.md), never here.

Tolerance, on the cached 8-bit PNGs: each value within one 8-bit level of the image without the
setting, and at most 1% of values differ at all. In float32 a fused projection sums the same products
in another order, and compiled kernels fuse and reorder arithmetic: differences of about 1e-6, which
move a value across a rounding boundary now and then (a level). Another seed changes tenths.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_prompts
from gallery import speedups
from gallery.cli import main
from gallery.config import load_config
from gallery.project import open_project
from gallery.render import cuda_batch_size

LEVEL = 1 / 255


def prompts(folder, tiny_sd, extra: str = "", batch: int = 2):
    return write_prompts(
        folder,
        f"render: {{model: {tiny_sd}, steps: 3, width: 64, height: 64, samples: 3, batch_size: {batch}, "
        f"device: cpu, dtype: float32{extra}}}\n"
        "axes:\n  subject: {cat: a cat}\n",
    )


def rendered(folder, tiny_sd, extra: str = "", batch: int = 2) -> tuple[list[str], list[np.ndarray], list[dict]]:
    """The keys, pixels (0..1 floats, from the cached PNGs) and sidecars of a fresh render."""
    path = prompts(folder, tiny_sd, extra, batch)
    assert main(["render", "-c", str(path)]) == 0
    project = open_project(path)
    keys = [job.key for job in project.plan.jobs]
    pixels, sidecars = [], []
    for key in keys:
        pixels.append(np.asarray(Image.open(project.cache.png_path(key)), dtype=np.float64) / 255)
        sidecars.append(json.loads(project.cache.sidecar_path(key).read_text(encoding="utf-8")))
    return keys, pixels, sidecars


@pytest.fixture(scope="module")
def plain(tiny_sd, tmp_path_factory):
    return rendered(tmp_path_factory.mktemp("plain"), tiny_sd, ", compile: off, channels_last: off, fuse_qkv: off")


@pytest.mark.parametrize(
    ("setting", "label"),
    [("channels_last: on", "channels_last"), ("fuse_qkv: on", "fuse_qkv"), ("compile: all", "compile all")],
)
def test_each_speedup_gives_the_same_image_and_the_same_key(plain, tiny_sd, tmp_path, setting, label):
    keys, pixels, sidecars = rendered(tmp_path, tiny_sd, ", " + setting)
    plain_keys, plain_pixels, plain_sidecars = plain
    assert keys == plain_keys  # not part of the cache key
    for ours, theirs in zip(pixels, plain_pixels, strict=True):
        difference = np.abs(ours - theirs)
        assert difference.max() <= LEVEL + 1e-9
        assert np.count_nonzero(difference) <= 0.01 * difference.size
    assert all(label in s["made"]["speedups"] for s in sidecars)  # what made it is said beside the recipe
    assert all("speedups" not in s["made"] for s in plain_sidecars)
    # different images per sample: the comparison is not between blanks
    assert np.abs(pixels[0] - pixels[1]).max() > 0.05


def test_compile_auto_compiles_mid_render_once_it_pays(tiny_sd, tmp_path, monkeypatch, plain):
    """On a CUDA GPU `compile: auto` compiles once a batch shows the images left repay it. Here (a CPU,
    where auto is off) the GPU's resolution is forced and compiling made to pay at once: the first
    batch is made uncompiled, the next ones compiled, and every image is the image without it."""
    monkeypatch.setattr(speedups, "resolve", lambda runtime, device: speedups.Speedups("auto", "auto", "auto"))
    monkeypatch.setattr(speedups, "COMPILE_SECONDS", 0.0)
    keys, pixels, sidecars = rendered(tmp_path, tiny_sd, batch=1)
    plain_keys, plain_pixels, _ = plain
    assert keys == plain_keys
    for ours, theirs in zip(pixels, plain_pixels, strict=True):
        difference = np.abs(ours - theirs)
        assert difference.max() <= LEVEL + 1e-9 and np.count_nonzero(difference) <= 0.01 * difference.size
    made = [s["made"].get("speedups", []) for s in sidecars]
    # a group's first call is never the estimate; the second decides; the third is compiled
    assert made[0] == [] and made[1] == [] and made[2] == ["compile denoiser", "channels_last", "fuse_qkv"]


def test_auto_is_off_on_a_cpu_and_follows_compile_on_a_gpu():
    runtime = load_config_text("compile: auto")
    assert speedups.resolve(runtime, "cpu") == speedups.Speedups("off", "off", "off")
    assert speedups.resolve(runtime, "cuda") == speedups.Speedups("auto", "auto", "auto")
    assert speedups.resolve(load_config_text("compile: denoiser"), "cuda:1") == speedups.Speedups(
        "denoiser", "on", "on"
    )
    assert speedups.resolve(load_config_text("compile: true, fuse_qkv: false"), "cpu") == speedups.Speedups(
        "all", "on", "off"
    )
    assert speedups.resolve(load_config_text("compile: false, channels_last: true"), "cuda") == speedups.Speedups(
        "off", "on", "off"
    )
    # compiling pays where a quarter of the time left is more than the compile
    assert not speedups.compile_pays(speedups.COMPILE_SECONDS * 3)
    assert speedups.compile_pays(speedups.COMPILE_SECONDS * 5)


def test_the_gpu_batch_follows_the_measured_best_and_the_memory():
    h200 = 139.8
    assert [cuda_batch_size(side * side, h200) for side in (256, 512, 1024)] == [128, 32, 8]
    assert [cuda_batch_size(side * side, 24) for side in (256, 512, 1024)] == [16, 4, 1]
    assert cuda_batch_size(2048 * 2048, 8) == 1


def load_config_text(render: str):
    folder = Path(tempfile.mkdtemp())
    (folder / "prompts.yaml").write_text(f"render: {{model: a/b, {render}}}\naxes: {{a: {{b: c}}}}\n")
    return load_config(folder / "prompts.yaml").runtime
