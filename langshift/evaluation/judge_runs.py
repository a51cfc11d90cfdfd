"""What the MT-Bench and Arena-Hard protocols share: answering multi-turn questions with a
generator, running a judge in batches (and stopping at once when it cannot be parsed), the judge
and answering model as roles, and writing results next to metrics already there.

A judge is a role (`langshift.recipes.roles`): a local Hugging Face checkpoint or a model behind an
OpenAI-compatible server, seen as one `TextGenerator`. Its judgments are greedy (temperature 0, as
FastChat and Arena-Hard-Auto run their judges).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from langshift.evaluation.judge_files import Question
from langshift.generation.interface import GenerationOptions, Message, TextGenerator


class JudgeError(RuntimeError):
  """The judge cannot be used (e.g. it returns nothing parseable); the message is one line that
  names the judge."""


def one_line(text: str, limit: int = 160) -> str:
  text = " ".join(text.split())
  return text if len(text) <= limit else text[: limit - 3] + "..."


def run_judge(
    judge: TextGenerator,
    conversations: Sequence[Sequence[Message]],
    options: GenerationOptions,
    parse: Callable[[str], Any],
    *,
    judge_name: str,
    expected: str,
    batch_size: int,
) -> tuple[list[str], list[Any]]:
  """The judge's answers and their parses (None: unparsed), in batches of `batch_size`.

  A judge none of whose answers in the first batch parse is an error naming it (a judge that never
  answers in the protocol's format would otherwise cost the whole run and score nothing); later
  unparsed answers are only counted."""
  texts: list[str] = []
  parsed: list[Any] = []
  for start in range(0, len(conversations), batch_size):
    batch = list(judge.chat(conversations[start : start + batch_size], options))
    if len(batch) != len(conversations[start : start + batch_size]):
      raise JudgeError(
          f"judge {judge_name}: returned {len(batch)} answers for {batch_size} requests"
      )
    texts += batch
    parsed += [parse(t) for t in batch]
    if start == 0 and all(p is None for p in parsed):
      raise JudgeError(
          f"judge {judge_name}: none of its first {len(batch)} judgments holds a parseable "
          f"{expected} (first answer: {one_line(batch[0])!r})"
      )
  return texts, parsed


def answer_questions(
    generator: TextGenerator,
    questions: Sequence[Question],
    options_for: Callable[[Question], GenerationOptions],
) -> list[tuple[str, ...]]:
  """Every question's turns answered in one conversation: turn k is asked after the model's own
  answers to turns 1..k-1 (FastChat's `gen_model_answer`). Requests with the same decoding
  options go to the generator together, one turn at a time."""
  history: list[list[Message]] = [[] for _ in questions]
  answers: list[list[str]] = [[] for _ in questions]
  for turn in range(max(len(q.turns) for q in questions)):
    groups: dict[GenerationOptions, list[int]] = {}
    for i, q in enumerate(questions):
      if turn < len(q.turns):
        history[i].append({"role": "user", "content": q.turns[turn]})
        groups.setdefault(options_for(q), []).append(i)
    for options, idx in groups.items():
      outputs = generator.chat([history[i] for i in idx], options)
      for i, text in zip(idx, outputs):
        text = text.strip()
        answers[i].append(text)
        history[i].append({"role": "assistant", "content": text})
  return [tuple(a) for a in answers]


def write_answers(path: str, questions: Sequence[Question], answers, model_id: str) -> None:
  """Answers in FastChat's model-answer layout (readable by `judge_files.read_answers`)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for q, turns in zip(questions, answers):
      record = {
          "question_id": q.id,
          "model_id": model_id,
          "choices": [{"index": 0, "turns": list(turns)}],
      }
      f.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_jsonl(path: str, records: Sequence[dict]) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)


def merge_metrics(path: str, metrics: dict[str, Any]) -> dict[str, Any]:
  """Adds `metrics` to the JSON object at `path` (other keys kept), written atomically."""
  merged: dict[str, Any] = {}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      merged = json.load(f)
  merged.update(metrics)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(merged, f, indent=1, sort_keys=True)
  os.replace(tmp, path)
  return merged


# --- The judge and the answering model as roles, from command-line flags. ---


def add_role_args(parser: argparse.ArgumentParser, prefix: str, what: str, max_new_tokens: int):
  g = parser.add_argument_group(f"{prefix}: {what}")
  g.add_argument(f"--{prefix}_backend", choices=("local", "openai"), default="openai")
  g.add_argument(f"--{prefix}_hf_dir", default="", help="local: Hugging Face model directory")
  g.add_argument(f"--{prefix}_base_url", default="", help="openai: the server, e.g. …/v1")
  g.add_argument(f"--{prefix}_model", default="", help="openai: the model name on the server")
  g.add_argument(f"--{prefix}_api_key_env", default="", help="openai: variable with the API key")
  g.add_argument(f"--{prefix}_max_new_tokens", type=int, default=max_new_tokens)
  g.add_argument(f"--{prefix}_batch_size", type=int, default=8)
  g.add_argument(f"--{prefix}_chat_template", default="", help="local: template override")


def role_from_args(args: argparse.Namespace, prefix: str):
  """The role the `--<prefix>_*` flags describe, checked (one-line errors naming the flag)."""
  from langshift.recipes import roles  # pylint: disable=import-outside-toplevel

  fields = ("backend", "hf_dir", "base_url", "model", "api_key_env", "max_new_tokens")
  fields += ("batch_size", "chat_template")
  role = roles.role_config(**{f: getattr(args, f"{prefix}_{f}") for f in fields})
  roles.check_role(role, f"--{prefix}")
  return role


def generator_from_role(role) -> tuple[TextGenerator, str]:
  from langshift.recipes import roles  # pylint: disable=import-outside-toplevel

  return roles.make_generator(role), roles.role_name(role)


def run_cli(
    prog: str, args: argparse.Namespace, read: Callable[[], Any], run: Callable[..., dict], **kw
) -> int:
  """The command line of a judge protocol (`mt_bench`, `arena_hard`): `read()` the files, build
  the judge role (and the answering model's when the files hold no answers), `run` it, print the
  metrics; a bad file, role or judge ends in one line on stderr and exit status 1."""
  try:
    inputs = read()
    judge_role = role_from_args(args, "judge")
    model, model_name = None, "model"
    if inputs.answers is None:
      model, model_name = generator_from_role(role_from_args(args, "model"))
    judge, judge_name = generator_from_role(judge_role)
    metrics = run(
        inputs,
        judge=judge,
        judge_name=judge_name,
        model=model,
        model_name=model_name,
        output_dir=args.output_dir,
        answer_max_new_tokens=args.model_max_new_tokens,
        judge_max_new_tokens=args.judge_max_new_tokens,
        judge_batch_size=args.judge_batch_size,
        **kw,
    )
  except (ValueError, FileNotFoundError, JudgeError) as e:
    print(f"{prog}: {e}", file=sys.stderr)
    return 1
  for name in sorted(metrics):
    print(f"{name}\t{metrics[name]:.4f}")
  return 0
