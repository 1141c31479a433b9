"""Registry of known data files, verified local copies, the user cache and an offline mirror.

A :class:`DataFile` names one upstream file with its URL, size, sha256, license and citation.
:func:`resolve` turns an entry into a local path whose sha256 has been checked, looking in this
order: the offline mirror (read in place, never copied), the user cache, a download (pooch).
A file is never handed out unverified.

Verification policy (bit rot keeps a file's size and mtime, so neither may vouch for it): a file
of at most :data:`REHASH_BYTES` is hashed on every use (every file of the shared data is under
5 MB: a few milliseconds, see benchmarks/bench_tables.py); a larger one is hashed when first seen
and on every table build (``resolve(..., full_check=True)``), and between builds a stamp of its
size, mtime and hash spares re-reading hundreds of MB on every lookup.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from ecnas_plugin.errors import ChecksumError, DataUnavailable, SchemaError, UnknownName
from ecnas_plugin.hookspecs import hookimpl

CACHE_ENV = "ECNAS_CACHE_DIR"
MIRROR_ENV = "ECNAS_DATA_MIRROR"
DOWNLOAD_TIMEOUT_S = 60  # per connect/read, so a stalled server cannot hang a run forever
AVAILABILITY = ("download", "mirror-only")
TSV_COLUMNS = (
    "name", "size_bytes", "sha256", "license", "availability", "upstream_repo", "upstream_path",
    "url", "mirror_path", "citation", "description",
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
REHASH_BYTES = 64 << 20  # files up to this size are re-hashed on every use


@dataclass(frozen=True)
class DataFile:
    """One known data file: where upstream serves it, what it must hash to, and its terms."""

    name: str
    url: str
    size_bytes: int
    sha256: str
    license: str
    citation: str
    upstream_repo: str
    upstream_path: str
    mirror_path: str
    description: str
    mirror_only: bool = False  # no single upstream file: only an offline mirror can supply it

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise SchemaError(f"data file name {self.name!r} must be a plain file name", column="name")
        if not _SHA256.match(self.sha256):
            raise SchemaError(
                f"data file {self.name!r}: sha256 {self.sha256!r} is not 64 lowercase hex digits",
                column="sha256",
            )
        if isinstance(self.size_bytes, bool) or not isinstance(self.size_bytes, int) or self.size_bytes < 0:
            raise SchemaError(
                f"data file {self.name!r}: size_bytes {self.size_bytes!r} is not a non-negative int",
                column="size_bytes",
            )
        rel = PurePosixPath(self.mirror_path)
        if not self.mirror_path or rel.is_absolute() or ".." in rel.parts:
            raise SchemaError(
                f"data file {self.name!r}: mirror_path {self.mirror_path!r} must be a relative path "
                "inside the mirror",
                column="mirror_path",
            )


def builtin_data_files() -> list[DataFile]:
    """The data files this package knows about, read from the packaged ``data_files.tsv``."""
    text = resources.files("ecnas_plugin").joinpath("data_files.tsv").read_text(encoding="utf-8")
    return parse_data_files_tsv(text, source="ecnas_plugin/data_files.tsv")


def parse_data_files_tsv(text: str, source: str = "<tsv>") -> list[DataFile]:
    """Parse a registry TSV (columns :data:`TSV_COLUMNS`) into entries; bad rows are named."""
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    if tuple(reader.fieldnames or ()) != TSV_COLUMNS:
        raise SchemaError(f"{source}: header {reader.fieldnames!r} differs from {list(TSV_COLUMNS)!r}")
    entries = []
    for line, row in enumerate(reader, start=2):
        if None in row or any(v is None for v in row.values()):
            raise SchemaError(f"{source} line {line}: expected {len(TSV_COLUMNS)} tab-separated fields")
        if row["availability"] not in AVAILABILITY:
            raise SchemaError(
                f"{source} line {line}: availability {row['availability']!r} not in {AVAILABILITY}",
                column="availability",
            )
        try:
            size = int(row["size_bytes"])
        except ValueError:
            raise SchemaError(
                f"{source} line {line}: size_bytes {row['size_bytes']!r} is not an integer",
                column="size_bytes",
            ) from None
        entries.append(DataFile(
            name=row["name"], url=row["url"], size_bytes=size, sha256=row["sha256"],
            license=row["license"], citation=row["citation"], upstream_repo=row["upstream_repo"],
            upstream_path=row["upstream_path"], mirror_path=row["mirror_path"],
            description=row["description"], mirror_only=row["availability"] == "mirror-only",
        ))
    return entries


def find(entries: Iterable[DataFile], name: str) -> DataFile:
    """The entry called ``name``; raises UnknownName listing the names that exist."""
    entries = list(entries)
    for entry in entries:
        if entry.name == name:
            return entry
    raise UnknownName("data file", name, [e.name for e in entries])


def cache_dir() -> Path:
    """Root of the user cache: ``$ECNAS_CACHE_DIR`` if set, else the platform's user cache dir."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs  # only needed when no explicit cache dir is given

    return Path(platformdirs.user_cache_dir("ecnas-plugin"))


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def folder_for(root: Path, name: object, what: str) -> Path:
    """``root / name`` for a plain ``name`` (letters, digits, '.', '_', '-'; not starting with '.';
    no path) whose folder lies directly under ``root``; anything else is refused naming it, so no
    name from a user, a manifest or a plugin reaches a path outside its root."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name) or name.endswith((".old", ".lock")):
        raise SchemaError(f"{what} {name!r} must be a plain name (letters, digits, '.', '_', '-'; no path, "
                          "not starting with '.', not ending '.old' or '.lock', which saves reserve)", column="name")
    folder = Path(root) / name
    if folder.resolve().parent != Path(root).resolve():
        raise SchemaError(f"{what} {name!r}: {folder} is not directly under {root}", column="name")
    return folder


def data_cache_dir() -> Path:
    """Where downloaded data files live: ``cache_dir()/data``."""
    return cache_dir() / "data"


_RESOLVED_MIRRORS: dict[str, Path] = {}


def mirror_dir(explicit: Path | None = None) -> Path | None:
    """The offline mirror: ``explicit`` if given, else ``$ECNAS_DATA_MIRROR``, else None.

    A relative path is made absolute the first time it is read (against the working folder
    then), so a later change of folder (a worker, NASLib's runner) cannot move it.
    """
    if explicit is not None:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get(MIRROR_ENV)
    if not env:
        return None
    if env not in _RESOLVED_MIRRORS:
        _RESOLVED_MIRRORS[env] = Path(env).expanduser().absolute()
    return _RESOLVED_MIRRORS[env]


def _describe_mirror(root: Path, explicit: Path | None) -> str:
    given = str(explicit) if explicit is not None else f"${MIRROR_ENV}={os.environ.get(MIRROR_ENV)}"
    return given if str(root) == given.split("=", 1)[-1] else f"{given} (resolved to {root})"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- verification stamps: skip re-hashing big files whose size and mtime have not changed ---

def _stamps_path() -> Path:
    return data_cache_dir() / "verified.json"


def _load_stamps() -> dict:
    try:
        stamps = json.loads(_stamps_path().read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}  # a missing or torn stamp file only costs a re-hash
    return stamps if isinstance(stamps, dict) else {}


def _stamp_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _is_stamped(path: Path, sha256: str) -> bool:
    key, size, mtime_ns = _stamp_key(path)
    stamp = _load_stamps().get(key)
    return stamp == {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}


def _write_stamp(path: Path, sha256: str) -> None:
    key, size, mtime_ns = _stamp_key(path)
    stamps = _load_stamps()
    stamps[key] = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}
    target = _stamps_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stamps, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file


def _verified(entry: DataFile, path: Path, full_check: bool = False) -> bool:
    """True if ``path`` hashes to the entry's sha256. Only a file larger than REHASH_BYTES, outside
    a full check, may be vouched for by its stamp instead (see the module's policy)."""
    if not full_check and entry.size_bytes > REHASH_BYTES and _is_stamped(path, entry.sha256):
        return True
    if path.stat().st_size == entry.size_bytes and sha256_file(path) == entry.sha256:
        if entry.size_bytes > REHASH_BYTES:
            _write_stamp(path, entry.sha256)
        return True
    return False


def _mismatch(entry: DataFile, path: Path, where: str) -> ChecksumError:
    actual = sha256_file(path)
    size = path.stat().st_size
    return ChecksumError(
        f"data file {entry.name!r} in the {where} ({path}) does not match its registered checksum: "
        f"expected sha256 {entry.sha256} ({entry.size_bytes} bytes), "
        f"actual sha256 {actual} ({size} bytes)"
    )


# --- resolution ---

def resolve(
    entry: DataFile, *, mirror: Path | None = None, download: bool = True, progress: bool = False,
    full_check: bool = False,
) -> Path:
    """A local path to ``entry`` whose sha256 has been verified.

    Looks in the mirror (``mirror`` or ``$ECNAS_DATA_MIRROR``; read in place), then the user cache
    (``cache_dir()/data``), then downloads into the cache if ``download`` is true. ``full_check``
    re-hashes even a large stamped file (table builds ask for it). Raises ChecksumError if a copy
    found (or downloaded) does not match, DataUnavailable if the file is nowhere and cannot be
    fetched, or if the mirror named does not exist.
    """
    root = mirror_dir(mirror)
    if root is not None and not root.is_dir():
        raise DataUnavailable(f"the offline mirror {_describe_mirror(root, mirror)} is not a folder; "
                              f"data file {entry.name!r} would be at {root / entry.mirror_path}. Point "
                              f"${MIRROR_ENV} at the folder (an absolute path works from anywhere) or unset it")
    mirrored = root / entry.mirror_path if root is not None else None
    if mirrored is not None and mirrored.is_file():
        if not _verified(entry, mirrored, full_check):
            raise _mismatch(entry, mirrored, "mirror")
        return mirrored

    cached = data_cache_dir() / entry.name
    if cached.is_file():
        if _verified(entry, cached, full_check):
            return cached
        if not download:
            raise _mismatch(entry, cached, "cache")
        cached.unlink()  # known bad: remove it so a failed re-download leaves nothing behind

    looked = (f"mirror {mirrored}" if mirrored is not None
              else f"no mirror (set ${MIRROR_ENV} or pass a mirror)") + f"; cache {cached}"
    if entry.mirror_only:
        raise DataUnavailable(
            f"data file {entry.name!r} comes only from an offline mirror (upstream has no single "
            f"file for it: {entry.url}); looked at: {looked}. Point ${MIRROR_ENV} at a mirror "
            f"holding {entry.mirror_path}"
        )
    if not download:
        raise DataUnavailable(
            f"data file {entry.name!r} is not available locally; looked at: {looked}. "
            f"Get it with `ecnas data pull {entry.name}` (downloads {entry.url}) or set "
            f"${MIRROR_ENV} to a mirror holding {entry.mirror_path}"
        )
    return _download(entry, cached, progress)


def _download(entry: DataFile, cached: Path, progress: bool) -> Path:
    import pooch  # imported lazily: only downloads need it
    import requests

    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=DOWNLOAD_TIMEOUT_S, chunk_size=1 << 20)
    try:
        got = pooch.retrieve(
            entry.url, known_hash=f"sha256:{entry.sha256}", fname=entry.name,
            path=cached.parent, downloader=downloader,
        )
    except ValueError as exc:
        if "does not match the known hash" not in str(exc):
            raise
        actual = re.search(r"but got ([0-9a-f]{64})", str(exc))
        raise ChecksumError(
            f"data file {entry.name!r} downloaded from {entry.url} does not match its registered "
            f"checksum: expected sha256 {entry.sha256}, actual sha256 "
            f"{actual.group(1) if actual else 'unknown'}; the download was discarded"
        ) from exc
    except requests.RequestException as exc:
        raise DataUnavailable(
            f"could not download data file {entry.name!r} from {entry.url}: {exc}. "
            f"Retry later, or set ${MIRROR_ENV} to a mirror holding {entry.mirror_path}"
        ) from exc
    path = Path(got)
    if entry.size_bytes > REHASH_BYTES:
        _write_stamp(path, entry.sha256)  # pooch just hashed it; spare the next resolve a re-hash
    return path


def pull(
    name: str, *, entries: Iterable[DataFile] | None = None, mirror: Path | None = None,
    progress: bool = True,
) -> Path:
    """Make the file called ``name`` available and verified (``ecnas data pull NAME``).

    ``entries`` defaults to :func:`builtin_data_files`. A file already in the mirror or the cache
    is verified and not downloaded again; a ``mirror-only`` file must come from a mirror.
    """
    entry = find(builtin_data_files() if entries is None else entries, name)
    return resolve(entry, mirror=mirror, download=True, progress=progress)


def status(entries: Iterable[DataFile], mirror: Path | None = None) -> list[dict]:
    """One row per entry for ``ecnas data list``: sizes, small files hashed (as on every use), large
    ones by their stamp (never re-read).

    Keys: name, size (registered bytes), license, where ("mirror" | "cache" | "missing"),
    path (str or None), verified (True: matches; False: wrong size or hash; None: a large file
    not hashed yet), mirror_only.
    """
    root = mirror_dir(mirror)
    if root is not None and not root.is_dir():
        raise DataUnavailable(f"the offline mirror {_describe_mirror(root, mirror)} is not a folder")
    rows = []
    for entry in entries:
        candidates = []
        if root is not None:
            candidates.append(("mirror", root / entry.mirror_path))
        candidates.append(("cache", data_cache_dir() / entry.name))
        where, path, verified = "missing", None, None
        for place, candidate in candidates:
            if candidate.is_file():
                where, path = place, candidate
                if candidate.stat().st_size != entry.size_bytes:
                    verified = False
                elif entry.size_bytes <= REHASH_BYTES:  # as cheap as every use: hash it
                    verified = sha256_file(candidate) == entry.sha256
                elif _is_stamped(candidate, entry.sha256):
                    verified = True
                break
        rows.append({
            "name": entry.name, "size": entry.size_bytes, "license": entry.license, "where": where,
            "path": str(path) if path is not None else None, "verified": verified,
            "mirror_only": entry.mirror_only,
        })
    return rows


@hookimpl
def ecnas_data_files():
    return builtin_data_files()
