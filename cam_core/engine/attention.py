"""LeGrad's hooks: attention probabilities of a ViT's blocks, and each block's own class read-out.

Attention probabilities (N, heads, queries, keys) are captured, as tensors in the graph, from:

- ``nn.MultiheadAttention`` (torchvision's ViT): asked for per-head weights, and its output
  recomputed from them (``out_proj(P · V)``), as torchcam does, since the module's own output
  does not depend on the returned copy;
- timm's ``Attention`` (a ``fused_attn`` flag and an ``attn_drop`` child): the fused kernel is
  switched off for the call and the probabilities read at ``attn_drop``;
- any other ``…Attention`` module returning ``(output, probabilities)`` (Hugging Face's, with the
  eager attention that ``hf:`` folders load with).

A block is the module holding an attention; its output must be tokens (N, T, D). Its read-out
s^l = head(norm(mean_t z^l_t)) applies the modules that run after the last block (the final
norm and the head, outermost first, e.g. ``encoder.ln`` then ``heads``) to its mean token.
Blocks used: the one holding the explained layer and all after it (a layer after the last
block takes the last block). The trunk below the first block used runs without autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CamError

__all__ = ["attention_units", "legrad_relevance"]

_NO_ATTENTION = (
    "LeGrad reads a vision transformer's attention; this model has no attention probabilities to read "
    "(nn.MultiheadAttention, timm's Attention, or a Hugging Face attention in eager mode)"
)


@dataclass
class _Unit:
    """One attention module and the block around it."""

    block: str
    attention: str
    kind: str  # "mha", "timm" or "tuple"


@dataclass
class _Seen:
    """What one hooked forward left behind."""

    order: list[str] = field(default_factory=list)
    tokens: dict[str, Tensor] = field(default_factory=dict)
    probs: dict[str, Tensor] = field(default_factory=dict)


def attention_units(module: nn.Module) -> list[_Unit]:
    """Every attention module the hooks can read, with its block (innermost attentions only), in module order."""
    units: list[_Unit] = []
    for name, mod in module.named_modules():
        if "." not in name:  # the root, or a top-level module: no block around it
            continue
        if isinstance(mod, nn.MultiheadAttention):
            kind = "mha"
        elif hasattr(mod, "fused_attn") and isinstance(getattr(mod, "attn_drop", None), nn.Module):
            kind = "timm"
        elif "Attention" in type(mod).__name__:
            kind = "tuple"
        else:
            continue
        units = [u for u in units if not name.startswith(u.attention + ".")]
        if any(u.attention.startswith(name + ".") for u in units):
            continue
        units.append(_Unit(name.rpartition(".")[0], name, kind))
    return units


def _mha_pre(mod: nn.MultiheadAttention, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    kwargs = {**kwargs, "need_weights": True, "average_attn_weights": False}
    return args, kwargs


def _mha_post(seen: _Seen, name: str) -> Callable[..., tuple[Tensor, Tensor | None]]:
    def hook(mod: nn.MultiheadAttention, args: tuple, kwargs: dict, output: tuple) -> tuple[Tensor, Tensor | None]:
        probs = output[1]
        value = args[2] if len(args) > 2 else kwargs["value"]
        n, t, e = value.shape
        heads = mod.num_heads
        bias = None if mod.in_proj_bias is None else mod.in_proj_bias[2 * e :]
        v = F.linear(value, mod.in_proj_weight[2 * e :], bias).reshape(n, t, heads, e // heads).transpose(1, 2)
        out = mod.out_proj(torch.matmul(probs, v).transpose(1, 2).reshape(n, probs.shape[-2], e))
        seen.probs[name] = probs
        return out, None

    return hook


def _keep_probs(seen: _Seen, name: str, tuple_output: bool) -> Callable[..., None]:
    def hook(_mod: nn.Module, _args: tuple, output: object) -> None:
        probs = output[1] if tuple_output and isinstance(output, tuple) and len(output) > 1 else output
        if isinstance(probs, Tensor) and probs.ndim == 4:
            seen.probs[name] = probs

    return hook


def _keep_tokens(seen: _Seen, name: str) -> Callable[..., None]:
    def hook(_mod: nn.Module, _args: tuple, output: object) -> None:
        if isinstance(output, Tensor) and output.ndim == 3:
            seen.tokens[name] = output

    return hook


def _order(seen: _Seen, name: str) -> Callable[..., None]:
    def hook(_mod: nn.Module, _args: tuple, _output: object) -> None:
        seen.order.append(name)

    return hook


def _leaf_input(_mod: nn.Module, args: tuple) -> tuple:
    """Grad from here on: the block's input becomes a leaf (nothing below it is recorded)."""
    torch.set_grad_enabled(True)
    return (args[0].detach().requires_grad_(True), *args[1:])


@contextmanager
def _hooked(module: nn.Module, units: list[_Unit], first: str) -> Iterator[_Seen]:
    seen = _Seen()
    named = dict(module.named_modules())
    grad_was = torch.is_grad_enabled()
    with ExitStack() as stack:
        for name, mod in named.items():
            if name:
                stack.callback(mod.register_forward_hook(_order(seen, name)).remove)
        stack.callback(named[first].register_forward_pre_hook(_leaf_input).remove)
        for u in units:
            att = named[u.attention]
            stack.callback(named[u.block].register_forward_hook(_keep_tokens(seen, u.block)).remove)
            if u.kind == "mha":
                stack.callback(att.register_forward_pre_hook(_mha_pre, with_kwargs=True).remove)
                stack.callback(att.register_forward_hook(_mha_post(seen, u.block), with_kwargs=True).remove)
            elif u.kind == "timm":
                fused = att.fused_attn
                att.fused_attn = False
                stack.callback(setattr, att, "fused_attn", fused)
                stack.callback(att.attn_drop.register_forward_hook(_keep_probs(seen, u.block, False)).remove)
            else:
                stack.callback(att.register_forward_hook(_keep_probs(seen, u.block, True)).remove)
        try:
            yield seen
        finally:
            torch.set_grad_enabled(grad_was)


def _readout(named: dict[str, nn.Module], order: list[str], last: str) -> list[nn.Module]:
    """The modules run after the last block, outermost, not holding it: the final norm and the head."""
    after = order[order.index(last) + 1 :]
    outer = [n for n in after if not last.startswith(n + ".")]
    return [named[n] for n in dict.fromkeys(outer) if not any(n.startswith(o + ".") for o in outer if o != n)]


def legrad_relevance(
    module: nn.Module,
    x: Tensor,
    ids: Tensor,
    layer: str,
    to_grid: Callable[[str], Callable[[Tensor], Tensor]],
) -> tuple[Tensor, int, int]:
    """Per-block LeGrad relevance (L, N, K, h, w) and the (forwards, backwards) it cost.

    Args:
        module: The model (its lock held by the caller, model and ``x`` on one device).
        x: (N, 3, H, W) images.
        ids: (N, K) classes.
        layer: The explained layer: the blocks from the one holding it to the last are used.
        to_grid: Block name → the function from its tokens to N×C×h×w (drops class tokens).

    Raises:
        CamError: no attention to read, or probabilities that are not in the graph.
    """
    units = attention_units(module)
    if not units:
        raise CamError(_NO_ATTENTION)
    blocks = [u.block for u in units]
    holding = [b for b in blocks if layer == b or layer.startswith(b + ".")]
    first = blocks.index(holding[0]) if holding else None
    named = dict(module.named_modules())
    with _hooked(module, units, blocks[0] if first is None else blocks[first]) as seen, torch.no_grad():
        module(x)
    ran = [b for b in blocks if b in seen.tokens and b in seen.probs]
    if not ran:
        raise CamError(
            _NO_ATTENTION if not seen.probs else "LeGrad found attention probabilities but no token output of "
            "their blocks"
        )
    if first is None:  # the layer is outside every block: all blocks if it comes first, else the last
        starts_before = layer in seen.order and seen.order.index(layer) < seen.order.index(ran[0])
        used = ran if starts_before else ran[-1:]
    else:
        used = [b for b in ran if blocks.index(b) >= first] or ran[-1:]
    readout = _readout(named, seen.order, ran[-1])
    relevance: list[Tensor] = []
    backwards = 0
    with torch.enable_grad():
        for block in used:
            pooled = seen.tokens[block].mean(dim=1)
            for mod in readout:
                pooled = mod(pooled)
            scores = pooled.gather(1, ids)  # (N, K)
            maps = []
            for k in range(ids.shape[1]):
                try:
                    (g,) = torch.autograd.grad(scores[:, k].sum(), seen.probs[block], retain_graph=True)
                except RuntimeError as exc:
                    raise CamError(f"LeGrad: block {block!r}'s read-out does not depend on its attention") from exc
                backwards += 1
                keys = g.clamp_min(0).mean(dim=(1, 2))  # (N, T)
                maps.append(to_grid(block)(keys.unsqueeze(-1))[:, 0])  # (N, h, w)
            relevance.append(torch.stack(maps, dim=1).detach())
    return torch.stack(relevance), 1, backwards
