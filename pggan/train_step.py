"""The pure training step of one stage: real-image fade-in, WGAN-GP D and G updates, gradient averaging, EMA."""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist

from pggan.config import ModelConfig, OptimConfig, PipelineConfig
from pggan.losses import d_loss_wgan_gp, g_loss_wgan
from pggan.nn import Discriminator, Generator, downsample2x, upsample2x


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN/Inf; the stage should roll back to its last good checkpoint."""


@dataclass
class StageNets:
    """Everything a stage trains: the networks, the EMA generator and the two optimizers."""
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer


# ----------------------------------------------------------------------------------------------------------------
# Building and growing.

def make_optimizers(G: torch.nn.Module, D: torch.nn.Module, lr: float,
                    optim: OptimConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Fresh Adam optimizers (the paper resets them at every resolution)."""
    betas = (float(optim.beta1), float(optim.beta2))          # ints raise in this torch
    return (torch.optim.Adam(G.parameters(), lr=lr, betas=betas, eps=optim.eps),
            torch.optim.Adam(D.parameters(), lr=lr, betas=betas, eps=optim.eps))


def build_stage(model: ModelConfig, optim: OptimConfig, res: int, lr: float, device: torch.device | str,
                init_seed: int, previous: Mapping[str, Any] | None = None) -> StageNets:
    """Networks at `res`, fresh from `init_seed` or grown from a smaller stage's state (its G, D, G_ema).

    Growing keeps every trained layer. G_ema grows from the previous G_ema; its new layers start as copies of
    G's new layers (as the official Gs = G.clone()), so the EMA tracks G from the same starting point.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)                             # identical init on every rank
        G, D = Generator(model, res), Discriminator(model, res)
    G_ema = Generator(model, res)
    G_ema.load_state_dict(G.state_dict())
    if previous is not None:
        G.load_grown_state_dict(previous["G"])
        D.load_grown_state_dict(previous["D"])
        fresh = G_ema.load_grown_state_dict(previous["G_ema"])["fresh"]
        own, g_state = G_ema.state_dict(), G.state_dict()
        with torch.no_grad():
            for key in fresh:
                own[key].copy_(g_state[key])
    G, D, G_ema = G.to(device), D.to(device), G_ema.to(device).eval().requires_grad_(False)
    opt_G, opt_D = make_optimizers(G, D, lr, optim)
    return StageNets(G, D, G_ema, opt_G, opt_D)


def load_stage_state(nets: StageNets, state: Mapping[str, Any]) -> None:
    """Restore a same-resolution checkpoint exactly: weights, EMA and both optimizers' moments."""
    nets.G.load_state_dict(state["G"])
    nets.D.load_state_dict(state["D"])
    nets.G_ema.load_state_dict(state["G_ema"])
    nets.opt_G.load_state_dict(state["opt_G"])
    nets.opt_D.load_state_dict(state["opt_D"])


# ----------------------------------------------------------------------------------------------------------------
# The step.

def blend_reals(reals: torch.Tensor, alpha: float) -> torch.Tensor:
    """Fade-in of the real images, as the paper: lerp(upsample(avgpool2x2(x)), x, alpha) ([N,3,R,R] kept)."""
    if alpha >= 1.0 or reals.shape[-1] <= 4:
        return reals
    low = upsample2x(downsample2x(reals))                        # [N, 3, R, R] at half the detail
    return torch.lerp(low, reals, float(alpha))


@torch.no_grad()
def ema_update(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G, parameter by parameter (buffers copied)."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


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


def autocast_for(device: torch.device, cfg: PipelineConfig) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when scaling.mixed_precision is bf16; fp32 elsewhere (the GP is always fp32)."""
    enabled = device.type == "cuda" and cfg.scaling.mixed_precision == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def train_step(G: Generator, D: Discriminator, G_ema: Generator, opt_G: torch.optim.Optimizer,
               opt_D: torch.optim.Optimizer, reals: torch.Tensor, alpha: float,
               cfg: PipelineConfig) -> dict[str, float]:
    """One D update then one G update on this rank's share of the global minibatch, then the EMA.

    reals: float [n, 3, R, R] in [-1, 1]. Returns the losses averaged over all ranks. Raises
    NonFiniteLossError (on every rank) when a loss or gradient is NaN/Inf.
    """
    o, n = cfg.optim, reals.shape[0]
    reals = blend_reals(reals, alpha)                            # [n, 3, R, R]
    amp = autocast_for(reals.device, cfg)

    # D: WGAN-GP with drift; fakes carry no graph into G.
    with torch.no_grad(), amp:
        fakes = G(torch.randn(n, G.model.latent_dim, device=reals.device), alpha).float()   # [n, 3, R, R]
    with amp:
        d_loss, d_stats = d_loss_wgan_gp(D, reals, fakes, alpha, o.gp_lambda, o.drift, o.gp_target)
    opt_D.zero_grad(set_to_none=True)
    d_loss.backward()
    d_avg = average_gradients(D, torch.tensor([d_stats[k] for k in ("d_loss", "gp", "drift", "wdist")]))
    opt_D.step()

    # G: -D(G(z)); D's weights are held fixed so no gradient is spent on them.
    D.requires_grad_(False)
    try:
        with amp:
            fakes = G(torch.randn(n, G.model.latent_dim, device=reals.device), alpha)        # [n, 3, R, R]
            g_loss, _ = g_loss_wgan(D, fakes, alpha)
        opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
    finally:
        D.requires_grad_(True)
    g_avg = average_gradients(G, g_loss.detach().reshape(1))
    opt_G.step()

    ema_update(G_ema, G, o.ema_beta)
    d = d_avg.tolist()
    return {"d_loss": d[0], "gp": d[1], "drift": d[2], "wdist": d[3], "g_loss": float(g_avg[0])}


# ----------------------------------------------------------------------------------------------------------------
# Helpers the training loop and the evaluation share.

def sample_latents(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """Fixed latents [n, latent_dim] from a seed (the same vectors at every stage, for comparable grids)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, latent_dim, generator=gen)


@torch.no_grad()
def generate(G: Generator, z: torch.Tensor, alpha: float = 1.0, batch: int = 64) -> torch.Tensor:
    """G(z) in batches, on G's device, returned on the CPU as float [N, 3, R, R]."""
    device = next(G.parameters()).device
    return torch.cat([G(z[i:i + batch].to(device), alpha).float().cpu() for i in range(0, len(z), batch)])


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


def cycle_batches(first_epoch: Iterable[torch.Tensor], next_epoch: Callable[[], Iterable[torch.Tensor]],
                  batch: int, cache_bytes: int) -> Iterator[torch.Tensor]:
    """Endless minibatches: the first epoch as it streams in; later epochs reshuffled from memory when this
    rank's share fits in `cache_bytes`, else streamed again (next_epoch()) epoch after epoch.

    Small levels would otherwise pay a data-pipeline restart per epoch (seconds on a busy machine, for an epoch
    of a few steps); large levels are never held in memory. The cache lives where the batches arrive (a GPU's
    memory when they come on the GPU): `cache_bytes` held, twice that while the pool is joined.
    """
    cache: list[torch.Tensor] | None = []
    size = 0
    for images in first_epoch:                                  # [n, R, R, 3] uint8
        if cache is not None:
            size += images.numel() * images.element_size()
            cache = cache + [images] if size <= cache_bytes else None
        yield images
    if cache == []:
        raise RuntimeError("the training data yielded no complete minibatch: this worker's share of the data set "
                           "is smaller than one per-worker batch; ingest more images or lower schedule.batch_size")
    if cache is None:
        while True:
            yield from next_epoch()
    pool, cache = torch.cat(cache), None                        # [M, R, R, 3]; the batches freed
    while True:
        order = torch.randperm(len(pool), device=pool.device)
        for i in range(0, len(pool) - batch + 1, batch):
            yield pool[order[i:i + batch]]
