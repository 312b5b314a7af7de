"""Several worker processes on one machine, sharing one study through the storage.

This is Optuna's own distributed model: every worker is an independent process with its own
sampler (seeded from the study seed and its worker index) talking to the same storage. On other
machines, ``losstune search`` with the same ``--storage postgresql://…`` joins the same study.

Local workers claim trials from a shared counter before starting each one, so a run of
``--n-trials N`` makes exactly N trials whatever the workers' speeds (Optuna's
``MaxTrialsCallback`` checks only after a trial, and would overshoot by up to workers − 1).
The parent process runs no trial: it draws the progress bar from the storage and forwards
Ctrl-C / SIGTERM to the workers.

Layer: search.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from losstune import optuna_adapter
from losstune.errors import LosstuneError

UNLIMITED = -1


@dataclass(frozen=True)
class WorkerJob:
    spec_path: str
    storage_url: str
    study_name: str
    worker: int
    deadline: float | None  # time.time() after which no trial starts
    gpu: str | None
    threads: int | None = None  # CPU threads for this worker's kernels
    parent_pid: int = 0


def _claim(counter: Any, n: int = 1) -> int:
    """Take up to ``n`` trials of the budget (a negative counter: no budget); how many."""
    with counter.get_lock():
        if counter.value < 0:
            return n
        got = min(n, counter.value)
        counter.value -= got
        return got


def _release(counter: Any, n: int = 1) -> None:
    with counter.get_lock():
        if counter.value >= 0:
            counter.value += n


def _worker_main(job: WorkerJob, counter: Any) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter, so CUDA_VISIBLE_DEVICES
    set here is seen by TensorFlow/PyTorch when they initialise)."""
    if job.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = job.gpu
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from losstune import runner, studyfile as spec_mod, stopping
    from losstune.storage import open_storage

    stopping.install()  # SIGTERM from the parent: stop the trial, start nothing new
    _die_with_parent(job.parent_pid)

    try:
        spec = spec_mod.load(job.spec_path)
        base_dir = Path(job.spec_path).parent.resolve()
        study = runner.create_or_load(spec, job.storage_url, study_name=job.study_name,
                                      worker=job.worker, base_dir=base_dir,
                                      queue_baselines=False)  # the parent queued them
        ctx = runner.load_context(spec, base_dir, threads=job.threads)
        search = runner.Search(study, ctx, open_storage(job.storage_url),
                               deadline=job.deadline)
        guard, repeats = search.guard, 0
        while (not guard.tripped and not stopping.STOP.is_set()
               and repeats < runner.MAX_REPEATS
               and (job.deadline is None or time.time() < job.deadline)):
            got = _claim(counter, search.next_size())
            if not got:
                break
            new, repeated = search.step(size=got)  # search trials (a population) and races
            repeats = 0 if new else repeats + repeated
            if got > new:  # designs tried before do not use up the budget
                _release(counter, got - new)
        if guard.tripped:
            with counter.get_lock():  # the others stop too: this run is broken
                counter.value = 0
    except KeyboardInterrupt:
        pass
    except Exception as err:  # noqa: BLE001 - one line (no traceback, no secret); the parent
        # reports the worker's exit status with its faults
        from losstune.errors import one_line
        from losstune.storage import scrub_known

        text = str(err) if isinstance(err, LosstuneError) else one_line(err)
        print(f"Error: worker {job.worker}: {scrub_known(text)}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(err, LosstuneError) else 1)


ORPHAN_GRACE_S = 20.0  # an orphaned worker's time to record its trial as interrupted


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive the ``losstune search`` that started it (kill -9 of the
    parent leaves no handler to stop it). Linux: the kernel sends SIGTERM when the parent dies
    (prctl PR_SET_PDEATHSIG), which stops the running trial cleanly; elsewhere, and for a
    parent that died before this line, a watchdog thread does the same. A worker still alive
    ORPHAN_GRACE_S later exits at once: its trials are failed and retried by the next run."""
    import ctypes
    import threading

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux
        pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)  # still here: whatever holds the process, end it
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="losstune-parent-watch").start()


def gpu_assignment(gpus: str | None, workers: int) -> list[str | None]:
    """Workers pinned round-robin to the listed GPUs; several workers may share one."""
    if not gpus:
        return [None] * workers
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    return [ids[i % len(ids)] for i in range(workers)]


class BudgetNotMet(LosstuneError):
    """Workers died and the run made fewer new designs than asked."""

    exit_code = 1


@dataclass
class Fault:
    """A worker that died during the run, and what was done about its trials."""

    worker: int
    pid: int
    exitcode: int
    failed: list[str]   # "study#number" of the trials it left running, now FAIL
    retried: int        # of those, how many were queued again
    replaced: bool      # a new worker took its place

    def describe(self) -> str:
        how = (f"killed by signal {-self.exitcode}" if self.exitcode < 0
               else f"exited with status {self.exitcode}")
        what = (f"its trial{'s' if len(self.failed) > 1 else ''} {', '.join(self.failed)} "
                f"marked FAIL, {self.retried} queued again" if self.failed
                else "no trial was running")
        return (f"worker {self.worker} (pid {self.pid}) {how}: {what}"
                f"{'; a new worker took its place' if self.replaced else ''}")


def run(spec_path: Path, storage_url: str, study_name: str, *, workers: int,
        n_trials: int | None, timeout: float | None, gpus: str | None = None,
        on_poll: Callable[[], None] | None = None, poll_s: float = 0.5) -> list[Fault]:
    """Start ``workers`` processes and wait for them. Ctrl-C stops them all cleanly. A worker
    that dies (SIGKILL, out of memory) has its running trials failed and queued again at once,
    and a new worker takes its place; returns what happened."""
    ctx = mp.get_context("spawn")
    # 64 bits: a budget above 2**31 must not wrap (README: n_trials is bounded anyway).
    counter = ctx.Value("q", n_trials if n_trials else UNLIMITED)
    deadline = time.time() + timeout if timeout else None
    # Each worker gets its share of the cores (at least one): N processes each starting one
    # thread per core would fight over the CPUs.
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [WorkerJob(str(spec_path), storage_url, study_name, worker, deadline, gpu, threads,
                      os.getpid())
            for worker, gpu in enumerate(gpu_assignment(gpus, workers))]

    def start(job: WorkerJob) -> Any:
        proc = ctx.Process(target=_worker_main, args=(job, counter),
                           name=f"losstune-worker-{job.worker}")
        proc.start()
        return proc

    procs = {job.worker: start(job) for job in jobs}
    every_pid = {p.pid for p in procs.values()}
    from losstune.stopping import STOP

    faults: list[Fault] = []
    forwarded = False
    try:
        while any(p.is_alive() for p in procs.values()):
            if STOP.is_set() and not forwarded:  # Ctrl-C / SIGTERM here: pass it on once
                forwarded = True
                _signal_all(list(procs.values()), counter)
            for worker, proc in list(procs.items()):
                if proc.is_alive() or proc.exitcode in (0, None) or proc.pid in _handled(faults):
                    continue
                failed, retried = recover(storage_url, study_name, {proc.pid})
                lost = sum(1 for f in failed if f.rpartition("#")[0] == study_name)
                if lost:  # its claims (a population's K) made no trial: the retries claim them
                    _release(counter, lost)
                replace = (not forwarded and len(faults) < 2 * workers
                           and counter.value != 0 and proc.exitcode < 0)
                faults.append(Fault(worker, proc.pid, proc.exitcode, failed, retried, replace))
                if replace:
                    procs[worker] = start(jobs[worker])
                    every_pid.add(procs[worker].pid)
            if on_poll:
                on_poll()
            time.sleep(poll_s)
        # A worker killed in its last trial, seen only now; and any trial left RUNNING by one.
        for worker, proc in procs.items():
            if proc.exitcode not in (0, None) and proc.pid not in _handled(faults):
                failed, retried = recover(storage_url, study_name, {proc.pid})
                faults.append(Fault(worker, proc.pid, proc.exitcode, failed, retried, False))
        if on_poll:
            on_poll()
    except KeyboardInterrupt:  # a second Ctrl-C: the workers get a second signal too
        _signal_all(list(procs.values()), counter)
        for p in procs.values():
            p.join(timeout=60)
        raise
    finally:
        for p in procs.values():
            p.join(timeout=5)
    return faults


def _handled(faults: list[Fault]) -> set[int]:
    return {f.pid for f in faults}


def recover(storage_url: str, study_name: str, pids: set[int]) -> tuple[list[str], int]:
    """Fail the trials that processes ``pids`` (dead) left RUNNING, in the study and its
    replicate-runs study, and queue each again the way Optuna's heartbeat does
    (``RetryHeartbeatStaleTrialCallback``, up to 3 retries). Returns (failed, retried)."""
    import copy

    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    from losstune import results
    from losstune.storage import open_storage, study_names

    storage = open_storage(storage_url, heartbeat=False)
    failed, retried = [], 0
    names = [n for n in (study_name, study_name + results.RUNS_SUFFIX)
             if n in study_names(storage)]
    retry = RetryHeartbeatStaleTrialCallback(max_retry=3)
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(results.PID) not in pids:
                continue
            try:
                storage.set_trial_user_attr(optuna_adapter.trial_id(t), results.ERROR,
                                            "the worker process running it died")
                storage.set_trial_state_values(optuna_adapter.trial_id(t), state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue
            failed.append(f"{name}#{t.number}")
            frozen = copy.deepcopy(storage.get_trial(optuna_adapter.trial_id(t)))
            # The retry starts as the run it repeats (its design, seed, baseline), not with
            # this attempt's error or measurements.
            keep = (results.BASELINE, results.BASELINE_PARAMS, results.DESIGN_KEY,
                    results.SEED_INDEX, results.SOURCE_TRIAL)
            frozen.user_attrs = {k: v for k, v in frozen.user_attrs.items() if k in keep}
            before = len(study.get_trials(deepcopy=False))
            retry(study, frozen)
            retried += len(study.get_trials(deepcopy=False)) > before
    return failed, retried


def _signal_all(procs: list, counter: Any) -> None:
    with counter.get_lock():
        counter.value = 0
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
