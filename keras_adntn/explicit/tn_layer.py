"""TNLayer: a Dense layer whose weight is a matrix product operator."""

import math

import keras
import numpy as np
from keras import activations
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

from keras_adntn.kernels.generator_spec import check_int

INPUT_ADAPTERS = (None, "pad", "dense")
CONTRACTIONS = ("auto", "sites", "kernel")
# Batch size assumed by the `contraction="auto"` cost rule.
BATCH_HINT = 32


def _prime_factors(n):
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    if n > 1:
        factors.append(n)
    return factors


def factorize(n, num_sites):
    """`num_sites` balanced factors >= 2 of `n` (all 1 if n == 1) or None.

    Prime factors are dealt, largest first, to the currently smallest
    factor; the result is sorted in decreasing order.
    """
    if n == 1:
        return (1,) * num_sites
    primes = sorted(_prime_factors(n), reverse=True)
    if len(primes) < num_sites:
        return None
    factors = [1] * num_sites
    for p in primes:
        factors[int(np.argmin(factors))] *= p
    return tuple(sorted(factors, reverse=True))


def next_factorable(n, num_sites):
    """Smallest `m >= n` that `factorize(m, num_sites)` accepts."""
    m = n if n == 1 else max(n, 2**num_sites)
    while factorize(m, num_sites) is None:
        m += 1
    return m


@keras.saving.register_keras_serializable(package="keras_adntn")
class TNLayer(keras.layers.Layer):
    """Dense layer whose weight is an MPO (Jahromi & Orús' TNLayer).

    The `(N_in, N_out)` weight is held as a matrix product operator of
    `num_sites` cores `A_k[a_{k-1}, i_k, j_k, a_k]` (`a_0 = a_N = 1`) with
    `N_in = prod i_k`, `N_out = prod j_k` and
    `W[(i_1..i_N), (j_1..j_N)] = A_1 A_2 ... A_N` (row-major site order).
    The output is `activation(x W + bias)`. Bond `k` has dimension
    `min(bond_dim, prod_{l<=k} i_l j_l, prod_{l>k} i_l j_l)`.

    Sizes: `N_in` and `units` are split into `num_sites` balanced factors
    >= 2 (a size of 1 gives factors of 1). A size with fewer than
    `num_sites` prime factors does not factor: with `input_adapter=None`
    this is a ValueError; with `"pad"` the input is zero-padded up to the
    next size that factors (`next_factorable`); with `"dense"` a frozen
    (non-trainable) glorot-uniform Dense adapter maps the input to that
    size (the paper's frozen `Dense(64)` in front of a 6-site TNLayer: an
    input of 2 features goes to 64). An unfactorable `units` is padded
    whenever an adapter is given: the MPO produces the next factorable
    width and the extra outputs are dropped.

    Contraction rule (`contraction="auto"`, decided at build time): the
    per-example cost of contracting the input with the cores site by site,
    `C_sites = sum_k J_{<k} a_{k-1} i_k j_k a_k I_{>k}`, is compared with
    forming `W` once per call, `C_form = sum_k I_{<=k} J_{<=k} a_{k-1}
    a_k` (with `I/J` the products of input/output site sizes), plus the
    matmul `N_in N_out` per example. With `b = BATCH_HINT = 32`: the
    layer contracts site by site when `b C_sites < C_form + b N_in N_out`
    and forms `W` otherwise. The choice is `contraction_mode`
    (`"sites"` or `"kernel"`).

    Args:
        units: positive int, dimensionality of the output space.
        num_sites: number of MPO cores, int >= 1.
        bond_dim: maximal bond (virtual) dimension, int >= 1.
        activation: activation of the layer output (default: none).
        use_bias: whether the layer uses a bias vector.
        input_adapter: `None` (sizes must factor), `"pad"` or `"dense"`.
        contraction: `"auto"` (default), `"sites"` or `"kernel"`.
        seed: int seed of the core (and adapter) initialisation.
        bias_initializer: initializer of the bias.
        bias_regularizer: regularizer of the bias.
        bias_constraint: constraint of the bias.
        core_regularizer: regularizer applied to every core.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor of rank >= 2 whose last axis is contracted.

    Returns:
        Tensor of shape `inputs.shape[:-1] + (units,)`.

    Attributes:
        cores: list of the `num_sites` core variables.
        input_sites, output_sites: site sizes `(i_k)` and `(j_k)`.
        bond_dims: the `num_sites - 1` inner bond dimensions.
        contraction_mode: `"sites"` or `"kernel"` (see the rule above).
        kernel: the `(N_in, N_out)` float32 weight formed from the cores.

    Example:

    >>> layer = TNLayer(64, num_sites=6, bond_dim=4)
    >>> y = layer(np.ones((3, 64), "float32"))
    >>> tuple(y.shape), layer.input_sites
    ((3, 64), (2, 2, 2, 2, 2, 2))
    """

    def __init__(
        self,
        units,
        num_sites,
        bond_dim,
        activation=None,
        use_bias=True,
        input_adapter=None,
        contraction="auto",
        seed=None,
        bias_initializer="zeros",
        bias_regularizer=None,
        bias_constraint=None,
        core_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_int("units", units, 1)
        self.num_sites = check_int("num_sites", num_sites, 1)
        self.bond_dim = check_int("bond_dim", bond_dim, 1)
        if input_adapter not in INPUT_ADAPTERS:
            raise ValueError(
                f"`input_adapter` must be one of {INPUT_ADAPTERS}, got "
                f"{input_adapter!r}."
            )
        if contraction not in CONTRACTIONS:
            raise ValueError(
                f"`contraction` must be one of {CONTRACTIONS}, got "
                f"{contraction!r}."
            )
        self.input_adapter = input_adapter
        self.contraction = contraction
        self.seed = check_int("seed", seed, 0, allow_none=True)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.bias_constraint = constraints.get(bias_constraint)
        self.core_regularizer = regularizers.get(core_regularizer)
        self.out_sites_total = self._check_units()
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def _check_units(self):
        if factorize(self.units, self.num_sites) is not None:
            return self.units
        if self.input_adapter is None:
            raise ValueError(
                f"`units`={self.units} does not factor into num_sites="
                f"{self.num_sites} factors >= 2; pass input_adapter='pad' "
                f"or 'dense' to pad the output."
            )
        return next_factorable(self.units, self.num_sites)

    def _seed(self, offset):
        return None if self.seed is None else self.seed + offset

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"TNLayer needs the last dimension of its input to be known "
                f"at build time; got input_shape={tuple(input_shape)}."
            )
        self.input_dim = int(input_dim)
        n_in = self.input_dim
        if factorize(n_in, self.num_sites) is None:
            if self.input_adapter is None:
                raise ValueError(
                    f"The input size {n_in} does not factor into num_sites="
                    f"{self.num_sites} factors >= 2; pass input_adapter="
                    f"'pad' or 'dense'."
                )
            n_in = next_factorable(n_in, self.num_sites)
        if self.input_adapter == "dense":
            self.adapter_kernel = self.add_weight(
                name="adapter_kernel",
                shape=(self.input_dim, n_in),
                initializer=initializers.GlorotUniform(self._seed(1000)),
                trainable=False,
            )
        else:
            self.adapter_kernel = None
        self.mpo_input_dim = n_in
        self.input_sites = factorize(n_in, self.num_sites)
        self.output_sites = factorize(self.out_sites_total, self.num_sites)
        self.bond_dims = self._bond_dims()
        self.cores = self._add_cores()
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.contraction_mode = self._choose_contraction()
        self.input_spec = keras.layers.InputSpec(
            min_ndim=2, axes={-1: self.input_dim}
        )

    def _bond_dims(self):
        sizes = [i * j for i, j in zip(self.input_sites, self.output_sites)]
        dims = []
        for k in range(1, self.num_sites):
            left, right = math.prod(sizes[:k]), math.prod(sizes[k:])
            dims.append(min(self.bond_dim, left, right))
        return tuple(dims)

    @property
    def core_shapes(self):
        bonds = (1,) + tuple(self.bond_dims) + (1,)
        return [
            (bonds[k], self.input_sites[k], self.output_sites[k], bonds[k + 1])
            for k in range(self.num_sites)
        ]

    def _add_cores(self):
        # Var(W) = prod_k s_k^2 * prod(bonds): calibrated to glorot.
        target = 2.0 / (self.mpo_input_dim + self.out_sites_total)
        paths = math.prod(self.bond_dims) if self.bond_dims else 1
        std = (target / paths) ** (0.5 / self.num_sites)
        cores = []
        for k, shape in enumerate(self.core_shapes):
            cores.append(
                self.add_weight(
                    name=f"core{k}",
                    shape=shape,
                    initializer=initializers.RandomNormal(
                        stddev=std, seed=self._seed(k)
                    ),
                    regularizer=self.core_regularizer,
                )
            )
        return cores

    def _costs(self):
        i_s, j_s = self.input_sites, self.output_sites
        bonds = (1,) + tuple(self.bond_dims) + (1,)
        sites = form = 0
        for k in range(self.num_sites):
            a0, a1 = bonds[k], bonds[k + 1]
            sites += (
                math.prod(j_s[:k]) * a0 * i_s[k] * j_s[k] * a1
            ) * math.prod(i_s[k + 1 :])
            form += math.prod(i_s[: k + 1]) * math.prod(j_s[: k + 1]) * a0 * a1
        return sites, form

    def _choose_contraction(self):
        if self.contraction != "auto":
            return self.contraction
        sites, form = self._costs()
        dense = self.mpo_input_dim * self.out_sites_total
        if BATCH_HINT * sites < form + BATCH_HINT * dense:
            return "sites"
        return "kernel"

    def _form_kernel(self, cores):
        g = ops.reshape(cores[0], self.core_shapes[0][1:])
        rows, cols = self.input_sites[0], self.output_sites[0]
        for k in range(1, self.num_sites):
            _, i, j, b = self.core_shapes[k]
            g = ops.einsum("pqa,aijb->piqjb", g, cores[k])
            rows, cols = rows * i, cols * j
            g = ops.reshape(g, (rows, cols, b))
        return ops.reshape(g, (rows, cols))

    @property
    def kernel(self):
        if not self.built:
            raise AttributeError("The kernel of a TNLayer needs a build.")
        return self._form_kernel(self.cores)

    def _contract_sites(self, x, cores):
        # State (P, a_{k-1}, i_k, R): P = batch x done outputs, R = the
        # inputs still to contract.
        rest = self.mpo_input_dim // self.input_sites[0]
        t = ops.reshape(x, (-1, 1, self.input_sites[0], rest))
        for k in range(self.num_sites):
            _, _, j, b = self.core_shapes[k]
            t = ops.einsum("pair,aijb->prjb", t, cores[k])
            t = ops.transpose(t, (0, 2, 3, 1))
            if k + 1 < self.num_sites:
                nxt = self.input_sites[k + 1]
                rest //= nxt
                t = ops.reshape(t, (-1, b, nxt, rest))
        return ops.reshape(t, (-1, self.out_sites_total))

    def call(self, inputs):
        dtype = self.compute_dtype
        lead = ops.shape(inputs)[:-1]
        x = ops.reshape(inputs, (-1, self.input_dim))
        if self.adapter_kernel is not None:
            x = ops.matmul(x, ops.cast(self.adapter_kernel, dtype))
        elif self.mpo_input_dim != self.input_dim:
            x = ops.pad(x, [[0, 0], [0, self.mpo_input_dim - self.input_dim]])
        cores = [ops.cast(c, dtype) for c in self.cores]
        if self.contraction_mode == "sites":
            y = self._contract_sites(x, cores)
        else:
            y = ops.matmul(x, self._form_kernel(cores))
        if self.out_sites_total != self.units:
            y = y[:, : self.units]
        if self.bias is not None:
            y = ops.add(y, self.bias)
        y = ops.reshape(y, tuple(lead) + (self.units,))
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "num_sites": self.num_sites,
                "bond_dim": self.bond_dim,
                "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "input_adapter": self.input_adapter,
                "contraction": self.contraction,
                "seed": self.seed,
                "bias_initializer": initializers.serialize(
                    self.bias_initializer
                ),
                "bias_regularizer": regularizers.serialize(
                    self.bias_regularizer
                ),
                "bias_constraint": constraints.serialize(self.bias_constraint),
                "core_regularizer": regularizers.serialize(
                    self.core_regularizer
                ),
            }
        )
        return config
