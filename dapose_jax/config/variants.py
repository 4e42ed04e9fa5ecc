"""The one parser of config-file variants, the part after the colon of ``--config FILE:VARIANT``.

A variant is a comma-separated list of tokens, at most one of each kind: a method name (``regda``,
``mean_teacher``, ...: every config file takes one) and the kinds a file adds, e.g. ``smoke`` in
``configs/demo.py:smoke,regda`` or an animal in ``configs/synanimal_tigdog.py:horse,regda``.
"""

import types

from dapose_jax import errors, methods


def parse(variant, config_file, **kinds):
  """The token of each kind in ``variant`` ("" where it has none) as attributes, ``method`` included;
  ``kinds`` maps a kind to its tokens. One error names the variant and lists every accepted token."""
  kinds = {**kinds, "method": methods.NAMES}
  chosen = dict.fromkeys(kinds, "")
  for token in filter(None, (t.strip() for t in variant.split(","))):
    kind = next((k for k, tokens in kinds.items() if token in tokens), None)
    if kind is None or chosen[kind]:
      problem = f"unknown token {token!r}" if kind is None else f"a second {kind} ({token!r})"
      accepted = "; ".join(f"{k}: {', '.join(t for t in tokens if t)}" for k, tokens in kinds.items())
      raise errors.ConfigError(f"variant {variant!r} of {config_file}: {problem}; the variant is a comma-separated "
                               f"list of at most one token of each kind: {accepted}")
    chosen[kind] = token
  return types.SimpleNamespace(**chosen)


def with_method(config, method, epochs=None):
  """``config`` running ``method`` (unchanged when ""), for ``epochs`` when given."""
  if method:
    config.method = method
    if epochs is not None:
      config.epochs = epochs
  return config
