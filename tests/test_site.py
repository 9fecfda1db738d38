"""The emitted site: real `jekyll build` under a baseurl, and prompt text that stays text."""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import cell_of, write_prompts
from gallery.cli import main
from gallery.config import load_config
from gallery.manifest import cell_files

JEKYLL = shutil.which("jekyll")
needs_jekyll = pytest.mark.skipif(
    JEKYLL is None and not os.environ.get("GALLERY_REQUIRE_JEKYLL"),
    reason="jekyll is not installed (apt-get install jekyll); CI sets GALLERY_REQUIRE_JEKYLL=1",
)

NASTY_LABEL = 'Nasty "quote" <script>window.pwned=1</script> {{ site.title }} {% raw %} **bold** 🐱 مرحبا'
NASTY_PROMPT = "<img src=x onerror=alert(1)> {% include nope.html %} {{ page.title }} & 'single'"


def nasty_project(folder: Path, model: Path) -> Path:
    label, prompt = (json.dumps(text, ensure_ascii=False) for text in (NASTY_LABEL, NASTY_PROMPT))
    return write_prompts(
        folder,
        f"""
        page:
          title: Gallery
          slug: nasty
          description: "a page: with {{{{ braces }}}} in its description"
          intro: "Intro with *Markdown*."
        render: {{model: {model}, steps: 2, width: 64, height: 64, samples: 1}}
        axes:
          subject:
            label: {label}
            options:
              plain: a cat
              evil: {{prompt: {prompt}, label: {label}}}
          style: {{oil: oil painting}}
    """,
    )


def jekyll_build(site: Path, dest: Path, baseurl: str) -> subprocess.CompletedProcess:
    assert JEKYLL, "jekyll is required here: apt-get install jekyll"
    return subprocess.run(
        [JEKYLL, "build", "--source", str(site), "--destination", str(dest), "--baseurl", baseurl],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_generated_files_keep_prompt_text_inert(tmp_path, tiny_sd):
    prompts = nasty_project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    site = load_config(prompts).site_dir
    for rel in (
        "_includes/prompt_gallery/nasty/select-subject.html",
        "_includes/prompt_gallery/nasty/gallery.html",
        "_projects/nasty.md",
    ):
        text = (site / rel).read_text()
        assert "<script>window" not in text and "<img src=x" not in text
        assert "{{ site.title }}" not in text and "{% raw %}" not in text and "{% include nope" not in text
    select = (site / "_includes/prompt_gallery/nasty/select-subject.html").read_text()
    labels = [html.unescape(m) for m in re.findall(r"<option [^>]*>([^<]*)</option>", select)]
    assert labels == ["a cat", NASTY_LABEL]
    cell = cell_of(site, "nasty", "evil/oil")
    assert cell["prompt"] == NASTY_PROMPT + " oil painting"


@needs_jekyll
@pytest.mark.parametrize("baseurl", ["/repo", ""])
def test_jekyll_builds_the_site_and_every_url_resolves(tmp_path, tiny_sd, baseurl):
    prompts = nasty_project(tmp_path, tiny_sd)
    assert main(["build", "-c", str(prompts)]) == 0
    site = load_config(prompts).site_dir
    dest = tmp_path / "_site"
    result = jekyll_build(site, dest, baseurl)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (dest / "projects/nasty/index.html").read_text()

    # every local URL on the page goes through the baseurl and exists in the built site
    urls = re.findall(r'(?:src|href|data-manifest|data-root)="([^"]+)"', page)
    local = [u for u in urls if not u.startswith(("http", "#", "data:"))]
    assert len(local) >= 6
    for url in local:
        assert url.startswith(baseurl + "/"), url
        target = dest / url[len(baseurl) + 1 :]
        assert target.is_file() or (target / "index.html").is_file(), url
    manifest = json.loads((dest / "assets/img/nasty/manifest.json").read_text())
    for file in cell_files(dest, manifest).values():
        for image in json.loads((dest / file).read_text())["images"]:
            assert (dest / image["thumb"]).is_file() and (dest / image["full"]).is_file()

    # prompt text arrives as text: escaped, and untouched by Liquid
    assert "<script>window" not in page and "<img src=x" not in page
    options = [html.unescape(m) for m in re.findall(r"<option [^>]*>([^<]*)</option>", page)]
    assert NASTY_LABEL in options
    assert "<em>Markdown</em>" in page  # the author's intro is Markdown
    # the card on the projects list
    index = (dest / "index.html").read_text()
    assert f'href="{baseurl}/projects/nasty/"' in index and f'src="{baseurl}/assets/img/nasty/cover.webp"' in index


UNICODE_TITLE = 'Cats 🐱 "quoted" \\ back\\slash: مرحبا'


@needs_jekyll
def test_any_unicode_in_titles_and_labels_builds_with_jekyll(tmp_path, tiny_sd):
    """_config.yml and the front matter are YAML that Jekyll reads: emoji (JSON would escape them as
    surrogate pairs, which YAML refuses), right-to-left text, quotes, backslashes and newlines."""
    prompts = write_prompts(
        tmp_path,
        f"""
        page:
          title: {json.dumps(UNICODE_TITLE, ensure_ascii=False)}
          slug: unicode
          description: "first line\\nsecond line 🐱 ‮reversed"
          category: "🐱 cats"
        site: {{title: {json.dumps(UNICODE_TITLE, ensure_ascii=False)}, description: "🐱\\n\\"x\\""}}
        render: {{model: {tiny_sd}, steps: 2, width: 64, height: 64, samples: 1}}
        axes:
          subject: {{cat: "a cat 🐱", rtl: {{prompt: "قطة", label: "قطة 🐱"}}}}
    """,
    )
    assert main(["site", "-c", str(prompts)]) == 0
    site = load_config(prompts).site_dir
    dest = tmp_path / "_site"
    result = jekyll_build(site, dest, "")
    assert result.returncode == 0, result.stdout + result.stderr
    page = html.unescape((dest / "projects/unicode/index.html").read_text())
    assert f"<title>{UNICODE_TITLE}" in page or f"{UNICODE_TITLE}</" in page
    assert "قطة 🐱" in page


def test_files_are_created_with_the_users_umask(tmp_path, tiny_sd):
    """Readable by a web server and by others (0644 under umask 022), not 0600 as a temp file is made."""
    prompts = write_prompts(
        tmp_path,
        f"""
        render: {{model: {tiny_sd}, steps: 2, width: 64, height: 64, samples: 1}}
        axes: {{subject: {{cat: a cat}}}}
    """,
    )
    old = os.umask(0o022)
    try:
        assert main(["build", "-c", str(prompts)]) == 0
    finally:
        os.umask(old)
    config = load_config(prompts)
    written = [p for folder in (config.site_dir, config.cache_dir) for p in folder.rglob("*") if p.is_file()]
    assert len(written) > 10
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in written}
    assert {m for p, m in modes.items() if not p.endswith(".lock")} == {oct(0o644)}, modes


def shared_site_gallery(folder: Path, model: Path, slug: str, site: str) -> Path:
    """A one-cell gallery whose `site:` title is `slug`'s, written into `site` (from `folder`)."""
    return write_prompts(
        folder,
        f"""
        page: {{title: "{slug.title()} gallery", slug: {slug}}}
        site: {{title: "{slug} site"}}
        paths: {{site: {site}}}
        render: {{model: {model}, steps: 2, width: 64, height: 64, samples: 1}}
        axes: {{subject: {{cat: a cat}}}}
    """,
    )


@needs_jekyll
def test_galleries_share_a_site_its_index_lists_each_and_the_one_beside_it_sets_it_up(tmp_path, tiny_sd):
    """The repository's layout: demo/prompts.yaml writes into ../site, beside the gallery of the
    prompts.yaml next to site/. The index lists every gallery once it is built; the site's own
    settings (_config.yml) are the neighbour's, whichever was built last; records name their
    prompts.yaml from the site, so a committed site reads the same in any checkout."""
    guest = shared_site_gallery(tmp_path / "demo", tiny_sd, "guest", "../site")
    home = shared_site_gallery(tmp_path, tiny_sd, "home", "site")
    site, dest = tmp_path / "site", tmp_path / "_site"

    def listed() -> dict[str, str]:
        result = jekyll_build(site, dest, "/repo")
        assert result.returncode == 0, result.stdout + result.stderr
        index = (dest / "index.html").read_text()
        return dict(
            re.findall(r'<a href="/repo/projects/([^/"]+)/">.*?<h2 class="card-title">([^<]*)</h2>', index, re.S)
        )

    assert main(["build", "-c", str(guest)]) == 0
    assert "guest site" in (site / "_config.yml").read_text()  # alone, it sets the site up
    assert listed() == {"guest": "Guest gallery"}
    assert main(["build", "-c", str(home)]) == 0
    assert listed() == {"guest": "Guest gallery", "home": "Home gallery"}
    assert main(["build", "-c", str(guest)]) == 0  # `make demo` again: the site stays the neighbour's
    config = (site / "_config.yml").read_text()
    assert "home site" in config and "guest site" not in config
    assert "<title>Projects | home site</title>" in (dest / "index.html").read_text()
    records = {p.stem: json.loads(p.read_text()) for p in (site / ".prompt-gallery").glob("*.json")}
    assert {slug: r["config"] for slug, r in records.items()} == {
        "guest": "../demo/prompts.yaml",
        "home": "../prompts.yaml",
    }
    assert "_config.yml" in records["home"]["files"] and "_config.yml" not in records["guest"]["files"]
    assert (dest / "projects/guest/index.html").is_file() and (dest / "projects/home/index.html").is_file()
