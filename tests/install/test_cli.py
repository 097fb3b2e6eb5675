"""The command lines as a user meets them, each in a subprocess: `python -m odedet` lists the
tools, --config-file takes a name under configs/ from any working directory (and a wrong name
lists close matches), and no tool starts with a warning the user cannot act on."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "tools")) if f.endswith(".py"))


def run(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)  # what a user sees: Python's default warning filters
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_python_m_odedet_lists_every_tool_with_one_line(tmp_path):
    proc = run(["-m", "odedet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()
             if line.startswith("  ") and line.strip()}
    for tool in TOOLS:
        assert tool in lines and len(lines[tool].split(None, 1)[1]) > 10
    assert "configs" in lines
    configs = run(["-m", "odedet", "configs"], cwd=tmp_path)
    assert "odenet_faster_rcnn.yaml" in configs.stdout
    assert "COCO-Detection/ode_faster_rcnn_R_101_FPN_scratch.yaml" in configs.stdout
    wrong = run(["-m", "odedet", "trainnet"], cwd=tmp_path)
    assert wrong.returncode == 2 and "did you mean train_net" in wrong.stderr


@pytest.mark.slow
def test_no_tool_starts_with_a_warning(tmp_path):
    for tool in TOOLS:
        proc = run([os.path.join(REPO, "tools", f"{tool}.py"), "--help"], cwd=tmp_path)
        assert proc.returncode == 0, (tool, proc.stderr)
        assert "Warning" not in proc.stderr, (tool, proc.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["odenet_faster_rcnn.yaml",
                                  "COCO-Detection/ode_faster_rcnn_R_101_FPN_scratch.yaml"])
def test_train_net_takes_a_config_name_from_any_directory(tmp_path, name):
    # --eval-only without weights stops right after the config is loaded and the model built
    proc = run([os.path.join(REPO, "tools", "train_net.py"), "--config-file", name, "--eval-only",
                "MODEL.DEVICE", "cpu", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "o")],
               cwd=tmp_path)
    assert proc.returncode != 0
    assert "--eval-only needs trained weights" in proc.stderr, proc.stderr[-2000:]
    assert "Warning" not in proc.stderr


def test_a_wrong_config_name_lists_close_matches(tmp_path):
    proc = run([os.path.join(REPO, "tools", "train_net.py"), "--config-file",
                "ode_faster_rcnn_R_50_FPN.yaml"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "argument --config-file" in proc.stderr and "not found" in proc.stderr
    assert "PascalVOC-Detection/ode_faster_rcnn_R_50_FPN_scratch.yaml" in proc.stderr
    amb = run([os.path.join(REPO, "tools", "demo.py"), "--config-file",
               "faster_rcnn_R_50_FPN_scratch.yaml", "--input", "x.png", "--output", "o"],
              cwd=tmp_path)
    assert amb.returncode == 2 and "ambiguous" in amb.stderr
    assert "COCO-Detection/faster_rcnn_R_50_FPN_scratch.yaml" in amb.stderr


def test_resolve_config_file_paths_and_names(tmp_path, monkeypatch):
    from odedet.config_check import ConfigNotFoundError, resolve_config_file

    monkeypatch.chdir(tmp_path)
    configs = os.path.join(REPO, "configs")
    assert resolve_config_file("odenet_faster_rcnn") == os.path.join(configs,
                                                                     "odenet_faster_rcnn.yaml")
    assert resolve_config_file("configs/Depth/vgg16_nyu.yaml") == os.path.join(
        configs, "Depth", "vgg16_nyu.yaml")
    assert resolve_config_file("vgg16_scenes.yaml") == os.path.join(configs, "Depth",
                                                                    "vgg16_scenes.yaml")
    own = tmp_path / "odenet_faster_rcnn.yaml"  # a file in the working directory wins
    own.write_text("MODEL:\n  DEVICE: cpu\n")
    assert resolve_config_file("odenet_faster_rcnn.yaml") == "odenet_faster_rcnn.yaml"
    with pytest.raises(ConfigNotFoundError, match="close matches: Depth/vgg16_nyu.yaml"):
        resolve_config_file("vgg16_nuy.yaml")
