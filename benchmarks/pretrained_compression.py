"""Compressing trained models: compress() vs truncated and activation-aware SVD.

    KERAS_BACKEND=jax python benchmarks/pretrained_compression.py [--quick]

Three small models, each trained to convergence on sklearn digits:
- MLP 64-256-256-10, the 256 x 256 `h2` replaced;
- CNN 8x8x1 -> Conv2D(32, 3) -> Conv2D(64, 3) -> pool -> Dense(10), the
  3x3x32x64 `conv2` replaced;
- a transformer block (tokens: the 8 image rows + one-hot row index,
  d_model 64, 4 heads, FFN 64-512-64), the 512 x 64 `ffn_down` replaced.

For each and each target ratio (10x, 50x, 200x on the replaced layer, bias
included) the layer becomes, in turn:
- `svd`: truncated SVD `U_r S_r V_r^T` of the kernel (two factors, the
  largest rank within the budget `params / ratio`);
- `asvd`: activation-aware SVD, the best rank-r kernel in the metric of the
  layer's real inputs, `M^(-1/2) [M^(1/2) W]_r` with `M` their centred
  second moment, and the bias absorbing the mean input (the same
  correction compress uses);
- `compress(network=...)`: the TN layer of `target_ratio`, data-aware
  initialisation (`init="auto"`).

Each is scored after initialisation and after the same fine-tuning
(`keras_adntn.compress.finetune.fine_tune`, what `compress` runs:
distillation from the teacher, best epoch on a validation split): output
error of the layer on held-out inputs, `||f'(x) - f(x)|| / ||f(x) -
mean f||` (1: no better than the mean output; `f` the output of the
layer inside the model, so after fine-tuning it includes the changes of
the layers before it), and test accuracy.

Writes benchmarks/results/pretrained_compression.{json,md}.
"""

import argparse
import json
import os
import time

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_adntn.compress import compress
from keras_adntn.compress import finetune
from keras_adntn.compress import layer_output_error
from keras_adntn.compress.init import activation_aware_low_rank
from keras_adntn.compress.init import whitening

HERE = os.path.dirname(os.path.abspath(__file__))
NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]
RATIOS = [10, 50, 200]


# -- data and teachers
def data():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    x_tr, x_va, y_tr, y_va = train_test_split(
        x_tr, y_tr, test_size=0.15, random_state=0, stratify=y_tr
    )
    return (x_tr, y_tr), (x_va, y_va), (x_te, y_te)


def _images(x):
    return x.reshape(-1, 8, 8, 1)


def _tokens(x):
    rows = x.reshape(-1, 8, 8)
    position = np.broadcast_to(np.eye(8, dtype="float32"), rows.shape)
    return np.concatenate([rows, position], -1)


def mlp():
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu", name="h1"),
            keras.layers.Dense(256, activation="relu", name="h2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )


def cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(
                64, 3, padding="same", activation="relu", name="conv2"
            ),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="logits"),
        ]
    )


def transformer():
    inp = keras.Input((8, 16))
    x = keras.layers.Dense(64, name="embed")(inp)
    a = keras.layers.MultiHeadAttention(4, 16, name="mha")(x, x)
    x = keras.layers.LayerNormalization(name="ln1")(x + a)
    f = keras.layers.Dense(512, activation="relu", name="ffn_up")(x)
    f = keras.layers.Dense(64, name="ffn_down")(f)
    x = keras.layers.LayerNormalization(name="ln2")(x + f)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x))


MODELS = {
    "mlp": (mlp, lambda x: x, "h2", 40),
    "cnn": (cnn, _images, "conv2", 30),
    "transformer": (transformer, _tokens, "ffn_down", 60),
}


def train(build, x, y, epochs):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def accuracy(model, x, y):
    return finetune.score(model, x, y, "classification", 256)


def layer_inputs(model, name, x):
    feats = keras.Model(model.inputs, model.get_layer(name).input)
    return np.asarray(feats.predict(x, batch_size=256, verbose=0), "float32")


# -- low-rank baselines
def _patches(layer, x):
    from keras_adntn.compress.adapters import conv_patches

    return conv_patches(x, layer, 20000)


class LowRank(keras.layers.Layer):
    """`activation(x A B + b)` (Dense) or `activation(conv(x, A) B + b)`
    (Conv2D): the two-factor baseline, trainable like the TN layers."""

    def __init__(self, first, second, bias, activation, conv=None, **kw):
        super().__init__(**kw)
        self._values = (first, second, bias)
        self.activation_fn = keras.activations.get(activation)
        self.conv = conv

    def build(self, input_shape):
        first, second, bias = self._values
        const = keras.initializers.Constant
        self.a = self.add_weight(
            shape=first.shape,
            initializer=const(first),
            trainable=bool(np.any(first)),  # rank 0: only the bias
            name="a",
        )
        self.b = self.add_weight(
            shape=second.shape, initializer=const(second), name="b"
        )
        self.bias = self.add_weight(
            shape=bias.shape, initializer=const(bias), name="bias"
        )

    def call(self, x):
        ops = keras.ops
        if self.conv is not None:
            x = ops.conv(
                x,
                self.a,
                strides=self.conv["strides"],
                padding=self.conv["padding"],
                dilation_rate=self.conv["dilation_rate"],
            )
        else:
            x = ops.matmul(x, self.a)
        return self.activation_fn(ops.matmul(x, self.b) + self.bias)


def low_rank_layer(teacher, rank, inputs, aware):
    """A two-factor replacement of `teacher` (Dense or Conv2D) of `rank`."""
    w = np.asarray(teacher.kernel, np.float64)
    b = np.asarray(teacher.bias, np.float64)
    conv = isinstance(teacher, keras.layers.Conv2D)
    rows = inputs.reshape(-1, inputs.shape[-1])
    if conv:
        rows = _patches(teacher, inputs)
    w2 = w.reshape(-1, w.shape[-1])
    r_metric, mean = whitening(rows, centered=True)
    r = max(rank, 1)
    approx = activation_aware_low_rank(w2, r_metric if aware else None, r)
    if rank == 0:
        approx = np.zeros_like(w2)
    bias = b + mean @ (w2 - approx) if aware else b
    u, s, vt = np.linalg.svd(approx, full_matrices=False)
    first = (u[:, :r] * s[:r]).astype("float32")
    second = vt[:r].astype("float32")
    config = teacher.get_config()
    spec = None
    if conv:
        first = first.reshape(*w.shape[:-1], r)
        spec = {k: config[k] for k in ("strides", "padding", "dilation_rate")}
    return LowRank(
        first,
        second,
        bias.astype("float32"),
        config["activation"],
        conv=spec,
        name=teacher.name,
    )


def with_layer(model, name, block):
    """A copy of `model` whose layer `name` is `block` (other weights
    copied)."""

    def clone(layer):
        if layer.name == name:
            return block
        return layer.__class__.from_config(layer.get_config())

    student = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.name != name and layer.weights:
            student.get_layer(layer.name).set_weights(layer.get_weights())
    return student


def fine_tune(student, teacher, train_xy, val_xy, epochs):
    start = accuracy(student, *val_xy)
    return finetune.fine_tune(
        student,
        teacher,
        train_xy[0],
        train_xy[1],
        val_xy,
        "classification",
        False,
        epochs,
        64,
        3e-3,
        2.0,
        0.1,
        start,
    )


# -- one model
def run_model(key, networks, ratios, epochs, steps):
    build, prep, name, teacher_epochs = MODELS[key]
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data()
    x_tr, x_va, x_te = prep(x_tr), prep(x_va), prep(x_te)
    t0 = time.time()
    teacher = train(build, x_tr, y_tr, teacher_epochs)
    teacher_acc = accuracy(teacher, x_te, y_te)
    layer = teacher.get_layer(name)
    fit_inputs = layer_inputs(teacher, name, x_tr)
    dense = layer.count_params()
    w = np.asarray(layer.kernel)
    d_in, d_out = int(np.prod(w.shape[:-1])), int(w.shape[-1])
    print(
        f"{key}: teacher test accuracy {teacher_acc:.4f} "
        f"({time.time() - t0:.0f}s); {name}: {dense} parameters",
        flush=True,
    )
    rows = []

    def record(method, ratio, params, student):
        row = {
            "model": key,
            "layer": name,
            "ratio_target": ratio,
            "method": method,
            "params": int(params),
            "ratio": dense / params,
            "error_init": layer_output_error(teacher, student, name, x_te),
            "accuracy_init": accuracy(student, x_te, y_te),
        }
        result = fine_tune(student, teacher, (x_tr, y_tr), (x_va, y_va), epochs)
        row["error_tuned"] = layer_output_error(teacher, student, name, x_te)
        row["accuracy_tuned"] = accuracy(student, x_te, y_te)
        row["fine_tuning"] = result["note"]
        rows.append(row)
        print(
            f"  {ratio:>4}x {method:<16} {params:>6} params "
            f"({row['ratio']:6.1f}x): error {row['error_init']:.3f} -> "
            f"{row['error_tuned']:.3f}, accuracy {row['accuracy_init']:.4f} "
            f"-> {row['accuracy_tuned']:.4f}",
            flush=True,
        )

    for ratio in ratios:
        budget = dense / ratio
        rank = max(int((budget - d_out) // (d_in + d_out)), 0)
        params = rank * (d_in + d_out) + d_out
        for method, aware in (("svd", False), ("asvd", True)):
            block = low_rank_layer(layer, rank, fit_inputs, aware)
            student = with_layer(teacher, name, block)
            record(
                f"{method} r={rank}",
                ratio,
                params,
                student,
            )
        for net in networks:
            student, report = compress(
                teacher,
                (x_tr, y_tr),
                network=net,
                target_ratio=ratio,
                layers=[name],
                reconstruction_steps=steps,
                validation_data=(x_va, y_va),
                epochs=0,
                verbose=0,
            )
            (info,) = report.layers
            record(
                f"{net} chi={info['bond_dim']}",
                ratio,
                info["params_after"],
                student,
            )
    return teacher_acc, rows


# -- the table
def table(results):
    """Markdown tables; "vs ASVD": output error after initialisation <=
    the ASVD's, and test accuracy after fine-tuning >= the ASVD's."""
    lines = []
    for key, (teacher_acc, rows) in results.items():
        lines += [
            f"### {key} (teacher test accuracy {teacher_acc:.4f}, layer "
            f"`{rows[0]['layer']}`)",
            "",
            "| target | method | params | ratio | output error init | "
            "after fine-tuning | accuracy init | after fine-tuning | "
            "vs ASVD |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for ratio in sorted({r["ratio_target"] for r in rows}):
            group = [r for r in rows if r["ratio_target"] == ratio]
            asvd = next(r for r in group if r["method"].startswith("asvd"))
            for r in group:
                verdict = ""
                if r["method"][:3] not in ("svd", "asv"):
                    init_ok = r["error_init"] <= asvd["error_init"]
                    tuned_ok = r["accuracy_tuned"] >= asvd["accuracy_tuned"]
                    misses = [
                        what
                        for what, ok in (
                            ("init error", init_ok),
                            ("tuned accuracy", tuned_ok),
                        )
                        if not ok
                    ]
                    verdict = (
                        "beats ASVD"
                        if not misses
                        else f"**does not beat ASVD** ({', '.join(misses)})"
                    )
                    if r["params"] > 1.1 * asvd["params"]:
                        verdict += (
                            f"; {r['params'] / asvd['params']:.1f}x the "
                            f"ASVD's parameters"
                        )
                lines.append(
                    f"| {ratio}x | {r['method']} | {r['params']} | "
                    f"{r['ratio']:.1f}x | {r['error_init']:.3f} | "
                    f"{r['error_tuned']:.3f} | {r['accuracy_init']:.4f} | "
                    f"{r['accuracy_tuned']:.4f} | {verdict} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="ttn and mpo, MLP and CNN only, 1 epoch",
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--networks",
        default=None,
        help="comma-separated networks (default ttn,attn,mpo; quick ttn,mpo)",
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    networks = ["ttn", "mpo"] if args.quick else ["ttn", "attn", "mpo"]
    if args.networks:
        networks = [n for n in args.networks.split(",") if n]
    models = ["mlp", "cnn"] if args.quick else list(MODELS)
    epochs = args.epochs or (1 if args.quick else 3)
    steps = 200 if args.quick else 500
    t0 = time.time()
    results = {
        key: run_model(key, networks, RATIOS, epochs, steps) for key in models
    }
    text = table(results)
    header = (
        f"Backend {keras.backend.backend()}, fine-tuning {epochs} epochs, "
        f"fit {steps} steps, {time.time() - t0:.0f}s in all"
        f"{' (--quick)' if args.quick else ''}.\n\n"
    )
    print(text)
    os.makedirs(args.out, exist_ok=True)
    name = "pretrained_compression" + ("_quick" if args.quick else "")
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(header + text)
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(
            {k: {"teacher": v[0], "rows": v[1]} for k, v in results.items()},
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
