"""A character-level language model: a small causal transformer (``vt.models.CharTransformer``,
one block of width 32) on generated English-like sentences, with weight decay, warmup and
dropout searched beside the learning rate.

The text comes from a small grammar (``vt.data.grammar_text``: subjects and verbs agree,
relative clauses, conjunctions), generated here, so nothing is downloaded; it is cut into
sequences of 33 characters (``vt.data.characters``) and the model predicts each next one
from the 32 before it. Lanes are ranked by validation loss (mean nats per character); the
records hold ``val_loss``, ``val_perplexity`` and ``val_token_accuracy``. Predicting every
character uniformly scores ``log(V)``, about 3.2 nats for the text's 25 characters.

``dropout_rate`` and ``warmup_epochs`` are the trainer's traced per-lane hyperparameters, so
the whole population is one compiled program. The default run (16 lanes, 2 rounds of 4
epochs, then the confirmation stage) takes about 40 s on an idle 2-core CPU (70 CPU-seconds;
110 s while other work shares the cores) and reaches a validation loss near 0.87 nats:

    time vmaptune run experiments/char_lm.py --no-cache
"""

import vmaptune as vt

SENTENCES, SEED, LENGTH = 2000, 0, 33


def load_data() -> vt.data.Dataset:
  text = vt.data.grammar_text(SENTENCES, seed=SEED)
  return vt.data.characters(text, LENGTH, val_fraction=0.1, test_fraction=0.1, seed=SEED,
                            name="grammar_text")


def get_config() -> vt.Experiment:
  vocab = vt.data.vocabulary(vt.data.grammar_text(SENTENCES, seed=SEED))
  return vt.Experiment(
      name="char_lm",
      model=vt.models.CharTransformer(vocab_size=len(vocab), max_length=LENGTH - 1, width=32,
                                      depth=1, num_heads=4),
      data=load_data,
      objective="language_model",
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 3e-2),
                     weight_decay=vt.LogUniform(1e-6, 1e-1),
                     warmup_epochs=vt.Uniform(0.0, 1.0),
                     dropout_rate=vt.Uniform(0.0, 0.3)),
      optimizer="adamw",
      population=16, rounds=2, epochs=4, batch_size=64,
      sampler="narrow(keep=0.25, margin=0.1)", seed=0,
      schedule="cosine",
  )
