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
	# subprocesses (one file per process: its servers and fixtures stay with it).
	.venv/bin/python -m pytest -n 3 --dist loadfile --durations=15

lint: dev-setup
	.venv/bin/ruff check src tests bench examples
	.venv/bin/mypy
