"""LiteRT (TFLite) export of models with generated kernels (SPEC §9).

Modules, by role:

- `api`: `export_litert`: the export and its report;
- `options`: `ExportOptions`, the export's arguments checked once;
- `deployment_plan`: which way each TN layer runs, chosen for the
  board's flash and arena budgets (`candidates`: every way to deploy a
  `TNDense`, with estimates from `device_cost`; `cached`: a layer's
  kernel stored);
- `budget`: the device schedules converted, measured and fitted to the
  arena budget;
- `tracing`: the serving function and the generation executors;
- `schedule`: `DeviceSchedule`, how a layer multiplies on the device,
  and its budget rule;
- `tiling`, `conv_tiling`: kernels made and consumed block by block on
  the device (`DenseTiling`, `ConvTiling`);
- `contraction`: `FactorizedSchedule`, the input contracted with the cores;
- `convert`: the LiteRT converter, quantisation, parity with Keras;
- `scopes`: the graph names the trace writes and the analysis reads;
- `flatbuffer`: a flatbuffer's ops attributed to the model's layers;
- `analysis`: `analyze_flatbuffer`, sizes and TFLite Micro support;
- `report`: `ExportReport`;
- `tflm`: measurements on TensorFlow Lite Micro's interpreter;
- `compare`: every deployment mode side by side with the Dense twin;
- `remote`: the TensorFlow subprocess route for the jax / torch backends.

TensorFlow is imported lazily, only when a model is converted.
"""

from keras_adntn.export.analysis import analyze_flatbuffer
from keras_adntn.export.api import export_litert
from keras_adntn.export.compare import DeploymentTable
from keras_adntn.export.compare import compare_deployments
from keras_adntn.export.options import MODES
from keras_adntn.export.options import QUANTIZATIONS
from keras_adntn.export.options import parse_bytes
from keras_adntn.export.report import ExportReport
from keras_adntn.export.report import LayerExport

__all__ = [
    "MODES",
    "QUANTIZATIONS",
    "DeploymentTable",
    "ExportReport",
    "LayerExport",
    "analyze_flatbuffer",
    "compare_deployments",
    "export_litert",
    "parse_bytes",
]
