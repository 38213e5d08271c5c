/*
 * fuzz_eventstream.c - libFuzzer target for eventstream.c. The first
 * byte picks how the rest is read:
 *   even  raw bytes, fed as they are (the decoder's corruption paths);
 *   odd   records separated by "\xff\xfe", each turned into a frame with
 *         good CRCs (so the fuzzer gets past the CRC to the interpreter):
 *         the record's first byte picks the event, the rest is its text.
 * The stream goes through a ustream with thinking on twice: whole, and
 * cut at points taken from the input. Both must tell the same events;
 * the events must be well formed. Invariants are checked with abort().
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

/* What the emit callback saw, serialised, and the checks it made. */
struct log {
	struct buf	 l_text;	/* every event, one line each */
	int		 l_tool_open;
	int		 l_ntools;
	int		 l_error;
};

static int
log_emit(const struct qev *ev, void *arg)
{
	struct log	*l = arg;

	if (l->l_error)
		abort();		/* nothing after an error */
	switch (ev->qv_type) {
	case QEV_TEXT:
	case QEV_THINKING:
	case QEV_TOOL_ARGS:
		if (ev->qv_text == NULL || ev->qv_len == 0)
			abort();
		if ((ev->qv_type == QEV_TOOL_ARGS) != l->l_tool_open)
			abort();	/* args only inside a call, nothing else */
		break;
	case QEV_TOOL_START:
		if (l->l_tool_open || ev->qv_tool_id == NULL ||
		    ev->qv_tool_id[0] == '\0' || ev->qv_tool_name == NULL ||
		    ev->qv_tool_index != l->l_ntools)
			abort();
		l->l_tool_open = 1;
		l->l_ntools++;
		break;
	case QEV_TOOL_STOP:
		if (!l->l_tool_open || ev->qv_tool_index != l->l_ntools - 1)
			abort();
		l->l_tool_open = 0;
		break;
	case QEV_ERROR:
		if (ev->qv_status < 400 || ev->qv_status > 599 ||
		    ev->qv_err_type == NULL || ev->qv_err_msg == NULL)
			abort();
		l->l_error = 1;
		break;
	default:
		abort();
	}
	buf_printf(&l->l_text, "%d %d %s|", ev->qv_type, ev->qv_status,
	    ev->qv_tool_id ? ev->qv_tool_id : "");
	if (ev->qv_text)
		buf_append(&l->l_text, ev->qv_text, ev->qv_len);
	if (ev->qv_err_msg)
		buf_puts(&l->l_text, ev->qv_err_msg);
	buf_puts(&l->l_text, "\n");
	return 0;
}

static void
add_frame(struct buf *s, const char *mt, const char *tname,
    const char *tvalue, const char *payload, size_t len)
{
	const char	*names[3] = { ":message-type", tname, ":content-type" };
	const char	*values[3] = { mt, tvalue, "application/json" };

	es_encode(s, names, values, 3, payload, len);
}

static void
add_json(struct buf *s, const char *et, struct json_object *o)
{
	size_t		 n;
	const char	*p;

	p = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
	add_frame(s, "event", ":event-type", et, p, n);
	json_object_put(o);
}

/* One record -> one frame. */
static void
record(struct buf *s, const uint8_t *p, size_t n)
{
	static const char *const ids[] = { "t1", "t2", "t3" };
	static const char *const xtypes[] = { "ThrottlingException",
	    "ContentLengthExceededException", "ValidationException",
	    "InternalServerException", "Odd" };
	struct json_object	*o;
	const char		*rest;
	size_t			 len;
	unsigned		 k, f;

	if (n == 0)
		return;
	k = p[0];
	rest = (const char *)p + 1;
	len = n - 1;
	o = json_object_new_object();
	switch (k % 10) {
	case 0: case 1: case 2:
		json_object_object_add(o, "content",
		    json_object_new_string_len(rest, (int)len));
		add_json(s, "assistantResponseEvent", o);
		break;
	case 3: case 4:
		f = k / 10;
		json_object_object_add(o, "toolUseId",
		    json_object_new_string(ids[f % 3]));
		if (f & 4)
			json_object_object_add(o, "name",
			    json_object_new_string("fn"));
		if (len > 0)
			json_object_object_add(o, "input",
			    json_object_new_string_len(rest, (int)len));
		if (f & 8)
			json_object_object_add(o, "stop",
			    json_object_new_boolean(1));
		add_json(s, "toolUseEvent", o);
		break;
	case 5:
		json_object_object_add(o, "text",
		    json_object_new_string_len(rest, (int)len));
		add_json(s, "reasoningContentEvent", o);
		break;
	case 6:
		json_object_put(o);
		/* the payload as it is: the fuzzer writes the JSON */
		add_frame(s, "event", ":event-type", (k / 10) % 2 ?
		    "metadataEvent" : "contextUsageEvent", rest, len);
		break;
	case 7:
		json_object_put(o);
		add_frame(s, "exception", ":exception-type",
		    xtypes[(k / 10) % nitems(xtypes)], rest, len);
		break;
	case 8:
		json_object_put(o);
		add_frame(s, "error", ":error-message", "boom", NULL, 0);
		break;
	default:
		json_object_put(o);
		add_frame(s, "event", ":event-type", "meteringEvent", rest, len);
		break;
	}
}

/* Feeds the stream to a fresh ustream, cut by seed (none: whole). */
static int
run(const uint8_t *p, size_t n, const uint8_t *seed, size_t nseed,
    struct log *l, int *stop)
{
	struct ustream	 us;
	size_t		 off = 0, piece, i = 0;
	int		 rc = 0;

	memset(l, 0, sizeof(*l));
	buf_init(&l->l_text);
	ustream_init(&us, 1, log_emit, l);
	while (off < n && rc == 0) {
		piece = nseed ? 1 + seed[i++ % nseed] % 64 : n;
		if (piece > n - off)
			piece = n - off;
		rc = ustream_feed(&us, p + off, piece);
		off += piece;
	}
	if (rc == -1 && !l->l_error)
		abort();		/* a failure always says so */
	ustream_finish(&us, 1);
	if (l->l_tool_open && !l->l_error)
		abort();		/* finish closes the call */
	if (us.us_stop == QSTOP_NONE)
		abort();
	if ((us.us_stop == QSTOP_ERROR) != l->l_error)
		abort();
	if (ustream_feed(&us, "x", 1) != -1)
		abort();
	*stop = us.us_stop;
	ustream_free(&us);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf	 s;
	struct log	 a, b;
	const uint8_t	*p, *end, *sep;
	int		 rc_a, rc_b, stop_a, stop_b;

	if (size == 0)
		return 0;
	buf_init(&s);
	if (data[0] & 1) {
		p = data + 1;
		end = data + size;
		while (p < end) {
			sep = memmem(p, (size_t)(end - p), "\xff\xfe", 2);
			if (sep == NULL)
				sep = end;
			record(&s, p, (size_t)(sep - p));
			p = sep == end ? end : sep + 2;
		}
	} else
		buf_append(&s, data + 1, size - 1);

	rc_a = run((uint8_t *)s.b_data, s.b_len, NULL, 0, &a, &stop_a);
	rc_b = run((uint8_t *)s.b_data, s.b_len, data, size, &b, &stop_b);
	if (rc_a != rc_b || stop_a != stop_b)
		abort();
	if (a.l_text.b_len != b.l_text.b_len || (a.l_text.b_len > 0 &&
	    memcmp(a.l_text.b_data, b.l_text.b_data, a.l_text.b_len) != 0))
		abort();
	buf_free(&a.l_text);
	buf_free(&b.l_text);
	buf_free(&s);
	return 0;
}
