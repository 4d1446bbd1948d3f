"""Peak memory of generating a kernel, against the kernel's own bytes.

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --backends jax --networks ttn

For `TNDense(size)` on `size` inputs (default 4096: a 64 MiB float32
kernel) and every network (bond_dim 2), measures the intermediates that
generating the kernel from its cores holds at its peak, beyond what writing
the kernel alone holds (the "floor": a compiled `ops.full((size, size))`).
The goal is intermediates <= 3x the kernel's bytes. Each backend/network
pair runs in a fresh subprocess. Methods:

- `xla-memory-analysis` (JAX): the compiled generation's
  `memory_analysis().temp_size_in_bytes` (XLA's buffer assignment: every
  temporary, with liveness-based reuse; the output is not included).
- `tf-allocator-peak` (TF, with XLA and as a plain tf.function):
  `tf.config.experimental.reset_memory_stats("CPU:0")`, one generation,
  then `get_memory_info("CPU:0")["peak"]` minus the bytes in use before.
- `rss-hwm` (JAX and torch; torch runs eagerly): the process's peak
  resident set (`VmHWM`, reset through `/proc/self/clear_refs`) during one
  generation, minus the resident set before; Linux only. Not used for TF:
  TF's CPU allocator keeps freed buffers resident, so after the warm-up
  call a generation adds nothing to the resident set.

Each method reports generation minus floor ("intermediates"). On JAX the
backward pass of the generation (`jax.vjp`: the cores' gradients from the
kernel's cotangent, as in training) is measured too, with no goal: its
temporaries are the residuals autodiff keeps. Results go to
`benchmarks/results/memory.json` and `memory.md`.
"""

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time

NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]
BACKENDS = ["jax", "tensorflow", "torch"]
GOAL = 3.0
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


# -- measurements, in the worker process --------------------------------------
def _status():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def _release():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def rss_peak(fn, args, block):
    """Peak resident bytes one call of `fn` adds to the process."""
    _release()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    before = _status()["VmRSS"]
    out = fn(*args)
    block(out)
    peak = _status()["VmHWM"]
    del out
    return peak - before


def tf_allocator_peak(fn, args, block):
    import tensorflow as tf

    _release()
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    out = fn(*args)
    block(out)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    del out
    return peak - before


def worker(backend, network, size):
    os.environ["KERAS_BACKEND"] = backend
    import keras
    from keras import ops

    from keras_adntn import TNDense

    layer = TNDense(size, network=network, seed=0)
    layer.build((None, size))
    variables = list(layer.generator.trainable_variables)

    def generate(*values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return layer.kernel

    def floor(value):
        return ops.full((size, size), value)

    cores = [ops.convert_to_tensor(v.value) for v in variables]
    one = ops.convert_to_tensor(1.0)

    def block(x):
        if hasattr(x, "block_until_ready"):
            x.block_until_ready()
        ops.convert_to_numpy(x[:1, :1])

    records = []

    def record(method, gen_bytes, floor_bytes, **extra):
        records.append(
            {
                "network": network,
                "backend": backend,
                "method": method,
                "generation_bytes": int(gen_bytes),
                "floor_bytes": int(floor_bytes),
                "intermediate_bytes": int(gen_bytes - floor_bytes),
                **extra,
            }
        )

    def measure(method, gen_fn, floor_fn, measure_fn, **extra):
        block(gen_fn(*cores))  # compile / warm up
        block(floor_fn(one))
        gen = min(measure_fn(gen_fn, cores, block) for _ in range(2))
        flo = min(measure_fn(floor_fn, [one], block) for _ in range(2))
        record(method, gen, flo, **extra)

    if backend == "jax":
        import jax

        gen_c = jax.jit(generate).lower(*cores).compile()
        floor_c = jax.jit(floor).lower(one).compile()
        gen_m, floor_m = gen_c.memory_analysis(), floor_c.memory_analysis()
        record(
            "xla-memory-analysis",
            gen_m.temp_size_in_bytes,
            floor_m.temp_size_in_bytes,
            output_bytes=int(gen_m.output_size_in_bytes),
        )
        measure("rss-hwm (jit)", jax.jit(generate), jax.jit(floor), rss_peak)

        # Training also differentiates through the generator: the backward
        # pass (cores' gradients from the kernel's cotangent) keeps the
        # forward's residuals. No goal is set for it; compiled, not run.
        def backward(values, cotangent):
            return jax.vjp(generate, *values)[1](cotangent)

        cotangent = jax.ShapeDtypeStruct((size, size), "float32")
        grad_m = (
            jax.jit(backward).lower(cores, cotangent).compile()
        ).memory_analysis()
        record(
            "xla-memory-analysis, backward (vjp)",
            grad_m.temp_size_in_bytes,
            0,
            backward=True,
        )
    elif backend == "tensorflow":
        import tensorflow as tf

        for jit in (True, False):
            label = "xla" if jit else "graph"
            gen_fn = tf.function(generate, jit_compile=jit)
            floor_fn = tf.function(floor, jit_compile=jit)
            measure(
                f"tf-allocator-peak ({label})",
                gen_fn,
                floor_fn,
                tf_allocator_peak,
            )
    else:
        import torch

        with torch.no_grad():
            measure("rss-hwm (eager, no_grad)", generate, floor, rss_peak)
    return records


# -- driver -------------------------------------------------------------------
def run_worker(backend, network, size):
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="3",
        JAX_PLATFORMS="cpu",
        # Big buffers get their own mappings, returned to the OS when freed,
        # so the resident set follows what is live.
        MALLOC_MMAP_THRESHOLD_="65536",
        MALLOC_TRIM_THRESHOLD_="0",
        PYTHONPATH=os.pathsep.join(
            p
            for p in (os.path.dirname(HERE), os.environ.get("PYTHONPATH"))
            if p
        ),
    )
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--worker", backend, network, str(size)],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        return [
            {
                "network": network,
                "backend": backend,
                "method": "failed",
                "error": result.stderr.strip().splitlines()[-1:],
            }
        ]
    records = json.loads(result.stdout.strip().splitlines()[-1])
    for r in records:
        r["seconds"] = round(time.perf_counter() - start, 1)
    return records


def verdict(ratio):
    if ratio <= GOAL:
        return "met"
    return f"MISSED by {ratio - GOAL:.2f}x"


def table(records, kernel_bytes):
    mib = 2**20
    lines = [
        f"Kernel {kernel_bytes / mib:.0f} MiB; goal: intermediates <= "
        f"{GOAL:g}x kernel ({GOAL * kernel_bytes / mib:.0f} MiB).",
        "",
        "| network | backend | method | generation MiB | floor MiB "
        "| intermediates MiB | / kernel | goal |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in records:
        if r["method"] == "failed":
            lines.append(
                f"| {r['network']} | {r['backend']} | failed: "
                f"{' '.join(r['error'])} | | | | | |"
            )
            continue
        ratio = r["intermediate_bytes"] / kernel_bytes
        goal = "no goal" if r.get("backward") else verdict(ratio)
        lines.append(
            f"| {r['network']} | {r['backend']} | {r['method']} "
            f"| {r['generation_bytes'] / mib:.1f} "
            f"| {r['floor_bytes'] / mib:.1f} "
            f"| {r['intermediate_bytes'] / mib:.1f} "
            f"| {ratio:.2f} | {goal} |"
        )
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        backend, network, size = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(worker(backend, network, size)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--networks", nargs="+", default=NETWORKS)
    parser.add_argument("--backends", nargs="+", default=BACKENDS)
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args()
    kernel_bytes = 4 * args.size * args.size
    records = []
    for backend in args.backends:
        for network in args.networks:
            new = run_worker(backend, network, args.size)
            records += new
            print(table(new, kernel_bytes).splitlines()[-1], flush=True)
    text = table(records, kernel_bytes)
    print()
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "memory.json"), "w") as f:
        json.dump(
            {
                "size": args.size,
                "kernel_bytes": kernel_bytes,
                "goal": GOAL,
                "records": records,
            },
            f,
            indent=1,
        )
    with open(os.path.join(args.out, "memory.md"), "w") as f:
        f.write(
            f"# Kernel generation memory, TNDense({args.size}) on "
            f"{args.size} inputs\n\n"
            "Written by `python benchmarks/bench_memory.py`.\n\n" + text + "\n"
        )


if __name__ == "__main__":
    main()
