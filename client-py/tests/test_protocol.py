"""The codec's promises beyond the golden vectors: decoding is total (any
bytes give a value or a ProtocolError), lengths are checked before use,
and encoding refuses values the wire cannot carry."""

from __future__ import annotations

import contextlib
import datetime
import random
import time
import unittest

from sessiond import Expiry, ProtocolError
from sessiond.protocol import (
    BODY,
    HEADER_LEN,
    MAX_BODY,
    Opcode,
    check_crc,
    codec,
    decode_body,
    encode_body,
    encode_frame,
    parse_header,
)
from sessiond.protocol import messages as m

from . import protocol_doc
from .test_golden import EXPECTED, opcode_of


class DecodingIsTotal(unittest.TestCase):
    def test_every_truncation_of_every_vector_is_a_protocol_error(self) -> None:
        for name, frame in protocol_doc.vectors().items():
            body = frame[HEADER_LEN:]
            for cut in range(len(body)):
                with self.subTest(vector=name, cut=cut), self.assertRaises(ProtocolError):
                    decode_body(opcode_of(name), body[:cut])

    def test_trailing_bytes_are_a_protocol_error(self) -> None:
        for name, frame in protocol_doc.vectors().items():
            with self.subTest(vector=name), self.assertRaises(ProtocolError):
                decode_body(opcode_of(name), frame[HEADER_LEN:] + b"\0")

    def test_random_bytes_never_raise_anything_else(self) -> None:
        rng = random.Random(1)
        deadline = time.monotonic() + 10
        for opcode in list(BODY) + [0x7F, 0xFF]:
            for _ in range(300):
                body = rng.randbytes(rng.randrange(64))
                with contextlib.suppress(ProtocolError):
                    decode_body(opcode, body)
            self.assertLess(time.monotonic(), deadline, "decoding is too slow")

    def test_flipping_any_byte_of_a_vector_never_raises_anything_else(self) -> None:
        for name, frame in protocol_doc.vectors().items():
            body = frame[HEADER_LEN:]
            for i in range(len(body)):
                for value in (0x00, 0x01, 0x02, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF):
                    mutated = body[:i] + bytes([value]) + body[i + 1 :]
                    with contextlib.suppress(ProtocolError):
                        decode_body(opcode_of(name), mutated)

    def test_a_huge_length_prefix_fails_at_once(self) -> None:
        huge = b"\xfd" + (2**64 - 1).to_bytes(8, "little")
        for opcode, body in ((Opcode.CREATE, huge), (Opcode.LIST_USER, huge), (Opcode.HELLO, b"\x01" + huge)):
            started = time.monotonic()
            with self.assertRaises(ProtocolError):
                decode_body(opcode, body)
            self.assertLess(time.monotonic() - started, 0.1)

    def test_bodies_over_the_hard_limit_are_refused_unread(self) -> None:
        with self.assertRaises(ProtocolError):
            decode_body(Opcode.PING, bytes(MAX_BODY + 1))

    def test_varint_markers_must_fit_the_type(self) -> None:
        # HELLO's version is a u16: 0xFC (u32) and 0xFD (u64) markers are refused.
        for marker in (b"\xfc\x01\x00\x00\x00", b"\xfd" + bytes(8), b"\xfe", b"\xff"):
            with self.subTest(marker=marker.hex()), self.assertRaises(ProtocolError):
                decode_body(Opcode.HELLO, marker + b"\x00")

    def test_longer_than_needed_varints_decode_as_the_reference_decoder_does(self) -> None:
        self.assertEqual(decode_body(Opcode.HELLO, b"\xfb\x01\x00\x00"), m.Hello(1, ""))
        self.assertEqual(decode_body(Opcode.SWEPT, b"\xfd\x05" + bytes(7)), m.SweptOk(5))

    def test_bools_options_enums_and_utf8_are_checked(self) -> None:
        for opcode, body in (
            (Opcode.EXISTS_OK, b"\x02"),  # bool
            (Opcode.LIST_USER, b"\x01\xff"),  # UTF-8
            (Opcode.REVOKE_USER, b"\x01a\x02"),  # option tag
            (Opcode.SET_EXPIRY, b"\x01a\x04"),  # Expiry variant
            (Opcode.WRITE, b"\x01a\x00\x00\x00\x00\x00\x03"),  # Owner variant
        ):
            with self.subTest(opcode=opcode.name), self.assertRaises(ProtocolError):
                decode_body(opcode, body)

    def test_hello_ok_is_read_as_the_version_it_carries(self) -> None:
        # PROTOCOL.md: "settings only if version >= 2". The version field, not
        # the body's length, decides: a version-1 body with settings has
        # trailing bytes, and a version-2 body without them ends early.
        limits = m.Limits(1, 2, 3, 4, 5)
        settings = m.Settings(1, 2, 3, 4, 5, 6)
        v1 = encode_body(Opcode.HELLO_OK, m.HelloOk(1, "s", limits))
        v2 = encode_body(Opcode.HELLO_OK, m.HelloOk(2, "s", limits, settings))
        self.assertEqual(v2, b"\x02" + v1[1:] + codec.encode(settings))
        self.assertEqual(decode_body(Opcode.HELLO_OK, v2).settings, settings)
        self.assertIsNone(decode_body(Opcode.HELLO_OK, v1).settings)
        with self.assertRaises(ProtocolError):
            decode_body(Opcode.HELLO_OK, v1 + v2[len(v1) :])
        with self.assertRaises(ProtocolError):
            decode_body(Opcode.HELLO_OK, b"\x02" + v1[1:])
        # A version 3 answer (a daemon newer than the document) is read as version 2's body.
        self.assertEqual(decode_body(Opcode.HELLO_OK, b"\x03" + v2[1:]).settings, settings)

    def test_unknown_opcodes_are_protocol_errors(self) -> None:
        for opcode in (0x00, 0x06, 0x7F, 0x8F, 0xFF):
            with self.assertRaises(ProtocolError):
                decode_body(opcode, b"")


class Frames(unittest.TestCase):
    def test_headers_are_checked_before_the_body(self) -> None:
        frame = encode_frame(7, Opcode.PING, b"")
        self.assertEqual(tuple(parse_header(frame)), (0, 0, 7, Opcode.PING))
        with self.assertRaises(ProtocolError):
            parse_header(frame[:15])
        with self.assertRaises(ProtocolError):
            parse_header(frame[:13] + b"\0\1\0")
        too_long = (1 << 20).to_bytes(4, "little") + frame[4:]
        with self.assertRaises(ProtocolError):
            parse_header(too_long, max_body=(1 << 20) - 1)

    def test_every_bit_flip_in_a_body_fails_the_crc(self) -> None:
        frame = encode_frame(1, Opcode.LIST_USER, encode_body(Opcode.LIST_USER, m.ListUser("alice")))
        header = parse_header(frame[:HEADER_LEN])
        body = frame[HEADER_LEN:]
        check_crc(header, body)
        for bit in range(len(body) * 8):
            flipped = bytearray(body)
            flipped[bit // 8] ^= 1 << (bit % 8)
            with self.assertRaises(ProtocolError):
                check_crc(header, bytes(flipped))


class Encoding(unittest.TestCase):
    def test_every_body_round_trips(self) -> None:
        for name, (_, body) in EXPECTED.items():
            with self.subTest(vector=name):
                opcode = opcode_of(name)
                self.assertEqual(decode_body(opcode, encode_body(opcode, body)), body)

    def test_varints_take_the_shortest_form_at_every_width(self) -> None:
        for value, encoded in (
            (250, "fa"),
            (251, "fbfb00"),
            (0xFFFF, "fbffff"),
            (0x10000, "fc00000100"),
            (0xFFFF_FFFF, "fcffffffff"),
            (0x1_0000_0000, "fd0000000001000000"),
            (2**64 - 1, "fd" + "ff" * 8),
        ):
            with self.subTest(value=value):
                self.assertEqual(encode_body(Opcode.SWEPT, m.SweptOk(value)).hex(), encoded)
                self.assertEqual(decode_body(Opcode.SWEPT, bytes.fromhex(encoded)), m.SweptOk(value))

    def test_values_the_wire_cannot_carry_are_refused(self) -> None:
        with self.assertRaises(ValueError):
            encode_body(Opcode.SWEPT, m.SweptOk(2**64))
        with self.assertRaises(ValueError):
            encode_body(Opcode.HELLO, m.Hello(70_000, "py"))
        with self.assertRaises(TypeError):
            encode_body(Opcode.LIST_USER, m.ListUser(b"bytes"))  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            encode_body(Opcode.EXISTS, m.ListUser("x"))  # EXISTS carries KeyOnly
        limits = m.Limits(1, 2, 3, 4, 5)
        with self.assertRaises(ValueError):  # settings only from version 2 on, and always then
            encode_body(Opcode.HELLO_OK, m.HelloOk(1, "s", limits, m.Settings(1, 2, 3, 4, 5, 6)))
        with self.assertRaises(ValueError):
            encode_body(Opcode.HELLO_OK, m.HelloOk(2, "s", limits, None))
        with self.assertRaises(TypeError):
            m.Owner(m.OwnerKind.SET)  # Set needs a user
        with self.assertRaises(ValueError):
            m.Owner(m.OwnerKind.CLEAR, "42")
        with self.assertRaises(TypeError):
            encode_body(Opcode.WRITE, m.Write("k", [], [], False, None, None, m.OwnerKind.KEEP))  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            Expiry.idle(2**32)
        with self.assertRaises(ValueError):
            Expiry.idle(-1)


class DjangoExpiry(unittest.TestCase):
    def test_set_expiry_arguments_map_to_policies(self) -> None:
        self.assertEqual(Expiry.from_django(None), Expiry.default())
        self.assertEqual(Expiry.from_django(0), Expiry.browser_close())
        self.assertEqual(Expiry.from_django(1800), Expiry.idle(1800))
        when = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
        self.assertEqual(Expiry.from_django(when), Expiry.at(1_893_456_000_000))
        soon = Expiry.from_django(datetime.timedelta(hours=1))
        self.assertEqual(soon.kind, Expiry.at(0).kind)
        self.assertAlmostEqual(soon.value, time.time() * 1000 + 3_600_000, delta=5_000)
        with self.assertRaises(TypeError):
            Expiry.from_django("1800")  # type: ignore[arg-type]


if __name__ == "__main__":
    unittest.main()
