"""The explicit-weight family: tensor-network layers whose cores are the
weights themselves (not generators of a kernel).

`TNLayer` (the Jahromi–Orús MPO layer) with its `DMRGSweep` callback and
entanglement diagnostics (`entanglement`, `EntanglementLogger`), and the
Deep Tree Tensor Network: `AIM` blocks and `build_dttn`.
"""

from keras_adntn.explicit import entanglement
from keras_adntn.explicit.aim import AIM
from keras_adntn.explicit.dmrg_sweep import DMRGSweep
from keras_adntn.explicit.dttn import build_dttn
from keras_adntn.explicit.entanglement import plot_entanglement
from keras_adntn.explicit.entanglement_logger import EntanglementLogger
from keras_adntn.explicit.tn_layer import TNLayer

__all__ = [
    "AIM",
    "DMRGSweep",
    "EntanglementLogger",
    "TNLayer",
    "build_dttn",
    "entanglement",
    "plot_entanglement",
]
