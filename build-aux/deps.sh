#!/bin/sh
# deps.sh - install the Debian packages qrelay needs to build and test.
# As root it runs apt-get; otherwise it prints the exact command to run.
# Usage: deps.sh [build|check|bench]
set -e
want="build"; [ -n "$1" ] && want="$1"
pkgs=""
need() { # need PKG TEST...
	p=$1; shift
	if ! "$@" >/dev/null 2>&1; then pkgs="$pkgs $p"; fi
}
pc() { pkg-config --exists "$1"; }
has() { command -v "$1"; }
need pkg-config has pkg-config
need autoconf has autoreconf
need automake has aclocal
need gcc has cc
need make has make
need libssl-dev pc openssl
need libcurl4-openssl-dev pc libcurl
need libjson-c-dev pc json-c
need libsqlite3-dev pc sqlite3
need libconfig-dev pc libconfig
need libcrypt-dev pc libcrypt
need zlib1g-dev pc zlib
need libutf8proc-dev pc libutf8proc
if [ "$want" = check ] || [ "$want" = bench ]; then
	need libcriterion-dev pc criterion
	need python3 has python3
	need mandoc has mandoc
	need curl has curl
	need procps has ps
	need sqlite3 has sqlite3
	need valgrind has valgrind
	need nodejs has node
	need npm has npm
	need clang has clang
	need libclang-rt-14-dev test -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
fi
if [ "$want" = bench ]; then
	need valgrind has valgrind
	need wrk has wrk
	need nginx-light has /usr/sbin/nginx
fi
[ -z "$pkgs" ] && exit 0
if [ "$(id -u)" = 0 ]; then
	echo "deps.sh: installing:$pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || true
	apt-get install -y -qq --no-install-recommends $pkgs
else
	echo "deps.sh: missing packages; run as root:" >&2
	echo "  apt-get install$pkgs" >&2
	exit 1
fi
