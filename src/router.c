/*
 * router.c - from a parsed request to its handler, in a worker.
 *
 * Routing looks at the raw path only (no decoding, no normalisation), so
 * "/v2%2fstatus" or "//v2/status" can never reach the admin API: they
 * fall through to the static files, which refuse them. /v1 needs a
 * client API key, looked up in the shared table (no SQLite on this
 * path); /v2 needs an admin session (admin.c). Errors are written in the
 * shape of the API the path belongs to.
 */
#include <string.h>

#include "qrelayd.h"

static int
path_is(const struct http_req *q, const char *p)
{
	size_t	 n = strlen(p);

	return q->rq_path_len == n && memcmp(q->rq_path, p, n) == 0;
}

static int
path_has_prefix(const struct http_req *q, const char *p)
{
	size_t	 n = strlen(p);

	return q->rq_path_len >= n && memcmp(q->rq_path, p, n) == 0;
}

void
router_error(struct conn *c, int status, const char *type, const char *msg)
{
	router_error_hdr(c, status, type, msg, NULL);
}

void
router_error_hdr(struct conn *c, int status, const char *type,
    const char *msg, const char *extra)
{
	struct json_object	*o, *e;
	struct http_req		*q = c->co_req;

	if (msg == NULL)
		msg = http_reason(status);
	if (q && path_has_prefix(q, "/v1/messages")) {
		o = anthropic_error_json(status, type, msg);
	} else if (q && path_has_prefix(q, "/v1/")) {
		/* OpenAI's clients go by the status; its own type names */
		o = openai_error_json(status, NULL, msg);
	} else {
		/* the admin API and the rest: {"error":{"type","message"}} */
		o = json_object_new_object();
		e = json_object_new_object();
		json_object_object_add(e, "type", json_object_new_string(
		    type ? type : anthropic_error_type(status)));
		json_object_object_add(e, "message",
		    json_object_new_string(msg));
		json_object_object_add(o, "error", e);
	}
	if (extra == NULL && status == 401 && q && path_has_prefix(q, "/v1/"))
		extra = "WWW-Authenticate: Bearer\r\n";
	conn_respond_json(c, status, o, extra);
}

static void
route_healthz(struct conn *c)
{
	static const char	 ok[] = "{\"status\":\"ok\"}";

	conn_respond(c, 200, "application/json", ok, sizeof(ok) - 1,
	    "Cache-Control: no-store\r\n");
}

/* GET /v1/models in the shape of the API the client speaks: Anthropic's
 * SDKs send anthropic-version, OpenAI's do not. */
static void
route_models(struct conn *c)
{
	int	 api = conn_header(c, "anthropic-version", NULL) != NULL ?
		    API_ANTHROPIC : API_OPENAI;

	conn_respond_json(c, 200, qreq_models_json(qr_wctx->wc_cf, api),
	    NULL);
}

/* Prometheus text format, from the shared table's counters. */
static void
route_metrics(struct conn *c)
{
	static const char *const roles[] = { "none", "master", "worker",
	    "refresher", "logger" };
	struct shm		*s = qr_shm;
	struct shm_proc		*p;
	struct buf		 b;
	uint64_t		 req = 0, c4 = 0, c5 = 0, bin = 0, bout = 0;
	uint64_t		 ureq = 0, ufail = 0, tin = 0, tout = 0;
	int64_t			 active = 0, streams = 0;
	uint32_t		 i;

	buf_init(&b);
	for (i = 0; i < s->shm_hdr->sh_max_procs; i++) {
		p = &s->shm_procs[i];
		if (atomic_load(&p->sp_pid) == 0)
			continue;
		req += atomic_load(&p->sp_requests);
		c4 += atomic_load(&p->sp_status_4xx);
		c5 += atomic_load(&p->sp_status_5xx);
		bin += atomic_load(&p->sp_bytes_in);
		bout += atomic_load(&p->sp_bytes_out);
		active += atomic_load(&p->sp_conns_active);
		ureq += atomic_load(&p->sp_upstream_requests);
		ufail += atomic_load(&p->sp_upstream_failures);
		streams += atomic_load(&p->sp_streams_active);
		tin += atomic_load(&p->sp_tokens_in);
		tout += atomic_load(&p->sp_tokens_out);
	}
	buf_printf(&b,
	    "# HELP qrelay_requests_total Requests answered by live workers.\n"
	    "# TYPE qrelay_requests_total counter\n"
	    "qrelay_requests_total %llu\n"
	    "# TYPE qrelay_responses_total counter\n"
	    "qrelay_responses_total{class=\"4xx\"} %llu\n"
	    "qrelay_responses_total{class=\"5xx\"} %llu\n"
	    "# TYPE qrelay_bytes_received_total counter\n"
	    "qrelay_bytes_received_total %llu\n"
	    "# TYPE qrelay_bytes_sent_total counter\n"
	    "qrelay_bytes_sent_total %llu\n"
	    "# TYPE qrelay_connections_active gauge\n"
	    "qrelay_connections_active %lld\n"
	    "# TYPE qrelay_log_records_dropped_total counter\n"
	    "qrelay_log_records_dropped_total %llu\n"
	    "# TYPE qrelay_log_records_written_total counter\n"
	    "qrelay_log_records_written_total %llu\n"
	    "# TYPE qrelay_uptime_seconds gauge\n"
	    "qrelay_uptime_seconds %lld\n"
	    "# HELP qrelay_upstream_requests_total Upstream transfers started,"
	    " retries included.\n"
	    "# TYPE qrelay_upstream_requests_total counter\n"
	    "qrelay_upstream_requests_total %llu\n"
	    "# TYPE qrelay_upstream_failures_total counter\n"
	    "qrelay_upstream_failures_total %llu\n"
	    "# TYPE qrelay_streams_active gauge\n"
	    "qrelay_streams_active %lld\n"
	    "# TYPE qrelay_tokens_total counter\n"
	    "qrelay_tokens_total{direction=\"in\"} %llu\n"
	    "qrelay_tokens_total{direction=\"out\"} %llu\n"
	    "# TYPE qrelay_process_restarts_total counter\n",
	    (unsigned long long)req, (unsigned long long)c4,
	    (unsigned long long)c5, (unsigned long long)bin,
	    (unsigned long long)bout, (long long)active,
	    (unsigned long long)atomic_load(&s->shm_hdr->sh_log_dropped),
	    (unsigned long long)atomic_load(&s->shm_hdr->sh_log_written),
	    (long long)(now_wall() - s->shm_hdr->sh_started),
	    (unsigned long long)ureq, (unsigned long long)ufail,
	    (long long)streams, (unsigned long long)tin,
	    (unsigned long long)tout);
	for (i = 0; i < s->shm_hdr->sh_max_procs; i++) {
		p = &s->shm_procs[i];
		if (atomic_load(&p->sp_pid) == 0 || p->sp_role <= 0 ||
		    p->sp_role >= (int)nitems(roles))
			continue;
		buf_printf(&b, "qrelay_process_restarts_total{slot=\"%u\","
		    "role=\"%s\"} %u\n", i, roles[p->sp_role],
		    atomic_load(&p->sp_restarts));
	}
	conn_respond(c, 200, "text/plain; version=0.0.4", b.b_data, b.b_len,
	    NULL);
	buf_free(&b);
}

/* /v1: a client API key from the shared table, or 401 (at head time,
 * so a caller without a key never makes us hold a body). */
static int
route_client_auth(struct conn *c)
{
	unsigned char	 hash[32];
	const char	*key;
	size_t		 len;
	int64_t		 id;

	if ((key = auth_client_key(c, &len)) == NULL) {
		router_error(c, 401, NULL, "missing API key: send "
		    "Authorization: Bearer KEY or x-api-key: KEY");
		return -1;
	}
	if (auth_key_hash(key, len, hash) == -1 ||
	    (id = shm_key_lookup(qr_shm, hash)) < 0) {
		router_error(c, 401, NULL, "invalid API key");
		return -1;
	}
	c->co_key_id = id;
	return 0;
}

static void
route_chat(struct conn *c)
{
	relay_start(c, API_OPENAI);
}

static void
route_messages(struct conn *c)
{
	relay_start(c, API_ANTHROPIC);
}

/* The fixed routes. */
static const struct route {
	const char	*rt_path;
	int		 rt_post;	/* POST only, else GET and HEAD */
	void		(*rt_fn)(struct conn *);
} routes[] = {
	{ "/healthz",			0, route_healthz },
	{ "/metrics",			0, route_metrics },
	{ "/v1/models",			0, route_models },
	{ "/v1/chat/completions",	1, route_chat },
	{ "/v1/messages",		1, route_messages },
	{ "/v1/messages/count_tokens",	1, relay_count_tokens },
};

int
router_gate(struct conn *c)
{
	struct http_req	*q = c->co_req;

	if (path_has_prefix(q, "/v1/"))
		return route_client_auth(c);
	if (path_has_prefix(q, "/v2/"))
		return admin_gate(c);
	/* nothing else takes a body: do not wait for one */
	if (q->rq_content_length > 0 || q->rq_chunked) {
		router_error(c, 413, NULL, "this endpoint takes no body");
		return -1;
	}
	return 0;
}

void
router_dispatch(struct conn *c)
{
	struct http_req		*q = c->co_req;
	const struct route	*rt;
	int			 get = q->rq_method == HTTP_GET ||
				    q->rq_method == HTTP_HEAD;
	size_t			 i;

	for (i = 0; i < nitems(routes); i++) {
		rt = &routes[i];
		if (!path_is(q, rt->rt_path))
			continue;
		if (rt->rt_post ? q->rq_method == HTTP_POST : get)
			rt->rt_fn(c);
		else
			router_error_hdr(c, 405, NULL, NULL, rt->rt_post ?
			    "Allow: POST\r\n" : "Allow: GET, HEAD\r\n");
		return;
	}
	if (path_has_prefix(q, "/v2/"))
		admin_dispatch(c);
	else if (get && !path_has_prefix(q, "/v1/"))
		static_serve(c);
	else
		router_error(c, 404, NULL, "unknown endpoint");
}
