"""Kernel generation time vs the memory-write floor.

    KERAS_BACKEND=jax python benchmarks/bench_generation.py
    KERAS_BACKEND=tensorflow python benchmarks/bench_generation.py

For 1024^2 and 4096^2 kernels and every network (bond_dim 2), times the
compiled generation of the kernel from its cores (cores passed as traced
inputs through `keras.StatelessScope`, so nothing is constant-folded) and
the compiled write of as many float32 values (`ops.full`), the floor any
generator must pay. Prints generation / floor and whether the goal
(<= 3x) is met or by how much it is missed. Why it is missed: the
generator's last levels are a chain of contractions and reshapes each of
which writes a tensor the size of the kernel (or a fraction of it), and
every level boundary applies an elementwise activation that reads and
writes it again, so even when XLA fuses well the kernel-sized memory
traffic is several passes, not one.
"""

import argparse
import statistics
import time

import keras
from keras import ops

from keras_adntn import TNDense

GOAL = 3.0


def compile_fn(fn):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def block(x):
    if hasattr(x, "block_until_ready"):
        x.block_until_ready()
    return ops.convert_to_numpy(ops.sum(x[:1, :1]))


def timed(fn, *args, repeats=10):
    block(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument(
        "--networks",
        nargs="+",
        default=["ttn", "attn", "mera", "brickwall", "mpo"],
    )
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"backend={keras.backend.backend()}")
    print(
        f"{'size':>6} {'network':<10} {'gen ms':>9} {'floor ms':>9} "
        f"{'ratio':>7}"
    )
    for n in args.sizes:
        floor = timed(
            compile_fn(lambda c: ops.full((n, n), c)),
            ops.convert_to_tensor(1.0),
            repeats=args.repeats,
        )
        for network in args.networks:
            layer = TNDense(n, network=network, seed=0)
            layer.build((None, n))
            variables = list(layer.generator.trainable_variables)

            def generate(*values, layer=layer, variables=variables):
                mapping = list(zip(variables, values))
                with keras.StatelessScope(state_mapping=mapping):
                    return layer.kernel

            values = [ops.convert_to_tensor(v.value) for v in variables]
            gen = timed(compile_fn(generate), *values, repeats=args.repeats)
            ratio = gen / floor
            goal = "met" if ratio <= GOAL else f"MISSED by {ratio / GOAL:.1f}x"
            print(
                f"{n:>6} {network:<10} {gen * 1e3:>9.2f} "
                f"{floor * 1e3:>9.2f} {ratio:>7.1f}x  goal <= {GOAL:g}x {goal}",
                flush=True,
            )


if __name__ == "__main__":
    main()
