/*
 * test_logger.c - logger.c: a real logger process fed by several writer
 * processes through one pipe, as the daemon runs it, and logger_send
 * on a full pipe.
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

/* Defined by qrelayd.c in the daemon. */

static char		 tdir[64];
static struct config	 cf;
static struct shm	 tshm;

struct tlogger {
	pid_t	 tl_pid;
	int	 tl_lifeline;	/* write end: close it to stop the logger */
	int	 tl_log;	/* write end of the log pipe, non-blocking */
};

static void
setup(void)
{
	sqlite3	*db;

	strlcpy_qr(tdir, "/tmp/qr-test-logger.XXXXXX", sizeof(tdir));
	cr_assert_not_null(mkdtemp(tdir));
	memset(&cf, 0, sizeof(cf));
	snprintf(cf.cf_db_path, sizeof(cf.cf_db_path), "%s/q.db", tdir);
	cr_assert_eq(shm_create(&tshm, 4, 4), 0);
	/* the master migrates, then forks; no connection crosses a fork */
	cr_assert_not_null(db = db_open(cf.cf_db_path));
	cr_assert_eq(db_migrate(db), 0);
	db_close(db);
}

static void
teardown(void)
{
	char	 cmd[128];

	shm_destroy(&tshm);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", tdir);
}

TestSuite(logger, .init = setup, .fini = teardown, .timeout = 60);

static void
on_term(int sig)
{
	qr_child_quit = 1;
}

static void
tlogger_start(struct tlogger *tl)
{
	struct sigaction sa, old;
	int	 ll[2], lp[2];

	cr_assert_eq(pipe2(ll, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(lp, O_CLOEXEC), 0);
	/* room for every record of the test: a slow logger drops none */
	if (fcntl(lp[1], F_SETPIPE_SZ, 1 << 20) == -1)
		cr_log_warn("F_SETPIPE_SZ: %s", strerror(errno));
	cr_assert_eq(set_nonblock(lp[1]), 0);
	/* what child_signals does for the daemon; set before fork so a
	 * signal cannot come first */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, &old);
	cr_assert_neq(tl->tl_pid = fork(), -1);
	if (tl->tl_pid == 0) {
		close(ll[1]);
		logger_main(&cf, 1, ll[0], lp[0]);
	}
	sigaction(SIGTERM, &old, NULL);
	close(ll[0]);
	close(lp[0]);
	tl->tl_lifeline = ll[1];
	tl->tl_log = lp[1];
}

/* Closes the lifeline (unless signalled) and waits: exit status. */
static int
tlogger_stop(struct tlogger *tl, int sig)
{
	int	 status;

	if (sig != 0)
		cr_assert_eq(kill(tl->tl_pid, sig), 0);
	else
		close(tl->tl_lifeline);
	cr_assert_eq(waitpid(tl->tl_pid, &status, 0), tl->tl_pid);
	if (sig != 0)
		close(tl->tl_lifeline);
	close(tl->tl_log);
	cr_assert(WIFEXITED(status), "logger died of signal %d",
	    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return WEXITSTATUS(status);
}

static void
rec_fill(struct log_rec *lr, int64_t n)
{
	memset(lr, 0, sizeof(*lr));
	lr->lr_time_ms = (int64_t)now_wall() * 1000;
	lr->lr_duration_us = 1234;
	lr->lr_status = 200;
	lr->lr_tokens_in = n;		/* a unique number per record */
	strlcpy_qr(lr->lr_method, "POST", sizeof(lr->lr_method));
	strlcpy_qr(lr->lr_path, "/v1/messages", sizeof(lr->lr_path));
	strlcpy_qr(lr->lr_client_ip, "127.0.0.1", sizeof(lr->lr_client_ip));
}

static int64_t
query_int(const char *sql)
{
	sqlite3		*db;
	sqlite3_stmt	*st;
	int64_t		 n;

	cr_assert_not_null(db = db_open(cf.cf_db_path));
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
	    "%s", sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	db_close(db);
	return n;
}

static void
exec_sql(const char *sql)
{
	sqlite3	*db;

	cr_assert_not_null(db = db_open(cf.cf_db_path));
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK,
	    "%s", sqlite3_errmsg(db));
	db_close(db);
}

#define NWRITERS	5
#define NRECS		5000

Test(logger, concurrent_writers_every_record_accounted)
{
	struct tlogger	 tl;
	struct log_rec	 lr;
	pid_t		 w[NWRITERS];
	int		 i, j, status;
	int64_t		 rows, distinct;
	uint64_t	 dropped, written;

	tlogger_start(&tl);
	for (i = 0; i < NWRITERS; i++) {
		cr_assert_neq(w[i] = fork(), -1);
		if (w[i] != 0)
			continue;
		close(tl.tl_lifeline);
		for (j = 0; j < NRECS / NWRITERS; j++) {
			rec_fill(&lr, (int64_t)i * NRECS + j);
			logger_send(tl.tl_log, &lr);
			/* about 25,000 records a second in all */
			if (j % 10 == 9)
				usleep(2000);
		}
		_exit(0);
	}
	for (i = 0; i < NWRITERS; i++) {
		cr_assert_eq(waitpid(w[i], &status, 0), w[i]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	cr_assert_eq(tlogger_stop(&tl, 0), 0);

	rows = query_int("SELECT COUNT(*) FROM request_logs");
	distinct = query_int("SELECT COUNT(DISTINCT tokens_in) FROM"
	    " request_logs WHERE path = '/v1/messages' AND method = 'POST'"
	    " AND status = 200 AND duration_us = 1234 AND pid > 0");
	dropped = atomic_load(&tshm.shm_hdr->sh_log_dropped);
	written = atomic_load(&tshm.shm_hdr->sh_log_written);
	if (dropped > 0)
		cr_log_warn("%llu records dropped", (unsigned long long)dropped);
	cr_assert_gt(rows, 0);
	cr_assert_eq((uint64_t)rows + dropped, NRECS, "rows %lld dropped %llu",
	    (long long)rows, (unsigned long long)dropped);
	cr_assert_eq(distinct, rows, "duplicate or damaged rows");
	cr_assert_eq(written, (uint64_t)rows);
}

static void
on_alarm(int sig)
{
	static const char msg[] = "logger_send blocked\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) == -1)
		_exit(98);
	_exit(99);
}

Test(logger, full_pipe_never_blocks)
{
	struct log_rec	 lr, in[16];
	int		 p[2], i, total = 10000;
	int64_t		 t0, accepted = 0;
	ssize_t		 n;
	size_t		 k;

	signal(SIGALRM, on_alarm);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(set_nonblock(p[0]), 0);
	cr_assert_eq(set_nonblock(p[1]), 0);
	alarm(20);	/* a blocking write would hang here */
	t0 = now_ms();
	for (i = 0; i < total; i++) {
		rec_fill(&lr, i);
		logger_send(p[1], &lr);
	}
	alarm(0);
	cr_assert_lt(now_ms() - t0, 10000);

	while ((n = read(p[0], in, sizeof(in))) > 0) {
		cr_assert_eq(n % sizeof(in[0]), 0, "a partial record");
		for (k = 0; k < (size_t)n / sizeof(in[0]); k++) {
			cr_assert_eq(in[k].lr_magic, LOG_REC_MAGIC);
			cr_assert_eq(in[k].lr_size, sizeof(in[0]));
			cr_assert_eq(in[k].lr_tokens_in, accepted + (int64_t)k);
			cr_assert_eq(in[k].lr_pid, getpid());
		}
		accepted += n / (ssize_t)sizeof(in[0]);
	}
	cr_assert_gt(accepted, 0);
	cr_assert_lt(accepted, total);
	cr_assert_eq(atomic_load(&tshm.shm_hdr->sh_log_dropped),
	    (uint64_t)(total - accepted));

	/* a closed descriptor is a drop too, not a crash */
	rec_fill(&lr, 0);
	close(p[1]);
	logger_send(p[1], &lr);
	cr_assert_eq(atomic_load(&tshm.shm_hdr->sh_log_dropped),
	    (uint64_t)(total - accepted + 1));
	close(p[0]);
}

Test(logger, bad_records_skipped)
{
	struct tlogger	 tl;
	struct log_rec	 lr;
	int		 i;

	tlogger_start(&tl);
	rec_fill(&lr, 0);
	lr.lr_magic = 0xdeadbeef;	/* written raw, bypassing logger_send */
	lr.lr_size = sizeof(lr);
	cr_assert_eq(write(tl.tl_log, &lr, sizeof(lr)), (ssize_t)sizeof(lr));
	for (i = 1; i <= 10; i++) {
		rec_fill(&lr, i);
		/* unterminated strings are cut, not read past */
		memset(lr.lr_model, 'm', sizeof(lr.lr_model));
		logger_send(tl.tl_log, &lr);
	}
	cr_assert_eq(tlogger_stop(&tl, 0), 0);
	cr_assert_eq(query_int("SELECT COUNT(*) FROM request_logs"), 10);
	cr_assert_eq(query_int("SELECT MAX(length(model)) FROM request_logs"),
	    (int64_t)sizeof(lr.lr_model) - 1);
}

Test(logger, disabled_and_retention)
{
	struct tlogger	 tl;
	struct log_rec	 lr;
	int		 i;

	exec_sql("UPDATE settings SET value = 'false'"
	    " WHERE name = 'enableRequestLog';"
	    "INSERT INTO request_logs (ts_ms, method, path, status,"
	    " duration_us, client_ip, pid) VALUES (1000, 'GET', '/', 200, 1,"
	    " '::1', 1);"
	    "INSERT INTO request_logs (ts_ms, method, path, status,"
	    " duration_us, client_ip, pid) VALUES"
	    " (CAST(strftime('%s', 'now') AS INTEGER) * 1000, 'GET', '/new',"
	    " 200, 1, '::1', 1);");
	tlogger_start(&tl);
	for (i = 0; i < 10; i++) {
		rec_fill(&lr, i);
		logger_send(tl.tl_log, &lr);
	}
	cr_assert_eq(tlogger_stop(&tl, 0), 0);
	/* the old row went at start, the new one stayed, none was added */
	cr_assert_eq(query_int("SELECT COUNT(*) FROM request_logs"), 1);
	cr_assert_eq(query_int("SELECT COUNT(*) FROM request_logs"
	    " WHERE path = '/new'"), 1);
	cr_assert_eq(atomic_load(&tshm.shm_hdr->sh_log_written), 0);
}

Test(logger, quit_flag_drains)
{
	struct tlogger	 tl;
	struct log_rec	 lr;
	int		 i;

	tlogger_start(&tl);
	for (i = 0; i < 100; i++) {
		rec_fill(&lr, i);
		logger_send(tl.tl_log, &lr);
	}
	/* SIGTERM with the lifeline still open */
	cr_assert_eq(tlogger_stop(&tl, SIGTERM), 0);
	cr_assert_eq(query_int("SELECT COUNT(*) FROM request_logs"), 100);
}

Test(logger, write_failure_is_survived)
{
	struct tlogger	 tl;
	struct log_rec	 lr;
	int		 i;

	/* every batch holding a record of pid 13 fails */
	exec_sql("CREATE TRIGGER boom BEFORE INSERT ON request_logs"
	    " WHEN NEW.pid = 13 BEGIN SELECT RAISE(ABORT, 'boom'); END");
	tlogger_start(&tl);
	for (i = 0; i < 20; i++) {
		rec_fill(&lr, i);
		lr.lr_pid = 13;
		logger_send(tl.tl_log, &lr);
	}
	usleep(600 * 1000);	/* longer than a flush period: own batch */
	for (i = 0; i < 30; i++) {
		rec_fill(&lr, 100 + i);
		logger_send(tl.tl_log, &lr);
	}
	cr_assert_eq(tlogger_stop(&tl, 0), 0);
	cr_assert_eq(query_int("SELECT COUNT(*) FROM request_logs"), 30);
	cr_assert_eq(atomic_load(&tshm.shm_hdr->sh_log_dropped), 20);
	cr_assert_eq(atomic_load(&tshm.shm_hdr->sh_log_written), 30);
}
