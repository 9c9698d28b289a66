# The two commands a newcomer needs: `make serve` and `make test`.
.PHONY: serve test lint setup

setup:
	./scripts/bootstrap

serve: setup
	.venv/bin/easel serve

test: setup
	./scripts/system-deps
	.venv/bin/python -m pytest -n 2 --dist loadfile

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/mypy
