#!/usr/bin/env python3
"""Captures golden BGP messages from real routers (BIRD 2, FRR bgpd, GoBGP).

For each daemon and each mode (`ebgp`, `ibgp`, and `ebgp-gr`: eBGP with graceful restart
advertised by the peer, so that the daemons send End-of-RIB) this script:

* creates two network namespaces, `gold-rtr` and `gold-peer`, joined by a veth pair
  (10.250.0.1/24 + fd00:250::1/64 on the router side, 10.250.0.2/24 + fd00:250::2/64 on the
  peer side);
* starts the daemon in `gold-rtr` (config, sockets, pid file and log in a temporary directory)
  with two neighbors: 10.250.0.2 (IPv4 session, IPv4 unicast) and fd00:250::2 (IPv6 session,
  IPv6 unicast). The daemon connects (active); this script listens on TCP 179 in `gold-peer`,
  answers with an OPEN (4-octet AS, multiprotocol for the session's family, route refresh;
  plus graceful restart in `ebgp-gr`), answers KEEPALIVEs and records every message the
  daemon sends;
* lets the daemon originate 10.251.0.1/32, 10.251.1.0/24, fd00:251::1/128 and fd00:251:1::/64
  with community 65000:1 and large community 65000:7:8 (and LOCAL_PREF 250 on iBGP, set by an
  export policy), waits for the table and two seconds of quiet, withdraws 10.251.1.0/24 and
  fd00:251:1::/64, waits again, then stops the daemon gracefully and records its NOTIFICATION
  (if it sends one);
* writes each recorded message to announce/tests/golden/bgp/
  `<daemon>-<mode>-<v4|v6>-<NN>-<kind>.bin` (raw bytes including the 16-byte marker; at
  most two KEEPALIVEs per session) and regenerates README.md there from the .bin files.

Needs root, `ip`, and the Debian packages bird2, frr and gobgpd. Python 3 standard library only.

    sudo python3 scripts/capture-bgp-golden.py                 # every daemon and mode
    sudo python3 scripts/capture-bgp-golden.py --daemons frr --modes ibgp
    python3 scripts/capture-bgp-golden.py --readme-only        # only re-decode, rewrite README
    sudo python3 scripts/capture-bgp-golden.py --out /tmp/g --keep-tmp   # try out, keep logs

Exit status 0 when every capture holds what is expected (see `check_case`), 1 otherwise.
Namespaces, daemons and temporary directories are removed on every exit path.
"""

import argparse
import ctypes
import ipaddress
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOLDEN_DIR = REPO / "announce" / "tests" / "golden" / "bgp"

RTR_NS = "gold-rtr"
PEER_NS = "gold-peer"
RTR_IF = "gold-r"
PEER_IF = "gold-p"
RTR_MAC = "02:00:0a:fa:00:01"
PEER_MAC = "02:00:0a:fa:00:02"
RTR4, PEER4 = "10.250.0.1", "10.250.0.2"
RTR6, PEER6 = "fd00:250::1", "fd00:250::2"
ROUTER_AS = 64512
EBGP_PEER_AS = 64600
ROUTER_ID = RTR4
PEER_ID = PEER4
GOBGP_API_PORT = "50051"  # on gold-rtr's own loopback

ROUTES = {
    "v4": ["10.251.0.1/32", "10.251.1.0/24"],
    "v6": ["fd00:251::1/128", "fd00:251:1::/64"],
}
WITHDRAWN = {"v4": "10.251.1.0/24", "v6": "fd00:251:1::/64"}
COMMUNITY = (65000, 1)
LARGE_COMMUNITY = (65000, 7, 8)
IBGP_LOCAL_PREF = 250

HOLD_TIME = 90
CMD_TIMEOUT = 15
READY_TIMEOUT = 20
ESTABLISH_TIMEOUT = 60
TABLE_TIMEOUT = 60
EOR_TIMEOUT = 10
WITHDRAW_TIMEOUT = 30
QUIET = 2.0
QUIET_TIMEOUT = 30
SHUTDOWN_TIMEOUT = 15
MAX_KEEPALIVES = 2
# eBGP, iBGP, and eBGP with graceful restart advertised by the Python peer (the routers then
# send End-of-RIB markers, and some close the session without a NOTIFICATION on shutdown).
MODES = ("ebgp", "ibgp", "ebgp-gr")
KEEP_TMP = False  # --keep-tmp: leave configs and daemon logs for debugging

CLONE_NEWNET = 0x40000000
AFI = {"v4": 1, "v6": 2}
SAFI_UNICAST = 1


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# Commands and namespaces
# --------------------------------------------------------------------------------------------


def run(argv, check=True, timeout=CMD_TIMEOUT, ns=None):
    """Runs a command (optionally in a namespace); its CompletedProcess."""
    if ns:
        argv = ["ip", "netns", "exec", ns] + list(argv)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}{p.stderr}".rstrip()
        )
    return p


def netns_exists(name):
    out = run(["ip", "netns", "list"], check=False).stdout
    return any(line.split()[0] == name for line in out.splitlines() if line.split())


def netns_kill_all(name):
    """Kills what still runs in one of our namespaces (only processes this script started)."""
    if not netns_exists(name):
        return
    for _ in range(3):
        pids = [int(p) for p in run(["ip", "netns", "pids", name], check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.3)


def teardown_netns():
    for ns in (RTR_NS, PEER_NS):
        netns_kill_all(ns)
        if netns_exists(ns):
            run(["ip", "netns", "del", ns], check=False)


def setup_netns():
    teardown_netns()
    for ns in (RTR_NS, PEER_NS):
        run(["ip", "netns", "add", ns])
        for key in ("all", "default"):
            run(["sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0"], ns=ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    # Created inside gold-rtr with its peer end moved straight to gold-peer: never in the
    # host's namespace.
    # Fixed MAC addresses, so the link-local IPv6 next hops are the same on every capture.
    run(["ip", "-n", RTR_NS, "link", "add", RTR_IF, "address", RTR_MAC, "type", "veth",
         "peer", "name", PEER_IF, "address", PEER_MAC, "netns", PEER_NS])
    for ns, dev, a4, a6 in ((RTR_NS, RTR_IF, RTR4, RTR6), (PEER_NS, PEER_IF, PEER4, PEER6)):
        run(["ip", "-n", ns, "addr", "add", f"{a4}/24", "dev", dev])
        run(["ip", "-n", ns, "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad"])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = run(["ip", "-n", PEER_NS, "-6", "addr", "show", "dev", PEER_IF], check=False).stdout
        if "tentative" not in out and "fd00:250::2" in out:
            break
        time.sleep(0.1)


class InNetns:
    """Moves the calling thread into a named network namespace for the `with` body."""

    def __init__(self, name):
        self.name = name
        self.libc = ctypes.CDLL(None, use_errno=True)

    def _setns(self, fd):
        if self.libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    def __enter__(self):
        self.orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            self._setns(target)
        except BaseException:
            os.close(self.orig)
            raise
        finally:
            os.close(target)
        return self

    def __exit__(self, *exc):
        try:
            self._setns(self.orig)
        finally:
            os.close(self.orig)


# --------------------------------------------------------------------------------------------
# BGP encoding (our side) and decoding (both sides)
# --------------------------------------------------------------------------------------------

MARKER = b"\xff" * 16
MSG_TYPES = {1: "open", 2: "update", 3: "notification", 4: "keepalive", 5: "routerefresh"}


def frame(msg_type, body):
    return MARKER + struct.pack("!HB", 19 + len(body), msg_type) + body


def encode_open(my_as, afi, graceful_restart=True):
    caps = b""

    def cap(code, value):
        return bytes([code, len(value)]) + value

    caps += cap(1, struct.pack("!HBB", afi, 0, SAFI_UNICAST))
    caps += cap(2, b"")
    caps += cap(65, struct.pack("!I", my_as))
    if graceful_restart:
        # Restart flags 0, restart time 120 s; the family without forwarding-state flag.
        caps += cap(64, struct.pack("!HHBB", 120, afi, SAFI_UNICAST, 0))
    params = bytes([2, len(caps)]) + caps
    two_octet_as = my_as if my_as <= 0xFFFF else 23456
    body = struct.pack("!BHH4sB", 4, two_octet_as, HOLD_TIME, socket.inet_aton(PEER_ID),
                       len(params)) + params
    return frame(1, body)


KEEPALIVE = frame(4, b"")

ATTR_NAMES = {
    1: "ORIGIN", 2: "AS_PATH", 3: "NEXT_HOP", 4: "MULTI_EXIT_DISC", 5: "LOCAL_PREF",
    6: "ATOMIC_AGGREGATE", 7: "AGGREGATOR", 8: "COMMUNITIES", 9: "ORIGINATOR_ID",
    10: "CLUSTER_LIST", 14: "MP_REACH_NLRI", 15: "MP_UNREACH_NLRI", 16: "EXTENDED_COMMUNITIES",
    17: "AS4_PATH", 18: "AS4_AGGREGATOR", 32: "LARGE_COMMUNITY",
}
CAP_NAMES = {
    1: "multiprotocol", 2: "route-refresh", 5: "extended-nexthop", 6: "extended-message",
    9: "bgp-role", 64: "graceful-restart", 65: "4-octet-as", 69: "add-path",
    70: "enhanced-route-refresh", 71: "long-lived-gr", 73: "fqdn", 75: "software-version",
    128: "route-refresh(old)",
}
NOTIFY_CODES = {1: "Message Header Error", 2: "OPEN Message Error", 3: "UPDATE Message Error",
                4: "Hold Timer Expired", 5: "FSM Error", 6: "Cease", 7: "ROUTE-REFRESH Error"}
CEASE_SUBCODES = {1: "Maximum Number of Prefixes Reached", 2: "Administrative Shutdown",
                  3: "Peer De-configured", 4: "Administrative Reset", 5: "Connection Rejected",
                  6: "Other Configuration Change", 7: "Connection Collision Resolution",
                  8: "Out of Resources", 9: "Hard Reset", 10: "BFD Down"}
ORIGINS = {0: "IGP", 1: "EGP", 2: "INCOMPLETE"}


class DecodeError(Exception):
    pass


def decode_prefixes(data, afi):
    size = 4 if afi == 1 else 16
    out, i = [], 0
    while i < len(data):
        plen = data[i]
        n = (plen + 7) // 8
        if plen > size * 8 or i + 1 + n > len(data):
            raise DecodeError(f"bad prefix at {i}")
        raw = data[i + 1:i + 1 + n] + b"\0" * (size - n)
        addr = ipaddress.IPv4Address(raw) if afi == 1 else ipaddress.IPv6Address(raw)
        out.append(f"{addr}/{plen}")
        i += 1 + n
    return out


def decode_attr(code, value):
    """A dict describing one path attribute's value."""
    d = {}
    if code == 1:
        d["origin"] = ORIGINS.get(value[0], value[0]) if value else None
    elif code in (2, 17):
        segs, i = [], 0
        while i + 2 <= len(value):
            stype, count = value[i], value[i + 1]
            asns = list(struct.unpack(f"!{count}I", value[i + 2:i + 2 + 4 * count]))
            segs.append(({1: "SET", 2: "SEQ"}.get(stype, stype), asns))
            i += 2 + 4 * count
        d["segments"] = segs
    elif code == 3:
        d["next_hop"] = str(ipaddress.IPv4Address(value))
    elif code in (4, 5):
        d["value"] = struct.unpack("!I", value)[0]
    elif code == 8:
        d["communities"] = [struct.unpack("!HH", value[i:i + 4]) for i in range(0, len(value), 4)]
    elif code == 32:
        d["large"] = [struct.unpack("!III", value[i:i + 12]) for i in range(0, len(value), 12)]
    elif code == 14:
        afi, safi, nhlen = struct.unpack("!HBB", value[:4])
        nh = value[4:4 + nhlen]
        hops = []
        step = 4 if afi == 1 else 16
        for j in range(0, nhlen - nhlen % step, step):
            chunk = nh[j:j + step]
            hops.append(str(ipaddress.IPv4Address(chunk) if step == 4
                            else ipaddress.IPv6Address(chunk)))
        d.update(afi=afi, safi=safi, next_hops=hops,
                 nlri=decode_prefixes(value[5 + nhlen:], afi))
    elif code == 15:
        afi, safi = struct.unpack("!HB", value[:3])
        d.update(afi=afi, safi=safi, withdrawn=decode_prefixes(value[3:], afi))
    return d


def decode(msg):
    """A dict describing one framed BGP message (the daemon's side: 4-octet AS negotiated)."""
    if len(msg) < 19 or msg[:16] != MARKER:
        raise DecodeError("bad header")
    length, mtype = struct.unpack("!HB", msg[16:19])
    if length != len(msg):
        raise DecodeError(f"length {length} != {len(msg)}")
    body = msg[19:]
    d = {"type": mtype, "kind": MSG_TYPES.get(mtype, f"type{mtype}"), "length": length}
    if mtype == 1:
        ver, my_as, hold, bgp_id, plen = struct.unpack("!BHH4sB", body[:10])
        caps, i, params, nparams = [], 0, body[10:10 + plen], 0
        while i + 2 <= len(params):
            ptype, pl = params[i], params[i + 1]
            nparams += 1
            pv = params[i + 2:i + 2 + pl]
            if ptype == 2:
                j = 0
                while j + 2 <= len(pv):
                    code, cl = pv[j], pv[j + 1]
                    caps.append((code, pv[j + 2:j + 2 + cl]))
                    j += 2 + cl
            i += 2 + pl
        d.update(version=ver, my_as=my_as, hold=hold, bgp_id=socket.inet_ntoa(bgp_id), caps=caps,
                 params=nparams)
    elif mtype == 2:
        wlen = struct.unpack("!H", body[:2])[0]
        withdrawn = decode_prefixes(body[2:2 + wlen], 1)
        alen = struct.unpack("!H", body[2 + wlen:4 + wlen])[0]
        attrs_raw = body[4 + wlen:4 + wlen + alen]
        nlri = decode_prefixes(body[4 + wlen + alen:], 1)
        attrs, i = [], 0
        while i < len(attrs_raw):
            flags, code = attrs_raw[i], attrs_raw[i + 1]
            if flags & 0x10:
                alen_ = struct.unpack("!H", attrs_raw[i + 2:i + 4])[0]
                hdr = 4
            else:
                alen_ = attrs_raw[i + 2]
                hdr = 3
            value = attrs_raw[i + hdr:i + hdr + alen_]
            if len(value) != alen_:
                raise DecodeError(f"attribute {code} truncated")
            attrs.append({"flags": flags, "code": code, "len": alen_, "value": value,
                          **decode_attr(code, value)})
            i += hdr + alen_
        d.update(withdrawn=withdrawn, attrs=attrs, nlri=nlri)
        d["eor"] = None
        if not withdrawn and not attrs and not nlri:
            d["eor"] = "ipv4 unicast"
        elif (not withdrawn and not nlri and len(attrs) == 1 and attrs[0]["code"] == 15
              and not attrs[0]["withdrawn"]):
            d["eor"] = {1: "ipv4", 2: "ipv6"}.get(attrs[0]["afi"], attrs[0]["afi"]) + " unicast"
    elif mtype == 3:
        d.update(code=body[0], subcode=body[1], data=body[2:])
    elif mtype == 5:
        d.update(afi=struct.unpack("!H", body[:2])[0], safi=body[3])
    return d


def fmt_attr(a):
    name = ATTR_NAMES.get(a["code"], f"ATTR{a['code']}")
    head = f"{name}({a['code']}) flags=0x{a['flags']:02x} len={a['len']}"
    code = a["code"]
    if code == 1:
        val = a["origin"]
    elif code in (2, 17):
        val = " ".join(f"{t}[{','.join(map(str, asns))}]" for t, asns in a["segments"]) or "empty"
    elif code == 3:
        val = a["next_hop"]
    elif code in (4, 5):
        val = str(a["value"])
    elif code == 8:
        val = " ".join(f"{x}:{y}" for x, y in a["communities"])
    elif code == 32:
        val = " ".join(f"{x}:{y}:{z}" for x, y, z in a["large"])
    elif code == 14:
        val = (f"afi={a['afi']} safi={a['safi']} nh={','.join(a['next_hops'])} "
               f"nlri={' '.join(a['nlri'])}")
    elif code == 15:
        val = f"afi={a['afi']} safi={a['safi']} withdrawn={' '.join(a['withdrawn']) or '-'}"
    else:
        val = a["value"].hex()
    return f"{head} {val}"


def summarize(msg, sep="; "):
    """One line describing a message (used for the console and the README)."""
    d = decode(msg)
    k = d["kind"]
    if k == "open":
        caps = []
        for code, v in d["caps"]:
            name = CAP_NAMES.get(code, f"cap{code}")
            if code == 1:
                afi, _, safi = struct.unpack("!HBB", v)
                name += f"({afi}/{safi})"
            elif code == 65:
                name += f"({struct.unpack('!I', v)[0]})"
            elif code == 64 and len(v) >= 2:
                fl_time = struct.unpack("!H", v[:2])[0]
                fams = [struct.unpack("!HBB", v[i:i + 4]) for i in range(2, len(v) - 3, 4)]
                name += (f"(flags=0x{fl_time >> 12:x},time={fl_time & 0xfff}"
                         + "".join(f",{a}/{s}/0x{f:02x}" for a, s, f in fams) + ")")
            elif v:
                name += f"({v.hex()})"
            caps.append(name)
        return (f"OPEN v{d['version']} as={d['my_as']} hold={d['hold']} id={d['bgp_id']} "
                f"optional-params={d['params']} caps: {' '.join(caps)}")
    if k == "update":
        if d["eor"]:
            return f"UPDATE End-of-RIB {d['eor']}" + "".join(
                f" ({fmt_attr(a)})" for a in d["attrs"])
        parts = []
        if d["withdrawn"]:
            parts.append("withdrawn " + " ".join(d["withdrawn"]))
        parts += [fmt_attr(a) for a in d["attrs"]]
        if d["nlri"]:
            parts.append("NLRI " + " ".join(d["nlri"]))
        return "UPDATE " + sep.join(parts)
    if k == "notification":
        code = NOTIFY_CODES.get(d["code"], str(d["code"]))
        sub = CEASE_SUBCODES.get(d["subcode"], str(d["subcode"])) if d["code"] == 6 \
            else str(d["subcode"])
        data = d["data"]
        extra = ""
        if data:
            text = data[1:1 + data[0]] if d["code"] == 6 and d["subcode"] in (2, 4) \
                and len(data) >= 1 + data[0] else data
            try:
                extra = f" data={text.decode('utf-8')!r}"
            except UnicodeDecodeError:
                extra = f" data={data.hex()}"
        return f"NOTIFICATION {d['code']}/{d['subcode']} {code} / {sub}{extra}"
    if k == "keepalive":
        return "KEEPALIVE"
    if k == "routerefresh":
        return f"ROUTE-REFRESH afi={d['afi']} safi={d['safi']}"
    return f"{k} len={d['length']}"


# --------------------------------------------------------------------------------------------
# The Python peer
# --------------------------------------------------------------------------------------------


class Capture:
    """Shared state: the current phase and the time of the last message received."""

    def __init__(self):
        self.phase = "initial"
        self.last_rx = time.monotonic()
        self.lock = threading.Lock()


class PeerSession(threading.Thread):
    """Listens in gold-peer for one daemon session, answers it and records what it sends."""

    def __init__(self, name, listener, my_as, afi, graceful_restart, capture):
        super().__init__(daemon=True, name=f"peer-{name}")
        self.session = name
        self.graceful_restart = graceful_restart
        self.listener = listener
        self.my_as = my_as
        self.afi = afi
        self.capture = capture
        self.stop_event = threading.Event()
        self.sock = None
        self.buf = b""
        self.messages = []  # (phase, raw) of the current connection
        self.connections = 0
        self.rejected = 0
        self.got_open = False
        self.established = False
        self.closed = False
        self.last_tx = 0.0
        self.error = None

    def _send(self, data):
        try:
            self.sock.sendall(data)
            self.last_tx = time.monotonic()
        except OSError:
            pass

    def _accept(self):
        s, addr = self.listener.accept()
        if self.sock is not None and not self.closed:
            s.close()
            self.rejected += 1
            return
        if self.sock is not None:
            self.sock.close()
        self.sock = s
        self.sock.settimeout(5)
        self.connections += 1
        self.buf = b""
        self.messages = []
        self.got_open = self.established = self.closed = False
        self._send(encode_open(self.my_as, self.afi, self.graceful_restart))

    def _on_message(self, raw):
        with self.capture.lock:
            self.messages.append((self.capture.phase, raw))
            self.capture.last_rx = time.monotonic()
        mtype = raw[18]
        if mtype == 1:
            self.got_open = True
            self._send(KEEPALIVE)
        elif mtype == 4:
            if self.got_open:
                self.established = True
            self._send(KEEPALIVE)
        elif mtype == 3:
            self._close()

    def _close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _read(self):
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close()
            return
        self.buf += data
        while len(self.buf) >= 19:
            length = struct.unpack("!H", self.buf[16:18])[0]
            if self.buf[:16] != MARKER or length < 19 or length > 65535:
                self.error = f"bad framing: {self.buf[:19].hex()}"
                self._close()
                return
            if len(self.buf) < length:
                break
            raw, self.buf = self.buf[:length], self.buf[length:]
            self._on_message(raw)
            if self.closed:
                return

    def run(self):
        try:
            while not self.stop_event.is_set():
                rl = [self.listener]
                if self.sock is not None and not self.closed:
                    rl.append(self.sock)
                r, _, _ = select.select(rl, [], [], 0.2)
                if self.listener in r:
                    self._accept()
                if self.sock is not None and not self.closed and self.sock in r:
                    self._read()
                if (self.established and not self.closed
                        and time.monotonic() - self.last_tx > HOLD_TIME / 3):
                    self._send(KEEPALIVE)
        except Exception as e:  # reported by the main thread
            self.error = repr(e)

    def shutdown(self):
        self.stop_event.set()
        self.join(timeout=5)
        for s in (self.sock, self.listener):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def snapshot(self):
        with self.capture.lock:
            return list(self.messages)


def make_listeners():
    with InNetns(PEER_NS):
        l4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        l6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        for s, addr in ((l4, (PEER4, 179)), (l6, (PEER6, 179, 0, 0))):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if s.family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            s.listen(4)
    return l4, l6


# --------------------------------------------------------------------------------------------
# Daemons
# --------------------------------------------------------------------------------------------


class Daemon:
    name = ""

    def __init__(self, mode, tmp):
        self.mode = mode  # one of MODES
        self.ibgp = mode == "ibgp"
        self.gr = mode.endswith("-gr")
        self.peer_as = ROUTER_AS if self.ibgp else EBGP_PEER_AS
        self.tmp = Path(tmp)
        self.proc = None
        self.logfile = None

    def spawn(self, argv, log_name):
        self.logfile = open(self.tmp / log_name, "ab")
        # A private UTS namespace with hostname gold-rtr: GoBGP puts the hostname in its OPEN
        # (FQDN capability), which would otherwise depend on the machine. unshare and sh exec,
        # so the pid is the daemon's.
        wrapped = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "gold-rtr"]
        self.proc = subprocess.Popen(["ip", "netns", "exec", RTR_NS] + wrapped + argv,
                                     stdin=subprocess.DEVNULL, stdout=self.logfile,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during startup "
                                   f"({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if self.ready():
                    return
            except (subprocess.TimeoutExpired, OSError, RuntimeError):
                pass  # not answering yet
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT}s:\n{self.log_tail()}")

    def log_tail(self, n=40):
        out = []
        for p in sorted(self.tmp.glob("*.log")):
            try:
                lines = p.read_text(errors="replace").splitlines()[-n:]
            except OSError:
                continue
            out.append(f"--- {p.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def originate(self):
        pass

    def wait_exit(self, timeout):
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            if not self.wait_exit(5):
                self.proc.kill()
                self.wait_exit(5)
        if self.logfile is not None:
            self.logfile.close()
            self.logfile = None

    def stop_graceful(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


class Bird(Daemon):
    name = "bird"

    def start(self):
        self.sock = str(self.tmp / "bird.ctl")
        conf = self.tmp / "bird.conf"
        conf.write_text(self.config())
        self.spawn(["bird", "-c", str(conf), "-s", self.sock, "-P", str(self.tmp / "bird.pid"),
                    "-f"], "bird-stdout.log")

    def config(self):
        attrs = (f"bgp_community.add(({COMMUNITY[0]},{COMMUNITY[1]})); "
                 f"bgp_large_community.add(({LARGE_COMMUNITY[0]},{LARGE_COMMUNITY[1]},"
                 f"{LARGE_COMMUNITY[2]}));")
        s = [f"router id {ROUTER_ID};", f'log "{self.tmp}/bird.log" all;',
             "protocol device { scan time 10; }"]
        # One static protocol per prefix so that one can be disabled (= withdrawn) alone.
        for fam, chan in (("v4", "ipv4"), ("v6", "ipv6")):
            for i, prefix in enumerate(ROUTES[fam]):
                s.append(f"protocol static s{fam}_{i} {{ {chan}; "
                         f"route {prefix} blackhole {{ {attrs} }}; }}")
        if self.ibgp:
            export = (f"export filter {{ if source != RTS_STATIC then reject; "
                      f"bgp_local_pref = {IBGP_LOCAL_PREF}; accept; }};")
        else:
            export = "export where source = RTS_STATIC;"
        for name, local, peer, chan in (("peer4", RTR4, PEER4, "ipv4"),
                                        ("peer6", RTR6, PEER6, "ipv6")):
            s.append(f"protocol bgp {name} {{\n"
                     f"  local {local} as {ROUTER_AS};\n"
                     f"  neighbor {peer} as {self.peer_as};\n"
                     f"  connect retry time 1;\n  connect delay time 1;\n"
                     f"  error wait time 1, 5;\n"
                     f"  {chan} {{ import none; {export} }};\n}}")
        return "\n".join(s) + "\n"

    def birdc(self, *args):
        return run(["birdc", "-s", self.sock] + list(args)).stdout

    def ready(self):
        p = run(["birdc", "-s", self.sock, "show", "status"], check=False)
        return p.returncode == 0 and "Daemon is up" in p.stdout

    def withdraw(self):
        # The second static protocol of each family holds the withdrawn prefix.
        for fam in ("v4", "v6"):
            idx = ROUTES[fam].index(WITHDRAWN[fam])
            self.birdc("disable", f"s{fam}_{idx}")

    def stop_graceful(self):
        if self.proc is not None and self.proc.poll() is None:
            run(["birdc", "-s", self.sock, "down"], check=False)

    @staticmethod
    def version():
        p = run(["bird", "--version"], check=False)
        return (p.stdout + p.stderr).strip()


class Frr(Daemon):
    name = "frr"
    BGPD = "/usr/lib/frr/bgpd"

    def start(self):
        conf = self.tmp / "bgpd.conf"
        conf.write_text(self.config())
        self.spawn([self.BGPD, "-Z", "-S", "-n", "-f", str(conf), "-i",
                    str(self.tmp / "bgpd.pid"), "--vty_socket", str(self.tmp), "-P", "0",
                    "-p", "179", "--log", f"file:{self.tmp}/bgpd.log"], "bgpd-stdout.log")

    def config(self):
        s = ["frr defaults traditional", "hostname gold-rtr", "!",
             f"router bgp {ROUTER_AS}", f" bgp router-id {ROUTER_ID}",
             " no bgp ebgp-requires-policy", " no bgp network import-check",
             " no bgp default ipv4-unicast"]
        for peer in (PEER4, PEER6):
            s += [f" neighbor {peer} remote-as {self.peer_as}",
                  f" neighbor {peer} timers connect 1",
                  f" neighbor {peer} advertisement-interval 0"]
        for fam, afname, peer in (("v4", "ipv4", PEER4), ("v6", "ipv6", PEER6)):
            s.append(f" address-family {afname} unicast")
            for prefix in ROUTES[fam]:
                s.append(f"  network {prefix} route-map GOLD-ORIGIN")
            s.append(f"  neighbor {peer} activate")
            if self.ibgp:
                s.append(f"  neighbor {peer} route-map GOLD-EXPORT out")
            s.append(" exit-address-family")
        s += ["exit", "!", "route-map GOLD-ORIGIN permit 10",
              f" set community {COMMUNITY[0]}:{COMMUNITY[1]}",
              f" set large-community {':'.join(map(str, LARGE_COMMUNITY))}", "exit", "!"]
        if self.ibgp:
            s += ["route-map GOLD-EXPORT permit 10",
                  f" set local-preference {IBGP_LOCAL_PREF}", "exit", "!"]
        return "\n".join(s) + "\n"

    def vtysh(self, *commands):
        argv = ["vtysh", "--vty_socket", str(self.tmp)]
        for c in commands:
            argv += ["-c", c]
        p = run(argv)
        if any(line.startswith("%") for line in p.stdout.splitlines()):
            raise RuntimeError(f"vtysh {commands}: {p.stdout}")
        return p.stdout

    def ready(self):
        p = run(["vtysh", "--vty_socket", str(self.tmp), "-c", "show bgp summary json"],
                check=False)
        return p.returncode == 0 and p.stdout.lstrip().startswith("{")

    def withdraw(self):
        self.vtysh("configure terminal", f"router bgp {ROUTER_AS}",
                   "address-family ipv4 unicast", f"no network {WITHDRAWN['v4']}",
                   "exit-address-family", "address-family ipv6 unicast",
                   f"no network {WITHDRAWN['v6']}", "exit-address-family")

    @staticmethod
    def version():
        out = run([Frr.BGPD, "--version"], check=False).stdout
        return out.splitlines()[0].strip() if out else "unknown"


class GoBgp(Daemon):
    name = "gobgp"

    def start(self):
        conf = self.tmp / "gobgpd.toml"
        conf.write_text(self.config())
        self.spawn(["gobgpd", "-f", str(conf), "--api-hosts", f"127.0.0.1:{GOBGP_API_PORT}",
                    "--pprof-disable"], "gobgpd.log")

    def config(self):
        s = ["[global.config]", f"  as = {ROUTER_AS}", f'  router-id = "{ROUTER_ID}"',
             "  port = 179"]
        if self.ibgp:
            s += ["[global.apply-policy.config]", '  export-policy-list = ["gold-local-pref"]',
                  '  default-export-policy = "accept-route"']
        for peer, afi in ((PEER4, "ipv4-unicast"), (PEER6, "ipv6-unicast")):
            s += ["", "[[neighbors]]", "  [neighbors.config]",
                  f'    neighbor-address = "{peer}"', f"    peer-as = {self.peer_as}",
                  "  [neighbors.timers.config]", "    connect-retry = 1"]
            if self.gr:
                # GoBGP advertises graceful restart (and sends End-of-RIB) only when configured.
                s += ["  [neighbors.graceful-restart.config]", "    enabled = true",
                      "    restart-time = 120"]
            s += ["  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                  f'      afi-safi-name = "{afi}"']
            if self.gr:
                s += ["    [neighbors.afi-safis.mp-graceful-restart.config]",
                      "      enabled = true"]
        if self.ibgp:
            s += ["", "[[policy-definitions]]", '  name = "gold-local-pref"',
                  "  [[policy-definitions.statements]]", '    name = "set-local-pref"',
                  "    [policy-definitions.statements.actions]",
                  '      route-disposition = "accept-route"',
                  "      [policy-definitions.statements.actions.bgp-actions]",
                  f"        set-local-pref = {IBGP_LOCAL_PREF}"]
        return "\n".join(s) + "\n"

    def cli(self, *args):
        return run(["gobgp", "-u", "127.0.0.1", "-p", GOBGP_API_PORT] + list(args),
                   ns=RTR_NS).stdout

    def ready(self):
        p = run(["gobgp", "-u", "127.0.0.1", "-p", GOBGP_API_PORT, "global"], ns=RTR_NS,
                check=False)
        return p.returncode == 0

    def originate(self):
        for fam, af in (("v4", "ipv4"), ("v6", "ipv6")):
            for prefix in ROUTES[fam]:
                self.cli("global", "rib", "add", "-a", af, prefix,
                         "community", f"{COMMUNITY[0]}:{COMMUNITY[1]}",
                         "large-community", ":".join(map(str, LARGE_COMMUNITY)))

    def withdraw(self):
        for fam, af in (("v4", "ipv4"), ("v6", "ipv6")):
            self.cli("global", "rib", "del", "-a", af, WITHDRAWN[fam])

    @staticmethod
    def version():
        return run(["gobgpd", "--version"], check=False).stdout.strip() or "unknown"


DAEMONS = {"bird": Bird, "frr": Frr, "gobgp": GoBgp}

# Behaviour seen in the captures that the tables do not make obvious; README "Notes".
NOTES = [
    "* Extended-length bit: FRR sets it on AS_PATH even when short (flags 0x50, length 0 or "
    "6). BIRD and FRR set it on MP_REACH_NLRI and on MP_UNREACH_NLRI withdrawals (0x90); "
    "GoBGP never does (0x80). In the IPv6 End-of-RIB all three send MP_UNREACH_NLRI with "
    "0x80 (BIRD thus uses 0x90 for a withdrawal but 0x80 for its End-of-RIB).",
    "* Attribute order: BIRD and FRR put MP_REACH_NLRI first, then the rest by type code; "
    "GoBGP sorts strictly by type code (MP_REACH_NLRI between COMMUNITIES and "
    "LARGE_COMMUNITY).",
    "* FRR adds MULTI_EXIT_DISC 0 (0x80) to routes from `network` statements, on eBGP too.",
    "* GoBGP's `gobgp global rib add` defaults ORIGIN to INCOMPLETE (left as is); BIRD and "
    "FRR send IGP.",
    "* GoBGP packs both IPv4 prefixes in one UPDATE but sends one UPDATE per IPv6 prefix. "
    "BIRD lists NLRI in the reverse order of its config; GoBGP's order varies between runs.",
    "* IPv6 next hop: BIRD sends 32 bytes (global + link-local fe80::aff:fefa:1) on eBGP and "
    "16 bytes (global) on iBGP; FRR (running without zebra, so it does not know the "
    "link-local address) and GoBGP send 16 bytes.",
    "* End-of-RIB: BIRD sends it in every mode; FRR and GoBGP only when graceful restart is "
    "negotiated (`ebgp-gr`; GoBGP must be configured for it). FRR sends its End-of-RIB "
    "before the routes (right after the KEEPALIVE).",
    "* Shutdown: BIRD (`birdc down`) sends Cease / Administrative Shutdown (6/2) without data; "
    "GoBGP (SIGTERM) sends Cease / Peer De-configured (6/3); FRR (SIGTERM) sends 6/3 too, "
    "except in `ebgp-gr`, where it closes the connection without a NOTIFICATION (a "
    "restarting speaker keeps its peers' routes alive).",
    "* OPEN: FRR puts every capability in its own optional parameter (10 parameters), BIRD "
    "and GoBGP put all in one. Hold times: BIRD 240, FRR 180, GoBGP 90. FRR's graceful "
    "restart capability has the R and N flags set (0xc); GoBGP advertises extended next hop "
    "(IPv4 unicast over IPv6) on the IPv4 session and the FQDN capability (hostname "
    "`gold-rtr`, set by the script).",
    "* LOCAL_PREF 250 on iBGP is set by each daemon's export policy (BIRD export filter, FRR "
    "outbound route-map, GoBGP global export policy `set-local-pref`); none sends LOCAL_PREF "
    "on eBGP.",
    "* The hold times are long enough that every session stored exactly one KEEPALIVE.",
]
PACKAGES = {"bird": "bird2", "frr": "frr", "gobgp": "gobgpd"}


def package_version(daemon):
    p = run(["dpkg-query", "-W", "-f", "${Version}", PACKAGES[daemon]], check=False)
    return f"Debian {PACKAGES[daemon]} {p.stdout.strip()}" if p.returncode == 0 else ""


# --------------------------------------------------------------------------------------------
# One capture
# --------------------------------------------------------------------------------------------


def wait_until(pred, timeout, what, problems):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    problems.append(f"timed out after {timeout}s waiting for {what}")
    log(f"  ! timed out waiting for {what}")
    return False


def wait_quiet(capture, problems):
    def quiet():
        with capture.lock:
            return time.monotonic() - capture.last_rx >= QUIET
    wait_until(quiet, QUIET_TIMEOUT, f"{QUIET}s without messages", problems)


def announced(messages, phase=None):
    out = set()
    for ph, raw in messages:
        if phase and ph != phase or raw[18] != 2:
            continue
        d = decode(raw)
        out.update(d["nlri"])
        for a in d["attrs"]:
            if a["code"] == 14:
                out.update(a["nlri"])
    return out


def withdrawn(messages, phase=None):
    out = set()
    for ph, raw in messages:
        if phase and ph != phase or raw[18] != 2:
            continue
        d = decode(raw)
        out.update(d["withdrawn"])
        for a in d["attrs"]:
            if a["code"] == 15:
                out.update(a["withdrawn"])
    return out


def has_eor(messages):
    return any(raw[18] == 2 and decode(raw)["eor"] for _, raw in messages)


def capture_case(daemon_cls, mode):
    """Runs one daemon in one mode; {session: [(phase, raw)]} and a list of problems."""
    problems = []
    tmp = tempfile.mkdtemp(prefix=f"gold-{daemon_cls.name}-{mode}-")
    daemon = daemon_cls(mode, tmp)
    sessions = {}
    try:
        setup_netns()
        l4, l6 = make_listeners()
        capture = Capture()
        for fam, listener in (("v4", l4), ("v6", l6)):
            sessions[fam] = PeerSession(fam, listener, daemon.peer_as, AFI[fam], daemon.gr,
                                        capture)
            sessions[fam].start()
        daemon.start()
        daemon.wait_ready()
        daemon.originate()
        wait_until(lambda: all(s.established for s in sessions.values()), ESTABLISH_TIMEOUT,
                   "both sessions to be established", problems)
        for fam, s in sessions.items():
            want = set(ROUTES[fam])
            wait_until(lambda: want <= announced(s.snapshot()), TABLE_TIMEOUT,
                       f"{fam} routes {sorted(want)}", problems)
        if daemon.gr:
            wait_until(lambda: all(has_eor(s.snapshot()) for s in sessions.values()),
                       EOR_TIMEOUT, "End-of-RIB on both sessions", problems)
        wait_quiet(capture, problems)

        with capture.lock:
            capture.phase = "withdraw"
        log("  withdrawing " + " ".join(WITHDRAWN.values()))
        daemon.withdraw()
        for fam, s in sessions.items():
            wait_until(lambda: WITHDRAWN[fam] in withdrawn(s.snapshot(), "withdraw"),
                       WITHDRAW_TIMEOUT, f"{fam} withdrawal of {WITHDRAWN[fam]}", problems)
        wait_quiet(capture, problems)

        with capture.lock:
            capture.phase = "shutdown"
        log("  stopping the daemon")
        daemon.stop_graceful()
        if not wait_until(lambda: all(s.closed for s in sessions.values()), SHUTDOWN_TIMEOUT,
                          "the daemon to close both sessions", problems):
            pass
        if not daemon.wait_exit(SHUTDOWN_TIMEOUT):
            problems.append(f"{daemon.name} did not exit within {SHUTDOWN_TIMEOUT}s")
        for fam, s in sessions.items():
            if s.error:
                problems.append(f"{fam} session: {s.error}")
            if s.connections != 1 or s.rejected:
                problems.append(f"{fam} session: {s.connections} connections, "
                                f"{s.rejected} rejected (kept the last)")
    except Exception as e:
        problems.append(f"error: {e}")
        log(f"  ! {e}")
        log(daemon.log_tail())
    finally:
        for s in sessions.values():
            s.shutdown()
        daemon.kill()
        teardown_netns()
        if KEEP_TMP:
            log(f"  kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return {fam: s.snapshot() for fam, s in sessions.items()}, problems


def check_case(daemon, mode, captured):
    """What is expected of one capture; the list of failures (empty when all is there)."""
    fails = []
    ibgp = mode == "ibgp"
    for fam in ("v4", "v6"):
        msgs = captured.get(fam, [])
        tag = f"{daemon}-{mode}-{fam}"
        kinds = [raw[18] for _, raw in msgs]
        if 1 not in kinds:
            fails.append(f"{tag}: no OPEN")
        if 4 not in kinds:
            fails.append(f"{tag}: no KEEPALIVE")
        for prefix in ROUTES[fam]:
            found = None
            for phase, raw in msgs:
                if raw[18] != 2 or phase != "initial":
                    continue
                d = decode(raw)
                prefixes = set(d["nlri"])
                for a in d["attrs"]:
                    if a["code"] == 14:
                        prefixes.update(a["nlri"])
                if prefix in prefixes:
                    found = d
            if found is None:
                fails.append(f"{tag}: {prefix} not announced")
                continue
            attrs = {a["code"]: a for a in found["attrs"]}
            for code in (1, 2, 8, 32) + ((3,) if fam == "v4" else (14,)):
                if code not in attrs:
                    fails.append(f"{tag}: {prefix} without {ATTR_NAMES[code]}")
            if 2 in attrs:
                segs = attrs[2]["segments"]
                want = [] if ibgp else [("SEQ", [ROUTER_AS])]
                if segs != want:
                    fails.append(f"{tag}: {prefix} AS_PATH {segs}, want {want}")
            if 8 in attrs and COMMUNITY not in attrs[8]["communities"]:
                fails.append(f"{tag}: {prefix} without community {COMMUNITY}")
            if 32 in attrs and LARGE_COMMUNITY not in attrs[32]["large"]:
                fails.append(f"{tag}: {prefix} without large community {LARGE_COMMUNITY}")
            if ibgp:
                lp = attrs.get(5, {}).get("value")
                if lp != IBGP_LOCAL_PREF:
                    fails.append(f"{tag}: {prefix} LOCAL_PREF {lp}, want {IBGP_LOCAL_PREF}")
            elif 5 in attrs:
                fails.append(f"{tag}: {prefix} carries LOCAL_PREF on eBGP")
        if mode.endswith("-gr") and not has_eor([m for m in msgs if m[0] == "initial"]):
            fails.append(f"{tag}: no End-of-RIB")
        if WITHDRAWN[fam] not in withdrawn(msgs, "withdraw"):
            fails.append(f"{tag}: no withdrawal of {WITHDRAWN[fam]}")
    return fails


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

FILE_RE = re.compile(r"^(bird|frr|gobgp)-(ebgp|ibgp|ebgp-gr)-(v4|v6)-(\d+)-([a-z]+)\.bin$")


def write_case(out_dir, daemon, mode, captured):
    """Writes one case's messages; the names written, with a note per session."""
    notes = {}
    for fam, msgs in captured.items():
        n = 0
        keepalives = 0
        skipped = 0
        for phase, raw in msgs:
            kind = MSG_TYPES.get(raw[18], f"type{raw[18]}")
            if raw[18] == 4:
                keepalives += 1
                if keepalives > MAX_KEEPALIVES:
                    skipped += 1
                    continue
            n += 1
            name = f"{daemon}-{mode}-{fam}-{n:02d}-{kind}.bin"
            (out_dir / name).write_bytes(raw)
            log(f"  {name:34} [{phase}] {summarize(raw, sep=' | ')}")
        notes[fam] = skipped
        if skipped:
            log(f"  ({daemon}-{mode}-{fam}: {skipped} more KEEPALIVEs not stored)")
    return notes


def attr_flag_table(out_dir):
    """{daemon: {(mode, fam): [ordered 'NAME(code)=0xflags' of the first announcement]}}."""
    table = {}
    for path in sorted(out_dir.glob("*.bin")):
        m = FILE_RE.match(path.name)
        if not m or m.group(5) != "update":
            continue
        d = decode(path.read_bytes())
        if d["eor"] or not (d["nlri"] or any(a["code"] == 14 for a in d["attrs"])):
            continue
        key = (m.group(2), m.group(3))
        table.setdefault(m.group(1), {}).setdefault(
            key, [f"{ATTR_NAMES.get(a['code'], a['code'])}({a['code']}) 0x{a['flags']:02x}"
                  for a in d["attrs"]])
    return table


def short_kind(raw):
    """A few words for one message in a session outline."""
    d = decode(raw)
    if d["kind"] == "update":
        if d["eor"]:
            return "EoR"
        reach = list(d["nlri"]) + [p for a in d["attrs"] if a["code"] == 14 for p in a["nlri"]]
        unreach = list(d["withdrawn"]) + [p for a in d["attrs"] if a["code"] == 15
                                          for p in a["withdrawn"]]
        parts = []
        if reach:
            parts.append(f"+{len(reach)}")
        if unreach:
            parts.append(f"-{len(unreach)}")
        return "UPDATE(" + " ".join(parts) + ")"
    if d["kind"] == "notification":
        return f"NOTIFICATION {d['code']}/{d['subcode']}"
    return d["kind"].upper()


def session_outlines(files):
    """{(daemon, mode, fam): 'OPEN, KEEPALIVE, ...'} from the sorted golden files."""
    out = {}
    for p in files:
        m = FILE_RE.match(p.name)
        key = (m.group(1), m.group(2), m.group(3))
        try:
            word = short_kind(p.read_bytes())
        except Exception:
            word = "?"
        out.setdefault(key, []).append(word)
    return {k: ", ".join(v) for k, v in out.items()}


def write_readme(out_dir, versions):
    files = sorted((p for p in out_dir.glob("*.bin") if FILE_RE.match(p.name)),
                   key=lambda p: (FILE_RE.match(p.name).group(1), FILE_RE.match(p.name).group(2),
                                  FILE_RE.match(p.name).group(3),
                                  int(FILE_RE.match(p.name).group(4))))
    lines = [
        "# Golden BGP messages from real routers",
        "",
        "Every `.bin` file is one BGP message exactly as a router sent it on the wire: the",
        "16-byte marker, the 2-byte length, the type and the body. They were captured by",
        "`scripts/capture-bgp-golden.py`, which runs each router in a private network namespace",
        "and plays its peer (10.250.0.2 / fd00:250::2) from Python.",
        "",
        "Re-capture (root, Debian packages `bird2`, `frr`, `gobgpd`; under two minutes):",
        "",
        "```sh",
        "sudo python3 scripts/capture-bgp-golden.py             # all daemons and modes",
        "sudo python3 scripts/capture-bgp-golden.py --daemons frr --modes ibgp   # a subset",
        "python3 scripts/capture-bgp-golden.py --readme-only    # re-decode the files, rewrite README",
        "```",
        "",
        "The script checks every capture (attributes, communities, AS_PATH, LOCAL_PREF,",
        "withdrawals, End-of-RIB in `ebgp-gr`) and exits non-zero when something is missing.",
        "Addresses are the same on every run (fixed veth MAC addresses, so the same link-local",
        "next hops). A re-capture with the same versions gives the same bytes, except that",
        "GoBGP's order of prefixes (within its IPv4 UPDATE, and of its two IPv6 UPDATEs) varies",
        "from run to run.",
        "",
        "## Setup",
        "",
        f"* Router (the daemon): AS {ROUTER_AS}, router id {ROUTER_ID}, addresses {RTR4}/24 and "
        f"{RTR6}/64. It connects actively to the Python peer.",
        f"* Peer (the script): AS {EBGP_PEER_AS} for eBGP, AS {ROUTER_AS} for iBGP, BGP id "
        f"{PEER_ID}, hold time {HOLD_TIME}. Its OPEN carries the capabilities multiprotocol "
        "(only the session's family), route refresh and 4-octet AS.",
        "* Modes: `ebgp` (peer AS 64600), `ibgp` (peer AS 64512), `ebgp-gr` (as `ebgp`, but the "
        "peer's OPEN also carries graceful restart, restart time 120, no flags, the session's "
        "family without forwarding-state bit; GoBGP is configured with graceful restart for it "
        "too). FRR and GoBGP send End-of-RIB markers only when graceful restart is "
        "negotiated, BIRD always.",
        f"* `v4` session: {RTR4} -> {PEER4}, IPv4 unicast only. `v6` session: {RTR6} -> "
        f"{PEER6}, IPv6 unicast only.",
        "* Each router originates " + ", ".join(ROUTES["v4"] + ROUTES["v6"]) +
        f" with community {COMMUNITY[0]}:{COMMUNITY[1]} and large community "
        f"{':'.join(map(str, LARGE_COMMUNITY))}; on iBGP its export policy sets LOCAL_PREF "
        f"{IBGP_LOCAL_PREF}.",
        f"* After the table (and End-of-RIB in `ebgp-gr`) and two quiet seconds, "
        f"{WITHDRAWN['v4']} and "
        f"{WITHDRAWN['v6']} are withdrawn (BIRD: `birdc disable` of the static protocol holding "
        "it; FRR: `no network`; GoBGP: `gobgp global rib del`), then the router is stopped "
        "gracefully (BIRD: `birdc down`; FRR and GoBGP: SIGTERM) and its NOTIFICATION, if "
        "any, recorded.",
        f"* `NN` is the order within the session. At most {MAX_KEEPALIVES} KEEPALIVEs per "
        "session are stored; the 4-octet AS capability is negotiated on every session, so "
        "AS_PATH carries 4-byte AS numbers.",
        "",
        "## Versions",
        "",
    ]
    for daemon, (short, full) in versions.items():
        lines.append(f"* {daemon}: {full}")
    lines += ["", "## Session outlines", "",
              "What each router sent, in order (`+n`/`-n`: prefixes announced/withdrawn; "
              "`EoR`: End-of-RIB; no NOTIFICATION: the router closed the connection without one).",
              "", "| daemon | mode | session | messages |", "|---|---|---|---|"]
    for (daemon, mode, fam), outline in sorted(session_outlines(files).items()):
        lines.append(f"| {daemon} | {mode} | {fam} | {outline} |")
    lines += ["", "## Path attributes of the first announcement (order as sent, flags byte)", ""]
    lines += ["| daemon | session | attributes |", "|---|---|---|"]
    for daemon, per in sorted(attr_flag_table(out_dir).items()):
        for (mode, fam), attrs in sorted(per.items()):
            lines.append(f"| {daemon} | {mode} {fam} | {', '.join(attrs)} |")
    lines += ["", "Flags: 0x40 well-known transitive, 0x80 optional non-transitive, 0xc0 optional "
              "transitive, +0x10 extended length (2-byte length field), +0x20 partial.", ""]
    lines += ["## Notes (observed with the versions above)", ""] + NOTES + [""]
    lines += ["## Files", "", "| file | daemon | session | content |", "|---|---|---|---|"]
    for p in files:
        m = FILE_RE.match(p.name)
        try:
            summary = summarize(p.read_bytes(), sep="<br>")
        except Exception as e:  # a file that does not decode is worth seeing
            summary = f"(does not decode: {e})"
        summary = summary.replace("|", "\\|")
        lines.append(f"| `{p.name}` | {versions.get(m.group(1), (m.group(1),))[0]} | "
                     f"{m.group(2)} {m.group(3)} | {p.stat().st_size} bytes: {summary} |")
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")


def versions_of(names):
    """{daemon: (short version, version line and Debian package)}."""
    out = {}
    for name in names:
        v = DAEMONS[name].version()
        pkg = package_version(name)
        short = {"bird": "BIRD", "frr": "FRR", "gobgp": "GoBGP"}[name]
        num = re.search(r"\d+(\.\d+)+", v)
        out[name] = (f"{short} {num.group(0) if num else '?'}",
                     f"`{v}`" + (f" ({pkg})" if pkg else ""))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--daemons", default="bird,frr,gobgp",
                    help="comma-separated subset of bird,frr,gobgp")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated subset of " + ",".join(MODES))
    ap.add_argument("--out", type=Path, default=GOLDEN_DIR, help="output directory")
    ap.add_argument("--readme-only", action="store_true",
                    help="only re-decode the .bin files and rewrite README.md")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep each case's temporary directory (configs, daemon logs)")
    args = ap.parse_args()
    global KEEP_TMP
    KEEP_TMP = args.keep_tmp
    daemons = [d for d in args.daemons.split(",") if d]
    modes = [m for m in args.modes.split(",") if m]
    for d in daemons:
        if d not in DAEMONS:
            ap.error(f"unknown daemon {d}")
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m}")
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.readme_only:
        write_readme(out_dir, versions_of(DAEMONS))
        return 0
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    # SIGTERM and Ctrl-C unwind once, so that the cleanup in the finally blocks runs; repeats
    # (`timeout` signals the process group too) are ignored so they cannot cut the cleanup short.
    def stop(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    all_fails = []
    try:
        for daemon in daemons:
            for mode in modes:
                log(f"== {daemon} {mode}")
                captured, problems = capture_case(DAEMONS[daemon], mode)
                for p in out_dir.glob(f"{daemon}-*.bin"):
                    m = FILE_RE.match(p.name)
                    if m and m.group(2) == mode:
                        p.unlink()
                write_case(out_dir, daemon, mode, captured)
                fails = problems + check_case(daemon, mode, captured)
                for f in fails:
                    log(f"  FAIL {f}")
                if not fails:
                    log(f"  OK: {daemon} {mode} holds every expected attribute and withdrawal")
                all_fails += [f"{daemon} {mode}: {f}" for f in fails]
    except KeyboardInterrupt:
        teardown_netns()
        log("interrupted; README.md not rewritten")
        return 130
    finally:
        teardown_netns()
    write_readme(out_dir, versions_of(DAEMONS))
    log(f"wrote {out_dir.relative_to(REPO) if out_dir.is_relative_to(REPO) else out_dir}")
    if all_fails:
        log(f"{len(all_fails)} problem(s):")
        for f in all_fails:
            log(f"  {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
