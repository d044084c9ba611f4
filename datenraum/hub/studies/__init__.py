"""Prospective studies on the hub: set-up, design, form versions, study roles, recruitment status and the
concealed randomisation service (the site EDC, `datenraum.site.studies`, collects the data)."""
