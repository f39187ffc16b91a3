"""cnnlib.layers and cnnlib.models: the from-scratch layers behave as torch's, and LeNet has the
documented structure, shapes and parameter count in both of its layer sources."""
from __future__ import annotations

import re

import pytest
import torch
from conftest import DEVICES, assert_close
from torch import nn

import cnnlib

CLASSIC_SHAPES = [
    (1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14),  # conv (padding 2), sigmoid, avg pool
    (1, 16, 10, 10), (1, 16, 10, 10), (1, 16, 5, 5),  # conv, sigmoid, avg pool
    (1, 400),  # flatten
    (1, 120), (1, 120), (1, 84), (1, 84), (1, 10),  # dense layers
]
MODERN_SHAPES = [
    (1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14),  # conv, batch norm, relu, max pool
    (1, 16, 10, 10), (1, 16, 10, 10), (1, 16, 10, 10), (1, 16, 5, 5),
    (1, 400),
    (1, 120), (1, 120), (1, 84), (1, 84), (1, 10),
]
CLASSIC_PARAMS = 61_706  # 156 + 2,416 + 48,120 + 10,164 + 850
BN_PARAMS = 2 * 6 + 2 * 16  # a scale and a shift per channel


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def randn(*shape, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Layers.
# --------------------------------------------------------------------------------------------


def test_teaching_Conv2D_is_corr2d_plus_bias():
    layer = cnnlib.Conv2D((2, 3))
    assert tuple(layer.weight.shape) == (2, 3) and tuple(layer.bias.shape) == (1,)
    with torch.no_grad():
        layer.bias.fill_(0.5)
    X = randn(5, 6, dtype=torch.float32)
    assert_close(layer(X), cnnlib.corr2d(X, layer.weight.detach()) + 0.5)


def test_teaching_Conv2D_learns_the_edge_kernel():
    # Vertical edges in a black-and-white image: the kernel [1, -1] marks them with +1 and -1,
    # and it is the only (kernel, bias) that does, so gradient descent must find it.
    cnnlib.set_seed(0)
    X = torch.ones(6, 8)
    X[:, 2:6] = 0
    Y = cnnlib.corr2d(X, torch.tensor([[1.0, -1.0]]))
    layer = cnnlib.Conv2D((1, 2))
    first = None
    for _ in range(200):
        loss = ((layer(X) - Y) ** 2).mean()
        first = loss.item() if first is None else first
        layer.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in layer.parameters():
                p -= 0.2 * p.grad
    assert loss.item() < 1e-8 < 1e-2 < first
    assert_close(layer.weight.detach(), torch.tensor([[1.0, -1.0]]), tol=1e-3)
    assert abs(layer.bias.item()) < 1e-3


@pytest.mark.parametrize(
    "args, kwargs",
    [((3, 4, 3), {}), ((2, 5, (3, 2)), dict(stride=2, padding=1)), ((1, 2, 1), dict(bias=False))],
)
def test_Conv2d_has_nn_Conv2d_parameters_and_initialisation(args, kwargs):
    torch.manual_seed(0)
    theirs = nn.Conv2d(*args, **kwargs)
    torch.manual_seed(0)
    ours = cnnlib.Conv2d(*args, **kwargs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, p in theirs.state_dict().items():
        # Same random draws in the same order: the same numbers.
        assert_close(ours.state_dict()[name], p, what=name)
    assert ours.kernel_size == theirs.kernel_size
    assert ours.stride == theirs.stride and ours.padding == theirs.padding


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "Ours, Theirs, kwargs",
    [
        (cnnlib.MaxPool2d, nn.MaxPool2d, dict(kernel_size=2)),
        (cnnlib.MaxPool2d, nn.MaxPool2d, dict(kernel_size=3, stride=2, padding=1)),
        (cnnlib.MaxPool2d, nn.MaxPool2d, dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0))),
        (cnnlib.AvgPool2d, nn.AvgPool2d, dict(kernel_size=2)),
        (cnnlib.AvgPool2d, nn.AvgPool2d, dict(kernel_size=3, stride=1, padding=1)),
        (cnnlib.AvgPool2d, nn.AvgPool2d, dict(kernel_size=(3, 2), stride=(2, 1))),
    ],
)
def test_pooling_layers_match_nn(Ours, Theirs, kwargs, device):
    X = randn(2, 3, 9, 8, device=device)
    assert_close(Ours(**kwargs)(X), Theirs(**kwargs)(X))
    assert_close(Ours(**kwargs)(X[0]), Theirs(**kwargs)(X[0]))  # unbatched (C, H, W)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        cnnlib.Conv2d(0, 4, 3)
    with pytest.raises(TypeError, match="out_channels must be a positive int"):
        cnnlib.Conv2d(3, 2.0, 3)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        cnnlib.Conv2d(3, 4, 0)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        cnnlib.MaxPool2d(2, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        cnnlib.AvgPool2d(2, padding=-1)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair of ints"):
        cnnlib.Conv2D("3")


# --------------------------------------------------------------------------------------------
# LeNet.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", ["torch", "cnnlib"])
@pytest.mark.parametrize("variant, shapes", [("classic", CLASSIC_SHAPES), ("modern", MODERN_SHAPES)])
def test_lenet_layer_summary_shapes(variant, shapes, layers, capsys):
    net = cnnlib.lenet(variant, layers=layers)
    assert cnnlib.layer_summary(net, (1, 1, 28, 28)) == shapes
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(shapes)
    for line, layer, shape in zip(lines, net.children(), shapes):
        assert re.fullmatch(rf"{type(layer).__name__}\s+output shape: {re.escape(str(shape))}", line), line


@pytest.mark.parametrize("layers", ["torch", "cnnlib"])
def test_lenet_parameter_counts(layers):
    assert n_params(cnnlib.lenet("classic", layers=layers)) == CLASSIC_PARAMS
    assert n_params(cnnlib.lenet("modern", layers=layers)) == CLASSIC_PARAMS + BN_PARAMS
    # The same count from the shapes module, layer by layer.
    by_formula = (
        cnnlib.conv_param_count(1, 6, 5) + cnnlib.conv_param_count(6, 16, 5)
        + cnnlib.fc_param_count((16, 5, 5), 120) + cnnlib.fc_param_count(120, 84) + cnnlib.fc_param_count(84, 10)
    )
    assert by_formula == CLASSIC_PARAMS


@pytest.mark.parametrize("layers", ["torch", "cnnlib"])
def test_lenet_layer_types(layers):
    conv = nn.Conv2d if layers == "torch" else cnnlib.Conv2d
    avg = nn.AvgPool2d if layers == "torch" else cnnlib.AvgPool2d
    mx = nn.MaxPool2d if layers == "torch" else cnnlib.MaxPool2d
    classic = list(cnnlib.lenet("classic", layers=layers).children())
    assert [i for i, m in enumerate(classic) if isinstance(m, conv)] == [0, 3]
    assert [i for i, m in enumerate(classic) if isinstance(m, avg)] == [2, 5]
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, cnnlib.MaxPool2d)) for m in classic)
    modern = list(cnnlib.lenet("modern", layers=layers).children())
    convs = [i for i, m in enumerate(modern) if isinstance(m, conv)]
    assert convs == [0, 4]
    assert [i for i, m in enumerate(modern) if isinstance(m, mx)] == [3, 7]
    for i in convs:
        # Batch norm right after each convolution, sized to its channels, and before its activation.
        assert isinstance(modern[i + 1], nn.BatchNorm2d)
        assert modern[i + 1].num_features == modern[i].out_channels
        assert isinstance(modern[i + 2], nn.ReLU)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in modern) == 2
    assert not any(isinstance(m, nn.Sigmoid) for m in modern)


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_lenet_xavier_initialisation(variant):
    cnnlib.set_seed(0)
    for m in cnnlib.lenet(variant, layers="cnnlib").modules():
        if isinstance(m, (nn.Linear, cnnlib.Conv2d)):
            fan_out, fan_in = m.weight.shape[0], m.weight[0].numel()
            receptive = m.weight[0, 0].numel()
            bound = (6 / (fan_in + fan_out * receptive)) ** 0.5
            assert m.weight.abs().max() <= bound
            assert m.weight.abs().max() > 0.8 * bound  # spread over the whole range, not a default init
            assert torch.count_nonzero(m.bias) == 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_lenet_cnnlib_layers_equal_torch_layers(variant, device):
    cnnlib.set_seed(0)
    theirs = cnnlib.lenet(variant, layers="torch").double().to(device)
    ours = cnnlib.lenet(variant, layers="cnnlib").double().to(device)
    ours.load_state_dict(theirs.state_dict())  # the parameter and buffer names match one for one
    X = randn(8, 1, 28, 28, seed=1, device=device)
    y = torch.arange(8, device=device) % 10
    for mode in ("train", "eval"):  # batch statistics, then running statistics
        ours.train(mode == "train")
        theirs.train(mode == "train")
        Y_ours, Y_theirs = ours(X), theirs(X)
        assert_close(Y_ours, Y_theirs, what=f"{mode} logits")
        assert Y_ours.shape == (8, 10) and Y_ours.device == X.device
    ours.zero_grad()
    theirs.zero_grad()
    nn.functional.cross_entropy(Y_ours, y).backward()
    nn.functional.cross_entropy(Y_theirs, y).backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(p.grad, q.grad, what=f"grad of {name}")


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_layer_summary_restores_training_mode(variant):
    net = cnnlib.lenet(variant)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for training in (True, False):
        net.train(training)
        cnnlib.layer_summary(net, (2, 1, 28, 28))
        assert net.training is training
        assert all(m.training is training for m in net.modules())
    # The pass ran in eval mode without gradients: batch norm's running statistics are untouched.
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())


def test_layer_summary_uses_the_nets_dtype():
    assert cnnlib.layer_summary(cnnlib.lenet("classic").double(), [3, 1, 28, 28])[-1] == (3, 10)


def test_lenet_num_classes():
    assert cnnlib.lenet("modern", num_classes=7)(torch.rand(2, 1, 28, 28)).shape == (2, 7)


def test_model_argument_errors():
    with pytest.raises(ValueError, match=r"variant must be one of \('classic', 'modern'\), got 'alexnet'"):
        cnnlib.lenet("alexnet")
    with pytest.raises(ValueError, match=r"layers must be one of \('torch', 'cnnlib'\), got 'keras'"):
        cnnlib.lenet("classic", layers="keras")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        cnnlib.lenet("classic", num_classes=0)
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        cnnlib.layer_summary("lenet", (1, 1, 28, 28))
    with pytest.raises(ValueError, match="input_shape must be a tuple of positive ints"):
        cnnlib.layer_summary(cnnlib.lenet("classic"), (True, 1, 28, 28))
    with pytest.raises(ValueError, match="input_shape must be a tuple of positive ints"):
        cnnlib.layer_summary(cnnlib.lenet(), (1, 1, 28, 0))
    with pytest.raises(ValueError, match="input_shape must be a tuple of positive ints"):
        cnnlib.layer_summary(cnnlib.lenet(), 28)
