"""Adversarial training of the converter (issue 29, item 3): a critic over envelope sequences.

The converter's regression loss (frame + delta + global variance) pulls every frame towards the
mean of what the disguised input could have been, which smooths formant tracks and transitions.
A critic that sees whole sequences of normalised envelopes (the target's own against the
converter's, the same sentences) gives the converter two more terms:

- ``adv_weight``: the least-squares GAN term, the critic's score of the prediction pulled to "real";
- ``fm_weight``: feature matching, the L1 distance between the critic's inner features of the
  prediction and of the target. The pairs are aligned (the disguise keeps the timeline), so this
  is a learnt, paired perceptual distance rather than a distribution match.

Only the weights learnt change; the exported graph is the shipped converter's. The critic trains
from the first step; the converter's adversarial terms start after ``ADV_START`` of the steps,
once the regression has found the content (a critic that starts on noise teaches nothing).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EnvelopeCritic", "Adversary", "ADV_START", "CRITIC_CEPSTRA"]

ADV_START = 0.25
"""Share of the training steps before the converter's adversarial terms switch on."""

CRITIC_CEPSTRA: int | None = None
"""The critic sees cepstral coefficients c0..c{k-1} only (None: all of them)."""


class EnvelopeCritic(nn.Module):
    """Dilated 1-D convolutions over time on normalised envelopes ``(B, T, E)``.

    Returns per-frame scores ``(B, T)`` (a patch critic: each score sees about 29 frames, 145 ms)
    and the inner activations for feature matching. Spectral normalisation keeps it Lipschitz.
    """

    def __init__(self, n_cep: int, *, channels: int = 128) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.layers = nn.ModuleList([
            sn(nn.Conv1d(n_cep, channels, 5, padding=2)),
            sn(nn.Conv1d(channels, channels, 5, padding=4, dilation=2)),
            sn(nn.Conv1d(channels, channels, 5, padding=8, dilation=4)),
        ])
        self.out = sn(nn.Conv1d(channels, 1, 3, padding=1))

    def forward(self, env: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = env.transpose(1, 2)
        feats = []
        for layer in self.layers:
            h = nn.functional.leaky_relu(layer(h), 0.2)
            feats.append(h)
        return self.out(h)[:, 0], feats


class Adversary:
    """The critic, its optimiser and the two converter terms (see the module docstring).

    Call :meth:`converter_terms` inside the converter's step (its loss gets the returned term)
    and :meth:`critic_step` after the converter's optimiser step, with the same batch.
    """

    def __init__(self, n_cep: int, *, adv_weight: float, fm_weight: float, steps: int,
                 device: torch.device | str = "cpu", lr: float = 2e-4) -> None:
        self.adv_weight, self.fm_weight = float(adv_weight), float(fm_weight)
        self.start = int(round(ADV_START * steps))
        self.n_seen = min(n_cep, CRITIC_CEPSTRA or n_cep)
        self.critic = EnvelopeCritic(self.n_seen).to(device)
        self.opt = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9))

    def converter_terms(self, pred: torch.Tensor, target: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The converter's adversarial loss for normalised ``pred`` and ``target`` ``(B, T, E)``
        (zero before the start step) and its unweighted parts for the progress line."""
        if step < self.start:
            return pred.new_zeros(()), {}
        n = pred.shape[0]
        for p in self.critic.parameters():
            p.requires_grad_(False)
        try:  # one forward: spectral normalisation's power iteration moves the weights on every call
            scores, feats = self.critic(torch.cat([pred, target.detach()])[..., :self.n_seen])
        finally:
            for p in self.critic.parameters():
                p.requires_grad_(True)
        score = scores[:n]
        fake, real = [f[:n] for f in feats], [f[n:].detach() for f in feats]
        adv = ((score - 1.0) ** 2).mean()
        fm = sum((f - r).abs().mean() for f, r in zip(fake, real)) / len(fake)
        return self.adv_weight * adv + self.fm_weight * fm, {"adv": adv.item(), "fm": fm.item()}

    def critic_step(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """One least-squares update of the critic: targets score 1, predictions 0."""
        scores, _ = self.critic(torch.cat([target, pred.detach()])[..., :self.n_seen])
        s_real, s_fake = scores[:target.shape[0]], scores[target.shape[0]:]
        loss = ((s_real - 1.0) ** 2).mean() + (s_fake ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"critic": loss.item()}
