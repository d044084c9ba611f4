"""The query model shared by every part: MII structured queries (CCDL) as frozen values (`model`), the
mapping to store tables and FHIR elements (`mapping`), code hierarchies and units, and the engines that
translate the model (`engines`): SQL for any dialect (`engines.sql`) and the in-memory reference
evaluator (`engines.reference`). Imports nothing from `site` or `hub`.
"""
