"""The ``losstune`` command line (click + rich).

Heavy libraries (TensorFlow, Keras, Optuna, plotly) are imported inside the commands that need
them, so ``losstune --help`` and ``losstune validate`` answer at once. User errors print one
line and exit with status 2; ``--debug`` shows the traceback instead.

Layer: interface.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from losstune import __version__, results
from losstune.errors import LosstuneError, one_line

# An upper bound on a run's budget: far beyond any search, and a number every counter holds.
MAX_TRIALS = 1_000_000
# Worker processes on one machine: each loads the backend (about 1 GB); beyond this, PostgreSQL
# and several machines (README: Workers).
MAX_WORKERS = 256
STORAGE_HELP = "Storage URL (default: the study file's, else sqlite:///losstune.db)."


def _storage_url(storage: str | None) -> str:
    """The URL a reading command uses: --storage, else the default SQLite file."""
    from losstune.storage import DEFAULT_URL, normalise

    return normalise(storage or DEFAULT_URL)


def _console(stderr: bool = False):
    from rich.console import Console

    # Not a terminal (a pipe, a log file, CI): rich would assume 80 columns and squeeze the
    # design names in tables to a few letters per line.
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=140)
    return console


def handle_errors(func: Callable) -> Callable:
    """One line for every error, the traceback only with --debug: exit status 2 for user
    errors, 130 for an interrupt, 1 for anything else (a full disk, a database that refuses, a
    bug), which still names its cause."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = (click.get_current_context().find_root().obj or {}).get("debug", False)
        try:
            return func(*args, **kwargs)
        except LosstuneError as err:
            if debug:
                raise
            _say(str(err))
            sys.exit(err.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors and exits, said by click (_Main)
        except BrokenPipeError:  # `losstune show … | head -1`: the reader has all it wants
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error
            sys.exit(1)  # quietly, as click ends on a closed pipe outside a command
        except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM (stopping.py): no traceback
            if debug:
                raise
            _say("interrupted; what was stored is kept: run the same command to continue")
            sys.exit(130)
        except Exception as err:  # noqa: BLE001 - the one place any other error becomes a line
            if debug:
                raise
            _say(f"{one_line(err)} (losstune --debug shows the traceback)")
            sys.exit(1)

    return wrapper


def _say(text: str) -> None:
    """One line on stderr, without any storage URL's secrets (every URL this process opened)."""
    from losstune.storage import scrub_known

    click.echo(f"Error: {scrub_known(text)}", err=True)


class _Main(click.Group):
    """click's group, with click's own usage errors said in one line like every other error
    (click prints the usage and a hint first: three more lines)."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as err:
            click.echo(f"Error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="losstune")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Search loss designs for Keras models with Optuna.

    Typical use: losstune search studies/quickstart.toml, then losstune show quickstart.
    """
    ctx.obj = {"debug": debug}


# ------------------------------------------------------------------------------------ validate
@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@handle_errors
def validate(study_file: Path) -> None:
    """Check a study file without training anything."""
    from losstune import data
    from losstune import studyfile as spec_mod

    spec = spec_mod.load(study_file)
    data.check_columns(spec.dataset, study_file.parent)  # a csv's header, an npz's array names
    budget = [f"{spec.n_trials} search trials" if spec.n_trials else "",
              f"{spec.timeout:g} s" if spec.timeout else ""]
    click.echo(f"{study_file}: OK — study {spec.name!r}, {spec.task} on {spec.dataset.name}, "
               f"objective {', '.join(spec.objective.metrics)}, "
               f"{' / '.join(b for b in budget if b)}")
    click.echo(f"  {_plan_line(spec)}")


# ------------------------------------------------------------------------------------ search
def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


FORMAT_OPTION = click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]),
                             default="table", show_default=True,
                             help="Output format: a table, or JSON (README: Machine-readable "
                                  "output).")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# Below this many columns the verdict table drops its trial numbers and shows the interval
# as ± its half-width, so the design column keeps room to wrap in (at 80 columns the design
# names shrank to nothing).
NARROW = 110


def print_verdict(study: Any, verdict: Any, top: int, console: Any) -> None:
    """The ranking of designs over seeds and the verdict sentence (the same as every output).
    A design's name wraps in its column; it is never cut."""
    from rich.table import Table
    from rich.text import Text

    from losstune.stored import counts

    rows = verdict.ranking[:top]
    if not rows:
        c = counts(study)
        console.print(Text(f"{study.study_name}: no complete trial yet "
                           f"({c['pruned']} pruned, {c['fail']} failed, {c['running']} running)."))
        return
    narrow = console.width < NARROW
    by_key = {cmp.baseline_key: cmp for cmp in verdict.comparisons}
    # Text objects, not markup: study names and designs are user data ("[baseline]" too).
    title = f"{study.study_name}: {verdict.tally.words()}" if verdict.tally else study.study_name
    table = Table(title=Text(title), pad_edge=not narrow, collapse_padding=narrow)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("loss design", ratio=1, min_width=18, overflow="fold")
    columns = ["seeds", f"mean {verdict.metric}" if not narrow else "mean",
               "95% CI" if not narrow else "± 95%", "winner − this" if not narrow else "Δ",
               "p_adj"] + ([] if narrow else ["trials"])
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    for i, d in enumerate(rows, start=1):
        cmp = by_key.get(d.key)
        marks = (" [baseline]" if d.baseline else "") + (" ★" if i == 1 and verdict.significant
                                                          else "")
        ci = "—" if not d.ci else (f"±{(d.ci[1] - d.ci[0]) / 2:.4f}" if narrow
                                   else f"[{d.ci[0]:.4f}, {d.ci[1]:.4f}]")
        cells = [str(i), Text(d.words + marks),
                 f"{d.n}+{len(d.fresh)}" if d.fresh else str(d.n), f"{d.mean:.4f}", ci,
                 f"{cmp.diff:+.4f}" if cmp and cmp.diff is not None else "", _p_adj(cmp)]
        table.add_row(*cells, *([] if narrow else [_trials(d.trials)]))
    console.print(table)
    if narrow:
        console.print(Text(f"mean: {verdict.metric}; Δ: winner − this, paired"
                           + ("; seeds n+m: n ranked the design, m fresh ones tested it"
                              if any(d.fresh for d in rows) else "")))
    elif any(d.fresh for d in rows):
        console.print(Text("seeds: n+m = n seeds that ranked the design (mean, CI) + m fresh "
                           "seeds that tested it against the baselines (winner − this, p_adj)"))
    console.print(Text("Verdict: " + verdict.sentence + "."))
    for note in verdict.notes:
        console.print(Text(f"note: {note}."))


def _p_adj(cmp: Any) -> str:
    if cmp is None:
        return ""
    return "1 seed" if cmp.p_adjusted is None else f"{cmp.p_adjusted:.3g}"


def _trials(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:3])
    return shown + (f" +{len(numbers) - 3}" if len(numbers) > 3 else "") if numbers else "—"


def _gpu_ids(value: str | None) -> str | None:
    """--gpus: a comma-separated list of GPU ids (integers >= 0, spaces allowed) -> "0,1"."""
    if value is None:
        return None
    ids = [part.strip() for part in value.split(",")]
    if not all(part.isascii() and part.isdigit() for part in ids):
        raise click.BadParameter(f"{value!r} is not a list of GPU ids; give integers >= 0 "
                            "separated by commas, e.g. 0,1", param_hint="'--gpus'")
    return ",".join(str(int(part)) for part in ids)


def _finite_seconds(value: float | None) -> float | None:
    """--timeout: click's FloatRange lets nan and inf through (comparisons with nan are false)."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds; give a finite number > 0",
                            param_hint="'--timeout'")
    return value


def _study_name(value: str | None) -> str | None:
    """--study-name: the rules of a study file's name (1..200 characters, spec's checks)."""
    from losstune.studyfile._schema import check_study_name

    if value is not None and (not value or len(value) > 200 or not value.isprintable()):
        raise click.BadParameter(f"{value!r}: a study name is 1 to 200 printable characters",
                                 param_hint="'--study-name'")
    try:
        return check_study_name(value) if value is not None else None
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--study-name'") from None


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--storage", help=STORAGE_HELP)
@click.option("--study-name", callback=lambda ctx, param, value: _study_name(value),
              help="Study name (default: the file's name).")
@click.option("--n-trials", type=click.IntRange(min=1, max=MAX_TRIALS),
              help="New designs to try now (default: the file's n_trials).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              callback=lambda ctx, param, value: _finite_seconds(value),
              help="Stop starting trials after this many seconds.")
@click.option("--workers", type=click.IntRange(min=1, max=MAX_WORKERS), default=1,
              show_default=True,
              help="Worker processes on this machine, all on the same study.")
@click.option("--gpus", default=None, callback=lambda ctx, param, value: _gpu_ids(value),
              help="GPU ids to pin workers to, round-robin (e.g. 0,1).")
@click.option("--backend", type=click.Choice(["tensorflow", "torch", "jax"]), default=None,
              help="Keras backend (default: $KERAS_BACKEND, else tensorflow).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows of the final leaderboard.")
@handle_errors
def search(study_file: Path, storage: str | None, study_name: str | None, n_trials: int | None,
           timeout: float | None, workers: int, gpus: str | None, backend: str | None,
           top: int) -> None:
    """Run (or resume) the study a STUDY_FILE describes.

    --n-trials counts new designs: each is trained once on the study's seed, and a design the
    sampler proposes again is not trained again. Racing (on by default) adds trainings of the
    designs that stay close to the best on more seeds.
    """
    from rich.text import Text

    from losstune import api, runner
    from losstune import backend as backend_mod
    from losstune import stored as stored_study
    from losstune.storage import mask

    if gpus and workers == 1:
        raise LosstuneError("--gpus pins worker processes: use it with --workers N (N > 1); "
                            "one process uses the GPUs CUDA_VISIBLE_DEVICES lets it see")
    study = api.Study.from_file(study_file, storage=storage, study_name=study_name)
    backend_mod.select(backend)
    spec = study.spec
    n_trials = n_trials or spec.n_trials
    console = _console()
    bar: list[_progress] = []

    def started(optuna_study: Any, storage_obj: Any) -> None:
        import optuna

        done = results.tally(stored_study.run_records(
            optuna_study, stored_study.runs_study(optuna_study, storage_obj, create=False)))
        console.print(Text(f"study {optuna_study.study_name} in {mask(study.storage)} "
                           f"(so far: {done.words()})"))
        console.print(Text(_plan_line(spec)))
        if workers > 4 and study.storage.startswith("sqlite"):
            console.print(Text(f"note: {workers} workers on one SQLite file contend for its "
                               "lock; PostgreSQL (--storage postgresql://…) or journal:FILE "
                               "scale better."))
        # The bar reads the storage every half second: as a reader, without the write lock
        # that every writer's transaction takes at its start (storage.py).
        from losstune.storage import open_storage

        reader = open_storage(study.storage, heartbeat=False, create=False)
        bar.append(_progress(console, n_trials, optuna.load_study(
            study_name=optuna_study.study_name, storage=reader), reader).__enter__())

    hooks = api.SearchHooks(started=started,
                            status=lambda text: bar and bar[0].status(text),
                            refresh=lambda: bar and bar[0].refresh(),
                            message=lambda text: console.print(Text(text)))
    try:
        result = study.run_search(n_trials=n_trials, timeout=timeout, workers=workers,
                                  gpus=gpus, hooks=hooks)
    finally:
        if bar:
            bar[0].__exit__(None, None, None)
    for fault in result.faults:
        console.print(Text(f"warning: {fault.describe()}"))
    if result.exhausted:
        console.print(Text(f"note: the sampler proposed only designs it had tried, "
                           f"{runner.MAX_REPEATS} times in a row: this search space has no "
                           f"new design left; {result.new_designs} new this run"))
    loaded = study.optuna_study
    if len(loaded.directions) == 1:
        print_verdict(loaded, study.verdict, top, console)
    else:
        print_pareto(study.verdict, top, console)
    if result.interrupted:
        console.print("[yellow]Interrupted.[/] Completed trials are kept; run the same command "
                      "to continue.")
        sys.exit(130)
    if result.error is not None:
        raise result.error


def _plan_line(spec: Any) -> str:
    """What the search will do: searched families, baselines apart, and racing."""
    from losstune.space import baseline_only_families

    searched = list(spec.families)
    extra = baseline_only_families(spec)
    baselines = [b.family + (f" ({', '.join(f'{k}={v}' for k, v in b.params.items())})"
                             if b.params else "") for b in spec.baseline_designs]
    line = f"families searched: {', '.join(searched)}"
    line += f"; baselines: {', '.join(baselines) if baselines else 'none'}"
    if extra:
        line += f" (baseline-only families: {', '.join(extra)})"
    race = spec.race
    if race and spec.multi_objective:
        from losstune.runner import FRONT_RACED

        line += (f"; after the search, {FRONT_RACED} searched designs spread along the front "
                 f"and the baselines get {race.max_seeds} seeds"
                 + (f", then {race.test_seeds} fresh seeds for the verdict"
                    if race.test_seeds else ""))
    elif race:
        line += f"; racing up to {race.max_seeds} seeds per design (p < {race.alpha:g})"
        if race.test_seeds:
            line += (f", then the winner and the baselines on {race.test_seeds} fresh seeds "
                     "for the verdict")
    else:
        line += "; single-seed search (racing off)"
    return line


def print_pareto(verdict: Any, top: int, console: Any) -> None:
    """Several objectives: the front of the designs' means over seeds (with 95 % intervals),
    which searched designs dominate a baseline significantly, and the sentence."""
    from rich.table import Table
    from rich.text import Text

    from losstune import pareto

    table = Table(title=Text(f"{verdict.study}: Pareto front of the designs' means"))
    for col in ("", "loss design", "seeds", *verdict.metrics):
        table.add_column(col)
    winners = {m.key for m in verdict.winners}
    knee = pareto.knee(verdict)
    for m in verdict.front[:top]:
        mark = " ".join((["★"] if m.key in winners else [])
                        + (["knee"] if knee and m.key == knee.key else []))
        cells = [f"{results.fmt(d.mean, 4)}" + (f" [{results.fmt(d.ci[0], 3)}, "
                                                 f"{results.fmt(d.ci[1], 3)}]" if d.ci else "")
                 for d in m.per_objective]
        table.add_row(mark, Text(m.words + (" (baseline)" if m.baseline else "")), str(m.n),
                      *cells)
    console.print(table)
    for d in verdict.dominance:
        tests = "; ".join(f"{metric}: {results.fmt(c.diff, 3)}, p_adj = "
                          f"{results.fmt(c.p_adjusted, 3)}"
                          for metric, c in zip(verdict.metrics, d.comparisons))
        console.print(Text(f"{d.design.words} vs {d.baseline.words}: "
                           f"{'dominates' if d.dominates else 'does not dominate'} ({tests})"))
    console.print(Text(f"Verdict: {verdict.sentence}", style="bold"))
    for note in verdict.notes:
        console.print(Text(f"note: {note}"))


def finished_any(trials: list[Any]) -> bool:
    return any(t.state.name == "COMPLETE" for t in trials)


def _info_progress_class() -> Any:
    from rich.progress import Progress
    from rich.text import Text

    class InfoProgress(Progress):
        """rich's Progress with lines of text under the bar: the counts and the best design
        so far, wrapped rather than cut, whatever the terminal's width; and the epoch the
        training in this process has reached (losstune/activity.py)."""

        info = ""

        def get_renderables(self) -> Any:
            from losstune import activity

            yield self.make_tasks_table(self.tasks)
            if self.info:
                yield Text(self.info)
            now = activity.describe()  # this process's training, epoch by epoch
            if now:
                yield Text(now)

    return InfoProgress


def _InfoProgress(*columns: Any, **kwargs: Any) -> Any:  # noqa: N802 - a class, made lazily
    return _info_progress_class()(*columns, **kwargs)


class _progress:
    """A rich progress bar over new designs (done/total, time, ETA) and, on the line below,
    what the study did (designs, trainings, repeats: results.Tally, as every view says it)
    and the best design so far, wrapped at the terminal's width, never cut; all read from
    the storage, so every worker's trials count."""

    def __init__(self, console: Any, total: int | None, study: Any, storage: Any) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.study, self.storage = study, storage
        self.companion: Any = None  # the replicate-runs study, once it exists
        self._info = ""
        self._seen: tuple[int, int] | None = None
        self.already = self._new_designs(study.get_trials(deepcopy=False))
        columns = [TextColumn("new designs"), BarColumn(bar_width=16 if console.width < NARROW
                                                        else 40),
                   MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn()]
        self.progress = _InfoProgress(*columns, console=console, transient=False)
        self.task = self.progress.add_task("search", total=total)

    def __enter__(self) -> "_progress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.refresh()
        self.progress.stop()

    def status(self, text: str) -> None:
        self.progress.info = f"({text}…)"
        self.progress.refresh()

    def callback(self, study: Any, trial: Any) -> None:  # Optuna callback signature
        self.refresh()

    def refresh(self) -> None:
        """Read both studies once; recount and recompute the verdict only when a run has
        finished (the bar is refreshed every half second while workers run)."""
        from losstune import stored as stored_study

        trials = self.study.get_trials(deepcopy=False)
        if self.companion is None:
            self.companion = stored_study.runs_study(self.study, self.storage, create=False)
        runs = self.companion.get_trials(deepcopy=False) if self.companion else []
        finished = (sum(t.state.is_finished() for t in trials),
                    sum(t.state.is_finished() for t in runs))
        if finished != self._seen and finished_any(trials + runs):
            self._seen = finished
            records = results.records(trials, runs)
            if len(self.study.directions) == 1:  # the verdict counts the tally too
                metric = results.metrics_of(self.study.user_attrs)[0]
                v = results.verdict(self.study.study_name, metric,
                                    self.study.directions[0].name == "MAXIMIZE", records)
                w = v.winner
                self._info = v.tally.words() + ("" if w is None else (
                    f" · best {w.mean:.4f}/{w.n} seed{'s' if w.n != 1 else ''} ({w.words})"))
            else:
                self._info = results.tally(records).words()
        if self._info:
            self.progress.info = self._info
        self.progress.update(self.task, completed=self._new_designs(trials) - self.already)

    @staticmethod
    def _new_designs(trials: list[Any]) -> int:
        """Finished search trials that tried a design for the first time (what --n-trials
        counts)."""
        return sum(1 for t in trials if t.state.is_finished() and not results.is_repeat(t))


# ------------------------------------------------------------------------------------ studies
@main.command()
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@FORMAT_OPTION
@handle_errors
def studies(storage: str | None, fmt: str) -> None:
    """List the studies in a storage."""
    import optuna
    from rich.table import Table
    from rich.text import Text

    from losstune.results import RUNS_SUFFIX
    from losstune.stored import check_exists
    from losstune.storage import mask, open_storage

    url = _storage_url(storage)
    check_exists(url)
    # Through open_storage like every other command: journal files and masked errors included.
    reader = open_storage(url, heartbeat=False, create=False)
    summaries = optuna.get_all_study_summaries(storage=reader)
    rows = []
    for s in summaries:
        single = len(s.directions) == 1
        rows.append({"study": s.study_name, "task": s.user_attrs.get(results.TASK),
                     "objective": s.user_attrs.get(results.OBJECTIVE, []),
                     "directions": [d.name.lower() for d in s.directions],
                     "trials": s.n_trials,
                     "kind": "replicate runs" if s.study_name.endswith(RUNS_SUFFIX) else "search",
                     "best_single_run": (s.best_trial.values[0]
                                         if single and s.best_trial else None)})
    if fmt == "json":
        _echo_json({"storage": mask(url), "studies": rows})
        return
    table = Table(title=Text(f"studies in {mask(url)}"))
    for col in ("study", "kind", "task", "objective", "trials", "best single run"):
        table.add_column(col)
    for r in rows:
        table.add_row(Text(r["study"]), r["kind"], str(r["task"] or ""),
                      ", ".join(r["objective"]), str(r["trials"]),
                      _format_value(r["best_single_run"]))
    _console().print(table)
    click.echo("Verdicts (means over seeds, paired tests): losstune show STUDY")


@main.command()
@click.argument("study")
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Designs to list.")
@FORMAT_OPTION
@handle_errors
def show(study: str, storage: str | None, top: int, fmt: str) -> None:
    """Print the ranking of STUDY's designs over seeds and its verdict."""
    from losstune import api

    loaded = api.load_study(study, storage=_storage_url(storage))
    optuna_study = loaded.optuna_study
    verdict = loaded.verdict
    if fmt == "json":
        _echo_json(verdict.to_dict(top))
    elif len(optuna_study.directions) > 1:
        print_pareto(verdict, top, _console())
    else:
        print_verdict(optuna_study, verdict, top, _console())


def _replacing(path: Path) -> str:
    """What `export` and `report` add to "wrote PATH" when a file was there (and is replaced)."""
    return " (replacing the file that was there)" if path.exists() else ""


def _reader(url: str) -> Any:
    from losstune.storage import open_storage

    return open_storage(url, heartbeat=False, create=False)


@main.command()
@click.argument("study")
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@click.option("--trial", "trial_number", type=int, default=None,
              help="Trial number to export (default: the verdict's winner).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              default=Path("best_loss.json"), show_default=True)
@click.option("--pick", default=None,
              help="Several objectives: which front member to write, 'knee' (the default: "
                   "nearest the ideal point) or an objective's name (the front's best on it).")
@handle_errors
def export(study: str, storage: str | None, trial_number: int | None, output: Path,
           pick: str | None) -> None:
    """Write the verdict's winning loss design; losstune.losses.load_loss(PATH) rebuilds it."""
    from losstune import api
    from losstune.paths import check_output_path

    check_output_path(output)  # before any work: no folder, a symbolic link...
    replaced = _replacing(output)
    path = api.load_study(study, storage=_storage_url(storage)).export(
        output, trial=trial_number, overwrite=True, pick=pick)
    payload = json.loads(path.read_text())
    if "picked_by" in payload:
        means = ", ".join(f"{k} {results.fmt(v, 4)}" for k, v in payload["means"].items())
        click.echo(f"wrote {output}{replaced}: {payload['description']} (the front's "
                   f"{payload['picked_by']}: {means}, over {payload['seeds']} "
                   f"seed{'s' if payload['seeds'] != 1 else ''}; verdict: "
                   f"{payload['verdict']['sentence']})")
    elif trial_number is None:
        click.echo(f"wrote {output}{replaced}: {payload['description']} (mean over "
                   f"{payload['seeds']} "
                   f"seed{'s' if payload['seeds'] != 1 else ''}; verdict: "
                   f"{payload['verdict']['sentence']})")
    else:
        click.echo(f"wrote {output}{replaced}: trial {payload['trial']}, "
                   f"{payload['description']}")


@main.command()
@click.argument("study")
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True,
              help="Distinct top designs to give more seeds (the baselines are added).")
@click.option("--seeds", type=click.IntRange(min=2, max=100), default=5, show_default=True,
              help="Seeds per design in all, the search's own seed included (a new data split "
                   "and initialisation each): the seeds the winner is picked on.")
@click.option("--test-seeds", type=click.IntRange(min=2, max=100), default=None,
              help="Fresh seeds in all for the winner and the baselines, on which the verdict "
                   "tests [default: the study's racing.test_seeds].")
@handle_errors
def confirm(study: str, storage: str | None, top: int, seeds: int,
            test_seeds: int | None) -> None:
    """Give the top designs and the baselines more seeds, then print the verdict."""
    from rich.progress import Progress

    from losstune import api

    loaded = api.load_study(study, storage=_storage_url(storage))
    loaded.check_trainable("confirm")  # before the progress bar: one line if it cannot
    with Progress(console=_console()) as progress:
        task = progress.add_task("confirmation runs", total=None)

        def on_run(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        verdict = loaded.confirm(seeds, top=top, test_seeds=test_seeds, on_run=on_run)
    console = _console()
    if len(loaded.optuna_study.directions) > 1:
        print_pareto(verdict, top + 4, console)
    else:
        print_verdict(loaded.optuna_study, verdict, top + 4, console)


@main.command()
@click.argument("study")
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: reports/STUDY.html).")
@handle_errors
def report(study: str, storage: str | None, output: Path | None) -> None:
    """Write a self-contained HTML report ranking the loss designs of STUDY."""
    from losstune import api
    from losstune.paths import default_report_path

    replaced = _replacing(output if output is not None else default_report_path(study))
    path = api.load_study(study, storage=_storage_url(storage)).report(output)
    size = path.stat().st_size / 1e6
    click.echo(f"wrote {path}{replaced} ({size:.1f} MB, self-contained: opens offline)")


def run() -> None:
    """The ``losstune`` executable: the backends' native log lines filtered off stderr first
    (losstune/native_logs.py), and an error in a background thread (Optuna's heartbeats, the
    progress display) kept to one line, unless --debug asks to see everything; then the
    commands."""
    import threading

    from losstune import native_logs

    if "--debug" in sys.argv[1:2]:
        main()
        return
    native_logs.silence()
    threading.excepthook = _thread_failed
    try:
        main()
    except SystemExit as done:
        # A thread that died while the command itself succeeded: said once, in one line. When
        # the command failed too (a full disk stops the heartbeats and the search alike), its
        # own error line says it.
        if done.code in (0, None) and _THREAD_ERRORS:
            click.echo(f"warning: {_THREAD_ERRORS[0]}", err=True)
        raise


_THREAD_ERRORS: list[str] = []


def _thread_failed(args: Any) -> None:
    """threading.excepthook: no traceback per thread (a full disk printed one for each of six
    heartbeat threads), the first reason kept for :func:`run`."""
    from losstune.storage import scrub_known

    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    _THREAD_ERRORS.append(scrub_known(f"background thread {name} stopped: "
                                      f"{one_line(args.exc_value)}"))


if __name__ == "__main__":  # pragma: no cover
    run()
