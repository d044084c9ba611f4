"""Biosamples as the query side sees them: the shipped sample terminology (`terminology.py`: SNOMED CT and
MIABIS sample types -> the Sample Locator's coarse categories, `sample_types.tsv`; storage temperature
classes), shared by the site's counting and the hub's sample search."""
