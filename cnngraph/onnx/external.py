"""External data: a tensor's bytes in a file beside the model, read safely (a check of safety.py's kind), the
main graph's initializers memory-mapped rather than read.

onnx.checker, run on a ModelProto, resolves external data against the current directory, not the model's
folder, and checks neither offsets nor lengths; locations with '..' escaped the folder (CVE-2022-25882,
CVE-2024-27318), symlinks and hard links too. load_external_data checks everything before reading a byte.
"""
from __future__ import annotations

import mmap
import os
import re
import stat
import sys
from pathlib import PureWindowsPath

import numpy as np
from onnx import TensorProto, helper

from ..errors import OnnxImportError
from .safety import _ITEMSIZE, _dtype, _label, check_elements


def load_external_data(model, base_dir, where: str, mapped: dict | None = None) -> int:
    """Read every tensor's external data into raw_data, refusing anything outside the model's folder.

    With ``mapped`` (a dict), the main graph's initializers are not read: each becomes a read-only array
    memory-mapped from its file (``mapped[index in graph.initializer]``; a copy of that tensor alone when its
    offset is not aligned for its dtype), and its tensor is left with no data. The mapping keeps the file's
    bytes as they were opened (a file replaced by rename, as cnngraph's export does, is not seen); a file
    truncated in place while the graph lives makes reading those weights fail (SIGBUS), as with any mmap.

    This modifies ``model`` (data_location and external_data are cleared); pass a copy to keep the original.
    ``base_dir`` is the folder of the model file; None when the model came as bytes or a ModelProto, and then
    external data is refused (nothing says where it is). Call it right after parsing and before onnx.checker,
    which would otherwise look for the files in the current directory. Returns the number of bytes read.

    A location must be relative, free of '..', resolve (symlinks followed) inside realpath(base_dir), and be
    a regular file with one hard link; offset/length must lie within the file and match dims x itemsize;
    two tensors may not read overlapping bytes (one file region cannot be loaded a hundred times). This
    covers CVE-2022-25882 and CVE-2024-27318 ('..' in various spellings) and the symlink/hardlink escapes
    onnx itself closed later. Everything is checked before anything is read.
    """
    tensors = [(what, t, i) for what, t, i in _all_tensors(model.graph, "") if t.data_location == TensorProto.EXTERNAL]
    if not tensors:
        return 0
    if base_dir is None:
        names = [t.name for _, t, _ in tensors]
        raise OnnxImportError(f"{where}: {names[:5]} keep their data in external files, which can only be read "
                              f"when the model is loaded from its file (its folder says where they are)")
    folder = os.path.realpath(base_dir)
    plans = [_plan(tensor, f"{where}: {what}", folder) for what, tensor, _ in tensors]
    _check_overlaps(plans, where)
    total, maps = 0, {}
    for (tensor, where_data, path, offset, length, _), (_, _, index) in zip(plans, tensors):
        if mapped is not None and index is not None:
            mapped[index] = _mapped_array(maps, tensor, path, offset, length, where_data)
            tensor.data_location = TensorProto.DEFAULT
            del tensor.external_data[:]
            total += length
            continue
        data = _read(path, offset, length, where_data)
        tensor.raw_data = data
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]
        total += len(data)
    return total


def _all_tensors(graph, prefix: str):
    """(description, tensor, index among the main graph's initializers or None) for every tensor of the graph
    and its subgraphs (onnx.checker looks at all)."""
    for index, tensor in enumerate(graph.initializer):
        yield f"{prefix}initializer {tensor.name!r}", tensor, None if prefix else index
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield f"{prefix}{_label(node)} attribute {attr.name!r}", attr.t, None
            for tensor in attr.tensors:
                yield f"{prefix}{_label(node)} attribute {attr.name!r}", tensor, None
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_tensors(sub, f"{prefix}{_label(node)} subgraph {attr.name!r}: ")


def _plan(tensor, what: str, folder: str):
    """(tensor, message prefix, real path, offset, length, file id) once the location, file and range are
    checked."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    where = f"{what}: external data {location!r}"
    if not location:
        raise OnnxImportError(f"{what}: external data without a location")
    if "\0" in location:
        raise OnnxImportError(f"{where}: the location contains a NUL byte")
    windows = PureWindowsPath(location)
    if os.path.isabs(location) or windows.drive or windows.root:
        raise OnnxImportError(f"{where}: an absolute path; a location must be relative to the model's folder")
    if ".." in re.split(r"[\\/]", location):
        raise OnnxImportError(f"{where}: a '..' component; a location must stay inside the model's folder")
    path = os.path.realpath(os.path.join(folder, location))
    if not _inside(folder, path):
        raise OnnxImportError(f"{where}: resolves to {path}, outside the model's folder {folder} (a symbolic link)")
    if tensor.data_type not in _ITEMSIZE:
        raise OnnxImportError(f"{what}: external data of dtype {_dtype(tensor.data_type)} is not supported")
    need = check_elements(list(tensor.dims), what) * _ITEMSIZE[tensor.data_type]
    size, file_id = _stat_open(path, where)
    offset = _whole(info.get("offset", "0"), "offset", where)
    if offset > size:
        raise OnnxImportError(f"{where}: offset {offset} is past the end of the file ({size} bytes)")
    length = _whole(info["length"], "length", where) if "length" in info else size - offset
    if offset + length > size:
        raise OnnxImportError(f"{where}: bytes {offset}..{offset + length} go past the end of the file ({size} bytes)")
    if length != need:
        raise OnnxImportError(f"{where}: {length} bytes from offset {offset}, but dims {list(tensor.dims)} of "
                              f"{_dtype(tensor.data_type)} need {need}")
    return tensor, where, path, offset, length, file_id


def _inside(folder: str, path: str) -> bool:
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:                            # another drive (Windows)
        return False


def _whole(text: str, key: str, where: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text):
        raise OnnxImportError(f"{where}: {key} {text!r} is not a non-negative whole number")
    return int(text)


def _open(path: str, where: str) -> int:
    """A read-only descriptor of a regular file: O_NONBLOCK so a FIFO cannot block, O_NOFOLLOW so a symlink
    swapped in after the path was resolved is not followed."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise OnnxImportError(f"{where}: the file does not exist") from None
    except OSError as error:
        raise OnnxImportError(f"{where}: cannot open: {error.strerror or error}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        reason = "not a regular file" if not stat.S_ISREG(info.st_mode) else \
            f"a file with {info.st_nlink} hard links (it may be a file from outside the folder)"
        raise OnnxImportError(f"{where}: {reason}")
    return fd


def _stat_open(path: str, where: str) -> tuple[int, tuple]:
    fd = _open(path, where)
    info = os.fstat(fd)
    os.close(fd)
    return info.st_size, (info.st_dev, info.st_ino)


def _check_overlaps(plans, where: str) -> None:
    """No two tensors read the same bytes: the data read is then at most the size of the files."""
    ranges = sorted((file_id, offset, offset + length, tensor.name, path)
                    for tensor, _, path, offset, length, file_id in plans if length)
    for (file_a, _, end_a, name_a, path), (file_b, start_b, _, name_b, _) in zip(ranges, ranges[1:]):
        if file_a == file_b and start_b < end_a:
            raise OnnxImportError(f"{where}: {name_a!r} and {name_b!r} read overlapping bytes of the external file "
                                  f"{os.path.basename(path)!r}")


def _mapped_array(maps: dict, tensor, path: str, offset: int, length: int, where: str) -> np.ndarray:
    """The tensor's bytes as a read-only array over a read-only mapping of its file (one mapping per file)."""
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
    if not length:
        array = np.empty(0, dtype)
    else:
        if path not in maps:
            fd = _open(path, where)
            try:
                maps[path] = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as error:
                raise OnnxImportError(f"{where}: cannot map the file: {error}") from None
            finally:
                os.close(fd)
        if len(maps[path]) < offset + length:
            raise OnnxImportError(f"{where}: the file shrank while it was read")
        array = np.frombuffer(maps[path], np.uint8, length, offset)
        array = array.view(dtype) if offset % dtype.alignment == 0 else array.copy().view(dtype)
    if sys.byteorder == "big":
        array = array.astype(dtype.newbyteorder("="))
    array = array.reshape(tuple(tensor.dims))
    array.flags.writeable = False
    return array


def _read(path: str, offset: int, length: int, where: str) -> bytes:
    with os.fdopen(_open(path, where), "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    if len(data) != length:
        raise OnnxImportError(f"{where}: the file shrank while it was read")
    return data


__all__ = ["load_external_data"]
