"""The process runtime: build (the composition root), serve, work, shut down."""
