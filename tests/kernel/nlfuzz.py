"""Generic netlink fuzzer for the "upcall" family (run in the guest).

Sends seeded random messages to the family: every command number, random
genl versions and reserved bits, random netlink flags, and attributes of
random types (unknown ones and NLA_F_NESTED / NLA_F_NET_BYTEORDER included),
random lengths (truncated, oversized, lying nla_len) and nested garbage;
a share of them are valid EMITs.  Every message asks for an ACK, so the
kernel answers each with NLMSG_ERROR: an errno, or 0 for a valid one.  A
few messages have a broken nlmsg_len instead: netlink ignores those
without an answer, which is checked too.

    python tests/kernel/nlfuzz.py --seed 1 --messages 100000 [--user 65534]

prints one JSON line; exit 1 if any answer was missing, unexpected or not
an allowed errno.  The same seed sends the same messages.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import socket
import struct
import sys
import time
from collections import Counter

from upcall import abi
from upcall._transports.nlmsg import GENL_HDR, NLA_HDR, NLMSG_HDR

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NETLINK_GENERIC = 16  # not in Python's socket module
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
# Other flag bits a sender may set: MULTI, ECHO, DUMP_INTR, ROOT/MATCH (dump),
# ATOMIC, APPEND and bits nobody defined.
OTHER_FLAGS = (0x2, 0x8, 0x10, 0x20, 0x100, 0x200, 0x300, 0x400, 0x800, 0x1000, 0x8000)
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
# What the kernel may answer: policy and parse errors, unknown commands,
# missing privilege.  Anything else is a finding.
ALLOWED = {0, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM, errno.ERANGE}
ANSWER_TIMEOUT_S = 10.0


def name(err: int) -> str:
    """The errno's name (EOPNOTSUPP, not its alias ENOTSUP), or "ack" for 0."""
    if err == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(err, str(err)) if err else "ack"


def attr(rng: random.Random, depth: int = 0) -> bytes:
    """One attribute: known or unknown type, any length, maybe lying about it."""
    # Half the known types (and just past them), half anything.
    known = rng.random() < 0.5
    atype = rng.randrange(abi.UPCALL_ATTR_MAX + 3) if known else rng.randrange(1 << 14)
    if rng.random() < 0.1:
        atype |= NLA_F_NET_BYTEORDER
    if depth < 2 and rng.random() < 0.1:
        payload = b"".join(attr(rng, depth + 1) for _ in range(rng.randrange(4)))
        atype |= NLA_F_NESTED
    else:
        payload = rng.randbytes(rng.choice((0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 16, rng.randrange(300))))
    length = NLA_HDR.size + len(payload)
    if rng.random() < 0.1:
        length = rng.randrange(1 << 16)  # a lie: too short, too long
    pad = b"\0" * (-len(payload) % 4)
    return NLA_HDR.pack(length & 0xFFFF, atype) + payload + pad


def valid_emit(rng: random.Random) -> bytes:
    value = NLA_HDR.pack(12, abi.UPCALL_ATTR_VALUE) + struct.pack("=Q", rng.getrandbits(64))
    if rng.random() < 0.5:
        return value
    # A source user space may emit as: 0, or above upcall's own.
    source = rng.choice(
        (0, rng.randrange(abi.UPCALL_SOURCE_RESERVED_MAX + 1, abi.UPCALL_SOURCE_MAX + 1))
    )
    return value + NLA_HDR.pack(8, abi.UPCALL_ATTR_SOURCE) + struct.pack("=I", source)


def message(rng: random.Random, family: int, seq: int) -> tuple[bytes, str]:
    """One datagram and its class: valid, garbage or framing (no answer due)."""
    if rng.random() < 0.05:
        body = GENL_HDR.pack(abi.UPCALL_CMD_EMIT, abi.UPCALL_GENL_VERSION, 0) + valid_emit(rng)
        flags, kind = NLM_F_REQUEST | NLM_F_ACK, "valid"
    else:
        cmd = rng.choice((0, 1, 2, 3, rng.randrange(256)))
        version = rng.choice((abi.UPCALL_GENL_VERSION, 0, rng.randrange(256)))
        reserved = rng.choice((0, rng.randrange(1 << 16)))
        if rng.random() < 0.3:
            payload = valid_emit(rng)  # a valid body under a wrong header
        else:
            payload = b"".join(attr(rng) for _ in range(rng.randrange(7)))
        body = GENL_HDR.pack(cmd, version, reserved) + payload
        if rng.random() < 0.05:
            body = body[: rng.randrange(GENL_HDR.size)]  # not even a genl header
        flags = NLM_F_ACK
        if rng.random() < 0.9:
            flags |= NLM_F_REQUEST
        for bit in OTHER_FLAGS:
            if rng.random() < 0.05:
                flags |= bit
        kind = "garbage"
    length = NLMSG_HDR.size + len(body)
    if rng.random() < 0.01:
        # A length netlink cannot frame: dropped without an answer.
        length = rng.choice((0, 1, NLMSG_HDR.size - 1, length + 1 + rng.randrange(1000)))
        kind = "framing"
    return NLMSG_HDR.pack(length, family, flags, seq, 0) + body, kind


def answers(sock: socket.socket) -> list[tuple[int, int]]:
    """(seq, errno) of every NLMSG_ERROR in one datagram; other messages are findings."""
    data = sock.recv(1 << 16)
    out = []
    off = 0
    while off + NLMSG_HDR.size <= len(data):
        length, mtype, _, seq, _ = NLMSG_HDR.unpack_from(data, off)
        if mtype != NLMSG_ERROR or length < NLMSG_HDR.size + 4:
            out.append((seq, -1))
        else:
            (err,) = struct.unpack_from("=i", data, off + NLMSG_HDR.size)
            out.append((seq, -err))
        off += (length + 3) & ~3 or len(data)
    return out


def family_id() -> int:
    """The upcall family's id, by CTRL_CMD_GETFAMILY on a raw socket.

    Not upcall._transports.netlink.resolve_family(): importing pyroute2 takes
    minutes in an emulated guest.
    """
    name = abi.UPCALL_GENL_NAME.encode() + b"\0"
    attr_ = NLA_HDR.pack(NLA_HDR.size + len(name), CTRL_ATTR_FAMILY_NAME) + name
    attr_ += b"\0" * (-len(attr_) % 4)
    body = GENL_HDR.pack(CTRL_CMD_GETFAMILY, 1, 0) + attr_
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as sock:
        sock.settimeout(ANSWER_TIMEOUT_S)
        sock.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(body), GENL_ID_CTRL, NLM_F_REQUEST, 1, 0)
                  + body)  # fmt: skip
        data = sock.recv(1 << 16)
    _, mtype, _, _, _ = NLMSG_HDR.unpack_from(data)
    if mtype == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, NLMSG_HDR.size)
        raise OSError(-err, f"generic netlink family {abi.UPCALL_GENL_NAME!r}")
    off = NLMSG_HDR.size + GENL_HDR.size
    while off + NLA_HDR.size <= len(data):
        length, atype = NLA_HDR.unpack_from(data, off)
        if atype == CTRL_ATTR_FAMILY_ID:
            return int(struct.unpack_from("=H", data, off + NLA_HDR.size)[0])
        off += max((length + 3) & ~3, NLA_HDR.size)
    raise OSError(errno.ENOENT, "CTRL_CMD_GETFAMILY answered without a family id")


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def run(seed: int, count: int, family: int) -> dict[str, object]:
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    sock.bind((0, 0))
    sock.settimeout(ANSWER_TIMEOUT_S)
    kinds: Counter[str] = Counter()
    errnos: Counter[str] = Counter()
    bad: list[str] = []
    valid_answers: Counter[str] = Counter()
    framing: set[int] = set()
    t0 = time.monotonic()
    for seq in range(1, count + 1):
        data, kind = message(rng, family, seq)
        kinds[kind] += 1
        sock.send(data)
        if kind == "framing":
            framing.add(seq)
            continue
        while True:
            try:
                got = answers(sock)
            except TimeoutError:
                bad.append(f"seq {seq}: no answer within {ANSWER_TIMEOUT_S} s")
                break
            for aseq, err in got:
                if aseq in framing:
                    bad.append(f"seq {aseq}: an answer to an unframeable message")
                elif aseq != seq or err < 0:
                    bad.append(f"seq {seq}: unexpected message (seq {aseq}, errno {err})")
            mine = [err for aseq, err in got if aseq == seq]
            if mine:
                err = mine[0]
                errnos[name(err)] += 1
                if err not in ALLOWED:
                    bad.append(f"seq {seq}: errno {err}")
                if kind == "valid":
                    valid_answers[name(err)] += 1
                break
        if len(bad) > 20:
            break
    sock.close()
    return {
        "seed": seed,
        "uid": os.getuid(),
        "messages": sum(kinds.values()),
        "kinds": dict(kinds),
        "answers": dict(errnos),
        "valid_answers": dict(valid_answers),
        "bad": len(bad),
        "bad_examples": bad[:20],
        "seconds": round(time.monotonic() - t0, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--user", type=int, help="run as this uid (and gid), with no capabilities")
    args = p.parse_args()
    family = family_id()
    if args.user is not None:
        drop_privileges(args.user)
    summary = run(args.seed, args.messages, family)
    print(json.dumps(summary), flush=True)
    return 1 if summary["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
