/*
 * refresher.c - the refresher process.
 *
 * It is the one process of the daemon that opens refresh tokens and
 * client secrets. It
 *  - renews the access tokens of the upstream accounts before they
 *    expire (the OIDC refresh_token grant for IdC accounts, Kiro's
 *    refreshToken for social ones) and publishes only the short-lived
 *    access tokens to the shared table: SQLite first, then the slot
 *    (shm_acct_set_token bumps sa_token_gen, which a worker waiting
 *    after a 403 watches);
 *  - polls each account's usage (getUsageLimits) every usage_interval
 *    seconds, and at once for a slot a worker flagged (a 402), into the
 *    slot, the database and the weighted-selection table;
 *  - persists the health workers learnt (suspended, exhausted until),
 *    which they keep in the shared table only;
 *  - runs the jobs workers hand it (struct shm_job): the AWS device
 *    authorization, the feed of refresh tokens (each checked by a
 *    refresh, the good ones added in one transaction), the full export.
 *
 * Every upstream call is a struct oidc_req (oidc.c, kiro.c) carried by
 * one curl multi handle: up to refresher.parallel account calls at once,
 * started at most RF_START_RATE a second, so a thousand accounts loaded
 * together neither open a thousand connections nor come due together
 * again: each account's renewal window is shortened by a jitter derived
 * from its id, up to half of REFRESH_WINDOW. Renewals come first: while
 * one is due and waits for room or a start, no usage poll or feed check
 * starts, or a long feed would let tokens expire. A refused refresh token
 * (invalid_grant) disables the account with the reason; other failures
 * are retried with a doubling backoff and shown on the account.
 *
 * Two refreshers (the old and new generation during a reload) never
 * renew one account at once: a slot is claimed with sa_refresh_pid
 * before its renewal starts and released when it ends, since a refresh
 * token that rotates would otherwise be spent twice. A job is taken by
 * moving it from SJ_REQUESTED to SJ_RUNNING with a compare-and-swap.
 *
 * Signals are blocked except inside ppoll, which waits on the lifeline,
 * the multi handle's sockets and the next deadline. The scan reads the
 * slot flags after waking, so a SIGUSR2 (pool_want_refresh, an admin's
 * refresh, a new account or job) that arrives while it works is taken
 * at the next ppoll, never lost; a SIGTERM gives renewals in flight a
 * moment to land and stops. It also deletes expired admin sessions once
 * a minute. Tokens are never logged.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "qrelayd.h"

#define REFRESHER_TICK_MS	5000
#define REFRESHER_SWEEP_MS	60000
#define RF_BACKOFF_MIN_MS	5000
#define RF_BACKOFF_MAX_MS	300000
#define RF_WANTED_GAP_MS	2000	/* a worker's flag, after a success */
#define RF_REPEAT_MIN_MS	30000	/* window renewals, after a success */
#define RF_START_RATE		20	/* account calls started a second */
#define RF_USAGE_RETRY_MS	60000	/* a failed usage poll, doubling */
#define RF_WEIGHTS_GAP_MS	2000	/* weights rebuilt at most so often */
#define RF_QUIT_GRACE_MS	2000	/* renewals in flight at a SIGTERM */
#define RF_HANDOVER_MS		5000	/* wait for the last refresher, at most */
#define RF_DEVICE_RETRIES	5	/* transient device poll failures */
#define RF_JOB_ORPHAN		3600	/* s: a job nobody runs is failed */
#define RF_JOB_UNCLAIMED	600	/* s: a claim never requested */
#define RF_COUNTERS_MS		60000	/* counters persisted at most so often */
#define RF_FEED_MAX		(64 * 1024 * 1024)	/* bytes of a feed */

/* What this process remembers of each slot; reset when the id changes. */
struct rf_slot {
	int64_t		 rs_id;
	int		 rs_fails;
	int64_t		 rs_next_ms;	/* backoff: not before (monotonic) */
	int64_t		 rs_ok_ms;	/* last success (monotonic) */
	int64_t		 rs_ttl_ms;	/* lifetime of the last token */
	int		 rs_refreshing;	/* a renewal of ours is in flight */
	int		 rs_polling;	/* a usage poll of ours is in flight */
	int		 rs_usage_fails;
	int64_t		 rs_usage_next_ms;	/* usage backoff */
	int64_t		 rs_saved_exh;	/* sa_exhausted_until persisted */
	int64_t		 rs_saved_cool;	/* sa_cooldown_until persisted */
	struct acct_counters rs_saved;	/* counters persisted */
	int64_t		 rs_saved_ms;	/* when (monotonic), 0 never */
	int		 rs_stored_seen;	/* stored token looked at */
	int		 rs_saved_susp;	/* suspended persisted */
};

/* One upstream call in flight on the multi handle. */
enum rx_kind { RX_REFRESH = 1, RX_USAGE, RX_CHECK, RX_REGISTER,
	RX_DEVSTART, RX_DEVPOLL };
struct rf_xfer {
	int		 rx_kind;
	struct oidc_req	 rx_req;
	uint32_t	 rx_slot;	/* REFRESH, USAGE */
	int64_t		 rx_id;
	int64_t		 rx_old_exp;	/* REFRESH: the token's expiry */
	char		*rx_refresh;	/* REFRESH, CHECK: the token sent */
	int		 rx_job;	/* CHECK, device */
	size_t		 rx_entry;	/* CHECK: the feed entry */
	struct rf_xfer	*rx_next, *rx_prev;
};

/* A feed line, from parse to report. */
enum fe_status { FE_PARSED = 0, FE_CHECKING, FE_CHECKED, FE_ADDED,
	FE_DUPLICATE, FE_INVALID, FE_REFUSED, FE_FAILED };
struct rf_entry {
	int		 fe_line;
	int		 fe_status;
	int64_t		 fe_id;		/* added, or the duplicate's */
	char		 fe_error[200];
	struct json_object *fe_obj;	/* what db_account_parse built */
	struct db_account_new fe_an;	/* points into fe_obj or the data */
	struct auth_tokens fe_at;	/* the check's answer */
};
struct rf_feed {
	char		*fd_data;	/* the file, lines cut in place */
	size_t		 fd_len;
	struct rf_entry	*fd_e;
	size_t		 fd_n;
	size_t		 fd_next;	/* next entry to check */
};

/* What this process keeps of a job it runs. */
struct rf_job {
	int		 rj_mine;
	char		 rj_id[37];
	int		 rj_busy;	/* transfers in flight */
	int64_t		 rj_next_ms;	/* device: the next poll */
	int		 rj_interval;	/* device: s between polls */
	int		 rj_stored;	/* the client came from the settings */
	int		 rj_retries;
	char		 rj_region[32];
	char		 rj_proxy[SHM_PROXY_MAX];
	struct oidc_client rj_client;
	struct oidc_device rj_dev;
	struct rf_feed	*rj_feed;
};

static struct config	*rf_cf;
static sqlite3		*rf_db;
static struct rf_slot	*rf_slots;
static uint32_t		 rf_nslots;
static struct rf_job	 rf_jobs[SHM_JOBS];
static CURLM		*rf_multi;
static struct rf_xfer	*rf_xfers;
static int		 rf_nacct;	/* account calls in flight */
static int		 rf_nusage;	/* of which usage polls */
static int		 rf_nrenew;	/* of which renewals */
static int		 rf_parallel;
static double		 rf_tokens;	/* start allowance */
static int64_t		 rf_tokens_ms;
static int		 rf_weights_dirty;
static int		 rf_renew_waiting;	/* the last scan left a renewal
					   due for want of room or a start */
static int64_t		 rf_weights_ms;
static int		 rf_quitting;
static int		 rf_live_tx;	/* rf_health opened a transaction */
static int64_t		 rf_handover;	/* ms: an older refresher may still
					   run calls until it ends, or then */
static volatile sig_atomic_t rf_woken;

/* poll set: [0] the lifeline, then the multi handle's sockets */
static struct pollfd	*rf_pfd;
static int		 rf_npfd, rf_cappfd;
static int64_t		 rf_curl_at = -1;	/* ms monotonic, -1 none */

static void	 rf_xfer_done(struct rf_xfer *);

static void
rf_wake(int sig)
{
	rf_woken = 1;
}

/* A stop is pending (signals are blocked outside ppoll). */
static int
rf_stop_pending(void)
{
	sigset_t	 set;

	if (qr_child_quit || sigpending(&set) == -1)
		return 1;
	return sigismember(&set, SIGTERM) || sigismember(&set, SIGINT) ||
	    sigismember(&set, SIGQUIT);
}

/* A spread of span derived from id, the same in every process. */
static int64_t
rf_jitter(int64_t id, int64_t span)
{
	uint64_t	 z = (uint64_t)id + 0x9e3779b97f4a7c15ull;

	if (span <= 0)
		return 0;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (int64_t)(z % (uint64_t)span);
}

/* ------------------------------------------------------------------ */
/* claims, backoff, the start allowance                                  */

static int
rf_claim(struct shm_acct *a)
{
	int32_t	 cur = 0, me = (int32_t)getpid();

	if (atomic_compare_exchange_strong(&a->sa_refresh_pid, &cur, me))
		return 1;
	/* a refresher killed mid-renewal leaves its pid behind */
	if (cur != me && kill(cur, 0) == -1 && errno == ESRCH &&
	    atomic_compare_exchange_strong(&a->sa_refresh_pid, &cur, me))
		return 1;
	return 0;
}

static void
rf_release(struct shm_acct *a)
{
	int32_t	 me = (int32_t)getpid();

	(void)atomic_compare_exchange_strong(&a->sa_refresh_pid, &me, 0);
}

static void
rf_backoff(struct rf_slot *rs)
{
	int64_t	 d = RF_BACKOFF_MIN_MS;
	int	 i;

	rs->rs_fails++;
	for (i = 1; i < rs->rs_fails && d < RF_BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > RF_BACKOFF_MAX_MS)
		d = RF_BACKOFF_MAX_MS;
	rs->rs_next_ms = now_ms() + d;
}

/* One start of the RF_START_RATE a second: 1 taken, else 0 and *wait
 * lowered to when the next comes. */
static int
rf_take_start(int64_t *wait)
{
	int64_t	 now = now_ms();

	rf_tokens += (double)(now - rf_tokens_ms) * RF_START_RATE / 1000.0;
	if (rf_tokens > RF_START_RATE)
		rf_tokens = RF_START_RATE;
	rf_tokens_ms = now;
	if (rf_tokens >= 1.0) {
		rf_tokens -= 1.0;
		return 1;
	}
	if (*wait > 1000 / RF_START_RATE)
		*wait = 1000 / RF_START_RATE;
	return 0;
}

/*
 * After a reload the last generation's refresher finishes its calls in
 * flight (RF_QUIT_GRACE_MS) while this one starts: no account call of
 * ours until it is gone, so the two together stay within the bound.
 */
static int
rf_handing_over(void)
{
	static int64_t	 checked_ms;
	struct shm_proc	*sp;
	uint32_t	 i;
	int32_t		 pid, me = (int32_t)getpid();

	if (rf_handover == 0)
		return 0;
	/* asked for each due slot: the process table is read at most
	 * every 20 ms, not once per slot */
	if (now_ms() - checked_ms < 20)
		return 1;
	checked_ms = now_ms();
	if (now_ms() < rf_handover)
		for (i = 0; i < qr_shm->shm_hdr->sh_max_procs; i++) {
			sp = &qr_shm->shm_procs[i];
			pid = atomic_load(&sp->sp_pid);
			if (sp->sp_role == ROLE_REFRESHER && pid > 0 &&
			    pid != me && kill(pid, 0) == 0)
				return 1;
		}
	rf_handover = 0;
	return 0;
}

static int
rf_room(void)
{
	return rf_nacct < rf_parallel && !rf_handing_over();
}

/* ------------------------------------------------------------------ */
/* the multi handle and the poll set                                     */

static int
rf_pfd_find(int fd)
{
	int	 i;

	for (i = 1; i < rf_npfd; i++)
		if (rf_pfd[i].fd == fd)
			return i;
	return -1;
}

static int
rf_sock_cb(CURL *e, curl_socket_t fd, int what, void *u, void *sp)
{
	struct pollfd	*np;
	int		 i = rf_pfd_find(fd);

	if (what == CURL_POLL_REMOVE) {
		if (i != -1)
			rf_pfd[i] = rf_pfd[--rf_npfd];
		return 0;
	}
	if (i == -1) {
		if (rf_npfd == rf_cappfd) {
			if ((np = reallocarray(rf_pfd, rf_cappfd * 2,
			    sizeof(*np))) == NULL)
				return -1;
			rf_pfd = np;
			rf_cappfd *= 2;
		}
		i = rf_npfd++;
		rf_pfd[i].fd = fd;
	}
	rf_pfd[i].events = ((what & CURL_POLL_IN) ? POLLIN : 0) |
	    ((what & CURL_POLL_OUT) ? POLLOUT : 0);
	rf_pfd[i].revents = 0;
	return 0;
}

static int
rf_timer_cb(CURLM *m, long timeout_ms, void *u)
{
	rf_curl_at = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	return 0;
}

static struct rf_xfer *
rf_xfer_new(int kind)
{
	struct rf_xfer	*x;

	if ((x = calloc(1, sizeof(*x))) == NULL) {
		log_warn("%s: calloc", __func__);
		return NULL;
	}
	x->rx_kind = kind;
	x->rx_job = -1;
	oidc_req_init(&x->rx_req);
	return x;
}

static void
rf_xfer_free(struct rf_xfer *x)
{
	oidc_req_free(&x->rx_req);
	secret_free(x->rx_refresh, 0);
	free(x);
}

static int
rf_is_acct(int kind)
{
	return kind == RX_REFRESH || kind == RX_USAGE || kind == RX_CHECK;
}

/*
 * Put a built request on the multi handle. When it cannot even start
 * (the builder failed, no memory) it is finished at once with its error,
 * as a transport failure: the caller's bookkeeping is the same.
 */
static void
rf_xfer_start(struct rf_xfer *x)
{
	CURL	*h = NULL;

	if (rf_is_acct(x->rx_kind)) {
		rf_nacct++;
		if (x->rx_kind == RX_USAGE)
			rf_nusage++;
		else if (x->rx_kind == RX_REFRESH)
			rf_nrenew++;
	}
	if (x->rx_req.or_error[0] == '\0' &&
	    (h = oidc_req_easy(&x->rx_req, rf_cf)) != NULL &&
	    curl_multi_add_handle(rf_multi, h) != CURLM_OK) {
		snprintf(x->rx_req.or_error, sizeof(x->rx_req.or_error),
		    "curl_multi_add_handle failed");
		h = NULL;
	}
	if (h == NULL) {
		x->rx_req.or_status = 0;
		if (x->rx_req.or_error[0] == '\0')
			snprintf(x->rx_req.or_error,
			    sizeof(x->rx_req.or_error), "cannot start");
		rf_xfer_done(x);
		return;
	}
	x->rx_next = rf_xfers;
	if (rf_xfers != NULL)
		rf_xfers->rx_prev = x;
	rf_xfers = x;
}

static void
rf_xfer_unlink(struct rf_xfer *x)
{
	if (x->rx_prev != NULL)
		x->rx_prev->rx_next = x->rx_next;
	else if (rf_xfers == x)
		rf_xfers = x->rx_next;
	if (x->rx_next != NULL)
		x->rx_next->rx_prev = x->rx_prev;
	x->rx_next = x->rx_prev = NULL;
	if (x->rx_req.or_easy != NULL)
		curl_multi_remove_handle(rf_multi, x->rx_req.or_easy);
}

/* Finished transfers: their answers, then their owners. How many. */
static int
rf_multi_reap(void)
{
	struct rf_xfer	*x;
	CURLMsg		*msg;
	char		*p;
	int		 left, n = 0;

	while ((msg = curl_multi_info_read(rf_multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		p = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
		/* the request is the transfer's first member but one */
		x = (struct rf_xfer *)((char *)p -
		    offsetof(struct rf_xfer, rx_req));
		oidc_req_finish(&x->rx_req, (int)msg->data.result);
		rf_xfer_unlink(x);
		rf_xfer_done(x);
		n++;
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* accounts into the shared table                                        */

/* The slot of account id from its row (a new account: device, feed),
 * with its first access token. -1 when the table is full. */
static int
rf_account_to_shm(int64_t id, const char *tok, int64_t expires,
    const char *profile_arn)
{
	struct shm_acct_meta	 m;
	struct db_account	*a;
	int			 slot = -1;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return -1;
	if (db_account_get(rf_db, id, a) != 1)
		goto done;
	db_account_meta(a, &m);
	if ((slot = shm_acct_put(qr_shm, &m, NULL, 0)) == -1) {
		log_warnx("account %lld: no free account slot (max_accounts)",
		    (long long)id);
		goto done;
	}
	if (tok != NULL)
		(void)shm_acct_set_token(qr_shm, (uint32_t)slot, id, tok,
		    expires, profile_arn);
 done:
	free(a);
	return slot;
}

/* The slot's proxy, region and profile ARN (and token when tok is not
 * NULL, SHM_TOKEN_MAX): 0, or -1 when it no longer holds id. */
static int
rf_slot_copy(uint32_t slot, int64_t id, char *proxy, char *region,
    char *arn, char *tok)
{
	static struct shm_acct	 copy;
	int			 rv = -1;

	if (shm_acct_read(qr_shm, slot, &copy) == 0 && copy.sa_id == id) {
		memcpy(proxy, copy.sa_proxy, sizeof(copy.sa_proxy));
		memcpy(region, copy.sa_region, sizeof(copy.sa_region));
		memcpy(arn, copy.sa_profile_arn, sizeof(copy.sa_profile_arn));
		if (tok != NULL)
			memcpy(tok, copy.sa_token, sizeof(copy.sa_token));
		rv = 0;
	}
	explicit_bzero(copy.sa_token, sizeof(copy.sa_token));
	return rv;
}

/* ------------------------------------------------------------------ */
/* renewals                                                              */

static void
rf_refresh_failed(uint32_t slot, int64_t id, int64_t old_expires,
    struct auth_tokens *at, int res)
{
	struct shm		*s = qr_shm;
	struct shm_acct		*a = &s->shm_accts[slot];
	struct rf_slot		*rs = &rf_slots[slot];
	char			 reason[256];
	int32_t			 forced = SHM_REFRESH_FORCED;

	if (res == AUTH_REVOKED) {
		snprintf(reason, sizeof(reason), "refresh token refused, "
		    "account disabled (%s)", at->at_error);
		(void)db_account_refresh_failed(rf_db, id, 1, reason);
		/* no token, no flag, generation bumped: a worker waiting on
		 * this slot moves on at once */
		if (shm_acct_set_token(s, slot, id, "", 0, NULL) == 0) {
			(void)shm_acct_set_state(s, slot, id, -1,
			    ACCT_DISABLED);
			(void)shm_acct_set_error(s, slot, id, reason);
		}
		log_warnx("account %lld: %s", (long long)id, reason);
		return;
	}
	snprintf(reason, sizeof(reason), "token refresh failed: %s",
	    at->at_error);
	(void)db_account_refresh_failed(rf_db, id, 0, reason);
	(void)shm_acct_set_error(s, slot, id, reason);
	if (old_expires <= (int64_t)now_wall() + 60)
		(void)shm_acct_set_state(s, slot, id, ACCT_ENABLED,
		    ACCT_REFRESH_FAILED);
	/* an admin's request was answered; a worker's flag stays and is
	 * retried after the backoff */
	(void)atomic_compare_exchange_strong(&a->sa_refresh_wanted, &forced,
	    0);
	if (rs->rs_id == id) {
		rf_backoff(rs);
		log_warnx("account %lld: %s; retrying in %lld s",
		    (long long)id, reason,
		    (long long)((rs->rs_next_ms - now_ms()) / 1000));
	} else
		log_warnx("account %lld: %s", (long long)id, reason);
}

static void
rf_refresh_done(struct rf_xfer *x)
{
	struct shm		*s = qr_shm;
	struct rf_slot		*rs = &rf_slots[x->rx_slot];
	struct auth_tokens	 at;
	int			 r, res, rotated;

	res = oidc_req_tokens(&x->rx_req, x->rx_refresh, &at);
	if (res != AUTH_OK) {
		rf_refresh_failed(x->rx_slot, x->rx_id, x->rx_old_exp, &at,
		    res);
		goto done;
	}
	/* an answer without a refresh token keeps the old one */
	rotated = at.at_refresh != NULL &&
	    strcmp(at.at_refresh, x->rx_refresh) != 0;
	r = db_account_refreshed(rf_db, x->rx_id, at.at_access,
	    at.at_expires, rotated ? at.at_refresh : NULL, at.at_profile_arn);
	if (r == 0)
		goto done;	/* deleted meanwhile */
	if (r == -1)
		log_warnx("account %lld: renewed, but the database did not "
		    "take it%s", (long long)x->rx_id, rotated ?
		    "; the new refresh token is lost" : "");
	if (shm_acct_set_token(s, x->rx_slot, x->rx_id, at.at_access,
	    at.at_expires, at.at_profile_arn) == -1)
		goto done;
	(void)shm_acct_set_state(s, x->rx_slot, x->rx_id,
	    ACCT_REFRESH_FAILED, ACCT_ENABLED);
	if (rs->rs_id == x->rx_id) {
		rs->rs_fails = 0;
		rs->rs_next_ms = 0;
		rs->rs_ok_ms = now_ms();
		rs->rs_ttl_ms = (at.at_expires - now_wall()) * 1000;
	}
	log_info("account %lld: access token renewed, valid %lld s%s",
	    (long long)x->rx_id, (long long)(at.at_expires - now_wall()),
	    rotated ? ", refresh token rotated" : "");
 done:
	oidc_tokens_free(&at);
	if (rs->rs_id == x->rx_id)
		rs->rs_refreshing = 0;
	rf_release(&s->shm_accts[x->rx_slot]);
}

/* Start renewing account id in slot, claimed by the caller. */
static void
rf_refresh_start(uint32_t slot, int64_t id, int64_t old_expires)
{
	struct db_account_secrets as;
	struct auth_tokens	 at;
	struct rf_xfer		*x;
	char			 proxy[SHM_PROXY_MAX], region[32], arn[160];
	int			 r;

	if ((r = db_account_secrets(rf_db, id, &as)) == 0) {
		rf_release(&qr_shm->shm_accts[slot]);
		return;		/* deleted: its slot goes with it */
	}
	if (r == -1) {
		memset(&at, 0, sizeof(at));
		snprintf(at.at_error, sizeof(at.at_error),
		    "stored secrets unreadable");
		rf_refresh_failed(slot, id, old_expires, &at, AUTH_FAILED);
		rf_release(&qr_shm->shm_accts[slot]);
		return;
	}
	if (rf_slot_copy(slot, id, proxy, region, arn, NULL) == -1 ||
	    (x = rf_xfer_new(RX_REFRESH)) == NULL) {
		db_account_secrets_free(&as);
		rf_release(&qr_shm->shm_accts[slot]);
		return;
	}
	x->rx_slot = slot;
	x->rx_id = id;
	x->rx_old_exp = old_expires;
	if ((x->rx_refresh = strdup(as.as_refresh_token)) == NULL)
		snprintf(x->rx_req.or_error, sizeof(x->rx_req.or_error),
		    "out of memory");
	else if (strcmp(as.as_type, "idc") == 0)
		(void)oidc_req_refresh(&x->rx_req, rf_cf, as.as_region, proxy,
		    as.as_client_id, as.as_client_secret ?
		    as.as_client_secret : "", as.as_refresh_token);
	else
		(void)kiro_req_refresh(&x->rx_req, rf_cf, as.as_region, proxy,
		    as.as_refresh_token);
	db_account_secrets_free(&as);
	rf_slots[slot].rs_refreshing = 1;
	rf_xfer_start(x);
}

/* ------------------------------------------------------------------ */
/* usage                                                                 */

static void
rf_usage_start(uint32_t slot, int64_t id)
{
	struct rf_xfer	*x;
	char		 proxy[SHM_PROXY_MAX], region[32], arn[160];
	char		*tok;

	if ((tok = malloc(SHM_TOKEN_MAX)) == NULL)
		return;
	if (rf_slot_copy(slot, id, proxy, region, arn, tok) == -1 ||
	    tok[0] == '\0' || (x = rf_xfer_new(RX_USAGE)) == NULL) {
		secret_free(tok, SHM_TOKEN_MAX);
		return;
	}
	x->rx_slot = slot;
	x->rx_id = id;
	(void)kiro_req_usage(&x->rx_req, rf_cf, region, proxy, tok, arn);
	secret_free(tok, SHM_TOKEN_MAX);
	rf_slots[slot].rs_polling = 1;
	rf_xfer_start(x);
}

static void
rf_usage_done(struct rf_xfer *x)
{
	struct shm_acct		*a = &qr_shm->shm_accts[x->rx_slot];
	struct rf_slot		*rs = &rf_slots[x->rx_slot];
	struct usage_limits	 ul;
	int64_t			 now = now_wall(), until, d;
	int32_t			 zero = 0;
	int			 i, mine = rs->rs_id == x->rx_id;

	if (mine)
		rs->rs_polling = 0;
	if (a->sa_id != x->rx_id)
		return;		/* the slot went to another account */
	atomic_store(&a->sa_usage_wanted, 0);
	if (kiro_req_usage_answer(&x->rx_req, &ul) == -1) {
		if (ul.ul_status == 403 && (strcmp(ul.ul_reason,
		    "TEMPORARILY_SUSPENDED") == 0 ||
		    strcasestr(ul.ul_error, "suspended") != NULL)) {
			pool_suspend(qr_shm, (int)x->rx_slot, ul.ul_error);
			log_warnx("account %lld: suspended (%s)",
			    (long long)x->rx_id, ul.ul_error);
		} else if (ul.ul_status == 403 || ul.ul_status == 401)
			/* the token went bad: renew it, then poll again */
			(void)atomic_compare_exchange_strong(
			    &a->sa_refresh_wanted, &zero,
			    SHM_REFRESH_WANTED);
		else
			log_warnx("account %lld: %s", (long long)x->rx_id,
			    ul.ul_error);
		if (mine) {
			d = RF_USAGE_RETRY_MS;
			for (i = 0; i < rs->rs_usage_fails &&
			    d < 3600 * 1000; i++)
				d *= 2;
			rs->rs_usage_fails++;
			rs->rs_usage_next_ms = now_ms() + d;
		}
		return;
	}
	if (mine) {
		rs->rs_usage_fails = 0;
		rs->rs_usage_next_ms = 0;
	}
	atomic_store(&a->sa_usage_used, ul.ul_used);
	atomic_store(&a->sa_usage_limit, ul.ul_limit);
	atomic_store(&a->sa_usage_reset, ul.ul_reset);
	atomic_store(&a->sa_usage_checked, now);
	if (ul.ul_limit > 0 && ul.ul_used >= ul.ul_limit) {
		until = ul.ul_reset > now ? ul.ul_reset :
		    now + (rf_cf->cf_usage_interval > 0 ?
		    rf_cf->cf_usage_interval : 3600);
		atomic_store(&a->sa_exhausted_until, until);
	} else if (ul.ul_limit > 0)
		atomic_store(&a->sa_exhausted_until, 0);
	if (db_account_set_usage(rf_db, x->rx_id, ul.ul_used, ul.ul_limit,
	    ul.ul_reset, ul.ul_subscription[0] ? ul.ul_subscription : NULL,
	    ul.ul_email[0] ? ul.ul_email : NULL) == -1)
		log_warnx("account %lld: usage not stored",
		    (long long)x->rx_id);
	rf_weights_dirty = 1;
	log_debug("account %lld: usage %lld.%03lld of %lld.%03lld",
	    (long long)x->rx_id, (long long)(ul.ul_used / 1000),
	    (long long)(ul.ul_used % 1000), (long long)(ul.ul_limit / 1000),
	    (long long)(ul.ul_limit % 1000));
}

/* ------------------------------------------------------------------ */
/* the scan of the account slots                                         */

/* What workers learnt of the slot's health, into the database. */
static void
rf_health(uint32_t i, struct rf_slot *rs, int64_t id, int32_t st)
{
	struct shm_acct	*a = &qr_shm->shm_accts[i];
	struct acct_counters ac;
	int64_t		 exh = atomic_load(&a->sa_exhausted_until);
	int64_t		 cool = atomic_load(&a->sa_cooldown_until);
	char		 err[sizeof(a->sa_last_error)];

	/* the cooldown at once, the counters once a minute (a busy pool
	 * changes every account's all the time), so that they outlive a
	 * restart and qrelayctl sees them: one transaction a scan */
	shm_acct_counters(a, &ac);
	if (rs->rs_saved_ms == 0 || cool != rs->rs_saved_cool ||
	    (now_ms() - rs->rs_saved_ms >= RF_COUNTERS_MS &&
	    memcmp(&ac, &rs->rs_saved, sizeof(ac)) != 0)) {
		if (!rf_live_tx && db_begin(rf_db, __func__) == 0)
			rf_live_tx = 1;
		(void)db_account_set_live(rf_db, id, cool, &ac);
		rs->rs_saved = ac;
		rs->rs_saved_cool = cool;
		rs->rs_saved_ms = now_ms();
	}

	if (exh != rs->rs_saved_exh) {
		/* once per change, even if the database refuses it */
		(void)db_account_set_health(rf_db, id, NULL, exh, NULL);
		rs->rs_saved_exh = exh;
	}
	if (st != ACCT_SUSPENDED) {
		rs->rs_saved_susp = 0;
		return;
	}
	if (rs->rs_saved_susp)
		return;
	memcpy(err, a->sa_last_error, sizeof(err));
	err[sizeof(err) - 1] = '\0';
	(void)db_account_set_health(rf_db, id, "suspended", -1,
	    err[0] ? err : "suspended by the upstream");
	rs->rs_saved_susp = 1;
}

/* The slot's id, expiry and whether it holds a token, consistently. */
static int
rf_slot_peek(struct shm_acct *a, int64_t *id, int64_t *exp, int *empty)
{
	uint32_t	 seq;
	int		 tries;

	for (tries = 0; tries < 64; tries++) {
		seq = atomic_load_explicit(&a->sa_seq, memory_order_acquire);
		if (seq & 1)
			continue;
		*id = a->sa_id;
		*exp = a->sa_expires;
		*empty = a->sa_token[0] == '\0';
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&a->sa_seq, memory_order_relaxed) ==
		    seq)
			return *id != 0 ? 0 : -1;
	}
	return -1;
}

/*
 * A slot without a token whose account has a live one stored (an
 * import brought it; workers, which cannot open it, loaded the slot
 * bare): publish it rather than spend a renewal. Once per account.
 */
static int
rf_publish_stored(uint32_t slot, struct rf_slot *rs, int64_t id,
    int64_t *exp)
{
	char	*tok;
	int64_t	 expires;
	int	 rv = -1;

	rs->rs_stored_seen = 1;
	if ((tok = db_account_access(rf_db, id, &expires)) == NULL)
		return -1;
	if (expires > (int64_t)now_wall() + REFRESH_WINDOW &&
	    shm_acct_set_token(qr_shm, slot, id, tok, expires, NULL) == 0) {
		*exp = expires;
		rv = 0;
	}
	secret_free(tok, 0);
	return rv;
}

/* At a stop: every slot's counters and cooldown as they are now, so
 * a restart loses none. */
static void
rf_persist_all(void)
{
	struct shm_acct		*a;
	struct acct_counters	 ac;
	uint32_t		 i, high;
	int64_t			 id, exp;
	int			 empty;

	high = atomic_load(&qr_shm->shm_hdr->sh_accts_high);
	if (high > rf_nslots)
		high = rf_nslots;
	if (db_begin(rf_db, __func__) == -1)
		return;
	for (i = 0; i < high; i++) {
		a = &qr_shm->shm_accts[i];
		if (atomic_load(&a->sa_state) == ACCT_EMPTY ||
		    rf_slot_peek(a, &id, &exp, &empty) == -1)
			continue;
		shm_acct_counters(a, &ac);
		(void)db_account_set_live(rf_db, id,
		    atomic_load(&a->sa_cooldown_until), &ac);
	}
	(void)db_commit(rf_db, __func__);
}

/* End the transaction rf_health opened, if it did. */
static void
rf_live_commit(void)
{
	if (rf_live_tx) {
		(void)db_commit(rf_db, __func__);
		rf_live_tx = 0;
	}
}

/* Should slot i be renewed now? 1 yes; *sleep_ms lowered to when. */
static int
rf_refresh_due(uint32_t i, struct rf_slot *rs, int32_t st, int64_t id,
    int64_t exp, int empty, int64_t now, int64_t nowms, int *urgent,
    int64_t *sleep_ms)
{
	struct shm_acct	*a = &qr_shm->shm_accts[i];
	int64_t		 win;
	int32_t		 wanted;
	int		 due;

	*urgent = 0;
	wanted = atomic_load(&a->sa_refresh_wanted);
	if (wanted == SHM_REFRESH_FORCED) {
		*urgent = 1;
		return 1;
	}
	if (st == ACCT_DISABLED)
		return 0;
	if (nowms < rs->rs_next_ms) {
		if (rs->rs_next_ms - nowms < *sleep_ms)
			*sleep_ms = rs->rs_next_ms - nowms;
		return 0;
	}
	if (wanted == SHM_REFRESH_WANTED) {
		/* a flag raised against the token just renewed waits a
		 * moment: the worker may see the new one */
		if (rs->rs_ok_ms && nowms - rs->rs_ok_ms < RF_WANTED_GAP_MS) {
			if (rs->rs_ok_ms + RF_WANTED_GAP_MS - nowms <
			    *sleep_ms)
				*sleep_ms = rs->rs_ok_ms + RF_WANTED_GAP_MS -
				    nowms;
			return 0;
		}
		*urgent = 1;
		return 1;
	}
	/* accounts loaded together come due apart */
	win = REFRESH_WINDOW - rf_jitter(id, REFRESH_WINDOW / 2);
	if (!empty && exp - now >= win) {
		if ((exp - now - win) * 1000 < *sleep_ms)
			*sleep_ms = (exp - now - win) * 1000 + 1;
		return 0;
	}
	/* a token living less than the window is renewed at half its
	 * life (30 s at least), not in a loop */
	due = empty || rs->rs_ok_ms == 0 || exp <= now + 60 ||
	    nowms - rs->rs_ok_ms >= (rs->rs_ttl_ms / 2 > RF_REPEAT_MIN_MS ?
	    rs->rs_ttl_ms / 2 : RF_REPEAT_MIN_MS);
	if (!due && *sleep_ms > 1000)
		*sleep_ms = 1000;
	return due;
}

/* Should slot i's usage be polled now? */
static int
rf_usage_due(uint32_t i, struct rf_slot *rs, int32_t st, int64_t id,
    int64_t exp, int empty, int64_t now, int64_t nowms, int64_t *sleep_ms)
{
	struct shm_acct	*a = &qr_shm->shm_accts[i];
	int64_t		 checked, at;
	int		 iv = rf_cf->cf_usage_interval, wanted;

	if (st != ACCT_ENABLED || rs->rs_polling || empty || exp <= now + 60)
		return 0;
	wanted = atomic_load(&a->sa_usage_wanted) != 0;
	if (!wanted && iv <= 0)
		return 0;
	if (nowms < rs->rs_usage_next_ms) {
		if (rs->rs_usage_next_ms - nowms < *sleep_ms)
			*sleep_ms = rs->rs_usage_next_ms - nowms;
		return 0;
	}
	if (wanted)
		return 1;
	checked = atomic_load(&a->sa_usage_checked);
	if (checked <= 0)
		return 1;
	at = checked + iv - rf_jitter(id, iv / 4 + 1);
	if (now >= at)
		return 1;
	if ((at - now) * 1000 < *sleep_ms)
		*sleep_ms = (at - now) * 1000;
	return 0;
}

/*
 * One pass over the slots: health to persist, renewals (first) and
 * usage polls (with the room left) to start. Returns the milliseconds
 * until the next pass is due at the latest.
 */
static int64_t
rf_scan(void)
{
	static uint32_t	 start;
	struct shm	*s = qr_shm;
	struct shm_acct	*a;
	struct rf_slot	*rs;
	uint32_t	 n, i, high;
	int64_t		 sleep_ms = REFRESHER_TICK_MS, id, exp;
	int64_t		 now = now_wall(), nowms = now_ms();
	int32_t		 st;
	int		 empty, urgent, pass;

	high = atomic_load(&s->shm_hdr->sh_accts_high);
	if (high > rf_nslots)
		high = rf_nslots;
	if (high == 0)
		return sleep_ms;
	/* a different first slot each time: none is always served last */
	start = (start + 1) % high;
	rf_renew_waiting = 0;
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1)
			rf_live_commit();
		for (n = 0; n < high; n++) {
			if ((n & 255) == 255 && rf_stop_pending()) {
				rf_live_commit();
				return 0;
			}
			i = (start + n) % high;
			a = &s->shm_accts[i];
			rs = &rf_slots[i];
			st = atomic_load(&a->sa_state);
			if (st == ACCT_EMPTY ||
			    rf_slot_peek(a, &id, &exp, &empty) == -1)
				continue;
			if (rs->rs_id != id) {
				memset(rs, 0, sizeof(*rs));
				rs->rs_id = id;
			}
			if (pass == 0) {
				rf_health(i, rs, id, st);
				if (empty && !rs->rs_stored_seen &&
				    rf_publish_stored(i, rs, id, &exp) == 0)
					empty = 0;
				if (rs->rs_refreshing || !rf_refresh_due(i, rs,
				    st, id, exp, empty, now, nowms, &urgent,
				    &sleep_ms))
					continue;
				if (!rf_room() || (!urgent &&
				    !rf_take_start(&sleep_ms))) {
					rf_renew_waiting = 1;
					continue;
				}
				if (!rf_claim(a))
					continue;
				rf_refresh_start(i, id, exp);
			} else {
				/* usage polls and feed checks never keep a
				 * due renewal from the room it waits for */
				if (!rf_room() || rf_renew_waiting)
					break;
				if (rs->rs_refreshing || !rf_usage_due(i, rs,
				    st, id, exp, empty, now, nowms, &sleep_ms))
					continue;
				if (!rf_take_start(&sleep_ms))
					continue;
				rf_usage_start(i, id);
			}
		}
	}
	return sleep_ms > 0 ? sleep_ms : 0;
}

/* ------------------------------------------------------------------ */
/* jobs                                                                  */

/* The process that took a running job has exited (a refresher killed,
 * or the old one of a reload). */
static int
rf_owner_gone(struct shm_job *sj)
{
	int32_t	 pid = atomic_load(&sj->sj_owner);

	return pid > 0 && pid != (int32_t)getpid() && kill(pid, 0) == -1 &&
	    errno == ESRCH;
}

static void
rf_job_path(int j, const char *what, char *out, size_t outsz)
{
	if (shm_job_path(rf_cf->cf_db_path, qr_shm->shm_jobs[j].sj_id, what,
	    out, outsz) == -1)
		out[0] = '\0';
}

static void
rf_feed_free(struct rf_feed *fd)
{
	static const char *const names[] = { "refreshToken", "clientSecret",
		"accessToken", NULL };
	size_t	 i;

	if (fd == NULL)
		return;
	for (i = 0; i < fd->fd_n; i++) {
		if (fd->fd_e[i].fe_obj != NULL)
			oidc_json_scrub(fd->fd_e[i].fe_obj, names);
		json_object_put(fd->fd_e[i].fe_obj);
		oidc_tokens_free(&fd->fd_e[i].fe_at);
	}
	free(fd->fd_e);
	if (fd->fd_data != NULL)
		explicit_bzero(fd->fd_data, fd->fd_len);
	free(fd->fd_data);
	free(fd);
}

static void
rf_job_drop(int j)
{
	struct rf_job	*rj = &rf_jobs[j];

	oidc_client_free(&rj->rj_client);
	oidc_device_free(&rj->rj_dev);
	rf_feed_free(rj->rj_feed);
	memset(rj, 0, sizeof(*rj));
}

/* The job ends in state st (error NULL or its text). */
static void
rf_job_end(int j, int st, const char *error)
{
	struct shm_job	*sj = &qr_shm->shm_jobs[j];

	if (error != NULL)
		strlcpy_qr(sj->sj_error, error, sizeof(sj->sj_error));
	sj->sj_finished = (int64_t)now_wall();
	atomic_store(&sj->sj_state, st);
	log_info("job %s: %s%s%s", sj->sj_id, st == SJ_DONE ? "done" :
	    st == SJ_EXPIRED ? "expired" : st == SJ_DENIED ? "denied" :
	    "failed", error ? ": " : "", error ? error : "");
	rf_job_drop(j);
}

/* data to the job's file what, 0600, whole or not at all. */
static int
rf_job_write(int j, const char *what, const char *data, size_t len)
{
	return shm_job_write(rf_cf->cf_db_path, qr_shm->shm_jobs[j].sj_id,
	    what, data, len);
}

static void
rf_export_run(int j)
{
	struct buf	 out;

	buf_init(&out);
	if (db_accounts_export(rf_db, 1, &out) == -1)
		rf_job_end(j, SJ_FAILED, "the export failed");
	else if (rf_job_write(j, "out", out.b_data ? out.b_data : "",
	    out.b_len) == -1)
		rf_job_end(j, SJ_FAILED, "the export could not be written");
	else
		rf_job_end(j, SJ_DONE, NULL);
	if (out.b_data != NULL)
		explicit_bzero(out.b_data, out.b_cap);
	buf_free(&out);
}

/* -- device authorization -- */

static void
rf_device_register(int j)
{
	struct rf_job	*rj = &rf_jobs[j];
	struct rf_xfer	*x;

	if ((x = rf_xfer_new(RX_REGISTER)) == NULL) {
		rf_job_end(j, SJ_FAILED, "out of memory");
		return;
	}
	x->rx_job = j;
	(void)oidc_req_register(&x->rx_req, rf_cf, rj->rj_region,
	    rj->rj_proxy);
	rj->rj_busy = 1;
	rf_xfer_start(x);
}

static void
rf_device_authorize(int j)
{
	struct rf_job	*rj = &rf_jobs[j];
	struct shm_job	*sj = &qr_shm->shm_jobs[j];
	struct rf_xfer	*x;

	if ((x = rf_xfer_new(RX_DEVSTART)) == NULL) {
		rf_job_end(j, SJ_FAILED, "out of memory");
		return;
	}
	x->rx_job = j;
	(void)oidc_req_device_start(&x->rx_req, rf_cf, rj->rj_region,
	    rj->rj_proxy, &rj->rj_client, sj->sj_start_url);
	rj->rj_busy = 1;
	rf_xfer_start(x);
}

static void
rf_device_run(int j)
{
	struct rf_job	*rj = &rf_jobs[j];
	struct shm_job	*sj = &qr_shm->shm_jobs[j];
	int		 r;

	strlcpy_qr(rj->rj_region, sj->sj_region[0] ? sj->sj_region :
	    rf_cf->cf_region, sizeof(rj->rj_region));
	strlcpy_qr(rj->rj_proxy, sj->sj_proxy, sizeof(rj->rj_proxy));
	if ((r = oidc_client_load(rf_db, rj->rj_region, &rj->rj_client)) ==
	    1) {
		rj->rj_stored = 1;
		rf_device_authorize(j);
	} else
		rf_device_register(j);
}

/* The approved login becomes an account. */
static void
rf_device_add(int j, struct auth_tokens *at)
{
	struct rf_job		*rj = &rf_jobs[j];
	struct shm_job		*sj = &qr_shm->shm_jobs[j];
	struct db_account_new	 an;
	int64_t			 id;

	memset(&an, 0, sizeof(an));
	an.an_type = "idc";
	an.an_label = sj->sj_label;
	/* the region the client was registered and the token issued in,
	 * not "" (whatever the configuration says later) */
	an.an_region = rj->rj_region;
	an.an_profile_arn = at->at_profile_arn;
	an.an_client_id = rj->rj_client.oc_client_id;
	an.an_client_secret = rj->rj_client.oc_client_secret;
	an.an_refresh_token = at->at_refresh;
	an.an_enabled = 1;
	an.an_proxy = sj->sj_proxy;
	an.an_access_token = at->at_access;
	an.an_expires = at->at_expires;
	if ((id = db_account_add(rf_db, &an)) <= 0) {
		rf_job_end(j, SJ_FAILED, "the account could not be stored");
		return;
	}
	if (rf_account_to_shm(id, at->at_access, at->at_expires,
	    at->at_profile_arn) == -1)
		log_warnx("account %lld: added, but not in the shared table "
		    "until the next reload", (long long)id);
	sj->sj_account_id = id;
	log_info("account %lld: added by device authorization", (long long)id);
	rf_job_end(j, SJ_DONE, NULL);
}

static void
rf_device_done(struct rf_xfer *x)
{
	struct rf_job		*rj = &rf_jobs[x->rx_job];
	struct shm_job		*sj = &qr_shm->shm_jobs[x->rx_job];
	struct auth_tokens	 at;
	char			 err[200];
	int			 j = x->rx_job, res;

	rj->rj_busy = 0;
	switch (x->rx_kind) {
	case RX_REGISTER:
		oidc_client_free(&rj->rj_client);
		if (oidc_req_client(&x->rx_req, &rj->rj_client, err,
		    sizeof(err)) != AUTH_OK) {
			rf_job_end(j, SJ_FAILED, err);
			return;
		}
		if (oidc_client_store(rf_db, rj->rj_region,
		    &rj->rj_client) == -1)
			log_warnx("job %s: the registered client could not be "
			    "kept; the next login registers again", sj->sj_id);
		rf_device_authorize(j);
		return;
	case RX_DEVSTART:
		oidc_device_free(&rj->rj_dev);
		if (oidc_req_device(&x->rx_req, &rj->rj_dev, err,
		    sizeof(err)) != AUTH_OK) {
			/* a kept client the upstream forgot: register anew */
			if (rj->rj_stored && (x->rx_req.or_status == 400 ||
			    x->rx_req.or_status == 401)) {
				rj->rj_stored = 0;
				(void)oidc_client_forget(rf_db, rj->rj_region);
				rf_device_register(j);
				return;
			}
			rf_job_end(j, SJ_FAILED, err);
			return;
		}
		strlcpy_qr(sj->sj_user_code, rj->rj_dev.od_user_code,
		    sizeof(sj->sj_user_code));
		strlcpy_qr(sj->sj_verification_uri, rj->rj_dev.od_uri,
		    sizeof(sj->sj_verification_uri));
		strlcpy_qr(sj->sj_verification_uri_complete,
		    rj->rj_dev.od_uri_complete,
		    sizeof(sj->sj_verification_uri_complete));
		sj->sj_expires = rj->rj_dev.od_expires;
		rj->rj_interval = rj->rj_dev.od_interval;
		sj->sj_interval = rj->rj_interval;
		rj->rj_next_ms = now_ms() + rj->rj_interval * 1000;
		atomic_store(&sj->sj_state, SJ_PENDING);
		log_info("job %s: device authorization started, waiting for "
		    "the user", sj->sj_id);
		return;
	default:
		break;
	}
	res = oidc_req_poll(&x->rx_req, &at);
	switch (res) {
	case AUTH_OK:
		rf_device_add(j, &at);
		break;
	case AUTH_SLOW_DOWN:
		rj->rj_interval += 5;
		sj->sj_interval = rj->rj_interval;
		/* FALLTHROUGH */
	case AUTH_PENDING:
		rj->rj_retries = 0;
		rj->rj_next_ms = now_ms() + rj->rj_interval * 1000;
		break;
	case AUTH_EXPIRED:
		rf_job_end(j, SJ_EXPIRED, "the device code expired");
		break;
	case AUTH_DENIED:
		rf_job_end(j, SJ_DENIED, "the user denied the authorization");
		break;
	default:
		/* a network blip does not end a login the user is doing */
		if ((at.at_status == 0 || at.at_status >= 500) &&
		    ++rj->rj_retries < RF_DEVICE_RETRIES) {
			rj->rj_next_ms = now_ms() + rj->rj_interval * 1000;
			break;
		}
		rf_job_end(j, SJ_FAILED, at.at_error);
		break;
	}
	oidc_tokens_free(&at);
}

static void
rf_device_poll(int j)
{
	struct rf_job	*rj = &rf_jobs[j];
	struct shm_job	*sj = &qr_shm->shm_jobs[j];
	struct rf_xfer	*x;

	if ((int64_t)now_wall() >= sj->sj_expires) {
		rf_job_end(j, SJ_EXPIRED, "the device code expired");
		return;
	}
	if ((x = rf_xfer_new(RX_DEVPOLL)) == NULL)
		return;		/* the next round tries again */
	x->rx_job = j;
	(void)oidc_req_device_poll(&x->rx_req, rf_cf, rj->rj_region,
	    rj->rj_proxy, &rj->rj_client, &rj->rj_dev);
	rj->rj_busy = 1;
	rf_xfer_start(x);
}

/* -- feed -- */

static const char *
rf_fe_status_name(int st)
{
	switch (st) {
	case FE_ADDED:
		return "added";
	case FE_DUPLICATE:
		return "duplicate";
	case FE_INVALID:
		return "invalid";
	case FE_REFUSED:
		return "refused";
	default:
		return "failed";
	}
}

static int
rf_fe_cmp(const void *p1, const void *p2)
{
	const struct rf_entry	*a = *(struct rf_entry *const *)p1;
	const struct rf_entry	*b = *(struct rf_entry *const *)p2;
	int			 c;

	c = strcmp(a->fe_an.an_refresh_token, b->fe_an.an_refresh_token);
	if (c != 0)
		return c;
	return a->fe_line < b->fe_line ? -1 : a->fe_line > b->fe_line;
}

/* The lines of the feed file into entries, duplicates marked. */
static int
rf_feed_load(int j, struct rf_feed *fd, char *err, size_t errsz)
{
	struct rf_entry	*e, **byrt = NULL, *first;
	struct stat	 sb;
	char		 path[PATH_MAX], *p, *nl, *end, *t;
	size_t		 cap = 0, i, k;
	ssize_t		 r;
	int		 fdesc = -1, line = 0, rv = -1;
	int64_t		 dup;

	rf_job_path(j, "in", path, sizeof(path));
	if (path[0] == '\0' || (fdesc = open(path, O_RDONLY | O_CLOEXEC |
	    O_NOFOLLOW)) == -1 || fstat(fdesc, &sb) == -1) {
		snprintf(err, errsz, "the feed could not be read");
		goto done;
	}
	if (sb.st_size > RF_FEED_MAX) {
		snprintf(err, errsz, "the feed is larger than %d bytes",
		    RF_FEED_MAX);
		goto done;
	}
	fd->fd_len = (size_t)sb.st_size;
	if ((fd->fd_data = malloc(fd->fd_len + 1)) == NULL) {
		snprintf(err, errsz, "out of memory");
		goto done;
	}
	for (i = 0; i < fd->fd_len; i += (size_t)r) {
		if ((r = read(fdesc, fd->fd_data + i, fd->fd_len - i)) <= 0) {
			if (r == -1 && errno == EINTR) {
				r = 0;
				continue;
			}
			snprintf(err, errsz, "the feed could not be read");
			goto done;
		}
	}
	fd->fd_data[fd->fd_len] = '\0';
	/* refresh tokens in clear: on disk no longer than needed */
	(void)unlink(path);
	end = fd->fd_data + fd->fd_len;
	for (p = fd->fd_data; p < end; p = nl + 1) {
		line++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		*nl = '\0';
		if (nl > p && nl[-1] == '\r')
			nl[-1] = '\0';
		for (t = p; *t == ' ' || *t == '\t'; t++)
			;
		if (*t == '\0' || *t == '#')
			continue;
		if (fd->fd_n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((e = reallocarray(fd->fd_e, cap, sizeof(*e))) ==
			    NULL) {
				snprintf(err, errsz, "out of memory");
				goto done;
			}
			fd->fd_e = e;
		}
		e = &fd->fd_e[fd->fd_n++];
		memset(e, 0, sizeof(*e));
		e->fe_line = line;
		if (db_account_parse(t, &e->fe_obj, &e->fe_an, e->fe_error,
		    sizeof(e->fe_error)) == -1 ||
		    e->fe_an.an_refresh_token == NULL ||
		    *e->fe_an.an_refresh_token == '\0') {
			if (e->fe_error[0] == '\0')
				snprintf(e->fe_error, sizeof(e->fe_error),
				    "no refresh token");
			e->fe_status = FE_INVALID;
			continue;
		}
		if ((dup = db_account_find_refresh(rf_db,
		    e->fe_an.an_refresh_token)) > 0) {
			e->fe_status = FE_DUPLICATE;
			e->fe_id = dup;
			snprintf(e->fe_error, sizeof(e->fe_error),
			    "the account is already in the pool");
		} else if (dup == -1) {
			e->fe_status = FE_FAILED;
			snprintf(e->fe_error, sizeof(e->fe_error),
			    "database error");
		}
	}
	/* duplicates within the feed: the first line keeps it */
	if (fd->fd_n > 0 && (byrt = calloc(fd->fd_n, sizeof(*byrt))) == NULL) {
		snprintf(err, errsz, "out of memory");
		goto done;
	}
	for (i = k = 0; i < fd->fd_n; i++)
		if (fd->fd_e[i].fe_status == FE_PARSED)
			byrt[k++] = &fd->fd_e[i];
	if (k > 1)
		qsort(byrt, k, sizeof(*byrt), rf_fe_cmp);
	for (i = 1, first = k ? byrt[0] : NULL; i < k; i++) {
		if (strcmp(byrt[i]->fe_an.an_refresh_token,
		    first->fe_an.an_refresh_token) != 0) {
			first = byrt[i];
			continue;
		}
		byrt[i]->fe_status = FE_DUPLICATE;
		snprintf(byrt[i]->fe_error, sizeof(byrt[i]->fe_error),
		    "the same account as line %d", first->fe_line);
	}
	rv = 0;
 done:
	free(byrt);
	if (fdesc != -1)
		close(fdesc);
	return rv;
}

static void
rf_feed_check(int j, size_t i)
{
	struct rf_feed		*fd = rf_jobs[j].rj_feed;
	struct rf_entry		*e = &fd->fd_e[i];
	struct db_account_new	*an = &e->fe_an;
	struct rf_xfer		*x;
	const char		*region = an->an_region ? an->an_region : "";

	if ((x = rf_xfer_new(RX_CHECK)) == NULL) {
		e->fe_status = FE_FAILED;
		snprintf(e->fe_error, sizeof(e->fe_error), "out of memory");
		return;
	}
	x->rx_job = j;
	x->rx_entry = i;
	if ((x->rx_refresh = strdup(an->an_refresh_token)) == NULL)
		snprintf(x->rx_req.or_error, sizeof(x->rx_req.or_error),
		    "out of memory");
	else if (an->an_type != NULL && strcmp(an->an_type, "idc") == 0)
		(void)oidc_req_refresh(&x->rx_req, rf_cf, region,
		    an->an_proxy, an->an_client_id ? an->an_client_id : "",
		    an->an_client_secret ? an->an_client_secret : "",
		    an->an_refresh_token);
	else
		(void)kiro_req_refresh(&x->rx_req, rf_cf, region,
		    an->an_proxy, an->an_refresh_token);
	e->fe_status = FE_CHECKING;
	rf_jobs[j].rj_busy++;
	rf_xfer_start(x);
}

static void
rf_check_done(struct rf_xfer *x)
{
	struct rf_feed	*fd = rf_jobs[x->rx_job].rj_feed;
	struct rf_entry	*e = &fd->fd_e[x->rx_entry];
	int		 res;

	rf_jobs[x->rx_job].rj_busy--;
	res = oidc_req_tokens(&x->rx_req, x->rx_refresh, &e->fe_at);
	if (res == AUTH_OK) {
		e->fe_status = FE_CHECKED;
		return;
	}
	e->fe_status = res == AUTH_REVOKED ? FE_REFUSED : FE_FAILED;
	snprintf(e->fe_error, sizeof(e->fe_error), "%s%s", res ==
	    AUTH_REVOKED ? "the upstream refused the refresh token: " :
	    "the refresh token could not be checked: ", e->fe_at.at_error);
	oidc_tokens_free(&e->fe_at);
}

/* Every line checked: the good ones in one transaction, the report. */
static void
rf_feed_finish(int j)
{
	struct shm_job		*sj = &qr_shm->shm_jobs[j];
	struct rf_feed		*fd = rf_jobs[j].rj_feed;
	struct rf_entry		*e;
	struct db_account_new	*an;
	struct json_object	*o;
	struct buf		 out;
	size_t			 i;
	int			 added = 0, began;

	began = db_begin(rf_db, __func__) == 0;
	for (i = 0; i < fd->fd_n; i++) {
		e = &fd->fd_e[i];
		if (e->fe_status != FE_CHECKED)
			continue;
		an = &e->fe_an;
		if (!began) {
			e->fe_status = FE_FAILED;
			snprintf(e->fe_error, sizeof(e->fe_error),
			    "database busy");
			continue;
		}
		/* the check may have rotated the token: keep the new one */
		if (e->fe_at.at_refresh != NULL)
			an->an_refresh_token = e->fe_at.at_refresh;
		if ((an->an_profile_arn == NULL || !*an->an_profile_arn) &&
		    e->fe_at.at_profile_arn[0])
			an->an_profile_arn = e->fe_at.at_profile_arn;
		an->an_access_token = e->fe_at.at_access;
		an->an_expires = e->fe_at.at_expires;
		if ((e->fe_id = db_account_add(rf_db, an)) <= 0) {
			e->fe_id = 0;
			e->fe_status = FE_FAILED;
			snprintf(e->fe_error, sizeof(e->fe_error),
			    "the account could not be stored");
			continue;
		}
		e->fe_status = FE_ADDED;
		added++;
	}
	if (began && db_commit(rf_db, __func__) == -1) {
		log_warnx("job %s: the feed's accounts were not stored",
		    sj->sj_id);
		for (i = 0; i < fd->fd_n; i++)
			if (fd->fd_e[i].fe_status == FE_ADDED) {
				fd->fd_e[i].fe_status = FE_FAILED;
				fd->fd_e[i].fe_id = 0;
				snprintf(fd->fd_e[i].fe_error,
				    sizeof(fd->fd_e[i].fe_error),
				    "the database did not take the feed");
			}
		added = 0;
	}
	buf_init(&out);
	(void)buf_puts(&out, "[");
	for (i = 0; i < fd->fd_n; i++) {
		e = &fd->fd_e[i];
		if (e->fe_status == FE_ADDED && rf_account_to_shm(e->fe_id,
		    e->fe_at.at_access, e->fe_at.at_expires,
		    e->fe_at.at_profile_arn) == -1)
			log_warnx("account %lld: added, but not in the shared "
			    "table until the next reload",
			    (long long)e->fe_id);
		if ((o = json_object_new_object()) == NULL)
			continue;
		json_object_object_add(o, "line",
		    json_object_new_int(e->fe_line));
		json_object_object_add(o, "status",
		    json_object_new_string(rf_fe_status_name(e->fe_status)));
		if (e->fe_id > 0)
			json_object_object_add(o, "id",
			    json_object_new_int64(e->fe_id));
		if (e->fe_status != FE_ADDED && e->fe_error[0])
			json_object_object_add(o, "error",
			    json_object_new_string(e->fe_error));
		(void)buf_printf(&out, "%s\n%s", i ? "," : "",
		    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
	(void)buf_puts(&out, "\n]\n");
	sj->sj_total = (int32_t)fd->fd_n;
	sj->sj_added = added;
	sj->sj_failed = (int32_t)fd->fd_n - added;
	log_info("job %s: feed of %zu lines, %d added", sj->sj_id, fd->fd_n,
	    added);
	if (rf_job_write(j, "out", out.b_data, out.b_len) == -1)
		rf_job_end(j, SJ_FAILED, "the report could not be written");
	else
		rf_job_end(j, SJ_DONE, NULL);
	buf_free(&out);
}

static void
rf_feed_run(int j)
{
	struct rf_feed	*fd;
	char		 err[200];

	if ((fd = calloc(1, sizeof(*fd))) == NULL) {
		rf_job_end(j, SJ_FAILED, "out of memory");
		return;
	}
	rf_jobs[j].rj_feed = fd;
	if (rf_feed_load(j, fd, err, sizeof(err)) == -1)
		rf_job_end(j, SJ_FAILED, err);
}

/* Start what checks there is room for; finish when all are in. */
static void
rf_feed_step(int j, int64_t *sleep_ms)
{
	struct rf_feed	*fd = rf_jobs[j].rj_feed;

	while (fd->fd_next < fd->fd_n && rf_room() && !rf_renew_waiting) {
		if (fd->fd_e[fd->fd_next].fe_status != FE_PARSED) {
			fd->fd_next++;
			continue;
		}
		if (!rf_take_start(sleep_ms))
			return;
		rf_feed_check(j, fd->fd_next++);
	}
	if (fd->fd_next >= fd->fd_n && rf_jobs[j].rj_busy == 0)
		rf_feed_finish(j);
}

/* A finished job's entry is freed with its files after SHM_JOB_KEEP. */
static void
rf_job_free(int j, int64_t now)
{
	struct shm_job	*sj = &qr_shm->shm_jobs[j];
	char		 path[PATH_MAX];
	int32_t		 st;

	shm_lock(qr_shm);
	st = atomic_load(&sj->sj_state);
	if ((st >= SJ_DONE && sj->sj_finished != 0 &&
	    now >= sj->sj_finished + SHM_JOB_KEEP) ||
	    (st == SJ_CLAIMED && now >= sj->sj_created + RF_JOB_UNCLAIMED)) {
		rf_job_path(j, "in", path, sizeof(path));
		if (path[0] != '\0')
			(void)unlink(path);
		rf_job_path(j, "out", path, sizeof(path));
		if (path[0] != '\0')
			(void)unlink(path);
		atomic_store(&sj->sj_state, SJ_FREE);
	}
	shm_unlock(qr_shm);
}

/*
 * Job files no entry names any more: a daemon stopped or killed with a
 * feed's refresh tokens or a full export on disk. Taken at start; the
 * entries (and so their files) live on across a reload, and a worker
 * claims its entry before it creates the file.
 */
static void
rf_job_sweep(void)
{
	static const char *const whats[] = { "in", "in.tmp", "out", "out.tmp",
		NULL };
	const char	*db = rf_cf->cf_db_path, *slash, *name;
	char		 dir[PATH_MAX], id[37], path[PATH_MAX];
	struct dirent	*de;
	DIR		*d;
	size_t		 i;

	if (strcmp(db, ":memory:") == 0)
		return;		/* P_tmpdir is not ours to sweep */
	if ((slash = strrchr(db, '/')) == NULL)
		strlcpy_qr(dir, ".", sizeof(dir));
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == db ? 1 :
		    (int)(slash - db), db);
	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		name = de->d_name;
		if (strncmp(name, "job-", 4) != 0 || strlen(name) < 42 ||
		    name[40] != '.')
			continue;
		for (i = 0; whats[i] != NULL; i++)
			if (strcmp(name + 41, whats[i]) == 0)
				break;
		if (whats[i] == NULL)
			continue;
		memcpy(id, name + 4, 36);
		id[36] = '\0';
		if (shm_job_find(qr_shm, id) != -1 ||
		    shm_job_path(db, id, whats[i], path, sizeof(path)) == -1)
			continue;
		if (unlink(path) == 0)
			log_info("removed the stale job file %s", name);
	}
	closedir(d);
}

/* The job entries: take new ones, move ours on, free old ones. */
static int64_t
rf_jobs_scan(void)
{
	struct shm_job	*sj;
	struct rf_job	*rj;
	int64_t		 now = now_wall(), nowms = now_ms();
	int64_t		 sleep_ms = REFRESHER_TICK_MS;
	int32_t		 st, req;
	int		 j;

	for (j = 0; j < SHM_JOBS; j++) {
		sj = &qr_shm->shm_jobs[j];
		rj = &rf_jobs[j];
		st = atomic_load(&sj->sj_state);
		if (rj->rj_mine && (st == SJ_FREE ||
		    strcmp(rj->rj_id, sj->sj_id) != 0) && !rj->rj_busy)
			rf_job_drop(j);	/* gone under us */
		if (st == SJ_REQUESTED && !rf_quitting) {
			req = SJ_REQUESTED;
			if (!atomic_compare_exchange_strong(&sj->sj_state,
			    &req, SJ_RUNNING))
				continue;
			atomic_store(&sj->sj_owner, (int32_t)getpid());
			rf_job_drop(j);
			rj->rj_mine = 1;
			memcpy(rj->rj_id, sj->sj_id, sizeof(rj->rj_id));
			rj->rj_id[sizeof(rj->rj_id) - 1] = '\0';
			log_info("job %s: %s", rj->rj_id, sj->sj_kind ==
			    SJK_DEVICE ? "device authorization" :
			    sj->sj_kind == SJK_FEED ? "feed" : "export");
			switch (sj->sj_kind) {
			case SJK_DEVICE:
				rf_device_run(j);
				break;
			case SJK_FEED:
				rf_feed_run(j);
				break;
			case SJK_EXPORT:
				rf_export_run(j);
				break;
			default:
				rf_job_end(j, SJ_FAILED, "unknown job");
				break;
			}
			st = atomic_load(&sj->sj_state);
		}
		if (rj->rj_mine && rj->rj_feed != NULL && st == SJ_RUNNING) {
			rf_feed_step(j, &sleep_ms);
			continue;
		}
		if (rj->rj_mine && !rj->rj_busy) {
			if (st == SJ_PENDING && sj->sj_kind == SJK_DEVICE) {
				if (nowms >= rj->rj_next_ms)
					rf_device_poll(j);
				else if (rj->rj_next_ms - nowms < sleep_ms)
					sleep_ms = rj->rj_next_ms - nowms;
			}
			continue;
		}
		if (rj->rj_mine)
			continue;
		/* looked at without the lock first: most are not due */
		if ((st >= SJ_DONE && sj->sj_finished != 0 &&
		    now >= sj->sj_finished + SHM_JOB_KEEP) ||
		    (st == SJ_CLAIMED && now >= sj->sj_created +
		    RF_JOB_UNCLAIMED))
			rf_job_free(j, now);
		else if ((st == SJ_RUNNING || st == SJ_PENDING) &&
		    (rf_owner_gone(sj) ||
		    now >= sj->sj_created + RF_JOB_ORPHAN)) {
			/* its refresher died with it: the user starts again
			 * rather than wait on a code nobody polls */
			strlcpy_qr(sj->sj_error, "the refresher running it "
			    "stopped; start again", sizeof(sj->sj_error));
			sj->sj_finished = now;
			atomic_store(&sj->sj_state, SJ_FAILED);
		}
	}
	return sleep_ms;
}

/* ------------------------------------------------------------------ */
/* the loop                                                              */

static void
rf_xfer_done(struct rf_xfer *x)
{
	if (rf_is_acct(x->rx_kind)) {
		rf_nacct--;
		if (x->rx_kind == RX_USAGE)
			rf_nusage--;
		else if (x->rx_kind == RX_REFRESH)
			rf_nrenew--;
	}
	switch (x->rx_kind) {
	case RX_REFRESH:
		rf_refresh_done(x);
		break;
	case RX_USAGE:
		rf_usage_done(x);
		break;
	case RX_CHECK:
		if (rf_jobs[x->rx_job].rj_feed != NULL)
			rf_check_done(x);
		break;
	default:
		if (rf_jobs[x->rx_job].rj_mine)
			rf_device_done(x);
		break;
	}
	rf_xfer_free(x);
}

/* Stop: what is in flight is dropped, claims released, jobs failed. */
static void
rf_abort_all(void)
{
	struct rf_xfer	*x;
	int		 j;

	while ((x = rf_xfers) != NULL) {
		rf_xfer_unlink(x);
		if (x->rx_kind == RX_REFRESH) {
			rf_release(&qr_shm->shm_accts[x->rx_slot]);
			rf_nrenew--;
		}
		if (rf_is_acct(x->rx_kind))
			rf_nacct--;
		rf_xfer_free(x);
	}
	for (j = 0; j < SHM_JOBS; j++)
		if (rf_jobs[j].rj_mine) {
			rf_jobs[j].rj_busy = 0;
			rf_job_end(j, SJ_FAILED, "the daemon stopped or "
			    "reloaded; start again");
		}
}

/* Run the multi handle on what ppoll saw: transfers finished. */
static int
rf_multi_run(void)
{
	struct pollfd	 ready[64];
	int		 i, n = 0, running, mask;

	/* the socket callback may reorder rf_pfd: act on a copy */
	for (i = 1; i < rf_npfd && n < (int)nitems(ready); i++)
		if (rf_pfd[i].revents != 0)
			ready[n++] = rf_pfd[i];
	for (i = 0; i < n; i++) {
		mask = 0;
		if (ready[i].revents & POLLIN)
			mask |= CURL_CSELECT_IN;
		if (ready[i].revents & POLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (ready[i].revents & (POLLERR | POLLHUP | POLLNVAL))
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(rf_multi, ready[i].fd, mask,
		    &running);
	}
	if (rf_curl_at != -1 && now_ms() >= rf_curl_at) {
		rf_curl_at = -1;
		curl_multi_socket_action(rf_multi, CURL_SOCKET_TIMEOUT, 0,
		    &running);
	}
	return rf_multi_reap();
}

int
refresher_main(struct config *cf, int slot, int lifeline_fd)
{
	struct timespec	 ts;
	struct sigaction sa;
	sigset_t	 waitmask, usr2;
	int64_t		 next_sweep = 0, next_scan = 0, now, wait, w;
	int64_t		 quit_at = 0;
	char		 b;

	/* Signals are only delivered inside ppoll: a SIGTERM that comes
	 * during a sweep must not wait for the next tick, and a SIGUSR2
	 * that comes during a scan is kept for the next ppoll. */
	child_signals_block(&waitmask);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = rf_wake;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, NULL);
	sigdelset(&waitmask, SIGUSR2);

	rf_cf = cf;
	rf_parallel = cf->cf_refresh_parallel > 0 ? cf->cf_refresh_parallel :
	    1;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		fatalx("curl_global_init failed");
	if ((rf_multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	curl_multi_setopt(rf_multi, CURLMOPT_SOCKETFUNCTION, rf_sock_cb);
	curl_multi_setopt(rf_multi, CURLMOPT_TIMERFUNCTION, rf_timer_cb);
	if ((rf_db = db_open(cf->cf_db_path)) == NULL)
		fatalx("cannot open the database %s", cf->cf_db_path);
	if (!secret_ready())
		log_warnx("no secrets key: accounts cannot be renewed");
	rf_nslots = qr_shm->shm_hdr->sh_max_accounts;
	if ((rf_slots = calloc(rf_nslots, sizeof(*rf_slots))) == NULL)
		fatal("calloc");
	rf_cappfd = 16;
	if ((rf_pfd = calloc(rf_cappfd, sizeof(*rf_pfd))) == NULL)
		fatal("calloc");
	rf_pfd[0].fd = lifeline_fd;
	rf_pfd[0].events = POLLIN;
	rf_npfd = 1;
	rf_tokens = RF_START_RATE;
	rf_tokens_ms = now_ms();
	rf_handover = now_ms() + RF_HANDOVER_MS;
	rf_job_sweep();
	for (;;) {
		if ((qr_child_quit || rf_pfd[0].fd == -1) && !rf_quitting) {
			rf_quitting = 1;
			quit_at = now_ms() + (qr_child_quit == 2 ? 0 :
			    RF_QUIT_GRACE_MS);
		}
		/* renewals in flight may land; nothing else is waited for */
		if (rf_quitting && (rf_nrenew == 0 || qr_child_quit == 2 ||
		    now_ms() >= quit_at))
			break;
		if (qr_child_reopen) {
			qr_child_reopen = 0;
			log_reopen();
		}
		now = now_ms();
		if (now >= next_sweep && !rf_quitting) {
			if (auth_sessions_expire(rf_db) == -1)
				log_warnx("could not expire admin sessions");
			next_sweep = now + REFRESHER_SWEEP_MS;
		}
		wait = REFRESHER_TICK_MS;
		if (!rf_quitting) {
			wait = rf_jobs_scan();
			if (rf_woken || now >= next_scan) {
				rf_woken = 0;
				w = rf_scan();
				next_scan = now_ms() + w;
			}
			if (next_scan - now_ms() < wait)
				wait = next_scan - now_ms();
			if (rf_handover != 0 && wait > 100) {
				wait = 100;
				next_scan = now_ms() + 100;
			}
		} else
			wait = quit_at - now_ms();
		if (rf_weights_dirty && (rf_nusage == 0 ||
		    now_ms() - rf_weights_ms >= RF_WEIGHTS_GAP_MS)) {
			pool_weights_build(qr_shm);
			rf_weights_dirty = 0;
			rf_weights_ms = now_ms();
		}
		if (rf_curl_at != -1 && rf_curl_at - now_ms() < wait)
			wait = rf_curl_at - now_ms();
		if (wait < 0)
			wait = 0;
		ts.tv_sec = wait / 1000;
		ts.tv_nsec = (wait % 1000) * 1000000;
		if (ppoll(rf_pfd, (nfds_t)rf_npfd, &ts, &waitmask) == -1) {
			if (errno == EINTR)
				continue;
			fatal("ppoll");
		}
		if (rf_pfd[0].fd != -1 &&
		    (rf_pfd[0].revents & (POLLIN | POLLHUP)) &&
		    read(lifeline_fd, &b, 1) <= 0)
			rf_pfd[0].fd = -1;	/* the master is gone */
		/* a finished call left room: look for more work now */
		if (rf_multi_run() > 0)
			next_scan = 0;
	}
	rf_abort_all();
	rf_persist_all();
	curl_multi_cleanup(rf_multi);
	db_close(rf_db);
	free(rf_slots);
	free(rf_pfd);
	curl_global_cleanup();
	exit(0);
}
