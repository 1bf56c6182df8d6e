"""A small object store: the interface the handlers use, and a directory implementation.

Keys are relative POSIX paths (``"audio/u1/t42.mp3"``). Deleting an object that is already gone
is not an error, so a deletion can always be retried.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Protocol

import anyio


class InvalidObjectKeyError(ValueError):
    """A key that is empty, absolute, or climbs out of the store with ``..``."""


class ObjectStore(Protocol):
    """What a handler needs from an object store (a directory here; S3 and the like elsewhere)."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def read(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool:
        """Remove the object; ``False`` if it was already gone."""
        ...


class DirectoryObjectStore:
    """Objects as files under ``root``; a key maps to the file at ``root / key``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, key: str) -> Path:
        """The file holding ``key``; raises :class:`InvalidObjectKeyError` for unsafe keys."""
        pure = PurePosixPath(key)
        if not key or pure.is_absolute() or ".." in pure.parts or "\\" in key:
            raise InvalidObjectKeyError(f"invalid object key {key!r}")
        return self.root.joinpath(*pure.parts)

    async def put(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically (a reader never sees half an object)."""
        path = self.path_for(key)
        await anyio.to_thread.run_sync(_write_atomically, path, data)

    async def read(self, key: str) -> bytes:
        return await anyio.Path(self.path_for(key)).read_bytes()

    async def exists(self, key: str) -> bool:
        return await anyio.Path(self.path_for(key)).is_file()

    async def delete(self, key: str) -> bool:
        try:
            await anyio.Path(self.path_for(key)).unlink()
        except FileNotFoundError:
            return False
        return True


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
