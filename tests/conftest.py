import os

# Tests run on CPU with 4 virtual devices so that data parallelism is exercised without accelerators.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
