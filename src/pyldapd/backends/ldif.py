"""slapd-ldif(5): a database kept as one LDIF file per entry, in a tree of folders named as slapd's back-ldif
names them, so that either server can read what the other wrote.

Layout (slapd's ndn2path): the suffix entry is `DIR/<normalized suffix>.ldif`; an entry below it is
`<parent's path without .ldif>/<normalized RDN>.ldif`. In a name, `/`, `:` and `.` are written `\\XX` (hex), `{`,
`}` and `\\` as they are. Each file holds one entry whose `dn:` line is its RDN as the user spelled it (the rest of
the DN comes from the folders), after slapd's header: a comment line and the CRC32 of the entry text.

The files are the database. To answer searches with the same code as back-mdb (filters, scopes, limits, the
entryUUID/entryCSN lookups replication needs), a private LMDB copy is built from the files when the database
opens and dropped when it closes; every write transaction writes its entries' files (each atomically, with
fsync) before that copy commits, so what a client is told is stored is in the files. pyldapd's own bookkeeping
(contextCSN vector, tombstones) goes to `DIR/.pyldapd-state`, which slapd does not read (it reads `*.ldif` only).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyldapd.backends.base import StorageError
from pyldapd.backends.mdb import MdbDatabase, ReadTxn, WriteTxn
from pyldapd.model.dn import normalize_dn, split_rdn
from pyldapd.model.entry import Attribute, Entry
from pyldapd.model.ldif import LDIFContent, LDIFError, format_entry, parse_ldif

HEADER = "# AUTO-GENERATED FILE - DO NOT EDIT!! Use ldapmodify.\n# CRC32 {crc:08x}\n"
STATE_FILE = ".pyldapd-state"
_UNSAFE = "/:."  # slapd's LDIF_NEED_ESCAPE on Unix


def file_name(component: str) -> str:
    """A normalized RDN (or the whole normalized suffix) as slapd's back-ldif names its file, without `.ldif`."""
    out = []
    for ch in component:
        if ch in _UNSAFE:
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


# libldap's ldif_must_b64_encode list: values of these types are always written base64-encoded (userPassword;
# slapd's config backend adds olcRootPW)
ALWAYS_BASE64 = {"userpassword", "2.5.4.35", "olcrootpw"}


def entry_text(entry: Entry) -> str:
    """An entry's file: slapd's header with the CRC32 of the text after it, then the entry with its RDN as
    `dn:` (one newline at the end, as slapd writes it)."""
    rdn, _ = split_rdn(entry.dn)
    plain = [
        (a.name, a.values) for a in entry.attrs.values() if a.name.split(";")[0].lower() not in ALWAYS_BASE64
    ]
    body = format_entry(rdn, plain, wrap=78)[:-1]
    if len(plain) != len(entry.attrs):  # keep the attributes' order: write them one by one
        lines = [format_entry(rdn, [], wrap=78)[:-2]]
        for attribute in entry.attrs.values():
            if attribute.name.split(";")[0].lower() in ALWAYS_BASE64:
                lines += [f"{attribute.name}:: {base64.b64encode(v).decode()}" for v in attribute.values]
            else:
                lines.append(
                    format_entry("x", [(attribute.name, attribute.values)], wrap=78)[:-2].split("\n", 1)[1]
                )
        body = "\n".join(lines) + "\n"
    return HEADER.format(crc=zlib.crc32(body.encode())) + body


def write_file_atomically(path: Path, text: str) -> None:
    """Old text or new, never half: a temporary file fsynced, renamed over, then the folder fsynced (slapd.d
    and back-ldif files alike)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# With several worker processes (server/supervisor.py sets it before forking, to its pid and a random token, so
# that a later run with the same pid never takes an old copy for its own): every worker opens the same LMDB copy
# of each ldif database, in a folder named after the supervisor (made by the first worker that opens an ldif
# database, removed by the supervisor at exit; nothing is made when no ldif database is served, so a chroot
# without /tmp serves everything else). The copy is an LMDB environment like any back-mdb database's, so the
# workers see one another's writes at once (and the files are written under LMDB's writer lock, one writer at a
# time across processes); a copy per process would diverge at the first write. Built once per server run, from
# the files, by the first worker that opens the database; a worker (re)started later opens it as it is.
SHARED_COPIES_OWNER: str | None = None
COPIES_PREFIX = "pyldapd-ldif-"
# Every process that uses a copies folder holds a shared flock on its IN_USE file for as long as it may use it;
# a folder nobody holds (its server was killed with kill -9) is removed by the next server that makes one. The
# lock, not a pid, tells: pids are reused and differ between pid namespaces sharing one /tmp.
IN_USE = "in-use"
SWEEP_AFTER = 60.0  # seconds: a folder younger than this may be one whose maker has not locked it yet
_held: dict[str, int] = {}  # folder -> the descriptor holding its IN_USE lock


def shared_copies_path(owner: str) -> str:
    return os.path.join(tempfile.gettempdir(), COPIES_PREFIX + owner)


def hold_folder(folder: str) -> None:
    """Mark `folder` as in use by this process until `release_folder` or the process's end."""
    if folder in _held:
        return
    fd = os.open(os.path.join(folder, IN_USE), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held[folder] = fd


def release_folder(folder: str) -> None:
    fd = _held.pop(folder, None)
    if fd is not None:
        os.close(fd)


def sweep_abandoned_copies(keep: str) -> list[str]:
    """Remove this user's copies folders that no process holds (left by a server killed with kill -9), but
    `keep`; returns the folders removed."""
    removed = []
    root = tempfile.gettempdir()
    try:
        names = [name for name in os.listdir(root) if name.startswith(COPIES_PREFIX)]
    except OSError:
        return removed
    for name in names:
        folder = os.path.join(root, name)
        if folder == keep:
            continue
        try:
            info = os.lstat(folder)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                continue
            if time.time() - info.st_mtime < SWEEP_AFTER:
                continue
            fd = os.open(os.path.join(folder, IN_USE), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # not ours, gone meanwhile, or of an older kind without the lock: left as it is
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live server's
        finally:
            os.close(fd)  # a lock taken is dropped with it: the folder is removed right after
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def shared_copies_folder(owner: str) -> str:
    """The folder of the copies the workers of supervisor `owner` share: made private on first use; a name taken
    by anything else (another user's folder, a symbolic link) is refused. Held by this process from then on."""
    folder = shared_copies_path(owner)
    try:
        os.mkdir(folder, 0o700)
        made = True
    except FileExistsError:
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise StorageError(f"{folder}: exists and is not this server's folder") from None
        made = False
    hold_folder(folder)
    if made:
        sweep_abandoned_copies(keep=folder)
    return folder


class LdifWriteFailed(StorageError):
    """A file could not be written; `result_text` is slapd's text for the client."""

    def __init__(self, message: str, result_text: str) -> None:
        super().__init__(message)
        self.result_text = result_text


class LdifDatabase(MdbDatabase):
    """One naming context kept in LDIF files (see the module docstring)."""

    # back-ldif walks its folders, each entry before its children, whatever the copy's ids
    scan_by_id = False

    def __init__(self, directory: str, schema: Any, suffix: str, **kwargs: Any) -> None:
        kwargs.pop("maxsize", None)
        kwargs.pop("max_mapsize", None)
        kwargs["sync"] = False  # the copy is rebuilt from the files at every start of the server
        self.shared = SHARED_COPIES_OWNER is not None
        if SHARED_COPIES_OWNER is None:  # one process: a copy of its own, dropped at close
            self.cache_directory = tempfile.mkdtemp(prefix=COPIES_PREFIX)
            hold_folder(self.cache_directory)
            sweep_abandoned_copies(keep=self.cache_directory)
            self._open_copy(directory, schema, suffix, kwargs, build=True)
            return
        # worker processes: one copy for all of them (see SHARED_COPIES_OWNER), built by the first that opens the
        # database, under an fcntl lock (freed if that worker dies mid-build: the next one starts it over)
        key = hashlib.sha256(f"{os.path.realpath(directory)}\0{suffix.lower()}".encode()).hexdigest()[:32]
        self.cache_directory = os.path.join(shared_copies_folder(SHARED_COPIES_OWNER), key)
        os.makedirs(self.cache_directory, exist_ok=True)
        lock_fd = os.open(os.path.join(self.cache_directory, "build.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(lock_fd, fcntl.LOCK_EX)
            built = os.path.join(self.cache_directory, "built")
            if not os.path.exists(built):  # never built, or its builder died: from scratch
                for name in ("data.mdb", "lock.mdb"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.cache_directory, name))
            self._open_copy(directory, schema, suffix, kwargs, build=not os.path.exists(built))
            if not os.path.exists(built):
                Path(built).touch()
        finally:
            os.close(lock_fd)  # also frees the lock

    def _open_copy(self, directory: str, schema: Any, suffix: str, kwargs: dict, *, build: bool) -> None:
        try:
            super().__init__(self.cache_directory, schema, suffix, **kwargs)
        except BaseException:
            if not self.shared:
                shutil.rmtree(self.cache_directory, ignore_errors=True)
            raise
        self.directory = directory
        self.root = Path(directory)
        if not build:
            return
        try:
            self._load_files()
        except BaseException:
            self.close()
            raise

    # -- paths ------------------------------------------------------------------------------------------------

    def path_of(self, ndn: str) -> Path:
        """The file of the entry with this normalized DN (which is the suffix's or below it)."""
        rdns: list[str] = []
        current = ndn
        while current != self.suffix_ndn:
            rdn, current = split_rdn(current)
            rdns.append(rdn)
        path = self.root / file_name(self.suffix_ndn)
        for rdn in reversed(rdns):
            path = path / file_name(rdn)
        return path.with_name(path.name + ".ldif")

    # -- open: the files into the copy --------------------------------------------------------------------------

    def _load_files(self) -> None:
        top = self.root / (file_name(self.suffix_ndn) + ".ldif")
        state = self.root / STATE_FILE
        with self.write() as txn:
            if top.exists():
                _, _, suffix_parent = self.suffix.partition(",")
                stack: list[tuple[Path, str]] = [(top, suffix_parent.strip())]
                while stack:
                    path, parent = stack.pop()
                    entry = self._read_file(path, parent)
                    txn.add_unrecorded(entry)
                    folder = path.with_suffix("")
                    if folder.is_dir():
                        stack.extend(
                            (child, entry.dn) for child in sorted(folder.glob("*.ldif"), reverse=True)
                        )
            if state.exists():
                for key, value in json.loads(state.read_text()).items():
                    txn.put_raw_metadata(base64.b64decode(key), base64.b64decode(value))
            txn.recorded.clear()
        self.sync()

    def _read_file(self, path: Path, parent_dn_text: str) -> Entry:
        try:
            records = [r for r in parse_ldif(path.read_bytes()) if isinstance(r, LDIFContent)]
        except (OSError, LDIFError) as exc:
            raise StorageError(f"{path}: cannot read the entry ({exc})") from None
        if len(records) != 1:
            raise StorageError(f"{path}: expected one entry")
        record = records[0]
        dn = f"{record.dn},{parent_dn_text}" if parent_dn_text else record.dn
        entry = Entry(dn)
        for name, values in record.attributes:
            key = self.schema.attribute_key(name)
            if key in entry.attrs:
                entry.attrs[key].values.extend(values)
            else:
                entry.attrs[key] = Attribute(name, list(values))
        return entry

    # -- transactions -------------------------------------------------------------------------------------------

    def read(self) -> LdifReadTxn:
        return LdifReadTxn(self)

    def write(self) -> LdifWriteTxn:
        return LdifWriteTxn(self)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if not self.shared:  # the shared copies go with the supervisor (other workers may use them)
                release_folder(self.cache_directory)
                shutil.rmtree(self.cache_directory, ignore_errors=True)


def _has_children(txn: ReadTxn, ndn: str) -> bool:
    return ReadTxn.has_children(txn, ndn)


# slapd's back-ldif has no has_subordinates: entries it returns carry no hasSubordinates (the engine asks this)
_has_children.answers_has_subordinates = False  # type: ignore[attr-defined]


class LdifReadTxn(ReadTxn):
    has_children = _has_children


class LdifWriteTxn(WriteTxn):
    has_children = _has_children

    """A write transaction that writes the files of the entries it changed before its LMDB copy commits."""

    db: LdifDatabase

    def __init__(self, db: LdifDatabase, **kwargs: Any) -> None:
        super().__init__(db, **kwargs)
        # in order: ("put", ndn) an entry's file to write, ("delete", ndn), ("move", old ndn, new ndn)
        self.recorded: list[tuple[str, ...]] = []
        self.metadata_changed = False

    def add_unrecorded(self, entry: Entry) -> None:
        """Into the copy only (the entry comes from its file)."""
        super().add(entry)

    def add(self, entry: Entry) -> int:
        eid = super().add(entry)
        self.recorded.append(("put", normalize_dn(entry.dn, self.db.schema)))
        return eid

    def add_encoded(self, eid: int, ndn: str, record: bytes, *, index: bool) -> None:
        super().add_encoded(eid, ndn, record, index=index)
        self.recorded.append(("put", ndn))

    def modify(self, ndn: str, entry: Entry) -> None:
        super().modify(ndn, entry)
        self.recorded.append(("put", ndn))

    def delete(self, ndn: str) -> Entry:
        old = super().delete(ndn)
        self.recorded.append(("delete", ndn))
        return old

    def rename(self, ndn: str, entry: Entry) -> None:
        super().rename(ndn, entry)
        new_ndn = normalize_dn(entry.dn, self.db.schema)
        self.recorded.append(("move", ndn, new_ndn))
        self.recorded.append(("put", new_ndn))

    def put_raw_metadata(self, key: bytes, value: bytes) -> None:
        super().put_raw_metadata(key, value)
        self.metadata_changed = True

    def commit_child(self) -> list[Callable[[], None]]:
        # one operation of a group commit: its files are written when the group commits
        parent = self._parent
        effects = super().commit_child()
        assert isinstance(parent, LdifWriteTxn)
        parent.recorded.extend(self.recorded)
        parent.metadata_changed |= self.metadata_changed
        self.recorded = []
        return effects

    def delete_raw_metadata(self, key: bytes) -> None:
        super().delete_raw_metadata(key)
        self.metadata_changed = True

    def _commit(self) -> None:
        try:
            if self.recorded and not self.db.root.is_dir():  # slapd starts without it and fails each write so
                raise LdifWriteFailed(
                    f"{self.db.directory}: no such folder", "internal error (cannot stat parent dir)"
                )
            self._write_files()
        except OSError as exc:
            self._abort()
            raise LdifWriteFailed(f"{self.db.directory}: {exc.strerror or exc}", "internal error (cannot write "
                                  "entry file)") from exc  # fmt: skip
        except LdifWriteFailed:
            self._abort()
            raise
        super()._commit()

    def _write_files(self) -> None:
        db = self.db
        recorded, self.recorded = self.recorded, []
        for step in recorded:
            if step[0] == "put":
                entry = self.get(step[1])
                if entry is not None:
                    write_file_atomically(db.path_of(step[1]), entry_text(entry))
            elif step[0] == "delete":
                path = db.path_of(step[1])
                if path.exists():
                    path.unlink()
                    sync_folder(path.parent)
                folder = path.with_suffix("")
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            else:  # a rename: the entry's subtree folder follows it (children's files hold only their RDN)
                old, new = db.path_of(step[1]), db.path_of(step[2])
                new.parent.mkdir(parents=True, exist_ok=True)
                if old.with_suffix("").is_dir():
                    os.replace(old.with_suffix(""), new.with_suffix(""))
                if old.exists() and old != new:
                    os.replace(old, new)
                sync_folder(new.parent)
                if old.parent != new.parent:
                    sync_folder(old.parent)
                    folder = Path(old.parent)
                    if folder != db.root and folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()
        if self.metadata_changed and db.root.is_dir():
            items = {base64.b64encode(k).decode(): base64.b64encode(v).decode()
                     for k, v in self.raw_metadata_items(b"")}  # fmt: skip
            write_file_atomically(db.root / STATE_FILE, json.dumps(items, sort_keys=True))
            self.metadata_changed = False
