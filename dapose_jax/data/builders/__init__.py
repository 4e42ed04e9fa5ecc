"""TFDS builders of the real data sets, by the name that data configs use."""

from dapose_jax.data.builders import lsp

REGISTRY = {
    "lsp": lsp.Lsp,
    "lsp_extended": lsp.LspExtended,
}
