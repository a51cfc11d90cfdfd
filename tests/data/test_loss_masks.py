"""Token loss masks from character spans: exactly the assistant tokens, in every recipe's format."""

import numpy as np
import pytest

from langshift.data import config as config_lib
from langshift.data import examples, formatting
from langshift.data.sources import BadRecordLog, RecordError
from langshift.tokenization import chat_templates as ct
from langshift.tokenization.tokenizer import load_tokenizer

CONV = [
    {"role": "user", "content": "What is 12345?"},
    {"role": "assistant", "content": "A number. Число!"},
    {"role": "user", "content": "And 敏捷?"},
    {"role": "assistant", "content": "Chinese."},
]


def test_token_mask_from_spans_overlap_rule():
  offsets = [(0, 3), (3, 5), (5, 5), (5, 7), (7, 9)]  # (5, 5): zero-width byte-fallback piece
  assert examples.token_mask_from_spans(offsets, [(5, 9)]).tolist() == [0, 0, 1, 1, 1]
  assert examples.token_mask_from_spans(offsets, [(4, 6)]).tolist() == [0, 1, 1, 1, 0]
  assert examples.token_mask_from_spans(offsets, [(0, 3), (7, 8)]).tolist() == [1, 0, 0, 0, 1]
  with pytest.raises(ct.ChatTemplateError, match="covers no token"):
    examples.token_mask_from_spans(offsets, [(20, 30)])


@pytest.mark.parametrize("template_name", sorted(ct.BUILTIN_TEMPLATES))
@pytest.mark.parametrize("backend", ["bpe", "sentencepiece"])
def test_mask_is_exactly_the_assistant_turns(template_name, backend, bpe_tokenizer, sp_model):
  tok = bpe_tokenizer if backend == "bpe" else load_tokenizer(sp_model)
  special = (
      {"bos_token": "<s>", "eos_token": "</s>"}
      if backend == "sentencepiece"
      else tok.special_tokens_map
  )
  conv = CONV[:2] if template_name == "mistral" else CONV
  text, spans = formatting.format_chat(conv, ct.BUILTIN_TEMPLATES[template_name], special)
  example = examples.formatted_examples([(text, spans)], tok)[0]
  ((ids, offsets),) = tok.encode_batch_with_offsets([text])
  in_span = np.zeros(len(text), bool)
  for s, e in spans:
    in_span[s:e] = True
  for t, (s, e) in enumerate(offsets):
    chars = in_span[s:e] if e > s else in_span[s : s + 1]
    # A token is trained iff its characters are assistant characters (no token straddles).
    assert chars.all() == example["mask"][t] == chars.any(), (t, text[s:e])
  covered = np.zeros(len(text), bool)  # characters of trained tokens (byte tokens share chars)
  for (s, e), m in zip(offsets, example["mask"]):
    covered[s:e] |= bool(m)
  assert (covered == in_span).all()
  trained = "".join(text[s:e] for s, e in spans)
  for message in conv[1::2]:
    assert message["content"] in trained
  assert "What is" not in trained and "And" not in trained
  if backend == "bpe":
    assert tok.decode(example["tokens"][example["mask"]]) == trained


def test_full_sequence_mode(bpe_tokenizer):
  text, spans = formatting.format_chat(
      CONV, ct.BUILTIN_TEMPLATES["llama3"], bpe_tokenizer.special_tokens_map, full_loss=True
  )
  assert spans is None
  assert examples.formatted_examples([(text, spans)], bpe_tokenizer)[0]["mask"].all()


def test_inscp_wrapper(bpe_tokenizer):
  special = bpe_tokenizer.special_tokens_map
  template = ct.BUILTIN_TEMPLATES["llama3"]
  x = "Текст без инструкции."
  text, spans = formatting.format_inscp(x, template, special)
  assert text == (
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n" + x + "<|eot_id|>"
  )
  assert spans is None  # plain causal-LM loss on the whole sequence
  stripped, _ = formatting.format_inscp(x, template, special, newline_after_header=False)
  assert stripped == text.replace("assistant<|end_header_id|>\n\n", "assistant<|end_header_id|>")
  kept, _ = formatting.format_inscp(x, template, special, newline_after_header=True)
  assert kept == text
  masked_text, masked_spans = formatting.format_inscp(x, template, special, mask_header=True)
  example = examples.formatted_examples([(masked_text, masked_spans)], bpe_tokenizer)[0]
  assert bpe_tokenizer.decode(example["tokens"][example["mask"]]) == x + "<|eot_id|>"
  assert not example["mask"][:5].any()


def test_response_tuning_has_empty_instruction(bpe_tokenizer):
  text, spans = formatting.format_response_tuning(
      "Just the response.", ct.BUILTIN_TEMPLATES["chatml"], bpe_tokenizer.special_tokens_map
  )
  assert text == (
      "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\nJust the response." "<|im_end|>\n"
  )
  assert [text[s:e] for s, e in spans] == ["Just the response.<|im_end|>\n"]


def test_text_examples_bos_eos_and_paragraph_boundaries(bpe_tokenizer):
  doc = "First paragraph here.\n\nSecond one.\nThird line."
  (ex,) = examples.text_examples(
      [doc], bpe_tokenizer, add_bos=True, add_eos=True, with_boundaries=True
  )
  assert ex["tokens"][0] == bpe_tokenizer.bos_id and ex["tokens"][-1] == bpe_tokenizer.eos_id
  assert ex["mask"].all()
  pieces = [bpe_tokenizer.decode(ex["tokens"][b:]) for b in ex["boundaries"][1:]]
  assert ex["boundaries"][0] == 0
  assert pieces == ["Second one.\nThird line.<|eot_id|>", "Third line.<|eot_id|>"]
  (plain,) = examples.text_examples(
      [doc], bpe_tokenizer, add_bos=False, add_eos=False, with_boundaries=False
  )
  assert plain["tokens"].tolist() == bpe_tokenizer.encode(doc)


def _builder(tok, on_bad_record, template="chat"):
  data = config_lib.default_data_config()
  data.on_bad_record = on_bad_record
  data.sources.s = config_lib.source_config(path="x", template=template)
  sources = config_lib.resolve_sources(data)
  log = BadRecordLog("s")
  return (
      examples.ExampleBuilder(
          sources, tok, data, template=ct.BUILTIN_TEMPLATES["chatml"], bad_records=[log]
      ),
      log,
  )


def test_bad_records_raise_with_location_or_are_counted(bpe_tokenizer):
  good = (0, "f.jsonl:1", {"messages": CONV})
  missing = (0, "f.jsonl:2", {"text": "no messages here"})
  no_reply = (0, "f.jsonl:3", {"messages": CONV[:1]})
  builder, _ = _builder(bpe_tokenizer, "raise")
  with pytest.raises(RecordError, match=r"f.jsonl:2: record has no field 'messages'"):
    builder([good, missing])
  with pytest.raises(ct.ChatTemplateError, match=r"f.jsonl:3: .*no assistant turn"):
    builder([no_reply])
  builder, log = _builder(bpe_tokenizer, "skip")
  built = builder([good, missing, None, no_reply, good])
  assert len(built) == 2 and log.count == 2


@pytest.mark.parametrize(
    "template,record,trained",
    [
        ("pair", {"prompt": "First half", "response": "continued."}, "continued.<|im_end|>\n"),
        ("response", {"response": "Only this."}, "Only this.<|im_end|>\n"),
        ("inscp", {"text": "Plain text."}, None),
        (
            "chat",
            {
                "messages": '[{"role": "user", "content": "q"}, '
                '{"role": "assistant", "content": "a"}]'
            },
            "a<|im_end|>\n",
        ),
    ],
)
def test_each_source_template_through_the_builder(bpe_tokenizer, template, record, trained):
  builder, _ = _builder(bpe_tokenizer, "raise", template=template)
  (example,) = builder([(0, "f:1", record)])
  if trained is None:  # InsCP: plain causal-LM loss on everything
    assert example["mask"].all()
  else:
    assert bpe_tokenizer.decode(example["tokens"][example["mask"]]) == trained
