"""LiteRT (TFLite) export of models with generated kernels (SPEC §9).

Modules, by role:

- `api`: `export_litert`, argument checks, fitting the arena budget;
- `tracing`: the serving function and the generation executors;
- `tiling`: kernels made and consumed block by block on the device;
- `convert`: the LiteRT converter, quantisation, parity with Keras;
- `report`: `ExportReport` and the flatbuffer analysis;
- `tflm`: measurements on TensorFlow Lite Micro's interpreter;
- `compare`: every deployment mode side by side with the Dense twin;
- `remote`: the TensorFlow subprocess route for the jax / torch backends.

TensorFlow is imported lazily, only when a model is converted.
"""

from keras_adntn.export.api import MODES
from keras_adntn.export.api import QUANTIZATIONS
from keras_adntn.export.api import export_litert
from keras_adntn.export.api import parse_bytes
from keras_adntn.export.compare import DeploymentTable
from keras_adntn.export.compare import compare_deployments
from keras_adntn.export.report import ExportReport
from keras_adntn.export.report import LayerExport
from keras_adntn.export.report import analyze_flatbuffer

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
