"""Generator activations of the package (SPEC §5), serializable by name.

Besides any Keras activation, `generator_activation` accepts:

- `"siren"` (`Siren`): `sin(omega0 * x)`, omega0 = 30, with the SIREN
  initialisation rule for the hidden cores it follows (uniform in
  `+-sqrt(6 / fan_in) / omega0`, pre-activations calibrated to RMS
  `1 / omega0`, so that the argument of the sine has RMS 1);
- `"rational"` (`Rational`): learnable `P(x) / Q(x)` of type (3, 2)
  (Boulle et al. 2020), initialised to their best approximation of ReLU;
- `"prelu"` (`PReLU`): `max(x, 0) + a * min(x, 0)` with a learnable slope
  `a` (initially 0.25), He gain**2 = `2 / (1 + a**2)`.

The learnable coefficients are weights of the generator network, one set
per hidden level and group, named `act{level}_{name}`; the network passes
them to the activation when it runs (`bind`). Each activation evaluates
itself with `keras.ops` (inside models) and in NumPy (initialisation and
calibration, with the initial coefficients).
"""

import math

import keras
import numpy as np
from keras import ops

_REGISTRY = {}


def _register(cls):
    _REGISTRY[cls.activation_name] = cls
    return keras.saving.register_keras_serializable(package="keras_adntn")(cls)


class GeneratorActivation:
    """Base of the package's generator activations.

    Subclasses set `activation_name` and `param_shapes` (coefficient name ->
    size of its last axis), and implement `keras_call` and `numpy_eval`.
    """

    activation_name = ""
    param_shapes: dict = {}

    def initial_params(self, groups: int) -> dict:
        """Initial coefficients, `{name: (groups, size) float32 array}`."""
        return {}

    def keras_call(self, x, params: dict):
        raise NotImplementedError

    def numpy_eval(self, x, params: dict):
        raise NotImplementedError

    def gain_squared(self) -> float:
        """He gain**2 of the hidden cores that precede this activation."""
        return 1.0

    def preactivation_rms(self) -> float:
        """RMS calibration gives the pre-activations of its level."""
        return 1.0

    def draw_hidden(self, rng, shape, fan_in: int):
        """Initial hidden core of `shape` (None: the He-normal default)."""
        return None

    def bind(self, params: dict) -> "BoundActivation":
        """This activation with its coefficients (tensors or arrays)."""
        return BoundActivation(self, params)

    def __call__(self, x):
        defaults = {k: v[:1] for k, v in self.initial_params(1).items()}
        return self.keras_call(x, defaults)

    def numpy_call(self, x):
        return self.numpy_eval(x, self.initial_params(1))

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def is_default(self) -> bool:
        return self.get_config() == type(self)().get_config()

    def __eq__(self, other):
        return type(self) is type(other) and (
            self.get_config() == other.get_config()
        )

    def __hash__(self):
        return hash((type(self).__name__, repr(self.get_config())))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.activation_name}({args})"


class BoundActivation:
    """A generator activation applied with given coefficients.

    Calling it runs `keras.ops`; `numpy_call` is what `NumpyOps` uses.
    """

    def __init__(self, activation: GeneratorActivation, params: dict):
        self.activation = activation
        self.params = params

    def __call__(self, x):
        return self.activation.keras_call(x, self.params)

    def numpy_call(self, x):
        params = {k: np.asarray(v) for k, v in self.params.items()}
        return self.activation.numpy_eval(x, params)


@_register
class Siren(GeneratorActivation):
    """`sin(omega0 * x)` with the SIREN initialisation (Sitzmann et al.).

    Args:
        omega0: frequency factor (default 30).

    Returns (when called): `sin(omega0 * x)`.

    Example:

    >>> from keras_adntn import TNDense
    >>> layer = TNDense(64, generator_activation="siren")
    >>> layer = TNDense(64, generator_activation=Siren(omega0=10.0))
    """

    activation_name = "siren"

    def __init__(self, omega0: float = 30.0):
        self.omega0 = float(omega0)

    def keras_call(self, x, params):
        return ops.sin(ops.multiply(x, self.omega0))

    def numpy_eval(self, x, params):
        return np.sin(self.omega0 * x)

    def __call__(self, x):
        return self.keras_call(x, {})

    def preactivation_rms(self):
        return 1.0 / self.omega0

    def draw_hidden(self, rng, shape, fan_in):
        bound = math.sqrt(6.0 / fan_in) / self.omega0
        return rng.uniform(-bound, bound, size=shape)

    def get_config(self):
        return {"omega0": self.omega0}


Q_FLOOR = 0.1  # lower bound of the rational activation's denominator


@_register
class Rational(GeneratorActivation):
    """Learnable rational `P(x) / Q(x)` of type (3, 2) (Boulle et al.).

    `P(x) = a3 x^3 + a2 x^2 + a1 x + a0`, `Q(x) = b2 x^2 + b1 x + b0`,
    initialised to the paper's best rational approximation of ReLU on
    [-1, 1]: `a = (1.1915, 1.5957, 0.5, 0.0218)`, `b = (2.383, 0, 1)`
    (highest degree first). The coefficients are weights of the generator
    network (`act{level}_numerator`, `act{level}_denominator`). The
    denominator is evaluated in the safe form
    `Q(x) = max(|b0|, 0.1) + |b2 x^2 + b1 x|` (as in Padé activation
    units), equal to `Q` at the initialisation but never below 0.1, so
    training cannot drive it through zero.

    Returns (when called): `P(x) / Q(x)`.

    Example:

    >>> from keras_adntn import TNDense
    >>> layer = TNDense(64, generator_activation="rational")
    """

    activation_name = "rational"
    param_shapes = {"numerator": 4, "denominator": 3}
    NUMERATOR = (1.1915, 1.5957, 0.5, 0.0218)
    DENOMINATOR = (2.383, 0.0, 1.0)

    def initial_params(self, groups):
        return {
            "numerator": np.tile(
                np.asarray(self.NUMERATOR, "float32"), (groups, 1)
            ),
            "denominator": np.tile(
                np.asarray(self.DENOMINATOR, "float32"), (groups, 1)
            ),
        }

    @staticmethod
    def _horner(coefficients, x, take):
        out = take(coefficients, 0)
        for k in range(1, coefficients.shape[-1]):
            out = out * x + take(coefficients, k)
        return out

    def keras_call(self, x, params):
        def take(c, k):
            return ops.cast(c[:, k : k + 1], x.dtype)

        p = self._horner(params["numerator"], x, take)
        b = params["denominator"]
        q = ops.add(
            ops.maximum(ops.abs(take(b, 2)), Q_FLOOR),
            ops.abs((take(b, 0) * x + take(b, 1)) * x),
        )
        return ops.divide(p, q)

    def numpy_eval(self, x, params):
        def take(c, k):
            return np.asarray(c[:, k : k + 1], dtype=x.dtype)

        p = self._horner(params["numerator"], x, take)
        b = params["denominator"]
        q = np.maximum(np.abs(take(b, 2)), Q_FLOOR) + np.abs(
            (take(b, 0) * x + take(b, 1)) * x
        )
        return p / q

    def gain_squared(self):
        return 2.0


@_register
class PReLU(GeneratorActivation):
    """`max(x, 0) + a * min(x, 0)` with a learnable slope per level.

    Args:
        slope: initial negative-side slope `a` (default 0.25, He et al.).

    Returns (when called): `max(x, 0) + a * min(x, 0)`.

    Example:

    >>> from keras_adntn import TNDense
    >>> layer = TNDense(64, generator_activation="prelu")
    """

    activation_name = "prelu"
    param_shapes = {"slope": 1}

    def __init__(self, slope: float = 0.25):
        self.slope = float(slope)

    def initial_params(self, groups):
        return {"slope": np.full((groups, 1), self.slope, "float32")}

    def keras_call(self, x, params):
        a = ops.cast(params["slope"], x.dtype)
        return ops.add(ops.relu(x), ops.multiply(a, ops.minimum(x, 0.0)))

    def numpy_eval(self, x, params):
        a = np.asarray(params["slope"], dtype=x.dtype)
        return np.maximum(x, 0) + a * np.minimum(x, 0)

    def gain_squared(self):
        return 2.0 / (1.0 + self.slope**2)

    def get_config(self):
        return {"slope": self.slope}


def get(identifier):
    """The package activation for `identifier`, or None if it is not one.

    Args:
        identifier: a name (`"siren"`, `"rational"`, `"prelu"`), an
            instance, or a serialized dict of one.

    Returns:
        A `GeneratorActivation`, or None for anything else (a Keras
        activation name or callable).

    Example:

    >>> get("prelu")
    prelu(slope=0.25)
    """
    if isinstance(identifier, GeneratorActivation):
        return identifier
    if isinstance(identifier, str) and identifier in _REGISTRY:
        return _REGISTRY[identifier]()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        for cls in _REGISTRY.values():
            if name in (cls.__name__, f"keras_adntn>{cls.__name__}"):
                return keras.saving.deserialize_keras_object(identifier)
    return None


def serialize(activation: GeneratorActivation):
    """Config form: the name for default settings, else a Keras dict.

    Args:
        activation: a `GeneratorActivation`.

    Returns:
        Its name (str), or `keras.saving.serialize_keras_object` of it.

    Example:

    >>> serialize(PReLU())
    'prelu'
    """
    if activation.is_default():
        return activation.activation_name
    return keras.saving.serialize_keras_object(activation)


__all__ = ["GeneratorActivation", "PReLU", "Rational", "Siren", "get"]
