"""The crisis dashboard at the hub: indicators tasks to every site, deliveries checked and kept, pooled
series released under the disclosure rules (`service`), their tables (`tables`), the public JSON/CSV API
(`api`). The pages are `portal/dashboard_pages.py`; definitions and arithmetic are `datenraum.indicators`.
"""
