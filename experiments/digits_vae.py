"""A variational autoencoder on the 8x8 digits, with the KL term's weight searched.

The objective is written with ``vt.objectives.custom``'s escape hatch,
``train_loss(model, params, batch, key, hparams)``: training encodes each image to a
Gaussian ``q(z | x)``, draws ``z`` with the step's key (the reparameterisation trick) and
minimises ``reconstruction + kl_weight * KL(q(z | x) || N(0, I))``, where ``kl_weight`` is a
searched name that only the objective reads: it reaches the loss as the lane's traced value
(``hparams["kl_weight"]``), so the whole population is still one compiled program.

Evaluation is deterministic (the model called without a key decodes the mean of ``q(z | x)``)
and scores, per image: ``neg_elbo``, the negative evidence lower bound at weight 1 (nats,
Bernoulli likelihood of the pixels, its reconstruction term taken at the mean rather than
averaged over samples; ranks, minimised), ``reconstruction`` (its first term), ``kl`` (its
second) and ``pixel_mse`` (mean squared error of the decoded pixels). Labels are ignored.

About 35 s on a 2-core CPU, compiling included; the search settles on a KL weight near 1, as
it should when lanes are ranked by the ELBO at weight 1:

    time vmaptune run experiments/digits_vae.py --no-cache
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import vmaptune as vt

PIXELS = 64


class VAE(nn.Module):
  """An MLP encoder to a ``latent``-dimensional Gaussian and an MLP decoder to pixel logits."""

  hidden: int = 128
  latent: int = 8

  @nn.compact
  def __call__(self, x: jax.Array, key: jax.Array | None = None):
    """Images ``x [B, 8, 8, 1]`` -> ``(pixel logits [B, 64], mean [B, L], log_var [B, L])``.

    With ``key``, decodes ``z = mean + exp(log_var / 2) * noise``; without, the mean.
    """
    h = nn.relu(nn.Dense(self.hidden)(x.reshape((x.shape[0], -1))))
    mean, log_var = nn.Dense(self.latent)(h), nn.Dense(self.latent)(h)
    z = mean if key is None else (
        mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape))
    logits = nn.Dense(PIXELS)(nn.relu(nn.Dense(self.hidden)(z)))
    return logits, mean, log_var


def reconstruction(logits: jax.Array, x: jax.Array) -> jax.Array:
  """``-log p(x | z)`` per image ``[B]``: Bernoulli cross-entropy summed over the pixels."""
  return optax.sigmoid_binary_cross_entropy(logits, x.reshape((x.shape[0], -1))).sum(-1)


def kl_divergence(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """``KL(N(mean, exp(log_var)) || N(0, I))`` per image ``[B]``."""
  return 0.5 * (jnp.exp(log_var) + mean**2 - 1.0 - log_var).sum(-1)


def train_loss(model, params, batch, key, hparams) -> jax.Array:
  """The mean over the minibatch of ``reconstruction + kl_weight * KL``, ``z`` sampled."""
  x = batch[0]
  logits, mean, log_var = model.apply({"params": params}, x, key)
  return (reconstruction(logits, x) + hparams["kl_weight"] * kl_divergence(mean, log_var)).mean()


def _neg_elbo(outputs, batch):
  logits, mean, log_var = outputs
  return reconstruction(logits, batch[0]) + kl_divergence(mean, log_var)


def _pixel_mse(outputs, batch):
  x = batch[0].reshape((batch[0].shape[0], -1))
  return ((jax.nn.sigmoid(outputs[0]) - x) ** 2).mean(-1)


OBJECTIVE = vt.objectives.custom(
    train_loss=train_loss,
    metrics={
        "neg_elbo": vt.objectives.Metric(_neg_elbo, "minimize"),
        "reconstruction": vt.objectives.Metric(
            lambda out, batch: reconstruction(out[0], batch[0]), "minimize"),
        "kl": vt.objectives.Metric(lambda out, batch: kl_divergence(out[1], out[2]), "minimize"),
        "pixel_mse": vt.objectives.Metric(_pixel_mse, "minimize"),
    },
    rank_by="neg_elbo", name="vae")


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_vae",
      model=VAE(hidden=128, latent=8),
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      objective=OBJECTIVE,
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 3e-2),
                     kl_weight=vt.LogUniform(1e-2, 1e1)),
      optimizer="adamw",
      population=64, rounds=3, epochs=20, batch_size=64,
      sampler="narrow(keep=0.2, margin=0.1)", seed=0,
      schedule="cosine",
  )
