"""Connectors: keep GridHub in step with departmental systems, both ways.

`definition` reads connectors/*.toml; a kind (files, rest, open311, webhooks) turns a definition
into a Source of pages; `mapping` turns a source record into GridHub fields; `engine` runs a sync:
one transaction per page, holding the batch's writes, its quarantined records, its audit record
and the cursor after it.
"""
