/*
 * eventstream.c - the upstream's answer, byte by byte.
 *
 * The Q / Kiro upstream answers in AWS event-stream frames
 * (application/vnd.amazon.eventstream): a CRC-checked prelude, typed
 * headers, a JSON payload. A worker feeds every byte libcurl hands it to
 * ustream_feed, so this file sits on the hot path of every relayed
 * response: the decoder copies nothing when a whole frame is already in
 * the input and buffers only a frame cut by the transport.
 *
 * Two layers:
 *   es_*       the frame codec: no I/O, fed any split of bytes, calls back
 *              once per whole frame; any corruption is final.
 *   ustream_*  the interpreter: frames -> API-neutral qev events (text,
 *              thinking, tool calls, errors) for the renderers of
 *              openai.c/anthropic.c, plus the usage and stop reason.
 *
 * Nothing here logs a payload: it is the user's conversation.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "qrelayd.h"

#define ES_PRELUDE	12	/* total, headers length, prelude CRC */
#define ES_OVERHEAD	16	/* prelude and message CRC */

static uint32_t
es_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint16_t
es_be16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
es_put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t
es_crc(const void *p, size_t n)
{
	return (uint32_t)crc32(0L, p, (uInt)n);
}

static int
es_fail(struct es_decoder *d, const char *fmt, ...) QR_ATTR_PRINTF(2, 3);

static int
es_fail(struct es_decoder *d, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(d->ed_err, sizeof(d->ed_err), fmt, ap);
	va_end(ap);
	d->ed_failed = 1;
	return -1;
}

void
es_init(struct es_decoder *d, size_t max_frame)
{
	memset(d, 0, sizeof(*d));
	buf_init(&d->ed_buf);
	d->ed_max = max_frame ? max_frame : ES_MAX_FRAME;
	if (d->ed_max > UINT32_MAX)
		d->ed_max = UINT32_MAX;
}

void
es_free(struct es_decoder *d)
{
	buf_free(&d->ed_buf);
}

size_t
es_pending(const struct es_decoder *d)
{
	return d->ed_buf.b_len;
}

/* Checks the 12 prelude bytes; the frame's total length in *total. The
 * CRC goes first: when it is wrong the lengths are noise. */
static int
es_prelude(struct es_decoder *d, const unsigned char *p, uint32_t *total)
{
	uint32_t	 tl, hl;

	if (es_crc(p, 8) != es_be32(p + 8))
		return es_fail(d, "prelude CRC mismatch");
	tl = es_be32(p);
	hl = es_be32(p + 4);
	if (tl < ES_OVERHEAD)
		return es_fail(d, "frame length %u below %d", tl,
		    ES_OVERHEAD);
	if (tl > d->ed_max)
		return es_fail(d, "frame length %u over the limit %zu", tl,
		    d->ed_max);
	if (hl > tl - ES_OVERHEAD)
		return es_fail(d, "headers length %u does not fit frame "
		    "length %u", hl, tl);
	*total = tl;
	return 0;
}

/* Parses one whole frame whose prelude was checked, and hands it to cb. */
static int
es_frame(struct es_decoder *d, const unsigned char *p, uint32_t total,
    int (*cb)(const struct es_frame *, void *), void *arg)
{
	struct es_frame		 f;
	struct es_header	*h;
	const unsigned char	*q, *end;
	uint32_t		 hl;
	size_t			 vlen;

	if (es_crc(p, total - 4) != es_be32(p + total - 4))
		return es_fail(d, "message CRC mismatch");
	hl = es_be32(p + 4);
	q = p + ES_PRELUDE;
	end = q + hl;
	f.ef_nhdrs = 0;
	while (q < end) {
		if (f.ef_nhdrs == ES_MAX_HEADERS)
			return es_fail(d, "more than %d headers",
			    ES_MAX_HEADERS);
		h = &f.ef_hdrs[f.ef_nhdrs];
		h->eh_name_len = *q++;
		if (h->eh_name_len == 0)
			return es_fail(d, "empty header name");
		/* the name and the type byte */
		if ((size_t)(end - q) < h->eh_name_len + 1)
			return es_fail(d, "truncated header");
		h->eh_name = (const char *)q;
		q += h->eh_name_len;
		h->eh_type = *q++;
		h->eh_value = NULL;
		h->eh_value_len = 0;
		h->eh_int = 0;
		switch (h->eh_type) {
		case ES_TRUE:
		case ES_FALSE:
			h->eh_int = h->eh_type == ES_TRUE;
			vlen = 0;
			break;
		case ES_BYTE:
			vlen = 1;
			break;
		case ES_INT16:
			vlen = 2;
			break;
		case ES_INT32:
			vlen = 4;
			break;
		case ES_INT64:
		case ES_TIMESTAMP:
			vlen = 8;
			break;
		case ES_UUID:
			vlen = 16;
			break;
		case ES_BYTES:
		case ES_STRING:
			if (end - q < 2)
				return es_fail(d, "truncated header");
			vlen = es_be16(q);
			q += 2;
			break;
		default:
			return es_fail(d, "unknown header type %d",
			    h->eh_type);
		}
		if ((size_t)(end - q) < vlen)
			return es_fail(d, "truncated header");
		switch (h->eh_type) {
		case ES_BYTE:
			h->eh_int = (int8_t)q[0];
			break;
		case ES_INT16:
			h->eh_int = (int16_t)es_be16(q);
			break;
		case ES_INT32:
			h->eh_int = (int32_t)es_be32(q);
			break;
		case ES_INT64:
		case ES_TIMESTAMP:
			h->eh_int = (int64_t)((uint64_t)es_be32(q) << 32 |
			    es_be32(q + 4));
			break;
		case ES_BYTES:
		case ES_STRING:
		case ES_UUID:
			h->eh_value = (const char *)q;
			h->eh_value_len = vlen;
			break;
		}
		q += vlen;
		f.ef_nhdrs++;
	}
	f.ef_payload = (const char *)end;
	f.ef_payload_len = total - ES_OVERHEAD - hl;
	if (cb(&f, arg) == -1) {
		d->ed_err[0] = '\0';
		d->ed_failed = 1;
		return -1;
	}
	return 0;
}

int
es_feed(struct es_decoder *d, const void *data, size_t len,
    int (*cb)(const struct es_frame *, void *), void *arg)
{
	const unsigned char	*p = data;
	struct buf		*b = &d->ed_buf;
	size_t			 have, take;
	uint32_t		 total;

	if (d->ed_failed)
		return -1;
	while (len > 0) {
		if (b->b_len == 0) {
			/* the fast path: whole frames straight from the input */
			if (len < ES_PRELUDE)
				goto keep;
			if (es_prelude(d, p, &total) == -1)
				return -1;
			if (len < total)
				goto keep;
			if (es_frame(d, p, total, cb, arg) == -1)
				return -1;
			p += total;
			len -= total;
			continue;
		}
		/* a frame cut by the transport: complete it in the buffer */
		have = b->b_len;
		if (have < ES_PRELUDE) {
			take = ES_PRELUDE - have;
			if (take > len)
				take = len;
			if (buf_append(b, p, take) == -1)
				return es_fail(d, "out of memory");
			p += take;
			len -= take;
			if (b->b_len < ES_PRELUDE)
				return 0;
			if (es_prelude(d, (unsigned char *)b->b_data,
			    &total) == -1)
				return -1;
			have = b->b_len;
		} else
			total = es_be32((unsigned char *)b->b_data);
		take = total - have;
		if (take > len)
			take = len;
		if (buf_append(b, p, take) == -1)
			return es_fail(d, "out of memory");
		p += take;
		len -= take;
		if (b->b_len < total)
			return 0;
		buf_reset(b);
		if (es_frame(d, (unsigned char *)b->b_data, total, cb,
		    arg) == -1)
			return -1;
	}
	return 0;
 keep:
	if (buf_append(b, p, len) == -1)
		return es_fail(d, "out of memory");
	return 0;
}

const char *
es_header_str(const struct es_frame *f, const char *name, size_t *len)
{
	const struct es_header	*h;
	size_t			 i, nl = strlen(name);

	for (i = 0; i < f->ef_nhdrs; i++) {
		h = &f->ef_hdrs[i];
		if (h->eh_type == ES_STRING && h->eh_name_len == nl &&
		    memcmp(h->eh_name, name, nl) == 0) {
			if (len)
				*len = h->eh_value_len;
			return h->eh_value;
		}
	}
	return NULL;
}

int
es_encode(struct buf *b, const char *const *names,
    const char *const *values, size_t nhdrs, const void *payload,
    size_t len)
{
	unsigned char	*p, *start;
	size_t		 i, hl = 0, nl, vl, total;

	for (i = 0; i < nhdrs; i++) {
		nl = strlen(names[i]);
		vl = strlen(values[i]);
		if (nl == 0 || nl > 255 || vl > INT16_MAX)
			return -1;
		hl += 1 + nl + 1 + 2 + vl;
	}
	if (nhdrs > ES_MAX_HEADERS || len > ES_MAX_FRAME)
		return -1;
	total = ES_OVERHEAD + hl + len;
	if (total > ES_MAX_FRAME)
		return -1;
	if (buf_reserve(b, total) == -1)
		return -1;
	start = p = (unsigned char *)b->b_data + b->b_len;
	es_put32(p, (uint32_t)total);
	es_put32(p + 4, (uint32_t)hl);
	es_put32(p + 8, es_crc(p, 8));
	p += ES_PRELUDE;
	for (i = 0; i < nhdrs; i++) {
		nl = strlen(names[i]);
		vl = strlen(values[i]);
		*p++ = (unsigned char)nl;
		memcpy(p, names[i], nl);
		p += nl;
		*p++ = ES_STRING;
		*p++ = (unsigned char)(vl >> 8);
		*p++ = (unsigned char)vl;
		memcpy(p, values[i], vl);
		p += vl;
	}
	if (len)
		memcpy(p, payload, len);
	p += len;
	es_put32(p, es_crc(start, total - 4));
	b->b_len += total;
	b->b_data[b->b_len] = '\0';
	return 0;
}

/* ------------------------------------------------------------------ */
/* the interpreter                                                     */

enum { TS_PRE = 0, TS_OPEN, TS_IN, TS_TEXT };

static const char	 THINK_OPEN[] = "<thinking>";
static const char	 THINK_CLOSE[] = "</thinking>";
#define THINK_OPEN_LEN	(sizeof(THINK_OPEN) - 1)
#define THINK_CLOSE_LEN	(sizeof(THINK_CLOSE) - 1)

static int	 us_emit_ev(struct ustream *, struct qev *);

void
ustream_init(struct ustream *us, int thinking,
    int (*emit)(const struct qev *, void *), void *arg)
{
	memset(us, 0, sizeof(*us));
	es_init(&us->us_dec, ES_MAX_FRAME);
	buf_init(&us->us_hold);
	buf_init(&us->us_last_text);
	buf_init(&us->us_done_ids);
	us->us_emit = emit;
	us->us_arg = arg;
	us->us_thinking = thinking != 0;
	us->us_think_state = thinking ? TS_PRE : TS_TEXT;
}

void
ustream_free(struct ustream *us)
{
	es_free(&us->us_dec);
	buf_free(&us->us_hold);
	buf_free(&us->us_last_text);
	buf_free(&us->us_done_ids);
}

static int
us_emit_ev(struct ustream *us, struct qev *ev)
{
	switch (ev->qv_type) {
	case QEV_TEXT:
	case QEV_THINKING:
	case QEV_TOOL_ARGS:
		if (ev->qv_len == 0)
			return 0;
		if (ev->qv_type == QEV_TEXT)
			us->us_ntext += ev->qv_len;
		else if (ev->qv_type == QEV_THINKING) {
			us->us_nthink += ev->qv_len;
			us->us_think_prev = ev->qv_text[ev->qv_len - 1];
		}
		break;
	}
	return us->us_emit(ev, us->us_arg);
}

static int
us_emit_str(struct ustream *us, int type, const char *p, size_t n)
{
	struct qev	 ev;

	if (n == 0)
		return 0;
	memset(&ev, 0, sizeof(ev));
	ev.qv_type = type;
	ev.qv_text = p;
	ev.qv_len = n;
	return us_emit_ev(us, &ev);
}

static int
us_error(struct ustream *us, int status, const char *type, const char *msg)
{
	struct qev	 ev;

	us->us_failed = 1;
	if (us->us_err_sent)
		return -1;
	us->us_err_sent = 1;
	memset(&ev, 0, sizeof(ev));
	ev.qv_type = QEV_ERROR;
	ev.qv_status = status;
	ev.qv_err_type = type;
	ev.qv_err_msg = msg;
	us->us_emit(&ev, us->us_arg);
	return -1;
}

/* Closes the open tool call, if any; it counts as done from now on. */
static int
us_tool_close(struct ustream *us)
{
	struct qev	 ev;
	size_t		 n;

	if (us->us_tool_id[0] == '\0')
		return 0;
	n = strlen(us->us_tool_id);
	/* ids are remembered up to a bound so a hostile stream of
	 * distinct ids cannot make the duplicate check quadratic */
	if (us->us_done_ids.b_len < 65536) {
		if (us->us_done_ids.b_len == 0 &&
		    buf_append(&us->us_done_ids, "", 1) == -1)
			return -1;
		if (buf_append(&us->us_done_ids, us->us_tool_id, n + 1) == -1)
			return -1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.qv_type = QEV_TOOL_STOP;
	ev.qv_tool_id = us->us_tool_id;
	ev.qv_tool_name = us->us_tool_name;
	ev.qv_tool_index = us->us_ntools - 1;
	if (us_emit_ev(us, &ev) == -1)
		return -1;
	us->us_tool_id[0] = '\0';
	us->us_tool_name[0] = '\0';
	return 0;
}

static int
us_tool_done(const struct ustream *us, const char *id, size_t n)
{
	const struct buf	*b = &us->us_done_ids;
	const char		*p, *end;

	if (b->b_len == 0)
		return 0;
	/* entries are "\0id\0": find "id\0" right after a NUL */
	p = b->b_data;
	end = b->b_data + b->b_len;
	while ((p = memmem(p, (size_t)(end - p), id, n)) != NULL) {
		if (p > b->b_data && p[-1] == '\0' && p + n < end &&
		    p[n] == '\0')
			return 1;
		p++;
	}
	return 0;
}

static int
is_quote(int c)
{
	return c == '`' || c == '"' || c == '\'';
}

static int
all_space(const char *p, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (!isspace((unsigned char)p[i]))
			return 0;
	return 1;
}

/* The longest tail of p[0..n) that begins lit: what must wait for the
 * next chunk to know whether it is a tag. */
static size_t
tag_tail(const char *p, size_t n, const char *lit, size_t litlen)
{
	size_t	 k;
	const char *c;

	k = n < litlen - 1 ? n : litlen - 1;
	for (; k > 0; k--) {
		c = p + n - k;
		if (*c == lit[0] && memcmp(c, lit, k) == 0)
			return k;
	}
	return 0;
}

/*
 * The <thinking> splitter (§7.2). Runs over p[0..n) and returns how many
 * bytes it has dealt with; the rest is a possible tag cut by the chunk
 * boundary and waits in us_hold. final: no more text comes before a tool
 * call or the end, so nothing may be held back.
 */
static int
think_run(struct ustream *us, const char *p, size_t n, int final,
    size_t *used)
{
	size_t		 pos = 0, i, rem, t, after, avail, h;
	const char	*c;
	int		 end;
	char		 prev;

	for (;;) {
		switch (us->us_think_state) {
		case TS_PRE:
			/* whitespace before the tag is not worth a text block */
			for (i = pos; i < n && isspace((unsigned char)p[i]); i++)
				;
			rem = n - i;
			if (rem == 0) {
				/* held whitespace is rescanned per chunk:
				 * bound it */
				if (!final && n - pos < 4096) {
					*used = pos;
					return 0;
				}
				us->us_think_state = TS_TEXT;
				continue;
			}
			if (rem >= THINK_OPEN_LEN && memcmp(p + i, THINK_OPEN,
			    THINK_OPEN_LEN) == 0) {
				us->us_think_state = TS_OPEN;
				pos = i + THINK_OPEN_LEN;
				continue;
			}
			if (rem < THINK_OPEN_LEN && !final &&
			    memcmp(p + i, THINK_OPEN, rem) == 0) {
				*used = pos;
				return 0;
			}
			us->us_think_state = TS_TEXT;
			continue;
		case TS_OPEN:
			/* one newline after the tag belongs to the tag */
			if (pos == n && !final) {
				*used = pos;
				return 0;
			}
			if (pos < n && p[pos] == '\n')
				pos++;
			us->us_think_state = TS_IN;
			continue;
		case TS_IN:
			end = 0;
			t = pos;
			while ((c = memmem(p + t, n - t, THINK_CLOSE,
			    THINK_CLOSE_LEN)) != NULL) {
				t = (size_t)(c - p);
				after = t + THINK_CLOSE_LEN;
				avail = n - after;
				/* a quoted tag is thinking about tags; the
				 * byte before a held tag went out already */
				prev = t > 0 ? p[t - 1] : us->us_nthink > 0 ?
				    us->us_think_prev : '\0';
				if (is_quote(prev) ||
				    (avail > 0 && is_quote(p[after]))) {
					t++;
					continue;
				}
				if (avail >= 2 && p[after] == '\n' &&
				    p[after + 1] == '\n') {
					end = 1;
					after += 2;
					break;
				}
				if (final && all_space(p + after, avail)) {
					end = 1;
					after = n;
					break;
				}
				if (!final && (avail == 0 || (avail == 1 &&
				    p[after] == '\n'))) {
					/* the tag, waiting for its "\n\n" */
					if (us_emit_str(us, QEV_THINKING,
					    p + pos, t - pos) == -1)
						return -1;
					*used = t;
					return 0;
				}
				t++;
			}
			if (end) {
				if (us_emit_str(us, QEV_THINKING, p + pos,
				    t - pos) == -1)
					return -1;
				pos = after;
				us->us_think_state = TS_TEXT;
				continue;
			}
			h = final ? 0 : tag_tail(p + pos, n - pos, THINK_CLOSE,
			    THINK_CLOSE_LEN);
			if (us_emit_str(us, QEV_THINKING, p + pos,
			    n - pos - h) == -1)
				return -1;
			*used = n - h;
			return 0;
		default:
			if (us_emit_str(us, QEV_TEXT, p + pos, n - pos) == -1)
				return -1;
			*used = n;
			return 0;
		}
	}
}

/* Text from an assistantResponseEvent (or NULL, 0 with final set to
 * flush what is held). */
static int
us_text(struct ustream *us, const char *p, size_t n, int final)
{
	struct buf	*h = &us->us_hold;
	size_t		 used;

	if (p == NULL)
		p = "";
	if (!us->us_thinking || (us->us_think_state == TS_TEXT &&
	    h->b_len == 0))
		return us_emit_str(us, QEV_TEXT, p, n);
	if (h->b_len == 0) {
		if (think_run(us, p, n, final, &used) == -1)
			return -1;
		if (used < n && buf_append(h, p + used, n - used) == -1)
			return -1;
		return 0;
	}
	if (n > 0 && buf_append(h, p, n) == -1)
		return -1;
	if (think_run(us, h->b_data, h->b_len, final, &used) == -1)
		return -1;
	if (used == h->b_len)
		buf_reset(h);
	else if (used > 0) {
		memmove(h->b_data, h->b_data + used, h->b_len - used);
		h->b_len -= used;
		h->b_data[h->b_len] = '\0';
	}
	return 0;
}

/* Text or thinking is about to go out: a tool call still open ends. */
static int
us_before_content(struct ustream *us)
{
	return us_tool_close(us);
}

static const char *
js_str(struct json_object *o, const char *key, size_t *len)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	if (len)
		*len = (size_t)json_object_get_string_len(v);
	return json_object_get_string(v);
}

static int
js_num(struct json_object *o, const char *key, double *d)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v))
		return -1;
	if (!json_object_is_type(v, json_type_double) &&
	    !json_object_is_type(v, json_type_int))
		return -1;
	*d = json_object_get_double(v);
	return 0;
}

static int64_t
js_int(struct json_object *o, const char *key)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return 0;
	return json_object_get_int64(v);
}

#define US_DUP_MIN	32	/* bytes: shorter repeats are real text */

static int
us_ev_text(struct ustream *us, struct json_object *o)
{
	const char	*s;
	size_t		 n;

	if (json_object_object_get_ex(o, "followupPrompt", NULL))
		return 0;
	if ((s = js_str(o, "content", &n)) == NULL || n == 0)
		return 0;
	/*
	 * Kiro sometimes repeats a chunk back to back. A short chunk may
	 * well repeat for real ("ha", "ha"; a run of "----"), so only
	 * chunks of US_DUP_MIN bytes or more count as duplicates.
	 */
	if (n >= US_DUP_MIN && us->us_last_text.b_len == n + 1 &&
	    memcmp(us->us_last_text.b_data + 1, s, n) == 0)
		return 0;
	buf_reset(&us->us_last_text);
	/* a leading byte tells "no previous chunk" from "empty chunk" */
	if (buf_append(&us->us_last_text, "t", 1) == -1 ||
	    buf_append(&us->us_last_text, s, n) == -1)
		return -1;
	if (us_before_content(us) == -1)
		return -1;
	return us_text(us, s, n, 0);
}

static int
us_ev_tool(struct ustream *us, struct json_object *o)
{
	struct qev	 ev;
	const char	*id, *name, *input;
	size_t		 idlen, namelen = 0, inlen = 0;
	struct json_object *v;
	int		 stop = 0;

	if ((id = js_str(o, "toolUseId", &idlen)) == NULL || idlen == 0)
		return 0;
	if (idlen >= sizeof(us->us_tool_id) || memchr(id, '\0', idlen)) {
		log_debug("%s: tool id of %zu bytes ignored", __func__, idlen);
		return 0;
	}
	if ((name = js_str(o, "name", &namelen)) == NULL)
		name = "";
	input = js_str(o, "input", &inlen);
	if (json_object_object_get_ex(o, "stop", &v))
		stop = json_object_get_boolean(v);

	memset(&ev, 0, sizeof(ev));
	ev.qv_tool_id = id;
	if (strcmp(us->us_tool_id, id) != 0) {
		if (us_tool_done(us, id, idlen))
			return 0;	/* a duplicate of a finished call */
		if (us_tool_close(us) == -1)
			return -1;
		/* the thinking block ends where a tool call begins; held
		 * text goes out before it */
		if (us->us_thinking && us_text(us, NULL, 0, 1) == -1)
			return -1;
		strlcpy_qr(us->us_tool_id, id, sizeof(us->us_tool_id));
		strlcpy_qr(us->us_tool_name, name, sizeof(us->us_tool_name));
		ev.qv_type = QEV_TOOL_START;
		ev.qv_tool_name = name;
		ev.qv_tool_index = us->us_ntools++;
		if (us_emit_ev(us, &ev) == -1)
			return -1;
	}
	ev.qv_tool_name = us->us_tool_name;
	ev.qv_tool_index = us->us_ntools - 1;
	if (input != NULL && inlen > 0) {
		ev.qv_type = QEV_TOOL_ARGS;
		ev.qv_text = input;
		ev.qv_len = inlen;
		if (us_emit_ev(us, &ev) == -1)
			return -1;
	}
	if (stop)
		return us_tool_close(us);
	return 0;
}

static int
us_ev_reasoning(struct ustream *us, struct json_object *o)
{
	const char	*s;
	size_t		 n;

	if ((s = js_str(o, "text", &n)) == NULL || n == 0)
		return 0;
	if (us_before_content(us) == -1)
		return -1;
	return us_emit_str(us, QEV_THINKING, s, n);
}

static int
us_stop_reason(const char *s)
{
	if (s == NULL)
		return QSTOP_NONE;
	if (strcmp(s, "END_TURN") == 0)
		return QSTOP_END_TURN;
	if (strcmp(s, "TOOL_USE") == 0)
		return QSTOP_TOOL_USE;
	if (strcmp(s, "MAX_TOKENS") == 0)
		return QSTOP_MAX_TOKENS;
	if (strcmp(s, "MODEL_CONTEXT_WINDOW_EXCEEDED") == 0)
		return QSTOP_CONTEXT;
	return QSTOP_NONE;
}

static void
us_ev_metadata(struct ustream *us, struct json_object *o)
{
	struct json_object	*tu;

	if (json_object_object_get_ex(o, "tokenUsage", &tu) &&
	    json_object_is_type(tu, json_type_object)) {
		/* input as the model saw it: cached parts included */
		us->us_in_tokens = js_int(tu, "uncachedInputTokens") +
		    js_int(tu, "cacheReadInputTokens") +
		    js_int(tu, "cacheWriteInputTokens");
		us->us_out_tokens = js_int(tu, "outputTokens");
	}
	if (js_str(o, "stopReason", NULL) != NULL)
		us->us_upstream_stop = us_stop_reason(js_str(o, "stopReason",
		    NULL));
}

static int
us_event(struct ustream *us, const char *et, size_t etlen,
    struct json_object *o)
{
	const char	*s;
	double		 d;

#define ET_IS(lit)	(etlen == sizeof(lit) - 1 && memcmp(et, lit, etlen) == 0)
	if (ET_IS("assistantResponseEvent"))
		return us_ev_text(us, o);
	if (ET_IS("toolUseEvent"))
		return us_ev_tool(us, o);
	if (ET_IS("reasoningContentEvent"))
		return us_ev_reasoning(us, o);
	if (ET_IS("meteringEvent")) {
		if (js_num(o, "usage", &d) == 0 && d >= 0)
			us->us_credits += d;
		us->us_saw_end = 1;
	} else if (ET_IS("contextUsageEvent")) {
		if (js_num(o, "contextUsagePercentage", &d) == 0)
			us->us_context_pct = d;
		us->us_saw_end = 1;
	} else if (ET_IS("metadataEvent")) {
		us_ev_metadata(us, o);
		us->us_saw_end = 1;
	} else if (ET_IS("initial-response") ||
	    ET_IS("messageMetadataEvent")) {
		if ((s = js_str(o, "conversationId", NULL)) != NULL)
			strlcpy_qr(us->us_conversation_id, s,
			    sizeof(us->us_conversation_id));
	}
#undef ET_IS
	return 0;
}

/* The events this file acts on; the rest are not even parsed. */
static int
us_known_event(const char *et, size_t n)
{
	static const char *const known[] = {
		"assistantResponseEvent", "toolUseEvent",
		"reasoningContentEvent", "meteringEvent",
		"contextUsageEvent", "metadataEvent", "initial-response",
		"messageMetadataEvent",
	};
	size_t	 i;

	for (i = 0; i < nitems(known); i++)
		if (strlen(known[i]) == n && memcmp(known[i], et, n) == 0)
			return 1;
	return 0;
}

/* A payload as a JSON object, or NULL. jsonr, not json_tokener: this
 * runs for every frame of every stream, and json_tokener_parse_ex
 * switches the locale on each call. */
static struct json_object *
us_parse(struct ustream *us, const char *p, size_t n)
{
	struct json_object	*o;

	if (n == 0 || (o = jsonr_parse(p, n, QR_JSON_DEPTH, NULL)) == NULL)
		return NULL;
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static int
us_exception(struct ustream *us, const struct es_frame *f)
{
	struct json_object	*o;
	const char		*xt, *reason = NULL, *msg = NULL;
	char			 xtype[64], text[256];
	size_t			 xtlen = 0;
	int			 rc;

	xt = es_header_str(f, ":exception-type", &xtlen);
	if (xt == NULL)
		xtlen = 0;
	if (xtlen >= sizeof(xtype))
		xtlen = sizeof(xtype) - 1;
	memcpy(xtype, xt ? xt : "", xtlen);
	xtype[xtlen] = '\0';
	o = us_parse(us, f->ef_payload, f->ef_payload_len);
	if (o != NULL) {
		reason = js_str(o, "reason", NULL);
		msg = js_str(o, "message", NULL);
	}
	if (strcmp(xtype, "ContentLengthExceededException") == 0 ||
	    (reason && strcmp(reason, "CONTENT_LENGTH_EXCEEDS_THRESHOLD") == 0)) {
		/* the answer hit the limit: it ends as max_tokens */
		us->us_cle = 1;
		json_object_put(o);
		return 0;
	}
	if (msg == NULL || *msg == '\0') {
		snprintf(text, sizeof(text), "upstream %s",
		    xtype[0] ? xtype : "exception");
		msg = text;
	}
	if (strcmp(xtype, "ThrottlingException") == 0) {
		if (reason && strcmp(reason, "INSUFFICIENT_MODEL_CAPACITY") == 0)
			rc = us_error(us, 529, "overloaded_error", msg);
		else
			rc = us_error(us, 429, "rate_limit_error", msg);
	} else if (strcmp(xtype, "InternalServerException") == 0)
		rc = us_error(us, 500, "api_error", msg);
	else if (strcmp(xtype, "ServiceUnavailableException") == 0)
		rc = us_error(us, 529, "overloaded_error", msg);
	else if (strcmp(xtype, "ValidationException") == 0)
		rc = us_error(us, 400, "invalid_request_error", msg);
	else
		rc = us_error(us, 502, "api_error", msg);
	json_object_put(o);
	return rc;
}

static int
us_frame(const struct es_frame *f, void *arg)
{
	struct ustream		*us = arg;
	struct json_object	*o;
	const char		*mt, *et, *em;
	size_t			 mtlen, etlen, emlen;
	char			 text[256];
	int			 rc;

	us->us_nframes++;
	if ((mt = es_header_str(f, ":message-type", &mtlen)) == NULL)
		return 0;
	if (mtlen == 5 && memcmp(mt, "event", 5) == 0) {
		if ((et = es_header_str(f, ":event-type", &etlen)) == NULL)
			etlen = 0;
		/* only chunks right next to each other are duplicates */
		if (etlen != 22 || memcmp(et, "assistantResponseEvent", 22))
			buf_reset(&us->us_last_text);
		if (et == NULL || !us_known_event(et, etlen))
			return 0;
		if ((o = us_parse(us, f->ef_payload, f->ef_payload_len)) ==
		    NULL) {
			log_debug("%s: %.*s with a payload that is not a JSON "
			    "object, ignored", __func__, (int)etlen, et);
			return 0;
		}
		rc = us_event(us, et, etlen, o);
		json_object_put(o);
		return rc;
	}
	if (mtlen == 9 && memcmp(mt, "exception", 9) == 0)
		return us_exception(us, f);
	if (mtlen == 5 && memcmp(mt, "error", 5) == 0) {
		if ((em = es_header_str(f, ":error-message", &emlen)) == NULL &&
		    (em = es_header_str(f, ":error-code", &emlen)) == NULL) {
			em = "upstream error";
			emlen = strlen(em);
		}
		snprintf(text, sizeof(text), "%.*s", (int)emlen, em);
		return us_error(us, 502, "api_error", text);
	}
	return 0;
}

int
ustream_feed(struct ustream *us, const void *p, size_t n)
{
	char	 msg[192];

	if (us->us_failed || us->us_finished)
		return -1;
	if (es_feed(&us->us_dec, p, n, us_frame, us) == 0)
		return 0;
	if (!us->us_failed && us->us_dec.ed_err[0] != '\0') {
		snprintf(msg, sizeof(msg), "upstream event stream corrupt: %s",
		    us->us_dec.ed_err);
		return us_error(us, 502, "api_error", msg);
	}
	us->us_failed = 1;
	return -1;
}

int
ustream_finish(struct ustream *us, int transport_ok)
{
	int	 rc = 0;

	if (us->us_finished)
		return us->us_failed ? -1 : 0;
	us->us_finished = 1;
	if (!us->us_failed) {
		if (us->us_thinking && us_text(us, NULL, 0, 1) == -1)
			rc = -1;
		us->us_tool_open_at_end = us->us_tool_id[0] != '\0';
		if (rc == 0 && us_tool_close(us) == -1)
			rc = -1;
		if (rc == -1)
			us->us_failed = 1;
	}
	if (us->us_failed)
		us->us_stop = QSTOP_ERROR;
	else if (us->us_cle || !transport_ok || es_pending(&us->us_dec) > 0 ||
	    us->us_tool_open_at_end ||
	    (us->us_nthink > 0 && us->us_ntext == 0 && us->us_ntools == 0))
		us->us_stop = QSTOP_MAX_TOKENS;
	else if (us->us_context_pct >= 100.0 ||
	    us->us_upstream_stop == QSTOP_CONTEXT)
		us->us_stop = QSTOP_CONTEXT;
	else if (us->us_upstream_stop == QSTOP_MAX_TOKENS)
		us->us_stop = QSTOP_MAX_TOKENS;
	else if (us->us_ntools > 0)
		us->us_stop = QSTOP_TOOL_USE;
	else
		us->us_stop = QSTOP_END_TURN;
	return rc;
}
