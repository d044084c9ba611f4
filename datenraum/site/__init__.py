"""The site node: a hospital's store of FHIR data (`store`), loading it (`ingest`, `loader`), and answering
questions on it (`feasibility`). May import `fhir`, `query`, `privacy` and `protocol`; never `hub`.
"""
