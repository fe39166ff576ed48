"""ONNX, both directions: one mapping between ONNX's ops and cnngraph's IR, kept in one folder.

    importer.py   ONNX model -> Graph (cg.load_onnx), node by node
    handlers.py   the handlers of ONNX-only machinery (Constant, Shape, Cast, Identity, Dropout); a layer's own
                  handler is in its family module (cnngraph/layers/*.py, "ONNX import"), one ONNX node to one
                  node of ours; handler_tools.py what they share (onnx-free); mapping.py the registry
    fold.py       constant folding at import (shape arithmetic, ConstantOfShape weights)
    schema.py     what the spec says a node may be (opset range, input types, flags, sizes), checked at import
    safety.py     checks that keep a malformed or hostile file from crashing, hanging or exhausting memory
    external.py   external data read only from inside the model's folder, offsets and lengths checked, mapped
    reading.py    the weights read once (views of the bytes, one read from the file, mmap of external data);
                  onnx.checker run on the structure without them
    writing.py    the exporter's weights streamed to the file (or to external data beside it), written atomically
    wire.py       protobuf's wire format, just enough to find and write initializers' raw data
    benchmark_memory.py  time and peak memory of load/export against onnx.load and onnxruntime
    export.py     Graph -> ONNX model (cg.export_onnx), each op written by the rule its family module declares
                  (mapping.py: @exports); the onnxruntime backend runs it
    pool_windows.py  which ceil_mode form gives PyTorch's pooling sizes (the pooling export rules use it)
    shared.py     arithmetic both directions use: axes, window sizes and overhangs, Reshape <-> Flatten, names

Importing this package imports the onnx package; ``import cnngraph`` alone does not.
"""
