"""The compare view in a real browser (Debian's Chromium driven by Playwright, as test_browser.py):
mark an image in the lightbox, compare it with another side by side, with a slider or a flip,
both recipes with the settings that differ marked; the pair in the URL; by pointer and by keyboard;
hostile labels and prompts shown literally."""

import json
import re

import pytest

import test_browser
from conftest import write_prompts
from test_browser import BASEURL, Visit, serve_gallery, strict_csp
from test_site import NASTY_LABEL, NASTY_PROMPT

pytestmark = test_browser.pytestmark  # skipped where test_browser.py is: no Chromium or Jekyll

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
LONG_LABEL = "Long " + "label " * 332 + "end"  # 2,000 characters, wrapping
COMPARE = "dialog.pg-compare"
LIGHTBOX = "dialog.pg-lightbox"
assert len(LONG_LABEL) == 2000


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_sd):
    """(page URL, manifest with every cell's file) of a gallery whose cells differ in prompt,
    negative prompt and steps (the ink style sets both), built by the CLI and Jekyll, served."""
    work = tmp_path_factory.mktemp("compare")
    prompts = write_prompts(
        work,
        f"""
        page: {{title: Compare test, slug: compare, description: compared in Chromium}}
        render: {{model: {tiny_sd}, steps: 2, width: 64, height: 64, samples: 3}}
        axes:
          subject:
            cat: a cat
            evil:
              prompt: {json.dumps(NASTY_PROMPT, ensure_ascii=False)}
              label: {json.dumps(NASTY_LABEL, ensure_ascii=False)}
          style:
            oil: oil painting
            ink: {{prompt: ink drawing, label: Ink, render: {{negative_prompt: colour, steps: 3}}}}
            long: {{prompt: pastel, label: {json.dumps(LONG_LABEL)}}}
    """,
    )
    with serve_gallery(work, prompts, "compare") as served:
        yield served


def full(manifest, cell: str, sample: int) -> str:
    return next(i["full"] for i in manifest["cells"][cell]["images"] if i["sample"] == sample)


def label(manifest, cell: str) -> str:
    keys = cell.split("/")
    return " × ".join(
        next(o["label"] for o in axis["options"] if o["key"] == key)
        for axis, key in zip(manifest["axes"], keys, strict=True)
    )


def is_open(page, selector: str) -> bool:
    return page.locator(selector).evaluate("d => d.open")


def wait_open(page, selector: str, open_: bool = True) -> None:
    page.wait_for_function("([s, o]) => document.querySelector(s)?.open === o", arg=[selector, open_], timeout=10_000)


def differing(page) -> list[str]:
    """The row headers of the recipe rows marked as differing (their badge's text removed)."""
    return page.eval_on_selector_all(
        ".pg-cmp-recipe tr.pg-cmp-differs th",
        "ths => ths.map(th => th.firstChild.textContent.trim())",
    )


def recipe_table(page) -> dict[str, tuple[str, str]]:
    rows = page.eval_on_selector_all(
        ".pg-cmp-recipe tbody tr",
        "trs => trs.map(tr => [tr.querySelector('th').firstChild.textContent.trim(),"
        " ...[...tr.querySelectorAll('td')].map(td => td.textContent)])",
    )
    return {term: (a, b) for term, a, b in rows}


def focus_is_visible(page) -> bool:
    """The focused element draws a focus ring (an outline; the browser's own counts)."""
    return page.evaluate(
        "(() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return e !== document.body && s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0; })()"
    )


def open_lightbox(page, nth: int) -> None:
    page.locator(".pg-grid a.pg-link").nth(nth).click()
    wait_open(page, LIGHTBOX)


def test_mark_and_compare_side_by_side_on_desktop_with_the_differences_marked(served, browser):
    from playwright.sync_api import expect

    url, manifest = served
    v = Visit(browser, url, viewport=DESKTOP["viewport"])
    page = v.page
    open_lightbox(page, 0)  # cat/oil, sample 1
    mark, compare = page.locator(".pg-cmp-mark"), page.locator(".pg-cmp-open")
    assert mark.get_attribute("aria-pressed") == "false" and compare.is_hidden()
    mark.click()
    assert mark.get_attribute("aria-pressed") == "true"
    assert page.locator(".pg-cmp-note").inner_text() == "Marked: this image."
    assert compare.is_hidden()  # nothing to compare it with yet
    page.keyboard.press("ArrowRight")  # sample 2 of the same cell
    expect(compare).to_be_visible()
    assert mark.get_attribute("aria-pressed") == "false"
    page.keyboard.press("Escape")
    page.select_option("select[data-axis=style]", "ink")
    v.wait_thumbs([f"{BASEURL}/{i['thumb']}" for i in manifest["cells"]["cat/ink"]["images"]])
    open_lightbox(page, 1)  # cat/ink, sample 2
    assert page.locator(".pg-cmp-note").inner_text() == f"Marked: {label(manifest, 'cat/oil')}, sample 1."
    before = page.url
    compare.click()
    wait_open(page, COMPARE)
    assert page.url == before + "&compare=cat/oil:1,cat/ink:2"
    # side by side: A left of B, at the same height, each its full-size image
    boxes = [page.locator(".pg-cmp-sides img").nth(i).bounding_box() for i in (0, 1)]
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] and abs(boxes[0]["y"] - boxes[1]["y"]) < 1
    assert boxes[0]["width"] > 300  # the wide screen is used
    srcs = page.eval_on_selector_all(".pg-cmp-sides img", "els => els.map(e => new URL(e.src).pathname)")
    assert srcs == [f"{BASEURL}/{full(manifest, 'cat/oil', 0)}", f"{BASEURL}/{full(manifest, 'cat/ink', 1)}"]
    captions = page.eval_on_selector_all(".pg-cmp-caption", "els => els.map(e => e.textContent)")
    assert captions == [f"A: {label(manifest, 'cat/oil')}, sample 1", f"B: {label(manifest, 'cat/ink')}, sample 2"]
    assert page.locator(".pg-cmp-mode[data-mode=side]").get_attribute("aria-pressed") == "true"
    assert page.locator(".pg-cmp-spot").is_hidden()
    # the recipes: every setting, the differing ones marked
    assert differing(page) == ["Style", "Prompt", "Negative prompt", "Seed", "Steps"]
    table = recipe_table(page)
    oil, ink = manifest["cells"]["cat/oil"], manifest["cells"]["cat/ink"]
    assert table["Prompt"] == ("a cat oil painting", "a cat ink drawing")
    assert table["Negative prompt"] == ("—", "colour")
    assert table["Seed"] == (str(oil["images"][0]["seed"]), str(ink["images"][1]["seed"]))
    assert table["Steps"] == ("2", "3")
    assert table["Model"] == (oil["settings"]["model"],) * 2 and table["Size"] == ("64×64", "64×64")
    assert "Scheduler" in table and "Subject" in table
    assert page.locator(".pg-cmp-summary").inner_text().startswith("5 of ")
    badges = page.locator(".pg-cmp-badge")
    assert badges.count() == 5 and badges.first.inner_text() == "differs"  # not by colour alone
    # Escape closes it: back to the lightbox, focus where it was, the pair gone from the URL
    page.keyboard.press("Escape")
    wait_open(page, COMPARE, False)
    assert is_open(page, LIGHTBOX)
    page.wait_for_function("u => location.href === u", arg=before)
    assert page.evaluate("document.activeElement.className") == "pg-cmp-open"
    page.keyboard.press("Escape")
    v.close()


def test_mark_and_compare_by_keyboard_alone_with_slider_and_flip_on_a_phone(served, browser):
    url, manifest = served
    v = Visit(browser, url, **PHONE)
    page = v.page

    def tab_to(selector: str, limit: int = 30) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("s => document.activeElement.matches(s)", selector):
                assert focus_is_visible(page), selector
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to(".pg-grid a.pg-link")
    page.keyboard.press("Enter")
    wait_open(page, LIGHTBOX)
    page.wait_for_selector(".pg-cmp-mark")
    tab_to(".pg-cmp-mark")
    page.keyboard.press("Space")
    assert page.locator(".pg-cmp-mark").get_attribute("aria-pressed") == "true"
    page.keyboard.press("ArrowRight")  # the lightbox moves on: sample 2
    assert page.locator(".pg-cmp-mark").get_attribute("aria-pressed") == "false"
    tab_to(".pg-cmp-open")
    page.keyboard.press("Enter")
    wait_open(page, COMPARE)
    assert page.url.endswith("compare=cat/oil:1,cat/oil:2")
    assert page.evaluate("document.activeElement.className") == "pg-cmp-close" and focus_is_visible(page)
    # a phone has no room side by side: the slider, on the same spot
    assert page.locator(".pg-cmp-mode[data-mode=side]").is_hidden()
    assert page.locator(".pg-cmp-mode[data-mode=slider]").get_attribute("aria-pressed") == "true"
    under, over = page.locator(".pg-cmp-under"), page.locator(".pg-cmp-over")
    assert under.bounding_box() == over.bounding_box()
    assert differing(page) == ["Seed"]
    tab_to(".pg-cmp-range")
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    assert page.locator(".pg-cmp-range").input_value() == "45"
    assert over.evaluate("e => e.style.clipPath") == "inset(0px 0px 0px 45%)"
    assert page.locator(".pg-cmp-range").get_attribute("aria-valuetext") == "45% A, 55% B"
    # the flip: a button, and the F key
    tab_to(".pg-cmp-mode[data-mode=flip]")
    page.keyboard.press("Enter")
    assert over.is_hidden() and page.locator(".pg-cmp-range").is_hidden()
    assert page.locator(".pg-cmp-showing").inner_text() == f"Showing A: {label(manifest, 'cat/oil')}, sample 1"
    tab_to(".pg-cmp-flip")
    page.keyboard.press("Enter")
    assert over.is_visible() and over.evaluate("e => e.style.clipPath") == ""
    assert page.locator(".pg-cmp-showing").inner_text().startswith("Showing B:")
    page.keyboard.press("f")
    assert over.is_hidden()
    tab_to(".pg-cmp-close")  # every control is on the way, focus always visible
    page.keyboard.press("Enter")
    wait_open(page, COMPARE, False)
    assert page.evaluate("document.activeElement.className") == "pg-cmp-open"
    page.wait_for_function("!location.search.includes('compare=')")
    v.close()


def test_the_slider_follows_a_drag_and_a_tap_flips_on_a_phone(served, browser):
    url, _ = served
    v = Visit(browser, url + "?compare=cat/oil:1,cat/ink:1", **PHONE)
    page = v.page
    wait_open(page, COMPARE)
    box = page.locator(".pg-cmp-overlay").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * 0.25, y, steps=2)
    page.mouse.up()
    value = int(page.locator(".pg-cmp-range").input_value())
    assert 23 <= value <= 27
    assert page.locator(".pg-cmp-over").evaluate("e => e.style.clipPath") == f"inset(0px 0px 0px {value}%)"
    divider = page.locator(".pg-cmp-divider").bounding_box()
    assert abs(divider["x"] - (box["x"] + box["width"] * value / 100)) < 3
    page.locator(".pg-cmp-mode[data-mode=flip]").click()
    assert page.locator(".pg-cmp-over").is_hidden()
    page.locator(".pg-cmp-overlay").tap()
    assert page.locator(".pg-cmp-over").is_visible()
    assert page.locator(".pg-cmp-showing").inner_text().startswith("Showing B:")
    # nothing wider than the screen
    assert page.evaluate("document.querySelector('dialog.pg-compare').scrollWidth <= innerWidth")
    page.keyboard.press("Escape")
    v.close()


def test_the_pair_is_in_the_url_back_closes_forward_reopens(served, browser):
    url, manifest = served
    v = Visit(browser, url + "?subject=cat&style=oil", viewport=DESKTOP["viewport"])
    page = v.page
    open_lightbox(page, 2)
    page.locator(".pg-cmp-mark").click()
    page.keyboard.press("ArrowLeft")
    page.locator(".pg-cmp-open").click()
    wait_open(page, COMPARE)
    assert page.url == url + "?subject=cat&style=oil&compare=cat/oil:3,cat/oil:2"
    page.go_back()
    wait_open(page, COMPARE, False)
    # the URL is written in the dialog's close event, which may come a moment after it closes
    page.wait_for_function("u => location.href === u", arg=url + "?subject=cat&style=oil")
    assert is_open(page, LIGHTBOX)
    page.go_forward()
    wait_open(page, COMPARE)
    assert page.locator(".pg-cmp-caption").first.inner_text() == f"A: {label(manifest, 'cat/oil')}, sample 3"
    page.locator(".pg-cmp-close").click()
    wait_open(page, COMPARE, False)
    page.wait_for_function("u => location.href === u", arg=url + "?subject=cat&style=oil")
    page.keyboard.press("Escape")
    v.close()

    # a link opens the compare at once; closing it leaves the page's own URL
    v = Visit(browser, url + "?compare=evil/ink:3,cat/long:1", viewport=DESKTOP["viewport"])
    page = v.page
    wait_open(page, COMPARE)
    srcs = page.eval_on_selector_all(".pg-cmp-sides img", "els => els.map(e => new URL(e.src).pathname)")
    assert srcs == [f"{BASEURL}/{full(manifest, 'evil/ink', 2)}", f"{BASEURL}/{full(manifest, 'cat/long', 0)}"]
    assert not is_open(page, LIGHTBOX)
    page.keyboard.press("Escape")
    wait_open(page, COMPARE, False)
    page.wait_for_function("u => location.href === u", arg=url)
    v.close()


@pytest.mark.parametrize(
    "value",
    [
        "nope/oil:1,cat/oil:1",
        "cat/oil:9,cat/ink:1",
        "cat/oil:1,cat/oil:1",
        "cat/oil:0,cat/ink:1",
        "cat/oil:1",
        "%3Cscript%3E",
        "cat/oil:1,cat/ink:1,evil/oil:1",
        "cat:1,oil:2",
    ],
)
def test_an_unknown_pair_is_ignored(served, browser, value):
    url, manifest = served
    v = Visit(browser, f"{url}?compare={value}")
    page = v.page
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(200)
    assert page.locator(COMPARE).count() == 0 or not is_open(page, COMPARE)
    assert v.thumbs() == [f"{BASEURL}/{i['thumb']}" for i in manifest["cells"]["cat/oil"]["images"]]
    assert page.locator(".pg-status").inner_text() == ""
    v.close()


def test_hostile_labels_and_prompts_are_shown_literally_under_a_strict_csp(served, browser):
    url, manifest = served
    v = Visit(browser, url + "?compare=evil/oil:1,cat/long:2", routes=strict_csp(url), **PHONE)
    page = v.page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    wait_open(page, COMPARE)
    page.locator(".pg-cmp-mode[data-mode=flip]").click()
    table = recipe_table(page)
    assert table["Prompt"] == (NASTY_PROMPT + " oil painting", "a cat pastel")
    assert table["Subject"] == (NASTY_LABEL, label(manifest, "cat/oil").split(" × ")[0])
    assert table["Style"][1] == LONG_LABEL
    legend = page.eval_on_selector_all(".pg-cmp-legend li", "els => els.map(e => e.textContent)")
    assert label(manifest, "evil/oil").startswith(NASTY_LABEL) and label(manifest, "cat/long").endswith(LONG_LABEL)
    assert legend == [f"A: {label(manifest, 'evil/oil')}, sample 1", f"B: {label(manifest, 'cat/long')}, sample 2"]
    assert page.locator(".pg-cmp-showing").inner_text().startswith(f"Showing A: {NASTY_LABEL}")
    alt = page.locator(".pg-cmp-under").get_attribute("alt")
    assert alt.startswith("A: " + NASTY_PROMPT)
    assert page.evaluate("window.pwned") is None and page.locator("img[src='x']").count() == 0
    assert page.locator(".pg-compare script, .pg-compare b, .pg-compare strong").count() == 0
    # the 2,000-character label wraps (nothing wider than the screen) and does not push the pictures away
    assert page.locator(".pg-cmp-overlay").bounding_box()["y"] < 400
    assert page.evaluate("document.querySelector('dialog.pg-compare').scrollWidth <= innerWidth")
    assert page.locator(".pg-cmp-over").evaluate("e => getComputedStyle(e).position") == "absolute"  # styled
    page.keyboard.press("Escape")
    assert dialogs == []
    v.close()  # a CSP violation, console error or page error would fail here


def test_the_compare_costs_the_first_view_nothing(served, browser):
    url, _ = served
    v = Visit(browser, url)
    page = v.page
    page.wait_for_load_state("networkidle")
    fetched = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert not [u for u in fetched if re.search(r"pg-compare\.(js|css)$", u)]
    open_lightbox(page, 0)
    page.wait_for_selector(".pg-cmp-mark")
    fetched = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert len([u for u in fetched if re.search(r"pg-compare\.(js|css)$", u)]) == 2
    page.keyboard.press("Escape")
    v.close()


def test_compare_from_the_grid_view(served, browser):
    """Mark in the grid's lightbox, move along the row, compare; Back keeps the grid. Skipped where
    the page has no grid view (the compare branch before the grid branch is merged)."""
    url, _ = served
    grid = "?view=grid&rows=subject&cols=style&sample=1"
    v = Visit(browser, url + grid, viewport=DESKTOP["viewport"])
    page = v.page
    if page.locator(".pg-table a.pg-glink").count() == 0 and page.locator("select[data-control=view]").count() == 0:
        v.close()
        pytest.skip("this page has no grid view yet")
    # cat/oil, sample 1, by keyboard: in the grid branch as it stands, the sticky header of the
    # 2,000-character column label covers the grid's images, and a click would land on it
    page.locator(".pg-table a.pg-glink").first.focus()
    page.keyboard.press("Enter")
    wait_open(page, LIGHTBOX)
    page.locator(".pg-cmp-mark").click()
    page.keyboard.press("ArrowRight")  # along the row: cat/ink
    page.locator(".pg-cmp-open").click()
    wait_open(page, COMPARE)
    assert page.url.endswith("&compare=cat/oil:1,cat/ink:1") and "view=grid" in page.url
    assert differing(page) == ["Style", "Prompt", "Negative prompt", "Steps"]
    page.go_back()
    wait_open(page, COMPARE, False)
    assert page.url.endswith(grid) and page.locator(".pg-table").is_visible()
    page.keyboard.press("Escape")
    v.close()


def test_the_mark_outlives_a_reload_and_a_stale_one_is_forgotten(served, browser):
    """The mark is kept for the tab (sessionStorage): after a reload another image compares with
    it. A kept mark that names no image of the gallery (a cell gone since) is forgotten."""
    from playwright.sync_api import expect

    url, manifest = served
    v = Visit(browser, url, viewport=DESKTOP["viewport"])
    page = v.page
    mark, note = page.locator(".pg-cmp-mark"), page.locator(".pg-cmp-note")
    open_lightbox(page, 0)  # cat/oil, sample 1
    mark.click()
    expect(mark).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Escape")
    page.reload()
    page.wait_for_selector("select[data-axis]:not([disabled])", state="attached")
    open_lightbox(page, 1)  # sample 2 of the same cell
    expect(note).to_have_text(f"Marked: {label(manifest, 'cat/oil')}, sample 1.")
    page.locator(".pg-cmp-open").click()
    wait_open(page, COMPARE)
    assert page.url.endswith("?compare=cat/oil:1,cat/oil:2")
    page.keyboard.press("Escape")
    wait_open(page, COMPARE, False)
    # Closing goes back in history, which is asynchronous: a reload before the URL has dropped
    # the pair would open the compare again.
    page.wait_for_function("!window.location.search.includes('compare=')", timeout=10_000)
    page.keyboard.press("Escape")
    page.evaluate("() => { for (const key of Object.keys(sessionStorage)) sessionStorage.setItem(key, 'cat/gone:1'); }")
    page.reload()
    page.wait_for_selector("select[data-axis]:not([disabled])", state="attached")
    open_lightbox(page, 0)
    page.wait_for_function("Object.keys(sessionStorage).length === 0")
    expect(mark).to_have_attribute("aria-pressed", "false")
    expect(note).to_have_text("")
    assert page.locator(".pg-cmp-open").is_hidden()
    page.keyboard.press("Escape")
    v.close()
