"""Text for language models: a generated corpus and character-level token sequences.

:func:`grammar_text` writes English-like sentences from a small grammar
(deterministic given its seed; nothing is downloaded), and :func:`characters`
cuts any text into token sequences ``[N, T]`` over a character vocabulary,
split into train / val / test, as the ``language_model`` objective reads them.

>>> text = grammar_text(3, seed=0)
>>> data = characters(text, 16)
>>> data.train.shape[1], data.train.dtype
(16, dtype('int32'))
>>> decode(encode("the cat", vocabulary(text)), vocabulary(text))
'the cat'
"""

from __future__ import annotations

import numpy as np

from vmaptune.data.dataset import Dataset
from vmaptune.data.loaders import split_indices
from vmaptune.errors import DataError
from vmaptune.validation import whole_number

# The grammar: a sentence is a clause, or two joined by a conjunction; a clause
# is a subject, a verb that agrees with it in number, an object, and sometimes
# an adverb. Nouns and verbs agree (``the cat sees`` / ``the cats see``), and
# the subject may carry a relative clause, so some structure spans many characters.
_NOUNS = ("cat", "dog", "bird", "girl", "boy", "teacher", "robot", "farmer", "horse",
          "child")
_PLURALS = {"child": "children"}
_VERBS = ("see", "like", "chase", "find", "follow", "help", "watch", "call")
_ADJECTIVES = ("small", "big", "red", "old", "happy", "quiet", "clever", "young")
_ADVERBS = ("today", "again", "slowly", "quietly", "at night", "in the garden")
_SINGULAR_DETERMINERS = ("the", "a", "every", "one")
_PLURAL_DETERMINERS = ("the", "some", "many", "two", "all the")
_CONJUNCTIONS = ("and", "but", "because", "while")


def _plural(noun: str) -> str:
  return _PLURALS.get(noun, noun + "s")


def _third_person(verb: str) -> str:
  return verb + ("es" if verb.endswith(("ch", "sh", "s")) else "s")


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
  return words[rng.integers(len(words))]


def _noun_phrase(rng: np.random.Generator, plural: bool) -> str:
  words = [_pick(rng, _PLURAL_DETERMINERS if plural else _SINGULAR_DETERMINERS)]
  if rng.random() < 0.5:
    words.append(_pick(rng, _ADJECTIVES))
  noun = _pick(rng, _NOUNS)
  words.append(_plural(noun) if plural else noun)
  return " ".join(words)


def _clause(rng: np.random.Generator) -> str:
  plural = bool(rng.random() < 0.4)
  subject = _noun_phrase(rng, plural)
  if rng.random() < 0.2:  # A relative clause: "the dog that the cats chase".
    inner_plural = bool(rng.random() < 0.4)
    inner_verb = _pick(rng, _VERBS)
    subject += (" that " + _noun_phrase(rng, inner_plural) + " "
                + (inner_verb if inner_plural else _third_person(inner_verb)))
  verb = _pick(rng, _VERBS)
  words = [subject, verb if plural else _third_person(verb),
           _noun_phrase(rng, bool(rng.random() < 0.4))]
  if rng.random() < 0.3:
    words.append(_pick(rng, _ADVERBS))
  return " ".join(words)


def grammar_text(sentences: int = 2000, *, seed: int = 0) -> str:
  """English-like sentences from a small grammar, generated here (no download).

  Lower-case words, spaces and full stops (25 distinct characters in all);
  subjects and verbs agree in number, some subjects carry a relative clause,
  and some sentences join two clauses. The same ``sentences`` and ``seed``
  give the same text.

  Args:
    sentences: how many sentences (about 40 characters each).
    seed: the generator's seed.

  Returns:
    The sentences, each ending in ``". "``.

  >>> grammar_text(2, seed=1)
  'one young horse calls a clever robot quietly. one girl sees many young birds today. '
  """
  sentences = whole_number("sentences", sentences, 1, error=DataError)
  seed = whole_number("seed", seed, 0, error=DataError)
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(sentences):
    sentence = _clause(rng)
    if rng.random() < 0.25:
      sentence += " " + _pick(rng, _CONJUNCTIONS) + " " + _clause(rng)
    out.append(sentence + ". ")
  return "".join(out)


def vocabulary(text: str) -> str:
  """The distinct characters of ``text``, sorted: character ``vocabulary[i]`` is token ``i``."""
  return "".join(sorted(set(text)))


def encode(text: str, vocab: str) -> np.ndarray:
  """Tokens of ``text``: int32 ``[len(text)]``, each character's index in ``vocab``.

  Raises:
    DataError: a character of ``text`` is not in ``vocab``.
  """
  index = {c: i for i, c in enumerate(vocab)}
  missing = sorted(set(text) - set(index))
  if missing:
    raise DataError(f"characters {''.join(missing)!r} are not in the vocabulary {vocab!r}")
  return np.fromiter((index[c] for c in text), np.int32, len(text))


def decode(tokens, vocab: str) -> str:
  """The text of tokens ``[T]`` (any integer array) over ``vocab``."""
  return "".join(vocab[int(t)] for t in np.asarray(tokens).reshape(-1))


def characters(text: str, length: int, *, vocab: str | None = None,
               val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
               name: str = "characters") -> Dataset:
  """Cuts ``text`` into character token sequences for the ``language_model`` objective.

  The text is cut into consecutive, non-overlapping windows of ``length``
  characters (a remainder shorter than a window is dropped), and the windows
  are split at random into train / val / test. The model sees a window's
  first ``length - 1`` tokens and predicts each next one.

  Args:
    text: the corpus.
    length: characters per sequence, ``T >= 2``.
    vocab: the characters, token ``i`` being ``vocab[i]`` (default:
      :func:`vocabulary` of ``text``); the model's logits need ``len(vocab)``
      entries.
    val_fraction: share of sequences for validation.
    test_fraction: share of sequences for the final test.
    seed: the split's permutation seed.
    name: a label for records.

  Returns:
    A :class:`Dataset` whose splits are int32 token arrays ``[N, length]``.

  Raises:
    DataError: ``length`` below 2, text too short for a training and a
      validation sequence, or a character not in ``vocab``.
  """
  length = whole_number("length", length, 2, error=DataError)
  tokens = encode(text, vocabulary(text) if vocab is None else vocab)
  count = len(tokens) // length
  if count < 2:
    raise DataError(f"text of {len(tokens)} characters gives {count} sequences of {length}; "
                    "expected at least 2 (a training and a validation one)")
  windows = tokens[:count * length].reshape(count, length)
  train, val, test = split_indices(count, val_fraction, test_fraction, seed)
  return Dataset(train=windows[train], val=windows[val], test=windows[test], name=name)
