"""Reading other frameworks' weight files: the PyTorch / npz / safetensors reader and the key maps."""
