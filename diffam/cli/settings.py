"""The settings of a command from the shipped Hydra configs, outside a Hydra app.

The Python API (:func:`diffam.segment`) composes the same ``configs/segment.yaml``
as ``diffam-segment``, with the same override syntax, so both give the same
configuration for the same options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from diffam.core.resources import config_dir


def override_strings(options: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Hydra override strings for keyword options.

    ``optim="fast"`` chooses a preset of a config group, ``optim={"iterations": 300}``
    sets fields (``optim.iterations=300``), ``seed=1`` sets a top-level value.
    """
    out = []
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += override_strings(value, prefix=f"{name}.")
        elif isinstance(value, (list, tuple)):
            out.append(f"{name}=[{','.join(str(v) for v in value)}]")
        elif value is None:
            out.append(f"{name}=null")
        else:
            out.append(f"{name}={value}")
    return out


def compose_settings(config_name: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The plain settings of ``configs/<config_name>.yaml`` with Hydra ``overrides`` applied.

    Raises:
        ValueError: an override names no option or preset (the message lists Hydra's reason).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if GlobalHydra.instance().is_initialized():  # inside a Hydra app: compose with its own
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ValueError(f"bad option: {error}") from None
    settings = OmegaConf.to_container(cfg, resolve=False)
    settings.pop("hydra", None)
    return settings
