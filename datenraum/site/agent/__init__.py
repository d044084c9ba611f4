"""The site agent: answers the hub's tasks from the site store, connecting only outward."""

from datenraum.site.agent.loop import serve

__all__ = ["serve"]
