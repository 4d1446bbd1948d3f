"""Training callbacks: bond growth, DMRG sweeps, entanglement logging."""

from keras_adntn.callbacks.bond_growth import BondGrowth
from keras_adntn.callbacks.dmrg_sweep import DMRGSweep
from keras_adntn.callbacks.entanglement_logger import EntanglementLogger

__all__ = ["BondGrowth", "DMRGSweep", "EntanglementLogger"]
