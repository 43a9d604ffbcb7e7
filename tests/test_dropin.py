"""Ours is a drop-in for the ``nbank`` of neurobank 0.13.0: every command and
option of 0.13.0 is run by BOTH clients on one django-neurobank, and their stdout
and exit status are compared.

Read-only commands run on the very same archive and records, so their stdout
must be byte-identical with no normalisation at all. Commands that write
(deposit, modify, fetch, export, copy, prune, tape archives) run on twin setups
(two archives, twin ids such as ``t1_X``/``o1_X``): only the names that must
differ between the twins are normalised, by :func:`same`, and each test says
which.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = str(Path(sys.executable).with_name("nbank"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def theirs() -> str:
    path = os.environ.get("NBANK_COMPAT_CLIENT") or str(ROOT / ".venv-compat/bin/nbank")
    if not Path(path).is_file():
        pytest.skip("the neurobank 0.13.0 client is not installed (.venv-compat)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    assert "0.13.0" in out.stdout + out.stderr
    return path


def run(client: str, server, *args: str, cwd: Path, stdin: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBANK_")}
    env["HOME"] = str(cwd)  # no ~/.netrc, no mount table of the user
    proc = subprocess.run(
        [client, "-r", server.url, "-a", ":".join(server.auth), *args],
        capture_output=True,
        cwd=cwd,
        env=env,
        input=stdin.encode() if stdin is not None else None,
        timeout=120,
    )
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    return proc


def same(theirs_proc, ours_proc, *pairs: tuple[str, str]) -> None:
    """Asserts equal exit status and stdout, after replacing in OUR stdout each
    ``(ours, theirs)`` pair: the names of twin ids, archives or directories."""
    out = ours_proc.stdout
    for mine, their in pairs:
        out = out.replace(mine.encode(), their.encode())
    assert (ours_proc.returncode, out) == (
        theirs_proc.returncode,
        theirs_proc.stdout,
    ), ours_proc.stderr.decode()


class Twins:
    """Two archives on one registry, ``t`` written by 0.13.0 and ``o`` by ours,
    with twin resources ``t<n>_<uniq>`` and ``o<n>_<uniq>``."""

    def __init__(self, theirs: str, server, tmp: Path, uniq: str) -> None:
        self.theirs, self.server, self.tmp, self.uniq = theirs, server, tmp, uniq
        self.dtype = f"dt{uniq}"
        assert self.t("dtype", "add", self.dtype, "text/plain").returncode == 0
        for who in "to":
            client = self.client(who)
            assert self.run(client, "init", who, "-n", self.arch(who)).returncode == 0

    def client(self, who: str) -> str:
        return self.theirs if who == "t" else OURS

    def arch(self, who: str) -> str:
        return f"{who}a{self.uniq}"

    def id(self, who: str, n: int) -> str:
        return f"{who}{n}_{self.uniq}"

    def run(self, client: str, *args: str, stdin: str | None = None):
        return run(client, self.server, *args, cwd=self.tmp, stdin=stdin)

    def t(self, *args: str, stdin: str | None = None):
        return self.run(self.theirs, *args, stdin=stdin)

    def o(self, *args: str, stdin: str | None = None):
        return self.run(OURS, *args, stdin=stdin)

    def both(self, *args: str, stdin: str | None = None):
        """Runs ``args`` with ``{w}`` replaced by t or o in each client."""
        return (
            self.t(*(a.replace("{w}", "t") for a in args), stdin=stdin),
            self.o(*(a.replace("{w}", "o") for a in args), stdin=stdin),
        )

    def pairs(self) -> list[tuple[str, str]]:
        return [(f"o{n}_{self.uniq}", f"t{n}_{self.uniq}") for n in range(1, 6)] + [
            (self.arch("o"), self.arch("t")),
            (str(self.tmp / "o"), str(self.tmp / "t")),
            ("o/", "t/"),
        ]

    def files(self, who: str, *ns: int) -> list[str]:
        out = []
        for n in ns:
            p = self.tmp / "src" / f"{self.id(who, n)}.txt"
            p.parent.mkdir(exist_ok=True)
            p.write_text(f"{who}{n} {self.uniq}")  # twins differ: sha1 is unique
            out.append(f"src/{p.name}")
        return out


@pytest.fixture
def twins(theirs, django_registry, tmp_path, uniq) -> Twins:
    return Twins(theirs, django_registry, tmp_path, uniq)


@pytest.fixture
def deposited(twins: Twins) -> Twins:
    """Resources 1-3 deposited by each client into its archive, with metadata."""
    for who in "to":
        args = ["deposit", who, "-d", twins.dtype, "-k", "site=3", "-k", "ok=True"]
        proc = twins.run(twins.client(who), *args, *twins.files(who, 1, 2, 3))
        assert proc.returncode == 0, proc.stderr
    return twins


# -- deposit ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        [],
        ["-j"],
        ["--json-out"],
        ["-j", "-H"],
        ["--hash", "-k", "a=1", "-k", "b=[1, 2]", "-k", "c=None"],
        ["-j", "--experimenter", "{admin}"],
        ["-j", "-y"],
        ["-j", "--dry-run", "-k", "x=y"],
        ["-j", "-A"],
        ["-j", "--auto-id", "-y"],
        ["-j", "--no-file-metadata"],
        ["-j", "--override-file-metadata", "-k", "x=1"],
    ],
    ids=lambda o: " ".join(o) or "plain",
)
def test_deposit(twins, options):
    options = [o.replace("{admin}", twins.server.username) for o in options]
    t = twins.t("deposit", "t", "-d", twins.dtype, *options, *twins.files("t", 1, 2))
    o = twins.o("deposit", "o", "-d", twins.dtype, *options, *twins.files("o", 1, 2))
    if "-A" in options or "--auto-id" in options:  # the registry draws other ids
        rows = [json.loads(line) for line in t.stdout.splitlines()]
        pairs = [
            (r["id"], s["id"])
            for r, s in zip(
                (json.loads(line) for line in o.stdout.splitlines()), rows, strict=True
            )
            if r.get("id")
        ]
    else:
        pairs = []
    same(t, o, *twins.pairs(), *pairs)
    if "-y" not in options and "--dry-run" not in options and "-A" not in options:
        rec = {}
        for who in "to":
            info = twins.run(twins.client(who), "info", twins.id(who, 1))
            rec[who] = json.loads(info.stdout)
        for key in ("dtype", "metadata", "experimenter", "animal", "locations"):
            want = rec["t"][key]
            if key == "locations":
                want = [twins.arch("o")]
            assert rec["o"][key] == want, key


def test_deposit_failures_and_stdin(twins):
    # a missing file: the same JSON line ({"source", "error": "does not exist"})
    t, o = twins.both("deposit", "{w}", "-d", twins.dtype, "-j", "src/nothere.txt")
    same(t, o)
    # -@ reads more names on stdin (0.13.0 wants one on the command line too)
    runs = []
    for who in "to":
        first, *rest = twins.files(who, 1, 2, 3)
        args = ["deposit", who, "-d", twins.dtype, "-j", "-@", first]
        runs.append(twins.run(twins.client(who), *args, stdin="\n".join(rest)))
    t, o = runs
    same(t, o, *twins.pairs())


def test_deposit_zip_directories_gives_the_same_zip(twins):
    for who in "to":
        d = twins.tmp / "src" / twins.id(who, 4)
        (d / "sub").mkdir(parents=True)
        (d / "a.txt").write_text("same files in both")
        (d / "sub" / "b.bin").write_bytes(bytes(range(256)) + who.encode())
    t, o = twins.both(
        "deposit",
        "{w}",
        "-d",
        twins.dtype,
        "-j",
        "-H",
        "--zip-directories",
        f"src/{{w}}4_{twins.uniq}",
    )
    same(t, o, *twins.pairs())
    assert (twins.tmp / "src" / twins.id("o", 4)).is_dir()  # left in place
    # our zip of their directory has the hash they registered for it
    from nbank_core.zipdir import zip_directory

    z = zip_directory(twins.tmp / "src" / twins.id("t", 4), twins.tmp / "t4.zip")
    record = json.loads(twins.o("info", twins.id("t", 4)).stdout)
    assert hashlib.sha1(z.read_bytes()).hexdigest() == record["sha1"]


# -- reading: one archive, one set of records, no normalisation ------------------
READS = [
    ["registry-info"],
    ["dtype", "list"],
    ["archive", "list"],
    ["archive", "list", "-n", "ta"],
    ["archive", "list", "--scheme", "neurobank", "--name", "oa"],
    ["archive", "list", "--scheme", "tape"],
    ["locate", "t1_{u}", "o2_{u}", "nosuch{u}"],
    ["locate", "-0", "t1_{u}", "o2_{u}"],
    ["locate", "--print0", "t1_{u}", "nosuch{u}"],
    ["locate", "{url}resources/t2_{u}/"],
    ["locate", "../etc/passwd"],
    ["info", "t1_{u}", "o1_{u}"],
    ["info", "t1_{u}", "nosuch{u}", "t1_{u}"],
    ["info", "bad/id"],
    ["search", "_{u}"],
    ["search", "-j", "t1_{u}"],
    ["search", "--json-out", "-d", "dt{u}"],
    ["search", "-d", "dt{u}", "-k", "site=3"],
    ["search", "-d", "dt{u}", "-K", "site=3"],
    ["search", "-k", "ok=True", "_{u}"],
    ["search", "-n", "ta{u}"],
    ["search", "--archive", "oa{u}", "-d", "dt{u}"],
    ["search", "-s", "neurobank", "_{u}"],
    ["search", "--scheme", "tape", "_{u}"],
    ["search", "--experimenter", "{admin}", "_{u}"],
    ["search", "--animal", "nosuch", "_{u}"],
    ["search", "-H", "{sha1}"],
    ["search", "--hash", "{sha1part}"],
    ["search"],
    ["verify", "src/t1_{u}.txt", "src/o2_{u}.txt"],
    ["verify", "src/copy{u}", "src/other{u}", "src/nothere"],
    ["verify", "src/t3_{u}.txt"],
]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a))
def test_reads_are_byte_identical(deposited, args):
    tw = deposited
    src = tw.tmp / "src"
    sha1 = json.loads(tw.o("info", tw.id("t", 1)).stdout)["sha1"]
    for who, n in (("t", 1), ("o", 2)):  # named like the id, with its content: OK
        (src / f"{tw.id(who, n)}.txt").write_text(f"{who}{n} {tw.uniq}")
    (src / f"copy{tw.uniq}").write_text(f"t1 {tw.uniq}")  # t1's content, other name
    (src / f"other{tw.uniq}").write_text("registered nowhere")
    (src / f"t3_{tw.uniq}.txt").write_text("not what t3 holds")  # FAILED to match
    subs = {
        "{u}": tw.uniq,
        "{url}": tw.server.url,
        "{admin}": tw.server.username,
        "{sha1}": sha1,
        "{sha1part}": sha1[3:15],
    }
    for k, v in subs.items():
        args = [a.replace(k, v) for a in args]
    t, o = tw.t(*args), tw.o(*args)
    same(t, o)


def test_locate_link(deposited):
    tw = deposited
    for who in "to":
        (tw.tmp / f"links{who}").mkdir()
    t = tw.t("locate", "-L", "linkst", tw.id("t", 1), f"nosuch{tw.uniq}")
    o = tw.o("locate", "--link", "linkso", tw.id("t", 1), f"nosuch{tw.uniq}")
    same(t, o, ("linkso", "linkst"))
    assert os.readlink(tw.tmp / "linkso" / f"{tw.id('t', 1)}.txt") == os.readlink(
        tw.tmp / "linkst" / f"{tw.id('t', 1)}.txt"
    )


def test_ours_keeps_its_path_only_form(deposited):
    tw = deposited
    o = tw.o("locate", "--path-only", tw.id("t", 1))
    assert o.returncode == 0
    assert Path(o.stdout.decode().strip()).read_text() == f"t1 {tw.uniq}"


# -- modify and fetch ------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        ["-k", "site=4", "-k", "new=[1]"],
        ["-K", "site"],
        ["--experimenter", "{admin}", "--animal", ""],
        ["--experimenter", ""],
    ],
    ids=lambda o: " ".join(o),
)
def test_modify(deposited, options):
    # the same change twice is the same record: both clients modify one resource
    tw = deposited
    options = [o.replace("{admin}", tw.server.username) for o in options]
    ids = [tw.id("t", 1), f"nosuch{tw.uniq}"]
    t = tw.t("modify", *options, *ids)
    o = tw.o("modify", *options, *ids)
    same(t, o)


@pytest.mark.parametrize(
    "options",
    [[], ["-e", "dat"], ["--extension", "txt", "--force"], ["-f"]],
    ids=lambda o: " ".join(o) or "plain",
)
def test_fetch(deposited, options):
    tw = deposited
    for who in "to":
        (tw.tmp / f"dl{who}").mkdir()
    # the same id into two directories: dlt and dlo are normalised
    for _ in range(2):  # the second time the file exists (unless forced)
        t = tw.t("fetch", "-d", "dlt", *options, tw.id("t", 2), f"nosuch{tw.uniq}")
        o = tw.o("fetch", "--dest", "dlo", *options, tw.id("t", 2), f"nosuch{tw.uniq}")
        same(t, o, ("dlo", "dlt"))
    assert sorted(os.listdir(tw.tmp / "dlo")) == sorted(os.listdir(tw.tmp / "dlt"))


# -- export, copy, prune ---------------------------------------------------------
@pytest.mark.parametrize(
    "out, options",
    [
        ("x.tar", []),
        ("x.zip", ["--manifest"]),
        ("x.zip", ["--compress"]),
        ("xdir", ["-a", "ta{u}"]),
        ("x.tar", ["--compress"]),
        ("x.tar", ["--archive", "oa{u}"]),
    ],
)
def test_export(deposited, out, options):
    tw = deposited
    options = [o.replace("{u}", tw.uniq) for o in options]
    ids = [tw.id("t", 1), tw.id("t", 2), f"nosuch{tw.uniq}"]
    listed = tw.tmp / "ids.txt"
    listed.write_text(tw.id("t", 3) + "\n")
    t = tw.t("export", *options, "-f", "ids.txt", f"t{out}", *ids)
    o = tw.o("export", *options, "--from-file", "ids.txt", f"o{out}", *ids)
    same(t, o)
    if t.returncode == 0 or (tw.tmp / f"t{out}").exists():
        assert _members(tw.tmp / f"o{out}") == _members(tw.tmp / f"t{out}")


def _members(path: Path) -> list[str]:
    import zipfile

    if path.is_dir():
        return sorted(os.listdir(path))
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            return sorted(zf.namelist())
    with tarfile.open(path) as tf:
        return sorted(tf.getnames())


def test_copy_and_prune(deposited):
    tw = deposited
    for who in "to":
        init = tw.run(tw.client(who), "init", f"c{who}", "-n", f"c{who}{tw.uniq}")
        assert init.returncode == 0
    ids = [tw.id("t", 1), tw.id("o", 2)]
    pairs = [("co", "ct"), (f"co{tw.uniq}", f"ct{tw.uniq}")]
    for options in (["-y"], ["--dry-run", "-a", f"ta{tw.uniq}"], []):
        t = tw.t("copy", *options, "ct", *ids, f"nosuch{tw.uniq}")
        o = tw.o("copy", *options, "co", *ids, f"nosuch{tw.uniq}")
        same(t, o, *pairs)
    t, o = tw.t("copy", "-f", "-", "ct", stdin=ids[0]), tw.o("copy", "co", ids[0])
    same(t, o, *pairs)  # already in the destination
    located = tw.o("locate", ids[0]).stdout.decode()
    assert str(tw.tmp / "co") in located and str(tw.tmp / "ct") in located
    # prune: each removes its copy of ids[0] (stored elsewhere too), keeps ids[1]
    (tw.tmp / "prune.txt").write_text(f"# ids\n{ids[0]}\nnosuch{tw.uniq}\n")
    for options in (["-y"], []):
        t = tw.t("archive", "prune", *options, f"ct{tw.uniq}", "prune.txt")
        o = tw.o("archive", "prune", *options, f"co{tw.uniq}", "prune.txt")
        same(t, o, *pairs)
    assert not list((tw.tmp / "co" / "resources").rglob(f"{ids[0]}*"))
    assert tw.o("locate", ids[0]).stdout.decode().count("\n") == 1


# -- tape archives ---------------------------------------------------------------
def test_tape_archives(deposited):
    tw = deposited
    tar = tw.tmp / "tape.tar"
    with tarfile.open(tar, "w") as tf:
        for n in (1, 2):
            path = json.loads(tw.o("info", tw.id("t", n)).stdout)["name"]
            stored = next((tw.tmp / "t" / "resources").rglob(f"{path}.*"))
            tf.add(stored, stored.name)
        extra = tw.tmp / "unregistered.txt"
        extra.write_text("nobody")
        tf.add(extra, extra.name)
    pairs = [(f"tapeo{tw.uniq}", f"tapet{tw.uniq}")]
    for options in (["-y"], [], ["-n", "{w}named" + tw.uniq]):
        t, o = tw.both(
            "archive",
            "register-tar",
            *options,
            f"tape{{w}}{tw.uniq}",
            "3",
            "tape.tar",
        )
        same(t, o, *pairs, (f"onamed{tw.uniq}", f"tnamed{tw.uniq}"))
    same(*tw.both("archive", "list", "--scheme", "tape"))
    same(*tw.both("locate", tw.id("t", 1)))
    for args in (
        ["check", "tar", "tape.tar"],
        ["check", "tar", "-a", f"tapet{tw.uniq}-3", "tape.tar"],
        ["check", "tar", "--archive", f"ta{tw.uniq}", "tape.tar"],  # t3 missing
        ["check", "tar", "-a", f"nosuch{tw.uniq}", "tape.tar"],
    ):
        same(tw.t(*args), tw.o(*args))
    for who in "to":
        init = tw.run(tw.client(who), "init", f"i{who}", "-n", f"i{who}{tw.uniq}")
        assert init.returncode == 0
    pairs = [("io", "it"), (f"io{tw.uniq}", f"it{tw.uniq}")]
    for options in (["-y"], [], ["-f", "-"], ["ID", f"nosuch{tw.uniq}"]):
        options = [o.replace("ID", tw.id("t", 2)) for o in options]
        stdin = tw.id("t", 1) if "-" in options else None
        t = tw.t("archive", "import-tar", "tape.tar", "it", *options, stdin=stdin)
        o = tw.o("archive", "import-tar", "tape.tar", "io", *options, stdin=stdin)
        same(t, o, *pairs)
    assert sorted(p.name for p in (tw.tmp / "io" / "resources").rglob("*.txt")) == (
        sorted(p.name for p in (tw.tmp / "it" / "resources").rglob("*.txt"))
    )


# -- checks ----------------------------------------------------------------------
def test_checks(deposited):
    tw = deposited
    pairs = [("o", "t")]
    for options in ([], ["-v"], ["--no-hash"], ["--fix"], ["-v", "--no-hash"]):
        same(*tw.both("check", "archive", *options, "{w}"), *pairs)
        same(*tw.both("archive", "check", *options, "{w}"), *pairs)
    # a file gone from each archive: both fail
    for who in "to":
        stored = next((tw.tmp / who / "resources").rglob(f"{tw.id(who, 2)}.*"))
        os.chmod(stored.parent, 0o775)
        stored.unlink()
    same(*tw.both("check", "archive", "{w}"), *pairs)
    t, o = tw.t("check", "registry"), tw.o("check", "registry")
    same(t, o)
    t, o = tw.t("check", "all", "--no-hash"), tw.o("check", "all", "--no-hash")
    same(t, o)


# -- global options and usage ----------------------------------------------------
def test_global_options(twins):
    for args in (
        ["-a", "nocolon", "registry-info"],
        ["info", "--bogus", "x"],
        ["frobnicate"],
        ["--debug", "dtype", "list"],
    ):
        t, o = twins.t(*args), twins.o(*args)
        same(t, o)
    for o in (twins.o("-v"), twins.o("--version")):
        assert o.returncode == 0 and o.stdout.startswith(b"nbank ")
    err = twins.o("info", "--bogus", "x").stderr.decode()
    assert err.count("nbank:") == 1 and "nbank info --help" in err
