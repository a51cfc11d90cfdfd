import lep_tiny_corpus as corpus
import pytest
import sentencepiece as spm

from langshift.tokenization.sentencepiece_export import sentencepiece_to_tokenizer
from langshift.tokenization.sentencepiece_training import train_sentencepiece
from langshift.tokenization.tokenizer_files import write_tokenizer_dir

PROBES = [
    " привет  мир",
    "  ведущие пробелы",
    "эмодзи 😀 и числа 12345",
    "строка\nтаб\tконец",
    "Ёжик в тумане!",
    "mixed русский and English 2024",
    "",
    "Ǆ unseen ǅ",
]


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def model(request):
  texts = corpus.sentences(corpus.RUSSIAN + corpus.ENGLISH, 1500, seed=0)
  return request.param, train_sentencepiece(
      texts, model_type=request.param, vocab_size=420, hard_vocab_limit=False
  )


def test_export_gives_sentencepiece_ids_and_round_trips(model):
  _, proto = model
  sp = spm.SentencePieceProcessor(model_proto=proto)
  tok = sentencepiece_to_tokenizer(proto)
  texts = corpus.sentences(corpus.RUSSIAN + corpus.ENGLISH, 50, seed=1) + PROBES
  for text in texts:
    ids = tok.encode(text, add_special_tokens=False).ids
    assert ids == sp.encode(text), text
    assert tok.decode(ids) == text
  # Digits are split one per piece (split_digits) and unseen characters fall back to bytes.
  pieces = sp.encode("12345", out_type=str)
  assert [p.strip("▁") for p in pieces if p != "▁"] == list("12345")
  assert sp.unk_id() not in sp.encode("Ǆ")
  assert tok.encode("x", add_special_tokens=True).ids[0] == sp.bos_id()


def test_export_loads_in_transformers(model, tmp_path):
  transformers = pytest.importorskip("transformers")
  _, proto = model
  sp = spm.SentencePieceProcessor(model_proto=proto)
  tok = sentencepiece_to_tokenizer(proto)
  import json

  write_tokenizer_dir(
      str(tmp_path), json.loads(tok.to_str()), bos_token="<s>", eos_token="</s>", unk_token="<unk>"
  )
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  for text in PROBES[:5]:
    assert hf(text, add_special_tokens=False)["input_ids"] == sp.encode(text)
  assert hf("мир")["input_ids"][0] == sp.bos_id()
  assert hf.eos_token_id == sp.eos_id()
