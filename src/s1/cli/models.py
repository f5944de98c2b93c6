"""`s1 models`: where a model's files are, for tools that want a local tokenizer (lm-eval's `tokenizer=PATH`)."""

from __future__ import annotations

from typing import Annotated

import typer

from s1.cli.common import MODEL_HELP, app, out

models_app = typer.Typer(no_args_is_help=True, help="Where models' files are.")
app.add_typer(models_app, name="models")


@models_app.command("path")
def path(name: Annotated[str, typer.Argument(help=MODEL_HELP)] = "smollm2") -> None:
    """Print the directory holding a model's weights, config and tokenizer (the embedded model: its converted
    copy in s1's cache, made once)."""
    from s1.core.models import model_path

    out.print(model_path(name), markup=False)
