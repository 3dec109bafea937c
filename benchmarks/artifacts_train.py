"""Train AT-AT or one baseline on a denoising store with a fixed CPU-time budget.

    python benchmarks/artifacts_train.py --artifact emg --model atat --ship
    python benchmarks/artifacts_train.py --artifact emg --model fcnn

Every model gets the same data pipeline, optimiser family, CPU budget (``cpu_budget_s`` of
``pipelines/atat_<artifact>.yaml`` unless ``--cpu-budget-s``; one thread) and selection rule (best
validation RRMSE, checked once per epoch of fresh pairs; the test split is never read). Weights go to ``build/artifacts_models/``;
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


class _KeepBest:
    """Lightning callback keeping the state dict with the lowest validation RRMSE in memory, and
    stopping once this process has used ``cpu_budget_s`` seconds of CPU time (CPU time, not wall
    time, so that every model gets the same compute however busy the shared machine is)."""

    def __new__(cls, cpu_budget_s):
        import lightning as L

        class KeepBest(L.Callback):
            def __init__(self):
                self.best, self.state, self.epoch, self.history = float("inf"), None, -1, []
                self.t0 = time.process_time()
                self.steps = 0

            def on_train_batch_end(self, trainer, *args):
                self.steps += 1
                if time.process_time() - self.t0 > cpu_budget_s:
                    trainer.should_stop = True

            def on_validation_end(self, trainer, pl_module):
                v = float(trainer.callback_metrics.get("val_rrmse", float("inf")))
                self.history.append(v)
                if v < self.best:
                    self.best, self.epoch = v, trainer.current_epoch
                    self.state = copy.deepcopy(pl_module.net.state_dict())

        return KeepBest()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", choices=("emg", "eog"), required=True)
    p.add_argument("--model", default="atat", choices=("atat", "fcnn", "simple_cnn", "complex_cnn", "rnn", "novel_cnn"))
    p.add_argument("--cpu-budget-s", type=float, default=None,
                   help="CPU seconds of training (default: cpu_budget_s in the pipeline file)")
    p.add_argument("--ship", action="store_true")
    p.add_argument("--out", default=str(ROOT / "build" / "artifacts_models"))
    a = p.parse_args(argv)

    torch.set_num_threads(1)
    import lightning as L
    from safetensors.torch import save_file

    from neurodecode.artifacts.atat import ATAT
    from neurodecode.training.atat_system import ATATSystem, BaselineSystem, DenoiseDataModule, tune_gate

    cfg = yaml.safe_load((ROOT / "pipelines" / f"atat_{a.artifact}.yaml").read_text())
    L.seed_everything(cfg["seed_everything"], verbose=False)
    tr = dict(cfg["trainer"])
    budget = a.cpu_budget_s or cfg["cpu_budget_s"]
    dm = DenoiseDataModule(**{**cfg["data"]["init_args"], "store": str(ROOT / cfg["data"]["init_args"]["store"])})
    system = ATATSystem(**cfg["model"]["init_args"]) if a.model == "atat" else BaselineSystem(a.model, 512, cfg["model"]["init_args"]["lr"])
    keep = _KeepBest(budget)
    trainer = L.Trainer(**tr, callbacks=[keep], enable_progress_bar=False, enable_model_summary=False)
    t0, c0 = time.time(), time.process_time()
    trainer.fit(system, dm)
    secs, cpu = time.time() - t0, time.process_time() - c0
    if keep.state is not None:  # else no validation ran: keep the last weights
        system.net.load_state_dict(keep.state)
    n_params = sum(p.numel() for p in system.net.parameters())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"model": a.model, "artifact": a.artifact, "params": n_params, "train_seconds": round(secs, 1), "train_cpu_seconds": round(cpu, 1),
            "steps": keep.steps, "batch_size": dm.batch_size, "val_history": keep.history,
            "epochs": trainer.current_epoch, "best_epoch": keep.epoch, "best_val_rrmse": keep.best,
            "items_per_epoch": dm.items_per_epoch, "seed": cfg["seed_everything"]}
    if a.model == "atat":
        tau, table = tune_gate(system.net, dm.val_x.numpy(), dm.val_y.numpy(), dm.val_clean_only)
        system.net.tau.fill_(tau)
        system.net.config["tau"] = tau
        info["tau"] = tau
        info["gate_table"] = table
        info["params_discriminator_training_only"] = sum(p.numel() for p in system.disc.parameters())
        model = ATAT(system.net, a.artifact, 256.0, 1.0 if a.artifact == "emg" else 0.3,
                     meta={"train": info, "store_config_hash": _store_hash(dm.store)})
        model.save(out / f"atat_{a.artifact}.safetensors")
        if a.ship:
            (ROOT / "neurodecode" / "weights").mkdir(exist_ok=True)
            model.save(ROOT / "neurodecode" / "weights" / f"atat_{a.artifact}.safetensors")
    else:
        save_file({k: v.contiguous() for k, v in system.net.state_dict().items()},
                  str(out / f"{a.model}_{a.artifact}.safetensors"), metadata={"info": json.dumps(info)})
    (out / f"{a.model}_{a.artifact}.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k != "gate_table"}))


def _store_hash(path):
    from neurodecode.io import WindowStore

    with WindowStore(path) as st:
        return str(st.config_hash)


if __name__ == "__main__":
    main()
