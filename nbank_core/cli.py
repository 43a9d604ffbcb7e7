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

__all__ = ["main"]

PROG = "nbank"


class UsageError(Exception):
    """A command line that cannot be carried out as written (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (exit 2), pointing at --help."""

    def error(self, message: str) -> NoReturn:
        _err(
            f"{self.prog.removeprefix(PROG + ' ') or 'usage'}: {message} "
            f"(see '{self.prog} --help')"
        )
        sys.exit(2)


def _kv(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


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
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "-r",
        "--registry",
        help="registry URL (default: $NBANK_REGISTRY, else the "
        "embedded registry in your data directory)",
    )
    p.add_argument("-a", "--auth", metavar="USER:PASSWORD", help="registry login")
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

    c = sub.add_parser("registry-info", help="show the registry's name and version")
    c.set_defaults(func=cmd_registry_info)

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
    c.add_argument(
        "-k",
        dest="metadata",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata (JSON values); repeatable",
    )
    c.add_argument("-H", "--hash", action="store_true", help="register sha1 hashes")
    c.add_argument("-A", "--auto-id", action="store_true", help="registry assigns ids")
    c.add_argument("-j", "--json", action="store_true", help="JSON lines output")
    c.add_argument("-y", "--dry-run", action="store_true", help="check, change nothing")
    c.add_argument("--keep", action="store_true", help="copy, leave the sources")
    c.add_argument("-@", dest="stdin", action="store_true", help="file names on stdin")
    c.set_defaults(func=cmd_deposit)

    c = sub.add_parser("locate", help="print the archived path of each id")
    c.add_argument("ids", nargs="+")
    c.add_argument("-0", dest="null", action="store_true", help="NUL-separated")
    c.set_defaults(func=cmd_locate)

    c = sub.add_parser("info", help="print the registry record of each id (JSON)")
    c.add_argument("ids", nargs="+")
    c.set_defaults(func=cmd_info)

    c = sub.add_parser("search", help="list resources matching filters")
    c.add_argument("name", nargs="?", help="substring of the id")
    c.add_argument("-d", "--dtype", help="datatype (exact)")
    c.add_argument("-H", "--hash", dest="sha1", help="sha1 of the content")
    c.add_argument("-n", "--archive", help="archive name")
    c.add_argument(
        "-k",
        dest="equal",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata equals",
    )
    c.add_argument(
        "-K",
        dest="differ",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata differs",
    )
    c.add_argument("-j", "--json", action="store_true", help="JSON lines output")
    c.set_defaults(func=cmd_search)

    c = sub.add_parser("verify", help="find the registered resource of each file")
    c.add_argument("files", nargs="+")
    c.set_defaults(func=cmd_verify)

    c = sub.add_parser("dtype", help="list or add datatypes")
    dsub = c.add_subparsers(dest="dtype_command", metavar="ACTION", required=True)
    d = dsub.add_parser("list", help="list datatypes")
    d.set_defaults(func=cmd_dtype_list)
    d = dsub.add_parser("add", help="add a datatype")
    d.add_argument("name")
    d.add_argument("content_type")
    d.add_argument("-e", "--extension", help="default file extension")
    d.set_defaults(func=cmd_dtype_add)

    c = sub.add_parser("check", help="check an archive against its registry")
    c.add_argument("archive")
    c.add_argument("--fix", action="store_true", help="repair what can be repaired")
    c.add_argument("--fast", action="store_true", help="hash only changed files")
    c.add_argument("-j", "--json", action="store_true", help="JSON lines output")
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("archive", help="list archives")
    asub = c.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    a = asub.add_parser("list", help="list registered archives")
    a.set_defaults(func=cmd_archive_list)

    from nbank_core import cli_growth

    cli_growth.add_commands(sub)
    return p


# -- commands -------------------------------------------------------------------
def _out(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)


def _err(text: str) -> None:
    """One diagnostic line, whatever the message holds (file names may hold
    newlines or control characters)."""
    safe = "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)
    sys.stderr.write(f"{PROG}: {safe}\n")


def cmd_registry_info(args: argparse.Namespace) -> int:
    from nbank_core.api import registry_info

    _out(json.dumps(registry_info(args.reg), indent=2))
    return 0


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
        if args.json:
            _out(json.dumps(r.as_dict()))
        elif r.ok:
            _out(f"{r.id or '(auto)'}\t{r.path}")

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
    with settings.open() as reg, _stop_on_signals(stop) as signalled:
        deposit(
            settings.archive_config(),
            files,
            dtype=args.dtype,
            metadata=dict(args.metadata),
            hash=args.hash,
            auto_id=args.auto_id,
            registry=reg,
            dry_run=args.dry_run,
            keep_source=args.keep,
            on_result=report,
            stop=stop,
        )
        return summary(signalled)


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


def _by_registry(args: argparse.Namespace, lookup: Any) -> list[tuple[str, Any, str]]:
    """Looks up ``args.ids`` in bulk with ``lookup(registry, ids) -> {id: value}``,
    each id in the registry its written form names (a full URL names its own, other
    forms the default). Returns ``(id, value or None, registry url)`` in order."""
    from nbank_core.api import open_registry_from
    from nbank_core.ids import parse_identifier

    default = args.reg.url.rstrip("/")
    keyed = []
    for text in args.ids:
        base, ident = parse_identifier(text)
        keyed.append(
            (None if base is None or base.rstrip("/") == default else base, ident)
        )
    answers: dict[tuple[str | None, str], tuple[Any, str]] = {}
    for base in dict.fromkeys(b for b, _ in keyed):
        idents = [i for b, i in keyed if b == base]
        with open_registry_from(base or args.reg, args.auth) as reg:
            values = lookup(reg, idents)
            for ident in idents:
                answers[base, ident] = (values.get(ident), reg.url)
    return [(ident, *answers[base, ident]) for base, ident in keyed]


def cmd_locate(args: argparse.Namespace) -> int:
    from nbank_core.errors import NbankError
    from nbank_core.resolve import Resolver

    status = 0
    found = _by_registry(args, lambda reg, idents: Resolver(reg).locate_many(idents))
    for ident, loc, url in found:
        try:
            if loc is None:
                _err(f"'{ident}' is not registered in {url}")
                status = 1
                continue
            _out(str(loc.require_path()), end="\0" if args.null else "\n")
        except NbankError as err:
            _err(str(err))
            status = 1
    return status


def cmd_info(args: argparse.Namespace) -> int:
    status = 0
    for ident, record, url in _by_registry(args, lambda reg, i: reg.get_resources(i)):
        if record is None:
            _err(f"'{ident}' is not registered in {url}")
            status = 1
        else:
            _out(json.dumps(record, indent=2))
    return status


def cmd_search(args: argparse.Namespace) -> int:
    from nbank_core.api import search

    filters: dict[str, Any] = {
        k: v
        for k, v in (
            ("name", args.name),
            ("dtype", args.dtype),
            ("sha1", args.sha1),
            ("archive", args.archive),
        )
        if v
    }
    for k, v in args.equal:
        filters[f"metadata__{k}"] = v if isinstance(v, str) else json.dumps(v)
    for k, v in args.differ:
        filters[f"metadata__{k}__neq"] = v if isinstance(v, str) else json.dumps(v)
    for record in search(args.reg, **filters):
        _out(json.dumps(record) if args.json else record["name"])
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from nbank_core.api import open_registry_from, verify
    from nbank_core.errors import NbankError

    status = 0
    with open_registry_from(args.reg) as reg:
        for f in args.files:
            try:
                records = verify(f, registry=reg)
            except NbankError as err:
                _err(str(err))
                status = 1
                continue
            if records:
                _out(f"{f}\t{records[0]['name']}")
            else:
                _err(f"{f}: no registered resource has this content")
                status = 1
    return status


def cmd_dtype_list(args: argparse.Namespace) -> int:
    from nbank_core.api import list_datatypes

    for d in list_datatypes(args.reg):
        _out(f"{d['name']}\t{d.get('content_type') or ''}\t{d.get('extension') or ''}")
    return 0


def cmd_dtype_add(args: argparse.Namespace) -> int:
    from nbank_core.api import add_datatype

    d = add_datatype(args.name, args.content_type, args.extension, registry=args.reg)
    _err(f"added datatype '{d['name']}'")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from nbank_core.check import check_archive
    from nbank_core.config import resolve_settings

    settings = resolve_settings(
        args.registry, archive=args.archive, auth=args.auth, timeout=args.timeout
    )
    cfg = settings.archive_config()
    with settings.open() as reg:
        findings = check_archive(cfg, registry=reg, fix=args.fix, fast=args.fast)
    for f in findings:
        if args.json:
            _out(json.dumps(f.as_dict()))
        else:
            where = f.path or f.id or ""
            action = f"\t{f.action}" if f.action else ""
            _out(f"{f.kind}\t{where}\t{f.detail}{action}")
    left = [f for f in findings if not f.fixed]
    if left:
        _err(f"{len(left)} problem(s) found in {cfg.path}")
    return 1 if left else 0


def cmd_archive_list(args: argparse.Namespace) -> int:
    from nbank_core.api import list_archives

    for a in list_archives(args.reg):
        _out(f"{a['name']}\t{a['scheme']}\t{a['root']}")
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
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _hide_password()
    try:
        from nbank_core.config import parse_timeout, resolve_settings

        timeout = (
            None if args.timeout is None else parse_timeout(args.timeout, "--timeout")
        )
        _setup_logging(args.debug)
        args.timeout = timeout
        if args.func in (cmd_deposit, cmd_check, cmd_init, cmd_registry_init):
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
