"""The published defaults are written once: the YAML config groups equal the dataclasses."""

from __future__ import annotations

import dataclasses

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from diffam.core.config import SegmentationConfig, segmentation_config
from diffam.core.resources import config_dir


def _composed(overrides=()) -> dict:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="segment", overrides=list(overrides))
    settings = OmegaConf.to_container(cfg, resolve=False)
    settings.pop("hydra", None)
    return settings


def test_default_yaml_equals_dataclass_defaults():
    from_yaml = dataclasses.asdict(segmentation_config(_composed()))
    assert from_yaml == dataclasses.asdict(SegmentationConfig())


def test_every_dataclass_field_is_in_the_yaml():
    """A field missing from the YAML could not be set from the command line by its group."""
    settings = _composed()
    config = SegmentationConfig()
    for group in ("losses", "shape", "appearance", "optim", "export", "refine"):
        fields = {f.name for f in dataclasses.fields(getattr(config, group))}
        assert set(settings[group]) == fields, group


def test_presets_only_change_what_they_name():
    fast = segmentation_config(_composed(["optim=fast"]))
    assert fast.optim.iterations < SegmentationConfig().optim.iterations
    assert fast.losses == SegmentationConfig().losses
