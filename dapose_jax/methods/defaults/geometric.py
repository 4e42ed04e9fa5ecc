"""``config.geometric``: the mean teacher + integrated pseudo-labels (``config.lifting``) + the reconstruction loss
(``config.reconstruction``'s generator). ablation: "baseline", "pseudo", "reconstruction" or "both" (the paper's
Table A); generator: a trained network file, empty: pre-train one after stage 1."""

from dapose_jax.methods.defaults import mean_teacher


def get():
  return mean_teacher.get(ablation="both", pseudo3d_weight=1.0, reconstruction_weight=0.01, generator="")
