# nslab: the two commands a newcomer needs are `make lab` and `make test`.
# Both install what is missing first (OS packages, a virtualenv, the Python
# dependencies, a Jupyter kernel) and are safe to run again.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Debian's own python3 (not a pyenv or conda one): its files are readable by
# every user, which the rootless tests need.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
JUPYTER_IP ?= 127.0.0.1
JUPYTER_PORT ?= 8888
JUPYTER_ARGS ?=
PYTEST_ARGS ?=
# Where `make setup` puts the `labkit` and `grader` commands: a folder on the
# student's PATH and in sudo's secure_path (Debian's is
# /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), so that
# `sudo grader check uts` works exactly as the lessons print it.
BINDIR ?= /usr/local/bin
COMMANDS := labkit grader

# What the lessons, the grader and the tests call: ip, nsenter/unshare/lsns,
# busybox for small root file systems, tini and dumb-init (real inits the
# pid1 exercise must accept), graphviz for the pictures, tmux for the
# two-shell demos, gcc for the C solutions and the benchmark, sudo for the
# commands as the kit prints them (`sudo grader check uts`; a machine set up
# for root only has no sudo).
OS_PACKAGES := python3 python3-venv iproute2 util-linux procps psmisc iputils-ping \
	hostname busybox-static graphviz tini dumb-init tmux gcc libc6-dev make strace \
	libcap2-bin sudo
# Only for `make test`: the browser test drives JupyterLab in Debian's
# chromium through its chromedriver (nothing is downloaded at run time);
# actionlint runs shellcheck on the run: steps of the GitHub Classroom workflow;
# git for the GitHub Classroom tests (the lab VM's /nslab comes by rsync, and
# its Debian has no git).
TEST_PACKAGES := chromium chromium-driver shellcheck git

.PHONY: help lab setup os-packages test-packages venv kernel commands test vm-test lint bench clean

help:
	@echo "make lab     install everything (needs root) and start JupyterLab on this folder"
	@echo "make test    install everything (needs root) and run the whole test suite"
	@echo "make vm-test vagrant up of a fresh clone in a local VM, the whole suite in it, destroy (~3.5 h)"
	@echo "             (VM_SUITE=ci: the lessons and the kernel's tests only, ~60 min: what CI runs)"
	@echo "make bench   time namespace operations (labkit vs Python vs unshare(1) vs C)"
	@echo "make lint    ruff"
	@echo "make clean   remove the virtualenv and the labkit and grader commands of $(BINDIR)"

# JupyterLab is rooted at this folder, so that the lessons, the exercises'
# solution files (in its editor) and a terminal (for `sudo grader check uts`)
# are all in the browser; it opens on lessons/.
lab: setup
	@echo "==> starting JupyterLab on $(CURDIR) at http://$(JUPYTER_IP):$(JUPYTER_PORT)/lab/tree/lessons (Ctrl-C to stop)"
	@$(VENV)/bin/jupyter lab --no-browser --ip=$(JUPYTER_IP) --port=$(JUPYTER_PORT) \
		--ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/lessons \
		$$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(JUPYTER_ARGS)

setup: os-packages venv kernel commands

# install_missing LIST: apt-get install the Debian packages of LIST that are not installed.
define install_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
		| grep -q 'ok installed' || echo $$p; done | xargs); \
	if [ -z "$$missing" ]; then echo "==> OS packages: all present ($(2))"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "make: installing OS packages ($$missing) needs root: apt-get writes to /var and /usr."; \
		echo "      Run 'sudo make $(MAKECMDGOALS)'. (The lab itself needs root too: creating most"; \
		echo "      namespaces needs CAP_SYS_ADMIN, though labkit's rootless mode does a lot without.)"; \
		exit 2; fi; \
	echo "==> apt-get install $$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null
endef

os-packages:
	$(call install_missing,$(OS_PACKAGES),the lab)

test-packages:
	$(call install_missing,$(TEST_PACKAGES),the browser test)

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@echo "==> creating $(VENV) with $(PYTHON) and installing requirements.txt"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -r requirements.txt
	@$(PY) -m pip install -q --no-deps --config-settings editable_mode=compat -e . 2>/dev/null \
		|| $(PY) -m pip install --no-deps --config-settings editable_mode=compat -e .
	@touch $@

kernel: $(VENV)/share/jupyter/kernels/nslab/kernel.json

$(VENV)/share/jupyter/kernels/nslab/kernel.json: $(VENV)/.installed
	@echo "==> registering the Jupyter kernel 'nslab'"
	@$(PY) -m ipykernel install --sys-prefix --name nslab --display-name "nslab (labkit)" >/dev/null

# $(BINDIR)/labkit and $(BINDIR)/grader: symbolic links to this checkout's
# .venv/bin, so that `ls -l $(BINDIR)/grader` says which checkout they run.
# With several checkouts on one machine, the last one whose `make setup`
# (or make lab, make test) ran as root wins: it takes the links over and
# says so.  As a normal user this step only tells what to do.
commands: venv
	@for c in $(COMMANDS); do \
		link=$(BINDIR)/$$c; target="$(CURDIR)/$(VENV)/bin/$$c"; \
		if [ "$$(readlink "$$link")" = "$$target" ]; then continue; fi; \
		if [ -e "$$link" ] && [ ! -L "$$link" ]; then \
			echo "make: $$link exists and is not a link made by nslab's make setup; remove it,"; \
			echo "      or choose another folder on your PATH: make setup BINDIR=FOLDER"; exit 2; fi; \
		if [ "$$(id -u)" != 0 ] && [ ! -w $(BINDIR) ]; then \
			echo "==> $$link is not this checkout's: 'sudo make setup' makes it (until then: $$target)"; \
			continue; fi; \
		if [ -L "$$link" ]; then echo "==> $$link: was $$(readlink "$$link"), now this checkout's"; \
		else echo "==> $$link -> $$target"; fi; \
		ln -sfn "$$target" "$$link" || exit 2; \
	done

test: setup test-packages
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make test: the suite needs root: it creates every namespace type, mounts file"; \
		echo "           systems in them and runs some tests as another user. Run 'sudo make test'."; \
		exit 2; fi
	@echo "==> ruff"
	@$(VENV)/bin/ruff check labkit grader tests bench lessons/lab.py lessons/build.py lessons/kitcopy.py
	@echo "==> pytest (the whole suite; every test runs in namespaces of its own)"
	@$(PY) -m pytest $(PYTEST_ARGS)

# VM_SUITE: whole (the README's `sudo make test` in the guest) or ci (what
# fits CI's 90 minutes); tests/vm/run-vm-test says what each holds.
VM_SUITE ?= whole

vm-test:
	@echo "==> tests/vm/run-vm-test: a Debian box, vagrant up of a fresh clone, the lab checked in the guest ($(VM_SUITE))"
	@VM_SUITE=$(VM_SUITE) tests/vm/run-vm-test

lint: venv
	@$(VENV)/bin/ruff check labkit grader tests bench lessons/lab.py lessons/build.py lessons/kitcopy.py

bench: setup
	@echo "==> bench/ns_ops.py"
	@$(PY) bench/ns_ops.py
	@echo "==> bench/grade_class.py (a class of 20 students, every exercise; a few minutes)"
	@$(PY) bench/grade_class.py -n 20

# Removes the commands only if they are this checkout's (another one may have taken them over).
clean:
	@for c in $(COMMANDS); do \
		if [ "$$(readlink $(BINDIR)/$$c)" = "$(CURDIR)/$(VENV)/bin/$$c" ]; then \
			echo "rm $(BINDIR)/$$c"; rm -f $(BINDIR)/$$c; fi; done
	rm -rf $(VENV)
