"""The results frame as the app reads it: normalized columns, an index by recipe, grids, Pareto.

The store hands over a tidy frame (docs/architecture.md, "Results"): one row per evaluated point,
columns ``experiment, kind, skills, omega, label, data_size, train_steps, recipe_key``, one 0-100
column per axis and, where known, its 95 % interval as ``<axis>_lo`` / ``<axis>_hi``.
:class:`Results` wraps one such frame, built once per results version, so that a page rerun only
does dictionary look-ups. Everything here is pure (no Streamlit, no I/O).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ptm_core import catalogue
from ptm_core.catalogue import heuristic_omega, kind_title  # noqa: F401 - kind_title re-exported
from ptm_core.store.frame import POINT_COLUMNS
from ptm_core.store.point import is_gradient

# The contract columns every results frame has (the store's frame, up to recipe_key; a
# results CSV may lack the store's own point_id, method, heuristic and source).
META = POINT_COLUMNS[:POINT_COLUMNS.index("recipe_key") + 1]
# Columns that are never axes.
_NON_AXES = set(POINT_COLUMNS) | {"estimated", "row_id", "table", "row", "derived", "params",
                                  "omega_d", "omega_all", "skill_set", "wall_s", "created",
                                  "cost_steps", "created_at", "engine", "pool_steps"}
KNOWN_AXES = ["general", "science", "coding", "safety", "xstest_safe"]
AXIS_TITLES = {
    "general": "General",
    "science": "Science",
    "coding": "Coding",
    "safety": "Safety (refuses unsafe)",
    "xstest_safe": "XSTest-safe compliance",
}
OMEGA_DECIMALS = 4


def axis_title(axis: str) -> str:
    return AXIS_TITLES.get(axis, axis.replace("_", " ").capitalize())


def parse_omega_all(value) -> dict[str, float | tuple[float, ...]]:
    """The frame's ``omega`` cell (JSON text, dict, or null) as a dict skill -> ω, a per-layer ω
    (a gradient list) as the tuple of its anchors."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, Mapping):
        d = value
    else:
        text = str(value).strip()
        if not text or text.lower() in ("null", "none", "nan"):
            return {}
        try:
            d = json.loads(text)
        except json.JSONDecodeError:
            return {}
    if not isinstance(d, Mapping):
        return {}
    return {str(k): tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v)
            for k, v in d.items() if v is not None}


def parse_omega(value) -> dict[str, float]:
    """The frame's ``omega`` cell as a dict skill -> ω, one number per skill; {} for a point
    with a per-layer ω, which is on no one-number curve (``parse_omega_all`` keeps it)."""
    d = parse_omega_all(value)
    return {} if any(isinstance(v, tuple) for v in d.values()) else d  # type: ignore[return-value]


def is_layered(omegas: Mapping) -> bool:
    """Some skill's ω is per-layer (a gradient: a list or tuple of anchors)."""
    return any(is_gradient(v) for v in omegas.values())


def split_skills(value) -> frozenset[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return frozenset()
    return frozenset(s.strip() for s in str(value).split("+") if s.strip())


def _rounded(v):
    """ω at the grid precision; a per-layer ω as a tuple (equal anchors: that number)."""
    if isinstance(v, (list, tuple)):
        t = tuple(round(float(x), OMEGA_DECIMALS) for x in v)
        return t[0] if len(set(t)) == 1 else t
    return round(float(v), OMEGA_DECIMALS)


def omega_key(omegas: Mapping) -> tuple[tuple[str, float | tuple[float, ...]], ...]:
    """Canonical, hashable ω: zero weights dropped, rounded to the grid precision (a per-layer
    ω anchor by anchor)."""
    return tuple(sorted((k, w) for k, w in ((k, _rounded(v)) for k, v in omegas.items())
                        if w != 0.0))


def point_key(kind: str, omegas: Mapping) -> tuple:
    """The look-up key of a merge by (method, ω). A PTM merge with every ω at 0 is θ_G."""
    ok = omega_key(omegas)
    if kind in catalogue.merge_kinds() and not ok:
        return ("general", ())
    return (kind, ok)


def normalize(frame: pd.DataFrame | None) -> pd.DataFrame:
    """Add missing contract columns, parse ω and skills, give every row a stable ``row_id``."""
    df = pd.DataFrame() if frame is None else frame.copy()
    for col in META:
        if col not in df.columns:
            df[col] = None
    for col, default in (("source", ""), ("estimated", False), ("preliminary", False),
                         ("subsample_n", None)):
        if col not in df.columns:
            df[col] = default
    df = df.reset_index(drop=True)
    df["row_id"] = np.arange(len(df), dtype=int)
    df["kind"] = df["kind"].astype(object).where(df["kind"].notna(), "").astype(str)
    # omega_all: every ω (a per-layer one as a tuple); omega_d: one number per skill, {} where
    # some ω is per-layer, so one-number curves, sliders and estimates never see a gradient
    df["omega_all"] = [parse_omega_all(v) for v in df["omega"]]
    df["omega_d"] = [{} if is_layered(d) else d for d in df["omega_all"]]
    df["skill_set"] = [split_skills(v) for v in df["skills"]]
    df["estimated"] = df["estimated"].fillna(False).astype(bool)
    # a row measured on a subsample of some suite (the app's quick pass), not yet in full
    df["preliminary"] = df["preliminary"].fillna(False).astype(bool)
    df["subsample_n"] = pd.to_numeric(df["subsample_n"], errors="coerce").astype("Int64")
    df["source"] = df["source"].fillna("").astype(str)
    for col in ("data_size", "train_steps"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for axis in axes_of(df):
        df[axis] = pd.to_numeric(df[axis], errors="coerce")
        for c in (f"{axis}_lo", f"{axis}_hi"):
            if c in df.columns:
                df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def axes_of(df: pd.DataFrame) -> list[str]:
    """Score columns: the known axes first (in their order), then any other numeric column."""
    known = [a for a in KNOWN_AXES if a in df.columns]
    extra = [c for c in df.columns if c not in _NON_AXES and c not in known
             and pd.api.types.is_numeric_dtype(df[c]) and not is_interval_column(df, c)]
    return known + extra


def is_interval_column(df: pd.DataFrame, column: str) -> bool:
    """`<axis>_lo` / `<axis>_hi`: a bound of an axis's 95 % interval, not an axis."""
    return column.endswith(("_lo", "_hi")) and column[:-3] in df.columns


def preliminary_note(row: Mapping | pd.Series | None) -> str:
    """"(preliminary, n=8)" for a row measured so far on a subsample of some suite; "" else."""
    if row is None or not bool(row.get("preliminary", False)):
        return ""
    n = row.get("subsample_n")
    return "(preliminary, n=" + (str(int(n)) if n is not None and not pd.isna(n) else "?") + ")"


def interval(row: pd.Series | None, axis: str) -> tuple[float, float]:
    """The 95 % interval of a row's score on `axis`; NaN where the frame has none."""
    if row is None:
        return (math.nan, math.nan)
    out = []
    for c in (f"{axis}_lo", f"{axis}_hi"):
        v = row.get(c) if c in row.index else None
        out.append(math.nan if v is None or pd.isna(v) else float(v))
    return out[0], out[1]


@dataclass
class Results:
    """One experiment's results, indexed for constant-time look-ups on every rerun."""

    frame: pd.DataFrame
    name: str = ""
    version: str = ""
    axes: list[str] = field(default_factory=list)
    skills: list[str] = field(default_factory=list)
    _index: dict = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)
    heuristics: dict = field(default_factory=dict)  # skill -> ω = |D|/|G|, when the source knows

    def memo(self, key, fn):
        """``fn()`` computed once per results version (these objects are rebuilt when results
        change), so reruns only pay for dictionary look-ups. Callers must not mutate results."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = fn()
            return value

    @classmethod
    def from_frame(cls, frame: pd.DataFrame | None, name: str = "", version: str = "",
                   skills: Iterable[str] | None = None,
                   heuristics: Mapping[str, float] | None = None) -> "Results":
        df = normalize(frame)
        axes = axes_of(df)
        found: list[str] = []
        for s in df["skill_set"]:
            for k in sorted(s):
                if k not in found:
                    found.append(k)
        order = list(skills or [])
        order += [s for s in found if s not in order]
        # A skill is only charted when its axis exists.
        order = [s for s in order if s in df.columns] + [s for s in order if s not in df.columns]
        index: dict = {}
        for r in df.itertuples(index=False):
            if r.kind == "general":
                index.setdefault(("general", ()), r.row_id)
            if r.kind in catalogue.merge_kinds() and r.omega_all:
                key = point_key(r.kind, r.omega_all)
                # Measured rows win over estimates for the same point.
                prev = index.get(key)
                if prev is None or (df.at[prev, "estimated"] and not r.estimated):
                    index[key] = r.row_id
            if isinstance(r.recipe_key, str) and r.recipe_key:
                index.setdefault(("recipe", r.recipe_key), r.row_id)
        return cls(df, name=name, version=version, axes=axes, skills=order, _index=index,
                   heuristics=dict(heuristics or {}))

    # --- look-ups ------------------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return self.frame.empty

    def row(self, row_id: int) -> pd.Series:
        return self.frame.iloc[int(row_id)]

    def lookup(self, kind: str, omegas: Mapping[str, float],
               recipe_key: str | None = None) -> pd.Series | None:
        """The measured (or stored-estimate) row of this merge, or None when not cached."""
        if recipe_key:
            rid = self._index.get(("recipe", recipe_key))
            if rid is not None:
                return self.row(rid)
        rid = self._index.get(point_key(kind, omegas))
        return None if rid is None else self.row(rid)

    def of_kind(self, kind: str, skill: str | None = None, exact: bool = True) -> pd.DataFrame:
        return self.memo(("of_kind", kind, skill, exact), lambda: self._of_kind(kind, skill, exact))

    def _of_kind(self, kind: str, skill: str | None, exact: bool) -> pd.DataFrame:
        df = self.frame[self.frame["kind"] == kind]
        if skill is not None:
            want = frozenset([skill])
            mask = np.array([(s == want) if exact else (skill in s) for s in df["skill_set"]],
                            dtype=bool)
            df = df[mask]
        return df

    def curve(self, kind: str, skill: str) -> pd.DataFrame:
        """Single-skill points of a method, sorted by that skill's ω; θ_G stands at ω=0 (Eqs. 2, 4, 6)."""
        return self.memo(("curve", kind, skill), lambda: self._curve(kind, skill))

    def _curve(self, kind: str, skill: str) -> pd.DataFrame:
        df = self.of_kind(kind, skill).copy()
        df["w"] = [d.get(skill, np.nan) for d in df["omega_d"]]
        df = df[df["w"].notna()]
        if kind in catalogue.curve_kinds() and not (df["w"] == 0).any():
            g = self.general_row()
            if g is not None:
                g = g.to_frame().T.copy()
                g["w"] = 0.0
                df = pd.concat([g, df], ignore_index=True)
        return df.sort_values("w", kind="stable")

    def grid(self, skill: str, kind: str = "ptm") -> list[float]:
        """The cached ω values of a single-skill curve (what a slider snaps to)."""
        return self.memo(("grid", skill, kind), lambda: self._grid(skill, kind))

    def _grid(self, skill: str, kind: str) -> list[float]:
        c = self.curve(kind, skill)
        c = c[~c["estimated"].astype(bool)] if "estimated" in c else c
        return sorted({round(float(w), OMEGA_DECIMALS) for w in c["w"]})

    def general_row(self) -> pd.Series | None:
        rid = self._index.get(("general", ()))
        return None if rid is None else self.row(rid)

    def score(self, row: pd.Series | None, axis: str) -> float | None:
        if row is None or axis not in row.index:
            return None
        v = row[axis]
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def data_sizes(self) -> tuple[float | None, dict[str, float]]:
        """|G| (θ_G's data size) and |D_k| (each skill model's data size), when recorded."""
        return self.memo(("data_sizes",), self._data_sizes)

    def _data_sizes(self) -> tuple[float | None, dict[str, float]]:
        g = self.general_row()
        gsize = None
        if g is not None and pd.notna(g["data_size"]):
            gsize = float(g["data_size"])
        sizes: dict[str, float] = {}
        for r in self.of_kind("skill").itertuples(index=False):
            if len(r.skill_set) == 1 and pd.notna(r.data_size):
                sizes[next(iter(r.skill_set))] = float(r.data_size)
        return gsize, sizes

    def heuristic_omega(self, skill: str) -> float | None:
        """Paper Eq. 7, ω = |D|/|G|, from the recorded data sizes; else a row labelled heuristic."""
        return self.memo(("heuristic", skill), lambda: self._heuristic_omega(skill))

    def _heuristic_omega(self, skill: str) -> float | None:
        if skill in self.heuristics:
            return float(self.heuristics[skill])
        g, sizes = self.data_sizes()
        if g and sizes.get(skill, 0) > 0:
            return heuristic_omega(sizes[skill], g)
        rows = self.of_kind("ptm", skill)
        flag = rows["heuristic"].fillna(False).astype(bool) if "heuristic" in rows.columns \
            else pd.Series(False, index=rows.index)
        for (_, r), h in zip(rows.iterrows(), flag):
            if h or "heuristic" in str(r["label"]).lower():
                return float(r["omega_d"].get(skill, np.nan))
        return None

    def heuristic_omegas(self) -> dict[str, float]:
        out = {}
        for s in self.skills:
            w = self.heuristic_omega(s)
            if w is not None and not math.isnan(w):
                out[s] = w
        return out

    def multi_skill_merges(self, kind: str = "ptm") -> pd.DataFrame:
        df = self.frame[(self.frame["kind"] == kind) & ~self.frame["estimated"]]
        return df[np.array([len(s) >= 2 for s in df["skill_set"]], dtype=bool)]


def pareto_front(xs: Iterable[float], ys: Iterable[float]) -> list[int]:
    """Indices of the non-dominated points (maximize both), sorted by x ascending."""
    pts = [(float(x), float(y), i) for i, (x, y) in enumerate(zip(xs, ys))
           if x is not None and y is not None and not (math.isnan(x) or math.isnan(y))]
    # Sweep by x descending; keep a point when its y beats every point with larger x.
    pts.sort(key=lambda p: (-p[0], -p[1]))
    front, best_y = [], -math.inf
    for x, y, i in pts:
        if y > best_y:
            front.append(i)
            best_y = y
    return front[::-1]
