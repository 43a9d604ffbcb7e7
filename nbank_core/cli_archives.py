"""``nbank`` commands about archives as a whole: check (registry, archive, all,
tar, and the short form ``check PATH``), archive list/check/prune/register-tar/
import-tar, export and copy.

Argument parsing and printing only. As in neurobank 0.13, these report on stderr
and print nothing on stdout (except ``check PATH``, ``archive list`` and ``-j``);
the exit status is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nbank_core.cli_output import UsageError, _err, _out

__all__ = ["add_commands"]

_CHECKS = ("registry", "archive", "all", "tar")


def add_commands(sub: Any) -> None:
    """Adds this module's commands to the ``nbank`` subparsers ``sub``."""
    from nbank_core.cli_records import cmd_archive_list

    c = sub.add_parser(
        "check",
        help="check the registry and archives",
        description="Forms: 'check registry', 'check archive PATH', 'check all', "
        "'check tar TAR [-a ARCHIVE]', and 'check PATH' (findings on stdout).",
    )
    c.add_argument("what", metavar="registry|archive|all|tar|PATH")
    c.add_argument("path", nargs="?", help="the archive, or the tar file")
    _check_options(c)
    c.add_argument("--fast", action="store_true", help="hash only changed files")
    c.add_argument("-j", "--json", action="store_true", help="JSON lines output")
    c.add_argument("-a", "--archive", help="(tar) the archive the tar should hold")
    c.set_defaults(func=cmd_check, own_registry=True)

    c = sub.add_parser("archive", help="list, check and manage archives")
    asub = c.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    a = asub.add_parser("list", help="list registered archives")
    a.add_argument("--scheme", help="only archives of this scheme (prefix)")
    a.add_argument("-n", "--name", help="only archives whose name starts so")
    a.add_argument("-j", "--json", action="store_true", help="JSON lines output")
    a.set_defaults(func=cmd_archive_list)

    a = asub.add_parser("check", help="check an archive (as 'check archive')")
    _check_options(a)
    a.add_argument("path", help="the archive")
    a.set_defaults(func=cmd_check, what="archive", fast=False, json=False)
    a.set_defaults(own_registry=True)

    a = asub.add_parser("register-tar", help="register a tar file on a tape")
    a.add_argument("-y", "--dry-run", action="store_true", help="change nothing")
    a.add_argument("-n", "--archive-name", help="archive name (default TAPE-N)")
    a.add_argument("tape_name", help="the tape the tar file was written to")
    a.add_argument("file_number", type=int, help="its file number on the tape")
    a.add_argument("tar", type=Path, help="the tar file")
    a.set_defaults(func=cmd_register_tar)

    a = asub.add_parser("prune", help="remove copies that are stored elsewhere")
    a.add_argument("-y", "--dry-run", action="store_true", help="change nothing")
    a.add_argument("archive_name")
    a.add_argument("resources", type=Path, help="file of ids, one per line")
    a.set_defaults(func=cmd_prune)

    a = asub.add_parser("import-tar", help="import resources from a tar file")
    a.add_argument("-y", "--dry-run", action="store_true", help="only check")
    a.add_argument("tar", help="a tar file, a tape device, or '-' for stdin")
    _from_file(a)
    a.add_argument("dest", type=Path, help="the archive to import into")
    a.add_argument("ids", nargs="*", help="only these (default: all)")
    a.set_defaults(func=cmd_import_tar, own_registry=True)

    c = sub.add_parser("export", help="write resources to a tar, zip or directory")
    c.add_argument("-a", "--archive", help="only read copies in this archive")
    _from_file(c)
    c.add_argument("--compress", action="store_true", help="deflate zip members")
    c.add_argument("--manifest", action="store_true", help="add manifest.json")
    c.add_argument("out", type=Path, help="FILE.tar, FILE.zip, or a directory")
    c.add_argument("ids", nargs="*")
    c.set_defaults(func=cmd_export)

    c = sub.add_parser("copy", help="copy resources into another archive")
    c.add_argument("-y", "--dry-run", action="store_true", help="only check")
    c.add_argument("-a", "--archive", help="only read copies in this archive")
    _from_file(c)
    c.add_argument("dest", type=Path, help="the archive to copy into")
    c.add_argument("ids", nargs="*")
    c.set_defaults(func=cmd_copy, own_registry=True)


def _check_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("-v", "--verbose", action="store_true", help="report every file")
    c.add_argument("--fix", action="store_true", help="repair what can be repaired")
    c.add_argument("--no-hash", action="store_true", help="hash only changed files")


def _from_file(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "-f",
        "--from-file",
        type=Path,
        metavar="FILE",
        help="read ids from FILE, one per line ('-': stdin)",
    )


def _log(text: str) -> None:
    """A report line on stderr, unprefixed as neurobank 0.13 writes them."""
    sys.stderr.write(text + "\n")


def _ids(args: argparse.Namespace, required: bool = True) -> list[str]:
    ids = list(args.ids)
    if args.from_file is not None:
        try:
            text = (
                sys.stdin.read()
                if str(args.from_file) == "-"
                else args.from_file.read_text()
            )
        except OSError as err:
            raise UsageError(f"cannot read {args.from_file}: {err.strerror}") from None
        ids += [line.strip() for line in text.splitlines() if line.strip()]
    if required and not ids:
        raise UsageError("no identifiers given")
    return list(dict.fromkeys(ids))


def _registry(args: argparse.Namespace) -> Any:
    from nbank_core.config import resolve_settings

    return resolve_settings(args.registry, auth=args.auth, timeout=args.timeout)


def _archive_registry(args: argparse.Namespace, archive: Path) -> Any:
    """The registry of the archive at ``archive`` (or -r), opened."""
    from nbank_core.config import resolve_settings

    return resolve_settings(
        args.registry, archive=str(archive), auth=args.auth, timeout=args.timeout
    ).open()


# -- check ----------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    what = args.what if args.what in _CHECKS else None
    if what in ("archive", "tar") and args.path is None:
        raise UsageError(f"check {what}: the {what} to check is missing")
    if what in ("registry", "all") and args.path is not None:
        raise UsageError(f"check {what}: takes no path")
    if what is None:
        if args.path is not None:
            raise UsageError(f"check: unknown check {args.what!r}")
        return _check_short(args, args.what)
    if what == "registry":
        return 0 if _check_registry(args) else 1
    if what == "archive":
        return 0 if _check_one_archive(args, args.path) else 1
    if what == "tar":
        return _check_tar(args)
    return _check_all(args)


def _check_short(args: argparse.Namespace, path: str) -> int:
    """``check PATH``: our findings on stdout, one per line (or JSON lines)."""
    from nbank_core.check import check_archive
    from nbank_core.config import resolve_settings

    settings = resolve_settings(
        args.registry, archive=path, auth=args.auth, timeout=args.timeout
    )
    cfg = settings.archive_config()
    with settings.open() as reg:
        findings = check_archive(
            cfg, registry=reg, fix=args.fix, fast=args.fast or args.no_hash
        )
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


def _check_registry(args: argparse.Namespace, reg: Any = None) -> bool:
    from nbank_core.registry_check import check_registry

    with _registry(args).open() if reg is None else _nothing(reg) as r:
        _log(f"registry: {r.url}")
        findings = check_registry(r)
    for f in findings:
        if f.is_error:
            _log(f" - {f.name}: has NO locations")
        else:
            _log(f" - archive {f.name}: has no resources")
    n = sum(f.is_error for f in findings)
    _log(f"\nResources without locations: {n}; empty archives: {len(findings) - n}")
    return n == 0


class _nothing:
    """An open registry as a context that leaves it open."""

    def __init__(self, reg: Any) -> None:
        self.reg = reg

    def __enter__(self) -> Any:
        return self.reg

    def __exit__(self, *exc: object) -> None:
        pass


def _check_one_archive(args: argparse.Namespace, path: Any, reg: Any = None) -> bool:
    from nbank_core.check import check_archive
    from nbank_core.config import resolve_settings

    settings = resolve_settings(
        args.registry, archive=str(path), auth=args.auth, timeout=args.timeout
    )
    cfg = settings.archive_config()
    _log(f"archive: {cfg.path}")
    _log(f"registry: {cfg.registry}")
    with settings.open() if reg is None else _nothing(reg) as r:
        findings = check_archive(
            cfg, registry=r, fix=args.fix, fast=args.no_hash or args.fast
        )
    for f in findings:
        where = f.path or f.id or ""
        done = f" - {f.action}" if f.fixed and f.action else ""
        _log(f" - {where} - {f.kind} ({f.detail}){done}")
    left = [f for f in findings if not f.fixed]
    _log(f"\nProblems found: {len(findings)}; fixed: {len(findings) - len(left)}")
    return not left


def _check_all(args: argparse.Namespace) -> int:
    from nbank_core.errors import NbankError

    failed, skipped = [], []
    with _registry(args).open() as reg:
        if not _check_registry(args, reg):
            failed.append("(registry)")
        for a in reg.list_archives():
            name, root = a["name"], Path(a["root"])
            if a["scheme"] != "neurobank":
                skipped.append((name, f"{a['scheme']} archive"))
                continue
            if not root.is_dir():
                skipped.append((name, f"{root} is not on this host"))
                continue
            _log(f"\narchive {name}: {root}")
            try:
                if not _check_one_archive(args, root, reg):
                    failed.append(name)
            except (NbankError, OSError) as err:
                _log(f" - unable to check: {err}")
                failed.append(name)
    _log(f"\nskipped archives: {len(skipped)}")
    for name, why in skipped:
        _log(f" - {name}: {why}")
    _log(f"failed checks: {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0


def _check_tar(args: argparse.Namespace) -> int:
    from nbank_core.tape import check_tar

    with _registry(args).open() as reg:
        _log(f"registry: {reg.url}")
        _log(f"source: {args.path}")
        report = check_tar(args.path, archive=args.archive, registry=reg)
    _tar_items(report)
    return 1 if report.failed else 0


def _tar_items(report: Any) -> None:
    for item in report.items:
        note = f" ({item.error})" if item.error else ""
        mark = "✗" if item.status in ("failed", "missing") else "-"
        _log(f"  {mark} {item.member or item.id} -> {item.status}{note}")
    if report.read_error:
        _log(f"error: {report.read_error}")


# -- archive --------------------------------------------------------------------
def cmd_register_tar(args: argparse.Namespace) -> int:
    from nbank_core.tape import register_tar

    name, report = register_tar(
        args.tar,
        args.tape_name,
        args.file_number,
        name=args.archive_name,
        dry_run=args.dry_run,
        registry=args.reg,
    )
    _log(f"- archive '{name}' with root '{args.tape_name}:{args.file_number}'")
    _tar_items(report)
    return 1 if report.read_error else 0


def cmd_prune(args: argparse.Namespace) -> int:
    from nbank_core.copy import prune

    try:
        lines = args.resources.read_text().splitlines()
    except OSError as err:
        raise UsageError(f"cannot read {args.resources}: {err.strerror}") from None
    names = [s.strip() for s in lines if s.strip() and not s.startswith("#")]
    if args.dry_run:
        _log("DRY RUN")
    failed = 0
    for r in prune(args.archive_name, names, dry_run=args.dry_run, registry=args.reg):
        if r.status == "removed":
            _log(f"{r.id}:\n  - deleted {r.path}")
        else:
            failed += r.status == "failed"
            _log(f"{r.id}:\n  ✗ {r.error}")
    return 1 if failed else 0


def cmd_import_tar(args: argparse.Namespace) -> int:
    from nbank_core.tape import import_tar

    wanted = _ids(args, required=False) if args.ids or args.from_file else None
    if args.dry_run:
        _log("DRY RUN: checking resources without importing them")
    with _archive_registry(args, args.dest) as reg:
        report = import_tar(
            args.tar, args.dest, wanted, dry_run=args.dry_run, registry=reg
        )
    _tar_items(report)
    return 1 if report.failed else 0


# -- export and copy ------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from nbank_core.export import export

    results = export(
        _ids(args),
        args.out,
        archive=args.archive,
        compress=args.compress,
        manifest=args.manifest,
        registry=args.reg,
    )
    failed = 0
    for r in results:
        if r.status == "exported":
            _log(f"  - {r.id} -> {r.member}")
        else:
            failed += 1
            _log(f"  ✗ {r.id} -> {r.error}")
    n = len(results) - failed
    _log(f"Resources requested: {len(results)}; exported: {n}; failed: {failed}")
    return 1 if failed or not results else 0


def cmd_copy(args: argparse.Namespace) -> int:
    from nbank_core.copy import copy_resources

    if args.dry_run:
        _log("DRY RUN: checking resources without copying them")
    with _archive_registry(args, args.dest) as reg:
        results = copy_resources(
            _ids(args),
            args.dest,
            source_archive=args.archive,
            dry_run=args.dry_run,
            registry=reg,
        )
    failed = 0
    for r in results:
        if r.status == "failed":
            failed += 1
            _log(f"  ✗ {r.id} -> {r.error}")
        elif r.status == "present":
            _log(f"  - {r.id} -> already in the destination archive")
        else:
            _log(f"  - {r.id} -> {r.path if r.status == 'copied' else 'OK'}")
    _log(f"Resources requested: {len(results)}; failed: {failed}")
    return 1 if failed else 0
