"""The results of a sweep (langshift/sweep.py): one row per cell, from the cells' own files.

Columns: the cell, its status, every swept key, then the final value of every metric
(`metrics.jsonl`: the value at the highest step, the last one written when a resumed run wrote
a step twice; a stage's own file, e.g. `cpt/metrics.jsonl`, gives `cpt/<metric>`) and the
numbers of every stage summary (`stages/<stage>.json`: `<stage>:<key>`). Evaluations come
first: the engine's `eval/...` (lm-eval tasks included: `cpt:eval/mmlu/acc_after`) and the
evaluate stages' benchmarks (`evaluate:after/mt_bench/score`, `evaluate:arena_hard/win_rate`,
`evaluate:darumeru/micro_avg`), then training, then performance.

Written to the root: `results.csv` (full precision), `results.md` (4 significant digits) and
`plots/<metric>-vs-<key>.png`, one per metric against each swept key, with one line per value
of the other keys swept together with it. Columns equal in every cell are not plotted.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

# The papers' own figures first (Darumeru as LEP reports it, MT-Bench, Arena-Hard), then proxies.
HEADLINE_METRICS = (
    "darumeru/micro_avg",
    "mt_bench/score",
    "arena_hard/win_rate",
    "eval/perplexity",
    "eval/micro_avg",
    "train/loss",
)
# First segment of the engine's metric names (langshift/train, langshift/evaluation).
_ENGINE_NAMESPACES = ("eval", "train", "perf")
# The evaluate stages' benchmarks (langshift/recipes/judged_benchmarks.py, the LEP stage's
# Darumeru as published, InsCP's TMMLU+ and pairwise judge), alone or under a model's tag
# (`after/mt_bench/score`): evaluation columns, next to the engine's `eval/...`.
BENCHMARK_NAMESPACES = ("mt_bench", "arena_hard", "darumeru", "tmmluplus", "judge")
_MODEL_TAGS = ("before", "after")


def cell_status(state: Mapping[str, Any]) -> str:
  """done | stopped | interrupted | failed | pending, from a cell's sweep_cell.json (collect() adds
  external: a cell the sweep did not run that has results, e.g. launched from its printed
  command)."""
  if state.get("done"):
    return "done"
  attempts = state.get("attempts") or []
  return attempts[-1]["outcome"] if attempts else "pending"


def final_metrics(path: str, prefix: str = "") -> dict[str, float]:
  """{prefix + metric: value at its highest step} of one metrics.jsonl."""
  best: dict[str, tuple[int, float]] = {}
  with open(path) as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # a run killed mid-write leaves a partial last line
        continue
      step = row.get("step", 0)
      for key, value in row.items():
        if key == "step" or not _is_number(value):
          continue
        if key not in best or step >= best[key][0]:
          best[key] = (step, float(value))
  return {prefix + k: v for k, (_, v) in best.items()}


def stage_summaries(workdir: str) -> dict[str, float]:
  """{"<stage>:<key>": number} of every stage marker's summary (nested keys joined by ".")."""
  out: dict[str, float] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "stages", "*.json"))):
    stage = os.path.basename(path)[: -len(".json")]
    try:
      with open(path) as f:
        summary = json.load(f).get("summary", {})
    except (OSError, json.JSONDecodeError):
      continue
    for key, value in _flat(summary).items():
      if key != "skipped" and _is_number(value):
        out[f"{stage}:{key}"] = float(value)
  return out


def cell_values(workdir: str) -> dict[str, float]:
  """Every metric and stage-summary number of one cell's workdir."""
  values: dict[str, float] = {}
  top = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(top):
    values.update(final_metrics(top))
  for path in sorted(glob.glob(os.path.join(workdir, "*", "metrics.jsonl"))):
    stage = os.path.basename(os.path.dirname(path))
    values.update(final_metrics(path, prefix=f"{stage}/"))
  values.update(stage_summaries(workdir))
  return values


def headline(values: Mapping[str, float]) -> str:
  for name in HEADLINE_METRICS:
    # A stage's own metrics (cpt/eval/...) or a stage summary's (evaluate:eval/micro_avg).
    for key in (name, *sorted(k for k in values if k.endswith(("/" + name, ":" + name)))):
      if key in values:
        return f"; {key} {values[key]:.4g}"
  return ""


def collect(root: str) -> tuple[list[str], list[str], list[dict[str, Any]]]:
  """(swept keys, metric columns, rows) of the sweep in `root` (its sweep.json lists the cells)."""
  with open(os.path.join(root, "sweep.json")) as f:
    manifest = json.load(f)
  keys: list[str] = []
  rows = []
  for entry in manifest["cells"]:
    for key in entry["overrides"]:
      if key not in keys:
        keys.append(key)
    workdir = os.path.join(root, entry["name"])
    state_path = os.path.join(workdir, "sweep_cell.json")
    state = {}
    if os.path.exists(state_path):
      with open(state_path) as f:
        state = json.load(f)
    values = cell_values(workdir) if os.path.isdir(workdir) else {}
    status = cell_status(state)
    if status == "pending" and values:
      status = "external"
    rows.append({"cell": entry["name"], "status": status, **entry["overrides"], **values})
  metrics = sorted({k for r in rows for k in r} - set(keys) - {"cell", "status"}, key=_order)
  return keys, metrics, rows


def _order(column: str) -> tuple:
  """Evaluations first, then training, then performance; the run's own before its stages'."""
  stage = ":" in column
  name = column.split(":", 1)[-1]
  nested = not stage and name.split("/", 1)[0] not in _ENGINE_NAMESPACES
  if nested:
    name = name.split("/", 1)[-1]
  kind = 0 if name.startswith("eval") or _benchmark(name) else (2 if name.startswith("perf") else 1)
  return (stage, nested, kind, column)


def _benchmark(name: str) -> bool:
  parts = name.split("/")
  if parts[0] in _MODEL_TAGS and len(parts) > 1:
    parts = parts[1:]
  return parts[0] in BENCHMARK_NAMESPACES


def write_results(root: str) -> dict[str, Any]:
  """Writes results.csv, results.md and plots/; returns their paths."""
  keys, metrics, rows = collect(root)
  columns = ["cell", "status", *keys, *metrics]
  csv_path = os.path.join(root, "results.csv")
  with open(csv_path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      writer.writerow([_csv_text(row.get(c)) for c in columns])
  plotted, note = write_plots(root, keys, metrics, rows)
  md_path = os.path.join(root, "results.md")
  with open(os.path.join(root, "sweep.json")) as f:
    manifest = json.load(f)
  with open(md_path, "w") as f:
    f.write(f"# Sweep of `{manifest['experiment']}`\n\n")
    if manifest.get("flags"):
      f.write(f"Every cell with `{' '.join(manifest['flags'])}`.\n\n")
    f.write(_markdown_table(columns, rows))
    f.write(f"\n{note}\n")
  return {"csv": csv_path, "md": md_path, "plots": os.path.join(root, "plots"), "n": plotted}


def _markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
  def cell(value) -> str:
    if value is None:
      return ""
    if isinstance(value, float):
      return f"{value:.4g}"
    return str(value).replace("|", "\\|")

  lines = ["| " + " | ".join(c.replace("|", "\\|") for c in columns) + " |"]
  lines.append("|" + "---|" * len(columns))
  lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def _csv_text(value) -> str:
  if value is None:
    return ""
  if isinstance(value, (list, tuple)):
    return json.dumps(list(value))
  return repr(value) if isinstance(value, float) else str(value)


# --- Plots ---------------------------------------------------------------------------------------


def write_plots(root, keys, metrics, rows) -> tuple[int, str]:
  """One PNG per (metric, swept key); returns (how many, a line for results.md)."""
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
  except ImportError:
    return 0, "Plots: not drawn, matplotlib is not installed (`pip install matplotlib`)."
  out_dir = os.path.join(root, "plots")
  os.makedirs(out_dir, exist_ok=True)
  for old in glob.glob(os.path.join(out_dir, "*.png")):
    os.remove(old)
  flat = []
  written = 0
  for metric in metrics:
    values = [r[metric] for r in rows if _is_number(r.get(metric))]
    if not values:
      continue
    if len(values) > 1 and max(values) == min(values):
      flat.append(metric)
      continue
    for key in keys:
      series = _series(rows, key, metric, keys)
      if not series:
        continue
      fig = Figure(figsize=(5.5, 3.6), dpi=100)
      FigureCanvasAgg(fig)
      ax = fig.add_subplot()
      _draw(ax, series, key)
      ax.set_xlabel(key)
      ax.set_ylabel(metric)
      ax.set_title(f"{metric} vs {key}", fontsize=10)
      if len(series) > 1:
        ax.legend(fontsize=7)
      fig.tight_layout()
      fig.savefig(os.path.join(out_dir, f"{_safe(metric)}-vs-{_safe(key)}.png"))
      written += 1
  note = f"Plots: {written} in `plots/` (one per metric against each swept key)."
  if flat:
    note += f" Equal in every cell, not plotted: {', '.join(f'`{m}`' for m in flat)}."
  return written, note


def _series(rows, key, metric, keys) -> dict[str, list[tuple[Any, float]]]:
  """{label: [(x, y)]}: the cells that set `key` and have `metric`, one line per combination
  of the other keys that all of them set (and that differ between them)."""
  points = [r for r in rows if key in r and _is_number(r.get(metric))]
  others = [
      k
      for k in keys
      if k != key
      and all(k in r for r in points)
      and len({json.dumps(r[k], default=str) for r in points}) > 1
  ]
  series: dict[str, list[tuple[Any, float]]] = {}
  for r in points:
    label = ", ".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in others) or metric
    series.setdefault(label, []).append((r[key], float(r[metric])))
  return series


def _draw(ax, series, key) -> None:
  xs = [x for pts in series.values() for x, _ in pts]
  if all(_is_number(x) for x in xs):
    for label, pts in series.items():
      pts = sorted(pts)
      ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
    if min(xs) > 0 and max(xs) / min(xs) >= 10:  # learning rates, data sizes
      ax.set_xscale("log")
    return
  order = list(dict.fromkeys(str(x) for x in xs))
  for label, pts in series.items():
    pts = sorted(pts, key=lambda p: order.index(str(p[0])))
    ax.plot([order.index(str(x)) for x, _ in pts], [y for _, y in pts], marker="o", label=label)
  ax.set_xticks(range(len(order)), order, rotation=20 if len(order) > 4 else 0, fontsize=8)


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9._=+-]", "_", name)


def _flat(value, prefix: str = "") -> dict[str, Any]:
  if isinstance(value, Mapping):
    out: dict[str, Any] = {}
    for k, v in value.items():
      out.update(_flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: value}


def _is_number(value) -> bool:
  return (
      isinstance(value, (int, float))
      and not isinstance(value, bool)
      and math.isfinite(float(value))
  )
