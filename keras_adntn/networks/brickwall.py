"""Brick-wall generator (the ADTN reference of Qing et al. 2025)."""

import keras

from keras_adntn.networks.base import GeneratorNetwork
from keras_adntn.networks.plan import bond

DEFAULT_DEPTH = 4


@keras.saving.register_keras_serializable(package="keras_adntn")
class BrickWall(GeneratorNetwork):
    """Layers of two-site gates in a brick pattern over N fixed sites.

    The latent state is a matrix product state over the `num_modes` sites
    (bond `bond_dim`; 1 gives a product state). Then `depth` (default 4)
    layers of `(p*p, p*p)` gates act on pairs (1,2),(3,4),... and
    (2,3),(4,5),... alternately, with the activation between layers (none
    after the last).

    Takes the arguments of `GeneratorNetwork`; `depth` is the number of
    gate layers, `latent_order` does not apply.

    Returns (`generate()`): `(groups, radix**num_modes)` float32.

    Example:

    >>> BrickWall(num_modes=24, bond_dim=2).num_params
    920
    """

    uses_depth = True

    def _make_plan(self):
        n, p, chi = self.num_modes, self.radix, self.allocated_bond_dim
        depth = DEFAULT_DEPTH if self.depth is None else self.depth
        layers = [
            [(j, j + 1) for j in range(t % 2, n - 1, 2)] for t in range(depth)
        ]
        layers = [pairs for pairs in layers if pairs]
        names = []
        for k in range(n):
            b_in = 1 if k == 0 else bond(chi, p, min(k, n - k))
            b_out = 1 if k == n - 1 else bond(chi, p, min(k + 1, n - k - 1))
            kind = "readout" if not layers else "hidden"
            legs = [((b_in, k > 0),), ((p, False),), ((b_out, k < n - 1),)]
            names.append(
                self.plan.add_core(
                    f"mps{k}", (b_in, p, b_out), kind, 0, legs=legs
                )
            )
        self.plan.add_stage(("chain", names))
        self.plan.add_stage(("end_level", 0, None))
        for t, pairs in enumerate(layers, start=1):
            final = t == len(layers)
            first = len(self.cores)
            self.plan.add_gate_layer([p] * n, pairs, t, f"layer{t}_gate")
            for spec in self.cores[first:]:
                spec.kind = "readout" if final else "hidden"
            self.plan.add_stage(("end_level", t, None if final else t - 1))
