"""A small BPE `tokenizers.Tokenizer` trained in-process (ids 0/1/2 = <pad>/<s>/</s>)."""

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

CORPUS = [
    "the cat sat on the mat.",
    "a dog ran to the park!",
    "we should go home now.",
    "is it time to eat? yes it is.",
    "- one\n- two\n# title",
    "I like red and blue.",
] * 4


def toy_tokenizer(vocab_size=97):
  tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"], show_progress=False
  )
  tok.train_from_iterator(CORPUS, trainer)
  return tok
