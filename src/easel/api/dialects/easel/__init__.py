"""easel's own API: jobs of any model id, their progress stream, and the catalog
(docs/easel-api.md)."""
