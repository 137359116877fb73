"""Head training at the speed of the arithmetic: the paper's SGD on the head, run in kernel form.

The head is MinMax -> Dense(10) -> ReLU -> Dense(1) per output, on 2 x 25 088 frozen features. Plain SGD on
it spends nearly all its time multiplying 64-row batches by the 50 176 x 10 first-layer kernel (forward) and
its transpose (backward), and in Keras' per-batch overhead. But every gradient of that kernel is a sum of
training rows: g_W = Xs_b^T dZ_b (Xs = the MinMax-scaled features). So the kernel never leaves
W = W0 + Xs^T A, with A one row of 10 numbers per training sample, and a batch's pre-activations are
Xs_b W0 + K_b A with the Gram matrix K = Xs Xs^T. SGD then runs on A: each step costs 64 x N x 10 instead of
64 x 50 176 x 10, and K is one large, fast matmul per fold.

Nothing about the optimisation changes; this is the same algorithm evaluated in another order:
- the same initial weights (the Keras head's own He/Glorot initialisers with the run's seed);
- SGD with Nesterov momentum exactly as tf_keras applies it (m <- mu m - lr g; w <- w + mu m - lr g), with
  clipnorm applied to each variable's gradient on its own; ||g_W||^2 = tr(dZ^T K_bb dZ) in kernel form;
- batches of 64 drawn from a fresh permutation every epoch, the last batch smaller;
- binary cross-entropy on the sigmoid's logit (as Keras does for a sigmoid Dense) and mean squared error,
  each averaged over the batch, summed over outputs.
At the end W = W0 + Xs^T A is written back into the Keras head, which is saved and used exactly as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from clkl.tf_setup import keras, tf

CLIPNORM = 5.0  # clkl.head.compile_head's clipnorm: guards the linear PDFF output from blow-ups
EPOCHS_PER_CALL = 50  # epochs per compiled call: progress is reported between calls


@dataclass(frozen=True)
class SgdSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    seed: int
    clipnorm: float = CLIPNORM
    shuffle: bool = True  # False only to compare step by step with Keras' own fit(shuffle=False)
    proximal_mu: float = 0.0  # FedProx: mu/2 ||w - w_start||^2 added to the loss (0: the paper's SGD)


@dataclass
class KernelProblem:
    """One head's training data in kernel form (shared by its outputs: they see the same batches)."""

    gram: tf.Tensor  # N x N, Xs Xs^T
    start: tf.Tensor  # N x (outputs * 10): Xs W0, the initial pre-activations
    targets: tf.Tensor  # N x outputs
    is_class: tf.Tensor  # outputs: True for p_fatty (cross-entropy), False for pdff (squared error)
    anchors: tuple = ()  # b1, w2, b2 at the start: FedProx pulls towards them (W1's anchor is A = 0)


def _branch_layers(head: keras.Model, outputs: tuple[str, ...]) -> list[tuple[keras.layers.Layer, keras.layers.Layer]]:
    return [(head.get_layer(f"{name}_dense10"), head.get_layer(name)) for name in outputs]


def _batches(n: int, settings: SgdSettings, rng: np.random.Generator, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (epochs * steps, batch) and their mask: a permutation per epoch, the last batch padded."""
    steps = -(-n // settings.batch_size)
    pad = steps * settings.batch_size - n
    order = [rng.permutation(n) if settings.shuffle else np.arange(n) for _ in range(epochs)]
    idx = np.concatenate([np.stack(order), np.zeros((epochs, pad), np.int64)], axis=1)
    mask = np.concatenate([np.ones((epochs, n), np.float32), np.zeros((epochs, pad), np.float32)], axis=1)
    shape = (epochs * steps, settings.batch_size)
    return idx.reshape(shape).astype(np.int32), mask.reshape(shape)


def _clip(gradient: tf.Tensor, norm: tf.Tensor, clipnorm: float) -> tf.Tensor:
    return gradient * tf.minimum(1.0, clipnorm / tf.maximum(norm, 1e-12))


def _nesterov(value, velocity, gradient, lr: float, mu: float):
    """tf_keras SGD(nesterov=True): m <- mu m - lr g; value <- value + mu m - lr g."""
    velocity = mu * velocity - lr * gradient
    return value + mu * velocity - lr * gradient, velocity


def _step(problem: KernelProblem, state: tuple, idx: tf.Tensor, mask: tf.Tensor, settings: SgdSettings):
    """One SGD step on one batch; returns the new state and the batch's mean loss per output."""
    a, ma, b1, mb1, w2, mw2, b2, mb2 = state
    lr, mu, clip = settings.learning_rate, settings.momentum, settings.clipnorm
    n_out, units = w2.shape
    count = tf.reduce_sum(mask)
    k_b = tf.gather(problem.gram, idx)  # batch x N
    z = tf.reshape(tf.gather(problem.start, idx) + k_b @ a, (-1, n_out, units)) + b1
    h = tf.nn.relu(z)
    out = tf.reduce_sum(h * w2, axis=2) + b2  # batch x outputs
    y = tf.gather(problem.targets, idx)
    loss = tf.where(
        problem.is_class,
        tf.maximum(out, 0.0) - out * y + tf.math.log1p(tf.exp(-tf.abs(out))),
        tf.square(out - y),
    )
    d_out = tf.where(problem.is_class, tf.sigmoid(out) - y, 2.0 * (out - y)) * mask[:, None] / count
    dz = d_out[:, :, None] * w2 * tf.cast(z > 0, tf.float32)  # batch x outputs x units
    g_w2, g_b2, g_b1 = tf.einsum("bku,bk->ku", h, d_out), tf.reduce_sum(d_out, 0), tf.reduce_sum(dz, 0)
    dz_flat = tf.reshape(dz, (-1, n_out * units))
    k_bb = tf.gather(k_b, idx, axis=1)
    w1_norm = tf.sqrt(tf.reduce_sum(tf.reshape((k_bb @ dz_flat) * dz_flat, (-1, n_out, units)), axis=(0, 2)))
    w1_scale = tf.repeat(tf.minimum(1.0, clip / tf.maximum(w1_norm, 1e-12)), units)  # per output's kernel
    update = tf.scatter_nd(idx[:, None], -lr * w1_scale * dz_flat, tf.shape(a))
    prox = settings.proximal_mu
    if prox:  # W - W_start = Xs^T A: the proximal gradient in kernel form is mu * A, on every row
        update = update - lr * prox * a
    ma = mu * ma + update
    a = a + update + mu * ma
    g_b1 = _clip(g_b1, tf.norm(g_b1, axis=1, keepdims=True), clip)
    g_w2 = _clip(g_w2, tf.norm(g_w2, axis=1, keepdims=True), clip)
    g_b2 = _clip(g_b2, tf.abs(g_b2), clip)
    if prox:  # the small layers' proximal pull, after clipping (as the kernel's: the data's gradient is clipped)
        b1_0, w2_0, b2_0 = problem.anchors
        g_b1, g_w2, g_b2 = g_b1 + prox * (b1 - b1_0), g_w2 + prox * (w2 - w2_0), g_b2 + prox * (b2 - b2_0)
    b1, mb1 = _nesterov(b1, mb1, g_b1, lr, mu)
    w2, mw2 = _nesterov(w2, mw2, g_w2, lr, mu)
    b2, mb2 = _nesterov(b2, mb2, g_b2, lr, mu)
    batch_loss = tf.reduce_sum(loss * mask[:, None], 0) / count
    return (a, ma, b1, mb1, w2, mw2, b2, mb2), batch_loss, count


_LOOPS: dict[tuple, object] = {}  # one compiled loop per step rule; TensorFlow keeps a trace per problem shape


def compiled_loop(problem: KernelProblem, settings: SgdSettings):
    """A compiled (XLA) loop over many steps: (state, idx, mask) -> (state, each step's loss x batch size). The loop
    is compiled once per step rule and problem shape and reused (every fold of a run, every round of a federation),
    so a head's training costs its arithmetic, not a new compilation."""
    rule = (settings.batch_size, settings.learning_rate, settings.momentum, settings.clipnorm, settings.proximal_mu)
    if rule not in _LOOPS:
        _LOOPS[rule] = _loop(settings)
    loop = _LOOPS[rule]
    parts = (problem.gram, problem.start, problem.targets, problem.is_class, *problem.anchors)
    return lambda state, idx, mask: loop(parts, state, idx, mask)


def _loop(settings: SgdSettings):
    @tf.function(jit_compile=True, reduce_retracing=False)
    def loop(parts, state, idx, mask):
        """Every step of one call in a single graph.

        Args:
            parts: the kernel problem's tensors, then its anchors (FedProx's start).
            state: the SGD state (A, the small layers' weights, momenta).
            idx: the rows of each step's batch.
            mask: which of those rows are real (the last batch is smaller).
        """
        problem = KernelProblem(*parts[:4], anchors=tuple(parts[4:]))
        steps = tf.shape(idx)[0]
        losses = tf.TensorArray(tf.float32, size=steps)

        def body(s, state, losses):
            state, batch_loss, count = _step(problem, state, idx[s], mask[s], settings)
            return s + 1, state, losses.write(s, batch_loss * count)

        _, state, losses = tf.while_loop(lambda s, *_: s < steps, body, (tf.constant(0), state, losses))
        return state, losses.stack()

    return loop


def _initial_state(head: keras.Model, outputs: tuple[str, ...], n: int) -> tuple:
    layers = _branch_layers(head, outputs)
    b1 = np.stack([hidden.bias.numpy() for hidden, _ in layers])
    w2 = np.stack([last.kernel.numpy()[:, 0] for _, last in layers])
    b2 = np.array([last.bias.numpy()[0] for _, last in layers], np.float32)
    a = np.zeros((n, len(outputs) * b1.shape[1]), np.float32)
    return tuple(tf.constant(v) for v in (a, a, b1, np.zeros_like(b1), w2, np.zeros_like(w2), b2, np.zeros_like(b2)))


def _kernel_problem(scaled: np.ndarray, head: keras.Model, outputs: tuple[str, ...], targets) -> KernelProblem:
    x = tf.constant(scaled)
    w0 = np.concatenate([hidden.kernel.numpy() for hidden, _ in _branch_layers(head, outputs)], axis=1)
    return KernelProblem(
        gram=tf.matmul(x, x, transpose_b=True),
        start=tf.matmul(x, tf.constant(w0)),
        targets=tf.constant(np.stack([targets[o] for o in outputs], axis=1).astype(np.float32)),
        is_class=tf.constant([o == "p_fatty" for o in outputs]),
        anchors=_initial_state(head, outputs, 1)[2::2][:3],
    )


def _write_back(head: keras.Model, outputs: tuple[str, ...], scaled: np.ndarray, state: tuple) -> None:
    """W = W0 + Xs^T A, and the small layers' final values, into the Keras head."""
    a, _, b1, _, w2, _, b2, _ = (np.asarray(v) for v in state)
    units = b1.shape[1]
    delta = (tf.matmul(tf.constant(scaled), tf.constant(a), transpose_a=True)).numpy()
    for k, (hidden, last) in enumerate(_branch_layers(head, outputs)):
        hidden.set_weights([hidden.kernel.numpy() + delta[:, k * units : (k + 1) * units], b1[k]])
        last.set_weights([w2[k][:, None], b2[k : k + 1]])


def train_head(
    head: keras.Model,
    x_train: np.ndarray,
    targets: dict[str, np.ndarray],
    settings: SgdSettings,
    desc: str = "head",
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train head (built with its MinMax layer) on raw features x_train; returns Keras-style history.

    Args:
        head: a clkl.head model; its initial weights are the starting point, its final weights are written back.
        x_train: training rows (N x features), before MinMax: the head's own minmax layer scales them.
        targets: output name -> one target per row (p_fatty: 0/1, pdff: %).
        settings: the paper's SGD settings.
        desc: progress bar label.
        progress: show the epoch bar.
    """
    outputs = tuple(name for name in head.output_names)
    minmax = head.get_layer("minmax").get_config()
    lo = np.asarray(minmax["mean"], np.float32).reshape(-1)
    span = np.sqrt(np.asarray(minmax["variance"], np.float32).reshape(-1))
    started = time.perf_counter()
    scaled = (x_train - lo) / span
    problem = _kernel_problem(scaled, head, outputs, targets)
    gram_s = time.perf_counter() - started
    state = _initial_state(head, outputs, len(x_train))
    rng = np.random.default_rng(settings.seed)
    loop = compiled_loop(problem, settings)
    started = time.perf_counter()
    per_epoch: list[np.ndarray] = []
    with tqdm(total=settings.epochs, desc=desc, unit="epoch", disable=not progress, leave=False) as bar:
        while len(per_epoch) < settings.epochs:
            epochs = min(EPOCHS_PER_CALL, settings.epochs - len(per_epoch))
            idx, mask = _batches(len(x_train), settings, rng, epochs)
            state, losses = loop(state, tf.constant(idx), tf.constant(mask))
            per_epoch += list(losses.numpy().reshape(epochs, -1, len(outputs)).sum(axis=1) / len(x_train))
            bar.update(epochs)
            bar.set_postfix(loss=f"{per_epoch[-1].sum():.4f}", refresh=False)
    loop_s = time.perf_counter() - started
    _write_back(head, outputs, scaled, state)
    history = {"loss": [float(e.sum()) for e in per_epoch]}
    if len(outputs) > 1:
        history.update({f"{o}_loss": [float(e[k]) for e in per_epoch] for k, o in enumerate(outputs)})
    history.update(gram_s=[gram_s], loop_s=[loop_s], samples=[float(len(x_train))])  # for the protocol benchmark
    return history
