"""The site stage is as safe as the cache: killed at any moment, the next run completes it, and a
reader never meets a file that names a missing one; two stages at once; damaged web copies."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import at_once, write_prompts
from gallery.cli import main
from gallery.config import load_config
from gallery.manifest import cell_files
from gallery.project import open_project

RECORDS = ".prompt-gallery"


def project(
    folder: Path, model: Path, *, site: str = "site", styles: str = "x, y, z, w, v", title: str = "Kill test"
) -> Path:
    """10 x 5 cells x 4 samples = 200 images, sharing one cache beside the folders."""
    options = ", ".join(f"{s}: style {s}" for s in styles.split(", "))
    return write_prompts(
        folder,
        f"""
        page: {{title: {title}, slug: kills}}
        render: {{model: {model}, steps: 2, width: 64, height: 64, samples: 4, batch_size: 16}}
        paths: {{cache: ../cache, site: {site}}}
        axes:
          subject: {{{", ".join(f"s{i}: subject {i}" for i in range(10))}}}
          style: {{{options}}}
    """,
    )


def tree(site: Path) -> dict[str, bytes]:
    """Every file of the site but the records (they name their prompts.yaml), with its bytes."""
    return {
        p.relative_to(site).as_posix(): p.read_bytes()
        for p in sorted(site.rglob("*"))
        if p.is_file() and RECORDS not in p.parts
    }


def assert_consistent(site: Path) -> None:
    """What a reader meets: the manifest, every cell file it names, every image those name."""
    manifest = site / "assets/img/kills/manifest.json"
    if not manifest.exists():
        return  # the page is not published yet (a first build killed early)
    for cell_file in cell_files(site, json.loads(manifest.read_bytes())).values():
        cell = json.loads((site / cell_file).read_bytes())
        for image in cell["images"]:
            for rel in (image["thumb"], image["full"]):
                assert (site / rel).stat().st_size > 0, rel


def stage_pids(group: int) -> list[int]:
    """Processes still alive in a process group (the stage and its image workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == group and Path(f"/proc/{entry}/stat").read_text().split()[2] != "Z":
                    found.append(int(entry))
            except (OSError, IndexError):
                pass
    return found


@pytest.mark.slow
def test_site_stage_killed_twenty_times_then_completes(tmp_path, tiny_sd):
    reference = project(tmp_path / "ref", tiny_sd, site="../reference-site")
    assert main(["render", "-c", str(reference)]) == 0
    started = time.perf_counter()  # as long as a whole stage takes, start-up included
    subprocess.run([sys.executable, "-m", "gallery", "site", "-c", str(reference)], check=True, capture_output=True)
    uninterrupted = time.perf_counter() - started
    expected = tree(tmp_path / "reference-site")
    rng = random.Random(20261128)
    killed_midway = updates = 0
    for attempt in range(20):
        shutil.rmtree(tmp_path / "g/site", ignore_errors=True)
        if attempt % 2:  # from the whole site of another matrix and title: an update, with removals
            before = project(tmp_path / "g", tiny_sd, styles="x, y, w", title="Before")
            assert main(["build", "-c", str(before)]) == 0
            updates += 1
        prompts = project(tmp_path / "g", tiny_sd)
        site = load_config(prompts).site_dir
        proc = subprocess.Popen(
            [sys.executable, "-m", "gallery", "site", "-c", str(prompts)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.1, 1.0) * uninterrupted)
        if proc.poll() is None:
            killed_midway += 1
            proc.send_signal(signal.SIGKILL)  # the stage alone: its workers must follow by themselves
        proc.wait()
        deadline = time.monotonic() + 10
        while stage_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not stage_pids(proc.pid), "image workers outlived the killed stage"
        assert_consistent(site)
        assert main(["site", "-c", str(prompts)]) == 0, f"attempt {attempt}: the rerun failed"
        assert tree(site) == expected, f"attempt {attempt}: the site differs from an uninterrupted one"
    assert killed_midway >= 10 and updates == 10, "the kills should land while the stage runs"


def test_a_damaged_web_copy_is_made_again(tmp_path, tiny_sd):
    prompts = project(tmp_path / "g", tiny_sd, styles="x")
    assert main(["build", "-c", str(prompts)]) == 0
    site = load_config(prompts).site_dir
    expected = tree(site)
    fulls = sorted(site.rglob("*-full.webp"))
    fulls[0].write_bytes(b"")  # emptied
    fulls[1].write_bytes(fulls[1].read_bytes()[:100])  # truncated
    fulls[2].unlink()
    assert main(["site", "-c", str(prompts)]) == 0
    assert tree(site) == expected


def test_an_interrupted_first_site_is_not_taken_for_someone_elses(tmp_path, tiny_sd, capsys):
    """Images written, the stage stopped before its page: the next run is not refused."""
    prompts = project(tmp_path / "g", tiny_sd, styles="x")
    assert main(["render", "-c", str(prompts)]) == 0
    from gallery import site as site_module

    real = site_module._page_files
    site_module._page_files = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            opened = open_project(prompts)
            site_module.build_site(opened.plan, opened.cache, standalone=True)
    finally:
        site_module._page_files = real
    assert list(load_config(prompts).site_dir.rglob("*.webp"))
    capsys.readouterr()
    assert main(["site", "-c", str(prompts)]) == 0
    assert "the last site stage was stopped midway; this one completed the site" in capsys.readouterr().out
    assert main(["site", "-c", str(prompts)]) == 0
    assert "stopped midway" not in capsys.readouterr().out


def test_two_site_stages_at_once_both_finish_and_agree(tmp_path, tiny_sd):
    reference = project(tmp_path / "ref", tiny_sd, site="../reference-site", styles="x, y")
    assert main(["build", "-c", str(reference)]) == 0
    prompts = project(tmp_path / "g", tiny_sd, styles="x, y")
    # a first site of another matrix, so both stages have files to replace and to remove
    before = project(tmp_path / "g", tiny_sd, styles="x, z", title="Before")
    assert main(["build", "-c", str(before)]) == 0
    prompts = project(tmp_path / "g", tiny_sd, styles="x, y")
    runs = at_once(["site", "-c", str(prompts)], [dict(os.environ)] * 2, cwd=tmp_path)
    assert [code for code, _, _ in runs] == [0, 0], runs
    assert "Traceback" not in "".join(out + err for _, out, err in runs)
    assert tree(load_config(prompts).site_dir) == tree(tmp_path / "reference-site")


def test_a_slug_rename_removes_the_old_page_and_another_config_cannot_take_a_slug(tmp_path, tiny_sd, capsys):
    prompts = project(tmp_path / "g", tiny_sd, styles="x")
    assert main(["build", "-c", str(prompts)]) == 0
    site = load_config(prompts).site_dir
    assert (site / "_projects/kills.md").is_file() and (site / "assets/img/kills").is_dir()
    prompts.write_text(prompts.read_text().replace("slug: kills", "slug: renamed"))
    assert main(["site", "-c", str(prompts)]) == 0
    assert not (site / "_projects/kills.md").exists() and not (site / "assets/img/kills").exists()
    assert not (site / "_includes/prompt_gallery/kills").exists()
    assert (site / "_projects/renamed.md").is_file()
    # a second prompts.yaml writing the same slug into the same site is refused, naming the first
    other = tmp_path / "g" / "other.yaml"
    other.write_text(prompts.read_text())
    capsys.readouterr()
    assert main(["site", "-c", str(other)]) == 1
    err = capsys.readouterr().err
    assert "page.slug 'renamed' is already the page of" in err and str(prompts.resolve()) in err
