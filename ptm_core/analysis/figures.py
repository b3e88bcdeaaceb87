"""Pure figure builders: results in, ``plotly.graph_objects.Figure`` out. No Streamlit here.

Every data trace carries the frame's ``row_id`` as ``customdata`` so a click on a point can be
mapped back to its recipe, and trace names are stable so the browser only redraws what changed.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ptm_core import catalogue
from ptm_core.store.estimate import estimate_point
from ptm_core.store.point import format_omega
from ptm_core.analysis.results import (
    Results,
    axis_title,
    kind_title,
    pareto_front,
    preliminary_note,
)

# Colours of what is not a kind of point (kinds take theirs from ptm_core.catalogue).
COLORS = {
    "paper": "#7f7f7f",
    "pareto": "#aaaaaa",
    "heuristic": "#f2b701",
    "current": "#e6007e",
    "estimate": "#e6007e",
    "multi": "#17becf",
}
SYMBOLS = {"multi": "hexagon"}


def color(name: str) -> str:
    entry = catalogue.KINDS.get(name)
    return entry.color if entry is not None else COLORS[name]


def marker(kind: str) -> str:
    entry = catalogue.KINDS.get(kind)
    return entry.marker if entry is not None else "circle"


_LAYOUT = dict(
    template="plotly_white",
    margin=dict(l=50, r=10, t=40, b=45),
    legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, font=dict(size=11)),
    hoverlabel=dict(namelength=-1),
    uirevision="keep",  # keep zoom and legend toggles across updates
    height=430,
)


def _fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{float(v):.{digits}f}"


def _int(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{int(round(float(v))):,}"


def _ci(row, axis: str) -> str:
    """ " [lo–hi]" for a row's 95 % interval on `axis`, "" when it has none."""
    lo, hi = row.get(f"{axis}_lo"), row.get(f"{axis}_hi")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return f" [{float(lo):.1f}–{float(hi):.1f}, 95 %]"


def _hover(row, x: str, y: str, skill: str | None = None, extra: str = "") -> str:
    lines = [f"<b>{row['label'] or kind_title(row['kind'])}</b>"]
    om = next((row[c] for c in ("omega_all", "omega_d") if isinstance(row.get(c), dict)), {})
    if om:  # a per-layer ω as its anchors, first layer to last
        lines.append("ω: " + ", ".join(f"{k}={format_omega(v)}" for k, v in om.items()))
    lines.append(f"{axis_title(x)}: {_fmt(row[x])}{_ci(row, x)}")
    lines.append(f"{axis_title(y)}: {_fmt(row[y])}{_ci(row, y)}")
    if row["kind"] in ("cft", "rt", "skill", "general") or pd.notna(row.get("data_size")):
        if pd.notna(row.get("data_size")):
            lines.append(f"data size: {_int(row['data_size'])}")
    if pd.notna(row.get("train_steps")):
        lines.append(f"training steps: {_int(row['train_steps'])}")
    if row.get("estimated"):
        lines.append("<i>estimate, not measured</i>")
    if preliminary_note(row):
        lines.append(f"<i>{preliminary_note(row)}: on a subsample, refined when the full "
                     "suites finish</i>")
    if row.get("source"):
        lines.append(f"source: {row['source']}")
    if extra:
        lines.append(extra)
    return "<br>".join(lines)


def _points(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    if df.empty or x not in df.columns or y not in df.columns:
        return df.iloc[0:0]
    return df[df[x].notna() & df[y].notna()]


def _scatter(df: pd.DataFrame, x: str, y: str, name: str, color: str, *, mode="markers",
             symbol="circle", size=9, dash=None, group=None, hollow=False, opacity=1.0,
             show_legend=True) -> go.Scatter:
    marker = dict(color=color, size=size, symbol=symbol + ("-open" if hollow else ""),
                  line=dict(width=1, color="white") if not hollow else dict(width=1.5, color=color))
    return go.Scatter(
        x=df[x].to_numpy(dtype=float), y=df[y].to_numpy(dtype=float), mode=mode, name=name,
        marker=marker, line=dict(color=color, dash=dash, width=2),
        error_x=error_bars(df, x, color), error_y=error_bars(df, y, color),
        customdata=[int(v) for v in df["row_id"]],  # plain ints: selections hand them back
        hovertext=[_hover(r, x, y) for _, r in df.iterrows()],
        hovertemplate="%{hovertext}<extra></extra>", legendgroup=group or name,
        opacity=opacity, showlegend=show_legend, uid=name,
    )


def error_bars(df: pd.DataFrame, axis: str, color: str) -> dict:
    """Plotly error bars from the frame's 95 % interval of `axis` (asymmetric: a Wilson or
    bootstrap interval is not centred on the score); hidden when no row has an interval.
    Rows without one get no bar (NaN)."""
    lo_col, hi_col = f"{axis}_lo", f"{axis}_hi"
    if lo_col not in df.columns or hi_col not in df.columns:
        return dict(visible=False)
    v = df[axis].to_numpy(dtype=float)
    lo = pd.to_numeric(df[lo_col], errors="coerce").to_numpy(dtype=float)
    hi = pd.to_numeric(df[hi_col], errors="coerce").to_numpy(dtype=float)
    if np.all(np.isnan(lo) | np.isnan(hi)):
        return dict(visible=False)
    return dict(type="data", symmetric=False, array=hi - v, arrayminus=v - lo, visible=True,
                color=color, thickness=1, width=3)


def empty_figure(message: str, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#666"))
    fig.update_layout(template="plotly_white", height=height, xaxis=dict(visible=False),
                      yaxis=dict(visible=False), margin=dict(l=10, r=10, t=10, b=10))
    return fig


def tradeoff_figure(
    res: Results,
    skill: str,
    *,
    x_axis: str = "general",
    y_axis: str | None = None,
    current_omega: float | None = None,
    current_point: Mapping | None = None,
    reference: Results | None = None,
    selected_row: int | None = None,
    methods: Sequence[str] | None = None,  # kinds to draw; default: every merge and reference
    include_multi: bool = False,
    title: str | None = None,
    compact: bool = False,
) -> go.Figure:
    """General (x) against skill (y) for one skill: paper Figures 1, 3 and 6 in one chart.

    ``current_omega`` highlights the PTM point at that ω (the slider); ``current_point`` is an
    arbitrary recipe's scores (``{axis: score, "label": str, "estimated": bool}``), drawn as an
    open marker when it is an estimate. ``reference`` adds the paper's points where axes agree.
    """
    y = y_axis or skill
    methods = catalogue.merge_kinds() + catalogue.reference_kinds() if methods is None else methods
    df = res.frame
    if df.empty or x_axis not in df.columns or y not in df.columns:
        return empty_figure(f"No {axis_title(x_axis)} / {axis_title(y)} results in this experiment")
    traces: list[go.Scatter] = []
    measured: list[pd.DataFrame] = []

    # Curves over ω.
    for kind in catalogue.curve_kinds():
        if kind not in methods:
            continue
        c = _points(res.curve(kind, skill), x_axis, y)
        c = c[~c["estimated"].astype(bool)]
        if len(c) and (c["kind"] != "general").any():
            # ω on hover: curve points are labelled by their ω.
            t = _scatter(c, x_axis, y, kind_title(kind), color(kind), mode="lines+markers", size=7)
            t.hovertext = [_hover(r, x_axis, y, extra=f"ω = {w:g}") for (_, r), w in
                           zip(c.iterrows(), c["w"])]
            traces.append(t)
            measured.append(c)
    # Single points: CFT, RT, other merge methods.
    for kind in catalogue.reference_kinds() + catalogue.merge_kinds():
        if kind not in methods or kind in catalogue.curve_kinds():
            continue
        p = _points(res.of_kind(kind, skill), x_axis, y)
        p = p[~p["estimated"].astype(bool)]
        if len(p):
            traces.append(_scatter(p, x_axis, y, kind_title(kind), color(kind),
                                   symbol=marker(kind), size=10))
            measured.append(p)
    if include_multi:
        multi = df[np.array([(skill in s and len(s) >= 2) for s in df["skill_set"]], dtype=bool)
                   & (df["kind"].isin(catalogue.merge_kinds() + catalogue.reference_kinds())).to_numpy()
                   & ~df["estimated"].to_numpy(dtype=bool)]
        multi = _points(multi, x_axis, y)
        if len(multi):
            traces.append(_scatter(multi, x_axis, y, "Multi-skill merges", COLORS["multi"],
                                   symbol=SYMBOLS["multi"], size=10))
            measured.append(multi)
    # Endpoints.
    g = res.general_row()
    if g is not None and pd.notna(g[x_axis]) and pd.notna(g[y]):
        gdf = g.to_frame().T
        traces.append(_scatter(gdf, x_axis, y, kind_title("general"), color("general"),
                               symbol=marker("general"), size=15))
        measured.append(gdf)
    sk = _points(res.of_kind("skill", skill), x_axis, y)
    if len(sk):
        traces.append(_scatter(sk, x_axis, y, kind_title("skill"), color("skill"),
                               symbol=marker("skill"), size=10))
        measured.append(sk)

    # Pareto frontier over every measured point of this experiment.
    if measured:
        allp = pd.concat(measured, ignore_index=True).drop_duplicates("row_id")
        idx = pareto_front(allp[x_axis].astype(float), allp[y].astype(float))
        if len(idx) >= 1:
            front = allp.iloc[idx]
            fx = front[x_axis].astype(float).to_numpy()
            fy = front[y].astype(float).to_numpy()
            # Staircase bounding the dominated region: down, then right, point to point.
            sx = np.repeat(fx, 2)[:-1]
            sy = np.repeat(fy, 2)[1:]
            traces.insert(0, go.Scatter(
                x=sx, y=sy, mode="lines", name="Pareto frontier", uid="Pareto frontier",
                line=dict(color=COLORS["pareto"], dash="dot", width=2), hoverinfo="skip"))

    # Heuristic ω = |D|/|G| on the PTM curve.
    h = res.heuristic_omega(skill) if y == skill or y_axis is not None else None
    if h is not None and not math.isnan(h) and "ptm" in methods:
        row = res.lookup("ptm", {skill: h})
        if row is not None and pd.notna(row[x_axis]) and pd.notna(row[y]):
            hx, hy, note = float(row[x_axis]), float(row[y]), "measured"
        else:
            est = estimate_point(res.frame, "ptm", {skill: h}, axes=[x_axis, y])
            hx, hy, note = ((est or {}).get(x_axis), (est or {}).get(y), "estimated")
        if hx is not None and hy is not None:
            traces.append(go.Scatter(
                x=[hx], y=[hy], mode="markers", name=f"heuristic ω=|D|/|G|={h:.3g}",
                uid="heuristic", marker=dict(symbol="star-diamond-open", size=20,
                                             color=COLORS["heuristic"], line=dict(width=3)),
                hovertemplate=(f"<b>heuristic ω = |D|/|G| = {h:.4g}</b> ({note})<br>"
                               f"{axis_title(x_axis)}: {hx:.1f}<br>{axis_title(y)}: {hy:.1f}"
                               "<extra></extra>")))

    # The paper's reference points where the axes agree.
    if reference is not None and not reference.empty and x_axis in reference.frame \
            and y in reference.frame:
        rf = reference.frame
        keep = np.array([(skill in s) or k == "general" for s, k in zip(rf["skill_set"], rf["kind"])],
                        dtype=bool)
        rp = _points(rf[keep], x_axis, y)
        if len(rp):
            t = _scatter(rp, x_axis, y, "Paper (Llama 2 7B)", COLORS["paper"], symbol="circle",
                         size=9, hollow=True, opacity=0.8)
            t.customdata = None  # reference points are not recipes of this experiment
            traces.append(t)

    # The selected recipe (click) and the slider's current ω.
    if selected_row is not None and 0 <= int(selected_row) < len(df):
        r = res.row(selected_row)
        if pd.notna(r[x_axis]) and pd.notna(r[y]):
            traces.append(go.Scatter(
                x=[float(r[x_axis])], y=[float(r[y])], mode="markers", name="selected",
                uid="selected", marker=dict(symbol="circle-open", size=24, color="#333",
                                            line=dict(width=2)), hoverinfo="skip"))
    cur = current_point if current_point is not None else current_at(res, skill, current_omega,
                                                                       x_axis, y)
    traces.append(current_trace(cur, x_axis, y))

    fig = go.Figure(data=traces)
    fig.update_layout(
        **_LAYOUT,
        title=dict(text=title or f"{axis_title(x_axis)} vs {axis_title(y)}", x=0, font=dict(size=15)),
        xaxis_title=axis_title(x_axis), yaxis_title=axis_title(y),
    )
    if compact:  # small multiples: the legend is on the full-size charts
        fig.update_layout(showlegend=False, height=340, margin=dict(l=50, r=10, t=40, b=40))
    return fig


def current_at(res: Results, skill: str, omega: float | None, x: str, y: str) -> dict | None:
    """The PTM point at ω for one skill, as a ``current_point``; None when not cached."""
    if omega is None:
        return None
    row = res.lookup("ptm", {skill: omega})
    if row is None:
        return None
    return {x: row[x], y: row[y], "label": f"ω = {omega:g}", "estimated": bool(row["estimated"])}


def current_trace(cur: Mapping | None, x: str, y: str) -> go.Scatter:
    """Always present (possibly empty) so that its position in the figure never moves."""
    ok = cur is not None and cur.get(x) is not None and cur.get(y) is not None \
        and not (pd.isna(cur.get(x)) or pd.isna(cur.get(y)))
    est = bool(cur.get("estimated")) if ok else False
    label = (cur.get("label") or "current") if ok else "current"
    name = "current (estimate)" if est else "current"
    return go.Scatter(
        x=[float(cur[x])] if ok else [], y=[float(cur[y])] if ok else [],
        mode="markers", name=name, uid="current", showlegend=ok,
        marker=dict(symbol="circle-open" if est else "circle", size=18, color=COLORS["current"],
                    line=dict(width=3, color=COLORS["current"])),
        hovertemplate=(f"<b>{label}</b>" + (" <i>(estimate)</i>" if est else "")
                       + f"<br>{axis_title(x)}: %{{x:.1f}}<br>{axis_title(y)}: %{{y:.1f}}"
                       "<extra></extra>"),
    )


def refusal_figures(res: Results, *, skill: str = "safety", reference: Results | None = None,
                    current_point: Mapping | None = None) -> list[go.Figure]:
    """Paper Figures 4-5: general vs XSTest-safe compliance and safety vs XSTest-safe compliance."""
    out = []
    for x in ("general", "safety"):
        if "xstest_safe" not in res.frame.columns or x not in res.frame.columns:
            out.append(empty_figure(f"No {axis_title(x)} / XSTest-safe results in this experiment"))
            continue
        out.append(tradeoff_figure(
            res, skill, x_axis=x, y_axis="xstest_safe", reference=reference, include_multi=True,
            current_point=current_point,
            title=f"{axis_title(x)} vs XSTest-safe compliance (exaggerated refusals)"))
    return out


def annotated_heatmap(z: pd.DataFrame, text: pd.DataFrame | None = None, *, title: str = "",
                      colorscale: str = "RdBu", zmid: float | None = 0.0,
                      colorbar_title: str = "", zmin=None, zmax=None,
                      height: int | None = None) -> go.Figure:
    """A heatmap whose cells carry their value (or ``text``) as annotations."""
    if z.empty:
        return empty_figure("Nothing to show")
    vals = z.to_numpy(dtype=float)
    txt = (text if text is not None else z.map(lambda v: _fmt(v, 2))).to_numpy(dtype=object)
    fig = go.Figure(go.Heatmap(
        z=vals, x=[str(c) for c in z.columns], y=[str(i) for i in z.index], text=txt,
        texttemplate="%{text}", colorscale=colorscale, zmid=zmid, zmin=zmin, zmax=zmax,
        colorbar=dict(title=colorbar_title), hovertemplate="%{y} · %{x}: %{text}<extra></extra>",
        xgap=1, ygap=1))
    fig.update_layout(template="plotly_white", title=dict(text=title, x=0, font=dict(size=15)),
                      height=height or max(260, 130 + 56 * len(z.index)),
                      margin=dict(l=10, r=10, t=40, b=40), yaxis=dict(autorange="reversed"))
    return fig


def interference_figure(table: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Paper Table 5 as a heatmap: each multi-skill merge's change on every metric against the
    single-skill merges (see :func:`ptm_core.analysis.tables.interference_table`)."""
    if table.empty:
        return empty_figure("No multi-skill merges in this experiment")
    delta = table.pivot(index="merge", columns="metric", values="delta")
    value = table.pivot(index="merge", columns="metric", values="value")
    order_m = list(dict.fromkeys(table["metric"]))
    order_r = list(dict.fromkeys(table["merge"]))
    delta, value = delta.loc[order_r, order_m], value.loc[order_r, order_m]
    text = value.map(lambda v: _fmt(v)) + "<br>(" + delta.map(
        lambda v: "–" if pd.isna(v) else f"{v:+.1f}") + ")"
    lim = float(np.nanmax(np.abs(delta.to_numpy(dtype=float)))) if delta.notna().any().any() else 1
    fig = annotated_heatmap(delta.rename(columns=axis_title), text.rename(columns=axis_title),
                            title=title or "Change vs the single-skill merges (score, Δ)",
                            colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim,
                            colorbar_title="Δ points")
    return fig


def scores_figure(table: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Absolute scores of θ_G, the single-skill and the multi-skill merges (paper Table 5)."""
    if table.empty:
        return empty_figure("No merges in this experiment")
    z = table.rename(columns=axis_title)
    return annotated_heatmap(z, title=title or "Scores (paper Table 5 layout)", colorscale="Viridis",
                             zmid=None, zmin=0, zmax=100, colorbar_title="score",
                             text=z.map(lambda v: _fmt(v)))


def similarity_figure(matrix: pd.DataFrame, *, title: str, zmin=-1.0, zmax=1.0,
                      colorscale="RdBu", zmid=0.0) -> go.Figure:
    """A square skill × skill matrix (cosine similarity or sign-conflict fraction)."""
    return annotated_heatmap(matrix, title=title, colorscale=colorscale, zmid=zmid, zmin=zmin,
                             zmax=zmax, height=120 + 60 * len(matrix.index))


def per_layer_figure(per_layer: pd.DataFrame, *, title: str, zmin=-1.0, zmax=1.0,
                     colorscale="RdBu", zmid=0.0) -> go.Figure:
    """Rows are skill pairs, columns are layers (embeddings, 0..L-1, head)."""
    return annotated_heatmap(per_layer, title=title, colorscale=colorscale, zmid=zmid, zmin=zmin,
                             zmax=zmax, height=120 + 45 * len(per_layer.index))


def chart_config(filename: str, fmt: str = "png") -> dict:
    """Plotly modebar config: the camera button downloads the chart as PNG or SVG."""
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": 2 if fmt == "png" else 1},
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    }
