"""The settings table (gallery.settings) described for others: a JSON Schema for editors, and the
reference tables of the README. Both are derived, never written by hand.

The schema checks shape and type (keys, kinds, ranges, choices) as an editor can while the file is
typed; what needs the disk or the whole file (a model path, a cell's options, a template's fields)
only `gallery plan` checks.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gallery.families import FAMILIES
from gallery.settings import BY_NAME, SAFE_KEY, SECTIONS, UPSCALERS, Setting, ecma, names


def json_schema() -> dict:
    """A JSON Schema (draft-07, which editors' YAML extensions read) for prompts.yaml."""
    option = {
        "anyOf": [
            {"type": ["string", "number", "null"], "description": "the prompt text this option adds"},
            {
                "type": "object",
                "required": ["prompt"],
                "additionalProperties": False,
                "properties": {
                    "prompt": {"type": ["string", "number"], "description": "the prompt text this option adds"},
                    "label": {"type": ["string", "number"], "minLength": 1, "description": "its dropdown label"},
                    "render": _section("option", "the picture settings this option changes for its cells"),
                },
            },
        ],
    }
    options = {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": ecma(SAFE_KEY.pattern)},
        "additionalProperties": option,
    }
    axis = {
        "anyOf": [
            {
                "type": "object",
                "required": ["options"],
                "additionalProperties": False,
                "properties": {
                    "label": {"type": ["string", "number"], "minLength": 1, "description": "the dropdown's label"},
                    "options": options,
                },
            },
            options,
        ]
    }
    properties: dict[str, Any] = {name: _property(setting) for name, setting in BY_NAME["top"].items()}
    properties["axes"] = dict(
        properties["axes"],
        type="object",
        minProperties=1,
        propertyNames={"pattern": ecma(SAFE_KEY.pattern)},
        additionalProperties=axis,
    )
    for section in SECTIONS:
        properties[section] = _section(section, _SECTION_MEANING[section])
    properties["upscale"]["allOf"] = [
        {
            "if": {"properties": {"upscaler": {"const": name}}, "required": ["upscaler"]},
            "then": {"propertyNames": {"enum": list(upscaler.settings)}},
        }
        for name, upscaler in UPSCALERS.items()
    ]
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "prompts.yaml of the prompt gallery generator",
        "description": "The matrix of prompts to render and the page to show them on.",
        "type": "object",
        "required": ["axes"],
        "additionalProperties": False,
        "properties": properties,
    }


def json_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


_SECTION_MEANING = {
    "render": "what decides the pictures, and how to render them",
    "upscale": "the optional stage after rendering",
    "page": "the gallery page",
    "site": "the standalone site/",
    "paths": "folders, relative to prompts.yaml",
    "limits": "safety limits",
}


def _section(place: str, meaning: str) -> dict:
    properties: dict[str, Any] = {}
    for name, setting in BY_NAME[place].items():
        properties[name] = _property(setting)
    return {"type": ["object", "null"], "description": meaning, "additionalProperties": False, "properties": properties}


def _property(setting: Setting) -> dict:
    schema = setting.kind.schema()
    if "type" in schema:  # null means the default, as in the reader
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = [*types, "null"]
    elif schema:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "description": _plain(f"{setting.meaning} (default: {setting.shown_default()})")}


def _plain(markdown: str) -> str:
    """Markdown as an editor's tooltip shows it: no links' addresses."""
    return re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", markdown)


# -- the README's reference tables --------------------------------------------------------------


def markdown_table(place: str) -> str:
    rows = ["| key | value | default | meaning |", "|---|---|---|---|"]
    for setting in BY_NAME[place].values():
        mark = "\\*" if place == "render" and "option" in setting.places else ""
        rows.append(
            f"| `{setting.name}`{mark} | {setting.kind.describe()} | {setting.shown_default()} | {setting.meaning} |"
        )
    if place == "render":
        rows.insert(
            0,
            "Keys marked \\* decide the picture: they are in the cache key, and an axis option may change "
            "them for its cells. The others say how to render and are not in the key.\n",
        )
    return "\n".join(rows) + "\n"


def option_keys() -> str:
    return ", ".join(f"`{name}`" for name in names("option"))


def families_table() -> str:
    """What each family records of guidance and the negative prompt (gallery.families)."""
    guidance = {
        "cfg": "`CFG scale` where guidance > 1, else not recorded",
        "cfg_unless_1": "`CFG scale` where guidance is not 1",
        "embedded": "`Distilled CFG Scale` where the model is guidance-distilled (its config says so), else not "
        "recorded",
    }
    rows = [
        "| family | pipeline class | guidance is recorded as | negative prompt is recorded | own `call` arguments |",
        "|---|---|---|---|---|",
    ]
    for cls, family in FAMILIES.items():
        negative = {
            "with_cfg": "where CFG runs",
            "none": "never (it has none; a warning says so)",
            "true_cfg": f"where `{family.switch}` > 1 (default {family.switch_default:g}); then `CFG scale` is that",
            "prior_cfg": f"where `guidance` or the prior's `{family.switch}` > 1 (default {family.switch_default:g})",
        }[family.negative]
        call = ", ".join(f"`{name}`" for name in family.call)
        rows.append(f"| {family.name} | `{cls}` | {guidance[family.guidance]} | {negative} | {call} |")
    return "\n".join(rows) + "\n"


def update_readme(text: str) -> str:
    """`text` (README.md) with every generated region rewritten from the settings table. A region
    runs from `<!-- settings: NAME -->` to `<!-- /settings -->`; NAME is a section (settings.SECTIONS),
    `option` (the keys an option may change) or `families` (gallery.families)."""

    def region(match: re.Match) -> str:
        name = match[1]
        body = option_keys() if name == "option" else families_table() if name == "families" else markdown_table(name)
        end = "" if name == "option" else "\n"
        return f"<!-- settings: {name} -->{end}{body}<!-- /settings -->"

    return re.sub(r"<!-- settings: (\w+) -->.*?<!-- /settings -->", region, text, flags=re.S)
