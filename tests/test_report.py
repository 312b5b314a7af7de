"""Reports: figure data from pure functions, escaping, empty studies, confirmation statistics."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from losstune.cli import main
from losstune.report import build
from losstune.report import info as _info
from tests.conftest import copy_db  # noqa: F401 (fixtures)

DIST = {"loss": CategoricalDistribution(["cross_entropy", "focal"]),
        "focal.gamma": FloatDistribution(0.0, 5.0)}


def trial(value, family="focal", gamma=1.0, baseline=None, state=TrialState.COMPLETE, **attrs):
    params = {"loss": family}
    dists = {"loss": DIST["loss"]}
    if family == "focal":
        params["focal.gamma"], dists["focal.gamma"] = gamma, DIST["focal.gamma"]
    user_attrs = {"family": family, "loss_words": f"{family} γ={gamma}", **attrs}
    if baseline:
        user_attrs["baseline"] = baseline
    return create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                        params=params, distributions=dists, user_attrs=user_attrs)


TRIALS = [trial(0.80, "cross_entropy", baseline="ce"), trial(0.85, gamma=2.0, baseline="focal"),
          trial(0.90, gamma=1.0), trial(0.70, gamma=4.0), trial(None, state=TrialState.PRUNED),
          trial(None, state=TrialState.FAIL)]


def test_summary_counts_and_budget():
    s = _info.summary_info("s", {"task": "multiclass", "objective": ["macro_f1"],
                                 "spec": {"n_trials": 6, "training": {"epochs": 3}}},
                           TRIALS, maximize=True)
    assert s.counts == {"complete": 4, "pruned": 1, "fail": 1, "running": 0}
    # (these trials store no loss description: a design is its family, so 2 designs)
    assert s.done == "2 designs, 6 trainings (1 pruned, 1 failed)"
    assert s.budget == "6 new designs, 3 epochs per training, racing up to 5 seeds per design"
    off = _info.summary_info("s", {"spec": {"n_trials": 6, "racing": False}}, TRIALS, True)
    assert off.budget == "6 new designs"
    # `--n-trials 4` after a first run of the file's 16: the budget is what the runs asked
    asked = _info.summary_info("s", {"spec": {"n_trials": 16, "racing": False},
                                     "new_designs_asked": [16, 4]}, TRIALS, True)
    assert asked.budget == "20 new designs asked (16 + 4 in 2 runs)"


def test_leaderboard_ranks_marks_baselines_and_limits_test_figures():
    rows = _info.leaderboard_info(TRIALS, True, "multiclass", test_for_top=2)
    assert [r["value"] for r in rows] == [0.90, 0.85, 0.80, 0.70]
    assert [r["baseline"] for r in rows] == [False, True, True, False]
    assert rows[0]["test"] is not None and rows[2]["test"] is None


def test_family_values_and_param_presence():
    assert _info.family_values(TRIALS) == {"cross_entropy": [0.80], "focal": [0.85, 0.90, 0.70]}
    assert _info.params_present(TRIALS, ["focal.gamma"]) == 3


def test_schedule_info_draws_weighted_factor_per_epoch():
    desc = {"family": "dynamic", "params": {"w_curriculum": 0.5, "epochs": 3,
                                            "schedule": {"name": "linear", "params": {}}}}
    t = trial(0.9, "cross_entropy", loss=json.dumps(desc))
    info = _info.schedules_info([t])
    assert info[0]["values"] == pytest.approx([0.0, 0.25, 0.5])


def _study(name, trials, direction="maximize"):
    study = optuna.create_study(study_name=name, direction=direction)
    study.set_user_attr("objective", ["macro_f1"])
    study.set_user_attr("task", "multiclass")
    for t in trials:
        study.add_trial(t)
    return study


def test_figures_that_name_a_best_follow_the_verdict():
    """A single lucky search trial (0.95 on seed 0, 0.70 on seeds 1 and 2) is not the winner
    over seeds: the per-class recall names the verdict's winner, and the curves of the top
    designs hold each design once (a repeat proposal of the winner is not a second curve)."""
    from losstune import results

    a = {"design_key": "A", "loss_words": "focal γ=1"}
    b = {"design_key": "B", "loss_words": "focal γ=3"}
    recall, curve = "val.recall_per_class", "curve.val_macro_f1"
    search = _study("verdict-order", [
        trial(0.95, gamma=1.0, seed_index=0, **a, **{recall: [1.0, 0.9], curve: [0.9, 0.95]}),
        trial(0.90, gamma=3.0, seed_index=0, **b, **{recall: [0.5, 0.6], curve: [0.8, 0.9]}),
        trial(0.90, gamma=3.0, seed_index=0, duplicate_of=1, **b, **{curve: [0.8, 0.9]})])
    runs = _study("verdict-order:runs", [
        trial(v, gamma=g, seed_index=i, **d) for v, g, i, d in (
            (0.70, 1.0, 1, a), (0.70, 1.0, 2, a), (0.90, 3.0, 1, b), (0.91, 3.0, 2, b))])
    trials = search.get_trials()
    v = results.verdict("verdict-order", "macro_f1", True,
                        results.records(trials, runs.get_trials()))
    assert v.winner.key == "B"
    order = _info.by_verdict(v, trials)
    assert [t.number for t in order] == [1, 0]
    assert _info.recall_info(order, None)["best_label"] == "winner: focal γ=3"
    assert [c["trial"] for c in _info.curves_info(order, "macro_f1")["val"]] == [1, 0]
    ranked = [t.number for t in _info.ranked(trials, True)]
    assert ranked == [0, 1]  # single trials: the lucky one first, the repeat not a row


def test_user_strings_are_escaped():
    evil = "<script>alert(1)</script>"
    trials = [trial(0.8, "cross_entropy", baseline="ce", loss_words='<img src=x onerror="x()">'),
              trial(0.9, gamma=1.5, loss_words=evil)]
    page = build(_study(evil, trials))
    assert evil not in page and '<img src=x' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Inside embedded figure JSON a "</script>" cannot close the element either.
    assert "</script>alert" not in page.replace("</script>\n", "")


def test_study_without_complete_trials_says_so():
    page = build(_study("empty", [trial(None, state=TrialState.FAIL)]))
    assert "No complete trial" in page and 'class="plot"' not in page


def test_report_of_missing_study_lists_existing(finished):
    _, url, _ = finished
    result = CliRunner().invoke(main, ["report", "nope", "--storage", url])
    assert result.exit_code == 2
    assert "no study 'nope'" in result.output and "studies there: tiny" in result.output


def test_confirm_stores_linked_runs_and_report_ranks_them(confirmed_report):
    url, out = confirmed_report
    companion = optuna.load_study(study_name="tiny:runs", storage=url)
    assert companion.user_attrs["parent"] == "tiny"
    every = companion.trials
    runs = [t for t in every if t.user_attrs["seed_index"] < 100]
    designs = {t.user_attrs["design_key"] for t in runs}
    assert len(designs) == 3  # 2 baselines + the best other design, each on seed 1
    assert len(runs) == 3 and {t.user_attrs["seed_index"] for t in runs} == {1}
    assert all(isinstance(t.user_attrs["source_trial"], int) for t in runs)
    assert sum(1 for t in runs if t.user_attrs.get("baseline")) == 2
    # Then the winner (picked again) and the baselines on 2 fresh seeds: the verdict's test.
    fresh = [t for t in every if t.user_attrs["seed_index"] >= 100]
    assert {t.user_attrs["seed_index"] for t in fresh} == {100, 101}
    assert {t.user_attrs["design_key"] for t in fresh} <= designs and len(fresh) in (4, 6)
    page = out.read_text()
    assert "Designs over seeds" in page and "single-seed" not in page
    assert "Paired t-test" in page and "Holm" in page and "tested on fresh seeds 100, 101" in page
    # Running it again adds nothing: every run is there already.
    CliRunner().invoke(main, ["confirm", "tiny", "--storage", url, "--top", "1", "--seeds", "2",
                              "--test-seeds", "2"], catch_exceptions=False)
    assert len(optuna.load_study(study_name="tiny:runs", storage=url).trials) == len(every)


def test_single_seed_report_says_so_and_is_self_contained(finished, tmp_path):
    url = copy_db(finished[1], tmp_path)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "tiny", "--storage", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "single-seed" in page
    assert "<script src=" not in page and "<link" not in page  # nothing fetched; see test_browser
    # The figures every classification study has (others depend on the designs sampled).
    for title in ("Optimisation history", "Objective by loss family", "Parameter importance",
                  "Validation curves of the top designs", "Per-class recall"):
        assert f"<h3>{title}</h3>" in page
    assert page.count('class="plot"') >= 5
    study = optuna.load_study(study_name="tiny", storage=url)
    assert study.best_trial.user_attrs["loss_words"] in page.replace("&#x27;", "'")


# ------------------------------------------------------------------------------ report figures
FOCAL_DIST = {"focal.gamma": FloatDistribution(0.0, 5.0),
              "focal.alpha": FloatDistribution(0.1, 1.0)}
FAMILIES = CategoricalDistribution(["cross_entropy", "focal", "class_balanced", "dynamic"])


def searched(value, family, **params):
    """A complete trial of ``family`` with the given searched parameters (dots as ``__``)."""
    params = {k.replace("__", "."): v for k, v in params.items()}
    dists = {"loss": FAMILIES}
    for name, v in params.items():
        dists[name] = (FOCAL_DIST.get(name) or (CategoricalDistribution(["a", "b"])
                       if isinstance(v, str) else FloatDistribution(0.0, 1.0)))
    return create_trial(value=value, params={"loss": family, **params}, distributions=dists,
                        user_attrs={"family": family, "loss_words": family})


def test_family_params_info_keeps_each_family_to_its_own_parameters():
    trials = ([searched(0.7 + i / 100, "focal", focal__gamma=0.1 * i, focal__alpha=0.5)
               for i in range(3)]
              + [searched(0.8 + i / 100, "dynamic", dynamic__w_balance=0.2 * i,
                          dynamic__base="a" if i else "b", schedule="a", training__lr=0.1,
                          **({"dynamic__gamma": 0.3} if i == 1 else {})) for i in range(4)]
              + [searched(0.6, "cross_entropy") for _ in range(4)]  # nothing searched
              + [searched(0.9, "class_balanced", class_balanced__beta=0.5) for _ in range(2)]
              + [trial(None, state=TrialState.FAIL)])
    info = {f["family"]: f for f in _info.family_params_info(trials, maximize=True)}
    # No entry for a family without searched parameters, nor for one with too few trials.
    assert set(info) == {"dynamic", "focal"}
    focal = info["focal"]
    assert focal["params"] == ["focal.gamma", "focal.alpha"]
    assert focal["names"] == ["gamma", "alpha"] and len(focal["trials"]) == 3
    assert focal["objective"] == pytest.approx([0.72, 0.71, 0.70])  # best first
    assert focal["rows"] == [pytest.approx([0.2, 0.5]), pytest.approx([0.1, 0.5]), [0.0, 0.5]]
    assert all(len(row) == 2 for row in focal["rows"])  # a focal row holds focal values only
    dynamic = info["dynamic"]
    # dynamic.gamma was searched by one trial only: left out, not drawn at a made-up value.
    assert dynamic["params"] == ["dynamic.w_balance", "dynamic.base"]
    assert dynamic["left_out"] == ["gamma"] and dynamic["kinds"] == ["linear", "categorical"]
    assert all(p.startswith("dynamic.") for p in dynamic["params"])  # no schedule, training.*
    lows = _info.family_params_info(trials, maximize=False, min_trials=2)
    assert [f["family"] for f in lows] == ["class_balanced", "dynamic", "focal"]
    assert lows[2]["objective"] == pytest.approx([0.70, 0.71, 0.72])  # minimising: lowest first


def test_family_params_figure_draws_only_the_familys_axes():
    from losstune.report import plots as _plots

    trials = [searched(0.7 + i / 100, "focal", focal__gamma=0.1 * i, focal__alpha=0.5 + i / 10)
              for i in range(3)]
    [focal] = _info.family_params_info(trials, maximize=True)
    fig = _plots.family_params(focal, "macro_f1")
    assert [d.label for d in fig.data[0].dimensions] == ["γ", "α", "macro_f1"]
    one = dict(focal, params=["focal.gamma"], names=["gamma"], kinds=["linear"],
               rows=[r[:1] for r in focal["rows"]])
    scatter = _plots.family_params(one, "macro_f1").data[0]
    assert scatter.type == "scatter" and list(scatter.x) == pytest.approx([0.2, 0.1, 0.0])


def test_confirmation_plot_shows_every_design_label_whole():
    from types import SimpleNamespace

    from losstune.report import plots as _plots

    long = ("DynamicLoss, base categorical_crossentropy, w_balance = 0.922, w_curriculum = "
            "0.163, schedule cosine(start=0, end=0.338, warmup=0)")
    rows = [SimpleNamespace(design=long, mean=0.86, ci_low=0.83, ci_high=0.89, baseline=False,
                            significant=True),
            SimpleNamespace(design="cross-entropy", mean=0.81, ci_low=0.70, ci_high=0.92,
                            baseline=True, beats_baseline=False)]
    fig = _plots.confirmation(rows, "macro_f1")
    ticks = [t.replace("<br>", " ") for t in fig.layout.yaxis.ticktext]
    assert ticks[0].startswith(f"1. {long}") and "★" in ticks[0]
    assert ticks[1].startswith("2. cross-entropy") and "★" not in ticks[1]
    assert long in fig.data[0].hovertext[0].replace("<br>", " ")
    assert max(len(line) for t in fig.layout.yaxis.ticktext for line in t.split("<br>")) < 60
    assert fig.layout.yaxis.tickvals[0] > fig.layout.yaxis.tickvals[1]  # the best on top


def test_curriculum_figure_names_and_shows_every_line():
    from losstune.report import _figures

    desc = {"family": "dynamic", "params": {"w_curriculum": 0.5, "epochs": 3,
                                            "schedule": {"name": "linear", "params": {}}}}
    study = _study("curriculum", [trial(0.8, "cross_entropy", baseline="ce"),
                                  trial(0.9, "cross_entropy", loss=json.dumps(desc))])
    from losstune import results

    trials = study.trials
    verdict = results.verdict("curriculum", "macro_f1", True, results.records(trials))
    figures = {title: fig for title, _, fig in _figures(study, trials, True, "macro_f1",
                                                        _info.by_verdict(verdict, trials))}
    fig = figures["Schedules of the top designs"]
    assert len(fig.data) == 1  # a single line: plotly would hide its legend by default
    assert fig.data[0].name.startswith("#1 w_curriculum × linear")
    assert all(t.name and t.name.strip() for t in fig.data)
    assert fig.layout.showlegend is True
    from losstune.report import plots as _plots

    unnamed = _plots.lines([{"values": [1, 2]}, {"values": [2, 3], "label": ""}], "t", "y")
    assert all(t.name for t in unnamed.data) and len({t.name for t in unnamed.data}) == 2
