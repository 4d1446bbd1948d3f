"""Matrix product operator / tensor train generator (multilinear)."""

import keras

from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.base import GeneratorNetwork
from keras_adntn.networks.plan import bond


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
    `latent_order` and `depth` do not apply. `initialization="orthogonal"`
    starts it at a Kronecker product of Haar-random orthogonal factors, one
    per site (bond channel 0; the other channels `1e-2 * N(0, 1)`): an
    orthogonal kernel up to its calibrated scale (`output_leaves` says
    which leaves are output digits).

    Returns (`generate()`): `(groups, radix**num_modes)` float32.

    Example:

    >>> MPO(num_modes=24, bond_dim=2).num_params
    176
    """

    has_orthogonal_init = True

    @property
    def sites(self) -> tuple:
        """`(core name, modes)` per site, in chain order."""
        return self._sites

    def _orthogonal_cores(self, rng, draw):
        roles = self.leaf_roles()
        left, rank = 0, 1
        for _, m in self._sites:
            outs = sum(roles[left : left + m])
            rank *= self.radix ** min(outs, m - outs)
            left += m
        outs = sum(roles)
        if rank != self.radix ** min(outs, len(roles) - outs):
            raise ValueError(
                "`generator_init='orthogonal'` needs every site of the MPO "
                "to map its input digits onto its output digits in the "
                "same direction (the kernel's larger side having the "
                "digits a site lacks), so that the Kronecker product is "
                f"(semi-)orthogonal; the leaves {self._site_roles(roles)} "
                f"give rank {rank} instead of "
                f"{self.radix ** min(outs, len(roles) - outs)}. Use "
                "generator_init='calibrated' here."
            )
        left = 0
        out = {}
        for name, m in self._sites:
            shape = draw[name].shape  # (groups, b_in, radix**m, b_out)
            core = tn_init.ORTHOGONAL_NOISE * rng.standard_normal(shape)
            for g in range(shape[0]):
                core[g, 0, :, 0] = tn_init.site_factor(
                    rng, roles[left : left + m], self.radix
                )
            out[name] = core
            left += m
        return {**draw, **out}

    def _site_roles(self, roles):
        """The sites as strings of `i` (input digit) and `o` (output)."""
        left, text = 0, []
        for _, m in self._sites:
            text.append(
                "".join("o" if r else "i" for r in roles[left : left + m])
            )
            left += m
        return "(" + ")(".join(text) + ")"

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
                self.plan.add_core(
                    f"site{k}",
                    (b_in, p**modes, b_out),
                    "readout",
                    0,
                    legs=legs,
                )
            )
        self._sites = tuple(zip(names, sites))
        self.plan.add_stage(("chain", names))
        self.plan.add_stage(("end_level", 0, None))
