"""The full channel stack over real sockets (socket pair and loopback TCP), with threads."""

import os
import random
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from p2p import limits
from p2p.transport import ChannelClosed, TcpChannel, secure_stack
from p2p.wire import FLAG_COMPRESSED, Frame, FrameTooLarge, TruncatedFrame, encode_frame

DEADLINE = 60.0  # seconds any single socket operation or thread may take
KEY_AB, KEY_BA = os.urandom(32), os.urandom(32)
LARGEST_SEALED_PAYLOAD = limits.MAX_FRAME - 2 - 16  # a frame's payload plus the GCM tag


def loopback_tcp_pair():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=DEADLINE)
        server, _ = listener.accept()
    return client, server


def unix_pair():
    return socket.socketpair()


@pytest.fixture(params=[unix_pair, loopback_tcp_pair], ids=["socketpair", "tcp"])
def sockets(request):
    a, b = request.param()
    for sock in (a, b):
        sock.settimeout(DEADLINE)
    yield a, b
    a.close()
    b.close()


def text_like(size: int) -> bytes:
    words = b"alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu\n"
    return (words * (size // len(words) + 1))[:size]


def traffic(seed: int) -> list:
    """1000 small frames, a 16 MiB random and a 16 MiB text frame, random sizes."""
    rng = random.Random(seed)
    frames = [Frame(rng.randrange(256), 0, rng.randbytes(rng.randrange(300))) for _ in range(1000)]
    frames.append(Frame(5, 0, os.urandom(LARGEST_SEALED_PAYLOAD)))
    frames.append(Frame(5, 0, text_like(LARGEST_SEALED_PAYLOAD)))
    frames += [Frame(5, 0, os.urandom(rng.randrange(2 * limits.MiB))) for _ in range(5)]
    frames += [Frame(3, 0, text_like(rng.randrange(100, limits.MiB))) for _ in range(5)]
    return frames


def run_all(*jobs):
    """Run the jobs on threads; return their results, failing on error or deadline."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result(timeout=DEADLINE) for future in futures]


def send_all(channel, frames):
    return lambda: [channel.send(frame) for frame in frames]


def recv_n(channel, count):
    return lambda: [channel.recv() for _ in range(count)]


def test_full_stack_both_directions(sockets):
    a, b = (secure_stack(sockets[0], KEY_AB, KEY_BA), secure_stack(sockets[1], KEY_BA, KEY_AB))
    a_to_b, b_to_a = traffic(1), traffic(2)
    _, _, got_by_b, got_by_a = run_all(send_all(a, a_to_b), send_all(b, b_to_a),
                                       recv_n(b, len(a_to_b)), recv_n(a, len(b_to_a)))
    assert got_by_b == a_to_b
    assert got_by_a == b_to_a
    a.close()
    with pytest.raises(ChannelClosed):
        b.recv()


def test_full_stack_with_offload(sockets):
    with ThreadPoolExecutor(2) as pool:
        def offload(fn):
            return pool.submit(fn).result()
        a = secure_stack(sockets[0], KEY_AB, KEY_BA, offload=offload)
        b = secure_stack(sockets[1], KEY_BA, KEY_AB, offload=offload)
        frames = [Frame(5, 0, text_like(3 * limits.MiB)), Frame(5, 0, os.urandom(limits.MiB)),
                  Frame(1, 0, b"small")]
        _, received = run_all(send_all(a, frames), recv_n(b, len(frames)))
    assert received == frames


def test_compressed_frames_are_smaller_on_the_wire(sockets):
    stack, raw = secure_stack(sockets[0], KEY_AB, KEY_BA), TcpChannel(sockets[1])
    payload = text_like(limits.MiB)
    stack.send(Frame(5, 0, payload))
    on_wire = raw.recv()
    assert on_wire.flags & FLAG_COMPRESSED and len(on_wire.payload) < len(payload) // 5


def test_clean_eof_between_frames_is_channel_closed(sockets):
    left, right = TcpChannel(sockets[0]), TcpChannel(sockets[1])
    left.send(Frame(1, 0, b"last words"))
    left.close()
    assert right.recv() == Frame(1, 0, b"last words")
    with pytest.raises(ChannelClosed):
        right.recv()


def test_eof_mid_frame_is_truncated_frame(sockets):
    sockets[0].sendall(encode_frame(Frame(1, 0, b"complete")) + encode_frame(Frame(1, 0, b"cut"))[:-1])
    sockets[0].shutdown(socket.SHUT_WR)
    right = TcpChannel(sockets[1])
    assert right.recv() == Frame(1, 0, b"complete")
    with pytest.raises(TruncatedFrame):
        right.recv()


def test_hostile_length_is_rejected_on_its_four_bytes(sockets):
    sockets[0].sendall(b"\xff\xff\xff\xff")  # and nothing else: no need to wait for 4 GiB
    with pytest.raises(FrameTooLarge):
        TcpChannel(sockets[1]).recv()


def test_sending_more_than_max_frame_is_a_local_error(sockets):
    with pytest.raises(ValueError):
        TcpChannel(sockets[0], max_frame=1000).send(Frame(1, 0, bytes(999)))


def test_close_wakes_a_blocked_recv(sockets):
    channel = TcpChannel(sockets[1])
    outcome = []
    started = threading.Event()

    def reader():
        started.set()
        try:
            channel.recv()
        except ChannelClosed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    assert started.wait(DEADLINE)
    channel.close()
    thread.join(DEADLINE)
    assert not thread.is_alive() and len(outcome) == 1
    with pytest.raises(ChannelClosed):
        channel.send(Frame(1, 0, b""))
