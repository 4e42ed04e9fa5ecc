"""The embedded benchmark: procedurally rendered people with the BODY16 skeleton, in two domains.

Each sample is a 3D articulated body (torso, head, arms, legs, hands, feet) posed from a kinematic
prior with joint limits, seen by a random perspective camera and drawn with OpenCV as shaded
capsules, a torso hull and a head, cropped like a person box. Two styles make two domains:

* ``source``: a clean synthetic look; every body part has its own flat, saturated colour, on a
  plain or gradient background; moderate poses and cameras.
* ``target``: a shifted "real" look; clothes (shirt, trousers, sleeves of random length) in muted
  colours with stripe or noise textures, skin, hair, shading, cluttered backgrounds with limb-like
  distractors, occluders, uneven lighting, blur and sensor noise; wider poses, camera roll and
  elevation, heavier builds and looser crops (joints may leave the image).

A sample is a pure function of (style, split, seed, index). Keypoints use the convention of
``transforms``: continuous pixel coordinates in which the image spans [0, S] x [0, S]. Every sample also
holds the skeleton's 3D joints in the pinhole camera frame and the intrinsics that project them to the
keypoints; in pair mode a sample is a base (the same sample) and a driving image of the same scene in a
nearby pose (``render_pair``).
"""

import copy
import dataclasses
import functools
import math

import cv2
import numpy as np

from dapose_jax.pose.skeletons import BODY16

STYLES = ("source", "target")
SPLITS = ("train", "val", "test")

# Body dimensions in metres, for a person about 1.75 m tall.
_HIP_HALF_WIDTH = 0.09
_SPINE = 0.50  # pelvis -> thorax
_SHOULDER_HALF_WIDTH = 0.18
_NECK = 0.10  # thorax -> upper neck
_HEAD = 0.23  # upper neck -> head top
_HEAD_RADII = (0.085, 0.115)  # half width, half height
_LENGTHS = dict(upper_arm=0.29, forearm=0.26, hand=0.09, thigh=0.44, shin=0.43, foot=0.16)
_RADII = dict(neck=0.05, upper_arm=0.047, forearm=0.038, hand=0.036, thigh=0.075, shin=0.055,
              foot=0.035)

# Joint angles in degrees as (rest, low, high): a sample moves from the rest pose towards a uniform
# draw within the limits by its activity in [0, 1]. Arm and leg angles are drawn per side.
_BODY_ANGLES = dict(spine_bend=(5, -25, 70), spine_side=(0, -25, 25), spine_twist=(0, -40, 40),
                    head_bend=(0, -35, 45), head_side=(0, -30, 30))
_LIMB_ANGLES = dict(shoulder_flex=(0, -50, 180), shoulder_abd=(10, -15, 160),
                    arm_twist=(10, -60, 90), elbow=(15, 0, 150), hip_flex=(0, -35, 120),
                    hip_abd=(5, -15, 55), leg_twist=(0, -30, 40), knee=(5, 0, 150))

# Extra points after the 16 joints: hand and toe ends, head centre, face centre, torso outline.
_R_HAND, _L_HAND, _R_TOE, _L_TOE, _HEAD_CENTRE, _FACE = range(16, 22)
_TORSO = 22
_RING_POINTS = 8
_NUM_POINTS = _TORSO + 3 * _RING_POINTS

# (part, kind, start point, end point); kind selects the radius.
_CAPSULES = (
    ("neck", "neck", 7, 8),
    ("r_upper_arm", "upper_arm", 12, 11), ("r_forearm", "forearm", 11, 10),
    ("r_hand", "hand", 10, _R_HAND),
    ("l_upper_arm", "upper_arm", 13, 14), ("l_forearm", "forearm", 14, 15),
    ("l_hand", "hand", 15, _L_HAND),
    ("r_thigh", "thigh", 2, 1), ("r_shin", "shin", 1, 0), ("r_foot", "foot", 0, _R_TOE),
    ("l_thigh", "thigh", 3, 4), ("l_shin", "shin", 4, 5), ("l_foot", "foot", 5, _L_TOE),
)
_SHIFT = 4  # fixed-point bits for sub-pixel cv2 drawing
_ONE = 1 << _SHIFT


@dataclasses.dataclass(frozen=True)
class _Style:
  """Pose, camera and framing distribution of one domain (appearance lives in the painters)."""

  activity: tuple[float, float]  # range of the blend from rest pose to random joint angles
  pitch: float  # max |camera elevation|, degrees
  roll: float  # max |in-plane rotation|, degrees
  distance: tuple[float, float]  # camera distance range, metres (perspective strength)
  extent: tuple[float, float]  # longer side of the figure's box / image side
  shift: float  # extra random translation, fraction of the image side
  length_jitter: float  # relative std of segment lengths
  build: tuple[float, float]  # range of the limb thickness factor


_STYLES = {
    "source": _Style(activity=(0.15, 0.65), pitch=15, roll=10, distance=(6, 12),
                     extent=(0.7, 0.92), shift=0.0, length_jitter=0.04, build=(0.85, 1.1)),
    "target": _Style(activity=(0.2, 0.85), pitch=25, roll=25, distance=(3, 8),
                     extent=(0.72, 0.98), shift=0.02, length_jitter=0.08, build=(1.0, 1.45)),
}


# ----------------------------------------------------------------------------------------------
# Pose and camera


def _rot_x(a):
  c, s = math.cos(a), math.sin(a)
  return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a):
  c, s = math.cos(a), math.sin(a)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a):
  c, s = math.cos(a), math.sin(a)
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# (rest, low, high) in degrees of every angle in the order the sampler draws them: body angles, then limb
# angles as (right, left) pairs.
_ANGLE_TABLE = np.array(list(_BODY_ANGLES.values()) + [v for v in _LIMB_ANGLES.values() for _ in range(2)],
                        np.float64)


def _sample_angles(rng, activity):
  """(n,) joint angles in radians in the order of _ANGLE_TABLE."""
  rest, low, high = _ANGLE_TABLE.T
  return np.radians(rest + activity * (rng.uniform(low, high) - rest))


def _move_angles(rng, angles, motion):
  """The driving pose of a pair: every angle plus a step drawn uniformly in +-motion x (its high - low),
  clipped to its limits."""
  _, low, high = np.radians(_ANGLE_TABLE.T)
  return np.clip(angles + motion * (high - low) * rng.uniform(-1, 1, angles.shape), low, high)


def _named_angles(angles):
  """Body angles as floats, limb angles as (right, left) pairs, by name."""
  limbs = angles[len(_BODY_ANGLES):].reshape(-1, 2)
  return dict(zip(_BODY_ANGLES, angles)), dict(zip(_LIMB_ANGLES, limbs))


_RING_ANGLES = np.linspace(0, 2 * np.pi, _RING_POINTS, endpoint=False)
_UNIT_RING = np.stack([np.cos(_RING_ANGLES), np.zeros(_RING_POINTS), np.sin(_RING_ANGLES)], 1)


def _ring(centre, frame, half_width, half_depth):
  """An elliptic torso cross-section: half_width along the frame's x, half_depth along its z."""
  return centre + (_UNIT_RING * (half_width, 0, half_depth)) @ frame.T


def _sample_body(rng, style):
  """A random body: (joint angles as _sample_angles gives them, (8,) relative segment lengths)."""
  angles = _sample_angles(rng, rng.uniform(*style.activity))
  return angles, 1 + style.length_jitter * rng.standard_normal(8)


def _body_points(angles, scale):
  """(_NUM_POINTS, 3) points of a posed body; x = the person's left, y = up, z = forward, origin at the pelvis."""
  body, limbs = _named_angles(angles)
  length = {k: v * s for (k, v), s in zip(_LENGTHS.items(), scale)}
  spine_len, shoulder_half = _SPINE * scale[6], _SHOULDER_HALF_WIDTH * scale[7]

  # Segment frames are rotations whose column 1 is the segment's axis (up in the rest pose).
  pts = np.zeros((_NUM_POINTS, 3))
  spine = _rot_y(body["spine_twist"]) @ _rot_z(body["spine_side"]) @ _rot_x(body["spine_bend"])
  head = spine @ _rot_z(body["head_side"]) @ _rot_x(body["head_bend"])
  pts[7] = spine_len * spine[:, 1]
  pts[8] = pts[7] + _NECK * head[:, 1]
  pts[9] = pts[8] + _HEAD * head[:, 1]
  pts[_HEAD_CENTRE] = pts[8] + head @ (0, _HEAD - _HEAD_RADII[1], 0.015)
  pts[_FACE] = pts[_HEAD_CENTRE] + head @ (0, -0.015, 0.04)

  # side 0 = right (-x), side 1 = left (+x); (hip, knee, ankle, toe, shoulder, elbow, wrist, hand)
  for side, ids in enumerate(((2, 1, 0, _R_TOE, 12, 11, 10, _R_HAND),
                              (3, 4, 5, _L_TOE, 13, 14, 15, _L_HAND))):
    sign = 2 * side - 1
    a = {k: v[side] for k, v in limbs.items()}
    hip, knee, ankle, toe, shoulder, elbow, wrist, hand = ids
    thigh = _rot_z(sign * a["hip_abd"]) @ _rot_x(-a["hip_flex"]) @ _rot_y(-sign * a["leg_twist"])
    shin = thigh @ _rot_x(a["knee"])
    pts[hip] = (sign * _HIP_HALF_WIDTH, 0, 0)
    pts[knee] = pts[hip] - length["thigh"] * thigh[:, 1]
    pts[ankle] = pts[knee] - length["shin"] * shin[:, 1]
    pts[toe] = pts[ankle] + shin @ (0, -0.04, length["foot"])
    # Positive twist is internal rotation: a bent elbow brings the hand across the body.
    upper = (spine @ _rot_z(sign * a["shoulder_abd"]) @ _rot_x(-a["shoulder_flex"])
             @ _rot_y(-sign * a["arm_twist"]))
    fore = upper @ _rot_x(-a["elbow"])
    pts[shoulder] = pts[7] + spine @ (sign * shoulder_half, -0.02, 0)
    pts[elbow] = pts[shoulder] - length["upper_arm"] * upper[:, 1]
    pts[wrist] = pts[elbow] - length["forearm"] * fore[:, 1]
    pts[hand] = pts[wrist] - length["hand"] * fore[:, 1]

  pts[6] = 0.5 * (pts[2] + pts[3])
  # The torso is the hull of three cross-sections: shoulders, waist (both bent with the spine), hips.
  pts[_TORSO:] = np.concatenate([
      _ring(pts[7] + spine @ (0, 0.01, -0.01), spine, shoulder_half + 0.04, 0.1),
      _ring(0.5 * pts[7], spine, 0.15, 0.1),
      _ring(np.array([0, -0.05, 0]), np.eye(3), _HIP_HALF_WIDTH + 0.08, 0.11)])
  return pts


def _sample_camera(rng, style):
  """A random view: (rotation from body to camera axes, distance from the camera to the pelvis in metres)."""
  rotation = (_rot_z(math.radians(rng.uniform(-style.roll, style.roll)))
              @ _rot_x(math.radians(rng.uniform(-style.pitch, style.pitch)))
              @ _rot_y(rng.uniform(0, 2 * math.pi)))
  return rotation, rng.uniform(*style.distance)


def _project(points, rotation, distance):
  """2D points (y down, metres at the body centre), depth (larger = nearer), the perspective magnification of
  each point, and the points in the pinhole camera frame (x right, y down, z = distance from the camera)."""
  cam = points @ rotation.T
  magnification = distance / (distance - cam[:, 2])
  xy = cam[:, :2] * magnification[:, None] * (1, -1)
  return xy, cam[:, 2], magnification, cam * (1, -1, -1) + (0, 0, distance)


@dataclasses.dataclass(frozen=True)
class _Framing:
  """The crop of a view: pixel = (xy - centre) * scale + size / 2 + offset."""

  centre: np.ndarray
  scale: float  # pixels per metre at the body centre
  offset: np.ndarray

  def pixels(self, xy, size):
    return (xy - self.centre) * self.scale + size / 2 + self.offset


def _sample_framing(rng, style, xy, size):
  """A crop that frames ``xy`` like a person box."""
  corner_lo, corner_hi = xy.min(0), xy.max(0)
  box = corner_hi - corner_lo
  scale = rng.uniform(*style.extent) * size / box.max()
  slack = np.maximum(0.0, size - box * scale) / 2 + style.shift * size
  return _Framing((corner_lo + corner_hi) / 2, scale, rng.uniform(-slack, slack))


# ----------------------------------------------------------------------------------------------
# Drawing

_PARTS = ("torso", "head", "face") + tuple(c[0] for c in _CAPSULES)
_TORSO_PART, _HEAD_PART, _FACE_PART, _FIRST_CAPSULE = 0, 1, 2, 3
_CAPSULE_ENDS = np.array([c[2:] for c in _CAPSULES])
_CAPSULE_RADII = np.array([_RADII[c[1]] for c in _CAPSULES])


class _Figure:
  """A posed body projected to pixels, drawable part by part (parts are indices into _PARTS)."""

  def __init__(self, points, depth, pixels_per_metre, build, occluded_points=None):
    """points (_NUM_POINTS, 2) in continuous pixel coordinates; depth (larger = nearer) and
    pixels_per_metre (perspective included) per point; build scales limb thickness; occluders are placed
    over joints of ``occluded_points`` (default ``points``; a pair's driving figure takes its base's, so
    that the occluders stay where they are)."""
    self.points = points
    self.occluded_points = points if occluded_points is None else occluded_points
    # cv2 takes integer fixed-point positions with pixel centres at integers.
    self._fixed = [tuple(p) for p in np.round((points - 0.5) * _ONE).astype(np.int64).tolist()]
    self._capsule_ends = [(self._fixed[a], self._fixed[b]) for a, b in _CAPSULE_ENDS.tolist()]
    a, b = _CAPSULE_ENDS.T
    ppm = (pixels_per_metre[a] + pixels_per_metre[b]) / 2
    self.widths = np.maximum(1, np.round(2 * _CAPSULE_RADII * build * ppm)).astype(int).tolist()
    self._head_ellipse = self._fit_head(pixels_per_metre[_HEAD_CENTRE])
    part_depth = np.concatenate([
        [depth[_TORSO:].mean(), depth[_HEAD_CENTRE], depth[_HEAD_CENTRE] + 1e-3],
        (depth[a] + depth[b]) / 2])
    order = np.argsort(part_depth, kind="stable").tolist()  # far to near: painter's algorithm
    if depth[_FACE] < depth[_HEAD_CENTRE] - 0.01:  # facing away
      order.remove(_FACE_PART)
    self.draw_order = order

  def _fit_head(self, ppm):
    """(axes, angle) of the head ellipse in cv2 fixed point."""
    up = self.points[9] - self.points[8]
    # Seen from above or below the head looks rounder: shrink its long axis with the projection.
    foreshortening = min(1.0, math.hypot(*up) / (_HEAD * ppm))
    half_w = _HEAD_RADII[0] * ppm
    half_h = half_w + (_HEAD_RADII[1] * ppm - half_w) * foreshortening
    return (half_w * _ONE, half_h * _ONE), math.degrees(math.atan2(up[1], up[0])) + 90

  def capsule_ends(self, part):
    return self._capsule_ends[part - _FIRST_CAPSULE]

  def draw(self, part, image, colour, line_type=cv2.LINE_AA):
    """Draws one part filled with ``colour`` onto ``image`` (in place)."""
    if part == _TORSO_PART:
      hull = cv2.convexHull(np.array(self._fixed[_TORSO:], np.int32))
      cv2.fillConvexPoly(image, hull, colour, line_type, _SHIFT)
    elif part in (_HEAD_PART, _FACE_PART):
      (half_w, half_h), angle = self._head_ellipse
      factor = 0.78 if part == _FACE_PART else 1.0
      centre = self._fixed[_FACE if part == _FACE_PART else _HEAD_CENTRE]
      axes = (round(half_w * factor), round(half_h * factor))
      cv2.ellipse(image, centre, axes, angle, 0, 360, colour, -1, line_type, _SHIFT)
    else:
      start, end = self.capsule_ends(part)
      width = self.widths[part - _FIRST_CAPSULE]
      cv2.line(image, start, end, colour, width, line_type, _SHIFT)


def _hsv_colours(rng, n, hsv_ranges):
  """(n, 3) random RGB colours in 0..255; hsv_ranges (..., 3, 2) broadcastable to (n, 3, 2) gives
  (low, high) of hue (degrees), saturation and value."""
  ranges = np.asarray(hsv_ranges, np.float64)
  hsv = rng.uniform(ranges[..., 0], ranges[..., 1], (n, 3)).astype(np.float32)
  if n == 0:
    return hsv
  return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0] * 255


@functools.cache
def _interpolation_weights(size, cells):
  """(size, cells) linear interpolation weights with the grid's end cells at the image borders."""
  position = np.linspace(0, cells - 1, size)
  return np.maximum(0, 1 - np.abs(position[:, None] - np.arange(cells))).astype(np.float32)


def _upsample(coarse, size):
  """Bilinear upsampling of a (c, c) grid to a smooth (size, size) float32 field."""
  weights = _interpolation_weights(size, coarse.shape[0])
  return weights @ coarse.astype(np.float32) @ weights.T


def _smooth_image(coarse, size):
  """uint8 RGB image bilinearly upsampled from a (c, c, 3) grid of colours in 0..255."""
  return cv2.merge([cv2.convertScaleAbs(_upsample(coarse[..., k], size)) for k in range(3)])


@functools.cache
def _noise_bank(size):
  """Fixed white and smooth noise images (2*size square, std 1) that samples crop at random."""
  rng = np.random.default_rng(20240611)
  white = rng.standard_normal((2 * size, 2 * size, 3), np.float32)
  smooth = cv2.GaussianBlur(rng.standard_normal((2 * size, 2 * size), np.float32), (0, 0), 2.0)
  return white, smooth / smooth.std()


def _noise_crop(rng, bank, size):
  top, left = rng.integers(0, bank.shape[0] - size, 2)
  return bank[top:top + size, left:left + size]


@functools.cache
def _pixel_grid(size):
  return np.mgrid[0:size, 0:size].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Source style

_PASTEL = np.array(((0, 360), (0, 0.5), (0.3, 1)))
_SATURATED = np.array(((0, 360), (0.45, 1), (0.55, 1)))


def _paint_source(rng, figure, size):
  """Flat, saturated colours, one per body part, on a plain or gradient background."""
  corners = _hsv_colours(rng, 4, _PASTEL).reshape(2, 2, 3)
  if rng.uniform() < 0.5:
    image = np.full((size, size, 3), np.round(corners[0, 0]), np.uint8)
  else:
    image = _smooth_image(corners, size)
  colours = _hsv_colours(rng, len(_PARTS), _SATURATED).tolist()
  for part in figure.draw_order:
    figure.draw(part, image, colours[part])
  return image


# ----------------------------------------------------------------------------------------------
# Target style

# Outfit roles; the first three double as ids in the garment map that selects textures.
_SKIN, _SHIRT, _TROUSERS, _HAIR, _SHOES = range(5)
_OUTFIT_HSV = np.array([((10, 40), (0.2, 0.6), (0.35, 0.95)),  # skin
                        ((0, 360), (0, 0.7), (0.1, 0.9)),  # shirt
                        ((0, 360), (0, 0.7), (0.1, 0.9)),  # trousers
                        ((10, 45), (0.2, 0.8), (0.05, 0.6)),  # hair
                        ((0, 360), (0, 0.5), (0.05, 0.45))])  # shoes
_CLUTTER_HSV = np.array(((0, 360), (0, 0.8), (0.1, 0.95)))
_ROLES = dict(torso=_SHIRT, head=_HAIR, face=_SKIN, neck=_SKIN, upper_arm=_SHIRT, forearm=_SHIRT,
              hand=_SKIN, thigh=_TROUSERS, shin=_TROUSERS, foot=_SHOES)


def _outfit_roles(rng):
  """The outfit role of every part; sleeves and trouser legs are long or short."""
  long_sleeves, long_trousers = rng.uniform(size=2) < (0.5, 0.7)
  roles = []
  for part in _PARTS:
    kind = part[2:] if part[:2] in ("r_", "l_") else part
    if (kind == "forearm" and not long_sleeves) or (kind == "shin" and not long_trousers):
      roles.append(_SKIN)
    else:
      roles.append(_ROLES[kind])
  return roles


def _garment_texture(rng, size):
  """A multiplicative texture: plain, stripes (any angle) or blotchy noise."""
  kind = rng.integers(3)
  if kind == 0:
    return np.float32(1.0)
  if kind == 1:
    y, x = _pixel_grid(size)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(3, 10) * size / 128
    wave = np.sin((x * math.cos(theta) + y * math.sin(theta)) * (2 * math.pi / period))
    return 1 + rng.uniform(0.15, 0.4) * np.sign(wave)
  return 1 + rng.uniform(0.1, 0.3) * _noise_crop(rng, _noise_bank(size)[1], size)


def _random_shape(rng, image, centre, extent, colour):
  """A filled rectangle or ellipse, or a thick line, around ``centre`` (integer pixels)."""
  kind = rng.integers(3)
  x, y = centre
  if kind == 0:
    dx, dy = (extent * rng.uniform(-1, 1, 2)).astype(int)
    cv2.rectangle(image, (x, y), (x + dx, y + dy), colour, -1)
  elif kind == 1:
    axes = tuple((extent * rng.uniform(0.3, 1, 2)).astype(int).tolist())
    cv2.ellipse(image, (x, y), axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
  else:
    dx, dy = (extent * rng.uniform(-1, 1, 2)).astype(int)
    width = max(1, int(rng.uniform(0.1, 0.3) * extent))
    cv2.line(image, (x, y), (x + dx, y + dy), colour, width, cv2.LINE_AA)


def _clutter(rng, size, limb_colour):
  """Background: a smooth colour field under random shapes and limb-like distractor strokes."""
  brightness = rng.uniform(30, 220, (4, 4, 1)) + rng.uniform(-40, 40, (4, 4, 3))
  image = _smooth_image(np.clip(brightness, 0, 255), size)
  n_shapes = rng.integers(3, 10)
  colours = _hsv_colours(rng, n_shapes, _CLUTTER_HSV).tolist()
  centres = rng.integers(0, size, (n_shapes, 2)).tolist()
  for centre, colour in zip(centres, colours):
    _random_shape(rng, image, centre, rng.uniform(0.05, 0.35) * size, colour)
  for _ in range(rng.integers(0, 2)):
    start, end = rng.integers(0, size, (2, 2)).tolist()
    width = max(1, int(rng.uniform(0.03, 0.07) * size))
    cv2.line(image, start, end, limb_colour, width, cv2.LINE_AA)
  return image


def _draw_target_figure(rng, figure, image):
  """Clothed, shaded figure over ``image``; returns the garment map that selects textures."""
  roles = _outfit_roles(rng)
  palette = _hsv_colours(rng, len(_OUTFIT_HSV), _OUTFIT_HSV)
  colours = palette.tolist()
  highlights = np.minimum(palette * 1.25 + 10, 255).tolist()
  garments = np.zeros(image.shape[:2], np.uint8)
  for part in figure.draw_order:
    role = roles[part]
    figure.draw(part, image, colours[role])
    figure.draw(part, garments, role if role <= _TROUSERS else _SKIN, cv2.LINE_8)
    if part >= _FIRST_CAPSULE:
      _draw_highlight(figure, part, image, highlights[role])
  return garments


def _draw_highlight(figure, part, image, colour):
  """A lighter stripe along a limb, offset towards the light at the upper left."""
  width = figure.widths[part - _FIRST_CAPSULE]
  if width >= 4:
    offset = round(-0.2 * width * _ONE)
    (ax, ay), (bx, by) = figure.capsule_ends(part)
    cv2.line(image, (ax + offset, ay + offset), (bx + offset, by + offset), colour,
             round(0.35 * width), cv2.LINE_AA, _SHIFT)


def _occlude(rng, figure, image, size):
  """Up to two shapes over random joints, partly hiding the figure."""
  count = rng.choice(3, p=(0.7, 0.25, 0.05))
  joints = np.clip(figure.occluded_points[rng.integers(0, 16, count)], -size, 2 * size).astype(int)
  for centre, colour in zip(joints.tolist(), _hsv_colours(rng, count, _CLUTTER_HSV).tolist()):
    _random_shape(rng, image, centre, rng.uniform(0.06, 0.18) * size, colour)


def _paint_target(rng, figure, size):
  """Clothes with textures and shading, clutter, occluders, uneven light, blur and noise."""
  limb_colour = _hsv_colours(rng, 1, _OUTFIT_HSV[_SKIN])[0].tolist()
  image = _clutter(rng, size, limb_colour)
  garments = _draw_target_figure(rng, figure, image)
  _occlude(rng, figure, image, size)

  shirt, trousers = _garment_texture(rng, size), _garment_texture(rng, size)
  gain = _upsample(rng.uniform(0.6, 1.2, (2, 2)), size)  # uneven lighting
  gain *= np.where(garments == _SHIRT, shirt, np.where(garments == _TROUSERS, trousers, 1))
  # Saturating uint8 cv2 arithmetic: fresh full-size float images cost more than the maths.
  gain_percent = cv2.cvtColor(cv2.convertScaleAbs(gain, alpha=100), cv2.COLOR_GRAY2RGB)
  image = cv2.multiply(image, gain_percent, scale=0.01)
  image = cv2.multiply(image, tuple(rng.uniform(0.85, 1.15, 3)) + (0,))  # colour cast
  image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.0) * size / 128)
  noise = _noise_crop(rng, _noise_bank(size)[0], size)
  return cv2.addWeighted(image, 1.0, noise, rng.uniform(2, 10), 0.0, dtype=cv2.CV_8U)


# ----------------------------------------------------------------------------------------------
# Public API

_PAINTERS = {"source": _paint_source, "target": _paint_target}


MOTION = 0.1  # default size of a pair's motion: the fraction of each joint's range that an angle may move by


def render(rng: np.random.Generator, style: str, image_size: int = 128):
  """One random sample: dict(image uint8 (S, S, 3), keypoints float32 (16, 2), visible (16,),
  keypoints3d float32 (16, 3), intrinsic_matrix float32 (3, 3)).

  keypoints3d are the posed skeleton's joints in the pinhole camera frame, in metres: x right and y down (the
  image's axes), z the depth from the camera centre; projecting them with intrinsic_matrix gives keypoints.
  """
  return _render(rng, style, image_size)[0]


def render_pair(rng: np.random.Generator, motion_rng: np.random.Generator, style: str, image_size: int = 128,
                motion: float = MOTION):
  """(base, driving): base is ``render(rng, style, image_size)``; driving shows the same figure, clothing,
  camera, background and occluders with the joint angles moved by ``_move_angles`` (steps drawn from
  ``motion_rng``, up to ``motion`` of each joint's range); the pelvis and the body's orientation stay put."""
  return _render(rng, style, image_size, lambda angles: _move_angles(motion_rng, angles, motion))


def _render(rng, style, image_size, move=None):
  """[sample] or, with ``move`` (angles -> driving angles), [base, driving]; ``rng`` draws what render draws,
  in the same order, and the driving image is painted from a copy of its state, so with the same appearance."""
  params = _STYLES[style]
  angles, lengths = _sample_body(rng, params)
  camera = _sample_camera(rng, params)
  view = _project(_body_points(angles, lengths), *camera)
  framing = _sample_framing(rng, params, view[0], image_size)
  build = rng.uniform(*params.build)
  if move is None:
    return [_paint(rng, style, image_size, view, framing, camera, build)[0]]
  paint_rng = copy.deepcopy(rng)
  base, figure = _paint(rng, style, image_size, view, framing, camera, build)
  driving_view = _project(_body_points(move(angles), lengths), *camera)
  driving, _ = _paint(paint_rng, style, image_size, driving_view, framing, camera, build, figure.points)
  return [base, driving]


def _paint(rng, style, image_size, view, framing, camera, build, occluded_points=None):
  """(sample, figure) of a projected body (``_project``'s outputs) painted in ``style``."""
  xy, depth, magnification, points3d = view
  points = framing.pixels(xy, image_size)
  figure = _Figure(points, depth, framing.scale * magnification, build, occluded_points)
  image = _PAINTERS[style](rng, figure, image_size)
  keypoints = points[:16].astype(np.float32)
  inside = np.all((keypoints >= 0) & (keypoints < image_size), axis=1)
  # focal length in pixels, and the principal point: where the camera axis (xy = 0) lands
  focal = framing.scale * camera[1]
  principal = framing.pixels(np.zeros(2), image_size)
  intrinsic_matrix = np.array([[focal, 0, principal[0]], [0, focal, principal[1]], [0, 0, 1]], np.float32)
  return dict(image=image, keypoints=keypoints, visible=inside.astype(np.float32),
              keypoints3d=points3d[:16].astype(np.float32), intrinsic_matrix=intrinsic_matrix), figure


class SyntheticPose:
  """Random-access source of rendered samples (a Grain data source).

  Sample ``index`` is drawn from a generator seeded with (seed, split, style, index), so it does
  not depend on the access order, and the splits are disjoint draws. With ``pairs`` a sample is
  dict(base=..., driving=...) of ``render_pair``: base is the sample without ``pairs``, and the motion is
  drawn from the first child (``SeedSequence.spawn``) of that seed.
  """

  keypoint_set = BODY16

  def __init__(self, style: str, split: str, num_samples: int, image_size: int = 128,
               seed: int = 0, pairs: bool = False, motion: float = MOTION):
    if style not in STYLES:
      raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0 <= motion <= 1:
      raise ValueError(f"motion must be a fraction of the joint ranges in [0, 1], got {motion!r}")
    self.style, self.split = style, split
    self.num_samples, self.image_size, self.seed = num_samples, image_size, seed
    self.pairs, self.motion = pairs, motion

  def __len__(self) -> int:
    return self.num_samples

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < self.num_samples:
      raise IndexError(f"index {index} out of range for {self.num_samples} samples")
    key = np.random.SeedSequence((self.seed, SPLITS.index(self.split), STYLES.index(self.style), index))
    if not self.pairs:
      return render(np.random.default_rng(key), self.style, self.image_size)
    base, driving = render_pair(np.random.default_rng(key), np.random.default_rng(key.spawn(1)[0]), self.style,
                                self.image_size, self.motion)
    return dict(base=base, driving=driving)

  def __repr__(self) -> str:
    pairs = f", pairs=True, motion={self.motion}" if self.pairs else ""
    return (f"SyntheticPose(style={self.style!r}, split={self.split!r}, "
            f"num_samples={self.num_samples}, image_size={self.image_size}, seed={self.seed}{pairs})")
