"""Feasibility: queries, the tasks they become, the sites' results."""
