"""The main job (`keras-adntn demo`): where a generated layer pays, and
where it does not, each next to its honest controls.

1. The image task (the `image` task of `benchmarks/generator_quality.py`):
   16 x 16 generated images, label = which of 5 motifs and whether it
   comes before a marker motif; `Conv2D(16, 3) -> MaxPool -> flatten (1024)
   -> [layer under test, 1024, relu] -> Dense(10)`. A frozen random layer
   there is no better than removing the layer, and a trained generator at
   ~900x recovers the dense layer's gain.
2. The digits MLP `64 -> [layer under test, relu] -> 10`: a frozen random
   layer already recovers most of the dense gain, so the generators do not
   pay there (the rule: run the two controls first).

Each table has the trained Dense layer, the generated layers and the
controls (the layer removed, a Dense layer frozen at its random
initialisation), the recovered gain and a verdict line. The ttn model of
the image task is then exported to LiteRT in both modes (parity checked
with the LiteRT interpreter, arena measured on TensorFlow Lite Micro), and
`demo.png` draws both tasks with the controls as reference lines.
"""

import os
import time

# rows that train nothing in the layer under test
CONTROLS = ("frozen random", "frozen orth", "removed")
GENERATORS = ("ttn", "attn", "mera", "brickwall", "mpo", "mpo orth")
IMAGE_UNITS = 1024
# the verdict: the trained Dense layer must add at least 2 accuracy points
# over removing the layer (else no layer can be told apart from another on
# a few hundred test examples), and the best generated layer must beat the
# best control by at least 1 point
MIN_DENSE_GAIN = 0.02
MIN_MARGIN = 0.01


def _hidden_layer(kind: str, width: int):
    """The layer under test (None: removed)."""
    import keras

    from keras_adntn.layers import TNDense

    if kind == "removed":
        return None
    if kind == "dense":
        return keras.layers.Dense(width, activation="relu")
    if kind == "frozen random":
        layer = keras.layers.Dense(
            width,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=0),
        )
        layer.trainable = False
        return layer
    if kind in ("mpo orth", "frozen orth"):
        return TNDense(
            width,
            network="mpo",
            generator_init="orthogonal",
            activation="relu",
            seed=0,
            trainable=kind == "mpo orth",
        )
    return TNDense(width, network=kind, activation="relu", seed=0)


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    return train_test_split(
        (data.data / 16.0).astype("float32"),
        data.target,
        test_size=0.25,
        random_state=0,
        stratify=data.target,
    )


def image_task(n_train: int = 4000, n_test: int = 2000, seed: int = 20261202):
    """The generated image task: `(x_train, x_test, y_train, y_test)`.

    16 x 16 x 1 images of noise (std 0.2) with one of 5 random 3 x 3 +-1
    motifs and a marker motif at random, non-overlapping places; label =
    2 * motif + (the motif comes before the marker, row-major). The same
    generator as `benchmarks/generator_quality.py`'s `image` task.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    motifs = rng.choice([-1.0, 1.0], (6, 3, 3))

    def place(n):
        x = 0.2 * rng.standard_normal((n, 16, 16))
        ids = rng.integers(0, 5, n)
        y = np.zeros(n, int)
        for i in range(n):
            while True:
                p = rng.integers(0, 14, (2, 2))
                if np.any(np.abs(p[0] - p[1]) >= 3):
                    break
            for m, (r, c) in ((motifs[ids[i]], p[0]), (motifs[5], p[1])):
                x[i, r : r + 3, c : c + 3] += rng.uniform(0.7, 1.3) * m
            y[i] = 2 * ids[i] + int(tuple(p[0]) < tuple(p[1]))
        return x[..., None].astype("float32"), y

    x, y = place(n_train)
    xt, yt = place(n_test)
    return x, xt, y, yt


def _train_rows(title, front, data, kinds, width, epochs, optimizer, batch):
    """Trains one model per kind; returns rows and models by kind."""
    import keras
    import numpy as np

    x_train, x_test, y_train, y_test = data
    rows, models = [], {}
    for kind in kinds:
        keras.utils.set_random_seed(0)
        hidden = _hidden_layer(kind, width)
        layers = [] if hidden is None else [hidden]
        model = keras.Sequential(
            [keras.Input(x_train.shape[1:]), *front(), *layers]
            + [keras.layers.Dense(10)]
        )
        model.compile(
            optimizer=optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            # XLA for the generated layers: 2x faster steps on TensorFlow,
            # where "auto" does not compile (measured 84 vs 169 ms a step);
            # the other rows do not repay XLA's compile time; torch eager
            jit_compile=kind in GENERATORS
            and keras.backend.backend() in ("tensorflow", "jax")
            or "auto",
        )
        start = time.perf_counter()
        model.fit(x_train, y_train, epochs=epochs, batch_size=batch, verbose=0)
        seconds = time.perf_counter() - start
        _, accuracy = model.evaluate(x_test, y_test, verbose=0, batch_size=500)
        weights = [] if hidden is None else hidden.trainable_weights
        params = sum(int(np.prod(w.shape)) for w in weights)
        models[kind] = model
        fan_in = int(np.prod(model.layers[len(front())].input.shape[1:]))
        rows.append((kind, params, fan_in * width + width, accuracy, seconds))
        print(
            f"  {title}: trained {kind:<13} {params:>8} trained "
            f"parameters, test accuracy {accuracy:.3f} ({seconds:.1f} s)",
            flush=True,
        )
    return rows, models


def gains(rows) -> dict:
    """kind -> recovered gain (acc - removed) / (dense - removed)."""
    by_kind = {row[0]: row for row in rows}
    floor, top = by_kind["removed"][3], by_kind["dense"][3]
    return {
        kind: (acc - floor) / (top - floor) if top != floor else 0.0
        for kind, _, _, acc, _ in rows
    }


def _standings(rows):
    """What both verdicts are made of: `(gain, worth, best, control,
    margin)`: the gains by kind, the accuracy the trained Dense layer adds
    over removing it, and (None where `worth` is too small to tell layers
    apart) the best generated kind, the best control and the accuracy by
    which the one beats the other."""
    gain = gains(rows)
    accuracy = {row[0]: row[3] for row in rows}
    worth = accuracy["dense"] - accuracy["removed"]
    if worth < MIN_DENSE_GAIN:
        return gain, worth, None, None, None
    best = max((k for k in gain if k in GENERATORS), key=gain.get)
    control = max((k for k in gain if k in CONTROLS), key=gain.get)
    return gain, worth, best, control, accuracy[best] - accuracy[control]


def verdict(rows) -> str:
    """One line: does the best generated layer beat both controls?"""
    gain, worth, best, control, margin = _standings(rows)
    if best is None:
        return (
            f"the trained Dense layer adds {100 * worth:.1f} points over "
            f"removing it: too little to tell layers apart (no layer is "
            f"clearly worth its parameters here)"
        )
    _, params, dense, _, _ = {row[0]: row for row in rows}[best]
    head = f"{best} recovers {gain[best]:.2f} of the dense gain at "
    head += f"{dense / params:.0f}x"
    if margin >= MIN_MARGIN:
        return (
            f"{head}, above both controls (best control: {control} "
            f"{gain[control]:.2f}): the generated layer pays here"
        )
    return (
        f"{head}, not above the controls ({control} {gain[control]:.2f}): "
        f"keep Dense or a frozen random layer here"
    )


def _print_table(title, rows):
    print()
    print(title)
    print(
        f"{'layer under test':<16} {'params':>9} {'ratio':>8} "
        f"{'accuracy':>9} {'gain':>6}"
    )
    gain = gains(rows)
    for kind, params, dense, accuracy, _ in rows:
        ratio = f"{dense / params:>7.1f}x" if params else f"{'-':>8}"
        print(
            f"{kind:<16} {params:>9} {ratio} {accuracy:>9.3f} "
            f"{gain[kind]:>6.2f}"
        )
    print(f"verdict: {verdict(rows)}")


def demo(
    epochs: int | None = None,
    width: int = 256,
    out_dir: str = "adntn_demo",
    image_samples: int = 4000,
    verbose: bool = False,
) -> dict:
    """The main job: where a generated layer pays (the image task) and where
    it does not (the digits MLP), LiteRT export, a plot.

    Args:
        epochs: training epochs of every model (default: 12 on the image
            task, 30 on digits).
        width: width of the digits MLP's hidden layer.
        out_dir: where the `.tflite` files and `demo.png` go.
        image_samples: training images of the image task.
        verbose: let TensorFlow's start-up lines through where it loads
            late (the JAX and PyTorch backends: seeding and the export
            load it); by default they are silenced, as the CLI silences
            them at start.

    Returns:
        `{"image": rows, "digits": rows}`, each row `(kind, trained
        parameters, dense parameters, test accuracy, seconds)`.
    """
    import keras

    def adamw():
        return keras.optimizers.AdamW(1e-3)

    def adam():
        return keras.optimizers.Adam(1e-2)

    def conv_front():
        return [
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
        ]

    if not verbose:  # keras.utils.set_random_seed loads it otherwise
        from keras_adntn.export import tflm

        tflm.load_tensorflow_quietly()
    image = image_task(image_samples)
    image_kinds = ["dense", "ttn", "frozen random", "removed"]
    image_rows, image_models = _train_rows(
        "image",
        conv_front,
        image,
        image_kinds,
        IMAGE_UNITS,
        epochs or 12,
        adamw,
        128,
    )
    digit_kinds = ["dense", "ttn", "mpo orth"]
    digit_kinds += ["frozen random", "frozen orth", "removed"]
    if width & (width - 1):  # the orthogonal MPO needs a power of two
        print(f"  (no 'mpo orth' rows: width {width} is not a power of 2)")
        digit_kinds.remove("mpo orth")
        digit_kinds.remove("frozen orth")
    digit_rows, _ = _train_rows(
        "digits", list, _digits(), digit_kinds, width, epochs or 30, adam, 64
    )
    image_title = (
        f"1. Image task: conv -> flatten (1024) -> layer under test "
        f"({IMAGE_UNITS}, relu) -> 10"
    )
    digits_title = (
        f"2. Digits MLP: 64 -> layer under test ({width}, relu) -> 10"
    )
    _print_table(image_title, image_rows)
    _print_table(digits_title, digit_rows)
    print(
        "gain = (accuracy - removed) / (dense - removed): the share of what "
        "the trained\nDense layer adds that a layer recovers. 'frozen "
        "random' is a Dense layer left\nat its random initialisation "
        "(nothing trained), 'frozen orth' the orthogonal\nMPO generator "
        "left at its initialisation. A generated layer is worth its\n"
        "parameters where it beats both controls: run them first at your "
        "own layer\n(see docs/benchmarks.md)."
    )
    os.makedirs(out_dir, exist_ok=True)
    _demo_export(image_models["ttn"], image[1], out_dir)
    _demo_plot(
        [("image task", image_rows), ("digits MLP", digit_rows)],
        os.path.join(out_dir, "demo.png"),
    )
    return {"image": image_rows, "digits": digit_rows}


def _demo_export(model, x_test, out_dir):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    from keras_adntn.export import export_litert

    print()
    print(
        "LiteRT export of the image task's ttn model (TFLM arena budget "
        "64K on the fly;\nparity with Keras on 20 test images):"
    )
    count = 20
    expected = model.predict(x_test[:count], verbose=0)
    for mode in ["cached", "on_the_fly"]:
        path = os.path.join(out_dir, f"image_ttn_{mode}.tflite")
        # on the fly: the 1024 x 1024 kernel generated in blocks in 64 KB
        budget = "64K" if mode == "on_the_fly" else None
        report = export_litert(model, path, mode=mode, arena_budget=budget)
        # the built-in kernels only: no XNNPACK delegate (and its log line)
        interpreter = Interpreter(
            model_path=path,
            experimental_op_resolver_type=(
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            ),
        )
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]["index"]
        out = interpreter.get_output_details()[0]["index"]
        got = []
        for x in x_test[:count]:
            interpreter.set_tensor(inp, x[None].astype("float32"))
            interpreter.invoke()
            got.append(interpreter.get_tensor(out)[0])
        error = np.abs(np.array(got) - expected).max() / np.abs(expected).max()
        arena = report.tflm_arena_bytes
        arena = "-" if arena is None else f"{arena / 1024:,.0f} KB"
        print(
            f"  {mode:<10} flash {report.file_bytes / 1024:>7,.0f} KB  TFLM "
            f"arena {arena:>7}  parity {error:.1e} "
            f"({'ok' if error <= 1e-4 else 'FAILED'})"
        )


def _spread(values, gap):
    """`values` moved apart (order kept) so neighbours differ by >= gap."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    placed = [values[i] for i in order]
    for k in range(1, len(placed)):
        placed[k] = max(placed[k], placed[k - 1] + gap)
    shift = (placed[-1] - max(values)) / 2 if placed else 0.0
    out = [0.0] * len(values)
    for k, i in enumerate(order):
        out[i] = placed[k] - max(0.0, shift)
    return out


def _demo_plot(panels, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.6))
    for ax, (task, rows) in zip(axes, panels):
        by_kind = {row[0]: row for row in rows}
        points = [row for row in rows if row[1] > 0]
        accs = [100 * row[3] for row in rows]
        low, high = min(accs), max(accs)
        span = max(high - low, 1.0)
        ax.set_ylim(low - 0.15 * span, high + 0.15 * span)
        # the controls decide the verdict: reference lines across the plot
        styles = {
            "removed": ("gray", ":"),
            "frozen random": ("gray", "--"),
            "frozen orth": ("tab:olive", "-."),
        }
        for kind, (color, style) in styles.items():
            if kind in by_kind:
                acc = 100 * by_kind[kind][3]
                ax.axhline(
                    acc,
                    color=color,
                    linestyle=style,
                    linewidth=1.2,
                    label=f"{kind} (control): {acc:.1f} %",
                )
        xs = [row[1] for row in points]
        ys = [100 * row[3] for row in points]
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 3, max(xs) * 3)
        for row, x, y in zip(points, xs, ys):
            color = "tab:red" if row[0] == "dense" else "tab:blue"
            ax.scatter(x, y, color=color, zorder=3)
        # point labels spread vertically as one column so none overlap
        spread = _spread(ys, 0.075 * span)
        for row, x, y, ty in zip(points, xs, ys, spread):
            near_right = x > max(xs) / 10
            ax.annotate(
                row[0],
                (x, y),
                xytext=(x / 1.6 if near_right else x * 1.6, ty),
                textcoords="data",
                fontsize=9,
                va="center",
                ha="right" if near_right else "left",
                arrowprops=dict(arrowstyle="-", color="lightgray", lw=0.8),
            )
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
        ax.set_xlabel("trained parameters of the layer under test")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: {_short_verdict(rows)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"\nplot written to {path}")


def _short_verdict(rows) -> str:
    gain, worth, best, control, margin = _standings(rows)
    if best is None:
        return (
            f"the layer under test adds {100 * worth:.1f} points:\n"
            f"too little to tell layers apart"
        )
    beats = "beats" if margin >= MIN_MARGIN else "does not beat"
    return (
        f"{best} ({gain[best]:.2f} of the dense gain) {beats} the controls"
        f"\n(best control: {control}, {gain[control]:.2f})"
    )
