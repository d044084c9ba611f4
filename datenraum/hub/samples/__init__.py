"""The sample locator at the hub: sample searches, the `sample-search` tasks they become at every site
and the sites' answers with their totals (`service`), their tables (`tables`), the researchers' JSON API
(`api`). The page is `portal/samples_pages.py`; requesting samples is `proposals/sample_requests.py`.
"""
