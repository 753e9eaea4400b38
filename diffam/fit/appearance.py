"""Appearance function f_theta of DiffAM: signed distance -> predicted CT intensity.

A small MLP on a Fourier feature encoding (Tancik et al. 2020) of its scalar
input::

    gamma(d) = [d, sin(2 pi B d), cos(2 pi B d)],   B (n_frequencies,) fixed

Input: signed distance to the spine surface in model units (``unit_mm`` =
64 mm; negative inside). Output: *normalised* intensity
``(HU - intensity_offset) / intensity_scale``; :meth:`AppearanceModel.normalize`
and :meth:`AppearanceModel.denormalize` convert.
"""

from __future__ import annotations

import math

import torch

ACTIVATIONS = {"relu": torch.nn.ReLU, "silu": torch.nn.SiLU}


class AppearanceModel(torch.nn.Module):
    """f_theta: R -> R, Fourier features plus an MLP.

    Args:
        n_frequencies: number of Fourier frequencies (0: raw input only).
        frequency_std: standard deviation of the Gaussian frequencies B, in
            cycles per model unit (8 cycles per 64 mm resolves ~4 mm detail,
            the tail of the Gaussian finer).
        hidden: width of the hidden layers.
        n_hidden_layers: number of hidden layers (>= 1).
        activation: "relu" or "silu".
        intensity_scale: HU per normalised unit (1000: HU / 1000).
        intensity_offset: HU mapped to 0.
        initial_value: initial prediction (normalised), e.g. the normalised
            mean image intensity; the output layer starts with this bias and
            near-zero weights.
        output_weight_gain: factor on the default init of the output weights.

    Frequencies and weights come from torch's global generator, so the
    model is deterministic under ``torch.manual_seed``.
    """

    def __init__(
        self,
        n_frequencies: int = 16,
        frequency_std: float = 8.0,
        hidden: int = 64,
        n_hidden_layers: int = 3,
        activation: str = "silu",
        intensity_scale: float = 1000.0,
        intensity_offset: float = 0.0,
        initial_value: float = 0.0,
        output_weight_gain: float = 0.01,
    ):
        super().__init__()
        if (
            isinstance(n_frequencies, bool)
            or not isinstance(n_frequencies, int)
            or n_frequencies < 0
        ):
            raise ValueError(f"n_frequencies must be an int >= 0, got {n_frequencies!r}")
        if not frequency_std > 0:
            raise ValueError(f"frequency_std must be positive, got {frequency_std!r}")
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be an int >= 1, got {hidden!r}")
        if not isinstance(n_hidden_layers, int) or n_hidden_layers < 1:
            raise ValueError(f"n_hidden_layers must be an int >= 1, got {n_hidden_layers!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not intensity_scale > 0:
            raise ValueError(f"intensity_scale must be positive, got {intensity_scale!r}")
        self.intensity_scale = float(intensity_scale)
        self.intensity_offset = float(intensity_offset)
        self.register_buffer("frequencies", torch.randn(n_frequencies) * float(frequency_std))
        layers: list[torch.nn.Module] = []
        width = 1 + 2 * n_frequencies
        for _ in range(n_hidden_layers):
            layers += [torch.nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        self.hidden_layers = torch.nn.Sequential(*layers)
        self.output = torch.nn.Linear(width, 1)
        with torch.no_grad():
            self.output.weight.mul_(output_weight_gain)
        self.set_output_bias(initial_value)

    def set_output_bias(self, value: float) -> None:
        """Set the output bias (normalised intensity), e.g. to the mean of the image."""
        with torch.no_grad():
            self.output.bias.fill_(float(value))

    def normalize(self, hu: torch.Tensor) -> torch.Tensor:
        """HU -> normalised intensity."""
        return (hu - self.intensity_offset) / self.intensity_scale

    def denormalize(self, value: torch.Tensor) -> torch.Tensor:
        """Normalised intensity -> HU."""
        return value * self.intensity_scale + self.intensity_offset

    def encode(self, signed_distance: torch.Tensor) -> torch.Tensor:
        """Fourier features (..., 1 + 2 n_frequencies) of distances (...,) in model units."""
        d = signed_distance.unsqueeze(-1)
        angle = (2.0 * math.pi) * d * self.frequencies.to(d)
        return torch.cat([d, torch.sin(angle), torch.cos(angle)], dim=-1)

    def forward(self, signed_distance: torch.Tensor) -> torch.Tensor:
        """Predicted normalised intensity (...,) at signed distances (...,) in model units."""
        if not isinstance(signed_distance, torch.Tensor):
            raise TypeError(
                f"signed_distance must be a torch.Tensor, got {type(signed_distance).__name__}"
            )
        if not signed_distance.is_floating_point():
            raise TypeError(f"signed_distance must be floating point, got {signed_distance.dtype}")
        x = self.encode(signed_distance).to(self.output.weight.dtype)
        return self.output(self.hidden_layers(x)).squeeze(-1)
