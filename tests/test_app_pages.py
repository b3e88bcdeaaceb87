"""Every page under Streamlit's AppTest: renders on a fixture, the paper, an empty experiment and
a store-backed experiment; the slider moves the highlighted point; uncached points queue a job
and show an estimate until measured; export writes a checkpoint that loads."""

from __future__ import annotations

import json

import pytest

from ptm_core.app import data, testkit
from ptm_core.app.testkit import current_point, page_path, plotly_specs, run_page

PAGES = ["tradeoffs", "refusals", "interference", "merge", "search", "runs"]
TITLES = {"tradeoffs": "Trade-offs", "refusals": "Refusals", "interference": "Interference",
          "merge": "Merge & export", "search": "Search", "runs": "Runs"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    def use(experiment):
        for k, v in testkit.app_env(experiment, tmp_path).items():
            monkeypatch.setenv(k, v)
    return use


def assert_clean(at, page):
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == [TITLES[page]]


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_the_fixture(tmp_path, env, page):
    env(testkit.write_frame_experiment(tmp_path))
    at = run_page(tmp_path, page)
    assert_clean(at, page)
    assert not at.error, [e.value for e in at.error]
    if page in ("tradeoffs", "refusals", "merge", "search"):
        assert plotly_specs(at), "no chart"
        assert any(b.label == "Data (CSV)" for b in at.get("download_button")) or page == "merge"
    for spec in plotly_specs(at):
        assert spec["data"], spec.get("layout", {}).get("title")  # every chart draws something
    for el in at.get("plotly_chart"):
        assert json.loads(el.proto.config)["toImageButtonOptions"]["format"] in ("png", "svg")


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_an_empty_experiment(tmp_path, env, page):
    env(testkit.write_empty_experiment(tmp_path))
    at = run_page(tmp_path, page)
    assert_clean(at, page)
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_the_paper(tmp_path, env, page):
    env("paper")
    at = run_page(tmp_path, page)
    assert_clean(at, page)
    assert not at.error, [e.value for e in at.error]


def test_missing_lab_falls_back_to_the_paper_and_is_explained(tmp_path, env, monkeypatch):
    env("lab")
    monkeypatch.setenv("PTM_LAB_EXPERIMENT", str(tmp_path / "no_lab.yaml"))
    at = run_page(tmp_path, "tradeoffs")
    assert not at.exception and not at.error
    assert at.radio(key="exp_choice").value == "paper"
    assert any("not built" in c.value for c in at.sidebar.caption)
    at.radio(key="exp_choice").set_value("lab").run()  # picked by hand: says why it cannot open
    assert not at.exception
    assert "lab" in at.error[0].value


def test_slider_moves_the_highlighted_point(tmp_path, env):
    env(testkit.write_frame_experiment(tmp_path))
    at = run_page(tmp_path, "tradeoffs")
    key = "tradeoffs:omega:science:ptm"
    at.select_slider(key=key).set_value(0.2).run()
    a = current_point(plotly_specs(at)[0])
    at.select_slider(key=key).set_value(0.8).run()
    b = current_point(plotly_specs(at)[0])
    assert a and b and a != b
    # ... to the measured point at that ω
    from ptm_core.app.synthetic import synthetic_frame
    from ptm_core.analysis.results import Results
    row = Results.from_frame(synthetic_frame()).lookup("ptm", {"science": 0.8})
    assert b == (row["general"], row["science"])
    # the other charts keep their own ω
    assert at.select_slider(key="tradeoffs:omega:coding:ptm").value == 0.375
    assert not at.exception


def test_omega_survives_a_page_switch(tmp_path, env):
    env(testkit.write_frame_experiment(tmp_path))
    at = run_page(tmp_path, "tradeoffs")
    at.select_slider(key="tradeoffs:omega:science:ptm").set_value(0.7).run()
    at.switch_page(page_path("merge"))
    at.run()
    assert at.select_slider(key="merge:omega:science:ptm").value == 0.7


def test_a_selected_point_opens_in_merge_and_export(tmp_path, env):
    env(testkit.write_frame_experiment(tmp_path))
    at = run_page(tmp_path, "tradeoffs")
    from ptm_core.analysis.results import Results
    from ptm_core.app.synthetic import synthetic_frame
    rid = int(Results.from_frame(synthetic_frame()).lookup("ptm", {"science": 0.6})["row_id"])
    at.session_state["tradeoffs:selected:science"] = rid  # what a click on the point sets
    at.run()
    assert any("PTM science ω=0.6" in m.value for m in at.markdown)
    at.button(key="tradeoffs:open:science").click().run()
    assert [t.value for t in at.title] == ["Merge & export"]
    assert at.select_slider(key="merge:omega:science:ptm").value == 0.6
    assert at.select_slider(key="merge:omega:coding:ptm").value == 0.0
    assert any("Measured" in s.value for s in at.success)


def test_merge_page_cached_point_shows_measured_scores(tmp_path, env):
    env(testkit.write_frame_experiment(tmp_path))
    at = run_page(tmp_path, "merge")
    for s in ("coding", "safety"):
        at.select_slider(key=f"merge:omega:{s}:ptm").set_value(0.0)
    at.select_slider(key="merge:omega:science:ptm").set_value(0.5).run()
    assert any("Measured" in s.value for s in at.success)
    general = [m for m in at.metric if m.label == "General"][0]
    assert general.value == "48.5"  # synthetic PTM science ω=0.5: 50 + 1.5·0.5 − 9·0.25


def test_merge_page_read_only_uncached_point_shows_an_estimate(tmp_path, env):
    env(testkit.write_frame_experiment(tmp_path))
    at = run_page(tmp_path, "merge")
    at.toggle(key="merge:fine").set_value(True).run()
    for s in ("coding", "safety"):
        at.slider(key=f"merge:fine:{s}").set_value(0.0)
    at.slider(key="merge:fine:science").set_value(0.35).run()
    assert not at.exception
    assert any("estimate" in i.value.lower() for i in at.info)
    assert any(m.label.endswith("(est.)") for m in at.metric)
    # the chart draws the estimate as an open marker named as such
    names = [t.get("name") for spec in plotly_specs(at) for t in spec["data"]]
    assert "current (estimate)" in names


# --- store-backed: the job queue ----------------------------------------------------------
@pytest.fixture
def fake_lab(tmp_path, monkeypatch):
    import ptm_core.testing.store as T
    from ptm_core.store.db import Store
    from ptm_core.orchestrate.jobs import enqueue_points
    from ptm_core.orchestrate.points import Grid, grid_points
    from ptm_core.orchestrate.worker import run_worker

    monkeypatch.setenv("PTM_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("PTM_CACHED_RUNS", str(tmp_path / "no_cached_runs"))
    path = T.write_experiment(tmp_path)
    for k, v in testkit.app_env(path, tmp_path).items():
        monkeypatch.setenv(k, v)
    exp, b, resolver = T.fake_lab(tmp_path)
    store = Store(tmp_path / "store.sqlite")
    pts, _ = grid_points(exp, b, Grid(omegas=[0, 0.25, 0.5, 0.75, 1.0],
                                      methods=["task_arithmetic", "linear", "wise_ft"],
                                      heuristic=True, pairs=True))
    enqueue_points(store, exp, pts, resolver, T.fake_fingerprinter, builder=b)
    monkeypatch.setitem(data.WIRING, "builder", b)
    monkeypatch.setitem(data.WIRING, "suite_resolver", resolver)
    monkeypatch.setitem(data.WIRING, "fingerprinter", T.fake_fingerprinter)

    def work():
        run_worker(store, lambda e: T.FakeEngine(), resolver, once=True, builder=b,
                   fingerprinter=T.fake_fingerprinter)
    work()
    return store, work


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_a_store_experiment(tmp_path, fake_lab, page):
    at = run_page(tmp_path, page)
    assert_clean(at, page)
    assert not at.error, [e.value for e in at.error]
    # no worker is running: cached results still show, and the page says new points will wait
    assert any("worker is not running" in w.value for w in at.warning)


def test_uncached_point_queues_a_job_then_shows_the_measurement(tmp_path, fake_lab):
    store, work = fake_lab
    at = run_page(tmp_path, "merge")
    at.toggle(key="merge:fine").set_value(True).run()
    at.slider(key="merge:fine:coding").set_value(0.0)
    at.slider(key="merge:fine:science").set_value(0.3).run()
    assert not at.exception
    assert any("waiting for a worker" in (p.proto.text or "") for p in at.get("progress"))
    assert any(m.label.endswith("(est.)") for m in at.metric)
    assert store.queue_counts()["queued"] > 0
    work()  # the worker measures it
    at.run()
    assert any("Measured" in s.value for s in at.success)
    assert not any(m.label.endswith("(est.)") for m in at.metric)
    at.switch_page(page_path("runs"))
    at.run()
    assert not at.exception
    assert at.dataframe  # the job history


def test_runs_page_shows_errors(tmp_path, fake_lab, monkeypatch):
    import ptm_core.testing.store as T
    store, _ = fake_lab
    bad = T.fake_suite_resolver(fail_axes={"general": "boom: the suite exploded"})
    monkeypatch.setitem(data.WIRING, "suite_resolver", bad)
    src = data.open_source(str(tmp_path / "fakelab.yml"))
    src.submit(data.MergeRequest.make("task_arithmetic", {"science": 0.9}))
    from ptm_core.orchestrate.worker import run_worker
    run_worker(store, lambda e: T.FakeEngine(), bad, once=True, builder=data.WIRING["builder"],
               fingerprinter=T.fake_fingerprinter)
    at = run_page(tmp_path, "runs")
    assert not at.exception
    assert any("boom" in c.value for c in at.code)


def test_runs_page_shows_every_worker_with_its_host(tmp_path, fake_lab, monkeypatch):
    """Two workers on two hosts (the store records the host of the process that registered the
    worker; here each one's host name is faked): one has finished two jobs and polls, the other
    finished one and is on a job. The Runs page lists both, with host, engine, current job,
    last heartbeat and jobs done; the fixture's own worker (this host, stopped) is listed too."""
    import socket

    import ptm_core.testing.store as T
    from ptm_core.orchestrate.worker import run_worker

    store, _ = fake_lab
    src = data.open_source(str(tmp_path / "fakelab.yml"))
    src.submit(data.MergeRequest.make("task_arithmetic", {"science": 0.9, "coding": 0.6}))
    assert store.queue_counts()["queued"] >= 4
    resolver = data.WIRING["suite_resolver"]

    def on_host(host: str, wid: str, jobs: int) -> None:
        with monkeypatch.context() as m:
            m.setattr(socket, "gethostname", lambda: host)
            run_worker(store, lambda e: T.FakeEngine(), resolver, worker_id=wid, max_jobs=jobs,
                       builder=data.WIRING["builder"], fingerprinter=T.fake_fingerprinter)
            store.worker_seen(wid, "idle")  # its loop goes on: it polls the queue

    on_host("gpu-node-1", "gpu-node-1:4242", 2)
    on_host("gpu-node-2", "gpu-node-2:777", 1)
    job = store.claim("gpu-node-2:777")  # and now runs its second job
    store.worker_seen("gpu-node-2:777", "busy", job.id)

    at = run_page(tmp_path, "runs")
    assert not at.exception, [e.value for e in at.exception]
    frames = [d.value for d in at.dataframe if "host" in d.value.columns]
    assert len(frames) == 1, "one table of workers"
    ws = frames[0].set_index("worker")
    assert list(frames[0].columns) == data.WORKER_COLUMNS
    one, two = ws.loc["gpu-node-1:4242"], ws.loc["gpu-node-2:777"]
    assert (one["host"], one["state"], one["engine"], one["jobs done"], one["current job"]) == (
        "gpu-node-1", "idle", "fake", 2, "")
    assert (two["host"], two["state"], two["engine"], two["jobs done"]) == (
        "gpu-node-2", "busy", "fake", 1)
    assert two["current job"] == f"{job.id}: {job.spec.point.label} / {job.spec.suite_ref}"
    assert one["s ago"] <= 30 and one["last heartbeat"] and one["jobs failed"] == 0
    assert list(ws.index[:2]) == ["gpu-node-2:777", "gpu-node-1:4242"]  # live first, newest first
    assert (ws["host"] == socket.gethostname()).any()  # the fixture's worker, stopped
    assert set(ws.loc[ws["host"] == socket.gethostname(), "state"]) == {"stopped"}
    assert any("2 live worker(s) on 2 host(s)" in c.value for c in at.caption)
    assert not any("worker is not running" in w.value for w in at.warning)


# --- export -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("transformers")
    from ptm_core.testing.tiny import family
    root = tmp_path_factory.mktemp("models")
    return family(root, names=("pre", "general", "science", "coding", "safety"))


def test_export_writes_a_checkpoint_that_loads(tmp_path, env, tiny_models, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    models = {"base": tiny_models["pre"], **{k: v for k, v in tiny_models.items() if k != "pre"}}
    env(testkit.write_frame_experiment(tmp_path, models=models))
    # models.json paths must lie under the allowed roots: the models' directory is one
    monkeypatch.setenv("PTM_APP_ROOTS", str(tiny_models["pre"].parent))
    at = run_page(tmp_path, "merge")
    for s in ("coding", "safety"):
        at.select_slider(key=f"merge:omega:{s}:ptm").set_value(0.0)
    at.select_slider(key="merge:omega:science:ptm").set_value(0.3).run()
    name_box = [t for t in at.text_input if t.label == "Name"][0]
    name_box.set_value("science-0.3").run()
    at.button(key="merge:export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    out = tmp_path / "exports" / "science-0.3"
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    card = (out / "README.md").read_text()
    assert "task_arithmetic" in card and "science" in card.lower()
    assert "## Scores" in card  # the measured scores of the recipe
    assert any(b.label == "Download as zip" for b in at.get("download_button"))
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    pre = AutoModelForCausalLM.from_pretrained(tiny_models["pre"]).state_dict()
    gen = AutoModelForCausalLM.from_pretrained(tiny_models["general"]).state_dict()
    sci = AutoModelForCausalLM.from_pretrained(tiny_models["science"]).state_dict()
    k = "model.layers.0.mlp.up_proj.weight"
    torch.testing.assert_close(merged[k], gen[k] + 0.3 * (sci[k] - pre[k]), atol=1e-5, rtol=1e-5)
    # exporting again under the same name is refused unless replacing is asked for
    at.button(key="merge:export").click().run()
    assert any("exists" in e.value for e in at.error)


def test_export_name_cannot_escape_the_export_dir(tmp_path, env, tiny_models):
    models = {"base": tiny_models["pre"], **{k: v for k, v in tiny_models.items() if k != "pre"}}
    env(testkit.write_frame_experiment(tmp_path, models=models))
    at = run_page(tmp_path, "merge")
    [t for t in at.text_input if t.label == "Name"][0].set_value("../../evil").run()
    at.button(key="merge:export").click().run()
    assert any("export name" in e.value for e in at.error)
    assert not (tmp_path.parent / "evil").exists()


def test_weight_space_heatmaps_from_checkpoints(tmp_path, env, tiny_models, monkeypatch):
    models = {"base": tiny_models["pre"], **{k: v for k, v in tiny_models.items() if k != "pre"}}
    env(testkit.write_frame_experiment(tmp_path, models=models))
    monkeypatch.setenv("PTM_APP_ROOTS", str(tiny_models["pre"].parent))  # models.json is confined
    at = run_page(tmp_path, "interference")
    assert not at.exception and not at.error
    titles = [s["layout"]["title"]["text"] for s in plotly_specs(at)]
    assert "Cosine similarity of task vectors" in titles
    assert "Fraction of sign conflicts" in titles
    assert "Cosine similarity per layer" in titles


def test_update_sizes_per_layer_and_cosines_from_checkpoints(tmp_path, env, tiny_models,
                                                             monkeypatch):
    from safetensors.torch import load_file

    from ptm_core.app.testkit import plotly_array

    models = {"base": tiny_models["pre"], **{k: v for k, v in tiny_models.items() if k != "pre"}}
    env(testkit.write_frame_experiment(tmp_path, models=models))
    monkeypatch.setenv("PTM_APP_ROOTS", str(tiny_models["pre"].parent))  # models.json is confined
    at = run_page(tmp_path, "interference")
    assert not at.exception and not at.error, [e.value for e in at.error]
    specs = {s["layout"]["title"]["text"]: s for s in plotly_specs(at)}
    norms = specs["‖τ‖ / ‖θ_pre‖ per layer (%)"]["data"][0]
    assert list(norms["y"]) == ["G", "science", "coding", "safety"]
    assert list(norms["x"]) == ["all", "embed", "0", "1", "2", "norm", "head"]
    pre = load_file(str(tiny_models["pre"] / "model.safetensors"))
    gen = load_file(str(tiny_models["general"] / "model.safetensors"))
    direct = (sum(((gen[k] - pre[k]).double() ** 2).sum() for k in pre)
              / sum((v.double() ** 2).sum() for v in pre.values())).sqrt().item()
    assert plotly_array(norms["z"])[0][0] == pytest.approx(100 * direct)
    cos = specs["Cosine between τ_G, τ_D and CFT/RT"]["data"][0]
    assert list(cos["y"]) == ["G", "science", "coding", "safety"]
    assert plotly_array(cos["z"])[1][1] == pytest.approx(1.0)


def test_update_sizes_say_how_to_get_missing_checkpoints(tmp_path, env, monkeypatch):
    models = {"base": tmp_path / "m" / "pre", "general": tmp_path / "m" / "general"}
    env(testkit.write_frame_experiment(tmp_path, models=models))
    at = run_page(tmp_path, "interference")
    assert not at.exception and not at.error
    assert any("on this machine" in i.value and "put the checkpoints" in i.value for i in at.info)


@pytest.mark.parametrize("method", ["linear", "wise_ft", "ties", "dare_linear"])
def test_every_method_renders(tmp_path, env, method):
    env(testkit.write_frame_experiment(tmp_path))
    at = run_page(tmp_path, "merge")
    at.selectbox(key="merge:method").set_value(method).run()
    assert not at.exception, [e.value for e in at.exception]
    if method in ("linear", "wise_ft"):
        assert at.radio(key="merge:skill").value == "science"
        at.select_slider(key=f"merge:omega:science:{method}").set_value(0.5).run()
        assert any("Measured" in s.value for s in at.success)  # the synthetic curves are cached
        at.select_slider(key=f"merge:omega:science:{method}").set_value(0.0).run()
        assert not at.exception and any("θ_G" in s.value for s in at.success)
    else:
        assert at.slider(key="merge:density").value == 0.5
