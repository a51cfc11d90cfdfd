"""The train step: token-weighted loss, gradient accumulation by scan, frozen-aware updates.

Gradients are taken with respect to the trainable parameters only (frozen leaves are closed over
as constants), so neither backward weight-gradient matmuls nor accumulation buffers exist for
frozen weights. A non-finite loss or gradient leaves the state untouched and is reported, so the
last good state is always the one in hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from langshift.models import lora as lora_lib
from langshift.train.loss import chunked_cross_entropy, weighted_cross_entropy
from langshift.train.state import TrainState

BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_weights")


def split_trainable(params, mask):
  trainable = jax.tree.map(lambda p, m: p if m else None, params, mask)
  frozen = jax.tree.map(lambda p, m: None if m else p, params, mask)
  return trainable, frozen


def merge_trainable(trainable, frozen):
  return jax.tree.map(
      lambda t, f: f if t is None else t, trainable, frozen, is_leaf=lambda x: x is None
  )


def loss_sums(model, params, batch, *, z_loss=0.0, loss_chunk_size=0, rngs=None):
  """(weighted loss sum, weight sum) of one (micro)batch; `rngs` (LoRA dropout) only in training."""
  kwargs = dict(positions=batch["positions"], segment_ids=batch["segment_ids"], rngs=rngs)
  if loss_chunk_size:
    hidden = model.apply({"params": params}, batch["inputs"], return_hidden=True, **kwargs)

    def project(h):
      return model.apply({"params": params}, h, method=model.logits_from_hidden, rngs=rngs)

    return chunked_cross_entropy(
        hidden, project, batch["targets"], batch["loss_weights"], loss_chunk_size, z_loss
    )
  logits = model.apply({"params": params}, batch["inputs"], **kwargs)
  return weighted_cross_entropy(logits, batch["targets"], batch["loss_weights"], z_loss)


def make_train_step(
    model,
    tx: optax.GradientTransformation,
    schedule,
    trainable_mask,
    *,
    microbatches: int = 1,
    z_loss: float = 0.0,
    loss_chunk_size: int = 0,
):
  """Returns train_step(state, batch) -> (state, metrics); jit it with shardings and donation."""

  lora = getattr(model.config, "lora", None)
  uses_dropout = lora is not None and lora.dropout > 0

  def grads_of(trainable, frozen, batch, key):
    rngs = {lora_lib.DROPOUT_RNG: key} if uses_dropout else None

    def f(t):
      s, w = loss_sums(
          model,
          merge_trainable(t, frozen),
          batch,
          z_loss=z_loss,
          loss_chunk_size=loss_chunk_size,
          rngs=rngs,
      )
      return s, w

    (s, w), g = jax.value_and_grad(f, has_aux=True)(trainable)
    return s, w, g

  def train_step(state: TrainState, batch):
    trainable, frozen = split_trainable(state.params, trainable_mask)
    # Dropout masks from the state's RNG and step: a resumed run draws the same ones.
    keys = jax.random.split(jax.random.fold_in(state.rng, state.step), microbatches)
    if microbatches == 1:
      loss_sum, weight_sum, grad_sum = grads_of(trainable, frozen, batch, keys[0])
    else:
      micro = jax.tree.map(
          lambda x: x.reshape((microbatches, x.shape[0] // microbatches) + x.shape[1:]), batch
      )
      zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), trainable)

      def body(carry, mb_and_key):
        s, w, g = grads_of(trainable, frozen, *mb_and_key)
        cs, cw, cg = carry
        return (cs + s, cw + w, jax.tree.map(lambda a, b: a + b.astype(jnp.float32), cg, g)), None

      (loss_sum, weight_sum, grad_sum), _ = jax.lax.scan(
          body, (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros), (micro, keys)
      )
    denom = jnp.maximum(weight_sum, 1.0)
    grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grad_sum, trainable)
    full_grads = merge_trainable(grads, jax.tree.map(jnp.zeros_like, frozen))
    updates, new_opt_state = tx.update(full_grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    loss = loss_sum / denom
    grad_norm = optax.tree.norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
    new_state = state.replace(
        step=state.step + ok.astype(state.step.dtype),
        params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, state.opt_state),
    )
    metrics = {
        "train/loss": loss,
        "train/grad_norm": grad_norm,
        "train/lr": schedule(state.step),
        "train/tokens": weight_sum,
        "train/nonfinite": jnp.logical_not(ok),
    }
    return new_state, metrics

  return train_step


def make_eval_step(model, loss_chunk_size: int = 0):
  def eval_step(params, batch):
    return loss_sums(model, params, batch, loss_chunk_size=loss_chunk_size)

  return eval_step
