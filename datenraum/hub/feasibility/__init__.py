"""Feasibility: queries, the tasks they become and the sites' results.

- `service`: queries, tasks, results, deadlines, privacy rules (`Federation`); a task's life is there
- `notify`: waking long-polls within the hub process
- `site_api`: the sites' API (fetch tasks, return results); `researcher_api`: ask and read queries
- `site_overview`: the sites and their last contact, for the portal
- `saved_queries`: a researcher's named queries; `workspace_api`: their JSON API for the query builder
- `concepts_api`: searching the concept catalogue for the query builder
"""
