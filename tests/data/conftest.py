"""Session fixtures of the data tests (helpers live in `data_fixtures`)."""

import pytest
from data_fixtures import write_bpe_tokenizer, write_sentencepiece_model


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory):
  return write_bpe_tokenizer(tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="session")
def bpe_tokenizer(bpe_dir):
  from langshift.tokenization.tokenizer import load_tokenizer

  return load_tokenizer(bpe_dir)


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory):
  return write_sentencepiece_model(tmp_path_factory.mktemp("sp") / "tokenizer.model")
