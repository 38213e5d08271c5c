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
int	 random_bytes(void *, size_t);	/* getrandom(2), 0 or -1 */
void	 hex_encode(const unsigned char *, size_t, char *);	/* 2n+1 */
int	 ct_equal(const void *, const void *, size_t);	/* CRYPTO_memcmp */
int	 mkdir_p(const char *, mode_t);
size_t	 strlcpy_qr(char *, const char *, size_t);
int	 strcaseeq_n(const char *, size_t, const char *);	/* len-bounded */
int	 pct_decode(const char *, size_t, char *, size_t);	/* -1 bad */
void	 fmt_rfc1123(time_t, char out[40]);
const char *fmt_iso8601(int64_t, char out[32]);	/* NULL for t <= 0 */

/* ------------------------------------------------------------------ */
/* config.c: libconfig -> struct config                                 */

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
#define SHM_LAYOUT		1
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
	char		 sp_pad[8];
} __attribute__((aligned(64)));

enum acct_state { ACCT_EMPTY = 0, ACCT_ENABLED, ACCT_DISABLED,
	ACCT_COOLDOWN, ACCT_EXHAUSTED, ACCT_SUSPENDED, ACCT_REFRESH_FAILED };

/* Account slot. The token fields are written only by the refresher,
 * under the slot's seqlock (sa_seq odd while a write is in progress). */
struct shm_acct {
	_Atomic uint32_t sa_seq;
	_Atomic int32_t	 sa_state;
	int64_t		 sa_id;			/* SQLite rowid, 0 = free */
	char		 sa_label[64];
	char		 sa_region[32];
	char		 sa_profile_arn[160];
	char		 sa_token[SHM_TOKEN_MAX];
	int64_t		 sa_expires;		/* wall seconds */
	_Atomic uint32_t sa_token_gen;
	_Atomic int32_t	 sa_refresh_wanted;
	_Atomic int32_t	 sa_inflight;
	_Atomic int64_t	 sa_cooldown_until;
	_Atomic uint64_t sa_requests;
	_Atomic uint64_t sa_errors;
	char		 sa_last_error[128];
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
};

struct shm {
	void		*shm_base;
	size_t		 shm_size;
	struct shm_hdr	*shm_hdr;
	struct shm_proc	*shm_procs;
	struct shm_acct	*shm_accts;
	struct shm_key	*shm_keys;
};

extern struct shm *qr_shm;	/* the process's view, set up by shm_create */

int	 shm_create(struct shm *, uint32_t max_accounts, uint32_t max_keys);
void	 shm_destroy(struct shm *);
int	 shm_lock(struct shm *);	/* 0, or 1 when a dead holder was recovered */
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
	struct http_hdr	 rq_hdrs[QR_MAX_HEADERS];
	size_t		 rq_nhdrs;
	/* derived from the headers by http_parse_request */
	int64_t		 rq_content_length;	/* -1: none */
	int		 rq_chunked;
	int		 rq_keep_alive;
	int		 rq_expect_continue;
};

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
enum ev_kind { EV_LISTENER = 1, EV_LIFELINE, EV_CONN };

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
};

int	 worker_main(struct config *, int slot, int lifeline_fd, int log_fd)
	    QR_ATTR_NORETURN;
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

/* What may be shown of an account: never its secrets. */
struct db_account {
	int64_t		 a_id;
	char		 a_type[16];		/* "idc" or "social" */
	char		 a_label[128];
	char		 a_state[32];
	int		 a_enabled;
	int64_t		 a_expires;		/* access token, wall seconds */
	char		 a_last_error[256];
};
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
/* refresher.c                                                          */

int	 refresher_main(struct config *, int slot, int lifeline_fd)
	    QR_ATTR_NORETURN;


#endif /* QRELAYD_H */
