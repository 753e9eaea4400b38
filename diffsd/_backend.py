"""Choice of kernel backend and hand-over of torch tensors to Numba kernels."""

from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "cpu", "cuda")


def cuda_simulator_enabled() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that runs on tensors of ``device``: ``"cpu"`` or ``"cuda"``.

    ``"cuda"`` on CPU tensors is allowed under Numba's CUDA simulator only,
    so that the CUDA kernels can be tested on machines without a GPU.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "cuda" if device.type == "cuda" else "cpu"
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(
            f"backend='cpu' needs CPU tensors, got tensors on {device}; move them with .cpu() "
            "or use backend='auto'"
        )
    if backend == "cuda" and device.type != "cuda" and not cuda_simulator_enabled():
        raise ValueError(
            f"backend='cuda' needs CUDA tensors, got tensors on {device}; move them with "
            ".cuda(), or set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels in the simulator"
        )
    return backend


def kernels(backend: str):
    """The kernel module of a backend (imported lazily: CUDA may be absent)."""
    if backend == "cpu":
        from diffsd import _cpu_kernels

        return _cpu_kernels
    from diffsd import _cuda_kernels

    return _cuda_kernels


def as_kernel_array(tensor: torch.Tensor):
    """Zero-copy view of a tensor that Numba kernels of its device accept."""
    tensor = tensor.detach()
    if tensor.is_cuda:
        from numba import cuda

        return cuda.as_cuda_array(tensor)
    return tensor.numpy()


def launch(kernel, count: int, device: torch.device, *args) -> None:
    """Launch a CUDA kernel over ``count`` threads on torch's current stream."""
    from numba import cuda

    from diffsd._cuda_kernels import THREADS_PER_BLOCK, blocks_for

    if device.type == "cuda":
        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        kernel[blocks_for(count), THREADS_PER_BLOCK, stream](*args)
    else:
        kernel[blocks_for(count), THREADS_PER_BLOCK](*args)
