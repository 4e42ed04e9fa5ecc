"""DAML ("Domain Adaptive Pose Estimation via Multi-level Alignment"): the UDAPE mean teacher plus a feature
discriminator behind a gradient reversal (BCE, source 0 / target 1) and the information-maximisation loss
on the H/W projections of the student's target heatmaps, without style transfer of the teacher's views.

The step is the mean teacher's (``mean_teacher.py``) with ``config.daml``'s weights 1 / 0.1 / 0.3; the
ablation of the paper's Table 6 sets ``feature_weight`` or ``pose_weight`` to 0.
"""

import dataclasses

from dapose_jax.methods import mean_teacher

METHOD = dataclasses.replace(mean_teacher.METHOD, name="daml")
