"""numpy <-> satlab.v1.Tensor, without per-element loops.

A Tensor carries packed little-endian float32 or float64 values; protobuf's
Python runtime accepts and returns them as bytes-backed repeated fields, so
both directions go through one bulk copy.
"""

from typing import Any, Optional

import numpy as np

from satlab.v1 import tensor_pb2

_FLOAT32 = np.dtype("<f4")
_FLOAT64 = np.dtype("<f8")


def to_tensor(array: Any, dtype: Any = None, out: Optional[tensor_pb2.Tensor] = None) -> tensor_pb2.Tensor:
    """Returns a satlab.v1.Tensor holding `array` (rank 1 or 2, row-major).

    dtype: np.float32 or np.float64; defaults to the array's own when it is one
    of those, else float64. `out`, when given, is filled in place (use it for a
    sub-message such as request.batch.inputs) and returned.
    """
    a = np.asarray(array)
    if a.ndim not in (1, 2):
        raise ValueError(f"tensor: expected rank 1 or 2, got shape {a.shape}")
    if dtype is None:
        dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float64
    dtype = np.dtype(dtype)
    t = tensor_pb2.Tensor() if out is None else out
    t.Clear()
    t.shape.extend(a.shape)
    if dtype == np.float32:
        # MergeFromString of a packed field: one memcpy-like parse instead of a
        # Python loop over elements.
        _append_packed(t, 2, np.ascontiguousarray(a, dtype=_FLOAT32))
    elif dtype == np.float64:
        _append_packed(t, 3, np.ascontiguousarray(a, dtype=_FLOAT64))
    else:
        raise ValueError(f"tensor: dtype must be float32 or float64, got {dtype}")
    return t


def from_tensor(t: tensor_pb2.Tensor) -> np.ndarray:
    """Returns the values of a satlab.v1.Tensor as a numpy array of its shape
    (float32 or float64, whichever the tensor carries)."""
    shape = tuple(t.shape)
    # Serializing is a bulk copy; the packed values are then viewed in place.
    # (Converting the repeated field element by element is ~10x slower.)
    data = t.SerializeToString()
    chunks = {2: [], 3: []}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 2:
            n, pos = _read_varint(data, pos)
            if field in chunks:
                chunks[field].append((pos, n))
            pos += n
        elif wire_type == 0:
            _, pos = _read_varint(data, pos)
        elif wire_type == 5:
            if field == 2:
                chunks[2].append((pos, 4))
            pos += 4
        elif wire_type == 1:
            if field == 3:
                chunks[3].append((pos, 8))
            pos += 8
        else:
            raise ValueError(f"tensor: unexpected wire type {wire_type}")
    field, dtype = (2, _FLOAT32) if chunks[2] else (3, _FLOAT64)
    parts = [np.frombuffer(data, dtype=dtype, count=n // dtype.itemsize, offset=off)
             for off, n in chunks[field]]
    if not parts:
        a = np.zeros(0, dtype=dtype)
    elif len(parts) == 1:
        a = parts[0].copy()  # writable, and detached from `data`
    else:
        a = np.concatenate(parts)
    a = a.astype(dtype.newbyteorder("="), copy=False)
    if shape:
        a = a.reshape(shape)
    return a


def _read_varint(data, pos):
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _append_packed(t, field_number, values):
    raw = values.tobytes()
    # Wire type 2 (length-delimited) packed repeated field.
    t.MergeFromString(_varint(field_number << 3 | 2) + _varint(len(raw)) + raw)
