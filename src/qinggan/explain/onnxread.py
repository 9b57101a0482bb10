"""Just enough of the protobuf wire format to read an n-gram model's weights from its ONNX
file, so the serving install needs no ``onnx`` package.

ONNX files are protobuf messages: fields are (number, wire type) keys followed by a varint,
a fixed 32/64-bit value or a length-delimited payload. The reader walks ``ModelProto``
-> ``GraphProto`` and returns each node's attributes and each initializer as numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# field numbers from onnx.proto (stable since ONNX 1.0)
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_OP_TYPE, NODE_ATTRIBUTE = 4, 5
ATTR_NAME, ATTR_F, ATTR_I, ATTR_S, ATTR_FLOATS, ATTR_INTS = 1, 2, 3, 4, 7, 8
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_FLOAT_DATA, TENSOR_NAME, TENSOR_RAW = 1, 2, 4, 8, 9
DTYPES = {1: np.float32, 7: np.int64, 11: np.float64}


@dataclass
class Node:
    op_type: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    nodes: list[Node]
    initializers: dict[str, np.ndarray]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _run(buf: bytes, pos: int, key: int, wire: int) -> tuple[np.ndarray, int]:
    """A run of one repeated scalar field written unpacked (``key`` before every value,
    from ``pos`` on, ``buf[pos] == key``), decoded at once: (values, position after)."""
    data = np.frombuffer(buf, np.uint8, offset=pos)
    if wire == 5:  # fixed 4-byte values: records of 5 bytes
        keys = data[: len(data) // 5 * 5 : 5]
        count = int(np.argmin(keys == key)) if not (keys == key).all() else len(keys)
        records = data[: count * 5].reshape(count, 5)[:, 1:]
        return records.copy().view("<f4").reshape(-1), pos + count * 5
    ends = np.flatnonzero(data < 0x80)  # key, value end, key, value end, ...
    starts = ends[0::2]
    stops = ends[1::2]
    n = min(len(starts), len(stops))
    ok = data[starts[:n]] == key
    ok[1:] &= starts[1:n] == stops[: n - 1] + 1
    count = int(np.argmin(ok)) if not ok.all() else n
    end = int(stops[count - 1]) + 1
    values = np.delete(data[:end], starts[:count])
    return np.array(_packed_varints(values.tobytes()), dtype=np.int64), pos + end


def _repeats(buf: bytes, pos: int, key: int, wire: int) -> bool:
    """Whether the field whose value starts at ``pos`` is followed by the same key."""
    following = pos + 4 if wire == 5 else _varint(buf, pos)[1]
    return following < len(buf) and buf[following] == key


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field in one message; a long run of one
    repeated scalar field comes back as one numpy array (wire type -1)."""
    out: list[tuple[int, int, Any]] = []
    pos, end = 0, len(buf)
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire in (0, 5) and key < 0x80 and _repeats(buf, pos, key, wire):
            array, after = _run(buf, start, key, wire)
            if len(array) > 1:
                out.append((number, -1, array))
                pos = after
                continue
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(buf: bytes) -> list[int]:
    """Decode packed varints with numpy (a pool of 250,000 n-gram ids takes milliseconds)."""
    data = np.frombuffer(buf, np.uint8)
    if data.size == 0:
        return []
    ends = np.flatnonzero(data < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    owner = np.repeat(np.arange(ends.size), ends - starts + 1)
    shift = (np.arange(data.size) - starts[owner]).astype(np.uint64) * np.uint64(7)
    parts = (data & 0x7F).astype(np.uint64) << shift
    values: list[int] = np.add.reduceat(parts, starts).view(np.int64).tolist()
    return values


def _attribute(buf: bytes) -> tuple[str, Any]:
    name, ints, floats = "", [], []
    scalar: Any = None
    for number, wire, value in _fields(buf):
        if number == ATTR_NAME:
            name = value.decode()
        elif number == ATTR_I:
            scalar = _signed(value)
        elif number == ATTR_S:
            scalar = value.decode(errors="replace")
        elif number == ATTR_F:
            scalar = float(np.frombuffer(value, "<f4")[0])
        elif number == ATTR_INTS:
            if wire == -1:
                ints.extend(value.tolist())
            else:
                ints.extend(_packed_varints(value) if wire == 2 else [_signed(value)])
        elif number == ATTR_FLOATS:
            floats.append(value if wire == -1 else np.frombuffer(value, "<f4"))
    if ints:
        return name, np.array(ints, dtype=np.int64)
    if floats:
        return name, np.concatenate(floats).astype(np.float64)
    return name, scalar


def _tensor(buf: bytes) -> tuple[str, np.ndarray]:
    name, dims, dtype, raw, floats = "", [], 1, b"", []
    for number, wire, value in _fields(buf):
        if number == TENSOR_DIMS:
            if wire == -1:
                dims.extend(value.tolist())
            else:
                dims.extend(_packed_varints(value) if wire == 2 else [value])
        elif number == TENSOR_DATA_TYPE:
            dtype = value
        elif number == TENSOR_NAME:
            name = value.decode()
        elif number == TENSOR_RAW:
            raw = value
        elif number == TENSOR_FLOAT_DATA:
            floats.append(value if wire == -1 else np.frombuffer(value, "<f4"))
    if dtype not in DTYPES:
        return name, np.zeros(0)
    array = np.frombuffer(raw, DTYPES[dtype]) if raw else np.concatenate(floats or [np.zeros(0)])
    return name, array.reshape(dims) if dims else array.reshape(())


def read_graph(data: bytes) -> Graph:
    """The nodes (op type and attributes) and initializers of an ONNX model's main graph."""
    graph = next((v for n, _, v in _fields(data) if n == MODEL_GRAPH), None)
    if graph is None:
        raise ValueError("no graph in this ONNX file")
    nodes, initializers = [], {}
    for number, _, value in _fields(graph):
        if number == GRAPH_NODE:
            node = Node("")
            for n, _, v in _fields(value):
                if n == NODE_OP_TYPE:
                    node.op_type = v.decode()
                elif n == NODE_ATTRIBUTE:
                    key, attr = _attribute(v)
                    node.attributes[key] = attr
            nodes.append(node)
        elif number == GRAPH_INITIALIZER:
            key, array = _tensor(value)
            initializers[key] = array
    return Graph(nodes, initializers)
