"""The network directory: the university hospitals of the network, research infrastructures and
projects, and who takes part in what.

- `tables`: the database models (migration 0003)
- `service`: reading and searching (public), changes by the coordination office (`Directory`), and
  loading the seed (`load_seed`, `seed.json`)
- `api`: the JSON API (`/api/v1/directory`); the pages are in `portal/directory_pages`
"""
