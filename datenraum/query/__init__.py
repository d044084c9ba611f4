"""The query model shared by every part: MII structured queries (CCDL) as frozen values (`model`), the
mapping to store tables and FHIR elements (`mapping`), code hierarchies and units, and the engines that
translate the model: SQL for any dialect (`sql`) and the in-memory reference evaluator (`reference`).
Imports nothing from `site` or `hub`.
"""
