"""The LightningCLI configs in pipelines/ instantiate the retrieval system and data module they name."""

from pathlib import Path

import pytest

pytest.importorskip("lightning")

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


@pytest.mark.parametrize("name, decoder, blur", [("retrieval_brain_module.yaml", "brain_module", "none"),
                                                 ("retrieval_ubp.yaml", "ubp", "uncertainty")])
def test_pipeline_config_instantiates(name, decoder, blur, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setattr("sys.argv", ["lightning"])  # LightningCLI warns when pytest's own arguments are present
    from neurodecode.training.retrieval import RetrievalDataModule, RetrievalSystem

    cli = LightningCLI(run=False, args=["--config", str(PIPELINES / name)], save_config_callback=None)
    assert isinstance(cli.model, RetrievalSystem) and isinstance(cli.datamodule, RetrievalDataModule)
    assert cli.model.hparams.decoder == decoder
    assert cli.datamodule.blur == blur
    assert cli.trainer.max_epochs == 20 and cli.datamodule.sim_kwargs["n_times"] == 80
