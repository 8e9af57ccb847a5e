# Two commands for a fresh clone: `make run` and `make test`. Each does all of the set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.requirements-installed
ADDR   ?= 127.0.0.1:8000

.PHONY: run test setup venv models-test bench clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

setup: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py install_model base --if-missing

run: setup
	@echo "Admin user: $(PY) manage.py createsuperuser  (then http://$(ADDR)/admin/)"
	$(PY) manage.py serve $(ADDR)

models-test: setup
	$(PY) manage.py install_model tiny.en --if-missing

test: models-test
	$(PY) -m pytest

bench: models-test
	$(PY) bench/service_overhead.py

clean:
	rm -rf var .pytest_cache
