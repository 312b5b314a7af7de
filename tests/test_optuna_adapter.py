"""The one module that touches Optuna's private names (losstune/optuna_adapter.py): every name
it uses still exists, and what it writes reads back as Optuna's own calls store it."""

from __future__ import annotations

import ast
import datetime
import time
from pathlib import Path

import optuna
import pytest

from losstune import batch, optuna_adapter, recording
from tests.conftest import count_statements

SOURCE = Path(optuna_adapter.__file__)

# Every private name the adapter uses, where it lives. The test below reads the adapter's
# source, so a new private name used there and not listed here fails too.
STUDY_ATTRS = {"_storage", "_study_id", "_thread_local", "_stop_flag"}
TRIAL_ATTRS = {"_trial_id", "_cached_frozen_trial", "_fixed_params", "_relative_params"}
CACHED_STORAGE_ATTRS = {"_backend", "_lock", "_studies", "_add_trials_to_cache"}
MODULE_NAMES = {
    "optuna.pruners": {"_filter_study"},
    "optuna.study._tell": {"_check_state_and_values", "_check_values_are_feasible"},
    "optuna.storages._rdb.storage": {"_create_scoped_session"},
    "optuna.storages._cached_storage": {"_StudyInfo"},
}
PRIVATE_MODULES = {"optuna.storages._rdb", "optuna.storages._heartbeat",
                   "optuna.storages._cached_storage", "optuna.study._tell",
                   "optuna.storages._rdb.storage"}


def _private_names_in_source() -> tuple[set[str], set[tuple[str, str]], set[str]]:
    tree = ast.parse(SOURCE.read_text())
    attrs, imported, modules = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            attrs.add(node.attr)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optuna"):
            if any(part.startswith("_") for part in node.module.split(".")):
                modules.add(node.module)
            for alias in node.names:
                if alias.name.startswith("_"):
                    imported.add((node.module, alias.name))
    return attrs, imported, modules


def test_optuna_still_has_every_private_name_the_adapter_uses(tmp_path):
    attrs, imported, modules = _private_names_in_source()
    known_attrs = STUDY_ATTRS | TRIAL_ATTRS | CACHED_STORAGE_ATTRS | {
        n for names in MODULE_NAMES.values() for n in names}
    assert attrs <= known_attrs | {"_lock", "_stop", "_thread", "_beat", "_warned"}, \
        attrs - known_attrs  # (the last five are the adapter's own Heartbeat's)
    assert imported <= {(m, n) for m, names in MODULE_NAMES.items() for n in names}, imported
    assert modules <= PRIVATE_MODULES, modules
    import importlib

    for module, names in MODULE_NAMES.items():
        for name in names:
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
    from optuna.storages._cached_storage import _CachedStorage
    from optuna.storages._rdb import models

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'n.db'}")
    for name in STUDY_ATTRS:
        assert hasattr(study, name), name
    for name in ("cached_all_trials", "in_optimize_loop"):
        assert hasattr(study._thread_local, name), name
    assert isinstance(study._storage, _CachedStorage)
    for name in CACHED_STORAGE_ATTRS:
        assert hasattr(study._storage, name), name
    assert isinstance(models.NOT_FOUND_MSG, str)  # the KeyError of a study that is gone
    for name in ("scoped_session", "engine", "check_trial_is_updatable"):
        assert hasattr(study._storage._backend, name), name
    for model, columns in ((models.TrialModel, {"trial_id", "number", "study_id", "state",
                                                "datetime_start", "datetime_complete"}),
                           (models.TrialHeartbeatModel, {"trial_id", "heartbeat"}),
                           (models.TrialParamModel, {"trial_id", "param_name", "param_value",
                                                     "distribution_json"})):
        assert columns <= set(model.__table__.c.keys()), model
    trial = study.ask()
    for name in TRIAL_ATTRS:
        assert hasattr(trial, name), name


def test_a_trial_handed_out_without_its_read_back_is_optunas_trial(tmp_path):
    """trial_from does what Trial.__init__ does: the same instance state, the same values."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'n.db'}")
    optunas = optuna.Trial(study, study._storage.create_new_trial(study._study_id))
    ours = optuna_adapter.new_trials(study, 1)[0]
    assert set(vars(ours)) == set(vars(optunas))
    for name, value in vars(optunas).items():
        if name in ("_trial_id", "_cached_frozen_trial"):
            continue
        assert getattr(ours, name) == value, name
    a, b = optunas._cached_frozen_trial, ours._cached_frozen_trial
    stored = study._storage.get_trial(ours._trial_id)
    assert b == stored and b.number == a.number + 1
    assert (b.state, b.params, b.user_attrs, b.system_attrs) == \
        (a.state, a.params, a.user_attrs, a.system_attrs)


@pytest.fixture(params=["sqlite", "postgresql", "journal"])
def url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    if request.param == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    return f"sqlite:///{tmp_path / 'n.db'}"


def test_new_trials_are_numbered_stored_and_cached_as_optuna_does(url):
    study = optuna.create_study(storage=url, direction="maximize")
    study.enqueue_trial({"x": 0.5})  # a waiting trial takes a number too
    first = study.ask()
    assert first.number == 0  # the waiting one
    before = datetime.datetime.now()
    trials = optuna_adapter.new_trials(study, 3, {"pid": 42}, heartbeat=False)
    assert [t.number for t in trials] == [1, 2, 3]
    for t in trials:
        stored = study._storage.get_trial(t._trial_id)
        assert stored.state == optuna.trial.TrialState.RUNNING
        assert stored.user_attrs == {"pid": 42} == t.user_attrs
        assert stored.datetime_start == t._cached_frozen_trial.datetime_start
        assert abs((stored.datetime_start - before).total_seconds()) < 60  # local time
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert study.ask().number == 4  # Optuna's own numbering goes on after them
    alone = optuna_adapter.new_trials(study, 1, {"pid": 42})  # one statement on SQLite
    assert [t.number for t in alone] == [5]
    stored = study._storage.get_trial(alone[0]._trial_id)
    assert (stored.number, stored.state, stored.user_attrs) == \
        (5, optuna.trial.TrialState.RUNNING, {"pid": 42})
    assert stored.datetime_start == alone[0]._cached_frozen_trial.datetime_start
    assert study.ask().number == 6
    trials += alone
    for t in trials:  # and they are Optuna's trials: suggested, told, read back
        t.suggest_float("x", 0, 1)
        study.tell(t, 0.25)
    assert [t.state.name for t in study.trials[1:7]] == ["COMPLETE"] * 3 + ["RUNNING"] + \
        ["COMPLETE", "RUNNING"]


def test_a_trial_alone_is_created_in_one_statement_on_sqlite_and_refused_in_a_study_gone(
        tmp_path):
    """BEGIN, the trial (inserted from the study's row, numbered in the same statement), its
    PID, its heartbeat: where the trials of a population take the study's row locked, an
    insert and a numbering update. A study deleted meanwhile: Optuna's KeyError, nothing
    written."""
    from losstune.storage import open_storage

    url = f"sqlite:///{tmp_path / 'one.db'}"
    study = optuna.create_study(storage=open_storage(url))
    study.ask()
    created = []
    assert count_statements(lambda: created.extend(optuna_adapter.new_trials(
        study, 1, {"pid": 7}, heartbeat=True))) == 4
    assert created[0].number == 1 and study._storage.get_trial(created[0]._trial_id).number == 1
    gone = optuna.create_study(storage=open_storage(url))
    optuna.delete_study(study_name=gone.study_name, storage=url)
    with pytest.raises(KeyError):
        optuna_adapter.new_trials(gone, 1, {"pid": 7})
    assert len(optuna.load_study(study_name=study.study_name, storage=url).trials) == 2


def test_a_population_is_told_in_one_transaction_and_a_member_finished_elsewhere_is_left(
        tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    study = optuna.create_study(storage=url, direction="maximize")
    trials = optuna_adapter.new_trials(study, 8, {"pid": 1})
    for t in trials:
        recording.start(t)
        t.suggest_float("gamma", 0.0, 5.0)
        t.set_user_attr("val.macro_f1", 0.5)
        t.report(0.5, 0)
    recording.flush(trials)
    told = [(t, optuna.trial.TrialState.COMPLETE, 0.5 + t.number / 100) for t in trials[:4]]
    # BEGIN, the state update, user attributes, intermediate values, values: not 4 × 5.
    assert count_statements(lambda: batch.tell_trials(study, told)) <= 6
    stored = optuna.load_study(study_name=study.study_name, storage=url).trials
    assert [t.values for t in stored[:4]] == [[0.5 + i / 100] for i in range(4)]
    assert all(t.datetime_complete is not None for t in stored[:4])
    # Another process failed one of the next four as stale meanwhile: the other three are
    # told, and nothing more is written on that one (Optuna's skip_if_finished).
    study._storage.set_trial_state_values(trials[5]._trial_id, optuna.trial.TrialState.FAIL)
    for t in trials[4:]:
        t.set_user_attr("late", True)
    done = batch.tell_trials(study, [(t, optuna.trial.TrialState.COMPLETE, 0.9)
                                     for t in trials[4:]])
    assert [f.number for f in done] == [4, 6, 7]
    stored = optuna.load_study(study_name=study.study_name, storage=url).trials
    assert [t.state.name for t in stored[4:]] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert [t.number for t in stored if "late" in t.user_attrs] == [4, 6, 7]
    with pytest.raises(ValueError, match="Cannot tell"):  # told once only, as Optuna says
        batch.tell_trials(study, [(trials[4], optuna.trial.TrialState.COMPLETE, 0.1)])


def test_outcomes_are_written_even_when_the_samplers_hook_raises(tmp_path):
    """As Optuna's tell writes the state in a finally: after its sampler's after_trial."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'h.db'}")
    trials = optuna_adapter.new_trials(study, 2)
    for t in trials:
        recording.start(t)

    def broken(*args):
        raise RuntimeError("sampler hook")

    study.sampler.after_trial = broken
    with pytest.raises(RuntimeError, match="sampler hook"):
        batch.tell_trials(study, [(t, optuna.trial.TrialState.COMPLETE, 1.0) for t in trials])
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]


def test_the_cached_storage_holds_its_own_copy_of_a_new_trial(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'c.db'}")
    trial = optuna_adapter.new_trials(study, 1)[0]
    trial.set_user_attr("x", 1)  # written through (no recording): Optuna updates its own
    cached = study._storage._studies[study._study_id].trials[trial.number]
    assert cached is not trial._cached_frozen_trial


def test_a_second_tell_in_one_call_is_refused(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'd.db'}")
    trial = optuna_adapter.new_trials(study, 1)[0]
    recording.start(trial)
    with pytest.raises(ValueError, match="twice"):
        batch.tell_trials(study, [(trial, optuna.trial.TrialState.COMPLETE, 1.0)] * 2)
    assert study.get_trials()[0].state.name == "RUNNING"


def test_a_held_parameter_is_refused_as_optuna_refuses_it(tmp_path):
    """A parameter is written with the trial's early record, not when suggested; a
    distribution that contradicts the study's earlier one is still refused at the
    suggestion, as Optuna refuses it."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(storage=url)
    study.ask().suggest_float("x", 0.0, 1.0)
    optunas = study.ask()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        optunas.suggest_categorical("x", ["a", "b"])
    ours = optuna_adapter.new_trials(study, 1)[0]
    recording.start(ours)
    assert count_statements(lambda: ours.suggest_float("y", 0.0, 1.0)) <= 2  # the one read of "y"
    assert "y" not in study._storage.get_trial(ours._trial_id).params  # held until written
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        ours.suggest_categorical("x", ["a", "b"])
    recording.start(ours).flush()
    assert study._storage.get_trial(ours._trial_id).params == {"y": ours.params["y"]}


def test_the_batch_heartbeat_beats_until_stopped_then_the_trials_go_stale(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'h.db'}",
                                         heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage)
    trials = optuna_adapter.new_trials(study, 2, heartbeat=True)
    beat = optuna_adapter.Heartbeat(study._storage, [t._trial_id for t in trials])
    try:
        time.sleep(3.5)  # longer than the grace period: beaten, not stale
        assert optuna.storages._heartbeat.is_heartbeat_enabled(storage)
        assert storage._get_stale_trial_ids(study._study_id) == []
        beat.done(trials[0]._trial_id)  # told: beaten no more
        time.sleep(3.5)
        assert storage._get_stale_trial_ids(study._study_id) == [trials[0]._trial_id]
    finally:
        beat.stop()
    time.sleep(3.5)
    assert sorted(storage._get_stale_trial_ids(study._study_id)) == \
        sorted(t._trial_id for t in trials)


def _trials_with_keys(study, rows) -> None:
    """A trial for each ``(design_key or None, duplicate_of 0?, value | None (running) |
    "fail")``."""
    for key, dup, value in rows:
        t = study.ask()
        if key:
            t.set_user_attr("design_key", key)
        if dup:
            t.set_user_attr("duplicate_of", 0)
        if value == "fail":
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        elif value is not None:
            study.tell(t, value)


def test_designs_read_by_their_key_match_a_read_of_every_trial(url):
    """trials_with_user_attr (one read on the RDB storage) finds what a read of every trial
    finds: trials with the key, in the states asked, without the other attribute."""
    study = optuna.create_study(storage=url)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    _trials_with_keys(study, [("a", False, 1.0), ("b", False, None), ("a", True, 1.0),
                              ("c", False, "fail"), (None, False, 1.0)])
    got = optuna_adapter.trials_with_user_attr(study, "design_key", states, "duplicate_of")
    assert [(number, key) for _, number, key in got] == [(0, "a"), (1, "b")]


def test_waiting_trials_and_designs_in_one_read_match_the_two_reads(url):
    """What a batch reads before it asks: the WAITING trials (oldest first, with or without
    the key) and the designs, as the two reads find them; one statement on SQLite."""
    study = optuna.create_study(storage=url)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    _trials_with_keys(study, [("a", False, None), ("b", False, 0.5), ("a", True, None),
                              ("c", False, "fail")])
    study.enqueue_trial({"x": 0.3}, user_attrs={"design_key": "v"})  # waiting, with a key
    study.enqueue_trial({"x": 0.4})
    read = []
    statements = count_statements(lambda: read.append(optuna_adapter.waiting_and_with_user_attr(
        study, "design_key", states, "duplicate_of")))
    waiting, designs = read[0]
    assert waiting == optuna_adapter.waiting_trial_ids(study)
    assert designs == optuna_adapter.trials_with_user_attr(study, "design_key", states,
                                                           "duplicate_of")
    assert [study._storage.get_trial(tid).number for tid in waiting] == [4, 5]
    assert [(number, key) for _, number, key in designs] == [(0, "a"), (1, "b")]
    if isinstance(url, str) and url.startswith("sqlite"):
        assert statements == 1


def test_single_reads_take_no_write_lock_on_sqlite(tmp_path):
    """The waiting trials and the design keys are one SELECT each, with no BEGIN IMMEDIATE
    before it: they read while another worker holds SQLite's write lock, instead of waiting
    for it (a BEGIN IMMEDIATE would wait out the busy timeout here, and be counted)."""
    import sqlite3
    import threading

    from losstune.storage import open_storage

    path = tmp_path / "r.db"
    study = optuna.create_study(storage=open_storage(f"sqlite:///{path}"))
    study.enqueue_trial({"x": 0.5})
    study.ask().set_user_attr("design_key", "a")
    states = (optuna.trial.TrialState.RUNNING,)
    reads = {}

    def read():
        reads["statements"] = count_statements(lambda: reads.update(
            waiting=optuna_adapter.waiting_trial_ids(study),
            designs=optuna_adapter.trials_with_user_attr(study, "design_key", states, "x")))

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another worker's write transaction, held
    try:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=30)
        assert not reader.is_alive(), "a read waited for the write lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    reader.join()
    assert reads["statements"] == 2
    assert reads["waiting"] == [] and [k for _, _, k in reads["designs"]] == ["a"]


@pytest.mark.parametrize("length", [0, 1, 2044, 2045, 2046, 9000])
def test_the_dashboard_note_is_stored_under_optuna_dashboards_own_keys(length):
    from optuna_dashboard._note import SYSTEM_ATTR_MAX_LENGTH, note_ver_key, split_body

    body = "".join(chr(97 + i % 26) for i in range(length))
    assert optuna_adapter.NOTE_CHUNK == SYSTEM_ATTR_MAX_LENGTH
    assert optuna_adapter.dashboard_note(7, body) == {note_ver_key(7): 1, **split_body(body, 7)}
