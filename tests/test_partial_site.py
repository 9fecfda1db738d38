"""A partial site is a valid site: `gallery site` on a cache that holds part of the matrix (a render
stopped midway) writes a page of what exists, each cell still missing images saying how many, in
the HTML and in the script's cell and grid views; a later full build removes the placeholders."""

import json

import pytest

from accessibility import axe_violations
from conftest import cell_of
from gallery.cli import main
from gallery.config import load_config
from gallery.project import open_project
from test_browser import BASEURL, Visit, browser_prompts, jekyll_build, wait_grid
from test_browser import pytestmark as browser_mark

pytestmark = browser_mark
SAMPLES = 3
# what a render stopped midway left: cell -> the samples in the cache
RENDERED = {"cat/oil": [0], "cat/ink": [], "evil/oil": [0, 1, 2], "evil/ink": [0, 2]}


@pytest.fixture(scope="module")
def partial(tmp_path_factory, tiny_sd):
    """(work folder, prompts file) of a 2 x 2 gallery with only RENDERED in its cache."""
    from gallery.render import Renderer

    work = tmp_path_factory.mktemp("partial")
    prompts = browser_prompts(work, tiny_sd, "partial", samples=SAMPLES)
    project = open_project(prompts)
    jobs = [job for job in project.plan.jobs if job.sample in RENDERED["/".join(job.cell)]]
    report = Renderer(project.config.runtime).render(jobs, project.cache)
    assert report.rendered == len(jobs) == 6 and not report.rejected
    return work, prompts


def jekyll(work, prompts, name: str) -> str:
    """Jekyll-build the site under BASEURL into work/name; the folder the server serves."""
    root = work / name
    result = jekyll_build(load_config(prompts).site_dir, root / BASEURL.strip("/"), BASEURL)
    assert result.returncode == 0, result.stderr
    return str(root)


def pending(page) -> list[str]:
    return page.eval_on_selector_all(".pg-grid .pg-pending", "els => els.map(e => e.textContent.trim())")


def test_a_partial_site_shows_what_exists_and_counts_what_is_missing(partial, browser, capsys):
    from scripts.browser import serve_static

    work, prompts = partial
    assert main(["site", "-c", str(prompts)]) == 0
    assert "site: 6 planned images are not rendered yet" in capsys.readouterr().out
    site = load_config(prompts).site_dir
    index = json.loads((site / "assets/img/partial/manifest.json").read_text())
    assert index["missing"] == 4 * SAMPLES - 6
    for cell, samples in RENDERED.items():  # the count the page shows is the manifest's
        data = cell_of(site, "partial", cell)
        assert [i["sample"] for i in data["images"]] == samples and data["missing"] == SAMPLES - len(samples)
    with serve_static(work / jekyll(work, prompts, "www")) as base:
        url = f"{base}{BASEURL}/projects/partial/"
        # without JavaScript: the default cell's image and its placeholder, in the HTML
        v = Visit(browser, url, java_script_enabled=False)
        assert v.page.locator(".pg-grid img").count() == 1
        assert pending(v.page) == ["2 of 3 images not rendered yet"]
        assert v.page.locator(".pg-status").inner_text() == "2 of 3 images in this cell are not rendered yet."
        v.close()
        # the script's cell view: each cell's images and its own count
        v = Visit(browser, url)
        page = v.page
        for cell, samples in (("evil/ink", [0, 2]), ("cat/ink", []), ("evil/oil", [0, 1, 2])):
            subject, style = cell.split("/")
            page.select_option("select[data-axis=subject]", subject)
            page.select_option("select[data-axis=style]", style)
            v.wait_thumbs([f"{BASEURL}/{i['thumb']}" for i in cell_of(site, "partial", cell)["images"]])
            want = [f"{SAMPLES - len(samples)} of {SAMPLES} images not rendered yet"] if len(samples) < SAMPLES else []
            assert pending(page) == want, cell
        assert axe_violations(page) == []  # the placeholder among the images
        v.close()
        # the grid view: all samples, each cell with its count; one sample, where it is missing
        v = Visit(browser, url + "?view=grid&rows=subject&cols=style&sample=all")
        table = wait_grid(v.page, ["oil painting", "Ink"])
        assert [[len(images) for images in row] for row in table["cells"]] == [[1, 0], [3, 2]]
        texts = "tr => [...tr.querySelectorAll('td')].map(td => td.querySelector('.pg-gpending')?.textContent ?? '')"
        rows = v.page.eval_on_selector_all(".pg-table tbody tr", f"trs => trs.map({texts})")
        assert rows == [["2 not rendered yet", "3 not rendered yet"], ["", "1 not rendered yet"]]
        v.page.select_option("select[data-control=sample]", "2")
        v.page.wait_for_function("document.querySelectorAll('.pg-table img').length === 1")
        rows = v.page.eval_on_selector_all(".pg-table tbody tr", f"trs => trs.map({texts})")
        assert rows == [["not rendered yet", "not rendered yet"], ["", "not rendered yet"]]
        assert axe_violations(v.page) == []
        v.close()

    # the rest rendered: no placeholder is left
    assert main(["build", "-c", str(prompts)]) == 0
    assert json.loads((site / "assets/img/partial/manifest.json").read_text())["missing"] == 0
    with serve_static(work / jekyll(work, prompts, "www2")) as base:
        url = f"{base}{BASEURL}/projects/partial/"
        v = Visit(browser, url, java_script_enabled=False)
        assert v.page.locator(".pg-grid img").count() == SAMPLES and pending(v.page) == []
        assert v.page.locator(".pg-status").inner_text() == ""
        v.close()
        v = Visit(browser, url + "?view=grid&rows=subject&cols=style&sample=all")
        table = wait_grid(v.page, ["oil painting", "Ink"])
        assert [[len(images) for images in row] for row in table["cells"]] == [[3, 3], [3, 3]]
        assert v.page.locator(".pg-table .pg-gpending, .pg-table .pg-missing").count() == 0
        v.close()
