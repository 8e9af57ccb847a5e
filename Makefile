# Two commands for a fresh clone: `make run` and `make test`. Each does all of the set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.requirements-installed
ADDR   ?= 127.0.0.1:8000

.PHONY: run test test-ffmpeg-wheel setup venv models-test browser bench clean

# Packages whose declared dependencies are not all needed (requirements.txt says why), each on a
# line "#no-deps <name>==<version>": installed with --no-deps after the rest.
NO_DEPS := $(shell sed -n 's/^\#no-deps //p' requirements.txt)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(NO_DEPS)
	touch $(STAMP)

venv: $(STAMP)

setup: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py install_model base --if-missing
	$(PY) manage.py install_diarization resemblyzer --if-missing

run: setup
	@$(PY) manage.py ensure_admin --url http://$(ADDR)/admin/
	$(PY) manage.py serve $(ADDR)

models-test: setup
	$(PY) manage.py install_model tiny.en --if-missing

# The browser tests drive Debian's Chromium through Playwright (never `playwright install`).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: models-test browser
	$(PY) -m pytest

# `make test` uses the FFmpeg on PATH when there is one (a user's, Debian's); this runs the tests
# that depend on the FFmpeg build (`-m ffmpeg`) again with the imageio-ffmpeg wheel's binary.
test-ffmpeg-wheel: models-test
	FFMPEG_BINARY="$$($(PY) -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" \
	  $(PY) -m pytest -m ffmpeg

# Speed and accuracy: the service, sequential faster-whisper and faster-whisper's batched pipeline
# on a 10-minute reading of the shared clips (README: "Speed and accuracy").
bench: models-test
	$(PY) bench/speed_accuracy.py --rounds 2

clean:
	rm -rf var .pytest_cache
