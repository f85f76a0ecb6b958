# Two commands for users: `make demo` and `make test`. Both set up what is missing
# (virtual environment, Python packages, Debian packages when run as root) and are
# fast on a second run: every setup step is guarded by a stamp file.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
STAMP_PY    := $(VENV)/.stamp-python
STAMP_APT   := $(VENV)/.stamp-apt
STAMP_CHROMIUM := $(VENV)/.stamp-chromium
STAMP_MOSQUITTO := $(VENV)/.stamp-mosquitto
APT_PKGS    := gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 \
               gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
CHECKPOINT  ?=
MODEL       ?= sam2long_mini
IMAGE_SIZE  ?=
PYTEST_ARGS ?=
# Optional dependency groups (pyproject.toml) that setup installs, comma-separated.
EXTRAS      ?= dev,plot,train,mqtt

.PHONY: setup test demo lint bench clean

setup: $(STAMP_PY) $(STAMP_APT) $(STAMP_CHROMIUM) $(STAMP_MOSQUITTO)

# torch 2.13.0 (CPU build on these machines); sam2 without build isolation (which would
# pull a multi-GB torch) and without its deps (its torchvision pin cannot be met here).
$(STAMP_PY): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation --no-deps sam2==1.1.0
	$(PIP) install -q -e '.[$(EXTRAS)]'
	touch $@

# The RTSP test camera is Debian's gst-rtsp-server driven by the system python3.
$(STAMP_APT):
	@mkdir -p $(VENV)
	@if /usr/bin/python3 sam2long_stream/testing/rtsp_camera.py --check >/dev/null 2>&1; then \
	  echo "gst-rtsp-server: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing gst-rtsp-server (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PKGS) >/dev/null; \
	else \
	  echo "WARNING: gst-rtsp-server missing and not root: install $(APT_PKGS)"; \
	fi
	@touch $@

# The browser tests (tests/test_browser.py) drive Debian's chromium through Playwright
# (a dev extra); `playwright install` is never run (it downloads its own browsers).
# Without chromium those tests skip and say why.
$(STAMP_CHROMIUM):
	@mkdir -p $(VENV)
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "chromium: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (Debian package) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "WARNING: chromium missing and not root: the browser tests will skip (apt-get install chromium)"; \
	fi
	@touch $@

# The MQTT bridge's tests (tests/test_mqtt.py) start Debian's mosquitto broker on
# loopback; without it they skip and say why.
$(STAMP_MOSQUITTO):
	@mkdir -p $(VENV)
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then \
	  echo "mosquitto: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing mosquitto (Debian packages) for the MQTT bridge tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null; \
	else \
	  echo "WARNING: mosquitto missing and not root: the MQTT tests will skip (apt-get install mosquitto mosquitto-clients)"; \
	fi
	@touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check sam2long_stream tests tools
	$(VENV)/bin/ruff format --check sam2long_stream tests tools
	$(VENV)/bin/mypy sam2long_stream

demo: setup
	$(PY) tools/demo.py $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) --model $(MODEL) $(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE))

bench: setup
	$(PY) tools/bench.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
