"""tools/visualize_data.py and tools/visualize_json_results.py on a COCO-json fixture."""
import json
import os
import uuid

import cv2
import pytest

from _engine_fixtures import REPO, load_tool, write_coco


@pytest.fixture
def coco(tmp_path):
    json_file, image_root = write_coco(str(tmp_path / "data"), n_images=3)
    name = f"vis_tiny_{uuid.uuid4().hex[:8]}"
    return name, image_root, json_file, ["--register-coco", name, json_file, image_root]


def test_visualize_data_draws_ground_truth(coco, tmp_path):
    name, image_root, _, reg = coco
    out = tmp_path / "gt"
    written = load_tool("visualize_data").main(["--dataset", name, *reg,
                                            "--output-dir", str(out)])
    assert sorted(os.path.basename(p) for p in written) == ["0000.jpg", "0001.jpg", "0002.jpg"]
    drawn, raw = cv2.imread(str(out / "0000.jpg")), cv2.imread(os.path.join(image_root, "0000.jpg"))
    assert drawn.shape == raw.shape and abs(drawn.astype(int) - raw).mean() > 1


def test_visualize_json_results_puts_predictions_beside_ground_truth(coco, tmp_path):
    name, image_root, json_file, reg = coco
    with open(json_file) as f:
        anns = json.load(f)["annotations"]
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
              "score": 0.9} for a in anns]
    results = tmp_path / "coco_instances_results.json"
    results.write_text(json.dumps(preds))
    out = tmp_path / "pred"
    n = load_tool("visualize_json_results").main(["--input", str(results), "--dataset", name,
                                              *reg, "--output", str(out)])
    assert n == 3
    pair = cv2.imread(str(out / "0000.jpg"))
    bar = pair.shape[0] - 64  # a title bar over the 64x64 panels: predictions | ground truth
    assert pair.shape[1] == 128 and bar >= 18
    titles = pair[:bar].astype(int)
    assert (titles > 200).mean() > 0.6 and (titles < 100).any()  # white bar, dark lettering
    left, right = pair[bar:, :64].astype(int), pair[bar:, 64:].astype(int)
    raw = cv2.imread(os.path.join(image_root, "0000.jpg")).astype(int)
    assert abs(left - raw).mean() > 1 and abs(right - raw).mean() > 1
    with pytest.raises(SystemExit, match="not found"):
        load_tool("visualize_json_results").main(["--input", str(tmp_path / "none.json"),
                                              "--dataset", name, "--output", str(out)])
