"""The documentation under docs/: it builds with warnings as errors, and the shell
commands of each page run as written.

A page's commands are its ``.. code-block:: console`` blocks: a line starting
with ``$ `` is a command (the prefix is dropped), other lines are kept as they
are (here-document bodies). Each page's blocks run in order as one bash script
(``set -euo pipefail``), in an empty directory, on an embedded registry of its
own. Blocks that must not run (a server's URL, an administrator's commands) are
written as ``.. code-block:: bash``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. code-block:: console[ \t]*$")


def console_script(text: str) -> str:
    """The commands of a page's console blocks, as one bash script.

    >>> console_script(".. code-block:: console\\n\\n    $ echo hi\\n\\nafter\\n")
    'echo hi\\n'
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        i += 1
        if not m:
            continue
        outer = len(m["indent"])
        block: list[str] = []
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= outer:
                break
            block.append(line)
            i += 1
        for line in textwrap.dedent("\n".join(block)).strip("\n").splitlines():
            out.append(line[2:] if line.startswith("$ ") else line)
    return "\n".join(out) + "\n" if out else ""


def test_every_page_but_the_index_and_api_has_commands():
    names = {p.name for p in PAGES}
    assert {"archives.rst", "engines.rst", "moving.rst"} <= names
    for page in PAGES:
        script = console_script(page.read_text(encoding="utf-8"))
        if page.name in ("index.rst", "api.rst"):
            continue
        assert script.count("nbank ") >= 3, page.name


@pytest.mark.slow
def test_the_docs_build_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + [str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in PAGES:
        assert (tmp_path / "html" / page.with_suffix(".html").name).is_file()
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    for name in (
        "nbank_core.lineage_graph.lineage",
        "nbank_core.migrate.copy_registry",
    ):
        assert f'id="{name}"' in api, name


@pytest.mark.slow
@pytest.mark.parametrize(
    "page",
    [p.name for p in PAGES if console_script(p.read_text(encoding="utf-8"))],
    ids=lambda n: n[:-4],
)
def test_the_commands_of_each_page_run(page, tmp_path):
    script = console_script((DOCS / page).read_text(encoding="utf-8"))
    work = tmp_path / "work"
    work.mkdir()
    bindir = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NBANK_", "SNAKEMAKE_", "LUIGI_"))
    }
    env.update(
        PATH=bindir + os.pathsep + env.get("PATH", ""),
        HOME=str(tmp_path / "userhome"),
        NBANK_HOME=str(tmp_path / "nbank-home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    proc = subprocess.run(
        ["bash", "-c", "set -euxo pipefail\n" + script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"{page}: exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
        f"--- stderr\n{proc.stderr[-4000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
