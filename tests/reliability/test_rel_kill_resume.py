"""A real train_net run SIGKILLed mid-training, then mid-checkpoint-write, resumes each time from
the last complete checkpoint and ends on the same schedule and iteration count."""
import os
import signal
import subprocess
import sys
import time

import pytest

from odedet.engine.checkpoint import safe_load

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "detection"))
from _engine_fixtures import REPO, tiny_cfg, write_cfg, write_coco  # noqa: E402

MAX_ITER, PERIOD, STEP = 10, 3, 8  # checkpoints after iterations 2, 5, 8 and model_final (9)


def _setup(tmp_path):
    json_file, image_root = write_coco(str(tmp_path / "data"), n_images=4)
    out = tmp_path / "out"
    cfg = tiny_cfg(str(out))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("rel_kill_train",), ()
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.CHECKPOINT_PERIOD = MAX_ITER, PERIOD
    cfg.SOLVER.STEPS, cfg.SOLVER.GAMMA = (STEP,), 0.1
    write_cfg(str(tmp_path / "cfg.yaml"), cfg)
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file",
           str(tmp_path / "cfg.yaml"), "--register-coco", "rel_kill_train", json_file, image_root]
    return cmd, out


def _start(cmd, log, **env):
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **env)
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)


def _kill_when(proc, condition, timeout=240):
    """SIGKILL ``proc`` as soon as ``condition()`` holds; fail if it exits or times out first."""
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "train_net exited before the kill point"
        assert time.time() < deadline, "kill point not reached in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _last(out):
    return (out / "last_checkpoint").read_text()


@pytest.mark.slow
def test_sigkill_mid_training_and_mid_checkpoint_write_then_resume(tmp_path):
    cmd, out = _setup(tmp_path)
    logs = [open(tmp_path / f"run{i}.log", "wb") for i in range(3)]

    # 1) killed during training, right after the first checkpoint became complete.
    _kill_when(_start(cmd, logs[0]), lambda: (out / "last_checkpoint").exists())
    assert _last(out) == "model_0000002.pth"

    # 2) resumed, then killed while model_0000005.pth is half written (the test hook stalls it).
    proc = _start(cmd + ["--resume"], logs[1], ODEDET_TEST_STALL_SAVE="model_0000005.pth:300")
    _kill_when(proc, lambda: any(f.startswith(".model_0000005.pth.tmp-") for f in os.listdir(out)))
    assert not (out / "model_0000005.pth").exists()
    assert _last(out) == "model_0000002.pth"
    safe_load(str(out / "model_0000002.pth"))  # the previous checkpoint is intact

    # 3) resumed again: from the last complete checkpoint to the end of the same schedule.
    run3 = subprocess.run(cmd + ["--resume"], cwd=REPO, stdout=logs[2], stderr=subprocess.STDOUT,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
                          timeout=300)
    for f in logs:
        f.close()
    text = [(tmp_path / f"run{i}.log").read_text() for i in range(3)]
    assert run3.returncode == 0, text[2][-3000:]
    assert "Starting training from iteration 3" in text[1]
    assert "Starting training from iteration 3" in text[2]
    assert "partial checkpoint of an interrupted write" in text[2]
    assert not [f for f in os.listdir(out) if ".tmp-" in f]

    final = safe_load(str(out / "model_final.pth"))
    assert final["iteration"] == MAX_ITER - 1 and final["trainer"]["iteration"] == MAX_ITER - 1
    # Same schedule: the LR scheduler continued (last_epoch counts every iteration of the run),
    # so the step at STEP applied; a restarted scheduler would end at MAX_ITER - 3 < STEP.
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == MAX_ITER
    optimizer = final["trainer"]["_trainer"]["optimizer"]
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(0.005 * 0.1)
    assert optimizer["state"], "optimizer state (SGD momentum) must be checkpointed"
