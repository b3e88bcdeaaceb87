"""`python -m ptm_core bench app`: how fast the app answers a slider move on a cached point.

- server: Streamlit's AppTest runs the Trade-offs page and moves the first ω slider over its
  cached grid; the time is the script run measured inside app.py (``_run_ms``: the whole page,
  not only the fragment a browser would rerun, so it is an upper bound), and AppTest's wall time.
- browser: ``streamlit run app.py`` headless on a free localhost port, driven by Playwright with
  Debian's Chromium; the time runs from the key press on the slider to the moment the chart's
  highlighted point has moved in the page.

Prints one line per measurement series and, last, a JSON object with ``server_ms`` and
``browser_ms`` (medians). Without ``--experiment`` it uses the lab when it is built, else a
synthetic results frame shaped like the lab's (said so in the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from ptm_core.app import data

CHROMIUM = "/usr/bin/chromium"
SLIDER_INPUT = '[data-testid="stSlider"] input[type="range"]'
SLIDER_KEY = "tradeoffs:omega:{skill}:ptm"


# --- shared with the end-to-end test -------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(experiment: str, root: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PTM_APP_FRAGMENTS"] = "1"  # a real server reruns only the moved slider's fragment
    env["PTM_APP_EXPERIMENT"] = experiment
    if root is not None:
        env["PTM_APP_ROOT"] = str(root)
    env.update(extra)
    return env


@contextlib.contextmanager
def streamlit_server(env: dict[str, str], port: int | None = None, *, timeout_s: float = 90.0,
                     log: Path | None = None) -> Iterator[str]:
    """``streamlit run app.py`` on 127.0.0.1 (headless); yields its URL once /_stcore/health
    answers ``ok``; stops it (and only it) on exit."""
    port = port or free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptm_core.app.serve", str(data.REPO / "app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=data.REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}"
                                   + (f"; see {log}" if log else ""))
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy within {timeout_s:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu",
                                            "--disable-dev-shm-usage"])


# JS: the highlighted point of the n-th Plotly chart on the page, as "x,y|label" (or "" when
# absent). The label holds ω, so a move between two ω with equal scores still counts.
CURRENT_POINT_JS = """(n) => {
  const plots = document.querySelectorAll('.js-plotly-plot');
  const el = plots[n];
  if (!el || !el.data) return '';
  const t = el.data.find(d => (d.name || '').startsWith('current'));
  if (!t || !t.x || !t.x.length) return '';
  return `${t.x[0]},${t.y[0]}|${t.hovertemplate || ''}`;
}"""


def wait_app_ready(page, timeout_ms: int = 90_000) -> None:
    page.wait_for_selector(".js-plotly-plot", timeout=timeout_ms)
    page.wait_for_function(f"() => ({CURRENT_POINT_JS})(0) !== ''", timeout=timeout_ms)


def move_slider_and_time(page, slider_index: int = 0, chart_index: int = 0, *,
                         key: str = "ArrowRight", timeout_ms: int = 30_000) -> tuple[float, str, str]:
    """Press a key on a slider; return (ms until the chart's highlighted point moved, before,
    after)."""
    before = page.evaluate(CURRENT_POINT_JS, chart_index)
    thumb = page.locator(SLIDER_INPUT).nth(slider_index)
    thumb.focus()
    t0 = time.perf_counter()
    thumb.press(key)
    page.wait_for_function(f"(b) => {{ const v = ({CURRENT_POINT_JS})({chart_index}); "
                           "return v !== '' && v !== b; }", arg=before, timeout=timeout_ms,
                           polling="raf")
    ms = 1000 * (time.perf_counter() - t0)
    return ms, before, page.evaluate(CURRENT_POINT_JS, chart_index)


# --- the benchmark -------------------------------------------------------------------------------
def _synthetic_experiment(tmp: Path) -> Path:
    from ptm_core.app.synthetic import synthetic_frame
    path = tmp / "synthetic" / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_frame().to_csv(path, index=False)
    return path


def _pick_experiment(arg: str | None, tmp: Path) -> tuple[str, Path | None, str]:
    """(experiment ref, app root, description)."""
    if arg:
        if arg in ("lab", "paper"):
            return arg, None, arg
        p = Path(arg).expanduser().resolve()
        return str(p), p.parent, str(p)
    try:
        src = data.open_source("lab")
        if not src.results().empty:
            return "lab", None, "lab"
    except Exception:  # noqa: BLE001 - the lab is not built: use the synthetic frame
        pass
    p = _synthetic_experiment(tmp)
    return str(p), p.parent, "synthetic (the lab is not built)"


def bench_server(experiment: str, root: Path | None, rounds: int, tmp: Path) -> dict:
    """Median script time of Trade-offs page reruns after a slider move, via AppTest."""
    from streamlit.testing.v1 import AppTest

    os.environ.update({k: v for k, v in app_env(experiment, root, PTM_APP_FRAGMENTS="0").items()
                       if k.startswith("PTM_")})
    main = tmp / "app.py"  # a copy without a pages/ folder beside it (see docs/app.md)
    shutil.copy(data.REPO / "app.py", main)
    at = AppTest.from_file(str(main), default_timeout=120)
    at.run()
    if at.exception:
        raise RuntimeError(f"the app raised: {at.exception[0].value}")
    sliders = [s for s in at.select_slider if s.key and s.key.startswith("tradeoffs:omega:")]
    if not sliders:
        raise RuntimeError("no ω slider on the Trade-offs page (no cached PTM curve?)")
    key = sliders[0].key
    grid = list(sliders[0].options)
    values = [float(v.split(" ")[0]) for v in grid]
    # Warm: visit every grid value once (first visits build the per-ω highlight once).
    for v in values:
        at.select_slider(key=key).set_value(v).run()
    script, wall = [], []
    i = 0
    while len(script) < rounds:
        v = values[i % len(values)]
        i += 1
        t0 = time.perf_counter()
        at.select_slider(key=key).set_value(v).run()
        wall.append(1000 * (time.perf_counter() - t0))
        script.append(float(at.session_state["_run_ms"]))
    return {"server_ms": statistics.median(script), "server_wall_ms": statistics.median(wall),
            "server_p90_ms": sorted(script)[int(0.9 * (len(script) - 1))], "slider": key,
            "grid_points": len(values)}


def bench_browser(experiment: str, root: Path | None, rounds: int, tmp: Path) -> dict:
    from playwright.sync_api import sync_playwright

    env = app_env(experiment, root)
    times: list[float] = []
    with streamlit_server(env, log=tmp / "streamlit.log") as url, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            wait_app_ready(page)
            if page.locator(SLIDER_INPUT).count() == 0:
                raise RuntimeError("no slider in the page")
            direction = "ArrowRight"
            warm = 2
            while len(times) < rounds:
                now, vmin, vmax = page.locator(SLIDER_INPUT).nth(0).evaluate(
                    "e => [Number(e.value), Number(e.min), Number(e.max)]")
                if now >= vmax:
                    direction = "ArrowLeft"
                elif now <= vmin:
                    direction = "ArrowRight"
                ms, _, _ = move_slider_and_time(page, key=direction)
                if warm:
                    warm -= 1
                else:
                    times.append(ms)
        finally:
            browser.close()
    return {"browser_ms": statistics.median(times),
            "browser_p90_ms": sorted(times)[int(0.9 * (len(times) - 1))]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptm_core bench app", description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", help="lab, paper, or a results CSV / experiment YAML "
                    "(default: the lab when built, else a synthetic frame)")
    ap.add_argument("--rounds", type=int, default=20, help="measured slider moves per side")
    ap.add_argument("--skip-browser", action="store_true", help="server side only")
    args = ap.parse_args(argv)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="ptm-bench-app-") as t:
        tmp = Path(t)
        exp, root, desc = _pick_experiment(args.experiment, tmp)
        out["experiment"] = desc
        srv = bench_server(exp, root, args.rounds, tmp)
        out.update(srv)
        print(f"server: median {srv['server_ms']:.1f} ms script time per rerun "
              f"(p90 {srv['server_p90_ms']:.1f} ms; AppTest wall {srv['server_wall_ms']:.1f} ms) "
              f"over {args.rounds} slider moves on {srv['slider']}", flush=True)
        if args.skip_browser:
            out["browser_ms"] = None
            out["browser_skipped"] = "--skip-browser"
        elif not Path(CHROMIUM).exists():
            out["browser_ms"] = None
            out["browser_skipped"] = f"{CHROMIUM} not found (apt-get install chromium)"
            print(f"browser: skipped, {out['browser_skipped']}", flush=True)
        else:
            br = bench_browser(exp, root, args.rounds, tmp)
            out.update(br)
            print(f"browser: median {br['browser_ms']:.1f} ms from key press to moved point "
                  f"(p90 {br['browser_p90_ms']:.1f} ms) over {args.rounds} slider moves", flush=True)
    out["targets"] = {"server_ms": 100, "browser_ms": 500}
    out["cpu_count"] = os.cpu_count()
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
