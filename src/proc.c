/*
 * proc.c - what makes qrelayd a Unix daemon rather than a program:
 * process titles (so `ps` tells the master from its workers), the
 * privilege drop after the master has bound its sockets, the pid file
 * qrelayctl and rc scripts read, and daemonising.
 *
 * Linux has no setproctitle(3). As nginx does, proc_title_init() moves
 * the environment out of the way, so that the contiguous argv + environ
 * area at the top of the stack can be overwritten with the title; the
 * kernel then shows that text in /proc/PID/cmdline. Call it first in
 * main(), before getopt: argv is repointed at copies, so options and
 * optarg stay valid.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

extern char	**environ;

static char	*title_start;	/* argv[0]; NULL: titles not set up */
static size_t	 title_len;	/* bytes usable from title_start */

void
proc_title_init(int argc, char **argv)
{
	char	*end, **env;
	int	 i, n;

	if (argc < 1 || argv == NULL || argv[0] == NULL)
		return;
	/* the area ends where contiguity ends: argv, then environ */
	end = argv[0];
	for (i = 0; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	for (n = 0; environ[n] != NULL; n++)
		;
	for (i = 0; i < n; i++)
		if (environ[i] == end)
			end = environ[i] + strlen(environ[i]) + 1;

	/* copy the environment out of the area we are about to reuse */
	if ((env = calloc((size_t)n + 1, sizeof(*env))) == NULL)
		return;
	for (i = 0; i < n; i++) {
		if ((env[i] = strdup(environ[i])) == NULL) {
			while (--i >= 0)
				free(env[i]);
			free(env);
			return;
		}
	}
	environ = env;
	/* glibc's err(3)/error(3) use these; they point into argv[0] */
	if ((program_invocation_name = strdup(program_invocation_name)) ==
	    NULL)
		return;
	program_invocation_short_name = strrchr(program_invocation_name, '/');
	program_invocation_short_name = program_invocation_short_name ?
	    program_invocation_short_name + 1 : program_invocation_name;

	/*
	 * Point argv at copies too: getopt and the optarg pointers the
	 * caller keeps (the -f file, reread on SIGHUP) must survive the
	 * title overwriting the original strings.
	 */
	title_start = argv[0];
	title_len = (size_t)(end - argv[0]);
	for (i = 0; i < argc; i++)
		if ((argv[i] = strdup(argv[i])) == NULL)
			fatal("%s: strdup", __func__);
}

/*
 * Sets the title to "qrelayd: " + fmt, e.g. proc_title_set("worker")
 * gives "qrelayd: worker" in ps(1), and the thread name (comm, top(1),
 * 15 bytes at most) to "qrelayd-" + the first word, "qrelayd-worker".
 */
void
proc_title_set(const char *fmt, ...)
{
	char	 title[256], comm[16];
	size_t	 n, w;
	va_list	 ap;

	n = (size_t)snprintf(title, sizeof(title), "qrelayd: ");
	va_start(ap, fmt);
	vsnprintf(title + n, sizeof(title) - n, fmt, ap);
	va_end(ap);

	w = strcspn(title + n, " \t");
	snprintf(comm, sizeof(comm), "qrelayd-%.*s", (int)w, title + n);
	(void)prctl(PR_SET_NAME, comm, 0, 0, 0);

	if (title_start == NULL || title_len < 2)
		return;
	n = strlcpy_qr(title_start, title, title_len);
	if (n < title_len)
		memset(title_start + n, '\0', title_len - n);
}

int
proc_drop_privileges(const char *user)
{
	struct passwd	*pw;
	gid_t		 gid;
	uid_t		 uid;

	if (user == NULL || user[0] == '\0')
		return 0;
	if (geteuid() != 0) {
		log_debug("%s: not root, staying %u", __func__,
		    (unsigned)geteuid());
		return 0;
	}
	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		if (errno != 0)
			log_warn("%s: getpwnam %s", __func__, user);
		else
			log_warnx("%s: unknown user %s", __func__, user);
		return -1;
	}
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	/* groups first: after setuid we could no longer change them */
	if (setgroups(1, &gid) == -1) {
		log_warn("%s: setgroups", __func__);
		return -1;
	}
	if (setresgid(gid, gid, gid) == -1) {
		log_warn("%s: setresgid %u", __func__, (unsigned)gid);
		return -1;
	}
	if (setresuid(uid, uid, uid) == -1) {
		log_warn("%s: setresuid %u", __func__, (unsigned)uid);
		return -1;
	}
	/* make sure the drop cannot be undone */
	if (uid != 0 && (setuid(0) != -1 || seteuid(0) != -1)) {
		log_warnx("%s: could regain root after dropping to %s",
		    __func__, user);
		return -1;
	}
	if (getuid() != uid || geteuid() != uid || getgid() != gid ||
	    getegid() != gid) {
		log_warnx("%s: ids did not change to %s", __func__, user);
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		log_warn("%s: PR_SET_NO_NEW_PRIVS", __func__);
		return -1;
	}
	log_debug("%s: running as %s (%u:%u)", __func__, user, (unsigned)uid,
	    (unsigned)gid);
	return 0;
}

/*
 * Gives path to user, so the processes still work with it after the
 * privilege drop (the database, its directory, the pid file's
 * directory). A path that does not exist is not an error: SQLite's
 * -wal and -shm files come and go.
 */
int
proc_chown_for(const char *user, const char *path)
{
	struct passwd	*pw;

	if (user == NULL || user[0] == '\0' || geteuid() != 0)
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		log_warnx("%s: unknown user %s", __func__, user);
		return -1;
	}
	if (chown(path, pw->pw_uid, pw->pw_gid) == -1) {
		if (errno == ENOENT)
			return 0;
		log_warn("%s: chown %s", __func__, path);
		return -1;
	}
	return 0;
}

/* Writes "pid\n" so that a reader never sees a partial file. */
int
proc_pidfile_write(const char *path)
{
	char	 tmp[PATH_MAX], line[32];
	int	 fd = -1, n;

	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		log_warn("%s: %s", __func__, path);
		return -1;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		log_warn("%s: %s", __func__, tmp);
		return -1;
	}
	n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (fchmod(fd, 0644) == -1 || write(fd, line, (size_t)n) != n) {
		log_warn("%s: write %s", __func__, tmp);
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		log_warn("%s: close %s", __func__, tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		log_warn("%s: rename to %s", __func__, path);
		goto fail;
	}
	return 0;

 fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return -1;
}

/* The pid in path if that process is alive, else 0. */
pid_t
proc_pidfile_read(const char *path)
{
	char	 line[32], *end;
	ssize_t	 n;
	long	 pid;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	line[n] = '\0';
	errno = 0;
	pid = strtol(line, &end, 10);
	if (errno != 0 || end == line || (*end != '\n' && *end != '\0') ||
	    pid <= 0 || pid > INT_MAX)
		return 0;
	/* EPERM: alive, but another user's (qrelayctl run by non-root) */
	if (kill((pid_t)pid, 0) == -1 && errno != EPERM)
		return 0;
	/*
	 * A pid file left by a crash may name a pid the kernel has since
	 * given to another program: only a process whose name (comm, set
	 * by exec and by proc_title_set) says qrelayd counts.
	 */
	snprintf(line, sizeof(line), "/proc/%ld/comm", pid);
	if ((fd = open(line, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n < 7 || strncmp(line, "qrelayd", 7) != 0)
		return 0;
	return (pid_t)pid;
}

/*
 * Classic double fork: the first child leaves the process group and
 * the terminal (setsid), the second can never reacquire one. No chdir:
 * relative paths in the configuration are relative to where qrelayd
 * was started.
 */
int
proc_daemonize(void)
{
	int	 fd, i;

	/* fork, new session, fork again: never a session leader that a
	 * terminal could claim */
	for (i = 0; i < 2; i++) {
		switch (fork()) {
		case -1:
			log_warn("%s: fork", __func__);
			return -1;
		case 0:
			break;
		default:
			_exit(0);
		}
		if (i == 0 && setsid() == -1) {
			log_warn("%s: setsid", __func__);
			return -1;
		}
	}
	if ((fd = open("/dev/null", O_RDWR)) == -1) {
		log_warn("%s: /dev/null", __func__);
		return -1;
	}
	if (dup2(fd, STDIN_FILENO) == -1 || dup2(fd, STDOUT_FILENO) == -1 ||
	    dup2(fd, STDERR_FILENO) == -1) {
		log_warn("%s: dup2", __func__);
		if (fd > STDERR_FILENO)
			close(fd);
		return -1;
	}
	if (fd > STDERR_FILENO)
		close(fd);
	return 0;
}

/* ---- child signals ------------------------------------------------ */

volatile sig_atomic_t qr_child_quit;
volatile sig_atomic_t qr_child_reopen;

/* Child side: handlers only set flags; the event loops act on them. */
static void
child_sig(int sig)
{
	switch (sig) {
	case SIGTERM:
		if (qr_child_quit == 0)
			qr_child_quit = 1;
		break;
	case SIGINT:
	case SIGQUIT:
		qr_child_quit = 2;
		break;
	case SIGUSR1:
		qr_child_reopen = 1;
		break;
	}
}

void
child_signals(void)
{
	struct sigaction	 sa;
	sigset_t		 set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = child_sig;	/* no SA_RESTART: wake the loops */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
}

/*
 * Block the signals a child acts on; its loop takes them only inside
 * ppoll/epoll_pwait with the returned mask, so a signal that comes while
 * the loop works is never left waiting for the next timeout.
 */
void
child_signals_block(sigset_t *waitmask)
{
	sigset_t	 block;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGQUIT);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, waitmask);
}
