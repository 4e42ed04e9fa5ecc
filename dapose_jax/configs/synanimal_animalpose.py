"""SynAnimal (hound, sheep) -> AnimalPose (Animal14), UDAPE's second animal task.

`configs/synanimal_animalpose.py`: hound + sheep -> dog + sheep (UDAPE's `--animal all`), source-only ERM;
`:dog` (hound -> dog) or `:sheep` (sheep -> sheep): one animal; append a method (`,regda`) for RegDA
(e.g. `configs/synanimal_animalpose.py:sheep,regda`).
UDAPE's animal settings: rotation 60 (its script's `--rotation_stu/--rotation_tea 60`) and heatmap sigma 1.
Needs the built data sets (docs/datasets.md): synanimal_<source animals> and animal_pose_<target animals>.
"""

from dapose_jax.config import tasks

# variant animal -> (SynAnimal builder suffix, AnimalPose builder suffix)
ANIMALS = {"": ("hound_sheep", "dog_sheep"), "all": ("hound_sheep", "dog_sheep"), "dog": ("hound", "dog"),
           "sheep": ("sheep", "sheep")}


def get_config(variant=""):
  return tasks.animal_task_config("configs/synanimal_animalpose.py", ANIMALS, "synanimal", "animal_pose",
                                         variant)
