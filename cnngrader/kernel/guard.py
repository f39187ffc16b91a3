"""Shortcut guards around one call of a student function, inside the grading kernel.

A Policy, sent by the trusted grading process as plain data, names what the function may not use:

- `replace`: Python attributes ("torch.nn.functional.conv2d", "cnnlib.corr2d") replaced by
  tripwires while the function runs, and watched through any alias by a profile hook;
- `watch`: C functions only watched by the profile hook ("torch._C._nn.im2col");
- `aten`: operators blocked at PyTorch's dispatcher ("convolution", "constant_pad_nd"), so every
  route to them fails: torch.ops.aten.*, nn.grad, transposed and 3-D variants, other threads,
  C++ callers.

invoke() runs the function with all of them armed, captures its warnings and output (so they
never reach a graded cell), and returns a Run: the value or the error, where in the student's
code it was raised, and every forbidden use recorded, even one whose exception was caught.
"""
from __future__ import annotations

import os
import re
import sys
import types
from typing import Any, Callable, NamedTuple

from cnngrader.kernel import captured as cap

# The modules as they were when the grader was imported, before any student code ran, and the
# attributes of those a policy names: a tripwire watches the genuine function even when the
# notebook has rebound the name since.
_MODULES = dict(sys.modules)
_WATCHED = ("torch", "torch.nn", "torch.nn.functional", "torch.nn.grad", "torch.linalg", "torch._C._nn", "cnnlib",
            "cnnlib.ops", "cnnlib.shapes", "cnnlib.train", "cnnlib.models", "cnnlib.layers", "cnnlib._engine")


class _Frozen(type):
    """A class whose attributes cannot be set or deleted (Policy.from_json stays the grader's)."""

    def __setattr__(cls, name, value):
        raise AttributeError("the grader is read-only")

    def __delattr__(cls, name):
        raise AttributeError("the grader is read-only")


class _SealedMode(type(cap.TorchDispatchMode)):
    """A dispatch mode's class that is read-only once sealed (TorchDispatchMode's own set-up writes to it first)."""

    def __setattr__(cls, name, value):
        if "_sealed" in cls.__dict__:
            raise AttributeError("the grader is read-only")
        super().__setattr__(name, value)

    def __delattr__(cls, name):
        raise AttributeError("the grader is read-only")


class _PolicyFields(NamedTuple):
    replace: tuple[str, ...] = ()
    watch: tuple[str, ...] = ()
    aten: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()  # packages ("scipy.signal") none of whose Python code may run


class Policy(_PolicyFields, metaclass=_Frozen):
    """What a function may not use. `aten` holds operator names ("convolution", "conv2d.padding",
    "mkldnn::_convolution_pointwise") and name patterns ("re:<regex>", matched against every
    "namespace::name.overload" of PyTorch's operator registry). `modules` names packages: a call
    into any of their Python functions is recorded, whatever name or alias reached it."""

    __slots__ = ()
    _fields = _PolicyFields._fields

    @classmethod
    def from_json(cls, data: dict) -> "Policy":
        return cls(*(tuple(str(v) for v in data.get(k, ())) for k in cls._fields))


class Tripwire:
    """Stands in for a forbidden function or class while a student function runs."""

    def __init__(self, label: str, calls: list) -> None:
        self._label, self._calls = label, calls

    def __call__(self, *args, **kwargs):
        self._calls.append(self._label)
        raise RuntimeError(f"{self._label} may not be used here: the hidden tests check your own implementation")

    def __getattr__(self, name):  # e.g. F.conv2d.__doc__, nn.Conv2d.forward
        self._calls.append(self._label)
        raise AttributeError(f"{self._label} may not be used here")

    def __mro_entries__(self, bases):  # class Mine(nn.Conv2d): ... is a shortcut too
        self._calls.append(self._label)
        raise TypeError(f"{self._label} may not be used here")


def _module(name: str) -> Any:
    owner = _MODULES.get(name)
    if owner is None:  # e.g. torch._C._nn, which is an attribute rather than an imported module
        root, *rest = name.split(".")
        owner = _MODULES.get(root)
        for part in rest:
            owner = getattr(owner, part, None)
    if owner is None:  # a module first imported after the grader (scipy.signal): as it is now, if it is one
        found = _SYS_MODULES.get(name)
        owner = found if isinstance(found, types.ModuleType) else None
    return owner


_SYS_MODULES = sys.modules  # the dict itself, whatever sys.modules is rebound to later


_ORIGINAL = {name: dict(vars(m)) for name in _WATCHED if (m := _module(name)) is not None}


def resolve(dotted: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute, object) for "package.module.attr": the module and the object as they
    were when the grader was imported."""
    owner_name, _, attr = dotted.rpartition(".")
    owner = _module(owner_name)
    original = _ORIGINAL.get(owner_name, {})
    obj = original.get(attr, getattr(owner, attr, None) if owner is not None else None)
    if owner is None or obj is None:
        return None
    return owner, attr, obj


class _Armed(NamedTuple):
    attrs: list  # (owner, name, label)
    codes: dict  # code object -> label
    builtins: dict  # id(builtin) -> label
    keep: list  # the builtins themselves, so their ids stay theirs


_ARMED: dict = {}  # (policy, how many modules are loaded) -> its _Armed: resolving is the slow part


def _arm(policy: Policy) -> _Armed:
    key = (policy, len(_SYS_MODULES))  # a module imported since (scipy.signal) is resolved afresh
    if key not in _ARMED:
        if len(_ARMED) > 32:
            _ARMED.clear()
        _ARMED[key] = _resolve_all(policy)
    return _ARMED[key]


def _resolve_all(policy: Policy) -> _Armed:
    armed = _Armed([], {}, {}, [])
    for dotted, replace in [(d, True) for d in policy.replace] + [(d, False) for d in policy.watch]:
        found = resolve(dotted)
        if found is None:
            continue
        owner, name, obj = found
        if replace:
            armed.attrs.append((owner, name, dotted))
        if isinstance(obj, type):
            for meth in ("__init__", "forward", "backward"):
                fn = obj.__dict__.get(meth)
                fn = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
                if isinstance(fn, types.FunctionType):
                    armed.codes.setdefault(fn.__code__, dotted)
        elif isinstance(obj, types.FunctionType):
            armed.codes.setdefault(obj.__code__, dotted)
        elif callable(obj):
            armed.builtins.setdefault(id(obj), dotted)
            armed.keep.append(obj)
    return armed


_OPS: dict[str, tuple[str, ...]] = {}  # an aten entry of a policy -> the operators it names, once per process


def aten_ops(entry: str) -> tuple[str, ...]:
    """The qualified operators ("aten::conv2d.padding") that a policy's aten entry names: a pattern
    "re:<regex>" is matched against the whole registry, every overload of it included; a plain name
    "ns::op.overload" (namespace aten by default) is itself."""
    if entry not in _OPS:
        if entry.startswith("re:"):
            pattern = re.compile(entry[3:])
            _OPS[entry] = tuple(sorted(n for n in cap.all_op_names() if pattern.search(n)))
        else:
            _OPS[entry] = (entry if "::" in entry else f"aten::{entry}",)
    return _OPS[entry]


def _block_aten(ops: tuple[str, ...], sink: list, seen: list):
    """torch.library registrations that make each operator record its use (in the list sink[0]) and raise, and
    a canary (an obscure aten operator that appends to `seen`) by which invoke() checks that they still hold."""
    if not ops:
        return []

    def blocked(label):
        def kernel(*args, **kwargs):
            sink[0].append(label)
            raise RuntimeError(f"{label} may not be used here: the hidden tests check your own implementation")
        return kernel

    def canary(x):
        seen.append(x)
        return x

    libs: dict[str, Any] = {}
    with cap.catch_warnings():
        cap.simplefilter("ignore")  # "Overriding a previously registered kernel" is the point here
        # The C registration handle itself, not torch.library.Library: nothing the notebook registered
        # or patched there can make a registration fail or be skipped.
        libs["aten"] = cap.dispatch_library("IMPL", "aten", "", "cnngrader", 0)
        libs["aten"].impl(cap.canary_name, "CPU", canary, False)
        for entry in ops:
            for qualified in aten_ops(entry):
                ns, _, op = qualified.partition("::")
                label = f"torch.ops.{ns}.{op.split('.')[0]}"
                for key in _keys(qualified):
                    try:
                        if ns not in libs:
                            libs[ns] = cap.dispatch_library("IMPL", ns, "", "cnngrader", 0)
                        libs[ns].impl(op, key, blocked(label), False)
                    except (RuntimeError, ValueError, AttributeError):
                        pass  # no such operator or overload in this torch version
    return list(libs.values())


_KEYS: dict[str, tuple[str, ...]] = {}


def _keys(qualified: str) -> tuple[str, ...]:
    """The dispatch keys to block an operator at. A composite operator (CompositeImplicitAutograd)
    decomposes before any backend sees it: blocking that kernel covers every device. Any other is
    blocked at the CPU (and CUDA where there is a GPU): a backend's kernel outranks a
    CompositeExplicitAutograd one. Meta tensors carry no values, so they are left alone."""
    if qualified not in _KEYS:
        try:
            composite = cap.has_kernel(qualified, "CompositeImplicitAutograd")
        except RuntimeError:
            composite = False
        _KEYS[qualified] = (("CompositeImplicitAutograd",) if composite
                            else ("CPU", "CUDA") if cap.cuda_present else ("CPU",))
    return _KEYS[qualified]


class _Block(NamedTuple):
    aten: tuple[str, ...]  # the policy's entries
    libs: list
    sink: list  # [the list a blocked operator's use goes to]: the running call's
    seen: list


_HELD: list = []  # the blocks that batches hold (hold()), the newest last


def hold(policy: Policy) -> _Block | None:
    """Register the policy's dispatcher block once for a batch of calls, not once for each: registering some
    90 operators costs about 1 ms. invoke() then uses it, and checks its canary before and after each call, as
    for a block of its own; the tripwires, the profile hook and the stopped processes stay per call. Between two
    calls the block stays in place: code that runs there (a display hook of the notebook's, as a reply is
    published) meets it too. release() removes it."""
    if not policy.aten:
        return None
    sink, seen = [[]], []
    block = _Block(policy.aten, _block_aten(policy.aten, sink, seen), sink, seen)
    _HELD.append(block)
    return block


def release(block: _Block | None) -> None:
    if block is None:
        return
    for lib in block.libs:
        lib.reset()
    while block in _HELD:
        _HELD.remove(block)


def _block_for(policy: Policy, calls: list) -> tuple[list, list, _Block | None, bool]:
    """The dispatcher block one call runs under, as (libs, seen, the batch's block or None, broken): the block its
    batch holds, whose uses are this call's from now on and which must still hold (else `broken`); or its own."""
    held = next((b for b in reversed(_HELD) if type(b) is _Block and b.aten == policy.aten), None)
    if held is None:
        seen: list = []
        return _block_aten(policy.aten, [calls], seen), seen, None, False
    held.sink[0] = calls
    return held.libs, held.seen, held, not _still_armed(held.libs, held.seen)


def _unblock(libs: list, held: _Block | None) -> None:
    """After a call: its own block removed; a batch's stays, and a use between two calls is neither's."""
    if held is None:
        for lib in libs:
            lib.reset()
    else:
        held.sink[0] = []


def _still_armed(libs: list, seen: list) -> bool:
    """Whether the dispatcher block is still in place: its canary answers."""
    if not libs:
        return True
    before = len(seen)
    try:
        with cap.no_torch_function(), cap.no_torch_dispatch():
            cap.canary_op(_CANARY)
    except Exception:  # the genuine operator, answering instead of the canary
        return False
    return len(seen) == before + 1 and seen[-1] is _CANARY


_CANARY = cap.tensor([True])
# Ways to start a process, refused while a probed function runs: a child would compute out of the
# dispatcher block's reach. (module, attribute, label)
_SPAWN = [(cap.os_mod, n, f"os.{n} (a new process)") for n in ("fork", "forkpty", "posix_spawn", "posix_spawnp",
                                                              "system", "popen") if hasattr(cap.os_mod, n)]
_SPAWN += [(cap.posixsubprocess, "fork_exec", "subprocess (a new process)"),
           (cap.subprocess_mod, "_fork_exec", "subprocess (a new process)")]
# The same functions, watched by the profile hook through any reference taken before.
_SPAWN_IDS = {id(getattr(owner, name)): label for owner, name, label in _SPAWN if hasattr(owner, name)}


def _ancestors() -> set[int]:
    """This process and its ancestors, which run the kernel and its sandbox."""
    out, pid = set(), cap.getpid()
    while pid > 0 and pid not in out:
        out.add(pid)
        try:
            with cap.io_open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


# Where the zygote runs from (forked_kernel.py): pid 1 of a forked kernel's pid namespace, its reaper, runs it
ZYGOTE_SCRIPT = b"/run/cnngrader-zygote.py"


def _in_sandbox() -> bool:
    """Whether this kernel runs in a grading sandbox: a pid namespace of its own whose pid 1 is bwrap, or the
    reaper of a kernel forked from the zygote."""
    try:
        with cap.io_open("/proc/1/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return argv[0].endswith(b"bwrap") or ZYGOTE_SCRIPT in argv[1:2]


_SANDBOXED = _in_sandbox()


def _others() -> list[int]:
    """Every other process in the sandbox's pid namespace, the kernel's ancestors excepted; [] outside
    a sandbox (where other processes are none of the notebook's business)."""
    if not _SANDBOXED:
        return []
    mine = _ancestors()
    try:
        return [pid for pid in (int(n) for n in cap.listdir("/proc") if n.isdigit()) if pid not in mine]
    except OSError:
        return []


def _freeze() -> list[int]:
    """Stop the sandbox's other processes (SIGSTOP cannot be caught) while a probed function runs, so
    that no child computes for it; a function that waits for one runs into its time limit instead."""
    stopped = []
    for pid in _others():
        try:
            cap.os_mod.kill(pid, cap.SIGSTOP)
            stopped.append(pid)
        except OSError:
            continue
    return stopped


def _thaw(stopped: list[int]) -> list[str]:
    """Let the stopped processes go on; the processes that appeared meanwhile, as shortcuts."""
    for pid in stopped:
        try:
            cap.os_mod.kill(pid, cap.SIGCONT)
        except OSError:
            continue
    new = sorted(set(_others()) - set(stopped))
    return [f"a new process (pid {pid}), started while it ran" for pid in new]


class Run(NamedTuple):
    value: Any
    error: BaseException | None
    where: str  # "line N: source" of the student's frame that raised, or ""
    shortcuts: list
    warned: list
    tampered: bool
    plain: Any = None  # finish(value), made while the guard was still armed
    message: str = ""  # str(error), read while the guard was still armed
    counts: Any = None  # with count=True: {"ops": {operator: n}, "calls": n made by the student's code}


def _message(e: BaseException) -> str:
    try:
        return str(e)[:4000]
    except Exception:  # a student's exception whose __str__ raises
        return "<its message could not be read>"


def _warning(w: Any) -> str:
    try:
        return f"{w.category.__name__}: {str(w.message)[:1000]}"
    except Exception:  # a student's warning whose __str__ raises
        return "a warning whose message could not be read"


def _call(thunk: Callable[[], Any], finish: Callable[[Any], Any] | None) -> tuple:
    """(value, error, where, message, finish(value)) of one call of thunk, inside the armed guard."""
    value, error, where, message, plain = None, None, "", "", None
    try:
        value = thunk()
    except BaseException as e:  # a student's error is a verdict, not a crash
        if isinstance(e, KeyboardInterrupt):
            raise
        error, message = e, _message(e)
        frames = [f for f in cap.extract_tb(e.__traceback__) if not _is_grader_file(f.filename)]
        if frames:
            where = f"line {frames[-1].lineno}: {(frames[-1].line or '').strip()}"
    if error is None and finish is not None:
        with cap.no_torch_function(), cap.no_torch_dispatch():
            plain = finish(value)
    return value, error, where, message, plain


def _hook(codes: dict, builtins: dict, calls: list, modules: tuple = (), tally: list | None = None) -> Callable:
    """A profile hook that records each call of a watched function (by code object, or by id for a
    builtin), and each entry into a package of `modules` (by the module its code belongs to). With a
    tally, it also counts the calls that the student's own code makes (tally[0])."""
    entry: dict = {}  # code object -> its package of `modules`, or ""

    def package(frame) -> str:
        code = frame.f_code
        if code not in entry:
            name = frame.f_globals.get("__name__")
            name = name if type(name) is str else ""
            entry[code] = next((m for m in modules if name == m or name.startswith(m + ".")), "")
        return entry[code]

    def hook(frame, event, arg):
        if event == "call":
            label = codes.get(frame.f_code)
            if (label is None and modules and package(frame) and frame.f_code.co_name != "<module>"
                    and (frame.f_back is None or package(frame.f_back) != package(frame))):
                label = f"{frame.f_globals.get('__name__')}.{frame.f_code.co_name}"
            if tally is not None and frame.f_back is not None and _is_student_code(frame.f_back.f_code):
                tally[0] += 1
        elif event == "c_call":
            label = builtins.get(id(arg))
            if tally is not None and _is_student_code(frame.f_code):
                tally[0] += 1
        else:
            return
        if label is not None:
            calls.append(label)

    return hook


_STUDENT_CODE: dict = {}  # code object -> whether it is the student's (not the grader's, a library's or Python's)


def _is_student_code(code) -> bool:
    found = _STUDENT_CODE.get(code)
    if found is None:
        path = os.path.normcase(code.co_filename)
        found = not (_is_grader_file(code.co_filename) or path.startswith(_STDLIB_DIR) or path.startswith("<frozen"))
        if len(_STUDENT_CODE) > 100_000:
            _STUDENT_CODE.clear()
        _STUDENT_CODE[code] = found
    return found


def _counting(thunk: Callable[[], Any], ops: dict, state: list) -> Callable[[], Any]:
    """thunk, run under a dispatch mode that counts each PyTorch operator it dispatches (ops: name ->
    count); state[0] becomes False when the mode was gone from the stack by the end (code of the
    student's popped it)."""
    mode = _OpCounter(ops)

    def run():
        with mode:
            try:
                return thunk()
            finally:
                state[0] = any(m is mode for m in cap.dispatch_mode_stack())

    return run


class _OpCounter(cap.TorchDispatchMode, metaclass=_SealedMode):
    """Counts the operators dispatched while it is on the stack, by name ("mul", "mm")."""

    def __init__(self, ops: dict) -> None:
        super().__init__()
        self._count = ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(getattr(func, "__name__", "?")).split(".")[0]
        self._count[name] = self._count.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


_OpCounter._sealed = True


def invoke(policy: Policy, thunk: Callable[[], Any], finish: Callable[[Any], Any] | None = None,
           count: bool = False) -> Run:
    """Run thunk() with the policy armed, warnings and output captured. Its value is passed to
    finish() (serialisation), its error and warnings are read, and the dispatcher block is checked,
    all before anything is disarmed: code of the student's that runs then (a __str__, a patched
    encoder, a torch function mode) meets the same guard. With count, the run also counts the
    operators dispatched and the calls the student's code makes (Run.counts), for the trusted side
    to judge how the work grows with the input."""
    calls: list = []
    armed = _arm(policy)
    strict = bool(policy.replace or policy.aten)
    tally, ops, intact = ([0], {}, [True]) if count else (None, None, [True])
    hook = _hook(armed.codes, {**_SPAWN_IDS, **armed.builtins} if strict else armed.builtins, calls,
                 policy.modules, tally)
    if count:
        thunk = _counting(thunk, ops, intact)
    saved = []
    value, error, where, plain, message = None, None, "", None, ""
    previous = cap.getprofile()
    buffer = cap.StringIO()
    tampered = broken = False
    watch = False
    libs, seen, held = [], [], None
    stopped: list = []
    warnings_text: list = []
    with cap.catch_warnings(record=True) as warned, cap.redirect_stderr(buffer), cap.redirect_stdout(buffer):
        cap.simplefilter("always")
        try:
            for owner, name, label in armed.attrs + ([a for a in _SPAWN if hasattr(a[0], a[1])] if strict else []):
                saved.append((owner, name, owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)))
                set_attr(owner, name, Tripwire(label, calls))
            libs, seen, held, broken = _block_for(policy, calls)
            stopped = _freeze() if strict else []
            # Under a profiler or debugger, its hook stays (cProfile's cannot be restored by setprofile);
            # the tripwires and the dispatcher still catch the calls.
            watch = previous is None
            if watch:
                cap.setprofile(hook)
            try:
                value, error, where, message, plain = _call(thunk, finish)
                warnings_text = [_warning(w) for w in warned]
            finally:
                if watch:
                    tampered = cap.getprofile() is not hook
                    cap.setprofile(None)
            if strict:
                calls.extend(_thaw(stopped))
                stopped = []
            if broken or not _still_armed(libs, seen) or not intact[0]:
                tampered = True
        finally:
            _thaw(stopped)
            _unblock(libs, held)
            for owner, name, obj in reversed(saved):
                set_attr(owner, name, obj)
    # Under a profiler or debugger the hook is not ours: the calls are unknown, the operators still counted.
    counts = {"ops": dict(ops), "calls": tally[0] if watch else None} if count else None
    return Run(value, error, where, calls, warnings_text, tampered, plain, message, counts)


def _is_grader_file(filename: str) -> bool:
    """Frames of the grader and of libraries, which a student's traceback location skips."""
    path = os.path.normcase(filename)
    return "site-packages" in path or path.startswith(_GRADER_DIR) or path.endswith(_CHECKS_FILE)


_GRADER_DIR = os.path.normcase(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CHECKS_FILE = os.path.normcase(os.path.join("", "checks.py"))
_STDLIB_DIR = os.path.normcase(os.path.dirname(os.__file__))


def set_attr(owner: Any, name: str, value: Any) -> None:
    if isinstance(owner, types.ModuleType):
        cap.mod_setattr(owner, name, value)
    else:
        setattr(owner, name, value)
