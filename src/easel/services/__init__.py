"""The core: decides what runs, with no HTTP framework and no torch."""
