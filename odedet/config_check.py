"""Config errors that say what to fix: unknown keys with close valid ones, impossible values.

Tools load configs with :func:`load_config` (or :func:`merge_from_file` / :func:`merge_from_list`
on a config of their own); models are checked by :func:`check_config` when they are built
(``odedet.engine.Trainer.build_model``), so a bad value fails before any training, naming its key.
"""
from __future__ import annotations

import difflib
import math
import os

import yaml
from detectron2.config import CfgNode

# ResNet stages an ODE block can replace (detectron2's names; res5 may live in a C4 ROI head).
ODE_STAGE_NAMES = ("res2", "res3", "res4", "res5")


class ConfigError(ValueError):
    """A config that cannot work; the message names the key (and file) to fix."""


class ConfigNotFoundError(ConfigError, FileNotFoundError):
    """A ``--config-file`` that is neither a file nor a name under the repository's configs/."""


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_root() -> str:
    """The folder config names are looked up in: ``$ODEDET_CONFIGS`` or the repository's
    ``configs/``."""
    return os.environ.get("ODEDET_CONFIGS") or os.path.join(REPO, "configs")


def config_names(root: str | None = None) -> list[str]:
    """Every config under :func:`config_root`, as paths relative to it (sorted)."""
    root = root or config_root()
    names = []
    for folder, _, files in os.walk(root):
        names += [os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
                  for f in files if f.endswith((".yaml", ".yml"))]
    return sorted(names)


def resolve_config_file(name: str) -> str:
    """The config file ``name`` stands for: a path (absolute, or from the working directory) if
    it is one; else a name under the repository's ``configs/``: a relative path there
    (``COCO-Detection/ode_faster_rcnn_R_101_FPN_scratch.yaml``, also with a leading ``configs/``
    from any directory), or a file name found once anywhere under it
    (``odenet_faster_rcnn.yaml``; ``.yaml`` may be left out). Otherwise
    :class:`ConfigNotFoundError` listing close matches."""
    if os.path.isfile(name):
        return name
    root = config_root()
    rel = name.replace(os.sep, "/")
    if rel.startswith("configs/"):
        rel = rel[len("configs/"):]
    with_ext = [rel] if rel.endswith((".yaml", ".yml")) else [rel, rel + ".yaml"]
    for cand in with_ext:
        if os.path.isfile(os.path.join(root, cand)):
            return os.path.join(root, cand)
    names = config_names(root)
    bases = {os.path.basename(c) for c in with_ext}
    hits = [n for n in names if os.path.basename(n) in bases]
    if len(hits) == 1:
        return os.path.join(root, hits[0])
    if hits:
        raise ConfigNotFoundError(f"config name {name!r} is ambiguous under {root}: give one of "
                                  + ", ".join(hits))
    by_base = {}
    for n in names:
        by_base.setdefault(os.path.basename(n), []).append(n)
    close = []  # same file name first, then same path
    for b in difflib.get_close_matches(os.path.basename(with_ext[-1]), list(by_base), n=5,
                                       cutoff=0.6):
        close += by_base[b]
    close += [n for n in difflib.get_close_matches(with_ext[-1], names, n=5, cutoff=0.6)
              if n not in close]
    hint = ("close matches: " + ", ".join(close[:6])) if close else "no close match"
    raise ConfigNotFoundError(
        f"config file {name!r} not found, neither from {os.getcwd()} nor under {root} ({hint}; "
        f"`python -m odedet configs` lists all {len(names)})")


def add_reliability_config(cfg):
    """Keys of odedet's input checks (odedet.data.image_io)."""
    _C = cfg
    # Images with more pixels than this are refused before decoding (BadImageError), instead of
    # allocating gigabytes. 0 disables the check.
    _C.INPUT.MAX_IMAGE_PIXELS = 100_000_000
    # Images more elongated than this (long side / short side) are refused: resized for the model,
    # their short side would shrink below the backbone's stride. 0 disables the check.
    _C.INPUT.MAX_ASPECT_RATIO = 20.0
    # What a bad training sample (unreadable image, size mismatch) does: "skip" logs a warning
    # naming the file and trains on another sample; "error" stops. Evaluation always stops.
    _C.DATALOADER.BAD_SAMPLES = "skip"


def _flat_keys(cfg: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CfgNode):
            keys.extend(_flat_keys(v, full + "."))
    return keys


def close_keys(cfg: CfgNode, key: str, n: int = 5) -> list[str]:
    """Valid keys of ``cfg`` closest to ``key`` (difflib), for "did you mean" messages."""
    keys = _flat_keys(cfg)
    close = difflib.get_close_matches(key, keys, n=n, cutoff=0.6)
    if not close:  # compare the last component too: MODEL.ODE.STEPS -> MODEL.ODE.STEP_SIZE_*
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
        close = [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=n)]
    return close


def _unknown_key_error(cfg: CfgNode, err: KeyError, source: str) -> ConfigError | None:
    msg = str(err.args[0]) if err.args else ""
    # yacs says "Non-existent config key: K" (files) or "Non-existent key: K" (lists)
    if not msg.startswith(("Non-existent config key:", "Non-existent key:")):
        return None
    key = msg.split(":", 1)[1].strip()
    close = close_keys(cfg, key)
    hint = f" Close valid keys: {', '.join(close)}." if close else ""
    return ConfigError(f"Unknown config key {key!r} in {source}.{hint}")


def config_file_arg(value: str) -> str:
    """argparse ``type=`` for config options: :func:`resolve_config_file`, its error shown by
    argparse as a usage error (exit 2). An empty value stays empty (an unset optional config)."""
    import argparse

    if not value:
        return value
    try:
        return resolve_config_file(value)
    except ConfigNotFoundError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def merge_from_file(cfg: CfgNode, path: str) -> CfgNode:
    """``cfg.merge_from_file(path)`` with errors naming the file and, for unknown keys, close
    valid keys. ``path`` may be a config name under configs/ (:func:`resolve_config_file`)."""
    path = resolve_config_file(path)
    try:
        cfg.merge_from_file(path)
    except KeyError as e:
        raise (_unknown_key_error(cfg, e, path) or e) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    except ValueError as e:  # yacs type mismatches name the key; add the file
        raise ConfigError(f"{path}: {e}") from e
    return cfg


def merge_from_list(cfg: CfgNode, opts: list) -> CfgNode:
    """``cfg.merge_from_list(opts)`` (command-line KEY VALUE pairs) with clear errors."""
    if len(opts) % 2:
        raise ConfigError(f"command-line overrides must be KEY VALUE pairs, got {list(opts)}")
    for key in opts[0::2]:  # yacs checks keys with `assert`, which python -O removes
        node = cfg
        for part in str(key).split("."):
            if not isinstance(node, CfgNode) or part not in node:
                err = KeyError(f"Non-existent config key: {key}")
                raise _unknown_key_error(cfg, err, "the command-line overrides")
            node = node[part]
    try:
        cfg.merge_from_list(list(opts))
    except ValueError as e:
        raise ConfigError(f"command-line overrides: {e}") from e
    return cfg


def load_config(config_file: str = "", opts: list | None = None) -> CfgNode:
    """odedet's default config + ``config_file`` + ``opts``, checked by :func:`check_config`."""
    from odedet.config import get_odedet_cfg

    cfg = get_odedet_cfg()
    if config_file:
        merge_from_file(cfg, config_file)
    merge_from_list(cfg, opts or [])
    check_config(cfg)
    return cfg


def _positive(cfg, key: str, allow_zero: bool = False) -> None:
    node = cfg
    for part in key.split("."):
        if part not in node:
            return  # not a key of this config (e.g. a tool that does not add it)
        node = node[part]
    ok = isinstance(node, (int, float)) and math.isfinite(node) and (
        node >= 0 if allow_zero else node > 0
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} must be a finite number {bound}, got {node!r}")


def check_config(cfg: CfgNode) -> None:
    """Raise :class:`ConfigError` naming the first impossible value: ODE solver settings (unknown
    method lists the valid ones), T_END <= 0, unknown or repeated MODEL.ODE.STAGES, and
    non-positive solver/loader sizes."""
    if "ODE" in cfg.MODEL:
        from odedet.ode import solver_options_from_cfg

        for phase in ("TRAIN", "TEST"):
            try:
                solver_options_from_cfg(cfg, phase)
            except ValueError as e:
                raise ConfigError(str(e)) from e
        _positive(cfg, "MODEL.ODE.T_END")
        stages = list(cfg.MODEL.ODE.STAGES)
        bad = [s for s in stages if s not in ODE_STAGE_NAMES]
        if bad or len(set(stages)) != len(stages):
            what = f"unknown stage(s) {bad}" if bad else "repeated"
            raise ConfigError(
                f"MODEL.ODE.STAGES={stages}: {what}; ODE blocks can replace the ResNet stages "
                f"{list(ODE_STAGE_NAMES)}"
            )
        _positive(cfg, "MODEL.ODE.GN_GROUPS")
        _positive(cfg, "MODEL.ODE.AUGMENT_CHANNELS", allow_zero=True)
    for key in ("SOLVER.MAX_ITER", "SOLVER.IMS_PER_BATCH", "SOLVER.CHECKPOINT_PERIOD"):
        _positive(cfg, key)
    _positive(cfg, "SOLVER.BASE_LR", allow_zero=True)
    _positive(cfg, "DATALOADER.NUM_WORKERS", allow_zero=True)
    if "OPTIMIZER" in cfg.SOLVER:
        from odedet.engine.optim import optimizer_from_cfg

        try:
            optimizer_from_cfg(cfg)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if "TIME_BUDGET" in cfg.SOLVER:
        _positive(cfg, "SOLVER.TIME_BUDGET.MINUTES", allow_zero=True)  # 0: no budget
        _positive(cfg, "SOLVER.TIME_BUDGET.UNTIMED_ITERS", allow_zero=True)
        _positive(cfg, "SOLVER.TIME_BUDGET.TIMED_ITERS")
        _positive(cfg, "SOLVER.TIME_BUDGET.RECHECK_FRACTION", allow_zero=True)
    if "BAD_SAMPLES" in cfg.DATALOADER and cfg.DATALOADER.BAD_SAMPLES not in ("skip", "error"):
        raise ConfigError(
            f"DATALOADER.BAD_SAMPLES must be 'skip' or 'error', got {cfg.DATALOADER.BAD_SAMPLES!r}"
        )
