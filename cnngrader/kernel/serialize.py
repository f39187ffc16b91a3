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
import re
from typing import Any, NamedTuple

import torch

from cnngrader.kernel import captured as cap

DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
    torch.bool,
)}
MAX_DEPTH = 32
MAX_BRACKETS = 2_000_000  # lists and dicts in one message: far more than any reply needs
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


class Opaque(NamedTuple):
    """A value the kernel returned that does not cross: only its type's name does."""
    type_name: str


class SerializeError(ValueError):
    """A message that is not what the protocol allows."""


class Encoded(NamedTuple):
    """A value already encoded (in the grading kernel, while the guard was armed): encode() passes it on."""
    data: Any


def encode(value: Any, depth: int = 0, trusted: bool = True) -> Any:
    """A JSON-able form of value. Only where trusted (the grader's own structures) does an Encoded
    stand for its data; in a student's value it is as opaque as any other class."""
    t = type(value)
    if depth > MAX_DEPTH:
        return {"opaque": "a structure nested too deeply"}
    if t is Encoded and trusted:
        return value.data
    if value is None or t in (bool, int, str):
        return value
    if t is float:
        return value if cap.isfinite(value) else {"float": repr(value)}
    if t is list:
        return [encode(v, depth + 1, trusted) for v in value]
    if t is tuple:
        return {"tuple": [encode(v, depth + 1, trusted) for v in value]}
    if t is dict and all(type(k) is str for k in value):
        return {"dict": {k: encode(v, depth + 1, trusted) for k, v in value.items()}}
    if t is cap.Size:
        return {"size": [int(v) for v in value]}
    if t is cap.device_type:
        return {"device": str(value)}
    if t is cap.dtype_type:
        return {"dtype": str(value).removeprefix("torch.")}
    if t is cap.Tensor or t is cap.Parameter:
        return _encode_tensor(value)
    return {"opaque": t.__name__}


def _encode_tensor(t: torch.Tensor) -> dict:
    dtype = str(cap.dtype_of(t)).removeprefix("torch.")
    if dtype not in DTYPES:
        return {"opaque": f"Tensor of dtype {dtype}"}
    device = str(cap.device_of(t))
    shape = [int(v) for v in cap.size(t)]
    data = b""
    if device != "meta":
        host = cap.contiguous(cap.to(cap.detach(t), device=cap.CPU))
        data = cap.numpy_of(host).tobytes()
    return {"tensor": {"dtype": dtype, "shape": shape, "device": device, "requires_grad": bool(cap.requires_grad_of(t)),
                       "data": cap.b2a_base64(data, newline=False).decode("ascii")}}


def encode_untrusted(value: Any) -> Encoded:
    """A student function's value, encoded at once (the guard calls this while still armed)."""
    return Encoded(encode(value, trusted=False))


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
        size = _list(body)
        if any(type(v) is not int for v in size):
            raise SerializeError("a size holds ints only")
        return tuple(size)
    if kind == "device":
        return _device(body)
    if kind == "dtype":
        if body not in DTYPES:
            raise SerializeError(f"dtype {body!r} is not allowed")
        return DTYPES[body]
    if kind == "opaque":
        return Opaque(str(body))
    if kind == "tensor":
        return _decode_tensor(body, device_ok)
    raise SerializeError(f"unknown kind {kind!r}")


def _device(body: Any) -> torch.device:
    """A device named in a message, which must be one this process has (cpu, meta, or a GPU present)."""
    if type(body) is not str or len(body) > 32:
        raise SerializeError("a device must be named by a short string")
    try:
        device = torch.device(body)
    except (RuntimeError, ValueError):
        raise SerializeError(f"{body!r} is not a device") from None
    if device.type in ("cpu", "meta"):
        return device
    if device.type == "cuda" and torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count():
        return device
    raise SerializeError(f"a tensor on {body}, a device the grader does not have")


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
    shape = _list(body.get("shape"))
    if len(shape) > MAX_DEPTH or any(type(v) is not int or v < 0 for v in shape):
        raise SerializeError(f"a tensor's shape must be at most {MAX_DEPTH} sizes >= 0, not {str(shape)[:80]}")
    device = _device(body.get("device", "cpu"))
    count = 1
    for v in shape:
        count *= v
    if device.type == "meta":
        out = torch.empty(shape, dtype=dtype, device="meta")
    else:
        data = body.get("data", "")
        if type(data) is not str:
            raise SerializeError("a tensor's data must be a base64 string")
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError:
            raise SerializeError("a tensor's data is not valid base64") from None
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
    """The message for value, written by the C JSON encoder captured at import (a notebook that
    rebinds json.dumps or base64.b64encode changes nothing here)."""
    return cap.join(cap.json_encoder(encode(value), 0))


def check_nesting(text: str, max_depth: int = MAX_DEPTH + 4, max_brackets: int = MAX_BRACKETS) -> None:
    """Refuse JSON text nested deeper than max_depth or holding more than max_brackets lists and
    dicts, before any recursive parser sees it (strings are skipped, so their brackets do not count)."""
    depth = count = 0
    for m in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if m.group() in "[{":
            depth += 1
            count += 1
            if depth > max_depth:
                raise SerializeError(f"nested more than {max_depth} deep")
            if count > max_brackets:
                raise SerializeError(f"more than {max_brackets} lists and dicts")
        else:
            depth -= 1


def loads(text: str, device_ok: bool = True) -> Any:
    """The value of a message; SerializeError for anything the protocol does not allow."""
    if type(text) is not str:
        raise SerializeError(f"a message is a str, not {type(text).__name__}")
    check_nesting(text)
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:
        raise SerializeError(f"not JSON: {str(e)[:200]}") from None
    try:
        return decode(data, device_ok)
    except SerializeError:
        raise
    except (TypeError, ValueError, OverflowError, RuntimeError, RecursionError, MemoryError) as e:
        raise SerializeError(f"{type(e).__name__}: {str(e)[:200]}") from None
