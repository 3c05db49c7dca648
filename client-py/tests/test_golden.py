"""PROTOCOL.md against this package: every golden vector decodes to the
message listed here and encodes back to the same bytes, and the opcode
table, error table and type declarations match the code.

The expected messages mirror protocol/tests/golden.rs, so the Rust and
Python implementations are held to the same document.
"""

from __future__ import annotations

import dataclasses
import unittest

from sessiond import ErrorCode
from sessiond.protocol import (
    BODY,
    HEADER_LEN,
    Opcode,
    check_crc,
    decode_body,
    encode_body,
    encode_frame,
    messages,
    parse_header,
)
from sessiond.protocol import messages as m
from sessiond.protocol.codec import BOOL, BYTES, STRING, U16, U32, U64, Codec, Enumeration, List, Option, Struct

from . import protocol_doc

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"  # bytes 00..1f
SHORT_KEY = "AAECAwQFBgcICQoLDA0ODw"  # bytes 00..0f, the shortest a key may be
HANDLE = "oKGio6Slpqeoqaqr"  # bytes a0..ab
UA = "Mozilla/5.0"
COM, ORG = "www.example.com", "www.example.org"
LIMITS = m.Limits(1_048_576, 524_288, 1024, 256, 256)


def cart() -> list[m.Field]:
    return [m.Field("cart", b"3")]


#: Each vector's name in PROTOCOL.md, its request id, and its body.
EXPECTED: dict[str, tuple[int, object]] = {
    "HELLO": (1, m.Hello(1, "py")),
    "HELLO_OK": (1, m.HelloOk(1, "sessiond 0.1.0", LIMITS, None)),
    "HELLO (version 2)": (1, m.Hello(2, "py")),
    "HELLO_OK (version 2)": (1, m.HelloOk(2, "sessiond 0.1.0", LIMITS, m.Settings(1_209_600, 0, 60, 512, 0, 1000))),
    "PING": (2, m.Empty()),
    "PONG": (2, m.Empty()),
    "STATS": (3, m.Empty()),
    "STATS_OK": (
        3,
        m.StatsOk([m.Counter("commits", 300)], [m.Histogram("request_latency_us", "GET", [50, 100], [7, 2, 1], 900)]),
    ),
    "CREATE": (4, m.Create(cart(), m.Expiry.idle(3600), m.Meta("42", "192.0.2.7", UA))),
    "CREATE (default expiry, no fields)": (5, m.Create([], m.Expiry.default(), m.Meta(None, None, None))),
    "CREATED": (4, m.Created(KEY, HANDLE, 1, 1_700_003_600_000)),
    "GET": (6, m.Get(KEY, True, None, None)),
    "GET (comparing the client)": (17, m.Get(KEY, False, "2001:db8::1", UA)),
    "SESSION": (
        6,
        m.SessionBody(
            cart(),
            1,
            1_700_000_000_000,
            1_700_000_000_000,
            1_700_000_000_000,
            1_700_003_600_000,
            3_600_000,
            m.Expiry.idle(3600),
            HANDLE,
            "42",
            "192.0.2.7",
            UA,
            False,
            False,
        ),
    ),
    "EXISTS": (7, m.KeyOnly(KEY)),
    "EXISTS_OK": (7, m.ExistsOk(False)),
    "REPLACE": (8, m.Replace(KEY, [m.Field("a", b"1")], 1)),
    "REPLACED": (8, m.Written(2, 1_700_003_600_000)),
    "PATCH": (9, m.Patch(KEY, cart(), ["a"], None)),
    "PATCHED": (9, m.Written(3, 1_700_003_600_000)),
    "TOUCH": (10, m.KeyOnly(KEY)),
    "TOUCHED": (10, m.Written(3, 1_700_007_200_000)),
    "DELETE": (11, m.KeyOnly(KEY)),
    "DELETED": (11, m.DeletedOk(True)),
    "CYCLE": (12, m.Cycle(KEY, None)),
    "CYCLE (login)": (18, m.Cycle(KEY, "42")),
    "CYCLED": (12, m.Created(KEY, HANDLE, 4, 1_700_007_200_000)),
    "SET_META": (19, m.SetMeta(KEY, "192.0.2.8", None)),
    "META_SET": (19, m.Written(4, 1_700_007_200_000)),
    "LIST_USER": (20, m.ListUser("42")),
    "USER_SESSIONS": (
        20,
        m.UserSessions(
            [
                m.SessionInfo(
                    HANDLE,
                    1_700_000_000_000,
                    1_700_000_600_000,
                    1_700_004_200_000,
                    "192.0.2.7",
                    UA,
                    m.Location("FR", "France", "Paris"),
                )
            ]
        ),
    ),
    "REVOKE": (21, m.Revoke(HANDLE)),
    "REVOKED": (21, m.RevokedOk(1)),
    "REVOKE_USER": (22, m.RevokeUser("42", HANDLE)),
    "USER_REVOKED": (22, m.RevokedOk(3)),
    "SWEEP": (14, m.Empty()),
    "SWEPT": (14, m.SweptOk(1000)),
    "SET_EXPIRY (absolute)": (15, m.SetExpiry(KEY, m.Expiry.at(1_700_086_400_000))),
    "SET_EXPIRY (browser close)": (16, m.SetExpiry(KEY, m.Expiry.browser_close())),
    "EXPIRY_SET": (15, m.Written(5, 1_700_086_400_000)),
    "ROTATE_KEYS": (23, m.Empty()),
    "KEYS_ROTATED": (23, m.KeysRotated(0x1234_ABCD)),
    "ISSUE_TRANSFER": (24, m.IssueTransfer(KEY, COM, [ORG], None)),
    "TRANSFER_ISSUED": (24, m.TransferIssued([m.HostToken(ORG, "AQE")])),
    "REDEEM_TRANSFER": (25, m.RedeemTransfer("AQE", ORG, None, False, b"\x01\x02\x03")),
    "REDEEMED": (25, m.Redeemed(KEY, True)),
    "SEAL": (26, m.Seal(cart(), m.Expiry.idle(1800), None, "__Host-s", COM)),
    "SEALED": (26, m.Sealed("AQI", 1_700_001_800_000)),
    "UNSEAL": (27, m.SealedCookie("AQI", "__Host-s", COM)),
    "UNSEALED": (27, m.Unsealed(cart(), None, "00112233445566778899aabbccddeeff", 1_700_001_800_000, None)),
    "REVOKE_SEALED": (28, m.SealedCookie("AQI", "__Host-s", COM)),
    "SEALED_REVOKED": (28, m.RevokedOk(1)),
    "ERROR": (13, m.ErrorBody(ErrorCode.NOT_FOUND, "no such session")),
    "CREATE_AS": (30, m.CreateAs(SHORT_KEY, cart(), m.Expiry.idle(1800), m.Meta(None, None, None))),
    "CREATED_AS": (30, m.Created(SHORT_KEY, HANDLE, 1, 1_700_001_800_000)),
    "ERROR (key exists)": (30, m.ErrorBody(ErrorCode.KEY_EXISTS, "a session has this key")),
    "WRITE": (
        31,
        m.Write(KEY, [m.Field("_auth_user_id", b"42")], ["cart"], False, None, m.Expiry.idle(3600), m.Owner.set("42")),
    ),
    "WRITTEN": (31, m.Written(6, 1_700_003_600_000)),
    "CYCLE_AS": (33, m.CycleAs(KEY, SHORT_KEY, "42")),
    "CYCLED_AS": (33, m.Created(SHORT_KEY, HANDLE, 7, 1_700_003_600_000)),
    "LIST_USER_PAGE": (32, m.ListUserPage("42", 100, None)),
    "USER_PAGE": (
        32,
        m.UserPage(
            [m.SessionInfo(HANDLE, 1_700_000_000_000, 1_700_000_600_000, 1_700_004_200_000, None, None, None)],
            "1700000600000." + HANDLE,
        ),
    ),
}


def opcode_of(vector_name: str) -> Opcode:
    """A vector's message kind: its name up to any parenthesised variant."""
    return Opcode[vector_name.split(" (")[0]]


class GoldenVectors(unittest.TestCase):
    doc: dict[str, bytes]

    @classmethod
    def setUpClass(cls) -> None:
        cls.doc = protocol_doc.vectors()

    def test_the_document_and_this_test_list_the_same_vectors(self) -> None:
        self.assertGreater(len(self.doc), 0, f"no golden vectors found in {protocol_doc.PROTOCOL_MD}")
        self.assertEqual(sorted(set(self.doc) - set(EXPECTED)), [], "vectors in PROTOCOL.md this test does not know")
        self.assertEqual(sorted(set(EXPECTED) - set(self.doc)), [], "vectors this test expects but PROTOCOL.md lacks")

    def test_every_vector_decodes_to_its_message(self) -> None:
        for name, frame in self.doc.items():
            with self.subTest(vector=name):
                request_id, expected = EXPECTED[name]
                header = parse_header(frame[:HEADER_LEN])
                body = frame[HEADER_LEN:]
                self.assertIn(header.opcode, BODY, "a message kind this client does not handle")
                self.assertEqual(header.opcode, opcode_of(name))
                self.assertEqual((header.request_id, header.body_len), (request_id, len(body)))
                check_crc(header, body)
                self.assertEqual(decode_body(header.opcode, body), expected)

    def test_every_message_encodes_to_its_vector(self) -> None:
        for name, frame in self.doc.items():
            with self.subTest(vector=name):
                request_id, message = EXPECTED[name]
                opcode = opcode_of(name)
                self.assertEqual(encode_frame(request_id, opcode, encode_body(opcode, message)).hex(), frame.hex())

    def test_every_message_kind_has_a_vector(self) -> None:
        covered = {opcode_of(name) for name in self.doc}
        self.assertEqual(sorted(op.name for op in set(Opcode) - covered), [])


def describe(codec: Codec) -> str:
    """A codec's type as PROTOCOL.md writes it."""
    for known, name in ((U16, "u16"), (U32, "u32"), (U64, "u64"), (BOOL, "bool"), (STRING, "String"), (BYTES, "Bytes")):
        if codec is known:
            return name
    if isinstance(codec, Option):
        return f"Option<{describe(codec.inner)}>"
    if isinstance(codec, List):
        return f"List<{describe(codec.inner)}>"
    if isinstance(codec, (Struct, Enumeration)):
        return codec.cls.__name__
    raise AssertionError(f"no description for {codec!r}")


def variants(codec: Enumeration) -> list[tuple[str, str | None]]:
    """An enumeration's (index, type of its value or None) pairs."""
    return [(str(kind.value), describe(codec.values[kind]) if kind in codec.values else None) for kind in codec.kinds]


class DocumentTables(unittest.TestCase):
    def test_opcode_table_matches_the_opcode_constants_and_body_types(self) -> None:
        rows = protocol_doc.opcode_table()
        self.assertGreater(len(rows), 0)
        for name, value, body in rows:
            with self.subTest(message=name):
                self.assertIn(name, Opcode.__members__)
                self.assertEqual(Opcode[name], value, f"{name} is 0x{value:02x} in PROTOCOL.md")
                self.assertEqual(BODY[Opcode[name]].__name__, body)
        self.assertEqual(sorted(op.name for op in Opcode), sorted(name for name, _, _ in rows))

    def test_error_table_matches_the_error_codes(self) -> None:
        rows = protocol_doc.error_table()
        self.assertEqual(rows, [(code.value, code.name) for code in ErrorCode])

    def test_type_declarations_match_the_message_classes(self) -> None:
        declared = protocol_doc.type_declarations()
        self.assertGreater(len(declared), 0)
        for name, members in declared.items():
            with self.subTest(type=name):
                cls = getattr(messages, name)
                if isinstance(cls.CODEC, Enumeration):
                    # "1 IdleSecs(u32)": the index, and the type of the variant's value.
                    documented = [(i, v[v.find("(") + 1 : -1] if "(" in v else None) for i, v in members]
                    self.assertEqual(variants(cls.CODEC), documented)
                    continue
                layout = [(f.name, describe(f.metadata["codec"])) for f in dataclasses.fields(cls)]
                self.assertEqual(layout, members)
        body_types = {cls.__name__ for cls in BODY.values()} - {"Empty"}
        self.assertEqual(sorted(body_types - set(declared)), [], "body types PROTOCOL.md does not declare")


if __name__ == "__main__":
    unittest.main()
