"""``BrainToImagePipeline``: brain conditioning -> images, hallucination scores and energy estimate."""

import contextlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..utils import InputFileError, UsageError, atomic_path
from .control import ControlledUNet
from .energy import OpCounter, energy_report
from .hallucination import HallucinationCalibration, trajectory_variance
from .spiking import SpikingUNet
from .unet import ConditionalUNet

DENOISERS = {"ConditionalUNet": ConditionalUNet, "SpikingUNet": SpikingUNet, "ControlledUNet": ControlledUNet}
SCHEDULERS = {"DDIMScheduler": DDIMScheduler, "DDPMScheduler": DDPMScheduler}


@dataclass
class BrainToImageOutput(BaseOutput):
    """What :class:`BrainToImagePipeline` returns.

    Attributes
    ----------
    images : ndarray (batch, H, W, C) in [0, 1], Tensor (batch, C, H, W), or list of PIL images
    embeds : Tensor, shape (batch, d) or (batch, n, d)
        The conditioning the images were generated from.
    hallucination_score : ndarray, shape (batch,)
        Variance of the predicted clean sample over the last ``hallucination_k`` steps, pooled over
        ``hallucination_draws`` sampling runs (see :mod:`.hallucination`).
    hallucinated : ndarray of bool, shape (batch,) | None
        Score above the calibrated threshold (None when no calibration exists for this scheduler and number
        of steps).
    energy : dict
        Per-image operation counts and energy estimate in millijoules (see :func:`energy.energy_report`),
        summed over every network evaluation of the sampling run that made the images (guidance included).
        When the hallucination score needs extra sampling runs, their cost is reported apart as
        ``hallucination_energy_mj`` (same convention).
    firing_rates : dict | None
        Firing rate per spiking layer during this call (spiking denoiser only).
    x0_trajectory : Tensor, shape (n_steps, batch, C, h, w) | None
        Predicted clean samples per step, when asked for.
    """

    images: object
    embeds: torch.Tensor
    hallucination_score: np.ndarray
    hallucinated: object
    energy: dict
    firing_rates: object = None
    x0_trajectory: object = None


def _as_tensor(x, name):
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise UsageError(f"Invalid '{name}': expected a Tensor or ndarray, but got {type(x).__name__}.")
    return x.float()


class BrainToImagePipeline(DiffusionPipeline):
    """Conditional diffusion from decoder features to images, with an ANN or spiking denoiser.

    Parameters
    ----------
    denoiser : ConditionalUNet or SpikingUNet
        Predicts the added noise (epsilon) from the noisy sample, the step and the conditioning.
    scheduler : diffusers scheduler
        DDPM, DDIM or any other epsilon-prediction scheduler of diffusers.
    vae : diffusers autoencoder | None
        ``AutoencoderKL`` or ``AutoencoderTiny`` (see :func:`neurodecode.generation.latent.load_autoencoder`).
        When given, the denoiser works on its scaled latents and images are decoded at the end; the
        denoiser's ``in_channels`` must be the latent channels.
    """

    model_cpu_offload_seq = "denoiser->vae"

    def __init__(self, denoiser, scheduler, vae=None):
        super().__init__()
        if vae is not None:
            from .latent import check_autoencoder

            check_autoencoder(vae, denoiser.config)
        self.register_modules(denoiser=denoiser, scheduler=scheduler, vae=vae)
        self.hallucination_calibrations = {}

    # ----------------------------------------------------------------------------------------------
    def add_calibration(self, calibration):
        """Register a :class:`HallucinationCalibration` (one per scheduler and number of steps)."""
        self.hallucination_calibrations[(calibration.scheduler, calibration.num_inference_steps)] = calibration

    def calibration_for(self, num_inference_steps):
        """The calibration matching the current scheduler and ``num_inference_steps``, or None."""
        return self.hallucination_calibrations.get((type(self.scheduler).__name__, int(num_inference_steps)))

    # ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        conditioning,
        num_inference_steps=20,
        guidance_scale=2.0,
        generator=None,
        output_type="np",
        hallucination_k=None,
        hallucination_draws=None,
        spike_threshold_scale=None,
        measure_energy=True,
        return_trajectory=False,
        return_dict=True,
        control_guidance_scale=None,
    ):
        """Generate one image per conditioning vector.

        Parameters
        ----------
        conditioning : BrainConditioning or Tensor/ndarray, shape (batch, d) or (batch, n, d)
            Decoder output; its ``spatial_maps`` (batch, C, h, w) are used when the denoiser takes them.
        num_inference_steps : int
            Reverse steps of the scheduler.
        guidance_scale : float
            Classifier-free guidance weight; 1 disables guidance (one network evaluation per step).
        generator : torch.Generator | None
            Seeds the initial noise (and DDPM's per-step noise).
        output_type : {"np", "pt", "pil"}
        hallucination_k : int | None
            Final steps for the hallucination score; default from the calibration, else ``min(5, steps)``.
        hallucination_draws : int | None
            Sampling runs the score's variance is pooled over (the image's run plus ``draws - 1`` more from
            the same ``generator``, or ``draws`` runs of the calibration's scoring scheduler and guidance
            when they differ from the image's); default from the calibration, else 1 (the paper's single-trajectory score, no
            extra cost). Flags need the calibrated ``k`` and number of draws.
        spike_threshold_scale : float | None
            Threshold-guided sampling for the spiking denoiser (e.g. 0.998); ignored by the ANN.
        measure_energy : bool
            Count operations during sampling (small overhead).
        return_trajectory : bool
            Also return the per-step predicted clean samples.
        return_dict : bool
            Return a :class:`BrainToImageOutput` (else a tuple in its field order).
        control_guidance_scale : float | None
            Separate guidance weight for the spatial maps (denoisers with a control copy or spatial input).
            ``None``: one weight for both levels (the unconditional branch drops the embedding and the maps).
            Otherwise a third network evaluation per step gives the conditional prediction without maps, and
            ``eps = eps(none) + guidance_scale * (eps(embed) - eps(none)) + control_guidance_scale *
            (eps(embed, maps) - eps(embed))``, so the high level can be extrapolated while the maps are not
            (compositional guidance, as in InstructPix2Pix's two-condition guidance).

        Returns
        -------
        BrainToImageOutput
        """
        if output_type not in ("np", "pt", "pil"):
            raise UsageError(
                f"Invalid value for the 'output_type' parameter. Allowed values are 'np', 'pt' and 'pil', "
                f"but got {output_type!r} instead."
            )
        if int(num_inference_steps) < 2:
            raise UsageError(f"Invalid value for 'num_inference_steps': expected >= 2, but got {num_inference_steps}.")
        if getattr(self.scheduler.config, "prediction_type", "epsilon") != "epsilon":
            raise UsageError("The scheduler must use prediction_type='epsilon', the denoisers' training target.")
        embeds, maps = self._prepare_conditioning(conditioning)
        den = self.denoiser
        cal = self.calibration_for(num_inference_steps)
        draws = int(hallucination_draws or (cal.draws if cal is not None else 1))
        if draws < 1:
            raise UsageError(f"Invalid value for 'hallucination_draws': expected >= 1, but got {hallucination_draws}.")
        device = self.device
        b = embeds.shape[0]
        steps = int(num_inference_steps)

        spiking = isinstance(den, SpikingUNet)
        old_scale = den.threshold_scale if spiking else None
        if spiking:
            den.reset_stats()
            if spike_threshold_scale is not None:
                den.threshold_scale = spike_threshold_scale
        score_counter = None
        try:
            counter = OpCounter(den) if measure_energy else None
            x, trajectory = self._sample(self.scheduler, embeds, maps, steps, guidance_scale, generator, counter,
                                         control_guidance_scale)
            rates = den.firing_rates() if spiking else None
            # Scoring runs: further draws of the image's sampler, or of the calibration's scoring sampler
            # (e.g. stochastic DDPM, another guidance), from the same generator so that a seed fixes the
            # score too. The image's run is the first draw only when it was made the scoring way.
            score_name = cal.score_scheduler if cal is not None else None
            score_g = cal.score_guidance if (cal is not None and cal.score_guidance is not None) else guidance_scale
            if score_name in (None, type(self.scheduler).__name__) and score_g == guidance_scale:
                runs, extra, sched = [trajectory], draws - 1, self.scheduler
            else:
                runs, extra = [], draws
                sched = self.scheduler if score_name is None else SCHEDULERS[score_name].from_config(self.scheduler.config)
            if extra > 0:
                score_counter = OpCounter(den) if measure_energy else None
                for _ in range(extra):
                    runs.append(self._sample(sched, embeds, maps, steps, score_g, generator, score_counter,
                                             control_guidance_scale)[1])
                # the images' scheduler must be left as the image pass set it
                self.scheduler.set_timesteps(steps, device=device)
        finally:
            if spiking:
                den.threshold_scale = old_scale

        if self.vae is not None:
            from .latent import decode_latents

            images = decode_latents(self.vae, x)
        else:
            images = x
        images = (images / 2 + 0.5).clamp(0, 1)

        k = hallucination_k or (cal.k if cal is not None else min(5, len(trajectory)))
        scores = trajectory_variance(runs, k)
        flags = cal.flag(scores) if (cal is not None and k == cal.k and len(runs) == cal.draws) else None
        energy = energy_report(counter.count, b) if counter is not None else {}
        if score_counter is not None:
            energy["hallucination_energy_mj"] = energy_report(score_counter.count, b)["energy_mj"]

        if output_type == "np":
            images = images.permute(0, 2, 3, 1).cpu().numpy()
        elif output_type == "pil":
            images = self.numpy_to_pil(images.permute(0, 2, 3, 1).cpu().numpy())
        out = BrainToImageOutput(images, embeds, scores, flags, energy, rates, trajectory if return_trajectory else None)
        return out if return_dict else out.to_tuple()

    def _prepare_conditioning(self, conditioning):
        embeds = getattr(conditioning, "embeds", conditioning)
        maps = getattr(conditioning, "spatial_maps", None)
        embeds = _as_tensor(embeds, "conditioning.embeds")
        maps = _as_tensor(maps, "conditioning.spatial_maps")
        den = self.denoiser
        if embeds.ndim not in (2, 3) or embeds.shape[-1] != den.config.cond_dim:
            raise UsageError(
                f"Invalid conditioning: expected embeds of shape (batch, {den.config.cond_dim}), "
                f"but got {tuple(embeds.shape)}."
            )
        if den.config.spatial_channels == 0:
            maps = None  # a decoder may produce maps that this denoiser does not use
        return embeds.to(self.device), maps.to(self.device) if maps is not None else None

    @torch.no_grad()
    def sample_trajectories(self, conditioning, num_inference_steps=20, guidance_scale=2.0, generator=None, draws=1,
                            scheduler=None):
        """Predicted clean samples of ``draws`` sampling runs, for calibrating the hallucination score.

        Parameters
        ----------
        conditioning : BrainConditioning or Tensor/ndarray, shape (batch, d)
        num_inference_steps : int
        guidance_scale : float
        generator : torch.Generator | None
            Consumed run after run, as :meth:`__call__` does for its scoring draws.
        draws : int
        scheduler : str | None
            Scheduler class name for the runs (``"DDIMScheduler"``, ``"DDPMScheduler"``), built from the
            pipeline's scheduler config; None: the pipeline's own scheduler.

        Returns
        -------
        list of Tensor, each (num_inference_steps, batch, C, h, w)
        """
        if scheduler is not None and scheduler not in SCHEDULERS:
            raise UsageError(
                f"Invalid value for the 'scheduler' parameter. Allowed values are {', '.join(map(repr, SCHEDULERS))} "
                f"and None, but got {scheduler!r} instead."
            )
        if int(draws) < 1:
            raise UsageError(f"Invalid value for 'draws': expected >= 1, but got {draws}.")
        embeds, maps = self._prepare_conditioning(conditioning)
        sched = self.scheduler if scheduler is None else SCHEDULERS[scheduler].from_config(self.scheduler.config)
        return [self._sample(sched, embeds, maps, int(num_inference_steps), guidance_scale, generator, None)[1]
                for _ in range(int(draws))]

    def _sample(self, scheduler, embeds, maps, steps, guidance_scale, generator, counter,
                control_guidance_scale=None):
        """One reverse-diffusion run; returns the final sample and the per-step x0 predictions.

        Returns
        -------
        x : Tensor (batch, C, h, w)
        trajectory : Tensor (steps, batch, C, h, w), on the CPU
        """
        den = self.denoiser
        device = embeds.device
        b = embeds.shape[0]
        size = den.config.sample_size
        shape = (b, den.config.in_channels, size, size)
        x = randn_tensor(shape, generator=generator, device=device, dtype=embeds.dtype) * scheduler.init_noise_sigma
        scheduler.set_timesteps(int(steps), device=device)
        guided = guidance_scale is not None and guidance_scale != 1.0
        # Two-level guidance needs maps; without them it is ordinary guidance.
        split = control_guidance_scale is not None and maps is not None
        n_branch = 3 if split else 2 if guided else 1
        if n_branch == 1:
            cond_in, drop, maps_in = embeds, None, maps
        else:
            # Branches [embed + maps, (embed without maps,) neither]: only the last drops the embedding;
            # all-zero maps switch the control off.
            cond_in = torch.cat([embeds] * n_branch)
            drop = torch.arange(n_branch * b, device=device) >= (n_branch - 1) * b
            maps_in = None if maps is None else torch.cat([maps] + [torch.zeros_like(maps)] * (n_branch - 1))
        step_kw = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        alphas = scheduler.alphas_cumprod.to(device)
        trajectory = []
        with counter if counter is not None else contextlib.nullcontext():
            for t in self.progress_bar(scheduler.timesteps):
                inp = scheduler.scale_model_input(torch.cat([x] * n_branch), t)
                tt = torch.full((inp.shape[0],), int(t), device=device, dtype=torch.long)
                eps = den(inp, tt, cond_in, spatial_maps=maps_in, drop_mask=drop)
                if split:
                    e_cm, e_c, e_u = eps.chunk(3)
                    g = 1.0 if guidance_scale is None else guidance_scale
                    eps = e_u + g * (e_c - e_u) + control_guidance_scale * (e_cm - e_c)
                elif guided:
                    e_c, e_u = eps.chunk(2)
                    eps = e_u + guidance_scale * (e_c - e_u)
                # x0 from the epsilon prediction, independent of the scheduler's own bookkeeping.
                a = alphas[int(t)]
                trajectory.append(((x - (1 - a).sqrt() * eps) / a.sqrt()).cpu())
                x = scheduler.step(eps, t, x, **step_kw).prev_sample
        return x, torch.stack(trajectory)

    # ----------------------------------------------------------------------------------------------
    def save_weights(self, path, overwrite=False, extra_metadata=None, half=False):
        """Write the denoiser weights, configs and calibrations to one safetensors file (atomically).

        ``half=True`` stores floating-point tensors in float16 (half the size; loaded back as float32).
        """
        from safetensors.torch import save_file

        meta = {
            "denoiser_class": type(self.denoiser).__name__,
            "denoiser_config": json.dumps(dict(self.denoiser.config)),
            "scheduler_class": type(self.scheduler).__name__,
            "scheduler_config": json.dumps(dict(self.scheduler.config)),
            "hallucination": json.dumps([c.to_dict() for c in self.hallucination_calibrations.values()]),
        }
        if self.vae is not None:
            from .latent import autoencoder_fingerprint

            # Sampling must decode with the same autoencoder; its fingerprint travels with the weights.
            meta["autoencoder_class"] = type(self.vae).__name__
            meta["autoencoder_fingerprint"] = autoencoder_fingerprint(self.vae)
        meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
        state = {k: v.detach().contiguous().cpu() for k, v in self.denoiser.state_dict().items()}
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        with atomic_path(Path(path), overwrite=overwrite) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def from_weights(cls, path, scheduler=None, vae=None):
        """Build a pipeline from a file written by :meth:`save_weights`.

        Parameters
        ----------
        path : path-like
        scheduler : str or diffusers scheduler | None
            ``"ddim"``/``"ddpm"`` (built from the stored training-noise config) or an instance; default: stored.
        vae : diffusers autoencoder, path of a local autoencoder folder, or None
            Required for weights trained in latent space (and checked against the stored fingerprint).
        """
        from ..utils import read_safetensors

        path = Path(path)
        state, meta = read_safetensors(path, what="generator weights")
        if meta.get("denoiser_class") not in DENOISERS:
            raise InputFileError(
                f"{path} is not a neurodecode generator file (no 'denoiser_class' among {sorted(DENOISERS)})."
            )
        den = DENOISERS[meta["denoiser_class"]].from_config(json.loads(meta["denoiser_config"]))
        den.load_state_dict(state)
        den.eval()
        sched_cfg = json.loads(meta["scheduler_config"])
        if scheduler is None or isinstance(scheduler, str):
            name = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", None: meta["scheduler_class"]}.get(scheduler)
            if name is None:
                raise UsageError(
                    f"Invalid value for the 'scheduler' parameter. Allowed values are 'ddim' and 'ddpm', "
                    f"but got {scheduler!r} instead."
                )
            scheduler = SCHEDULERS[name].from_config(sched_cfg)
        if vae is not None or "autoencoder_fingerprint" in meta:
            from .latent import check_autoencoder, load_autoencoder

            if vae is None:
                raise UsageError(
                    f"{path} was trained in the latent space of a {meta['autoencoder_class']}; "
                    "give that autoencoder (vae=... or --autoencoder DIR)."
                )
            if isinstance(vae, (str, Path)):
                vae = load_autoencoder(vae)
            check_autoencoder(vae, den.config, meta.get("autoencoder_fingerprint"))
        pipe = cls(den, scheduler, vae=vae)
        for c in json.loads(meta.get("hallucination", "[]")):
            pipe.add_calibration(HallucinationCalibration(**c))
        pipe.metadata = meta
        pipe.set_progress_bar_config(disable=True)
        return pipe
