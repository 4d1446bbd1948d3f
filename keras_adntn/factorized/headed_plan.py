"""HeadedPlan: a tree's product with its last level, the rest formed.

A tree (`ttn`) is nonlinear up to its last level, which is linear: its
`HeadedPlan` forms the tree up to part of that level (the *head*, far
smaller than the kernel) and takes the rest of the level as the chain's
sites, so the product of `FactorizedPlan` applies.
"""

from keras_adntn.factorized.blocks import FactorizedPlan
from keras_adntn.factorized.cost import matmul_seconds

# the name of a tree's head site (`HeadedPlan`; no core has it)
HEAD = "factorized_head"


class HeadedPlan(FactorizedPlan):
    """A `FactorizedPlan` whose first site is a formed *head*: a tree's
    state after the first `head_steps` contractions of its last level
    (linear: no activation follows it), the level's other cores being the
    chain's next sites (`tree_head.TreeHead.plan`). The head holds far
    fewer numbers than the kernel and is a block of its own; the cost
    model counts forming it.

    Args:
        *args, **kwargs: those of `FactorizedPlan` (the head is its first
            site, `(1, radix**leaves, bond)`).
        head_steps: the contractions of the last level made into the head.
        head_seconds: modeled seconds of forming the head.
        generation_seconds: modeled seconds of generating the whole kernel
            (leaf order to matrix included).
    """

    def __init__(
        self, *args, head_steps, head_seconds, generation_seconds, **kwargs
    ):
        if kwargs.get("direction", "right") != "right":
            raise ValueError("a head is applied last: direction='right'.")
        super().__init__(*args, **kwargs)
        self.head_steps = int(head_steps)
        self.head_seconds = float(head_seconds)
        self.generation_seconds = float(generation_seconds)

    def _block_end(self, first, n):
        return 1 if first == 0 else n  # the head is a block of its own

    def block_matrices(self, cores, xp):
        """As `FactorizedPlan.block_matrices`; the head (`cores[HEAD]`) is
        given as its block matrix `(G, k_in * bond, k_out)`."""
        rest = [self._block_matrix(b, cores, xp) for b in self.blocks[1:]]
        return [cores[HEAD], *rest]

    def factorized_seconds(self, rows) -> float:
        """Modeled seconds of forming the head and applying the plan."""
        return super().factorized_seconds(rows) + self.head_seconds

    def generated_seconds(self, rows) -> float:
        """Modeled seconds of generating the kernel and multiplying."""
        rows = max(int(rows), 1)
        out = self.groups * self.out_dim
        return self.generation_seconds + matmul_seconds(rows, self.in_dim, out)
