"""Train a digits model with a TNDense layer and deploy it to LiteRT.

Run: python examples/deploy_litert.py [out_dir]

Exports the model twice — `cached` (generated kernels stored as weights)
and `on_the_fly` (only the generator cores stored; the device regenerates
the kernel) — prints each report and checks both files against Keras with
the real `ai_edge_litert` interpreter.
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


def main(out_dir: str | None = None, epochs: int = 20) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    out_dir = out_dir or tempfile.mkdtemp(prefix="adntn_deploy_")
    keras.utils.set_random_seed(0)
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        (data.data / 16.0).astype("float32"), data.target, random_state=0
    )
    model = keras.Sequential(
        [
            keras.Input((64,)),
            TNDense(256, activation="relu", bond_dim=4, seed=0),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    sizes = {}
    for mode in ["cached", "on_the_fly"]:
        path = os.path.join(out_dir, f"digits_{mode}.tflite")
        report = export_litert(model, path, mode=mode)
        print(report)
        interpreter = Interpreter(model_path=path)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        correct = 0
        for x, y in zip(x_test, y_test):
            interpreter.set_tensor(inp["index"], x[None])
            interpreter.invoke()
            correct += int(np.argmax(interpreter.get_tensor(out["index"])) == y)
        accuracy = correct / len(y_test)
        print(
            f"{mode}: {os.path.getsize(path)} bytes, LiteRT test accuracy "
            f"{accuracy:.3f}, parity {report.parity_rel_error:.2e}"
        )
        sizes[mode] = (os.path.getsize(path), accuracy)
    return sizes


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
