/*
 * fuzz_http.c - libFuzzer target for http.c. Parses the input as a
 * request head; when it is complete and chunked, feeds the rest to the
 * chunked decoder in pieces whose sizes come from the input itself, and
 * checks that the answer does not depend on how the body was cut.
 * Invariants are checked with abort() so the fuzzer reports them.
 */
#include <stdlib.h>
#include <string.h>

#include "qrelayd.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
const char *__ubsan_default_options(void);

/* Undefined behaviour is a finding, not a warning to scroll past. */
const char *
__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

#define BODY_MAX	65536

static void
check_span(const char *p, size_t n, const char *buf, size_t len)
{
	if (p == NULL) {
		if (n != 0)
			abort();
		return;
	}
	if (p < buf || n > len || p + n > buf + len)
		abort();
}

/* Decodes body with cuts taken from seed; returns the status and leaves
 * the decoded bytes in out and the input used in *used. */
static int
decode(const char *body, size_t blen, const uint8_t *seed, size_t nseed,
    struct buf *out, size_t *used)
{
	struct http_chunked	 ck;
	size_t			 off = 0, piece, c, i = 0;
	int			 rc = 0;

	http_chunked_init(&ck);
	*used = 0;
	while (off < blen) {
		piece = nseed ? 1 + seed[i++ % nseed] % 64 : blen;
		if (piece > blen - off)
			piece = blen - off;
		rc = http_chunked_feed(&ck, body + off, piece, &c, out, BODY_MAX);
		if (c > piece)
			abort();
		if (ck.ck_total > BODY_MAX || out->b_len != ck.ck_total)
			abort();
		off += c;
		*used += c;
		if (rc != 0)
			break;
		if (c != piece)		/* "more" must take everything */
			abort();
	}
	if (rc < 0 && rc != -400 && rc != -413 && rc != -431)
		abort();
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_req	 rq;
	const struct http_hdr	*h;
	const char		*buf = (const char *)data;
	struct buf		 a, b;
	size_t			 i, used_a, used_b, blen;
	int			 n, rc_a, rc_b;

	n = http_parse_request(buf, size, &rq, 64);
	if (n > 0) {
		if ((size_t)n > size)
			abort();
		if (rq.rq_nhdrs > 64)
			abort();
		check_span(rq.rq_method_s, rq.rq_method_len, buf, (size_t)n);
		check_span(rq.rq_target, rq.rq_target_len, buf, (size_t)n);
		check_span(rq.rq_path, rq.rq_path_len, buf, (size_t)n);
		check_span(rq.rq_query, rq.rq_query_len, buf, (size_t)n);
		if (rq.rq_method_len == 0 || rq.rq_path_len == 0)
			abort();
		if (rq.rq_minor != 0 && rq.rq_minor != 1)
			abort();
		if (rq.rq_chunked && rq.rq_content_length != -1)
			abort();
		for (i = 0; i < rq.rq_nhdrs; i++) {
			h = &rq.rq_hdrs[i];
			check_span(h->h_name, h->h_name_len, buf, (size_t)n);
			check_span(h->h_value, h->h_value_len, buf, (size_t)n);
			if (h->h_name_len == 0 || memchr(h->h_name, ':',
			    h->h_name_len) != NULL)
				abort();
			if (memchr(h->h_value, '\r', h->h_value_len) ||
			    memchr(h->h_value, '\n', h->h_value_len))
				abort();
		}
		/* a complete head stays the same head with more bytes after
		 * it, and is incomplete when cut short */
		if (http_parse_request(buf, (size_t)n - 1, &rq, 64) != 0)
			abort();
		if (http_parse_request(buf, size, &rq, 64) != n)
			abort();
	} else if (n < 0) {
		if (n != -400 && n != -417 && n != -431 && n != -501 &&
		    n != -505)
			abort();
	}

	/* the body: after a chunked head, or the whole input otherwise,
	 * so the decoder is fuzzed even when the head is refused */
	if (n > 0 && rq.rq_chunked) {
		buf += n;
		blen = size - (size_t)n;
	} else
		blen = size;
	buf_init(&a);
	buf_init(&b);
	rc_a = decode(buf, blen, NULL, 0, &a, &used_a);
	rc_b = decode(buf, blen, data, size, &b, &used_b);
	if (rc_a != rc_b || used_a != used_b || used_a > blen)
		abort();
	if (a.b_len != b.b_len || (a.b_len > 0 &&
	    memcmp(a.b_data, b.b_data, a.b_len) != 0))
		abort();
	buf_free(&a);
	buf_free(&b);
	return 0;
}
