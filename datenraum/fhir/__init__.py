"""FHIR R4 as it arrives: Bundles, references, primitive types, and the ViewDefinitions that flatten
resources into tables. Pure functions over JSON; knows nothing about stores, sites or the hub.
"""
