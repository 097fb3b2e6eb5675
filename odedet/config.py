"""odedet's config keys, added to a detectron2 config by :func:`add_odedet_config`.

Every key carries a comment, as in detectron2's ``config/defaults.py``. Where training and
evaluation differ (solver method, tolerances, step size), keys come in ``_TRAIN``/``_TEST`` pairs:
evaluation-time tolerance is the accuracy/speed knob of an ODE-Net, and changing it on a trained
checkpoint needs no retraining (``--eval-only MODEL.ODE.RTOL_TEST 1e-2``).
"""
import importlib

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg



def add_ode_config(cfg):
    """MODEL.ODE: the ODE blocks' dynamics and solvers, shared by every ODE model."""
    _C = cfg
    _C.MODEL.ODE = CN()
    # ResNet stages whose residual blocks after the first (strided transition) block are replaced
    # by one ODE block. ["res4"] is the paper's "6 residual blocks -> one ODESolve" on ResNet-50's
    # res4; ["res2", "res3", "res4", "res5"] is the full ODE-ResNet.
    _C.MODEL.ODE.STAGES = ["res2", "res3", "res4", "res5"]
    # Dynamics f(t, h): "auto" picks "basic" for MODEL.RESNETS.DEPTH 18/34 and "bottleneck" for
    # 50/101; "basic" = the paper's norm-ReLU-conv3x3(time channel) x2; "bottleneck" = a
    # 1x1-3x3-1x1 block with ResNet-50 widths, time as an extra channel of every conv.
    _C.MODEL.ODE.DYNAMICS = "auto"
    # Normalisation inside the dynamics: "GN" (default; works from scratch and at batch size 1),
    # "BN", or "" (none). Statistics of BN are shared across all solver steps; its running
    # statistics are updated by the forward solve only, never by the adjoint's backward re-evaluations.
    _C.MODEL.ODE.NORM = "GN"
    # Start the dynamics' last norm scale at 0, so every ODE block is the identity at
    # initialisation (like zero-init residuals). False = the reference ODE-Net's initialisation.
    _C.MODEL.ODE.ZERO_INIT = False
    # Groups of GroupNorm inside the dynamics (clipped to a divisor of the channel count).
    _C.MODEL.ODE.GN_GROUPS = 32
    # Augmented Neural ODEs (Dupont et al. 2019): extra zero-initialised state channels carried
    # through the integration and dropped at the block's end. 0 disables.
    _C.MODEL.ODE.AUGMENT_CHANNELS = 0
    # Integration interval [0, T_END].
    _C.MODEL.ODE.T_END = 1.0
    # Backpropagate with the adjoint method (odeint_adjoint: O(1) memory in the number of solver
    # steps, the paper's ODE-Net) instead of through the solver's operations (the paper's RK-Net).
    _C.MODEL.ODE.ADJOINT = True
    # torchdiffeq method names, e.g. "rk4", "euler", "midpoint" (fixed grid) or "dopri5",
    # "bosh3", "adaptive_heun" (adaptive). Validated when the model is built.
    _C.MODEL.ODE.METHOD_TRAIN = "rk4"
    _C.MODEL.ODE.METHOD_TEST = "rk4"
    # Relative / absolute tolerances of adaptive methods.
    _C.MODEL.ODE.RTOL_TRAIN = 1e-3
    _C.MODEL.ODE.ATOL_TRAIN = 1e-3
    _C.MODEL.ODE.RTOL_TEST = 1e-3
    _C.MODEL.ODE.ATOL_TEST = 1e-3
    # Step size of fixed-grid methods (T_END / STEP_SIZE steps). Adaptive methods ignore it
    # (their first step is MODEL.ODE.FIRST_STEP_*, see add_first_step_config).
    _C.MODEL.ODE.STEP_SIZE_TRAIN = 0.25
    _C.MODEL.ODE.STEP_SIZE_TEST = 0.25
    # Step guard: an adaptive solve taking more steps than this stops with an error that says
    # what to change, instead of running for hours on a stiff problem.
    _C.MODEL.ODE.MAX_NUM_STEPS = 1000
    # Residual blocks of each stage (res2..res5) that is NOT in MODEL.ODE.STAGES, for
    # build_ode_resnet_backbone(_fpn); [] = the standard counts of MODEL.RESNETS.DEPTH
    # (ResNet-18: 2 2 2 2). [1, 1, 1, 1] with STAGES [] is the ODE-ResNet with its ODE blocks
    # removed (each stage only its strided transition block): the shallow ResNet baseline.
    _C.MODEL.ODE.BLOCKS_PER_STAGE = []


def add_optimizer_config(cfg):
    """SOLVER.OPTIMIZER / SOLVER.BETAS: the optimizer of odedet's Trainer."""
    _C = cfg
    # Optimizer of DefaultTrainer-based training: "SGD" (detectron2's, with SOLVER.MOMENTUM and
    # NESTEROV) or "AdamW" (torch.optim.AdamW with SOLVER.BETAS; SOLVER.WEIGHT_DECAY is its
    # decoupled decay). Both take detectron2's per-parameter groups (WEIGHT_DECAY_NORM,
    # BIAS_LR_FACTOR, ...), gradient clipping and LR schedule.
    _C.SOLVER.OPTIMIZER = "SGD"
    # AdamW's (beta1, beta2).
    _C.SOLVER.BETAS = (0.9, 0.999)


def add_first_step_config(cfg):
    """MODEL.ODE.FIRST_STEP_*: the first step of adaptive solvers (issue 15: STEP_SIZE_* used to
    set it silently)."""
    _C = cfg
    # First step of adaptive methods (dopri5, bosh3, ...); 0 lets the solver choose it, as
    # torchdiffeq does by default. Fixed-grid methods ignore it (they use STEP_SIZE_*).
    _C.MODEL.ODE.FIRST_STEP_TRAIN = 0.0
    _C.MODEL.ODE.FIRST_STEP_TEST = 0.0


# Each application adds its keys here; their modules own them. Entries are "module:function"
# strings imported when a config is built, so that config.py imports nothing from the rest of
# odedet at import time (those modules import odedet.config themselves: no import cycles).
_EXTENSIONS = [
    "odedet.config:add_ode_config",
    "odedet.ode.training:add_ode_training_config",
    "odedet.config:add_optimizer_config",
    "odedet.config:add_first_step_config",
    "odedet.engine.budget:add_budget_config",
    "odedet.config_check:add_reliability_config",
    "odedet.evaluation.detection:add_detection_eval_config",
    "odedet.modeling.depth.config:add_depth_config",
    "odedet.modeling.backbone.ode_vgg:add_ode_vgg_config",  # issue 17: MODEL.ODE_VGG
    "odedet.modeling.classification.config:add_classification_config",
    "odedet.modeling.checkpointing:add_memory_config",
]


def add_odedet_config(cfg):
    """Add every odedet key to ``cfg`` (a detectron2 ``CfgNode``), in place. Idempotent."""
    if "ODE" in cfg.MODEL:
        return cfg
    for entry in _EXTENSIONS:
        module, func = entry.split(":")
        getattr(importlib.import_module(module), func)(cfg)
    return cfg


def get_odedet_cfg():
    """A detectron2 default config with odedet's keys: the starting point of every odedet tool.

    It is a :class:`odedet.config_check.SafeCfgNode`: merging a file into it never runs code
    (``.py`` configs and YAML python tags are refused), and its ``merge_from_file`` /
    ``merge_from_list`` raise ``ConfigError`` with close valid keys for typos."""
    from odedet.config_check import make_safe

    cfg = make_safe(get_cfg())
    add_odedet_config(cfg)
    return cfg
