"""The wavespeed dialect: wire models, translation, routes."""
