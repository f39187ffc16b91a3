"""What crosses between the grading kernel and the trusted grading process: JSON, and nothing
that could run code when it is read back (no pickle).

Values are plain numbers, strings, booleans, None, lists, tuples and dicts with string keys,
torch.Size, torch.device, torch.dtype and tensors of the dtypes below (their raw bytes in
base64). Anything else, including a subclass of int, float, str or Tensor, becomes an
Opaque carrying only its type's name, so a check can say "returned MyTensor; expected a
torch.Tensor" without ever touching the object.
"""
from __future__ import annotations

import base64
import json
from typing import Any, NamedTuple

import torch

from cnngrader.kernel import captured as c

DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
    torch.bool,
)}
MAX_DEPTH = 32


class Opaque(NamedTuple):
    """A value the kernel returned that does not cross: only its type's name does."""
    type_name: str


class SerializeError(ValueError):
    """A message that is not what the protocol allows."""


def encode(value: Any, depth: int = 0) -> Any:
    """A JSON-able form of value."""
    t = type(value)
    if depth > MAX_DEPTH:
        return {"opaque": "a structure nested too deeply"}
    if value is None or t in (bool, int, str):
        return value
    if t is float:
        return value if c.isfinite(value) else {"float": repr(value)}
    if t is list:
        return [encode(v, depth + 1) for v in value]
    if t is tuple:
        return {"tuple": [encode(v, depth + 1) for v in value]}
    if t is dict and all(type(k) is str for k in value):
        return {"dict": {k: encode(v, depth + 1) for k, v in value.items()}}
    if t is c.Size:
        return {"size": [int(v) for v in value]}
    if t is c.device_type:
        return {"device": str(value)}
    if t is c.dtype_type:
        return {"dtype": str(value).removeprefix("torch.")}
    if t is c.Tensor or t is c.Parameter:
        return _encode_tensor(value)
    return {"opaque": t.__name__}


def _encode_tensor(t: torch.Tensor) -> dict:
    dtype = str(c.dtype_of(t)).removeprefix("torch.")
    if dtype not in DTYPES:
        return {"opaque": f"Tensor of dtype {dtype}"}
    device = str(c.device_of(t))
    shape = [int(v) for v in c.size(t)]
    data = b""
    if device != "meta":
        host = c.contiguous(c.to(c.detach(t), device=c.CPU))
        data = c.numpy_of(host).tobytes()
    return {"tensor": {"dtype": dtype, "shape": shape, "device": device, "requires_grad": bool(c.requires_grad_of(t)),
                       "data": base64.b64encode(data).decode("ascii")}}


def decode(data: Any, device_ok: bool = True, depth: int = 0) -> Any:
    """The value encode() described; tensors are rebuilt on the device they were on when
    device_ok (else on the CPU, keeping the device's name in .device of an Opaque-free dict)."""
    if depth > MAX_DEPTH:
        raise SerializeError("nested too deeply")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(v, device_ok, depth + 1) for v in data]
    if type(data) is not dict or len(data) != 1:
        raise SerializeError(f"unexpected {type(data).__name__} in a message")
    (kind, body), = data.items()
    if kind == "tuple":
        return tuple(decode(v, device_ok, depth + 1) for v in _list(body))
    if kind == "dict":
        if type(body) is not dict:
            raise SerializeError("a dict must map strings to values")
        return {str(k): decode(v, device_ok, depth + 1) for k, v in body.items()}
    if kind == "float":
        if body not in ("nan", "inf", "-inf"):
            raise SerializeError(f"bad float {body!r}")
        return float(body)
    if kind == "size":
        return tuple(int(v) for v in _list(body))
    if kind == "device":
        return torch.device(str(body))
    if kind == "dtype":
        if body not in DTYPES:
            raise SerializeError(f"dtype {body!r} is not allowed")
        return DTYPES[body]
    if kind == "opaque":
        return Opaque(str(body))
    if kind == "tensor":
        return _decode_tensor(body, device_ok)
    raise SerializeError(f"unknown kind {kind!r}")


def _list(body: Any) -> list:
    if type(body) is not list:
        raise SerializeError("expected a list")
    return body


def _decode_tensor(body: Any, device_ok: bool) -> torch.Tensor:
    if type(body) is not dict:
        raise SerializeError("a tensor must be described by a dict")
    dtype = DTYPES.get(body.get("dtype"))
    if dtype is None:
        raise SerializeError(f"dtype {body.get('dtype')!r} is not allowed")
    shape = [int(v) for v in _list(body.get("shape"))]
    if any(v < 0 for v in shape):
        raise SerializeError("negative tensor size")
    device = torch.device(str(body.get("device", "cpu")))
    count = 1
    for v in shape:
        count *= v
    if device.type == "meta":
        out = torch.empty(shape, dtype=dtype, device="meta")
    else:
        raw = base64.b64decode(str(body.get("data", "")), validate=True)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) != count * itemsize:
            raise SerializeError(f"a tensor of shape {tuple(shape)} needs {count * itemsize} bytes, got {len(raw)}")
        out = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape) if count else torch.empty(shape, dtype=dtype)
        if device_ok and device.type != "cpu":
            out = out.to(device)
    if body.get("requires_grad") is True and out.is_floating_point():
        out.requires_grad_(True)
    return out


def dumps(value: Any) -> str:
    return json.dumps(encode(value), separators=(",", ":"), allow_nan=False)


def loads(text: str, device_ok: bool = True) -> Any:
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as e:
        raise SerializeError(f"not JSON: {e}") from None
    return decode(data, device_ok)
