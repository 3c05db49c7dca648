"""The 16-byte frame header (PROTOCOL.md, "Frames")."""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from ..errors import ProtocolError
from .codec import MAX_BODY

HEADER_LEN = 16

# body_len, crc32, request_id, opcode, then 3 reserved bytes: zeros when
# packed, and checked apart when parsed, since struct would skip them.
_PACK = struct.Struct("<IIIB3x")
_UNPACK = struct.Struct("<IIIB")
_RESERVED = b"\0\0\0"


class Header(NamedTuple):
    body_len: int
    crc: int
    request_id: int
    opcode: int


def encode_frame(request_id: int, opcode: int, body: bytes) -> bytes:
    """A whole frame: header, then ``body``. An empty body has CRC 0, as zlib gives."""
    return _PACK.pack(len(body), zlib.crc32(body), request_id, opcode) + body


def parse_header(head: bytes, max_body: int = MAX_BODY) -> Header:
    """Checks a header before its body is read: the length against
    ``max_body`` (so a hostile length is refused before any wait or
    allocation) and the reserved bytes."""
    if len(head) != HEADER_LEN:
        raise ProtocolError(f"a frame header is {HEADER_LEN} bytes, not {len(head)}")
    if head[13:16] != _RESERVED:
        raise ProtocolError("reserved header bytes are set")
    header = Header._make(_UNPACK.unpack_from(head))
    if header.body_len > max_body:
        raise ProtocolError(f"a frame body of {header.body_len} bytes is over the limit of {max_body}")
    return header


def check_crc(header: Header, body: bytes) -> None:
    if zlib.crc32(body) != header.crc:
        raise ProtocolError(f"frame {header.request_id}: body CRC mismatch")
