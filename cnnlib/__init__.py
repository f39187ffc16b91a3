"""cnnlib: the reference library of the convolutional neural networks course.

Every chapter of the book imports it, and the graders compare students' code against it.
"""
from .data import (
    Dataset,
    DatasetUnavailable,
    data_dir,
    load_data,
    load_digits28,
    load_fashion_mnist,
)
from .devices import devices, set_seed, try_gpu
from .layers import AvgPool2d, Conv2D, Conv2d, MaxPool2d
from .models import layer_summary, lenet
from .ops import (
    conv2d,
    conv_as_matrix,
    convolve2d,
    corr2d,
    corr2d_multi_in,
    corr2d_multi_in_out,
    corr2d_multi_in_out_1x1,
    corr2d_padded,
    global_avg_pool2d,
    pad2d,
    pool2d,
)
from .plot import plot_history, show_images
from .shapes import conv_output_shape, conv_param_count, fc_param_count, receptive_field
from .train import evaluate_accuracy, learn_kernel, train, train_epoch

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d", "Conv2D", "Conv2d", "Dataset", "DatasetUnavailable", "MaxPool2d",
    "conv2d", "conv_output_shape", "conv_param_count", "convolve2d", "corr2d", "corr2d_multi_in",
    "corr2d_multi_in_out", "corr2d_multi_in_out_1x1", "data_dir", "devices", "evaluate_accuracy",
    "fc_param_count", "global_avg_pool2d", "layer_summary", "lenet", "load_data", "load_digits28",
    "load_fashion_mnist", "plot_history", "pool2d", "receptive_field", "set_seed", "show_images",
    "train", "train_epoch", "try_gpu",
    "conv_as_matrix", "corr2d_padded", "learn_kernel", "pad2d",
]
