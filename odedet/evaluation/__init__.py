from .build import EVALUATOR_FACTORIES, build_evaluators, register_evaluator_factory
from . import detection  # noqa: F401,E402  (registers the "coco"/"pascal_voc" evaluators)
from . import depth  # noqa: F401,E402  (registers the "depth" evaluator)
from . import classification  # noqa: F401,E402  (registers the "classification" evaluator)

__all__ = ["build_evaluators", "register_evaluator_factory", "EVALUATOR_FACTORIES"]
