"""A batch of trials: asked from Optuna together, trained as populations, told one by one.

``study.optimize`` runs one trial per objective call. A population needs its K trials before
training starts, so this uses Optuna's ask-and-tell interface, its documented way to evaluate
trials in batches. TPE's ``constant_liar`` (on in losstune's sampler) treats the trials asked
and not yet told as if they had a bad value, so the K proposals of one batch spread out. Waiting
trials (baselines, queued replicate runs, retries of a killed worker's trials) are asked first,
as Optuna always does.

Everything ``study.optimize`` does around one trial is done here for each of the K: stale
trials failed and retried before asking (heartbeat storages), a heartbeat per running trial,
the trial's record written exactly as :mod:`losstune.trial` writes it alone, and the callbacks
called after each tell. A worker killed mid-population leaves its K trials RUNNING with its PID;
the next run (or the parent, for local workers) fails and retries all of them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable

from losstune import results

if TYPE_CHECKING:  # pragma: no cover
    import optuna


def run(study: "optuna.Study", ctx: Any, k: int, *,
        callbacks: list[Callable] = ()) -> list["optuna.trial.FrozenTrial"]:
    """Ask ``k`` trials, train them (as populations of one seed index, optimizer and batch
    size), tell them; return the finished trials in the order they were asked. ``ctx``: a
    trial Context, or a ``runner.Contexts`` (each run's seed index picks its context)."""
    import warnings

    import optuna
    from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

    from losstune import population
    from losstune.runner import Contexts, quiet_optuna

    quiet_optuna()
    if is_heartbeat_enabled(study._storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    with warnings.catch_warnings():
        # Optuna warns that heartbeats are meant for study.optimize; they are kept here the
        # way study.optimize keeps them.
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trials = [study.ask() for _ in range(k)]

    def context_of(trial: Any) -> Any:
        if isinstance(ctx, Contexts):
            return ctx.get(int(trial.user_attrs.get(results.SEED_INDEX, 0)))
        return ctx

    outcomes: dict[int, tuple[Any, Any]] = {}
    with contextlib.ExitStack() as heartbeats:
        # Optuna's own heartbeat thread, one per running trial, as study.optimize starts it.
        for t in trials:
            heartbeats.enter_context(get_heartbeat_thread(t._trial_id, study._storage))
        groups: dict[tuple[int, str, int], list[Any]] = {}
        contexts: dict[int, Any] = {}
        for t in trials:
            c = context_of(t)
            outcome = _propose(t, c)
            if isinstance(outcome, population.Member):
                contexts[id(c)] = c
                key = (id(c), outcome.training["optimizer"], int(outcome.training["batch_size"]))
                groups.setdefault(key, []).append(outcome)
            else:
                outcomes[t.number] = outcome
        for (cid, _, _), members in groups.items():
            c = contexts[cid]
            if len(members) == 1:  # alone: a kept compiled model where one fits
                outcomes[members[0].trial.number] = _alone(members[0], c)
                continue
            try:
                members = population.train(members, c, report=not c.spec.multi_objective)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - each member records it
                for m in members:
                    outcomes[m.trial.number] = _failed(m.trial, err)
                continue
            for m in members:
                outcomes[m.trial.number] = _finish(m, c)
    finished = []
    for t in trials:
        state, values = outcomes[t.number]
        frozen = study.tell(t, values, state=state)
        finished.append(frozen)
        for callback in callbacks:
            callback(study, frozen)
    return finished


def _propose(trial: Any, ctx: Any) -> Any:
    """The trial's design as a population member, or its outcome when it has one already (a
    repeat of a trained design, or a failure to build its loss)."""
    import optuna

    from losstune import losses, population
    from losstune import trial as trial_mod

    try:
        training, description = trial_mod._propose(trial, ctx)
        earlier = trial_mod._repeat_of(trial, description)
        if earlier is not None:
            return (optuna.trial.TrialState.COMPLETE,
                    trial_mod.answer_repeat(trial, earlier, ctx.spec))
        return population.Member(trial, description, training, losses.build_loss(description))
    except optuna.TrialPruned:
        return optuna.trial.TrialState.PRUNED, None
    except (Exception, SystemExit) as err:  # noqa: BLE001 - recorded on the trial
        return _failed(trial, err)


def _finish(member: Any, ctx: Any) -> tuple[Any, Any]:
    """Record a trained member as a trial alone is recorded; its state and value(s)."""
    import optuna

    from losstune import trial as trial_mod

    t = member.trial
    try:
        trial_mod.record_training(t, ctx.spec.objective.metrics[0], member.values,
                                  member.logs, member.seconds, member.epoch_seconds)
        trial_mod._stop_unless_finished(t, member)
        values = trial_mod.record_scores(
            t, ctx, member.description, val_out=member.val_out, test_out=member.test_out,
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
    except (Exception, SystemExit) as err:  # noqa: BLE001 - recorded by train_alone
        return optuna.trial.TrialState.FAIL, None


def _failed(trial: Any, err: BaseException) -> tuple[Any, None]:
    import optuna

    from losstune import trial as trial_mod

    if not isinstance(err, (trial_mod.LossDivergedError, trial_mod.TrialInterrupted)):
        trial.set_user_attr(results.ERROR, trial_mod.error_message(err))  # else already set
    return optuna.trial.TrialState.FAIL, None
