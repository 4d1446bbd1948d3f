"""Training callbacks: bond growth of the generated layers; the explicit
family's DMRG sweeps and entanglement logging, re-exported."""

from keras_adntn.callbacks.bond_growth import BondGrowth
from keras_adntn.explicit.dmrg_sweep import DMRGSweep
from keras_adntn.explicit.entanglement_logger import EntanglementLogger

__all__ = ["BondGrowth", "DMRGSweep", "EntanglementLogger"]
