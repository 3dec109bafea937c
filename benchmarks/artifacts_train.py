"""Train AT-AT or one baseline on a denoising store with a fixed CPU-time budget.

    python benchmarks/artifacts_train.py --artifact emg --model atat --ship
    python benchmarks/artifacts_train.py --artifact emg --model fcnn

Every model gets the same data pipeline, optimiser family, CPU budget and learning-rate schedule
(the ``CPUBudget`` callback of ``pipelines/atat_<artifact>.yaml``, ``--cpu-budget-s`` overrides it;
one thread) and selection rule (best validation RRMSE, checked once per epoch of fresh pairs and
once more when the budget runs out; the test split is never read). The pipeline file is a plain
LightningCLI config (``neurodecode train pipelines/atat_emg.yaml`` trains the AT-AT system with
it); this script adds the baselines, the final validation, the gate calibration and the export. Weights go to ``build/artifacts_models/``;
``--ship`` also writes the AT-AT weights to ``neurodecode/weights/atat_<artifact>.safetensors``.
"""

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", choices=("emg", "eog"), required=True)
    p.add_argument("--model", default="atat", choices=("atat", "fcnn", "simple_cnn", "complex_cnn", "rnn", "novel_cnn"))
    p.add_argument("--cpu-budget-s", type=float, default=None,
                   help="CPU seconds of training (default: cpu_budget_s in the pipeline file)")
    p.add_argument("--ship", action="store_true")
    p.add_argument("--lambda-spec", type=float, default=None, help="override the AT-AT spectral loss weight")
    p.add_argument("--calibrate-only", action="store_true",
                   help="only (re)calibrate the gate of build/artifacts_models/atat_<artifact>.safetensors")
    p.add_argument("--tag", default="", help="suffix of the output files (recipe comparisons)")
    p.add_argument("--out", default=str(ROOT / "build" / "artifacts_models"))
    a = p.parse_args(argv)

    torch.set_num_threads(1)
    import lightning as L
    from safetensors.torch import save_file

    from neurodecode.artifacts.atat import ATAT
    from neurodecode.training.atat_system import (ATATSystem, BaselineSystem, CPUBudget, DenoiseDataModule,
                                                  _rrmse, gate_calibration)

    cfg = yaml.safe_load((ROOT / "pipelines" / f"atat_{a.artifact}.yaml").read_text())
    L.seed_everything(cfg["seed_everything"], verbose=False)
    if a.calibrate_only:
        return _calibrate_only(a, cfg)
    tr = dict(cfg["trainer"])
    (cb,) = [c for c in tr.pop("callbacks") if c["class_path"].endswith("CPUBudget")]
    cb_args = dict(cb.get("init_args", {}))
    if a.cpu_budget_s:
        cb_args["cpu_budget_s"] = a.cpu_budget_s
    dm = DenoiseDataModule(**{**cfg["data"]["init_args"], "store": str(ROOT / cfg["data"]["init_args"]["store"])})
    margs = dict(cfg["model"]["init_args"])
    if a.lambda_spec is not None:
        margs["lambda_spec"] = a.lambda_spec
    system = ATATSystem(**margs) if a.model == "atat" else BaselineSystem(a.model, 512, margs["lr"])
    keep = CPUBudget(**cb_args)
    trainer = L.Trainer(**tr, callbacks=[keep], enable_progress_bar=False, enable_model_summary=False)
    t0, c0 = time.time(), time.process_time()
    trainer.fit(system, dm)
    # the budget usually runs out inside an epoch: validate the last weights too
    system.eval()
    with torch.no_grad():
        last = float(_rrmse(system.net(dm.val_y), dm.val_x))
    keep.history.append(round(last, 5))
    if last < keep.best:
        keep.best, keep.epoch, keep.state = last, trainer.current_epoch, None
    secs, cpu = time.time() - t0, time.process_time() - c0
    if keep.state is not None:  # else the last weights are the best
        system.net.load_state_dict(keep.state)
    n_params = sum(p.numel() for p in system.net.parameters())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"model": a.model, "artifact": a.artifact, "params": n_params, "train_seconds": round(secs, 1), "train_cpu_seconds": round(cpu, 1),
            "steps": keep.steps, "batch_size": dm.batch_size, "val_history": keep.history,
            "epochs": trainer.current_epoch, "best_epoch": keep.epoch, "best_val_rrmse": keep.best,
            "items_per_epoch": dm.items_per_epoch, "seed": cfg["seed_everything"],
            "cpu_budget_s": keep.cpu_budget_s, "lr_schedule": {"lr": margs["lr"], "warmup_frac": keep.warmup_frac,
                                                              "final_lr_frac": keep.final_lr_frac}}
    if a.model == "atat":
        info["lambda_spec"] = margs.get("lambda_spec", 0.0)
        info["lambda_adv"] = margs.get("lambda_adv")
        (tau, tau_hi), gate = gate_calibration(system.net, dm.val_x, dm.val_y, dm.val_clean_only)
        _set_gate(system.net, tau, tau_hi)
        info["tau"], info["tau_hi"], info["gate"] = tau, tau_hi, gate
        info["params_discriminator_training_only"] = sum(p.numel() for p in system.disc.parameters())
        model = ATAT(system.net, a.artifact, 256.0, 1.0 if a.artifact == "emg" else 0.3,
                     meta={"train": info, "store_config_hash": _store_hash(dm.store)})
        model.save(out / f"atat_{a.artifact}{a.tag}.safetensors")
        if a.ship:
            (ROOT / "neurodecode" / "weights").mkdir(exist_ok=True)
            model.save(ROOT / "neurodecode" / "weights" / f"atat_{a.artifact}.safetensors")
    else:
        save_file({k: v.contiguous() for k, v in system.net.state_dict().items()},
                  str(out / f"{a.model}_{a.artifact}{a.tag}.safetensors"), metadata={"info": json.dumps(info)})
    (out / f"{a.model}_{a.artifact}{a.tag}.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


def _set_gate(net, tau, tau_hi):
    net.tau.fill_(tau)
    net.tau_hi.fill_(tau_hi)
    net.config["tau"], net.config["tau_hi"] = tau, tau_hi


def _calibrate_only(a, cfg):
    """Re-run the gate calibration (validation data only) on trained weights, keep their training record."""
    from neurodecode.artifacts.atat import ATAT
    from neurodecode.training.atat_system import DenoiseDataModule, gate_calibration

    dm = DenoiseDataModule(**{**cfg["data"]["init_args"], "store": str(ROOT / cfg["data"]["init_args"]["store"])})
    dm.setup()
    path = Path(a.out) / f"atat_{a.artifact}{a.tag}.safetensors"
    model = ATAT.from_pretrained(path=path)
    (tau, tau_hi), gate = gate_calibration(model.net, dm.val_x, dm.val_y, dm.val_clean_only)
    _set_gate(model.net, tau, tau_hi)
    info = model.meta.get("train", {})
    info.update({"tau": tau, "tau_hi": tau_hi, "gate": gate})
    model.meta["train"] = info
    model.save(path)
    if a.ship:
        model.save(ROOT / "neurodecode" / "weights" / f"atat_{a.artifact}.safetensors")
    (Path(a.out) / f"atat_{a.artifact}{a.tag}.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: gate[k] for k in ("tau", "tau_hi", "rrmse_ungated", "chosen")}))


def _store_hash(path):
    from neurodecode.io import WindowStore

    with WindowStore(path) as st:
        return str(st.config_hash)


if __name__ == "__main__":
    main()
