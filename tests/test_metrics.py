import jax.numpy as jnp
import numpy as np
import pytest

from dapose_jax.pose import metrics


def maps_with_peaks(points, size=64):
  """(B, size, size, K) maps with a single 1 at each (x, y); None leaves the map all zero."""
  b, k = len(points), len(points[0])
  m = np.zeros((b, size, size, k), np.float32)
  for i, row in enumerate(points):
    for j, p in enumerate(row):
      if p is not None:
        m[i, p[1], p[0], j] = 1.0
  return jnp.asarray(m)


def test_pck_threshold_is_3_2_heatmap_pixels_and_x_y_greater_than_one_rule():
  target = maps_with_peaks([[(10, 10), (10, 10), (10, 10), (1, 20), None, (20, 2)]])
  pred = maps_with_peaks([[(13, 10), (12, 12), (14, 10), (1, 20), (30, 30), (20, 5)]])
  per_kp, avg, cnt = metrics.pck(pred, target)
  # d = 3 (< 3.2) correct; d = 2.83 correct; d = 4 wrong; target x = 1 not counted; empty target not
  # counted; d = 3 with target y = 2 counted and correct
  np.testing.assert_allclose(np.asarray(per_kp), [1, 1, 0, -1, -1, 1])
  assert float(avg) == pytest.approx(0.75)
  assert int(cnt) == 4


def test_pck_per_keypoint_is_fraction_over_counted_samples():
  target = maps_with_peaks([[(10, 10)], [(10, 10)], [(10, 10)], [None]])
  pred = maps_with_peaks([[(10, 10)], [(30, 30)], [(11, 11)], [(10, 10)]])
  per_kp, avg, cnt = metrics.pck(pred, target)
  assert float(per_kp[0]) == pytest.approx(2 / 3)
  assert float(avg) == pytest.approx(2 / 3) and int(cnt) == 1


def test_group_pck_tllib_mode_averages_minus_one_into_groups_weighted_by_batch():
  groups = {"a": (0, 1), "all": (0, 1, 2)}
  table = metrics.GroupPCK(groups, mode="tllib")
  table.update(np.array([1.0, -1.0, 0.5]), batch_size=2)
  table.update(np.array([0.0, 1.0, 1.0]), batch_size=1)
  result = table.result()
  assert result["a"] == pytest.approx((0.0 * 2 + 0.5 * 1) / 3)
  assert result["all"] == pytest.approx(((0.5 / 3) * 2 + (2 / 3) * 1) / 3)


def test_group_pck_udape_mode_ignores_minus_one_per_keypoint():
  table = metrics.GroupPCK({"a": (0, 1), "all": (0, 1, 2)}, mode="udape")
  table.update(np.array([1.0, -1.0, 0.5]), batch_size=2)
  table.update(np.array([0.0, 1.0, 1.0]), batch_size=1)
  result = table.result()
  kp = [2 / 3, 1.0, 2 / 3]
  assert result["a"] == pytest.approx((kp[0] + kp[1]) / 2)
  assert result["all"] == pytest.approx(sum(kp) / 3)


def test_group_pck_rejects_unknown_mode():
  with pytest.raises(ValueError, match="aggregation"):
    metrics.GroupPCK({"all": (0,)}, mode="mean")
