"""Who a peer is and who may talk to it: identity keys, device ids, membership, the handshake."""
