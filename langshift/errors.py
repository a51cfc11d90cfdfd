"""One-line accounts of errors, for a user at a terminal (the traceback goes to a log file).

Library errors of langshift already are one line naming the file, key or value. Errors from
below (orbax, TensorStore, ml_collections) can run to pages; their first line, and that of the
cause that adds one, say what failed.
"""

from __future__ import annotations

# Exception types whose message reads alone; others get their type name in front
# ("KeyError: 'prompt'" says more than "'prompt'").
_SELF_EXPLAINING = (ValueError, RuntimeError, OSError)
_NOISE = (" See full TensorStore details",)


def message(e: BaseException) -> str:
  """The text of `e` as written, unwrapping what KeyError's repr and exceptions that carry
  another exception as their argument (ml_collections' AttributeError) wrap around it."""
  while len(e.args) == 1 and isinstance(e.args[0], BaseException):
    e = e.args[0]
  return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _first_line(e: BaseException) -> str:
  text = message(e)
  lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
  if any(line.startswith("Traceback (most recent call last)") for line in lines):
    # An error that embeds a traceback (absl's flag errors): its last line is the error.
    lines = [lines[0].rstrip(":"), lines[-1]]
  line = " ".join(lines)
  for noise in _NOISE:
    line = line.split(noise)[0]
  return line


def one_line(e: BaseException, max_causes: int = 1) -> str:
  """`e`'s message on one line, then that of up to `max_causes` causes that add something."""
  parts: list[str] = []
  seen: set[str] = set()
  while e is not None and len(parts) <= max_causes:
    line = _first_line(e)
    if line and line not in seen and not any(line in p for p in parts):
      typed = isinstance(e, _SELF_EXPLAINING) and not isinstance(e, KeyError)
      parts.append(line if typed and parts == [] else f"{type(e).__name__}: {line}")
      seen.add(line)
    e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
  return " <- ".join(parts) or "unknown error"
