"""Read pickle-based dataset files (CIFAR batches, detectron2 proposal ``.pkl`` files) without
ever running code.

``pickle.load`` calls whatever callable a file names, so a hostile "CIFAR batch" can run any
command. :func:`load_data_pickle` unpickles with an allow-list: plain containers (dict, list,
tuple, set), strings, bytes, numbers, numpy arrays / dtypes / scalars (non-object dtypes only),
and detectron2's ``BoxMode`` enum (proposal files store it). Anything else is refused with
:class:`UnsafeDataFileError` naming the file and the global it asked for; a truncated or
non-pickle file raises :class:`~odedet.data.validation.DatasetError` naming it.
"""
from __future__ import annotations

import io
import os
import pickle

import numpy as np

from .validation import DatasetError

# (module, name) pairs a data pickle may reference. numpy 1.x and 2.x module paths both appear.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol <= 2
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("builtins", "complex"), ("collections", "OrderedDict"),
    ("detectron2.structures.boxes", "BoxMode"),
}


class UnsafeDataFileError(DatasetError):
    """A pickle-based dataset file that references code; refused, never run."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str, **kwargs):
        super().__init__(file, **kwargs)
        self._path = path

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafeDataFileError(
            f"refusing to load {self._path}: it is a pickle that references {module}.{name}, "
            f"which could run code. odedet reads pickle-based dataset files with an allow-list "
            f"(containers, numbers, strings, numpy arrays); re-create the file from the "
            f"official source, or convert it to plain numpy arrays with a trusted tool."
        )

    def persistent_load(self, pid):
        raise UnsafeDataFileError(f"refusing to load {self._path}: it uses pickle persistent ids")


def _check_no_objects(obj, path: str, depth: int = 0) -> None:
    if depth > 50:
        raise DatasetError(f"{path}: nesting deeper than 50 levels")
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise UnsafeDataFileError(f"refusing {path}: it holds a numpy array of Python objects")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_no_objects(k, path, depth + 1)
            _check_no_objects(v, path, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_no_objects(v, path, depth + 1)


def loads_data_pickle(data: bytes, path: str, encoding: str = "latin1"):
    """Unpickle ``data`` (read from ``path``, named in errors) with the allow-list."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), path, encoding=encoding).load()
    except UnsafeDataFileError:
        raise
    except Exception as e:  # noqa: BLE001 - nothing can run here, so any error = a bad file
        # (UnpicklingError, EOFError, ValueError, LookupError from a mangled codec name, ...)
        raise DatasetError(
            f"{path} ({len(data)} bytes) is truncated or not a valid pickle ({type(e).__name__}: "
            f"{str(e)[:160]}); re-extract it from the official archive"
        ) from e
    _check_no_objects(obj, path)
    return obj


def load_data_pickle(path: str, encoding: str = "latin1"):
    """The object in the pickle file ``path``, loaded with the allow-list (module docstring)."""
    from detectron2.utils.file_io import PathManager

    if "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file not found: {path}")
    with PathManager.open(path, "rb") as f:
        data = f.read()
    return loads_data_pickle(data, path, encoding)
