/*
 * admin.c - the /v2 admin API: login and sessions, status, client keys,
 * upstream accounts.
 *
 * Runs inside a worker, called by the router for every path under /v2/.
 * It reads the shared table for live figures (processes, accounts, key
 * usage) and uses the worker's own SQLite connection for what is durable
 * (password hash, sessions, keys). A key added or deleted here goes to
 * SQLite first and then to the shared table, so every worker honours the
 * change on /v1 at once without a reload. Accounts go the same way;
 * their secrets are encrypted (secret.c) before they reach SQLite, and
 * no answer ever carries more of a secret than its first characters.
 * Renewals are the refresher's: a new account or a refresh request
 * flags the slot and wakes it, and the answer does not wait for it.
 *
 * Every route but login needs an admin session. Login is throttled in
 * the shared table before the password is hashed: the hash costs tens of
 * milliseconds of CPU, so refusing early also protects the workers.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "qrelayd.h"

#define ADMIN_JSON_DEPTH	32
#define ADMIN_PATH_MAX		128
#define ADMIN_LOGIN_BODY_MAX	4096	/* bytes, before any session */

/* Login throttle: LOGIN_MAX_FAILS failures within LOGIN_WINDOW seconds
 * lock logins for LOGIN_LOCK seconds, doubled for each further lockout
 * in the window. sh_login_failures holds the attempts since the last
 * lockout in its low byte and the lockouts in the window above it. */
#define LOGIN_MAX_FAILS		5
#define LOGIN_WINDOW		900
#define LOGIN_LOCK		60
#define LOGIN_LOCK_SHIFT_MAX	4	/* 60 s .. 16 min */
#define LOGIN_TRIES(v)		((v) & 0xff)
#define LOGIN_LOCKS(v)		((v) >> 8)

#define ADMIN_NEW_PW_MIN	8

#define M(m)			(1u << (m))

enum admin_route { R_LOGIN, R_LOGOUT, R_PASSWORD, R_STATUS, R_KEYS, R_KEY,
	R_ACCOUNTS, R_ACCOUNT, R_ACCOUNT_REFRESH, R_FEED, R_IMPORT, R_EXPORT,
	R_DEVICE_START, R_DEVICE, R_SETTINGS };

struct admin_req {
	struct conn	*ar_c;
	const char	*ar_token;	/* the session's, NULL on login */
	size_t		 ar_token_len;
	const char	*ar_arg;	/* ":id" of the path, NUL-terminated */
};

static void	admin_login(struct admin_req *);
static void	admin_logout(struct admin_req *);
static void	admin_password(struct admin_req *);
static void	admin_status(struct admin_req *);
static void	admin_keys_list(struct admin_req *);
static void	admin_keys_add(struct admin_req *);
static void	admin_keys_delete(struct admin_req *);
static void	admin_accounts_list(struct admin_req *);
static void	admin_accounts_add(struct admin_req *);
static void	admin_account_get(struct admin_req *);
static void	admin_account_patch(struct admin_req *);
static void	admin_account_delete(struct admin_req *);
static void	admin_account_refresh(struct admin_req *);
static void	admin_accounts_feed(struct admin_req *);
static void	admin_accounts_import(struct admin_req *);
static void	admin_accounts_export(struct admin_req *);
static void	admin_device_start(struct admin_req *);
static void	admin_device_get(struct admin_req *);
static void	admin_settings_get(struct admin_req *);
static void	admin_settings_put(struct admin_req *);

static const struct admin_path {
	const char	*ap_path;	/* ":id" stands for one path segment */
	int		 ap_route;
	unsigned	 ap_methods;
	const char	*ap_allow;
	int		 ap_session;	/* needs an admin session */
	int		 ap_text;	/* takes text/plain bodies too */
} admin_paths[] = {
	{ "/v2/auth/login", R_LOGIN, M(HTTP_POST), "POST", 0, 0 },
	{ "/v2/auth/logout", R_LOGOUT, M(HTTP_POST), "POST", 1, 0 },
	{ "/v2/auth/password", R_PASSWORD, M(HTTP_PUT), "PUT", 1, 0 },
	{ "/v2/status", R_STATUS, M(HTTP_GET) | M(HTTP_HEAD), "GET, HEAD", 1, 0 },
	{ "/v2/keys", R_KEYS, M(HTTP_GET) | M(HTTP_HEAD) | M(HTTP_POST),
	    "GET, HEAD, POST", 1, 0 },
	{ "/v2/keys/:id", R_KEY, M(HTTP_DELETE), "DELETE", 1, 0 },
	{ "/v2/accounts", R_ACCOUNTS, M(HTTP_GET) | M(HTTP_HEAD) |
	    M(HTTP_POST), "GET, HEAD, POST", 1, 0 },
	/* fixed paths first: the table is searched in order, and these
	 * must not be taken for an account's :id */
	{ "/v2/accounts/feed", R_FEED, M(HTTP_POST), "POST", 1, 1 },
	{ "/v2/accounts/import", R_IMPORT, M(HTTP_POST), "POST", 1, 0 },
	{ "/v2/accounts/export", R_EXPORT, M(HTTP_GET) | M(HTTP_HEAD),
	    "GET, HEAD", 1, 0 },
	{ "/v2/accounts/:id", R_ACCOUNT, M(HTTP_GET) | M(HTTP_HEAD) |
	    M(HTTP_PATCH) | M(HTTP_DELETE), "GET, HEAD, PATCH, DELETE", 1, 0 },
	{ "/v2/accounts/:id/refresh", R_ACCOUNT_REFRESH, M(HTTP_POST),
	    "POST", 1, 0 },
	{ "/v2/auth/device/start", R_DEVICE_START, M(HTTP_POST), "POST", 1, 0 },
	{ "/v2/auth/device/:id", R_DEVICE, M(HTTP_GET) | M(HTTP_HEAD),
	    "GET, HEAD", 1, 0 },
	{ "/v2/settings", R_SETTINGS, M(HTTP_GET) | M(HTTP_HEAD) | M(HTTP_PUT),
	    "GET, HEAD, PUT", 1, 0 },
};

static void
admin_oom(struct conn *c)
{
	router_error_hdr(c, 500, "internal_error", "out of memory", NULL);
}

static void
admin_dberr(struct conn *c)
{
	router_error_hdr(c, 500, "internal_error", "database error", NULL);
}

/* ISO 8601 UTC, or JSON null for 0 ("never"). */
static struct json_object *
admin_time(int64_t t)
{
	char	 s[32];

	return fmt_iso8601(t, s) ? json_object_new_string(s) : NULL;
}

static int
admin_header_is(struct conn *c, const char *name, const char *pfx, size_t n,
    const char *host, size_t hlen)
{
	const struct http_hdr	*h;

	if ((h = http_header(c->co_req, name)) == NULL)
		return 0;
	return h->h_value_len == n + hlen &&
	    strncasecmp(h->h_value, pfx, n) == 0 &&
	    strncasecmp(h->h_value + n, host, hlen) == 0;
}

/*
 * CSRF: a browser names the page's origin on cross-site requests. The
 * console is served by this daemon, so its origin is our own Host. A
 * non-browser client sends no Origin and is let through.
 */
static int
admin_origin_ok(struct conn *c)
{
	const struct http_hdr	*host;

	if (http_header(c->co_req, "origin") == NULL)
		return 1;
	if ((host = http_header(c->co_req, "host")) == NULL ||
	    host->h_value_len == 0)
		return 0;
	return admin_header_is(c, "origin", "http://", 7, host->h_value,
	    host->h_value_len) ||
	    admin_header_is(c, "origin", "https://", 8, host->h_value,
	    host->h_value_len);
}

/* 1 when the request's media type (parameters aside) is type. */
static int
admin_ctype_is(struct conn *c, const char *type)
{
	const struct http_hdr	*h;
	size_t			 n;

	if ((h = http_header(c->co_req, "content-type")) == NULL)
		return 0;
	for (n = 0; n < h->h_value_len && h->h_value[n] != ';' &&
	    h->h_value[n] != ' ' && h->h_value[n] != '\t'; n++)
		;
	return strcaseeq_n(h->h_value, n, type);
}

/* The request body as a JSON object, or NULL after answering 400. */
static struct json_object *
admin_body(struct conn *c)
{
	struct json_tokener	*tok;
	struct json_object	*o = NULL;
	enum json_tokener_error	 err;
	const char		*p = buf_unread(&c->co_body);
	size_t			 n = buf_unread_len(&c->co_body), end;
	char			 msg[160];

	if (n == 0) {
		router_error_hdr(c, 400, "invalid_request", "a JSON body is required",
		    NULL);
		return NULL;
	}
	if (n > INT_MAX || (tok = json_tokener_new_ex(ADMIN_JSON_DEPTH)) ==
	    NULL) {
		admin_oom(c);
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, p, (int)n);
	err = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (err == json_tokener_continue)
		snprintf(msg, sizeof(msg), "invalid JSON: unexpected end");
	else if (err != json_tokener_success)
		snprintf(msg, sizeof(msg), "invalid JSON: %s",
		    json_tokener_error_desc(err));
	else {
		while (end < n && strchr(" \t\r\n", p[end]) != NULL &&
		    p[end] != '\0')
			end++;
		if (end < n)
			snprintf(msg, sizeof(msg), "invalid JSON: data after "
			    "the value at offset %zu", end);
		else if (!json_object_is_type(o, json_type_object))
			snprintf(msg, sizeof(msg), "the body must be a JSON "
			    "object");
		else
			return o;
	}
	json_object_put(o);
	router_error_hdr(c, 400, "invalid_request", msg, NULL);
	return NULL;
}

/* A string member of o, or NULL after answering 400. */
static const char *
admin_str(struct conn *c, struct json_object *o, const char *name)
{
	struct json_object	*v;
	char			 msg[96];

	if (json_object_object_get_ex(o, name, &v) &&
	    json_object_is_type(v, json_type_string)) {
		/* a NUL inside the string would cut it short: refuse it */
		if (strlen(json_object_get_string(v)) ==
		    (size_t)json_object_get_string_len(v))
			return json_object_get_string(v);
		snprintf(msg, sizeof(msg), "\"%s\" must not contain NUL", name);
	} else
		snprintf(msg, sizeof(msg), "\"%s\" must be a string", name);
	router_error_hdr(c, 400, "invalid_request", msg, NULL);
	return NULL;
}

/* ---- login throttle ---- */

/* 0: go ahead and hash; -1: refused, *retry = seconds to wait. */
static int
admin_throttle_begin(int64_t now, int64_t *retry, int32_t *ticket)
{
	struct shm_hdr	*h = qr_shm->shm_hdr;
	int64_t		 ws, until;
	int32_t		 v;

	ws = atomic_load(&h->sh_login_window_start);
	if (now - ws >= LOGIN_WINDOW &&
	    atomic_compare_exchange_strong(&h->sh_login_window_start, &ws, now))
		atomic_store(&h->sh_login_failures, 0);
	until = atomic_load(&h->sh_login_fail_until);
	if (now < until) {
		*retry = until - now;
		return -1;
	}
	/* Count the attempt before hashing: concurrent guesses share the
	 * same LOGIN_MAX_FAILS, they do not each get a fresh allowance. */
	v = atomic_fetch_add(&h->sh_login_failures, 1) + 1;
	if (LOGIN_TRIES(v) > LOGIN_MAX_FAILS) {
		atomic_fetch_sub(&h->sh_login_failures, 1);
		*retry = 1;
		return -1;
	}
	*ticket = v;
	return 0;
}

static void
admin_throttle_end(int64_t now, int32_t ticket, int ok, const char *peer)
{
	struct shm_hdr	*h = qr_shm->shm_hdr;
	int32_t		 locks;
	int64_t		 secs;

	if (ok) {
		atomic_store(&h->sh_login_failures, 0);
		atomic_store(&h->sh_login_fail_until, 0);
		return;
	}
	if (LOGIN_TRIES(ticket) < LOGIN_MAX_FAILS)
		return;
	locks = LOGIN_LOCKS(ticket);
	secs = (int64_t)LOGIN_LOCK << (locks < LOGIN_LOCK_SHIFT_MAX ? locks :
	    LOGIN_LOCK_SHIFT_MAX);
	atomic_store(&h->sh_login_fail_until, now + secs);
	atomic_store(&h->sh_login_failures, (locks + 1) << 8);
	log_warnx("admin login locked for %lld s after %d failures (last "
	    "from %s)", (long long)secs, LOGIN_MAX_FAILS, peer);
}

static void
admin_throttled(struct conn *c, int64_t retry)
{
	char	 hdr[48];

	snprintf(hdr, sizeof(hdr), "Retry-After: %lld\r\n", (long long)retry);
	router_error_hdr(c, 429, "rate_limited",
	    "too many failed password attempts; try again later", hdr);
}

/* Checks pw against the stored hash under the throttle: 1 match, 0 no
 * match, -1 when it has already answered (throttled or an error). */
static int
admin_check_password(struct conn *c, const char *pw)
{
	char	 hash[AUTH_HASH_MAX];
	int64_t	 now = now_wall(), retry;
	int32_t	 ticket;
	int	 r;

	if (admin_throttle_begin(now, &retry, &ticket) == -1) {
		admin_throttled(c, retry);
		return -1;
	}
	r = db_setting_get(qr_wctx->wc_db, AUTH_PASSWORD_SETTING, hash,
	    sizeof(hash));
	if (r == 1)
		r = auth_password_verify(pw, hash);
	else
		r = -1;
	explicit_bzero(hash, sizeof(hash));
	if (r == -1) {
		/* not the client's fault: give the attempt back */
		atomic_fetch_sub(&qr_shm->shm_hdr->sh_login_failures, 1);
		log_warnx("%s: no usable admin password hash", __func__);
		router_error_hdr(c, 500, "internal_error",
		    "the admin password cannot be checked", NULL);
		return -1;
	}
	admin_throttle_end(now_wall(), ticket, r == 1, c->co_peer_text);
	return r;
}

/* ---- handlers ---- */

static void
admin_login(struct admin_req *ar)
{
	struct conn		*c = ar->ar_c;
	struct json_object	*body, *o = NULL;
	const char		*pw;
	char			 token[AUTH_TOKEN_LEN + 1], hdr[256];
	int64_t			 expires;
	int			 r;

	if ((body = admin_body(c)) == NULL)
		return;
	if ((pw = admin_str(c, body, "password")) == NULL)
		goto done;
	if ((r = admin_check_password(c, pw)) == -1)
		goto done;
	if (r == 0) {
		log_info("failed admin login from %s", c->co_peer_text);
		router_error_hdr(c, 401, "unauthorized", "wrong password", NULL);
		goto done;
	}
	if (auth_session_create(qr_wctx->wc_db, c->co_peer_text, token,
	    sizeof(token), &expires) == -1) {
		admin_dberr(c);
		goto done;
	}
	log_info("admin login from %s", c->co_peer_text);
	if ((o = json_object_new_object()) == NULL) {
		admin_oom(c);
		goto done;
	}
	json_object_object_add(o, "token", json_object_new_string(token));
	json_object_object_add(o, "expiresAt", admin_time(expires));
	snprintf(hdr, sizeof(hdr), "Set-Cookie: %s=%s; HttpOnly; "
	    "SameSite=Strict; Path=/; Max-Age=%d\r\n"
	    "Cache-Control: no-store\r\n", AUTH_COOKIE, token,
	    AUTH_SESSION_TTL);
	conn_respond_json(c, 200, o, hdr);
 done:
	explicit_bzero(token, sizeof(token));
	explicit_bzero(hdr, sizeof(hdr));
	json_object_put(body);
}

static void
admin_logout(struct admin_req *ar)
{
	if (auth_session_delete(qr_wctx->wc_db, ar->ar_token,
	    ar->ar_token_len) == -1) {
		admin_dberr(ar->ar_c);
		return;
	}
	conn_respond(ar->ar_c, 204, NULL, NULL, 0, "Set-Cookie: " AUTH_COOKIE
	    "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0\r\n");
}

static void
admin_password(struct admin_req *ar)
{
	struct conn		*c = ar->ar_c;
	struct json_object	*body;
	const char		*old, *new;
	char			 hash[AUTH_HASH_MAX];
	sqlite3			*db = qr_wctx->wc_db;
	size_t			 n;
	int			 r;

	if ((body = admin_body(c)) == NULL)
		return;
	if ((old = admin_str(c, body, "old")) == NULL ||
	    (new = admin_str(c, body, "new")) == NULL)
		goto done;
	if ((n = strlen(new)) < ADMIN_NEW_PW_MIN || n > AUTH_PASSWORD_MAX) {
		router_error_hdr(c, 400, "invalid_request", "the new password must "
		    "be 8 to 511 bytes long", NULL);
		goto done;
	}
	if ((r = admin_check_password(c, old)) == -1)
		goto done;
	if (r == 0) {
		log_info("admin password change with a wrong password from %s",
		    c->co_peer_text);
		router_error_hdr(c, 403, "forbidden", "the old password is wrong",
		    NULL);
		goto done;
	}
	if (auth_password_hash(new, hash, sizeof(hash)) == -1) {
		router_error_hdr(c, 500, "internal_error", "cannot hash the password",
		    NULL);
		goto done;
	}
	/* One transaction: the new password never coexists with sessions
	 * opened under the old one (but this one stays open). */
	if (db_begin(db, __func__) == -1)
		goto dberr;
	if (db_setting_set(db, AUTH_PASSWORD_SETTING, hash) == -1 ||
	    auth_session_delete_others(db, ar->ar_token, ar->ar_token_len) ==
	    -1) {
		db_rollback(db);
		goto dberr;
	}
	if (db_commit(db, __func__) == -1)
		goto dberr;
	log_info("admin password changed from %s", c->co_peer_text);
	conn_respond(c, 204, NULL, NULL, 0, NULL);
	goto done;
 dberr:
	admin_dberr(c);
 done:
	explicit_bzero(hash, sizeof(hash));
	json_object_put(body);
}

static const char *
admin_role(int32_t role)
{
	switch (role) {
	case ROLE_MASTER:
		return "master";
	case ROLE_WORKER:
		return "worker";
	case ROLE_REFRESHER:
		return "refresher";
	case ROLE_LOGGER:
		return "logger";
	default:
		return "unknown";
	}
}

static void
admin_add_int(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static struct json_object *
admin_status_procs(uint64_t sums[3])
{
	struct json_object	*a, *p;
	struct shm_proc		*sp;
	uint32_t		 i;
	int32_t			 pid;

	if ((a = json_object_new_array()) == NULL)
		return NULL;
	for (i = 0; i < qr_shm->shm_hdr->sh_max_procs; i++) {
		sp = &qr_shm->shm_procs[i];
		if ((pid = atomic_load(&sp->sp_pid)) == 0)
			continue;
		sums[0] += atomic_load(&sp->sp_requests);
		sums[1] += atomic_load(&sp->sp_status_4xx);
		sums[2] += atomic_load(&sp->sp_status_5xx);
		if ((p = json_object_new_object()) == NULL)
			continue;
		admin_add_int(p, "pid", pid);
		json_object_object_add(p, "role",
		    json_object_new_string(admin_role(sp->sp_role)));
		admin_add_int(p, "generation", sp->sp_gen);
		json_object_object_add(p, "startedAt",
		    admin_time(sp->sp_started));
		admin_add_int(p, "restarts", atomic_load(&sp->sp_restarts));
		json_object_object_add(p, "draining", json_object_new_boolean(
		    atomic_load(&sp->sp_draining) != 0));
		admin_add_int(p, "requests",
		    (int64_t)atomic_load(&sp->sp_requests));
		admin_add_int(p, "connections",
		    atomic_load(&sp->sp_conns_active));
		admin_add_int(p, "bytesIn",
		    (int64_t)atomic_load(&sp->sp_bytes_in));
		admin_add_int(p, "bytesOut",
		    (int64_t)atomic_load(&sp->sp_bytes_out));
		json_object_array_add(a, p);
	}
	return a;
}

static struct json_object *
admin_status_accounts(void)
{
	static const int	 shown[] = { ACCT_ENABLED, ACCT_DISABLED,
		ACCT_COOLDOWN, ACCT_EXHAUSTED, ACCT_SUSPENDED,
		ACCT_REFRESH_FAILED };
	struct json_object	*o;
	int64_t			 count[ACCT_REFRESH_FAILED + 1] = { 0 };
	int64_t			 total = 0, now = now_wall();
	uint32_t		 i, high;
	int			 st;

	/* cooling down and exhausted are derived from the slots' times */
	high = atomic_load(&qr_shm->shm_hdr->sh_accts_high);
	for (i = 0; i < high && i < qr_shm->shm_hdr->sh_max_accounts; i++) {
		st = pool_acct_state(&qr_shm->shm_accts[i], now, NULL);
		if (st <= ACCT_EMPTY || st > ACCT_REFRESH_FAILED)
			continue;
		count[st]++;
		total++;
	}
	if ((o = json_object_new_object()) == NULL)
		return NULL;
	admin_add_int(o, "total", total);
	for (i = 0; i < nitems(shown); i++)
		admin_add_int(o, shm_acct_state_name(shown[i]),
		    count[shown[i]]);
	return o;
}

static void
admin_status(struct admin_req *ar)
{
	struct shm_hdr		*h = qr_shm->shm_hdr;
	struct json_object	*o, *cnt;
	uint64_t		 sums[3] = { 0, 0, 0 };
	uint32_t		 i, high;
	int64_t			 keys = 0;

	if ((o = json_object_new_object()) == NULL ||
	    (cnt = json_object_new_object()) == NULL) {
		json_object_put(o);
		admin_oom(ar->ar_c);
		return;
	}
	json_object_object_add(o, "version", json_object_new_string(QR_VERSION));
	admin_add_int(o, "uptime", now_wall() - h->sh_started);
	json_object_object_add(o, "startedAt", admin_time(h->sh_started));
	admin_add_int(o, "pid", atomic_load(&h->sh_master_pid));
	json_object_object_add(o, "processes", admin_status_procs(sums));
	json_object_object_add(o, "accounts", admin_status_accounts());
	high = atomic_load(&h->sh_keys_high);
	for (i = 0; i < high && i < h->sh_max_keys; i++)
		if (atomic_load(&qr_shm->shm_keys[i].sk_used))
			keys++;
	admin_add_int(o, "keys", keys);
	admin_add_int(cnt, "requests", (int64_t)sums[0]);
	admin_add_int(cnt, "status4xx", (int64_t)sums[1]);
	admin_add_int(cnt, "status5xx", (int64_t)sums[2]);
	admin_add_int(cnt, "logWritten", (int64_t)atomic_load(&h->sh_log_written));
	admin_add_int(cnt, "logDropped", (int64_t)atomic_load(&h->sh_log_dropped));
	json_object_object_add(o, "counters", cnt);
	conn_respond_json(ar->ar_c, 200, o, "Cache-Control: no-store\r\n");
}

/* The live use of key id in the shared table (the database lags). */
static void
admin_key_usage(int64_t id, int64_t *requests, int64_t *last_used)
{
	struct shm_key	*k;
	uint32_t	 i, high;
	int64_t		 t;

	*requests = 0;
	high = atomic_load(&qr_shm->shm_hdr->sh_keys_high);
	for (i = 0; i < high && i < qr_shm->shm_hdr->sh_max_keys; i++) {
		k = &qr_shm->shm_keys[i];
		if (!atomic_load(&k->sk_used) || k->sk_id != id)
			continue;
		*requests = (int64_t)atomic_load(&k->sk_requests);
		if ((t = atomic_load(&k->sk_last_used)) > *last_used)
			*last_used = t;
		return;
	}
}

static int
admin_keys_list_cb(const struct db_key *k, void *arg)
{
	struct json_object	*o;
	int64_t			 requests, last = k->k_last_used;

	if ((o = json_object_new_object()) == NULL)
		return -1;
	admin_key_usage(k->k_id, &requests, &last);
	admin_add_int(o, "id", k->k_id);
	json_object_object_add(o, "name", json_object_new_string(k->k_name));
	json_object_object_add(o, "prefix", json_object_new_string(k->k_prefix));
	json_object_object_add(o, "createdAt", admin_time(k->k_created));
	json_object_object_add(o, "lastUsedAt", admin_time(last));
	admin_add_int(o, "requests", requests);
	return json_object_array_add(arg, o) == 0 ? 0 : -1;
}

/* {"<name>": [...]}, the array filled by fill (0 ok). */
static void
admin_list(struct admin_req *ar, const char *name,
    int (*fill)(struct json_object *))
{
	struct json_object	*o, *a;

	if ((o = json_object_new_object()) == NULL ||
	    (a = json_object_new_array()) == NULL) {
		json_object_put(o);
		admin_oom(ar->ar_c);
		return;
	}
	json_object_object_add(o, name, a);
	if (fill(a) != 0) {
		json_object_put(o);
		admin_dberr(ar->ar_c);
		return;
	}
	conn_respond_json(ar->ar_c, 200, o, "Cache-Control: no-store\r\n");
}

static int
admin_keys_fill(struct json_object *a)
{
	return db_key_list(qr_wctx->wc_db, admin_keys_list_cb, a);
}

static void
admin_keys_list(struct admin_req *ar)
{
	admin_list(ar, "keys", admin_keys_fill);
}

static void
admin_keys_add(struct admin_req *ar)
{
	struct conn		*c = ar->ar_c;
	struct json_object	*body, *o;
	const char		*name;
	char			 key[64], prefix[SHM_KEY_PREFIX + 1];
	unsigned char		 hash[32];
	int64_t			 id;

	if ((body = admin_body(c)) == NULL)
		return;
	if ((name = admin_str(c, body, "name")) == NULL)
		goto done;
	if (!db_key_name_ok(name)) {
		router_error_hdr(c, 400, "invalid_request", "\"name\" must be 1 to "
		    "127 bytes without control characters", NULL);
		goto done;
	}
	if (auth_key_generate(key, sizeof(key), hash, prefix) == -1) {
		router_error_hdr(c, 500, "internal_error", "cannot make a key", NULL);
		goto done;
	}
	if ((id = db_key_add(qr_wctx->wc_db, name, hash, prefix)) == -1) {
		admin_dberr(c);
		goto done;
	}
	if (shm_key_add(qr_shm, id, hash, prefix) == -1) {
		/* A key that would not work until a reload is worse than
		 * none: take it back. */
		(void)db_key_delete(qr_wctx->wc_db, id);
		router_error_hdr(c, 409, "limit_reached", "the key table is full "
		    "(max_keys)", NULL);
		goto done;
	}
	log_info("client key %lld (%s) added from %s", (long long)id, prefix,
	    c->co_peer_text);
	if ((o = json_object_new_object()) == NULL) {
		admin_oom(c);
		goto done;
	}
	admin_add_int(o, "id", id);
	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "key", json_object_new_string(key));
	json_object_object_add(o, "prefix", json_object_new_string(prefix));
	json_object_object_add(o, "createdAt", admin_time(now_wall()));
	conn_respond_json(c, 201, o, "Cache-Control: no-store\r\n");
 done:
	explicit_bzero(key, sizeof(key));
	json_object_put(body);
}

/* The ":id" of the path, or -1 when it cannot be an id. */
static int64_t
admin_arg_id(const struct admin_req *ar)
{
	const char	*s = ar->ar_arg;
	char		*end;
	long long	 id;

	errno = 0;
	id = strtoll(s, &end, 10);
	if (*s < '1' || *s > '9' || *end != '\0' || errno != 0)
		return -1;
	return id;
}

static void
admin_keys_delete(struct admin_req *ar)
{
	long long	 id;
	int		 r;

	if ((id = admin_arg_id(ar)) == -1) {
		router_error_hdr(ar->ar_c, 404, "not_found", "no such key", NULL);
		return;
	}
	if ((r = db_key_delete(qr_wctx->wc_db, id)) == -1) {
		admin_dberr(ar->ar_c);
		return;
	}
	/* Also when the row was already gone: a stale slot must not live. */
	(void)shm_key_remove(qr_shm, id);
	if (r == 0) {
		router_error_hdr(ar->ar_c, 404, "not_found", "no such key", NULL);
		return;
	}
	log_info("client key %lld deleted from %s", id, ar->ar_c->co_peer_text);
	conn_respond(ar->ar_c, 204, NULL, NULL, 0, NULL);
}

/* ---- accounts ---- */

/* The slots by id while a handler looks at many accounts (a list, an
 * import); unbuilt, lookups scan. */
static struct shm_acct_ix	 admin_ix;

static int
admin_slot_find(int64_t id)
{
	return shm_acct_ix_find(qr_shm, &admin_ix, id);
}

/* The live view of account id, when it has a slot: token zeroed. */
static int
admin_account_live(int64_t id, struct shm_acct *out)
{
	int	 slot;

	if ((slot = admin_slot_find(id)) == -1 ||
	    shm_acct_read(qr_shm, (uint32_t)slot, out) == -1 ||
	    out->sa_id != id)
		return -1;
	explicit_bzero(out->sa_token, sizeof(out->sa_token));
	return slot;
}

static struct json_object *
admin_str_or_null(const char *s)
{
	return *s != '\0' ? json_object_new_string(s) : NULL;
}

/* Credits (kept x 1000) as a number with 3 decimals. */
static struct json_object *
admin_credits(int64_t x1000)
{
	char	 s[40];

	snprintf(s, sizeof(s), "%.3f", (double)x1000 / 1000.0);
	return json_object_new_double_s((double)x1000 / 1000.0, s);
}

static struct json_object *
admin_account_json(const struct db_account *a)
{
	struct json_object	*o, *u, *cnt;
	struct acct_counters	 ac = a->a_counters;
	struct shm_acct		 live;
	int64_t			 now = now_wall(), expires = a->a_expires;
	int64_t			 until = 0, used, limit, reset, checked;
	int64_t			 exhausted = a->a_exhausted_until;
	int			 slot, ready = 0, st;
	const char		*err = a->a_last_error;
	char			 proxy[SHM_PROXY_MAX], cr[40];

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	used = a->a_usage_used;
	limit = a->a_usage_limit;
	reset = a->a_usage_reset;
	checked = a->a_usage_checked;
	/* the shared table is live, the database lags: prefer the former */
	if ((slot = admin_account_live(a->a_id, &live)) != -1) {
		st = pool_acct_state(&live, now, &until);
		expires = live.sa_expires;
		ready = st == ACCT_ENABLED && live.sa_expires > now + 60;
		if (live.sa_last_error[0] != '\0')
			err = live.sa_last_error;
		exhausted = atomic_load(&live.sa_exhausted_until);
		if (atomic_load(&live.sa_usage_checked) > 0) {
			used = atomic_load(&live.sa_usage_used);
			limit = atomic_load(&live.sa_usage_limit);
			reset = atomic_load(&live.sa_usage_reset);
			checked = atomic_load(&live.sa_usage_checked);
		}
		shm_acct_counters(&live, &ac);
	} else
		st = db_account_state(a, now, &until);
	admin_add_int(o, "id", a->a_id);
	json_object_object_add(o, "type", json_object_new_string(a->a_type));
	json_object_object_add(o, "label", json_object_new_string(a->a_label));
	json_object_object_add(o, "enabled",
	    json_object_new_boolean(a->a_enabled));
	json_object_object_add(o, "state",
	    json_object_new_string(shm_acct_state_name(st)));
	json_object_object_add(o, "stateUntil", admin_time(until));
	json_object_object_add(o, "ready", json_object_new_boolean(ready));
	json_object_object_add(o, "expiresAt", admin_time(expires));
	json_object_object_add(o, "lastError", admin_str_or_null(err));
	json_object_object_add(o, "region", admin_str_or_null(a->a_region));
	json_object_object_add(o, "profileArn",
	    admin_str_or_null(a->a_profile_arn));
	json_object_object_add(o, "clientId",
	    admin_str_or_null(a->a_client_id));
	/* hints only: the first characters and an ellipsis */
	json_object_object_add(o, "refreshToken",
	    admin_str_or_null(a->a_refresh_hint));
	json_object_object_add(o, "clientSecret",
	    admin_str_or_null(a->a_secret_hint));
	db_proxy_mask(a->a_proxy, proxy, sizeof(proxy));
	json_object_object_add(o, "proxy", admin_str_or_null(proxy));
	admin_add_int(o, "maxConcurrency", a->a_max_inflight);
	admin_add_int(o, "rpm", a->a_rpm);
	json_object_object_add(o, "exhaustedUntil",
	    admin_time(exhausted > now ? exhausted : 0));
	json_object_object_add(o, "lastRefreshAt",
	    admin_time(a->a_last_refresh));
	json_object_object_add(o, "createdAt", admin_time(a->a_created));
	json_object_object_add(o, "updatedAt", admin_time(a->a_updated));
	admin_add_int(o, "requests", ac.ac_requests);
	admin_add_int(o, "errors", ac.ac_failures);
	admin_add_int(o, "inflight", slot != -1 ?
	    atomic_load(&live.sa_inflight) : 0);
	if ((u = json_object_new_object()) != NULL) {
		json_object_object_add(u, "used", checked > 0 ?
		    admin_credits(used) : NULL);
		json_object_object_add(u, "limit", limit > 0 ?
		    admin_credits(limit) : NULL);
		json_object_object_add(u, "remaining", limit > 0 ?
		    admin_credits(used < limit ? limit - used : 0) : NULL);
		json_object_object_add(u, "resetAt", admin_time(reset));
		json_object_object_add(u, "checkedAt", admin_time(checked));
		json_object_object_add(u, "subscription",
		    admin_str_or_null(a->a_subscription));
		json_object_object_add(u, "email",
		    admin_str_or_null(a->a_email));
		json_object_object_add(o, "usage", u);
	}
	if ((cnt = json_object_new_object()) != NULL) {
		admin_add_int(cnt, "requests", ac.ac_requests);
		admin_add_int(cnt, "failures", ac.ac_failures);
		admin_add_int(cnt, "tokensIn", ac.ac_tokens_in);
		admin_add_int(cnt, "tokensOut", ac.ac_tokens_out);
		/* credits are kept x 1000000 */
		snprintf(cr, sizeof(cr), "%.3f", (double)ac.ac_credits / 1e6);
		json_object_object_add(cnt, "credits", json_object_new_double_s(
		    (double)ac.ac_credits / 1e6, cr));
		json_object_object_add(o, "counters", cnt);
	}
	return o;
}

static int
admin_accounts_list_cb(const struct db_account *a, void *arg)
{
	struct json_object	*o;

	if ((o = admin_account_json(a)) == NULL)
		return -1;
	return json_object_array_add(arg, o) == 0 ? 0 : -1;
}

static int
admin_accounts_fill(struct json_object *a)
{
	int	 r;

	(void)shm_acct_ix_build(qr_shm, &admin_ix);
	r = db_account_list(qr_wctx->wc_db, admin_accounts_list_cb, a);
	shm_acct_ix_free(&admin_ix);
	return r;
}

static void
admin_accounts_list(struct admin_req *ar)
{
	admin_list(ar, "accounts", admin_accounts_fill);
}

/* Member name of o: absent -> NULL with *bad 0; not a string (or with a
 * NUL in it) -> NULL after answering 400, *bad 1. */
static const char *
admin_opt_str(struct conn *c, struct json_object *o, const char *name,
    int *bad)
{
	struct json_object	*v;

	*bad = 0;
	if (!json_object_object_get_ex(o, name, &v) ||
	    json_object_is_type(v, json_type_null))
		return NULL;
	if (admin_str(c, o, name) == NULL) {
		*bad = 1;
		return NULL;
	}
	return json_object_get_string(v);
}

static void
admin_bad(struct conn *c, const char *msg)
{
	router_error_hdr(c, 400, "invalid_request", msg, NULL);
}

/* The slot of a new or changed account, from its database row: caps
 * and proxy reach every worker at once. */
static int
admin_account_to_shm(const struct db_account *a)
{
	struct shm_acct_meta	 m;

	db_account_meta(a, &m);
	return shm_acct_put(qr_shm, &m, NULL, 0);
}

/* An optional count member (maxConcurrency, rpm): -1 absent; -2 after
 * answering 400. */
static int
admin_opt_cap(struct conn *c, struct json_object *o, const char *name)
{
	struct json_object	*v;
	char			 msg[96];
	int64_t			 n;

	if (!json_object_object_get_ex(o, name, &v) ||
	    json_object_is_type(v, json_type_null))
		return -1;
	if (!json_object_is_type(v, json_type_int) ||
	    (n = json_object_get_int64(v)) < 0 || n > 1000000) {
		snprintf(msg, sizeof(msg), "\"%s\" must be an integer from 0 "
		    "to 1000000 (0: no limit)", name);
		router_error_hdr(c, 400, "invalid_request", msg, NULL);
		return -2;
	}
	return (int)n;
}

static const char admin_proxy_msg[] = "\"proxy\" must be \"\" or "
    "http://, https://, socks5:// or socks5h://[user:password@]host[:port]";

static void
admin_conflict(struct conn *c, int64_t id)
{
	char	 msg[96];

	snprintf(msg, sizeof(msg), "an account with this refresh token "
	    "exists (id %lld)", (long long)id);
	router_error_hdr(c, 409, "conflict", msg, NULL);
}

static void
admin_accounts_add(struct admin_req *ar)
{
	struct conn		*c = ar->ar_c;
	struct json_object	*body, *o;
	struct db_account_new	 an;
	struct db_account	 a;
	sqlite3			*db = qr_wctx->wc_db;
	int64_t			 id;
	int			 slot;
	char			 err[200];

	if ((body = admin_body(c)) == NULL)
		return;
	/* the same reading as an import's entry, but the API names the
	 * type (an import may guess it from a Kiro credential file) */
	if (!json_object_object_get_ex(body, "type", NULL)) {
		admin_bad(c, "\"type\" must be \"idc\" or \"social\"");
		goto done;
	}
	if (db_account_from_json(body, &an, err, sizeof(err)) == -1) {
		admin_bad(c, err);
		goto done;
	}
	if (an.an_region == NULL || *an.an_region == '\0')
		an.an_region = qr_wctx->wc_cf->cf_region;
	if (!secret_ready()) {
		router_error_hdr(c, 500, "internal_error", "no secrets key",
		    NULL);
		goto done;
	}
	if ((id = db_account_find_refresh(db, an.an_refresh_token)) != 0) {
		if (id > 0)
			admin_conflict(c, id);
		else
			admin_dberr(c);
		goto done;
	}
	if ((id = db_account_add(db, &an)) == -1) {
		/* another request may have added the same token meanwhile */
		if ((id = db_account_find_refresh(db, an.an_refresh_token)) > 0)
			admin_conflict(c, id);
		else
			admin_dberr(c);
		goto done;
	}
	if (db_account_get(db, id, &a) != 1) {
		admin_dberr(c);
		goto done;
	}
	if ((slot = admin_account_to_shm(&a)) == -1) {
		/* an account that would not be used until a reload is
		 * worse than none: take it back */
		(void)db_account_delete(db, id);
		router_error_hdr(c, 409, "limit_reached", "the account table is "
		    "full (max_accounts)", NULL);
		goto done;
	}
	if (a.a_enabled)
		pool_want_refresh(qr_shm, slot);
	log_info("account %lld (%s) added from %s", (long long)id, a.a_type,
	    c->co_peer_text);
	if ((o = admin_account_json(&a)) == NULL) {
		admin_oom(c);
		goto done;
	}
	conn_respond_json(c, 201, o, "Cache-Control: no-store\r\n");
 done:
	/* json-c's copies of the secrets */
	{
		static const char *const names[] = { "refreshToken",
			"clientSecret", NULL };

		oidc_json_scrub(body, names);
	}
	json_object_put(body);
}

/* The account of the path, or -1 after answering. */
static int64_t
admin_account_load(struct admin_req *ar, struct db_account *a)
{
	int64_t	 id;
	int	 r;

	if ((id = admin_arg_id(ar)) == -1 ||
	    (r = db_account_get(qr_wctx->wc_db, id, a)) == 0) {
		router_error_hdr(ar->ar_c, 404, "not_found", "no such account",
		    NULL);
		return -1;
	}
	if (r == -1) {
		admin_dberr(ar->ar_c);
		return -1;
	}
	return id;
}

static void
admin_account_reply(struct conn *c, int status, const struct db_account *a)
{
	struct json_object	*o;

	if ((o = admin_account_json(a)) == NULL) {
		admin_oom(c);
		return;
	}
	conn_respond_json(c, status, o, "Cache-Control: no-store\r\n");
}

static void
admin_account_get(struct admin_req *ar)
{
	struct db_account	 a;

	if (admin_account_load(ar, &a) == -1)
		return;
	admin_account_reply(ar->ar_c, 200, &a);
}

static void
admin_account_patch(struct admin_req *ar)
{
	static const char *const keys[] = { "enabled", "label", "proxy",
		"maxConcurrency", "rpm", "region", "profileArn" };
	struct conn		*c = ar->ar_c;
	struct json_object	*body, *v;
	struct json_object_iterator it, end;
	struct db_account_patch	 p;
	struct db_account	 a;
	struct shm_acct		*sa;
	struct shm_acct		 live;
	const char		*k;
	char			 msg[160];
	int64_t			 id;
	int			 bad, slot, r, changed = 0;
	size_t			 i;

	if ((id = admin_account_load(ar, &a)) == -1)
		return;
	if ((body = admin_body(c)) == NULL)
		return;
	db_account_patch_init(&p);
	it = json_object_iter_begin(body);
	end = json_object_iter_end(body);
	for (; !json_object_iter_equal(&it, &end);
	    json_object_iter_next(&it)) {
		k = json_object_iter_peek_name(&it);
		for (i = 0; i < nitems(keys); i++)
			if (strcmp(k, keys[i]) == 0)
				break;
		if (i == nitems(keys)) {
			snprintf(msg, sizeof(msg), "\"%.40s\" cannot be "
			    "changed; PATCH takes \"enabled\", \"label\", "
			    "\"proxy\", \"maxConcurrency\", \"rpm\", \"region\" "
			    "and \"profileArn\"", k);
			admin_bad(c, msg);
			goto done;
		}
		changed = 1;
	}
	if (!changed) {
		admin_bad(c, "nothing to change: give \"enabled\", \"label\", "
		    "\"proxy\", \"maxConcurrency\", \"rpm\", \"region\" or "
		    "\"profileArn\"");
		goto done;
	}
	if (json_object_object_get_ex(body, "enabled", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			admin_bad(c, "\"enabled\" must be true or false");
			goto done;
		}
		p.ap_enabled = json_object_get_boolean(v);
	}
	if (((p.ap_label = admin_opt_str(c, body, "label", &bad)) == NULL &&
	    bad) ||
	    ((p.ap_proxy = admin_opt_str(c, body, "proxy", &bad)) == NULL &&
	    bad) ||
	    ((p.ap_region = admin_opt_str(c, body, "region", &bad)) == NULL &&
	    bad) ||
	    ((p.ap_profile_arn = admin_opt_str(c, body, "profileArn",
	    &bad)) == NULL && bad))
		goto done;
	if ((p.ap_max_inflight = admin_opt_cap(c, body, "maxConcurrency")) ==
	    -2 || (p.ap_rpm = admin_opt_cap(c, body, "rpm")) == -2)
		goto done;
	if (p.ap_label != NULL && !db_account_label_ok(p.ap_label)) {
		admin_bad(c, "\"label\" must be at most 127 bytes without "
		    "control characters");
		goto done;
	}
	if (p.ap_proxy != NULL && !db_account_proxy_ok(p.ap_proxy)) {
		admin_bad(c, admin_proxy_msg);
		goto done;
	}
	if (p.ap_region != NULL && !db_account_region_ok(p.ap_region)) {
		admin_bad(c, "\"region\" must be a region name such as "
		    "us-east-1");
		goto done;
	}
	if (p.ap_profile_arn != NULL &&
	    strlen(p.ap_profile_arn) >= sizeof(a.a_profile_arn)) {
		admin_bad(c, "\"profileArn\" is too long");
		goto done;
	}
	if ((r = db_account_update(qr_wctx->wc_db, id, &p)) == -1 ||
	    (r == 1 && (r = db_account_get(qr_wctx->wc_db, id, &a)) == -1)) {
		admin_dberr(c);
		goto done;
	}
	if (r == 0) {
		router_error_hdr(c, 404, "not_found", "no such account", NULL);
		goto done;
	}
	if ((slot = admin_account_to_shm(&a)) == -1) {
		router_error_hdr(c, 409, "limit_reached", "the account table is "
		    "full (max_accounts)", NULL);
		goto done;
	}
	if (p.ap_enabled == 1) {
		/* a person's enable clears what the daemon had learnt */
		sa = &qr_shm->shm_accts[slot];
		(void)shm_acct_set_state(qr_shm, (uint32_t)slot, id, -1,
		    ACCT_ENABLED);
		atomic_store(&sa->sa_exhausted_until, 0);
		atomic_store(&sa->sa_cooldown_until, 0);
		atomic_store(&sa->sa_cooldown_streak, 0);
		(void)shm_acct_set_error(qr_shm, (uint32_t)slot, id, "");
		/* renew now if its token will not do */
		if (shm_acct_read(qr_shm, (uint32_t)slot, &live) == -1 ||
		    !pool_acct_ready(&live, now_wall()))
			pool_want_refresh(qr_shm, slot);
		explicit_bzero(live.sa_token, sizeof(live.sa_token));
	}
	log_info("account %lld changed from %s", (long long)id,
	    c->co_peer_text);
	admin_account_reply(c, 200, &a);
 done:
	json_object_put(body);
}

static void
admin_account_delete(struct admin_req *ar)
{
	int64_t	 id;
	int	 r;

	if ((id = admin_arg_id(ar)) == -1) {
		router_error_hdr(ar->ar_c, 404, "not_found", "no such account",
		    NULL);
		return;
	}
	if ((r = db_account_delete(qr_wctx->wc_db, id)) == -1) {
		admin_dberr(ar->ar_c);
		return;
	}
	/* also when the row was already gone: a stale slot must not live */
	(void)shm_acct_remove(qr_shm, id);
	if (r == 0) {
		router_error_hdr(ar->ar_c, 404, "not_found", "no such account",
		    NULL);
		return;
	}
	log_info("account %lld deleted from %s", (long long)id,
	    ar->ar_c->co_peer_text);
	conn_respond(ar->ar_c, 204, NULL, NULL, 0, NULL);
}

static void
admin_account_refresh(struct admin_req *ar)
{
	struct db_account	 a;
	struct json_object	*o;
	int64_t			 id;
	int			 slot;

	if ((id = admin_account_load(ar, &a)) == -1)
		return;
	if ((slot = shm_acct_find(qr_shm, id)) == -1 &&
	    (slot = admin_account_to_shm(&a)) == -1) {
		router_error_hdr(ar->ar_c, 409, "limit_reached", "the account "
		    "table is full (max_accounts)", NULL);
		return;
	}
	/* the refresher answers through the slot; this does not wait */
	atomic_store(&qr_shm->shm_accts[slot].sa_refresh_wanted,
	    SHM_REFRESH_FORCED);
	pool_wake_refresher(qr_shm);
	log_info("account %lld: refresh requested from %s", (long long)id,
	    ar->ar_c->co_peer_text);
	if ((o = admin_account_json(&a)) == NULL) {
		admin_oom(ar->ar_c);
		return;
	}
	json_object_object_add(o, "refreshRequested",
	    json_object_new_boolean(1));
	conn_respond_json(ar->ar_c, 202, o, "Cache-Control: no-store\r\n");
}

/* ---- pool onboarding: feed, import, export, device flow ---- */

/*
 * What needs the secrets runs in the refresher (workers can seal but
 * never open): the handler claims a job in the shared table, hands it
 * over and the connection waits, CS_HANDLING with no relay, while
 * worker.c calls admin_job_tick every 100 ms (CT_FAST). The job
 * outlives a client that gives up; its id is in every answer.
 */
#define ADMIN_JOB_WAIT		60	/* s: device start, export */
#define ADMIN_FEED_WAIT		600	/* s: a feed checks every token */
#define ADMIN_REPORT_MAX	(64 * 1024 * 1024)	/* feed report bytes */

static const char *
admin_db_path(void)
{
	return qr_wctx->wc_cf->cf_db_path;
}

/* A job entry for kind, in SJ_CLAIMED, or -1 after answering 503. */
static int
admin_job_claim(struct conn *c, int kind)
{
	int	 idx;

	if ((idx = shm_job_claim(qr_shm, kind)) == -1) {
		router_error_hdr(c, 503, "overloaded", "too many jobs at once; "
		    "try again shortly", "Retry-After: 5\r\n");
		return -1;
	}
	return idx;
}

static void
admin_job_release(int idx)
{
	atomic_store(&qr_shm->shm_jobs[idx].sj_state, SJ_FREE);
}

/* Hand the job to the refresher and let the connection wait. */
static void
admin_job_start(struct conn *c, int idx)
{
	atomic_store_explicit(&qr_shm->shm_jobs[idx].sj_state, SJ_REQUESTED,
	    memory_order_release);
	pool_wake_refresher(qr_shm);
	c->co_job = idx;
	conn_timer(c, CT_FAST);
}

/* The job's id in an error body, so the client can look again. */
static void
admin_job_error(struct conn *c, int status, const char *type,
    const struct shm_job *j, const char *msg)
{
	struct json_object	*o, *e;

	if ((o = json_object_new_object()) == NULL ||
	    (e = json_object_new_object()) == NULL) {
		json_object_put(o);
		admin_oom(c);
		return;
	}
	json_object_object_add(e, "type", json_object_new_string(type));
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(o, "error", e);
	json_object_object_add(o, "id", json_object_new_string(j->sj_id));
	conn_respond_json(c, status, o, "Cache-Control: no-store\r\n");
}

static const char *
admin_device_status(int32_t st)
{
	switch (st) {
	case SJ_DONE:
		return "done";
	case SJ_EXPIRED:
		return "expired";
	case SJ_DENIED:
		return "denied";
	case SJ_FAILED:
		return "failed";
	default:
		return "pending";
	}
}

/* A device job as the API shows it; st was read with acquire. */
static struct json_object *
admin_device_json(const struct shm_job *j, int32_t st)
{
	struct json_object	*o;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(o, "id", json_object_new_string(j->sj_id));
	json_object_object_add(o, "status",
	    json_object_new_string(admin_device_status(st)));
	if (st == SJ_PENDING) {
		json_object_object_add(o, "userCode",
		    json_object_new_string(j->sj_user_code));
		json_object_object_add(o, "verificationUri",
		    json_object_new_string(j->sj_verification_uri));
		json_object_object_add(o, "verificationUriComplete",
		    admin_str_or_null(j->sj_verification_uri_complete));
		json_object_object_add(o, "expiresAt",
		    admin_time(j->sj_expires));
		admin_add_int(o, "interval", j->sj_interval);
	}
	if (st == SJ_DONE && j->sj_account_id > 0)
		admin_add_int(o, "accountId", j->sj_account_id);
	if (st >= SJ_EXPIRED && j->sj_error[0] != '\0')
		json_object_object_add(o, "error",
		    json_object_new_string(j->sj_error));
	return o;
}

/* The feed report file as a JSON array (an empty one if unreadable). */
static struct json_object *
admin_feed_report(const struct shm_job *j)
{
	struct json_object	*a = NULL;
	struct buf		 b;
	char			 path[PATH_MAX], tmp[8192];
	ssize_t			 n;
	int			 fd;

	buf_init(&b);
	if (shm_job_path(admin_db_path(), j->sj_id, "out", path,
	    sizeof(path)) == 0 &&
	    (fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) != -1) {
		while ((n = read(fd, tmp, sizeof(tmp))) > 0 &&
		    b.b_len + (size_t)n <= ADMIN_REPORT_MAX)
			if (buf_append(&b, tmp, (size_t)n) == -1)
				break;
		close(fd);
		if (b.b_len > 0)
			a = jsonr_parse(b.b_data, b.b_len, 8, NULL);
	}
	buf_free(&b);
	if (a != NULL && !json_object_is_type(a, json_type_array)) {
		json_object_put(a);
		a = NULL;
	}
	return a != NULL ? a : json_object_new_array();
}

static void
admin_feed_answer(struct conn *c, const struct shm_job *j)
{
	struct json_object	*o;

	if ((o = json_object_new_object()) == NULL) {
		admin_oom(c);
		return;
	}
	json_object_object_add(o, "id", json_object_new_string(j->sj_id));
	admin_add_int(o, "total", j->sj_total);
	admin_add_int(o, "added", j->sj_added);
	admin_add_int(o, "failed", j->sj_failed);
	json_object_object_add(o, "results", admin_feed_report(j));
	conn_respond_json(c, 200, o, "Cache-Control: no-store\r\n");
}

static void
admin_export_answer(struct conn *c, const struct shm_job *j)
{
	struct stat	 sb;
	char		 path[PATH_MAX];
	int		 fd = -1;

	if (shm_job_path(admin_db_path(), j->sj_id, "out", path,
	    sizeof(path)) == -1 ||
	    (fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 ||
	    fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
		if (fd != -1)
			close(fd);
		admin_job_error(c, 500, "internal_error", j,
		    "the export file is missing");
		return;
	}
	/* the one copy of the secrets on disk goes now; the open file
	 * is sent from the descriptor */
	(void)unlink(path);
	conn_respond_file(c, "application/json", fd, sb.st_size,
	    "Content-Disposition: attachment; "
	    "filename=\"qrelay-accounts.json\"\r\n"
	    "Cache-Control: no-store\r\n");
}

/* 1 when it answered. */
static int
admin_job_check(struct conn *c, const struct shm_job *j, int32_t st)
{
	struct json_object	*o;
	char			 msg[256];
	int64_t			 waited = now_wall() - j->sj_created;

	switch (j->sj_kind) {
	case SJK_DEVICE:
		if (st == SJ_FAILED) {
			snprintf(msg, sizeof(msg), "device authorization "
			    "failed: %s", j->sj_error[0] ? j->sj_error :
			    "unknown error");
			admin_job_error(c, 502, "upstream_error", j, msg);
			return 1;
		}
		if (st >= SJ_PENDING) {
			if ((o = admin_device_json(j, st)) == NULL)
				admin_oom(c);
			else
				conn_respond_json(c, 200, o,
				    "Cache-Control: no-store\r\n");
			return 1;
		}
		break;
	case SJK_FEED:
	case SJK_EXPORT:
		if (st == SJ_DONE) {
			if (j->sj_kind == SJK_FEED)
				admin_feed_answer(c, j);
			else
				admin_export_answer(c, j);
			return 1;
		}
		if (st >= SJ_EXPIRED) {
			snprintf(msg, sizeof(msg), "the %s failed: %s",
			    j->sj_kind == SJK_FEED ? "feed" : "export",
			    j->sj_error[0] ? j->sj_error : "unknown error");
			admin_job_error(c, 500, "internal_error", j, msg);
			return 1;
		}
		break;
	}
	if (waited >= (j->sj_kind == SJK_FEED ? ADMIN_FEED_WAIT :
	    ADMIN_JOB_WAIT)) {
		admin_job_error(c, 504, "timeout", j, "the job is still "
		    "running; look again later with its id");
		return 1;
	}
	return 0;
}

void
admin_job_tick(struct conn *c)
{
	const struct shm_job	*j;
	int32_t			 st;

	if (c->co_job < 0 || c->co_job >= SHM_JOBS) {
		c->co_job = -1;
		return;
	}
	j = &qr_shm->shm_jobs[c->co_job];
	/* the refresher writes the fields, then the state (release) */
	st = atomic_load_explicit(&((struct shm_job *)j)->sj_state,
	    memory_order_acquire);
	if (st == SJ_FREE) {
		c->co_job = -1;
		router_error_hdr(c, 500, "internal_error", "the job was lost",
		    NULL);
		conn_kick(c);
		return;
	}
	if (!admin_job_check(c, j, st)) {
		conn_timer(c, CT_FAST);
		return;
	}
	c->co_job = -1;
	conn_kick(c);
}

/* The lines of a JSON feed body: {"lines":[string|object...]} or
 * {"text":"..."}. 0, or -1 after answering 400. */
static int
admin_feed_json(struct conn *c, struct json_object *body, struct buf *out)
{
	struct json_object	*v, *e;
	const char		*s;
	char			 msg[96];
	size_t			 i, n;
	int			 r;

	if (json_object_object_get_ex(body, "text", &v)) {
		if ((s = admin_str(c, body, "text")) == NULL)
			return -1;
		return buf_puts(out, s) == -1 ? (admin_oom(c), -1) : 0;
	}
	if (!json_object_object_get_ex(body, "lines", &v) ||
	    !json_object_is_type(v, json_type_array)) {
		admin_bad(c, "the body must be text/plain lines, "
		    "{\"lines\":[...]} or {\"text\":\"...\"}");
		return -1;
	}
	n = json_object_array_length(v);
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(v, i);
		if (json_object_is_type(e, json_type_string)) {
			s = json_object_get_string(e);
			if (strlen(s) != (size_t)json_object_get_string_len(e) ||
			    strpbrk(s, "\r\n") != NULL) {
				snprintf(msg, sizeof(msg), "\"lines\"[%zu] must "
				    "be one line", i);
				admin_bad(c, msg);
				return -1;
			}
		} else if (json_object_is_type(e, json_type_object))
			s = json_object_to_json_string_ext(e,
			    JSON_C_TO_STRING_PLAIN |
			    JSON_C_TO_STRING_NOSLASHESCAPE);
		else {
			snprintf(msg, sizeof(msg), "\"lines\"[%zu] must be a "
			    "string or an object", i);
			admin_bad(c, msg);
			return -1;
		}
		r = s == NULL || buf_puts(out, s) == -1 ||
		    buf_puts(out, "\n") == -1;
		/* an object's text is json-c's copy of its secrets, which
		 * admin_scrub_tree does not reach */
		if (s != NULL && json_object_is_type(e, json_type_object))
			explicit_bzero((char *)s, strlen(s));
		if (r) {
			admin_oom(c);
			return -1;
		}
	}
	return 0;
}

/* json-c's copies of what a feed or import body held. */
static void
admin_scrub_tree(struct json_object *o)
{
	struct json_object_iterator it, end;
	size_t			 i, n;

	if (o == NULL)
		return;
	switch (json_object_get_type(o)) {
	case json_type_string:
		explicit_bzero((char *)json_object_get_string(o),
		    (size_t)json_object_get_string_len(o));
		break;
	case json_type_array:
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			admin_scrub_tree(json_object_array_get_idx(o, i));
		break;
	case json_type_object:
		it = json_object_iter_begin(o);
		end = json_object_iter_end(o);
		for (; !json_object_iter_equal(&it, &end);
		    json_object_iter_next(&it))
			admin_scrub_tree(json_object_iter_peek_value(&it));
		break;
	default:
		break;
	}
}

static void
admin_accounts_feed(struct admin_req *ar)
{
	struct conn		*c = ar->ar_c;
	struct json_object	*body = NULL;
	struct buf		 lines;
	const char		*p;
	size_t			 i;
	int			 idx, any = 0;

	buf_init(&lines);
	if (admin_ctype_is(c, "text/plain")) {
		if (buf_append(&lines, buf_unread(&c->co_body),
		    buf_unread_len(&c->co_body)) == -1) {
			admin_oom(c);
			goto done;
		}
	} else {
		if ((body = admin_body(c)) == NULL)
			goto done;
		if (admin_feed_json(c, body, &lines) == -1)
			goto done;
	}
	for (i = 0, p = lines.b_data; i < lines.b_len && !any; i++)
		any = (unsigned char)p[i] > 0x20;
	if (!any) {
		admin_bad(c, "the feed has no lines");
		goto done;
	}
	if (memchr(lines.b_data, '\0', lines.b_len) != NULL) {
		admin_bad(c, "the feed must not contain NUL bytes");
		goto done;
	}
	if ((idx = admin_job_claim(c, SJK_FEED)) == -1)
		goto done;
	if (shm_job_write(admin_db_path(), qr_shm->shm_jobs[idx].sj_id, "in",
	    lines.b_data != NULL ? lines.b_data : "", lines.b_len) == -1) {
		admin_job_release(idx);
		router_error_hdr(c, 500, "internal_error", "cannot store the "
		    "feed for the refresher", NULL);
		goto done;
	}
	log_info("account feed of %zu bytes from %s: job %s", lines.b_len,
	    c->co_peer_text, qr_shm->shm_jobs[idx].sj_id);
	admin_job_start(c, idx);
 done:
	/* the body and the copy hold refresh tokens */
	if (lines.b_data != NULL)
		explicit_bzero(lines.b_data, lines.b_cap);
	buf_free(&lines);
	admin_scrub_tree(body);
	json_object_put(body);
	if (c->co_body.b_data != NULL)
		explicit_bzero(c->co_body.b_data, c->co_body.b_cap);
}

static void
admin_accounts_import(struct admin_req *ar)
{
	struct conn		*c = ar->ar_c;
	struct json_object	*report = NULL, *o, *e, *v;
	sqlite3			*db = qr_wctx->wc_db;
	char			 err[200];
	size_t			 i, n;
	int64_t			 added = 0, id;
	int			 r, slot;

	if (buf_unread_len(&c->co_body) == 0) {
		admin_bad(c, "a JSON body is required");
		goto done;
	}
	if (!secret_ready()) {
		router_error_hdr(c, 500, "internal_error", "no secrets key",
		    NULL);
		goto done;
	}
	r = db_accounts_import(db, buf_unread(&c->co_body),
	    buf_unread_len(&c->co_body), qr_wctx->wc_cf->cf_max_accounts,
	    &report, err, sizeof(err));
	if (r == -1) {
		admin_bad(c, err);
		goto done;
	}
	if (r != 0) {
		admin_dberr(c);
		goto done;
	}
	/* the new slots at once, as a reload would make them */
	(void)db_accounts_load_shm(db, qr_shm);
	(void)shm_acct_ix_build(qr_shm, &admin_ix);
	n = json_object_array_length(report);
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(report, i);
		if (!json_object_object_get_ex(e, "status", &v) ||
		    strcmp(json_object_get_string(v), "added") != 0)
			continue;
		added++;
		if (json_object_object_get_ex(e, "id", &v) &&
		    (id = json_object_get_int64(v)) > 0 &&
		    (slot = admin_slot_find(id)) != -1 &&
		    qr_shm->shm_accts[slot].sa_id == id &&
		    atomic_load(&qr_shm->shm_accts[slot].sa_state) ==
		    ACCT_ENABLED)
			atomic_store(&qr_shm->shm_accts[slot].sa_refresh_wanted,
			    SHM_REFRESH_WANTED);
	}
	shm_acct_ix_free(&admin_ix);
	if (added > 0)
		pool_wake_refresher(qr_shm);
	log_info("account import from %s: %lld of %zu added",
	    c->co_peer_text, (long long)added, n);
	if ((o = json_object_new_object()) == NULL) {
		admin_oom(c);
		goto done;
	}
	admin_add_int(o, "added", added);
	admin_add_int(o, "failed", (int64_t)n - added);
	json_object_object_add(o, "results", report);
	report = NULL;
	conn_respond_json(c, 200, o, "Cache-Control: no-store\r\n");
 done:
	json_object_put(report);
	if (c->co_body.b_data != NULL)
		explicit_bzero(c->co_body.b_data, c->co_body.b_cap);
}

/* 1 when the query string holds name=1 (or true/yes). */
static int
admin_query_flag(struct conn *c, const char *name)
{
	const struct http_req	*rq = c->co_req;
	const char		*p = rq->rq_query, *e, *end, *eq;
	size_t			 nl = strlen(name);

	if (p == NULL)
		return 0;
	for (end = p + rq->rq_query_len; p < end; p = e + 1) {
		if ((e = memchr(p, '&', (size_t)(end - p))) == NULL)
			e = end;
		eq = memchr(p, '=', (size_t)(e - p));
		if ((size_t)((eq ? eq : e) - p) != nl ||
		    strncmp(p, name, nl) != 0)
			continue;
		if (eq == NULL)
			return 0;
		eq++;
		return strcaseeq_n(eq, (size_t)(e - eq), "1") ||
		    strcaseeq_n(eq, (size_t)(e - eq), "true") ||
		    strcaseeq_n(eq, (size_t)(e - eq), "yes");
	}
	return 0;
}

static void
admin_accounts_export(struct admin_req *ar)
{
	struct conn	*c = ar->ar_c;
	struct buf	 b;
	int		 idx;

	if (admin_query_flag(c, "secrets")) {
		/* the full export: the refresher opens the secrets */
		if ((idx = admin_job_claim(c, SJK_EXPORT)) == -1)
			return;
		log_info("full account export (with secrets) requested from "
		    "%s", c->co_peer_text);
		admin_job_start(c, idx);
		return;
	}
	buf_init(&b);
	if (db_accounts_export(qr_wctx->wc_db, 0, &b) == -1) {
		buf_free(&b);
		admin_dberr(c);
		return;
	}
	conn_respond(c, 200, "application/json", b.b_data, b.b_len,
	    "Cache-Control: no-store\r\n");
	buf_free(&b);
}

static int
admin_url_ok(const char *s)
{
	size_t	 i;

	if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

static void
admin_device_start(struct admin_req *ar)
{
	struct conn		*c = ar->ar_c;
	struct json_object	*body = NULL;
	struct shm_job		*j;
	const char		*label = NULL, *region = NULL, *url = NULL;
	const char		*proxy = NULL;
	int			 bad, idx;

	if (buf_unread_len(&c->co_body) > 0) {
		if ((body = admin_body(c)) == NULL)
			return;
		if (((label = admin_opt_str(c, body, "label", &bad)) == NULL &&
		    bad) ||
		    ((region = admin_opt_str(c, body, "region", &bad)) ==
		    NULL && bad) ||
		    ((url = admin_opt_str(c, body, "startUrl", &bad)) ==
		    NULL && bad) ||
		    ((proxy = admin_opt_str(c, body, "proxy", &bad)) == NULL &&
		    bad))
			goto done;
	}
	if (label != NULL && !db_account_label_ok(label)) {
		admin_bad(c, "\"label\" must be at most 127 bytes without "
		    "control characters");
		goto done;
	}
	if (region == NULL || *region == '\0')
		region = qr_wctx->wc_cf->cf_region;
	if (!db_account_region_ok(region)) {
		admin_bad(c, "\"region\" must be a region name such as "
		    "us-east-1");
		goto done;
	}
	if (url == NULL || *url == '\0')
		url = qr_wctx->wc_cf->cf_start_url;
	if (!admin_url_ok(url) || strlen(url) >= sizeof(j->sj_start_url)) {
		admin_bad(c, "\"startUrl\" must be an http(s) URL of at most "
		    "255 bytes");
		goto done;
	}
	if (proxy != NULL && !db_account_proxy_ok(proxy)) {
		admin_bad(c, admin_proxy_msg);
		goto done;
	}
	if ((idx = admin_job_claim(c, SJK_DEVICE)) == -1)
		goto done;
	j = &qr_shm->shm_jobs[idx];
	strlcpy_qr(j->sj_label, label ? label : "", sizeof(j->sj_label));
	strlcpy_qr(j->sj_region, region, sizeof(j->sj_region));
	strlcpy_qr(j->sj_start_url, url, sizeof(j->sj_start_url));
	strlcpy_qr(j->sj_proxy, proxy ? proxy : "", sizeof(j->sj_proxy));
	log_info("device authorization requested from %s: job %s",
	    c->co_peer_text, j->sj_id);
	admin_job_start(c, idx);
 done:
	json_object_put(body);
}

static void
admin_device_get(struct admin_req *ar)
{
	struct json_object	*o;
	const struct shm_job	*j;
	int32_t			 st;
	int			 idx;

	if ((idx = shm_job_find(qr_shm, ar->ar_arg)) == -1 ||
	    qr_shm->shm_jobs[idx].sj_kind != SJK_DEVICE) {
		router_error_hdr(ar->ar_c, 404, "not_found",
		    "no such device authorization", NULL);
		return;
	}
	j = &qr_shm->shm_jobs[idx];
	st = atomic_load_explicit(&qr_shm->shm_jobs[idx].sj_state,
	    memory_order_acquire);
	if ((o = admin_device_json(j, st)) == NULL) {
		admin_oom(ar->ar_c);
		return;
	}
	conn_respond_json(ar->ar_c, 200, o, "Cache-Control: no-store\r\n");
}

/* ---- settings ---- */

static void
admin_settings_get(struct admin_req *ar)
{
	struct json_object	*o;

	if ((o = db_settings_json(qr_wctx->wc_db)) == NULL) {
		admin_dberr(ar->ar_c);
		return;
	}
	conn_respond_json(ar->ar_c, 200, o, "Cache-Control: no-store\r\n");
}

#define ADMIN_SETTINGS_MAX	32

static void
admin_settings_put(struct admin_req *ar)
{
	struct conn		*c = ar->ar_c;
	struct json_object	*body;
	struct json_object_iterator it, end;
	sqlite3			*db = qr_wctx->wc_db;
	const char		*names[ADMIN_SETTINGS_MAX];
	char			 vals[ADMIN_SETTINGS_MAX][64], msg[160];
	size_t			 n = 0, i;
	int			 r;

	if ((body = admin_body(c)) == NULL)
		return;
	it = json_object_iter_begin(body);
	end = json_object_iter_end(body);
	for (; !json_object_iter_equal(&it, &end);
	    json_object_iter_next(&it)) {
		names[n] = json_object_iter_peek_name(&it);
		r = db_setting_check(names[n], json_object_iter_peek_value(&it),
		    vals[n], sizeof(vals[n]));
		if (r == 0) {
			snprintf(msg, sizeof(msg), "unknown setting \"%.40s\"",
			    names[n]);
			admin_bad(c, msg);
			goto done;
		}
		if (r == -1) {
			admin_bad(c, vals[n]);
			goto done;
		}
		if (++n == ADMIN_SETTINGS_MAX) {
			admin_bad(c, "too many settings at once");
			goto done;
		}
	}
	if (n == 0) {
		admin_bad(c, "no settings given");
		goto done;
	}
	/* the database first, all or nothing; then the live copy */
	if (db_begin(db, __func__) == -1)
		goto dberr;
	for (i = 0; i < n; i++)
		if (db_setting_set(db, names[i], vals[i]) == -1) {
			db_rollback(db);
			goto dberr;
		}
	if (db_commit(db, __func__) == -1)
		goto dberr;
	(void)db_settings_load_shm(db, qr_shm);
	for (i = 0; i < n; i++)
		log_info("setting %s = %s from %s", names[i], vals[i],
		    c->co_peer_text);
	admin_settings_get(ar);
	goto done;
 dberr:
	admin_dberr(c);
 done:
	json_object_put(body);
}

/* ---- dispatch ---- */

/* path is writable: the ":id" segment is cut out of it in place. */
static const struct admin_path *
admin_match(char *path, const char **arg)
{
	const struct admin_path	*ap;
	const char		*hole, *rest;
	size_t			 i, n, seg;

	for (i = 0; i < nitems(admin_paths); i++) {
		ap = &admin_paths[i];
		if ((hole = strstr(ap->ap_path, ":id")) == NULL) {
			if (strcmp(path, ap->ap_path) == 0) {
				*arg = NULL;
				return ap;
			}
			continue;
		}
		n = (size_t)(hole - ap->ap_path);
		rest = hole + 3;
		if (strncmp(path, ap->ap_path, n) != 0)
			continue;
		seg = strcspn(path + n, "/");
		if (seg == 0 || strcmp(path + n + seg, rest) != 0)
			continue;
		path[n + seg] = '\0';
		*arg = path + n;
		return ap;
	}
	return NULL;
}

/* The path as a C string, and the route it names, or NULL. */
static const struct admin_path *
admin_route(struct conn *c, char *path, size_t pathsz, const char **arg)
{
	const struct http_req	*rq = c->co_req;

	if (rq->rq_path_len >= pathsz ||
	    memchr(rq->rq_path, '\0', rq->rq_path_len) != NULL)
		return NULL;
	memcpy(path, rq->rq_path, rq->rq_path_len);
	path[rq->rq_path_len] = '\0';
	return admin_match(path, arg);
}

/*
 * The checks that need only the head, run before the body is read, so
 * a caller without a session never makes us hold a body: route, method,
 * origin, session, media type. Returns 0 to go on, -1 when it answered.
 */
int
admin_gate(struct conn *c)
{
	const struct http_req	*rq = c->co_req;
	const struct admin_path	*ap;
	const char		*arg, *tok;
	char			 path[ADMIN_PATH_MAX], allow[64];
	size_t			 toklen;
	int			 r;

	if ((ap = admin_route(c, path, sizeof(path), &arg)) == NULL) {
		router_error_hdr(c, 404, "not_found", "no such endpoint", NULL);
		return -1;
	}
	if (rq->rq_method <= HTTP_OTHER || rq->rq_method >= 32 ||
	    (ap->ap_methods & M(rq->rq_method)) == 0) {
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", ap->ap_allow);
		router_error_hdr(c, 405, "method_not_allowed",
		    "method not allowed on this path", allow);
		return -1;
	}
	/* Every state-changing /v2 route (login included: a forged login
	 * would plant the attacker's session) must come from our origin. */
	if (rq->rq_method != HTTP_GET && rq->rq_method != HTTP_HEAD &&
	    !admin_origin_ok(c)) {
		router_error_hdr(c, 403, "forbidden", "cross-origin request refused",
		    NULL);
		return -1;
	}
	if (ap->ap_session) {
		tok = auth_admin_token(c, &toklen);
		r = tok == NULL ? 0 : auth_session_check(qr_wctx->wc_db, tok,
		    toklen);
		if (r == -1) {
			admin_dberr(c);
			return -1;
		}
		if (r == 0) {
			router_error_hdr(c, 401, "unauthorized",
			    "an admin session is required", NULL);
			return -1;
		}
	} else if (c->co_body_max > ADMIN_LOGIN_BODY_MAX) {
		/* the one body taken without a session stays small */
		c->co_body_max = ADMIN_LOGIN_BODY_MAX;
	}
	if ((rq->rq_content_length > 0 || rq->rq_chunked) &&
	    !admin_ctype_is(c, "application/json") &&
	    !(ap->ap_text && admin_ctype_is(c, "text/plain"))) {
		router_error_hdr(c, 415, "unsupported_media_type",
		    ap->ap_text ? "the body must be application/json or "
		    "text/plain" : "the body must be application/json", NULL);
		return -1;
	}
	return 0;
}

/* After admin_gate passed and the body is in: run the route. */
void
admin_dispatch(struct conn *c)
{
	const struct admin_path	*ap;
	struct admin_req	 ar;
	char			 path[ADMIN_PATH_MAX];

	memset(&ar, 0, sizeof(ar));
	ar.ar_c = c;
	if ((ap = admin_route(c, path, sizeof(path), &ar.ar_arg)) == NULL) {
		router_error_hdr(c, 404, "not_found", "no such endpoint", NULL);
		return;
	}
	if (ap->ap_session)
		ar.ar_token = auth_admin_token(c, &ar.ar_token_len);

	switch (ap->ap_route) {
	case R_LOGIN:
		admin_login(&ar);
		break;
	case R_LOGOUT:
		admin_logout(&ar);
		break;
	case R_PASSWORD:
		admin_password(&ar);
		break;
	case R_STATUS:
		admin_status(&ar);
		break;
	case R_KEYS:
		if (c->co_req->rq_method == HTTP_POST)
			admin_keys_add(&ar);
		else
			admin_keys_list(&ar);
		break;
	case R_KEY:
		admin_keys_delete(&ar);
		break;
	case R_ACCOUNTS:
		if (c->co_req->rq_method == HTTP_POST)
			admin_accounts_add(&ar);
		else
			admin_accounts_list(&ar);
		break;
	case R_ACCOUNT:
		if (c->co_req->rq_method == HTTP_PATCH)
			admin_account_patch(&ar);
		else if (c->co_req->rq_method == HTTP_DELETE)
			admin_account_delete(&ar);
		else
			admin_account_get(&ar);
		break;
	case R_ACCOUNT_REFRESH:
		admin_account_refresh(&ar);
		break;
	case R_FEED:
		admin_accounts_feed(&ar);
		break;
	case R_IMPORT:
		admin_accounts_import(&ar);
		break;
	case R_EXPORT:
		admin_accounts_export(&ar);
		break;
	case R_DEVICE_START:
		admin_device_start(&ar);
		break;
	case R_DEVICE:
		admin_device_get(&ar);
		break;
	case R_SETTINGS:
		if (c->co_req->rq_method == HTTP_PUT)
			admin_settings_put(&ar);
		else
			admin_settings_get(&ar);
		break;
	}
}
