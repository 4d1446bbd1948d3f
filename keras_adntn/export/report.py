"""What an exported flatbuffer contains and costs: `ExportReport`.

Reading a flatbuffer needs only `ai_edge_litert` (its schema module), not
TensorFlow. The TensorFlow Lite Micro numbers (`tflm_*` fields) come from
running the file on TFLM's own interpreter (`keras_adntn.export.tflm`).
"""

import dataclasses
from collections import Counter

import numpy as np

# Builtin operators of TensorFlow Lite Micro (its MicroMutableOpResolver).
# GELU is deliberately absent (SPEC §9).
TFLM_BUILTINS = frozenset(
    """
    ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL
    BATCH_TO_SPACE_ND BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL
    CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE DEPTHWISE_CONV_2D
    DEQUANTIZE DIV ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR
    FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL
    HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG
    LOG_SOFTMAX LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC MAX_POOL_2D
    MAXIMUM MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU
    QUANTIZE READ_VARIABLE REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE
    RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2
    SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V
    SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH
    TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE
    WHILE ZEROS_LIKE
    """.split()
)
# Rank limits of TFLite Micro kernels: op -> (lowest, highest) input rank.
TFLM_RANK_LIMITS = {
    "TRANSPOSE": (1, 5),
    "BATCH_MATMUL": (2, 5),
    "STRIDED_SLICE": (1, 4),
}

ANCHOR_SCOPE = "adntn_anchor"
OTHER_ROW = "(other)"
ANCHOR_ROW = "(anchor)"
METADATA_ROW = "(metadata)"


@dataclasses.dataclass
class LayerExport:
    """One row of an `ExportReport`.

    Attributes:
        name: the Keras layer name (or `"(anchor)"`, `"(other)"`,
            `"(metadata)"`).
        class_name: the layer's class name ("" for the pseudo rows).
        params: the layer's Keras parameter count.
        stored_bytes: bytes of the constant buffers its ops read.
        ops: op histogram `{builtin name: count}` of its ops.
    """

    name: str
    class_name: str
    params: int
    stored_bytes: int
    ops: dict


@dataclasses.dataclass
class ExportReport:
    """What an exported LiteRT flatbuffer contains and costs.

    Attributes:
        path: the written `.tflite` file.
        mode: `"cached"` or `"on_the_fly"`.
        quantize: None, `"int8"` or `"float16"`.
        route: `"in-process"`, or `"subprocess"` (non-TensorFlow backend).
        file_bytes: size of the flatbuffer: the flash it needs.
        params: Keras parameter count of the model.
        stored_bytes: bytes of all constant buffers (weights, cores, shape
            and permutation constants).
        ops: op histogram of the whole graph (every subgraph).
        layers: per-layer rows (`LayerExport`), then `(anchor)` (the
            on-the-fly anchor), `(other)` (ops of no layer) and
            `(metadata)` (buffers no op reads: conversion metadata).
        tflm_unsupported: op names TFLite Micro lacks (custom and Flex ops
            included).
        tflm_rank_issues: ops outside TFLite Micro's rank limits, e.g.
            `"TRANSPOSE rank 6 x2"`.
        max_transpose_rank: highest TRANSPOSE rank in the graph (0: none).
        activation_bytes: sum of the sizes of all non-constant tensors (what
            a tensor arena without any buffer reuse would need).
        peak_activation_bytes: largest total size of the non-constant
            tensors of the main graph alive at once when its ops run in
            order: an estimate only (loop bodies are not counted); the
            measured arena is `tflm_arena_bytes`.
        parity_rel_error: `max|LiteRT - Keras| / max|Keras|` on one check
            input (standard normal noise; for int8 the first calibration
            sample), run with `ai_edge_litert` at export time (None where
            the inputs or outputs could not be matched). The export warns
            when it exceeds 1e-3 (float32) or 2e-2 (float16).
        float_ops: histogram of the ops with a float32 output, QUANTIZE /
            DEQUANTIZE aside: in an int8 model, the ops left in float.
        arena_budget: the SRAM budget (bytes) the export was asked to fit
            its tensor arena into, or None.
        tiles: `{layer name: number of blocks}` of the layers whose kernel
            is generated block by block on the device (on-the-fly mode).
        tflm_arena_bytes: the smallest `arena_size` with which TensorFlow
            Lite Micro's interpreter allocates and runs the file, measured
            (None: `tflite-micro` is not installed).
        tflm_latency_s: seconds per invocation on the TFLM interpreter
            (host reference kernels: meaningful only as a ratio).
        tflm_parity_rel_error: like `parity_rel_error`, for the TFLM run.
        warnings: what the export warned about (e.g. the arena over the
            budget).
    """

    path: str
    mode: str
    quantize: str | None
    route: str
    file_bytes: int
    params: int
    stored_bytes: int
    ops: dict
    layers: list
    tflm_unsupported: list
    tflm_rank_issues: list
    max_transpose_rank: int
    activation_bytes: int
    peak_activation_bytes: int
    parity_rel_error: float | None = None
    float_ops: dict = dataclasses.field(default_factory=dict)
    arena_budget: int | None = None
    tiles: dict = dataclasses.field(default_factory=dict)
    tflm_arena_bytes: int | None = None
    tflm_latency_s: float | None = None
    tflm_parity_rel_error: float | None = None
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def tflm_compatible(self) -> bool:
        """True when every op is a TFLite Micro builtin within its limits."""
        return not self.tflm_unsupported and not self.tflm_rank_issues

    @property
    def builtin_only(self) -> bool:
        """True when the graph has no custom (or Flex) op."""
        return not any(name.startswith("CUSTOM") for name in self.ops)

    @property
    def within_budget(self) -> bool | None:
        """Whether the measured TFLM arena fits `arena_budget` (None when
        either is unknown)."""
        if self.arena_budget is None or self.tflm_arena_bytes is None:
            return None
        return self.tflm_arena_bytes <= self.arena_budget

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ExportReport":
        """Inverse of `to_dict`."""
        data = dict(data)
        data["layers"] = [LayerExport(**row) for row in data["layers"]]
        return cls(**data)

    def __str__(self) -> str:
        head = (
            f"LiteRT export {self.path}\n"
            f"mode={self.mode} quantize={self.quantize} route={self.route} "
            f"file={self.file_bytes:,} bytes"
        )
        rows = [("layer", "class", "params", "stored bytes", "ops")]
        for row in self.layers:
            rows.append(
                (
                    row.name,
                    row.class_name,
                    f"{row.params:,}",
                    f"{row.stored_bytes:,}",
                    format_ops(row.ops),
                )
            )
        rows.append(
            (
                "total",
                "",
                f"{self.params:,}",
                f"{self.stored_bytes:,}",
                format_ops(self.ops),
            )
        )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [head]
        for k, r in enumerate(rows):
            cells = [
                r[0].ljust(widths[0]),
                r[1].ljust(widths[1]),
                r[2].rjust(widths[2]),
                r[3].rjust(widths[3]),
                r[4],
            ]
            lines.append("  ".join(cells))
            if k == 0 or k == len(rows) - 2:
                lines.append("-" * (sum(widths) + 8 + 20))
        if self.tflm_compatible:
            lines.append("TFLite Micro: every op is a supported builtin.")
        else:
            issues = list(self.tflm_unsupported) + list(self.tflm_rank_issues)
            lines.append("TFLite Micro issues: " + ", ".join(issues))
        if self.quantize == "int8":
            lines.append(
                "int8 model, ops left in float32: "
                + (format_ops(self.float_ops) or "none")
            )
        if self.tiles:
            lines.append(
                "generated block by block on the device: "
                + ", ".join(f"{k} {v} blocks" for k, v in self.tiles.items())
            )
        if self.parity_rel_error is not None:
            lines.append(
                f"parity vs Keras (check input): max|diff|/max|output| = "
                f"{self.parity_rel_error:.2e}"
            )
        if self.tflm_arena_bytes is not None:
            budget = ""
            if self.arena_budget is not None:
                verdict = "within" if self.within_budget else "OVER"
                budget = f" ({verdict} the budget of {self.arena_budget:,})"
            lines.append(
                f"TFLite Micro (measured): arena {self.tflm_arena_bytes:,} "
                f"bytes{budget}, {1e3 * self.tflm_latency_s:.2f} ms per "
                f"invoke (host reference kernels), parity "
                f"{self.tflm_parity_rel_error:.2e}"
            )
        else:
            lines.append(
                "TFLite Micro: not measured (pip install tflite-micro); "
                f"main-graph peak estimate {self.peak_activation_bytes:,} "
                "bytes"
            )
        return "\n".join(lines)


def format_ops(histogram: dict) -> str:
    """`"ADD x2, ELU x1"` from an op histogram."""
    return ", ".join(f"{k} x{v}" for k, v in sorted(histogram.items()))


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


def _buffer_bytes(buffer):
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


class _Flatbuffer:
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
        return 0 < b < len(self.buffers) and (
            _buffer_bytes(self.buffers[b]) > 0
        )

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
    parsed = _Flatbuffer(flatbuffer, layer_names, scopes)
    names = []
    for op in parsed.ops():
        if op.row in rows:
            names += [n for n in op.output_names if n]
    return names


def analyze_flatbuffer(
    flatbuffer: bytes, layers=(), scopes: dict | None = None
) -> dict:
    """Op histograms, constant bytes and memory estimates of a flatbuffer.

    Args:
        flatbuffer: the `.tflite` bytes.
        layers: `(name, class_name, params)` of the model's top-level layers.
        scopes: `{layer name: graph name scope}` used to attribute ops (by
            their output tensor names) to layers; ops of no layer go to the
            `(anchor)` / `(other)` rows, constants to the layer of their
            first reader, ops of a loop body to the layer of its loop.

    Returns:
        A dict with the `ExportReport` fields `stored_bytes`, `ops`,
        `layers`, `tflm_unsupported`, `tflm_rank_issues`,
        `max_transpose_rank`, `activation_bytes`, `peak_activation_bytes`,
        `float_ops`.
    """
    layer_rows = {name: (cls, params) for name, cls, params in layers}
    parsed = _Flatbuffer(flatbuffer, layer_rows, scopes)
    histograms = {name: Counter() for name in layer_rows}
    for name in (ANCHOR_ROW, OTHER_ROW, METADATA_ROW):
        histograms[name] = Counter()
    stored, float_ops = Counter(), Counter()
    seen_buffers = set()
    unsupported, rank_issues = set(), Counter()
    max_transpose_rank = 0
    activation_bytes = 0
    tensors = parsed.tensors
    for op in parsed.ops():
        s = op.subgraph
        histograms[op.row][op.name] += 1
        if op.name not in ("QUANTIZE", "DEQUANTIZE") and any(
            parsed.type_names.get(tensors[s][t].Type()) == "FLOAT32"
            for t in op.outputs
        ):
            float_ops[op.name] += 1
        for t in op.inputs:
            b = tensors[s][t].Buffer()
            if parsed.is_constant(s, t) and b not in seen_buffers:
                seen_buffers.add(b)
                stored[op.row] += _buffer_bytes(parsed.buffers[b])
        if op.name not in TFLM_BUILTINS:
            unsupported.add(op.name)
        rank = max(
            (tensors[s][t].ShapeLength() for t in op.inputs[:2]), default=0
        )
        if op.name == "TRANSPOSE":
            max_transpose_rank = max(max_transpose_rank, rank)
        if op.name in TFLM_RANK_LIMITS:
            low, high = TFLM_RANK_LIMITS[op.name]
            if not low <= rank <= high:
                rank_issues[f"{op.name} rank {rank}"] += 1
            if op.name == "TRANSPOSE" and len(op.inputs) > 1:
                if not parsed.is_constant(s, op.inputs[1]):
                    rank_issues["TRANSPOSE non-constant perm"] += 1
        activation_bytes += sum(parsed.nbytes(s, t) for t in op.outputs)
    peak = _main_graph_peak(parsed)
    # every buffer, also those no op reads
    total_stored = sum(
        _buffer_bytes(b) for i, b in enumerate(parsed.buffers) if i > 0
    )
    unread = total_stored - sum(stored.values())
    if unread > 0:
        stored[METADATA_ROW] += unread
    rows = []
    for name, (cls, params) in layer_rows.items():
        rows.append(
            LayerExport(
                name=name,
                class_name=cls,
                params=params,
                stored_bytes=int(stored[name]),
                ops=dict(histograms[name]),
            )
        )
    for name in (ANCHOR_ROW, OTHER_ROW, METADATA_ROW):
        if histograms[name] or stored[name]:
            rows.append(
                LayerExport(
                    name=name,
                    class_name="",
                    params=0,
                    stored_bytes=int(stored[name]),
                    ops=dict(histograms[name]),
                )
            )
    total_ops = Counter()
    for h in histograms.values():
        total_ops.update(h)
    return dict(
        stored_bytes=int(total_stored),
        ops=dict(total_ops),
        layers=rows,
        tflm_unsupported=sorted(unsupported),
        tflm_rank_issues=[f"{k} x{v}" for k, v in sorted(rank_issues.items())],
        max_transpose_rank=int(max_transpose_rank),
        activation_bytes=int(activation_bytes),
        peak_activation_bytes=int(peak),
        float_ops=dict(float_ops),
    )


def _main_graph_peak(parsed):
    """Largest total size of the main graph's non-constant tensors alive
    at once, ops run in order (inputs and outputs of the running op
    included)."""
    graph = parsed.graphs[0]
    operators = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    last_use = {}
    for k, op in enumerate(operators):
        for t in op.InputsAsNumpy() if op.InputsLength() else []:
            last_use[int(t)] = k
    for t in graph.OutputsAsNumpy() if graph.OutputsLength() else []:
        last_use[int(t)] = len(operators)
    live = {
        int(t): parsed.nbytes(0, int(t))
        for t in (graph.InputsAsNumpy() if graph.InputsLength() else [])
    }
    peak = sum(live.values())
    for k, op in enumerate(operators):
        for t in op.OutputsAsNumpy() if op.OutputsLength() else []:
            live[int(t)] = parsed.nbytes(0, int(t))
        peak = max(peak, sum(live.values()))
        for t in list(live):
            if last_use.get(t, -1) <= k:
                del live[t]
    return peak
