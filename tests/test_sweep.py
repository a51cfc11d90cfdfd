"""The sweep runner (langshift/sweep.py): a real 3-cell sweep killed in the middle and rerun, the
done/resume bookkeeping, bad input, and the results table and plots (langshift/sweep_results.py).
"""

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

from langshift import sweep as sweep_lib
from langshift import sweep_results

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TINY_LM = os.path.join(REPO, "colabs", "tiny_lm.py")
needs_inputs = pytest.mark.skipif(
    not os.path.exists(os.path.join(REPO, ".cache", "smollm2-135m-instruct", "tokenizer.json"))
    or not os.path.exists(os.path.join(REPO, ".cache", "corpora", "debian_handbook", "ru-RU")),
    reason="launch/setup_env.sh prepares SmolLM2's tokenizer and the handbook text",
)


def _experiment(tmp_path, sweep_body, name="exp.py"):
  """An experiment file: colabs/tiny_lm.py's config with a sweep() of our own."""
  path = tmp_path / name
  path.write_text(textwrap.dedent(f"""\
        import importlib.util

        _spec = importlib.util.spec_from_file_location("tiny_lm", {TINY_LM!r})
        _tiny = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_tiny)
        ARGS = _tiny.ARGS
        get_config = _tiny.get_config


        def sweep():
          return {sweep_body}
        """))
  return str(path)


def _sweep_cli(*args, env=None):
  env = dict(os.environ, **(env or {}))
  # Tiny models on a CPU spend their time compiling: quick compiles over fast code.
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
  return subprocess.run(
      [sys.executable, "-m", "langshift.sweep", *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=600,
      env=env,
  )


def _metrics_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@needs_inputs
def test_a_killed_sweep_rerun_ends_with_every_cell_done_once(tmp_path):
  # Seeds, not learning rates: the cells then compile identical programs, which the sweep's
  # shared XLA cache turns into seconds per cell after the first.
  exp = _experiment(tmp_path, '[{"seed": s} for s in (0, 1, 2)]')
  root = tmp_path / "root"
  args = [f"--config={exp}:steps=4", f"--root={root}", "--config.evals.heldout.max_batches=1"]

  first = _sweep_cli(*args, "--cells=0")
  assert first.returncode == 0, first.stdout + first.stderr
  cells = ["seed=0", "seed=1", "seed=2"]
  assert "[1/1] seed=0: done in" in first.stdout

  # The machine dies during cell 1: its run is killed at step 3 (after the checkpoint of step 2).
  killed = _sweep_cli(*args, env={"LANGSHIFT_FAULT": "kill@step=3"})
  assert killed.returncode == 1, killed.stdout + killed.stderr
  assert "[1/3] seed=0: done before, skipped" in killed.stdout
  assert "[2/3] seed=1: interrupted (exit -9)" in killed.stdout
  assert "seed=2" not in killed.stdout  # the sweep stopped there
  assert not (root / "seed=2").exists()
  assert max(r["step"] for r in _metrics_rows(root / "seed=1")) == 2

  again = _sweep_cli(*args)
  assert again.returncode == 0, again.stdout + again.stderr
  assert "[1/3] seed=0: done before, skipped" in again.stdout
  assert "[2/3] seed=1: running (resuming)" in again.stdout
  assert "[3/3] seed=2: done in" in again.stdout
  assert "from checkpoint step 2" in (root / "seed=1" / "sweep.log").read_text()

  outcomes = {}
  for cell in cells:
    state = json.loads((root / cell / "sweep_cell.json").read_text())
    assert state["done"], cell
    outcomes[cell] = [a["outcome"] for a in state["attempts"]]
    steps = [r["step"] for r in _metrics_rows(root / cell) if "train/loss" in r]
    assert sorted(set(steps)) == [1, 2, 3, 4], (cell, steps)
  assert outcomes == {"seed=0": ["done"], "seed=1": ["interrupted", "done"], "seed=2": ["done"]}
  # Cells that finished ran once: each of their steps was logged once.
  for cell in ("seed=0", "seed=2"):
    steps = [r["step"] for r in _metrics_rows(root / cell) if "train/loss" in r]
    assert steps == [1, 2, 3, 4], (cell, steps)

  with open(root / "results.csv") as f:
    table = {row["cell"]: row for row in csv.DictReader(f)}
  assert list(table) == cells
  for cell in cells:
    rows = _metrics_rows(root / cell)
    final_loss = [r["train/loss"] for r in rows if r.get("step") == 4 and "train/loss" in r][-1]
    final_ppl = [r["eval/perplexity"] for r in rows if "eval/perplexity" in r][-1]
    assert table[cell]["status"] == "done"
    assert table[cell]["seed"] == cell.split("=")[1]
    assert float(table[cell]["train/loss"]) == final_loss
    assert float(table[cell]["eval/perplexity"]) == final_ppl
  assert len({table[c]["train/loss"] for c in cells}) == 3  # each cell's own numbers
  md = (root / "results.md").read_text()
  assert md.count("| seed=") == 3 and "eval/perplexity" in md
  assert (root / "plots" / "eval_perplexity-vs-seed.png").read_bytes()[:4] == b"\x89PNG"


def _fake_python(tmp_path, script):
  """An executable standing in for `python -m langshift.main`: sees the same arguments."""
  path = tmp_path / "fake_python"
  path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(script))
  path.chmod(0o755)
  return str(path)


def test_a_cell_is_done_only_when_its_result_says_done(tmp_path):
  exp = _experiment(tmp_path, '[{"optimizer.learning_rate": 0.01}]')
  sweep = sweep_lib.Sweep.load(exp, str(tmp_path / "root"), ["--config.train.steps=5"])
  (cell,) = sweep.cells
  assert cell.name == "optimizer.learning_rate=0.01"
  calls = tmp_path / "calls"
  # Each call logs its arguments; what it does next is read from $OUTCOME. Its log lines say the
  # opposite of what happened: the sweep reads the exit code and result.json, never the log.
  sweep.python = _fake_python(
      tmp_path,
      f"""\
      echo "$@" >> {calls}
      workdir=$(printf '%s\\n' "$@" | sed -n 's/^--workdir=//p')
      result() {{ echo "{{\\"status\\": \\"$1\\"}}" > "$workdir/result.json"; }}
      case "$(cat {tmp_path}/outcome)" in
        fail) echo "ValueError: data.sources.ru.path: no file"; result failed; exit 1 ;;
        preempted) echo "langshift: done at step 3 (completed)"; result preempted; exit 75 ;;
        stopped) echo "langshift: done"; result stopped; exit 0 ;;
        silent) echo "langshift: done at step 5 (completed)"; exit 0 ;;
        ok) echo "langshift: preempted at step 3; checkpoint saved"; result done
            echo '{{"step": 5, "train/loss": 2.5}}' > "$workdir/metrics.jsonl"; exit 0 ;;
      esac
      """,
  )
  lines = []
  for outcome in ("fail", "preempted", "stopped", "silent", "preempted", "ok", "ok"):
    (tmp_path / "outcome").write_text(outcome)
    sweep.run(log=lines.append)
  assert sweep.state(cell)["done"]
  assert [a["outcome"] for a in sweep.state(cell)["attempts"]] == [
      "failed",
      "interrupted",
      "stopped",
      "failed",  # exit 0 without a result.json: not done
      "interrupted",  # the stopped and the silent attempts' result.json no longer count
      "done",
  ]
  assert [a["exit_code"] for a in sweep.state(cell)["attempts"]] == [1, 75, 0, 0, 75, 0]
  assert len(calls.read_text().splitlines()) == 6  # the last run skipped the finished cell
  assert calls.read_text().splitlines()[0] == (
      f"-m langshift.main --config={exp} --workdir={tmp_path}/root/optimizer.learning_rate=0.01 "
      "--config.optimizer.learning_rate=0.01 --config.train.steps=5"
  )
  assert any("failed (exit 1)" in line and "no file" in line for line in lines)
  assert any("interrupted (exit 75)" in line for line in lines)
  assert any("stopped (exit 0)" in line for line in lines)
  assert "[1/1] optimizer.learning_rate=0.01: done in" in "\n".join(lines)
  assert "train/loss 2.5" in "\n".join(lines)
  assert lines[-2] == "[1/1] optimizer.learning_rate=0.01: done before, skipped"


@pytest.mark.parametrize(
    "code, result, outcome",
    [
        (0, {"status": "done"}, "done"),
        (0, {"status": "stopped"}, "stopped"),
        (75, {"status": "preempted"}, "interrupted"),
        (75, None, "interrupted"),
        (0, {"status": "preempted"}, "interrupted"),
        (-9, None, "interrupted"),
        (0, None, "failed"),
        (1, {"status": "failed"}, "failed"),
        (1, {"status": "done"}, "failed"),
    ],
)
def test_cell_outcome_from_exit_code_and_result(code, result, outcome):
  assert sweep_lib.cell_outcome(code, result) == outcome


def test_unknown_key_is_refused_before_anything_runs(tmp_path):
  exp = _experiment(tmp_path, '[{"seed": 1}, {"optimizer.learnig_rate": 0.1}]')
  root = tmp_path / "root"
  result = _sweep_cli(f"--config={exp}", f"--root={root}")
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"sweep: {exp} sweep() entry 1 (optimizer.learnig_rate=0.1): unknown config key "
      "'optimizer.learnig_rate' (the config has no 'optimizer.learnig_rate')"
  ]
  assert not root.exists()
  with pytest.raises(sweep_lib.SweepError, match="sweep flag: unknown config key 'trian.steps'"):
    sweep_lib.Sweep.load(_experiment(tmp_path, "[{}]"), str(root), ["--config.trian.steps=3"])


def test_a_root_of_another_experiment_is_refused(tmp_path):
  root = tmp_path / "root"
  first = sweep_lib.Sweep.load(_experiment(tmp_path, '[{"seed": 1}]', "a.py"), str(root))
  first.write_manifest()
  other = _experiment(tmp_path, '[{"seed": 1}]', "b.py")
  with pytest.raises(sweep_lib.SweepError) as e:
    sweep_lib.Sweep.load(other, str(root))
  assert str(e.value).startswith(f"{root} holds cells of '{tmp_path}/a.py', not '{other}'")
  with pytest.raises(sweep_lib.SweepError, match="holds a sweep run with flags"):
    sweep_lib.Sweep.load(str(tmp_path / "a.py"), str(root), ["--config.train.steps=3"])
  with pytest.raises(sweep_lib.SweepError, match="sweep flag --config.seed=3: .* sweeps that key"):
    sweep_lib.Sweep.load(str(tmp_path / "a.py"), str(root), ["--config.seed=3"])
  sweep_lib.Sweep.load(str(tmp_path / "a.py"), str(root))  # the same sweep resumes
  run_dir = tmp_path / "a_run"
  run_dir.mkdir()
  (run_dir / "metrics.jsonl").write_text("")
  with pytest.raises(sweep_lib.SweepError, match=f"{run_dir} holds 'metrics.jsonl' and no sweep"):
    sweep_lib.Sweep.load(str(tmp_path / "a.py"), str(run_dir))


def test_print_commands_names_cells_from_their_overrides(tmp_path):
  exp = _experiment(
      tmp_path,
      '[{"optimizer.learning_rate": 1e-05, "train.trainable": "embeddings"},'
      ' {"optimizer.learning_rate": 0.001, "data.packing": "boundary", "optimizer.b1": 0.8}]',
  )
  root = tmp_path / "root"
  result = _sweep_cli(
      f"--config={exp}:steps=3",
      f"--root={root}",
      "--print_commands",
      "--cells=1",
      "--config.train.log_every",
      "2",
  )
  assert result.returncode == 0, result.stderr
  name = "optimizer.learning_rate=0.001,data.packing=boundary,optimizer.b1=0.8"
  assert result.stdout.splitlines() == [
      f"python -m langshift.main --config={exp}:steps=3 --workdir={root}/{name} "
      "--config.optimizer.learning_rate=0.001 --config.data.packing=boundary "
      "--config.optimizer.b1=0.8 --config.train.log_every=2"
  ]
  assert not root.exists()  # printing writes nothing

  # The cell ran elsewhere from that command; --norun collects what it wrote.
  (root / name).mkdir(parents=True)
  (root / name / "metrics.jsonl").write_text('{"step": 3, "train/loss": 4.5}\n')
  result = _sweep_cli(
      f"--config={exp}:steps=3", f"--root={root}", "--norun", "--config.train.log_every=2"
  )
  assert result.returncode == 0, result.stderr
  with open(root / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["status"], r["train/loss"]) for r in rows] == [("pending", ""), ("external", "4.5")]
  assert sweep_lib.cell_name({"lep.tokenizer_variant": "bpe", "x.y": ["a b", True]}) == (
      "lep.tokenizer_variant=bpe,x.y=a_b+true"
  )
  long = sweep_lib.cell_name({f"key{i}": "v" * 20 for i in range(10)})
  assert len(long) == 150 and long == sweep_lib.cell_name({f"key{i}": "v" * 20 for i in range(10)})


def _write_cell(root, name, overrides, metrics_lines, stages=None, nested=None, done=True):
  workdir = root / name
  workdir.mkdir(parents=True)
  (workdir / "metrics.jsonl").write_text("\n".join(metrics_lines) + "\n")
  for stage, summary in (stages or {}).items():
    (workdir / "stages").mkdir(exist_ok=True)
    (workdir / "stages" / f"{stage}.json").write_text(json.dumps({"summary": summary}))
  for sub, lines in (nested or {}).items():
    (workdir / sub).mkdir()
    (workdir / sub / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  outcome = "done" if done else "interrupted"
  state = {"done": done, "attempts": [{"outcome": outcome}], "overrides": overrides}
  (workdir / "sweep_cell.json").write_text(json.dumps(state))


def test_results_take_each_metrics_final_value_and_stage_summaries(tmp_path):
  root = tmp_path / "root"
  cells = [
      (
          "lep.tokenizer_variant=bpe,lep.propagation=swap",
          {"lep.tokenizer_variant": "bpe", "lep.propagation": "swap"},
      ),
      (
          "lep.tokenizer_variant=bpe,lep.propagation=conversion",
          {"lep.tokenizer_variant": "bpe", "lep.propagation": "conversion"},
      ),
      (
          "lep.tokenizer_variant=extended,lep.propagation=swap",
          {"lep.tokenizer_variant": "extended", "lep.propagation": "swap"},
      ),
  ]
  root.mkdir()
  manifest = {"experiment": "experiments/lep_ru.py:tiny", "flags": ["--config.seed=1"]}
  manifest["cells"] = [{"name": n, "overrides": o} for n, o in cells]
  (root / "sweep.json").write_text(json.dumps(manifest))
  # A resumed run logs steps 3-4 twice: the final value is the last one written at step 4.
  _write_cell(
      root,
      cells[0][0],
      cells[0][1],
      [
          '{"step": 3, "train/loss": 3.0}',
          '{"step": 4, "train/loss": 2.9}',
          '{"step": 3, "train/loss": 3.1}',
          '{"step": 4, "train/loss": 2.5, "perf/mfu": 0.2}',
          '{"step": 4, "eval/perplexity": 12.5}',
          '{"step": 2, "train/loss": 9.0}',
          '{"step": 5, "train/lo',  # killed while writing
      ],
      stages={
          "tokenizer": {"vocab_size": 700, "skipped": True, "kind": "bpe"},
          "cpt": {"eval/perplexity_after": 12.5, "nested": {"tokens": 4096}},
      },
      nested={"cpt": ['{"step": 1, "train/loss": 7.0}', '{"step": 2, "train/loss": 6.0}']},
  )
  _write_cell(root, cells[1][0], cells[1][1], ['{"step": 4, "train/loss": 2.0, "perf/mfu": 0.2}'])
  _write_cell(root, cells[2][0], cells[2][1], ['{"step": 2, "train/loss": 4.0}'], done=False)
  paths = sweep_results.write_results(str(root))

  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == [
      "cell",
      "status",
      "lep.tokenizer_variant",
      "lep.propagation",
      "eval/perplexity",
      "train/loss",
      "perf/mfu",
      "cpt/train/loss",
      "cpt:eval/perplexity_after",
      "cpt:nested.tokens",
      "tokenizer:vocab_size",
  ]
  assert rows[0]["train/loss"] == "2.5" and rows[0]["eval/perplexity"] == "12.5"
  assert rows[0]["cpt/train/loss"] == "6.0" and rows[0]["tokenizer:vocab_size"] == "700.0"
  assert rows[0]["cpt:nested.tokens"] == "4096.0"
  assert [r["status"] for r in rows] == ["done", "done", "interrupted"]
  assert rows[2]["train/loss"] == "4.0" and rows[2]["eval/perplexity"] == ""

  md = (root / "results.md").read_text()
  assert md.startswith(
      "# Sweep of `experiments/lep_ru.py:tiny`\n\nEvery cell with `--config.seed=1`"
  )
  assert "| lep.tokenizer_variant=bpe,lep.propagation=swap | done | bpe | swap | 12.5 | 2.5 |" in md
  assert "not plotted: `perf/mfu`" in md
  plots = sorted(os.listdir(paths["plots"]))
  assert "train_loss-vs-lep.tokenizer_variant.png" in plots
  assert "train_loss-vs-lep.propagation.png" in plots
  assert not any(p.startswith("perf_mfu") for p in plots)
  assert paths["n"] == len(plots)
  # Against the variant, one line per propagation method (the other key swept with it).
  series = sweep_results._series(
      [dict(r, **{"train/loss": float(r["train/loss"])}) for r in rows],
      "lep.tokenizer_variant",
      "train/loss",
      ["lep.tokenizer_variant", "lep.propagation"],
  )
  assert series == {
      "propagation=swap": [("bpe", 2.5), ("extended", 4.0)],
      "propagation=conversion": [("bpe", 2.0)],
  }


def test_results_show_the_papers_benchmarks_per_cell_before_training_columns(tmp_path):
  """The evaluate stages' published benchmarks (lm-eval tasks in the training stage's summary,
  MT-Bench of both models, Arena-Hard, Darumeru as published) are columns of results.md with
  each cell's value, ordered with the evaluations before training figures; the sweep's headline
  is the paper's figure."""
  root = tmp_path / "root"
  root.mkdir()
  cells = [
      ("inscp.mode=inscp", {"inscp.mode": "inscp"}),
      ("inscp.mode=orgcp", {"inscp.mode": "orgcp"}),
  ]
  manifest = {"experiment": "experiments/inscp_zh_tw.py", "flags": []}
  manifest["cells"] = [{"name": n, "overrides": o} for n, o in cells]
  (root / "sweep.json").write_text(json.dumps(manifest))
  for (name, overrides), score in zip(cells, (7.5, 6.25)):
    _write_cell(
        root,
        name,
        overrides,
        ['{"step": 2, "train/loss": 3.0}'],
        stages={
            "cpt": {"eval/mmlu/acc_after": score / 10, "train/loss_after": 3.0},
            "evaluate": {
                "before/mt_bench/score": 5.0,
                "after/mt_bench/score": score,
                "arena_hard/win_rate": score * 4,
                "darumeru/micro_avg": score / 20,
            },
        },
    )
  sweep_results.write_results(str(root))
  header, _, *rows = (root / "results.md").read_text().splitlines()[2:]
  columns = [c.strip() for c in header.strip("|").split("|")]
  benchmarks = [
      "cpt:eval/mmlu/acc_after",
      "evaluate:after/mt_bench/score",
      "evaluate:arena_hard/win_rate",
      "evaluate:before/mt_bench/score",
      "evaluate:darumeru/micro_avg",
  ]
  stage_columns = [c for c in columns if ":" in c]
  assert stage_columns == benchmarks + ["cpt:train/loss_after"]
  for row, score in zip(rows[:2], (7.5, 6.25)):
    values = dict(zip(columns, (v.strip() for v in row.strip("|").split("|"))))
    assert float(values["evaluate:after/mt_bench/score"]) == score
    assert float(values["evaluate:arena_hard/win_rate"]) == score * 4
    assert float(values["cpt:eval/mmlu/acc_after"]) == score / 10
  values = sweep_results.cell_values(str(root / cells[0][0]))
  assert sweep_results.headline(values) == "; evaluate:darumeru/micro_avg 0.375"
