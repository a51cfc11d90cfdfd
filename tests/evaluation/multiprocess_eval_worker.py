"""One process of the two-process evaluation test: params sharded (fsdp) over a mesh that spans
both processes, then greedy generation and scoring; prints the results as one JSON line.

  python tests/evaluation/multiprocess_eval_worker.py MODEL_DIR   (plus the JAX_* variables)
"""

import json
import sys

from langshift.parallel.distributed import maybe_initialize_distributed


def main(model_dir: str) -> None:
  distributed = maybe_initialize_distributed()
  import jax

  from langshift.checkpoints.hf_import import load_hf_model
  from langshift.evaluation.scoring import LocalScorer
  from langshift.generation.interface import GenerationOptions
  from langshift.generation.local_backend import LocalGenerator
  from langshift.parallel import sharding
  from langshift.parallel.mesh import create_mesh
  from langshift.tokenization.tokenizer import load_tokenizer

  mesh = create_mesh({"data": 1, "fsdp": -1, "tensor": 1})
  rules = sharding.rules_from_config(None)
  cfg, params = load_hf_model(model_dir, mesh=mesh, rules=rules)
  tokenizer = load_tokenizer(model_dir)
  prompts = ["Привет, как дела?", "Сервер работа", "книга"]
  generator = LocalGenerator(cfg, params, tokenizer, batch_size=8, mesh=mesh, rules=rules)
  texts = generator.generate_tokens(
      [tokenizer.encode(p) for p in prompts], GenerationOptions(max_new_tokens=5, temperature=0.0)
  )
  scorer = LocalScorer(cfg, params, tokenizer, batch_size=8)
  logprobs = scorer.next_token_logprobs(prompts)
  nll = scorer.token_nll(prompts)
  print(
      json.dumps(
          dict(
              distributed=distributed,
              processes=jax.process_count(),
              devices=jax.device_count(),
              generated=texts,
              logprobs=logprobs[:, :16].tolist(),
              nll=nll,
          )
      ),
      flush=True,
  )


if __name__ == "__main__":
  main(sys.argv[1])
