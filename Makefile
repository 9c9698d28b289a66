# The two commands a newcomer needs: `make serve` and `make test`.
.PHONY: serve test lint setup dev-setup

setup:
	./scripts/bootstrap

dev-setup:
	./scripts/bootstrap dev

serve: setup
	.venv/bin/easel serve

test: dev-setup
	./scripts/system-deps
	# Three test processes on two cores: much of the suite waits on servers, browsers and SDK
	# subprocesses (one file per process: its servers and fixtures stay with it). Files start
	# in the order tests/conftest.py gives them, longest first: xdist's own reorder would start
	# the files of many tests first and leave the long single tests for the end. Bytecode is
	# written even where PYTHONDONTWRITEBYTECODE is set: the suite starts some three hundred
	# Python processes (servers, workers, the CLI), each would compile easel's modules again.
	PYTHONDONTWRITEBYTECODE= .venv/bin/python -m pytest -n 3 --dist loadfile \
	  --no-loadscope-reorder --durations=15

lint: dev-setup
	.venv/bin/ruff check src tests bench examples
	.venv/bin/mypy
