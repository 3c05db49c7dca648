"""Body encoding: bincode 2's "standard" configuration, as PROTOCOL.md
("Body encoding") spells it out.

A *codec* is an object with ``encode(out, value)``, appending to a
bytearray, and ``decode(data, pos)``, returning the value and the position
after it. Message types are dataclasses declared with :func:`wire_struct`,
each field naming its codec, so that one declaration gives both the Python
type and its byte layout.

Decoding is total: any byte string gives a value or a :class:`ProtocolError`,
never an ``IndexError`` or ``UnicodeDecodeError``. Every length prefix is
checked against the bytes left in the body before anything is read or
allocated, and bodies themselves are capped at :data:`MAX_BODY`, so a
hostile length costs nothing.

Decoding passes ``(data, pos)`` rather than a reader object because it runs
for every answer: attribute updates on a cursor cost more than the work.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import ProtocolError

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:  # only type checkers read it: typing has it from Python 3.11 only

    def dataclass_transform(**_: Any) -> Any:
        return lambda decorated: decorated


#: No body may exceed this (PROTOCOL.md: "more than 16 MiB in all is an error").
MAX_BODY = 16 * 1024 * 1024

# Varint markers: the value follows as a little-endian u16, u32 or u64.
_MARKERS = {0xFB: 2, 0xFC: 4, 0xFD: 8}
_SINGLE_BYTE_MAX = 250


class Codec(Protocol):
    def encode(self, out: bytearray, value: Any) -> None: ...

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]: ...


def _ended() -> ProtocolError:
    return ProtocolError("the body ends early")


def _take(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    """The ``n`` bytes at ``pos``; ``n`` is checked before anything is copied."""
    end = pos + n
    if end > len(data):
        raise ProtocolError(f"a length of {n} runs past the end of the body")
    return data[pos:end], end


class _UInt:
    """A variable-length unsigned integer of ``bits`` bits.

    Encoding uses the shortest form, as PROTOCOL.md requires. Decoding
    accepts any marker that fits the type, as the reference decoder does,
    and refuses a wider one (``0xFD`` for a u16).
    """

    __slots__ = ("bits", "limit", "widths")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.limit = 1 << bits
        self.widths = {m: w for m, w in _MARKERS.items() if w * 8 <= bits}

    def encode(self, out: bytearray, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{value!r} is not an integer")
        if not 0 <= value < self.limit:
            raise ValueError(f"{value} does not fit a u{self.bits}")
        if value <= _SINGLE_BYTE_MAX:
            out.append(value)
        elif value <= 0xFFFF:
            out.append(0xFB)
            out += value.to_bytes(2, "little")
        elif value <= 0xFFFF_FFFF:
            out.append(0xFC)
            out += value.to_bytes(4, "little")
        else:
            out.append(0xFD)
            out += value.to_bytes(8, "little")

    def decode(self, data: bytes, pos: int) -> tuple[int, int]:
        if pos >= len(data):
            raise _ended()
        b = data[pos]
        if b <= _SINGLE_BYTE_MAX:
            return b, pos + 1
        width = self.widths.get(b)
        if width is None:
            raise ProtocolError(f"varint marker 0x{b:02x} is not valid for a u{self.bits}")
        raw, pos = _take(data, pos + 1, width)
        return int.from_bytes(raw, "little"), pos


U16 = _UInt(16)
U32 = _UInt(32)
U64 = _UInt(64)
_length = U64.decode


class _Bool:
    def encode(self, out: bytearray, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{value!r} is not a bool")
        out.append(1 if value else 0)

    def decode(self, data: bytes, pos: int) -> tuple[bool, int]:
        if pos >= len(data):
            raise _ended()
        b = data[pos]
        if b > 1:
            raise ProtocolError(f"0x{b:02x} is not a bool")
        return b == 1, pos + 1


class _Bytes:
    def encode(self, out: bytearray, value: bytes) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"{type(value).__name__} is not bytes")
        U64.encode(out, len(value))
        out += value

    def decode(self, data: bytes, pos: int) -> tuple[bytes, int]:
        n, pos = _length(data, pos)
        return _take(data, pos, n)


class _String:
    def encode(self, out: bytearray, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"{type(value).__name__} is not str")
        raw = value.encode()
        U64.encode(out, len(raw))
        out += raw

    def decode(self, data: bytes, pos: int) -> tuple[str, int]:
        n, pos = _length(data, pos)
        raw, pos = _take(data, pos, n)
        try:
            return raw.decode(), pos
        except UnicodeDecodeError as e:
            raise ProtocolError(f"a string is not UTF-8: {e}") from None


BOOL = _Bool()
BYTES = _Bytes()
STRING = _String()


def as_codec(spec: Codec | type) -> Codec:
    """A codec, or the codec of a :func:`wire_struct` class, so that
    declarations can name nested types directly: ``List(Field)``."""
    return spec.CODEC if isinstance(spec, type) else spec  # type: ignore[attr-defined]


class Option:
    """``None``, or a value of the inner codec behind a ``0x01`` tag."""

    __slots__ = ("inner",)

    def __init__(self, inner: Codec | type) -> None:
        self.inner = as_codec(inner)

    def encode(self, out: bytearray, value: Any) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            self.inner.encode(out, value)

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        if pos >= len(data):
            raise _ended()
        tag = data[pos]
        if tag == 0:
            return None, pos + 1
        if tag != 1:
            raise ProtocolError(f"0x{tag:02x} is not an option tag")
        return self.inner.decode(data, pos + 1)


class List:
    """A count, then the elements.

    Every element type in the protocol takes at least one byte, so a count
    above the bytes left is refused before the list is built.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Codec | type) -> None:
        self.inner = as_codec(inner)

    def encode(self, out: bytearray, value: Sequence[Any]) -> None:
        if isinstance(value, (str, bytes)):
            raise TypeError("a list is needed, not a single string")
        U64.encode(out, len(value))
        for item in value:
            self.inner.encode(out, item)

    def decode(self, data: bytes, pos: int) -> tuple[list[Any], int]:
        n, pos = _length(data, pos)
        if n > len(data) - pos:
            raise ProtocolError(f"a list of {n} elements runs past the end of the body")
        decode = self.inner.decode
        items = []
        for _ in range(n):
            item, pos = decode(data, pos)
            items.append(item)
        return items, pos


class Struct:
    """The codec of a :func:`wire_struct` class: its fields in order."""

    __slots__ = ("cls", "fields", "_decoders")

    def __init__(self, cls: type, fields: tuple[tuple[str, Codec], ...]) -> None:
        self.cls = cls
        self.fields = fields
        self._decoders = tuple(codec.decode for _, codec in fields)

    def encode(self, out: bytearray, value: Any) -> None:
        if type(value) is not self.cls:
            raise TypeError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        for name, codec in self.fields:
            codec.encode(out, getattr(value, name))

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        values = []
        for decode in self._decoders:
            value, pos = decode(data, pos)
            values.append(value)
        return self.cls(*values), pos


class Enumeration:
    """An enumeration whose variants carry at most one value: the variant
    index as a varint u32, then that value, if the variant has one.

    ``kinds`` is the ``IntEnum`` of the variant indexes and ``values`` the
    codec of each variant that carries a value. Values of ``cls`` have the
    variant in ``kind`` and its value in the attribute ``attr``, and are
    built as ``cls(kind)`` or ``cls(kind, value)``: one codec serves every
    such type (``Expiry``, ``Owner``) rather than one hand-written each.
    """

    __slots__ = ("cls", "kinds", "values", "attr")

    def __init__(
        self, cls: type[Any], kinds: type[enum.IntEnum], values: Mapping[enum.IntEnum, Codec | type], attr: str
    ) -> None:
        self.cls: type[Any] = cls
        self.kinds = kinds
        self.values = {kind: as_codec(codec) for kind, codec in values.items()}
        self.attr = attr

    def encode(self, out: bytearray, value: Any) -> None:
        if type(value) is not self.cls:
            raise TypeError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        U32.encode(out, int(value.kind))
        codec = self.values.get(value.kind)
        if codec is not None:
            codec.encode(out, getattr(value, self.attr))

    def decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        index, pos = U32.decode(data, pos)
        try:
            kind = self.kinds(index)
        except ValueError:
            raise ProtocolError(f"{index} is not a {self.cls.__name__} variant") from None
        codec = self.values.get(kind)
        if codec is None:
            return self.cls(kind), pos
        value, pos = codec.decode(data, pos)
        return self.cls(kind, value), pos


def field(codec: Codec | type, default: Any = dataclasses.MISSING) -> Any:
    """Declares a :func:`wire_struct` field and the codec of its bytes."""
    return dataclasses.field(default=default, metadata={"codec": as_codec(codec)})


T = TypeVar("T")


@dataclass_transform(field_specifiers=(field,))
def wire_struct(cls: type[T]) -> type[T]:
    """Makes ``cls`` a dataclass with a ``CODEC`` for its wire layout.

    Fields are encoded in declaration order, as PROTOCOL.md lists them. Not
    frozen: a frozen dataclass takes several times longer to build, and
    decoding builds one for every answer.
    """
    cls = dataclasses.dataclass(slots=True)(cls)
    layout = tuple((f.name, f.metadata["codec"]) for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    cls.CODEC = Struct(cls, layout)  # type: ignore[attr-defined]
    return cls


def encode(value: Any) -> bytes:
    """The body bytes of a message value."""
    out = bytearray()
    value.CODEC.encode(out, value)
    return bytes(out)


def decode(cls: type[T], data: bytes) -> T:
    """Decodes exactly one ``cls`` from the whole of ``data``."""
    if len(data) > MAX_BODY:
        raise ProtocolError(f"a body of {len(data)} bytes is over the {MAX_BODY}-byte limit")
    value, pos = cls.CODEC.decode(data, 0)  # type: ignore[attr-defined]
    if pos != len(data):
        raise ProtocolError(f"{len(data) - pos} trailing bytes after a {cls.__name__} body")
    return value  # type: ignore[no-any-return]
