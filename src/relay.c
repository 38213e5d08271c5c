/*
 * relay.c - one client request through the upstream, in a worker.
 *
 * POST /v1/chat/completions and /v1/messages come here with their body
 * read. The body is parsed (openai.c, anthropic.c) into a struct qreq,
 * linted and written as the upstream's conversationState (qreq.c); a
 * request the linter refuses never leaves the worker. Then an account is
 * picked from the shared table (pool.c) and the transfer runs on the
 * worker's curl multi handle (upstream.c). The event stream is decoded
 * as it comes (eventstream.c) and each event rendered for the client at
 * once (openai.c, anthropic.c).
 *
 * Until the first byte goes to the client, a failure that is the
 * account's fault is tried again, on up to poolMaxAttempts accounts:
 * "bearer token invalid" asks the refresher for a new token and retries
 * on the same account once; 429 cools the account down (Retry-After,
 * else an exponential backoff, pool_cooldown); quota (402,
 * MONTHLY_REQUEST_COUNT, OVERAGE_REQUEST_LIMIT_EXCEEDED) marks it
 * exhausted until its usage resets; TEMPORARILY_SUSPENDED suspends it;
 * 5xx and network errors just move on. INSUFFICIENT_MODEL_CAPACITY is
 * the model's fault: the request waits and tries again, blaming no
 * account. A client fault (400) is never retried. When every account is
 * at its caps the request waits in this worker's queue for up to
 * poolQueueTimeout; when all are cooling down or exhausted it gets 429
 * with the time the first comes back. Once streaming, a failure ends
 * the stream with an error event or an honest max_tokens/length, never
 * a clean stop.
 *
 * Backpressure: when the client's socket does not keep up and more than
 * RELAY_HIGH bytes wait, receiving from the upstream is paused
 * (curl_easy_pause) until the worker has written them out
 * (relay_drained). A client that
 * goes away closes its connection, which frees the relay and with it the
 * transfer (relay_free), at once.
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "qrelayd.h"

#define RELAY_HIGH		(256 * 1024)	/* pause above this */
#define RELAY_QUEUE_MAX		1024	/* requests waiting, per worker */
#define RELAY_COOL_MAX		300	/* s: Retry-After believed at most */
#define RELAY_CAPACITY_WAIT	5	/* s: model capacity, waited here */
#define RELAY_ERRBODY_MAX	65536
#define RELAY_REFRESH_WAIT_MS	15000
#define RELAY_PING_MS		15000
#define RELAY_CONTEXT_WINDOW	200000
#define RELAY_COUNT_WINDOW	(64 * 1024)	/* output held for counting */

enum relay_phase { RP_XFER = 1, RP_WAIT_REFRESH, RP_BACKOFF, RP_QUEUED,
	RP_DONE };

struct relay {
	struct conn	*rl_conn;
	int		 rl_api;
	int		 rl_phase;
	struct qreq	 rl_q;
	struct render	 rl_rd;
	struct ustream	 rl_us;
	struct buf	 rl_body;	/* upstream body, without profileArn */
	struct buf	 rl_send;	/* the body of this attempt */
	struct buf	 rl_out;	/* rendered bytes not yet handed over */
	struct buf	 rl_err;	/* an upstream error body */
	struct buf	 rl_said;	/* output not yet counted in rl_said_tokens */
	int64_t		 rl_said_tokens;
	int		 rl_slot;	/* the account of this attempt */
	uint32_t	 rl_token_gen;
	char		 rl_arn[160];
	int		 rl_have_acct;
	int64_t		 rl_account_id;	/* for the log */
	CURL		*rl_easy;
	struct curl_slist *rl_hdrs;
	long		 rl_status;	/* upstream HTTP status, 0 none yet */
	int		 rl_attempts;
	int		 rl_refreshed;	/* one refresh per request */
	int		 rl_exclude[POOL_MAX_EXCLUDE];	/* slots that failed */
	int		 rl_nexclude;
	uint64_t	 rl_sticky;	/* conversation key, 0 none */
	int		 rl_retry_after;	/* upstream's Retry-After, s */
	int		 rl_started;	/* client response begun */
	int		 rl_streaming;	/* counted in sp_streams_active */
	int		 rl_paused;
	int		 rl_ignore;	/* the stream failed: drop the rest */
	int		 rl_sync;	/* inside relay_start: the caller drives */
	int64_t		 rl_attempt_ms;	/* when this attempt began */
	int64_t		 rl_upstream_ms;	/* last byte from the upstream */
	int64_t		 rl_wait_until;
	char		 rl_error[256];	/* for the log */
	char		 rl_curl_err[CURL_ERROR_SIZE];
};

static void	 relay_attempt(struct relay *);
static void	 relay_fail(struct relay *, int, const char *, const char *,
		    const char *);

/* ---- rendering ------------------------------------------------------ */

static int
render_start(struct relay *r)
{
	return r->rl_api == API_OPENAI ?
	    openai_render_start(&r->rl_rd, &r->rl_out) :
	    anthropic_render_start(&r->rl_rd, &r->rl_out);
}

static int
render_event(struct relay *r, const struct qev *ev)
{
	return r->rl_api == API_OPENAI ?
	    openai_render_event(&r->rl_rd, ev, &r->rl_out) :
	    anthropic_render_event(&r->rl_rd, ev, &r->rl_out);
}

static int
render_finish(struct relay *r, int stop)
{
	return r->rl_api == API_OPENAI ?
	    openai_render_finish(&r->rl_rd, stop, &r->rl_out) :
	    anthropic_render_finish(&r->rl_rd, stop, &r->rl_out);
}

static int
render_ping(struct relay *r)
{
	return r->rl_api == API_OPENAI ?
	    openai_render_ping(&r->rl_rd, &r->rl_out) :
	    anthropic_render_ping(&r->rl_rd, &r->rl_out);
}

/* Stream what was rendered to the client. */
static void
relay_push(struct relay *r)
{
	if (!r->rl_q.q_stream || buf_unread_len(&r->rl_out) == 0)
		return;
	conn_stream_write(r->rl_conn, buf_unread(&r->rl_out),
	    buf_unread_len(&r->rl_out));
	buf_reset(&r->rl_out);
}

/*
 * Output tokens are counted as the answer goes, over a bounded window:
 * once it holds RELAY_COUNT_WINDOW bytes, the part before the last space
 * that starts a word is counted and dropped. The tokenizer's pieces never
 * span such a space, so the count is the count of the whole.
 */
static int
relay_count_out(struct relay *r, const char *p, size_t len)
{
	struct buf	*b = &r->rl_said;
	size_t		 i, cut = 0;

	if (buf_append(b, p, len) == -1)
		return -1;
	if (buf_unread_len(b) < RELAY_COUNT_WINDOW)
		return 0;
	/* only the second half is searched: each cut drops at least half
	 * the window, so the scans cost O(1) a byte */
	p = buf_unread(b);
	for (i = buf_unread_len(b) - 1; i > buf_unread_len(b) / 2 && cut == 0;
	    i--)
		if (p[i] == ' ' && p[i - 1] != ' ' && p[i - 1] != '\n' &&
		    p[i - 1] != '\t' && p[i - 1] != '\r')
			cut = i;
	if (cut == 0)	/* no such space: a UTF-8 boundary, near enough */
		for (cut = buf_unread_len(b) / 2;
		    cut > 0 && ((unsigned char)p[cut] & 0xc0) == 0x80; cut--)
			;
	r->rl_said_tokens += tokens_count(p, cut);
	buf_consume(b, cut);
	buf_compact(b);
	return 0;
}

static int
relay_emit(const struct qev *ev, void *arg)
{
	struct relay	*r = arg;

	if ((ev->qv_type == QEV_TEXT || ev->qv_type == QEV_THINKING ||
	    ev->qv_type == QEV_TOOL_ARGS) &&
	    relay_count_out(r, ev->qv_text, ev->qv_len) == -1)
		return -1;
	if (render_event(r, ev) == -1)
		return -1;
	relay_push(r);
	return 0;
}

/* ---- the upstream transfer ------------------------------------------ */

static void
relay_note_error(struct relay *r, const char *fmt, const char *detail)
{
	snprintf(r->rl_error, sizeof(r->rl_error), fmt, detail);
}

/* The client's response begins when the upstream says 200. No attempt
 * follows now: what only the request needed can go. */
static int
relay_begin(struct relay *r)
{
	r->rl_started = 1;
	if (qreq_shed(&r->rl_q) == -1)
		return -1;
	buf_free(&r->rl_body);
	buf_free(&r->rl_conn->co_body);
	if (!r->rl_q.q_stream)
		return 0;
	if (conn_stream_begin(r->rl_conn, 200, "text/event-stream",
	    "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n") == -1)
		return -1;
	r->rl_streaming = 1;
	atomic_fetch_add(&shm_proc_self()->sp_streams_active, 1);
	if (render_start(r) == -1)
		return -1;
	relay_push(r);		/* flushed with the first events */
	return 0;
}

static size_t
relay_write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct relay	*r = arg;
	struct conn	*c = r->rl_conn;

	n *= size;
	r->rl_upstream_ms = now_ms();
	if (r->rl_status == 0) {
		curl_easy_getinfo(r->rl_easy, CURLINFO_RESPONSE_CODE,
		    &r->rl_status);
		if (r->rl_status == 200 && relay_begin(r) == -1)
			return 0;
	}
	if (r->rl_status != 200) {
		size_t	 room = RELAY_ERRBODY_MAX - r->rl_err.b_len;

		if (buf_append(&r->rl_err, data, n < room ? n : room) == -1)
			return 0;
		return n;
	}
	if (c->co_broken)
		return 0;		/* client gone: stop the transfer */
	if (!r->rl_ignore && ustream_feed(&r->rl_us, data, n) == -1)
		r->rl_ignore = 1;	/* an error event went out */
	/* one write for all the events of this piece of the stream */
	if (r->rl_q.q_stream && conn_stream_flush(c) == -1)
		return 0;
	/*
	 * The data is always taken, then receiving pauses: a transfer that
	 * returned CURL_WRITEFUNC_PAUSE on its last bytes finishes with
	 * those bytes still in libcurl, which drops them (curl issue
	 * 13337, before 8.8). So at most one callback's worth goes past
	 * RELAY_HIGH.
	 */
	if (r->rl_q.q_stream && !r->rl_paused &&
	    buf_unread_len(&c->co_out) > RELAY_HIGH) {
		r->rl_paused = 1;
		curl_easy_pause(r->rl_easy, CURLPAUSE_RECV);
	}
	return n;
}

static void
relay_xfer_free(struct relay *r)
{
	if (r->rl_easy != NULL) {
		curl_multi_remove_handle(upstream_multi(), r->rl_easy);
		upstream_easy_put(r->rl_easy);
		r->rl_easy = NULL;
	}
	curl_slist_free_all(r->rl_hdrs);
	r->rl_hdrs = NULL;
}

static void
relay_release(struct relay *r, int ok, const char *error)
{
	if (!r->rl_have_acct)
		return;
	pool_release(qr_shm, r->rl_slot, ok, error);
	r->rl_have_acct = 0;
}

static struct curl_slist *
relay_headers(const char *token)
{
	struct curl_slist	*h = NULL, *t;
	struct buf		 b;
	char			 id[37];
	int			 ok = 1;

	buf_init(&b);
	if (uuid4(id) == -1)
		return NULL;
	if (buf_printf(&b, "Authorization: Bearer %s",
	    token) == -1)
		return NULL;
	{
		const char *lines[] = {
			b.b_data,
			"Content-Type: application/json",
			"Accept: application/vnd.amazon.eventstream",
			"x-amzn-codewhisperer-optout: true",
			"x-amzn-kiro-agent-mode: vibe",
			"x-amz-user-agent: aws-sdk-js/1.0.34 KiroIDE qrelay/"
			    QR_VERSION,
			"User-Agent: aws-sdk-js/1.0.34 ua/2.1 "
			    "api/codewhispererstreaming#1.0.34 m/E KiroIDE "
			    "qrelay/" QR_VERSION,
			"amz-sdk-request: attempt=1; max=1",
			"Expect:",
		};
		size_t	 i;

		for (i = 0; i < nitems(lines) && ok; i++) {
			if ((t = curl_slist_append(h, lines[i])) == NULL)
				ok = 0;
			else
				h = t;
		}
	}
	explicit_bzero(b.b_data, b.b_len);
	buf_reset(&b);
	if (ok && buf_printf(&b, "amz-sdk-invocation-id: %s", id) != -1 &&
	    (t = curl_slist_append(h, b.b_data)) != NULL)
		h = t;
	else
		ok = 0;
	buf_free(&b);
	if (!ok) {
		curl_slist_free_all(h);
		return NULL;
	}
	return h;
}

/* The body of this attempt: the account's profile ARN spliced in. */
static int
relay_body(struct relay *r)
{
	const char	*arn = r->rl_arn;
	size_t		 i;

	buf_reset(&r->rl_send);
	if (arn[0] == '\0')
		return buf_append(&r->rl_send, r->rl_body.b_data,
		    r->rl_body.b_len);
	/* the ARN's pattern has no character JSON would escape */
	for (i = 0; arn[i] != '\0'; i++)
		if (arn[i] == '"' || arn[i] == '\\' ||
		    (unsigned char)arn[i] < 0x20)
			return -1;
	if (r->rl_body.b_len < 2 ||
	    r->rl_body.b_data[r->rl_body.b_len - 1] != '}')
		return -1;
	if (buf_append(&r->rl_send, r->rl_body.b_data,
	    r->rl_body.b_len - 1) == -1)
		return -1;
	return buf_printf(&r->rl_send, ",\"profileArn\":\"%s\"}", arn);
}

static int
relay_xfer_start(struct relay *r, const char *token, const char *proxy)
{
	struct config	*cf = qr_wctx->wc_cf;
	struct buf	 url;
	CURL		*e;
	int		 rv = -1;

	buf_init(&url);
	if (relay_body(r) == -1 ||
	    buf_printf(&url, "%s/generateAssistantResponse",
	    cf->cf_q_endpoint) == -1 ||
	    (r->rl_hdrs = relay_headers(token)) == NULL ||
	    (e = upstream_easy_get()) == NULL)
		goto done;
	r->rl_easy = e;
	curl_easy_setopt(e, CURLOPT_URL, url.b_data);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->rl_send.b_data);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)r->rl_send.b_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->rl_hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, relay_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->rl_curl_err);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT,
	    (long)cf->cf_connect_timeout);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	/* event frames are small: a 16 KB receive buffer per transfer is
	 * most of what 10,000 held streams would cost */
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 1024L);
	if (proxy[0] != '\0')
		curl_easy_setopt(e, CURLOPT_PROXY, proxy);
	r->rl_curl_err[0] = '\0';
	r->rl_status = 0;
	buf_reset(&r->rl_err);
	r->rl_attempt_ms = r->rl_upstream_ms = now_ms();
	if (curl_multi_add_handle(upstream_multi(), e) != CURLM_OK)
		goto done;
	atomic_fetch_add(&shm_proc_self()->sp_upstream_requests, 1);
	r->rl_phase = RP_XFER;
	conn_timer(r->rl_conn, CT_SLOW);
	rv = 0;
done:
	buf_free(&url);
	if (rv == -1)
		relay_xfer_free(r);
	return rv;
}

/* ---- outcomes ------------------------------------------------------- */

/* What an upstream error means for us, and for the account. */
enum verdict {
	V_CLIENT,	/* the request's fault: answer it, no retry */
	V_REFRESH,	/* token invalid: refresh once, same account */
	V_NEXT,		/* 5xx, network: the next account */
	V_COOLDOWN,	/* throttled: cool the account, the next one */
	V_EXHAUSTED,	/* out of quota until the reset */
	V_SUSPENDED,	/* the upstream locked the account */
	V_CAPACITY	/* the model's fault: wait and retry, no blame */
};

struct upstream_err {
	int		 ue_verdict;
	int		 ue_status;	/* to the client, when it is final */
	const char	*ue_type;	/* Anthropic error type */
	char		 ue_msg[200];
};

static int
body_has(const struct buf *b, const char *s)
{
	return b->b_len > 0 && memmem(b->b_data, b->b_len, s, strlen(s)) !=
	    NULL;
}

static void
upstream_message(const struct buf *b, char *out, size_t outsz)
{
	struct json_object	*o, *m;

	out[0] = '\0';
	if (b->b_len == 0)
		return;
	if ((o = json_tokener_parse(b->b_data)) != NULL) {
		if (json_object_object_get_ex(o, "message", &m) ||
		    json_object_object_get_ex(o, "Message", &m))
			strlcpy_qr(out, json_object_get_string(m), outsz);
		json_object_put(o);
	}
}

/* The upstream's Retry-After (seconds or an HTTP date), 0 none. */
static int
relay_retry_after(CURL *e)
{
	struct curl_header	*h;
	char			*end;
	long			 v;
	time_t			 t;

	if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1,
	    &h) != CURLHE_OK || h->value == NULL)
		return 0;
	v = strtol(h->value, &end, 10);
	if (end == h->value || *end != '\0') {
		if ((t = curl_getdate(h->value, NULL)) == -1)
			return 0;
		v = (long)(t - now_wall());
	}
	if (v < 0)
		return 0;
	return v > RELAY_COOL_MAX ? RELAY_COOL_MAX : (int)v;
}

static void
relay_classify(struct relay *r, struct upstream_err *ue)
{
	const struct buf *b = &r->rl_err;
	long		  st = r->rl_status;
	char		  m[128];

	/* the error body is text for our searches */
	if (buf_append(&r->rl_err, "", 1) == 0)
		r->rl_err.b_len--;
	upstream_message(b, m, sizeof(m));
	memset(ue, 0, sizeof(*ue));
	ue->ue_verdict = V_NEXT;
	ue->ue_status = 502;
	ue->ue_type = "api_error";
	if (st == 0) {
		snprintf(ue->ue_msg, sizeof(ue->ue_msg),
		    "upstream unreachable: %.150s", r->rl_curl_err[0] ?
		    r->rl_curl_err : "connection failed");
		return;
	}
	if (body_has(b, "INSUFFICIENT_MODEL_CAPACITY") ||
	    body_has(b, "MODEL_TEMPORARILY_UNAVAILABLE")) {
		ue->ue_verdict = V_CAPACITY;
		ue->ue_status = 529;
		ue->ue_type = "overloaded_error";
		snprintf(ue->ue_msg, sizeof(ue->ue_msg),
		    "the model is overloaded upstream: %s", m);
		return;
	}
	/* quota first: peers have seen it with 400, 402 and 429 */
	if (st == 402 || body_has(b, "MONTHLY_REQUEST_COUNT") ||
	    body_has(b, "OVERAGE_REQUEST_LIMIT_EXCEEDED")) {
		ue->ue_verdict = V_EXHAUSTED;
		ue->ue_status = 429;
		ue->ue_type = "rate_limit_error";
		snprintf(ue->ue_msg, sizeof(ue->ue_msg),
		    "quota exhausted: %s", m[0] ? m : "no message");
		return;
	}
	if (st == 400) {
		ue->ue_verdict = V_CLIENT;
		ue->ue_status = 400;
		ue->ue_type = "invalid_request_error";
		if (body_has(b, "CONTENT_LENGTH_EXCEEDS_THRESHOLD") ||
		    body_has(b, "Input is too long"))
			snprintf(ue->ue_msg, sizeof(ue->ue_msg),
			    "prompt is too long: the upstream says \"%s\"", m);
		else if (body_has(b, "INVALID_MODEL_ID"))
			snprintf(ue->ue_msg, sizeof(ue->ue_msg),
			    "model: not available upstream (%s)", m);
		else
			snprintf(ue->ue_msg, sizeof(ue->ue_msg),
			    "the upstream rejected the request: %s",
			    m[0] ? m : "no reason given");
		return;
	}
	if ((st == 401 || st == 403) && (body_has(b, "bearer token") ||
	    body_has(b, "token included in the request is invalid"))) {
		ue->ue_verdict = V_REFRESH;
		ue->ue_status = 503;
		ue->ue_type = "overloaded_error";
		snprintf(ue->ue_msg, sizeof(ue->ue_msg),
		    "no account with a valid token could serve the request");
		return;
	}
	if (st == 403 && body_has(b, "TEMPORARILY_SUSPENDED")) {
		ue->ue_verdict = V_SUSPENDED;
		ue->ue_status = 503;
		ue->ue_type = "overloaded_error";
		snprintf(ue->ue_msg, sizeof(ue->ue_msg),
		    "account suspended upstream: %s", m[0] ? m :
		    "TEMPORARILY_SUSPENDED");
		return;
	}
	if (st == 429) {
		ue->ue_verdict = V_COOLDOWN;
		ue->ue_status = 429;
		ue->ue_type = "rate_limit_error";
		snprintf(ue->ue_msg, sizeof(ue->ue_msg),
		    "throttled upstream: %s", m[0] ? m : "no message");
		return;
	}
	if (st == 403) {
		ue->ue_status = 503;
		ue->ue_type = "overloaded_error";
		snprintf(ue->ue_msg, sizeof(ue->ue_msg),
		    "no account may serve the request: %s", m);
		return;
	}
	snprintf(ue->ue_msg, sizeof(ue->ue_msg),
	    "upstream error %ld: %s", st, m[0] ? m : "no message");
}

/* Usage as well as we know it: the upstream's figures first. */
static void
relay_usage(struct relay *r)
{
	struct ustream	*us = &r->rl_us;
	struct usage	*u = &r->rl_rd.rd_usage;
	int64_t		 total;

	u->u_out = us->us_out_tokens > 0 ? us->us_out_tokens :
	    r->rl_said_tokens + tokens_count(buf_unread(&r->rl_said),
	    buf_unread_len(&r->rl_said));
	if (us->us_in_tokens > 0)
		u->u_in = us->us_in_tokens;
	else if (us->us_context_pct > 0) {
		total = (int64_t)(us->us_context_pct / 100.0 *
		    RELAY_CONTEXT_WINDOW + 0.5);
		if (total - u->u_out > 0)
			u->u_in = total - u->u_out;
	}
	u->u_credits = us->us_credits;
}

/* The upstream answered 200 and the transfer is over. */
static void
relay_finish(struct relay *r, int transport_ok)
{
	struct conn	*c = r->rl_conn;
	int		 stop, status;

	ustream_finish(&r->rl_us, transport_ok);
	stop = r->rl_us.us_stop;
	relay_usage(r);
	atomic_fetch_add(&shm_proc_self()->sp_tokens_in,
	    (uint64_t)r->rl_rd.rd_usage.u_in);
	atomic_fetch_add(&shm_proc_self()->sp_tokens_out,
	    (uint64_t)r->rl_rd.rd_usage.u_out);
	if (r->rl_have_acct)
		pool_account_usage(qr_shm, r->rl_slot, r->rl_rd.rd_usage.u_in,
		    r->rl_rd.rd_usage.u_out, r->rl_rd.rd_usage.u_credits);
	if (stop == QSTOP_ERROR || !transport_ok)
		atomic_fetch_add(&shm_proc_self()->sp_upstream_failures, 1);
	status = render_finish(r, stop);
	if (stop == QSTOP_ERROR || !transport_ok)
		relay_note_error(r, "upstream stream ended early: %.200s",
		    r->rl_curl_err[0] ? r->rl_curl_err : "error event");
	relay_release(r, stop != QSTOP_ERROR && transport_ok,
	    r->rl_error[0] ? r->rl_error : NULL);
	r->rl_phase = RP_DONE;
	if (r->rl_q.q_stream) {
		relay_push(r);
		conn_stream_end(c);
	} else if (status == -1) {
		router_error(c, 500, NULL, "out of memory");
	} else {
		/* 0: the answer; else an error body in the API's shape */
		conn_respond(c, status == 0 ? 200 : status, "application/json",
		    r->rl_out.b_data, r->rl_out.b_len, NULL);
	}
	conn_kick(c);
}

/* This attempt's account failed the request: the next may serve it. */
static void
relay_next(struct relay *r)
{
	if (r->rl_nexclude < POOL_MAX_EXCLUDE)
		r->rl_exclude[r->rl_nexclude++] = r->rl_slot;
	relay_release(r, 0, r->rl_error);
}

static int
relay_max_attempts(void)
{
	int	 n = atomic_load_explicit(&qr_shm->shm_hdr->sh_max_attempts,
	    memory_order_relaxed);

	return n < 1 ? 1 : n > POOL_MAX_EXCLUDE ? POOL_MAX_EXCLUDE : n;
}

void
relay_done(void *easy, int result)
{
	struct relay		*r = NULL;
	struct upstream_err	 ue;
	char			 hdr[40];

	curl_easy_getinfo((CURL *)easy, CURLINFO_PRIVATE, (char **)&r);
	if (r == NULL)
		return;
	if (r->rl_status == 0)
		curl_easy_getinfo(r->rl_easy, CURLINFO_RESPONSE_CODE,
		    &r->rl_status);
	if (r->rl_status != 200 && r->rl_status != 0)
		r->rl_retry_after = relay_retry_after(r->rl_easy);
	relay_xfer_free(r);
	if (r->rl_status == 200 && r->rl_started) {
		relay_finish(r, result == CURLE_OK);
		return;
	}
	if (r->rl_conn->co_broken) {
		relay_release(r, 1, NULL);
		conn_kick(r->rl_conn);
		return;
	}
	if (r->rl_status == 200)	/* 200 with an empty body */
		r->rl_status = 502;
	atomic_fetch_add(&shm_proc_self()->sp_upstream_failures, 1);
	relay_classify(r, &ue);
	strlcpy_qr(r->rl_error, ue.ue_msg, sizeof(r->rl_error));
	log_info("relay: account %lld: upstream %ld: %s%s",
	    (long long)r->rl_account_id, r->rl_status, ue.ue_msg,
	    ue.ue_verdict == V_CLIENT ? "" : "; trying again");

	switch (ue.ue_verdict) {
	case V_CLIENT:
		relay_release(r, 1, NULL);
		relay_fail(r, ue.ue_status, ue.ue_type, ue.ue_msg, NULL);
		return;
	case V_REFRESH:
		if (!r->rl_refreshed) {
			/* keep the account: wait for its new token */
			r->rl_refreshed = 1;
			pool_want_refresh(qr_shm, r->rl_slot);
			r->rl_phase = RP_WAIT_REFRESH;
			r->rl_wait_until = now_ms() + RELAY_REFRESH_WAIT_MS;
			conn_timer(r->rl_conn, CT_FAST);
			return;
		}
		break;
	case V_CAPACITY:
		/* the model's fault, not the account's: wait a little and
		 * retry; a longer wait is the client's to make */
		relay_release(r, 1, NULL);
		if (++r->rl_attempts < relay_max_attempts() &&
		    r->rl_retry_after <= RELAY_CAPACITY_WAIT) {
			r->rl_phase = RP_BACKOFF;
			r->rl_wait_until = now_ms() + (r->rl_retry_after > 0 ?
			    r->rl_retry_after * 1000 : 250 << r->rl_attempts);
			conn_timer(r->rl_conn, CT_FAST);
			return;
		}
		snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n",
		    r->rl_retry_after > RELAY_CAPACITY_WAIT ?
		    r->rl_retry_after : RELAY_CAPACITY_WAIT);
		relay_fail(r, ue.ue_status, ue.ue_type, ue.ue_msg, hdr);
		return;
	case V_COOLDOWN:
		pool_cooldown(qr_shm, r->rl_slot, r->rl_retry_after);
		break;
	case V_EXHAUSTED:
		pool_exhausted(qr_shm, r->rl_slot, ue.ue_msg);
		break;
	case V_SUSPENDED:
		pool_suspend(qr_shm, r->rl_slot, ue.ue_msg);
		break;
	}
	relay_next(r);
	if (++r->rl_attempts < relay_max_attempts()) {
		relay_attempt(r);
		return;
	}
	relay_fail(r, ue.ue_status, ue.ue_type, ue.ue_msg,
	    ue.ue_status == 429 || ue.ue_status >= 500 ?
	    "Retry-After: 30\r\n" : NULL);
}

/* Answer the client with an error (nothing was sent yet). */
static void
relay_fail(struct relay *r, int status, const char *type, const char *msg,
    const char *extra)
{
	struct conn	*c = r->rl_conn;

	r->rl_phase = RP_DONE;
	if (r->rl_error[0] == '\0')
		strlcpy_qr(r->rl_error, msg, sizeof(r->rl_error));
	/* OpenAI has no 529: its clients retry 503 the same way */
	if (r->rl_api == API_OPENAI && status == 529)
		status = 503;
	router_error_hdr(c, status, type, msg, extra);
	if (!r->rl_sync)
		conn_kick(c);
}

/* Requests of this worker waiting for an account under its caps. */
static int	 relay_nqueued;

static void
relay_unqueue(struct relay *r)
{
	if (r->rl_phase == RP_QUEUED) {
		relay_nqueued--;
		r->rl_phase = 0;
	}
}

/* Nothing could take the request now: queue it, or answer why. */
static void
relay_no_account(struct relay *r, int why, int64_t retry_at)
{
	char	 hdr[40];
	int64_t	 wait;

	if (why == POOL_BUSY) {
		if (r->rl_phase != RP_QUEUED) {
			if (relay_nqueued >= RELAY_QUEUE_MAX)
				goto busy;
			relay_nqueued++;
			r->rl_phase = RP_QUEUED;
			r->rl_wait_until = now_ms() + atomic_load_explicit(
			    &qr_shm->shm_hdr->sh_queue_ms,
			    memory_order_relaxed);
		}
		if (now_ms() < r->rl_wait_until) {
			conn_timer(r->rl_conn, CT_FAST);
			return;
		}
		relay_unqueue(r);
 busy:
		relay_fail(r, 429, "rate_limit_error", "every account is at "
		    "its concurrency or request-rate cap", "Retry-After: 1\r\n");
		return;
	}
	relay_unqueue(r);
	if (why == POOL_LIMITED) {
		wait = retry_at - (int64_t)now_wall();
		snprintf(hdr, sizeof(hdr), "Retry-After: %lld\r\n",
		    (long long)(wait < 1 ? 1 : wait));
		relay_fail(r, 429, "rate_limit_error", r->rl_attempts ?
		    r->rl_error : "every account is throttled or out of "
		    "quota", hdr);
		return;
	}
	relay_fail(r, 503, "overloaded_error", r->rl_attempts ?
	    r->rl_error : "no upstream account is available",
	    "Retry-After: 30\r\n");
}

/* Pick an account and start a transfer, or answer why not. The token
 * lives only on this stack frame and in curl's header list. */
static void
relay_attempt(struct relay *r)
{
	struct pool_pick	 pk;
	int			 rv;

	rv = pool_pick(qr_shm, &pk, r->rl_sticky, r->rl_exclude,
	    r->rl_nexclude);
	if (rv != POOL_OK) {
		relay_no_account(r, rv, pk.pp_retry_at);
		return;
	}
	relay_unqueue(r);
	r->rl_have_acct = 1;
	r->rl_slot = pk.pp_slot;
	r->rl_token_gen = pk.pp_token_gen;
	r->rl_account_id = pk.pp_id;
	strlcpy_qr(r->rl_arn, pk.pp_profile_arn, sizeof(r->rl_arn));
	if (relay_xfer_start(r, pk.pp_token, pk.pp_proxy) == -1) {
		relay_release(r, 1, NULL);
		relay_fail(r, 500, "api_error", "cannot start the upstream "
		    "request", NULL);
	}
	explicit_bzero(pk.pp_token, sizeof(pk.pp_token));
}

/* The account held through a 403 got no usable token: the next one. */
static void
relay_refresh_failed(struct relay *r, const char *why)
{
	strlcpy_qr(r->rl_error, why, sizeof(r->rl_error));
	relay_next(r);
	if (++r->rl_attempts < relay_max_attempts())
		relay_attempt(r);
	else
		relay_fail(r, 503, "overloaded_error", "no account with a "
		    "valid token could serve the request",
		    "Retry-After: 30\r\n");
}

/* The account's token was renewed after a 403: the same account tries
 * again (it is still held), unless it went away meanwhile. */
static void
relay_retry_same(struct relay *r)
{
	struct shm_acct	*a;
	int		 ok;

	if ((a = malloc(sizeof(*a))) == NULL) {
		relay_release(r, 1, NULL);
		relay_fail(r, 500, "api_error", "out of memory", NULL);
		return;
	}
	ok = shm_acct_read(qr_shm, (uint32_t)r->rl_slot, a) == 0 &&
	    a->sa_id == r->rl_account_id && pool_acct_ready(a, now_wall());
	if (ok) {
		r->rl_token_gen = a->sa_token_gen;
		if (relay_xfer_start(r, a->sa_token, a->sa_proxy) == -1) {
			relay_release(r, 1, NULL);
			relay_fail(r, 500, "api_error", "cannot start the "
			    "upstream request", NULL);
		}
	}
	explicit_bzero(a->sa_token, sizeof(a->sa_token));
	free(a);
	if (!ok)
		relay_refresh_failed(r, "the account's token was not renewed");
}

/*
 * The conversation a request belongs to, for stickiness: the client
 * key and the first message, which stays the same as a conversation
 * grows. crc32 twice, seeded apart, makes 64 bits cheaply.
 */
static uint64_t
relay_sticky_key(struct relay *r)
{
	const struct qmsg	*m;
	uLong			 hi, lo;
	size_t			 i;
	int64_t			 key = r->rl_conn->co_key_id;

	if (atomic_load_explicit(&qr_shm->shm_hdr->sh_sticky_ttl,
	    memory_order_relaxed) <= 0 || r->rl_q.q_nmsgs == 0)
		return 0;
	m = &r->rl_q.q_msgs[0];
	hi = crc32(0, (const Bytef *)&key, sizeof(key));
	lo = crc32(0x9e3779b9UL, (const Bytef *)&key, sizeof(key));
	for (i = 0; i < m->qm_nparts; i++) {
		const struct qpart *p = &m->qm_parts[i];

		if (p->qp_text == NULL)
			continue;
		hi = crc32(hi, (const Bytef *)p->qp_text, (uInt)p->qp_text_len);
		lo = crc32(lo ^ 0x5bd1e995UL, (const Bytef *)p->qp_text,
		    (uInt)p->qp_text_len);
	}
	return ((uint64_t)hi << 32 | (uint64_t)lo) ?: 1;
}

/* ---- entry points --------------------------------------------------- */

void
relay_start(struct conn *c, int api)
{
	struct relay	*r;
	struct qerr	 e;
	int		 rv;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		router_error(c, 500, NULL, "out of memory");
		return;
	}
	c->co_relay = r;
	r->rl_conn = c;
	r->rl_api = api;
	r->rl_sync = 1;
	qreq_init(&r->rl_q, api);
	memset(&e, 0, sizeof(e));
	rv = api == API_OPENAI ?
	    openai_parse(&r->rl_q, c->co_body.b_data, c->co_body.b_len, &e) :
	    anthropic_parse(&r->rl_q, c->co_body.b_data, c->co_body.b_len, &e);
	if (rv == 0)
		rv = qreq_build(&r->rl_q, qr_wctx->wc_cf, NULL, &r->rl_body,
		    &e);
	if (rv == -1) {
		relay_fail(r, e.qe_status ? e.qe_status : 400,
		    e.qe_type[0] ? e.qe_type : NULL, e.qe_msg, NULL);
		return;		/* r may be gone */
	}
	if (api == API_OPENAI)
		openai_render_init(&r->rl_rd, &r->rl_q);
	else
		anthropic_render_init(&r->rl_rd, &r->rl_q);
	r->rl_rd.rd_usage.u_in = qreq_count_tokens(&r->rl_q);
	ustream_init(&r->rl_us, r->rl_q.q_thinking != QTH_OFF, relay_emit, r);
	r->rl_sticky = relay_sticky_key(r);
	relay_attempt(r);
	if (c->co_relay == r)
		r->rl_sync = 0;
}

void
relay_count_tokens(struct conn *c)
{
	struct qreq		 q;
	struct qerr		 e;
	struct json_object	*o;

	qreq_init(&q, API_ANTHROPIC);
	memset(&e, 0, sizeof(e));
	/* count_tokens bodies carry no max_tokens: the parser allows it */
	if (anthropic_parse(&q, c->co_body.b_data, c->co_body.b_len,
	    &e) == -1) {
		router_error(c, e.qe_status ? e.qe_status : 400,
		    e.qe_type[0] ? e.qe_type : NULL, e.qe_msg);
		qreq_free(&q);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "input_tokens",
	    json_object_new_int64(qreq_count_tokens(&q) ?: 1));
	qreq_free(&q);
	conn_respond_json(c, 200, o, NULL);
}

int
relay_tick(struct conn *c)
{
	struct relay	*r = c->co_relay;
	struct config	*cf = qr_wctx->wc_cf;
	int64_t		 now = now_ms();

	switch (r->rl_phase) {
	case RP_WAIT_REFRESH:
		if (pool_token_changed(qr_shm, r->rl_slot, r->rl_token_gen)) {
			relay_retry_same(r);
			return 0;
		}
		if (now < r->rl_wait_until) {
			conn_timer(c, CT_FAST);
			return 0;
		}
		relay_refresh_failed(r, "token refresh did not complete");
		return 0;
	case RP_BACKOFF:
		if (now < r->rl_wait_until) {
			conn_timer(c, CT_FAST);
			return 0;
		}
		relay_attempt(r);
		return 0;
	case RP_QUEUED:
		relay_attempt(r);
		return 0;
	case RP_XFER:
		break;
	default:
		return -1;
	}

	/* a client that stopped reading is let go after send_timeout */
	if (buf_unread_len(&c->co_out) > 0 &&
	    now - c->co_progress > (int64_t)cf->cf_send_timeout * 1000)
		return -1;
	if (!r->rl_started) {
		if (now - r->rl_attempt_ms >
		    (int64_t)cf->cf_first_byte_timeout * 1000) {
			relay_xfer_free(r);
			relay_release(r, 0, "no answer in first_byte_timeout");
			relay_fail(r, 504, "timeout_error", "the upstream did "
			    "not answer in time", NULL);
			return 0;
		}
	} else if (!r->rl_paused && now - r->rl_upstream_ms >
	    (int64_t)cf->cf_idle_timeout * 1000) {
		/* silent too long: end it as a truncated answer */
		relay_xfer_free(r);
		snprintf(r->rl_curl_err, sizeof(r->rl_curl_err),
		    "upstream idle for %d s", cf->cf_idle_timeout);
		relay_finish(r, 0);
		return 0;
	} else if (r->rl_q.q_stream && now - c->co_progress >= RELAY_PING_MS &&
	    buf_unread_len(&c->co_out) == 0) {
		if (render_ping(r) == 0) {
			relay_push(r);
			conn_stream_flush(c);
		}
	}
	conn_timer(c, CT_SLOW);
	return 0;
}

void
relay_drained(struct conn *c)
{
	struct relay	*r = c->co_relay;

	if (r->rl_paused && r->rl_easy != NULL) {
		r->rl_paused = 0;
		curl_easy_pause(r->rl_easy, CURLPAUSE_CONT);
	}
}

void
relay_log(struct conn *c, struct log_rec *lr)
{
	struct relay	*r = c->co_relay;

	if (r->rl_q.q_model != NULL)
		strlcpy_qr(lr->lr_model, r->rl_q.q_model,
		    sizeof(lr->lr_model));
	lr->lr_account_id = r->rl_account_id;
	lr->lr_tokens_in = r->rl_rd.rd_usage.u_in;
	lr->lr_tokens_out = r->rl_rd.rd_usage.u_out;
	lr->lr_credits = r->rl_rd.rd_usage.u_credits;
	if (r->rl_error[0] != '\0')
		strlcpy_qr(lr->lr_error, r->rl_error, sizeof(lr->lr_error));
}

void
relay_free(struct relay *r)
{
	if (r->rl_streaming)
		atomic_fetch_sub(&shm_proc_self()->sp_streams_active, 1);
	relay_xfer_free(r);
	relay_release(r, 1, NULL);
	relay_unqueue(r);
	ustream_free(&r->rl_us);
	render_free(&r->rl_rd);
	qreq_free(&r->rl_q);
	buf_free(&r->rl_body);
	buf_free(&r->rl_send);
	buf_free(&r->rl_out);
	buf_free(&r->rl_err);
	buf_free(&r->rl_said);
	free(r);
}
