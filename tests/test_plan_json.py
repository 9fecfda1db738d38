"""`gallery plan --json`: the whole plan as one JSON document, against its documented format
(gallery/plan.schema.json and the README's section), the plan it describes, and the cache."""

import json
import re
import subprocess
import sys

import jsonschema
from PIL import Image

from conftest import REPO, write_prompts
from fake_cache import put_fake
from gallery.cli import main
from gallery.plan import recipe_key
from gallery.planjson import PLAN_JSON_VERSION, SCHEMA_PATH
from gallery.project import open_project

PROMPTS = """
    prompt: "{subject}, {style}"
    render: {model: hub/x, samples: 2, seed: 7, negative_prompt: blurry, width: 64, height: 64}
    upscale: {upscaler: lanczos, factor: 2}
    axes:
      subject: {cat: a cat, dog: {label: "Dög 🐕", prompt: a dog}}
      style:
        oil: oil painting
        ink: {prompt: ink drawing, render: {steps: 7}}
        zen: zen
"""


def plan_json(prompts, capsys) -> tuple[str, dict]:
    capsys.readouterr()
    assert main(["plan", "--json", "-c", str(prompts)]) == 0
    text = capsys.readouterr().out
    return text, json.loads(text)


def test_the_json_plan_validates_and_matches_the_plan(tmp_path, capsys):
    prompts = write_prompts(tmp_path, PROMPTS)
    _, doc = plan_json(prompts, capsys)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    assert doc["version"] == PLAN_JSON_VERSION == schema["properties"]["version"]["const"]

    plan = open_project(prompts).plan
    assert doc["counts"] == {"cells": 6, "images": 12, "cached": 0, "upscales": 12, "upscaled": 0}
    assert [a["name"] for a in doc["axes"]] == ["subject", "style"]
    assert doc["axes"][0]["options"][1] == {"key": "dog", "label": "Dög 🐕", "prompt": "a dog"}
    assert [c["path"] for c in doc["cells"]] == [c.path for c in plan.cells]  # plan order, last axis fastest
    assert doc["cells"][5]["options"] == {"subject": "dog", "style": "zen"}
    images = [i for c in doc["cells"] for i in c["images"]]
    assert [i["key"] for i in images] == [j.key for j in plan.jobs]
    assert [(i["sample"], i["seed"]) for i in images] == [(j.sample, j.seed) for j in plan.jobs]
    assert [i["recipe"] for i in images] == [j.recipe for j in plan.jobs]
    assert all(recipe_key(i["recipe"]) == i["key"] for i in images)  # a script can check each key itself
    assert {i["recipe"]["steps"] for i in doc["cells"][1]["images"]} == {7}  # the ink option's override
    assert doc["cells"][0]["prompt"] == "a cat, oil painting" and doc["cells"][0]["model"] == "hub/x"
    assert [u["source"] for u in doc["upscales"]] == [j.key for j in plan.jobs]
    assert [u["key"] for u in doc["upscales"]] == [plan.upscales[j.key].key for j in plan.jobs]
    assert doc["upscaler"] == "Lanczos 2x" and not any(u["cached"] for u in doc["upscales"])

    # cached flags follow the cache: one render and one upscale stored
    job = plan.jobs[3]
    put_fake(plan_cache := open_project(prompts).cache, job, Image.new("RGB", (64, 64), "red"))
    put_fake(plan_cache, plan.upscales[plan.jobs[5].key], Image.new("RGB", (128, 128), "blue"))
    _, doc = plan_json(prompts, capsys)
    images = [i for c in doc["cells"] for i in c["images"]]
    assert [i["cached"] for i in images] == [n == 3 for n in range(12)]
    assert [u["cached"] for u in doc["upscales"]] == [n == 5 for n in range(12)]
    assert doc["counts"]["cached"] == 1 and doc["counts"]["upscaled"] == 1


def test_the_json_plan_is_stable(tmp_path, capsys):
    prompts = write_prompts(tmp_path, PROMPTS)
    first, doc = plan_json(prompts, capsys)
    assert plan_json(prompts, capsys)[0] == first  # the same bytes every time
    assert first == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"  # keys sorted
    assert "Dög 🐕" in first  # UTF-8 as written


def test_without_upscale_and_negative_prompt_where_it_takes_no_effect(tmp_path, capsys):
    prompts = write_prompts(
        tmp_path,
        """
        render: {model: hub/x, negative_prompt: blurry}
        axes: {subject: {cat: a cat}}
        """,
    )
    _, doc = plan_json(prompts, capsys)
    assert doc["upscales"] == [] and doc["upscaler"] is None and doc["counts"]["upscales"] == 0
    cell = doc["cells"][0]
    # the hub model's files are not here: its family is unknown, so its recipe keeps every setting
    assert cell["negative_prompt"] == cell["images"][0]["recipe"]["negative_prompt"] == "blurry"


def test_human_plan_output_is_unchanged(tmp_path, capsys):
    prompts = write_prompts(tmp_path, PROMPTS)
    assert main(["plan", "-c", str(prompts)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{prompts}: 2 subject x 3 style = 6 cells x 2 samples = 12 images\n")
    assert "cached: 0   to render: 12" in out and "{" not in out


def test_a_bad_prompts_file_is_the_usual_error_with_json(tmp_path, capsys):
    prompts = write_prompts(tmp_path, "render: {steps: -3}\naxes: {subject: {cat: a cat}}\n")
    assert main(["plan", "-c", str(prompts)]) == 2
    usual = capsys.readouterr()
    assert main(["plan", "--json", "-c", str(prompts)]) == 2
    got = capsys.readouterr()
    assert got.out == "" and got.err == usual.err and re.search(r"prompts\.yaml:1: render\.steps: ", got.err)


def test_the_json_plan_imports_no_torch(tmp_path):
    prompts = write_prompts(tmp_path, PROMPTS)
    code = (
        "import sys; from gallery.cli import main; rc = main(['plan', '--json', '-c', sys.argv[1]]); "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "print('heavy:', heavy, file=sys.stderr); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(prompts)], capture_output=True, text=True, check=True)
    assert "heavy: []" in result.stderr and json.loads(result.stdout)["counts"]["images"] == 12


def test_the_readme_documents_every_field():
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    section = readme.split("\n## The plan as JSON\n", 1)[1].split("\n## ", 1)[0]
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

    def fields(node):
        if isinstance(node, dict):
            yield from node.get("properties", {})
            for value in node.values():
                yield from fields(value)
        elif isinstance(node, list):
            for value in node:
                yield from fields(value)

    undocumented = sorted({name for name in fields(schema) if f"`{name}`" not in section})
    assert not undocumented, f"README's 'The plan as JSON' does not name {undocumented}"
