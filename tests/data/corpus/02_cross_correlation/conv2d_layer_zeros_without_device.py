# cell: Conv2D
# item: 1
# fair: 0
# reason: mixed devices
class Conv2D(nn.Module):
    """Fills an output allocated with the input's dtype but without its device: right on the CPU, and on a GPU
    the first Y[o] = ... mixes a CUDA value into a CPU tensor."""

    def __init__(self, kernel_size, out_channels=1):
        super().__init__()
        self.weight = nn.Parameter(torch.rand((out_channels, *kernel_size)))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, X):
        out_channels, kh, kw = self.weight.shape
        Y = torch.zeros((out_channels, X.shape[0] - kh + 1, X.shape[1] - kw + 1), dtype=X.dtype)
        for o in range(out_channels):
            Y[o] = corr2d(X, self.weight[o]) + self.bias[o]
        return Y
