"""Everything the in-kernel grader relies on, captured when it is imported.

The grading pipeline imports the grader before any cell of a submission runs, so these are the
genuine torch, nn and standard-library objects: a notebook that later rebinds torch.allclose,
Tensor.to or cnnlib.corr2d changes nothing the grader uses. Tensors are read through the C-level
TensorBase descriptors, so a Tensor subclass cannot lie about its shape, dtype or device.
"""
from __future__ import annotations

import _posixsubprocess
import binascii
import contextlib
import copy
import io
import json.encoder
import math
import os
import signal
import subprocess
import sys
import traceback
import types
import warnings

import torch
import torch.utils._python_dispatch
from torch import nn

import cnnlib
import cnnlib.devices
import cnnlib.layers
import cnnlib.models
import cnnlib.ops
import cnnlib.shapes
import cnnlib.train

# cnnlib's modules themselves (cnnlib.train and cnnlib.devices are also the names of functions).
cnnlib_pkg = cnnlib
devices_mod = sys.modules["cnnlib.devices"]
layers = sys.modules["cnnlib.layers"]
models = sys.modules["cnnlib.models"]
ops = sys.modules["cnnlib.ops"]
shapes = sys.modules["cnnlib.shapes"]
training = sys.modules["cnnlib.train"]

Tensor = torch.Tensor
Parameter = nn.Parameter
Module = nn.Module
TB = torch._C.TensorBase
dtype_of = TB.__dict__["dtype"].__get__
device_of = TB.__dict__["device"].__get__
size = TB.size
dim = TB.dim
tolist = TB.tolist
detach = TB.detach
to = TB.to
requires_grad_of = TB.__dict__["requires_grad"].__get__
grad_of = TB.__dict__["grad"].__get__
backward = torch.Tensor.backward
numel = TB.numel
module_to = nn.Module.to
module_train = nn.Module.train
module_parameters = nn.Module.parameters
module_modules = nn.Module.modules
module_children = nn.Module.children
module_training = lambda m: object.__getattribute__(m, "training")  # noqa: E731 (one row of this table)
no_grad = torch.no_grad
is_grad_enabled = torch.is_grad_enabled
fork_rng = torch.random.fork_rng
manual_seed = torch.manual_seed
Generator = torch.Generator
randn = torch.randn
randint = torch.randint
rand = torch.rand
tensor = torch.tensor
eigvalsh = torch.linalg.eigvalsh
stack = torch.stack
deepcopy = copy.deepcopy
isfinite = math.isfinite
isnan = math.isnan
fsum = math.fsum
sqrt = math.sqrt
getprofile = sys.getprofile
setprofile = sys.setprofile
catch_warnings = warnings.catch_warnings
simplefilter = warnings.simplefilter
redirect_stderr = contextlib.redirect_stderr
redirect_stdout = contextlib.redirect_stdout
StringIO = io.StringIO
extract_tb = traceback.extract_tb
os_write = os.write
mod_setattr = types.ModuleType.__setattr__
mod_delattr = types.ModuleType.__delattr__
nn = types.SimpleNamespace(**{k: getattr(nn, k) for k in (
    "Conv2d", "Sigmoid", "AvgPool2d", "Flatten", "Linear", "Sequential", "ReLU", "CrossEntropyLoss")})
SGD = torch.optim.SGD
CPU = torch.device("cpu")
F64 = torch.float64
Library = torch.library.Library
frombuffer = torch.frombuffer
contiguous = TB.contiguous
numpy_of = TB.numpy
view_dtype = TB.view
is_floating_point = TB.is_floating_point
Size = torch.Size
device_type = torch.device
dtype_type = torch.dtype
# Serialising a reply without anything the notebook can rebind: the C base64 and JSON encoders, and
# tensors read with torch function and dispatch modes off.
b2a_base64 = binascii.b2a_base64
json_encoder = json.encoder.c_make_encoder(None, None, json.encoder.encode_basestring_ascii, None, ":", ",", False,
                                           False, False)
join = "".join
no_torch_function = torch._C.DisableTorchFunction
no_torch_dispatch = torch._C._DisableTorchDispatch
TorchDispatchMode = torch.utils._python_dispatch.TorchDispatchMode
dispatch_mode_stack = torch.utils._python_dispatch._get_current_dispatch_mode_stack
# An obscure aten operator the guard registers too, and calls to check that its block is still armed.
canary_op = torch.ops.aten._test_check_tensor.default._op
canary_name = "_test_check_tensor"
all_op_names = torch._C._dispatch_get_all_op_names
dispatch_library = torch._C._dispatch_library  # what torch.library.Library wraps: a registration handle
cuda_present = torch.cuda.is_available()
has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
# Process creation, refused while a probed function runs.
os_mod = os
posixsubprocess = _posixsubprocess
subprocess_mod = subprocess
SIGSTOP, SIGCONT = signal.SIGSTOP, signal.SIGCONT
getpid = os.getpid
listdir = os.listdir
io_open = io.open
