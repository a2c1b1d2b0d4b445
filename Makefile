# Easel: `make run` serves http://localhost:8080; `make test` runs every test.
# Both install what is missing first (Debian packages, then the test peers into .venv).

SWIFT      ?= swift
PYTHON     ?= python3
VENV       := .venv
# Build-time libraries: SQLite for GRDB, zlib for gzip (compress-nio), libcurl for
# Foundation's networking module that the toolchain links; libvips to validate, strip and
# thumbnail images (nothing decodes untrusted images by hand).
DEB_PACKAGES := libsqlite3-dev zlib1g-dev libcurl4-openssl-dev pkg-config libvips-dev
# Only for the tests: a certificate tool, and a real browser for the browser test.
TEST_DEB_PACKAGES := openssl chromium chromium-driver
SUDO       := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: run test release deps test-deps venv build clean bench

run: deps build
	./.build/debug/easel serve

test: deps test-deps venv
	$(SWIFT) build --build-tests
	EASEL_TEST_VENV="$(CURDIR)/$(VENV)" $(SWIFT) test --skip-build

release: deps
	$(SWIFT) build -c release --static-swift-stdlib -Xlinker --strip-all --product easel
	@echo "release binary: $$($(SWIFT) build -c release --show-bin-path)/easel"

build:
	$(SWIFT) build --product easel

# Installs only the Debian packages that are missing.
deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(DEB_PACKAGES)"

test-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_DEB_PACKAGES)"

apt-install:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The test peers of shared/PEERS.md, from PyPI, re-installed when the requirements change.
venv: $(VENV)/.installed

$(VENV)/.installed: Tests/peers/requirements.txt
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3 python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r Tests/peers/requirements.txt
	touch $@

bench: deps build
	./bench/run.sh

clean:
	rm -rf .build $(VENV)
