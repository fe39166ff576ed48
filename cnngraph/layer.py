"""The Layer base class and the op registry.

Each op is defined once, as a Layer subclass: its PyTorch-style constructor, the shapes of its parameters,
its shape inference, whether it is linear (affine in its data inputs) and its MAC count. Defining the class
registers it under ``op`` (the class name unless set). The graph builder, the passes and every backend look
ops up here by name.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import GraphError, ParameterError, ShapeError
from .readonly import ReadOnlyDict, readonly_array
from .shapes import TensorType, format_shape

REGISTRY: dict[str, type[Layer]] = {}


def lookup(op: str) -> type[Layer]:
    try:
        return REGISTRY[op]
    except KeyError:
        raise GraphError(f"unknown op {op!r}; registered ops: {', '.join(sorted(REGISTRY))}") from None


@dataclass(frozen=True)
class Operand:
    """What shape inference sees of one input: the producing value's name and type."""
    name: str
    type: TensorType

    @property
    def shape(self):
        return self.type.shape

    @property
    def rank(self) -> int:
        return len(self.type.shape)

    def describe(self) -> str:
        return f"{self.name} with shape {format_shape(self.shape)}"


class Layer:
    """A layer: attributes (hyper-parameters) plus named float32 parameter arrays.

    Subclasses set the class variables below and implement ``param_shapes``, ``infer`` and, when they own
    parameters, ``init_params``. Parameters are read and set as attributes (``conv.weight = w`` checks the
    shape and stores a read-only float32 copy of ``w``); ``attrs`` and ``params`` are read-only mappings.
    """
    op: ClassVar[str]
    prefix: ClassVar[str] = "layer"          # default node name: prefix + counter ("conv1")
    arity: ClassVar[tuple] = (1, 1)          # (min, max) data inputs; max None = any number
    buffers: ClassVar[tuple] = ()            # parameters PyTorch counts as buffers, not learnable parameters
    batch_independent: ClassVar[bool] = False  # see per_sample

    # --- traits: what passes, lint and draw read of an op (they never list op names) ----------------------
    linear: ClassVar[bool] = False           # affine in its data inputs: consecutive linear layers compose
    weighted: ClassVar[bool] = False         # a learned map of features (Conv2d, Linear): linear chains end on these
    accepts_epilogue: ClassVar[bool] = False  # can carry a fused activation, applied on its output in place
    fusable_activation: ClassVar[bool] = False  # element-wise, cheap: may run as another op's epilogue
    idempotent: ClassVar[bool] = False       # f(f(x)) = f(x): applying it twice is a finding
    reshape_like: ClassVar[bool] = False     # only rearranges elements, in order (Flatten, Reshape)
    inference_identity: ClassVar[bool] = False  # returns its input at inference (Identity, Dropout)
    singleton_reduction: ClassVar[bool] = False  # a reduction whose value over one element is it (mean, max; not L2)
    constant: ClassVar[bool] = False         # no inputs: its value is its parameter "value", known before running
    channel_affine: ClassVar[bool] = False   # y = scale·x + shift per channel, given by scale_shift(attrs, params)
    constant_affine: ClassVar[str] = ""      # with a constant operand c: "scale" (x·c) or "shift" (x + c)
    derivative_from: ClassVar[str] = ""      # element-wise, its derivative a function of its "output" or "input"
    training_only: ClassVar[bool] = False    # exists only in training graphs (a gradient, a loss): no ONNX form

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "op" not in cls.__dict__:
            cls.op = cls.__name__
        if not cls.op.startswith("_"):
            REGISTRY[cls.op] = cls

    def __init__(self, **attrs):
        object.__setattr__(self, "attrs", ReadOnlyDict(attrs))
        params = self.init_params(attrs)
        for array in params.values():
            array.flags.writeable = False       # init_params makes new arrays, only ours: frozen without a copy
        object.__setattr__(self, "params", ReadOnlyDict({k: readonly_array(v) for k, v in params.items()}))

    # --- the schema: override in subclasses -------------------------------------------------------------
    @classmethod
    def param_shapes(cls, attrs: dict) -> dict[str, tuple]:
        return {}

    @classmethod
    def init_params(cls, attrs: dict) -> dict[str, np.ndarray]:
        """New float32 arrays (PyTorch's default initialisation); the layer makes them read-only in place."""
        return {}

    @classmethod
    def infer(cls, attrs: dict, inputs: list[Operand]) -> TensorType:
        raise NotImplementedError

    @classmethod
    def example(cls) -> tuple[Layer, list[tuple]]:
        """A small instance and the shapes of its inputs (batch symbolic): what the tests that cover every op
        build. Ops whose constructor needs arguments override it."""
        return cls(), [(None, 3, 4, 5)] * cls.arity[0]

    @classmethod
    def per_sample(cls, attrs: dict, rank: int) -> bool:
        """Whether sample i of the output (along axis 0) depends only on sample i of the data inputs, the first
        of which has this rank: then a batch can be cut into pieces computed apart (the NumPy backend runs them
        on separate cores). Ops for which it depends on an attribute (an axis that may be 0) override this."""
        return cls.batch_independent

    @classmethod
    def macs(cls, attrs: dict, inputs: list[Operand], output: TensorType) -> int:
        """Multiply-accumulates per sample (batch dimension 1)."""
        return 0

    @classmethod
    def summary(cls, attrs: dict) -> str:
        """The attributes a reader wants to see in lint messages, tables and pictures ("3→16, 3×3")."""
        return ""

    # --- parameters as attributes -----------------------------------------------------------------------
    def __getattr__(self, name):
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        """Only parameters can be set, each checked against its shape: a typo or a bias on a layer built
        with bias=False fails loudly instead of being silently ignored."""
        expected = self.param_shapes(self.attrs)
        if name not in expected:
            raise ParameterError(f"{self.op}: no parameter named {name!r} with these attributes "
                                 f"(parameters: {', '.join(expected) or 'none'})")
        object.__setattr__(self, "params", ReadOnlyDict(self.params, **{
            name: check_param(self.op, name, value, expected[name])}))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        return f"{type(self).__name__}({shown})"

    @classmethod
    def check_arity(cls, count: int, node: str) -> None:
        low, high = cls.arity
        if count < low or (high is not None and count > high):
            wanted = str(low) if low == high else (f"at least {low}" if high is None else f"{low} to {high}")
            raise ShapeError(f"{node} ({cls.op}): takes {wanted} input(s), got {count}")


def check_param(label: str, name: str, value, shape: tuple) -> np.ndarray:
    """The parameter as a read-only float32 array of the expected shape (the caller's array is copied unless
    it already is one: see ``readonly_array``); ``label`` names the layer in the error. Checked before copying."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ParameterError(f"{label}: {name}: expected a numeric array, got dtype {array.dtype}")
    if array.shape != tuple(shape):
        raise ParameterError(f"{label}: {name} must have shape {format_shape(tuple(shape))}, "
                             f"got {format_shape(array.shape)}")
    return readonly_array(array)


def pair(value, what: str) -> tuple[int, int]:
    """PyTorch's int-or-pair arguments."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")


def require_rank(inputs: list[Operand], rank: int, layout: str) -> None:
    for operand in inputs:
        if operand.rank != rank:
            raise ShapeError(f"expects a {rank}-D input {layout}, got {operand.describe()}")


def require_static(operand: Operand, axes, what: str) -> None:
    if any(not isinstance(operand.shape[a], int) for a in axes):
        raise ShapeError(f"needs a static {what}, got {operand.describe()}")


def require_window(attrs: dict) -> None:
    """Attributes of a sliding window that any graph (an imported one too) must respect."""
    for key in ("kernel_size", "stride", "dilation"):
        if key in attrs and min(attrs[key]) < 1:
            raise ShapeError(f"{key} must be >= 1, got {tuple(attrs[key])}")
    if min(attrs.get("pads", (0,))) < 0:
        raise ShapeError(f"pads must be >= 0, got {tuple(attrs['pads'])}")
    groups = attrs.get("groups", 1)
    if groups < 1 or attrs.get("in_channels", 0) % groups or attrs.get("out_channels", 0) % groups:
        raise ShapeError(f"groups ({groups}) must be >= 1 and divide in_channels ({attrs.get('in_channels')}) "
                         f"and out_channels ({attrs.get('out_channels')})")


def fusable_activations() -> list[str]:
    return sorted(op for op, layer in REGISTRY.items() if layer.fusable_activation)


def require_activation(attrs: dict) -> None:
    """A Conv2d or Linear may carry a fused activation: ``activation = {"op": "ReLU", "attrs": {...}}``."""
    fused = attrs.get("activation")
    if fused is not None and (not isinstance(fused, Mapping) or fused.get("op") not in fusable_activations()):
        raise ShapeError(f"activation must be one of {', '.join(fusable_activations())} as "
                         f"{{'op': ..., 'attrs': {{...}}}}, got {fused!r}")
