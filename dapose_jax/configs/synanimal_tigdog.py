"""SynAnimal -> TigDog (Animal18), UDAPE's animal task, with the task configs' shared hyper-parameters.

`configs/synanimal_tigdog.py`: horse + tiger (UDAPE's `--animal all`), source-only ERM;
`configs/synanimal_tigdog.py:horse` or `:tiger`: one animal; append a method (`,regda`) for RegDA
(e.g. `configs/synanimal_tigdog.py:horse,regda`; `:regda` alone is horse + tiger).
UDAPE's animal settings: rotation 60 (its script's `--rotation_stu/--rotation_tea 60`) and heatmap sigma 1.
Needs the built data sets (docs/datasets.md): synanimal_<animals> and tigdog_<animals>.
"""

from dapose_jax.config import tasks

# variant animal -> (SynAnimal builder suffix, TigDog builder suffix)
ANIMALS = {"": ("horse_tiger", "horse_tiger"), "all": ("horse_tiger", "horse_tiger"), "horse": ("horse", "horse"),
           "tiger": ("tiger", "tiger")}


def get_config(variant=""):
  return tasks.animal_task_config("configs/synanimal_tigdog.py", ANIMALS, "synanimal", "tigdog", variant)
