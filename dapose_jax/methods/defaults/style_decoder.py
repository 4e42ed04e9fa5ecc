"""``config.style``: UDAPE's AdaIN style network (adain/train/train_human.py), trained by ``dapose-jax style``: Adam
1e-5 constant, batch 4, 500k iterations and style weight 0.1 are UDAPE's. encoder: vgg_normalised .pth/.npz or ""
(random, frozen); decoder: a released decoder to import or "" (train one); net: the trained style network file
(style_net.msgpack) the methods load, empty: the run trains one (its style stage); depth < 4 stops the encoder at
relu{depth}_1 (a CPU-demo option; the reference uses relu4_1). Every method that stylises images reads it."""

SECTION = "style"


def get():
  return dict(net="", encoder="", decoder="", width=1.0, depth=4, steps=500_000, lr=1e-5, batch_size=4,
              style_weight=0.1, content_weight=1.0, log_every=100, seed=0)
