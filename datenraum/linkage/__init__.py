"""Privacy-preserving record linkage with Bloom-filter encodings (CLKs).

`normalise` folds German names, dates and places; `encoder` turns identity records into CLKs as a
clkhash linkage-schema v3 describes (keyed hashing with per-project keys derived from a secret only the
sites share, per-field weights, hardening); `compare` computes Dice similarities bit-packed with numpy,
blocks, thresholds and clusters records of several sites; `estimate` counts distinct persons and
calibrates the threshold on labelled data. The package imports nothing else of ours.
"""
