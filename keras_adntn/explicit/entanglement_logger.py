"""EntanglementLogger: bond entropies of every TNLayer into the logs."""

import keras

from keras_adntn.explicit import entanglement


class EntanglementLogger(keras.callbacks.Callback):
    """Writes the entanglement entropy of every MPO bond into `logs`.

    At the end of each epoch, for every `TNLayer` of the model, the exact
    Schmidt spectrum of each inner bond is computed
    (`entanglement.bond_spectra`) and `S = -sum lambda^2 log lambda^2`
    (lambda normalised) is stored as `logs["<layer>/S_bond<k>"]`, so
    `History` and `CSVLogger` (placed after it) keep them.

    Args:
        singular_values: also log every normalised singular value as
            `"<layer>/sv_bond<k>_<m>"`.
        on_train_begin_too: record the spectra before training in
            `initial_logs`.

    Example:

    >>> history = model.fit(x, y, callbacks=[EntanglementLogger()])
    ... # doctest: +SKIP
    >>> history.history["tn_layer/S_bond1"]  # doctest: +SKIP
    """

    def __init__(self, singular_values=False, on_train_begin_too=False):
        super().__init__()
        self.singular_values = bool(singular_values)
        self.on_train_begin_too = bool(on_train_begin_too)
        self.initial_logs = {}

    def on_train_begin(self, logs=None):
        if self.on_train_begin_too:
            self.initial_logs = entanglement.entanglement_logs(
                self.model, self.singular_values
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs.update(
            entanglement.entanglement_logs(self.model, self.singular_values)
        )
