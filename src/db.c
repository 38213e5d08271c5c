/*
 * db.c - the SQLite database: opening, numbered migrations and every
 * query the processes run.
 *
 * SQLite is the durable truth (accounts, keys, settings, request logs,
 * sessions); the shared table is a cache rebuilt from it. SQLite is not
 * fork-safe, so every process opens its own connection after fork, and
 * only the master runs db_migrate, before it forks anything. All SQL
 * text here is constant: input only ever reaches SQLite through
 * sqlite3_bind_*.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "qrelayd.h"

#define DB_BUSY_MS	5000

/*
 * The migrations, oldest first: migration i + 1 is db_migrations[i].
 * Append only; never edit one that has shipped.
 */
static const char *const db_migrations[] = {
	/* 1: the initial schema */
	/* AUTOINCREMENT: request_logs keep key and account ids after the
	 * row is deleted, so an id must never be handed out twice. */
	"CREATE TABLE accounts ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  type TEXT NOT NULL CHECK (type IN ('idc', 'social')),"
	"  label TEXT NOT NULL DEFAULT '',"
	"  enabled INTEGER NOT NULL DEFAULT 1,"
	"  state TEXT NOT NULL DEFAULT 'enabled',"
	"  region TEXT NOT NULL DEFAULT '',"
	"  profile_arn TEXT NOT NULL DEFAULT '',"
	"  client_id TEXT NOT NULL DEFAULT '',"
	"  client_secret_enc BLOB,"
	"  refresh_token_enc BLOB,"
	"  access_token_expires INTEGER NOT NULL DEFAULT 0,"
	"  last_error TEXT NOT NULL DEFAULT '',"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL,"
	"  last_used_at INTEGER NOT NULL DEFAULT 0,"
	"  requests INTEGER NOT NULL DEFAULT 0,"
	"  failures INTEGER NOT NULL DEFAULT 0,"
	"  tokens_in INTEGER NOT NULL DEFAULT 0,"
	"  tokens_out INTEGER NOT NULL DEFAULT 0,"
	"  credits REAL NOT NULL DEFAULT 0"
	");"
	"CREATE TABLE api_keys ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL,"
	"  hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),"
	"  prefix TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  last_used_at INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE TABLE settings ("
	"  name TEXT PRIMARY KEY,"
	"  value TEXT NOT NULL"
	");"
	"CREATE TABLE request_logs ("
	"  id INTEGER PRIMARY KEY,"
	"  ts_ms INTEGER NOT NULL,"
	"  method TEXT NOT NULL,"
	"  path TEXT NOT NULL,"
	"  status INTEGER NOT NULL,"
	"  duration_us INTEGER NOT NULL,"
	"  client_ip TEXT NOT NULL,"
	"  key_id INTEGER,"
	"  account_id INTEGER,"
	"  model TEXT,"
	"  tokens_in INTEGER NOT NULL DEFAULT 0,"
	"  tokens_out INTEGER NOT NULL DEFAULT 0,"
	"  credits REAL NOT NULL DEFAULT 0,"
	"  bytes_in INTEGER NOT NULL DEFAULT 0,"
	"  bytes_out INTEGER NOT NULL DEFAULT 0,"
	"  error TEXT,"
	"  pid INTEGER NOT NULL"
	");"
	"CREATE INDEX request_logs_ts ON request_logs (ts_ms);"
	"CREATE TABLE blocked_ips ("
	"  ip TEXT PRIMARY KEY,"
	"  reason TEXT NOT NULL DEFAULT '',"
	"  created_at INTEGER NOT NULL,"
	"  expires_at INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE TABLE admin_sessions ("
	"  token_hash BLOB PRIMARY KEY CHECK (length(token_hash) = 32),"
	"  created_at INTEGER NOT NULL,"
	"  expires_at INTEGER NOT NULL,"
	"  last_seen_at INTEGER NOT NULL,"
	"  client_ip TEXT"
	");"
	"CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);"
	/* the settings of ARCHITECTURE.md §2, with their defaults */
	"INSERT OR IGNORE INTO settings (name, value) VALUES"
	"  ('apiKey', ''),"
	"  ('debugLog', 'false'),"
	"  ('enableRequestLog', 'true'),"
	"  ('logRetentionDays', '30'),"
	"  ('enableIPRateLimit', 'false'),"
	"  ('ipRateLimitWindow', '1'),"
	"  ('ipRateLimitMax', '100');",
	/* 2: accounts keep their access token (encrypted) across restarts,
	 * hints of their secrets for display, and qrelayctl's refresh
	 * requests */
	"ALTER TABLE accounts ADD COLUMN access_token_enc BLOB;"
	"ALTER TABLE accounts ADD COLUMN refresh_token_hint TEXT NOT NULL"
	"  DEFAULT '';"
	"ALTER TABLE accounts ADD COLUMN client_secret_hint TEXT NOT NULL"
	"  DEFAULT '';"
	"ALTER TABLE accounts ADD COLUMN refresh_requested INTEGER NOT NULL"
	"  DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN last_refresh_at INTEGER NOT NULL"
	"  DEFAULT 0;",
	/* 3: the pool: per-account proxy and caps, health, usage and
	 * cooldown kept across restarts (the refresher writes what the
	 * workers keep in the shared table, counters of migration 1
	 * included), and the SHA-256 of the
	 * refresh token (hex) so that a duplicate is refused. Rows added
	 * before keep a NULL hash until db_accounts_hash_backfill, which
	 * needs the private key. */
	"ALTER TABLE accounts ADD COLUMN proxy TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE accounts ADD COLUMN max_inflight INTEGER NOT NULL"
	"  DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN rpm INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN exhausted_until INTEGER NOT NULL"
	"  DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN usage_used INTEGER NOT NULL"
	"  DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN usage_limit INTEGER NOT NULL"
	"  DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN usage_reset INTEGER NOT NULL"
	"  DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN usage_checked INTEGER NOT NULL"
	"  DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN subscription TEXT NOT NULL"
	"  DEFAULT '';"
	"ALTER TABLE accounts ADD COLUMN email TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE accounts ADD COLUMN cooldown_until INTEGER NOT NULL"
	"  DEFAULT 0;"
	"ALTER TABLE accounts ADD COLUMN refresh_hash TEXT;"
	"CREATE UNIQUE INDEX accounts_refresh_hash ON accounts (refresh_hash)"
	"  WHERE refresh_hash IS NOT NULL;",
};

/*
 * The statement helpers, the one way every query here runs. "where"
 * names the caller in the log line; NULL keeps them quiet for callers
 * that rate-limit their own messages (the logger).
 */
static void
db_err(sqlite3 *db, const char *where)
{
	if (where != NULL)
		log_warnx("%s: %s", where, sqlite3_errmsg(db));
}

static sqlite3_stmt *
db_prepare(sqlite3 *db, const char *where, const char *sql)
{
	sqlite3_stmt	*st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_err(db, where);
		return NULL;
	}
	return st;
}

/* 1 a row, 0 done, -1 error. */
static int
db_step(sqlite3 *db, const char *where, sqlite3_stmt *st)
{
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		return 1;
	case SQLITE_DONE:
		return 0;
	default:
		db_err(db, where);
		return -1;
	}
}

/* Runs st to the end and finalizes it: rows changed, or -1. */
static int
db_finish(sqlite3 *db, const char *where, sqlite3_stmt *st)
{
	int	 r;

	while ((r = db_step(db, where, st)) == 1)
		;
	sqlite3_finalize(st);
	return r == -1 ? -1 : sqlite3_changes(db);
}

/* Constant SQL only (pragmas, schema, transactions). */
static int
db_exec(sqlite3 *db, const char *where, const char *sql)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		db_err(db, where);
		return -1;
	}
	return 0;
}

/* BEGIN IMMEDIATE takes the write lock up front, so busy_timeout
 * applies instead of a later SQLITE_BUSY on the first write. */
/* The one number a query answers, or -1. */
static int64_t
db_count(sqlite3 *db, const char *sql)
{
	sqlite3_stmt	*st;
	int64_t		 n = -1;

	if ((st = db_prepare(db, __func__, sql)) == NULL)
		return -1;
	if (db_step(db, __func__, st) == 1)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

int
db_begin(sqlite3 *db, const char *where)
{
	return db_exec(db, where, "BEGIN IMMEDIATE");
}

int
db_commit(sqlite3 *db, const char *where)
{
	if (db_exec(db, where, "COMMIT") == -1) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

void
db_rollback(sqlite3 *db)
{
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

static void
db_col_text(sqlite3_stmt *st, int col, char *out, size_t outsz)
{
	const unsigned char	*s = sqlite3_column_text(st, col);

	strlcpy_qr(out, s != NULL ? (const char *)s : "", outsz);
}

sqlite3 *
db_open(const char *path)
{
	sqlite3		*db = NULL;
	char		 dir[PATH_MAX], *slash;
	mode_t		 oldmask;
	int		 ondisk = strcmp(path, ":memory:") != 0;

	/* The -wal and -shm files take the database's mode, but the
	 * umask covers the moment before the chmod below as well. */
	oldmask = umask(077);
	if (ondisk) {
		if (strlcpy_qr(dir, path, sizeof(dir)) >= sizeof(dir)) {
			log_warnx("%s: %s: path too long", __func__, path);
			goto fail;
		}
		if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
			*slash = '\0';
			if (mkdir_p(dir, 0700) == -1) {
				log_warn("%s: mkdir %s", __func__, dir);
				goto fail;
			}
		}
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		log_warnx("%s: %s: %s", __func__, path,
		    db != NULL ? sqlite3_errmsg(db) : "out of memory");
		goto fail;
	}
	if (ondisk && chmod(path, 0600) == -1) {
		log_warn("%s: chmod %s", __func__, path);
		goto fail;
	}
	sqlite3_busy_timeout(db, DB_BUSY_MS);
	if (db_exec(db, __func__, "PRAGMA journal_mode=WAL;"
	    "PRAGMA synchronous=NORMAL;"
	    "PRAGMA foreign_keys=ON;") == -1)
		goto fail;
	umask(oldmask);
	return db;
 fail:
	sqlite3_close(db);
	umask(oldmask);
	return NULL;
}

void
db_close(sqlite3 *db)
{
	if (db != NULL && sqlite3_close(db) != SQLITE_OK)
		log_warnx("%s: %s", __func__, sqlite3_errmsg(db));
}

/* Highest migration applied, or -1. Runs inside the caller's
 * transaction. */
static int
db_version(sqlite3 *db)
{
	sqlite3_stmt	*st;
	int		 v = -1;

	if ((st = db_prepare(db, __func__,
	    "SELECT COALESCE(MAX(version), 0) FROM schema_version")) == NULL)
		return -1;
	if (db_step(db, __func__, st) == 1)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

int
db_migrate(sqlite3 *db)
{
	sqlite3_stmt	*st;
	int		 v, known = (int)nitems(db_migrations);

	if (db_exec(db, __func__, "CREATE TABLE IF NOT EXISTS schema_version ("
	    " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)") == -1)
		return -1;
	/* One transaction per migration; the version is read inside it
	 * so two processes migrating at once cannot both apply one. */
	for (;;) {
		if (db_begin(db, __func__) == -1)
			return -1;
		if ((v = db_version(db)) == -1)
			goto fail;
		if (v > known) {
			log_warnx("%s: database schema version %d is newer than "
			    "this program (%d)", __func__, v, known);
			goto fail;
		}
		if (v == known)
			return db_commit(db, __func__);
		if (db_exec(db, __func__, db_migrations[v]) == -1)
			goto fail;
		if ((st = db_prepare(db, __func__, "INSERT INTO schema_version"
		    " (version, applied_at) VALUES (?, ?)")) == NULL)
			goto fail;
		if (sqlite3_bind_int(st, 1, v + 1) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 2, now_wall()) != SQLITE_OK) {
			sqlite3_finalize(st);
			goto fail;
		}
		if (db_finish(db, __func__, st) == -1)
			goto fail;
		if (db_commit(db, __func__) == -1)
			return -1;
		log_info("database: applied migration %d", v + 1);
	}
 fail:
	db_rollback(db);
	return -1;
}

int
db_setting_get(sqlite3 *db, const char *name, char *out, size_t outsz)
{
	sqlite3_stmt	*st;
	int		 r;

	if ((st = db_prepare(db, __func__,
	    "SELECT value FROM settings WHERE name = ?")) == NULL)
		return -1;
	if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	if ((r = db_step(db, __func__, st)) == 1) {
		/* a truncated value (a password hash) would be wrong, not short */
		if ((size_t)sqlite3_column_bytes(st, 0) >= outsz) {
			log_warnx("%s: %s: value too long", __func__, name);
			r = -1;
		} else
			db_col_text(st, 0, out, outsz);
	}
	sqlite3_finalize(st);
	return r;
}

int
db_setting_set(sqlite3 *db, const char *name, const char *value)
{
	sqlite3_stmt	*st;

	if ((st = db_prepare(db, __func__, "INSERT INTO settings (name, value)"
	    " VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
	    " SET value = excluded.value")) == NULL)
		return -1;
	if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st) == -1 ? -1 : 0;
}

/* Inserts name only when absent: 1 inserted, 0 already there, -1. */
static int
db_setting_add(sqlite3 *db, const char *name, const char *value)
{
	sqlite3_stmt	*st;

	if ((st = db_prepare(db, __func__, "INSERT OR IGNORE INTO settings"
	    " (name, value) VALUES (?, ?)")) == NULL)
		return -1;
	if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
}

/* Names and labels are printed tab separated by qrelayctl: min..max-1
 * bytes, no control characters. */
static int
db_text_ok(const char *s, size_t min, size_t max)
{
	size_t	 i, n = strlen(s);

	if (n < min || n >= max)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

int
db_key_name_ok(const char *name)
{
	return db_text_ok(name, 1, sizeof(((struct db_key *)0)->k_name));
}

int64_t
db_key_add(sqlite3 *db, const char *name, const unsigned char hash[32],
    const char *prefix)
{
	sqlite3_stmt	*st;

	if (!db_key_name_ok(name)) {
		log_warnx("%s: bad key name", __func__);
		return -1;
	}
	if ((st = db_prepare(db, __func__, "INSERT INTO api_keys"
	    " (name, hash, prefix, created_at) VALUES (?, ?, ?, ?)")) == NULL)
		return -1;
	if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, prefix, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, now_wall()) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	if (db_finish(db, __func__, st) != 1)
		return -1;
	return sqlite3_last_insert_rowid(db);
}

int
db_key_delete(sqlite3 *db, int64_t id)
{
	sqlite3_stmt	*st;

	if ((st = db_prepare(db, __func__,
	    "DELETE FROM api_keys WHERE id = ?")) == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
}

int
db_key_list(sqlite3 *db, int (*cb)(const struct db_key *, void *), void *arg)
{
	sqlite3_stmt	*st;
	struct db_key	 k;
	int		 r;

	if ((st = db_prepare(db, __func__, "SELECT id, name, prefix, hash,"
	    " created_at, last_used_at FROM api_keys ORDER BY id")) == NULL)
		return -1;
	while ((r = db_step(db, __func__, st)) == 1) {
		memset(&k, 0, sizeof(k));
		k.k_id = sqlite3_column_int64(st, 0);
		db_col_text(st, 1, k.k_name, sizeof(k.k_name));
		db_col_text(st, 2, k.k_prefix, sizeof(k.k_prefix));
		if (sqlite3_column_bytes(st, 3) == (int)sizeof(k.k_hash))
			memcpy(k.k_hash, sqlite3_column_blob(st, 3),
			    sizeof(k.k_hash));
		k.k_created = sqlite3_column_int64(st, 4);
		k.k_last_used = sqlite3_column_int64(st, 5);
		if ((r = cb(&k, arg)) != 0)
			break;
	}
	sqlite3_finalize(st);
	return r;
}

struct db_keyset {
	struct db_key	*ks_keys;
	size_t		 ks_n, ks_cap;
};

static int
db_keyset_add(const struct db_key *k, void *arg)
{
	struct db_keyset	*ks = arg;
	struct db_key		*nk;
	size_t			 ncap;

	if (ks->ks_n == ks->ks_cap) {
		ncap = ks->ks_cap ? ks->ks_cap * 2 : 64;
		if ((nk = reallocarray(ks->ks_keys, ncap, sizeof(*nk))) == NULL)
			return -1;
		ks->ks_keys = nk;
		ks->ks_cap = ncap;
	}
	ks->ks_keys[ks->ks_n++] = *k;
	return 0;
}

int
db_keys_load_shm(sqlite3 *db, struct shm *shm)
{
	struct db_keyset	 ks = { NULL, 0, 0 };
	int64_t			*ids = NULL;
	size_t			 i;
	int			 r = 0;

	/*
	 * Workers look keys up meanwhile, so the slots are updated in
	 * place: a key the database still holds is never missing, not even
	 * for a moment (no clear and refill). Stale slots go first, so new
	 * keys find them free. The read happens under sh_lock, which a
	 * worker takes only after its own INSERT or DELETE has committed:
	 * a key added or deleted during a reload can never be undone by
	 * that reload's older view of the table.
	 */
	shm_lock(shm);
	if (db_key_list(db, db_keyset_add, &ks) != 0 ||
	    (ids = reallocarray(NULL, ks.ks_n + 1, sizeof(*ids))) == NULL) {
		log_warnx("%s: cannot read keys", __func__);
		r = -1;
		goto done;
	}
	for (i = 0; i < ks.ks_n; i++)
		ids[i] = ks.ks_keys[i].k_id;	/* ascending: ORDER BY id */
	shm_keys_retain_locked(shm, ids, ks.ks_n);
	for (i = 0; i < ks.ks_n; i++) {
		if (shm_key_add_locked(shm, ks.ks_keys[i].k_id,
		    ks.ks_keys[i].k_hash, ks.ks_keys[i].k_prefix) == -1) {
			log_warnx("%s: no free key slot for key %lld (max_keys)",
			    __func__, (long long)ks.ks_keys[i].k_id);
			r = -1;
		}
	}
 done:
	shm_unlock(shm);
	free(ids);
	free(ks.ks_keys);
	return r;
}

int
db_ensure_admin_password(sqlite3 *db, int print_generated)
{
	char		 pw[256], hash[AUTH_HASH_MAX];
	const char	*env;
	int		 r, generated = 0;

	if ((r = db_setting_get(db, AUTH_PASSWORD_SETTING, hash,
	    sizeof(hash))) != 0)
		return r == 1 ? 0 : -1;
	if ((env = getenv("QRELAYD_ADMIN_PASSWORD")) != NULL && *env != '\0') {
		if (strlcpy_qr(pw, env, sizeof(pw)) >= sizeof(pw)) {
			log_warnx("%s: QRELAYD_ADMIN_PASSWORD too long",
			    __func__);
			r = -1;
			goto done;
		}
		if (strlen(pw) < 8)
			log_warnx("QRELAYD_ADMIN_PASSWORD is shorter than "
			    "8 characters");
	} else {
		if (auth_password_generate(pw, sizeof(pw)) == -1) {
			log_warnx("%s: cannot generate a password", __func__);
			r = -1;
			goto done;
		}
		generated = 1;
	}
	if (auth_password_hash(pw, hash, sizeof(hash)) == -1) {
		log_warnx("%s: cannot hash the password", __func__);
		r = -1;
		goto done;
	}
	/* INSERT OR IGNORE: should another process have set one since
	 * the read above, keep it and show nothing. */
	if ((r = db_setting_add(db, AUTH_PASSWORD_SETTING, hash)) == -1)
		goto done;
	if (r == 1 && generated && print_generated)
		fprintf(stderr, "\n"
		    "qrelayd: ============================================"
		    "==========================\n"
		    "qrelayd: first start: admin password: %s\n"
		    "qrelayd: (shown once; change it with qrelayctl passwd)\n"
		    "qrelayd: ============================================"
		    "==========================\n\n", pw);
	r = 0;
 done:
	explicit_bzero(pw, sizeof(pw));
	return r;
}

int
db_admin_password_set(sqlite3 *db, const char *hash)
{
	/* One transaction: a new password never leaves old sessions open. */
	if (db_begin(db, __func__) == -1)
		return -1;
	if (db_setting_set(db, AUTH_PASSWORD_SETTING, hash) == -1 ||
	    db_exec(db, __func__, "DELETE FROM admin_sessions") == -1) {
		db_rollback(db);
		return -1;
	}
	return db_commit(db, __func__);
}

/* ---- accounts ---- */

#define DB_ACCOUNT_COLS	"id, type, label, state, enabled," \
	" access_token_expires, last_error, region, profile_arn, client_id," \
	" refresh_token_hint, client_secret_hint, created_at, updated_at," \
	" last_refresh_at, refresh_requested, proxy, max_inflight, rpm," \
	" exhausted_until, usage_used, usage_limit, usage_reset," \
	" usage_checked, subscription, email, cooldown_until, requests," \
	" failures, tokens_in, tokens_out, credits"
#define DB_ACCOUNT_NCOLS	32

#define DB_CAP_MAX	1000000		/* maxConcurrency, rpm */

static void
db_account_row(sqlite3_stmt *st, struct db_account *a)
{
	memset(a, 0, sizeof(*a));
	a->a_id = sqlite3_column_int64(st, 0);
	db_col_text(st, 1, a->a_type, sizeof(a->a_type));
	db_col_text(st, 2, a->a_label, sizeof(a->a_label));
	db_col_text(st, 3, a->a_state, sizeof(a->a_state));
	a->a_enabled = sqlite3_column_int(st, 4) != 0;
	a->a_expires = sqlite3_column_int64(st, 5);
	db_col_text(st, 6, a->a_last_error, sizeof(a->a_last_error));
	db_col_text(st, 7, a->a_region, sizeof(a->a_region));
	db_col_text(st, 8, a->a_profile_arn, sizeof(a->a_profile_arn));
	db_col_text(st, 9, a->a_client_id, sizeof(a->a_client_id));
	db_col_text(st, 10, a->a_refresh_hint, sizeof(a->a_refresh_hint));
	db_col_text(st, 11, a->a_secret_hint, sizeof(a->a_secret_hint));
	a->a_created = sqlite3_column_int64(st, 12);
	a->a_updated = sqlite3_column_int64(st, 13);
	a->a_last_refresh = sqlite3_column_int64(st, 14);
	a->a_refresh_requested = sqlite3_column_int(st, 15) != 0;
	db_col_text(st, 16, a->a_proxy, sizeof(a->a_proxy));
	a->a_max_inflight = sqlite3_column_int(st, 17);
	a->a_rpm = sqlite3_column_int(st, 18);
	a->a_exhausted_until = sqlite3_column_int64(st, 19);
	a->a_usage_used = sqlite3_column_int64(st, 20);
	a->a_usage_limit = sqlite3_column_int64(st, 21);
	a->a_usage_reset = sqlite3_column_int64(st, 22);
	a->a_usage_checked = sqlite3_column_int64(st, 23);
	db_col_text(st, 24, a->a_subscription, sizeof(a->a_subscription));
	db_col_text(st, 25, a->a_email, sizeof(a->a_email));
	a->a_cooldown_until = sqlite3_column_int64(st, 26);
	a->a_counters.ac_requests = sqlite3_column_int64(st, 27);
	a->a_counters.ac_failures = sqlite3_column_int64(st, 28);
	a->a_counters.ac_tokens_in = sqlite3_column_int64(st, 29);
	a->a_counters.ac_tokens_out = sqlite3_column_int64(st, 30);
	a->a_counters.ac_credits = llround(sqlite3_column_double(st, 31) *
	    1e6);
}

void
db_account_meta(const struct db_account *a, struct shm_acct_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->am_id = a->a_id;
	if (!a->a_enabled || strcmp(a->a_state, "disabled") == 0)
		m->am_state = ACCT_DISABLED;
	else if (strcmp(a->a_state, "suspended") == 0)
		m->am_state = ACCT_SUSPENDED;
	else if (strcmp(a->a_state, "refresh_failed") == 0)
		m->am_state = ACCT_REFRESH_FAILED;
	else
		m->am_state = ACCT_ENABLED;
	m->am_label = a->a_label;
	m->am_region = a->a_region;
	m->am_profile_arn = a->a_profile_arn;
	m->am_proxy = a->a_proxy;
	m->am_max_inflight = a->a_max_inflight;
	m->am_rpm = a->a_rpm;
	m->am_exhausted_until = a->a_exhausted_until;
	m->am_usage_used = a->a_usage_used;
	m->am_usage_limit = a->a_usage_limit;
	m->am_usage_reset = a->a_usage_reset;
	m->am_usage_checked = a->a_usage_checked;
	m->am_cooldown_until = a->a_cooldown_until;
	m->am_counters = a->a_counters;
}

int
db_account_list(sqlite3 *db, int (*cb)(const struct db_account *, void *),
    void *arg)
{
	sqlite3_stmt		*st;
	struct db_account	 a;
	int			 r;

	if ((st = db_prepare(db, __func__, "SELECT " DB_ACCOUNT_COLS
	    " FROM accounts ORDER BY id")) == NULL)
		return -1;
	while ((r = db_step(db, __func__, st)) == 1) {
		db_account_row(st, &a);
		if ((r = cb(&a, arg)) != 0)
			break;
	}
	sqlite3_finalize(st);
	return r;
}

int
db_account_get(sqlite3 *db, int64_t id, struct db_account *a)
{
	sqlite3_stmt	*st;
	int		 r;

	if ((st = db_prepare(db, __func__, "SELECT " DB_ACCOUNT_COLS
	    " FROM accounts WHERE id = ?")) == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	if ((r = db_step(db, __func__, st)) == 1)
		db_account_row(st, a);
	sqlite3_finalize(st);
	return r;
}

int
db_account_label_ok(const char *label)
{
	return db_text_ok(label, 0, sizeof(((struct db_account *)0)->a_label));
}

/* The region ends up in a host name: letters, digits, '-' only. */
int
db_account_region_ok(const char *r)
{
	size_t	 n = strlen(r);

	return n > 0 && n < sizeof(((struct db_account *)0)->a_region) &&
	    strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static const char *const db_proxy_schemes[] = { "http://", "https://",
	"socks5://", "socks5h://" };

/* Where the authority of a proxy URL starts (after the scheme), or
 * NULL when the scheme is not one libcurl takes for a proxy here. */
static const char *
db_proxy_authority(const char *p)
{
	size_t	 i, n;

	for (i = 0; i < nitems(db_proxy_schemes); i++) {
		n = strlen(db_proxy_schemes[i]);
		if (strncasecmp(p, db_proxy_schemes[i], n) == 0)
			return p + n;
	}
	return NULL;
}

int
db_account_proxy_ok(const char *p)
{
	const char	*auth, *at, *host, *end, *colon;
	size_t		 i, n = strlen(p), hlen;
	char		*e;
	long		 port;

	if (n == 0)
		return 1;
	if (n >= SHM_PROXY_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
			return 0;
	if ((auth = db_proxy_authority(p)) == NULL)
		return 0;
	/* nothing after the authority but an optional "/" */
	end = auth + strcspn(auth, "/?#");
	if (*end != '\0' && strcmp(end, "/") != 0)
		return 0;
	host = auth;
	for (at = auth; at < end; at++)
		if (*at == '@')
			host = at + 1;
	if (host == end)
		return 0;
	if (*host == '[') {
		if ((colon = memchr(host, ']', (size_t)(end - host))) == NULL ||
		    colon == host + 1)
			return 0;
		colon++;
		if (colon != end && *colon != ':')
			return 0;
		if (colon == end)
			return 1;
	} else {
		colon = memchr(host, ':', (size_t)(end - host));
		hlen = (size_t)((colon ? colon : end) - host);
		if (hlen == 0)
			return 0;
		for (i = 0; i < hlen; i++)
			if (!isalnum((unsigned char)host[i]) &&
			    strchr(".-_", host[i]) == NULL)
				return 0;
		if (colon == NULL)
			return 1;
	}
	/* colon points at ':' before the port */
	if (colon + 1 == end || !isdigit((unsigned char)colon[1]))
		return 0;
	errno = 0;
	port = strtol(colon + 1, &e, 10);
	return e == end && errno == 0 && port > 0 && port <= 65535;
}

void
db_proxy_mask(const char *p, char *out, size_t outsz)
{
	const char	*auth, *end, *at = NULL, *q, *colon;

	if (outsz == 0)
		return;
	*out = '\0';
	if (p == NULL || *p == '\0')
		return;
	if ((auth = db_proxy_authority(p)) == NULL) {
		/* not ours to parse: show nothing that could be a secret */
		strlcpy_qr(out, "***", outsz);
		return;
	}
	end = auth + strcspn(auth, "/?#");
	for (q = auth; q < end; q++)
		if (*q == '@')
			at = q;
	if (at == NULL) {
		strlcpy_qr(out, p, outsz);
		return;
	}
	colon = memchr(auth, ':', (size_t)(at - auth));
	snprintf(out, outsz, "%.*s%s@%s", (int)((colon ? colon : at) - p), p,
	    colon ? ":***" : "", at + 1);
}

/* The hex SHA-256 of a refresh token: what duplicates are found by. */
static int
db_refresh_hash(const char *rt, char out[65])
{
	unsigned char	 md[32];
	unsigned int	 mdlen = 0;

	if (EVP_Digest(rt, strlen(rt), md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != sizeof(md))
		return -1;
	hex_encode(md, sizeof(md), out);
	return 0;
}

/* Binds the encryption of plain (NULL: SQL NULL) at col; b keeps it. */
static int
db_bind_secret(sqlite3_stmt *st, int col, const char *plain, const char *aad,
    struct buf *b)
{
	if (plain == NULL)
		return sqlite3_bind_null(st, col) == SQLITE_OK ? 0 : -1;
	if (secret_encrypt(plain, aad, b) == -1) {
		log_warnx("%s: cannot encrypt the %s", __func__, aad);
		return -1;
	}
	return sqlite3_bind_blob(st, col, b->b_data, (int)b->b_len,
	    SQLITE_STATIC) == SQLITE_OK ? 0 : -1;
}

static const char *
db_nz(const char *s)
{
	return s != NULL ? s : "";
}

int64_t
db_account_add(sqlite3 *db, const struct db_account_new *an)
{
	sqlite3_stmt	*st = NULL;
	struct buf	 rt, cs, at;
	char		 rhint[SECRET_HINT_MAX], shint[SECRET_HINT_MAX] = "";
	char		 hash[65];
	const char	*secret = NULL, *access = an->an_access_token;
	int64_t		 id = -1, now = now_wall();
	int		 idc = an->an_type != NULL &&
			    strcmp(an->an_type, "idc") == 0;

	buf_init(&rt);
	buf_init(&cs);
	buf_init(&at);
	if ((!idc && (an->an_type == NULL ||
	    strcmp(an->an_type, "social") != 0)) ||
	    an->an_refresh_token == NULL || *an->an_refresh_token == '\0' ||
	    strlen(an->an_refresh_token) > DB_ACCOUNT_SECRET_MAX ||
	    !db_account_label_ok(db_nz(an->an_label)) ||
	    (an->an_region && *an->an_region &&
	    !db_account_region_ok(an->an_region)) ||
	    strlen(db_nz(an->an_profile_arn)) >=
	    sizeof(((struct db_account *)0)->a_profile_arn) ||
	    !db_account_proxy_ok(db_nz(an->an_proxy)) ||
	    an->an_max_inflight < 0 || an->an_max_inflight > DB_CAP_MAX ||
	    an->an_rpm < 0 || an->an_rpm > DB_CAP_MAX) {
		log_warnx("%s: bad account", __func__);
		return -1;
	}
	if (idc) {
		if (an->an_client_id == NULL || *an->an_client_id == '\0' ||
		    strlen(an->an_client_id) >=
		    sizeof(((struct db_account *)0)->a_client_id) ||
		    an->an_client_secret == NULL ||
		    *an->an_client_secret == '\0' ||
		    strlen(an->an_client_secret) > DB_ACCOUNT_SECRET_MAX) {
			log_warnx("%s: an idc account needs a client id and "
			    "secret", __func__);
			return -1;
		}
		secret = an->an_client_secret;
		secret_hint(secret, shint);
	}
	/* a live token only with its expiry, and only one that fits */
	if (access != NULL && (*access == '\0' || an->an_expires <= 0 ||
	    strlen(access) >= SHM_TOKEN_MAX))
		access = NULL;
	secret_hint(an->an_refresh_token, rhint);
	if (db_refresh_hash(an->an_refresh_token, hash) == -1)
		goto done;
	if ((st = db_prepare(db, __func__, "INSERT INTO accounts (type,"
	    " label, enabled, state, region, profile_arn, client_id,"
	    " client_secret_enc, refresh_token_enc, refresh_token_hint,"
	    " client_secret_hint, created_at, updated_at, proxy, max_inflight,"
	    " rpm, refresh_hash, access_token_enc, access_token_expires)"
	    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
	    " ?)")) == NULL)
		goto done;
	if (sqlite3_bind_text(st, 1, an->an_type, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 2, db_nz(an->an_label), -1, SQLITE_STATIC) ||
	    sqlite3_bind_int(st, 3, an->an_enabled != 0) ||
	    sqlite3_bind_text(st, 4, an->an_enabled ? "enabled" : "disabled",
	    -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 5, db_nz(an->an_region), -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 6, db_nz(an->an_profile_arn), -1,
	    SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 7, idc ? an->an_client_id : "", -1,
	    SQLITE_STATIC) ||
	    db_bind_secret(st, 8, secret, SECRET_AAD_CLIENT, &cs) ||
	    db_bind_secret(st, 9, an->an_refresh_token, SECRET_AAD_REFRESH,
	    &rt) ||
	    sqlite3_bind_text(st, 10, rhint, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 11, shint, -1, SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 12, now) ||
	    sqlite3_bind_int64(st, 13, now) ||
	    sqlite3_bind_text(st, 14, db_nz(an->an_proxy), -1, SQLITE_STATIC) ||
	    sqlite3_bind_int(st, 15, an->an_max_inflight) ||
	    sqlite3_bind_int(st, 16, an->an_rpm) ||
	    sqlite3_bind_text(st, 17, hash, -1, SQLITE_STATIC) ||
	    db_bind_secret(st, 18, access, SECRET_AAD_ACCESS, &at) ||
	    sqlite3_bind_int64(st, 19, access != NULL ? an->an_expires : 0))
		goto done;
	if (db_finish(db, __func__, st) == 1)
		id = sqlite3_last_insert_rowid(db);
	st = NULL;
 done:
	sqlite3_finalize(st);
	buf_free(&rt);
	buf_free(&cs);
	buf_free(&at);
	return id;
}

void
db_account_patch_init(struct db_account_patch *p)
{
	memset(p, 0, sizeof(*p));
	p->ap_enabled = -1;
	p->ap_max_inflight = -1;
	p->ap_rpm = -1;
}

static int
db_bind_opt_text(sqlite3_stmt *st, int col, const char *s)
{
	return s == NULL ? sqlite3_bind_null(st, col) :
	    sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static int
db_bind_opt_int(sqlite3_stmt *st, int col, int v)
{
	return v < 0 ? sqlite3_bind_null(st, col) :
	    sqlite3_bind_int(st, col, v);
}

int
db_account_update(sqlite3 *db, int64_t id, const struct db_account_patch *p)
{
	sqlite3_stmt	*st;

	if ((p->ap_label != NULL && !db_account_label_ok(p->ap_label)) ||
	    (p->ap_proxy != NULL && !db_account_proxy_ok(p->ap_proxy)) ||
	    (p->ap_region != NULL && *p->ap_region != '\0' &&
	    !db_account_region_ok(p->ap_region)) ||
	    (p->ap_profile_arn != NULL && strlen(p->ap_profile_arn) >=
	    sizeof(((struct db_account *)0)->a_profile_arn)) ||
	    p->ap_max_inflight > DB_CAP_MAX || p->ap_rpm > DB_CAP_MAX)
		return -1;
	/*
	 * Enabling is a person's word: it clears whatever the daemon had
	 * learnt against the account (suspended, refresh failed,
	 * exhausted) and the reason; the refresher sets it right again
	 * should it still hold.
	 */
	if ((st = db_prepare(db, __func__, "UPDATE accounts SET"
	    " enabled = COALESCE(?1, enabled),"
	    " state = CASE WHEN ?1 IS NULL THEN state"
	    "  WHEN ?1 THEN 'enabled' ELSE 'disabled' END,"
	    " last_error = CASE WHEN ?1 THEN '' ELSE last_error END,"
	    " exhausted_until = CASE WHEN ?1 THEN 0 ELSE exhausted_until END,"
	    " label = COALESCE(?2, label), proxy = COALESCE(?3, proxy),"
	    " max_inflight = COALESCE(?4, max_inflight),"
	    " rpm = COALESCE(?5, rpm), region = COALESCE(?6, region),"
	    " profile_arn = COALESCE(?7, profile_arn), updated_at = ?8"
	    " WHERE id = ?9")) == NULL)
		return -1;
	if ((p->ap_enabled == -1 ? sqlite3_bind_null(st, 1) :
	    sqlite3_bind_int(st, 1, p->ap_enabled != 0)) != SQLITE_OK ||
	    db_bind_opt_text(st, 2, p->ap_label) != SQLITE_OK ||
	    db_bind_opt_text(st, 3, p->ap_proxy) != SQLITE_OK ||
	    db_bind_opt_int(st, 4, p->ap_max_inflight) != SQLITE_OK ||
	    db_bind_opt_int(st, 5, p->ap_rpm) != SQLITE_OK ||
	    db_bind_opt_text(st, 6, p->ap_region) != SQLITE_OK ||
	    db_bind_opt_text(st, 7, p->ap_profile_arn) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 8, now_wall()) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 9, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
}

int
db_account_set_health(sqlite3 *db, int64_t id, const char *state,
    int64_t exhausted_until, const char *reason)
{
	sqlite3_stmt	*st;

	if (state != NULL && strcmp(state, "suspended") != 0 &&
	    strcmp(state, "enabled") != 0)
		return -1;
	/* a person's disable wins over what the daemon learnt */
	if ((st = db_prepare(db, __func__, "UPDATE accounts SET"
	    " state = CASE WHEN ?1 IS NULL OR NOT enabled THEN state"
	    "  ELSE ?1 END,"
	    " exhausted_until = CASE WHEN ?2 < 0 THEN exhausted_until"
	    "  ELSE ?2 END,"
	    " last_error = COALESCE(?3, last_error), updated_at = ?4"
	    " WHERE id = ?5")) == NULL)
		return -1;
	if (db_bind_opt_text(st, 1, state) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, exhausted_until) != SQLITE_OK ||
	    db_bind_opt_text(st, 3, reason) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, now_wall()) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 5, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
}

int
db_account_state(const struct db_account *a, int64_t now, int64_t *until)
{
	struct shm_acct_meta	 m;

	db_account_meta(a, &m);
	*until = 0;
	if (m.am_state != ACCT_ENABLED)
		return m.am_state;
	if (a->a_exhausted_until > now) {
		*until = a->a_exhausted_until;
		return ACCT_EXHAUSTED;
	}
	if (a->a_cooldown_until > now) {
		*until = a->a_cooldown_until;
		return ACCT_COOLDOWN;
	}
	return ACCT_ENABLED;
}

int
db_account_set_live(sqlite3 *db, int64_t id, int64_t cooldown_until,
    const struct acct_counters *ac)
{
	sqlite3_stmt	*st;

	if ((st = db_prepare(db, __func__, "UPDATE accounts SET"
	    " cooldown_until = ?1, requests = ?2, failures = ?3,"
	    " tokens_in = ?4, tokens_out = ?5, credits = ?6"
	    " WHERE id = ?7")) == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1, cooldown_until) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, ac->ac_requests) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, ac->ac_failures) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, ac->ac_tokens_in) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 5, ac->ac_tokens_out) != SQLITE_OK ||
	    sqlite3_bind_double(st, 6, (double)ac->ac_credits / 1e6) !=
	    SQLITE_OK ||
	    sqlite3_bind_int64(st, 7, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
}

int
db_account_set_usage(sqlite3 *db, int64_t id, int64_t used, int64_t limit,
    int64_t reset, const char *subscription, const char *email)
{
	sqlite3_stmt	*st;

	if ((st = db_prepare(db, __func__, "UPDATE accounts SET"
	    " usage_used = ?1, usage_limit = ?2, usage_reset = ?3,"
	    " usage_checked = ?4, subscription = COALESCE(?5, subscription),"
	    " email = COALESCE(?6, email) WHERE id = ?7")) == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1, used) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, limit) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, reset) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, now_wall()) != SQLITE_OK ||
	    db_bind_opt_text(st, 5, subscription) != SQLITE_OK ||
	    db_bind_opt_text(st, 6, email) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 7, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
}

int64_t
db_account_find_refresh(sqlite3 *db, const char *rt)
{
	sqlite3_stmt	*st;
	char		 hash[65];
	int64_t		 id = -1;
	int		 r;

	if (rt == NULL || db_refresh_hash(rt, hash) == -1)
		return -1;
	if ((st = db_prepare(db, __func__,
	    "SELECT id FROM accounts WHERE refresh_hash = ?")) == NULL)
		return -1;
	if (sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	if ((r = db_step(db, __func__, st)) == 1)
		id = sqlite3_column_int64(st, 0);
	else if (r == 0)
		id = 0;
	sqlite3_finalize(st);
	return id;
}

int
db_accounts_hash_backfill(sqlite3 *db)
{
	sqlite3_stmt	*st = NULL, *up = NULL;
	const void	*blob;
	char		*rt, hash[65];
	int		 r, n = 0;

	if (!secret_has_private())
		return 0;
	/* one transaction: 10,000 old rows are one commit, not 10,000 */
	if (db_begin(db, __func__) == -1)
		return -1;
	if ((st = db_prepare(db, __func__, "SELECT id, refresh_token_enc"
	    " FROM accounts WHERE refresh_hash IS NULL")) == NULL ||
	    (up = db_prepare(db, __func__, "UPDATE OR IGNORE accounts SET"
	    " refresh_hash = ? WHERE id = ?")) == NULL) {
		n = -1;
		goto done;
	}
	while ((r = db_step(db, __func__, st)) == 1) {
		if ((blob = sqlite3_column_blob(st, 1)) == NULL ||
		    (rt = secret_decrypt(blob, (size_t)sqlite3_column_bytes(st,
		    1), SECRET_AAD_REFRESH)) == NULL)
			continue;
		r = db_refresh_hash(rt, hash);
		secret_free(rt, 0);
		if (r == -1)
			continue;
		/* OR IGNORE: of two old rows with one token, the second
		 * stays without a hash (and so can be found and deleted) */
		if (sqlite3_bind_text(up, 1, hash, -1, SQLITE_TRANSIENT) ||
		    sqlite3_bind_int64(up, 2, sqlite3_column_int64(st, 0)) ||
		    db_step(db, __func__, up) == -1) {
			n = -1;
			break;
		}
		n += sqlite3_changes(db);
		sqlite3_reset(up);
	}
	if (r == -1)
		n = -1;
 done:
	sqlite3_finalize(st);
	sqlite3_finalize(up);
	if (n == -1)
		db_rollback(db);
	else if (db_commit(db, __func__) == -1)
		n = -1;
	return n;
}

/* ---- feed lines, import, export ---- */

#define DB_IMPORT_DEPTH	16
#define DB_LINE_DEPTH	8

/* ISO 8601 UTC ("2025-01-31T12:00:00.000Z", an offset or none): wall
 * seconds, or -1. */
static int64_t
db_parse_iso8601(const char *s)
{
	struct tm	 tm;
	int		 y, mo, d, h, mi, sec, n = 0, oh, om;
	int64_t		 t;
	char		 sign;

	if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h,
	    &mi, &sec, &n) != 6 || n == 0)
		return -1;
	s += n;
	if (*s == '.')
		for (s++; isdigit((unsigned char)*s); s++)
			;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60 || (t = timegm(&tm)) == -1)
		return -1;
	if (*s == 'Z' || *s == 'z')
		s++;
	else if (*s == '+' || *s == '-') {
		sign = *s;
		n = 0;
		if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5)
			return -1;
		s += 1 + n;
		t += (sign == '+' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
	}
	return *s == '\0' ? t : -1;
}

/* A string member: 0 absent or null (*out NULL), 1 found, -1 not a
 * string (err says so: the name only). */
static int
db_jstr(struct json_object *o, const char *name, const char **out,
    char *err, size_t errsz)
{
	struct json_object	*v;

	*out = NULL;
	if (!json_object_object_get_ex(o, name, &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string) ||
	    strlen(json_object_get_string(v)) !=
	    (size_t)json_object_get_string_len(v)) {
		snprintf(err, errsz, "\"%s\" must be a string", name);
		return -1;
	}
	*out = json_object_get_string(v);
	return 1;
}

/* A count member (maxConcurrency, rpm): 0..DB_CAP_MAX, absent 0. */
static int
db_jcap(struct json_object *o, const char *name, int *out, char *err,
    size_t errsz)
{
	struct json_object	*v;
	int64_t			 n;

	*out = 0;
	if (!json_object_object_get_ex(o, name, &v) ||
	    json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_int) ||
	    (n = json_object_get_int64(v)) < 0 || n > DB_CAP_MAX) {
		snprintf(err, errsz, "\"%s\" must be an integer from 0 to %d "
		    "(0: no limit)", name, DB_CAP_MAX);
		return -1;
	}
	*out = (int)n;
	return 1;
}

/*
 * An account from a JSON object: the POST /v2/accounts body, an export
 * entry, or the Kiro IDE credential file (authMethod, provider,
 * expiresAt; the IdC form carries clientId and clientSecret). Unknown
 * members are ignored (an export entry carries hints). The messages
 * name members, never their values.
 */
int
db_account_from_json(struct json_object *o, struct db_account_new *an,
    char *err, size_t errsz)
{
	struct json_object	*v;
	const char		*type, *auth, *exp;
	int64_t			 t;

	memset(an, 0, sizeof(*an));
	an->an_enabled = 1;
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errsz, "an account must be a JSON object");
		return -1;
	}
	if (db_jstr(o, "type", &type, err, errsz) == -1 ||
	    db_jstr(o, "authMethod", &auth, err, errsz) == -1 ||
	    db_jstr(o, "label", &an->an_label, err, errsz) == -1 ||
	    db_jstr(o, "region", &an->an_region, err, errsz) == -1 ||
	    db_jstr(o, "profileArn", &an->an_profile_arn, err, errsz) == -1 ||
	    db_jstr(o, "clientId", &an->an_client_id, err, errsz) == -1 ||
	    db_jstr(o, "clientSecret", &an->an_client_secret, err, errsz) ==
	    -1 ||
	    db_jstr(o, "refreshToken", &an->an_refresh_token, err, errsz) ==
	    -1 ||
	    db_jstr(o, "proxy", &an->an_proxy, err, errsz) == -1 ||
	    db_jstr(o, "accessToken", &an->an_access_token, err, errsz) ==
	    -1 ||
	    db_jcap(o, "maxConcurrency", &an->an_max_inflight, err, errsz) ==
	    -1 ||
	    db_jcap(o, "rpm", &an->an_rpm, err, errsz) == -1)
		return -1;
	if (an->an_client_id && *an->an_client_id == '\0')
		an->an_client_id = NULL;
	if (an->an_client_secret && *an->an_client_secret == '\0')
		an->an_client_secret = NULL;
	if (type != NULL) {
		if (strcmp(type, "idc") != 0 && strcmp(type, "social") != 0) {
			snprintf(err, errsz, "\"type\" must be \"idc\" or "
			    "\"social\"");
			return -1;
		}
		an->an_type = type;
	} else if (auth != NULL) {
		/* the Kiro IDE's names */
		if (strcasecmp(auth, "social") == 0)
			an->an_type = "social";
		else if (strcasecmp(auth, "idc") == 0 ||
		    strcasecmp(auth, "builder-id") == 0 ||
		    strcasecmp(auth, "builderid") == 0)
			an->an_type = "idc";
		else {
			snprintf(err, errsz, "\"authMethod\" must be social, "
			    "IdC or builder-id");
			return -1;
		}
	} else
		an->an_type = an->an_client_id && an->an_client_secret ?
		    "idc" : "social";
	if (an->an_refresh_token == NULL || *an->an_refresh_token == '\0') {
		snprintf(err, errsz, "\"refreshToken\" is required (an export "
		    "without secrets cannot be imported)");
		return -1;
	}
	if (strlen(an->an_refresh_token) > DB_ACCOUNT_SECRET_MAX) {
		snprintf(err, errsz, "\"refreshToken\" is longer than %d bytes",
		    DB_ACCOUNT_SECRET_MAX);
		return -1;
	}
	if (strcmp(an->an_type, "idc") == 0) {
		if (an->an_client_id == NULL || an->an_client_secret == NULL) {
			snprintf(err, errsz, "an idc account needs "
			    "\"clientId\" and \"clientSecret\" (for a Kiro "
			    "credential file, from the clientIdHash file beside "
			    "it)");
			return -1;
		}
		if (strlen(an->an_client_id) >=
		    sizeof(((struct db_account *)0)->a_client_id)) {
			snprintf(err, errsz, "\"clientId\" is too long");
			return -1;
		}
		if (strlen(an->an_client_secret) > DB_ACCOUNT_SECRET_MAX) {
			snprintf(err, errsz, "\"clientSecret\" is longer than "
			    "%d bytes", DB_ACCOUNT_SECRET_MAX);
			return -1;
		}
	} else if (an->an_client_id != NULL || an->an_client_secret != NULL) {
		snprintf(err, errsz, "a social account takes no \"clientId\" "
		    "or \"clientSecret\"");
		return -1;
	}
	if (an->an_label != NULL && !db_account_label_ok(an->an_label)) {
		snprintf(err, errsz, "\"label\" must be at most 127 bytes "
		    "without control characters");
		return -1;
	}
	if (an->an_region != NULL && *an->an_region != '\0' &&
	    !db_account_region_ok(an->an_region)) {
		snprintf(err, errsz, "\"region\" must be a region name such "
		    "as us-east-1");
		return -1;
	}
	if (an->an_profile_arn != NULL && strlen(an->an_profile_arn) >=
	    sizeof(((struct db_account *)0)->a_profile_arn)) {
		snprintf(err, errsz, "\"profileArn\" is too long");
		return -1;
	}
	if (an->an_proxy != NULL && (!db_account_proxy_ok(an->an_proxy) ||
	    strstr(an->an_proxy, ":***@") != NULL)) {
		/* the URL may hold a password: never echo it */
		snprintf(err, errsz, "\"proxy\" must be http://, https://, "
		    "socks5:// or socks5h://[user:password@]host[:port]");
		return -1;
	}
	if (json_object_object_get_ex(o, "enabled", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			snprintf(err, errsz, "\"enabled\" must be true or "
			    "false");
			return -1;
		}
		an->an_enabled = json_object_get_boolean(v);
	}
	/* a live access token is taken only with a usable expiry */
	if (an->an_access_token != NULL) {
		t = -1;
		if (json_object_object_get_ex(o, "expiresAt", &v)) {
			if (json_object_is_type(v, json_type_int)) {
				t = json_object_get_int64(v);
				if (t > 100000000000LL)	/* milliseconds */
					t /= 1000;
			} else if (db_jstr(o, "expiresAt", &exp, err,
			    errsz) == 1)
				t = db_parse_iso8601(exp);
		}
		if (t <= now_wall() + 60 || *an->an_access_token == '\0' ||
		    strlen(an->an_access_token) >= SHM_TOKEN_MAX)
			an->an_access_token = NULL;
		else
			an->an_expires = t;
	}
	err[0] = '\0';
	return 0;
}

/* No whitespace, controls or quotes inside a bare token. */
static int
db_token_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '"' ||
		    *s == '\\')
			return 0;
	return 1;
}

int
db_account_parse(char *line, struct json_object **o,
    struct db_account_new *an, char *err, size_t errsz)
{
	struct jsonr_err	 je;
	char			*end, *c1, *c2;
	size_t			 n;

	*o = NULL;
	memset(an, 0, sizeof(*an));
	an->an_enabled = 1;
	while (*line == ' ' || *line == '\t')
		line++;
	n = strlen(line);
	while (n > 0 && strchr(" \t\r\n", line[n - 1]) != NULL)
		line[--n] = '\0';
	if (n == 0) {
		snprintf(err, errsz, "empty line");
		return -1;
	}
	if (*line == '{') {
		memset(&je, 0, sizeof(je));
		if ((*o = jsonr_parse(line, n, DB_LINE_DEPTH, &je)) == NULL) {
			snprintf(err, errsz, "invalid JSON at offset %zu: %s",
			    je.je_off, je.je_msg ? je.je_msg : "null");
			return -1;
		}
		return db_account_from_json(*o, an, err, errsz);
	}
	/*
	 * A bare line: "refreshToken" (social) or
	 * "clientId:clientSecret:refreshToken" (idc). AWS refresh tokens
	 * may hold a ':' of their own, so two colons or more make an idc
	 * line and the token is all after the second.
	 */
	if (!db_token_ok(line)) {
		snprintf(err, errsz, "not an account: a line is a JSON object, "
		    "a refresh token, or clientId:clientSecret:refreshToken "
		    "(no spaces or quotes)");
		return -1;
	}
	if ((c1 = strchr(line, ':')) != NULL &&
	    (c2 = strchr(c1 + 1, ':')) != NULL) {
		*c1 = *c2 = '\0';
		an->an_type = "idc";
		an->an_client_id = line;
		an->an_client_secret = c1 + 1;
		an->an_refresh_token = c2 + 1;
		end = c2 + 1;
		if (*line == '\0' || c1[1] == '\0' || *end == '\0') {
			snprintf(err, errsz, "clientId:clientSecret:"
			    "refreshToken with a part empty");
			return -1;
		}
		if (strlen(line) >=
		    sizeof(((struct db_account *)0)->a_client_id)) {
			snprintf(err, errsz, "clientId is too long");
			return -1;
		}
		if (strlen(an->an_client_secret) > DB_ACCOUNT_SECRET_MAX) {
			snprintf(err, errsz, "clientSecret is longer than %d "
			    "bytes", DB_ACCOUNT_SECRET_MAX);
			return -1;
		}
	} else {
		an->an_type = "social";
		an->an_refresh_token = line;
	}
	if (strlen(an->an_refresh_token) > DB_ACCOUNT_SECRET_MAX) {
		snprintf(err, errsz, "refresh token is longer than %d bytes",
		    DB_ACCOUNT_SECRET_MAX);
		return -1;
	}
	err[0] = '\0';
	return 0;
}

static struct json_object *
db_jtime(int64_t t)
{
	char	 s[32];

	return fmt_iso8601(t, s) ? json_object_new_string(s) : NULL;
}

static struct json_object *
db_jstr_or_null(const char *s)
{
	return s != NULL && *s != '\0' ? json_object_new_string(s) : NULL;
}

/* Zeroes a string json-c holds: its copies of secrets. */
static void
db_jscrub(struct json_object *o, const char *name)
{
	struct json_object	*v;

	if (json_object_object_get_ex(o, name, &v) &&
	    json_object_is_type(v, json_type_string))
		explicit_bzero((char *)json_object_get_string(v),
		    (size_t)json_object_get_string_len(v));
}

static const char *const db_export_secrets[] = { "refreshToken",
	"clientSecret", "accessToken" };

static char *
db_decrypt_col(sqlite3_stmt *st, int col, const char *aad)
{
	const void	*blob = sqlite3_column_blob(st, col);

	if (blob == NULL)
		return NULL;
	return secret_decrypt(blob, (size_t)sqlite3_column_bytes(st, col),
	    aad);
}

static int
db_export_entry(sqlite3_stmt *st, int with_secrets, struct json_object *arr)
{
	struct json_object	*e;
	char			 masked[SHM_PROXY_MAX];
	char			*rt = NULL, *cs = NULL, *at = NULL;
	const char		*type, *proxy;
	int			 idc;

	if ((e = json_object_new_object()) == NULL)
		return -1;
	type = (const char *)sqlite3_column_text(st, 1);
	idc = type != NULL && strcmp(type, "idc") == 0;
	proxy = (const char *)sqlite3_column_text(st, 6);
	json_object_object_add(e, "type", json_object_new_string(db_nz(type)));
	json_object_object_add(e, "label", json_object_new_string(
	    db_nz((const char *)sqlite3_column_text(st, 2))));
	json_object_object_add(e, "enabled",
	    json_object_new_boolean(sqlite3_column_int(st, 3) != 0));
	json_object_object_add(e, "region",
	    db_jstr_or_null((const char *)sqlite3_column_text(st, 4)));
	json_object_object_add(e, "profileArn",
	    db_jstr_or_null((const char *)sqlite3_column_text(st, 5)));
	if (!with_secrets) {
		db_proxy_mask(proxy, masked, sizeof(masked));
		proxy = masked;
	}
	json_object_object_add(e, "proxy", db_jstr_or_null(proxy));
	json_object_object_add(e, "maxConcurrency",
	    json_object_new_int(sqlite3_column_int(st, 7)));
	json_object_object_add(e, "rpm",
	    json_object_new_int(sqlite3_column_int(st, 8)));
	json_object_object_add(e, "clientId",
	    db_jstr_or_null((const char *)sqlite3_column_text(st, 9)));
	if (!with_secrets) {
		json_object_object_add(e, "refreshTokenHint", db_jstr_or_null(
		    (const char *)sqlite3_column_text(st, 10)));
		json_object_object_add(e, "clientSecretHint", db_jstr_or_null(
		    (const char *)sqlite3_column_text(st, 11)));
		return json_object_array_add(arr, e) == 0 ? 0 : -1;
	}
	rt = db_decrypt_col(st, 12, SECRET_AAD_REFRESH);
	if (idc)
		cs = db_decrypt_col(st, 13, SECRET_AAD_CLIENT);
	at = db_decrypt_col(st, 14, SECRET_AAD_ACCESS);
	if (rt == NULL || (idc && cs == NULL)) {
		/* the entry stays, so the file says which one is lost */
		log_warnx("%s: account %lld: stored secrets unreadable",
		    __func__, (long long)sqlite3_column_int64(st, 0));
		json_object_object_add(e, "error", json_object_new_string(
		    "stored secrets unreadable (wrong key file?)"));
	} else {
		json_object_object_add(e, "refreshToken",
		    json_object_new_string(rt));
		json_object_object_add(e, "clientSecret", db_jstr_or_null(cs));
	}
	if (at != NULL) {
		json_object_object_add(e, "accessToken",
		    json_object_new_string(at));
		json_object_object_add(e, "expiresAt",
		    db_jtime(sqlite3_column_int64(st, 15)));
	}
	secret_free(rt, 0);
	secret_free(cs, 0);
	secret_free(at, 0);
	return json_object_array_add(arr, e) == 0 ? 0 : -1;
}

int
db_accounts_export(sqlite3 *db, int with_secrets, struct buf *out)
{
	sqlite3_stmt		*st = NULL;
	struct json_object	*root = NULL, *arr, *e;
	const char		*s;
	size_t			 n = 0, i, j;
	int			 r, rv = -1;

	if (with_secrets && !secret_has_private()) {
		log_warnx("%s: this process cannot open secrets", __func__);
		return -1;
	}
	if ((root = json_object_new_object()) == NULL ||
	    (arr = json_object_new_array()) == NULL)
		goto done;
	json_object_object_add(root, "version", json_object_new_int(1));
	json_object_object_add(root, "exportedAt", db_jtime(now_wall()));
	json_object_object_add(root, "accounts", arr);
	if ((st = db_prepare(db, __func__, "SELECT id, type, label, enabled,"
	    " region, profile_arn, proxy, max_inflight, rpm, client_id,"
	    " refresh_token_hint, client_secret_hint, refresh_token_enc,"
	    " client_secret_enc, access_token_enc, access_token_expires"
	    " FROM accounts ORDER BY id")) == NULL)
		goto done;
	while ((r = db_step(db, __func__, st)) == 1)
		if (db_export_entry(st, with_secrets, arr) == -1)
			goto done;
	if (r == -1)
		goto done;
	s = json_object_to_json_string_length(root, JSON_C_TO_STRING_PRETTY |
	    JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	if (s == NULL || buf_append(out, s, n) == -1 ||
	    buf_append(out, "\n", 1) == -1)
		goto done;
	rv = 0;
 done:
	sqlite3_finalize(st);
	if (root != NULL && with_secrets) {
		/* json-c's copies: the text and each secret member */
		if ((s = json_object_to_json_string_length(root,
		    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
		    JSON_C_TO_STRING_NOSLASHESCAPE, &n)) != NULL)
			explicit_bzero((char *)s, n);
		if (json_object_object_get_ex(root, "accounts", &arr))
			for (i = 0; i < json_object_array_length(arr); i++) {
				e = json_object_array_get_idx(arr, i);
				for (j = 0; j < nitems(db_export_secrets); j++)
					db_jscrub(e, db_export_secrets[j]);
			}
	}
	json_object_put(root);
	return rv;
}

static void
db_report(struct json_object *rep, size_t index, const char *status,
    int64_t id, const char *error)
{
	struct json_object	*e;

	if ((e = json_object_new_object()) == NULL)
		return;
	json_object_object_add(e, "index", json_object_new_int64(
	    (int64_t)index));
	json_object_object_add(e, "status", json_object_new_string(status));
	if (id > 0)
		json_object_object_add(e, "id", json_object_new_int64(id));
	if (error != NULL)
		json_object_object_add(e, "error",
		    json_object_new_string(error));
	json_object_array_add(rep, e);
}

int
db_accounts_import(sqlite3 *db, const char *json, size_t len,
    int max_accounts, struct json_object **report, char *err, size_t errsz)
{
	struct json_object	*root, *list = NULL, *rep = NULL, *e;
	struct db_account_new	 an;
	struct jsonr_err	 je;
	char			 why[200];
	size_t			 i, n;
	int64_t			 id, have = 0;
	int			 rv = -1;

	*report = NULL;
	memset(&je, 0, sizeof(je));
	if ((root = jsonr_parse(json, len, DB_IMPORT_DEPTH, &je)) == NULL) {
		if (je.je_code == JSONR_OK)
			snprintf(err, errsz, "the file is JSON null, not an "
			    "export");
		else
			snprintf(err, errsz, "not JSON: %s at offset %zu",
			    je.je_msg ? je.je_msg : "error", je.je_off);
		return -1;
	}
	if (json_object_is_type(root, json_type_array))
		list = root;
	else if (json_object_is_type(root, json_type_object)) {
		if (json_object_object_get_ex(root, "accounts", &list)) {
			if (!json_object_is_type(list, json_type_array)) {
				snprintf(err, errsz, "\"accounts\" must be an "
				    "array");
				list = NULL;
				goto done;
			}
		} else
			list = NULL;	/* one entry: root itself */
	} else {
		snprintf(err, errsz, "expected an export object, an array of "
		    "accounts or one account object");
		goto done;
	}
	if ((rep = json_object_new_array()) == NULL) {
		snprintf(err, errsz, "out of memory");
		rv = -2;
		goto done;
	}
	/* one transaction: an import is all there or not at all, and the
	 * duplicate check sees the entries added before it */
	if (db_begin(db, __func__) == -1) {
		snprintf(err, errsz, "database error");
		rv = -2;
		goto done;
	}
	/* what the daemon could not give a slot is not stored */
	if (max_accounts > 0 && (have = db_count(db, "SELECT COUNT(*) FROM"
	    " accounts")) == -1) {
		db_rollback(db);
		snprintf(err, errsz, "database error");
		rv = -2;
		goto done;
	}
	n = list != NULL ? json_object_array_length(list) : 1;
	for (i = 0; i < n; i++) {
		e = list != NULL ? json_object_array_get_idx(list, i) : root;
		if (db_account_from_json(e, &an, why, sizeof(why)) == -1) {
			db_report(rep, i, "invalid", 0, why);
			continue;
		}
		if (max_accounts > 0 && have >= max_accounts) {
			db_report(rep, i, "failed", 0, "the account table is "
			    "full (max_accounts)");
			continue;
		}
		if ((id = db_account_find_refresh(db, an.an_refresh_token)) ==
		    -1) {
			db_rollback(db);
			snprintf(err, errsz, "database error");
			rv = -2;
			goto done;
		}
		if (id > 0) {
			db_report(rep, i, "duplicate", id, "an account with "
			    "this refresh token exists");
			continue;
		}
		if ((id = db_account_add(db, &an)) == -1) {
			/* an I/O or full-disk error may have rolled the
			 * transaction back: what follows would then be
			 * committed row by row */
			if (sqlite3_get_autocommit(db)) {
				snprintf(err, errsz, "database error");
				rv = -2;
				goto done;
			}
			db_report(rep, i, "failed", 0, "cannot store the "
			    "account");
			continue;
		}
		db_report(rep, i, "added", id, NULL);
		have++;
	}
	if (db_commit(db, __func__) == -1) {
		snprintf(err, errsz, "database error");
		rv = -2;
		goto done;
	}
	*report = rep;
	rep = NULL;
	err[0] = '\0';
	rv = 0;
 done:
	json_object_put(rep);
	if (root != NULL) {
		/* json-c's copies of the secrets */
		n = list != NULL ? json_object_array_length(list) : 1;
		for (i = 0; i < n; i++) {
			e = list != NULL ? json_object_array_get_idx(list, i) :
			    root;
			if (json_object_is_type(e, json_type_object)) {
				db_jscrub(e, "refreshToken");
				db_jscrub(e, "clientSecret");
				db_jscrub(e, "accessToken");
			}
		}
	}
	json_object_put(root);
	return rv;
}

/* ---- settings ---- */

enum db_stype { DST_BOOL, DST_INT, DST_STRATEGY };

static const struct db_setting_def {
	const char	*sd_name;
	int		 sd_type;
	int		 sd_min, sd_max;
	const char	*sd_default;
} db_setting_defs[] = {
	{ "poolStrategy", DST_STRATEGY, 0, 0, "round_robin" },
	{ "poolStickyTtl", DST_INT, 0, 86400, "0" },
	{ "poolQueueTimeout", DST_INT, 0, 300, "10" },
	{ "poolMaxAttempts", DST_INT, 1, 8, "3" },
	{ "debugLog", DST_BOOL, 0, 0, "false" },
	{ "enableRequestLog", DST_BOOL, 0, 0, "true" },
	{ "logRetentionDays", DST_INT, 0, 3650, "30" },
	{ "enableIPRateLimit", DST_BOOL, 0, 0, "false" },
	{ "ipRateLimitWindow", DST_INT, 1, 1440, "1" },
	{ "ipRateLimitMax", DST_INT, 1, 1000000, "100" },
};

/* Settings rows never shown: secrets. */
static int
db_setting_secret(const char *name)
{
	/* oidc_client:<region>: the device flow's kept registration,
	 * sealed, and not a setting anyone should see or set */
	return strcmp(name, AUTH_PASSWORD_SETTING) == 0 ||
	    strcmp(name, "apiKey") == 0 ||
	    strncmp(name, "oidc_client:", 12) == 0;
}

static const struct db_setting_def *
db_setting_def(const char *name)
{
	size_t	 i;

	for (i = 0; i < nitems(db_setting_defs); i++)
		if (strcmp(db_setting_defs[i].sd_name, name) == 0)
			return &db_setting_defs[i];
	return NULL;
}

/* A stored text as the setting's value: 0 with *iv, or -1 invalid. */
static int
db_setting_value(const struct db_setting_def *sd, const char *s, int *iv)
{
	char	*end;
	long	 n;

	switch (sd->sd_type) {
	case DST_STRATEGY:
		return (*iv = pool_strategy_parse(s)) == -1 ? -1 : 0;
	case DST_BOOL:
		if (strcmp(s, "true") == 0)
			*iv = 1;
		else if (strcmp(s, "false") == 0)
			*iv = 0;
		else
			return -1;
		return 0;
	default:
		errno = 0;
		n = strtol(s, &end, 10);
		if (*s == '\0' || *end != '\0' || errno != 0 ||
		    n < sd->sd_min || n > sd->sd_max)
			return -1;
		*iv = (int)n;
		return 0;
	}
}

int
db_setting_check(const char *name, struct json_object *v, char *out,
    size_t outsz)
{
	const struct db_setting_def	*sd;
	int				 iv;

	if ((sd = db_setting_def(name)) == NULL)
		return 0;
	switch (sd->sd_type) {
	case DST_STRATEGY:
		if (!json_object_is_type(v, json_type_string) ||
		    pool_strategy_parse(json_object_get_string(v)) == -1) {
			snprintf(out, outsz, "\"%s\" must be one of "
			    "round_robin, least_inflight, random, weighted, "
			    "sequential", name);
			return -1;
		}
		strlcpy_qr(out, json_object_get_string(v), outsz);
		return 1;
	case DST_BOOL:
		if (!json_object_is_type(v, json_type_boolean)) {
			snprintf(out, outsz, "\"%s\" must be true or false",
			    name);
			return -1;
		}
		strlcpy_qr(out, json_object_get_boolean(v) ? "true" : "false",
		    outsz);
		return 1;
	default:
		if (!json_object_is_type(v, json_type_int) ||
		    json_object_get_int64(v) < sd->sd_min ||
		    json_object_get_int64(v) > sd->sd_max) {
			snprintf(out, outsz, "\"%s\" must be an integer "
			    "from %d to %d", name, sd->sd_min, sd->sd_max);
			return -1;
		}
		iv = (int)json_object_get_int64(v);
		snprintf(out, outsz, "%d", iv);
		return 1;
	}
}

/* A known setting's value: the stored one when valid, else the default. */
static int
db_setting_int(sqlite3 *db, const struct db_setting_def *sd)
{
	char	 val[256];
	int	 iv;

	if (db_setting_get(db, sd->sd_name, val, sizeof(val)) != 1 ||
	    db_setting_value(sd, val, &iv) == -1) {
		if (db_setting_value(sd, sd->sd_default, &iv) == -1)
			iv = 0;
	}
	return iv;
}

int
db_settings_load_shm(sqlite3 *db, struct shm *shm)
{
	struct shm_hdr	*h = shm->shm_hdr;

	atomic_store(&h->sh_strategy,
	    db_setting_int(db, db_setting_def("poolStrategy")));
	atomic_store(&h->sh_sticky_ttl,
	    db_setting_int(db, db_setting_def("poolStickyTtl")));
	atomic_store(&h->sh_queue_ms,
	    db_setting_int(db, db_setting_def("poolQueueTimeout")) * 1000);
	atomic_store(&h->sh_max_attempts,
	    db_setting_int(db, db_setting_def("poolMaxAttempts")));
	return 0;
}

struct json_object *
db_settings_json(sqlite3 *db)
{
	const struct db_setting_def	*sd;
	struct json_object		*o;
	sqlite3_stmt			*st;
	const char			*name, *val;
	size_t				 i;
	int				 iv;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	for (i = 0; i < nitems(db_setting_defs); i++) {
		sd = &db_setting_defs[i];
		iv = db_setting_int(db, sd);
		if (sd->sd_type == DST_STRATEGY)
			json_object_object_add(o, sd->sd_name,
			    json_object_new_string(pool_strategy_name(iv)));
		else if (sd->sd_type == DST_BOOL)
			json_object_object_add(o, sd->sd_name,
			    json_object_new_boolean(iv));
		else
			json_object_object_add(o, sd->sd_name,
			    json_object_new_int(iv));
	}
	if ((st = db_prepare(db, __func__,
	    "SELECT name, value FROM settings ORDER BY name")) == NULL) {
		json_object_put(o);
		return NULL;
	}
	while (db_step(db, __func__, st) == 1) {
		name = (const char *)sqlite3_column_text(st, 0);
		val = (const char *)sqlite3_column_text(st, 1);
		if (name == NULL || val == NULL || db_setting_secret(name) ||
		    db_setting_def(name) != NULL)
			continue;
		json_object_object_add(o, name, json_object_new_string(val));
	}
	sqlite3_finalize(st);
	return o;
}

static int
db_account_exec_id(sqlite3 *db, const char *where, const char *sql,
    int64_t id)
{
	sqlite3_stmt	*st;

	if ((st = db_prepare(db, where, sql)) == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, where, st);
}

int
db_account_delete(sqlite3 *db, int64_t id)
{
	return db_account_exec_id(db, __func__,
	    "DELETE FROM accounts WHERE id = ?", id);
}

int
db_account_request_refresh(sqlite3 *db, int64_t id)
{
	return db_account_exec_id(db, __func__,
	    "UPDATE accounts SET refresh_requested = 1 WHERE id = ?", id);
}

int
db_accounts_load_shm(sqlite3 *db, struct shm *shm)
{
	sqlite3_stmt		*st = NULL;
	struct shm_acct_meta	 m;
	struct shm_acct_ix	 ix;
	struct db_account	 a;
	int64_t			*ids = NULL, *nids;
	size_t			 n = 0, cap = 0;
	char			*tok;
	const void		*blob;
	int			 r, slot, rv = 0;
	int			 can_open = secret_has_private();

	memset(&ix, 0, sizeof(ix));

	/*
	 * As db_keys_load_shm: the read happens under sh_lock, so an
	 * account added or deleted by a worker (which commits first and
	 * then locks) is never undone by this older view. Slots of live
	 * accounts are updated in place and keep the refresher's token.
	 * A worker (no private key) fills new slots without a token: the
	 * refresher renews them.
	 */
	shm_lock(shm);
	if ((st = db_prepare(db, __func__, "SELECT " DB_ACCOUNT_COLS ","
	    " access_token_enc FROM accounts ORDER BY id")) == NULL) {
		rv = -1;
		goto done;
	}
	while ((r = db_step(db, __func__, st)) == 1) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((nids = reallocarray(ids, cap, sizeof(*ids))) ==
			    NULL) {
				rv = -1;
				goto done;
			}
			ids = nids;
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	if (r == -1) {
		rv = -1;
		goto done;
	}
	shm_accts_retain_locked(shm, ids, n);
	/* without memory for the index, each put scans: slower, same */
	(void)shm_acct_ix_build(shm, &ix);
	sqlite3_reset(st);
	while ((r = db_step(db, __func__, st)) == 1) {
		db_account_row(st, &a);
		db_account_meta(&a, &m);
		tok = NULL;
		if (can_open && (blob = sqlite3_column_blob(st,
		    DB_ACCOUNT_NCOLS)) != NULL && (tok = secret_decrypt(blob,
		    (size_t)sqlite3_column_bytes(st, DB_ACCOUNT_NCOLS),
		    SECRET_AAD_ACCESS)) == NULL)
			log_warnx("%s: account %lld: stored access token "
			    "unreadable; it will be renewed", __func__,
			    (long long)m.am_id);
		slot = shm_acct_put_ix_locked(shm, &ix, &m, tok, a.a_expires);
		secret_free(tok, 0);
		if (slot == -1) {
			log_warnx("%s: no free account slot for account %lld "
			    "(max_accounts)", __func__, (long long)m.am_id);
			rv = -1;
			continue;
		}
		if (a.a_refresh_requested)
			atomic_store(&shm->shm_accts[slot].sa_refresh_wanted,
			    SHM_REFRESH_FORCED);
	}
	if (r == -1)
		rv = -1;
 done:
	shm_unlock(shm);
	sqlite3_finalize(st);
	shm_acct_ix_free(&ix);
	free(ids);
	if (rv == -1)
		log_warnx("%s: accounts not fully loaded", __func__);
	return rv;
}

char *
db_account_access(sqlite3 *db, int64_t id, int64_t *expires)
{
	sqlite3_stmt	*st;
	const void	*blob;
	char		*tok = NULL;

	*expires = 0;
	if ((st = db_prepare(db, __func__, "SELECT access_token_enc,"
	    " access_token_expires FROM accounts WHERE id = ?1")) == NULL)
		return NULL;
	sqlite3_bind_int64(st, 1, id);
	if (db_step(db, __func__, st) == 1 &&
	    (blob = sqlite3_column_blob(st, 0)) != NULL &&
	    (tok = secret_decrypt(blob, (size_t)sqlite3_column_bytes(st, 0),
	    SECRET_AAD_ACCESS)) != NULL)
		*expires = sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	return tok;
}

void
db_account_secrets_free(struct db_account_secrets *as)
{
	secret_free(as->as_refresh_token, 0);
	secret_free(as->as_client_secret, 0);
	as->as_refresh_token = as->as_client_secret = NULL;
}

int
db_account_secrets(sqlite3 *db, int64_t id, struct db_account_secrets *as)
{
	sqlite3_stmt	*st;
	const void	*blob;
	int		 r;

	memset(as, 0, sizeof(*as));
	if ((st = db_prepare(db, __func__, "SELECT id, type, region, client_id,"
	    " refresh_token_enc, client_secret_enc FROM accounts"
	    " WHERE id = ?")) == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	if ((r = db_step(db, __func__, st)) == 1) {
		as->as_id = sqlite3_column_int64(st, 0);
		db_col_text(st, 1, as->as_type, sizeof(as->as_type));
		db_col_text(st, 2, as->as_region, sizeof(as->as_region));
		db_col_text(st, 3, as->as_client_id, sizeof(as->as_client_id));
		blob = sqlite3_column_blob(st, 4);
		as->as_refresh_token = secret_decrypt(blob,
		    (size_t)sqlite3_column_bytes(st, 4), SECRET_AAD_REFRESH);
		if ((blob = sqlite3_column_blob(st, 5)) != NULL)
			as->as_client_secret = secret_decrypt(blob,
			    (size_t)sqlite3_column_bytes(st, 5),
			    SECRET_AAD_CLIENT);
		if (as->as_refresh_token == NULL || (strcmp(as->as_type,
		    "idc") == 0 && as->as_client_secret == NULL)) {
			log_warnx("%s: account %lld: stored secrets unreadable "
			    "(wrong key file?)", __func__, (long long)id);
			db_account_secrets_free(as);
			r = -1;
		}
	}
	sqlite3_finalize(st);
	return r;
}

int
db_account_refreshed(sqlite3 *db, int64_t id, const char *access,
    int64_t expires, const char *new_refresh, const char *profile_arn)
{
	sqlite3_stmt	*st = NULL;
	struct buf	 ab, rb;
	char		 hint[SECRET_HINT_MAX] = "", hash[65] = "";
	int		 r = -1;

	buf_init(&ab);
	buf_init(&rb);
	if (new_refresh != NULL && (*new_refresh == '\0' ||
	    strlen(new_refresh) > DB_ACCOUNT_SECRET_MAX))
		new_refresh = NULL;
	if (new_refresh != NULL) {
		secret_hint(new_refresh, hint);
		if (db_refresh_hash(new_refresh, hash) == -1)
			goto done;
	}
	/* A new refresh token replaces the old in the same statement as
	 * the access token: a crash cannot keep one without the other. */
	if ((st = db_prepare(db, __func__, "UPDATE accounts SET"
	    " access_token_enc = ?1, access_token_expires = ?2,"
	    " refresh_token_enc = COALESCE(?3, refresh_token_enc),"
	    " refresh_token_hint = CASE WHEN ?3 IS NULL THEN"
	    "  refresh_token_hint ELSE ?4 END,"
	    " refresh_hash = CASE WHEN ?3 IS NULL THEN refresh_hash"
	    "  ELSE ?8 END,"
	    " profile_arn = CASE WHEN ?5 = '' THEN profile_arn ELSE ?5 END,"
	    " last_error = '', refresh_requested = 0, last_refresh_at = ?6,"
	    " updated_at = ?6,"
	    " state = CASE WHEN enabled THEN 'enabled' ELSE state END"
	    " WHERE id = ?7")) == NULL)
		goto done;
	if (db_bind_secret(st, 1, access, SECRET_AAD_ACCESS, &ab) ||
	    sqlite3_bind_int64(st, 2, expires) ||
	    db_bind_secret(st, 3, new_refresh, SECRET_AAD_REFRESH, &rb) ||
	    sqlite3_bind_text(st, 4, hint, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 5, profile_arn ? profile_arn : "", -1,
	    SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 6, now_wall()) ||
	    sqlite3_bind_int64(st, 7, id) ||
	    sqlite3_bind_text(st, 8, hash, -1, SQLITE_STATIC))
		goto done;
	r = db_finish(db, __func__, st);
	st = NULL;
 done:
	sqlite3_finalize(st);
	if (ab.b_data != NULL)
		explicit_bzero(ab.b_data, ab.b_cap);
	buf_free(&ab);
	buf_free(&rb);
	return r;
}

int
db_account_refresh_failed(sqlite3 *db, int64_t id, int revoked,
    const char *reason)
{
	sqlite3_stmt	*st;

	/* A revoked refresh token will never work again: the account is
	 * disabled until an admin enables it (with a new token). Other
	 * failures mark it only once its access token has run out. */
	if ((st = db_prepare(db, __func__, "UPDATE accounts SET"
	    " last_error = ?1, refresh_requested = 0, updated_at = ?2,"
	    " enabled = CASE WHEN ?3 THEN 0 ELSE enabled END,"
	    " state = CASE WHEN ?3 THEN 'disabled'"
	    "  WHEN enabled AND access_token_expires <= ?2 + 60"
	    "  THEN 'refresh_failed' ELSE state END"
	    " WHERE id = ?4")) == NULL)
		return -1;
	if (sqlite3_bind_text(st, 1, reason, -1, SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 2, now_wall()) ||
	    sqlite3_bind_int(st, 3, revoked != 0) ||
	    sqlite3_bind_int64(st, 4, id)) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
}

int64_t
db_logs_count(sqlite3 *db)
{
	return db_count(db, "SELECT COUNT(*) FROM request_logs");
}

/* Optional text: an empty string is stored as NULL. */
static int
db_bind_opt(sqlite3_stmt *st, int col, const char *s)
{
	if (*s == '\0')
		return sqlite3_bind_null(st, col);
	return sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static int
db_bind_id(sqlite3_stmt *st, int col, int64_t id)
{
	if (id <= 0)
		return sqlite3_bind_null(st, col);
	return sqlite3_bind_int64(st, col, id);
}

int
db_logs_insert_batch(sqlite3 *db, const struct log_rec *lr, size_t n,
    char *errbuf, size_t errlen)
{
	sqlite3_stmt	*st = NULL;
	size_t		 i;

	/* Quiet helpers: the logger decides how often a failure is told. */
	if (db_begin(db, NULL) == -1)
		goto fail;
	if ((st = db_prepare(db, NULL, "INSERT INTO request_logs (ts_ms,"
	    " method, path, status, duration_us, client_ip, key_id,"
	    " account_id, model, tokens_in, tokens_out, credits, bytes_in,"
	    " bytes_out, error, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
	    " ?, ?, ?, ?, ?)")) == NULL)
		goto fail;
	for (i = 0; i < n; i++, lr++) {
		if (sqlite3_bind_int64(st, 1, lr->lr_time_ms) != SQLITE_OK ||
		    sqlite3_bind_text(st, 2, lr->lr_method, -1,
		    SQLITE_STATIC) != SQLITE_OK ||
		    sqlite3_bind_text(st, 3, lr->lr_path, -1,
		    SQLITE_STATIC) != SQLITE_OK ||
		    sqlite3_bind_int(st, 4, lr->lr_status) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 5, lr->lr_duration_us) != SQLITE_OK ||
		    sqlite3_bind_text(st, 6, lr->lr_client_ip, -1,
		    SQLITE_STATIC) != SQLITE_OK ||
		    db_bind_id(st, 7, lr->lr_key_id) != SQLITE_OK ||
		    db_bind_id(st, 8, lr->lr_account_id) != SQLITE_OK ||
		    db_bind_opt(st, 9, lr->lr_model) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 10, lr->lr_tokens_in) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 11, lr->lr_tokens_out) != SQLITE_OK ||
		    sqlite3_bind_double(st, 12, lr->lr_credits) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 13, lr->lr_bytes_in) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 14, lr->lr_bytes_out) != SQLITE_OK ||
		    db_bind_opt(st, 15, lr->lr_error) != SQLITE_OK ||
		    sqlite3_bind_int(st, 16, lr->lr_pid) != SQLITE_OK)
			goto fail;
		if (db_step(db, NULL, st) != 0)
			goto fail;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (db_exec(db, NULL, "COMMIT") == -1)
		goto fail;
	return 0;
 fail:
	/* the message before ROLLBACK replaces it */
	strlcpy_qr(errbuf, sqlite3_errmsg(db), errlen);
	sqlite3_finalize(st);
	if (!sqlite3_get_autocommit(db))
		db_rollback(db);
	return -1;
}

int
db_logs_prune(sqlite3 *db, int days)
{
	sqlite3_stmt	*st;

	if (days <= 0)
		return 0;
	if ((st = db_prepare(db, __func__,
	    "DELETE FROM request_logs WHERE ts_ms < ?")) == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1,
	    ((int64_t)now_wall() - (int64_t)days * 86400) * 1000) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
}
