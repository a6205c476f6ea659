"""Errors a driver raises; the machinery turns them into gRPC status codes."""

import grpc


class Status(Exception):
    """Status ends a call with a gRPC status code and a message for people.

    For InvalidArgument the message starts with the field path
    ("key: must not be empty"), as PROTOCOL.md §3 and §8 ask.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ConfigError(Status):
    """ConfigError is an invalid Initialize config: InvalidArgument naming the field."""

    def __init__(self, field: str, problem: str):
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, 'config field "%s": %s' % (field, problem))
        self.field = field


def invalid(field: str, problem: str) -> Status:
    """invalid returns InvalidArgument for a request field."""
    return Status(grpc.StatusCode.INVALID_ARGUMENT, "%s: %s" % (field, problem))


def unimplemented(capability: str) -> Status:
    """unimplemented returns Unimplemented for a capability the plugin does not declare."""
    return Status(grpc.StatusCode.UNIMPLEMENTED, "%s is not declared by this plugin" % capability)


def truncate(s, limit=256) -> str:
    """truncate quotes at most limit bytes of s, with its length when cut."""
    b = s.encode("utf-8", "replace") if isinstance(s, str) else bytes(s)
    if len(b) <= limit:
        return b.decode("utf-8", "replace")
    return "%s… (%d bytes)" % (b[:limit].decode("utf-8", "ignore"), len(b))
