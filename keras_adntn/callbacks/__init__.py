"""Training callbacks for the MPO layers."""

from keras_adntn.callbacks.dmrg_sweep import DMRGSweep
from keras_adntn.callbacks.entanglement_logger import EntanglementLogger

__all__ = ["DMRGSweep", "EntanglementLogger"]
