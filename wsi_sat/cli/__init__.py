"""Command-line interface: parse, build the config, call the library, map errors to exit codes.

Exit codes: 0 success; 2 a user or environment problem (one-line message on stderr, no
traceback); 1 an internal error (a bug: please report it with the traceback).
"""

from __future__ import annotations

import logging
import sys

import click

from wsi_sat import __version__
from wsi_sat.errors import WsiSatError

log = logging.getLogger("wsi_sat")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname).1s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("PIL", "matplotlib", "distributed", "fsspec", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class _Group(click.Group):
    """Turns WsiSatError (and a full, read-only or forbidden disk) into a one-line message and
    exit code 2; Ctrl-C into exit code 130 with where to resume."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from wsi_sat.writers.atomic import DISK_ERRORS

        try:
            return super().invoke(ctx)
        except WsiSatError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:  # one line, like every other user mistake
            where = f" (see `wsi-sat {exc.ctx.info_name} --help`)" if exc.ctx else ""
            click.echo(f"error: {exc.format_message()}{where}", err=True)
            ctx.exit(2)
        except OSError as exc:
            if exc.errno not in DISK_ERRORS:
                raise
            where = f" '{exc.filename}'" if exc.filename else ""
            click.echo(f"error: cannot write{where}: {exc.strerror}; free space or fix the "
                       "permissions, then rerun with --resume", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished batches are kept; rerun the same command with "
                       "--resume to continue", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsi-sat")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def app(verbose: int, quiet: bool) -> None:
    """wsi-sat: segment a tissue structure everywhere from ONE annotated example."""
    _setup_logging(verbose, quiet)


from wsi_sat.cli.admin import check, config_group, demo, models, view
from wsi_sat.cli.images import eval_cmd, segment
from wsi_sat.cli.references import reference_group
from wsi_sat.cli.slides import run

for _command in (segment, run, reference_group, eval_cmd, check, view, models, config_group,
                 demo):
    app.add_command(_command)


def main() -> None:  # pragma: no cover - console entry point
    app()
