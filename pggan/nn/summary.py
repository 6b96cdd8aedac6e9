"""Table-2-style layer tables (layer, activation, output shape, parameters, totals) for G and D."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pggan.config import ModelConfig
from pggan.nn.factory import make_discriminator, make_generator
from pggan.nn.networks import IMAGE_CHANNELS, Discriminator, Generator
from pggan.nn.stylegan import StyleGenerator

ACT_LABELS = {"lrelu": "LReLU", "linear": "linear"}


@dataclass(frozen=True)
class LayerRow:
    layer:   str                        # Table 2 label, e.g. "Conv 3x3".
    name:    str                        # Module path, e.g. "b8.conv0".
    act:     str                        # "LReLU", "linear" or "-".
    shape:   tuple[int, ...]            # Output shape without the batch dimension (CHW).
    params:  int                        # Trainable parameters of this layer.
    fade_in: bool                       # Used only while fading in (the R/2 RGB layer); not in Table 2.


@dataclass(frozen=True)
class NetworkSummary:
    title:       str                    # e.g. "Generator 1024x1024".
    input_label: str                    # "Latent vector" or "Input image".
    input_shape: tuple[int, ...]        # Input shape without the batch dimension.
    rows:        tuple[LayerRow, ...]   # Layers in the order the forward pass runs them.

    @property
    def total(self) -> int:
        """Trainable parameters counted as in Table 2 (without the fade-in-only layers)."""
        return sum(r.params for r in self.rows if not r.fade_in)

    @property
    def total_with_fade_in(self) -> int:
        return sum(r.params for r in self.rows)


def format_count(n: int) -> str:
    """Parameter counts as Table 2 writes them: 51, 2.3k, 590k, 4.2M."""
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n / 1e3:.1f}k"
    if n < 1_000_000:
        return f"{n / 1e3:.0f}k"
    return f"{n / 1e6:.1f}M"


def _chw(shape: torch.Size) -> tuple[int, ...]:
    dims = tuple(shape[1:])                                     # drop the batch dimension
    return dims + (1, 1) if len(dims) == 1 else (1, 1, 1) if not dims else dims


def summarize(net: Generator | StyleGenerator | Discriminator, example: torch.Tensor,
              alpha: float = 0.5) -> NetworkSummary:
    """Run `net` once on `example` (any device, including "meta") and record every labelled layer it calls; a
    conditional G gets class 0 for every example."""
    fade_in = set(net.fade_in_layer_names())
    rows: list[LayerRow] = []
    handles = []

    def hook_for(name: str, module: torch.nn.Module):
        def hook(_module, _inputs, output):
            act = ACT_LABELS.get(getattr(module, "activation", ""), "-")
            rows.append(LayerRow(module.summary_label(), name, act, _chw(output.shape),
                                 sum(p.numel() for p in module.parameters()), name.split(".")[0] in fade_in))
        return hook

    labelled = [name for name, module in net.named_modules() if hasattr(module, "summary_label")]
    for name in labelled:
        # A labelled layer inside another (StyleGAN's AdaIN holds its affine) is counted with its parent.
        if not any(name.startswith(outer + ".") for outer in labelled):
            module = net.get_submodule(name)
            handles.append(module.register_forward_hook(hook_for(name, module)))
    try:
        with torch.no_grad():
            if isinstance(net, Generator) and net.num_classes:
                net(example, alpha, torch.zeros(example.shape[0], dtype=torch.int64, device=example.device))
            else:
                net(example, alpha)
    finally:
        for h in handles:
            h.remove()
    is_g = isinstance(net, (Generator, StyleGenerator))
    return NetworkSummary(title=f"{type(net).__name__} {net.resolution}x{net.resolution}",
                          input_label="Latent vector" if is_g else "Input image",
                          input_shape=_chw(example.shape), rows=tuple(rows))


def model_summaries(model: ModelConfig, resolution: int, num_classes: int = 0
                    ) -> tuple[NetworkSummary, NetworkSummary]:
    """Summaries of G and D (of model.arch; conditional on num_classes if > 0) at `resolution`, built on the meta
    device (no memory, no compute). In eval mode: StyleGAN's G then maps one latent per image (no style mixing),
    as at generation."""
    with torch.device("meta"):
        G = make_generator(model, resolution, num_classes).eval()
        D = make_discriminator(model, resolution, num_classes).eval()
        z = torch.empty(4, model.latent_dim)                   # [N, latent]
        x = torch.empty(4, IMAGE_CHANNELS, resolution, resolution)  # [N, 3, R, R]
    return summarize(G, z), summarize(D, x)


def format_table(s: NetworkSummary) -> str:
    """The summary as a fixed-width text table, Table 2 layers first, then the fade-in-only layers."""
    head = ("Layer", "Module", "Act.", "Output shape", "Params")
    widths = (18, 16, 8, 16, 8)

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    def row(r: LayerRow) -> str:
        return line((r.layer, r.name, r.act, "x".join(map(str, r.shape)),
                     format_count(r.params) if r.params else "-"))

    rule = "-" * len(line(head))
    out = [s.title, rule, line(head), rule,
           line((s.input_label, "", "-", "x".join(map(str, s.input_shape)), "-"))]
    out += [row(r) for r in s.rows if not r.fade_in]
    out += [rule, line(("Total (Table 2)", "", "", "", format_count(s.total))) + f"  ({s.total:,})"]
    fading = [r for r in s.rows if r.fade_in]
    if fading:
        out += ["Used only during fade-in (not in Table 2):"] + [row(r) for r in fading]
        out += [line(("Total incl. fade-in", "", "", "", format_count(s.total_with_fade_in)))
                + f"  ({s.total_with_fade_in:,})"]
    return "\n".join(out)


def summary_text(model: ModelConfig, resolution: int, num_classes: int = 0) -> str:
    """Both tables, G then D, separated by a blank line."""
    return "\n\n".join(format_table(s) for s in model_summaries(model, resolution, num_classes))
