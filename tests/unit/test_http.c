/*
 * test_http.c - unit tests for http.c: the request parser (valid forms,
 * every refusal with its exact status, incremental input, pipelining),
 * the chunked decoder (every split of the input) and the response writer.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static struct http_req	 rq;

static int
parse(const char *s)
{
	return http_parse_request(s, strlen(s), &rq, QR_MAX_HEADERS);
}

static int
span_is(const char *p, size_t n, const char *lit)
{
	return p != NULL && n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* ------------------------------------------------------------------ */
/* request line and headers                                            */

Test(http_parse, valid_get)
{
	const char	*s = "GET /v1/models?a=1&b=2 HTTP/1.1\r\n"
	    "Host: example.com\r\n"
	    "User-Agent:   curl/8.0  \r\n"
	    "Accept:\t*/*\t\r\n"
	    "Empty:\r\n"
	    "\r\n";

	cr_assert_eq(parse(s), (int)strlen(s));
	cr_expect_eq(rq.rq_method, HTTP_GET);
	cr_expect(span_is(rq.rq_method_s, rq.rq_method_len, "GET"));
	cr_expect(span_is(rq.rq_target, rq.rq_target_len, "/v1/models?a=1&b=2"));
	cr_expect(span_is(rq.rq_path, rq.rq_path_len, "/v1/models"));
	cr_expect(span_is(rq.rq_query, rq.rq_query_len, "a=1&b=2"));
	cr_expect_eq(rq.rq_minor, 1);
	cr_assert_eq(rq.rq_nhdrs, 4);
	cr_expect(span_is(rq.rq_hdrs[0].h_name, rq.rq_hdrs[0].h_name_len, "Host"));
	cr_expect(span_is(rq.rq_hdrs[0].h_value, rq.rq_hdrs[0].h_value_len,
	    "example.com"));
	cr_expect(span_is(rq.rq_hdrs[1].h_value, rq.rq_hdrs[1].h_value_len,
	    "curl/8.0"));
	cr_expect(span_is(rq.rq_hdrs[2].h_value, rq.rq_hdrs[2].h_value_len,
	    "*/*"));
	cr_expect_eq(rq.rq_hdrs[3].h_value_len, 0);
	cr_expect_eq(rq.rq_content_length, -1);
	cr_expect_eq(rq.rq_chunked, 0);
	cr_expect_eq(rq.rq_keep_alive, 1);
	cr_expect_eq(rq.rq_expect_continue, 0);
}

Test(http_parse, no_query_and_empty_query)
{
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	cr_expect(span_is(rq.rq_path, rq.rq_path_len, "/"));
	cr_expect_null(rq.rq_query);
	cr_expect_eq(rq.rq_query_len, 0);
	cr_assert_gt(parse("GET /a? HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	cr_expect(span_is(rq.rq_path, rq.rq_path_len, "/a"));
	cr_expect_not_null(rq.rq_query);
	cr_expect_eq(rq.rq_query_len, 0);
	cr_assert_gt(parse("GET /a?b?c HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	cr_expect(span_is(rq.rq_query, rq.rq_query_len, "b?c"));
}

Test(http_parse, post_content_length)
{
	const char	*s = "POST /v1/chat/completions HTTP/1.1\r\n"
	    "Host: h\r\nContent-Type: application/json\r\n"
	    "Content-Length: 13\r\n\r\n{\"a\":\"hello\"}";
	int		 n;

	n = parse(s);
	cr_assert_eq(n, (int)strlen(s) - 13);
	cr_expect_eq(rq.rq_method, HTTP_POST);
	cr_expect_eq(rq.rq_content_length, 13);
	cr_expect_eq(rq.rq_chunked, 0);
	cr_expect_str_eq(s + n, "{\"a\":\"hello\"}");
}

Test(http_parse, methods)
{
	static const struct { const char *m; int id; } t[] = {
		{ "GET", HTTP_GET }, { "HEAD", HTTP_HEAD },
		{ "POST", HTTP_POST }, { "PUT", HTTP_PUT },
		{ "DELETE", HTTP_DELETE }, { "PATCH", HTTP_PATCH },
		{ "OPTIONS", HTTP_OPTIONS }, { "get", HTTP_OTHER },
		{ "Post", HTTP_OTHER }, { "PROPFIND", HTTP_OTHER },
		{ "X-Y!#$%&'*+.^_`|~9", HTTP_OTHER },
	};
	char	 s[128];
	size_t	 i;

	for (i = 0; i < nitems(t); i++) {
		snprintf(s, sizeof(s), "%s / HTTP/1.1\r\nHost: a\r\n\r\n",
		    t[i].m);
		cr_assert_eq(parse(s), (int)strlen(s), "%s", t[i].m);
		cr_expect_eq(rq.rq_method, t[i].id, "%s", t[i].m);
		cr_expect(span_is(rq.rq_method_s, rq.rq_method_len, t[i].m));
	}
}

Test(http_parse, options_star)
{
	cr_expect_gt(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	cr_expect(span_is(rq.rq_target, rq.rq_target_len, "*"));
	cr_expect_eq(parse("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
	cr_expect_eq(parse("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
}

Test(http_parse, leading_empty_lines_ignored)
{
	const char	*s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";

	cr_expect_eq(parse(s), (int)strlen(s));
	cr_expect(span_is(rq.rq_path, rq.rq_path_len, "/"));
	cr_expect_eq(parse("\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
	cr_expect_eq(parse("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -400);
}

Test(http_parse, http10)
{
	cr_assert_gt(parse("GET / HTTP/1.0\r\n\r\n"), 0);	/* no Host needed */
	cr_expect_eq(rq.rq_minor, 0);
	cr_expect_eq(rq.rq_keep_alive, 0);
	cr_assert_gt(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_keep_alive, 1);
	cr_assert_gt(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_keep_alive, 0);
	/* Expect means nothing in 1.0 (RFC 9110 10.1.1) */
	cr_assert_gt(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\n"
	    "Content-Length: 1\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_expect_continue, 0);
	cr_expect_eq(parse("POST / HTTP/1.0\r\nExpect: x\r\n\r\n") > 0, 1);
}

Test(http_parse, keep_alive_11)
{
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_keep_alive, 0);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_keep_alive, 0);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: a\r\n"
	    "Connection: Upgrade ,  close , foo\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_keep_alive, 0);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\n"
	    "Connection: close\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_keep_alive, 0);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_keep_alive, 1);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_keep_alive, 1);
}

Test(http_parse, expect_continue)
{
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
	    "Content-Length: 5\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_expect_continue, 1);
	cr_expect_eq(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"),
	    -417);
	cr_expect_eq(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n"), -417);
}

Test(http_parse, chunked_request)
{
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: ChUnKeD\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_chunked, 1);
	cr_expect_eq(rq.rq_content_length, -1);
}

Test(http_parse, content_length_values)
{
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_content_length, 0);
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n"), 0);
	cr_expect_eq(rq.rq_content_length, 7);
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 4611686018427387904\r\n\r\n"), 0);	/* 2^62 */
	cr_expect_eq(rq.rq_content_length, (int64_t)1 << 62);
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
	    "content-length:  5 \r\n\r\n"), 0);
	cr_expect_eq(rq.rq_content_length, 5);
}

/* Every refusal, with its status. */
static const struct {
	const char	*req;
	int		 status;
} bad[] = {
	/* request line */
	{ " GET / HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -400 },
	{ "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET a HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET /\r\nHost: a\r\n\r\n", -400 },
	{ "GET / \r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\rHost: a\r\n\r\n", -400 },
	{ "GET / http/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1\r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.11\r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/11.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.x\r\nHost: a\r\n\r\n", -400 },
	{ "GET / FOO/1.1\r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505 },
	{ "GET / HTTP/1.2\r\nHost: a\r\n\r\n", -505 },
	{ "GET / HTTP/0.9\r\nHost: a\r\n\r\n", -505 },
	{ "GET / HTTP/3.0\r\n\r\n", -505 },
	{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", -400 },
	/* header lines */
	{ "GET / HTTP/1.1\r\nHost : a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHo st: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\n X: b\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\n X: b\r\nHost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\n\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\n\r\r", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX\x80: b\r\n\r\n", -400 },
	/* Host */
	{ "GET / HTTP/1.1\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", -400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", -400 },
	{ "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", -400 },
	/* Content-Length */
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1.0\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 4611686018427387905\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 99999999999999999999999\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\n"
	  "Content-Length: 18446744073709551617\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
	  "Content-Length: 6\r\n\r\n", -400 },
	/* Transfer-Encoding */
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -501 },
	{ "POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: gzip, chunked\r\n\r\n", -501 },
	{ "POST / HTTP/1.1\r\nHost: a\r\n"
	  "Transfer-Encoding: chunked, identity\r\n\r\n", -501 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n", -501 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", -501 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;a=b\r\n\r\n",
	  -501 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	  "Content-Length: 5\r\n\r\n", -400 },
	{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
	  -400 },
	/* Expect */
	{ "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue-x\r\n\r\n", -417 },
};

Test(http_parse, refusals)
{
	size_t	 i;

	for (i = 0; i < nitems(bad); i++)
		cr_expect_eq(http_parse_request(bad[i].req, strlen(bad[i].req), &rq,
		    QR_MAX_HEADERS), bad[i].status, "case %zu: %s -> %d",
		    i, bad[i].req, bad[i].status);
}

Test(http_parse, nul_in_value)
{
	static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\n"
	    "X: 0123456789\0abc\r\n\r\n";

	cr_expect_eq(http_parse_request(s, sizeof(s) - 1, &rq, 16), -400);
}

Test(http_parse, nul_in_target)
{
	static const char s[] = "GET /abcdefghij\0k HTTP/1.1\r\nHost: a\r\n\r\n";

	cr_expect_eq(http_parse_request(s, sizeof(s) - 1, &rq, 16), -400);
}

/* A refusal never turns into "need more" or another status as more
 * bytes arrive; every prefix is either 0 or the final answer. */
Test(http_parse, refusals_prefixes_stable)
{
	size_t	 i, n, len;
	int	 rc;

	for (i = 0; i < nitems(bad); i++) {
		len = strlen(bad[i].req);
		for (n = 0; n < len; n++) {
			rc = http_parse_request(bad[i].req, n, &rq,
			    QR_MAX_HEADERS);
			cr_assert(rc == 0 || rc == bad[i].status,
			    "case %zu prefix %zu -> %d", i, n, rc);
		}
	}
}

Test(http_parse, early_errors)
{
	/* garbage with no newline is refused as soon as it is invalid */
	cr_expect_eq(parse("G@T"), -400);
	cr_expect_eq(parse("GET x"), -400);
	cr_expect_eq(parse("GET /a\x01"), -400);
	cr_expect_eq(parse("GET / X"), -400);
	cr_expect_eq(parse("GET / HTTP/1.1\n"), -400);
	cr_expect_eq(parse("\x16\x03\x01\x02\x00\x01"), -400);	/* TLS hello */
	cr_expect_eq(parse("GET / HTTP/1.1\r\nHost a"), -400);
	cr_expect_eq(parse("GET / HTTP/1.1\r\n X"), -400);
	cr_expect_eq(parse("GET / HTTP/1.1\r\nX: a\n"), -400);
	/* while these are only incomplete */
	cr_expect_eq(parse(""), 0);
	cr_expect_eq(parse("GET"), 0);
	cr_expect_eq(parse("GET /"), 0);
	cr_expect_eq(parse("GET / HTTP/1."), 0);
	cr_expect_eq(parse("GET / HTTP/1.1\r"), 0);
	cr_expect_eq(parse("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0);
}

static void
check_prefixes(const char *s, size_t len)
{
	struct http_req	 full;
	size_t		 n;
	int		 rc, want;

	want = http_parse_request(s, len, &full, QR_MAX_HEADERS);
	for (n = 0; n < len; n++) {
		rc = http_parse_request(s, n, &rq, QR_MAX_HEADERS);
		if (want > 0 && n < (size_t)want)
			cr_assert_eq(rc, 0, "prefix %zu of %zu -> %d", n, len, rc);
	}
	cr_assert_eq(http_parse_request(s, len, &rq, QR_MAX_HEADERS), want);
	if (want > 0) {
		cr_expect_eq(rq.rq_nhdrs, full.rq_nhdrs);
		cr_expect_eq(rq.rq_method, full.rq_method);
		cr_expect_eq(rq.rq_content_length, full.rq_content_length);
		cr_expect_eq(rq.rq_path_len, full.rq_path_len);
	}
}

Test(http_parse, incomplete_every_offset)
{
	static const char *reqs[] = {
		"GET /v1/models?x=1 HTTP/1.1\r\nHost: localhost:62311\r\n"
		"User-Agent: test/1.0 with a rather longer value here\r\n"
		"Accept: */*\r\n\r\n",
		"POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
		"Expect: 100-continue\r\nConnection: close\r\n\r\n",
		"\r\nPUT /x HTTP/1.0\r\nTransfer-Encodin: x\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
	};
	size_t	 i;

	for (i = 0; i < nitems(reqs); i++) {
		cr_assert_gt(parse(reqs[i]), 0, "%s", reqs[i]);
		check_prefixes(reqs[i], strlen(reqs[i]));
	}
}

Test(http_parse, pipelined)
{
	const char	*s = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
	    "abc"
	    "GET /b HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
	    "GET /c";
	struct http_req	 r2;
	int		 n1, n2;

	n1 = parse(s);
	cr_assert_gt(n1, 0);
	cr_expect(span_is(rq.rq_path, rq.rq_path_len, "/a"));
	cr_assert_eq(rq.rq_content_length, 3);
	n1 += 3;
	n2 = http_parse_request(s + n1, strlen(s) - n1, &r2, QR_MAX_HEADERS);
	cr_assert_gt(n2, 0);
	cr_expect(span_is(r2.rq_path, r2.rq_path_len, "/b"));
	cr_expect_eq(r2.rq_keep_alive, 0);
	cr_expect_eq(http_parse_request(s + n1 + n2, strlen(s) - n1 - n2, &r2,
	    QR_MAX_HEADERS), 0);
	cr_expect_str_eq(s + n1 + n2, "GET /c");
}

Test(http_parse, max_headers)
{
	char	 s[8192];
	size_t	 i, o;

	o = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (i = 1; i < 10; i++)
		o += (size_t)snprintf(s + o, sizeof(s) - o, "X-%zu: %zu\r\n", i, i);
	snprintf(s + o, sizeof(s) - o, "\r\n");
	cr_expect_eq(http_parse_request(s, strlen(s), &rq, 10), (int)strlen(s));
	cr_expect_eq(rq.rq_nhdrs, 10);
	cr_expect_eq(http_parse_request(s, strlen(s), &rq, 9), -431);
	cr_expect_eq(http_parse_request(s, strlen(s), &rq, 0), -431);

	/* the hard cap holds whatever the caller asks */
	o = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (i = 1; i <= QR_MAX_HEADERS; i++)
		o += (size_t)snprintf(s + o, sizeof(s) - o, "X: %zu\r\n", i);
	snprintf(s + o, sizeof(s) - o, "\r\n");
	cr_expect_eq(http_parse_request(s, strlen(s), &rq, 100000), -431);
}

Test(http_parse, long_values)
{
	char	*s, *v;
	size_t	 n = 5000;
	int	 rc;

	v = malloc(n + 1);
	s = malloc(2 * n + 100);
	cr_assert(v && s);
	memset(v, 'v', n);
	v[n] = '\0';
	v[n / 2] = '\t';
	v[n / 3] = '\x80';
	snprintf(s, 2 * n + 100, "GET /%s HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n",
	    v + 1 + n / 2, v);
	rc = parse(s);
	cr_assert_eq(rc, (int)strlen(s));
	cr_expect_eq(rq.rq_hdrs[1].h_value_len, n);
	cr_expect_eq(rq.rq_target_len, n - n / 2);
	free(s);
	free(v);
}

Test(http_parse, header_lookup)
{
	const struct http_hdr	*h;

	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Key: one\r\n"
	    "x-key: two\r\nX-Keys: three\r\n\r\n"), 0);
	h = http_header(&rq, "x-KEY");
	cr_assert_not_null(h);
	cr_expect(span_is(h->h_value, h->h_value_len, "one"));
	h = http_header(&rq, "X-Keys");
	cr_assert_not_null(h);
	cr_expect(span_is(h->h_value, h->h_value_len, "three"));
	cr_expect_null(http_header(&rq, "X-Ke"));
	cr_expect_null(http_header(&rq, "Authorization"));
}

/* ------------------------------------------------------------------ */
/* chunked bodies                                                      */

/* Feeds in in pieces cut at the given offsets; returns the final status
 * and the total input consumed. */
static int
feed_split(const char *in, size_t len, const size_t *cuts, size_t ncuts,
    struct buf *out, size_t max, size_t *used)
{
	struct http_chunked	 ck;
	size_t			 from = 0, to, c, i;
	int			 rc = 0;

	http_chunked_init(&ck);
	*used = 0;
	for (i = 0; i <= ncuts; i++) {
		to = i < ncuts ? cuts[i] : len;
		if (to < from)
			to = from;
		rc = http_chunked_feed(&ck, in + from, to - from, &c, out, max);
		cr_assert_leq(c, to - from);
		*used += c;
		if (rc != 0)
			return rc;
		cr_assert_eq(c, to - from, "0 must consume everything");
		from = to;
	}
	return rc;
}

static const char ck_body[] =
    "5\r\nhello\r\n"
    "1;name=value;x=\"q\"\r\n \r\n"
    "A  ;ext\r\n0123456789\r\n"
    "00000000000001b\r\nabcdefghijklmnopqrstuvwxyz!\r\n"
    "0\r\nX-Trailer: yes\r\nOther:\r\n\r\n";
static const char ck_want[] =
    "hello 0123456789abcdefghijklmnopqrstuvwxyz!";

Test(http_chunked, decode_every_split)
{
	struct buf	 out;
	size_t		 len = sizeof(ck_body) - 1, cut, cut2, used;
	size_t		 cuts[2];
	int		 rc;

	buf_init(&out);
	rc = feed_split(ck_body, len, NULL, 0, &out, 1 << 20, &used);
	cr_assert_eq(rc, 1);
	cr_assert_eq(used, len);
	cr_assert_str_eq(out.b_data, ck_want);
	for (cut = 0; cut <= len; cut++) {
		buf_reset(&out);
		rc = feed_split(ck_body, len, &cut, 1, &out, 1 << 20, &used);
		cr_assert_eq(rc, 1, "cut %zu", cut);
		cr_assert_eq(used, len);
		cr_assert_eq(out.b_len, sizeof(ck_want) - 1, "cut %zu", cut);
		cr_assert(memcmp(out.b_data, ck_want, out.b_len) == 0);
	}
	/* every pair of cuts */
	for (cut = 0; cut <= len; cut += 1)
		for (cut2 = cut; cut2 <= len; cut2 += 1) {
			buf_reset(&out);
			cuts[0] = cut;
			cuts[1] = cut2;
			rc = feed_split(ck_body, len, cuts, 2, &out, 1 << 20,
			    &used);
			cr_assert_eq(rc, 1, "cuts %zu %zu", cut, cut2);
			cr_assert_eq(out.b_len, sizeof(ck_want) - 1);
		}
	buf_free(&out);
}

Test(http_chunked, byte_by_byte)
{
	struct http_chunked	 ck;
	struct buf		 out;
	size_t			 i, c, len = sizeof(ck_body) - 1;
	int			 rc = 0;

	buf_init(&out);
	http_chunked_init(&ck);
	for (i = 0; i < len; i++) {
		rc = http_chunked_feed(&ck, ck_body + i, 1, &c, &out, 1000);
		cr_assert_eq(c, 1);
		if (i + 1 < len)
			cr_assert_eq(rc, 0, "byte %zu", i);
	}
	cr_expect_eq(rc, 1);
	cr_expect_str_eq(out.b_data, ck_want);
	/* after the end it stays done and takes nothing */
	cr_expect_eq(http_chunked_feed(&ck, "5\r\n", 3, &c, &out, 1000), 1);
	cr_expect_eq(c, 0);
	buf_free(&out);
}

Test(http_chunked, pipelined_bytes_left)
{
	const char	*s = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
	struct buf	 out;
	size_t		 used, cut;
	int		 rc;

	buf_init(&out);
	for (cut = 0; cut <= strlen(s); cut++) {
		buf_reset(&out);
		rc = feed_split(s, strlen(s), &cut, 1, &out, 100, &used);
		cr_assert_eq(rc, 1);
		cr_assert_eq(used, strlen("3\r\nabc\r\n0\r\n\r\n"), "cut %zu", cut);
		cr_assert_str_eq(out.b_data, "abc");
	}
	buf_free(&out);
}

static int
feed_all(const char *s, size_t max, struct buf *out, size_t *used)
{
	return feed_split(s, strlen(s), NULL, 0, out, max, used);
}

Test(http_chunked, errors)
{
	static const struct { const char *in; int rc; } t[] = {
		{ "\r\n", -400 },			/* no size */
		{ ";x\r\n", -400 },
		{ "g\r\n", -400 },
		{ "-1\r\n", -400 },
		{ "+1\r\n", -400 },
		{ "0x5\r\nhello\r\n", -400 },
		{ "5\nhello\r\n", -400 },		/* bare LF */
		{ "5\rhello\r\n", -400 },
		{ "5 \r\nhello\r\n", -400 },		/* BWS without ext */
		{ "5\r\nhelloX\r\n", -400 },		/* no CRLF after data */
		{ "5\r\nhello\n0\r\n\r\n", -400 },
		{ "5\r\nhello\rX", -400 },
		{ "5\r\nhello\r\n\r\n", -400 },	/* empty size line */
		{ "5;a\x01\r\n", -400 },		/* CTL in extension */
		{ "1000000000000000\r\n", -400 },	/* 16 digits */
		{ "0000000000000001\r\n", -400 },
		{ "ffffffffffffffffffff\r\n", -400 },
		{ "0\r\n \r\n", -400 },		/* obs-fold in trailers */
		{ "0\r\nX : y\r\n\r\n", -400 },
		{ "0\r\nX: y\n\r\n", -400 },
		{ "0\r\nX: \x01\r\n\r\n", -400 },
		{ "0\r\n\r\r", -400 },
		{ "0\r\n:\r\n\r\n", -400 },
		{ "fffffffffffffff\r\n", -413 },	/* 15 digits: too big */
		{ "65\r\n", -413 },			/* 101 > 100 */
		{ "32\r\n0123456789012345678901234567890123456789012345678"
		  "9\r\n33\r\n", -413 },		/* 50 + 51 */
	};
	struct buf	 out;
	size_t		 i, used;

	buf_init(&out);
	for (i = 0; i < nitems(t); i++) {
		buf_reset(&out);
		cr_expect_eq(feed_all(t[i].in, 100, &out, &used), t[i].rc,
		    "case %zu", i);
	}
	/* exactly max is fine */
	buf_reset(&out);
	cr_expect_eq(feed_all("64\r\n", 100, &out, &used), 0);
	buf_free(&out);
}

Test(http_chunked, error_sticks)
{
	struct http_chunked	 ck;
	struct buf		 out;
	size_t			 c;

	buf_init(&out);
	http_chunked_init(&ck);
	cr_expect_eq(http_chunked_feed(&ck, "5\nx", 3, &c, &out, 100), -400);
	cr_expect_eq(c, 1);
	cr_expect_eq(http_chunked_feed(&ck, "0\r\n\r\n", 5, &c, &out, 100), -400);
	cr_expect_eq(c, 0);
	http_chunked_init(&ck);
	cr_expect_eq(http_chunked_feed(&ck, "ff\r\n", 4, &c, &out, 100), -413);
	cr_expect_eq(http_chunked_feed(&ck, "0\r\n\r\n", 5, &c, &out, 100), -413);
	buf_free(&out);
}

Test(http_chunked, line_limits)
{
	struct buf	 out;
	char		*s;
	size_t		 used, n;

	buf_init(&out);
	s = malloc(20000);
	cr_assert_not_null(s);

	/* an extension line near the limit is fine, past it is not */
	n = (size_t)snprintf(s, 20000, "1;");
	memset(s + n, 'e', 4000);
	snprintf(s + n + 4000, 20000 - n - 4000, "\r\nx\r\n0\r\n\r\n");
	cr_expect_eq(feed_all(s, 100, &out, &used), 1);
	cr_expect_str_eq(out.b_data, "x");
	n = (size_t)snprintf(s, 20000, "1;");
	memset(s + n, 'e', 5000);
	snprintf(s + n + 5000, 20000 - n - 5000, "\r\nx\r\n0\r\n\r\n");
	buf_reset(&out);
	cr_expect_eq(feed_all(s, 100, &out, &used), -400);

	/* trailers: 8 KB in total */
	n = (size_t)snprintf(s, 20000, "0\r\nX: ");
	memset(s + n, 't', 7000);
	snprintf(s + n + 7000, 20000 - n - 7000, "\r\n\r\n");
	buf_reset(&out);
	cr_expect_eq(feed_all(s, 100, &out, &used), 1);
	n = (size_t)snprintf(s, 20000, "0\r\nX: ");
	memset(s + n, 't', 9000);
	snprintf(s + n + 9000, 20000 - n - 9000, "\r\n\r\n");
	buf_reset(&out);
	cr_expect_eq(feed_all(s, 100, &out, &used), -431);
	n = (size_t)snprintf(s, 20000, "0\r\n");
	for (; n < 12000; n += 6)
		memcpy(s + n, "A: b\r\n", 6);
	snprintf(s + n, 20000 - n, "\r\n");
	buf_reset(&out);
	cr_expect_eq(feed_all(s, 100, &out, &used), -431);
	free(s);
	buf_free(&out);
}

Test(http_chunked, roundtrip_writer)
{
	struct buf	 enc, out;
	char		 data[5000];
	size_t		 i, used;

	buf_init(&enc);
	buf_init(&out);
	for (i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	cr_assert_eq(http_write_chunk(&enc, data, 1), 0);
	cr_assert_eq(http_write_chunk(&enc, data + 1, 4095), 0);
	cr_assert_eq(http_write_chunk(&enc, data + 4096, sizeof(data) - 4096), 0);
	cr_assert_eq(http_write_chunk(&enc, NULL, 0), 0);
	cr_assert_eq(feed_split(enc.b_data, enc.b_len, NULL, 0, &out,
	    sizeof(data), &used), 1);
	cr_expect_eq(used, enc.b_len);
	cr_assert_eq(out.b_len, sizeof(data));
	cr_expect(memcmp(out.b_data, data, sizeof(data)) == 0);
	buf_free(&enc);
	buf_free(&out);
}

/* ------------------------------------------------------------------ */
/* responses                                                           */

Test(http_write, chunk_format)
{
	struct buf	 b;

	buf_init(&b);
	cr_assert_eq(http_write_chunk(&b, "0123456789", 10), 0);
	cr_expect_str_eq(b.b_data, "a\r\n0123456789\r\n");
	buf_reset(&b);
	cr_assert_eq(http_write_chunk(&b, "x", 1), 0);
	cr_assert_eq(http_write_chunk(&b, "", 0), 0);
	cr_expect_str_eq(b.b_data, "1\r\nx\r\n0\r\n\r\n");
	buf_free(&b);
}

/* Checks the Date line and cuts it out, so the rest compares exactly. */
static void
strip_date(struct buf *b, char *out, size_t outsz)
{
	char	*d, *e;
	char	 want[40];

	d = strstr(b->b_data, "\r\nDate: ");
	cr_assert_not_null(d);
	e = strstr(d + 2, "\r\n");
	cr_assert_not_null(e);
	cr_assert_eq(e - (d + 8), 29, "rfc1123 date is 29 bytes");
	cr_expect(memcmp(e - 4, " GMT", 4) == 0);
	fmt_rfc1123(now_wall(), want);
	cr_expect(memcmp(d + 8, want, 5) == 0, "weekday matches now");
	snprintf(out, outsz, "%.*s%s", (int)(d - b->b_data), b->b_data, e);
}

Test(http_write, head_format)
{
	struct buf	 b;
	char		 s[512];

	buf_init(&b);
	cr_assert_eq(http_write_head(&b, 200, "application/json", 15, 1, NULL), 0);
	strip_date(&b, s, sizeof(s));
	cr_expect_str_eq(s, "HTTP/1.1 200 OK\r\nServer: qrelayd\r\n"
	    "Content-Type: application/json\r\nContent-Length: 15\r\n"
	    "Connection: keep-alive\r\n\r\n");

	buf_reset(&b);
	cr_assert_eq(http_write_head(&b, 200, "text/event-stream", -1, 0,
	    "Cache-Control: no-cache\r\nX-A: b\r\n"), 0);
	strip_date(&b, s, sizeof(s));
	cr_expect_str_eq(s, "HTTP/1.1 200 OK\r\nServer: qrelayd\r\n"
	    "Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
	    "Connection: close\r\nCache-Control: no-cache\r\nX-A: b\r\n\r\n");

	buf_reset(&b);
	cr_assert_eq(http_write_head(&b, 404, NULL, 0, 1, NULL), 0);
	strip_date(&b, s, sizeof(s));
	cr_expect_str_eq(s, "HTTP/1.1 404 Not Found\r\nServer: qrelayd\r\n"
	    "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");

	buf_reset(&b);
	cr_assert_eq(http_write_head(&b, 413, NULL, 9223372036854775807LL, 0,
	    NULL), 0);
	cr_expect_not_null(strstr(b.b_data,
	    "\r\nContent-Length: 9223372036854775807\r\n"));

	buf_reset(&b);
	cr_assert_eq(http_write_head(&b, 304, NULL, 100, 1, "ETag: \"x\"\r\n"), 0);
	strip_date(&b, s, sizeof(s));
	cr_expect_str_eq(s, "HTTP/1.1 304 Not Modified\r\nServer: qrelayd\r\n"
	    "Connection: keep-alive\r\nETag: \"x\"\r\n\r\n");

	buf_reset(&b);
	cr_assert_eq(http_write_head(&b, 204, NULL, -1, 1, NULL), 0);
	cr_expect_null(strstr(b.b_data, "Content-Length"));
	cr_expect_null(strstr(b.b_data, "Transfer-Encoding"));

	buf_reset(&b);
	cr_assert_eq(http_write_head(&b, 200, NULL, -2, 0, NULL), 0);
	strip_date(&b, s, sizeof(s));
	cr_expect_str_eq(s, "HTTP/1.1 200 OK\r\nServer: qrelayd\r\n"
	    "Connection: close\r\n\r\n");

	buf_reset(&b);
	cr_assert_eq(http_write_head(&b, 100, NULL, -2, 1, NULL), 0);
	cr_expect_str_eq(b.b_data, "HTTP/1.1 100 Continue\r\n\r\n");
	buf_free(&b);
}

Test(http_write, head_appends)
{
	struct buf	 b;
	size_t		 first;

	buf_init(&b);
	cr_assert_eq(buf_puts(&b, "previous"), 0);
	cr_assert_eq(http_write_head(&b, 503, "text/plain", 3, 0, NULL), 0);
	cr_expect(strncmp(b.b_data, "previousHTTP/1.1 503 Service Unavailable\r\n",
	    42) == 0);
	first = b.b_len;
	cr_assert_eq(http_write_head(&b, 505, NULL, 0, 0, NULL), 0);
	cr_expect(strncmp(b.b_data + first,
	    "HTTP/1.1 505 HTTP Version Not Supported\r\n", 41) == 0);
	cr_expect_eq(strlen(b.b_data), b.b_len);
	buf_free(&b);
}

Test(http_write, reasons)
{
	static const struct { int st; const char *r; } t[] = {
		{ 100, "Continue" }, { 200, "OK" }, { 201, "Created" },
		{ 204, "No Content" }, { 206, "Partial Content" },
		{ 301, "Moved Permanently" }, { 302, "Found" },
		{ 304, "Not Modified" }, { 400, "Bad Request" },
		{ 401, "Unauthorized" }, { 403, "Forbidden" },
		{ 404, "Not Found" }, { 405, "Method Not Allowed" },
		{ 408, "Request Timeout" }, { 409, "Conflict" },
		{ 411, "Length Required" }, { 413, "Content Too Large" },
		{ 414, "URI Too Long" }, { 415, "Unsupported Media Type" },
		{ 417, "Expectation Failed" }, { 429, "Too Many Requests" },
		{ 431, "Request Header Fields Too Large" },
		{ 500, "Internal Server Error" }, { 501, "Not Implemented" },
		{ 502, "Bad Gateway" }, { 503, "Service Unavailable" },
		{ 504, "Gateway Timeout" }, { 505, "HTTP Version Not Supported" },
		{ 299, "Unknown" },
	};
	size_t	 i;

	for (i = 0; i < nitems(t); i++)
		cr_expect_str_eq(http_reason(t[i].st), t[i].r, "%d", t[i].st);
}
