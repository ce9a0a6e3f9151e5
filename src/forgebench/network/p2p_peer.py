"""P2P peers: each one a TCP server and client on loopback, hosted by an OS process.

Run ``python -m forgebench.network.p2p_peer``: the process hosts the peers it is given
(one, or a group sharing one asyncio loop) and is driven by JSON lines on stdin, one reply
line per command on stdout; it exits when stdin closes, so it dies with its controller
(``p2p_mesh``). Commands:

* ``init`` {peers, host, seed}: bind a listening socket per peer; reply with the ports.
* ``setup`` {table, phase, mode, fanout, ttl, messages}: reset the protocol state and the
  records for a new phase; a peer left down by the last phase listens again.
* ``link``: each peer dials every higher-numbered peer it has no link to (one TCP
  connection per pair, HELLO/ACK handshake); sent once every process has done ``setup``.
* ``run`` {t0_ns, messages: [[id, origin, offset_ns]], churn: [[peer, offset_ns, kind]],
  payload_bytes}: schedule this process's originations and churn events on the loop
  clock (``time.monotonic``, the system-wide CLOCK_MONOTONIC), reply at once.
* ``progress``: first receipts and all receipts so far, frames written, messages
  originated, last origination time, links per peer.
* ``report``: every peer's records (first receipt and receipt count per message, send
  times of the messages it originated, frames sent, down intervals).

The protocol: a frame is an 18-byte header (payload length, kind, ttl, origin, sender,
message id, CRC-32 of the payload) and the payload. ``mesh``: the origin writes the frame
to every peer it is linked to; nobody relays. ``gossip``: the origin writes it to
``fanout`` peers drawn from its links (a seeded ``random.Random`` per peer and phase);
a peer forwards a message only on its first receipt (seen-set) and only while ``ttl > 1``,
to ``fanout`` of its links other than the sender and the origin. The membership a peer
sees is its set of open links: a peer that leaves aborts its connections (RST, as a
crashed process would), the others drop it when their link closes, and a rejoining peer
links to every peer again. Receipts are stamped with ``time.monotonic_ns`` on arrival,
before any parsing, so cross-process latency is one clock's difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import struct
import sys
import time
import zlib
from collections.abc import Mapping
from typing import Any

HEADER = struct.Struct("!IBBHHII")  # payload length, kind, ttl, origin, sender, msg, crc32
DATA, HELLO, ACK = 0, 1, 2
MODES = ("mesh", "gossip")
READ_LIMIT = 1 << 26  # largest control line (a report of 64 peers x 10^4 messages fits)


def payload_for(seed: int, phase: int, msg: int, size: int) -> bytes:
    """The seeded payload of message ``msg`` in ``phase``: every run sends the same bytes."""
    return random.Random(seed * 1_000_003 + phase * 100_003 + msg).randbytes(size)


def frame(kind: int, ttl: int, origin: int, sender: int, msg: int, payload: bytes = b"") -> bytes:
    """One wire frame: header and payload."""
    crc = zlib.crc32(payload)
    return HEADER.pack(len(payload), kind, ttl, origin, sender, msg, crc) + payload


class Link(asyncio.Protocol):
    """One TCP connection between two peers; frames are parsed out of a byte buffer."""

    def __init__(self, node: Node, remote: int | None = None) -> None:
        self.node = node
        self.remote = remote  # known at once when we dialled, after HELLO when we accepted
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.acked: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport  # asyncio sets TCP_NODELAY on TCP transports
        self.node.conns.add(self)

    def data_received(self, data: bytes) -> None:
        t = time.monotonic_ns()
        buf = self.buf
        buf += data
        size = HEADER.size
        unpack = HEADER.unpack_from
        node = self.node
        pos, end_all = 0, len(buf)
        while end_all - pos >= size:
            length, kind, ttl, origin, sender, msg, crc = unpack(buf, pos)
            end = pos + size + length
            if end > end_all:
                break
            if kind == DATA:
                node.on_data(t, ttl, origin, sender, msg, crc, bytes(buf[pos + size : end]))
            elif kind == HELLO:
                node.on_hello(self, sender)
            elif kind == ACK:
                node.on_ack(self, sender)
            pos = end
            if self.transport is None or self.transport.is_closing():
                break
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.node.on_lost(self)

    def write(self, data: bytes) -> bool:
        tr = self.transport
        if tr is None or tr.is_closing():
            return False
        tr.write(data)
        return True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Node:
    """One peer: a listening socket, links to other peers, protocol state and records."""

    def __init__(self, worker: Worker, peer_id: int) -> None:
        self.worker = worker
        self.id = peer_id
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: dict[int, Link] = {}
        self.conns: set[Link] = set()
        self.left = False
        self.mode = "mesh"
        self.fanout = 0
        self.ttl = 1
        self.rng = random.Random(0)
        self.seen: set[int] = set()
        self.reset(0)

    # ------------------------------------------------------------------ records

    def reset(self, messages: int) -> None:
        """Fresh records for a phase of ``messages`` messages."""
        self.first = [0] * messages
        self.count = [0] * messages
        self.corrupt: list[int] = []
        self.sent: dict[int, int] = {}
        self.frames_sent = 0
        self.send_errors = 0
        self.down: list[list[int | None]] = []
        self.join_failures = 0

    def report(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "first": self.first,
            "count": self.count,
            "corrupt": self.corrupt,
            "sent": self.sent,
            "frames_sent": self.frames_sent,
            "send_errors": self.send_errors,
            "down": self.down,
            "join_failures": self.join_failures,
        }

    # ---------------------------------------------------------------- membership

    async def listen(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Link(self), host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def dial(self, host: str, peer: int, port: int, timeout_s: float) -> bool:
        """Connect to ``peer`` and wait for its ACK; False if it is not there."""
        loop = asyncio.get_running_loop()
        link = Link(self, remote=peer)
        link.acked = loop.create_future()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: link, host, port), timeout_s)
            link.write(frame(HELLO, 0, self.id, self.id, 0))
            await asyncio.wait_for(link.acked, timeout_s)
        except (OSError, TimeoutError, ConnectionError):
            link.abort()
            return False
        return True

    def on_hello(self, link: Link, sender: int) -> None:
        if self.left:
            link.abort()
            return
        link.remote = sender
        self._register(sender, link)
        link.write(frame(ACK, 0, self.id, self.id, 0))

    def on_ack(self, link: Link, sender: int) -> None:
        self._register(sender, link)
        if link.acked is not None and not link.acked.done():
            link.acked.set_result(None)

    def _register(self, peer: int, link: Link) -> None:
        old = self.links.get(peer)
        self.links[peer] = link
        if old is not None and old is not link:
            old.abort()

    def on_lost(self, link: Link) -> None:
        self.conns.discard(link)
        if link.remote is not None and self.links.get(link.remote) is link:
            del self.links[link.remote]
        if link.acked is not None and not link.acked.done():
            link.acked.set_exception(ConnectionError("connection closed before ACK"))

    def leave(self) -> None:
        """Go away as a crashed peer does: stop listening and reset every connection."""
        if self.left:
            return
        self.left = True
        self.down.append([time.monotonic_ns(), None])
        if self.server is not None:
            self.server.close()
            self.server = None
        for link in list(self.conns):
            link.abort()
        self.links.clear()
        self.seen = set()

    async def join(self, host: str, table: Mapping[int, int], timeout_s: float) -> None:
        """Come back on the same port with fresh protocol state and link to every peer."""
        if not self.left:
            return
        self.seen = set()
        try:
            await self.listen(host)
        except OSError:
            self.join_failures += 1
            return
        self.left = False
        others = [p for p in table if p != self.id]
        await asyncio.gather(*(self.dial(host, p, table[p], timeout_s) for p in others))
        if self.down and self.down[-1][1] is None:
            self.down[-1][1] = time.monotonic_ns()

    # ------------------------------------------------------------------ messages

    def _targets(self, exclude: tuple[int, ...]) -> list[int]:
        candidates = [p for p in sorted(self.links) if p not in exclude]
        if self.fanout >= len(candidates):
            return candidates
        return self.rng.sample(candidates, self.fanout)

    def _send(self, targets: list[int], data: bytes) -> None:
        links = self.links
        for p in targets:
            if links[p].write(data):
                self.frames_sent += 1
            else:
                self.send_errors += 1

    def originate(self, msg: int, payload: bytes) -> None:
        """Broadcast ``msg``: to every link (mesh) or to ``fanout`` of them (gossip)."""
        if self.left:
            return
        if self.mode == "mesh":
            targets = sorted(self.links)
            data = frame(DATA, 0, self.id, self.id, msg, payload)
        else:
            self.seen.add(msg)
            targets = self._targets((self.id,))
            data = frame(DATA, self.ttl, self.id, self.id, msg, payload)
        self.sent[msg] = time.monotonic_ns()
        self._send(targets, data)

    def on_data(
        self, t: int, ttl: int, origin: int, sender: int, msg: int, crc: int, payload: bytes
    ) -> None:
        if self.left or not 0 <= msg < len(self.first):
            return
        self.worker.receipts += 1
        if zlib.crc32(payload) != crc:
            self.corrupt.append(msg)
            return
        self.count[msg] += 1
        if not self.first[msg]:
            self.first[msg] = t
            self.worker.received += 1
        if self.mode != "gossip" or msg in self.seen:
            return
        self.seen.add(msg)
        if ttl > 1:
            targets = self._targets((sender, origin))
            self._send(targets, frame(DATA, ttl - 1, origin, self.id, msg, payload))


class Worker:
    """The process: its peers, the command loop on stdin, replies on stdout."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.host = "127.0.0.1"
        self.seed = 0
        self.phase = 0
        self.table: dict[int, int] = {}
        self.timeout_s = 5.0
        self.received = 0  # first receipts, all peers of this process
        self.receipts = 0  # every DATA frame that arrived, corrupt ones included
        self.handles: list[asyncio.TimerHandle] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def cmd_init(self, req: Mapping[str, Any]) -> dict[str, Any]:
        self.host = str(req["host"])
        self.seed = int(req["seed"])
        self.timeout_s = float(req.get("timeout_s", 5.0))
        for p in req["peers"]:
            node = Node(self, int(p))
            await node.listen(self.host)
            self.nodes[node.id] = node
        return {"ports": {str(n.id): n.port for n in self.nodes.values()}}

    async def cmd_setup(self, req: Mapping[str, Any]) -> dict[str, Any]:
        self._cancel()
        self.table = {int(k): int(v) for k, v in req["table"].items()}
        self.phase = int(req["phase"])
        self.received = self.receipts = 0
        for node in self.nodes.values():
            if node.left:  # listening again before any peer dials (the ``link`` command)
                await node.listen(self.host)
                node.left = False
            node.mode = str(req["mode"])
            node.fanout = int(req["fanout"])
            node.ttl = int(req["ttl"])
            node.rng = random.Random(self.seed * 7_919 + self.phase * 65_537 + node.id)
            node.seen = set()
            node.reset(int(req["messages"]))
        return {}

    async def cmd_link(self, req: Mapping[str, Any]) -> dict[str, Any]:
        """Each peer dials the higher-numbered peers it has no link to, so no pair races."""
        dials = [
            node.dial(self.host, p, self.table[p], self.timeout_s)
            for node in self.nodes.values()
            for p in self.table
            if p > node.id and p not in node.links
        ]
        ok = await asyncio.gather(*dials)
        await asyncio.sleep(0)  # let handshakes that completed deliver their last frames
        return {
            "links": {str(n.id): len(n.links) for n in self.nodes.values()},
            "failed": sum(1 for x in ok if not x),
        }

    async def cmd_run(self, req: Mapping[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        t0 = int(req["t0_ns"])
        size = int(req["payload_bytes"])
        for msg, origin, offset in req["messages"]:
            node = self.nodes[int(origin)]
            payload = payload_for(self.seed, self.phase, int(msg), size)
            when = (t0 + int(offset)) / 1e9
            self.handles.append(loop.call_at(when, node.originate, int(msg), payload))
        for peer, offset, kind in req["churn"]:
            node = self.nodes[int(peer)]
            when = (t0 + int(offset)) / 1e9
            if kind == "leave":
                self.handles.append(loop.call_at(when, node.leave))
            else:
                self.handles.append(loop.call_at(when, self._spawn_join, node))
        return {"scheduled": len(self.handles)}

    def _spawn_join(self, node: Node) -> None:
        task = asyncio.ensure_future(node.join(self.host, self.table, self.timeout_s))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def cmd_progress(self, req: Mapping[str, Any]) -> dict[str, Any]:
        sent = [t for n in self.nodes.values() for t in n.sent.values()]
        return {
            "received": self.received,
            "receipts": self.receipts,
            "frames": sum(n.frames_sent for n in self.nodes.values()),
            "sent": len(sent),
            "last_sent_ns": max(sent, default=0),
            "links": {str(n.id): len(n.links) for n in self.nodes.values()},
        }

    async def cmd_report(self, req: Mapping[str, Any]) -> dict[str, Any]:
        self._cancel()
        return {"peers": [n.report() for n in self.nodes.values()]}

    def _cancel(self) -> None:
        for h in self.handles:
            h.cancel()
        self.handles = []

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        out = sys.stdout.buffer
        while line := await reader.readline():
            if not line.strip():
                continue
            req = json.loads(line)
            handler = getattr(self, f"cmd_{req['cmd']}")
            try:
                reply = {"ok": True, **(await handler(req))}
            except Exception as exc:  # reported to the controller, which records it
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            out.flush()
        self._cancel()
        for node in self.nodes.values():
            node.leave()


def raise_fd_limit(needed: int) -> None:
    """Lift the soft open-file limit towards the hard one when the links need more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main() -> int:
    """Serve commands until stdin closes."""
    raise_fd_limit(int(os.environ.get("FORGEBENCH_P2P_FDS", "4096")))
    asyncio.run(Worker().serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
