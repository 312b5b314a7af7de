"""The ``losstune`` command line (click + rich).

Heavy libraries (TensorFlow, Keras, Optuna, plotly) are imported inside the commands that need
them, so ``losstune --help`` and ``losstune validate`` answer at once. User errors print one
line and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from losstune import __version__
from losstune.errors import LosstuneError

STORAGE_HELP = "Storage URL (default: the study file's, else sqlite:///losstune.db)."


def _storage_url(storage: str | None) -> str:
    """The URL a reading command uses: --storage, else the default SQLite file."""
    from losstune.storage import DEFAULT_URL, normalise

    return normalise(storage or DEFAULT_URL)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def handle_errors(func: Callable) -> Callable:
    """One line and exit status 2 for user errors; the traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = (click.get_current_context().find_root().obj or {}).get("debug", False)
        try:
            return func(*args, **kwargs)
        except LosstuneError as err:
            if debug:
                raise
            click.echo(f"Error: {err}", err=True)
            sys.exit(err.exit_code)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    from losstune import spec as spec_mod
    from losstune.space import families_to_choose

    spec = spec_mod.load(study_file)
    budget = [f"{spec.n_trials} trials" if spec.n_trials else "",
              f"{spec.timeout:g} s" if spec.timeout else ""]
    click.echo(f"{study_file}: OK — study {spec.name!r}, {spec.task} on {spec.dataset.name}, "
               f"objective {', '.join(spec.objective.metrics)}, families "
               f"{', '.join(families_to_choose(spec))}, {' / '.join(b for b in budget if b)}")


# ------------------------------------------------------------------------------------ search
def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def print_leaderboard(study: Any, top: int, console: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    from losstune.runner import counts, leaderboard

    rows = leaderboard(study, top)
    c = counts(study)
    metrics = study.user_attrs.get("objective") or ["objective"]
    # Text objects, not markup: study names and designs are user data ("[baseline]" too).
    table = Table(title=Text(f"{study.study_name}: {c['complete']} complete, "
                             f"{c['pruned']} pruned, {c['fail']} failed"))
    table.add_column("#", justify="right")
    table.add_column("trial", justify="right")
    table.add_column("loss design")
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("train s", justify="right")
    for row in rows:
        design = row["design"] + (" [baseline]" if row["baseline"] else "")
        table.add_row(str(row["rank"]), str(row["trial"]), Text(design),
                      *(_format_value(v) for v in row["values"]),
                      _format_value(row["train_time_s"]))
    if not rows:
        console.print(Text(f"{study.study_name}: no complete trial yet "
                           f"({c['pruned']} pruned, {c['fail']} failed, {c['running']} running)."))
        return
    console.print(table)


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--storage", help=STORAGE_HELP)
@click.option("--study-name", help="Study name (default: the file's name).")
@click.option("--n-trials", type=click.IntRange(min=1), help="Trials to run now (default: the file's).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Stop starting trials after this many seconds.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine, all on the same study.")
@click.option("--gpus", default=None, help="GPU ids to pin workers to, round-robin (e.g. 0,1).")
@click.option("--backend", type=click.Choice(["tensorflow", "torch", "jax"]), default=None,
              help="Keras backend (default: $KERAS_BACKEND, else tensorflow).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows of the final leaderboard.")
@handle_errors
def search(study_file: Path, storage: str | None, study_name: str | None, n_trials: int | None,
           timeout: float | None, workers: int, gpus: str | None, backend: str | None,
           top: int) -> None:
    """Run (or resume) the study a STUDY_FILE describes."""
    from rich.text import Text

    from losstune import runner
    from losstune import spec as spec_mod
    from losstune.storage import mask

    spec = spec_mod.load(study_file)
    runner.select_backend(backend)
    runner.check_for_backend(spec, study_file)
    url = runner.resolve_storage_url(spec, storage)
    n_trials = n_trials or spec.n_trials
    timeout = timeout or spec.timeout
    base_dir = study_file.parent.resolve()
    console = _console()
    splits = runner.load_data(spec, base_dir)  # bad data fails before the storage is touched
    study = runner.create_or_load(spec, url, study_name=study_name, base_dir=base_dir)
    runner.record_data(study, splits)
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    done = runner.counts(study)
    console.print(Text(f"study {study.study_name} in {mask(url)} ({done['complete']} "
                       f"complete, {done['pruned']} pruned, {done['fail']} failed so far)"))
    if workers > 4 and url.startswith("sqlite"):
        console.print(Text(f"note: {workers} workers on one SQLite file contend for its lock; "
                           "PostgreSQL (--storage postgresql://…) or journal:FILE scale better."))
    from losstune import stopping

    previous = stopping.install()
    interrupted = False
    try:
        with _progress(console, n_trials, len(before)) as (progress, callback):
            if workers == 1:
                ctx = runner.load_context(spec, base_dir, splits)
                console.print(Text(f"data: {splits.description}; backend {ctx.backend} on "
                                   f"{ctx.device}"))
                runner.optimize(study, ctx, n_trials=n_trials, timeout=timeout,
                                callbacks=[callback])
            else:
                from losstune import workers as workers_mod

                console.print(Text(f"data: {splits.description}; {workers} worker processes"))
                workers_mod.run(study_file, url, study.study_name, workers=workers,
                                n_trials=n_trials, timeout=timeout, gpus=gpus,
                                on_poll=lambda: callback(study, None))
    except KeyboardInterrupt:  # a second Ctrl-C
        interrupted = True
    finally:
        stopping.restore(previous)
    interrupted = interrupted or stopping.STOP.is_set()
    print_leaderboard(study, top, console)
    from losstune.report import save_to_dashboard

    save_to_dashboard(study)
    if interrupted:
        console.print("[yellow]Interrupted.[/] Completed trials are kept; run the same command "
                      "to continue.")
        sys.exit(130)
    new = [t for t in study.get_trials(deepcopy=False)
           if t.number not in before and t.state.is_finished()]
    failed = [t for t in new if t.state.name == "FAIL"]
    if new and len(failed) == len(new) and len(failed) >= runner.MAX_FAILURES_WITHOUT_SUCCESS:
        raise LosstuneError(f"stopped: the first {len(failed)} trials all failed; last error: "
                            f"{failed[-1].user_attrs.get('error', 'unknown error')}")


class _progress:
    """A rich progress bar over trials showing the best value so far."""

    def __init__(self, console: Any, total: int | None, already: int = 0) -> None:
        self.already = already  # trials finished before this run
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)

        self.progress = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[best]}", markup=False),
                                 console=console, transient=False)
        self.task = self.progress.add_task("search", total=total, best="")

    def __enter__(self):
        self.progress.start()
        return self.progress, self._callback

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def _callback(self, study: Any, trial: Any) -> None:
        """Reads the storage, so it counts every worker's trials (Optuna callback signature)."""
        finished = sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
        best = ""
        try:
            if len(study.directions) == 1:
                b = study.best_trial
                words = b.user_attrs.get("loss_words", "")
                best = f"best {b.values[0]:.4f} ({words[:40]}{'…' if len(words) > 40 else ''})"
        except ValueError:  # no complete trial yet
            pass
        self.progress.update(self.task, completed=finished - self.already, best=best)


# ------------------------------------------------------------------------------------ studies
@main.command()
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@handle_errors
def studies(storage: str | None) -> None:
    """List the studies in a storage."""
    import optuna
    from rich.table import Table
    from rich.text import Text

    from losstune.runner import check_exists
    from losstune.storage import mask, open_storage

    url = _storage_url(storage)
    check_exists(url)
    # Through open_storage like every other command: journal files and masked errors included.
    summaries = optuna.get_all_study_summaries(storage=open_storage(url, heartbeat=False))
    table = Table(title=Text(f"studies in {mask(url)}"))
    for col in ("study", "task", "objective", "trials", "best"):
        table.add_column(col)
    for s in summaries:
        best = s.best_trial.values[0] if s.best_trial and len(s.directions) == 1 else None
        table.add_row(Text(s.study_name), str(s.user_attrs.get("task", "")),
                      ", ".join(s.user_attrs.get("objective", [])), str(s.n_trials),
                      _format_value(best))
    _console().print(table)


@main.command()
@click.argument("study")
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@handle_errors
def show(study: str, storage: str | None, top: int) -> None:
    """Print the leaderboard of STUDY."""
    from losstune.runner import load_existing

    loaded = load_existing(_storage_url(storage), study)
    print_leaderboard(loaded, top, _console())


@main.command()
@click.argument("study")
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@click.option("--trial", "trial_number", type=int, default=None,
              help="Trial number to export (default: the best).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("best_loss.json"), show_default=True)
@handle_errors
def export(study: str, storage: str | None, trial_number: int | None, output: Path) -> None:
    """Write a trial's loss description; losstune.losses.load_loss(PATH) rebuilds the loss."""
    import optuna

    from losstune.runner import leaderboard, load_existing

    loaded = load_existing(_storage_url(storage), study)
    if trial_number is None:
        rows = leaderboard(loaded, 1)
        if not rows:
            raise LosstuneError(f"study {study!r} has no complete trial to export")
        chosen = loaded.trials[rows[0]["trial"]]
    else:
        matches = [t for t in loaded.trials if t.number == trial_number]
        if not matches:
            raise LosstuneError(f"study {study!r} has no trial {trial_number}; "
                                f"trials are 0..{len(loaded.trials) - 1}")
        chosen = matches[0]
        if chosen.state != optuna.trial.TrialState.COMPLETE:
            raise LosstuneError(f"trial {trial_number} of {study!r} is "
                                f"{chosen.state.name.lower()}, not complete")
    payload = {"study": loaded.study_name, "trial": chosen.number,
               "values": chosen.values, "metrics": loaded.user_attrs.get("objective"),
               "description": chosen.user_attrs.get("loss_words"),
               "loss": json.loads(chosen.user_attrs["loss"])}
    output.write_text(json.dumps(payload, indent=2) + "\n")
    click.echo(f"wrote {output}: trial {chosen.number}, {payload['description']}")


@main.command()
@click.argument("study")
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True,
              help="Distinct top designs to re-train (the baselines are added).")
@click.option("--seeds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Seeds per design (new data split and initialisation each).")
@handle_errors
def confirm(study: str, storage: str | None, top: int, seeds: int) -> None:
    """Re-train the top designs and the baselines with several seeds (for a ranking with CIs)."""
    from rich.progress import Progress

    from losstune import confirm as confirm_mod
    from losstune.report import _info

    url = _storage_url(storage)
    with Progress(console=_console()) as progress:
        task = progress.add_task("confirmation runs", total=None)

        def on_run(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        companion = confirm_mod.run(url, study, top=top, seeds=seeds, on_run=on_run)
    maximize = companion.directions[0].name == "MAXIMIZE"
    metric = (companion.user_attrs.get("objective") or ["objective"])[0]
    rows = _info.confirm_info(companion.get_trials(deepcopy=False), maximize, metric)
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{study}: confirmed with {seeds} seeds ({companion.study_name})"))
    for col in ("#", "loss design", "mean", "95% CI", "p vs baseline", ""):
        table.add_column(col)
    for i, r in enumerate(rows, start=1):
        table.add_row(str(i), Text(r.design + (" [baseline]" if r.baseline else "")),
                      f"{r.mean:.4f}", f"[{r.ci_low:.4f}, {r.ci_high:.4f}]",
                      "—" if r.p_value is None else f"{r.p_value:.3f}",
                      "beats baseline" if r.beats_baseline else "")
    _console().print(table)


@main.command()
@click.argument("study")
@click.option("--storage", default=None, help="Storage URL (default: sqlite:///losstune.db).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: reports/STUDY.html).")
@handle_errors
def report(study: str, storage: str | None, output: Path | None) -> None:
    """Write a self-contained HTML report ranking the loss designs of STUDY."""
    from losstune import report as report_mod

    path = report_mod.write(study, _storage_url(storage), output)
    size = path.stat().st_size / 1e6
    click.echo(f"wrote {path} ({size:.1f} MB, self-contained: opens offline)")


if __name__ == "__main__":  # pragma: no cover
    main()
