"""Mean teacher (UDAPE ``OldWeightEMA``)."""

import jax


def ema_update(teacher_params, student_params, alpha=0.999):
  """alpha * teacher + (1 - alpha) * student, leaf by leaf over parameter pytrees.

  Parameters only: the teacher's BatchNorm statistics are its own (accumulated by its train-mode
  forward passes) and are not averaged from the student's.
  """
  return jax.tree_util.tree_map(lambda t, s: alpha * t + (1 - alpha) * s, teacher_params, student_params)
