"""LoRAs on an axis and a pipeline's own call arguments, with tiny random LoRAs made with peft.

A LoRA here is made as a trainer makes one: peft adds LoRA layers (random, not the usual zero
start, so the LoRA changes the picture) to the tiny model's denoiser, and diffusers saves them in
its LoRA format, the way `train_dreambooth_lora.py` and friends do.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cell_of, files_under, read_back, write_prompts
from gallery import loading
from gallery.cache import Cache
from gallery.cli import main
from gallery.config import load_config
from gallery.metadata import read_parameters
from gallery.project import open_project

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def make_lora(
    model: Path, path: Path, seed: int, *, denoiser: str = "unet", targets=UNET_TARGETS, text_encoder: bool = False
) -> Path:
    """A random rank-4 LoRA for `model`'s denoiser (and, with `text_encoder`, its CLIP text encoder's
    attention), saved as diffusers saves a trained one."""
    import diffusers
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    def config(modules):
        return LoraConfig(r=4, lora_alpha=4, target_modules=modules, init_lora_weights=False)

    index = json.loads((model / "model_index.json").read_text())
    pipeline_cls = getattr(diffusers, index["_class_name"])
    torch.manual_seed(seed)
    net = getattr(diffusers, index[denoiser][1]).from_pretrained(model / denoiser)
    net.add_adapter(config(targets))
    layers = {f"{denoiser}_lora_layers": get_peft_model_state_dict(net)}
    if text_encoder:  # through peft itself: transformers' add_adapter wants a newer peft than diffusers does
        encoder = getattr(transformers, index["text_encoder"][1]).from_pretrained(model / "text_encoder")
        layers["text_encoder_lora_layers"] = get_peft_model_state_dict(
            inject_adapter_in_model(config(["q_proj", "v_proj"]), encoder)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline_cls.save_lora_weights(path.parent, weight_name=path.name, safe_serialization=True, **layers)
    return path


@pytest.fixture(scope="module")
def styles(tiny_sd, tmp_path_factory) -> Path:
    """A folder with ink.safetensors and watercolor.safetensors, two LoRAs for the tiny SD (the
    second for its text encoder too)."""
    folder = tmp_path_factory.mktemp("styles")
    make_lora(tiny_sd, folder / "ink.safetensors", seed=1)
    make_lora(tiny_sd, folder / "watercolor.safetensors", seed=2, text_encoder=True)
    return folder


def project(folder: Path, model: Path, styles: Path, style_axis: str, extra_render: str = "") -> Path:
    if styles != folder / "styles":
        shutil.copytree(styles, folder / "styles", dirs_exist_ok=True)
    return write_prompts(
        folder,
        f"""
        page: {{title: Loras}}
        render:
          model: {model}
          steps: 2
          width: 64
          height: 64
          samples: 1
          seed: 5
          dtype: float32
          {extra_render}
        axes:
          subject: {{cat: a cat}}
          style:
{style_axis}
        """,
    )


AXIS = """
            none: {prompt: ink}
            ink: {prompt: ink, render: {loras: [{model: ./styles/ink.safetensors, scale: 0.8}]}}
            zero: {prompt: ink, render: {loras: [{model: ./styles/ink.safetensors, scale: 0}]}}
            both:
              prompt: ink
              render:
                loras:
                  - {model: ./styles/ink.safetensors, scale: 0.5}
                  - ./styles/watercolor.safetensors"""


def pixels(cache: Cache, jobs) -> list[np.ndarray]:
    out = []
    for job in jobs:
        with Image.open(cache.png_path(job.key)) as image:
            out.append(np.asarray(image.convert("RGB")))
    return out


def test_switching_loras_reloads_nothing_and_matches_fresh_loads(tmp_path, tiny_sd, styles, monkeypatch):
    """One renderer: ink at 0.8, no LoRA, ink again, two LoRAs (one with text-encoder weights), none
    again, ink at scale 0; each the same pixels as a renderer that loads the model fresh for that
    cell alone. One model load, one LoRA load per file; scale 0 is the model's own picture."""
    from gallery.render import Renderer

    proj = open_project(project(tmp_path, tiny_sd, styles, AXIS))
    plan, runtime = proj.plan, proj.config.runtime
    loads, lora_loads = [], []
    real_load = loading.load_pipeline

    def counting_load(*args, **kwargs):
        pipe = real_load(*args, **kwargs)
        loads.append(pipe)
        real_lora = pipe.load_lora_weights

        def counting_lora(path, **kw):
            lora_loads.append(Path(path).name)
            return real_lora(path, **kw)

        pipe.load_lora_weights = counting_lora
        return pipe

    monkeypatch.setattr(loading, "load_pipeline", counting_load)
    renderer = Renderer(runtime)
    seen = {}
    for step, style in enumerate(("ink", "none", "ink", "both", "none", "zero")):
        cache = Cache(tmp_path / f"one-renderer-{step}")
        jobs = plan.cell(("cat", style)).jobs
        assert renderer.render(jobs, cache).rendered == 1
        seen.setdefault(style, []).append(pixels(cache, jobs))
    assert len(loads) == 1, "switching LoRAs reloaded the model"
    assert sorted(lora_loads) == ["ink.safetensors", "watercolor.safetensors"]

    for style in ("ink", "none", "both"):
        cache = Cache(tmp_path / f"fresh-{style}")
        jobs = plan.cell(("cat", style)).jobs
        Renderer(runtime).render(jobs, cache)
        fresh = pixels(cache, jobs)
        for got in seen[style]:
            assert all(np.array_equal(a, b) for a, b in zip(got, fresh, strict=True)), style
    assert all(np.array_equal(a, b) for a, b in zip(seen["zero"][0], seen["none"][0], strict=True))
    for style in ("ink", "both"):
        assert not np.array_equal(seen[style][0][0], seen["none"][0][0]), f"LoRA {style} changed nothing"
    assert not np.array_equal(seen["ink"][0][0], seen["both"][0][0])


def addnet_hash(path: Path) -> str:
    """AUTOMATIC1111's LoRA hash, computed here independently: SHA-256 of what follows the header."""
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()[:12]


def test_build_records_loras_and_call_as_automatic1111_does(tmp_path, tiny_sd, styles):
    axis = """
            plain: {prompt: ink}
            ink: {prompt: ink, render: {loras: [{model: ./styles/ink.safetensors, scale: 0.8}]}}
            eta: {prompt: ink, render: {call: {eta: 1.0}}}"""
    prompts = project(tmp_path, tiny_sd, styles, axis, "call: {guidance_rescale: 0.0}")
    prompts.write_text(prompts.read_text() + "upscale: {upscaler: lanczos}\n")
    assert main(["build", "-c", str(prompts)]) == 0
    proj = open_project(prompts)
    plan, cache = proj.plan, proj.cache

    ink = plan.cell(("cat", "ink")).jobs[0]
    text = read_parameters(cache.png_path(ink.key).read_bytes())
    assert text.splitlines()[0] == "a cat ink <lora:ink:0.8>"
    settings = text.splitlines()[-1]
    assert settings.endswith(f', guidance_rescale: 0, Lora hashes: "ink: {addnet_hash(styles / "ink.safetensors")}"')
    sidecar = cache.sidecar(ink.key)
    assert sidecar["recipe"]["loras"] == [
        {"model": "sha256:" + hashlib.sha256((styles / "ink.safetensors").read_bytes()).hexdigest(), "scale": 0.8}
    ]
    assert sidecar["made"]["loras"] == [{"name": "ink", "scale": 0.8, "hash": addnet_hash(styles / "ink.safetensors")}]
    upscaled = read_parameters(cache.png_path(plan.upscales[ink.key].key).read_bytes())
    assert upscaled.startswith(text + ", Hires upscale: 2")  # the upscale stage says it the same way

    parsed = read_back(cache.png_path(ink.key))  # as other tools read it (sd-parsers)
    assert parsed["generator"] == "AUTOMATIC1111" and parsed["prompt"] == "a cat ink <lora:ink:0.8>"
    eta = plan.cell(("cat", "eta")).jobs[0]
    parsed = read_back(cache.png_path(eta.key))
    assert parsed["eta"] == "1" and parsed["guidance_rescale"] == "0" and parsed["seed"] == "5"

    plain = plan.cell(("cat", "plain")).jobs[0]
    assert "loras" not in plain.recipe and plain.recipe["call"] == {"guidance_rescale": 0.0}
    assert eta.recipe["call"] == {"eta": 1.0, "guidance_rescale": 0.0}  # the option's call changes render's
    # eta reaches DDIM: its noise at every step changes the picture
    assert not np.array_equal(pixels(cache, [eta]), pixels(cache, [plain]))

    site = load_config(prompts).site_dir
    lightbox = cell_of(site, "loras", "cat/ink")["settings"]
    assert lightbox["loras"] == [{"name": "ink", "scale": 0.8}]
    assert cell_of(site, "loras", "cat/eta")["settings"]["call"] == {"eta": 1.0, "guidance_rescale": 0.0}
    assert main(["verify", "-c", str(prompts)]) == 0


def test_key_follows_scale_and_content_not_the_file_name(tmp_path, tiny_sd, styles):
    def keys(prompts: Path) -> dict[str, str]:
        return {cell.keys[1]: cell.jobs[0].key for cell in open_project(prompts).plan.cells}

    axis = """
            none: {prompt: ink}
            ink: {prompt: ink, render: {loras: [{model: ./styles/ink.safetensors, scale: 0.8}]}}"""
    prompts = project(tmp_path, tiny_sd, styles, axis)
    before = keys(prompts)
    without = write_prompts(
        tmp_path / "without", prompts.read_text().split("\n  style:")[0] + "\n  style: {none: ink}\n"
    )
    assert keys(without)["none"] == before["none"]  # a file without LoRAs keeps its keys

    prompts.write_text(prompts.read_text().replace("scale: 0.8", "scale: 0.5"))
    assert keys(prompts)["ink"] != before["ink"]
    prompts.write_text(prompts.read_text().replace("scale: 0.5", "scale: 0.8"))
    assert keys(prompts) == before

    (tmp_path / "styles/ink.safetensors").rename(tmp_path / "styles/renamed.safetensors")
    prompts.write_text(prompts.read_text().replace("ink.safetensors", "renamed.safetensors"))
    assert keys(prompts) == before  # the same content under another name

    make_lora(tiny_sd, tmp_path / "styles/renamed.safetensors", seed=3)
    assert keys(prompts)["ink"] != before["ink"]
    assert keys(prompts)["none"] == before["none"]


def test_unknown_call_argument_stops_at_its_line(tmp_path, tiny_sd, styles, capsys):
    axis = """
            plain: {prompt: ink}
            odd:
              prompt: ink
              render:
                call: {etta: 1.0}"""
    prompts = project(tmp_path, tiny_sd, styles, axis, "call: {guidance_rescale: 0.5}")
    before = files_under(tmp_path)
    assert main(["build", "-c", str(prompts)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(prompts.read_text().splitlines(), 1) if "etta" in text)
    assert err.startswith(f"error: {prompts}:{line}: axes.style.odd.render.call.etta: ")
    assert "StableDiffusionPipeline takes no argument 'etta'" in err and "did you mean 'eta'?" in err
    assert "guidance_rescale" in err  # the names it takes are listed
    assert files_under(tmp_path) == before


def test_a_lora_for_another_model_stops_at_its_line(tmp_path, tiny_sd, styles, capsys):
    """A LoRA whose weights name parts this model does not have (made for another family)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(styles / "ink.safetensors"))
    other = {k.replace("unet.", "transformer.", 1): v for k, v in state.items()}
    save_file(other, str(tmp_path / "flux-style.safetensors"))
    axis = """
            plain: {prompt: ink}
            flux:
              prompt: ink
              render:
                loras:
                  - {model: ./styles/ink.safetensors, scale: 0.5}
                  - {model: ./flux-style.safetensors}"""
    prompts = project(tmp_path, tiny_sd, styles, axis)
    before = files_under(tmp_path)
    assert main(["build", "-c", str(prompts)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(prompts.read_text().splitlines(), 1) if "flux-style" in text)
    assert err.startswith(f"error: {prompts}:{line}: axes.style.flux.render.loras[1]: "), err
    assert "flux-style.safetensors" in err and "fits none of StableDiffusionPipeline's parts" in err
    assert "Traceback" not in err
    assert files_under(tmp_path) == before

    # the same names, other shapes (a LoRA of a wider model of the family): the loader's refusal, once
    save_file({k: v.repeat(1, 2) if "lora_A" in k else v for k, v in state.items()}, str(tmp_path / "wide.safetensors"))
    prompts.write_text(prompts.read_text().replace("flux-style", "wide"))
    before = files_under(tmp_path)
    assert main(["build", "-c", str(prompts)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: {prompts}:{line}: axes.style.flux.render.loras[1]: "), err
    assert "cannot apply LoRA" in err and "size mismatch" in err and len(err.splitlines()) == 2
    assert out == "" and files_under(tmp_path) == before


# Other families: the tiny SDXL and Flux of tests/tiny_pipelines.py (see tests/test_families.py).
FAMILIES = {"sdxl": ("build_tiny_sdxl", "unet"), "flux": ("build_tiny_flux", "transformer")}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_lora_on_other_families(family, tmp_path, capsys):
    """A LoRA changes an SDXL UNet's and a Flux transformer's pictures; the cell after it, without
    it, is the model's own picture (as a fresh load renders it); the PNG names the LoRA."""
    import tiny_pipelines
    from gallery.render import Renderer

    builder, denoiser = FAMILIES[family]
    if not hasattr(tiny_pipelines, builder):
        pytest.skip(f"tests/tiny_pipelines.py has no {builder} yet")
    model = getattr(tiny_pipelines, builder)(tmp_path / "models" / family)
    make_lora(model, tmp_path / "styles/ink.safetensors", seed=1, denoiser=denoiser)
    axis = """
            ink: {prompt: ink, render: {loras: [{model: ./styles/ink.safetensors, scale: 0.8}]}}
            none: {prompt: ink}"""
    prompts = project(tmp_path, model, tmp_path / "styles", axis)
    assert main(["render", "-c", str(prompts)]) == 0
    proj = open_project(prompts)
    ink, none = (proj.plan.cell(("cat", style)).jobs for style in ("ink", "none"))
    assert not np.array_equal(pixels(proj.cache, ink)[0], pixels(proj.cache, none)[0])
    fresh = Cache(tmp_path / "fresh")
    Renderer(proj.config.runtime).render(none, fresh)
    assert np.array_equal(pixels(fresh, none)[0], pixels(proj.cache, none)[0])
    assert "a cat ink <lora:ink:0.8>\n" in read_parameters(proj.cache.png_path(ink[0].key).read_bytes())


def test_the_schema_takes_what_the_reader_takes(tmp_path):
    from test_settings import schema_errors

    text = """
    axes:
      subject: {cat: a cat}
      style:
        ink:
          prompt: ink
          render:
            call: {eta: null, sigmas: [1.0, 0.5, 0.0], use_resolution_binning: false}
            loras: []
    render:
      call: {true_cfg_scale: 4, max_sequence_length: 512, eta: 0.5}
      loras:
        - owner/styles/ink.safetensors
        - {model: owner/styles/wash.SAFETENSORS, scale: -2.5, revision: v1}
    """
    config = load_config(write_prompts(tmp_path, text))
    ink = dict(config.axes[1].options[0].overrides)
    assert ink["call"] == (
        ("max_sequence_length", 512),
        ("sigmas", (1.0, 0.5, 0.0)),
        ("true_cfg_scale", 4),
        ("use_resolution_binning", False),
    )  # render's, changed key by key; eta dropped
    assert ink["loras"] == ()
    assert [(lora.name, lora.scale, lora.revision) for lora in config.picture.loras] == [
        ("ink", 1.0, None),
        ("wash", -2.5, "v1"),
    ]
    assert schema_errors((tmp_path / "prompts.yaml").read_text()) == []
    from gallery.fingerprint import Memo
    from gallery.project import plan_of

    job = plan_of(config, Memo(tmp_path)).cell(("cat", "ink")).jobs[0]
    assert "loras" not in job.recipe  # [] in an option: none, and no field
    job = plan_of(replace(config, axes=config.axes[:1]), Memo(tmp_path)).jobs[0]
    assert job.recipe["loras"] == [
        {"model": "hub:owner/styles/ink.safetensors@main", "scale": 1.0},
        {"model": "hub:owner/styles/wash.SAFETENSORS@v1", "scale": -2.5},
    ]


def test_fused_projections_step_aside_for_loras(tmp_path, tiny_sd, styles, capsys):
    """fuse_qkv: on fuses the denoiser's attention projections, which a LoRA does not act on: the
    model unfuses before its first LoRA picture (and says so), and every picture, with LoRAs or
    without, is the picture made without fusing (within one 8-bit level)."""
    fused = project(tmp_path / "fused", tiny_sd, styles, AXIS, "fuse_qkv: on")
    plain = project(tmp_path / "plain", tiny_sd, styles, AXIS, "fuse_qkv: off")
    assert main(["render", "-c", str(fused)]) == 0 and main(["render", "-c", str(plain)]) == 0
    assert "fuse_qkv is off from here" in capsys.readouterr().err
    a, b = open_project(fused), open_project(plain)
    assert [j.key for j in a.plan.jobs] == [j.key for j in b.plan.jobs]
    for x, y in zip(pixels(a.cache, a.plan.jobs), pixels(b.cache, b.plan.jobs), strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
