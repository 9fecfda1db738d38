"""Every model family people render with (issue 14), each as a tiny random-weight pipeline of the
same architecture (tests/tiny_pipelines.py), built through `gallery build` as a user would.

Rendering: each family renders a 2-option axis at 2 samples, `gallery verify` passes, a second
build renders nothing, and each image is the same alone (batch_size 1) as in a batch (2).

Recipe truth (what the PNG, sidecar and key say took effect): tables of what each setting does on
each family, checked against the pipelines called directly (so they stay true when diffusers
changes), then the gallery's records checked against the tables; the third-party sd-parsers
package reads every family's PNG back.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import read_back, write_prompts
from gallery.cli import main
from gallery.config import load_config
from gallery.metadata import read_parameters

# family -> (the pipeline class its model_index.json names, the sampler its own scheduler is in A1111's words)
FAMILIES = {
    "sdxl": ("StableDiffusionXLPipeline", "Euler"),
    "sd3": ("StableDiffusion3Pipeline", "Euler"),  # flow-matching Euler
    "flux-dev": ("FluxPipeline", "Euler"),
    "flux-schnell": ("FluxPipeline", "Euler"),
    "pixart-sigma": ("PixArtSigmaPipeline", "DPM++ 2M"),
    "sana": ("SanaPipeline", "DPM++ 2M"),  # DPM-Solver++ on flow sigmas, as the hub's Sana models
    "lcm": ("LatentConsistencyModelPipeline", "LCM"),
    "sd-lcm": ("StableDiffusionPipeline", "LCM"),
    "hunyuan-dit": ("HunyuanDiTPipeline", "DDPM"),
    "qwenimage": ("QwenImagePipeline", "Euler"),
}


# family -> what the default guidance (7.5, no negative prompt) is read back as: (cfg_scale, Distilled CFG Scale)
GUIDANCE_READ_BACK = {
    "sdxl": ("7.5", None),
    "sd3": ("7.5", None),
    "flux-dev": (None, "7.5"),  # the guidance embedding, as Forge writes it
    "flux-schnell": (None, None),  # not used at all
    "pixart-sigma": ("7.5", None),
    "sana": ("7.5", None),
    "lcm": (None, "7.5"),  # the LCM's guidance embedding; never CFG
    "sd-lcm": ("7.5", None),
    "hunyuan-dit": ("7.5", None),
    "qwenimage": (None, None),  # true CFG needs a negative prompt; guidance_scale is ignored
}


def project(folder: Path, model: Path, render: str = "", samples: int = 2, two: bool = True) -> Path:
    options = "{oil: a cat oil painting, ink: a dog ink drawing}" if two else "{oil: a cat oil painting}"
    return write_prompts(
        folder,
        f"""
        page: {{title: Family, default: {{style: oil}}}}
        render: {{model: {model}, steps: 2, width: 64, height: 64, samples: {samples}, seed: 10,
                  dtype: float32{render}}}
        axes:
          style: {options}
        """,
    )


def sidecars(prompts: Path) -> dict[str, dict]:
    folder = load_config(prompts).cache_dir / "images"
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in folder.rglob("*.json")}


def pixels(prompts: Path) -> dict[str, np.ndarray]:
    folder = load_config(prompts).cache_dir / "images"
    return {p.stem: np.asarray(Image.open(p), dtype=int) for p in folder.rglob("*.png")}


def parameters(prompts: Path) -> list[str]:
    folder = load_config(prompts).cache_dir / "images"
    return [read_parameters(p.read_bytes()) or "" for p in sorted(folder.rglob("*.png"))]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_renders_verifies_caches_and_batches(family, tiny_family, tmp_path, capsys, record_property):
    started = time.perf_counter()
    model = tiny_family(family)
    record_property("model_build_s", round(time.perf_counter() - started, 2))  # 0 after the first test that uses it
    pipeline, sampler = FAMILIES[family]

    batched = project(tmp_path / "batched", model, ", batch_size: 2")
    started = time.perf_counter()
    assert main(["build", "-c", str(batched)]) == 0
    record_property("build_4_images_s", round(time.perf_counter() - started, 2))
    assert "render: 4 images" in capsys.readouterr().out
    made = sidecars(batched)
    assert len(made) == 4
    assert {s["made"]["pipeline"] for s in made.values()} == {pipeline}
    assert {s["made"]["batch_size"] for s in made.values()} == {2}
    for text in parameters(batched):  # the model's own scheduler, by the name AUTOMATIC1111 gives it
        assert f"Sampler: {sampler}," in text, text
    cfg, distilled = GUIDANCE_READ_BACK[family]
    for png in sorted((load_config(batched).cache_dir / "images").rglob("*.png")):  # as other tools read it
        read = read_back(png)
        assert (read["generator"], read["sampler"], read["steps"], read["Size"]) == (
            "AUTOMATIC1111",
            sampler,
            "2",
            "64x64",
        )
        assert read["seed"] in ("10", "11") and read["prompt"] in ("a cat oil painting", "a dog ink drawing")
        assert (read.get("cfg_scale"), read.get("Distilled CFG Scale"), read["negative_prompt"]) == (cfg, distilled, "")

    assert main(["verify", "-c", str(batched)]) == 0
    assert "verify: 4 good, 0 broken, 0 not rendered yet" in capsys.readouterr().out
    assert main(["build", "-c", str(batched)]) == 0
    assert "render: all 4 images are cached" in capsys.readouterr().out

    alone = project(tmp_path / "alone", model, ", batch_size: 1")
    started = time.perf_counter()
    assert main(["render", "-c", str(alone)]) == 0
    record_property("render_4_images_alone_s", round(time.perf_counter() - started, 2))
    one, two = pixels(alone), pixels(batched)
    assert one.keys() == two.keys()  # the batch size is not in the key
    for key in one:
        # Within 1 level of 255: a batch runs the same float32 arithmetic, but the BLAS kernels may
        # block a matrix of 2 rows differently from one of 1, so sums round differently in the last
        # bits; every image draws its own noise from its own CPU generator, so nothing else differs.
        assert np.abs(one[key] - two[key]).max() <= 1, (family, key)
    assert len({p.tobytes() for p in one.values()}) == 4  # and different seeds and prompts differ


# --- the size asked is the size rendered --------------------------------------------------------


@functools.cache
def loaded(model: Path):
    """The pipeline at `model`, loaded once per session for the tests that call it directly."""
    import diffusers

    pipe = diffusers.DiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def direct(model: Path, prompt: str, seed: int, guidance: float | None, **call) -> np.ndarray:
    """The picture the pipeline makes at 64x64, called as the gallery calls it, plus `call`."""
    import torch

    with torch.inference_mode():
        out = loaded(model)(
            prompt=[prompt],
            generator=[torch.Generator("cpu").manual_seed(seed)],
            num_inference_steps=2,
            guidance_scale=guidance,
            width=64,
            height=64,
            output_type="np",
            **call,
        )
    return (np.clip(out.images[0], 0.0, 1.0) * 255).round().astype(int)  # as gallery.batching makes the PNG


def unbinned(model: Path) -> dict:
    """use_resolution_binning=False where the pipeline has it: these tests need no 1024px pictures."""
    return {"use_resolution_binning": False} if "use_resolution_binning" in parameters_of(model) else {}


def parameters_of(model: Path) -> set[str]:
    return set(inspect.signature(type(loaded(model)).__call__).parameters)


@pytest.mark.parametrize("family", ["pixart-sigma", "sana", "hunyuan-dit"])
def test_the_size_asked_is_the_size_rendered_or_refused(family, tiny_family, tmp_path, capsys):
    """Families that bin sizes: either the gallery renders the size asked (the picture is the one the
    pipeline makes at 64x64 without binning), or it refuses the size before rendering (exit 2,
    naming the sizes the model supports)."""
    model = tiny_family(family)
    prompts = project(tmp_path, model, samples=1, two=False)
    code = main(["render", "-c", str(prompts)])
    if code == 2:  # refused: the message names sizes the model supports
        err = capsys.readouterr().err
        assert "64x64" in err and any(size in err for size in ("256x256", "512x512", "1024x1024")), err
        return
    assert code == 0
    (png,) = pixels(prompts).values()
    assert png.shape == (64, 64, 3)
    unbinned = direct(model, "a cat oil painting", 10, 7.5, use_resolution_binning=False)
    assert np.abs(png - unbinned).max() <= 1


# --- a negative prompt only where it changed the computation -----------------------------------

# family, guidance, whether the negative prompt takes effect there (diffusers 0.42.1)
NEGATIVE = [
    ("sdxl", 5.0, True),
    ("sdxl", 0.0, False),  # an SDXL-turbo setup: guidance_scale <= 1, no CFG
    ("sd3", 5.0, True),
    ("flux-dev", 3.5, False),  # a negative prompt needs true_cfg_scale > 1 (default 1.0)
    ("flux-schnell", 3.5, False),
    ("pixart-sigma", 4.5, True),
    ("sana", 4.5, True),
    ("lcm", 8.5, False),  # LatentConsistencyModelPipeline has no negative prompt at all
    ("sd-lcm", 1.0, False),  # guidance_scale <= 1: no CFG
    ("hunyuan-dit", 5.0, True),
    ("qwenimage", 4.0, True),  # a negative prompt switches true CFG on, at true_cfg_scale (default 4.0)
]


# family, and whether `guidance` changes its pictures (diffusers 0.42.1)
GUIDANCE = [
    ("flux-dev", True),  # the distilled guidance embedding
    ("flux-schnell", False),  # guidance_embeds=False: guidance_scale is not read
    ("qwenimage", False),  # not guidance-distilled: guidance_scale is ignored (a warning diffusers logs)
    ("lcm", True),  # the guidance embedding (w_embedding), no CFG
]


@pytest.mark.parametrize(
    ("family", "guidance", "effect"), [pytest.param(*n, id=f"{n[0]}-guidance{n[1]:g}") for n in NEGATIVE]
)
def test_the_negative_prompt_table_is_what_the_pipelines_do(family, guidance, effect, tiny_family):
    """The tables above, checked against the pipelines themselves (called directly, not through the
    gallery), so they stay true when diffusers changes."""
    model = tiny_family(family)
    if "negative_prompt" not in parameters_of(model):
        assert not effect
        return
    plain = direct(model, "a cat oil painting", 10, guidance, **unbinned(model))
    negative = direct(model, "a cat oil painting", 10, guidance, negative_prompt=["blurry"], **unbinned(model))
    assert (np.abs(plain - negative).max() > 1) == effect


@pytest.mark.parametrize(("family", "effect"), GUIDANCE)
def test_the_guidance_table_is_what_the_pipelines_do(family, effect, tiny_family):
    model = tiny_family(family)
    assert (np.abs(direct(model, "a cat", 10, 3.5) - direct(model, "a cat", 10, 5.0)).max() > 1) == effect


@pytest.mark.parametrize(
    ("family", "guidance", "effect"), [pytest.param(*n, id=f"{n[0]}-guidance{n[1]:g}") for n in NEGATIVE]
)
def test_negative_prompt_is_recorded_only_where_it_takes_effect(
    family, guidance, effect, tiny_family, tmp_path, capsys
):
    model = tiny_family(family)
    render = f", guidance: {guidance}, batch_size: 1"
    prompts = project(tmp_path / "blurry", model, render + ", negative_prompt: blurry", samples=1, two=False)
    assert main(["render", "-c", str(prompts)]) == 0
    (text,) = parameters(prompts)
    (side,) = sidecars(prompts).values()
    assert ("Negative prompt: blurry" in text) == effect, text
    assert (side["recipe"].get("negative_prompt") == "blurry") == effect, side["recipe"]
    capsys.readouterr()
    # another negative prompt: a new picture where it takes effect, none where it does not
    (tmp_path / "blurry" / "prompts.yaml").write_text(
        prompts.read_text(encoding="utf-8").replace("negative_prompt: blurry", "negative_prompt: ugly"),
        encoding="utf-8",
    )
    assert main(["render", "-c", str(prompts)]) == 0
    assert ("all 1 images are cached" in capsys.readouterr().out) != effect


# --- guidance: CFG only where CFG ran, a distilled one by its own name --------------------------


def test_flux_dev_guidance_is_written_as_distilled_cfg_scale(tiny_family, tmp_path):
    prompts = project(tmp_path, tiny_family("flux-dev"), ", guidance: 3.5", samples=1, two=False)
    assert main(["render", "-c", str(prompts)]) == 0
    (text,) = parameters(prompts)
    assert "Distilled CFG Scale: 3.5" in text and "CFG scale" not in text, text


@pytest.mark.parametrize("family", ["flux-schnell", "qwenimage"])
def test_guidance_that_has_no_effect_is_not_recorded_nor_keyed(family, tiny_family, tmp_path, capsys):
    prompts = project(tmp_path, tiny_family(family), ", guidance: 3.5", samples=1, two=False)
    assert main(["render", "-c", str(prompts)]) == 0
    (text,) = parameters(prompts)
    assert "CFG scale" not in text and "Distilled CFG Scale" not in text, text
    capsys.readouterr()
    prompts.write_text(prompts.read_text(encoding="utf-8").replace("guidance: 3.5", "guidance: 5"), encoding="utf-8")
    assert main(["render", "-c", str(prompts)]) == 0
    assert "all 1 images are cached" in capsys.readouterr().out


def test_flux_true_cfg_is_cfg_scale_beside_its_distilled_guidance(tiny_family, tmp_path):
    """Flux with call: {true_cfg_scale: 4} and a negative prompt runs true CFG: both are recorded,
    and other tools read both back."""
    prompts = project(
        tmp_path,
        tiny_family("flux-dev"),
        ", guidance: 3.5, negative_prompt: blurry, call: {true_cfg_scale: 4}",
        samples=1,
        two=False,
    )
    assert main(["render", "-c", str(prompts)]) == 0
    (png,) = sorted((load_config(prompts).cache_dir / "images").rglob("*.png"))
    read = read_back(png)
    assert (read["negative_prompt"], read["cfg_scale"], read["Distilled CFG Scale"]) == ("blurry", "4", "3.5")
    plain = direct(tiny_family("flux-dev"), "a cat oil painting", 10, 3.5)
    assert np.abs(np.asarray(Image.open(png), dtype=int) - plain).max() > 1  # true CFG changed the picture


def test_qwenimage_cfg_scale_written_is_the_one_that_ran(tiny_family, tmp_path):
    """Re-rendered from what its PNG says (CFG scale -> true CFG with the negative prompt), the
    picture comes out the same."""
    model = tiny_family("qwenimage")
    prompts = project(tmp_path, model, ", guidance: 2.5, negative_prompt: blurry", samples=1, two=False)
    assert main(["render", "-c", str(prompts)]) == 0
    (text,) = parameters(prompts)
    cfg = re.search(r"CFG scale: ([0-9.]+)", text)
    assert cfg, text
    (png,) = pixels(prompts).values()
    again = direct(model, "a cat oil painting", 10, None, negative_prompt=["blurry"], true_cfg_scale=float(cfg[1]))
    assert np.abs(png - again).max() <= 1
