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
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("phase", [0, 1], ids=["train", "eval"])
def test_rss_flat_over_ode_training_and_evaluation(phase):
    r = _measure_in_fresh_process(
        "steps = tiny_steps(TinyODENet(solver=SolverOptions(adjoint=True)))\n"
        f"r = measure_rss(steps[{phase}], iters=40, warmup=8, every=10)"
    )
    # 40 iterations of a leak as small as one kept activation (128 KiB) add 5 MiB.
    assert r["growth_mib"] < 4.0, r


def test_meter_detects_a_leak():
    r = _measure_in_fresh_process(
        "kept = []\n"
        "r = measure_rss(lambda: kept.append(torch.ones(256, 1024)), iters=40, warmup=2, every=10)"
    )
    assert r["growth_mib"] > 15 and r["slope_mib_per_1k_iters"] > 300, r


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
