"""run_plan: a generator network's plan, walked with an executor.

A function of arrays: the `Plan` (plain data), the cores (`{name: array}`
of the executor's kind) and the executor (`executors.KerasOps` in a model,
`executors.NumpyOps` at build time, an export's own) give the generated
tensor. `GeneratorNetwork.generate` runs it on the layer's variables,
calibration (`initialization.calibrate`) on NumPy draws.
"""

import math


def run_plan(plan, cores: dict, xp, fixed=None, hook=None, stop=None):
    """Walks `plan` (a `networks.plan.Plan`) with executor `xp`.

    Args:
        plan: the network's `Plan`.
        cores: `{name: (groups, *shape)}` cores (and learnable activation
            coefficients) converted by `xp`.
        xp: the executor.
        fixed: None, or `{leaf position: index}` (the index a scalar of
            `xp`): generates only the slice of the tensor at those leaf
            values. The core that produces each fixed leaf last is sliced
            at its index (the contractions after it only move that mode,
            and activations are elementwise, so slicing there is exact),
            and the fixed modes have size 1 in the result. This is how an
            export generates a kernel block by block.
        hook: None, or `hook(level, final, state) -> state` called at the
            end of every level before its activation (calibration).
        stop: None, or `(stage index, steps)` of a cycle stage: returns
            the state after the first `steps` steps of that stage, the
            modes not consumed yet first, then those produced (the head
            of a tree whose last level is contracted with an input,
            `factorized.tree_head.head`).

    Returns:
        `(groups, radix**num_modes)` (fixed modes of size 1) in leaf order.
    """
    g = plan.groups
    state = None
    stages = plan.stages
    last = max(i for i, s in enumerate(stages) if s[0] == "end_level")
    trace = plan.mode_trace() if fixed else None
    fixed_ids = (
        {trace.leaves[leaf]: index for leaf, index in fixed.items()}
        if fixed
        else {}
    )

    def size(mode):
        return 1 if mode in fixed_ids else trace.sizes[mode]

    def sliced(core, a, produced, tail=1):
        """`core` `(g, a, prod(sizes of produced) * tail)` at the fixed
        indices of the modes it produces."""
        sizes = [trace.sizes[m] for m in produced]
        for j in reversed(range(len(produced))):
            if produced[j] not in fixed_ids:
                continue
            before = math.prod(sizes[:j])
            after = math.prod(sizes[j + 1 :]) * tail
            core = xp.reshape(core, (g * a * before, sizes[j], after))
            core = xp.take(core, fixed_ids[produced[j]], axis=1)
            sizes[j] = 1
        return xp.reshape(core, (g, a, math.prod(sizes) * tail))

    for index, stage in enumerate(stages):
        kind = stage[0]
        steps = trace.stages[index] if trace else None
        if kind == "latent":
            state = xp.reshape(cores[stage[1]], (g, -1))
        elif kind == "chain":
            for k, name in enumerate(stage[1]):
                b_in, q, b_out = plan.shape(name)
                core = xp.reshape(cores[name], (g, b_in, q * b_out))
                if steps and any(m in fixed_ids for m in steps[k][1]):
                    core = sliced(core, b_in, steps[k][1], tail=b_out)
                    q = math.prod(size(m) for m in steps[k][1])
                if k == 0:
                    state = xp.reshape(core, (g, q, b_out))
                    continue
                rows = state.shape[1]
                state = xp.reshape(xp.matmul(state, core), (g, rows * q, b_out))
            state = xp.reshape(state, (g, -1))
        elif kind == "cycle":
            for k, (a, b, name) in enumerate(stage[1]):
                if stop == (index, k):
                    return state
                if isinstance(name, tuple):  # a gate on an expansion
                    core = plan.fused_core(name, cores, xp)
                else:
                    core = None if name is None else cores[name]
                if steps:
                    consumed, produced = steps[k]
                    a = math.prod(size(m) for m in consumed)
                    if name is not None and any(
                        m in fixed_ids for m in produced
                    ):
                        core = sliced(xp.reshape(core, (g, a, b)), a, produced)
                    b = math.prod(size(m) for m in produced)
                rest = state.shape[1] // a
                state = xp.reshape(state, (g, a, rest))
                if name is None:
                    state = xp.transpose(state, (0, 2, 1))
                else:
                    core = xp.reshape(core, (g, a, b))
                    state = xp.lead_matmul(state, core)
                state = xp.reshape(state, (g, rest * b))
        else:
            _, level, act = stage
            if hook is not None:
                state = hook(level, index == last, state)
            if act is not None:
                state = xp.activate(plan.activation(act, cores, xp), state)
    return state
