/*
 * test_jsonr.c - the strict JSON reader: every value type, the string
 * rules (escapes, \u and surrogates as json-c decodes them, control
 * bytes, NUL, bytes that are not UTF-8), numbers (int64, uint64, the
 * saturation json-c does, doubles printed as written, the grammar), the
 * structure rules (trailing commas, comments, quotes, separators,
 * trailing data), duplicate keys, the depth limit, the error codes and
 * offsets, and trees equal to json-c's for the same input, including
 * strings with escapes at every position around the 16-byte scan.
 */
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static struct jsonr_err	 e;
static struct json_object *o;

static void
teardown(void)
{
	json_object_put(o);
	o = NULL;
}

TestSuite(jsonr, .fini = teardown);

/* Parse s (its length: n, or strlen when n is 0) from an exact-size
 * copy, so a read past the end shows under ASan. */
static struct json_object *
parse_n(const char *s, size_t n)
{
	char	*copy = malloc(n ? n : 1);

	cr_assert_not_null(copy);
	memcpy(copy, s, n);
	json_object_put(o);
	o = jsonr_parse(copy, n, QR_JSON_DEPTH, &e);
	free(copy);
	return o;
}

static struct json_object *
parse(const char *s)
{
	return parse_n(s, strlen(s));
}

static const char *
plain(struct json_object *v)
{
	return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

/* s parses and prints (json-c, plain) as want */
static void
ok(const char *s, const char *want)
{
	parse(s);
	cr_assert_eq(e.je_code, JSONR_OK, "%s: %s at %zu", s, e.je_msg,
	    e.je_off);
	cr_assert_str_eq(plain(o), want, "input %s", s);
}

/* s fails with code at byte off, the message starting msg */
static void
bad_n(const char *s, size_t n, int code, size_t off, const char *msg)
{
	cr_assert_null(parse_n(s, n), "accepted %.*s", (int)n, s);
	cr_assert_eq(e.je_code, code, "%.*s: code %d (%s)", (int)n, s,
	    e.je_code, e.je_msg);
	cr_assert_eq(e.je_off, off, "%.*s: offset %zu, not %zu (%s)", (int)n,
	    s, e.je_off, off, e.je_msg);
	cr_assert_eq(strncmp(e.je_msg, msg, strlen(msg)), 0,
	    "%.*s: \"%s\" is not \"%s\"", (int)n, s, e.je_msg, msg);
}

static void
bad(const char *s, size_t off, const char *msg)
{
	bad_n(s, strlen(s), JSONR_SYNTAX, off, msg);
}

/* json-c (strict, trailing space for top-level numbers) prints s as
 * jsonr's tree does */
static void
same_n(const char *s, size_t n)
{
	struct json_tokener	*tok;
	struct json_object	*j;
	char			*copy = malloc(n + 1);
	const char		*a, *b;
	size_t			 na, nb;

	memcpy(copy, s, n);
	copy[n] = ' ';
	tok = json_tokener_new_ex(QR_JSON_DEPTH);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	j = json_tokener_parse_ex(tok, copy, (int)n + 1);
	cr_assert_eq(json_tokener_get_error(tok), json_tokener_success,
	    "json-c refused %.*s", (int)n, s);
	json_tokener_free(tok);
	parse_n(s, n);
	cr_assert_eq(e.je_code, JSONR_OK, "jsonr refused %.*s: %s at %zu",
	    (int)n, s, e.je_msg, e.je_off);
	a = json_object_to_json_string_length(j, JSON_C_TO_STRING_PLAIN, &na);
	b = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &nb);
	cr_assert(na == nb && memcmp(a, b, na) == 0, "json-c %s\njsonr  %s",
	    a, b);
	json_object_put(j);
	free(copy);
}

static void
same(const char *s)
{
	same_n(s, strlen(s));
}

Test(jsonr, values)
{
	ok("{}", "{}");
	ok("[]", "[]");
	ok("{\"a\":[1,true,false,null,\"s\",{\"b\":[]}]}",
	    "{\"a\":[1,true,false,null,\"s\",{\"b\":[]}]}");
	cr_assert(json_object_is_type(parse("{\"x\":1}"), json_type_object));
	cr_assert(json_object_is_type(json_object_object_get(parse(
	    "{\"x\":true}"), "x"), json_type_boolean));
	cr_assert(json_object_is_type(parse("[]"), json_type_array));
	cr_assert(json_object_is_type(parse("\"s\""), json_type_string));
	cr_assert(json_object_is_type(parse("12"), json_type_int));
	cr_assert(json_object_is_type(parse("1.5"), json_type_double));
	cr_assert(json_object_is_type(parse("false"), json_type_boolean));
	/* null is a NULL tree, and no error */
	cr_assert_null(parse("null"));
	cr_assert_eq(e.je_code, JSONR_OK);
	cr_assert(json_object_is_type(json_object_array_get_idx(parse(
	    "[null]"), 0), json_type_null));
	cr_assert_eq(json_object_array_length(o), 1);
}

Test(jsonr, whitespace)
{
	ok(" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } }\n\r\t ",
	    "{\"a\":[1,2],\"b\":{}}");
	ok(" 7 ", "7");
	/* only the four of RFC 8259 */
	bad("{\f}", 1, "quoted object property name expected");
	bad("\v{}", 0, "unexpected character");
	bad("{}\f", 2, "unexpected data after the value");
	bad("[1\xa0]", 2, "array value separator ',' expected");
}

Test(jsonr, empty)
{
	bad_n("", 0, JSONR_EMPTY, 0, "unexpected end of data");
	bad_n(" \n\t ", 4, JSONR_EMPTY, 4, "unexpected end of data");
}

Test(jsonr, escapes)
{
	parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
	cr_assert_eq(e.je_code, JSONR_OK, "%s", e.je_msg);
	cr_assert_str_eq(json_object_get_string(o), "\"\\/\b\f\n\r\t");
	bad("\"\\x\"", 2, "invalid escape in string");
	bad("\"\\U0041\"", 2, "invalid escape in string");
	bad("\"\\'\"", 2, "invalid escape in string");
	bad("\"ab\\", 4, "unexpected end of data");
}

Test(jsonr, unicode_escapes)
{
	parse("\"\\u0041\\u00e9\\u20AC\\uD83D\\uDE00\"");
	cr_assert_eq(e.je_code, JSONR_OK, "%s", e.je_msg);
	cr_assert_str_eq(json_object_get_string(o),
	    "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	bad("\"\\u12G4\"", 5, "invalid \\u escape");
	bad("\"\\u12", 5, "unexpected end of data");
	bad("\"\\uD800\\u00x0\"", 11, "invalid \\u escape");
}

/* json-c's way with lone surrogates: U+FFFD, and what follows is read as
 * it is */
Test(jsonr, surrogates)
{
	static const struct {
		const char	*in, *want;
	} t[] = {
		{ "\"\\ud800\"", "\xef\xbf\xbd" },
		{ "\"\\udc00\"", "\xef\xbf\xbd" },
		{ "\"\\ud800x\"", "\xef\xbf\xbdx" },
		{ "\"\\ud800\\n\"", "\xef\xbf\xbd\n" },
		{ "\"\\ud800\\u0041\"", "\xef\xbf\xbd" "A" },
		{ "\"\\ud800\\ud800\\udc00\"", "\xef\xbf\xbd\xf0\x90\x80\x80" },
		{ "\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf" },
		{ "\"\\udc00\\ud800\"", "\xef\xbf\xbd\xef\xbf\xbd" },
	};
	size_t	 i;

	for (i = 0; i < nitems(t); i++) {
		parse(t[i].in);
		cr_assert_eq(e.je_code, JSONR_OK, "%s: %s", t[i].in, e.je_msg);
		cr_assert_str_eq(json_object_get_string(o), t[i].want, "%s",
		    t[i].in);
		same(t[i].in);
	}
}

Test(jsonr, nul_escape)
{
	/* a value keeps its length; a key ends at the NUL, as in json-c */
	parse("[\"a\\u0000b\"]");
	cr_assert_eq(e.je_code, JSONR_OK);
	cr_assert_eq(json_object_get_string_len(json_object_array_get_idx(o,
	    0)), 3);
	cr_assert_eq(memcmp(json_object_get_string(json_object_array_get_idx(
	    o, 0)), "a\0b", 3), 0);
	ok("{\"k\\u0000x\":1,\"k\":2}", "{\"k\":2}");
	same("{\"k\\u0000x\":1,\"k\":2}");
	same("[\"a\\u0000b\"]");
}

Test(jsonr, control_bytes)
{
	bad("\"a\tb\"", 2, "control character in string");
	bad("{\"a\nb\":1}", 3, "control character in string");
	bad("[\"\x1f\"]", 2, "control character in string");
	bad("[\"0123456789abcdef0123\x01\"]", 22,
	    "control character in string");
	/* 0x7f and up are not controls to JSON */
	parse("\"\x7f\"");
	cr_assert_eq(e.je_code, JSONR_OK);
}

Test(jsonr, nul_bytes)
{
	bad_n("{\"a\":1}\0", 8, JSONR_SYNTAX, 7, "NUL byte");
	bad_n("{\"a\":\"x\0y\"}", 11, JSONR_SYNTAX, 7, "NUL byte");
	bad_n("[1,\0]", 5, JSONR_SYNTAX, 3, "NUL byte");
	bad_n("\0", 1, JSONR_SYNTAX, 0, "NUL byte");
}

Test(jsonr, raw_bytes_pass)
{
	/* not UTF-8: kept as they are (the upstream writer mends them) */
	parse("\"caf\xc3\xa9 \xff\xfe\xc0\x80\xed\xa0\x80\"");
	cr_assert_eq(e.je_code, JSONR_OK);
	cr_assert_str_eq(json_object_get_string(o),
	    "caf\xc3\xa9 \xff\xfe\xc0\x80\xed\xa0\x80");
}

Test(jsonr, integers)
{
	parse("[0,-0,42,-42,9223372036854775807,-9223372036854775808]");
	cr_assert_eq(e.je_code, JSONR_OK);
	cr_assert_str_eq(plain(o), "[0,0,42,-42,9223372036854775807,"
	    "-9223372036854775808]");
	cr_assert_eq(json_object_get_int64(json_object_array_get_idx(o, 4)),
	    INT64_MAX);
	cr_assert_eq(json_object_get_int64(json_object_array_get_idx(o, 5)),
	    INT64_MIN);
	/* above INT64_MAX: uint64; past the ends: saturated, as json-c */
	parse("[9223372036854775808,18446744073709551615,"
	    "18446744073709551616,-9223372036854775809,"
	    "123456789012345678901234567890,-99999999999999999999999]");
	cr_assert_eq(e.je_code, JSONR_OK);
	cr_assert_str_eq(plain(o), "[9223372036854775808,18446744073709551615,"
	    "18446744073709551615,-9223372036854775808,18446744073709551615,"
	    "-9223372036854775808]");
	cr_assert_eq(json_object_get_uint64(json_object_array_get_idx(o, 0)),
	    (uint64_t)INT64_MAX + 1);
	same("[9223372036854775808,18446744073709551615,"
	    "18446744073709551616,-9223372036854775809,"
	    "123456789012345678901234567890,-99999999999999999999999]");
	same("-0");
}

Test(jsonr, doubles)
{
	/* printed as written */
	ok("[1.50,-0.0,1e10,1E-5,2.5e+3,1e400,-1e-400,0.1]",
	    "[1.50,-0.0,1e10,1E-5,2.5e+3,1e400,-1e-400,0.1]");
	cr_assert_float_eq(json_object_get_double(json_object_array_get_idx(
	    o, 0)), 1.5, 1e-12);
	cr_assert_float_eq(json_object_get_double(json_object_array_get_idx(
	    o, 4)), 2500.0, 1e-9);
	cr_assert(json_object_get_double(json_object_array_get_idx(o, 5)) >
	    1e308);
	same("[1.50,-0.0,1e10,1E-5,2.5e+3,1e400,-1e-400,0.1]");
	/* a long one, past the short copy */
	ok("3.14159265358979323846264338327950288419716939937510582097494459"
	    "23078164062862089986280348253421170679",
	    "3.14159265358979323846264338327950288419716939937510582097494459"
	    "23078164062862089986280348253421170679");
	cr_assert_float_eq(json_object_get_double(o), 3.141592653589793,
	    1e-15);
}

Test(jsonr, doubles_ignore_locale)
{
	/* a locale with a decimal comma must not change the values */
	if (setlocale(LC_NUMERIC, "de_DE.UTF-8") == NULL &&
	    setlocale(LC_NUMERIC, "fr_FR.UTF-8") == NULL)
		cr_skip_test("no decimal-comma locale installed");
	parse("[2.5]");
	setlocale(LC_NUMERIC, "C");
	cr_assert_eq(e.je_code, JSONR_OK);
	cr_assert_float_eq(json_object_get_double(json_object_array_get_idx(
	    o, 0)), 2.5, 1e-12);
}

Test(jsonr, number_grammar)
{
	bad("[01]", 2, "leading zero in number");
	bad("[-01]", 3, "leading zero in number");
	bad("[00]", 2, "leading zero in number");
	bad("[01.5]", 2, "leading zero in number");
	bad("[1.]", 3, "invalid number");
	bad("[1.e5]", 3, "invalid number");
	bad("[-.5]", 2, "invalid number");
	bad("[.5]", 1, "unexpected character");
	bad("[+1]", 1, "unexpected character");
	bad("[-]", 2, "invalid number");
	bad("[1e]", 3, "invalid number");
	bad("[1e+]", 4, "invalid number");
	bad("[1e5.0]", 4, "array value separator ',' expected");
	bad("[0x10]", 2, "array value separator ',' expected");
	bad("[1 2]", 3, "array value separator ',' expected");
	bad("1.", 2, "unexpected end of data");
	bad("-", 1, "unexpected end of data");
	bad("[NaN]", 1, "unexpected character");
	bad("[Infinity]", 1, "unexpected character");
	bad("[-Infinity]", 2, "invalid number");
	ok("[0,-0.5,0e0,0E+1,10e-01]", "[0,-0.5,0e0,0E+1,10e-01]");
}

Test(jsonr, literals)
{
	bad("[tru]", 4, "unexpected character");
	bad("[nul", 4, "unexpected end of data");
	bad("[True]", 1, "unexpected character");
	bad("[nulL]", 4, "unexpected character");
	bad("[falsey]", 6, "array value separator ',' expected");
	bad("truex", 4, "unexpected data after the value");
	bad("[undefined]", 1, "unexpected character");
}

Test(jsonr, structure)
{
	bad("{\"a\":1,}", 7, "quoted object property name expected");
	bad("[1,]", 3, "unexpected character");
	bad("[,1]", 1, "unexpected character");
	bad("{,}", 1, "quoted object property name expected");
	bad("{\"a\" 1}", 5, "object property name separator ':' expected");
	bad("{\"a\":1 \"b\":2}", 7, "object value separator ',' expected");
	bad("{a:1}", 1, "quoted object property name expected");
	bad("{'a':1}", 1, "quoted object property name expected");
	bad("['a']", 1, "unexpected character");
	bad("{\"a\":1]", 6, "object value separator ',' expected");
	bad("[1}", 2, "array value separator ',' expected");
	bad("{\"a\":1} // c", 8, "unexpected data after the value");
	bad("/* c */ {}", 0, "unexpected character");
	bad("[1,/*x*/2]", 3, "unexpected character");
	bad("{\"a\":1}{}", 7, "unexpected data after the value");
	bad("{\"a\":", 5, "unexpected end of data");
	bad("{\"a\"", 4, "unexpected end of data");
	bad("{\"a", 3, "unexpected end of data");
	bad("[1,", 3, "unexpected end of data");
	bad("[", 1, "unexpected end of data");
	bad("{", 1, "unexpected end of data");
	bad("\"abc", 4, "unexpected end of data");
}

Test(jsonr, duplicate_keys)
{
	/* the last wins, in the first one's place */
	ok("{\"a\":1,\"b\":2,\"a\":{\"x\":[3]}}", "{\"a\":{\"x\":[3]},\"b\":2}");
	ok("{\"a\":{\"x\":1},\"a\":2}", "{\"a\":2}");
	same("{\"a\":1,\"b\":2,\"a\":{\"x\":[3]},\"b\":[]}");
}

static char *
nest(int n, const char *inner)
{
	char	*s = malloc((size_t)n * 2 + strlen(inner) + 1);

	memset(s, '[', (size_t)n);
	strcpy(s + n, inner);
	memset(s + n + strlen(inner), ']', (size_t)n);
	s[2 * n + strlen(inner)] = '\0';
	return s;
}

Test(jsonr, depth)
{
	char	*s;

	/* a value may sit in at most 127 containers (json-c's rule) */
	s = nest(127, "1");
	parse(s);
	cr_assert_eq(e.je_code, JSONR_OK, "%s", e.je_msg);
	same(s);
	free(s);
	s = nest(128, "");
	parse(s);
	cr_assert_eq(e.je_code, JSONR_OK, "%s", e.je_msg);
	same(s);
	free(s);
	s = nest(128, "1");
	bad_n(s, strlen(s), JSONR_DEPTH, 128, "nesting too deep");
	free(s);
	s = nest(129, "");
	bad_n(s, strlen(s), JSONR_DEPTH, 128, "nesting too deep");
	free(s);
	s = nest(100000, "");
	bad_n(s, strlen(s), JSONR_DEPTH, 128, "nesting too deep");
	free(s);
	/* objects count the same */
	parse("{\"a\":{\"a\":{}}}");
	cr_assert_eq(e.je_code, JSONR_OK);
	json_object_put(o);
	o = jsonr_parse("{\"a\":{\"a\":{}}}", 14, 3, &e);
	cr_assert_eq(e.je_code, JSONR_OK);
	json_object_put(o);
	o = jsonr_parse("{\"a\":{\"a\":{\"a\":1}}}", 19, 3, &e);
	cr_assert_null(o);
	cr_assert_eq(e.je_code, JSONR_DEPTH);
	cr_assert_eq(e.je_off, 15);
}

Test(jsonr, not_nul_terminated)
{
	/* the length is the end, whatever follows */
	o = jsonr_parse("[12]xyz", 4, QR_JSON_DEPTH, &e);
	cr_assert_eq(e.je_code, JSONR_OK);
	cr_assert_str_eq(plain(o), "[12]");
	json_object_put(o);
	o = jsonr_parse("12345", 2, QR_JSON_DEPTH, &e);
	cr_assert_eq(json_object_get_int64(o), 12);
	json_object_put(o);
	o = jsonr_parse("\"abc\"", 4, QR_JSON_DEPTH, &e);
	cr_assert_null(o);
	cr_assert_eq(e.je_off, 4);
	/* no err: still fine */
	o = jsonr_parse("[1", 2, QR_JSON_DEPTH, NULL);
	cr_assert_null(o);
}

/* An escape or a stop byte at every offset around the 16-byte scan,
 * in values and keys, against json-c. */
Test(jsonr, scan_boundaries)
{
	static const char *const ins[] = { "\\n", "\\u00e9", "\\\"",
	    "\\ud83d\\ude00", "\xc3\xa9", "\\\\" };
	char	 s[512], body[160];
	size_t	 i, pos, len;

	for (i = 0; i < nitems(ins); i++)
		for (len = 0; len < 40; len++)
			for (pos = 0; pos <= len; pos++) {
				memset(body, 'x', len);
				memcpy(body + pos, ins[i], strlen(ins[i]));
				body[pos + strlen(ins[i])] = '\0';
				snprintf(s, sizeof(s), "{\"%s\":[\"%s%.*s\"]}",
				    body, body, (int)(len - pos), "yyyyyyyy"
				    "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
				same(s);
			}
	/* and a control byte at every offset is refused there */
	for (pos = 0; pos < 40; pos++) {
		memset(body, 'x', 40);
		body[40] = '\0';
		body[pos] = '\x02';
		snprintf(s, sizeof(s), "[\"%s\"]", body);
		bad(s, pos + 2, "control character in string");
	}
}

/* Long strings of escapes of every output size between plain runs of
 * every length, so the decoder's buffer grows with an escape at every
 * offset near its end (ASan watches the writes). */
static void
random_string(struct buf *b, int n, uint32_t *rng)
{
	static const char *const escs[] = { "\\n", "\\u00e9", "\\u20ac",
	    "\\ud83d\\ude00", "\\ud800\\u0041", "\\ud800\\ud800\\udc00",
	    "\\udc00", "\\\"", "\xe6\x97\xa5", "\\ud800\\u20ac" };
	static const char xs[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
	int	 i;

	for (i = 0; i < n; i++) {
		*rng = *rng * 1103515245 + 12345;
		buf_puts(b, escs[(*rng >> 16) % nitems(escs)]);
		*rng = *rng * 1103515245 + 12345;
		buf_append(b, xs, (*rng >> 16) % 24);
	}
}

Test(jsonr, long_escaped_strings)
{
	struct buf	 b;
	uint32_t	 rng = 12345;
	int		 k;

	buf_init(&b);
	for (k = 0; k < 40; k++) {
		buf_reset(&b);
		buf_puts(&b, "{\"");
		random_string(&b, 100 * (k + 1), &rng);
		buf_puts(&b, "\":[\"");
		random_string(&b, 500 * (k + 1), &rng);
		buf_puts(&b, "\"]}");
		same_n(b.b_data, b.b_len);
	}
	buf_free(&b);
}

/* A request-shaped document with everything in it, against json-c. */
Test(jsonr, big_document)
{
	struct buf	 b;
	int		 i;

	buf_init(&b);
	buf_puts(&b, "{\"model\":\"claude\",\"max_tokens\":32000,\"messages\":[");
	for (i = 0; i < 300; i++)
		buf_printf(&b, "%s{\"role\":\"%s\",\"content\":[{\"type\":"
		    "\"text\",\"text\":\"line %d\\n\\t\\\"q\\\" caf\xc3\xa9 "
		    "\\u00e9\\ud83d\\ude00 %0*d\"},{\"n\":%d.%d,\"e\":%de%d,"
		    "\"b\":%s,\"z\":null}]}", i ? "," : "", i % 2 ? "assistant" :
		    "user", i, i % 50, 0, i * 7, i, -i, i % 30,
		    i % 3 ? "true" : "false");
	buf_puts(&b, "]}");
	same_n(b.b_data, b.b_len);
	cr_assert_eq(json_object_array_length(json_object_object_get(o,
	    "messages")), 300);
	buf_free(&b);
}

Test(jsonr, too_big)
{
	o = jsonr_parse("{}", (size_t)INT_MAX + 1, QR_JSON_DEPTH, &e);
	cr_assert_null(o);
	cr_assert_eq(e.je_code, JSONR_TOOBIG);
}
