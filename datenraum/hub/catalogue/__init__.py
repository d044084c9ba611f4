"""The FAIR catalogue of the network (issue 20): DCAT-AP 3 / HealthDCAT-AP metadata of every site,
infrastructure, project and public series; the model and serialisations are the `datenraum.catalogue`
library, this context keeps what the sites report and serves the documents.

- `tables`: what each site last reported, harvested catalogues (migration 0005)
- `service`: site-metadata tasks and their answers, the documents, validation, harvesting (`Catalogue`)
- `api`: `/catalog` and its documents in Turtle, JSON-LD and RDF/XML, `/catalog/validation`
- `site_api`: `/api/site/v1/metadata-tasks`, where site agents fetch and answer site-metadata tasks
The searchable page is in `portal/catalogue_pages`.
"""
