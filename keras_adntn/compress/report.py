"""The report `compress` returns: replaced layers, skipped ones, scores."""


class CompressionReport:
    """What `compress` did: replaced layers, skipped layers, scores.

    Attributes:
        layers: one dict per replaced layer: `name`, `type`, `new_type`,
            `network`, `bond_dim`, `params_before`, `params_after`,
            `ratio`, `init`, `error_init` and `error_final` (output
            errors of the layer inside the model on real inputs,
            `||f'(x) - f(x)|| / ||f(x) - mean f||`, after initialisation
            and after fine-tuning, see `layer_output_error`),
            `weight_error_init` and `weight_error_final` (relative
            Frobenius errors of the kernels, all projections together
            for attention), `note`.
        skipped: dicts `name`, `type`, `reason` of the layers that were
            considered but left as they were.
        metric: `"accuracy"` or `"loss"` (mean squared error).
        scores: the metric of `teacher`, `student_init` (after
            initialisation) and `student_final` (after fine-tuning).
        evaluated_on: the data every choice and score comes from:
            `"validation_data"`, `"x_val/y_val of data"`, or the part of
            `data` held out (e.g. `"360 of 1797 samples of data held out
            (stratified, seed 0)"`).
        params_before: parameters of the whole input model.
        params_after: parameters of the whole compressed model.
        fine_tuning: what the fine-tuning did: `epochs_run`,
            `best_epoch` (0: the initialisation was kept), `diverged`
            (None, or why the run was stopped and rolled back) and
            `note` (a sentence, also printed by `table`).
        search: None for a fixed size (`bond_dim`, `target_ratio`);
            after a `max_loss` search: `max_loss`, `loss_of` (what it
            counts), `budget`, `fine_tunes` (how many the search ran),
            `sizes` (the bond dimensions it could try), `trials` (one
            dict per size tried: `bond_dim`, `params_after`,
            `score_init`, `score`, `loss`, `within`), `bond_dim` (the one
            returned) and `met` (whether it is within `max_loss`).
        notes: sentences on what the scores may not show (a student at
            chance after its initialisation; a teacher that is perfect on
            validation data held out of `data`, which it most likely
            trained on).

    Example:

    >>> student, report = compress(model, (x, y))  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: list,
        skipped: list,
        metric: str,
        scores: dict,
        evaluated_on: str,
        params_before: int,
        params_after: int,
        fine_tuning: dict | None = None,
        search: dict | None = None,
        notes: list | None = None,
    ):
        self.layers = list(layers)
        self.skipped = list(skipped)
        self.metric = metric
        self.scores = dict(scores)
        self.evaluated_on = evaluated_on
        self.params_before = int(params_before)
        self.params_after = int(params_after)
        self.fine_tuning = dict(fine_tuning or {})
        self.search = None if search is None else dict(search)
        self.notes = list(notes or [])

    @property
    def replaced_params_before(self) -> int:
        """Parameters of the replaced layers in the input model."""
        return sum(r["params_before"] for r in self.layers)

    @property
    def replaced_params_after(self) -> int:
        """Parameters of their replacements."""
        return sum(r["params_after"] for r in self.layers)

    def to_dict(self) -> dict:
        """The report as plain Python data (JSON-serialisable).

        Returns:
            A dict with keys `layers`, `skipped`, `metric`, `scores`,
            `evaluated_on`, `params_before`, `params_after`,
            `replaced_params_before`, `replaced_params_after`,
            `fine_tuning`, `search`, `notes`.

        Example:

        >>> d = report.to_dict()  # doctest: +SKIP
        """
        return {
            "layers": [dict(r) for r in self.layers],
            "skipped": [dict(r) for r in self.skipped],
            "metric": self.metric,
            "scores": dict(self.scores),
            "evaluated_on": self.evaluated_on,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "replaced_params_before": self.replaced_params_before,
            "replaced_params_after": self.replaced_params_after,
            "fine_tuning": dict(self.fine_tuning),
            "search": None if self.search is None else dict(self.search),
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """A printable table of the report.

        Returns:
            The table as one string (lines joined with newlines).

        Example:

        >>> print(report.table())  # doctest: +SKIP
        """
        lines = []
        if self.layers:
            width = max([len(r["name"]) for r in self.layers] + [5])
            header = (
                f"{'layer':<{width}}  {'replaced by':<28}  "
                f"{'params':>9}  {'->':>7}  {'ratio':>8}  "
                f"{'err init':>8}  {'err tuned':>9}"
            )
            lines += [header, "-" * len(header)]
            for r in self.layers:
                new = (
                    f"{r['type']}->{r['new_type']}"
                    if len(r["type"]) + len(r["new_type"]) < 27
                    else r["new_type"]
                )
                what = f"{new}"
                lines.append(
                    f"{r['name']:<{width}}  {what:<28}  "
                    f"{r['params_before']:>9}  {r['params_after']:>7}  "
                    f"{r['ratio']:>7.1f}x  {_fmt(r['error_init']):>8}  "
                    f"{_fmt(r['error_final']):>9}"
                )
                detail = f"network={r['network']} bond_dim={r['bond_dim']}"
                detail += f" init={r['init']}"
                if r.get("weight_error_init") is not None:
                    detail += (
                        f" weight err {_fmt(r['weight_error_init'])}"
                        f" -> {_fmt(r.get('weight_error_final'))}"
                    )
                if r.get("note"):
                    detail += f"; {r['note']}"
                lines.append(f"{'':<{width}}  {detail}")
            lines.append("-" * len(header))
            before = self.replaced_params_before
            after = self.replaced_params_after
            lines.append(
                f"replaced layers: {before} -> {after} parameters "
                f"({before / max(after, 1):.1f}x)"
            )
        else:
            lines.append("no layer was replaced")
        lines.append(
            f"whole model: {self.params_before} -> {self.params_after} "
            f"parameters ({self.params_before / max(self.params_after, 1):.1f}"
            f"x)"
        )
        if self.skipped:
            lines.append("left as they were:")
            for r in self.skipped:
                lines.append(f"  {r['name']} ({r['type']}): {r['reason']}")
        lines += self._search_lines()
        s = self.scores
        if self.fine_tuning.get("note"):
            lines.append(f"fine-tuning: {self.fine_tuning['note']}")
        lines.append(
            f"{self.metric} on {self.evaluated_on}: teacher "
            f"{_fmt(s.get('teacher'))}, student after init "
            f"{_fmt(s.get('student_init'))}, after fine-tuning "
            f"{_fmt(s.get('student_final'))}"
        )
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def _search_lines(self) -> list:
        """What the size search tried, a line per size."""
        r = self.search
        if r is None:
            return []
        verdict = (
            f"bond {r['bond_dim']} is the smallest within it"
            if r["met"]
            else f"no size is within it: bond {r['bond_dim']} lost the least"
        )
        lines = [
            f"size search: max_loss {r['max_loss']:g} ({r['loss_of']}) on "
            f"{self.evaluated_on}; {len(r['trials'])} sizes tried, "
            f"{r['fine_tunes']} fine-tunes (budget {r['budget']}), bonds "
            f"{r['sizes'][0]}..{r['sizes'][-1]}; {verdict}"
        ]
        for t in r["trials"]:
            lines.append(
                f"  bond {t['bond_dim']}: {t['params_after']} parameters, "
                f"{self.metric} after init {_fmt(t['score_init'])}, tuned "
                f"{_fmt(t['score'])}, loss {_fmt(t['loss'])}"
                f"{'' if t['within'] else ' (over)'}"
            )
        return lines

    def __str__(self):
        return self.table()

    def __repr__(self):
        s = self.scores
        return (
            f"CompressionReport(replaced={[r['name'] for r in self.layers]}, "
            f"params {self.params_before} -> {self.params_after}, "
            f"{self.metric} teacher={_fmt(s.get('teacher'))} "
            f"student={_fmt(s.get('student_final'))})"
        )


def _fmt(value):
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.3g}"
