"""`compress(model, data)`: the pipeline on a whole trained model.

After the checks of its arguments and data, in five steps:

1. select the largest `Dense`, `Conv2D` and `MultiHeadAttention` layers
   (or the ones named in `layers`);
2. convert each (`convert_layer`, what `TNDense.from_dense`,
   `TNConv2D.from_conv2d` and
   `TNMultiHeadAttention.from_multi_head_attention` do), data-aware on the
   layer's real inputs, at a fixed size or at each size the `max_loss`
   search tries (steps 2-4 once per size, `search`);
3. clone the model with the new layers (every other weight copied);
4. fine-tune by distillation from the original, keeping the best epoch;
5. evaluate: output errors of the replaced layers, task scores.
"""

import sys
from collections.abc import Mapping
from typing import NamedTuple

import keras

from keras_adntn.compress import finetune
from keras_adntn.compress import graph
from keras_adntn.compress import search
from keras_adntn.compress.checks import CompressArguments
from keras_adntn.compress.checks import check_arguments
from keras_adntn.compress.convert import convert_layer
from keras_adntn.compress.data import check_data
from keras_adntn.compress.data import one_line
from keras_adntn.compress.data import predict_and_label
from keras_adntn.compress.evaluate import evaluate
from keras_adntn.compress.evaluate import layer_output_error
from keras_adntn.compress.report import _fmt
from keras_adntn.compress.select import layer_size
from keras_adntn.compress.select import replacement_params
from keras_adntn.compress.select import select_layers


def compress(
    model: keras.Model,
    data: tuple | Mapping,
    network: str = "ttn",
    bond_dim: int | None = None,
    target_ratio: float | None = None,
    max_loss: float | None = None,
    search_budget: int = 6,
    layers: list | None = None,
    max_layers: int = 1,
    min_params: int = 1024,
    init: str = "auto",
    reconstruction_steps: int = 500,
    init_learning_rate: float = 1e-2,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    temperature: float = 2.0,
    alpha: float = 0.1,
    task: str = "auto",
    validation_data: tuple | Mapping | float | None = None,
    verbose: int = 1,
    seed: int = 0,
) -> tuple:
    """Replaces the largest layers of a trained model with TN layers.

    The pipeline of the paper (§7.6): select the largest `Dense`, `Conv2D`
    and `MultiHeadAttention` layers, replace each with `TNDense`,
    `TNConv2D` or `TNMultiHeadAttention`, initialise the generators from
    the teacher's weights, copy the biases and every other weight, and
    fine-tune the new model by distillation from the original (task loss
    and soft labels, `Distiller`). The input model is not modified.

    Initialisation (`init`, per layer through `TNDense.from_dense`,
    `TNConv2D.from_conv2d`, `TNMultiHeadAttention.from_multi_head_attention`):
    `"activations"` (what `"auto"` means here, since `data` gives the
    layers' inputs) takes `reconstruction_steps` Adam steps on the generator
    cores minimising the whitened reconstruction
    `tr((K - W)^T M (K - W)) / tr(W^T M W)`, `M` the second moment of the
    layer's (centred) inputs on `data` (im2col patches for a Conv2D, each
    projection for attention), then sets the bias to absorb the mean
    input; for `network="mpo"` it starts from the best TT-SVD (of the
    kernel or of its activation-aware low-rank approximations).
    `"reconstruction"` is the same fit in the plain weight norm (no data);
    `"svd"` (only `network="mpo"`) the TT-SVD of the teacher kernel (exact
    at full bond); `"random"` keeps the calibrated random initialisation.

    The size: `bond_dim` or `target_ratio` fix it. Without either, the
    search finds the smallest replacement whose validation score loses at
    most `max_loss` (default 0.005: half an accuracy point, or 0.5% more
    mean squared error; half the point a user usually allows, because a
    held-out split of a few hundred samples measures the loss to about
    +-0.5 points) against the teacher's on the same data: the replaced
    layers share one bond dimension, tried by bisection from bond 1 up to
    the largest that still shrinks every layer 2x; each size tried costs
    one initialisation and one fine-tuning, at most `search_budget` in
    all (`report.search` lists them). When no size is within the loss, the
    best size tried is returned and the report says so.

    Validation data decide every choice (the size, the best epoch) and
    the report's scores. Without `validation_data` (and no `x_val`,
    `y_val` in a mapping), 20% of `data` is held out, stratified by class
    for labels, and the student trains on the rest; `report.evaluated_on`
    names the split.

    Fine-tuning keeps the best weights seen on the validation data (the
    initialisation counts as epoch 0), so the returned student is never
    worse there than its initialisation; a diverging run (non-finite or
    exploding loss) is stopped, rolled back and reported
    (`report.fine_tuning`). A student at chance after its initialisation
    is reported as such (the layers are compressed past what their
    initialisation represents).

    Classification (integer labels or one-hot targets with a multi-class
    output) is fine-tuned with `Distiller` (the output can be logits or a
    softmax: probabilities are turned into log-probabilities for the
    distillation) and scored by accuracy; anything else is regression,
    fine-tuned on the MSE to `alpha * y + (1 - alpha) * teacher(x)` and
    scored by mean squared error (`metric="loss"`).

    Layers that cannot be replaced (shared layers, unbuilt ones, quantized
    or LoRA layers, attention with `use_gate` or `sliding_window`, layers
    inside nested models) are left as they were and listed in the report.

    Args:
        model: a trained, built `keras.Sequential` or functional
            `keras.Model` with one output (subclassed models cannot be
            cloned layer by layer and are refused).
        data: training data, a tuple `(x, y)` or a mapping / `.npz` with
            arrays `"x"` and `"y"` (and optionally `"x_val"`, `"y_val"`,
            used when `validation_data` is None). Integer labels may be
            shaped `(n,)` or `(n, 1)`, as in `fit`.
        network: generator network, one of `"ttn"`, `"attn"`, `"mera"`,
            `"brickwall"`, `"mpo"`.
        bond_dim: bond dimension of the new layers (a fixed size).
        target_ratio: instead of `bond_dim`: per layer, the largest bond
            dimension whose compression ratio (dense / stored parameters,
            bias included) is still >= this number (> 1).
        max_loss: instead of a fixed size (and the default, 0.005, when
            neither `bond_dim` nor `target_ratio` is given): the loss
            against the teacher the smallest size may cost on the
            validation data, >= 0: accuracy points as a fraction
            (classification), or the relative increase of the mean
            squared error (regression).
        search_budget: at most this many sizes tried (initialised and
            fine-tuned) by the `max_loss` search, int >= 1.
        layers: names of the layers to replace (default: the largest).
        max_layers: how many of the largest layers to replace when
            `layers` is None, int >= 1.
        min_params: layers with fewer parameters are not considered when
            `layers` is None, int >= 0.
        init: `"auto"` (= `"activations"`), `"activations"`,
            `"reconstruction"`, `"svd"` (mpo only) or `"random"`.
        reconstruction_steps: Adam steps of the initialisation fit per
            layer, int >= 0.
        init_learning_rate: Adam learning rate of that fit, > 0.
        epochs: epochs of distillation fine-tuning, int >= 0.
        batch_size: batch size of fine-tuning and evaluation, int >= 1.
        learning_rate: Adam learning rate of the fine-tuning, > 0.
        temperature: distillation temperature, > 0.
        alpha: weight of the task loss against the teacher's soft labels,
            in [0, 1].
        task: `"auto"`, `"classification"` or `"regression"`.
        validation_data: `(x, y)` or a mapping with `"x"`, `"y"`, or a
            fraction in (0, 1) of `data` to hold out: where the size and
            the best fine-tuning epoch are chosen and the report scores
            teacher and student (default: `x_val`/`y_val` of a mapping,
            else 20% of `data` held out, stratified by class).
        verbose: 0 (silent), 1 (one plain line per phase: select,
            initialise, fine-tune, evaluate) or 2 (also one line per
            epoch).
        seed: seed of the new layers' initialisation (layer `k` uses
            `seed + k`).

    Returns:
        `(compressed_model, report)`: a new model of the same kind as
        `model` (compile it before training it further) and a
        `CompressionReport`.

    Raises:
        ValueError: a bad argument or bad data (named in the message:
            NaN/inf, labels out of range, data the model cannot run on),
            raised before any work where it can be checked; errors of the
            backend during the work are turned into one-line ValueErrors
            too. The input model is never modified.

    Example:

    >>> student, report = compress(
    ...     model, (x_train, y_train), network="ttn", bond_dim=2,
    ...     validation_data=(x_test, y_test), epochs=5,
    ... )  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """
    # -- checks: nothing is built or trained before all of them pass
    a = check_arguments(model, CompressArguments.of(locals()))
    x, y, val, split = check_data(model, data, validation_data, a.seed)
    data = predict_and_label(model, x, y, val, split, a.task, a.batch_size)
    log = _progress(a.verbose)
    # 1. select
    chosen, skipped = _select(model, a)
    log(
        f"compress [1/4] select: {[layer.name for layer in chosen] or 'none'}"
        f" -> network={a.network!r}"
    )
    searched = None
    if a.max_loss is None or not chosen:
        sizes = {layer.name: _size(layer, a) for layer in chosen}
        built = _student(model, chosen, data, a, sizes, log)
    else:
        built, searched = _search(model, chosen, data, a, log)
    # 5. evaluate
    report = evaluate(model, chosen, skipped, data, built, log, search=searched)
    return built.student, report


class _Built(NamedTuple):
    """One student made by steps 2-4."""

    student: keras.Model
    rows: list
    scores: dict
    tuning: dict


def _student(model, chosen, data, a: CompressArguments, sizes, log):
    """Steps 2-4 at `sizes` (`{name: (bond dimension, note)}`)."""
    # 2. convert
    new_layers, rows = _convert_chosen(model, chosen, data, a, sizes, log)
    # 3. clone
    student = graph.clone_with(model, new_layers)
    for row in rows:
        row["error_init"] = layer_output_error(
            model, student, row["name"], data.vx, a.batch_size
        )
    # 4. fine-tune
    scores = _scores(model, student, data, a.batch_size)
    tuned = bool(a.epochs and new_layers)
    tuning = {"epochs_run": 0, "best_epoch": 0, "diverged": None, "note": ""}
    if tuned:
        tuning = _fine_tune(model, student, data, a, scores, log)
    else:
        log("compress [3/4] fine-tune: skipped (epochs=0)")
    scores["student_final"] = (
        finetune.score(student, data.vx, data.vy, data.task, a.batch_size)
        if tuned
        else scores["student_init"]
    )
    return _Built(student, rows, scores, tuning)


def _search(model, chosen, data, a: CompressArguments, log) -> tuple:
    """Steps 2-4 at each size the bisection tries: `(the smallest student
    within max_loss, or the best one tried; the search's record)`."""
    ladder = search.size_ladder(chosen, a.network, a.search_budget)
    log(
        f"compress [search] smallest bond in {ladder} losing <= "
        f"{a.max_loss:g} on {data.evaluated_on}"
    )

    def make(bond):
        sizes = {layer.name: (bond, "") for layer in chosen}
        return _student(model, chosen, data, a, sizes, log)

    built, record = search.run(
        ladder, make, data.task, a.max_loss, a.epochs, log
    )
    return built, {**record, "budget": a.search_budget}


def _size(layer, a: CompressArguments) -> tuple:
    """`(bond dimension, note)` of `layer`'s replacement (bond 1 while
    the search has not chosen)."""
    if a.max_loss is not None:
        return 1, ""
    return layer_size(layer, a.network, a.bond_dim, a.target_ratio)


def _select(model, a: CompressArguments) -> tuple:
    """Step 1: `(chosen layers, skipped rows)`."""
    return select_layers(
        model,
        a.layers,
        a.max_layers,
        a.min_params,
        lambda layer: replacement_params(layer, a.network, _size(layer, a)[0]),
    )


def _convert_chosen(model, chosen, data, a: CompressArguments, sizes, log):
    """Step 2 on every chosen layer: `({name: new layer}, report rows)`."""
    new_layers, rows = {}, []
    for k, old in enumerate(chosen):
        result, row = _convert(
            model,
            old,
            data,
            a.network,
            sizes[old.name],
            a.init,
            a.reconstruction_steps,
            a.init_learning_rate,
            a.seed,
            k,
        )
        new_layers[old.name] = result.layer
        rows.append(row)
        log(
            f"compress [2/4] initialise: {old.name} ({row['init']}, "
            f"bond {row['bond_dim']}, {row['ratio']:.1f}x): fit loss "
            f"{_fmt(result.fit_loss)}"
        )
    return new_layers, rows


def _scores(model, student, data, batch_size) -> dict:
    """The teacher's and the initialised student's validation scores."""
    return {
        "teacher": finetune.score(
            model, data.vx, data.vy, data.task, batch_size, data.vpred
        ),
        "student_init": finetune.score(
            student, data.vx, data.vy, data.task, batch_size
        ),
    }


def _fine_tune(model, student, data, a: CompressArguments, scores, log):
    """Step 4: distils `model` into `student` in place; the fine-tuning
    record (backend errors become one-line ValueErrors)."""
    log(
        f"compress [3/4] fine-tune: {a.epochs} epochs of distillation, "
        f"keeping the best on {data.evaluated_on}"
    )
    try:
        tuning = finetune.fine_tune(
            student,
            graph.copy_model(model),
            data.x,
            data.y,
            (data.vx, data.vy),
            data.task,
            finetune.outputs_probabilities(data.pred),
            a.epochs,
            a.batch_size,
            a.learning_rate,
            a.temperature,
            a.alpha,
            scores["student_init"],
            log=log if a.verbose == 2 else None,
        )
    except Exception as e:
        raise ValueError(
            f"`data`: fine-tuning failed ({type(e).__name__}: {one_line(e)})."
        ) from None
    tuning.pop("best_score", None)
    return tuning


def _convert(
    model, old, data, network, size, init, steps, learning_rate, seed, k
) -> tuple:
    """Step 2 on the `k`-th layer chosen: `(ConversionResult, report
    row)`; its inputs are drawn with `seed`, the new layer made with
    `seed + k`."""
    chi, note = size
    xs, call_kwargs = (None, None)
    if init == "activations":
        xs, call_kwargs = graph.layer_inputs(
            model, old, data.x, data.batch_size, seed=seed
        )
    how = init if xs is not None or init != "activations" else "auto"
    if init == "activations" and xs is None:
        note = "; ".join(filter(None, [note, "inputs not reproducible"]))
    try:
        result = convert_layer(
            old,
            None if xs is None else (xs[0] if len(xs) == 1 else xs),
            network=network,
            bond_dim=chi,
            init=how,
            steps=steps,
            learning_rate=learning_rate,
            seed=seed + k,
            call_kwargs=call_kwargs,
        )
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(
            f"`model`: converting layer {old.name!r} failed "
            f"({type(e).__name__}: {one_line(e)})."
        ) from None
    new = result.layer
    row = {
        "name": old.name,
        "type": type(old).__name__,
        "new_type": type(new).__name__,
        "network": network,
        "bond_dim": chi,
        "params_before": int(old.count_params()),
        "params_after": int(new.count_params()),
        "ratio": old.count_params() / new.count_params(),
        "init": result.init,
        "error_init": None,
        "error_final": None,
        "weight_error_init": result.weight_error,
        "weight_error_final": None,
        "note": "; ".join(filter(None, [note, result.note])),
    }
    return result, row


def _progress(verbose):
    """A function printing one plain line (nothing when `verbose` is 0)."""

    def log(message):
        if verbose:
            print(message, file=sys.stdout, flush=True)

    return log
