"""A small, defensive reader for the numeric arrays of a MATLAB v5 ``.mat`` file (NYU Depth v2's
``splits.mat``: ``trainNdxs``, ``testNdxs``).

``scipy.io.loadmat`` runs C code that trusts the file's length fields: a corrupted splits.mat
crashed the process (segmentation fault; found by the property tests). This reader checks every
length against the bytes present, bounds decompression, reads only full numeric matrices and
raises :class:`~odedet.data.depth.formats.DepthDataError` naming the file for anything else.
MATLAB v7.3 files (HDF5) are read with h5py.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from .formats import DepthDataError

_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8",
             13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_NUMERIC_CLASSES = set(range(6, 16))  # double, single, int8 ... uint64
_MAX_INFLATED = 64 * 2**20


def read_mat_arrays(path: str) -> dict:
    """{name: array} of the full numeric matrices of ``path`` (MATLAB v5 or v7.3)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:10] == b"MATLAB 7.3" or data[:8] == b"\x89HDF\r\n\x1a\n":
        return _read_hdf5(path)
    if len(data) < 128 or not data.startswith(b"MATLAB 5.0 MAT-file"):
        raise DepthDataError(f"{path} is not a MATLAB v5 / v7.3 .mat file")
    endian = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if endian is None:
        raise DepthDataError(f"{path}: corrupt MAT-file header (endian indicator)")
    out = {}
    pos = 128
    while pos + 8 <= len(data):
        mtype, body, pos = _element(data, pos, endian, path)
        if mtype == _MI_COMPRESSED:
            inflater = zlib.decompressobj()
            try:
                inner = inflater.decompress(body, _MAX_INFLATED)
            except zlib.error as e:
                raise DepthDataError(f"{path}: corrupt compressed element ({e})") from e
            if inflater.unconsumed_tail:
                raise DepthDataError(f"{path}: a compressed element inflates beyond "
                                     f"{_MAX_INFLATED >> 20} MiB")
            if len(inner) < 8:
                raise DepthDataError(f"{path}: corrupt compressed element")
            mtype, body, _ = _element(inner, 0, endian, path)
        if mtype == _MI_MATRIX:
            named = _matrix(body, endian, path)
            if named is not None:
                out[named[0]] = named[1]
    return out


def _element(buf: bytes, pos: int, endian: str, path: str):
    """(type, data bytes, next position) of the data element at ``pos``."""
    if pos + 8 > len(buf):
        raise DepthDataError(f"{path}: truncated data element at byte {pos}")
    first, second = struct.unpack_from(endian + "II", buf, pos)
    if first >> 16:  # small data element: type and size in 4 bytes, data in the next 4
        mtype, nbytes = first & 0xFFFF, first >> 16
        if nbytes > 4:
            raise DepthDataError(f"{path}: corrupt small data element at byte {pos}")
        return mtype, buf[pos + 4:pos + 4 + nbytes], pos + 8
    mtype, nbytes = first, second
    start, end = pos + 8, pos + 8 + nbytes
    if end > len(buf):
        raise DepthDataError(f"{path}: data element at byte {pos} claims {nbytes} bytes, past "
                             f"the end of the file (truncated or corrupt)")
    nxt = end if mtype == _MI_COMPRESSED else start + ((nbytes + 7) // 8) * 8
    return mtype, buf[start:end], nxt


def _matrix(body: bytes, endian: str, path: str):
    """(name, array) of a full numeric miMATRIX, None for other classes (cells, structs...)."""
    parts, pos = [], 0
    while pos + 8 <= len(body) and len(parts) < 5:
        mtype, data, pos = _element(body, pos, endian, path)
        parts.append((mtype, data))
    if len(parts) < 3 or len(parts[0][1]) < 4:
        raise DepthDataError(f"{path}: corrupt matrix element")
    cls = struct.unpack_from(endian + "I", parts[0][1])[0] & 0xFF
    if cls not in _NUMERIC_CLASSES:
        return None
    if len(parts) < 4 or parts[1][0] != 5 or len(parts[1][1]) % 4:
        raise DepthDataError(f"{path}: corrupt numeric matrix element")
    dims = np.frombuffer(parts[1][1], endian + "i4")
    name = parts[2][1].decode("latin1")
    dtype = _MI_TYPES.get(parts[3][0])
    if dtype is None or (dims < 0).any():
        raise DepthDataError(f"{path}: matrix {name!r} has a corrupt type or shape")
    values = np.frombuffer(parts[3][1], endian + dtype) if len(parts[3][1]) % np.dtype(
        dtype).itemsize == 0 else None
    if values is None or values.size != int(np.prod(dims, dtype=np.int64)):
        raise DepthDataError(f"{path}: matrix {name!r} holds {len(parts[3][1])} bytes, not "
                             f"{tuple(dims)} values of {dtype}")
    return name, values.reshape(tuple(dims), order="F")


def _read_hdf5(path: str) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: np.asarray(v) for k, v in f.items() if isinstance(v, h5py.Dataset)}
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise DepthDataError(f"{path}: cannot read this MATLAB v7.3 (HDF5) file ({e})") from e
