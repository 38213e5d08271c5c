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
	" last_refresh_at, refresh_requested"

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

int64_t
db_account_add(sqlite3 *db, const struct db_account_new *an)
{
	sqlite3_stmt	*st = NULL;
	struct buf	 rt, cs;
	char		 rhint[SECRET_HINT_MAX], shint[SECRET_HINT_MAX] = "";
	const char	*secret = NULL;
	int64_t		 id = -1, now = now_wall();
	int		 idc = strcmp(an->an_type, "idc") == 0;

	buf_init(&rt);
	buf_init(&cs);
	if ((!idc && strcmp(an->an_type, "social") != 0) ||
	    an->an_refresh_token == NULL || *an->an_refresh_token == '\0' ||
	    strlen(an->an_refresh_token) > DB_ACCOUNT_SECRET_MAX ||
	    !db_account_label_ok(an->an_label ? an->an_label : "") ||
	    (an->an_region && *an->an_region &&
	    !db_account_region_ok(an->an_region))) {
		log_warnx("%s: bad account", __func__);
		return -1;
	}
	if (idc) {
		if (an->an_client_id == NULL || *an->an_client_id == '\0' ||
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
	secret_hint(an->an_refresh_token, rhint);
	if ((st = db_prepare(db, __func__, "INSERT INTO accounts (type,"
	    " label, enabled, state, region, profile_arn, client_id,"
	    " client_secret_enc, refresh_token_enc, refresh_token_hint,"
	    " client_secret_hint, created_at, updated_at) VALUES (?, ?, ?, ?,"
	    " ?, ?, ?, ?, ?, ?, ?, ?, ?)")) == NULL)
		goto done;
	if (sqlite3_bind_text(st, 1, an->an_type, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 2, an->an_label ? an->an_label : "", -1,
	    SQLITE_STATIC) ||
	    sqlite3_bind_int(st, 3, an->an_enabled != 0) ||
	    sqlite3_bind_text(st, 4, an->an_enabled ? "enabled" : "disabled",
	    -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 5, an->an_region ? an->an_region : "", -1,
	    SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 6, an->an_profile_arn ? an->an_profile_arn :
	    "", -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 7, idc ? an->an_client_id : "", -1,
	    SQLITE_STATIC) ||
	    db_bind_secret(st, 8, secret, SECRET_AAD_CLIENT, &cs) ||
	    db_bind_secret(st, 9, an->an_refresh_token, SECRET_AAD_REFRESH,
	    &rt) ||
	    sqlite3_bind_text(st, 10, rhint, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 11, shint, -1, SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 12, now) ||
	    sqlite3_bind_int64(st, 13, now))
		goto done;
	if (db_finish(db, __func__, st) == 1)
		id = sqlite3_last_insert_rowid(db);
	st = NULL;
 done:
	sqlite3_finalize(st);
	buf_free(&rt);
	buf_free(&cs);
	return id;
}

int
db_account_update(sqlite3 *db, int64_t id, int enabled, const char *label)
{
	sqlite3_stmt	*st;

	if (label != NULL && !db_account_label_ok(label))
		return -1;
	/* Enabling clears the reason it was disabled for; the state is
	 * the refresher's to set right after that. */
	if ((st = db_prepare(db, __func__, "UPDATE accounts SET"
	    " enabled = COALESCE(?1, enabled),"
	    " state = CASE WHEN ?1 IS NULL THEN state"
	    "  WHEN ?1 THEN 'enabled' ELSE 'disabled' END,"
	    " last_error = CASE WHEN ?1 AND NOT enabled THEN '' ELSE"
	    "  last_error END,"
	    " label = COALESCE(?2, label), updated_at = ?3"
	    " WHERE id = ?4")) == NULL)
		return -1;
	if ((enabled == -1 ? sqlite3_bind_null(st, 1) :
	    sqlite3_bind_int(st, 1, enabled != 0)) != SQLITE_OK ||
	    (label == NULL ? sqlite3_bind_null(st, 2) :
	    sqlite3_bind_text(st, 2, label, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, now_wall()) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, id) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	return db_finish(db, __func__, st);
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
	int64_t			*ids = NULL, *nids;
	size_t			 n = 0, cap = 0;
	char			*tok;
	const void		*blob;
	int			 r, slot, rv = 0;

	/*
	 * As db_keys_load_shm: the read happens under sh_lock, so an
	 * account added or deleted by a worker (which commits first and
	 * then locks) is never undone by this older view. Slots of live
	 * accounts are updated in place and keep the refresher's token.
	 */
	shm_lock(shm);
	if ((st = db_prepare(db, __func__, "SELECT id, enabled, label, region,"
	    " profile_arn, access_token_enc, access_token_expires,"
	    " refresh_requested FROM accounts ORDER BY id")) == NULL) {
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
	sqlite3_reset(st);
	while ((r = db_step(db, __func__, st)) == 1) {
		memset(&m, 0, sizeof(m));
		m.am_id = sqlite3_column_int64(st, 0);
		m.am_state = sqlite3_column_int(st, 1) ? ACCT_ENABLED :
		    ACCT_DISABLED;
		m.am_label = (const char *)sqlite3_column_text(st, 2);
		m.am_region = (const char *)sqlite3_column_text(st, 3);
		m.am_profile_arn = (const char *)sqlite3_column_text(st, 4);
		tok = NULL;
		if ((blob = sqlite3_column_blob(st, 5)) != NULL &&
		    (tok = secret_decrypt(blob, (size_t)sqlite3_column_bytes(st,
		    5), SECRET_AAD_ACCESS)) == NULL)
			log_warnx("%s: account %lld: stored access token "
			    "unreadable; it will be renewed", __func__,
			    (long long)m.am_id);
		slot = shm_acct_put_locked(shm, &m, tok,
		    sqlite3_column_int64(st, 6));
		secret_free(tok, 0);
		if (slot == -1) {
			log_warnx("%s: no free account slot for account %lld "
			    "(max_accounts)", __func__, (long long)m.am_id);
			rv = -1;
			continue;
		}
		if (sqlite3_column_int(st, 7))
			atomic_store(&shm->shm_accts[slot].sa_refresh_wanted,
			    SHM_REFRESH_FORCED);
	}
	if (r == -1)
		rv = -1;
 done:
	shm_unlock(shm);
	sqlite3_finalize(st);
	free(ids);
	if (rv == -1)
		log_warnx("%s: accounts not fully loaded", __func__);
	return rv;
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
	char		 hint[SECRET_HINT_MAX] = "";
	int		 r = -1;

	buf_init(&ab);
	buf_init(&rb);
	if (new_refresh != NULL && (*new_refresh == '\0' ||
	    strlen(new_refresh) > DB_ACCOUNT_SECRET_MAX))
		new_refresh = NULL;
	if (new_refresh != NULL)
		secret_hint(new_refresh, hint);
	/* A new refresh token replaces the old in the same statement as
	 * the access token: a crash cannot keep one without the other. */
	if ((st = db_prepare(db, __func__, "UPDATE accounts SET"
	    " access_token_enc = ?1, access_token_expires = ?2,"
	    " refresh_token_enc = COALESCE(?3, refresh_token_enc),"
	    " refresh_token_hint = CASE WHEN ?3 IS NULL THEN"
	    "  refresh_token_hint ELSE ?4 END,"
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
	    sqlite3_bind_int64(st, 7, id))
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
