"""The label-free selection criteria (``evaluators/criteria.py``): hand-counted values of hand-built predictors,
agreement 100 of identical views and of equal networks, labels never read, and ``select_on`` taking each."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax import evaluators, methods, parallel
from dapose_jax.evaluators import criteria
from dapose_jax.methods import base
from dapose_jax.pose import skeletons
from dapose_jax.run import loop
from tests.test_method_contract import method_config
from tests.test_train import tiny_config

K = 16


class Unlabelled:
  """n samples of ``size`` px images, each ``image(index)`` (default: every pixel the sample's index), whose
  keypoints are all ``keypoints`` (default NaN) and visibility ``visible``: labels no criterion may read."""
  keypoint_set = skeletons.BODY16

  def __init__(self, n, size=32, image=None, keypoints=np.nan, visible=-7.0):
    self.n, self.size, self.keypoints, self.visible = n, size, keypoints, visible
    self.image = image or (lambda index: np.full((size, size, 3), index, np.uint8))

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    return {"image": self.image(index), "keypoints": np.full((K, 2), self.keypoints, np.float32),
            "visible": np.full(K, self.visible, np.float32)}


def make(kind, predict, source, config=None, **settings):
  return evaluators.TYPES[kind](predict, source, source.keypoint_set, config=config or tiny_config(),
                                mesh=parallel.make_mesh(), resize_pad=False, **settings)


def peaks_at(columns, rows, size=8):
  """(size, size, K) maps, keypoint k's a single 1 at column ``columns[k]`` and row ``rows[k]``."""
  maps = np.zeros((size, size, K), np.float32)
  maps[rows, columns, np.arange(K)] = 1.0
  return jnp.asarray(maps)


def constant(maps):
  """A predictor that ignores the image: ``maps`` for every one."""
  return lambda state, images: jnp.broadcast_to(maps, images.shape[:1] + maps.shape)


def test_confidence_is_the_mean_heatmap_maximum_of_the_first_count_samples():
  # sample i's keypoint k peaks at (i + 1)(k + 1) / 16; count 10 of 12 with evaluation batches of 8: the second batch
  # holds 2 samples and 6 padding ones (zero images, which would read as sample 0)
  def predict(state, images):
    index = images[:, 0, 0, 0].astype(jnp.float32)
    values = (index[:, None] + 1) * jnp.arange(1, K + 1) / 16
    return jnp.zeros((len(images), 8, 8, K)).at[:, 3, 2].set(values)

  confidence = make("confidence", predict, Unlabelled(12), count=10)
  assert confidence.keys == ("confidence",) and confidence.headline == "confidence"
  assert confidence.run(None) == {"confidence": pytest.approx(5.5 * 8.5 / 16)}  # mean of i + 1 times mean of k + 1


# A keypoint agrees with its prediction on the mirrored image, mirrored back, when its flip partner (itself if it has
# none) peaks at the mirror column 8 - c of its column c (flip_back: mirrored, then one column right) in its row. With
# BODY16's pairs (0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13): 0, 1, 4, 5, 11, 12, 13, 14 agree, 2 and 3
# (columns 2 and 5) do not, nor 10 and 15 (mirror columns, different rows); of the unpaired 6-9 those in column 4.
COLUMNS = [2, 3, 2, 5, 5, 6, 4, 4, 4, 3, 1, 3, 4, 4, 5, 7]
ROWS = [2, 3, 1, 1, 3, 2, 1, 2, 3, 4, 5, 4, 6, 6, 4, 6]


def test_flip_agreement_of_a_predictor_that_ignores_the_image_is_counted_by_hand_and_identical_views_agree_fully():
  views = make("view_agreement", constant(peaks_at(COLUMNS, ROWS)), Unlabelled(11), rotation=0.0, scale_min=1.0,
               scale_max=1.0)  # the affine view is the image itself
  assert views.keys == ("flip", "affine", "mean") and views.headline == "mean"
  assert views.run(None) == {"flip": 100 * 11 / 16, "affine": 100.0, "mean": (100 * 11 / 16 + 100) / 2}


def test_an_image_following_predictor_agrees_with_its_affine_views_mapped_back_and_a_fixed_one_does_not():
  size = 256  # heatmaps of 64: the distance test's radius is 3.2 cells
  rng = np.random.default_rng(0)
  centres = rng.uniform(0.3 * size, 0.7 * size, (8, 2))  # every blob stays inside its rotated, scaled views
  v, u = np.mgrid[0:size, 0:size]

  def blob(index):  # a Gaussian spot of sigma 8 px
    x, y = centres[index]
    spot = 255 * np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * 8.0 ** 2))
    return np.repeat(np.round(spot).astype(np.uint8)[..., None], 3, -1)

  def pooled(state, images):  # each keypoint's map: the image's 4 x 4 means, so the peak follows the spot
    x = images[..., 0].astype(jnp.float32)
    maps = x.reshape(len(x), size // 4, 4, size // 4, 4).mean((2, 4))
    return jnp.repeat(maps[..., None], K, -1)

  config = tiny_config(image_size=size, heatmap_size=size // 4)
  source = Unlabelled(8, size, blob)
  following = make("view_agreement", pooled, source, config).run(None)
  assert following == {"flip": 100.0, "affine": 100.0, "mean": 100.0}
  # every keypoint fixed at 24 cells right of the centre, which the views' rotations of up to 30 degrees turn by up
  # to 12 cells: it agrees only with the nearly unrotated views
  fixed = make("view_agreement", constant(peaks_at([56] * K, [32] * K, size // 4)), source, config).run(None)
  assert fixed["affine"] < 50


def test_a_samples_affine_view_depends_only_on_its_index_and_the_seed():
  matrices = functools.partial(criteria.view_matrices, size=32, rotation=30.0, scale_min=0.9, scale_max=1.1)
  together = np.asarray(matrices(jnp.array([3, 5]), seed=0))
  np.testing.assert_array_equal(together[1], matrices(jnp.array([5]), seed=0)[0])
  assert not np.allclose(together[1], matrices(jnp.array([5]), seed=1)[0])
  linear = together[:, :2, :2]
  scale = np.sqrt(np.abs(np.linalg.det(linear)))
  angle = np.degrees(np.arctan2(linear[:, 1, 0], linear[:, 0, 0]))
  assert np.all((scale >= 0.9) & (scale <= 1.1)) and np.all(np.abs(angle) <= 30)
  np.testing.assert_allclose(together[:, :2, :2] @ [16.0, 16.0] + together[:, :2, 2], [[16.0, 16.0]] * 2,
                             atol=1e-4)  # about the centre


def two_networks(moved):
  """A method whose second network's heatmaps are the first's with keypoints 0 .. moved - 1 one column right."""
  first = peaks_at(COLUMNS, ROWS)
  second = jnp.where(jnp.arange(K) < moved, jnp.roll(first, 1, axis=1), first)
  pairs = lambda config, state, images: (constant(first)(state, images), constant(second)(state, images))
  return base.Method(name="two", init=None, train_step=None, eval_heatmaps=lambda config, state, images: None,
                     eval_heatmap_pairs=pairs)


@pytest.mark.parametrize("moved, expected", [(0, 100.0), (4, 75.0)])
def test_head_agreement_counts_the_keypoints_both_networks_put_in_one_place(moved, expected):
  heads = make("head_agreement", None, Unlabelled(9), method=two_networks(moved))
  assert heads.keys == ("agreement",) and heads.headline == "agreement"
  assert heads.run(None) == {"agreement": expected}  # one column is more than the 0.4 cells of 0.05 of 8


@pytest.mark.parametrize("name", ["regda", "mean_teacher"])
def test_the_two_networks_of_a_method_agree_fully_when_they_are_equal(name):
  config = method_config(name)
  method = methods.get(name)
  state = jax.jit(functools.partial(method.init, config))(jax.random.key(0))  # the teacher starts as the student
  images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  if name == "regda":  # f' set to f; its pair is one forward through both heads, the first the one evaluated
    assert not np.allclose(state.params["head"]["conv2"]["kernel"], state.params["head_adv"]["conv2"]["kernel"])
    state = state.replace(params={**state.params, "head_adv": state.params["head"]},
                          batch_stats={**state.batch_stats, "head_adv": state.batch_stats["head"]})
    both = lambda state, images: (method.eval_heatmap_pairs(config, state, images),
                                  method.eval_heatmaps(config, state, images))
    (first, second), evaluated = jax.jit(both)(state, images)
    np.testing.assert_allclose(first, evaluated, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-7)
  heads = make("head_agreement", None, Unlabelled(4, image=lambda index: images[index]), config, method=method)
  assert heads.run(state) == {"agreement": 100.0}


def test_the_methods_with_two_networks_declare_their_pairs():
  assert {name for name in methods.NAMES if methods.get(name).eval_heatmap_pairs} == {
      "regda", "mean_teacher", "daml", "geometric"}


def test_no_criterion_reads_the_labels():
  def predict(state, images):  # peaks where the image's index says
    index = images[:, 0, 0, 0].astype(jnp.int32)
    return jax.nn.one_hot(index % 64, 64).reshape(-1, 8, 8, 1) * jnp.ones(K)

  made = lambda source: {"confidence": make("confidence", predict, source).run(None),
                         "views": make("view_agreement", predict, source).run(None),
                         "heads": make("head_agreement", predict, source, method=two_networks(3)).run(None)}
  garbage = made(Unlabelled(10))  # NaN keypoints, visibility -7
  assert garbage == made(Unlabelled(10, keypoints=5.0, visible=1.0))
  assert all(np.isfinite(value) for values in garbage.values() for value in values.values())


def criteria_config(**settings):
  config = tiny_config(**settings)
  config.evals = {"confidence": dict(type="confidence", domain="target", split="train", count=5),
                  "views": dict(type="view_agreement", domain="target", split="train"),
                  "heads": dict(type="head_agreement", domain="target", split="train")}
  return config


def test_select_on_takes_each_criterion_by_its_headline_or_a_value():
  evals = evaluators.from_config(criteria_config(), methods.get("regda"), parallel.make_mesh())
  assert len(evals["confidence"].source) == 5 and len(evals["views"].source) == 256  # of the target's training split
  for select_on, expected in [("confidence", ("confidence", "confidence")), ("views", ("views", "mean")),
                              ("heads", ("heads", "agreement")), ("views/flip", ("views", "flip"))]:
    assert loop._selection(criteria_config(select_on=select_on), evals) == expected


def test_head_agreement_of_a_method_with_one_network_is_refused():
  with pytest.raises(ValueError, match=r"^config.evals.heads.type='head_agreement' needs a method with a second "
                     r"network \(regda, mean_teacher, daml, geometric\); method 'source_only' has none$"):
    evaluators.from_config(criteria_config(), methods.get("source_only"), parallel.make_mesh())


@pytest.mark.parametrize("settings, message", [
    (dict(count=0), "count=0: the number of samples scored must be a positive integer"),
    (dict(threshold=0), "threshold=0: the distance two predictions may be apart"),
    (dict(rotation=-5.0), "rotation=-5.0: the largest rotation"),
    (dict(scale_min=1.2, scale_max=1.1), "scale_min=1.2, scale_max=1.1: the affine view's scale range"),
    (dict(seed=1.5), "seed=1.5: the seed of the affine views"),
])
def test_a_bad_view_agreement_setting_is_named(settings, message):
  config = criteria_config()
  config.evals.views.update(settings)
  with pytest.raises(ValueError, match=f"^config.evals.views: {message}"):
    evaluators.from_config(config, methods.get("regda"), parallel.make_mesh())
