"""``losstune confirm``: more seeds for the top designs and the baselines, after the search.

It uses racing's machinery (:mod:`losstune.racing`): the runs go into the companion study
``<study>:runs`` with ``design_key``, ``seed_index`` and ``source_trial``; seed index ``i`` is the
same data split, initialisation and batch order for every design, so the verdict compares designs
seed by seed. Seed index 0 is the search itself. Two kinds of seeds are added:

* ``seeds``: the top designs and the baselines get racing seeds 0 .. seeds-1, on which the
  winner is picked (more of them: a surer pick);
* ``test_seeds``: the winner (picked again) and the baselines get that many fresh seeds, on
  which the verdict tests (more of them: more power).

Running the command again only adds the runs that are missing.

Layer: views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from losstune import results
from losstune.errors import LosstuneError
from losstune.quiet import quiet_optuna
from losstune.studyfile import RacingSpec
from losstune.tasks import IN_MEMORY


def choose(verdict: results.Verdict, top: int) -> list[results.Design]:
    """Every baseline design, then the ``top`` best other designs of the ranking."""
    baselines = [d for d in verdict.ranking if d.baseline is not None]
    others = [d for d in verdict.ranking if d.baseline is None][:top]
    return baselines + others


def run(storage_url: str, study_name: str, *, top: int, seeds: int, test_seeds: int | None = None,
        on_run: Callable[[int, int], None] | None = None,
        memory: dict[str, Any] | None = None) -> Any:
    """Add the missing runs (seed indices 0..seeds-1 of the chosen designs, then ``test_seeds``
    fresh seeds of the winner and the baselines; with several objectives, of the ``top``
    searched designs of the front and the baselines: default, the study's ``racing.test_seeds``, or
    that setting's default for a study raced without them); returns the verdict. ``memory``:
    the model function and data of a study made from Python (``load_context``'s ``model_fn``
    and ``reload``)."""
    from losstune import runner
    from losstune import stored as stored_study
    from losstune.storage import open_storage

    quiet_optuna()
    parent = stored_study.load_existing(storage_url, study_name)
    spec = stored_study.stored_spec(parent)
    if spec.dataset.name == IN_MEMORY and not memory:
        raise stored_study.needs_python(study_name, "confirm", spec.task)
    base_dir = Path(parent.user_attrs.get(results.BASE_DIR, "."))
    storage = open_storage(storage_url)
    several = len(parent.directions) > 1
    first = stored_study.any_verdict(parent, storage)
    chosen = first.chosen(top) if several else choose(first, top)
    if not chosen:
        raise LosstuneError(f"study {study_name!r} has no complete trial to confirm")
    todo = [(d.key, s) for s in range(seeds) for d in chosen if s not in d.by_seed]
    progress = {"done": 0}

    def tick() -> None:
        progress["done"] += 1
        if on_run:
            on_run(progress["done"], len(todo))

    if memory:
        splits = memory["reload"](spec.seed)
        ctx = runner.load_context(spec, base_dir, splits, **memory)
    else:
        ctx = runner.load_context(spec, base_dir)
    if test_seeds is None:
        test_seeds = (spec.race or RacingSpec()).test_seeds or RacingSpec().test_seeds
    search = runner.Search(parent, ctx, storage, on_run=tick,
                           race=RacingSpec(max_seeds=max(seeds, 1), test_seeds=test_seeds))
    search.racer.extend(chosen, seeds)
    again = stored_study.any_verdict(parent, storage)  # the winner (the front), picked again
    if several:
        tested = again.chosen(top)
    else:
        tested = again.ranking[:1] + [d for d in again.ranking[1:] if d.baseline is not None]
    todo.extend((d.key, s) for s in range(results.FRESH_SEEDS, results.FRESH_SEEDS + test_seeds)
                for d in tested if s not in d.fresh)
    search.racer.test(test_seeds, chosen=tested)
    verdict = stored_study.any_verdict(parent, storage)
    verdict.notes.extend(_check_made(verdict, todo, search.companion))
    return verdict


def _check_made(verdict: results.Verdict, todo: list[tuple[str, int]],
                companion: Any) -> list[str]:
    """Every requested run failing is an error (say why); some failing is a note."""
    have = {(d.key, s) for d in verdict.ranking for s in [*d.by_seed, *d.fresh]}
    missing = [pair for pair in todo if pair not in have]
    if not missing:
        return []
    errors = [t.user_attrs.get(results.ERROR) for t in companion.get_trials(deepcopy=False)
              if t.state.name == "FAIL" and t.user_attrs.get(results.ERROR)]
    last = errors[-1] if errors else "unknown error"
    if len(missing) == len(todo):
        raise LosstuneError(f"all {len(todo)} confirmation runs failed; last error: {last}")
    return [f"{len(missing)} of {len(todo)} confirmation runs failed (last error: {last}); "
            "their designs have fewer seeds"]
