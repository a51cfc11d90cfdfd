"""The recipes' pairwise evaluation: the tuned model against the untuned one, judged both orders.

InsCP (the adapted chat model against the instruct model it started from), non-instructional
fine-tuning (the tuned student against the untuned one) and the like all do the same thing:
both checkpoints answer the same prompts in the run's chat template (`roles.student_role`, so a
base checkpoint with no template of its own can answer), a judge role (a local model or an
OpenAI-compatible server) compares each pair in both orders (`langshift.evaluation.judge`), and
the verdicts give a preference score where 50 is parity — a pairwise preference, not comparable
with MT-Bench's 1-10 grades. Unparsed verdicts are counted, never scored. What was judged is
written next to the metrics, for reading the verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langshift.data.pipeline import derived_seed
from langshift.jsonl import write_jsonl
from langshift.recipes import roles


def make_judge(config, role):
  """The `JudgeFn` of a judge role, with that role's generation options."""
  from langshift.evaluation import judge as judge_lib  # pylint: disable=import-outside-toplevel

  return judge_lib.llm_judge(
      roles.make_generator(role), roles.generation_options(role, derived_seed(config.seed, "judge"))
  )


def student_answers(
    config, model_dir: str, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int
) -> list[str]:
  """Greedy answers of a checkpoint of the run's student to single-turn prompts, in the run's
  chat template, on the experiment's mesh devices."""
  role = roles.student_role(
      config, model_dir, max_new_tokens=max_new_tokens, batch_size=batch_size, dtype="float32"
  )
  generator = roles.make_generator(
      role, rules=config.logical_rules, num_devices=config.mesh.num_devices
  )
  return generator.chat(
      [[{"role": "user", "content": p}] for p in prompts],
      roles.generation_options(role, derived_seed(config.seed, "judge_answers")),
  )


def judge_tuned_against_untuned(
    config,
    judge_role,
    prompts: Sequence[str],
    *,
    tuned: str,
    untuned: str,
    answer_max_new_tokens: int,
    batch_size: int,
    out_path: str,
    prefix: str = "judge",
    languages: Sequence[str] | None = None,
) -> dict[str, Any]:
  """The tuned checkpoint (A) against the untuned one (B) on `prompts`. Metrics
  `<prefix>/score` (100 x the mean pair score over the judged pairs; > 50 favours the tuned
  model), its win/tie/loss rates, `<prefix>/judged_pairs` and `<prefix>/unparsed_verdicts`;
  with `languages` (one per prompt) the same per language under `<prefix>/<language>/` and
  `<prefix>/prompts`. `out_path` gets one record per prompt: the prompt, its language, both
  answers and the pair's score (None: left out, a verdict could not be parsed)."""
  from langshift.evaluation.judge import judge_pairs  # pylint: disable=import-outside-toplevel

  answers = {
      tag: student_answers(
          config,
          model_dir,
          prompts,
          max_new_tokens=answer_max_new_tokens,
          batch_size=batch_size,
      )
      for tag, model_dir in (("after", tuned), ("before", untuned))
  }
  judge = make_judge(config, judge_role)
  scores: list[float | None] = [None] * len(prompts)
  if languages is None:
    groups = {"": list(range(len(prompts)))}
    metrics: dict[str, Any] = {}
  else:
    groups = {
        lang: [i for i, x in enumerate(languages) if x == lang] for lang in sorted(set(languages))
    }
    metrics = {f"{prefix}/prompts": len(prompts)}
  for lang, mine in groups.items():
    result = judge_pairs(
        judge,
        [prompts[i] for i in mine],
        [answers["after"][i] for i in mine],
        [answers["before"][i] for i in mine],
    )
    metrics.update(result.metrics(f"{prefix}/{lang}" if lang else prefix))
    for i, score in zip(mine, result.scores):
      scores[i] = score
  write_jsonl(
      out_path,
      (
          dict(
              prompt=p,
              language=languages[i] if languages is not None else "",
              after=answers["after"][i],
              before=answers["before"][i],
              score=scores[i],
          )
          for i, p in enumerate(prompts)
      ),
  )
  return metrics
