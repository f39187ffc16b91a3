# cell: lenet
# item: 1
# fair: 0
# reason: mixed devices
class ScaledLeNet(nn.Sequential):
    """A temperature kept as a plain tensor attribute, not a buffer: net.to(device) leaves it on the CPU."""

    def __init__(self, *layers):
        super().__init__(*layers)
        self.temperature = torch.ones(10)

    def forward(self, X):
        return super().forward(X) / self.temperature


def lenet():
    return ScaledLeNet(
        nn.Conv2d(1, 6, kernel_size=5, padding=2, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )
