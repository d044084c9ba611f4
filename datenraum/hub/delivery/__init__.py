"""Delivery of an approved project's data, from the sites' extractions to the researcher's download.

- `workflow`: the states of each site's part and of the delivery, and which event moves them (pure);
- `tables`: the delivery, its sites' parts and the upload in progress;
- `service`: start a delivery, hand out the extraction tasks, record results, release or reject at the
  site, receive the resumable upload, and the researcher's download;
- `storage`: the packages on the hub's disk (appended chunk by chunk, renamed when complete);
- `site_api`, `api`: the agents' and the researchers' HTTP routes.
"""
