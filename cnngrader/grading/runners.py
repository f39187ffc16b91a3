"""Where the student's code runs for a check: in the grading kernel (RemoteRunner), or in this
process (LocalRunner: an instructor running a notebook's hidden cells, and the tests).

Both hand the kernel side's probes (cnngrader.kernel.probes) the same plain inputs and read back
the same plain outputs, through the same serialization, so a check sees identical data either
way. Only a RemoteRunner keeps the student's code out of the process that reaches the verdict.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from cnngrader.grading.core import Forbidden, GradingError, Run
from cnngrader.kernel import probes, serialize
from cnngrader.kernel.guard import Policy, hold, release

Calls = list[tuple[list, dict]]  # (args, kwargs) of each call of a batch


class Runner:
    """The probes a check can ask for; secret: the run's secret (None: each check's fixed cases).

    limit: the seconds one request may take, when the check knows its reference's time
    (core.call_limit); None: the hidden cell's own limit. A RemoteRunner sends it with the request."""

    secret: int | None = None
    limit: float | None = None

    def ask(self, op: str, name: str, forbidden: Forbidden | None, **args: Any) -> Any:
        raise NotImplementedError

    def describe(self, name: str) -> dict:
        return self.ask("describe", name, None)

    def value(self, name: str) -> dict:
        """{"kind": "missing" or "value", "value": the name's value as plain data (else an Opaque)}."""
        return self.ask("value", name, None)

    def call(self, name: str, forbidden: Forbidden, args: list, kwargs: dict, seed: int | None = None,
             count: bool = False) -> Run:
        """One call; with count, Run.counts holds the operators it dispatched and the calls it made."""
        more = {"count": True} if count else {}
        return Run.from_dict(self.ask("call", name, forbidden, args=args, kwargs=kwargs, seed=seed, **more))

    def ask_batch(self, op: str, name: str, forbidden: Forbidden | None, batch: list[dict]) -> tuple[list, str | None]:
        """ask(op, name, forbidden, **args) for each args of `batch`, in order: the replies, and None; or the
        replies of the calls that returned before one did not, and why (the kernel died, or a call ran past its
        limit)."""
        return [self.ask(op, name, forbidden, **args) for args in batch], None

    def call_batch(self, name: str, forbidden: Forbidden, calls: Calls) -> tuple[list[Run], str | None]:
        """call() on each (args, kwargs), as ask_batch."""
        outs, why = self.ask_batch("call", name, forbidden, [{"args": a, "kwargs": k} for a, k in calls])
        return [Run.from_dict(out) for out in outs], why

    def call_meta_batch(self, name: str, forbidden: Forbidden, calls: Calls) -> tuple[list[tuple[Run, list]],
                                                                                     str | None]:
        """call_meta() on each (args, kwargs), as ask_batch."""
        outs, why = self.ask_batch("call_meta", name, forbidden, [{"args": a, "kwargs": k} for a, k in calls])
        return [(Run.from_dict(out), _mixed(out)) for out in outs], why

    def call_meta(self, name: str, forbidden: Forbidden, args: list, kwargs: dict) -> tuple[Run, list]:
        """A call with the tensors on the meta device: its Run, and [operator, device] where a meta tensor
        met a tensor on another device ([] if none did)."""
        out = self.ask("call_meta", name, forbidden, args=args, kwargs=kwargs)
        return Run.from_dict(out), _mixed(out)

    def module_meta(self, name: str, forbidden: Forbidden, ctor_args: list, X: Any,
                    seed: int | None = None) -> tuple[Run, list]:
        """name(*ctor_args) moved to the meta device in float32 and run on X (on meta): its forward's Run,
        and [operator, device] where a meta tensor met a tensor on another device ([] if none did)."""
        out = self.ask("module_meta", name, forbidden, ctor_args=ctor_args, X=X, seed=seed)
        return Run.from_dict(out), _mixed(out)

    def layer_batch(self, name: str, forbidden: Forbidden, batch: list[dict]) -> tuple[list[dict], str | None]:
        """The probe "layer" (a module built, run forward and backward) on each args of `batch`, as ask_batch."""
        outs, why = self.ask_batch("layer", name, forbidden, batch)
        return [_layer_out(out) for out in outs], why

    def model(self, name: str, forbidden: Forbidden, **args: Any) -> dict:
        out = self.ask("model", name, forbidden, **args)
        out["build"] = Run.from_dict(out["build"])
        if "forward" in out:
            out["forward"] = Run.from_dict(out["forward"])
        return out

    def fit(self, op: str, name: str, forbidden: Forbidden, **args: Any) -> dict:
        out = self.ask(op, name, forbidden, **args)
        out["run"] = Run.from_dict(out["run"])
        out["mixed"] = _mixed(out)
        return out


def _layer_out(out: dict) -> dict:
    out["forward"] = Run.from_dict(out["forward"])
    out["backward"] = None if out["backward"] is None else Run.from_dict(out["backward"])
    return out


def _mixed(out: Any) -> list:
    """A probe's `mixed` ([operator, device]) as two strings, or [] (none, or malformed)."""
    mixed = out.get("mixed") if isinstance(out, dict) else None
    return [str(v) for v in mixed] if isinstance(mixed, list) and len(mixed) == 2 else []


def _policy(forbidden: Forbidden | None) -> dict:
    return {} if forbidden is None else forbidden.policy._asdict()


class LocalRunner(Runner):
    """Runs the probes here, on the objects of `namespace`."""

    def __init__(self, namespace: dict[str, Any], secret: int | None = None) -> None:
        self.namespace, self.secret = namespace, secret

    def ask(self, op: str, name: str, forbidden: Forbidden | None, **args: Any) -> Any:
        obj = self.namespace.get(name, probes.MISSING)
        inputs = serialize.loads(serialize.dumps(args))  # copies, as a kernel would receive them
        out = probes.PROBES[op](obj, Policy.from_json(_policy(forbidden)), **inputs)
        return serialize.loads(serialize.dumps(out))

    def ask_batch(self, op: str, name: str, forbidden: Forbidden | None, batch: list[dict]) -> tuple[list, str | None]:
        block = hold(Policy.from_json(_policy(forbidden)))  # once for the batch, as the kernel does
        try:
            return super().ask_batch(op, name, forbidden, batch)
        finally:
            release(block)


class KernelGone(Exception):
    """The kernel gave no reply: it died, hung or answered something else. The message says which;
    `partial`, the replies of a batch's calls that returned before that."""

    def __init__(self, why: str, partial: list | None = None) -> None:
        super().__init__(why)
        self.partial = partial or []


class RemoteRunner(Runner):
    """Sends each request to a grading kernel: send(request_json) returns the reply's JSON or raises
    KernelGone. A reply that is not well-formed fails the check; it is never trusted further."""

    def __init__(self, send: Callable[[str], str], secret: int | None) -> None:
        self.send, self.secret = send, secret

    def ask(self, op: str, name: str, forbidden: Forbidden | None, **args: Any) -> Any:
        head = self._head(name)  # first: read without parsing
        request = json.dumps({**head, "op": op, "policy": _policy(forbidden), "args": serialize.encode(args)},
                             separators=(",", ":"))
        try:
            reply = self.send(request)
        except KernelGone as e:
            raise GradingError(f"{name} could not be checked: {e}") from None
        return self._parse(name, reply)

    def ask_batch(self, op: str, name: str, forbidden: Forbidden | None, batch: list[dict]) -> tuple[list, str | None]:
        """The calls in one request: one round trip to the kernel instead of one per call."""
        calls = [{"op": op, "args": serialize.encode(args)} for args in batch]
        request = json.dumps({**self._head(name), "batch": len(calls), "policy": _policy(forbidden), "calls": calls},
                             separators=(",", ":"))
        why = None
        try:
            replies = self.send(request)
        except KernelGone as e:
            replies, why = e.partial, f"{name} could not be checked: {e}"
        if type(replies) is not list or len(replies) > len(calls) or (why is None and len(replies) != len(calls)):
            raise GradingError(f"{name} could not be checked: the kernel's reply was not one per call") from None
        return [self._parse(name, reply) for reply in replies], why

    def _head(self, name: str) -> dict:
        return {"name": name} if self.limit is None else {"limit": round(float(self.limit), 3), "name": name}

    @staticmethod
    def _parse(name: str, reply: Any) -> Any:
        if type(reply) is not str:
            raise GradingError(f"{name} could not be checked: the kernel's reply was not text") from None
        try:
            return serialize.loads(reply)
        except serialize.SerializeError as e:
            raise GradingError(f"{name} could not be checked: the kernel's reply was malformed ({e})") from None
