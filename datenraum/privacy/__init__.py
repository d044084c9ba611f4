"""Disclosure control shared by sites and hub: count obfuscation, thresholds, quotas (federation issue).

Modules: `counts` (obfuscation, thresholds), `cells`, `aggregation`, `analysis` (the rules of federated
analysis), `risk_sets` (Cox's risk sets grouped so that none isolates fewer than k), `metadata`.

Imports nothing from `site` or `hub`, so both can apply the same rules.
"""
