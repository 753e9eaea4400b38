"""Tests of diffam.localize: naming, frames, clear errors (detection accuracy: see report)."""

from __future__ import annotations

import numpy as np
import pytest

from diffam.core.image import read_image
from diffam.core.volume import Volume
from diffam.localize import LocalizationError, localize_vertebrae
from diffam.localize.centerline import fit_centerline
from diffam.localize.naming import name_levels
from diffam.localize.orientation import local_frame


def test_name_levels_from_lowest_and_highest():
    ids, how = name_levels(3, hint_lowest="L5")
    assert ids == [24, 23, 22]
    assert "levels.lowest=L5" in how
    ids, how = name_levels(2, hint_highest="T11")
    assert ids == [19, 18]
    assert "levels.highest=T11" in how


def test_name_levels_without_hint_says_what_to_pass():
    with pytest.raises(
        LocalizationError, match=r"levels\.lowest=L5.*levels\.highest=T10.*centroids"
    ):
        name_levels(4)


def test_name_levels_rejects_inconsistent_or_impossible_hints():
    with pytest.raises(LocalizationError, match="span"):
        name_levels(3, hint_lowest="L5", hint_highest="L1")
    with pytest.raises(LocalizationError, match="past C1 or L5"):
        name_levels(4, hint_lowest="C2")
    with pytest.raises(LocalizationError, match="levels.lowest"):
        name_levels(2, hint_lowest="Q9")


def test_segment_refuses_a_bad_hint_even_when_centroids_are_given():
    from diffam.fit.pipeline import SegmentationError, segment

    volume = Volume(np.zeros((8, 8, 8), np.float32), [1.0] * 3, [0, 0, 0])
    with pytest.raises(SegmentationError, match=r"levels\.highest=sacrum: hints must be"):
        segment(volume, centroids={20: np.zeros(3)}, hint_highest="S1")


def test_local_frame_is_a_rotation_and_upright_for_a_vertical_spine():
    frame = local_frame(np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(frame, np.eye(3), atol=1e-12)
    tilted = local_frame(np.array([0.0, -0.5, 1.0]))
    np.testing.assert_allclose(tilted.T @ tilted, np.eye(3), atol=1e-12)
    assert np.linalg.det(tilted) == pytest.approx(1.0)
    np.testing.assert_allclose(tilted[:, 2], np.array([0.0, -0.5, 1.0]) / np.sqrt(1.25))


def test_centerline_is_smooth_ordered_and_uniform():
    z = np.linspace(0, 100, 60)
    pts = np.stack([np.zeros_like(z), 5 * np.sin(z / 30), z], 1)[::-1]
    pts[10] = np.nan
    cl = fit_centerline(pts)
    assert cl.points[0, 2] < cl.points[-1, 2]  # inferior to superior
    np.testing.assert_allclose(np.diff(cl.arc_mm), 1.0, atol=0.05)
    np.testing.assert_allclose(np.linalg.norm(cl.tangents, axis=1), 1.0)


def test_scan_without_spine_raises_a_clear_error():
    rng = np.random.default_rng(0)
    soft = (40 + 10 * rng.normal(size=(30, 40, 40))).astype(np.float32)
    with pytest.raises(LocalizationError, match=r"no spinal column.*levels\.lowest=L5"):
        localize_vertebrae(Volume(soft, [1.5] * 3, [0, 0, 0]))


def test_short_real_scan_needs_a_hint(shared_data):
    volume = read_image(shared_data / "ct" / "dicom_t11_t12")
    with pytest.raises(LocalizationError, match=r"levels\.lowest=L5|levels\.highest=T10"):
        localize_vertebrae(volume)


def test_periodic_peaks_keeps_the_period_through_a_weak_and_a_spurious_peak():
    from diffam.localize.periodicity import periodic_peaks

    s = np.arange(300.0)
    true = np.arange(20.0, 290.0, 25.0)
    profile = sum(np.exp(-0.5 * ((s - t) / 2.5) ** 2) for t in true)
    profile[np.abs(s - true[4]) < 8] *= 0.3  # a faint disc
    profile += 0.6 * np.exp(-0.5 * ((s - (true[7] + 12.0)) / 2.5) ** 2)  # mid-body artefact
    peaks = periodic_peaks(profile, 1.0)
    np.testing.assert_allclose(peaks, true, atol=1.5)


def test_periodic_peaks_with_a_hint_does_not_split_vertebrae_at_mid_body_peaks():
    from diffam.localize.periodicity import periodic_peaks

    s = np.arange(200.0)
    discs = np.arange(20.0, 190.0, 36.0)
    profile = sum(np.exp(-0.5 * ((s - t) / 2.5) ** 2) for t in discs)
    # A bright line across every body (the folds of a badly straightened
    # image, or a sclerotic band): as strong as the discs, half a period away.
    profile += sum(0.9 * np.exp(-0.5 * ((s - t - 18.0) / 2.5) ** 2) for t in discs[:-1])
    split = periodic_peaks(profile, 1.0, period_mm=(16.0, 48.0))
    assert len(split) > len(discs)  # without a prior every peak is a disc
    peaks = periodic_peaks(
        profile, 1.0, period_mm=(16.0, 48.0), expected_mm=np.full(200, 37.0), prior=2.0
    )
    np.testing.assert_allclose(peaks, discs, atol=1.5)


def test_periodic_peaks_with_a_hint_keeps_a_disc_a_quarter_short_of_the_typical_period():
    from diffam.localize.periodicity import periodic_peaks

    # The 40 mm DICOM series hinted as T12 (typical period 31 mm): its T12/L1
    # disc is one peak, its T11/T12 disc two endplate peaks, and the period
    # search keeps the lower one, 20 mm up. The prior must not drop that disc.
    s = np.arange(40.0)
    profile = np.exp(-0.5 * ((s - 7.0) / 3.0) ** 2) + 0.7 * np.exp(-0.5 * ((s - 27.0) / 2.0) ** 2)
    peaks = periodic_peaks(
        profile, 1.0, period_mm=(16.0, 40.0), expected_mm=np.full(40, 31.2), prior=2.0
    )
    np.testing.assert_allclose(peaks, [7, 27], atol=1.0)


def test_endplate_profile_sees_no_plate_where_the_scan_ends():
    from diffam.localize.detection import Straightened, endplate_profile

    m, v, u = 80, np.arange(-30.0, 11.0), np.arange(-10.0, 11.0)
    array = np.full((m, len(v), len(u)), 300.0, dtype=np.float32)  # uniform bone
    array[50:52] = 900.0  # one endplate
    array[68:70] = 900.0  # the cortex where the scan cuts through it
    inside = np.ones(array.shape, dtype=bool)
    inside[70:] = False  # the scan stops here: fill value beyond
    array[70:] = -1024.0
    st = Straightened(array, v, u, np.repeat(np.eye(3)[None], m, 0), inside)
    plates, _ = endplate_profile(st, np.zeros(m))
    assert plates[48:54].max() > 300.0
    assert np.abs(plates[60:]).max() == 0.0  # the cut cortex is no endplate
    blind = Straightened(array, v, u, st.frames, None)
    assert endplate_profile(blind, np.zeros(m))[0][66:70].max() > 300.0  # what it guards against



def test_straighten_keeps_the_edge_value_within_half_a_voxel_of_the_scans_face():
    """A scan's field of view reaches half a voxel past its outer voxel centres;
    bone cut by the face must not be blended there with the fill (air)."""
    from diffam.localize.centerline import Centerline
    from diffam.localize.detection import straighten

    spacing = 3.0  # a 3 mm scan: its last half voxel is 1.5 mm of the column
    array = np.full((10, 20, 20), 300.0, dtype=np.float32)  # (k, j, i): bone everywhere
    volume = Volume(array, np.full(3, spacing), np.zeros(3), np.eye(3))
    z = np.arange(-4.0, 31.0)  # the face's voxel centres at z = 0 and 27 mm
    points = np.stack([np.full(len(z), 30.0), np.full(len(z), 30.0), z], axis=1)
    tangents = np.repeat(np.array([[0.0, 0.0, 1.0]]), len(z), axis=0)
    st = straighten(volume, Centerline(points, tangents, z - z[0]), u_half_mm=3.0,
                    v_range_mm=(-3.0, 3.0))
    centre = st.array[:, 3, 3]
    margin = (z >= -0.5 * spacing) & (z <= 27.0 + 0.5 * spacing)
    np.testing.assert_allclose(centre[margin], 300.0)  # the old blend: 300 -> -362 at 1 mm out
    assert (centre[~margin] == -1024.0).all() and not st.inside[~margin].any()


def _crop_section(m=120, seen=slice(50, 70)):
    """Straightened crop: a body in front of the curve, the canal 26 mm behind, the arch behind it."""
    from diffam.localize.detection import Straightened

    v, u = np.arange(-70.0, 51.0), np.arange(-20.0, 21.0)
    section = np.full((len(v), len(u)), 40.0, dtype=np.float32)  # soft tissue
    section[(v >= -10) & (v <= 18)] = 250.0  # body, around the curve (bone centre of mass)
    section[(v >= 34) & (v <= 44)] = 600.0  # arch
    array = np.full((m, len(v), len(u)), -1024.0, dtype=np.float32)
    inside = np.zeros(array.shape, dtype=bool)
    array[seen], inside[seen] = section, True
    return Straightened(array, v, u, np.repeat(np.eye(3)[None], m, 0), inside)


def test_posterior_wall_finds_the_canal_of_a_crop_far_behind_the_curve():
    """A 20 mm crop on a 120 mm curve: only the rows in the scan locate the canal."""
    from diffam.localize.detection import posterior_wall

    st = _crop_section()
    canal, wall = posterior_wall(st)
    assert np.all(np.abs(canal[52:68] - 26.0) <= 4.0)  # the dark band between body and arch
    assert np.all(np.abs(wall[52:68] - 18.0) <= 3.0)  # the back of the body


def test_filled_bodies_fill_the_cancellous_interior_but_not_the_canal():
    from diffam.localize.detection import _filled_bodies

    v, u = np.arange(-40.0, 41.0), np.arange(-20.0, 21.0)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    body_ring = np.abs(np.hypot(vv + 15, uu) - 12) <= 1.5  # cortex only
    canal_ring = np.abs(np.hypot(vv - 15, uu) - 8) <= 1.5  # arch around the canal
    dense = (body_ring | canal_ring)[None]
    filled = _filled_bodies(dense, v, np.array([0.0]))[0]
    assert filled[(np.hypot(vv + 15, uu) < 10)].all()  # the body is solid
    assert not filled[(np.hypot(vv - 15, uu) < 6)].any()  # the canal stays empty


def test_an_end_vertebra_cut_by_the_face_is_placed_on_its_own_bone_not_on_ribs_beside_it():
    """The chest CT's C6: a wedge of its body under the top face, with the first
    ribs and the clavicles in its planes. All bone within the radius put it 19-23 mm
    forward and down; only the bone connected to the column's midline strip counts."""
    from diffam.localize.centerline import Centerline
    from diffam.localize.detection import Straightened, _vertebra_point

    m, v, u = 40, np.arange(-70.0, 51.0), np.arange(-80.0, 81.0)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    section = np.full((len(v), len(u)), 30.0, dtype=np.float32)
    wedge = (vv >= -18.0) & (vv <= -6.0) & (np.abs(uu) <= 10.0)  # the cut body, 8 rows
    ribs = (np.abs(vv + 20.0) <= 5.0) & (np.abs(uu) >= 16.0) & (np.abs(uu) <= 40.0)
    array = np.repeat(section[None], m, axis=0)
    array[:, ribs] = 600.0
    array[20:28, wedge] = 400.0
    z = np.arange(float(m))
    points = np.stack([np.zeros(m), np.zeros(m), z], axis=1)
    centerline = Centerline(points, np.repeat(np.array([[0.0, 0.0, 1.0]]), m, 0), z)
    st = Straightened(array, v, u, np.repeat(np.eye(3)[None], m, 0), None)
    wall = np.full(m, -5.0)
    found = _vertebra_point(st, centerline, wall, 20.0, 40.0, end=True)
    # LPS: v is posterior (+y), u is left (+x) in the identity frame.
    np.testing.assert_allclose(found, [0.0, -12.0, 23.5], atol=0.6)
    pulled = _vertebra_point(st, centerline, wall, 20.0, 40.0)  # a whole vertebra: all bone
    assert np.hypot(pulled[1] + 12.0, pulled[2] - 23.5) > 5.0


def test_expected_periods_walk_level_by_level_from_the_hinted_end():
    from diffam.localize.periodicity import expected_periods, typical_period_mm

    l5, l4, l3 = (typical_period_mm(v) for v in (24, 23, 22))
    assert 35.0 < l5 < 40.0 and typical_period_mm(8) < 22.0  # lumbar against T1
    up = expected_periods(100, 1.0, 24, from_inferior=True)
    assert up[0] == l5 and up[int(l5) + 1] == l4 and up[int(l5 + l4) + 1] == l3
    down = expected_periods(100, 1.0, 22, from_inferior=False)
    assert down[-1] == l3 and down[-int(l3) - 2] == l4


def test_centerline_ends_stay_straight_and_frames_turn_slowly():
    # A straight, inclined column: point reflection at the ends keeps it straight.
    z = np.arange(0.0, 120.0, 2.0)
    line = np.stack([0.3 * z, -0.2 * z, z], 1)
    cl = fit_centerline(line)
    direction = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    np.testing.assert_allclose(
        cl.tangents, np.repeat(direction[None], len(cl.tangents), 0), atol=1e-3
    )
    offsets = cl.points - line[0]
    off_line = offsets - (offsets @ direction)[:, None] * direction
    assert np.abs(off_line).max() < 0.05
    # A column that zigzags 5 mm between pedicle and disc levels: the
    # straightening frames (tangents) must not turn faster than ~1.5 deg/mm,
    # or the bodies 40 mm in front of the curve fold onto themselves.
    zig = np.stack([np.zeros_like(z), 5.0 * np.sign(np.sin(2 * np.pi * z / 30.0)), z], 1)
    cl = fit_centerline(zig)
    turn = np.degrees(np.arccos(np.clip((cl.tangents[1:] * cl.tangents[:-1]).sum(1), -1, 1)))
    assert turn.max() < 1.5


def test_score_localization_follows_the_verse_definition():
    from diffam.evaluation.localization import score_localization

    true = {20: np.array([0.0, 0, 0]), 21: np.array([0.0, 0, 30])}
    pred = {20: np.array([0.0, 0, 4]), 21: np.array([0.0, 0, 14])}  # 21 is closer to 20's truth
    score = score_localization(pred, true)
    assert score.identified == [20]
    assert score.identification_rate == 0.5
    assert score.median_error_mm == pytest.approx(10.0)


def test_wall_to_centroid_offset_is_computed_from_a_template():
    from diffam.core.template import load_template
    from diffam.localize.template_calibration import wall_to_centroid_offset

    offset = wall_to_centroid_offset(load_template("lumbar"))
    assert 0.0 <= offset <= 15.0  # the constant in use is reported against it


def _score_chest(shared_data, **hints):
    """Localise the shared chest CT; score against its complete labelled vertebrae."""
    from diffam.core.centroids import centroids_from_label_map
    from diffam.core.labels import totalsegmentator_to_verse
    from diffam.evaluation.localization import complete_labels, score_localization

    folder = shared_data / "ct" / "chest_t1_l2"
    labels = read_image(folder / "labels_totalsegmentator.nii.gz")
    true = centroids_from_label_map(labels, "totalsegmentator")
    complete = complete_labels(labels.with_array(totalsegmentator_to_verse(labels.array)))
    loc = localize_vertebrae(read_image(folder / "ct.nii.gz"), **hints)
    return loc, score_localization(loc.centroids, true, evaluate=complete)


@pytest.mark.slow
def test_chest_scan_with_hint_is_localised(shared_data):
    """Contrast chest CT (low-density bone): every complete vertebra T1-L1 identified."""
    loc, score = _score_chest(shared_data, hint_lowest="L3")  # L3: cut, but in view
    assert "levels.lowest=L3" in loc.naming
    assert score.identification_rate >= 0.9
    assert score.median_error_mm <= 5.5  # measured 5.0 mm


@pytest.mark.slow
def test_chest_scan_is_named_from_its_ribs(shared_data):
    """No hint: the lowest rib-bearing vertebra names the levels (T12); T1-L1 identified."""
    loc, score = _score_chest(shared_data)
    assert "rib" in loc.naming and "T12" in loc.naming
    assert score.identification_rate >= 0.9
    assert score.median_error_mm <= 5.5  # measured 5.0 mm


@pytest.mark.slow
def test_phantom_is_localised():
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.template import load_template
    from diffam.evaluation.localization import score_localization

    levels = ("L1", "L2", "L3", "L4", "L5")
    phantom = make_phantom(
        load_template("lumbar"), PhantomConfig(levels=levels, spacing_mm=(1.5,) * 3)
    )
    loc = localize_vertebrae(phantom.image, hint_lowest="L5")
    score = score_localization(loc.centroids, phantom.centroids)
    assert score.identification_rate >= 0.9
    assert score.median_error_mm <= 5.0


@pytest.mark.slow
def test_localisation_does_not_depend_on_the_voxel_axes():
    """The same anatomy on an LPS grid, a RAS-ordered grid and an oblique grid."""
    from scipy.spatial.transform import Rotation

    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.template import load_template
    from diffam.evaluation.localization import score_localization

    template = load_template("lumbar")
    levels = ("L1", "L2", "L3", "L4", "L5")
    ras = np.diag([-1.0, -1.0, 1.0])
    oblique = Rotation.from_euler("zx", [25.0, 10.0], degrees=True).as_matrix()
    found = []
    for direction in (None, ras, oblique):
        config = PhantomConfig(
            levels=levels,
            spacing_mm=(1.5, 1.5, 1.5),
            seed=1,
            direction=None if direction is None else tuple(map(tuple, direction)),
        )
        phantom = make_phantom(template, config)
        loc = localize_vertebrae(phantom.image, hint_lowest="L5")
        score = score_localization(loc.centroids, phantom.centroids)
        assert score.identification_rate == 1.0, direction
        assert score.median_error_mm <= 5.0, direction
        found.append(np.array([loc.centroids[k] for k in sorted(loc.centroids)]))
    # The working grid is always LPS-aligned; what differs is its sub-voxel
    # placement, which moves the detected discs by a few mm (measured: up to
    # 8 mm between grids; median errors against the truth 2.9-4.3 mm at seed 1,
    # 0.8-3.7 mm at seeds 0, 2 and 3).
    for other in found[1:]:
        assert np.linalg.norm(other - found[0], axis=1).max() < 10.0


def test_name_from_ribs_anchors_t12_at_the_lowest_rib_cage_level():
    from diffam.localize.naming import name_from_ribs

    both = {"left", "right"}
    carried = {n: both for n in range(2, 12)}
    ids, how = name_from_ribs(carried, 14)
    assert ids[2] == 19 and ids[0] == 21 and ids[-1] == 8  # L2, L1, T12 ... T1
    assert "T12" in how
    # A lone rib-like component below the cage is not the anchor.
    ids, _ = name_from_ribs({0: {"left"}, **carried}, 14)
    assert ids[2] == 19
    # Ribs from the lowest vertebra seen: they may go on below the scan.
    assert name_from_ribs({n: both for n in range(0, 5)}, 6) is None
    assert name_from_ribs({}, 6) is None
    # One rib-free vertebra at the lower end (a T2-T10 window: T11's ribs run out of
    # view below its body) is not enough; nor is a rib-free one the scan cuts.
    assert name_from_ribs({n: both for n in range(1, 10)}, 11) is None
    assert name_from_ribs(carried, 14, partial={1}) is None
    assert name_from_ribs(carried, 14, partial={0})[0][2] == 19


def _rib_phantom(rib_z_mm, side_signs=(1, -1)):
    """A straight column along z with bone bars leaving it sideways at ``rib_z_mm``."""
    h = 2.0
    shape = (120, 100, 140)  # (z, y, x), 2 mm
    array = np.full(shape, 30.0, np.float32)
    k, j, i = np.indices(shape)
    y, x = (j - 50) * h, (i - 70) * h
    array[(x**2 + y**2) <= 15.0**2] = 400.0  # the column
    for z in rib_z_mm:
        bar = (np.abs(k * h - z) <= 4.0) & (np.abs(y - 10.0) <= 4.0)
        for sign in side_signs:
            array[bar & (sign * x >= 14.0) & (sign * x <= 110.0)] = 1000.0  # cortical bone
    return Volume(array, [h] * 3, [0.0, 0.0, 0.0])


def test_find_ribs_finds_bars_on_both_sides_and_not_short_processes():
    from diffam.localize.centerline import Centerline
    from diffam.localize.ribs import find_ribs

    volume = _rib_phantom([100.0, 140.0, 180.0])
    volume.array[
        (np.abs(np.indices(volume.array.shape)[0] * 2.0 - 60.0) <= 4.0)
        & (np.abs((np.indices(volume.array.shape)[2] - 70) * 2.0) <= 50.0)
        & (np.abs((np.indices(volume.array.shape)[1] - 60) * 2.0) <= 4.0)
    ] = 1000.0
    z = np.arange(0.0, 238.0, 1.0)
    points = np.stack([np.full_like(z, 140.0), np.full_like(z, 100.0), z], 1)  # the column axis
    tangents = np.tile([0.0, 0.0, 1.0], (len(z), 1))
    ribs = find_ribs(volume, Centerline(points, tangents, z))
    found = sorted((rib.side, round(rib.medial_s_mm / 10) * 10) for rib in ribs)
    # x = +L in LPS: the bars with x > 0 are on the patient's left.
    assert found == [
        ("left", 100),
        ("left", 140),
        ("left", 180),
        ("right", 100),
        ("right", 140),
        ("right", 180),
    ]
