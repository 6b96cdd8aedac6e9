"""What the official training loop does around the step, shared by both loops (the Ray stage and the Ray-free
pggan.progressive): the real minibatch as the networks see it (mirror augmentation), the Adam reset at the end of
the fade-in, and the warning when minibatch stddev cannot use its full group."""
from __future__ import annotations

import torch

from pggan.config import PipelineConfig
from pggan.imaging import to_float
from pggan.nn.layers import mbstd_group


def mirror_reals(reals: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image flipped left-right with probability 1/2, drawn per image on reals' device (the official
    mirror_augment). reals: [N, C, H, W]; returns [N, C, H, W]."""
    flip = torch.rand(reals.shape[0], 1, 1, 1, device=reals.device, generator=generator) < 0.5   # [N, 1, 1, 1]
    return torch.where(flip, reals.flip(-1), reals)


def real_batch(images: torch.Tensor, cfg: PipelineConfig, device: torch.device | str) -> torch.Tensor:
    """A minibatch of stored images, uint8 [N, R, R, 3], as the step takes it: on `device` (a no-op when it is
    there already), float [N, 3, R, R] in [-1, 1], mirrored per image when data.mirror is on."""
    reals = to_float(images.to(device, non_blocking=True))     # [N, 3, R, R]
    return mirror_reals(reals) if cfg.data.mirror else reals


def fade_ended(fade_nimg: int, before: int, after: int) -> bool:
    """True for the one step that takes a stage from fade-in to stabilization (images seen `before` -> `after`).

    The official code resets both Adam states there (as at a new resolution). A stage resumed from a checkpoint
    at or after the fade end never sees this step again, one resumed before it does: the reset happens once."""
    return fade_nimg > 0 and before < fade_nimg <= after


def reset_optimizers(*optimizers: torch.optim.Optimizer) -> None:
    """Forget every moment and step count (Adam re-creates them at its next step); the learning rate stays."""
    for opt in optimizers:
        opt.state.clear()


def mbstd_note(group_size: int, per_rank_batch: int, res: int) -> str | None:
    """A warning (one line) when minibatch stddev has to use groups smaller than min(group_size, per-rank
    minibatch) because the per-rank minibatch is not a multiple of the group; None when all is as the paper."""
    if group_size <= 1:                                         # the layer is off
        return None
    group, full = mbstd_group(group_size, per_rank_batch), min(group_size, per_rank_batch)
    if group >= full:
        return None
    effect = ("every image gets the same constant feature (no variation signal)" if group == 1
              else f"groups of {group} are used instead")
    return (f"minibatch stddev at {res}x{res}: the per-worker minibatch {per_rank_batch} is not a multiple of "
            f"model.mbstd_group_size ({group_size}), so {effect}; make schedule.batch_size.{res} / "
            f"scaling.num_workers a multiple of {group_size}")
