"""Image bytes for the core tests, made in memory: real files Pillow writes,
and hand-made ones (a truncated PNG, a decompression bomb) that a careless
checker would let through."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_bytes(width: int = 64, height: int = 64, mode: str = "RGB", fmt: str = "PNG", color: object = None) -> bytes:
    fill = color if color is not None else ((200, 40, 40, 128) if mode == "RGBA" else (200, 40, 40) if mode == "RGB" else 128)
    buf = io.BytesIO()
    Image.new(mode, (width, height), fill).save(buf, format=fmt)  # type: ignore[arg-type]
    return buf.getvalue()


def png(width: int = 64, height: int = 64, mode: str = "RGB") -> bytes:
    return image_bytes(width, height, mode, "PNG")


def mask_png(width: int = 64, height: int = 64) -> bytes:
    """A proper mask: RGBA, transparent where the edit goes."""
    return image_bytes(width, height, "RGBA", "PNG", color=(0, 0, 0, 0))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit greyscale PNG whose pixels are all zero: a few tens of
    kilobytes on disk, 400 MB once Pillow decodes it (one byte per pixel).
    Only a checker that reads the header before decoding survives it."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    # Compress row by row: building the 50 MB of raw rows at once would cost
    # the test the very memory the checker is supposed to save.
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def truncated_png() -> bytes:
    """A real PNG cut off half-way through its pixel data: the header reads
    fine, decoding fails."""
    noisy = Image.frombytes("RGB", (256, 256), bytes((i * 7919) % 251 for i in range(256 * 256 * 3)))
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    data = buf.getvalue()
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    """A PNG whose compressed pixel data has been overwritten with junk."""
    noisy = Image.frombytes("RGB", (128, 128), bytes((i * 31) % 256 for i in range(128 * 128 * 3)))
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 4 + 16  # keep the zlib header, ruin what follows
    data[start : start + 256] = b"\xff" * 256
    return bytes(data)
