"""Serving the hub with uvicorn: `serve(config, host, port, workers)`, for `datenraum hub serve`.

With `workers` > 1, uvicorn starts that many worker processes on one listening socket (the kernel
hands each new connection to one of them) and starts a worker again if one dies. The workers share
what must be shared through PostgreSQL: the data, the long-poll wake-ups (`broadcast`), the sweep's
turn (`sweep.SweepTurn`), the throttling counters (failed sign-ins, quotas, the sites' daily tasks,
all counted from database rows already). SQLite serves one process: several would wait for each other's
write locks in SQLite's busy handler, and nothing would wake their long-polls, so they are refused.

uvicorn starts each worker as a fresh Python process that builds its app by calling `worker_app`; the
settings (read once, by the parent, from file, environment and options) and the single sign-on cookies'
key (made once, so that a sign-in begun at one worker ends at another) reach it in the environment.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from fastapi import FastAPI

from datenraum.hub.config import ConfigError, HubConfig

__all__ = ["CONFIG_ENV", "SEAL_KEY_ENV", "check_workers", "serve", "worker_app"]

# Not under the settings' DATENRAUM_HUB_ prefix, where they would read as settings.
CONFIG_ENV = "DATENRAUM_WORKER_HUB_CONFIG"
SEAL_KEY_ENV = "DATENRAUM_WORKER_SEAL_KEY"


def check_workers(config: HubConfig, workers: int) -> None:
    """Raise ConfigError unless `workers` processes can serve the configured database."""
    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {workers}")
    if workers > 1 and not config.database_url.startswith("postgresql"):
        raise ConfigError(
            f"--workers {workers}: several hub workers need PostgreSQL, but database_url is "
            f"{config.database_url.split(':', 1)[0]}; SQLite is served by one process (--workers 1)"
        )


def serve(config: HubConfig, host: str, port: int, workers: int = 1) -> None:
    """Serve the hub (migrated already) until SIGINT or SIGTERM."""
    import uvicorn

    from datenraum.hub.portal.sso import new_seal_key

    check_workers(config, workers)
    os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
    os.environ[SEAL_KEY_ENV] = new_seal_key().hex()
    # X-Forwarded-For is believed only from the proxies configured (uvicorn would trust 127.0.0.1 by
    # default, so that anyone reaching the hub over loopback could choose their address).
    trusted = config.trusted_proxies.strip()
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Long-polls last up to a minute; on shutdown they are cut short, and the tasks they were about
        # to hand out are offered again when their lease runs out.
        timeout_graceful_shutdown=5,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
    )


def worker_app() -> FastAPI:
    """The app of one worker process, from what `serve` left in the environment."""
    from datenraum.hub.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn.access").addFilter(_routine_site_traffic_left_out)
    config = HubConfig(**json.loads(os.environ[CONFIG_ENV]))
    return create_app(config, seal_key=bytes.fromhex(os.environ[SEAL_KEY_ENV]))


def _routine_site_traffic_left_out(record: logging.LogRecord) -> bool:
    """No access-log line for an agent's successful long-poll or result: two per site and analysis
    round, a tenth of the hub's time in a round over 37 sites (bench_analysis), and each task's fate
    is in the database anyway. Their failures, and every other request, are logged as before."""
    from datenraum.protocol.messages import API_PREFIX

    args = record.args
    if not (isinstance(args, tuple) and len(args) == 5):  # uvicorn's (client, method, path, version, status)
        return True
    path, status = str(args[2]), args[4]
    routine = path.startswith(f"{API_PREFIX}/tasks") and isinstance(status, int) and status < 400
    return not routine
