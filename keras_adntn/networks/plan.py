"""Plan: a generator network's topology, as plain data.

A network subclass describes its topology by filling a `Plan`
(`GeneratorNetwork._make_plan`): the list of cores and the list of stages
that contract them. The plan is computed once; `run_plan` walks it with an
executor (`keras.ops` in a model, NumPy at build time, where the cores are
initialised and calibrated, SPEC §4).

Stages:
- `("latent", name)`: the state becomes the latent tensor, flattened.
- `("chain", names)`: the state becomes the contraction of a tensor train
  whose core `k` has shape `(b_{k-1}, q_k, b_k)`.
- `("cycle", blocks)`: one pass over all modes of the state, in order; each
  block `(in_size, out_size, name)` contracts the leading mode(s) with a core
  reshaped to `(in_size, out_size)` and appends the result as the last mode
  (`name=None` just moves the mode to the end). After the pass the modes are
  back in order: this is how expansions and disentanglers are applied with
  rank-3 contractions only.
- `("end_level", level, activation_index)`: the end of a level; calibration
  happens here, then the level's activation (None: linear).

Every core carries a leading axis of size `groups`: grouped generation is a
batch axis of the same contractions, never a Python loop at call time.
"""

import math
from dataclasses import dataclass
from dataclasses import field

from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.core_spec import CoreSpec


@dataclass(frozen=True)
class ModeTrace:
    """The modes a plan creates (`Plan.mode_trace`).

    Attributes:
        sizes: size of every mode, by id.
        stages: per plan stage, one `(consumed ids, produced ids)` per
            contraction (cycle block or chain core; none for the others).
        leaves: the id of the mode at every leaf position of the output.
        latent: the ids of the latent tensor's modes (empty: no latent).
    """

    sizes: tuple
    stages: list
    leaves: tuple
    latent: tuple = ()


def bond(chi: int, radix: int, leaves: int) -> int:
    """Bond dimension of a leg covering `leaves` modes: `min(chi, p**n)`."""
    cap = 1
    for _ in range(leaves):
        cap *= radix
        if cap >= chi:
            return chi
    return cap


@dataclass
class Plan:
    """The cores and stages of a generator network (see the module doc).

    Attributes:
        num_modes: order N of the generated tensor.
        radix: size of every generated mode.
        groups: generators run as one batch (the cores' leading axis).
        stages: the stages, in order.
        cores: the `CoreSpec`s, in creation order (the weights' order).
        activations: one callable per activation index (`set_activations`).
        act_params: `{activation index: {param: weight name}}` of the
            learnable activations.
    """

    num_modes: int
    radix: int
    groups: int = 1
    stages: list = field(default_factory=list)
    cores: list = field(default_factory=list)
    activations: list = field(default_factory=list)
    act_params: dict = field(default_factory=dict)

    # -- filling the plan ------------------------------------------------------
    def add_stage(self, stage: tuple) -> None:
        """Appends a stage (see the module doc)."""
        self.stages.append(stage)

    def add_core(
        self, name, shape, kind, level, fan_in=None, fan_out=None, legs=None
    ) -> str:
        """Adds a core; `legs` (see `CoreSpec.legs`) marks its bond legs."""
        shape = tuple(int(s) for s in shape)
        fan_in = shape[0] if fan_in is None else fan_in
        fan_out = math.prod(shape[1:]) if fan_out is None else fan_out
        legs = tuple(
            tuple((int(size), bool(grows)) for size, grows in factors)
            for factors in (legs or ())
        )
        if legs and [math.prod(s for s, _ in f) for f in legs] != list(shape):
            raise ValueError(f"legs {legs} do not match shape {shape}.")
        self.cores.append(
            CoreSpec(name, shape, kind, level, fan_in, fan_out, legs)
        )
        return name

    def add_gate_layer(self, dims, pairs, level, name, grows=None) -> None:
        """Appends a cycle applying gates to disjoint neighbour `pairs`.

        `grows[k]`: whether mode `k` is a bond leg (default: none is).
        """
        grows = [False] * len(dims) if grows is None else list(grows)
        starts = {a: b for a, b in pairs}
        blocks, k, gate = [], 0, 0
        while k < len(dims):
            if k in starts:
                size = dims[k] * dims[k + 1]
                leg = ((dims[k], grows[k]), (dims[k + 1], grows[k + 1]))
                core = self.add_core(
                    f"{name}_{gate}",
                    (size, size),
                    "gate",
                    level,
                    fan_in=size,
                    fan_out=size,
                    legs=(leg, leg),
                )
                blocks.append((size, size, core))
                k, gate = k + 2, gate + 1
            else:
                blocks.append((dims[k], dims[k], None))
                k += 1
        self.add_stage(("cycle", blocks))

    def interleave_gates(self, start: int) -> None:
        """Rewrites the stages from `start` (an expansion cycle, then the
        cycles of its gates, `add_gate_layer`) as one cycle in which every
        gate follows the expansion that makes the later of its two modes.

        Gates act on neighbours of different parents, so a gate commutes
        with the expansions of the other parents and the result is the
        same tensor. But the state a gate reads is then the partly
        expanded one, which grows geometrically with the expansions, not
        the whole tensor; and a gate that takes the first mode of the
        expansion just made is contracted with it into one block (`_fuse`,
        `fused_core`), so the expanded state is never read on its own. The
        states the backward pass keeps then sum to about the kernel
        (once the kernel per gate before). The cycle moves (`name=None`)
        the modes before a contraction's to the end first. Left as it was
        where the modes would not come back in order (a rotation of the
        original order).
        """
        expansion, gate_stages = self.stages[start], self.stages[start + 1 :]
        sizes, ops, made = {}, [], []
        for i, (a, _, name) in enumerate(expansion[1]):
            sizes["parent", i] = a
            children = []
            for d in self.shape(name)[1:]:
                sizes[len(made)] = d
                children.append(len(made))
                made.append(len(made))
            ops.append(((("parent", i),), tuple(children), expansion[1][i]))
        gates = []  # (sublayer, first position, block)
        for s, stage in enumerate(gate_stages):
            j = 0
            for block in stage[1]:
                if block[2] is None:
                    j += 1
                    continue
                gates.append((s, j, block))
                j += 2
        order, produced, done = [], set(), set()
        for consumed, children, block in ops:
            order.append((consumed, children, block))
            produced.update(children)
            progress = True
            while progress:
                progress = False
                for s, j, block in gates:
                    ready = (s, j) not in done and {j, j + 1} <= produced
                    if ready and all(
                        (t, k) in done
                        for t, k, _ in gates
                        if t < s and {k, k + 1} & {j, j + 1}
                    ):
                        order.append(((j, j + 1), (j, j + 1), block))
                        done.add((s, j))
                        progress = True
        if len(done) != len(gates):  # pragma: no cover - plan invariant
            return
        order = self._fuse(order, sizes)
        modes = [("parent", i) for i in range(len(expansion[1]))]
        blocks = []

        def rotate(first):
            nonlocal modes
            at = modes.index(first)
            if at:
                size = math.prod(sizes[m] for m in modes[:at])
                blocks.append((size, size, None))
                modes = modes[at:] + modes[:at]

        for consumed, children, block in order:
            rotate(consumed[0])
            if tuple(modes[: len(consumed)]) != consumed:
                return  # not neighbours here: keep the plan as it was
            blocks.append(block)
            modes = modes[len(consumed) :] + list(children)
        rotate(0)
        if modes != made:
            return
        self.stages[start:] = [("cycle", blocks)]

    @staticmethod
    def _fuse(order, sizes):
        """`order` with every expansion whose first mode a gate takes next
        made one block with that gate (`("fuse", gate, expansion)`: the
        two cores contracted, `fused_core`): the expansion's output is
        then never a state of its own, the backward pass keeps the smaller
        state it reads."""
        fused, k = [], 0
        while k < len(order):
            consumed, children, block = order[k]
            nxt = order[k + 1] if k + 1 < len(order) else None
            if (
                nxt is not None
                and isinstance(consumed[0], tuple)
                and nxt[0][1:] == (children[0],)
                and nxt[0][0] not in children
            ):
                j = nxt[0][0]
                name = ("fuse", nxt[2][2], block[2])
                a = sizes[j] * block[0]
                b = sizes[j] * block[1]
                fused.append(((j, consumed[0]), (j, *children), (a, b, name)))
                k += 2
                continue
            fused.append(order[k])
            k += 1
        return fused

    def fused_core(self, name, cores, xp):
        """The core of a fused block `("fuse", gate, expansion)`: the
        expansion `(m, l, R)` (`l` its first mode) and the gate on `(x, l)`
        contracted over `l`, as `(G, x * m, o * R)` (`o`: the gate's
        outputs)."""
        _, gate, expansion = name
        g = self.groups
        m, first, *rest = self.shape(expansion)
        rest = math.prod(rest)
        size, o = self.shape(gate)
        x = size // first
        e = xp.reshape(cores[expansion], (g, m, first, rest))
        e = xp.reshape(xp.transpose(e, (0, 2, 1, 3)), (g, first, m * rest))
        t = xp.reshape(cores[gate], (g, x, first, o))
        t = xp.reshape(xp.transpose(t, (0, 1, 3, 2)), (g, x * o, first))
        f = xp.reshape(xp.matmul(t, e), (g, x, o, m, rest))
        f = xp.transpose(f, (0, 1, 3, 2, 4))
        return xp.reshape(f, (g, x * m, o * rest))

    def set_activations(self, activation) -> None:
        """Resolves `activation` (a name, callable or list, one per hidden
        level) into `activations`, and names the weights of the learnable
        ones (`act_params`)."""
        count = sum(
            1 for s in self.stages if s[0] == "end_level" and s[2] is not None
        )
        self.activations = tn_init.resolve_activations(activation, count)
        self.act_params = {}
        for stage in self.stages:
            if stage[0] != "end_level" or stage[2] is None:
                continue
            fn = self.activations[stage[2]]
            names = getattr(fn, "param_shapes", None) or {}
            if names:
                self.act_params[stage[2]] = {
                    p: f"act{stage[1]}_{p}" for p in names
                }

    # -- reading it ------------------------------------------------------------
    def spec(self, name: str) -> CoreSpec:
        """The `CoreSpec` of core `name`."""
        for c in self.cores:
            if c.name == name:
                return c
        raise KeyError(name)

    def shape(self, name: str) -> tuple:
        """The shape of core `name` (without the group axis)."""
        return self.spec(name).shape

    @property
    def num_params(self) -> int:
        """Trainable parameters (all groups): cores and activations."""
        act = sum(
            self.activations[i].param_shapes[p]
            for i, names in self.act_params.items()
            for p in names
        )
        return self.groups * (sum(math.prod(c.shape) for c in self.cores) + act)

    def activation(self, act: int, cores: dict, xp):
        """Activation `act`, a learnable one bound to its coefficients:
        from `cores` (the network's weights) or, where absent
        (calibration), its initial ones converted by `xp`."""
        fn = self.activations[act]
        names = self.act_params.get(act)
        if not names:
            return fn
        initial = None
        params = {}
        for param, name in names.items():
            if name in cores:
                params[param] = cores[name]
                continue
            if initial is None:
                initial = fn.initial_params(self.groups)
            params[param] = xp.convert(initial[param])
        return fn.bind(params)

    def schedule(self) -> str:
        """A readable listing of the contraction schedule."""
        shapes = {c.name: c.shape for c in self.cores}
        lines = []
        for stage in self.stages:
            if stage[0] == "cycle":
                ops = [
                    f"{n}{shapes[n]}"
                    if isinstance(n, str)
                    else f"{n[2]}+{n[1]}" if n else f"move({a})"
                    for a, _, n in stage[1]
                ]
                lines.append("cycle: " + " ".join(ops))
            elif stage[0] == "chain":
                lines.append(
                    "chain: " + " ".join(f"{n}{shapes[n]}" for n in stage[1])
                )
            elif stage[0] == "latent":
                lines.append(f"latent: {stage[1]}{shapes[stage[1]]}")
            else:
                act = stage[2]
                act = "linear" if act is None else self.activations[act]
                lines.append(f"end of level {stage[1]}: {act}")
        return "\n".join(lines)

    def mode_trace(self) -> ModeTrace:
        """Which modes every contraction of the plan consumes and produces.

        Modes get ids in the order they appear; the trace maps each leaf
        position of the generated tensor to the id of the mode that ends
        there, and each step to `(consumed ids, produced ids)`. A move
        (`name=None`) produces the mode it consumes. Computed once.
        """
        if self.__dict__.get("_mode_trace") is not None:
            return self._mode_trace
        sizes, stages, modes, latent = [], [], [], ()

        def new(size):
            sizes.append(int(size))
            return len(sizes) - 1

        for stage in self.stages:
            kind = stage[0]
            steps = []
            if kind == "latent":
                modes = [new(d) for d in self.shape(stage[1])]
                latent = tuple(modes)
            elif kind == "chain":
                modes = []
                for name in stage[1]:
                    _, q, _ = self.shape(name)
                    leaves = round(math.log(q, self.radix))
                    produced = [new(self.radix) for _ in range(leaves)]
                    steps.append(((), tuple(produced)))
                    modes += produced
            elif kind == "cycle":
                for a, b, name in stage[1]:
                    consumed, product = [], 1
                    while product < a:
                        product *= sizes[modes[len(consumed)]]
                        consumed.append(modes[len(consumed)])
                    if product != a:  # pragma: no cover - plan invariant
                        raise RuntimeError("a block does not consume modes.")
                    modes = modes[len(consumed) :]
                    if name is None:
                        produced = consumed
                    elif isinstance(name, tuple):  # a gate on an expansion
                        legs = self.spec(name[1]).legs[1]
                        outs = [size for size, _ in legs]
                        outs += list(self.shape(name[2])[2:])
                        produced = [new(size) for size in outs]
                    else:
                        spec = self.spec(name)
                        if len(spec.shape) == 2 and spec.legs:  # gates
                            outs = [size for size, _ in spec.legs[1]]
                        else:  # expansions: (in, *out modes)
                            outs = list(spec.shape[1:])
                        produced = [new(size) for size in outs]
                    steps.append((tuple(consumed), tuple(produced)))
                    modes = modes + produced
            stages.append(steps)
        if [sizes[m] for m in modes] != [self.radix] * self.num_modes:
            raise RuntimeError(  # pragma: no cover - plan invariant
                f"the plan does not end in {self.num_modes} modes of size "
                f"{self.radix}."
            )
        self._mode_trace = ModeTrace(tuple(sizes), stages, tuple(modes), latent)
        return self._mode_trace

    def sliced_peak(self, leaves) -> int:
        """Largest state (entries, all groups) of a run with `leaves`
        fixed (`run_plan(..., fixed=...)`): what a block of the tiled
        export holds at its widest."""
        latent, states = self.sliced_states(leaves)
        return max([latent, *states])

    def sliced_states(self, leaves) -> tuple:
        """`(latent entries, [entries after each contraction])` of a run
        with `leaves` fixed, all groups: the states a block of a tiled
        generation writes, in order."""
        trace = self.mode_trace()
        fixed = {trace.leaves[leaf] for leaf in leaves}

        def entries(ids):
            size = math.prod(1 if m in fixed else trace.sizes[m] for m in ids)
            return self.groups * size

        modes, states = [], []
        for stage, steps in zip(self.stages, trace.stages):
            if stage[0] == "latent":
                modes = list(trace.latent)
            for consumed, produced in steps:
                if stage[0] == "chain":
                    modes = modes + list(produced)
                else:
                    modes = modes[len(consumed) :] + list(produced)
                states.append(entries(modes))
        return entries(trace.latent), states
