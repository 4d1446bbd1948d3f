"""The core the TN layers share: a spec, a generated kernel, its cache."""

from keras_adntn.kernels.generated_kernel import GeneratedKernel
from keras_adntn.kernels.generator_spec import GeneratorSpec

__all__ = ["GeneratedKernel", "GeneratorSpec"]
