"""The predicted Pareto front beside the measured points: a pure figure builder (tables in,
``plotly.graph_objects.Figure`` out), in the style of ``figures.py``.

Inputs are plain tables, so this module needs nothing from the search itself:
- ``measured``: one row per measured point, the axes ``x`` and ``y``, ``label`` and
  ``feasible`` (meets the objective's floor);
- ``front``: the predicted front, ``x``, ``x_lo``, ``x_hi``, ``y``, ``y_lo``, ``y_hi`` (95 %)
  and ``label``, in front order;
- ``suggested`` (optional): the next points to measure with their predicted ``x`` and ``y``.

Everything predicted is named "predicted …" and drawn dashed, open or shaded; measured points
are filled. The band is the region between the front drawn at every point's lower bounds and at
its upper bounds (each point's own 95 % box is its error bars).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ptm_core.analysis.figures import _LAYOUT, empty_figure
from ptm_core.analysis.results import axis_title

COLORS = {"front": "#6a3d9a", "band": "rgba(106, 61, 154, 0.18)", "measured": "#1f77b4",
          "infeasible": "#9a9a9a", "suggested": "#e6550d", "floor": "#d62728"}
NAMES = {"band": "predicted front, 95 % band", "front": "predicted front (surrogate mean)",
         "measured": "measured", "infeasible": "measured, below the floor",
         "suggested": "suggested next (predicted)"}


def band_polygon(front: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """A closed outline of the band: the front at its upper bounds in order, then at its lower
    bounds back. One point: its 95 % box."""
    if front.empty:
        return np.array([]), np.array([])
    f = front.sort_values(x, kind="stable")
    xl, xh = f[f"{x}_lo"].to_numpy(float), f[f"{x}_hi"].to_numpy(float)
    yl, yh = f[f"{y}_lo"].to_numpy(float), f[f"{y}_hi"].to_numpy(float)
    if len(f) == 1:
        return (np.array([xl[0], xh[0], xh[0], xl[0], xl[0]]),
                np.array([yl[0], yl[0], yh[0], yh[0], yl[0]]))
    bx = np.concatenate([xh, xl[::-1], xh[:1]])
    by = np.concatenate([yh, yl[::-1], yh[:1]])
    return bx, by


def _bars(df: pd.DataFrame, axis: str, color: str) -> dict:
    v = df[axis].to_numpy(float)
    return dict(type="data", symmetric=False, array=df[f"{axis}_hi"].to_numpy(float) - v,
                arrayminus=v - df[f"{axis}_lo"].to_numpy(float), visible=True, color=color,
                thickness=1, width=2)


def _hover(label: str, x: str, y: str, xv: float, yv: float, note: str, row=None) -> str:
    lines = [f"<b>{label}</b>" + (f" <i>({note})</i>" if note else "")]
    for a, v in ((x, xv), (y, yv)):
        band = ""
        if row is not None and f"{a}_lo" in row:
            band = f" [{row[f'{a}_lo']:.1f}–{row[f'{a}_hi']:.1f}, 95 %]"
        lines.append(f"{axis_title(a)}: {v:.1f}{band}")
    return "<br>".join(lines)


def front_figure(measured: pd.DataFrame, front: pd.DataFrame | None, x: str, y: str, *,
                 suggested: pd.DataFrame | None = None, floor: tuple[str, float] | None = None,
                 title: str | None = None) -> go.Figure:
    """Measured points, the predicted front with its band, the suggestions, the floor."""
    if (measured is None or measured.empty) and (front is None or front.empty):
        return empty_figure("No measured points for this objective yet")
    traces: list[go.Scatter] = []
    if front is not None and not front.empty:
        bx, by = band_polygon(front, x, y)
        traces.append(go.Scatter(x=bx, y=by, mode="lines", fill="toself", name=NAMES["band"],
                                 uid="band", fillcolor=COLORS["band"], line=dict(width=0),
                                 hoverinfo="skip"))
        f = front.sort_values(x, kind="stable")
        traces.append(go.Scatter(
            x=f[x].to_numpy(float), y=f[y].to_numpy(float), mode="lines+markers",
            name=NAMES["front"], uid="front",
            line=dict(color=COLORS["front"], dash="dash", width=2),
            marker=dict(symbol="circle-open", size=8, color=COLORS["front"]),
            error_x=_bars(f, x, COLORS["front"]), error_y=_bars(f, y, COLORS["front"]),
            customdata=[int(i) for i in f.index],  # the front table's row: its recipe
            hovertext=[_hover(r["label"], x, y, r[x], r[y], "predicted, not measured", r)
                       for _, r in f.iterrows()],
            hovertemplate="%{hovertext}<extra></extra>"))
    if measured is not None and not measured.empty:
        for ok in (True, False):
            m = measured[measured["feasible"].astype(bool) == ok]
            if m.empty:
                continue
            key = "measured" if ok else "infeasible"
            traces.append(go.Scatter(
                x=m[x].to_numpy(float), y=m[y].to_numpy(float), mode="markers", name=NAMES[key],
                uid=key, marker=dict(symbol="circle", size=9, color=COLORS[key],
                                     line=dict(width=1, color="white")),
                hovertext=[_hover(r["label"], x, y, r[x], r[y], "measured") for _, r in m.iterrows()],
                hovertemplate="%{hovertext}<extra></extra>"))
    if suggested is not None and not suggested.empty and x in suggested and y in suggested:
        traces.append(go.Scatter(
            x=suggested[x].to_numpy(float), y=suggested[y].to_numpy(float), mode="markers",
            name=NAMES["suggested"], uid="suggested",
            marker=dict(symbol="diamond-open", size=13, color=COLORS["suggested"], line=dict(width=2)),
            hovertext=[_hover(r["label"], x, y, r[x], r[y], "suggested; predicted") for _, r in
                       suggested.iterrows()],
            hovertemplate="%{hovertext}<extra></extra>"))
    fig = go.Figure(data=traces)
    fig.update_layout(**_LAYOUT, title=dict(text=title or "Predicted Pareto front and measured points",
                                            x=0, font=dict(size=15)),
                      xaxis_title=axis_title(x), yaxis_title=axis_title(y))
    if floor is not None and floor[0] in (x, y):
        line = dict(color=COLORS["floor"], dash="dot", width=1.5)
        text = f"floor: {axis_title(floor[0])} ≥ {floor[1]:.1f}"
        if floor[0] == x:
            fig.add_vline(x=floor[1], line=line, annotation_text=text)
        else:
            fig.add_hline(y=floor[1], line=line, annotation_text=text)
    return fig
