"""UDAPE's AdaIN style network: VGG-normalised encoder, mirror decoder, released weights, decoder training."""

import json

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import configs.demo
from dapose_jax.auxiliary import style_net
from dapose_jax.commands import style as style_command
from dapose_jax.data import pipeline
from dapose_jax.interop import adain, torch_reader
from dapose_jax.methods import style_decoder
from dapose_jax.models import style

WIDTH = 1 / 16  # channels 4, 8, 16, 32 instead of 64, 128, 256, 512
SIZE = 32


@pytest.fixture(scope="module")
def params():
  return style.init_style_params(jax.random.key(0), WIDTH, SIZE)


def _images(seed, batch=2, size=SIZE):
  return jax.random.normal(jax.random.key(seed), (batch, size, size, 3))


def _constant_tree(tree, value):
  return jax.tree.map(lambda x: jnp.full_like(x, value), tree)


def _averaging(params):
  """Every kernel averages its whole receptive field (sums to 1), biases 0."""
  return {name: {"kernel": jnp.full_like(p["kernel"], 1.0 / np.prod(p["kernel"].shape[:3])),
                 "bias": jnp.zeros_like(p["bias"])} for name, p in params.items()}


# structure


def test_encoder_is_vgg_normalised_up_to_relu4_1_and_features_shrink_to_one_eighth(params):
  enc = params["encoder"]
  assert sorted(enc, key=lambda n: int(n[4:])) == [f"conv{i}" for i in (0, 2, 5, 9, 12, 16, 19, 22, 25, 29)]
  assert enc["conv0"]["kernel"].shape == (1, 1, 3, 3)  # the 1x1 colour conv is never narrowed
  assert enc["conv2"]["kernel"].shape == (3, 3, 3, 4)
  assert enc["conv29"]["kernel"].shape == (3, 3, 16, 32)
  features = style.encode(enc, _images(1), WIDTH)
  assert [f.shape for f in features] == [(2, 32, 32, 4), (2, 16, 16, 8), (2, 8, 8, 16), (2, 4, 4, 32)]
  assert all(float(f.min()) >= 0 for f in features)  # relu outputs


def test_decoder_mirrors_encoder_and_upsamples_relu4_1_to_image_size(params):
  dec = params["decoder"]
  assert sorted(dec, key=lambda n: int(n[4:])) == [f"conv{i}" for i in (1, 5, 8, 11, 14, 18, 21, 25, 28)]
  assert [dec[f"conv{i}"]["kernel"].shape[-1] for i in (1, 5, 8, 11, 14, 18, 21, 25, 28)] == \
      [16, 16, 16, 16, 8, 8, 4, 4, 3]
  out = style.decode(dec, jnp.ones((2, 4, 4, 32)), WIDTH)
  assert out.shape == (2, 32, 32, 3)
  # the last conv has no ReLU: a negative bias shows through
  dec = {**dec, "conv28": {"kernel": jnp.zeros_like(dec["conv28"]["kernel"]),
                           "bias": jnp.array([-1.0, 0.5, -2.0])}}
  np.testing.assert_allclose(style.decode(dec, jnp.ones((1, 4, 4, 32)), WIDTH)[0, 5, 7], [-1.0, 0.5, -2.0])


def test_reflection_padding_mirrors_without_repeating_the_edge():
  x = jnp.arange(9.0).reshape(1, 3, 3, 1)
  padded = style.reflect_pad(x)[0, :, :, 0]
  np.testing.assert_array_equal(padded[0], [4, 3, 4, 5, 4])  # row above = row 1, not row 0
  np.testing.assert_array_equal(padded[:, 0], [4, 1, 4, 7, 4])


def test_constant_image_stays_constant_through_padded_averaging_convs(params):
  # With zero padding the borders would darken; reflection keeps every pixel at 0.7.
  features = style.encode(_averaging(params["encoder"]), jnp.full((1, SIZE, SIZE, 3), 0.7), WIDTH)
  for f in features:
    np.testing.assert_allclose(f, 0.7, rtol=1e-5)
  out = style.decode(_averaging(params["decoder"]), jnp.full((1, 4, 4, 32), 0.7), WIDTH)
  np.testing.assert_allclose(out, 0.7, rtol=1e-5)


def test_odd_sizes_pool_in_ceil_mode_and_stylise_crops_to_the_content(params):
  features = style.encode(params["encoder"], _images(2, 1, 20), WIDTH)
  assert [f.shape[1] for f in features] == [20, 10, 5, 3]  # ceil(5 / 2) = 3
  assert style.stylise(params, _images(2, 1, 20), _images(3, 1), 1.0, WIDTH).shape == (1, 20, 20, 3)


# stylise


def test_stylise_with_alpha_zero_decodes_the_content_features(params):
  content, style_images = _images(3), _images(4)
  expected = style.decode(params["decoder"], style.encode(params["encoder"], content, WIDTH)[-1], WIDTH)
  np.testing.assert_allclose(style.stylise(params, content, style_images, 0.0, WIDTH), expected,
                             rtol=1e-5, atol=1e-5)


def test_stylise_with_alpha_one_gives_relu4_1_the_style_statistics(params):
  content, style_images = _images(5) * 0.5 + 1.0, _images(6) * 2.0 - 1.0
  f_c = style.encode(params["encoder"], content, WIDTH)[-1]
  f_s = style.encode(params["encoder"], style_images, WIDTH)[-1]
  target = style.mix(f_c, style.adain(f_c, f_s), 1.0)
  np.testing.assert_allclose(target.mean(axis=(1, 2)), f_s.mean(axis=(1, 2)), atol=1e-4)
  eps = 1e-5
  var_c, var_s = f_c.var(axis=(1, 2), ddof=1), f_s.var(axis=(1, 2), ddof=1)
  # sigma = sqrt(unbiased var + 1e-5); channels with content variance >> eps take the style's std
  expected_std = np.sqrt(var_s + eps) * np.sqrt(var_c / (var_c + eps))
  np.testing.assert_allclose(target.std(axis=(1, 2), ddof=1), expected_std, rtol=1e-3, atol=1e-5)
  assert float(jnp.mean(var_c > 1e-2)) > 0.5
  np.testing.assert_allclose(style.stylise(params, content, style_images, 1.0, WIDTH),
                             style.decode(params["decoder"], target, WIDTH), rtol=1e-5, atol=1e-5)


def test_stylise_takes_one_alpha_per_sample(params):
  content, style_images = _images(7), _images(8)
  mixed = style.stylise(params, content, style_images, jnp.array([0.0, 1.0]), WIDTH)
  np.testing.assert_allclose(mixed[0], style.stylise(params, content, style_images, 0.0, WIDTH)[0], atol=1e-5)
  np.testing.assert_allclose(mixed[1], style.stylise(params, content, style_images, 1.0, WIDTH)[1], atol=1e-5)


def test_gram_is_normalised_by_channels_times_pixels():
  # two pixels (1, 2) and (3, 4): F^T F = [[10, 14], [14, 20]], divided by C * H * W = 2 * 1 * 2
  features = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
  np.testing.assert_allclose(style.gram(features)[0], [[2.5, 3.5], [3.5, 5.0]])


# released weights


def _released_state_dicts(seed=0):
  """Random full-size state dicts with the AdaIN Sequential keys: the whole vgg_normalised (up to
  relu5_4, index 52) and a decoder."""
  rng = np.random.default_rng(seed)
  vgg_convs = {0: (3, 3, 1), 2: (64, 3, 3), 5: (64, 64, 3), 9: (128, 64, 3), 12: (128, 128, 3),
               16: (256, 128, 3), 19: (256, 256, 3), 22: (256, 256, 3), 25: (256, 256, 3),
               29: (512, 256, 3), 32: (512, 512, 3), 35: (512, 512, 3), 38: (512, 512, 3),
               42: (512, 512, 3), 45: (512, 512, 3), 48: (512, 512, 3), 51: (512, 512, 3)}
  dec_convs = {1: (256, 512), 5: (256, 256), 8: (256, 256), 11: (256, 256), 14: (128, 256),
               18: (128, 128), 21: (64, 128), 25: (64, 64), 28: (3, 64)}
  encoder, decoder = {}, {}
  for i, (o, c, k) in vgg_convs.items():
    encoder[f"{i}.weight"] = rng.standard_normal((o, c, k, k)).astype(np.float32)
    encoder[f"{i}.bias"] = rng.standard_normal(o).astype(np.float32)
  for i, (o, c) in dec_convs.items():
    decoder[f"{i}.weight"] = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    decoder[f"{i}.bias"] = rng.standard_normal(o).astype(np.float32)
  return encoder, decoder


def _pass_through(state_dict):
  """Every conv copies input channel j to output channel j through its centre tap, bias 0."""
  out = {}
  for key, w in state_dict.items():
    out[key] = np.zeros_like(w)
    if key.endswith(".weight"):
      k = w.shape[-1] // 2
      for j in range(min(w.shape[:2])):
        out[key][j, j, k, k] = 1.0
  return out


def test_released_weights_are_transposed_into_the_layer_of_their_sequential_index(tmp_path):
  encoder_sd, decoder_sd = _released_state_dicts()
  np.savez(tmp_path / "vgg_normalised.npz", **encoder_sd)
  np.savez(tmp_path / "decoder.npz", **decoder_sd)
  loaded = adain.load_released(tmp_path / "vgg_normalised.npz", tmp_path / "decoder.npz")
  for part, sd in (("encoder", encoder_sd), ("decoder", decoder_sd)):
    for name, p in loaded[part].items():
      i = name[4:]
      np.testing.assert_array_equal(p["kernel"], sd[f"{i}.weight"].transpose(2, 3, 1, 0))
      np.testing.assert_array_equal(p["bias"], sd[f"{i}.bias"])
  assert len(loaded["encoder"]) == 10  # relu4_2 .. relu5_4 (indices 32..51) are left out
  template = jax.eval_shape(lambda: style.init_style_params(jax.random.key(0), 1.0, 8))
  assert jax.tree.map(jnp.shape, loaded) == jax.tree.map(jnp.shape, template)


def test_known_released_kernels_give_the_known_features_and_image(tmp_path):
  encoder_sd, decoder_sd = _pass_through(_released_state_dicts()[0]), _pass_through(_released_state_dicts()[1])
  encoder_sd["0.weight"][:] = 0
  encoder_sd["0.weight"][[1, 2, 0], [0, 1, 2], 0, 0] = 1.0  # out 1 <- R, out 2 <- G, out 0 <- B
  encoder_sd["0.bias"][:] = [10.0, 20.0, 30.0]
  encoder_sd["2.weight"][:, :, 1, 1] = 0
  encoder_sd["2.weight"][[0, 1, 2], [0, 1, 2], 0, 1] = 1.0  # tap above: out[y, x] = in[y - 1, x]
  decoder_sd["28.bias"][:] = [-1.0, -2.0, -3.0]
  np.savez(tmp_path / "vgg.npz", **encoder_sd)
  # a decoder saved wrapped in a checkpoint dict ({"state_dict": ..., "epoch": ...}) keeps a prefix
  np.savez(tmp_path / "dec.npz", **{f"state_dict.{k}": v for k, v in decoder_sd.items()})
  loaded = adain.load_released(tmp_path / "vgg.npz", tmp_path / "dec.npz")

  image = np.random.default_rng(0).uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
  relu1_1, _, _, relu4_1 = style.encode(loaded["encoder"], jnp.asarray(image), 1.0)
  colour = image[..., [2, 0, 1]] + [10.0, 20.0, 30.0]
  shifted = np.concatenate([colour[:, 1:2], colour[:, :-1]], axis=1)  # reflection: row -1 is row 1
  np.testing.assert_allclose(relu1_1[..., :3], shifted, rtol=1e-6)
  assert float(jnp.abs(relu1_1[..., 3:]).max()) == 0
  pooled = shifted.reshape(1, 1, 8, 1, 8, 3).max(axis=(2, 4))  # three 2x2 max-pools = one 8x8
  np.testing.assert_allclose(relu4_1[..., :3], pooled, rtol=1e-6)

  image = style.decode(loaded["decoder"], relu4_1, 1.0)
  np.testing.assert_allclose(image, np.broadcast_to(pooled - [1.0, 2.0, 3.0], (1, 8, 8, 3)), rtol=1e-6)


def test_released_state_dict_problems_are_named(tmp_path):
  encoder_sd, decoder_sd = _released_state_dicts()
  del decoder_sd["14.bias"]
  decoder_sd["5.weight"] = decoder_sd["5.weight"][:, :128]
  decoder_sd["30.weight"] = np.zeros((3, 3, 3, 3), np.float32)
  with pytest.raises(ValueError) as error:
    adain.decoder_params_from_state_dict(decoder_sd)
  message = str(error.value)
  assert "missing 14.weight / 14.bias" in message and "5.weight (256, 128, 3, 3)" in message
  assert "unexpected key 30.weight" in message
  with pytest.raises(ValueError, match="several Sequentials"):
    adain.encoder_params_from_state_dict({**{f"encoder.{k}": v for k, v in encoder_sd.items()},
                                          "decoder.1.weight": decoder_sd["1.weight"]})


def test_torch_checkpoint_dicts_are_flattened_to_state_dict_keys():
  weight = np.ones((2, 2), np.float32)
  flat = torch_reader.flatten({"state_dict": {"1.weight": weight, "1.bias": weight[0]}, "epoch": 3})
  assert sorted(flat) == ["state_dict.1.bias", "state_dict.1.weight"]


# decoder training


def _style_config(**overrides):
  c = ml_collections.ConfigDict(dict(encoder="", decoder="", width=WIDTH, depth=4, steps=3, lr=1e-3, batch_size=4,
                                     style_weight=0.1, content_weight=1.0, log_every=1, seed=0, net=""))
  c.update(overrides)
  return c


def test_a_few_decoder_steps_lower_the_loss_on_a_fixed_batch(params):
  config = _style_config()
  optimizer = optax.adam(config.lr)
  rng = np.random.default_rng(0)
  source = jnp.asarray(rng.integers(0, 120, (2, SIZE, SIZE, 3)), jnp.uint8)
  target = jnp.asarray(rng.integers(100, 256, (2, SIZE, SIZE, 3)), jnp.uint8)
  step = jax.jit(lambda d, o, k: style_decoder.decoder_step(config, optimizer, d, o, params["encoder"],
                                                             source, target, k))
  decoder, opt_state = params["decoder"], optimizer.init(params["decoder"])
  key = jax.random.key(3)  # the same coin every step: a fixed content/style assignment
  losses = []
  for _ in range(6):
    decoder, opt_state, metrics = step(decoder, opt_state, key)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.9 * losses[0], losses
  assert set(metrics) == {"loss", "content", "style"}
  np.testing.assert_allclose(metrics["loss"], metrics["content"] + 0.1 * metrics["style"], rtol=1e-5)


def test_decoder_loss_is_content_mse_plus_weighted_gram_mse(params):
  content, style_images = _images(9), _images(10)
  loss, parts = style_decoder.decoder_loss(params["decoder"], params["encoder"], content, style_images,
                                            width=WIDTH, style_weight=0.1, content_weight=2.0)
  f_c = style.encode(params["encoder"], content, WIDTH)[-1]
  f_s = style.encode(params["encoder"], style_images, WIDTH)
  t = style.adain(f_c, f_s[-1])
  f_g = style.encode(params["encoder"], style.decode(params["decoder"], t, WIDTH), WIDTH)
  content_loss = np.mean((np.asarray(f_g[-1]) - np.asarray(t)) ** 2)
  style_loss = sum(np.mean((np.asarray(style.gram(g)) - np.asarray(style.gram(s))) ** 2)
                   for g, s in zip(f_g, f_s))
  np.testing.assert_allclose([parts["content"], parts["style"]], [content_loss, style_loss], rtol=1e-4)
  np.testing.assert_allclose(loss, 2.0 * content_loss + 0.1 * style_loss, rtol=1e-4)


def _tiny_run_config(**style_overrides):
  config = configs.demo.get_config("smoke")
  config.image_size = SIZE
  config.data.num_threads = 1
  config.style.update({"width": WIDTH, "steps": 3, "batch_size": 4, "log_every": 1, **style_overrides})
  return config


def test_train_decoder_saves_params_and_info_and_reuses_the_file(tmp_path, monkeypatch):
  config = _tiny_run_config()
  path = style_command.train_decoder(config, tmp_path)
  assert path == tmp_path / "style_net.msgpack"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["style_net.json", "style_net.msgpack"]  # no temp files
  info = json.loads((tmp_path / "style_net.json").read_text())
  assert info["style"]["width"] == WIDTH and info["style"]["steps"] == 3
  assert [h["step"] for h in info["history"]] == [1, 2, 3]
  assert np.isfinite(info["final_loss"]) and info["final_loss"] == info["history"][-1]["loss"]
  template = style.init_style_params(jax.random.key(1), WIDTH, SIZE, config.style.depth)
  saved = flax.serialization.from_bytes(template, path.read_bytes())
  assert jax.tree.map(jnp.shape, saved) == jax.tree.map(jnp.shape, template)
  initial = style.init_style_params(jax.random.key(config.style.seed), WIDTH, SIZE, config.style.depth)
  jax.tree.map(np.testing.assert_array_equal, saved["encoder"], initial["encoder"])  # frozen
  assert not np.allclose(saved["decoder"]["conv28"]["kernel"], initial["decoder"]["conv28"]["kernel"])
  loaded, width = style_net.read(path)
  assert width == WIDTH
  jax.tree.map(np.testing.assert_array_equal, loaded, saved)

  before = path.stat().st_mtime_ns
  monkeypatch.setattr(pipeline, "train_iterator",
                      lambda *a, **k: pytest.fail("a second call must not train again"))
  assert style_command.train_decoder(config, tmp_path) == path
  assert path.stat().st_mtime_ns == before


def test_decoder_training_resumes_from_its_last_checkpoint_after_a_crash(tmp_path, monkeypatch):
  import orbax.checkpoint as ocp

  config = _tiny_run_config(steps=4)
  config.checkpoint_every = 2
  whole = style_command.train_decoder(config, tmp_path / "whole")
  save = ocp.CheckpointManager.save

  def crash_after_step_2(manager, step, *args, **kwargs):
    saved = save(manager, step, *args, **kwargs)
    if step == 2:
      manager.wait_until_finished()
      raise RuntimeError("killed after the checkpoint of step 2")
    return saved

  monkeypatch.setattr(ocp.CheckpointManager, "save", crash_after_step_2)
  with pytest.raises(RuntimeError, match="killed"):
    style_command.train_decoder(config, tmp_path / "resumed")
  monkeypatch.undo()
  assert (tmp_path / "resumed" / "training" / "checkpoints" / "2").is_dir()
  assert not (tmp_path / "resumed" / "style_net.msgpack").exists()
  resumed = style_command.train_decoder(config, tmp_path / "resumed")
  jax.tree.map(np.testing.assert_array_equal, style_net.read(resumed)[0], style_net.read(whole)[0])
  histories = [json.loads((path.parent / "style_net.json").read_text())["history"] for path in (whole, resumed)]
  assert [h["step"] for h in histories[1]] == [1, 2, 3, 4] and histories[0] == histories[1]
  assert sorted(p.name for p in resumed.parent.iterdir()) == ["style_net.json", "style_net.msgpack"]


def test_a_released_decoder_is_imported_instead_of_trained(tmp_path, monkeypatch):
  encoder_sd, decoder_sd = _released_state_dicts(1)
  np.savez(tmp_path / "vgg.npz", **encoder_sd)
  np.savez(tmp_path / "dec.npz", **decoder_sd)
  monkeypatch.setattr(pipeline, "train_iterator",
                      lambda *a, **k: pytest.fail("an imported decoder is not trained"))
  with pytest.raises(ValueError, match="full width"):
    style_command.train_decoder(_tiny_run_config(encoder=str(tmp_path / "vgg.npz")), tmp_path / "narrow")
  config = _tiny_run_config(width=1.0, depth=4, encoder=str(tmp_path / "vgg.npz"), decoder=str(tmp_path / "dec.npz"))
  path = style_command.train_decoder(config, tmp_path / "run")
  loaded, width = style_net.read(path)
  assert width == 1.0
  np.testing.assert_array_equal(loaded["decoder"]["conv28"]["kernel"], decoder_sd["28.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(loaded["encoder"]["conv29"]["bias"], encoder_sd["29.bias"])
  assert json.loads((tmp_path / "run" / "style_net.json").read_text())["final_loss"] is None


def test_demo_configs_scale_the_style_net_down_and_base_keeps_udape_values():
  from dapose_jax.config import defaults

  ref = defaults.base_config().style
  assert (ref.lr, ref.batch_size, ref.steps, ref.style_weight, ref.width, ref.depth) == (1e-5, 4, 500_000, 0.1, 1.0, 4)
  demo, smoke = configs.demo.get_config().style, configs.demo.get_config("smoke").style
  assert demo.width < 1 and demo.steps < 1000 and smoke.steps < demo.steps and smoke.width <= demo.width


def test_command_line_overrides_reach_the_style_section():
  from absl import flags
  from ml_collections import config_flags

  flag_values = flags.FlagValues()
  argv = ["prog", "--config=configs/demo.py:smoke", "--config.style.steps=7", "--config.style.width=0.5"]
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
  flag_values(argv)
  assert flag_values.config.style.steps == 7 and flag_values.config.style.width == 0.5


@pytest.mark.parametrize("depth, scale", [(1, 1), (2, 2), (3, 4)])
def test_shallower_depth_stops_the_encoder_early_and_the_decoder_mirrors_it(depth, scale):
  params = style.init_style_params(jax.random.key(0), WIDTH, image_size=32, depth=depth)
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  features = style.encode(params["encoder"], images, WIDTH, depth)
  assert len(features) == depth
  assert features[-1].shape == (2, 32 // scale, 32 // scale, style.channels(style.FEATURE_CHANNELS[depth], WIDTH))
  # the encoder's first layers are shared with the full net: the same weights give the same relu1_1
  full = style.init_style_params(jax.random.key(0), WIDTH, image_size=32)
  shared = {k: v for k, v in full["encoder"].items() if k in params["encoder"]}
  np.testing.assert_allclose(style.encode(shared, images, WIDTH, depth)[0],
                             style.encode(full["encoder"], images, WIDTH)[0], rtol=1e-5, atol=1e-5)
  assert style.stylise(params, images, images[::-1], 0.5, WIDTH, depth).shape == images.shape
