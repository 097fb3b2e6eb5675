"""Checkpoints that survive a kill and refuse untrusted code.

* Writes are atomic: the checkpoint goes to a hidden temp file in the same directory, is
  fsync'ed and then ``os.replace``'d onto its name; ``last_checkpoint`` is rewritten the same
  way, only after the checkpoint is complete. A run killed mid-write leaves the previous
  checkpoint and ``last_checkpoint`` untouched (plus a stale temp file, removed on resume).
* Loads are safe: every file goes through ``torch.load(..., weights_only=True)``; a pickle payload
  (any object that is not tensors/containers/numbers) is refused with
  :class:`UnsafeCheckpointError` naming the file. ``.pkl`` files (detectron2's model-zoo pickle
  format, read with ``pickle.load``) are refused outright.
* A truncated or corrupt file raises :class:`CorruptCheckpointError` naming it. On ``--resume``
  the checkpointer falls back to the newest complete checkpoint in OUTPUT_DIR with a warning;
  if none is readable it raises, it never silently starts from scratch.
* Architecture mismatch (documented policy, see the README's Reliability table):
  - resuming (``--resume``) or loading for inference (:func:`load_weights`): any missing,
    unexpected or wrong-shape key is a :class:`CheckpointMismatchError`, because the result would
    be a partly random model that silently evaluates or trains wrong;
  - initialising training from ``MODEL.WEIGHTS``: a checkpoint sharing no tensor with the model
    is an error; a partial match (e.g. backbone-only weights) is one loud warning with counts and
    examples, after detectron2's per-key lists.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .atomic_io import (  # noqa: F401  (re-exported: the public helpers live here)
    TEMP_MARKER,
    atomic_torch_save,
    atomic_write_text,
    stale_temp_files,
)

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and what to do."""


class UnsafeCheckpointError(CheckpointError):
    """The file carries a pickle payload that ``weights_only`` loading refuses."""


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, empty or not a torch checkpoint at all."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the model (another architecture)."""


def safe_load(path: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds arbitrary Python objects (refused, never run).
        CorruptCheckpointError: the file is truncated, empty or not a torch file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            first = str(e).strip().splitlines()[-1][:200]
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it carries a pickle payload (Python objects other than "
                f"tensors, containers and numbers), which could run arbitrary code. odedet loads "
                f"checkpoints with torch.load(weights_only=True) only; re-save the file as a "
                f"plain state dict with a trusted tool. ({first})"
            ) from e
        raise _corrupt(path, e) from e
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        raise _corrupt(path, e) from e


def _corrupt(path: str, err: BaseException) -> CorruptCheckpointError:
    detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else "empty file"
    size = os.path.getsize(path)
    return CorruptCheckpointError(
        f"checkpoint {path} ({size} bytes) is truncated or corrupt and cannot be read "
        f"({type(err).__name__}: {detail}). It was probably written by a run that was killed "
        f"or copied incompletely; delete it or point MODEL.WEIGHTS at a complete checkpoint."
    )


_ITER_NAME = re.compile(r"^model_(\d+)\.pth$")


def _resume_rank(filename: str, mtime: float) -> tuple:
    """Sort key for resume candidates: model_final > model_NNNNNNN by N > others by mtime."""
    if filename == "model_final.pth":
        return (2, 0, mtime)
    m = _ITER_NAME.match(filename)
    if m:
        return (1, int(m.group(1)), mtime)
    return (0, 0, mtime)


class OdedetCheckpointer(DetectionCheckpointer):
    """detectron2's DetectionCheckpointer with atomic saves, weights-only loads, fallback to the
    newest complete checkpoint on resume, and an architecture-mismatch policy (module doc)."""

    def __init__(self, model, save_dir="", *, save_to_disk=None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self._mode = "init"  # "init" | "resume" | "inference": how strict key matching is
        self._loading = ""

    # -- saving ------------------------------------------------------------------------------
    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_torch_save(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    # -- loading -----------------------------------------------------------------------------
    def load(self, path, checkpointables=None, *, mode: str | None = None):
        """Load ``path``; ``mode`` ("init", "resume", "inference") sets the mismatch policy and
        defaults to "resume" when all checkpointables are loaded, "init" otherwise."""
        if mode is None:
            mode = "resume" if checkpointables is None and self.checkpointables else "init"
        self._mode, self._loading = mode, path or ""
        try:
            return super().load(path, checkpointables)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}") from e
        finally:
            # detectron2 main (not v0.6) keeps the file being loaded in _parsed_url_during_load,
            # asserts it is None on entry and does not reset it when a load raises: reset it.
            if hasattr(self, "_parsed_url_during_load"):
                self._parsed_url_during_load = None

    def _load_file(self, filename: str) -> dict:
        if filename.endswith(".pkl"):
            raise UnsafeCheckpointError(
                f"refusing to load {filename}: .pkl checkpoints are read with pickle.load, which "
                f"can run arbitrary code. Convert it to a .pth state dict with a trusted tool."
            )
        loaded = safe_load(filename)
        if not isinstance(loaded, dict):
            raise CorruptCheckpointError(
                f"checkpoint {filename} holds a {type(loaded).__name__}, not a dict of tensors"
            )
        if filename.endswith(".pyth") and "model_state" in loaded:  # pycls, as detectron2 does
            model = {k: v for k, v in loaded["model_state"].items() if "num_batches" not in k}
            return {"model": model, "__author__": "pycls", "matching_heuristics": True}
        if "model" not in loaded:
            loaded = {"model": loaded}
        if not isinstance(loaded["model"], dict):
            raise CorruptCheckpointError(f"checkpoint {filename}: 'model' is not a state dict")
        return loaded

    def _load_model(self, checkpoint: dict):
        n_ckpt = len(checkpoint.get("model", {}))
        incompatible = super()._load_model(checkpoint)
        self._check_compatible(incompatible, n_ckpt)
        return incompatible

    def _check_compatible(self, incompatible, n_ckpt: int) -> None:
        shapes = [k for k, _, _ in incompatible.incorrect_shapes]
        # fvcore drops wrong-shape tensors from the checkpoint before load_state_dict, so they
        # come back among the missing keys too: count each model tensor once.
        missing = [k for k in incompatible.missing_keys if k not in set(shapes)]
        unexpected = list(incompatible.unexpected_keys)
        if not (missing or unexpected or shapes):
            return
        n_model = len(self.model.state_dict())
        loaded = n_model - len(missing) - len(shapes)
        summary = (
            f"checkpoint {self._loading} does not match the model: {loaded} of {n_model} model "
            f"tensors loaded; {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} "
            f"unexpected (e.g. {unexpected[:3]}), {len(shapes)} with another shape (e.g. "
            f"{shapes[:3]}); the checkpoint has {n_ckpt} tensors."
        )
        if self._mode in ("resume", "inference"):
            what = "resume training" if self._mode == "resume" else "run inference"
            raise CheckpointMismatchError(
                f"{summary} It is from another architecture, so it cannot {what}: use the "
                f"config it was trained with, or another OUTPUT_DIR / MODEL.WEIGHTS."
            )
        if loaded <= 0:
            raise CheckpointMismatchError(
                f"{summary} Nothing would be loaded: MODEL.WEIGHTS is from another architecture."
            )
        self.logger.warning(
            f"PARTIAL WEIGHTS: {summary} The rest of the model starts from its initialisation."
        )

    # -- resuming ----------------------------------------------------------------------------
    def _resume_candidates(self) -> list[str]:
        """Checkpoints to try on resume, best first: the one ``last_checkpoint`` names, then the
        others by iteration (newest first). Stale temp files of killed writes are removed."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        for tmp in stale_temp_files(self.save_dir):
            self.logger.warning(f"Removing {tmp}: a partial checkpoint of an interrupted write")
            if self.save_to_disk:
                os.remove(tmp)
        files = [f for f in self.get_all_checkpoint_files() if os.path.isfile(f)]
        files.sort(key=lambda f: _resume_rank(os.path.basename(f), os.path.getmtime(f)))
        files.reverse()
        tagged = os.path.join(self.save_dir, "last_checkpoint")
        if os.path.isfile(tagged):
            named = self.get_checkpoint_file()
            if os.path.isfile(named):
                files = [named] + [f for f in files if f != named]
            else:
                self.logger.warning(f"{tagged} names {named}, which does not exist")
        return files

    def has_checkpoint(self) -> bool:
        return bool(self._resume_candidates())

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict:
        """Resume from the newest complete checkpoint in ``save_dir`` (falling back past corrupt
        ones with a warning), or, with nothing to resume, initialise from ``path``."""
        candidates = self._resume_candidates() if resume else []
        if not candidates:
            if resume:
                self.logger.info(f"No checkpoint to resume in {self.save_dir!r}")
            return self.load(path, checkpointables=[], mode="init")
        failures = []
        for i, candidate in enumerate(candidates):
            try:
                ret = self.load(candidate, mode="resume")
            except CorruptCheckpointError as e:
                failures.append(str(e))
                nxt = candidates[i + 1] if i + 1 < len(candidates) else None
                self.logger.warning(
                    f"{e}\nFalling back to the next newest checkpoint: {nxt}" if nxt else str(e)
                )
                continue
            if failures:
                self.logger.warning(f"RESUMED FROM AN OLDER CHECKPOINT: {candidate}")
            return ret
        raise CorruptCheckpointError(
            f"--resume found checkpoints in {self.save_dir} but none is readable; refusing to "
            f"start from scratch silently. Remove them (or the directory) to start over:\n"
            + "\n".join(failures)
        )


def load_weights(model: torch.nn.Module, path: str) -> dict:
    """Load ``path`` into ``model`` for inference (demo, evaluation): weights-only, and any key
    mismatch is an error (:class:`CheckpointMismatchError`). Returns the checkpoint's extra data."""
    return OdedetCheckpointer(model).load(path, checkpointables=[], mode="inference")
