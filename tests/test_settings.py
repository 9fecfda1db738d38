"""One declaration per setting (gallery/settings.py): the reader, the defaults, the README's
tables and the JSON Schema all derive from it, and agree."""

import dataclasses
import hashlib
import json
import re
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, write_prompts
from gallery import config, schema
from gallery.cli import main
from gallery.config import load_config
from gallery.errors import ConfigError
from gallery.settings import BY_NAME, SECTIONS, UPSCALERS, names

VALIDATOR = jsonschema.Draft7Validator(schema.json_schema())
CORPUS = sorted((Path(__file__).parent / "bad_prompts").glob("*.yaml"))

# Broken files whose fault no schema can see: it needs the disk, the whole file, or YAML itself.
BEYOND_SHAPE = {
    "39-duplicate-top-level-key",
    "40-duplicate-axis-name",
    "41-duplicate-option-key",
    "42-duplicate-render-key",
    "43-duplicate-option-render-key",  # a YAML loader keeps the last of two equal keys
    "44-case-clash-option-keys",
    "45-case-clash-axis-names",  # keys that differ only in case
    "70-guidance-nan",  # JSON has no NaN
    "77-model-pickle-ckpt",
    "78-model-pickle-bin",
    "79-model-missing-folder",
    "80-model-folder-not-a-pipeline",
    "81-model-not-a-hub-id",
    "82-model-unknown-home",
    "83-model-name-too-long",
    "90-paths-site-is-a-file",
    "91-paths-cache-nul",
    "100-upscale-model-missing-folder",
    "101-upscale-esrgan-pickle-weights",
    "105-upscale-model-folder-not-a-pipeline",
    "106-esrgan-weights-file-missing",
    "107-esrgan-hub-repo-without-its-file",
    "108-esrgan-onnx-export",  # what a path points at
    "84-prompt-template-unknown-field",
    "85-prompt-template-unclosed-brace",
    "86-prompt-template-conversion",
    "87-page-default-unknown-option",
    "88-page-default-unknown-axis",  # names defined elsewhere in the file
    "109-esrgan-overlap-half-the-tile",
    "113-upscale-past-webp-size",  # one value against another
    "114-paths-site-inside-a-file",  # what a path points at
    "115-scheduler-option-refused",
    "116-scheduler-option-not-a-boolean",
    "117-option-scheduler-option-refused",
    "118-scheduler-option-unknown",
    "119-pipeline-does-not-fit-the-model",
    "120-pipeline-image-to-image",
    "121-pipeline-parts-of-another-kind",  # what the model's scheduler and pipeline classes take
    "122-config-beside-a-diffusers-model",  # config: needs the model to be a single file
    "132-option-quantize-nf4-on-cpu",  # what the machine runs
    "143-lora-missing-file",  # what a path points at
    "148-page-view-unknown-axis",  # names defined elsewhere in the file
    "149-page-view-same-axis-twice",  # one value against another
    "151-page-view-sample-out-of-range",  # against render.samples
    "152-axis-named-like-page-state",  # names the page's links take
    "95-recursive-merge",
    "96-lone-surrogate",  # YAML the gallery's loader refuses before any shape
    "31-date-that-is-not-a-date",  # a broken date to YAML 1.1 (the gallery's reader), text to YAML 1.2 (editors)
    "cli-too-many-images",  # a valid file: the limit is the command's
}


class YAML12Loader(yaml.SafeLoader):
    """Reads dates as text, as editors (YAML 1.2) do."""


YAML12Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def schema_errors(text: str) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in VALIDATOR.iter_errors(yaml.load(text, Loader=YAML12Loader))
    ]


def test_the_schema_is_a_valid_draft_07_schema():
    jsonschema.Draft7Validator.check_schema(schema.json_schema())


@pytest.mark.parametrize("path", ["prompts.yaml", "demo/prompts.yaml"])
def test_committed_prompts_validate_against_the_schema(path):
    text = (REPO / path).read_text(encoding="utf-8")
    assert schema_errors(text) == []
    assert "yaml-language-server: $schema=" in text.splitlines()[0]  # editors find the schema by themselves


@pytest.mark.parametrize("source", CORPUS, ids=lambda p: p.stem)
def test_the_schema_refuses_every_file_wrong_by_shape_or_type(source):
    digits = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # an editor reads a 5,000-digit number, and the schema refuses it
    try:
        document = yaml.load(source.read_bytes().decode("utf-8"), Loader=YAML12Loader)
        refused = not VALIDATOR.is_valid(document)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return  # not YAML: an editor says so before any schema
    finally:
        sys.set_int_max_str_digits(digits)
    if source.stem in BEYOND_SHAPE:
        assert not refused or source.stem == "cli-too-many-images", f"{source.stem} is refused by shape after all"
    else:
        assert refused, f"{source.stem} is wrong by shape or type, but the schema accepts it"


def test_the_committed_schema_and_readme_are_up_to_date():
    hint = "run `.venv/bin/python scripts/settings_docs.py` after changing gallery/settings.py"
    assert (REPO / "gallery" / "prompts.schema.json").read_text(encoding="utf-8") == schema.json_text(), hint
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert schema.update_readme(readme) == readme, hint
    for name in [*SECTIONS, "option"]:
        assert f"<!-- settings: {name} -->" in readme


def test_the_readme_tables_list_every_setting_once():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for place in SECTIONS:
        region = re.search(rf"<!-- settings: {place} -->(.*?)<!-- /settings -->", readme, re.S)[1]
        listed = re.findall(r"^\| `(\w+)`", region, re.M)
        assert listed == list(names(place))


def test_gallery_schema_prints_the_shipped_schema(capsys, tmp_path):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema.json_schema()
    out = tmp_path / "prompts.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == schema.json_text()


def test_each_dataclass_holds_exactly_the_declared_settings():
    def fields(cls):
        return [f.name for f in dataclasses.fields(cls)]

    assert fields(config.Picture) == list(names("option"))
    assert fields(config.Runtime) == [n for n in names("render") if n not in names("option")]
    assert fields(config.Page) == list(names("page"))
    assert fields(config.Site) == list(names("site"))
    assert fields(config.Upscale) == list(names("upscale"))


def test_absent_settings_take_their_declared_defaults(tmp_path):
    loaded = load_config(write_prompts(tmp_path, "axes: {subject: {cat: a cat}}\n"))
    for place, value in (("option", loaded.picture), ("render", loaded.runtime)):
        for field in dataclasses.fields(value):
            assert getattr(value, field.name) == BY_NAME[place][field.name].default, field.name
    assert loaded.max_images == BY_NAME["limits"]["max_images"].default
    assert loaded.cache_dir == tmp_path / BY_NAME["paths"]["cache"].default
    for name, upscaler in UPSCALERS.items():
        up = load_config(write_prompts(tmp_path, f"axes: {{subject: {{cat: a cat}}}}\nupscale: {{upscaler: {name}}}\n"))
        for key in upscaler.settings:
            declared = BY_NAME["upscale"][key].default_for(name)
            assert getattr(up.upscale, key) == (name if key == "upscaler" else declared), (name, key)


def test_upscale_settings_without_an_upscaler_are_refused(tmp_path):
    path = write_prompts(tmp_path, "axes: {subject: {cat: a cat}}\nupscale:\n  factor: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.line == 2 and "without an upscaler" in err.value.message


# -- the schema never refuses what the tool reads ------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.sampled_from(
        [
            "auto",
            "cpu",
            "cuda:1",
            "bf16",
            "DDIM",
            "Euler a",
            "dpm++ 2m karras",
            "KarrasVeScheduler",
            "model",
            "/repo",
            "lanczos",
            "sd-x4",
            "1.10",
        ]
    ),
)


def setting_values(place: str):
    return st.dictionaries(st.sampled_from(names(place)), scalars, max_size=4)


documents = st.fixed_dictionaries(
    {
        "axes": st.dictionaries(
            st.sampled_from(["subject", "style", "x-1"]),
            st.one_of(
                st.dictionaries(
                    st.sampled_from(["cat", "dog", "b_2"]),
                    st.one_of(
                        st.text(max_size=8),
                        st.none(),
                        st.fixed_dictionaries(
                            {"prompt": st.text(max_size=8)},
                            optional={"render": setting_values("option"), "label": st.text(min_size=1, max_size=8)},
                        ),
                    ),
                    min_size=1,
                    max_size=3,
                ),
                st.fixed_dictionaries(
                    {"options": st.dictionaries(st.sampled_from(["cat", "dog"]), st.text(max_size=8), min_size=1)},
                    optional={"label": st.text(max_size=8)},
                ),
            ),
            min_size=1,
            max_size=2,
        )
    },
    optional={place: setting_values(place) for place in ("render", "page", "site", "limits", "upscale")},
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_the_schema_accepts_every_file_the_reader_accepts(tmp_path_factory, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    folder = tmp_path_factory.mktemp("doc")
    try:
        load_config(write_prompts(folder, text))
    except ConfigError:
        return
    assert schema_errors(text) == [], textwrap.indent(text, "  ")


# Every cache key of the committed galleries, as planned before the settings table existed:
# (count, SHA-256 of the keys joined by newlines). A change here re-renders someone's whole gallery.
KEYS_BEFORE = {
    "prompts.yaml": (1728, "e668a78bd3344566d03f0a9411b794f5b2a740b28d426a8ebc87bcb263219156"),
    "demo/prompts.yaml": (720, "d294e1fa98c269414499bd4e4e98b7867dde8aca37a772181cae82e7eae33d29"),
}


@pytest.mark.parametrize("path", sorted(KEYS_BEFORE))
def test_cache_keys_of_the_committed_galleries_are_unchanged(path, tmp_path):
    from gallery.fingerprint import Memo
    from gallery.project import plan_of

    keys = plan_of(load_config(REPO / path), Memo(tmp_path)).keys
    assert (len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest()) == KEYS_BEFORE[path]
