/*
 * qrelayd.h - the one project header: shared types, limits and the
 * prototypes of every file, grouped by file.
 *
 * Process model (see ARCHITECTURE.md): a master (qrelayd.c) forks
 * workers (worker.c), a refresher (refresher.c) and a logger (logger.c).
 * They share one anonymous mapping (shm.c) created before fork and a log
 * pipe; each process opens its own SQLite connection (db.c) after fork.
 */
#ifndef QRELAYD_H
#define QRELAYD_H

#include <sys/types.h>
#include <sys/socket.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <json-c/json.h>
#include <sqlite3.h>

#ifndef QR_SYSCONFDIR
#define QR_SYSCONFDIR	"/etc"
#endif
#ifndef QR_DATADIR
#define QR_DATADIR	"/usr/share"
#endif

#define QR_VERSION		"0.1.0"
#define QR_DEFAULT_PORT		62311
#define QR_MAX_LISTEN		16
#define QR_MAX_WORKERS		64
#define QR_MAX_PROCS		(2 * QR_MAX_WORKERS + 8)
#define QR_MAX_HEADERS		128	/* hard cap; config may lower it */
#define QR_EXIT_FATAL		2	/* child exit code: do not respawn */

#define QR_ATTR_PRINTF(f, a)	__attribute__((format(printf, f, a)))
#define QR_ATTR_NORETURN	__attribute__((noreturn))
#define nitems(a)		(sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* buf.c: the one growable byte buffer                                 */

struct buf {
	char	*b_data;
	size_t	 b_len;		/* bytes used */
	size_t	 b_off;		/* bytes already consumed from the front */
	size_t	 b_cap;
};

void	 buf_init(struct buf *);
void	 buf_free(struct buf *);
void	 buf_reset(struct buf *);
int	 buf_reserve(struct buf *, size_t);	/* room for n more bytes */
int	 buf_append(struct buf *, const void *, size_t);
int	 buf_puts(struct buf *, const char *);
int	 buf_printf(struct buf *, const char *, ...) QR_ATTR_PRINTF(2, 3);
void	 buf_consume(struct buf *, size_t);	/* drop n bytes from the front */
void	 buf_compact(struct buf *);		/* move unread bytes to the front */
#define	 buf_unread(b)		((b)->b_data + (b)->b_off)
#define	 buf_unread_len(b)	((b)->b_len - (b)->b_off)

/* ------------------------------------------------------------------ */
/* log.c: the daemon's own log                                          */

void	 log_init(int foreground, int verbose, const char *procname);
int	 log_open_file(const char *path);	/* "" = stderr/syslog */
void	 log_reopen(void);			/* SIGUSR1 */
void	 log_setproc(const char *procname);
void	 log_warn(const char *, ...) QR_ATTR_PRINTF(1, 2);
void	 log_warnx(const char *, ...) QR_ATTR_PRINTF(1, 2);
void	 log_info(const char *, ...) QR_ATTR_PRINTF(1, 2);
void	 log_debug(const char *, ...) QR_ATTR_PRINTF(1, 2);
void	 fatal(const char *, ...) QR_ATTR_PRINTF(1, 2) QR_ATTR_NORETURN;
void	 fatalx(const char *, ...) QR_ATTR_PRINTF(1, 2) QR_ATTR_NORETURN;
extern int log_verbose;

/* ------------------------------------------------------------------ */
/* util.c: small helpers every file uses                                */

int64_t	 now_ms(void);			/* CLOCK_MONOTONIC */
int64_t	 now_us(void);			/* CLOCK_MONOTONIC */
time_t	 now_wall(void);		/* time(NULL) */
int	 set_nonblock(int);
int	 random_bytes(void *, size_t);	/* RAND_bytes, 0 or -1 */
void	 hex_encode(const unsigned char *, size_t, char *);	/* 2n+1 */
int	 ct_equal(const void *, const void *, size_t);	/* CRYPTO_memcmp */
int	 mkdir_p(const char *, mode_t);
size_t	 strlcpy_qr(char *, const char *, size_t);
int	 strcaseeq_n(const char *, size_t, const char *);	/* len-bounded */
int	 pct_decode(const char *, size_t, char *, size_t);	/* -1 bad */
void	 fmt_rfc1123(time_t, char out[40]);
const char *fmt_iso8601(int64_t, char out[32]);	/* NULL for t <= 0 */
int	 uuid4(char out[37]);		/* random UUID text */

/* ------------------------------------------------------------------ */
/* config.c: libconfig -> struct config                                 */

#define QR_MAX_MODELS		64	/* entries of the models setting */

struct listen_addr {
	char			 la_text[80];	/* as written: "host:port" */
	struct sockaddr_storage	 la_ss;
	socklen_t		 la_sslen;
	int			 la_fd;		/* master's bound socket */
};

struct config {
	char	 cf_file[PATH_MAX];	/* "" = built-in defaults only */
	struct listen_addr cf_listen[QR_MAX_LISTEN];
	int	 cf_nlisten;
	int	 cf_workers;		/* resolved: >= 1 */
	int	 cf_workers_conf;	/* as written: 0 = one per CPU */
	char	 cf_user[64];
	char	 cf_pid_file[PATH_MAX];
	char	 cf_log_file[PATH_MAX];	/* "" = stderr (-d) or syslog */
	char	 cf_www_dir[PATH_MAX];
	int	 cf_max_accounts;
	int	 cf_max_keys;
	int	 cf_shutdown_timeout;	/* seconds */
	char	 cf_db_type[16];
	char	 cf_db_path[PATH_MAX];
	/* upstream */
	char	 cf_region[32];
	char	 cf_q_endpoint[256];
	char	 cf_oidc_endpoint[256];
	char	 cf_kiro_auth_endpoint[256];
	char	 cf_start_url[256];	/* device flow's startUrl */
	int	 cf_refresh_parallel;	/* renewals at once (refresher) */
	int	 cf_usage_interval;	/* s between getUsageLimits, 0 never */
	int	 cf_connect_timeout;
	int	 cf_first_byte_timeout;
	int	 cf_idle_timeout;
	/* limits */
	size_t	 cf_max_body;
	size_t	 cf_max_header;
	int	 cf_max_headers;	/* header count */
	int	 cf_header_timeout;	/* seconds */
	int	 cf_body_timeout;
	int	 cf_keepalive_timeout;
	int	 cf_send_timeout;
	int	 cf_max_connections;	/* per worker */
	/* environment */
	int	 cf_no_browser;
	/* models = ( { match = "claude-opus-5*"; id = "claude-opus-4.6"; } );
	 * client model names -> upstream modelId, tried in order before
	 * the built-in names (qreq_model_resolve) */
	struct cf_model {
		char	 cm_match[128];	/* exact name or fnmatch(3) pattern */
		char	 cm_id[128];	/* [a-zA-Z0-9_:.-]+ */
	}	 cf_models[QR_MAX_MODELS];
	int	 cf_nmodels;
};

/* 0 ok; -1 with errbuf = "file:line: reason" */
int	 config_load(struct config *, const char *path, char *errbuf, size_t);
void	 config_defaults(struct config *);
int	 config_apply_env(struct config *, char *errbuf, size_t);
int	 config_parse_listen(const char *, struct listen_addr *, char *, size_t);
int	 config_same_listen(const struct listen_addr *, const struct listen_addr *);

/* ------------------------------------------------------------------ */
/* proc.c: process titles, privilege drop, pid file, daemonising        */

void	 proc_title_init(int argc, char **argv);	/* first in main() */
/* ps: "qrelayd: " + fmt; comm: "qrelayd-" + first word of fmt */
void	 proc_title_set(const char *fmt, ...) QR_ATTR_PRINTF(1, 2);
int	 proc_drop_privileges(const char *user);
int	 proc_chown_for(const char *user, const char *path);
int	 proc_pidfile_write(const char *path);
pid_t	 proc_pidfile_read(const char *path);	/* 0 if none or stale */
int	 proc_daemonize(void);
/* Flags set by the signal handlers of a child process. */
extern volatile sig_atomic_t qr_child_quit;	/* 1 graceful, 2 fast */
extern volatile sig_atomic_t qr_child_reopen;
void	 child_signals(void);	/* install the child's handlers */
void	 child_signals_block(sigset_t *waitmask);

/* ------------------------------------------------------------------ */
/* shm.c: the shared table                                              */

#define SHM_MAGIC		0x51524c59u	/* "QRLY" */
#define SHM_LAYOUT		4
#define SHM_TOKEN_MAX		2048	/* access token bytes, NUL incl. */

enum proc_role { ROLE_NONE = 0, ROLE_MASTER, ROLE_WORKER, ROLE_REFRESHER,
	ROLE_LOGGER };

/* One per process the master runs; written by the master (pid, role,
 * generation, start) and by the process itself (counters). */
struct shm_proc {
	_Atomic int32_t	 sp_pid;
	int32_t		 sp_role;
	uint32_t	 sp_gen;		/* config generation */
	int64_t		 sp_started;		/* wall seconds */
	_Atomic uint32_t sp_restarts;
	_Atomic int32_t	 sp_draining;
	_Atomic uint64_t sp_requests;
	_Atomic uint64_t sp_conns_total;
	_Atomic int64_t	 sp_conns_active;
	_Atomic uint64_t sp_bytes_in;
	_Atomic uint64_t sp_bytes_out;
	_Atomic uint64_t sp_status_4xx;
	_Atomic uint64_t sp_status_5xx;
	/* the relay (workers) */
	_Atomic uint64_t sp_upstream_requests;	/* transfers started */
	_Atomic uint64_t sp_upstream_failures;	/* of which failed */
	_Atomic int64_t	 sp_streams_active;	/* answers streaming now */
	_Atomic uint64_t sp_tokens_in;
	_Atomic uint64_t sp_tokens_out;
} __attribute__((aligned(64)));

/*
 * Account states. ACCT_COOLDOWN and ACCT_EXHAUSTED are never stored in
 * sa_state: an enabled slot whose sa_cooldown_until (or
 * sa_exhausted_until) lies ahead is shown so (pool_acct_state).
 * ACCT_SUSPENDED (the upstream said TEMPORARILY_SUSPENDED) and
 * ACCT_REFRESH_FAILED are stored; a person's enable clears them.
 */
enum acct_state { ACCT_EMPTY = 0, ACCT_ENABLED, ACCT_DISABLED,
	ACCT_COOLDOWN, ACCT_EXHAUSTED, ACCT_SUSPENDED, ACCT_REFRESH_FAILED };

#define SHM_PROXY_MAX		256	/* proxy URL bytes, NUL incl. */

/* Account slot. The token fields are written only by the refresher,
 * under the slot's seqlock (sa_seq odd while a write is in progress). */
struct shm_acct {
	_Atomic uint32_t sa_seq;
	_Atomic int32_t	 sa_state;
	int64_t		 sa_id;			/* SQLite rowid, 0 = free */
	char		 sa_label[64];
	char		 sa_region[32];
	char		 sa_profile_arn[160];
	char		 sa_proxy[SHM_PROXY_MAX];	/* "" direct */
	char		 sa_token[SHM_TOKEN_MAX];
	int64_t		 sa_expires;		/* wall seconds */
	_Atomic uint32_t sa_token_gen;
	_Atomic int32_t	 sa_refresh_wanted;	/* SHM_REFRESH_* */
	_Atomic int32_t	 sa_refresh_pid;	/* refresher renewing it, 0 */
	_Atomic int32_t	 sa_usage_wanted;	/* poll getUsageLimits now */
	/* caps from the account's row, 0 = none */
	_Atomic int32_t	 sa_max_inflight;
	_Atomic int32_t	 sa_rpm;
	/* hot: every pick and release */
	_Atomic int32_t	 sa_inflight __attribute__((aligned(64)));
	_Atomic int64_t	 sa_rpm_tat;		/* GCRA: us, CLOCK_MONOTONIC */
	_Atomic int64_t	 sa_cooldown_until;	/* wall seconds */
	_Atomic int32_t	 sa_cooldown_streak;	/* 429s in a row */
	_Atomic int64_t	 sa_exhausted_until;	/* wall seconds */
	_Atomic int64_t	 sa_last_used;		/* wall seconds */
	/* usage, from getUsageLimits (the refresher), credits x 1000 */
	_Atomic int64_t	 sa_usage_used;
	_Atomic int64_t	 sa_usage_limit;	/* 0 unknown */
	_Atomic int64_t	 sa_usage_reset;	/* wall seconds, 0 unknown */
	_Atomic int64_t	 sa_usage_checked;	/* wall seconds */
	/* counters: the database's when the slot was filled, plus since */
	_Atomic uint64_t sa_requests;
	_Atomic uint64_t sa_errors;
	_Atomic uint64_t sa_tokens_in;
	_Atomic uint64_t sa_tokens_out;
	_Atomic uint64_t sa_credits;		/* x 1000000 */
	char		 sa_last_error[128];
} __attribute__((aligned(64)));

/* sa_refresh_wanted: a worker saw "bearer token invalid" (the
 * refresher's backoff applies), or an admin asked (it does not). */
#define SHM_REFRESH_WANTED	1
#define SHM_REFRESH_FORCED	2

/*
 * Stickiness: a conversation (pool_pick's key) keeps its account while
 * that account can serve. An open-addressed table of SHM_STICKY
 * entries; an entry is (key, slot, id, last use), each word atomic, and
 * a torn entry only costs a fresh pick (the id is checked).
 */
#define SHM_STICKY		16384
struct shm_sticky {
	_Atomic uint64_t ss_key;		/* 0 free */
	_Atomic int64_t	 ss_id;
	_Atomic int32_t	 ss_slot;
	_Atomic int64_t	 ss_used;		/* wall seconds */
};

/*
 * Weighted selection: the refresher publishes, after each usage poll,
 * a cumulative table of the enabled slots' weights (remaining quota) in
 * one of two buffers and flips sh_wt_cur; a worker draws a number
 * below the last sw_cum and binary-searches it.
 */
struct shm_weight {
	uint32_t	 sw_slot;
	uint32_t	 sw_pad;
	uint64_t	 sw_cum;		/* running sum, this entry incl. */
};

/*
 * Jobs a worker hands to the refresher (the one process that may open
 * the secrets): an AWS device authorization, a feed of refresh tokens
 * to check and add, a full export. The worker claims a free entry
 * under sh_lock, fills the request, sets SJ_REQUESTED and wakes the
 * refresher (pool_wake_refresher); the refresher moves it on and
 * writes results here (small) or to a file next to the database
 * (shm_job_path: feed input, feed report, export). Entries left
 * finished for SHM_JOB_KEEP seconds are freed with their files.
 */
#define SHM_JOBS		32
#define SHM_JOB_KEEP		900
enum shm_job_kind { SJK_DEVICE = 1, SJK_FEED, SJK_EXPORT };
enum shm_job_state { SJ_FREE = 0, SJ_CLAIMED, SJ_REQUESTED, SJ_RUNNING,
	SJ_PENDING /* device: the user has to approve */, SJ_DONE,
	SJ_EXPIRED, SJ_DENIED, SJ_FAILED };
struct shm_job {
	_Atomic int32_t	 sj_state;
	_Atomic int32_t	 sj_owner;		/* the refresher running it */
	int32_t		 sj_kind;
	char		 sj_id[37];		/* uuid, the API's :id */
	int64_t		 sj_created;		/* wall seconds */
	int64_t		 sj_finished;		/* wall seconds, 0 running */
	/* device request */
	char		 sj_label[128];
	char		 sj_region[32];
	char		 sj_start_url[256];
	char		 sj_proxy[SHM_PROXY_MAX];
	/* device progress */
	int64_t		 sj_expires;		/* wall seconds */
	int32_t		 sj_interval;		/* seconds */
	char		 sj_user_code[32];
	char		 sj_verification_uri[256];
	char		 sj_verification_uri_complete[384];
	int64_t		 sj_account_id;		/* done: the new account */
	/* feed: lines taken / added / refused (the report file has each) */
	int32_t		 sj_total, sj_added, sj_failed;
	char		 sj_error[200];
} __attribute__((aligned(64)));

#define SHM_KEY_PREFIX		12	/* display prefix bytes */

/* Client API key slot: only the SHA-256 of the key is kept. */
struct shm_key {
	_Atomic uint32_t sk_seq;
	_Atomic int32_t	 sk_used;
	int64_t		 sk_id;			/* SQLite rowid */
	unsigned char	 sk_hash[32];
	char		 sk_prefix[SHM_KEY_PREFIX + 1];
	_Atomic uint64_t sk_requests;
	_Atomic int64_t	 sk_last_used;
} __attribute__((aligned(64)));

struct shm_hdr {
	uint32_t	 sh_magic;
	uint32_t	 sh_layout;
	_Atomic uint32_t sh_generation;		/* bumped on each reload */
	_Atomic uint32_t sh_changes;		/* bumped by each locked write */
	uint32_t	 sh_max_accounts;
	uint32_t	 sh_max_keys;
	uint32_t	 sh_max_procs;
	int64_t		 sh_started;		/* wall seconds */
	_Atomic int32_t	 sh_master_pid;
	pthread_mutex_t	 sh_lock;		/* robust, process-shared */
	_Atomic uint64_t sh_log_dropped;	/* records a full pipe lost */
	_Atomic uint64_t sh_log_written;	/* rows the logger committed */
	_Atomic int64_t	 sh_login_fail_until;	/* admin login lockout */
	_Atomic int32_t	 sh_login_failures;
	_Atomic int64_t	 sh_login_window_start;
	_Atomic uint32_t sh_keys_high;		/* slots ever used */
	_Atomic uint32_t sh_accts_high;
	/* pool settings (the settings table; PUT /v2/settings, reload) */
	_Atomic int32_t	 sh_strategy;		/* enum pool_strategy */
	_Atomic int32_t	 sh_sticky_ttl;		/* seconds, 0 off */
	_Atomic int32_t	 sh_queue_ms;		/* wait for a capped pool */
	_Atomic int32_t	 sh_max_attempts;	/* accounts a request tries */
	/* pool cursors, each on its own line */
	_Atomic uint32_t sh_rr_next __attribute__((aligned(64)));
	_Atomic uint32_t sh_seq_hint __attribute__((aligned(64)));
	_Atomic uint32_t sh_wt_cur __attribute__((aligned(64)));
	uint32_t	 sh_wt_n[2];		/* entries of each buffer */
};

struct shm {
	void		*shm_base;
	size_t		 shm_size;
	struct shm_hdr	*shm_hdr;
	struct shm_proc	*shm_procs;
	struct shm_acct	*shm_accts;
	struct shm_key	*shm_keys;
	struct shm_sticky *shm_sticky;		/* SHM_STICKY */
	struct shm_weight *shm_weights[2];	/* max_accounts each */
	struct shm_job	*shm_jobs;		/* SHM_JOBS */
};

extern struct shm *qr_shm;	/* the process's view, set up by shm_create */

int	 shm_create(struct shm *, uint32_t max_accounts, uint32_t max_keys);
void	 shm_destroy(struct shm *);
int	 shm_lock(struct shm *);	/* 0, or 1 when a dead holder was recovered */
void	 shm_relax(void);		/* pause in a seqlock reader's spin */
void	 shm_unlock(struct shm *);
/* Lock and unlock, so slots a dead holder left half-written are repaired
 * now; the master calls it after reaping a child. 1 if it repaired. */
int	 shm_recover(struct shm *);
/* accounts: reader never blocks; returns 0 ok, -1 slot empty/contended */
int	 shm_acct_read(struct shm *, uint32_t slot, struct shm_acct *out);
void	 shm_acct_write_token(struct shm *, uint32_t slot, const char *tok,
	    int64_t expires);
/* keys */
int	 shm_key_add(struct shm *, int64_t id, const unsigned char hash[32],
	    const char *prefix);
int	 shm_key_remove(struct shm *, int64_t id);
int64_t	 shm_key_lookup(struct shm *, const unsigned char hash[32]); /* id or -1 */
/* The caller holds sh_lock (shm_lock), so that its read of the database
 * and its update of the slots are one step for other writers. */
int	 shm_key_add_locked(struct shm *, int64_t id,
	    const unsigned char hash[32], const char *prefix);
/* Frees every key slot whose id is not in ids (ascending): a reload
 * drops what the database lost while live keys stay findable. */
void	 shm_keys_retain_locked(struct shm *, const int64_t *ids, size_t n);
/*
 * Account slots. Writers serialise on sh_lock; _locked variants expect
 * the caller to hold it. shm_acct_put adds the account, or updates its
 * slot in place: label, region, profile ARN always; the state only
 * between enabled and disabled (a live state such as cooldown stays
 * while the account is enabled); tok/expires only when the slot is
 * new (the refresher's newer token is never overwritten by a reload).
 * Returns the slot, or -1 when the table is full.
 */
/* An account's counters, kept in its slot and persisted by the
 * refresher (credits x 1000000). */
struct acct_counters {
	int64_t		 ac_requests;
	int64_t		 ac_failures;
	int64_t		 ac_tokens_in;
	int64_t		 ac_tokens_out;
	int64_t		 ac_credits;
};

struct shm_acct_meta {
	int64_t		 am_id;
	int32_t		 am_state;	/* as stored: enabled, disabled,
					   suspended, refresh failed */
	const char	*am_label;
	const char	*am_region;
	const char	*am_profile_arn;
	const char	*am_proxy;	/* NULL or "" direct */
	int32_t		 am_max_inflight;	/* 0 none */
	int32_t		 am_rpm;		/* 0 none */
	int64_t		 am_exhausted_until;	/* wall seconds */
	int64_t		 am_usage_used;		/* credits x 1000 */
	int64_t		 am_usage_limit;
	int64_t		 am_usage_reset;
	int64_t		 am_usage_checked;
	int64_t		 am_cooldown_until;	/* a fresh slot's */
	struct acct_counters am_counters;	/* a fresh slot's */
	int		 am_reset_health;	/* a person enabled it: clear
						   suspended, refresh failed,
						   cooldown, exhausted */
};
int	 shm_acct_find(struct shm *, int64_t id);	/* slot, or -1 */
/* The slots by account id, sorted once, for work on many accounts (a
 * list, a reload): shm_acct_find scans the table, which once per
 * account of a 10,000-account pool is 10^8 steps. Built without the
 * lock it is a hint: check sa_id when reading the slot. */
struct shm_acct_ixe {
	int64_t		 ie_id;
	uint32_t	 ie_slot;
};
struct shm_acct_ix {
	struct shm_acct_ixe *ix_e;
	size_t		 ix_n;
	uint32_t	 ix_free;	/* slots below are taken (puts) */
};
int	 shm_acct_ix_build(struct shm *, struct shm_acct_ix *);	/* 0, -1 */
/* slot or -1; a NULL or unbuilt ix falls back to shm_acct_find */
int	 shm_acct_ix_find(struct shm *, const struct shm_acct_ix *, int64_t);
void	 shm_acct_ix_free(struct shm_acct_ix *);
int	 shm_acct_put(struct shm *, const struct shm_acct_meta *,
	    const char *tok, int64_t expires);
int	 shm_acct_put_locked(struct shm *, const struct shm_acct_meta *,
	    const char *tok, int64_t expires);
/* The same, finding the slot through ix (built under the same lock
 * hold; NULL: scan); ids put must be distinct within one ix. */
int	 shm_acct_put_ix_locked(struct shm *, struct shm_acct_ix *,
	    const struct shm_acct_meta *, const char *tok, int64_t expires);
int	 shm_acct_remove(struct shm *, int64_t id);	/* 0, -1 none */
/* Frees every account slot whose id is not in ids (ascending). */
void	 shm_accts_retain_locked(struct shm *, const int64_t *ids, size_t n);
/* The refresher publishes a token (and a profile ARN, when not NULL or
 * ""): -1 when the slot no longer holds account id (deleted meanwhile).
 * Clears sa_refresh_wanted and sa_last_error, bumps sa_token_gen. */
int	 shm_acct_set_token(struct shm *, uint32_t slot, int64_t id,
	    const char *tok, int64_t expires, const char *profile_arn);
/* sa_last_error; id 0: whatever account the slot holds. */
int	 shm_acct_set_error(struct shm *, uint32_t slot, int64_t id,
	    const char *err);
/* A state change under the lock, only while the slot holds id and is in
 * state from (-1: any state but empty). 0 changed, -1 not. */
int	 shm_acct_set_state(struct shm *, uint32_t slot, int64_t id,
	    int32_t from, int32_t to);
const char *shm_acct_state_name(int32_t);	/* "enabled", "refreshFailed" */
void	 shm_acct_counters(const struct shm_acct *, struct acct_counters *);
/* Jobs (struct shm_job): claim a free (or long finished) entry with a
 * new id, in state SJ_CLAIMED: its index, -1 all busy. */
int	 shm_job_claim(struct shm *, int kind);
int	 shm_job_find(struct shm *, const char *id);	/* index, -1 */
/* The file of job id next to the database: <dbdir>/job-<id>.<what> */
int	 shm_job_path(const char *db_path, const char *id, const char *what,
	    char *out, size_t);
/* Write that file whole (a temporary, then rename), mode 0600, never
 * over a file already there: 0, or -1 logged. */
int	 shm_job_write(const char *db_path, const char *id, const char *what,
	    const void *data, size_t len);
struct shm_proc *shm_proc_self(void);	/* this process's slot, or a dummy */
void	 shm_proc_set_self(int slot);

/* ------------------------------------------------------------------ */
/* http.c: HTTP/1.1 request parser and response writer, no I/O          */

enum http_method { HTTP_OTHER = 0, HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT,
	HTTP_DELETE, HTTP_PATCH, HTTP_OPTIONS };

struct http_hdr {
	const char	*h_name;
	size_t		 h_name_len;
	const char	*h_value;	/* leading/trailing OWS stripped */
	size_t		 h_value_len;
};

struct http_req {
	int		 rq_method;	/* enum http_method */
	const char	*rq_method_s;
	size_t		 rq_method_len;
	const char	*rq_target;	/* request-target as sent */
	size_t		 rq_target_len;
	const char	*rq_path;	/* target without query */
	size_t		 rq_path_len;
	const char	*rq_query;	/* after '?', or NULL */
	size_t		 rq_query_len;
	int		 rq_minor;	/* HTTP/1.x */
	/* derived from the headers by http_parse_request */
	int64_t		 rq_content_length;	/* -1: none */
	int		 rq_chunked;
	int		 rq_keep_alive;
	int		 rq_expect_continue;
	size_t		 rq_nhdrs;
	/* last: a copy may hold only the rq_nhdrs used (HTTP_REQ_SIZE) */
	struct http_hdr	 rq_hdrs[QR_MAX_HEADERS];
};
#define HTTP_REQ_SIZE(n) \
	(offsetof(struct http_req, rq_hdrs) + (n) * sizeof(struct http_hdr))

/*
 * http_parse_request: parse the request line and headers in buf.
 * Returns the length of the head (> 0) when complete, 0 when more bytes
 * are needed, or -status on error: -400 malformed (also CL+TE, bad or
 * duplicate Host, Transfer-Encoding in HTTP/1.0), -417 an Expect other than
 * 100-continue, -431 more than max_headers headers, -501 a transfer coding
 * other than exactly "chunked", -505 an HTTP version other than 1.0/1.1.
 * The parsed fields point into buf. max_headers caps the header count.
 * Errors are reported as soon as the bytes seen are invalid.
 */
int	 http_parse_request(const char *buf, size_t len, struct http_req *,
	    size_t max_headers);
const struct http_hdr *http_header(const struct http_req *, const char *name);
/* Move every pointer of a parsed request from one copy of the head to
 * another (the worker copies the head out of its read buffer). */
void	 http_req_rebase(struct http_req *, const char *from, const char *to);

/* Incremental chunked body decoder. */
struct http_chunked {
	int		 ck_state;
	uint64_t	 ck_remaining;
	size_t		 ck_line;	/* bytes of the current size/trailer line */
	uint64_t	 ck_total;	/* decoded bytes so far */
	size_t		 ck_trailers;	/* trailer bytes so far */
};
void	 http_chunked_init(struct http_chunked *);
/* Decodes from in, appends data to out (capped: body beyond max -> -413).
 * *consumed gets the input bytes used (bytes after the body are left
 * alone). Returns 1 done, 0 more, -400 bad, -413 too large, -431 trailers
 * too large, -500 out of memory. */
int	 http_chunked_feed(struct http_chunked *, const char *in, size_t inlen,
	    size_t *consumed, struct buf *out, size_t max);

const char *http_reason(int status);
/* Response head: status line, Server, Date, Content-Type (if non-NULL),
 * Content-Length (>= 0) or chunked (-1) or neither (-2; always neither
 * for 1xx/204/304), Connection: close/keep-alive, then extra (raw
 * "Name: value\r\n" lines, may be NULL), then CRLF. A 1xx interim head
 * is the status line, extra and CRLF only. 0 ok, -1 out of memory. */
int	 http_write_head(struct buf *, int status, const char *ctype,
	    int64_t content_length, int keep_alive, const char *extra);
int	 http_write_chunk(struct buf *, const void *, size_t); /* 0 len = last */

/* ------------------------------------------------------------------ */
/* worker.c: the event loop and connections                             */

enum conn_state { CS_HEAD, CS_BODY, CS_HANDLING, CS_WRITING, CS_CLOSING };

/* What an epoll event points at: every such struct starts with a kind. */
enum ev_kind { EV_LISTENER = 1, EV_LIFELINE, EV_CONN, EV_CURL };

struct conn {
	int		 co_kind;	/* EV_CONN: first, see enum ev_kind */
	int		 co_fd;
	int		 co_state;
	int		 co_keep_alive;
	int		 co_closing_after_write;
	uint64_t	 co_id;
	struct sockaddr_storage co_peer;
	char		 co_peer_text[64];
	struct buf	 co_in;		/* raw bytes read */
	struct buf	 co_out;	/* bytes to write */
	struct buf	 co_body;	/* decoded request body */
	struct buf	 co_head;	/* the request head, co_req points here */
	struct http_req	*co_req;	/* the request being served, or NULL */
	struct http_chunked co_chunked;
	size_t		 co_body_max;	/* this request's body limit */
	int64_t		 co_req_start_us;
	int64_t		 co_deadline;	/* ms, monotonic */
	struct conn	*co_tprev, *co_tnext;	/* timer list links */
	int		 co_tlist;		/* which timer list, -1 none */
	int		 co_status;		/* response status, for the log */
	size_t		 co_resp_bytes;
	int64_t		 co_key_id;		/* API key used, 0 none */
	uint32_t	 co_events;		/* epoll interest */
	int		 co_file_fd;		/* static file being sent, -1 */
	off_t		 co_file_off, co_file_end;
	struct relay	*co_relay;		/* the relay serving it, or NULL */
	uint32_t	 co_revents;		/* epoll events of this wake-up */
	int		 co_stream;		/* streaming: 1 chunked, 2 raw */
	int		 co_broken;		/* a write failed: client gone */
	int		 co_dead;		/* closed; freed at the loop's end */
	int64_t		 co_progress;		/* ms: last byte written */
	size_t		 co_req_bytes;		/* head + body, once read */
	struct conn	*co_dnext;		/* dead list */
	int		 co_job;		/* shm job an admin request
						   waits on (admin_job_tick),
						   -1 none */
};

int	 worker_main(struct config *, int slot, int lifeline_fd, int log_fd)
	    QR_ATTR_NORETURN;
/* Run a connection on after an asynchronous handler changed it (the
 * relay, from outside any curl callback). c may be gone afterwards. */
void	 conn_kick(struct conn *);
/* Timers a handler may put a connection in while CS_HANDLING: relay_tick
 * runs when it fires. CT_SLOW: every RELAY_TICK_MS; CT_FAST: 100 ms. */
enum conn_timer { CT_NONE = 0, CT_SLOW, CT_FAST };
void	 conn_timer(struct conn *, int which);
/* Streamed responses: a chunked head (or, for HTTP/1.0, a body ended by
 * close), then pieces queued in co_out by conn_stream_write and written
 * by conn_stream_flush as far as the socket takes them (the rest when
 * it drains). Both return -1 when the client is gone (co_broken set).
 * conn_stream_end queues the last chunk and moves to CS_WRITING: call
 * conn_kick after it. */
int	 conn_stream_begin(struct conn *, int status, const char *ctype,
	    const char *extra_headers);
int	 conn_stream_write(struct conn *, const void *, size_t);
int	 conn_stream_flush(struct conn *);
void	 conn_stream_end(struct conn *);
/* Queue a complete response on c and start writing it. HEAD requests
 * get the head only. conn_respond_json takes ownership of the object. */
void	 conn_respond(struct conn *, int status, const char *ctype,
	    const void *body, size_t len, const char *extra_headers);
void	 conn_respond_json(struct conn *, int status, struct json_object *,
	    const char *extra_headers);
/* 200 with the body sent from fd by sendfile(2); takes the fd. */
void	 conn_respond_file(struct conn *, const char *ctype, int fd,
	    off_t size, const char *extra_headers);
const char *conn_header(struct conn *, const char *name, size_t *len);

/* ------------------------------------------------------------------ */
/* router.c: route a parsed request to its handler                      */

struct worker_ctx {
	struct config	*wc_cf;
	sqlite3		*wc_db;		/* this worker's connection */
	int		 wc_log_fd;	/* write end of the log pipe */
	int		 wc_slot;
};
extern struct worker_ctx *qr_wctx;

/* With the head only, before any body is read: the checks that need no
 * body (credentials, route, method). 0 go on, -1 it answered. */
int	 router_gate(struct conn *);
void	 router_dispatch(struct conn *);
/* Error in the shape of the API the path belongs to:
 * /v1/messages*: Anthropic, other /v1: OpenAI, else {"error":{...}}. */
void	 router_error(struct conn *, int status, const char *type,
	    const char *message);
void	 router_error_hdr(struct conn *, int status, const char *type,
	    const char *message, const char *extra_headers);

/* ------------------------------------------------------------------ */
/* static.c: files of www/                                              */

void	 static_init(const char *www_dir);
void	 static_serve(struct conn *);

/* ------------------------------------------------------------------ */
/* auth.c: API keys, admin password, sessions                           */

#define AUTH_KEY_PREFIX		"sk-qr-"
#define AUTH_SESSION_TTL	(12 * 3600)	/* seconds */

/* New client key: writes "sk-qr-" + 43 chars of base64url to key
 * (>= 64 bytes), its SHA-256 to hash and its display prefix. */
int	 auth_key_generate(char *key, size_t, unsigned char hash[32],
	    char prefix[SHM_KEY_PREFIX + 1]);
int	 auth_key_hash(const char *key, size_t len, unsigned char hash[32]);
/* The key the client presented (Bearer or x-api-key), or NULL. */
const char *auth_client_key(struct conn *, size_t *len);
/* The settings row (db_setting_get/set) that holds the yescrypt hash. */
#define AUTH_PASSWORD_SETTING	"admin_password_hash"
#define AUTH_PASSWORD_MAX	511	/* bytes; libxcrypt refuses longer */
#define AUTH_HASH_MAX		384	/* hash buffer: CRYPT_OUTPUT_SIZE */
int	 auth_password_hash(const char *pw, char *out, size_t);	/* yescrypt */
int	 auth_password_verify(const char *pw, const char *hash); /* 1 match */
int	 auth_password_generate(char *out, size_t);	/* 24 chars, >= 25 */
/* Sessions: token is random (AUTH_TOKEN_LEN hex chars), only its
 * SHA-256 is stored, with expiry (wall seconds) and the client's IP. */
#define AUTH_TOKEN_LEN		64
int	 auth_session_create(sqlite3 *, const char *client_ip, char *token,
	    size_t, int64_t *expires);
int	 auth_session_check(sqlite3 *, const char *token, size_t len);	/* 1 ok */
int	 auth_session_delete(sqlite3 *, const char *token, size_t len);
int	 auth_sessions_expire(sqlite3 *);	/* deleted rows, or -1 */
int	 auth_session_delete_others(sqlite3 *, const char *token, size_t len);
/* The admin session token from Authorization: Bearer or the cookie. */
const char *auth_admin_token(struct conn *, size_t *len);
#define AUTH_COOKIE		"qrelay_session"

/* ------------------------------------------------------------------ */
/* admin.c: /v2 handlers                                                */

int	 admin_gate(struct conn *);		/* head only: -1 answered */
void	 admin_dispatch(struct conn *);	/* body in: run the route */
/* A request waiting on a refresher job (co_job) is looked at: it
 * answers when the job has moved far enough, else re-arms CT_FAST. */
void	 admin_job_tick(struct conn *);
/* Settings rows -> the shared table (master: start and reload). */
int	 db_settings_load_shm(sqlite3 *, struct shm *);

/* ------------------------------------------------------------------ */
/* secret.c: secrets at rest (sealed to an X25519 key beside the database) */

#define SECRET_KEY_LEN		32	/* an X25519 private key */
#define SECRET_HINT_LEN		6	/* characters a hint shows at most */
#define SECRET_HINT_MAX		(SECRET_HINT_LEN + 4)	/* + "…" + NUL */
/* column names, the associated data of each encrypted column */
#define SECRET_AAD_REFRESH	"refresh_token"
#define SECRET_AAD_CLIENT	"client_secret"
#define SECRET_AAD_ACCESS	"access_token"

/* <dirname(db_path)>/qrelayd.key */
int	 secret_key_path(const char *db_path, char *out, size_t);
/* Load the key pair (create the file, 0600, when missing and create is
 * set; a key file of the old format is then replaced when no account
 * row exists, else refused); ":memory:" gets a random key of its own.
 * 0, or -1 logged. */
int	 secret_init(const char *db_path, int create);
int	 secret_ready(void);		/* 1 when secret_encrypt can work */
int	 secret_has_private(void);	/* 1 when secret_decrypt can work */
/* Use key as the private key, its public key derived: 0 or -1. */
int	 secret_set_key(const unsigned char key[SECRET_KEY_LEN]);
/* Zero the private key, keep the public one: this process can still
 * seal but never open again. Every worker calls it after the fork. */
void	 secret_forget_private(void);
void	 secret_forget(void);		/* both halves */
/* out = version 2, ephemeral public key, nonce, ciphertext, tag; aad
 * names the column. Needs only the public key. */
int	 secret_encrypt(const char *plain, const char *aad, struct buf *out);
/* The plaintext (malloc'd, NUL-terminated) or NULL when the blob is
 * not ours (wrong key, tampered, wrong column) or this process holds
 * no private key. Free with secret_free. */
char	*secret_decrypt(const void *blob, size_t len, const char *aad);
void	 secret_free(char *, size_t n);		/* n 0: strlen */
/* What may be shown of a secret: its first few characters and "…". */
void	 secret_hint(const char *, char out[SECRET_HINT_MAX]);

/* ------------------------------------------------------------------ */
/* db.c: SQLite schema, migrations, queries                             */

struct db_key {
	int64_t		 k_id;
	char		 k_name[128];
	char		 k_prefix[SHM_KEY_PREFIX + 1];
	unsigned char	 k_hash[32];
	int64_t		 k_created;
	int64_t		 k_last_used;
};

sqlite3	*db_open(const char *path);		/* WAL, busy_timeout, 0600 */
/* BEGIN IMMEDIATE / COMMIT (a failed commit rolls back) / ROLLBACK;
 * where names the caller in the log. 0 or -1. */
int	 db_begin(sqlite3 *, const char *where);
int	 db_commit(sqlite3 *, const char *where);
void	 db_rollback(sqlite3 *);
int	 db_migrate(sqlite3 *);			/* numbered migrations */
void	 db_close(sqlite3 *);
int	 db_setting_get(sqlite3 *, const char *name, char *out, size_t);	/* 1 found */
int	 db_setting_set(sqlite3 *, const char *name, const char *value);
int	 db_key_name_ok(const char *name);	/* 1..127 bytes, no controls */
int64_t	 db_key_add(sqlite3 *, const char *name, const unsigned char hash[32],
	    const char *prefix);		/* id or -1 */
int	 db_key_delete(sqlite3 *, int64_t id);	/* 1 deleted, 0 none, -1 err */
int	 db_key_list(sqlite3 *, int (*cb)(const struct db_key *, void *), void *);
int	 db_keys_load_shm(sqlite3 *, struct shm *);	/* rebuild key slots */
int	 db_ensure_admin_password(sqlite3 *, int print_generated);
/* New admin password hash; ends every admin session (one transaction). */
int	 db_admin_password_set(sqlite3 *, const char *hash);

/* What may be shown of an account: never its secrets, only hints. */
struct db_account {
	int64_t		 a_id;
	char		 a_type[16];		/* "idc" or "social" */
	char		 a_label[128];
	char		 a_state[32];		/* "enabled" "disabled" "refresh_failed" ... */
	int		 a_enabled;
	int64_t		 a_expires;		/* access token, wall seconds */
	char		 a_last_error[256];
	char		 a_region[32];
	char		 a_profile_arn[160];
	char		 a_client_id[256];
	char		 a_refresh_hint[SECRET_HINT_MAX];
	char		 a_secret_hint[SECRET_HINT_MAX];	/* "" social */
	int64_t		 a_created;
	int64_t		 a_updated;
	int64_t		 a_last_refresh;	/* last successful renewal */
	int		 a_refresh_requested;	/* qrelayctl account refresh */
	char		 a_proxy[SHM_PROXY_MAX];	/* full: mask to show */
	int		 a_max_inflight;	/* 0 none */
	int		 a_rpm;			/* 0 none */
	int64_t		 a_exhausted_until;	/* wall seconds, 0 */
	int64_t		 a_usage_used;		/* credits x 1000 */
	int64_t		 a_usage_limit;		/* 0 unknown */
	int64_t		 a_usage_reset;		/* wall seconds, 0 unknown */
	int64_t		 a_usage_checked;
	char		 a_subscription[64];	/* "KIRO PRO+", "" */
	char		 a_email[128];
	int64_t		 a_cooldown_until;	/* as last persisted */
	struct acct_counters a_counters;	/* as last persisted */
};

#define DB_ACCOUNT_SECRET_MAX	16384	/* bytes of a token or secret */

/* A new account; the secrets are encrypted before they are stored. */
struct db_account_new {
	const char	*an_type;		/* "idc" or "social" */
	const char	*an_label;
	const char	*an_region;		/* "" = the config's */
	const char	*an_profile_arn;
	const char	*an_client_id;		/* idc */
	const char	*an_client_secret;	/* idc */
	const char	*an_refresh_token;
	int		 an_enabled;
	const char	*an_proxy;		/* NULL or "" direct */
	int		 an_max_inflight;
	int		 an_rpm;
	const char	*an_access_token;	/* import: a live token, or NULL */
	int64_t		 an_expires;		/* of an_access_token */
};

/* A change of an account: NULL / -1 fields keep what is there. */
struct db_account_patch {
	int		 ap_enabled;		/* 1 enable (clears suspended,
						   refresh failed, exhausted) */
	const char	*ap_label;
	const char	*ap_proxy;		/* "" removes */
	int		 ap_max_inflight;
	int		 ap_rpm;
	const char	*ap_region;
	const char	*ap_profile_arn;
};
void	 db_account_patch_init(struct db_account_patch *);	/* all keep */

/* The refresher's view: secrets decrypted; free with ..._free. */
struct db_account_secrets {
	int64_t		 as_id;
	char		 as_type[16];
	char		 as_region[32];
	char		 as_client_id[256];
	char		*as_refresh_token;
	char		*as_client_secret;	/* NULL social */
};

int	 db_account_label_ok(const char *);	/* 0..127 bytes, no controls */
int	 db_account_region_ok(const char *);	/* [a-z0-9-], 1..31 */
int64_t	 db_account_add(sqlite3 *, const struct db_account_new *); /* id, -1 */
int	 db_account_get(sqlite3 *, int64_t id, struct db_account *); /* 1, 0 none, -1 */
/* 1 updated, 0 none, -1 */
int	 db_account_update(sqlite3 *, int64_t id,
	    const struct db_account_patch *);
/* What the daemon learnt of an account's health, kept across restarts:
 * state "suspended" or "enabled" (NULL keeps), exhausted_until (-1
 * keeps), reason (NULL keeps). 1, 0 none, -1. */
int	 db_account_set_health(sqlite3 *, int64_t id, const char *state,
	    int64_t exhausted_until, const char *reason);
/* The state as shown (enum acct_state, pool_acct_state's rules) from
 * the row alone, as the refresher last persisted it; *until when it
 * ends, 0 none. */
int	 db_account_state(const struct db_account *, int64_t now,
	    int64_t *until);
/* The live side the refresher persists every scan: cooldown and the
 * counters. 1, 0 none, -1. */
int	 db_account_set_live(sqlite3 *, int64_t id, int64_t cooldown_until,
	    const struct acct_counters *);
/* getUsageLimits answered. 1, 0 none, -1. */
int	 db_account_set_usage(sqlite3 *, int64_t id, int64_t used,
	    int64_t limit, int64_t reset, const char *subscription,
	    const char *email);
/* The account holding this refresh token (SHA-256 compared): id, 0
 * none, -1 error. Duplicates are refused by add, feed and import. */
int64_t	 db_account_find_refresh(sqlite3 *, const char *refresh_token);
/*
 * One line of a feed, or one entry of an import: a JSON object (the
 * POST /v2/accounts body, an export entry, or a Kiro IDE credential
 * file, reference 5.2) or a bare line: "refreshToken" (social) or
 * "clientId:clientSecret:refreshToken" (idc). Fills an (pointing into
 * o, or into line, which it may modify); *o (json_object_put it) may be
 * set even on error. 0, or -1 with why in err (never a secret).
 */
int	 db_account_parse(char *line, struct json_object **o,
	    struct db_account_new *an, char *err, size_t);
/* One account from a JSON object (the POST /v2/accounts body, an
 * export entry, a Kiro IDE credential file), checked; an points into
 * o. 0, or -1 with why in err (never a secret). */
int	 db_account_from_json(struct json_object *o,
	    struct db_account_new *an, char *err, size_t);
/* JSON export of every account: with_secrets 1 needs the private key
 * (the refresher, qrelayctl) and gives what another host needs. */
int	 db_accounts_export(sqlite3 *, int with_secrets, struct buf *out);
/* Import a JSON export (or an array of entries, or one Kiro credential
 * object): the entries that parse and are not duplicates are added in
 * one transaction; *report (an array, one {"index","status","id"|
 * "error"} per entry; status "added", "duplicate", "invalid" or
 * "failed") says what happened to each; beyond max_accounts accounts
 * in all (0: no limit) entries fail as the table is full. 0, -1 (not
 * JSON or not an export: err says why; nothing written) or -2
 * (database error, nothing written). */
int	 db_accounts_import(sqlite3 *, const char *json, size_t len,
	    int max_accounts, struct json_object **report, char *err,
	    size_t);
/* proxy: "" or scheme://[user[:pass]@]host[:port] with scheme http,
 * https, socks5 or socks5h; 1 good. */
int	 db_account_proxy_ok(const char *);
/* The proxy as it may be shown: the password replaced by "***". */
void	 db_proxy_mask(const char *proxy, char *out, size_t);
/* An account row as a slot's meta (strings point into a): am_state
 * from the stored state and enabled flag. */
void	 db_account_meta(const struct db_account *, struct shm_acct_meta *);
/* Accounts added before migration 3 have no refresh_hash: fill it in
 * (needs the private key: the master, after secret_init). Rows, -1. */
int	 db_accounts_hash_backfill(sqlite3 *);
/* Settings as the API shows them: every known one (stored value or
 * its default, typed) and other rows as strings, never a secret. */
struct json_object *db_settings_json(sqlite3 *);
/* A value for setting name from the API: 1 good (out gets the text
 * stored), 0 unknown name, -1 bad value (out gets why). */
int	 db_setting_check(const char *name, struct json_object *v,
	    char *out, size_t);
int	 db_account_delete(sqlite3 *, int64_t id);	/* 1, 0 none, -1 */
int	 db_account_request_refresh(sqlite3 *, int64_t id);	/* 1, 0, -1 */
/* Rebuild the account slots (as db_keys_load_shm does for keys); rows
 * with refresh_requested get SHM_REFRESH_FORCED. */
int	 db_accounts_load_shm(sqlite3 *, struct shm *);
int	 db_account_secrets(sqlite3 *, int64_t id, struct db_account_secrets *);
void	 db_account_secrets_free(struct db_account_secrets *);
/* The stored access token (secret_free it) and its expiry, or NULL. */
char	*db_account_access(sqlite3 *, int64_t id, int64_t *expires);
/* A renewal went well: new access token, and a new refresh token when
 * the answer had one (NULL keeps the old). 1 updated, 0 gone, -1. */
int	 db_account_refreshed(sqlite3 *, int64_t id, const char *access,
	    int64_t expires, const char *new_refresh, const char *profile_arn);
/* It failed: revoked disables the account; reason is stored. */
int	 db_account_refresh_failed(sqlite3 *, int64_t id, int revoked,
	    const char *reason);
/* List walkers: cb returns 0 to go on; a non-zero return stops the walk
 * and is returned (-1 on a database error). */
int	 db_account_list(sqlite3 *,
	    int (*cb)(const struct db_account *, void *), void *);

struct log_rec;
/* One transaction; -1 with the SQLite message in errbuf, not logged. */
int	 db_logs_insert_batch(sqlite3 *, const struct log_rec *, size_t n,
	    char *errbuf, size_t);
int	 db_logs_prune(sqlite3 *, int days);	/* rows deleted, or -1 */
int64_t	 db_logs_count(sqlite3 *);

/* ------------------------------------------------------------------ */
/* logger.c: request records through the log pipe into SQLite           */

/* One record = one write(2) <= PIPE_BUF, so it is atomic. */
struct log_rec {
	uint32_t	 lr_magic;
	uint32_t	 lr_size;
	int64_t		 lr_time_ms;		/* wall, ms */
	int64_t		 lr_duration_us;
	int64_t		 lr_key_id;
	int64_t		 lr_account_id;
	int64_t		 lr_bytes_in;
	int64_t		 lr_bytes_out;
	int64_t		 lr_tokens_in;
	int64_t		 lr_tokens_out;
	double		 lr_credits;
	int32_t		 lr_status;
	int32_t		 lr_pid;
	char		 lr_method[8];
	char		 lr_path[256];
	char		 lr_client_ip[48];
	char		 lr_model[64];
	char		 lr_error[256];
};
#define LOG_REC_MAGIC		0x4c4f4752u	/* "LOGR" */

/* From a worker: fill and send one record; never blocks. */
void	 logger_send(int fd, struct log_rec *);
int	 logger_main(struct config *, int slot, int lifeline_fd, int log_rfd)
	    QR_ATTR_NORETURN;

/* ------------------------------------------------------------------ */
/* jsonr.c: a strict JSON reader building json-c trees                 */

enum jsonr_code { JSONR_OK = 0, JSONR_EMPTY, JSONR_SYNTAX, JSONR_DEPTH,
	JSONR_NOMEM, JSONR_TOOBIG };

struct jsonr_err {
	int		 je_code;	/* enum jsonr_code */
	size_t		 je_off;	/* the byte where it failed (len: at
					 * the end of the data) */
	const char	*je_msg;	/* static text: what was wrong */
};

/* One RFC 8259 value filling all of s[0..len) but for whitespace, as
 * the json-c tree json_tokener would build (see jsonr.c for where the
 * two differ); a value may sit inside at most max_depth - 1 containers.
 * NULL: the error in err (may be NULL), or the input was "null" (code
 * JSONR_OK). */
struct json_object *jsonr_parse(const char *s, size_t len, int max_depth,
	    struct jsonr_err *err);

/* ------------------------------------------------------------------ */
/* qreq.c: the request between the client APIs and the upstream        */
/*
 * openai.c and anthropic.c parse a client body into a struct qreq (the
 * strings point into q_root or into copies qreq_strdup made); qreq_build
 * lints and repairs it and writes the upstream conversationState JSON.
 */

#define QR_JSON_DEPTH		128	/* json-c nesting limit for bodies */

enum qr_api { API_OPENAI = 1, API_ANTHROPIC };
enum qrole { QROLE_USER = 1, QROLE_ASSISTANT };
enum qpart_kind { QP_TEXT = 1, QP_THINKING, QP_IMAGE, QP_TOOL_USE,
	QP_TOOL_RESULT };

struct qpart {
	int		 qp_kind;
	const char	*qp_text;	/* TEXT, THINKING, TOOL_RESULT text */
	size_t		 qp_text_len;
	const char	*qp_image_format; /* IMAGE: "png" "jpeg" "gif" "webp" */
	const char	*qp_image_b64;	/* IMAGE: base64 of the bytes */
	size_t		 qp_image_len;
	const char	*qp_tool_id;	/* TOOL_USE, TOOL_RESULT */
	const char	*qp_tool_name;	/* TOOL_USE */
	struct json_object *qp_tool_input; /* TOOL_USE: an object, borrowed */
	int		 qp_tool_error;	/* TOOL_RESULT: the tool failed */
};

struct qmsg {
	int		 qm_role;	/* enum qrole */
	int		 qm_index;	/* the client's messages[] index, for
					 * errors; qreq_add_msg sets the
					 * qreq index, a parser may override */
	struct qpart	*qm_parts;
	size_t		 qm_nparts, qm_cap;
};

struct qtool {
	const char	*qt_name;
	const char	*qt_description;
	struct json_object *qt_schema;	/* JSON Schema object, borrowed */
};

enum qtool_choice { QTC_AUTO = 0, QTC_NONE, QTC_ANY, QTC_TOOL };
enum qthink { QTH_OFF = 0, QTH_ENABLED, QTH_ADAPTIVE };

/* A client error: status, the API's error type, a message naming the
 * rule broken. */
struct qerr {
	int		 qe_status;
	char		 qe_type[48];
	char		 qe_msg[256];
};

struct qreq {
	int		 q_api;		/* enum qr_api */
	const char	*q_model;	/* as the client wrote it */
	int		 q_stream;
	int		 q_include_usage; /* OpenAI stream_options.include_usage */
	int64_t		 q_max_tokens;	/* 0: not given */
	struct buf	 q_system;	/* system text, parts joined by "\n\n" */
	struct qmsg	*q_msgs;
	size_t		 q_nmsgs, q_msgs_cap;
	struct qtool	*q_tools;
	size_t		 q_ntools, q_tools_cap;
	int		 q_tool_choice;	/* enum qtool_choice */
	const char	*q_tool_choice_name;
	int		 q_thinking;	/* enum qthink */
	int		 q_thinking_budget; /* tokens, QTH_ENABLED */
	const char	*q_effort;	/* QTH_ADAPTIVE: low medium high, or NULL */
	struct json_object *q_root;	/* the parsed body: owns what is borrowed */
	char		**q_owned;	/* strings qreq_strdup made */
	size_t		 q_nowned, q_owned_cap;
	/* set by qreq_build */
	char		 q_upstream_model[128];
	char		**q_tool_map;	/* pairs: upstream name, client name */
	size_t		 q_ntool_map;
};

void	 qreq_init(struct qreq *, int api);
void	 qreq_free(struct qreq *);
/* Parse a body (jsonr_parse, depth QR_JSON_DEPTH) into q->q_root; on
 * error fills e (400, the API's invalid-request type, where it failed). */
int	 qreq_parse_json(struct qreq *, const char *body, size_t len,
	    struct qerr *);
/* NULL: no memory. The pointer lives until the next qreq_add_msg. */
struct qmsg *qreq_add_msg(struct qreq *, int role);
struct qpart *qreq_add_part(struct qreq *, struct qmsg *, int kind);
struct qtool *qreq_add_tool(struct qreq *);
const char *qreq_strdup(struct qreq *, const char *, size_t);
void	 qerr_set(struct qerr *, int status, const char *type,
	    const char *fmt, ...) QR_ATTR_PRINTF(4, 5);
int	 qerr_bad(struct qerr *, const char *fmt, ...) QR_ATTR_PRINTF(2, 3);
int	 qerr_nomem(struct qerr *);
struct json_object *qjson_get(struct json_object *, const char *key);
int	 qjson_append(struct buf *, struct json_object *);
const char *qreq_image_format(const char *mime, size_t len);
/* Client model name -> upstream modelId: the config's models list
 * first (exact names and fnmatch patterns), then the built-in names,
 * then the family defaults (opus, sonnet, haiku). -1: unknown. */
int	 qreq_model_resolve(const struct config *, const char *client,
	    char *out, size_t);
/* Lint, repair, and write the upstream body (REST-JSON flavour):
 * {"conversationState": {...}, "profileArn"?}. profile_arn may be ""
 * or NULL. -1 with e filled: 400 naming the rule, nothing to send. */
int	 qreq_build(struct qreq *, const struct config *,
	    const char *profile_arn, struct buf *out, struct qerr *);
/* The client's name of a tool the upstream calls by upstream_name
 * (names over 64 bytes were shortened by qreq_build). */
const char *qreq_tool_client_name(const struct qreq *, const char *);
/* Free what only the upstream body needed (the parsed body, messages,
 * tools), keeping the model name and the tool name map. 0 or -1. */
int	 qreq_shed(struct qreq *);
/* Input tokens of the request, as the tokenizer counts them. */
int64_t	 qreq_count_tokens(const struct qreq *);
/* The models GET /v1/models lists, in the API's shape. */
struct json_object *qreq_models_json(const struct config *, int api);

/* ------------------------------------------------------------------ */
/* eventstream.c: AWS event-stream frames, and what they mean          */

#define ES_MAX_HEADERS		32
#define ES_MAX_FRAME		(16 * 1024 * 1024)

enum es_htype { ES_TRUE = 0, ES_FALSE, ES_BYTE, ES_INT16, ES_INT32,
	ES_INT64, ES_BYTES, ES_STRING, ES_TIMESTAMP, ES_UUID };

struct es_header {
	const char	*eh_name;
	size_t		 eh_name_len;
	int		 eh_type;	/* enum es_htype */
	const char	*eh_value;	/* BYTES, STRING, UUID: the bytes */
	size_t		 eh_value_len;
	int64_t		 eh_int;	/* BOOL, BYTE, INT*, TIMESTAMP */
};

struct es_frame {
	struct es_header ef_hdrs[ES_MAX_HEADERS];
	size_t		 ef_nhdrs;
	const char	*ef_payload;
	size_t		 ef_payload_len;
};

struct es_decoder {
	struct buf	 ed_buf;	/* the unfinished frame */
	size_t		 ed_max;	/* frame size limit */
	char		 ed_err[128];	/* why the stream is corrupt */
	int		 ed_failed;
};

void	 es_init(struct es_decoder *, size_t max_frame);
void	 es_free(struct es_decoder *);
/* Feed bytes in any split; cb runs once per whole, CRC-checked frame
 * (its pointers live until cb returns; cb returns -1 to stop). -1: the
 * stream is corrupt (ed_err says why) or cb stopped (ed_err ""); it
 * never continues after either. */
int	 es_feed(struct es_decoder *, const void *, size_t,
	    int (*cb)(const struct es_frame *, void *), void *);
size_t	 es_pending(const struct es_decoder *);	/* bytes of a partial frame */
const char *es_header_str(const struct es_frame *, const char *name,
	    size_t *len);
/* Encode one frame (string headers only): used by tests and the bench. */
int	 es_encode(struct buf *, const char *const *names,
	    const char *const *values, size_t nhdrs, const void *payload,
	    size_t len);

/* What an upstream stream says, in order, API-neutral. */
enum qev_type { QEV_TEXT = 1, QEV_THINKING, QEV_TOOL_START, QEV_TOOL_ARGS,
	QEV_TOOL_STOP, QEV_ERROR };
enum qstop { QSTOP_NONE = 0, QSTOP_END_TURN, QSTOP_TOOL_USE,
	QSTOP_MAX_TOKENS, QSTOP_CONTEXT, QSTOP_ERROR };

struct qev {
	int		 qv_type;	/* enum qev_type */
	const char	*qv_text;	/* TEXT, THINKING, TOOL_ARGS fragment */
	size_t		 qv_len;
	const char	*qv_tool_id;	/* TOOL_START, TOOL_ARGS, TOOL_STOP */
	const char	*qv_tool_name;	/* TOOL_START: the upstream name */
	int		 qv_tool_index;	/* 0, 1, ... in order of start */
	int		 qv_status;	/* ERROR: the HTTP status it means */
	const char	*qv_err_type;	/* ERROR: Anthropic error type */
	const char	*qv_err_msg;
};

/*
 * The upstream stream interpreter: frames -> qev. It turns <thinking>
 * text into THINKING events when thinking was asked for (partial tags
 * held back across chunks), assembles tool-use fragments, drops
 * duplicates, and at the end decides the stop reason: a stream cut
 * short (transport error, a partial frame, an unfinished tool call)
 * ends with QSTOP_MAX_TOKENS, never QSTOP_END_TURN.
 */
struct ustream {
	struct es_decoder us_dec;
	int		(*us_emit)(const struct qev *, void *);
	void		*us_arg;
	int		 us_thinking;	/* split <thinking> out of the text */
	int		 us_think_state;
	struct buf	 us_hold;	/* text held back at a tag boundary */
	struct buf	 us_last_text;	/* for duplicate detection */
	char		 us_tool_id[128];	/* open tool call, "" none */
	char		 us_tool_name[128];
	int		 us_ntools;
	int		 us_nframes;
	int		 us_saw_end;	/* metering/context/metadata seen */
	int		 us_failed;	/* corrupt frame or exception */
	int		 us_stop;	/* enum qstop, after ustream_finish */
	int		 us_upstream_stop;	/* metadataEvent.stopReason */
	double		 us_credits;	/* meteringEvent.usage */
	double		 us_context_pct;	/* contextUsageEvent */
	int64_t		 us_in_tokens;	/* metadataEvent, 0 if none */
	int64_t		 us_out_tokens;
	char		 us_conversation_id[128];
	/* private to eventstream.c */
	struct buf	 us_done_ids;	/* finished tool ids, each "\0id\0" */
	char		 us_think_prev;	/* last thinking byte out (quotes) */
	int		 us_err_sent;	/* an ERROR event went out */
	int		 us_cle;	/* content-length exception seen */
	int		 us_tool_open_at_end; /* finish closed a cut tool call */
	size_t		 us_ntext;	/* text bytes emitted */
	size_t		 us_nthink;	/* thinking bytes emitted */
	int		 us_finished;
};

void	 ustream_init(struct ustream *, int thinking,
	    int (*emit)(const struct qev *, void *), void *);
void	 ustream_free(struct ustream *);
/* -1: corrupt or failed (an ERROR event went out first), or emit
 * returned -1; stop feeding. Events are well nested: text or thinking
 * arriving inside a tool call closes it (TOOL_STOP) first. */
int	 ustream_feed(struct ustream *, const void *, size_t);
/* The end: transport_ok is 0 when the connection broke. Flushes held
 * text, closes an open tool call, sets us_stop. */
int	 ustream_finish(struct ustream *, int transport_ok);

/* ------------------------------------------------------------------ */
/* openai.c, anthropic.c: client bodies in, responses out             */

struct usage {
	int64_t		 u_in;		/* input tokens */
	int64_t		 u_out;		/* output tokens */
	double		 u_credits;
};

/* Response renderer state, one per request. Streams write SSE bytes to
 * out as events come; non-streaming responses accumulate and write the
 * whole JSON body at finish. */
struct render {
	int		 rd_api;
	int		 rd_stream;
	const struct qreq *rd_q;
	char		 rd_id[64];	/* chatcmpl-... / msg_... */
	int64_t		 rd_created;	/* wall seconds */
	struct usage	 rd_usage;	/* u_in set before start, all before finish */
	int		 rd_started;
	int		 rd_block;	/* Anthropic: open block index, -1 none */
	int		 rd_block_kind;
	int		 rd_nblocks;
	int		 rd_ntools;
	struct buf	 rd_text;	/* non-stream: text so far */
	struct buf	 rd_thinking;	/* non-stream: thinking so far */
	struct json_object *rd_acc;	/* non-stream: tool calls so far */
	struct buf	 rd_args;	/* non-stream: args of the open tool */
	int64_t		 rd_tool_args;	/* OpenAI: args bytes the open tool
					 * call has had, -1: none open */
	int		 rd_flags;	/* the renderer's own bits */
	int		 rd_err_status;	/* an ERROR came, its status (OpenAI
					 * streams too: nothing follows it) */
};

int	 openai_parse(struct qreq *, const char *body, size_t, struct qerr *);
void	 openai_render_init(struct render *, const struct qreq *);
int	 openai_render_start(struct render *, struct buf *out);
int	 openai_render_event(struct render *, const struct qev *, struct buf *);
int	 openai_render_ping(struct render *, struct buf *out);
/* Streams: 0 (or -1, no memory); after an ERROR (or stop QSTOP_ERROR)
 * the error data line is the last thing written, no [DONE]. Non-stream:
 * 0 when out holds the chat.completion body (HTTP 200), else the HTTP
 * status of the OpenAI error body written to out. */
int	 openai_render_finish(struct render *, int stop, struct buf *out);
/* {"error":{"message","type","param":null,"code":null}}; type NULL:
 * openai_error_type(status) */
struct json_object *openai_error_json(int status, const char *type,
	    const char *message);
const char *openai_error_type(int status);	/* 400 -> invalid_request_error ... */

int	 anthropic_parse(struct qreq *, const char *body, size_t,
	    struct qerr *);
void	 anthropic_render_init(struct render *, const struct qreq *);
int	 anthropic_render_start(struct render *, struct buf *out);
int	 anthropic_render_event(struct render *, const struct qev *,
	    struct buf *);
int	 anthropic_render_ping(struct render *, struct buf *out);
/* Non-stream: rd_acc holds the content blocks so far, in order. The
 * return is 0 when out holds the message (status 200), the HTTP status
 * (>= 400, rd_err_status) when an ERROR event came and out holds the
 * Anthropic error body, -1 out of memory. Streams: 0 or -1; after an
 * ERROR event (stop QSTOP_ERROR) nothing more is written. */
int	 anthropic_render_finish(struct render *, int stop, struct buf *out);
/* {"type":"error","error":{"type","message"}} */
struct json_object *anthropic_error_json(int status, const char *type,
	    const char *message);
const char *anthropic_error_type(int status);	/* 400 -> invalid_request_error ... */
void	 render_free(struct render *);	/* qreq.c */

/* ------------------------------------------------------------------ */
/* tokens.c: the Claude BPE tokenizer                                   */

int	 tokens_init(void);		/* load the embedded vocabulary; 0/-1 */
void	 tokens_fini(void);		/* free it: this process never counts */
/* Tokens in utf8[0..len) as countTokens() of @anthropic-ai/tokenizer
 * counts them. Loads the vocabulary if tokens_init() has not; never
 * fails (without memory it guesses len / 4). */
int64_t	 tokens_count(const char *utf8, size_t len);


/* ------------------------------------------------------------------ */
/* pool.c: picking an account for a request (workers; shm only)        */

enum pool_strategy { POOL_ROUND_ROBIN = 0, POOL_LEAST_INFLIGHT,
	POOL_RANDOM, POOL_WEIGHTED, POOL_SEQUENTIAL };
const char *pool_strategy_name(int);	/* "round_robin", ... */
int	 pool_strategy_parse(const char *);	/* enum, -1 unknown */

#define POOL_MAX_EXCLUDE	8	/* slots one request may have failed on */

struct pool_pick {
	int		 pp_slot;
	int64_t		 pp_id;
	uint32_t	 pp_token_gen;
	char		 pp_token[SHM_TOKEN_MAX];
	char		 pp_region[32];
	char		 pp_profile_arn[160];
	char		 pp_proxy[SHM_PROXY_MAX];
	int64_t		 pp_retry_at;	/* POOL_LIMITED: wall s an account
					   comes back, 0 unknown */
};

/* pool_pick's answers */
#define POOL_OK		0
#define POOL_NONE	(-1)	/* no enabled account holds a usable token */
#define POOL_BUSY	(-2)	/* some could serve but are at their caps
				   (in flight, requests per minute): queue */
#define POOL_LIMITED	(-3)	/* all are cooling down or exhausted */

/*
 * Pick an account by the strategy in sh_strategy, skipping the slots in
 * exclude[0..nexclude) (this request failed on them). key != 0 is the
 * conversation's stickiness key: with sh_sticky_ttl set, the account
 * the key last used is taken again while it can serve. On POOL_OK the
 * account's in-flight count and its requests-per-minute allowance are
 * taken and pp holds a consistent copy of its token. Reads only the
 * shared table; no lock; O(1) expected for every strategy.
 */
int	 pool_pick(struct shm *, struct pool_pick *, uint64_t key,
	    const int *exclude, int nexclude);
/* The request on it is over: in-flight count back, counters; ok resets
 * the 429 streak; error (NULL when it went well) is the last error. */
void	 pool_release(struct shm *, int slot, int ok, const char *error);
/* What the request used, for the account's counters. */
void	 pool_account_usage(struct shm *, int slot, int64_t tokens_in,
	    int64_t tokens_out, double credits);
/* 429 throttling: cool the account down for the longer of retry_after
 * (seconds, 0 none) and an exponential backoff on repeats. */
void	 pool_cooldown(struct shm *, int slot, int retry_after);
/* 402 / monthly or overage quota: exhausted until the usage reset when
 * known, else the first of next month 00:00 UTC; asks the refresher to
 * poll the usage now. */
void	 pool_exhausted(struct shm *, int slot, const char *reason);
/* TEMPORARILY_SUSPENDED: state suspended with its reason. */
void	 pool_suspend(struct shm *, int slot, const char *reason);
/* The state as shown: enum acct_state, with cooling down and exhausted
 * derived from the times; *until gets when that ends (0 none). */
int	 pool_acct_state(const struct shm_acct *, int64_t now, int64_t *until);
/* "Bearer token invalid": flag the slot and wake the refresher. */
void	 pool_want_refresh(struct shm *, int slot);
/* Wake the refresher(s) to look at the flags now (SIGUSR2). */
void	 pool_wake_refresher(struct shm *);
/* 1 when the slot's token is usable now: enabled, expiring > 60 s on,
 * not cooling down, not exhausted (caps not looked at). */
int	 pool_acct_ready(const struct shm_acct *, int64_t now);
/* 1 when the slot's token is newer than gen (the refresh landed). */
int	 pool_token_changed(struct shm *, int slot, uint32_t gen);
/* The refresher: rebuild the weighted table from the slots' usage. */
void	 pool_weights_build(struct shm *);

/* ------------------------------------------------------------------ */
/* upstream.c: the worker's libcurl multi handle in its epoll loop     */

int	 upstream_init(int epfd);		/* in the worker, after fork */
void	 upstream_fini(void);
void	*upstream_multi(void);			/* the CURLM * */
void	*upstream_easy_get(void);		/* a CURL *, fresh options */
void	 upstream_easy_put(void *);		/* done with it */
void	 upstream_event(void *src, uint32_t events);	/* EV_CURL fired */
int64_t	 upstream_deadline(void);		/* ms monotonic, 0 none */
void	 upstream_timers(int64_t now);
void	 upstream_reap(void);	/* dead sockets, at the loop's end */

/* ------------------------------------------------------------------ */
/* relay.c: one client request through the upstream                    */

#define RELAY_TICK_MS		10000	/* pings, timeouts */

void	 relay_start(struct conn *, int api);	/* POST chat/messages */
void	 relay_count_tokens(struct conn *);
/* The transfer of easy finished (from upstream.c). */
void	 relay_done(void *easy, int curl_result);
/* From the worker: a timer fired (-1: close the connection), the
 * client's socket drained (resume a paused transfer). */
int	 relay_tick(struct conn *);
void	 relay_drained(struct conn *);
void	 relay_log(struct conn *, struct log_rec *);
void	 relay_free(struct relay *);	/* cancels a transfer in flight */

/* ------------------------------------------------------------------ */
/* refresher.c                                                          */

int	 refresher_main(struct config *, int slot, int lifeline_fd)
	    QR_ATTR_NORETURN;
#define REFRESH_WINDOW		600	/* renew tokens expiring within, s */

/* ------------------------------------------------------------------ */
/* oidc.c, kiro.c: the upstream auth and usage clients               */

/* AUTH_PENDING and on: the device flow's CreateToken answers */
enum auth_result { AUTH_OK = 0, AUTH_REVOKED, AUTH_FAILED, AUTH_PENDING,
	AUTH_SLOW_DOWN, AUTH_EXPIRED, AUTH_DENIED };

struct auth_tokens {
	char		*at_access;	/* malloc'd; auth_tokens_free zeroes */
	char		*at_refresh;	/* a new refresh token, or NULL */
	char		 at_profile_arn[160];	/* "" when the answer had none */
	int64_t		 at_expires;	/* wall seconds */
	int		 at_status;	/* HTTP status, 0 transport error */
	char		 at_error[160];	/* why, never a secret */
};

void	 oidc_tokens_free(struct auth_tokens *);
/* The endpoint for region: the configured one, with the config's region
 * replaced by region where it appears in it (no host is hard-coded). */
void	 oidc_endpoint_for(const char *configured, const char *cf_region,
	    const char *region, char *out, size_t);
/* The answer of a refresh, 200 or not (refresh_token: kept out of
 * at_error). invalid_grant / invalid_client -> AUTH_REVOKED. */
int	 oidc_parse_answer(int status, const struct buf *resp,
	    const char *refresh_token, struct auth_tokens *);
/* Request bodies: o's text (secret_free it); o is put and json-c's
 * copies of the members secret_names (NULL-terminated) are zeroed. */
char	*oidc_json_body(struct json_object *o,
	    const char *const *secret_names);
void	 oidc_json_scrub(struct json_object *, const char *const *names);
/* OIDC CreateToken, grantType refresh_token: enum auth_result. */
int	 oidc_refresh(const struct config *, const char *region,
	    const char *proxy, const char *client_id,
	    const char *client_secret, const char *refresh_token,
	    struct auth_tokens *);
/* Kiro POST /refreshToken: enum auth_result. */
int	 kiro_refresh(const struct config *, const char *region,
	    const char *proxy, const char *refresh_token, struct auth_tokens *);

/* AWS device authorization (reference 5.1). */
struct oidc_client {
	char		 oc_client_id[256];
	char		*oc_client_secret;	/* malloc'd; _free zeroes */
	int64_t		 oc_expires;		/* clientSecretExpiresAt */
};
struct oidc_device {
	char		*od_device_code;	/* malloc'd; _free zeroes */
	char		 od_user_code[32];
	char		 od_uri[256];
	char		 od_uri_complete[384];
	int64_t		 od_expires;		/* wall seconds */
	int		 od_interval;		/* seconds between polls */
};
void	 oidc_client_free(struct oidc_client *);
void	 oidc_device_free(struct oidc_device *);
/* RegisterClient: AUTH_OK or AUTH_FAILED (at_error-like text in err). */
int	 oidc_register(const struct config *, const char *region,
	    const char *proxy, struct oidc_client *, char *err, size_t);
/* StartDeviceAuthorization: AUTH_OK or AUTH_FAILED. */
int	 oidc_device_start(const struct config *, const char *region,
	    const char *proxy, const struct oidc_client *,
	    const char *start_url, struct oidc_device *, char *err, size_t);
/* One CreateToken poll: AUTH_OK (tokens in at), AUTH_PENDING,
 * AUTH_SLOW_DOWN (add 5 s to the interval), AUTH_EXPIRED, AUTH_DENIED,
 * AUTH_FAILED. */
int	 oidc_device_poll(const struct config *, const char *region,
	    const char *proxy, const struct oidc_client *,
	    const struct oidc_device *, struct auth_tokens *);

/* getUsageLimits (reference 5.3). Credits are kept x 1000. */
struct usage_limits {
	int64_t		 ul_used;
	int64_t		 ul_limit;		/* 0 unknown */
	int64_t		 ul_reset;		/* wall seconds, 0 unknown */
	char		 ul_subscription[64];
	char		 ul_email[128];
	int		 ul_status;		/* HTTP status, 0 transport */
	char		 ul_error[160];
	char		 ul_reason[64];		/* the error's reason or
						   exception name, "" none */
};
int	 kiro_usage_parse(const char *json, size_t len, struct usage_limits *);
/* A non-200 getUsageLimits answer: ul_status, ul_reason, ul_error. */
void	 kiro_usage_error(int status, const struct buf *resp,
	    struct usage_limits *);

/* The device flow's CreateToken answer (the pure half of
 * oidc_device_poll): the codes above; tokens in at on AUTH_OK. */
int	 oidc_parse_poll(int status, const struct buf *resp,
	    struct auth_tokens *);
/* RegisterClient and StartDeviceAuthorization answers: AUTH_OK or
 * AUTH_FAILED with why in err. */
int	 oidc_parse_register(int status, const struct buf *resp,
	    struct oidc_client *, char *err, size_t);
int	 oidc_parse_device(int status, const struct buf *resp,
	    struct oidc_device *, char *err, size_t);
/* The registered client of a region, kept in the settings row
 * "oidc_client:<region>" with its secret sealed (secret_encrypt,
 * base64): load gives 1 when one is stored and valid for another hour
 * (needs the private key), 0 none, -1 error; store 0 or -1. */
int	 oidc_client_load(sqlite3 *, const char *region, struct oidc_client *);
int	 oidc_client_store(sqlite3 *, const char *region,
	    const struct oidc_client *);
int	 oidc_client_forget(sqlite3 *, const char *region);

/*
 * One upstream auth or usage call, built once by its oidc_req_* or
 * kiro_req_* builder and then carried either by oidc_req_perform
 * (blocking: the API above and qrelayctl) or by a caller's curl multi
 * handle (oidc_req_easy, then oidc_req_finish when it is done; the
 * refresher). or_status is the HTTP status, 0 on a transport error
 * (its text in or_error); or_resp the answer (capped at 64 KiB,
 * NUL-terminated). oidc_req_free zeroes what held secrets.
 */
struct oidc_req {
	char		 or_url[1024];
	char		*or_body;	/* POST JSON, NULL: GET; secret */
	char		*or_bearer;	/* access token, or NULL; secret */
	char		 or_proxy[SHM_PROXY_MAX];	/* "" direct */
	struct buf	 or_resp;
	int		 or_status;
	char		 or_error[160];
	void		*or_easy;	/* CURL * while it runs */
	void		*or_hdrs;	/* struct curl_slist * */
	int		 or_over;	/* the answer was too large */
	char		 or_ebuf[256];	/* CURL_ERROR_SIZE */
};
void	 oidc_req_init(struct oidc_req *);
void	 oidc_req_free(struct oidc_req *);	/* curl_multi_remove first */
/* Builders: 0, or -1 (out of memory, or_error says so). */
int	 oidc_req_refresh(struct oidc_req *, const struct config *,
	    const char *region, const char *proxy, const char *client_id,
	    const char *client_secret, const char *refresh_token);
int	 kiro_req_refresh(struct oidc_req *, const struct config *,
	    const char *region, const char *proxy, const char *refresh_token);
int	 oidc_req_register(struct oidc_req *, const struct config *,
	    const char *region, const char *proxy);
int	 oidc_req_device_start(struct oidc_req *, const struct config *,
	    const char *region, const char *proxy, const struct oidc_client *,
	    const char *start_url);
int	 oidc_req_device_poll(struct oidc_req *, const struct config *,
	    const char *region, const char *proxy, const struct oidc_client *,
	    const struct oidc_device *);
int	 kiro_req_usage(struct oidc_req *, const struct config *,
	    const char *region, const char *proxy, const char *token,
	    const char *profile_arn);
/* The two shapes every builder uses: POST o (put; its secret_names
 * zeroed) as JSON to path under the configured endpoint for region;
 * GET url with a bearer token (NULL: none). */
int	 oidc_req_post_json(struct oidc_req *, const struct config *,
	    const char *endpoint, const char *region, const char *path,
	    const char *proxy, struct json_object *o,
	    const char *const *secret_names);
int	 oidc_req_get(struct oidc_req *, const char *url, const char *proxy,
	    const char *token);
/* The easy handle of a built request (CURLOPT_PRIVATE: the request),
 * or NULL; finish takes the transfer's CURLcode. */
void	*oidc_req_easy(struct oidc_req *, const struct config *);
void	 oidc_req_finish(struct oidc_req *, int curl_code);
int	 oidc_req_perform(struct oidc_req *, const struct config *); /* 0/-1 */
/* Answers of a carried request (transport errors included). */
int	 oidc_req_tokens(const struct oidc_req *, const char *refresh_token,
	    struct auth_tokens *);		/* refresh: enum auth_result */
int	 oidc_req_poll(const struct oidc_req *, struct auth_tokens *);
int	 oidc_req_client(const struct oidc_req *, struct oidc_client *,
	    char *err, size_t);
int	 oidc_req_device(const struct oidc_req *, struct oidc_device *,
	    char *err, size_t);
int	 kiro_req_usage_answer(const struct oidc_req *, struct usage_limits *);


#endif /* QRELAYD_H */
