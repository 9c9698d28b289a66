"""The google dialect: wire models, translation, routes."""
