"""The contract between prismkit and a plugin's backend code."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"


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
        """limits returns Describe.limits: max_key_bytes, max_value_bytes, ... (0: none)."""
        return {}

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
