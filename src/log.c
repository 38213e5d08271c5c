/*
 * log.c - the daemon's own log: stderr in the foreground (-d), a file
 * when log_file is set (reopened on SIGUSR1), syslog otherwise. Every
 * line carries the process role and pid. Callers never log secrets.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <syslog.h>
#include <unistd.h>

#include "qrelayd.h"

int		 log_verbose;
static int	 log_foreground = 1;
static int	 log_fd = -1;		/* log_file, or -1 */
static char	 log_path[PATH_MAX];
static char	 log_proc[32] = "qrelayd";

void
log_init(int foreground, int verbose, const char *procname)
{
	log_foreground = foreground;
	log_verbose = verbose;
	log_setproc(procname);
	if (!foreground)
		openlog("qrelayd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_setproc(const char *procname)
{
	strlcpy_qr(log_proc, procname, sizeof(log_proc));
}

int
log_open_file(const char *path)
{
	int	 fd;

	if (path == NULL || path[0] == '\0') {
		if (log_fd != -1)
			close(log_fd);
		log_fd = -1;
		log_path[0] = '\0';
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	if (log_fd != -1)
		close(log_fd);
	log_fd = fd;
	if (log_path != path)
		strlcpy_qr(log_path, path, sizeof(log_path));
	return 0;
}

void
log_reopen(void)
{
	if (log_path[0] != '\0' && log_open_file(log_path) == -1)
		log_warn("reopen %s", log_path);
}

static void
vlog(int pri, const char *fmt, va_list ap, int with_errno)
{
	char		 msg[2048], line[2200], ts[32];
	int		 saved = errno, n;
	struct timespec	 tv;
	struct tm	 tm;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		size_t	 l = strlen(msg);
		snprintf(msg + l, sizeof(msg) - l, ": %s", strerror(saved));
	}
	if (log_fd == -1 && !log_foreground) {
		syslog(pri, "%s: %s", log_proc, msg);
		errno = saved;
		return;
	}
	clock_gettime(CLOCK_REALTIME, &tv);
	localtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ld qrelayd[%d] %s: %s\n", ts,
	    tv.tv_nsec / 1000000, (int)getpid(), log_proc, msg);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	/* one write per line so lines from many processes do not mix */
	if (write(log_fd != -1 ? log_fd : STDERR_FILENO, line, (size_t)n) == -1)
		(void)0;
	errno = saved;
}

#define LOGFN(name, pri, err, gate)				\
void								\
name(const char *fmt, ...)					\
{								\
	va_list	 ap;						\
	if (gate)						\
		return;						\
	va_start(ap, fmt);					\
	vlog(pri, fmt, ap, err);				\
	va_end(ap);						\
}
LOGFN(log_warn, LOG_WARNING, 1, 0)
LOGFN(log_warnx, LOG_WARNING, 0, 0)
LOGFN(log_info, LOG_INFO, 0, 0)
LOGFN(log_debug, LOG_DEBUG, 0, !log_verbose)

void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, 1);
	va_end(ap);
	exit(QR_EXIT_FATAL);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, 0);
	va_end(ap);
	exit(QR_EXIT_FATAL);
}
