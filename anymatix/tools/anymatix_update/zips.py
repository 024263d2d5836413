"""A release's zip, local or on a server, one volume or several: each volume's end record and
central directory (read with the standard library's zipfile, through byte ranges for a remote
one), every entry's place in its volume, and an entry's bytes checked against its CRC-32.

Every volume is a zip of its own whose entries all sit under `anymatix/`; the first holds
`anymatix/manifest.json`, which names every volume (`volumes.files`)."""

import json
import os
import stat
import struct
import urllib.parse
import zipfile
import zlib

from . import layout
from .errors import UpdateError
from .remote import NoRanges, Remote

ROOT = "anymatix/"
TAIL = 1 << 16
LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
LOCAL_SIGNATURE = 0x04034B50
CHUNK = 1 << 20


class Entry:
    """One entry of a volume: where it is and what it holds."""

    __slots__ = ("rel", "kind", "crc", "size", "csize", "method", "offset", "end", "mode", "volume")

    def __init__(self, info, volume):
        self.rel = info.filename[len(ROOT):].rstrip("/")
        mode = info.external_attr >> 16
        if info.is_dir():
            self.kind = "dir"
        elif stat.S_ISLNK(mode):
            self.kind = "link"
        else:
            self.kind = "file"
        self.mode = stat.S_IMODE(mode) or (0o755 if self.kind == "dir" else 0o644)
        self.crc = info.CRC
        self.size = info.file_size
        self.csize = info.compress_size
        self.method = info.compress_type
        self.offset = info.header_offset
        self.end = None
        self.volume = volume


class RangeReader:
    """A read-only file over a Remote, as zipfile reads one: the last 64 KiB are fetched once,
    the central directory in one more request."""

    def __init__(self, remote):
        self.remote = remote
        self.pos = 0
        self.blocks = []

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        if whence == 0:
            self.pos = offset
        elif whence == 1:
            self.pos += offset
        else:
            self.pos = self.remote.size + offset
        return self.pos

    def tell(self):
        return self.pos

    def read(self, n=-1):
        end = self.remote.size if n is None or n < 0 else min(self.pos + n, self.remote.size)
        for start, data in self.blocks:
            if start <= self.pos and end <= start + len(data):
                out = data[self.pos - start:end - start]
                self.pos = end
                return out
        start = self.pos
        if self.remote.size - start <= TAIL:
            start = max(0, min(start, self.remote.size - TAIL))
        data = self.remote.read(start, max(end, min(start + TAIL, self.remote.size)))
        self.blocks.append((start, data))
        out = data[self.pos - start:end - start]
        self.pos = end
        return out

    def close(self):
        pass


class Volume:
    """One volume: its entries, and where its bytes come from (a local file, or a server)."""

    def __init__(self, name, remote=None, path=None):
        self.name = name
        self.remote = remote
        self.path = path
        self.size = None
        self.entries = []
        self.directory_start = None

    @property
    def where(self):
        return self.remote.url if self.remote else self.path

    def read_directory(self):
        try:
            if self.path:
                self.size = os.path.getsize(self.path)
                archive = zipfile.ZipFile(self.path)
            else:
                self.size = self.remote.size
                archive = zipfile.ZipFile(RangeReader(self.remote))
        except zipfile.BadZipFile as e:
            raise UpdateError("%s is not a readable zip (%s): is it a release of anymatix?"
                              % (self.where, e)) from None
        infos = archive.infolist()
        self.directory_start = archive.start_dir
        for info in infos:
            if not info.filename.startswith(ROOT) and info.filename != ROOT:
                raise UpdateError("%s holds %s, outside anymatix/: not a release of anymatix"
                                  % (self.where, info.filename))
            name = info.filename[len(ROOT):]
            if name.startswith("/") or ".." in name.split("/") or "\\" in name:
                raise UpdateError("%s holds an unsafe name: %s" % (self.where, info.filename))
        self.entries = [Entry(i, self) for i in infos if i.filename != ROOT]
        by_offset = sorted(self.entries, key=lambda e: e.offset)
        for entry, after in zip(by_offset, by_offset[1:] + [None]):
            entry.end = after.offset if after else self.directory_start

    def read_entry(self, entry):
        """An entry's bytes, in memory, checked (small entries: manifests)."""
        if self.path:
            with open(self.path, "rb") as f:
                f.seek(entry.offset)
                raw = f.read(entry.end - entry.offset)
        else:
            raw = self.remote.read(entry.offset, entry.end)
        out = bytearray()
        inflate(raw_reader(raw), entry, out.extend, self.where)
        return bytes(out)


class raw_reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def read(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def inflate(stream, entry, sink, where):
    """Reads the entry at the stream's position (its local header first), gives its bytes to
    `sink`, and checks their CRC-32 and size against the central directory."""
    header = stream.read(LOCAL_HEADER.size)
    if len(header) != LOCAL_HEADER.size:
        raise UpdateError("%s: %s is cut short" % (where, entry.rel))
    fields = LOCAL_HEADER.unpack(header)
    if fields[0] != LOCAL_SIGNATURE:
        raise UpdateError("%s: no entry where the directory puts %s" % (where, entry.rel))
    stream.read(fields[9] + fields[10])
    if entry.method == zipfile.ZIP_DEFLATED:
        engine = zlib.decompressobj(-15)
    elif entry.method != zipfile.ZIP_STORED:
        raise UpdateError("%s: %s is compressed with method %d, which this update cannot read"
                          % (where, entry.rel, entry.method))
    else:
        engine = None
    left, crc, size = entry.csize, 0, 0
    while left:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise UpdateError("%s: %s is cut short" % (where, entry.rel))
        left -= len(chunk)
        data = engine.decompress(chunk) if engine else chunk
        crc = zlib.crc32(data, crc)
        size += len(data)
        sink(data)
    if engine:
        data = engine.flush()
        crc = zlib.crc32(data, crc)
        size += len(data)
        sink(data)
    if crc != entry.crc or size != entry.size:
        raise UpdateError("%s: %s does not match its CRC-32 and size (%08x, %d bytes; the zip "
                          "says %08x, %d): the download is damaged, run the update again"
                          % (where, entry.rel, crc, size, entry.crc, entry.size))


class Release:
    """A release's zip: its volumes, its manifest, its package tools' setup, and every entry by
    its path under anymatix/."""

    def __init__(self, source, volumes):
        self.source = source
        self.volumes = volumes
        self.entries = {}
        for volume in volumes:
            for entry in volume.entries:
                self.entries.setdefault(entry.rel, entry)
        self.manifest = self._json("manifest.json")
        self.setup = self._json("tools/environment.json", required=False) or {}

    def _json(self, rel, required=True):
        entry = self.entries.get(rel)
        if entry is None:
            if required:
                raise UpdateError("%s has no anymatix/%s: not a release of anymatix" % (self.source, rel))
            return None
        try:
            return json.loads(entry.volume.read_entry(entry).decode("utf-8"))
        except ValueError as e:
            raise UpdateError("%s: anymatix/%s cannot be read (%s)" % (self.source, rel, e)) from None

    @property
    def size(self):
        return sum(v.size for v in self.volumes)

    def identity(self):
        """What a download kept is kept for: the volumes as the server describes them (not its
        address, which may change: a mirror, the storage host's signed address)."""
        return {
            "volumes": [
                {"name": v.name, "size": v.size,
                 "tag": v.remote.tag if v.remote else None,
                 "directory": v.directory_start}
                for v in self.volumes
            ],
        }


def is_url(source):
    return source.startswith(("http://", "https://"))


def open_release(source, downloads, say):
    """The release `source` names: an address of its zip (the first volume, or the only zip), a
    local zip, or a folder holding its volumes. A server that does not answer range requests
    gets the whole zip downloaded into `downloads` (said so)."""
    if is_url(source):
        first = remote_volume(source, downloads, say)
        first.read_directory()
        volumes = [first]
        names = volume_names(first, source)
        for name in names[1:]:
            url = urllib.parse.urljoin(source, urllib.parse.quote(name))
            volume = remote_volume(url, downloads, say, name)
            volume.read_directory()
            volumes.append(volume)
        return Release(source, volumes)
    path = os.path.abspath(source)
    if os.path.isdir(path):
        zips = sorted(n for n in os.listdir(path) if n.endswith(".zip"))
        firsts = [n for n in zips if n.endswith(".part1.zip")] or zips
        if len(firsts) != 1:
            raise UpdateError("%s holds %s: give the release's zip (or its first volume) itself"
                              % (path, ", ".join(zips) if zips else "no zip"))
        path = os.path.join(path, firsts[0])
    if not os.path.isfile(path):
        raise UpdateError("%s: no such file or folder; give the new release's zip, its first "
                          "volume, a folder holding its volumes, or its address (https://…)" % source)
    first = Volume(os.path.basename(path), path=path)
    first.read_directory()
    volumes = [first]
    for name in volume_names(first, path)[1:]:
        other = os.path.join(os.path.dirname(path), name)
        if not os.path.isfile(other):
            raise UpdateError("%s is one volume of several: %s is missing beside it (download "
                              "every volume into the same folder)" % (path, name))
        volume = Volume(name, path=other)
        volume.read_directory()
        volumes.append(volume)
    return Release(path, volumes)


def volume_names(first, source):
    manifest = None
    for entry in first.entries:
        if entry.rel == "manifest.json":
            manifest = json.loads(first.read_entry(entry).decode("utf-8"))
    if manifest is None:
        raise UpdateError("%s has no anymatix/manifest.json: give the first volume (…part1.zip)"
                          % source)
    names = (manifest.get("volumes") or {}).get("files") or [first.name]
    if names[0] != first.name and len(names) > 1:
        raise UpdateError("%s is not the first volume: give %s" % (source, names[0]))
    return names


def remote_volume(url, downloads, say, name=None):
    name = name or urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]) or "release.zip"
    remote = Remote(url, say)
    try:
        remote.probe()
        return Volume(name, remote=remote)
    except NoRanges:
        pass
    # The server sends every file whole: the update downloads all of it, once.
    os.makedirs(downloads, exist_ok=True)
    path = os.path.join(downloads, "whole-" + layout.safe_name(name))
    if os.path.isfile(path) and os.path.getsize(path) == remote.size:
        say("%s: the server does not answer range requests; using the whole zip downloaded "
            "before (%s)" % (url, path))
    else:
        say("%s: the server does not answer range requests, so the whole zip is downloaded%s"
            % (url, " (%s)" % human(remote.size) if remote.size else ""))
        from .progress import Progress

        with Progress("downloading " + name, remote.size, say) as progress:
            remote.download_whole(path, progress.add)
    return Volume(name, remote=None, path=path)


def human(n):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return ("%d %s" % (n, unit)) if unit == "bytes" else ("%.1f %s" % (n, unit))
        n /= 1000.0
