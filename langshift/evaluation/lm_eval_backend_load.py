"""The model behind the lm-eval backend: a Hugging Face directory or a langshift run's checkpoint.

`load_model(path)` decides by what `path` holds:

* a langshift workdir (`config.json` and `checkpoints/`): the run's architecture (its config, as
  the trainer resolves it, LoRA adapters included), its tokenizer copy (`<workdir>/tokenizer`,
  which carries the run's chat template), the params of the newest checkpoint (or `step`) read
  alone from the train state (no optimizer moments), placed on the run's own mesh
  (`config.mesh`, `config.logical_rules`);
* a Hugging Face directory (`config.json` and safetensors): one device, or an FSDP mesh over the
  first `fsdp` devices with langshift's default logical rules.

Nothing here imports lm-eval: it is what the backend and the tests share.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax


@dataclasses.dataclass
class LoadedModel:
  config: Any  # ModelConfig
  params: Any
  tokenizer: Any  # langshift.tokenization.Tokenizer
  mesh: jax.sharding.Mesh | None
  rules: tuple | None
  source: str  # "hf:<dir>" | "checkpoint:<workdir> step N"


def is_workdir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(
      os.path.join(path, "checkpoints")
  )


def load_model(
    path: str,
    *,
    step: int | None = None,
    dtype: str | None = None,
    chat_template: str | None = None,
    fsdp: int = 0,
) -> LoadedModel:
  """The model of a langshift workdir or an HF directory (see the module docstring)."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f"pretrained={path!r}: no such directory")
  if is_workdir(path):
    if fsdp:
      raise ValueError(f"fsdp={fsdp}: a langshift checkpoint runs on its run's own mesh")
    return _load_workdir(path, step=step, dtype=dtype, chat_template=chat_template)
  if step is not None:
    raise ValueError(f"step={step}: {path} is a Hugging Face directory, not a langshift workdir")
  if not os.path.isfile(os.path.join(path, "config.json")):
    raise FileNotFoundError(
        f"pretrained={path!r} is neither a langshift workdir (config.json + checkpoints/) nor a "
        "Hugging Face directory (config.json + safetensors)"
    )
  return _load_hf_dir(path, dtype=dtype, chat_template=chat_template, fsdp=fsdp)


def _load_hf_dir(path, *, dtype, chat_template, fsdp) -> LoadedModel:
  # pylint: disable=import-outside-toplevel
  from langshift.checkpoints.hf_import import load_hf_model
  from langshift.tokenization.tokenizer import load_tokenizer

  mesh = rules = None
  if fsdp:
    from langshift.parallel import sharding as sharding_lib
    from langshift.parallel.mesh import create_mesh
    from langshift.train.config import base_config

    if fsdp > jax.device_count():
      raise ValueError(f"fsdp={fsdp}: only {jax.device_count()} devices")
    mesh = create_mesh(dict(data=1, fsdp=fsdp, tensor=1), None, jax.devices()[:fsdp])
    rules = sharding_lib.rules_from_config(base_config().logical_rules)
  config, params = load_hf_model(
      path, mesh=mesh, rules=rules, **({"dtype": dtype} if dtype else {})
  )
  tokenizer = load_tokenizer(path, chat_template=chat_template)
  return LoadedModel(config, params, tokenizer, mesh, rules, f"hf:{path}")


def _load_workdir(workdir, *, step, dtype, chat_template) -> LoadedModel:
  # pylint: disable=import-outside-toplevel
  import flax.linen as nn
  import ml_collections
  import orbax.checkpoint as ocp

  from langshift.checkpoints.hf_import import param_shardings
  from langshift.models import lora as lora_lib
  from langshift.models.llama import abstract_params
  from langshift.parallel import sharding as sharding_lib
  from langshift.parallel.mesh import create_mesh
  from langshift.tokenization.tokenizer import load_tokenizer
  from langshift.train.trainer import resolve_model_config

  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    run = ml_collections.ConfigDict(json.load(f))
  config = resolve_model_config(run)
  if run.train.trainable == "lora":
    config = lora_lib.with_lora(config, run.train.lora)
  if dtype:
    config = config.replace(dtype=dtype)
  tokenizer_dir = os.path.join(workdir, "tokenizer")
  if not os.path.isdir(tokenizer_dir):
    tokenizer_dir = run.get("tokenizer") or run.get("init_from_hf") or ""
  if not tokenizer_dir:
    raise ValueError(f"{workdir}: the run had no tokenizer (config.tokenizer, init_from_hf)")
  tokenizer = load_tokenizer(tokenizer_dir, chat_template=chat_template)
  devices = jax.devices()[: run.mesh.num_devices or None]
  mesh = create_mesh(run.mesh.ici.to_dict(), run.mesh.dcn.to_dict(), devices)
  rules = sharding_lib.rules_from_config(run.logical_rules)

  manager = ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(create=False, read_only=True),
  )
  steps = sorted(manager.all_steps())
  if not steps:
    raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise ValueError(f"step={step}: {workdir}/checkpoints holds steps {steps}")
  target = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      nn.unbox(abstract_params(config)),
      param_shardings(config, mesh, rules),
  )
  item = {"params": target}
  restored = manager.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(
              item=item,
              restore_args=ocp.checkpoint_utils.construct_restore_args(item),
              partial_restore=True,
          )
      ),
  )
  manager.close()
  return LoadedModel(
      config,
      restored["state"]["params"],
      tokenizer,
      mesh,
      rules,
      f"checkpoint:{workdir} step {step}",
  )
