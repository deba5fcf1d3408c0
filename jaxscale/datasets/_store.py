"""Locate, verify and (when public) download the registered data files.

The data directory is resolved in this order:

1. an explicit ``data_dir=`` argument;
2. the directory set with :func:`set_data_dir`;
3. the ``JAXSCALE_DATA`` environment variable;
4. the cache directory: ``JAXSCALE_CACHE`` or ``~/.cache/jaxscale/data``.

:func:`fetch` looks for a file in the data directory, then in the cache
directory, and checks its sha256 against the registry. A file found nowhere is
downloaded into the cache directory when the registry knows a public URL for it
(verbatim copies of GitHub repositories at pinned commits); derived files must
be provided through a data directory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ._registry import DERIVED, SHA256, SOURCES, Source

__all__ = [
    "BASE_URL",
    "fetch",
    "get_cache_dir",
    "get_data_dir",
    "registered_files",
    "set_data_dir",
    "sha256_file",
    "url_for",
]

#: Where upstream files are downloaded from; ``<BASE_URL>/<owner>/<repo>/<commit>/<path>``.
#: Tests (or mirrors) may replace it, or pass ``base_url=`` to :func:`fetch`.
BASE_URL = "https://raw.githubusercontent.com"

_HINT = (
    "Point jaxscale at a copy of the data: set the JAXSCALE_DATA environment variable "
    "or call jaxscale.datasets.set_data_dir(path)."
)
_CHUNK = 1 << 16

_data_dir: Path | None = None
_verified: dict[tuple[str, int, int], str] = {}


def set_data_dir(path: str | os.PathLike[str] | None) -> None:
    """Set the data directory used when no ``data_dir=`` is given (``None`` resets it)."""
    global _data_dir
    _data_dir = None if path is None else Path(path).expanduser()


def get_cache_dir() -> Path:
    """Return the download cache: ``$JAXSCALE_CACHE`` or ``~/.cache/jaxscale/data``."""
    return Path(os.environ.get("JAXSCALE_CACHE") or "~/.cache/jaxscale/data").expanduser()


def get_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data directory: argument, :func:`set_data_dir`, ``$JAXSCALE_DATA``, cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if _data_dir is not None:
        return _data_dir
    env = os.environ.get("JAXSCALE_DATA")
    return Path(env).expanduser() if env else get_cache_dir()


def registered_files() -> list[str]:
    """Return the relative paths of all registered files, sorted."""
    return sorted(SHA256)


def _source_for(relpath: str) -> Source | None:
    for source in SOURCES:
        if relpath.startswith(source.prefix + "/"):
            return source
    return None


def url_for(relpath: str, base_url: str | None = None) -> str | None:
    """Return the download URL of a registered file, or ``None`` for derived files."""
    _expected_sha256(relpath)
    source = _source_for(relpath)
    if source is None or relpath in DERIVED:
        return None
    upstream = urllib.parse.quote(relpath[len(source.prefix) + 1 :], safe="/=")
    base = (base_url or BASE_URL).rstrip("/")
    return f"{base}/{source.repo}/{source.commit}/{upstream}"


def _expected_sha256(relpath: str) -> str:
    try:
        return SHA256[relpath]
    except KeyError:
        raise KeyError(f"{relpath!r} is not a registered jaxscale data file") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_sha256(path: Path) -> str:
    """sha256 of ``path``, memoised on (resolved path, mtime, size)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def _check(relpath: str, path: Path, actual: str) -> None:
    expected = _expected_sha256(relpath)
    if actual != expected:
        raise ValueError(
            f"Checksum mismatch for {relpath} ({path}): expected sha256 {expected}, "
            f"got {actual}. The file is corrupt or a different version; replace it."
        )


def fetch(
    relpath: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    progress: bool = True,
) -> Path:
    """Return the local path of a registered data file, verified by sha256.

    Args:
        relpath: path relative to the data directory, e.g.
            ``"chinchilla-besiroglu/data/svg_extracted_data.csv"``.
        data_dir: data directory to use instead of the configured one.
        base_url: download base replacing :data:`BASE_URL`.
        progress: show a tqdm progress bar while downloading.

    Raises:
        KeyError: ``relpath`` is not registered.
        ValueError: the file's sha256 differs from the registry (local or downloaded).
        FileNotFoundError: the file is missing and has no public URL.
        OSError: the download failed.

    Example:
        >>> path = fetch("chinchilla-besiroglu/data/svg_extracted_data.csv")  # doctest: +SKIP
    """
    expected_dirs = [get_data_dir(data_dir), get_cache_dir()]
    for root in dict.fromkeys(expected_dirs):
        path = root / relpath
        if path.is_file():
            _check(relpath, path, _cached_sha256(path))
            return path
    url = url_for(relpath, base_url)
    if url is None:
        raise FileNotFoundError(
            f"{relpath} was not found in the data directory {expected_dirs[0]} or the cache "
            f"{expected_dirs[1]}, and it has no public download URL (it is derived). {_HINT}"
        )
    return _download(relpath, url, get_cache_dir() / relpath, progress=progress)


def _download(relpath: str, url: str, dest: Path, *, progress: bool) -> Path:
    """Download ``url`` to a temporary file beside ``dest``, verify it, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            _stream(url, out, desc=dest.name, progress=progress)
        _check(relpath, tmp, sha256_file(tmp))
        os.replace(tmp, dest)
    except urllib.error.URLError as err:
        raise OSError(f"Downloading {relpath} from {url} failed: {err.reason}. {_HINT}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _stream(url: str, out, *, desc: str, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
            disable=not progress,
        ) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
