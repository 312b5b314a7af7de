"""Checks that need more than one section of a study file (each raises SpecError with its key
path): the dataset against the task, metrics against the task, families and their parameters,
baselines, the grid sampler.

Layer: domain.
"""

from __future__ import annotations

from typing import Any, Callable


from losstune import catalog
from losstune.tasks import (SETTINGS, TASKS, TRAIN_TIME_METRIC, TRANSFORMS, a_task,
                            builtin_datasets, metrics as all_metrics)
from losstune.errors import SpecError
from pathlib import Path

from losstune.studyfile._schema import Param, Range, StudySpec, _check_rule, param_bounds


def _cross_checks(spec: StudySpec, path: str) -> None:
    def fail(key: str, message: str) -> None:
        raise SpecError(path, key, message)

    task = TASKS[spec.task]
    datasets = builtin_datasets()
    if spec.dataset.name in datasets:
        serves = datasets[spec.dataset.name]
        if spec.task not in serves:
            fail("task", f"dataset {spec.dataset.name!r} is a {' or '.join(serves)} dataset, "
                         f"got task = {spec.task!r}")
    if spec.dataset.image and spec.dataset.name not in ("digits", "npz", "csv"):
        fail("dataset.image", "images come from the digits dataset, or from a csv or npz file "
                              "with dataset.image_shape")
    if spec.dataset.image and spec.dataset.name == "csv" and not spec.dataset.image_shape:
        fail("dataset.image_shape", "a csv file's rows are flat: give the images' shape, "
                                    "[height, width] or [height, width, channels]")
    if spec.model.kind == "cnn" and not spec.dataset.image:
        fail("model.kind", "the cnn model needs image data: set dataset.image = true (digits, "
                           "or a csv/npz file with dataset.image_shape)")
    _check_transforms(spec, fail)
    if isinstance(spec.dataset.target, tuple) and spec.dataset.name == "npz":
        fail("dataset.target", "an npz file's multilabel target is one array of shape "
                               "(samples, labels): give its name")
    if isinstance(spec.dataset.target, tuple) and task.targets != "labels":
        fail("dataset.target", f"a list of target columns is for {_tasks_with('labels')} "
                               f"(one column per label); {a_task(spec.task)} has one target "
                               "column")
    if spec.dataset.name in ("csv", "npz"):
        data_path = Path(spec.dataset.path)
        if not data_path.is_absolute():
            data_path = Path(path).parent / data_path
        if data_path.is_dir():
            fail("dataset.path", f"{data_path} is a folder; give the {spec.dataset.name} file")
        if not data_path.is_file():
            fail("dataset.path", f"file not found: {data_path}")
        features = spec.dataset.features
        if features is not None:
            if not features:
                fail("dataset.features", "list at least one column (or leave features out: "
                                         "every column but the target)")
            for i, column in enumerate(features):
                if column in spec.dataset.targets:
                    fail(f"dataset.features[{i}]", f"{column!r} is the target; a feature "
                                                   "cannot be the target")
                if column in features[:i]:
                    fail(f"dataset.features[{i}]", f"{column!r} is listed twice")
    else:
        for key in ("path", "target", "features", "image_shape"):
            if getattr(spec.dataset, key) is not None:
                fail(f"dataset.{key}", f"only for the csv and npz datasets; {spec.dataset.name!r} "
                                       "is built in (remove it)")

    _check_settings(spec, fail)
    task.check_study(spec, fail)
    task.check_files(spec, fail, Path(path).parent)
    scheduled = [f for f in spec.families if catalog.family(f).schedule_gate] \
        if all(catalog.find(f) for f in spec.families) else [None]
    if "schedule" in spec.search.model_fields_set and not scheduled:
        with_schedule = [f.name for f in catalog.families(spec.task) if f.schedule_gate]
        fail("search.schedule", f"a schedule (a curriculum, a β warm-up) is searched only for "
                                f"{', '.join(with_schedule) or 'no family of this task'}; "
                                f"this study searches {', '.join(spec.families)}")
    if spec.search.penalty.searched and spec.model.kind not in ("mlp", "cnn"):
        fail("search.penalty", f"penalties are added to the built-in models (model.kind mlp or "
                               f"cnn), not to a {spec.model.kind} model: add them in it "
                               "(kernel_regularizer, add_loss)")
    metrics = spec.objective.metrics
    if not metrics:
        fail("objective.metric", "give at least one metric")
    known = all_metrics()
    for i, metric in enumerate(metrics):
        key = "objective.metric" if len(metrics) == 1 else f"objective.metric[{i}]"
        valid = list(TASKS[spec.task].metrics)  # the task's own order: its default first
        if metric not in known or spec.task not in known[metric][1]:
            fail(key, f"unknown metric {metric!r} for {a_task(spec.task)}; allowed: "
                      f"{', '.join(valid)}")
        if metric == TRAIN_TIME_METRIC and i == 0:
            fail(key, "train_time can only be a second objective; put a quality metric first")
    if len(set(metrics)) != len(metrics):
        fail("objective.metric", "each metric may appear once")

    valid_families = catalog.names(spec.task)
    if spec.search.families is not None and not spec.search.families:
        fail("search.families", f"list at least one family; allowed: {', '.join(valid_families)}")
    for i, family in enumerate(spec.families):
        if catalog.find(family) is None:
            fail(f"search.families[{i}]", f"unknown loss family {family!r}; allowed: "
                                          f"{', '.join(valid_families)}")
        if family not in valid_families:
            fail(f"search.families[{i}]", f"family {family!r} is not valid for "
                                          f"{a_task(spec.task)}; allowed: "
                                          f"{', '.join(valid_families)}")

    for name in spec.search.tables:
        if catalog.find(name) is None:
            fail(f"search.{name}", "unknown key; allowed: families, schedule, penalty, "
                                   f"denoise, {', '.join(catalog.names())}")
    for family in catalog.names():
        space = spec.search.family_space(family, spec.task)
        for name, value in space.items():
            _check_family_param(family, name, value, spec.task, f"search.{family}.{name}", fail)
        if family in spec.families:
            _check_class_terms(family, space, spec.task, f"search.{family}", fail)

    if spec.baselines is not True and spec.baselines is not False:
        for i, base in enumerate(spec.baselines):
            if base.family not in valid_families:
                fail(f"baselines[{i}].family", f"family {base.family!r} is not valid for "
                                               f"{a_task(spec.task)}; allowed: "
                                               f"{', '.join(valid_families)}")
            # The same names, intervals and types as the search space: a baseline trains too.
            for name, value in base.params.items():
                _check_family_param(base.family, name, value, spec.task,
                                    f"baselines[{i}].params.{name}", fail)
            _check_class_terms(base.family, base.params, spec.task, f"baselines[{i}].params",
                               fail)

    if spec.sampler.name == "grid":
        _check_grid(spec, fail)
    if spec.multi_objective and spec.sampler.name in ("cmaes", "gp"):
        fail("sampler.name", f"{spec.sampler.name!r} is single-objective; use tpe or random "
                             "for several metrics")
    if spec.n_trials is None and spec.timeout is None:
        fail("n_trials", "give n_trials, timeout or both")


def _listing(names: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _tasks_with(targets: str) -> str:
    """"the multiclass and binary tasks": the registered tasks whose targets are ``targets``."""
    found = [t.name for t in TASKS.values() if t.targets == targets]
    return f"the {_listing(found)} task{'s' if len(found) > 1 else ''}"


def _check_transforms(spec: StudySpec, fail: Callable[[str, str], None]) -> None:
    """The dataset's training-split transforms (tasks.TRANSFORMS) act on the kinds of targets
    they are for: a long tail on classes or labels, label noise on classes, outliers on
    values."""
    task = TASKS[spec.task]
    defaults = type(spec.dataset).model_fields
    for key, kinds in TRANSFORMS.items():
        if getattr(spec.dataset, key) == defaults[key].default or task.targets in kinds:
            continue
        takes = [k for k, ks in TRANSFORMS.items() if task.targets in ks]
        for_tasks = [t.name for t in TASKS.values() if t.targets in kinds]
        fail(f"dataset.{key}", f"{key} is for {_listing(for_tasks)} tasks, not "
                               f"{a_task(spec.task)}"
                               + (f"; it takes {_listing(takes)}" if takes else ""))


def _check_settings(spec: StudySpec, fail: Callable[[str, str], None]) -> None:
    """A key that only some tasks take (tasks.SETTINGS) is refused in a study of another."""
    task = TASKS[spec.task]
    for key, purpose in SETTINGS.items():
        section, name = key.split(".")
        value = getattr(getattr(spec, section), name)
        given = (bool(value.searched) if hasattr(value, "searched")
                 else name in getattr(spec, section).model_fields_set)
        if given and key not in task.settings:
            takers = [t.name for t in TASKS.values() if key in t.settings]
            fail(key, f"only for the {_listing(takers)} task{'s' if len(takers) > 1 else ''} "
                      f"({purpose}), not {a_task(spec.task)}")


def _check_family_param(family: str, name: str, value: Param, task: str, key: str,
                        fail: Callable[[str, str], None]) -> None:
    """One loss parameter (searched or a baseline's): a known name, a value of the right kind
    (every member of ``{choices = [...]}`` too) inside the family's interval: the catalog's."""
    record = catalog.family(family)
    allowed = [p.name for p in record.studied]
    if name not in allowed:
        fail(key, f"family {family!r} has no parameter {name!r}; allowed: "
                  f"{', '.join(allowed) or 'none'}")
    rule = record.param(name)
    where = f" for {a_task(task)}" if record.choices(rule, task) != record.choices(rule) else ""
    try:
        _check_rule(rule, value, record.choices(rule, task), where)
    except ValueError as err:
        fail(key, str(err))


def _check_class_terms(family: str, params: dict[str, Any], task: str, key: str,
                       fail: Callable[[str, str], None]) -> None:
    """A weight of a term that reads class probabilities is 0 in a study without classes."""
    if TASKS[task].targets == "classes":
        return
    for rule in catalog.family(family).studied:
        if rule.classes_only and param_bounds(params.get(rule.name, 0.0))[1] > 0:
            fail(f"{key}.{rule.name}", f"must be 0 for {a_task(task)} ({rule.name} weighs a "
                                       "term that needs class probabilities)")


def _check_grid(spec: StudySpec, fail) -> None:
    """The grid sampler (Optuna's BruteForceSampler) needs every searched number discrete."""
    def discrete(value: Param) -> bool:
        return not isinstance(value, Range) or value.step is not None

    for name in ("epochs", "batch_size", "learning_rate"):
        if not discrete(getattr(spec.training, name)):
            fail(f"training.{name}", "the grid sampler needs a step or {choices = [...]}")
    searched = list(spec.families)
    for family in dict.fromkeys([*searched, *(b.family for b in spec.baseline_designs)]):
        for name, value in spec.search.family_space(family, spec.task).items():
            if not discrete(value):
                # A baseline's family that is not searched still suggests its parameters
                # (fixed to the baseline's values) from its space: the grid checks them too.
                extra = ("" if family in searched else
                         f" ({family} is a baseline's family: its space is read too; or "
                         "leave it out of the baselines)")
                fail(f"search.{family}.{name}",
                     "the grid sampler needs a step or {choices = [...]}" + extra)
    for group in catalog.MODEL_TERMS:
        for name, value in getattr(spec.search, group).searched.items():
            if not discrete(value):
                fail(f"search.{group}.{name}",
                     "the grid sampler needs a step or {choices = [...]}")


