"""prismkit: the protocol machinery of a Prism plugin in Python.

Everything proto/PROTOCOL.md asks of every plugin, whatever its backend: the
magic variable, the listener and the handshake line (§1, §2), gRPC health and
the Lifecycle service with its state machine (§4, §5), admission of data calls
and the standard health details, the x-request-id trailer, InvalidArgument for
a request that does not decode (§3, §11), and exit on stdin EOF, SIGTERM or
SIGINT after a drain.

A plugin supplies a Driver (see driver.py) and calls serve(driver) from its
main. Only Debian's python3-grpcio and python3-protobuf are needed; the
generated code is in ../gen (see ../gen.sh).
"""

import os
import sys

_GEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gen")
if _GEN not in sys.path:
    sys.path.insert(0, _GEN)

from .errors import Status, ConfigError, invalid, unimplemented  # noqa: E402
from .driver import DEFAULT_LIMITS, Driver, Health, HEALTHY, DEGRADED, UNHEALTHY  # noqa: E402
from .serve import serve  # noqa: E402

__all__ = [
    "Status", "ConfigError", "invalid", "unimplemented",
    "DEFAULT_LIMITS", "Driver", "Health", "HEALTHY", "DEGRADED", "UNHEALTHY",
    "serve",
]
