"""Config errors that say what to fix: unknown keys with close valid ones, impossible values;
and config files that can never run code.

Tools load configs with :func:`load_config` (or :func:`merge_from_file` / :func:`merge_from_list`
on a config of their own); models are checked by :func:`check_config` when they are built
(``odedet.engine.Trainer.build_model``), so a bad value fails before any training, naming its key.

Safety: detectron2 v0.6's ``CfgNode.merge_from_file`` falls back to ``yaml.unsafe_load`` (python
tags such as ``!!python/object/apply:os.system`` run code), and its LazyConfig ``.py`` configs are
executed. odedet's configs are :class:`SafeCfgNode` (``get_odedet_cfg`` returns one): every file
of a ``_BASE_`` chain is read with ``yaml.safe_load`` only, and a ``.py`` config is refused, both
with a :class:`ConfigError` naming the file and what to do, whichever tool or code path merges it
(``cfg.merge_from_file`` included).
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


class UnsafeConfigError(ConfigError):
    """A config file that could only be loaded by running code (LazyConfig ``.py``, YAML python
    tags); refused, never executed."""


_CODE_SUFFIXES = (".py", ".pyc", ".pyw")


def _refuse_code_file(path: str) -> None:
    if str(path).lower().endswith(_CODE_SUFFIXES):
        raise UnsafeConfigError(
            f"refusing config file {path}: it is a Python (detectron2 LazyConfig) config, and "
            f"loading it would execute its code. odedet's tools read YAML configs only (yacs keys "
            f"with _BASE_ chains, loaded with yaml.safe_load): write the settings as a .yaml "
            f"config, e.g. starting from one under configs/."
        )


class SafeCfgNode(CfgNode):
    """detectron2's ``CfgNode`` that never runs code while loading files: ``yaml.safe_load``
    for every file of a ``_BASE_`` chain (never detectron2's ``yaml.unsafe_load`` fallback),
    ``.py`` (LazyConfig) files refused, and :class:`ConfigError` s that name the file, and close
    valid keys for unknown ones, from ``merge_from_file`` and ``merge_from_list``."""

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> dict:
        # allow_unsafe is ignored on purpose: python tags are refused whoever asks.
        _refuse_code_file(filename)
        if "://" not in str(filename) and not os.path.isfile(filename):
            raise ConfigError(f"config file not found: {filename} (a _BASE_ path is relative to "
                              f"the file that names it)")
        try:
            if "://" not in str(filename):  # the file's own shape first (fvcore assumes a dict)
                with open(filename, encoding="utf-8") as f:
                    top = yaml.safe_load(f)
                if top is None:
                    return {}
                if not isinstance(top, dict):
                    raise ConfigError(f"config file {filename} holds a YAML "
                                      f"{type(top).__name__}, not a mapping of config keys")
            loaded = super().load_yaml_with_base(filename, allow_unsafe=False)
        except yaml.constructor.ConstructorError as e:
            tag = getattr(e, "problem", "") or ""
            raise UnsafeConfigError(
                f"refusing config file {filename}: it uses a YAML python tag ({tag.strip()}), "
                f"which constructs Python objects and can run code when loaded. odedet reads "
                f"configs with yaml.safe_load only: replace the tagged value by a plain value "
                f"(string, number, list or mapping). ({str(e).strip().splitlines()[-1]})"
            ) from e
        return loaded

    @classmethod
    def _decode_cfg_value(cls, value):
        # yacs turns merged mappings into nodes of the root's class; keep them plain CfgNodes,
        # as in the default config (yacs compares node types key by key).
        return CfgNode._decode_cfg_value(value)

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        merge_from_file(self, cfg_filename)

    def merge_from_list(self, cfg_list: list):
        return merge_from_list(self, cfg_list)


def make_safe(cfg: CfgNode) -> CfgNode:
    """Turn a detectron2 ``CfgNode`` into a :class:`SafeCfgNode`, in place; returns it."""
    if isinstance(cfg, SafeCfgNode):
        return cfg
    if type(cfg) is not CfgNode:
        raise TypeError(f"expected a detectron2 CfgNode, got {type(cfg).__name__}")
    object.__setattr__(cfg, "__class__", SafeCfgNode)  # yacs's __setattr__ refuses types
    return cfg


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
    _refuse_code_file(path)
    path = resolve_config_file(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if type(cfg) is CfgNode:
        make_safe(cfg)
    if not isinstance(cfg, SafeCfgNode):
        raise TypeError(f"odedet merges config files into detectron2 CfgNodes only, got "
                        f"{type(cfg).__name__}")
    try:
        _merge_loaded(cfg, SafeCfgNode.load_yaml_with_base(path), path)
    except ConfigError:
        raise
    except KeyError as e:
        raise (_unknown_key_error(cfg, e, path) or e) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    except ValueError as e:  # yacs type mismatches name the key; add the file
        raise ConfigError(f"{path}: {e}") from e
    except (AssertionError, TypeError) as e:  # detectron2/yacs check merges with assert
        raise ConfigError(f"config file {path} cannot be merged: {e}") from e
    return cfg


def _merge_loaded(cfg: CfgNode, loaded: dict, path: str) -> None:
    """detectron2 v0.6's ``CfgNode.merge_from_file`` after the (safe) load: config versions are
    upgraded as detectron2 does."""
    from detectron2.config.compat import downgrade_config, guess_version, upgrade_config

    loaded_cfg = CfgNode(loaded)  # plain nodes: yacs compares node types key by key
    version = loaded_cfg.get("VERSION", None)
    if version is None:
        version = guess_version(loaded_cfg, path)
    if version > cfg.VERSION:
        raise ConfigError(f"config file {path} has VERSION {version}, newer than this "
                          f"detectron2's {cfg.VERSION}")
    if version == cfg.VERSION:
        cfg.merge_from_other_cfg(loaded_cfg)
        return
    old = downgrade_config(cfg, to_version=version)
    old.merge_from_other_cfg(loaded_cfg)
    new = upgrade_config(old)
    cfg.clear()
    cfg.update(new)


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
        CfgNode.merge_from_list(cfg, list(opts))
    except ValueError as e:
        raise ConfigError(f"command-line overrides: {e}") from e
    except (AssertionError, TypeError) as e:
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
        if "TRAIN_SOLVERS" in cfg.MODEL.ODE:  # solver sampling, STEER, RNODE (odedet.ode.training)
            from odedet.ode.training import ODETrainingOptions

            try:
                ODETrainingOptions.from_cfg(cfg)
            except ValueError as e:
                raise ConfigError(str(e)) from e
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
