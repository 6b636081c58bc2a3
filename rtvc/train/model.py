"""The converter network: a causal GRU from input features to the target cepstral envelope.

``features (B, T, F)`` and ``state_in (L, B, H)`` in, ``envelope (B, T, E)`` and ``state_out``
out; the recurrent state is explicit so the exported ONNX model runs one frame per call.
Normalisation (input means/stds, output means/stds) is part of the module, hence of the ONNX
graph: the runtime feeds raw features and reads raw cepstra.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Converter", "RecurrentNet"]


class RecurrentNet(nn.Module):
    """What the converter and the content student share: normalisation buffers (inside the graph),
    a tanh input projection and a GRU (``layers`` x ``hidden``) with an explicit state; the
    subclass adds its ``head``."""

    def __init__(self, n_input: int, n_output: int, *, hidden: int, layers: int) -> None:
        super().__init__()
        self.n_input, self.n_output, self.hidden, self.layers = n_input, n_output, hidden, layers
        self.register_buffer("in_mean", torch.zeros(n_input))
        self.register_buffer("in_std", torch.ones(n_input))
        self.register_buffer("out_mean", torch.zeros(n_output))
        self.register_buffer("out_std", torch.ones(n_output))
        self.proj = nn.Linear(n_input, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)

    def set_normalisation(self, in_mean, in_std, out_mean, out_std) -> None:  # noqa: ANN001
        for name, v in (("in_mean", in_mean), ("in_std", in_std), ("out_mean", out_mean), ("out_std", out_std)):
            getattr(self, name).copy_(torch.as_tensor(v, dtype=torch.float32))

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def recur(self, features: torch.Tensor, state_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The projected input ``z``, the GRU's output ``h`` and its new state."""
        z = torch.tanh(self.proj((features - self.in_mean) / self.in_std))
        h, state_out = self.gru(z, state_in)
        return z, h, state_out


class Converter(RecurrentNet):
    """Linear -> GRU (``layers`` x ``hidden``) -> Linear, with a skip of the input projection.

    Parameters
    ----------
    n_input, n_output : int
        Feature widths F and E.
    hidden, layers : int
        GRU size H and depth L.
    """

    def __init__(self, n_input: int, n_output: int, *, hidden: int = 128, layers: int = 2) -> None:
        super().__init__(n_input, n_output, hidden=hidden, layers=layers)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_output))

    def forward_normalised(self, features: torch.Tensor, state_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward` but returns the *normalised* envelope (the training target space)."""
        z, h, state_out = self.recur(features, state_in)
        return self.head(torch.cat([h, z], dim=-1)), state_out

    def forward(self, features: torch.Tensor, state_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, state_out = self.forward_normalised(features, state_in)
        return y * self.out_std + self.out_mean, state_out
