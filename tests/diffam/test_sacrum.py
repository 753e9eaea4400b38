"""The sacrum anchor: phantoms with a sacrum and pelvis, the cue, and its naming with the ribs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from diffam.core.volume import Volume
from diffam.localize import LocalizationError, localize_vertebrae
from diffam.localize.naming import SACRAL, name_vertebrae
from diffam.localize.sacrum import Sacrum

LUMBAR = ("L1", "L2", "L3", "L4", "L5")


@pytest.fixture(scope="module")
def lumbar_template():
    from diffam.core.template import load_template

    return load_template("lumbar")


def _phantom(template, **options):
    from diffam.authoring.phantom import PhantomConfig, make_phantom

    return make_phantom(template, PhantomConfig(levels=LUMBAR, spacing_mm=(3.0,) * 3, **options))


def test_lumbar_phantom_with_sacrum_and_pelvis_is_named_without_a_hint(lumbar_template):
    from diffam.evaluation.localization import score_localization

    phantom = _phantom(lumbar_template, sacrum=True, pelvis=True)
    assert (phantom.labels.array == SACRAL).sum() > 0  # the sacrum is labelled 26
    loc = localize_vertebrae(phantom.image)
    assert sorted(loc.centroids) == [20, 21, 22, 23, 24], loc.naming
    assert "sacrum" in loc.naming and "L5" in loc.naming
    score = score_localization(loc.centroids, phantom.centroids)
    assert score.identification_rate == 1.0
    # Measured 5.4 mm (3.6 mm for the same spine without the sacrum, with the hint L5): the
    # column now runs on down the sacrum, and the discs found above L4 sit 8-10 mm high.
    assert score.median_error_mm <= 6.0
    # A hint that agrees changes nothing; the sacral segments are dropped with it too.
    hinted = localize_vertebrae(phantom.image, hint_lowest="L5")
    assert sorted(hinted.centroids) == [20, 21, 22, 23, 24]


def test_thick_discs_whose_plates_blur_at_3_mm_do_not_split_the_lumbar_bodies(lumbar_template):
    from diffam.evaluation.localization import score_localization

    # Seed 3 (the bench's 3 mm case is seed 2): L4's upper plate barely shows, and the
    # period search took bodies' plates for discs: 2 of 5 named right, L1-L3 split. The
    # discs' dark gaps (35-60 HU between 250-300 HU bodies) now count as discs too.
    phantom = _phantom(lumbar_template, sacrum=True, pelvis=True, seed=3)
    loc = localize_vertebrae(phantom.image)
    assert sorted(loc.centroids) == [20, 21, 22, 23, 24], loc.naming
    score = score_localization(loc.centroids, phantom.centroids)
    assert score.identification_rate == 1.0
    assert score.median_error_mm <= 4.0  # measured 1.7 mm


def test_lumbar_phantom_without_the_ilia_or_the_sacrum_still_asks_for_a_hint(lumbar_template):
    # Without the ilia the alae (52 mm) reach no farther than wide transverse processes.
    for options in ({}, {"sacrum": True}):
        phantom = _phantom(lumbar_template, **options)
        with pytest.raises(LocalizationError, match="levels.lowest"):
            localize_vertebrae(phantom.image)


def test_sacrum_options_leave_the_default_phantom_unchanged(lumbar_template):
    from diffam.authoring.phantom import PhantomConfig, make_phantom

    config = PhantomConfig(levels=("L4", "L5"), spacing_mm=(3.0,) * 3)
    plain = make_phantom(lumbar_template, config)
    assert not (plain.labels.array == SACRAL).any()
    with_sacrum = make_phantom(lumbar_template, PhantomConfig(
        levels=("L4", "L5"), spacing_mm=(3.0,) * 3, sacrum=True))
    # The sacrum lies below L5 (LPS z up) and its label map holds it.
    z = with_sacrum.labels.index_to_world(
        np.argwhere(with_sacrum.labels.array == SACRAL)[:, ::-1].astype(float))[:, 2]
    assert np.median(z) < with_sacrum.centroids[24][2] - 30.0


def _sacrum(lowest_lumbar: int, confidence: float = 1.0) -> Sacrum:
    return Sacrum(lowest_lumbar, 0.0, 40.0, (110.0, 110.0), confidence)


def _cage(lowest: int, top: int) -> dict[int, set[str]]:
    return {n: {"left", "right"} for n in range(lowest, top + 1)}


def test_sacrum_names_l5_above_it_and_drops_the_sacral_segments():
    ids, how = name_vertebrae(7, {}, set(), _sacrum(2))
    assert ids == [SACRAL, SACRAL, 24, 23, 22, 21, 20]
    assert "sacrum" in how and "2 sacral segment(s)" in how
    with pytest.raises(LocalizationError, match="levels.lowest"):
        name_vertebrae(7, {}, set(), None)


def test_ribs_and_sacrum_agree_or_name_a_transitional_l6():
    # Five lumbar vertebrae between the sacrum and the lowest ribs: they agree.
    ids, how = name_vertebrae(9, _cage(6, 8), set(), _sacrum(1))
    assert ids == [SACRAL, 24, 23, 22, 21, 20, 19, 18, 17]
    assert "agrees" in how
    # Six: the lowest is L6 (VerSe id 25), reported as a transitional spine.
    ids, how = name_vertebrae(9, _cage(6, 8), set(), _sacrum(0))
    assert ids == [25, 24, 23, 22, 21, 20, 19, 18, 17]
    assert "transitional" in how and "L6" in how


def test_disagreeing_anchors_are_logged_and_the_more_confident_wins(caplog):
    # Four vertebrae between them (a window whose lowest ribs are not T12's, or a
    # false sacrum): the more confident anchor names the levels.
    one_sided = {n: {"left"} for n in range(5, 9)}  # rib confidence 0.5
    with caplog.at_level(logging.WARNING, logger="diffam.localize.naming"):
        ids, how = name_vertebrae(9, one_sided, set(), _sacrum(1, confidence=0.9))
    assert ids[1] == 24 and "disagree" in how and "sacrum were followed" in how
    assert any("disagree" in r.message for r in caplog.records)
    ids, how = name_vertebrae(9, _cage(5, 8), set(), _sacrum(1, confidence=0.9))
    assert ids[5] == 19 and "ribs were followed" in how  # full cage: confidence 1.0
    # A hint is followed and the sacrum's other opinion said.
    ids, how = name_vertebrae(6, {}, set(), _sacrum(1), hint_lowest="L4")
    assert ids == [SACRAL, 23, 22, 21, 20, 19] and "the sacrum suggests L5" in how


def _section_volume(with_ilia: bool, rib: bool = False) -> Volume:
    """A straight column along z (2 mm grid) with alae and ilia, or with a rib pair."""
    h = 2.0
    shape = (90, 100, 140)  # (z, y, x)
    array = np.full(shape, 30.0, np.float32)
    k, j, i = np.indices(shape)
    z, y, x = k * h, (j - 50) * h, (i - 70) * h
    array[(x**2 + y**2) <= 15.0**2] = 400.0  # the column (bodies)
    if rib:
        array[(np.abs(z - 90.0) <= 5.0) & (np.abs(y) <= 5.0) & (np.abs(x) <= 120.0)] = 1000.0
    else:
        ala = (z <= 60.0) & (np.abs(y) <= 15.0) & (np.abs(x) <= 52.0)
        array[ala] = 300.0
        if with_ilia:
            array[(z <= 90.0) & (np.abs(y) <= 20.0) & (np.abs(x) >= 55.0)
                  & (np.abs(x) <= 130.0)] = 700.0
    return Volume(array, [h] * 3, [0.0, 0.0, 0.0])


def _straight(volume: Volume):
    from diffam.localize.centerline import Centerline
    from diffam.localize.detection import Detection

    s = np.arange(0.0, 178.0, 1.0)
    points = np.stack([np.full_like(s, 140.0), np.full_like(s, 100.0), s], 1)
    centerline = Centerline(points, np.tile([0.0, 0.0, 1.0], (len(s), 1)), s)
    bounds = np.array([[40.0, 75.0], [75.0, 110.0], [110.0, 145.0], [145.0, 178.0]])
    empty = np.zeros(0)
    detection = Detection(empty, bounds, bounds.mean(1), np.zeros(4, bool), np.ones(4),
                          np.zeros(len(s)), np.zeros((4, 3)), np.full(len(s), 15.0))
    return centerline, detection


def test_find_sacrum_needs_alae_joined_to_the_ilia_and_no_rib_is_one():
    from diffam.localize.sacrum import find_sacrum

    volume = _section_volume(with_ilia=True)
    sacrum = find_sacrum(volume, *_straight(volume))
    assert sacrum is not None and sacrum.lowest_lumbar == 1  # centre 92.5 above the top, 60
    assert abs(sacrum.top_mm - 60.0) <= 2.0 and sacrum.confidence == pytest.approx(1.0)
    for volume in (_section_volume(with_ilia=False), _section_volume(False, rib=True)):
        assert find_sacrum(volume, *_straight(volume)) is None


def _slab(volume: Volume, half_mm: float) -> Volume:
    """``volume`` cut to ``|x - midline| <= half_mm`` (a sagittal slab, as VerSe crops are)."""
    x = volume.index_to_world(np.c_[np.arange(volume.shape_ijk[0]), np.zeros((volume.shape_ijk[0], 2))])
    keep = np.nonzero(np.abs(x[:, 0] - np.median(x[:, 0])) <= half_mm)[0]
    origin = volume.index_to_world(np.array([keep[0], 0, 0], float))
    return Volume(np.ascontiguousarray(volume.array[:, :, keep[0]:keep[-1] + 1]),
                  volume.spacing.copy(), origin, volume.direction.copy(), volume.source)


def test_alae_that_run_into_the_sides_of_a_slab_are_a_sacrum_without_the_ilia():
    from diffam.localize.sacrum import CUT_CONFIDENCE, find_sacrum

    # A 92 mm slab: the alae (52 mm) run into its sides, the ilia are out of view.
    volume = _slab(_section_volume(with_ilia=True), 46.0)
    sacrum = find_sacrum(volume, *_straight(volume))
    assert sacrum is not None and sacrum.lowest_lumbar == 1 and sacrum.cut
    assert abs(sacrum.top_mm - 60.0) <= 2.0
    # Halved for the ilia not seen; the slab's two sides lie 46 and 44 mm from the curve.
    assert 0.9 * CUT_CONFIDENCE <= sacrum.confidence <= CUT_CONFIDENCE
    assert "cut by the scan's sides" in sacrum.describe()
    # Sides that lie across the sacro-iliac joint space, 4 mm past the alae's end (52 mm):
    # the bone may go on past them, as it does past a joint's dark voxel (3 mm seed 5 of
    # the bench's phantom: the blurred edge voxels broke the run into pieces under 16 mm).
    volume = _slab(_section_volume(with_ilia=False), 56.0)
    sacrum = find_sacrum(volume, *_straight(volume))
    assert sacrum is not None and sacrum.lowest_lumbar == 1 and sacrum.cut
    # A rib pair cut by the same sides is a bar, not a mass; and alae that end inside
    # the scan, well short of its sides, without ilia beside them are not taken for a
    # sacrum (as before).
    for volume in (_slab(_section_volume(False, rib=True), 46.0),
                   _slab(_section_volume(with_ilia=False), 66.0), _section_volume(with_ilia=False)):
        assert find_sacrum(volume, *_straight(volume)) is None


def test_a_lumbar_spine_on_a_sacrum_in_a_100_mm_slab_is_named_without_a_hint(lumbar_template):
    from diffam.evaluation.localization import score_localization

    # The bench's "100 mm slab" (2 mm, seed 1) was named three levels off with the hint L5
    # (0 of 5): the sacral segments were counted as lumbar. This is the 3 mm phantom, seed 0.
    phantom = _phantom(lumbar_template, sacrum=True, pelvis=True)
    image = _slab(phantom.image, 50.0)
    loc = localize_vertebrae(image)
    assert sorted(loc.centroids) == [20, 21, 22, 23, 24], loc.naming
    assert "cut by the scan's sides" in loc.naming
    score = score_localization(loc.centroids, phantom.centroids)
    assert score.identification_rate == 1.0


def _thoracolumbar(**options):
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.template import load_template

    return make_phantom(load_template("spine"), PhantomConfig(
        levels=("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"), spacing_mm=(3.0,) * 3,
        sacrum=True, pelvis=True, ribs=("T10", "T11", "T12"), **options))


def test_six_lumbar_vertebrae_between_the_ribs_and_the_sacrum_name_an_l6():
    from diffam.evaluation.localization import score_localization

    phantom = _thoracolumbar(lumbar_six=True)
    assert 25 in phantom.centroids  # the copy of L5 below it, VerSe id 25
    loc = localize_vertebrae(phantom.image)
    assert sorted(loc.centroids) == list(range(17, 26)), loc.naming  # T10-L6
    assert "transitional" in loc.naming and "L6" in loc.naming
    score = score_localization(loc.centroids, phantom.centroids)
    assert score.identification_rate == 1.0  # measured 9 of 9, median 1.8 mm


@pytest.mark.slow
def test_ribs_and_sacrum_agree_on_a_standard_thoracolumbar_phantom():
    phantom = _thoracolumbar()
    loc = localize_vertebrae(phantom.image)
    assert sorted(loc.centroids) == list(range(17, 25)), loc.naming  # T10-L5, no L6
    assert "agrees" in loc.naming
