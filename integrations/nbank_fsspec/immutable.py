"""What ``nbank://`` refuses: deleting, moving, copying or writing inside resources.

A registered resource never changes: records and analyses cite it by id, and the
registry keeps one id per content (sha1). fsspec's operations that would change one
(``rm``, ``rm_file``, ``rmdir``, ``mv``/``rename``, ``copy``/``cp_file``, and through
them ``UPath.unlink``, ``UPath.rename``) raise :class:`~nbank_fsspec.errors.
ResourceImmutable`, a ``PermissionError``, at once: nothing is looked up or touched.

>>> class Fs(Immutable):
...     pass
>>> try:
...     Fs().rm("nbank://st32_1_2_1")
... except PermissionError as err:
...     print(str(err).split(": ")[0])
deleting nbank://st32_1_2_1 is refused
"""

from __future__ import annotations

from typing import Any, NoReturn

from nbank_fsspec.errors import ResourceImmutable

__all__ = ["Immutable", "shown"]

_COPY_HINT = (
    "read the resource under its id where it is needed, or fs.get() it to a local "
    "path to work on a copy"
)


def shown(path: Any) -> str:
    """``nbank://ID`` for a path, the first few for a list."""
    if isinstance(path, list | tuple):
        first = ", ".join(shown(p) for p in path[:3])
        return f"{len(path)} paths ({first}{', ...' if len(path) > 3 else ''})"
    text = str(path)
    return text if text.startswith("nbank:") else f"nbank://{text}"


class Immutable:
    """Mixin: the changing operations of ``AbstractFileSystem``, refused."""

    def rm(
        self, path: Any, recursive: bool = False, maxdepth: int | None = None
    ) -> NoReturn:
        _refuse_delete(path)

    def rm_file(self, path: Any) -> NoReturn:
        _refuse_delete(path)

    def _rm(self, path: Any) -> NoReturn:
        _refuse_delete(path)

    def rmdir(self, path: Any) -> NoReturn:
        _refuse_delete(path)

    def mv(self, path1: Any, path2: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise ResourceImmutable(
            f"moving {shown(path1)} to {shown(path2)} is refused: a resource's id "
            "and content never change once registered, as records and analyses "
            f"cite it by id; {_COPY_HINT}"
        )

    def copy(self, path1: Any, path2: Any, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_copy(path1, path2)

    def cp_file(self, path1: Any, path2: Any, **kwargs: Any) -> NoReturn:
        _refuse_copy(path1, path2)


def _refuse_delete(path: Any) -> NoReturn:
    raise ResourceImmutable(
        f"deleting {shown(path)} is refused: registered resources are immutable, as "
        "records and analyses cite them by id; leave it in place (the registry's "
        "administrator withdraws a resource that must go)"
    )


def _refuse_copy(path1: Any, path2: Any) -> NoReturn:
    raise ResourceImmutable(
        f"copying {shown(path1)} to {shown(path2)} is refused: resources are "
        "immutable and the registry keeps one id per content (sha1), so the same "
        f"bytes cannot be registered again under another id; {_COPY_HINT}"
    )
