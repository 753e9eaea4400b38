"""Centroid kinds: body centres of template meshes and label maps, and placement by either."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffam.core.body_centre import body_centres_from_label_map, template_body_centres
from diffam.core.centroids import CentroidError, centroids_from_label_map, centroids_kind
from diffam.core.config import SegmentationConfig
from diffam.core.image import read_image
from diffam.core.template import load_template
from diffam.fit.model import initial_placement, template_centres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lumbar():
    return load_template("spine").subset(["L1", "L2", "L3"])


def test_template_body_centre_is_the_frame_origin_and_anterior_of_the_solid(lumbar):
    body = template_body_centres(lumbar)
    for v, b in zip(lumbar.vertebrae, body):
        # the spine template's frames are built with their origin at the body centre
        assert np.linalg.norm(b - v.frame[:3, 3]) < 2.5
        # the whole solid's centroid lies 10-16 mm posterior (+y in the frame)
        local = (v.centroid() - b) @ v.frame[:3, :3]
        assert 10.0 < local[1] < 16.0 and abs(local[0]) < 1.0


def test_placement_puts_the_named_centre_on_the_target(lumbar):
    import torch

    config = SegmentationConfig()
    target = template_centres(lumbar, "vertebra") + np.array([3.0, -4.0, 5.0])
    for kind in ("vertebra", "body"):
        placement = initial_placement(lumbar, target, config, kind=kind)
        source = template_centres(lumbar, kind)
        moved = placement.apply(torch.as_tensor(source[:, None, :])).numpy()[:, 0]
        assert np.allclose(moved, target, atol=1e-6)
    # given body centres, the whole vertebra sits posterior of them
    placement = initial_placement(lumbar, target, config, kind="body")
    whole = template_centres(lumbar, "vertebra")
    moved = placement.apply(torch.as_tensor(whole[:, None, :])).numpy()[:, 0]
    assert np.all(moved[:, 1] - target[:, 1] > 8.0)  # LPS +y is posterior


def test_centroids_kind_by_format_and_setting():
    assert centroids_kind("a_ctd.json") == "body"
    assert centroids_kind("a.csv") == "vertebra"
    assert centroids_kind("a.csv", "body") == "body"
    assert centroids_kind("a.json", "vertebra") == "vertebra"
    with pytest.raises(CentroidError, match="centroids_kind"):
        centroids_kind("a.csv", "centre")


@pytest.mark.shared_data
def test_verse_body_centres_lie_anterior_of_the_vertebra_centres(shared_data):
    labels = read_image(shared_data / "ct/verse005_l1_l5_crop/labels_verse.nii.gz")
    whole = centroids_from_label_map(labels)
    body = body_centres_from_label_map(labels)
    assert sorted(body) == [20, 21, 22, 23, 24]
    for k in body:
        offset = whole[k] - body[k]
        # VerSe: body centres are 11-15 mm anterior of the whole-vertebra centre (LPS: -y)
        assert 8.0 < offset[1] < 17.0, (k, offset)
        assert abs(offset[0]) < 3.0


@pytest.mark.shared_data
def test_make_centroids_writes_either_kind(shared_data, tmp_path):
    labels = shared_data / "ct/verse005_l1_l5_crop/labels_verse.nii.gz"
    from diffam.core.centroids import read_centroids

    volume = read_image(labels)
    out = {}
    for name, kind in [("v.csv", "auto"), ("b_ctd.json", "auto"), ("b.csv", "body"),
                       ("v.json", "vertebra")]:
        proc = subprocess.run([sys.executable, str(ROOT / "scripts/make_centroids.py"),
                               f"labels={labels}", f"output={tmp_path / name}", f"kind={kind}"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        out[name] = read_centroids(tmp_path / name, volume)
    for k in out["v.csv"]:
        assert np.allclose(out["v.csv"][k], out["v.json"][k], atol=0.01)
        assert np.allclose(out["b.csv"][k], out["b_ctd.json"][k], atol=0.01)
        assert out["v.csv"][k][1] - out["b.csv"][k][1] > 8.0


def test_canal_posterior_wall_is_the_start_of_the_run_in_front_of_the_canal():
    from diffam.core.body_centre import canal_posterior_wall

    step = 0.5
    coordinates = np.arange(60) * step + step / 2  # bins along the anterior axis, mm
    occupied = np.zeros(60, bool)
    occupied[0:10] = True  # arch (posterior)
    occupied[30:60] = True  # body, its posterior wall at bin 30 (15 mm)
    assert canal_posterior_wall(occupied, coordinates, step) == pytest.approx(15.0)
    occupied[20] = True  # a one-bin speck inside the canal is not bone closing it
    assert canal_posterior_wall(occupied, coordinates, step) == pytest.approx(15.0)
    occupied[12:30] = True  # no gap left: no canal
    assert canal_posterior_wall(occupied, coordinates, step) is None
    occupied[26:30] = False  # a 2 mm gap is shorter than the canal (3 mm)
    assert canal_posterior_wall(occupied, coordinates, step) is None
