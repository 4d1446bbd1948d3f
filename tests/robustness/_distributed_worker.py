"""Trains a small TN model on 1 then 2 devices; prints JSON. Run as a script:

    python tests/robustness/_distributed_worker.py jax  # DataParallel
    python tests/robustness/_distributed_worker.py tensorflow  # Mirrored

The process gets 2 CPU devices (JAX: XLA_FLAGS host device count; TF: two
logical CPUs), which has to happen before the backend initialises, so this
runs in its own process (`tests/robustness/test_distributed.py` spawns it).
It trains the same model from the same initial weights on the same global
batch twice: on one device (no distribution: everything on device 0), then
on both (`keras.distribution.DataParallel` on JAX,
`tf.distribute.MirroredStrategy` on TF). The last line of stdout is a JSON
object: per-step losses, weight checksums and all weights (start, end) of
both runs, and `layout`, where the variables and the generated kernels live.
"""

import json
import os
import re
import sys

BACKEND = sys.argv[1]
DEVICES = 2
STEPS = 5
BATCH = 16  # global batch; each of 2 replicas gets 8

os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if BACKEND == "jax":
    flag = f"--xla_force_host_platform_device_count={DEVICES}"
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " " + flag
    os.environ["JAX_PLATFORMS"] = "cpu"
elif BACKEND == "tensorflow":
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * DEVICES
    )
else:
    raise SystemExit(f"unsupported backend {BACKEND!r}")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_adntn as tn  # noqa: E402


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 8, 8, 3)).astype("float32")
    y = rng.standard_normal((BATCH, 4)).astype("float32")
    return x, y


def build_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = tn.TNConv2D(
        8, 3, padding="same", network="ttn", activation="relu", seed=0
    )(inputs)
    h = keras.layers.Reshape((64, 8))(h)
    h = tn.TNMultiHeadAttention(2, 4, seed=1)(h, h)
    h = keras.layers.Flatten()(h)
    h = tn.TNDense(16, network="mera", activation="tanh", seed=2)(h)
    outputs = keras.layers.Dense(
        4, kernel_initializer=keras.initializers.GlorotUniform(seed=3)
    )(h)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse"
    )
    return model


def checksum(model):
    return float(
        sum(np.abs(np.asarray(w, "float64")).sum() for w in model.get_weights())
    )


def flat_weights(model):
    return [
        float(v)
        for w in model.get_weights()
        for v in np.asarray(w, "float32").ravel()
    ]


def train(model):
    x, y = data()
    init = checksum(model)
    init_weights = flat_weights(model)
    # Full-batch steps: epoch k's loss is the loss before update k.
    history = model.fit(
        x, y, batch_size=BATCH, epochs=STEPS, shuffle=False, verbose=0
    )
    return {
        "losses": [float(v) for v in history.history["loss"]],
        "init_checksum": init,
        "final_checksum": checksum(model),
        "init_weights": init_weights,
        "final_weights": flat_weights(model),
    }


COLLECTIVE = re.compile(
    r"= (.*) (all-reduce|all-gather|reduce-scatter|all-to-all)(-start)?\("
)


def collectives(hlo):
    """The collective ops of a compiled HLO module, shortened."""
    return [
        line.strip()[:300]
        for line in hlo.splitlines()
        if COLLECTIVE.search(line)
    ]


def largest_all_reduce(hlo):
    """Element count of the largest operand any collective moves."""
    largest = 0
    for line in hlo.splitlines():
        match = COLLECTIVE.search(line)
        if not match:
            continue
        for dims in re.findall(r"f32\[([0-9,]*)\]", match.group(1)):
            size = 1
            for d in filter(None, dims.split(",")):
                size *= int(d)
            largest = max(largest, size)
    return largest


def _factorized_step_hlo(x, network):
    """The compiled data-parallel step of a TNDense(1024, network=network)
    model on its factorized path (the input contracted with the cores; for
    a ttn, with a head formed from them)."""
    import jax

    big = keras.Sequential(
        [
            keras.Input((1024,)),
            tn.TNDense(1024, network=network, execution="factorized", seed=0),
            keras.layers.Dense(1),
        ]
    )
    trainable = [v.value for v in big.trainable_variables]
    rest = [v.value for v in big.non_trainable_variables]

    def loss(trainable, rest, x):
        y, _ = big.stateless_call(trainable, rest, x)
        return jax.numpy.mean(y**2)

    step = jax.jit(jax.value_and_grad(loss))
    return step.lower(trainable, rest, x).compile().as_text()


def jax_layout(model):
    """Where the variables live, and what the compiled step communicates."""
    import jax

    distribution = keras.distribution.distribution()
    variables = {
        v.path: bool(v.value.sharding.is_fully_replicated)
        for v in model.variables
    }
    # A TNDense(1024) on 1024 inputs generating its kernel: the 4 MiB
    # kernel is the big tensor.
    big = keras.Sequential(
        [
            keras.Input((1024,)),
            tn.TNDense(1024, execution="on_the_fly", seed=0),
            keras.layers.Dense(1),
        ]
    )
    layer = big.layers[0]
    trainable = [v.value for v in big.trainable_variables]
    rest = [v.value for v in big.non_trainable_variables]
    x = np.ones((BATCH, 1024), "float32")
    x = jax.device_put(x, distribution.get_data_layout(x.shape).backend_layout)

    def loss(trainable, rest, x):
        y, _ = big.stateless_call(trainable, rest, x)
        return jax.numpy.mean(y**2)

    compiled = (
        jax.jit(jax.value_and_grad(loss)).lower(trainable, rest, x).compile()
    )
    hlo = compiled.as_text()
    # The same step as a shard_map over the batch: each device runs the
    # whole generator backward locally; only the core gradients are summed.
    mesh = distribution.device_mesh.backend_mesh
    spec = jax.sharding.PartitionSpec

    def local(trainable, x):
        value, grads = jax.value_and_grad(loss)(trainable, rest, x)
        return jax.lax.pmean(value, "batch"), jax.lax.pmean(grads, "batch")

    mapped = jax.jit(
        jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(spec(), spec("batch")),
            out_specs=(spec(), spec()),
            check_vma=False,
        )
    )
    mapped_hlo = mapped.lower(trainable, x).compile().as_text()
    # The kernel outside a step, from the replicated cores.
    cores = list(layer.generator.trainable_variables)

    def generate(*values):
        with keras.StatelessScope(state_mapping=list(zip(cores, values))):
            return layer.kernel

    kernel = jax.jit(generate)(*[v.value for v in cores])
    mpo_hlo = _factorized_step_hlo(x, "mpo")
    ttn_hlo = _factorized_step_hlo(x, "ttn")
    return {
        "mpo_largest_all_reduce": largest_all_reduce(mpo_hlo),
        "mpo_full_kernel_in_hlo": mpo_hlo.count("f32[1024,1024]"),
        "ttn_largest_all_reduce": largest_all_reduce(ttn_hlo),
        "ttn_full_kernel_in_hlo": ttn_hlo.count("f32[1024,1024]"),
        "devices": [str(d) for d in jax.devices()],
        "all_variables_replicated": all(variables.values()),
        "variables": len(variables),
        "core_sharding_example": str(cores[0].value.sharding),
        "tn_dense_1024_generator_params": int(layer.generator.num_params),
        "big_model_variable_bytes": int(
            sum(v.value.nbytes for v in big.trainable_variables)
        ),
        "collectives": collectives(hlo),
        "largest_all_reduce": largest_all_reduce(hlo),
        "shard_map_largest_all_reduce": largest_all_reduce(mapped_hlo),
        "full_kernel_in_per_device_hlo": hlo.count("f32[1024,1024]"),
        "half_kernel_in_per_device_hlo": hlo.count("f32[512,1024]")
        + hlo.count("f32[1024,512]"),
        "step_temp_bytes_per_device": int(
            compiled.memory_analysis().temp_size_in_bytes
        ),
        "kernel_bytes": 1024 * 1024 * 4,
        "generated_kernel_sharding": str(kernel.sharding),
        "generated_kernel_shards": [
            [str(s.device), list(s.data.shape)]
            for s in kernel.addressable_shards
        ],
    }


def tf_layout(model, strategy):
    """Variable types and devices; the kernel generated in each replica."""
    kinds = {type(v.value).__name__ for v in model.variables}
    copies = {
        len(getattr(v.value, "values", [v.value])) for v in model.variables
    }
    layer = next(lay for lay in model.layers if isinstance(lay, tn.TNDense))
    # Eagerly, so that each output reports the device it was made on.
    kernel = strategy.run(lambda: layer.kernel)
    core = layer.generator.trainable_variables[0].value
    return {
        "devices": list(strategy.extended.worker_devices),
        "variable_types": sorted(kinds),
        "copies_per_variable": sorted(copies),
        "core_example": [c.device for c in core.values],
        "generated_kernel": [[k.device, list(k.shape)] for k in kernel.values],
    }


def main():
    report = {"backend": BACKEND}
    if BACKEND == "jax":
        import jax

        report["device_count"] = len(jax.devices())
        report["one"] = train(build_model())
        keras.backend.clear_session()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices())
        )
        model = build_model()
        report["two"] = train(model)
        report["layout"] = jax_layout(model)
    else:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        report["device_count"] = len(devices)
        report["one"] = train(build_model())
        keras.backend.clear_session()
        strategy = tf.distribute.MirroredStrategy(devices)
        report["replicas"] = strategy.num_replicas_in_sync
        with strategy.scope():
            model = build_model()
        report["two"] = train(model)
        report["layout"] = tf_layout(model, strategy)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
