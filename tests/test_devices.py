"""cnnlib.devices: the device list, the GPU-or-CPU choice that says when it falls back, and seeding."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import HAS_CUDA, needs_cuda

import cnnlib


def test_devices_starts_with_cpu_then_every_gpu():
    ds = cnnlib.devices()
    assert ds[0] == torch.device("cpu")
    assert ds[1:] == [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    assert all(isinstance(d, torch.device) for d in ds)


def test_devices_lists_each_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert cnnlib.devices() == [torch.device("cpu"), torch.device("cuda:0"), torch.device("cuda:1")]


def test_try_gpu_falls_back_to_cpu_with_a_notice(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # as on a machine without a GPU
    assert cnnlib.try_gpu() == torch.device("cpu")
    assert "try_gpu: no GPU cuda:0 (0 CUDA device(s) present); using cpu" in capsys.readouterr().out


def test_try_gpu_index_past_the_last_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cnnlib.try_gpu(0) == torch.device("cuda:0")
    assert capsys.readouterr().out == ""  # no notice when the GPU exists
    assert cnnlib.try_gpu(1) == torch.device("cpu")
    assert "no GPU cuda:1 (1 CUDA device(s) present)" in capsys.readouterr().out


@pytest.mark.skipif(HAS_CUDA, reason="checks the real fallback on a machine without a GPU")
def test_try_gpu_on_this_machine_without_gpu(capsys):
    assert cnnlib.try_gpu() == torch.device("cpu")
    assert "using cpu" in capsys.readouterr().out


@pytest.mark.gpu
@needs_cuda
def test_try_gpu_on_this_machine_with_gpu(capsys):
    d = cnnlib.try_gpu()
    assert d == torch.device("cuda:0") and capsys.readouterr().out == ""
    assert torch.ones(2, device=d).sum().item() == 2


def test_try_gpu_rejects_bad_index():
    with pytest.raises(ValueError, match="i must be a non-negative int, got -1"):
        cnnlib.try_gpu(-1)
    with pytest.raises(TypeError, match="i must be a non-negative int, got '0'"):
        cnnlib.try_gpu("0")


def draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), torch.randint(0, 10**9, ()).item()


@pytest.mark.parametrize("seed", [0, 42, 2**40])
def test_set_seed_makes_every_generator_repeat(seed):
    cnnlib.set_seed(seed)
    first = draws()
    cnnlib.set_seed(seed)
    assert draws() == first
    cnnlib.set_seed(seed + 1)
    assert draws() != first


@pytest.mark.gpu
@needs_cuda
def test_set_seed_seeds_the_gpu():
    cnnlib.set_seed(7)
    a = torch.rand(4, device="cuda")
    cnnlib.set_seed(7)
    assert torch.equal(torch.rand(4, device="cuda"), a)


def test_set_seed_rejects_non_int():
    with pytest.raises(TypeError, match="seed must be an int, got '1'"):
        cnnlib.set_seed("1")
    with pytest.raises(TypeError, match="seed must be an int, got 1.0"):
        cnnlib.set_seed(1.0)
