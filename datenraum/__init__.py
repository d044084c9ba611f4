"""Datenraum: a federated study and data space for clinical research."""
