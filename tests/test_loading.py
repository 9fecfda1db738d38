"""Loading what people download: single-file checkpoints (and where their configs come from,
offline too), `AutoPipelineForText2Image`, and a family diffusers itself cannot load (Stable Cascade)."""

import json
from pathlib import Path

import pytest

from conftest import write_prompts
from gallery.cli import main
from gallery.project import open_project
from test_runtime_faults import one_message

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
FLUX_DEV = "black-forest-labs/FLUX.1-dev"


def tensors_file(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A .safetensors file with these tensor names and shapes (zeros): enough for diffusers to tell
    which model a checkpoint is from its names."""
    import torch
    from safetensors.torch import save_file

    save_file({name: torch.zeros(shape) for name, shape in shapes.items()}, str(path))
    return path


def project(folder: Path, render: str, samples: int = 1) -> Path:
    return write_prompts(
        folder,
        f"""
        render: {{{render}, steps: 2, width: 64, height: 64, samples: {samples}, dtype: float32, device: cpu}}
        axes:
          subject: {{cat: a cat}}
        """,
    )


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache with nothing in it (the machine's own may hold anything)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    from original_layout import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture(scope="session")
def checkpoints(tiny_sd, tiny_sdxl, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """The tiny SD 1.x and SDXL pipelines as single files in the original tensor names, each with
    its diffusers folder."""
    from original_layout import checkpoint

    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        name: (checkpoint(model, folder / f"{name}.safetensors"), model)
        for name, model in (("sd15", tiny_sd), ("sdxl", tiny_sdxl))
    }


def configs_only(model: Path, folder: Path) -> Path:
    """What `hf download REPO --include '*.json' --include '*.txt' --include '*.model' --local-dir
    FOLDER` leaves: the model's configs and tokenizers, no weights."""
    for file in model.rglob("*"):
        if file.suffix in (".json", ".txt", ".model"):
            (folder / file.relative_to(model)).parent.mkdir(parents=True, exist_ok=True)
            (folder / file.relative_to(model)).write_bytes(file.read_bytes())
    return folder


@pytest.mark.parametrize("name", ["sd15", "sdxl"])
def test_a_whole_checkpoint_renders_as_its_diffusers_folder(tmp_path, checkpoints, rendered, capsys, name):
    """A checkpoint in the original layout, `config:` a folder with only the configs (the offline
    recipe): the same pixels as the diffusers folder it was written from."""
    file, model = checkpoints[name]
    config = configs_only(model, tmp_path / "configs")
    assert not list(config.rglob("*.safetensors"))
    single = project(tmp_path / "single", f"model: {file}, config: {config}")
    assert main(["build", "-c", str(single)]) == 0, capsys.readouterr().err
    assert _pixels(_png(single)) == rendered[model]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The pixels of a diffusers folder's picture (as `project` sets it), rendered once per folder."""

    class Pixels(dict):
        def __missing__(self, model: Path) -> bytes:
            prompts = project(tmp_path_factory.mktemp("folder"), f"model: {model}")
            assert main(["build", "-c", str(prompts)]) == 0
            self[model] = _pixels(_png(prompts))
            return self[model]

    return Pixels()


def test_a_whole_checkpoint_finds_the_inferred_configs_in_the_hub_cache(
    tmp_path, checkpoints, rendered, empty_hub_cache, capsys
):
    """Without config:, offline, from what `hf download REPO --include '*.json' ...` leaves in the
    Hugging Face cache under the repository diffusers infers (here the tiny SDXL's configs stand in
    for stabilityai/stable-diffusion-xl-base-1.0's)."""
    file, model = checkpoints["sdxl"]
    repo = empty_hub_cache / f"models--{SDXL.replace('/', '--')}"
    configs_only(model, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    prompts = project(tmp_path, f"model: {file}")
    assert main(["build", "-c", str(prompts)]) == 0, capsys.readouterr().err
    assert "config" not in open_project(prompts).plan.jobs[0].recipe
    assert _pixels(_png(prompts)) == rendered[model]


def _png(prompts: Path) -> bytes:
    project_ = open_project(prompts)
    return project_.cache.png_path(project_.plan.jobs[0].key).read_bytes()


@pytest.mark.parametrize(
    "name, repo, download",
    [
        (
            "sd15",
            SD15,
            f"hf download {SD15} --include '*.json' --include '*.txt' --include '*.model'",
        ),
        (
            "sdxl",
            SDXL,
            f"hf download {SDXL} --include '*.json' --include '*.txt' --include '*.model'",
        ),
        (  # a Flux dev transformer alone: the rest of the pipeline must come from the repository
            "flux-transformer",
            FLUX_DEV,
            f"hf download {FLUX_DEV} --include 'model_index.json' --include '*/*' --exclude 'transformer/*'",
        ),
    ],
    ids=["sd15", "sdxl", "flux-transformer"],
)
def test_a_single_file_offline_names_the_repository_to_download(
    tmp_path, capsys, empty_hub_cache, checkpoints, name, repo, download
):
    if name in checkpoints:
        file = checkpoints[name][0]
    else:  # the names diffusers tells a Flux dev transformer by, on tiny tensors
        file = tensors_file(
            tmp_path / "flux1-dev.safetensors",
            {
                "double_blocks.0.img_attn.norm.key_norm.scale": (4,),
                "guidance_in.in_layer.bias": (4,),
                "img_in.weight": (4, 64),
            },
        )
    prompts = project(tmp_path, f"model: {file}")
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err
    one_message(err, f"{file.name} (diffusers reads it as '", repo, download, "render.config", "HF_HUB_OFFLINE=1")
    assert "LocalEntryNotFound" not in err and not (tmp_path / ".gallery-cache").exists()


def test_a_pipeline_that_does_not_fit_a_single_file_is_refused(tmp_path, checkpoints, capsys):
    file, model = checkpoints["sd15"]
    prompts = project(tmp_path, f"model: {file}, config: {model}, pipeline: StableDiffusionXLPipeline")
    assert main(["build", "-c", str(prompts)]) == 2
    one_message(capsys.readouterr().err, "render.pipeline: StableDiffusionXLPipeline does not fit", "text_encoder_2")


@pytest.fixture(scope="session")
def tiny_sd_unet_file(tiny_sd, tmp_path_factory) -> Path:
    """The tiny SD's denoiser alone as one .safetensors file (diffusers' own tensor names), as Flux and
    SD3 transformers are shared: a file without VAE or text encoders."""
    from safetensors.torch import load_file, save_file

    path = tmp_path_factory.mktemp("single") / "unet-only.safetensors"
    save_file(load_file(str(tiny_sd / "unet" / "diffusion_pytorch_model.safetensors")), str(path))
    return path


def test_a_denoiser_file_loads_with_the_rest_from_config(tmp_path, tiny_sd, tiny_sd_unet_file, rendered, capsys):
    """`config:` a local folder: the file's denoiser, everything else from the folder; the same pixels
    as the folder itself, and the config's identity in the key (only there)."""
    from gallery.metadata import read_parameters

    single = project(tmp_path / "single", f"model: {tiny_sd_unet_file}, config: {tiny_sd}")
    assert main(["build", "-c", str(single)]) == 0, capsys.readouterr().err
    job = open_project(single).plan.jobs[0]
    folder = open_project(project(tmp_path / "folder", f"model: {tiny_sd}")).plan.jobs[0]
    assert job.recipe["config"].startswith("sha256:") and "config" not in folder.recipe
    png = _png(single)
    assert read_parameters(png).split("Model: ")[1] == "unet-only.safetensors"
    assert _pixels(png) == rendered[tiny_sd]


def _pixels(png: bytes) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").tobytes()


def test_config_is_in_the_key_only_where_set(tmp_path, tiny_sd_unet_file):
    file = f"model: {tiny_sd_unet_file}"
    plain = open_project(project(tmp_path / "a", file)).plan.jobs[0]
    hub = open_project(project(tmp_path / "b", f"{file}, config: {SDXL}")).plan.jobs[0]
    pinned = open_project(project(tmp_path / "c", f"{file}, config: {SDXL}, revision: abc123")).plan.jobs[0]
    assert "config" not in plain.recipe
    assert hub.recipe["config"] == f"hub:{SDXL}@main" and pinned.recipe["config"] == f"hub:{SDXL}@abc123"
    assert len({plain.key, hub.key, pinned.key}) == 3


def test_auto_pipeline_for_text2image_is_accepted_and_loads(tmp_path, tiny_sd, capsys):
    prompts = project(tmp_path, f"model: {tiny_sd}, pipeline: AutoPipelineForText2Image")
    assert main(["build", "-c", str(prompts)]) == 0, capsys.readouterr().err
    job = open_project(prompts).plan.jobs[0]
    assert job.recipe["pipeline"] == "AutoPipelineForText2Image"
    assert open_project(prompts).cache.png_path(job.key).is_file()


def test_stable_cascade_is_refused_as_diffusers_fault(tmp_path, capsys):
    """The hub's Stable Cascade decoder names its VQ model `wuerstchen.PaellaVQModel`; diffusers moved
    `wuerstchen` to pipelines.deprecated and can no longer find it (ValueError mid-load)."""
    import diffusers.pipelines

    if hasattr(diffusers.pipelines, "wuerstchen"):
        pytest.skip("this diffusers still loads Stable Cascade's parts by their hub names")
    model = tmp_path / "stable-cascade"
    model.mkdir()
    (model / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableCascadeDecoderPipeline",
                "decoder": ["diffusers", "StableCascadeUNet"],
                "latent_dim_scale": 10.67,
                "scheduler": ["diffusers", "DDPMWuerstchenScheduler"],
                "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
                "tokenizer": ["transformers", "CLIPTokenizerFast"],
                "vqgan": ["wuerstchen", "PaellaVQModel"],
            }
        )
    )
    prompts = project(tmp_path, f"model: {model}")
    assert main(["build", "-c", str(prompts)]) == 1
    one_message(
        capsys.readouterr().err,
        "'vqgan' as wuerstchen.PaellaVQModel",
        "a fault of diffusers",
        "diffusers 0.37.1 or older",
    )


def test_a_prior_pipeline_is_refused_as_making_no_pictures(tmp_path, capsys):
    """A prior's __call__ takes a prompt too, but returns image embeddings for its decoder."""
    model = tmp_path / "stable-cascade-prior"
    model.mkdir()
    index = {"_class_name": "StableCascadePriorPipeline", "prior": ["diffusers", "StableCascadeUNet"]}
    (model / "model_index.json").write_text(json.dumps(index))
    prompts = project(tmp_path, f"model: {model}")
    assert main(["build", "-c", str(prompts)]) == 1
    one_message(capsys.readouterr().err, "is a StableCascadePriorPipeline", "image embeddings")


def test_a_pipeline_class_whose_packages_are_missing_names_them(tmp_path, tiny_sd, capsys, monkeypatch):
    """diffusers stands in a placeholder class for a pipeline whose packages are not installed
    (Kolors without sentencepiece); loading it fails deep inside with a long ImportError. The
    gallery says which package to install, in one line, before anything renders."""
    import diffusers
    from diffusers.utils import DummyObject

    class NeedsMorePipeline(metaclass=DummyObject):
        _backends = ("torch", "no_such_package_here", "bs4")

    monkeypatch.setattr(diffusers, "NeedsMorePipeline", NeedsMorePipeline, raising=False)
    prompts = project(tmp_path, f"model: {tiny_sd}, pipeline: NeedsMorePipeline")
    assert main(["build", "-c", str(prompts)]) == 1
    err = capsys.readouterr().err
    one_message(err, "NeedsMorePipeline needs no_such_package_here", "pip install no_such_package_here")
    assert "pip install torch" not in err  # only what is missing
    assert not (tmp_path / ".gallery-cache" / "images").exists()
