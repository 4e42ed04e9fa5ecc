"""``config.source_only``: tllib erm.py, Adam 1e-3 on every parameter, MSE, MultiStepLR at epochs [45, 60]."""


def get():
  return dict(loss="mse", optimizer="adam", lr=1e-3, backbone_lr_factor=1.0, momentum=0.9, nesterov=True,
              weight_decay=0.0, lr_milestones=(45, 60), lr_factor=0.1,
              stylise_prob=0.0)  # > 0: source batches in target style (AdaIN, config.style)
