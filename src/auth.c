/*
 * auth.c - the secrets a worker checks: client API keys, the admin
 * password and admin sessions.
 *
 * Nothing secret is ever stored in the clear. A client key is shown once
 * when it is made and only its SHA-256 is kept (in SQLite and in the
 * shared table, where every worker looks it up without touching the
 * database). The admin password is kept as a yescrypt hash (libxcrypt).
 * An admin session token is random; the admin_sessions table holds its
 * SHA-256, so a copy of the database does not hand out live sessions.
 * Each worker runs these queries on its own SQLite connection.
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "qrelayd.h"

_Static_assert(AUTH_HASH_MAX >= CRYPT_OUTPUT_SIZE, "AUTH_HASH_MAX too small");
_Static_assert(AUTH_PASSWORD_MAX < CRYPT_MAX_PASSPHRASE_SIZE,
    "AUTH_PASSWORD_MAX above what crypt_rn accepts");

#define AUTH_TOKEN_BYTES	(AUTH_TOKEN_LEN / 2)
#define AUTH_SEEN_INTERVAL	60	/* seconds between last_seen_at writes */

/* base64url without padding of n bytes into out; -1 if out is too small. */
static int
auth_b64url(const unsigned char *in, size_t n, char *out, size_t outsz)
{
	size_t	 i, len;

	if (outsz < 4 * ((n + 2) / 3) + 1)
		return -1;
	len = (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (i = 0; i < len; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return (int)len;
}

int
auth_key_hash(const char *key, size_t len, unsigned char hash[32])
{
	unsigned int	 mdlen = 32;

	if (EVP_Digest(key, len, hash, &mdlen, EVP_sha256(), NULL) != 1)
		return -1;
	return 0;
}

int
auth_key_generate(char *key, size_t keysz, unsigned char hash[32],
    char prefix[SHM_KEY_PREFIX + 1])
{
	unsigned char	 rnd[32];
	size_t		 plen = strlen(AUTH_KEY_PREFIX);
	int		 n, rv = -1;

	if (keysz < plen + 4 * ((sizeof(rnd) + 2) / 3) + 1)
		goto done;
	if (random_bytes(rnd, sizeof(rnd)) == -1)
		goto done;
	memcpy(key, AUTH_KEY_PREFIX, plen);
	if ((n = auth_b64url(rnd, sizeof(rnd), key + plen, keysz - plen)) == -1)
		goto done;
	if (auth_key_hash(key, plen + (size_t)n, hash) == -1)
		goto done;
	memcpy(prefix, key, SHM_KEY_PREFIX);
	prefix[SHM_KEY_PREFIX] = '\0';
	rv = 0;
 done:
	explicit_bzero(rnd, sizeof(rnd));
	if (rv == -1 && keysz > 0)
		explicit_bzero(key, keysz);
	return rv;
}

static int
auth_is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* The credentials of "Authorization: Bearer X" (any case of the scheme). */
static const char *
auth_bearer(struct conn *c, size_t *len)
{
	const struct http_hdr	*h;
	const char		*v, *end, *p;

	if (c->co_req == NULL ||
	    (h = http_header(c->co_req, "authorization")) == NULL)
		return NULL;
	v = h->h_value;
	end = v + h->h_value_len;
	for (p = v; p < end && !auth_is_ows(*p); p++)
		;
	if (!strcaseeq_n(v, (size_t)(p - v), "Bearer"))
		return NULL;
	while (p < end && auth_is_ows(*p))
		p++;
	if (p == end || memchr(p, ' ', (size_t)(end - p)) != NULL ||
	    memchr(p, '\t', (size_t)(end - p)) != NULL)
		return NULL;
	*len = (size_t)(end - p);
	return p;
}

const char *
auth_client_key(struct conn *c, size_t *len)
{
	const struct http_hdr	*h;
	const char		*k;

	if ((k = auth_bearer(c, len)) != NULL)
		return k;
	if (c->co_req == NULL)
		return NULL;
	h = http_header(c->co_req, "x-api-key");
	if (h == NULL || h->h_value_len == 0)
		return NULL;
	*len = h->h_value_len;
	return h->h_value;
}

/*
 * Finds cookie name in one Cookie header value ("a=1; b=2", RFC 6265
 * 4.2.1), tolerating stray whitespace and a quoted value.
 */
static const char *
auth_cookie_find(const char *v, size_t vlen, const char *name, size_t *len)
{
	const char	*end = v + vlen, *p, *q, *eq, *pe;

	for (p = v; p < end; p = q + 1) {
		if ((q = memchr(p, ';', (size_t)(end - p))) == NULL)
			q = end;
		pe = q;
		while (p < pe && auth_is_ows(*p))
			p++;
		while (pe > p && auth_is_ows(pe[-1]))
			pe--;
		if ((eq = memchr(p, '=', (size_t)(pe - p))) == NULL)
			continue;
		/* Cookie names are case-sensitive. */
		if ((size_t)(eq - p) != strlen(name) ||
		    memcmp(p, name, (size_t)(eq - p)) != 0)
			continue;
		p = eq + 1;
		if (pe - p >= 2 && *p == '"' && pe[-1] == '"') {
			p++;
			pe--;
		}
		if (pe == p)
			continue;
		*len = (size_t)(pe - p);
		return p;
	}
	return NULL;
}

const char *
auth_admin_token(struct conn *c, size_t *len)
{
	const struct http_req	*rq = c->co_req;
	const struct http_hdr	*h;
	const char		*t;
	size_t			 i;

	if ((t = auth_bearer(c, len)) != NULL)
		return t;
	if (rq == NULL)
		return NULL;
	/* A client may split its cookies over several Cookie headers. */
	for (i = 0; i < rq->rq_nhdrs; i++) {
		h = &rq->rq_hdrs[i];
		if (!strcaseeq_n(h->h_name, h->h_name_len, "cookie"))
			continue;
		t = auth_cookie_find(h->h_value, h->h_value_len, AUTH_COOKIE,
		    len);
		if (t != NULL)
			return t;
	}
	return NULL;
}

/* crypt_rn of pw with setting into out; struct crypt_data is ~32 KB. */
static int
auth_crypt(const char *pw, const char *setting, char *out, size_t outsz)
{
	struct crypt_data	*cd;
	const char		*h;
	int			 rv = -1;

	if (strlen(pw) > AUTH_PASSWORD_MAX)
		return -1;
	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return -1;
	h = crypt_rn(pw, setting, cd, sizeof(*cd));
	if (h == NULL || h[0] == '*')
		goto done;
	if (strlcpy_qr(out, h, outsz) >= outsz)
		goto done;
	rv = 0;
 done:
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rv;
}

int
auth_password_hash(const char *pw, char *out, size_t outsz)
{
	char	 salt[CRYPT_GENSALT_OUTPUT_SIZE];

	/* NULL random bytes: libxcrypt draws them from the OS itself. */
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL) {
		log_warn("%s: crypt_gensalt_rn", __func__);
		return -1;
	}
	if (auth_crypt(pw, salt, out, outsz) == -1) {
		explicit_bzero(out, outsz);
		return -1;
	}
	return 0;
}

/* 1 match, 0 no match, -1 error (a bad stored hash is an error). */
int
auth_password_verify(const char *pw, const char *hash)
{
	char	 calc[CRYPT_OUTPUT_SIZE];
	size_t	 n;
	int	 rv;

	if (hash == NULL || hash[0] == '\0')
		return -1;
	if (strlen(pw) > AUTH_PASSWORD_MAX)
		return 0;
	if (auth_crypt(pw, hash, calc, sizeof(calc)) == -1)
		return -1;
	n = strlen(hash);
	rv = strlen(calc) == n && ct_equal(calc, hash, n);
	explicit_bzero(calc, sizeof(calc));
	return rv;
}

int
auth_password_generate(char *out, size_t outsz)
{
	unsigned char	 rnd[18];
	int		 rv = -1;

	if (random_bytes(rnd, sizeof(rnd)) == -1)
		goto done;
	if (auth_b64url(rnd, sizeof(rnd), out, outsz) == -1)
		goto done;
	rv = 0;
 done:
	explicit_bzero(rnd, sizeof(rnd));
	return rv;
}

/* Runs sql with the token's hash as ?1 and wall time as ?2 (if used);
 * returns sqlite3_changes, or -1. */
static int
auth_session_exec(sqlite3 *db, const char *sql, const unsigned char *hash,
    int64_t now)
{
	sqlite3_stmt	*st = NULL;
	int		 rv = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		goto done;
	if (hash != NULL &&
	    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC) != SQLITE_OK)
		goto done;
	if (sqlite3_bind_parameter_count(st) >= 2 &&
	    sqlite3_bind_int64(st, 2, now) != SQLITE_OK)
		goto done;
	if (sqlite3_step(st) != SQLITE_DONE)
		goto done;
	rv = sqlite3_changes(db);
 done:
	if (rv == -1)
		log_warnx("%s: %s", __func__, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rv;
}

/* Deletes expired sessions; returns how many, or -1. */
int
auth_sessions_expire(sqlite3 *db)
{
	return auth_session_exec(db,
	    "DELETE FROM admin_sessions WHERE expires_at <= ?2", NULL,
	    now_wall());
}

int
auth_session_create(sqlite3 *db, const char *client_ip, char *token,
    size_t tokensz, int64_t *expires)
{
	static const char sql[] = "INSERT INTO admin_sessions "
	    "(token_hash, created_at, expires_at, last_seen_at, client_ip) "
	    "VALUES (?1, ?2, ?3, ?2, ?4)";
	unsigned char	 rnd[AUTH_TOKEN_BYTES], hash[32];
	sqlite3_stmt	*st = NULL;
	int64_t		 now = now_wall();
	int		 rv = -1;

	if (tokensz < AUTH_TOKEN_LEN + 1)
		return -1;
	/* Old rows go when new ones come (and the refresher sweeps). */
	(void)auth_sessions_expire(db);
	if (random_bytes(rnd, sizeof(rnd)) == -1)
		goto done;
	hex_encode(rnd, sizeof(rnd), token);
	if (auth_key_hash(token, AUTH_TOKEN_LEN, hash) == -1)
		goto done;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_blob(st, 1, hash, sizeof(hash), SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 2, now) ||
	    sqlite3_bind_int64(st, 3, now + AUTH_SESSION_TTL) ||
	    sqlite3_bind_text(st, 4, client_ip ? client_ip : "", -1,
	    SQLITE_STATIC) ||
	    sqlite3_step(st) != SQLITE_DONE) {
		log_warnx("%s: %s", __func__, sqlite3_errmsg(db));
		goto done;
	}
	*expires = now + AUTH_SESSION_TTL;
	rv = 0;
 done:
	sqlite3_finalize(st);
	explicit_bzero(rnd, sizeof(rnd));
	if (rv == -1)
		explicit_bzero(token, tokensz);
	return rv;
}

/* 1 valid, 0 unknown or expired, -1 database error. */
int
auth_session_check(sqlite3 *db, const char *token, size_t len)
{
	static const char sql[] = "SELECT expires_at, last_seen_at "
	    "FROM admin_sessions WHERE token_hash = ?1";
	unsigned char	 hash[32];
	sqlite3_stmt	*st = NULL;
	int64_t		 now = now_wall(), expires, seen;
	int		 rc, rv = -1;

	/* Anything not shaped like our tokens cannot match: skip the query. */
	if (token == NULL || len != AUTH_TOKEN_LEN)
		return 0;
	if (auth_key_hash(token, len, hash) == -1)
		return -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_blob(st, 1, hash, sizeof(hash), SQLITE_STATIC)) {
		log_warnx("%s: %s", __func__, sqlite3_errmsg(db));
		goto done;
	}
	if ((rc = sqlite3_step(st)) == SQLITE_DONE) {
		rv = 0;
		goto done;
	}
	if (rc != SQLITE_ROW) {
		log_warnx("%s: %s", __func__, sqlite3_errmsg(db));
		goto done;
	}
	expires = sqlite3_column_int64(st, 0);
	seen = sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	st = NULL;
	if (now >= expires) {
		rv = 0;
		goto done;
	}
	/* Record activity, but not one write per request. */
	if (now - seen >= AUTH_SEEN_INTERVAL)
		(void)auth_session_exec(db, "UPDATE admin_sessions "
		    "SET last_seen_at = ?2 WHERE token_hash = ?1", hash, now);
	rv = 1;
 done:
	sqlite3_finalize(st);
	return rv;
}

int
auth_session_delete(sqlite3 *db, const char *token, size_t len)
{
	unsigned char	 hash[32];
	int		 n;

	if (auth_key_hash(token, len, hash) == -1)
		return -1;
	n = auth_session_exec(db,
	    "DELETE FROM admin_sessions WHERE token_hash = ?1", hash, 0);
	return n > 0 ? 1 : n;
}

/* Ends every session but this one (after a password change). */
int
auth_session_delete_others(sqlite3 *db, const char *token, size_t len)
{
	unsigned char	 hash[32];

	if (auth_key_hash(token, len, hash) == -1)
		return -1;
	return auth_session_exec(db,
	    "DELETE FROM admin_sessions WHERE token_hash <> ?1", hash, 0) == -1 ?
	    -1 : 0;
}
