"""The handbook converter keeps only target-language prose: untranslated English paragraphs,
commands and code blocks are dropped and counted per reason, and setup rebuilds a corpus an older
converter wrote."""

import json
import os
import subprocess
import sys

from langshift.data import corpus_manifest, debian_handbook, language_filter

RUSSIAN = (
    'Менеджер пакетов <code class="command">apt</code> устанавливает программы из зеркал '
    "архива и сам разрешает зависимости между пакетами."
)
ENGLISH = (  # left untranslated in the Russian book
    "The package manager installs software from the archive mirrors and resolves the "
    "dependencies between packages by itself."
)
COMMAND = (  # a paragraph that is mostly a command line
    'Пример: <code class="command">apt-get install --no-install-recommends '
    '<em class="replaceable">package-name</em> another-package-name</code>'
)
PRE = (  # a code block between paragraphs, in the handbook's markup
    '<pre class="screen"><code class="computeroutput">$ </code><strong class="userinput">'
    "<code>sudo apt-get install package/bullseye-backports\n</code></strong></pre>"
)


def _page(*blocks):
  body = "".join(
      b if b.startswith("<pre") else f'<div class="para">\n\t{b}\n</div>' for b in blocks
  )
  return f'<html><body><div class="section">{body}</div></body></html>'


def _book(tmp_path, pages=2):
  folder = tmp_path / debian_handbook.HTML_DIR / "ru-RU"
  os.makedirs(folder)
  for i in range(pages):
    (folder / f"p{i}.html").write_text(
        _page(RUSSIAN, ENGLISH, PRE, COMMAND, "Да."), encoding="utf-8"
    )
  return str(tmp_path)


def test_only_the_target_language_paragraph_is_kept_and_counted(tmp_path):
  root = _book(tmp_path)
  out = tmp_path / "out"
  manifest = debian_handbook.write_corpus(root, "ru-RU", str(out), heldout_every=2)
  russian_text = " ".join(
      RUSSIAN.replace('<code class="command">', "").replace("</code>", "").split()
  )
  for split in ("train", "heldout"):
    with open(out / f"{split}.jsonl", encoding="utf-8") as f:
      assert [json.loads(line)["text"] for line in f] == [russian_text]
    assert manifest["filter"][split] == {
        "kept": 1,
        "chars_kept": len(russian_text),
        "dropped_short": 1,  # "Да."
        "dropped_code": 1,  # the command paragraph
        "dropped_other_language": {"en": 1},  # the untranslated paragraph
    }
  assert (manifest["train"], manifest["heldout"], manifest["code_blocks_skipped"]) == (1, 1, 2)
  with open(out / "manifest.json", encoding="utf-8") as f:
    assert json.load(f) == manifest
  assert manifest["converter_version"] == corpus_manifest.CONVERTER_VERSION
  # Alignment still counts every paragraph of a page (the filter runs after it).
  assert (
      len(
          debian_handbook.page_paragraphs(
              os.path.join(root, debian_handbook.HTML_DIR, "ru-RU", "p0.html")
          )
      )
      == 4
  )


def test_command_share_comes_from_the_markup(tmp_path):
  page = tmp_path / "p.html"
  page.write_text(_page(RUSSIAN, COMMAND), encoding="utf-8")
  prose, command = debian_handbook.read_page(str(page))[0]
  assert 0 < prose.code_chars < 0.1 * len(prose.text)  # one inline command name
  assert command.code_chars > language_filter.MAX_CODE_SHARE * len(command.text)
  assert language_filter.judge(prose, "ru", min_chars=40) == language_filter.Verdict("kept")
  assert language_filter.judge(prose, "en", min_chars=40) == language_filter.Verdict(
      "other_language", "ru"
  )


def test_setup_rebuilds_a_corpus_an_older_converter_wrote(tmp_path):
  root = _book(tmp_path, pages=1)
  out = tmp_path / "out"
  os.makedirs(out)
  (out / "train.jsonl").write_text(json.dumps({"text": ENGLISH}) + "\n", encoding="utf-8")

  def current():
    check = [sys.executable, "-m", "langshift.data.corpus_manifest", str(out)]
    return subprocess.run(check, check=False).returncode == 0

  assert not current()  # no manifest: written before the version stamp
  debian_handbook.write_corpus(root, "ru-RU", str(out))
  assert current()
  with open(out / "manifest.json", encoding="utf-8") as f:
    manifest = json.load(f)
  manifest["converter_version"] = corpus_manifest.CONVERTER_VERSION - 1
  with open(out / "manifest.json", "w", encoding="utf-8") as f:
    json.dump(manifest, f)
  assert not current()


def test_aligned_pairs_drop_an_untranslated_target(tmp_path):
  root = _book(tmp_path, pages=1)
  english = tmp_path / debian_handbook.HTML_DIR / "en-US"
  os.makedirs(english)
  source = ("The package manager apt installs programs from the archive mirrors.", ENGLISH, PRE)
  (english / "p0.html").write_text(_page(*source, COMMAND, "Yes."), encoding="utf-8")
  pairs = debian_handbook.aligned_pairs(root, "ru-RU")
  # The untranslated pair, the command and the line too short to identify are dropped.
  assert [s for s, _ in pairs] == [source[0]]
