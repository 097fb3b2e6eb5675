"""Dataset registration without code, validation errors that name the file, and the COCO / VOC
evaluation paths (pycocotools, detectron2's VOC loader + evaluator) on on-disk fixtures."""
import json
import os
import uuid

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_pascal_voc
from detectron2.structures import Boxes, BoxMode, Instances

import odedet
from odedet.data.datasets import (
    DatasetError, add_dataset_arguments, register_coco, register_from_args, register_from_env,
    validate_datasets,
)
from odedet.evaluation import build_evaluators

from _engine_fixtures import CLASSES, write_coco, write_voc


def _name(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _edit_json(json_file, edit):
    with open(json_file) as f:
        data = json.load(f)
    edit(data)
    with open(json_file, "w") as f:
        json.dump(data, f)


COCO_BREAKAGES = {
    "missing json": (lambda j, r: os.remove(j), "not found"),
    "not json": (lambda j, r: open(j, "w").write("{not json"), "not valid JSON"),
    "missing key": (lambda j, r: _edit_json(j, lambda d: d.pop("categories")), "'categories'"),
    "unknown category": (
        lambda j, r: _edit_json(j, lambda d: d["annotations"][0].update(category_id=99)),
        "unknown category_id"),
    "zero-size box": (
        lambda j, r: _edit_json(j, lambda d: d["annotations"][0].update(bbox=[1, 1, 0, 5])),
        "zero/negative-size"),
    "missing image": (lambda j, r: os.remove(os.path.join(r, "0001.jpg")), "0001.jpg"),
}


@pytest.mark.parametrize("case", sorted(COCO_BREAKAGES))
def test_coco_validation_names_the_file(tmp_path, case):
    json_file, image_root = write_coco(str(tmp_path), n_images=3)
    name = _name("val_coco")
    register_coco(name, json_file, image_root)
    validate_datasets([name])  # the intact fixture passes
    breakage, expected = COCO_BREAKAGES[case]
    breakage(json_file, image_root)
    with pytest.raises(DatasetError) as err:
        validate_datasets([name])
    msg = str(err.value)
    assert expected in msg and name in msg
    assert (json_file in msg) or (image_root in msg)


def _rewrite_first_xml(voc, text):
    with open(os.path.join(voc, "Annotations", "000000.xml"), "w") as f:
        f.write(text)


VOC_BREAKAGES = {
    "malformed xml": (lambda v: _rewrite_first_xml(v, "<annotation><size>"), "not valid XML"),
    "unknown class": (lambda v: _rewrite_first_xml(
        v, "<annotation><size><width>9</width><height>9</height></size><object><name>unicorn"
           "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
           "</object></annotation>"), "'unicorn'"),
    "negative box": (lambda v: _rewrite_first_xml(
        v, "<annotation><size><width>9</width><height>9</height></size><object><name>cat"
           "</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>"
           "<bndbox><xmin>5</xmin><ymin>1</ymin><xmax>2</xmax><ymax>5</ymax></bndbox>"
           "</object></annotation>"), "negative-size"),
    "no difficult flag": (lambda v: _rewrite_first_xml(
        v, "<annotation><size><width>9</width><height>9</height></size><object><name>cat"
           "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
           "</object></annotation>"), "<difficult>"),
    "missing xml": (lambda v: os.remove(os.path.join(v, "Annotations", "000000.xml")),
                    "not found"),
    "missing split": (lambda v: os.remove(os.path.join(v, "ImageSets", "Main", "test.txt")),
                      "test.txt not found"),
}


@pytest.mark.parametrize("case", sorted(VOC_BREAKAGES))
def test_voc_validation_names_the_file(tmp_path, case):
    voc = write_voc(str(tmp_path), n_images=2)
    name = _name("val_voc")
    register_pascal_voc(name, voc, "test", 2007, class_names=list(CLASSES))
    MetadataCatalog.get(name).evaluator_type = "pascal_voc"
    validate_datasets([name])
    breakage, expected = VOC_BREAKAGES[case]
    breakage(voc)
    with pytest.raises(DatasetError, match=expected) as err:
        validate_datasets([name])
    assert voc in str(err.value)


def test_builtin_names_point_at_the_readme_and_unknown_names_say_how_to_register():
    with pytest.raises(DatasetError, match=r"instances_val2017.json not found.*README"):
        validate_datasets(["coco_2017_val"])
    with pytest.raises(DatasetError, match="--register-coco nope_ds"):
        validate_datasets(["nope_ds"])


def test_register_from_cli_and_env(tmp_path):
    import argparse

    json_file, image_root = write_coco(str(tmp_path), n_images=2)
    a, b = _name("cli"), _name("env")
    parser = add_dataset_arguments(argparse.ArgumentParser())
    register_from_args(parser.parse_args(["--register-coco", a, json_file, image_root]))
    register_from_env({"ODEDET_COCO_DATASETS": f"{b}={json_file},{image_root}"})
    for name in (a, b):
        dicts = DatasetCatalog.get(name)
        assert len(dicts) == 2 and MetadataCatalog.get(name).thing_classes == list(CLASSES)
        assert MetadataCatalog.get(name).evaluator_type == "coco"
    register_coco(a, json_file, image_root)  # same files again: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_coco(a, json_file, "elsewhere")
    with pytest.raises(ValueError, match="ODEDET_COCO_DATASETS"):
        register_from_env({"ODEDET_COCO_DATASETS": "broken-entry"})


def _outputs_from_gt(record, drop_last=False, extra_fp=False):
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
             for a in record["annotations"]]
    classes = [a["category_id"] for a in record["annotations"]]
    if drop_last and boxes:
        boxes, classes = boxes[:-1], classes[:-1]
    if extra_fp:
        boxes, classes = boxes + [[0.0, 0.0, 3.0, 3.0]], classes + [0]
    inst = Instances((record["height"], record["width"]))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4))
    inst.scores = torch.linspace(0.9, 0.8, len(boxes))
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return {"instances": inst}


def _evaluate(name, tmp_path, **outputs_kw):
    cfg = odedet.get_odedet_cfg()
    evaluator = build_evaluators(cfg, name, str(tmp_path / "eval"))
    evaluator.reset()
    for rec in DatasetCatalog.get(name):
        evaluator.process([{"image_id": rec["image_id"]}], [_outputs_from_gt(rec, **outputs_kw)])
    return evaluator.evaluate()


def test_coco_path_scored_by_pycocotools(tmp_path):
    json_file, image_root = write_coco(str(tmp_path), n_images=4)
    name = _name("coco_eval")
    register_coco(name, json_file, image_root)
    res = _evaluate(name, tmp_path)
    assert res["bbox"]["AP"] == pytest.approx(100.0) and res["prf1"]["F1"] == pytest.approx(100.0)
    assert os.path.isfile(tmp_path / "eval" / "coco_instances_results.json")
    res = _evaluate(name, tmp_path, drop_last=True)  # each image with >= 1 object loses one
    n_gt = res["prf1"]["TP"] + res["prf1"]["FN"]
    assert res["prf1"]["FN"] == 3 and res["prf1"]["precision"] == pytest.approx(100.0)
    assert res["prf1"]["recall"] == pytest.approx(100.0 * (n_gt - 3) / n_gt)
    assert res["bbox"]["AP50"] < 100.0


def test_voc_path_through_detectron2_loader_and_evaluator(tmp_path):
    voc = write_voc(str(tmp_path), n_images=4)
    name = _name("voc_eval")
    register_pascal_voc(name, voc, "test", 2007, class_names=list(CLASSES))
    MetadataCatalog.get(name).evaluator_type = "pascal_voc"
    validate_datasets([name])
    res = _evaluate(name, tmp_path)
    assert res["bbox"]["AP50"] == pytest.approx(100.0)
    assert (res["prf1"]["TP"], res["prf1"]["FP"], res["prf1"]["FN"]) == (6, 0, 0)
    res = _evaluate(name, tmp_path, extra_fp=True)  # one tiny false "cat" per image
    assert (res["prf1"]["TP"], res["prf1"]["FP"]) == (6, 4)
    assert res["prf1"]["precision"] == pytest.approx(60.0)


def test_generated_dataset_is_materialized_before_validation(tmp_path):
    """A dataset that writes its json on first load (like odedet's synthetic shapes) validates
    without a prior manual generation step."""
    from detectron2.data.datasets import load_coco_json

    json_file = str(tmp_path / "gen" / "instances.json")
    image_root = str(tmp_path / "gen" / "images")
    name = _name("generated")

    def load():
        if not os.path.isfile(json_file):
            write_coco(str(tmp_path / "gen"), n_images=2)
        return load_coco_json(json_file, image_root, name)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root,
                                  evaluator_type="coco")
    validate_datasets([name])
    assert os.path.isfile(json_file)
