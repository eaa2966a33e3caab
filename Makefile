PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# demo and test install the same way, editable, so running them in any order never swaps a
# regular install for an editable one: that swap had pip delete site-packages/convtrain and
# anything it had not installed there (Numba's kernel cache, before convtrain moved it to
# ~/.cache) stayed behind as a folder without __init__.py, a namespace package shadowing the
# checkout. The second line removes such a folder from a venv made before that fix; after an
# editable install nothing of convtrain's belongs in site-packages.
# setuptools warns on every editable install of a flat layout that a folder named like the
# package in the working directory takes precedence over it: here that folder is the
# package itself, so the 12-line warning says nothing and is filtered.
define EDITABLE_INSTALL
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.$(1)'
	@for d in $(VENV)/lib/python*/site-packages/convtrain; do \
	    [ ! -d "$$d" ] || [ -e "$$d/__init__.py" ] || rm -rf "$$d"; done
endef

install: $(BIN)/python
	$(call EDITABLE_INSTALL,)

demo: install
	$(BIN)/convtrain train configs/digits.yaml

test: $(BIN)/python
	$(call EDITABLE_INSTALL,[test])
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
