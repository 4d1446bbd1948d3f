"""Compress a trained model: a dense digits MLP -> generated weights.

Run: python examples/compress_trained_model.py

Trains an ordinary 64 -> 256 -> 256 -> 10 Dense classifier on the digits
data set, then `keras_adntn.compress.compress` replaces its largest layer
(the 256 x 256 Dense) with a `TNDense` whose kernel a ttn generator with
bond dimension 2 produces, initialises the generator from the trained
kernel (activation matching), and fine-tunes the new model by
distillation from the original one. Prints the compression report and the
per-layer summary of the compressed model.
"""

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_adntn import summary
from keras_adntn.compress import compress


def main(epochs: int = 15, fine_tune_epochs: int = 10, verbose: int = 2):
    """Trains, compresses and reports; returns the `CompressionReport`."""
    keras.utils.set_random_seed(0)
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        (data.data / 16.0).astype("float32"),
        data.target,
        test_size=0.25,
        random_state=0,
        stratify=data.target,
    )
    teacher = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu", name="hidden_1"),
            keras.layers.Dense(256, activation="relu", name="hidden_2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    teacher.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)

    student, report = compress(
        teacher,
        (x_train, y_train),
        network="ttn",
        bond_dim=2,
        validation_data=(x_test, y_test),
        epochs=fine_tune_epochs,
        verbose=verbose,
    )
    print()
    print(report)
    print()
    summary(student)
    return report


if __name__ == "__main__":
    main()
