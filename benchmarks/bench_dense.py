"""TNDense vs keras.layers.Dense: train-step and predict time ratios.

Run once per backend, e.g.
    KERAS_BACKEND=jax python benchmarks/bench_dense.py
    KERAS_BACKEND=tensorflow python benchmarks/bench_dense.py --widths 1024

Both models are `Input(width) -> layer(width)`, trained with Adam on MSE,
batch 128, `jit_compile=True` where the backend supports it (TensorFlow,
JAX), or without XLA with `--eager` (jit vs eager). Times are medians
over repeated calls after a warm-up; the ratio is
TNDense time / Dense time, measured in the same run.
"""

import argparse
import statistics
import time

import keras
import numpy as np

from keras_adntn import TNDense


def _median_time(fn, repeats):
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(layer, width, batch, repeats, jit):
    model = keras.Sequential([keras.Input((width,)), layer])
    model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    x = np.random.default_rng(0).standard_normal((batch, width))
    x = x.astype("float32")
    y = np.zeros((batch, width), "float32")

    def step():
        model.train_on_batch(x, y)

    def predict():
        model.predict_on_batch(x)

    return _median_time(step, repeats), _median_time(predict, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--networks",
        nargs="+",
        default=["ttn", "mpo"],
        help="generator networks to time (ttn attn mera brickwall mpo)",
    )
    parser.add_argument(
        "--eager",
        action="store_true",
        help="jit_compile=False (default: True on TensorFlow and JAX)",
    )
    args = parser.parse_args()
    backend = keras.backend.backend()
    if args.eager or backend == "torch":
        jit = False
    else:
        jit = True
    print(f"backend={backend} jit_compile={jit} batch={args.batch}")
    header = (
        f"{'width':>6} {'layer':<10} {'params':>9} {'step ms':>9} "
        f"{'predict ms':>10} {'step ratio':>10} {'predict ratio':>13}"
    )
    print(header)
    for width in args.widths:
        base_step, base_pred = measure(
            keras.layers.Dense(width), width, args.batch, args.repeats, jit
        )
        print(
            f"{width:>6} {'Dense':<10} {width * width + width:>9} "
            f"{base_step * 1e3:>9.2f} {base_pred * 1e3:>10.2f} "
            f"{1.0:>10.2f} {1.0:>13.2f}"
        )
        for network in args.networks:
            layer = TNDense(width, network=network, seed=0)
            step, pred = measure(layer, width, args.batch, args.repeats, jit)
            print(
                f"{width:>6} {network:<10} {layer.count_params():>9} "
                f"{step * 1e3:>9.2f} {pred * 1e3:>10.2f} "
                f"{step / base_step:>10.2f} {pred / base_pred:>13.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
