"""Every deployment of a model side by side, measured on TensorFlow Lite Micro.

`compare_deployments` exports the model in each mode and runs every file on
the TFLM interpreter: flash (file bytes), arena (the smallest that runs),
latency as a ratio to the *Dense twin* and parity with Keras. The Dense
twin is the cached int8 export: the generated kernels stored as ordinary
int8 FULLY_CONNECTED / CONV_2D weights, i.e. exactly what the same model
with Dense / Conv2D layers costs on the device.
"""

import dataclasses
import os

import numpy as np

from keras_adntn.export.api import export_litert
from keras_adntn.export.options import parse_bytes

# (label, mode, quantize); the first row is the reference (the twin).
DEPLOYMENTS = (
    ("Dense twin (cached int8)", "cached", "int8"),
    ("cached float32", "cached", None),
    ("on the fly float32", "on_the_fly", None),
    ("on the fly int8", "on_the_fly", "int8"),
)
# rows added where the model has a layer that the factorized mode contracts
FACTORIZED_DEPLOYMENTS = (
    ("factorized float32", "factorized", None),
    ("factorized int8", "factorized", "int8"),
)
# the export's default (`mode="auto"`: the deployment plan), last
PLANNED_DEPLOYMENTS = (
    ("default plan float32", "auto", None),
    ("default plan int8", "auto", "int8"),
)


@dataclasses.dataclass
class Deployment:
    """One row of a `DeploymentTable`.

    Attributes:
        label: what is deployed.
        mode: `"cached"`, `"on_the_fly"` or `"factorized"`.
        quantize: None or `"int8"`.
        path: the `.tflite` file.
        flash_bytes: the file's size.
        arena_bytes: the smallest TFLM arena that runs it (None: not
            measured).
        latency_ratio: TFLM latency over the twin's (None: not measured).
        parity_rel_error: `max|TFLM - Keras| / max|Keras|` (LiteRT where
            TFLM was not run).
        tiles: `{layer: blocks}` of the tiled layers.
    """

    label: str
    mode: str
    quantize: str | None
    path: str
    flash_bytes: int
    arena_bytes: int | None
    latency_ratio: float | None
    parity_rel_error: float | None
    tiles: dict


@dataclasses.dataclass
class DeploymentTable:
    """`compare_deployments`' result; `str()` prints the table.

    Attributes:
        rows: one `Deployment` per mode, the Dense twin first.
        arena_budget: the budget the on-the-fly exports were fitted to.
        calibration: where the int8 calibration data came from.
    """

    rows: list
    arena_budget: int | None
    calibration: str

    @property
    def twin_wins(self) -> bool:
        """Whether the Dense twin (the first row) is at most as large and
        as slow as every other deployment measured."""
        twin = self.rows[0]
        return all(
            row.flash_bytes >= twin.flash_bytes
            and row.latency_ratio is not None
            and row.latency_ratio >= 1.0
            for row in self.rows[1:]
        )

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        header = ("deployment", "flash", "arena (TFLM)", "latency", "error")
        lines = [header]
        for row in self.rows:
            lines.append(
                (
                    row.label,
                    _kib(row.flash_bytes),
                    "-" if row.arena_bytes is None else _kib(row.arena_bytes),
                    "-"
                    if row.latency_ratio is None
                    else f"{row.latency_ratio:.2f}x",
                    "-"
                    if row.parity_rel_error is None
                    else f"{row.parity_rel_error:.1e}",
                )
            )
        widths = [max(len(r[i]) for r in lines) for i in range(5)]
        out = []
        for k, r in enumerate(lines):
            cells = [r[0].ljust(widths[0])] + [
                r[i].rjust(widths[i]) for i in range(1, 5)
            ]
            out.append("  ".join(cells))
            if k == 0:
                out.append("-" * (sum(widths) + 8))
        budget = (
            "no arena budget"
            if self.arena_budget is None
            else f"arena budget {_kib(self.arena_budget)}"
        )
        tiles = {k: v for row in self.rows for k, v in row.tiles.items()}
        notes = [
            f"{budget}; latency: TFLM host reference kernels, ratio to the "
            f"Dense twin; error: max|TFLM - Keras| / max|Keras|; int8 "
            f"calibrated on {self.calibration}."
        ]
        if tiles:
            notes.append(
                "tiled on the device: "
                + ", ".join(f"{k} {v} blocks" for k, v in tiles.items())
            )
        if self.twin_wins:
            twin = self.rows[0]
            lightest = min(self.rows[1:], key=lambda r: r.flash_bytes)
            notes.append(
                f"The Dense twin wins here: {_kib(twin.flash_bytes)} and "
                f"the fastest, against at least {_kib(lightest.flash_bytes)}"
                f" ({lightest.label}, {lightest.latency_ratio:.2f}x its "
                f"latency) for every TN deployment: use Dense layers."
            )
        return "\n".join(out + notes)


def _kib(value: int) -> str:
    return f"{value / 1024:,.1f} KB"


def compare_deployments(
    model,
    directory: str,
    *,
    arena_budget: int | str | None = None,
    representative_dataset=None,
    batch_size: int = 1,
) -> DeploymentTable:
    """Exports `model` in every deployment mode and measures each on TFLM.

    Args:
        model: a built Keras model.
        directory: where the `.tflite` files are written.
        arena_budget: SRAM budget for the on-the-fly exports (bytes or a
            string such as `"256K"`).
        representative_dataset: int8 calibration data (see
            `export_litert`); None calibrates on 100 standard normal
            inputs (fine for sizes, pessimistic for accuracy).
        batch_size: static batch size of the exported inputs.

    Returns:
        A `DeploymentTable` (the Dense twin first).
    """
    budget = parse_bytes(arena_budget)
    calibration = "the given data"
    if representative_dataset is None:
        rng = np.random.default_rng(0)
        representative_dataset = [
            rng.standard_normal((100, *tuple(inp.shape)[1:])).astype("float32")
            for inp in model.inputs
        ]
        if len(representative_dataset) == 1:
            representative_dataset = representative_dataset[0]
        calibration = "standard normal noise"
    os.makedirs(directory, exist_ok=True)
    reports = []
    for label, mode, quantize in _deployments(model):
        name = f"{mode}_{quantize or 'float32'}.tflite"
        reports.append(
            (
                label,
                export_litert(
                    model,
                    os.path.join(directory, name),
                    mode=mode,
                    quantize=quantize,
                    representative_dataset=representative_dataset
                    if quantize == "int8"
                    else None,
                    arena_budget=budget if mode != "cached" else None,
                    batch_size=batch_size,
                ),
            )
        )
    twin = reports[0][1].tflm_latency_s
    rows = []
    for label, report in reports:
        latency = report.tflm_latency_s
        rows.append(
            Deployment(
                label=label,
                mode=report.mode,
                quantize=report.quantize,
                path=report.path,
                flash_bytes=report.file_bytes,
                arena_bytes=report.tflm_arena_bytes,
                latency_ratio=None
                if latency is None or not twin
                else latency / twin,
                parity_rel_error=report.parity_rel_error
                if report.tflm_parity_rel_error is None
                else report.tflm_parity_rel_error,
                tiles=report.tiles,
            )
        )
    return DeploymentTable(rows, budget, calibration)


def _deployments(model):
    """`DEPLOYMENTS`, plus the factorized rows where a layer of `model`
    is contracted with its cores (elsewhere they equal the on-the-fly
    rows), then the default plan's rows."""
    from keras_adntn.export.contraction import FactorizedSchedule
    from keras_adntn.export.headed_contraction import HeadedSchedule
    from keras_adntn.export.tracing import generating_layers

    if any(
        FactorizedSchedule.applies(x) or HeadedSchedule.applies(x)
        for x in generating_layers(model)
    ):
        return DEPLOYMENTS + FACTORIZED_DEPLOYMENTS + PLANNED_DEPLOYMENTS
    return DEPLOYMENTS + PLANNED_DEPLOYMENTS
