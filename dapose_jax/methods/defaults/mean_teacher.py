"""``config.mean_teacher``: UDAPE's train_human.py, 40 source-only epochs (stylised source), then 30 mean-teacher
epochs. DAML and the geometric method extend it (``get(**overrides)``)."""


def get(**overrides):
  section = dict(
      pretrained="",  # a stage-1 'best' checkpoint folder; empty: run stage 1 into WORKDIR/pretrain
      pretrain_epochs=40,
      pretrain=dict(loss="mse", optimizer="adam", lr=1e-4, backbone_lr_factor=1.0, weight_decay=0.0,
                    lr_milestones=(45, 60), lr_factor=0.1, stylise_prob=0.5),
      pretrain_select_on="target",  # the reference keeps the best TARGET-test stage-1 checkpoint
      lr=1e-4, lr_factor=0.1,
      lr_milestones=(5, 20),  # the reference's [45, 60] over the whole run, counted from stage 1's 40 epochs
      disc_lr=1e-4,  # DAML's discriminator (its schedule never decays in the reference)
      ema=0.999, consistency_weight=1.0,
      feature_weight=0.0, pose_weight=0.0,  # DAML's lambda_b (BCE_s + BCE_t) and lambda_c (IM)
      im_threshold=-1.0,  # >= 0: the paper's confidence threshold on IM (the public code has none)
      source_style_prob=0.5, teacher_style_prob=0.5,  # s2t on the source, t2s on the teacher view
      base_crop_only=True,  # target pipeline = shared base crop; the views are drawn on the device
      view=dict(rotation=60.0, shear=30.0, translate=0.05, scale_min=0.6, scale_max=1.3, color=0.25),
      occlude_prob=0.5, occlude_threshold=0.9, occlude_size=10,  # occlude_size: half side in pixels
      interpolation=0,  # heatmap / image warps: 0 nearest (reference), 1 bilinear
  )
  section.update(overrides)
  return section
