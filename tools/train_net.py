#!/usr/bin/env python
"""Train or evaluate an odedet model with detectron2's conventions.

What is trained comes from the config alone (``MODEL.META_ARCHITECTURE``: Faster R-CNN, the depth
estimator, ...); evaluators come from the test datasets' ``evaluator_type`` and data mappers from
the meta-architecture, through odedet's registries. Datasets are checked on disk before
anything is built.

  python tools/train_net.py --config-file configs/odenet_faster_rcnn.yaml
  python tools/train_net.py --config-file CFG --resume           # continue from last_checkpoint
  python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS output/model_final.pth \\
      MODEL.ODE.METHOD_TEST dopri5 MODEL.ODE.RTOL_TEST 1e-2       # cheaper solver at test time
  python tools/train_net.py --config-file CFG --register-coco mine_train ann.json images/ \\
      DATASETS.TRAIN "('mine_train',)"                                     # any COCO-format dataset

Distributed: ``--num-gpus N`` starts N processes per machine. With a CUDA ``MODEL.DEVICE`` they
use NCCL (one GPU each, as in detectron2); with ``MODEL.DEVICE cpu`` they are CPU processes
joined by gloo, splitting the machine's cores. ``--dist-backend`` overrides the choice;
``--num-machines``/``--machine-rank``/``--dist-url`` work as in detectron2.
"""
import logging
import sys

import odedet  # noqa: F401,I001  (first: registers odedet, quiets detectron2 v0.6 warnings)
import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

from odedet.config_check import (
    ConfigError, check_config, merge_from_file, merge_from_list, resolve_config_file,
)
from odedet.data.datasets import add_dataset_arguments, register_from_args, validate_datasets
from odedet.engine import Trainer
from odedet.engine.checkpoint import OdedetCheckpointer, load_weights
from odedet.engine.launch import launch, resolve_backend
from odedet.ode import iter_ode_blocks, nfe_counts, reset_nfe

logger = logging.getLogger("odedet.train_net")


def build_parser():
    parser = default_argument_parser(epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument(
        "--dist-backend", default="auto", choices=("auto", "gloo", "nccl"),
        help="process-group backend; auto = nccl for a CUDA MODEL.DEVICE, gloo for cpu",
    )
    add_dataset_arguments(parser)
    return parser


def load_cfg(args):
    """The config of ``--config-file`` with ``opts`` overrides (not frozen, no side effects)."""
    if not args.config_file:
        raise SystemExit("--config-file is required (e.g. configs/odenet_faster_rcnn.yaml)")
    cfg = odedet.get_odedet_cfg()
    merge_from_file(cfg, args.config_file)  # unknown keys: error listing close valid keys
    merge_from_list(cfg, args.opts)
    check_config(cfg)  # impossible values: error naming the key, before anything is built
    return cfg


def setup(args):
    register_from_args(args)
    cfg = load_cfg(args)
    cfg.freeze()
    default_setup(cfg, args)
    # detectron2 sets up its own loggers only; odedet's (solver settings, NFE) go to the same log.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="odedet")
    return cfg


def _log_solvers(model, phase):
    for name, block in iter_ode_blocks(model):
        solver = block.test_solver if phase == "test" else block.train_solver
        logger.info(f"ODE block {name}: {phase} solver {solver.describe()}")


def evaluate(cfg, args):
    """``--eval-only``: rebuild the model from cfg (so MODEL.ODE.*_TEST overrides apply to the
    trained weights), load MODEL.WEIGHTS (or the last checkpoint with --resume) and test."""
    model = Trainer.build_model(cfg)
    if args.resume:
        OdedetCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS)
    elif cfg.MODEL.WEIGHTS:
        load_weights(model, cfg.MODEL.WEIGHTS)  # weights-only, every key must match
    else:
        raise SystemExit("--eval-only needs trained weights: add MODEL.WEIGHTS path/to/model.pth "
                         "(or --resume to use the last checkpoint in OUTPUT_DIR)")
    _log_solvers(model, "test")
    seen = {"images": 0}

    def count_images(_module, inputs, _outputs):
        seen["images"] += len(inputs[0])

    handle = model.register_forward_hook(count_images)
    reset_nfe(model)
    results = Trainer.test(cfg, model)
    handle.remove()
    nfe, n = nfe_counts(model)["forward"], seen["images"]
    if n and any(True for _ in iter_ode_blocks(model)):
        logger.info(f"ODE forward NFE during evaluation: {nfe} over {n} image(s) on this "
                    f"process ({nfe / n:.1f} per image)")
    if comm.is_main_process():
        verify_results(cfg, results)
    return results


def main(args):
    cfg = setup(args)
    names = list(cfg.DATASETS.TEST) if args.eval_only else [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]
    validate_datasets(names)
    if args.eval_only:
        return evaluate(cfg, args)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config_file:  # a path, or a name under configs/ (any working directory)
        try:
            args.config_file = resolve_config_file(args.config_file)
        except ConfigError as e:
            parser.error(f"argument --config-file: {e}")
    print("Command Line Args:", args)
    world = args.num_gpus * args.num_machines
    backend = resolve_backend(args.dist_backend, load_cfg(args).MODEL.DEVICE) if world > 1 else ""
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,), backend=backend)


if __name__ == "__main__":
    sys.exit(cli())
