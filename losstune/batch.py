"""A batch of trials: asked from Optuna together, trained as populations, told one by one.

``study.optimize`` runs one trial per objective call. A population needs its K trials before
training starts, so this uses Optuna's ask-and-tell interface, its documented way to evaluate
trials in batches. TPE's ``constant_liar`` (on in losstune's sampler) treats the trials asked
and not yet told as if they had a bad value, so the K proposals of one batch spread out. Waiting
trials (baselines, queued replicate runs, retries of a killed worker's trials) are asked first,
as Optuna always does.

Everything ``study.optimize`` does around one trial is done here for each of the K: stale
trials failed and retried before asking (heartbeat storages), a heartbeat per running trial,
the trial's record, and the callbacks called after each tell. A worker killed mid-population
leaves its K trials RUNNING with its PID; the next run (or the parent, for local workers)
fails and retries all of them. Every search step and replicate run goes through here, a trial
alone as a batch of one (``k = 1``: trained alone, a kept compiled model where one fits).

Layer: training orchestration (above :mod:`losstune.trial`, :mod:`losstune.population` and
:mod:`losstune.recording`; below :mod:`losstune.runner`). The bookkeeping around a trial is what
sets the price of each verdict over seeds, so it is kept lean: the K trials are asked with one
read of the waiting ones (:func:`ask`), proposals check for repeats against one read of the
designs trained so far, records are written in one transaction each, and the tell skips
Optuna's two reads of a trial this process holds (:func:`tell_trial`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

from losstune import results
from losstune.stopping import INTERRUPTED, STOP

if TYPE_CHECKING:  # pragma: no cover
    import optuna


def run(study: "optuna.Study", ctx: Any, k: int, *, callbacks: list[Callable] = (),
        queued_only: bool = False) -> list["optuna.trial.FrozenTrial"]:
    """Ask ``k`` trials, train them (as populations of one seed index, optimizer and batch
    size), tell each as soon as it has its outcome; return the finished trials in the order
    they were told. ``ctx``: a trial Context, or a ``trial.Contexts`` (each run's seed index
    picks its context). ``queued_only``: a trial asked without a queued run (another worker
    took the queued one meanwhile) is failed untrained, not sampled."""
    import warnings

    import optuna
    from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

    from losstune import population, recording
    from losstune import trial as trial_mod
    from losstune.quiet import quiet_optuna

    quiet_optuna()
    if is_heartbeat_enabled(study._storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    trials = ask(study, k, waiting_only=queued_only)
    for t in trials:  # at once: a worker killed from here on leaves them all to be retried
        recording.start(t).set_user_attr(results.PID, os.getpid())
    recording.flush(trials)  # one transaction for the K (losstune/recording.py)
    # Optuna's own heartbeat thread, one per running trial, as study.optimize starts it, and
    # stopped before the trial is told.
    beats = {t.number: get_heartbeat_thread(t._trial_id, study._storage) for t in trials}
    for beat in beats.values():
        beat.__enter__()
    finished: list[Any] = []

    def tell(trial: Any, outcome: tuple[Any, Any]) -> None:
        state, values = outcome
        beats.pop(trial.number).__exit__(None, None, None)
        recording.start(trial).flush()  # the trial's record in one transaction, then its tell
        frozen = tell_trial(study, trial, state, values)
        finished.append(frozen)
        for callback in callbacks:
            callback(study, frozen)

    try:
        groups: dict[tuple[int, str, int], list[Any]] = {}
        contexts: dict[int, Any] = {}
        waiting: list[tuple[Any, Any]] = []  # repeats of a design training in this batch
        numbers = {t.number for t in trials}
        # The designs trained so far, read once for the batch's search trials (replicate
        # runs come with their design and seed). Another worker's design started during this
        # batch's proposals (milliseconds) may be trained twice on seed 0: wasted time, not
        # a wrong result (a design's runs are one design in every verdict).
        known = (trial_mod.trained_designs(study)
                 if any(results.SEED_INDEX not in t.user_attrs for t in trials) else {})
        for t in trials:
            if queued_only and results.SEED_INDEX not in t.user_attrs:
                t.set_user_attr(results.ERROR, "no queued run left to train")
                tell(t, (optuna.trial.TrialState.FAIL, None))
                continue
            c = trial_mod.context_of(ctx, t)
            outcome = _propose(t, c, numbers, known)
            recording.start(t).flush()  # the early record: the design and its key, now
            if isinstance(outcome, population.Member):
                contexts[id(c)] = c
                key = (id(c), outcome.training["optimizer"], int(outcome.training["batch_size"]))
                groups.setdefault(key, []).append(outcome)
            elif isinstance(outcome, int):  # the same design as trial `outcome` of this batch
                waiting.append((t, c))
            else:
                tell(t, outcome)
        for (cid, _, _), members in groups.items():
            c = contexts[cid]
            if STOP.is_set():
                for m in members:
                    m.interrupted = True
                    tell(m.trial, _finish(m, c))
                continue
            alone = members if len(members) == 1 else population.unstackable(members, c)
            for m in alone:  # alone: a kept compiled model where one fits
                tell(m.trial, _alone(m, c))
            trained_alone = {id(m) for m in alone}
            members = [m for m in members if id(m) not in trained_alone]
            if not members:
                continue
            try:
                members = population.train(members, c, report=not c.spec.multi_objective)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - each member records it
                for m in members:
                    tell(m.trial, _failed(m.trial, err))
                continue
            for m in members:
                tell(m.trial, _finish(m, c))
        repeats = {t.number for t, _ in waiting}
        for t, c in waiting:  # the earlier trial is told now: answered as any repeat
            tell(t, _answer_later(t, c, repeats))
    except BaseException as err:  # a second Ctrl-C, a sampler's or storage's error
        _stop_beats(list(beats.values()))
        beats.clear()
        _fail_untold(study, trials, finished, err)
        raise
    finally:  # stop what still beats
        _stop_beats(list(beats.values()))
    return finished


def _fail_untold(study: "optuna.Study", trials: list[Any], finished: list[Any],
                 err: BaseException) -> None:
    """The batch's trials not told yet, FAIL with the reason, straight in the storage (as
    Optuna's fail_stale_trials does: a sampler whose after_trial raised would raise again).
    Left RUNNING, they stayed so for good where no heartbeat runs."""
    from optuna.trial import TrialState

    from losstune.errors import one_line

    told = {f.number for f in finished}
    reason = INTERRUPTED if isinstance(err, KeyboardInterrupt) else one_line(err)
    for t in trials:
        if t.number in told:
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, results.ERROR, reason)
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - the storage itself may be what failed
            continue


def tell_trial(study: "optuna.Study", trial: "optuna.Trial", state: Any,
               values: Any) -> "optuna.trial.FrozenTrial":
    """``study.tell(trial, values, state=state)``, with its checks, its value for a pruned
    trial (the last intermediate value) and its sampler hook, without its two reads of the
    trial from the storage (before and after; 7 SQL statements each, the largest part of a
    population's bookkeeping after the records): the trial this process ran is what it holds,
    its record written just before (losstune/recording.py). The storage's update is Optuna's
    own, atomic, refusing a trial that is already finished. The frozen trial handed to the
    callbacks is the one this process holds: its system attributes are those it was asked
    with (losstune's callbacks read its state, values and user attributes), its completion
    time this process's clock."""
    import copy
    import datetime

    from optuna import pruners
    from optuna.study._tell import _check_state_and_values, _check_values_are_feasible
    from optuna.trial import TrialState

    if values is not None and not isinstance(values, (list, tuple)):
        values = [values]
    _check_state_and_values(state, values)
    if trial._cached_frozen_trial.state != TrialState.RUNNING:  # told already, here
        raise ValueError(f"Cannot tell a {trial._cached_frozen_trial.state.name} trial.")
    frozen = copy.deepcopy(trial._cached_frozen_trial)
    if state == TrialState.COMPLETE:
        problem = _check_values_are_feasible(study, values)
        if problem is not None:
            raise ValueError(problem)
    elif state == TrialState.PRUNED and frozen.last_step is not None:
        last = frozen.intermediate_values[frozen.last_step]
        if _check_values_are_feasible(study, [last]) is None:
            values = [last]
    values = None if values is None else [float(v) for v in values]
    study._thread_local.cached_all_trials = None
    # The grid sampler (Optuna's BruteForceSampler) calls study.stop() from after_trial once
    # its grid is covered, which Optuna allows only inside study.optimize. The search loop
    # stops by itself: a covered grid proposes only designs already trained (runner.Search).
    inside = study._thread_local.in_optimize_loop
    study._thread_local.in_optimize_loop = True
    try:
        study.sampler.after_trial(pruners._filter_study(study, frozen), frozen, state, values)
    finally:
        study._thread_local.in_optimize_loop = inside
        study._stop_flag = False
        study._storage.set_trial_state_values(frozen._trial_id, state, values)
    # Told: no second tell, no record after it, and a later trial of the batch that proposes
    # the same design reads this outcome (trial._repeat_of).
    trial._cached_frozen_trial.state, trial._cached_frozen_trial.values = state, values
    frozen.state, frozen.values = state, values
    frozen.datetime_complete = datetime.datetime.now()
    return frozen


def ask(study: "optuna.Study", k: int, waiting_only: bool = False) -> list["optuna.Trial"]:
    """``k`` trials, as ``k`` calls of ``study.ask()`` give them: waiting trials first (each
    claimed by Optuna's own atomic WAITING → RUNNING update, so two workers never take the
    same one), then new ones (none with ``waiting_only``: a replicate run is trained only
    from its queued trial). ``study.ask()`` reads the study's waiting trials again for each
    trial, and with the cached storage that read fetches every running trial whole (16 ms a
    call with a population running); here it is read once for the K. The trials' parameters
    are written as they are proposed, and TPE's constant liar reads the running trials from
    the storage, so a batch's proposals still spread out."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage, ids = study._storage, []
    for t in storage.get_all_trials(study._study_id, deepcopy=False,
                                    states=(TrialState.WAITING,)):
        if len(ids) == k:
            break
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                ids.append(t._trial_id)
        except UpdateFinishedTrialError:  # another worker finished it meanwhile
            continue
    trials = []
    for i in range(len(ids) if waiting_only else k):
        study._thread_local.cached_all_trials = None  # as study.ask() clears it
        trial_id = ids[i] if i < len(ids) else storage.create_new_trial(study._study_id)
        trials.append(optuna.Trial(study, trial_id))
    return trials


def _stop_beats(beats: list[Any]) -> None:
    """Stop heartbeat threads, every one even if a second signal lands in here: Optuna's
    beats are non-daemon threads, and one left running keeps the process alive and its trial
    RUNNING. Every beat is told to stop first (no waiting), then each is joined."""
    for beat in beats:
        stop = getattr(beat, "_stop_event", None)  # Optuna's HeartbeatThread; None for no beat
        if stop is not None:
            stop.set()
    for beat in beats:
        beat.__exit__(None, None, None)


def _propose(trial: Any, ctx: Any, batch: set[int], known: dict[str, Any]) -> Any:
    """The trial's design as a population member; or its outcome when it has one already (a
    repeat of a trained design, a failure to build its loss); or, for a repeat of a design
    that trains in this batch (trial numbers ``batch``), that trial's number."""
    import optuna

    from losstune import losses, population
    from losstune import trial as trial_mod

    try:
        training, description = trial_mod._propose(trial, ctx)
        earlier = trial_mod._repeat_of(trial, description, known)
        if earlier is not None:
            if earlier.number in batch and earlier.state.name == "RUNNING":
                return earlier.number
            return (optuna.trial.TrialState.COMPLETE,
                    trial_mod.answer_repeat(trial, earlier, ctx.spec))
        return population.Member(trial, description, training, losses.build_loss(description))
    except optuna.TrialPruned:
        return optuna.trial.TrialState.PRUNED, None
    except (Exception, SystemExit) as err:  # noqa: BLE001 - recorded on the trial
        return _failed(trial, err)


def _answer_later(trial: Any, ctx: Any, repeats: set[int]) -> tuple[Any, Any]:
    """A repeat of a design that trained in the same batch, answered now that it is told. The
    batch's other repeats (still RUNNING, untold) are no earlier training of it: when the
    training failed or was interrupted, they pointed at each other and were told PRUNED."""
    import optuna

    from losstune import trial as trial_mod

    earlier = trial_mod.trained_designs(trial.study, but=repeats).get(
        trial.user_attrs[results.DESIGN_KEY])
    if earlier is None:  # it failed, or was interrupted: this proposal ends with it, untrained
        trial.set_user_attr(results.ERROR, INTERRUPTED if STOP.is_set()
                            else "the same design failed in this batch")
        return optuna.trial.TrialState.FAIL, None
    try:
        return (optuna.trial.TrialState.COMPLETE,
                trial_mod.answer_repeat(trial, earlier, ctx.spec))
    except optuna.TrialPruned:
        return optuna.trial.TrialState.PRUNED, None


def _finish(member: Any, ctx: Any) -> tuple[Any, Any]:
    """Record a trained member as a trial alone is recorded; its state and value(s)."""
    import optuna

    from losstune import trial as trial_mod

    t = member.trial
    try:
        trial_mod.record_training(t, ctx.spec.objective.metrics[0], member.values,
                                  member.logs, member.seconds, member.epoch_seconds)
        trial_mod._stop_unless_finished(t, member, interrupted=member.interrupted)
        values = trial_mod.record_scores(
            t, ctx, member.description, val_out=member.val_out, test_out=member.test_out,
            val_scores=member.val_scores, test_scores=member.test_scores,
            seconds=member.seconds, epoch_seconds=member.epoch_seconds,
            warnings=member.warnings)
        return optuna.trial.TrialState.COMPLETE, values
    except optuna.TrialPruned:
        return optuna.trial.TrialState.PRUNED, None
    except (Exception, SystemExit) as err:  # noqa: BLE001 - recorded on the trial
        return _failed(t, err)


def _alone(member: Any, ctx: Any) -> tuple[Any, Any]:
    """Train one proposed design by itself, as study.optimize would run it."""
    import optuna

    from losstune import trial as trial_mod

    try:
        return optuna.trial.TrialState.COMPLETE, trial_mod.train_alone(
            member.trial, ctx, member.training, member.description)
    except optuna.TrialPruned:
        return optuna.trial.TrialState.PRUNED, None
    except (Exception, SystemExit):  # noqa: BLE001 - recorded by train_alone
        return optuna.trial.TrialState.FAIL, None


def _failed(trial: Any, err: BaseException) -> tuple[Any, None]:
    import optuna

    from losstune import trial as trial_mod

    if not isinstance(err, (trial_mod.LossDivergedError, trial_mod.TrialInterrupted)):
        trial.set_user_attr(results.ERROR, trial_mod.error_message(err))  # else already set
    return optuna.trial.TrialState.FAIL, None
