#!/usr/bin/env python3
"""SCTP INIT and INIT-ACK on the wire, for control/tests/e2e.rs.

The kernel here has no SCTP sockets, so both ends speak through raw IPv4
sockets for protocol 132 (which also keeps the kernel from answering
"protocol unreachable") and build and check the chunks with scapy, whose
CRC32c is independent of Sluice's.

  sctp-peer.py client DST PORT SPORT SECONDS
      Sends one INIT from SPORT to DST:PORT and waits up to SECONDS for an
      answer from DST:PORT to SPORT. Prints one JSON object: the INIT's
      initiate tag ("sent_init_tag") and the "answer", null or the answer's
      source, ports, verification tag, first chunk type, whether its CRC32c
      is valid and (for an INIT-ACK) its initiate tag and state cookie.

  sctp-peer.py server PORT SECONDS
      Prints {"ready": true}, then for SECONDS answers every INIT to PORT
      with an INIT-ACK (verification tag = the INIT's initiate tag, a state
      cookie), printing one JSON line per INIT: source, destination, ports,
      whether its CRC32c was valid and its initiate tag.
"""
import json
import random
import select
import socket
import struct
import sys
import time

from scapy.layers.inet import IP
from scapy.layers.sctp import (
    SCTP,
    SCTPChunkInit,
    SCTPChunkInitAck,
    SCTPChunkParamStateCookie,
    crc32c,
)

PROTO_SCTP = 132
CHUNK_INIT = 1
CHUNK_INIT_ACK = 2


def crc_valid(sctp):
    """Whether the CRC32c in an SCTP packet's common header is right."""
    if len(sctp) < 12:
        return False
    zeroed = sctp[:8] + b"\0\0\0\0" + sctp[12:]
    return struct.pack(">I", crc32c(zeroed)) == sctp[8:12]


def raw_socket():
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO_SCTP)


def receive(sock, deadline):
    """The next (IP header, SCTP bytes) before the deadline, or None."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return None
        data = sock.recv(65535)
        ip = IP(data)
        if ip.proto != PROTO_SCTP or ip.frag != 0:
            continue
        header_len = ip.ihl * 4
        return ip, data[header_len : ip.len]


def emit(obj):
    print(json.dumps(obj), flush=True)


def client(dst, port, sport, seconds):
    sock = raw_socket()
    my_tag = random.randint(1, 0xFFFFFFFF)
    init = SCTP(sport=sport, dport=port, tag=0) / SCTPChunkInit(
        init_tag=my_tag, a_rwnd=65535, n_out_streams=2, n_in_streams=2, init_tsn=1
    )
    sock.sendto(bytes(init), (dst, 0))
    deadline = time.monotonic() + seconds
    while True:
        got = receive(sock, deadline)
        if got is None:
            emit({"answer": None, "sent_init_tag": my_tag})
            return
        ip, sctp = got
        if len(sctp) < 13:
            continue
        p = SCTP(sctp)
        if ip.src != dst or p.sport != port or p.dport != sport:
            continue
        answer = {
            "src": ip.src,
            "sport": p.sport,
            "dport": p.dport,
            "tag": p.tag,
            "crc_ok": crc_valid(sctp),
            "chunk": sctp[12],
        }
        if p.haslayer(SCTPChunkInitAck):
            ack = p[SCTPChunkInitAck]
            answer["init_tag"] = ack.init_tag
            cookies = [
                prm.cookie
                for prm in ack.params
                if isinstance(prm, SCTPChunkParamStateCookie)
            ]
            answer["cookie"] = cookies[0].decode("latin-1") if cookies else None
        emit({"answer": answer, "sent_init_tag": my_tag})
        return


def server(port, seconds):
    sock = raw_socket()
    emit({"ready": True})
    deadline = time.monotonic() + seconds
    my_tag = 0x5E1CE0DE
    while True:
        got = receive(sock, deadline)
        if got is None:
            return
        ip, sctp = got
        if len(sctp) < 13 or sctp[12] != CHUNK_INIT:
            continue
        p = SCTP(sctp)
        if p.dport != port:
            continue
        seen = {
            "src": ip.src,
            "dst": ip.dst,
            "sport": p.sport,
            "dport": p.dport,
            "crc_ok": crc_valid(sctp),
        }
        if p.haslayer(SCTPChunkInit):
            init = p[SCTPChunkInit]
            seen["init_tag"] = init.init_tag
            ack = SCTP(sport=port, dport=p.sport, tag=init.init_tag) / SCTPChunkInitAck(
                init_tag=my_tag,
                a_rwnd=65535,
                n_out_streams=2,
                n_in_streams=2,
                init_tsn=1,
                params=[SCTPChunkParamStateCookie(cookie=b"sluice-e2e-cookie")],
            )
            # From the address the INIT was sent to: the endpoint's own.
            sock.sendto(bytes(ack), (ip.src, 0))
        emit(seen)


def main():
    mode = sys.argv[1]
    if mode == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif mode == "server":
        server(int(sys.argv[2]), float(sys.argv[3]))
    else:
        sys.exit("usage: sctp-peer.py client DST PORT SPORT SECONDS | server PORT SECONDS")


if __name__ == "__main__":
    main()
