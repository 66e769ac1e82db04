"""Transport throughput: the channel stack next to a plain-copy baseline.

In memory (no socket): 64 MiB of text-like and of random data in 1 MiB
frames, through frame + compress + encrypt and back through decode + decrypt
+ decompress, against ``bytes(bytearray(buf))`` of the same frames. Over a
loopback TCP connection: the full stack (and TcpChannel alone) against raw
``sendall``/``recv_into``. Every baseline is measured in the same run.
``run()`` returns the rows; ``python scripts/bench_transport.py`` prints them.
"""

import os
import socket
import threading
import time
from collections import deque

from p2p import limits
from p2p.transport import Channel, CompressingChannel, EncryptedChannel, TcpChannel, secure_stack
from p2p.wire import Frame, FrameDecoder, encode_frame

TOTAL = 64 * limits.MiB
FRAME_PAYLOAD = 1 * limits.MiB
ROUNDS = 3  # best of: the machine is shared, the minimum is the honest figure
KEY_AB, KEY_BA = os.urandom(32), os.urandom(32)


def text_like(size: int) -> bytes:
    """JSON-lines-like text: compressible the way events and source files are."""
    line = '{"id": "%s:%d", "path": "projects/notes/chapter-%03d.md", "size": %d, "kind": "write"}\n'
    out = bytearray()
    i = 0
    while len(out) < size:
        out += (line % ("a1b2c3d4", i, i % 997, (i * 7919) % 100_000)).encode()
        i += 1
    return bytes(out[:size])


def frames_of(data: bytes) -> list:
    return [Frame(5, 0, data[i:i + FRAME_PAYLOAD]) for i in range(0, len(data), FRAME_PAYLOAD)]


class MemoryWire(Channel):
    """Inner channel that turns frames into wire bytes and parses them back."""

    def __init__(self):
        self.decoder = FrameDecoder()
        self.ready = deque()

    def send(self, frame):
        self.ready.extend(self.decoder.feed(encode_frame(frame)))

    def recv(self):
        return self.ready.popleft()

    def close(self):
        pass


def best_mib_per_s(action, size: int = TOTAL) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return size / limits.MiB / best


def memcpy_baseline(frames) -> float:
    return best_mib_per_s(lambda: [bytes(bytearray(frame.payload)) for frame in frames])


def in_memory_stack(frames) -> float:
    wire = MemoryWire()
    sender = CompressingChannel(EncryptedChannel(wire, KEY_AB, KEY_BA))
    receiver = CompressingChannel(EncryptedChannel(wire, KEY_BA, KEY_AB))

    def round_trip():
        for frame in frames:
            sender.send(frame)
            assert receiver.recv().payload == frame.payload

    return best_mib_per_s(round_trip)


def loopback_pair():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def over_loopback(send, receive) -> float:
    """Throughput of ``send()`` on one thread while ``receive()`` runs here."""
    def once():
        sender = threading.Thread(target=send)
        sender.start()
        receive()
        sender.join()
    return best_mib_per_s(once)


def raw_socket_baseline(frames) -> float:
    a, b = loopback_pair()
    buffer = bytearray(FRAME_PAYLOAD)

    def send():
        for frame in frames:
            a.sendall(frame.payload)

    def receive():
        remaining = TOTAL
        with memoryview(buffer) as view:
            while remaining:
                remaining -= b.recv_into(view[:min(remaining, FRAME_PAYLOAD)])

    try:
        return over_loopback(send, receive)
    finally:
        a.close()
        b.close()


def channel_over_loopback(frames, make_channel) -> float:
    a, b = loopback_pair()
    sender, receiver = make_channel(a, KEY_AB, KEY_BA), make_channel(b, KEY_BA, KEY_AB)

    def send():
        for frame in frames:
            sender.send(frame)

    def receive():
        for _ in frames:
            receiver.recv()

    try:
        return over_loopback(send, receive)
    finally:
        sender.close()
        receiver.close()


def row(scenario: str, rate: float, baseline: float) -> dict:
    return {"scenario": scenario, "MiB/s": round(rate, 1), "baseline MiB/s": round(baseline, 1),
            "ratio": round(rate / baseline, 3)}


def run(quick: bool = False) -> list:
    rows = []
    for kind, data in (("text", text_like(TOTAL)), ("random", os.urandom(TOTAL))):
        frames = frames_of(data)
        rows.append(row(f"memory stack {kind} vs memcpy", in_memory_stack(frames),
                        memcpy_baseline(frames)))
        raw = raw_socket_baseline(frames)
        rows.append(row(f"loopback full stack {kind} vs raw socket",
                        channel_over_loopback(frames, secure_stack), raw))
        if kind == "random":
            rows.append(row(f"loopback TcpChannel {kind} vs raw socket",
                            channel_over_loopback(frames, lambda sock, *_: TcpChannel(sock)), raw))
    return rows


def main() -> None:
    rows = run()
    headers = list(rows[0])
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths)))


if __name__ == "__main__":
    main()
