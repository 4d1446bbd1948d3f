"""Reading a LiteRT flatbuffer: its ops, attributed to the model's layers.

Needs only `ai_edge_litert` (its schema module), not TensorFlow. Used by
the report's analysis (`analysis.analyze_flatbuffer`) and by the int8
conversion, which leaves the ops of the generating layers in float
(`op_names_of`).
"""

import dataclasses

import numpy as np

from keras_adntn.export.scopes import ANCHOR_ROW
from keras_adntn.export.scopes import ANCHOR_SCOPE
from keras_adntn.export.scopes import OTHER_ROW

_TYPE_BYTES = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "INT32": 4,
    "UINT8": 1,
    "INT64": 8,
    "BOOL": 1,
    "INT16": 2,
    "INT8": 1,
    "FLOAT64": 8,
    "UINT32": 4,
    "UINT16": 2,
    "INT4": 1,
    "BFLOAT16": 2,
    "COMPLEX64": 8,
}


def _enum_names(enum):
    return {
        v: k
        for k, v in vars(enum).items()
        if not k.startswith("_") and isinstance(v, int)
    }


def buffer_bytes(buffer):
    if buffer is None:
        return 0
    if buffer.Offset() > 1:
        return int(buffer.Size())
    return int(buffer.DataLength())


@dataclasses.dataclass
class _Op:
    subgraph: int
    name: str  # builtin name, or CUSTOM(...)
    row: str  # the layer (or pseudo row) it is attributed to
    inputs: list
    outputs: list
    output_names: list


class Flatbuffer:
    """A parsed flatbuffer and its ops attributed to layers."""

    def __init__(self, flatbuffer, layer_names=(), scopes=None):
        from ai_edge_litert import schema_py_generated as schema

        self.op_names = _enum_names(schema.BuiltinOperator)
        self.type_names = _enum_names(schema.TensorType)
        self.model = schema.Model.GetRootAsModel(flatbuffer, 0)
        model = self.model
        self.buffers = [model.Buffers(i) for i in range(model.BuffersLength())]
        self.scopes = dict(scopes or {})
        self.rows = set(layer_names)
        self.graphs = [
            model.Subgraphs(s) for s in range(model.SubgraphsLength())
        ]
        self.tensors = [
            [g.Tensors(i) for i in range(g.TensorsLength())]
            for g in self.graphs
        ]

    def owner(self, name):
        for piece in name.split(";"):
            if piece.startswith(ANCHOR_SCOPE + "/"):
                parts = piece.split("/")
                if len(parts) > 2 and parts[1] in self.rows:
                    return parts[1]
                return ANCHOR_ROW
            best = None
            for layer, scope in self.scopes.items():
                if piece == scope or piece.startswith(scope + "/"):
                    if best is None or len(scope) > len(self.scopes[best]):
                        best = layer
            if best is not None:
                return best
        return OTHER_ROW

    def is_constant(self, s, t):
        b = self.tensors[s][t].Buffer()
        return 0 < b < len(self.buffers) and (buffer_bytes(self.buffers[b]) > 0)

    def nbytes(self, s, t):
        tensor = self.tensors[s][t]
        shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else []
        size = int(np.prod([max(int(d), 1) for d in shape]))
        type_name = self.type_names.get(tensor.Type(), "FLOAT32")
        return size * _TYPE_BYTES.get(type_name, 4)

    def tensor_name(self, s, t):
        name = self.tensors[s][t].Name()
        return name.decode() if name else ""

    def ops(self):
        """Every op of every subgraph (`_Op`), in order. Ops of a loop
        body or condition belong to the layer whose ops call it."""
        calls = {}  # subgraph -> row of the op that calls it
        ops = []
        for s, graph in enumerate(self.graphs):
            producer = {}
            for k in range(graph.OperatorsLength()):
                op = graph.Operators(k)
                code = self.model.OperatorCodes(op.OpcodeIndex())
                number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                name = self.op_names.get(number, f"BUILTIN_{number}")
                if name == "CUSTOM":
                    custom = code.CustomCode()
                    name = f"CUSTOM({custom.decode() if custom else '?'})"
                inputs = op.InputsAsNumpy() if op.InputsLength() else []
                inputs = [int(t) for t in inputs if t >= 0]
                outputs = [
                    int(t)
                    for t in (op.OutputsAsNumpy() if op.OutputsLength() else [])
                ]
                # Outputs carry the op's scope, except the graph outputs,
                # which are renamed: fall back on the names of the constants
                # read, then on the layer that produced an input.
                row = OTHER_ROW
                for t in outputs + [
                    t for t in inputs if self.is_constant(s, t)
                ]:
                    row = self.owner(self.tensor_name(s, t))
                    if row != OTHER_ROW:
                        break
                if row == OTHER_ROW:
                    for t in inputs:
                        if producer.get(t) in self.rows:
                            row = producer[t]
                            break
                if row == OTHER_ROW and s in calls:
                    row = calls[s]
                for t in outputs:
                    producer[t] = row
                if name in ("WHILE", "IF", "CALL_ONCE"):
                    for sub in _called_subgraphs(op, name):
                        calls.setdefault(sub, row)
                ops.append(
                    _Op(
                        s,
                        name,
                        row,
                        inputs,
                        outputs,
                        [self.tensor_name(s, t) for t in outputs],
                    )
                )
        return ops


def _called_subgraphs(op, name):
    from ai_edge_litert import schema_py_generated as schema

    table = op.BuiltinOptions()
    if table is None:
        return []
    if name == "WHILE":
        options = schema.WhileOptions()
        options.Init(table.Bytes, table.Pos)
        return [options.CondSubgraphIndex(), options.BodySubgraphIndex()]
    if name == "IF":
        options = schema.IfOptions()
        options.Init(table.Bytes, table.Pos)
        return [options.ThenSubgraphIndex(), options.ElseSubgraphIndex()]
    options = schema.CallOnceOptions()
    options.Init(table.Bytes, table.Pos)
    return [options.InitSubgraphIndex()]


def op_names_of(flatbuffer: bytes, rows, layer_names=(), scopes=None) -> list:
    """Output tensor names of the ops attributed to any of `rows` (ops of
    the subgraphs they call included): what the int8 quantiser is told to
    leave in float."""
    parsed = Flatbuffer(flatbuffer, layer_names, scopes)
    names = []
    for op in parsed.ops():
        if op.row in rows:
            names += [n for n in op.output_names if n]
    return names
