"""Matrix product operator / tensor train generator (multilinear)."""

import keras

from keras_adntn.networks.base import GeneratorNetwork
from keras_adntn.networks.base import bond


@keras.saving.register_keras_serializable(package="keras_adntn")
class MPO(GeneratorNetwork):
    """Tensor train over sites of two consecutive modes, no activation.

    With the `paired` mode order a site is `(i_k, o_k)`, which is the MPO
    `W[(i1..iK),(j1..jK)] = A1[i1,j1,a1] A2[a1,i2,j2,a2] ... AK[..,iK,jK]`
    of Novikov et al.; with `flat` it is a quantised tensor train of the
    flattened weight. Bond `k` has dimension
    `min(bond_dim, size left of it, size right of it)`. This is the
    multilinear baseline every nonlinear network is compared with.

    Takes the arguments of `GeneratorNetwork`; `activation`,
    `latent_order` and `depth` do not apply.

    Returns (`generate()`): `(groups, radix**num_modes)` float32.

    Example:

    >>> MPO(num_modes=24, bond_dim=2).num_params
    176
    """

    def _make_plan(self):
        n, p, chi = self.num_modes, self.radix, self.allocated_bond_dim
        sites = [2] * (n // 2) + [1] * (n % 2)
        names, left = [], 0
        for k, modes in enumerate(sites):
            b_in = 1 if k == 0 else bond(chi, p, min(left, n - left))
            left += modes
            b_out = 1 if left == n else bond(chi, p, min(left, n - left))
            legs = [((b_in, k > 0),), ((p**modes, False),)]
            legs.append(((b_out, left < n),))
            names.append(
                self._add_core(
                    f"site{k}",
                    (b_in, p**modes, b_out),
                    "readout",
                    0,
                    legs=legs,
                )
            )
        self.plan.append(("chain", names))
        self.plan.append(("end_level", 0, None))
