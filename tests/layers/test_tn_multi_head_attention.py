import keras
import numpy as np
import pytest
from keras import ops

from keras_adntn.layers.tn_multi_head_attention import TNMultiHeadAttention
from keras_adntn.networks import initialization as tn_init
from tests import layer_contract as contract

NETWORKS = ["ttn", "attn", "mera", "brickwall", "mpo"]
PROJECTIONS = ("query", "key", "value", "output")

SHAPE_CASES = [
    # (layer kwargs, query shape, value shape, key shape)
    ({}, (2, 5, 8), (2, 5, 8), None),
    ({"value_dim": 3, "output_shape": 6}, (2, 4, 8), (2, 6, 10), (2, 6, 7)),
    (
        {"output_shape": (2, 3), "attention_axes": (1, 2)},
        (2, 3, 4, 8),
        (2, 3, 4, 8),
        None,
    ),
    ({"attention_axes": 2}, (2, 3, 4, 8), (2, 3, 5, 6), None),
]


def _np(x):
    return ops.convert_to_numpy(x)


def test_output_shapes_match_keras():
    for kwargs, q_shape, v_shape, k_shape in SHAPE_CASES:
        ref = keras.layers.MultiHeadAttention(2, 4, **kwargs)
        mine = TNMultiHeadAttention(2, 4, seed=0, **kwargs)
        q = contract.random_inputs(q_shape)
        v = contract.random_inputs(v_shape, seed=1)
        k = None if k_shape is None else contract.random_inputs(k_shape, 2)
        out_ref, scores_ref = ref(q, v, k, return_attention_scores=True)
        out, scores = mine(q, v, k, return_attention_scores=True)
        assert tuple(out.shape) == tuple(out_ref.shape), kwargs
        assert tuple(scores.shape) == tuple(scores_ref.shape), kwargs
        assert tuple(mine(q, v, k).shape) == tuple(out_ref.shape)
        assert mine.compute_output_shape(
            q_shape, v_shape, k_shape
        ) == ref.compute_output_shape(q_shape, v_shape, k_shape)
        kernels = mine.kernels
        for name in PROJECTIONS:
            dense = getattr(ref, f"{name}_dense")
            assert tuple(kernels[name].shape) == tuple(dense.kernel.shape), (
                kwargs,
                name,
            )
            assert tuple(mine.biases[name].shape) == tuple(dense.bias.shape)
        assert mine.dense_params == ref.count_params()


def test_symbolic_call_and_scores_spec():
    layer = TNMultiHeadAttention(2, 4, seed=0)
    q, v = keras.Input((5, 8)), keras.Input((7, 6))
    out, scores = layer(q, v, return_attention_scores=True)
    assert tuple(out.shape) == (None, 5, 8)
    assert tuple(scores.shape) == (None, 2, 5, 7)
    model = keras.Model([q, v], out)
    y = model.predict(
        [contract.random_inputs((3, 5, 8)), contract.random_inputs((3, 7, 6))],
        verbose=0,
    )
    assert y.shape == (3, 5, 8)


@pytest.mark.parametrize("value_dim", [None, 3])
def test_generated_kernels_reproduce_keras_multi_head_attention(value_dim):
    # A Keras MultiHeadAttention loaded with the generated kernels (and
    # random biases) gives the same output and scores, every mask kind.
    rng = np.random.default_rng(0)
    q = contract.random_inputs((2, 5, 12))
    v = contract.random_inputs((2, 7, 10), seed=1)
    k = contract.random_inputs((2, 7, 9), seed=2)
    ref = keras.layers.MultiHeadAttention(
        4, 6, value_dim=value_dim, output_shape=(3, 2)
    )
    ref(q, v, k, return_attention_scores=True)
    mine = TNMultiHeadAttention(
        4, 6, value_dim=value_dim, output_shape=(3, 2), seed=0
    )
    mine(q, v, k)
    kernels = mine.kernels
    for name in PROJECTIONS:
        dense = getattr(ref, f"{name}_dense")
        bias = rng.standard_normal(dense.bias.shape).astype("float32")
        dense.kernel.assign(kernels[name])
        dense.bias.assign(bias)
        mine.biases[name].assign(bias)
    mask = rng.random((2, 5, 7)) > 0.3
    mask[:, :, 0] = True  # no fully masked row
    for args in [
        {},
        {"attention_mask": mask},
        {"use_causal_mask": True},
        {"use_causal_mask": True, "attention_mask": mask},
    ]:
        expected, s_ref = ref(q, v, k, return_attention_scores=True, **args)
        got = mine(q, v, k, **args)
        assert np.abs(_np(got) - _np(expected)).max() <= 1e-5, args
        got, scores = mine(q, v, k, return_attention_scores=True, **args)
        assert np.abs(_np(got) - _np(expected)).max() <= 1e-5, args
        assert np.abs(_np(scores) - _np(s_ref)).max() <= 1e-5, args


def test_call_matches_keras_with_generated_kernels_and_keras_masks():
    # The reverse direction, through `__call__`: a Keras MHA loaded with the
    # generated kernels gives the same output, Keras masks included.
    tokens = keras.Input((None,), dtype="int32")
    embed = keras.layers.Embedding(9, 8, mask_zero=True)
    h = embed(tokens)
    mine = TNMultiHeadAttention(
        2, 4, joint_qkv=False, generator_groups=2, seed=0
    )
    ref = keras.layers.MultiHeadAttention(2, 4)
    x = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    model_mine = keras.Model(tokens, mine(h, h, use_causal_mask=True))
    model_ref = keras.Model(tokens, ref(h, h, use_causal_mask=True))
    for name in PROJECTIONS:
        getattr(ref, f"{name}_dense").kernel.assign(mine.kernels[name])
        getattr(ref, f"{name}_dense").bias.assign(
            np.full(mine.biases[name].shape, 0.1)
        )
        mine.biases[name].assign(np.full(mine.biases[name].shape, 0.1))
    np.testing.assert_allclose(
        model_mine.predict(x, verbose=0),
        model_ref.predict(x, verbose=0),
        atol=1e-5,
    )
    # (a fresh `e` each: Keras's `call` clears the Keras masks of its
    # inputs, and the query's is what it reads)
    e = embed(x)
    got = _np(mine(e, e, query_mask=x > 0, value_mask=x > 0))
    e = embed(x)
    want = _np(ref(e, e, query_mask=x > 0, value_mask=x > 0))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_joint_generator_is_one_network_over_concatenated_qkv():
    layer = TNMultiHeadAttention(4, 8, seed=0)
    x = contract.random_inputs((2, 3, 16))
    layer(x, x)
    assert layer.qkv_kernel.tensorization.dims == (16, 3 * 32)
    assert not hasattr(layer, "query_kernel")
    generators = [layer.qkv_kernel.network, layer.output_kernel.network]
    assert layer.count_params() == sum(g.num_params for g in generators) + (
        3 * 32 + 16 + 3
    )
    assert [v.name for v in layer.non_trainable_weights] == ["part_scale"]
    separate = TNMultiHeadAttention(4, 8, joint_qkv=False, seed=0)
    separate(x, x)
    assert separate.query_kernel.tensorization.dims == (16, 32)
    assert separate.count_params() > layer.count_params()
    assert layer.compression_ratio == pytest.approx(
        layer.dense_params / layer.count_params()
    )


def test_groups_split_each_projection_output_axis():
    layer = TNMultiHeadAttention(4, 2, value_dim=3, generator_groups=2, seed=0)
    x = contract.random_inputs((2, 3, 6))
    layer(x, x)
    assert layer.qkv_kernel.network.groups == 2
    assert layer.output_kernel.network.groups == 2
    assert layer.qkv_kernel.tensorization.dims == (6, (8 + 8 + 12) // 2)
    kernels = {n: _np(k) for n, k in layer.kernels.items()}
    for v in layer.qkv_kernel.network.weights:
        value = np.array(v)
        value[1:] = 0.0
        v.assign(value)
    changed = layer.kernels
    # Group 0 makes the first two heads of each projection, group 1 the rest.
    for name in ("query", "key", "value"):
        new = _np(changed[name])
        np.testing.assert_allclose(new[:, :2], kernels[name][:, :2], atol=1e-6)
        assert np.abs(new[:, 2:]).max() == 0.0, name


def _check_every_variable_learns(model, x, y):
    # As in keras.layers.MultiHeadAttention, the key bias has an exactly
    # zero gradient (softmax is shift invariant): it must stay put.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [np.array(v) for v in model.trainable_variables]
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    for old, var in zip(before, model.trainable_variables):
        same = np.allclose(old, np.array(var))
        assert same == var.path.endswith("key_bias"), var.path


def test_every_variable_gets_a_gradient():
    # One layer per network, stacked in one model: one fit checks them all.
    q = contract.random_inputs((8, 4, 6))
    v = contract.random_inputs((8, 5, 6), seed=1)
    target = contract.random_inputs((8, 4, 6), seed=2)
    query, value = keras.Input((4, 6)), keras.Input((5, 6))
    h = query
    for i, network in enumerate(NETWORKS):
        h = TNMultiHeadAttention(
            2,
            4,
            network=network,
            joint_qkv=i % 2 == 0,
            generator_groups=2,
            seed=i,
        )(h, value)
    model = keras.Model([query, value], h)
    _check_every_variable_learns(model, [q, v], target)


def test_initial_kernel_std_is_glorot_scale():
    x = contract.random_inputs((1, 2, 48))
    for network in NETWORKS:
        for bond_dim, joint in [(2, True), (4, False)]:
            layer = TNMultiHeadAttention(
                4,
                16,
                network=network,
                bond_dim=bond_dim,
                joint_qkv=joint,
                seed=bond_dim,
            )
            layer(x, x)
            for name, kernel in layer.kernels.items():
                kernel = _np(kernel)
                target = tn_init.glorot_std(48, 64)
                ratio = kernel.std() / target
                assert np.isfinite(kernel).all(), (network, name)
                assert abs(ratio - 1) <= 0.01, (network, bond_dim, name, ratio)


def test_config_round_trip():
    x = contract.random_inputs((2, 3, 8))
    layer = TNMultiHeadAttention(
        2,
        4,
        value_dim=2,
        dropout=0.1,
        use_bias=False,
        output_shape=(2, 2),
        attention_axes=1,
        joint_qkv=False,
        network="mera",
        bond_dim=3,
        generator_activation="gelu",
        generator_groups=2,
        mode_order="flat",
        seed=3,
        core_regularizer="l2",
        name="attn",
    )
    y = layer(x, x)
    config = layer.get_config()
    clone = TNMultiHeadAttention.from_config(config)
    clone(x, x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_np(clone(x, x)), _np(y), atol=1e-6)
    assert clone.get_config() == config
    assert layer.biases["output"] is None


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((4, 8))
    h = TNMultiHeadAttention(2, 4, seed=0)(inputs, inputs)
    h = TNMultiHeadAttention(2, 4, network="mpo", joint_qkv=False, seed=1)(
        h, inputs, use_causal_mask=True
    )
    model = keras.Model(inputs, h)
    x = contract.random_inputs((3, 4, 8))
    _check_every_variable_learns(model, x, x)
    contract.check_keras_file_round_trip(model, x, tmp_path)


def test_jit_compile_fit():
    inputs = keras.Input((4, 8))
    out = TNMultiHeadAttention(2, 4, dropout=0.1, network="attn", seed=0)(
        inputs, inputs, use_causal_mask=True
    )
    model = keras.Model(inputs, out)
    x = contract.random_inputs((16, 4, 8))
    contract.check_jit_fit(model, x, x, torch_compile=True)


class _SelfAttention(keras.layers.Layer):
    """`layer(x)` = `TNMultiHeadAttention(x, x)`, for the contract check."""

    def __init__(self, **kwargs):
        super().__init__()
        self.attention = TNMultiHeadAttention(2, 4, seed=0, **kwargs)

    def call(self, x):
        return self.attention(x, x)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    """Regression caught: attention (or its generated kernels) computed
    in float32 under a mixed policy, float16 variables, or float16
    outputs that drift from the float32 layer's (softmax overflow, a
    kernel generated in half precision without float32 accumulation)."""
    x = contract.random_inputs((2, 4, 8))
    contract.check_mixed_precision(_SelfAttention, x, policy)
    keras.config.set_dtype_policy(policy)
    try:
        layer = TNMultiHeadAttention(2, 4, seed=0)
        _, scores = layer(x, x, return_attention_scores=True)
        dtype = keras.backend.standardize_dtype(scores.dtype)
        assert dtype == policy.split("_")[1]
    finally:
        keras.config.set_dtype_policy("float32")


BAD_ARGUMENTS = [
    ({"num_heads": 0}, "num_heads"),
    ({"key_dim": 1.5}, "key_dim"),
    ({"value_dim": 0}, "value_dim"),
    ({"dropout": 1.0}, "dropout"),
    ({"output_shape": (2, 0)}, "output_shape"),
    ({"attention_axes": "x"}, "attention_axes"),
    ({"joint_qkv": "yes"}, "joint_qkv"),
    ({"generator_groups": 0}, "generator_groups"),
    ({"generator_groups": 3}, "generator_groups"),
    ({"value_dim": 3, "generator_groups": 4}, "generator_groups"),
    ({"output_shape": 6, "generator_groups": 4}, "generator_groups"),
    ({"bond_dim": 0}, "bond_dim"),
    ({"radix": 1}, "radix"),
    ({"network": "peps"}, "network"),
    ({"mode_order": "zigzag"}, "mode_order"),
    ({"network": "mpo", "latent_order": 2}, "latent_order"),
    ({"network": "mpo", "depth": 2}, "depth"),
    ({"generator_activation": "nope"}, "nope"),
]


def test_bad_arguments_raise():
    for kwargs, match in BAD_ARGUMENTS:
        args = {"num_heads": 2, "key_dim": 4}
        args.update(kwargs)
        with pytest.raises(ValueError, match=match):
            TNMultiHeadAttention(**args)
    with pytest.raises(ValueError, match="groups"):
        TNMultiHeadAttention(2, 4, generator_groups=4).build(
            (None, 3, 6), (None, 3, 6)
        )
    with pytest.raises(ValueError, match="last dimension"):
        TNMultiHeadAttention(2, 4).build((None, 3, None), (None, 3, 6))
    with pytest.raises(ValueError, match="except the last"):
        TNMultiHeadAttention(2, 4).build(
            (None, 3, 6), (None, 3, 6), (None, 4, 6)
        )


def _token_classifier(attention_trainable):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), dtype="int32")
    embedding = keras.layers.Embedding(6, 16)
    embedding.trainable = False
    attention = TNMultiHeadAttention(2, 8, seed=0)
    attention.trainable = attention_trainable
    h = embedding(inputs)
    h = keras.layers.GlobalAveragePooling1D()(attention(h, h))
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_transformer_classifier_learns_in_its_attention():
    """Label: exactly one of the tokens 1 and 2 occurs in the sequence
    (an XOR of two presences). The embeddings are frozen, so the
    attention's generated kernels must learn it: 0.93-0.98 held out,
    against 0.68 with the attention frozen too (TensorFlow, JAX, torch;
    seed 0), which is what pooled embeddings without attention score. With
    trained embeddings a frozen attention layer also reaches 0.97, so that
    control would say nothing. Regression caught: generated kernels that
    do not learn, or scores that do not mix the tokens."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 6, size=(1024, 8))
    labels = ((tokens == 1).any(1) ^ (tokens == 2).any(1)).astype("int32")
    train, test = slice(0, 768), slice(768, None)
    scores = {}
    for trainable in (True, False):
        model = _token_classifier(trainable)
        model.fit(
            tokens[train], labels[train], batch_size=64, epochs=20, verbose=0
        )
        scores[trainable] = model.evaluate(
            tokens[test], labels[test], verbose=0
        )[1]
    assert scores[True] >= scores[False] + 0.15, scores
    assert scores[True] >= 0.85, scores


def test_legacy_groups_config_and_no_single_kernel():
    # a config written before `generator_groups` (GeneratorLayer migrates)
    config = TNMultiHeadAttention(2, 4, generator_groups=2).get_config()
    config["groups"] = config.pop("generator_groups")
    layer = TNMultiHeadAttention.from_config(config)
    assert layer.generator_groups == 2
    # the one-kernel properties of GeneratorLayer are not an attention's
    layer(np.ones((1, 3, 8), "float32"), np.ones((1, 3, 8), "float32"))
    for name in ("kernel", "generator", "tensorization"):
        assert not hasattr(layer, name)
    assert set(layer.kernels) == {"query", "key", "value", "output"}


def test_joint_kernel_generated_once_per_call(monkeypatch):
    # catches: the joint [Wq, Wk, Wv] kernel generated once per projection
    # (three times a call: torch eager has no common subexpressions)
    from keras_adntn.kernels.generated_kernel import GeneratedKernel

    made = []
    generate = GeneratedKernel.generate

    def counting(self, xp=None):
        made.append(self.name)
        return generate(self, xp)

    monkeypatch.setattr(GeneratedKernel, "generate", counting)
    x = contract.random_inputs((2, 5, 8))
    layer = TNMultiHeadAttention(2, 4, execution="on_the_fly", seed=0)
    layer(x, x)
    made.clear()
    layer(x, x, return_attention_scores=True)
    assert sorted(made) == ["output", "qkv"]
