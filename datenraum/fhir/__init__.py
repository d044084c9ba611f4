"""FHIR R4 as it arrives: Bundles (bundle.py), references (references.py), primitive types
(primitives.py), the R4 resource types (resource_types.py), and the ViewDefinitions that flatten
resources into tables (viewdef/, with the views as data in views/). Pure functions over JSON; knows
nothing about stores, sites or the hub.
"""
