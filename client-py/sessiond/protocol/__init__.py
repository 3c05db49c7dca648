"""The sessiond wire protocol, versions 1 and 2, as PROTOCOL.md specifies it.

No I/O here: frames (:mod:`.frame`), body encoding (:mod:`.codec`), the
message types (:mod:`.messages`) and the opcodes that carry them
(:mod:`.opcodes`). Both clients build on it.
"""

from . import messages
from .codec import MAX_BODY
from .frame import HEADER_LEN, Header, check_crc, encode_frame, parse_header
from .messages import *  # noqa: F403 - the message types are this package's vocabulary
from .opcodes import BODY, REPLY, Opcode, decode_body, encode_body

#: The newest protocol version this package speaks; HELLO asks for it first.
PROTOCOL_VERSION = 2
#: The oldest, which a daemon that does not speak the newest is asked for.
MIN_PROTOCOL_VERSION = 1

__all__ = [
    "BODY",
    "HEADER_LEN",
    "MAX_BODY",
    "MIN_PROTOCOL_VERSION",
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
