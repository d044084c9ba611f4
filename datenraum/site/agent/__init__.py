"""The site agent (`datenraum site serve`): answers the hub's tasks from the site store, connecting only
outward.

- `loop`: the `Agent` (long-poll, backoff, heartbeat, answering and posting tasks) and `serve`, which
  runs one site's agent until stopped; `serve(counter=...)` takes the function that counts (the store's
  feasibility count unless a development tool gives another).
- `config`: the operator's TOML settings (`AgentConfig`, `load_config`).
- `state`: what the agent keeps between runs: its lock, the site secret and the task journal.
"""

from datenraum.site.agent.loop import serve

__all__ = ["serve"]
