"""Read an ONNX model's structure with protobuf and its weights without protobuf, so each weight exists once.

Parsing with protobuf holds the weights twice (the message, then ``numpy_helper.to_array``'s copy), and the
checker a third time. Here the serialized model is parsed without its initializers' raw_data (wire.py), and
each weight becomes a numpy array straight from the bytes it was given:

  * bytes or a ModelProto (serialized once): a read-only view of those bytes (``np.frombuffer``) when the data
    is aligned for its dtype, else a copy of that tensor alone;
  * a file: each tensor read straight into its own aligned array (a view of the file's bytes would be
    misaligned three times in four, and an mmap of the model file would crash the process with SIGBUS if
    someone truncated the file while the graph lives); peak memory is the weights once.

External data is memory-mapped by external.py. ``take_arrays`` then empties every initializer of the message,
and ``check_without_weights`` runs onnx.checker on the structure alone (each initializer an external reference
to an empty file in a temporary folder), so no second copy of the weights is held at any point.
"""
from __future__ import annotations

import mmap
import os
import stat
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import OnnxImportError
from .safety import check_model_file
from .wire import WireError, strip_initializers

_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
_STUB = "weights-left-out"


class ModelSource:
    """The model's bytes while the importer takes its weights: a buffer (bytes, mmap) and, for a file, the open
    file. ``raw`` holds (offset, length) of each main-graph initializer's raw_data, or None."""

    def __init__(self, buffer, where: str, folder: str | None, handle=None):
        self.buffer, self.where, self.folder, self.handle = buffer, where, folder, handle
        self.raw: list = []

    def parse(self) -> onnx.ModelProto:
        model = onnx.ModelProto()
        try:
            stripped, self.raw = strip_initializers(self.buffer)
        except WireError:                             # protobuf parses it all and says what is wrong
            stripped, self.raw = bytes(self.buffer), []
        try:
            model.ParseFromString(stripped)
        except Exception as error:                    # protobuf's DecodeError and friends
            raise OnnxImportError(f"{self.where}: not an ONNX model (cannot parse: {_one_line(error)})") from None
        if len(self.raw) != len(model.graph.initializer):
            self.raw = [None] * len(model.graph.initializer)
        return model

    def raw_lengths(self) -> dict[int, int]:
        return {index: where[1] for index, where in enumerate(self.raw) if where is not None}

    def array(self, index: int, tensor) -> np.ndarray:
        """Initializer ``index`` as a read-only array (its byte count was checked against its dims already)."""
        offset, length = self.raw[index]
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
        dims = tuple(tensor.dims)
        if self.handle is None:
            array = np.frombuffer(self.buffer, np.uint8, length, offset)
            array = array.view(dtype) if offset % dtype.alignment == 0 else array.copy().view(dtype)
        else:
            array = np.empty(length // dtype.itemsize, dtype)
            _read_into(self.handle, offset, memoryview(array).cast("B"), self.where)
        if sys.byteorder == "big":
            array = array.astype(dtype.newbyteorder("="))
        array = array.reshape(dims)
        array.flags.writeable = False
        return array

    def close(self) -> None:
        if isinstance(self.buffer, mmap.mmap):
            self.buffer.close()
        if self.handle is not None:
            self.handle.close()
        self.buffer = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_model(path_or_model) -> ModelSource:
    """The bytes of a model given as a path, bytes or a ModelProto (serialized, so the caller's stays untouched)."""
    if isinstance(path_or_model, onnx.ModelProto):
        return ModelSource(path_or_model.SerializeToString(), "<ModelProto>", None)
    if isinstance(path_or_model, (bytes, bytearray, memoryview)):
        return ModelSource(bytes(path_or_model), "<bytes>", None)     # a bytes object is kept as it is
    where = os.fspath(path_or_model)
    check_model_file(where)
    folder = os.path.dirname(os.path.abspath(where))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)   # a pipe swapped in: no wait
    try:
        handle = os.fdopen(os.open(where, flags), "rb")       # closed by ModelSource.close
    except OSError as error:
        raise OnnxImportError(f"{where}: cannot read: {error.strerror or error}") from None
    try:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file (a directory, device or pipe)")
        size = info.st_size
        buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (OSError, ValueError) as error:
        handle.close()
        raise OnnxImportError(f"{where}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    return ModelSource(buffer, where, folder, handle)


_CHUNK = 16 << 20                 # one huge read() was several times slower here than reads of 16 MiB


def _read_into(handle, offset: int, target: memoryview, where: str) -> None:
    done = 0
    while done < len(target):
        piece = target[done:done + _CHUNK]
        if hasattr(os, "preadv"):
            count = os.preadv(handle.fileno(), [piece], offset + done)
        else:
            handle.seek(offset + done)
            count = handle.readinto(piece)
        if not count:
            raise OnnxImportError(f"{where}: the file shrank while it was read")
        done += count


def _one_line(error) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def take_arrays(model: onnx.ModelProto, source: ModelSource, mapped: dict) -> list[np.ndarray]:
    """Every main-graph initializer as an array (in order), each emptied in the message once taken: from
    ``mapped`` (external data, memory-mapped), from the source's bytes, or from protobuf's typed fields."""
    arrays = []
    for index, tensor in enumerate(model.graph.initializer):
        if index in mapped:
            arrays.append(mapped[index])
        elif index < len(source.raw) and source.raw[index] is not None:
            arrays.append(source.array(index, tensor))
        else:
            arrays.append(numpy_helper.to_array(tensor))
        for name in _DATA_FIELDS:
            tensor.ClearField(name)
    return arrays


def check_without_weights(model: onnx.ModelProto, check) -> None:
    """Run ``check(path)`` (onnx.checker) on ``model``, written with each initializer that holds no data
    (take_arrays; the exporter's weights) an external reference to an empty file beside it: the checker sees the
    whole structure (dims, dtypes, names, nodes) and never a weight. ``model`` itself is left as it is."""
    empty = [i for i, t in enumerate(model.graph.initializer) if not any(t.HasField(f) if f == "raw_data" else len(
        getattr(t, f)) for f in _DATA_FIELDS) and t.data_location != TensorProto.EXTERNAL]
    if not empty:
        check(model)
        return
    stub = onnx.ModelProto()
    stub.CopyFrom(model)
    for index in empty:
        tensor = stub.graph.initializer[index]
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", _STUB
    with tempfile.TemporaryDirectory(prefix="cnngraph-check-") as folder:
        open(os.path.join(folder, _STUB), "wb").close()
        path = os.path.join(folder, "model.onnx")
        with open(path, "wb") as handle:
            handle.write(stub.SerializeToString())
        del stub
        check(path)


__all__ = ["ModelSource", "open_model", "take_arrays", "check_without_weights"]
