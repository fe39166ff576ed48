"""Adding an op is one checklist: every registered op has a NumPy kernel and an ONNX export rule."""
import cnngraph as cg
from cnngraph.backends.numpy_backend import KERNELS
from cnngraph.onnx.mapping import EXPORTERS as EXPORT_RULES


def test_every_registered_op_has_a_numpy_kernel_and_an_export_rule():
    ops = set(cg.REGISTRY)
    assert {"Conv2d", "Linear", "ReLU", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "Flatten"} <= ops
    assert ops - set(KERNELS) == set(), "ops without a NumPy kernel"
    assert ops - set(EXPORT_RULES) == set(), "ops without an ONNX export rule"


def test_kernels_and_rules_exist_only_for_registered_ops():
    assert set(KERNELS) - set(cg.REGISTRY) == set()
    assert set(EXPORT_RULES) - set(cg.REGISTRY) == set()


def test_linearity_flags_say_which_layers_compose_into_one_linear_map():
    """The folding passes rely on these: max pooling and every activation stop a fold, average pooling does not."""
    linear = {op for op, layer in cg.REGISTRY.items() if layer.linear}
    assert {"Conv2d", "Linear", "BatchNorm2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten", "Add", "Concat",
            "Identity", "Dropout", "Sub", "Transpose", "Reshape", "Pad", "ReduceMean"} == linear
    # Mul, Div and MatMul are linear only when one operand is a constant: the passes look at the operands
    assert {"ReLU", "LeakyReLU", "ReLU6", "Sigmoid", "Tanh", "Softmax", "MaxPool2d", "GlobalMaxPool2d", "Hardtanh",
            "LocalResponseNorm", "Constant", "Mul", "Div", "MatMul"} == set(cg.REGISTRY) - linear
