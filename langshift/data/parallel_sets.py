"""Parallel instruction sets: the same example ids in several languages.

Shaham et al. 2024 ("Multilingual Instruction Tuning With Just a Pinch of Multilinguality",
arXiv:2401.01854) tune on an English instruction set (LIMA's 1,000 examples and 3,640 first turns
of OpenAssistant) machine-translated into 11 languages: example id i is the same instruction in
every language, which is what a fixed-budget mixture draws from
(`langshift/recipes/pinch/mixture.py`).

On-disk layout, the one the pinch recipe reads (`pinch.parallel_set`):

  <root>/<split>/<lang>.jsonl   one record per example id, the same ids in the same order in
                                every language: {"id", "lang", "messages": [user, assistant]}
  <root>/manifest.json          languages, ids per split, where the set came from

Loaders for the published sources (local files the user supplies): LIMA's JSONL, OpenAssistant
message trees reduced to first-turn pairs, and translations keyed by id. `write_parallel_set`
refuses languages whose ids differ, naming the language and an id.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Example = dict[str, Any]  # {"id": str, "lang": str, "messages": [...]}
SPLITS = ("train", "heldout")


def pair_messages(instruction: str, response: str) -> list[dict[str, str]]:
  return [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def _open_text(path: str):
  return (
      gzip.open(path, "rt", encoding="utf-8")
      if path.endswith(".gz")
      else open(path, encoding="utf-8")
  )


def read_jsonl_records(path: str) -> Iterable[tuple[str, dict]]:
  """(file:line, record) of a JSON-lines file (.gz too); a bad line is an error naming it."""
  with _open_text(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        yield f"{path}:{n}", json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{n}: not a JSON record ({e.msg})") from None


def _field(record: Mapping, key: str, where: str):
  if key not in record:
    raise ValueError(f"{where}: missing field {key!r}")
  return record[key]


def load_lima(path: str, *, lang: str = "en") -> list[Example]:
  """LIMA (Zhou et al. 2023, arXiv:2305.11206) train.jsonl: {"conversations": [instruction,
  response, ...], "source"}. The first turn is the example; ids are `lima-<line index>`."""
  out = []
  for i, (where, record) in enumerate(read_jsonl_records(path)):
    turns = _field(record, "conversations", where)
    if not isinstance(turns, list) or len(turns) < 2:
      raise ValueError(f"{where}: 'conversations' needs an instruction and a response")
    out.append({"id": f"lima-{i:04d}", "lang": lang, "messages": pair_messages(turns[0], turns[1])})
  return out


def load_oasst_first_turns(path: str, *, lang: str = "en") -> list[Example]:
  """OpenAssistant (Köpf et al. 2023, arXiv:2304.07327) reduced to first-turn pairs: each root
  prompt in `lang` with its best-ranked (lowest `rank`) non-deleted assistant reply.

  Reads the flat message layout (one message per line: message_id, parent_id, role
  "prompter"/"assistant", text, lang, rank, deleted) or the tree layout (one tree per line:
  {"prompt": {message_id, text, role, lang, replies: [...]}}). Ids are `oasst-<message_id>` of
  the prompt.
  """
  prompts: dict[str, dict] = {}
  replies: dict[str, list[dict]] = {}
  for where, record in read_jsonl_records(path):
    if "prompt" in record:  # tree layout
      root = record["prompt"]
      prompts[_field(root, "message_id", where)] = root
      replies[root["message_id"]] = list(root.get("replies") or [])
      continue
    message_id = _field(record, "message_id", where)
    role = _field(record, "role", where)
    if record.get("parent_id") is None and role == "prompter":
      prompts[message_id] = record
    elif role == "assistant" and record.get("parent_id"):
      replies.setdefault(record["parent_id"], []).append(record)
  out = []
  for message_id, prompt in prompts.items():
    if prompt.get("lang", lang) != lang or prompt.get("deleted"):
      continue
    answers = [r for r in replies.get(message_id, []) if not r.get("deleted")]
    if not answers:
      continue
    best = min(answers, key=lambda r: (r.get("rank") is None, r.get("rank") or 0))
    out.append(
        {
            "id": f"oasst-{message_id}",
            "lang": lang,
            "messages": pair_messages(prompt["text"], best["text"]),
        }
    )
  return out


def load_translations(path: str, lang: str) -> list[Example]:
  """Translations keyed by id: {"id", "messages"} or {"id", "instruction", "response"}."""
  out = []
  for where, record in read_jsonl_records(path):
    example_id = str(_field(record, "id", where))
    if "messages" in record:
      messages = record["messages"]
    else:
      messages = pair_messages(
          _field(record, "instruction", where), _field(record, "response", where)
      )
    out.append({"id": example_id, "lang": lang, "messages": messages})
  return out


def check_parallel(by_language: Mapping[str, Sequence[Example]], where: str = "") -> list[str]:
  """The shared ids, in the first language's order; differing ids are a one-line error naming
  the language and one id it lacks or adds."""
  languages = list(by_language)
  if not languages:
    raise ValueError(f"{where or 'parallel set'}: no languages")
  reference = [e["id"] for e in by_language[languages[0]]]
  if len(set(reference)) != len(reference):
    raise ValueError(f"{where}{languages[0]}: repeated example ids")
  wanted = set(reference)
  for lang in languages[1:]:
    ids = [e["id"] for e in by_language[lang]]
    if len(set(ids)) != len(ids):
      raise ValueError(f"{where}{lang}: repeated example ids")
    missing, extra = wanted - set(ids), set(ids) - wanted
    if missing or extra:
      which = (
          f"lacks id {sorted(missing)[0]!r}" if missing else f"has extra id {sorted(extra)[0]!r}"
      )
      raise ValueError(
          f"{where}{lang}: {which} ({len(missing)} missing, {len(extra)} extra vs "
          f"{languages[0]})"
      )
  return reference


def write_parallel_set(
    root: str,
    splits: Mapping[str, Mapping[str, Sequence[Example]]],
    *,
    source: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
  """Writes `<root>/<split>/<lang>.jsonl` (ids in one order for all languages) and the manifest.

  `splits`: {"train": {lang: examples}, "heldout": {...}}; `extra`: more manifest fields (a
  builder's version stamp and filter counts). Returns the manifest.
  """
  manifest: dict[str, Any] = {"source": source, "splits": {}}
  for split, by_language in splits.items():
    order = check_parallel(by_language, where=f"{root}/{split}/")
    os.makedirs(os.path.join(root, split), exist_ok=True)
    for lang, examples in by_language.items():
      by_id = {e["id"]: e for e in examples}
      path = os.path.join(root, split, f"{lang}.jsonl")
      with open(path + ".tmp", "w", encoding="utf-8") as f:
        for example_id in order:
          record = {**by_id[example_id], "lang": lang}
          f.write(json.dumps(record, ensure_ascii=False) + "\n")
      os.replace(path + ".tmp", path)
    manifest["splits"][split] = len(order)
    manifest["languages"] = list(by_language)
  manifest.update(extra or {})
  with open(os.path.join(root, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1, ensure_ascii=False)
  return manifest


def read_parallel_set(root: str, split: str = "train") -> dict[str, list[Example]]:
  """{lang: examples} of a written set, checked for equal ids."""
  with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
    languages = json.load(f)["languages"]
  by_language = {
      lang: [r for _, r in read_jsonl_records(os.path.join(root, split, f"{lang}.jsonl"))]
      for lang in languages
  }
  check_parallel(by_language, where=f"{root}/{split}/")
  return by_language
