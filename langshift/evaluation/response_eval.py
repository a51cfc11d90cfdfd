"""Response evaluation: answers to a prompt file, judged without a judge.

Two judge-free measures of what a model answers:

- **Response-language match rate**: the share of answers whose detected language (offline LID,
  `langshift.text.language_id`, which tells Traditional from Simplified Chinese) is the
  prompt's. It is the headline metric of InsCP (Chen & Lee 2024, "InstructionCP: A fast approach
  to transfer Large Language Models into target language", arXiv:2405.20175, Sec. 4.2: fastText
  LID on TED prompts) and a judge-free proxy of Shaham et al. 2024 (arXiv:2401.01854, Sec. 3).
- **Reference-response NLL per token**: -log p(reference | prompt) summed over the reference's
  tokens, divided by their number, per language (Shaham et al. 2024's other judge-free proxy).

The prompt file is JSONL, one object per line:

  {"prompt": "請用一句話介紹台北。", "language": "zh-TW", "reference": "台北是..."}

`prompt` and `language` are required; `language` is any tag `normalize_language_tag` folds onto a
label the detector can give ("zh-TW" -> "zh-Hant", "en-US" -> "en"); `reference` is optional (the
NLL covers the lines that have one). Bad lines are one-line errors naming the file and line.

Use it three ways:
  * in a training run: `config.evals.<name> = response_eval(prompts=PATH, ...)` (evaluators.py);
  * from code, on any `TextGenerator` (local or an OpenAI-compatible server) and optionally a
    `LocalScorer`: `evaluate_responses(load_response_prompts(PATH), generator, scorer)`;
  * on the records it returns, to judge answers pairwise (`langshift.evaluation.judge`).

Metrics (`prefix` is "eval" by default; `<lang>` is the normalized tag):
  <prefix>/language_match            share of all answers in their prompt's language
  <prefix>/language_match/<lang>     the same over the prompts of one language
  <prefix>/reference_nll/<lang>      reference NLL per token (nats), when references exist
  <prefix>/reference_nll             over every reference
  <prefix>/response_chars            mean answer length in characters (a collapse check: a model
                                     that answers nothing matches no language)
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence

import numpy as np
from etils import epath

from langshift.generation.interface import GenerationOptions
from langshift.text.language_id import detect_language, normalize_language_tag


@dataclasses.dataclass(frozen=True)
class ResponsePrompt:
  prompt: str
  language: str  # normalized: the label the answer's detected language must equal
  reference: str | None = None


@functools.lru_cache(maxsize=1)
def supported_languages() -> frozenset[str]:
  """Labels `detect_language` can return (CLD2 and py3langid codes, Chinese by script)."""
  # pylint: disable=import-outside-toplevel
  import pycld2
  from py3langid import langid

  langid.classify("a")  # loads the model on first use
  codes = {code for _, code in pycld2.LANGUAGES if code not in ("un", "xx")}
  codes |= set(langid.IDENTIFIER.nb_classes)
  labels = {normalize_language_tag(c) for c in codes}
  return frozenset(labels | {"zh-Hant", "zh-Hans"})


def check_language(tag: str, where: str) -> str:
  """The normalized label of `tag`; an error naming `where` when the detector cannot give it."""
  if not isinstance(tag, str) or not tag.strip():
    raise ValueError(f"{where}: language {tag!r} is not a language tag")
  label = normalize_language_tag(tag)
  if label not in supported_languages():
    raise ValueError(
        f"{where}: language {tag!r} is not one the offline language identifier can detect "
        f"(normalized: {label!r})"
    )
  return label


def load_response_prompts(path: str, max_examples: int = 0) -> list[ResponsePrompt]:
  """The prompts of a JSONL file, in file order; `max_examples` > 0 keeps the first that many of
  each language (so every language keeps its share however the file is ordered)."""
  file = epath.Path(path)
  if not file.exists():
    raise FileNotFoundError(f"prompt file {path} does not exist")
  out: list[ResponsePrompt] = []
  per_language: dict[str, int] = {}
  for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    try:
      record = json.loads(line)
    except ValueError as e:
      raise ValueError(f"{where}: not a JSON object: {e}") from None
    if not isinstance(record, dict):
      raise ValueError(f"{where}: not a JSON object")
    for field in ("prompt", "language"):
      if not isinstance(record.get(field), str):
        raise ValueError(f"{where}: field {field!r} missing or not a string")
    reference = record.get("reference")
    if reference is not None and not isinstance(reference, str):
      raise ValueError(f"{where}: field 'reference' is {type(reference).__name__}, not a string")
    language = check_language(record["language"], where)
    if max_examples and per_language.get(language, 0) >= max_examples:
      continue
    per_language[language] = per_language.get(language, 0) + 1
    out.append(ResponsePrompt(record["prompt"], language, reference or None))
  if not out:
    raise ValueError(f"prompt file {path} holds no prompts")
  return out


def evaluate_responses(
    prompts: Sequence[ResponsePrompt],
    generator,
    scorer=None,
    *,
    chat: bool = True,
    options: GenerationOptions = GenerationOptions(max_new_tokens=64),
    prefix: str = "eval",
    records: list | None = None,
) -> dict[str, float]:
  """Generates an answer to every prompt and returns the metrics of the module docstring.

  Args:
    prompts: from `load_response_prompts`.
    generator: a `TextGenerator`; `chat=True` sends each prompt as one user turn (the backend's
      chat template), `chat=False` continues the raw prompt.
    scorer: a `LocalScorer` (or anything with `loglikelihood(pairs)`), for the reference NLL; None
      skips it. Under `chat` the context is the rendered user turn ending in the assistant header
      (the tokens the generator continues); otherwise lm-eval's `loglikelihood(prompt, reference)`.
    records: receives one dict per prompt (prompt, language, response, detected, match), for
      inspection or pairwise judging.
  """
  if not prompts:
    raise ValueError("evaluate_responses: no prompts")
  if chat:
    responses = generator.chat([[{"role": "user", "content": p.prompt}] for p in prompts], options)
  else:
    responses = generator.complete([p.prompt for p in prompts], options)
  responses = [r.strip() for r in responses]
  detected = [detect_language(r) for r in responses]
  match = np.asarray([d == p.language for d, p in zip(detected, prompts)], np.float64)
  out = {f"{prefix}/language_match": float(match.mean())}
  languages = sorted({p.language for p in prompts})
  for lang in languages:
    mine = [i for i, p in enumerate(prompts) if p.language == lang]
    out[f"{prefix}/language_match/{lang}"] = float(match[mine].mean())
  out[f"{prefix}/response_chars"] = float(np.mean([len(r) for r in responses]))
  if scorer is not None:
    out.update(_reference_nll(prompts, scorer, chat=chat, prefix=prefix))
  if records is not None:
    records.extend(
        dict(prompt=p.prompt, language=p.language, response=r, detected=d, match=bool(m))
        for p, r, d, m in zip(prompts, responses, detected, match)
    )
  return out


def _reference_nll(prompts, scorer, *, chat: bool, prefix: str) -> dict[str, float]:
  with_reference = [p for p in prompts if p.reference]
  if not with_reference:
    return {}
  if chat:
    # The context is exactly the token sequence the generator continues (the rendered user turn,
    # no BOS beyond what the template writes); the reference is tokenized on its own, as the
    # tokens the model would generate after the assistant header.
    encoded = []
    for p in with_reference:
      context = scorer.encode(scorer.render_chat([{"role": "user", "content": p.prompt}]))
      encoded.append((context, scorer.encode(p.reference)))
    scored = scorer.loglikelihood_tokens(encoded)
  else:  # lm-eval's convention for a plain continuation
    scored = scorer.loglikelihood([(p.prompt, p.reference) for p in with_reference])
  totals: dict[str, list[float]] = {}
  for p, s in zip(with_reference, scored):
    for key in ("", p.language):
      acc = totals.setdefault(key, [0.0, 0])
      acc[0] -= s.logprob
      acc[1] += s.num_tokens
  return {
      f"{prefix}/reference_nll{'/' + key if key else ''}": nll / max(n, 1)
      for key, (nll, n) in totals.items()
  }
