"""plotly figures drawn from the data in ``_info`` (and Optuna's own plots where they fit).

User strings reach plotly escaped (``html.escape``): plotly renders a subset of HTML in text, and
a study named ``<b>x</b>`` must show as typed.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import plotly.graph_objects as go

from losstune.report import _info

PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477",
           "#66aa00", "#b82e2e", "#316395"]
# The card around each plot carries its title, so figures have none (and a little top margin).
LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=20, t=30, b=50),
              font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12))


def esc(text: Any) -> str:
    return html.escape(str(text), quote=False)


def _style(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    # The title is kept as the figure's name (optuna-dashboard shows it) but not drawn in reports.
    fig.update_layout(**{**LAYOUT, **kw}, title=dict(text=esc(title), x=0.01))
    return fig


def by_family(values: dict[str, list[float]], metric: str) -> go.Figure:
    fig = go.Figure()
    for i, (family, vals) in enumerate(sorted(values.items())):
        fig.add_trace(go.Box(y=vals, name=esc(family), boxpoints="all", jitter=0.4,
                             pointpos=0, marker_color=PALETTE[i % len(PALETTE)]))
    return _style(fig, f"{metric} by loss family (validation)", showlegend=False,
                  yaxis_title=esc(metric))


def lines(series: Sequence[dict[str, Any]], title: str, y_title: str,
          x_title: str = "epoch") -> go.Figure:
    fig = go.Figure()
    for i, s in enumerate(series):
        fig.add_trace(go.Scatter(y=s["values"], x=list(range(len(s["values"]))), mode="lines+markers",
                                 name=esc(s["label"]), line=dict(color=PALETTE[i % len(PALETTE)])))
    return _style(fig, title, xaxis_title=x_title, yaxis_title=esc(y_title),
                  legend=dict(orientation="h", y=-0.25))


def recall(info: dict[str, Any]) -> go.Figure:
    classes = [esc(c) for c in info["classes"]]
    fig = go.Figure(go.Bar(x=classes, y=info["best"], name=esc(info["best_label"])[:60],
                           marker_color=PALETTE[0]))
    if info.get("baseline"):
        fig.add_trace(go.Bar(x=classes, y=info["baseline"], name=esc(info["baseline_label"])[:60],
                             marker_color="#999999"))
    return _style(fig, "Per-class recall (validation): best design vs baseline", barmode="group",
                  yaxis=dict(range=[0, 1.05], title="recall"), xaxis_title="class",
                  legend=dict(orientation="h", y=-0.25))


def residuals(info: dict[str, Any]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=info["target"], y=info["residual"], mode="markers",
                               marker=dict(color=PALETTE[0], opacity=0.7)))
    fig.add_hline(y=0, line_color="#888")
    return _style(fig, f"Residuals of the best design (validation): {info['label']}",
                  xaxis_title="target", yaxis_title="prediction − target")


def confirmation(rows: Sequence[_info.Confirmed], metric: str) -> go.Figure:
    labels = [f"{i}. {esc(r.design)[:50]}" + (" ★" if r.beats_baseline else "")
              for i, r in enumerate(rows, start=1)][::-1]
    means = [r.mean for r in rows][::-1]
    fig = go.Figure(go.Scatter(
        x=means, y=labels, mode="markers",
        error_x=dict(type="data", symmetric=False,
                     array=[r.ci_high - r.mean for r in rows][::-1],
                     arrayminus=[r.mean - r.ci_low for r in rows][::-1]),
        marker=dict(size=10, color=["#999999" if r.baseline else PALETTE[0] for r in rows][::-1])))
    return _style(fig, f"Confirmed ranking: mean {metric} with 95% CI across seeds",
                  height=max(300, 60 + 40 * len(rows)), xaxis_title=esc(metric),
                  margin=dict(l=320, r=20, t=30, b=50))


def optuna_plot(kind: str, study: Any, **kwargs: Any) -> go.Figure | None:
    """An ``optuna.visualization`` figure restyled, or None when Optuna cannot draw it."""
    import optuna.visualization as vis

    func = {"history": vis.plot_optimization_history, "importance": vis.plot_param_importances,
            "parallel": vis.plot_parallel_coordinate, "contour": vis.plot_contour,
            "slice": vis.plot_slice}[kind]
    import warnings

    try:
        with warnings.catch_warnings():  # "few trials per regime" notes belong to small studies
            warnings.simplefilter("ignore")
            fig = func(study, **kwargs)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
    if not fig.data:
        return None
    fig.update_layout(**LAYOUT)
    return fig

