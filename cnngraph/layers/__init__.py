"""The layer catalogue: importing this package registers every op."""
from .activations import LeakyReLU, ReLU, ReLU6, Sigmoid, Softmax, Tanh
from .conv import Conv2d
from .linear import Linear
from .normalization import BatchNorm2d
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .structure import Add, Concat, Dropout, Flatten, Identity
from .tensor_ops import (
                         Constant,
                         Div,
                         GlobalMaxPool2d,
                         Hardtanh,
                         LocalResponseNorm,
                         MatMul,
                         Mul,
                         Pad,
                         ReduceMean,
                         Reshape,
                         Sub,
                         Transpose,
)

__all__ = ["Conv2d", "Linear", "ReLU", "LeakyReLU", "ReLU6", "Sigmoid", "Tanh", "Softmax", "BatchNorm2d",
           "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten", "Add", "Concat", "Identity", "Dropout",
           "Constant", "Mul", "Sub", "Div", "Transpose", "Reshape", "Pad", "ReduceMean", "MatMul", "GlobalMaxPool2d",
           "LocalResponseNorm", "Hardtanh"]
