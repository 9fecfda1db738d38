"""`gallery build --into`: the gallery dropped into an existing al-folio-like Jekyll site."""

import hashlib
import re

import pytest

from conftest import files_under
from gallery.cli import main
from test_build import small_project
from test_site import jekyll_build, needs_jekyll

ALFOLIO_FILES = {
    "_config.yml": "title: My site\ncollections:\n  projects:\n    output: true\n    permalink: /projects/:name/\n",
    "_layouts/default.html": "<!DOCTYPE html><html><head><title>{{ page.title }}</title></head>"
    "<body>{{ content }}</body></html>\n",
    "_layouts/page.html": '---\nlayout: default\n---\n<h1 class="post-title">{{ page.title }}</h1>\n'
    '<p class="post-description">{{ page.description }}</p>\n{{ content }}\n',
    # al-folio's projects list: cards from the _projects collection, sorted by importance
    "projects.md": "---\nlayout: page\ntitle: projects\npermalink: /projects/\n---\n"
    '{% assign sorted = site.projects | sort: "importance" %}\n'
    '{% for project in sorted %}<div class="card"><a href="{{ project.url | relative_url }}">'
    '<img class="card-img-top" src="{{ project.img | relative_url }}" alt="project thumbnail">'
    '<h2 class="card-title">{{ project.title }}</h2><p class="card-text">{{ project.description }}'
    "</p></a></div>{% endfor %}\n",
    "_projects/1_project.md": "---\nlayout: page\ntitle: An older project\ndescription: not ours\n"
    "img: assets/img/1.jpg\nimportance: 2\n---\nHello.\n",
    "assets/img/1.jpg": "not really a jpeg",
    "assets/js/common.js": "console.log('theirs');\n",
}


def digest(folder, rel):
    return hashlib.sha256((folder / rel).read_bytes()).hexdigest()


@pytest.fixture
def alfolio(tmp_path):
    site = tmp_path / "my-site"
    for rel, text in ALFOLIO_FILES.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    return site


@needs_jekyll
def test_into_writes_only_the_gallery_and_shows_the_card(tmp_path, tiny_sd, alfolio):
    prompts = small_project(tmp_path / "gallery", tiny_sd)
    before = {rel: digest(alfolio, rel) for rel in ALFOLIO_FILES}
    assert main(["build", "-c", str(prompts), "--into", str(alfolio)]) == 0
    assert {rel: digest(alfolio, rel) for rel in ALFOLIO_FILES} == before  # theirs untouched
    added = files_under(alfolio) - set(ALFOLIO_FILES)
    assert all(
        rel.startswith(
            (
                "_projects/tiny-test.md",
                "_includes/prompt_gallery/tiny-test/",
                "assets/js/prompt-gallery.js",
                "assets/js/pg-grid.js",
                "assets/js/pg-search.js",
                "assets/css/prompt-gallery.css",
                "assets/js/pg-compare.js",
                "assets/css/pg-compare.css",
                "assets/img/tiny-test/",
                ".prompt-gallery/",
            )
        )
        for rel in added
    ), added
    assert not (alfolio / "index.html").exists() and not (tmp_path / "gallery/site").exists()

    dest = tmp_path / "_site"
    result = jekyll_build(alfolio, dest, "/repo")
    assert result.returncode == 0, result.stderr
    projects = (dest / "projects/index.html").read_text()
    card = re.search(r'<div class="card"><a href="/repo/projects/tiny-test/">(.*?)</div>', projects, re.S)
    assert card and 'src="/repo/assets/img/tiny-test/cover.webp"' in card.group(1)
    assert "Tiny test" in card.group(1)
    page = (dest / "projects/tiny-test/index.html").read_text()
    assert 'data-manifest="/repo/assets/img/tiny-test/manifest.json"' in page
    assert (dest / "assets/img/tiny-test/cover.webp").is_file()


def test_into_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, tiny_sd, alfolio, capsys):
    prompts = small_project(tmp_path / "gallery", tiny_sd)
    (alfolio / "_projects/tiny-test.md").write_text("---\ntitle: my own page with the same name\n---\n")
    assert main(["site", "-c", str(prompts), "--into", str(alfolio)]) == 1
    assert "was not written by prompt-gallery" in capsys.readouterr().err
    assert (alfolio / "_projects/tiny-test.md").read_text().startswith("---\ntitle: my own page")
    assert not (alfolio / "assets/img/tiny-test").exists()


def test_into_needs_a_jekyll_site(tmp_path, tiny_sd, capsys):
    prompts = small_project(tmp_path / "gallery", tiny_sd)
    (tmp_path / "empty").mkdir()
    assert main(["site", "-c", str(prompts), "--into", str(tmp_path / "empty")]) == 1
    assert "no _config.yml" in capsys.readouterr().err
