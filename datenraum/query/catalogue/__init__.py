"""The concept catalogue of the feasibility query builder, and the criteria search over it.

- `load`: the catalogue's values (`Concept` and the filter options it offers) and `load_catalogue`,
  which reads `data/` (or a site's own folder) and derives each concept's options from `mapping.json`.
- `build`: `build_criterion` and `criterion_json`, the criterion for a concept and the user's choices.
- `search`: `ConceptIndex`, the fast search by code and word prefix, and `concept_index()` over the
  shipped catalogue.
- `data/`: the shipped lists, one TSV per code system plus `catalogues.json`; `data/SOURCE.md` says
  where the wording comes from.

Only the hub's criteria search (`datenraum.hub.concepts_api`) uses it.
"""
