"""``neurodecode reconstruct``: brain data -> decoder -> generation backend -> images, scores, report.

The command is thin: it parses options and dispatches on ``--modality`` to a handler given as
``"module:function"`` in ``MODALITY_HANDLERS``; a modality adds itself with one line there. A handler
receives the parsed options as keyword arguments and returns ``(conditioning, seen_images_or_None, meta)``.
"""

import importlib
from pathlib import Path

import typer

from ..utils import UsageError

MODALITY_HANDLERS = {
    "eeg": "neurodecode._cli.reconstruct:_meeg_conditioning",
    "meg": "neurodecode._cli.reconstruct:_meeg_conditioning",
    "fmri": "neurodecode.training.neuropictor_system:fmri_conditioning",
}


def _load_input(path):
    """``.npz`` with ``X`` (n, n_chans, n_times) and optional ``images``/``embeds``, or an ``-epo.fif``."""
    import numpy as np

    from ..utils import InputFileError

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Input file {path} does not exist.")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as err:
            raise InputFileError(f"Could not read {path} as a NumPy .npz archive: {err}") from err
        return data
    if path.name.endswith(("-epo.fif", "_epo.fif", "-epo.fif.gz")):
        import mne

        return {"epochs": mne.read_epochs(path, preload=True, verbose="error")}
    raise InputFileError(
        f"Unsupported input {path}: expected a .npz (arrays X, images, embeds) or an MNE epochs file (-epo.fif)."
    )


def _meeg_conditioning(decoder, input_path, **_):
    """EEG/MEG: decode epochs with a decoder checkpoint, or take precomputed embeddings (``--decoder embeds``)."""
    from ..decoders.conditioning import BrainConditioning
    from ..utils import InputFileError

    data = _load_input(input_path)
    seen = data.get("images")
    if decoder == "embeds":
        if "embeds" not in data:
            raise InputFileError(f"--decoder embeds needs an array 'embeds' (n, d) in {input_path}.")
        return BrainConditioning(embeds=data["embeds"], meta={"decoder": "embeds from input"}), seen, {}
    try:
        from ..decoders import load_decoder
    except ImportError as err:
        raise UsageError(
            "Loading decoder checkpoints needs neurodecode.decoders.load_decoder (retrieval decoders); "
            "use --decoder embeds to reconstruct from embeddings stored in the input."
        ) from err
    dec = load_decoder(decoder)
    inst = data.get("epochs", data.get("X"))
    if inst is None:
        raise InputFileError(f"{input_path} holds no brain data: expected an array 'X' (n, n_chans, n_times) or epochs.")
    return dec.encode(inst), seen, {"decoder": str(decoder)}


def _resolve_generator(spec):
    """A path, or the name of shipped weights (``ann-digits`` -> weights/generation_ann_digits.safetensors)."""
    p = Path(spec)
    if p.exists():
        return p
    shipped = Path(__file__).resolve().parents[1] / "weights" / f"generation_{spec.replace('-', '_')}.safetensors"
    if shipped.is_file():
        return shipped
    from ..utils import InputFileError

    raise InputFileError(f"Generator {spec!r} is neither a file nor shipped weights (e.g. 'ann-digits', 'spiking-digits').")


def register(app):
    @app.command()
    def reconstruct(
        decoder: str = typer.Option(..., "--decoder", help="Decoder checkpoint, or 'embeds' to use embeddings stored in the input."),
        generator: str = typer.Option(..., "--generator", help="Generator weights (.safetensors) or a shipped name: ann-digits, spiking-digits."),
        input_path: Path = typer.Option(..., "--input", help="Brain data: .npz (X, images, embeds) or -epo.fif."),
        output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
        modality: str = typer.Option("eeg", "--modality", help="eeg, meg or fmri (NSD-style .h5 input, optionally file.h5#subject)."),
        scheduler: str = typer.Option(None, "--scheduler", help="ddim or ddpm (default: the one stored with the weights)."),
        steps: int = typer.Option(None, "--steps", help="Sampling steps (default: those the weights were calibrated for, else 20)."),
        guidance: float = typer.Option(None, "--guidance", help="Classifier-free guidance scale, 1 = none (default: stored, else 2)."),
        spike_threshold_scale: float = typer.Option(None, "--spike-threshold-scale", help="Threshold-guided sampling (spiking denoiser)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the initial noise."),
        autoencoder: str = typer.Option(None, "--autoencoder", help="Local diffusers autoencoder folder, for generators trained in its latent space."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ):
        """Reconstruct seen images from brain data; write grids, hallucination scores and an HTML report."""
        if modality not in MODALITY_HANDLERS:
            raise UsageError(
                f"Invalid value for the '--modality' option. Allowed values are "
                f"{', '.join(map(repr, sorted(MODALITY_HANDLERS)))}, but got {modality!r} instead."
            )
        mod_name, func = MODALITY_HANDLERS[modality].split(":")
        handler = getattr(importlib.import_module(mod_name), func)
        cond, seen, meta = handler(decoder=decoder, input_path=input_path, modality=modality)

        import torch

        from ..generation.pipeline import BrainToImagePipeline
        from ..generation_report import write_reconstruction_outputs

        gen_path = _resolve_generator(generator)
        pipe = BrainToImagePipeline.from_weights(gen_path, scheduler=scheduler, vae=autoencoder)
        # Defaults follow the weights, so that the stored hallucination calibration applies.
        steps = int(pipe.metadata.get("num_inference_steps", 20)) if steps is None else steps
        guidance = float(pipe.metadata.get("guidance_scale", 2.0)) if guidance is None else guidance
        out = pipe(cond, num_inference_steps=steps, guidance_scale=guidance,
                   generator=torch.Generator().manual_seed(seed), spike_threshold_scale=spike_threshold_scale)
        meta = {**meta, "generator": str(gen_path), "denoiser": type(pipe.denoiser).__name__,
                "scheduler": type(pipe.scheduler).__name__, "steps": steps, "guidance": guidance, "seed": seed,
                "modality": modality, "input": str(input_path)}
        if out.firing_rates:
            meta["mean_firing_rate"] = sum(out.firing_rates.values()) / len(out.firing_rates)
        paths = write_reconstruction_outputs(output, out.images, out.hallucination_score, out.hallucinated,
                                             out.energy, seen=seen, meta=meta, overwrite=overwrite)
        flagged = "no calibration" if out.hallucinated is None else f"{int(out.hallucinated.sum())} flagged"
        typer.echo(f"{len(out.images)} reconstructions ({flagged}), {out.energy.get('energy_mj', 0):.3g} mJ per image; "
                   f"report: {paths['report.html']}")
