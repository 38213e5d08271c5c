/*
 * test_eventstream.c - unit tests for eventstream.c: the frame codec
 * against the official AWS vectors and the reference's Kiro frames, in
 * every split of the input, every kind of corruption; and the stream
 * interpreter: text, <thinking> split at every boundary, tool calls,
 * duplicates, exceptions and the stop reason of a stream cut short.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <zlib.h>

#include "qrelayd.h"

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static size_t
unhex(const char *hex, unsigned char *out, size_t cap)
{
	size_t	 n = 0;
	unsigned v;

	while (*hex) {
		if (*hex == ' ' || *hex == '\n') {
			hex++;
			continue;
		}
		cr_assert(n < cap);
		cr_assert_eq(sscanf(hex, "%2x", &v), 1);
		out[n++] = (unsigned char)v;
		hex += 2;
	}
	return n;
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* Wraps a header block and a payload in a frame with correct CRCs. */
static size_t
mkframe(unsigned char *out, const void *hdrs, size_t hl, const void *pl,
    size_t pll)
{
	size_t	 total = 16 + hl + pll;

	put32(out, (uint32_t)total);
	put32(out + 4, (uint32_t)hl);
	put32(out + 8, (uint32_t)crc32(0, out, 8));
	memcpy(out + 12, hdrs, hl);
	memcpy(out + 12 + hl, pl, pll);
	put32(out + total - 4, (uint32_t)crc32(0, out, (uInt)(total - 4)));
	return total;
}

/* What a decoder callback saw, copied out. */
struct seen {
	int	 nframes;
	char	 payload[16][512];
	size_t	 plen[16];
	size_t	 nhdrs[16];
	char	 hdr0[16][64];
	int	 stop_after;	/* cb returns -1 at this frame, 0 never */
};

static int
collect(const struct es_frame *f, void *arg)
{
	struct seen	*s = arg;
	int		 i = s->nframes++;

	cr_assert(i < 16);
	cr_assert(f->ef_payload_len < sizeof(s->payload[0]));
	memcpy(s->payload[i], f->ef_payload, f->ef_payload_len);
	s->plen[i] = f->ef_payload_len;
	s->nhdrs[i] = f->ef_nhdrs;
	if (f->ef_nhdrs > 0)
		snprintf(s->hdr0[i], sizeof(s->hdr0[i]), "%.*s",
		    (int)f->ef_hdrs[0].eh_name_len, f->ef_hdrs[0].eh_name);
	if (s->stop_after && s->nframes == s->stop_after)
		return -1;
	return 0;
}

static int
never(const struct es_frame *f, void *arg)
{
	cr_assert_fail("callback after corruption");
	return 0;
}

static const char *VEC_EMPTY = "00000010 00000000 05c248eb 7d98c8ff";
static const char *VEC_PAYLOAD =
    "0000001d 00000000 fd528c5a 7b27666f6f273a27626172277d c3653936";
static const char *VEC_STRHDR =
    "0000003d 00000020 07fd8396 0c 636f6e74656e742d74797065 07 0010 "
    "6170706c69636174696f6e2f6a736f6e 7b27666f6f273a27626172277d 8d9c08b1";
static const char *VEC_INTHDR =
    "0000002b 0000000e 348bec7b 08 6576656e742d6964 04 0000a00c "
    "7b27666f6f273a27626172277d d3890285";
static const char *KIRO_A =
    "0000007f0000005c7c7db5a80b3a6576656e742d74797065070016617373697374616e74526573706f6e73654576656e74"
    "0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700"
    "056576656e747b22636f6e74656e74223a2248656c6c6f227d9b5d0635";
static const char *KIRO_B =
    "000000af000000521230e7f60b3a6576656e742d7479706507000c746f6f6c5573654576656e740d3a636f6e74656e742d"
    "747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b226e61"
    "6d65223a226765745f77656174686572222c22746f6f6c5573654964223a22746f6f6c7573655f31222c22696e70757422"
    "3a227b5c22636974795c223a5c2250617269735c227d227d16547792";
static const char *KIRO_E =
    "00000090000000618e91a9b70f3a657863657074696f6e2d747970650700135468726f74746c696e67457863657074696f"
    "6e0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d7479706507"
    "0009657863657074696f6e7b226d657373616765223a22546f6f206d616e79207265717565737473227dfeb6d812";

static int
decode_all(const unsigned char *p, size_t n, struct seen *s)
{
	struct es_decoder	 d;
	int			 rc;

	es_init(&d, ES_MAX_FRAME);
	rc = es_feed(&d, p, n, collect, s);
	cr_expect_eq(es_pending(&d), 0);
	es_free(&d);
	return rc;
}

/* ------------------------------------------------------------------ */
/* official vectors                                                    */

Test(es_decode, aws_empty)
{
	unsigned char	 b[64];
	struct seen	 s = { 0 };
	size_t		 n = unhex(VEC_EMPTY, b, sizeof(b));

	cr_assert_eq(decode_all(b, n, &s), 0);
	cr_assert_eq(s.nframes, 1);
	cr_expect_eq(s.plen[0], 0);
	cr_expect_eq(s.nhdrs[0], 0);
}

Test(es_decode, aws_payload_only)
{
	unsigned char	 b[64];
	struct seen	 s = { 0 };
	size_t		 n = unhex(VEC_PAYLOAD, b, sizeof(b));

	cr_assert_eq(decode_all(b, n, &s), 0);
	cr_assert_eq(s.nframes, 1);
	cr_expect_eq(s.nhdrs[0], 0);
	cr_expect_eq(s.plen[0], 13);
	cr_expect_str_eq(s.payload[0], "{'foo':'bar'}");
}

static const struct es_frame	*last_frame_copy;
static char			 last_ct[64];
static int64_t			 last_int;

static int
look(const struct es_frame *f, void *arg)
{
	const char	*v;
	size_t		 n;

	last_frame_copy = f;
	if ((v = es_header_str(f, "content-type", &n)) != NULL)
		snprintf(last_ct, sizeof(last_ct), "%.*s", (int)n, v);
	if (f->ef_nhdrs > 0)
		last_int = f->ef_hdrs[0].eh_int;
	cr_expect_null(es_header_str(f, "content-typ", NULL));
	cr_expect_null(es_header_str(f, "missing", NULL));
	return 0;
}

Test(es_decode, aws_string_header)
{
	unsigned char	 b[128];
	struct es_decoder d;
	size_t		 n = unhex(VEC_STRHDR, b, sizeof(b));

	last_ct[0] = '\0';
	es_init(&d, ES_MAX_FRAME);
	cr_assert_eq(es_feed(&d, b, n, look, NULL), 0);
	cr_expect_str_eq(last_ct, "application/json");
	es_free(&d);
}

Test(es_decode, aws_int32_header)
{
	unsigned char	 b[128];
	struct seen	 s = { 0 };
	struct es_decoder d;
	size_t		 n = unhex(VEC_INTHDR, b, sizeof(b));

	cr_assert_eq(decode_all(b, n, &s), 0);
	cr_assert_eq(s.nframes, 1);
	cr_expect_eq(s.nhdrs[0], 1);
	cr_expect_str_eq(s.hdr0[0], "event-id");
	cr_expect_str_eq(s.payload[0], "{'foo':'bar'}");
	es_init(&d, ES_MAX_FRAME);
	last_int = 0;
	cr_assert_eq(es_feed(&d, b, n, look, NULL), 0);
	cr_expect_eq(last_int, 0xa00c);
	es_free(&d);
}

Test(es_encode, reproduces_aws_vector)
{
	unsigned char		 want[128];
	size_t			 n = unhex(VEC_STRHDR, want, sizeof(want));
	const char *const	 names[] = { "content-type" };
	const char *const	 values[] = { "application/json" };
	struct buf		 b;

	buf_init(&b);
	cr_assert_eq(es_encode(&b, names, values, 1, "{'foo':'bar'}", 13), 0);
	cr_assert_eq(b.b_len, n);
	cr_expect_eq(memcmp(b.b_data, want, n), 0);
	buf_reset(&b);
	n = unhex(VEC_EMPTY, want, sizeof(want));
	cr_assert_eq(es_encode(&b, NULL, NULL, 0, NULL, 0), 0);
	cr_assert_eq(b.b_len, n);
	cr_expect_eq(memcmp(b.b_data, want, n), 0);
	buf_free(&b);
}

Test(es_encode, refuses_bad_names)
{
	const char *const	 empty[] = { "" };
	const char *const	 values[] = { "v" };
	struct buf		 b;

	buf_init(&b);
	cr_expect_eq(es_encode(&b, empty, values, 1, "x", 1), -1);
	cr_expect_eq(b.b_len, 0);
	buf_free(&b);
}

Test(es_encode, reproduces_kiro_frame_a)
{
	unsigned char		 want[256];
	size_t			 n = unhex(KIRO_A, want, sizeof(want));
	const char *const	 names[] = { ":event-type", ":content-type",
	    ":message-type" };
	const char *const	 values[] = { "assistantResponseEvent",
	    "application/json", "event" };
	struct buf		 b;

	buf_init(&b);
	cr_assert_eq(es_encode(&b, names, values, 3,
	    "{\"content\":\"Hello\"}", 19), 0);
	cr_assert_eq(b.b_len, n);
	cr_expect_eq(memcmp(b.b_data, want, n), 0);
	buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* the Kiro frames of the reference                                    */

static int
check_kiro(const struct es_frame *f, void *arg)
{
	int		*i = arg;
	const char	*v;
	size_t		 n;

	switch ((*i)++) {
	case 0:
		cr_assert_eq(f->ef_nhdrs, 3);
		v = es_header_str(f, ":event-type", &n);
		cr_assert_not_null(v);
		cr_expect_eq(n, 22);
		cr_expect_eq(memcmp(v, "assistantResponseEvent", 22), 0);
		cr_expect_eq(f->ef_payload_len, 19);
		cr_expect_eq(memcmp(f->ef_payload, "{\"content\":\"Hello\"}",
		    19), 0);
		break;
	case 1:
		v = es_header_str(f, ":event-type", &n);
		cr_assert_not_null(v);
		cr_expect_eq(memcmp(v, "toolUseEvent", n), 0);
		cr_expect_eq(f->ef_payload_len, 175 - 16 - 82);
		break;
	case 2:
		v = es_header_str(f, ":exception-type", &n);
		cr_assert_not_null(v);
		cr_expect_eq(n, 19);
		cr_expect_eq(memcmp(v, "ThrottlingException", 19), 0);
		v = es_header_str(f, ":message-type", &n);
		cr_expect_eq(memcmp(v, "exception", n), 0);
		cr_expect_eq(f->ef_payload_len, 31);
		break;
	default:
		cr_assert_fail("too many frames");
	}
	return 0;
}

Test(es_decode, kiro_frames_a_b_e)
{
	unsigned char		 b[1024];
	size_t			 n = 0;
	struct es_decoder	 d;
	int			 i = 0;

	n += unhex(KIRO_A, b + n, sizeof(b) - n);
	cr_expect_eq(n, 127);
	n += unhex(KIRO_B, b + n, sizeof(b) - n);
	cr_expect_eq(n, 127 + 175);
	n += unhex(KIRO_E, b + n, sizeof(b) - n);
	cr_expect_eq(n, 127 + 175 + 144);
	es_init(&d, ES_MAX_FRAME);
	cr_assert_eq(es_feed(&d, b, n, check_kiro, &i), 0);
	cr_expect_eq(i, 3);
	cr_expect_eq(es_pending(&d), 0);
	es_free(&d);
}

/* ------------------------------------------------------------------ */
/* splits                                                              */

static size_t
multi_stream(unsigned char *b, size_t cap)
{
	size_t	 n = 0;

	n += unhex(VEC_EMPTY, b + n, cap - n);
	n += unhex(KIRO_A, b + n, cap - n);
	n += unhex(VEC_INTHDR, b + n, cap - n);
	n += unhex(KIRO_B, b + n, cap - n);
	n += unhex(VEC_PAYLOAD, b + n, cap - n);
	n += unhex(KIRO_E, b + n, cap - n);
	return n;
}

static void
same_frames(const struct seen *a, const struct seen *b)
{
	int	 i;

	cr_assert_eq(a->nframes, b->nframes);
	for (i = 0; i < a->nframes; i++) {
		cr_assert_eq(a->plen[i], b->plen[i]);
		cr_assert_eq(memcmp(a->payload[i], b->payload[i], a->plen[i]),
		    0);
		cr_assert_eq(a->nhdrs[i], b->nhdrs[i]);
		cr_assert_str_eq(a->hdr0[i], b->hdr0[i]);
	}
}

Test(es_decode, every_two_way_split)
{
	unsigned char		 b[2048];
	size_t			 n = multi_stream(b, sizeof(b)), cut;
	struct seen		 whole = { 0 }, s;
	struct es_decoder	 d;

	cr_assert_eq(decode_all(b, n, &whole), 0);
	cr_assert_eq(whole.nframes, 6);
	for (cut = 0; cut <= n; cut++) {
		memset(&s, 0, sizeof(s));
		es_init(&d, ES_MAX_FRAME);
		cr_assert_eq(es_feed(&d, b, cut, collect, &s), 0);
		cr_assert_eq(es_feed(&d, b + cut, n - cut, collect, &s), 0);
		cr_assert_eq(es_pending(&d), 0);
		same_frames(&whole, &s);
		es_free(&d);
	}
}

Test(es_decode, every_three_way_split)
{
	unsigned char		 b[2048];
	size_t			 n = multi_stream(b, sizeof(b)), i, j;
	struct seen		 whole = { 0 }, s;
	struct es_decoder	 d;

	cr_assert_eq(decode_all(b, n, &whole), 0);
	/* every pair of cuts over the first three frames and into the
	 * fourth; the frames after are covered by the two-way test */
	for (i = 0; i <= 200; i++) {
		for (j = i; j <= 220; j++) {
			memset(&s, 0, sizeof(s));
			es_init(&d, ES_MAX_FRAME);
			cr_assert_eq(es_feed(&d, b, i, collect, &s), 0);
			cr_assert_eq(es_feed(&d, b + i, j - i, collect, &s), 0);
			cr_assert_eq(es_feed(&d, b + j, n - j, collect, &s), 0);
			same_frames(&whole, &s);
			es_free(&d);
		}
	}
}

Test(es_decode, one_byte_feeds)
{
	unsigned char		 b[2048];
	size_t			 n = multi_stream(b, sizeof(b)), i;
	struct seen		 whole = { 0 }, s = { 0 };
	struct es_decoder	 d;

	cr_assert_eq(decode_all(b, n, &whole), 0);
	es_init(&d, ES_MAX_FRAME);
	for (i = 0; i < n; i++) {
		cr_assert_eq(es_feed(&d, b + i, 1, collect, &s), 0);
		if (i + 1 == 16)	/* the empty frame is whole */
			cr_expect_eq(es_pending(&d), 0);
		if (i + 1 == 20)
			cr_expect_eq(es_pending(&d), 4);
	}
	cr_expect_eq(es_pending(&d), 0);
	same_frames(&whole, &s);
	es_free(&d);
}

Test(es_decode, empty_feed_is_nothing)
{
	struct es_decoder	 d;
	struct seen		 s = { 0 };

	es_init(&d, ES_MAX_FRAME);
	cr_expect_eq(es_feed(&d, "", 0, collect, &s), 0);
	cr_expect_eq(s.nframes, 0);
	cr_expect_eq(es_pending(&d), 0);
	es_free(&d);
}

Test(es_decode, callback_stops)
{
	unsigned char		 b[2048];
	size_t			 n = multi_stream(b, sizeof(b));
	struct seen		 s = { 0 };
	struct es_decoder	 d;

	s.stop_after = 2;
	es_init(&d, ES_MAX_FRAME);
	cr_expect_eq(es_feed(&d, b, n, collect, &s), -1);
	cr_expect_eq(s.nframes, 2);
	cr_expect_eq(d.ed_failed, 1);
	cr_expect_str_eq(d.ed_err, "");
	cr_expect_eq(es_feed(&d, b, n, never, NULL), -1);
	es_free(&d);
}

/* ------------------------------------------------------------------ */
/* corruption                                                          */

/* Feeds p whole and byte by byte: both must fail with why in ed_err,
 * after delivering ok_frames good frames. */
static void
expect_corrupt(const unsigned char *p, size_t n, size_t max, int ok_frames,
    const char *why)
{
	struct es_decoder	 d;
	struct seen		 s = { 0 };
	size_t			 i;
	int			 rc = 0;

	es_init(&d, max);
	cr_expect_eq(es_feed(&d, p, n, collect, &s), -1);
	cr_expect_eq(d.ed_failed, 1);
	cr_expect(strstr(d.ed_err, why) != NULL, "ed_err \"%s\" lacks \"%s\"",
	    d.ed_err, why);
	cr_expect_eq(s.nframes, ok_frames);
	cr_expect_eq(es_feed(&d, p, n, never, NULL), -1);
	es_free(&d);

	memset(&s, 0, sizeof(s));
	es_init(&d, max);
	for (i = 0; i < n && rc == 0; i++)
		rc = es_feed(&d, p + i, 1, collect, &s);
	cr_expect_eq(rc, -1);
	cr_expect(strstr(d.ed_err, why) != NULL);
	cr_expect_eq(s.nframes, ok_frames);
	cr_expect_eq(es_feed(&d, "x", 1, never, NULL), -1);
	es_free(&d);
}

Test(es_corrupt, bad_prelude_crc)
{
	unsigned char	 b[512];
	size_t		 n = unhex(KIRO_A, b, sizeof(b));

	b[9] ^= 0x40;
	expect_corrupt(b, n, ES_MAX_FRAME, 0, "prelude CRC");
}

Test(es_corrupt, bad_message_crc)
{
	unsigned char	 b[512];
	size_t		 n = unhex(KIRO_A, b, sizeof(b));

	n += unhex(KIRO_A, b + n, sizeof(b) - n);
	b[n - 1] ^= 1;
	expect_corrupt(b, n, ES_MAX_FRAME, 1, "message CRC");
	/* a flipped payload byte is caught by the message CRC too */
	n = unhex(KIRO_A, b, sizeof(b));
	b[110] ^= 0x20;
	expect_corrupt(b, n, ES_MAX_FRAME, 0, "message CRC");
}

static void
prelude(unsigned char *b, uint32_t total, uint32_t hl)
{
	put32(b, total);
	put32(b + 4, hl);
	put32(b + 8, (uint32_t)crc32(0, b, 8));
}

Test(es_corrupt, lengths_out_of_range)
{
	unsigned char	 b[64];
	unsigned char	 big[256];
	size_t		 n;

	memset(b, 0, sizeof(b));
	prelude(b, 15, 0);
	expect_corrupt(b, 16, ES_MAX_FRAME, 0, "frame length 15");
	prelude(b, 0, 0);
	expect_corrupt(b, 16, ES_MAX_FRAME, 0, "below");
	prelude(b, ES_MAX_FRAME + 1, 0);
	expect_corrupt(b, 16, ES_MAX_FRAME, 0, "over the limit");
	prelude(b, 0xffffffff, 0);
	expect_corrupt(b, 16, ES_MAX_FRAME, 0, "over the limit");
	prelude(b, 32, 17);
	expect_corrupt(b, 32, ES_MAX_FRAME, 0, "headers length");
	prelude(b, 16, 0xffffffff);
	expect_corrupt(b, 16, ES_MAX_FRAME, 0, "headers length");
	/* a decoder with a small limit refuses a frame a default one takes */
	n = unhex(KIRO_A, big, sizeof(big));
	expect_corrupt(big, n, 100, 0, "over the limit");
	/* exactly the limit is fine */
	{
		struct es_decoder d;
		struct seen s = { 0 };

		es_init(&d, 127);
		cr_expect_eq(es_feed(&d, big, n, collect, &s), 0);
		cr_expect_eq(s.nframes, 1);
		es_free(&d);
	}
}

Test(es_corrupt, truncated_headers)
{
	unsigned char	 f[256];
	/* name length 5, but only "abc" then the end of the block */
	static const unsigned char h1[] = { 5, 'a', 'b', 'c' };
	/* a string whose value length runs past the block */
	static const unsigned char h2[] = { 1, 'a', 7, 0, 9, 'x', 'y' };
	/* a string header with its length cut in half */
	static const unsigned char h3[] = { 1, 'a', 7, 0 };
	/* an int64 with 3 bytes */
	static const unsigned char h4[] = { 1, 'a', 5, 0, 0, 0 };
	/* the name fits, the type byte does not */
	static const unsigned char h5[] = { 1, 'a' };
	/* a UUID of 15 bytes, with payload after the block */
	static const unsigned char h6[] = { 1, 'u', 9, 1, 2, 3, 4, 5, 6, 7, 8,
	    9, 10, 11, 12, 13, 14, 15 };
	size_t		 n;

	n = mkframe(f, h1, sizeof(h1), "{}", 2);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "truncated header");
	n = mkframe(f, h2, sizeof(h2), "{}", 2);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "truncated header");
	n = mkframe(f, h3, sizeof(h3), "", 0);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "truncated header");
	n = mkframe(f, h4, sizeof(h4), "zzzzzzzz", 8);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "truncated header");
	n = mkframe(f, h5, sizeof(h5), "", 0);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "truncated header");
	n = mkframe(f, h6, sizeof(h6), "0123456789", 10);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "truncated header");
}

Test(es_corrupt, unknown_type_and_empty_name)
{
	unsigned char	 f[256];
	static const unsigned char h1[] = { 1, 'a', 10 };
	static const unsigned char h2[] = { 1, 'a', 0xff };
	static const unsigned char h3[] = { 0, 0 };
	size_t		 n;

	n = mkframe(f, h1, sizeof(h1), "", 0);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "unknown header type 10");
	n = mkframe(f, h2, sizeof(h2), "", 0);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "unknown header type 255");
	n = mkframe(f, h3, sizeof(h3), "", 0);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "empty header name");
}

Test(es_corrupt, too_many_headers)
{
	unsigned char	 h[(ES_MAX_HEADERS + 1) * 3], f[512];
	size_t		 i, n;
	struct seen	 s = { 0 };

	for (i = 0; i < ES_MAX_HEADERS + 1; i++) {
		h[i * 3] = 1;
		h[i * 3 + 1] = 'a' + i % 26;
		h[i * 3 + 2] = ES_TRUE;
	}
	n = mkframe(f, h, sizeof(h), "", 0);
	expect_corrupt(f, n, ES_MAX_FRAME, 0, "more than");
	/* exactly the maximum is fine */
	n = mkframe(f, h, ES_MAX_HEADERS * 3, "", 0);
	cr_expect_eq(decode_all(f, n, &s), 0);
	cr_expect_eq(s.nhdrs[0], ES_MAX_HEADERS);
}

static int
check_all_types(const struct es_frame *f, void *arg)
{
	const struct es_header	*h = f->ef_hdrs;
	static const char uuid[16] = "0123456789abcdef";

	*(int *)arg = 1;
	cr_assert_eq(f->ef_nhdrs, 10);
	cr_expect_eq(h[0].eh_type, ES_TRUE);
	cr_expect_eq(h[0].eh_int, 1);
	cr_expect_eq(h[0].eh_name_len, 1);
	cr_expect_eq(h[0].eh_name[0], 't');
	cr_expect_eq(h[1].eh_type, ES_FALSE);
	cr_expect_eq(h[1].eh_int, 0);
	cr_expect_eq(h[2].eh_type, ES_BYTE);
	cr_expect_eq(h[2].eh_int, -2);
	cr_expect_eq(h[3].eh_type, ES_INT16);
	cr_expect_eq(h[3].eh_int, -32768);
	cr_expect_eq(h[4].eh_type, ES_INT32);
	cr_expect_eq(h[4].eh_int, 0x12345678);
	cr_expect_eq(h[5].eh_type, ES_INT64);
	cr_expect_eq(h[5].eh_int, INT64_C(-2));
	cr_expect_eq(h[6].eh_type, ES_BYTES);
	cr_expect_eq(h[6].eh_value_len, 3);
	cr_expect_eq(memcmp(h[6].eh_value, "\0\1\2", 3), 0);
	cr_expect_eq(h[7].eh_type, ES_STRING);
	cr_expect_eq(h[7].eh_value_len, 2);
	cr_expect_eq(memcmp(h[7].eh_value, "hi", 2), 0);
	cr_expect_eq(h[8].eh_type, ES_TIMESTAMP);
	cr_expect_eq(h[8].eh_int, INT64_C(1700000000123));
	cr_expect_eq(h[9].eh_type, ES_UUID);
	cr_expect_eq(h[9].eh_value_len, 16);
	cr_expect_eq(memcmp(h[9].eh_value, uuid, 16), 0);
	cr_expect_eq(f->ef_payload_len, 2);
	cr_expect_eq(memcmp(f->ef_payload, "{}", 2), 0);
	/* a string lookup finds only a string header */
	cr_expect_null(es_header_str(f, "b", NULL));
	cr_expect_not_null(es_header_str(f, "s", NULL));
	return 0;
}

Test(es_decode, all_header_types)
{
	static const unsigned char h[] = {
		1, 't', 0,
		1, 'f', 1,
		1, 'y', 2, 0xfe,
		1, 'h', 3, 0x80, 0x00,
		1, 'i', 4, 0x12, 0x34, 0x56, 0x78,
		1, 'l', 5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		1, 'b', 6, 0, 3, 0, 1, 2,
		1, 's', 7, 0, 2, 'h', 'i',
		/* 1700000000123 = 0x18BCFE5687B */
		1, 'd', 8, 0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b,
		1, 'u', 9, '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
		'a', 'b', 'c', 'd', 'e', 'f',
	};
	unsigned char		 f[256];
	size_t			 n, i;
	int			 seen = 0;
	struct es_decoder	 d;

	n = mkframe(f, h, sizeof(h), "{}", 2);
	es_init(&d, ES_MAX_FRAME);
	cr_assert_eq(es_feed(&d, f, n, check_all_types, &seen), 0);
	cr_expect_eq(seen, 1);
	es_free(&d);
	/* and again byte by byte, from the buffer */
	seen = 0;
	es_init(&d, ES_MAX_FRAME);
	for (i = 0; i < n; i++)
		cr_assert_eq(es_feed(&d, f + i, 1, check_all_types, &seen), 0);
	cr_expect_eq(seen, 1);
	es_free(&d);
}

/* ------------------------------------------------------------------ */
/* the interpreter                                                      */

#define MAXEV	64

struct rec {
	int	 n;
	int	 type[MAXEV];
	char	 text[MAXEV][256];
	char	 id[MAXEV][64];
	char	 name[MAXEV][64];
	int	 index[MAXEV];
	int	 status[MAXEV];
	char	 etype[MAXEV][64];
	struct buf all[QEV_ERROR + 1];	/* concatenated text per type */
};

static int
rec_emit(const struct qev *ev, void *arg)
{
	struct rec	*r = arg;
	int		 i = r->n++;

	cr_assert(i < MAXEV, "too many events");
	cr_assert(ev->qv_type >= QEV_TEXT && ev->qv_type <= QEV_ERROR);
	r->type[i] = ev->qv_type;
	if (ev->qv_type == QEV_ERROR)
		snprintf(r->text[i], sizeof(r->text[i]), "%s", ev->qv_err_msg);
	else if (ev->qv_text) {
		cr_assert(ev->qv_len > 0, "empty fragment emitted");
		snprintf(r->text[i], sizeof(r->text[i]), "%.*s",
		    (int)ev->qv_len, ev->qv_text);
		buf_append(&r->all[ev->qv_type], ev->qv_text, ev->qv_len);
	}
	if (ev->qv_tool_id)
		snprintf(r->id[i], sizeof(r->id[i]), "%s", ev->qv_tool_id);
	if (ev->qv_tool_name)
		snprintf(r->name[i], sizeof(r->name[i]), "%s",
		    ev->qv_tool_name);
	if (ev->qv_err_type)
		snprintf(r->etype[i], sizeof(r->etype[i]), "%s",
		    ev->qv_err_type);
	r->index[i] = ev->qv_tool_index;
	r->status[i] = ev->qv_status;
	return 0;
}

static void
rec_init(struct rec *r)
{
	int	 i;

	memset(r, 0, sizeof(*r));
	for (i = 0; i <= QEV_ERROR; i++)
		buf_init(&r->all[i]);
}

static void
rec_free(struct rec *r)
{
	int	 i;

	for (i = 0; i <= QEV_ERROR; i++)
		buf_free(&r->all[i]);
}

static const char *
rec_all(struct rec *r, int type)
{
	return r->all[type].b_data ? r->all[type].b_data : "";
}

static int
rec_count(const struct rec *r, int type)
{
	int	 i, n = 0;

	for (i = 0; i < r->n; i++)
		n += r->type[i] == type;
	return n;
}

/* Appends an event frame. */
static void
ev_frame(struct buf *b, const char *type, const char *json)
{
	const char *const names[] = { ":event-type", ":content-type",
	    ":message-type" };
	const char *const values[] = { type, "application/json", "event" };

	cr_assert_eq(es_encode(b, names, values, 3, json, strlen(json)), 0);
}

static void
ex_frame(struct buf *b, const char *xtype, const char *json)
{
	const char *const names[] = { ":exception-type", ":content-type",
	    ":message-type" };
	const char *const values[] = { xtype, "application/json",
	    "exception" };

	cr_assert_eq(es_encode(b, names, values, 3, json, strlen(json)), 0);
}

static void
text_frame(struct buf *b, const char *text)
{
	struct json_object	*o = json_object_new_object();

	json_object_object_add(o, "content", json_object_new_string(text));
	ev_frame(b, "assistantResponseEvent", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

/* Runs a whole stream through a ustream, fed in one piece. */
static int
run(struct rec *r, int thinking, const struct buf *b, int transport_ok,
    struct ustream *us)
{
	int	 rc;

	ustream_init(us, thinking, rec_emit, r);
	rc = ustream_feed(us, b->b_data, b->b_len);
	ustream_finish(us, transport_ok);
	return rc;
}

Test(ustream, text_chunks)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "Hel");
	text_frame(&b, "lo, ");
	text_frame(&b, "w\xc3\xb6rld");
	ev_frame(&b, "meteringEvent",
	    "{\"unit\":\"credit\",\"unitPlural\":\"credits\",\"usage\":0.25}");
	ev_frame(&b, "meteringEvent", "{\"usage\":0.5}");
	ev_frame(&b, "contextUsageEvent", "{\"contextUsagePercentage\":1.25}");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_eq(r.n, 3);
	cr_expect_eq(rec_count(&r, QEV_TEXT), 3);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "Hello, w\xc3\xb6rld");
	cr_expect_eq(us.us_stop, QSTOP_END_TURN);
	cr_expect_float_eq(us.us_credits, 0.75, 1e-9);
	cr_expect_float_eq(us.us_context_pct, 1.25, 1e-9);
	cr_expect_eq(us.us_saw_end, 1);
	cr_expect_eq(us.us_nframes, 6);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, reference_frame_a_byte_by_byte)
{
	unsigned char	 f[256];
	size_t		 n = unhex(KIRO_A, f, sizeof(f)), i;
	struct rec	 r;
	struct ustream	 us;

	rec_init(&r);
	ustream_init(&us, 1, rec_emit, &r);
	for (i = 0; i < n; i++)
		cr_assert_eq(ustream_feed(&us, f + i, 1), 0);
	cr_expect_eq(r.n, 1, "not a tag: out before the end");
	cr_assert_eq(ustream_finish(&us, 1), 0);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "Hello");
	cr_expect_eq(us.us_stop, QSTOP_END_TURN);
	ustream_free(&us);
	rec_free(&r);
}

Test(ustream, followup_and_unknown_ignored)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "a");
	ev_frame(&b, "assistantResponseEvent",
	    "{\"content\":\"follow\",\"followupPrompt\":{\"content\":\"x\"}}");
	ev_frame(&b, "followupPromptEvent",
	    "{\"followupPrompt\":{\"content\":\"x\",\"userIntent\":\"y\"}}");
	ev_frame(&b, "codeReferenceEvent", "{\"references\":[]}");
	ev_frame(&b, "someFutureEvent", "not json at all");
	ev_frame(&b, "assistantResponseEvent", "not json either");
	ev_frame(&b, "assistantResponseEvent", "[1,2]");
	ev_frame(&b, "assistantResponseEvent", "{\"content\":5}");
	text_frame(&b, "b");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "ab");
	cr_expect_eq(us.us_stop, QSTOP_END_TURN);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, duplicate_long_text_dropped_only_back_to_back)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	/* long chunks repeated back to back are Kiro's duplicates; short
	 * ones ("ha", "ha") are real text and stay */
	text_frame(&b, "one one one one one one one one ");
	text_frame(&b, "one one one one one one one one ");
	text_frame(&b, "ha");
	text_frame(&b, "ha");
	text_frame(&b, "two two two two two two two two ");
	ev_frame(&b, "meteringEvent", "{\"usage\":0.1}");
	text_frame(&b, "two two two two two two two two ");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT),
	    "one one one one one one one one haha"
	    "two two two two two two two two two two two two two two two two ");
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

/* Feeds text as assistantResponseEvent chunks cut at the given points. */
static void
think_cuts(struct rec *r, struct ustream *us, const char *text,
    const size_t *cuts, size_t ncuts, int thinking)
{
	struct buf	 b;
	char		 piece[256];
	size_t		 i, from = 0, to;

	buf_init(&b);
	for (i = 0; i <= ncuts; i++) {
		to = i < ncuts ? cuts[i] : strlen(text);
		if (to > from) {
			memcpy(piece, text + from, to - from);
			piece[to - from] = '\0';
			/* a metering frame between keeps equal chunks apart */
			ev_frame(&b, "meteringEvent", "{\"usage\":0}");
			text_frame(&b, piece);
		}
		from = to;
	}
	rec_init(r);
	ustream_init(us, thinking, rec_emit, r);
	cr_assert_eq(ustream_feed(us, b.b_data, b.b_len), 0);
	cr_assert_eq(ustream_finish(us, 1), 0);
	buf_free(&b);
}

/* All thinking events come before all text events. */
static void
thinking_first(const struct rec *r)
{
	int	 i, text = 0;

	for (i = 0; i < r->n; i++) {
		if (r->type[i] == QEV_TEXT)
			text = 1;
		else if (r->type[i] == QEV_THINKING)
			cr_assert(!text, "thinking after text");
	}
}

Test(ustream, thinking_split_at_every_boundary)
{
	const char	*s = "<thinking>\nabc</thinking>\n\nxyz";
	size_t		 n = strlen(s), i, j, cuts[2];
	struct rec	 r;
	struct ustream	 us;

	for (i = 0; i <= n; i++) {
		for (j = i; j <= n; j++) {
			cuts[0] = i;
			cuts[1] = j;
			think_cuts(&r, &us, s, cuts, 2, 1);
			cr_assert_str_eq(rec_all(&r, QEV_THINKING), "abc",
			    "cuts %zu %zu", i, j);
			cr_assert_str_eq(rec_all(&r, QEV_TEXT), "xyz",
			    "cuts %zu %zu", i, j);
			thinking_first(&r);
			cr_assert_eq(us.us_stop, QSTOP_END_TURN);
			ustream_free(&us);
			rec_free(&r);
		}
	}
}

Test(ustream, thinking_one_byte_chunks)
{
	const char	*s = "\n\n<thinking>\nI think `</thinking>` is a tag."
	    "</thinking> not yet</thinking>\n\nThe answer.\n\n</thinking>\n\n";
	size_t		 n = strlen(s), i, cuts[256];
	struct rec	 r;
	struct ustream	 us;

	for (i = 0; i < n - 1; i++)
		cuts[i] = i + 1;
	think_cuts(&r, &us, s, cuts, n - 1, 1);
	cr_expect_str_eq(rec_all(&r, QEV_THINKING),
	    "I think `</thinking>` is a tag.</thinking> not yet");
	cr_expect_str_eq(rec_all(&r, QEV_TEXT),
	    "The answer.\n\n</thinking>\n\n");
	thinking_first(&r);
	ustream_free(&us);
	rec_free(&r);
}

Test(ustream, quoted_end_tag_is_thinking)
{
	/* a quote right before the tag makes it a mention, even with the
	 * "\n\n" after it, and even when the quote went out in an
	 * earlier chunk */
	const char	*s = "<thinking>\nsay \"</thinking>\n\nok\" or "
	    "`</thinking>\n\n` then</thinking>\n\ntext";
	size_t		 n = strlen(s), i, cuts[128];
	struct rec	 r;
	struct ustream	 us;

	cr_assert(n < 128);
	for (i = 0; i <= n; i++) {
		cuts[0] = i;
		think_cuts(&r, &us, s, cuts, 1, 1);
		cr_assert_str_eq(rec_all(&r, QEV_THINKING), "say \"</thinking>"
		    "\n\nok\" or `</thinking>\n\n` then", "cut %zu", i);
		cr_assert_str_eq(rec_all(&r, QEV_TEXT), "text");
		ustream_free(&us);
		rec_free(&r);
	}
	for (i = 0; i < n - 1; i++)
		cuts[i] = i + 1;
	think_cuts(&r, &us, s, cuts, n - 1, 1);
	cr_expect_str_eq(rec_all(&r, QEV_THINKING), "say \"</thinking>"
	    "\n\nok\" or `</thinking>\n\n` then");
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "text");
	ustream_free(&us);
	rec_free(&r);
}

Test(ustream, thinking_off_passes_tags)
{
	const char	*s = "<thinking>\nabc</thinking>\n\nxyz";
	size_t		 cuts[1] = { 5 };
	struct rec	 r;
	struct ustream	 us;

	think_cuts(&r, &us, s, cuts, 1, 0);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), s);
	cr_expect_eq(rec_count(&r, QEV_THINKING), 0);
	ustream_free(&us);
	rec_free(&r);
}

Test(ustream, no_thinking_tag_is_text)
{
	size_t		 cuts[2] = { 2, 5 };
	struct rec	 r;
	struct ustream	 us;

	think_cuts(&r, &us, "  <thin king> hi", cuts, 2, 1);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "  <thin king> hi");
	cr_expect_eq(rec_count(&r, QEV_THINKING), 0);
	cr_expect_eq(us.us_stop, QSTOP_END_TURN);
	ustream_free(&us);
	rec_free(&r);
}

Test(ustream, held_text_not_lost_at_finish)
{
	size_t		 cuts[1] = { 3 };
	struct rec	 r;
	struct ustream	 us;

	/* a prefix of the opening tag, then the end */
	think_cuts(&r, &us, "<thin", cuts, 1, 1);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "<thin");
	cr_expect_eq(us.us_stop, QSTOP_END_TURN);
	ustream_free(&us);
	rec_free(&r);

	/* whitespace only */
	think_cuts(&r, &us, "\n\n", NULL, 0, 1);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "\n\n");
	ustream_free(&us);
	rec_free(&r);

	/* a prefix of the closing tag inside thinking */
	think_cuts(&r, &us, "<thinking>\nabc</thi", cuts, 1, 1);
	cr_expect_str_eq(rec_all(&r, QEV_THINKING), "abc</thi");
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS, "thinking only");
	ustream_free(&us);
	rec_free(&r);

	/* a closing tag at the very end, no "\n\n" after it */
	think_cuts(&r, &us, "<thinking>\nabc</thinking>\n", cuts, 1, 1);
	cr_expect_str_eq(rec_all(&r, QEV_THINKING), "abc");
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "");
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS, "thinking only");
	ustream_free(&us);
	rec_free(&r);

	/* the closing tag waiting for its "\n\n" when the text ends */
	cuts[0] = 20;
	think_cuts(&r, &us, "<thinking>\nabc</thinking>\nx", cuts, 1, 1);
	cr_expect_str_eq(rec_all(&r, QEV_THINKING), "abc</thinking>\nx");
	ustream_free(&us);
	rec_free(&r);
}

/* Appends the §3.5 sequence for one tool call. */
static void
tool_frames(struct buf *b, const char *id, const char *name)
{
	char	 j[512];

	snprintf(j, sizeof(j), "{\"toolUseId\":\"%s\",\"name\":\"%s\"}", id,
	    name);
	ev_frame(b, "toolUseEvent", j);
	snprintf(j, sizeof(j), "{\"toolUseId\":\"%s\",\"name\":\"%s\","
	    "\"input\":\"{\\\"comm\"}", id, name);
	ev_frame(b, "toolUseEvent", j);
	snprintf(j, sizeof(j), "{\"toolUseId\":\"%s\",\"name\":\"%s\","
	    "\"input\":\"and\\\":\\\"echo hello\\\"}\"}", id, name);
	ev_frame(b, "toolUseEvent", j);
	snprintf(j, sizeof(j), "{\"toolUseId\":\"%s\",\"name\":\"%s\","
	    "\"stop\":true}", id, name);
	ev_frame(b, "toolUseEvent", j);
}

Test(ustream, tool_fragments)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;
	size_t		 i;
	int		 rc = 0;

	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "Let me run it.");
	tool_frames(&b, "tooluse_1", "execute_bash");
	ustream_init(&us, 0, rec_emit, &r);
	for (i = 0; i < b.b_len && rc == 0; i += 7)
		rc = ustream_feed(&us, b.b_data + i,
		    b.b_len - i < 7 ? b.b_len - i : 7);
	cr_assert_eq(rc, 0);
	cr_assert_eq(ustream_finish(&us, 1), 0);
	cr_assert_eq(r.n, 5);
	cr_expect_eq(r.type[0], QEV_TEXT);
	cr_expect_eq(r.type[1], QEV_TOOL_START);
	cr_expect_str_eq(r.id[1], "tooluse_1");
	cr_expect_str_eq(r.name[1], "execute_bash");
	cr_expect_eq(r.index[1], 0);
	cr_expect_eq(r.type[2], QEV_TOOL_ARGS);
	cr_expect_eq(r.type[3], QEV_TOOL_ARGS);
	cr_expect_eq(r.type[4], QEV_TOOL_STOP);
	cr_expect_str_eq(r.id[4], "tooluse_1");
	cr_expect_str_eq(rec_all(&r, QEV_TOOL_ARGS),
	    "{\"command\":\"echo hello\"}");
	cr_expect_eq(us.us_stop, QSTOP_TOOL_USE);
	cr_expect_eq(us.us_ntools, 1);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "Let me run it.");
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, tool_first_frame_with_input)
{
	unsigned char	 f[512];
	size_t		 n;
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	n = unhex(KIRO_B, f, sizeof(f));
	buf_append(&b, f, n);
	ev_frame(&b, "toolUseEvent", "{\"name\":\"get_weather\","
	    "\"toolUseId\":\"tooluse_1\",\"stop\":true}");
	cr_assert_eq(run(&r, 1, &b, 1, &us), 0);
	cr_assert_eq(r.n, 3);
	cr_expect_eq(r.type[0], QEV_TOOL_START);
	cr_expect_str_eq(r.name[0], "get_weather");
	cr_expect_eq(r.type[1], QEV_TOOL_ARGS);
	cr_expect_str_eq(r.text[1], "{\"city\":\"Paris\"}");
	cr_expect_eq(r.type[2], QEV_TOOL_STOP);
	cr_expect_eq(us.us_stop, QSTOP_TOOL_USE);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, duplicate_tool_call_dropped)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	tool_frames(&b, "tooluse_1", "a");
	tool_frames(&b, "tooluse_1", "a");
	tool_frames(&b, "tooluse_2", "b");
	tool_frames(&b, "tooluse_1", "a");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_eq(rec_count(&r, QEV_TOOL_START), 2);
	cr_expect_eq(rec_count(&r, QEV_TOOL_STOP), 2);
	cr_expect_str_eq(rec_all(&r, QEV_TOOL_ARGS),
	    "{\"command\":\"echo hello\"}{\"command\":\"echo hello\"}");
	cr_expect_eq(us.us_ntools, 2);
	cr_expect_eq(us.us_stop, QSTOP_TOOL_USE);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, new_tool_id_closes_open_call)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	ev_frame(&b, "toolUseEvent",
	    "{\"toolUseId\":\"t1\",\"name\":\"a\",\"input\":\"{}\"}");
	ev_frame(&b, "toolUseEvent", "{\"toolUseId\":\"t2\",\"name\":\"b\"}");
	ev_frame(&b, "toolUseEvent",
	    "{\"toolUseId\":\"t2\",\"input\":\"{\\\"x\\\":1}\"}");
	ev_frame(&b, "toolUseEvent", "{\"toolUseId\":\"t2\",\"stop\":true}");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_assert_eq(r.n, 6);
	cr_expect_eq(r.type[0], QEV_TOOL_START);
	cr_expect_eq(r.type[1], QEV_TOOL_ARGS);
	cr_expect_eq(r.type[2], QEV_TOOL_STOP);
	cr_expect_str_eq(r.id[2], "t1");
	cr_expect_eq(r.type[3], QEV_TOOL_START);
	cr_expect_str_eq(r.id[3], "t2");
	cr_expect_str_eq(r.name[3], "b");
	cr_expect_eq(r.index[3], 1);
	cr_expect_eq(r.type[4], QEV_TOOL_ARGS);
	cr_expect_str_eq(r.name[4], "b", "a frame without a name keeps it");
	cr_expect_eq(r.index[4], 1);
	cr_expect_eq(r.type[5], QEV_TOOL_STOP);
	cr_expect_eq(us.us_stop, QSTOP_TOOL_USE);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, open_tool_call_at_end_is_max_tokens)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	ev_frame(&b, "toolUseEvent",
	    "{\"toolUseId\":\"t1\",\"name\":\"a\",\"input\":\"{\\\"x\"}");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_assert_eq(r.n, 3);
	cr_expect_eq(r.type[2], QEV_TOOL_STOP);
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, thinking_then_tool)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "<thinking>\nplan</thinking>");
	tool_frames(&b, "t1", "a");
	cr_assert_eq(run(&r, 1, &b, 1, &us), 0);
	cr_expect_str_eq(rec_all(&r, QEV_THINKING), "plan");
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "");
	cr_expect_eq(r.type[0], QEV_THINKING);
	cr_expect_eq(r.type[1], QEV_TOOL_START);
	cr_expect_eq(us.us_stop, QSTOP_TOOL_USE);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, reasoning_event_is_thinking)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	ev_frame(&b, "reasoningContentEvent", "{\"text\":\"hmm\"}");
	ev_frame(&b, "reasoningContentEvent", "{\"signature\":\"sig\"}");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_str_eq(rec_all(&r, QEV_THINKING), "hmm");
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS, "thinking only");
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);

	buf_init(&b);
	rec_init(&r);
	ev_frame(&b, "reasoningContentEvent", "{\"text\":\"hmm\"}");
	text_frame(&b, "ok");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_eq(us.us_stop, QSTOP_END_TURN);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, metadata_and_conversation)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	ev_frame(&b, "initial-response", "{\"conversationId\":\"c-1\"}");
	ev_frame(&b, "messageMetadataEvent",
	    "{\"conversationId\":\"c-2\",\"utteranceId\":\"u\"}");
	text_frame(&b, "x");
	ev_frame(&b, "metadataEvent", "{\"tokenUsage\":{\"uncachedInputTokens\""
	    ":100,\"outputTokens\":7,\"totalTokens\":117,"
	    "\"cacheReadInputTokens\":10,\"cacheWriteInputTokens\":0},"
	    "\"stopReason\":\"MAX_TOKENS\"}");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_str_eq(us.us_conversation_id, "c-2");
	cr_expect_eq(us.us_in_tokens, 110);
	cr_expect_eq(us.us_out_tokens, 7);
	cr_expect_eq(us.us_upstream_stop, QSTOP_MAX_TOKENS);
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, context_full)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "x");
	ev_frame(&b, "contextUsageEvent", "{\"contextUsagePercentage\":100}");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_eq(us.us_stop, QSTOP_CONTEXT);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

struct xcase {
	const char	*xtype;
	const char	*payload;
	int		 status;
	const char	*etype;
	const char	*msg;
};

Test(ustream, exception_mapping)
{
	static const struct xcase cases[] = {
		{ "ThrottlingException", "{\"message\":\"Too many requests\"}",
		  429, "rate_limit_error", "Too many requests" },
		{ "ThrottlingException", "{\"message\":\"busy\",\"reason\":"
		  "\"INSUFFICIENT_MODEL_CAPACITY\"}", 529, "overloaded_error",
		  "busy" },
		{ "InternalServerException", "{\"message\":\"oops\"}", 500,
		  "api_error", "oops" },
		{ "ServiceUnavailableException", "{\"message\":\"later\"}",
		  529, "overloaded_error", "later" },
		{ "ValidationException", "{\"message\":\"Improperly formed "
		  "request.\"}", 400, "invalid_request_error",
		  "Improperly formed request." },
		{ "AccessDeniedException", "{\"message\":\"no\"}", 502,
		  "api_error", "no" },
		{ "WeirdException", "garbage", 502, "api_error",
		  "upstream WeirdException" },
	};
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;
	size_t		 i;

	for (i = 0; i < nitems(cases); i++) {
		buf_init(&b);
		rec_init(&r);
		text_frame(&b, "partial ");
		ex_frame(&b, cases[i].xtype, cases[i].payload);
		text_frame(&b, "never seen");
		ustream_init(&us, 0, rec_emit, &r);
		cr_expect_eq(ustream_feed(&us, b.b_data, b.b_len), -1);
		cr_expect_eq(ustream_feed(&us, b.b_data, b.b_len), -1);
		ustream_finish(&us, 1);
		cr_assert_eq(r.n, 2, "%s", cases[i].xtype);
		cr_expect_eq(r.type[1], QEV_ERROR);
		cr_expect_eq(r.status[1], cases[i].status, "%s",
		    cases[i].xtype);
		cr_expect_str_eq(r.etype[1], cases[i].etype);
		cr_expect_str_eq(r.text[1], cases[i].msg);
		cr_expect_str_eq(rec_all(&r, QEV_TEXT), "partial ");
		cr_expect_eq(us.us_stop, QSTOP_ERROR);
		ustream_free(&us);
		rec_free(&r);
		buf_free(&b);
	}
}

Test(ustream, reference_frame_e)
{
	unsigned char	 f[512];
	size_t		 n = unhex(KIRO_E, f, sizeof(f));
	struct rec	 r;
	struct ustream	 us;

	rec_init(&r);
	ustream_init(&us, 1, rec_emit, &r);
	cr_expect_eq(ustream_feed(&us, f, n), -1);
	ustream_finish(&us, 1);
	cr_assert_eq(r.n, 1);
	cr_expect_eq(r.status[0], 429);
	cr_expect_str_eq(r.text[0], "Too many requests");
	cr_expect_eq(us.us_stop, QSTOP_ERROR);
	ustream_free(&us);
	rec_free(&r);
}

Test(ustream, content_length_exceeded)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "long ");
	ex_frame(&b, "ContentLengthExceededException",
	    "{\"message\":\"too long\"}");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_eq(rec_count(&r, QEV_ERROR), 0);
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);

	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "long ");
	ex_frame(&b, "ValidationException", "{\"message\":\"Input is too "
	    "long.\",\"reason\":\"CONTENT_LENGTH_EXCEEDS_THRESHOLD\"}");
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_eq(rec_count(&r, QEV_ERROR), 0);
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, error_message_type)
{
	const char *const names[] = { ":message-type", ":error-code",
	    ":error-message" };
	const char *const values[] = { "error", "InternalFailure",
	    "Something broke" };
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	cr_assert_eq(es_encode(&b, names, values, 3, NULL, 0), 0);
	cr_expect_eq(run(&r, 0, &b, 1, &us), -1);
	cr_assert_eq(r.n, 1);
	cr_expect_eq(r.type[0], QEV_ERROR);
	cr_expect_eq(r.status[0], 502);
	cr_expect_str_eq(r.etype[0], "api_error");
	cr_expect_str_eq(r.text[0], "Something broke");
	cr_expect_eq(us.us_stop, QSTOP_ERROR);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, corrupt_frame)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;

	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "ok ");
	text_frame(&b, "bad");
	b.b_data[b.b_len - 1] ^= 1;
	cr_expect_eq(run(&r, 0, &b, 1, &us), -1);
	cr_assert_eq(r.n, 2);
	cr_expect_str_eq(r.text[0], "ok ");
	cr_expect_eq(r.type[1], QEV_ERROR);
	cr_expect_eq(r.status[1], 502);
	cr_expect_str_eq(r.etype[1], "api_error");
	cr_expect_str_eq(r.text[1],
	    "upstream event stream corrupt: message CRC mismatch");
	cr_expect_eq(us.us_stop, QSTOP_ERROR);
	cr_expect_eq(ustream_feed(&us, "x", 1), -1);
	cr_expect_eq(r.n, 2, "nothing after the error");
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, truncated_stream_is_max_tokens)
{
	struct buf	 b;
	struct rec	 r;
	struct ustream	 us;
	size_t		 whole;

	/* a partial frame at the end */
	buf_init(&b);
	rec_init(&r);
	text_frame(&b, "Hello");
	whole = b.b_len;
	text_frame(&b, " world");
	b.b_len = whole + 20;
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "Hello");
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS);
	ustream_free(&us);
	rec_free(&r);

	/* whole frames, but the transport broke */
	rec_init(&r);
	b.b_len = whole;
	cr_assert_eq(run(&r, 0, &b, 0, &us), 0);
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS);
	ustream_free(&us);
	rec_free(&r);

	/* the same stream ended well */
	rec_init(&r);
	cr_assert_eq(run(&r, 0, &b, 1, &us), 0);
	cr_expect_eq(us.us_stop, QSTOP_END_TURN);
	ustream_free(&us);
	rec_free(&r);

	/* a stream cut inside the prelude */
	rec_init(&r);
	b.b_len = whole + 5;
	cr_assert_eq(run(&r, 1, &b, 1, &us), 0);
	cr_expect_str_eq(rec_all(&r, QEV_TEXT), "Hello");
	cr_expect_eq(us.us_stop, QSTOP_MAX_TOKENS);
	ustream_free(&us);
	rec_free(&r);
	buf_free(&b);
}

Test(ustream, empty_stream_ends_turn)
{
	struct rec	 r;
	struct ustream	 us;

	rec_init(&r);
	ustream_init(&us, 1, rec_emit, &r);
	cr_assert_eq(ustream_finish(&us, 1), 0);
	cr_expect_eq(r.n, 0);
	cr_expect_eq(us.us_stop, QSTOP_END_TURN);
	cr_expect_eq(ustream_feed(&us, "x", 1), -1, "no feeding after finish");
	ustream_free(&us);
	rec_free(&r);
}

static int
refuse_emit(const struct qev *ev, void *arg)
{
	(*(int *)arg)++;
	return -1;
}

Test(ustream, emit_failure_stops)
{
	struct buf	 b;
	struct ustream	 us;
	int		 calls = 0;

	buf_init(&b);
	text_frame(&b, "a");
	text_frame(&b, "b");
	ustream_init(&us, 0, refuse_emit, &calls);
	cr_expect_eq(ustream_feed(&us, b.b_data, b.b_len), -1);
	cr_expect_eq(calls, 1, "no ERROR event when emit itself failed");
	cr_expect_eq(ustream_feed(&us, b.b_data, b.b_len), -1);
	ustream_finish(&us, 1);
	cr_expect_eq(calls, 1);
	ustream_free(&us);
	buf_free(&b);
}
