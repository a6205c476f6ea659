"""The contract between prismkit and a plugin's backend code."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"

#: DEFAULT_LIMITS are the limits PROTOCOL.md §8 gives as defaults; Describe
#: declares them unless a driver's limits() says otherwise. Declare real
#: ones: the suites test them (a plugin declaring keyvalue.basic must declare
#: max_key_bytes, and a max_value_bytes of at least 1 MiB).
DEFAULT_LIMITS = {
    "max_key_bytes": 1024,
    "max_value_bytes": 1 << 20,
    "max_batch_size": 1000,
    "max_page_size": 1000,
    "max_topic_bytes": 256,
    "max_payload_bytes": 1 << 20,
}


@dataclass
class Health:
    """Health is the data plane's health as the driver sees its backend."""

    status: str = HEALTHY
    message: str = ""
    details: Dict[str, str] = field(default_factory=dict)


class Driver:
    """Driver is what a plugin implements; prismkit does the rest.

    Every method runs on the plugin's one asyncio event loop: a method must not
    block it (await the backend, or run blocking calls in a thread). prismkit
    calls initialize and close one at a time (lifecycle calls are serialised)
    and data servicers only while the plugin is started.
    """

    #: name and version go into Describe.
    name = "unnamed"
    version = "0.0.0"

    def capabilities(self) -> List[str]:
        """capabilities returns the declared capabilities (PROTOCOL.md §7)."""
        return []

    def limits(self) -> Dict[str, int]:
        """limits returns Describe.limits (keys as in DEFAULT_LIMITS), the
        limits the driver's servicers enforce."""
        return dict(DEFAULT_LIMITS)

    def info(self) -> Dict[str, str]:
        """info returns free-form facts for reports (no secrets)."""
        return {}

    def slow_consumer(self) -> Optional[dict]:
        """slow_consumer returns the policy when pubsub.basic is declared:
        {"mode": "drop_oldest"|"block_publisher", "buffer_messages": n,
        "buffer_bytes": n, "block_timeout": seconds}."""
        return None

    def servicers(self) -> Dict[str, object]:
        """servicers maps a data service's full name ("prism.keyvalue.v1.KeyValue")
        to its servicer (a subclass of the generated *Servicer class)."""
        return {}

    async def initialize(self, config: dict, credentials: Dict[str, str], namespace: str) -> None:
        """initialize validates config (raise ConfigError naming the field) and
        connects to the backend (raise Status UNAVAILABLE when it cannot).
        It may be called again before Start; it then replaces the config."""

    async def health(self) -> Health:
        """health probes the backend within a short timeout."""
        return Health()

    async def close(self) -> None:
        """close releases the backend (Stop)."""
