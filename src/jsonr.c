/*
 * jsonr.c - a strict JSON reader that builds json-c objects.
 *
 * A worker parses every client request body (qreq_parse_json), up to
 * megabytes of a long conversation, and json-c's tokener walks its input
 * one byte at a time through a state machine: some 30 instructions a
 * byte. This reader builds the same json-c tree (so everything that
 * reads q_root stays as it is) from one pass over the bytes: strings are
 * scanned 16 bytes at a time for the next '"', '\\' or control byte and
 * created straight from the input when they hold no escape.
 *
 * It accepts RFC 8259 and nothing else, which json-c's strict mode
 * nearly is; where the two differ this one is the stricter (raw control
 * bytes in strings, NaN, Infinity, single-quoted keys, the leading
 * zeros of "-01", "00" and "01.5", "1." and "-.5": see tests/fuzz/fuzz_jsonr.c, which
 * checks both agree on everything else). What it keeps of json-c, so
 * the trees compare equal: integers saturate at the int64/uint64 bounds,
 * integers above INT64_MAX are uint64 objects, other numbers are doubles
 * that print as written, a lone surrogate escape becomes U+FFFD, an
 * object key ends at a \u0000 in it, the last of duplicate keys wins in
 * the first one's place, bytes that are not UTF-8 pass unchanged (the
 * upstream writer mends them), and a value may nest at most max_depth - 1
 * containers deep.
 *
 * No I/O, no global state but a "C" locale for strtod made once.
 */
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "qrelayd.h"

struct jsonr_level {
	struct json_object	*jl_obj;	/* borrowed: its parent owns it */
	int			 jl_is_obj;
};

struct jsonr {
	const unsigned char	*jr_start, *jr_end;
	struct buf		 jr_key;	/* the pending object key */
	struct buf		 jr_str;	/* a string value with escapes */
	struct jsonr_err	*jr_err;
};

static pthread_once_t	 c_locale_once = PTHREAD_ONCE_INIT;
static locale_t		 c_locale;

static void
c_locale_init(void)
{
	c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* What may follow a backslash, and the byte it stands for. */
static const unsigned char esc_byte[256] = {
	['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b', ['f'] = '\f',
	['n'] = '\n', ['r'] = '\r', ['t'] = '\t',
};

static int
fail(struct jsonr *r, int code, const unsigned char *at, const char *msg)
{
	r->jr_err->je_code = code;
	r->jr_err->je_off = (size_t)(at - r->jr_start);
	if (code == JSONR_SYNTAX && at < r->jr_end && *at == '\0')
		msg = "NUL byte";
	r->jr_err->je_msg = msg;
	return -1;
}

static int
fail_eof(struct jsonr *r)
{
	return fail(r, JSONR_SYNTAX, r->jr_end, "unexpected end of data");
}

static int
fail_nomem(struct jsonr *r, const unsigned char *at)
{
	return fail(r, JSONR_NOMEM, at, "out of memory");
}

static inline const unsigned char *
skip_ws(const unsigned char *p, const unsigned char *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' ||
	    *p == '\t'))
		p++;
	return p;
}

/*
 * The first byte from p on that ends a run of plain string bytes: '"',
 * '\\' or a control byte; end if there is none. Strings are most of a
 * request, so this is the loop that matters.
 */
static inline const unsigned char *
str_scan(const unsigned char *p, const unsigned char *end)
{
#ifdef __SSE2__
	const __m128i	 quote = _mm_set1_epi8('"');
	const __m128i	 bslash = _mm_set1_epi8('\\');
	const __m128i	 ctl = _mm_set1_epi8(0x1f);
	__m128i		 v, m;
	unsigned	 mask;

	while (end - p >= 16) {
		v = _mm_loadu_si128((const __m128i *)(const void *)p);
		/* min(v, 0x1f) == v: v <= 0x1f, unsigned */
		m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
		    _mm_cmpeq_epi8(v, bslash)),
		    _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
		if ((mask = (unsigned)_mm_movemask_epi8(m)) != 0)
			return p + __builtin_ctz(mask);
		p += 16;
	}
#endif
	while (p < end && *p != '"' && *p != '\\' && *p >= 0x20)
		p++;
	return p;
}

/* The 4 hex digits at p as a number; -1 with the error set. */
static long
hex4(struct jsonr *r, const unsigned char *p)
{
	long		 v = 0;
	unsigned	 i, c;

	for (i = 0; i < 4; i++) {
		if (p + i >= r->jr_end)
			return fail_eof(r);
		c = p[i];
		if (c >= '0' && c <= '9')
			c -= '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			c = (c | 0x20) - 'a' + 10;
		else
			return fail(r, JSONR_SYNTAX, p + i,
			    "invalid \\u escape");
		v = v << 4 | c;
	}
	return v;
}

/* cp as UTF-8 at o (room for 4); a surrogate half becomes U+FFFD. */
static char *
put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80)
		*o++ = (char)cp;
	else if (cp < 0x800) {
		*o++ = (char)(0xc0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp >= 0xd800 && cp <= 0xdfff) {
		memcpy(o, "\xef\xbf\xbd", 3);
		o += 3;
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | cp >> 12);
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | cp >> 18);
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/*
 * A string from p (just past its opening quote) to its closing quote,
 * escapes decoded, into b (NUL-terminated); q: the first byte from p
 * that is not plain; *pp: past the closing quote.
 *
 * The loop copies 16 bytes at a time, storing each block whole and
 * moving the pointers only past its plain bytes, and takes the short
 * escapes (\\n, \\", ...) without leaving it: request text has one
 * every few dozen bytes. A turn writes 22 bytes at most (16 plain
 * bytes, then one escape of at most 6: U+FFFD and a 3-byte character),
 * so STR_SLACK bytes of room at the start of each turn hold it and the
 * NUL.
 */
#define STR_SLACK	32

static int
str_decode(struct jsonr *r, const unsigned char *p, const unsigned char *q,
    struct buf *b, const unsigned char **pp)
{
	const unsigned char	*end = r->jr_end;
	long			 cp, hi = 0;
	size_t			 n;
	char			*o, *lim;
	unsigned char		 c;
#ifdef __SSE2__
	const __m128i		 quote = _mm_set1_epi8('"');
	const __m128i		 bslash = _mm_set1_epi8('\\');
	const __m128i		 ctl = _mm_set1_epi8(0x1f);
	__m128i			 v;
	unsigned		 mask;
#endif

	b->b_len = 0;
	if (buf_reserve(b, (size_t)(q - p) + STR_SLACK) == -1)
		return fail_nomem(r, p);
	memcpy(b->b_data, p, (size_t)(q - p));
	o = b->b_data + (q - p);
	lim = b->b_data + b->b_cap;
	for (;;) {
		if (lim - o < STR_SLACK) {
			b->b_len = (size_t)(o - b->b_data);
			if (buf_reserve(b, b->b_len + STR_SLACK) == -1)
				return fail_nomem(r, q);
			o = b->b_data + b->b_len;
			lim = b->b_data + b->b_cap;
		}
#ifdef __SSE2__
		if (end - q >= 16) {
			v = _mm_loadu_si128((const __m128i *)(const void *)q);
			_mm_storeu_si128((__m128i *)(void *)o, v);
			mask = (unsigned)_mm_movemask_epi8(_mm_or_si128(
			    _mm_or_si128(_mm_cmpeq_epi8(v, quote),
			    _mm_cmpeq_epi8(v, bslash)),
			    _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v)));
			if (mask == 0) {
				q += 16;
				o += 16;
				continue;
			}
			mask = (unsigned)__builtin_ctz(mask);
			q += mask;
			o += mask;
		} else
#endif
		{
			/* the tail (or no SSE2): 16 bytes a turn at most */
			for (n = 0; n < 16 && q < end && *q != '"' &&
			    *q != '\\' && *q >= 0x20; n++)
				*o++ = (char)*q++;
			if (q == end)
				return fail_eof(r);
			if (n == 16)
				continue;
		}
		/* at '"', '\\' or a control byte */
		c = *q;
		if (c == '\\' && end - q >= 2 && esc_byte[q[1]] != 0) {
			*o++ = (char)esc_byte[q[1]];
			q += 2;
			continue;
		}
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(r, JSONR_SYNTAX, q,
			    "control character in string");
		if (++q == end)
			return fail_eof(r);
		if (*q != 'u')
			return fail(r, JSONR_SYNTAX, q,
			    "invalid escape in string");
		if ((cp = hex4(r, q + 1)) == -1)
			return -1;
		q += 5;
		/*
		 * A high surrogate pairs with a low one escaped right after
		 * it (hi: one was, the turn before); otherwise it is U+FFFD
		 * and whatever came next is read as it is, as json-c does.
		 */
		if (hi != 0) {
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				o = put_utf8(o, (unsigned)(0x10000 +
				    ((hi - 0xd800) << 10) + (cp - 0xdc00)));
				hi = 0;
				continue;
			}
			o = put_utf8(o, 0xfffd);
			hi = 0;
		}
		if (cp >= 0xd800 && cp <= 0xdbff && end - q >= 2 &&
		    q[0] == '\\' && q[1] == 'u')
			hi = cp;
		else
			o = put_utf8(o, (unsigned)cp);
	}
	b->b_len = (size_t)(o - b->b_data);
	b->b_data[b->b_len] = '\0';
	*pp = q + 1;
	return 0;
}

/* A number from *pp, RFC 8259's grammar; *pp: past it. */
static int
parse_number(struct jsonr *r, const unsigned char **pp,
    struct json_object **vp)
{
	const unsigned char	*p = *pp, *start = p, *end = r->jr_end;
	uint64_t		 v = 0;
	unsigned		 d;
	int			 neg = 0, dbl = 0, over = 0;
	char			 small[64], *text;
	double			 x;
	size_t			 n;

	if (*p == '-') {
		neg = 1;
		if (++p == end)
			return fail_eof(r);
	}
	if (*p == '0') {
		if (++p < end && *p >= '0' && *p <= '9')
			return fail(r, JSONR_SYNTAX, p,
			    "leading zero in number");
	} else if (*p >= '1' && *p <= '9') {
		for (; p < end && *p >= '0' && *p <= '9'; p++) {
			d = *p - '0';
			if (v > (UINT64_MAX - d) / 10)
				over = 1;
			else
				v = v * 10 + d;
		}
	} else
		return fail(r, JSONR_SYNTAX, p, "invalid number");
	if (p < end && *p == '.') {
		dbl = 1;
		if (++p == end)
			return fail_eof(r);
		if (*p < '0' || *p > '9')
			return fail(r, JSONR_SYNTAX, p, "invalid number");
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		dbl = 1;
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end)
			return fail_eof(r);
		if (*p < '0' || *p > '9')
			return fail(r, JSONR_SYNTAX, p, "invalid number");
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	*pp = p;
	if (!dbl) {
		/* json-c's strtoll/strtoull saturate; so do these */
		if (neg)
			*vp = json_object_new_int64(over ||
			    v >= (uint64_t)INT64_MAX + 1 ? INT64_MIN :
			    -(int64_t)v);
		else if (over || v > INT64_MAX)
			*vp = json_object_new_uint64(over ? UINT64_MAX : v);
		else
			*vp = json_object_new_int64((int64_t)v);
		return *vp == NULL ? fail_nomem(r, start) : 0;
	}
	/* a double keeps its text, which json-c prints back as it was */
	n = (size_t)(p - start);
	if (n < sizeof(small))
		text = small;
	else if ((text = malloc(n + 1)) == NULL)
		return fail_nomem(r, start);
	memcpy(text, start, n);
	text[n] = '\0';
	pthread_once(&c_locale_once, c_locale_init);
	x = c_locale != (locale_t)0 ? strtod_l(text, NULL, c_locale) :
	    strtod(text, NULL);
	*vp = json_object_new_double_s(x, text);
	if (text != small)
		free(text);
	return *vp == NULL ? fail_nomem(r, start) : 0;
}

/* true, false or null at *pp (whose first byte matched lit's). */
static int
parse_literal(struct jsonr *r, const unsigned char **pp, const char *lit)
{
	const unsigned char	*p = *pp;
	size_t			 i, n = strlen(lit);

	for (i = 0; i < n; i++) {
		if (p + i == r->jr_end)
			return fail_eof(r);
		if (p[i] != (unsigned char)lit[i])
			return fail(r, JSONR_SYNTAX, p + i,
			    "unexpected character");
	}
	*pp = p + n;
	return 0;
}

/* Hand v to the innermost open container (under key, for an object);
 * v is consumed either way. */
static int
attach(struct jsonr *r, struct jsonr_level *top, struct json_object *v,
    const unsigned char *at)
{
	int	 rc;

	if (top->jl_is_obj)
		rc = json_object_object_add(top->jl_obj, r->jr_key.b_data, v);
	else
		rc = json_object_array_add(top->jl_obj, v);
	if (rc != 0) {
		json_object_put(v);
		return fail_nomem(r, at);
	}
	return 0;
}

/*
 * The reader: a loop over values with an explicit stack of the open
 * containers, so a deep body costs no C stack. A container joins its
 * parent as soon as it opens, so the root owns everything made so far
 * and one json_object_put cleans up after an error.
 */
static struct json_object *
jsonr_run(struct jsonr *r, struct jsonr_level *lv, int max_depth)
{
	const unsigned char	*p = r->jr_start, *end = r->jr_end, *q;
	struct json_object	*root = NULL, *v;
	int			 sp = 0, is_obj;

	p = skip_ws(p, end);
	if (p == end) {
		fail_eof(r);
		r->jr_err->je_code = JSONR_EMPTY;
		return NULL;
	}
 value:
	if (p == end) {
		fail_eof(r);
		goto bad;
	}
	if (sp >= max_depth) {
		fail(r, JSONR_DEPTH, p, "nesting too deep");
		goto bad;
	}
	switch (*p) {
	case '{':
	case '[':
		is_obj = *p++ == '{';
		if ((v = is_obj ? json_object_new_object() :
		    json_object_new_array()) == NULL) {
			fail_nomem(r, p - 1);
			goto bad;
		}
		if (sp == 0)
			root = v;
		else if (attach(r, &lv[sp - 1], v, p - 1) == -1)
			goto bad;
		lv[sp].jl_obj = v;
		lv[sp].jl_is_obj = is_obj;
		sp++;
		p = skip_ws(p, end);
		if (p < end && *p == (is_obj ? '}' : ']')) {
			p++;
			sp--;
			goto next;
		}
		if (is_obj)
			goto key;
		goto value;
	case '"':
		q = str_scan(++p, end);
		if (q < end && *q == '"') {
			v = json_object_new_string_len((const char *)p,
			    (int)(q - p));
			p = q + 1;
		} else {
			if (str_decode(r, p, q, &r->jr_str, &p) == -1)
				goto bad;
			v = json_object_new_string_len(r->jr_str.b_data,
			    (int)r->jr_str.b_len);
		}
		if (v == NULL) {
			fail_nomem(r, p);
			goto bad;
		}
		break;
	case '-':
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		if (parse_number(r, &p, &v) == -1)
			goto bad;
		break;
	case 't':
		if (parse_literal(r, &p, "true") == -1)
			goto bad;
		if ((v = json_object_new_boolean(1)) == NULL) {
			fail_nomem(r, p);
			goto bad;
		}
		break;
	case 'f':
		if (parse_literal(r, &p, "false") == -1)
			goto bad;
		if ((v = json_object_new_boolean(0)) == NULL) {
			fail_nomem(r, p);
			goto bad;
		}
		break;
	case 'n':
		if (parse_literal(r, &p, "null") == -1)
			goto bad;
		v = NULL;
		break;
	default:
		fail(r, JSONR_SYNTAX, p, "unexpected character");
		goto bad;
	}
	/* a scalar */
	if (sp == 0) {
		root = v;
		goto next;
	}
	if (attach(r, &lv[sp - 1], v, p) == -1)
		goto bad;
 next:
	/* after a value: a separator, a closing bracket or the end */
	p = skip_ws(p, end);
	if (sp == 0) {
		if (p != end) {
			fail(r, JSONR_SYNTAX, p,
			    "unexpected data after the value");
			goto bad;
		}
		return root;
	}
	if (p == end) {
		fail_eof(r);
		goto bad;
	}
	if (lv[sp - 1].jl_is_obj) {
		if (*p == '}') {
			p++;
			sp--;
			goto next;
		}
		if (*p != ',') {
			fail(r, JSONR_SYNTAX, p,
			    "object value separator ',' expected");
			goto bad;
		}
		p = skip_ws(p + 1, end);
		goto key;
	}
	if (*p == ']') {
		p++;
		sp--;
		goto next;
	}
	if (*p != ',') {
		fail(r, JSONR_SYNTAX, p, "array value separator ',' expected");
		goto bad;
	}
	p = skip_ws(p + 1, end);
	goto value;
 key:
	/* a key is NUL-terminated for json-c, which ends it at a \u0000 */
	if (p == end) {
		fail_eof(r);
		goto bad;
	}
	if (*p != '"') {
		fail(r, JSONR_SYNTAX, p,
		    "quoted object property name expected");
		goto bad;
	}
	q = str_scan(++p, end);
	if (q < end && *q == '"') {
		r->jr_key.b_len = 0;
		if (buf_append(&r->jr_key, p, (size_t)(q - p)) == -1) {
			fail_nomem(r, p);
			goto bad;
		}
		p = q + 1;
	} else if (str_decode(r, p, q, &r->jr_key, &p) == -1)
		goto bad;
	p = skip_ws(p, end);
	if (p == end) {
		fail_eof(r);
		goto bad;
	}
	if (*p != ':') {
		fail(r, JSONR_SYNTAX, p,
		    "object property name separator ':' expected");
		goto bad;
	}
	p = skip_ws(p + 1, end);
	goto value;
 bad:
	json_object_put(root);
	return NULL;
}

struct json_object *
jsonr_parse(const char *s, size_t len, int max_depth, struct jsonr_err *err)
{
	struct jsonr		 r;
	struct jsonr_level	*lv;
	struct json_object	*o;
	struct jsonr_err	 dummy;

	if (err == NULL)
		err = &dummy;
	memset(err, 0, sizeof(*err));
	err->je_msg = "success";
	memset(&r, 0, sizeof(r));
	r.jr_start = (const unsigned char *)s;
	r.jr_end = r.jr_start + len;
	r.jr_err = err;
	if (len > INT_MAX) {	/* json-c's lengths are ints */
		fail(&r, JSONR_TOOBIG, r.jr_start, "input too large");
		return NULL;
	}
	if (max_depth < 1)
		max_depth = 1;
	if ((lv = calloc((size_t)max_depth, sizeof(*lv))) == NULL) {
		fail_nomem(&r, r.jr_start);
		return NULL;
	}
	buf_init(&r.jr_key);
	buf_init(&r.jr_str);
	o = jsonr_run(&r, lv, max_depth);
	buf_free(&r.jr_key);
	buf_free(&r.jr_str);
	free(lv);
	return o;
}
