"""Runware task API dialect (REST + WebSocket on /v1)."""
