"""The benchmark script cannot rot: a --quick smoke run of some figures, checking the JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_benchmarks_quick_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick",
                           "--out", str(out), "--only", "1_loss_overhead", "3_startup",
                           "5b_storage_share", "8_racing", "13_population_scaling", "--sizes", "2"],
                          capture_output=True, text=True, timeout=500, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["machine"]["cpus"] >= 1
    assert data["1_loss_overhead"]["ratio"] > 0
    assert 0 < data["3_startup"]["help_s_median"] < 30
    assert 0 <= data["5b_storage_share"]["storage_share"] < 1
    # 8 runs `losstune search` and `show -f json` (in this process under --quick)
    racing = data["8_racing"]["racing"]
    assert racing["sentence"] and racing["fresh_trainings"] > 0 and racing["winner_seeds"] >= 2
    scaling = data["13_population_scaling"]["by_population"]
    assert set(scaling) == {"2"} and scaling["2"]["speedup"] == 1.0
    assert all(row["trials_per_hour"] > 0 and row["peak_rss_mb"] > 0 for row in scaling.values())
    for name in ("1_loss_overhead", "3_startup", "5b_storage_share", "8_racing",
                 "13_population_scaling"):
        assert name in proc.stdout  # each figure printed as it is measured
