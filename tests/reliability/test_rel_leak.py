"""Resident memory stays flat over many training/evaluation iterations of an ODE model; the
meter itself detects a leak of 1 MiB per iteration."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _measure_in_fresh_process(stmt: str) -> dict:
    """Run ``stmt`` (which sets ``r = measure_rss(...)``) in a new interpreter. Inside the test
    process, memory freed by earlier tests sits in malloc's heap and absorbs new allocations
    without raising RSS, which would hide a leak (seen: 0 MiB growth for a 40 MiB leak)."""
    code = (
        "import json, torch\ntorch.set_num_threads(1)\n"
        "from odedet.engine.leak_check import TinyODENet, measure_rss, tiny_steps\n"
        "from odedet.ode import SolverOptions\n" + stmt + "\nprint(json.dumps(r))\n"
    )
    # glibc serves blocks >= 64 KiB by mmap: freed tensors leave at once, so RSS follows live
    # memory rather than heap fragmentation (less noise; the memory benchmark does the same).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("phase", [0, 1], ids=["train", "eval"])
def test_rss_flat_over_ode_training_and_evaluation(phase):
    r = _measure_in_fresh_process(
        "steps = tiny_steps(TinyODENet(solver=SolverOptions(adjoint=True)))\n"
        f"r = measure_rss(steps[{phase}], iters=40, warmup=8, every=10)"
    )
    # Noise margin: a one-off RSS step of any size in one half of the run is tolerated, and up
    # to 8 MiB per 20 iterations (0.4 MiB/iteration) in the other; a 1 MiB/iteration leak adds
    # 20 MiB to each half (test_meter_detects_a_leak), 2.5x the threshold.
    assert r["min_half_growth_mib"] < 8.0, r


def test_meter_detects_a_leak():
    r = _measure_in_fresh_process(
        "kept = []\n"
        "r = measure_rss(lambda: kept.append(torch.ones(256, 1024)), iters=40, warmup=2, every=10)"
    )
    # 1 MiB per iteration: 20 MiB per half of the 40 measured iterations, well above the 8 MiB
    # threshold of the flat test (the same statistic, so the test keeps its power).
    assert r["min_half_growth_mib"] > 15 and r["slope_mib_per_1k_iters"] > 700, r


def test_leak_check_tool_runs_and_reports(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("rel_leak_tool",
                                                  os.path.join(REPO, "tools", "leak_check.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "leak.json"
    code = tool.main(["--iters", "5", "--warmup", "1", "--method", "euler", "--no-adjoint",
                      "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "train: 5 iterations" in printed and "eval: 5 iterations" in printed
    assert json.loads(out.read_text())["train"]["iterations"] == 5
