"""diffam: training-free vertebra segmentation of CT with a deformable spine template.

DiffAM (Kim and Park, SPIE Medical Imaging 2024) aligns one triangle mesh per
vertebra to a CT scan by gradient descent: the scan is predicted from the
signed distance of sample points to the meshes through a small learned
appearance function, and shape and appearance are fitted together.

Conventions used throughout the package:
    * World coordinates are LPS millimetres (the ITK/DICOM convention);
      RAS inputs (NIfTI through nibabel) are converted at the edges.
    * Voxel arrays are indexed ``array[k, j, i]`` for ITK index (i, j, k),
      i.e. (Z, Y, X) as SimpleITK returns them.
    * The package never imports Hydra: scripts turn configs into the
      dataclasses of :mod:`diffam.core.config` and call plain functions.
"""

from diffam.core.version import VERSION as __version__  # noqa: F401  (the package's version)

__all__ = ["segment"]


def __getattr__(name: str):
    # The API pulls in torch and the fit; a plain ``import diffam`` stays light.
    if name in ("segment", "Segmentation"):
        from diffam import api

        return getattr(api, name)
    raise AttributeError(f"module 'diffam' has no attribute {name!r}")
