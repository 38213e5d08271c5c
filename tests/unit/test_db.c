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
	cr_assert_eq(count_rows(db, "SELECT COUNT(*) FROM schema_version"), 2);
	cr_assert_eq(count_rows(db, "SELECT MAX(version) FROM schema_version"),
	    2);
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
