"""losstune benchmarks: figures measured side by side in one run, reported as ratios.

    python benchmarks/run.py            # the full set (about 25 minutes on a 2-core CPU)
    python benchmarks/run.py --quick    # a smoke run of every figure (about 5 minutes)

Each figure is printed and all are written to benchmarks/results/<timestamp>.json (or --out).
Targets are printed beside the figures; a missed target is reported, never hidden, and never
fails the script: benchmarks are not tests. Every arm that trains runs in its own subprocess, so
TensorFlow state from one arm cannot help or hurt another. --quick, a smoke run that measures
nothing, runs its arms and commands in this one process (one framework start-up instead of one
per arm), but for the arms that need their own process: other workers, another backend, and the
start-up figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
EXE = str(Path(PY).parent / "losstune")

# The headline study: digits MLP (64 -> 128 -> 10), focal loss, gamma and alpha searched.
HEADLINE = """
name = "bench"
task = "multiclass"
seed = 0
n_trials = {trials}
# Single runs of searched designs, as the hand-written loop trains: no racing (figure 8
# measures it) and no baselines (their family would be proposed again and again, and a repeated
# design is not trained again, so fewer trainings would be timed).
racing = false
baselines = false
[dataset]
name = "digits"
[model]
kind = "mlp"
hidden = [128]
[training]
epochs = {epochs}
batch_size = 32
learning_rate = 1e-3
[objective]
metric = "macro_f1"
[sampler]
name = "random"
[pruner]
name = "{pruner}"
[search]
families = ["focal"]
[search.focal]
gamma = {{ low = 0.0, high = 5.0 }}
alpha = {{ low = 0.1, high = 1.0 }}
"""

LONGTAIL = """
name = "bench_lt"
task = "multiclass"
seed = {seed}
n_trials = {trials}
baselines = false
racing = false
[dataset]
name = "digits"
long_tail = 20.0
[model]
kind = "mlp"
hidden = [64]
[training]
epochs = {epochs}
batch_size = 64
learning_rate = 3e-3
[objective]
metric = "macro_f1"
[sampler]
name = "{sampler}"
seed = {seed}
n_startup_trials = 5
[pruner]
name = "none"
[search]
families = ["cross_entropy", "focal", "class_balanced"]
[search.focal]
gamma = {{ low = 0.0, high = 5.0 }}
alpha = {{ low = 0.05, high = 1.0 }}
[search.class_balanced]
beta = {{ low = 0.9, high = 0.9999 }}
"""


# ------------------------------------------------------------------------------ arms (subprocess)
def _digits():
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    xt, xv, yt, yv = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    scaler = StandardScaler().fit(xt)
    return (scaler.transform(xt).astype("float32"), np.eye(10, dtype="float32")[yt],
            scaler.transform(xv).astype("float32"), yv)


def _handwritten_fit(keras, data, gamma: float, alpha: float, epochs: int) -> float:
    """What a user writes by hand: Keras defaults, build, compile, fit, predict, score."""
    import numpy as np
    from sklearn.metrics import f1_score

    xt, yt, xv, yv = data
    keras.utils.clear_session()
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.CategoricalFocalCrossentropy(gamma=gamma, alpha=alpha,
                                                                 from_logits=True))
    model.fit(xt, yt, epochs=epochs, batch_size=32, verbose=0)
    pred = np.argmax(model.predict(xv, verbose=0), axis=-1)
    return float(f1_score(yv, pred, average="macro"))


def arm_bare(trials: int, epochs: int) -> dict[str, Any]:
    import keras
    import numpy as np

    data = _digits()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    scores = [_handwritten_fit(keras, data, float(rng.uniform(0, 5)), float(rng.uniform(0.1, 1)),
                               epochs) for _ in range(trials)]
    return {"seconds": time.perf_counter() - start, "best": max(scores),
            "backend": keras.backend.backend()}


def arm_optuna(trials: int, epochs: int, db: str) -> dict[str, Any]:
    import keras
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    data = _digits()
    study = optuna.create_study(storage=f"sqlite:///{db}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    start = time.perf_counter()
    study.optimize(lambda t: _handwritten_fit(keras, data, t.suggest_float("gamma", 0, 5),
                                              t.suggest_float("alpha", 0.1, 1), epochs),
                   n_trials=trials)
    return {"seconds": time.perf_counter() - start, "best": study.best_value}


def arm_losstune(study_file: str, db: str, workers: int = 0, memory_at: tuple = ()) -> dict:
    """losstune's own path: in process (workers=0), or the CLI with that many workers."""
    import resource

    import optuna

    from losstune import runner, studyfile as spec_mod
    from losstune.storage import open_storage

    spec = spec_mod.load(study_file)
    url = f"sqlite:///{db}"
    start = time.perf_counter()
    rss = {}
    fit_wall, statements, batches = [0.0], [0], []
    if workers == 0:  # in process: time spent in Keras's fit, and SQL statements, counted
        import keras
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        fit = keras.Model.fit

        def timed_fit(self, *args, **kwargs):
            begun = time.perf_counter()
            try:
                return fit(self, *args, **kwargs)
            finally:
                fit_wall[0] += time.perf_counter() - begun

        keras.Model.fit = timed_fit
        def count(*args):  # noqa: ARG001
            statements[0] += 1

        event.listen(Engine, "before_cursor_execute", count)
        # Each batch (a population, or a trial alone): its wall time and the time in fit.
        from losstune import batch as batch_mod

        run_batch = batch_mod.run

        def timed_batch(*args, **kwargs):
            begun, fitted = time.perf_counter(), fit_wall[0]
            try:
                return run_batch(*args, **kwargs)
            finally:
                batches.append({"seconds": time.perf_counter() - begun,
                                "fit_seconds": fit_wall[0] - fitted})

        batch_mod.run = timed_batch
    if workers == 0:  # in process (workers=N>=1 runs the CLI with N worker processes)
        study = runner.create_or_load(spec, url)
        ctx = runner.load_context(spec, Path(study_file).parent)
        search = runner.Search(study, ctx, open_storage(url))
        setup = time.perf_counter() - start
        fit_wall[0], statements[0] = 0.0, 0  # the search's own, not the start-up's
        batches.clear()
        start = time.perf_counter()
        done = 0
        with _GpuUse() as gpu:  # the search's own GPU use, not the start-up's
            for target in (*memory_at, spec.n_trials):
                search.run(target - done)
                done = target
                rss[target] = _rss_mb()
        wall = time.perf_counter() - start
        keras.Model.fit = fit  # as it was (--quick runs the next arm in this process)
        batch_mod.run = run_batch
        event.remove(Engine, "before_cursor_execute", count)
    else:
        args = ["--workers", str(workers)] if workers > 1 else []
        proc = subprocess.run([EXE, "search", study_file, "--storage", url, *args],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        wall, setup = time.perf_counter() - start, 0.0
        study = optuna.load_study(study_name=spec.name, storage=url)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    # Steady state: first trial's start to last trial's end, from the storage's timestamps.
    span = (max(t.datetime_complete for t in trials)
            - min(t.datetime_start for t in trials)).total_seconds() if trials else None
    return {"seconds": wall, "setup_seconds": setup, "span_seconds": span,
            "best": max(t.value for t in complete) if complete else None,
            "fit_seconds": sum(t.user_attrs.get("train_time_s", 0) for t in trials),
            # In process only: the wall time inside Keras's fit (a population's fit once),
            # and the SQL statements of the search (start-up excluded).
            "fit_wall_seconds": fit_wall[0] if workers == 0 else None,
            "statements": statements[0] if workers == 0 else None,
            "batches": batches if workers == 0 else None,
            "gpu_utilisation_pct": gpu.mean if workers == 0 else None,
            "gpu_memory_mib": gpu.peak_memory_mib if workers == 0 else None,
            "epochs": sum(t.user_attrs.get("epochs_trained", 0) for t in trials),
            "trials": len(trials), "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "trainings": sum("epochs_trained" in t.user_attrs for t in trials),
            "values": [t.value for t in trials if t.state.name == "COMPLETE"],
            "rss_mb": rss, "backend": trials[0].user_attrs.get("backend") if trials else None,
            "device": trials[0].user_attrs.get("device") if trials else None,
            "population": max((t.user_attrs.get("population", 1) for t in trials), default=1),
            # Peak resident memory of this process (Linux reports KiB).
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def arm_bare_population(study_file: str, db: str, epochs: int) -> dict[str, Any]:
    """The designs a losstune study trained (read from its database), all in one stacked
    model built with losstune's own population layers, fitted once: no Optuna, no records, no
    scoring. What a population's training costs by itself."""
    import itertools

    import keras
    import numpy as np
    import optuna

    from losstune import losses, population, runner, studyfile as spec_mod
    from losstune import trial as trial_mod
    from losstune.losses import compiled_key, stack

    spec = spec_mod.load(study_file)
    ctx = runner.load_context(spec, Path(study_file).parent)
    splits = ctx.splits
    study = optuna.load_study(study_name=spec.name, storage=f"sqlite:///{db}")
    designs = [json.loads(t.user_attrs["loss"]) for t in study.get_trials(deepcopy=False)
               if "epochs_trained" in t.user_attrs]
    k = len(designs)
    built = [losses.build_loss(d) for d in designs]
    groups = [list(g) for _, g in itertools.groupby(
        sorted(built, key=compiled_key), key=compiled_key)]
    loss = population.PopulationLoss([stack(g) for g in groups],
                                     [len(g) for g in groups])
    start = time.perf_counter()
    model = population.build_model(spec, input_shape=splits.input_shape,
                                   units=splits.num_classes, members=k)
    model.compile(optimizer=population.member_optimizer("adam", k,
                                                        population._layouts(model, k)),
                  loss=loss, steps_per_execution=trial_mod.execution_steps(ctx, 32))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.member_lr.assign(np.full(k, 1e-3, "float32"))
    loss._hp["active"].assign(np.ones(k, "float32"))
    built_s = time.perf_counter() - start
    y = trial_mod.training_targets(splits)
    start = time.perf_counter()
    model.fit(splits.x_train, y, epochs=epochs, batch_size=32, verbose=0)
    return {"members": k, "fit_seconds": time.perf_counter() - start, "build_seconds": built_s,
            "backend": keras.backend.backend()}


def arm_loss_overhead(steps: int, steps_per_execution: int = 1,
                      hidden: tuple[int, ...] = (128,), rounds: int = 5) -> dict[str, Any]:
    """Train-step time of DynamicLoss (all four components, a cosine schedule) against
    Keras's CategoricalCrossentropy, same model and data, traced once, timed after warm-up.
    Fed like a trial feeds TensorFlow: a tf.data pipeline (NumPy arrays would add Keras's
    per-epoch iterator cost to both and hide the difference)."""
    import keras

    from losstune.losses import DynamicLoss, component_metrics, loss_callbacks

    xt, yt, _, _ = _digits()
    data: dict[str, Any] = {"x": xt, "y": yt, "batch_size": 32}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        data = {"x": tf.data.Dataset.from_tensor_slices((xt, yt)).batch(32)}
    results = {}
    losses = {
        "cross_entropy": keras.losses.CategoricalCrossentropy(from_logits=True),
        "dynamic": DynamicLoss(base_params={"from_logits": True}, w_progress=0.1, w_balance=0.5,
                               w_curriculum=0.5, epochs=100,
                               schedule={"name": "cosine", "params": {"start": 0.0, "end": 1.0}}),
    }
    for round_ in range(rounds):  # interleaved rounds: machine noise hits both the same way
        for name, loss in losses.items():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((64,)),
                                      *[keras.layers.Dense(w, activation="relu") for w in hidden],
                                      keras.layers.Dense(10)])
            model.compile(optimizer="adam", loss=loss, jit_compile=False,
                          steps_per_execution=steps_per_execution,
                          metrics=component_metrics(loss) if name == "dynamic" else None)
            cb = loss_callbacks(loss)
            model.fit(**data, epochs=1, verbose=0, callbacks=cb)  # trace
            start = time.perf_counter()
            model.fit(**data, epochs=steps, verbose=0, callbacks=cb)
            results.setdefault(name, []).append(time.perf_counter() - start)
    return {name: min(v) for name, v in results.items()}


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


ARMS = {"bare": arm_bare, "optuna": arm_optuna, "losstune": arm_losstune,
        "loss_overhead": arm_loss_overhead}


def arm_cli_search(study_file: str, db: str, args: list[str] = (), changes: dict | None = None,
                   name: str | None = None) -> dict[str, Any]:
    """`losstune search` as a user runs it (a study file, optionally changed), then the verdict
    from `losstune show -f json` and what was trained, from the storage."""
    import optuna
    import tomllib

    import tomli_w

    from losstune import results

    if changes:
        data = tomllib.loads(Path(study_file).read_text())
        for dotted, value in changes.items():
            *head, last = dotted.split(".")
            node = data
            for key in head:
                node = node.setdefault(key, {})
            node[last] = value
        target = Path(db).with_suffix(".toml")
        target.write_text(tomli_w.dumps(data))
        study_file = str(target)
    url = f"sqlite:///{db}"
    start = time.perf_counter()
    losstune_cli("search", study_file, "--storage", url, *args)
    wall = time.perf_counter() - start
    study_name = name or tomllib.loads(Path(study_file).read_text())["name"]
    verdict = json.loads(losstune_cli("show", study_name, "--storage", url, "-f",
                                      "json"))["verdict"]
    search = optuna.load_study(study_name=study_name, storage=url).get_trials(deepcopy=False)
    names = optuna.get_all_study_names(storage=url)
    runs = (optuna.load_study(study_name=study_name + results.RUNS_SUFFIX, storage=url)
            .get_trials(deepcopy=False) if study_name + results.RUNS_SUFFIX in names else [])
    trained = [t for t in [*search, *runs] if "epochs_trained" in t.user_attrs]
    fresh = [t for t in trained if results.is_fresh(t.user_attrs.get(results.SEED_INDEX, 0))]
    search_epochs = sum(t.user_attrs.get("epochs_trained", 0) for t in search)
    winner = verdict.get("winner") or {}  # several objectives: a front, no winner
    return {"seconds": wall, "search_trials": len(search),
            "repeats": sum(results.DUPLICATE_OF in t.user_attrs for t in search),
            "trainings": len(trained), "fresh_trainings": len(fresh),
            "epochs": sum(t.user_attrs["epochs_trained"]
                                                      for t in trained),
            "search_epochs": search_epochs,
            "pruned": sum(t.state.name == "PRUNED" for t in search),
            "designs": len({t.user_attrs.get("design_key") for t in trained}),
            "winner": winner.get("words"), "winner_family": (winner.get("design") or {})
            .get("family"), "winner_mean": winner.get("mean"), "winner_ci": winner.get("ci"),
            "winner_seeds": winner.get("seeds"), "significant": verdict["significant"],
            "winner_baseline": winner.get("baseline"),
            "comparisons": [{k: c[k] for k in ("baseline", "diff", "p", "p_adjusted",
                                                "significant")}
                            for c in verdict.get("comparisons", [])],
            "sentence": verdict["sentence"]}


ARMS["cli_search"] = arm_cli_search


# --quick: arms and commands run in this process (see the module's docstring).
IN_PROCESS = False


def _call_arm(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if "memory_at" in kwargs:
        kwargs["memory_at"] = tuple(kwargs["memory_at"])
    return ARMS[name](**kwargs)


def run_arm(name: str, env: dict | None = None, **kwargs: Any) -> dict[str, Any]:
    if IN_PROCESS and not env:  # the JSON round trip a subprocess's answer takes
        return json.loads(json.dumps(_call_arm(name, json.loads(json.dumps(kwargs))),
                                     default=str))
    proc = subprocess.run([PY, __file__, "--arm", name, "--kwargs", json.dumps(kwargs)],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"arm {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def losstune_cli(*args: str) -> str:
    """``losstune ARGS`` as a user runs it; its standard output (--quick: in this process,
    through click's runner)."""
    if IN_PROCESS:
        from click.testing import CliRunner

        from losstune.cli import main as cli_main

        result = CliRunner().invoke(cli_main, list(args))
        if result.exit_code != 0:
            raise RuntimeError(f"losstune {' '.join(args)}: {result.output[-2000:]}"
                               ) from result.exception
        return result.stdout
    proc = subprocess.run([EXE, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return proc.stdout


# ------------------------------------------------------------------------------ figures
def _write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def _training(text: str, **settings: Any) -> str:
    """A study file's text with extra [training] settings."""
    lines = "".join(f"\n{k} = {json.dumps(v)}" for k, v in settings.items())
    return text.replace("[training]", "[training]" + lines, 1)


def fig_throughput(q: bool, tmp: Path) -> dict[str, Any]:
    """Each trial trained alone (population = 1), with and without the compiled-model reuse
    and multi-step execution, against the hand-written loop; figure 11 adds populations."""
    trials, epochs = (4, 2) if q else (20, 5)
    study_text = _training(HEADLINE.format(trials=trials, epochs=epochs, pruner="none"),
                           population=1)
    study = _write(tmp, "headline.toml", study_text)
    bare = run_arm("bare", trials=trials, epochs=epochs)
    optuna_ = run_arm("optuna", trials=trials, epochs=epochs, db=str(tmp / "opt.db"))
    ours = run_arm("losstune", study_file=study, db=str(tmp / "lt.db"))
    # The same study with compiled-model reuse and multi-step execution off: what they buy.
    # (--quick, a smoke run, leaves these three arms out: each starts a framework, 15 s.)
    plain = _write(tmp, "headline_plain.toml", study_text.replace(
        "[training]", "[training]\nreuse_compiled = false\nsteps_per_execution = 1"))
    no_reuse = ours if q else run_arm("losstune", study_file=plain, db=str(tmp / "lt_plain.db"))
    torch_ = ours if q else run_arm("losstune", env={"KERAS_BACKEND": "torch"},
                                    study_file=study, db=str(tmp / "lt_torch.db"))
    bare_torch = bare if q else run_arm("bare", env={"KERAS_BACKEND": "torch"}, trials=trials,
                                        epochs=epochs)
    per_hour = lambda r: 3600 * trials / r["seconds"]  # noqa: E731
    return {
        "setup": f"digits MLP 64-128-10, focal gamma/alpha, {trials} trials x {epochs} epochs",
        "bare_tf_s": bare["seconds"], "handwritten_optuna_tf_s": optuna_["seconds"],
        "losstune_tf_s": ours["seconds"], "losstune_torch_s": torch_["seconds"],
        "losstune_tf_without_reuse_s": no_reuse["seconds"],
        "bare_torch_s": bare_torch["seconds"],
        "trials_per_hour": {"bare_tf": per_hour(bare), "handwritten_optuna_tf": per_hour(optuna_),
                            "losstune_tf": per_hour(ours), "losstune_torch": per_hour(torch_)},
        "losstune_tf_vs_handwritten": optuna_["seconds"] / ours["seconds"],
        "losstune_tf_vs_bare_tf": bare["seconds"] / ours["seconds"],
        "losstune_tf_reuse_speedup": no_reuse["seconds"] / ours["seconds"],
        "losstune_torch_vs_handwritten": optuna_["seconds"] / torch_["seconds"],
        "best": {"bare_tf": bare["best"], "handwritten_optuna_tf": optuna_["best"],
                 "losstune_tf": ours["best"], "losstune_torch": torch_["best"],
                 "losstune_tf_without_reuse": no_reuse["best"]},
        "target": "losstune >= 2x trials/hour of the hand-written TensorFlow loop",
        "_losstune": ours,
    }


def fig_bookkeeping(ours: dict[str, Any]) -> dict[str, Any]:
    share = 1 - ours["fit_seconds"] / ours["seconds"]
    return {"trial_wall_s": ours["seconds"], "inside_fit_s": ours["fit_seconds"],
            "outside_training_share": share, "target": "< 5%"}


def fig_startup(q: bool, tmp: Path) -> dict[str, Any]:
    times = []
    for _ in range(3 if q else 7):
        start = time.perf_counter()
        subprocess.run([EXE, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    study = _write(tmp, "first.toml", HEADLINE.format(trials=1, epochs=1, pruner="none")
                   .replace("bench", "first"))
    start = time.perf_counter()
    subprocess.run([EXE, "search", study, "--storage", f"sqlite:///{tmp / 'first.db'}"],
                   capture_output=True, check=True)
    first = time.perf_counter() - start
    return {"help_s_median": statistics.median(times), "help_target": "< 0.5 s",
            "command_to_first_one_epoch_trial_done_s": first}


def fig_pruning(q: bool, tmp: Path) -> dict[str, Any]:
    trials, epochs = (6, 4) if q else (30, 10)
    out = {}
    for pruner in ("none", "median", "hyperband"):
        study = _write(tmp, f"prune_{pruner}.toml",
                       HEADLINE.format(trials=trials, epochs=epochs, pruner=pruner)
                       .replace('name = "random"', 'name = "tpe"\nseed = 3'))
        r = run_arm("losstune", study_file=study, db=str(tmp / f"prune_{pruner}.db"))
        out[pruner] = {"epochs": r["epochs"], "best": r["best"], "pruned": r["pruned"],
                       "seconds": r["seconds"]}
    for pruner in ("median", "hyperband"):
        out[f"{pruner}_epoch_saving"] = 1 - out[pruner]["epochs"] / out["none"]["epochs"]
        out[f"{pruner}_best_gap"] = (out["none"]["best"] - out[pruner]["best"]) / out["none"]["best"]
    out["target"] = ">= 40% fewer epochs, best objective within 1%"
    return out


def fig_racing(q: bool, tmp: Path) -> dict[str, Any]:
    """Racing against a single-seed search of the same number of search trials (new designs),
    on the quick-start study, side by side."""
    study = str(ROOT / "studies" / "quickstart.toml")
    trials = ["--n-trials", "4"] if q else []
    out = {}
    # --quick: 3 epochs, up to 3 seeds and 2 fresh ones, enough to show that racing adds
    # trainings.
    quick = {"training.epochs": 3} if q else {}
    for arm, racing in (("single_seed", False),
                        ("racing", {"max_seeds": 3, "test_seeds": 2} if q else True)):
        out[arm] = run_arm("cli_search", study_file=study, db=str(tmp / f"race_{arm}.db"),
                           args=trials, changes={"racing": racing, **quick})
    out["wall_ratio"] = out["racing"]["seconds"] / out["single_seed"]["seconds"]
    out["trainings_ratio"] = out["racing"]["trainings"] / out["single_seed"]["trainings"]
    return out


# An A/A study: every design is the first baseline in disguise, so a verdict of "significantly
# better" is a false win. Dropout gives equal designs their own run noise while the split, the
# initialisation and the batches stay paired by seed (without it equal designs train
# bit-identically and a test says nothing).
AA = """
name = "aa"
task = "{task}"
seed = {seed}
n_trials = {trials}
baselines = {baselines}
[dataset]
name = "{dataset}"
[model]
kind = "mlp"
hidden = [64]
dropout = 0.2
[training]
epochs = {epochs}
batch_size = 32
learning_rate = 3e-3
[objective]
metric = "{metric}"
{search}
"""
AA_CLASSIFICATION = ('[{ family = "cross_entropy" }, '
                     '{ family = "focal", params = { gamma = 0.0, alpha = 1.0 } }]', """
[search]
families = ["cross_entropy", "focal", "poly1"]
[search.cross_entropy]
label_smoothing = { low = 0.0, high = 1e-4 }
[search.focal]
gamma = { low = 0.0, high = 1e-4 }
alpha = 1.0
[search.poly1]
epsilon = { low = 0.0, high = 1e-4 }
""")
# Huber with δ of 30-300 robust sd is half the squared error on every residual (Adam does not
# see the factor of 2).
AA_REGRESSION = ('[{ family = "mse" }, { family = "huber", params = { delta = 100.0 } }]', """
[search]
families = ["mse", "huber"]
[search.huber]
delta = { low = 30.0, high = 300.0, log = true }
""")


def fig_calibration(q: bool, tmp: Path, per_set: int | None = None) -> dict[str, Any]:
    """Real A/A studies on bundled data with losstune's defaults (racing, fresh-seed test):
    how often does the verdict claim a win that is not there? Rate with its exact 95 % CI,
    and trainings per study. ``per_set``: studies (study seeds) per data set."""
    from scipy import stats

    sets = [("multiclass", "digits", "macro_f1"), ("binary", "breast_cancer", "macro_f1"),
            ("multiclass", "wine", "macro_f1"), ("regression", "diabetes", "rmse")]
    per_set = 1 if q else (per_set or 5)
    studies = []
    for task, dataset, metric in sets[:2] if q else sets:
        for seed in range(per_set):
            baselines, search = AA_CLASSIFICATION if task != "regression" else AA_REGRESSION
            text = AA.format(task=task, seed=seed, trials=3 if q else 12, dataset=dataset,
                             epochs=2 if q else 6, metric=metric, baselines=baselines,
                             search=search)
            path = _write(tmp, f"aa_{dataset}_{seed}.toml", text)
            r = run_arm("cli_search", study_file=path, db=str(tmp / f"aa_{dataset}_{seed}.db"))
            studies.append({"dataset": dataset, "seed": seed, "significant": r["significant"],
                            "trainings": r["trainings"], "fresh_trainings": r["fresh_trainings"],
                            "seconds": r["seconds"], "winner": r["winner"],
                            "sentence": r["sentence"]})
    wins = sum(s["significant"] for s in studies)
    ci = stats.binomtest(wins, len(studies)).proportion_ci(0.95, method="exact")
    return {"studies": studies, "false_wins": wins, "n": len(studies),
            "rate": wins / len(studies), "rate_ci": [ci.low, ci.high],
            "trainings_per_study": statistics.mean(s["trainings"] for s in studies),
            "target": "<= 5 % false wins (the sentence's promise)"}


# --quick: what a figure's studies change to run in seconds (2 epochs, races of 2 seeds, 2 fresh
# seeds): enough to run every arm end to end, not to measure anything.
QUICK = {"training.epochs": 2, "racing": {"max_seeds": 2, "test_seeds": 2}}
# The long-tailed digits study's quick form trains its MLP twin: the CNN is the slow part.
QUICK_LONGTAIL = {**QUICK, "model.kind": "mlp"}


def fig_family_pruning(q: bool, tmp: Path) -> dict[str, Any]:
    """Pruning on the long-tailed digits study as shipped (racing on, the median rule within
    each family), against no pruning and against the median rule across the study. The epochs
    saved count every training (search trials and racing's runs, which are never pruned) and
    the search trials alone; the winner is each search's verdict."""
    study = str(ROOT / "studies" / "longtail_digits.toml")
    n = ["--n-trials", "4"] if q else ["--n-trials", "30"]
    out = {}
    for arm, pruner in (("none", {"pruner.name": "none"}),
                        ("median_family", {}),
                        ("median_study", {"pruner.scope": "study"})):
        out[arm] = run_arm("cli_search", study_file=study, db=str(tmp / f"lt_{arm}.db"),
                           args=n, changes={**pruner, **(QUICK_LONGTAIL if q else {})})
    for arm in ("median_family", "median_study"):
        out[f"{arm}_epoch_saving"] = 1 - out[arm]["epochs"] / out["none"]["epochs"]
        out[f"{arm}_search_epoch_saving"] = (1 - out[arm]["search_epochs"]
                                             / out["none"]["search_epochs"])
        ci = out["none"]["winner_ci"] or [out["none"]["winner_mean"]] * 2
        out[f"{arm}_winner_within_ci"] = ci[0] <= out[arm]["winner_mean"] <= ci[1]
    out["target"] = ("the winner of the same kind (class-balancing or not) and within the "
                     "no-pruning winner's CI, with >= 30% fewer epochs")
    return out


def fig_verdicts(q: bool, tmp: Path) -> dict[str, Any]:
    """The verdict of every example study, searched with racing as shipped."""
    out = {}
    # --quick, a smoke run, searches three of them (every example study runs end to end in
    # tests/test_tasks.py).
    quick_studies = ("quickstart", "longtail_digits", "diabetes_outliers")
    for path in sorted((ROOT / "studies").glob("*.toml")):
        if q and path.stem not in quick_studies:
            continue
        args = ["--n-trials", "3"] if q else []
        if path.stem == "longtail_digits" and not q:
            args = ["--n-trials", "30"]  # half its budget: a full run takes most of an hour
        quick = QUICK_LONGTAIL if path.stem == "longtail_digits" else QUICK
        out[path.stem] = run_arm("cli_search", study_file=str(path),
                                 db=str(tmp / f"v_{path.stem}.db"), args=args,
                                 changes=quick if q else None)
        out[path.stem]["args"] = args
    return out


def fig_workers(q: bool, tmp: Path) -> dict[str, Any]:
    trials, epochs = (6, 3) if q else (40, 5)
    results = {}
    for workers in (1, 2):
        study = _write(tmp, f"workers{workers}.toml",
                       HEADLINE.format(trials=trials, epochs=epochs, pruner="none")
                       .replace('"bench"', f'"bench_w{workers}"'))
        results[workers] = run_arm("losstune", study_file=study, db=str(tmp / f"w{workers}.db"),
                                   workers=workers)
    # Both through the CLI, start-up included: the same command with --workers 1 and 2.
    # And once running (first trial's start to last trial's end): what a long study sees, where
    # each worker's start-up (importing TensorFlow, first compile) is amortised.
    one, two = results[1]["seconds"], results[2]["seconds"]
    span1, span2 = results[1]["span_seconds"], results[2]["span_seconds"]
    return {"trials": trials, "one_worker_s": one, "two_workers_s": two, "speedup": one / two,
            "one_worker_running_s": span1, "two_workers_running_s": span2,
            "running_speedup": span1 / span2, "target": ">= 1.6x on 2 cores"}


def fig_storage_share(q: bool, tmp: Path) -> dict[str, Any]:
    """Time in Optuna storage calls during a losstune run, from SQLAlchemy's own events."""
    trials = 4 if q else 12
    study = _write(tmp, "storage.toml", HEADLINE.format(trials=trials, epochs=3, pruner="median"))
    r = run_arm("storage_probe", study_file=study, db=str(tmp / "storage.db"))
    return {**r, "target": "< 1% of trial time"}


def arm_storage_probe(study_file: str, db: str) -> dict[str, Any]:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    spent = {"s": 0.0, "n": 0}

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        spent["s"] += time.perf_counter() - conn.info.pop("t0")
        spent["n"] += 1

    r = arm_losstune(study_file, db)
    return {"run_s": r["seconds"], "storage_s": spent["s"], "statements": spent["n"],
            "storage_share": spent["s"] / r["seconds"]}


ARMS["storage_probe"] = arm_storage_probe
ARMS["bare_population"] = arm_bare_population


def fig_search_efficiency(q: bool, tmp: Path) -> dict[str, Any]:
    tpe_trials, epochs = (6, 2) if q else (20, 6)
    seeds = (0,) if q else (0, 1, 2)
    random_trials = 5 * tpe_trials
    rows = []
    for seed in seeds:
        res = {}
        for sampler, n in (("tpe", tpe_trials), ("random", random_trials)):
            study = _write(tmp, f"lt_{sampler}_{seed}.toml",
                           LONGTAIL.format(seed=seed, trials=n, epochs=epochs, sampler=sampler))
            res[sampler] = run_arm("losstune", study_file=study, db=str(tmp / f"lt_{sampler}_{seed}.db"))
        target = max(res["random"]["values"])
        within = lambda vals: next((i + 1 for i, _ in enumerate(vals)  # noqa: E731
                                    if max(vals[:i + 1]) >= 0.99 * target), None)
        rows.append({"seed": seed, "random_best": target,
                     "tpe_trials_to_1pct": within(res["tpe"]["values"]),
                     "random_trials_to_1pct": within(res["random"]["values"])})
    ratios = [r["tpe_trials_to_1pct"] / r["random_trials_to_1pct"] for r in rows
              if r["tpe_trials_to_1pct"] and r["random_trials_to_1pct"]]
    return {"runs": rows, "tpe_over_random_median": statistics.median(ratios) if ratios else None,
            "tpe_failed_to_reach": sum(1 for r in rows if not r["tpe_trials_to_1pct"]),
            "target": "TPE <= 0.5x random's trials to come within 1% of random's best"}


def _side_by_side(tmp: Path, name: str, trials: int, epochs: int) -> tuple[dict, dict, dict]:
    """The headline study with populations ("auto"), alone (population = 1), and the
    hand-written Optuna + Keras loop, one after the other."""
    text = HEADLINE.format(trials=trials, epochs=epochs, pruner="none")
    auto = run_arm("losstune", study_file=_write(tmp, f"{name}_auto.toml", text),
                   db=str(tmp / f"{name}_auto.db"))
    alone = run_arm("losstune", study_file=_write(tmp, f"{name}_1.toml",
                                                  _training(text, population=1)),
                    db=str(tmp / f"{name}_1.db"))
    hand = run_arm("optuna", trials=trials, epochs=epochs, db=str(tmp / f"{name}_hand.db"))
    return auto, alone, hand


def fig_population(q: bool, tmp: Path) -> dict[str, Any]:
    """The headline study: trials trained as populations ("auto", as shipped) against each
    trial alone (population = 1) and the hand-written Optuna + Keras loop, side by side."""
    trials, epochs = (8, 2) if q else (20, 5)
    together, alone, hand = _side_by_side(tmp, "pop", trials, epochs)
    per_hour = lambda r: 3600 * trials / r["seconds"]  # noqa: E731
    return {"setup": f"digits MLP 64-128-10, focal gamma/alpha, {trials} trials x {epochs} "
                     "epochs, TensorFlow CPU",
            "population": together["population"],
            "trials_per_hour": {"population": per_hour(together), "population_1": per_hour(alone),
                                "handwritten_optuna": per_hour(hand)},
            "seconds": {"population": together["seconds"], "population_1": alone["seconds"],
                        "handwritten_optuna": hand["seconds"]},
            "population_vs_population_1": alone["seconds"] / together["seconds"],
            "population_vs_handwritten": hand["seconds"] / together["seconds"],
            "best": {"population": together["best"], "population_1": alone["best"],
                     "handwritten_optuna": hand["best"]},
            "target": ">= 5x population = 1 and >= 15x the hand-written loop, same best"}


class _GpuUse:
    """Mean GPU utilisation while an arm runs, from nvidia-smi (None without a GPU)."""

    def __enter__(self) -> "_GpuUse":
        import shutil

        self.proc, self.mean, self.peak_memory_mib = None, None, None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        out = self.proc.communicate()[0]
        rows = [[float(v) for v in line.split(",")] for line in out.splitlines()
                if line.strip() and "," in line]
        if rows:
            self.mean = statistics.mean(r[0] for r in rows)
            self.peak_memory_mib = max(r[1] for r in rows)


def fig_population_bookkeeping(q: bool, tmp: Path) -> dict[str, Any]:
    """The 40-design study (digits MLP 64-128-10, focal γ/α, random sampler, 5 epochs, no
    pruning, no racing): losstune with populations ("auto") and alone (population = 1), the
    hand-written Optuna + Keras loop, and the same designs fitted as one bare stacked model,
    side by side. Spans run from the first trial's start to the last one's end (start-up is
    its own figure); "outside fit" is the span less the wall time inside Keras's fit."""
    designs, epochs = (12, 2) if q else (40, 5)
    auto, alone, hand = _side_by_side(tmp, "bk", designs, epochs)
    bare = run_arm("bare_population", study_file=str(tmp / "bk_auto.toml"),
                   db=str(tmp / "bk_auto.db"), epochs=epochs)

    def outside(r: dict[str, Any]) -> float:
        return 1 - r["fit_wall_seconds"] / r["span_seconds"]

    def after_first(r: dict[str, Any]) -> float | None:
        """Outside fit in the batches after the first: the first one pays the process's
        first compile and first eager calls of each loss, once (start-up)."""
        later = r["batches"][1:]
        if not later:
            return None
        return 1 - sum(b["fit_seconds"] for b in later) / sum(b["seconds"] for b in later)

    return {"setup": f"digits MLP 64-128-10, focal γ/α, {designs} designs x {epochs} epochs, "
                     "random sampler, TensorFlow CPU",
            "span_seconds": {"population_auto": auto["span_seconds"],
                             "population_1": alone["span_seconds"],
                             "handwritten_optuna": hand["seconds"],
                             "bare_stacked_fit": bare["fit_seconds"]},
            "startup_seconds": {"population_auto": auto["setup_seconds"],
                                "population_1": alone["setup_seconds"]},
            "trainings": {"population_auto": auto["trainings"],
                          "population_1": alone["trainings"]},
            "auto_vs_handwritten": hand["seconds"] / auto["span_seconds"],
            "auto_vs_population_1": alone["span_seconds"] / auto["span_seconds"],
            "auto_over_bare_fit": auto["span_seconds"] / bare["fit_seconds"],
            "outside_fit_share": {"population_auto": outside(auto),
                                  "population_1": outside(alone)},
            "outside_fit_share_after_the_first_batch": {"population_auto": after_first(auto),
                                                        "population_1": after_first(alone)},
            "batches": {"population_auto": auto["batches"],
                        "population_1": len(alone["batches"])},
            "statements_per_trial": {"population_auto": auto["statements"] / auto["trials"],
                                     "population_1": alone["statements"] / alone["trials"]},
            "best": {"population_auto": auto["best"], "population_1": alone["best"],
                     "handwritten_optuna": hand["best"]},
            "target": ">= 15x the hand-written loop, >= 4x population = 1, <= 3x the bare "
                      "fit; outside fit <= 10 % (population), <= 30 % (alone); <= 15 "
                      "statements a trial"}


def _gan_study(tmp: Path, name: str, changes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``losstune search`` of studies/gan_digits.toml with ``changes``; its database URL and
    the search's figures."""
    db = tmp / f"{name}.db"
    r = run_arm("cli_search", study_file=str(ROOT / "studies" / "gan_digits.toml"), db=str(db),
                changes=changes)
    return f"sqlite:///{db}", r


def _paired_against_baselines(design: Any, ranking: list[Any]) -> dict[str, Any]:
    """``design`` against each baseline on their common seeds, by the verdict's own paired
    test (results.compare: scipy.stats.ttest_rel, or the sign test on equal differences),
    Holm across the baselines (results.holm). diff = design − baseline, in KID."""
    from losstune import results

    tests = {}
    for base in (d for d in ranking if d.baseline is not None):
        c = results.compare(design, base, maximize=False)
        tests[base.words] = {"seeds": c.seeds, "kid_design": design.mean,
                             "kid_baseline": base.mean, "diff": c.diff, "test": c.test,
                             "p": c.p}
    p_values = [1.0 if t["p"] is None else t["p"] for t in tests.values()]  # untested: 1
    for name, adjusted in zip(tests, results.holm(p_values)):
        tests[name]["p_holm"] = adjusted
    return tests


def fig_gan_known_answer(q: bool, tmp: Path) -> dict[str, Any]:
    """Two known answers on digits (600 images, studies/gan_digits.toml's models):

    * broken: the non-saturating loss with the discriminator's learning rate at 0 (D never
      learns: the generator chases a fixed random critic). Searched against the two baselines
      (racing stops it after one seed: clearly worse), then ``losstune confirm --top 1`` gives
      it and the baselines the same seeds. It must rank last and be significantly worse than
      each baseline: the verdict's paired test over those seeds, Holm across the baselines;
    * A/A: a design equal to the non-saturating baseline but for η_D/η_G = 1.000001 (its own
      design, trained on the same seeds): raced with fresh seeds, the study's verdict must not
      say it wins."""
    from losstune.api import load_study

    seeds, epochs, samples = (2, 2, 300) if q else (6, 30, 600)
    base = {"n_trials": 3, "training.epochs": epochs, "dataset.max_samples": samples,
            "pruner": {"name": "none"}, "search.families": ["non_saturating"]}
    fixed = {"label_smoothing": 0.0, "r1_gamma": 0.0, "d_steps": 1}
    url, broken_run = _gan_study(tmp, "gan_broken", {
        **base, "racing": {"max_seeds": seeds, "test_seeds": 0},
        "search.non_saturating": {**fixed, "d_lr_ratio": 0.0}})
    start = time.perf_counter()
    losstune_cli("confirm", "gan_digits", "--storage", url, "--top", "1", "--seeds", str(seeds))
    confirm_seconds = time.perf_counter() - start
    ranking = load_study("gan_digits", storage=url).verdict.ranking
    broken = next(d for d in ranking if d.baseline is None)
    tests = _paired_against_baselines(broken, ranking)

    url_aa, aa_run = _gan_study(tmp, "gan_aa", {
        **base, "racing": {"max_seeds": seeds, "test_seeds": 2 if q else 8},
        "search.non_saturating": {**fixed, "d_lr_ratio": 1.000001}})
    verdict = load_study("gan_digits", storage=url_aa).verdict
    aa = next(d for d in verdict.ranking if d.baseline is None)
    aa_wins = verdict.significant and verdict.winner.key == aa.key
    return {"setup": f"gan_digits, {samples} samples, {epochs} epochs, {seeds} seeds",
            "broken": {"ranking": [(d.words, round(d.mean, 4), d.n) for d in ranking],
                       "is_last": ranking[-1].key == broken.key, "tests": tests,
                       "significantly_worse": all(
                           t["p_holm"] is not None and t["p_holm"] < 0.05 and t["diff"] > 0
                           for t in tests.values()),
                       "seconds": broken_run["seconds"] + confirm_seconds},
            "a_a": {"ranking": [(d.words, round(d.mean, 4), d.n) for d in verdict.ranking],
                    "tests": _paired_against_baselines(aa, verdict.ranking),
                    "sentence": verdict.sentence, "a_a_wins": aa_wins,
                    "seconds": aa_run["seconds"]},
            "target": "the broken design ranks last, significantly worse than each baseline; "
                      "the A/A design does not win"}


def fig_gan_literature(q: bool, tmp: Path) -> dict[str, Any]:
    """Lucic et al. (NeurIPS 2018) on digits: the six families of studies/gan_digits.toml
    (the study as shipped: 12 designs, 30 epochs, racing to 5 seeds, 8 fresh seeds for the
    winner and the baselines), then ``losstune confirm --top 6`` so that the best design of
    each family has the racing seeds too. Reported: the study's verdict, and each family's
    best design against the non-saturating baseline (the verdict's paired test on their common
    seeds, Holm across the families)."""
    from dataclasses import replace

    from losstune import results
    from losstune.api import load_study

    changes = ({"n_trials": 4, "training.epochs": 2, "dataset.max_samples": 300,
                "racing": {"max_seeds": 2, "test_seeds": 2}} if q else {})
    url, run = _gan_study(tmp, "gan_literature", changes)
    start = time.perf_counter()
    losstune_cli("confirm", "gan_digits", "--storage", url, "--top", "6", "--seeds",
                 "2" if q else "5")
    confirm_seconds = time.perf_counter() - start
    verdict = load_study("gan_digits", storage=url).verdict
    reference = next(d for d in verdict.ranking if d.description.get("family")
                     == "non_saturating" and d.baseline is not None)
    best: dict[str, Any] = {}
    for d in verdict.ranking:  # best first: the first design of each family
        best.setdefault(d.description.get("family"), d)
    families = {}
    for family, d in best.items():
        if d.key == reference.key:
            continue
        c = results.compare(d, reference, maximize=False)
        families[family] = {"design": d.words, "kid": d.mean, "ci": d.ci, "seeds": d.n,
                            "diff": c.diff, "diff_ci": c.ci, "test": c.test, "p": c.p,
                            "paired_seeds": c.seeds}
    p_values = [1.0 if f["p"] is None else f["p"] for f in families.values()]  # untested: 1
    for family, adjusted in zip(families, results.holm(p_values)):
        families[family]["p_holm"] = adjusted
    # Lucic et al.'s comparison: family against family at the same tuning budget, so each
    # family's best against the best searched non-saturating design (the untuned baseline
    # above also differs in the settings every family shares: γ, n_D, η_D/η_G).
    tuned = next((d for d in verdict.ranking if d.baseline is None and
                  d.description.get("family") == "non_saturating"), None)
    equal: dict[str, Any] = {}
    if tuned is not None:
        for family, d in best.items():
            if d.key in (tuned.key, reference.key) or family == "non_saturating":
                continue
            # On the racing seeds both have (confirm gave them 0..4): the seeds that picked
            # them, so optimistic, but the same for both sides.
            c = results.compare(replace(d, fresh={}), replace(tuned, fresh={}),
                                maximize=False)
            equal[family] = {"design": d.words, "kid": d.mean, "diff": c.diff,
                             "diff_ci": c.ci, "p": c.p, "paired_seeds": c.seeds}
        p_values = [1.0 if f["p"] is None else f["p"] for f in equal.values()]
        for family, adjusted in zip(equal, results.holm(p_values)):
            equal[family]["p_holm"] = adjusted
    return {"setup": "studies/gan_digits.toml" + (" (quick: 300 samples, 2 epochs, 4 "
                                                  "designs)" if q else " as shipped"),
            "sentence": verdict.sentence, "significant": verdict.significant,
            "non_saturating": {"kid": reference.mean, "ci": reference.ci,
                               "seeds": reference.n},
            "families": families,
            "tuned_non_saturating": ({"design": tuned.words, "kid": tuned.mean,
                                      "seeds": tuned.n} if tuned is not None else None),
            "against_tuned_non_saturating": equal,
            "significant_families": sorted(f for f, v in families.items()
                                           if v["p_holm"] is not None and v["p_holm"] < 0.05),
            "seconds": run["seconds"] + confirm_seconds,
            "literature": "Lucic et al. 2018: no loss consistently beats non-saturating"}


def fig_style_transfer(q: bool, tmp: Path) -> dict[str, Any]:
    """studies/style_transfer.toml as shipped (quick: 4 designs, 48 px, 1 epoch, 2 + 2
    seeds): its front of the designs' means, the dominance tests against Gatys's setting,
    the sentence and the wall time."""
    from losstune.api import load_study

    changes = ({"n_trials": 4, "dataset.size": 48, "training.epochs": 1,
                "racing": {"max_seeds": 2, "test_seeds": 2}} if q else {})
    db = tmp / "style.db"
    r = run_arm("cli_search", study_file=str(ROOT / "studies" / "style_transfer.toml"),
                db=str(db), changes=changes)
    verdict = load_study("style_transfer", storage=f"sqlite:///{db}").verdict
    data = verdict.to_dict()
    return {"setup": "studies/style_transfer.toml" + (" (quick)" if q else " as shipped"),
            "seconds": r["seconds"], "trainings": r["trainings"],
            "sentence": verdict.sentence, "significant": verdict.significant,
            "front": [{k: row[k] for k in ("design", "seeds", "content_ssim",
                                           "style_distance", "baseline")}
                      for row in data["verdict"]["front"]],
            "dominance": [{"design": d["design"], "dominates": d["dominates"],
                           **{m: {"diff": c["diff"], "p_adjusted": c["p_adjusted"]}
                              for m, c in d["objectives"].items()}}
                          for d in data["verdict"]["dominance"]]}


def fig_population_scaling(q: bool, tmp: Path, sizes: list[int] | None = None,
                           least: int | None = None) -> dict[str, Any]:
    """Trials per hour of the headline study (5 epochs) for populations of K = 1, 2, 4, ...,
    64, with each run's peak resident memory (and, on a GPU, its utilisation). Each run trains
    ``least`` trials (64), or K if more."""
    sizes = sizes or ([1, 2, 4] if q else [1, 2, 4, 8, 16, 32, 64])
    least = least or (8 if q else 64)
    epochs = 2 if q else 5
    rows = {}
    for k in sizes:
        trials = max(least, k)
        text = _training(HEADLINE.format(trials=trials, epochs=epochs, pruner="none"),
                         population=k)
        r = run_arm("losstune", study_file=_write(tmp, f"scale_{k}.toml", text),
                    db=str(tmp / f"scale_{k}.db"))
        rows[k] = {"trials": trials, "seconds": r["seconds"],
                   "trials_per_hour": 3600 * trials / r["seconds"], "best": r["best"],
                   "peak_rss_mb": r["peak_rss_mb"], "backend": r["backend"],
                   "device": r["device"]}
        if r["gpu_utilisation_pct"] is not None:  # sampled during the search alone
            rows[k].update(gpu_utilisation_pct=r["gpu_utilisation_pct"],
                           gpu_memory_mib=r["gpu_memory_mib"])
    base = rows[sizes[0]]
    for row in rows.values():
        row["speedup"] = row["trials_per_hour"] / base["trials_per_hour"]
        row["memory_ratio"] = row["peak_rss_mb"] / base["peak_rss_mb"]
    return {"setup": f"digits MLP 64-128-10, focal gamma/alpha, {epochs} epochs",
            "by_population": rows}


def fig_confirmed_verdict(q: bool, tmp: Path) -> dict[str, Any]:
    """A confirmed verdict (search plus racing to 5 seeds, populations as shipped) against
    a single-seed search of the same number of designs, each trial alone, on the long-tailed
    digits study."""
    study = str(ROOT / "studies" / "longtail_digits.toml")
    args = ["--n-trials", "4" if q else "30"]
    quick = QUICK_LONGTAIL if q else {}
    confirmed = run_arm("cli_search", study_file=study, db=str(tmp / "cv_race.db"), args=args,
                        changes={"racing": {"max_seeds": 5}, **quick})
    single = run_arm("cli_search", study_file=study, db=str(tmp / "cv_single.db"), args=args,
                     changes={**quick, "racing": False, "training.population": 1})
    return {"confirmed": confirmed, "single_seed_alone": single,
            "wall_ratio": confirmed["seconds"] / single["seconds"],
            "target": "<= 2x the single-seed search's wall time"}


def fig_memory(q: bool, tmp: Path) -> dict[str, Any]:
    early, late = (3, 10) if q else (5, 50)
    study = _write(tmp, "memory.toml", HEADLINE.format(trials=late, epochs=2, pruner="none"))
    r = run_arm("losstune", study_file=study, db=str(tmp / "mem.db"), memory_at=[early])
    rss = {int(k): v for k, v in r["rss_mb"].items()}
    return {f"rss_after_{early}_mb": rss[early], f"rss_after_{late}_mb": rss[late],
            "ratio": rss[late] / rss[early], "target": "<= 1.2x"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run of every figure")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--only", nargs="*", default=None, help="figures to run (by name)")
    parser.add_argument("--sizes", type=lambda v: [int(k) for k in v.split(",")], default=None,
                        help="population sizes of figure 13, e.g. 1,4,16,64,256")
    parser.add_argument("--scaling-trials", type=int, default=None,
                        help="trials per run of figure 13 (at least K; default 64)")
    parser.add_argument("--aa-per-set", type=int, default=None,
                        help="A/A studies per data set in figure 14 (default 5, 4 data sets)")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:  # inside a subprocess
        print(json.dumps(_call_arm(args.arm, json.loads(args.kwargs))))
        return

    results: dict[str, Any] = {"machine": {"platform": platform.platform(),
                                           "cpus": os.cpu_count(),
                                           "python": platform.python_version()},
                               "quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M")}
    q = args.quick
    global IN_PROCESS
    IN_PROCESS = q
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        figures = [
            ("0_throughput", lambda: fig_throughput(q, tmp)),
            ("1_loss_overhead", lambda: _loss_overhead(q)),
            ("2_bookkeeping", lambda: fig_bookkeeping(results["0_throughput"].pop("_losstune"))),
            ("3_startup", lambda: fig_startup(q, tmp)),
            ("4_pruning", lambda: fig_pruning(q, tmp)),
            ("5_workers", lambda: fig_workers(q, tmp)),
            ("5b_storage_share", lambda: fig_storage_share(q, tmp)),
            ("6_search_efficiency", lambda: fig_search_efficiency(q, tmp)),
            ("7_memory", lambda: fig_memory(q, tmp)),
            ("8_racing", lambda: fig_racing(q, tmp)),
            ("9_family_pruning", lambda: fig_family_pruning(q, tmp)),
            ("10_verdicts", lambda: fig_verdicts(q, tmp)),
            ("11_population", lambda: fig_population(q, tmp)),
            ("12_confirmed_verdict", lambda: fig_confirmed_verdict(q, tmp)),
            ("13_population_scaling", lambda: fig_population_scaling(q, tmp, args.sizes,
                                                                     args.scaling_trials)),
            ("14_calibration", lambda: fig_calibration(q, tmp, args.aa_per_set)),
            ("15_population_bookkeeping", lambda: fig_population_bookkeeping(q, tmp)),
            ("16_gan_known_answer", lambda: fig_gan_known_answer(q, tmp)),
            ("17_gan_literature", lambda: fig_gan_literature(q, tmp)),
            ("18_style_transfer", lambda: fig_style_transfer(q, tmp)),
        ]
        for name, compute in figures:
            if args.only and name not in args.only and not (
                    name == "2_bookkeeping" and "0_throughput" in args.only):
                continue
            start = time.perf_counter()
            results[name] = compute()
            print(f"{name} ({time.perf_counter() - start:.0f} s): "
                  f"{json.dumps(results[name], default=str)}", flush=True)
    if "0_throughput" in results:
        results["0_throughput"].pop("_losstune", None)
    out = args.out or ROOT / "benchmarks" / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")


def _loss_overhead(q: bool) -> dict[str, Any]:
    """At losstune's default of 64 steps per execution and at Keras's default of 1, on the
    headline MLP; and on a wider one, to show the overhead is per step, not per unit of work."""
    out: dict[str, Any] = {}
    arms = (("mlp128_steps_per_execution_64", 64, [128]),
            ("mlp128_steps_per_execution_1", 1, [128]),
            ("mlp512x512_steps_per_execution_64", 64, [512, 512]))
    for name, spe, hidden in arms[:1] if q else arms:  # --quick: one arm, one round
        r = run_arm("loss_overhead", steps=2 if q else 30, steps_per_execution=spe,
                    hidden=hidden, rounds=1 if q else 5)
        out[name] = {"cross_entropy_s": r["cross_entropy"], "dynamic_s": r["dynamic"],
                     "ratio": r["dynamic"] / r["cross_entropy"]}
    out["ratio"] = out["mlp128_steps_per_execution_64"]["ratio"]
    out["target"] = "<= 1.10x"
    return out


if __name__ == "__main__":
    main()
