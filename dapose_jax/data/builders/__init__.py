"""TFDS builders of the real data sets, by the name that data configs use.

Each builder class has ``SPLITS``: the stored TFDS split that the pipeline reads for 'train' and 'test'.
"""

from dapose_jax.data.builders import animal_pose
from dapose_jax.data.builders import freihand
from dapose_jax.data.builders import h3d
from dapose_jax.data.builders import human36m
from dapose_jax.data.builders import lsp
from dapose_jax.data.builders import rhd
from dapose_jax.data.builders import surreal
from dapose_jax.data.builders import synanimal
from dapose_jax.data.builders import tigdog

REGISTRY = {
    "lsp": lsp.Lsp,
    "lsp_extended": lsp.LspExtended,
    "rhd": rhd.Rhd,
    "h3d": h3d.H3d,
    "freihand": freihand.Freihand,
    "surreal": surreal.Surreal,
    "human36m": human36m.Human36m,
    # one entry per animal (and UDAPE's "all" pairs), e.g. "synanimal_horse", "tigdog_horse_tiger"
    **synanimal.BUILDERS,
    **tigdog.BUILDERS,
    **animal_pose.BUILDERS,
}
