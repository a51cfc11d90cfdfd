"""The local inputs of a rehearsal, in each recipe's input layout: tiny models of the published
models' kinds, corpora, prompt files and a parallel set, and the endpoints of its server roles.

The papers' benchmarks get local stand-ins too: an `lm_eval_tasks` evaluation's `include_path`
is a folder of tiny task YAMLs named as its published tasks (`lm_eval_standins.py`), MT-Bench's
and Arena-Hard's sections get files in FastChat's and Arena-Hard-Auto's layouts
(`judge_files.py`) and the fake server as their judge.

`write_inputs(config, root, server_url)` writes them under `root` and returns what it filled:
`paths` (config key -> file or directory) and `endpoints` (a server role's `base_url` and served
`model`), and which of those keys a user of the published setting must give (`required`; the
rest are evaluation inputs the published setting leaves empty because their data is not public
or not local, e.g. the safety prompts of native alignment's judge).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from langshift import config_lib, jsonl
from langshift.data import parallel_sets
from langshift.rehearsal import darumeru_files, judge_files, lm_eval_standins, texts
from langshift.rehearsal.models import write_tiny_model

SERVED_MODEL = "rehearsal"
DOCUMENTS = 24  # per corpus; the experiments' REHEARSAL_SIZES cap what their stages read


@dataclasses.dataclass
class Filled:
  paths: dict[str, str] = dataclasses.field(default_factory=dict)
  endpoints: dict[str, str] = dataclasses.field(default_factory=dict)
  required: list[str] = dataclasses.field(default_factory=list)

  def path(self, key: str, value: str, *, required: bool = True) -> None:
    self.paths[key] = value
    if required:
      self.required.append(key)

  def endpoint(self, role: str, url: str, *, required: bool = True) -> None:
    self.endpoints[f"{role}.base_url"] = url
    self.endpoints[f"{role}.model"] = SERVED_MODEL
    if required:
      self.required.append(f"{role}.base_url")

  @property
  def overrides(self) -> dict[str, str]:
    return {**self.paths, **self.endpoints}


def write_jsonl(path: str, records) -> str:
  jsonl.write_jsonl(path, records)
  return path


def _language(source_name: str) -> str:
  """A data source's language from its name (`data.sources.zh` of InsCP is zh-TW text)."""
  return {"zh": "zh-TW"}.get(source_name, source_name if source_name in texts.SENTENCES else "en")


def _corpus(path: str, language: str, seed: int = 0, n: int = DOCUMENTS) -> str:
  docs = texts.documents(language, n, seed=seed)
  # "prompt"/"response" too: a qa_split source reads each as its own sample.
  return write_jsonl(
      path,
      [
          {"id": f"d{i:03d}", "text": d, "prompt": d.split("\n\n")[0], "response": d}
          for i, d in enumerate(docs)
      ],
  )


def _prompts(path: str, languages) -> str:
  rows = []
  for lang in languages:
    for i, sentence in enumerate(texts.SENTENCES[lang]):
      rows.append({"prompt": sentence, "language": lang, "reference": texts.SENTENCES[lang][i - 1]})
  return write_jsonl(path, rows)


def _engine_data(config, root: str, filled: Filled) -> None:
  """Every data source of the engine and of its evaluations, and response-eval prompt files."""
  flat = config_lib.flatten(config)
  for key in sorted(flat):
    parts = key.split(".")
    if key.startswith("data.sources.") and parts[-1] == "path" and len(parts) == 4:
      lang = _language(parts[2])
      filled.path(key, _corpus(os.path.join(root, "corpora", f"train-{parts[2]}.jsonl"), lang))
    elif key.startswith("evals.") and ".data.sources." in key and parts[-1] == "path":
      lang = _language(parts[-2])
      path = os.path.join(root, "corpora", f"heldout-{parts[1]}-{parts[-2]}.jsonl")
      filled.path(key, _corpus(path, lang, seed=1, n=8))
    elif key.startswith("evals.") and len(parts) == 3 and parts[-1] == "include_path":
      # The lm-eval tasks the setting names, as local stand-ins of the same names (not a
      # required input: lm-eval fetches the published tasks' data itself).
      path = os.path.join(root, "lm_eval", parts[1])
      tasks = config.evals[parts[1]].tasks
      filled.path(key, lm_eval_standins.write_task_standins(path, tasks), required=False)
    elif key.startswith("evals.") and len(parts) == 3 and parts[-1] == "prompts":
      if config.recipe == "pinch":  # the recipe fills it with its held-out prompts
        continue
      langs = sorted({_language(k.split(".")[2]) for k in flat if k.startswith("data.sources.")})
      path = os.path.join(root, "prompts", f"{parts[1]}.jsonl")
      filled.path(key, _prompts(path, langs + ["en"]))


def _model(root: str, name: str, family: str, *, chat: bool, seed: int = 0) -> str:
  return write_tiny_model(family, os.path.join(root, "models", name), chat=chat, seed=seed)


def _cpt(config, root, url, filled):
  del url
  filled.path("init_from_hf", _model(root, "smollm2-instruct", "smollm2", chat=True))


def _inscp(config, root, url, filled):
  filled.path("inscp.instruct", _model(root, "llama3-instruct", "llama3", chat=True))
  # The paper's evaluation: TMMLU+ before/after (its published CSV layout, one subject) and
  # MT-Bench-style questions answered before/after and judged pairwise.
  tmmluplus = os.path.join(root, "tmmluplus")
  os.makedirs(tmmluplus, exist_ok=True)
  sentences = texts.SENTENCES["zh-TW"]
  rows = "question,A,B,C,D,answer\n" + "".join(
      f"{s},{sentences[0]},{sentences[1]},{sentences[2]},{s},{'ABCD'[i % 4]}\n"
      for i, s in enumerate(sentences)
  )
  for split in ("test", "dev"):
    with open(os.path.join(tmmluplus, f"geography_{split}.csv"), "w", encoding="utf-8") as f:
      f.write(rows)
  filled.path("inscp.tmmluplus.data_dir", tmmluplus, required=False)
  judge = os.path.join(root, "prompts", "judge.jsonl")
  filled.path("inscp.judge.prompts", _prompts(judge, ["zh-TW", "en"]), required=False)
  filled.endpoint("inscp.judge.role", url, required=False)
  _judged_benchmarks(config.inscp, "inscp", root, url, filled)


def _judged_benchmarks(section, where: str, root: str, url: str, filled: Filled) -> None:
  """MT-Bench's and Arena-Hard's files (FastChat's and Arena-Hard-Auto's layouts) and their
  judges, for the benchmarks the section has: evaluation inputs a user gives."""
  if "mt_bench" in section:
    for field, path in judge_files.write_mt_bench_files(os.path.join(root, "fastchat")).items():
      filled.path(f"{where}.mt_bench.{field}", path, required=False)
    filled.endpoint(f"{where}.mt_bench.judge", url, required=False)
  if "arena_hard" in section:
    for field, path in judge_files.write_arena_hard_files(os.path.join(root, "arena")).items():
      filled.path(f"{where}.arena_hard.{field}", path, required=False)
    filled.endpoint(f"{where}.arena_hard.judge", url, required=False)


def _lep(config, root, url, filled):
  from langshift.recipes.lep import evaluation  # pylint: disable=import-outside-toplevel

  del url
  filled.path("lep.base", _model(root, "llama3-base", "llama3", chat=False))
  filled.path("lep.instruct", _model(root, "llama3-instruct", "llama3", chat=True, seed=1))
  if config.lep.calibration.enabled:
    path = os.path.join(root, "prompts", "calibration.jsonl")
    filled.path("lep.calibration.prompts", _prompts(path, ["ru"]))
  if evaluation.reads_user_files(config.lep.evaluate):
    darumeru = darumeru_files.write_darumeru_files(os.path.join(root, "darumeru"))
    filled.path("lep.evaluate.data_dir", darumeru)


def _native_align(config, root, url, filled):
  del config
  filled.path("init_from_hf", _model(root, "llama3-base", "llama3", chat=False))
  filled.path("native_align.worker_init", _model(root, "qwen2-chat", "qwen2", chat=True))
  corpus = os.path.join(root, "corpora", "ar.jsonl")
  filled.path("native_align.corpus.path", _corpus(corpus, "ar", n=DOCUMENTS))
  filled.endpoint("native_align.expert", url)
  # The paper's harmlessness/helpfulness judgement: BeaverTails-style prompts (not local).
  safety = os.path.join(root, "prompts", "safety.jsonl")
  rows = [
      {"prompt": s, "category": "privacy_violation", "is_safe": False}
      for s in texts.SENTENCES["ar"]
  ]
  filled.path("native_align.evaluate.safety_prompts", write_jsonl(safety, rows), required=False)
  filled.endpoint("native_align.evaluate.judge", url, required=False)


def _noninstruct(config, root, url, filled):
  filled.path("init_from_hf", _model(root, "mistral-base", "mistral", chat=False))
  filled.path("noninstruct.corpus.path", _corpus(os.path.join(root, "corpora", "en.jsonl"), "en"))
  if config.noninstruct.mode == "continuation":
    filled.endpoint("noninstruct.teacher", url)
  heldout = os.path.join(root, "corpora", "en-heldout.jsonl")
  filled.path("noninstruct.heldout.path", _corpus(heldout, "en", seed=1, n=8), required=False)
  judge = os.path.join(root, "prompts", "judge.jsonl")
  filled.path("noninstruct.evaluate.judge_prompts", _prompts(judge, ["en"]), required=False)
  filled.endpoint("noninstruct.evaluate.judge", url, required=False)
  _judged_benchmarks(config.noninstruct.evaluate, "noninstruct.evaluate", root, url, filled)


def _pinch(config, root, url, filled):
  del url
  filled.path("init_from_hf", _model(root, "llama3-base", "llama3", chat=False))
  p = config.pinch
  languages = sorted({p.english, *p.languages, *p.study_languages})
  splits = {}
  for split, n, seed in (("train", p.budget, 0), ("heldout", 4, 1)):
    splits[split] = {}
    for lang in languages:
      docs = texts.documents(lang, n, seed=seed, paragraphs=1)
      splits[split][lang] = [
          {"id": f"{split}-{i:03d}", "messages": parallel_sets.pair_messages(d.split(". ")[0], d)}
          for i, d in enumerate(docs)
      ]
  root_set = os.path.join(root, "parallel_set")
  parallel_sets.write_parallel_set(root_set, splits, source="rehearsal")
  filled.path("pinch.parallel_set", root_set)


RECIPES: dict[str, Callable] = {
    "cpt": _cpt,
    "inscp": _inscp,
    "lep": _lep,
    "native_align": _native_align,
    "noninstruct": _noninstruct,
    "pinch": _pinch,
}


def write_inputs(config, root: str, server_url: str) -> Filled:
  """Writes the rehearsal's inputs for `config` (the published setting at the rehearsal's sizes)
  under `root`."""
  if config.recipe not in RECIPES:
    raise ValueError(f"config.recipe={config.recipe!r}: no rehearsal inputs for it")
  filled = Filled()
  RECIPES[config.recipe](config, root, server_url, filled)
  _engine_data(config, root, filled)
  return filled
