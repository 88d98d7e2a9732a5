"""Raw bytes from data files: transparent decompression and UTF-8 decoding with a clear error.

Decoding here, before any parser sees the text, is what lets every connector report a bad byte
as "file X, line N, byte offset M" instead of a parser traceback.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path

from modelfab.errors import EnvironmentProblem, InputError

COMPRESSED = (".gz", ".xz", ".lz4")


def strip_compression(name: str) -> str:
    """The file name without a trailing compression suffix."""
    for suffix in COMPRESSED:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _lz4(path: Path) -> bytes:
    try:
        import lz4.frame  # type: ignore[import-not-found]

        return lz4.frame.decompress(path.read_bytes())
    except ImportError:
        pass
    # The python module is optional; apt machines ship the `lz4` command instead.
    if shutil.which("lz4") is None:
        raise EnvironmentProblem(f"{path}: reading .lz4 needs the python lz4 module or lz4 command")
    done = subprocess.run(["lz4", "-dc", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{path}: not a valid lz4 file ({message[-1] if message else 'lz4'})")
    return done.stdout


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed by suffix (.gz, .xz, .lz4)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if path.name.endswith(".gz"):
            return gzip.decompress(path.read_bytes())
        if path.name.endswith(".xz"):
            return lzma.decompress(path.read_bytes())
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InputError(f"{path}: cannot decompress ({exc})") from None
    if path.name.endswith(".lz4"):
        return _lz4(path)
    return path.read_bytes()


def decode_utf8(data: bytes, path: Path) -> str:
    """Decode `data` as UTF-8 (BOM tolerated) or raise InputError naming line and byte offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}: not UTF-8 at line {line}, byte offset {exc.start} "
            f"(byte 0x{data[exc.start]:02x}); re-encode the file as UTF-8"
        ) from None
