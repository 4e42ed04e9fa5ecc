import os
import subprocess
import sys

import pytest

from dapose_jax.commands import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("value", ["", "off", "OFF", "0", "false", "no"])
def test_compilation_cache_is_off_when_the_variable_says_so(value, monkeypatch):
  monkeypatch.setenv(cli.COMPILATION_CACHE_ENVIRONMENT, value)
  assert cli.compilation_cache_dir() is None


def test_compilation_cache_defaults_to_the_user_cache_folder(monkeypatch, tmp_path):
  monkeypatch.delenv(cli.COMPILATION_CACHE_ENVIRONMENT, raising=False)
  monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  assert cli.compilation_cache_dir() == str(tmp_path / ".cache" / "dapose_jax" / "jax_cache")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert cli.compilation_cache_dir() == str(tmp_path / "xdg" / "dapose_jax" / "jax_cache")
  monkeypatch.setenv(cli.COMPILATION_CACHE_ENVIRONMENT, "~/elsewhere")
  assert cli.compilation_cache_dir() == str(tmp_path / "elsewhere")


def _compile_once(env):
  """Runs a process that enables the cache and compiles one function (every compilation cached)."""
  code = ("from dapose_jax.commands import cli; cli.enable_compilation_cache(); import jax, jax.numpy as jnp; "
          "print(jax.config.jax_compilation_cache_dir); jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3))")
  inherited = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env = {**inherited, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PLATFORMS": "cpu", **env}
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
  assert done.returncode == 0, done.stderr
  return done.stdout.strip()


def test_enabled_cache_stores_the_compiled_programs_in_its_folder(tmp_path):
  cache = tmp_path / "cache"
  assert _compile_once({cli.COMPILATION_CACHE_ENVIRONMENT: str(cache)}) == str(cache)
  assert any(name.startswith("jit__lambda") for name in os.listdir(cache))


def test_jax_own_cache_folder_is_kept(tmp_path):
  ours, jax_own = tmp_path / "ours", tmp_path / "jax_own"
  out = _compile_once({cli.COMPILATION_CACHE_ENVIRONMENT: str(ours), "JAX_COMPILATION_CACHE_DIR": str(jax_own)})
  assert out == str(jax_own)
  assert os.listdir(jax_own) and not ours.exists()
