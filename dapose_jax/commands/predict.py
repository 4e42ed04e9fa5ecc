"""The ``predict`` command: the keypoints of images, from a trained checkpoint.

  python -m dapose_jax predict --config=runs/demo --checkpoint=runs/demo IMAGE_FOLDER_OR_VIDEO ... --out=DIR [--flip]
      [--decoding=dark] [--kpt_thr=0.3] [--overwrite]

(also ``dapose-jax predict ...``; ``--config`` and ``--checkpoint`` as for ``evaluate``, see ``run.finished``). A
folder stands for its .jpg, .jpeg and .png files (not its sub-folders), sorted by name (a folder of frames, one
output each); a video file (.mp4, .avi, .mov, .mkv, .webm, read by OpenCV) for each of its frames, whose outputs
are STEM_FRAME (the frame's index in six digits) with "frame" in the JSON. Each image (turned as its
EXIF orientation says, in 8-bit RGB by value range: 16-bit and float grey images scaled, ``predictor.rgb8``) is
resized to ``config.image_size`` keeping its aspect ratio and zero-padded to a
square (tllib's ResizePad), the images run in batches of ``config.eval_batch_size``, and each keypoint is decoded
by ``--decoding`` (``run.predictor``: ``dark`` by default, sub-pixel; ``quarter``, mmpose's default;
``argmax``, the integer peak times the stride, as the reference PCK decodes) and mapped back to the original image's
pixels (continuous coordinates: pixel (row i, column j) covers [j, j + 1) x [i, i + 1)).
``--flip`` averages with the mirrored image's heatmaps (``finished.flip_tested``).

Per image, DIR/STEM.json: {"image", "keypoints": [[x, y, confidence], ...] (confidence: the heatmap's maximum),
"names", "keypoint_set", "checkpoint", "step", "flip", "decoding"}, and DIR/STEM.png: the image with the skeleton drawn
(``predictor.draw``: keypoints of confidence <= ``--kpt_thr``, 0.3 by default, left out, the others named with
their confidence; the image enlarged to a shorter side of 512 px where smaller).

Exit status: 0 when every image was written; 1 when some input could not be (a file that is not a readable
image, a broken link or a file without read permission in a folder, a missing path, a folder without images, a
second input with the same STEM): each gets one ``warning:`` line on stderr naming it and the others still run; 2
when no input could be read, for a mistake in the flags, the config or the checkpoint, an --out that is a file or
cannot be written, or when DIR already holds an output of these images and ``--overwrite`` is not given (checked
before anything runs), with one ``error:`` line.
"""

import json
import os
import pathlib
import sys

from absl import app, flags

from dapose_jax import errors
from dapose_jax.commands import cli
from dapose_jax.config import defaults

# JAX, OpenCV and the predictor are imported in the functions that use them: --help must not load them
FLAGS = flags.FLAGS
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def define_flags():
  cli.define_model_flags()
  flags.DEFINE_string("out", None, "The folder to write STEM.json and STEM.png into (made if missing).")
  flags.DEFINE_bool("flip", False, "Average the heatmaps with those of the mirrored images (flip test).")
  flags.DEFINE_enum("decoding", "dark", defaults.DECODERS, "How heatmaps become keypoints: dark (DARK's sub-pixel "
                    "Newton step), quarter (mmpose's quarter-cell shift) or argmax (the integer peak, as the reference "
                    "PCK decodes).")
  flags.DEFINE_float("kpt_thr", 0.3, "Draw only the keypoints of confidence (heatmap maximum) above this (mmpose's "
                     "kpt_thr); the JSON keeps them all.")
  flags.DEFINE_bool("overwrite", False, "Replace the outputs of an earlier prediction in --out.")
  flags.mark_flag_as_required("out")


def warn(path, reason):
  print(f"warning: {path}: {reason}", file=sys.stderr)


def plan(inputs, out, overwrite=False):
  """(the image and video paths to predict, how many inputs failed, each with a warning): folders expanded to their
  images, one path per STEM. Raises a ``UserError`` when ``out`` holds an output of one of them and ``overwrite`` is
  not set."""
  paths, failed, owners = [], 0, {}
  for given in map(pathlib.Path, inputs):
    if given.is_dir():
      named = sorted(p for p in given.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
      found = [p for p in named if _readable(p)]
      failed += len(named) - len(found)
      if not named:
        warn(given, f"a folder without {'/'.join(IMAGE_SUFFIXES)} files")
        failed += 1
      candidates = found
    elif given.is_file():
      candidates = [given]
    else:
      warn(given, "no such file or folder")
      failed += 1
      candidates = []
    for path in candidates:
      if path.stem in owners:
        warn(path, f"has the name of {owners[path.stem]}, whose outputs are {out}/{path.stem}.json and .png; "
             "predict it into another --out")
        failed += 1
        continue
      owners[path.stem] = path
      paths.append(path)
  existing = [o for p in paths for o in existing_outputs(out, p)]
  if existing and not overwrite:
    more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
    raise errors.UserError(f"{out} already holds {', '.join(map(str, existing[:3]))}{more}; pass --overwrite to "
                           "replace them, or choose another --out")
  return paths, failed


def _readable(path):
  """Whether the image file ``path`` of a folder can be opened; a warning names it and says why if not."""
  if path.is_symlink() and not path.exists():
    reason = f"a broken link (to {os.readlink(path)})"
  elif not path.is_file():
    reason = "not a regular file"
  elif not os.access(path, os.R_OK):
    reason = "not readable by this user (permission denied)"
  else:
    return True
  warn(path, reason)
  return False


def is_video(path):
  return pathlib.Path(path).suffix.lower() in VIDEO_SUFFIXES


def outputs(out, stem):
  return pathlib.Path(out) / f"{stem}.json", pathlib.Path(out) / f"{stem}.png"


def existing_outputs(out, path):
  if is_video(path):
    return sorted(pathlib.Path(out).glob(f"{path.stem}_[0-9][0-9][0-9][0-9][0-9][0-9].*"))
  return [o for o in outputs(out, path.stem) if o.exists()]


def frames(path):
  """(frame index, RGB frame) of each frame of a video file that OpenCV reads."""
  import cv2

  capture = cv2.VideoCapture(str(path))
  try:
    index = 0
    while True:
      ok, frame = capture.read()
      if not ok:
        break
      yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      index += 1
  finally:
    capture.release()


def predict(model, mesh, paths, out, *, flip=False, decoder="dark", threshold=0.3):
  """Writes the outputs of every image of ``paths`` that can be read, and of every frame of its videos (STEM_FRAME,
  the frame's index in six digits), into ``out``; returns (how many it wrote, how many inputs could not be read),
  each of the latter with a warning."""
  from dapose_jax.run import predictor

  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  readable, unreadable = [], 0

  def images():
    nonlocal unreadable
    for path in paths:
      if is_video(path):
        count = 0
        for index, frame in frames(path):
          readable.append((path, index, f"{path.stem}_{index:06d}", frame))
          count += 1
          yield frame
        if not count:
          warn(path, "OpenCV reads no frame of this video")
          unreadable += 1
        continue
      try:
        image = predictor.read_image(path)
      except Exception as error:  # noqa: BLE001  whatever the file holds, the other images still run
        warn(path, f"cannot be read as an image ({errors.one_line(error)})")
        unreadable += 1
        continue
      readable.append((path, None, path.stem, image))
      yield image

  written = 0
  for xy, confidence, _ in predictor.predict_batches(model, mesh, images(), flip=flip, decoder=decoder):
    path, frame, stem, image = readable[written]
    readable[written] = None
    _write(out, path, frame, stem, image, xy, confidence, model, flip, decoder, threshold)
    written += 1
  return written, unreadable


def _write(out, path, frame, stem, image, xy, confidence, model, flip, decoder, threshold):
  from dapose_jax.plots import drawing
  from dapose_jax.run import predictor

  json_path, png_path = outputs(out, stem)
  record = {"image": str(path), "keypoints": [[float(x), float(y), float(c)] for (x, y), c in zip(xy, confidence)],
            "names": list(model.keypoint_set.names), "keypoint_set": model.keypoint_set.name,
            "checkpoint": str(model.checkpoint.path), "step": model.checkpoint.step, "flip": flip,
            "decoding": decoder, **({} if frame is None else {"frame": frame})}
  json_path.write_text(json.dumps(record) + "\n")
  drawing.save_png(png_path, predictor.draw(image, xy, confidence, model.keypoint_set, threshold))


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("give at least one image, folder of images or video")
  from dapose_jax import parallel
  from dapose_jax.run import finished
  from dapose_jax.storage import workdirs

  cli.log_progress_to_stderr()
  cli.enable_compilation_cache()
  workdirs.check_writable(FLAGS.out, folder=True, name="--out")
  paths, failed = plan(argv[1:], FLAGS.out, FLAGS.overwrite)
  written = 0
  if paths:
    mesh = parallel.make_mesh()
    written, unreadable = predict(finished.load(FLAGS.config, FLAGS.checkpoint, mesh), mesh, paths, FLAGS.out,
                                  flip=FLAGS.flip, decoder=FLAGS.decoding, threshold=FLAGS.kpt_thr)
    failed += unreadable
  if not written and failed:
    raise errors.UserError(f"no input could be read ({failed} named above): give readable images, folders of them "
                           "or videos")
  print(f"wrote the keypoints of {written} image(s) or frame(s) to {FLAGS.out}")
  if failed:
    print(f"{failed} input(s) failed (named above)", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  cli.run_command(sys.modules[__name__])
