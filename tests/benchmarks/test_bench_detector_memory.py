"""tools/benchmark.py detector-memory: the measured budget search, the saved-tensor profile, and
a --quick smoke run (tiny images, few proposals) that writes JSON/markdown/PNGs and resumes."""
import json
import os

import pytest
import torch
from torch import nn

from odedet.benchmarks.detector_memory import SavedTensorProfile, budget_next, largest_batch
from test_bench_cli import _run


def _rows(peaks):
    return {b: dict(peak_mb=p) for b, p in peaks.items()}


def test_budget_search_predicts_from_measurements_and_ends_on_a_measured_bracket():
    assert budget_next({}, 100, 32) == 1  # nothing measured: double from 1
    assert budget_next(_rows({1: 10}), 100, 32) == 2
    # 10 MB per image from the two largest fits: the last fitting batch is predicted at 10
    assert budget_next(_rows({1: 10, 2: 20, 4: 40}), 100, 32) == 10
    # a failure with a measured peak: the secant through the bracket, (150 - 40) / 4 per image
    assert budget_next(_rows({1: 10, 2: 20, 4: 40, 8: 150}), 100, 32) == 6
    assert budget_next(_rows({1: 10, 2: 20, 4: 40, 8: 150, 6: 90}), 100, 32) == 7
    rows = _rows({1: 10, 2: 20, 4: 40, 8: 150, 6: 90, 7: 120})
    assert budget_next(rows, 100, 32) is None and largest_batch(rows, 100, 32) == (6, False)
    # a right prediction (the last fit) is confirmed by the next batch's measured failure
    fit = _rows({2: 1955, 4: 3333, 11: 8156})
    assert budget_next(fit, 8192, 32) == 12
    fit[12] = dict(peak_mb=8192, exceeded=True)  # a probe stopped at the budget
    assert budget_next(fit, 8192, 32) is None and largest_batch(fit, 8192, 32) == (11, False)
    # an overshoot: a stopped probe gives no peak; the next guess comes from the fits, below it
    over = _rows({2: 20, 4: 40})
    over[12] = dict(peak_mb=100, exceeded=True)
    assert budget_next(over, 100, 32) == 10
    # where the line says a measured failure fits, it is wrong: bisect (no one-by-one descent)
    over[10] = dict(peak_mb=100, exceeded=True)
    assert budget_next(over, 100, 32) == 7
    # predictions stay strictly inside the bracket, so every probe narrows it
    assert budget_next(_rows({1: 10, 2: 20, 3: 200}), 100, 32) is None
    assert budget_next(_rows({2: 50, 4: 51}), 100, 32) == 32  # flat: up to the cap of the search
    assert budget_next(_rows({1: 200}), 100, 32) is None  # nothing fits
    stopped = {1: dict(peak_mb=50, exceeded=True)}  # a probe stopped over budget never fits
    assert budget_next(stopped, 100, 32) is None and largest_batch(stopped, 100, 32)[0] == 0
    capped = _rows({1: 1, 2: 2, 4: 4})
    assert budget_next(capped, 100, 4) is None and largest_batch(capped, 100, 4) == (4, True)


def test_budget_search_waits_for_the_planned_curve_points(tmp_path):
    """The search's first probe is predicted from the batch curve at the budget's size; it does
    not start (doubling from 1) while those points are still to be measured."""
    from types import SimpleNamespace

    from odedet.benchmarks.detector_memory import PointStore, _spec, budget_specs

    args = SimpleNamespace(budget_models=["m"], budget_mb=100.0, budget_max_batch=32,
                           default_short=8, default_long=8, extra_opts=[], warmup_size=8)
    store = PointStore(str(tmp_path / "points.json"))
    planned = [_spec("m", b, 8, args, width=8) for b in (2, 4)]
    assert budget_specs(store, args, planned) == []
    store.put(planned[0], dict(peak_mb=20.0))
    assert budget_specs(store, args, planned) == []
    store.put(planned[1], dict(peak_mb=40.0))
    (probe,) = budget_specs(store, args, planned)
    assert probe["batch"] == 10 and probe["budget_mb"] == 100.0


def test_saved_tensor_profile_attributes_saved_activations_to_parts():
    a, b = nn.Linear(8, 16, bias=False), nn.Linear(16, 4, bias=False)
    model = nn.Sequential(a, nn.ReLU(), b)
    prof = SavedTensorProfile(model, {"a": [a], "b": [b]})
    x = torch.randn(32, 8)
    with prof.hooks():
        y = model(x)
    prof.remove()
    # a saves its input (32x8 floats); ReLU (outside both parts) saves its output (32x16);
    # b saves its input, the same storage: counted once, for "other"; weights are excluded
    assert prof.saved["a"] == 32 * 8 * 4
    assert prof.saved["other"] == 32 * 16 * 4 and prof.saved["b"] == 0
    assert prof.param_mb["a"] == pytest.approx(8 * 16 * 4 / 2**20)
    y.sum().backward()


@pytest.mark.slow
def test_detector_memory_quick_writes_tables_and_resumes(tmp_path):
    argv = ["detector-memory", "--quick", "--jobs", "2", "--studies", "default", "steps", "budget"]
    doc = _run(argv, tmp_path, "detector_memory")
    titles = [t["title"] for t in doc["tables"]]
    assert titles[0].startswith("Training step at 1 x 96x128")
    default = doc["tables"][0]["rows"]
    assert [r["model"] for r in default] == ["ODE-R50-FPN-lean", "R-50-FPN"]
    assert all(r["peak_mb"] > r["static_mb"] > 0 and r["saved_mb"] > 0 for r in default)
    breakdown = {r["part"]: r for r in doc["tables"][1]["rows"]}
    for part in ("stem", "res2 transition", "res2 ODE block", "FPN", "RPN", "ROI heads"):
        assert part in breakdown
    assert breakdown["res2 blocks 2-3"]["R-50-FPN"] > 0 and breakdown["res2 ODE block"]["R-50-FPN"] == 0
    steps = next(t for t in doc["tables"] if "solver steps" in t["title"])["rows"]
    assert [r["steps"] for r in steps] == [1, 2]
    budget = next(t for t in doc["tables"] if t["title"].startswith("Largest batch"))["rows"]
    assert budget[0]["model"] == "R-50-FPN" and budget[0]["searched"]
    points = json.load(open(tmp_path / "points.json"))["points"]
    assert len(points) >= 4 and not any("error" in p or "claimed_by" in p for p in points.values())
    # a second run measures nothing new: every point is reused from points.json
    mtime = os.path.getmtime(tmp_path / "points.json")
    again = _run(argv, tmp_path, "detector_memory")
    assert os.path.getmtime(tmp_path / "points.json") == mtime
    assert again["tables"][0]["rows"] == default


def test_cap_stops_any_point_and_reports_a_lower_bound(tmp_path):
    """--cap-gib: every point outside the budget search carries the cap as its budget (the child
    is stopped when it passes it instead of exhausting the machine: a direct-backprop ODE
    detector at 2 x 800x1333 was killed by the OOM killer at 19.6 GB); the row says "> cap",
    is reused by the next run, and is left out of ratios and plots."""
    import types

    from odedet.benchmarks.detector_memory import PointStore, _row, _spec

    args = types.SimpleNamespace(extra_opts=[], warmup_size=64, cap_mb=16384.0)
    spec = _spec("ODE-R50-FPN-direct", 2, 800, args, width=1333)
    assert spec["budget_mb"] == 16384.0
    assert _spec("R-50-FPN", 3, 800, args, budget=8192.0)["budget_mb"] == 8192.0  # budget wins
    store = PointStore(str(tmp_path / "points.json"))
    store.put(spec, dict(exceeded=True, peak_mb=16390.0))
    row = PointStore(str(tmp_path / "points.json")).get(spec)
    assert row is not None and row["exceeded"]  # answered: not measured again
    assert _row(row)["peak_mb"] == "> 16384 (stopped)"
    higher = _spec("ODE-R50-FPN-direct", 2, 800, types.SimpleNamespace(
        extra_opts=[], warmup_size=64, cap_mb=32768.0), width=1333)
    assert store.get(higher) is None  # a higher cap needs a new measurement
