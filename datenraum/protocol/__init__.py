"""Messages between hub and site agents (tasks, results, states): the only thing both sides share besides
`datenraum.query` and `datenraum.privacy`. Defined with the federation issue.
"""
