"""``diffam.segment``: the Python API mirrors ``diffam-segment`` and returns the input's kind."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import diffam
from diffam.authoring.phantom import PhantomConfig, make_phantom
from diffam.cli.settings import compose_settings, override_strings
from diffam.core.config import SegmentationConfig, segmentation_config
from diffam.core.template import load_template
from diffam.core.volume import volume_to_nibabel

#: A fit short enough for the default suite; the accuracy is tested elsewhere.
TINY = {"optim": {"iterations": 4, "num_image_points": 500, "num_surface_points": 500,
                  "processing_spacing_mm": 2.0},
        "template": "lumbar", "device": "cpu", "export": {"qc_images": False}}


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(load_template("lumbar"),
                        PhantomConfig(levels=("L2", "L3"), spacing_mm=(2.0, 2.0, 2.0), seed=1))


def test_keyword_options_become_the_cli_overrides():
    assert override_strings({"optim": "fast", "seed": 3}) == ["optim=fast", "seed=3"]
    assert override_strings({"optim": {"iterations": 5}, "template": {"levels": ["L1", "L2"]}}) \
        == ["optim.iterations=5", "template.levels=[L1,L2]"]
    config = segmentation_config(compose_settings("segment", ["optim=fast", "seed=3"]))
    assert config.optim.iterations == 300 and config.seed == 3
    assert config.losses == SegmentationConfig().losses


def test_unknown_option_is_a_clear_error():
    with pytest.raises(ValueError, match="optim"):
        compose_settings("segment", ["optim=warp_speed"])


def test_segment_returns_the_kind_it_was_given_and_writes_nothing(phantom, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    centroids = {level: phantom.centroids[v] for level, v in (("L2", 21), ("L3", 22))}
    out = diffam.segment(phantom.image.to_sitk(), centroids=centroids, **TINY)
    assert isinstance(out.labels, sitk.Image)
    assert out.labels.GetSize() == phantom.image.to_sitk().GetSize()
    assert np.allclose(out.labels.GetOrigin(), phantom.image.origin)
    assert set(out.meshes) == {"L2", "L3"}
    vertices, faces = out.meshes["L2"]
    assert vertices.shape[1] == 3 and faces.shape[1] == 3
    assert set(np.unique(sitk.GetArrayFromImage(out.labels))) <= {0, 21, 22}
    assert out.files == {} and list(tmp_path.iterdir()) == []

    nifti = diffam.segment(volume_to_nibabel(phantom.image), centroids=centroids, **TINY)
    assert isinstance(nifti.labels, nib.Nifti1Image)
    np.testing.assert_allclose(nifti.labels.affine, volume_to_nibabel(phantom.image).affine)


def test_segment_writes_the_cli_folder_when_asked(phantom, tmp_path):
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(phantom.image.to_sitk(), str(path))
    centroids = {21: phantom.centroids[21], 22: phantom.centroids[22]}
    out = diffam.segment(path, centroids, output_dir=tmp_path / "run", **TINY)
    assert (tmp_path / "run" / "labels.nii.gz").exists()
    assert (tmp_path / "run" / "report.json").exists()
    assert out.files["labels"] == tmp_path / "run" / "labels.nii.gz"
    with pytest.raises(FileExistsError):
        diffam.segment(path, centroids, output_dir=tmp_path / "run", **TINY)


def test_bad_option_values_are_refused_before_any_work(phantom):
    from diffam.cli.settings_check import SettingsError

    with pytest.raises(SettingsError, match="optim.iterations"):
        diffam.segment(phantom.image, optim={"iterations": "abc"})
    with pytest.raises(SettingsError, match="export.labels"):
        diffam.segment(phantom.image, export={"labels": "kitten"})
