"""A small transformer classifier whose attention weights are generated.

Run: python examples/attention_model.py

Task (generated data): does the token 1 appear before the token 2 in a
sequence of 16 random tokens? The attention projections of the encoder
block come from tensor-network generators (Q, K, V jointly).
"""

import keras
import numpy as np

from keras_adntn import TNDense
from keras_adntn import TNMultiHeadAttention


def make_data(n: int, length: int = 16, vocab: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(3, vocab, size=(n, length))
    for row in x:
        i, j = rng.choice(length, 2, replace=False)
        row[i], row[j] = 1, 2
    y = (np.argmax(x == 1, axis=1) < np.argmax(x == 2, axis=1)).astype(int)
    return x, y


def build(length: int = 16, vocab: int = 8, dim: int = 32) -> keras.Model:
    tokens = keras.Input((length,), dtype="int32")
    h = keras.layers.Embedding(vocab, dim)(tokens)
    # derived from the symbolic input so it stays part of the graph
    positions = keras.ops.zeros_like(tokens) + keras.ops.arange(length)
    h = h + keras.layers.Embedding(length, dim)(positions)
    attended = TNMultiHeadAttention(num_heads=4, key_dim=8, seed=0)(h, h)
    h = keras.layers.LayerNormalization()(h + attended)
    h = h + TNDense(dim, activation="relu", seed=1)(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(tokens, keras.layers.Dense(2)(h))


def main(epochs: int = 15) -> list:
    keras.utils.set_random_seed(0)
    x, y = make_data(2000)
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x, y, validation_split=0.2, epochs=epochs, batch_size=64, verbose=2
    )
    attention = next(
        layer
        for layer in model.layers
        if isinstance(layer, TNMultiHeadAttention)
    )
    print(
        f"attention: {attention.count_params()} stored parameters "
        f"(dense equivalent {attention.dense_params})"
    )
    return history.history["loss"]


if __name__ == "__main__":
    main()
