"""Opcodes (PROTOCOL.md, "Opcodes") and the body type each one carries."""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ProtocolError
from . import codec
from . import messages as m

#: Set on the opcode of every response; alone, it is ERROR.
REPLY = 0x80


class Opcode(enum.IntEnum):
    """Requests are 0x01-0x7F; a success answer is its request's opcode | 0x80."""

    HELLO = 0x01
    PING = 0x02
    STATS = 0x03
    SWEEP = 0x04
    ROTATE_KEYS = 0x05
    CREATE = 0x10
    GET = 0x11
    EXISTS = 0x12
    REPLACE = 0x13
    PATCH = 0x14
    TOUCH = 0x15
    DELETE = 0x16
    CYCLE = 0x17
    SET_EXPIRY = 0x18
    SET_META = 0x19
    CREATE_AS = 0x1A
    WRITE = 0x1B
    CYCLE_AS = 0x1C
    LIST_USER = 0x20
    REVOKE = 0x21
    REVOKE_USER = 0x22
    LIST_USER_PAGE = 0x23
    ISSUE_TRANSFER = 0x30
    REDEEM_TRANSFER = 0x31
    SEAL = 0x32
    UNSEAL = 0x33
    REVOKE_SEALED = 0x34

    ERROR = REPLY
    HELLO_OK = REPLY | HELLO
    PONG = REPLY | PING
    STATS_OK = REPLY | STATS
    SWEPT = REPLY | SWEEP
    KEYS_ROTATED = REPLY | ROTATE_KEYS
    CREATED = REPLY | CREATE
    SESSION = REPLY | GET
    EXISTS_OK = REPLY | EXISTS
    REPLACED = REPLY | REPLACE
    PATCHED = REPLY | PATCH
    TOUCHED = REPLY | TOUCH
    DELETED = REPLY | DELETE
    CYCLED = REPLY | CYCLE
    EXPIRY_SET = REPLY | SET_EXPIRY
    META_SET = REPLY | SET_META
    CREATED_AS = REPLY | CREATE_AS
    WRITTEN = REPLY | WRITE
    CYCLED_AS = REPLY | CYCLE_AS
    USER_SESSIONS = REPLY | LIST_USER
    REVOKED = REPLY | REVOKE
    USER_REVOKED = REPLY | REVOKE_USER
    USER_PAGE = REPLY | LIST_USER_PAGE
    TRANSFER_ISSUED = REPLY | ISSUE_TRANSFER
    REDEEMED = REPLY | REDEEM_TRANSFER
    SEALED = REPLY | SEAL
    UNSEALED = REPLY | UNSEAL
    SEALED_REVOKED = REPLY | REVOKE_SEALED


#: The body type of every opcode.
BODY: dict[Opcode, type] = {
    Opcode.HELLO: m.Hello,
    Opcode.PING: m.Empty,
    Opcode.STATS: m.Empty,
    Opcode.SWEEP: m.Empty,
    Opcode.ROTATE_KEYS: m.Empty,
    Opcode.CREATE: m.Create,
    Opcode.GET: m.Get,
    Opcode.EXISTS: m.KeyOnly,
    Opcode.REPLACE: m.Replace,
    Opcode.PATCH: m.Patch,
    Opcode.TOUCH: m.KeyOnly,
    Opcode.DELETE: m.KeyOnly,
    Opcode.CYCLE: m.Cycle,
    Opcode.SET_EXPIRY: m.SetExpiry,
    Opcode.SET_META: m.SetMeta,
    Opcode.CREATE_AS: m.CreateAs,
    Opcode.WRITE: m.Write,
    Opcode.CYCLE_AS: m.CycleAs,
    Opcode.LIST_USER: m.ListUser,
    Opcode.REVOKE: m.Revoke,
    Opcode.REVOKE_USER: m.RevokeUser,
    Opcode.LIST_USER_PAGE: m.ListUserPage,
    Opcode.ISSUE_TRANSFER: m.IssueTransfer,
    Opcode.REDEEM_TRANSFER: m.RedeemTransfer,
    Opcode.SEAL: m.Seal,
    Opcode.UNSEAL: m.SealedCookie,
    Opcode.REVOKE_SEALED: m.SealedCookie,
    Opcode.ERROR: m.ErrorBody,
    Opcode.HELLO_OK: m.HelloOk,
    Opcode.PONG: m.Empty,
    Opcode.STATS_OK: m.StatsOk,
    Opcode.SWEPT: m.SweptOk,
    Opcode.KEYS_ROTATED: m.KeysRotated,
    Opcode.CREATED: m.Created,
    Opcode.SESSION: m.SessionBody,
    Opcode.EXISTS_OK: m.ExistsOk,
    Opcode.REPLACED: m.Written,
    Opcode.PATCHED: m.Written,
    Opcode.TOUCHED: m.Written,
    Opcode.DELETED: m.DeletedOk,
    Opcode.CYCLED: m.Created,
    Opcode.EXPIRY_SET: m.Written,
    Opcode.META_SET: m.Written,
    Opcode.CREATED_AS: m.Created,
    Opcode.WRITTEN: m.Written,
    Opcode.CYCLED_AS: m.Created,
    Opcode.USER_SESSIONS: m.UserSessions,
    Opcode.REVOKED: m.RevokedOk,
    Opcode.USER_REVOKED: m.RevokedOk,
    Opcode.USER_PAGE: m.UserPage,
    Opcode.TRANSFER_ISSUED: m.TransferIssued,
    Opcode.REDEEMED: m.Redeemed,
    Opcode.SEALED: m.Sealed,
    Opcode.UNSEALED: m.Unsealed,
    Opcode.SEALED_REVOKED: m.RevokedOk,
}

_BY_VALUE: dict[int, type] = {int(op): cls for op, cls in BODY.items()}


def encode_body(opcode: Opcode, body: Any) -> bytes:
    """The bytes of ``body``, which must be of the type ``opcode`` carries."""
    expected = BODY[opcode]
    if type(body) is not expected:
        raise TypeError(f"{opcode.name} carries {expected.__name__}, not {type(body).__name__}")
    return codec.encode(body)


def decode_body(opcode: int, data: bytes) -> Any:
    """The body of a frame with this opcode."""
    cls = _BY_VALUE.get(opcode)
    if cls is None:
        raise ProtocolError(f"unknown opcode 0x{opcode:02x}")
    return codec.decode(cls, data)
