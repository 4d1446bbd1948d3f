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


def _accuracy(tn_trainable):
    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = digits()
    hidden = TNDense(64, activation="relu", bond_dim=2, seed=0)
    model = keras.Sequential(
        [keras.Input((64,)), hidden, keras.layers.Dense(10, "softmax")]
    )
    hidden.trainable = tn_trainable
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return accuracy, hidden


def test_digits_mlp_tn_hidden_layer_learns_beyond_its_frozen_control():
    """Regression caught: a generator whose kernel does not learn (no
    gradient reaching the cores, a kernel cached from the initial
    values). The control is the same model with the TN layer frozen (its
    random kernel as fixed features, ~0.68 on held-out digits); the
    trained one reaches ~0.91 (measured on TensorFlow, seed 0) with a
    164-number generator for a 64x64 kernel."""
    trained, hidden = _accuracy(True)
    frozen, _ = _accuracy(False)
    assert hidden.count_params() < hidden.dense_params / 20
    assert trained >= frozen + 0.15, (trained, frozen)
    assert trained >= 0.85, trained
