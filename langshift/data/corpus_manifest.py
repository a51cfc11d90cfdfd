"""The `manifest.json` the handbook converters write beside their JSONL, stamped with the
converter version, so that `launch/setup_env.sh` rebuilds corpora an older converter wrote.

Version 1 (no stamp) kept the handbook's untranslated English paragraphs; version 2 keeps only
paragraphs in the target language and drops commands (`langshift.data.language_filter`).

  python -m langshift.data.corpus_manifest DIR [DIR ...]   # exit 1 if any DIR is stale
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

CONVERTER_VERSION = 2
FILENAME = "manifest.json"


def write_manifest(out_dir: str, manifest: dict[str, Any]) -> dict[str, Any]:
  """Writes `<out_dir>/manifest.json` with the version stamp; call it after the data files, so
  that an interrupted build reads as stale."""
  manifest = {"converter_version": CONVERTER_VERSION, **manifest}
  path = os.path.join(out_dir, FILENAME)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1, ensure_ascii=False)
  os.replace(path + ".tmp", path)
  return manifest


def is_current(out_dir: str) -> bool:
  """True when `out_dir` holds a manifest this converter version wrote."""
  try:
    with open(os.path.join(out_dir, FILENAME), encoding="utf-8") as f:
      return json.load(f).get("converter_version") == CONVERTER_VERSION
  except (OSError, ValueError, AttributeError):
    return False


if __name__ == "__main__":
  sys.exit(0 if all(is_current(d) for d in sys.argv[1:]) else 1)
