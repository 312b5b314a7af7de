"""``losstune confirm``: re-train the top designs and the baselines with several seeds.

A single-seed search ranks noise as often as signal. Confirmation runs live in a companion study
named ``<study>:confirm`` in the same storage (user attribute ``parent`` links it back). Each run
records ``design_key`` (which design), ``seed_index`` (which seed) and ``source_trial``. Seed
``i`` uses a new data split and initialisation (study seed + 1000·(i+1)) shared by every design,
so designs can be compared seed by seed (a paired test, in the report).
Running the command again only adds the runs that are missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from losstune.errors import LosstuneError
from losstune.report import CONFIRM_SUFFIX
from losstune.spec import StudySpec, design_key

SEED_STRIDE = 1000


def _key(trial: Any) -> str:
    """Identity of a design: its loss description plus searched training settings.

    Built from the description, not the Optuna params, so a sampled design equal to a baseline
    (say plain cross-entropy) is recognised as the same design.
    """
    desc = json.loads(trial.user_attrs.get("loss", "{}"))
    params = {k: v for k, v in desc.get("params", {}).items()
              if k not in ("from_logits", "class_counts", "epochs")}
    params.update({k: v for k, v in trial.params.items() if k.startswith("training.")})
    return design_key(desc.get("family", trial.params.get("loss", "?")),
                      {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
                       for k, v in params.items()})


def choose(parent: Any, top: int) -> list[Any]:
    """Every baseline design, then the top ``top`` other distinct designs of the study."""
    from losstune.report._info import ranked

    maximize = parent.directions[0].name == "MAXIMIZE"
    chosen, keys = [], set()
    order = ranked(parent.get_trials(deepcopy=False), maximize)
    # Baselines first, so a sampled copy of a baseline design counts as that baseline.
    for t in order:
        if t.user_attrs.get("baseline") and _key(t) not in keys:
            chosen.append(t)
            keys.add(_key(t))
    found = 0
    for t in order:
        if found == top:
            break
        if _key(t) not in keys:
            chosen.append(t)
            keys.add(_key(t))
            found += 1
    return chosen


def run(storage_url: str, study_name: str, *, top: int, seeds: int,
        on_run: Callable[[int, int], None] | None = None) -> Any:
    """Run the missing confirmation runs; returns the companion study."""
    import optuna

    from losstune import runner
    from losstune.storage import open_storage

    runner.quiet_optuna()
    parent = runner.load_existing(storage_url, study_name)
    if parent.user_attrs.get("spec") is None:
        raise LosstuneError(f"study {study_name!r} was not created by losstune search")
    if len(parent.directions) > 1:
        raise LosstuneError("confirm ranks by one objective; this study has several")
    spec = StudySpec.model_validate(parent.user_attrs["spec"])
    base_dir = Path(parent.user_attrs.get("base_dir", "."))
    designs = choose(parent, top)
    if not designs:
        raise LosstuneError(f"study {study_name!r} has no complete trial to confirm")
    companion = optuna.create_study(
        study_name=study_name + CONFIRM_SUFFIX, storage=open_storage(storage_url),
        directions=[d.name.lower() for d in parent.directions],
        sampler=optuna.samplers.RandomSampler(seed=spec.seed),
        pruner=optuna.pruners.NopPruner(), load_if_exists=True)
    companion.set_user_attr("parent", study_name)
    for key in ("objective", "task", "dataset", "spec", "class_names"):
        if key in parent.user_attrs:
            companion.set_user_attr(key, parent.user_attrs[key])
    if parent.metric_names:
        companion.set_metric_names(parent.metric_names)
    done = {(t.user_attrs.get("design_key"), t.user_attrs.get("seed_index"))
            for t in companion.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE}
    total, count = seeds * len(designs), 0
    for seed_index in range(seeds):
        seed_spec = spec.model_copy(update={"seed": spec.seed + SEED_STRIDE * (seed_index + 1)})
        ctx = None
        for source in designs:
            count += 1
            key = _key(source)
            if (key, seed_index) in done:
                continue
            ctx = ctx or runner.load_context(seed_spec, base_dir)
            attrs = {"design_key": key, "seed_index": seed_index, "source_trial": source.number}
            for name in ("baseline", "baseline_params"):
                if name in source.user_attrs:
                    attrs[name] = source.user_attrs[name]
            companion.enqueue_trial(dict(source.params), user_attrs=attrs)
            runner.optimize(companion, ctx, n_trials=1, timeout=None)
            if on_run:
                on_run(count, total)
    return companion

