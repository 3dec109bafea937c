"""``neurodecode retrieve``: train a brain-to-image decoder and score zero-shot image retrieval.

The work is done by :func:`evaluate_retrieval`, which the ``evaluate`` command can call for
``--task retrieval``; this module keeps the command thin.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..utils import UsageError, atomic_path, check_option

DATA_KINDS = ("simulated", "things-eeg2", "things-meg", "table", "mindbigdata")


def _load_data(data, *, path, subject, table, image_root, image_size):
    from ..datasets import things

    if data == "things-eeg2":
        return things.read_things_eeg2(_need(path, "--path"), subject, load_images=True, image_size=image_size)
    if data == "things-meg":
        return things.read_things_meg(_need(path, "--path"), _need(table, "--table"), image_root=image_root,
                                      load_images=True, image_size=image_size)
    if data == "table":
        return things.read_image_table(_need(path, "--path"), _need(table, "--table"), image_root=image_root,
                                       image_size=image_size)
    return things.read_mindbigdata_mw(path)


def _need(value, option):
    if value is None:
        raise UsageError(f"Missing option {option}: it is required for this --data kind.")
    return value


def evaluate_retrieval(method="brain_module", data="simulated", *, blur="none", modality="eeg", snr=0.1,
                       lowpass_sigma=0.0, n_images=800, n_test=200, n_subjects=2, encoder_size=128, path=None,
                       subject=1, table=None, image_root=None, image_size=64, epochs=40, seed=0, cache_dir=None,
                       out=None, overwrite=False, save_decoder=None, forward_model="physio"):
    """Train ``method`` and report retrieval scores on the test images.

    Parameters
    ----------
    method : {"ridge", "ridge_per_subject", "brain_module", "ubp"}
    data : {"simulated", "things-eeg2", "things-meg", "table", "mindbigdata"}
        ``"simulated"`` builds the simulated paired benchmark (``modality``, ``snr``,
        ``lowpass_sigma``, ``n_images``, ``n_test``, ``n_subjects``); the others read files
        (``path``, ``subject``, ``table``, ``image_root``); ``"mindbigdata"`` is the real
        MindBigData sample (closed-set, 10 digit images).
    forward_model : {"physio", "linear"}
        Forward model of the simulated data (see :func:`~neurodecode.datasets.paired.build_simulated_pairs`).
    blur : {"none", "fixed", "uncertainty"}
        Target space (``"uncertainty"`` is UBP's blur prior).
    epochs, seed : int
    cache_dir : path-like | None
        Embedding cache.
    out : path-like | None
        Write the scores as JSON (atomically; refuses to overwrite unless ``overwrite``).
    save_decoder : path-like | None
        Also save the fitted decoder (``.safetensors``) for ``neurodecode reconstruct --decoder``.

    Returns
    -------
    dict
        top1, top5, median_rank, mrr, k-way scores, chance levels, settings.
    """
    from ..decoders.retrieval_metrics import chance_scores
    from ..training.retrieval import METHODS, RetrievalDataModule, run_retrieval

    check_option("method", method, METHODS)
    check_option("data", data, DATA_KINDS)
    if save_decoder is not None and method == "ridge_per_subject":
        # checked before training, which can take minutes
        raise UsageError("Invalid combination: '--save-decoder' saves ridge, brain_module or ubp decoders; "
                         "ridge_per_subject keeps one ridge per subject and cannot be saved.")
    paired = None
    val_mode = "concepts"
    if data != "simulated":
        paired = _load_data(data, path=path, subject=subject, table=table, image_root=image_root,
                            image_size=image_size)
        val_mode = "trials" if data == "mindbigdata" else "concepts"
    dm = RetrievalDataModule(modality=modality, snr=snr, lowpass_sigma=lowpass_sigma, n_subjects=n_subjects,
                             n_test=n_test, n_images=n_images, encoder_size=encoder_size, blur=blur,
                             cache_dir=cache_dir, seed=seed, data=paired, val_mode=val_mode,
                             forward_model=forward_model)
    scores, model = run_retrieval(dm, method, max_epochs=epochs, seed=seed)
    if save_decoder is not None:
        from ..decoders import save_decoder as _save

        _save(model, save_decoder, overwrite=overwrite)
    scores["chance"] = chance_scores(scores["n_candidates"])
    scores["data"] = data
    scores["simulated"] = bool(dm.data.meta.get("simulated", False))
    scores["settings"] = {"snr": snr, "lowpass_sigma": lowpass_sigma, "modality": modality, "epochs": epochs,
                          "seed": seed, "n_images": n_images, "forward_model": forward_model} if data == "simulated" else {"seed": seed, "epochs": epochs}
    if out is not None:
        with atomic_path(Path(out), overwrite=overwrite) as tmp:
            Path(tmp).write_text(json.dumps(scores, indent=2, default=float))
    return scores


def register(app):
    @app.command("retrieve")
    def retrieve(
        method: str = typer.Option("brain_module", help="ridge, ridge_per_subject, brain_module or ubp."),
        data: str = typer.Option("simulated", help="simulated, things-eeg2, things-meg, table or mindbigdata."),
        blur: str = typer.Option("none", help="Target space: none, fixed or uncertainty (UBP's blur prior)."),
        modality: str = typer.Option("eeg", help="Simulated data: eeg or meg."),
        snr: float = typer.Option(0.1, help="Simulated data: signal-to-noise power ratio per trial."),
        lowpass: float = typer.Option(0.0, help="Simulated data: blur (px at 224) of what the brain carries."),
        n_images: int = typer.Option(800, help="Simulated data: number of real images."),
        path: Path = typer.Option(None, help="THINGS-EEG2 root, THINGS-MEG/-table epochs file, or MindBigData CSV."),
        subject: int = typer.Option(1, help="THINGS-EEG2 subject."),
        table: Path = typer.Option(None, help="Stimulus / sample-attribute table (CSV or TSV)."),
        image_root: Path = typer.Option(None, help="Folder the table's image paths are relative to."),
        epochs: int = typer.Option(40, help="Maximum training epochs (best validation epoch kept)."),
        seed: int = typer.Option(0),
        cache_dir: Path = typer.Option(None, help="HDF5 embedding cache folder."),
        out: Path = typer.Option(None, help="Write the scores to this JSON file."),
        overwrite: bool = typer.Option(False, help="Replace an existing --out / --save-decoder file."),
        save_decoder: Path = typer.Option(None, help="Save the fitted decoder (.safetensors) for reconstruct --decoder."),
        forward_model: str = typer.Option("physio", help="Simulated data: physio or linear forward model."),
    ):
        """Train a retrieval decoder and print top-1/top-5/median rank among the test images."""
        s = evaluate_retrieval(method, data, blur=blur, modality=modality, snr=snr, lowpass_sigma=lowpass,
                               n_images=n_images, path=path, subject=subject, table=table, image_root=image_root,
                               epochs=epochs, seed=seed, cache_dir=cache_dir, out=out, overwrite=overwrite,
                               save_decoder=save_decoder, forward_model=forward_model)
        kind = "SIMULATED data" if s["simulated"] else f"data: {data}"
        typer.echo(f"{method} (blur={blur}) on {kind}: top-1 {100 * s['top1']:.1f} %, top-5 {100 * s['top5']:.1f} %, "
                   f"median rank {s['median_rank']:.0f} of {s['n_candidates']} "
                   f"(chance top-1 {100 * s['chance']['top1']:.1f} %, top-5 {100 * s['chance']['top5']:.1f} %)")
