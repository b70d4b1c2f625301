"""The wire: message parsing (pure) and the ZeroMQ adapter (the only zmq importer)."""
