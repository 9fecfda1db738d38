"""Nothing lost, nothing corrupted: every broken prompts.yaml gives one clear message and writes nothing.

tests/bad_prompts/NN-name.yaml (and NNN-name.yaml) is a corpus of broken files; the first line of
each says what the user must be told: `# expect: line=N key=dotted.key contains=text` (key `-`:
none applies). `$TINY_SD` in a file stands for a tiny Stable Diffusion model, for the settings
that only a loaded model can judge (scheduler options, a pipeline class).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from gallery import config as config_module
from gallery.cli import main
from gallery.config import Config, load_config
from gallery.errors import ConfigError

CORPUS_DIR = Path(__file__).resolve().parent / "bad_prompts"
CORPUS = sorted(CORPUS_DIR.glob("[0-9][0-9]-*.yaml")) + sorted(CORPUS_DIR.glob("[0-9][0-9][0-9]-*.yaml"))
TINY_SD = b"$TINY_SD"
EXPECT = re.compile(r"# expect: line=(\d+) key=(.+?) contains=(.+)")


def expectation(source: Path) -> tuple[int, str | None, str]:
    first = source.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    match = EXPECT.fullmatch(first)
    assert match, f"{source.name}: the first line must be '# expect: line=N key=K contains=TEXT'"
    return int(match[1]), None if match[2] == "-" else match[2], match[3]


def everything_under(folder: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder below `folder`."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def assert_one_message(err: str, path: Path, line: int, key: str | None, needle: str) -> None:
    assert "Traceback" not in err
    lines = err.rstrip("\n").split("\n")
    assert 1 <= len(lines) <= 3, f"more than one message:\n{err}"
    assert all(line.startswith("  hint: ") for line in lines[1:]), f"only a hint may follow the message:\n{err}"
    where = f"error: {path}:{line}: "
    assert lines[0].startswith(where), f"expected {where!r}, got:\n{err}"
    if key is not None:
        assert lines[0].startswith(f"{where}{key}: "), f"expected key {key!r}, got:\n{err}"
    assert needle in err, f"expected {needle!r} in:\n{err}"


def test_corpus_is_large_and_well_formed():
    assert len(CORPUS) >= 40
    for source in CORPUS:
        expectation(source)


@pytest.mark.parametrize("source", CORPUS, ids=lambda p: p.stem)
def test_bad_prompts_one_message_nothing_written(source, tmp_path, capsys, request):
    line, key, needle = expectation(source)
    path = tmp_path / "prompts.yaml"
    text = source.read_bytes()
    if TINY_SD in text:
        text = text.replace(TINY_SD, str(request.getfixturevalue("tiny_sd")).encode("utf-8"))
        capsys.readouterr()  # what building the model printed
    path.write_bytes(text)
    before = everything_under(tmp_path)
    assert main(["build", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_message(err, path, line, key, needle)
    assert everything_under(tmp_path) == before


# Files that cannot carry an expect line: written here, byte for byte.
RAW = {
    "zero-bytes": (b"", 1, "the file is empty"),
    "blank-lines": (b"\n   \n\n", 1, "the file is empty"),
    "utf-16": ("axes:\n  subject: {cat: a cat}\n".encode("utf-16"), 1, "is not valid UTF-8"),
    "bom-then-list": ("\ufeff- axes\n".encode("utf-8"), 1, "must be a mapping"),
    # 400 KB of text aliased 40 times: under the node budget, 16 MB once expanded
    "long-text-aliased": (
        (
            "axes:\n  subject:\n    a0: &big "
            + "x" * 400_000
            + "\n"
            + "".join(f"    a{i}: *big\n" for i in range(1, 40))
        ).encode("utf-8"),
        2,
        "expands to more than 10,000,000 characters",
    ),
}


@pytest.mark.parametrize("name", RAW)
def test_raw_bytes_one_message_nothing_written(name, tmp_path, capsys):
    data, line, needle = RAW[name]
    path = tmp_path / "prompts.yaml"
    path.write_bytes(data)
    before = everything_under(tmp_path)
    assert main(["build", "-c", str(path)]) == 2
    assert_one_message(capsys.readouterr().err, path, line, None, needle)
    assert everything_under(tmp_path) == before


def test_a_huge_matrix_is_refused_before_it_is_expanded(tmp_path, capsys):
    """7 axes of 10 options: ten million jobs. Refused from the option counts, `plan` too, at once."""
    axes = "".join(f"  a{n}: {{{', '.join(f'o{i}: w{i}' for i in range(10))}}}\n" for n in range(7))
    path = tmp_path / "prompts.yaml"
    path.write_text(f"axes:\n{axes}render: {{samples: 1}}\n", encoding="utf-8")
    for command in ("plan", "render", "site", "build", "verify", "prune"):
        started = time.perf_counter()
        assert main([command, "-c", str(path)]) == 2
        assert time.perf_counter() - started < 5
        err = capsys.readouterr().err
        assert "10,000,000 images (10 x 10 x 10 x 10 x 10 x 10 x 10 options x 1 samples)" in err, err
        assert "more than limits.max_images (10,000)" in err and "--yes" in err


def test_too_many_images_stops_before_torch_and_writes_nothing(tmp_path):
    """A matrix larger than limits.max_images needs --yes; the CLI says so before loading anything."""
    path = tmp_path / "prompts.yaml"
    shutil.copyfile(CORPUS_DIR / "cli-too-many-images.yaml", path)
    assert load_config(path).max_images == 5  # the file itself is valid: the CLI stops it
    before = everything_under(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gallery", "render", "-c", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    err = "".join(line + "\n" for line in proc.stderr.splitlines() if not line.startswith("import time:"))
    assert proc.returncode == 2, err
    assert "Traceback" not in err and proc.stdout == ""
    lines = err.rstrip("\n").split("\n")
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith("max_images:"))
    assert len(lines) <= 3 and lines[0].startswith(f"error: {path}:{line}: limits.max_images: ")
    assert "more than limits.max_images (5)" in err and "--yes" in err
    assert not {"torch", "diffusers", "transformers"} & set(imported)
    assert everything_under(tmp_path) == before


# -- property: load_config returns a Config or raises ConfigError, never anything else --------------

KEY_NAMES = sorted(
    set(
        config_module.TOP_KEYS
        + config_module.PICTURE_KEYS
        + config_module.RUNTIME_KEYS
        + config_module.UPSCALE_KEYS
        + (
            "options",
            "label",
            "prompt",
            "slug",
            "title",
            "description",
            "importance",
            "category",
            "layout",
            "default",
            "cover",
            "intro",
            "body",
            "url",
            "baseurl",
            "cache",
            "site",
            "templates",
            "max_images",
            "subject",
            "style",
            "cat",
            "dog",
            "Cat",
            "<<",
            "use_karras_sigmas",
        )
    )
)
VALUES = [
    "auto",
    "cpu",
    "cuda:0",
    "ddim",
    "euler_a",
    "DDIMScheduler",
    "StableDiffusionPipeline",
    "float16",
    "./model.ckpt",
    "./missing",
    ".",
    "~",
    "owner/name",
    "{subject}",
    "{subject} {style}",
    "{",
    "}",
    "/repo",
    "repo/",
    "cat",
    "yes",
    "no",
    "sequential",
    "",
    " ",
    "\n",
    "\x00",
    "caf\u00e9",
    "\U0001f431",
    "\u202e",
    "..",
    "a/b",
    "{{ site.title }}",
    "<script>",
    "lanczos",
    "ldsr",
    "sd-x4",
    "./x.pth",
]

safe_keys = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,6}", fullmatch=True)
keys = st.one_of(st.sampled_from(KEY_NAMES), safe_keys, st.text(min_size=1, max_size=8))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-10, 5000),
    st.floats(),
    st.text(max_size=16),
    st.sampled_from(VALUES),
    st.dates(),
    st.binary(max_size=6),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=30,
)
settings_like = st.dictionaries(st.sampled_from(KEY_NAMES) | keys, scalars | documents, max_size=6)
option = st.one_of(
    st.text(max_size=12),
    scalars,
    documents,
    st.fixed_dictionaries({"prompt": st.text(max_size=12)}, optional={"label": scalars, "render": settings_like}),
)
some_keys = st.text(min_size=1, max_size=4)
options = st.dictionaries(
    st.sampled_from(["cat", "dog", "Cat"]) | safe_keys | some_keys, option, min_size=1, max_size=3
)
axis = st.one_of(options, documents, st.fixed_dictionaries({"options": options}, optional={"label": scalars}))
shaped = st.fixed_dictionaries(  # near-valid files, to get past the first checks into the deep ones
    {
        "axes": st.dictionaries(
            st.sampled_from(["subject", "style"]) | safe_keys | some_keys, axis, min_size=1, max_size=3
        )
    },
    optional={
        "render": settings_like,
        "page": settings_like,
        "site": settings_like,
        "paths": settings_like,
        "limits": settings_like,
        "upscale": settings_like,
        "prompt": st.sampled_from(VALUES) | st.text(max_size=12),
    },
)
TOKENS = [
    "axes:",
    "render:",
    "subject:",
    "cat: a cat",
    "\n",
    "\n  ",
    "\n    ",
    "\t",
    " ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "<<: ",
    "!!",
    "!!binary ",
    "!!float ",
    "? ",
    "|",
    ">",
    "'",
    '"',
    "#",
    "---",
    "...",
    "%YAML 1.1",
    "\\u",
    "\\ud83d",
    "~",
    "null",
    "yes",
    "0x1F",
    "1e3",
    "2024-13-45",
    "010",
    ".inf",
    "\x07",
    "\ufeff",
    "caf\u00e9",
]
raw_text = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOWER = settings(HYPOTHESIS, max_examples=200)  # documents take longer to draw; the example to load


def load_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prompts.yaml"
        path.write_bytes(data)
        try:
            config = load_config(path)
        except ConfigError as err:
            message = str(err)
            assert err.file == str(path) and err.line is not None, message
            assert message.startswith(f"{path}:{err.line}: ")
            assert len(message.split("\n")) <= 2 and "\r" not in message, message
            message.encode("utf-8")  # printable on any UTF-8 stderr: no lone surrogates
            return
        assert isinstance(config, Config)
        for axis in config.axes:
            assert config_module.SAFE_KEY.fullmatch(axis.name)
            assert all(config_module.SAFE_KEY.fullmatch(o.key) for o in axis.options)
        assert config_module.SAFE_KEY.fullmatch(config.page.slug)


@SLOWER
@given(st.one_of(documents, shaped))
def test_any_yaml_document_loads_or_gives_a_config_error(document):
    load_bytes(yaml.safe_dump(document, allow_unicode=True).encode("utf-8", "surrogatepass"))


@HYPOTHESIS
@given(raw_text)
def test_any_text_loads_or_gives_a_config_error(text):
    load_bytes(text.encode("utf-8", "surrogatepass"))


@HYPOTHESIS
@given(st.binary(max_size=200))
def test_any_bytes_load_or_give_a_config_error(data):
    load_bytes(data)


@SLOWER
@given(st.data())
def test_a_damaged_example_loads_or_gives_a_config_error(data):
    """The committed prompts.yaml with a random stretch replaced by YAML-ish tokens."""
    text = (REPO / "prompts.yaml").read_text(encoding="utf-8")
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    middle = data.draw(st.lists(st.sampled_from(TOKENS), max_size=6).map("".join))
    load_bytes((text[:start] + middle + text[end:]).encode("utf-8", "surrogatepass"))
