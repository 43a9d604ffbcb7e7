"""``nbank`` commands for a lab that grows: ``lineage``, ``registry copy`` and
``archive mount`` / ``unmount`` / ``mounts``.

Argument parsing and printing only; the work is in :mod:`nbank_core.lineage_graph`,
:mod:`nbank_core.migrate` and :mod:`nbank_core.mounts`. Data on stdout,
diagnostics on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_commands"]

PROG = "nbank"


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    safe = "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)
    sys.stderr.write(f"{PROG}: {safe}\n")


def _subcommands(parser: argparse.ArgumentParser) -> Any:
    """The subparsers of a command group (``registry``, ``archive``)."""
    for action in parser._actions:  # argparse keeps them nowhere public
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"'{parser.prog}' has no subcommands")


def _depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"depth must be 0 or more, not {text!r}")
    return value


def add_commands(sub: Any) -> None:
    """Adds ``lineage`` to the ``nbank`` subparsers ``sub``, ``copy`` to its
    ``registry`` group and ``mount``, ``unmount``, ``mounts`` to its ``archive``
    group (both groups must exist)."""
    c = sub.add_parser("lineage", help="show where a resource came from")
    c.add_argument("id", help="the resource (id or full identifier URL)")
    c.add_argument(
        "--depth", type=_depth, metavar="N", help="levels to follow (default: all)"
    )
    c.add_argument(
        "--format",
        choices=("text", "json", "dot"),
        default="text",
        help="a tree, JSON, or Graphviz for 'dot -Tsvg' (default: text)",
    )
    c.add_argument(
        "--reverse", action="store_true", help="what was made from it, recursively"
    )
    c.set_defaults(func=cmd_lineage)

    rsub = _subcommands(sub.choices["registry"])
    r = rsub.add_parser(
        "copy",
        help="copy every datatype, archive and resource of SRC into DEST",
    )
    r.add_argument("src", metavar="SRC", help="registry URL to copy from")
    r.add_argument("dest", metavar="DEST", help="registry URL to copy into")
    r.add_argument(
        "--relink",
        action="store_true",
        help="then make the archives mounted here name DEST in their nbank.json",
    )
    r.set_defaults(func=cmd_registry_copy, own_registry=True)

    asub = _subcommands(sub.choices["archive"])
    a = asub.add_parser(
        "mount", help="record that archive NAME is mounted at PATH on this host"
    )
    a.add_argument("name", metavar="NAME")
    a.add_argument("path", metavar="PATH")
    a.set_defaults(func=cmd_archive_mount, own_registry=True)
    a = asub.add_parser("unmount", help="forget where archive NAME is mounted")
    a.add_argument("name", metavar="NAME")
    a.set_defaults(func=cmd_archive_unmount, own_registry=True)
    a = asub.add_parser("mounts", help="list the archives mounted at other paths")
    a.set_defaults(func=cmd_archive_mounts, own_registry=True)


def cmd_lineage(args: argparse.Namespace) -> int:
    from nbank_core.lineage_graph import lineage

    graph = lineage(args.id, depth=args.depth, reverse=args.reverse, registry=args.reg)
    if args.format == "json":
        _out(graph.to_json())
    elif args.format == "dot":
        _out(graph.to_dot())
    else:
        _out(graph.to_text())
    return 0


def cmd_registry_copy(args: argparse.Namespace) -> int:
    from nbank_core.config import resolve_settings
    from nbank_core.migrate import copy_registry

    src = resolve_settings(args.src, auth=args.auth, timeout=args.timeout)
    dest = resolve_settings(args.dest, auth=args.auth, timeout=args.timeout)
    with src.open() as s, dest.open(create=True) as d:
        report = copy_registry(s, d, relink=args.relink)
    for line in report.conflicts:
        _err(f"conflict: {line}")
    for line in report.notes:
        _err(line)
    for path in report.relinked:
        _out(f"relinked\t{path}")
    _err(f"{report.summary()} from {report.src} to {report.dest}")
    return 1 if report.conflicts else 0


def cmd_archive_mount(args: argparse.Namespace) -> int:
    from nbank_core.archive import read_config
    from nbank_core.config import resolve_settings
    from nbank_core.errors import NotFound
    from nbank_core.mounts import add_mount

    cfg = read_config(args.path)
    settings = resolve_settings(
        args.registry, archive=cfg, auth=args.auth, timeout=args.timeout
    )
    with settings.open() as reg:
        try:
            record = reg.get_archive(args.name)
        except NotFound:
            raise NotFound(
                f"no archive '{args.name}' is registered in {reg.url}, the registry "
                f"of the archive at '{cfg.path}' (see 'nbank archive list')"
            ) from None
    path = add_mount(args.name, cfg.path)
    if record.get("root") == str(path):
        _err(f"note: '{path}' is the registered root of '{args.name}' already")
    _out(f"{args.name}\t{path}")
    return 0


def cmd_archive_unmount(args: argparse.Namespace) -> int:
    from nbank_core.mounts import remove_mount

    path = remove_mount(args.name)
    _err(f"forgot that archive '{args.name}' is mounted at '{path}'")
    return 0


def cmd_archive_mounts(args: argparse.Namespace) -> int:
    from nbank_core.mounts import list_mounts

    for name, path in sorted(list_mounts().items()):
        _out(f"{name}\t{path}")
    return 0
