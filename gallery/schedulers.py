"""Scheduler names a user may write, the diffusers class each one means, and its A1111 label.

Pure data: planning and keying use it without importing diffusers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerChoice:
    name: str  # canonical, lower case; part of the cache key
    cls: str | None  # diffusers class name; None keeps the pipeline's own scheduler
    options: tuple[tuple[str, object], ...] = ()  # config overrides implied by the name
    label: str = ""  # what AUTOMATIC1111 calls it ("Sampler: ...")


KNOWN: dict[str, SchedulerChoice] = {
    c.name: c
    for c in (
        SchedulerChoice("default", None, (), "Default"),
        SchedulerChoice("ddim", "DDIMScheduler", (), "DDIM"),
        SchedulerChoice("pndm", "PNDMScheduler", (), "PLMS"),
        SchedulerChoice("lms", "LMSDiscreteScheduler", (), "LMS"),
        SchedulerChoice("euler", "EulerDiscreteScheduler", (), "Euler"),
        SchedulerChoice("euler_a", "EulerAncestralDiscreteScheduler", (), "Euler a"),
        SchedulerChoice("heun", "HeunDiscreteScheduler", (), "Heun"),
        SchedulerChoice("dpm++_2m", "DPMSolverMultistepScheduler", (), "DPM++ 2M"),
        SchedulerChoice(
            "dpm++_2m_karras", "DPMSolverMultistepScheduler", (("use_karras_sigmas", True),), "DPM++ 2M Karras"
        ),
        SchedulerChoice("dpm++_sde", "DPMSolverSinglestepScheduler", (), "DPM++ SDE"),
        SchedulerChoice("unipc", "UniPCMultistepScheduler", (), "UniPC"),
        SchedulerChoice("ddpm", "DDPMScheduler", (), "DDPM"),
    )
}

CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*Scheduler$")


def resolve(name: str) -> SchedulerChoice | None:
    """The choice a user's spelling means ('DDIM', 'ddim', 'DDIMScheduler'), or None if unknown."""
    lowered = name.strip().lower().replace(" ", "_").replace("-", "_")
    if lowered in KNOWN:
        return KNOWN[lowered]
    for choice in KNOWN.values():
        if choice.cls == name and not choice.options:
            return choice
    if CLASS_NAME.fullmatch(name):  # any other diffusers scheduler class, checked when loading
        return SchedulerChoice(name, name, (), name.removesuffix("Scheduler"))
    return None


def choice(name: str) -> SchedulerChoice:
    """The choice of a name the config has already accepted (so resolve() knows it)."""
    found = resolve(name)
    if found is None:
        raise ValueError(f"unknown scheduler {name!r}")
    return found


# Schedulers that no name above stands for, as AUTOMATIC1111 and its forks label them.
_MORE_LABELS = {
    "LCMScheduler": "LCM",
    "FlowMatchEulerDiscreteScheduler": "Euler",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DEISMultistepScheduler": "DEIS",
    "DPMSolverSDEScheduler": "DPM++ SDE",
}


def label_of(class_name: str, config: dict | None = None) -> str:
    """What AUTOMATIC1111 calls the scheduler that ran (the model's own, when the config says
    'default'): never 'Default'. `config` is the scheduler's, for Karras sigmas."""
    plain = {c.cls: c.label for c in KNOWN.values() if c.cls and not c.options}
    label = plain.get(class_name) or _MORE_LABELS.get(class_name) or class_name.removesuffix("Scheduler")
    if (config or {}).get("use_karras_sigmas") and "Karras" not in label:
        label += " Karras"
    return label
