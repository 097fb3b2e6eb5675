"""Resident memory stays flat over many training/evaluation iterations of an ODE model; the
meter itself detects a leak of 1 MiB per iteration."""
import importlib.util
import json
import os

import pytest
import torch

from odedet.engine.leak_check import TinyODENet, measure_rss, tiny_steps
from odedet.ode import SolverOptions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_rss_flat_over_ode_training_and_evaluation():
    train_step, eval_step = tiny_steps(TinyODENet(solver=SolverOptions(adjoint=True)))
    for step in (train_step, eval_step):
        r = measure_rss(step, iters=40, warmup=8, every=10)
        # 40 iterations of a leak as small as one kept activation (128 KiB) add 5 MiB.
        assert r["growth_mib"] < 4.0, r


def test_meter_detects_a_leak():
    kept = []
    leak_1mib = lambda: kept.append(torch.ones(256, 1024))  # noqa: E731
    r = measure_rss(leak_1mib, iters=40, warmup=2, every=10)
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
