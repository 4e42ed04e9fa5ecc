"""Keypoint sets: names, evaluation groups, horizontal-flip pairs and skeleton edges, in one place.

Index orders and groups follow the reference datasets (tllib ``Body16KeypointDataset`` and
``Hand21KeypointDataset``); see ``reference/datasets.md`` section 1.2.
"""

import dataclasses


# eq=False keeps the sets hashable (by identity) although ``groups`` is a dict, so that they can be
# passed as static arguments.
@dataclasses.dataclass(frozen=True, eq=False)
class KeypointSet:
  """A named keypoint layout.

  groups: ordered evaluation groups (name -> keypoint indices), ``'all'`` last; PCK tables report
    one column per group.
  flip_pairs: index pairs that swap under a horizontal flip.
  edges: skeleton edges for drawing.
  angles: the joint angles that ``metrics.evalpose`` compares, name -> (a, j, b): the unsigned angle at
    keypoint j between the segments j -> a and j -> b.
  """

  name: str
  names: tuple[str, ...]
  groups: dict[str, tuple[int, ...]]
  flip_pairs: tuple[tuple[int, int], ...]
  edges: tuple[tuple[int, int], ...]
  angles: dict[str, tuple[int, int, int]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    k = len(self.names)
    indices = [i for g in self.groups.values() for i in g]
    indices += [i for pair in self.flip_pairs + self.edges for i in pair]
    indices += [i for triplet in self.angles.values() for i in triplet]
    if any(not 0 <= i < k for i in indices):
      raise ValueError(f"{self.name}: an index is outside 0..{k - 1}")
    if "all" not in self.groups:
      raise ValueError(f"{self.name}: groups need an 'all' entry")

  @property
  def num_keypoints(self) -> int:
    return len(self.names)

  def flip_permutation(self) -> tuple[int, ...]:
    """Index map p with flipped[i] = original[p[i]]."""
    perm = list(range(self.num_keypoints))
    for a, b in self.flip_pairs:
      perm[a], perm[b] = b, a
    return tuple(perm)


BODY16 = KeypointSet(
    name="body16",
    names=("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
           "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
           "l_wrist"),
    groups={
        "head": (9,),
        "shoulder": (12, 13),
        "elbow": (11, 14),
        "wrist": (10, 15),
        "hip": (2, 3),
        "knee": (1, 4),
        "ankle": (0, 5),
        # The reference average leaves out head, neck, pelvis and thorax.
        "all": (12, 13, 11, 14, 10, 15, 2, 3, 1, 4, 0, 5),
    },
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    edges=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
           (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15)),
    # Shoulders, hips and neck are measured against the shoulder and hip lines, not the thorax and pelvis,
    # which LSP does not annotate (builders/lsp.py): the neck is the head's tilt against each shoulder.
    angles={"r_elbow": (12, 11, 10), "l_elbow": (13, 14, 15), "r_shoulder": (13, 12, 11),
            "l_shoulder": (12, 13, 14), "r_hip": (3, 2, 1), "l_hip": (2, 3, 4), "r_knee": (2, 1, 0),
            "l_knee": (3, 4, 5), "r_neck": (9, 8, 12), "l_neck": (9, 8, 13)},
)

_FINGERS = ("thumb", "index", "middle", "ring", "little")
_FINGER_JOINTS = ("mcp", "pip", "dip", "tip")

HAND21 = KeypointSet(
    name="hand21",
    names=("wrist",) + tuple(f"{f}_{j}" for f in _FINGERS for j in _FINGER_JOINTS),
    groups={
        "MCP": (1, 5, 9, 13, 17),
        "PIP": (2, 6, 10, 14, 18),
        "DIP": (3, 7, 11, 15, 19),
        "fingertip": (4, 8, 12, 16, 20),
        "all": tuple(range(21)),
    },
    flip_pairs=(),  # a single hand has no left/right pairs
    edges=tuple(e for base in range(1, 21, 4)
                for e in ((0, base), (base, base + 1), (base + 1, base + 2), (base + 2, base + 3))),
    # every finger's MCP (wrist - MCP - PIP), PIP and DIP
    angles={f"{finger}_{joint}": (base + j - 1 if j else 0, base + j, base + j + 1)
            for finger, base in zip(_FINGERS, range(1, 21, 4)) for j, joint in enumerate(_FINGER_JOINTS[:3])},
)

# UDAPE ``Animal18KeypointDataset`` (TigDog, SynAnimal horse/tiger; datasets.md 1.2). Names and their
# order as the authors of the SynAnimal/TigDog setup list them (JitengMu/Learning-from-Synthetic-Animals
# README: left eye, right eye, chin, then each pair left first, hip at 7). UDAPE's drawing labels call the
# first leg of each pair "right"; flipping and evaluation are unaffected.
ANIMAL18 = KeypointSet(
    name="animal18",
    names=("l_eye", "r_eye", "chin", "l_front_hoof", "r_front_hoof", "l_back_hoof", "r_back_hoof", "hip",
           "l_front_knee", "r_front_knee", "l_back_knee", "r_back_knee", "l_shoulder", "r_shoulder",
           "l_front_elbow", "r_front_elbow", "l_back_elbow", "r_back_elbow"),
    groups={
        "eye": (0, 1),
        "chin": (2,),
        "hoof": (3, 4, 5, 6),
        "hip": (7,),
        "knee": (8, 9, 10, 11),
        "shoulder": (12, 13),
        "elbow": (14, 15, 16, 17),
        "all": tuple(range(18)),
    },
    flip_pairs=((0, 1), (3, 4), (5, 6), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17)),
    edges=((3, 8), (8, 14), (4, 9), (9, 15), (5, 10), (10, 16), (6, 11), (11, 17),
           (13, 7), (12, 7), (1, 2), (0, 2)),
    # knees (hoof - knee - elbow); front elbows against the shoulder, back elbows against the hip
    angles={"l_front_knee": (3, 8, 14), "r_front_knee": (4, 9, 15), "l_back_knee": (5, 10, 16),
            "r_back_knee": (6, 11, 17), "l_front_elbow": (8, 14, 12), "r_front_elbow": (9, 15, 13),
            "l_back_elbow": (10, 16, 7), "r_back_elbow": (11, 17, 7)},
)

# UDAPE ``Animal14KeypointDataset`` (AnimalPose, SynAnimal hound/sheep): AnimalPose's eyes, paws, knees and
# elbows, each pair left first as in the AnimalPose file (UDAPE's drawing labels call the first leg
# "right" here too).
ANIMAL14 = KeypointSet(
    name="animal14",
    names=("l_eye", "r_eye", "l_front_hoof", "r_front_hoof", "l_back_hoof", "r_back_hoof",
           "l_front_knee", "r_front_knee", "l_back_knee", "r_back_knee",
           "l_front_elbow", "r_front_elbow", "l_back_elbow", "r_back_elbow"),
    groups={
        "eye": (0, 1),
        "hoof": (2, 3, 4, 5),
        "knee": (6, 7, 8, 9),
        "elbow": (10, 11, 12, 13),
        "all": tuple(range(14)),
    },
    flip_pairs=tuple((i, i + 1) for i in range(0, 14, 2)),
    edges=((2, 6), (6, 10), (3, 7), (7, 11), (4, 8), (8, 12), (5, 9), (9, 13), (0, 1)),
    # knees only (hoof - knee - elbow): AnimalPose has no shoulder or hip keypoint to close an elbow's angle
    angles={"l_front_knee": (2, 6, 10), "r_front_knee": (3, 7, 11), "l_back_knee": (4, 8, 12),
            "r_back_knee": (5, 9, 13)},
)

KEYPOINT_SETS: dict[str, KeypointSet] = {s.name: s for s in (BODY16, HAND21, ANIMAL18, ANIMAL14)}


def get(name: str) -> KeypointSet:
  """The keypoint set called ``name`` (case-insensitive)."""
  try:
    return KEYPOINT_SETS[name.lower()]
  except KeyError:
    raise KeyError(f"unknown keypoint set {name!r}; known: {sorted(KEYPOINT_SETS)}") from None
