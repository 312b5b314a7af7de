"""``losstune report``: one self-contained HTML file that ranks a study's loss designs.

plotly.js is embedded (no CDN), figures are embedded as JSON, and the page makes no network
request, so it opens offline and can be mailed. Every user string is HTML-escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from losstune import __version__
from losstune.report import _info

CONFIRM_SUFFIX = ":confirm"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def _script_json(data: Any) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' that could end the element."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _figures(study: Any, trials: list, maximize: bool, metric: str) -> list[tuple[str, str, Any]]:
    """(title, caption, figure or None-with-reason) for every plot of the report."""
    from losstune.report import _plots

    attrs = study.user_attrs
    task = attrs.get("task", "multiclass")
    out: list[tuple[str, str, Any]] = []

    def add(title: str, caption: str, fig: Any, missing: str) -> None:
        out.append((title, caption, fig if fig is not None else missing))

    add("Optimisation history", "Objective of every complete trial, and the best so far.",
        _plots.optuna_plot("history", study, target_name=metric), "no complete trial")
    add("Objective by loss family", "Each point is one trial.",
        _plots.by_family(_info.family_values(trials), metric), "")
    add("Parameter importance", "How much each searched parameter explains the objective "
        "(Optuna's default evaluator).",
        _plots.optuna_plot("importance", study, target_name=metric) if len(trials) >= 4 else None,
        "needs at least 4 complete trials with varying parameters")
    add("Parallel coordinates", "Every complete trial across the searched parameters.",
        _plots.optuna_plot("parallel", study, target_name=metric), "no complete trial")
    if _info.params_present(trials, ["focal.gamma", "focal.alpha"]) >= 3:
        add("Focal loss: γ × α", "Objective over focal γ and α (focal trials only).",
            _plots.optuna_plot("contour", study, params=["focal.gamma", "focal.alpha"],
                               target_name=metric), "")
    if _info.params_present(trials, ["huber.delta"]) >= 2:
        add("Huber δ", "Objective against Huber's δ (in standard deviations of the target).",
            _plots.optuna_plot("slice", study, params=["huber.delta"], target_name=metric), "")
    schedules = _info.schedules_info(trials, maximize)
    if schedules:
        add("Curriculum schedules of the top designs", "w_curriculum × schedule(epoch).",
            _plots.lines(schedules, "Curriculum weight over epochs", "weight × factor"), "")
    curves = _info.curves_info(trials, maximize, metric)
    if curves["val"]:
        add("Validation curves of the top designs", f"{metric} on the validation split after "
            "every epoch.", _plots.lines(curves["val"], f"Validation {metric} per epoch", metric), "")
    if curves["components"]:
        add("Loss components of the top DynamicLoss designs", "Mean value of each weighted "
            "component per epoch (training).",
            _plots.lines(curves["components"], "DynamicLoss components per epoch", "value"), "")
    if task == "regression":
        info = _info.residuals_info(trials, maximize, attrs.get("val_targets"))
        add("Residuals", "Prediction − target for the best design, validation split.",
            _plots.residuals(info) if info else None, "no stored predictions")
    else:
        info = _info.recall_info(trials, maximize, attrs.get("class_names"))
        add("Per-class recall", "Recall of every class for the best design and the best "
            "baseline.", _plots.recall(info) if info else None, "no per-class recall recorded")
    return out


def build(study: Any, confirm_study: Any | None = None) -> str:
    """The report's HTML for a loaded Optuna study (and its confirmation study, if any)."""
    import plotly.offline

    trials = study.get_trials(deepcopy=False)
    maximize = study.directions[0].name == "MAXIMIZE"
    summary = _info.summary_info(study.study_name, study.user_attrs, trials, maximize)
    metric = summary.metric
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    parts: list[str] = [_summary_html(summary)]
    figures: list[Any] = []
    if not complete:
        parts.append('<section class="empty"><h2>No complete trial</h2><p>This study has no '
                     "complete trial yet, so there is nothing to rank. Run <code>losstune search"
                     "</code> (again) and build the report afterwards.</p></section>")
    else:
        confirmed = None
        if confirm_study is not None:
            confirmed = _info.confirm_info(confirm_study.get_trials(deepcopy=False), maximize,
                                           metric)
        if confirmed:
            parts.append(_confirm_html(confirmed, metric, confirm_study))
            from losstune.report import _plots

            figures.append(("Confirmed ranking", "Mean and 95% confidence interval across seeds; "
                            "★ beats the best baseline significantly.",
                            _plots.confirmation(confirmed, metric)))
        else:
            parts.append('<p class="warning">This ranking is <strong>single-seed</strong>: each '
                         "design was trained once, on one data split. Differences of a few "
                         "hundredths are often noise. Run <code>losstune confirm "
                         f"{esc(study.study_name)}</code> to re-train the top designs with several "
                         "seeds and rank them with confidence intervals.</p>")
        parts.append(_leaderboard_html(_info.leaderboard_info(trials, maximize, summary.task),
                                       metric, summary.task))
        figures.extend(_figures(study, trials, maximize, metric))
    plots_html, data_html = _figures_html(figures)
    parts.append(plots_html)
    template = Template(resources.files("losstune.report").joinpath("template.html").read_text())
    return template.substitute(
        title=esc(f"losstune report: {study.study_name}"),
        body="\n".join(parts), figure_data=data_html,
        plotlyjs=plotly.offline.get_plotlyjs(),
        generated=esc(f"generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by losstune "
                      f"{__version__}"))


def _summary_html(s: _info.Summary) -> str:
    c = s.counts
    lift = ""
    if s.lift is not None:
        better = "better" if s.lift > 0 else ("worse" if s.lift < 0 else "no different")
        lift = (f"<p>Best design vs the best baseline (<em>{esc(s.baseline_design)}</em>, "
                f"{_fmt(s.baseline_value)}): <strong>{s.lift:+.4f}</strong> {esc(s.metric)} "
                f"({better}).</p>")
    best = (f"<p class=\"best\">Best design: <strong>{esc(s.best_design)}</strong> — "
            f"{esc(s.metric)} {_fmt(s.best_value)} (trial {s.best_trial})</p>"
            if s.best_design else "")
    direction = "higher is better" if s.maximize else "lower is better"
    return f"""<section class="summary">
<h1>{esc(s.study)}</h1>
<dl>
<dt>Task</dt><dd>{esc(s.task)}</dd>
<dt>Data</dt><dd>{esc(s.dataset)}</dd>
<dt>Objective</dt><dd>{esc(s.metric)} on the validation split ({direction})</dd>
<dt>Budget</dt><dd>{esc(s.budget)}</dd>
<dt>Trials</dt><dd>{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed</dd>
</dl>
{best}
{lift}
</section>"""


def _leaderboard_html(rows: list[dict[str, Any]], metric: str, task: str) -> str:
    keys = list(rows[0]["secondary"]) if rows else []
    head = ["#", "trial", "loss design", f"{metric} (val)",
            *[f"{k} (val)" for k in keys if k != metric], f"{metric} (test)", "train s"]
    body = []
    for r in rows:
        badge = ' <span class="badge">baseline</span>' if r["baseline"] else ""
        test = r["test"].get(metric) if r["test"] else None
        cells = [str(r["rank"]), str(r["trial"]), f'{esc(r["design"])}{badge}', _fmt(r["value"]),
                 *[_fmt(r["secondary"][k]) for k in keys if k != metric], _fmt(test),
                 _fmt(r["train_time_s"], 2)]
        cls = ' class="baseline"' if r["baseline"] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    th = "".join(f'<th data-col="{i}" title="click to sort">{esc(h)}</th>'
                 for i, h in enumerate(head))
    return f"""<section><h2>Leaderboard</h2>
<p class="caption">Every complete trial, best first. Test-split figures are shown for the top five
designs only; the search never saw them.</p>
<table id="leaderboard" class="sortable"><thead><tr>{th}</tr></thead>
<tbody>{''.join(body)}</tbody></table></section>"""


def _confirm_html(rows: list[_info.Confirmed], metric: str, confirm_study: Any) -> str:
    seeds = max((r.n for r in rows), default=0)
    body = []
    for i, r in enumerate(rows, start=1):
        badge = ' <span class="badge">baseline</span>' if r.baseline else ""
        star = ' <span class="star" title="beats the best baseline, p &lt; 0.05">★</span>' \
            if r.beats_baseline else ""
        p = "—" if r.p_value is None else f"{r.p_value:.3f}"
        body.append(f"<tr><td>{i}</td><td>{esc(r.design)}{badge}{star}</td><td>{r.n}</td>"
                    f"<td>{r.mean:.4f}</td><td>[{r.ci_low:.4f}, {r.ci_high:.4f}]</td>"
                    f"<td>{_fmt(r.test_mean)}</td><td>{p}</td></tr>")
    return f"""<section><h2>Confirmed ranking ({seeds} seeds)</h2>
<p class="caption">The top designs and the baselines re-trained with {seeds} seeds each (new data
split and initialisation per seed; stored in the companion study
<code>{esc(confirm_study.study_name)}</code>). Ranked by mean validation {esc(metric)}; 95%
confidence interval from Student's t. <em>p</em>: paired t-test across seeds against the best
baseline; ★ marks a design that beats it at p &lt; 0.05.</p>
<table class="sortable" id="confirmed"><thead><tr><th>#</th><th>loss design</th><th>seeds</th>
<th>mean {esc(metric)} (val)</th><th>95% CI</th><th>mean {esc(metric)} (test)</th><th>p vs baseline</th>
</tr></thead><tbody>{''.join(body)}</tbody></table></section>"""


def _figures_html(figures: list[tuple[str, str, Any]]) -> tuple[str, str]:
    cards, data = [], []
    for i, (title, caption, fig) in enumerate(figures):
        if isinstance(fig, str):
            if fig:
                cards.append(f'<div class="card"><h3>{esc(title)}</h3><p class="missing">Not '
                             f"available: {esc(fig)}.</p></div>")
            continue
        cards.append(f'<div class="card"><h3>{esc(title)}</h3><p class="caption">{esc(caption)}'
                     f'</p><div class="plot" id="plot-{i}" data-figure="{i}"></div></div>')
        fig = fig.update_layout(title=None)
        data.append(f'<script type="application/json" id="figure-{i}">'
                    f"{_script_json(json.loads(fig.to_json()))}</script>")
    section = f'<section><h2>Plots</h2><div class="grid">{"".join(cards)}</div></section>' \
        if cards else ""
    return section, "\n".join(data)


# Figures saved into the study for optuna-dashboard, under stable ids so re-saving replaces them.
DASHBOARD_FIGURES = {"Optimisation history": "losstune-history",
                     "Objective by loss family": "losstune-families",
                     "Parameter importance": "losstune-importance",
                     "Per-class recall": "losstune-recall", "Residuals": "losstune-residuals",
                     "Validation curves of the top designs": "losstune-curves"}


def save_to_dashboard(study: Any) -> list[str]:
    """Save the report's key figures with ``optuna_dashboard.save_plotly_graph_object``."""
    from optuna_dashboard import save_plotly_graph_object

    trials = study.get_trials(deepcopy=False)
    if len(study.directions) > 1 or not any(t.state.name == "COMPLETE" for t in trials):
        return []
    maximize = study.directions[0].name == "MAXIMIZE"
    metric = (study.user_attrs.get("objective") or ["objective"])[0]
    saved = []
    for title, _, fig in _figures(study, trials, maximize, metric):
        if title in DASHBOARD_FIGURES and not isinstance(fig, str):
            fig.update_layout(title=dict(text=esc(title), x=0.01))
            saved.append(save_plotly_graph_object(study, fig,
                                                  graph_object_id=DASHBOARD_FIGURES[title]))
    return saved


def write(study_name: str, storage_url: str, output: Path | None = None) -> Path:
    """Build the report of a stored study (with its confirmation, if any) and write it."""
    import optuna

    from losstune.runner import load_existing, quiet_optuna
    from losstune.storage import open_storage, study_names

    quiet_optuna()
    study = load_existing(storage_url, study_name)
    confirm = None
    name = study_name + CONFIRM_SUFFIX
    if name in study_names(open_storage(storage_url, heartbeat=False)):
        confirm = optuna.load_study(study_name=name,
                                    storage=open_storage(storage_url, heartbeat=False))
    output = Path(output or Path("reports") / f"{_safe(study_name)}.html")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(build(study, confirm), encoding="utf-8")
    save_to_dashboard(study)
    return output


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "study"
