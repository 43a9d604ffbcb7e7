"""Which registry an ``nbank://`` filesystem uses: the core's one rule
(:func:`nbank_core.resolve_settings`), through real fsspec, on both registries."""

from __future__ import annotations

import fsspec
import pytest
from fsspec_helpers import Nb, nb_fixture  # noqa: F401
from nbank_fsspec import NbankFileSystem

from nbank_core.config import registry_mismatch
from nbank_core.registry import open_registry


def _other_registry(nb: Nb) -> str:
    """Another existing (embedded) registry that knows the test's datatype, so a
    deposit sent there by mistake would succeed."""
    url = "sqlite://" + str(nb.tmp / "other" / "registry.sqlite")
    (nb.tmp / "other").mkdir()
    with open_registry(url, create=True) as reg:
        reg.add_datatype(nb.archive.dtype, "text/plain")
    return url


def test_nbank_registry_naming_another_registry_does_not_divert_deposits(
    nb: Nb, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _other_registry(nb)
    monkeypatch.setenv("NBANK_REGISTRY", other)
    NbankFileSystem.clear_instance_cache()
    opts = {"archive": str(nb.archive.path), "dtype": nb.archive.dtype}
    if nb.archive.backend.auth:
        opts["auth"] = ":".join(nb.archive.backend.auth)
    fs = fsspec.filesystem("nbank", **opts)
    assert fs.registry.url == nb.archive.registry.url
    piped, opened = nb.name("piped"), nb.name("opened")
    fs.pipe(f"nbank://{piped}", f"p,{nb.uniq}\n".encode())
    with fsspec.open(f"nbank://{opened}", "wb", **opts) as f:
        f.write(f"o,{nb.uniq}\n".encode())
    assert nb.registered(piped) and nb.registered(opened)
    assert nb.archived(piped) and nb.archived(opened)
    with open_registry(other) as reg:
        assert reg.get_resources([piped, opened]) == {}
    assert fs.cat_file(opened) == f"o,{nb.uniq}\n".encode()
    NbankFileSystem.clear_instance_cache()


def test_an_explicit_registry_other_than_the_archives_fails_at_start(nb: Nb) -> None:
    other = _other_registry(nb)
    cfg = nb.archive.cfg
    text = registry_mismatch(cfg.path, cfg.registry, other)
    NbankFileSystem.clear_instance_cache()
    opts = {"registry": other, "archive": str(cfg.path), "dtype": nb.archive.dtype}
    with pytest.raises(ValueError) as made:
        fsspec.filesystem("nbank", **opts)
    assert str(made.value).count(text) == 1 and "\n" not in str(made.value)
    name = nb.name("never")
    with pytest.raises(ValueError) as opened:  # noqa: PT012
        with fsspec.open(f"nbank://{name}", "wb", **opts) as f:
            f.write(b"x")
    assert str(opened.value).count(text) == 1
    assert nb.nothing_of(name)
