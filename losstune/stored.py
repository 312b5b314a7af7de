"""A stored study, read: its study file, its replicate runs, its verdict, its counts.

Layer: stored (above the domain and storage layers; below :mod:`losstune.runner`, which
searches, and the commands). ``show``, ``report``, ``export`` and the Python API's reading
methods import this, not the search loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from losstune import results
from losstune.errors import LosstuneError, StorageError
from losstune.studyfile import StudySpec
from losstune.storage import mask, open_storage, study_names

if TYPE_CHECKING:  # pragma: no cover
    import optuna


def stored_spec(study: "optuna.Study") -> "StudySpec":
    """The study file a stored study was made with, validated again (one line if it no longer
    validates: made by another losstune version)."""
    from pydantic import ValidationError

    stored = study.user_attrs.get(results.SPEC)
    if stored is None:
        raise LosstuneError(f"study {study.study_name!r} was not made by losstune search")
    try:
        return StudySpec.model_validate(stored)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise LosstuneError(f"study {study.study_name!r} was made with settings this losstune "
                            f"no longer accepts ({where}: {first['msg']}); read it with show, "
                            "report or export, or search again in a new study") from None


def needs_python(name: str, action: str, task: str | None = None) -> LosstuneError:
    from losstune import tasks

    functions = tasks.TASKS[task].python_functions if task in tasks.TASKS else ()
    given = ("build_model, x, y" if tuple(functions[1:]) == ()
             else "None, x, y, " + ", ".join(f"{f}=..." for f in functions[1:]))
    return LosstuneError(
        f"study {name!r} was made from Python with in-memory data and a model function; to "
        f"{action} it, give them again: losstune.load_study({name!r}, storage=...)"
        f".attach({given}).{action}(...) (show, report and export work as they are)")


def runs_study(study: "optuna.Study", storage: Any, *, create: bool) -> "optuna.Study | None":
    """The companion study holding a study's replicate runs (None if absent and not created)."""
    import optuna

    name = study.study_name + results.RUNS_SUFFIX
    if not create:
        if name not in study_names(storage):
            return None
        return optuna.load_study(study_name=name, storage=storage)
    companion = optuna.create_study(
        study_name=name, storage=storage, directions=[d.name.lower() for d in study.directions],
        sampler=optuna.samplers.RandomSampler(), pruner=optuna.pruners.NopPruner(),
        load_if_exists=True)
    if companion.user_attrs.get(results.PARENT) != study.study_name:
        companion.set_user_attr(results.PARENT, study.study_name)
        for key in (results.OBJECTIVE, results.TASK, results.DATASET):
            if key in study.user_attrs:
                companion.set_user_attr(key, study.user_attrs[key])
        if study.metric_names:
            companion.set_metric_names(study.metric_names)
    return companion


def run_records(study: "optuna.Study", companion: "optuna.Study | None") -> list[Any]:
    return results.records(study.get_trials(deepcopy=False),
                           companion.get_trials(deepcopy=False) if companion else ())


def study_verdict(study: "optuna.Study", storage: Any = None) -> results.Verdict:
    """The verdict of a stored study, from its search trials and its replicate runs."""
    companion = runs_study(study, storage, create=False) if storage is not None else None
    metric = results.metrics_of(study.user_attrs)[0]
    return results.verdict(study.study_name, metric, study.directions[0].name == "MAXIMIZE",
                           run_records(study, companion))


def pareto_verdict(study: "optuna.Study", storage: Any = None) -> Any:
    """The verdict of a stored study with several objectives (:mod:`losstune.pareto`)."""
    from losstune import pareto

    companion = runs_study(study, storage, create=False) if storage is not None else None
    return pareto.verdict(study.study_name, results.metrics_of(study.user_attrs),
                          [d.name == "MAXIMIZE" for d in study.directions],
                          run_records(study, companion))


def any_verdict(study: "optuna.Study", storage: Any = None) -> Any:
    """:func:`study_verdict`, or :func:`pareto_verdict` for several objectives."""
    return (pareto_verdict if len(study.directions) > 1 else study_verdict)(study, storage)


def counts(study: "optuna.Study") -> dict[str, int]:
    import optuna

    out = {s.name.lower(): 0 for s in optuna.trial.TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def check_exists(storage_url: str) -> None:
    """Reading commands must not create an empty database where none was."""
    from losstune.storage import sqlite_path

    path = sqlite_path(storage_url)
    if path is not None and not path.exists():
        raise StorageError(f"no database at {path}; run `losstune search STUDY_FILE` first "
                           "or pass --storage")


def load_existing(storage_url: str, name: str) -> "optuna.Study":
    """Load a study by name, or fail listing the studies that exist."""
    import optuna

    check_exists(storage_url)
    storage = open_storage(storage_url, heartbeat=False, create=False)
    names = study_names(storage)
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise StorageError(f"no study {name!r} in {mask(storage_url)}; studies there: {listed}")
    return optuna.load_study(study_name=name, storage=storage)
