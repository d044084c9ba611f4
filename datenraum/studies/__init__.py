"""Prospective studies (electronic data capture): a pure library shared by the hub and the site EDC.

- `lforms.py`: the vendored form renderer (npm lforms) as package data, for both servers' pages.
"""
