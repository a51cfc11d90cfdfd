"""Fixed-budget multilingual instruction mixtures (Shaham, Herzig, Aharoni, Szpektor, Tsarfaty
& Eyal 2024, "Multilingual Instruction Tuning With Just a Pinch of Multilinguality",
arXiv:2401.01854).

The instruction set exists in parallel in every language: example id i is the same instruction
in English and in each translation. A mixture is a list of `(language, example id)` of exactly
`budget` entries, made by pure, seeded functions:

  pinch_mixture     P% of the budget spread evenly over the non-English languages, the rest
                    English (P = 1 of 4,640 gives round(46.4) = 46 multilingual examples, 4-5
                    per language over 11 languages, where the paper speaks of 40); or a
                    multilingual count fixed directly (`multilingual=40`, the paper's figure)
  uniform_mixture   the budget split evenly over a set of languages (language-count study)
  language_count_schedule   the language sets of that study: the first 1, 2, ... languages

How ids are assigned to languages is open in the paper; both options:
  disjoint   every id appears once, in exactly one language (replaced English examples are the
             ones given in translation): the mixture holds `budget` distinct instructions
  parallel   the non-English languages all use translations of the same ids, drawn from the ids
             English keeps where possible: parallel copies of the same content
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Mixture = list[tuple[str, int]]


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
) -> Mixture:
  """`round(P% of budget)` examples (or `multilingual`, when given) spread evenly over
  `languages`, the rest in `english`."""
  if not 0 <= percent <= 100:
    raise ValueError(f"percent={percent} is not in [0, 100]")
  if english in languages:
    raise ValueError(f"{english!r} is the base language; list only the others in `languages`")
  if multilingual is None:
    multilingual = multilingual_count(budget, percent)
  elif not 0 <= multilingual <= budget:
    raise ValueError(f"multilingual={multilingual} is not in [0, budget={budget}]")
  counts = {english: budget - multilingual, **even_split(multilingual, languages, seed)}
  return assign_examples(
      counts, num_source_examples or budget, assignment=assignment, seed=seed, english=english
  )


def multilingual_count(budget: int, percent: float) -> int:
  """round(P% of budget): the number of non-English examples of a pinch mixture."""
  return int(round(budget * percent / 100))


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
