"""The classification tool's checkpoints (tools/train_cifar.py --resume) go through the shared
atomic-save / weights-only-load helpers: pickle payloads refused, truncated files named."""
import pytest
import torch

from odedet.engine.checkpoint import CorruptCheckpointError, UnsafeCheckpointError
from odedet.engine.classification import load_checkpoint, save_checkpoint


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_checkpoint_round_trip_and_refusals(tmp_path):
    path = str(tmp_path / "last_checkpoint.pth")
    sig = {"model": "ode_resnet", "epochs": 2}
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1, "signature": sig})
    assert load_checkpoint(path, sig)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last_checkpoint.pth"]  # no temp left

    marker = tmp_path / "ran"
    torch.save({"signature": sig, "x": _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="last_checkpoint.pth"):
        load_checkpoint(path, sig)
    assert not marker.exists()

    save_checkpoint(path, {"model": {"w": torch.ones(1000)}, "signature": sig})
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="last_checkpoint.pth.*truncated"):
        load_checkpoint(path, sig)
