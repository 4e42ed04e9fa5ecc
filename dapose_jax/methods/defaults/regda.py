"""``config.regda``: tllib regda.py / regda.sh."""


def get():
  return dict(
      pretrained="",  # a stage-1 'best' checkpoint folder; empty: run stage 1 into WORKDIR/pretrain
      pretrain_epochs=70,
      pretrain=dict(loss="kl", optimizer="sgd", lr=0.1, backbone_lr_factor=0.1, momentum=0.9, nesterov=True,
                    weight_decay=1e-4, lr_milestones=(45, 60), lr_factor=0.1),
      lr=0.1, features_lr_factor=0.1, lr_gamma=1e-4, lr_decay=0.75, momentum=0.9, nesterov=True,
      weight_decay=1e-4, margin=4.0, trade_off=1.0, epsilon=1e-7, objective="regda",
      warm_start_iters=1000.0,  # N of the warm-start layer: lambda = 0.046 at N, 0.0987 at 5N iterations
      fast_pseudo_labels=False)
