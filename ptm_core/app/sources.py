"""The experiment sources the app opens: the results store with its job queue (the lab, any
experiment YAML), the paper's reference numbers, a results CSV. Everything heavy is imported
lazily, so a page that only draws charts never imports torch."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from ptm_core.analysis.paper import PAPER_TITLE
from ptm_core.analysis.results import Results
from ptm_core.app.errors import AppDataError
from ptm_core.app.requests import MergeRequest, Progress, Submission, WorkerState
from ptm_core.app.settings import WORLDS, Settings, confine_any, settings, world_file
from ptm_core.errors import PTMError


class ExperimentSource:
    """One experiment as the app sees it. Subclasses override what they support."""

    ref: str = ""
    title: str = ""
    read_only: bool = True
    notice: str = ""  # shown above every page, e.g. why the store could not be used

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[str, Results] | None = None

    # results
    def version(self) -> str:
        return "static"

    def _load_frame(self) -> pd.DataFrame:
        raise NotImplementedError

    def skills_order(self) -> list[str] | None:
        return None

    def heuristic_omegas(self) -> dict[str, float] | None:
        """ω = |D|/|G| per skill when the source knows the sizes (else read from the frame)."""
        return None

    def results(self) -> Results:
        """The experiment's results, rebuilt only when :meth:`version` changes."""
        v = self.version()
        cached = self._cached
        if cached is not None and cached[0] == v:
            return cached[1]
        with self._lock:
            if self._cached is not None and self._cached[0] == v:
                return self._cached[1]
            res = Results.from_frame(self._load_frame(), name=self.title, version=v,
                                     skills=self.skills_order(),
                                     heuristics=self.heuristic_omegas())
            self._cached = (v, res)
            return res

    # models, merging, jobs
    def models(self) -> dict[str, str]:
        """Checkpoints by role: 'base', 'general', each skill name, 'cft:<skill>'."""
        return {}

    def can_queue(self) -> bool:
        return False

    def worker(self) -> WorkerState:
        return WorkerState(False, "this experiment has no job queue (read-only results)")

    def submit(self, req: MergeRequest) -> Submission:
        return Submission("unavailable", message="This experiment is read-only: it has no job "
                          "queue, so unmeasured points cannot be evaluated here.")

    def progress(self, job_ids: list[int]) -> Progress:
        return Progress("unknown")

    def jobs(self) -> pd.DataFrame:
        return pd.DataFrame(columns=JOB_COLUMNS)

    def queue_counts(self) -> dict[str, int]:
        return {}

    def workers(self) -> pd.DataFrame:
        """Every worker of the store seen in the last hour, one row each (WORKER_COLUMNS)."""
        return pd.DataFrame(columns=WORKER_COLUMNS)

    def retry_failed(self) -> int:
        return 0

    def cancel_queued(self) -> int:
        return 0

    def lookup(self, req: MergeRequest) -> pd.Series | None:
        """The measured row of the request, by (kind, ω): building its recipe to look it up by
        key would cost more than a rerun may."""
        res = self.results()
        return res.lookup(req.kind, req.omega_dict)

    def estimate(self, req: MergeRequest) -> dict[str, float] | None:
        """The store's estimator (ptm_core.store.estimate.estimate_point) over the results."""
        from ptm_core.store.estimate import estimate_point
        res = self.results()
        g = res.general_row()
        general = None if g is None else {a: v for a in res.axes if (v := res.score(g, a)) is not None}
        return estimate_point(res.frame, req.kind, req.omega_dict, axes=res.axes, general=general)

    def recipe(self, req: MergeRequest):
        """The MergeKit recipe of the request (ptm_core.merge), or AppDataError."""
        m = self.models()
        form = req.entry.form
        base = form not in ("wise_ft", "linear", "slerp") and req.entry.over_base
        need = ["general"] + (["base"] if base else [])
        need += [k for k in req.active if form != "wise_ft"]
        need += [f"cft:{k}" for k in req.active if form == "wise_ft"]
        missing = [r for r in need if r not in m]
        if missing:
            raise AppDataError(f"experiment {self.title!r} does not name the checkpoint(s) "
                               f"{', '.join(missing)}; export needs them")
        from ptm_core.orchestrate.points import MergeKitBuilder, method_recipe  # lazy: torch
        return method_recipe(MergeKitBuilder(), req.method, req.active, pre=m.get("base", ""),
                             general=m["general"], skills={k: m[k] for k in req.active if k in m},
                             cft={k: m[f"cft:{k}"] for k in req.active if f"cft:{k}" in m},
                             density=req.density)


JOB_COLUMNS = ["id", "status", "label", "kind", "suite", "progress", "worker", "attempts",
               "created", "started", "finished", "error"]
WORKER_COLUMNS = ["worker", "host", "pid", "state", "engine", "current job", "last heartbeat",
                  "s ago", "jobs done", "jobs failed", "started"]
RECENT_WORKERS_S = 3600.0  # the Runs page lists workers seen this recently (live or not)


class PaperSource(ExperimentSource):
    ref = "paper"
    title = PAPER_TITLE

    def _load_frame(self) -> pd.DataFrame:
        from ptm_core.analysis.paper import paper_frame
        return paper_frame()

    def skills_order(self) -> list[str]:
        from ptm_core.analysis.paper import PAPER_SKILLS
        return list(PAPER_SKILLS)


class FrameFileSource(ExperimentSource):
    """A results CSV (results-frame columns), optionally with models.json beside it."""

    def __init__(self, path: Path, roots=None):
        super().__init__()
        self.path = path
        self.roots = tuple(roots) if roots else (path.parent,)  # where models.json may point
        self.ref = str(path)
        self.title = path.stem if path.name != "results.csv" else path.parent.name

    def version(self) -> str:
        try:
            st = self.path.stat()
            return f"{st.st_mtime_ns}:{st.st_size}"
        except FileNotFoundError:
            return "missing"

    def _load_frame(self) -> pd.DataFrame:
        try:
            return pd.read_csv(self.path)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
        except (OSError, ValueError) as e:
            raise AppDataError(f"{self.path}: cannot read results CSV: {e}") from None

    def models(self) -> dict[str, str]:
        mj = self.path.parent / "models.json"
        if not mj.is_file():
            return {}
        from ptm_core import safe_json
        try:
            with open(mj, "rb") as f:
                raw = safe_json.loads(f.read(1 << 20), max_bytes=(1 << 20) - 1)
        except (OSError, safe_json.JSONFormatError) as e:
            raise AppDataError(f"{mj}: cannot read: {e}") from None
        if not isinstance(raw, dict) or not all(isinstance(v, str) and v for v in raw.values()):
            raise AppDataError(f"{mj}: must be a JSON object of role -> checkpoint path")
        out = {}
        for role, ref in raw.items():  # confined like every user-given path
            try:
                out[str(role)] = str(confine_any(mj.parent / ref, self.roots))
            except AppDataError as e:
                raise AppDataError(f"{mj}: {str(role)[:40]!r}: {e}") from None
        return out


# How a StoreSource builds recipes, resolves suites and fingerprints models. None: the real
# ones (ptm_core.merge, ptm_core.evals, checkpoint fingerprints). Tests put the store's fakes
# here (ptm_core.testing.store) to run the whole queue without models.
WIRING: dict[str, Any] = {"builder": None, "suite_resolver": None, "fingerprinter": None}


class StoreSource(ExperimentSource):
    """An experiment file over the results store and its job queue (the lab, or any YAML)."""

    read_only = False

    def __init__(self, path: Path, roots, store_path: Path | None, stale_s: float = 30.0):
        super().__init__()
        from ptm_core.store.experiment import Experiment  # lazy
        self.path = path
        try:
            self.exp = Experiment.load(path, allowed_roots=list(roots))
        except PTMError as e:
            raise AppDataError(str(e)) from None
        self.ref = str(path)
        self.title = self.exp.name
        self.stale_s = stale_s
        self._store_path = store_path
        self._store = None
        self._builder = WIRING["builder"]

    @property
    def store(self):
        if self._store is None:
            from ptm_core.store.db import Store, StoreError
            try:
                self._store = Store.open_default() if self._store_path is None else Store(
                    self._store_path, cached_dir=_cached_dir())
            except StoreError as e:  # damaged, locked or read-only: still show what is shipped
                self._store = _shipped_only_store(e)
                self.read_only = True
                self.notice = (f"{e}. Showing only the shipped results (cached_runs/); new "
                               "points cannot be queued until the store works.")
        return self._store

    def skills_order(self) -> list[str]:
        return list(self.exp.skills)

    def heuristic_omegas(self) -> dict[str, float]:
        return {s: float(self.exp.heuristic_omega(s)) for s in self.exp.skills}

    def version(self) -> str:
        """Changes when the stored results change, and when a model file changes (a rebuilt
        model's results leave the frame without a new result being stored)."""
        from ptm_core.merge.fingerprint import models_stamp  # no torch
        return f"{self.store.results_version(self.exp.name)}|{models_stamp(self.exp)}"

    def _load_frame(self) -> pd.DataFrame:
        """The store's frame without the results of models rebuilt since (docs/store.md,
        "Current results"); models not materialized here are not checked, so their shipped
        results show."""
        from ptm_core.merge.fingerprint import current_fingerprints
        from ptm_core.store.frame import results_frame
        current = current_fingerprints(self.exp, WIRING["fingerprinter"])
        return results_frame(self.store, self.exp, current=current)

    def models(self) -> dict[str, str]:
        m = {"base": self.exp.base, "general": self.exp.general.model}
        m.update({k: s.model for k, s in self.exp.skills.items()})
        for k in self.exp.skills:
            ref = self.exp.cft_model(k)
            if ref is not None and ref.model:
                m[f"cft:{k}"] = ref.model
        return m

    def can_queue(self) -> bool:
        self.store  # opening it tells whether it can take jobs
        return not self.read_only

    def require_models(self, how: str) -> None:
        """Read-only, with a notice saying `how` to make them, while any model is missing: the
        shipped results still show, and new points wait for the checkpoints."""
        missing = [role for role, ref in self.models().items() if not Path(ref).exists()]
        if missing:
            self.read_only = True
            self.notice = (f"The checkpoints of this experiment are not materialized yet "
                           f"({', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}): the "
                           f"shipped results are shown; run `{how}` to measure new points.")

    def _point(self, req: MergeRequest):
        from ptm_core.orchestrate import points
        if self._builder is None:
            self._builder = WIRING["builder"] or points.MergeKitBuilder()
        try:
            p = points.method_point(self.exp, self._builder, req.method, req.active or req.omega_dict,
                                    density=req.density)
        except PTMError as e:
            raise AppDataError(str(e)) from None
        if p is None:
            raise AppDataError(f"{req.entry.menu_title} needs a CFT checkpoint for this skill "
                               "in the experiment's references")
        return p

    def recipe(self, req: MergeRequest):
        from ptm_core.merge.recipe import Recipe
        return Recipe.from_yaml(self._point(req).recipe_yaml, source="app request")

    def submit(self, req: MergeRequest) -> Submission:
        from ptm_core.orchestrate.jobs import enqueue_points
        point = self._point(req)
        try:  # a subsample of every suite first, then the full suites (docs/app.md)
            outs = enqueue_points(self.store, self.exp, [point],
                                  WIRING["suite_resolver"] or _suite_resolver(),
                                  WIRING["fingerprinter"], builder=self._builder,
                                  subsample=settings().live_subsample or None)
        except PTMError as e:
            raise AppDataError(f"cannot queue {req.label()}: {e}") from None
        ids = [o.job_id for o in outs if o.job_id is not None]
        if all(o.status == "cached" for o in outs):
            return Submission("cached", [], "Already measured.")
        return Submission("queued", ids, f"{len(ids)} job(s) queued for the worker.")

    def progress(self, job_ids: list[int]) -> Progress:
        rows = [r for r in (self.store.job(i) for i in job_ids) if r is not None]
        if not rows:
            return Progress("unknown")
        states = {r.status for r in rows}
        errors = "\n\n".join(f"{r.suite_ref}: {r.error}" for r in rows if r.error)
        done = sum(1 for r in rows if r.status == "done")
        sub_done = sum((r.progress_done or 0) / r.progress_total for r in rows
                       if r.status == "running" and r.progress_total)
        msg = "; ".join(r.progress_msg for r in rows if r.progress_msg and r.status == "running")
        state = ("failed" if "failed" in states else "cancelled" if states == {"cancelled"}
                 else "done" if states == {"done"} else "running" if "running" in states else "queued")
        total = len(rows) * 100
        return Progress(state, int(100 * (done + sub_done)), total, msg, errors)

    def jobs(self) -> pd.DataFrame:
        rows = self.store.jobs(experiment=self.exp.name, limit=500)
        return jobs_frame(rows)

    def queue_counts(self) -> dict[str, int]:
        return self.store.queue_counts(self.exp.name)

    def retry_failed(self) -> int:
        return int(self.store.retry_failed(experiment=self.exp.name))

    def cancel_queued(self) -> int:
        return int(self.store.cancel(experiment=self.exp.name))

    def workers(self) -> pd.DataFrame:
        store = self.store
        now = store.clock()
        rows = [w for w in store.workers() if now - w.last_seen <= RECENT_WORKERS_S]
        live = [w for w in rows if w.state != "stopped" and now - w.last_seen <= self.stale_s]
        ids = {w.id for w in live}
        rows = live + [w for w in rows if w.id not in ids]  # each part: most recently seen first
        jobs = {}
        for w in rows[:200]:
            if w.state == "busy" and w.job_id is not None and w.job_id not in jobs:
                jobs[w.job_id] = store.job(w.job_id)
        return workers_frame(rows[:200], jobs, now, self.stale_s)

    def worker(self) -> WorkerState:
        try:
            ws = self.store.workers(seen_within_s=self.stale_s)
        except Exception as e:  # noqa: BLE001 - show, don't crash
            return WorkerState(False, f"cannot read worker state: {e}")
        if len(ws) > 1:
            hosts = len({w.host for w in ws})
            busy = sum(w.state == "busy" for w in ws)
            return WorkerState(True, f"{len(ws)} workers on {hosts} host(s), {busy} busy")
        if ws:
            w = ws[0]
            return WorkerState(True, f"worker {w.id} is {w.state}" +
                               (f" (job {w.job_id})" if w.job_id else ""))
        return WorkerState(False, f"no worker has been seen in the last {int(self.stale_s)} s; "
                           "start one with `python -m ptm_core worker` (or `make run`)")


def _ts(v: float | None) -> str | None:
    return None if v is None else pd.Timestamp(v, unit="s").strftime("%Y-%m-%d %H:%M:%S")


def workers_frame(rows, jobs: dict, now: float, stale_s: float) -> pd.DataFrame:
    """One row per worker (store WorkerRow): a worker not stopped but silent for longer than
    `stale_s` reads 'gone?' (killed, or its machine lost: its job returns with the lease)."""
    out = []
    for w in rows:
        ago = max(0.0, now - w.last_seen)
        state = w.state
        if state != "stopped" and ago > stale_s:
            state = f"gone? (was {w.state})"
        current = ""
        if w.state == "busy" and w.job_id is not None:
            j = jobs.get(w.job_id)
            current = f"{w.job_id}" + (f": {j.label} / {j.suite_ref}" if j is not None else "")
        out.append({"worker": w.id, "host": w.host, "pid": w.pid, "state": state,
                    "engine": w.engine or "", "current job": current,
                    "last heartbeat": _ts(w.last_seen), "s ago": int(ago),
                    "jobs done": w.jobs_done, "jobs failed": w.jobs_failed,
                    "started": _ts(w.started_at)})
    return pd.DataFrame(out, columns=WORKER_COLUMNS)


def jobs_frame(rows) -> pd.DataFrame:
    ts = _ts
    out = []
    for r in rows:
        prog = ""
        if r.progress_total:
            prog = f"{r.progress_done or 0}/{r.progress_total}"
            if r.progress_msg:
                prog += f" {r.progress_msg}"
        status = r.status + (" (stale: worker gone?)" if getattr(r, "stale", False) else "")
        out.append({"id": r.id, "status": status, "label": r.label, "kind": r.kind,
                    "suite": r.suite_ref, "progress": prog, "worker": r.worker or "",
                    "attempts": r.attempts, "created": ts(r.created_at), "started": ts(r.started_at),
                    "finished": ts(r.finished_at), "error": r.error or ""})
    return pd.DataFrame(out, columns=JOB_COLUMNS)


_SHIPPED_ONLY: dict[str, Any] = {}


def _shipped_only_store(problem: Exception):
    """A private store in the temp directory holding only cached_runs/ (one per process), for
    when the real store cannot be opened; AppDataError when even that fails."""
    import tempfile

    from ptm_core.store.db import Store, StoreError
    cached = _cached_dir()
    key = str(cached)
    if key not in _SHIPPED_ONLY:
        try:
            tmp = Path(tempfile.mkdtemp(prefix="ptm-shipped-results-"))
            _SHIPPED_ONLY[key] = Store(tmp / "store.sqlite", cached_dir=cached)
        except (OSError, StoreError) as e:
            raise AppDataError(f"{problem}; the shipped results could not be loaded either: "
                               f"{e}") from None
    return _SHIPPED_ONLY[key]


def _cached_dir() -> Path:
    from ptm_core.store.db import default_cached_dir
    return default_cached_dir()


def _suite_resolver():
    """The worker's suite resolver (experiment, axis) -> Suite: the same suites key the jobs."""
    from ptm_core.orchestrate.wiring import default_suite_resolver
    return default_suite_resolver


def open_source(ref: str, cfg: Settings | None = None) -> ExperimentSource:
    """``'lab'``, ``'paper'``, or a path (experiment YAML or results CSV) under the roots."""
    cfg = cfg or settings()
    ref = (ref or "").strip()
    if ref == "paper":
        return PaperSource()
    if ref == "lab":
        if cfg.lab is None or not cfg.lab.is_file():
            raise AppDataError("the lab's experiment file was not found (build the lab with "
                               "`python -m ptm_core lab build`, or set PTM_LAB_EXPERIMENT)")
        return StoreSource(cfg.lab.resolve(), list(cfg.roots) + [cfg.lab.resolve().parent],
                           cfg.store_path, cfg.worker_stale_s)
    if ref in WORLDS:
        path = world_file(ref)
        if path is None:
            raise AppDataError(f"the {ref} world's experiment file {WORLDS[ref][1]} is missing")
        source = StoreSource(path, list(cfg.roots) + [path.parent], cfg.store_path,
                             cfg.worker_stale_s)
        source.require_models(WORLDS[ref][2])
        return source
    path = confine_any(ref, cfg.roots)
    if path.is_dir() and (path / "results.csv").is_file():
        path = path / "results.csv"
    if not path.exists():
        raise AppDataError(f"{ref!r}: no such file")
    if path.suffix.lower() == ".csv":
        return FrameFileSource(path, cfg.roots)
    if path.suffix.lower() in (".yaml", ".yml"):
        return StoreSource(path, cfg.roots, cfg.store_path, cfg.worker_stale_s)
    raise AppDataError(f"{ref!r}: expected an experiment YAML file or a results CSV")
