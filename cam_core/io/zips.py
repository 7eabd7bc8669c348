"""Zip uploads, unpacked safely: bounded before they are parsed, checked entry by entry, written atomically.

``zipfile.ZipFile`` parses the whole central directory into Python objects before anyone can count its entries
(a zip of a million tiny entries costs gigabytes and tens of seconds before a count can refuse it). So
:func:`check_zip` reads the end-of-central-directory record (and its ZIP64 form) from the file's tail and
walks the directory's fixed-size headers with ``struct``, refusing beyond
:data:`~cam_core.limits.MAX_ZIP_DIRECTORY_BYTES`, :data:`~cam_core.limits.MAX_ZIP_FILES` and
:data:`~cam_core.limits.MAX_ZIP_BYTES` before ``ZipFile`` sees the file. :func:`extract_zip` then unpacks the
wanted entries into a fresh, uniquely named temporary folder (two sessions unpacking the same zip never share
one) and moves it into place whole. Every refusal is one :class:`ZipError` line naming the entry, never a
server path. """

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import CamError
from ..limits import (
    MAX_ZIP_BYTES,
    MAX_ZIP_DEPTH,
    MAX_ZIP_DIRECTORY_BYTES,
    MAX_ZIP_FILES,
    MAX_ZIP_NAME_CHARS,
    MAX_ZIP_PATH_CHARS,
)

__all__ = ["ZipDirectory", "ZipError", "check_zip", "extract_zip"]

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory: sig, disk, cd disk, entries here, entries, size, offset
_EOCD_SIG = b"PK\x05\x06"
_LOC64 = struct.Struct("<4sLQL")  # ZIP64 locator: sig, disk, offset of the ZIP64 record, disks
_LOC64_SIG = b"PK\x06\x07"
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # ZIP64 record: sig, size, versions, disks, entries here, entries, size, offset
_EOCD64_SIG = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # a central directory header (46 bytes, then name, extra, comment)
_CENTRAL_SIG = b"PK\x01\x02"
_MAX_COMMENT = 0xFFFF
_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_CHUNK = 1 << 20


class ZipError(CamError):
    """An upload that is not a zip, or one beyond the limits, or an entry that cannot be unpacked safely."""


@dataclass(frozen=True)
class ZipDirectory:
    """What a zip's end record and central directory declare.

    Attributes:
        entries: Entries in the central directory (counted header by header).
        directory_bytes: Size of the central directory.
        uncompressed: Sum of the entries' declared uncompressed sizes.
        zip64: Whether the end record is the ZIP64 one.
    """

    entries: int
    directory_bytes: int
    uncompressed: int
    zip64: bool


def _amount(nbytes: int) -> str:
    """``2 GB``, ``8 MB`` or ``1000 bytes``: a limit for a message."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.0f} GB"
    return f"{nbytes / 2**20:.0f} MB" if nbytes >= 2**20 else f"{nbytes} bytes"


def _short(name: str, keep: int = 60) -> str:
    """An entry's name for a message: printable, and at most ``keep`` characters."""
    shown = name.encode("unicode_escape", "backslashreplace").decode("ascii")
    return shown if len(shown) <= keep else f"{shown[: keep // 2]}…{shown[-keep // 2 + 1:]}"


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _end_record(f: BinaryIO, size: int) -> tuple[int, int, int, int, bool]:
    """(entries, directory size, directory offset, where the end records start, zip64) from the file's tail."""
    if size < _EOCD.size:
        raise ZipError("the upload is not a zip archive")
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    tail = _read_at(f, tail_start, size - tail_start)
    at = len(tail) - _EOCD.size  # no comment: the usual case, and zipfile's first guess too
    if tail[at : at + 4] != _EOCD_SIG:
        at = tail.rfind(_EOCD_SIG)
        if at < 0 or at + _EOCD.size > len(tail):
            raise ZipError("the upload is not a zip archive (no end-of-directory record)")
    _, disk, cd_disk, _here, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    eocd = tail_start + at
    if disk or cd_disk:
        raise ZipError("the zip spans several files (a split archive); upload it as one zip")
    loc = eocd - _LOC64.size
    if loc >= 0 and _read_at(f, loc, 4) == _LOC64_SIG:
        _, _, rec_offset, _ = _LOC64.unpack(_read_at(f, loc, _LOC64.size))
        rec_at = loc - _EOCD64.size  # where zipfile expects it (data prepended to the zip shifts offsets)
        record = _read_at(f, rec_at, _EOCD64.size) if rec_at >= 0 else b""
        if len(record) != _EOCD64.size or record[:4] != _EOCD64_SIG:
            raise ZipError(f"the zip's ZIP64 end record is corrupt (declared at {rec_offset})")
        fields = _EOCD64.unpack(record)
        entries, cd_size, cd_offset = fields[7], fields[8], fields[9]
        return entries, cd_size, cd_offset, rec_at, True
    return entries, cd_size, cd_offset, eocd, False


def _zip64_size(extra: bytes, header_size: int, header_csize: int) -> int:
    """The uncompressed size from a ZIP64 extra field (its first value when the header says 0xFFFFFFFF)."""
    i = 0
    while i + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, i)
        if kind == 1 and header_size == 0xFFFFFFFF and length >= 8:
            return struct.unpack_from("<Q", extra, i + 4)[0]
        i += 4 + length
    return header_size


def check_zip(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    *,
    max_files: int = MAX_ZIP_FILES,
    max_bytes: int = MAX_ZIP_BYTES,
    max_directory_bytes: int = MAX_ZIP_DIRECTORY_BYTES,
) -> ZipDirectory:
    """Bound a zip from its tail and its central directory's fixed-size headers, before ``zipfile`` parses it.

    The end record's entry count and directory size are checked first (a few bytes read); then the
    directory (at most ``max_directory_bytes``) is walked header by header, counting entries as ``zipfile``
    would (it trusts the directory's size, not the declared count) and summing declared sizes.

    Args:
        source: The zip's bytes, a path, or a seekable binary file.
        max_files: Most entries (directories included).
        max_bytes: Most declared uncompressed bytes in all.
        max_directory_bytes: Largest central directory.

    Returns:
        What the zip declares, within the limits.

    Raises:
        ZipError: Not a zip, a split or corrupt one, or beyond a limit.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return check_zip(io.BytesIO(source), max_files=max_files, max_bytes=max_bytes,
                         max_directory_bytes=max_directory_bytes)
    if isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as f:
                return check_zip(f, max_files=max_files, max_bytes=max_bytes, max_directory_bytes=max_directory_bytes)
        except OSError as exc:
            raise ZipError(f"cannot read the zip: {exc.strerror or type(exc).__name__}") from exc
    f = source
    size = f.seek(0, io.SEEK_END)
    entries, cd_size, _cd_offset, end_at, zip64 = _end_record(f, size)
    if entries > max_files:
        raise ZipError(f"the zip has {entries} entries; at most {max_files} are accepted")
    if cd_size > max_directory_bytes:
        raise ZipError(
            f"the zip's directory is {_amount(cd_size)}; at most {_amount(max_directory_bytes)} "
            f"(about {max_files} entries) are accepted"
        )
    start = end_at - cd_size  # as zipfile finds it (data prepended to the zip shifts the stored offset)
    if start < 0:
        raise ZipError("the zip is truncated or corrupt: its directory lies before the file's start")
    directory = _read_at(f, start, cd_size)
    count = total = i = 0
    while i < len(directory):  # zipfile's loop: until the directory's size, whatever the declared count
        if i + _CENTRAL.size > len(directory) or directory[i : i + 4] != _CENTRAL_SIG:
            raise ZipError("the zip is truncated or corrupt: its directory is damaged")
        fields = _CENTRAL.unpack_from(directory, i)
        csize, usize, n_name, n_extra, n_comment = fields[8], fields[9], fields[10], fields[11], fields[12]
        name_end = i + _CENTRAL.size + n_name
        extra = directory[name_end : name_end + n_extra]
        count += 1
        if count > max_files:
            raise ZipError(f"the zip has more than {max_files} entries; at most {max_files} are accepted")
        total += _zip64_size(extra, usize, csize)
        if total > max_bytes:
            raise ZipError(f"the zip holds more than {_amount(max_bytes)} uncompressed; upload less")
        i = name_end + n_extra + n_comment
    return ZipDirectory(count, cd_size, total, zip64)


@dataclass(frozen=True)
class _Planned:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]


def _parts(name: str) -> tuple[PurePosixPath, tuple[str, ...]]:
    path = PurePosixPath(name.replace("\\", "/"))
    return path, tuple(p for p in path.parts if p not in ("", "."))


def _available(method: int) -> bool:
    """Whether this Python can decompress ``method`` (bz2 and lzma are optional modules)."""
    module = {zipfile.ZIP_BZIP2: "bz2", zipfile.ZIP_LZMA: "lzma"}.get(method)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _check_entry(info: zipfile.ZipInfo, parts: tuple[str, ...]) -> None:
    """The per-entry refusals, before anything of it is written."""
    shown = _short(info.filename)
    if len(parts) - 1 > MAX_ZIP_DEPTH:  # before anything walks it: os.makedirs recurses once per level
        raise ZipError(f"the zip's entry {shown} is {len(parts) - 1} folders deep; at most {MAX_ZIP_DEPTH}")
    if len(info.filename) > MAX_ZIP_PATH_CHARS:
        raise ZipError(
            f"the zip's entry {shown} has a path of {len(info.filename)} characters; at most {MAX_ZIP_PATH_CHARS}"
        )
    for part in parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_ZIP_NAME_CHARS:
            raise ZipError(
                f"the zip's entry {shown} has a name of {len(part)} characters; at most {MAX_ZIP_NAME_CHARS} a name"
            )
        if "\x00" in part:
            raise ZipError(f"the zip's entry {shown} has a NUL character in its name")
    if info.flag_bits & 0x1:
        raise ZipError(f"the zip's entry {shown} is encrypted (password-protected); upload an unencrypted zip")
    if info.compress_type not in _COMPRESSIONS:
        raise ZipError(
            f"the zip's entry {shown} uses compression method {info.compress_type}, which cannot be read here; "
            "zip it again with the usual Deflate"
        )
    if not _available(info.compress_type):
        raise ZipError(f"the zip's entry {shown} uses a compression this server lacks; zip it again with Deflate")


def _check_clashes(planned: list[_Planned]) -> None:
    """A name used twice, or both as a file and as a folder (``a.jpg`` and ``a.jpg/b.jpg``), is refused."""
    files: dict[tuple[str, ...], str] = {}
    folders: dict[tuple[str, ...], str] = {}
    for p in planned:
        if p.parts in files:
            raise ZipError(f"the zip holds {_short('/'.join(p.parts))} twice")
        files[p.parts] = p.info.filename
        for depth in range(1, len(p.parts)):
            folders.setdefault(p.parts[:depth], p.info.filename)
    for parts in files:
        if parts in folders:
            raise ZipError(
                f"the zip holds {_short('/'.join(parts))} both as a file and as a folder "
                f"(of {_short(folders[parts])})"
            )


def _wanted(info: zipfile.ZipInfo, suffixes: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The entry's path parts if it is to be written: no folders, links, hidden files, ``..`` or absolute paths."""
    path, parts = _parts(info.filename)
    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
    hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
    if info.is_dir() or is_link or hidden or not parts:
        return None
    if suffixes is not None and path.suffix.lower() not in suffixes:
        return None
    if path.is_absolute() or ".." in parts:
        return None
    return parts


def _write(archive: zipfile.ZipFile, planned: list[_Planned], dest: Path, max_bytes: int) -> None:
    written = 0
    for p in planned:
        shown = _short(p.info.filename)
        target = dest.joinpath(*p.parts)
        os.makedirs(target.parent, exist_ok=True)  # depth bounded by _check_entry
        try:
            with archive.open(p.info) as src, target.open("xb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:  # the sizes in the zip's directory may lie
                        raise ZipError(f"the zip holds more than {_amount(max_bytes)} uncompressed; upload less")
                    out.write(chunk)
        except ZipError:
            raise
        except zipfile.BadZipFile as exc:
            reason = "bad CRC-32" if "CRC" in str(exc) else "damaged data"
            raise ZipError(f"the zip's entry {shown} is corrupt ({reason})") from exc
        except (EOFError, zipfile.LargeZipFile, ValueError) as exc:  # truncated streams, bad lengths
            raise ZipError(f"the zip's entry {shown} is corrupt ({type(exc).__name__})") from exc
        except OSError as exc:
            raise ZipError(f"the zip's entry {shown} cannot be written: {exc.strerror or type(exc).__name__}") from exc


def extract_zip(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    dest: str | os.PathLike[str],
    *,
    suffixes: Iterable[str] | None = None,
    what: str = "files",
    strip_single_top: bool = False,
    max_files: int = MAX_ZIP_FILES,
    max_bytes: int = MAX_ZIP_BYTES,
) -> Path:
    """Unpack a zip's wanted entries into ``dest`` (made whole, once: an existing ``dest`` is returned as is).

    The zip is bounded by :func:`check_zip` before ``zipfile`` parses it. Folders, links, hidden entries
    (``.x``, ``__MACOSX``), absolute paths and ``..`` are skipped; the entries kept are checked before
    anything is written: the name's and path's length and depth, encryption, compression method, and clashes
    (a name twice, a file and a folder of the same name). They are written into a new temporary folder next to
    ``dest`` (``tempfile.mkdtemp``: unique, so two sessions unpacking the same zip at once never share one),
    with the bytes actually written held to ``max_bytes`` and every CRC checked, then moved into place whole.

    Args:
        source: The zip's bytes, a path or a seekable binary file.
        dest: The folder to make (its parent is created if needed).
        suffixes: Keep only entries with these extensions (``("jpg", "png")``, case-insensitive); ``None``: all.
        what: What the kept entries are called in the message when there is none (``"images"``).
        strip_single_top: When every kept entry lies two or more folders under one top folder
            (``photos/cat/1.jpg``), drop that top folder (``cat/1.jpg``).
        max_files: Most entries of the zip.
        max_bytes: Most uncompressed bytes (declared, and written).

    Returns:
        ``dest``.

    Raises:
        ZipError: Not a zip; beyond a limit; nothing to keep; an entry too long, too deep, encrypted,
            compressed in an unknown way, clashing or corrupt (bad CRC).
    """
    dest = Path(dest)
    if dest.is_dir():
        return dest
    data = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
    check_zip(data, max_files=max_files, max_bytes=max_bytes)
    ends = None if suffixes is None else tuple(f".{s.lower().lstrip('.')}" for s in suffixes)
    try:
        archive = zipfile.ZipFile(data)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ZipError("the upload is not a zip archive that can be read") from exc
    with archive:
        planned = []
        for info in archive.infolist():
            parts = _wanted(info, ends)
            if parts is not None:
                planned.append(_Planned(info, parts))
        if not planned:
            kinds = f" ({', '.join(e.lstrip('.') for e in ends)})" if ends else ""
            raise ZipError(f"the zip holds no {what}{kinds}")
        if strip_single_top and len({p.parts[0] for p in planned}) == 1 and all(len(p.parts) > 2 for p in planned):
            planned = [_Planned(p.info, p.parts[1:]) for p in planned]
        for p in planned:
            _check_entry(p.info, p.parts)
        _check_clashes(planned)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp's 0o700 would stay on the folder put in place
            _write(archive, planned, tmp, max_bytes)
            try:
                os.replace(tmp, dest)
            except OSError:  # another session put the same folder in place first: theirs is as good
                if not dest.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest
