"""device=cuda without a GPU stops at once with a message that says what to do."""

import numpy as np
import pytest
import torch

from diffam.core.config import SegmentationConfig
from diffam.core.volume import Volume
from diffam.fit.pipeline import SegmentationError, resolve_device, segment


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cuda_without_a_gpu_is_refused(no_gpu):
    for name in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(SegmentationError, match="no CUDA GPU is available; use device=cpu"):
            resolve_device(name)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_segment_refuses_cuda_before_any_work(no_gpu, monkeypatch):
    import diffam.fit.pipeline as pipeline

    def no_template(*args, **kwargs):
        raise AssertionError("the template was loaded before the device was checked")

    monkeypatch.setattr(pipeline, "load_template", no_template)
    image = Volume(np.zeros((8, 8, 8), np.float32), np.ones(3), np.zeros(3), np.eye(3))
    with pytest.raises(SegmentationError, match="device=cuda"):
        segment(image, SegmentationConfig(device="cuda"), centroids={22: np.full(3, 4.0)})
