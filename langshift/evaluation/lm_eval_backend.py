r"""langshift as a model type of EleutherAI's lm-evaluation-harness (Gao et al., 2024, "The Language
Model Evaluation Harness", v0.4.13): `--model langshift`.

  python -m langshift.lm_eval --model langshift \
      --model_args pretrained=<workdir or HF dir>,batch_size=8 --tasks arc_easy,hellaswag

The three request kinds are served by langshift's own engine, on whatever devices the params
live on (the run's mesh for a training job or a langshift checkpoint):

* `loglikelihood` and `loglikelihood_rolling`: `LocalScorer` (langshift/evaluation/scoring.py),
  which follows lm-eval's conventions (context/continuation split, prefix token, rolling windows;
  docs/evaluation.md) and packs requests back to back into rows instead of padding each;
* `generate_until`: `LocalGenerator`'s continuous batching (langshift/generation/), the context
  encoded and left-truncated as lm-eval's `hf` backend does it (`max_length - max_gen_toks`
  tokens), the answer decoded without special tokens and cut at the first `until` string or the
  EOS text, as `hf` does.

Importing this module registers the model type (lm-eval 0.4.13 finds external models only
through `register_model`, not through package entry points, hence `python -m langshift.lm_eval`).
`LangshiftLM.from_params` wraps the params of a running job (the `lm_eval_tasks` evaluator).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import lm_eval.models  # noqa: F401  (fills the registry first: get_model skips it once non-empty)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)

from langshift.evaluation.lm_eval_backend_load import LoadedModel, load_model
from langshift.evaluation.scoring import BOS_SETTINGS, LocalScorer
from langshift.generation.interface import GenerationOptions
from langshift.generation.local_backend import LocalGenerator
from langshift.tokenization.chat_templates import render_chat

_DEFAULT_MAX_GEN_TOKS = 256  # the `hf` backend's


def _as_int(name: str, value, minimum: int = 0) -> int:
  try:
    number = int(value)
  except (TypeError, ValueError):
    number = None
  if number is None or number < minimum or str(number) != str(value).strip():
    raise ValueError(f"model_args {name}={value!r}: expected an integer >= {minimum}")
  return number


@register_model("langshift")
class LangshiftLM(LM):
  """lm-eval's `LM` over a langshift model (see the module docstring).

  model_args: `pretrained` (a langshift workdir or an HF directory; required), `step` (a
  workdir's checkpoint; default the newest), `batch_size` (rows per forward pass and generation
  batch; "auto" is 8), `max_length` (tokens per forward pass; default the model's
  `max_position_embeddings`), `max_gen_toks` (256), `bos` (auto | true | false), `dtype`
  (compute dtype), `chat_template` (a built-in name or jinja in place of the checkpoint's),
  `fsdp` (an HF directory over this many devices; default one).
  """

  def __init__(
      self,
      pretrained: str | None = None,
      *,
      step=None,
      batch_size=8,
      max_batch_size=None,
      device=None,
      max_length=None,
      max_gen_toks=_DEFAULT_MAX_GEN_TOKS,
      bos: str = "auto",
      dtype: str | None = None,
      chat_template: str | None = None,
      fsdp=0,
      model: LoadedModel | None = None,
      **unknown,
  ):
    super().__init__()
    del max_batch_size, device  # placement comes from the mesh; rows are fixed per call
    if unknown:
      raise ValueError(
          f"model_args {sorted(unknown)}: the langshift model type takes pretrained, step, "
          "batch_size, max_length, max_gen_toks, bos, dtype, chat_template, fsdp"
      )
    # Every argument is checked before the weights are read.
    self.batch_size = 8 if batch_size in (None, "auto") else _as_int("batch_size", batch_size, 1)
    self.max_gen_toks = _as_int("max_gen_toks", max_gen_toks, 1)
    max_length = None if max_length in (None, "") else _as_int("max_length", max_length, 2)
    if str(bos).lower() not in BOS_SETTINGS:
      raise ValueError(f"model_args bos={bos!r}: expected one of {BOS_SETTINGS}")
    if model is None:
      if not pretrained:
        raise ValueError("model_args pretrained=<langshift workdir or HF directory> is required")
      model = load_model(
          str(pretrained),
          step=None if step in (None, "") else _as_int("step", step),
          dtype=dtype or None,
          chat_template=chat_template or None,
          fsdp=_as_int("fsdp", fsdp or 0),
      )
    self.model = model
    self.scorer = LocalScorer(
        model.config,
        model.params,
        model.tokenizer,
        batch_size=self.batch_size,
        max_length=max_length,
        bos=str(bos).lower(),
    )
    self.max_length = self.scorer.max_length
    self.generator = LocalGenerator(
        model.config,
        model.params,
        model.tokenizer,
        batch_size=self.batch_size,
        add_bos=self.scorer.add_bos,
        mesh=model.mesh,
        rules=model.rules,
    )
    self._source = model.source

  @classmethod
  def create_from_arg_obj(cls, arg_dict, additional_config=None):
    """As lm-eval's, but `--model_args` win over lm-eval's own `--batch_size` / `--device`
    (the CLI always passes a batch size: 1 unless given)."""
    extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
    return cls(**{**extra, **dict(arg_dict)})

  @classmethod
  def create_from_arg_string(cls, arg_string, additional_config=None):
    from lm_eval import utils  # pylint: disable=import-outside-toplevel

    return cls.create_from_arg_obj(utils.simple_parse_args_string(arg_string), additional_config)

  @classmethod
  def from_params(cls, config, params, tokenizer, *, mesh=None, rules=None, **kwargs):
    """The LM of in-memory params (a running training job's, on its mesh)."""
    model = LoadedModel(config, params, tokenizer, mesh, rules, "params")
    return cls(model=model, **kwargs)

  # --- lm-eval's request kinds ------------------------------------------------------------------

  def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
    del disable_tqdm
    pairs = [tuple(r.args[:2]) for r in requests]
    out = []
    for pair, s in zip(pairs, self.scorer.loglikelihood(pairs)):
      out.append((s.logprob, s.is_greedy))
      self.cache_hook.add_partial("loglikelihood", pair, out[-1])
    return out

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    del disable_tqdm
    texts = [r.args[0] for r in requests]
    out = []
    for text, s in zip(texts, self.scorer.loglikelihood_rolling(texts)):
      out.append(s.logprob)
      self.cache_hook.add_partial("loglikelihood_rolling", (text,), s.logprob)
    return out

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    """Requests grouped by their generation settings, each group one continuous-batching run."""
    del disable_tqdm
    tokenizer = self.model.tokenizer
    eos_id = (tuple(getattr(tokenizer, "eos_ids", ())) or (None,))[0]
    eos = None if eos_id is None else tokenizer.decode([eos_id], skip_special_tokens=False)
    groups = collections.defaultdict(list)
    for i, r in enumerate(requests):
      context, gen_kwargs = r.args[:2]
      groups[repr(sorted(gen_kwargs.items()))].append((i, context, gen_kwargs))
    out: list[str | None] = [None] * len(requests)
    for members in groups.values():
      kwargs = normalize_gen_kwargs(members[0][2], self.max_gen_toks)
      until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
      max_gen_toks = kwargs.pop("max_gen_toks")
      if max_gen_toks >= self.max_length:
        raise ValueError(
            f"max_gen_toks={max_gen_toks} leaves no room for a prompt in max_length="
            f"{self.max_length}"
        )
      sampling = bool(kwargs.get("do_sample")) and float(kwargs.get("temperature") or 0.0) > 0
      options = GenerationOptions(
          max_new_tokens=max_gen_toks,
          temperature=float(kwargs.get("temperature") or 0.0) if sampling else 0.0,
          top_k=int(kwargs.get("top_k") or 0) if sampling else 0,
          top_p=float(kwargs.get("top_p") or 1.0) if sampling else 1.0,
          seed=int(kwargs.get("seed") or 0),
      )
      # The `hf` backend's context: BOS as the tokenizer adds it, the last max_length -
      # max_gen_toks tokens.
      keep = self.max_length - max_gen_toks
      prompts = [self.scorer.tok_encode(context)[-keep:] for _, context, _ in members]
      for (i, context, gen_kwargs), ids in zip(
          members, self.generator.generate_tokens(prompts, options)
      ):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        out[i] = postprocess_generated_text(text, until, None)
        self.cache_hook.add_partial("generate_until", (context, gen_kwargs), out[i])
    return out

  # --- chat templates (--apply_chat_template) ---------------------------------------------------

  @property
  def tokenizer_name(self) -> str:
    path = getattr(self.model.tokenizer, "path", "") or self._source
    return str(path).replace("/", "__")

  def chat_template(self, chat_template: bool | str = False) -> str | None:
    del chat_template
    return getattr(self.model.tokenizer, "chat_template", None)

  def apply_chat_template(
      self, chat_history: Sequence[dict], add_generation_prompt: bool = True
  ) -> str:
    """As transformers' `apply_chat_template(..., tokenize=False)`; without the generation
    prompt the last (assistant) message stays open (`continue_final_message`), as `hf` does."""
    template = self.chat_template()
    if not template:
      raise ValueError(
          f"{self._source}: the tokenizer has no chat template (give model_args chat_template=...)"
      )
    special = dict(getattr(self.model.tokenizer, "special_tokens_map", {}))
    text = render_chat(
        chat_history,
        template,
        special_tokens_map=special,
        add_generation_prompt=add_generation_prompt,
    )
    if not add_generation_prompt and chat_history:
      final = chat_history[-1]["content"].strip()
      end = text.rfind(final)
      if end >= 0:
        text = text[: end + len(final)]
    return text


def registered() -> type[LangshiftLM]:
  """The class lm-eval resolves `--model langshift` to (importing this module registered it)."""
  from lm_eval.api.registry import get_model  # pylint: disable=import-outside-toplevel

  return get_model("langshift")
