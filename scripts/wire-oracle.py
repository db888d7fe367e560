#!/usr/bin/python3
"""External oracle for Sluice's wire parsers.

Builds a capture with scapy that covers every header Sluice parses, dissects
it with tshark, and prints ONE JSON document on stdout:

    [{"index": 0, "name": "...", "hex": "<frame bytes>",
      "fields": {"proto.field": value, ...}}, ...]

Values are normalised so the consumer compares plain integers and strings:
"0x.." hex and decimal strings become integers, "1"/"0" flags become 1/0,
addresses stay strings (MACs lower-case, IPv6 in RFC 5952 form, as tshark
prints them). A field that occurs more than once in a frame (one per TCP
option, SCTP chunk, IPv6 extension header, ...) becomes a list in order.

Synthetic fields added here:
  <layer>._offset / <layer>._len   where tshark put the layer in the frame
                                   (from the `-x` raw annotations)
  ipv6.upper                       protocol after the last extension header
  ipv6.ext_count                   extension headers tshark stepped over
  inner.<field>                    fields of the frame inside VXLAN/Geneve

Usage: wire-oracle.py TMPDIR     (the pcap is written there)
"""

import json
import re
import subprocess
import sys

from scapy.all import (
    ARP,
    ICMP,
    IP,
    SCTP,
    TCP,
    UDP,
    Dot1AD,
    Dot1Q,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPOption_EOL,
    IPOption_NOP,
    IPOption_Router_Alert,
    IPOption_RR,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    PadN,
    Raw,
    RouterAlert,
    SCTPChunkData,
    SCTPChunkInit,
    SCTPChunkSACK,
    conf,
    load_contrib,
    wrpcap,
)
from scapy.layers.vxlan import VXLAN

load_contrib("geneve")
from scapy.contrib.geneve import GENEVE, GeneveOptions  # noqa: E402

conf.verb = 0

A = "02:00:5e:10:00:01"
B = "00:1b:21:3a:4f:5c"
V4A, V4B = "192.0.2.1", "198.51.100.7"
V6A, V6B = "2001:db8::1", "2001:db8:0:1::beef"
LL = "fe80::1"


def eth(t=None, dst=B, src=A):
    return Ether(dst=dst, src=src) if t is None else Ether(dst=dst, src=src, type=t)


def v4(**kw):
    kw.setdefault("src", V4A)
    kw.setdefault("dst", V4B)
    return IP(**kw)


def v6(**kw):
    kw.setdefault("src", V6A)
    kw.setdefault("dst", V6B)
    return IPv6(**kw)


TCP_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123456789, 0)), ("NOP", None), ("WScale", 7)]


def packets():
    p = []

    def add(name, pkt):
        p.append((name, pkt))

    # L2
    add("eth ipv4 udp", eth() / v4(ttl=64, id=0x1234) / UDP(sport=40000, dport=53) / Raw(b"q" * 12))
    add("dot1q ipv4 tcp", eth() / Dot1Q(vlan=100, prio=5) / v4(tos=0xb8) / TCP(sport=443, dport=51000, flags="PA", seq=1, ack=2) / Raw(b"data"))
    add("dot1q dei ipv6 udp", eth() / Dot1Q(vlan=4094, prio=1, id=1) / v6(hlim=1) / UDP(sport=546, dport=547))
    add("qinq ipv4 udp", eth() / Dot1AD(vlan=200, prio=3) / Dot1Q(vlan=100) / v4() / UDP(sport=1, dport=2))
    add("qinq ipv6 tcp", eth() / Dot1AD(vlan=1) / Dot1Q(vlan=4000, prio=7) / v6() / TCP(sport=22, dport=60000, flags="S", options=TCP_OPTS))
    add("dot1q 9100 outer", eth(0x9100) / Dot1Q(vlan=33) / Dot1Q(vlan=44) / v4() / UDP(sport=5, dport=6))
    # ARP
    add("arp request", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=A, psrc=V4A, hwdst="00:00:00:00:00:00", pdst="192.0.2.254"))
    add("arp reply", eth() / ARP(op=2, hwsrc=B, psrc="192.0.2.254", hwdst=A, pdst=V4A))
    add("dot1q arp request", eth(dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=7) / ARP(op=1, hwsrc=A, psrc="10.1.2.3", pdst="10.1.2.4"))
    add("gratuitous arp", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=A, psrc=V4A, hwdst="ff:ff:ff:ff:ff:ff", pdst=V4A))
    # IPv4 options and fragments
    add("ipv4 router alert", eth() / v4(dst="224.0.0.22", ttl=1, proto=2, options=[IPOption_Router_Alert()]) / Raw(b"\x22\x00\xf9\x00\x00\x00\x00\x00"))
    add("ipv4 nop rr", eth() / v4(options=[IPOption_NOP(), IPOption_RR(routers=["10.0.0.1", "10.0.0.2"])]) / UDP(sport=7, dport=7))
    add("ipv4 ra nop rr eol", eth() / v4(options=[IPOption_Router_Alert(), IPOption_NOP(), IPOption_RR(routers=["10.9.8.7"]), IPOption_EOL()]) / ICMP(id=9, seq=3))
    add("ipv4 df", eth() / v4(flags="DF", ttl=255) / TCP(sport=80, dport=8080, flags="A", seq=0xFFFFFFF0, ack=0x80000000, window=0xFFFF))
    add("ipv4 first fragment", eth() / v4(flags="MF", frag=0, id=0xBEEF) / UDP(sport=4000, dport=5000, len=1208) / Raw(b"f" * 64))
    add("ipv4 middle fragment", eth() / v4(flags="MF", frag=185, id=0xBEEF, proto=17) / Raw(b"m" * 64))
    add("ipv4 last fragment", eth() / v4(frag=370, id=0xBEEF, proto=17) / Raw(b"l" * 40))
    add("ipv4 ecn dscp", eth() / v4(tos=0x2B, ttl=2) / UDP(sport=9, dport=9))
    # ICMPv4
    add("icmp echo request", eth() / v4() / ICMP(type=8, id=0x4242, seq=1) / Raw(b"ping" * 8))
    add("icmp echo reply", eth() / v4(src=V4B, dst=V4A) / ICMP(type=0, id=0x4242, seq=1) / Raw(b"ping" * 8))
    inner4 = v4(src=V4B, dst=V4A, ttl=1) / UDP(sport=33434, dport=33435)
    add("icmp port unreachable", eth() / v4() / ICMP(type=3, code=3) / inner4)
    add("icmp frag needed", eth() / v4() / ICMP(type=3, code=4, nexthopmtu=1400) / inner4)
    add("icmp time exceeded", eth() / v4(src="203.0.113.9") / ICMP(type=11, code=0) / inner4)
    # IPv6 and extension headers
    add("ipv6 udp flow", eth() / v6(fl=0xABCDE, tc=0xA0, hlim=77) / UDP(sport=1234, dport=4321) / Raw(b"x" * 9))
    add("ipv6 hbh ra", eth() / v6(dst="ff02::16", hlim=1) / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0), PadN(optdata=b"")]) / ICMPv6EchoRequest(id=1, seq=1))
    add("ipv6 routing type 0", eth() / v6() / IPv6ExtHdrRouting(addresses=["2001:db8::a", "2001:db8::b"], segleft=2) / UDP(sport=10, dport=20))
    add("ipv6 srh", eth() / v6() / IPv6ExtHdrSegmentRouting(addresses=["2001:db8::3", "2001:db8::2"], segleft=1) / TCP(sport=179, dport=50000, flags="SA", options=TCP_OPTS))
    add("ipv6 first fragment", eth() / v6() / IPv6ExtHdrFragment(offset=0, m=1, id=0xDEADBEEF) / UDP(sport=4000, dport=5000, len=3000) / Raw(b"f" * 48))
    add("ipv6 middle fragment", eth() / v6() / IPv6ExtHdrFragment(offset=185, m=1, id=0xDEADBEEF, nh=17) / Raw(b"m" * 48))
    add("ipv6 last fragment", eth() / v6() / IPv6ExtHdrFragment(offset=370, m=0, id=0xDEADBEEF, nh=17) / Raw(b"l" * 24))
    add("ipv6 atomic fragment", eth() / v6() / IPv6ExtHdrFragment(offset=0, m=0, id=5) / UDP(sport=1, dport=2))
    add("ipv6 dstopts tcp", eth() / v6() / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00\x00\x00\x00")]) / TCP(sport=5, dport=6, flags="F", seq=77))
    add("ipv6 dstopts nonxt", eth() / v6() / IPv6ExtHdrDestOpt(nh=59))
    add(
        "ipv6 chain hbh dst rt frag dst udp",
        eth() / v6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(addresses=["2001:db8::5"]) / IPv6ExtHdrFragment(offset=0, m=0, id=99) / IPv6ExtHdrDestOpt() / UDP(sport=7, dport=8),
    )
    add("ipv6 chain hbh srh icmpv6", eth() / v6() / IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00" * 12)]) / IPv6ExtHdrSegmentRouting(addresses=["2001:db8::9"], segleft=0) / ICMPv6EchoReply(id=3, seq=4))
    # ICMPv6
    add("icmpv6 echo request", eth() / v6() / ICMPv6EchoRequest(id=0x1111, seq=2, data=b"abcdefgh"))
    add("icmpv6 echo reply", eth() / v6(src=V6B, dst=V6A) / ICMPv6EchoReply(id=0x1111, seq=2, data=b"abcdefgh"))
    add("icmpv6 ns", eth(dst="33:33:ff:00:00:02") / v6(src=LL, dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="fe80::2") / ICMPv6NDOptSrcLLAddr(lladdr=A))
    add("icmpv6 na", eth() / v6(src="fe80::2", dst=LL, hlim=255) / ICMPv6ND_NA(tgt="fe80::2", R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=B))
    add("icmpv6 rs", eth(dst="33:33:00:00:00:02") / v6(src=LL, dst="ff02::2", hlim=255) / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=A))
    add(
        "icmpv6 ra",
        eth(dst="33:33:00:00:00:01") / v6(src=LL, dst="ff02::1", hlim=255) / ICMPv6ND_RA(chlim=64, M=1, O=0, routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=B) / ICMPv6NDOptMTU(mtu=1500) / ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::", prefixlen=64),
    )
    inner6 = v6(src=V6B, dst=V6A) / UDP(sport=5000, dport=6000) / Raw(b"z" * 32)
    add("icmpv6 packet too big", eth() / v6(src="2001:db8::fe") / ICMPv6PacketTooBig(mtu=1280) / inner6)
    add("icmpv6 unreachable", eth() / v6() / ICMPv6DestUnreach(code=4) / inner6)
    add("icmpv6 time exceeded", eth() / v6() / ICMPv6TimeExceeded(code=0) / inner6)
    # TCP and UDP
    add("tcp syn options", eth() / v4() / TCP(sport=51515, dport=443, flags="S", seq=0x01020304, window=64240, options=TCP_OPTS))
    add("tcp sack blocks", eth() / v4() / TCP(sport=443, dport=51515, flags="A", seq=1000, ack=2000, options=[("NOP", None), ("NOP", None), ("SAck", (3000, 4000, 5000, 6000))]))
    add("tcp rst urg", eth() / v4() / TCP(sport=1, dport=2, flags="RU", urgptr=0x1234, seq=0xFFFFFFFF))
    add("udp zero checksum", eth() / v4() / UDP(sport=68, dport=67, chksum=0) / Raw(b"\x01" * 20))
    add("udp over ipv6", eth() / v6() / UDP(sport=123, dport=123) / Raw(b"\x23" * 48))
    # SCTP
    add("sctp init", eth() / v4() / SCTP(sport=2905, dport=2905, tag=0) / SCTPChunkInit(init_tag=0x11223344, a_rwnd=65536, n_out_streams=10, n_in_streams=10, init_tsn=1))
    add("sctp data", eth() / v4() / SCTP(sport=2905, dport=2905, tag=0x11223344) / SCTPChunkData(tsn=1, stream_id=1, stream_seq=0, proto_id=3, data=b"hello sctp"))
    add("sctp sack data over ipv6", eth() / v6() / SCTP(sport=36412, dport=36412, tag=0xCAFEF00D) / SCTPChunkSACK(cumul_tsn_ack=7, a_rwnd=1000) / SCTPChunkData(tsn=8, data=b"abc"))
    # Tunnels
    inner_frame = Ether(dst="00:00:00:00:00:aa", src="00:00:00:00:00:bb") / IP(src="10.0.0.1", dst="10.0.0.2", ttl=33) / UDP(sport=40001, dport=40002) / Raw(b"inner")
    add("vxlan", eth() / v4() / UDP(sport=49152, dport=4789) / VXLAN(vni=0xABCDE, flags=0x08) / inner_frame)
    add("vxlan over ipv6", eth() / v6() / UDP(sport=49153, dport=4789) / VXLAN(vni=1, flags=0x08) / inner_frame)
    add(
        "geneve option",
        eth() / v4() / UDP(sport=49154, dport=6081) / GENEVE(vni=0x123456, proto=0x6558, options=GeneveOptions(classid=0x0102, type=0x80, data=b"\x01\x02\x03\x04")) / inner_frame,
    )
    add(
        "geneve two options",
        eth() / v4() / UDP(sport=49155, dport=6081) / GENEVE(vni=7, proto=0x6558, options=GeneveOptions(classid=0xFFFF, type=0x01, data=b"") / GeneveOptions(classid=0x0103, type=0x02, data=b"\xaa" * 8)) / inner_frame,
    )
    add("geneve no option", eth() / v6() / UDP(sport=49156, dport=6081) / GENEVE(vni=99, proto=0x6558) / inner_frame)
    return p


SKIP_SUFFIXES = (
    "_resolved",
    "_host",
    ".host",
    ".addr",
    ".port",
    ".stream",
    ".time_relative",
    ".time_delta",
    ".oui",
    ".status",
    ".expert",
    ".analysis",
)


# tshark 4.x shows fragment offsets in 8-octet units; Sluice (and this
# output) counts bytes.
FRAG_UNITS8 = ("ip.frag_offset", "ipv6.fraghdr.offset")


def norm(key, value):
    if not isinstance(value, str):
        return value
    if key in FRAG_UNITS8 and re.fullmatch(r"[0-9]+", value):
        return int(value) * 8
    if re.fullmatch(r"0x[0-9a-fA-F]+", value):
        return int(value, 16)
    if re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    if re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", value):
        return value.lower()
    return value


def flatten(pairs, prefix, out):
    """Walks one layer's (key, value) pairs. Nested protocols (an `ip` inside
    `icmp`) are skipped; subtrees of fields are followed."""
    raws = {}
    for k, v in pairs:
        if k.endswith("_raw") and isinstance(v, list):
            # the -x annotation comes right before the item it describes
            raws[k[: -len("_raw")]] = v
            continue
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            if re.fullmatch(r"[a-z0-9_]+", k):
                continue  # an encapsulated protocol (e.g. the quoted packet in ICMP)
            if k in raws and "." in k:
                # a sub-protocol such as ipv6.hopopts: record where it sits
                out.setdefault(prefix + k + "._offset", []).append(raws[k][1])
                out.setdefault(prefix + k + "._len", []).append(raws[k][2])
            flatten(v, prefix, out)
            continue
        if k.endswith(SKIP_SUFFIXES) or k.startswith("_ws.") or " " in k or "." not in k:
            continue
        out.setdefault(prefix + k, []).append(norm(k, v))


def dissect(pcap):
    cmd = [
        "/usr/bin/tshark",
        "-r",
        pcap,
        "-T",
        "json",
        "-x",
        "-o",
        "ip.defragment:FALSE",
        "-o",
        "ipv6.defragment:FALSE",
        "-o",
        "tcp.relative_sequence_numbers:FALSE",
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
        "-o",
        "ip.check_checksum:TRUE",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("tshark failed (%d): %s" % (res.returncode, res.stderr))
    return json.loads(res.stdout, object_pairs_hook=lambda pairs: pairs)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: wire-oracle.py TMPDIR")
    built = packets()
    pcap = sys.argv[1].rstrip("/") + "/wire-oracle.pcap"
    wrpcap(pcap, [pkt for _, pkt in built])
    frames = dissect(pcap)
    if len(frames) != len(built):
        sys.exit("tshark returned %d frames for %d packets" % (len(frames), len(built)))
    result = []
    for index, (frame, (name, _)) in enumerate(zip(frames, built)):
        layers = dict(frame)["_source"]
        layers = dict(layers)["layers"]
        hexbytes = dict(layers)["frame_raw"][0]
        fields = {}
        prefix = ""
        raws = {}
        for k, v in layers:
            if k.endswith("_raw") and isinstance(v, list):
                raws[k[: -len("_raw")]] = v  # annotates the layer that follows
                continue
            if k == "frame" or not (isinstance(v, list) and (not v or isinstance(v[0], tuple))):
                continue
            if k in raws:
                fields.setdefault(prefix + k + "._offset", []).append(raws[k][1])
                fields.setdefault(prefix + k + "._len", []).append(raws[k][2])
            flatten(v, prefix, fields)
            if k == "ipv6":
                nxt = [(kk, vv) for kk, vv in _walk_nxt(v)]
                fields.setdefault(prefix + "ipv6.upper", []).append(nxt[-1][1] if nxt else None)
                fields.setdefault(prefix + "ipv6.ext_count", []).append(len(nxt) - 1)
            if k in ("vxlan", "geneve"):
                prefix = "inner."
        result.append(
            {
                "index": index,
                "name": name,
                "hex": hexbytes,
                "fields": {k: (v[0] if len(v) == 1 else v) for k, v in fields.items()},
            }
        )
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


def _walk_nxt(pairs):
    """The next-header fields of the fixed header and each extension header,
    in wire order."""
    for k, v in pairs:
        if k == "ipv6.nxt" or re.fullmatch(r"ipv6\.[a-z]+\.nxt", k):
            yield k, int(v)
        elif isinstance(v, list) and v and isinstance(v[0], tuple) and k.startswith("ipv6."):
            yield from _walk_nxt(v)


if __name__ == "__main__":
    main()
