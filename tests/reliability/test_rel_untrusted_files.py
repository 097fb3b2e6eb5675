"""No file a user is handed runs code: hostile configs (YAML python tags, a _BASE_ chain to one,
LazyConfig .py files) and hostile pickle-based dataset files (CIFAR batches, proposal .pkl)
given to every odedet tool are refused with an error naming the file and what to do; the
payload never runs. Checkpoints have their own tests (test_rel_checkpoint.py)."""
import os
import pickle
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "detection"))
from _engine_fixtures import load_tool, tiny_cfg, write_cfg, write_coco  # noqa: E402

from odedet.config_check import ConfigError, UnsafeConfigError  # noqa: E402
from odedet.data.safe_pickle import UnsafeDataFileError, load_data_pickle  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def hostile_config(tmp_path, kind: str):
    """(config path, marker path): the marker appears only if loading the config runs code."""
    marker = tmp_path / f"PAYLOAD_RAN_{kind}"
    if kind == "python_tag":
        path = tmp_path / "evil.yaml"
        path.write_text(f'MODEL:\n  WEIGHTS: !!python/object/apply:os.system ["touch {marker}"]\n')
    elif kind == "base_chain":  # the tag hides in a _BASE_ file
        (tmp_path / "base_evil.yaml").write_text(
            f"SOLVER:\n  BASE_LR: !!python/object/apply:os.system [\"touch {marker}\"]\n")
        path = tmp_path / "child.yaml"
        path.write_text("_BASE_: base_evil.yaml\nSOLVER:\n  MAX_ITER: 2\n")
    else:  # a detectron2 LazyConfig
        path = tmp_path / "lazy_config.py"
        path.write_text(f"open({str(marker)!r}, 'w').write('ran')\nmodel = dict()\n")
    return str(path), marker


def _expect_refused(call, path, marker):
    with pytest.raises(UnsafeConfigError) as e:
        call()
    msg = str(e.value)
    assert os.path.basename(path) in msg or "base_evil.yaml" in msg, msg
    assert "yaml.safe_load" in msg  # what odedet does, and so what the user should provide
    assert not marker.exists(), "the config's payload ran"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from odedet.engine import Trainer

    path = tmp_path_factory.mktemp("w") / "w.pth"
    torch.save({"model": Trainer.build_model(tiny_cfg("unused")).state_dict()}, path)
    return str(path)


def _image(tmp_path):
    import cv2

    path = str(tmp_path / "img.jpg")
    cv2.imwrite(path, np.zeros((32, 32, 3), np.uint8))
    return path


TOOLS = ["train_net", "demo", "quickstart", "train_cifar", "train_cifar_export", "benchmark_tolerance",
         "benchmark_models", "object_depth", "visualize_data"]


def _tool_call(tool, cfg, tmp_path, weights, monkeypatch):
    """A zero-argument call running ``tool`` on config file ``cfg`` through its CLI entry."""
    out = str(tmp_path / "out")
    if tool == "train_net":
        t = load_tool("train_net")
        return lambda: t.main(t.build_parser().parse_args(["--config-file", cfg]))
    if tool == "demo":
        return lambda: load_tool("demo").main(
            ["--config-file", cfg, "--input", _image(tmp_path), "--output", out])
    if tool == "quickstart":
        monkeypatch.chdir(os.getcwd())  # the quickstart chdirs to the repository; undone after
        return lambda: load_tool("quickstart").main(
            ["--quick", "--output-dir", out, "--config-file", cfg])
    if tool == "train_cifar":
        return lambda: load_tool("train_cifar").main(
            ["train", "--config-file", cfg, "--dataset", "digits", "--epochs", "1",
             "--output-dir", out, "--quiet", "--no-memory"])
    if tool == "train_cifar_export":  # refused before any training
        return lambda: load_tool("train_cifar").main(
            ["train", "--model", "mnist-odenet", "--export-backbone-for", cfg, "--epochs", "1",
             "--output-dir", out, "--quiet", "--no-memory"])
    if tool == "benchmark_tolerance":
        return lambda: load_tool("benchmark").main(
            ["tolerance", "--config-file", cfg, "--weights", weights, "--out", out, "--quick"])
    if tool == "benchmark_models":
        return lambda: load_tool("benchmark").main(
            ["models", "--quick", "--models", "ODE-FPN", "--model-config", f"ODE-FPN={cfg}",
             "--out", out])
    if tool == "object_depth":
        return lambda: load_tool("object_depth").main(
            ["--det-config", cfg, "--det-weights", weights, "--depth-config", cfg,
             "--depth-weights", weights, "--input", _image(tmp_path), "--output", out])
    if tool == "visualize_data":
        return lambda: load_tool("visualize_data").main(
            ["--config-file", cfg, "--output-dir", out])
    raise AssertionError(tool)


@pytest.mark.parametrize("kind", ["python_tag", "base_chain", "lazy_py"])
@pytest.mark.parametrize("tool", TOOLS)
def test_hostile_config_is_refused_by_every_tool(tool, kind, tmp_path, weights, monkeypatch):
    cfg, marker = hostile_config(tmp_path, kind)
    _expect_refused(_tool_call(tool, cfg, tmp_path, weights, monkeypatch), cfg, marker)


def test_direct_merge_and_allow_unsafe_are_safe_too(tmp_path):
    """Code paths that call cfg.merge_from_file themselves (allow_unsafe=True included)."""
    import odedet

    for kind in ("python_tag", "base_chain", "lazy_py"):
        cfg_file, marker = hostile_config(tmp_path, kind)
        cfg = odedet.get_odedet_cfg()
        _expect_refused(lambda: cfg.merge_from_file(cfg_file, allow_unsafe=True), cfg_file, marker)


def test_plain_yaml_configs_still_load(tmp_path):
    from odedet.config_check import load_config

    base = tmp_path / "base.yaml"
    base.write_text("SOLVER:\n  BASE_LR: 0.5\n")
    child = tmp_path / "child.yml"
    child.write_text("_BASE_: base.yaml\nMODEL:\n  ODE:\n    RTOL_TEST: 0.01\n")
    cfg = load_config(str(child))
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.MODEL.ODE.RTOL_TEST == 0.01
    (tmp_path / "empty.yaml").write_text("")
    load_config(str(tmp_path / "empty.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml holds a YAML list"):
        load_config(str(tmp_path / "list.yaml"))


# -- pickle-based dataset files -------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cifar10(root, hostile: str = "", marker=None):
    """CIFAR-10 python-pickle layout with 4 images per batch; ``hostile`` names the file that
    carries a payload instead of data."""
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, 4)]}
        if name == hostile:
            batch["data"] = _Payload(marker)
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    if hostile == "batches.meta":
        meta = _Payload(marker)
    with open(os.path.join(d, "batches.meta"), "wb") as f:
        pickle.dump(meta, f)
    return d


@pytest.mark.parametrize("hostile", ["data_batch_3", "test_batch", "batches.meta"])
def test_hostile_cifar_file_is_refused_through_train_cifar(hostile, tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    _cifar10(str(tmp_path / "data"), hostile, marker)
    tool = load_tool("train_cifar")
    with pytest.raises(UnsafeDataFileError) as e:
        tool.main(["train", "--model", "mnist-odenet", "--dataset", "cifar10", "--data-root",
                   str(tmp_path / "data"), "--epochs", "1", "--output-dir", str(tmp_path / "o"),
                   "--quiet", "--no-memory"])
    assert hostile in str(e.value) and "posix.system" in str(e.value)
    assert "re-create the file" in str(e.value)  # what to do
    assert not marker.exists()


def test_cifar_pickles_of_either_numpy_and_protocol_load(tmp_path):
    """The allow-list accepts what real CIFAR files hold: numpy arrays pickled at protocols 2
    (the official Python 2 files' layout) and 5, lists and strings."""
    for protocol in (2, 5):
        path = tmp_path / f"b{protocol}"
        obj = {"data": np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072), "labels": [1, 2],
               "batch_label": "training batch 1 of 5", "filenames": [b"a.png", b"b.png"],
               "scalar": np.int64(3)}
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        back = load_data_pickle(str(path))
        assert np.array_equal(back["data"], obj["data"]) and back["labels"] == [1, 2]
    obj_array = np.array([1, "x"], dtype=object)
    (tmp_path / "objarr").write_bytes(pickle.dumps({"data": obj_array}))
    with pytest.raises(UnsafeDataFileError, match="objarr.*Python objects"):
        load_data_pickle(str(tmp_path / "objarr"))


def test_hostile_proposal_file_is_refused_through_train_net(tmp_path):
    """detectron2 reads DATASETS.PROPOSAL_FILES_* with pickle.load; odedet's loader refuses."""
    marker = tmp_path / "PAYLOAD_RAN"
    json_file, image_root = write_coco(str(tmp_path / "data"), n_images=2)
    evil = tmp_path / "proposals.pkl"
    evil.write_bytes(pickle.dumps({"ids": [1, 2], "boxes": _Payload(marker),
                                   "objectness_logits": [np.zeros(1)] * 2}))
    cfg = tiny_cfg(str(tmp_path / "out"))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("rel_props_train",), ()
    cfg.MODEL.LOAD_PROPOSALS = True
    cfg.DATASETS.PROPOSAL_FILES_TRAIN = (str(evil),)
    cfg.SOLVER.MAX_ITER = 1
    path = write_cfg(str(tmp_path / "cfg.yaml"), cfg)
    tool = load_tool("train_net")
    args = tool.build_parser().parse_args(
        ["--config-file", path, "--register-coco", "rel_props_train", json_file, image_root])
    with pytest.raises(UnsafeDataFileError, match=r"proposals.pkl.*posix.system"):
        tool.main(args)
    assert not marker.exists()


def test_valid_proposal_file_loads(tmp_path):
    from detectron2.data.build import load_proposals_into_dataset
    from detectron2.structures import BoxMode

    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({
        "ids": ["a", "b"], "boxes": [np.ones((2, 4), np.float32), np.zeros((1, 4), np.float32)],
        "objectness_logits": [np.array([0.1, 0.9], np.float32), np.array([0.5], np.float32)],
        "bbox_mode": BoxMode.XYXY_ABS,
    }))
    dicts = load_proposals_into_dataset([{"image_id": "a"}, {"image_id": "b"}], str(path))
    assert dicts[0]["proposal_objectness_logits"].tolist() == pytest.approx([0.9, 0.1])
    from odedet.data.validation import DatasetError

    with pytest.raises(DatasetError, match="p.pkl has no proposals for image id.*'c'"):
        load_proposals_into_dataset([{"image_id": "c"}], str(path))
