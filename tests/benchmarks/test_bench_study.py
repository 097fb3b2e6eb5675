"""tools/study.py: the --quick study end to end (2 models, tiny digits dataset), then a rerun that
retrains nothing, and a run stopped by its budget that resumes from its checkpoint."""
import csv
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _study():
    path = os.path.join(ROOT, "tools", "study.py")
    spec = importlib.util.spec_from_file_location("study_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_study_writes_results_and_never_retrains(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out, res = tmp_path / "out", tmp_path / "res"
    argv = ["--quick", "--output-dir", str(out), "--results-dir", str(res)]
    result = _study().main(argv)
    assert result["finished"] == ["ode_r18_fpn", "r18_fpn"] and result["stopped"] is None
    for key in result["finished"]:
        with open(res / f"{key}.json") as f:
            r = json.load(f)
        assert r["max_iter"] == 3 and r["iters_timed"] == 3 and r["train_s"] > 0
        for k in ("AP", "AP50", "AP75", "APs", "APm", "precision", "recall", "F1"):
            assert r[k] is None or 0 <= r[k] <= 100, k
        assert r["params_m"] > 10 and r["bottom_up_params_m"] < r["params_m"]
        assert r["gflops"] > 0 and r["latency_ms"] > 0 and r["train_peak_mb"] > 0
        assert r["environment"]["cpu cores"]
        with open(res / f"{key}_per_class.csv") as f:
            rows = list(csv.DictReader(f))
        assert [row["cls"] for row in rows] == [str(d) for d in range(10)]
        assert os.path.isfile(out / key / "model_final.pth")
        # periodic checkpoints are pruned once the final one exists
        assert not [f for f in os.listdir(out / key) if f.startswith("model_0")]
    ode = json.load(open(res / "ode_r18_fpn.json"))
    assert ode["nfe_per_image"] == 8  # midpoint, 1 step: 2 f-evals x 4 ODE stages
    assert json.load(open(res / "r18_fpn.json"))["nfe_per_image"] == 0
    table = (res / "table.md").read_text()
    assert "ODE-R18-FPN" in table and "R-18-FPN" in table and "Finished runs: 2/2" in table
    assert len((res / "runs.csv").read_text().splitlines()) == 3

    again = _study().main(argv)  # everything is finished: nothing is trained again
    assert again["finished"] == [] and again["skipped"] == ["ode_r18_fpn", "r18_fpn"]
    with pytest.raises(ValueError, match="--max-iter"):
        _study().main(argv + ["--max-iter", "5"])


@pytest.mark.slow
def test_budget_stop_checkpoints_and_the_next_call_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out, res = tmp_path / "out", tmp_path / "res"
    argv = ["--quick", "--models", "r18_fpn", "--max-iter", "4", "--no-memory",
            "--output-dir", str(out), "--results-dir", str(res)]
    first = _study().main(argv + ["--budget-min", "0.0001"])  # stops after the first step
    assert first["stopped"] == "r18_fpn" and first["finished"] == []
    assert os.path.isfile(out / "r18_fpn" / "model_0000000.pth")
    assert "Finished runs: 0/1" in (res / "table.md").read_text()
    second = _study().main(argv)
    assert second["finished"] == ["r18_fpn"]
    r = json.load(open(res / "r18_fpn.json"))
    assert r["iters_timed"] == 4  # 1 before the stop + 3 after resuming at iteration 1
    assert r["train_peak_mb"] is None  # --no-memory


@pytest.mark.slow
def test_time_iters_measures_every_model_and_estimates_the_study(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = _study().main(["--quick", "--time-iters", "1", "--max-iter", "1000",
                         "--output-dir", str(tmp_path / "out"), "--results-dir", str(tmp_path)])
    assert set(out["s_per_iter"]) == {"ODE-R18-FPN", "R-18-FPN"}
    assert all(t["median_s"] > 0 and t["n"] == 1 for t in out["s_per_iter"].values())
    est = out["estimate"]
    assert est["max_iter"] == 1000 and set(est["training_hours_per_run"]) == {"ode_r18_fpn",
                                                                             "r18_fpn"}
    assert est["training_hours_total"] == pytest.approx(
        sum(t["median_s"] for t in out["s_per_iter"].values()) * 1000 / 3600)
    # inference is timed side by side too (2 val images in --quick; no run trained here)
    assert set(out["ms_per_image"]) == {"ODE-R18-FPN", "R-18-FPN"}
    assert all(t["median_s"] > 0 and t["n"] == 2 and t["weights"] == "initialisation"
               for t in out["ms_per_image"].values())
    with open(tmp_path / "timing.json") as f:
        assert json.load(f)["iters_timed"] == 1


def test_table_speed_columns_are_the_side_by_side_timing_and_mark_per_run_figures():
    from odedet.benchmarks import study

    env = {"cpu": "AMD EPYC", "cpu kind": "family 25 model 1, AVX2", "measured at": "2026-12-08T02"}
    recs = [dict(key="r50_fpn", model="R-50-FPN", seed=7, max_iter=10, s_per_iter=3.0,
                 latency_ms=90.0, environment=env),
            dict(key="ode_r50_fpn_s7", model="ODE-R50-FPN", seed=7, max_iter=10, s_per_iter=2.0,
                 latency_ms=80.0, environment=dict(env, cpu="Other CPU"))]
    timing = {"s_per_iter": {"R-50-FPN": {"median_s": 1.5}},
              "ms_per_image": {"R-50-FPN": {"median_s": 0.0425}}, "latency_images": 20,
              "environment": env}
    rows = {r["model"]: r for r in study.summary_rows(recs, timing)}
    assert rows["R-50-FPN"]["s/iter"] == "1.50" and rows["R-50-FPN"]["ms/img"] == "42"
    assert rows["ODE-R50-FPN"]["s/iter"] == "2.00*" and rows["ODE-R50-FPN"]["ms/img"] == "80*"
    text = study.caption(recs, timing)
    assert "AMD EPYC [family 25 model 1, AVX2]: r50_fpn (2026-12-08)" in text
    assert "Other CPU [family 25 model 1, AVX2]: ode_r50_fpn_s7" in text and "side by side" in text
    assert "side by side" not in study.caption(recs, {}).split("`*`")[0]


def test_every_run_shares_one_recipe_and_only_the_backbone_differs():
    from odedet.benchmarks import study

    cfgs = {s.key: study.build_cfg(s, output_dir="out", max_iter=1000, train_set="a_train",
                                   val_set="a_val") for s in study.RUNS}
    shared = ("SOLVER", "INPUT", "DATALOADER", "TEST", "MODEL.RPN", "MODEL.ROI_HEADS",
              "MODEL.ROI_BOX_HEAD", "MODEL.ANCHOR_GENERATOR", "MODEL.FPN", "MODEL.PIXEL_STD",
              "MODEL.ODE.METHOD_TRAIN", "MODEL.ODE.STEP_SIZE_TRAIN", "MODEL.ODE.METHOD_TEST",
              "MODEL.ODE.ADJOINT", "MODEL.ODE.TRAIN_SOLVERS", "MODEL.ODE.NORM",
              "MODEL.RESNETS.NORM", "MODEL.BACKBONE.FREEZE_AT", "MODEL.WEIGHTS")

    def get(cfg, key):
        for part in key.split("."):
            cfg = cfg[part]
        return cfg

    ref = cfgs["r50_fpn"]
    for key, cfg in cfgs.items():
        for k in shared:
            assert get(cfg, k) == get(ref, k), (key, k)
        assert cfg.OUTPUT_DIR == os.path.join("out", key)
        assert cfg.SOLVER.MAX_ITER == 1000 and cfg.DATASETS.TEST == ("a_val",)
    assert ref.SOLVER.STEPS == (730, 915) and ref.SOLVER.WARMUP_ITERS == 100
    assert {cfgs[k].SEED for k in ("ode_r50_fpn_s7", "ode_r50_fpn_s8")} == {7, 8}
    assert {cfgs[k].SEED for k in ("r101_fpn_s7", "r101_fpn_s8")} == {7, 8}
    depth = {k: c.MODEL.RESNETS.DEPTH for k, c in cfgs.items()}
    assert depth["r101_fpn_s7"] == 101 and depth["ode_r50_fpn_s7"] == 50
    assert depth["ode_r18_fpn"] == depth["r18_fpn"] == 18
    assert list(cfgs["ode_r50_fpn_res4"].MODEL.ODE.STAGES) == ["res4"]
    assert len(cfgs["ode_r50_fpn_s7"].MODEL.ODE.STAGES) == 4
    assert cfgs["r50_fpn"].MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
