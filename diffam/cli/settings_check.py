"""Check every setting of ``configs/segment.yaml`` before any work: types, ranges, choices.

:func:`check_segment_settings` collects every problem and raises one
:class:`SettingsError` whose message names each bad option,
the value given and the valid values, so a run never fails after the fit on a
typo in an export option, and never fits with a nonsensical schedule.

Types come from the config dataclasses themselves (:mod:`diffam.core.config`),
so a field added there is type-checked here without a change; ranges and
choices are listed in :data:`RANGES` and :data:`CHOICES` (a missing field is
skipped).
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any

from diffam.core.config import (
    AppearanceConfig,
    ExportConfig,
    LossWeights,
    OptimConfig,
    RefineConfig,
    ShapeConfig,
)
from diffam.core.labels import LABEL_CONVENTIONS
from diffam.fit.schedules import SCHEDULES


class SettingsError(ValueError):
    """The settings are inconsistent; the message says which option to change."""


#: Config sections of segment.yaml and their dataclass.
SECTIONS = {"losses": LossWeights, "shape": ShapeConfig, "appearance": AppearanceConfig,
            "optim": OptimConfig, "export": ExportConfig, "refine": RefineConfig}

_POSITIVE = (0.0, False, None)  # > 0
_NON_NEGATIVE = (0.0, True, None)  # >= 0
_AT_LEAST_ONE = (1, True, None)

#: option -> (lowest, lowest allowed itself, highest or None).
RANGES: dict[str, tuple] = {
    "optim.iterations": _AT_LEAST_ONE,
    "optim.num_image_points": _AT_LEAST_ONE,
    "optim.num_surface_points": _AT_LEAST_ONE,
    "optim.sample_sigma_mm": _NON_NEGATIVE,
    "optim.unit_mm": _POSITIVE,
    "optim.lr": _POSITIVE,
    "optim.betas": (0.0, True, 0.999999),
    "optim.blur_start_mm": _NON_NEGATIVE,
    "optim.blur_end_fraction": (0.0, True, 1.0),
    "optim.winding_beta": _POSITIVE,
    "optim.blur_step_mm": _POSITIVE,
    "optim.checkpoint_every_iterations": (0, True, None),
    "optim.view_margin_mm": _NON_NEGATIVE,
    "optim.neighbour_gap_mm": _NON_NEGATIVE,
    "optim.tether_free_mm": _NON_NEGATIVE,
    "optim.init_search_mm": _NON_NEGATIVE,
    "optim.init_search_deg": _NON_NEGATIVE,
    "optim.reseat_keep_mm": _NON_NEGATIVE,
    "optim.guard_outside_mm": _NON_NEGATIVE,
    "export.trabecular_margin_mm": _NON_NEGATIVE,
    "optim.processing_spacing_mm": _NON_NEGATIVE,
    "optim.fine_spacing_mm": _NON_NEGATIVE,
    "optim.crop_margin_mm": _NON_NEGATIVE,
    "optim.image_points_per_vertebra": _NON_NEGATIVE,
    "optim.surface_points_per_vertebra": _NON_NEGATIVE,
    "optim.stages": _AT_LEAST_ONE,
    "optim.stage_min_iterations": _NON_NEGATIVE,
    "optim.converge_window": _AT_LEAST_ONE,
    "optim.converge_tolerance": _NON_NEGATIVE,
    "optim.coarse_point_fraction": (0.0, False, 1.0),
    "optim.fine_sample_sigma_mm": _NON_NEGATIVE,
    "shape.num_eigenvectors": _AT_LEAST_ONE,
    "shape.alpha_start": _NON_NEGATIVE,
    "shape.alpha_end": _NON_NEGATIVE,
    "shape.initial_scale_range": _POSITIVE,
    "appearance.num_frequencies": _AT_LEAST_ONE,
    "appearance.frequency_std": _POSITIVE,
    "appearance.hidden": _AT_LEAST_ONE,
    "appearance.layers": _AT_LEAST_ONE,
    "appearance.intensity_scale": _POSITIVE,
    "appearance.slice_blur_scale": _NON_NEGATIVE,
    "export.fit_score_threshold": (-1.0, True, 1.0),
    "seed": (0, True, 2**32 - 1),
    "phantom.spacing_mm": _POSITIVE,
    "memory_limit_gb": _NON_NEGATIVE,
    "refine.band_mm": _POSITIVE,
    "refine.prior_mm": _POSITIVE,
    "refine.mrf_sweeps": _NON_NEGATIVE,
    "refine.mrf_weight": _NON_NEGATIVE,
}
for _field in dataclasses.fields(LossWeights):  # one weight per registered loss (tested)
    RANGES[f"losses.{_field.name}"] = _NON_NEGATIVE

#: option -> valid values (compared lower-case).
CHOICES: dict[str, tuple[str, ...]] = {
    "export.labels": LABEL_CONVENTIONS,
    "export.format": ("auto", "nii.gz", "nii", "mha", "nrrd"),
    "export.mesh_format": ("ply", "stl", "obj", "off"),
    "export.dicom_seg": ("auto", "true", "false"),
    "appearance.activation": ("relu", "silu"),
    "optim.schedule": tuple(SCHEDULES),
    "refine.method": ("none", "likelihood"),
}

_TOP_LEVEL_BOOLS = ("overwrite", "resume", "memory_check")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_problem(name: str, value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint``; None when it does."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(name, value, a) for a in args if a is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if hint is bool:
        if isinstance(value, bool):
            return None
        return f"{name}={_describe(value)}: must be true or false"
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"{name}={_describe(value)}: must be a whole number"
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return f"{name}={value!r}: must be a finite number"
            return None
        return f"{name}={_describe(value)}: must be a number"
    if hint is str:
        return None if isinstance(value, str) else f"{name}={_describe(value)}: must be a text"
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return f"{name}={_describe(value)}: must be a list like [a, b]"
        if origin is tuple and args and args[-1] is not Ellipsis and len(value) != len(args):
            return f"{name}={list(value)!r}: must hold {len(args)} values"
        item_hints = args if origin is tuple and args and args[-1] is not Ellipsis else \
            [args[0] if args else Any] * len(value)
        for i, (item, item_hint) in enumerate(zip(value, item_hints)):
            problem = _type_problem(f"{name}[{i}]", item, item_hint)
            if problem:
                return problem
        return None
    return None


def _range_problem(name: str, value: Any, rule: tuple) -> str | None:
    low, inclusive, high = rule
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        too_low = v < low if inclusive else v <= low
        if too_low or (high is not None and v > high):
            valid = (f">= {low}" if inclusive else f"> {low}") + \
                (f" and <= {high}" if high is not None else "")
            return f"{name}={value!r}: must be {valid}"
    return None


def check_section(section: str, cls, values: dict | None) -> list[str]:
    """Problems of one config section (``optim``, ``export``...)."""
    if values is None:
        return []
    if not isinstance(values, dict):
        return [f"{section}={_describe(values)}: must be a group of options"]
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    problems = []
    for key in sorted(set(values) - known):
        problems.append(f"{section}.{key} is not an option; valid: {', '.join(sorted(known))}")
    for key in sorted(set(values) & known):
        name, value = f"{section}.{key}", values[key]
        problem = _type_problem(name, value, hints[key])
        if problem is None and name in RANGES:
            problem = _range_problem(name, value, RANGES[name])
        if problem is None and name in CHOICES:
            text = str(value).lower() if not isinstance(value, bool) else str(value).lower()
            if text not in CHOICES[name]:
                problem = f"{name}={value!r}: must be one of {', '.join(CHOICES[name])}"
        if problem:
            problems.append(problem)
    return problems


def check_segment_settings(settings: dict) -> None:
    """Raise :class:`SettingsError` listing every bad setting."""
    problems: list[str] = []
    for section, cls in SECTIONS.items():
        problems += check_section(section, cls, settings.get(section))
    shape = settings.get("shape") or {}
    scale = shape.get("initial_scale_range") if isinstance(shape, dict) else None
    if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(
            isinstance(v, (int, float)) for v in scale) and scale[0] > scale[1]:
        problems.append(f"shape.initial_scale_range={list(scale)}: the first value must not "
                        "exceed the second")
    for name in _TOP_LEVEL_BOOLS:
        if name in settings:
            problem = _type_problem(name, settings[name], bool)
            if problem:
                problems.append(problem)
    if "seed" in settings:
        problems += [p for p in (_type_problem("seed", settings["seed"], int),) if p] or \
            [p for p in (_range_problem("seed", settings["seed"], RANGES["seed"]),) if p]
    device = settings.get("device", "auto")
    if not isinstance(device, str) or not _DEVICE.match(device):
        problems.append(f"device={device!r}: must be auto, cpu, cuda or cuda:N")
    for name in ("scan", "scans", "centroids", "pattern", "series_uid"):
        value = settings.get(name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name}={_describe(value)}: must be a text (a path)")
    if settings.get("memory_limit_gb") is not None:
        problems += [p for p in (
            _type_problem("memory_limit_gb", settings["memory_limit_gb"], float),
            _range_problem("memory_limit_gb", settings["memory_limit_gb"],
                           RANGES["memory_limit_gb"])) if p][:1]
    problems += _template_problems(settings.get("template"))
    problems += _phantom_problems(settings)
    if problems:
        raise SettingsError("bad setting(s): " + "; ".join(problems))


def _template_problems(template: Any) -> list[str]:
    from diffam.core.labels import VERSE_IDS

    if template is None:
        return []
    if not isinstance(template, dict):
        return [f"template={_describe(template)}: must be a group (template=spine or "
                "template.name=...)"]
    problems = []
    name = template.get("name", "spine")
    if not isinstance(name, str) or not name:
        problems.append(f"template.name={_describe(name)}: must be a template name or .npz path")
    else:
        from pathlib import Path

        from diffam.core.template import available_templates

        known = available_templates()
        if not Path(name).is_file() and name not in known:
            problems.append(f"template.name={name!r}: no such template; valid: "
                            f"{', '.join(known)} or the path of a .npz template file")
    levels = template.get("levels")
    if levels is not None:
        if not isinstance(levels, (list, tuple)) or not levels:
            problems.append(f"template.levels={levels!r}: must be a list of levels like "
                            "[L1, L2, L3], or null for all")
        else:
            bad = [v for v in levels if v not in VERSE_IDS]
            if bad:
                problems.append(f"template.levels: {bad} are not vertebra levels; valid: "
                                + ", ".join(VERSE_IDS))
    return problems


def _phantom_problems(settings: dict) -> list[str]:
    from diffam.core.labels import VERSE_IDS

    if settings.get("scan") != "builtin:phantom":
        return []
    phantom = settings.get("phantom") or {}
    if not isinstance(phantom, dict):
        return [f"phantom={_describe(phantom)}: must be a group of options"]
    problems = []
    spacing = phantom.get("spacing_mm", 1.5)
    problem = _type_problem("phantom.spacing_mm", spacing, float) or \
        _range_problem("phantom.spacing_mm", spacing, RANGES["phantom.spacing_mm"])
    if problem:
        problems.append(problem)
    levels = phantom.get("levels", ["L1"])
    if not isinstance(levels, (list, tuple)) or not levels or \
            any(v not in VERSE_IDS for v in levels):
        problems.append(f"phantom.levels={levels!r}: must be a list of vertebra levels like "
                        "[L1, L2, L3]")
    problem = _type_problem("phantom.seed", phantom.get("seed", 0), int)
    if problem:
        problems.append(problem)
    return problems
