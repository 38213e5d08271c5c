/*
 * refresher.c - the refresher process.
 *
 * It is the one process that reads refresh tokens and client secrets:
 * it renews the access tokens of the upstream accounts before they
 * expire (the OIDC refresh_token grant for IdC accounts, Kiro's
 * refreshToken for social ones) and publishes only the short-lived
 * access tokens to the shared table. Each renewal is written to SQLite
 * first and then to the slot (shm_acct_set_token bumps sa_token_gen,
 * which a worker waiting after a 403 watches).
 *
 * It scans every account slot at start, every few seconds, and whenever
 * it is woken: pool_want_refresh (a worker saw "bearer token invalid"),
 * an admin's refresh or a new account sends SIGUSR2. The signal is
 * blocked except inside ppoll and the scan reads the slot flags after
 * waking, so a wake-up that arrives mid-scan is taken at the next ppoll,
 * never lost. A slot is renewed when its token is missing, expires
 * within REFRESH_WINDOW, or is flagged. A refused refresh token
 * (invalid_grant) disables the account with the reason; other failures
 * are retried with a doubling backoff. Two refreshers (the old and new
 * generation during a reload) never renew one account at once: a slot
 * is claimed with sa_refresh_pid first, since a refresh token that
 * rotates would otherwise be spent twice.
 *
 * The upstream calls block (one easy handle at a time, bounded by the
 * configured timeouts); nothing else waits on this process. It also
 * deletes expired admin sessions once a minute. Tokens are never logged.
 */
#include <errno.h>
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

/* What this process remembers of each slot; reset when the id changes. */
struct rf_slot {
	int64_t		 rs_id;
	int		 rs_fails;
	int64_t		 rs_next_ms;	/* backoff: not before (monotonic) */
	int64_t		 rs_ok_ms;	/* last success (monotonic) */
	int64_t		 rs_ttl_ms;	/* lifetime of the last token */
};

static struct rf_slot	*rf_slots;
static uint32_t		 rf_nslots;

static void
rf_wake(int sig)
{
	/* nothing to do: ppoll returning is the wake-up */
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

/* Renew the token of account id in slot (old_expires: the token's). */
static void
rf_refresh(struct config *cf, sqlite3 *db, uint32_t slot, int64_t id,
    int64_t old_expires)
{
	struct shm		*s = qr_shm;
	struct shm_acct		*a = &s->shm_accts[slot];
	struct rf_slot		*rs = &rf_slots[slot];
	struct db_account_secrets as;
	struct auth_tokens	 at;
	char			 reason[256];
	int32_t			 forced = SHM_REFRESH_FORCED;
	int			 r, res, rotated;

	memset(&at, 0, sizeof(at));
	if ((r = db_account_secrets(db, id, &as)) == 0)
		return;		/* deleted: its slot goes with it */
	if (r == -1) {
		res = AUTH_FAILED;
		snprintf(at.at_error, sizeof(at.at_error),
		    "stored secrets unreadable");
	} else if (strcmp(as.as_type, "idc") == 0)
		res = oidc_refresh(cf, as.as_region, as.as_client_id,
		    as.as_client_secret, as.as_refresh_token, &at);
	else
		res = kiro_refresh(cf, as.as_region, as.as_refresh_token, &at);

	switch (res) {
	case AUTH_OK:
		/* an answer without a refresh token keeps the old one */
		rotated = at.at_refresh != NULL &&
		    strcmp(at.at_refresh, as.as_refresh_token) != 0;
		r = db_account_refreshed(db, id, at.at_access, at.at_expires,
		    rotated ? at.at_refresh : NULL, at.at_profile_arn);
		if (r == 0)
			break;	/* deleted meanwhile */
		if (r == -1)
			log_warnx("account %lld: renewed, but the database "
			    "did not take it%s", (long long)id, rotated ?
			    "; the new refresh token is lost" : "");
		if (shm_acct_set_token(s, slot, id, at.at_access,
		    at.at_expires, at.at_profile_arn) == -1)
			break;
		(void)shm_acct_set_state(s, slot, id, ACCT_REFRESH_FAILED,
		    ACCT_ENABLED);
		rs->rs_fails = 0;
		rs->rs_next_ms = 0;
		rs->rs_ok_ms = now_ms();
		rs->rs_ttl_ms = (at.at_expires - now_wall()) * 1000;
		log_info("account %lld: access token renewed, valid %lld s%s",
		    (long long)id, (long long)(at.at_expires - now_wall()),
		    rotated ? ", refresh token rotated" : "");
		break;
	case AUTH_REVOKED:
		snprintf(reason, sizeof(reason), "refresh token refused, "
		    "account disabled (%s)", at.at_error);
		(void)db_account_refresh_failed(db, id, 1, reason);
		/* no token, no flag, generation bumped: a worker waiting on
		 * this slot moves on at once */
		if (shm_acct_set_token(s, slot, id, "", 0, NULL) == 0) {
			(void)shm_acct_set_state(s, slot, id, -1,
			    ACCT_DISABLED);
			(void)shm_acct_set_error(s, slot, id, reason);
		}
		log_warnx("account %lld: %s", (long long)id, reason);
		break;
	default:
		snprintf(reason, sizeof(reason), "token refresh failed: %s",
		    at.at_error);
		(void)db_account_refresh_failed(db, id, 0, reason);
		(void)shm_acct_set_error(s, slot, id, reason);
		if (old_expires <= (int64_t)now_wall() + 60)
			(void)shm_acct_set_state(s, slot, id, ACCT_ENABLED,
			    ACCT_REFRESH_FAILED);
		/* an admin's request was answered; a worker's flag stays
		 * and is retried after the backoff */
		(void)atomic_compare_exchange_strong(&a->sa_refresh_wanted,
		    &forced, 0);
		rf_backoff(rs);
		log_warnx("account %lld: %s; retrying in %lld s",
		    (long long)id, reason,
		    (long long)((rs->rs_next_ms - now_ms()) / 1000));
		break;
	}
	oidc_tokens_free(&at);
	db_account_secrets_free(&as);
}

/*
 * One pass over the slots. Returns the milliseconds until the next pass
 * is due at the latest.
 */
static int64_t
rf_scan(struct config *cf, sqlite3 *db)
{
	struct shm	*s = qr_shm;
	struct shm_acct	 copy;
	struct rf_slot	*rs;
	uint32_t	 i, high;
	int64_t		 now, nowms, sleep_ms = REFRESHER_TICK_MS, id, exp;
	int32_t		 wanted;
	int		 due, empty;

	high = atomic_load(&s->shm_hdr->sh_accts_high);
	if (high > rf_nslots)
		high = rf_nslots;
	for (i = 0; i < high; i++) {
		if (rf_stop_pending())
			break;
		if (atomic_load(&s->shm_accts[i].sa_state) == ACCT_EMPTY ||
		    shm_acct_read(s, i, &copy) == -1)
			continue;
		id = copy.sa_id;
		exp = copy.sa_expires;
		empty = copy.sa_token[0] == '\0';
		explicit_bzero(copy.sa_token, sizeof(copy.sa_token));
		rs = &rf_slots[i];
		if (rs->rs_id != id) {
			memset(rs, 0, sizeof(*rs));
			rs->rs_id = id;
		}
		now = now_wall();
		nowms = now_ms();
		wanted = atomic_load(&s->shm_accts[i].sa_refresh_wanted);
		due = 0;
		if (wanted == SHM_REFRESH_FORCED)
			due = 1;
		else if (copy.sa_state == ACCT_DISABLED)
			continue;
		else if (nowms < rs->rs_next_ms) {
			if (rs->rs_next_ms - nowms < sleep_ms)
				sleep_ms = rs->rs_next_ms - nowms;
			continue;
		} else if (wanted == SHM_REFRESH_WANTED) {
			/* a flag raised against the token just renewed
			 * waits a moment: the worker may see the new one */
			if (rs->rs_ok_ms && nowms - rs->rs_ok_ms <
			    RF_WANTED_GAP_MS) {
				if (rs->rs_ok_ms + RF_WANTED_GAP_MS - nowms <
				    sleep_ms)
					sleep_ms = rs->rs_ok_ms +
					    RF_WANTED_GAP_MS - nowms;
				continue;
			}
			due = 1;
		} else if (empty || exp - now < REFRESH_WINDOW) {
			/* a short-lived token is not renewed in a loop */
			due = rs->rs_ok_ms == 0 || exp <= now + 60 ||
			    nowms - rs->rs_ok_ms >= (rs->rs_ttl_ms / 2 <
			    RF_REPEAT_MIN_MS ? rs->rs_ttl_ms / 2 :
			    RF_REPEAT_MIN_MS);
			if (!due && sleep_ms > 1000)
				sleep_ms = 1000;
		}
		if (!due || !rf_claim(&s->shm_accts[i]))
			continue;
		rf_refresh(cf, db, i, id, exp);
		rf_release(&s->shm_accts[i]);
	}
	return sleep_ms > 0 ? sleep_ms : 0;
}

int
refresher_main(struct config *cf, int slot, int lifeline_fd)
{
	struct pollfd	 pfd;
	struct timespec	 ts;
	struct sigaction sa;
	sigset_t	 waitmask, usr2;
	sqlite3		*db;
	int64_t		 next_sweep = 0, now, sleep_ms;
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

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		fatalx("curl_global_init failed");
	if ((db = db_open(cf->cf_db_path)) == NULL)
		fatalx("cannot open the database %s", cf->cf_db_path);
	if (!secret_ready())
		log_warnx("no secrets key: accounts cannot be renewed");
	rf_nslots = qr_shm->shm_hdr->sh_max_accounts;
	if ((rf_slots = calloc(rf_nslots, sizeof(*rf_slots))) == NULL)
		fatal("calloc");
	pfd.fd = lifeline_fd;
	pfd.events = POLLIN;
	for (;;) {
		if (qr_child_quit)
			break;
		if (qr_child_reopen) {
			qr_child_reopen = 0;
			log_reopen();
		}
		now = now_ms();
		if (now >= next_sweep) {
			if (auth_sessions_expire(db) == -1)
				log_warnx("could not expire admin sessions");
			next_sweep = now + REFRESHER_SWEEP_MS;
		}
		sleep_ms = rf_scan(cf, db);
		ts.tv_sec = sleep_ms / 1000;
		ts.tv_nsec = (sleep_ms % 1000) * 1000000;
		if (ppoll(&pfd, 1, &ts, &waitmask) == -1) {
			if (errno == EINTR)
				continue;
			fatal("ppoll");
		}
		if ((pfd.revents & (POLLIN | POLLHUP)) &&
		    read(lifeline_fd, &b, 1) <= 0)
			break;
	}
	db_close(db);
	free(rf_slots);
	curl_global_cleanup();
	exit(0);
}
