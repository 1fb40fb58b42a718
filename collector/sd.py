"""`GET /api/v1/sd`: Prometheus HTTP service discovery of every enrolled agent's /metrics.

The answer is Prometheus' `http_sd_config` format: a JSON list of target groups
`{"targets": ["HOST:PORT"], "labels": {...}}`, one group per agent (so each carries its own
labels). Every enrolled, non-revoked agent is listed, silent ones included: Prometheus'
`up == 0` for a listed agent is how a dead agent shows.

Where an agent listens: the host is the address the agent last pushed from (the store's
`agents.last_address`), the port is `service_discovery.port` of the collector config (the
fleet's `agent.listen` port, 9810 by default); `service_discovery.targets` overrides both for
one agent (NAT, a proxy in between, another port). An agent that never pushed and has no
override has no address yet and is left out. The agent is not asked for its address on the
wire: its `listen` is often `0.0.0.0:9810`, whose host says nothing, and a new field in every
push would be a wire-format change for one port number that is the same across a fleet.

Labels: `agent` (the agent id, stable across address changes) and, for relabelling,
`__meta_wardwatch_agent_id`, `__meta_wardwatch_address_source` (`pushed` or `configured`),
`__meta_wardwatch_last_seen` (RFC 3339, empty if never) and `__meta_wardwatch_enrolled_at`.

Like the other GET endpoints of the API it needs no token (the collector listens on
loopback, or on the network only with TLS; put it behind the hospital's proxy auth if the
list of agent addresses is sensitive there).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from collector.app import CONFIG_KEY, STORE_KEY
from collector.config import ServiceDiscoveryConfig


def target_of(agent: dict[str, Any], config: ServiceDiscoveryConfig) -> tuple[str, str] | None:
    """(HOST:PORT, source) for an agent row of the store, or None when it has no address."""
    configured = config.targets.get(agent["id"])
    if configured is not None:
        return configured, "configured"
    address = agent.get("last_address")
    if not address:
        return None
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{config.port}", "pushed"


def target_groups(agents: list[dict[str, Any]], config: ServiceDiscoveryConfig
                  ) -> list[dict[str, Any]]:
    groups = []
    for agent in agents:
        if agent.get("revoked_at") is not None:
            continue
        found = target_of(agent, config)
        if found is None:
            continue
        target, source = found
        last_seen = agent.get("last_seen_at")
        groups.append({"targets": [target], "labels": {
            "agent": agent["id"],
            "__meta_wardwatch_agent_id": agent["id"],
            "__meta_wardwatch_address_source": source,
            "__meta_wardwatch_last_seen": last_seen.isoformat() if last_seen else "",
            "__meta_wardwatch_enrolled_at": agent["created_at"].isoformat(),
        }})
    return groups


async def service_discovery(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY].service_discovery
    agents = await request.app[STORE_KEY].list_agents()
    return web.json_response(target_groups(agents, config))
