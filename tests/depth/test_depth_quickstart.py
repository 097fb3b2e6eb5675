"""tools/quickstart_depth.py end to end on a few tiny rendered scenes: trains the ODE model and the
VGG-16 baseline with the scenes recipe (AdamW), evaluates both next to the mean-depth predictor,
runs the test-time solver sweep and writes the JSON and example figures."""
import importlib.util
import json
import os

import numpy as np
from detectron2.data import DatasetCatalog

from odedet.data.depth.formats import read_depth_sample

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quickstart_depth_tool_trains_evaluates_and_reports(tmp_path, tiny_scenes,
                                                            one_torch_thread):
    spec = importlib.util.spec_from_file_location(
        "quickstart_depth_tool", os.path.join(ROOT, "tools", "quickstart_depth.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.SWEEP = [s for s in tool.SWEEP if s[0] in ("rk4 step 0.5", "euler step 1")]
    train, val = tiny_scenes
    out = tmp_path / "out"
    results = tool.main([
        "--output-dir", str(out), "--models", "ode_resnet18,vgg16",
        "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2",
        "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)",
    ])
    rows = {r["model"]: r for r in results["models"]}
    assert set(rows) >= {"ode_resnet18", "vgg16"} and len(rows) == 3
    for name in ("ode_resnet18", "vgg16"):
        r = rows[name]
        assert r["iters"] == 3 and r["params"] > 0 and r["train_seconds"] > 0
        assert 0 < r["AbsRel"] < 10 and 0 <= r["delta1"] <= 1
        assert os.path.isfile(out / name / "model_final.pth")
        assert "SEED: 7" in (out / name / "config.yaml").read_text()  # the recipe, as run
    assert rows["ode_resnet18"]["nfe_per_image"] == 8  # 4 ODE blocks x midpoint (2 f-evals), 1 step
    assert rows["vgg16"]["nfe_per_image"] == 0

    # The trivial predictor is the training set's mean valid depth, scored like the models.
    depths = [read_depth_sample(d)[1] for d in DatasetCatalog.get(train)]
    mean = np.concatenate([d[d > 0] for d in depths]).mean()
    trivial = [r for name, r in rows.items() if name.startswith("mean ")][0]
    assert trivial["model"] == f"mean {mean:.2f} m" and trivial["params"] == 0

    sweep = {r["solver"]: r for r in results["solver_sweep"]}
    assert list(sweep) == ["midpoint step 1 (config)", "rk4 step 0.5", "euler step 1"]
    assert sweep["midpoint step 1 (config)"]["AbsRel"] == rows["ode_resnet18"]["AbsRel"]
    assert sweep["rk4 step 0.5"]["nfe_per_image"] == 32
    assert sweep["euler step 1"]["nfe_per_image"] == 4
    saved = json.loads((out / "quickstart_depth.json").read_text())
    assert [r["model"] for r in saved["models"]] == [r["model"] for r in results["models"]]
    assert all(os.path.isfile(p) for p in results["examples"])


def test_trainer_fits_the_depth_recipe_into_a_budget_on_a_fake_clock(tmp_path, tiny_scenes,
                                                                     one_torch_thread):
    """odedet's real Trainer (hook order, resizable loop, cosine scheduler, final checkpoint)
    with a clock that advances 1 s per training step: a 30-iteration recipe in a 15 s budget."""
    import odedet
    from odedet.engine import Trainer

    train, val = tiny_scenes
    cfg = odedet.get_odedet_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs/Depth/ode_resnet18_scenes.yaml"))
    cfg.merge_from_list([
        "SOLVER.MAX_ITER", "30", "SOLVER.WARMUP_ITERS", "4", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.TIME_BUDGET.MINUTES", "0.25", "SOLVER.TIME_BUDGET.UNTIMED_ITERS", "2",
        "SOLVER.TIME_BUDGET.TIMED_ITERS", "4", "DATASETS.TRAIN", f"('{train}',)",
        "DATASETS.TEST", f"('{val}',)", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(tmp_path),
    ])
    trainer = Trainer(cfg)
    clock = {"t": 0.0}
    trainer.budget.clock = lambda: clock["t"]
    inner = trainer._trainer.run_step

    def step():
        inner()
        clock["t"] += 1.0

    trainer._trainer.run_step = step
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.iter == trainer.max_iter == 15
    assert trainer.budget.summary["measured_s_per_iter"] == 1.0
    assert trainer.budget.fitted["warmup_iters"] == 2
    assert (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_final.pth"
    lines = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    last = [m for m in lines if "lr" in m][-1]  # (the evaluation after training comes after)
    assert last["iteration"] == 14
    assert last["lr"] < 0.02 * cfg.SOLVER.BASE_LR  # the fitted cosine ran to its end
