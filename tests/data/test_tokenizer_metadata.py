"""One reading of a tokenizer directory, transformers' own: the tokenizer that training and
generation load and the files LEP's surgery writes render the template `AutoTokenizer` renders."""

import json
import os
import shutil

import pytest
from data_fixtures import LLAMA3_STYLE_TEMPLATE

from langshift.generation.chat_render import chat_renderer
from langshift.recipes.lep import inputs as lep_inputs
from langshift.tokenization import chat_templates as ct
from langshift.tokenization.instruct_tokens import write_instruct_tokenizer
from langshift.tokenization.tokenizer import load_tokenizer
from langshift.tokenization.tokenizer_files import read_tokenizer_config, read_tokenizer_json
from langshift.tokenization.tokenizer_metadata import NAMED_SPECIAL_TOKENS

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TOOL_USE = (
    "{{ bos_token }}[tools]{% for m in messages %}{{ m['role'] + ': ' + m['content'] + "
    "eos_token }}{% endfor %}"
)
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "  Привет, мир!\n"},
    {"role": "assistant", "content": "Здравствуйте."},
]


def _copy(bpe_dir, directory, config_update=None, files=None):
  shutil.copytree(bpe_dir, directory)
  config = json.loads((directory / "tokenizer_config.json").read_text())
  config.update(config_update or {})
  (directory / "tokenizer_config.json").write_text(json.dumps(config))
  for name, text in (files or {}).items():
    (directory / name).parent.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
  return str(directory)


def _assert_renders_like_transformers(directory):
  from transformers import AutoTokenizer

  auto, ours = AutoTokenizer.from_pretrained(directory), load_tokenizer(directory)
  for gen in (False, True):
    messages = CONVERSATION[:-1] if gen else CONVERSATION
    want = auto.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    assert (
        ct.render_chat(
            messages,
            ours.chat_template,
            special_tokens_map=ours.special_tokens_map,
            add_generation_prompt=gen,
        )
        == want
    )
  assert chat_renderer(ours)(CONVERSATION[:-1]) == auto.apply_chat_template(
      CONVERSATION[:-1], tokenize=False, add_generation_prompt=True
  )
  want_ids = auto.apply_chat_template(CONVERSATION, tokenize=True, return_dict=False)
  text = ct.render_chat(
      CONVERSATION, ours.chat_template, special_tokens_map=ours.special_tokens_map
  )
  assert ours.encode(text) == list(want_ids)
  return auto, ours


def _assert_surgery_keeps_templates(directory, auto, tmp_path):
  """LEP's file surgery reads the same templates and writes a directory that loads to them."""
  from transformers import AutoTokenizer

  out = str(tmp_path / "instruct_out")
  write_instruct_tokenizer(out, read_tokenizer_json(directory), directory)
  assert AutoTokenizer.from_pretrained(out).chat_template == auto.chat_template
  assert load_tokenizer(out).chat_templates == load_tokenizer(directory).chat_templates


def test_jinja_file_wins_over_a_different_config_field(tmp_path, bpe_dir):
  directory = _copy(bpe_dir, tmp_path / "tok", files={"chat_template.jinja": CHATML})
  auto, ours = _assert_renders_like_transformers(directory)
  assert auto.chat_template == CHATML != LLAMA3_STYLE_TEMPLATE
  assert ours.chat_template == CHATML and ours.chat_templates == {"default": CHATML}
  # The surgery reader used to keep the config field (LLAMA3_STYLE_TEMPLATE) here.
  assert read_tokenizer_config(directory)["chat_template"] == CHATML
  _assert_surgery_keeps_templates(directory, auto, tmp_path)


def test_list_of_named_templates(tmp_path, bpe_dir):
  named = [{"name": "default", "template": CHATML}, {"name": "tool_use", "template": TOOL_USE}]
  directory = _copy(bpe_dir, tmp_path / "tok", {"chat_template": named})
  auto, ours = _assert_renders_like_transformers(directory)
  assert ours.chat_templates == auto.chat_template == {"default": CHATML, "tool_use": TOOL_USE}
  assert ours.chat_template == auto.get_chat_template() == CHATML
  assert read_tokenizer_config(directory)["chat_template"] == named
  _assert_surgery_keeps_templates(directory, auto, tmp_path)


def test_template_files_replace_every_config_template(tmp_path, bpe_dir):
  from transformers import AutoTokenizer

  named = [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]
  # chat_template.jinja drops the config's named templates, tool_use included.
  directory = _copy(
      bpe_dir, tmp_path / "file", {"chat_template": named}, {"chat_template.jinja": CHATML}
  )
  _assert_renders_like_transformers(directory)
  assert load_tokenizer(directory).chat_templates == {"default": CHATML}
  # additional_chat_templates/NAME.jinja adds named templates next to the default file.
  directory = _copy(
      bpe_dir,
      tmp_path / "dir",
      {"chat_template": named},
      {"chat_template.jinja": CHATML, "additional_chat_templates/tool_use.jinja": TOOL_USE},
  )
  auto, ours = _assert_renders_like_transformers(directory)
  assert ours.chat_templates == auto.chat_template == {"default": CHATML, "tool_use": TOOL_USE}
  assert read_tokenizer_config(directory)["chat_template"] == [
      {"name": "default", "template": CHATML},
      {"name": "tool_use", "template": TOOL_USE},
  ]
  # An export (checkpoint or run folder) keeps the named templates.
  from langshift.checkpoints.hf_export import copy_tokenizer_files

  os.makedirs(tmp_path / "exported")
  copy_tokenizer_files(directory, str(tmp_path / "exported"))
  assert load_tokenizer(str(tmp_path / "exported")).chat_templates == ours.chat_templates
  # No default: transformers refuses to pick one, we have no chat template.
  directory = _copy(
      bpe_dir, tmp_path / "no_default", files={"additional_chat_templates/tool_use.jinja": TOOL_USE}
  )
  assert (
      load_tokenizer(directory).chat_templates
      == AutoTokenizer.from_pretrained(directory).chat_template
      == {"tool_use": TOOL_USE}
  )
  assert load_tokenizer(directory).chat_template is None


SPECIAL_CASES = {
    # Without added_tokens_decoder the legacy map overrides the config, not only fills gaps.
    "map_overrides": (
        {},
        {
            "bos_token": "<s>",
            "eos_token": {"content": "</s>", "lstrip": False},
            "unk_token": "<|im_end|>",
        },
    ),
    # With added_tokens_decoder the legacy map is not read at all.
    "map_ignored": ({"added_tokens_decoder": {}}, {"bos_token": "<s>", "unk_token": "<|im_end|>"}),
    "extra_over_additional": (
        {"additional_special_tokens": ["<|im_start|>"], "extra_special_tokens": ["<|im_end|>"]},
        None,
    ),
    "additional_from_map": ({}, {"additional_special_tokens": ["<|im_end|>"]}),
    "model_specific": (
        {"image_token": "<|im_start|>", "extra_special_tokens": {"audio_token": "<|im_end|>"}},
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(SPECIAL_CASES))
def test_special_tokens_resolve_like_transformers(case, tmp_path, bpe_dir):
  from transformers import AutoTokenizer

  config, legacy_map = SPECIAL_CASES[case]
  files = {} if legacy_map is None else {"special_tokens_map.json": json.dumps(legacy_map)}
  directory = _copy(bpe_dir, tmp_path / "tok", config, files)
  auto, ours = AutoTokenizer.from_pretrained(directory), load_tokenizer(directory)
  want = {k: str(getattr(auto, k)) for k in NAMED_SPECIAL_TOKENS if getattr(auto, k) is not None}
  assert ours.special_tokens_map == want
  assert (ours.bos_id, ours.eos_id, ours.pad_id) == (
      auto.bos_token_id,
      auto.eos_token_id,
      auto.pad_token_id,
  )
  assert set(auto.all_special_tokens) <= set(ours.special_tokens)
  if auto.extra_special_tokens:
    assert list(ours.metadata.extra_special_tokens) == [str(t) for t in auto.extra_special_tokens]
  # LEP's surgery names the same tokens.
  lep_names = {
      k: v for k, v in want.items() if k in ("bos_token", "eos_token", "unk_token", "pad_token")
  }
  assert lep_inputs.special_token_strings(directory) == lep_names
  assert {k: read_tokenizer_config(directory)[k] for k in want} == want


def test_eos_ids_add_generation_config_ids(tmp_path, bpe_dir, sp_model):
  ours = load_tokenizer(bpe_dir)
  eot, end = ours.token_to_id("<|eot_id|>"), ours.token_to_id("<|end_of_text|>")
  assert ours.eos_ids == (eot,)
  directory = tmp_path / "tok"
  _copy(
      bpe_dir,
      directory,
      files={
          "generation_config.json": json.dumps({"bos_token_id": 0, "eos_token_id": [end, eot, end]})
      },
  )
  assert load_tokenizer(str(directory)).eos_ids == (eot, end)
  (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": end}))
  assert load_tokenizer(str(directory)).eos_ids == (eot, end)
  # A SentencePiece model reads the generation config (and tokenizer config) next to it.
  sp_dir = tmp_path / "sp"
  sp_dir.mkdir()
  shutil.copy(sp_model, sp_dir / "tokenizer.model")
  (sp_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 5]}))
  sp = load_tokenizer(str(sp_dir / "tokenizer.model"))
  assert sp.eos_id == 2 and sp.eos_ids == (2, 5)
