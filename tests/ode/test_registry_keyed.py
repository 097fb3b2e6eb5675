"""The keyed hooks behind mappers, evaluators and demo renderers refuse a second claim."""
import pytest

from odedet.data.mappers import MAPPER_FACTORIES, register_mapper_factory
from odedet.engine.demo import RENDERERS
from odedet.evaluation.build import EVALUATOR_FACTORIES
from odedet.registry import keyed_register


def test_register_and_refuse_duplicates():
    table = {}
    register = keyed_register(table, "a widget")

    @register("x")
    def f():
        return 1

    assert table == {"x": f} and f() == 1
    with pytest.raises(KeyError, match="a widget for 'x' is already registered"):
        register("x")(lambda: 2)


def test_applications_are_registered_once():
    assert {"coco", "pascal_voc", "depth"} <= set(EVALUATOR_FACTORIES)
    assert "DepthEstimator" in MAPPER_FACTORIES and "GeneralizedRCNN" in RENDERERS
    with pytest.raises(KeyError, match="mapper factory for 'DepthEstimator'"):
        register_mapper_factory("DepthEstimator")(lambda cfg, is_train: None)
