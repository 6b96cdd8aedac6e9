"""Data-parallel training done explicitly over torch.distributed: world size, one all-reduce of the gradients
(with the NaN check every rank agrees on), rank 0's weights to all, and a digest to prove the ranks in sync.
Every function is a no-op or a plain local computation in a world of one process."""
from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN/Inf; the stage should roll back to its last good checkpoint."""


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def average_buffer(module: torch.nn.Module, name: str) -> None:
    """Average the buffer `name` of `module` over ranks in place (a no-op on one rank or when it has none), e.g.
    StyleGAN's tracked mean w, which each rank updates from its own minibatch."""
    buf = getattr(module, name, None)
    if world_size() > 1 and isinstance(buf, torch.Tensor):
        dist.all_reduce(buf)
        buf.div_(world_size())


def average_gradients(module: torch.nn.Module, scalars: torch.Tensor) -> torch.Tensor:
    """Mean of the gradients (and of `scalars` [K]) over all ranks, in one all-reduce; returns the mean scalars.

    This is data-parallel training as DDP does it, done explicitly (as StyleGAN2-ADA does) because
    nn.parallel.DDP does not support the autograd.grad of the gradient penalty and would also reduce D's
    gradients during the G step. NaN anywhere on any rank reaches every rank, so all ranks fail together.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    scalars = scalars.detach().float().reshape(-1).to(grads[0].device)                         # [K]
    n = world_size()
    if n > 1:
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [scalars])                    # [P + K]
        dist.all_reduce(flat)
        flat /= n
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(p).to(p.dtype)
            offset += g.numel()
        scalars, grads = flat[-scalars.numel():], [flat[:-scalars.numel()]]
    # A world of one needs no flat copy: the finiteness check reads the gradients where they are.
    if not bool(torch.stack([torch.isfinite(t).all() for t in [scalars, *grads]]).all()):
        bad = "loss" if not bool(torch.isfinite(scalars).all()) else "gradient"
        raise NonFiniteLossError(f"non-finite {bad} in the {type(module).__name__} update "
                                 f"(losses {[round(v, 4) for v in scalars.tolist()]})")
    return scalars


def param_digest(*modules: torch.nn.Module) -> str:
    """sha256 over the modules' parameters: equal on every rank when data-parallel training is in sync."""
    h = hashlib.sha256()
    for m in modules:
        for name, p in sorted(m.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def broadcast_parameters(*modules: torch.nn.Module) -> None:
    """Copy rank 0's weights to every rank (a no-op on one process)."""
    if world_size() <= 1:
        return
    for m in modules:
        for t in m.state_dict().values():
            dist.broadcast(t, src=0)
