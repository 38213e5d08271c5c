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

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
static int
db_begin(sqlite3 *db, const char *where)
{
	return db_exec(db, where, "BEGIN IMMEDIATE");
}

static int
db_commit(sqlite3 *db, const char *where)
{
	if (db_exec(db, where, "COMMIT") == -1) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

static void
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

/* Key names are printed one per line, tab separated, by qrelayctl. */
int
db_key_name_ok(const char *name)
{
	size_t	 i, n = strlen(name);

	if (n == 0 || n >= sizeof(((struct db_key *)0)->k_name))
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return 0;
	return 1;
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

int
db_account_list(sqlite3 *db, int (*cb)(const struct db_account *, void *),
    void *arg)
{
	sqlite3_stmt		*st;
	struct db_account	 a;
	int			 r;

	if ((st = db_prepare(db, __func__, "SELECT id, type, label, state,"
	    " enabled, access_token_expires, last_error FROM accounts"
	    " ORDER BY id")) == NULL)
		return -1;
	while ((r = db_step(db, __func__, st)) == 1) {
		memset(&a, 0, sizeof(a));
		a.a_id = sqlite3_column_int64(st, 0);
		db_col_text(st, 1, a.a_type, sizeof(a.a_type));
		db_col_text(st, 2, a.a_label, sizeof(a.a_label));
		db_col_text(st, 3, a.a_state, sizeof(a.a_state));
		a.a_enabled = sqlite3_column_int(st, 4) != 0;
		a.a_expires = sqlite3_column_int64(st, 5);
		db_col_text(st, 6, a.a_last_error, sizeof(a.a_last_error));
		if ((r = cb(&a, arg)) != 0)
			break;
	}
	sqlite3_finalize(st);
	return r;
}

int64_t
db_logs_count(sqlite3 *db)
{
	sqlite3_stmt	*st;
	int64_t		 n = -1;

	if ((st = db_prepare(db, __func__,
	    "SELECT COUNT(*) FROM request_logs")) == NULL)
		return -1;
	if (db_step(db, __func__, st) == 1)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
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
