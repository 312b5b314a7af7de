"""Reports: figure data from pure functions, escaping, empty studies, confirmation statistics."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from losstune.cli import main
from losstune.report import _info, build
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


def test_summary_names_best_design_and_lift_over_best_baseline():
    s = _info.summary_info("s", {"task": "multiclass", "objective": ["macro_f1"],
                                 "spec": {"n_trials": 6, "training": {"epochs": 3}}},
                           TRIALS, maximize=True)
    assert s.best_design == "focal γ=1.0" and s.best_value == 0.90
    assert s.baseline_value == 0.85 and s.lift == pytest.approx(0.05)
    assert s.counts == {"complete": 4, "pruned": 1, "fail": 1, "running": 0}
    assert s.budget == "6 trials, 3 epochs per trial"
    low = _info.summary_info("s", {}, TRIALS, maximize=False)  # for a loss-like metric
    assert low.best_value == 0.70 and low.lift == pytest.approx(0.80 - 0.70)


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
    info = _info.schedules_info([t], True)
    assert info[0]["values"] == pytest.approx([0.0, 0.25, 0.5])


def confirm_trial(key, seed, value, baseline=None):
    return trial(value, "focal", baseline=baseline, design_key=key, seed_index=seed,
                 **{"test.macro_f1": value - 0.01})


def test_confirmation_ci_and_paired_test():
    better = [0.80, 0.84, 0.78, 0.82, 0.86]
    base = [v - 0.05 + d for v, d in zip(better, [0.0, 0.01, -0.01, 0.005, 0.0])]
    same = [v + d for v, d in zip(base, [0.02, -0.02, 0.01, -0.01, 0.0])]
    trials = ([confirm_trial("A", i, v) for i, v in enumerate(better)]
              + [confirm_trial("B", i, v, baseline="b") for i, v in enumerate(base)]
              + [confirm_trial("C", i, v) for i, v in enumerate(same)])
    rows = _info.confirm_info(trials, True, "macro_f1")
    assert [r.design for r in rows][0] == "focal γ=1.0" and rows[0].n == 5
    a = rows[0]
    assert a.mean == pytest.approx(sum(better) / 5)
    assert a.ci_low < a.mean < a.ci_high
    from scipy import stats

    sd = stats.tstd(better)
    assert a.ci_high - a.mean == pytest.approx(stats.t.ppf(0.975, 4) * sd / 5 ** 0.5)
    assert a.beats_baseline and a.p_value < 0.001
    c = next(r for r in rows if r.mean == pytest.approx(sum(same) / 5))
    assert not c.beats_baseline and c.p_value > 0.05  # within noise of the baseline
    assert a.test_mean == pytest.approx(a.mean - 0.01)


def _study(name, trials, direction="maximize"):
    study = optuna.create_study(study_name=name, direction=direction)
    study.set_user_attr("objective", ["macro_f1"])
    study.set_user_attr("task", "multiclass")
    for t in trials:
        study.add_trial(t)
    return study


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
    companion = optuna.load_study(study_name="tiny:confirm", storage=url)
    assert companion.user_attrs["parent"] == "tiny"
    runs = companion.trials
    designs = {t.user_attrs["design_key"] for t in runs}
    assert len(designs) == 3  # 2 baselines + the best other design
    assert len(runs) == 6 and {t.user_attrs["seed_index"] for t in runs} == {0, 1}
    assert sum(1 for t in runs if t.user_attrs.get("baseline")) == 4
    page = out.read_text()
    assert "Confirmed ranking (2 seeds)" in page and "single-seed" not in page
    assert "paired t-test" in page
    # Running it again adds nothing: every run is there already.
    CliRunner().invoke(main, ["confirm", "tiny", "--storage", url, "--top", "1", "--seeds", "2"],
                       catch_exceptions=False)
    assert len(optuna.load_study(study_name="tiny:confirm", storage=url).trials) == 6


def test_single_seed_report_says_so_and_is_self_contained(finished, tmp_path):
    url = copy_db(finished[1], tmp_path)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "tiny", "--storage", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "single-seed" in page
    assert "<script src=" not in page and "<link" not in page  # nothing fetched; see test_browser
    assert page.count('class="plot"') >= 6
    study = optuna.load_study(study_name="tiny", storage=url)
    assert study.best_trial.user_attrs["loss_words"] in page.replace("&#x27;", "'")
