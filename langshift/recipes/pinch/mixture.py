"""Fixed-budget multilingual instruction mixtures (Shaham, Herzig, Aharoni, Szpektor, Tsarfaty
& Eyal 2024, "Multilingual Instruction Tuning With Just a Pinch of Multilinguality",
arXiv:2401.01854).

The instruction set exists in parallel in every language: example id i is the same instruction
in English and in each translation. A mixture is a list of `(language, example id)` of exactly
`budget` entries, made by pure, seeded functions:

  pinch_mixture     P% of the budget spread evenly over all the languages, English included
                    (Sec. 3.2: over the 12 languages), the other (100 - P)% English: the L
                    non-English languages get floor(budget x P/100 x L/(L+1)) examples (P = 1
                    of 4,640 over 12 languages: floor(42.53) = 42, the paper's "about 40"), and
                    English keeps its share of the P% too (P = 100: 387 of 4,640, a twelfth).
                    `share_over="non_english"` spreads the P% over the non-English languages
                    only (round(P% of budget): 46 at P = 1, no English at P = 100). Or the
                    non-English count fixed directly (`multilingual=40`)
  uniform_mixture   the budget split evenly over a set of languages (language-count study)
  language_count_schedule   the language sets of that study: the first 1, 2, ... languages

How ids are assigned to languages is open in the paper; both options:
  disjoint   every id appears once, in exactly one language (replaced English examples are the
             ones given in translation): the mixture holds `budget` distinct instructions
  parallel   the non-English languages all use translations of the same ids, drawn from the ids
             English keeps where possible: parallel copies of the same content
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Mapping, Sequence

import numpy as np

Mixture = list[tuple[str, int]]
# Over which languages a pinch mixture spreads its P% (`pinch_mixture`): "all" is the paper's
# reading (Shaham et al. 2024, Sec. 3.2: the 12 languages, English included), "non_english" the
# non-English languages only.
SHARE_OVER = ("all", "non_english")


def even_split(total: int, languages: Sequence[str], seed: int) -> dict[str, int]:
  """`total` examples over `languages`, counts differing by at most one (extras seeded)."""
  if total and not languages:
    raise ValueError("cannot spread examples over an empty language list")
  base, extra = divmod(total, max(len(languages), 1))
  lucky = set(np.random.default_rng([seed, 1]).permutation(len(languages))[:extra].tolist())
  return {lang: base + (i in lucky) for i, lang in enumerate(languages)}


def assign_examples(
    counts: Mapping[str, int],
    num_source_examples: int,
    *,
    assignment: str,
    seed: int,
    english: str | None = None,
) -> Mixture:
  """Chooses example ids for per-language counts; returns the mixture in seeded random order.

  `english` (parallel assignment) is the language whose ids the others copy when it has any.
  """
  budget = sum(counts.values())
  if budget > num_source_examples and assignment == "disjoint":
    raise ValueError(
        f"disjoint mixture of {budget} examples needs at least that many source "
        f"examples, the parallel set has {num_source_examples}"
    )
  ids = np.random.default_rng([seed, 2]).permutation(num_source_examples).tolist()
  mixture: Mixture = []
  if assignment == "disjoint":
    start = 0
    for lang, n in counts.items():
      mixture += [(lang, i) for i in ids[start : start + n]]
      start += n
  elif assignment == "parallel":
    base = counts.get(english, 0) if english is not None else 0
    if base > num_source_examples:
      raise ValueError(f"{base} {english} examples requested, the set has {num_source_examples}")
    mixture += [(english, i) for i in ids[:base]]
    shared = max([n for lang, n in counts.items() if lang != english], default=0)
    if shared > num_source_examples:
      raise ValueError(
          f"{shared} examples per language requested, the set has " f"{num_source_examples}"
      )
    for lang, n in counts.items():
      if lang != english:
        mixture += [(lang, i) for i in ids[:n]]
  else:
    raise ValueError(f"assignment={assignment!r}; expected 'disjoint' or 'parallel'")
  order = np.random.default_rng([seed, 3]).permutation(len(mixture))
  return [mixture[k] for k in order]


def pinch_mixture(
    budget: int,
    percent: float,
    languages: Sequence[str],
    *,
    english: str = "en",
    assignment: str = "disjoint",
    seed: int = 0,
    num_source_examples: int | None = None,
    multilingual: int | None = None,
    share_over: str = "all",
) -> Mixture:
  """`multilingual_count(...)` non-English examples (or `multilingual`, when given) spread
  evenly over `languages`, the rest in `english`."""
  if not 0 <= percent <= 100:
    raise ValueError(f"percent={percent} is not in [0, 100]")
  if english in languages:
    raise ValueError(f"{english!r} is the base language; list only the others in `languages`")
  if multilingual is None:
    multilingual = multilingual_count(budget, percent, len(languages), share_over)
  elif not 0 <= multilingual <= budget:
    raise ValueError(f"multilingual={multilingual} is not in [0, budget={budget}]")
  counts = {english: budget - multilingual, **even_split(multilingual, languages, seed)}
  return assign_examples(
      counts, num_source_examples or budget, assignment=assignment, seed=seed, english=english
  )


def multilingual_count(
    budget: int, percent: float, num_languages: int, share_over: str = "all"
) -> int:
  """The number of non-English examples of a pinch mixture over `num_languages` non-English
  languages.

  share_over="all" (Shaham et al. 2024, Sec. 3.2): P% of the budget is split evenly over the
  num_languages + 1 languages, English included, so the non-English ones get
  floor(budget x P/100 x L/(L+1)), computed exactly (P read as the decimal it prints as); English
  keeps the fraction. "non_english": round(budget x P/100), all of the P% off English.
  """
  if share_over not in SHARE_OVER:
    raise ValueError(f"share_over={share_over!r}; expected one of {SHARE_OVER}")
  if share_over == "non_english":
    return int(round(budget * percent / 100))
  share = fractions.Fraction(budget) * fractions.Fraction(str(percent)) / 100
  return math.floor(share * num_languages / (num_languages + 1))


def uniform_mixture(
    budget: int,
    languages: Sequence[str],
    *,
    assignment: str = "disjoint",
    seed: int = 0,
    num_source_examples: int | None = None,
) -> Mixture:
  """The budget split evenly over `languages` (the first one is copied from under parallel)."""
  counts = even_split(budget, languages, seed)
  return assign_examples(
      counts,
      num_source_examples or budget,
      assignment=assignment,
      seed=seed,
      english=languages[0] if languages else None,
  )


def language_count_schedule(
    languages: Sequence[str] = ("en", "ar", "fi", "it", "ru", "sw"),
) -> list[tuple[str, ...]]:
  """The language sets of the language-count study: (en,), (en, ar), ... all of `languages`."""
  return [tuple(languages[:k]) for k in range(1, len(languages) + 1)]


def language_counts(mixture: Mixture) -> dict[str, int]:
  out: dict[str, int] = {}
  for lang, _ in mixture:
    out[lang] = out.get(lang, 0) + 1
  return out
