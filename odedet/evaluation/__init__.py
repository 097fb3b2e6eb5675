from .build import EVALUATOR_FACTORIES, build_evaluators, register_evaluator_factory

__all__ = ["build_evaluators", "register_evaluator_factory", "EVALUATOR_FACTORIES"]
