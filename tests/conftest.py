import os
import shutil
import tempfile

# Tests run on CPU with 4 virtual devices so that data parallelism is exercised without accelerators.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# commands started by the tests compile small programs: keep them out of the user's ~/.cache
os.environ.setdefault("DAPOSE_JAX_COMPILATION_CACHE", "off")
# One persistent compilation cache per test session instead, shared by the pytest-xdist workers (they inherit the
# controller's environment) and the commands the tests start (JAX reads these variables): the tests compile the same
# small programs many times over. Removed when the session ends.
SESSION_CACHE = os.path.join(tempfile.gettempdir(), f"dapose_jax_tests_compilation_cache_{os.getpid()}")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = SESSION_CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

# Products that several test modules read (the tiny trained run), made once per session by whichever pytest-xdist
# worker asks first (tests/test_train.py: tiny_run); removed when the session ends.
SESSION_SHARED = os.path.join(tempfile.gettempdir(), f"dapose_jax_tests_shared_{os.getpid()}")
os.environ.setdefault("DAPOSE_JAX_TESTS_SHARED", SESSION_SHARED)

# XLA's quick compile without most optimisations, here and in the commands the tests start: the tests' programs
# are small, their compilation is most of their time
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


# The longest tests (20 s to 2 minutes each on 2 cores) run first, longest first: pytest-xdist hands out the first
# quarter of the tests round robin and the rest as workers free up, so the short tests even out the end instead of
# one worker running a long test alone.
LONG = ("tests/test_reproduce.py::test_the_dry_run_", "tests/test_geometric.py::test_a_run_from_stage_one_",
        "tests/test_multihost.py::", "tests/test_geometric.py::test_the_reconstruction_term_",
        "tests/test_geometric.py::test_the_baseline_ablation_", "tests/test_evaluate.py::test_the_final_and_the_best_",
        "tests/test_method_contract.py::test_method_inits_")


def pytest_collection_modifyitems(items):
  def rank(item):
    return next((i for i, prefix in enumerate(LONG) if item.nodeid.startswith(prefix)), len(LONG))

  items.sort(key=rank)


def pytest_sessionfinish(session):
  if "PYTEST_XDIST_WORKER" not in os.environ:
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)
    shutil.rmtree(SESSION_SHARED, ignore_errors=True)
