/*
 * logger.c - the logger process: request records from the log pipe into
 * the request_logs table.
 *
 * Workers call logger_send once per request. A record is fixed size and
 * smaller than PIPE_BUF, so each write(2) is atomic: records from many
 * workers never interleave, and a full pipe refuses a whole record,
 * which is then counted as dropped in the shared table. A worker never
 * waits for the logger or for SQLite.
 *
 * The master keeps both ends of the pipe, so records already written
 * survive a logger restart. The logger batches rows, one transaction
 * per batch, and deletes rows older than logRetentionDays. A database
 * error loses the batch, never the logger.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

_Static_assert(sizeof(struct log_rec) <= PIPE_BUF,
    "a log record must fit one atomic pipe write");

#define LOGGER_BATCH		512	/* records per transaction, at most */
#define LOGGER_FLUSH_MS		200	/* pending records wait no longer */
#define LOGGER_QUIET_MS		10	/* after a read, let the pipe fill */
#define LOGGER_SETTINGS_MS	5000
#define LOGGER_PRUNE_MS		(3600 * 1000)
#define LOGGER_ERR_MS		(60 * 1000)	/* one failure message a minute */

struct logger {
	sqlite3		*lg_db;
	struct log_rec	 lg_recs[LOGGER_BATCH];
	size_t		 lg_n;
	int64_t		 lg_first_ms;		/* oldest pending record */
	int		 lg_enabled;		/* enableRequestLog */
	int		 lg_days;		/* logRetentionDays */
	int64_t		 lg_settings_at;
	int64_t		 lg_prune_at;
	int64_t		 lg_err_at;
	uint64_t	 lg_err_lost;		/* lost since the last message */
	uint64_t	 lg_garbage;
};

/* Static: the batch is ~360 KB, too much for the stack. */
static struct logger	 logger;

static void
logger_count_dropped(uint64_t n)
{
	if (qr_shm != NULL)
		atomic_fetch_add_explicit(&qr_shm->shm_hdr->sh_log_dropped, n,
		    memory_order_relaxed);
}

void
logger_send(int fd, struct log_rec *lr)
{
	lr->lr_magic = LOG_REC_MAGIC;
	lr->lr_size = sizeof(*lr);
	if (lr->lr_pid == 0)
		lr->lr_pid = (int32_t)getpid();
	/* Non-blocking and atomic: the whole record or EAGAIN, never part
	 * of it, so there is nothing to retry. */
	if (write(fd, lr, sizeof(*lr)) != (ssize_t)sizeof(*lr))
		logger_count_dropped(1);
}

static void
logger_settings(struct logger *lg)
{
	char		 v[32], *end;
	long		 days;

	if (db_setting_get(lg->lg_db, "enableRequestLog", v, sizeof(v)) == 1)
		lg->lg_enabled = strcmp(v, "false") != 0;
	if (db_setting_get(lg->lg_db, "logRetentionDays", v, sizeof(v)) == 1) {
		errno = 0;
		days = strtol(v, &end, 10);
		if (errno == 0 && end != v && *end == '\0' && days >= 0 &&
		    days <= 100000)
			lg->lg_days = (int)days;
	}
	lg->lg_settings_at = now_ms();
}

static void
logger_prune(struct logger *lg)
{
	int	 n;

	lg->lg_prune_at = now_ms();
	if ((n = db_logs_prune(lg->lg_db, lg->lg_days)) > 0)
		log_info("request log: deleted %d rows older than %d days",
		    n, lg->lg_days);
}

static void
logger_flush(struct logger *lg)
{
	char	 err[256];
	int64_t	 now;

	if (lg->lg_n == 0)
		return;
	if (db_logs_insert_batch(lg->lg_db, lg->lg_recs, lg->lg_n, err,
	    sizeof(err)) == 0) {
		if (qr_shm != NULL)
			atomic_fetch_add_explicit(
			    &qr_shm->shm_hdr->sh_log_written, lg->lg_n,
			    memory_order_relaxed);
	} else {
		/* Disk full or read-only: this batch is lost and counted;
		 * say so once a minute, not once a batch. */
		logger_count_dropped(lg->lg_n);
		lg->lg_err_lost += lg->lg_n;
		now = now_ms();
		if (lg->lg_err_at == 0 || now - lg->lg_err_at >= LOGGER_ERR_MS) {
			log_warnx("request log: %s; %llu records lost",
			    err, (unsigned long long)lg->lg_err_lost);
			lg->lg_err_at = now;
			lg->lg_err_lost = 0;
		}
	}
	lg->lg_n = 0;
}

/* Takes one record from the pipe into the batch. */
static void
logger_take(struct logger *lg, const struct log_rec *lr)
{
	struct log_rec	*r;

	if (lr->lr_magic != LOG_REC_MAGIC || lr->lr_size != sizeof(*lr)) {
		/* cannot happen with atomic fixed-size writes: a bug */
		if (lg->lg_garbage++ == 0)
			log_warnx("request log: bad record (magic %#x, size %u)"
			    " dropped", lr->lr_magic, lr->lr_size);
		return;
	}
	if (!lg->lg_enabled)
		return;
	if (lg->lg_n == 0)
		lg->lg_first_ms = now_ms();
	r = &lg->lg_recs[lg->lg_n++];
	*r = *lr;
	/* the strings come from another process: terminate them here */
	r->lr_method[sizeof(r->lr_method) - 1] = '\0';
	r->lr_path[sizeof(r->lr_path) - 1] = '\0';
	r->lr_client_ip[sizeof(r->lr_client_ip) - 1] = '\0';
	r->lr_model[sizeof(r->lr_model) - 1] = '\0';
	r->lr_error[sizeof(r->lr_error) - 1] = '\0';
	if (lg->lg_n == LOGGER_BATCH)
		logger_flush(lg);
}

/*
 * Reads every whole record the pipe holds. Returns 0 when the pipe is
 * empty (EAGAIN), 1 at EOF (every write end closed), -1 on error.
 */
static int
logger_read(struct logger *lg, int fd)
{
	struct log_rec	 in[32];
	ssize_t		 n;
	size_t		 i;

	for (;;) {
		n = read(fd, in, sizeof(in));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			log_warn("%s: read", __func__);
			return -1;
		}
		if (n == 0)
			return 1;
		/* whole records only, as every write is one whole record */
		if (n % sizeof(in[0]) != 0 && lg->lg_garbage++ == 0)
			log_warnx("request log: %zd bytes read, not a whole "
			    "number of records", n);
		for (i = 0; i < (size_t)n / sizeof(in[0]); i++)
			logger_take(lg, &in[i]);
	}
}

/* The lifeline: any data is ignored; 1 when the master is gone. */
static int
logger_lifeline(int fd)
{
	char	 b[64];
	ssize_t	 n;

	while ((n = read(fd, b, sizeof(b))) > 0)
		;
	if (n == 0)
		return 1;
	return errno == EAGAIN || errno == EINTR ? 0 : 1;
}

int
logger_main(struct config *cf, int slot, int lifeline_fd, int log_rfd)
{
	struct logger	*lg = &logger;
	struct pollfd	 pfd[2];
	struct timespec	 ts;
	struct sched_param sp = { .sched_priority = 0 };
	sigset_t	 waitmask;
	int64_t		 now, wait, quiet_until = 0;
	int		 done = 0, pipe_open = 1;

	shm_proc_set_self(slot);
	child_signals_block(&waitmask);
	/* batch work: never preempt a worker to insert rows sooner */
	if (sched_setscheduler(0, SCHED_BATCH, &sp) == -1)
		log_warn("%s: SCHED_BATCH", __func__);
	memset(lg, 0, sizeof(*lg));
	lg->lg_enabled = 1;
	lg->lg_days = 30;
	/* A database we cannot open now may open later (EMFILE, a
	 * moment's lock): exit 1 so the master restarts us with backoff. */
	if ((lg->lg_db = db_open(cf->cf_db_path)) == NULL) {
		log_warnx("request log: cannot open %s", cf->cf_db_path);
		exit(1);
	}
	if (set_nonblock(log_rfd) == -1 || set_nonblock(lifeline_fd) == -1)
		fatal("%s: set_nonblock", __func__);
	logger_settings(lg);
	logger_prune(lg);

	pfd[0].fd = lifeline_fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = log_rfd;
	pfd[1].events = POLLIN;
	/*
	 * Waking for every record would preempt the workers thousands of
	 * times a second; after each read the pipe is left alone for
	 * LOGGER_QUIET_MS (it holds ~1,400 records, so nothing is lost
	 * below ~100,000 requests a second) and read in one sweep.
	 */
	while (!done && !qr_child_quit) {
		now = now_ms();
		wait = LOGGER_FLUSH_MS;
		if (lg->lg_n > 0)
			wait = lg->lg_first_ms + LOGGER_FLUSH_MS - now;
		pfd[1].fd = pipe_open && now >= quiet_until ? log_rfd : -1;
		if (pfd[1].fd == -1 && pipe_open && quiet_until - now < wait)
			wait = quiet_until - now;
		if (wait < 0)
			wait = 0;
		ts.tv_sec = wait / 1000;
		ts.tv_nsec = (wait % 1000) * 1000000;
		if (ppoll(pfd, 2, &ts, &waitmask) == -1 && errno != EINTR)
			fatal("%s: ppoll", __func__);
		if (qr_child_reopen) {
			qr_child_reopen = 0;
			log_reopen();
		}
		if (pfd[1].fd != -1 &&
		    (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			/* at EOF stop polling it: POLLHUP would spin */
			if (logger_read(lg, log_rfd) != 0)
				pipe_open = 0;
			quiet_until = now_ms() + LOGGER_QUIET_MS;
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
			done = logger_lifeline(lifeline_fd);

		now = now_ms();
		if (lg->lg_n > 0 && now - lg->lg_first_ms >= LOGGER_FLUSH_MS)
			logger_flush(lg);
		if (now - lg->lg_settings_at >= LOGGER_SETTINGS_MS)
			logger_settings(lg);
		if (now - lg->lg_prune_at >= LOGGER_PRUNE_MS)
			logger_prune(lg);
	}

	/* The master is gone or wants us gone: whatever the workers wrote
	 * is still in the pipe, so take it all before leaving. */
	if (pipe_open)
		(void)logger_read(lg, log_rfd);
	logger_flush(lg);
	db_close(lg->lg_db);
	if (lg->lg_garbage > 0)
		log_warnx("request log: %llu bad records or reads",
		    (unsigned long long)lg->lg_garbage);
	exit(0);
}
