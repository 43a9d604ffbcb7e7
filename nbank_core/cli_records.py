"""``nbank`` commands that read and change registry records: registry-info,
locate, info, search, modify, fetch, dtype list and archive list.

Argument parsing and printing only. What they print on stdout is, byte for byte,
what neurobank 0.13 prints, so scripts written for it keep working; what we print
beyond that sits behind an option (``--path-only``, ``-j``) or goes to stderr.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nbank_core.cli_output import UsageError, _err, _metadata, _out

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    """Adds this module's commands to the ``nbank`` subparsers ``sub``."""
    c = sub.add_parser("registry-info", help="show the registry's name and version")
    c.add_argument("-j", "--json", action="store_true", help="JSON on stdout")
    c.set_defaults(func=cmd_registry_info)

    c = sub.add_parser("locate", help="print every location of each id")
    c.add_argument("ids", nargs="+", metavar="id")
    c.add_argument(
        "-L", "--link", type=Path, metavar="DIR", help="symlink each file into DIR"
    )
    c.add_argument(
        "-0", "--print0", action="store_true", help="local paths, NUL-separated"
    )
    c.add_argument(
        "--path-only",
        action="store_true",
        help="only the file on this host, one per line (errors on stderr)",
    )
    c.set_defaults(func=cmd_locate)

    c = sub.add_parser("info", help="print the registry record of each id (JSON)")
    c.add_argument("ids", nargs="+", metavar="id")
    c.set_defaults(func=cmd_info)

    c = sub.add_parser("search", help="list resources matching filters")
    c.add_argument("name", nargs="?", help="resource name or fragment")
    c.add_argument("-j", "--json-out", action="store_true", help="full records")
    c.add_argument("-d", "--dtype", help="datatype (exact)")
    c.add_argument("-H", "--hash", help="sha1 (full, or any part of one)")
    c.add_argument("-n", "--archive", help="archive name (any part of one)")
    c.add_argument("-s", "--scheme", help="scheme of any location (e.g. tape)")
    _metadata(c, "-k", "metadata", "metadata equals (repeatable)")
    _metadata(c, "-K", "metadata_neq", "metadata differs (repeatable)")
    c.add_argument("--experimenter", metavar="USER", help="experimenter (username)")
    c.add_argument("--animal", metavar="ID", help="animal (start of its id)")
    c.set_defaults(func=cmd_search)

    c = sub.add_parser("modify", help="change the metadata of resources")
    _metadata(c, "-k", "metadata", "set KEY to VALUE (repeatable)")
    c.add_argument(
        "-K",
        dest="remove",
        action="append",
        default=[],
        metavar="KEY",
        type=_metadata_key,
        help="delete KEY (repeatable)",
    )
    c.add_argument("--experimenter", metavar="USER", help="set (empty: clear)")
    c.add_argument("--animal", metavar="ID", help="set (empty: clear)")
    c.add_argument("ids", nargs="+", metavar="id")
    c.set_defaults(func=cmd_modify)

    c = sub.add_parser("fetch", help="copy or download resources into a directory")
    c.add_argument("-f", "--force", action="store_true", help="overwrite files")
    c.add_argument("-d", "--dest", type=Path, help="directory (default: here)")
    c.add_argument("-e", "--extension", help="give the files this extension")
    c.add_argument("ids", nargs="+", metavar="id")
    c.set_defaults(func=cmd_fetch)


def _metadata_key(text: str) -> str:
    if text in ("experimenter", "animal"):
        raise argparse.ArgumentTypeError(f"{text} is not metadata; use --{text}")
    return text


def cmd_registry_info(args: argparse.Namespace) -> int:
    from nbank_core.api import registry_info

    info = registry_info(args.reg)
    if args.json:
        _out(json.dumps(info, indent=2))
        return 0
    lines = ["registry info:", f"  - address: {info['url']}"]
    lines += [f"  - {k}: {v}" for k, v in info.items() if k != "url"]
    for line in lines:
        _err_plain(line)
    return 0


def _err_plain(text: str) -> None:
    """A report line on stderr, as neurobank 0.13 logs it (no prefix)."""
    import sys

    sys.stderr.write(text + "\n")


def _split(text: str, default: str) -> tuple[str, str, str]:
    """``(registry url, id, the id as given)`` of an id or full URL; an id that
    cannot be parsed keeps its text (and is reported not found)."""
    from nbank_core.ids import parse_identifier

    try:
        base, ident = parse_identifier(text)
    except ValueError:
        return default, text, text
    if base is None or base.rstrip("/") == default.rstrip("/"):
        return default, ident, ident
    return base, ident, ident


def cmd_locate(args: argparse.Namespace) -> int:
    from nbank_core.api import open_registry_from
    from nbank_core.errors import InvalidIdentifier, NbankError, NotFound
    from nbank_core.mounts import list_mounts
    from nbank_core.records import location_of

    if args.link is not None and not args.link.is_dir():
        raise UsageError(f"locate: -L {args.link}: not a directory")
    mounts, failed, default = list_mounts(), 0, args.reg.url
    for text in args.ids:
        url, ident, shown = _split(text, default)
        found = False
        try:
            with open_registry_from(args.reg if url == default else url) as reg:
                locations = reg.list_locations(ident)
        except (NotFound, InvalidIdentifier):
            if not args.path_only:
                _out(f"{shown:<20}\t(not found)")
            _err(f"'{shown}' is not registered in {url}")
            failed += 1
            continue
        except NbankError as err:  # one registry down: say so, go on with the rest
            _err(f"{shown}: {err}")
            failed += 1
            continue
        for loc in locations:
            where = location_of(loc, ident, mounts)
            if where is None:
                continue
            if args.link is not None or args.print0 or args.path_only:
                if not isinstance(where, Path):
                    continue
                if args.link is not None:
                    link = args.link / where.name
                    try:
                        link.symlink_to(where)
                    except OSError as err:
                        _err(f"{shown}: cannot link {link}: {err.strerror}")
                        break
                    _out(f"{shown:<20}\t-> {link}")
                elif args.print0:
                    _out(str(where), end="\0")
                else:
                    _out(str(where))
                found = True
                if not args.print0:
                    break
            else:
                _out(f"{shown:<20}\t{where}")
                found = True
        if not found:
            _err(
                f"'{shown}' is registered, but no copy is on this host; 'nbank "
                f"fetch {shown}' downloads it if the registry serves it"
            )
            failed += 1
    return 1 if failed else 0


def cmd_info(args: argparse.Namespace) -> int:
    from nbank_core.api import open_registry_from
    from nbank_core.errors import NbankError

    default = args.reg.url
    keyed = [_split(text, default) for text in args.ids]
    out: dict[str, Any] = {}
    down: list[str] = []
    for url in dict.fromkeys(u for u, _, _ in keyed):
        idents = [i for u, i, _ in keyed if u == url]
        try:
            with open_registry_from(args.reg if url == default else url) as reg:
                found = reg.get_resources(i for i in idents if _is_id(i))
        except NbankError as err:  # said once; its ids print as not found
            _err(str(err) if url in str(err) else f"{url}: {err}")
            found, down = {}, [*down, url]
        for _, ident, shown in (k for k in keyed if k[0] == url):
            out.setdefault(shown, (found.get(ident), url))
    failed = 0
    for shown, (record, url) in out.items():
        if record is None:
            failed += 1
            if url not in down:
                _err(f"'{shown}' is not registered in {url}")
            record = {"id": shown, "error": "not found"}
        _out(json.dumps(record, indent=2))
    return 1 if failed else 0


def _is_id(text: str) -> bool:
    from nbank_core.ids import validate_id

    try:
        validate_id(text)
    except ValueError:
        return False
    return True


def cmd_search(args: argparse.Namespace) -> int:
    import re

    from nbank_core.api import search

    filters: dict[str, Any] = {
        k: v
        for k, v in (
            ("name", args.name),
            ("dtype", args.dtype),
            ("location", args.archive),
            ("scheme", args.scheme),
            ("experimenter", args.experimenter),
            ("animal__istartswith", args.animal),
        )
        if v is not None
    }
    if args.hash is not None:
        full = re.fullmatch(r"[0-9a-fA-F]{40}", args.hash)
        filters["sha1" if full else "sha1_contains"] = args.hash.lower()
    for k, v in args.metadata.items():
        filters[f"metadata__{k}"] = v
    for k, v in args.metadata_neq.items():
        filters[f"metadata__{k}__neq"] = v
    if not filters:
        _err("search: at least one filter is required (see 'nbank search --help')")
        return 1
    for record in search(args.reg, **filters):
        _out(json.dumps(record, indent=2) if args.json_out else record["name"])
    return 0


def cmd_modify(args: argparse.Namespace) -> int:
    from nbank_core.records import update

    metadata = dict(args.metadata)
    for key in args.remove:
        metadata[key] = None
    for field in ("experimenter", "animal"):
        value = getattr(args, field)
        if value is not None:
            metadata[field] = value or None
    failed = 0
    for record in update(args.ids, metadata, registry=args.reg):
        if "error" in record:
            failed += 1
            _err(f"'{record['name']}' is not registered in {args.reg.url}")
        _out(json.dumps(record, indent=2))
    return 1 if failed else 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from nbank_core.errors import AlreadyExists, NbankError
    from nbank_core.fetch import fetch

    dest = args.dest if args.dest is not None else Path()
    if not dest.is_dir():
        raise UsageError(f"fetch: -d {dest}: not a directory")
    failed = 0
    for name, result in fetch(
        args.ids,
        dest,
        force=args.force,
        extension=args.extension,
        registry=args.reg,
    ):
        if isinstance(result, NbankError):
            failed += 1
            if isinstance(result, AlreadyExists):
                shown = f"({result})"
            elif "no locations found" in str(result):
                shown = "(no locations found)"
            else:
                shown = "(no valid locations)"
                _err(f"{name}: {result}")
            _out(f"{name:<20}\t-> {shown}")
        else:
            _out(f"{name:<20}\t-> {dest / result.name}")
    return 1 if failed else 0


def cmd_dtype_list(args: argparse.Namespace) -> int:
    from nbank_core.api import list_datatypes

    for d in list_datatypes(args.reg):
        if args.json:
            _out(json.dumps(d))
        else:
            _out(f"{d['name']:<25}\t({d.get('content_type')})")
    return 0


def cmd_archive_list(args: argparse.Namespace) -> int:
    from nbank_core.api import list_archives

    filters = {k: v for k, v in (("name", args.name), ("scheme", args.scheme)) if v}
    for a in list_archives(args.reg, **filters):
        if args.json:
            _out(json.dumps(a))
        elif a["scheme"] == "neurobank":
            _out(f"{a['name']:<25}\t{a['root']}")
        else:
            _out(f"{a['name']:<25}\t{a['scheme']}://{a['root']}")
    return 0
