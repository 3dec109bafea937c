"""``neurodecode dataset build RECIPE.yaml``: rebuild a dataset store from its recipe."""

from pathlib import Path
from typing import Optional

import typer


def register(app):
    ds = typer.Typer(help="Build dataset stores from recipes in datasets/*.yaml.", no_args_is_help=True)

    @ds.command("build")
    def build(
        recipe: Path = typer.Argument(..., help="Recipe file, e.g. datasets/denoise_emg.yaml."),
        out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output .h5 (default build/datasets/<name>.h5)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    ):
        """Build the HDF5 window store a recipe describes (sources checked by sha256; bit-for-bit reproducible)."""
        from ..datasets.denoise import build_from_recipe, load_recipe
        from ..utils import InputFileError

        kind = load_recipe(recipe)["builder"]
        if not kind.startswith("denoise"):
            raise InputFileError(f"{recipe}: unknown builder {kind!r}.")
        path = build_from_recipe(recipe, out, overwrite=overwrite)
        typer.echo(f"wrote {path}")

    app.add_typer(ds, name="dataset")
