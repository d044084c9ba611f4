"""End-to-end fault tests of the federation: a real hub and real site agents as processes on 127.0.0.1."""
