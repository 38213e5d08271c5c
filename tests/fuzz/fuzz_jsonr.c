/*
 * fuzz_jsonr.c - differential libFuzzer target: jsonr_parse against
 * json-c's tokener in strict mode, depth QR_JSON_DEPTH, the reader it
 * replaces in qreq_parse_json.
 *
 * json-c is asked about the input with one space appended: at the top
 * level it cannot tell a number that ended from one cut short ("123"
 * stays json_tokener_continue), and trailing whitespace changes nothing
 * in strict JSON. json-c accepts when it succeeds having read every
 * byte (it stops early only at a NUL, which jsonr refuses).
 *
 * For every input:
 *  - the two agree on accept or reject, and when both accept,
 *    json_object_to_json_string_ext(PLAIN) of the two trees is the same
 *    bytes (so: same types, same strings, same number texts, same key
 *    order, same duplicate-key outcome);
 *  - jsonr's error offset lies within the input.
 * The exceptions, where json-c's strict mode accepts what RFC 8259 does
 * not and jsonr refuses; each is recognised at the byte where jsonr
 * stopped, and anything else is a failure:
 *  1. a raw control byte 0x01-0x1f inside a string or key ("a<TAB>b");
 *  2. NaN, Infinity, -Infinity (json-c's strict mode keeps them);
 *  3. a single-quoted object key ({'a':1}; single-quoted values it
 *     does refuse);
 *  4. leading zeros json-c lets through: -01, 00, -00, 01.5, 00e1
 *     (strict json-c refuses only a non-negative nonzero integer);
 *  5. a fraction without digits or an integer part: 1. 1.e5 -.5
 *     (json-c hands the text to strtod, which takes them).
 * jsonr never accepts what json-c refuses.
 */
#include <stdlib.h>
#include <string.h>

#include "qrelayd.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
const char *__ubsan_default_options(void);

const char *
__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

static int
is_msg(const struct jsonr_err *e, const char *m)
{
	return strcmp(e->je_msg, m) == 0;
}

/* Is jsonr's refusal one of the documented exceptions? */
static int
exception(const uint8_t *d, size_t n, const struct jsonr_err *e)
{
	size_t	 o = e->je_off;
	uint8_t	 c = o < n ? d[o] : 0, prev = o > 0 ? d[o - 1] : 0;

	if (e->je_code != JSONR_SYNTAX)
		return 0;
	if (is_msg(e, "control character in string") && c >= 0x01 &&
	    c <= 0x1f)
		return 1;				/* 1 */
	if ((is_msg(e, "unexpected character") ||
	    is_msg(e, "invalid number")) &&
	    ((n - o >= 3 && memcmp(d + o, "NaN", 3) == 0) ||
	    (n - o >= 8 && memcmp(d + o, "Infinity", 8) == 0)))
		return 1;				/* 2 */
	if (is_msg(e, "quoted object property name expected") && c == '\'')
		return 1;				/* 3 */
	if (is_msg(e, "leading zero in number"))
		return 1;				/* 4 */
	if ((is_msg(e, "invalid number") ||
	    is_msg(e, "unexpected end of data")) &&
	    (prev == '.' || (prev == '-' && c == '.')))
		return 1;				/* 5 */
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_tokener	*tok;
	struct json_object	*a, *b;
	struct jsonr_err	 e;
	enum json_tokener_error	 jerr;
	char			*copy;
	const char		*sa, *sb;
	size_t			 end, na, nb;

	if (size > 1 << 20)
		return 0;
	/* jsonr first, on the exact bytes (ASan sees any over-read) */
	b = jsonr_parse((const char *)data, size, QR_JSON_DEPTH, &e);
	if (e.je_off > size || e.je_msg == NULL)
		abort();
	if (b != NULL && e.je_code != JSONR_OK)
		abort();

	if ((copy = malloc(size + 1)) == NULL)
		abort();
	memcpy(copy, data, size);
	copy[size] = ' ';
	if ((tok = json_tokener_new_ex(QR_JSON_DEPTH)) == NULL)
		abort();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	a = json_tokener_parse_ex(tok, copy, (int)size + 1);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	free(copy);
	if (jerr == json_tokener_success && end != size + 1) {
		/* stopped at a NUL: refused */
		json_object_put(a);
		a = NULL;
		jerr = json_tokener_error_parse_unexpected;
	}

	if (jerr == json_tokener_success && e.je_code == JSONR_OK) {
		sa = json_object_to_json_string_length(a,
		    JSON_C_TO_STRING_PLAIN, &na);
		sb = json_object_to_json_string_length(b,
		    JSON_C_TO_STRING_PLAIN, &nb);
		if (sa == NULL || sb == NULL || na != nb ||
		    memcmp(sa, sb, na) != 0)
			abort();
	} else if (jerr == json_tokener_success) {
		if (!exception(data, size, &e))
			abort();
	} else if (e.je_code == JSONR_OK)
		abort();			/* jsonr took what json-c refused */
	else if (jerr == json_tokener_error_depth &&
	    e.je_code != JSONR_DEPTH && e.je_code != JSONR_SYNTAX)
		abort();
	json_object_put(a);
	json_object_put(b);
	return 0;
}
