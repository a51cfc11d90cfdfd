"""Registers local corpus files as a TFDS dataset (array_record), readable with `tfds.data_source`.

    build_tfds_corpus("ru_wiki", "/corpora/ru/*.jsonl", data_dir="/tfds", fields=("text",))
    source_config(format="tfds", tfds_name="langshift_corpus/ru_wiki", data_dir="/tfds")

The prepared dataset is self-describing: reading it needs neither this module nor TensorFlow
(`tfds.data_source` rebuilds a read-only builder from the files). Records keep the order of the
input files, so scores computed over the files stay aligned with the TFDS indices.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import tensorflow_datasets as tfds

from langshift.data import sources as sources_lib


class LangshiftCorpus(tfds.core.GeneratorBasedBuilder):
  """String fields of local JSONL / text / Parquet records; one builder config per corpus."""

  VERSION = tfds.core.Version("1.0.0")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # No checksums or metadata files live next to this code. (TFDS 4.9's lookup of them imports
    # `importlib_resources`, which it only installs for Python < 3.9.)
    return None

  def __init__(
      self,
      *,
      paths: Sequence[str] = (),
      file_format_in: str = "jsonl",
      fields: Sequence[str] = ("text",),
      text_unit: str = "line",
      **kwargs,
  ):
    self._paths = list(paths)
    self._format_in = file_format_in
    self._fields = tuple(fields)
    self._text_unit = text_unit
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    features = tfds.features.FeaturesDict({f: tfds.features.Text() for f in self._fields})
    # DatasetInfo directly: `dataset_info_from_configs` looks for metadata files next to the code.
    # disable_shuffling: keep the file order (keys are record indices), not TFDS's hash order.
    return tfds.core.DatasetInfo(
        builder=self,
        features=features,
        disable_shuffling=True,
        description="Local corpus registered by langshift.",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    if self._format_in == "jsonl":
      source = sources_lib.JsonlSource(self._paths, self.builder_config.name, "raise")
    elif self._format_in == "text":
      source = sources_lib.TextSource(
          self._paths,
          self.builder_config.name,
          "raise",
          text_field=self._fields[0],
          unit=self._text_unit,
      )
    elif self._format_in == "parquet":
      source = sources_lib.ParquetSource(self._paths, self.builder_config.name, self._fields)
    else:
      raise ValueError(f"unknown input format {self._format_in!r}")
    for i in range(len(source)):
      where, record = source[i]
      yield i, {f: _as_text(record, f, where) for f in self._fields}


def _as_text(record, field, where) -> str:
  if field not in record:
    raise sources_lib.RecordError(f"{where}: record has no field {field!r}")
  value = record[field]
  # Structured fields (chat `messages`) are stored as JSON; the chat formatter decodes them.
  return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def build_tfds_corpus(
    name: str,
    path: str,
    data_dir: str,
    *,
    file_format: str = "jsonl",
    fields: Sequence[str] = ("text",),
    text_unit: str = "line",
) -> str:
  """Prepares `langshift_corpus/<name>` in `data_dir` from the files matching `path`.

  Returns the dataset name to pass to `tfds.data_source` (or a source config's `tfds_name`).
  """
  files = sources_lib.expand_paths(path)
  if not files:
    raise ValueError(f"build_tfds_corpus: {path!r} matched no files")
  builder = LangshiftCorpus(
      paths=files,
      file_format_in=file_format,
      fields=fields,
      text_unit=text_unit,
      data_dir=data_dir,
      file_format="array_record",
      config=tfds.core.BuilderConfig(name=name),
  )
  builder.download_and_prepare()
  return f"{builder.name}/{name}"
