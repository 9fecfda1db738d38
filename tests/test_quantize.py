"""Big models on small GPUs: render.quantize (a quantized denoiser) and cpu_offload: group, on the CPU
with the tiny Stable Diffusion model.

What "close" means here: the quantized model's image differs from the full one by at most 1% of what
separates two seeds of the full one (the scale of "another picture"), and by a PSNR of at least 40 dB,
yet it differs (the weights really were quantized). Measured on this tiny model at 3 steps: 0.06% of
a seed's difference and 77 dB in float32 (the test's dtype); 2.9% and 44 dB in bfloat16.
What cannot be tested without a GPU: nf4 itself (bitsandbytes needs CUDA; here only its refusal), the
memory a quantized or group-offloaded model saves, and group offloading's CUDA stream; the README
cites published figures for those.
"""

import importlib.metadata

import numpy as np
import pytest
from PIL import Image

from conftest import cell_of, write_prompts
from gallery import loading, quantize
from gallery.cli import main
from gallery.config import Picture, Runtime, load_config
from gallery.errors import SettingError
from gallery.metadata import a1111_parameters, encode_png, read_parameters
from gallery.project import open_project

pytest.importorskip("torchao", reason="render.quantize: int8 needs torchao: pip install -e '.[quantize]'")

CPU = loading.Target("cpu", "float32")
PROMPTS = ["a cat", "a dog"]


def runtime(cpu_offload: str = "none") -> Runtime:
    return Runtime(
        samples=2,
        seed=0,
        device="cpu",
        dtype="float32",
        batch_size=None,
        attention_slicing=False,
        vae_tiling=False,
        cpu_offload=cpu_offload,
    )


def picture(tiny_sd, quantize: str = "none") -> Picture:
    return Picture(
        model=str(tiny_sd),
        revision=None,
        pipeline="auto",
        scheduler="default",
        scheduler_options=(),
        steps=3,
        guidance=7.5,
        width=64,
        height=64,
        negative_prompt="",
        quantize=quantize,
    )


def images(pipe, seeds=(0, 1)) -> np.ndarray:
    import torch

    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    with torch.inference_mode():
        out = pipe(prompt=PROMPTS, generator=generators, num_inference_steps=3, height=64, width=64, output_type="np")
    return np.asarray(out.images)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def full(tiny_sd):
    return loading.load_pipeline(picture(tiny_sd), CPU, runtime())


def test_int8_quantizes_the_denoiser_and_its_image_is_close(tiny_sd, full):
    int8 = loading.load_pipeline(picture(tiny_sd, "int8"), CPU, runtime())
    linear = int8.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    assert type(linear.weight).__module__.startswith("torchao"), type(linear.weight)  # int8 weights, really
    assert type(full.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight).__module__ == (
        "torch.nn.parameter"
    )
    # CLIP is left whole (small, and diffusers' guides leave it so); so are the convolutions and the VAE
    assert all(type(p).__module__ == "torch.nn.parameter" for p in int8.text_encoder.parameters())
    assert type(int8.unet.conv_in.weight).__module__ == "torch.nn.parameter"
    assert int8._gallery_quantized == {"unet": "diffusers"}

    base, quantized, other_seeds = images(full), images(int8), images(full, seeds=(5, 6))
    step = float(np.abs(base - quantized).mean())
    another_picture = float(np.abs(base - other_seeds).mean())
    assert 0 < step <= 0.01 * another_picture, (step, another_picture)
    assert psnr(base, quantized) >= 40, psnr(base, quantized)


def test_which_parts_are_quantized():
    """From model_index.json: the denoiser and any text encoder but CLIP's (Flux: transformer and T5)."""
    flux = {
        "_class_name": "FluxPipeline",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    assert quantize.quantized_parts(flux) == {"text_encoder_2": "transformers", "transformer": "diffusers"}
    sd3 = {
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "text_encoder_3": ["transformers", "T5EncoderModel"],
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "image_encoder": [None, None],
    }
    assert quantize.quantized_parts(sd3) == {"text_encoder_3": "transformers", "transformer": "diffusers"}
    sana = {"text_encoder": ["transformers", "Gemma2Model"], "transformer": ["diffusers", "SanaTransformer2DModel"]}
    assert set(quantize.quantized_parts(sana)) == {"text_encoder", "transformer"}


def small_gallery(folder, tiny_sd, render: str = ""):
    """One axis compares the full model with its int8 form, on the same seeds."""
    return write_prompts(
        folder,
        f"""
        render:
          model: {tiny_sd}
          steps: 2
          width: 64
          height: 64
          samples: 2
          dtype: float32
          device: cpu
          {render}
        axes:
          weights:
            full: {{prompt: "", label: full weights}}
            int8: {{prompt: "", render: {{quantize: int8}}}}
          subject: {{cat: a cat}}
        """,
    )


def test_build_keys_records_and_says_the_quantization(tmp_path, tiny_sd, capsys):
    prompts = small_gallery(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    assert "render: 4 images" in capsys.readouterr().out
    project = open_project(prompts)
    full_job, int8_job = project.plan.cell(("full", "cat")).jobs[0], project.plan.cell(("int8", "cat")).jobs[0]

    # only set, the quantization is in the recipe: every key of a config without it stays as it was
    assert "quantize" not in full_job.recipe and int8_job.recipe["quantize"] == "int8"
    assert full_job.recipe == {k: v for k, v in int8_job.recipe.items() if k != "quantize"}
    assert int8_job.key != full_job.key
    side = project.cache.sidecar(int8_job.key)
    assert side["recipe"]["quantize"] == "int8"
    assert side["made"]["quantized"] == {
        "backend": "torchao int8 weight-only",
        "parts": ["unet"],
        "version": f"torchao {importlib.metadata.version('torchao')}",
    }
    assert "quantized" not in project.cache.sidecar(full_job.key)["made"]
    assert read_parameters(project.cache.png_path(int8_job.key).read_bytes()).endswith(
        "Size: 64x64, Model: tiny-sd, Diffusion in Low Bits: int8"
    )
    assert "Low Bits" not in read_parameters(project.cache.png_path(full_job.key).read_bytes())

    # the PNGs: close, as the floats are (see the module's docstring), after 8-bit rounding
    full_png, int8_png = (
        np.asarray(Image.open(project.cache.png_path(j.key)), dtype=np.float32) / 255 for j in (full_job, int8_job)
    )
    assert psnr(full_png, int8_png) >= 40

    site = project.config.site_dir  # the page's lightbox says it too, for that cell only
    assert cell_of(site, "prompt-gallery", "int8/cat")["settings"]["quantize"] == "int8"
    assert "quantize" not in cell_of(site, "prompt-gallery", "full/cat")["settings"]

    assert main(["build", "-c", str(prompts)]) == 0  # nothing left to render, nothing reloaded
    assert "all 4 images are cached" in capsys.readouterr().out


def test_nf4_on_a_cpu_is_refused_at_its_line_before_any_image(tmp_path, tiny_sd, capsys):
    prompts = small_gallery(tmp_path, tiny_sd)
    text = prompts.read_text().replace("quantize: int8", "quantize: nf4")
    prompts.write_text(text)
    assert main(["build", "-c", str(prompts)]) == 2
    err = capsys.readouterr().err
    line = 1 + text.splitlines().index(next(t for t in text.splitlines() if "nf4" in t))
    assert f"prompts.yaml:{line}: axes.weights.int8.render.quantize: quantize: nf4 (bitsandbytes) runs on CUDA" in err
    assert "hint: use quantize: int8 (torchao), which runs on the CPU too" in err
    assert "Traceback" not in err
    assert not list((tmp_path / ".gallery-cache").rglob("*.png"))  # the full model's cell was not rendered either


def test_a_single_file_model_is_not_quantized_but_refused(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"never read")
    picture_ = load_config(
        write_prompts(tmp_path, f"render: {{model: {weights}, quantize: int8}}\naxes: {{s: {{a: a}}}}\n")
    ).picture
    with pytest.raises(SettingError, match="needs a diffusers folder or hub model") as caught:
        loading.load_pipeline(picture_, CPU, runtime())
    assert caught.value.setting == "quantize"


def test_group_offload_on_a_cpu(tiny_sd, full):
    """On a CPU device, cpu_offload: group does nothing (as model and sequential): no hook is set. What
    can be tested here is the wiring, with the CPU as the onload device too: the hooks diffusers puts on
    every leaf layer of the text encoder and the denoiser, the VAE left whole, and the same pixels. Not
    the GPU memory it saves, nor the CUDA stream's prefetch."""

    def hooked(module) -> bool:
        registry = getattr(module, "_diffusers_hook", None)
        return registry is not None and any("group_offloading" in name for name in registry.hooks)

    on_cpu = loading.load_pipeline(picture(tiny_sd), CPU, runtime("group"))
    assert not any(hooked(m) for part in (on_cpu.unet, on_cpu.text_encoder) for m in part.modules())

    offloaded = loading.load_pipeline(picture(tiny_sd), CPU, runtime())
    loading.group_offload(offloaded, "cpu")
    for part in (offloaded.unet, offloaded.text_encoder):
        leaves = [m for m in part.modules() if not list(m.children()) and list(m.parameters(recurse=False))]
        assert leaves and all(hooked(m) for m in leaves), type(part).__name__
    assert not any(hooked(m) for m in offloaded.vae.modules())
    assert np.array_equal(images(offloaded), images(full))


def test_other_tools_read_the_quantization_back(tmp_path):
    """sd-parsers (PyPI), as other tools read AUTOMATIC1111's and Forge's PNGs."""
    sd_parsers = pytest.importorskip("sd_parsers")
    recipe = {
        "prompt": "a cat",
        "negative_prompt": "",
        "scheduler": "default",
        "guidance": 3.5,
        "steps": 20,
        "seed": 7,
        "width": 1024,
        "height": 1024,
        "quantize": "nf4",
    }
    path = tmp_path / "nf4.png"
    path.write_bytes(encode_png(Image.new("RGB", (8, 8)), a1111_parameters(recipe, "FLUX.1-dev", "Euler"), recipe))
    info = sd_parsers.ParserManager().parse(str(path))
    assert info is not None and info.metadata["Diffusion in Low Bits"] == "bnb-nf4"
    assert [(s.name, s.parameters["seed"]) for s in info.samplers] == [("Euler", "7")]
