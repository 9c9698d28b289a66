from tests.server_harness import make_server, server

__all__ = ["make_server", "server"]
