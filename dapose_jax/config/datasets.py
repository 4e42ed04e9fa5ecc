"""The keypoint set each data set stores, by the name a data config gives it: the one place that says so (the TFDS
builders declare theirs from here), importable by config files without the data code."""

# a data config's name -> the keypoint set (``pose.skeletons`` name) of its samples
KEYPOINT_SETS = {"synthetic": "body16", "lsp": "body16", "lsp_extended": "body16", "surreal": "body16",
                 "human36m": "body16", "rhd": "hand21", "h3d": "hand21", "freihand": "hand21"}
# the animal data sets, FAMILY_ANIMAL[_ANIMAL] (e.g. synanimal_horse, tigdog_horse_tiger): one keypoint set per
# family, SynAnimal's per animal (the first animal's for a pair of animals)
ANIMAL_KEYPOINT_SETS = {
    "tigdog": "animal18", "animal_pose": "animal14",
    "synanimal": {"horse": "animal18", "tiger": "animal18", "hound": "animal14", "sheep": "animal14"}}
# the data sets that ``dapose-jax build`` builds (``data.builders.REGISTRY``'s keys), here for build's --help, which
# must not import TFDS
BUILDABLE = ("animal_pose_cat", "animal_pose_cow", "animal_pose_dog", "animal_pose_dog_sheep", "animal_pose_horse",
             "animal_pose_sheep", "freihand", "h3d", "human36m", "lsp", "lsp_extended", "rhd", "surreal",
             "synanimal_horse", "synanimal_horse_tiger", "synanimal_hound", "synanimal_hound_sheep", "synanimal_sheep",
             "synanimal_tiger", "tigdog_horse", "tigdog_horse_tiger", "tigdog_tiger")


def keypoint_set(name):
  """The keypoint set name of data set ``name``, None for a name of no known form."""
  if name in KEYPOINT_SETS:
    return KEYPOINT_SETS[name]
  for family, sets in ANIMAL_KEYPOINT_SETS.items():
    if name.startswith(f"{family}_"):
      return sets.get(name[len(family) + 1:].split("_")[0]) if isinstance(sets, dict) else sets
  return None


def known_names():
  """The data set names and name forms a config may use, for error messages."""
  return [*KEYPOINT_SETS, *(f"{family}_ANIMAL" for family in ANIMAL_KEYPOINT_SETS)]
