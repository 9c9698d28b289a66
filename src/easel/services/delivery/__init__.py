"""Delivery: webhooks and uploads to user URLs, signed, retried, guarded against SSRF."""
