"""Every numeric and choice setting is checked before the model loads: a one-line error naming
the key, its value and what is allowed, and nothing written to the workdir."""

import pytest
from train_testing import SyntheticBatches, tiny_config

from langshift.train.trainer import setup


def _set(config, key, value):
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    node = node[name]
  node[leaf] = value


@pytest.mark.parametrize(
    "key,value,match",
    [
        (
            "optimizer.learning_rate",
            -0.01,
            r"config\.optimizer\.learning_rate=-0\.01; expected > 0$",
        ),
        ("optimizer.learning_rate", 0.0, r"config\.optimizer\.learning_rate=0 trains nothing"),
        ("checkpoint.keep", 0, r"config\.checkpoint\.keep=0; expected >= 1"),
        ("checkpoint.every_steps", 0, r"config\.checkpoint\.every_steps=0; expected >= 1"),
        ("train.log_every", -1, r"config\.train\.log_every=-1; expected >= 0"),
        ("train.microbatches", 0, r"config\.train\.microbatches=0; expected >= 1"),
        ("train.global_batch_size", 0, r"config\.train\.global_batch_size=0; expected >= 1"),
        ("train.seq_len", 1, r"config\.train\.seq_len=1; expected >= 2"),
        ("train.steps", -5, r"config\.train\.steps=-5; expected >= 0"),
        ("optimizer.schedule", "cosin", r"config\.optimizer\.schedule='cosin'; expected one of"),
        ("optimizer.b2", 1.0, r"config\.optimizer\.b2=1\.0; expected in \[0, 1\)$"),
        ("optimizer.warmup_steps", -1, r"config\.optimizer\.warmup_steps=-1"),
        ("model.dtype", "fp16", r"config\.model\.dtype='fp16'; expected one of"),
        ("checkpoint.export_dtype", "int8", r"config\.checkpoint\.export_dtype='int8'"),
        ("data.tokenize_batch_size", 0, r"config\.data\.tokenize_batch_size=0; expected >= 1"),
        ("data.prefetch_batches", -1, r"config\.data\.prefetch_batches=-1; expected >= 0"),
        ("resume_policy", "loose", r"config\.resume_policy='loose'; expected one of"),
        ("mesh.num_devices", 99, r"config\.mesh\.num_devices=99; expected in \[0, 8\]"),
    ],
)
def test_a_bad_setting_is_refused_before_anything_loads(tmp_path, key, value, match):
  config = tiny_config()
  _set(config, key, value)
  with pytest.raises(ValueError, match=match) as e:
    setup(config, str(tmp_path / "w"), train_iter=SyntheticBatches(8, 16, 64))
  assert "\n" not in str(e.value)
  assert not (tmp_path / "w").exists()


def test_the_global_batch_must_split_over_the_data_parallel_devices(tmp_path):
  config = tiny_config(global_batch_size=4)
  config.mesh.num_devices = 0
  config.mesh.ici.update(data=8, fsdp=1)
  with pytest.raises(
      ValueError,
      match=r"config\.train\.global_batch_size=4 is not divisible by the mesh's data-parallel "
      r"size 8",
  ):
    setup(config, str(tmp_path / "w"), train_iter=SyntheticBatches(4, 16, 64))


def test_the_sequence_length_must_fit_the_model_positions(tmp_path):
  config = tiny_config(seq_len=32)
  config.model.max_position_embeddings = 16
  with pytest.raises(
      ValueError,
      match=r"config\.train\.seq_len=32 exceeds the model's max_position_embeddings=16 "
      r"\(config\.model\)",
  ):
    setup(config, str(tmp_path / "w"), train_iter=SyntheticBatches(8, 32, 64))
