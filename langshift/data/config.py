"""Schema of the `data` section of an experiment config, with documented defaults.

    config.data = default_data_config()
    config.data.sources.wiki = source_config(path="/corpora/ru/*.jsonl", weight=0.7)
    config.data.sources.chat = source_config(path="gs://b/sft/*.parquet", template="chat",
                                             weight=0.3)

Sources are keyed by name so that command-line overrides address them
(`--config.data.sources.wiki.weight=0.5`); a list of source configs with a `name` field is
accepted too. Every field name is checked: a misspelt one is an error, not a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from langshift.config_lib import check_fields

FORMATS = ("jsonl", "text", "parquet", "tfds")
TEMPLATES = ("none", "chat", "pair", "inscp", "response")
LOSSES = ("auto", "all", "assistant")
TEXT_UNITS = ("line", "paragraph", "file")
PACKINGS = ("concat", "greedy", "boundary", "none")
BOUNDARY_REMAINDERS = ("pad", "drop")
OVERLONG = ("split", "truncate")
MIXERS = ("weighted",)
ON_BAD_RECORD = ("raise", "skip")

# Source fields and their defaults. Comments document each field.
_SOURCE_FIELDS: dict[str, Any] = dict(
    name="",  # Only for list-style `sources`; the key otherwise.
    # File glob, or several separated by ","; local or any etils.epath scheme (gs://...).
    path="",
    format="jsonl",  # one of FORMATS
    weight=1.0,  # Relative weight in the weighted mixture (normalised over sources).
    # How a record becomes tokens:
    #   none:     plain text, [bos] + text + [eos]                      (CPT: LEP, native alignment)
    #   chat:     `messages_field` rendered with the chat template     (SFT)
    #   pair:     user = `prompt_field`, assistant = `response_field`  (non-instructional pairs)
    #   inscp:    empty user turn, `text_field` as the assistant reply (InsCP)
    #   response: empty user turn, `response_field` as the reply       (response tuning)
    template="none",
    # Which tokens carry loss. auto: everything for none/inscp, assistant turns otherwise.
    loss="auto",
    text_field="text",
    messages_field="messages",
    prompt_field="prompt",
    response_field="response",
    # InsCP (Chen & Lee 2024, arXiv:2405.20175): every record's `prompt_field` (the question) and
    # `response_field` (the answer) become two samples, {text_field: question} then
    # {text_field: answer}; perplexity scores then align with these samples.
    qa_split=False,
    text_unit="line",  # format=text: one document per line, per blank-line paragraph, or per file
    # format=tfds: `tfds.data_source(tfds_name, split=split, data_dir=data_dir or None)`.
    tfds_name="",
    split="train",
    data_dir="",
    # Perplexity selection (InsCP: keep low-PPL data). Scores come from a record field or from a
    # file aligned with the records (.npy, or one float per line); NaN scores are dropped.
    perplexity_field="",
    perplexity_scores="",
    min_perplexity=config_dict.placeholder(float),
    max_perplexity=config_dict.placeholder(float),
)


def source_config(**fields) -> ml_collections.ConfigDict:
  """A source config with defaults for the fields not given; unknown fields are an error."""
  check_fields(fields, _SOURCE_FIELDS, "source")
  cfg = ml_collections.ConfigDict(
      {
          k: (
              v if not isinstance(v, config_dict.FieldReference) else config_dict.placeholder(float)
          )
          for k, v in _SOURCE_FIELDS.items()
      }
  )
  for k, v in fields.items():
    cfg[k] = tuple(v) if isinstance(v, list) else v
  return cfg


def default_data_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.sources = ml_collections.ConfigDict()  # name -> source_config(...)
  c.mixer = "weighted"  # one of MIXERS
  # Weighted mixer: the stream is cut into blocks of this many examples; each block holds every
  # source in its weight's proportion (to within one example), in a seeded random order.
  c.mixture_block = 1024
  c.shuffle = True  # Shuffle each source (a new permutation every epoch).
  # "tokenizer" (the tokenizer's own template), a built-in name
  # (llama3, mistral, openchat, tulu, chatml), or a jinja template string. Any other value than
  # "tokenizer" is the run's template, in place of the tokenizer's own if it has one: the run's
  # tokenizer/ and exports carry it (chat_template.jinja), and the run's evaluators and the
  # recipes' generators of its student, untuned and tuned, render in it.
  c.chat_template = "tokenizer"
  c.add_bos = True  # template=none: prepend BOS ...
  c.add_eos = True  # ... and append EOS to each document.
  # Packing of examples into rows of seq_len:
  #   concat:   token stream cut into full rows (documents may straddle rows)
  #   greedy:   whole examples, next-fit; a row is padded when the next one does not fit
  #   boundary: LEP: every row starts at a document or paragraph (newline) boundary
  #   none:     one example per row
  c.packing = "concat"
  # boundary packing: a paragraph that does not fit the rest of a row moves to the next row
  # ("pad", no text lost) or fills the row and its rest is dropped ("drop", no padding).
  c.boundary_remainder = "pad"
  c.overlong = "split"  # An example longer than a row: cut into row-sized pieces, or truncated.
  c.on_bad_record = "raise"  # Malformed record: error with file:line, or "skip" (counted, logged).
  c.tokenize_batch_size = 128  # Records tokenized per batched call.
  c.read_threads = 2  # Threads reading + tokenizing chunks ahead of the packer.
  c.prefetch_chunks = 8  # Chunks read ahead.
  c.prefetch_batches = 2  # Batches packed ahead in a background thread (0: none).

  # InsCP wrapper (template=inscp): Chen & Lee 2024, arXiv:2405.20175.
  c.inscp = ml_collections.ConfigDict()
  # Newline after the assistant header: None keeps what the template renders, False strips it,
  # True makes sure one "\n" ends the header.
  c.inscp.newline_after_header = config_dict.placeholder(bool)
  c.inscp.mask_header = False  # Ablation: no loss on the template's header tokens.
  return c


def _check_choice(value, choices, where):
  if value not in choices:
    raise ValueError(f"{where}={value!r}; expected one of {choices}")


def resolve_sources(data_config) -> list[ml_collections.ConfigDict]:
  """Validated, complete source configs (defaults filled in) in a fixed order, with names."""
  sources = data_config.sources
  if isinstance(sources, Mapping) or isinstance(sources, ml_collections.ConfigDict):
    items = [(name, dict(src)) for name, src in sources.items()]
  else:
    items = [(dict(src).get("name") or f"source{i}", dict(src)) for i, src in enumerate(sources)]
  if not items:
    raise ValueError("data.sources is empty: configure at least one source")
  resolved, names = [], set()
  for name, fields in items:
    where = f"data.sources.{name}"
    check_fields(fields, _SOURCE_FIELDS, where)
    if name in names:
      raise ValueError(f"duplicate source name {name!r}")
    names.add(name)
    fields["name"] = name
    src = source_config(**fields)
    _check_choice(src.format, FORMATS, f"{where}.format")
    _check_choice(src.template, TEMPLATES, f"{where}.template")
    _check_choice(src.loss, LOSSES, f"{where}.loss")
    _check_choice(src.text_unit, TEXT_UNITS, f"{where}.text_unit")
    if src.format == "tfds" and not src.tfds_name:
      raise ValueError(f"{where}: format=tfds needs tfds_name")
    if src.format != "tfds" and not src.path:
      raise ValueError(f"{where}: path is empty")
    if not src.weight > 0:
      raise ValueError(f"{where}.weight={src.weight}; weights must be positive")
    resolved.append(src)
  return resolved


def validate_data_config(data_config) -> list[ml_collections.ConfigDict]:
  """Checks every field of a data config; returns the resolved sources."""
  known = default_data_config()
  check_fields(dict(data_config), known, "data")
  check_fields(dict(data_config.inscp), known.inscp, "data.inscp")
  _check_choice(data_config.mixer, MIXERS, "data.mixer")
  _check_choice(data_config.packing, PACKINGS, "data.packing")
  _check_choice(data_config.boundary_remainder, BOUNDARY_REMAINDERS, "data.boundary_remainder")
  _check_choice(data_config.overlong, OVERLONG, "data.overlong")
  _check_choice(data_config.on_bad_record, ON_BAD_RECORD, "data.on_bad_record")
  if data_config.tokenize_batch_size < 1 or data_config.mixture_block < 1:
    raise ValueError("data.tokenize_batch_size and data.mixture_block must be positive")
  return resolve_sources(data_config)
