/*
 * test_tokens.c - tokens.c: the Claude BPE tokenizer.
 *
 * The expected counts below were taken by running countTokens() of the
 * npm package @anthropic-ai/tokenizer 0.0.4 (tests/tokenizer/count.js)
 * on the same strings, and are hard-coded here so the unit test runs
 * without node; tests/tokenizer/compare.sh runs the package live over a
 * multilingual corpus.
 */
#include <sys/types.h>

#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static int64_t
count(const char *s)
{
	return tokens_count(s, strlen(s));
}

Test(tokens, lazy_init)
{
	/* A fresh process: counting first loads the vocabulary itself. */
	cr_assert_eq(count("hello world"), 2);
	cr_assert_eq(tokens_init(), 0);
	cr_assert_eq(tokens_init(), 0);
	cr_assert_eq(count("hello world"), 2);
}

Test(tokens, known_counts)
{
	static const struct {
		const char	*text;
		int64_t		 want;
	} t[] = {
		{ "hello world", 2 },
		{ "Hello, world!", 4 },
		{ "It's a test; they're here, we've won, I'm sure, you'll see, "
		  "he'd go.", 25 },
		{ "  leading and trailing  ", 5 },
		{ "line one\nline two\n\n\nline five", 9 },
		{ "\t\tindent\r\n", 4 },
		{ "1234567890", 1 },
		{ "3.14159 and 2,718", 8 },
		{ "中文分词测试，这是一个句子。", 10 },
		{ "日本語のテキストです。", 10 },
		{ "Привет, мир!", 8 },
		{ "مرحبا بالعالم", 10 },
		{ "🎉🚀✅ 👨‍👩‍👧‍👦", 22 },
		/* NFKC: ligature, fullwidth, circled digit, halfwidth kana. */
		{ "ﬁnd ＡＢＣ ① ｶﾞ", 6 },
		/* e + U+0301 composes to é. */
		{ "e\xcc\x81 vs \xc3\xa9", 3 },
		{ "def f(x):\n    return x * 2\n", 11 },
		{ "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", 18 },
	};
	size_t	 i;

	tokens_init();
	for (i = 0; i < nitems(t); i++)
		cr_expect_eq(count(t[i].text), t[i].want, "%s: %lld, want %lld",
		    t[i].text, (long long)count(t[i].text),
		    (long long)t[i].want);
}

Test(tokens, special_tokens)
{
	/* encode(text, "all"): a special token in the text is one token. */
	cr_assert_eq(count("<EOT>"), 1);
	cr_assert_eq(count("a<META>b<META_START>c"), 5);
	cr_assert_eq(count("<EOT<EOT>>"), 5);
	/* Fullwidth brackets become "<EOT>" under NFKC first. */
	cr_assert_eq(count("＜EOT＞"), 1);
	/* Not special: lower case, or cut short. */
	cr_assert_gt(count("<eot>"), 1);
	cr_assert_gt(count("<META_START"), 1);
}

Test(tokens, empty)
{
	cr_assert_eq(tokens_count("", 0), 0);
	cr_assert_eq(tokens_count(NULL, 0), 0);
	cr_assert_eq(tokens_count("abc", 0), 0);
}

Test(tokens, length_not_nul)
{
	/* The length rules, not a NUL: NUL is a character like another. */
	cr_assert_eq(tokens_count("a\0b", 3), 3);
	cr_assert_eq(tokens_count("hello world, and more", 11), 2);
}

Test(tokens, invalid_utf8)
{
	static const char *bad[] = {
		"\xff", "\xfe\xff", "\x80", "\xc0\xaf", "\xe4\xb8",
		"\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x9f\x98",
		"abc\xe4", "\xe4" "abc", "\xcc\x81\xcc\x81\xff\xcc\x81",
	};
	size_t	 i;
	int64_t	 n;

	/* A bad byte counts as the U+FFFD a decoder makes of it. */
	cr_assert_eq(tokens_count("\xff", 1), 1);
	cr_assert_eq(count("a\xff" "b"), 3);
	cr_assert_eq(count("x\xff\xfe\x80y"), 3);
	for (i = 0; i < nitems(bad); i++) {
		n = count(bad[i]);
		cr_expect(n >= 1 && n <= 3 * (int64_t)strlen(bad[i]) + 1,
		    "bad input %zu: %lld tokens", i, (long long)n);
	}
}

Test(tokens, random_bytes)
{
	size_t		 len = 64 * 1024, i;
	unsigned char	*p;
	uint32_t	 x = 12345;
	int64_t		 n;

	cr_assert_not_null(p = malloc(len));
	for (i = 0; i < len; i++) {
		x = x * 1103515245 + 12345;
		p[i] = (unsigned char)(x >> 16);
	}
	n = tokens_count((char *)p, len);
	cr_assert(n > 0 && n <= 3 * (int64_t)len, "%lld", (long long)n);
	/* Deterministic: the same bytes, the same count. */
	cr_assert_eq(tokens_count((char *)p, len), n);
	free(p);
}

Test(tokens, long_pieces)
{
	char	*p;
	size_t	 i;

	/* One piece of 20000 letters: merged through the heap. */
	cr_assert_not_null(p = malloc(20001));
	memset(p, 'a', 20000);
	p[20000] = '\0';
	cr_assert_eq(count(p), 1250);
	free(p);

	/* "中文" 5000 times: one 30000-byte piece, one token a character. */
	cr_assert_not_null(p = malloc(30001));
	for (i = 0; i < 5000; i++)
		memcpy(p + 6 * i, "中文", 6);
	p[30000] = '\0';
	cr_assert_eq(count(p), 5000);
	free(p);
}

Test(tokens, one_megabyte)
{
	static const char s[] = "The quick brown fox jumps over the lazy dog. ";
	size_t	 n = 23832, len = n * (sizeof(s) - 1), i;
	char	*p;

	cr_assert_not_null(p = malloc(len));
	for (i = 0; i < n; i++)
		memcpy(p + i * (sizeof(s) - 1), s, sizeof(s) - 1);
	cr_assert_eq(tokens_count(p, len), 238321);
	/* Again, with the scratch buffers given back and regrown. */
	cr_assert_eq(tokens_count(p, len), 238321);
	cr_assert_eq(count("hello world"), 2);
	free(p);
}
