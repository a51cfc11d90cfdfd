"""Documents in, rewrites out: the corpus side of LLM rewriting (native alignment).

A document is `{"id": str, "text": str}`. Rewriting goes through the resumable generation job
(`langshift/generation/job.py`), one request per *piece*: a document longer than the rewriter's
input budget is cut at paragraph boundaries into pieces that fit, each piece is rewritten on its
own, and the rewrites are joined again in order with the separators that stood between them.
Request ids are `<document id>#<piece index>`, so the job's exactly-once bookkeeping (outputs
keyed by id) covers pieces, and joining is a pure function of the finished outputs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from langshift.data import sources as sources_lib
from langshift.jsonl import read_jsonl, write_jsonl  # noqa: F401 (rio.read_jsonl: recipes)

PIECE_SEPARATOR = "#"
# A paragraph break: a blank line, or a single newline when the text has no blank lines.
_BLANK_LINE = re.compile(r"\n[ \t]*\n+")


def read_documents(
    src, *, id_field: str = "id", on_bad_record: str = "raise", limit: int = 0
) -> list[dict[str, str]]:
  """`{"id", "text"}` of every record of a data source (`data.config.source_config`).

  Ids come from `id_field` when records have it, else from the record's position ("doc-00042"),
  which is stable for a fixed corpus. Records without text are skipped; repeated ids are an
  error naming the source. `limit` > 0 keeps the first `limit` documents.
  """
  records = sources_lib.open_source(src, on_bad_record)
  docs, seen = [], set()
  for i in range(len(records)):
    where, record = records[i]
    if record is None:
      continue
    text = record.get(src.text_field)
    if not isinstance(text, str) or not text.strip():
      continue
    doc_id = str(record[id_field]) if id_field in record else f"doc-{i:08d}"
    if PIECE_SEPARATOR in doc_id:
      raise ValueError(f"{where}: document id {doc_id!r} contains {PIECE_SEPARATOR!r}")
    if doc_id in seen:
      raise ValueError(f"{where}: document id {doc_id!r} repeats in source {src.name}")
    seen.add(doc_id)
    docs.append({"id": doc_id, "text": text})
    if limit and len(docs) >= limit:
      break
  return docs


def seeded_sample(docs: Sequence[dict], n: int, seed: int) -> list[dict]:
  """`n` documents drawn without replacement by a seeded shuffle, kept in corpus order."""
  if n >= len(docs):
    return list(docs)
  chosen = sorted(random.Random(seed).sample(range(len(docs)), n))
  return [docs[i] for i in chosen]


def split_paragraphs(text: str) -> tuple[list[str], list[str]]:
  """(paragraphs, separators): `text == p0 + s0 + p1 + s1 + ... + pn`."""
  pattern = _BLANK_LINE if _BLANK_LINE.search(text) else re.compile(r"\n+")
  paragraphs, separators, start = [], [], 0
  for match in pattern.finditer(text):
    paragraphs.append(text[start : match.start()])
    separators.append(match.group())
    start = match.end()
  paragraphs.append(text[start:])
  return paragraphs, separators


def chunk_document(
    text: str, budget: int, length: Callable[[str], int]
) -> tuple[list[str], list[str]]:
  """(pieces, separators) with `length(piece) <= budget` where paragraphs allow.

  Whole paragraphs are packed greedily in order; a single paragraph over the budget is cut at
  the last whitespace that fits (at a hard character cut if it has none), so no text is lost:
  `pieces[0] + separators[0] + pieces[1] + ... == text`.
  """
  paragraphs, seps = split_paragraphs(text)
  pieces, separators = [], []
  current, pending_sep = "", ""
  for k, para in enumerate(paragraphs):
    candidate = current + pending_sep + para if current else para
    if current and length(candidate) > budget:
      pieces.append(current)
      separators.append(pending_sep)
      current = para
    else:
      current = candidate
    while length(current) > budget:
      head, sep, tail = _cut(current, budget, length)
      pieces.append(head)
      separators.append(sep)
      current = tail
    pending_sep = seps[k] if k < len(seps) else ""
  pieces.append(current)
  return pieces, separators


def _cut(text: str, budget: int, length: Callable[[str], int]) -> tuple[str, str, str]:
  """The longest prefix within budget, ending at whitespace when possible."""
  lo, hi = 1, len(text)
  while lo < hi:  # longest prefix length with length(prefix) <= budget (monotone)
    mid = (lo + hi + 1) // 2
    if length(text[:mid]) <= budget:
      lo = mid
    else:
      hi = mid - 1
  space = max(text.rfind(" ", 0, lo), text.rfind("\n", 0, lo))
  if space > 0:
    return text[:space], text[space], text[space + 1 :]
  return text[:lo], "", text[lo:]


def rewrite_requests(
    docs: Sequence[dict],
    *,
    budget: int,
    length: Callable[[str], int],
    messages: Callable[[str], list[dict]],
) -> Iterator[dict[str, Any]]:
  """One generation-job request per piece: `{"id": "<doc>#<k>", "doc_id", "piece", "pieces",
  "separator", "original", "messages"}` (`separator` follows the piece)."""
  for doc in docs:
    pieces, separators = chunk_document(doc["text"], budget, length)
    for k, piece in enumerate(pieces):
      yield {
          "id": f"{doc['id']}{PIECE_SEPARATOR}{k}",
          "doc_id": doc["id"],
          "piece": k,
          "pieces": len(pieces),
          "separator": separators[k] if k < len(separators) else "",
          "original": piece,
          "messages": messages(piece),
      }


def join_rewrites(outputs: Iterable[dict], output_field: str) -> dict[str, dict[str, Any]]:
  """Finished job outputs -> `{doc_id: {"text", "original", "pieces"}}` for every document whose
  pieces are all present (a document with a missing piece is left out; the caller counts it)."""
  by_doc: dict[str, dict[int, dict]] = {}
  for out in outputs:
    by_doc.setdefault(out["doc_id"], {})[int(out["piece"])] = out
  joined = {}
  for doc_id, pieces in by_doc.items():
    n = next(iter(pieces.values()))["pieces"]
    if len(pieces) != n:
      continue
    ordered = [pieces[k] for k in range(n)]
    joined[doc_id] = {
        "text": "".join(p[output_field].strip() + p["separator"] for p in ordered),
        "original": "".join(p["original"] + p["separator"] for p in ordered),
        "pieces": n,
    }
  return joined
