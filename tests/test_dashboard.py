"""optuna-dashboard on a finished losstune study, checked through its HTTP API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def dashboard(finished):
    _, url, _ = finished
    port = free_port()
    exe = Path(sys.executable).parent / "optuna-dashboard"
    proc = subprocess.Popen([str(exe), url, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                get(f"{base}/api/studies")
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode()) from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_shows_objective_names_attrs_notes_and_plots(dashboard):
    summaries = get(f"{dashboard}/api/studies")["study_summaries"]
    study = next(s for s in summaries if s["study_name"] == "tiny")
    detail = get(f"{dashboard}/api/studies/{study['study_id']}")
    assert detail["objective_names"] == ["macro_f1"]
    # The study's note is the verdict, the same sentence every other output shows.
    assert detail["note"]["body"].startswith("### Verdict")
    trials = detail["trials"]
    assert len(trials) == 4
    for t in trials:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        for key in ("family", "val.macro_f1", "train_time_s", "device", "loss_words"):
            assert key in attrs
        assert len(t["intermediate_values"]) == 3  # one per epoch
        assert attrs["loss_words"] in t["note"]["body"] and "| **macro_f1** |" in t["note"]["body"]
    union = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    # What the README says: numeric attributes are sortable columns, text ones are not.
    assert union["val.macro_f1"] and union["train_time_s"]
    assert union["family"] is False and union["device"] is False
    ids = {g["id"] for g in detail["plotly_graph_objects"]}
    assert {"losstune-history", "losstune-families", "losstune-recall"} <= ids
    figure = json.loads(next(g for g in detail["plotly_graph_objects"]
                             if g["id"] == "losstune-history")["graph_object"])
    assert figure["data"]
