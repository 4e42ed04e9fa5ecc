"""PyTorch eager counterparts of the dapose_jax train steps, for experiments/benchmark.py.

The same network (tllib's PoseResNet: torchvision-layout ResNet v1.5, three ConvTranspose2d(4, 2, 1) + BN + ReLU
layers, the simple 1x1 head or RegDA's two-layer heads), the same losses and the same forward / backward passes
and optimisers per iteration as the JAX steps, on the same synthetic batches, written as the reference (tllib,
UDAPE, DAML) writes its loops. They exist to time the JAX steps against, not to train: there are no learning-rate
schedules, and the random views of the mean teacher follow ``dapose_jax.augment.views`` in cost, not draw for draw.

Heatmap targets, pseudo labels and the mean teacher's views are made on the device, as the JAX steps make them
(the reference renders source targets in its data loader). Where JAX differentiates with respect to one part of
the parameters (RegDA's steps B and C), ``backward(inputs=...)`` keeps PyTorch's backward pass to that part too.
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, in_features, features, stride, downsample):
    super().__init__()
    self.conv1 = nn.Conv2d(in_features, features, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(features)
    self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(features)
    self.downsample = _downsample(in_features, features, stride) if downsample else None

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, in_features, features, stride, downsample):
    super().__init__()
    out_features = features * self.expansion
    self.conv1 = nn.Conv2d(in_features, features, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(features)
    self.conv2 = nn.Conv2d(features, features, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(features)
    self.conv3 = nn.Conv2d(features, out_features, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(out_features)
    self.downsample = _downsample(in_features, out_features, stride) if downsample else None

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(y)))))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def _downsample(in_features, out_features, stride):
  return nn.Sequential(nn.Conv2d(in_features, out_features, 1, stride, bias=False), nn.BatchNorm2d(out_features))


RESNETS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
           "resnet50": (Bottleneck, (3, 4, 6, 3)), "resnet101": (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
  """torchvision's ResNet without avgpool and fc: output stride 32."""

  def __init__(self, arch):
    super().__init__()
    block, stage_sizes = RESNETS[arch]
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    layers, in_features = [], 64
    for s, num_blocks in enumerate(stage_sizes):
      features = 64 * 2**s
      for i in range(num_blocks):
        stride = 2 if s > 0 and i == 0 else 1
        downsample = i == 0 and (stride != 1 or in_features != features * block.expansion)
        layers.append(block(in_features, features, stride, downsample))
        in_features = features * block.expansion
    self.layers = nn.Sequential(*layers)
    self.out_features = in_features

  def forward(self, x):
    return self.layers(F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1))


def _upsampling(in_features, features, num_layers=3):
  layers = []
  for i in range(num_layers):
    layers += [nn.ConvTranspose2d(in_features if i == 0 else features, features, 4, 2, 1, bias=False),
               nn.BatchNorm2d(features), nn.ReLU()]
  return nn.Sequential(*layers)


def _regda_head(features, num_keypoints):
  return nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.BatchNorm2d(features), nn.ReLU(),
                       nn.Conv2d(features, num_keypoints, 1))


class _ScaleGradient(torch.autograd.Function):
  """Identity forward, gradient times ``scale`` (tllib's WarmStartGradientLayer; -1: gradient reversal)."""

  @staticmethod
  def forward(ctx, x, scale):
    ctx.scale = scale
    return x.view_as(x)

  @staticmethod
  def backward(ctx, grad):
    return grad * ctx.scale, None


class PoseNet(nn.Module):
  """Backbone -> upsampling -> head (and RegDA's adversarial head behind the warm-start gradient layer)."""

  def __init__(self, backbone, num_keypoints, features=256, head="simple"):
    super().__init__()
    self.backbone = ResNet(backbone)
    self.upsampling = _upsampling(self.backbone.out_features, features)
    if head == "simple":
      self.head = nn.Conv2d(features, num_keypoints, 1)
      self.head_adv = None
    else:
      self.head = _regda_head(features, num_keypoints)
      self.head_adv = _regda_head(features, num_keypoints)

  def forward(self, x, adv_grad_scale=None):
    features = self.upsampling(self.backbone(x))
    out = {"heatmaps": self.head(features), "features": features}
    if self.head_adv is not None and adv_grad_scale is not None:
      out["heatmaps_adv"] = self.head_adv(_ScaleGradient.apply(features, adv_grad_scale))
    return out


class FeatureDiscriminator(nn.Module):
  """DAML's per-pixel domain classifier of the upsampling features."""

  def __init__(self, features):
    super().__init__()
    widths = (features, features // 2, features // 2, 1)
    self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, padding=1) for c_in, c_out in zip((features,) + widths,
                                                                                           widths))

  def forward(self, x):
    for i, conv in enumerate(self.convs):
      x = conv(x)
      if i < len(self.convs) - 1:
        x = F.leaky_relu(x, 0.2)
    return x


def num_parameters(*modules):
  return sum(p.numel() for m in modules for p in m.parameters())


# Heatmaps are (B, K, H, W) here; the formulas are those of dapose_jax.pose.keypoints and dapose_jax.pose.losses.

def _window_gaussians(centers, draw, height, width, sigma):
  tmp = 3.0 * sigma
  size, offset = math.ceil(2 * tmp + 1), math.floor((2 * tmp + 1) / 2)
  upper_left, bottom_right = torch.trunc(centers - tmp), torch.trunc(centers + tmp + 1)

  def profile(length, c):
    pos = torch.arange(length, device=centers.device, dtype=torch.float32)
    rel = pos - upper_left[..., c, None]
    inside = (pos >= upper_left[..., c, None]) & (pos < bottom_right[..., c, None]) & (rel < size)
    return torch.where(inside, torch.exp(-((rel - offset) ** 2) / (2 * sigma**2)), 0.0)

  return profile(height, 1)[..., :, None] * profile(width, 0)[..., None, :] * draw[..., None, None]


def gaussian_targets(keypoints, visible, image_size, heatmap_size, sigma):
  centers = torch.trunc(keypoints / (image_size / heatmap_size) + 0.5)
  in_grid = ((centers >= 0) & (centers < heatmap_size)).all(-1)
  weights = torch.where(in_grid, visible, 0.0)
  return _window_gaussians(centers, in_grid & (visible > 0.5), heatmap_size, heatmap_size, sigma), weights


def argmax_2d(heatmaps):
  width = heatmaps.shape[-1]
  maxvals, index = heatmaps.flatten(2).max(-1)
  xy = torch.stack([index % width, index // width], -1).float()
  return xy * (maxvals > 0)[..., None], maxvals


def pseudo_labels(heatmaps, sigma):
  """RegDA's (ground truth, ground false) of detached predictions."""
  centers, _ = argmax_2d(heatmaps.detach())
  ground_truth = _window_gaussians(centers, torch.ones(centers.shape[:-1], device=centers.device),
                                   *heatmaps.shape[-2:], sigma)
  return ground_truth, torch.clamp(ground_truth.sum(1, keepdim=True) - ground_truth, 0.0, 1.0)


def heatmap_mse(pred, target, weight):
  return torch.mean(0.5 * (pred - target) ** 2 * weight[..., None, None])


def heatmap_kl(pred_logits, target, weight, epsilon=0.0):
  log_p = F.log_softmax(pred_logits.flatten(2), -1)
  t = target.flatten(2) + epsilon
  total = t.sum(-1, keepdim=True)
  t = torch.where(total > 0, t / torch.where(total > 0, total, 1.0), 0.0)
  return torch.mean((torch.xlogy(t, t) - t * log_p).sum(-1) * weight)


def _entropy(logits, dim):
  return -(F.softmax(logits, dim) * F.log_softmax(logits, dim)).sum(dim)


def information_maximization(heatmaps):
  height, width = heatmaps.shape[-2:]
  ent_hw = (_entropy(heatmaps.mean(-1), -1) + _entropy(heatmaps.mean(-2), -1)).mean()
  ent_m = _entropy(heatmaps.mean(0).flatten(1), -1).mean()
  return (ent_hw - ent_m) / (height * width)


def median_confidence_mask(heatmaps):
  conf = heatmaps.amax((-2, -1))
  k = int(0.5 * conf.numel())
  threshold = conf.flatten().kthvalue(k).values if k > 0 else -math.inf
  return (conf > threshold).float()


# The mean teacher's on-device views (dapose_jax.augment.views): one affine matrix per sample, nearest sampling.

def sample_matrices(batch, size, view, device):
  u = lambda lo, hi, *shape: torch.empty(batch, *shape, device=device).uniform_(lo, hi)
  theta, shear_x = torch.deg2rad(u(-view.rotation, view.rotation)), torch.deg2rad(u(-view.shear, view.shear))
  max_shift = view.translate * size
  shift, scale = torch.round(u(-max_shift, max_shift, 2)), u(view.scale_min, view.scale_max)
  cos, sin, tan = torch.cos(theta), torch.sin(theta), torch.tan(shear_x)
  m = torch.stack([torch.stack([cos, -cos * tan - sin], -1), torch.stack([sin, -sin * tan + cos], -1)], -2)
  m = m * scale[:, None, None]
  centre = torch.full((2,), size / 2.0, device=device)
  offset = centre - m @ centre + shift
  bottom = torch.tensor([0.0, 0.0, 1.0], device=device).expand(batch, 1, 3)
  return torch.cat([torch.cat([m, offset[..., None]], -1), bottom], -2)


def rescale(matrices, factor):
  matrices = matrices.clone()
  matrices[:, :2, 2] *= factor
  return matrices


def _sample(images, matrices):
  """out[q] = images[A q] in pixel coordinates, zero outside."""
  height, width = images.shape[-2:]
  ys, xs = torch.meshgrid(torch.arange(height, device=images.device, dtype=torch.float32),
                          torch.arange(width, device=images.device, dtype=torch.float32), indexing="ij")
  grid = torch.stack([xs, ys], -1).reshape(1, -1, 2)
  src = grid @ matrices[:, :2, :2].transpose(1, 2) + matrices[:, None, :2, 2]
  src = src / torch.tensor([width - 1, height - 1], device=images.device) * 2 - 1
  return F.grid_sample(images, src.reshape(-1, height, width, 2), mode="nearest", padding_mode="zeros",
                       align_corners=True)


def to_view(images, matrices):
  return _sample(images, torch.linalg.inv(matrices))


def to_base(maps, matrices):
  return _sample(maps, matrices)


def color_jitter(images, strength):
  factors = torch.empty(3, images.shape[0], 1, 1, 1, device=images.device).uniform_(1 - strength, 1 + strength)
  gray = lambda x: (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[:, None, None]).sum(1, keepdim=True)
  x = torch.clamp(images * factors[0], 0, 255)
  mean = gray(x).mean((1, 2, 3), keepdim=True)
  x = torch.clamp((x - mean) * factors[1] + mean, 0, 255)
  g = gray(x)
  return torch.clamp((x - g) * factors[2] + g, 0, 255)


def occlude(images, centres, apply, half_size):
  batch, _, height, width = images.shape
  lo = torch.tensor([half_size, half_size], dtype=torch.float32, device=images.device)
  hi = torch.tensor([width - half_size, height - half_size], dtype=torch.float32, device=images.device)
  sources = torch.floor(lo + (hi - lo) * torch.rand(batch, 2, device=images.device))
  centres = torch.round(centres)
  ys, xs = torch.meshgrid(torch.arange(height, device=images.device), torch.arange(width, device=images.device),
                          indexing="ij")
  dx, dy = xs - centres[:, 0, None, None], ys - centres[:, 1, None, None]
  inside = (torch.abs(dx + 0.5) < half_size) & (torch.abs(dy + 0.5) < half_size) & apply[:, None, None]
  sx = torch.clamp(sources[:, 0, None, None] + dx, 0, width - 1).long()
  sy = torch.clamp(sources[:, 1, None, None] + dy, 0, height - 1).long()
  patch = images[torch.arange(batch, device=images.device)[:, None, None], :, sy, sx].permute(0, 3, 1, 2)
  return torch.where(inside[:, None], patch, images)


class Runner:
  """One method's model(s) and optimisers; ``train_step(source, target)`` is one iteration of the reference's
  loop on batches of dict(image uint8 (B, 3, H, W), keypoints (B, K, 2), visible (B, K)) on the device."""

  def __init__(self, config, device, channels_last, bf16, head="simple"):
    from dapose_jax.pose import skeletons

    self.config, self.device, self.bf16 = config, device, bf16
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.model = self._to_device(PoseNet(config.model.backbone, skeletons.get(config.source.keypoint_set).num_keypoints,
                                         config.model.upsampling_features, head))
    self.mean = torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]
    self.std = torch.tensor(IMAGENET_STD, device=device)[:, None, None]
    self.step = 0

  def _to_device(self, module):
    return module.to(self.device, memory_format=self.memory_format).train()

  def modules(self):
    return (self.model,)

  def normalize(self, images):
    return ((images.float() / 255.0 - self.mean) / self.std).contiguous(memory_format=self.memory_format)

  def forward(self, model, images, **kwargs):
    """A forward pass in the compute dtype; the heatmaps (losses) in float32, as the JAX model returns them."""
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
      out = model(images, **kwargs)
    return {k: v.float() if k.startswith("heatmaps") else v for k, v in out.items()}

  def targets(self, batch):
    c = self.config
    return gaussian_targets(batch["keypoints"], batch["visible"], c.image_size, c.heatmap_size, c.sigma)

  def eval_heatmaps(self, images):
    model = self.eval_model()
    model.eval()
    with torch.inference_mode():
      heatmaps = self.forward(model, self.normalize(images))["heatmaps"]
    model.train()
    return heatmaps

  def eval_model(self):
    return self.model


class SourceOnly(Runner):
  """tllib erm.py: one forward / backward on the source batch, Adam (or SGD) over backbone and the rest."""

  def __init__(self, config, device, channels_last, bf16):
    super().__init__(config, device, channels_last, bf16)
    c = config.source_only
    backbone = list(self.model.backbone.parameters())
    rest = [p for n, p in self.model.named_parameters() if not n.startswith("backbone.")]
    groups = [{"params": backbone, "lr": c.lr * c.backbone_lr_factor}, {"params": rest, "lr": c.lr}]
    if c.optimizer == "adam":
      self.optimizer = torch.optim.Adam(groups, c.lr)
    else:
      self.optimizer = torch.optim.SGD(groups, c.lr, momentum=c.momentum, nesterov=c.nesterov,
                                       weight_decay=c.weight_decay)
    self.loss = heatmap_mse if c.loss == "mse" else heatmap_kl

  def train_step(self, source, target):
    labels, weights = self.targets(source)
    self.optimizer.zero_grad(set_to_none=True)
    loss = self.loss(self.forward(self.model, self.normalize(source["image"]))["heatmaps"], labels, weights)
    loss.backward()
    self.optimizer.step()
    return loss.detach()


class RegDA(Runner):
  """tllib regda.py: updates A (all parameters, source), B (adversarial head, target) and C (backbone and
  upsampling, fresh target forward), with three SGD optimisers."""

  def __init__(self, config, device, channels_last, bf16):
    super().__init__(config, device, channels_last, bf16, head="regda")
    c = config.regda
    sgd = lambda params, lr: torch.optim.SGD(params, lr, momentum=c.momentum, nesterov=c.nesterov,
                                             weight_decay=c.weight_decay)
    m = self.model
    self.features = [*m.backbone.parameters(), *m.upsampling.parameters()]
    self.head_adv = list(m.head_adv.parameters())
    self.opt_f = sgd(self.features, c.lr * c.features_lr_factor)
    self.opt_h = sgd(m.head.parameters(), c.lr)
    self.opt_h_adv = sgd(self.head_adv, c.lr)

  def train_step(self, source, target):
    c, sigma = self.config.regda, self.config.sigma
    span = 0.1  # tllib's WarmStartGradientLayer(alpha=1, lo=0, hi=0.1)
    lam = 2.0 * span / (1.0 + math.exp(-self.step / c.warm_start_iters)) - span
    label_s, w_s = self.targets(source)
    _, w_t = self.targets(target)
    x_s, x_t = self.normalize(source["image"]), self.normalize(target["image"])
    for optimizer in (self.opt_f, self.opt_h, self.opt_h_adv):
      optimizer.zero_grad(set_to_none=True)
    out = self.forward(self.model, x_s, adv_grad_scale=lam)
    ground_truth, _ = pseudo_labels(out["heatmaps"], sigma)
    loss_s = (heatmap_kl(out["heatmaps"], label_s, w_s)
              + c.margin * c.trade_off * heatmap_kl(out["heatmaps_adv"], ground_truth, w_s, c.epsilon))
    loss_s.backward()
    for optimizer in (self.opt_f, self.opt_h, self.opt_h_adv):
      optimizer.step()

    self.opt_h_adv.zero_grad(set_to_none=True)
    out = self.forward(self.model, x_t, adv_grad_scale=lam)
    _, ground_false = pseudo_labels(out["heatmaps"], sigma)
    (c.trade_off * heatmap_kl(out["heatmaps_adv"], ground_false, w_t, c.epsilon)).backward(inputs=self.head_adv)
    self.opt_h_adv.step()

    self.opt_f.zero_grad(set_to_none=True)
    out = self.forward(self.model, x_t, adv_grad_scale=lam)
    ground_truth, _ = pseudo_labels(out["heatmaps"], sigma)
    (c.trade_off * heatmap_kl(out["heatmaps_adv"], ground_truth, w_t, c.epsilon)).backward(inputs=self.features)
    self.opt_f.step()
    self.step += 1
    return loss_s.detach()


class MeanTeacher(Runner):
  """UDAPE's step (without style transfer): the teacher's train-mode forward on its view, warped back;
  occlusion; the student's forwards on the source batch and its own view; source MSE + consistency (DAML: +
  feature discriminator BCE behind gradient reversal + IM); one Adam step; the EMA of the teacher."""

  def __init__(self, config, device, channels_last, bf16):
    super().__init__(config, device, channels_last, bf16)
    self.c = config[config.method]
    self.teacher = copy.deepcopy(self.model).requires_grad_(False)
    self.optimizer = torch.optim.Adam(self.model.parameters(), self.c.lr)
    self.disc = None
    if self.c.feature_weight > 0:
      self.disc = self._to_device(FeatureDiscriminator(config.model.upsampling_features))
      self.opt_disc = torch.optim.Adam(self.disc.parameters(), self.c.disc_lr)

  def modules(self):
    return (self.model,) if self.disc is None else (self.model, self.disc)

  def eval_model(self):
    return self.teacher

  def train_step(self, source, target):
    c, config = self.c, self.config
    size, stride = config.image_size, config.image_size / config.heatmap_size
    labels, weights = self.targets(source)
    base = target["image"].float()
    batch = base.shape[0]
    teacher_m, student_m = (sample_matrices(batch, size, c.view, self.device) for _ in range(2))
    with torch.no_grad():
      teacher_view = self.normalize(color_jitter(to_view(base, teacher_m), c.view.color))
      teacher_maps = to_base(self.forward(self.teacher, teacher_view)["heatmaps"], rescale(teacher_m, 1 / stride))
      peaks, confidence = argmax_2d(teacher_maps)
      confident = confidence >= c.occlude_threshold
      apply = (torch.rand(batch, device=self.device) < c.occlude_prob) & confident.any(-1)
      gumbel = -torch.log(-torch.log(torch.rand(confident.shape, device=self.device)))
      pick = (torch.where(confident, 0.0, -math.inf) + gumbel).argmax(-1)
      chosen = peaks[torch.arange(batch, device=self.device), pick] * stride
      student_view = self.normalize(color_jitter(to_view(occlude(base, chosen, apply, c.occlude_size), student_m),
                                                 c.view.color))
      rectified, _ = pseudo_labels(teacher_maps, config.sigma)
      mask = median_confidence_mask(teacher_maps)

    self.optimizer.zero_grad(set_to_none=True)
    source_out = self.forward(self.model, self.normalize(source["image"]))
    target_out = self.forward(self.model, student_view)
    student_maps = to_base(target_out["heatmaps"], rescale(student_m, 1 / stride))
    consistency = torch.mean((mask[..., None, None] * (student_maps - rectified)) ** 2)
    loss = heatmap_mse(source_out["heatmaps"], labels, weights) + c.consistency_weight * consistency
    if self.disc is not None:
      self.opt_disc.zero_grad(set_to_none=True)
      logits = lambda f: self.disc(_ScaleGradient.apply(f, -1.0)).float()
      bce = lambda x, label: F.binary_cross_entropy_with_logits(x, torch.full_like(x, label))
      loss = loss + c.feature_weight * (bce(logits(source_out["features"]), 0.0)
                                        + bce(logits(target_out["features"]), 1.0))
    if c.pose_weight > 0:
      loss = loss + c.pose_weight * information_maximization(student_maps)
    loss.backward()
    self.optimizer.step()
    if self.disc is not None:
      self.opt_disc.step()
    with torch.no_grad():
      teacher, student = list(self.teacher.parameters()), list(self.model.parameters())
      torch._foreach_mul_(teacher, c.ema)
      torch._foreach_add_(teacher, student, alpha=1 - c.ema)
    return loss.detach()


RUNNERS = {"source_only": SourceOnly, "regda": RegDA, "mean_teacher": MeanTeacher, "daml": MeanTeacher}


def make_runner(config, device, channels_last=True, bf16=False):
  """The runner of ``config.method`` (``config`` as the JAX step reads it)."""
  return RUNNERS[config.method](config, device, channels_last, bf16)
