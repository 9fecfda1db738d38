"""prompts.yaml: what loads, what each mistake says, and that a mistake writes nothing."""

import pytest

from conftest import REPO, files_under, write_prompts
from gallery.cli import main
from gallery.config import load_config
from gallery.errors import ConfigError


def test_example_is_the_original_matrix():
    config = load_config(REPO / "prompts.yaml")
    assert [a.name for a in config.axes] == ["subject", "style"]
    assert [len(a.options) for a in config.axes] == [9, 12]
    assert config.runtime.samples == 16 and 9 * 12 * config.runtime.samples == 1728
    p = config.picture
    assert (p.model, p.scheduler, p.steps, p.guidance, p.width, p.height) == (
        "CompVis/ldm-text2im-large-256",
        "ddim",
        250,
        7.5,
        256,
        256,
    )
    assert config.axes[1].option("dali").prompt == "as a painting of Dalí (1929), surrealist"
    page = config.page
    assert (page.title, page.description, page.importance, page.category) == (
        "Discount DALL-E",
        "exploring text to image methods",
        1,
        "Machine Learning",
    )
    assert page.default == ("cat", "dali")


def test_minimal_file_gets_defaults(tmp_path):
    config = load_config(
        write_prompts(
            tmp_path,
            """
        axes:
          subject: {cat: a cat, dog: a dog}
    """,
        )
    )
    assert len(config.axes) == 1 and config.axes[0].label == "Subject"
    assert config.axes[0].option("cat").label == "a cat"
    assert config.runtime.samples == 4 and config.runtime.device == "auto" and config.runtime.batch_size is None
    assert config.picture.scheduler == "default" and config.page.slug == "prompt-gallery"
    assert config.cache_dir == tmp_path / ".gallery-cache" and config.site_dir == tmp_path / "site"


@pytest.mark.parametrize(
    "given,axes,expected",
    [
        ("", "subject: {cat: a cat}\n  style: {oil: oil}", ("cell", "subject", "style", 1)),
        (
            "view: grid",
            "subject: {cat: a cat}\n  style: {oil: oil}\n  light: {day: day}",
            ("grid", "subject", "style", 1),
        ),
        (
            "view: {mode: grid, columns: subject, sample: all}",
            "subject: {cat: a cat}\n  style: {oil: oil}",
            ("grid", "style", "subject", "all"),
        ),
        (
            "view: {rows: light, sample: 3}",
            "subject: {cat: a cat}\n  light: {day: day}",
            ("cell", "light", "subject", 3),
        ),
        ("view: {mode: grid}", "subject: {cat: a cat, dog: a dog}", ("grid", None, "subject", 1)),
    ],
)
def test_page_view(tmp_path, given, axes, expected):
    """What a reader first sees: the cell view unless page.view says grid; a grid's axes default to
    the first two, a one-axis gallery gives one row."""
    config = load_config(write_prompts(tmp_path, f"axes:\n  {axes}\npage:\n  {given or 'title: t'}\n"))
    view = config.page.view
    assert (view.mode, view.rows, view.columns, view.sample) == expected


def test_three_axes_template_and_overrides(tmp_path):
    config = load_config(
        write_prompts(
            tmp_path,
            """
        prompt: "{subject}, {style}, {light}"
        render: {negative_prompt: blurry, steps: 20}
        axes:
          subject: {cat: a cat}
          style:
            label: Art style
            options:
              oil: oil painting
              ink:
                prompt: ink drawing
                label: Ink
                render: {negative_prompt: colour, steps: 30, scheduler: Euler a}
          light: {day: daylight, night: at night}
    """,
        )
    )
    assert [a.name for a in config.axes] == ["subject", "style", "light"]
    ink = config.axes[1].option("ink")
    assert ink.label == "Ink" and dict(ink.overrides) == {
        "negative_prompt": "colour",
        "steps": 30,
        "scheduler": "euler_a",
    }
    assert config.axes[1].label == "Art style"


BAD = [
    (
        "unknown key with suggestion",
        "axes: {s: {a: a}}\nrender:\n  stepz: 3\n",
        3,
        "render.stepz",
        "did you mean 'steps'",
    ),
    ("unknown top-level", "axis: {s: {a: a}}\n", 1, "axis", "did you mean 'axes'"),
    ("missing axes", "render: {steps: 3}\n", 1, None, "missing 'axes'"),
    ("empty axis", "axes:\n  subject: {}\n", 2, "axes.subject", "no options"),
    ("empty axes", "axes: {}\n", 1, "axes", "at least one axis"),
    ("duplicate option", "axes:\n  s:\n    cat: a\n    cat: b\n", 4, "axes.s.cat", "duplicate key 'cat'"),
    ("case clash", "axes:\n  s:\n    cat: a\n    Cat: b\n", 4, "axes.s.Cat", "clashes"),
    ("unsafe key slash", "axes:\n  s:\n    a/b: x\n", 3, "axes.s.a/b", "not safe"),
    ("unsafe key dots", "axes:\n  s:\n    '..': x\n", 3, None, "not safe"),
    ("steps type", "axes: {s: {a: a}}\nrender:\n  steps: many\n", 3, "render.steps", "whole number"),
    ("steps zero", "axes: {s: {a: a}}\nrender:\n  steps: 0\n", 3, "render.steps", "between 1"),
    ("size not multiple of 8", "axes: {s: {a: a}}\nrender:\n  width: 250\n", 3, "render.width", "multiple of 8"),
    ("dtype", "axes: {s: {a: a}}\nrender:\n  dtype: float8\n", 3, "render.dtype", "unknown dtype"),
    ("tabs", "axes:\n\ts: {a: a}\n", 2, None, "tabs"),
    ("syntax", "axes: {s: [a\n", 2, None, "YAML syntax error"),
    ("empty file", "", 1, None, "empty"),
    ("pickle model", "axes: {s: {a: a}}\nrender:\n  model: ./model.ckpt\n", 3, "render.model", "pickle"),
    ("missing local model", "axes: {s: {a: a}}\nrender:\n  model: ./nowhere\n", 3, "render.model", "no such"),
    ("bad template field", "prompt: '{subjet}'\naxes: {subject: {a: a}}\n", 1, "prompt", "did you mean '{subject}'"),
    ("bad default cell", "page: {default: {s: b}}\naxes: {s: {a: a}}\n", 1, "page.default.s", "not an option"),
    ("scheduler", "axes: {s: {a: a}}\nrender: {scheduler: eulr}\n", 2, "render.scheduler", "did you mean 'euler'"),
    (
        "override unknown",
        "axes:\n  s:\n    a:\n      prompt: x\n      render: {samples: 3}\n",
        5,
        "axes.s.a.render.samples",
        "unknown key",
    ),
    ("options as list", "axes:\n  s:\n    - a\n", 2, "axes.s", "not a list"),
]


@pytest.mark.parametrize("text,line,key,needle", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_file_one_clear_message(tmp_path, text, line, key, needle):
    path = tmp_path / "prompts.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert needle in str(err)
    assert err.line == line
    if key:
        assert err.key == key
    assert str(err).startswith(f"{path}:{line}: ")


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "prompts.yaml"
    path.write_bytes(b"axes:\n  s:\n    a: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 3 and "UTF-8" in str(info.value)


def test_alias_bomb_is_refused(tmp_path):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    path = tmp_path / "prompts.yaml"
    path.write_text("\n".join(lines) + "\naxes: {s: {a: a}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "alias" in str(info.value)


def test_cli_bad_file_exit_2_nothing_written(tmp_path, capsys, monkeypatch):
    write_prompts(tmp_path, "axes: {s: {a: a}}\nrender:\n  stepz: 3\n")
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    assert main(["build"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 2 and "prompts.yaml:3: render.stepz: unknown key" in err
    assert "Traceback" not in err
    assert files_under(tmp_path) == before


def test_escaped_emoji_is_joined_and_a_lone_half_refused(tmp_path):
    config = load_config(write_prompts(tmp_path, r'axes: {s: {a: "cat \ud83d\udc31"}}' + "\n"))
    assert config.axes[0].option("a").prompt == "cat 🐱"
    (tmp_path / "prompts.yaml").write_text(r'axes: {s: {a: "cat \ud83d"}}' + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "prompts.yaml")
    assert "surrogate" in str(info.value) and info.value.line == 1
