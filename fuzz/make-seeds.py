#!/usr/bin/env python3
"""Writes the small seed corpus under fuzz/corpus/<target>/seed-*.

Independent of the Rust code on purpose: frames come from the golden
vectors of protocol/PROTOCOL.md, records and log frames are encoded here
from their documented layouts, and tokens are sealed here (HKDF-SHA256,
XChaCha20-Poly1305) under the fixed key ring of common/tokens_fixture.rs.
Needs Python 3.10+ and the `cryptography` package (tokens only).

Usage: python3 fuzz/make-seeds.py   (rewrites every seed-* file)
"""
import base64
import hashlib
import os
import re
import struct
import zlib
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
CORPUS = FUZZ / "corpus"
PROTOCOL = FUZZ.parent / "protocol" / "PROTOCOL.md"

# Keep in step with common/tokens_fixture.rs.
NOW = 1_800_000_000_000
ACTIVE_KID, RETIRED_KID = 0x00C0FFEE, 0x0BADF00D
MASTER = {ACTIVE_KID: bytes([0x11]) * 32, RETIRED_KID: bytes([0x22]) * 32}
SITES = ["www.example.com", "www.example.org"]
COOKIE_NAME = "__Host-s"
CLOCK_NOW_PLUS_1S = 1  # index into CLOCKS
STATE = b"state-cookie-value-0123456789"  # fuzz_targets/tokens.rs


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def golden():
    """(name, frame bytes) for every golden vector of PROTOCOL.md."""
    text = PROTOCOL.read_text()
    text = text[text.index("## Golden vectors"):]
    out = []
    for m in re.finditer(r"^#### (.+?)\n```hex\n(.*?)```", text, re.S | re.M):
        out.append((m.group(1), bytes.fromhex(re.sub(r"\s", "", m.group(2)))))
    return out


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --- bincode 2, standard configuration (little-endian varints) ---------
def varint(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfb" + struct.pack("<H", n)
    if n < 1 << 32:
        return b"\xfc" + struct.pack("<I", n)
    return b"\xfd" + struct.pack("<Q", n)


def blob(b):
    return varint(len(b)) + b


def opt(s):
    return b"\x00" if s is None else b"\x01" + blob(s.encode())


def expiry(kind, value=None):
    return {"default": b"\x00", "idle": b"\x01" + varint(value or 0), "at": b"\x02" + varint(value or 0),
            "browser": b"\x03"}[kind]


def fields(pairs):
    return varint(len(pairs)) + b"".join(blob(n.encode()) + blob(v) for n, v in pairs)


def record(version, times, exp, pairs, handle, user, ip, ua, aliases, schema=2):
    body = b"".join(varint(t) for t in [version, *times]) + exp + fields(pairs) + handle
    body += opt(user) + opt(ip) + opt(ua) + varint(len(aliases)) + b"".join(aliases)
    if schema == 1:
        return b"\x01" + body  # RECORD_V1: no checksum
    return b"\x02" + struct.pack("<I", zlib.crc32(body)) + body  # RECORD_V2


def check_encoder(vectors):
    """The encoder above must reproduce PROTOCOL.md's SESSION vector."""
    ms = lambda s: s * 1000  # noqa: E731
    created, expires = 1_700_000_000_000, 1_700_003_600_000
    body = (fields([("cart", b"3")]) + b"".join(varint(t) for t in [1, created, created, created, expires, 3_600_000])
            + expiry("idle", 3600) + blob(b"oKGio6Slpqeoqaqr") + opt("42") + opt("192.0.2.7") + opt("Mozilla/5.0")
            + b"\x00\x00")
    session = dict(vectors)["SESSION"][16:]
    assert body == session, (body.hex(), session.hex())
    del ms


# --- write-ahead log ---------------------------------------------------
def entry(table, key, value):
    out = bytes([table]) + struct.pack("<I", len(key)) + key
    return out + (b"\x00" if value is None else b"\x01" + struct.pack("<I", len(value)) + value)


def wal_frame(seq, payload):
    crc = zlib.crc32(struct.pack("<Q", seq) + payload)
    return struct.pack("<IIQ", len(payload), crc, seq) + payload


# --- tokens --------------------------------------------------------------
def hchacha20(key, nonce16):
    def rotl(v, c):
        return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))

    def qr(s, a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)  # noqa: E702
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)  # noqa: E702
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)  # noqa: E702
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)  # noqa: E702

    s = list(struct.unpack("<4I", b"expand 32-byte k") + struct.unpack("<8I", key) + struct.unpack("<4I", nonce16))
    for _ in range(10):
        qr(s, 0, 4, 8, 12); qr(s, 1, 5, 9, 13); qr(s, 2, 6, 10, 14); qr(s, 3, 7, 11, 15)  # noqa: E702
        qr(s, 0, 5, 10, 15); qr(s, 1, 6, 11, 12); qr(s, 2, 7, 8, 13); qr(s, 3, 4, 9, 14)  # noqa: E702
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def seal(kid, purpose, audience, plaintext, nonce):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = {1: b"sessiond/v1/transfer", 2: b"sessiond/v1/cookie"}[purpose]
    sub = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(MASTER[kid])
    header = bytes([1, purpose]) + struct.pack(">I", kid) + nonce
    sealed = ChaCha20Poly1305(hchacha20(sub, nonce[:16])).encrypt(b"\0" * 4 + nonce[16:], plaintext, header + audience)
    return header + sealed


def transfer_claims(src, dst, bind=b"\0" * 32, iat=NOW, ttl=30_000):
    out = struct.pack(">QQ", iat, iat + ttl)
    for h in (src, dst):
        out += bytes([len(h)]) + h.encode()
    return out + bytes(range(32)) + bind


def cookie_claims(user, pairs, idle_secs=1800, epoch=3):
    out = b"\x5a" * 16 + struct.pack(">QQQII", NOW, NOW, NOW + 1_209_600_000, idle_secs, epoch)
    out += struct.pack(">H", len(user)) + user.encode() + struct.pack(">H", len(pairs))
    for n, v in pairs:
        out += struct.pack(">H", len(n)) + n.encode() + struct.pack(">I", len(v)) + v
    return out


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def main():
    for old in CORPUS.glob("*/seed-*"):
        old.unlink()
    vectors = golden()
    check_encoder(vectors)
    frames = dict(vectors)

    # frame: whole streams of frames, as a client or the daemon sends them.
    write("frame", "hello", frames["HELLO"])
    write("frame", "pipeline", b"".join(frames[n] for n in ["CREATE", "GET", "PATCH", "SET_EXPIRY (absolute)", "DELETE"]))
    write("frame", "answers", b"".join(frames[n] for n in ["HELLO_OK", "SESSION", "USER_SESSIONS", "ERROR"]))
    write("frame", "tokens", b"".join(frames[n] for n in ["ISSUE_TRANSFER", "REDEEM_TRANSFER", "SEAL", "UNSEALED"]))
    write("frame", "partial", frames["PING"] + frames["GET"][:-5])

    # message: opcode byte, then the body, for every golden vector.
    seen = set()
    for name, frame in vectors:
        if frame in seen:
            continue
        seen.add(frame)
        write("message", slug(name), frame[12:13] + frame[16:])

    # record: format byte 1, then the bincode body of `Record`.
    handle = bytes(range(0xA0, 0xAC))
    t = NOW
    write("record", "minimal", record(1, [t, t, t, t + 1_209_600_000], expiry("default"), [], handle, None, None, None, []))
    write("record", "full", record(7, [t, t + 5, t + 9, t + 1_800_009], expiry("idle", 1800),
                                   [("cart", b"3"), ("theme", b"\x00\xffdark"), ("user_id", b"42")], handle, "42",
                                   "2001:db8::1", "Mozilla/5.0 (X11; Linux x86_64)", [bytes(range(32)), b"\x07" * 32]))
    write("record", "absolute", record(2, [t, t, t, t + 60_000], expiry("at", t + 60_000), [("a" * 300, b"v" * 260)],
                                       handle, None, "192.0.2.7", None, []))
    write("record", "browser-close", record(3, [t, t, t, t + 1_209_600_000], expiry("browser"), [("k", b"")], handle,
                                            "alice", None, None, []))
    write("record", "schema-1", record(4, [t, t, t, t + 60_000], expiry("idle", 60), [("cart", b"3")], handle, "42",
                                       "192.0.2.7", "Mozilla/5.0", [b"\x01" * 32], schema=1))

    # log: `applied` (u64 LE), then the log file.
    session_key = bytes(range(32))
    rec = (CORPUS / "record" / "seed-full").read_bytes()
    p1 = entry(0, session_key, rec) + entry(2, b"42" + session_key, b"")
    p2 = entry(0, session_key, rec[:-3] + b"\x00\x00\x00") + entry(1, struct.pack(">Q", t) + session_key, b"")
    p3 = entry(0, session_key, None) + entry(3, handle, None)
    log = wal_frame(1, p1) + wal_frame(2, p2) + wal_frame(3, p3)
    write("log", "three-frames", struct.pack("<Q", 0) + log + b"\0" * 16)
    write("log", "applied-one", struct.pack("<Q", 1) + log)
    write("log", "torn-tail", struct.pack("<Q", 0) + log[:-7])
    # After a checkpoint at 5: frame 6 over the remains of an older pass.
    old = wal_frame(4, p1) + wal_frame(5, p2)
    new = wal_frame(6, p3)
    write("log", "restarted", struct.pack("<Q", 5) + new + old[len(new):])

    # tokens: byte 0 mode (| token index << 2), byte 1 clock index, byte 2
    # flags (host choice, cookie-name choice << 2, state choice << 4).
    a, b = SITES
    nonce = lambda i: hashlib.sha256(b"nonce%d" % i).digest()[:24]  # noqa: E731
    tt = seal(ACTIVE_KID, 1, bytes([len(b)]) + b.encode(), transfer_claims(a, b), nonce(1))
    bound = seal(ACTIVE_KID, 1, bytes([len(a)]) + a.encode(),
                 transfer_claims(b, a, hashlib.sha256(STATE).digest()), nonce(2))
    retired = seal(RETIRED_KID, 1, bytes([len(b)]) + b.encode(), transfer_claims(a, b), nonce(3))
    ck = seal(ACTIVE_KID, 2, COOKIE_NAME.encode() + b"\0" + a.encode(),
              cookie_claims("42", [("cart", b"3"), ("theme", b"\x00\xff")]), nonce(4))
    c1 = CLOCK_NOW_PLUS_1S
    write("tokens", "transfer", bytes([0, c1, 1]) + b64(tt))
    write("tokens", "transfer-bound", bytes([0, c1, 0 | 1 << 4]) + b64(bound))
    write("tokens", "transfer-retired-key", bytes([0, c1, 1]) + b64(retired))
    write("tokens", "cookie", bytes([0, c1, 0]) + b64(ck))
    write("tokens", "envelope", bytes([3, c1, 1]) + tt)
    write("tokens", "edit-transfer", bytes([1 | 0 << 2, c1, 0]) + bytes([0x41, 10, 0]))
    write("tokens", "edit-cookie", bytes([1 | 2 << 2, c1, 0]) + bytes([0x06, 3, 0]))
    write("tokens", "claims-transfer", bytes([2, c1, 0]) + transfer_claims(a, b))
    write("tokens", "claims-cookie", bytes([2, c1, 0]) + cookie_claims("", [("cart", b"3")], idle_secs=0))

    total = sum(p.stat().st_size for p in CORPUS.glob("*/seed-*"))
    print(f"{len(list(CORPUS.glob('*/seed-*')))} seed files, {total} bytes")


if __name__ == "__main__":
    os.umask(0o022)
    main()
