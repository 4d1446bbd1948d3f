"""The factorized product of a tensor train (`mpo`): its sites, as is.

An MPO is linear in its cores: `x @ W` is taken site by site
(`FactorizedPlan`), the sites being the cores themselves (what a device
stores), in either direction.
"""

from keras_adntn.factorized.blocks import FactorizedPlan


class Chain:
    """How an `MPO`'s kernel is contracted with an input.

    Attributes:
        on_device: True: the plan's sites are the cores, so an export
            contracts them in the trace.
        directions: the directions its plans can run.
    """

    on_device = True
    directions = ("right", "left")

    def reason(self, network):
        """None: every paired MPO can be contracted."""
        del network
        return None

    def plan(
        self,
        network,
        in_dim,
        out_dim,
        rows=None,
        first_site=0,
        direction="right",
        objective="time",
        max_block_entries=None,
        head_steps=None,
    ) -> FactorizedPlan:
        """The plan of `x @ W` without forming `W`, for a kernel of
        `in_dim` rows and `out_dim` columns per group whose leaves are the
        network's `output_leaves`; `first_site > 0`: of the sites from
        there on only (a conv kernel's channel sites, `lead_sites`).
        `direction`, `objective`, `max_block_entries`: those of
        `FactorizedPlan`; `head_steps`: a tree's only (None here)."""
        if head_steps is not None:
            raise ValueError("`head_steps` is a tree's (network='ttn').")
        if network.output_leaves is None:
            raise ValueError(
                "factorized execution needs the kernel's input and output "
                "digits apart (mode_order='paired'); got "
                "mode_order='flat'."
            )
        sites = network.sites[first_site:]
        skipped = sum(m for _, m in network.sites[:first_site])
        extra = {}
        if max_block_entries is not None:
            extra["max_block_entries"] = max_block_entries
        return FactorizedPlan(
            sites,
            {name: network.plan.shape(name) for name, _ in sites},
            network.output_leaves[skipped:],
            network.radix,
            network.groups,
            in_dim,
            out_dim,
            rows=rows,
            direction=direction,
            objective=objective,
            **extra,
        )

    def cores(self, network, plan, xp=None) -> dict:
        """The sites of `plan`: the network's active cores (`xp`'s
        tensors)."""
        del plan
        return network.active_cores(xp)

    def lead_sites(self, network, leaves: int):
        """The names of the sites that hold exactly the first `leaves`
        leaves (a conv kernel's spatial digits), or None where a site
        holds digits on both sides."""
        names, count = [], 0
        for name, m in network.sites:
            if count == leaves:
                return names
            if count > leaves:
                return None
            names.append(name)
            count += m
        return names if count == leaves else None
