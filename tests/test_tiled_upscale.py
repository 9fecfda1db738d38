"""upscaler: esrgan: ESRGAN-family weights files (tiny random Real-ESRGAN-style networks built in
code and saved as .pth and .safetensors), loaded by spandrel, run in blended tiles, cached."""

import itertools
import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import cell_of, files_under, needs_spandrel, small_gpu, write_prompts
from gallery.cache import Cache
from gallery.cli import main
from gallery.config import load_config
from gallery.metadata import read_parameters
from gallery.upscale.tiled import TiledUpscaler, blend_weights, tile_boxes, tile_spans
from test_build import small_project
from test_upscale import mtimes, sidecars, with_upscale
from tiny_pipelines import tiny_rrdbnet


def network_output(scale: int, picture: np.ndarray) -> np.ndarray:
    """The test's own network (not the loader under test) on a uint8 (h, w, 3) picture: float (H, W, 3)."""
    x = torch.from_numpy(picture.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    with torch.no_grad():
        return tiny_rrdbnet(scale)(x).clamp(0, 1)[0].numpy().transpose(1, 2, 0)


@needs_spandrel()
def test_esrgan_upscales_like_its_network_cached_and_other_weights_rerun_only_this_stage(
    tmp_path, tiny_sd, tiny_esrgan, capsys
):
    x2 = tiny_esrgan / "x2.pth"
    prompts = with_upscale(small_project(tmp_path, tiny_sd), f"upscale: {{upscaler: esrgan, model: {x2}}}\n")
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "render: 8 images" in out and "upscale: 8 images (ESRGAN (x2.pth) 2x)" in out
    config = load_config(prompts)
    cache = Cache(config.cache_dir)
    upscaled = sidecars(prompts, upscaled=True)
    assert len(upscaled) == 8
    for key, side in upscaled.items():
        assert side["recipe"]["model"].startswith("sha256:") and "seed" not in side["recipe"]  # no noise drawn
        assert (side["recipe"]["tile"], side["recipe"]["tile_overlap"]) == (0, 0)  # 64px fits in one 512px tile
        assert side["made"]["architecture"] == "ESRGAN" and side["made"]["model_scale"] == 2
        source = np.asarray(Image.open(cache.png_path(side["source"])).convert("RGB"))
        picture = np.asarray(Image.open(cache.png_path(key)), dtype=np.float32) / 255
        assert picture.shape == (128, 128, 3)
        assert np.abs(picture - network_output(2, source)).max() <= 1 / 255 + 1e-6  # the network, 8-bit rounded
    assert read_parameters(cache.png_path(key).read_bytes()).endswith(
        "Hires upscale: 2, Hires upscaler: ESRGAN (x2.pth) 2x"
    )
    cell = cell_of(config.site_dir, "tiny-test", "dog/ink")
    assert cell["full_size"] == [128, 128] and cell["settings"]["upscaler"] == "ESRGAN (x2.pth) 2x"

    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "all 8 images are cached" in out and "upscale:" not in out

    # a 4x network in a .safetensors file: only the upscale stage runs again; its 4x comes down to the 2x asked
    renders = mtimes(prompts, sidecars(prompts, upscaled=False))
    prompts.write_text(prompts.read_text().replace("x2.pth", "x4.safetensors"))
    assert main(["build", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert "all 8 images are cached" in out and "upscale: 8 images (ESRGAN (x4.safetensors) 2x)" in out
    assert mtimes(prompts, renders) == renders
    new = {k: s for k, s in sidecars(prompts, upscaled=True).items() if k not in upscaled}
    assert len(new) == 8 and all(s["made"]["model_scale"] == 4 and s["png"]["width"] == 128 for s in new.values())


# -- tiles ---------------------------------------------------------------------------------------------


def structured_picture(width: int, height: int) -> np.ndarray:
    """Gradients, waves and a little noise: a picture whose upscale differs from place to place."""
    yy, xx = np.mgrid[0:height, 0:width]
    picture = np.stack([xx / width, yy / height, 0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], -1)
    picture += np.random.default_rng(0).normal(0, 0.05, picture.shape)
    return (np.clip(picture, 0, 1) * 255).astype(np.uint8)


def upscaled(tmp_path, weights, picture: np.ndarray, tile: int, overlap: int, batch_size: int = 4) -> np.ndarray:
    """`picture` through the esrgan upscaler that prompts.yaml's settings make, as floats."""
    prompts = write_prompts(
        tmp_path / f"t{tile}-{overlap}-{batch_size}",
        f"""
        render: {{device: cpu, dtype: float32}}
        axes: {{s: {{a: a}}}}
        upscale: {{upscaler: esrgan, model: {weights}, tile: {tile}, tile_overlap: {overlap}, batch_size: {batch_size}}}
    """,
    )
    config = load_config(prompts)
    upscaler = TiledUpscaler(config.upscale, config.runtime)
    height, width = picture.shape[:2]
    [(item, array, _, tiles, _)] = upscaler.upscale_pictures(["only"], lambda item: picture, width, height)
    assert item == "only" and tiles == len(tile_boxes(width, height, tile, overlap))
    return array


@needs_spandrel()
@pytest.mark.parametrize("name, scale", [("x2.pth", 2), ("x4.safetensors", 4)])
def test_tiles_blend_without_seams(tmp_path, tiny_esrgan, name, scale):
    picture = structured_picture(76, 100)  # neither side a multiple of the tile
    whole = upscaled(tmp_path, tiny_esrgan / name, picture, tile=0, overlap=0)
    assert whole.shape == (100 * scale, 76 * scale, 3)
    assert np.abs(whole - network_output(scale, picture)).max() < 1e-5  # untiled: exactly the network

    tiled = upscaled(tmp_path, tiny_esrgan / name, picture, tile=40, overlap=16)  # 3 x 2 tiles
    error = np.abs(tiled - whole) * 255
    assert error.max() <= 3 and error.mean() <= 0.25, (error.max(), error.mean())
    one_at_a_time = upscaled(tmp_path, tiny_esrgan / name, picture, tile=40, overlap=16, batch_size=1)
    assert np.abs(one_at_a_time - tiled).max() < 1e-5  # tiles from one call or many: the same picture

    # the control: tiles that do not overlap leave seams, and the check above sees them
    seams = upscaled(tmp_path, tiny_esrgan / name, picture, tile=40, overlap=0)
    assert (np.abs(seams - whole) * 255).max() > 10


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 3000), tile=st.integers(32, 1024), data=st.data())
def test_tile_spans_cover_a_side_with_equal_overlapping_tiles(length, tile, data):
    overlap = data.draw(st.integers(0, (tile - 1) // 2))
    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(end - start == min(tile, length) for start, end in spans)
    for (start0, end0), (start1, _) in itertools.pairwise(spans):
        assert start0 < start1 and end0 - start1 >= overlap  # no gap; neighbours share at least the overlap


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 200),
    height=st.integers(1, 200),
    tile=st.integers(32, 96),
    scale=st.sampled_from([2, 4]),
    data=st.data(),
)
def test_blend_weights_are_a_partition_of_one(width, height, tile, scale, data):
    overlap = data.draw(st.integers(0, (tile - 1) // 2))
    boxes = tile_boxes(width, height, tile, overlap)
    total = np.zeros((height * scale, width * scale))
    for (x0, y0, x1, y1), weights in zip(boxes, blend_weights(boxes, width, height, scale, overlap), strict=True):
        assert weights.shape == ((y1 - y0) * scale, (x1 - x0) * scale) and weights.min() >= 0
        total[y0 * scale : y1 * scale, x0 * scale : x1 * scale] += weights
    assert np.allclose(total, 1.0, atol=1e-5)


@needs_spandrel()
def test_out_of_memory_halves_the_tiles_per_call(tmp_path, tiny_sd, tiny_esrgan, monkeypatch, capsys):
    sizes = small_gpu(monkeypatch, "load_sr_model", 0)  # the network's call takes the tiles first
    x4 = tiny_esrgan / "x4.safetensors"
    prompts = with_upscale(
        small_project(tmp_path, tiny_sd),
        f"upscale: {{upscaler: esrgan, model: {x4}, tile: 32, tile_overlap: 8, batch_size: 8}}\n",
    )
    assert main(["build", "-c", str(prompts)]) == 0
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2
    assert "upscale batch size (tiles) halved to 2" in capsys.readouterr().err
    upscaled_ = sidecars(prompts, upscaled=True)
    assert len(upscaled_) == 8 and all(s["made"]["tiles"] == 9 for s in upscaled_.values())  # 64px in 3 x 3 tiles


# -- mistakes ------------------------------------------------------------------------------------------


class RunsCode:
    """Unpickled, this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def bad_weights(folder, tiny_esrgan) -> dict[str, tuple[str, str]]:
    """name -> (model: value, what the message must say)."""
    folder.mkdir()
    marker = folder / "code-ran"
    torch.save(
        {"params_ema": torch.load(tiny_esrgan / "x2.pth")["params_ema"], "hook": RunsCode(marker)}, folder / "code.pth"
    )
    (folder / "garbage.pth").write_bytes(b"<html>404 Not Found</html>")
    (folder / "truncated.pth").write_bytes((tiny_esrgan / "x2.pth").read_bytes()[:5000])
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(4, 4)}, str(folder / "other.safetensors"))
    return {
        "code": (
            f"{folder}/code.pth",
            "torch's weights-only reader refused it (Trying to load unsupported GLOBAL posix.system",
        ),
        "garbage": (f"{folder}/garbage.pth", "torch's weights-only reader refused it"),
        "truncated": (f"{folder}/truncated.pth", "is not a readable weights file"),
        "other": (f"{folder}/other.safetensors", "does not recognise this network"),
        "restoration": (
            f"{tiny_esrgan}/x1.pth",
            "is a model for Restoration (ESRGAN, 1x), not a super-resolution model",
        ),
        "hub": (
            "ai-forever/Real-ESRGAN/RealESRGAN_x2.pth",
            "hf download ai-forever/Real-ESRGAN RealESRGAN_x2.pth` on a machine that has it and copy the cache "
            "(HF_HOME), or set upscale.model to a local .pth or .safetensors file",
        ),
    }


@needs_spandrel()
def test_weights_that_cannot_be_used_stop_the_build_before_rendering(
    tmp_path, tiny_sd, tiny_esrgan, capsys, monkeypatch
):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    cases = bad_weights(tmp_path / "weights", tiny_esrgan)
    for name, (model, needle) in cases.items():
        project = tmp_path / name
        prompts = with_upscale(small_project(project, tiny_sd), f"upscale: {{upscaler: esrgan, model: {model}}}\n")
        before = files_under(project)
        assert main(["build", "-c", str(prompts)]) == 1, name
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert files_under(project) == before  # nothing rendered
    assert not (tmp_path / "weights" / "code-ran").exists()  # and the pickle's code never ran


def test_without_spandrel_one_message_says_how_to_install_it(tmp_path, tiny_sd, tiny_esrgan, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel -> ImportError
    x2 = tiny_esrgan / "x2.pth"
    prompts = with_upscale(small_project(tmp_path, tiny_sd), f"upscale: {{upscaler: esrgan, model: {x2}}}\n")
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err.strip()
    assert "upscaler 'esrgan' needs spandrel" in err and "pip install 'prompt-gallery[esrgan]'" in err
    assert len(err.splitlines()) == 1


def test_esrgan_settings_and_defaults(tmp_path, tiny_esrgan):
    u = load_config(write_prompts(tmp_path, "axes: {s: {a: a}}\nupscale: {upscaler: esrgan}\n")).upscale
    assert (u.model, u.factor, u.tile, u.tile_overlap, u.batch_size, u.steps) == (
        "ai-forever/Real-ESRGAN/RealESRGAN_x2.pth",
        2,
        512,
        32,
        None,
        None,
    )
    assert u.label == "ESRGAN 2x"
    u = load_config(
        write_prompts(
            tmp_path,
            f"axes: {{s: {{a: a}}}}\nupscale: {{upscaler: esrgan, model: "
            f"{tiny_esrgan}/x4.safetensors, size: 300, tile: 0}}\n",
        )
    ).upscale
    assert (u.model, u.size, u.tile) == (f"{tiny_esrgan}/x4.safetensors", 300, 0)
    assert u.label == "ESRGAN (x4.safetensors) to 300px"
