"""8 simulated devices (data 2 x fsdp 2 x tensor 2): same output, and the expected layouts."""

import json
import os

import flax.linen as nn
import hf_testing
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from langshift.checkpoints.hf_import import load_hf_model
from langshift.models.llama import LlamaDecoder, abstract_params
from langshift.parallel import sharding
from langshift.parallel.mesh import create_mesh, fill_axis_sizes

GOLDEN = os.path.join(os.path.dirname(__file__), "golden_partition_specs.json")


def _mesh():
  assert jax.device_count() == 8, "tests/conftest.py must set 8 simulated devices"
  return create_mesh({"data": 2, "fsdp": 2, "tensor": 2})


def _spec_table(cfg, mesh):
  shardings = sharding.logical_shardings(abstract_params(cfg), mesh, sharding.DEFAULT_LOGICAL_RULES)
  flat = jax.tree_util.tree_flatten_with_path(shardings)[0]
  return {
      "/".join(k.key for k in path): [list(a) if isinstance(a, tuple) else a for a in s.spec]
      for path, s in flat
  }


def test_forward_on_8_device_mesh_equals_single_device(tmp_path):
  hf_testing.make_hf_model("llama31", tmp_path)
  cfg, params = load_hf_model(str(tmp_path))
  mesh = _mesh()
  _, sharded = load_hf_model(str(tmp_path), mesh=mesh)
  # Every leaf really is distributed as the rules say (not silently replicated).
  q = sharded["layers"]["self_attn"]["q_proj"]["kernel"]
  assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
  assert q.addressable_shards[0].data.shape == (3, 32, 2, 24)
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(4, 24))
  model = LlamaDecoder(cfg)
  single = np.asarray(model.apply({"params": params}, jnp.asarray(tokens)))

  @jax.jit
  def forward(p, t):
    with nn.logical_axis_rules(sharding.DEFAULT_LOGICAL_RULES):
      return model.apply({"params": p}, t)

  with jax.set_mesh(mesh):
    t = jax.device_put(tokens, sharding.batch_sharding(mesh))
    out = forward(sharded, t)
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(out), single, atol=1e-5)


def test_partition_specs_match_golden_file():
  cfg = hf_testing_config()
  table = _spec_table(cfg, _mesh())
  if os.environ.get("UPDATE_GOLDEN"):
    with open(GOLDEN, "w") as f:
      json.dump(table, f, indent=1, sort_keys=True)
  with open(GOLDEN) as f:
    assert table == json.load(f)


def hf_testing_config():
  from langshift.checkpoints.hf_config import model_config_from_hf

  return model_config_from_hf(hf_testing.CONFIGS["qwen2"]().to_dict())


def test_mesh_axis_fill():
  assert fill_axis_sizes({"data": 2, "fsdp": -1, "tensor": 2}, 8, "ici") == (2, 2, 2)
  assert fill_axis_sizes({"fsdp": -1}, 8, "ici") == (1, 8, 1)
  with pytest.raises(ValueError, match="mesh.ici"):
    fill_axis_sizes({"data": 3, "fsdp": -1}, 8, "ici")
  with pytest.raises(ValueError, match="unknown axis 'model'"):
    fill_axis_sizes({"model": 2}, 8, "ici")
