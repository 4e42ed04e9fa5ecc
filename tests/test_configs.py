"""Config files: one variant parser for all of them, keypoint sets taken from the data sets."""

import pathlib
import runpy

import pytest
from ml_collections import ConfigDict

from dapose_jax import errors, methods
from dapose_jax.config import defaults, variants
from dapose_jax.data import sources
from dapose_jax.data.synthetic import SyntheticPose

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def get_config(file, variant=""):
  return runpy.run_path(str(CONFIGS / file))["get_config"](variant)


def test_variant_tokens_are_parsed_by_kind_in_any_order():
  chosen = variants.parse("regda, horse", "f.py", animal=("horse", "tiger"))
  assert (chosen.animal, chosen.method) == ("horse", "regda")
  assert (variants.parse("", "f.py", size=("smoke",)).size, variants.parse("", "f.py").method) == ("", "")


@pytest.mark.parametrize("variant, problem", [("smok", "unknown token 'smok'"),
                                              ("regda,daml", "a second method ('daml')")])
def test_a_bad_variant_gets_one_error_that_lists_every_accepted_token(variant, problem):
  with pytest.raises(ValueError) as error:
    get_config("demo.py", variant)
  message = str(error.value)
  assert f"variant {variant!r} of configs/demo.py" in message and problem in message
  assert "size: smoke" in message and all(name in message for name in methods.NAMES)


@pytest.mark.parametrize("file", sorted(p.name for p in CONFIGS.glob("*.py")))
@pytest.mark.parametrize("method", ["regda", "daml"])
def test_every_config_file_takes_a_method_token(file, method):
  assert get_config(file, method).method == method
  assert get_config(file).method == "source_only"


def test_method_tokens_of_task_configs_set_the_reference_epochs():
  assert get_config("surreal_h36m.py", "regda").epochs == 10  # regda.sh
  assert get_config("surreal_lsp.py", "regda").epochs == 30
  assert get_config("surreal_lsp.py", "mean_teacher").epochs == 30
  assert get_config("surreal_lsp.py").epochs == 70
  assert get_config("demo.py", "smoke,regda").image_size == get_config("demo.py", "smoke").image_size == 64


@pytest.mark.parametrize("method, aggregation", [("", "tllib"), ("regda", "tllib"), ("mean_teacher", "udape"),
                                                 ("daml", "udape"), ("geometric", "udape")])
def test_task_configs_score_pck_as_their_reference_aggregates_it(method, aggregation):
  for file in ("surreal_lsp.py", "rhd_h3d.py", "synanimal_animalpose.py"):
    config = get_config(file, method)
    assert {spec.aggregation for spec in config.evals.values()} == {aggregation}, file


@pytest.mark.parametrize("method", ["mean_teacher", "daml", "geometric"])
def test_animal_targets_of_the_mean_teacher_methods_take_a_fixed_crop_and_uncoloured_views(method):
  config = get_config("synanimal_tigdog.py", f"horse,{method}")
  assert (config.target.augment.scale_min, config.target.augment.scale_max) == (1.0, 1.0)
  assert config[method].view.color == 0.0 and config[method].view.rotation == 60.0
  assert get_config("synanimal_tigdog.py", "horse,regda").target.augment.scale_min == 0.6  # no reference: tllib's
  assert get_config("surreal_lsp.py", method)[method].view.color == 0.25


def test_config_keypoint_sets_come_from_the_data_sets():
  assert defaults.domain("synthetic").keypoint_set == SyntheticPose.keypoint_set.name == "body16"
  assert get_config("rhd_h3d.py").source.keypoint_set == "hand21"
  assert get_config("surreal_lsp.py").target.keypoint_set == "body16"
  assert defaults.domain("synanimal_hound_sheep").keypoint_set == "animal14"
  with pytest.raises(errors.ConfigError, match="unknown data set 'lspp'"):
    defaults.domain("lspp")


def test_every_builder_stores_the_keypoint_set_that_configs_record():
  from dapose_jax.data import builders

  for name, builder in builders.REGISTRY.items():
    assert defaults.domain(name).keypoint_set == builder.keypoint_set(), name


def test_the_data_sets_that_build_offers_are_the_builders():
  from dapose_jax.config import datasets
  from dapose_jax.data import builders

  assert datasets.BUILDABLE == tuple(sorted(builders.REGISTRY))


def test_a_source_refuses_a_config_with_another_keypoint_set():
  config = ConfigDict(dict(name="synthetic", keypoint_set="hand21", style="source", seed=0, train_size=4,
                           test_size=4, render_size=32))
  with pytest.raises(ValueError, match="stores body16 keypoints.*keypoint_set='hand21'"):
    sources.make_source(config, "train")
  config.keypoint_set = "body16"
  assert sources.make_source(config, "train").keypoint_set is SyntheticPose.keypoint_set


def test_a_data_config_cannot_claim_another_keypoint_set_than_its_data_set():
  assert defaults.domain("lsp", keypoint_set="body16").keypoint_set == "body16"
  with pytest.raises(ValueError, match="'lsp' stores body16 keypoints"):
    defaults.domain("lsp", keypoint_set="hand21")
