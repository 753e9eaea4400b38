"""Typed configuration of a segmentation run.

Scripts turn the Hydra config into these dataclasses (:func:`from_mapping`);
the library takes only them. Defaults are the published DiffAM settings
(Kim and Park 2024; ``../shared/docs/METHOD.md`` section 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LossWeights:
    """Weights of the five losses; 0 switches a loss off (the paper's ablations)."""

    image: float = 1.0
    edge: float = 0.02
    normal: float = 0.1
    overlap: float = 1.0
    variance: float = 0.02
    #: Keeps each vertebra's centre from moving out of the scan's field of view
    #: (diffam.fit.field_of_view.view_drift_penalty); not in the paper.
    view: float = 10.0
    #: Keeps neighbouring vertebral bodies ``optim.neighbour_gap_mm`` apart (a disc
    #: between them; diffam.fit.objective.gap_loss); not in the paper. 30 was
    #: chosen on the chest CT (1: 82.8, 10: 83.6, 30: 84.5, 100: 82.7 mean Dice T1-L1).
    gap: float = 30.0
    #: Holds each vertebra with a given centroid within ``optim.tether_free_mm`` of it
    #: along the spine, its own volume centroid of the given kind tracked
    #: (diffam.fit.tether); not in the paper; 0: off. Chosen on the chest CT, whose T4-T7
    #: bodies slide up the spine without it (84.2-86.8 -> 87.2-87.7 over two seeds and both
    #: centroid kinds; docs/ACCURACY.md "The tether tracking the fitted volume").
    tether: float = 1000.0


@dataclass
class ShapeConfig:
    """Deformation model: per-vertebra affine plus spectral (Laplace--Beltrami) modes."""

    num_eigenvectors: int = 64
    affine: bool = True
    spectral: bool = True
    alpha_start: float = 1.0
    alpha_end: float = 0.4
    #: Initial per-vertebra scale from the spacing of the given centroids
    #: against the template's, clamped to this range (1, 1 disables it).
    initial_scale_range: tuple[float, float] = (0.75, 1.35)
    #: Rotate each template so its cranio-caudal axis follows the centroid curve.
    align_to_centroids: bool = True


@dataclass
class AppearanceConfig:
    """Fourier-feature MLP from signed distance to intensity."""

    num_frequencies: int = 16
    frequency_std: float = 8.0
    hidden: int = 64
    layers: int = 3
    activation: str = "silu"
    #: Intensities are divided by this (HU) before fitting.
    intensity_scale: float = 1000.0
    #: The predicted image is blurred along the scan's slice axis by the scan's
    #: excess blur there (slices thicker than pixels, diffam.fit.slice_profile),
    #: its modelled sigma times this; 0: a sharp prediction.
    slice_blur_scale: float = 1.0


@dataclass
class OptimConfig:
    """Optimisation schedule.

    The defaults are the quick coarse-to-fine schedule (``schedule=converge``)
    with a point budget per vertebra; ``configs/optim/paper.yaml`` is the
    paper's protocol (3000 fixed iterations, 10k + 10k points per scan, 1 mm).
    """

    #: "converge": coarse-to-fine stages, each ending when its loss stops
    #: improving (diffam.fit.schedules.ConvergeSchedule); "fixed": the paper's
    #: linear blur and alpha schedules over exactly ``iterations``.
    schedule: str = "converge"
    #: Iterations of the fixed schedule; the most the converge schedule runs
    #: (each of its stages runs at most ``iterations // stages``).
    iterations: int = 1200
    #: Points per scan near the surface (image loss) and on it (normal loss),
    #: used when the per-vertebra budgets below are 0.
    num_image_points: int = 10000
    num_surface_points: int = 10000
    #: Points per fitted vertebra (0: the per-scan counts above), so a whole
    #: spine gets as many points per vertebra as a lumbar scan. The normal
    #: loss gets twice the image loss's: with 1000 the small crop l3_crop
    #: (three vertebrae, two cut by the borders) came out 2.3 Dice points
    #: lower over 4 seeds, and surface samples need no signed distance, so
    #: the extra 1000 per vertebra cost ~5 % of an iteration (issue 23).
    image_points_per_vertebra: int = 1000
    surface_points_per_vertebra: int = 2000
    #: Stages of the converge schedule: blur_start_mm ... 0 in equal steps.
    stages: int = 4
    #: A stage runs at least this many iterations... 150, not 60: the
    #: stages ended after ~60-100 iterations, too early for the small crop
    #: l3_crop (3.4 Dice points below the paper's schedule over seeds 0-2;
    #: 0.6 below with 150), and each stage's cap (iterations // stages)
    #: still bounds the fit time (issue 23).
    stage_min_iterations: int = 150
    #: ...and ends when the mean weighted loss of its last ``converge_window``
    #: iterations is less than ``converge_tolerance`` (relative) below the
    #: mean of the window before.
    converge_window: int = 20
    converge_tolerance: float = 0.003
    #: Share of the point budget sampled while the target is blurred (converge schedule).
    coarse_point_fraction: float = 0.5
    #: Noise of the image samples around the surface in the last (unblurred)
    #: stage of the converge schedule, mm.
    fine_sample_sigma_mm: float = 9.6
    sample_sigma_mm: float = 9.6
    unit_mm: float = 64.0
    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.9)
    #: Target blur at the start of the coarse-to-fine schedule, mm. 1.28, not the
    #: paper's 2.56 (optim=paper keeps it): on 2.5 mm slices the thin thoracic
    #: discs vanish under 2.56 mm and the bodies drift a slice up the spine.
    blur_start_mm: float = 1.28
    blur_end_fraction: float = 0.8
    #: Blur widths are rounded to multiples of this (mm), so blurred copies of
    #: the scan are made once per step of the schedule, not every iteration.
    blur_step_mm: float = 0.16
    #: Opening ratio of the Barnes--Hut winding number during fitting.
    winding_beta: float = 1.25
    #: The fit state is saved to output_dir/checkpoint.pt this often (0: only when stopped).
    checkpoint_every_iterations: int = 250
    #: Scans are cropped around the spine and resampled to this spacing for
    #: fitting (the paper used 1 mm isotropic data); 0 keeps the scan's grid.
    processing_spacing_mm: float = 1.5
    #: The same crop on this finer grid (mm; never finer than the scan's own
    #: finest spacing) is sampled once the target is no longer blurred (the
    #: last stage of the converge schedule, the last part of the fixed one):
    #: coarse to fine in resolution as in blur. 0, or no finer than
    #: processing_spacing_mm: the processing grid throughout. Off by default:
    #: 1 mm gave the chest CT (0.7 mm pixels) T1-L1 82.8 / 85.1 against
    #: 80.8 / 79.5 Dice (whole-vertebra / body centroids) but cost the 1 mm
    #: VerSe crops 1-5 points (verse005 about 85 against 90).
    fine_spacing_mm: float = 0.0
    #: Margin around the initial template kept when cropping, mm.
    crop_margin_mm: float = 40.0
    #: Leave samples outside the scan's field of view out of the image and
    #: normal losses (they carry no data; the paper fits the padding value).
    mask_outside_view: bool = True
    #: A vertebra's centre may not come closer than this (or than it started)
    #: to the border of the field of view (loss weight ``losses.view``), mm.
    view_margin_mm: float = 15.0
    #: Coarse rigid search of each vertebra's placement before the fit
    #: (diffam.fit.rigid_search): translations of +-init_search_mm, rotations of
    #: +-init_search_deg; false starts the fit at the centroids. Off by default:
    #: on the VerSe crops with label-map centroids it moved some end vertebrae
    #: off (verse008 T12 87 -> 80 Dice, optim=fast); it helps starts 15 mm off.
    init_search: bool = False
    init_search_mm: float = 15.0
    init_search_deg: float = 15.0
    #: Before the fit, move given centroids that lie far from the vertebrae
    #: the localiser detects onto them (diffam.fit.reseat; levels matched to
    #: detections in order): a centroid started toward a neighbour then keeps
    #: its own bone (chest CT T5-T9, each moved 15 mm, optim=fast: Dice 0-0.2
    #: without, 75-88 with, against 68-80 uncut). It moved nothing on the
    #: label-map centroids of the five shared scans (both kinds).
    reseat_centroids: bool = True
    #: The run is re-seated when its centroids lie at a median distance above
    #: this from their detections (mm); a single level only beyond twice it.
    #: Label-map centroids: median 3-7 mm (largest single 10.4 mm, verse005
    #: L3); the chest T5-T9 moved 15 mm: medians 15-18 mm over ten seeds.
    reseat_keep_mm: float = 10.0
    #: Given centroids of a vertebra cut by the scan's border are the centre of
    #: its part in view (a label map's, the localiser's): its template is moved
    #: until its own part in view has that centre (diffam.fit.view_placement);
    #: false puts the whole template's centre there.
    #: Label-map centroids, default settings, refined: l3_crop 81.4 -> 88.7,
    #: verse005 cut to L4-L5 (L3 cut) 38.9 -> 88.0, verse005 with L1's lowest
    #: 9 mm in view 72.7 -> 86.1 (L1 10 -> 72), its lowest 25 mm 74.5 -> 87.8;
    #: no given vertebra of the uncut VerSe crops or the chest CT counts as
    #: cut, so they are unchanged.
    centroids_in_view: bool = True
    #: Also fit the level just beyond each end of the given centroids, where
    #: its extrapolated centroid lies in the scan, and drop it from every
    #: output (diffam.fit.guards): without it an end vertebra grows into its
    #: unfitted neighbour (chest CT, T1-L1 given: T1 60 -> 87, L1 69 -> 89 Dice).
    guard_neighbours: bool = True
    #: A guard is fitted also when its extrapolated centroid lies up to this far
    #: outside the scan (mm): a neighbour cut by a tight crop but partly in view.
    #: Chest CT cut to the box of T6-T8 (optim=fast): T5 lies 4 mm outside, and
    #: T6 gave 67 against 77 uncut without it, 74-75 with it; VerSe crops with
    #: label-map centroids (a guard is added on each): verse005 90.3 -> 90.5,
    #: verse007 88.6 -> 88.6, verse008 90.9 -> 92.0 mean Dice.
    guard_outside_mm: float = 12.0
    #: Least separation of neighbouring vertebral bodies kept by the loss
    #: ``losses.gap``, mm (0: off): without it the fit lets a body grow across
    #: the disc above until it touches its neighbour (chest CT, T4-T10).
    neighbour_gap_mm: float = 2.0
    #: Dead zone of ``losses.tether`` along the spine, mm: no cost while a vertebra's
    #: centre of the given kind lies this near its given centroid (measured with
    #: losses.tether=1000, docs/ACCURACY.md "An axial tether to given centroids").
    tether_free_mm: float = 2.0


@dataclass
class ExportConfig:
    """What the output folder holds (see :mod:`diffam.export.writers`)."""

    labels: str = "verse"  # or "totalsegmentator"
    per_vertebra_masks: bool = False
    meshes: bool = True
    mesh_format: str = "ply"
    #: File format of the label map (and masks): nii.gz, nii, mha, nrrd, or
    #: auto for the input's own format (NIfTI for DICOM input and the phantom).
    format: str = "nii.gz"
    #: Colour/name tables beside the label map (3D Slicer .ctbl, ITK-SNAP .txt).
    color_tables: bool = True
    #: DICOM SEG for DICOM input: auto (when highdicom is installed), true
    #: (required: fail without highdicom), false.
    dicom_seg: Any = "auto"
    #: Quality-control pictures (qc/sagittal.png, qc/coronal.png, qc/losses.png).
    qc_images: bool = True
    #: Curved reformations along the spine and a per-vertebra strip with the fit
    #: score (qc/curved_sagittal.png, qc/curved_coronal.png, qc/vertebrae.png);
    #: only with qc_images.
    qc_curved: bool = True
    #: Per-vertebra fit score (diffam.fit.quality) in the reports and qc/vertebrae.png.
    fit_score: bool = True
    #: A vertebra whose fit score is below this is flagged as doubtful: the one
    #: place the threshold is set, chosen by benchmarks/calibrate_fit_score.py
    #: (sensitivity + specificity for Dice < 70 % on its tuning scans).
    fit_score_threshold: float = 0.4
    #: Per-vertebra measurements (HU, body heights, Genant ratios, border flag)
    #: in statistics.json/.csv and report.md (diffam.export.statistics).
    statistics: bool = True
    #: Trabecular ROI of the statistics: the body eroded by this distance (mm).
    trabecular_margin_mm: float = 3.0
    #: labels.seg.nrrd: 3D Slicer segmentation with segment names, colours, terminology.
    seg_nrrd: bool = True
    #: surfaces/<level>.stl: smoothed watertight surface of each label (world LPS mm).
    label_surfaces: bool = False


@dataclass
class RefineConfig:
    """Voxel refinement of the label map near the fitted surfaces (diffam.fit.refine)."""

    #: none (the fitted meshes as they are) or likelihood (each voxel near the
    #: fitted surfaces decided again from its HU, against the fit's own statistics).
    method: str = "likelihood"
    #: Half-width of the band around the fitted surfaces that is decided again, mm.
    band_mm: float = 3.0
    #: Width of the fitted surface's prior: a voxel this far outside (inside) the
    #: fitted surface needs e times more (less) evidence from its HU to be bone, mm.
    prior_mm: float = 1.0
    #: Sweeps of a Potts prior over the band after the voxel-wise decision (0: none):
    #: a band voxel then follows the verdict of most of its six face neighbours unless
    #: its own evidence is stronger.
    mrf_sweeps: int = 4
    #: Weight of each face neighbour in those sweeps (log-odds per neighbour).
    mrf_weight: float = 0.5


@dataclass
class SegmentationConfig:
    """Everything :func:`diffam.fit.pipeline.segment` needs besides the image."""

    template: str = "spine"
    levels: list[str] | None = None
    losses: LossWeights = field(default_factory=LossWeights)
    shape: ShapeConfig = field(default_factory=ShapeConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    device: str = "auto"
    seed: int = 0


def from_mapping(cls, mapping: dict[str, Any] | None):
    """Build dataclass ``cls`` from a plain (nested) dict, refusing unknown keys.

    Lists become tuples where the field's default is a tuple.
    """
    if mapping is None:
        return cls()
    if dataclasses.is_dataclass(mapping):
        return mapping
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {cls.__name__}; valid: {sorted(known)}")
    values = {}
    for name, value in mapping.items():
        f = known[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = from_mapping(type(default), value)
        elif isinstance(default, tuple) and isinstance(value, list | tuple):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def segmentation_config(settings: dict[str, Any]) -> SegmentationConfig:
    """Typed configuration from the plain settings of ``configs/segment.yaml``.

    ``settings`` holds the config groups as nested dicts (``{"optim": {...},
    "template": {"name": ..., "levels": ...}, "device": ..., "seed": ...}``);
    what it lacks keeps the dataclass default.
    """
    defaults = SegmentationConfig()
    template = settings.get("template") or {}
    return SegmentationConfig(
        template=str(template.get("name", defaults.template)),
        levels=list(template["levels"]) if template.get("levels") else defaults.levels,
        losses=from_mapping(LossWeights, settings.get("losses")),
        shape=from_mapping(ShapeConfig, settings.get("shape")),
        appearance=from_mapping(AppearanceConfig, settings.get("appearance")),
        optim=from_mapping(OptimConfig, settings.get("optim")),
        export=from_mapping(ExportConfig, settings.get("export")),
        refine=from_mapping(RefineConfig, settings.get("refine")),
        device=str(settings.get("device", defaults.device)),
        seed=int(settings.get("seed", defaults.seed)),
    )
