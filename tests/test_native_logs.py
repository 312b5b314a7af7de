"""The backends' native log lines stay off stderr, so every error is one line: through the real
``losstune`` executable (click's CliRunner does not see what C++ writes to descriptor 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from losstune.native_logs import is_noise
from tests.conftest import write_study
from tests.test_workers import EXE, FAST, _wait_for

# Lines TensorFlow 2.2x printed on this machine's stderr, whatever TF_CPP_MIN_LOG_LEVEL said.
TF_NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796297962.112497    6764 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796297962.150517    6764 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796297990.331021    6764 op_level_cost_estimator.cc:699] Error in PredictCost() "
    "for the op: op: \"Softmax\" attr { key: \"T\" value { type: DT_FLOAT } }",
]


def test_the_noise_is_recognised_and_nothing_else():
    assert all(is_noise(line) for line in TF_NOISE)
    for line in ("Error: study.toml: n_trials: must be a valid integer, got '16'",
                 "warning: worker 1 died (exit code -9); its trial is retried",
                 "Traceback (most recent call last):",
                 "E0000 00:00:1796297990.331021    6764 session.cc:12] Out of memory",
                 "E0000 00:00:1796297990.331021    6764 cuda_dnn.cc:522] Could not create "
                 "cudnn handle: CUDNN_STATUS_INTERNAL_ERROR",
                 "    To enable the following instructions in a user's own message"):
        assert not is_noise(line), line


def test_the_filter_passes_every_other_line_and_lets_the_process_exit_at_once(tmp_path):
    """Through a real descriptor 2: the noise goes, other lines (a last one without a newline
    too) arrive whole and in order, also from a child process, and a process that keeps a
    copy of the pipe (multiprocessing's resource tracker does) does not hold the exit."""
    import sys

    code = ("import os, subprocess, sys, time\n"
            "from losstune.native_logs import silence\n"
            "silence()\n"
            f"os.write(2, {(TF_NOISE[0] + chr(10) + 'kept 1' + chr(10)).encode()!r})\n"
            f"os.write(2, {(TF_NOISE[1] + chr(10)).encode()!r})\n"
            "child = 'import sys; sys.stderr.write(\"kept 2\\\\n\")'\n"
            "subprocess.run([sys.executable, '-c', child])\n"
            "holder = subprocess.Popen(['sleep', '30'])  # keeps the pipe open after we exit\n"
            "print('kept 3', end='', file=sys.stderr)\n"
            "print(time.time())  # the script's end: from here, the exit alone\n")
    err, out = tmp_path / "stderr", tmp_path / "stdout"
    with err.open("w") as sink, out.open("w") as stdout:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=stdout, stderr=sink,
                                env=_env())
        assert proc.wait(timeout=60) == 0
        exited = time.time()
    # The exit waited neither for the pipe's end (the holder's 30 s) nor a fixed 2 s.
    assert exited - float(out.read_text()) < 1.5
    assert err.read_text() == "kept 1\nkept 2\nkept 3"


def _env() -> dict[str, str]:
    """The environment of a user who set nothing: no TF_CPP_MIN_LOG_LEVEL (the tests' conftest
    sets one), TensorFlow."""
    return {k: v for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}


@pytest.mark.slow
def test_an_error_after_the_backend_loaded_is_one_line(tmp_path):
    """TensorFlow is imported and a trial runs before the error: stderr holds the error's one
    line and nothing else (it held 4 more lines of TensorFlow's before)."""
    (tmp_path / "nomodel.py").write_text(
        "def build(input_shape, output_units):\n    raise ValueError('no model today')\n")
    study = write_study(tmp_path, {"n_trials": 1, "baselines": False,
                                   "model": {"kind": "factory", "factory": "nomodel:build"}})
    proc = subprocess.run([EXE, "search", str(study), "--storage",
                           f"sqlite:///{tmp_path / 'n.db'}"], capture_output=True, text=True,
                          timeout=300, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        "Error: all 1 trial of this run failed; first error: ValueError: no model today"]


@pytest.mark.slow
def test_sigterm_twice_is_one_line_and_keeps_what_was_done(tmp_path):
    """The first SIGTERM stops after the running step; a second one at once interrupts
    whatever runs then: still no traceback, at most one line on stderr, exit status 130."""
    study = write_study(tmp_path, {**FAST, "n_trials": 200})
    url = f"sqlite:///{tmp_path / 't.db'}"
    proc = subprocess.Popen([EXE, "search", str(study), "--storage", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    _wait_for(url, lambda s: s.get("COMPLETE", 0) >= 2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    assert len(err.splitlines()) <= 1, err


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_is_one_line(tmp_path):
    """The storage stops taking writes during the search (RLIMIT_FSIZE stands for a full disk):
    Optuna's heartbeat threads printed a traceback each (6 of them), the search a seventh;
    now the search says its one line and the threads nothing."""
    import resource

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    study = write_study(tmp_path, {  # six designs trained together, each with a heartbeat
        "n_trials": 6, "model": {"hidden": [8]}, "training": {"epochs": 1},
        "sampler": {"name": "grid", "n_startup_trials": None},
        "search": {"families": ["focal"], "cross_entropy": None,
                   "focal": {"gamma": {"low": None, "high": None,
                                       "choices": [0.0, 1.0, 2.0]},
                             "alpha": {"choices": [0.25, 0.5]}}}})
    proc = subprocess.run([EXE, "search", str(study), "--storage",
                           f"sqlite:///{tmp_path / 'full.db'}"], capture_output=True, text=True,
                          timeout=300, env=_env(), preexec_fn=small_files)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: OperationalError: "), proc.stderr[-3000:]
    assert "disk" in lines[0]
