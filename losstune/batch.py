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
leaves its K trials RUNNING with their heartbeat (and, once proposed, its PID; without
heartbeats, a journal file, the PID from the start); the next run (or at once the parent, for
local workers' trials with its PID) fails and retries all of them. Every search step and
replicate run goes through here, a trial alone as a batch of one (``k = 1``: trained alone, a
kept compiled model where one fits).

Layer: training (above :mod:`losstune.trial`, :mod:`losstune.population` and
:mod:`losstune.recording`; below :mod:`losstune.runner`). The bookkeeping around a trial is what
sets the price of each verdict over seeds, so it is kept lean: one read finds the waiting
trials and the designs trained so far, the K trials are asked from it (:func:`ask`),
proposals check for repeats against it, records are written in one transaction each, and the
tell skips Optuna's two reads of a trial this process holds (:func:`tell_trial`).
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
    import optuna

    from losstune import optuna_adapter as adapter
    from losstune import population, recording
    from losstune import trial as trial_mod
    from losstune.quiet import quiet_optuna

    quiet_optuna()
    storage = adapter.storage_of(study)
    adapter.fail_stale_trials(study)
    # The designs trained so far, read with the waiting trials in one read, for the batch's
    # search trials (replicate runs come with their design and seed). Another worker's design
    # started during this batch's proposals (milliseconds) may be trained twice on seed 0:
    # wasted time, not a wrong result (a design's runs are one design in every verdict).
    if queued_only:
        queued, known = adapter.waiting_trial_ids(study), {}
    else:
        queued, known = trial_mod.waiting_and_trained(study)
    # The K trials with their first heartbeat, at once (and their worker's PID from their
    # early record on; without heartbeats, from the start): a worker killed from here on
    # leaves them all to be retried. Then one thread beats them until each is told.
    trials = ask(study, k, waiting_only=queued_only, waiting=queued)
    beat = adapter.Heartbeat(storage, [adapter.trial_id(t) for t in trials])
    finished: list[Any] = []

    def tell(told: list[tuple[Any, tuple[Any, Any]]]) -> None:
        """Tell these trials their outcomes, their records and outcomes in one write."""
        for t, _ in told:
            beat.done(adapter.trial_id(t))
        for frozen in tell_trials(study, [(t, state, values) for t, (state, values) in told]):
            finished.append(frozen)
            for callback in callbacks:
                callback(study, frozen)

    try:
        groups: dict[tuple[int, str, int], list[Any]] = {}
        contexts: dict[int, Any] = {}
        waiting: list[tuple[Any, Any]] = []  # repeats of a design training in this batch
        numbers = {t.number for t in trials}
        # The early records (each design and its key): each right after its proposal where
        # the sampler reads the running trials' parameters (TPE's and GP's constant liar,
        # brute force's duplicates), else all of the batch's in one transaction.
        each = _reads_running(study.sampler)
        early: list[Any] = []
        for t in trials:
            if queued_only and results.SEED_INDEX not in t.user_attrs:
                t.set_user_attr(results.ERROR, "no queued run left to train")
                tell([(t, (optuna.trial.TrialState.FAIL, None))])
                continue
            c = trial_mod.context_of(ctx, t)
            outcome = _propose(t, c, numbers, known)
            if each:
                recording.start(t).flush()
            if isinstance(outcome, population.Member):
                early.append(t)
                contexts[id(c)] = c
                key = (id(c), outcome.training["optimizer"], int(outcome.training["batch_size"]))
                groups.setdefault(key, []).append(outcome)
            elif isinstance(outcome, int):  # the same design as trial `outcome` of this batch
                waiting.append((t, c))
                early.append(t)
            else:
                tell([(t, outcome)])
        if not each and early:
            recording.flush(early)
        for (cid, _, _), members in groups.items():
            c = contexts[cid]
            if STOP.is_set():
                for m in members:
                    m.interrupted = True
                tell([(m.trial, _finish(m, c)) for m in members])
                continue
            alone = members if len(members) == 1 else population.unstackable(members, c)
            for m in alone:  # alone: a kept compiled model where one fits
                tell([(m.trial, _alone(m, c))])
            trained_alone = {id(m) for m in alone}
            members = [m for m in members if id(m) not in trained_alone]
            if not members:
                continue
            try:
                members = population.train(members, c, report=not c.spec.multi_objective)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - each member records it
                tell([(m.trial, _failed(m.trial, err)) for m in members])
                continue
            tell([(m.trial, _finish(m, c)) for m in members])
        repeats = {t.number for t, _ in waiting}
        for t, c in waiting:  # the earlier trial is told now: answered as any repeat
            tell([(t, _answer_later(t, c, repeats))])
    except BaseException as err:  # a second Ctrl-C, a sampler's or storage's error
        beat.stop()
        _fail_untold(study, trials, finished, err)
        raise
    finally:  # stop what still beats
        beat.stop()
    return finished


def _fail_untold(study: "optuna.Study", trials: list[Any], finished: list[Any],
                 err: BaseException) -> None:
    """The batch's trials not told yet, FAIL with the reason, straight in the storage (as
    Optuna's fail_stale_trials does: a sampler whose after_trial raised would raise again).
    Left RUNNING, they stayed so for good where no heartbeat runs."""
    from optuna.trial import TrialState

    from losstune.errors import one_line

    from losstune import optuna_adapter as adapter

    told = {f.number for f in finished}
    reason = INTERRUPTED if isinstance(err, KeyboardInterrupt) else one_line(err)
    storage = adapter.storage_of(study)
    for t in trials:
        if t.number in told:
            continue
        try:
            storage.set_trial_user_attr(adapter.trial_id(t), results.ERROR, reason)
            storage.set_trial_state_values(adapter.trial_id(t), state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - the storage itself may be what failed
            continue


def tell_trial(study: "optuna.Study", trial: "optuna.Trial", state: Any,
               values: Any) -> "optuna.trial.FrozenTrial":
    """``study.tell(trial, values, state=state)`` (:func:`tell_trials` for one trial)."""
    return tell_trials(study, [(trial, state, values)])[0]


def tell_trials(study: "optuna.Study", told: list[tuple[Any, Any, Any]]
                ) -> list["optuna.trial.FrozenTrial"]:
    """``study.tell(trial, values, state=state)`` for each ``(trial, state, values)``, with
    its checks, its value for a pruned trial (the last intermediate value) and its sampler
    hook, without its two reads of each trial from the storage (before and after; 7 SQL
    statements each): the trials this process ran are what it holds. The storage's update
    writes the rest of their records and their outcomes in one transaction
    (losstune/recording.py), refusing a trial that is already finished. The frozen trials
    handed back (to the callbacks) are the ones this process holds: their system attributes
    are those they were asked with (losstune's callbacks read state, values and user
    attributes), their completion time this process's clock."""
    import copy
    import datetime

    from optuna.trial import TrialState

    from losstune import optuna_adapter as adapter
    from losstune import recording

    outcomes, frozens, seen = [], [], set()
    for trial, state, values in told:
        if values is not None and not isinstance(values, (list, tuple)):
            values = [values]
        adapter.check_state_and_values(state, values)
        held = adapter.held(trial)
        if held.state != TrialState.RUNNING:  # told already, here
            raise ValueError(f"Cannot tell a {held.state.name} trial.")
        if held.number in seen:
            raise ValueError(f"Cannot tell trial {held.number} twice.")
        seen.add(held.number)
        frozen = copy.deepcopy(held)
        if state == TrialState.COMPLETE:
            problem = adapter.infeasible(study, values)
            if problem is not None:
                raise ValueError(problem)
        elif state == TrialState.PRUNED and frozen.last_step is not None:
            last = frozen.intermediate_values[frozen.last_step]
            if adapter.infeasible(study, [last]) is None:
                values = [last]
        values = None if values is None else [float(v) for v in values]
        outcomes.append((trial, state, values))
        frozens.append(frozen)
    adapter.forget_cached_trials(study)
    try:  # as Optuna's tell: the outcomes are written even if a sampler's hook raises
        for (_, state, values), frozen in zip(outcomes, frozens):
            adapter.after_trial(study, frozen, state, values)
    finally:
        refused = recording.tell(outcomes)
    now = datetime.datetime.now()
    told_now = []
    for (trial, state, values), frozen in zip(outcomes, frozens):
        if adapter.trial_id(trial) in refused:
            # Another process failed it as stale (and queued its retry) before this result
            # was written: the result is dropped, as Optuna's skip_if_finished drops it.
            import logging

            logging.getLogger("losstune").warning(
                "trial %d was finished by another process before its result was written "
                "(its heartbeat had stopped); the result is dropped", frozen.number)
            continue
        told_now.append(frozen)
        # Told: no second tell, no record after it, and a later trial of the batch that
        # proposes the same design reads this outcome (trial.repeat_of).
        held = adapter.held(trial)
        held.state, held.values = state, values
        frozen.state, frozen.values = state, values
        frozen.datetime_complete = now
    return told_now


class _Claimed:
    """A claimed waiting trial before it is an ``optuna.Trial`` (for :func:`_fail_untold`)."""

    def __init__(self, tid: int) -> None:
        self._trial_id, self.number = tid, None


def ask(study: "optuna.Study", k: int, waiting_only: bool = False,
        waiting: list[int] | None = None) -> list["optuna.Trial"]:
    """``k`` trials, as ``k`` calls of ``study.ask()`` give them, each with this worker's PID
    and its first heartbeat stored: waiting trials first (each claimed by Optuna's own atomic
    WAITING → RUNNING update, so two workers never take the same one), then new ones (none
    with ``waiting_only``: a replicate run is trained only from its queued trial).
    ``study.ask()`` reads the study's waiting trials again for each trial (with the cached
    storage, every running trial whole: 16 ms a call with a population running), creates
    each trial in a transaction of its own and reads it back; here the waiting trials' ids
    are read once for the K (``waiting``: read already) and the new ones created in one
    transaction (losstune/optuna_adapter.py). A trial's parameters are written with its early
    record: right after its proposal where the sampler reads the running trials' parameters
    (TPE's constant liar, which then still spreads a batch's proposals out), else with the
    batch's other early records in one transaction."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from losstune import optuna_adapter as adapter
    from losstune import recording

    storage, ids = adapter.storage_of(study), []
    for tid in adapter.waiting_trial_ids(study) if waiting is None else waiting:
        if len(ids) == k:
            break
        try:
            if storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                ids.append(tid)
        except UpdateFinishedTrialError:  # another worker finished it meanwhile
            continue
    adapter.forget_cached_trials(study)  # as study.ask() clears it
    mine = {results.PID: os.getpid()}
    beats = adapter.heartbeat_enabled(storage)
    trials: list[Any] = []
    try:
        trials = [optuna.Trial(study, trial_id) for trial_id in ids]
        if trials:
            for t in trials:
                recording.start(t).set_user_attr(results.PID, mine[results.PID])
            recording.flush(trials, heartbeat=beats)
        if not waiting_only:  # the new ones in one transaction, not read back. With
            # heartbeats, their PID goes with their early record (until then their heartbeat
            # finds them if the worker dies: a trial alone is one SQL statement shorter);
            # without (a journal file), with the trials themselves.
            new = adapter.new_trials(study, k - len(ids), None if beats else mine,
                                     heartbeat=beats)
            for t in new if beats else ():
                recording.start(t).set_user_attr(results.PID, mine[results.PID])
            trials += new
    except BaseException as err:
        # A claimed trial without its PID and heartbeat would stay RUNNING for good: failed
        # with the reason (a queued baseline is queued again by the next run).
        _fail_untold(study, [_Claimed(tid) for tid in ids], [], err)
        raise
    for t in trials:  # from here on the trials' suggestions and records are held until written
        recording.start(t)
    return trials


def _reads_running(sampler: Any) -> bool:
    """Whether ``sampler`` reads the parameters of running trials when it proposes: all but
    Optuna's random and CMA-ES samplers (CMA-ES's own independent TPE has no constant liar)."""
    import optuna

    return not isinstance(sampler, (optuna.samplers.RandomSampler,
                                    optuna.samplers.CmaEsSampler))


def _propose(trial: Any, ctx: Any, batch: set[int], known: dict[str, Any]) -> Any:
    """The trial's design as a population member; or its outcome when it has one already (a
    repeat of a trained design, a failure to build its loss); or, for a repeat of a design
    that trains in this batch (trial numbers ``batch``), that trial's number."""
    import optuna

    from losstune import losses, population
    from losstune import trial as trial_mod

    try:
        training, description = trial_mod.propose(trial, ctx)
        earlier = trial_mod.repeat_of(trial, description, known)
        if earlier is not None:
            if earlier.number in batch and earlier.state.name == "RUNNING":
                return earlier.number
            return (optuna.trial.TrialState.COMPLETE,
                    trial_mod.answer_repeat(trial, earlier, ctx.spec))
        with losses.holding():  # its values are stacked into the population's variables
            loss = losses.build_loss(description)
        return population.Member(trial, description, training, loss)
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
        trial_mod.stop_unless_finished(t, member, interrupted=member.interrupted)
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
