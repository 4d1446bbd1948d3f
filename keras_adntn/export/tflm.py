"""Measurements on TensorFlow Lite Micro's own interpreter.

`pip install tflite-micro` gives the TFLM interpreter (the host build of the
library a microcontroller runs). Its `arena_size` is the tensor arena: the
SRAM a model needs on the device besides its flash. `measure` finds the
smallest arena with which the interpreter allocates (the whole memory plan
is made at construction: loop bodies, scratch buffers and persistent
buffers included) and then runs the model, so the number is measured, not
estimated. Latency is host time per `invoke` with TFLM's reference kernels:
meaningful as a ratio between models, not as device time.

The interpreter can crash (segmentation fault) instead of failing cleanly
when an arena is too small for some graphs (seen with a CONV_2D whose
filter is computed), so `measure` runs the search in a child process
(this file run as a script: it imports numpy and TFLM only, no Keras) and
counts a crash at a probe as "too small".
"""

import dataclasses
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time

import numpy as np

if __name__ == "__main__":  # `measure`'s child: this file alone, no package
    _here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _helpers = runpy.run_path(os.path.join(_here, "_quiet.py"))
    quiet_fd, quiet_start = _helpers["quiet_fd"], _helpers["quiet_start"]
else:
    from keras_adntn._quiet import quiet_fd
    from keras_adntn._quiet import quiet_start

# The search stops when the bracket is this narrow (bytes): TFLM aligns
# its buffers to 16 bytes, so the answer is exact to within this.
_RESOLUTION = 16
_MAX_ARENA = 1 << 31


@dataclasses.dataclass
class TFLMResult:
    """One model measured on the TFLM interpreter.

    Attributes:
        arena_bytes: smallest `arena_size` that allocates and invokes.
        latency_s: host seconds per `invoke` (median of the repeats).
        outputs: the outputs of the last run, float32 arrays.
    """

    arena_bytes: int
    latency_s: float
    outputs: list


def available() -> bool:
    """Whether `tflite-micro` (its Python interpreter) is installed."""
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


def load_tensorflow_quietly() -> None:
    """Imports TensorFlow (the export needs it; on the JAX and PyTorch
    backends it is not loaded yet) with descriptor 2 silenced: its oneDNN
    and absl start-up lines ignore `TF_CPP_MIN_LOG_LEVEL`."""
    if "tensorflow" in sys.modules:
        return
    try:
        with quiet_start(loggers=False):
            import tensorflow  # noqa: F401
    except ImportError:  # the export says what is missing
        pass


def _interpreter(flatbuffer, arena):
    from tflite_micro.python.tflite_micro import runtime

    try:
        return runtime.Interpreter.from_bytes(
            bytes(flatbuffer), arena_size=int(arena)
        )
    except RuntimeError:  # "TFLM failed to allocate tensors"
        return None


def _search(flatbuffer, low, high, log=None):
    """Smallest allocating arena in `(low, high]` (high None: unknown)."""

    def fits(arena):
        if log is not None:
            print(f"probe {arena}", file=log, flush=True)
        with quiet_fd():
            return _interpreter(flatbuffer, arena) is not None

    if high is None:
        high = max(1 << 14, 2 * low)
        while not fits(high):
            low, high = high, high * 2
            if high > _MAX_ARENA:
                raise RuntimeError(
                    "TensorFlow Lite Micro could not allocate the model "
                    "with any arena up to 2 GiB (an op it lacks?)."
                )
    while high - low > _RESOLUTION:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return int(high)


def _invoke(interpreter, inputs):
    for k, value in enumerate(inputs):
        detail = interpreter.get_input_details(k)
        interpreter.set_input(
            np.asarray(value).astype(detail["dtype"]).reshape(detail["shape"]),
            k,
        )
    interpreter.invoke()
    outputs = []
    for k in range(_count_outputs(interpreter)):
        outputs.append(np.array(interpreter.get_output(k)))
    return outputs


def _count_outputs(interpreter):
    count = 0
    with quiet_fd():
        while True:
            try:
                interpreter.get_output_details(count)
            except Exception:  # the wrapper raises on a bad index
                return count
            count += 1


def _measure_here(flatbuffer, inputs, repeats, low=0, high=None, log=None):
    arena = _search(flatbuffer, low, high, log)
    with quiet_fd():
        interpreter = _interpreter(flatbuffer, arena)
    if interpreter is None:  # pragma: no cover - allocation is deterministic
        raise RuntimeError("TFLM allocation is not reproducible.")
    outputs = _invoke(interpreter, inputs)  # also checks invoke fits
    times = []
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return TFLMResult(arena, float(np.median(times)), outputs)


def predict(flatbuffer: bytes, x, arena: int = 4 * 1024**2) -> np.ndarray:
    """The first output of a single-input model run on TFLM's interpreter
    for every sample of `x` (axis 0), one invoke each, stacked.

    Args:
        flatbuffer: the `.tflite` file's bytes.
        x: samples along axis 0, as the model's input takes them.
        arena: the tensor arena (bytes).

    Returns:
        `(len(x), ...)` outputs, float32 (or the model's output dtype).
    """
    with quiet_fd():
        interpreter = _interpreter(flatbuffer, arena)
    if interpreter is None:
        raise RuntimeError(f"TFLM could not allocate the model in {arena:,}.")
    return np.stack([_invoke(interpreter, [row])[0][0] for row in x])


def measure(flatbuffer: bytes, inputs, repeats: int = 3) -> TFLMResult:
    """Smallest arena, latency and outputs of a model on TFLM.

    Runs in a child process (see the module docstring); a crash at an
    arena size counts as that size being too small, and the search goes
    on above it.

    Args:
        flatbuffer: the `.tflite` bytes.
        inputs: one array per model input (with the exported batch size).
        repeats: invocations timed (the median is reported).

    Returns:
        A `TFLMResult`.

    Raises:
        RuntimeError: when no arena works, or the interpreter fails on
            every try.
    """
    low = 0
    with tempfile.TemporaryDirectory(prefix="adntn_tflm_") as tmp:
        model = os.path.join(tmp, "model.tflite")
        data = os.path.join(tmp, "inputs.npz")
        result = os.path.join(tmp, "result.npz")
        with open(model, "wb") as f:
            f.write(flatbuffer)
        np.savez(data, *[np.asarray(v) for v in inputs])
        for _ in range(16):
            command = [
                sys.executable,
                "-c",
                # this file alone: the child imports numpy and TFLM only
                "import runpy, sys; sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')",
                __file__,
                model,
                data,
                result,
                str(low),
                str(int(repeats)),
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode == 0:
                out = np.load(result)
                info = json.loads(str(out["info"]))
                outputs = [out[f"out{k}"] for k in range(info["outputs"])]
                return TFLMResult(info["arena"], info["latency"], outputs)
            probes = [
                int(line.split()[1])
                for line in done.stdout.splitlines()
                if line.startswith("probe ")
            ]
            if done.returncode > 0 or not probes:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise RuntimeError(
                    "TensorFlow Lite Micro failed: " + " | ".join(tail)
                )
            low = max(low, probes[-1])  # it crashed there: too small
    raise RuntimeError("TensorFlow Lite Micro kept crashing.")


def _main(argv=None):
    model, data, result, low, repeats = (argv or sys.argv)[1:6]
    with open(model, "rb") as f:
        flatbuffer = f.read()
    loaded = np.load(data)
    inputs = [loaded[f"arr_{k}"] for k in range(len(loaded.files))]
    measured = _measure_here(
        flatbuffer, inputs, int(repeats), low=int(low), log=sys.stdout
    )
    info = dict(
        arena=measured.arena_bytes,
        latency=measured.latency_s,
        outputs=len(measured.outputs),
    )
    np.savez(
        result,
        info=json.dumps(info),
        **{f"out{k}": v for k, v in enumerate(measured.outputs)},
    )


if __name__ == "__main__":
    _main()
