"""What a file is, from its first bytes: so a reader can say "this is a text file", not "truncated (101)".

Both readers look at the first bytes before parsing anything: the checkpoint
reader hands ``torch.load`` only zip archives (what ``torch.save`` writes), and
the container reader names what it found instead of the magic it expected. A
container whose magic was damaged in transit (a newline turned into CR LF, the
eighth bit stripped) still reads as "a damaged container", not as a foreign file.

Example:
    >>> sniff(b"\\x89ALBSNN\\r\\n\\x01\\x00").kind
    'damaged-container'
    >>> sniff(b"hello, world\\n").description
    'a text file'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONTAINER_MAGIC", "FileKind", "sniff", "HEAD_BYTES"]

CONTAINER_MAGIC = b"\x89ALBSNN\n"
HEAD_BYTES = 512  # what sniff needs to see

_ZIP_HEADS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
_PICKLE_PROTOCOLS = range(2, 6)  # protocol 2+ starts with PROTO (0x80) and its number; torch's legacy format too
_TEXT_CONTROLS = {"\t", "\n", "\r", "\f"}


@dataclass(frozen=True)
class FileKind:
    """``kind`` is one of ``empty``, ``container``, ``damaged-container``, ``zip``, ``pickle``, ``gzip``,
    ``text`` or ``unknown``; ``description`` is the phrase a message uses ("a text file")."""

    kind: str
    description: str


def _damage(head: bytes) -> str:
    """What probably happened to a container magic that is almost right."""
    if head.startswith(CONTAINER_MAGIC[:7] + b"\r\n"):
        return "its final newline became CR LF: the file went through a text-mode transfer"
    if head[:1] == b"\x09" and head[1:8] == CONTAINER_MAGIC[1:]:
        return "its first byte lost the eighth bit (0x89 became 0x09): the file went through a 7-bit transfer"
    return "bytes of it were changed in transit"


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut by the end of the head is fine
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return bool(text) and all(char.isprintable() or char in _TEXT_CONTROLS for char in text)


def sniff(head: bytes) -> FileKind:
    """Classify a file by its first bytes (pass at least :data:`HEAD_BYTES` of them, or the whole file)."""
    if not head:
        return FileKind("empty", "an empty file (0 bytes)")
    if head.startswith(CONTAINER_MAGIC):
        return FileKind("container", "an .albsnn container")
    if b"ALBSNN" in head[:16]:
        found = head[:9].hex(" ")
        return FileKind(
            "damaged-container",
            f"an .albsnn container whose magic is damaged ({found}, expected {CONTAINER_MAGIC.hex(' ')}; "
            f"{_damage(head)})",
        )
    if head.startswith(_ZIP_HEADS):
        return FileKind("zip", "a zip archive")
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return FileKind("pickle", "a raw pickle (or a PyTorch file of the legacy pre-1.6 format)")
    if head.startswith(b"\x1f\x8b"):
        return FileKind("gzip", "a gzip-compressed file")
    if _is_text(head):
        return FileKind("text", "a text file")
    return FileKind("unknown", f"a file of unknown type (it starts with {head[:8].hex(' ')})")
