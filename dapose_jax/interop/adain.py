"""The released AdaIN weights of UDAPE (``vgg_normalised.pth`` and ``decoder_*.pth.tar``, or .npz / .safetensors
conversions of them) as the style parameters of ``dapose_jax.models.style``.

Both networks are PyTorch ``nn.Sequential`` stacks; the tables below give the Sequential index of each conv and its
output channels at width 1, and the Flax convs are named after those indices (``conv0``, ``conv2``, ..., ``conv29``;
decoder ``conv1`` ... ``conv28``), so a released state dict maps one to one: ``'{i}.weight'`` (O, I, kh, kw) ->
``conv{i}/kernel`` (kh, kw, I, O), ``'{i}.bias'`` -> ``conv{i}/bias``.
"""

import re

import jax.numpy as jnp
import numpy as np

from dapose_jax.interop import weights

# Sequential index of each conv -> output channels at width 1 (input channels follow from the order).
ENCODER_CONVS = {0: 3, 2: 64, 5: 64, 9: 128, 12: 128, 16: 256, 19: 256, 22: 256, 25: 256, 29: 512}
ENCODER_LAYERS = 31  # layers 0..30 of vgg_normalised (up to relu4_1); the released file also holds the later ones
DECODER_CONVS = {1: 256, 5: 256, 8: 256, 11: 256, 14: 128, 18: 128, 21: 64, 25: 64, 28: 3}

_SEQUENTIAL_KEY = re.compile(r"^(?:(.*)\.)?(\d+)\.(weight|bias)$")


def _sequential_entries(state_dict, what):
  """{(index, 'weight'|'bias'): array} of the ``nn.Sequential`` keys, under at most one common prefix
  ('module.', 'decoder.', 'state_dict.', ...)."""
  entries, prefixes = {}, set()
  for key, value in state_dict.items():
    match = _SEQUENTIAL_KEY.match(key)
    if match:
      prefixes.add(match.group(1) or "")
      entries[int(match.group(2)), match.group(3)] = np.asarray(value)
  if len(prefixes) > 1:
    raise ValueError(f"{what} state dict holds several Sequentials (prefixes {sorted(prefixes)}); "
                     "pass the file of one network")
  return entries


def _params_from_state_dict(state_dict, convs, what, max_index=None):
  """Flax params {conv{i}: {kernel, bias}} of ``convs`` (index -> (in, out, k)) from a state dict."""
  entries = _sequential_entries(state_dict, what)
  params, problems = {}, []
  for index, (cin, cout, k) in convs.items():
    kernel, bias = entries.pop((index, "weight"), None), entries.pop((index, "bias"), None)
    if kernel is None or bias is None:
      problems.append(f"missing {index}.weight / {index}.bias")
      continue
    if kernel.shape != (cout, cin, k, k) or bias.shape != (cout,):
      problems.append(f"{index}.weight {kernel.shape} / {index}.bias {bias.shape}: expected "
                      f"{(cout, cin, k, k)} / {(cout,)}")
      continue
    params[f"conv{index}"] = {"kernel": jnp.asarray(kernel.transpose(2, 3, 1, 0), jnp.float32),
                              "bias": jnp.asarray(bias, jnp.float32)}
  unexpected = sorted(f"{i}.{leaf}" for i, leaf in entries if max_index is None or i <= max_index)
  problems += [f"unexpected key {k}" for k in unexpected]
  if problems:
    raise ValueError(f"{what} state dict does not match the network:\n  " + "\n  ".join(problems))
  return params


def _conv_shapes(convs, in_channels, pointwise=()):
  """index -> (in, out, kernel size) of a width-1 conv stack starting from ``in_channels``."""
  shapes, cin = {}, in_channels
  for index, cout in convs.items():
    shapes[index] = (cin, cout, 1 if index in pointwise else 3)
    cin = cout
  return shapes


def encoder_params_from_state_dict(state_dict):
  """Encoder params (width 1) from ``vgg_normalised.pth``'s state dict; layers after relu4_1 are ignored."""
  shapes = _conv_shapes(ENCODER_CONVS, 3, pointwise=(0,))
  return _params_from_state_dict(state_dict, shapes, "vgg_normalised", max_index=ENCODER_LAYERS - 1)


def decoder_params_from_state_dict(state_dict):
  """Decoder params (width 1) from a released decoder's state dict (every key must be used)."""
  return _params_from_state_dict(state_dict, _conv_shapes(DECODER_CONVS, 512), "decoder")


def load_released(encoder_path, decoder_path):
  """Width-1 style params {"encoder", "decoder"} from ``vgg_normalised.pth`` and a released UDAPE
  decoder (``decoder_*.pth.tar``), or from .npz / .safetensors conversions of them."""
  return {"encoder": encoder_params_from_state_dict(weights.read_state_dict(encoder_path)),
          "decoder": decoder_params_from_state_dict(weights.read_state_dict(decoder_path))}
