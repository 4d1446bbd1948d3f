"""`ExportOptions`: the options of one export, checked once.

`export_litert` checks its arguments into an `ExportOptions`; the same
object travels through the budget search (`budget`), the conversion and
the subprocess route (`remote` writes it as the command line of
`python -m keras_adntn.export`, whose `__main__` reads it back).
"""

import dataclasses
import re
from typing import Any

from keras_adntn.kernels.generator_spec import check_int

MODES = ("auto", "factorized", "on_the_fly", "cached")
# the SRAM a default export fits its tensor arena into: a common
# microcontroller class (Cortex-M4 / M7 boards with 256 KB of SRAM)
DEFAULT_ARENA_BUDGET = 256 * 1024
QUANTIZATIONS = (None, "int8", "float16")
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024}
_UNITS.update({"M": 1024**2, "MB": 1024**2, "MIB": 1024**2})


def parse_bytes(value, name: str = "arena_budget") -> int | None:
    """`256K`, `"1M"`, `65536` -> bytes (K = 1024); None stays None.

    Raises:
        ValueError: naming `name` for anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        value = "bad"
    if isinstance(value, int) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(
            f"`{name}` must be a positive number of bytes, as an int or a "
            f"string such as '256K' or '1M' (K = 1024), got {value!r}."
        )
    return int(float(match.group(1)) * _UNITS[unit])


@dataclasses.dataclass(frozen=True, eq=False)
class ExportOptions:
    """How to export: the arguments of `export_litert` after the model and
    the path, checked (see `export_litert` for their meaning).

    `arena_budget` and `flash_budget` are given as `export_litert` takes
    them (an int, or a string such as `"256K"`) and held in bytes (an
    int, or None; `budget` is the arena budget in force: the default
    `DEFAULT_ARENA_BUDGET` where none is given). `mode` is one of `MODES`
    for the whole model, or a dict `{layer name: mode}` that overrides
    the plan for those layers (the others: `"auto"`).

    Raises:
        ValueError: for a bad `mode`, `quantize`, `batch_size`,
            `arena_budget` or `flash_budget`, or `"int8"` without
            `representative_dataset`.
    """

    mode: Any = "auto"
    quantize: str | None = None
    representative_dataset: Any = None
    arena_budget: int | None = None
    batch_size: int | None = 1
    strip_strings: bool = False
    measure: bool = True
    flash_budget: int | None = None

    def __post_init__(self):
        modes = self.mode if isinstance(self.mode, dict) else {"": self.mode}
        for name, mode in modes.items():
            if not isinstance(name, str) or mode not in MODES:
                raise ValueError(
                    f"`mode` must be one of {MODES}, or a dict mapping "
                    f"layer names to one of them, got {self.mode!r}."
                )
        if self.quantize not in QUANTIZATIONS:
            raise ValueError(
                f"`quantize` must be one of {QUANTIZATIONS}, got "
                f"{self.quantize!r}."
            )
        if self.quantize == "int8" and self.representative_dataset is None:
            raise ValueError(
                "`quantize='int8'` (full-integer quantisation) needs a "
                "`representative_dataset` to calibrate the activation "
                "ranges: a callable returning an iterable of input lists "
                "(the LiteRT convention) or an array of input samples."
            )
        batch_size = check_int("batch_size", self.batch_size, 1, True)
        object.__setattr__(self, "batch_size", batch_size)
        budget = parse_bytes(self.arena_budget)
        object.__setattr__(self, "arena_budget", budget)
        flash = parse_bytes(self.flash_budget, "flash_budget")
        object.__setattr__(self, "flash_budget", flash)

    @property
    def budget(self) -> int:
        """The arena budget in force (bytes): the given one, else
        `DEFAULT_ARENA_BUDGET`."""
        if self.arena_budget is None:
            return DEFAULT_ARENA_BUDGET
        return self.arena_budget

    @property
    def model_mode(self) -> str:
        """The mode of the model as a whole: the trace's (`"cached"`,
        `"on_the_fly"`, or `"factorized"` for `"auto"` and per-layer
        modes, which plan each `TNDense` on its own)."""
        if isinstance(self.mode, str) and self.mode != "auto":
            return self.mode
        return "factorized"

    def layer_mode(self, name: str) -> str:
        """The mode asked for layer `name` (`"auto"`: planned)."""
        if isinstance(self.mode, dict):
            return self.mode.get(name, "auto")
        return self.mode

    @property
    def mode_text(self) -> str:
        """`mode` as the command line writes it (`name=mode,...` for a
        dict)."""
        if isinstance(self.mode, dict):
            return ",".join(f"{k}={v}" for k, v in self.mode.items())
        return self.mode

    @property
    def rows(self) -> int:
        """Rows one call of the exported model takes (1 for a dynamic
        batch): what the tilings and schedules are chosen for."""
        return self.batch_size or 1

    def command_line(self) -> list:
        """The options of `python -m keras_adntn.export` that give these
        options back (`from_command_line`), the calibration data aside:
        it travels as an `.npz` file (`--representative`)."""
        batch = "none" if self.batch_size is None else str(self.batch_size)
        flags = ["--mode", self.mode_text, "--batch-size", batch]
        if self.quantize is not None:
            flags += ["--quantize", self.quantize]
        if self.arena_budget is not None:
            flags += ["--arena-budget", str(self.arena_budget)]
        if self.flash_budget is not None:
            flags += ["--flash-budget", str(self.flash_budget)]
        if self.strip_strings:
            flags.append("--strip-strings")
        if not self.measure:
            flags.append("--no-measure")
        return flags

    @staticmethod
    def add_arguments(parser) -> None:
        """Adds the options' flags to an `argparse.ArgumentParser` (that
        of `python -m keras_adntn.export`)."""
        parser.add_argument("--mode", default="auto")
        parser.add_argument(
            "--quantize",
            default=None,
            choices=[q for q in QUANTIZATIONS if q],
        )
        parser.add_argument("--representative", default=None, help=".npz file")
        parser.add_argument("--arena-budget", default=None)
        parser.add_argument("--flash-budget", default=None)
        parser.add_argument("--batch-size", default="1")
        parser.add_argument("--strip-strings", action="store_true")
        parser.add_argument("--no-measure", action="store_true")

    @classmethod
    def from_command_line(
        cls, args, representative_dataset=None
    ) -> "ExportOptions":
        """The options parsed by `python -m keras_adntn.export` (an
        `argparse.Namespace`), with the loaded calibration data."""
        batch = args.batch_size
        budget = args.arena_budget
        flash = args.flash_budget
        return cls(
            mode=parse_mode(args.mode),
            flash_budget=None if flash is None else int(flash),
            quantize=args.quantize,
            representative_dataset=representative_dataset,
            arena_budget=None if budget is None else int(budget),
            batch_size=None if batch.lower() == "none" else int(batch),
            strip_strings=args.strip_strings,
            measure=not args.no_measure,
        )


def parse_mode(text: str):
    """`--mode`'s text: a mode, or `name=mode,...` (a dict)."""
    if "=" not in text:
        return text
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    return {name.strip(): mode.strip() for name, mode in pairs}
