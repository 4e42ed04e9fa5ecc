"""Pictures of keypoints: skeletons over images, truth beside prediction, heatmap grids, line plots, matrix plots,
PNG files.

Images are uint8 (H, W, 3) RGB; keypoints (K, 2) (x, y) in that image's continuous pixel coordinates
(``data.transforms``: pixel (row i, column j) covers [j, j + 1) x [i, i + 1)). Every function returns a new
array and leaves its inputs alone. Pure numpy and OpenCV (no JAX), so any command can draw.

Colours (``keypoint_colours``, ``limb_colours``): a keypoint's side comes from its name (``l_``/``left``: left,
``r_``/``right``: right); the two members of a flip pair whose names carry no side count as left (first) and
right (second); every other keypoint is centre. Left keypoints are drawn in warm hues (crimson to yellow),
right ones in cool hues (cyan to blue), centre ones in greens, so a swapped left/right joint map shows as warm
colours on the figure's right. Within a side the hue steps with the flip pair's order, so both members of a
pair get the same step of their own family (left knee and right knee are the same shade of warm and cool). A
set without sides (Hand21) spreads the whole hue circle over its keypoints in index order. A limb (an edge of
the keypoint set) has the colour of its second keypoint, or of its first when only the first has a side (a
shoulder-thorax limb is the shoulder's colour).
"""

import colorsys
import math

import cv2
import numpy as np
from PIL import Image

from dapose_jax.augment import transforms

# Hue ranges in degrees (start, end) of each side's family; the left one wraps through 0.
SIDE_HUES = {"left": (345.0, 415.0), "right": (175.0, 250.0), "centre": (95.0, 140.0)}
BACKGROUND = (32, 32, 32)  # between the tiles of a grid, behind a legend
GAP = 2  # pixels between and around the tiles of a grid
MIN_TILE = 64  # heatmap tiles without an image are enlarged to at least this side
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SUBPIXEL_BITS = 4  # OpenCV draws at 1/16 pixel


def keypoint_sides(keypoint_set):
  """'left', 'right' or 'centre' for each keypoint (the rule in the module docstring)."""
  sides = [_side_of_name(name) for name in keypoint_set.names]
  for a, b in keypoint_set.flip_pairs:
    if sides[a] is None and sides[b] is None:
      sides[a], sides[b] = "left", "right"
  return tuple(side or "centre" for side in sides)


def _side_of_name(name):
  name = name.lower()
  if name.startswith(("l_", "left")):
    return "left"
  if name.startswith(("r_", "right")):
    return "right"
  return None


def keypoint_colours(keypoint_set):
  """(K, 3) uint8 RGB colour of each keypoint (the rule in the module docstring)."""
  sides = keypoint_sides(keypoint_set)
  k = keypoint_set.num_keypoints
  if all(side == "centre" for side in sides):
    return _rgb([360.0 * i / k for i in range(k)])
  paired = len(keypoint_set.flip_pairs)
  step = {}
  for rank, pair in enumerate(keypoint_set.flip_pairs):
    for i in pair:
      step.setdefault(i, rank)
  next_step = {"left": paired, "right": paired, "centre": 0}
  for i, side in enumerate(sides):
    if side == "centre" or i not in step:
      step[i], next_step[side] = next_step[side], next_step[side] + 1
  last = {"left": max(next_step["left"], next_step["right"]) - 1, "centre": next_step["centre"] - 1}
  last["right"] = last["left"]
  hues = []
  for i, side in enumerate(sides):
    start, end = SIDE_HUES[side]
    hues.append(start + (end - start) * step[i] / max(last[side], 1))
  return _rgb(hues)


def _rgb(hues):
  return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h % 360 / 360, 0.85, 1.0)] for h in hues],
                  np.uint8).reshape(-1, 3)


def limb_colours(keypoint_set):
  """(E, 3) uint8 RGB colour of each edge of ``keypoint_set`` (the rule in the module docstring)."""
  sides, colours = keypoint_sides(keypoint_set), keypoint_colours(keypoint_set)
  ends = [a if sides[b] == "centre" and sides[a] != "centre" else b for a, b in keypoint_set.edges]
  return colours[ends].reshape(-1, 3)


def draw_keypoints(image, keypoints, keypoint_set, visible=None, radius=None, thickness=None):
  """``image`` with the skeleton of ``keypoints`` drawn over it: a limb along each edge whose two ends are
  drawn, then a filled dot (with a dark rim) on each drawn keypoint, in the colours of the module docstring.

  visible: (K,) bool mask, or confidences / visibility weights; a keypoint is drawn where it is > 0 (and its
    position finite). None: every keypoint.
  radius, thickness: of the dots and limbs in pixels; by default they grow with the image's shorter side
    (2 px and 2 px up to 128 px, 5 px and 3 px at 256 px).
  """
  image = np.array(image, np.uint8, copy=True, order="C")
  keypoints = np.asarray(keypoints, np.float64)
  if image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
  if keypoints.shape != (keypoint_set.num_keypoints, 2):
    raise ValueError(f"{keypoint_set.name} has {keypoint_set.num_keypoints} keypoints; got keypoints of shape "
                     f"{keypoints.shape}")
  side = min(image.shape[:2])
  radius = max(2, round(side / 50)) if radius is None else radius
  thickness = max(2, round(side / 100)) if thickness is None else thickness
  drawn = np.isfinite(keypoints).all(axis=1)
  if visible is not None:
    drawn &= np.asarray(visible).reshape(-1) > 0
  # OpenCV's integer pixel coordinates are pixel centres, at (j + 0.5, i + 0.5) in ours.
  points = np.where(drawn[:, None], np.round((keypoints - 0.5) * (1 << _SUBPIXEL_BITS)), 0).astype(np.int64)
  for (a, b), colour in zip(keypoint_set.edges, limb_colours(keypoint_set)):
    if drawn[a] and drawn[b]:
      cv2.line(image, tuple(map(int, points[a])), tuple(map(int, points[b])), _colour(colour), thickness,
               cv2.LINE_AA, _SUBPIXEL_BITS)
  colours = keypoint_colours(keypoint_set)
  for i in np.flatnonzero(drawn):
    centre = tuple(map(int, points[i]))
    cv2.circle(image, centre, (radius + 1) << _SUBPIXEL_BITS, (0, 0, 0), -1, cv2.LINE_AA, _SUBPIXEL_BITS)
    cv2.circle(image, centre, radius << _SUBPIXEL_BITS, _colour(colours[i]), -1, cv2.LINE_AA, _SUBPIXEL_BITS)
  return image


def _colour(rgb):
  return tuple(int(c) for c in rgb)


def compare(image, truth, prediction, keypoint_set, visible=None):
  """Ground truth beside prediction: ``image`` twice, side by side with a ``GAP`` between them, the left copy
  with ``truth`` drawn and labelled "truth", the right one with ``prediction`` (every keypoint) and labelled
  "prediction". ``visible`` selects the truth keypoints that are drawn, as in ``draw_keypoints``."""
  left = draw_keypoints(image, truth, keypoint_set, visible)
  right = draw_keypoints(image, prediction, keypoint_set)
  for picture, text in ((left, "truth"), (right, "prediction")):
    put_label(picture, text, (2, 2))
  return grid([left, right], columns=2, border=0)


def put_label(image, text, top_left, colour=(255, 255, 255), scale=None):
  """Writes ``text`` (white with a black outline, by default scaled to the image) into ``image`` in place, its
  top left corner at ``top_left`` (x, y)."""
  scale = float(np.clip(min(image.shape[:2]) / 200, 0.3, 0.7)) if scale is None else scale
  (_, height), _ = cv2.getTextSize(text, _FONT, scale, 1)
  origin = (top_left[0], top_left[1] + height)
  cv2.putText(image, text, origin, _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
  cv2.putText(image, text, origin, _FONT, scale, colour, 1, cv2.LINE_AA)


def grid(tiles, columns, border=GAP):
  """Equally shaped RGB ``tiles`` in rows of ``columns``, ``GAP`` pixels apart and ``border`` pixels from the
  edge, on ``BACKGROUND``; a short last row leaves its cells empty."""
  tiles = [np.asarray(tile, np.uint8) for tile in tiles]
  shapes = {tile.shape for tile in tiles}
  if len(shapes) != 1:
    raise ValueError(f"the tiles of a grid need one shape; got {sorted(shapes)}")
  (height, width, _), = shapes
  rows = -(-len(tiles) // columns)
  out = np.empty((rows * height + (rows - 1) * GAP + 2 * border, columns * width + (columns - 1) * GAP + 2 * border,
                  3), np.uint8)
  out[:] = BACKGROUND
  for n, tile in enumerate(tiles):
    top, left = border + n // columns * (height + GAP), border + n % columns * (width + GAP)
    out[top:top + height, left:left + width] = tile
  return out


def legend(keypoint_set, width):
  """A ``width`` pixels wide strip naming every keypoint beside a dot of its colour, in index order, in as many
  columns as fit."""
  scale, row = 0.4, 16
  cell = max(cv2.getTextSize(name, _FONT, scale, 1)[0][0] for name in keypoint_set.names) + row + 8
  columns = max(1, (width - GAP) // cell)
  rows = -(-keypoint_set.num_keypoints // columns)
  out = np.empty((rows * row + GAP, width, 3), np.uint8)
  out[:] = BACKGROUND
  for i, (name, colour) in enumerate(zip(keypoint_set.names, keypoint_colours(keypoint_set))):
    left, top = GAP + i % columns * cell, i // columns * row
    cv2.circle(out, (left + row // 2, top + row // 2), row // 2 - 3, _colour(colour), -1, cv2.LINE_AA)
    cv2.putText(out, name, (left + row + 2, top + row - 4), _FONT, scale, (230, 230, 230), 1, cv2.LINE_AA)
  return out


def heatmap_grid(heatmaps, names=None, columns=None, image=None):
  """(H, W, K) heatmaps as a grid of K colour-mapped tiles (inferno: black at 0, pale yellow at the map's own
  maximum; negative values count as 0), ``columns`` per row (default: a square grid), each labelled with its
  entry of ``names`` if given. With ``image`` each tile is the heatmap resampled to the image's size and
  blended half and half over it; without, tiles are the heatmaps enlarged by a whole factor to at least
  ``MIN_TILE`` pixels. Heatmap cell u is centred on image coordinate u * stride, as the training targets place
  a keypoint at x in cell round(x / stride) (``keypoints.gaussian_targets``)."""
  heatmaps = np.asarray(heatmaps, np.float32)
  height, width, k = heatmaps.shape
  if names is not None and len(names) != k:
    raise ValueError(f"{len(names)} names for {k} heatmaps")
  if image is None:
    factor = max(1, math.ceil(MIN_TILE / max(height, width)))
    size = height * factor, width * factor
  else:
    size = image.shape[:2]
  tiles = []
  for i in range(k):
    peak = heatmaps[..., i].max()
    scaled = np.clip(heatmaps[..., i] / peak, 0, 1) if peak > 0 else np.zeros((height, width), np.float32)
    levels = np.round(_resample(scaled, size) * 255).astype(np.uint8)
    tile = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    if image is not None:
      tile = ((tile.astype(np.uint16) + np.asarray(image, np.uint16)) // 2).astype(np.uint8)
    if names is not None:
      put_label(tile, names[i], (2, 2))
    tiles.append(tile)
  return grid(tiles, columns or math.ceil(math.sqrt(k)))


def _resample(heatmap, size):
  """``heatmap`` bilinearly resampled to ``size`` (rows, columns), cell u centred on output coordinate
  u * stride: output pixel j (centre j + 0.5) reads the heatmap at (j + 0.5) / stride."""
  rows, columns = size
  stride_y, stride_x = rows / heatmap.shape[0], columns / heatmap.shape[1]
  output_to_heatmap = np.array([[1 / stride_x, 0, 0.5 / stride_x], [0, 1 / stride_y, 0.5 / stride_y]])
  return cv2.warpAffine(heatmap, output_to_heatmap, (columns, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE)


PLOT_SIZE = (320, 480)  # rows, columns of a line plot
PLOT_MARGINS = dict(left=48, right=16, top=32, bottom=40)
PLOT_COLOUR = (31, 119, 180)
PLOT_COLOURS = (PLOT_COLOUR, (255, 127, 14), (44, 160, 44), (214, 39, 40))  # line i of a line plot


def pck_curve(thresholds, values, title="PCK"):
  """``line_plot`` of PCK ``values`` (percent) over ``thresholds``."""
  return line_plot(thresholds, {"": values}, title=title, x_label="threshold")


def line_plot(x, lines, *, title, x_label):
  """Lines ``{label: values}`` (percent) over ``x``: ``series_plot`` with a 0 to 100 y axis."""
  x = np.asarray(x, np.float64)
  lines = {label: np.asarray(values, np.float64) for label, values in lines.items()}
  if x.ndim != 1 or not len(x) or any(values.shape != x.shape for values in lines.values()):
    raise ValueError(f"x {x.shape} and lines {[v.shape for v in lines.values()]}: expected lists as long as x")
  return series_plot({label: (x, values) for label, values in lines.items()}, title=title, x_label=x_label,
                     y_range=(0.0, 100.0))


def series_plot(lines, *, title, x_label, y_range=None, bands=None, connect=True):
  """Lines ``{label: (x, y)}`` on a white canvas of ``PLOT_SIZE``: the x axis spans every line's x, the y axis
  ``y_range`` (default: every line's and band's values, 5 % added each side), each with five ticks and grid lines;
  line i in ``PLOT_COLOURS[i]`` with a dot per point, named in a legend at the bottom right unless its label is
  empty; ``bands`` ``{label: (low, high)}`` (along that line's x) shaded in its line's colour beneath it;
  ``connect=False``: the dots alone (a scatter plot)."""
  lines = {label: (np.asarray(x, np.float64), np.asarray(y, np.float64)) for label, (x, y) in lines.items()}
  bands = {label: tuple(np.asarray(v, np.float64) for v in band) for label, band in (bands or {}).items()}
  if not 0 < len(lines) <= len(PLOT_COLOURS) or any(x.ndim != 1 or not len(x) or y.shape != x.shape
                                                    for x, y in lines.values()):
    raise ValueError(f"lines {[(x.shape, y.shape) for x, y in lines.values()]}: expected 1 to {len(PLOT_COLOURS)} "
                     "(x, y) pairs of equal, non-empty 1-D shapes")
  rows, columns = PLOT_SIZE
  out = np.full((rows, columns, 3), 255, np.uint8)
  every_x = np.concatenate([x for x, _ in lines.values()])
  low, high = every_x.min(), every_x.max()
  if high == low:
    low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
  if y_range is None:
    every_y = np.concatenate([y for _, y in lines.values()] + [v for band in bands.values() for v in band])
    every_y = every_y[np.isfinite(every_y)]
    y_low, y_high = (every_y.min(), every_y.max()) if len(every_y) else (0.0, 1.0)
    pad = 0.05 * (y_high - y_low) or 0.5 * (abs(y_low) or 1)
    y_range = (y_low - pad, y_high + pad)
  y_low, y_high = y_range
  y_ticks = [(tick, f"{tick:.3g}") for tick in np.linspace(y_low, y_high, 6)]
  widest = max(cv2.getTextSize(text, _FONT, 0.4, 1)[0][0] for _, text in y_ticks)
  left, right = max(PLOT_MARGINS["left"], widest + 12), columns - PLOT_MARGINS["right"]  # room for the y labels
  top, bottom = PLOT_MARGINS["top"], rows - PLOT_MARGINS["bottom"]

  def pixel(u, y):
    return (round(left + (u - low) / (high - low) * (right - left)),
            round(bottom - (y - y_low) / (y_high - y_low) * (bottom - top)))

  black, grey = (0, 0, 0), (225, 225, 225)
  for tick in np.linspace(low, high, 5):
    u, _ = pixel(tick, y_low)
    cv2.line(out, (u, top), (u, bottom), grey, 1)
    text = f"{tick:.3g}"
    (w, h), _ = cv2.getTextSize(text, _FONT, 0.4, 1)
    cv2.putText(out, text, (u - w // 2, bottom + 8 + h), _FONT, 0.4, black, 1, cv2.LINE_AA)
  for tick, text in y_ticks:
    _, y = pixel(low, tick)
    cv2.line(out, (left, y), (right, y), grey, 1)
    (w, h), _ = cv2.getTextSize(text, _FONT, 0.4, 1)
    cv2.putText(out, text, (left - 6 - w, y + h // 2), _FONT, 0.4, black, 1, cv2.LINE_AA)
  cv2.rectangle(out, (left, top), (right, bottom), black, 1)
  (w, _), _ = cv2.getTextSize(x_label, _FONT, 0.4, 1)
  cv2.putText(out, x_label, ((left + right - w) // 2, rows - 6), _FONT, 0.4, black, 1, cv2.LINE_AA)
  cv2.putText(out, title, (left, top - 10), _FONT, 0.5, black, 1, cv2.LINE_AA)
  clip = lambda y: np.clip(y, y_low, y_high)
  for (label, (x, _)), colour in zip(lines.items(), PLOT_COLOURS):
    if label in bands:
      band_low, band_high = bands[label]
      outline = [pixel(u, v) for u, v in zip(x, clip(band_high))] + [pixel(u, v) for u, v in
                                                                     zip(x[::-1], clip(band_low[::-1]))]
      shade = out.copy()
      cv2.fillPoly(shade, [np.array(outline, np.int32)], colour, cv2.LINE_AA)
      out = cv2.addWeighted(shade, 0.25, out, 0.75, 0)
  key_right = right
  for (label, (x, y)), colour in reversed(list(zip(lines.items(), PLOT_COLOURS))):
    points = np.array([pixel(u, v) for u, v in zip(x, clip(y))], np.int32)
    if connect:
      cv2.polylines(out, [points], False, colour, 2, cv2.LINE_AA)
    for point in points:
      cv2.circle(out, tuple(map(int, point)), 3, colour, -1, cv2.LINE_AA)
    if label:
      (w, _), _ = cv2.getTextSize(label, _FONT, 0.4, 1)
      cv2.putText(out, label, (key_right - w, rows - 6), _FONT, 0.4, black, 1, cv2.LINE_AA)
      cv2.line(out, (key_right - w - 18, rows - 10), (key_right - w - 4, rows - 10), colour, 2)
      key_right -= w + 28
  return out


MATRIX_CELL = (22, 36)  # rows, columns of a cell of a matrix plot
OUTLINE_COLOUR = PLOT_COLOURS[1]


def matrix_plot(shares, rows, columns, *, title, outlined=(), note="", split_last=False):
  """A table of ``shares`` (R, C) in percent on white: row i labelled ``rows[i]`` on the left, column j
  ``columns[j]`` written upwards above it; each cell shaded from white (0) to ``PLOT_COLOUR`` (100) with its share
  printed (whole percent from 10, one decimal below; 0 in grey), the cells ``outlined`` ((i, j) pairs) framed in
  ``OUTLINE_COLOUR``; ``title`` above, ``note`` below; with ``split_last`` the last column set a gap apart."""
  shares = np.asarray(shares, np.float64)
  if shares.shape != (len(rows), len(columns)):
    raise ValueError(f"shares {shares.shape} for {len(rows)} rows and {len(columns)} columns")
  (cell_h, cell_w), scale, black = MATRIX_CELL, 0.35, (0, 0, 0)
  text_size = lambda text: cv2.getTextSize(text, _FONT, scale, 1)[0]
  gap = 6 if split_last else 0
  left = max(text_size(text)[0] for text in rows) + 10
  top = 28 + max(text_size(text)[0] for text in columns) + 8
  width = left + len(columns) * cell_w + gap + 10
  height = top + len(rows) * cell_h + (24 if note else 10)
  width = max(width, cv2.getTextSize(title, _FONT, 0.5, 1)[0][0] + 20, text_size(note)[0] + 20)
  out = np.full((height, width, 3), 255, np.uint8)
  cv2.putText(out, title, (10, 18), _FONT, 0.5, black, 1, cv2.LINE_AA)

  def corner(i, j):
    return left + j * cell_w + (gap if split_last and j == len(columns) - 1 else 0), top + i * cell_h

  for j, text in enumerate(columns):  # drawn sideways, then turned to read upwards
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    label = np.full((h + base + 2, w + 4, 3), 255, np.uint8)
    cv2.putText(label, text, (2, h + 1), _FONT, scale, black, 1, cv2.LINE_AA)
    label = np.rot90(label)
    x, _ = corner(0, j)
    x += (cell_w - label.shape[1]) // 2
    out[top - 4 - label.shape[0]:top - 4, x:x + label.shape[1]] = label
  for i, text in enumerate(rows):
    w, h = text_size(text)
    cv2.putText(out, text, (left - 6 - w, top + i * cell_h + (cell_h + h) // 2), _FONT, scale, black, 1,
                cv2.LINE_AA)
  for (i, j), share in np.ndenumerate(shares):
    x, y = corner(i, j)
    weight = float(np.clip(share / 100, 0, 1))
    fill = tuple(round(255 + (c - 255) * weight) for c in PLOT_COLOUR)
    cv2.rectangle(out, (x, y), (x + cell_w - 1, y + cell_h - 1), fill, -1)
    cv2.rectangle(out, (x, y), (x + cell_w - 1, y + cell_h - 1), (225, 225, 225), 1)
    text = "0" if share == 0 else f"{share:.0f}" if share >= 9.95 else f"{share:.1f}"
    colour = (170, 170, 170) if share == 0 else (255, 255, 255) if weight > 0.55 else black
    w, h = text_size(text)
    cv2.putText(out, text, (x + (cell_w - w) // 2, y + (cell_h + h) // 2), _FONT, scale, colour, 1, cv2.LINE_AA)
  for i, j in outlined:
    x, y = corner(i, j)
    cv2.rectangle(out, (x + 1, y + 1), (x + cell_w - 2, y + cell_h - 2), OUTLINE_COLOUR, 2)
  if note:
    cv2.putText(out, note, (10, height - 8), _FONT, scale, black, 1, cv2.LINE_AA)
  return out


def pck_curve_png(thresholds, values, path, title="PCK"):
  """Writes ``pck_curve(thresholds, values, title)`` to ``path`` as a PNG; returns ``path``."""
  return save_png(path, pck_curve(thresholds, values, title))


def save_png(path, image):
  """Writes the RGB ``image`` to ``path`` as a PNG (replacing a file there: the commands decide whether they
  may) and returns ``path``; its folder must exist."""
  Image.fromarray(np.asarray(image, np.uint8)).save(path, format="PNG", optimize=True)
  return path


def evaluation_pictures(predict, source, keypoint_set, config, *, resize_pad=False, count=4):
  """What a run shows of its model at an evaluation, for TensorBoard: the first ``count`` samples of ``source``
  in the test transform, their heatmaps from ``predict`` (uint8 images (N, S, S, 3) -> heatmaps (N, h, w, K),
  any array type) decoded by argmax as the evaluators decode them (cell u is image coordinate u * stride); a
  keypoint whose heatmap has no positive value is left out of the prediction.

  Returns {"truth_vs_prediction": the ``compare`` pictures of the samples one above the other, "heatmaps":
  ``heatmap_grid`` of the first sample over its image, labelled with the keypoint names}.
  """
  samples = []
  for i in range(min(count, len(source))):
    sample = source[i]
    image, truth = transforms.test_transform(sample["image"], sample["keypoints"], config.image_size, pad=resize_pad)
    samples.append((image, truth, sample["visible"]))
  images = np.stack([image for image, _, _ in samples])
  heatmaps = np.asarray(predict(images), np.float32)
  batch, height, width, k = heatmaps.shape
  flat = heatmaps.reshape(batch, height * width, k).argmax(axis=1)
  stride = config.image_size / config.heatmap_size
  predicted = np.stack([flat % width, flat // width], axis=-1) * stride
  predicted[heatmaps.max(axis=(1, 2)) <= 0] = np.nan  # no positive value: nothing to draw (evaluators: (0, 0))
  rows = [compare(image, truth, prediction, keypoint_set, visible)
          for (image, truth, visible), prediction in zip(samples, predicted)]
  return {"truth_vs_prediction": grid(rows, columns=1),
          "heatmaps": heatmap_grid(heatmaps[0], keypoint_set.names, image=images[0])}
