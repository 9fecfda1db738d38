"""Load a diffusers text-to-image pipeline from a hub id, a local folder or a .safetensors file,
and a latent upscaler (LDMSuperResolutionPipeline, StableDiffusionUpscalePipeline) from a hub id
or a local folder, with the same device, dtype and memory choices.

Imports torch/diffusers only when called (as do render.py and latent_upscale.py).
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from dataclasses import dataclass


from gallery import schedulers
from gallery.config import UPSCALERS, Picture, Runtime, Upscale
from gallery.errors import ModelLoadError


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
        raise ModelLoadError(f"render.device is '{device}' but PyTorch sees no CUDA GPU "
                             f"(torch {torch.__version__}); set device: auto or cpu, or install a CUDA build")
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
    import torch
    import diffusers

    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    torch_dtype = getattr(torch, target.dtype)
    try:
        if picture.model.endswith(".safetensors"):
            pipe = _load_single_file(picture, torch_dtype, diffusers)
        else:
            pipe = _load_pretrained(picture, torch_dtype, diffusers)
    except ModelLoadError:
        raise
    except Exception as err:  # diffusers raises many kinds; all mean "cannot load"
        raise ModelLoadError(_explain_load_failure(picture, err)) from None

    if "prompt" not in inspect.signature(pipe.__call__).parameters:
        raise ModelLoadError(f"{type(pipe).__name__} loaded from '{picture.model}' is not a text-to-image "
                             "pipeline (its __call__ takes no prompt); choose a text-to-image model")
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
        if runtime.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=target.device)
        else:
            pipe.enable_model_cpu_offload(device=target.device)
    else:
        pipe.to(target.device)


def check_upscaler(upscale: Upscale) -> None:
    """Stop on a wrong or unreachable upscaler model before anything is rendered: reads only its
    model_index.json, no weights."""
    quiet_libraries()
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


def _upscaler_index(upscale: Upscale, diffusers) -> tuple[type, dict, bool]:
    """The upscaler's pipeline class (checked against the model's own), model index, and local_only."""
    config, local_only = _model_index(upscale, diffusers, "upscale.model")
    found, wanted = config.get("_class_name"), upscale.kind.pipeline
    if found != wanted:
        other = next((name for name, u in UPSCALERS.items() if u.pipeline and u.pipeline == found), None)
        raise ModelLoadError(
            f"upscale.model '{upscale.model}' is {f'a {found}' if found else 'not a diffusers pipeline'}, not the "
            f"{wanted} that upscaler '{upscale.upscaler}' needs"
            + (f"; for this model write upscaler: {other}" if other else
               f"; give a model such as {upscale.kind.default_model}"))
    return getattr(diffusers, wanted), config, local_only


def _model_index(model: Picture | Upscale, diffusers, setting: str) -> tuple[dict, bool]:
    """The model's model_index.json, and whether to load it from the local hub cache only (offline)."""
    local_only = False
    if not model.is_local:
        cached = _in_hub_cache(model.model, model.revision)
        if not _hub_reachable():
            if not cached:  # say so now, instead of after the hub client's retries
                raise ModelLoadError(_offline_message(model, setting))
            local_only = True
    try:
        config = diffusers.DiffusionPipeline.load_config(model.model, revision=model.revision,
                                                         local_files_only=local_only)
    except Exception as err:  # diffusers raises many kinds; all mean "cannot load"
        raise ModelLoadError(_explain_load_failure(model, err, setting)) from None
    return config, local_only


def _load_pretrained(picture: Picture, torch_dtype, diffusers):
    source = picture.model
    config, local_only = _model_index(picture, diffusers, "render.model")
    cls_name = picture.pipeline if picture.pipeline != "auto" else config.get("_class_name", "DiffusionPipeline")
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise ModelLoadError(f"'{source}' needs pipeline class {cls_name}, which diffusers "
                             f"{diffusers.__version__} does not have; upgrade diffusers or set render.pipeline")
    kwargs = {"torch_dtype": torch_dtype, "revision": picture.revision, "local_files_only": local_only}
    if "safety_checker" in config:  # never download a safety checker; the gallery is curated by hand
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    return cls.from_pretrained(source, **kwargs)


def _load_single_file(picture: Picture, torch_dtype, diffusers):
    name = picture.pipeline
    if name == "auto":
        from safetensors import safe_open

        with safe_open(picture.model, framework="pt") as f:
            is_xl = any(k.startswith("conditioner.embedders.1") for k in f.keys())
        name = "StableDiffusionXLPipeline" if is_xl else "StableDiffusionPipeline"
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_single_file"):
        raise ModelLoadError(f"{name} cannot load a single .safetensors file; convert it to a diffusers folder")
    return cls.from_single_file(picture.model, torch_dtype=torch_dtype)


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "model_index.json", revision=revision), str)


def _hub_reachable(timeout: float = 5.0) -> bool:
    """One TCP connection to the hub: seconds, where the hub client's retries take half a minute."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_message(picture: Picture | Upscale, setting: str = "render.model") -> str:
    model = picture.model
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    local = "local diffusers folder" + (" or .safetensors file" if setting == "render.model" else "")
    return (f"cannot load model '{model}'"
            + (f" (revision {picture.revision})" if picture.revision else "")
            + ": it is not in the local Hugging Face cache and the hub cannot be reached"
            + (" (HF_HUB_OFFLINE=1)" if offline else "")
            + f". Run once with network access to download it, or `hf download {model}` on a "
              f"machine that has it and copy the cache (HF_HOME), or set {setting} to a {local}.")


def set_scheduler(pipe, picture: Picture, diffusers) -> None:
    """Give `pipe` the scheduler `picture` asks for, always derived from the model's own one
    (kept aside at first use), so one cell's choice never leaks into the next."""
    if not hasattr(pipe, "_gallery_model_scheduler"):
        pipe._gallery_model_scheduler = pipe.scheduler
    own = pipe._gallery_model_scheduler
    choice = schedulers.resolve(picture.scheduler)
    options = dict(choice.options + picture.scheduler_options)
    if choice.cls is None and not options:
        pipe.scheduler = own
        return
    cls = getattr(diffusers, choice.cls, None) if choice.cls else type(own)
    if cls is None:
        raise ModelLoadError(f"diffusers {diffusers.__version__} has no scheduler class '{choice.cls}'")
    pipe.scheduler = cls.from_config(own.config, **options)


def _explain_load_failure(picture: Picture | Upscale, err: Exception, setting: str = "render.model") -> str:
    model = picture.model
    name = type(err).__name__
    text = str(err)
    if picture.is_local:
        return f"cannot load the model at {model}: {name}: {text}".splitlines()[0]
    if "LocalEntryNotFound" in name or "offline" in text.lower():
        return _offline_message(picture, setting)
    if "401" in text or "403" in text or "gated" in text.lower():
        return (f"model '{model}' needs a Hugging Face login or licence acceptance: accept its terms on the hub "
                "and run `hf auth login` (or set HF_TOKEN)")
    if "404" in text or "RepositoryNotFound" in name or "RevisionNotFound" in name:
        return f"model '{model}' (revision {picture.revision or 'main'}) was not found on the hub; check {setting}"
    return f"cannot load model '{model}': {name}: {text}".splitlines()[0]


def call_parameters(pipe) -> set[str]:
    return set(inspect.signature(pipe.__call__).parameters)


def versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    from gallery import __version__

    return {"gallery": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__}


