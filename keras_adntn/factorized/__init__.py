"""Factorized execution: `x @ W` for a generated `W`, W never formed.

Where a generator is linear in its cores (`mpo`) or up to its last level
(`ttn`), the product of an input with the kernel it generates can be
contracted from the cores. This package is the one home of that path:

- `cost`: the cost model (modeled seconds of matmuls and memory passes).
- `blocks`, `headed_plan`: `FactorizedPlan` (blocks of sites, their choice
  and application) and a tree's `HeadedPlan` (a formed head first).
- `chain`, `tree_head`: the `mpo` and `ttn` specifics.
- `table`: `FACTORIZATIONS`, the network types that can be contracted,
  and the functions callers use (`plan`, `cores`, `reason`, ...).
- `device`: the plans an export writes (`device_plan`, `least_memory`).
- `execution`: `FactorizedExecution`, a `GeneratedKernel`'s product.
"""

from keras_adntn.factorized.blocks import DIRECTIONS
from keras_adntn.factorized.blocks import OBJECTIVES
from keras_adntn.factorized.blocks import Block
from keras_adntn.factorized.blocks import FactorizedPlan
from keras_adntn.factorized.cost import MAX_BLOCK_ENTRIES
from keras_adntn.factorized.cost import MAX_HEAD_BOND
from keras_adntn.factorized.cost import move_seconds
from keras_adntn.factorized.cost import rows_of
from keras_adntn.factorized.device import MAX_DEVICE_BLOCK_ENTRIES
from keras_adntn.factorized.device import device_plan
from keras_adntn.factorized.device import least_memory
from keras_adntn.factorized.device import numpy_apply
from keras_adntn.factorized.execution import FactorizedExecution
from keras_adntn.factorized.execution import factorized_error
from keras_adntn.factorized.headed_plan import HEAD
from keras_adntn.factorized.headed_plan import HeadedPlan
from keras_adntn.factorized.table import FACTORIZATIONS
from keras_adntn.factorized.table import class_reason
from keras_adntn.factorized.table import cores
from keras_adntn.factorized.table import directions
from keras_adntn.factorized.table import last_level_cores
from keras_adntn.factorized.table import lead_sites
from keras_adntn.factorized.table import on_device
from keras_adntn.factorized.table import plan
from keras_adntn.factorized.table import reason

__all__ = [
    "Block",
    "DIRECTIONS",
    "FACTORIZATIONS",
    "FactorizedExecution",
    "FactorizedPlan",
    "HEAD",
    "HeadedPlan",
    "MAX_BLOCK_ENTRIES",
    "MAX_DEVICE_BLOCK_ENTRIES",
    "MAX_HEAD_BOND",
    "OBJECTIVES",
    "class_reason",
    "cores",
    "device_plan",
    "directions",
    "factorized_error",
    "last_level_cores",
    "lead_sites",
    "least_memory",
    "move_seconds",
    "numpy_apply",
    "on_device",
    "plan",
    "reason",
    "rows_of",
]
