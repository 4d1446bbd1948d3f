"""Command line: `keras-adntn demo` (also `python -m keras_adntn demo`)."""

import argparse
import sys
import time


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


def demo(epochs: int = 30, width: int = 256) -> list:
    """Trains a dense and compressed digits MLPs; prints a comparison."""
    import keras

    from keras_adntn import TNDense

    x_train, x_test, y_train, y_test = _digits()
    rows = []
    for kind in ["dense", "ttn", "attn", "mera", "brickwall", "mpo"]:
        keras.utils.set_random_seed(0)
        if kind == "dense":
            hidden = keras.layers.Dense(width, activation="relu")
        else:
            hidden = TNDense(width, network=kind, activation="relu", seed=0)
        model = keras.Sequential(
            [keras.Input((64,)), hidden, keras.layers.Dense(10)]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        start = time.perf_counter()
        model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
        seconds = time.perf_counter() - start
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        params = hidden.count_params()
        rows.append((kind, params, 64 * width + width, accuracy, seconds))
        print(
            f"  trained {kind:<9} hidden layer: {params:>6} parameters, "
            f"test accuracy {accuracy:.3f} ({seconds:.1f} s)",
            flush=True,
        )
    print()
    print(f"Digits MLP 64 -> {width} (layer under test, relu) -> 10")
    print(f"{'hidden layer':<12} {'params':>8} {'ratio':>8} {'accuracy':>9}")
    for kind, params, dense, accuracy, _ in rows:
        print(
            f"{kind:<12} {params:>8} {dense / params:>7.1f}x {accuracy:>9.3f}"
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="keras-adntn",
        description="Keras layers with tensor-network-generated weights.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("demo", help="train dense vs compressed on digits")
    run.add_argument("--epochs", type=int, default=30)
    run.add_argument("--width", type=int, default=256)
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.epochs < 1 or args.width < 1:
            parser.error("--epochs and --width must be >= 1")
        demo(args.epochs, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
