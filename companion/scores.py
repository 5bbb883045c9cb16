"""Unknown-detection scores.

Convention (as in ARPL and OpenOOD): **a higher score means "more likely known"**. Each function
maps a batch of model outputs to one score per sample, shape ``(N,)``.
"""

from __future__ import annotations

import torch


def msp(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability, in (0, 1]: ``max_k softmax(logits)_k``; logits ``(N, K)``."""
    return torch.softmax(logits.float(), dim=1).amax(dim=1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """Maximum logit (Vaze et al. 2022's MLS): ``max_k logits_k``; logits ``(N, K)``."""
    return logits.float().amax(dim=1)
