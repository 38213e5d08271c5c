/*
 * test_auth.c - client keys, password hashing, admin sessions and the
 * parsing of credentials out of request headers.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

/* ---- keys ---- */

static int
is_b64url(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789-_", s[i]) == NULL || s[i] == '\0')
			return 0;
	return 1;
}

Test(auth, key_format_and_hash)
{
	char		 key[64], prefix[SHM_KEY_PREFIX + 1];
	unsigned char	 hash[32], again[32];

	cr_assert_eq(auth_key_generate(key, sizeof(key), hash, prefix), 0);
	cr_assert_eq(strlen(key), 6 + 43);
	cr_assert_eq(strncmp(key, "sk-qr-", 6), 0);
	cr_assert(is_b64url(key + 6, 43), "not base64url: %s", key);
	cr_assert_eq(strlen(prefix), SHM_KEY_PREFIX);
	cr_assert_eq(strncmp(prefix, key, SHM_KEY_PREFIX), 0);
	cr_assert_eq(auth_key_hash(key, strlen(key), again), 0);
	cr_assert_eq(memcmp(hash, again, 32), 0);
}

Test(auth, key_hash_known_value)
{
	unsigned char	 h[32];
	char		 hex[65];

	cr_assert_eq(auth_key_hash("abc", 3, h), 0);
	hex_encode(h, 32, hex);
	cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
}

Test(auth, keys_unique)
{
	char		 a[64], b[64], pa[SHM_KEY_PREFIX + 1], pb[SHM_KEY_PREFIX + 1];
	unsigned char	 ha[32], hb[32];

	cr_assert_eq(auth_key_generate(a, sizeof(a), ha, pa), 0);
	cr_assert_eq(auth_key_generate(b, sizeof(b), hb, pb), 0);
	cr_assert_str_neq(a, b);
	cr_assert_neq(memcmp(ha, hb, 32), 0);
}

Test(auth, key_buffer_too_small)
{
	char		 key[40], prefix[SHM_KEY_PREFIX + 1];
	unsigned char	 hash[32];

	cr_assert_eq(auth_key_generate(key, sizeof(key), hash, prefix), -1);
}

/* ---- passwords ---- */

Test(auth, password_hash_verify)
{
	char	 h[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];

	cr_assert_eq(auth_password_hash("correct horse", h, sizeof(h)), 0);
	cr_assert_eq(strncmp(h, "$y$", 3), 0, "not yescrypt: %.3s", h);
	cr_assert_eq(auth_password_verify("correct horse", h), 1);
	cr_assert_eq(auth_password_verify("correct horsf", h), 0);
	cr_assert_eq(auth_password_verify("correct hors", h), 0);
	cr_assert_eq(auth_password_verify("", h), 0);
	/* salted: the same password hashes differently each time */
	cr_assert_eq(auth_password_hash("correct horse", h2, sizeof(h2)), 0);
	cr_assert_str_neq(h, h2);
	cr_assert_eq(auth_password_verify("correct horse", h2), 1);
}

Test(auth, password_empty)
{
	char	 h[AUTH_HASH_MAX];

	cr_assert_eq(auth_password_hash("", h, sizeof(h)), 0);
	cr_assert_eq(auth_password_verify("", h), 1);
	cr_assert_eq(auth_password_verify("x", h), 0);
	cr_assert_eq(auth_password_verify("x", ""), -1);
	cr_assert_eq(auth_password_verify("x", "not a hash"), -1);
}

Test(auth, password_long)
{
	char	 h[AUTH_HASH_MAX], pw[AUTH_PASSWORD_MAX + 2];

	memset(pw, 'a', sizeof(pw) - 1);
	pw[sizeof(pw) - 1] = '\0';		/* one byte too many: refused */
	cr_assert_eq(auth_password_hash(pw, h, sizeof(h)), -1);
	pw[AUTH_PASSWORD_MAX] = '\0';		/* the longest allowed */
	cr_assert_eq(auth_password_hash(pw, h, sizeof(h)), 0);
	cr_assert_eq(auth_password_verify(pw, h), 1);
	pw[AUTH_PASSWORD_MAX] = 'a';
	cr_assert_eq(auth_password_verify(pw, h), 0);
	cr_assert_eq(auth_password_verify("a", h), 0);
}

Test(auth, password_generate)
{
	char	 a[32], b[32], h[AUTH_HASH_MAX];

	cr_assert_eq(auth_password_generate(a, sizeof(a)), 0);
	cr_assert_eq(auth_password_generate(b, sizeof(b)), 0);
	cr_assert_eq(strlen(a), 24);
	cr_assert(is_b64url(a, 24));
	cr_assert_str_neq(a, b);
	cr_assert_eq(auth_password_generate(a, 24), -1);
	cr_assert_eq(auth_password_hash(b, h, sizeof(h)), 0);
	cr_assert_eq(auth_password_verify(b, h), 1);
}

/* ---- sessions ---- */

static sqlite3 *
session_db(void)
{
	sqlite3	*db;

	cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "CREATE TABLE admin_sessions ("
	    "token_hash BLOB PRIMARY KEY, created_at INTEGER NOT NULL, "
	    "expires_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL, "
	    "client_ip TEXT)", NULL, NULL, NULL), SQLITE_OK);
	return db;
}

static int64_t
db_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt	*st;
	int64_t		 v;

	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

Test(auth, session_lifecycle)
{
	sqlite3	*db = session_db();
	char	 tok[65], tok2[65], saved;
	int64_t	 exp;

	cr_assert_eq(auth_session_create(db, "127.0.0.1", tok, sizeof(tok),
	    &exp), 0);
	cr_assert_eq(strlen(tok), 64);
	cr_assert_geq(exp, now_wall() + AUTH_SESSION_TTL - 5);
	cr_assert_eq(auth_session_check(db, tok, 64), 1);
	/* only the hash is stored */
	cr_assert_eq(db_int(db, "SELECT count(*) FROM admin_sessions "
	    "WHERE length(token_hash) = 32 AND client_ip = '127.0.0.1'"), 1);

	/* a changed token does not match */
	saved = tok[0];
	tok[0] = saved == 'a' ? 'b' : 'a';
	cr_assert_eq(auth_session_check(db, tok, 64), 0);
	tok[0] = saved;
	cr_assert_eq(auth_session_check(db, tok, 63), 0);
	cr_assert_eq(auth_session_check(db, "", 0), 0);

	cr_assert_eq(auth_session_create(db, "::1", tok2, sizeof(tok2), &exp), 0);
	cr_assert_str_neq(tok, tok2);
	cr_assert_eq(auth_session_delete(db, tok, 64), 1);
	cr_assert_eq(auth_session_check(db, tok, 64), 0);
	cr_assert_eq(auth_session_delete(db, tok, 64), 0);
	cr_assert_eq(auth_session_check(db, tok2, 64), 1);
	sqlite3_close(db);
}

Test(auth, session_expiry)
{
	sqlite3	*db = session_db();
	char	 tok[65], tok2[65];
	int64_t	 exp;

	cr_assert_eq(auth_session_create(db, "", tok, sizeof(tok), &exp), 0);
	cr_assert_eq(sqlite3_exec(db, "UPDATE admin_sessions SET expires_at = "
	    "strftime('%s','now') - 1", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(auth_session_check(db, tok, 64), 0);
	/* creating a session sweeps the expired rows */
	cr_assert_eq(auth_session_create(db, "", tok2, sizeof(tok2), &exp), 0);
	cr_assert_eq(db_int(db, "SELECT count(*) FROM admin_sessions"), 1);
	cr_assert_eq(auth_session_check(db, tok2, 64), 1);
	sqlite3_close(db);
}

Test(auth, session_last_seen_throttled)
{
	sqlite3	*db = session_db();
	char	 tok[65];
	int64_t	 exp;

	cr_assert_eq(auth_session_create(db, "", tok, sizeof(tok), &exp), 0);
	cr_assert_eq(sqlite3_exec(db, "UPDATE admin_sessions SET "
	    "last_seen_at = 1000", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(auth_session_check(db, tok, 64), 1);
	cr_assert_geq(db_int(db, "SELECT last_seen_at FROM admin_sessions"),
	    now_wall() - 5);
	/* within the minute: no write */
	cr_assert_eq(sqlite3_exec(db, "UPDATE admin_sessions SET "
	    "last_seen_at = strftime('%s','now') - 30", NULL, NULL, NULL),
	    SQLITE_OK);
	cr_assert_eq(auth_session_check(db, tok, 64), 1);
	cr_assert_leq(db_int(db, "SELECT last_seen_at FROM admin_sessions"),
	    now_wall() - 29);
	sqlite3_close(db);
}

Test(auth, session_delete_others)
{
	sqlite3	*db = session_db();
	char	 a[65], b[65], d[65];
	int64_t	 exp;

	cr_assert_eq(auth_session_create(db, "", a, sizeof(a), &exp), 0);
	cr_assert_eq(auth_session_create(db, "", b, sizeof(b), &exp), 0);
	cr_assert_eq(auth_session_create(db, "", d, sizeof(d), &exp), 0);
	cr_assert_eq(auth_session_delete_others(db, b, 64), 0);
	cr_assert_eq(auth_session_check(db, a, 64), 0);
	cr_assert_eq(auth_session_check(db, b, 64), 1);
	cr_assert_eq(auth_session_check(db, d, 64), 0);
	sqlite3_close(db);
}

/* ---- credentials from headers ---- */

static struct http_req	 test_req;
static struct conn	 test_conn;

static struct conn *
conn_with(const char *const *hdrs)
{
	size_t	 i;

	memset(&test_req, 0, sizeof(test_req));
	memset(&test_conn, 0, sizeof(test_conn));
	for (i = 0; hdrs[i] != NULL; i += 2) {
		test_req.rq_hdrs[i / 2].h_name = hdrs[i];
		test_req.rq_hdrs[i / 2].h_name_len = strlen(hdrs[i]);
		test_req.rq_hdrs[i / 2].h_value = hdrs[i + 1];
		test_req.rq_hdrs[i / 2].h_value_len = strlen(hdrs[i + 1]);
		test_req.rq_nhdrs++;
	}
	test_conn.co_req = &test_req;
	return &test_conn;
}

static void
assert_cred(const char *got, size_t len, const char *want)
{
	if (want == NULL) {
		cr_assert_null(got, "expected none, got %.*s", (int)len, got);
		return;
	}
	cr_assert_not_null(got, "expected %s", want);
	cr_assert_eq(len, strlen(want), "got %.*s", (int)len, got);
	cr_assert_eq(memcmp(got, want, len), 0, "got %.*s", (int)len, got);
}

Test(auth, client_key_sources)
{
	const char	*k;
	size_t		 n = 0;

	k = auth_client_key(conn_with((const char *[]){ "Authorization",
	    "Bearer sk-qr-abc", NULL }), &n);
	assert_cred(k, n, "sk-qr-abc");
	k = auth_client_key(conn_with((const char *[]){ "authorization",
	    "bEaReR   sk-qr-abc", NULL }), &n);
	assert_cred(k, n, "sk-qr-abc");
	k = auth_client_key(conn_with((const char *[]){ "X-Api-Key",
	    "sk-qr-xyz", NULL }), &n);
	assert_cred(k, n, "sk-qr-xyz");
	/* Bearer wins over x-api-key */
	k = auth_client_key(conn_with((const char *[]){ "x-api-key", "one",
	    "Authorization", "Bearer two", NULL }), &n);
	assert_cred(k, n, "two");
	k = auth_client_key(conn_with((const char *[]){ "Authorization",
	    "Basic dXNlcjpwYXNz", NULL }), &n);
	assert_cred(k, n, NULL);
	k = auth_client_key(conn_with((const char *[]){ "Authorization",
	    "Bearer", NULL }), &n);
	assert_cred(k, n, NULL);
	k = auth_client_key(conn_with((const char *[]){ "Authorization",
	    "Bearerx abc", NULL }), &n);
	assert_cred(k, n, NULL);
	k = auth_client_key(conn_with((const char *[]){ "x-api-key", "", NULL }),
	    &n);
	assert_cred(k, n, NULL);
	k = auth_client_key(conn_with((const char *[]){ NULL }), &n);
	assert_cred(k, n, NULL);
	/* a session cookie is not a client key */
	k = auth_client_key(conn_with((const char *[]){ "Cookie",
	    "qrelay_session=abc", NULL }), &n);
	assert_cred(k, n, NULL);
}

Test(auth, admin_token_cookie)
{
	const char	*t;
	size_t		 n = 0;

	t = auth_admin_token(conn_with((const char *[]){ "Cookie",
	    "qrelay_session=tok1", NULL }), &n);
	assert_cred(t, n, "tok1");
	t = auth_admin_token(conn_with((const char *[]){ "Cookie",
	    "a=1; qrelay_session=tok2; b=2", NULL }), &n);
	assert_cred(t, n, "tok2");
	t = auth_admin_token(conn_with((const char *[]){ "Cookie",
	    "a=1;qrelay_session=\"tok3\"", NULL }), &n);
	assert_cred(t, n, "tok3");
	/* names must match exactly, not as a suffix or prefix or in a value */
	t = auth_admin_token(conn_with((const char *[]){ "Cookie",
	    "xqrelay_session=no; qrelay_sessionx=no; a=qrelay_session=no",
	    NULL }), &n);
	assert_cred(t, n, NULL);
	t = auth_admin_token(conn_with((const char *[]){ "Cookie",
	    "QRELAY_SESSION=no", NULL }), &n);
	assert_cred(t, n, NULL);
	t = auth_admin_token(conn_with((const char *[]){ "Cookie",
	    "qrelay_session=; other=1", NULL }), &n);
	assert_cred(t, n, NULL);
	/* a second Cookie header is searched too */
	t = auth_admin_token(conn_with((const char *[]){ "Cookie", "a=1",
	    "cookie", "qrelay_session=tok4", NULL }), &n);
	assert_cred(t, n, "tok4");
	/* Bearer wins over the cookie */
	t = auth_admin_token(conn_with((const char *[]){ "Cookie",
	    "qrelay_session=c", "Authorization", "Bearer b", NULL }), &n);
	assert_cred(t, n, "b");
	/* x-api-key is not an admin credential */
	t = auth_admin_token(conn_with((const char *[]){ "x-api-key", "k",
	    NULL }), &n);
	assert_cred(t, n, NULL);
	test_conn.co_req = NULL;
	cr_assert_null(auth_admin_token(&test_conn, &n));
}
