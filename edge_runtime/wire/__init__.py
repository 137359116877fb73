"""Protocol v1 on the wire: frame coding and validation, every ZeroMQ socket, CURVE keys."""
