import json

import lep_tiny_corpus as corpus
import pytest

from langshift.tokenization import fertility
from langshift.tokenization.instruct_tokens import write_instruct_tokenizer
from langshift.tokenization.tokenizer_files import write_tokenizer_dir

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_fertility_counts_and_cli(tmp_path, capsys):
  tok = corpus.byte_level_bpe(corpus.sentences(corpus.ENGLISH, 300, seed=1), vocab_size=300)
  stats = fertility.fertility(tok, ["ab cd", "e"])
  assert stats["chars"] == 6 and stats["words"] == 3
  assert stats["chars_per_token"] == 6 / stats["tokens"]
  assert stats["tokens_per_word"] == stats["tokens"] / 3
  path = tmp_path / "tok.json"
  path.write_text(tok.to_str())
  text = tmp_path / "en.txt"
  text.write_text("\n".join(corpus.sentences(corpus.ENGLISH, 5, seed=2)))
  fertility.main(
      ["--tokenizer", f"tiny={path}", "--text", f"en={text}", "--json", str(tmp_path / "r.json")]
  )
  assert "tiny" in capsys.readouterr().out
  assert json.loads((tmp_path / "r.json").read_text())["en"]["tiny"]["tokens"] > 0


def test_instruct_tokens_and_template_carried_over(tmp_path):
  transformers = pytest.importorskip("transformers")
  instruct = corpus.byte_level_bpe(corpus.sentences(corpus.ENGLISH, 300, seed=1), vocab_size=300)
  instruct.add_special_tokens(["<|tool|>"])
  instruct_dir = tmp_path / "instruct"
  write_tokenizer_dir(
      str(instruct_dir),
      json.loads(instruct.to_str()),
      eos_token="<|im_end|>",
      bos_token="<|im_start|>",
      chat_template=CHATML,
  )
  # A new tokenizer that only knows <|endoftext|> and <|im_start|> (at other ids).
  new = corpus.byte_level_bpe(
      corpus.sentences(corpus.RUSSIAN, 300, seed=1),
      vocab_size=320,
      specials=("<|im_start|>", "<|endoftext|>"),
  )
  out = write_instruct_tokenizer(str(tmp_path / "out"), json.loads(new.to_str()), str(instruct_dir))
  rows = dict(out.special_rows)
  size = new.get_vocab_size()
  assert rows[new.token_to_id("<|im_start|>")] == instruct.token_to_id("<|im_start|>")
  appended = {new_id for new_id in rows if new_id >= size}
  assert len(appended) == 2 and max(appended) == size + 1  # <|im_end|>, <|tool|>
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
  assert hf.eos_token == "<|im_end|>" and hf.eos_token_id == out.special_ids["eos_token"]
  ids = hf.apply_chat_template(
      [{"role": "user", "content": "привет"}], tokenize=True, add_generation_prompt=True
  )
  ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
  assert ids.count(out.special_ids["eos_token"]) == 1
  assert hf.decode(ids) == "<|im_start|>user\nпривет<|im_end|>\n<|im_start|>assistant\n"
