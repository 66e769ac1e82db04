"""Typed messages: every type round-trips; bad payloads raise only WireErrors."""

import os

import pytest
import ujson
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import limits
from p2p.wire import (FLAG_COMPRESSED, FLAG_ENCRYPTED, BlockData, BlockRequest, BlockRequests, BlocksData,
                      BlockStatus,
                      Bye, Error, Events, Frame, HandshakeAuth, HandshakeHello, Hello,
                      Have, ListReply, ListRequest, MalformedMessage, MsgType, Neighbors, Ping, Pong, Summary,
                      UnknownMessageType, WireError, decode_message, encode_message)
from p2p.wire.messages import CODECS, JsonCodec, event_batches

FUZZ_EXAMPLES = int(os.environ.get("P2P_FUZZ_EXAMPLES", "200"))

u8, u16, u32, u64 = (st.integers(0, (1 << bits) - 1) for bits in (8, 16, 32, 64))
texts = st.text(max_size=40)  # hypothesis never generates lone surrogates here
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | texts
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8)
json_objects = st.dictionaries(texts, json_values, max_size=5)
hashes = st.binary(min_size=32, max_size=32)

block_data = st.one_of(
    st.builds(BlockData, req_id=u32, status=st.just(BlockStatus.OK), hash=hashes, data=st.binary(max_size=500)),
    st.builds(BlockData, req_id=u32, status=st.just(BlockStatus.NOT_FOUND), hash=hashes, data=st.just(b"")))

MESSAGES = {
    MsgType.HELLO: st.builds(Hello, name=texts, port=u16, version=u16),
    MsgType.SUMMARY: st.builds(Summary, vv=st.dictionaries(texts, u64, max_size=8)),
    MsgType.EVENTS: st.builds(Events, events=st.lists(json_objects, max_size=5).map(tuple)),
    MsgType.BLOCK_REQUEST: st.builds(BlockRequest, req_id=u32, size=u32, hash=hashes),
    MsgType.BLOCK_DATA: block_data,
    MsgType.BLOCK_REQUESTS: st.builds(BlockRequests, requests=st.lists(
        st.builds(BlockRequest, req_id=u32, size=st.integers(0, limits.SMALL_BLOCK), hash=hashes),
        min_size=1, max_size=limits.MAX_BLOCKS_PER_FRAME).map(tuple)),
    MsgType.BLOCKS_DATA: st.builds(BlocksData, blocks=st.lists(block_data, min_size=1, max_size=6).map(tuple)),
    MsgType.PING: st.builds(Ping, nonce=u64),
    MsgType.PONG: st.builds(Pong, nonce=u64),
    MsgType.ERROR: st.builds(Error, code=texts, message=texts),
    MsgType.BYE: st.builds(Bye, reason=texts),
    MsgType.LIST_REQUEST: st.builds(ListRequest, req_id=u32, path=texts),
    MsgType.LIST_REPLY: st.builds(ListReply, req_id=u32,
                                  entries=st.lists(json_objects, max_size=5).map(tuple)),
    MsgType.NEIGHBORS: st.builds(Neighbors, ids=st.lists(texts, max_size=8).map(tuple)),
    MsgType.HAVE: st.builds(Have, vv=st.dictionaries(texts, u64, max_size=8), files=u64, bytes=u64),
    MsgType.HANDSHAKE_HELLO: st.builds(HandshakeHello, version=u8, ephemeral=hashes,
                                       random=hashes),
    MsgType.HANDSHAKE_AUTH: st.builds(HandshakeAuth, identity=hashes,
                                      signature=st.binary(min_size=64, max_size=64)),
}


def test_every_type_code_has_a_strategy():
    assert set(MESSAGES) == set(CODECS) == set(MsgType)


@pytest.mark.parametrize("code", list(MsgType), ids=lambda code: code.name)
@settings(max_examples=FUZZ_EXAMPLES // 2, deadline=None)
@given(data=st.data())
def test_fuzz_every_message_round_trips(code, data):
    msg = data.draw(MESSAGES[code])
    frame = encode_message(msg)
    assert frame.type == code and frame.flags == 0
    assert decode_message(frame) == msg
    assert decode_message(Frame(frame.type, 0, bytearray(frame.payload))) == msg


def test_binary_layouts_are_byte_exact():
    h = bytes(range(32))
    assert encode_message(BlockRequest(1, 2, h)).payload == b"\0\0\0\1\0\0\0\2" + h
    assert encode_message(BlockData(7, BlockStatus.OK, h, b"xy")).payload == b"\0\0\0\7\0" + h + b"xy"
    assert encode_message(BlockRequests((BlockRequest(1, 2, h), BlockRequest(3, 4, h)))).payload == \
        b"\0\2" + b"\0\0\0\1\0\0\0\2" + h + b"\0\0\0\3\0\0\0\4" + h
    assert encode_message(BlocksData((BlockData(7, BlockStatus.OK, h, b"xy"),
                                      BlockData(8, BlockStatus.NOT_FOUND, h, b"")))).payload == \
        b"\0\2" + b"\0\0\0\x27" + b"\0\0\0\7\0" + h + b"xy" + b"\0\0\0\x25" + b"\0\0\0\x08\1" + h
    assert encode_message(Ping(1)).payload == b"\0" * 7 + b"\1"
    assert encode_message(HandshakeHello(1, h, h)).payload == b"P2P\x01" + h + h
    assert encode_message(HandshakeAuth(h, h + h)).payload == h + h + h


def test_json_payload_is_compact_utf8():
    assert encode_message(Hello("caf\u00e9/x", 9998, 1)).payload == \
        '{"name":"caf\u00e9/x","port":9998,"version":1}'.encode()


def frame_of(code, payload):
    return Frame(int(code), 0, payload.encode() if isinstance(payload, str) else payload)


MALFORMED = [
    (MsgType.HELLO, '{"name":"a","port":1}'),                        # missing key
    (MsgType.HELLO, '{"name":"a","port":1,"version":1,"x":0}'),      # extra key
    (MsgType.HELLO, '{"name":1,"port":1,"version":1}'),              # wrong type
    (MsgType.HELLO, '{"name":"a","port":true,"version":1}'),         # bool for int
    (MsgType.HELLO, '{"name":"a","port":65536,"version":1}'),        # out of range
    (MsgType.HELLO, '{"name":"a","port":-1,"version":1}'),
    (MsgType.HELLO, '{"name":"a","port":1.0,"version":1}'),          # float for int
    (MsgType.HELLO, '{"name":"\\ud800","port":1,"version":1}'),      # lone surrogate
    (MsgType.HELLO, '["name","port","version"]'),                    # not an object
    (MsgType.HELLO, '{"name":"a","port":1,"version":1'),             # broken JSON
    (MsgType.HELLO, '{"name":"a","port":1,"version":1} {}'),         # trailing data
    (MsgType.HELLO, b'{"name":"\xff","port":1,"version":1}'),        # invalid UTF-8
    (MsgType.HELLO, ''),
    (MsgType.SUMMARY, '{"vv":{"a":-1}}'),
    (MsgType.SUMMARY, '{"vv":{"a":18446744073709551616}}'),
    (MsgType.SUMMARY, '{"vv":{"a":"1"}}'),
    (MsgType.SUMMARY, '{"vv":[]}'),
    (MsgType.SUMMARY, '{"vv":{"a":NaN}}'),
    (MsgType.EVENTS, '{"events":{}}'),
    (MsgType.EVENTS, '{"events":[1]}'),
    (MsgType.EVENTS, ujson.dumps({"events": [{}] * (limits.MAX_EVENTS_PER_BATCH + 1)})),
    (MsgType.LIST_REQUEST, '{"req_id":4294967296,"path":"/"}'),
    (MsgType.LIST_REPLY, '{"req_id":1,"entries":[[]]}'),
    (MsgType.ERROR, '{"code":"x","message":null}'),
    (MsgType.BYE, '{"reason":["x"]}'),
    (MsgType.BLOCK_REQUEST, b"\0" * 39),                             # short
    (MsgType.BLOCK_REQUEST, b"\0" * 41),                             # long
    (MsgType.BLOCK_DATA, b"\0" * 36),                                # short header
    (MsgType.BLOCK_DATA, b"\0\0\0\1\2" + b"\0" * 32),                # unknown status
    (MsgType.BLOCK_DATA, b"\0\0\0\1\1" + b"\0" * 32 + b"data"),      # data with NOT_FOUND
    (MsgType.BLOCK_REQUESTS, b""),                                     # no count
    (MsgType.BLOCK_REQUESTS, b"\0\0"),                                 # no request
    (MsgType.BLOCK_REQUESTS, b"\0\2" + b"\0" * 40),                    # fewer than counted
    (MsgType.BLOCK_REQUESTS, b"\0\1" + b"\0" * 41),                    # bytes after the last
    (MsgType.BLOCK_REQUESTS, (limits.MAX_BLOCKS_PER_FRAME + 1).to_bytes(2, "big") + b"\0" * 40
     * (limits.MAX_BLOCKS_PER_FRAME + 1)),                             # too many
    (MsgType.BLOCK_REQUESTS, b"\0\1\0\0\0\1" + (limits.SMALL_BLOCK + 1).to_bytes(4, "big") + b"\0" * 32),  # large
    (MsgType.BLOCKS_DATA, b"\0\1"),                                    # no length
    (MsgType.BLOCKS_DATA, b"\0\1\0\0\0\x26" + b"\0" * 37),           # length past the end
    (MsgType.BLOCKS_DATA, b"\0\1\0\0\0\x24" + b"\0" * 36),           # an item shorter than BlockData's head
    (MsgType.BLOCKS_DATA, b"\0\1\0\0\0\x29\0\0\0\1\1" + b"\0" * 32 + b"data"),  # data with NOT_FOUND
    (MsgType.BLOCKS_DATA, b"\0\1\0\0\0\x25" + b"\0" * 37 + b"x"),    # bytes after the last
    (MsgType.PING, b"\0" * 7),
    (MsgType.PONG, b"\0" * 9),
    (MsgType.HANDSHAKE_HELLO, b"P2Q\x01" + b"\0" * 64),              # bad magic
    (MsgType.HANDSHAKE_HELLO, b"P2P\x01" + b"\0" * 63),
    (MsgType.HANDSHAKE_AUTH, b"\0" * 95),
]


@pytest.mark.parametrize("code,payload", MALFORMED)
def test_malformed_payloads(code, payload):
    with pytest.raises(MalformedMessage):
        decode_message(frame_of(code, payload))


def test_events_at_the_batch_limit_are_accepted():
    events = tuple({"i": i} for i in range(limits.MAX_EVENTS_PER_BATCH))
    assert decode_message(encode_message(Events(events))).events == events


@pytest.mark.parametrize("code", sorted(set(range(256)) - set(CODECS)))
def test_unknown_type(code):
    with pytest.raises(UnknownMessageType):
        decode_message(Frame(code, 0, b"{}"))


@pytest.mark.parametrize("flags", [FLAG_COMPRESSED, FLAG_ENCRYPTED, FLAG_COMPRESSED | FLAG_ENCRYPTED])
def test_frame_with_transport_flags_left_is_malformed(flags):
    frame = encode_message(Ping(1))
    with pytest.raises(MalformedMessage):
        decode_message(Frame(frame.type, flags, frame.payload))


@pytest.mark.parametrize("msg", [
    Hello("a", 65536, 1), Hello("a", True, 1), Hello("\ud800", 1, 1),
    Summary({"a": -1}), Events(({},) * (limits.MAX_EVENTS_PER_BATCH + 1)), Events(([],)),
    BlockRequest(1, 2, b"short"), BlockRequest(1 << 32, 2, bytes(32)),
    BlockData(1, 2, bytes(32), b""), BlockData(1, BlockStatus.NOT_FOUND, bytes(32), b"x"),
    BlockRequests(()), BlockRequests((BlockRequest(1, limits.SMALL_BLOCK + 1, bytes(32)),)),
    BlockRequests((BlockRequest(1, 2, bytes(32)),) * (limits.MAX_BLOCKS_PER_FRAME + 1)),
    BlockRequests((Ping(1),)), BlocksData((BlockData(1, 0, bytes(32), bytes(limits.SMALL_BLOCK + 1)),)),
    Ping(-1), Pong(1 << 64), HandshakeHello(256, bytes(32), bytes(32)),
    HandshakeAuth(bytes(32), bytes(63)),
])
def test_encoding_an_invalid_message_is_a_local_error(msg):
    with pytest.raises(ValueError):
        encode_message(msg)


def test_encoding_a_non_message_is_a_type_error():
    with pytest.raises(TypeError):
        encode_message(Frame(1, 0, b""))


def decodes_or_wire_error(frame):
    try:
        decode_message(frame)
    except WireError:
        pass


@settings(max_examples=FUZZ_EXAMPLES * 2, deadline=None)
@given(code=st.sampled_from(sorted(CODECS)), payload=st.binary(max_size=200))
def test_fuzz_random_payloads_raise_only_wire_errors(code, payload):
    decodes_or_wire_error(Frame(code, 0, payload))


@settings(max_examples=FUZZ_EXAMPLES * 2, deadline=None)
@given(data=st.data(), code=st.sampled_from(sorted(CODECS)))
def test_fuzz_mutated_valid_payloads_raise_only_wire_errors(data, code):
    payload = bytearray(encode_message(data.draw(MESSAGES[code])).payload)
    for _ in range(data.draw(st.integers(1, 4))):
        if payload and data.draw(st.booleans()):
            position = data.draw(st.integers(0, len(payload) - 1))
            payload[position] = data.draw(st.integers(0, 255))
        else:
            cut = data.draw(st.integers(0, len(payload)))
            payload = payload[:cut] + data.draw(st.binary(max_size=4)) + payload[cut:]
    decodes_or_wire_error(Frame(code, 0, bytes(payload)))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(code=st.sampled_from(sorted(code for code, codec in CODECS.items()
                                   if isinstance(codec, JsonCodec))),
       value=json_values)
def test_fuzz_json_values_of_any_shape_raise_only_wire_errors(code, value):
    try:
        payload = ujson.dumps(value).encode()
    except (OverflowError, ValueError):
        return
    decodes_or_wire_error(Frame(code, 0, payload))
    if isinstance(value, dict) and value:
        fields = dict.fromkeys(CODECS[code].fields, next(iter(value.values())))
        decodes_or_wire_error(Frame(code, 0, ujson.dumps(fields).encode()))


def test_event_batches_stay_under_the_frame_limit_whatever_the_block_lists():
    """Events of files with thousands of content-defined blocks: 1,000 of them in
    one Events message would exceed MAX_FRAME, so batches are bounded in bytes too."""
    block = ["ab" * 32, 20_000]
    events = [{"path": f"photo-{i}.jpg", "blocks": [block] * (300 if i % 7 else 8000)} for i in range(1500)]
    batches = list(event_batches(events))
    assert [e for batch in batches for e in batch] == events
    for batch in batches:
        payload = encode_message(Events(events=batch)).payload
        assert len(batch) <= limits.MAX_EVENTS_PER_BATCH and len(payload) <= limits.EVENTS_BATCH_BYTES + 2
        assert len(decode_message(Frame(MsgType.EVENTS, 0, payload)).events) == len(batch)
    assert list(event_batches([{"blocks": [block] * 100_000}])) == [({"blocks": [block] * 100_000},)]  # alone
    assert list(event_batches([])) == []


def test_a_block_alone_in_its_frame_is_decoded_as_a_view_of_the_payload_not_a_copy():
    data = os.urandom(limits.SMALL_BLOCK + 1)
    payload = bytearray(encode_message(BlockData(req_id=7, status=0, hash=bytes(32), data=data)).payload)
    msg = decode_message(Frame(MsgType.BLOCK_DATA, 0, payload))
    assert msg.data == data and isinstance(msg.data, memoryview) and msg.data.obj is payload
    assert encode_message(msg).payload == encode_message(BlockData(7, 0, bytes(32), data)).payload   # sent again alike
