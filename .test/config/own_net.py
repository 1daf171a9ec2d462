"""A researcher's own network, beside the config that names it (`models: ["own_net:build"]`): the workflow puts
the config's folder on the import path. Any callable taking num_classes and returning a torch.nn.Module will do."""

import torch.nn as nn


def build(num_classes, width=8):
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )
