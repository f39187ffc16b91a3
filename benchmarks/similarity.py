"""Part 5: the similarity report (cnngrader.pipeline.similarity) on a generated class.

The class hands in 02_cross_correlation. Each honest student picks, for every function, one of several
correct ways to write it (loops, unfold, einsum, as_strided, F.conv2d, an optimizer or a hand-written step),
then names, comments, blank lines and small choices of their own. A share of the class copies another
student and disguises the copy: names renamed, comments rewritten, methods reordered, code moved into a
helper cell. `python -m benchmarks.similarity --students 1000` writes such a class and times the report.
"""
from __future__ import annotations

import argparse
import copy
import random
import re
import tempfile
import time
from pathlib import Path

from .machine import REPO
from .report import Result, Skipped

AID = "02_cross_correlation"
TARGET = "<= 60"  # seconds for one assignment of 1,000 students

# Each way of writing a function; "{a|b|c}" is a choice every student makes on their own.
CORR2D = [
    """{h, w = K.shape|h, w = K.size()|h = K.shape[0]; w = K.shape[1]}
Y = {X.new_zeros|torch.zeros}(({X.shape[0]|X.size(0)|len(X)} - h + 1, {X.shape[1]|X.size(1)|\
X.shape[-1]} - w + 1){|, dtype=X.dtype})
for i in range({Y.shape[0]|len(Y)|Y.size(0)}):
    for j in range({Y.shape[1]|Y.size(1)|Y.shape[-1]}):
        Y[i, j] = {(X[i : i + h, j : j + w] * K).sum()|torch.sum(X[i:i + h, j:j + w] * K)|(K * X[i:i + h,\
 j:j + w]).sum()}
return Y""",
    """H, W = {X.shape|X.size()}
kh, kw = {K.shape|K.size()}
rows = []
for i in range(H - kh + 1):
    {row = [torch.sum(X[i:i + kh, j:j + kw] * K) for j in range(W - kw + 1)]|row = [(X[i:i + kh,\
 j:j + kw] * K).sum() for j in range(W - kw + 1)]}
    rows.append({torch.stack(row)|torch.tensor(row)})
return {torch.stack(rows)|torch.stack(rows, dim=0)}""",
    """kh, kw = {K.shape|K.size()}
patches = X.unfold(0, kh, 1).unfold(1, kw, 1)  # (H', W', kh, kw)
return {(patches * K).sum(dim=(-2, -1))|(patches * K).sum((2, 3))|torch.sum(patches * K, dim=(2, 3))}""",
    """windows = X.unfold(0, {K.shape[0]|K.size(0)|len(K)}, 1).unfold(1, {K.shape[1]|K.size(1)|K.shape[-1]}, 1)
return torch.einsum({"ijab,ab->ij"|"hwkl,kl->hw"|"...ab,ab->..."}, windows, K)""",
    """kh, kw = K.shape
out_h, out_w = X.shape[0] - kh + 1, X.shape[1] - kw + 1
s0, s1 = X.stride()
view = X.as_strided((out_h, out_w, kh, kw), (s0, s1, s0, s1))
return {torch.tensordot(view, K, dims=([2, 3], [0, 1]))|(view * K).sum((-1, -2))|torch.einsum("ijkl,kl->ij",\
 view, K)}""",
    """kh, kw = K.shape
out = torch.zeros({X.shape[0] - kh + 1, X.shape[1] - kw + 1|(X.shape[0] - kh + 1, X.shape[1] - kw + 1)},\
 dtype=X.dtype, device=X.device)
for a in range(kh):
    for b in range(kw):
        {out += K[a, b] * X[a:a + out.shape[0], b:b + out.shape[1]]|out = out + X[a:a + out.shape[0],\
 b:b + out.shape[1]] * K[a, b]}
return out""",
    """{import torch.nn.functional as F|from torch.nn import functional as F}
return F.conv2d({X[None, None]|X.reshape(1, 1, *X.shape)|X.unsqueeze(0).unsqueeze(0)}, {K[None, None]|\
K.reshape(1, 1, *K.shape)|K.unsqueeze(0).unsqueeze(0)}){[0, 0]|.squeeze(0).squeeze(0)|\
.reshape(X.shape[0] - K.shape[0] + 1, -1)}""",
]
INIT = [
    """self.weight = nn.Parameter({torch.rand((out_channels, *kernel_size))|torch.rand(out_channels,\
 *kernel_size)|torch.randn(out_channels, *kernel_size) * 0.1})
self.bias = nn.Parameter({torch.zeros(out_channels)|torch.zeros((out_channels,))|torch.rand(out_channels)})""",
    """kh, kw = kernel_size
self.weight = nn.Parameter({torch.randn(out_channels, kh, kw) * 0.1|torch.rand(out_channels, kh, kw)|\
0.01 * torch.randn((out_channels, kh, kw))})
self.bias = nn.Parameter({torch.zeros(out_channels)|torch.zeros((out_channels,))})""",
    """self.out_channels = out_channels
self.weight = nn.Parameter(torch.empty(out_channels, kernel_size[0], kernel_size[1]).{uniform_(-1, 1)|\
normal_(0, 0.1)|uniform_(0, 1)})
self.bias = nn.Parameter({torch.zeros(out_channels)|torch.zeros((out_channels,))})""",
]
FORWARD = [
    "return torch.stack([corr2d(X, K) + b for K, b in zip(self.weight, self.bias)]{|, dim=0|, 0})",
    """maps = []
for c in range({self.weight.shape[0]|len(self.weight)|self.bias.numel()}):
    maps.append(corr2d(X, self.weight[c]) + self.bias[c])
return {torch.stack(maps, dim=0)|torch.stack(maps)}""",
    """outs = [corr2d(X, self.weight[k]) for k in range({len(self.bias)|self.weight.shape[0]})]
return torch.stack(outs) + self.bias{.reshape(-1, 1, 1)|[:, None, None]|.view(-1, 1, 1)}""",
]
CONVOLVE = [
    "return corr2d(X, torch.flip(K, {dims=(0, 1)|(0, 1)|[0, 1]}))",
    "return corr2d(X, K.flip({0).flip(1|0, 1|(0, 1)}))",
    "flipped = torch.rot90(K, 2{|, (0, 1)|, dims=(0, 1)})\nreturn corr2d(X, flipped)",
]
LEARN = [
    """K = torch.zeros(kernel_size, dtype=X.dtype, device=X.device, requires_grad=True)
for _ in range(num_steps):
    loss = {((corr2d(X, K) - Y) ** 2).sum()|torch.sum((corr2d(X, K) - Y) ** 2)|((Y - corr2d(X, K)) ** 2).sum()}
    loss.backward()
    with torch.no_grad():
        {K -= lr * K.grad|K.sub_(lr * K.grad)|K.add_(-lr * K.grad)}
    {K.grad.zero_()|K.grad = None|K.grad.data.zero_()}
return {K.detach()|K.detach().clone()|K.data}""",
    """K = torch.zeros(kernel_size, dtype=X.dtype, device=X.device, requires_grad=True)
opt = torch.optim.SGD([K], lr=lr)
for step in range(num_steps):
    opt.zero_grad()
    err = corr2d(X, K) - Y
    {(err * err).sum().backward()|(err ** 2).sum().backward()|torch.sum(err.pow(2)).backward()}
    opt.step()
return {K.detach()|K.detach().clone()}""",
    """K = torch.zeros(kernel_size, dtype=X.dtype, device=X.device)
for _ in range(num_steps):
    K.requires_grad_(True)
    {(g,) = torch.autograd.grad(((corr2d(X, K) - Y) ** 2).sum(), K)|g = torch.autograd.grad(((corr2d(X,\
 K) - Y) ** 2).sum(), K)[0]}
    K = {(K - lr * g).detach()|K.detach() - lr * g}
return K""",
]
_CHOICE = re.compile(r"\{([^{}]*\|[^{}]*)\}")


def _pick(rng: random.Random, code: str) -> str:
    """The code with every "{a|b|c}" replaced by one of its choices."""
    return _CHOICE.sub(lambda m: rng.choice(m.group(1).split("|")), code)


EXTRAS = [  # lines an honest student adds to a function now and then
    'assert X.dim() == 2, "X must be 2-D"',
    "assert K.dim() == 2",
    "X = X.to(K.dtype)",
    "if K.numel() == 0:\n    raise ValueError(\"empty kernel\")",
]
COMMENTS = ["# my version", "# slide the kernel", "# TODO: tidy up", "# works for any shape", "# see chapter 2"]
LOCALS = ("h", "w", "H", "W", "kh", "kw", "i", "j", "a", "b", "rows", "row", "patches", "windows", "out_h",
          "out_w", "s0", "s1", "view", "out", "maps", "outs", "flipped", "loss", "opt", "step", "err", "g", "c")


def _indent(code: str, n: int) -> str:
    return "\n".join(" " * n + line if line else line for line in code.split("\n"))


def _body(rng: random.Random, code: str) -> str:
    """A student's own touches: maybe an extra check first, maybe a comment, maybe blank lines."""
    lines = _pick(rng, code).split("\n")
    if rng.random() < 0.3:
        lines.insert(0, rng.choice(EXTRAS))
    if rng.random() < 0.5:
        lines.insert(rng.randrange(len(lines)), rng.choice(COMMENTS))
    return "\n".join(lines)


def honest(rng: random.Random) -> dict[str, str]:
    """One honest student's solution cells (grade id -> source)."""
    doc = '    """Mine."""\n' if rng.random() < 0.3 else ""
    return {
        "corr2d": f"def corr2d(X, K):\n{doc}{_indent(_body(rng, rng.choice(CORR2D)), 4)}\n",
        "Conv2D": (f"class Conv2D(nn.Module):\n    def __init__(self, kernel_size, out_channels=1):\n"
                   f"        super().__init__()\n{_indent(_pick(rng, rng.choice(INIT)), 8)}\n\n"
                   f"    def forward(self, X):\n"
                   f"{_indent(_pick(rng, rng.choice(FORWARD)), 8)}\n"),
        "convolve2d": f"def convolve2d(X, K):\n{_indent(_pick(rng, rng.choice(CONVOLVE)), 4)}\n",
        "learn_kernel": (f"def learn_kernel(X, Y, kernel_size, num_steps, lr):\n"
                         f"{_indent(_body(rng, rng.choice(LEARN)), 4)}\n"),
        "learned_kernel": "learned_kernel = ((4, 3), (2, 1))\n",
    }


def disguise(rng: random.Random, cells: dict[str, str]) -> tuple[dict[str, str], str]:
    """A copy of another student's cells, disguised: locals renamed, comments replaced, Conv2D's methods
    reordered, corr2d moved into a helper cell (returned second; "" when not moved)."""
    names = {n: f"{n}_{rng.choice(['v', 'tmp', 'x', 'my'])}{rng.randrange(10)}" for n in LOCALS}
    out = {}
    for gid, src in cells.items():
        src = re.sub(r"#[^\n]*", lambda _m: rng.choice(COMMENTS), src)
        out[gid] = re.sub(r"(?<![.\w])(" + "|".join(LOCALS) + r")\b", lambda m: names[m.group(1)], src)
    head, _, rest = out["Conv2D"].partition("    def __init__")
    init, _, forward = rest.partition("\n    def forward")
    out["Conv2D"] = f"{head}    def forward{forward.rstrip()}\n\n    def __init__{init.rstrip()}\n"
    helper = ""
    if rng.random() < 0.5:
        helper = out["corr2d"].replace("def corr2d(", "def _my_corr(")
        out["corr2d"] = "def corr2d(X, K):\n    return _my_corr(X, K)\n"
    return out, helper


def make_class(root: Path, count: int, copied: float = 0.05, seed: int = 0) -> list[tuple[str, str]]:
    """Write `count` students into root/submitted/<student>/<AID>/; returns the (copier, original) pairs."""
    import nbformat

    rng = random.Random(seed)
    template = nbformat.read(REPO / "exercises" / AID / f"{AID}.ipynb", as_version=4)
    students = [f"s{i:04d}" for i in range(1, count + 1)]
    written: dict[str, dict[str, str]] = {}  # the honest students' cells
    copies = []
    for sid in students:
        helper = ""
        if written and rng.random() < copied:
            original = rng.choice(list(written))
            cells, helper = disguise(rng, written[original])
            copies.append((sid, original))
        else:
            cells = written[sid] = honest(rng)
        nb = copy.deepcopy(template)
        for k, cell in enumerate(list(nb.cells)):
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in cells:
                cell.source = cells[gid]
                if gid == "corr2d" and helper:
                    nb.cells.insert(k, nbformat.v4.new_code_cell(helper))
        dest = root / "submitted" / sid / AID
        dest.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest / f"{AID}.ipynb")
    return copies


def measure(root: Path, students: int, log=print, threshold: float | None = None) -> tuple[float, dict]:
    """Write a class of `students`, run the report on it; (seconds, details). threshold: flag from this score
    on instead of the default, to see which copies and which other pairs each threshold would flag."""
    from traitlets.config import Config

    from cnngrader.pipeline.similarity import write_similarity

    copies = make_class(root, students)
    config = Config()
    if threshold is not None:
        config.SimilarityCheck.threshold = threshold
    t0, c0 = time.perf_counter(), time.process_time()
    result = write_similarity(root, [AID], config=config)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    origin = {copier: original for copier, original in copies}  # two copies of one original share code too
    scores = {frozenset((p.a.owner, p.b.owner)): p.score for p in result.pairs if p.b.kind == "student"}
    copied = {pair for pair in scores if len({origin.get(s, s) for s in pair}) == 1}
    found = sum(frozenset(c) in scores for c in copies)
    by_threshold = {f"{t:.1f}": {"copies": sum(scores.get(frozenset(c), 0) >= t for c in copies),
                                 "other_pairs": sum(v >= t for k, v in scores.items() if k not in copied)}
                    for t in (0.5, 0.6, 0.7, 0.8, 0.9)}
    log(f"similarity: {students} students, {seconds:.1f} s ({cpu:.1f} s of CPU); {len(copies)} disguised copies, "
        f"{found} of them flagged; {len(scores)} student pairs flagged, {len(scores) - len(copied)} of them not "
        f"copies of one original; {len(result.pairs) - len(scores)} matches with a known source")
    log("  flagged from score t: " + "; ".join(f"t={t}: {v['copies']} copies, {v['other_pairs']} other pairs"
                                              for t, v in by_threshold.items()))
    return seconds, {"students": students, "cpu_seconds": cpu, "copies": len(copies), "copies_flagged": found,
                     "student_pairs_flagged": len(scores), "not_copies_flagged": len(scores) - len(copied),
                     "source_matches": len(result.pairs) - len(scores), "by_threshold": by_threshold,
                     "assignment_seconds": result.seconds}


def missing() -> str | None:
    try:
        import copydetect  # noqa: F401 (only whether it imports matters here)
        import scipy  # noqa: F401 (only whether it imports matters here)
    except ImportError as e:
        return f"the similarity report needs copydetect and scipy ({e})"
    if not (REPO / "exercises" / AID / f"{AID}.ipynb").is_file():
        return f"exercises/{AID} is missing"
    return None


def run(students: int = 1000, log=print) -> tuple[list[Result], list[Skipped]]:
    why = missing()
    if why:
        return [], [Skipped("similarity", why)]
    with tempfile.TemporaryDirectory(prefix="bench-similarity-") as tmp:
        seconds, detail = measure(Path(tmp), students, log)
    return [Result("similarity", f"similarity report, {AID}, {students} students", "-", seconds, "s", TARGET,
                   detail)], []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.similarity", description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=1000)
    p.add_argument("--keep", type=Path, help="write the class and its report here (kept) instead of a temporary folder")
    p.add_argument("--threshold", type=float, help="flag from this score on (with --keep; default: the report's)")
    args = p.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        measure(args.keep, args.students, threshold=args.threshold)
        return 0
    results, skipped = run(args.students)
    for r in results:
        print(f"{r.name}: {r.value:.1f} s (target {r.target}: {'met' if r.met else 'NOT met'})")
    for s in skipped:
        print(f"skipped: {s.reason}")
    return 0 if results and results[0].met else 1


if __name__ == "__main__":
    raise SystemExit(main())
