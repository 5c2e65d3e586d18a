"""The embedded default's Celery broker: kombu's filesystem transport, safe across processes.

kombu's own transport (kombu/transport/filesystem.py) creates a message file and only then
writes it, while a consumer in another process may already have taken and read the file:
it reads nothing, fails with ``JSONDecodeError`` and the Celery worker stops ("Unrecoverable
error"), losing the message too. Its exchange tables (which queues an exchange routes to)
are truncated and rewritten in place, so a publisher may read one half written.

Here every file appears whole or not at all: it is written under a hidden name and renamed
into place (a rename within one file system is atomic on POSIX), and a consumer claims a
message by renaming it out of the queue folder, which exactly one process can do. A file
that still cannot be read (left half written by an older version, or by a full disk) is
set aside in ``unreadable/`` with a warning, never fatal. The folders and file names are
kombu's, so queued messages survive an upgrade. Selected with ``CELERY_BROKER_TRANSPORT``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees the file partly written."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Channel(filesystem.Channel):
    """kombu's filesystem channel with whole-file writes and claims by rename."""

    # --- Messages ---------------------------------------------------------------------

    # _put, _get and get_table keep kombu's filesystem signatures, which already differ
    # from the virtual channel's: celery-types' kombu stub ignores the same [override].

    def _put(self, queue: str, payload: dict, **kwargs: Any) -> None:  # type: ignore[override]
        # kombu's name, so that its _size and _purge (and older files) still apply.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:
            write_atomically(Path(self.data_folder_out, name), str_to_bytes(dumps(payload)))
        except OSError as error:
            raise ChannelError(f"Cannot add {name!r} to the queue folder") from error

    def _get(self, queue: str) -> dict:  # type: ignore[override]
        folder = Path(self.data_folder_in)
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = self._claimed_folder / name
            try:
                os.rename(folder / name, claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            try:
                text = bytes_to_str(claimed.read_bytes())
            except OSError as error:
                raise ChannelError(f"Cannot read {claimed}") from error
            try:
                message = loads(text)
            except ValueError:
                self._set_aside(claimed)
                continue
            if self.store_processed:
                os.replace(claimed, Path(self.processed_folder, name))
            else:
                claimed.unlink()
            return message
        raise Empty()

    def _set_aside(self, path: Path) -> None:
        folder = self._folder("unreadable")
        os.replace(path, folder / path.name)
        logger.warning(
            "Broker message %s is not a whole message; set aside in %s.", path.name, folder
        )

    # --- Exchange tables --------------------------------------------------------------

    def get_table(self, exchange: str) -> list[filesystem.exchange_queue_t]:  # type: ignore[override]
        file = self._table_file(exchange)
        try:
            text = bytes_to_str(file.read_bytes())
        except FileNotFoundError:
            return []
        except OSError as error:
            raise ChannelError(f"Cannot open {file}") from error
        try:
            return [filesystem.exchange_queue_t(*binding) for binding in loads(text)]
        except (ValueError, TypeError):
            # Only an older version leaves one so; the next bind (each worker start
            # binds its queues again) writes it anew.
            logger.warning("Broker exchange table %s is unreadable; taken as empty.", file)
            return []

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange):
            table = self.get_table(exchange)
            if binding not in table:
                self._write_table(exchange, [binding, *table])

    def _delete(
        self,
        queue: str,
        exchange: str,
        routing_key: str,
        pattern: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        # The virtual channel's own bookkeeping, then this channel's table (not the parent's,
        # which rewrites the file in place).
        super(filesystem.Channel, self)._delete(
            queue, exchange, routing_key, pattern, *args, **kwargs
        )
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange):
            table = self.get_table(exchange)
            if binding in table:
                self._write_table(exchange, [b for b in table if b != binding])

    def _write_table(self, exchange: str, table: list[filesystem.exchange_queue_t]) -> None:
        file = self._table_file(exchange)
        try:
            write_atomically(file, str_to_bytes(dumps(table)))
        except OSError as error:
            raise ChannelError(f"Cannot write {file}") from error

    @contextmanager
    def _table_lock(self, exchange: str) -> Iterator[None]:
        """Held while a table is read, changed and written: binds in several processes
        never lose each other's changes. A lock file of its own: the table is replaced."""
        self.control_folder.mkdir(parents=True, exist_ok=True)
        table = self._table_file(exchange)
        # kombu's lock() and unlock() take any file with fileno(); celery-types' stub
        # narrows them to FileIO | TextIOWrapper and lacks LOCK_EX.
        with open(table.with_name(f"{table.name}.lock"), "ab") as lock_file:
            filesystem.lock(lock_file, filesystem.LOCK_EX)  # type: ignore[arg-type, attr-defined]
            try:
                yield
            finally:
                filesystem.unlock(lock_file)  # type: ignore[arg-type]

    def _table_file(self, exchange: str) -> Path:
        """kombu's file of ``exchange``'s table (it refuses a name that is not one)."""
        return self._exchange_file(exchange)  # type: ignore[attr-defined]  # not in the stub

    # --- Folders ----------------------------------------------------------------------

    @cached_property
    def _claimed_folder(self) -> Path:
        return self._folder("claimed")

    def _folder(self, name: str) -> Path:
        """A folder beside the queue folder (so on its file system: renames stay atomic)."""
        folder = Path(self.data_folder_in).parent / name
        folder.mkdir(exist_ok=True)
        return folder


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`."""

    Channel = Channel
