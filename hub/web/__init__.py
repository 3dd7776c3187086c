"""The server-rendered pages: the public transparency site, the live dispatch board and the
auditors' console. They read and write only through GraphQL operations run in process as their
viewer (hub.api.gateway), never through the domain services or the database."""
