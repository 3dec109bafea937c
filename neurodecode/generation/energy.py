"""Energy estimate of a denoiser from the operations it actually performed.

Convention (45 nm CMOS, 32-bit floating point; Horowitz, ISSCC 2014, as used by the Spiking Diffusion Models
paper): a multiply-accumulate (MAC) costs ``E_MAC = 4.6 pJ``, an accumulate (AC, one synaptic operation of a
spike) ``E_AC = 0.9 pJ``.

How operations are counted, by forward hooks during the real computation:

* ``nn.Conv2d`` and ``nn.Linear``: dense MACs = output elements x fan-in (``in/groups x kernel area``).
  When the layer's input is binary (spikes, checked on the actual tensor), only the inputs that fired are
  propagated: synaptic operations = MACs x measured fraction of ones, each costing ``E_AC`` instead of
  ``E_MAC``. This equals the sum over emitted spikes of their fan-out (up to border effects of padding).
  Because the input tensor covers all SNN steps, the count already includes the time steps.
* attention products (query x key and weights x value) are real-valued MACs in both denoisers, and so are
  the element-wise multiplies of the spiking denoiser's preconditioned output (modules reporting
  ``last_elementwise_macs``).
* not counted, as in the convention: normalisations (folded into weights at deployment), TSM scales
  (foldable into per-step weights), activations, residual additions, membrane updates, memory traffic.
  The estimate is therefore a lower bound for both networks and ignores memory access, which STEP
  (NeurIPS 2025) argues can erase the SNN's advantage on real hardware.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


@dataclass
class OpCount:
    """Operations accumulated by an :class:`OpCounter` (totals over everything it watched).

    Attributes
    ----------
    macs : float
        Real-valued multiply-accumulates.
    sops : float
        Synaptic operations (accumulates triggered by spikes).
    dense_spiking_macs : float
        What the spike-driven layers would cost as dense MACs (to report the saving).
    per_layer : dict
        ``{layer name: [macs, sops]}``.
    """

    macs: float = 0.0
    sops: float = 0.0
    dense_spiking_macs: float = 0.0
    per_layer: dict = field(default_factory=dict)

    def energy_joules(self, e_mac_pj=E_MAC_PJ, e_ac_pj=E_AC_PJ):
        """Total energy in joules: ``macs * E_MAC + sops * E_AC``."""
        return (self.macs * e_mac_pj + self.sops * e_ac_pj) * 1e-12

    def scaled(self, factor):
        """A copy with every count multiplied by ``factor`` (e.g. 1 / n_images)."""
        return OpCount(
            self.macs * factor,
            self.sops * factor,
            self.dense_spiking_macs * factor,
            {k: [v[0] * factor, v[1] * factor] for k, v in self.per_layer.items()},
        )


def _is_binary(x):
    return bool(((x == 0) | (x == 1)).all())


class OpCounter:
    """Context manager counting the MACs and synaptic operations of ``model``'s forward passes.

    Parameters
    ----------
    model : nn.Module
    spike_aware : bool | None
        Count layers fed by binary tensors as synaptic operations; None: when ``model`` has spiking neurons.

    Examples
    --------
    >>> with OpCounter(unet) as counter:          # doctest: +SKIP
    ...     unet(x, t, embeds)
    >>> counter.count.energy_joules()             # doctest: +SKIP
    """

    def __init__(self, model, spike_aware=None):
        from .spiking import LIFNeuron

        self.model = model
        # Only a network with spiking neurons has spike inputs; a dense network's exact zeros (e.g. a
        # zero-initialised null embedding) must not be mistaken for silence.
        if spike_aware is None:
            spike_aware = any(isinstance(m, LIFNeuron) for m in model.modules())
        self.spike_aware = spike_aware
        self.count = OpCount()
        self._handles = []

    def _add(self, name, macs, sops=0.0, dense=0.0):
        c = self.count
        c.macs += macs
        c.sops += sops
        c.dense_spiking_macs += dense
        layer = c.per_layer.setdefault(name, [0.0, 0.0])
        layer[0] += macs
        layer[1] += sops

    def _layer_hook(self, name):
        def hook(mod, args, out):
            x = args[0].detach()
            if isinstance(mod, nn.Conv2d):
                fan_in = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            else:
                fan_in = mod.in_features
            dense = float(out.numel()) * fan_in
            if self.spike_aware and _is_binary(x):
                density = float(x.float().mean()) if x.numel() else 0.0
                self._add(name, 0.0, dense * density, dense)
            else:
                self._add(name, dense)

        return hook

    def _attention_hook(self, name):
        def hook(mod, args, kwargs, out):
            if hasattr(mod, "last_matmul_macs"):
                self._add(name + ".matmul", float(mod.last_matmul_macs))
                return
            # diffusers Attention: (batch, L, C) or (batch, C, H, W) queries; keys from the
            # encoder states for cross-attention, else from the queries themselves.
            hs = args[0] if args else kwargs["hidden_states"]
            enc = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
            b = hs.shape[0]
            lq = hs.shape[1] if hs.ndim == 3 else hs.shape[2] * hs.shape[3]
            lk = lq if enc is None else enc.shape[1]
            self._add(name + ".matmul", 2.0 * b * lq * lk * mod.inner_dim)

        return hook

    def _elementwise_hook(self, name):
        def hook(mod, args, out):
            self._add(name, float(mod.last_elementwise_macs))

        return hook

    def __enter__(self):
        from diffusers.models.attention_processor import Attention

        from .spiking import SpikingCrossAttention

        for name, mod in self.model.named_modules():
            if hasattr(mod, "last_elementwise_macs"):
                self._handles.append(mod.register_forward_hook(self._elementwise_hook(name)))
            elif isinstance(mod, (nn.Conv2d, nn.Linear)):
                self._handles.append(mod.register_forward_hook(self._layer_hook(name)))
            elif isinstance(mod, (Attention, SpikingCrossAttention)):
                self._handles.append(mod.register_forward_hook(self._attention_hook(name), with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False


def energy_report(count, n_images):
    """Per-image summary of an :class:`OpCount` gathered over ``n_images`` generated images.

    Returns
    -------
    dict
        ``macs``, ``sops``, ``energy_mj`` (millijoules per image), ``ann_equivalent_mj`` (the same network
        with every spike-driven layer run as dense MACs) and the constants used.
    """
    per = count.scaled(1.0 / max(n_images, 1))
    return {
        "macs": per.macs,
        "sops": per.sops,
        "energy_mj": per.energy_joules() * 1e3,
        "ann_equivalent_mj": (per.macs + per.dense_spiking_macs) * E_MAC_PJ * 1e-9,
        "e_mac_pj": E_MAC_PJ,
        "e_ac_pj": E_AC_PJ,
    }


@torch.no_grad()
def measure_forward_energy(model, *args, **kwargs):
    """Energy (J) per sample of one forward pass of ``model(*args, **kwargs)``, counted from the activity."""
    with OpCounter(model) as counter:
        model(*args, **kwargs)
    return counter.count.energy_joules() / args[0].shape[0]
