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
	.venv/bin/python -m pytest -n 2 --dist loadfile

lint: dev-setup
	.venv/bin/ruff check src tests bench examples
	.venv/bin/mypy
