"""End to end in a real browser: Debian's Chromium driven by Playwright against the app served
headless on a free localhost port. Moves a slider and sees the chart change, clicks a point to
select its recipe, exports the merge and downloads it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ptm_core.app import bench, testkit

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not Path(bench.CHROMIUM).exists():
    pytest.skip(f"{bench.CHROMIUM} is absent: install Debian's chromium (`make browser`, "
                "i.e. apt-get install chromium) to run the browser test", allow_module_level=True)
pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, root, export dir, browser) for a fixture experiment with tiny real checkpoints."""
    pytest.importorskip("transformers")
    from playwright.sync_api import sync_playwright
    from ptm_core.testing.tiny import family

    root = tmp_path_factory.mktemp("e2e")
    m = family(root / "models", names=("pre", "general", "science", "coding", "safety"))
    models = {"base": m["pre"], **{k: v for k, v in m.items() if k != "pre"}}
    csv = testkit.write_frame_experiment(root, "fixture", models=models)
    exports = root / "exports"
    env = bench.app_env(str(csv), root, PTM_EXPORT_DIR=str(exports))
    with bench.streamlit_server(env, log=root / "streamlit.log") as url, sync_playwright() as p:
        browser = bench.launch_chromium(p)
        try:
            yield url, root, exports, browser
        finally:
            browser.close()


@pytest.fixture
def page(served):
    url, root, _, browser = served
    pg = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    try:
        yield pg
    except Exception:
        raise
    finally:
        pg.close()


def _shot_on_failure(page, root: Path, name: str):
    try:
        page.screenshot(path=str(root / f"{name}.png"), full_page=True)
    except Exception:  # noqa: BLE001
        pass


def test_slider_chart_export_download(served, page):
    url, root, exports, _ = served
    try:
        page.goto(f"{url}/merge")
        bench.wait_app_ready(page)
        page.get_by_text("Measured", exact=False).first.wait_for(timeout=60_000)
        # move the science slider one step: the highlighted point moves
        ms, before, after = bench.move_slider_and_time(page, slider_index=0, key="ArrowLeft")
        assert before and after and before != after
        # that ω is not measured: an estimate, marked as such
        page.get_by_text("Estimate", exact=False).first.wait_for(timeout=30_000)
        # export, then download the zip
        page.get_by_role("button", name="Export checkpoint").click()
        dl_button = page.get_by_role("button", name="Download as zip")
        dl_button.wait_for(timeout=120_000)
        written = [d for d in exports.iterdir() if d.is_dir() and not d.name.startswith(".")]
        assert len(written) == 1 and (written[0] / "model.safetensors").is_file()
        with page.expect_download(timeout=60_000) as info:
            dl_button.click()
        path = root / "download.zip"
        info.value.save_as(path)
        names = zipfile.ZipFile(path).namelist()
        assert f"{written[0].name}/model.safetensors" in names
        assert f"{written[0].name}/README.md" in names
    except Exception:
        _shot_on_failure(page, root, "failure_export")
        raise


def test_clicking_a_point_selects_its_recipe(served, page):
    url, root, _, _ = served
    try:
        page.goto(url)
        bench.wait_app_ready(page)
        slider = page.locator(bench.SLIDER_INPUT).first
        assert slider.get_attribute("aria-valuetext") == "0.2227 (heuristic)"
        # the PTM curve is the second trace (after the Pareto frontier); point 8 is ω = 0.7
        point = page.locator(".js-plotly-plot").first.locator(".scatterlayer .trace").nth(1) \
            .locator("path.point").nth(8)
        box = point.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.get_by_text("Selected:", exact=False).first.wait_for(timeout=30_000)
        page.wait_for_function("() => document.querySelector('[data-testid=\"stSlider\"] "
                               "input[type=range]').getAttribute('aria-valuetext') === '0.7'",
                               timeout=30_000)
    except Exception:
        _shot_on_failure(page, root, "failure_click")
        raise
