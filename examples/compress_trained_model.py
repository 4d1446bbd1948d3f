"""Compress a trained model: a dense digits MLP -> generated weights.

Run: python examples/compress_trained_model.py

Trains an ordinary 64 -> 256 -> 256 -> 10 Dense classifier on the digits
data set, then `keras_adntn.compress.compress` replaces its largest layer
(the 256 x 256 Dense) with a `TNDense` whose kernel a ttn generator
produces (the largest bond dimension that is still >= 50x smaller),
initialises the generator from the trained kernel in the metric of the
layer's real inputs (data-aware), and fine-tunes the new model by
distillation from the original one, keeping the best epoch on 15% of the
training data held out. Prints the compression report and the
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
        target_ratio=50,
        validation_data=0.15,  # held out of the training data
        epochs=fine_tune_epochs,
        verbose=verbose,
    )
    print()
    print(report)
    accuracy = teacher.evaluate(x_test, y_test, verbose=0)[1]
    pred = student.predict(x_test, verbose=0).argmax(-1)
    print(
        f"test accuracy: teacher {accuracy:.4f}, student "
        f"{(pred == y_test).mean():.4f}"
    )
    print()
    summary(student)
    return report


if __name__ == "__main__":
    main()
