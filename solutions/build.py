"""Writes the six assignment notebooks solutions/<id>/<id>.ipynb (the nbgrader source versions).

The notebooks are generated from the cell lists below so that their nbgrader metadata (grade ids,
points, locks) stays consistent; edit this file, then run, from the repository root:

    .venv/bin/python solutions/build.py          # rewrite the notebooks
    .venv/bin/python solutions/build.py --check  # exit 1 if a committed notebook is out of date
    .venv/bin/nbgrader generate_assignment <id> --force   # then regenerate exercises/<id>

Cell kinds: md (text), setup (locked; imports cnnlib.grading before any student code runs),
solution (### BEGIN/END SOLUTION), tests (visible asserts, graded), hidden (a locked graded cell
whose only content besides a comment is a hidden two-line call to cnnlib.grading).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
RULES = (
    "**How this notebook is graded.** Write your code between the lines where `# YOUR CODE HERE` is, "
    "replacing `raise NotImplementedError()`. Each function is followed by visible tests (run them) and by "
    "hidden tests, which compare your function with the course's reference implementation on random "
    "inputs of many shapes, in `float32` and `float64`, and on every device present (the CPU, and a GPU "
    "when there is one): so return tensors with the input's dtype and on the input's device. "
    "The hidden tests fail a function that calls the operation it is asked to implement "
    "(cnnlib's version or PyTorch's), so write it from basic tensor operations. "
    "Do not change the locked cells; run *Restart & Run All* before you submit."
)


def _nb_meta(name: str, kind: str) -> dict:
    return {"grade_id": name, "schema_version": 3, "task": False, **{
        "setup": {"grade": False, "locked": True, "solution": False},
        "solution": {"grade": False, "locked": False, "solution": True},
        "tests": {"grade": True, "locked": True, "solution": False},
    }[kind]}


def md(text: str) -> tuple:
    return ("md", text.strip("\n"))


def setup(code: str) -> tuple:
    return ("setup", code.strip("\n"))


def solution(grade_id: str, code: str) -> tuple:
    return ("solution", code.strip("\n"), grade_id)


def tests(grade_id: str, points: int, code: str) -> tuple:
    return ("tests", code.strip("\n"), grade_id, points)


def hidden(grade_id: str, points: int, name: str, what: str) -> tuple:
    code = (
        f"# Hidden tests ({points} points): {what}\n"
        "### BEGIN HIDDEN TESTS\n"
        "from cnnlib import grading\n"
        f"grading.check({name!r}, {name})\n"
        "### END HIDDEN TESTS"
    )
    return ("tests", code, grade_id, points)


def build(cells: list[tuple]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    seen: set[str] = set()
    for k, cell in enumerate(cells):
        kind, source = cell[0], cell[1]
        if kind == "md":
            c = nbformat.v4.new_markdown_cell(source)
            c.id = f"md-{k:02d}"
        else:
            c = nbformat.v4.new_code_cell(source)
            grade_id = "setup" if kind == "setup" else cell[2]
            assert grade_id not in seen, f"duplicate grade_id {grade_id}"
            seen.add(grade_id)
            c.id = grade_id
            c.metadata["nbgrader"] = _nb_meta(grade_id, kind)
            if kind == "tests":
                assert cell[3] > 0, grade_id
                c.metadata["nbgrader"]["points"] = cell[3]
            if kind in ("setup", "tests"):
                c.metadata["deletable"] = False
                c.metadata["editable"] = False
        nb.cells.append(c)
    return nb


# ============================================================================================
A01 = [
    md("""
# Assignment 1: from fully-connected layers to convolutions

This assignment goes with the chapter [From fully-connected layers to convolutions](../../book/01_fc_to_conv.md). Recap: a
fully-connected layer on an image connects every pixel to every hidden unit, so its parameter count grows
with the image size: a 300x300 image into 10,000 hidden units already needs about a billion weights.
A convolution keeps two ideas, *locality* (each output looks at a small window) and *translation
invariance* (every window uses the same kernel), and its parameter count depends only on the kernel and
the channels. A convolution is still a linear map, so it is a matrix: a very sparse one, whose rows all
repeat the same few kernel entries. You will count parameters and then build that matrix.
"""),
    md(RULES),
    setup("""
import math

import torch

from cnnlib import corr2d, grading  # corr2d: the reference cross-correlation, used by the tests below
"""),
    md("""
## 1. Parameter counts

Write `fc_param_count(in_features, out_features, bias=True)`: the number of parameters of a
fully-connected layer. `in_features` is an int, or an image shape such as `(300, 300)` or `(3, 32, 32)`
that the layer sees flattened. There is one weight per (input, output) pair and, when `bias` is true,
one bias per output. Then write `conv_param_count(in_channels, out_channels, kernel_size, bias=True)`
for a convolution layer with `out_channels` kernels of shape `(in_channels, kh, kw)`; `kernel_size` is an
int `k` (meaning `(k, k)`) or a pair `(kh, kw)`. Both return an `int`.
"""),
    solution("fc_param_count", """
def fc_param_count(in_features, out_features, bias=True):
    \"\"\"Parameters of a fully-connected layer from in_features (an int or a shape) to out_features.\"\"\"
    ### BEGIN SOLUTION
    n_in = math.prod(in_features) if isinstance(in_features, (tuple, list)) else in_features
    return n_in * out_features + (out_features if bias else 0)
    ### END SOLUTION
"""),
    tests("test_fc_param_count", 1, """
assert fc_param_count(784, 256) == 200_960, f"784 -> 256 with bias: expected 200,960, got {fc_param_count(784, 256)}"
assert fc_param_count(784, 256, bias=False) == 200_704, "784 -> 256 without bias: expected 200,704"
assert fc_param_count((300, 300), 10_000) == 900_010_000, "a 300x300 image into 10,000 units: expected 900,010,000"
assert isinstance(fc_param_count(10, 10), int), "fc_param_count should return an int"
print("fc_param_count passes the visible tests")
"""),
    hidden("hidden_fc_param_count", 1, "fc_param_count", "more layer sizes, image shapes, with and without bias."),
    solution("conv_param_count", """
def conv_param_count(in_channels, out_channels, kernel_size, bias=True):
    \"\"\"Parameters of a convolution layer: out_channels kernels of shape (in_channels, kh, kw), plus biases.\"\"\"
    ### BEGIN SOLUTION
    kh, kw = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
    return out_channels * in_channels * kh * kw + (out_channels if bias else 0)
    ### END SOLUTION
"""),
    tests("test_conv_param_count", 1, """
assert conv_param_count(1, 6, 5) == 156, f"LeNet's first convolution: expected 156, got {conv_param_count(1, 6, 5)}"
assert conv_param_count(6, 16, 5) == 2416, f"LeNet's second convolution: expected 2,416, got {conv_param_count(6, 16, 5)}"
assert conv_param_count(3, 64, (3, 5), bias=False) == 2880, "3 -> 64 channels, a 3x5 kernel, no bias: expected 2,880"
print("conv_param_count passes the visible tests")
"""),
    hidden("hidden_conv_param_count", 1, "conv_param_count", "more channel counts and kernel sizes (ints and pairs)."),
    md("""
## 2. A convolution is a matrix

Write `conv_as_matrix(K, input_shape)`. For a kernel `K` of shape `(kh, kw)` and inputs of shape
`input_shape = (H, W)`, return the matrix `W` of shape `((H - kh + 1) * (W - kw + 1), H * W)` such that
`W @ X.flatten()` equals `corr2d(X, K).flatten()` for every `X` of shape `(H, W)`.

Both flattenings are row-major: output pixel `(i, j)` is row `i * (W - kw + 1) + j`, and input pixel
`(r, c)` is column `r * W + c`. Output pixel `(i, j)` is the sum of `X[i + a, j + b] * K[a, b]`, so its row
holds `K[a, b]` in the column of input pixel `(i + a, j + b)` and zeros elsewhere. Build `W` on `K`'s device
and in `K`'s dtype (for example with `K.new_zeros(...)`), from the entries of `K`: do not call a
convolution (neither `corr2d` nor PyTorch's).

Count the nonzero entries of `W` and compare them with `W.numel()`: that ratio is what weight sharing and
locality save.
"""),
    solution("conv_as_matrix", """
def conv_as_matrix(K, input_shape):
    \"\"\"The matrix of corr2d(., K) on inputs of shape input_shape = (H, W).

    Returns: W of shape ((H - kh + 1) * (W - kw + 1), H * W), on K's device and dtype.
    \"\"\"
    ### BEGIN SOLUTION
    H, W = input_shape
    kh, kw = K.shape
    Ho, Wo = H - kh + 1, W - kw + 1
    M = K.new_zeros((Ho * Wo, H * W))
    for i in range(Ho):
        for j in range(Wo):
            for a in range(kh):
                for b in range(kw):
                    M[i * Wo + j, (i + a) * W + (j + b)] = K[a, b]
    return M
    ### END SOLUTION
"""),
    tests("test_conv_as_matrix", 2, """
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
M = conv_as_matrix(K, (3, 4))
assert isinstance(M, torch.Tensor), f"conv_as_matrix should return a tensor, got {type(M).__name__}"
assert M.shape == (6, 12), f"K (2, 2) on (3, 4) inputs: expected shape (6, 12), got {tuple(M.shape)}"
assert torch.equal(M[0], torch.tensor([0.0, 1, 0, 0, 2, 3, 0, 0, 0, 0, 0, 0])), f"row 0 is wrong: {M[0]}"
X = torch.arange(12.0).reshape(3, 4)
assert torch.allclose(M @ X.flatten(), corr2d(X, K).flatten()), "M @ X.flatten() differs from corr2d(X, K).flatten()"
print(f"conv_as_matrix passes the visible tests; {int((M != 0).sum())} of {M.numel()} entries are nonzero")
"""),
    hidden("hidden_conv_as_matrix", 3, "conv_as_matrix",
           "random kernels and input shapes (1x1 kernels, kernels as large as the input), float32 and float64, every device."),
]

# ============================================================================================
A02 = [
    md("""
# Assignment 2: cross-correlation, convolution, and learning a kernel

This assignment goes with the chapter [Cross-correlation](../../book/02_cross_correlation.md). Recap: a convolution layer computes a
*cross-correlation*: the kernel `K` of shape `(kh, kw)` slides over the input `X` of shape `(H, W)`, and each
output pixel is the sum of the elementwise product of the kernel with the window under it,
`Y[i, j] = sum over a, b of X[i + a, j + b] * K[a, b]`. The output has shape `(H - kh + 1, W - kw + 1)`.
A true *convolution* flips the kernel on both axes first; since a layer learns its kernel, the two are
interchangeable, and deep learning libraries compute cross-correlations. A layer adds a bias and learns
`K` from data by gradient descent, which you will do at the end.
"""),
    md(RULES),
    setup("""
import torch
from torch import nn

from cnnlib import grading
"""),
    md("""
## 1. `corr2d`

Write `corr2d(X, K)` with two Python loops over the output pixels. Create the output with the input's dtype
and device (`X.new_zeros(shape)` does both). Do not use `torch.nn.functional.conv2d`, `nn.Conv2d`,
`F.unfold` or `cnnlib.corr2d`.
"""),
    solution("corr2d", """
def corr2d(X, K):
    \"\"\"2-D cross-correlation of X (H, W) with the kernel K (kh, kw); returns (H - kh + 1, W - kw + 1).\"\"\"
    ### BEGIN SOLUTION
    h, w = K.shape
    Y = X.new_zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i : i + h, j : j + w] * K).sum()
    return Y
    ### END SOLUTION
"""),
    tests("test_corr2d", 2, """
X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
Y = corr2d(X, K)
assert isinstance(Y, torch.Tensor), f"corr2d should return a tensor, got {type(Y).__name__}"
assert Y.shape == (2, 2), f"X (3, 3) and K (2, 2) should give shape (2, 2), got {tuple(Y.shape)}"
assert torch.allclose(Y, torch.tensor([[19.0, 25.0], [37.0, 43.0]])), f"expected [[19, 25], [37, 43]], got {Y}"

# A vertical edge detector: K = [1, -1] marks where the image changes from 1 to 0 (1) and back (-1).
X = torch.ones((6, 8))
X[:, 2:6] = 0
Y = corr2d(X, torch.tensor([[1.0, -1.0]]))
assert Y.shape == (6, 7), f"X (6, 8) and K (1, 2) should give shape (6, 7), got {tuple(Y.shape)}"
assert torch.equal(Y[0], torch.tensor([0.0, 1, 0, 0, 0, -1, 0])), f"row 0 should be [0, 1, 0, 0, 0, -1, 0], got {Y[0]}"
assert corr2d(X.double(), torch.tensor([[1.0, -1.0]], dtype=torch.float64)).dtype == torch.float64, \\
    "corr2d of float64 inputs should return float64"
print("corr2d passes the visible tests")
"""),
    hidden("hidden_corr2d", 3, "corr2d",
           "random inputs and kernels of many shapes (1x1 kernels, kernels as large as the input, non-square), "
           "float32 and float64, every device."),
    md("""
## 2. A convolution layer

Complete the `forward` method of `Conv2D`: it returns the cross-correlation of its input `X` (shape
`(H, W)`) with `self.weight`, plus `self.bias`. Use your `corr2d`, and keep the output connected to the
parameters so that autograd can compute their gradients.
"""),
    solution("Conv2D", """
class Conv2D(nn.Module):
    \"\"\"A single-channel convolution layer: a learnable (kh, kw) kernel and a scalar bias.\"\"\"

    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, X):
        ### BEGIN SOLUTION
        return corr2d(X, self.weight) + self.bias
        ### END SOLUTION
"""),
    tests("test_Conv2D", 1, """
X = torch.ones((6, 8))
X[:, 2:6] = 0
layer = Conv2D((1, 2))
with torch.no_grad():
    layer.weight.copy_(torch.tensor([[1.0, -1.0]]))
    layer.bias.fill_(0.5)
Y = layer(X)
assert Y.shape == (6, 7), f"Conv2D((1, 2)) on X (6, 8) should give shape (6, 7), got {tuple(Y.shape)}"
assert torch.allclose(Y[0], torch.tensor([0.5, 1.5, 0.5, 0.5, 0.5, -0.5, 0.5])), f"row 0 is wrong: {Y[0]}"
Y.sum().backward()
assert layer.weight.grad is not None, "no gradient reached layer.weight: does forward use self.weight?"
assert torch.allclose(layer.bias.grad, torch.tensor([42.0])), f"d(sum Y)/d(bias) should be 42, got {layer.bias.grad}"
print("Conv2D passes the visible tests")
"""),
    hidden("hidden_Conv2D", 2, "Conv2D",
           "outputs and parameter gradients on random inputs, kernels and biases, float32 and float64, every device."),
    md("""
## 3. `convolve2d`

Write `convolve2d(X, K)`, the true convolution: `Y[i, j] = sum over a, b of X[i + a, j + b] * K[kh-1-a, kw-1-b]`,
i.e. the cross-correlation with the kernel flipped on both axes (`torch.flip` flips a tensor). You may call
your `corr2d`.
"""),
    solution("convolve2d", """
def convolve2d(X, K):
    \"\"\"2-D convolution of X (H, W) with K (kh, kw); returns (H - kh + 1, W - kw + 1).\"\"\"
    ### BEGIN SOLUTION
    return corr2d(X, torch.flip(K, dims=(0, 1)))
    ### END SOLUTION
"""),
    tests("test_convolve2d", 1, """
X = torch.arange(9.0).reshape(3, 3)
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
Y = convolve2d(X, K)
assert Y.shape == (2, 2), f"expected shape (2, 2), got {tuple(Y.shape)}"
assert torch.allclose(Y, torch.tensor([[5.0, 11.0], [23.0, 29.0]])), f"expected [[5, 11], [23, 29]], got {Y}"
print("convolve2d passes the visible tests")
"""),
    hidden("hidden_convolve2d", 2, "convolve2d", "random inputs and kernels of many shapes, float32 and float64, every device."),
    md("""
## 4. Learning a kernel from data

Given an input `X` and the output `Y = corr2d(X, K_true)` of an unknown kernel of shape `kernel_size`, write
`learn_kernel(X, Y, kernel_size, num_steps, lr)` that recovers a kernel by gradient descent:

- start from a kernel of zeros (or small random values) of shape `kernel_size`, on `X`'s device and in `X`'s
  dtype, with `requires_grad=True`;
- repeat `num_steps` times: compute the loss `((corr2d(X, K) - Y) ** 2).sum()` (the *sum*, not the mean, of
  the squared errors), compute its gradient with `backward()`, and update `K` by `-lr` times the gradient
  (inside `torch.no_grad()`), then reset the gradient;
- return the learned kernel, detached from the graph (`K.detach()`).

The hidden tests check that the returned kernel reproduces `Y`, and that it is learned step by step: a
closed-form solution (`torch.linalg.lstsq` and friends) does not count.
"""),
    solution("learn_kernel", """
def learn_kernel(X, Y, kernel_size, num_steps, lr):
    \"\"\"Gradient descent on the summed squared error of corr2d(X, K) against Y; returns K (kh, kw).\"\"\"
    ### BEGIN SOLUTION
    K = torch.zeros(kernel_size, dtype=X.dtype, device=X.device, requires_grad=True)
    for _ in range(num_steps):
        l = ((corr2d(X, K) - Y) ** 2).sum()
        l.backward()
        with torch.no_grad():
            K -= lr * K.grad
        K.grad.zero_()
    return K.detach()
    ### END SOLUTION
"""),
    tests("test_learn_kernel", 1, """
X = torch.ones((6, 8))
X[:, 2:6] = 0
Y = corr2d(X, torch.tensor([[1.0, -1.0]]))
K = learn_kernel(X, Y, (1, 2), num_steps=30, lr=3e-2)
assert isinstance(K, torch.Tensor) and K.shape == (1, 2), f"expected a tensor of shape (1, 2), got {K!r}"
assert torch.allclose(K, torch.tensor([[1.0, -1.0]]), atol=1e-3), f"expected about [[1, -1]], got {K}"
print(f"learned kernel: {K}")
"""),
    hidden("hidden_learn_kernel", 3, "learn_kernel",
           "a random problem, float32 and float64, every device; the fit must come from num_steps gradient steps."),
]

# ============================================================================================
A03 = [
    md("""
# Assignment 3: padding and stride

This assignment goes with the chapter [Padding and stride](../../book/03_padding_stride.md). Recap: a `k`-wide kernel shrinks an `n`-wide
input to `n - k + 1`. *Padding* adds `p` rows or columns of zeros on each side, so the output grows to
`n + 2p - k + 1` (with `p = (k - 1) / 2` for odd `k`, the size is kept). A *stride* `s` moves the window `s`
steps at a time, dividing the output size by about `s`: in general the output size is
`(n + 2p - k) // s + 1` on each axis. Stacked layers see more of the input: the *receptive field* of an
output unit grows with every layer, and faster after strided ones.
"""),
    md(RULES),
    setup("""
import torch

from cnnlib import grading
"""),
    md("""
## 1. Output shapes

Write `conv_output_shape(input_size, kernel_size, padding=0, stride=1)`: `(n + 2*p - k) // s + 1`. Each
argument is an int, or a pair `(height, width)`. Return an `int` when all four are ints, and a tuple of two
ints (height, width) when at least one of them is a pair (an int then applies to both axes).
"""),
    solution("conv_output_shape", """
def conv_output_shape(input_size, kernel_size, padding=0, stride=1):
    \"\"\"Output size of a window of size kernel_size sliding over input_size with padding and stride.\"\"\"
    ### BEGIN SOLUTION
    args = (input_size, kernel_size, padding, stride)
    n, k, p, s = (tuple(v) if isinstance(v, (tuple, list)) else (v, v) for v in args)
    out = tuple((n[i] + 2 * p[i] - k[i]) // s[i] + 1 for i in range(2))
    return out if any(isinstance(v, (tuple, list)) for v in args) else out[0]
    ### END SOLUTION
"""),
    tests("test_conv_output_shape", 1, """
assert conv_output_shape(8, 3) == 6, f"8 with a 3-wide kernel: expected 6, got {conv_output_shape(8, 3)}"
assert conv_output_shape(8, 3, padding=1) == 8, "padding 1 keeps 8 with a 3-wide kernel"
assert conv_output_shape(8, 3, padding=1, stride=2) == 4, "stride 2 halves it"
assert conv_output_shape((28, 28), 5, padding=2) == (28, 28), "LeNet's first layer keeps 28x28"
assert conv_output_shape(8, (3, 5), padding=(0, 1), stride=(3, 4)) == (2, 2), "per-axis pairs"
print("conv_output_shape passes the visible tests")
"""),
    hidden("hidden_conv_output_shape", 2, "conv_output_shape", "more sizes, with ints and pairs."),
    md("""
## 2. Padding

Write `pad2d(X, padding)`: `X` has shape `(..., H, W)` (two or more dimensions); return it with `ph` rows of
zeros added above and below and `pw` columns of zeros left and right, shape `(..., H + 2*ph, W + 2*pw)`.
`padding` is an int `p` (meaning `(p, p)`) or a pair `(ph, pw)`. Create the result with `X.new_zeros` and copy
`X` into its middle; do not use `torch.nn.functional.pad` or `nn.ZeroPad2d`.
"""),
    solution("pad2d", """
def pad2d(X, padding):
    \"\"\"Zero-pad the last two dimensions of X: (..., H, W) -> (..., H + 2*ph, W + 2*pw).\"\"\"
    ### BEGIN SOLUTION
    ph, pw = padding if isinstance(padding, (tuple, list)) else (padding, padding)
    H, W = X.shape[-2:]
    Y = X.new_zeros((*X.shape[:-2], H + 2 * ph, W + 2 * pw))
    Y[..., ph : ph + H, pw : pw + W] = X
    return Y
    ### END SOLUTION
"""),
    tests("test_pad2d", 1, """
Y = pad2d(torch.ones((2, 3)), 1)
assert Y.shape == (4, 5), f"(2, 3) padded by 1 should have shape (4, 5), got {tuple(Y.shape)}"
assert Y.sum() == 6 and Y[0].sum() == 0 and Y[:, 0].sum() == 0, f"expected ones in the middle, zeros around:\\n{Y}"
Y = pad2d(torch.ones((3, 2, 3)), (0, 2))
assert Y.shape == (3, 2, 7), f"(3, 2, 3) padded by (0, 2) should have shape (3, 2, 7), got {tuple(Y.shape)}"
print("pad2d passes the visible tests")
"""),
    hidden("hidden_pad2d", 2, "pad2d", "random inputs, paddings on one or both axes, float32 and float64, every device."),
    md("""
## 3. Cross-correlation with padding and stride

Write `corr2d_padded(X, K, padding=0, stride=1)` for `X` of shape `(H, W)` and `K` of shape `(kh, kw)`:
pad `X` (with your `pad2d`), then slide the kernel with steps of `sh` rows and `sw` columns. `padding` and
`stride` are ints or pairs. The output has shape `conv_output_shape((H, W), (kh, kw), padding, stride)`,
and output pixel `(i, j)` is the window whose top-left corner is at `(i * sh, j * sw)` in the padded input.
Do not use PyTorch's convolutions.
"""),
    solution("corr2d_padded", """
def corr2d_padded(X, K, padding=0, stride=1):
    \"\"\"Cross-correlation of X (H, W) with K (kh, kw), zero padding and stride; returns (H', W').\"\"\"
    ### BEGIN SOLUTION
    sh, sw = stride if isinstance(stride, (tuple, list)) else (stride, stride)
    Xp = pad2d(X, padding)
    kh, kw = K.shape
    Ho, Wo = (Xp.shape[0] - kh) // sh + 1, (Xp.shape[1] - kw) // sw + 1
    Y = X.new_zeros((Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            Y[i, j] = (Xp[i * sh : i * sh + kh, j * sw : j * sw + kw] * K).sum()
    return Y
    ### END SOLUTION
"""),
    tests("test_corr2d_padded", 2, """
X = torch.arange(9.0).reshape(3, 3)
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
assert torch.allclose(corr2d_padded(X, K), torch.tensor([[19.0, 25.0], [37.0, 43.0]])), "no padding, stride 1"
Y = corr2d_padded(X, K, padding=1, stride=2)
assert Y.shape == (2, 2), f"padding 1, stride 2: expected shape (2, 2), got {tuple(Y.shape)}"
assert torch.allclose(Y, torch.tensor([[0.0, 8.0], [21.0, 43.0]])), f"expected [[0, 8], [21, 43]], got {Y}"
Y = corr2d_padded(X, K, padding=(1, 0), stride=(2, 1))
assert torch.allclose(Y, torch.tensor([[3.0, 8.0], [37.0, 43.0]])), f"padding (1, 0), stride (2, 1): got {Y}"
assert corr2d_padded(torch.rand(8, 8), torch.rand(3, 3), padding=1).shape == (8, 8), "padding 1 keeps 8x8 with a 3x3 kernel"
print("corr2d_padded passes the visible tests")
"""),
    hidden("hidden_corr2d_padded", 3, "corr2d_padded",
           "random inputs with strides larger than the kernel, padding on one axis only, non-square shapes, "
           "float32 and float64, every device."),
    md("""
## 4. Receptive fields

Write `receptive_field(layers)`: `layers` is a list of `(kernel, stride)` pairs, first layer first; return
the width of the input region that one unit of the last layer sees. Start from `r = 1` and a *jump* of 1
(the distance in input pixels between neighbouring units); each layer adds `(kernel - 1) * jump` to `r` and
then multiplies the jump by its stride. No layers: 1.
"""),
    solution("receptive_field", """
def receptive_field(layers):
    \"\"\"Receptive field of one output unit after the (kernel, stride) layers, first layer first.\"\"\"
    ### BEGIN SOLUTION
    r, jump = 1, 1
    for k, s in layers:
        r += (k - 1) * jump
        jump *= s
    return r
    ### END SOLUTION
"""),
    tests("test_receptive_field", 1, """
assert receptive_field([]) == 1, "no layers: a unit sees 1 pixel"
assert receptive_field([(3, 1), (3, 1)]) == 5, f"two 3x3 convolutions see 5x5, got {receptive_field([(3, 1), (3, 1)])}"
assert receptive_field([(3, 2), (3, 1)]) == 7, "a stride-2 layer first: 3 + 2*2 = 7"
print("receptive_field passes the visible tests")
"""),
    hidden("hidden_receptive_field", 1, "receptive_field", "deeper stacks with strides."),
]

# ============================================================================================
A04 = [
    md("""
# Assignment 4: multiple input and output channels

This assignment goes with the chapter [Multiple input and output channels](../../book/04_channels.md). Recap: a color image
has 3 channels, and hidden layers have many. With `C` input channels the kernel has shape `(C, kh, kw)`: each
channel is cross-correlated with its own kernel slice and the results are *summed* into one output channel.
For `C_out` output channels there is one such kernel per output channel, shape `(C_out, C, kh, kw)`. A 1x1
convolution mixes channels at every pixel independently: it is a fully-connected layer applied to each
pixel's vector of channels, i.e. one matrix product.
"""),
    md(RULES),
    setup("""
import torch

from cnnlib import corr2d, grading  # corr2d(X (H, W), K (kh, kw)): the reference single-channel cross-correlation
"""),
    md("""
## 1. Several input channels

Write `corr2d_multi_in(X, K)` for `X` of shape `(C, H, W)` and `K` of shape `(C, kh, kw)`: the sum over the
channels `c` of `corr2d(X[c], K[c])`, shape `(H - kh + 1, W - kw + 1)`. Use the `corr2d` imported above.
"""),
    solution("corr2d_multi_in", """
def corr2d_multi_in(X, K):
    \"\"\"X (C, H, W), K (C, kh, kw) -> (H - kh + 1, W - kw + 1): per-channel cross-correlations, summed.\"\"\"
    ### BEGIN SOLUTION
    return sum(corr2d(x, k) for x, k in zip(X, K))
    ### END SOLUTION
"""),
    tests("test_corr2d_multi_in", 1, """
X = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
                  [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
K = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
Y = corr2d_multi_in(X, K)
assert Y.shape == (2, 2), f"X (2, 3, 3) and K (2, 2, 2) should give shape (2, 2), got {tuple(Y.shape)}"
assert torch.allclose(Y, torch.tensor([[56.0, 72.0], [104.0, 120.0]])), f"expected [[56, 72], [104, 120]], got {Y}"
print("corr2d_multi_in passes the visible tests")
"""),
    hidden("hidden_corr2d_multi_in", 2, "corr2d_multi_in",
           "random inputs with 1 to 4 channels, float32 and float64, every device."),
    md("""
## 2. Several output channels

Write `corr2d_multi_in_out(X, K)` for `X` of shape `(C, H, W)` and `K` of shape `(C_out, C, kh, kw)`: output
channel `o` is `corr2d_multi_in(X, K[o])`, and the result has shape `(C_out, H - kh + 1, W - kw + 1)`
(`torch.stack` stacks tensors along a new dimension).
"""),
    solution("corr2d_multi_in_out", """
def corr2d_multi_in_out(X, K):
    \"\"\"X (C, H, W), K (C_out, C, kh, kw) -> (C_out, H - kh + 1, W - kw + 1).\"\"\"
    ### BEGIN SOLUTION
    return torch.stack([corr2d_multi_in(X, k) for k in K], dim=0)
    ### END SOLUTION
"""),
    tests("test_corr2d_multi_in_out", 1, """
K3 = torch.stack((K, K + 1, K + 2), dim=0)
Y = corr2d_multi_in_out(X, K3)
assert Y.shape == (3, 2, 2), f"K of shape (3, 2, 2, 2) should give 3 output channels of (2, 2), got {tuple(Y.shape)}"
expected = torch.tensor([[[56.0, 72.0], [104.0, 120.0]], [[76.0, 100.0], [148.0, 172.0]], [[96.0, 128.0], [192.0, 224.0]]])
assert torch.allclose(Y, expected), f"expected\\n{expected}\\ngot\\n{Y}"
print("corr2d_multi_in_out passes the visible tests")
"""),
    hidden("hidden_corr2d_multi_in_out", 2, "corr2d_multi_in_out",
           "random inputs and kernels with several input and output channels, float32 and float64, every device."),
    md("""
## 3. The 1x1 convolution as a matrix product

Write `corr2d_multi_in_out_1x1(X, K)` for `X` of shape `(C, H, W)` and `K` of shape `(C_out, C, 1, 1)`,
returning `(C_out, H, W)`, with **one** matrix product and no loop: reshape `X` to `(C, H*W)` (each column a
pixel) and `K` to `(C_out, C)`, multiply, and reshape the product back.
"""),
    solution("corr2d_multi_in_out_1x1", """
def corr2d_multi_in_out_1x1(X, K):
    \"\"\"X (C, H, W), K (C_out, C, 1, 1) -> (C_out, H, W), as one matrix product.\"\"\"
    ### BEGIN SOLUTION
    c_i, h, w = X.shape
    c_o = K.shape[0]
    Y = K.reshape(c_o, c_i) @ X.reshape(c_i, h * w)  # (C_out, H*W)
    return Y.reshape(c_o, h, w)
    ### END SOLUTION
"""),
    tests("test_corr2d_multi_in_out_1x1", 1, """
X = torch.normal(0, 1, (3, 3, 3))
K = torch.normal(0, 1, (2, 3, 1, 1))
Y1 = corr2d_multi_in_out_1x1(X, K)
Y2 = corr2d_multi_in_out(X, K)
assert Y1.shape == (2, 3, 3), f"expected shape (2, 3, 3), got {tuple(Y1.shape)}"
assert torch.allclose(Y1, Y2, atol=1e-5), "the 1x1 matrix product differs from corr2d_multi_in_out"
print("corr2d_multi_in_out_1x1 passes the visible tests")
"""),
    hidden("hidden_corr2d_multi_in_out_1x1", 2, "corr2d_multi_in_out_1x1",
           "random inputs and kernels, float32 and float64, every device."),
]

# ============================================================================================
A05 = [
    md("""
# Assignment 5: pooling

This assignment goes with the chapter [Pooling](../../book/05_pooling.md). Recap: a pooling layer slides a window over each channel,
like a convolution, but has no kernel: it outputs the window's maximum (*max pooling*) or its mean (*average
pooling*). It makes the representation less sensitive to small shifts and, with a stride, downsamples it.
Each channel is pooled on its own, so the number of channels is unchanged. Padding and stride work as for
convolutions; by default the stride equals the window size, so windows do not overlap. *Global* average
pooling averages each whole channel down to one number.
"""),
    md(RULES),
    setup("""
import torch

from cnnlib import grading
"""),
    md("""
## 1. `pool2d`

Write `pool2d(X, pool_size, stride=None, padding=0, mode='max')`:

- `X` has shape `(H, W)` or `(C, H, W)`; every channel is pooled on its own (index with `X[..., rows, cols]`
  to handle both at once);
- `pool_size`, `stride` and `padding` are ints or pairs; `stride=None` means `stride = pool_size`;
- `mode` is `'max'` or `'avg'`;
- padding adds `ph` rows and `pw` columns on each side: for `'max'` they are `-inf` (so padding is never the
  maximum), for `'avg'` they are zeros that count in the mean (the window's mean is its sum divided by
  `kh * kw`, as PyTorch's default `count_include_pad=True`);
- the output has shape `(..., (H + 2*ph - kh) // sh + 1, (W + 2*pw - kw) // sw + 1)`.

Loops over the output pixels are fine. Do not use PyTorch's pooling functions or layers.
"""),
    solution("pool2d", """
def pool2d(X, pool_size, stride=None, padding=0, mode="max"):
    \"\"\"Max or average pooling of X (H, W) or (C, H, W), each channel on its own.\"\"\"
    ### BEGIN SOLUTION
    def as_pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    kh, kw = as_pair(pool_size)
    sh, sw = (kh, kw) if stride is None else as_pair(stride)
    ph, pw = as_pair(padding)
    H, W = X.shape[-2:]
    Xp = X.new_full((*X.shape[:-2], H + 2 * ph, W + 2 * pw), float("-inf") if mode == "max" else 0.0)
    Xp[..., ph : ph + H, pw : pw + W] = X
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    Y = X.new_zeros((*X.shape[:-2], Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            window = Xp[..., i * sh : i * sh + kh, j * sw : j * sw + kw]
            Y[..., i, j] = window.amax(dim=(-2, -1)) if mode == "max" else window.mean(dim=(-2, -1))
    return Y
    ### END SOLUTION
"""),
    tests("test_pool2d", 2, """
X = torch.arange(9.0).reshape(3, 3)
assert torch.equal(pool2d(X, 2, stride=1), torch.tensor([[4.0, 5.0], [7.0, 8.0]])), f"max, stride 1: got {pool2d(X, 2, stride=1)}"
assert torch.allclose(pool2d(X, 2, stride=1, mode="avg"), torch.tensor([[2.0, 3.0], [5.0, 6.0]])), "avg, stride 1"
assert pool2d(X, 2).shape == (1, 1), f"the stride defaults to the window: (3, 3) pooled by 2 gives (1, 1), got {tuple(pool2d(X, 2).shape)}"
X = torch.arange(16.0).reshape(1, 4, 4)
Y = pool2d(X, 3, padding=1, stride=2)
assert Y.shape == (1, 2, 2), f"expected shape (1, 2, 2), got {tuple(Y.shape)}"
assert torch.equal(Y, torch.tensor([[[5.0, 7.0], [13.0, 15.0]]])), f"max with padding 1, stride 2: got {Y}"
X = torch.cat((X, X + 1), dim=0)
assert pool2d(X, 3, padding=1, stride=2).shape == (2, 2, 2), "two channels in, two channels out"
print("pool2d passes the visible tests")
"""),
    hidden("hidden_pool2d", 4, "pool2d",
           "max and avg on random inputs with and without channels, non-square windows, strides larger than the "
           "window, padding on one axis only, float32 and float64, every device."),
    md("""
## 2. Global average pooling

Write `global_avg_pool2d(X)` for `X` of shape `(N, C, H, W)` or `(C, H, W)`: the mean of each channel over
all its pixels, keeping the two spatial dimensions with size 1, so the result has shape `(N, C, 1, 1)` or
`(C, 1, 1)`.
"""),
    solution("global_avg_pool2d", """
def global_avg_pool2d(X):
    \"\"\"Average each channel of X (N, C, H, W) or (C, H, W) over its pixels: (N, C, 1, 1) or (C, 1, 1).\"\"\"
    ### BEGIN SOLUTION
    return X.mean(dim=(-2, -1), keepdim=True)
    ### END SOLUTION
"""),
    tests("test_global_avg_pool2d", 1, """
X = torch.arange(8.0).reshape(2, 2, 2)
Y = global_avg_pool2d(X)
assert Y.shape == (2, 1, 1), f"(2, 2, 2) should give (2, 1, 1), got {tuple(Y.shape)}"
assert torch.allclose(Y.flatten(), torch.tensor([1.5, 5.5])), f"expected channel means 1.5 and 5.5, got {Y.flatten()}"
assert global_avg_pool2d(torch.rand(4, 3, 5, 5)).shape == (4, 3, 1, 1), "a batch of 4 with 3 channels gives (4, 3, 1, 1)"
print("global_avg_pool2d passes the visible tests")
"""),
    hidden("hidden_global_avg_pool2d", 2, "global_avg_pool2d",
           "random batched and unbatched inputs, float32 and float64, every device."),
]

# ============================================================================================
A06 = [
    md("""
# Assignment 6: LeNet

This assignment goes with the chapter [LeNet](../../book/06_lenet.md). Recap: LeNet-5 stacks two
convolution blocks, each a 5x5 convolution, a sigmoid and a 2x2 average pooling with stride 2, and then three
fully-connected layers. On 28x28 inputs the first convolution pads by 2 so the size is kept; the channels go
1 -> 6 -> 16, the second block leaves 16 channels of 5x5, flattened to 400 features, and the dense layers map
400 -> 120 -> 84 -> 10 with sigmoids in between. Training it is a loop over mini-batches on a chosen device,
and evaluating it computes accuracy without gradients.
"""),
    md(RULES.replace(
        "The hidden tests fail a function that calls the operation it is asked to implement "
        "(cnnlib's version or PyTorch's), so write it from basic tensor operations. ",
        "Here you may use any of PyTorch's layers; the hidden tests fail a function that calls cnnlib's "
        "version of itself (`cnnlib.lenet`, `cnnlib.evaluate_accuracy`, `cnnlib.train_epoch`). ",
    )),
    setup("""
import torch
from torch import nn

from cnnlib import grading
"""),
    md("""
## 1. The network

Write `lenet()` returning the classic LeNet as one `nn.Sequential` of these layers, in this order (so the
hidden tests can read its layout): `nn.Conv2d(1, 6, kernel_size=5, padding=2)`, `nn.Sigmoid()`,
`nn.AvgPool2d(kernel_size=2, stride=2)`, `nn.Conv2d(6, 16, kernel_size=5)`, `nn.Sigmoid()`,
`nn.AvgPool2d(kernel_size=2, stride=2)`, `nn.Flatten()`, `nn.Linear(400, 120)`, `nn.Sigmoid()`,
`nn.Linear(120, 84)`, `nn.Sigmoid()`, `nn.Linear(84, 10)`. It has 61,706 parameters.
"""),
    solution("lenet", """
def lenet():
    \"\"\"The classic LeNet-5 for (N, 1, 28, 28) inputs; returns logits of shape (N, 10).\"\"\"
    ### BEGIN SOLUTION
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10),
    )
    ### END SOLUTION
"""),
    tests("test_lenet", 1, """
net = lenet()
X = torch.rand(2, 1, 28, 28)
for layer in net:
    X = layer(X)
    print(f"{layer.__class__.__name__:<10} output shape: {tuple(X.shape)}")
assert X.shape == (2, 10), f"LeNet maps (2, 1, 28, 28) to (2, 10), got {tuple(X.shape)}"
n_params = sum(p.numel() for p in net.parameters())
assert n_params == 61_706, f"the classic LeNet has 61,706 parameters, this one has {n_params:,}"
print("lenet passes the visible tests")
"""),
    hidden("hidden_lenet", 3, "lenet",
           "the layer sequence and its settings, and the outputs with given weights on every device."),
    md("""
## 2. Evaluation

Write `evaluate_accuracy(net, data_iter, device)`: the fraction (a Python `float`) of the examples in
`data_iter` whose largest logit is at the label's index. `data_iter` yields batches `(X, y)`, `X` of shape
`(N, ...)` and `y` of shape `(N,)`; the net is already on `device`, so move each batch there
(`X.to(device)`). Run the net in evaluation mode (`net.eval()`) and without gradients (`torch.no_grad()`),
and put the net back in the mode it was in before the call (`net.training` tells it).
"""),
    solution("evaluate_accuracy", """
def evaluate_accuracy(net, data_iter, device):
    \"\"\"Accuracy of net on the batches of data_iter, computed on device in eval mode without gradients.\"\"\"
    ### BEGIN SOLUTION
    was_training = net.training
    net.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for X, y in data_iter:
            X, y = X.to(device), y.to(device)
            correct += (net(X).argmax(dim=1) == y).sum().item()
            total += y.numel()
    net.train(was_training)
    return correct / total
    ### END SOLUTION
"""),
    tests("test_evaluate_accuracy", 1, """
# With the identity as its weight, this net's logits are its inputs: the predictions are 0, 1, 0, 1.
net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
with torch.no_grad():
    net[1].weight.copy_(torch.eye(2))
    net[1].bias.zero_()
batches = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])),
           (torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([1, 1]))]
acc = evaluate_accuracy(net, batches, torch.device("cpu"))
assert isinstance(acc, float), f"evaluate_accuracy should return a Python float, got {type(acc).__name__}"
assert acc == 0.75, f"3 of the 4 examples are right: expected 0.75, got {acc}"
assert net.training, "the net was in training mode before the call: evaluate_accuracy should restore that mode"
print("evaluate_accuracy passes the visible tests")
"""),
    hidden("hidden_evaluate_accuracy", 2, "evaluate_accuracy",
           "the value against the reference, eval mode, no gradients, the mode restored, batches on `device`."),
    md("""
## 3. One epoch of training

Write `train_epoch(net, train_iter, loss, optimizer, device)`: one pass over `train_iter` in training mode
(`net.train()`). For each batch, move it to `device`, compute the logits and the loss (`loss` returns the
batch's mean, as `nn.CrossEntropyLoss()` does), then `optimizer.zero_grad()`, `backward()`,
`optimizer.step()`. Return `(mean_loss, accuracy)` as two Python floats over the epoch: the mean loss per
*example* (weight each batch's mean loss by its size, since the last batch may be smaller) and the fraction
of examples classified correctly by the logits computed for the step.
"""),
    solution("train_epoch", """
def train_epoch(net, train_iter, loss, optimizer, device):
    \"\"\"One epoch of mini-batch training on device; returns (mean loss per example, training accuracy).\"\"\"
    ### BEGIN SOLUTION
    net.train()
    loss_sum, correct, total = 0.0, 0, 0
    for X, y in train_iter:
        X, y = X.to(device), y.to(device)
        y_hat = net(X)
        l = loss(y_hat, y)
        optimizer.zero_grad()
        l.backward()
        optimizer.step()
        loss_sum += l.item() * y.numel()
        correct += (y_hat.argmax(dim=1) == y).sum().item()
        total += y.numel()
    return loss_sum / total, correct / total
    ### END SOLUTION
"""),
    tests("test_train_epoch", 2, """
# A small separable problem: 3 classes of points around different centres, in batches of 16 (the last one 8).
torch.manual_seed(0)
centres = torch.tensor([[2.0, 0.0], [-2.0, 2.0], [0.0, -2.0]])
y_all = torch.arange(120) % 3
X_all = centres[y_all] + 0.5 * torch.randn(120, 2)
batches = [(X_all[i : i + 16], y_all[i : i + 16]) for i in range(0, 120, 16)]
device = torch.device("cpu")
net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
acc_before = evaluate_accuracy(net, batches, device)
assert isinstance(acc_before, float) and 0 <= acc_before <= 1, f"accuracy should be a float in [0, 1], got {acc_before!r}"
losses = []
for epoch in range(5):
    mean_loss, train_acc = train_epoch(net, batches, nn.CrossEntropyLoss(), optimizer, device)
    losses.append(mean_loss)
    print(f"epoch {epoch + 1}: loss {mean_loss:.3f}, train acc {train_acc:.3f}")
assert losses[-1] < losses[0], f"the loss should go down over 5 epochs: {losses}"
acc_after = evaluate_accuracy(net, batches, device)
assert acc_after > 0.9, f"the net should fit this easy problem: accuracy {acc_after:.3f}"
assert net.training, "evaluate_accuracy should leave a net that was training in training mode"
print("train_epoch passes the visible tests")
"""),
    hidden("hidden_train_epoch", 3, "train_epoch",
           "the loss, accuracy and updated weights against the reference, training mode, batches on `device`."),
]

ASSIGNMENTS = {
    "01_fc_to_conv": A01,
    "02_cross_correlation": A02,
    "03_padding_stride": A03,
    "04_channels": A04,
    "05_pooling": A05,
    "06_lenet": A06,
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, cells in ASSIGNMENTS.items():
        path = ROOT / name / f"{name}.ipynb"
        text = nbformat.writes(build(cells)) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run solutions/build.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
