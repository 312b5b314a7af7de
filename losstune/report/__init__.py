"""``losstune report``: one self-contained HTML file that ranks a study's loss designs.

plotly.js is embedded (no CDN), figures are embedded as JSON, and the page makes no network
request, so it opens offline and can be mailed. Every user string is HTML-escaped.

Layer: views.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Sequence

from losstune import __version__, catalog, results, tasks
from losstune.report import info as _info



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


def _figures(study: Any, trials: list, maximize: bool, metric: str,
             order: list) -> list[tuple[str, str, Any]]:
    """(title, caption, figure or None-with-reason) for every plot of the report; ``order``:
    one trial per design in the verdict's ranking (_info.by_verdict), which every figure of a
    "best" or "top" design reads."""
    from losstune.report import plots as _plots

    attrs = study.user_attrs
    task = attrs.get(results.TASK, "multiclass")
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
    # One view per loss family over its own parameters (a study-wide parallel-coordinate plot
    # piles every other family's parameters up at "None").
    for fam in _info.family_params_info(trials, maximize):
        family = fam["family"]
        record = catalog.find(family)  # None: a family this process has not registered
        axes = " × ".join(catalog.label(n, family) for n in fam["names"])
        fig = None
        contour = [f"{family}.{n}" for n in record.contour] if record else []
        if contour and sorted(fam["params"]) == sorted(contour):
            fig = _plots.optuna_plot("contour", study, params=contour, target_name=metric)
        caption = (f"Objective over {axes}, the family's own searched parameters; its "
                   f"{len(fam['trials'])} complete trials only.")
        if record and record.note:
            caption += " " + record.note
        if fam["left_out"]:
            caption += (" Left out, as only some of its trials searched them: "
                        + ", ".join(catalog.label(n, family) for n in fam["left_out"]) + ".")
        add(f"{catalog.title(family)}: {axes}", caption,
            fig if fig is not None else _plots.family_params(fam, metric, maximize), "")
    schedules = _info.schedules_info(order)
    if schedules:
        add("Schedules of the top designs", "The scheduled weight × schedule(epoch): "
            "DynamicLoss's curriculum weight, a VAE's β (its KL warm-up).",
            _plots.lines(schedules, "Scheduled weight over epochs", "weight × factor"), "")
    curves = _info.curves_info(order, metric)
    numbers = {t.number: t for t in trials}
    for s in curves["val"]:  # the whole design (wrapped by _plots.lines), not its first 40 chars
        s["label"] = f"#{s['trial']} {_info.design_label(numbers[s['trial']])}"
    if curves["val"]:
        add("Validation curves of the top designs", f"{metric} on the validation split after "
            "every epoch, for the verdict's top designs (one curve each, from its first "
            "search trial).",
            _plots.lines(curves["val"], f"Validation {metric} per epoch", metric), "")
    if curves["components"]:
        add("Loss components of the top designs", "Mean value of each weighted "
            "component per epoch (training).",
            _plots.lines(curves["components"], "Loss components per epoch", "value"), "")
    # The task's own figures (its module in losstune/tasks/), read from the verdict's order.
    tasks.TASKS[task].report_figures(order, attrs, add)
    return out


def build(study: Any, runs: Any | None = None) -> str:
    """The report's HTML for a loaded Optuna study (and its replicate-runs study, if any)."""
    import plotly.offline

    from losstune import results

    trials = study.get_trials(deepcopy=False)
    maximize = study.directions[0].name == "MAXIMIZE"
    records = results.records(trials, runs.get_trials(deepcopy=False) if runs is not None
                              else ())
    summary = _info.summary_info(study.study_name, study.user_attrs, trials, maximize, records)
    metric = summary.metric
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    parts: list[str] = [_summary_html(summary, results.metrics_of(study.user_attrs),
                                      [d.name == "MAXIMIZE" for d in study.directions])]
    figures: list[Any] = []
    if not complete:
        parts.append('<section class="empty"><h2>No complete trial</h2><p>This study has no '
                     "complete trial yet, so there is nothing to rank. Run <code>losstune search"
                     "</code> (again) and build the report afterwards.</p></section>")
    else:
        verdict = results.verdict(study.study_name, metric, maximize, records)
        several = len(study.directions) > 1
        if several:  # the front and its dominance tests, as `show` gives them
            from losstune import pareto
            from losstune.report import plots as _plots

            front = pareto.verdict(study.study_name, results.metrics_of(study.user_attrs),
                                   [d.name == "MAXIMIZE" for d in study.directions], records)
            parts.append(_pareto_html(front))
            figures.append(("Pareto front", "Every design's mean on the first two objectives "
                            "over its seeds (bars: 95% CI); the front's designs joined; ★ a "
                            "searched design that dominates a baseline significantly; grey: "
                            "baselines.", _plots.front(front)))
        else:
            parts.append(_verdict_html(verdict))
            parts.append(_ranking_html(verdict, runs))
        if not several and any(d.n > 1 for d in verdict.ranking):
            from losstune.report import plots as _plots

            figures.append(("Ranking over seeds", "Mean and 95% confidence interval across "
                            "seeds, designs with the most seeds first; ★ the verdict's winner "
                            "when it beats a baseline significantly.",
                            _plots.confirmation(_ranking_rows(verdict), metric)))
        parts.append(_leaderboard_html(_info.leaderboard_info(trials, maximize, summary.task),
                                       metric, summary.task))
        figures.extend(_figures(study, trials, maximize, metric,
                                _info.by_verdict(verdict, trials)))
    plots_html, data_html = _figures_html(figures)
    parts.append(plots_html)
    template = Template(resources.files("losstune.report").joinpath("template.html").read_text())
    return template.substitute(
        title=esc(f"losstune report: {study.study_name}"),
        body="\n".join(parts), figure_data=data_html,
        plotlyjs=plotly.offline.get_plotlyjs(),
        generated=esc(f"generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by losstune "
                      f"{__version__}"))


def _ranking_rows(verdict: Any) -> list[Any]:
    """Rows for the ranking figure (design, mean, CI, baseline, significant)."""
    from types import SimpleNamespace

    rows = []
    for i, d in enumerate(verdict.ranking[:12]):
        low, high = d.ci if d.ci else (d.mean, d.mean)
        rows.append(SimpleNamespace(design=f"{d.words} ({d.n} seed{'s' if d.n != 1 else ''})",
                                    mean=d.mean, ci_low=low, ci_high=high,
                                    baseline=d.baseline is not None,
                                    significant=i == 0 and verdict.significant))
    return rows


def _summary_html(s: _info.Summary, metrics: Sequence[str] = (),
                  maximize: Sequence[bool] = ()) -> str:
    """The study in a few lines; ``metrics``, ``maximize``: its objectives, when several."""
    if len(metrics) > 1:
        objective = ("Objectives", " and ".join(
            f"{m} ({'maximised' if up else 'minimised'})" for m, up in zip(metrics, maximize))
            + " on the validation split")
    else:
        objective = ("Objective", f"{s.metric} on the validation split "
                                  f"({'maximised' if s.maximize else 'minimised'})")
    return f"""<section class="summary">
<h1>{esc(s.study)}</h1>
<dl>
<dt>Task</dt><dd>{esc(s.task)}</dd>
<dt>Data</dt><dd>{esc(s.dataset)}</dd>
<dt>{objective[0]}</dt><dd>{esc(objective[1])}</dd>
<dt>Budget</dt><dd>{esc(s.budget)}</dd>
<dt>Trained</dt><dd>{esc(s.done)}</dd>
</dl>
</section>"""


def _pareto_html(v: Any) -> str:
    """Several objectives: the sentence, the front (means and CIs over seeds), and each
    searched front design against each baseline on every objective."""
    from losstune import pareto

    cls = "verdict significant" if v.significant else "verdict"
    knee = pareto.knee(v)
    winners = {m.key for m in v.winners}
    head = "".join(f"<th>{esc(m)} ({'max' if up else 'min'})</th>"
                   for m, up in zip(v.metrics, v.maximize))
    rows = []
    for m in v.front:
        cells = "".join(f"<td>{d.mean:.4f}" + (f" [{d.ci[0]:.4f}, {d.ci[1]:.4f}]" if d.ci
                                                else "") + "</td>" for d in m.per_objective)
        mark = ("★ " if m.key in winners else "") + ("knee" if knee and m.key == knee.key
                                                      else "")
        rows.append(f"<tr><td>{mark}</td><td>{esc(m.words)}"
                    f"{' (baseline)' if m.baseline else ''}</td><td>{m.n}</td>{cells}</tr>")
    tests = []
    for d in v.dominance:
        for metric, c in zip(v.metrics, d.comparisons):
            p = "—" if c.p is None else f"{c.p:.3g}"
            p_adj = "—" if c.p_adjusted is None else f"{c.p_adjusted:.3g}"
            seeds = f"{c.seeds} fresh" if c.fresh else str(c.seeds)
            tests.append(f"<tr><td>{esc(d.design.words)}</td><td>{esc(d.baseline.words)}</td>"
                         f"<td>{esc(metric)}</td><td>{seeds}</td><td>{_signed(c.diff)}</td>"
                         f"<td>{p}</td><td>{p_adj}</td><td>{esc(c.outcome)}</td></tr>")
    notes = "".join(f'<p class="warning">{esc(n)}.</p>' for n in v.notes)
    table = (f"<table><tr><th></th><th>design on the front</th><th>seeds</th>{head}</tr>"
             + "".join(rows) + "</table>")
    if tests:
        table += ("<p>Each searched design on the front against each baseline, on every "
                  "objective: paired tests across seeds (design − baseline), Holm across all "
                  "of them; it dominates a baseline when every objective is significantly in "
                  "its favour.</p><table><tr><th>design</th><th>baseline</th><th>objective"
                  "</th><th>paired seeds</th><th>difference</th><th>p</th><th>p (Holm)</th>"
                  "<th>outcome</th></tr>" + "".join(tests) + "</table>")
    return (f'<section class="{cls}"><h2>Verdict</h2><p class="sentence">{esc(v.sentence)}.'
            f"</p>{notes}{table}<p><code>losstune export --pick knee</code> (or an "
            "objective's name) writes one design of the front.</p></section>")


def _verdict_html(v: Any) -> str:
    """The verdict: one sentence, the winner, and its comparison with every baseline."""
    w = v.winner
    cls = "verdict significant" if v.significant else "verdict"
    winner = ""
    if w is not None:
        ci = f", 95% CI [{w.ci[0]:.4f}, {w.ci[1]:.4f}]" if w.ci else ""
        fresh = (f"; {w.fresh_mean:.4f} over {len(w.fresh)} fresh seeds" if w.fresh else "")
        winner = (f"<p>Winner: <strong>{esc(w.words)}</strong> — mean {esc(v.metric)} "
                  f"{w.mean:.4f}{ci} over the {w.n} seed{'s' if w.n != 1 else ''} that "
                  f"picked it{fresh}{' (a baseline)' if w.baseline else ''}. <code>losstune "
                  "export</code> writes this design.</p>")
    warning = ""
    if w is not None and w.n < 2:
        warning = ('<p class="warning">This ranking is <strong>single-seed</strong>: each '
                   "design was trained once, on one data split, and differences of a few "
                   "hundredths are often noise. Racing (on by default) or <code>losstune confirm"
                   f" {esc(v.study)}</code> adds seeds, so that designs can be compared with a "
                   "paired test.</p>")
    rows = []
    for c in v.comparisons:
        ci = f"[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]" if c.ci else "—"
        p = "—" if c.p is None else f"{c.p:.3g}"
        p_adj = "—" if c.p_adjusted is None else f"{c.p_adjusted:.3g}"
        seeds = f"{c.seeds} fresh" if c.fresh else str(c.seeds)
        rows.append(f"<tr><td>{esc(c.baseline)}</td><td>{seeds}</td><td>{_signed(c.diff)}</td>"
                    f"<td>{ci}</td><td>{p}</td><td>{p_adj}</td><td>{esc(c.outcome)}</td></tr>")
    table = ""
    if rows:
        if v.fresh_test:
            picked = (f"The winner was picked on seeds {esc(_seed_list(v.picked_on))} (search "
                      f"and racing) and tested on fresh seeds {esc(_seed_list(v.tested_on))}, "
                      "on which no design was picked, so its p-values are not inflated by the "
                      "pick (the winner's curse). <code>losstune confirm --test-seeds N</code> "
                      "adds fresh seeds.")
        else:
            picked = ("The winner was chosen on the same seeds it is tested on, so its p-values "
                      "are optimistic; add fresh seeds (<code>losstune confirm --test-seeds N"
                      "</code>) before a claim that must generalise.")
        table = f"""<table id="comparisons"><thead><tr><th>baseline</th>
<th>paired seeds</th><th>winner − baseline ({esc(v.metric)})</th><th>95% CI</th><th>p</th>
<th>p (Holm)</th><th>outcome</th></tr></thead><tbody>{''.join(rows)}</tbody></table>
<p class="caption">Paired t-test across the seeds both designs have (seed <em>i</em> is the same
data split, initialisation and batch order for every design), two-sided (the exact sign test when
every seed gives the same difference); p-values adjusted with Holm's method across the
comparisons with the baselines; significant at p (Holm) &lt; {v.alpha:g}.
The {esc(v.metric)} is {'maximised' if v.maximize else 'minimised'}. A verdict holds for this data,
this model and this budget. {picked}</p>"""
    notes = "".join(f'<p class="warning">{esc(n)}.</p>' for n in v.notes)
    return f"""<section class="{cls}" id="verdict"><h2>Verdict</h2>
<p class="sentence">{esc(v.sentence)}.</p>{notes}
{winner}{warning}{table}</section>"""


def _seed_list(indices: list[int]) -> str:
    return ", ".join(str(i) for i in indices)


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def _ranking_html(v: Any, runs: Any | None) -> str:
    body = []
    for i, d in enumerate(v.ranking, start=1):
        badge = ' <span class="badge">baseline</span>' if d.baseline else ""
        star = ' <span class="star" title="the verdict\'s winner, significant">★</span>' \
            if i == 1 and v.significant else ""
        ci = f"[{d.ci[0]:.4f}, {d.ci[1]:.4f}]" if d.ci else "—"
        fresh = f"{len(d.fresh)}: {d.fresh_mean:.4f}" if d.fresh else "—"
        body.append(f"<tr><td>{i}</td><td>{esc(d.words)}{badge}{star}</td><td>{d.n}</td>"
                    f"<td>{d.mean:.4f}</td><td>{ci}</td><td>{fresh}</td>"
                    f"<td>{_fmt(d.test_mean)}</td>"
                    f"<td>{esc(', '.join(str(n) for n in d.trials[:5]))}</td></tr>")
    where = (f" Runs on seeds other than the search's are in the companion study "
             f"<code>{esc(runs.study_name)}</code>.") if runs is not None else ""
    return f"""<section><h2>Designs over seeds</h2>
<p class="caption">Every distinct design, those with the most seeds first, then by mean
validation {esc(v.metric)} over the search and racing seeds. Racing gives more seeds only to designs
that stay within the run noise of the best; a design sampled again is not trained again on a seed it
has. 95% confidence interval from Student's t. The fresh seeds (the winner and the baselines,
after the race) are the verdict's test, and do not rank.{where}</p>
<table class="sortable" id="ranking"><thead><tr><th>#</th><th>loss design</th>
<th>seeds</th><th>mean {esc(v.metric)} (val)</th><th>95% CI</th>
<th>fresh seeds: mean (val)</th><th>mean {esc(v.metric)} (test)</th>
<th>search trials</th></tr></thead><tbody>{''.join(body)}</tbody></table></section>"""


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
    return f"""<section><h2>Search trials</h2>
<p class="caption">Every complete search trial (one run each, on the study's own seed), best
first: the sampler's view. Single runs rank noise as often as signal; the verdict above uses the
designs' means over seeds. Test-split figures are shown for the top five only; the search never
saw them.</p>
<table id="leaderboard" class="sortable"><thead><tr>{th}</tr></thead>
<tbody>{''.join(body)}</tbody></table></section>"""


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


def save_to_dashboard(study: Any, storage: Any = None) -> list[str]:
    """Save the report's key figures with ``optuna_dashboard.save_plotly_graph_object``, and
    the verdict as the study's note (``save_note``), the same sentence every output shows."""
    from optuna_dashboard import save_note, save_plotly_graph_object

    trials = study.get_trials(deepcopy=False)
    if not any(t.state.name == "COMPLETE" for t in trials):
        return []
    if len(study.directions) > 1:  # the note only: the figures rank by one objective
        from losstune.stored import pareto_verdict

        save_note(study, pareto_markdown(pareto_verdict(study, storage)))
        return []
    from losstune.stored import study_verdict

    verdict = study_verdict(study, storage)
    save_note(study, verdict_markdown(verdict))
    maximize = study.directions[0].name == "MAXIMIZE"
    metric = results.metrics_of(study.user_attrs)[0]
    saved = []
    for title, _, fig in _figures(study, trials, maximize, metric,
                                  _info.by_verdict(verdict, trials)):
        if title in DASHBOARD_FIGURES and not isinstance(fig, str):
            fig.update_layout(title=dict(text=esc(title), x=0.01))
            saved.append(save_plotly_graph_object(study, fig,
                                                  graph_object_id=DASHBOARD_FIGURES[title]))
    return saved


def pareto_markdown(v: Any) -> str:
    """A study with several objectives: its verdict as the dashboard's study note."""
    lines = ["### Verdict", "", v.sentence + ".", "", *[f"> ⚠ {n}." for n in v.notes], "",
             "| design on the front | seeds | " + " | ".join(v.metrics) + " |",
             "|---|---|" + "---|" * len(v.metrics)]
    for m in v.front:
        lines.append(f"| {m.words}{' (baseline)' if m.baseline else ''} | {m.n} | "
                     + " | ".join(f"{x:.4g}" for x in m.means) + " |")
    if v.dominance:
        lines += ["", "| design | baseline | dominates | p (Holm) per objective |",
                  "|---|---|---|---|"]
        for d in v.dominance:
            ps = ", ".join(f"{metric} {'—' if c.p_adjusted is None else f'{c.p_adjusted:.3g}'}"
                           for metric, c in zip(v.metrics, d.comparisons))
            lines.append(f"| {d.design.words} | {d.baseline.words} | "
                         f"{'yes' if d.dominates else 'no'} | {ps} |")
    lines += ["", "Paired t-tests across seeds on every objective, Holm across designs, "
              "baselines and objectives; `losstune show STUDY -f json` has the same figures."]
    return "\n".join(lines)


def verdict_markdown(v: Any) -> str:
    """The verdict as the dashboard's study note."""
    lines = ["### Verdict", "", v.sentence + ".", "", *[f"> ⚠ {n}." for n in v.notes], "",
             *([f"Trained: {v.tally.words()}.", ""] if v.tally else [])]
    if v.comparisons:
        lines += ["| baseline | paired seeds | winner − baseline | 95% CI | p | p (Holm) | "
                  "outcome |", "|---|---|---|---|---|---|---|"]
        for c in v.comparisons:
            ci = f"[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]" if c.ci else "—"
            lines.append(f"| {c.baseline} | {c.seeds}{' fresh' if c.fresh else ''} | "
                         f"{_signed(c.diff)} | {ci} | "
                         f"{'—' if c.p is None else f'{c.p:.3g}'} | "
                         f"{'—' if c.p_adjusted is None else f'{c.p_adjusted:.3g}'} | "
                         f"{c.outcome} |")
    seeds = (f"the winner was picked on seeds {_seed_list(v.picked_on)} and tested on fresh "
             f"seeds {_seed_list(v.tested_on)}" if v.fresh_test
             else "the winner was tested on the seeds that picked it")
    lines += ["", f"Paired t-test across seeds, Holm-adjusted; {seeds}; `losstune show STUDY -f "
              "json` has the same figures."]
    return "\n".join(lines)


def write(study_name: str, storage_url: str, output: Path | None = None) -> Path:
    """Build the report of a stored study (with its replicate runs, if any) and write it; the
    path is checked first (no symbolic link is written through, the default name is visible)."""
    from losstune.paths import check_output_path, default_report_path, write_output
    from losstune.quiet import quiet_optuna
    from losstune.stored import load_existing, runs_study
    from losstune.storage import open_storage

    quiet_optuna()
    default = output is None
    output = Path(output) if output is not None else default_report_path(study_name)
    check_output_path(output, create_folder=default)
    study = load_existing(storage_url, study_name)
    storage = open_storage(storage_url, heartbeat=False, create=False)
    write_output(output, build(study, runs_study(study, storage, create=False)),
                 create_folder=default)
    import sqlalchemy.exc

    try:
        save_to_dashboard(study, storage)
    except sqlalchemy.exc.OperationalError:  # a read-only database: the report is what counts
        pass
    return output
