"""A finished pinch sweep as the paper shows it: per language x P (or x number of languages).

Shaham et al. 2024 (arXiv:2401.01854, Figs. 2-5) plot each language's score against the share P
of multilingual examples and against the number of tuning languages. `langshift.sweep` writes one
row per cell (`results.csv`); this reads the cells' per-language metrics back and writes

  <root>/pinch.md                       one table per score: a row per cell, a column per language
  <root>/plots/pinch-<score>.png        one line per language against P, and against the number
                                        of languages

  python -m langshift.recipes.pinch.report --root=workdir/pinch_cpu
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from absl import app, flags

from langshift import sweep_results

# score -> (metric column pattern with the language as group 1, what it is)
SCORES = {
    "language_match": (r"sft/eval/language_match/([^/]+)$", "response-language match"),
    "reference_nll": (r"sft/eval/reference_nll/([^/]+)$", "reference NLL per token"),
    "if_score": (r"evaluate:if_score/([^/]+)$", "IF score vs monolingual (50 = parity)"),
}
PERCENT, NUM_LANGUAGES = "pinch.percent", "pinch.num_languages"


def _label(row) -> str:
  if NUM_LANGUAGES in row:
    return f"{row[NUM_LANGUAGES]} languages"
  if PERCENT in row:
    return f"P={row[PERCENT]:g}"
  return row["cell"]


def score_tables(rows: Sequence[dict]) -> dict[str, tuple[list[str], list[tuple[str, dict]]]]:
  """{score: (languages, [(cell label, {language: value})])} for the scores the cells have."""
  out = {}
  for score, (pattern, _) in SCORES.items():
    languages: list[str] = []
    table = []
    for row in rows:
      values = {}
      for column, value in row.items():
        m = re.match(pattern, column)
        if m and isinstance(value, float):
          values[m.group(1)] = value
          if m.group(1) not in languages:
            languages.append(m.group(1))
      if values:
        table.append((_label(row), values))
    if table:
      languages.sort(key=lambda lang: (lang != "en", lang))  # English first, as in the paper
      out[score] = (languages, table)
  return out


def write_report(root: str) -> dict[str, str]:
  """Writes pinch.md and plots/pinch-<score>.png; returns their paths."""
  _, _, rows = sweep_results.collect(root)
  tables = score_tables(rows)
  md = os.path.join(root, "pinch.md")
  with open(md, "w", encoding="utf-8") as f:
    f.write("# Pinch of multilinguality: scores per language\n\n")
    for score, (languages, table) in tables.items():
      f.write(f"## {SCORES[score][1]} (`{score}`)\n\n")
      f.write("| cell | " + " | ".join(languages) + " |\n")
      f.write("|---|" + "---|" * len(languages) + "\n")
      for label, values in table:
        cells = [f"{values[lang]:.3g}" if lang in values else "" for lang in languages]
        f.write(f"| {label} | " + " | ".join(cells) + " |\n")
      f.write("\n")
  paths = {"md": md}
  for score in tables:
    path = _plot(root, score, rows)
    if path:
      paths[score] = path
  return paths


def _plot(root: str, score: str, rows) -> str | None:
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  pattern, title = SCORES[score]
  panels = [
      (key, [r for r in rows if key in r])
      for key in (PERCENT, NUM_LANGUAGES)
      if any(key in r for r in rows)
  ]
  fig = Figure(figsize=(5.0 * len(panels), 3.6), dpi=100)
  FigureCanvasAgg(fig)
  for i, (key, chosen) in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in chosen:
      for column, value in r.items():
        m = re.match(pattern, column)
        if m and isinstance(value, float):
          lines.setdefault(m.group(1), []).append((float(r[key]), value))
    for lang, points in sorted(lines.items()):
      points.sort()
      ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=lang)
    if not lines:  # cells of this study have not finished
      ax.text(0.5, 0.5, "no finished cells", ha="center", va="center", transform=ax.transAxes)
      continue
    ax.set_xlabel("P (% multilingual examples)" if key == PERCENT else "languages in tuning")
    ax.set_ylabel(score)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.join(root, "plots"), exist_ok=True)
  path = os.path.join(root, "plots", f"pinch-{score}.png")
  fig.savefig(path)
  return path


def _define_flags() -> None:
  """The CLI's flags, defined when it runs: tests import several of these modules into one
  process, and absl refuses a flag name defined twice."""
  flags.DEFINE_string("root", None, "A pinch sweep's root (langshift.sweep --root).")


def main(argv):
  del argv
  for kind, path in write_report(flags.FLAGS.root).items():
    print(f"{kind}: {path}")


if __name__ == "__main__":
  _define_flags()
  flags.mark_flag_as_required("root")
  app.run(main)
