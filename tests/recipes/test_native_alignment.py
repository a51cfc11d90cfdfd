"""Native alignment end to end on tiny models: every stage's counts, an aligned student that
transformers loads, exactly-once rewriting through a SIGKILL, reuse of finished rewriting stages,
and one-line errors for bad inputs."""

import collections
import json
import os
import subprocess
import sys

import ml_collections
import native_alignment_fixtures as fx
import pytest

from langshift import config_lib
from langshift.data import config as data_config_lib
from langshift.data import pipeline
from langshift.data.config import source_config
from langshift.recipes import native_alignment as na_lib
from langshift.recipes.native_alignment import recipe as na_recipe
from langshift.recipes.recipe import run_recipe

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)
from experiments import native_align_ar  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp("native_align")
  records = fx.write_corpus(root / "corpus.jsonl")
  heldout = fx.arabic_documents(6, seed=9)
  fx.data_fixtures.write_jsonl(root / "heldout.jsonl", [{"text": t} for t in heldout])
  model = fx.write_chat_model(root / "model")
  return dict(
      root=root,
      corpus=str(root / "corpus.jsonl"),
      heldout=str(root / "heldout.jsonl"),
      model=model,
      records=records,
  )


def _config(inputs, expert_url, variant="tiny", **overrides):
  config = native_align_ar.get_config(variant)
  config.init_from_hf = inputs["model"]
  na = config.native_align
  na.corpus.path = inputs["corpus"]
  na.worker_init = inputs["model"]
  na.expert.update(base_url=expert_url, model="fake-expert")
  config.evals.heldout.data.sources.ar.path = inputs["heldout"]
  config.lock()
  return config_lib.apply_overrides(config, overrides)


def _read(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _marker(workdir, stage):
  with open(os.path.join(workdir, "stages", f"{stage}.json")) as f:
    return json.load(f)["summary"]


def test_every_stage_runs_and_the_student_loads(inputs, tmp_path):
  work = str(tmp_path / "work")
  with fx.FakeExpert() as expert:
    result = run_recipe(na_lib.RECIPE, _config(inputs, expert.url), work, log=lambda _: None)
  assert result["status"] == "done"
  n = len(inputs["records"])
  dedup = _marker(work, "dedup")
  assert (dedup["documents"], dedup["exact_removed"], dedup["near_removed"]) == (n, 1, 1)
  kept = _read(os.path.join(work, "dedup", "corpus.jsonl"))
  assert {d["id"] for d in kept} == {r["id"] for r in inputs["records"]} - {"dup_exact", "dup_near"}
  seed = _marker(work, "seed")
  assert seed["documents"] == 6 and seed["rewritten"] == seed["pieces"] >= 6
  pairs = _read(os.path.join(work, "seed_pairs", "pairs.jsonl"))
  assert len(pairs) == _marker(work, "filter")["kept"] == seed["pieces"]
  assert "<document>" in pairs[0]["prompt"] and "الخادم" in "".join(p["response"] for p in pairs)
  assert os.path.exists(os.path.join(work, "worker_sft", "hf", "model.safetensors"))
  sft_rows = [
      r for r in _read(os.path.join(work, "worker_sft", "metrics.jsonl")) if "train/loss" in r
  ]
  assert sft_rows and all(r["train/tokens"] > 0 for r in sft_rows)  # rewrite tokens carry loss
  rewritten = _read(os.path.join(work, "corpus_rewrite", "corpus.jsonl"))
  assert sorted(d["id"] for d in rewritten) == sorted(d["id"] for d in kept)  # each doc once
  assert {d["rewriter"] for d in rewritten} == {"hf"}
  cpt = _marker(work, "cpt")
  assert cpt["step"] == 3 and "eval/perplexity_after" in cpt

  import torch
  import transformers

  model, info = transformers.AutoModelForCausalLM.from_pretrained(
      result["export"], output_loading_info=True, dtype=torch.float32
  )
  assert not info["missing_keys"] and not info["unexpected_keys"]
  # A rerun skips every stage.
  with fx.FakeExpert() as expert:
    again = run_recipe(na_lib.RECIPE, _config(inputs, expert.url), work, log=lambda _: None)
    assert expert.requests == 0
  assert all(s["skipped"] for s in again["stages"].values())
  # cpt is the experiment's own training run: its export dtype and evaluations are in its
  # fingerprint (both were left out, and a finished cpt/hf in another dtype was kept silently).
  for key, value, change in [
      ("checkpoint.export_dtype", "bfloat16", "'float32' -> 'bfloat16'"),
      ("evals.heldout.max_batches", 2, "1 -> 2"),
  ]:
    with pytest.raises(
        ValueError, match=rf"^stage cpt in .* was run with another config: {key}: {change};"
    ):
      changed = _config(inputs, "http://127.0.0.1:9/v1", **{key: value})
      run_recipe(na_lib.RECIPE, changed, work, log=lambda _: None)


def _cli(inputs, workdir, expert_url, *overrides, env=None):
  args = [
      sys.executable,
      "-m",
      "langshift.main",
      "--config=experiments/native_align_ar.py:tiny",
      f"--workdir={workdir}",
      f"--config.init_from_hf={inputs['model']}",
      f"--config.native_align.worker_init={inputs['model']}",
      f"--config.native_align.corpus.path={inputs['corpus']}",
      f"--config.native_align.expert.base_url={expert_url}",
      f"--config.evals.heldout.data.sources.ar.path={inputs['heldout']}",
      *overrides,
  ]
  return args, {**os.environ, **(env or {})}


def test_sigkill_during_the_corpus_rewrite_then_rerun_rewrites_each_piece_once(inputs, tmp_path):
  work = tmp_path / "work"
  with fx.FakeExpert() as expert:
    args, env = _cli(inputs, work, expert.url, env={"LANGSHIFT_FAULT": "kill@rewrite_records=12"})
    killed = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (work / "stages" / "rewrite.json").exists()
    # Killed after its third durable batch of 4: shard 0 (8 requests) complete, shard 1 half.
    assert len(_read_outputs(work / "corpus_rewrite" / "outputs")) == 8
    done_before = _read_outputs(work / "corpus_rewrite" / "outputs", include_incomplete=True)
    assert len(done_before) == 12
    args, env = _cli(inputs, work, expert.url, "--config.stop_after=rewrite")
    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
  assert "stage worker_sft: done before, skipped" in again.stdout
  assert "stopping here (config.stop_after='rewrite')" in again.stdout
  outputs = _read_outputs(work / "corpus_rewrite" / "outputs")
  requests = _read(work / "corpus_rewrite" / "requests.jsonl")
  assert sorted(o["id"] for o in outputs) == sorted(r["id"] for r in requests)  # once each
  first = {o["id"]: o["rewrite"] for o in done_before}
  assert all({o["id"]: o["rewrite"] for o in outputs}[i] == t for i, t in first.items())


def _read_outputs(directory, **kwargs):
  from langshift.generation.job import read_outputs

  return read_outputs(str(directory), **kwargs)


def test_two_processes_rewrite_disjoint_shares_exactly_once(inputs, tmp_path):
  import multiprocess_testing

  work = tmp_path / "work"
  with fx.FakeExpert() as expert:
    # One mesh over both processes for the two training stages (batches of 8 rows), one device
    # each: the rewrite runs on each process's own devices, and between simulated CPU devices of
    # one process a collective goes through gloo's TCP (16 ms against 0.8 ms in one process).
    args, _ = _cli(
        inputs,
        work,
        expert.url,
        "--config.mesh.num_devices=0",
        "--config.train.global_batch_size=8",
        "--config.native_align.worker_sft.train.global_batch_size=8",
        # What this test reads ends with the rewrite: both processes stop there together.
        "--config.stop_after=rewrite",
    )
    results = multiprocess_testing.run(args, devices_per_process=1, timeout=900)
  for rc, out, err in results:
    assert rc == 0, out[-2000:] + err[-4000:]
  assert "stopping here (config.stop_after='rewrite')" in results[0][1]
  assert not (work / "cpt").exists() and not (work / "stages" / "cpt.json").exists()
  result = json.loads((work / "result.json").read_text())  # process 0's, as data
  assert (result["status"], result["stopped_after"]) == ("stopped", "rewrite")
  assert "rewrite" in result["stages"] and "cpt" not in result["stages"]
  outputs = _read_outputs(work / "corpus_rewrite" / "outputs")
  requests = _read(work / "corpus_rewrite" / "requests.jsonl")
  assert sorted(o["id"] for o in outputs) == sorted(r["id"] for r in requests)
  shards = sorted(p.name for p in (work / "corpus_rewrite" / "outputs").glob("part-*.jsonl"))
  assert len(shards) >= 2  # shard k was written by process k % 2
  rewritten = _read(work / "corpus_rewrite" / "corpus.jsonl")
  assert len(rewritten) == _marker(work, "dedup")["kept"]


def test_reusing_the_rewriting_stages_runs_only_cpt_and_evaluation(inputs, tmp_path):
  first, second = str(tmp_path / "hybrid"), str(tmp_path / "rewritten_only")
  with fx.FakeExpert() as expert:
    run_recipe(na_lib.RECIPE, _config(inputs, expert.url), first, log=lambda _: None)
    # Stages reused from the upstream workdir count as finished for stop_after.
    stopped = run_recipe(
        na_lib.RECIPE,
        _config(
            inputs,
            expert.url,
            **{"native_align.upstream_workdir": first, "stop_after": "rewrite"},
        ),
        str(tmp_path / "stopped"),
        log=lambda _: None,
    )
    assert stopped["status"] == "stopped" and stopped["stages"]["rewrite"]["reused"]
    assert not (tmp_path / "stopped" / "cpt").exists()
    config = _config(
        inputs,
        expert.url,
        **{"native_align.upstream_workdir": first, "native_align.rewritten_fraction": 1.0},
    )
    result = run_recipe(na_lib.RECIPE, config, second, log=lambda _: None)
    assert expert.requests == _marker(first, "seed")["pieces"]  # the first run's only
  assert all(result["stages"][s].get("reused") for s in ("dedup", "seed", "filter", "rewrite"))
  assert sorted(os.listdir(os.path.join(second, "stages"))) == ["cpt.json", "evaluate.json"]
  with open(os.path.join(second, "cpt", "config.json")) as f:
    sources = json.load(f)["data"]["sources"]
  assert list(sources) == ["rewritten"]  # fraction 1: the original text is left out
  # Reuse with a setting the upstream stage was not run with is refused, naming the key.
  with fx.FakeExpert() as expert:
    changed = _config(
        inputs,
        expert.url,
        **{"native_align.upstream_workdir": first, "native_align.policy": "format_only"},
    )
    with pytest.raises(
        ValueError,
        match=r"stage seed in .* was run with another config: "
        r"native_align.policy: 'polish' -> 'format_only'",
    ):
      run_recipe(na_lib.RECIPE, changed, str(tmp_path / "third"), log=lambda _: None)


def test_bad_inputs_are_one_line_errors_and_keep_finished_work(inputs, tmp_path):
  # A malformed corpus line names the file and line.
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"id": "a", "text": "نص"}\n{"id": "b", "text": \n', encoding="utf-8")
  with pytest.raises(ValueError, match=rf"{bad}:2"):
    run_recipe(
        na_lib.RECIPE,
        _config(inputs, "http://127.0.0.1:9/v1", **{"native_align.corpus.path": str(bad)}),
        str(tmp_path / "w1"),
        log=lambda _: None,
    )
  # A worker without a chat template is refused before anything runs.
  plain = fx.data_fixtures.write_bpe_tokenizer(tmp_path / "plain", chat_template=None)
  with pytest.raises(ValueError, match=r"native_align\.worker_init=.*has no chat template"):
    run_recipe(
        na_lib.RECIPE,
        _config(inputs, "http://127.0.0.1:9/v1", **{"native_align.worker_init": plain}),
        str(tmp_path / "w2"),
        log=lambda _: None,
    )
  assert not (tmp_path / "w2").exists()
  # An expert that is down: the error names the endpoint; dedup stays done; the rerun continues.
  work = str(tmp_path / "w3")
  with pytest.raises(Exception, match=r"127\.0\.0\.1:9"):
    run_recipe(na_lib.RECIPE, _config(inputs, "http://127.0.0.1:9/v1"), work, log=lambda _: None)
  assert os.path.exists(os.path.join(work, "stages", "dedup.json"))
  with fx.FakeExpert() as expert:  # the endpoint is back: the rerun goes on from the seed stage
    lines = []
    result = run_recipe(na_lib.RECIPE, _config(inputs, expert.url), work, log=lines.append)
  assert result["status"] == "done" and "langshift: stage dedup: done before, skipped" in "\n".join(
      lines
  )
  with fx.FakeExpert() as expert:
    # The fake expert keeps the length (ratio ~1): a band above 1 drops every rewrite.
    config = _config(
        inputs,
        expert.url,
        **{
            "native_align.filter.rules": ("empty", "length_ratio"),
            "native_align.filter.min_ratio": 1.2,
            "native_align.filter.max_ratio": 2.0,
        },
    )
    with pytest.raises(ValueError, match=r"^stage filter: none of the 17 rewritten seed pieces "):
      run_recipe(na_lib.RECIPE, config, str(tmp_path / "w4"), log=lambda _: None)


def test_evaluate_stage_scores_benchmarks_and_judges_after_against_before(inputs, tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  aratrust = tmp_path / "AraTrust" / "Ethics" / "train-00000-of-00001.parquet"
  aratrust.parent.mkdir(parents=True)
  pq.write_table(
      pa.Table.from_pylist(
          [
              {
                  "Question": "هل يجوز الكذب؟",
                  "A": "أ) لا",
                  "B": "ب) نعم",
                  "C": "ج) أحياناً",
                  "Answer": "أ",
              },
              {
                  "Question": "ما التصرف الصحيح؟",
                  "A": "أ) أخذها",
                  "B": "ب) تركها",
                  "C": "ج) إعادتها",
                  "Answer": "ج",
              },
          ]
      ),
      aratrust,
  )
  prompts = fx.data_fixtures.write_jsonl(
      tmp_path / "beavertails.jsonl",
      [
          {"prompt": "كيف أحمي حاسوبي؟", "category": "none"},
          {"prompt": "اكتب قصة قصيرة.", "category": "none"},
      ],
  )
  # The published student is a base model, no chat template of its own: before and after CPT it
  # answers the safety prompts in the run's (data.chat_template, Llama-3's), which cpt/hf ships.
  base = fx.write_chat_model(tmp_path / "base", chat_template=None)
  work = str(tmp_path / "work")
  with fx.FakeExpert() as judge:
    config = _config(
        inputs,
        judge.url,
        **{
            "init_from_hf": base,
            "native_align.rewritten_fraction": 0.0,  # original only: no rewriting stages
            "native_align.evaluate.aratrust": str(tmp_path / "AraTrust"),
            "native_align.evaluate.num_fewshot": 0,
            "native_align.evaluate.safety_prompts": prompts,
            "native_align.evaluate.answer_max_new_tokens": 8,
            "native_align.evaluate.judge.base_url": judge.url,
        },
    )
    result = run_recipe(na_lib.RECIPE, config, work, log=lambda _: None)
    assert judge.requests == 2 * 2 * 2  # 2 prompts x 2 orders x 2 criteria
  assert sorted(os.listdir(os.path.join(work, "stages"))) == [
      "cpt.json",
      "dedup.json",
      "evaluate.json",
  ]
  from langshift.tokenization import chat_templates
  from langshift.tokenization.tokenizer import load_tokenizer

  assert config.data.chat_template == "llama3"
  exported = load_tokenizer(os.path.join(work, "cpt", "hf")).chat_template
  assert exported == chat_templates.BUILTIN_TEMPLATES["llama3"]
  metrics = result["stages"]["evaluate"]
  for tag in ("before", "after"):
    assert 0 <= metrics[f"{tag}/eval/aratrust/accuracy"] <= 1
  # The judge always picks the first answer: each pair is split between the orders, a tie.
  assert metrics["judge_harmless/score"] == metrics["judge_helpful/score"] == 50.0
  assert metrics["judge_harmless/tie_rate"] == 1.0 and metrics["judge_prompts"] == 2
  with open(os.path.join(work, "evaluate", "metrics.json")) as f:
    # The stage summary adds the runner's own figures (skipped, the stage's peak RSS).
    assert json.load(f) == {
        k: v for k, v in metrics.items() if k not in ("skipped", "peak_rss_gib")
    }


def _with_replay(config, path, weight):
  config = config_lib.apply_overrides(config, {})
  with config.unlocked():
    config.data.sources.replay = source_config(path=path, format="jsonl", weight=weight)
  return config


def test_replay_sources_join_the_students_mix_at_their_weights(inputs, tmp_path):
  replay = fx.data_fixtures.write_jsonl(
      tmp_path / "replay.jsonl", [{"text": f"replay text number {i}."} for i in range(8)]
  )
  work = str(tmp_path / "work")
  with fx.FakeExpert() as expert:
    config = _config(inputs, expert.url, **{"native_align.native_weight": 3.0, "stop_after": "cpt"})
    result = run_recipe(na_lib.RECIPE, _with_replay(config, replay, 1.0), work, log=lambda _: None)
  assert result["status"] == "stopped" and _marker(work, "cpt")["step"] == 3
  # The stream the student's CPT read, from the data config it ran with: original and rewritten
  # text at 3.0 * (1 - 0.5) each, the replay source at its own 1.0, normalised over 4.0.
  with open(os.path.join(work, "cpt", "config.json")) as f:
    data = ml_collections.ConfigDict(json.load(f)["data"])
  sources = data_config_lib.resolve_sources(data)
  assert {s.name: s.weight for s in sources} == {"original": 1.5, "rewritten": 1.5, "replay": 1.0}
  stream, _ = pipeline._weighted_records(data, sources, config.seed, 1 << 16)  # pylint: disable=protected-access
  n = 2 * data.mixture_block
  counts = collections.Counter()
  for k, _, record in (stream[i] for i in range(n)):
    counts[sources[k].name] += 1
    if sources[k].name == "replay":
      assert record["text"].startswith("replay text number ")
  assert counts == {"original": 0.375 * n, "rewritten": 0.375 * n, "replay": 0.25 * n}


def test_a_language_outside_the_tables_takes_its_name_and_norms_from_the_config(inputs, tmp_path):
  norms = "The readers are Greek speakers; speak of the Orthodox Church with respect."
  greek = {
      "native_align.language": "el",
      "native_align.language_name": "Greek",
      "native_align.cultural_norms": norms,
  }
  work = str(tmp_path / "work")
  with fx.FakeExpert() as expert:
    config = _config(inputs, expert.url, **greek, stop_after="seed")
    assert run_recipe(na_lib.RECIPE, config, work, log=lambda _: None)["status"] == "stopped"
    assert expert.bodies and len(expert.bodies) == _marker(work, "seed")["pieces"]
    for body in expert.bodies:
      system, user = body["messages"]
      assert system["content"].startswith("You are an editor preparing Greek text")
      assert "Respect the readers' cultural norms: " + norms in system["content"]
      assert user["content"].startswith("Rewrite this Greek document under the rules.")
    # The name is in the seed stage's fingerprint: changing it is the changed-config error.
    renamed = _config(inputs, expert.url, **{**greek, "native_align.language_name": "Hellenic"})
    with pytest.raises(
        ValueError,
        match=r"^stage seed in .* was run with another config: "
        r"native_align.language_name: 'Greek' -> 'Hellenic'",
    ):
      run_recipe(na_lib.RECIPE, renamed, work, log=lambda _: None)
  for stage in ("seed", "filter", "rewrite"):
    assert na_lib.RECIPE.stage_inputs(config, stage)["native_align.language_name"] == "Greek"
  assert na_lib.RECIPE.stage_inputs(config, "seed")["native_align.cultural_norms"] == norms


def test_replay_sources_and_the_language_are_checked_before_any_stage(inputs, tmp_path):
  config = _config(inputs, "http://127.0.0.1:9/v1")
  typo = str(tmp_path / "replay.jsnol")
  cases = [
      (
          _with_replay(config, typo, 1.0),
          rf"^config\.data\.sources\.replay\.path='{typo}' matches no files$",
      ),
      (
          _with_replay(config, inputs["heldout"], 0.0),
          r"^data\.sources\.replay\.weight=0\.0; weights must be positive$",
      ),
      (
          config_lib.apply_overrides(config, {"native_align.language": "el"}),
          r"^unknown language 'el' .*set native_align\.language_name",
      ),
  ]
  with config.unlocked():
    config.data.sources.original = source_config(path=inputs["heldout"])
  cases.append((config, r"^config\.data\.sources\.original: the name 'original' is the recipe's"))
  # The published setting has no replay source; one declared (`:replay=`) and left unfilled.
  assert not len(native_align_ar.get_config().data.sources)
  declared = _config(inputs, "http://127.0.0.1:9/v1", variant="tiny,replay=slimpajama+wiki")
  assert sorted(declared.data.sources) == ["slimpajama", "wiki"]
  cases.append((declared, r"^data\.sources\.slimpajama: path is empty$"))
  for i, (bad, match) in enumerate(cases):
    with pytest.raises(ValueError, match=match):
      run_recipe(na_lib.RECIPE, bad, str(tmp_path / f"w{i}"), log=lambda _: None)
    assert not (tmp_path / f"w{i}").exists()


def test_student_data_splits_the_native_weight_by_the_rewritten_fraction(inputs, tmp_path):
  config = _with_replay(_config(inputs, "http://127.0.0.1:9/v1"), inputs["heldout"], 0.5)
  for f, expected in [
      (0.25, {"original": 1.5, "rewritten": 0.5, "replay": 0.5}),
      (0.0, {"original": 2.0, "replay": 0.5}),
      (1.0, {"rewritten": 2.0, "replay": 0.5}),
  ]:
    cell = config_lib.apply_overrides(
        config, {"native_align.rewritten_fraction": f, "native_align.native_weight": 2.0}
    )
    data = na_recipe.student_data(cell, na_lib.RECIPE.paths(str(tmp_path)))
    assert {name: s.weight for name, s in data.sources.items()} == expected
  assert data.sources.replay.path == inputs["heldout"]
  cpt = na_lib.RECIPE.stage_inputs(config, "cpt")
  assert cpt["data.sources.replay.weight"] == 0.5 and cpt["native_align.native_weight"] == 1.0
