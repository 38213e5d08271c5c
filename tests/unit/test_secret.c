/*
 * test_secret.c - secrets at rest: blobs sealed to an X25519 key, the key
 * file, the private half forgotten in workers, the display hints, and
 * the account rows of db.c that hold them.
 */
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

static char	 dir[64];
static char	 dbpath[128];

static void
setup(void)
{
	log_init(1, 0, "test");
	strlcpy_qr(dir, "/tmp/test_secret.XXXXXX", sizeof(dir));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(dbpath, sizeof(dbpath), "%s/qrelayd.db", dir);
	secret_forget();
}

static void
teardown(void)
{
	char	 cmd[200];

	secret_forget();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(secret, .init = setup, .fini = teardown);

static void
use_fixed_key(unsigned char fill)
{
	unsigned char	 k[SECRET_KEY_LEN];

	memset(k, fill, sizeof(k));
	cr_assert_eq(secret_set_key(k), 0);
}

#define BLOB_OVERHEAD	(1 + 32 + 12 + 16)

Test(secret, roundtrip_and_tamper)
{
	struct buf	 a, b;
	char		*p;
	size_t		 i;

	buf_init(&a);
	buf_init(&b);
	cr_assert_eq(secret_encrypt("x", "aad", &a), -1, "no key yet");
	use_fixed_key(7);
	cr_assert_eq(secret_encrypt("aorAAAA-refresh-token", "refresh_token",
	    &a), 0);
	cr_assert_eq(a.b_len, BLOB_OVERHEAD + strlen("aorAAAA-refresh-token"));
	cr_assert_eq((unsigned char)a.b_data[0], 2, "version 2");
	cr_assert_null(memmem(a.b_data, a.b_len, "aorAAAA", 7),
	    "plaintext in the blob");
	p = secret_decrypt(a.b_data, a.b_len, "refresh_token");
	cr_assert_not_null(p);
	cr_assert_str_eq(p, "aorAAAA-refresh-token");
	secret_free(p, 0);
	/* a fresh ephemeral key and nonce each time */
	cr_assert_eq(secret_encrypt("aorAAAA-refresh-token", "refresh_token",
	    &b), 0);
	cr_assert_neq(memcmp(a.b_data + 1, b.b_data + 1, 32), 0);
	cr_assert_neq(memcmp(a.b_data + 33, b.b_data + 33, 12), 0);
	/* another column, any flipped byte, a short blob: refused */
	cr_assert_null(secret_decrypt(a.b_data, a.b_len, "client_secret"));
	for (i = 0; i < a.b_len; i++) {
		a.b_data[i] ^= 0x01;
		cr_assert_null(secret_decrypt(a.b_data, a.b_len,
		    "refresh_token"), "byte %zu flipped", i);
		a.b_data[i] ^= 0x01;
	}
	cr_assert_null(secret_decrypt(a.b_data, 20, "refresh_token"));
	cr_assert_null(secret_decrypt(a.b_data, a.b_len - 1, "refresh_token"));
	cr_assert_null(secret_decrypt(a.b_data, BLOB_OVERHEAD - 1,
	    "refresh_token"));
	/* an old version 1 blob, or a future one: refused */
	a.b_data[0] = 1;
	cr_assert_null(secret_decrypt(a.b_data, a.b_len, "refresh_token"));
	a.b_data[0] = 3;
	cr_assert_null(secret_decrypt(a.b_data, a.b_len, "refresh_token"));
	a.b_data[0] = 2;
	p = secret_decrypt(a.b_data, a.b_len, "refresh_token");
	cr_assert_not_null(p, "restored blob opens again");
	secret_free(p, 0);
	/* a zero (small-order) ephemeral key: refused, no crash */
	memcpy(b.b_data, a.b_data, a.b_len);
	memset(b.b_data + 1, 0, 32);
	cr_assert_null(secret_decrypt(b.b_data, a.b_len, "refresh_token"));
	cr_assert_null(secret_decrypt(NULL, 0, "refresh_token"));
	/* another key: refused, and its blobs are refused by the first */
	use_fixed_key(8);
	cr_assert_null(secret_decrypt(a.b_data, a.b_len, "refresh_token"));
	cr_assert_eq(secret_encrypt("other-key", "refresh_token", &b), 0);
	use_fixed_key(7);
	cr_assert_null(secret_decrypt(b.b_data, b.b_len, "refresh_token"));
	p = secret_decrypt(a.b_data, a.b_len, "refresh_token");
	cr_assert_not_null(p);
	secret_free(p, 0);
	use_fixed_key(8);
	/* the empty string is a value too */
	cr_assert_eq(secret_encrypt("", "access_token", &b), 0);
	p = secret_decrypt(b.b_data, b.b_len, "access_token");
	cr_assert_not_null(p);
	cr_assert_str_eq(p, "");
	secret_free(p, 0);
	buf_free(&a);
	buf_free(&b);
}

/* What a worker keeps after the fork: it can seal, never open. */
Test(secret, forget_private_keeps_sealing)
{
	struct buf	 a, b;
	char		*p;

	buf_init(&a);
	buf_init(&b);
	use_fixed_key(5);
	cr_assert_eq(secret_has_private(), 1);
	cr_assert_eq(secret_encrypt("before-forget", "client_secret", &a), 0);
	secret_forget_private();
	cr_assert_eq(secret_ready(), 1, "the public key stays");
	cr_assert_eq(secret_has_private(), 0);
	cr_assert_null(secret_decrypt(a.b_data, a.b_len, "client_secret"));
	cr_assert_eq(secret_encrypt("after-forget", "client_secret", &b), 0);
	cr_assert_eq(b.b_len, BLOB_OVERHEAD + strlen("after-forget"));
	cr_assert_null(secret_decrypt(b.b_data, b.b_len, "client_secret"));
	/* what it sealed opens where the private key is (the refresher) */
	use_fixed_key(5);
	p = secret_decrypt(b.b_data, b.b_len, "client_secret");
	cr_assert_not_null(p);
	cr_assert_str_eq(p, "after-forget");
	secret_free(p, 0);
	p = secret_decrypt(a.b_data, a.b_len, "client_secret");
	cr_assert_not_null(p);
	cr_assert_str_eq(p, "before-forget");
	secret_free(p, 0);
	/* forgetting everything: neither works */
	secret_forget();
	cr_assert_eq(secret_ready(), 0);
	cr_assert_eq(secret_encrypt("x", "client_secret", &b), -1);
	cr_assert_null(secret_decrypt(a.b_data, a.b_len, "client_secret"));
	buf_free(&a);
	buf_free(&b);
}

static void
read_key_file(const char *path, char *text, size_t sz)
{
	ssize_t	 n;
	int	 fd;

	cr_assert_neq(fd = open(path, O_RDONLY), -1);
	cr_assert_gt(n = read(fd, text, sz - 1), 0);
	text[n] = '\0';
	close(fd);
}

static void
write_key_file(const char *path, const char *text)
{
	int	 fd;

	cr_assert_neq(fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), -1);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

#define OLD_KEY	"00112233445566778899aabbccddeeff" \
		"00112233445566778899aabbccddeeff\n"

Test(secret, key_file_created_once_0600)
{
	char		 path[PATH_MAX], text[4096], again[4096];
	struct stat	 st;
	struct buf	 blob;
	char		*p;

	buf_init(&blob);
	cr_assert_eq(secret_key_path(dbpath, path, sizeof(path)), 0);
	cr_assert(strstr(path, "/qrelayd.key") != NULL);
	cr_assert_eq(secret_init(dbpath, 0), -1, "no file, no create");
	cr_assert_eq(secret_ready(), 0);
	cr_assert_eq(secret_init(dbpath, 1), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	read_key_file(path, text, sizeof(text));
	cr_assert(strncmp(text, "-----BEGIN PRIVATE KEY-----\n", 28) == 0,
	    "not a PEM private key: %.40s", text);
	cr_assert_eq(secret_has_private(), 1);
	cr_assert_eq(secret_encrypt("s3cret", "client_secret", &blob), 0);
	/* a second start reads the same key and leaves the file alone */
	secret_forget();
	cr_assert_eq(secret_init(dbpath, 1), 0);
	read_key_file(path, again, sizeof(again));
	cr_assert_str_eq(text, again);
	p = secret_decrypt(blob.b_data, blob.b_len, "client_secret");
	cr_assert_not_null(p);
	cr_assert_str_eq(p, "s3cret");
	secret_free(p, 0);
	/* a damaged file is refused, not replaced */
	write_key_file(path, "not a key\n");
	secret_forget();
	cr_assert_eq(secret_init(dbpath, 1), -1);
	cr_assert_eq(secret_ready(), 0);
	read_key_file(path, again, sizeof(again));
	cr_assert_str_eq(again, "not a key\n");
	/* a PEM key of another kind is refused too */
	write_key_file(path, "-----BEGIN PRIVATE KEY-----\n"
	    "MC4CAQAwBQYDK2VwBCIEII7o5KeIbguT7c5ey54qkgjn/Y3FoHUtekdRzek7jWt9\n"
	    "-----END PRIVATE KEY-----\n");	/* Ed25519 */
	cr_assert_eq(secret_init(dbpath, 1), -1);
	cr_assert_eq(secret_ready(), 0);
	buf_free(&blob);
}

/* The key file of version 1 (64 hex digits, an AES key). */
Test(secret, old_key_file_replaced_without_accounts)
{
	char		 path[PATH_MAX], text[4096];
	struct stat	 st;
	sqlite3		*db;

	cr_assert_eq(secret_key_path(dbpath, path, sizeof(path)), 0);
	/* no database at all */
	write_key_file(path, OLD_KEY);
	cr_assert_eq(secret_init(dbpath, 0), -1, "no create: no replace");
	read_key_file(path, text, sizeof(text));
	cr_assert_str_eq(text, OLD_KEY);
	cr_assert_eq(secret_init(dbpath, 1), 0);
	cr_assert_eq(secret_has_private(), 1);
	read_key_file(path, text, sizeof(text));
	cr_assert(strncmp(text, "-----BEGIN PRIVATE KEY-----", 27) == 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	/* a database with an empty accounts table */
	cr_assert_not_null(db = db_open(dbpath));
	cr_assert_eq(db_migrate(db), 0);
	write_key_file(path, OLD_KEY);
	secret_forget();
	cr_assert_eq(secret_init(dbpath, 1), 0);
	read_key_file(path, text, sizeof(text));
	cr_assert(strncmp(text, "-----BEGIN PRIVATE KEY-----", 27) == 0);
	db_close(db);
}

Test(secret, old_key_file_refused_with_accounts)
{
	char			 path[PATH_MAX], text[4096];
	struct db_account_new	 an = { .an_type = "social",
				    .an_label = "", .an_region = "",
				    .an_profile_arn = "",
				    .an_refresh_token = "rt-social-1234",
				    .an_enabled = 1 };
	sqlite3			*db;

	cr_assert_not_null(db = db_open(dbpath));
	cr_assert_eq(db_migrate(db), 0);
	cr_assert_eq(secret_init(dbpath, 1), 0);
	cr_assert_gt(db_account_add(db, &an), 0);
	cr_assert_eq(secret_key_path(dbpath, path, sizeof(path)), 0);
	write_key_file(path, OLD_KEY);
	secret_forget();
	cr_assert_eq(secret_init(dbpath, 1), -1);
	cr_assert_eq(secret_ready(), 0);
	read_key_file(path, text, sizeof(text));
	cr_assert_str_eq(text, OLD_KEY, "the old key was replaced");
	db_close(db);
}

Test(secret, memory_database_gets_a_key)
{
	cr_assert_eq(secret_init(":memory:", 0), 0);
	cr_assert_eq(secret_ready(), 1);
	cr_assert_eq(secret_has_private(), 1);
}

Test(secret, hints_show_little)
{
	char	 h[SECRET_HINT_MAX];

	secret_hint("aorAAAAxyzverylongtoken1234567890", h);
	cr_assert_str_eq(h, "aorAAA\xe2\x80\xa6");
	secret_hint("abcdefgh", h);		/* a quarter at most */
	cr_assert_str_eq(h, "ab\xe2\x80\xa6");
	secret_hint("abc", h);
	cr_assert_str_eq(h, "\xe2\x80\xa6");
	secret_hint("ab\tcdefghijklmnop", h);	/* ASCII only */
	cr_assert_str_eq(h, "ab*c\xe2\x80\xa6");
}

/* ---- the account rows ---- */

static sqlite3 *
open_db(void)
{
	sqlite3	*db;

	cr_assert_not_null(db = db_open(dbpath));
	cr_assert_eq(db_migrate(db), 0);
	cr_assert_eq(secret_init(dbpath, 1), 0);
	return db;
}

/* 1 when needle occurs in any column of any accounts row. */
static int
db_contains(sqlite3 *db, const char *needle)
{
	sqlite3_stmt	*st;
	int		 i, found = 0;

	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT * FROM accounts", -1, &st,
	    NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		for (i = 0; i < sqlite3_column_count(st); i++)
			if (sqlite3_column_bytes(st, i) > 0 &&
			    memmem(sqlite3_column_blob(st, i),
			    (size_t)sqlite3_column_bytes(st, i), needle,
			    strlen(needle)) != NULL)
				found = 1;
	sqlite3_finalize(st);
	return found;
}

Test(secret, account_rows_hold_no_plaintext)
{
	sqlite3				*db = open_db();
	struct db_account_new		 an = { .an_type = "idc",
					    .an_label = "work",
					    .an_region = "eu-west-1",
					    .an_profile_arn = "",
					    .an_client_id = "client-id-1",
					    .an_client_secret =
					    "client-SECRET-1234567890",
					    .an_refresh_token =
					    "aorAAAA-REFRESH-abcdefghijkl",
					    .an_enabled = 1 };
	struct db_account		 a;
	struct db_account_secrets	 as;
	int64_t				 id;

	cr_assert_gt(id = db_account_add(db, &an), 0);
	cr_assert_eq(db_contains(db, "REFRESH-abc"), 0);
	cr_assert_eq(db_contains(db, "SECRET-123"), 0);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_str_eq(a.a_type, "idc");
	cr_assert_str_eq(a.a_region, "eu-west-1");
	cr_assert_str_eq(a.a_client_id, "client-id-1");
	cr_assert_str_eq(a.a_refresh_hint, "aorAAA\xe2\x80\xa6");
	cr_assert_str_eq(a.a_secret_hint, "client\xe2\x80\xa6");
	cr_assert_eq(a.a_enabled, 1);
	cr_assert_eq(a.a_expires, 0);

	cr_assert_eq(db_account_secrets(db, id, &as), 1);
	cr_assert_str_eq(as.as_refresh_token, "aorAAAA-REFRESH-abcdefghijkl");
	cr_assert_str_eq(as.as_client_secret, "client-SECRET-1234567890");
	db_account_secrets_free(&as);

	/* renewed without a new refresh token: the old one stays */
	cr_assert_eq(db_account_refreshed(db, id, "ACCESS-one-xyz", 2000000000,
	    NULL, ""), 1);
	cr_assert_eq(db_contains(db, "ACCESS-one"), 0);
	cr_assert_eq(db_account_secrets(db, id, &as), 1);
	cr_assert_str_eq(as.as_refresh_token, "aorAAAA-REFRESH-abcdefghijkl");
	db_account_secrets_free(&as);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_eq(a.a_expires, 2000000000);
	cr_assert_gt(a.a_last_refresh, 0);

	/* rotated: the new one replaces it, hint too */
	cr_assert_eq(db_account_refreshed(db, id, "ACCESS-two", 2000000001,
	    "zzrNEW-REFRESH-token-0000", "arn:x"), 1);
	cr_assert_eq(db_account_secrets(db, id, &as), 1);
	cr_assert_str_eq(as.as_refresh_token, "zzrNEW-REFRESH-token-0000");
	db_account_secrets_free(&as);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_str_eq(a.a_refresh_hint, "zzrNEW\xe2\x80\xa6");
	cr_assert_str_eq(a.a_profile_arn, "arn:x");

	/* the stored access token is loaded into a new slot */
	{
		struct shm		 s;
		struct pool_pick	 pp;

		cr_assert_eq(shm_create(&s, 4, 4), 0);
		cr_assert_eq(db_accounts_load_shm(db, &s), 0);
		cr_assert_eq(pool_pick(&s, &pp, 0, NULL, 0), 0);
		cr_assert_str_eq(pp.pp_token, "ACCESS-two");
		cr_assert_eq(pp.pp_id, id);
		/* revoked: disabled with the reason, out of the pool */
		cr_assert_eq(db_account_refresh_failed(db, id, 1, "revoked"), 1);
		cr_assert_eq(db_accounts_load_shm(db, &s), 0);
		cr_assert_eq(pool_pick(&s, &pp, 0, NULL, 0), -1);
		cr_assert_eq(db_account_get(db, id, &a), 1);
		cr_assert_eq(a.a_enabled, 0);
		cr_assert_str_eq(a.a_state, "disabled");
		cr_assert_str_eq(a.a_last_error, "revoked");
		/* enabling clears the reason */
		{
			struct db_account_patch	 ap;

			db_account_patch_init(&ap);
			ap.ap_enabled = 1;
			ap.ap_label = "relabelled";
			cr_assert_eq(db_account_update(db, id, &ap), 1);
		}
		cr_assert_eq(db_account_get(db, id, &a), 1);
		cr_assert_eq(a.a_enabled, 1);
		cr_assert_str_eq(a.a_last_error, "");
		cr_assert_str_eq(a.a_label, "relabelled");
		/* deleted: gone from the table at the next load */
		cr_assert_eq(db_account_delete(db, id), 1);
		cr_assert_eq(db_account_delete(db, id), 0);
		cr_assert_eq(db_accounts_load_shm(db, &s), 0);
		cr_assert_eq(shm_acct_find(&s, id), -1);
		shm_destroy(&s);
	}
	db_close(db);
}

Test(secret, account_add_validates)
{
	sqlite3			*db = open_db();
	struct db_account_new	 an = { .an_type = "social",
				    .an_label = "", .an_region = "",
				    .an_profile_arn = "",
				    .an_refresh_token = "rt-social-1234",
				    .an_enabled = 1 };
	struct db_account_secrets as;
	int64_t			 id;

	cr_assert_gt(id = db_account_add(db, &an), 0);
	cr_assert_eq(db_account_secrets(db, id, &as), 1);
	cr_assert_null(as.as_client_secret);
	db_account_secrets_free(&as);
	an.an_type = "other";
	cr_assert_eq(db_account_add(db, &an), -1);
	an.an_type = "idc";	/* no client id / secret */
	cr_assert_eq(db_account_add(db, &an), -1);
	an.an_type = "social";
	an.an_refresh_token = "";
	cr_assert_eq(db_account_add(db, &an), -1);
	an.an_refresh_token = "rt";
	an.an_region = "us-east-1.evil.com/";
	cr_assert_eq(db_account_add(db, &an), -1);
	an.an_region = "";
	an.an_label = "tab\there";
	cr_assert_eq(db_account_add(db, &an), -1);
	/* a row whose blob another key made is unreadable, not garbage */
	use_fixed_key(9);
	cr_assert_eq(db_account_secrets(db, id, &as), -1);
	cr_assert_null(as.as_refresh_token);
	db_close(db);
}

/* A worker after secret_forget_private: POST /v2/accounts still stores
 * an account, nothing it could reach opens a secret, nothing crashes. */
Test(secret, worker_stores_but_cannot_read)
{
	sqlite3				*db = open_db();
	struct db_account_new		 an = { .an_type = "idc",
					    .an_label = "w", .an_region = "",
					    .an_profile_arn = "",
					    .an_client_id = "cid",
					    .an_client_secret =
					    "client-SECRET-worker-0000",
					    .an_refresh_token =
					    "aorAAAA-REFRESH-worker-0000",
					    .an_enabled = 1 };
	struct db_account_secrets	 as;
	struct shm			 s;
	struct pool_pick		 pp;
	int64_t				 id, id2;

	cr_assert_gt(id = db_account_add(db, &an), 0);
	cr_assert_eq(db_account_refreshed(db, id, "ACCESS-worker", 2000000000,
	    NULL, ""), 1);
	secret_forget_private();
	an.an_refresh_token = "aorAAAA-REFRESH-worker-0001";
	cr_assert_gt(id2 = db_account_add(db, &an), id, "sealing still works");
	cr_assert_eq(db_contains(db, "REFRESH-worker"), 0);
	cr_assert_eq(db_account_secrets(db, id, &as), -1);
	cr_assert_null(as.as_refresh_token);
	cr_assert_null(as.as_client_secret);
	cr_assert_eq(db_account_secrets(db, id2, &as), -1);
	/* the access token stays shut too: the account is loaded bare */
	cr_assert_eq(shm_create(&s, 4, 4), 0);
	cr_assert_eq(db_accounts_load_shm(db, &s), 0);
	cr_assert_neq(shm_acct_find(&s, id), -1);
	cr_assert_eq(pool_pick(&s, &pp, 0, NULL, 0), -1, "no usable token");
	shm_destroy(&s);
	/* the key file's private key opens both rows */
	secret_forget();
	cr_assert_eq(secret_init(dbpath, 0), 0);
	cr_assert_eq(db_account_secrets(db, id2, &as), 1);
	cr_assert_str_eq(as.as_refresh_token, "aorAAAA-REFRESH-worker-0001");
	cr_assert_str_eq(as.as_client_secret, "client-SECRET-worker-0000");
	db_account_secrets_free(&as);
	db_close(db);
}

Test(secret, endpoint_for_region)
{
	char	 out[256];

	oidc_endpoint_for("https://oidc.us-east-1.amazonaws.com", "us-east-1",
	    "eu-west-1", out, sizeof(out));
	cr_assert_str_eq(out, "https://oidc.eu-west-1.amazonaws.com");
	oidc_endpoint_for("https://oidc.us-east-1.amazonaws.com", "us-east-1",
	    "", out, sizeof(out));
	cr_assert_str_eq(out, "https://oidc.us-east-1.amazonaws.com");
	oidc_endpoint_for("http://127.0.0.1:4444", "us-east-1", "eu-west-1",
	    out, sizeof(out));
	cr_assert_str_eq(out, "http://127.0.0.1:4444");
}

Test(secret, refresh_answers)
{
	struct auth_tokens	 at;
	struct buf		 b;

	buf_init(&b);
	memset(&at, 0, sizeof(at));
	buf_puts(&b, "{\"accessToken\":\"AT1\",\"expiresIn\":100}");
	cr_assert_eq(oidc_parse_answer(200, &b, "RT", &at), AUTH_OK);
	cr_assert_str_eq(at.at_access, "AT1");
	cr_assert_null(at.at_refresh, "kept: no new refresh token");
	cr_assert_geq(at.at_expires, now_wall() + 99);
	oidc_tokens_free(&at);

	buf_reset(&b);
	buf_puts(&b, "{\"accessToken\":\"AT2\",\"refreshToken\":\"RT2\","
	    "\"profileArn\":\"arn:p\"}");
	cr_assert_eq(oidc_parse_answer(200, &b, "RT", &at), AUTH_OK);
	cr_assert_str_eq(at.at_refresh, "RT2");
	cr_assert_str_eq(at.at_profile_arn, "arn:p");
	cr_assert_geq(at.at_expires, now_wall() + 3599, "default lifetime");
	oidc_tokens_free(&at);

	buf_reset(&b);
	buf_puts(&b, "{\"error\":\"invalid_grant\",\"error_description\":"
	    "\"Invalid refresh token provided\"}");
	cr_assert_eq(oidc_parse_answer(400, &b, "RT", &at), AUTH_REVOKED);
	cr_assert(strstr(at.at_error, "invalid_grant") != NULL, "%s",
	    at.at_error);

	buf_reset(&b);
	buf_puts(&b, "{\"__type\":\"com.amazonaws#InvalidClientException\"}");
	memset(&at, 0, sizeof(at));
	cr_assert_eq(oidc_parse_answer(401, &b, "RT", &at), AUTH_REVOKED);

	buf_reset(&b);
	buf_puts(&b, "{\"error\":\"server_error\",\"error_description\":"
	    "\"bad RT-SECRET-VALUE\"}");
	memset(&at, 0, sizeof(at));
	cr_assert_eq(oidc_parse_answer(500, &b, "RT-SECRET-VALUE", &at),
	    AUTH_FAILED);
	cr_assert_null(strstr(at.at_error, "RT-SECRET"), "secret quoted: %s",
	    at.at_error);

	buf_reset(&b);
	buf_puts(&b, "{\"expiresIn\":100}");
	memset(&at, 0, sizeof(at));
	cr_assert_eq(oidc_parse_answer(200, &b, "RT", &at), AUTH_FAILED);
	cr_assert_null(at.at_access);
	buf_free(&b);
}
