"""TNConv2D vs Conv2D, TNMultiHeadAttention vs MultiHeadAttention: timings.

Run once per backend, e.g.
    KERAS_BACKEND=jax python benchmarks/bench_conv_attention.py
    KERAS_BACKEND=torch python benchmarks/bench_conv_attention.py --large

Models are one layer on a random input, trained with Adam on MSE,
`jit_compile=True` where the backend supports it (TensorFlow, JAX):
- conv: `Input((size, size, channels)) -> Conv2D(channels, 3, "same")`;
- attention: `Input((seq, dim)) -> MultiHeadAttention(heads, dim // heads)`
  (self-attention).
Times are medians over `--repeats` calls of `train_on_batch` and
`predict_on_batch` after a warm-up; the ratio is TN time / Keras time,
measured in the same run. The TN layers generate their kernels inside
every step (on-the-fly mode), so the ratios include generation.

Defaults are small (well under 2 minutes on 2 CPU cores); `--large` uses
VGG/Transformer-base-like sizes (3x3 256->256 conv on 32x32, 8 heads on
dim 512 and 128 tokens).
"""

import argparse
import statistics
import time

import keras
import numpy as np

from keras_adntn.layers.tn_conv2d import TNConv2D
from keras_adntn.layers.tn_multi_head_attention import TNMultiHeadAttention


def _median_time(fn, repeats):
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(model, x, repeats, jit):
    model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    y = np.zeros((len(x), *model.outputs[0].shape[1:]), "float32")

    def step():
        model.train_on_batch(x, y)

    def predict():
        model.predict_on_batch(x)

    return _median_time(step, repeats), _median_time(predict, repeats)


def _conv_model(layer, size, channels):
    inputs = keras.Input((size, size, channels))
    return keras.Model(inputs, layer(inputs))


def _attention_model(layer, seq, dim):
    inputs = keras.Input((seq, dim))
    return keras.Model(inputs, layer(inputs, inputs))


def _row(kind, name, params, step, pred, base_step, base_pred):
    print(
        f"{kind:<10} {name:<16} {params:>9} {step * 1e3:>9.2f} "
        f"{pred * 1e3:>10.2f} {step / base_step:>10.2f} "
        f"{pred / base_pred:>13.2f}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--conv-size", type=int, default=None)
    parser.add_argument("--channels", type=int, default=None)
    parser.add_argument("--seq", type=int, default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--heads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--networks",
        nargs="+",
        default=["ttn", "mpo"],
        help="generator networks to time (ttn attn mera brickwall mpo)",
    )
    args = parser.parse_args()
    big = args.large
    batch = args.batch or (32 if big else 16)
    size = args.conv_size or (32 if big else 16)
    channels = args.channels or (256 if big else 64)
    seq = args.seq or (128 if big else 32)
    dim = args.dim or (512 if big else 64)
    heads = args.heads or (8 if big else 4)
    backend = keras.backend.backend()
    jit = backend in ("tensorflow", "jax")
    rng = np.random.default_rng(0)
    print(f"backend={backend} jit_compile={jit} batch={batch}")
    print(
        f"{'kind':<10} {'layer':<16} {'params':>9} {'step ms':>9} "
        f"{'predict ms':>10} {'step ratio':>10} {'predict ratio':>13}"
    )

    x = rng.standard_normal((batch, size, size, channels)).astype("float32")
    kind = f"conv{size}"
    base = keras.layers.Conv2D(channels, 3, padding="same")
    model = _conv_model(base, size, channels)
    base_step, base_pred = _measure(model, x, args.repeats, jit)
    _row(
        kind,
        "Conv2D",
        base.count_params(),
        base_step,
        base_pred,
        base_step,
        base_pred,
    )
    for network in args.networks:
        layer = TNConv2D(channels, 3, padding="same", network=network, seed=0)
        model = _conv_model(layer, size, channels)
        step, pred = _measure(model, x, args.repeats, jit)
        _row(
            kind,
            f"TNConv2D/{network}",
            layer.count_params(),
            step,
            pred,
            base_step,
            base_pred,
        )

    x = rng.standard_normal((batch, seq, dim)).astype("float32")
    kind = f"mha{seq}x{dim}"
    base = keras.layers.MultiHeadAttention(heads, dim // heads)
    model = _attention_model(base, seq, dim)
    base_step, base_pred = _measure(model, x, args.repeats, jit)
    _row(
        kind,
        "MHA",
        base.count_params(),
        base_step,
        base_pred,
        base_step,
        base_pred,
    )
    for network in args.networks:
        layer = TNMultiHeadAttention(
            heads, dim // heads, network=network, seed=0
        )
        model = _attention_model(layer, seq, dim)
        step, pred = _measure(model, x, args.repeats, jit)
        _row(
            kind,
            f"TNMHA/{network}",
            layer.count_params(),
            step,
            pred,
            base_step,
            base_pred,
        )


if __name__ == "__main__":
    main()
