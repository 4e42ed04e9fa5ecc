import os

# Tests run on CPU with 4 virtual devices so that data parallelism is exercised without accelerators.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# commands started by the tests compile small programs: keep them out of the user's ~/.cache
os.environ.setdefault("DAPOSE_JAX_COMPILATION_CACHE", "off")

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
