"""Sync state kept for the connectors: runs, cursors, the quarantine, conflicts, record links
and webhook deliveries. Models and the statements over them; the engine is hub.connectors."""
