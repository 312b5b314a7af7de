"""Many workers, nothing lost: SQLite and PostgreSQL, kill -9, interrupts, reproducibility."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback

from tests.conftest import write_study

EXE = str(Path(sys.executable).parent / "losstune")
FAST = {"n_trials": 40, "model": {"hidden": [8]},
        "training": {"epochs": 2, "batch_size": 64, "learning_rate": 0.02},
        "search": {"families": ["cross_entropy", "focal"]}}
HEARTBEAT = {"LOSSTUNE_HEARTBEAT_INTERVAL": "1", "LOSSTUNE_GRACE_PERIOD": "3"}


def search(study: Path, url: str, *args: str, env: dict | None = None,
           timeout: float = 500) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, "search", str(study), "--storage", url, *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def states(url: str, name: str = "tiny") -> dict[str, int]:
    study = optuna.load_study(study_name=name, storage=url)
    out: dict[str, int] = {}
    for t in study.trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def assert_clean_run(proc: subprocess.CompletedProcess) -> None:
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "database is locked" not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_four_workers_on_sqlite_lose_nothing(tmp_path):
    study = write_study(tmp_path, FAST)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    proc = search(study, url, "--workers", "4")
    assert_clean_run(proc)
    counts = states(url)
    assert sum(counts.values()) == 40
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 40, counts
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert len({t.number for t in trials}) == 40
    assert sum(1 for t in trials if t.user_attrs.get("baseline")) == 2  # each run exactly once


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_workers_on_postgresql_lose_nothing(tmp_path, postgres_url):
    study = write_study(tmp_path, FAST)
    proc = search(study, postgres_url, "--workers", "8")
    assert_clean_run(proc)
    counts = states("postgresql+psycopg" + postgres_url[len("postgresql"):])
    assert sum(counts.values()) == 40
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 40, counts


def retried_number(trial) -> int | None:
    import warnings

    with warnings.catch_warnings():  # "experimental" since Optuna 2.8; still the documented API
        warnings.simplefilter("ignore")
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def running_with_heartbeat(url: str) -> int:
    import sqlite3

    with sqlite3.connect(url[len("sqlite:///"):], timeout=30) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
            "WHERE t.state = 'RUNNING'").fetchone()[0]


def running_of(url: str, pid: int) -> int:
    """RUNNING trials of the worker process ``pid`` (the user attribute each trial records)."""
    import sqlite3

    with sqlite3.connect(url[len("sqlite:///"):], timeout=30) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id = "
            "t.trial_id WHERE t.state = 'RUNNING' AND a.key = 'pid' AND a.value_json = ?",
            (str(pid),)).fetchone()[0]


def _wait_for(url: str, predicate, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate(states(url)):
                return
        except (KeyError, ValueError):  # study not created yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out; states {states(url)}")


def _workers_of(parent: int) -> list[int]:
    """The spawned worker processes of a `losstune search` (not multiprocessing's tracker)."""
    children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True,
                              text=True).stdout.split()
    out = []
    for pid in map(int, children):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline:
            out.append(pid)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("population", [1, 3])
def test_worker_killed_mid_trial_is_failed_and_retried_in_the_same_run(tmp_path, population):
    """With populations, the killed worker's K running trials are all failed and retried."""
    # Longer trials for populations, so the kill lands while both train one.
    epochs = 2 if population == 1 else 25
    study = write_study(tmp_path, {**FAST, "n_trials": 14 if population == 1 else 20,
                                   "training": {
        **FAST["training"], "epochs": epochs, "population": population}})
    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = subprocess.Popen([EXE, "search", str(study), "--storage", url, "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **HEARTBEAT})
    # Mid-trial: both workers' running trials are training (each has its worker's pid), and
    # the one to be killed trains a whole population.
    _wait_for(url, lambda s: s.get("COMPLETE", 0) >= 3
              and running_with_heartbeat(url) == 2 * population)
    workers = _workers_of(proc.pid)
    assert len(workers) == 2, workers
    deadline = time.time() + 60
    while running_of(url, workers[-1]) != population and time.time() < deadline:
        time.sleep(0.05)
    os.kill(workers[-1], signal.SIGKILL)
    output, _ = proc.communicate(timeout=400)
    # The same run failed the trials, queued them again, replaced the worker, met its budget.
    assert proc.returncode == 0, output[-3000:]
    assert "killed by signal 9" in output and "queued again" in output, output[-3000:]
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    counts = states(url)
    assert counts.get("RUNNING", 0) == 0 and counts.get("WAITING", 0) == 0, counts
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == population, counts
    assert all("died" in t.user_attrs["error"] for t in failed)
    for lost in failed:
        retried = [t for t in trials if retried_number(t) == lost.number]
        assert len(retried) == 1 and retried[0].state.name in ("COMPLETE", "PRUNED")
        # Killed after it was asked but before its design was proposed, a trial has no
        # parameters yet: its retry proposes one.
        assert retried[0].params == lost.params or (not lost.params and retried[0].params)
    assert {t.user_attrs.get("population") for t in trials if t.state.name == "COMPLETE"} \
        <= {population, *range(1, population)}
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == (14 if population == 1
                                                                    else 20), counts


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_parent(tmp_path):
    study = write_study(tmp_path, {**FAST, "n_trials": 200})
    url = f"sqlite:///{tmp_path / 'p.db'}"
    proc = subprocess.Popen([EXE, "search", str(study), "--storage", url, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(url, lambda s: s.get("COMPLETE", 0) >= 2)
    workers = _workers_of(proc.pid)
    assert len(workers) == 2
    proc.kill()  # SIGKILL: the parent runs no handler
    proc.wait()
    deadline = time.time() + 60
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.5)
        alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
                 and b"Z" not in Path(f"/proc/{pid}/stat").read_bytes().split(b") ")[1][:1]]
    assert not alive, f"workers still running 60 s after the parent died: {alive}"


@pytest.mark.slow
def test_interrupted_study_resumes_without_losing_trials(tmp_path):
    study = write_study(tmp_path, {**FAST, "n_trials": 200})
    url = f"sqlite:///{tmp_path / 'i.db'}"
    proc = subprocess.Popen([EXE, "search", str(study), "--storage", url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(url, lambda s: s.get("COMPLETE", 0) >= 3)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-2000:]
    assert "Interrupted" in output and "Traceback" not in output
    before = {t.number: t.values for t in optuna.load_study(study_name="tiny", storage=url).trials
              if t.state.name == "COMPLETE"}
    assert states(url).get("RUNNING", 0) == 0
    assert_clean_run(search(study, url, "--n-trials", "3"))
    after = {t.number: t.values for t in optuna.load_study(study_name="tiny", storage=url).trials
             if t.state.name == "COMPLETE"}
    assert all(after[n] == v for n, v in before.items())  # nothing completed was lost
    assert len(after) >= len(before) + 3 - 1  # (a pruned trial would not count as complete)


@pytest.mark.slow
def test_single_worker_fixed_seed_is_repeatable(tmp_path):
    study = write_study(tmp_path, {**FAST, "n_trials": 6,
                                   "sampler": {"name": "tpe", "n_startup_trials": 3}})
    runs = []
    for i in range(2):
        url = f"sqlite:///{tmp_path / f'r{i}.db'}"
        assert_clean_run(search(study, url))
        runs.append(optuna.load_study(study_name="tiny", storage=url).trials)
    assert [t.params for t in runs[0]] == [t.params for t in runs[1]]
    for a, b in zip(*runs):
        assert a.value == pytest.approx(b.value, abs=1e-6)


def test_worker_seeds_differ_and_gpus_round_robin():
    from losstune.sampling import worker_seed
    from losstune.workers import gpu_assignment

    seeds = {worker_seed(7, w) for w in range(8)}
    assert len(seeds) == 8 and worker_seed(7, 0) == 7
    assert gpu_assignment("0,1", 5) == ["0", "1", "0", "1", "0"]
    assert gpu_assignment(None, 2) == [None, None]


def test_the_heartbeat_stops_even_when_a_second_signal_lands_in_between(tmp_path):
    # A heartbeat left beating keeps a dead worker's trials RUNNING for good. The batch's
    # thread is told to stop before it is waited for, so a second Ctrl-C in the wait still
    # ends it.
    from losstune import optuna_adapter

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat_interval=1)
    study = optuna.create_study(storage=storage)
    trials = [study.ask() for _ in range(3)]
    beat = optuna_adapter.Heartbeat(storage, [t._trial_id for t in trials])
    thread = beat._thread

    class Interrupted:
        def is_alive(self):
            return thread.is_alive()

        def join(self, *args, **kwargs):
            raise KeyboardInterrupt

    beat._thread = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        beat.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
