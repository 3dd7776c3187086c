"""Access control: identities, the Casbin policy compiled into per-role profiles, row scopes,
masking, emergency grants and the hash-chained audit log.

Every read and write of the API (and of the connectors) goes through an `Access`: its `rows()`
narrows each statement to the viewer's scope, its profile decides which fields the role's
schema shows (hub.api.roles) and which are masked.
"""

from hub.authz.access import Access
from hub.authz.viewer import ANONYMOUS, PUBLIC_ROLE, Viewer

__all__ = ["ANONYMOUS", "PUBLIC_ROLE", "Access", "Viewer"]
