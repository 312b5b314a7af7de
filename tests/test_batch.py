"""batch.run: K trials asked at once, trained as populations, each told as soon as it has its
outcome. A design proposed again is trained once; a stop ends a batch with nothing trained and
says why on every trial."""

from __future__ import annotations

import optuna
import pytest

from losstune import batch, results, runner
from losstune import studyfile as spec_mod
from losstune.stopping import INTERRUPTED, STOP
from tests.conftest import write_study


def _search(tmp_path, families, population, sampler="random"):
    """A regression study whose designs are the families alone (no searched parameter), so
    the random sampler proposes the same designs again and again."""
    path = write_study(tmp_path, {
        "task": "regression", "dataset": {"name": "diabetes"}, "n_trials": 10,
        "objective": {"metric": "mae"}, "baselines": False, "sampler": {"name": sampler},
        "search": {"families": families}, "training": {"epochs": 2, "population": population}})
    spec = spec_mod.load(path)
    study = runner.create_or_load(spec, f"sqlite:///{tmp_path / 'b.db'}")
    return study, runner.load_context(spec, tmp_path)


def _trained(trial) -> bool:
    return trial.user_attrs.get(results.EPOCHS_TRAINED, 0) > 0


@pytest.mark.parametrize("population", [1, "auto"])
def test_a_design_proposed_again_trains_once_and_its_repeats_get_its_value(tmp_path,
                                                                            population):
    study, ctx = _search(tmp_path, ["mse"], population)
    first = batch.run(study, ctx, 3)
    assert sorted(t.number for t in first) == [0, 1, 2]
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    # Trial 0 trained; 1 and 2, the same design in the same batch, waited for it.
    assert [_trained(t) for t in trials] == [True, False, False]
    assert [t.user_attrs.get(results.DUPLICATE_OF) for t in trials] == [None, 0, 0]
    assert trials[1].value == trials[2].value == trials[0].value
    # The next batch finds the design trained before it: answered at once, nothing trained.
    batch.run(study, ctx, 2)
    later = study.get_trials()[3:]
    assert [(t.state.name, _trained(t), t.user_attrs.get(results.DUPLICATE_OF))
            for t in later] == [("COMPLETE", False, 0)] * 2
    assert {t.value for t in later} == {trials[0].value}
    assert sum(results.is_repeat(t) for t in study.get_trials()) == 4


def test_a_stop_ends_the_batch_untrained_and_every_trial_says_why(tmp_path):
    study, ctx = _search(tmp_path, ["mse", "mae"], "auto")
    STOP.set()
    try:
        told = batch.run(study, ctx, 4)
    finally:
        STOP.clear()
    trials = study.get_trials()
    assert len(told) == len(trials) == 4
    # Each proposal ends FAIL, none trained, none left RUNNING for another worker to retry:
    # trained designs and their repeats alike record the interruption.
    assert [t.state.name for t in trials] == ["FAIL"] * 4
    assert not any(_trained(t) for t in trials)
    assert {t.user_attrs["error"] for t in trials} == {INTERRUPTED}
    # Without the stop the same study trains again: the interruption left nothing behind.
    batch.run(study, ctx, 2)
    assert all(t.state.name == "COMPLETE" for t in study.get_trials()[4:])
    assert any(_trained(t) for t in study.get_trials()[4:])


def test_the_trials_of_a_batch_are_asked_before_any_trains(tmp_path):
    """K trials are created (with this worker's PID) before the first trains: a worker killed
    mid-batch leaves all K to be retried, and the sampler sees the K-1 others as running."""
    study, ctx = _search(tmp_path, ["mse", "mae", "huber", "log_cosh"], "auto")
    seen: list[int] = []
    original = batch._propose

    def propose(trial, c, numbers, known):
        seen.append(len(study.get_trials(states=(optuna.trial.TrialState.RUNNING,))))
        return original(trial, c, numbers, known)

    batch._propose = propose
    try:
        batch.run(study, ctx, 4)
    finally:
        batch._propose = original
    assert seen == [4, 4, 4, 4]
    assert all(t.user_attrs.get("pid") for t in study.get_trials())


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_early_records_are_stored_before_training_and_each_before_the_next_proposal_for_tpe(
        tmp_path, monkeypatch, sampler):
    """Every trial's design is stored before its population trains. TPE's constant liar reads
    the running trials' parameters, so there each is stored before the next proposal; the
    random sampler reads none, so the batch's are stored together, in one write."""
    from losstune import population, recording

    study, ctx = _search(tmp_path, ["mse", "mae", "huber", "log_cosh"], "auto", sampler)

    def stored():
        fresh = optuna.load_study(study_name=study.study_name, storage=study._storage)
        return [t for t in fresh.get_trials(deepcopy=False)
                if t.params and results.DESIGN_KEY in t.user_attrs]

    seen, writes, at_training = [], [], []
    original, write, train = batch._propose, recording.write, population.train
    monkeypatch.setattr(batch, "_propose", lambda *a: seen.append(len(stored())) or original(*a))
    monkeypatch.setattr(recording, "write", lambda *a: writes.append(len(a[1])) or write(*a))
    monkeypatch.setattr(population, "train",
                        lambda members, *a, **k: at_training.append(len(stored()))
                        or train(members, *a, **k))
    batch.run(study, ctx, 4)
    assert at_training == [4]
    if sampler == "tpe":
        assert seen == [0, 1, 2, 3]
        assert writes[:4] == [1, 1, 1, 1]  # each early record, with its trial's PID
    else:
        assert seen == [0, 0, 0, 0]
        assert writes[0] == 4  # the four early records together, with their PIDs


def test_a_trial_alone_costs_fourteen_sql_statements_and_stores_its_pid(tmp_path):
    """A trial alone after the study's first: the read of waiting trials and designs, the
    creation with its heartbeat, the early record (with the worker's PID) and the record with
    its tell; each write one transaction."""
    import os

    from tests.conftest import count_statements

    study, ctx = _search(tmp_path, ["huber"], 1)
    batch.run(study, ctx, 1)
    assert count_statements(lambda: batch.run(study, ctx, 1)) <= 14
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2 and _trained(trials[1])
    assert {t.user_attrs["pid"] for t in trials} == {os.getpid()}


def test_a_new_trials_pid_is_stored_at_once_where_no_heartbeat_would_find_it(tmp_path):
    """With heartbeats (SQLite, PostgreSQL) a dead worker's new trial is found by its
    heartbeat, and its PID waits for the early record; on a journal file (no heartbeats) the
    PID is stored with the trial, so a dead local worker's trials are failed at once."""
    import os

    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from losstune import optuna_adapter
    from losstune.storage import open_storage

    journal = optuna.create_study(
        storage=JournalStorage(JournalFileBackend(str(tmp_path / "j.log"))))
    sqlite = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'h.db'}"))
    assert optuna_adapter.heartbeat_enabled(sqlite._storage)
    assert not optuna_adapter.heartbeat_enabled(journal._storage)
    for study, stored_pid in ((journal, os.getpid()), (sqlite, None)):
        for t in batch.ask(study, 2):
            assert t.user_attrs["pid"] == os.getpid()  # held on the trial either way
            stored = study._storage.get_trial(optuna_adapter.trial_id(t)).user_attrs
            assert stored.get("pid") == stored_pid
