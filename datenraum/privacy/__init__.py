"""Disclosure control shared by sites and hub: count obfuscation, thresholds, quotas (federation issue).

Imports nothing from `site` or `hub`, so both can apply the same rules.
"""
