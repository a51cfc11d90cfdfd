"""A finished stage gives back what it held (issue 31): its model, its compiled programs."""

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from langshift import memory
from langshift.generation.decode import make_generate_fn
from langshift.models.config import ModelConfig
from langshift.models.llama import LlamaDecoder
from langshift.recipes.stages import StageRunner

TINY = ModelConfig(
    vocab_size=64,
    hidden_size=16,
    intermediate_size=32,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    max_position_embeddings=32,
)


class _Model:
  """Params and the jitted generator a stage makes; the back reference is the kind of cycle a
  run object and its closures form, which only the garbage collector frees."""

  def __init__(self):
    tokens = jnp.ones((1, 4), jnp.int32)
    self.params = LlamaDecoder(TINY).init(jax.random.PRNGKey(0), tokens)["params"]
    self.generate = make_generate_fn(TINY, max_new_tokens=2)
    self.owner = self


def test_a_finished_stage_releases_its_models_and_compiled_programs(tmp_path):
  runner = StageRunner(str(tmp_path), log=lambda _: None)
  held: dict[str, weakref.ref] = {}

  def body():
    model = _Model()
    out = model.generate(
        model.params, np.ones((1, 4), np.int32), np.ones((1, 4), np.int32), jax.random.PRNGKey(1)
    )
    held["model"] = weakref.ref(model)
    held["params"] = weakref.ref(jax.tree.leaves(model.params)[0])
    held["generate"] = weakref.ref(model.generate)
    return {"generated": int(np.asarray(out.lengths).sum())}

  gc.disable()  # what a stage leaves must be gone when the runner returns, not at the next gc
  try:
    summary = runner.run("generate", str(tmp_path / "generate"), body, inputs={})
    alive = sorted(name for name, ref in held.items() if ref() is not None)
  finally:
    gc.enable()
  assert alive == []
  assert make_generate_fn.cache_info().currsize == 0
  assert summary["generated"] == 2
  assert 0 < summary["peak_rss_gib"] < 1e3


def test_phases_nest_and_keep_the_peaks_inside_them():
  log = memory.PhaseLog()
  with log.phase("outer") as outer:
    with log.phase("inner") as inner:
      block = np.ones(64 << 20, np.uint8)  # 64 MiB, touched
      del block
    with log.phase("after") as after:
      pass
  assert [p.name for p in log.phases] == ["inner", "after", "outer"]
  assert inner.peak_bytes >= inner.start_bytes + (60 << 20)
  assert outer.peak_bytes >= inner.peak_bytes
  if after.exact:  # the peak was reset when "after" began: the 64 MiB are not in it
    assert after.peak_bytes < inner.peak_bytes
  assert [inner.depth, outer.depth] == [1, 0]


def test_the_process_peak_survives_the_phases_resets():
  # Each phase resets the kernel's mark (VmHWM, which `time -v` reports): the process's peak
  # since it started is kept by memory.process_peak_bytes.
  with memory.phase("big") as big:
    block = np.ones(256 << 20, np.uint8)  # 256 MiB, touched
    del block
  with memory.phase("small") as small:
    pass
  assert memory.process_peak_bytes() >= big.peak_bytes >= big.start_bytes + (250 << 20)
  if small.exact:  # the kernel's mark forgot the 256 MiB; the process's peak did not
    assert memory.peak_rss_bytes() < big.peak_bytes <= memory.process_peak_bytes()
