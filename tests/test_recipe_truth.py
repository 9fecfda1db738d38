"""Recipe truth: what an image's key, PNG and page record is what took effect on its model, and a
setting that took none re-renders nothing (gallery.families, gallery.modelinfo)."""

import json
from pathlib import Path

import pytest

from conftest import cell_of, read_back, write_prompts
from gallery.cli import main
from gallery.families import FAMILIES, ModelFacts, effect
from gallery.metadata import a1111_parameters, read_parameters
from gallery.modelinfo import facts_of, safetensors_keys, single_file_pipeline
from gallery.project import open_project

SD = ModelFacts("StableDiffusionPipeline")


@pytest.mark.parametrize(
    ("facts", "guidance", "negative", "call", "want"),
    [
        # classifier-free guidance where guidance > 1, and the negative prompt only with it
        (SD, 7.5, "blurry", {}, (7.5, None, True, True)),
        (SD, 1.0, "blurry", {}, (None, None, False, False)),
        (ModelFacts("StableDiffusionXLPipeline"), 0.0, "blurry", {}, (None, None, False, False)),  # SDXL-turbo
        (SD, 7.5, "", {}, (7.5, None, False, True)),
        # an LCM-distilled UNet in an SD pipeline: guidance is its input, there is no CFG
        (ModelFacts("StableDiffusionPipeline", True), 8.0, "blurry", {}, (None, 8.0, False, True)),
        (ModelFacts("LatentConsistencyModelPipeline", True), 8.0, "blurry", {}, (None, 8.0, False, True)),
        # latent diffusion: CFG wherever guidance is not 1; it has no negative prompt
        (ModelFacts("LDMTextToImagePipeline"), 0.5, "blurry", {}, (0.5, None, False, True)),
        (ModelFacts("LDMTextToImagePipeline"), 1.0, "", {}, (None, None, False, False)),
        # Flux dev: distilled guidance; true CFG (and the negative prompt) only with true_cfg_scale > 1
        (ModelFacts("FluxPipeline", True), 3.5, "blurry", {}, (None, 3.5, False, True)),
        (ModelFacts("FluxPipeline", True), 3.5, "blurry", {"true_cfg_scale": 4}, (4.0, 3.5, True, True)),
        (ModelFacts("FluxPipeline", True), 3.5, "", {"true_cfg_scale": 4}, (None, 3.5, False, True)),
        # Flux schnell: guidance is not used at all
        (ModelFacts("FluxPipeline", False), 3.5, "blurry", {}, (None, None, False, False)),
        # QwenImage: true CFG at its default 4.0 once a negative prompt is given; guidance ignored
        (ModelFacts("QwenImagePipeline", False), 7.5, "blurry", {}, (4.0, None, True, False)),
        (ModelFacts("QwenImagePipeline", False), 7.5, "blurry", {"true_cfg_scale": 1.0}, (None, None, False, False)),
        # Kandinsky: the prior guides with the negative prompt, and turns it into the decoder's negative
        # image embedding: either stage's CFG makes it count
        (ModelFacts("KandinskyV22CombinedPipeline"), 4.0, "blurry", {}, (4.0, None, True, True)),
        (
            ModelFacts("KandinskyV22CombinedPipeline"),
            4.0,
            "blurry",
            {"prior_guidance_scale": 1},
            (4.0, None, True, True),
        ),
        (
            ModelFacts("KandinskyV22CombinedPipeline"),
            1.0,
            "blurry",
            {"prior_guidance_scale": 1},
            (None, None, False, False),
        ),
        # unknown: everything is kept
        (None, 1.0, "blurry", {}, (1.0, None, True, True)),
        (ModelFacts("SomeNewPipeline"), 1.0, "blurry", {}, (1.0, None, True, True)),
    ],
)
def test_effect_of_guidance_and_negative_prompt(facts, guidance, negative, call, want):
    got = effect(facts, guidance, negative, call)
    assert (got.cfg, got.distilled, got.negative, got.guidance) == want


def test_every_family_rule_is_one_the_effect_knows():
    assert {f.guidance for f in FAMILIES.values()} <= {"cfg", "cfg_unless_1", "embedded"}
    assert {f.negative for f in FAMILIES.values()} <= {"with_cfg", "true_cfg", "prior_cfg", "none"}
    assert all(f.switch for f in FAMILIES.values() if f.negative in ("true_cfg", "prior_cfg"))


def test_parameters_say_cfg_only_where_it_ran_and_distilled_guidance_by_forges_name():
    recipe = {
        "prompt": "a cat",
        "negative_prompt": "",
        "scheduler": "default",
        "steps": 4,
        "guidance": 3.5,
        "seed": 1,
        "width": 64,
        "height": 64,
    }
    flux_dev = effect(ModelFacts("FluxPipeline", True), 3.5, "", {})
    text = a1111_parameters(recipe, "flux", "Euler", effect=flux_dev)
    assert text.splitlines()[1] == (
        "Steps: 4, Sampler: Euler, Distilled CFG Scale: 3.5, Seed: 1, Size: 64x64, Model: flux"
    )
    schnell = effect(ModelFacts("FluxPipeline", False), 3.5, "", {})
    assert "CFG" not in a1111_parameters(dict(recipe, guidance=None), "flux", "Euler", effect=schnell)


def tiny_flux_like(folder: Path, guidance_embeds: bool) -> Path:
    """model_index.json and the transformer's config.json are all modelinfo reads."""
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]})
    )
    (folder / "transformer/config.json").write_text(json.dumps({"guidance_embeds": guidance_embeds}))
    return folder


def test_facts_come_from_the_models_config_files(tmp_path, tiny_sd):
    assert facts_of(str(tiny_sd), None, "auto") == ModelFacts("StableDiffusionPipeline", False)
    assert facts_of(str(tiny_flux_like(tmp_path / "dev", True)), None, "auto") == ModelFacts("FluxPipeline", True)
    assert facts_of(str(tiny_flux_like(tmp_path / "schnell", False)), None, "auto") == ModelFacts("FluxPipeline")
    assert facts_of(str(tmp_path / "nothing"), None, "auto") is None
    # a chosen class is the one that runs; a decoder that needs a prior runs as the combined pipeline
    assert facts_of(str(tiny_sd), None, "StableDiffusionXLPipeline").pipeline == "StableDiffusionXLPipeline"
    (tmp_path / "k").mkdir()
    (tmp_path / "k/model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))
    assert facts_of(str(tmp_path / "k"), None, "auto").pipeline == "KandinskyV22CombinedPipeline"


def test_facts_of_a_hub_model_come_from_the_hub_cache_offline(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub/models--someone--flux-dev/snapshots/0123456789abcdef0123456789abcdef01234567"
    tiny_flux_like(snapshot, True)
    (tmp_path / "hub/models--someone--flux-dev/refs").mkdir()
    (tmp_path / "hub/models--someone--flux-dev/refs/main").write_text(snapshot.name)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert facts_of("someone/flux-dev", None, "auto") == ModelFacts("FluxPipeline", True)
    assert facts_of("someone/not-cached", None, "auto") is None  # offline: unknown, every setting kept


def test_a_single_files_family_is_read_from_its_header(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "flux.safetensors"
    names = ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "guidance_in.in_layer.weight"]
    save_file({n: torch.zeros(1) for n in names}, str(path))
    assert sorted(safetensors_keys(path)) == sorted(names)
    assert facts_of(str(path), None, "auto") == ModelFacts("FluxPipeline", True)
    assert single_file_pipeline(["conditioner.embedders.1.model.ln_final.weight"]) == "StableDiffusionXLPipeline"
    assert single_file_pipeline(["model.diffusion_model.input_blocks.0.0.weight"]) == "StableDiffusionPipeline"
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    assert safetensors_keys(tmp_path / "bad.safetensors") is None


def project(folder: Path, model: Path, render: str) -> Path:
    return write_prompts(
        folder,
        f"""
        page: {{title: Truth}}
        render: {{model: {model}, steps: 2, width: 64, height: 64, samples: 2, dtype: float32, {render}}}
        axes:
          subject: {{cat: a cat, dog: a dog}}
        """,
    )


def test_a_negative_prompt_without_cfg_is_not_recorded_and_changing_it_renders_nothing(tmp_path, tiny_sd, capsys):
    prompts = project(tmp_path, tiny_sd, "guidance: 1, negative_prompt: blurry")
    assert main(["build", "-c", str(prompts)]) == 0
    err = capsys.readouterr().err
    assert "negative_prompt 'blurry' has no effect" in err and "above 1" in err
    plan = open_project(prompts).plan
    job = plan.jobs[0]
    side = json.loads(open_project(prompts).cache.sidecar_path(job.key).read_text())
    assert side["recipe"]["negative_prompt"] == "" and side["recipe"]["guidance"] is None
    png = open_project(prompts).cache.png_path(job.key).read_bytes()
    parameters = read_parameters(png)
    assert "Negative prompt" not in parameters and "CFG scale" not in parameters, parameters
    read = read_back(open_project(prompts).cache.png_path(job.key))
    assert read["negative_prompt"] == "" and "cfg_scale" not in read and read["sampler"] == "DDIM"
    cell = cell_of(tmp_path / "site", "truth", "cat")
    assert cell["negative_prompt"] == "" and "cfg" not in cell["settings"]

    # neither the negative prompt nor a guidance at or below 1 took effect: changing them renders nothing
    project(tmp_path, tiny_sd, "guidance: 0.5, negative_prompt: something else entirely")
    assert main(["build", "-c", str(prompts)]) == 0
    assert "render: all 4 images are cached" in capsys.readouterr().out

    # and with CFG on, both are recorded, as AUTOMATIC1111 writes them
    project(tmp_path, tiny_sd, "guidance: 3, negative_prompt: blurry")
    assert main(["build", "-c", str(prompts)]) == 0
    assert "render: 4 images" in capsys.readouterr().out
    job = open_project(prompts).plan.jobs[0]
    parameters = read_parameters(open_project(prompts).cache.png_path(job.key).read_bytes())
    assert "Negative prompt: blurry" in parameters and "CFG scale: 3," in parameters
    read = read_back(open_project(prompts).cache.png_path(job.key))
    assert (read["negative_prompt"], read["cfg_scale"], read["steps"], read["Size"]) == ("blurry", "3", "2", "64x64")
    assert cell_of(tmp_path / "site", "truth", "cat")["settings"]["cfg"] == 3.0


def test_latent_diffusion_has_no_negative_prompt_so_its_key_holds_none(tmp_path, tiny_ldm):
    with_negative = open_project(project(tmp_path / "a", tiny_ldm, "guidance: 3, negative_prompt: blurry")).plan
    without = open_project(project(tmp_path / "b", tiny_ldm, "guidance: 3")).plan
    assert with_negative.keys == without.keys
    assert with_negative.jobs[0].recipe["guidance"] == 3.0
