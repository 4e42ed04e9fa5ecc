"""Nested dicts as one flat map, the one flattener of the package: a checkpoint's tensors under dotted keys
(``model.backbone.conv1.weight``, ``torch_reader``) and logged metrics under TensorBoard tags (``eval/pck/0.05``,
``storage.metric_writers``)."""


def flatten(tree, keep, separator=".", prefix=""):
  """{keys of the path joined by ``separator``, after ``prefix``: keep(leaf)} of the leaves of nested dicts (a leaf
  is any value that is not a dict); a leaf for which ``keep`` returns None is left out."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten(value, keep, separator, name + separator))
      continue
    kept = keep(value)
    if kept is not None:
      flat[name] = kept
  return flat
