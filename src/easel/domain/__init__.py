"""Pure types shared by every layer: no I/O, no torch, no HTTP framework."""
