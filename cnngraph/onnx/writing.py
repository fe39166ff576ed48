"""Write an exported model to disk tensor by tensor: the weights go from the graph's read-only arrays to the file
(or to an external-data file beside it), never through a protobuf copy of them all.

The file is the model's structure serialized by protobuf (nodes, value_info, no initializers) with each
initializer appended to the graph field in protobuf's wire format (wire.py): its header (name, dims, dtype) and
then its bytes, written straight from the array. With external data, large tensors' bytes go to
"<model file name>.data" instead, each at an offset aligned for mmap, and the header says where
(``location``, ``offset``, ``length``): the layout onnx and onnxruntime read.

Both files are written in a temporary folder beside the target, fsynced, checked there (the external-data model
with onnx.checker's full_check on the file itself, whose data file sits beside it under its final name), then
renamed into place, the data file first: an error at any point leaves no partial file, and an existing model of
that name untouched. A model written inline over one whose weights were beside it removes that data file.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import atomic
from .wire import GRAPH_INITIALIZER, MODEL_GRAPH, TENSOR_RAW_DATA, field

EXTERNAL_MIN_BYTES = 1024          # smaller tensors stay in the model file (onnx's own default threshold)


def is_bulk(array: np.ndarray) -> bool:
    """Whether a tensor is weights, kept out of the checker's way and (on request) out of the model file; the
    rest (small tensors, and int64 ones: shapes, axes, pads, which ONNX's shape inference reads) stay in."""
    return array.nbytes >= EXTERNAL_MIN_BYTES and array.dtype != np.int64
EXTERNAL_ALIGNMENT = 4096          # offsets in the data file: a page, so a reader can map each tensor


def contiguous(array) -> np.ndarray:
    """The array as little-endian C-contiguous bytes can be taken from: itself when it already is one."""
    array = np.asarray(array)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.asarray(array, order="C")          # np.ascontiguousarray would make a 0-d array 1-d


def header(name: str, array: np.ndarray) -> TensorProto:
    """The initializer without its data: name, dims, dtype."""
    tensor = TensorProto()
    tensor.name = name
    tensor.dims.extend(array.shape)
    tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
    return tensor


class Layout:
    """Where every initializer's bytes go: ``records`` (tensor bytes before the data, the array, whether its
    data goes to the external file) and the size of the model file it makes."""

    def __init__(self, structure: onnx.ModelProto, weights, external: bool, data_name: str):
        graph = structure.graph
        self.graph_bytes = graph.SerializeToString()
        rest = onnx.ModelProto()
        rest.CopyFrom(structure)
        rest.ClearField("graph")
        self.rest_bytes = rest.SerializeToString()
        self.records, offset = [], 0
        for name, array in weights:
            array = contiguous(array)
            tensor = header(name, array)
            outside = external and is_bulk(array)
            if outside:
                offset = -(-offset // EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT
                tensor.data_location = TensorProto.EXTERNAL
                for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(array.nbytes))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
                offset += array.nbytes
                head = tensor.SerializeToString()
            else:
                head = tensor.SerializeToString() + field(TENSOR_RAW_DATA, array.nbytes)
            self.records.append((head, array, outside, tensor))
        self.initializer_bytes = sum(self._tensor_size(head, array, outside) for head, array, outside, _ in self.records)
        graph_size = len(self.graph_bytes) + self.initializer_bytes
        self.model_size = len(self.rest_bytes) + len(field(MODEL_GRAPH, graph_size)) + graph_size

    @staticmethod
    def _tensor_size(head: bytes, array, outside: bool) -> int:
        size = len(head) + (0 if outside else array.nbytes)
        return len(field(GRAPH_INITIALIZER, size)) + size

    def checked_initializers(self) -> list[TensorProto]:
        """The initializers for the checker: the bulk ones without data (reading.check_without_weights stands
        them in by external references), the small ones whole."""
        tensors = []
        for _, array, _, tensor in self.records:
            if not is_bulk(array):
                tensor = numpy_helper.from_array(array, tensor.name)
            tensors.append(tensor)
        return tensors

    def model_chunks(self):
        """The model file's bytes, in pieces (arrays as memoryviews, not copied)."""
        yield self.rest_bytes
        yield field(MODEL_GRAPH, len(self.graph_bytes) + self.initializer_bytes)
        yield self.graph_bytes
        for head, array, outside, _ in self.records:
            yield field(GRAPH_INITIALIZER, len(head) + (0 if outside else array.nbytes))
            yield head
            if not outside and array.nbytes:
                yield memoryview(array).cast("B")

    def data_chunks(self):
        """The external-data file's bytes: each outside tensor at its aligned offset."""
        position = 0
        for _, array, outside, _ in self.records:
            if not outside:
                continue
            start = -(-position // EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT
            if start > position:
                yield bytes(start - position)
            if array.nbytes:
                yield memoryview(array).cast("B")
            position = start + array.nbytes

    def has_external(self) -> bool:
        return any(outside for _, _, outside, _ in self.records)


def write(layout: Layout, path, data_name: str, check) -> bytes | None:
    """Write the model (and its data file when some tensor is outside) atomically; ``check(model_path)`` runs
    on the written model in its temporary folder before anything is renamed into place. Returns the model
    file's bytes when the weights went outside (the file is then small), else None."""
    folder, base = atomic.check_target(path)
    try:
        temp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    except OSError as error:                       # e.g. no permission: the user's name, not ours
        raise type(error)(error.errno, error.strerror, os.fspath(path)) from None
    try:
        temp_model = os.path.join(temp, base)
        external = layout.has_external()
        if external:
            _write_chunks(os.path.join(temp, data_name), layout.data_chunks())
        _write_chunks(temp_model, layout.model_chunks())
        check(temp_model)
        written = None
        if external:
            with open(temp_model, "rb") as handle:
                written = handle.read()
        target, data_target = os.fspath(path), os.path.join(folder, data_name)
        for written_now, final in ((temp_model, target), (os.path.join(temp, data_name), data_target)):
            if os.path.exists(final) and os.path.exists(written_now):       # an existing file keeps its mode
                os.chmod(written_now, os.stat(final).st_mode & 0o7777)
        orphaned = not external and _reads_data_file(target, data_name)
        if external:
            os.replace(os.path.join(temp, data_name), data_target)
        os.replace(temp_model, target)
        if orphaned:                    # the old model's weights file: nothing refers to it any more
            try:
                os.remove(data_target)
            except OSError:
                pass                    # e.g. held open on Windows: a stale file, not a wrong model
        atomic.fsync_folder(folder)
        return written
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _reads_data_file(model_path: str, data_name: str) -> bool:
    """Whether the model now at ``model_path`` keeps tensors in ``data_name`` beside it: an inline export over
    it would leave that file behind. Read only when such a file exists; an unreadable old model counts as
    not (its data file is then left alone)."""
    if not os.path.isfile(os.path.join(os.path.dirname(model_path), data_name)) or not os.path.isfile(model_path):
        return False
    try:
        old = onnx.load(model_path, load_external_data=False)
    except Exception:                   # any unreadable file: leave its data alone
        return False
    return any(entry.key == "location" and entry.value == data_name
               for tensor in old.graph.initializer for entry in tensor.external_data)


def _write_chunks(path: str, chunks) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)   # umask applies
    with os.fdopen(fd, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())


__all__ = ["Layout", "write", "contiguous", "header", "EXTERNAL_MIN_BYTES", "EXTERNAL_ALIGNMENT"]
