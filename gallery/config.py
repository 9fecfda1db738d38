"""prompts.yaml -> Config: load, validate, fill defaults. Pure data out; nothing is written.

What each key means, its type, range and default are declared once, in gallery.settings; this
module reads the document by that table and adds the checks that span keys (a model path, a cell,
a template). Every mistake becomes one ConfigError naming the file, the line and the key, with a hint.
"""

from __future__ import annotations

import difflib
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gallery import schedulers
from gallery.errors import ConfigError
from gallery.settings import (
    BY_NAME,
    LORA_FILE,
    LORA_SCALE,
    PIPELINE,
    RESERVED_NAMES,
    SAFE_KEY,
    SECTIONS,
    TEXTLIKE,
    UPSCALERS,
    WEIGHTS_SUFFIXES,
    Number,
    Text,
    Upscaler,
    call_given,
    got,
    kind_of,
    names,
    quoted,
)
from gallery.yamlsource import Located, dotted, load_yaml

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_FILE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+/[\w./-]+$")  # owner/repo/path/in/repo.pth
BASE_EXAMPLE = "stabilityai/stable-diffusion-xl-base-1.0"  # a `config:` example
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
WEBP_MAX_SIDE = 16383

# The keys each place takes, from the settings table.
PICTURE_KEYS = names("option")  # what an option may change for its cells
RUNTIME_KEYS = tuple(k for k in names("render") if k not in PICTURE_KEYS)
UPSCALE_KEYS = names("upscale")
TOP_KEYS = names("top") + SECTIONS
LORA_SCALE_KIND = Number(-LORA_SCALE, LORA_SCALE)  # a LoRA's scale, read as settings read numbers


@dataclass(frozen=True)
class Lora:
    """A LoRA applied to the model, at a scale."""

    model: str  # an absolute path to a local .safetensors file, or a hub file 'owner/repo/path/file.safetensors'
    revision: str | None = None
    scale: float = 1.0

    @property
    def is_local(self) -> bool:
        return self.model.startswith("/")

    @property
    def name(self) -> str:
        """What AUTOMATIC1111 calls it (`<lora:name:scale>`): the file's name without its suffix."""
        return Path(self.model).stem


@dataclass(frozen=True)
class Picture:
    """The settings that decide a picture (all of them go into the cache key)."""

    model: str  # hub id, or an absolute path to a local directory or .safetensors file
    revision: str | None
    pipeline: str  # "auto" or a diffusers pipeline class name
    # a single-file model's configs (and, for a denoiser alone, its other parts): hub id or local folder
    config: str | None = field(default=None, kw_only=True)
    scheduler: str  # canonical name from gallery.schedulers
    scheduler_options: tuple[tuple[str, Any], ...]
    steps: int
    guidance: float
    width: int
    height: int
    negative_prompt: str
    quantize: str = "none"  # "none", "int8" (torchao) or "nf4" (bitsandbytes): see settings.QUANTIZE
    call: tuple[tuple[str, Any], ...] = ()  # the pipeline's own call arguments, sorted by name (lists as tuples)
    loras: tuple[Lora, ...] = ()

    @property
    def is_local(self) -> bool:
        return self.model.startswith("/")

    @property
    def is_single_file(self) -> bool:
        return self.model.endswith(".safetensors")

    @property
    def config_source(self) -> str | None:
        """Where a single-file model's configs come from, where the file is one and `config` is set:
        the only case in which it decides anything."""
        return self.config if self.is_single_file else None

    @property
    def model_name(self) -> str:
        """What the page and the PNG metadata call the model."""
        return Path(self.model).name if self.is_local else self.model


@dataclass(frozen=True)
class Runtime:
    """How to render: none of this changes the picture, so none of it is in the cache key."""

    samples: int
    seed: int
    device: str
    dtype: str
    batch_size: int | None  # None: chosen from the device and the image size
    attention_slicing: bool
    vae_tiling: bool
    cpu_offload: str  # "none", "model", "sequential" or "group"
    # the accelerations (gallery/speedups.py); `auto` is resolved for the device there
    compile: str = "auto"  # "off", "denoiser" or "all"
    channels_last: str = "auto"  # "on" or "off"
    fuse_qkv: str = "auto"  # "on" or "off"


@dataclass(frozen=True)
class Option:
    key: str
    label: str
    prompt: str
    overrides: tuple[tuple[str, Any], ...] = ()  # Picture fields this option changes


@dataclass(frozen=True)
class Axis:
    name: str
    label: str
    options: tuple[Option, ...]

    def option(self, key: str) -> Option:
        return next(o for o in self.options if o.key == key)


VIEW_MODES = ("cell", "grid")
# Query parameters the page keeps its state in beside the axes' own (prompt-gallery.js): no axis
# may take one of these names, nor those kept for search and compare.
PAGE_PARAMS = ("view", "rows", "cols", "sample", "q", "compare", "mark")


@dataclass(frozen=True)
class View:
    """What a reader first sees (page.view); the page's URL overrides each part."""

    mode: str  # cell: one cell at a time; grid: two axes as rows and columns
    rows: str | None  # the grid's row axis; None: one row (a one-axis gallery)
    columns: str  # the grid's column axis
    sample: int | str  # the sample each grid cell shows, from 1; or "all": a strip per cell


@dataclass(frozen=True)
class Page:
    title: str
    slug: str
    description: str
    importance: int | None
    category: str | None
    layout: str
    default: tuple[str, ...]  # the cell shown first: one option key per axis
    cover: tuple[str, ...]  # the cell whose first image is the card's cover picture
    view: View  # what a reader first sees
    intro: str  # Markdown above the gallery
    body: str  # Markdown below it


@dataclass(frozen=True)
class Site:
    title: str
    description: str
    url: str
    baseurl: str


@dataclass(frozen=True)
class Upscale:
    """The optional stage after rendering (the original page's step 5)."""

    upscaler: str  # a key of UPSCALERS
    factor: int | None  # 2x, 4x ...
    size: int | None  # or a target size for the long side, in pixels
    model: str | None = None  # hub id (esrgan: owner/repo/file), or an absolute path to a local folder (esrgan: file)
    revision: str | None = None
    steps: int | None = None
    guidance: float | None = None
    noise_level: int | None = None
    tile: int | None = None  # esrgan: tile side in source pixels (0: whole images)
    tile_overlap: int | None = None  # esrgan: pixels each tile shares with its neighbours, blended
    batch_size: int | None = None  # images (esrgan: tiles) per model call; None: chosen from the device

    @property
    def kind(self) -> Upscaler:
        return UPSCALERS[self.upscaler]

    @property
    def is_local(self) -> bool:
        return self.model is not None and self.model.startswith("/")

    @property
    def model_name(self) -> str | None:
        return Path(self.model).name if self.model and self.is_local else self.model

    @property
    def label(self) -> str:
        """What the page and the PNG call it: the upscaler, its model where not the usual one, the size."""
        name = self.kind.label
        if self.model and self.model != self.kind.default_model:
            name += f" ({self.model_name})"
        return f"{name} {self.factor}x" if self.factor else f"{name} to {self.size}px"


@dataclass(frozen=True)
class Config:
    source: Path
    axes: tuple[Axis, ...]
    prompt_template: str | None  # None: the options' prompt fragments joined with a space
    picture: Picture  # defaults before per-option overrides
    runtime: Runtime
    page: Page
    site: Site
    cache_dir: Path
    site_dir: Path
    templates_dir: Path
    max_images: int
    upscale: Upscale | None = None
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def line(self, key: str) -> int | None:
        """The line of prompts.yaml that sets `key` (dotted, e.g. 'limits.max_images'), for messages."""
        while key and key not in self.key_lines:
            key = key.rpartition(".")[0]
        return self.key_lines.get(key)

    def setting_key(self, picture: Picture, setting: str) -> str:
        """The dotted key that gives `picture` its `setting` (a Picture field, maybe with a sub-key:
        'scheduler_options.shift'): an option's render that sets this value, else render."""
        name = re.split(r"[.\[]", setting, maxsplit=1)[0]
        for axis in self.axes:
            for option in axis.options:
                if (name, getattr(picture, name)) in option.overrides:
                    for render in (f"axes.{axis.name}.{option.key}", f"axes.{axis.name}.options.{option.key}"):
                        # an option's call: may set other arguments than the one meant (it changes render's)
                        if f"{render}.render" in self.key_lines and (
                            setting == name or f"{render}.render.{setting}" in self.key_lines
                        ):
                            return f"{render}.render.{setting}"
        return f"render.{setting}"


def load_config(path: str | Path) -> Config:
    path = Path(path)
    display = str(path)
    if not path.is_file():
        raise ConfigError(
            "file not found", file=display, hint="run from the folder that holds prompts.yaml, or pass --config PATH"
        )
    try:
        located = load_yaml(path)
        return _Reader(located, path.resolve().parent).config(path)
    except ConfigError as err:
        raise err.at(display) from None


class _At:
    """One key's place in the document, as gallery.settings' kinds need it (settings.Where)."""

    def __init__(self, reader: _Reader, path: tuple):
        self.reader, self.path = reader, path

    def fail(self, message: str, hint: str | None = None) -> ConfigError:
        return self.reader.fail(self.path, message, hint)

    def written(self, value: Any) -> str:
        return self.reader.as_written(self.path, value)


class _Reader:
    """Walks the located document section by section; each value is checked where it stands."""

    def __init__(self, doc: Located, root: Path):
        self.doc = doc
        self.root = root
        self.raw_overrides: dict[tuple[str, str], tuple[dict, tuple]] = {}  # (axis, option) -> (render, path)

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, path: tuple, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, line=self.doc.line(path), key=dotted(path) or None, hint=hint)

    def mapping(self, value: Any, path: tuple, allowed: tuple[str, ...] | None, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping of {what}, got {kind_of(value)}")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
                    raise self.fail(path + (key,), "unknown key", hint)
        return value

    def section(self, place: str, value: Any, path: tuple, what: str) -> dict:
        """The mapping at `path`, its keys checked against the settings of `place`."""
        return self.mapping(value, path, names(place), what)

    def given(self, place: str, section: dict, path: tuple) -> dict[str, Any]:
        """The settings of `place` that `section` gives (null ones count as absent), each read and
        checked by its declared kind. Special ones are left to the caller, which knows their context;
        keys of other places (`section` was checked before) are left out."""
        settings = BY_NAME[place]
        return {
            key: settings[key].kind.read(value, _At(self, path + (key,)))
            for key, value in section.items()
            if value is not None and key in settings and not settings[key].special
        }

    def text(self, section: dict, key: str, path: tuple, *, empty_ok: bool = True) -> str | None:
        """A text value of a special setting (model, scheduler ...), or None where absent."""
        if section.get(key) is None:
            return None
        return Text(empty_ok=empty_ok).read(section[key], _At(self, path + (key,)))

    def as_written(self, path: tuple, value: Any) -> str:
        """A text, number or date as the file spells it (YAML reads 0123456 as 42798 and 1.10 as 1.1)."""
        return value if isinstance(value, str) else self.doc.texts.get(path, str(value))

    # -- the document ----------------------------------------------------------------------
    def config(self, source: Path) -> Config:
        if self.doc.data is None:
            raise self.fail((), "the file is empty", "list at least one axis under 'axes:' (see the README)")
        if not isinstance(self.doc.data, dict):
            raise self.fail(
                (),
                f"the file must be a mapping (axes:, render:, ...), got {kind_of(self.doc.data)}",
                "start with 'axes:' at the beginning of a line (see the README)",
            )
        top = self.mapping(self.doc.data, (), TOP_KEYS, "sections")
        if "axes" not in top:
            raise self.fail((), "missing 'axes'", "list at least one axis, e.g. axes: {subject: {cat: a cat}}")
        axes = self.axes(top["axes"])
        prompt_template = self.prompt_template(top, axes)
        render = self.section("render", top.get("render"), ("render",), "render settings")
        picture = self.picture(render, ("render",), None)
        axes = tuple(
            Axis(
                a.name,
                a.label,
                tuple(Option(o.key, o.label, o.prompt, self.overrides(a.name, o.key, picture)) for o in a.options),
            )
            for a in axes
        )
        runtime = self.runtime(render)
        page = self.page(top.get("page"), axes, runtime.samples)
        paths = self.section("paths", top.get("paths"), ("paths",), "folders")
        limits = self.section("limits", top.get("limits"), ("limits",), "limits")
        config = Config(
            source=source,
            axes=axes,
            prompt_template=prompt_template,
            picture=picture,
            runtime=runtime,
            page=page,
            site=self.site(top.get("site"), page),
            cache_dir=self.folder(paths, "cache"),
            site_dir=self.folder(paths, "site"),
            templates_dir=self.folder(paths, "templates"),
            upscale=self.upscale(top.get("upscale")),
            key_lines={dotted(p): line for p, line in self.doc.lines.items() if p},
            **_with_defaults("limits", self.given("limits", limits, ("limits",))),
        )
        if runtime.seed + runtime.samples > 2**63:
            raise self.fail(("render", "seed"), "seed + samples must stay below 2**63")
        self.check_output_size(config)
        return config

    def check_output_size(self, config: Config) -> None:
        """The page's full-size copies are WebP, which holds at most 16383 pixels a side: refuse an
        upscale past it now, not after the renders."""
        if not config.upscale or not config.upscale.factor:
            return
        sides = [config.picture.width, config.picture.height]
        sides += [
            value
            for axis in config.axes
            for option in axis.options
            for key, value in option.overrides
            if key in ("width", "height")
        ]
        largest = max(sides) * config.upscale.factor
        if largest > WEBP_MAX_SIDE:
            raise self.fail(
                ("upscale", "factor"),
                f"{max(sides)}px upscaled {config.upscale.factor}x is {largest}px, "
                f"more than the {WEBP_MAX_SIDE}px a side the page's WebP copies hold",
                "use a smaller factor, or size: (the long side in pixels) instead",
            )

    def axes(self, value: Any) -> tuple[Axis, ...]:
        axes_map = self.mapping(value, ("axes",), None, "axes")
        if not axes_map:
            raise self.fail(("axes",), "must list at least one axis")
        seen_lower: dict[str, str] = {}
        result = []
        for name, axis_value in axes_map.items():
            path = ("axes", name)
            self.safe_key(name, path, seen_lower, "axis name")
            if name.lower() in PAGE_PARAMS:
                raise self.fail(
                    path,
                    f"'{name}' names part of the page's state in its links (?{name}=...), not an axis",
                    f"rename the axis; these names are taken: {', '.join(PAGE_PARAMS)}",
                )
            options_path: tuple
            if isinstance(axis_value, dict) and "options" in axis_value:
                section = self.mapping(axis_value, path, ("label", "options"), "axis settings")
                options_value = section["options"]
                label = self.text(section, "label", path, empty_ok=False)
                options_path = path + ("options",)
            else:
                options_value, label, options_path = axis_value, None, path
            label = label or name.replace("_", " ").replace("-", " ").strip().capitalize()
            result.append(Axis(name, label, self.options(name, options_value, options_path)))
        return tuple(result)

    def options(self, axis: str, value: Any, path: tuple) -> tuple[Option, ...]:
        if value is None or value == {} or value == []:
            raise self.fail(path, "this axis has no options", "list at least one option: key: prompt text")
        if isinstance(value, list):
            raise self.fail(
                path,
                "options must be a mapping of key: prompt text, not a list",
                "write each option as `key: prompt text` (the key names it in file names and URLs)",
            )
        options_map = self.mapping(value, path, None, "options")
        seen_lower: dict[str, str] = {}
        result = []
        for key, option_value in options_map.items():
            opath = path + (key,)
            self.safe_key(key, opath, seen_lower, "option key")
            if isinstance(option_value, dict):
                section = self.mapping(option_value, opath, ("prompt", "label", "render"), "option settings")
                prompt = self.text(section, "prompt", opath)
                if prompt is None:
                    raise self.fail(opath, "missing 'prompt'", "give the prompt text this option adds")
                label = self.text(section, "label", opath, empty_ok=False) or prompt.strip() or key
                # checked once the defaults are known (see overrides())
                overrides = self.section(
                    "option", section.get("render"), opath + ("render",), "render settings an option may change"
                )
                self.raw_overrides[(axis, key)] = (overrides, opath + ("render",))
                result.append(Option(key, label, prompt))
            elif isinstance(option_value, TEXTLIKE) and not isinstance(option_value, bool):
                prompt = self.as_written(opath, option_value)
                result.append(Option(key, prompt.strip() or key, prompt))
            elif option_value is None:
                result.append(Option(key, key, ""))
            else:
                raise self.fail(opath, f"must be prompt text or a mapping with 'prompt', got {got(option_value)}")
        return tuple(result)

    def safe_key(self, key: str, path: tuple, seen_lower: dict[str, str], what: str) -> None:
        if key.lower() in RESERVED_NAMES:
            raise self.fail(
                path,
                f"{what} {quoted(key)} is a name Windows reserves; a checkout of the site there would fail",
                f"rename it, e.g. {key}_",
            )
        if not SAFE_KEY.fullmatch(key):
            raise self.fail(
                path,
                f"{what} {quoted(key)} is not safe for file names and URLs",
                "use letters A-Z, digits, '_' and '-' (at most 64, starting with a letter or digit)",
            )
        if key.lower() in seen_lower:
            raise self.fail(
                path,
                f"{what} {quoted(key)} clashes with {quoted(seen_lower[key.lower()])} on case-insensitive file systems",
                "rename one of them",
            )
        seen_lower[key.lower()] = key

    def prompt_template(self, top: dict, axes: tuple[Axis, ...]) -> str | None:
        template = self.text(top, "prompt", (), empty_ok=False)
        if template is None:
            return None
        names_ = {a.name for a in axes}
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
        except ValueError as err:
            raise self.fail(
                ("prompt",),
                f"bad template: {err}",
                "write axis names in braces: '{subject} {style}'; double a literal brace: '{{'",
            ) from None
        for name, spec, conv in fields:
            if name not in names_:
                close = difflib.get_close_matches(name, sorted(names_), n=1)
                hint = f"did you mean '{{{close[0]}}}'?" if close else f"axes are: {', '.join(sorted(names_))}"
                raise self.fail(("prompt",), f"{quoted('{' + name + '}')} is not an axis", hint)
            if spec or conv:
                written = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
                raise self.fail(
                    ("prompt",),
                    f"{quoted(written)} may not have a '!' conversion or ':' format spec",
                    f"write just {quoted('{' + name + '}')}; double a literal brace: '{{{{'",
                )
        return template

    # -- render ----------------------------------------------------------------------------
    def picture(self, section: dict, path: tuple, base: Picture | None) -> Picture:
        """Picture settings from `section`; missing keys come from `base` (or the declared defaults)."""
        values = dict(vars(base)) if base else _with_defaults("option", {})
        values.update(self.given("option", section, path))
        if section.get("model") is not None:
            values["model"] = self.model(section, path)
        if section.get("pipeline") is not None:
            values["pipeline"] = self.pipeline(section, path)
        if section.get("config") is not None:
            values["config"] = self.model(section, path, key="config", single_file=False, example=BASE_EXAMPLE)
            if not values["model"].endswith(".safetensors"):
                raise self.fail(
                    path + ("config",),
                    f"config is for a single .safetensors model; {quoted(values['model'])} brings its own configs",
                    "leave config out, or set model: to a .safetensors file",
                )
        if section.get("scheduler") is not None:
            values["scheduler"] = self.scheduler(section, path)
        if section.get("scheduler_options") is not None:
            values["scheduler_options"] = self.scheduler_options(section, path)
        if section.get("call") is not None:
            values["call"] = self.call(section, path, dict(values["call"]))
        if section.get("loras") is not None:
            values["loras"] = self.loras(section, path)
        return Picture(**values)

    def call(self, section: dict, path: tuple, base: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The pipeline's own call arguments: `base` (render's, for an option) changed key by key;
        null drops one. Names the gallery gives from other settings are refused here; the rest are
        checked against the loaded pipeline (gallery.loading.check_call)."""
        given = self.mapping(section["call"], path + ("call",), None, "call arguments")
        merged = dict(base)
        for name, value in given.items():
            at = path + ("call", name)
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise self.fail(at, f"{quoted(name)} is not an argument name")
            why = call_given(name)
            if why:
                raise self.fail(at, f"the gallery sets {name} itself", why)
            if value is None:
                merged.pop(name, None)
                continue
            if isinstance(value, list):
                if not all(isinstance(v, (bool, int, float, str)) for v in value):
                    raise self.fail(at, "a list here may hold only plain values (numbers, text, true/false)")
                value = tuple(value)
            elif not isinstance(value, (bool, int, float, str)):
                raise self.fail(at, f"must be a plain value or a list of them, got {kind_of(value)}")
            if isinstance(value, float) and value != value:
                raise self.fail(at, "must be a number, not .nan")
            merged[name] = value
        return tuple(sorted(merged.items()))

    def loras(self, section: dict, path: tuple) -> tuple[Lora, ...]:
        value, lpath = section["loras"], path + ("loras",)
        if isinstance(value, (str, dict)):
            raise self.fail(
                lpath,
                f"must be a list of LoRAs, got {kind_of(value)}",
                "write loras: [{model: ./styles/ink.safetensors, scale: 0.8}]",
            )
        if not isinstance(value, list):
            raise self.fail(lpath, f"must be a list of LoRAs, got {got(value)}")
        loras, seen = [], set()
        for i, item in enumerate(value):
            at = lpath + (i,)
            entry = {"model": item} if isinstance(item, str) else item
            entry = self.mapping(entry, at, ("model", "scale", "revision"), "LoRA settings (model, scale, revision)")
            if entry.get("model") is None:
                raise self.fail(at, "missing 'model'", "give the LoRA's .safetensors file: {model: ./ink.safetensors}")
            model = self.lora_model(entry, at)
            revision = self.text(entry, "revision", at, empty_ok=False)
            if revision is not None and model.startswith("/"):
                raise self.fail(at + ("revision",), "a local file has no revision", "leave revision: out")
            scale = 1.0
            if entry.get("scale") is not None:
                scale = LORA_SCALE_KIND.read(entry["scale"], _At(self, at + ("scale",)))
            if (model, revision) in seen:
                raise self.fail(
                    at + ("model",), "this LoRA is already in the list", "give each LoRA once, with one scale"
                )
            seen.add((model, revision))
            loras.append(Lora(model, revision, scale))
        return tuple(loras)

    def lora_model(self, entry: dict, path: tuple) -> str:
        """A LoRA's file: a local .safetensors file, or one on the hub (owner/repo/path/file.safetensors)."""
        value = self.text(entry, "model", path, empty_ok=False)
        assert value is not None
        mpath = path + ("model",)
        if value.lower().endswith(PICKLE_SUFFIXES):
            raise self.fail(
                mpath,
                f"{quoted(value)} is a pickle, which can run code when loaded",
                "convert the LoRA to .safetensors and point model: at that",
            )
        kinds = "a local .safetensors file or a hub file like 'owner/repo/lora.safetensors'"
        if not LORA_FILE.fullmatch(value):
            if value.lower().endswith(".safetensors"):  # a name that ends in a newline
                raise self.fail(mpath, f"{quoted(value)} is not a file name", f"give {kinds}")
            raise self.fail(mpath, f"{quoted(value)} is not a .safetensors file", f"give {kinds}")
        candidate = self.local(value)
        if value.startswith((".", "/", "~")) or _exists(candidate):
            if candidate is None or not _exists(candidate):
                raise self.fail(mpath, f"no such file: {quoted(candidate or value)}", f"give {kinds}")
            if candidate.is_dir():
                raise self.fail(
                    mpath,
                    f"{quoted(candidate)} is a folder; a LoRA is one .safetensors file",
                    "point model: at the file (e.g. pytorch_lora_weights.safetensors) in it",
                )
            # absolute, but links left as written: the name is the LoRA's name in the PNG (a file in the
            # hub cache links to a blob named by its hash)
            return os.path.abspath(self.root / Path(value).expanduser())
        if not HUB_FILE.fullmatch(value) or ".." in value:
            raise self.fail(
                mpath,
                f"{quoted(value)} is neither an existing file nor a file on the hub",
                f"give {kinds} (owner/repo, then the file's path in the repo)",
            )
        return value

    def overrides(self, axis: str, key: str, defaults: Picture) -> tuple[tuple[str, Any], ...]:
        raw, path = self.raw_overrides.get((axis, key), ({}, ()))
        if not raw:
            return ()
        changed = self.picture(raw, path, defaults)
        return tuple((k, getattr(changed, k)) for k in PICTURE_KEYS if k in raw)

    def runtime(self, render: dict) -> Runtime:
        values = _with_defaults("render", self.given("render", render, ("render",)))
        return Runtime(**{k: values[k] for k in RUNTIME_KEYS})

    def model(
        self,
        section: dict,
        path: tuple,
        *,
        single_file: bool = True,
        example: str = "CompVis/ldm-text2im-large-256",
        key: str = "model",
    ) -> str:
        """A hub id or a local diffusers folder (or, where `single_file`, a .safetensors file), given
        under `key`."""
        value = self.text(section, key, path, empty_ok=False)
        assert value is not None  # the callers read it only where it is given
        mpath = path + (key,)
        if value.endswith(PICKLE_SUFFIXES):
            raise self.fail(
                mpath,
                f"{quoted(value)} is a pickle checkpoint, which can run code when loaded",
                f"convert it to .safetensors (or a diffusers folder) and point {key}: at that",
            )
        kinds = (
            "a diffusers folder (with model_index.json), a .safetensors file,"
            if single_file
            else "a diffusers folder (with model_index.json)"
        )
        looks_local = value.startswith((".", "/", "~")) or value.endswith(".safetensors")
        candidate = self.local(value)
        if looks_local or _exists(candidate):
            if candidate is None or not _exists(candidate):
                raise self.fail(
                    mpath,
                    f"no such file or folder: {quoted(candidate or value)}",
                    f"give {kinds} or a hub id like '{example}'",
                )
            try:  # a folder we may not read
                if candidate.is_dir() and not (candidate / "model_index.json").is_file():
                    raise self.fail(
                        mpath,
                        f"{quoted(candidate)} is not a diffusers folder (no model_index.json)",
                        f"point {key}: at the folder that `save_pretrained` wrote",
                    )
                if not candidate.is_dir() and (candidate.suffix != ".safetensors" or not single_file):
                    raise self.fail(
                        mpath,
                        f"{quoted(candidate)} is not " + ("a .safetensors file" if single_file else "a folder"),
                        f"give {kinds} or a hub id",
                    )
            except OSError as err:
                raise self.fail(mpath, f"cannot read {quoted(candidate)}: {err.strerror}") from None
            return str(candidate)
        if not HUB_ID.fullmatch(value) or ".." in value:
            raise self.fail(
                mpath,
                f"{quoted(value)} is neither a hub id nor an existing path",
                "a hub id looks like 'owner/name'; a local model is "
                + ("a folder or a .safetensors file" if single_file else "a diffusers folder"),
            )
        return value

    def local(self, value: str) -> Path | None:
        """`value` as a path from prompts.yaml's folder; None where it cannot be one (a NUL byte, ~nobody)."""
        try:
            return (self.root / Path(value).expanduser()).resolve()
        except (OSError, ValueError, RuntimeError):
            return None

    def scheduler(self, section: dict, path: tuple) -> str:
        value = self.text(section, "scheduler", path, empty_ok=False)
        assert value is not None
        choice = schedulers.resolve(value)
        if choice is None:
            close = difflib.get_close_matches(value.lower(), list(schedulers.KNOWN), n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else f"known: {', '.join(schedulers.KNOWN)}, or a diffusers class name such as DDIMScheduler"
            )
            raise self.fail(path + ("scheduler",), f"unknown scheduler {quoted(value)}", hint)
        return choice.name

    def scheduler_options(self, section: dict, path: tuple) -> tuple:
        opts = self.mapping(section["scheduler_options"], path + ("scheduler_options",), None, "scheduler settings")
        for key, value in opts.items():
            if not isinstance(value, (bool, int, float, str)):
                raise self.fail(path + ("scheduler_options", key), f"must be a plain value, got {kind_of(value)}")
        return tuple(sorted(opts.items()))

    def pipeline(self, section: dict, path: tuple) -> str:
        value = self.text(section, "pipeline", path, empty_ok=False)
        assert value is not None
        if not PIPELINE.fullmatch(value):
            raise self.fail(
                path + ("pipeline",),
                f"{quoted(value)} is not a diffusers pipeline class name",
                "use 'auto' (read from the model) or a class such as StableDiffusionXLPipeline",
            )
        return value

    # -- upscale ---------------------------------------------------------------------------
    def upscale(self, value: Any) -> Upscale | None:
        path = ("upscale",)
        section = self.section("upscale", value, path, "upscale settings")
        written = section.get("upscaler")
        if isinstance(written, str) and "esrgan" in written.lower() and written.lower() not in UPSCALERS:
            raise self.fail(
                path + ("upscaler",),
                f"unknown upscaler {quoted(written.lower())}",
                f"available: none, {', '.join(UPSCALERS)}; for Real-ESRGAN write upscaler: esrgan, "
                "with model: its .pth or .safetensors file",
            )
        name = self.given("upscale", {"upscaler": written}, path).get("upscaler", "none")
        if name == "none":
            if section and written is None:
                raise self.fail(
                    path,
                    "upscale settings without an upscaler",
                    f"add upscaler: (one of {', '.join(UPSCALERS)}), or write upscaler: none",
                )
            return None
        kind = UPSCALERS[name]
        for key in section:
            if key not in kind.settings:
                raise self.fail(
                    path + (key,), f"upscaler '{name}' takes no {key}", f"it takes: {', '.join(kind.settings)}"
                )
        if "factor" in section and "size" in section:
            raise self.fail(path + ("size",), "give either factor or size, not both")
        values = {s.name: s.default_for(name) for s in BY_NAME["upscale"].values()}
        values.update(self.given("upscale", section, path))
        if values["size"]:
            values["factor"] = None
        tile, overlap = values["tile"], values["tile_overlap"]
        if tile is not None and 0 < tile < 32:
            raise self.fail(path + ("tile",), "must be 0 (whole images) or at least 32 pixels")
        if tile and overlap is not None and overlap * 2 >= tile:
            raise self.fail(
                path + ("tile_overlap",),
                f"must be less than half the tile ({tile})",
                f"e.g. tile_overlap: {min(32, tile // 4)}",
            )
        if kind.loader == "spandrel":
            values["model"] = self.weights(section, path, kind)
        elif kind.loader == "diffusers":
            values["model"] = self.upscale_model(section, path, kind)
        return Upscale(**values)

    def upscale_model(self, section: dict, path: tuple, kind: Upscaler) -> str | None:
        """A latent upscaler's diffusers model: hub id or local folder, checked like render.model."""
        value = self.text(section, "model", path, empty_ok=False)
        if value is None:
            return kind.default_model
        if value.endswith(PICKLE_SUFFIXES + (".safetensors",)):
            pickle = value.endswith(PICKLE_SUFFIXES)
            raise self.fail(
                path + ("model",),
                f"{quoted(value)} is a single weights file"
                + (" (a pickle, which can run code when loaded)" if pickle else "")
                + f"; upscaler '{kind.name}' needs a diffusers folder or hub id",
                f"e.g. model: {kind.default_model}; for ESRGAN-family weights files write upscaler: esrgan",
            )
        return self.model(section, path, single_file=False, example=kind.default_model or "")

    def weights(self, section: dict, path: tuple, kind: Upscaler) -> str | None:
        """A super-resolution weights file: local (.pth, .safetensors ...) or on the hub (owner/repo/file)."""
        value = self.text(section, "model", path, empty_ok=False)
        if value is None:
            return kind.default_model
        mpath = path + ("model",)
        kinds = f"a weights file ({', '.join(WEIGHTS_SUFFIXES)}) or a hub file like '{kind.default_model}'"
        candidate = self.local(value)
        is_local = value.startswith((".", "/", "~")) or _exists(candidate)
        if is_local:
            if candidate is None or not _exists(candidate):
                raise self.fail(mpath, f"no such file: {quoted(candidate or value)}", f"give {kinds}")
            if candidate.is_dir():
                raise self.fail(
                    mpath,
                    f"{quoted(candidate)} is a folder; upscaler '{kind.name}' needs one weights file",
                    f"give {kinds}",
                )
        elif not HUB_FILE.fullmatch(value) or ".." in value:
            raise self.fail(
                mpath,
                f"{quoted(value)} is neither an existing file nor a file on the hub",
                f"give {kinds} (owner/repo, then the file's path in the repo)",
            )
        if not value.lower().endswith(WEIGHTS_SUFFIXES):
            raise self.fail(
                mpath,
                f"{quoted(value)} is not a weights file upscaler '{kind.name}' reads",
                f"give {kinds}; ONNX and NCNN exports are not PyTorch weights",
            )
        return str(candidate) if is_local else value

    # -- page, site, paths -----------------------------------------------------------------
    def page(self, value: Any, axes: tuple[Axis, ...], samples: int) -> Page:
        path = ("page",)
        section = self.section("page", value, path, "page settings")
        values = _with_defaults("page", self.given("page", section, path))
        values["slug"] = values["slug"] or _slugify(values["title"])
        first = tuple(a.options[0].key for a in axes)
        values["default"] = self.cell(section.get("default"), path + ("default",), axes, first)
        values["cover"] = self.cell(section.get("cover"), path + ("cover",), axes, values["default"])
        values["view"] = self.view(section.get("view"), path + ("view",), axes, samples)
        return Page(**values)

    def view(self, value: Any, path: tuple, axes: tuple[Axis, ...], samples: int) -> View:
        """page.view: `grid`, `cell`, or a mapping {mode, rows, columns, sample}."""
        if isinstance(value, str):
            value = {"mode": value}
            where = path
        else:
            where = path + ("mode",)
        given = self.mapping(value, path, ("mode", "rows", "columns", "sample"), "mode, rows, columns, sample")
        mode = given.get("mode", "cell")
        if mode not in VIEW_MODES:
            raise self.fail(where, f"{quoted(mode)} is not a view", "write cell or grid")
        names_ = [a.name for a in axes]

        def axis(key: str, fallback: str | None) -> str | None:
            name = given.get(key)
            if name is None:
                return fallback
            if not isinstance(name, str) or name not in names_:
                close = difflib.get_close_matches(str(name), names_, n=1)
                raise self.fail(
                    path + (key,),
                    f"{quoted(name)} is not an axis",
                    f"did you mean '{close[0]}'?" if close else f"axes: {', '.join(names_)}",
                )
            return name

        rows, columns = axis("rows", None), axis("columns", None)
        if len(names_) == 1:  # one axis: one row, its options as the columns
            rows, columns = None, names_[0]
        else:
            rows = rows or next(n for n in names_ if n != columns)
            columns = columns or next(n for n in names_ if n != rows)
            if rows == columns:
                raise self.fail(path + ("columns",), f"rows and columns are both '{rows}'", "choose two different axes")
        sample = given.get("sample", 1)
        if sample != "all" and (isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= samples):
            raise self.fail(
                path + ("sample",),
                f"must be a sample number from 1 to {samples} or 'all', got {got(sample)}",
                "the first sample is 1",
            )
        return View(mode, rows, columns, sample)

    def cell(self, value: Any, path: tuple, axes: tuple[Axis, ...], default: tuple[str, ...]) -> tuple[str, ...]:
        if value is None:
            return default
        chosen = self.mapping(value, path, tuple(a.name for a in axes), "axis: option key")
        cell = []
        for axis, fallback in zip(axes, default, strict=True):
            key = chosen.get(axis.name, fallback)
            if isinstance(key, TEXTLIKE) and not isinstance(key, bool):
                key = self.as_written(path + (axis.name,), key)
            keys = [o.key for o in axis.options]
            if not isinstance(key, str) or key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                raise self.fail(
                    path + (axis.name,),
                    f"{quoted(key)} is not an option of axis '{axis.name}'",
                    f"did you mean '{close[0]}'?" if close else f"options: {', '.join(keys)}",
                )
            cell.append(key)
        return tuple(cell)

    def site(self, value: Any, page: Page) -> Site:
        path = ("site",)
        values = _with_defaults("site", self.given("site", self.section("site", value, path, "site settings"), path))
        if values["title"] is None:
            values["title"] = page.title
        if values["description"] is None:
            values["description"] = page.description
        values["url"] = values["url"].rstrip("/")
        return Site(**values)

    def folder(self, paths: dict, key: str) -> Path:
        value = self.text(paths, key, ("paths",), empty_ok=False) or BY_NAME["paths"][key].default
        folder, hint = self.local(value), "give a folder, relative to prompts.yaml"
        if folder is None:
            raise self.fail(("paths", key), f"{quoted(value)} is not a usable path", hint)
        if _exists(folder) and not folder.is_dir():
            raise self.fail(("paths", key), f"{quoted(folder)} is a file, not a folder", hint)
        above = next((p for p in folder.parents if _exists(p)), None)
        if above is not None and not above.is_dir():
            raise self.fail(("paths", key), f"{quoted(folder)} is inside {quoted(above)}, which is a file", hint)
        return folder


def _with_defaults(place: str, given: dict[str, Any]) -> dict[str, Any]:
    """`given` completed with the declared default of every other setting of `place`."""
    return {name: given.get(name, setting.default) for name, setting in BY_NAME[place].items()}


def _slugify(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:64]
    return f"{slug}-gallery" if slug in RESERVED_NAMES else slug or "gallery"


def _exists(path: Path | None) -> bool:
    try:
        return path is not None and path.exists()
    except (OSError, ValueError):  # a name too long for the file system
        return False
