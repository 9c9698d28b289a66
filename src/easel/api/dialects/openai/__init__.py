"""The openai dialect: wire models, translation, routes."""
