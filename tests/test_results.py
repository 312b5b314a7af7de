"""The verdict on synthetic records: paired tests equal scipy's, Holm's adjustment, the direction
of the metric, and no claim without significance."""

from __future__ import annotations

import json

import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats

from losstune import results

DIST = {"loss": CategoricalDistribution(["cross_entropy", "focal", "class_balanced", "huber",
                                         "mse"])}


def run(family, value, seed=0, baseline=None, replicate=False, number=0, **params):
    desc = {"family": family, "params": {**params, "from_logits": True}}
    attrs = {"family": family, "loss": json.dumps(desc), "loss_words": f"{family} {params}",
             "seed_index": seed}
    if baseline:
        attrs["baseline"] = baseline
    t = create_trial(state=TrialState.COMPLETE, value=value, params={"loss": family},
                     distributions=DIST, user_attrs=attrs)
    t.number = number
    return results.RunRecord.from_trial(t, replicate=replicate)


def design_runs(family, values, baseline=None, **params):
    return [run(family, v, seed=i, baseline=baseline, replicate=i > 0, **params)
            for i, v in enumerate(values)]


WIN = [0.80, 0.84, 0.78, 0.82, 0.86]
CE = [v - 0.05 + d for v, d in zip(WIN, [0.0, 0.01, -0.01, 0.005, 0.0])]     # clearly worse
CB = [v + d for v, d in zip(WIN, [-0.02, 0.015, -0.01, 0.01, -0.02])]       # within noise


def test_paired_p_values_and_intervals_equal_scipy():
    runs = (design_runs("focal", WIN, gamma=1.0) + design_runs("cross_entropy", CE, baseline="ce")
            + design_runs("class_balanced", CB, baseline="cb", beta=0.99))
    v = results.verdict("s", "macro_f1", True, runs)
    assert v.winner.family == "focal" and v.winner.n == 5
    by = {c.baseline_key.split("{")[0]: c for c in v.comparisons}
    ce = stats.ttest_rel(WIN, CE)
    assert by["cross_entropy"].p == pytest.approx(ce.pvalue)
    assert by["cross_entropy"].ci == pytest.approx(tuple(ce.confidence_interval(0.95)))
    assert by["cross_entropy"].diff == pytest.approx(sum(WIN) / 5 - sum(CE) / 5)
    assert by["class_balanced"].p == pytest.approx(stats.ttest_rel(WIN, CB).pvalue)
    # The winner's mean and its Student-t interval.
    assert v.winner.mean == pytest.approx(sum(WIN) / 5)
    half = stats.t.ppf(0.975, 4) * stats.sem(WIN)
    assert v.winner.ci == pytest.approx((v.winner.mean - half, v.winner.mean + half))
    # Holm over the two comparisons, and the sentence says exactly what holds.
    assert by["cross_entropy"].significant and not by["class_balanced"].significant
    assert v.significant
    assert v.sentence.startswith("focal {'gamma': 1.0} is better than cross_entropy")
    assert "not significantly different from class_balanced" in v.sentence
    data = v.to_dict()
    assert data["verdict"]["significant"] is True
    assert {c["baseline_design"]["family"] for c in data["verdict"]["comparisons"]} == {
        "cross_entropy", "class_balanced"}
    assert data["verdict"]["winner"]["seeds"] == 5 and len(data["verdict"]["winner"]["ci"]) == 2


def test_holm_adjustment_order_and_monotonicity():
    p = [0.01, 0.04, 0.03, 0.005]
    adjusted = results.holm(p)
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06.
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    order = sorted(range(4), key=lambda i: p[i])
    assert all(adjusted[order[i]] <= adjusted[order[i + 1]] for i in range(3))
    assert results.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1, monotone
    assert all(a >= b for a, b in zip(adjusted, p))


def test_holm_can_take_a_star_away_that_one_comparison_would_give():
    # Against CE alone p < 0.05; a second, weaker comparison makes Holm double the smaller p.
    win = [0.80, 0.82, 0.81, 0.83, 0.80]
    ce = [w - d for w, d in zip(win, [0.03, 0.005, 0.02, 0.04, 0.01])]
    alone = results.verdict("s", "macro_f1", True, design_runs("focal", win, gamma=1.0)
                            + design_runs("cross_entropy", ce, baseline="ce"))
    p = stats.ttest_rel(win, ce).pvalue
    assert 0.025 < p < 0.05 and alone.significant
    cb = [0.79, 0.83, 0.80, 0.82, 0.80]
    both = results.verdict("s", "macro_f1", True, design_runs("focal", win, gamma=1.0)
                           + design_runs("cross_entropy", ce, baseline="ce")
                           + design_runs("class_balanced", cb, baseline="cb", beta=0.9))
    ce_cmp = next(c for c in both.comparisons if c.baseline_key.startswith("cross_entropy"))
    assert ce_cmp.p == pytest.approx(p) and ce_cmp.p_adjusted == pytest.approx(2 * p)
    assert not both.significant
    assert both.sentence.startswith("no design is significantly better than the baselines")


def test_direction_for_a_minimised_metric():
    mae = [1.00, 1.10, 0.95, 1.05, 1.02]          # huber: lower is better
    mse = [v + 0.2 + d for v, d in zip(mae, [0.01, -0.01, 0.02, 0.0, 0.01])]
    v = results.verdict("r", "mae", False, design_runs("huber", mae, delta=1.0)
                        + design_runs("mse", mse, baseline="mse"))
    assert v.winner.family == "huber"
    (c,) = v.comparisons
    assert c.diff == pytest.approx(-0.206) and c.better and c.significant
    assert c.to_dict()["direction"] == "better"
    assert "is better than mse {} by -0.206 mae" in v.sentence
    # The same numbers read as a maximised metric: MSE wins, and huber is worse.
    flipped = results.verdict("r", "r2", True, design_runs("huber", mae, delta=1.0)
                              + design_runs("mse", mse, baseline="mse"))
    assert flipped.winner.family == "mse" and not flipped.significant


def test_no_claim_when_intervals_overlap_zero_or_single_seed():
    v = results.verdict("s", "macro_f1", True, design_runs("focal", WIN, gamma=1.0)
                        + design_runs("class_balanced", CB, baseline="cb", beta=0.99))
    (c,) = v.comparisons
    assert c.ci[0] < 0 < c.ci[1] and not c.significant and not v.significant
    assert " is better than" not in v.sentence
    single = results.verdict("s", "macro_f1", True, [run("focal", 0.95, gamma=1.0),
                                                     run("cross_entropy", 0.80, baseline="ce",
                                                         number=1)])
    assert single.winner.n == 1 and single.comparisons[0].p is None
    assert not single.significant and " is better than" not in single.sentence
    assert "single-seed" in single.sentence


def test_ranking_puts_designs_with_more_seeds_first_and_ignores_repeats():
    lucky = run("focal", 0.99, gamma=3.0, number=7)
    repeat = results.RunRecord(**{**lucky.__dict__, "number": 8, "duplicate_of": 7})
    runs = design_runs("cross_entropy", CE, baseline="ce") + [lucky, repeat]
    v = results.verdict("s", "macro_f1", True, runs)
    assert v.winner.family == "cross_entropy" and v.ranking[1].n == 1
    assert v.ranking[1].trials == [7, 8]  # both proposals listed, one run counted
    assert "the best is the baseline cross_entropy" in v.sentence


def test_design_key_ignores_data_fitted_values():
    a = {"family": "class_balanced", "params": {"beta": 0.99, "class_counts": [1, 2],
                                                "from_logits": True}}
    b = {"family": "class_balanced", "params": {"beta": 0.99, "class_counts": [5, 9]}}
    assert results.design_key(a) == results.design_key(b)
    assert results.design_key(a) != results.design_key(
        {"family": "class_balanced", "params": {"beta": 0.999}})
    assert results.design_key(a, {"learning_rate": 0.01}) != results.design_key(a)


def test_identical_differences_use_the_sign_test_not_a_zero_p():
    two = results.verdict("s", "accuracy", True, design_runs("focal", [0.80, 0.83], gamma=1.0)
                          + design_runs("cross_entropy", [0.79, 0.82], baseline="ce"))
    (c,) = two.comparisons
    assert c.test == "sign test" and c.p == pytest.approx(0.5) and not two.significant
    five = [0.80, 0.83, 0.81, 0.79, 0.82]
    v = results.verdict("s", "accuracy", True, design_runs("focal", five, gamma=1.0)
                        + design_runs("cross_entropy", [x - 0.01 for x in five], baseline="ce"))
    assert v.comparisons[0].p == pytest.approx(stats.binomtest(5, 5, 0.5).pvalue)  # 0.0625


def test_a_baseline_winner_is_no_significant_finding():
    runs = (design_runs("cross_entropy", WIN, baseline="ce")
            + design_runs("class_balanced", CE, baseline="cb", beta=0.99)
            + design_runs("focal", [0.5], gamma=3.0))
    v = results.verdict("s", "macro_f1", True, runs)
    assert v.winner.baseline == "ce" and v.comparisons[0].significant  # beats the other baseline
    assert not v.significant and not v.sentence.startswith("cross_entropy is better")
    assert v.sentence.startswith("no searched design is significantly better")
    # ... and the sentence says what the baselines' own tests found, as the table does: one
    # story in every view.
    assert "; against the other baselines it is better than class_balanced" in v.sentence
    assert v.comparisons[0].between_baselines
    assert v.comparisons[0].outcome == "baseline vs baseline: significant, better"


def test_no_common_seed_is_not_compared_and_failed_seeds_are_noted():
    focal = design_runs("focal", WIN, gamma=1.0)
    ce = [run("cross_entropy", 0.7, seed=9, baseline="ce", replicate=True, number=50)]
    failed = run("focal", 0.0, seed=5, replicate=True, number=60, gamma=1.0)
    failed = results.RunRecord(**{**failed.__dict__, "state": "fail", "values": ()})
    v = results.verdict("s", "macro_f1", True, focal + ce + [failed])
    (c,) = v.comparisons
    assert c.diff is None and c.to_dict()["direction"] == "not compared" and c.p is None
    assert "no baseline run on the same seeds" in v.sentence
    assert v.winner.failed == {5}
    assert v.notes[0] == "focal {'gamma': 1.0}: the run on seed 5 failed; its mean leaves it out"
    assert "not tested against every baseline" in v.notes[1] and len(v.notes) == 2
    assert v.to_dict()["leaderboard"][0]["failed_seeds"] == [5]


def _fresh(family, values, baseline=None, **params):
    """Runs on fresh seeds 100, 101, ... (after the race)."""
    return [run(family, v, seed=100 + i, baseline=baseline, replicate=True, number=200 + i,
                **params) for i, v in enumerate(values)]


def test_the_verdict_tests_on_fresh_seeds_only_once_the_winner_has_them():
    """Ranked on the racing seeds, tested on the fresh ones: every comparison, with one Holm
    family. A baseline without fresh runs is not compared on the seeds that picked the winner
    (that would put an optimistic test into the family); the note says what is missing."""
    fresh_win = [0.85, 0.86, 0.84, 0.87, 0.85, 0.86]
    fresh_ce = [v - 0.04 + d for v, d in zip(fresh_win, [0.0, 0.01, -0.01, 0.0, 0.005, 0.0])]
    runs = (design_runs("focal", WIN, gamma=1.0) + _fresh("focal", fresh_win, gamma=1.0)
            + design_runs("cross_entropy", CE, baseline="ce")
            + _fresh("cross_entropy", fresh_ce, baseline="ce")
            + design_runs("class_balanced", CB, baseline="cb", beta=0.99))  # no fresh runs
    v = results.verdict("s", "macro_f1", True, runs)
    assert v.winner.family == "focal" and v.winner.n == 5 and v.winner.mean == pytest.approx(
        sum(WIN) / 5)  # fresh values never rank
    ce, cb = sorted(v.comparisons, key=lambda c: c.baseline)[::-1]
    assert ce.baseline.startswith("cross_entropy") and ce.fresh and ce.seeds == 6
    assert ce.p == pytest.approx(stats.ttest_rel(fresh_win, fresh_ce).pvalue)
    assert cb.fresh and cb.diff is None and cb.p is None  # not tested on the racing seeds
    assert ce.p_adjusted == pytest.approx(ce.p)  # Holm over the one tested comparison
    assert v.tested_on == list(range(100, 106)) and v.picked_on == [0, 1, 2, 3, 4]
    assert v.fresh_test and "6 fresh seeds" in v.sentence
    assert any("not tested against every baseline" in n for n in v.notes)


def test_a_significant_loss_is_said_even_when_nothing_wins():
    """The searched winner of the race, significantly worse than a baseline on the fresh seeds:
    "no design is significantly better" and also that it is worse."""
    fresh_win = [0.80, 0.81, 0.79, 0.80, 0.82, 0.80, 0.81, 0.79]
    fresh_ce = [v + 0.03 + d for v, d in zip(fresh_win, [0.0, 0.01, -0.01, 0.0, 0.005, 0.0,
                                                          0.002, -0.003])]
    runs = (design_runs("focal", WIN, gamma=1.0) + _fresh("focal", fresh_win, gamma=1.0)
            + design_runs("cross_entropy", CE, baseline="ce")
            + _fresh("cross_entropy", fresh_ce, baseline="ce"))
    v = results.verdict("s", "macro_f1", True, runs)
    (c,) = v.comparisons
    assert c.significant and not c.better and not v.significant
    assert v.sentence.startswith("no design is significantly better")
    assert "is worse than cross_entropy" in v.sentence


def test_the_tally_counts_designs_trainings_and_repeats_each_once():
    """What the terminal, the report, JSON and the dashboard note all say of a study."""
    from dataclasses import replace

    from losstune.stopping import INTERRUPTED

    runs = design_runs("focal", [0.8, 0.82, 0.81], gamma=2.0)       # 3 trainings
    runs += [run("cross_entropy", 0.7, baseline="ce"),                # 1 training
             replace(run("focal", 0.8, gamma=2.0, number=5), duplicate_of=0),  # a repeat
             run("focal", 0.83, seed=results.FRESH_SEEDS, replicate=True, gamma=2.0),
             replace(run("mse", 0.1), state="pruned"),
             replace(run("huber", 0.1), state="fail", values=()),
             replace(run("huber", 0.1), state="fail", values=(),
                     user_attrs={"error": INTERRUPTED}),
             replace(run("huber", 0.1), state="running", values=())]
    t = results.tally(runs)
    assert (t.designs, t.trainings, t.fresh, t.pruned, t.failed, t.interrupted, t.repeats,
            t.running) == (4, 7, 1, 1, 1, 1, 1, 1)
    assert t.words() == ("4 designs, 7 trainings (1 on fresh seeds, 1 pruned, 1 failed, "
                         "1 interrupted, 1 running); 1 repeat proposal not trained again")
    v = results.verdict("s", "macro_f1", True, runs)
    assert v.to_dict()["counts"] == t.to_dict() and v.tally == t


def test_every_json_field_is_in_the_readme_table():
    """`show -f json`'s fields, at every level, each named in the README's table."""
    import re

    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text()
    table = text.split("### Machine-readable output")[1].split("| field |")[1].split("\n\n")[0]
    named = set(re.findall(r"`([a-z_]+)`", table)) | {
        part for dotted in re.findall(r"`([a-z_.\[\]]+)`", table)
        for part in re.split(r"[.\[\]]+", dotted) if part}
    runs = (design_runs("focal", WIN, gamma=2.0)
            + design_runs("cross_entropy", CE, baseline="cross_entropy"))
    data = results.verdict("s", "macro_f1", True, runs).to_dict()
    keys = set(data) | set(data["verdict"]) | set(data["counts"]) | set(
        data["verdict"]["winner"]) | set(data["verdict"]["comparisons"][0]) | set(
        data["leaderboard"][0])
    assert keys - named == set()
