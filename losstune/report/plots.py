"""plotly figures drawn from the data in ``_info`` (and Optuna's own plots where they fit).

User strings reach plotly escaped (``html.escape``): plotly renders a subset of HTML in text, and
a study named ``<b>x</b>`` must show as typed.

Layer: views.
"""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

import plotly.graph_objects as go

from losstune import catalog

PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477",
           "#66aa00", "#b82e2e", "#316395"]
# The card around each plot carries its title, so figures have none (and a little top margin).
LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=20, t=30, b=50),
              font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12))


def esc(text: Any) -> str:
    return html.escape(str(text), quote=False)


def wrap(text: Any, width: int = 40) -> str:
    """``text`` escaped and broken at spaces into lines of about ``width`` characters.

    The lines are joined by ``<br>`` (a word longer than ``width`` keeps its own line whole), so
    ``wrap(t).replace("<br>", " ") == esc(t)``: nothing is cut.
    """
    lines: list[str] = []
    for word in str(text).split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(esc(line) for line in lines)


def family_name(family: str) -> str:
    return catalog.title(family)


def param_label(name: str, family: str | None = None) -> str:
    """A parameter's short name as the report writes it (the catalog's): ``gamma`` → γ,
    ``label_smoothing`` → label smoothing, ``w_balance`` as is."""
    return catalog.label(name, family)


def _category_order(values: Sequence[Any]) -> list[str]:
    """Distinct values as strings, numbers in numeric order, then the rest alphabetically."""
    def key(v: str) -> tuple[int, float, str]:
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)
    return sorted({str(v) for v in values}, key=key)


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
    # showlegend: plotly hides the legend of a single-trace figure, which left a lone curve (one
    # curriculum schedule) unnamed; every trace is named, long names wrapped rather than cut.
    fig = go.Figure()
    rows = 0
    for i, s in enumerate(series):
        name = wrap(s.get("label") or f"series {i + 1}", 50)
        rows += name.count("<br>") + 1
        fig.add_trace(go.Scatter(y=s["values"], x=list(range(len(s["values"]))),
                                 mode="lines+markers", name=name, showlegend=True,
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    return _style(fig, title, xaxis_title=x_title, yaxis_title=esc(y_title), showlegend=True,
                  height=max(LAYOUT["height"], 290 + 21 * rows),
                  legend=dict(orientation="h", x=0, y=-0.18, yanchor="top"))


def recall(info: dict[str, Any], score: str = "recall", axis: str = "class") -> go.Figure:
    classes = [esc(c) for c in info["classes"]]
    fig = go.Figure(go.Bar(x=classes, y=info["best"], name=wrap(info["best_label"], 50),
                           marker_color=PALETTE[0]))
    if info.get("baseline"):
        fig.add_trace(go.Bar(x=classes, y=info["baseline"], name=wrap(info["baseline_label"], 50),
                             marker_color="#999999"))
    return _style(fig, f"Per-{axis} {score} (validation): best design vs baseline",
                  barmode="group", yaxis=dict(range=[0, 1.05], title=score), xaxis_title=axis,
                  showlegend=True, legend=dict(orientation="h", x=0, y=-0.18, yanchor="top"))


def residuals(info: dict[str, Any]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=info["target"], y=info["residual"], mode="markers",
                               marker=dict(color=PALETTE[0], opacity=0.7)))
    fig.add_hline(y=0, line_color="#888")
    return _style(fig, f"Residuals of the best design (validation): {info['label']}",
                  xaxis_title="target", yaxis_title="prediction − target")


def projection(info: dict[str, Any]) -> go.Figure:
    fig = go.Figure([go.Scatter(x=g["x"], y=g["y"], mode="markers", name=esc(name),
                                marker=dict(size=6, opacity=0.75))
                     for name, g in info["classes"].items()])
    return _style(fig, f"Validation embeddings, first two principal components: {info['label']}",
                  xaxis_title="PC 1", yaxis_title="PC 2", showlegend=True)


def image(values: Sequence[float], shape: Sequence[int]) -> go.BaseTraceType:
    """One image from its pixels in [0, 1] (row-major): grey levels for (height, width),
    colour for (height, width, 3)."""
    import numpy as np

    pixels = np.clip(np.asarray(values, "float64"), 0, 1).reshape(tuple(shape))
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return go.Image(z=np.round(pixels * 255).astype("uint8"))
    return go.Heatmap(z=pixels.reshape(pixels.shape[0], -1).tolist(), zmin=0, zmax=1,
                      colorscale="Greys", showscale=False)


def reconstructions(info: dict[str, Any]) -> go.Figure:
    """Inputs on the top row, reconstructions below: images where the inputs are square
    (digits), else each input's features as a line with its reconstruction."""
    from plotly.subplots import make_subplots

    n = len(info["inputs"])
    title = f"Validation inputs and their reconstructions: {info['label']}"
    if not info["shape"]:
        fig = make_subplots(rows=1, cols=n, shared_yaxes=True)
        for i, (x, r) in enumerate(zip(info["inputs"], info["rebuilt"]), start=1):
            fig.add_trace(go.Scatter(y=x, mode="lines", line_color="#444", name="input",
                                     showlegend=i == 1), row=1, col=i)
            fig.add_trace(go.Scatter(y=r, mode="lines", line_color=PALETTE[0],
                                     name="reconstruction", showlegend=i == 1), row=1, col=i)
        return _style(fig, title, showlegend=True)
    rows = info["shape"][0]
    fig = make_subplots(rows=2, cols=n, horizontal_spacing=0.01, vertical_spacing=0.04)
    for i, (x, r) in enumerate(zip(info["inputs"], info["rebuilt"]), start=1):
        for row, values in ((1, x), (2, r)):
            fig.add_trace(image(values, info["shape"]), row=row, col=i)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    for k in range(1, 2 * n + 1):  # square pixels: each image's y axis follows its x axis
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    return _style(fig, title, height=max(220, 90 * rows // 4))


def samples(rows: Sequence[tuple[str, Sequence[Sequence[float]]]],
            shape: Sequence[int] | None) -> go.Figure:
    """Generated samples in [0, 1], one row of images (or of lines, for flat data) per
    design, labelled on the left."""
    from plotly.subplots import make_subplots

    n = max(len(r[1]) for r in rows)
    fig = make_subplots(rows=len(rows), cols=n, horizontal_spacing=0.005,
                        vertical_spacing=0.02, row_titles=[wrap(label, 24) for label, _ in rows])
    for i, (_, images) in enumerate(rows, start=1):
        for j, values in enumerate(images, start=1):
            if shape:
                fig.add_trace(image(values, shape), row=i, col=j)
            else:
                fig.add_trace(go.Scatter(y=values, mode="lines", line_color=PALETTE[0],
                                         showlegend=False), row=i, col=j)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed" if shape else True)
    return _style(fig, "Generated samples", height=max(220, 80 * len(rows)))


def class_histogram(generated: Sequence[int], data: Sequence[int], label: str) -> go.Figure:
    """Each class's share of the generated samples against its share of the data."""
    classes = [str(i) for i in range(len(data))]
    fig = go.Figure([go.Bar(x=classes, y=[c / max(1, sum(generated)) for c in generated],
                            name=f"generated: {wrap(label)}", marker_color=PALETTE[0]),
                     go.Bar(x=classes, y=[c / max(1, sum(data)) for c in data],
                            name="training data", marker_color="#999")])
    return _style(fig, "Class coverage of generated samples", barmode="group",
                  xaxis_title="class (feature classifier)", yaxis_title="share")


def counts(info: dict[str, Any]) -> go.Figure:
    top = max([*info["target"], *info["predicted"], 1.0])
    fig = go.Figure(go.Scatter(x=info["target"], y=info["predicted"], mode="markers",
                               name="validation sample",
                               marker=dict(color=PALETTE[0], opacity=0.6)))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", line_color="#888",
                             name="expected = true", hoverinfo="skip"))
    return _style(fig, f"Expected against true counts (validation): {info['label']}",
                  xaxis_title="true count", yaxis_title="expected count exp(η)",
                  showlegend=False)


def image_scatter(points: Sequence[tuple[str, float, float, str, bool]], x_label: str,
                  y_label: str) -> go.Figure:
    """Each design's picture (a PNG data URI) at its place on two objectives: ``points``
    are (label, x, y, picture, is_baseline)."""
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    fig = go.Figure(go.Scatter(
        x=xs, y=ys, mode="markers", hovertext=[wrap(p[0], 60) for p in points],
        hovertemplate="%{hovertext}<br>" + esc(x_label) + " %{x:.4g}<br>" + esc(y_label)
                      + " %{y:.4g}<extra></extra>",
        marker=dict(size=8, color=["#999999" if p[4] else PALETTE[0] for p in points])))
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or max(abs(ys[0]), 1e-12)
    for _, x, y, picture, _ in points:  # each picture centred on its point
        fig.add_layout_image(source=picture, x=x, y=y, xref="x", yref="y",
                             sizex=span_x / 6, sizey=span_y / 6, xanchor="center",
                             yanchor="middle", layer="above")
    fig.update_xaxes(range=[min(xs) - span_x / 5, max(xs) + span_x / 5])
    fig.update_yaxes(range=[min(ys) - span_y / 5, max(ys) + span_y / 5])
    return _style(fig, f"Results by {esc(x_label)} and {esc(y_label)}",
                  xaxis_title=esc(x_label), yaxis_title=esc(y_label), height=520)


def pictures(row: Sequence[tuple[str, str]]) -> go.Figure:
    """Pictures (PNG data URIs) side by side, each with its label."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(row), horizontal_spacing=0.01,
                        subplot_titles=[wrap(label, 18) for label, _ in row])
    for i, (_, picture) in enumerate(row, start=1):
        fig.add_trace(go.Image(source=picture), row=1, col=i)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, "Content, style and results", height=260)


def front(v: Any) -> go.Figure:
    """Every design's means on the first two objectives, with 95% CIs across seeds; the
    front's designs joined in order of the first objective; ★ a dominating design."""
    winners = {m.key for m in v.winners}
    on_front = {m.key for m in v.front}
    everyone = [*v.front, *v.others]
    x_label, y_label = v.metrics[0], v.metrics[1]

    def bars(i: int) -> dict[str, Any]:
        ds = [m.per_objective[i] for m in everyone]
        return dict(type="data", symmetric=False,
                    array=[(d.ci[1] - d.mean) if d.ci else 0 for d in ds],
                    arrayminus=[(d.mean - d.ci[0]) if d.ci else 0 for d in ds])

    hover = [wrap(m.words, 60) + "".join(f"<br>{k} {x:.4g}" for k, x in zip(v.metrics, m.means))
             + f"<br>{m.n} seed{'s' if m.n != 1 else ''}" + ("<br>on the front"
                                                            if m.key in on_front else "")
             + ("<br>★ dominates a baseline significantly" if m.key in winners else "")
             for m in everyone]
    points = go.Scatter(
        x=[m.means[0] for m in everyone], y=[m.means[1] for m in everyone], mode="markers",
        error_x=bars(0), error_y=bars(1), hovertext=hover, name="designs",
        hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(size=[14 if m.key in winners else 9 for m in everyone],
                    symbol=["star" if m.key in winners else "circle" for m in everyone],
                    color=["#999999" if m.baseline else PALETTE[0] for m in everyone]))
    line = go.Scatter(x=[m.means[0] for m in v.front], y=[m.means[1] for m in v.front],
                      mode="lines", line=dict(color=PALETTE[1], dash="dot"), name="front",
                      hoverinfo="skip")
    return _style(go.Figure([line, points]), "Pareto front of the designs' means",
                  xaxis_title=esc(x_label), yaxis_title=esc(y_label), showlegend=True)


def confirmation(rows: Sequence[Any], metric: str) -> go.Figure:
    """Mean and CI per confirmed design, best on top; every label whole (wrapped, never cut)."""
    stars = [bool(getattr(r, "significant", getattr(r, "beats_baseline", False))) for r in rows]
    labels, hover = [], []
    for i, (r, star) in enumerate(zip(rows, stars), start=1):
        note = (" ★" if star else "") + (' <span style="color:#888">(baseline)</span>'
                                         if r.baseline else "")
        labels.append(wrap(f"{i}. {r.design}", 44) + note)
        hover.append(wrap(r.design, 70) + f"<br>mean {r.mean:.4f}, 95% CI [{r.ci_low:.4f}, "
                     f"{r.ci_high:.4f}]" + ("<br>★ significant" if star else "")
                     + ("<br>baseline" if r.baseline else ""))
    # Numeric positions, first row on top: each row gets as much room as its label has lines
    # (plus one line of gap), and two designs with the same words still get a row each.
    y, used = [], 0.0
    for label in labels:
        room = label.count("<br>") + 2
        y.append(-(used + room / 2))
        used += room
    fig = go.Figure(go.Scatter(
        x=[r.mean for r in rows], y=y, mode="markers", hovertext=hover,
        hovertemplate="%{hovertext}<extra></extra>",
        error_x=dict(type="data", symmetric=False, array=[r.ci_high - r.mean for r in rows],
                     arrayminus=[r.mean - r.ci_low for r in rows]),
        marker=dict(size=10, color=["#999999" if r.baseline else PALETTE[0] for r in rows])))
    return _style(fig, f"Confirmed ranking: mean {metric} with 95% CI across seeds",
                  height=max(260, 90 + 17 * used), xaxis_title=esc(metric),
                  yaxis=dict(tickmode="array", tickvals=y, ticktext=labels, automargin=True,
                             range=[-used, 0], showgrid=True, zeroline=False, fixedrange=True),
                  margin=dict(l=10, r=20, t=30, b=50), hoverlabel=dict(align="left"))


def family_params(info: dict[str, Any], metric: str, maximize: bool = True) -> go.Figure:
    """One loss family's objective over its own searched parameters (``_info.family_params_info``).

    One parameter: a scatter of the objective against it. Several: parallel coordinates, one
    line per trial coloured by the objective. No other family's parameters appear, so nothing
    piles up at "None".
    """
    name, objective = family_name(info["family"]), info["objective"]
    labels = [param_label(n, info["family"]) for n in info["names"]]
    title = f"{name}: {metric} over " + ", ".join(labels)
    if len(info["params"]) == 1:
        values = [row[0] for row in info["rows"]]
        kind = info["kinds"][0]
        xaxis: dict[str, Any] = dict(title=esc(labels[0]))
        if kind == "categorical":
            values = [str(v) for v in values]
            xaxis.update(type="category", categoryorder="array",
                         categoryarray=_category_order(values))
        elif kind == "log":
            xaxis.update(type="log")
        fig = go.Figure(go.Scatter(
            x=values, y=objective, mode="markers", customdata=info["trials"],
            marker=dict(size=10, color=PALETTE[0], opacity=0.75, line=dict(width=1, color="#fff")),
            hovertemplate=f"trial %{{customdata}}<br>{esc(labels[0])} = %{{x}}<br>"
                          f"{esc(metric)} = %{{y:.4f}}<extra></extra>"))
        return _style(fig, title, xaxis=xaxis, yaxis_title=esc(metric), showlegend=False)
    dims = []
    for j, (label, kind) in enumerate(zip(labels, info["kinds"])):
        values = [row[j] for row in info["rows"]]
        if kind == "categorical":
            cats = _category_order(values)
            dims.append(dict(label=esc(label), values=[cats.index(str(v)) for v in values],
                             tickvals=list(range(len(cats))), ticktext=[esc(c) for c in cats],
                             range=[-0.2, max(len(cats) - 1, 0) + 0.2]))
        elif kind == "log":
            logs = [math.log10(v) for v in values]
            lo, hi = min(logs), max(logs)
            ticks = [lo, hi] if hi - lo < 1 else list(range(math.ceil(lo), math.floor(hi) + 1))
            dims.append(dict(label=esc(label) + " (log)", values=logs, tickvals=ticks,
                             ticktext=[f"{10 ** t:.3g}" for t in ticks]))
        else:
            dims.append(dict(label=esc(label), values=values))
    dims.append(dict(label=esc(metric), values=objective))
    # The first axis's tick labels sit left of the plot: room for the longest (a category name).
    first = dims[0].get("ticktext") or []
    left = min(240, max(60, 16 + 7 * max((len(t) for t in first), default=0)))
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelangle=0, labelside="top",
        line=dict(color=objective, colorscale="Blues", reversescale=not maximize, showscale=True,
                  colorbar=dict(title=dict(text=esc(metric)), thickness=12))))
    # meta.wide: the report gives a plot of many axes a card across the whole grid.
    return _style(fig, title, margin=dict(l=left, r=40, t=70, b=30),
                  meta=dict(wide=len(dims) >= 4))


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

