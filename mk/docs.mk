# The documentation site: mkdocs.yml at the top, pages in docs/, built
# strictly (a broken link, reference or docstring fails) into build/site/.
# Included by the top-level Makefile, which runs it from `make check`.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor.

DOCS_SITE := build/site

docs: $(STAMP)/venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d $(DOCS_SITE)

.PHONY: docs

# Screenshots of the built site in headless Chromium (Debian's package,
# installed here on first use), to look at what a reader sees:
# build/site-shots/{index,reference}.png.
DOCS_SHOTS := build/site-shots
DOCS_PAGES := index.html reference/api/index.html

docs-shots: docs
	@$(call apt_ensure,chromium)
	mkdir -p $(DOCS_SHOTS)
	@for page in $(DOCS_PAGES); do \
		out=$(DOCS_SHOTS)/$$(dirname $$page | sed 's,^\.$$,index,;s,/,-,g').png; \
		chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
			--window-size=1280,1600 --screenshot=$(CURDIR)/$$out \
			file://$(CURDIR)/$(DOCS_SITE)/$$page 2>/dev/null && echo "wrote $$out"; \
	done

.PHONY: docs-shots
