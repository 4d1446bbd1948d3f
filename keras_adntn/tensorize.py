"""Tensorisation: a weight of any shape <-> an order-N tensor of radix p.

A weight with axes `dims` (a Dense kernel `(d_in, d_out)`, a conv kernel
`(kh, kw, c_in, c_out)`, ...) is padded, split into base-`radix` digits and
laid out as `N` modes of size `radix` in a chosen *leaf order*: the order in
which a generator network produces them. `unfold` is the exact inverse of
`fold` on the unpadded region (it crops the padding away).

Mode orders:
- `"paired"` (default): every axis is padded to a power of the radix on its
  own. Digits of the last two axes (input, output) are interleaved
  `(i1, o1, i2, o2, ...)`, so input/output interactions stay local in the
  network; digits of any leading axes (the small spatial axes of a conv
  kernel) come first, each axis kept together.
- `"flat"`: the row-major flattening of the whole weight, padded to the next
  power of the radix.
"""

import math

import numpy as np

from keras_adntn.networks.executors import permute_modes

MODE_ORDERS = ("paired", "flat")


def num_digits(size: int, radix: int) -> int:
    """Smallest `k >= 1` with `radix**k >= size`."""
    k, cap = 1, radix
    while cap < size:
        k, cap = k + 1, cap * radix
    return k


class Tensorization:
    """Maps a weight of shape `dims` to `num_modes` modes of size `radix`.

    Args:
        dims: the weight's shape, a tuple of positive ints.
        radix: size of every mode, at least 2.
        mode_order: `"paired"` or `"flat"` (see the module docstring).
    """

    def __init__(self, dims, radix=2, mode_order="paired"):
        dims = tuple(int(d) for d in dims)
        if not dims or any(d < 1 for d in dims):
            raise ValueError(f"`dims` must be positive ints, got {dims}.")
        if int(radix) != radix or radix < 2:
            raise ValueError(f"`radix` must be an int >= 2, got {radix}.")
        if mode_order not in MODE_ORDERS:
            raise ValueError(
                f"`mode_order` must be one of {MODE_ORDERS}, got "
                f"{mode_order!r}."
            )
        self.dims = dims
        self.radix = int(radix)
        self.mode_order = mode_order
        if mode_order == "flat":
            self.digits = (num_digits(math.prod(dims), self.radix),)
            self.padded = (self.radix ** self.digits[0],)
            self.leaf_order = [(0, k) for k in range(self.digits[0])]
        else:
            self.digits = tuple(num_digits(d, self.radix) for d in dims)
            self.padded = tuple(self.radix**k for k in self.digits)
            self.leaf_order = self._paired_order()
        self.num_modes = len(self.leaf_order)
        axis_major = [
            (a, k) for a, n in enumerate(self.digits) for k in range(n)
        ]
        position = {leaf: i for i, leaf in enumerate(self.leaf_order)}
        # perm[j]: leaf position of the j-th digit in axis-major order.
        self.perm = [position[leaf] for leaf in axis_major]

    def _paired_order(self):
        lead = [
            (a, k)
            for a in range(len(self.digits) - 2)
            for k in range(self.digits[a])
        ]
        if len(self.digits) < 2:
            return lead + [(0, k) for k in range(self.digits[0])]
        a_in, a_out = len(self.digits) - 2, len(self.digits) - 1
        k_in, k_out = self.digits[a_in], self.digits[a_out]
        pairs = []
        for k in range(max(k_in, k_out)):
            if k < k_in:
                pairs.append((a_in, k))
            if k < k_out:
                pairs.append((a_out, k))
        return lead + pairs

    @property
    def size(self) -> int:
        """Number of entries of the generated tensor, `radix**num_modes`."""
        return self.radix**self.num_modes

    @property
    def padding_overhead(self) -> float:
        """Generated entries per weight entry, minus one (0.0 = no padding)."""
        return self.size / math.prod(self.dims) - 1.0

    def unfold(self, x, xp):
        """`(G, radix**N)` in leaf order -> `(G, *dims)`, cropping padding."""
        g = x.shape[0]
        sizes = [self.radix] * self.num_modes
        x = permute_modes(x, xp, sizes, self.perm)
        if self.mode_order == "flat":
            x = xp.crop(x, (g, math.prod(self.dims)))
        else:
            x = xp.crop(xp.reshape(x, (g, *self.padded)), (g, *self.dims))
        return xp.reshape(x, (g, *self.dims))

    def fold(self, weight):
        """NumPy `(G, *dims)` -> `(G, radix**N)` in leaf order, zero padded."""
        weight = np.asarray(weight, dtype=np.float64)
        g = weight.shape[0]
        if self.mode_order == "flat":
            weight = weight.reshape(g, -1)
        pad = [(0, 0)] + [
            (0, p - d) for p, d in zip(self.padded, weight.shape[1:])
        ]
        x = np.pad(weight, pad).reshape(g, *[self.radix] * self.num_modes)
        inverse = np.argsort(self.perm)
        x = np.transpose(x, (0, *[i + 1 for i in inverse]))
        return x.reshape(g, self.size)

    def output_leaves(self) -> tuple:
        """Per leaf, True where it is a digit of the last (output) axis
        (`"flat"`: None, the leaves are digits of the flat index)."""
        if self.mode_order == "flat":
            return None
        last = len(self.dims) - 1
        return tuple(axis == last for axis, _ in self.leaf_order)

    def valid_mask(self):
        """Boolean `(radix**N,)` in leaf order: True where the weight is."""
        return self.fold(np.ones((1, *self.dims)))[0] > 0

    def __repr__(self):
        return (
            f"Tensorization(dims={self.dims}, radix={self.radix}, "
            f"mode_order={self.mode_order!r}, num_modes={self.num_modes}, "
            f"padding_overhead={self.padding_overhead:.3f})"
        )
