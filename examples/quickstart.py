"""Quickstart: a digits classifier whose hidden layer is a TNDense.

Run: python examples/quickstart.py
"""

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_adntn import TNDense


def main(epochs: int = 30) -> float:
    keras.utils.set_random_seed(0)
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data / 16.0, data.target, test_size=0.25, random_state=0
    )
    model = keras.Sequential(
        [
            keras.Input((64,)),
            TNDense(256, activation="relu", network="ttn", bond_dim=2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=2)
    model.summary()
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    hidden = model.layers[0]
    print(
        f"TNDense(256) on 64 inputs: {hidden.count_params()} stored "
        f"parameters instead of {hidden.dense_params} "
        f"({hidden.compression_ratio:.1f}x smaller); test accuracy "
        f"{accuracy:.3f}"
    )
    return accuracy


if __name__ == "__main__":
    main()
