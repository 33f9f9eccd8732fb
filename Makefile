# ztr — one entry point: deps, build, test, bench, install.
#
#   make deps     install Debian packages + build wolfSSL with assembly (.deps/)
#   make          build everything into build/ (-O2 -g)
#   make asan     the same under ASan + UBSan into build/asan/
#   make demo     deps + build, then the whole system on loopback (Ctrl-C stops it)
#   make test     deps + asan build + docs + unit + e2e + hostile + faults + failure modes + systemd + packages + fuzz smoke
#   make failure-modes  the failure-modes table (tests/e2e/failure_modes/)
#   make faults   the fault suite (tests/faults/) with its slow scenarios
#   make ui       build the web console (ui/, Next.js; docs/CONSOLE.md)
#   make fuzz     run every libFuzzer target longer (FUZZ_SECONDS, default 300)
#   make bench    measure and write bench/RESULTS.md
#   make churn    1 000 000 streams opened and closed, memory sampled (bench/churn.png)
#   make soak     30 minutes of mixed load, memory sampled (bench/soak.png)
#   make docs     regenerate docs/CONFIG.md's settings tables and man/ from the schema
#   make install  binaries, units, examples, docs, man pages, the console (INSTALL_UI=no: without)
#   make deb      Debian packages into build/deb/ (ztr-controller, ztr-connector, ...)
#   make clean

SHELL := /bin/bash
.DEFAULT_GOAL := all

ROOT    := $(CURDIR)
BUILD   ?= build
SAN     ?=
CC      ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif

# ---- wolfSSL: the project-local build when present, else the system one ----
WOLFSSL_PREFIX := $(ROOT)/.deps/wolfssl
ifneq ($(wildcard $(WOLFSSL_PREFIX)/lib/libwolfssl.a),)
WOLFSSL_CFLAGS := -I$(WOLFSSL_PREFIX)/include
WOLFSSL_LIBS   := $(WOLFSSL_PREFIX)/lib/libwolfssl.a -lm -lpthread
else
WOLFSSL_CFLAGS := $(shell pkg-config --cflags wolfssl 2>/dev/null)
WOLFSSL_LIBS   := $(shell pkg-config --libs wolfssl 2>/dev/null || echo -lwolfssl)
endif

PKGS      := yaml-0.1 jansson libmicrohttpd sqlite3 libpq libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || \
                echo -lyaml -ljansson -lmicrohttpd -lsqlite3 -lpq -lcurl) -lev

# The agents serve only plain HTTP (/health, /metrics): they link
# libmicrohttpd built without HTTPS when `make deps` made it (no GnuTLS and
# its dependencies mapped into every agent); the controller keeps Debian's.
MHD_LITE := $(ROOT)/.deps/microhttpd-lite/lib/libmicrohttpd.a
AGENT_PKG_LIBS := $(if $(wildcard $(MHD_LITE)),$(MHD_LITE) $(filter-out -lmicrohttpd,$(PKG_LIBS)),$(PKG_LIBS))

WARN    := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral
CFLAGS  ?= -O2 -g
COMMA := ,
SANFLAGS := $(if $(SAN),-fsanitize=address$(COMMA)undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
ALL_CFLAGS = $(WARN) $(CFLAGS) $(SANFLAGS) -D_DEFAULT_SOURCE -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
             -I$(ROOT) -I$(BUILD)/gen $(WOLFSSL_CFLAGS) $(PKG_CFLAGS) -MMD -MP
LDFLAGS ?=
ALL_LDFLAGS = $(SANFLAGS) -Wl,--as-needed $(LDFLAGS)

OBJ := $(BUILD)/obj
BIN := $(BUILD)/bin
LIB := $(BUILD)/lib

# The layers, lowest first (DESIGN.md §1): each folder includes only the
# folders before it (tests/layering.sh checks it), so the link order is the
# reverse of this list and needs no link group.
LAYERS := base pki net ctl data agent controller connector tunneler
# Each layer is a library; a daemon's main.c stays out of it so tests link it.
layer_src = $(filter-out $(1)/main.c,$(wildcard $(1)/*.c))
layer_lib = $(LIB)/libztr$(1).a
reverse = $(if $(1),$(call reverse,$(wordlist 2,$(words $(1)),$(1))) $(firstword $(1)))
ALL_LIBS  := $(foreach l,$(call reverse,$(LAYERS)),$(call layer_lib,$(l)))
LINK_LIBS = $(ALL_LIBS) $(WOLFSSL_LIBS) $(PKG_LIBS)

define layer_rule
$(call layer_lib,$(1)): $(patsubst %.c,$(OBJ)/%.o,$(call layer_src,$(1)))
	@mkdir -p $$(dir $$@)
	rm -f $$@
	$$(AR) rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rule,$(l))))

PROGRAMS := $(BIN)/ztr-pki $(foreach d,controller connector tunneler,$(if $(wildcard $(d)/main.c),$(BIN)/$(d)))

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_OBJ := $(OBJ)/tests/unit/support.o
# Small programs the e2e scripts drive (tests/tools/*.c).
TEST_TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(wildcard tests/tools/*.c))
# The fault suite's LD_PRELOAD injector (tests/faults/shim): no sanitizer of
# its own, it sits beside the binaries' one.
FAULT_SHIM := $(BUILD)/tests/faults/libfault_shim.so

.PRECIOUS: $(OBJ)/%.o build/fuzz/obj/%.o
.PHONY: all asan deps test unit e2e faults fuzz fuzz-smoke clean help bench churn soak demo failure-modes ui ui-test docs
all: $(PROGRAMS) $(UNIT_BINS) $(TEST_TOOLS) $(FAULT_SHIM) $(BUILD)/bench/ctl_load

help:
	@sed -n '2,18p' Makefile

deps:
	@bash scripts/deps.sh

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The version --version, /health and ztr_build_info report (base/build_info.c;
# scripts/version.sh: git describe, else a VERSION file, else the commit a
# `git archive` export carries, else 0.0.0-unknown): checked on every make,
# the header rewritten only when its text changes, so a new commit
# recompiles one file and relinks.
VERSION_H := $(BUILD)/gen/ztr_build_version.h
.PHONY: FORCE
$(VERSION_H): FORCE
	@mkdir -p $(dir $@)
	@v="$$(bash $(ROOT)/scripts/version.sh)"; \
	printf '#define ZTR_VERSION "%s"\n#define ZTR_BUILD_TYPE "%s"\n' \
	  "$$v" "$(if $(SAN),asan,release)" >$@.tmp; \
	if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi
$(OBJ)/base/build_info.o: $(VERSION_H)

$(BIN)/ztr-pki: $(OBJ)/pki/tool/ztr_pki.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $< $(LINK_LIBS) -o $@

$(BIN)/controller: $(OBJ)/controller/main.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $< $(LINK_LIBS) -o $@

$(BIN)/connector $(BIN)/tunneler: $(BIN)/%: $(OBJ)/%/main.o $(ALL_LIBS) $(wildcard $(MHD_LITE))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $< $(ALL_LIBS) $(WOLFSSL_LIBS) $(AGENT_PKG_LIBS) -o $@

# Test tools: small programs the e2e scripts drive (TEST_TOOLS, above).
$(BUILD)/tests/tools/%: $(OBJ)/tests/tools/%.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $< $(LINK_LIBS) -o $@

$(FAULT_SHIM): tests/faults/shim/fault_shim.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -O1 -g \
	    -fPIC -shared $< -ldl -o $@

# The controller load generator bench/controller.sh drives.
$(BUILD)/bench/ctl_load: $(OBJ)/bench/ctl_load.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $< $(LINK_LIBS) -o $@

$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(TEST_SUPPORT_OBJ) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $< $(TEST_SUPPORT_OBJ) $(LINK_LIBS) -lcmocka -o $@

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 CFLAGS="-O1 -g" all

# ---- tests -----------------------------------------------------------------
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) asan
	@$(MAKE) --no-print-directory ui
	@$(MAKE) --no-print-directory -j$(JOBS) fuzz-build
	@bash tests/run-all.sh build/asan $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

unit:
	@bash tests/run-unit.sh $(BUILD)

e2e:
	@bash tests/run-e2e.sh $(BUILD)

# The fault suite with its slow scenarios too (make test runs the quick ones).
faults: deps
	@$(MAKE) --no-print-directory -j$(JOBS) asan
	@ZTR_FAULTS_SLOW=1 bash tests/run-e2e.sh build/asan faults

# Every failure mode of the failure-modes document, as a table.
failure-modes: all ui
	@bash tests/run-failure-modes.sh $(BUILD)

# ---- docs from the settings schema (docs/CONFIG.md, "Every setting") -------
# Each daemon's --print-schema (the table --help prints) becomes the tables of
# docs/CONFIG.md and the settings sections of man/; tests/docs_check.sh fails
# when the committed files differ.
docs: $(PROGRAMS)
	python3 scripts/gen-docs.py $(BIN)

# ---- the web console (ui/, docs/CONSOLE.md) ---------------------------------
# Built once into ui/.next (next build, offline: system fonts, no telemetry);
# rebuilt only when a source file is newer than the last build.
UI_SRC := $(shell find ui/app ui/components ui/lib -type f 2>/dev/null) \
          ui/next.config.mjs ui/tsconfig.json ui/package.json ui/package-lock.json
UI_BUILT := ui/.next/BUILD_ID

ui: $(UI_BUILT)

$(UI_BUILT): $(UI_SRC)
	@[ -d ui/node_modules/next ] || bash scripts/deps.sh
	cd ui && NEXT_TELEMETRY_DISABLED=1 node node_modules/next/dist/bin/next build
	@touch $@

# The console's unit tests and its browser test against the real daemons.
ui-test: ui
	@bash tests/run-ui.sh $(BUILD)

# The README's first command: everything on loopback, a request through the
# tunneler's forward and SOCKS5, every node's /health; Ctrl-C cleans up.
demo: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all
	@$(MAKE) --no-print-directory ui
	@bash scripts/demo.sh

# libFuzzer needs clang; the fuzz build has its own object tree, compiled
# once and shared by every target.
FUZZ_BUILD := build/fuzz
FUZZ_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
               -I$(ROOT) $(WOLFSSL_CFLAGS) $(PKG_CFLAGS) -MMD -MP
# controller: for the admin API body target (its main.c is left out).
FUZZ_LIB_SRC := $(foreach l,base pki net ctl data controller,$(call layer_src,$(l))) \
                tunneler/socks5.c
FUZZ_LIB := $(FUZZ_BUILD)/libfuzzdeps.a

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
	rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/tests/fuzz/%.o $(FUZZ_LIB)
	clang -fsanitize=fuzzer,address,undefined $< $(FUZZ_LIB) $(WOLFSSL_LIBS) $(PKG_LIBS) -o $@

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

fuzz-smoke: fuzz-build
	@bash tests/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

fuzz: deps fuzz-build
	@bash tests/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Crypto speed of the linked wolfSSL vs Debian's, same run; the relay
# benchmark (ztr vs stunnel vs direct TCP) joins it with the data plane.
bench: deps all
	@bash bench/run.sh

# 1 000 000 streams opened and closed, memory and descriptors sampled
# (bench/churn.sh: bench/churn.csv, bench/churn.png); its own target: ~2 min.
churn: deps all
	@bash bench/churn.sh

# 30 minutes of mixed load (bulk, small and idle streams, renewals,
# allowlist pushes), memory sampled (bench/soak.sh: soak.csv, soak.png).
soak: deps all
	@bash bench/soak.sh

# ---- install (docs/OPERATIONS.md, "Install with systemd") ------------------
# make install [PREFIX=/usr/local] [DESTDIR=]: the binaries into $(PREFIX)/bin,
# the built console (make ui) into $(PREFIX)/lib/ztr/ui, the units into
# /etc/systemd/system and the examples into /etc/ztr/*.example (both with the
# /usr/local prefix replaced by $(PREFIX); an existing /etc/ztr/*.conf is
# never touched), the docs into $(PREFIX)/share/doc/ztr, the controller CLI's
# bash completion into $(PREFIX)/share/bash-completion/completions.
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     := $(PREFIX)/bin
DOCDIR     := $(PREFIX)/share/doc/ztr
UIDIR      := $(PREFIX)/lib/ztr/ui
SYSCONFDIR ?= /etc
UNITDIR    ?= $(SYSCONFDIR)/systemd/system
MANDIR     ?= $(PREFIX)/share/man
INSTALL_PROGRAMS := $(BIN)/controller $(BIN)/connector $(BIN)/tunneler $(BIN)/ztr-pki

# INSTALL_UI=no leaves the console out (an agent-only host needs no Node.js).
INSTALL_UI ?= yes

.PHONY: install install-ui systemd-test
# A unit, /usr/local/ replaced by $(PREFIX)/, written beside and moved in.
install_unit = sed 's|/usr/local/|$(PREFIX)/|g' systemd/$(1).service >$(DESTDIR)$(UNITDIR)/$(1).service.tmp && \
  chmod 0644 $(DESTDIR)$(UNITDIR)/$(1).service.tmp && \
  mv -f $(DESTDIR)$(UNITDIR)/$(1).service.tmp $(DESTDIR)$(UNITDIR)/$(1).service

install: $(INSTALL_PROGRAMS) $(if $(filter yes,$(INSTALL_UI)),install-ui)
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/ztr
	install -m 0755 $(INSTALL_PROGRAMS) $(DESTDIR)$(BINDIR)/
	$(call install_unit,ztr-controller)
	$(call install_unit,ztr-connector)
	$(call install_unit,ztr-tunneler)
	for example in conf/*.example; do \
	  sed 's|/usr/local/|$(PREFIX)/|g' $$example >$(DESTDIR)$(SYSCONFDIR)/ztr/$${example#conf/} && \
	  chmod 0644 $(DESTDIR)$(SYSCONFDIR)/ztr/$${example#conf/} || exit 1; \
	done
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 0644 scripts/completion/controller.bash \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/controller
	@echo "installed; next: docs/OPERATIONS.md, \"Install with systemd\" (systemctl daemon-reload)"

# The console alone (make install runs it unless INSTALL_UI=no; the
# ztr-console package is made from it): $(UIDIR), ztr-ui.service,
# /etc/ztr/ui.conf.example.
install-ui: $(UI_BUILT)
	install -d -m 0755 $(dir $(DESTDIR)$(UIDIR)) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/ztr
	@# The console as `node server.mjs` runs it: the build without its cache
	@# and the production dependencies only (npm prune, offline: it only
	@# removes), assembled beside the old one, then swapped in.
	rm -rf $(DESTDIR)$(UIDIR).tmp $(DESTDIR)$(UIDIR).old
	mkdir -p $(DESTDIR)$(UIDIR).tmp/.next
	cp -R ui/server.mjs ui/next.config.mjs ui/package.json ui/package-lock.json ui/node_modules $(DESTDIR)$(UIDIR).tmp/
	for f in ui/.next/*; do [ "$$f" = ui/.next/cache ] || cp -R "$$f" $(DESTDIR)$(UIDIR).tmp/.next/ || exit 1; done
	cd $(DESTDIR)$(UIDIR).tmp && npm prune --omit=dev --omit=optional --offline --ignore-scripts \
	  --no-audit --no-fund --loglevel=error && rm package-lock.json
	chmod -R u=rwX,go=rX $(DESTDIR)$(UIDIR).tmp
	chmod 0755 $(DESTDIR)$(UIDIR).tmp/server.mjs
	if [ -e $(DESTDIR)$(UIDIR) ]; then mv $(DESTDIR)$(UIDIR) $(DESTDIR)$(UIDIR).old; fi
	mv $(DESTDIR)$(UIDIR).tmp $(DESTDIR)$(UIDIR) && rm -rf $(DESTDIR)$(UIDIR).old
	$(call install_unit,ztr-ui)
	sed 's|/usr/local/|$(PREFIX)/|g' conf/ui.conf.example >$(DESTDIR)$(SYSCONFDIR)/ztr/ui.conf.example && \
	  chmod 0644 $(DESTDIR)$(SYSCONFDIR)/ztr/ui.conf.example

# Debian packages (debian/, scripts/deb.sh): ztr-common, ztr-controller,
# ztr-connector, ztr-tunneler into build/deb/, lintian-checked.
.PHONY: deb deb-test
deb:
	@bash scripts/deb.sh build/deb

# The packages installed into a throw-away root booted under systemd:
# enroll, a request through, purge leaves nothing (tests/systemd/deb.sh).
deb-test: deb $(BUILD)/tests/tools/tcp_peer
	@bash tests/systemd/deb.sh build/deb $(BUILD)

# The units under a real systemd: a throw-away systemd-nspawn boot of this
# host's own root (needs root; prints "skipped" and why when it cannot run).
systemd-test: $(INSTALL_PROGRAMS) $(BUILD)/tests/tools/tcp_peer $(UI_BUILT)
	@bash tests/systemd/run.sh $(BUILD)

clean:
	rm -rf build

-include $(shell find $(BUILD) $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
