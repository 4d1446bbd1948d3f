"""The per-model deployment plan: which way each TN layer runs on the board.

`plan_model` weighs every `TNDense`'s and `TNConv2D`'s candidates
(`candidates.Candidate`: factorized, headed, on the fly, cached, each
sized every way it can be) against the board's budgets, before anything
is converted:

1. Each layer keeps the candidates whose estimated arena fits the arena
   budget (the model's arena is its largest live set, so each layer must
   fit on its own). Where none does, an explicit `arena_budget` raises a
   `ValueError` naming the layer and the smallest arena and flash that
   are possible; the default budget (`options.DEFAULT_ARENA_BUDGET`)
   takes the layer's smallest arena and says so.
2. Flash adds up over the layers. With a `flash_budget`, the plan is the
   fastest combination within it (a `ValueError` where even the smallest
   is over it). Without one the export keeps the compression: the
   fastest combination within `FLASH_SLACK` times the smallest flash
   that fits the arena.

The chosen schedules are then converted and measured on TFLM where it is
installed (`budget.fit` refines the blocks there, and the export plans
the largest layer again where the measured arena is over the budget).
The plan keeps, per layer, the chosen candidate, the best rejected one
of every other kind with the reason, and the int8 Dense twin, and says
where the twin is smaller and faster than every deployment of the
layer.
"""

import dataclasses

from keras_adntn.export import candidates as candidates_module
from keras_adntn.export.candidates import Candidate

# Without a flash budget: the fastest plan within this factor of the
# smallest flash that fits the arena.
FLASH_SLACK = 1.5
# Pareto sets of partial plans are thinned to this many (many layers).
_MAX_PARTIAL = 4096


@dataclasses.dataclass
class LayerPlan:
    """One layer's deployment in a `DeploymentPlan`.

    Attributes:
        chosen: the `Candidate` deployed.
        twin: the int8 Dense twin's `Candidate` (the reference).
        rejected: `(candidate, why)` for the best candidate of every
            other kind.
        note: why the layer could not be planned as asked (else "").
    """

    chosen: Candidate
    twin: Candidate
    rejected: list
    note: str = ""

    @property
    def is_twin(self) -> bool:
        """Whether the layer is deployed as its twin (its int8 kernel)."""
        return self.chosen.kind == "cached" and (
            self.chosen.flash_bytes <= self.twin.flash_bytes
        )

    @property
    def twin_wins(self) -> bool:
        """Whether the int8 Dense twin is at most as large and as slow as
        the chosen deployment (a small layer, or a network that fits the
        arena only as a stored float kernel)."""
        return (
            not self.is_twin
            and self.twin.flash_bytes <= self.chosen.flash_bytes
            and self.twin.seconds <= self.chosen.seconds
        )

    def lines(self) -> list:
        """The report's lines for this layer."""
        chosen = self.chosen
        out = [
            f"{chosen.layer}: {chosen.describe()}: estimated "
            f"{chosen.costs()} (int8 Dense twin: {self.twin.costs()})"
        ]
        if self.is_twin:
            out.append("  stored as its int8 kernel: the twin's own layer")
        if chosen.int8_outliers:
            out.append(
                f"  its int8 kernel rounds "
                f"{chosen.int8_error / chosen.int8_reference:.1f}x worse than "
                f"a Gaussian kernel's (outliers set the scale): expect more "
                f"int8 error than a trained Dense layer's"
            )
        elif self.twin_wins:
            out.append(
                f"  the int8 Dense twin wins here: "
                f"{self.twin.flash_bytes / 1024:,.1f} KB and "
                f"{1e3 * self.twin.seconds:.2f} ms against "
                f"{chosen.flash_bytes / 1024:,.1f} KB and "
                f"{1e3 * chosen.seconds:.2f} ms (a Dense layer suits it)"
            )
        elif chosen.flash_bytes > self.twin.flash_bytes:
            out.append(
                f"  stores more than its int8 Dense twin "
                f"({chosen.flash_bytes / 1024:,.1f} KB against "
                f"{self.twin.flash_bytes / 1024:,.1f} KB): no smaller "
                f"deployment fits the arena"
            )
        if self.note:
            out.append(f"  {self.note}")
        for candidate, why in self.rejected:
            out.append(f"  not {candidate.describe()}: {why}")
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable: the names and numbers."""

        def row(c):
            return {
                "kind": c.kind,
                "detail": c.detail,
                "flash_bytes": int(c.flash_bytes),
                "arena_bytes": int(c.arena_bytes),
                "seconds": float(c.seconds),
            }

        return {
            "layer": self.chosen.layer,
            "chosen": row(self.chosen),
            "twin": row(self.twin),
            "twin_wins": self.twin_wins,
            "is_twin": self.is_twin,
            "rejected": [{**row(c), "why": why} for c, why in self.rejected],
            "note": self.note,
        }


@dataclasses.dataclass
class DeploymentPlan:
    """What `plan_model` chose.

    Attributes:
        layers: `{layer name: LayerPlan}` of the planned layers.
        arena_budget: the arena budget in force (bytes).
        flash_budget: the flash budget (bytes), or None.
        candidates: `{layer name: [Candidate]}`, every candidate the plan
            chose from (a plan made again reuses them: `plan_model`'s
            `candidates`).
    """

    layers: dict
    arena_budget: int
    flash_budget: int | None
    candidates: dict = dataclasses.field(default_factory=dict, repr=False)

    def schedules(self) -> dict:
        """`{layer name: DeviceSchedule}` of the chosen candidates (none
        for a kernel generated whole in the trace)."""
        made = {k: p.chosen.make() for k, p in self.layers.items()}
        return {k: s for k, s in made.items() if s is not None}

    def lines(self) -> list:
        """The report's lines: every planned layer's."""
        out = []
        for layer in self.layers.values():
            out += layer.lines()
        return out

    def to_dicts(self) -> list:
        """`LayerPlan.to_dict` of every layer."""
        return [p.to_dict() for p in self.layers.values()]


def plan_model(
    model, options, caps: dict | None = None, candidates: dict | None = None
) -> DeploymentPlan:
    """The `DeploymentPlan` of `model`'s `TNDense` and `TNConv2D` layers
    under `options` (an `ExportOptions`: its budgets, `mode`, `quantize`,
    batch size). `caps`: `{layer name: bytes}`, a smaller arena some
    layers' estimates must fit (the export's refinement where TFLM
    measured more than estimated; no error is raised for them).
    `candidates`: those of an earlier plan of the same model and options
    (`DeploymentPlan.candidates`), so that a plan made again does not
    make them again (an int8 kernel is generated to weigh its error).

    Raises:
        ValueError: where a layer fits no explicit `arena_budget`, or the
            plan no `flash_budget`, naming the smallest that are possible.
    """
    from keras_adntn.export.tracing import generating_layers
    from keras_adntn.layers.tn_conv2d import TNConv2D
    from keras_adntn.layers.tn_dense import TNDense

    planned = (TNDense, TNConv2D)
    layers = [
        x
        for x in generating_layers(model)
        if type(x) in planned and _has_shapes(x)
    ]
    fitting, notes, all_candidates = {}, {}, {}
    for layer in list(layers):
        if candidates is not None:
            found = candidates.get(layer.name, [])
        else:
            found = candidates_module.candidates(
                layer,
                options.layer_mode(layer.name),
                options.quantize,
                options.rows,
            )
        if not found:  # e.g. a grouped conv asked to store its kernel
            layers.remove(layer)
            continue
        all_candidates[layer.name] = found
        fitting[layer.name], notes[layer.name] = _fitting(
            layer, found, options, (caps or {}).get(layer.name)
        )
    chosen = _choose(
        fitting, options.flash_budget, _other_flash(model, layers, options)
    )
    plans = {}
    for layer in layers:
        pick = chosen[layer.name]
        plans[layer.name] = LayerPlan(
            pick,
            candidates_module.twin(layer, options.rows),
            _rejected(pick, all_candidates[layer.name], options),
            notes[layer.name],
        )
    return DeploymentPlan(
        plans, options.budget, options.flash_budget, all_candidates
    )


def _has_shapes(layer) -> bool:
    """Whether the layer's input shape is known (a layer of a functional
    or Sequential model; a layer nested in another is traced as the
    export always has, without a plan)."""
    try:
        return layer.input is not None
    except (AttributeError, ValueError):
        return False


def _fitting(layer, found, options, cap=None):
    """The candidates within the arena budget (and `cap`), and a note
    where none is (the default budget or a cap: the smallest arena taken
    instead)."""
    budget = options.budget if cap is None else min(cap, options.budget)
    fits = [c for c in found if c.arena_bytes <= budget]
    # an int8 kernel whose outliers set its scale is left out where a
    # deployment that stores less fits
    precise = [c for c in fits if not c.int8_outliers]
    rough = [c for c in fits if c.int8_outliers]
    if rough and any(
        c.flash_bytes < min(r.flash_bytes for r in rough) for c in precise
    ):
        return precise, ""
    if fits:
        return fits, ""
    smallest = min(found, key=lambda c: c.arena_bytes)
    lightest = min(found, key=lambda c: c.flash_bytes)
    text = (
        f"no deployment of layer {layer.name!r} ({type(layer).__name__}, "
        f"network={layer.network!r}) fits an arena of {budget:,} bytes: "
        f"the smallest arena possible is {smallest.arena_bytes:,} bytes "
        f"({smallest.describe()}, {smallest.flash_bytes:,} bytes of "
        f"flash); the smallest flash is {lightest.flash_bytes:,} bytes "
        f"({lightest.describe()}, {lightest.arena_bytes:,} bytes of arena)"
    )
    if options.arena_budget is not None and cap is None:
        raise ValueError(
            f"`arena_budget`: {text}. Give a larger `arena_budget` (the "
            f"CLI's --sram), or a layer mode that stores its kernel."
        )
    return [smallest], f"{text}; took the smallest arena (estimates)."


def _other_flash(model, layers, options) -> int:
    """Estimated flash of what the plan does not choose: every other
    weight (at the export's bytes per number) and the file's own
    bookkeeping."""
    planned = sum(int(x.count_params()) for x in layers)
    others = int(model.count_params()) - planned
    per = 1 if options.quantize == "int8" else 4
    per = 2 if options.quantize == "float16" else per
    return others * per + 2048


def _pareto(options):
    """`(flash, seconds, picks)` tuples none of which is both larger and
    slower than another, by flash."""
    out = []
    for item in sorted(options, key=lambda o: (o[0], o[1])):
        if not out or item[1] < out[-1][1]:
            out.append(item)
    if len(out) > _MAX_PARTIAL:
        step = len(out) / _MAX_PARTIAL
        out = [out[int(k * step)] for k in range(_MAX_PARTIAL)]
    return out


def _choose(fitting, flash_budget, other_flash) -> dict:
    """`{layer name: Candidate}`: the fastest combination within the flash
    budget (or `FLASH_SLACK` times the smallest flash)."""
    partial = [(0, 0.0, ())]
    for found in fitting.values():
        partial = _pareto(
            (f + c.flash_bytes, s + c.seconds, picks + (c,))
            for f, s, picks in partial
            for c in found
        )
    if flash_budget is None:
        limit = FLASH_SLACK * partial[0][0]
    else:
        limit = flash_budget - other_flash
        if partial[0][0] > limit:
            picks = partial[0][2]
            largest = max(picks, key=lambda c: c.flash_bytes)
            raise ValueError(
                f"`flash_budget`: no deployment plan fits {flash_budget:,} "
                f"bytes of flash: the smallest possible is about "
                f"{partial[0][0] + other_flash:,} bytes (estimated), of "
                f"which layer {largest.layer!r} takes "
                f"{largest.flash_bytes:,} ({largest.describe()}) and the "
                f"other weights {other_flash:,}."
            )
    best = min((p for p in partial if p[0] <= limit), key=lambda p: p[1])
    return {c.layer: c for c in best[2]}


def _rejected(pick, found, options) -> list:
    """The best candidate of every kind not chosen, with why not."""
    out = []
    for kind in candidates_module.KINDS:
        others = [c for c in found if c.kind == kind and c is not pick]
        if not others or kind == pick.kind:
            continue
        fits = [c for c in others if c.arena_bytes <= options.budget]
        outliers = all(c.int8_outliers for c in fits)
        if fits and outliers and fits[0].flash_bytes > pick.flash_bytes:
            best = fits[0]
            why = (
                f"int8 rounding error {best.int8_error:.3f} of its kernel, "
                f"{best.int8_error / best.int8_reference:.1f}x a Gaussian "
                f"kernel's (its outliers set the int8 scale)"
            )
        elif not fits:
            best = min(others, key=lambda c: c.arena_bytes)
            why = f"arena {best.arena_bytes:,} bytes over the budget"
        else:
            best = min(fits, key=lambda c: (c.flash_bytes, c.seconds))
            if best.flash_bytes > pick.flash_bytes:
                why = (
                    f"{best.flash_bytes / max(pick.flash_bytes, 1):.1f}x "
                    f"the flash ({best.costs()})"
                )
            else:
                why = f"slower ({best.costs()})"
        out.append((best, why))
    return out
