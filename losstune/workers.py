"""Several worker processes on one machine, sharing one study through the storage.

This is Optuna's own distributed model: every worker is an independent process with its own
sampler (seeded from the study seed and its worker index) talking to the same storage. On other
machines, ``losstune search`` with the same ``--storage postgresql://…`` joins the same study.

Local workers claim trials from a shared counter before starting each one, so a run of
``--n-trials N`` makes exactly N trials whatever the workers' speeds (Optuna's
``MaxTrialsCallback`` checks only after a trial, and would overshoot by up to workers − 1).
The parent process runs no trial: it draws the progress bar from the storage and forwards
Ctrl-C / SIGTERM to the workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


def _claim(counter: Any) -> bool:
    with counter.get_lock():
        if counter.value == 0:
            return False
        if counter.value > 0:
            counter.value -= 1
        return True


def _release(counter: Any) -> None:
    with counter.get_lock():
        if counter.value >= 0:
            counter.value += 1


def _worker_main(job: WorkerJob, counter: Any) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter, so CUDA_VISIBLE_DEVICES
    set here is seen by TensorFlow/PyTorch when they initialise)."""
    if job.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = job.gpu
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from losstune import runner, spec as spec_mod, stopping
    from losstune.storage import open_storage

    stopping.install()  # SIGTERM from the parent: stop the trial, start nothing new

    try:
        spec = spec_mod.load(job.spec_path)
        base_dir = Path(job.spec_path).parent.resolve()
        study = runner.create_or_load(spec, job.storage_url, study_name=job.study_name,
                                      worker=job.worker, base_dir=base_dir)
        ctx = runner.load_context(spec, base_dir, threads=job.threads)
        search = runner.Search(study, ctx, open_storage(job.storage_url),
                               deadline=job.deadline)
        guard, repeats = search.guard, 0
        while (not guard.tripped and not stopping.STOP.is_set()
               and repeats < runner.MAX_REPEATS
               and (job.deadline is None or time.time() < job.deadline)):
            if not _claim(counter):
                break
            if search.step():  # one search trial and its race
                repeats = 0
            else:  # a design tried before: it does not use up the budget
                repeats += 1
                _release(counter)
        if guard.tripped:
            with counter.get_lock():  # the others stop too: this run is broken
                counter.value = 0
    except KeyboardInterrupt:
        pass


def gpu_assignment(gpus: str | None, workers: int) -> list[str | None]:
    """Workers pinned round-robin to the listed GPUs; several workers may share one."""
    if not gpus:
        return [None] * workers
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    return [ids[i % len(ids)] for i in range(workers)]


def run(spec_path: Path, storage_url: str, study_name: str, *, workers: int,
        n_trials: int | None, timeout: float | None, gpus: str | None = None,
        on_poll: Callable[[], None] | None = None, poll_s: float = 0.5) -> None:
    """Start ``workers`` processes and wait for them. Ctrl-C stops them all cleanly."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", n_trials if n_trials else UNLIMITED)
    deadline = time.time() + timeout if timeout else None
    procs = []
    # Each worker gets its share of the cores (at least one): N processes each starting one
    # thread per core would fight over the CPUs.
    threads = max(1, (os.cpu_count() or 1) // workers)
    for worker, gpu in enumerate(gpu_assignment(gpus, workers)):
        job = WorkerJob(str(spec_path), storage_url, study_name, worker, deadline, gpu, threads)
        proc = ctx.Process(target=_worker_main, args=(job, counter), name=f"losstune-worker-{worker}")
        proc.start()
        procs.append(proc)
    from losstune.stopping import STOP

    forwarded = False
    try:
        while any(p.is_alive() for p in procs):
            if STOP.is_set() and not forwarded:  # Ctrl-C / SIGTERM here: pass it on once
                forwarded = True
                _signal_all(procs, counter)
            if on_poll:
                on_poll()
            time.sleep(poll_s)
        if on_poll:
            on_poll()
    except KeyboardInterrupt:  # a second Ctrl-C: the workers get a second signal too
        _signal_all(procs, counter)
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        for p in procs:
            p.join(timeout=5)


def _signal_all(procs: list, counter: Any) -> None:
    with counter.get_lock():
        counter.value = 0
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
