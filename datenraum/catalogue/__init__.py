"""The FAIR catalogue: machine-readable metadata of the network in DCAT-AP 3 and HealthDCAT-AP (R8).

A library: it knows nothing of the hub or the sites (it may import `query` and `privacy` only); the hub's
`catalogue` context fills its values and serves its documents.

- `model`: the catalogue as values (`Network`, `SiteData`, `Study`, `PublicSeries`, `Record`)
- `vocab`: namespaces and the controlled-vocabulary terms used
- `build`: RDF graphs (rdflib) of a dataset, the catalog with its data services
- `serialise`: Turtle, JSON-LD, RDF/XML; choosing one by suffix or `Accept`
- `paging`: searching (`q`, `modified_since`) and Hydra paging
- `validate`: SHACL with pySHACL: HealthDCAT-AP R8 non-public, DCAT-AP 3.0.1 (shapes in `shapes/`)
- `harvest`: reading another DCAT catalogue, page by page, loop-safe and size-limited
"""
