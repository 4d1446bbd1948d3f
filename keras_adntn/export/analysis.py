"""What a flatbuffer costs and whether TensorFlow Lite Micro runs it:
`analyze_flatbuffer`, the numbers of an `ExportReport` read from the file.
"""

from collections import Counter

from keras_adntn.export.flatbuffer import Flatbuffer
from keras_adntn.export.flatbuffer import buffer_bytes
from keras_adntn.export.report import LayerExport
from keras_adntn.export.scopes import ANCHOR_ROW
from keras_adntn.export.scopes import METADATA_ROW
from keras_adntn.export.scopes import OTHER_ROW

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
    parsed = Flatbuffer(flatbuffer, layer_rows, scopes)
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
                stored[op.row] += buffer_bytes(parsed.buffers[b])
        rank = max(
            (tensors[s][t].ShapeLength() for t in op.inputs[:2]), default=0
        )
        if op.name == "TRANSPOSE":
            max_transpose_rank = max(max_transpose_rank, rank)
        _tflm_issues(parsed, op, rank, unsupported, rank_issues)
        activation_bytes += sum(parsed.nbytes(s, t) for t in op.outputs)
    peak = _main_graph_peak(parsed)
    # every buffer, also those no op reads
    total_stored = sum(
        buffer_bytes(b) for i, b in enumerate(parsed.buffers) if i > 0
    )
    unread = total_stored - sum(stored.values())
    if unread > 0:
        stored[METADATA_ROW] += unread
    rows = _layer_exports(layer_rows, histograms, stored)
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


def _tflm_issues(
    parsed: Flatbuffer, op, rank: int, unsupported: set, rank_issues: Counter
) -> None:
    """Records in `unsupported` and `rank_issues` what keeps TFLite Micro
    from running `op`: an operator it lacks, an input `rank` out of its
    kernel's limits, a transpose permutation that is not a constant."""
    if op.name not in TFLM_BUILTINS:
        unsupported.add(op.name)
    if op.name in TFLM_RANK_LIMITS:
        low, high = TFLM_RANK_LIMITS[op.name]
        if not low <= rank <= high:
            rank_issues[f"{op.name} rank {rank}"] += 1
        if op.name == "TRANSPOSE" and len(op.inputs) > 1:
            if not parsed.is_constant(op.subgraph, op.inputs[1]):
                rank_issues["TRANSPOSE non-constant perm"] += 1


def _layer_exports(layer_rows: dict, histograms: dict, stored: Counter) -> list:
    """The report's rows: one `LayerExport` per layer, then the anchor,
    other and metadata rows that hold an op or a byte."""
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
    return rows


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
