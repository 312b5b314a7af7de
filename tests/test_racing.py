"""Racing over seeds: the decisions on their own, a race over simulated runs, and a real study."""

from __future__ import annotations

import json
import math
import random

import optuna
import pytest
from click.testing import CliRunner

from losstune import racing, results
from losstune.cli import main
from tests.conftest import write_study

KW = {"maximize": True, "max_seeds": 5, "alpha": 0.05}


def known(sd: float) -> racing.Noise:
    """A run noise known exactly (infinite degrees of freedom): the band is ``band`` SEs."""
    return racing.Noise(sd, math.inf)


# ------------------------------------------------------------------------------ decisions
def test_incumbent_gets_a_second_seed_first():
    step = racing.decide({0: 0.9}, {0: 0.8}, noise=None, **KW)
    assert (step.kind, step.seed_index) == ("incumbent", 1)


def test_clearly_worse_challenger_is_rejected_after_one_seed():
    step = racing.decide({0: 0.70}, {0: 0.90, 1: 0.91}, noise=known(0.01), **KW)
    assert step.kind == "reject" and "beyond the run noise" in step.reason


def test_challenger_within_noise_runs_on_the_incumbents_seeds_in_order():
    inc = {0: 0.90, 1: 0.91, 2: 0.89}
    step = racing.decide({0: 0.895}, inc, noise=known(0.01), **KW)
    assert (step.kind, step.seed_index) == ("challenger", 1)
    step = racing.decide({0: 0.895, 1: 0.915}, inc, noise=known(0.01), **KW)
    assert (step.kind, step.seed_index) == ("challenger", 2)


def test_tied_designs_both_gain_seeds_up_to_the_cap():
    tied = {0: 0.90, 1: 0.91}
    step = racing.decide({0: 0.905, 1: 0.905}, tied, noise=known(0.01), **KW)
    assert (step.kind, step.seed_index) == ("incumbent", 2)
    full = {i: 0.9 + 0.01 * (i % 2) for i in range(5)}
    step = racing.decide({i: v + 0.001 * (-1) ** i for i, v in full.items()}, full,
                         noise=known(0.01), **KW)
    assert step.kind in ("accept", "reject") and "seed cap" in step.reason


def test_paired_test_separates_before_the_cap_and_direction_counts():
    inc = {0: 0.80, 1: 0.85, 2: 0.78}
    better = {0: 0.85, 1: 0.91, 2: 0.83}  # +0.05, +0.06, +0.05 on every seed
    assert racing.decide(better, inc, noise=known(0.05), **KW).kind == "accept"
    assert racing.decide(inc, better, noise=known(0.05), **KW).kind == "reject"
    # For a minimised metric the same numbers mean the opposite.
    low = {**KW, "maximize": False}
    assert racing.decide(better, inc, noise=known(0.05), **low).kind == "reject"


def test_seed_index_zero_is_the_study_seed():
    assert racing.seed_for(7, 0) == 7 and racing.seed_for(7, 2) == 2007


# ------------------------------------------------------------------------------ simulated race
class World:
    """Designs with a true mean; seed i adds the same offset to every design (shared split and
    initialisation), plus a little noise of each run. The racer sees only stored records."""

    def __init__(self, means: dict[str, float], baselines=()):
        self.means, self.baselines = means, set(baselines)
        rng = random.Random(0)
        self.seed_effect = [rng.gauss(0, 0.02) for _ in range(10)]
        self.noise = random.Random(1)
        self.records: list[results.RunRecord] = []
        self.trained: list[tuple[str, int]] = []

    def record(self, key: str, seed: int, replicate: bool) -> None:
        value = self.means[key] + self.seed_effect[seed] + self.noise.gauss(0, 0.003)
        self.trained.append((key, seed))
        self.records.append(results.RunRecord(
            number=len(self.records), replicate=replicate, state="complete", values=(value,),
            design_key=key, seed_index=seed, family=key, words=key,
            description={"family": key, "params": {}}, params={"loss": key},
            baseline=key if key in self.baselines else None, duplicate_of=None,
            train_time_s=None, user_attrs={"baseline": key} if key in self.baselines else {}))

    def execute(self, runs):
        for run in runs:
            self.record(run.design_key, run.seed_index, replicate=True)

    def racer(self, max_seeds=5):
        return racing.Racer(load=lambda: list(self.records), execute=self.execute,
                            maximize=True, max_seeds=max_seeds)


def test_race_over_simulated_runs():
    world = World({"ce": 0.80, "focal": 0.805, "bad": 0.60, "great": 0.90}, baselines=["ce"])
    racer = world.racer()
    for key in ("ce", "focal", "bad", "great"):
        world.record(key, 0, replicate=False)  # the search trial
        racer.race(key)
    seeds = {k: sorted(s for d, s in world.trained if d == k) for k in world.means}
    assert seeds["bad"] == [0]                      # clearly worse: one seed
    assert len(seeds["focal"]) >= 3                 # within noise of ce: more seeds
    assert len(seeds["great"]) >= 2
    # The baseline follows the incumbent's seeds, so the verdict has paired runs against it.
    assert set(seeds["great"]) <= set(seeds["ce"])
    assert len(world.trained) == len(set(world.trained))  # no (design, seed) trained twice
    v = results.verdict("sim", "macro_f1", True, world.records)
    assert v.winner.key == "great" and v.significant


# ------------------------------------------------------------------------------ a real study
DEAD = {"w_standard": 0.0, "w_progress": 1.0, "w_balance": 0.0, "w_curriculum": 0.0}


@pytest.fixture(scope="module")
def raced(tmp_path_factory):
    """A real racing search over three designs, 3 seeds max: cross-entropy and cross-entropy
    with label smoothing (baselines, within noise of each other) and a searched DynamicLoss that
    cannot learn (only the gradient-free progress term). No family has a searched parameter, so
    every further proposal repeats a known design, until the space counts as exhausted."""
    folder = tmp_path_factory.mktemp("raced")
    path = write_study(folder, {
        "n_trials": 4, "racing": {"max_seeds": 3, "test_seeds": 3},
        "training": {"epochs": 4},
        "search": {"families": ["cross_entropy", "dynamic"], "cross_entropy": None,
                   "focal": None, "dynamic": DEAD},
        "baselines": [{"family": "cross_entropy", "params": {"label_smoothing": 0.0}},
                      {"family": "cross_entropy", "params": {"label_smoothing": 0.05}}]})
    url = f"sqlite:///{folder / 'race.db'}"
    result = CliRunner().invoke(main, ["search", str(path), "--storage", url],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path, url, result.output, folder


def _trained(url):
    search = optuna.load_study(study_name="tiny", storage=url)
    runs = optuna.load_study(study_name="tiny" + results.RUNS_SUFFIX, storage=url)
    return search, runs, results.records(search.trials, runs.trials)


def test_real_race_gives_seeds_where_they_decide_something(raced):
    _, url, output, _ = raced
    search, runs, records = _trained(url)
    seeds: dict[str, set[int]] = {}
    for r in records:
        if r.trained:
            seeds.setdefault(r.family + str(r.description["params"].get("w_standard", "")),
                             set()).add(r.seed_index)
    assert seeds["dynamic0.0"] == {0}                     # cannot learn: one seed
    racing_seeds = {k: {i for i in s if not results.is_fresh(i)} for k, s in seeds.items()}
    assert max(len(s) for k, s in racing_seeds.items() if k.startswith("cross_entropy")) == 3
    # After the race, the winner and both baselines (here: both cross-entropy designs, one
    # of them the winner) train on the 3 fresh seeds, and only they do.
    fresh: dict[str, list[int]] = {}
    for r in records:
        if r.trained and results.is_fresh(r.seed_index):
            fresh.setdefault(r.family, []).append(r.seed_index)
    assert sorted(fresh["cross_entropy"]) == [100, 100, 101, 101, 102, 102]
    assert "dynamic" not in fresh
    # Re-sampled designs never train twice on a seed: one trained run per (design, seed).
    pairs = [(r.design_key, r.seed_index) for r in records if r.trained]
    assert len(pairs) == len(set(pairs))
    repeats = [t for t in search.trials if results.DUPLICATE_OF in t.user_attrs]
    assert repeats and all("train_time_s" not in t.user_attrs for t in repeats)
    assert runs.trials and all(t.user_attrs["seed_index"] > 0 for t in runs.trials)
    assert "racing up to 3 seeds" in output and "Verdict:" in output


def test_every_output_names_the_same_winner_and_significance(raced, tmp_path):
    _, url, output, _ = raced
    shown = CliRunner().invoke(main, ["show", "tiny", "--storage", url, "-f", "json"],
                               catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    verdict = data["verdict"]
    for key in ("significant", "sentence", "winner", "comparisons"):
        assert key in verdict
    assert data["metric"] == "macro_f1" and data["direction"] == "maximize"
    winner = verdict["winner"]
    assert winner["design"]["family"] == "cross_entropy" and winner["seeds"] == 3
    for c in verdict["comparisons"]:
        assert {"baseline", "baseline_design", "diff", "ci", "p", "p_adjusted",
                "significant"} <= set(c)
    out = tmp_path / "best.json"
    exported = CliRunner().invoke(main, ["export", "tiny", "--storage", url, "-o", str(out)],
                                  catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    payload = json.loads(out.read_text())
    assert results.design_key(payload["loss"]) == winner["key"]
    assert payload["verdict"]["significant"] == verdict["significant"]
    assert payload["verdict"]["sentence"] == verdict["sentence"]
    # Every output says which seeds picked the winner and which tested it.
    assert verdict["fresh_test"] and verdict["tested_on_seeds"] == [100, 101, 102]
    assert 0 in verdict["picked_on_seeds"] and max(verdict["picked_on_seeds"]) < 100
    for key in ("picked_on_seeds", "tested_on_seeds", "fresh_test"):
        assert payload["verdict"][key] == verdict[key]
    assert verdict["comparisons"] and all(
        c["fresh_seeds"] and c["seed_indices"] == [100, 101, 102]
        for c in verdict["comparisons"])
    assert "3 fresh seeds" in verdict["sentence"]
    page = tmp_path / "r.html"
    reported = CliRunner().invoke(main, ["report", "tiny", "--storage", url, "-o", str(page)],
                                  catch_exceptions=False)
    assert reported.exit_code == 0, reported.output
    import html

    text = html.unescape(page.read_text())
    assert verdict["sentence"] in text and verdict["sentence"] in output.replace("\n", "")
    assert "tested on fresh seeds 100, 101, 102" in text
    table = CliRunner().invoke(main, ["show", "tiny", "--storage", url],
                               catch_exceptions=False).output
    assert verdict["sentence"] in table.replace("\n", "")
    study = optuna.load_study(study_name="tiny", storage=url)
    from optuna_dashboard import get_note

    note = get_note(study)
    assert verdict["sentence"] in note and "tested on fresh seeds 100, 101, 102" in note


def test_single_seed_winner_is_never_called_better(finished, tmp_path):
    from tests.conftest import copy_db

    url = copy_db(finished[1], tmp_path)
    data = json.loads(CliRunner().invoke(main, ["show", "tiny", "--storage", url, "-f", "json"],
                                         catch_exceptions=False).output)
    assert data["verdict"]["significant"] is False and data["verdict"]["winner"]["seeds"] == 1
    page = tmp_path / "r.html"
    CliRunner().invoke(main, ["report", "tiny", "--storage", url, "-o", str(page)],
                       catch_exceptions=False)
    text = page.read_text()
    assert " is better than" not in text and "(better)" not in text
    assert "single-seed" in text


def test_confirm_adds_seeds_through_the_same_machinery(raced, tmp_path):
    from tests.conftest import copy_db

    url = copy_db(raced[1], tmp_path)
    before = len(_trained(url)[1].trials)
    result = CliRunner().invoke(main, ["confirm", "tiny", "--storage", url, "--top", "1",
                                       "--seeds", "4", "--test-seeds", "4"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    _, runs, records = _trained(url)
    v = results.verdict("tiny", "macro_f1", True, records)
    baselines = [d for d in v.ranking if d.baseline]
    assert baselines and all(d.n == 4 for d in baselines)
    # The search gave 3 fresh seeds; confirm adds the 4th to the winner and the baselines, and
    # the verdict tests on all 4.
    assert all(sorted(d.fresh) == [100, 101, 102, 103] for d in [v.winner, *baselines])
    assert v.fresh_test and v.tested_on == [100, 101, 102, 103]
    assert len(runs.trials) > before
    again = CliRunner().invoke(main, ["confirm", "tiny", "--storage", url, "--top", "1",
                                      "--seeds", "4", "--test-seeds", "4"],
                               catch_exceptions=False)
    assert again.exit_code == 0 and len(_trained(url)[1].trials) == len(runs.trials)


def test_a_failed_seed_is_skipped_not_retried():
    world = World({"ce": 0.80, "focal": 0.805}, baselines=["ce"])
    broken = {("ce", 1)}  # this run diverges every time

    def execute(runs):
        for r in runs:
            if (r.design_key, r.seed_index) in broken:
                world.trained.append((r.design_key, r.seed_index))
                world.records.append(results.RunRecord(
                    number=len(world.records), replicate=True, state="fail", values=(),
                    design_key=r.design_key, seed_index=r.seed_index, family=r.design_key,
                    words=r.design_key, description={"family": r.design_key, "params": {}},
                    params={}, baseline="ce", duplicate_of=None, train_time_s=None,
                    user_attrs={"error": "the training loss became nan"}))
            else:
                world.record(r.design_key, r.seed_index, replicate=True)

    racer = racing.Racer(load=lambda: list(world.records), execute=execute, maximize=True)
    world.record("ce", 0, replicate=False)
    world.record("focal", 0, replicate=False)
    racer.race("focal")
    seeds = {k: sorted(s for d, s in world.trained if d == k) for k in ("ce", "focal")}
    assert seeds["ce"].count(1) == 1 and 2 in seeds["ce"]  # seed 1 failed once, then seed 2
    assert 1 not in seeds["focal"]  # never asked for the seed its rival failed on
    assert len(world.trained) == len(set(world.trained))
