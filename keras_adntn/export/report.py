"""What an exported flatbuffer contains and costs: `ExportReport`.

Its numbers are read from the file (`keras_adntn.export.analysis`, with
`ai_edge_litert` only, no TensorFlow); the TensorFlow Lite Micro numbers
(`tflm_*` fields) come from running the file on TFLM's own interpreter
(`keras_adntn.export.tflm`).
"""

import dataclasses


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
        arena_budget: the SRAM budget (bytes) the export fitted its tensor
            arena into (the default 256 KB where none was given).
        flash_budget: the flash budget (bytes), or None.
        deployment: per planned `TNDense`, its deployment plan
            (`deployment_plan.LayerPlan.to_dict`: the chosen candidate,
            the int8 Dense twin, the rejected kinds and why, estimates).
        deployment_lines: the same, as the report prints it.
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
    flash_budget: int | None = None
    deployment: list = dataclasses.field(default_factory=list)
    deployment_lines: list = dataclasses.field(default_factory=list)
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
        if self.deployment_lines:
            lines.append("deployment plan (estimates):")
            lines += ["  " + line for line in self.deployment_lines]
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
