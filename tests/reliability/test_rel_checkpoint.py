"""Checkpoints: atomic writes, weights-only loads, corrupt-file fallback, architecture mismatch."""
import logging
import os
import pickle

import pytest
import torch
from torch import nn

from odedet.engine.checkpoint import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    OdedetCheckpointer,
    UnsafeCheckpointError,
    atomic_torch_save,
    load_weights,
    safe_load,
)


class _Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.head = nn.Linear(width, 2)


class _Other(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Conv2d(3, 8, 1)


class _State:
    """A checkpointable like detectron2's trainer: an iteration number."""

    def __init__(self):
        self.iteration = 0

    def state_dict(self):
        return {"iteration": self.iteration}

    def load_state_dict(self, d):
        self.iteration = d["iteration"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _save_run(tmp_path, iters):
    """Save trainer-style checkpoints model_<it>.pth for each iteration; return (ckpt, state)."""
    state = _State()
    ckpt = OdedetCheckpointer(_Net(), str(tmp_path), trainer=state)
    for it in iters:
        state.iteration = it
        ckpt.save(f"model_{it:07d}")
    return ckpt, state


def test_save_is_atomic_when_the_write_fails(tmp_path):
    ckpt, _ = _save_run(tmp_path, [4])
    good = (tmp_path / "model_0000004.pth").read_bytes()

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"model": {"w": torch.zeros(10000)}, "x": Boom()},
                          str(tmp_path / "model_0000004.pth"))
    assert (tmp_path / "model_0000004.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000004.pth"]


def test_pickle_payload_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": _Net().state_dict(), "extra": _Evil(str(marker))}, evil)
    with pytest.raises(UnsafeCheckpointError, match=str(evil)):
        safe_load(str(evil))
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        OdedetCheckpointer(_Net()).load(str(evil))
    assert not marker.exists()


def test_pkl_checkpoints_are_refused(tmp_path):
    f = tmp_path / "zoo.pkl"
    with open(f, "wb") as fh:
        pickle.dump({"model": {"conv.weight": torch.zeros(1).numpy()}}, fh)
    with pytest.raises(UnsafeCheckpointError, match="zoo.pkl"):
        OdedetCheckpointer(_Net()).load(str(f))


@pytest.mark.parametrize("cut", [0, 0.5])
def test_truncated_checkpoint_is_named(tmp_path, cut):
    _save_run(tmp_path, [1])
    f = tmp_path / "model_0000001.pth"
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CorruptCheckpointError, match="model_0000001.pth.*truncated or corrupt"):
        load_weights(_Net(), str(f))


def test_resume_falls_back_past_a_corrupt_checkpoint(tmp_path, caplog):
    _save_run(tmp_path, [3, 7])
    newest = tmp_path / "model_0000007.pth"
    newest.write_bytes(newest.read_bytes()[:100])  # e.g. a disk error after a complete write
    (tmp_path / ".model_0000011.pth.tmp-999").write_bytes(b"partial")  # a killed write
    state = _State()
    ckpt = OdedetCheckpointer(_Net(), str(tmp_path), trainer=state)
    with caplog.at_level(logging.WARNING):
        ckpt.resume_or_load("", resume=True)
    assert state.iteration == 3
    assert "model_0000007.pth" in caplog.text and "Falling back" in caplog.text
    assert "RESUMED FROM AN OLDER CHECKPOINT" in caplog.text
    assert not (tmp_path / ".model_0000011.pth.tmp-999").exists()


def test_resume_with_only_corrupt_checkpoints_refuses_to_start_over(tmp_path):
    _save_run(tmp_path, [3])
    f = tmp_path / "model_0000003.pth"
    f.write_bytes(f.read_bytes()[:50])
    ckpt = OdedetCheckpointer(_Net(), str(tmp_path), trainer=_State())
    with pytest.raises(CorruptCheckpointError, match="refusing to start from scratch"):
        ckpt.resume_or_load("", resume=True)


def test_resume_from_another_architecture_is_an_error(tmp_path):
    _save_run(tmp_path, [5])
    ckpt = OdedetCheckpointer(_Net(width=6), str(tmp_path), trainer=_State())
    with pytest.raises(CheckpointMismatchError, match=r"another shape.*conv.weight"):
        ckpt.resume_or_load("", resume=True)


def test_weights_of_another_architecture(tmp_path, caplog):
    f = tmp_path / "other.pth"
    torch.save({"model": _Other().state_dict()}, f)
    with pytest.raises(CheckpointMismatchError, match=r"0 of 4 model tensors.*encoder.weight"):
        OdedetCheckpointer(_Net()).resume_or_load(str(f), resume=False)
    with pytest.raises(CheckpointMismatchError, match="cannot run inference"):
        load_weights(_Net(), str(f))
    # A partial match (e.g. backbone-only weights) initialises training with a loud warning.
    partial = tmp_path / "partial.pth"
    torch.save({"model": {"conv.weight": torch.ones(4, 3, 3, 3)}}, partial)
    net = _Net()
    with caplog.at_level(logging.WARNING):
        OdedetCheckpointer(net).resume_or_load(str(partial), resume=False)
    assert "PARTIAL WEIGHTS" in caplog.text and "1 of 4 model tensors" in caplog.text
    assert torch.equal(net.conv.weight, torch.ones(4, 3, 3, 3))


def test_resume_restores_state_and_round_trips_weights(tmp_path):
    ckpt, _ = _save_run(tmp_path, [2, 9])
    state, net = _State(), _Net()
    OdedetCheckpointer(net, str(tmp_path), trainer=state).resume_or_load("", resume=True)
    assert state.iteration == 9
    assert torch.equal(net.conv.weight, ckpt.model.conv.weight)
