"""Programs built on easel that are not part of the installed package (as diffusers keeps its
training scripts in examples/): run them from a checkout, `python -m examples.<name>...`."""
