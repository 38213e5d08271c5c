/*
 * http.c - the HTTP/1.1 request parser, the chunked body decoder and the
 * response head writer. Used by the workers (worker.c), one connection
 * at a time; nothing here does I/O, allocates (except into the caller's
 * struct buf) or logs, so it can be fuzzed alone (tests/fuzz/fuzz_http.c).
 *
 * The parser is strict on purpose: qrelayd sits on the network edge, and
 * every ambiguity two HTTP implementations may resolve differently (bare
 * LF, obs-fold, Content-Length next to Transfer-Encoding, two different
 * lengths, codings other than chunked) is a request-smuggling vector, so
 * all of them are refused instead of guessed at. It is fed the whole
 * buffer each time and re-parses from the start (picohttpparser style);
 * it returns an error as soon as the bytes seen so far cannot begin a
 * valid request, so a client sending garbage learns at once.
 */
#include <string.h>
#include <strings.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "qrelayd.h"

#define C_TOKEN		0x01	/* tchar (RFC 9110 5.6.2) */
#define C_VALUE		0x02	/* field-vchar, SP, HTAB */
#define C_TARGET	0x04	/* request-target bytes: no CTL, no SP */

#define TOK		(C_TOKEN | C_VALUE | C_TARGET)
#define VT		(C_VALUE | C_TARGET)

static const unsigned char http_ctab[256] = {
	['\t'] = C_VALUE, [' '] = C_VALUE,
	['!'] = TOK, ['"'] = VT, ['#'] = TOK, ['$'] = TOK, ['%'] = TOK,
	['&'] = TOK, ['\''] = TOK, ['('] = VT, [')'] = VT, ['*'] = TOK,
	['+'] = TOK, [','] = VT, ['-'] = TOK, ['.'] = TOK, ['/'] = VT,
	['0' ... '9'] = TOK, [':' ... '@'] = VT,
	['A' ... 'Z'] = TOK,
	['['] = VT, ['\\'] = VT, [']'] = VT, ['^'] = TOK, ['_'] = TOK,
	['`'] = TOK, ['a' ... 'z'] = TOK,
	['{'] = VT, ['|'] = TOK, ['}'] = VT, ['~'] = TOK,
	[0x80 ... 0xff] = VT,	/* obs-text */
};

#define CLS(c, m)	(http_ctab[(unsigned char)(c)] & (m))
#define REP8(c)		(0x0101010101010101ULL * (c))

/*
 * Targets and field values are long runs of plain text; find the first
 * byte that is a control (below lo) or DEL sixteen bytes at a time, then
 * let the table decide about that byte (HTAB is fine in a value). SSE2
 * is part of x86-64; elsewhere the table alone does the work.
 */
static inline const char *
http_scan(const char *p, const char *end, unsigned char cls, int lo)
{
#ifdef __SSE2__
	const __m128i	 vlo = _mm_set1_epi8((char)(lo - 1));
	const __m128i	 vdel = _mm_set1_epi8(0x7f);
	__m128i		 v;
	unsigned	 m;

	for (;;) {
		if (end - p < 16)
			break;
		v = _mm_loadu_si128((const __m128i *)(const void *)p);
		m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
		    _mm_cmpeq_epi8(_mm_min_epu8(v, vlo), v),
		    _mm_cmpeq_epi8(v, vdel)));
		if (m == 0) {
			p += 16;
			continue;
		}
		p += __builtin_ctz(m);
		if (!CLS(*p, cls))
			return p;
		p++;
	}
#endif
	while (p < end && CLS(*p, cls))
		p++;
	return p;
}

/* Header names are short; unrolled so the bound is checked once per four
 * bytes. */
static inline const char *
http_scan_token(const char *p, const char *end)
{
	while (end - p >= 4) {
		if (!CLS(p[0], C_TOKEN))
			return p;
		if (!CLS(p[1], C_TOKEN))
			return p + 1;
		if (!CLS(p[2], C_TOKEN))
			return p + 2;
		if (!CLS(p[3], C_TOKEN))
			return p + 3;
		p += 4;
	}
	while (p < end && CLS(*p, C_TOKEN))
		p++;
	return p;
}

/*
 * Case-insensitive compare against a lowercase literal of letters, digits
 * and '-'. OR-ing 0x20 folds case; on bytes the parser has already
 * accepted (tokens, field values) it cannot turn anything else into one
 * of those characters.
 */
static inline int
http_lc_eq(const char *s, size_t n, const char *lit, size_t litlen)
{
	uint64_t	 a, b;
	size_t		 i;

	if (n != litlen)
		return 0;
	if (n >= 8) {
		/* whole words; the last one may overlap the one before */
		for (i = 0; i + 8 < n; i += 8) {
			memcpy(&a, s + i, 8);
			memcpy(&b, lit + i, 8);
			if ((a | REP8(0x20)) != b)
				return 0;
		}
		memcpy(&a, s + n - 8, 8);
		memcpy(&b, lit + n - 8, 8);
		return (a | REP8(0x20)) == b;
	}
	for (i = 0; i < n; i++)
		if ((s[i] | 0x20) != lit[i])
			return 0;
	return 1;
}

#define NAME_IS(h, lit)	http_lc_eq((h)->h_name, (h)->h_name_len, lit, \
	sizeof(lit) - 1)
#define VALUE_IS(v, n, lit) http_lc_eq(v, n, lit, sizeof(lit) - 1)

static int
http_method_id(const char *m, size_t n)
{
	switch (n) {
	case 3:
		if (memcmp(m, "GET", 3) == 0)
			return HTTP_GET;
		if (memcmp(m, "PUT", 3) == 0)
			return HTTP_PUT;
		break;
	case 4:
		if (memcmp(m, "POST", 4) == 0)
			return HTTP_POST;
		if (memcmp(m, "HEAD", 4) == 0)
			return HTTP_HEAD;
		break;
	case 5:
		if (memcmp(m, "PATCH", 5) == 0)
			return HTTP_PATCH;
		break;
	case 6:
		if (memcmp(m, "DELETE", 6) == 0)
			return HTTP_DELETE;
		break;
	case 7:
		if (memcmp(m, "OPTIONS", 7) == 0)
			return HTTP_OPTIONS;
		break;
	}
	return HTTP_OTHER;
}

/* Content-Length: 1*DIGIT, nothing else; a cap keeps sums from
 * overflowing anywhere downstream. */
#define HTTP_CL_MAX	((uint64_t)1 << 62)

static int64_t
http_parse_cl(const char *v, size_t n)
{
	uint64_t	 x = 0;
	unsigned	 d;
	size_t		 i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		d = (unsigned char)v[i] - '0';
		if (d > 9 || x > (HTTP_CL_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	return (int64_t)x;
}

/* Connection is a comma-separated token list; only two tokens matter. */
static void
http_connection(const char *v, size_t n, int *close, int *keep)
{
	const char	*e = v + n, *s, *t;

	while (v < e) {
		while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
			v++;
		s = v;
		while (v < e && *v != ',')
			v++;
		t = v;
		while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if (VALUE_IS(s, (size_t)(t - s), "close"))
			*close = 1;
		else if (VALUE_IS(s, (size_t)(t - s), "keep-alive"))
			*keep = 1;
	}
}

/* The framing and connection fields, once the head is complete. */
static int
http_derive(struct http_req *rq)
{
	const struct http_hdr	*h, *e;
	int64_t			 cl;
	int			 nhost = 0, nte = 0, te_bad = 0, close = 0;
	int			 keep = 0;

	e = rq->rq_hdrs + rq->rq_nhdrs;
	for (h = rq->rq_hdrs; h < e; h++) {
		switch (h->h_name_len) {
		case 4:
			if (NAME_IS(h, "host"))
				nhost++;
			break;
		case 6:
			if (!NAME_IS(h, "expect") || rq->rq_minor == 0)
				break;	/* HTTP/1.0 has no Expect (RFC 9110 10.1.1) */
			if (!VALUE_IS(h->h_value, h->h_value_len, "100-continue"))
				return -417;
			rq->rq_expect_continue = 1;
			break;
		case 10:
			if (NAME_IS(h, "connection"))
				http_connection(h->h_value, h->h_value_len,
				    &close, &keep);
			break;
		case 14:
			if (!NAME_IS(h, "content-length"))
				break;
			if ((cl = http_parse_cl(h->h_value, h->h_value_len)) < 0)
				return -400;
			if (rq->rq_content_length >= 0 &&
			    rq->rq_content_length != cl)
				return -400;
			rq->rq_content_length = cl;
			break;
		case 17:
			if (!NAME_IS(h, "transfer-encoding"))
				break;
			if (h->h_value_len == 0)
				return -400;
			nte++;
			if (!VALUE_IS(h->h_value, h->h_value_len, "chunked"))
				te_bad = 1;
			break;
		}
	}
	if (nte) {
		/* RFC 9112 6.1: TE in 1.0 or next to CL is faulty framing */
		if (rq->rq_minor == 0 || rq->rq_content_length >= 0)
			return -400;
		if (nte > 1 || te_bad)	/* "chunked" twice is a list too */
			return -501;
		rq->rq_chunked = 1;
	}
	if (nhost > 1 || (rq->rq_minor == 1 && nhost == 0))
		return -400;
	if (rq->rq_minor == 1)
		rq->rq_keep_alive = !close;
	else
		rq->rq_keep_alive = keep && !close;
	return 0;
}

int
http_parse_request(const char *buf, size_t len, struct http_req *rq,
    size_t max_headers)
{
	const char	*p = buf, *end, *tok, *v;
	struct http_hdr	*h;
	size_t		 n, i;
	int		 rc;

	if (len > INT_MAX)
		len = INT_MAX;	/* the caller's head limit is far lower */
	end = buf + len;
	if (max_headers > QR_MAX_HEADERS)
		max_headers = QR_MAX_HEADERS;
	rq->rq_nhdrs = 0;
	rq->rq_query = NULL;
	rq->rq_query_len = 0;
	rq->rq_content_length = -1;
	rq->rq_chunked = 0;
	rq->rq_keep_alive = 0;
	rq->rq_expect_continue = 0;

	/* RFC 9112 2.2: ignore empty lines before the request line (a
	 * client's stray CRLF after a body). */
	while (p < end && *p == '\r') {
		if (end - p < 2)
			return 0;
		if (p[1] != '\n')
			return -400;
		p += 2;
	}

	/* method SP */
	tok = p;
	while (p < end && CLS(*p, C_TOKEN))
		p++;
	if (p == end)
		return 0;
	if (*p != ' ' || p == tok)
		return -400;
	rq->rq_method_s = tok;
	rq->rq_method_len = (size_t)(p - tok);
	rq->rq_method = http_method_id(tok, rq->rq_method_len);
	p++;

	/* request-target SP: origin-form, or "*" for OPTIONS */
	if (p == end)
		return 0;
	if (*p != '/' && *p != '*')
		return -400;
	tok = p;
	p = http_scan(p, end, C_TARGET, 0x21);
	if (p == end)
		return 0;
	if (*p != ' ')
		return -400;
	rq->rq_target = tok;
	rq->rq_target_len = (size_t)(p - tok);
	if (*tok == '*' && (rq->rq_target_len != 1 ||
	    rq->rq_method != HTTP_OPTIONS))
		return -400;
	rq->rq_path = tok;
	rq->rq_path_len = rq->rq_target_len;
	if ((v = memchr(tok, '?', rq->rq_target_len)) != NULL) {
		rq->rq_path_len = (size_t)(v - tok);
		rq->rq_query = v + 1;
		rq->rq_query_len = rq->rq_target_len - rq->rq_path_len - 1;
	}
	p++;

	/* "HTTP/" DIGIT "." DIGIT CRLF, checked as far as it has arrived */
	n = (size_t)(end - p) < 10 ? (size_t)(end - p) : 10;
	for (i = 0; i < n; i++) {
		switch (i) {
		case 5:
		case 7:
			rc = p[i] >= '0' && p[i] <= '9';
			break;
		default:
			rc = p[i] == "HTTP/1.1\r\n"[i];
			break;
		}
		if (!rc)
			return -400;
	}
	if (n < 10)
		return 0;
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
		return -505;
	rq->rq_minor = p[7] - '0';
	p += 10;

	/* header fields */
	for (;;) {
		if (p == end)
			return 0;
		if (*p == '\r') {
			if (end - p < 2)
				return 0;
			if (p[1] != '\n')
				return -400;
			p += 2;
			break;
		}
		if (rq->rq_nhdrs == max_headers)
			return -431;
		/* a name: no leading whitespace (obs-fold), none before ':' */
		tok = p;
		p = http_scan_token(p, end);
		if (p == end)
			return 0;
		if (*p != ':' || p == tok)
			return -400;
		h = &rq->rq_hdrs[rq->rq_nhdrs];
		h->h_name = tok;
		h->h_name_len = (size_t)(p - tok);
		p++;
		if (p < end && *p == ' ')	/* the usual single SP */
			p++;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		tok = p;
		p = http_scan(p, end, C_VALUE, 0x20);
		if (p == end)
			return 0;
		if (*p != '\r')
			return -400;	/* bare LF or a control byte */
		if (end - p < 2)
			return 0;
		if (p[1] != '\n')
			return -400;
		v = p;
		while (v > tok && (v[-1] == ' ' || v[-1] == '\t'))
			v--;
		h->h_value = tok;
		h->h_value_len = (size_t)(v - tok);
		rq->rq_nhdrs++;
		p += 2;
	}
	if ((rc = http_derive(rq)) < 0)
		return rc;
	return (int)(p - buf);
}

const struct http_hdr *
http_header(const struct http_req *rq, const char *name)
{
	const struct http_hdr	*h, *e;
	size_t			 n = strlen(name);

	e = rq->rq_hdrs + rq->rq_nhdrs;
	for (h = rq->rq_hdrs; h < e; h++)
		if (h->h_name_len == n && strncasecmp(h->h_name, name, n) == 0)
			return h;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* chunked request bodies (RFC 9112 7.1)                               */

enum { CK_SIZE, CK_SIZE_WS, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR,
	CK_DATA_LF, CK_TRAILER, CK_TNAME, CK_TVALUE, CK_TLF, CK_END_LF,
	CK_DONE, CK_ERROR };

#define CK_MAX_DIGITS	15	/* < 2^60: no overflow, no silly sizes */
#define CK_MAX_LINE	4096	/* chunk-size line with its extensions */
#define CK_MAX_TRAILERS	8192

void
http_chunked_init(struct http_chunked *ck)
{
	memset(ck, 0, sizeof(*ck));
	ck->ck_state = CK_SIZE;
}

static int
http_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
http_chunked_feed(struct http_chunked *ck, const char *in, size_t inlen,
    size_t *consumed, struct buf *out, size_t max)
{
	const char	*p = in, *end = in + inlen;
	size_t		 n;
	int		 c, d, rc = 0;

	if (ck->ck_state == CK_DONE) {
		*consumed = 0;
		return 1;
	}
	if (ck->ck_state == CK_ERROR) {
		*consumed = 0;
		return -(int)ck->ck_remaining;
	}
	while (p < end) {
		c = (unsigned char)*p;
		switch (ck->ck_state) {
		case CK_SIZE:
			if ((d = http_hexval(c)) >= 0) {
				if (ck->ck_line >= CK_MAX_DIGITS)
					goto bad;
				ck->ck_remaining = ck->ck_remaining << 4 | d;
				break;
			}
			if (ck->ck_line == 0)
				goto bad;
			if (c == '\r')
				ck->ck_state = CK_SIZE_LF;
			else if (c == ';')
				ck->ck_state = CK_EXT;
			else if (c == ' ' || c == '\t')
				ck->ck_state = CK_SIZE_WS;	/* BWS ";" */
			else
				goto bad;
			break;
		case CK_SIZE_WS:
			if (c == ';')
				ck->ck_state = CK_EXT;
			else if (c != ' ' && c != '\t')
				goto bad;
			break;
		case CK_EXT:
			if (c == '\r')
				ck->ck_state = CK_SIZE_LF;
			else if (!CLS(c, C_VALUE))
				goto bad;
			break;
		case CK_SIZE_LF:
			if (c != '\n')
				goto bad;
			if (ck->ck_remaining == 0) {
				ck->ck_state = CK_TRAILER;
			} else {
				if (ck->ck_remaining > max ||
				    ck->ck_total > max - ck->ck_remaining) {
					rc = -413;
					goto fail;
				}
				ck->ck_state = CK_DATA;
			}
			ck->ck_line = 0;
			p++;
			continue;
		case CK_DATA:
			n = (size_t)(end - p);
			if (n > ck->ck_remaining)
				n = (size_t)ck->ck_remaining;
			if (buf_append(out, p, n) == -1) {
				rc = -500;
				goto fail;
			}
			ck->ck_total += n;
			ck->ck_remaining -= n;
			p += n;
			if (ck->ck_remaining == 0)
				ck->ck_state = CK_DATA_CR;
			continue;
		case CK_DATA_CR:
			if (c != '\r')
				goto bad;
			ck->ck_state = CK_DATA_LF;
			break;
		case CK_DATA_LF:
			if (c != '\n')
				goto bad;
			ck->ck_state = CK_SIZE;
			ck->ck_line = 0;
			p++;
			continue;
		case CK_TRAILER:
			if (c == '\r')
				ck->ck_state = CK_END_LF;
			else if (CLS(c, C_TOKEN))
				ck->ck_state = CK_TNAME;
			else
				goto bad;	/* obs-fold or garbage */
			break;
		case CK_TNAME:
			if (c == ':')
				ck->ck_state = CK_TVALUE;
			else if (!CLS(c, C_TOKEN))
				goto bad;
			break;
		case CK_TVALUE:
			if (c == '\r')
				ck->ck_state = CK_TLF;
			else if (!CLS(c, C_VALUE))
				goto bad;
			break;
		case CK_TLF:
			if (c != '\n')
				goto bad;
			ck->ck_state = CK_TRAILER;
			break;
		case CK_END_LF:
			if (c != '\n')
				goto bad;
			ck->ck_state = CK_DONE;
			*consumed = (size_t)(p + 1 - in);
			return 1;
		}
		/* one byte of a size, extension or trailer line */
		if (ck->ck_state >= CK_TRAILER) {
			if (++ck->ck_trailers > CK_MAX_TRAILERS) {
				rc = -431;
				goto fail;
			}
		} else if (++ck->ck_line > CK_MAX_LINE)
			goto bad;
		p++;
	}
	*consumed = inlen;
	return 0;
bad:
	rc = -400;
fail:
	ck->ck_state = CK_ERROR;
	ck->ck_remaining = (uint64_t)-rc;
	*consumed = (size_t)(p - in);
	return rc;
}

/* ------------------------------------------------------------------ */
/* responses                                                           */

const char *
http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 529: return "Site Overloaded";
	}
	return "Unknown";
}

static inline char *
http_put(char *w, const char *s, size_t n)
{
	memcpy(w, s, n);
	return w + n;
}
#define PUTLIT(w, lit)	http_put(w, lit, sizeof(lit) - 1)

static char *
http_put_u64(char *w, uint64_t v)
{
	char	 tmp[20];
	size_t	 n = 0;

	do
		tmp[n++] = '0' + v % 10;
	while ((v /= 10) != 0);
	while (n)
		*w++ = tmp[--n];
	return w;
}

/* The Date header changes once a second; a worker writes thousands of
 * heads a second, so format it once per second. */
static const char *
http_date(size_t *lenp)
{
	static time_t	 last = (time_t)-1;
	static char	 date[40];
	static size_t	 len;
	time_t		 now = now_wall();

	if (now != last) {
		fmt_rfc1123(now, date);
		len = strlen(date);
		last = now;
	}
	*lenp = len;
	return date;
}

int
http_write_head(struct buf *b, int status, const char *ctype,
    int64_t content_length, int keep_alive, const char *extra)
{
	const char	*reason, *date;
	size_t		 rlen, clen, xlen, dlen = 0;
	char		*w;

	if (status < 100 || status > 999)
		status = 500;
	reason = http_reason(status);
	rlen = strlen(reason);
	clen = ctype ? strlen(ctype) : 0;
	xlen = extra ? strlen(extra) : 0;
	date = status >= 200 ? http_date(&dlen) : NULL;
	/* fixed text and numbers fit in 160 bytes */
	if (buf_reserve(b, 160 + rlen + clen + xlen + dlen) == -1)
		return -1;
	w = b->b_data + b->b_len;
	w = PUTLIT(w, "HTTP/1.1 ");
	*w++ = '0' + status / 100;
	*w++ = '0' + status / 10 % 10;
	*w++ = '0' + status % 10;
	*w++ = ' ';
	w = http_put(w, reason, rlen);
	w = PUTLIT(w, "\r\n");
	if (status >= 200) {
		w = PUTLIT(w, "Server: qrelayd\r\nDate: ");
		w = http_put(w, date, dlen);
		w = PUTLIT(w, "\r\n");
		if (ctype) {
			w = PUTLIT(w, "Content-Type: ");
			w = http_put(w, ctype, clen);
			w = PUTLIT(w, "\r\n");
		}
		if (status == 204 || status == 304)
			;	/* RFC 9110 8.6: no length for these */
		else if (content_length >= 0) {
			w = PUTLIT(w, "Content-Length: ");
			w = http_put_u64(w, (uint64_t)content_length);
			w = PUTLIT(w, "\r\n");
		} else if (content_length == -1)
			w = PUTLIT(w, "Transfer-Encoding: chunked\r\n");
		if (keep_alive)
			w = PUTLIT(w, "Connection: keep-alive\r\n");
		else
			w = PUTLIT(w, "Connection: close\r\n");
	}
	if (extra)
		w = http_put(w, extra, xlen);
	w = PUTLIT(w, "\r\n");
	b->b_len = (size_t)(w - b->b_data);
	b->b_data[b->b_len] = '\0';
	return 0;
}

int
http_write_chunk(struct buf *b, const void *p, size_t n)
{
	static const char	 hex[] = "0123456789abcdef";
	char			*w, tmp[16];
	size_t			 i = 0, v = n;

	if (n == 0)
		return buf_append(b, "0\r\n\r\n", 5);
	if (buf_reserve(b, n + 2 * sizeof(size_t) + 4) == -1)
		return -1;
	do
		tmp[i++] = hex[v & 0xf];
	while ((v >>= 4) != 0);
	w = b->b_data + b->b_len;
	while (i)
		*w++ = tmp[--i];
	w = PUTLIT(w, "\r\n");
	w = http_put(w, p, n);
	w = PUTLIT(w, "\r\n");
	b->b_len = (size_t)(w - b->b_data);
	b->b_data[b->b_len] = '\0';
	return 0;
}

/*
 * The worker parses in its read buffer, then copies the head out so the
 * buffer may grow while the body arrives: every pointer moves along.
 */
void
http_req_rebase(struct http_req *q, const char *from, const char *to)
{
	size_t	 i;

#define REBASE(p)	do { if ((p) != NULL) (p) = to + ((p) - from); } while (0)
	REBASE(q->rq_method_s);
	REBASE(q->rq_target);
	REBASE(q->rq_path);
	REBASE(q->rq_query);
	for (i = 0; i < q->rq_nhdrs; i++) {
		REBASE(q->rq_hdrs[i].h_name);
		REBASE(q->rq_hdrs[i].h_value);
	}
#undef REBASE
}
