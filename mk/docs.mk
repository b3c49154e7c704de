# The documentation site: mkdocs.yml at the top, pages in docs/, built
# strictly (a broken link, reference or docstring fails) into build/site/.
# Included by the top-level Makefile, which runs it from `make check`.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor.

DOCS_SITE := build/site

docs: $(STAMP)/venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d $(DOCS_SITE)

.PHONY: docs
