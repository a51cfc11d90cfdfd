"""The one tokenizer interface: Hugging Face `tokenizer.json` directories and SentencePiece models.

`load_tokenizer(path)` returns a `Tokenizer` whose ids are exactly those of the `tokenizers` /
`sentencepiece` library (and so of `transformers.AutoTokenizer` on the same files). Two backends
sit behind it because the target checkpoints ship one or the other: Llama-3, Qwen2 and SmolLM2 a
byte-level BPE `tokenizer.json`, Mistral v0.1 and the LEP-trained vocabularies a SentencePiece
`.model`.

Besides ids, both backends give character offsets per token (`encode_batch_with_offsets`): the
chat-template loss masks and the paragraph boundaries of LEP packing are computed on the string
and mapped onto tokens through them.

Special tokens, chat templates and the EOS ids generation stops on come from the directory's
metadata files, read by `tokenizer_metadata.read_tokenizer_metadata` (transformers' precedence).
A run's `data.chat_template` replaces the directory's default template
(`load_tokenizer(path, chat_template=...)`), so that everything the run renders through the
tokenizer (training data, evaluations, generators) uses the one template.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import os
import re
from collections.abc import Sequence

from langshift.tokenization import chat_templates
from langshift.tokenization.tokenizer_metadata import (
    DEFAULT_TEMPLATE,
    TokenizerMetadata,
    read_tokenizer_metadata,
)

Offsets = list[tuple[int, int]]


class Tokenizer(abc.ABC):
  """Token ids <-> text, special tokens and the chat template of one vocabulary."""

  path: str
  # The directory's tokenizer_config.json, chat templates, generation_config.json EOS ids.
  metadata: TokenizerMetadata
  # Strings of the named special tokens that are set (`{"bos_token": "<s>", ...}`).
  special_tokens_map: dict[str, str]

  @property
  def chat_template(self) -> str | None:
    """The template `transformers`' `apply_chat_template(messages)` renders, or None."""
    return self.metadata.chat_template

  @property
  def chat_templates(self) -> dict[str, str]:
    """Every named template ("default", "tool_use", ...)."""
    return self.metadata.chat_templates

  @abc.abstractmethod
  def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
    """Ids of `text`; `add_special_tokens` adds what the tokenizer's post-processor adds (BOS)."""

  @abc.abstractmethod
  def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
    """`encode` over many texts at once, on all cores."""

  @abc.abstractmethod
  def encode_batch_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], Offsets]]:
    """Ids (no special tokens added) and per-token `(start, end)` character offsets into each text.

    A byte-fallback token covering part of a character may have `start == end`.
    """

  @abc.abstractmethod
  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    ...

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids, added tokens included (`len(AutoTokenizer)`)."""

  @abc.abstractmethod
  def id_to_token(self, i: int) -> str | None:
    ...

  @abc.abstractmethod
  def token_to_id(self, token: str) -> int | None:
    ...

  @property
  @abc.abstractmethod
  def special_tokens(self) -> list[str]:
    """Every special (control) token string of the vocabulary."""

  def _named_id(self, name: str) -> int | None:
    token = self.special_tokens_map.get(name)
    return None if token is None else self.token_to_id(token)

  @property
  def bos_id(self) -> int | None:
    return self._named_id("bos_token")

  @property
  def eos_id(self) -> int | None:
    return self._named_id("eos_token")

  @property
  def pad_id(self) -> int | None:
    return self._named_id("pad_token")

  @property
  def eos_ids(self) -> tuple[int, ...]:
    """The ids generation stops on: the EOS token's, then generation_config.json's
    `eos_token_id` (Llama-3-Instruct adds `<|eot_id|>` to `<|end_of_text|>`), deduplicated."""
    ids = [self.eos_id, *self.metadata.generation_eos_ids]
    return tuple(dict.fromkeys(int(i) for i in ids if i is not None))

  def __repr__(self):
    return f"{type(self).__name__}(path={self.path!r}, vocab_size={self.vocab_size})"


class HFTokenizer(Tokenizer):
  """A Hugging Face fast tokenizer directory: `tokenizer.json`, optional `tokenizer_config.json`."""

  def __init__(self, path: str):
    import tokenizers  # pylint: disable=import-outside-toplevel

    self.path = path
    self._tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    self.metadata = read_tokenizer_metadata(path)
    self.special_tokens_map = dict(self.metadata.special_tokens_map)

  def encode(self, text, add_special_tokens=False):
    return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

  def encode_batch(self, texts, add_special_tokens=False):
    # `encode_batch_fast` (tokenizers >= 0.20) skips the offset bookkeeping; both release the GIL
    # and use rayon threads.
    encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
    return [e.ids for e in encode(list(texts), add_special_tokens=add_special_tokens)]

  def encode_batch_with_offsets(self, texts):
    return [
        (e.ids, e.offsets) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)
    ]

  def decode(self, ids, skip_special_tokens=False):
    return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

  @property
  def vocab_size(self):
    return self._tok.get_vocab_size(with_added_tokens=True)

  def id_to_token(self, i):
    return self._tok.id_to_token(int(i))

  def token_to_id(self, token):
    return self._tok.token_to_id(token)

  @property
  def special_tokens(self):
    found = list(self.special_tokens_map.values()) + list(self.metadata.extra_special_tokens)
    found += [t.content for t in self._tok.get_added_tokens_decoder().values() if t.special]
    return list(dict.fromkeys(found))


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece `.model` file; a sibling `tokenizer_config.json` may add a chat template.

  Ids equal the `sentencepiece` library's, except that control-token strings in the text (`<s>`,
  `</s>`, `<unk>`: a rendered Mistral chat template holds them) become their ids, with no dummy
  prefix on the text that follows, as transformers' Llama/Mistral tokenizers do.
  """

  def __init__(self, path: str, num_threads: int | None = None):
    import sentencepiece  # pylint: disable=import-outside-toplevel
    from sentencepiece import sentencepiece_model_pb2  # pylint: disable=import-outside-toplevel

    self.path = path
    with open(path, "rb") as f:
      proto = f.read()
    self._sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
    # The same model without the dummy "▁" prefix, for text that follows a control token.
    model = sentencepiece_model_pb2.ModelProto.FromString(proto)
    model.normalizer_spec.add_dummy_prefix = False
    self._sp_inner = sentencepiece.SentencePieceProcessor(model_proto=model.SerializeToString())
    self._num_threads = num_threads or os.cpu_count() or 1
    self.metadata = read_tokenizer_metadata(os.path.dirname(path))
    self.special_tokens_map = {}
    for name, piece_id in (
        ("bos_token", self._sp.bos_id()),
        ("eos_token", self._sp.eos_id()),
        ("unk_token", self._sp.unk_id()),
        ("pad_token", self._sp.pad_id()),
    ):
      if piece_id >= 0:
        self.special_tokens_map[name] = self._sp.id_to_piece(piece_id)
    # The model's own control pieces, unless the sibling config names others (transformers'
    # Llama/Mistral tokenizers take the config's).
    self.special_tokens_map.update(self.metadata.special_tokens_map)
    specials = sorted(self.special_tokens, key=len, reverse=True)
    self._special_re = re.compile("|".join(re.escape(t) for t in specials)) if specials else None

  def _bos_prefix(self, add_special_tokens: bool) -> list[int]:
    # transformers' Llama/Mistral SentencePiece tokenizers add BOS only (add_eos_token=False).
    return [self._sp.bos_id()] if add_special_tokens and self._sp.bos_id() >= 0 else []

  def _has_special(self, text: str) -> bool:
    return self._special_re is not None and self._special_re.search(text) is not None

  def _encode_with_specials(self, text: str) -> tuple[list[int], Offsets]:
    ids, offsets, pos = [], [], 0
    for match in [*self._special_re.finditer(text), None]:
      end = match.start() if match else len(text)
      if end > pos:
        processor = self._sp if pos == 0 else self._sp_inner
        chunk = processor.encode(text[pos:end], return_type="offset_mapping")
        ids += chunk["ids"]
        offsets += [(s + pos, e + pos) for s, e in chunk["offsets"]]
      if match:
        ids.append(self._sp.piece_to_id(match.group()))
        offsets.append(match.span())
        pos = match.end()
    return ids, offsets

  def encode(self, text, add_special_tokens=False):
    if self._has_special(text):
      return self._bos_prefix(add_special_tokens) + self._encode_with_specials(text)[0]
    return self._bos_prefix(add_special_tokens) + self._sp.encode(text)

  def encode_batch(self, texts, add_special_tokens=False):
    prefix = self._bos_prefix(add_special_tokens)
    texts = list(texts)
    if any(self._has_special(t) for t in texts):
      return [self.encode(t, add_special_tokens) for t in texts]
    return [prefix + ids for ids in self._sp.encode(texts, num_threads=self._num_threads)]

  def encode_batch_with_offsets(self, texts):
    texts = list(texts)
    if any(self._has_special(t) for t in texts):
      return [self._encode_with_specials(t) for t in texts]
    encoded = self._sp.encode(texts, return_type="offset_mapping", num_threads=self._num_threads)
    return [(e["ids"], [tuple(o) for o in e["offsets"]]) for e in encoded]

  def decode(self, ids, skip_special_tokens=False):
    # SentencePiece never renders control pieces (BOS/EOS), so both settings decode alike.
    del skip_special_tokens
    return self._sp.decode([int(i) for i in ids])

  @property
  def vocab_size(self):
    return self._sp.get_piece_size()

  def id_to_token(self, i):
    i = int(i)
    return self._sp.id_to_piece(i) if 0 <= i < self.vocab_size else None

  def token_to_id(self, token):
    i = self._sp.piece_to_id(token)
    # piece_to_id maps unknown strings to the unk id; only the unk piece itself may return it.
    return None if i == self._sp.unk_id() and token != self._sp.id_to_piece(i) else i

  @property
  def special_tokens(self):
    return [
        self._sp.id_to_piece(i)
        for i in range(self.vocab_size)
        if self._sp.is_control(i) or self._sp.is_unknown(i)
    ]


def load_tokenizer(path: str, *, chat_template: str | None = None) -> Tokenizer:
  """Loads an HF tokenizer directory (with `tokenizer.json`) or a SentencePiece `.model` file.

  A directory holding only `tokenizer.model` loads that SentencePiece model. Special tokens, chat
  templates and `eos_ids` come from the directory's metadata files (the `.model` file's directory
  for a SentencePiece model), read by `read_tokenizer_metadata`. `chat_template` (a
  `data.chat_template` value) replaces the directory's default template; see
  `with_chat_template`.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, "tokenizer.json")):
      tokenizer = HFTokenizer(path)
    elif os.path.exists(os.path.join(path, "tokenizer.model")):
      tokenizer = SentencePieceTokenizer(os.path.join(path, "tokenizer.model"))
    else:
      raise FileNotFoundError(f"{path}: neither tokenizer.json nor tokenizer.model found")
  elif path.endswith(".model") and os.path.exists(path):
    tokenizer = SentencePieceTokenizer(path)
  else:
    raise FileNotFoundError(f"{path}: expected an HF tokenizer directory or a SentencePiece .model")
  return with_chat_template(tokenizer, chat_template)


def with_chat_template(tokenizer: Tokenizer, chat_template: str | None) -> Tokenizer:
  """`tokenizer` whose default chat template is `chat_template`: a built-in name or a jinja
  string (`chat_templates.resolve_chat_template`); None, "" or "tokenizer" keep its own.

  A base checkpoint ships no template, and an instruct one may ship another than the run
  trains with: the run's template wins. The token that closes an assistant turn in it (e.g.
  `<|eot_id|>`) joins the ids generation stops on (`eos_ids`). Returns a shallow copy (the
  vocabulary is shared); an unknown name raises `ChatTemplateError`.
  """
  if chat_template in (None, "", "tokenizer"):
    return tokenizer
  template = chat_templates.resolve_chat_template(chat_template, tokenizer.chat_template)
  templates = {**tokenizer.metadata.chat_templates, DEFAULT_TEMPLATE: template}
  # Answers in the template end with its turn-closing token: generation stops on it too.
  eos = tuple(tokenizer.metadata.generation_eos_ids)
  turn_end = chat_templates.assistant_turn_end(
      template, tokenizer.special_tokens, tokenizer.special_tokens_map
  )
  turn_end_id = None if turn_end is None else tokenizer.token_to_id(turn_end)
  if turn_end_id is not None and turn_end_id not in tokenizer.eos_ids:
    eos = (*tokenizer.eos_ids, turn_end_id)
  replaced = copy.copy(tokenizer)
  replaced.metadata = dataclasses.replace(
      tokenizer.metadata, chat_templates=templates, generation_eos_ids=eos
  )
  return replaced
