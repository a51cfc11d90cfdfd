"""Exact and near-duplicate removal of documents, deterministic, first occurrence kept.

Exact duplicates are documents whose *normalised* text (`normalize_for_dedup`) is identical; they
are found with a cryptographic hash of that text, so the result does not depend on Python's
per-process string hash. Near-duplicates are found with MinHash (Broder 1997, "On the resemblance
and containment of documents") over shingles and locality-sensitive hashing (Indyk & Motwani 1998;
"Mining of Massive Datasets", Leskovec, Rajaraman & Ullman, ch. 3) from `datasketch`, the widely
used library for both; the defaults (word 5-grams, Jaccard 0.8) follow the settings of
Lee et al. 2022, "Deduplicating Training Data Makes Language Models Better" (arXiv:2107.06499) and
Penedo et al. 2023, "The RefinedWeb Dataset for Falcon LLM" (arXiv:2306.01116). The native
alignment recipe (Liang et al. 2024, arXiv:2412.03253) deduplicates the corpus before rewriting it.

Streaming: `Deduplicator` sees one document at a time and never keeps texts. It holds a 16-byte
hash per distinct normalised text, and per *kept* document one MinHash signature (`num_perm` x 4
bytes: 512 B at the default 128) plus its key in each of the LSH band tables. Measured with
tracemalloc at the defaults: about 5.5 KiB per kept document, mostly Python object overhead of the
band tables, so ~5 GiB per million kept documents; time is ~8 ms per 300-word document on one CPU
core. Feed it a corpus record by record (e.g. `source[i]` of `langshift.data.sources`) rather than
materialising the texts; beyond one host's memory, use datasketch's Redis or Cassandra storage for
the LSH tables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

import datasketch
import numpy as np

Unit = Literal["word", "char"]
UNITS = ("word", "char")
REASONS = ("exact", "near")

# LSH band sizes are chosen to minimise 0.1 x false-positive + 0.9 x false-negative probability
# (datasketch's default weighs them equally, which misses about a third of the pairs 0.05 above
# the threshold). Candidates are confirmed against the signature, so a false positive costs one
# signature comparison while a false negative is a duplicate left in the corpus.
_LSH_WEIGHTS = (0.1, 0.9)
# Fixed rather than datasketch's default so an upgrade that changes the default permutation
# scheme cannot change which documents are removed.
_MINHASH_SCHEME = "affine32"

# Hamza-carrying and wasla alefs (أ إ آ ٱ) are written interchangeably with bare alef (ا) across
# web sources; so are alef maksura (ى) and yeh (ي) at word end, and teh marbuta (ة) and heh (ه).
# Folding them is the usual Arabic IR normalisation (Larkey, Ballesteros & Connell 2002, "Improving
# stemming for Arabic information retrieval"); for duplicate detection it makes two copies of
# one article that differ only in a site's spelling conventions hash the same.
_ARABIC_LETTER_FOLDS = {
    "\u0623": "\u0627",
    "\u0625": "\u0627",
    "\u0622": "\u0627",
    "\u0671": "\u0627",
    "\u0649": "\u064a",
    "\u0629": "\u0647",
}
_TATWEEL = "\u0640"
# Arabic, Arabic Supplement and Arabic Extended-A blocks: the combining marks (harakat, tanween,
# shadda, sukun, superscript alef, Quranic annotation signs) in them are optional in Arabic
# writing. Marks of other scripts are left alone: Devanagari vowel signs, say, are letters.
_ARABIC_RANGES = ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF))
_ARABIC_MARKS = [
    chr(code)
    for lo, hi in _ARABIC_RANGES
    for code in range(lo, hi + 1)
    if unicodedata.category(chr(code)) == "Mn"
]
_ARABIC_TABLE = str.maketrans(_ARABIC_LETTER_FOLDS | dict.fromkeys([_TATWEEL, *_ARABIC_MARKS]))


def normalize_arabic(text: str) -> str:
  """Removes tatweel and Arabic diacritics, folds alef/yeh/teh-marbuta spelling variants.

  Meant for matching, not for display: 'العَرَبِيَّة' and 'العـــربيه' both become 'العربيه'.
  Text without Arabic letters is returned unchanged.
  """
  return text.translate(_ARABIC_TABLE)


def normalize_for_dedup(text: str) -> str:
  """The text duplicates are compared on: NFKC, case-folded, Arabic-normalised, spaces collapsed.

  NFKC maps compatibility characters (full-width Latin, ligatures, Arabic presentation forms
  U+FB50-U+FEFF) to the ordinary ones; case folding is Unicode's caseless matching (`ß` -> `ss`);
  `normalize_arabic` drops tatweel and diacritics; every run of whitespace becomes one space.
  """
  text = unicodedata.normalize("NFKC", text).casefold()
  return " ".join(normalize_arabic(text).split())


def _digest(normalized: str) -> bytes:
  return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


def exact_hash(text: str) -> bytes:
  """16-byte BLAKE2b digest of the normalised text: equal for exact duplicates, on any process."""
  return _digest(normalize_for_dedup(text))


def shingles(normalized: str, *, size: int, unit: Unit) -> set[str]:
  """The set of `size`-grams of words (split on spaces) or characters of a normalised text.

  A text shorter than one shingle yields itself as the only shingle, so short documents are still
  compared (as wholes); an empty text yields no shingles.
  """
  if unit == "word":
    words = normalized.split()
    if len(words) <= size:
      return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
  if len(normalized) <= size:
    return {normalized} if normalized else set()
  return {normalized[i : i + size] for i in range(len(normalized) - size + 1)}


class Duplicate(NamedTuple):
  """Why a document was removed: it duplicates the earlier document `of`."""

  of: int
  reason: str  # "exact" | "near"


@dataclasses.dataclass(frozen=True)
class DedupResult:
  """Outcome of `deduplicate` over documents 0..n-1.

  `kept`: ascending indices of the kept documents. `removed`: for each removed index, the earlier
  document it duplicates and why (a `Duplicate`, which unpacks as `(of, reason)`). An exact
  duplicate points at the first occurrence of its normalised text, which may itself be a removed
  near-duplicate; `representative` follows that link to the kept document.
  """

  kept: tuple[int, ...]
  removed: Mapping[int, Duplicate]

  @property
  def exact_removed(self) -> int:
    return sum(d.reason == "exact" for d in self.removed.values())

  @property
  def near_removed(self) -> int:
    return sum(d.reason == "near" for d in self.removed.values())

  @property
  def counts(self) -> dict[str, int]:
    return {
        "kept": len(self.kept),
        "exact_removed": self.exact_removed,
        "near_removed": self.near_removed,
    }

  def representative(self, index: int) -> int:
    """The kept document that stands for `index` (itself when kept)."""
    while index in self.removed:
      index = self.removed[index].of
    return index


def _check_settings(threshold: float, num_perm: int, shingle: int, unit: str, seed: int) -> None:
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
  if isinstance(num_perm, bool) or not isinstance(num_perm, int) or num_perm < 2:
    raise ValueError(f"num_perm must be an integer >= 2 (LSH needs two bands), got {num_perm!r}")
  if isinstance(shingle, bool) or not isinstance(shingle, int) or shingle < 1:
    raise ValueError(f"shingle must be a positive integer, got {shingle!r}")
  if unit not in UNITS:
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
  if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


class Deduplicator:
  """Incremental deduplication: `add(text)` returns None to keep the document, else a `Duplicate`.

  Documents are numbered in the order they are added; only kept ones enter the LSH index, so a
  near-duplicate always points at a kept document, and a chain of small edits (A, A', A'') is
  judged against A rather than drifting along the chain. Near-duplicate candidates from the LSH
  buckets are confirmed by the signatures' estimated Jaccard similarity (>= threshold), so the
  threshold means the same for every candidate, and the earliest confirmed one is reported.
  """

  def __init__(
      self,
      *,
      threshold: float = 0.8,
      num_perm: int = 128,
      shingle: int = 5,
      unit: Unit = "word",
      seed: int = 1,
      near: bool = True,
  ):
    _check_settings(threshold, num_perm, shingle, unit, seed)
    self.near = near
    self.threshold = threshold
    self.shingle = shingle
    self.unit = unit
    self._num_perm = num_perm
    self._seed = seed
    # The permutations are drawn once from the seed and shared by every signature.
    self._permutations = datasketch.MinHash(
        num_perm=num_perm, seed=seed, scheme=_MINHASH_SCHEME
    ).permutations
    try:
      self._lsh = datasketch.MinHashLSH(
          threshold=threshold, num_perm=num_perm, weights=_LSH_WEIGHTS
      )
    except ValueError:
      # For thresholds near 1 datasketch's optimum is one band of all rows, which it refuses; two
      # bands of half the rows still catch every pair with equal signatures (confirmed below).
      self._lsh = datasketch.MinHashLSH(
          threshold=threshold, num_perm=num_perm, params=(2, num_perm // 2)
      )
    self._first_by_hash: dict[bytes, int] = {}
    self._signatures: dict[int, np.ndarray] = {}
    self._count = 0

  def signature(self, normalized: str) -> datasketch.MinHash | None:
    """MinHash of a normalised text's shingles; None for an empty text."""
    grams = shingles(normalized, size=self.shingle, unit=self.unit)
    if not grams:
      return None
    minhash = datasketch.MinHash(
        num_perm=self._num_perm,
        seed=self._seed,
        permutations=self._permutations,
        scheme=_MINHASH_SCHEME,
    )
    # Set order varies with PYTHONHASHSEED; the signature, a minimum per permutation, does not.
    minhash.update_batch(g.encode("utf-8") for g in grams)
    return minhash

  def add(self, text: str) -> Duplicate | None:
    index = self._count
    self._count += 1
    normalized = normalize_for_dedup(text)
    first = self._first_by_hash.setdefault(_digest(normalized), index)
    if first != index:
      return Duplicate(first, "exact")
    minhash = self.signature(normalized) if self.near else None
    if minhash is not None:
      for candidate in sorted(self._lsh.query(minhash)):
        agreement = np.count_nonzero(self._signatures[candidate] == minhash.hashvalues)
        if agreement / self._num_perm >= self.threshold:
          return Duplicate(candidate, "near")
      self._lsh.insert(index, minhash)
      self._signatures[index] = minhash.hashvalues
    return None


def deduplicate(
    texts: Iterable[str],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle: int = 5,
    unit: Unit = "word",
    seed: int = 1,
    near: bool = True,
) -> DedupResult:
  """Removes exact and near-duplicates of earlier documents; the first occurrence is kept.

  Args:
    texts: the documents in corpus order (any iterable; consumed once).
    threshold: estimated Jaccard similarity of shingle sets at or above which a document is a
      near-duplicate of an earlier kept one, in (0, 1].
    num_perm: MinHash permutations (signature length); more is more accurate and slower. The
      estimate's standard deviation is sqrt(J(1-J)/num_perm): 0.035 at J=0.8 with 128.
    shingle: shingle size in `unit`s.
    unit: "word" n-grams for space-separated scripts (Arabic, Latin, Cyrillic: the default, with
      5-grams) or "char" n-grams for scripts written without spaces (Chinese, Japanese, Thai),
      where a `shingle` of 5 characters is a usual choice too.
    seed: seed of the MinHash permutations; fixed so runs agree.
    near: False removes exact duplicates only (no MinHash is computed).

  Returns:
    A `DedupResult`: `kept` indices, `removed` index -> (of, reason), and the counts `kept`,
    `exact_removed` and `near_removed` (`counts`, or the last two as attributes).
  """
  dedup = Deduplicator(
      threshold=threshold, num_perm=num_perm, shingle=shingle, unit=unit, seed=seed, near=near
  )
  kept, removed = [], {}
  for index, text in enumerate(texts):
    duplicate = dedup.add(text)
    if duplicate is None:
      kept.append(index)
    else:
      removed[index] = duplicate
  return DedupResult(tuple(kept), removed)
