"""What every command shares: the Typer app, the two consoles, shared options, and how a failure is worded.

The commands are thin: parse options, call the library, print. Every failure ends as one `Error:` line and
an exit code, never a traceback; a library error about a setting is worded with the running command's own
flag for it (`UserError.worded`): `--base-url` for s1 generate, `--upstream` for s1 serve.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from s1.core import signals
from s1.core.errors import UserError
from s1.core.signals import Terminated

# add_completion: typer's --install-completion / --show-completion (bash, zsh, fish, PowerShell), click's own
# completion underneath, so options and choices complete as declared
app = typer.Typer(
    add_completion=True, no_args_is_help=True, help="s1: budget forcing and test-time scaling for reasoning models."
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

RemoteMode = Literal["auto", "ids", "text"]
REMOTE_MODE_HELP = (
    "--engine remote: ids (token ids: vLLM, s1 serve), text (llama.cpp's server) or auto (ask each server once)."
)
MODEL_HELP = "smollm2 (embedded), a model directory, a .gguf file or a hub id."
FormatOpt = Annotated[
    str,
    typer.Option("--format", help="Thinking format: s1, r1, or none (a plain chat answer, no thinking block opened)."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")]
DtypeOpt = Annotated[
    str,
    typer.Option(help="auto (float32 on CPU, bf16 on GPU), float32 (as the paper evaluated), bfloat16, float16."),
]
BaseUrlsOpt = Annotated[
    list[str] | None,
    typer.Option("--base-url", help="OpenAI-compatible server(s) for --engine remote; repeat for several."),
]


class _Running:
    """The subcommand being run (its click command), so an error can be worded with its own flags."""

    command = None


def _print_version(value: bool) -> None:
    if value:
        from s1.core.version import __version__

        out.print(f"s1 {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print s1's version and exit."),
    ] = False,
) -> None:
    """s1: budget forcing and test-time scaling for reasoning models."""
    if ctx.invoked_subcommand:
        _Running.command = ctx.command.get_command(ctx, ctx.invoked_subcommand)


def flag(setting: str) -> str:
    """The running command's option for a setting (a parameter is named for the setting it feeds, however the
    option is spelt: serve's `base_urls` is --upstream). A setting the command has no option for keeps its own
    name: s1 curate's settings are keys of its config file."""
    for param in getattr(_Running.command, "params", ()):
        if param.name == setting and getattr(param, "opts", None):
            return next((o for o in param.opts if o.startswith("--")), param.opts[0])
    return setting


def names(text: str) -> list[str]:
    """'a, b,' -> ['a', 'b']."""
    return [p.strip() for p in text.split(",") if p.strip()]


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _error(message: str) -> None:
    """The one line a failed command prints; user text is escaped, so `[/]` in a value cannot break it."""
    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)


def _click_failure(exc: BaseException) -> int | None:
    """Exit code for click's (or typer's bundled copy of click's) exceptions, after printing one line.

    Matched by behaviour rather than class, because typer may raise its own copies of click's classes."""
    kind = type(exc).__name__
    if kind == "Abort":
        err.print("Interrupted.")
        return 130
    if kind == "NoArgsIsHelpError" or (kind == "UsageError" and "Missing command" in str(exc)):
        # typer has printed the help already
        _error('No command given; run one of the commands above, e.g. s1 generate "What is 7*8?".')
        return 2
    if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
        message = " ".join(exc.format_message().split()).rstrip(".") + "."
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "s1"
        hint = f" Run '{command} --help' for the options." if exc.exit_code == 2 else ""
        _error(message + hint)
        return exc.exit_code
    if hasattr(exc, "exit_code"):  # click.exceptions.Exit / typer.Exit
        return exc.exit_code
    return None


def _undecodable_argument(args: list[str]) -> str | None:
    """The sentence for the first argument that is not valid UTF-8. Python hands such bytes over as lone
    surrogates (PEP 383), which no tokenizer, file or JSON output can take; refused here, naming the option."""
    for index, arg in enumerate(args):
        bad = next((c for c in arg if "\ud800" <= c <= "\udfff"), None)
        if bad is None:
            continue
        if arg.startswith("--") and "=" in arg:
            where = f"The value of {arg.split('=', 1)[0]}"
        elif index and args[index - 1].startswith("-") and not any("\ud800" <= c <= "\udfff" for c in args[index - 1]):
            where = f"The value of {args[index - 1]}"
        else:
            where = f"Argument {index + 1}"
        byte = f" (byte 0x{ord(bad) - 0xDC00:02x})" if "\udc80" <= bad <= "\udcff" else ""
        return (
            f"{where} is not valid UTF-8 text{byte}; pass it in UTF-8 (check the terminal's or the script's encoding)."
        )
    return None


def main() -> None:
    _quiet_libraries()
    undecodable = _undecodable_argument(sys.argv[1:])
    if undecodable:
        _error(undecodable)
        sys.exit(2)
    signals.install()
    if hasattr(signal, "SIGXFSZ"):  # past `ulimit -f` a write fails (and is said in one sentence) instead of killing
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        # prog_name: `python -m s1` is still s1 in help, errors and the completion variable (_S1_COMPLETE)
        result = app(standalone_mode=False, prog_name="s1")
        code = result if isinstance(result, int) else 0
        if code == 130:  # typer turns Ctrl-C into a silent exit code 130
            err.print("Interrupted.")
    except UserError as exc:
        # a bad value is framed as click frames its own ("Invalid value for '--seed': ...")
        _error(exc.worded(flag, lead="Invalid value for '{}': "))
        code = 1
    except KeyboardInterrupt:
        err.print("Interrupted.")
        code = 130
    except Terminated:
        err.print("Terminated.")
        code = 143
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        code = _click_failure(exc)
        if code is None:
            raise
    if signals.received() is not None and code not in (130, 143):  # its exception was swallowed on the way
        interrupted = signals.received() == signal.SIGINT
        err.print("Interrupted." if interrupted else "Terminated.")
        code = 130 if interrupted else 143
    sys.exit(code)
