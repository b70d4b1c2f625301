"""Heartbeats: the publisher (PUB, with acks and RTT) and the peer table and monitor (silent, recovered,
evicted)."""
