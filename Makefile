PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet .

demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet .
	$(BIN)/convtrain train configs/digits.yaml

test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
