#!/bin/sh
# compare.sh - hold qrelay's C tokenizer (src/tokens.c) to the npm package
# @anthropic-ai/tokenizer over the multilingual corpus in corpus/.
#
# Runs count.js (the package, pinned by package-lock.json; `npm ci` here
# once, then everything is offline) and tokcount (a small driver around
# tokens_count) over each file, prints both counts and their agreement,
# and fails if any file differs by more than MAX_PCT percent (1).
#
# Environment: TOKCOUNT (a built driver; else it is compiled into a temp
# dir from src/tokens.c, src/tokens-data.S and the helpers it uses),
# CC (gcc), MAX_PCT (1), NODE (node).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
MAX_PCT=${MAX_PCT:-1}
NODE=${NODE:-node}
CC=${CC:-gcc}

if [ ! -d "$here/node_modules/@anthropic-ai/tokenizer" ]; then
	echo "compare.sh: run 'npm ci' in $here first" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ -z "${TOKCOUNT:-}" ]; then
	# The .S file names its data relative to the top directory.
	(cd "$top" && $CC -std=gnu11 -D_GNU_SOURCE -O2 -Isrc \
	    $(pkg-config --cflags json-c libutf8proc openssl) \
	    -o "$tmp/tokcount" tests/tokenizer/tokcount.c src/tokens.c \
	    src/tokens-data.S src/buf.c src/util.c src/log.c \
	    $(pkg-config --libs json-c libutf8proc openssl) -lpthread)
	TOKCOUNT=$tmp/tokcount
fi

cd "$here"
files=$(ls corpus/*.txt)
# shellcheck disable=SC2086
"$NODE" count.js $files >"$tmp/ref"
# shellcheck disable=SC2086
"$TOKCOUNT" $files >"$tmp/ours"

paste "$tmp/ref" "$tmp/ours" | awk -F '\t' -v max="$MAX_PCT" '
BEGIN { printf "%-28s %8s %8s %8s\n", "file", "npm", "qrelay", "diff%"; bad = 0 }
{
	if ($2 != $4) { print "file order differs: " $2 " " $4; bad = 1; next }
	ref = $1; ours = $3
	d = ref ? (ours - ref) * 100.0 / ref : (ours ? 100 : 0)
	ad = d < 0 ? -d : d
	flag = ad > max ? "  FAIL" : ""
	if (ad > max) bad = 1
	printf "%-28s %8d %8d %8.3f%s\n", $2, ref, ours, d, flag
	tr += ref; to += ours
}
END {
	printf "%-28s %8d %8d %8.3f\n", "total", tr, to, tr ? (to - tr) * 100.0 / tr : 0
	exit bad
}'
