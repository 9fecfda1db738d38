"""Load a diffusers text-to-image pipeline from a hub id, a local folder or a .safetensors file,
a latent upscaler (LDMSuperResolutionPipeline, StableDiffusionUpscalePipeline) from a hub id or a
local folder, and a super-resolution network (ESRGAN family) from a weights file, with the same
device, dtype and memory choices.

Imports torch/diffusers/spandrel only when called (as do render.py and the upscalers).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

from gallery import schedulers
from gallery.config import UPSCALERS, Lora, Picture, Runtime, Upscale
from gallery.errors import ModelLoadError, SettingError
from gallery.modelinfo import hub_reachable
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
    _place(pipe, target, runtime)
    return pipe


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
    cls_name = picture.pipeline if picture.pipeline != "auto" else config.get("_class_name", "DiffusionPipeline")
    upscaler = next((name for name, u in UPSCALERS.items() if u.pipeline == cls_name), None)
    if upscaler:  # the SD x4 upscaler's call takes a prompt too, so the check after loading would pass it
        raise ModelLoadError(
            f"render.model '{source}' is a {cls_name}, an upscaler, not a text-to-image pipeline; "
            f"choose a text-to-image model, and use this one as upscale: {{upscaler: {upscaler}}}"
        )
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise ModelLoadError(
            f"'{source}' needs pipeline class {cls_name}, which diffusers "
            f"{diffusers.__version__} does not have; upgrade diffusers or set render.pipeline"
        )
    _check_fits(cls, config, picture, diffusers)
    kwargs = {"torch_dtype": torch_dtype, "revision": picture.revision, "local_files_only": local_only}
    if "safety_checker" in config:  # never download a safety checker; the gallery is curated by hand
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    quantization = _quantization(picture, config, target, torch_dtype, diffusers)
    if quantization is not None:
        kwargs.update(quantization_config=quantization)
    pipe = cls.from_pretrained(source, **kwargs)
    pipe._gallery_quantized = quantized_parts(config) if quantization is not None else {}
    return pipe


# render.quantize quantizes the denoiser, and each text encoder but CLIP's: CLIP-L and -G hold 0.1-0.7B
# parameters, which diffusers' quantization guides leave whole, where T5-XXL holds 4.7B and the Gemma and
# Qwen encoders 2-7B. The VAE is small and has few linear layers.
DENOISERS = ("unet", "transformer")
SMALL_TEXT_ENCODERS = ("CLIPTextModel", "CLIPTextModelWithProjection")
BACKENDS = {"int8": "torchao int8 weight-only", "nf4": "bitsandbytes nf4"}
BACKEND_LIBRARIES = {"int8": "torchao", "nf4": "bitsandbytes"}


def quantized_parts(index: dict) -> dict[str, str]:
    """{part: its library} of the parts render.quantize quantizes, read from model_index.json."""
    parts = {}
    for name, entry in index.items():
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in ("diffusers", "transformers")):
            continue  # config keys (_class_name ...), absent parts ([null, null]), tokenizers of other libraries
        library, cls = entry
        denoiser = name in DENOISERS and library == "diffusers"
        if denoiser or (
            name.startswith("text_encoder") and library == "transformers" and cls not in SMALL_TEXT_ENCODERS
        ):
            parts[name] = library
    return parts


def _quantization(picture: Picture, index: dict, target: Target, torch_dtype, diffusers):
    """diffusers' PipelineQuantizationConfig for render.quantize (None for none). A backend this machine
    cannot run is a SettingError, before any weight is read."""
    if picture.quantize == "none":
        return None
    import transformers

    parts = quantized_parts(index)
    if not any(name in DENOISERS for name in parts):
        raise SettingError(
            f"{index.get('_class_name', 'this model')} has no unet or transformer for quantize: {picture.quantize}",
            setting="quantize",
            picture=picture,
            hint="set quantize: none",
        )
    check_quantize(picture, target)
    configs = {}
    if picture.quantize == "nf4":
        kwargs = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch_dtype}
        for name, library in parts.items():
            make = diffusers.BitsAndBytesConfig if library == "diffusers" else transformers.BitsAndBytesConfig
            configs[name] = make(**kwargs)
    else:
        from torchao.quantization import Int8WeightOnlyConfig

        for name, library in parts.items():
            make = diffusers.TorchAoConfig if library == "diffusers" else transformers.TorchAoConfig
            configs[name] = make(Int8WeightOnlyConfig())
    return diffusers.PipelineQuantizationConfig(quant_mapping=configs)


def check_quantize(picture: Picture, target: Target) -> None:
    """A SettingError where this machine cannot run `picture`'s render.quantize: nf4 off a CUDA GPU, or a
    backend that does not import. Milliseconds: no model is read."""
    if picture.quantize == "nf4":
        if not target.device.startswith("cuda"):
            raise SettingError(
                f"quantize: nf4 (bitsandbytes) runs on CUDA GPUs only, and this build renders on {target.device}",
                setting="quantize",
                picture=picture,
                hint="use quantize: int8 (torchao), which runs on the CPU too, or quantize: none",
            )
        _need("bitsandbytes", picture, "pip install 'prompt-gallery[nf4]' (bitsandbytes), on a machine with a CUDA GPU")
    elif picture.quantize == "int8":
        _need("torchao", picture, "pip install 'prompt-gallery[quantize]' (torchao)")


def _need(module: str, picture: Picture, install: str) -> None:
    """Import `module` (a quantization backend) or say, at render.quantize's line, how to install it."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as err:  # ImportError, or a build for another torch failing as it loads
        why = f"{type(err).__name__}: {err}".splitlines()[0]
        raise SettingError(
            f"quantize: {picture.quantize} needs {module}, which does not import here ({why})",
            setting="quantize",
            picture=picture,
            hint=install,
        ) from None


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


def _load_single_file(picture: Picture, torch_dtype, diffusers):
    name = picture.pipeline
    if name == "auto":
        from safetensors import safe_open

        with safe_open(picture.model, framework="pt") as f:
            is_xl = any(k.startswith("conditioner.embedders.1") for k in f.keys())  # noqa: SIM118 (not a dict)
        name = "StableDiffusionXLPipeline" if is_xl else "StableDiffusionPipeline"
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_single_file"):
        raise ModelLoadError(f"{name} cannot load a single .safetensors file; convert it to a diffusers folder")
    return cls.from_single_file(picture.model, torch_dtype=torch_dtype)


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "model_index.json", revision=revision), str)


def _offline_message(picture: Picture | Upscale, setting: str = "render.model") -> str:
    model = _model_of(picture)
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if isinstance(picture, Upscale) and picture.kind.loader == "spandrel":
        download, local = " ".join(hub_file(model)), "local .pth or .safetensors file"
    else:
        download = model
        local = "local diffusers folder" + (" or .safetensors file" if setting == "render.model" else "")
    return (
        f"cannot load model '{model}'"
        + (f" (revision {picture.revision})" if picture.revision else "")
        + ": it is not in the local Hugging Face cache and the hub cannot be reached"
        + (" (HF_HUB_OFFLINE=1)" if offline else "")
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
        return
    cls = getattr(diffusers, choice.cls, None) if choice.cls else type(own)
    if cls is None:
        raise ModelLoadError(f"diffusers {diffusers.__version__} has no scheduler class '{choice.cls}'")
    given = dict(picture.scheduler_options)
    if given:
        _check_scheduler_options(cls, own.config, options, given, picture)
    pipe.scheduler = cls.from_config(own.config, **options)


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


def set_loras(pipe, picture: Picture) -> list[dict]:
    """Give `pipe` the LoRAs `picture` asks for, at their scales, and only those: each file is loaded
    once per pipeline (an adapter of its own), then switched on and off per picture, so moving
    between cells that differ only in LoRAs never reloads the model. Returns what each LoRA was
    (name, scale, AUTOMATIC1111's short hash), for the image's metadata."""
    loaded: dict[tuple[str, str | None], tuple[str, str]] = pipe.__dict__.setdefault("_gallery_loras", {})
    for i, lora in enumerate(picture.loras):
        if (lora.model, lora.revision) not in loaded:
            loaded[(lora.model, lora.revision)] = _load_lora(pipe, lora, f"gallery_{len(loaded)}", picture, i)
    if not loaded:
        return []
    if not picture.loras:
        pipe.disable_lora()  # the layers step aside: the model's own output, bit for bit (tests/test_loras.py)
        return []
    pipe.enable_lora()
    adapters = [loaded[(lora.model, lora.revision)] for lora in picture.loras]
    pipe.set_adapters([name for name, _ in adapters], [lora.scale for lora in picture.loras])
    return [
        {"name": lora.name, "scale": lora.scale, "hash": short_hash}
        for lora, (_, short_hash) in zip(picture.loras, adapters, strict=True)
    ]


def _load_lora(pipe, lora: Lora, adapter: str, picture: Picture, index: int) -> tuple[str, str]:
    """Load one LoRA file into `pipe` as `adapter`; (adapter, its short hash). A file that fits none of
    the model's parts, or that the loader refuses, is a prompts.yaml mistake: a SettingError."""
    path = _lora_path(lora)
    setting = f"loras[{index}]"
    if not hasattr(pipe, "load_lora_weights"):
        raise SettingError(
            f"{type(pipe).__name__} cannot take LoRAs (diffusers has no LoRA loader for it)",
            setting=setting,
            picture=picture,
            hint="leave loras: out for this model",
        )
    before = _adapters(pipe)
    diffusers_log = logging.getLogger("diffusers")
    level = diffusers_log.level
    try:
        diffusers_log.setLevel(logging.CRITICAL)  # it logs a refusal in full before raising it: we say it once
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe.load_lora_weights(path, adapter_name=adapter, use_safetensors=True)  # never a pickle
    except Exception as err:  # a LoRA of another architecture, a damaged file, a peft too old ...
        with contextlib.suppress(Exception):  # leave nothing half-loaded behind
            pipe.delete_adapters(adapter)
        lines = [line.strip() for line in f"{type(err).__name__}: {err}".splitlines() if line.strip()]
        why = lines[0] + (f" {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else "")
        raise SettingError(
            f"cannot apply LoRA '{lora.model}' to {type(pipe).__name__}: {why}",
            setting=setting,
            picture=picture,
            hint="is the LoRA made for this model's family (SD 1.x, SDXL, Flux ...)?",
        ) from None
    finally:
        diffusers_log.setLevel(level)
    if adapter not in _adapters(pipe) - before:
        raise SettingError(
            f"LoRA '{lora.model}' fits none of {type(pipe).__name__}'s parts: none of its weights' names "
            "match this model, so it would change nothing",
            setting=setting,
            picture=picture,
            hint="is the LoRA made for this model's family (SD 1.x, SDXL, Flux ...)?",
        )
    return adapter, a1111_lora_hash(path)


def _adapters(pipe) -> set[str]:
    try:
        return {name for names in pipe.get_list_adapters().values() for name in names}
    except Exception:  # no adapters yet, on some versions
        return set()


def _lora_path(lora: Lora) -> str:
    """A local LoRA file as it is; a hub file from the hub cache, fetched if it must be."""
    if lora.is_local:
        return lora.model
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo, filename = hub_file(lora.model)
    cached = try_to_load_from_cache(repo, filename, revision=lora.revision)
    if isinstance(cached, str):
        return cached
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if not hub_reachable():
        raise ModelLoadError(
            f"cannot load LoRA '{lora.model}'"
            + (f" (revision {lora.revision})" if lora.revision else "")
            + ": it is not in the local Hugging Face cache and the hub cannot be reached"
            + (" (HF_HUB_OFFLINE=1)" if offline else "")
            + f". Run once with network access, or `hf download {repo} {filename}` on a machine that has it "
            "and copy the cache (HF_HOME), or give the LoRA as a local .safetensors file."
        )
    try:
        return hf_hub_download(repo, filename, revision=lora.revision)
    except Exception as err:  # the hub client raises many kinds; all mean "cannot fetch"
        raise ModelLoadError(
            f"cannot fetch LoRA '{lora.model}' (revision {lora.revision or 'main'}): "
            + f"{type(err).__name__}: {err}".splitlines()[0]
        ) from None


def a1111_lora_hash(path: str) -> str:
    """What AUTOMATIC1111 writes as a LoRA's hash (`Lora hashes`): the first 12 hex digits of the
    SHA-256 of a .safetensors file's tensor data, its header left out (kohya-ss's "addnet" hash)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
        f.seek(8 + header)
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


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
