import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_adntn import TNDense


def digits():
    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    return train_test_split(
        x, data.target, test_size=0.25, random_state=0, stratify=data.target
    )


def test_digits_mlp_with_tn_hidden_layer_reaches_90_percent():
    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = digits()
    model = keras.Sequential(
        [
            keras.Input((64,)),
            TNDense(256, activation="relu", bond_dim=2, seed=0),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=30, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    hidden = model.layers[0]
    assert hidden.count_params() < hidden.dense_params / 20
    assert accuracy >= 0.90, accuracy
