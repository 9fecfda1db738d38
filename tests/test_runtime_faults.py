"""One message, no traceback, nothing lost: a cache that cannot be written, damaged sidecars and
fingerprints, strays in the cache, something in the way of the page. (Settings that only a model
can judge, such as scheduler options and the pipeline class, are in the bad-input corpus.)"""

import errno
import json
import os
from pathlib import Path

import pytest

from conftest import files_under, write_prompts
from gallery.cli import main
from gallery.fingerprint import MEMO_NAME
from gallery.project import open_project


def project(folder: Path, model: Path, styles: str = "oil, ink", paths: str = "{}") -> Path:
    options = ", ".join(f"{s}: {s} painting" for s in styles.split(", "))
    return write_prompts(
        folder,
        f"""
        render: {{model: {model}, steps: 2, width: 64, height: 64, samples: 2, dtype: float32}}
        paths: {paths}
        axes:
          style: {{{options}}}
        """,
    )


def one_message(err: str, *needles: str) -> None:
    """How a command ends: `error: ...`, at most a hint after it (progress may come before), no traceback."""
    lines = err.rstrip("\n").split("\n")
    errors = [n for n, line in enumerate(lines) if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1, err
    assert all(line.startswith("  hint: ") for line in lines[errors[0] + 1 :]), err
    for needle in needles:
        assert needle in err, f"expected {needle!r} in:\n{err}"


def entries(prompts: Path) -> dict[str, bytes]:
    """Every file of the cache's entries, with its bytes."""
    cache = open_project(prompts).cache
    return {p.name: p.read_bytes() for p in cache.entry_files()}


def read_only(monkeypatch, folder: Path) -> None:
    """`folder` as on a read-only mount (tests run as root, whom permissions do not stop): creating,
    writing, renaming or removing anything below it fails with EROFS, as the kernel would say."""
    inside = str(folder.resolve())
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def refuse(real, writing=lambda *a: True):
        def call(path, *args, **kwargs):
            if os.path.abspath(os.fspath(path)).startswith(inside) and writing(*args):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "open", refuse(os.open, lambda flags, *a: flags & writes))
    for name in ("mkdir", "unlink", "rmdir", "replace", "rename"):
        monkeypatch.setattr(os, name, refuse(getattr(os, name)))


def test_a_read_only_cache_is_one_message_and_keeps_every_entry(tmp_path, tiny_sd, monkeypatch, capsys):
    prompts = project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    before = entries(prompts)
    read_only(monkeypatch, tmp_path / ".gallery-cache")
    capsys.readouterr()
    assert main(["build", "-c", str(prompts)]) == 0  # all cached: a read-only cache is enough
    project(tmp_path, tiny_sd, styles="oil, ink, clay")  # one more option: something to render
    for command in (["build"], ["render"], ["verify"], ["prune", "--delete"]):
        assert main([*command, "-c", str(prompts)]) == 1, command
        one_message(capsys.readouterr().err, "cannot write to the cache at", "Read-only file system", "build.lock")
    monkeypatch.undo()
    assert entries(prompts) == before


def test_an_entry_that_cannot_be_written_is_one_message(tmp_path, tiny_sd, monkeypatch, capsys):
    """The lock could be taken, the entries' folder is read-only."""
    prompts = project(tmp_path, tiny_sd)
    assert main(["render", "-c", str(prompts)]) == 0
    before = entries(prompts)
    project(tmp_path, tiny_sd, styles="oil, ink, clay")
    read_only(monkeypatch, tmp_path / ".gallery-cache" / "images")
    capsys.readouterr()
    assert main(["render", "-c", str(prompts)]) == 1
    one_message(capsys.readouterr().err, "cannot write to the cache at", "Read-only file system")
    monkeypatch.undo()
    assert entries(prompts) == before


@pytest.mark.parametrize("where", ["/proc/no-such-folder/cache", "/proc/gallery-cache", "/sys/gallery-cache"])
def test_a_cache_folder_that_cannot_be_made_is_one_message(tmp_path, tiny_sd, capsys, where):
    prompts = project(tmp_path, tiny_sd, paths=f"{{cache: {where}}}")
    assert main(["plan", "-c", str(prompts)]) == 0  # reading an absent cache needs no folder
    assert "to render: 4" in capsys.readouterr().out
    for command in (["build"], ["verify"], ["prune"]):
        assert main([*command, "-c", str(prompts)]) == 1, command
        one_message(capsys.readouterr().err, f"cannot write to the cache at {where}")
    assert not Path(where).exists()


def test_a_site_folder_that_cannot_be_made_is_one_message(tmp_path, tiny_sd, capsys):
    prompts = project(tmp_path, tiny_sd, paths="{site: /proc/gallery-site}")
    assert main(["render", "-c", str(prompts)]) == 0
    capsys.readouterr()
    assert main(["site", "-c", str(prompts)]) == 1
    one_message(capsys.readouterr().err, "/proc/gallery-site")


def damage(prompts: Path, change) -> str:
    """Apply `change` to the sidecar (a dict) of one cached image; return the image's key."""
    plan, cache = open_project(prompts).plan, open_project(prompts).cache
    key = plan.jobs[0].key
    side = json.loads(cache.sidecar_path(key).read_text())
    change(side)
    cache.sidecar_path(key).write_text(json.dumps(side))
    return key


SIDECAR_FAULTS = {
    "made-is-text": lambda side: side.update(made="yesterday"),
    "no-png-hash": lambda side: side["png"].pop("sha256"),
    "png-is-text": lambda side: side.update(png="image.png"),
    "no-recipe": lambda side: side.pop("recipe"),
    "a-list": lambda side: (side.clear(), side.update(key=[])),
}


@pytest.mark.parametrize("fault", SIDECAR_FAULTS)
def test_a_sidecar_of_the_wrong_shape_is_a_broken_entry(tmp_path, tiny_sd, capsys, fault):
    prompts = project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    key = damage(prompts, SIDECAR_FAULTS[fault])
    capsys.readouterr()
    assert main(["site", "-c", str(prompts)]) == 0  # the page leaves that image out
    assert "1 planned images are not rendered yet" in capsys.readouterr().out
    assert main(["verify", "-c", str(prompts)]) == 1
    out = capsys.readouterr().out
    assert "1 broken" in out and "sidecar is not an entry's" in out
    assert main(["build", "-c", str(prompts)]) == 0  # rendered again
    assert key in open_project(prompts).cache.whole_entries([key])
    assert "Traceback" not in capsys.readouterr().err


def test_a_sidecar_naming_an_odd_scheduler_still_shows(tmp_path, tiny_sd, capsys):
    """`made` is the render's own account: a scheduler there that is not a name is not shown."""
    prompts = project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    damage(prompts, lambda side: side["made"].update(scheduler=5))
    assert main(["site", "-c", str(prompts)]) == 0
    assert "4 images on the page" in capsys.readouterr().out


@pytest.mark.parametrize("memo", ["[]", "5", '"text"', '{"/a/file": "x"}', '{"/a/file": {"stamp": 1}}', "{"])
def test_a_damaged_fingerprint_memo_is_forgotten_and_rewritten(tmp_path, tiny_sd, capsys, memo):
    prompts = project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    path = tmp_path / ".gallery-cache" / MEMO_NAME
    path.write_text(memo.replace("/a/file", str(tiny_sd / "model_index.json")))
    capsys.readouterr()
    assert main(["plan", "-c", str(prompts)]) == 0
    assert "cached: 4   to render: 0" in capsys.readouterr().out  # the model's identity is unchanged
    assert main(["build", "-c", str(prompts)]) == 0
    assert "all 4 images are cached" in capsys.readouterr().out
    remembered = json.loads(path.read_text())
    assert isinstance(remembered, dict) and all(isinstance(e, dict) for e in remembered.values())


def test_prune_removes_what_it_says_and_leaves_a_folder_alone(tmp_path, tiny_sd, capsys):
    prompts = project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    before = entries(prompts)
    images = tmp_path / ".gallery-cache" / "images"
    (images / "ab" / "x.png").mkdir(parents=True)  # a folder of an entry's name: nobody's entry
    stray = images / "zz" / ("ab" + "0" * 62 + ".png")  # an entry file in another key's folder
    stray.parent.mkdir()
    stray.write_bytes(b"not ours any more")
    capsys.readouterr()
    assert main(["prune", "-c", str(prompts)]) == 0
    assert "would remove 1 entries" in capsys.readouterr().out
    assert main(["prune", "--delete", "-c", str(prompts)]) == 0
    assert "removed 1 entries" in capsys.readouterr().out and not stray.exists()
    assert main(["prune", "--delete", "-c", str(prompts)]) == 0
    assert "removed 0 entries" in capsys.readouterr().out
    assert (images / "ab" / "x.png").is_dir() and entries(prompts) == before


@pytest.mark.parametrize("blocker", ["_projects/tiny.md/", "_includes/prompt_gallery", "assets/img/tiny"])
def test_something_in_the_way_of_the_page_stops_before_writing(tmp_path, tiny_sd, capsys, blocker):
    """A folder where a page file goes, a file where a folder goes: refused before any file is written."""
    prompts = write_prompts(
        tmp_path / "g",
        f"""
        page: {{title: Tiny, slug: tiny}}
        render: {{model: {tiny_sd}, steps: 2, width: 64, height: 64, samples: 1, dtype: float32}}
        axes:
          style: {{oil: oil painting}}
        """,
    )
    site = tmp_path / "site"
    (site / "_config.yml").parent.mkdir()
    (site / "_config.yml").write_text("title: My site\n")
    in_the_way = site / blocker.rstrip("/")
    in_the_way.parent.mkdir(parents=True, exist_ok=True)
    if blocker.endswith("/"):
        (in_the_way / "notes.txt").parent.mkdir()
        (in_the_way / "notes.txt").write_text("mine")
    else:
        in_the_way.write_text("mine")
    assert main(["render", "-c", str(prompts)]) == 0
    before = files_under(site)
    capsys.readouterr()
    assert main(["site", "-c", str(prompts), "--into", str(site)]) == 1
    one_message(capsys.readouterr().err, str(in_the_way), "refusing to write the site")
    assert {rel for rel in files_under(site) if not rel.startswith(".prompt-gallery/")} == before
