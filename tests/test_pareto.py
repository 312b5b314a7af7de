"""The verdict of a study with several objectives, against hand-computed paired tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from losstune import pareto
from losstune.results import RunRecord


def _run(number: int, key: str, seed: int, values: tuple[float, float],
         baseline: str | None = None) -> RunRecord:
    return RunRecord(number=number, replicate=seed > 0, state="complete", values=values,
                     design_key=key, seed_index=seed, family="f", words=key,
                     description={"family": "f", "params": {"k": key}}, params={},
                     baseline=baseline, duplicate_of=None, train_time_s=None, user_attrs={})


# Objective 0: macro-F1 (maximise); objective 1: seconds (minimise). Five seeds each.
F1 = {"base": [0.80, 0.82, 0.79, 0.81, 0.80],
      "fast_and_good": [0.84, 0.85, 0.83, 0.86, 0.84],   # better on both
      "good_but_slow": [0.86, 0.87, 0.85, 0.88, 0.86],   # better F1, slower
      "worse": [0.70, 0.72, 0.71, 0.69, 0.70]}           # dominated
SECONDS = {"base": [2.0, 2.1, 1.9, 2.0, 2.2],
           "fast_and_good": [1.5, 1.6, 1.4, 1.6, 1.5],
           "good_but_slow": [3.0, 3.2, 2.9, 3.1, 3.0],
           "worse": [2.5, 2.6, 2.4, 2.5, 2.7]}


def _runs(f1=F1, seconds=SECONDS):
    runs, n = [], 0
    for key in f1:
        for seed in range(5):
            runs.append(_run(n, key, seed, (f1[key][seed], seconds[key][seed]),
                             baseline="base" if key == "base" else None))
            n += 1
    return runs


def test_the_front_is_of_means_and_dominance_is_paired_tests_with_holm():
    v = pareto.verdict("s", ["macro_f1", "train_time"], [True, False], _runs())
    assert [m.key for m in v.front] == ["good_but_slow", "fast_and_good"]
    assert {m.key for m in v.others} == {"base", "worse"}
    # The tests, by hand: every searched front design against the baseline on each objective.
    p = {(d, i): stats.ttest_rel(table[d], table["base"]).pvalue
         for d in ("good_but_slow", "fast_and_good") for i, table in enumerate((F1, SECONDS))}
    order = sorted(p, key=p.get)
    holm, running = {}, 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[k]))
        holm[k] = running
    got = {(d.design.key, i): c for d in v.dominance for i, c in enumerate(d.comparisons)}
    for k in p:
        assert got[k].p == pytest.approx(p[k]) and got[k].p_adjusted == pytest.approx(holm[k])
        assert got[k].test == "paired t-test" and got[k].seeds == 5
    assert got[("fast_and_good", 1)].diff == pytest.approx(
        np.mean(SECONDS["fast_and_good"]) - np.mean(SECONDS["base"]))
    by = {d.design.key: d for d in v.dominance}
    assert by["fast_and_good"].dominates and not by["good_but_slow"].dominates
    assert v.significant and [m.key for m in v.winners] == ["fast_and_good"]
    assert "fast_and_good dominates base" in v.sentence and "Holm" in v.sentence
    data = v.to_dict()
    said = data["verdict"]
    assert said["winners"] == ["fast_and_good"] and said["sentence"] == v.sentence
    assert said["dominance"][0]["objectives"]["train_time"]["p_adjusted"] == pytest.approx(
        holm[("good_but_slow", 1)])
    assert said["front"][0]["macro_f1"] == pytest.approx(np.mean(F1["good_but_slow"]))
    assert [r["on_front"] for r in data["leaderboard"]] == [True, True, False, False]
    assert [r["dominates_a_baseline"] for r in said["front"]] == [False, True]


def test_better_on_one_objective_only_is_no_finding():
    seconds = {**SECONDS, "fast_and_good": [2.0, 2.2, 1.9, 2.1, 2.1]}  # as slow as the base
    v = pareto.verdict("s", ["macro_f1", "train_time"], [True, False], _runs(seconds=seconds))
    assert not v.significant and v.winners == []
    assert "no searched design dominates a baseline significantly" in v.sentence


def test_single_seed_designs_are_not_tested_and_the_verdict_says_so():
    runs = [r for r in _runs() if r.seed_index == 0]
    v = pareto.verdict("s", ["macro_f1", "train_time"], [True, False], runs)
    assert not v.significant and all(c.p is None for d in v.dominance for c in d.comparisons)
    assert "nothing tested" in v.sentence and "confirm" in v.notes[0]


def test_the_knee_is_the_front_member_nearest_the_ideal_point():
    # Scaled over the front, good_but_slow sits at F1 1, time 1 and fast_and_good at 0, 0:
    # each is 1 from the ideal (1, 0). A member in the middle of both is nearer.
    mid = [_run(100 + s, "middle", s, (0.855, 1.8)) for s in range(5)]
    v = pareto.verdict("s", ["macro_f1", "train_time"], [True, False], _runs() + mid)
    assert pareto.knee(v).key == "middle"


def test_a_two_objective_study_is_confirmed_shown_and_exported_with_its_verdict(tmp_path):
    """macro-F1 x train time on wine: the search, then `confirm` (seeds for the front's
    searched designs and the baseline, then fresh seeds for them), `show -f json` with the
    dominance tests, the terminal table, and `export --pick` of a front member."""
    import json

    import optuna
    from click.testing import CliRunner

    from losstune import results
    from losstune.cli import main
    from tests.conftest import write_study

    # One weak baseline (focal with α = 0.02 scales the loss, and so the steps, 50-fold
    # down): the searched designs' better F1 puts them on the front, to be tested.
    path = write_study(tmp_path, {"name": "two", "n_trials": 3, "training": {"epochs": 2},
                                  "objective": {"metric": ["macro_f1", "train_time"]},
                                  "baselines": [{"family": "focal",
                                                 "params": {"gamma": 5.0, "alpha": 0.02}}],
                                  "search": {"families": ["focal"]}})
    url = f"sqlite:///{tmp_path / 't.db'}"
    runner = CliRunner()
    searched = runner.invoke(main, ["search", str(path), "--storage", url])
    assert searched.exit_code == 0, searched.output
    assert "Pareto front of the designs' means" in searched.output
    assert "Verdict: " in searched.output
    confirmed = runner.invoke(main, ["confirm", "two", "--storage", url, "--top", "2",
                                     "--seeds", "3", "--test-seeds", "3"])
    assert confirmed.exit_code == 0, confirmed.output
    shown = runner.invoke(main, ["show", "two", "--storage", url, "-f", "json"])
    data = json.loads(shown.output)
    data = {**data, **data["verdict"]}  # the verdict's fields, beside the study's
    assert data["metrics"] == ["macro_f1", "train_time"]
    assert data["directions"] == ["maximize", "minimize"]
    front = data["front"]
    assert front and all(r["on_front"] for r in front)
    searched_front = [r for r in front if r["baseline"] is None]
    baselines = [r for r in data["leaderboard"] if r["baseline"] is not None]
    assert len(baselines) == 1 and searched_front and data["dominance"]
    assert len(data["dominance"]) == len(searched_front) * len(baselines)
    for d in data["dominance"]:  # every objective tested on 3 fresh seeds, Holm-adjusted
        for c in d["objectives"].values():
            assert c["seeds"] == 3 and c["fresh_seeds"] and c["p_adjusted"] >= c["p"]
            assert all(s >= results.FRESH_SEEDS for s in c["seed_indices"])
        assert d["dominates"] == all(c["significant"] and c["direction"] == "better"
                                     for c in d["objectives"].values())
    assert all(r["seeds"] == 3 for r in data["leaderboard"])  # the baseline + 2 searched
    assert "Pareto front of the designs' means" in confirmed.output
    companion = optuna.load_study(study_name="two" + results.RUNS_SUFFIX, storage=url)
    assert all(len(t.values) == 2 for t in companion.trials if t.state.name == "COMPLETE")
    exported = runner.invoke(main, ["export", "two", "--storage", url, "--pick", "train_time",
                                    "-o", str(tmp_path / "b.json")])
    assert exported.exit_code == 0, exported.output
    payload = json.loads((tmp_path / "b.json").read_text())
    fastest = min(front, key=lambda r: r["train_time"])
    assert payload["picked_by"] == "train_time" and payload["description"] == fastest["design"]
    assert payload["verdict"]["sentence"] == data["sentence"]
    # The report and the dashboard's note carry the same verdict.
    reported = runner.invoke(main, ["report", "two", "--storage", url, "-o",
                                    str(tmp_path / "r.html")])
    assert reported.exit_code == 0, reported.output
    html = (tmp_path / "r.html").read_text()
    from losstune.report import esc

    assert esc(data["sentence"]) in html and "<h3>Pareto front</h3>" in html
    assert html.count("<td>train_time</td>") == len(data["dominance"])
    study = optuna.load_study(study_name="two", storage=url)
    from optuna_dashboard._note import get_note_from_system_attrs

    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    note = get_note_from_system_attrs(system_attrs, None)["body"]
    assert data["sentence"] in note and "| design on the front |" in note
    refused = runner.invoke(main, ["export", "two", "--storage", url, "--pick", "accuracy"])
    assert refused.exit_code == 2
    assert "pick 'accuracy': 'knee' or an objective's name" in refused.output


def test_a_lucky_single_seed_does_not_push_tested_designs_off_the_front():
    """Design fast_and_good beats the baseline over 5 seeds; a design with one run on seed 0,
    better on both objectives, would dominate it by its mean: once designs have several seeds,
    single-seed designs stay off the front (more seeds first, as one objective ranks)."""
    lucky = [_run(200, "lucky", 0, (0.99, 0.5))]
    v = pareto.verdict("s", ["macro_f1", "train_time"], [True, False], _runs() + lucky)
    assert "lucky" in {m.key for m in v.others} and "lucky" not in {m.key for m in v.front}
    assert [m.key for m in v.winners] == ["fast_and_good"]
    assert pareto.knee(v).key != "lucky"


def test_no_baseline_is_said():
    runs = [r for r in _runs() if r.design_key != "base"]
    v = pareto.verdict("s", ["macro_f1", "train_time"], [True, False],
                       [r.__class__(**{**r.__dict__, "baseline": None}) for r in runs])
    assert v.sentence.endswith("no baseline to test against")


def test_racing_spreads_its_seeds_along_a_long_front():
    """Seven single-seed designs on a front (F1 up, time up): 3 to race are its two ends and
    its middle, not the 3 best on the first objective; every baseline comes too."""
    runs = [_run(300 + i, f"d{i}", 0, (0.80 + 0.01 * i, 1.0 + 0.1 * i)) for i in range(7)]
    runs.append(_run(400, "base", 0, (0.5, 5.0), baseline="base"))
    v = pareto.verdict("s", ["macro_f1", "train_time"], [True, False], runs)
    assert [m.key for m in v.front] == [f"d{i}" for i in range(6, -1, -1)]
    assert [d.key for d in v.chosen(3)] == ["base", "d6", "d3", "d0"]
    assert [d.key for d in v.chosen(10)][1:] == [f"d{i}" for i in range(6, -1, -1)]
