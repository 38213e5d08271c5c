/*
 * test_db.c - db.c: migrations, file modes, settings, keys, the admin
 * password and the request log queries, on a database in a temporary
 * directory.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static char	 tdir[64];
static char	 tpath[PATH_MAX];

static void
setup(void)
{
	strlcpy_qr(tdir, "/tmp/qr-test-db.XXXXXX", sizeof(tdir));
	cr_assert_not_null(mkdtemp(tdir));
	snprintf(tpath, sizeof(tpath), "%s/sub/dir/q.db", tdir);
	unsetenv("QRELAYD_ADMIN_PASSWORD");
}

static void
teardown(void)
{
	char	 cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", tdir);
}

TestSuite(db, .init = setup, .fini = teardown);

static sqlite3 *
open_migrated(void)
{
	sqlite3	*db;

	cr_assert_not_null(db = db_open(tpath));
	cr_assert_eq(db_migrate(db), 0);
	return db;
}

static int64_t
count_rows(sqlite3 *db, const char *sql)
{
	sqlite3_stmt	*st;
	int64_t		 n;

	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
	    "%s", sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

Test(db, migrations_idempotent)
{
	static const char *tables[] = { "accounts", "api_keys", "settings",
	    "request_logs", "blocked_ips", "admin_sessions", "schema_version" };
	sqlite3		*db = open_migrated();
	sqlite3_stmt	*st;
	size_t		 i;

	cr_assert_eq(db_migrate(db), 0);
	db_close(db);
	db = open_migrated();
	/* every migration once, however often db_migrate runs */
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM schema_version"), 3);
	cr_assert_eq(count_rows(db, "SELECT MAX(version) FROM schema_version"),
	    3);
	for (i = 0; i < nitems(tables); i++) {
		cr_assert_eq(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM "
		    "sqlite_master WHERE type = 'table' AND name = ?", -1, &st,
		    NULL), SQLITE_OK);
		sqlite3_bind_text(st, 1, tables[i], -1, SQLITE_STATIC);
		cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
		cr_assert_eq(sqlite3_column_int(st, 0), 1, "no table %s",
		    tables[i]);
		sqlite3_finalize(st);
	}
	cr_assert_eq(count_rows(db, "PRAGMA foreign_keys"), 1);
	db_close(db);
}

Test(db, newer_schema_refused)
{
	sqlite3	*db = open_migrated();

	cr_assert_eq(sqlite3_exec(db, "INSERT INTO schema_version VALUES "
	    "(999, 0)", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(db_migrate(db), -1);
	/* the failed attempt left no transaction open */
	cr_assert(sqlite3_get_autocommit(db));
	db_close(db);
}

static mode_t
mode_of(const char *path)
{
	struct stat	 sb;

	cr_assert_eq(stat(path, &sb), 0, "stat %s", path);
	return sb.st_mode & 07777;
}

Test(db, file_modes)
{
	char		 p[PATH_MAX + 8];
	sqlite3		*db;
	mode_t		 old;

	umask(022);
	db = open_migrated();
	cr_assert_eq(umask(022), 022, "umask not restored");
	cr_assert_eq(db_setting_set(db, "x", "y"), 0);
	cr_assert_eq(mode_of(tpath), 0600);
	snprintf(p, sizeof(p), "%s-wal", tpath);
	cr_assert_eq(mode_of(p), 0600);
	snprintf(p, sizeof(p), "%s-shm", tpath);
	cr_assert_eq(mode_of(p), 0600);
	snprintf(p, sizeof(p), "%s/sub/dir", tdir);
	cr_assert_eq(mode_of(p), 0700);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM pragma_journal_mode"
	    " WHERE journal_mode = 'wal'"), 1);
	db_close(db);

	/* a file left 0644 by someone else is tightened on open */
	cr_assert_eq(chmod(tpath, 0644), 0);
	old = umask(022);
	cr_assert_not_null(db = db_open(tpath));
	umask(old);
	cr_assert_eq(mode_of(tpath), 0600);
	db_close(db);
}

Test(db, open_fails_cleanly)
{
	/* a directory where the file should be */
	snprintf(tpath, sizeof(tpath), "%s", tdir);
	cr_assert_null(db_open(tpath));
}

Test(db, settings)
{
	static const char *defs[][2] = {
		{ "apiKey", "" }, { "debugLog", "false" },
		{ "enableRequestLog", "true" }, { "logRetentionDays", "30" },
		{ "enableIPRateLimit", "false" }, { "ipRateLimitWindow", "1" },
		{ "ipRateLimitMax", "100" },
	};
	sqlite3	*db = open_migrated();
	char	 v[64], small[4];
	size_t	 i;

	for (i = 0; i < nitems(defs); i++) {
		cr_assert_eq(db_setting_get(db, defs[i][0], v, sizeof(v)), 1,
		    "%s missing", defs[i][0]);
		cr_assert_str_eq(v, defs[i][1]);
	}
	cr_assert_eq(db_setting_get(db, "nosuch", v, sizeof(v)), 0);
	cr_assert_eq(db_setting_set(db, "logRetentionDays", "7"), 0);
	cr_assert_eq(db_setting_get(db, "logRetentionDays", v, sizeof(v)), 1);
	cr_assert_str_eq(v, "7");
	/* a value that does not fit is an error, never a truncation */
	cr_assert_eq(db_setting_set(db, "long", "12345"), 0);
	cr_assert_eq(db_setting_get(db, "long", small, sizeof(small)), -1);
	/* quotes are data, not SQL */
	cr_assert_eq(db_setting_set(db, "q'x", "a'); DROP TABLE settings;--"),
	    0);
	cr_assert_eq(db_setting_get(db, "q'x", v, sizeof(v)), 1);
	cr_assert_str_eq(v, "a'); DROP TABLE settings;--");
	db_close(db);

	/* defaults are not reinserted over changed values */
	db = open_migrated();
	cr_assert_eq(db_setting_get(db, "logRetentionDays", v, sizeof(v)), 1);
	cr_assert_str_eq(v, "7");
	db_close(db);
}

struct keys_seen {
	int		 n;
	struct db_key	 k[8];
};

static int
collect_key(const struct db_key *k, void *arg)
{
	struct keys_seen	*ks = arg;

	cr_assert_lt(ks->n, 8);
	ks->k[ks->n++] = *k;
	return 0;
}

static int
stop_key(const struct db_key *k, void *arg)
{
	(*(int *)arg)++;
	return 7;
}

Test(db, keys)
{
	sqlite3			*db = open_migrated();
	unsigned char		 h1[32], h2[32];
	struct keys_seen	 ks;
	int64_t			 id1, id2, id3;
	int			 calls = 0;

	memset(h1, 0x11, sizeof(h1));
	memset(h2, 0x22, sizeof(h2));
	cr_assert_gt(id1 = db_key_add(db, "ci", h1, "sk-qr-aaaaaa"), 0);
	cr_assert_gt(id2 = db_key_add(db, "laptop", h2, "sk-qr-bbbbbb"), id1);
	/* the hash is unique */
	cr_assert_eq(db_key_add(db, "dup", h1, "sk-qr-aaaaaa"), -1);
	/* names are printed tab separated: no control characters */
	h1[0] = 0x99;
	cr_assert_eq(db_key_add(db, "a\tb", h1, "p"), -1);
	cr_assert_eq(db_key_add(db, "", h1, "p"), -1);

	memset(&ks, 0, sizeof(ks));
	cr_assert_eq(db_key_list(db, collect_key, &ks), 0);
	cr_assert_eq(ks.n, 2);
	cr_assert_eq(ks.k[0].k_id, id1);
	cr_assert_str_eq(ks.k[0].k_name, "ci");
	cr_assert_str_eq(ks.k[0].k_prefix, "sk-qr-aaaaaa");
	cr_assert_eq(ks.k[0].k_hash[5], 0x11);
	cr_assert_gt(ks.k[0].k_created, 0);
	cr_assert_eq(ks.k[0].k_last_used, 0);
	cr_assert_str_eq(ks.k[1].k_name, "laptop");
	cr_assert_eq(ks.k[1].k_hash[0], 0x22);

	cr_assert_eq(db_key_list(db, stop_key, &calls), 7);
	cr_assert_eq(calls, 1);

	cr_assert_eq(db_key_delete(db, id1), 1);
	cr_assert_eq(db_key_delete(db, id1), 0);
	memset(&ks, 0, sizeof(ks));
	cr_assert_eq(db_key_list(db, collect_key, &ks), 0);
	cr_assert_eq(ks.n, 1);
	cr_assert_eq(ks.k[0].k_id, id2);

	/* ids are never reused, even for the highest one */
	cr_assert_eq(db_key_delete(db, id2), 1);
	cr_assert_gt(id3 = db_key_add(db, "new", h2, "sk-qr-cccccc"), id2);
	db_close(db);
}

Test(db, keys_load_shm)
{
	sqlite3		*db = open_migrated();
	struct shm	 s;
	unsigned char	 h[3][32];
	int64_t		 id[3];
	int		 i;

	cr_assert_eq(shm_create(&s, 4, 2), 0);
	for (i = 0; i < 2; i++) {
		memset(h[i], 'a' + i, 32);
		cr_assert_gt(id[i] = db_key_add(db, "k", h[i], "sk-qr-x"), 0);
	}
	cr_assert_eq(db_keys_load_shm(db, &s), 0);
	cr_assert_eq(shm_key_lookup(&s, h[0]), id[0]);
	cr_assert_eq(shm_key_lookup(&s, h[1]), id[1]);

	/* a key deleted from the database goes from the table on reload */
	cr_assert_eq(db_key_delete(db, id[0]), 1);
	cr_assert_eq(db_keys_load_shm(db, &s), 0);
	cr_assert_eq(shm_key_lookup(&s, h[0]), -1);
	cr_assert_eq(shm_key_lookup(&s, h[1]), id[1]);

	/* more keys than slots: an error, but the ones that fit work */
	memset(h[2], 'z', 32);
	cr_assert_gt(id[2] = db_key_add(db, "k", h[2], "sk-qr-x"), 0);
	memset(h[0], 'y', 32);
	cr_assert_gt(id[0] = db_key_add(db, "k", h[0], "sk-qr-x"), 0);
	cr_assert_eq(db_keys_load_shm(db, &s), -1);
	cr_assert_eq(shm_key_lookup(&s, h[1]), id[1]);
	cr_assert_eq(shm_key_lookup(&s, h[2]), id[2]);
	shm_destroy(&s);
	db_close(db);
}

/*
 * A reload (SIGUSR2, qrelayctl key add) rebuilds the key slots while
 * workers look keys up: a key that is in the database before and after
 * must never be missing in between, or its client gets a 401.
 */
#define RELOAD_KEYS	200
#define RELOADS		300
#define RACE_KEYS	1000

/* A child that reloads the key slots RELOADS times from its own
 * connection, as the master does on SIGUSR2; exits 0 when all went. */
static pid_t
fork_reloader(struct shm *s)
{
	pid_t	 pid;
	int	 i;

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		sqlite3	*cdb = db_open(tpath);
		int	 rv = cdb != NULL ? 0 : 2;

		for (i = 0; i < RELOADS && rv == 0; i++)
			if (db_keys_load_shm(cdb, s) == -1)
				rv = 1;
		db_close(cdb);	/* valgrind counts what the child leaks */
		_exit(rv);
	}
	return pid;
}

Test(db, keys_reload_never_drops_live_key)
{
	sqlite3		*db = open_migrated();
	struct shm	 s;
	unsigned char	 h[32];
	int64_t		 id = -1, got;
	long		 lookups = 0, misses = 0;
	pid_t		 pid;
	int		 i, st, done;

	cr_assert_eq(shm_create(&s, 4, RELOAD_KEYS), 0);
	for (i = 0; i < RELOAD_KEYS; i++) {
		memset(h, 0, sizeof(h));
		memcpy(h, &i, sizeof(i));
		h[31] = 0x5a;
		cr_assert_gt(id = db_key_add(db, "k", h, "sk-qr-x"), 0);
	}
	/* h and id: the last key, in the slot filled last */
	cr_assert_eq(db_keys_load_shm(db, &s), 0);
	cr_assert_eq(shm_key_lookup(&s, h), id);

	pid = fork_reloader(&s);
	do {
		done = waitpid(pid, &st, WNOHANG) == pid;
		got = shm_key_lookup(&s, h);
		lookups++;
		if (got != id)
			misses++;
	} while (!done);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_expect_eq(misses, 0, "a live key was missing in %ld of %ld lookups "
	    "during reloads", misses, lookups);
	cr_assert_eq(shm_key_lookup(&s, h), id);
	shm_destroy(&s);
	db_close(db);
}

/*
 * A worker adds or deletes a key (database, then slot) while a reload
 * runs: the reload must not undo it with its older view of the table,
 * neither dropping a key just added nor bringing back a key just deleted.
 */
Test(db, keys_reload_keeps_concurrent_add_delete)
{
	sqlite3		*db = open_migrated();
	struct shm	 s;
	unsigned char	 h[32];
	int64_t		 id;
	long		 cycles = 0, missing = 0, stale = 0;
	pid_t		 pid;
	int		 i, st;

	cr_assert_eq(shm_create(&s, 4, 2 * RACE_KEYS), 0);
	for (i = 0; i < RACE_KEYS; i++) {
		memset(h, 0, sizeof(h));
		memcpy(h, &i, sizeof(i));
		cr_assert_gt(db_key_add(db, "k", h, "sk-qr-x"), 0);
	}
	cr_assert_eq(db_keys_load_shm(db, &s), 0);
	pid = fork_reloader(&s);
	for (i = 0; waitpid(pid, &st, WNOHANG) != pid; i++) {
		/* what admin_keys_add and admin_keys_delete do */
		memset(h, 0xee, sizeof(h));
		memcpy(h, &i, sizeof(i));
		cr_assert_gt(id = db_key_add(db, "x", h, "sk-qr-y"), 0);
		cr_assert_eq(shm_key_add(&s, id, h, "sk-qr-y"), 0);
		if (shm_key_lookup(&s, h) != id)
			missing++;
		cr_assert_eq(db_key_delete(db, id), 1);
		(void)shm_key_remove(&s, id);
		cycles++;
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (i = 0; i < 2 * RACE_KEYS; i++)
		if (s.shm_keys[i].sk_used && s.shm_keys[i].sk_id > RACE_KEYS)
			stale++;
	cr_expect_eq(missing, 0, "a key just added was missing %ld times in "
	    "%ld cycles", missing, cycles);
	cr_expect_eq(stale, 0, "%ld deleted keys still valid", stale);
	shm_destroy(&s);
	db_close(db);
}

static void
stored_hash(sqlite3 *db, char *out, size_t outsz)
{
	cr_assert_eq(db_setting_get(db, AUTH_PASSWORD_SETTING, out, outsz), 1);
	cr_assert(strncmp(out, "$y$", 3) == 0, "not yescrypt: %.3s", out);
}

Test(db, admin_password_generated_once)
{
	sqlite3	*db = open_migrated();
	char	 h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
	char	 out[PATH_MAX + 8], text[2048], *p, pw[64];
	FILE	*fp;
	int	 fd, saved;
	size_t	 n;

	cr_assert_eq(db_setting_get(db, AUTH_PASSWORD_SETTING, h1,
	    sizeof(h1)), 0);
	/* catch what goes to stderr */
	snprintf(out, sizeof(out), "%s/stderr", tdir);
	cr_assert_geq(fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600), 0);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	cr_assert_eq(db_ensure_admin_password(db, 1), 0);
	cr_assert_eq(db_ensure_admin_password(db, 1), 0);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);

	stored_hash(db, h1, sizeof(h1));
	cr_assert_eq(db_ensure_admin_password(db, 0), 0);
	stored_hash(db, h2, sizeof(h2));
	cr_assert_str_eq(h1, h2, "the password changed on the second call");

	cr_assert_not_null(fp = fopen(out, "r"));
	n = fread(text, 1, sizeof(text) - 1, fp);
	fclose(fp);
	text[n] = '\0';
	cr_assert_not_null(p = strstr(text, "admin password: "));
	/* shown once only */
	cr_assert_null(strstr(p + 1, "admin password: "));
	cr_assert_eq(sscanf(p, "admin password: %63s", pw), 1);
	cr_assert_geq(strlen(pw), 16);
	/* what was shown is what was stored */
	cr_assert_eq(auth_password_verify(pw, h1), 1);
	cr_assert_eq(auth_password_verify("wrong", h1), 0);
	cr_assert_null(strstr(text, h1), "the hash was printed");
	db_close(db);
}

Test(db, admin_password_from_env)
{
	sqlite3	*db = open_migrated();
	char	 h[AUTH_HASH_MAX];

	setenv("QRELAYD_ADMIN_PASSWORD", "correct horse battery", 1);
	cr_assert_eq(db_ensure_admin_password(db, 1), 0);
	stored_hash(db, h, sizeof(h));
	cr_assert_eq(auth_password_verify("correct horse battery", h), 1);
	/* the environment only seeds the first start */
	setenv("QRELAYD_ADMIN_PASSWORD", "something else", 1);
	cr_assert_eq(db_ensure_admin_password(db, 1), 0);
	stored_hash(db, h, sizeof(h));
	cr_assert_eq(auth_password_verify("correct horse battery", h), 1);
	db_close(db);
}

Test(db, admin_password_set_ends_sessions)
{
	sqlite3	*db = open_migrated();
	char	 tok[128], h[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
	int64_t	 exp;

	cr_assert_eq(auth_session_create(db, "127.0.0.1", tok, sizeof(tok),
	    &exp), 0);
	cr_assert_eq(auth_session_check(db, tok, strlen(tok)), 1);
	cr_assert_eq(auth_password_hash("new password", h, sizeof(h)), 0);
	cr_assert_eq(db_admin_password_set(db, h), 0);
	cr_assert_eq(auth_session_check(db, tok, strlen(tok)), 0);
	stored_hash(db, h2, sizeof(h2));
	cr_assert_str_eq(h, h2);
	db_close(db);
}

static int
collect_acct(const struct db_account *a, void *arg)
{
	struct db_account	*out = arg;

	*out = *a;
	return 0;
}

Test(db, accounts_list)
{
	sqlite3			*db = open_migrated();
	struct db_account	 a;

	memset(&a, 0, sizeof(a));
	cr_assert_eq(db_account_list(db, collect_acct, &a), 0);
	cr_assert_eq(a.a_id, 0);
	cr_assert_eq(sqlite3_exec(db, "INSERT INTO accounts (type, label,"
	    " state, access_token_expires, last_error, created_at, updated_at,"
	    " refresh_token_enc) VALUES ('idc', 'work', 'cooldown', 1700000000,"
	    " 'throttled', 1, 1, x'0102')", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_neq(sqlite3_exec(db, "INSERT INTO accounts (type, created_at,"
	    " updated_at) VALUES ('other', 1, 1)", NULL, NULL, NULL), SQLITE_OK,
	    "type CHECK missing");
	cr_assert_eq(db_account_list(db, collect_acct, &a), 0);
	cr_assert_gt(a.a_id, 0);
	cr_assert_str_eq(a.a_type, "idc");
	cr_assert_str_eq(a.a_label, "work");
	cr_assert_str_eq(a.a_state, "cooldown");
	cr_assert_eq(a.a_enabled, 1);
	cr_assert_eq(a.a_expires, 1700000000);
	cr_assert_str_eq(a.a_last_error, "throttled");
	db_close(db);
}

Test(db, logs_insert_prune_count)
{
	sqlite3		*db = open_migrated();
	struct log_rec	 lr[3];
	char		 err[128];
	int		 i;

	memset(lr, 0, sizeof(lr));
	for (i = 0; i < 3; i++) {
		lr[i].lr_time_ms = (int64_t)now_wall() * 1000;
		lr[i].lr_status = 200;
		strlcpy_qr(lr[i].lr_method, "GET", sizeof(lr[i].lr_method));
		strlcpy_qr(lr[i].lr_path, "/healthz", sizeof(lr[i].lr_path));
		strlcpy_qr(lr[i].lr_client_ip, "127.0.0.1",
		    sizeof(lr[i].lr_client_ip));
		lr[i].lr_pid = 42;
	}
	lr[1].lr_time_ms -= 31LL * 86400 * 1000;	/* older than 30 days */
	lr[2].lr_key_id = 5;
	strlcpy_qr(lr[2].lr_model, "claude", sizeof(lr[2].lr_model));
	cr_assert_eq(db_logs_insert_batch(db, lr, 3, err, sizeof(err)), 0);
	cr_assert_eq(db_logs_count(db), 3);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM request_logs"
	    " WHERE key_id = 5 AND model = 'claude'"), 1);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM request_logs"
	    " WHERE key_id IS NULL AND model IS NULL"), 2);
	cr_assert_eq(db_logs_prune(db, 0), 0, "0 days must keep everything");
	cr_assert_eq(db_logs_prune(db, 30), 1);
	cr_assert_eq(db_logs_count(db), 2);

	/* a failing batch is all or nothing, and says why */
	cr_assert_eq(sqlite3_exec(db, "CREATE TRIGGER boom BEFORE INSERT ON"
	    " request_logs WHEN NEW.pid = 13 BEGIN SELECT RAISE(ABORT,"
	    " 'boom'); END", NULL, NULL, NULL), SQLITE_OK);
	lr[2].lr_pid = 13;
	err[0] = '\0';
	cr_assert_eq(db_logs_insert_batch(db, lr, 3, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "boom");
	cr_assert_eq(db_logs_count(db), 2);
	cr_assert(sqlite3_get_autocommit(db));
	db_close(db);
}

/* ---- the pool: migration 3, parse, import, export, health, settings ---- */

static void
test_key(void)
{
	unsigned char	 k[SECRET_KEY_LEN];
	size_t		 i;

	for (i = 0; i < sizeof(k); i++)
		k[i] = (unsigned char)(i * 7 + 1);
	cr_assert_eq(secret_set_key(k), 0);
}

static int64_t
add_social(sqlite3 *db, const char *rt, const char *label)
{
	struct db_account_new	 an;

	memset(&an, 0, sizeof(an));
	an.an_type = "social";
	an.an_label = label;
	an.an_refresh_token = rt;
	an.an_enabled = 1;
	return db_account_add(db, &an);
}

Test(db, migration3_on_old_database)
{
	sqlite3		*db = open_migrated();
	struct db_account a;
	int64_t		 id, id2;

	test_key();
	/* make it a database of migration 2, holding an account */
	cr_assert_eq(sqlite3_exec(db, "DROP INDEX accounts_refresh_hash;"
	    "ALTER TABLE accounts DROP COLUMN proxy;"
	    "ALTER TABLE accounts DROP COLUMN max_inflight;"
	    "ALTER TABLE accounts DROP COLUMN rpm;"
	    "ALTER TABLE accounts DROP COLUMN exhausted_until;"
	    "ALTER TABLE accounts DROP COLUMN usage_used;"
	    "ALTER TABLE accounts DROP COLUMN usage_limit;"
	    "ALTER TABLE accounts DROP COLUMN usage_reset;"
	    "ALTER TABLE accounts DROP COLUMN usage_checked;"
	    "ALTER TABLE accounts DROP COLUMN subscription;"
	    "ALTER TABLE accounts DROP COLUMN email;"
	    "ALTER TABLE accounts DROP COLUMN cooldown_until;"
	    "ALTER TABLE accounts DROP COLUMN refresh_hash;"
	    "DELETE FROM schema_version WHERE version = 3;"
	    "INSERT INTO accounts (type, label, created_at, updated_at)"
	    " VALUES ('social', 'old', 1, 1)", NULL, NULL, NULL), SQLITE_OK,
	    "%s", sqlite3_errmsg(db));
	cr_assert_eq(db_migrate(db), 0);
	cr_assert_eq(count_rows(db, "SELECT MAX(version) FROM schema_version"),
	    3);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM accounts WHERE"
	    " refresh_hash IS NULL AND proxy = '' AND max_inflight = 0 AND"
	    " rpm = 0 AND exhausted_until = 0 AND usage_limit = 0 AND"
	    " cooldown_until = 0"), 1);
	id = count_rows(db, "SELECT id FROM accounts");
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_str_eq(a.a_label, "old");
	cr_assert_str_eq(a.a_proxy, "");
	/* the old row's NULL hash does not collide with new ones */
	cr_assert_gt(id2 = add_social(db, "rt-new-0123456789", "n"), id);
	cr_assert_eq(add_social(db, "rt-new-0123456789", "again"), -1,
	    "UNIQUE hash missing");
	cr_assert_eq(db_account_find_refresh(db, "rt-new-0123456789"), id2);
	db_close(db);
	secret_forget();
}

Test(db, hash_backfill)
{
	sqlite3		*db = open_migrated();
	int64_t		 id, id2, id3;

	test_key();
	cr_assert_gt(id = add_social(db, "rt-back-0123456789", "b"), 0);
	cr_assert_eq(sqlite3_exec(db, "UPDATE accounts SET refresh_hash ="
	    " NULL", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(db_account_find_refresh(db, "rt-back-0123456789"), 0);
	cr_assert_eq(db_accounts_hash_backfill(db), 1);
	cr_assert_eq(db_account_find_refresh(db, "rt-back-0123456789"), id);
	cr_assert_eq(db_accounts_hash_backfill(db), 0);
	cr_assert(sqlite3_get_autocommit(db), "left in a transaction");

	/* two old rows with one token: the first gets the hash, the
	 * second stays without one, and the rest still commit */
	cr_assert_gt(id2 = add_social(db, "rt-twin-0123456789", "t"), id);
	cr_assert_gt(id3 = add_social(db, "rt-solo-0123456789", "s"), id2);
	cr_assert_eq(sqlite3_exec(db, "UPDATE accounts SET refresh_hash ="
	    " NULL", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "UPDATE accounts SET refresh_token_enc ="
	    " (SELECT refresh_token_enc FROM accounts WHERE label = 't')"
	    " WHERE label = 'b'", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(db_accounts_hash_backfill(db), 2);
	cr_assert(sqlite3_get_autocommit(db), "left in a transaction");
	cr_assert_eq(db_account_find_refresh(db, "rt-twin-0123456789"), id);
	cr_assert_eq(db_account_find_refresh(db, "rt-solo-0123456789"), id3);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM accounts WHERE"
	    " refresh_hash IS NULL"), 1);
	db_close(db);
	secret_forget();
}

/* secrets that the tests put in lines: never in an error message */
static const char *const parse_secrets[] = { "SECRETrt", "SECRETcs",
	"SECRETat", "hunter2" };

static void
assert_no_secret(const char *err, const char *line)
{
	size_t	 i;

	for (i = 0; i < nitems(parse_secrets); i++)
		cr_assert_null(strstr(err, parse_secrets[i]),
		    "error %s shows a secret of line %s", err, line);
}

static int
parse(const char *text, struct db_account_new *an, struct json_object **o,
    char *line, char *err, size_t errsz)
{
	strlcpy_qr(line, text, 4096);
	return db_account_parse(line, o, an, err, errsz);
}

Test(db, account_parse_good)
{
	struct db_account_new	 an;
	struct json_object	*o;
	char			 line[4096], err[256];

	/* a bare refresh token: social (an AWS token may hold one ':') */
	cr_assert_eq(parse("  aorSECRETrt:MGUC123 \r\n", &an, &o, line, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(an.an_type, "social");
	cr_assert_str_eq(an.an_refresh_token, "aorSECRETrt:MGUC123");
	cr_assert_eq(an.an_enabled, 1);
	json_object_put(o);

	/* clientId:clientSecret:refreshToken, the token with a colon */
	cr_assert_eq(parse("cid-1:SECRETcs:aorSECRETrt:MG", &an, &o, line,
	    err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(an.an_type, "idc");
	cr_assert_str_eq(an.an_client_id, "cid-1");
	cr_assert_str_eq(an.an_client_secret, "SECRETcs");
	cr_assert_str_eq(an.an_refresh_token, "aorSECRETrt:MG");
	json_object_put(o);

	/* the POST body / export entry */
	cr_assert_eq(parse("{\"type\":\"idc\",\"label\":\"w\",\"clientId\":"
	    "\"c\",\"clientSecret\":\"SECRETcs\",\"refreshToken\":\"SECRETrt\","
	    "\"region\":\"eu-west-1\",\"proxy\":\"socks5h://u:hunter2@"
	    "127.0.0.1:1080\",\"maxConcurrency\":3,\"rpm\":60,\"enabled\":"
	    "false,\"refreshTokenHint\":\"SEC\\u2026\"}", &an, &o, line, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_not_null(o);
	cr_assert_str_eq(an.an_type, "idc");
	cr_assert_str_eq(an.an_label, "w");
	cr_assert_str_eq(an.an_region, "eu-west-1");
	cr_assert_str_eq(an.an_proxy, "socks5h://u:hunter2@127.0.0.1:1080");
	cr_assert_eq(an.an_max_inflight, 3);
	cr_assert_eq(an.an_rpm, 60);
	cr_assert_eq(an.an_enabled, 0);
	json_object_put(o);

	/* the Kiro IDE credential file, social */
	cr_assert_eq(parse("{\"accessToken\":\"SECRETat\",\"refreshToken\":"
	    "\"SECRETrt\",\"expiresAt\":\"2099-01-02T03:04:05.000Z\","
	    "\"authMethod\":\"social\",\"provider\":\"Google\",\"profileArn\":"
	    "\"arn:aws:codewhisperer:us-east-1:699475941385:profile/X\","
	    "\"region\":\"us-east-1\"}", &an, &o, line, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_str_eq(an.an_type, "social");
	cr_assert_str_eq(an.an_access_token, "SECRETat");
	cr_assert_eq(an.an_expires, 4071006245LL);
	cr_assert_str_eq(an.an_profile_arn,
	    "arn:aws:codewhisperer:us-east-1:699475941385:profile/X");
	json_object_put(o);

	/* ... and its IdC form; an offset in expiresAt; expired tokens
	 * are not kept */
	cr_assert_eq(parse("{\"accessToken\":\"SECRETat\",\"refreshToken\":"
	    "\"SECRETrt\",\"expiresAt\":\"2099-01-02T05:04:05+02:00\","
	    "\"authMethod\":\"IdC\",\"provider\":\"BuilderId\",\"clientId\":"
	    "\"c\",\"clientSecret\":\"SECRETcs\"}", &an, &o, line, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(an.an_type, "idc");
	cr_assert_eq(an.an_expires, 4071006245LL);
	json_object_put(o);
	cr_assert_eq(parse("{\"accessToken\":\"SECRETat\",\"refreshToken\":"
	    "\"SECRETrt\",\"expiresAt\":\"2001-01-01T00:00:00Z\","
	    "\"authMethod\":\"builder-id\",\"clientId\":\"c\","
	    "\"clientSecret\":\"SECRETcs\"}", &an, &o, line, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_null(an.an_access_token, "an expired token kept");
	json_object_put(o);
}

Test(db, account_parse_bad)
{
	static const struct {
		const char	*line;
		const char	*word;
	} bad[] = {
		{ "", "empty" },
		{ "   \r\n", "empty" },
		{ "SECRETrt hunter2", "refresh token" },
		{ "\"SECRETrt\"", "refresh token" },
		{ "cid::SECRETrt", "empty" },
		{ ":SECRETcs:SECRETrt", "empty" },
		{ "{\"refreshToken\":\"SECRETrt\"", "invalid JSON" },
		{ "{\"refreshToken\":\"SECRETrt\",}", "invalid JSON" },
		{ "{\"type\":\"oidc\",\"refreshToken\":\"SECRETrt\"}", "type" },
		{ "{\"type\":\"social\"}", "refreshToken" },
		{ "{\"refreshTokenHint\":\"SEC\"}", "refreshToken" },
		{ "{\"refreshToken\":5}", "refreshToken" },
		{ "{\"type\":\"idc\",\"refreshToken\":\"SECRETrt\","
		    "\"clientId\":\"c\"}", "clientSecret" },
		{ "{\"authMethod\":\"IdC\",\"refreshToken\":\"SECRETrt\"}",
		    "clientId" },
		{ "{\"authMethod\":\"magic\",\"refreshToken\":\"SECRETrt\"}",
		    "authMethod" },
		{ "{\"type\":\"social\",\"refreshToken\":\"SECRETrt\","
		    "\"clientSecret\":\"SECRETcs\"}", "social" },
		{ "{\"refreshToken\":\"SECRETrt\",\"region\":\"a/b\"}",
		    "region" },
		{ "{\"refreshToken\":\"SECRETrt\",\"label\":\"a\\nb\"}",
		    "label" },
		{ "{\"refreshToken\":\"SECRETrt\",\"proxy\":\"ftp://u:hunter2@h"
		    ":1\"}", "proxy" },
		{ "{\"refreshToken\":\"SECRETrt\",\"proxy\":\"http://u:hunter2@"
		    "\"}", "proxy" },
		{ "{\"refreshToken\":\"SECRETrt\",\"proxy\":\"http://h:99999\"}",
		    "proxy" },
		{ "{\"refreshToken\":\"SECRETrt\",\"proxy\":\"http://u:***@h:1"
		    "\"}", "proxy" },
		{ "{\"refreshToken\":\"SECRETrt\",\"maxConcurrency\":-1}",
		    "maxConcurrency" },
		{ "{\"refreshToken\":\"SECRETrt\",\"rpm\":\"60\"}", "rpm" },
		{ "{\"refreshToken\":\"SECRETrt\",\"enabled\":1}", "enabled" },
	};
	struct db_account_new	 an;
	struct json_object	*o;
	char			 line[4096], err[256], *big;
	size_t			 i;

	for (i = 0; i < nitems(bad); i++) {
		err[0] = '\0';
		cr_assert_eq(parse(bad[i].line, &an, &o, line, err,
		    sizeof(err)), -1, "accepted %s", bad[i].line);
		cr_assert_not_null(strstr(err, bad[i].word),
		    "error for %s: %s (want %s)", bad[i].line, err,
		    bad[i].word);
		assert_no_secret(err, bad[i].line);
		json_object_put(o);
	}
	/* a refresh token over DB_ACCOUNT_SECRET_MAX */
	cr_assert_not_null(big = malloc(DB_ACCOUNT_SECRET_MAX + 16));
	memset(big, 'S', DB_ACCOUNT_SECRET_MAX + 1);
	big[DB_ACCOUNT_SECRET_MAX + 1] = '\0';
	cr_assert_eq(db_account_parse(big, &o, &an, err, sizeof(err)), -1);
	cr_assert_null(strstr(err, "SSSSSSSS"));
	json_object_put(o);
	free(big);
}

Test(db, proxy_check_and_mask)
{
	char	 m[SHM_PROXY_MAX];

	cr_assert(db_account_proxy_ok(""));
	cr_assert(db_account_proxy_ok("http://127.0.0.1:8080"));
	cr_assert(db_account_proxy_ok("https://proxy.example.com"));
	cr_assert(db_account_proxy_ok("socks5://u:p@[::1]:1080/"));
	cr_assert(db_account_proxy_ok("SOCKS5H://u@h:1"));
	cr_assert_not(db_account_proxy_ok("ftp://h:1"));
	cr_assert_not(db_account_proxy_ok("http://"));
	cr_assert_not(db_account_proxy_ok("http://u:p@"));
	cr_assert_not(db_account_proxy_ok("http://h:0"));
	cr_assert_not(db_account_proxy_ok("http://h:1/path"));
	cr_assert_not(db_account_proxy_ok("http://h h:1"));
	cr_assert_not(db_account_proxy_ok("h:1"));
	db_proxy_mask("socks5://user:hunter2@host:1080", m, sizeof(m));
	cr_assert_str_eq(m, "socks5://user:***@host:1080");
	db_proxy_mask("http://a:b:c@h:1", m, sizeof(m));
	cr_assert_str_eq(m, "http://a:***@h:1");
	db_proxy_mask("http://h:1", m, sizeof(m));
	cr_assert_str_eq(m, "http://h:1");
	db_proxy_mask("", m, sizeof(m));
	cr_assert_str_eq(m, "");
}

Test(db, account_add_update_health_usage)
{
	sqlite3			*db = open_migrated();
	struct db_account_new	 an;
	struct db_account_patch	 p;
	struct db_account	 a;
	int64_t			 id;

	test_key();
	memset(&an, 0, sizeof(an));
	an.an_type = "social";
	an.an_refresh_token = "rt-health-0123456789";
	an.an_enabled = 1;
	an.an_proxy = "http://u:pw@127.0.0.1:3128";
	an.an_max_inflight = 4;
	an.an_rpm = 30;
	an.an_access_token = "at-live";
	an.an_expires = now_wall() + 3000;
	cr_assert_gt(id = db_account_add(db, &an), 0);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_str_eq(a.a_proxy, "http://u:pw@127.0.0.1:3128");
	cr_assert_eq(a.a_max_inflight, 4);
	cr_assert_eq(a.a_rpm, 30);
	cr_assert_eq(a.a_expires, an.an_expires);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM accounts WHERE"
	    " access_token_enc IS NOT NULL AND length(refresh_hash) = 64"), 1);
	/* bad caps or proxy are refused by add */
	an.an_refresh_token = "rt-other";
	an.an_rpm = -1;
	cr_assert_eq(db_account_add(db, &an), -1);
	an.an_rpm = 0;
	an.an_proxy = "gopher://h:1";
	cr_assert_eq(db_account_add(db, &an), -1);

	/* health: suspended with a reason, exhausted until */
	cr_assert_eq(db_account_set_health(db, id, "suspended", 5000,
	    "TEMPORARILY_SUSPENDED"), 1);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_str_eq(a.a_state, "suspended");
	cr_assert_eq(a.a_exhausted_until, 5000);
	cr_assert_str_eq(a.a_last_error, "TEMPORARILY_SUSPENDED");
	cr_assert_eq(db_account_set_health(db, id, NULL, -1, NULL), 1);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_str_eq(a.a_state, "suspended", "NULL keeps");
	cr_assert_eq(a.a_exhausted_until, 5000, "-1 keeps");
	cr_assert_eq(db_account_set_health(db, id, "bogus", -1, NULL), -1);
	cr_assert_eq(db_account_set_health(db, 999, "enabled", -1, NULL), 0);

	/* usage */
	cr_assert_eq(db_account_set_usage(db, id, 1500, 50000, 7000,
	    "KIRO PRO+", "a@b.c"), 1);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_eq(a.a_usage_used, 1500);
	cr_assert_eq(a.a_usage_limit, 50000);
	cr_assert_eq(a.a_usage_reset, 7000);
	cr_assert_geq(a.a_usage_checked, now_wall() - 5);
	cr_assert_str_eq(a.a_subscription, "KIRO PRO+");
	cr_assert_str_eq(a.a_email, "a@b.c");

	/* a patch: only what is given; enable clears the learnt state */
	db_account_patch_init(&p);
	p.ap_rpm = 0;
	p.ap_proxy = "";
	p.ap_region = "eu-west-1";
	cr_assert_eq(db_account_update(db, id, &p), 1);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_eq(a.a_rpm, 0);
	cr_assert_eq(a.a_max_inflight, 4);
	cr_assert_str_eq(a.a_proxy, "");
	cr_assert_str_eq(a.a_region, "eu-west-1");
	cr_assert_str_eq(a.a_state, "suspended");
	db_account_patch_init(&p);
	p.ap_enabled = 0;
	cr_assert_eq(db_account_update(db, id, &p), 1);
	/* a person's disable wins over the daemon's health */
	cr_assert_eq(db_account_set_health(db, id, "enabled", -1, NULL), 1);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_str_eq(a.a_state, "disabled");
	p.ap_enabled = 1;
	cr_assert_eq(db_account_update(db, id, &p), 1);
	cr_assert_eq(db_account_get(db, id, &a), 1);
	cr_assert_str_eq(a.a_state, "enabled");
	cr_assert_eq(a.a_exhausted_until, 0);
	cr_assert_str_eq(a.a_last_error, "");
	db_account_patch_init(&p);
	p.ap_proxy = "nope";
	cr_assert_eq(db_account_update(db, id, &p), -1);
	db_account_patch_init(&p);
	p.ap_label = "x";
	cr_assert_eq(db_account_update(db, 999, &p), 0);

	/* a rotated refresh token moves the hash */
	cr_assert_eq(db_account_refreshed(db, id, "at2", now_wall() + 3600,
	    "rt-rotated-0123456789", NULL), 1);
	cr_assert_eq(db_account_find_refresh(db, "rt-health-0123456789"), 0);
	cr_assert_eq(db_account_find_refresh(db, "rt-rotated-0123456789"),
	    id);
	db_close(db);
	secret_forget();
}

static const char *
report_status(struct json_object *rep, size_t i, int64_t *id)
{
	struct json_object	*e, *v;

	cr_assert_not_null(e = json_object_array_get_idx(rep, i));
	if (id != NULL)
		*id = json_object_object_get_ex(e, "id", &v) ?
		    json_object_get_int64(v) : 0;
	cr_assert(json_object_object_get_ex(e, "status", &v));
	return json_object_get_string(v);
}

Test(db, import_stops_at_max_accounts)
{
	static const char	 doc[] = "[{\"refreshToken\":\"SECRETm-1\"},"
	    "{\"refreshToken\":\"SECRETm-2\"},"
	    "{\"refreshToken\":\"SECRETm-3\"}]";
	sqlite3			*db = open_migrated();
	struct json_object	*rep;
	char			 err[256];

	test_key();
	cr_assert_gt(add_social(db, "SECRETm-0", "zero"), 0);
	/* room for one more: the first goes in, the others fail */
	cr_assert_eq(db_accounts_import(db, doc, strlen(doc), 2, &rep, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(report_status(rep, 0, NULL), "added");
	cr_assert_str_eq(report_status(rep, 1, NULL), "failed");
	cr_assert_str_eq(report_status(rep, 2, NULL), "failed");
	json_object_put(rep);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM accounts"), 2);
	db_close(db);
}

Test(db, import_report)
{
	static const char	 doc[] = "{\"version\":1,\"accounts\":["
	    "{\"type\":\"social\",\"refreshToken\":\"SECRETrt-one\","
	    " \"label\":\"one\",\"rpm\":5},"
	    "{\"type\":\"idc\",\"refreshToken\":\"SECRETrt-two\"},"
	    "{\"type\":\"idc\",\"refreshToken\":\"SECRETrt-two\","
	    " \"clientId\":\"c\",\"clientSecret\":\"SECRETcs\"},"
	    "{\"type\":\"social\",\"refreshToken\":\"SECRETrt-one\"},"
	    "\"a string\","
	    "{\"refreshToken\":\"SECRETrt-old\"}]}";
	sqlite3			*db = open_migrated();
	struct json_object	*rep, *e, *v;
	struct db_account	 a;
	char			 err[256];
	int64_t			 id1, id, old;
	size_t			 i;

	test_key();
	cr_assert_gt(old = add_social(db, "SECRETrt-old", "old"), 0);
	cr_assert_eq(db_accounts_import(db, doc, strlen(doc), 0, &rep, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(json_object_array_length(rep), 6);
	cr_assert_str_eq(report_status(rep, 0, &id1), "added");
	cr_assert_gt(id1, old);
	cr_assert_str_eq(report_status(rep, 1, NULL), "invalid");
	cr_assert_str_eq(report_status(rep, 2, NULL), "added");
	/* a duplicate within the file, and one of the database */
	cr_assert_str_eq(report_status(rep, 3, &id), "duplicate");
	cr_assert_eq(id, id1);
	cr_assert_str_eq(report_status(rep, 4, NULL), "invalid");
	cr_assert_str_eq(report_status(rep, 5, &id), "duplicate");
	cr_assert_eq(id, old);
	for (i = 0; i < json_object_array_length(rep); i++) {
		e = json_object_array_get_idx(rep, i);
		cr_assert(json_object_object_get_ex(e, "index", &v));
		cr_assert_eq(json_object_get_int(v), (int)i);
		if (json_object_object_get_ex(e, "error", &v))
			assert_no_secret(json_object_get_string(v), "import");
	}
	json_object_put(rep);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM accounts"), 3);
	cr_assert_eq(db_account_get(db, id1, &a), 1);
	cr_assert_str_eq(a.a_label, "one");
	cr_assert_eq(a.a_rpm, 5);

	/* one object alone, and a bare array */
	cr_assert_eq(db_accounts_import(db, "{\"refreshToken\":\"SECRETrt-3\"}",
	    29, 0, &rep, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(report_status(rep, 0, NULL), "added");
	json_object_put(rep);
	cr_assert_eq(db_accounts_import(db, "[{\"refreshToken\":\"SECRETrt-4\"}"
	    ",{}]", 34, 0, &rep, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(report_status(rep, 0, NULL), "added");
	cr_assert_str_eq(report_status(rep, 1, NULL), "invalid");
	json_object_put(rep);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM accounts"), 5);

	/* not JSON, or not an export: -1, why, nothing written */
	rep = NULL;
	cr_assert_eq(db_accounts_import(db, "refreshToken=SECRETrt-5", 23,
	    0, &rep, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "not JSON"), "%s", err);
	assert_no_secret(err, "not JSON");
	cr_assert_null(rep);
	cr_assert_eq(db_accounts_import(db, "[{\"refreshToken\":\"SECRETrt-6\"}",
	    30, 0, &rep, err, sizeof(err)), -1);
	cr_assert_eq(db_accounts_import(db, "42", 2, 0, &rep, err, sizeof(err)),
	    -1);
	cr_assert_eq(db_accounts_import(db, "{\"accounts\":{}}", 15, 0, &rep, err,
	    sizeof(err)), -1);
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM accounts"), 5);
	cr_assert(sqlite3_get_autocommit(db), "a transaction left open");
	db_close(db);
	secret_forget();
}

Test(db, export_and_round_trip)
{
	sqlite3			*db = open_migrated(), *db2;
	struct db_account_new	 an;
	struct json_object	*root, *arr, *e, *v, *rep;
	struct db_account	 a, b;
	struct db_account_secrets s1, s2;
	struct buf		 out;
	char			 p2[PATH_MAX + 8], err[256];
	int64_t			 ids[2], id2;

	test_key();
	memset(&an, 0, sizeof(an));
	an.an_type = "idc";
	an.an_label = "work";
	an.an_region = "eu-west-1";
	an.an_client_id = "cid-7";
	an.an_client_secret = "SECRETcs-0123456789";
	an.an_refresh_token = "SECRETrt-0123456789";
	an.an_proxy = "http://user:hunter2@127.0.0.1:3128";
	an.an_max_inflight = 2;
	an.an_rpm = 10;
	an.an_enabled = 0;
	an.an_access_token = "SECRETat-0123456789";
	an.an_expires = now_wall() + 3600;
	cr_assert_gt(ids[0] = db_account_add(db, &an), 0);
	cr_assert_gt(ids[1] = add_social(db, "SECRETrt-social-01234", "s"), 0);

	/* without secrets: hints, the proxy masked */
	buf_init(&out);
	cr_assert_eq(db_accounts_export(db, 0, &out), 0);
	cr_assert_eq(buf_append(&out, "", 1), 0);
	cr_assert_null(strstr(out.b_data, "SECRET"), "%s", out.b_data);
	cr_assert_null(strstr(out.b_data, "hunter2"));
	cr_assert_not_null(root = json_tokener_parse(out.b_data));
	cr_assert(json_object_object_get_ex(root, "version", &v));
	cr_assert_eq(json_object_get_int(v), 1);
	cr_assert(json_object_object_get_ex(root, "exportedAt", &v));
	cr_assert(json_object_object_get_ex(root, "accounts", &arr));
	cr_assert_eq(json_object_array_length(arr), 2);
	e = json_object_array_get_idx(arr, 0);
	cr_assert(json_object_object_get_ex(e, "proxy", &v));
	cr_assert_str_eq(json_object_get_string(v),
	    "http://user:***@127.0.0.1:3128");
	cr_assert(json_object_object_get_ex(e, "refreshTokenHint", &v));
	cr_assert_not(json_object_object_get_ex(e, "refreshToken", &v));
	json_object_put(root);
	/* ... and so it cannot be imported */
	cr_assert_eq(db_accounts_import(db, out.b_data, out.b_len - 1, 0, &rep,
	    err, sizeof(err)), 0);
	cr_assert_str_eq(report_status(rep, 0, NULL), "invalid");
	json_object_put(rep);
	buf_reset(&out);

	/* with secrets: into a fresh database, the same accounts */
	cr_assert_eq(db_accounts_export(db, 1, &out), 0);
	cr_assert_not_null(memmem(out.b_data, out.b_len, "SECRETrt-0123456789",
	    19));
	snprintf(p2, sizeof(p2), "%s/two.db", tdir);
	cr_assert_not_null(db2 = db_open(p2));
	cr_assert_eq(db_migrate(db2), 0);
	cr_assert_eq(db_accounts_import(db2, out.b_data, out.b_len, 0, &rep, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(report_status(rep, 0, &id2), "added");
	cr_assert_str_eq(report_status(rep, 1, NULL), "added");
	json_object_put(rep);
	cr_assert_eq(db_account_get(db, ids[0], &a), 1);
	cr_assert_eq(db_account_get(db2, id2, &b), 1);
	cr_assert_str_eq(a.a_type, b.a_type);
	cr_assert_str_eq(a.a_label, b.a_label);
	cr_assert_str_eq(a.a_region, b.a_region);
	cr_assert_str_eq(a.a_client_id, b.a_client_id);
	cr_assert_str_eq(a.a_proxy, b.a_proxy);
	cr_assert_eq(a.a_enabled, b.a_enabled);
	cr_assert_eq(a.a_max_inflight, b.a_max_inflight);
	cr_assert_eq(a.a_rpm, b.a_rpm);
	cr_assert_eq(a.a_expires, b.a_expires);
	cr_assert_eq(db_account_secrets(db, ids[0], &s1), 1);
	cr_assert_eq(db_account_secrets(db2, id2, &s2), 1);
	cr_assert_str_eq(s1.as_refresh_token, s2.as_refresh_token);
	cr_assert_str_eq(s1.as_client_secret, s2.as_client_secret);
	db_account_secrets_free(&s1);
	db_account_secrets_free(&s2);
	/* once more: every entry a duplicate */
	cr_assert_eq(db_accounts_import(db2, out.b_data, out.b_len, 0, &rep, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(report_status(rep, 0, NULL), "duplicate");
	cr_assert_str_eq(report_status(rep, 1, NULL), "duplicate");
	json_object_put(rep);
	explicit_bzero(out.b_data, out.b_cap);
	buf_free(&out);

	/* a process without the private key exports no secrets */
	secret_forget_private();
	buf_init(&out);
	cr_assert_eq(db_accounts_export(db, 1, &out), -1);
	buf_free(&out);
	db_close(db2);
	db_close(db);
	secret_forget();
}

Test(db, accounts_load_shm_meta)
{
	sqlite3			*db = open_migrated();
	struct db_account_new	 an;
	struct shm		 s;
	struct shm_acct		 sa;
	int64_t			 id, id2;
	int			 slot;

	test_key();
	cr_assert_eq(shm_create(&s, 8, 2), 0);
	memset(&an, 0, sizeof(an));
	an.an_type = "social";
	an.an_refresh_token = "rt-meta-0123456789";
	an.an_enabled = 1;
	an.an_proxy = "socks5://127.0.0.1:1080";
	an.an_max_inflight = 3;
	an.an_rpm = 20;
	cr_assert_gt(id = db_account_add(db, &an), 0);
	cr_assert_gt(id2 = add_social(db, "rt-meta-2-0123456789", "b"), 0);
	cr_assert_eq(db_account_set_health(db, id2, "suspended", -1, "r"), 1);
	cr_assert_eq(db_account_set_usage(db, id, 100, 1000, 9999, NULL, NULL),
	    1);
	cr_assert_eq(db_accounts_load_shm(db, &s), 0);
	cr_assert_neq(slot = shm_acct_find(&s, id), -1);
	cr_assert_eq(shm_acct_read(&s, (uint32_t)slot, &sa), 0);
	cr_assert_eq(atomic_load(&sa.sa_state), ACCT_ENABLED);
	cr_assert_str_eq(sa.sa_proxy, "socks5://127.0.0.1:1080");
	cr_assert_eq(atomic_load(&sa.sa_max_inflight), 3);
	cr_assert_eq(atomic_load(&sa.sa_rpm), 20);
	cr_assert_eq(atomic_load(&sa.sa_usage_limit), 1000);
	cr_assert_neq(slot = shm_acct_find(&s, id2), -1);
	cr_assert_eq(atomic_load(&s.shm_accts[slot].sa_state), ACCT_SUSPENDED);
	shm_destroy(&s);
	db_close(db);
	secret_forget();
}

Test(db, settings_load_shm)
{
	sqlite3			*db = open_migrated();
	struct shm		 s;
	struct shm_hdr		*h;
	struct json_object	*o, *v;
	char			 out[160];

	cr_assert_eq(shm_create(&s, 2, 2), 0);
	h = s.shm_hdr;
	atomic_store(&h->sh_strategy, 99);
	/* nothing stored: the defaults */
	cr_assert_eq(db_settings_load_shm(db, &s), 0);
	cr_assert_eq(atomic_load(&h->sh_strategy), POOL_ROUND_ROBIN);
	cr_assert_eq(atomic_load(&h->sh_sticky_ttl), 0);
	cr_assert_eq(atomic_load(&h->sh_queue_ms), 10000);
	cr_assert_eq(atomic_load(&h->sh_max_attempts), 3);
	cr_assert_eq(db_setting_set(db, "poolStrategy", "weighted"), 0);
	cr_assert_eq(db_setting_set(db, "poolStickyTtl", "600"), 0);
	cr_assert_eq(db_setting_set(db, "poolQueueTimeout", "2"), 0);
	cr_assert_eq(db_setting_set(db, "poolMaxAttempts", "5"), 0);
	cr_assert_eq(db_settings_load_shm(db, &s), 0);
	cr_assert_eq(atomic_load(&h->sh_strategy), POOL_WEIGHTED);
	cr_assert_eq(atomic_load(&h->sh_sticky_ttl), 600);
	cr_assert_eq(atomic_load(&h->sh_queue_ms), 2000);
	cr_assert_eq(atomic_load(&h->sh_max_attempts), 5);
	/* invalid rows: the default, not garbage */
	cr_assert_eq(db_setting_set(db, "poolStrategy", "fastest"), 0);
	cr_assert_eq(db_setting_set(db, "poolMaxAttempts", "80"), 0);
	cr_assert_eq(db_setting_set(db, "poolQueueTimeout", "x"), 0);
	cr_assert_eq(db_settings_load_shm(db, &s), 0);
	cr_assert_eq(atomic_load(&h->sh_strategy), POOL_ROUND_ROBIN);
	cr_assert_eq(atomic_load(&h->sh_max_attempts), 3);
	cr_assert_eq(atomic_load(&h->sh_queue_ms), 10000);
	cr_assert_eq(atomic_load(&h->sh_sticky_ttl), 600);

	/* the API's view: typed, no secrets */
	cr_assert_eq(db_setting_set(db, AUTH_PASSWORD_SETTING, "$y$x"), 0);
	cr_assert_eq(db_setting_set(db, "custom", "v"), 0);
	cr_assert_not_null(o = db_settings_json(db));
	cr_assert_not(json_object_object_get_ex(o, AUTH_PASSWORD_SETTING,
	    &v));
	cr_assert_not(json_object_object_get_ex(o, "apiKey", &v));
	cr_assert(json_object_object_get_ex(o, "poolStickyTtl", &v));
	cr_assert_eq(json_object_get_int(v), 600);
	cr_assert(json_object_object_get_ex(o, "poolStrategy", &v));
	cr_assert_str_eq(json_object_get_string(v), "round_robin");
	cr_assert(json_object_object_get_ex(o, "enableRequestLog", &v));
	cr_assert(json_object_is_type(v, json_type_boolean));
	cr_assert(json_object_object_get_ex(o, "custom", &v));
	json_object_put(o);

	/* checks of API values */
	o = json_object_new_string("random");
	cr_assert_eq(db_setting_check("poolStrategy", o, out, sizeof(out)), 1);
	cr_assert_str_eq(out, "random");
	json_object_put(o);
	o = json_object_new_int(9);
	cr_assert_eq(db_setting_check("poolMaxAttempts", o, out, sizeof(out)),
	    -1);
	cr_assert_not_null(strstr(out, "poolMaxAttempts"));
	cr_assert_eq(db_setting_check("poolQueueTimeout", o, out,
	    sizeof(out)), 1);
	cr_assert_str_eq(out, "9");
	cr_assert_eq(db_setting_check("nope", o, out, sizeof(out)), 0);
	cr_assert_eq(db_setting_check("debugLog", o, out, sizeof(out)), -1);
	json_object_put(o);
	shm_destroy(&s);
	db_close(db);
}
