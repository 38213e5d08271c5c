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

/* Model ids offered on /v1/models (the relay maps them upstream). */
static const char *const router_models[] = {
	"claude-sonnet-4.5",
	"claude-sonnet-4-5-20250929",
	"claude-haiku-4.5",
	"claude-haiku-4-5",
	"claude-opus-4.5",
	"claude-4.5-opus-high",
	"claude-4.5-opus-low",
	"claude-sonnet-4",
	"claude-sonnet-3.5",
};

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

static const char *
default_type(int status)
{
	switch (status) {
	case 400: case 405: case 411: case 413: case 414: case 415: case 417:
	case 431: case 501: case 505:
		return "invalid_request_error";
	case 401:
		return "authentication_error";
	case 403:
		return "permission_error";
	case 404:
		return "not_found_error";
	case 408:
		return "timeout_error";
	case 429:
		return "rate_limit_error";
	case 503:
		return "overloaded_error";
	default:
		return "api_error";
	}
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

	if (type == NULL)
		type = default_type(status);
	if (msg == NULL)
		msg = http_reason(status);
	e = json_object_new_object();
	if (q && path_has_prefix(q, "/v1/messages")) {
		/* Anthropic: {"type":"error","error":{"type","message"}} */
		o = json_object_new_object();
		json_object_object_add(o, "type",
		    json_object_new_string("error"));
		json_object_object_add(e, "type", json_object_new_string(type));
		json_object_object_add(e, "message",
		    json_object_new_string(msg));
		json_object_object_add(o, "error", e);
	} else if (q && path_has_prefix(q, "/v1/")) {
		/* OpenAI: {"error":{"message","type","param","code"}} */
		o = json_object_new_object();
		json_object_object_add(e, "message",
		    json_object_new_string(msg));
		json_object_object_add(e, "type", json_object_new_string(type));
		json_object_object_add(e, "param", NULL);
		json_object_object_add(e, "code", NULL);
		json_object_object_add(o, "error", e);
	} else {
		o = json_object_new_object();
		json_object_object_add(e, "type", json_object_new_string(type));
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

static void
route_models(struct conn *c)
{
	struct json_object	*o, *data, *m;
	size_t			 i;

	o = json_object_new_object();
	data = json_object_new_array();
	for (i = 0; i < nitems(router_models); i++) {
		m = json_object_new_object();
		json_object_object_add(m, "id",
		    json_object_new_string(router_models[i]));
		json_object_object_add(m, "object",
		    json_object_new_string("model"));
		json_object_object_add(m, "created",
		    json_object_new_int64(1727568000));
		json_object_object_add(m, "owned_by",
		    json_object_new_string("anthropic"));
		json_object_array_add(data, m);
	}
	json_object_object_add(o, "object", json_object_new_string("list"));
	json_object_object_add(o, "data", data);
	conn_respond_json(c, 200, o, NULL);
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
	int64_t			 active = 0;
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
	    "# TYPE qrelay_process_restarts_total counter\n",
	    (unsigned long long)req, (unsigned long long)c4,
	    (unsigned long long)c5, (unsigned long long)bin,
	    (unsigned long long)bout, (long long)active,
	    (unsigned long long)atomic_load(&s->shm_hdr->sh_log_dropped),
	    (unsigned long long)atomic_load(&s->shm_hdr->sh_log_written),
	    (long long)(now_wall() - s->shm_hdr->sh_started));
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

/* The fixed routes: GET and HEAD only. */
static const struct route {
	const char	*rt_path;
	void		(*rt_fn)(struct conn *);
} routes[] = {
	{ "/healthz",	route_healthz },
	{ "/metrics",	route_metrics },
	{ "/v1/models",	route_models },
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
		if (get)
			rt->rt_fn(c);
		else
			router_error_hdr(c, 405, NULL, NULL,
			    "Allow: GET, HEAD\r\n");
		return;
	}
	if (path_has_prefix(q, "/v2/"))
		admin_dispatch(c);
	else if (get && !path_has_prefix(q, "/v1/"))
		static_serve(c);
	else
		router_error(c, 404, NULL, "unknown endpoint");
}
