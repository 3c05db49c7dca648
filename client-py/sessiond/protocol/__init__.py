"""The sessiond wire protocol, version 1, as PROTOCOL.md specifies it.

No I/O here: frames (:mod:`.frame`), body encoding (:mod:`.codec`), the
message types (:mod:`.messages`) and the opcodes that carry them
(:mod:`.opcodes`). Both clients build on it.
"""

from . import messages
from .codec import MAX_BODY
from .frame import HEADER_LEN, Header, check_crc, encode_frame, parse_header
from .messages import *  # noqa: F403 - the message types are this package's vocabulary
from .opcodes import BODY, REPLY, Opcode, decode_body, encode_body

#: The protocol version this package speaks; HELLO carries it.
PROTOCOL_VERSION = 1

__all__ = [
    "BODY",
    "HEADER_LEN",
    "MAX_BODY",
    "PROTOCOL_VERSION",
    "REPLY",
    "Header",
    "Opcode",
    "check_crc",
    "decode_body",
    "encode_body",
    "encode_frame",
    "parse_header",
    *messages.__all__,
]
