"""``config.reconstruction``: generator pre-training on source pairs (``dapose-jax reconstruction``): the
Reconstructor (models/reconstruction.py, FOMM's widths) trained with Adam on L1 + perceptual_weight * the L1 between
frozen AdaIN-encoder features (config.style's network). keypoints: "truth" (the source's labels) or "predictor"
(soft-argmax of the frozen pose network in the checkpoint folder predictor, a run's best). net: the network file
(reconstruction.msgpack) it writes and the geometric method reads. driving: "pair" (the source's pairs: the
renderer's or a data set's pair index) or "view" (a second random view of each image, driving_view's ranges; also
the geometric method's driving image of a target without pairs). domains: the training images it learns from,
("source",) or ("source", "target") (the target with keypoints="predictor")."""


def get():
  return dict(net="", keypoints="truth", predictor="", driving="pair", domains=("source",),
              driving_view=dict(rotation=30.0, shear=0.0, translate=0.05, scale_min=0.9, scale_max=1.1, color=0.0),
              warping_features=64, warping_max_features=1024, warping_blocks=5, warping_scale=0.25,
              heatmap_variance=0.01, generator_features=64, generator_max_features=512, generator_residual_blocks=6,
              steps=20_000, lr=2e-4, batch_size=16, perceptual_weight=1.0, log_every=100, seed=0)
