"""Load a diffusers text-to-image pipeline from a hub id, a local folder or a .safetensors file,
a latent upscaler (LDMSuperResolutionPipeline, StableDiffusionUpscalePipeline) from a hub id or a
local folder, and a super-resolution network (ESRGAN family) from a weights file, with the same
device, dtype and memory choices.

Imports torch/diffusers/spandrel only when called (as do render.py and the upscalers).
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

from gallery import quantize, schedulers
from gallery.config import UPSCALERS, Picture, Runtime, Upscale
from gallery.errors import ModelLoadError, SettingError
from gallery.families import AUTO_TEXT2IMAGE
from gallery.modelinfo import AUTO_PIPELINE, DENOISERS, hub_reachable
from gallery.settings import quoted


@dataclass(frozen=True)
class Target:
    device: str  # "cuda", "cuda:1", "mps", "cpu"
    dtype: str  # "float32", "float16", "bfloat16"


def quiet_libraries() -> None:
    """Our progress bar and messages are the interface; silence the libraries' chatter."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    for name in ("diffusers", "transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # torchao's import (render.quantize: int8) registers enums with torch's pytree, which warns per enum
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", category=UserWarning, module="huggingface_hub")


def choose_target(runtime: Runtime, gpu_index: int = 0) -> Target:
    """Device and dtype; `gpu_index` is this process's GPU when many processes share a machine."""
    import torch

    device = runtime.device
    if device == "auto":
        if torch.cuda.is_available():
            device = f"cuda:{gpu_index % torch.cuda.device_count()}" if gpu_index else "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"render.device is '{device}' but PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}); set device: auto or cpu, or install a CUDA build"
        )
    dtype = runtime.dtype
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif device == "mps":
            dtype = "float16"
        else:
            dtype = "bfloat16" if cpu_has_bf16() else "float32"
    return Target(device, dtype)


def cpu_has_bf16() -> bool:
    """bfloat16 matrix instructions (AVX512-BF16 or AMX): there bf16 runs ~3x float32, with
    float32's range (no overflow to NaN, unlike float16). Without them it is emulated and slow."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def load_pipeline(picture: Picture, target: Target, runtime: Runtime):
    """The pipeline for `picture`, on the target device, with its scheduler and memory options."""
    quiet_libraries()
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    torch_dtype = getattr(torch, target.dtype)
    if picture.quantize != "none" and picture.model.endswith(".safetensors"):
        raise SettingError(
            f"quantize: {picture.quantize} needs a diffusers folder or hub model; a single .safetensors file "
            "is loaded whole",
            setting="quantize",
            picture=picture,
            hint="convert the file to a diffusers folder (save_pretrained), or set quantize: none",
        )
    try:
        if picture.model.endswith(".safetensors"):
            pipe = _load_single_file(picture, torch_dtype, diffusers)
        else:
            pipe = _load_pretrained(picture, torch_dtype, diffusers, target)
    except ModelLoadError:
        raise
    except Exception as err:  # diffusers raises many kinds; all mean "cannot load"
        raise ModelLoadError(_explain_load_failure(picture, err)) from None

    if "prompt" not in inspect.signature(pipe.__call__).parameters:
        raise ModelLoadError(
            f"{type(pipe).__name__} loaded from '{picture.model}' is not a text-to-image "
            "pipeline (its __call__ takes no prompt); choose a text-to-image model"
        )
    set_scheduler(pipe, picture, diffusers)
    pipe.set_progress_bar_config(disable=True)
    _float_pictures(pipe, torch_dtype, torch)
    _place(pipe, target, runtime)
    return pipe


def _float_pictures(pipe, torch_dtype, torch) -> None:
    """LDMTextToImagePipeline (the original's model) turns its decoded pictures into numpy arrays as
    they come, and numpy has no bfloat16 (a GPU's `dtype: auto`): its VAE decoder hands them on as
    float32. The decoding itself stays in bfloat16."""
    if torch_dtype == torch.bfloat16 and type(pipe).__name__ == "LDMTextToImagePipeline":
        pipe.vqvae.decoder.register_forward_hook(lambda _module, _inputs, output: output.float())


def _place(pipe, target: Target, runtime: Runtime) -> None:
    """Memory options, then the device (or CPU offload onto it)."""
    if runtime.attention_slicing and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    if runtime.vae_tiling:
        vae = getattr(pipe, "vae", None) or getattr(pipe, "vqvae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
    if runtime.cpu_offload != "none" and target.device != "cpu":
        if runtime.cpu_offload == "group":
            group_offload(pipe, target.device)
        elif runtime.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=target.device)
        else:
            pipe.enable_model_cpu_offload(device=target.device)
    else:
        pipe.to(target.device)


def group_offload(pipe, device: str) -> None:
    """render.cpu_offload: group. diffusers' group offloading at leaf level: every layer of the text
    encoders and the denoiser stays in CPU memory and comes to `device` as it runs; on a CUDA GPU the
    next layer is copied on a side stream while this one computes. The VAE (0.1-0.3 GB) stays on the
    GPU whole: diffusers warns that a tiled VAE decode with streams may fail on its first pass."""
    import torch

    onload = torch.device(device)
    pipe.enable_group_offload(
        onload_device=onload,
        offload_device=torch.device("cpu"),
        offload_type="leaf_level",
        use_stream=onload.type == "cuda",
        exclude_modules=["vae", "vqvae"],
    )


def check_upscaler(upscale: Upscale) -> None:
    """Stop on a wrong or unreachable upscaler model before anything is rendered. A latent
    upscaler: only its model_index.json is read. A weights file: read and recognised, on the CPU
    (tens of MB; it is fetched from the hub now if it must be)."""
    quiet_libraries()
    if upscale.kind.loader == "spandrel":
        load_sr_model(upscale, Target("cpu", "float32"))
        return
    import diffusers

    _upscaler_index(upscale, diffusers)


def load_upscaler(upscale: Upscale, target: Target, runtime: Runtime):
    """The latent upscaler pipeline for `upscale`, on the target device, with the render memory options."""
    quiet_libraries()
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    cls, config, local_only = _upscaler_index(upscale, diffusers)
    kwargs = {"torch_dtype": getattr(torch, target.dtype), "revision": upscale.revision, "local_files_only": local_only}
    if "safety_checker" in config:  # never download a safety checker
        kwargs.update(safety_checker=None)
    try:
        pipe = cls.from_pretrained(upscale.model, **kwargs)
    except Exception as err:  # diffusers raises many kinds; all mean "cannot load"
        raise ModelLoadError(_explain_load_failure(upscale, err, "upscale.model")) from None
    pipe.set_progress_bar_config(disable=True)
    _place(pipe, target, runtime)
    return pipe


def _upscaler_index(upscale: Upscale, diffusers) -> tuple[Any, dict, bool]:
    """The upscaler's pipeline class (checked against the model's own), model index, and local_only."""
    config, local_only = _model_index(upscale, diffusers, "upscale.model")
    found, wanted = config.get("_class_name"), upscale.kind.pipeline
    assert wanted is not None, f"upscaler '{upscale.upscaler}' is not a diffusers pipeline"
    if found != wanted:
        other = next((name for name, u in UPSCALERS.items() if u.pipeline and u.pipeline == found), None)
        raise ModelLoadError(
            f"upscale.model '{upscale.model}' is {f'a {found}' if found else 'not a diffusers pipeline'}, not the "
            f"{wanted} that upscaler '{upscale.upscaler}' needs"
            + (
                f"; for this model write upscaler: {other}"
                if other
                else f"; give a model such as {upscale.kind.default_model}"
            )
        )
    return getattr(diffusers, wanted), config, local_only


def load_sr_model(upscale: Upscale, target: Target):
    """The super-resolution network in `upscale.model`, recognised by spandrel (ESRGAN, Real-ESRGAN,
    SwinIR, HAT ...): a spandrel ImageModelDescriptor in eval mode, on the target device, in the
    target dtype where the architecture supports it (else float32)."""
    import torch

    try:
        import spandrel
    except ImportError as err:  # an optional extra: it brings torchvision, which must match the torch build
        raise ModelLoadError(
            f"upscaler 'esrgan' needs spandrel ({err}): pip install 'prompt-gallery[esrgan]', "
            "after the torchvision that matches your torch"
        ) from None
    name = _model_of(upscale)
    state = _read_weights(_weights_path(upscale), name)
    try:
        model = spandrel.ModelLoader().load_from_state_dict(spandrel.canonicalize_state_dict(state))
    except spandrel.UnsupportedModelError:
        raise ModelLoadError(
            f"upscale.model '{name}': spandrel {spandrel.__version__} does not recognise this "
            "network; give ESRGAN-family weights (Real-ESRGAN, BSRGAN ...) or another "
            "super-resolution model that spandrel supports"
        ) from None
    except Exception as err:  # a known architecture with unexpected shapes, a state dict of odd values ...
        raise ModelLoadError(
            f"upscale.model '{name}' cannot be loaded: {type(err).__name__}: {err}".splitlines()[0]
        ) from None
    arch = model.architecture.name
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose != "SR" or model.scale < 2:
        raise ModelLoadError(
            f"upscale.model '{name}' is a model for {model.purpose} ({arch}, {model.scale}x), not "
            "a super-resolution model; give one that upscales, such as Real-ESRGAN x2 or x4"
        )
    if model.input_channels != 3 or model.output_channels != 3:
        raise ModelLoadError(
            f"upscale.model '{name}' ({arch}) works on {model.input_channels}-channel images; "
            "the gallery's pictures are RGB: give an RGB model"
        )
    dtype = getattr(torch, target.dtype)
    if not {torch.float16: model.supports_half, torch.bfloat16: model.supports_bfloat16}.get(dtype, True):
        dtype = torch.float32
    model.to(device=torch.device(target.device), dtype=dtype).eval()
    model.model.to(memory_format=torch.channels_last)  # convolutions ran 1.2x faster so on the CPU (BENCHMARKS.md)
    return model


def _weights_path(upscale: Upscale) -> str:
    """A local weights file as it is; a hub file (owner/repo/path) from the hub cache, fetched if it must be."""
    if upscale.is_local:
        return _model_of(upscale)
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo, filename = hub_file(_model_of(upscale))
    cached = try_to_load_from_cache(repo, filename, revision=upscale.revision)
    if isinstance(cached, str):
        return cached
    if not hub_reachable():
        raise ModelLoadError(_offline_message(upscale, "upscale.model"))
    try:
        return hf_hub_download(repo, filename, revision=upscale.revision)
    except Exception as err:  # the hub client raises many kinds; all mean "cannot fetch"
        raise ModelLoadError(_explain_load_failure(upscale, err, "upscale.model")) from None


def _model_of(entry: Picture | Upscale) -> str:
    """The model to load: render.model, or a model upscaler's (the config fills in its default)."""
    assert entry.model is not None, "an upscaler without a model loads none"
    return entry.model


def hub_file(model: str) -> tuple[str, str]:
    """'owner/repo/path/file.pth' -> ('owner/repo', 'path/file.pth')."""
    owner, repo, filename = model.split("/", 2)
    return f"{owner}/{repo}", filename


def _read_weights(path: str, name: str) -> dict:
    """The tensors in a weights file. A pickle (.pth ...) goes through torch's weights-only unpickler,
    which builds tensors and plain containers and refuses anything else: no code in it runs."""
    import pickle

    import torch

    try:
        if path.lower().endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": our message says what matters
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines()]
        why = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), "")
        raise ModelLoadError(
            f"upscale.model '{name}' is not a plain file of tensors, so torch's weights-only reader "
            f"refused it{f' ({why})' if why else ''}; it is never unpickled in full, which could "
            "run code in it. Get the weights as .safetensors, or from a source you trust"
        ) from None
    except Exception as err:  # a truncated download, a TorchScript archive, not weights at all ...
        raise ModelLoadError(
            f"upscale.model '{name}' is not a readable weights file: {type(err).__name__}: {err}".splitlines()[0]
        ) from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"upscale.model '{name}' holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _model_index(model: Picture | Upscale, diffusers, setting: str) -> tuple[dict, bool]:
    """The model's model_index.json, and whether to load it from the local hub cache only (offline)."""
    local_only = False
    source = _model_of(model)
    if not model.is_local:
        cached = _in_hub_cache(source, model.revision)
        if not hub_reachable():
            if not cached:  # say so now, instead of after the hub client's retries
                raise ModelLoadError(_offline_message(model, setting))
            local_only = True
    try:
        config = diffusers.DiffusionPipeline.load_config(source, revision=model.revision, local_files_only=local_only)
    except Exception as err:  # diffusers raises many kinds; all mean "cannot load"
        raise ModelLoadError(_explain_load_failure(model, err, setting)) from None
    return config, local_only


def _load_pretrained(picture: Picture, torch_dtype, diffusers, target: Target):
    source = picture.model
    config, local_only = _model_index(picture, diffusers, "render.model")
    own = config.get("_class_name", "DiffusionPipeline")
    cls_name = picture.pipeline if picture.pipeline not in ("auto", AUTO_PIPELINE) else own
    upscaler = next((name for name, u in UPSCALERS.items() if u.pipeline == cls_name), None)
    if upscaler:  # the SD x4 upscaler's call takes a prompt too, so the check after loading would pass it
        raise ModelLoadError(
            f"render.model '{source}' is a {cls_name}, an upscaler, not a text-to-image pipeline; "
            f"choose a text-to-image model, and use this one as upscale: {{upscaler: {upscaler}}}"
        )
    if cls_name.endswith("PriorPipeline"):  # its __call__ takes a prompt, but it makes no picture
        raise ModelLoadError(
            f"render.model '{source}' is a {cls_name}: it turns a prompt into image embeddings for a decoder "
            "model, not into pictures; choose the decoder's model (its combined pipeline runs the prior too)"
        )
    if picture.pipeline in AUTO_TEXT2IMAGE:  # the decoder alone makes pictures from a prior's image embeddings
        raise SettingError(
            f"{picture.pipeline} is the decoder of a two-stage model: it makes pictures from a prior's image "
            "embeddings, not from a prompt",
            setting="pipeline",
            picture=picture,
            hint="set pipeline: auto to load it with its prior (diffusers' AutoPipelineForText2Image)",
        )
    decoder = own in AUTO_TEXT2IMAGE  # Kandinsky's: it renders with the prior its model card names
    if picture.pipeline == AUTO_PIPELINE or (decoder and picture.pipeline in ("auto", AUTO_TEXT2IMAGE[own])):
        return _load_through_auto(picture, config, local_only, torch_dtype, diffusers, target)
    cls = _installed(getattr(diffusers, cls_name, None), cls_name)
    if cls is None:
        raise ModelLoadError(
            f"'{source}' needs pipeline class {cls_name}, which diffusers "
            f"{diffusers.__version__} does not have; upgrade diffusers or set render.pipeline"
        )
    _check_parts_load(config, picture, diffusers)
    _check_fits(cls, config, picture, diffusers)
    kwargs = {"torch_dtype": torch_dtype, "revision": picture.revision, "local_files_only": local_only}
    if "safety_checker" in config:  # never download a safety checker; the gallery is curated by hand
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    quantization = quantize.pipeline_config(picture, config, target.device, torch_dtype, diffusers)
    if quantization is not None:
        kwargs.update(quantization_config=quantization)
    pipe = cls.from_pretrained(source, **kwargs)
    pipe._gallery_quantized = quantize.quantized_parts(config) if quantization is not None else {}
    return pipe


# The priors that published decoders' model cards name: the offline message names both to download
# when not even the decoder is cached (its card, once cached, is read instead).
KNOWN_PRIORS = {
    "kandinsky-community/kandinsky-2-2-decoder": "kandinsky-community/kandinsky-2-2-prior",
    "kandinsky-community/kandinsky-2-1": "kandinsky-community/kandinsky-2-1-prior",
}


def _load_through_auto(picture: Picture, index: dict, local_only: bool, torch_dtype, diffusers, target: Target):
    """diffusers' AutoPipelineForText2Image: the text-to-image pipeline of the model's family; for a
    decoder-only model (Kandinsky), the combined pipeline of the decoder and the prior its model card names."""
    combined = AUTO_TEXT2IMAGE.get(index.get("_class_name", ""))
    if combined and picture.quantize != "none":  # diffusers would hand the decoder's parts' config to the prior
        raise SettingError(
            f"quantize: {picture.quantize} is not supported for a decoder that renders with a prior "
            f"({combined}): the two are loaded as separate pipelines",
            setting="quantize",
            picture=picture,
            hint="set quantize: none; cpu_offload: model keeps only the part that runs on the GPU",
        )
    kwargs: dict[str, Any] = {"torch_dtype": torch_dtype, "local_files_only": local_only}
    if "safety_checker" in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    source = picture.model
    with warnings.catch_warnings():  # its module imports every pipeline; one calls torch.jit.script, deprecated
        warnings.simplefilter("ignore", FutureWarning)
        auto = diffusers.AutoPipelineForText2Image
    if combined is None:
        quantization = quantize.pipeline_config(picture, index, target.device, torch_dtype, diffusers)
        if quantization is not None:
            kwargs.update(quantization_config=quantization)
        pipe = auto.from_pretrained(source, revision=picture.revision, **kwargs)
        pipe._gallery_quantized = quantize.quantized_parts(index) if quantization is not None else {}
        return pipe
    prior = _connected_prior(picture, local_only)
    if prior and not local_only and not _is_path(prior) and not hub_reachable():
        kwargs["local_files_only"] = True  # a local decoder's prior, found in the hub cache
    if not picture.is_local:
        # diffusers hands the decoder's revision (a commit of another repository) on to the prior:
        # fetch the decoder (and, online, its prior) first, then load from the decoder's folder.
        source = getattr(diffusers, combined).download(
            source, revision=picture.revision, local_files_only=kwargs["local_files_only"]
        )
    return auto.from_pretrained(source, **kwargs)


def _connected_prior(picture: Picture, local_only: bool) -> str | None:
    """The prior a decoder's model card names (None: its card is still on the hub, which diffusers
    reads); offline, checked to be in the hub cache, else one message naming what to download."""
    from huggingface_hub import ModelCard, try_to_load_from_cache

    model = _model_of(picture)
    if picture.is_local:
        card: Any = os.path.join(model, "README.md")
        card = card if os.path.isfile(card) else None
    else:
        card = try_to_load_from_cache(model, "README.md", revision=picture.revision)
        if not isinstance(card, str):
            if not local_only:
                return None  # diffusers fetches the card and the prior it names
            raise ModelLoadError(
                f"model '{model}' is a decoder whose model card (README.md, which names its prior) is not in "
                f"the local Hugging Face cache and the hub cannot be reached: `hf download {model} README.md` "
                "on a machine that has it, and copy the cache (HF_HOME)"
            )
    priors = getattr(ModelCard.load(card).data, "prior", None) if card else None
    if not isinstance(priors, list) or not priors or not isinstance(priors[0], str):
        where = f"{model}/README.md" if picture.is_local else f"the README.md of '{model}'"
        raise ModelLoadError(
            f"{where} {'does not name' if card else 'is missing: a model card names'} the prior this decoder "
            "needs; its front matter must hold "
            f"`prior: [{KNOWN_PRIORS.get(model, 'kandinsky-community/kandinsky-2-2-prior')}]`, as the hub's "
            "kandinsky-community/kandinsky-2-2-decoder does"
        )
    prior = priors[0]
    if not _is_path(prior) and not hub_reachable() and not _in_hub_cache(prior, None):
        raise ModelLoadError(_offline_message(picture, prior=prior))
    return prior


def _is_path(model: str) -> bool:
    return os.path.isabs(model) or os.path.isdir(model)


# diffusers' names for the packages a pipeline class may need, where pip's differ
PIP_NAMES = {"bs4": "beautifulsoup4", "opencv": "opencv-python", "k_diffusion": "k-diffusion"}


def _installed(cls, name: str):
    """`cls` where its packages are installed. diffusers gives a stand-in class for one whose packages
    are missing (Kolors without sentencepiece ...), which fails later with an ImportError of many
    lines: say here which to install."""
    import importlib.util

    backends = getattr(cls, "_backends", None) if type(cls).__name__ == "DummyObject" else None
    if not backends:
        return cls
    missing = [b for b in backends if importlib.util.find_spec(b) is None] or list(backends)
    raise ModelLoadError(
        f"{name} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
        f"pip install {' '.join(PIP_NAMES.get(b, b) for b in missing)}"
    )


# Inputs of pipelines that start from a picture (img2img, inpainting, ControlNet, depth2img ...):
# their __call__ takes a prompt too, and diffusers loads them from a text-to-image model's files.
IMAGE_INPUTS = {"image", "init_image", "mask_image", "control_image"}


def _check_fits(cls, index: dict, picture: Picture, diffusers) -> None:
    """Refuse, before loading, a pipeline class that cannot make pictures from this model's parts:
    diffusers loads one that takes an input image, or leaves out parts it cannot find, without a
    word, and the first image fails. `index` is the model's model_index.json."""
    own = index.get("_class_name")
    what = f"the model at {picture.model}" if picture.is_local else f"model '{picture.model}'"
    chosen = picture.pipeline != "auto"
    inputs = sorted(IMAGE_INPUTS & _call_parameters(cls))
    if inputs and not chosen:
        raise ModelLoadError(
            f"{what} is a {cls.__name__}, which starts from an input {inputs[0]}: not a text-to-image "
            "pipeline; choose a text-to-image model"
        )
    if inputs:
        raise SettingError(
            f"{cls.__name__} starts from an input {inputs[0]}: it is not a text-to-image pipeline"
            + (f" ({what} is a {own}, model_index.json)" if own else ""),
            setting="pipeline",
            picture=picture,
            hint=_own_class_hint(own),
        )
    own_cls = getattr(diffusers, own, None) if chosen and own and own != cls.__name__ else None
    if own_cls is None:
        return
    lacking = sorted(_parts(cls) - _parts(own_cls) - set(index))
    if lacking:
        raise SettingError(
            f"{cls.__name__} does not fit {what}, a {own} (model_index.json): it needs parts the model "
            f"does not have ({', '.join(lacking)})",
            setting="pipeline",
            picture=picture,
            hint=_own_class_hint(own),
        )
    wrong = _wrong_parts(cls, index, diffusers)
    if wrong:
        part, found, takes = wrong[0]
        raise SettingError(
            f"{cls.__name__} does not fit {what}, a {own} (model_index.json): its {part} is a {found}, "
            f"where {cls.__name__} takes a {takes}",
            setting="pipeline",
            picture=picture,
            hint=_own_class_hint(own),
        )


def _wrong_parts(cls, index: dict, diffusers) -> list[tuple[str, str, str]]:
    """(part, the model's class, the class `cls` takes) for each network of the model (denoiser,
    VAE, text encoders) that is not of the kind `cls` is declared to take: a PixArt pipeline on a
    Sana model has all its parts by name, and would give Gemma's embeddings to a T5 model's layers."""
    import importlib

    import torch

    try:
        takes = cls._get_signature_types()
    except Exception:  # not a DiffusionPipeline (AutoPipeline ...): nothing to compare
        return []
    wrong = []
    for part, spec in sorted(index.items()):
        expected = tuple(t for t in takes.get(part, ()) if isinstance(t, type) and issubclass(t, torch.nn.Module))
        if not expected or not isinstance(spec, list) or len(spec) != 2 or None in spec:
            continue
        library, name = spec
        try:
            module = importlib.import_module(library) if library in ("diffusers", "transformers") else None
            found = getattr(module or getattr(diffusers.pipelines, library), name)
        except Exception:  # a class this diffusers does not have: loading it says so
            continue
        if isinstance(found, type) and issubclass(found, torch.nn.Module) and not issubclass(found, expected):
            wrong.append((part, name, " or ".join(t.__name__ for t in expected)))
    return wrong


def _check_parts_load(index: dict, picture: Picture, diffusers) -> None:
    """Refuse, before loading, a model whose model_index.json names a part by a library this diffusers
    cannot find. Stable Cascade's hub models name their VQ model `wuerstchen.PaellaVQModel`,
    and diffusers moved `wuerstchen` to `diffusers.pipelines.deprecated` without loading it from there:
    a fault of diffusers, said as such instead of its ValueError in the middle of loading."""
    import sys

    from diffusers import pipelines

    what = f"the model at {picture.model}" if picture.is_local else f"model '{picture.model}'"
    for part, spec in sorted(index.items()):
        if part.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or None in spec:
            continue
        library, name = spec
        if not isinstance(library, str) or not isinstance(name, str):
            continue
        # as diffusers resolves a library (pipeline_loading_utils._get_library_or_raise); a class
        # missing from diffusers or transformers is left for diffusers to judge
        if library in LOADABLE_LIBRARIES or hasattr(pipelines, library) or library in sys.modules:
            continue
        own = index.get("_class_name") or "this pipeline"
        moved = hasattr(getattr(pipelines, "deprecated", None), library)
        last = MOVED.get(library)
        raise ModelLoadError(
            f"{what} ({own}) names its part '{part}' as {library}.{name} (model_index.json), which diffusers "
            f"{diffusers.__version__} cannot load"
            + (
                f": diffusers moved '{library}' to diffusers.pipelines.deprecated and no longer finds it by "
                "this name. This is a fault of diffusers, not of the model or of prompts.yaml; render it with "
                + (
                    f"diffusers {last[1]} or older (the last release with diffusers.pipelines.{library}; "
                    f"{last[0]} moved it, {last[2]})"
                    if last
                    else f"a diffusers release that still has diffusers.pipelines.{library}"
                )
                + ", or choose another model"
                if moved
                else "; upgrade diffusers, or choose another model"
            )
        )


def _own_class_hint(own: str | None) -> str:
    return f"set pipeline: auto to use the model's own {own}" if own else "set pipeline: auto"


def _call_parameters(cls) -> set[str]:
    try:
        return set(inspect.signature(cls.__call__).parameters)
    except (TypeError, ValueError):  # no signature to read: nothing to judge by
        return set()


def _parts(cls) -> set[str]:
    """The components a pipeline class is built of (unet, vae, text_encoder ...)."""
    try:
        return set(cls._get_signature_keys(cls)[0])
    except Exception:  # not a DiffusionPipeline (AutoPipeline ...): nothing to compare
        return set()


# Libraries diffusers moved under pipelines.deprecated while hub models still name them in their
# model_index.json: (release that moved it, last release with it in place, where).
MOVED = {"wuerstchen": ("0.38.0", "0.37.1", "huggingface/diffusers#13157")}  # Stable Cascade's PaellaVQModel
LOADABLE_LIBRARIES = ("diffusers", "transformers", "onnxruntime.training")  # diffusers' LOADABLE_CLASSES


class _Tensors:
    """A .safetensors file's tensors, read one at a time when asked: diffusers tells the model type
    from a few of them, and a checkpoint is gigabytes."""

    def __init__(self, handle):
        self._handle = handle
        self._keys = list(handle.keys())
        self._set = set(self._keys)

    def __contains__(self, key) -> bool:
        return key in self._set

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self):
        return list(self._keys)

    def __getitem__(self, key):
        if key not in self._set:
            raise KeyError(key)
        return self._handle.get_tensor(key)

    def get(self, key, default=None):
        return self[key] if key in self._set else default


@dataclass(frozen=True)
class SingleFile:
    """What a single-file checkpoint is, read from its tensor names."""

    model_type: str | None  # diffusers' name for it ("xl_base", "flux-dev" ...); None: not asked (config given)
    source: str  # where its configs (and the parts it lacks) come from: a hub id or a local folder
    whole: bool  # it holds the VAE too (a whole checkpoint), not just the denoiser
    subfolder: str | None = None  # diffusers' default source is one part of a repository (Stable Cascade)


def read_single_file(picture: Picture) -> SingleFile:
    """The model type diffusers infers from the file's tensor names (only where `config` does not say
    where its configs are) and whether it holds a VAE."""
    from diffusers.loaders import single_file_utils as sfu
    from safetensors import safe_open

    try:
        with safe_open(picture.model, framework="pt") as handle:
            tensors = _Tensors(handle)
            whole = any(key.startswith(tuple(sfu.LDM_VAE_KEYS)) for key in tensors)
            model_type = None if picture.config else sfu.infer_diffusers_model_type(tensors)
    except Exception as err:  # not safetensors, truncated, a tensor diffusers' rules did not expect ...
        raise ModelLoadError(
            f"cannot read the model at {picture.model}: {type(err).__name__}: {err}".splitlines()[0]
        ) from None
    if model_type is None:
        return SingleFile(None, picture.config or "", whole)
    default = sfu.DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]
    return SingleFile(model_type, default["pretrained_model_name_or_path"], whole, default.get("subfolder"))


def _load_single_file(picture: Picture, torch_dtype, diffusers):
    found = read_single_file(picture)
    name = f"{picture.model_name}"
    if found.subfolder:  # Stable Cascade's stages: one file each, never a text-to-image model alone
        raise ModelLoadError(
            f"{name} is one stage of a Stable Cascade model ('{found.model_type}'), not a text-to-image model "
            f"alone; Stable Cascade renders with its prior and decoder together, as a diffusers folder or hub id"
        )
    hub = not os.path.isdir(found.source)
    # `revision` is the revision of `config`; the file itself has none, nor has an inferred source
    pinned = picture.revision if hub and picture.config else None
    local_only = False
    if hub:
        cached = _in_hub_cache(found.source, pinned)
        if not hub_reachable():
            if not cached:  # diffusers would try to download it, and fail with LocalEntryNotFoundError
                raise ModelLoadError(_single_file_offline_message(picture, found))
            local_only = True
    revision = {"revision": pinned} if pinned else {}
    try:
        index = diffusers.DiffusionPipeline.load_config(found.source, local_files_only=local_only, **revision)
    except Exception as err:  # diffusers raises many kinds; all mean "cannot load"
        raise ModelLoadError(_explain_single_file_failure(picture, found, err)) from None
    own = index.get("_class_name")
    cls_name = picture.pipeline if picture.pipeline not in ("auto", "AutoPipelineForText2Image") else own
    cls = _installed(getattr(diffusers, cls_name or "", None), cls_name or "")
    if cls is None:
        raise ModelLoadError(
            f"{name} loads with the configs of {found.source}, whose pipeline class {cls_name} diffusers "
            f"{diffusers.__version__} does not have; set render.config to a model of the file's architecture"
        )
    _check_parts_load(index, picture, diffusers)
    _check_fits(cls, index, picture, diffusers)
    kwargs = {"torch_dtype": torch_dtype, "local_files_only": local_only}
    try:
        if found.whole:
            if not hasattr(cls, "from_single_file"):
                raise ModelLoadError(
                    f"diffusers {diffusers.__version__} cannot load {cls_name} from one file; "
                    "convert it to a diffusers folder"
                )
            return cls.from_single_file(picture.model, config=found.source, **kwargs, **revision)
        part = next((p for p in DENOISERS if isinstance(index.get(p), list) and index[p][1]), None)
        part_cls = getattr(diffusers, index[part][1], None) if part else None
        if part is None or part_cls is None or not hasattr(part_cls, "from_single_file"):
            raise ModelLoadError(
                f"{name} holds no VAE, so it is taken for a denoiser alone, and diffusers "
                f"{diffusers.__version__} cannot load "
                + (f"a {index[part][1]} from one file" if part else f"the denoiser of a {own} from one file")
                + "; convert it to a diffusers folder"
            )
        config_revision = {"config_revision": pinned} if pinned else {}
        denoiser = part_cls.from_single_file(
            picture.model, config=found.source, subfolder=part, **kwargs, **config_revision
        )
        extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
        parts: dict[str, Any] = {part: denoiser, **extra}
        return cls.from_pretrained(found.source, **parts, **kwargs, **revision)
    except ModelLoadError:
        raise
    except Exception as err:  # diffusers raises many kinds; all mean "cannot load"
        raise ModelLoadError(_explain_single_file_failure(picture, found, err)) from None


def _single_file_offline_message(picture: Picture, found: SingleFile) -> str:
    """Offline, without the configs a single-file checkpoint needs: which repository, and how to get it."""
    offline = " (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
    source = found.source
    revision = f" --revision {picture.revision}" if picture.revision and picture.config else ""
    if found.whole:
        needs = f"the configs of {source}"
        download = f"hf download {source}{revision} --include '*.json' --include '*.txt' --include '*.model'"
        size = " (a few MB)"
    else:
        needs = f"the rest of the pipeline (configs, VAE, text encoders) from {source}"
        download = (
            f"hf download {source}{revision} --include 'model_index.json' --include '*/*' --exclude 'transformer/*'"
        )
        size = ""
    inferred = f" (diffusers reads it as '{found.model_type}')" if found.model_type else ""
    return (
        f"cannot load {picture.model_name}{inferred}: it needs {needs}, which are not in the local Hugging Face "
        f"cache, and the hub cannot be reached{offline}. Download them once with network access: `{download}`"
        f"{size}, then copy the cache (HF_HOME), or add `--local-dir DIR` and set render.config to that folder"
    )


def _explain_single_file_failure(picture: Picture, found: SingleFile, err: Exception) -> str:
    name, text = type(err).__name__, str(err)
    hub = not os.path.isdir(found.source)
    if hub and ("LocalEntryNotFound" in name or "offline" in text.lower() or "OfflineModeIsEnabled" in name):
        return _single_file_offline_message(picture, found)
    if hub and ("401" in text or "403" in text or "gated" in text.lower()):
        return (
            f"{picture.model_name} loads with the configs of {found.source}, which needs a Hugging Face login or "
            "licence acceptance: accept its terms on the hub and run `hf auth login` (or set HF_TOKEN)"
        )
    where = f"with the configs of {found.source}"
    return f"cannot load the model at {picture.model} {where}: {name}: {text}".splitlines()[0]


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "model_index.json", revision=revision), str)


def _offline_message(picture: Picture | Upscale, setting: str = "render.model", prior: str | None = None) -> str:
    """`prior`: the prior a decoder's model card names (else the one a published decoder's names)."""
    model = _model_of(picture)
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if isinstance(picture, Upscale) and picture.kind.loader == "spandrel":
        download, local = " ".join(hub_file(model)), "local .pth or .safetensors file"
    else:
        download = model
        local = "local diffusers folder" + (" or .safetensors file" if setting == "render.model" else "")
    prior = prior or (KNOWN_PRIORS.get(model) if isinstance(picture, Picture) else None)
    unreachable = "the hub cannot be reached" + (" (HF_HUB_OFFLINE=1)" if offline else "")
    revision = f" (revision {picture.revision})" if picture.revision else ""
    if prior:  # a decoder: say which of the two repositories are missing
        have = {model: picture.is_local or _in_hub_cache(model, picture.revision), prior: _in_hub_cache(prior, None)}
        missing = [m for m, cached in have.items() if not cached] or [model, prior]
        return (
            f"cannot load model '{model}'{revision}, a decoder that renders with the prior "
            f"'{prior}' (named in its model card): "
            + (f"'{missing[0]}' is not" if len(missing) == 1 else "neither is")
            + f" in the local Hugging Face cache and {unreachable}. Run once with network access to "
            "download "
            + ("it" if len(missing) == 1 else "both")
            + ", or "
            + " and ".join(f"`hf download {m}`" for m in missing)
            + f" on a machine that has {'it' if len(missing) == 1 else 'them'} and copy the cache (HF_HOME)."
        )
    return (
        f"cannot load model '{model}'{revision}: it is not in the local Hugging Face cache and {unreachable}"
        + f". Run once with network access to download it, or `hf download {download}` on a "
        f"machine that has it and copy the cache (HF_HOME), or set {setting} to a {local}."
    )


def set_scheduler(pipe, picture: Picture, diffusers) -> None:
    """Give `pipe` the scheduler `picture` asks for, always derived from the model's own one
    (kept aside at first use), so one cell's choice never leaks into the next."""
    if not hasattr(pipe, "_gallery_model_scheduler"):
        pipe._gallery_model_scheduler = pipe.scheduler
    own = pipe._gallery_model_scheduler
    choice = schedulers.choice(picture.scheduler)
    options = dict(choice.options + picture.scheduler_options)
    if choice.cls is None and not options:
        pipe.scheduler = own
        _decoder_scheduler(pipe)
        return
    cls = getattr(diffusers, choice.cls, None) if choice.cls else type(own)
    if cls is None:
        raise ModelLoadError(f"diffusers {diffusers.__version__} has no scheduler class '{choice.cls}'")
    given = dict(picture.scheduler_options)
    if given:
        _check_scheduler_options(cls, own.config, options, given, picture)
    pipe.scheduler = cls.from_config(own.config, **options)
    _decoder_scheduler(pipe)


def _decoder_scheduler(pipe) -> None:
    """A combined pipeline (Kandinsky's) runs its decoder, which holds a scheduler of its own: the same one."""
    decoder = getattr(pipe, "decoder_pipe", None)
    if decoder is not None and hasattr(decoder, "scheduler"):
        decoder.scheduler = pipe.scheduler


def _check_scheduler_options(cls, config, options: dict, given: dict, picture: Picture) -> None:
    """A scheduler option that `cls` does not have, of the wrong kind, or whose value it refuses (when
    it is made, or when its steps are set) is a prompts.yaml mistake: a SettingError naming it, before
    anything renders. `options` are all of them (the scheduler name may imply some); `given`, the user's."""
    accepted = inspect.signature(cls.__init__).parameters
    for key, value in given.items():
        fault = _option_fault(cls, accepted, key, value)
        if fault:
            raise SettingError(fault[0], setting=f"scheduler_options.{key}", picture=picture, hint=fault[1])
    implied = {k: v for k, v in options.items() if k not in given}
    if _refusal(cls, config, implied, None):
        return  # the scheduler fails without them too: not the options' fault (loading it says why)
    steps = picture.steps if _refusal(cls, config, implied, picture.steps) is None else None
    refusal = _refusal(cls, config, options, steps)
    if refusal is None:
        return
    culprit = next((k for k in given if _refusal(cls, config, {**implied, k: given[k]}, steps)), None)
    shown = _yaml(given[culprit]) if culprit else "these options together"
    raise SettingError(
        f"{cls.__name__} refuses {shown} ({refusal})",
        setting=f"scheduler_options.{culprit}" if culprit else "scheduler_options",
        picture=picture,
        hint="give a value the scheduler takes (see its page in the diffusers documentation), or leave it out",
    )


def _option_fault(cls, accepted, key: str, value) -> tuple[str, str] | None:
    """(message, hint) where `key` is not a setting of scheduler `cls`, or `value` not of its kind."""
    import difflib

    if key not in accepted or key == "self":
        if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            return None
        known = [name for name in accepted if name != "self"]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"{cls.__name__} takes: {', '.join(known)}"
        return f"{cls.__name__} has no setting {quoted(key)}, so it would be ignored", hint
    default = accepted[key].default
    kinds = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    want = kinds.get(type(default))
    fits = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(type(default), True)
    if want and not fits:
        return f"{cls.__name__} takes {want} here, got {_yaml(value)}", f"for example {key}: {_yaml(default)}"
    return None


def _refusal(cls, config, options: dict, steps: int | None) -> str | None:
    """Why `cls` cannot be made from `config` with `options` (and, given `steps`, set to them), or None."""
    try:
        scheduler = cls.from_config(config, **options)
        if steps is not None:
            scheduler.set_timesteps(steps)
    except Exception as err:  # any refusal of a value; the message says which
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return None


def _yaml(value) -> str:
    """A value as prompts.yaml spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return quoted(value) if isinstance(value, str) else str(value)


def _explain_load_failure(picture: Picture | Upscale, err: Exception, setting: str = "render.model") -> str:
    model = picture.model
    name = type(err).__name__
    text = str(err)
    if picture.is_local:
        return f"cannot load the model at {model}: {name}: {text}".splitlines()[0]
    if "LocalEntryNotFound" in name or "offline" in text.lower():
        return _offline_message(picture, setting)
    if "401" in text or "403" in text or "gated" in text.lower():
        return (
            f"model '{model}' needs a Hugging Face login or licence acceptance: accept its terms on the hub "
            "and run `hf auth login` (or set HF_TOKEN)"
        )
    if "404" in text or "RepositoryNotFound" in name or "RevisionNotFound" in name:
        return f"model '{model}' (revision {picture.revision or 'main'}) was not found on the hub; check {setting}"
    return f"cannot load model '{model}': {name}: {text}".splitlines()[0]


def call_parameters(pipe) -> set[str]:
    return set(inspect.signature(pipe.__call__).parameters)


def check_call(pipe, picture: Picture) -> None:
    """`picture.call` names only arguments the pipeline's __call__ takes by name (its **kwargs, where
    it has them, swallow anything without a word): else a SettingError listing the ones it takes."""
    if not picture.call:
        return
    import difflib

    from gallery.settings import call_given

    accepted = inspect.signature(pipe.__call__).parameters
    takes = sorted(
        name
        for name, p in accepted.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name != "self" and not call_given(name)
    )
    for name, _ in picture.call:
        if name in takes:
            continue
        close = difflib.get_close_matches(name, takes, n=1)
        raise SettingError(
            f"{type(pipe).__name__} takes no argument {quoted(name)}",
            setting=f"call.{name}",
            picture=picture,
            hint=(f"did you mean '{close[0]}'? " if close else "")
            + f"it takes: {', '.join(takes) if takes else 'none the gallery does not set itself'}",
        )


def versions(*libraries: str) -> dict[str, str]:
    """gallery's and torch's versions, and those of `libraries` (the ones that made the picture)."""
    import importlib

    import torch

    from gallery import __version__

    return {
        "gallery": __version__,
        "torch": torch.__version__,
        **{name: importlib.import_module(name).__version__ for name in libraries},
    }
