"""Train a digits model with a TNDense layer and deploy it to a
microcontroller with 32 KB of SRAM for the tensor arena.

Run: python examples/deploy_litert.py [out_dir]

Exports the model `cached` (generated kernels stored as weights) and
`on_the_fly` within `SRAM_BUDGET` (only the generator cores stored; the
device generates the 64x256 kernel block by block), runs every test digit
through TensorFlow Lite Micro's own interpreter (`pip install tflite-micro`)
with the arena the export measured, and prints the table of every
deployment mode next to the Dense twin.
"""

import os
import sys
import tempfile

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_adntn import TNDense
from keras_adntn import export_litert
from keras_adntn.export import compare_deployments

SRAM_BUDGET = "32K"  # tensor arena of a small Cortex-M class device


def tflm_accuracy(path: str, arena: int, x, y) -> float:
    """Accuracy of a `.tflite` file run on the TFLite Micro interpreter."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(path, arena_size=arena)
    correct = 0
    for sample, label in zip(x, y):
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_output(0)) == label)
    return correct / len(y)


def main(out_dir: str | None = None, epochs: int = 20) -> dict:
    out_dir = out_dir or tempfile.mkdtemp(prefix="adntn_deploy_")
    keras.utils.set_random_seed(0)
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        (data.data / 16.0).astype("float32"), data.target, random_state=0
    )
    model = keras.Sequential(
        [
            keras.Input((64,)),
            TNDense(256, activation="relu", seed=0),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    _, keras_accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Keras test accuracy {keras_accuracy:.3f}")
    results = {}
    for mode in ["cached", "on_the_fly"]:
        path = os.path.join(out_dir, f"digits_{mode}.tflite")
        budget = SRAM_BUDGET if mode == "on_the_fly" else None
        report = export_litert(model, path, mode=mode, arena_budget=budget)
        print(report)
        accuracy = tflm_accuracy(path, report.tflm_arena_bytes, x_test, y_test)
        print(
            f"{mode}: flash {report.file_bytes:,} bytes, arena "
            f"{report.tflm_arena_bytes:,} bytes, TFLite Micro test accuracy "
            f"{accuracy:.3f}\n"
        )
        results[mode] = (report.file_bytes, accuracy, report.tflm_arena_bytes)
    table = compare_deployments(
        model,
        os.path.join(out_dir, "compare"),
        arena_budget=SRAM_BUDGET,
        representative_dataset=x_train[:200],
    )
    print(table)
    return results


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
