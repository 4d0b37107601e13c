"""The ``convcli`` command line: click commands over the library, no numeric code.

Each command resolves its options, calls the library, and turns a
:class:`~convcli.errors.ConvcliError` into one line ``Error: ...`` on stderr
with exit code 1 (run-time failure) or 2 (bad command line).  ``--debug``
shows the traceback instead.  Library modules are imported inside the
commands so that ``--help`` answers at once.

Modules: :mod:`.common` (error handling and every shared option, defined once),
:mod:`.filter_cmds` (apply, blur, sharpen, edge, batch), :mod:`.compare_cmd`,
:mod:`.math_cmds` (explain, probe) and :mod:`.kernels_cmd`.
"""

from __future__ import annotations

import click

from .. import __version__
from .common import debug_option, handle_errors
from .compare_cmd import compare
from .filter_cmds import apply, batch, blur, edge, sharpen
from .identify_cmds import add_commands
from .kernels_cmd import kernels
from .math_cmds import explain, probe


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="convcli")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Blur, sharpen and edge-detect images with exact convolution or correlation.

    \b
    Examples:
      convcli blur photo.jpg -o soft.jpg --sigma 3
      convcli apply photo.jpg -k sobel:axis=x --op correlate --range offset -o gx.png
      convcli kernels show gaussian:sigma=1
    """
    if ctx.invoked_subcommand is None:  # plain `convcli`: the help, on stdout, exit 0
        click.echo(ctx.get_help())


for _command in (apply, blur, sharpen, edge, compare, explain, probe, batch, kernels):
    main.add_command(_command)
add_commands(main, handle_errors=handle_errors, debug_option=debug_option)


def run() -> None:  # pragma: no cover - console entry for python -m
    main(prog_name="convcli")
