"""The ``nbank`` command: argument parsing and printing only; the work is in the API.

Data goes to stdout, diagnostics to stderr. Exit status: 0 success, 1 failure,
2 usage error. A user error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from nbank_core.cli_output import (
    PROG,
    UsageError,
    _err,
    _metadata,
    _out,
    _userpwd,
)

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (exit 2), pointing at --help."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix(PROG).strip()
        _err(f"{where + ': ' if where else ''}{message} (see '{self.prog} --help')")
        sys.exit(2)


def _umask(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"umask must be octal, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from nbank_core import __version__

    p = _Parser(
        prog=PROG, description="Register and archive the resources of experiments."
    )
    p.add_argument(
        "-v", "--version", action="version", version=f"%(prog)s {__version__}"
    )
    p.add_argument(
        "-r",
        "--registry",
        help="registry URL (default: $NBANK_REGISTRY, else the "
        "embedded registry in your data directory)",
    )
    p.add_argument(
        "-a", "--auth", type=_userpwd, metavar="USER:PASSWORD", help="registry login"
    )
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        help="how long to wait for each answer of a registry server (default: "
        "$NBANK_TIMEOUT, else 30); a read is tried 3 times",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )

    c = sub.add_parser("init", help="create and register a new archive")
    c.add_argument("directory")
    c.add_argument("-n", "--name", help="archive name (default: directory name)")
    c.add_argument("-u", "--umask", type=_umask, default=0o002, help="octal umask")
    c.add_argument("-g", "--group", help="group owning the archive's files")
    c.add_argument("--shared", action="store_true", help="record no owner")
    c.add_argument(
        "--register",
        action="store_true",
        help="register an existing archive at its current place (after moving it)",
    )
    c.set_defaults(func=cmd_init)

    c = sub.add_parser("registry", help="manage the embedded registry")
    rsub = c.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    r = rsub.add_parser(
        "init", help="create the embedded registry named by -r (or the default)"
    )
    r.set_defaults(func=cmd_registry_init)

    c = sub.add_parser("deposit", help="register files and move them into an archive")
    c.add_argument("archive")
    c.add_argument("files", nargs="*")
    c.add_argument("-d", "--dtype", required=True, help="registered datatype")
    _metadata(c, "-k", "metadata", "metadata of every file (repeatable)")
    c.add_argument("-H", "--hash", action="store_true", help="register sha1 hashes")
    c.add_argument("-A", "--auto-id", action="store_true", help="registry assigns ids")
    c.add_argument(
        "-j",
        "--json-out",
        dest="json",
        action="store_true",
        help="each file as a JSON line: source and id, or source and error",
    )
    c.add_argument(
        "-J",
        "--json-lines",
        action="store_true",
        help="each file as a JSON line with its status, path and sha1 as well",
    )
    c.add_argument("--experimenter", metavar="USER", help="who made the data")
    c.add_argument("--animal", metavar="ID", help="the animal's full identifier")
    c.add_argument(
        "--zip-directories",
        action="store_true",
        help="deposit each directory as a zip of its contents (left in place)",
    )
    c.add_argument(
        "--no-file-metadata",
        action="store_true",
        help="read no metadata from the files (none is read: accepted for scripts)",
    )
    c.add_argument(
        "--override-file-metadata",
        action="store_true",
        help="given metadata wins over the files' (none is read: accepted)",
    )
    c.add_argument("-y", "--dry-run", action="store_true", help="check, change nothing")
    c.add_argument("--keep", action="store_true", help="copy, leave the sources")
    c.add_argument("-@", dest="stdin", action="store_true", help="file names on stdin")
    c.set_defaults(func=cmd_deposit)

    from nbank_core import cli_archives, cli_records

    cli_records.add_commands(sub)

    c = sub.add_parser("verify", help="find the registered resource of each file")
    c.add_argument("files", nargs="+")
    c.set_defaults(func=cmd_verify)

    c = sub.add_parser("dtype", help="list or add datatypes")
    dsub = c.add_subparsers(dest="dtype_command", metavar="ACTION", required=True)
    d = dsub.add_parser("list", help="list datatypes")
    d.add_argument("-j", "--json", action="store_true", help="JSON lines output")
    d.set_defaults(func=cli_records.cmd_dtype_list)
    d = dsub.add_parser("add", help="add a datatype")
    d.add_argument("name")
    d.add_argument("content_type")
    d.add_argument("-e", "--extension", help="default file extension")
    d.set_defaults(func=cmd_dtype_add)

    cli_archives.add_commands(sub)
    from nbank_core import cli_growth

    cli_growth.add_commands(sub)
    _name_parsers(p)
    return p


def _name_parsers(p: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser knows itself (``args.parser``), so a usage
    error points at that command's help; ``own_registry`` defaults to False."""
    if p.prog == PROG:
        p.set_defaults(own_registry=False)
    p.set_defaults(parser=p)
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for c in dict.fromkeys(action.choices.values()):
                _name_parsers(c)


# -- commands -------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from nbank_core.api import init_archive, register_archive

    if args.register:
        cfg, added = register_archive(
            args.directory,
            registry=args.registry,
            name=args.name,
            auth=args.auth,
        )
        _err(
            f"registered the archive '{cfg.path}' in {cfg.registry}; {added} "
            "resource(s) now located there"
        )
        _out(str(cfg.path))
        return 0
    cfg = init_archive(
        args.directory,
        registry=args.registry,
        name=args.name,
        umask=args.umask,
        group=args.group,
        shared=args.shared,
        auth=args.auth,
    )
    _err(f"initialized archive '{cfg.path}' in registry {cfg.registry}")
    _out(str(cfg.path))
    return 0


def cmd_registry_init(args: argparse.Namespace) -> int:
    from nbank_core.config import resolve_settings
    from nbank_core.registry import is_embedded_url

    settings = resolve_settings(args.registry, auth=args.auth)
    if not is_embedded_url(settings.registry):
        raise UsageError(
            f"{settings.registry} is a server: 'registry init' creates embedded "
            "registries only (a server is set up by its administrator)"
        )
    with settings.open(create=True) as reg:
        reg.list_datatypes()  # the first request creates the file
        info = reg.info()
    _err(f"{info['name']} ready at {settings.registry}")
    _out(settings.registry)
    return 0


def cmd_deposit(args: argparse.Namespace) -> int:
    import threading

    from nbank_core.config import resolve_settings
    from nbank_core.errors import AuthError
    from nbank_core.transaction import deposit

    files = list(args.files)
    if args.stdin:
        files += [line.strip() for line in sys.stdin if line.strip()]
    if not files:
        raise UsageError("deposit: no files given")
    settings = resolve_settings(
        args.registry, archive=args.archive, auth=args.auth, timeout=args.timeout
    )
    metadata = dict(args.metadata)
    for field in ("experimenter", "animal"):
        if getattr(args, field) is not None:
            metadata[field] = getattr(args, field)
    zipped: dict[str, str] = {}  # zip deposited -> the directory it holds
    if args.zip_directories:
        files = _zip_directories(files, zipped)
    progress = _Progress(len(files)) if sys.stderr.isatty() and len(files) > 1 else None
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    skipped_reason: list[str] = []
    refused: list[str] = []  # the registry refused the login: said once, at the end

    def report(r: Any) -> None:
        if progress is not None:
            progress.step()
        if r.status == "skipped":
            counts["skipped"] += 1
            skipped_reason[:] = [r.error or "stopped"]
        elif isinstance(r.exception, AuthError):
            counts["failed"] += 1
            refused[:] = [r.error]
        elif not r.ok:
            counts["failed"] += 1
            _err(r.error if str(r.source) in r.error else f"{r.source}: {r.error}")
        else:
            counts["ok"] += 1
            if r.error:  # archived, with a warning
                _err(f"{r.source}: {r.error}")
        if args.json_lines:
            _out(json.dumps(r.as_dict()))
        elif args.json:
            _out(json.dumps(_short_record(r, zipped, metadata)))

    def summary(signalled: list[Any]) -> int:
        if progress is not None:
            progress.done()
        sys.stdout.flush()  # what was archived is out before the summary
        if signalled:
            _err(
                f"interrupted by {signalled[0]}: {counts['ok']} of {len(files)} "
                f"files archived, {counts['skipped']} not attempted; run the same "
                "command again to deposit the rest"
            )
            return 128 + signalled[1]
        failed = counts["failed"] + counts["skipped"]
        if refused:  # one line: the refusal and what it cost, not one per file
            _err(f"{failed} of {len(files)} file(s) not deposited: {refused[0]}")
            return 1
        if counts["skipped"]:
            _err(f"{counts['skipped']} file(s) {skipped_reason[0]}")
        if failed and len(files) > 1:
            _err(f"{failed} of {len(files)} files were not deposited")
        return 1 if failed else 0

    stop = threading.Event()
    # the handlers stay until the report is written: a signal that comes as the
    # last item finishes is answered with the summary, not by dying unflushed
    with (
        settings.open() as reg,
        _stop_on_signals(stop) as signalled,
        _removed_after(zipped),
    ):
        deposit(
            settings.archive_config(),
            files,
            dtype=args.dtype,
            metadata=metadata,
            hash=args.hash,
            auto_id=args.auto_id,
            registry=reg,
            dry_run=args.dry_run,
            keep_source=args.keep,
            on_result=report,
            stop=stop,
        )
        return summary(signalled)


def _short_record(r: Any, zipped: dict[str, str], metadata: dict) -> dict:
    """One deposited file as ``-j`` prints it: ``source`` and ``id`` (a dry run
    adds ``dry_run`` and ``metadata``, a zipped directory ``zipped``), or
    ``source`` and ``error``."""
    from pathlib import Path

    zip_of = zipped.get(str(r.source))
    out: dict[str, Any] = {"source": str(Path(zip_of or r.source))}
    if not r.ok:
        gone = not os.path.lexists(r.source)  # in neurobank 0.13's words
        return {**out, "error": "does not exist" if gone else r.error or r.status}
    out["id"] = r.id
    if r.status == "dry-run":
        out.update(dry_run=True, metadata=metadata)
    if zip_of is not None:
        out["zipped"] = True
    return out


def _zip_directories(files: list[str], zipped: dict[str, str]) -> list[str]:
    """Each directory among ``files`` zipped (canonically) into a temp directory
    beside it (the deposit refuses sources inside the archive); the zip is
    deposited, the directory stays."""
    import tempfile
    from pathlib import Path

    from nbank_core.zipdir import zip_directory

    out = []
    for f in files:
        if not Path(f).is_dir() or Path(f).is_symlink():
            out.append(f)
            continue
        tmp = Path(tempfile.mkdtemp(prefix=".nbank-zip-", dir=Path(f).resolve().parent))
        z = str(zip_directory(f, tmp / f"{Path(f).resolve().name}.zip"))
        zipped[z] = f
        out.append(z)
    return out


@contextlib.contextmanager
def _removed_after(zipped: dict[str, str]) -> Iterator[None]:
    """Removes the zips made for a deposit (those not moved into the archive)."""
    import shutil
    from pathlib import Path

    try:
        yield
    finally:
        for z in zipped:
            shutil.rmtree(Path(z).parent, ignore_errors=True)


@contextlib.contextmanager
def _stop_on_signals(stop: Any) -> Iterator[list[Any]]:
    """While a deposit runs, SIGINT and SIGTERM let the items in flight finish
    and skip the rest (a second signal stops at once). Yields a list that holds
    ``(signal name, number)`` once a signal came."""
    import signal
    import threading

    got: list[Any] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and got:
            raise KeyboardInterrupt
        got[:] = [signal.Signals(signum).name, signum]
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nbank_core.api import open_registry_from
    from nbank_core.errors import NbankError
    from nbank_core.records import verify_file

    status = 0
    with open_registry_from(args.reg) as reg:
        for f in args.files:
            shown = Path(f)
            try:
                v = verify_file(f, registry=reg)
            except NbankError as err:
                _err(str(err))
                status = 1
                continue
            if v.status == "missing":
                _out(f"{shown}: no such file or directory")
                _err(f"{shown}: no such file or directory")
            elif v.status == "ok":
                _out(f"{shown}: OK")
            elif v.status == "failed":
                _out(f"{shown}: FAILED to match record for {v.named}")
            elif v.status == "none":
                _out(f"{shown}: no matches in registry")
            for name in v.names:
                _out(f"{shown}: matches registry resource {name}")
            status |= v.status in ("missing", "failed", "none")
    return status


def cmd_dtype_add(args: argparse.Namespace) -> int:
    from nbank_core.api import add_datatype

    d = add_datatype(args.name, args.content_type, args.extension, registry=args.reg)
    _err(f"added datatype '{d['name']}'")
    return 0


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.n = total, 0

    def step(self) -> None:
        self.n += 1
        sys.stderr.write(f"\r{PROG}: deposited {self.n}/{self.total}")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")


# -- entry point ----------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``nbank`` with ``argv``; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # 'deposit ARCHIVE -d DTYPE FILE...': argparse gives the files list its (empty)
    # share before the option, so files after it come back as extras
    if (
        extra
        and args.command == "deposit"
        and not any(e.startswith("-") for e in extra)
    ):
        args.files += extra
    elif (  # 'check archive -v PATH': the same for the optional path of check
        len(extra) == 1
        and args.command == "check"
        and getattr(args, "path", "") is None
        and not extra[0].startswith("-")
    ):
        args.path = extra[0]
    elif extra:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _hide_password()
    try:
        from nbank_core.config import parse_timeout, resolve_settings

        timeout = (
            None if args.timeout is None else parse_timeout(args.timeout, "--timeout")
        )
        _setup_logging(args.debug)
        args.timeout = timeout
        if args.func in (cmd_deposit, cmd_init, cmd_registry_init) or args.own_registry:
            args.reg = None  # these choose their registry themselves
        else:
            args.reg = resolve_settings(
                args.registry, auth=args.auth, timeout=timeout
            ).open()
        try:
            return args.func(args)
        finally:
            if args.reg is not None:
                args.reg.close()
            sys.stdout.flush()
    except UsageError as err:
        _err(str(err))
        return 2
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as err:  # noqa: BLE001 - the one place errors become exit codes
        if args.debug:
            raise
        _err(_one_line(err))
        return 1


def _setup_logging(debug: bool) -> None:
    """The core logs through :mod:`logging`; ``--debug`` shows everything."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    root = logging.getLogger("nbank_core")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


def _hide_password(argv: Sequence[str] | None = None) -> None:
    """Rewrites the process title so ``ps`` shows no password: neither that of
    ``-a user:password`` nor one in a URL (``-r http://user:password@host/``).
    Prefer ``NBANK_AUTH`` or ``~/.netrc``: the title is only rewritten once the
    command has started. Leaves the title alone when there is nothing to hide."""
    from nbank_core.redact import mask_argv

    argv = list(sys.argv if argv is None else argv)
    masked = mask_argv(argv)
    if masked != argv:
        import setproctitle

        setproctitle.setproctitle(" ".join(masked))


def _one_line(err: BaseException) -> str:
    from nbank_core.errors import NbankError

    if isinstance(err, NbankError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        name = f": '{err.filename}'" if err.filename else ""
        return f"{err.strerror}{name}"
    return f"unexpected error ({type(err).__name__}: {err}); rerun with --debug"


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
