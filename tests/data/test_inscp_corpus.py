"""InsCP's offline data from a handbook tree: only Traditional Chinese paragraphs are kept (the
handbook converters' one filter, `language_filter`, counted per reason), the held-out pages give
zh-TW prompts and their aligned English counterparts, and the prompt file is one the response
evaluation loads."""

import json
import os

from langshift.data import debian_handbook, inscp_corpus
from langshift.evaluation.response_eval import load_response_prompts

ZH = "Debian 套件是透過 apt 程式安裝的。它會自動處理相依關係與設定檔案，讓管理者輕鬆維護系統。"
EN = "Debian packages are installed with apt. It resolves dependencies and configuration itself."
UNTRANSLATED = "This paragraph of the Traditional Chinese book was never translated from English."


def _page(paragraphs):
  return "".join(f'<div class="para">{p}</div>' for p in paragraphs)


def test_corpus_and_prompts(tmp_path):
  for lang, paras in (("zh-TW", [ZH, UNTRANSLATED]), ("en-US", [EN, UNTRANSLATED])):
    folder = tmp_path / debian_handbook.HTML_DIR / lang
    os.makedirs(folder)
    for i in range(inscp_corpus.HELDOUT_EVERY):
      (folder / f"p{i:02d}.html").write_text(_page(paras), encoding="utf-8")
  out = tmp_path / "out"
  counts = inscp_corpus.write_inscp_corpus(str(tmp_path), str(out))
  # 19 training pages and 1 held-out page; the untranslated paragraph is dropped everywhere.
  assert counts == dict(
      train=19,
      heldout=1,
      prompts_target=1,
      prompts_english=1,
      filter=dict(
          kept=20,
          chars_kept=20 * len(ZH),
          dropped_short=0,
          dropped_code=0,
          dropped_other_language={"en": 20},
      ),
  )
  with open(out / "manifest.json") as f:
    assert json.load(f)["filter"] == counts["filter"]
  with open(out / "train.jsonl") as f:
    assert {json.loads(line)["text"] for line in f} == {ZH}
  prompts = load_response_prompts(str(out / "prompts.jsonl"))
  assert [(p.language, p.prompt) for p in prompts] == [
      ("zh-Hant", "Debian 套件是透過 apt 程式安裝的。"),
      ("en", "Debian packages are installed with apt."),
  ]
  assert prompts[0].reference.startswith("它會自動處理") and prompts[1].reference.startswith("It")
