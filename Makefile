# Makefile - qrelay.  `make` builds src/qrelayd and src/qrelayctl;
# `make run` installs what is missing, builds and runs in the foreground;
# `make check` runs every test (unit tests and the integration suites
# under AddressSanitizer and UBSan, the man page lint, a short fuzz run).
# configure runs by itself the first time (config.mk is its output).

-include config.mk

# O: where objects and programs go. `make check` builds a second,
# sanitized tree in obj-asan/ so the plain build stays untouched.
O       ?= src
SAN     ?=
WARN     = -Wall -Wextra -Werror -Wformat -Werror=format-security -Wshadow \
           -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
HARDEN   = -fstack-protector-strong -fPIE
OPT     ?= -O2 -g
ifeq ($(SAN),1)
OPT      = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
HARDEN   = -fPIE
endif
PATHS    = -DQR_SYSCONFDIR='"$(sysconfdir)"' -DQR_DATADIR='"$(datadir)"' -DQR_LOCALSTATEDIR='"$(localstatedir)"'
CFLAGS  ?=
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(OPT) $(HARDEN) $(WARN) $(PATHS) $(DEP_CFLAGS) $(CFLAGS)
ifneq ($(SAN),1)
ALL_CFLAGS += -D_FORTIFY_SOURCE=2
endif
LDFLAGS_ALL = -pie -Wl,-z,relro,-z,now $(OPT) $(LDFLAGS)
LIBS_ALL = $(DEP_LIBS) -lpthread -lm

# Library objects: everything but the two mains.
LIB_SRCS = src/log.c src/util.c src/buf.c src/config.c src/proc.c src/shm.c \
           src/http.c src/worker.c src/router.c src/static.c src/auth.c \
           src/admin.c src/db.c src/logger.c src/refresher.c src/secret.c \
           src/pool.c src/oidc.c src/kiro.c src/upstream.c src/relay.c \
           src/qreq.c src/jsonr.c src/openai.c src/anthropic.c src/eventstream.c \
           src/tokens.c
LIB_OBJS = $(LIB_SRCS:src/%.c=$(O)/%.o) $(O)/tokens-data.o
HDRS     = $(wildcard src/*.h)

UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)

.PHONY: all deps run check check-unit check-integration check-man check-valgrind \
        check-tokenizer npm-clients unit-bins fuzz bench \
        install clean distclean
all: $(O)/qrelayd $(O)/qrelayctl

config.mk: configure.ac config.mk.in
	@build-aux/deps.sh build
	autoreconf -fi
	./configure

$(O)/.dir:
	@mkdir -p $(O)/tests && touch $@

# V=1 shows the commands.
Q = $(if $(V),,@)
$(O)/%.o: src/%.c $(HDRS) config.mk | $(O)/.dir
	@$(if $(V),true,echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The tokenizer's vocabulary, embedded with .incbin (paths from the top).
$(O)/tokens-data.o: src/tokens-data.S src/claude-tokenizer.json | $(O)/.dir
	@$(if $(V),true,echo "  AS      $@")
	$(Q)$(CC) -c -o $@ $<

$(O)/libqr.a: $(LIB_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(O)/qrelayd: $(O)/qrelayd.o $(O)/libqr.a
	@$(if $(V),true,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

$(O)/qrelayctl: $(O)/qrelayctl.o $(O)/libqr.a
	@$(if $(V),true,echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

$(O)/tests/%: tests/unit/%.c $(O)/libqr.a $(HDRS)
	@$(if $(V),true,echo "  CCLD    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -Isrc $(CRITERION_CFLAGS) $(LDFLAGS_ALL) -o $@ $< \
		$(O)/libqr.a $(CRITERION_LIBS) $(LIBS_ALL)

run: all
	./$(O)/qrelayd -d -f etc/qrelayd.conf

# The test suites run against the sanitized build.
check:
	@build-aux/deps.sh check
	$(MAKE) config.mk
	$(MAKE) all
	$(MAKE) O=obj-asan SAN=1 all unit-bins
	$(MAKE) check-man
	$(MAKE) fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-20}
	$(MAKE) check-valgrind
	$(MAKE) O=obj-asan SAN=1 check-unit
	$(MAKE) check-tokenizer
	$(MAKE) npm-clients
	$(MAKE) O=obj-asan SAN=1 check-integration

unit-bins: $(UNIT_BINS)

check-unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
		echo "== $$t"; \
		ASAN_OPTIONS=detect_leaks=1 $$t --jobs 1 || fail=1; \
	done; exit $$fail

# The plain build's unit tests once more under valgrind's memcheck
# (ASan and valgrind do not mix, hence the two builds).
VALGRIND_TESTS = test_http test_config test_shm test_auth test_db test_pool \
                 test_tokens test_anthropic test_secret test_jsonr
check-valgrind: $(VALGRIND_TESTS:%=src/tests/%)
	@for t in $^; do \
		echo "== valgrind $$t"; \
		valgrind -q --error-exitcode=3 --leak-check=full \
		    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
		    --trace-children=yes \
		    $$t --jobs 1 || exit 1; \
	done

check-integration: $(O)/qrelayd $(O)/qrelayctl
	QRELAYD=$(O)/qrelayd QRELAYCTL=$(O)/qrelayctl python3 tests/integration/run.py

# Our tokenizer against the npm package it re-creates, over a corpus.
check-tokenizer: $(O)/tests/tokcount
	cd tests/tokenizer && npm ci --no-audit --no-fund --loglevel=error
	TOKCOUNT=$(abspath $(O)/tests/tokcount) tests/tokenizer/compare.sh

# The real client packages the integration suite drives (openai,
# @anthropic-ai/sdk, Claude Code), installed before the watchdog runs.
npm-clients:
	cd tests/clients && npm ci --no-audit --no-fund --loglevel=error

# Drivers built like the unit tests, for the tokenizer check and bench.
$(O)/tests/tokcount: tests/tokenizer/tokcount.c $(O)/libqr.a $(HDRS)
	$(Q)$(CC) $(ALL_CFLAGS) -Isrc $(LDFLAGS_ALL) -o $@ $< $(O)/libqr.a $(LIBS_ALL)
$(O)/tests/%bench: tests/bench/%bench.c $(O)/libqr.a $(HDRS)
	$(Q)$(CC) $(ALL_CFLAGS) -Isrc $(LDFLAGS_ALL) -o $@ $< $(O)/libqr.a $(LIBS_ALL)

check-man:
	@for m in man/*.[58]; do mandoc -Tlint -W warning $$m || exit 1; done; echo "man pages: mandoc -Tlint clean"

# libFuzzer targets beside the parsers; FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
FUZZ_CC = clang
FUZZ_FLAGS = -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc $(DEP_CFLAGS)
FUZZ_REQ_SRCS = src/openai.c src/anthropic.c src/qreq.c src/jsonr.c src/tokens.c \
	src/tokens-data.S src/config.c src/buf.c src/util.c src/log.c
FUZZ_TARGETS = http eventstream jsonr request accounts
fuzz: $(FUZZ_TARGETS:%=obj-fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p obj-fuzz/corpus-$$t; \
		dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
		echo "== fuzz_$$t, $(FUZZ_SECONDS) s"; \
		obj-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=16384 \
		    $$dict obj-fuzz/corpus-$$t tests/fuzz/seeds-$$t \
		    2>obj-fuzz/fuzz_$$t.log || { tail -40 obj-fuzz/fuzz_$$t.log; exit 1; }; \
		tail -1 obj-fuzz/fuzz_$$t.log; \
	done

obj-fuzz/fuzz_http: tests/fuzz/fuzz_http.c src/http.c src/buf.c src/util.c $(HDRS)
	@mkdir -p obj-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_http.c src/http.c src/buf.c src/util.c $(DEP_LIBS)

FUZZ_ES_SRCS = src/eventstream.c src/jsonr.c src/buf.c src/util.c src/log.c
obj-fuzz/fuzz_eventstream: tests/fuzz/fuzz_eventstream.c $(FUZZ_ES_SRCS) $(HDRS)
	@mkdir -p obj-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_eventstream.c $(FUZZ_ES_SRCS) $(DEP_LIBS)

obj-fuzz/fuzz_jsonr: tests/fuzz/fuzz_jsonr.c src/jsonr.c src/buf.c $(HDRS)
	@mkdir -p obj-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_jsonr.c src/jsonr.c src/buf.c $(DEP_LIBS)

FUZZ_ACCT_SRCS = src/db.c src/secret.c src/shm.c src/oidc.c src/kiro.c src/pool.c src/auth.c src/http.c \
	src/jsonr.c src/buf.c src/util.c src/log.c
obj-fuzz/fuzz_accounts: tests/fuzz/fuzz_accounts.c $(FUZZ_ACCT_SRCS) $(HDRS)
	@mkdir -p obj-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_accounts.c $(FUZZ_ACCT_SRCS) $(DEP_LIBS)

obj-fuzz/fuzz_request: tests/fuzz/fuzz_request.c $(FUZZ_REQ_SRCS) src/claude-tokenizer.json $(HDRS)
	@mkdir -p obj-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_request.c $(FUZZ_REQ_SRCS) $(DEP_LIBS)

bench: all $(O)/tests/convbench $(O)/tests/tokbench $(O)/tests/poolbench
	@build-aux/deps.sh bench
	tests/bench/run.sh
	QRELAYD=$(O)/qrelayd CONVBENCH=$(O)/tests/convbench TOKBENCH=$(O)/tests/tokbench POOLBENCH=$(O)/tests/poolbench tests/bench/relay.sh

install: all
	install -d $(DESTDIR)$(sbindir) $(DESTDIR)$(sysconfdir) $(DESTDIR)$(mandir)/man5 \
		$(DESTDIR)$(mandir)/man8 $(DESTDIR)$(datadir)/qrelay/www $(DESTDIR)$(datadir)/qrelay/rc
	install -m 755 $(O)/qrelayd $(O)/qrelayctl $(DESTDIR)$(sbindir)/
	test -e $(DESTDIR)$(sysconfdir)/qrelayd.conf || \
		install -m 600 etc/qrelayd.conf $(DESTDIR)$(sysconfdir)/qrelayd.conf
	install -m 644 man/qrelayd.conf.5 $(DESTDIR)$(mandir)/man5/
	install -m 644 man/qrelayd.8 man/qrelayctl.8 $(DESTDIR)$(mandir)/man8/
	cp -R www/. $(DESTDIR)$(datadir)/qrelay/www/
	install -m 644 rc/* $(DESTDIR)$(datadir)/qrelay/rc/

clean:
	rm -rf src/*.o src/libqr.a src/qrelayd src/qrelayctl src/tests src/.dir obj-asan obj-fuzz

distclean: clean
	rm -rf config.mk config.log config.status configure autom4te.cache aclocal.m4 build-aux/install-sh build-aux/compile build-aux/missing var
