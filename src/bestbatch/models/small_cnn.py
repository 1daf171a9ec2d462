"""A small CNN (about 100k parameters) that trains in minutes on two CPU cores: the demo's model."""

import torch
import torch.nn as nn


def conv_bn(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(nn.Module):
    def __init__(self, widths=(16, 32, 64, 128), num_classes=10):
        super().__init__()
        layers, c_in = [], 3
        for i, w in enumerate(widths):
            # pool before every block but the first: 32 -> 16 -> 8 -> 4
            layers += ([nn.MaxPool2d(2)] if i else []) + [conv_bn(c_in, w)]
            c_in = w
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x):
        if x.device.type == "cpu" and x.dim() == 4:
            # channels-last on CPU: oneDNN's convolutions, batch norm and pooling take about 2/3 of the time in
            # NHWC (benchmarks/results.md); the output and the gradients are the same tensors, to rounding
            x = x.contiguous(memory_format=torch.channels_last)
        return self.linear(self.features(x).mean((2, 3)))


class TinyMLP(nn.Module):
    """Two layers, optionally with BatchNorm: small enough for float64 brute-force checks."""

    def __init__(self, batchnorm=False, hidden=16, num_classes=10):
        super().__init__()
        self.pool = nn.AvgPool2d(8)  # 3x32x32 -> 3x4x4 = 48 features
        self.fc1 = nn.Linear(48, hidden)
        self.bn = nn.BatchNorm1d(hidden) if batchnorm else nn.Identity()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(self.bn(self.fc1(self.pool(x).flatten(1))).relu())
