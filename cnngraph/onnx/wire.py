"""Protobuf's wire format, just enough to read and write an ONNX model's weights without a protobuf copy of them.

Parsing a model with protobuf copies every initializer's raw_data into the message, and reading
``tensor.raw_data`` copies it again into a Python bytes object: two copies of the weights before numpy sees them.
``strip_initializers`` walks the serialized model instead and returns it without the raw_data of the main
graph's initializers (a few kilobytes to parse) plus where each of those raw_data fields lies in the buffer, so
the importer can view or read the weights straight from the file's bytes.

Only the fields on the way are decoded (ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data
= 9); everything else is copied through untouched, so protobuf then parses exactly what it would have parsed,
less the raw_data. Protobuf's merge rules hold: a graph field given twice is one graph whose initializer lists
are concatenated, so the n-th initializer chunk met is the n-th initializer; of two raw_data fields in one tensor
the last wins. A malformed buffer raises WireError and the caller lets protobuf parse it (and word the error).

``field`` and ``varint`` encode, for the exporter's streamed initializers.
"""
from __future__ import annotations

MODEL_GRAPH, GRAPH_INITIALIZER, TENSOR_RAW_DATA = 7, 5, 9
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """The buffer is not well-formed protobuf."""


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, payload_length: int) -> bytes:
    """The tag and length that start a length-delimited field (the payload follows)."""
    return varint(number << 3 | _LENGTH) + varint(payload_length)


def _read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf, start: int, end: int):
    """(field number, wire type, start of the field's tag, start of its payload, end of the field)."""
    pos = start
    while pos < end:
        tag, body = _read_varint(buf, pos, end)
        number, kind = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if kind == _VARINT:
            _, stop = _read_varint(buf, body, end)
        elif kind == _FIXED64:
            stop = body + 8
        elif kind == _FIXED32:
            stop = body + 4
        elif kind == _LENGTH:
            length, body = _read_varint(buf, body, end)
            stop = body + length
        else:                                     # groups (3, 4) and reserved kinds: not in ONNX
            raise WireError(f"wire type {kind}")
        if stop > end:
            raise WireError("a field runs past the end of its message")
        yield number, kind, pos, body, stop
        pos = stop


def strip_initializers(buf) -> tuple[bytes, list]:
    """The model in ``buf`` (bytes, mmap, memoryview) without its main-graph initializers' raw_data, and for each
    initializer in order, (offset, length) of its raw_data in ``buf`` or None when it has none."""
    out, raw = bytearray(), []
    for number, kind, tag, body, stop in _fields(buf, 0, len(buf)):
        if number == MODEL_GRAPH and kind == _LENGTH:
            graph = _strip_graph(buf, body, stop, raw)
            out += field(MODEL_GRAPH, len(graph))
            out += graph
        else:
            out += buf[tag:stop]
    return bytes(out), raw


def _strip_graph(buf, start: int, end: int, raw: list) -> bytearray:
    out = bytearray()
    for number, kind, tag, body, stop in _fields(buf, start, end):
        if number == GRAPH_INITIALIZER and kind == _LENGTH:
            tensor, where = bytearray(), None
            for t_number, t_kind, t_tag, t_body, t_stop in _fields(buf, body, stop):
                if t_number == TENSOR_RAW_DATA and t_kind == _LENGTH:
                    where = (t_body, t_stop - t_body)
                else:
                    tensor += buf[t_tag:t_stop]
            raw.append(where)
            out += field(GRAPH_INITIALIZER, len(tensor))
            out += tensor
        else:
            out += buf[tag:stop]
    return out


__all__ = ["strip_initializers", "field", "varint", "WireError"]
