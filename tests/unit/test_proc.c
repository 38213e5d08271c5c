/*
 * test_proc.c - pid file, process title, privilege drop, daemonising.
 * The privilege tests need root and run the drop in a forked child, so
 * the test process keeps its ids; without root they are skipped.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static char	 tmpdir[64];
static char	 pidpath[128];

static void
setup(void)
{
	strlcpy_qr(tmpdir, "/tmp/qr-test-proc.XXXXXX", sizeof(tmpdir));
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(pidpath, sizeof(pidpath), "%s/qrelayd.pid", tmpdir);
	alarm(20);
}

static void
teardown(void)
{
	char	 cmd[128];

	alarm(0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		(void)0;
}

TestSuite(proc, .init = setup, .fini = teardown, .timeout = 30);

static void
write_file(const char *path, const char *text)
{
	FILE	*fp = fopen(path, "w");

	cr_assert_not_null(fp);
	fputs(text, fp);
	cr_assert_eq(fclose(fp), 0);
}

static int
count_entries(const char *dir)
{
	DIR		*d = opendir(dir);
	struct dirent	*de;
	int		 n = 0;

	cr_assert_not_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

Test(proc, pidfile_roundtrip)
{
	struct stat	 st;
	char		 buf[64], want[64];
	FILE		*fp;

	cr_assert_eq(proc_pidfile_read(pidpath), 0, "no file yet");
	cr_assert_eq(proc_pidfile_write(pidpath), 0);
	/* a live process that is not qrelayd does not count ... */
	prctl(PR_SET_NAME, "test_proc");
	cr_assert_eq(proc_pidfile_read(pidpath), 0, "a stranger's pid");
	/* ... one named qrelayd does */
	prctl(PR_SET_NAME, "qrelayd-master");
	cr_assert_eq(proc_pidfile_read(pidpath), getpid());
	cr_assert_eq(stat(pidpath, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0644);
	fp = fopen(pidpath, "r");
	cr_assert_not_null(fp);
	cr_assert_not_null(fgets(buf, sizeof(buf), fp));
	fclose(fp);
	snprintf(want, sizeof(want), "%ld\n", (long)getpid());
	cr_assert_str_eq(buf, want);
	/* overwriting works and leaves no temporary file behind */
	cr_assert_eq(proc_pidfile_write(pidpath), 0);
	cr_assert_eq(count_entries(tmpdir), 1);
}

Test(proc, pidfile_stale_and_garbage)
{
	char	 line[32];
	pid_t	 pid;
	int	 st;

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		_exit(0);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	snprintf(line, sizeof(line), "%ld\n", (long)pid);
	write_file(pidpath, line);
	cr_assert_eq(proc_pidfile_read(pidpath), 0, "dead pid %ld", (long)pid);

	write_file(pidpath, "");
	cr_assert_eq(proc_pidfile_read(pidpath), 0);
	write_file(pidpath, "abc\n");
	cr_assert_eq(proc_pidfile_read(pidpath), 0);
	write_file(pidpath, "-1\n");
	cr_assert_eq(proc_pidfile_read(pidpath), 0);
	write_file(pidpath, "0\n");
	cr_assert_eq(proc_pidfile_read(pidpath), 0);
	write_file(pidpath, "99999999999999999999\n");
	cr_assert_eq(proc_pidfile_read(pidpath), 0);
	snprintf(line, sizeof(line), "%ldx\n", (long)getpid());
	write_file(pidpath, line);
	cr_assert_eq(proc_pidfile_read(pidpath), 0);
	/* no trailing newline is fine */
	prctl(PR_SET_NAME, "qrelayd-master");
	snprintf(line, sizeof(line), "%ld", (long)getpid());
	write_file(pidpath, line);
	cr_assert_eq(proc_pidfile_read(pidpath), getpid());
}

Test(proc, pidfile_write_fails)
{
	char	 path[256];

	snprintf(path, sizeof(path), "%s/missing/dir/q.pid", tmpdir);
	cr_assert_eq(proc_pidfile_write(path), -1);
}

/*
 * A fake contiguous argv area, as the kernel lays it out. After the
 * title is set the area holds the title, and argv points at copies.
 */
Test(proc, title)
{
	static char	 area[] = "/usr/sbin/qrelayd\0-d\0-f\0/etc/qrelayd.conf";
	static char	*argv[5];	/* static: the copies stay reachable */
	char		 comm[17];

	argv[0] = area;
	argv[1] = area + 18;
	argv[2] = area + 21;
	argv[3] = area + 24;
	argv[4] = NULL;
	cr_assert_str_eq(argv[3], "/etc/qrelayd.conf");

	cr_assert_eq(setenv("QR_TEST_ENV", "kept", 1), 0);
	proc_title_init(4, argv);
	cr_assert_neq(argv[3], area + 24, "argv not moved to copies");
	cr_assert_neq(argv[0], area);
	proc_title_set("worker %d", 3);
	cr_assert_str_eq(area, "qrelayd: worker 3");
	cr_assert_eq(area[sizeof(area) - 2], '\0', "rest of area cleared");
	/* the copies survive the overwrite (getopt, -f kept for SIGHUP) */
	cr_assert_str_eq(argv[0], "/usr/sbin/qrelayd");
	cr_assert_str_eq(argv[1], "-d");
	cr_assert_str_eq(argv[3], "/etc/qrelayd.conf");
	cr_assert_str_eq(getenv("QR_TEST_ENV"), "kept", "environment kept");

	memset(comm, 0, sizeof(comm));
	cr_assert_eq(prctl(PR_GET_NAME, comm, 0, 0, 0), 0);
	cr_assert_str_eq(comm, "qrelayd-worker");

	/* a title longer than the area is cut, still NUL-terminated */
	proc_title_set("refresher with a rather long description of it");
	cr_assert_eq(strlen(area), sizeof(area) - 1);
	cr_assert_eq(strncmp(area, "qrelayd: refresher", 18), 0);
	memset(comm, 0, sizeof(comm));
	cr_assert_eq(prctl(PR_GET_NAME, comm, 0, 0, 0), 0);
	cr_assert_str_eq(comm, "qrelayd-refresh", "comm is 15 bytes");
}

Test(proc, drop_privileges_noop)
{
	uid_t	 uid = getuid();

	cr_assert_eq(proc_drop_privileges(""), 0);
	cr_assert_eq(proc_drop_privileges(NULL), 0);
	cr_assert_eq(getuid(), uid);
	cr_assert_eq(proc_chown_for("", "/nonexistent"), 0);
}

Test(proc, drop_privileges)
{
	struct passwd	*pw;
	pid_t		 pid;
	int		 st;

	if (geteuid() != 0)
		cr_skip_test("needs root");
	if ((pw = getpwnam("nobody")) == NULL)
		cr_skip_test("no user nobody");
	cr_assert_eq(proc_drop_privileges("no-such-user-qr"), -1);
	cr_assert_eq(geteuid(), 0);

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		gid_t	 groups[8];
		int	 ng;

		if (proc_drop_privileges("nobody") != 0)
			_exit(1);
		if (getuid() != pw->pw_uid || geteuid() != pw->pw_uid)
			_exit(2);
		if (getgid() != pw->pw_gid || getegid() != pw->pw_gid)
			_exit(3);
		if (setuid(0) != -1)
			_exit(4);
		if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
			_exit(5);
		ng = getgroups(8, groups);
		if (ng != 1 || groups[0] != pw->pw_gid)
			_exit(6);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "step %d failed", WEXITSTATUS(st));
}

Test(proc, chown_for)
{
	struct passwd	*pw;
	struct stat	 st;
	char		 path[256];

	if (geteuid() != 0)
		cr_skip_test("needs root");
	if ((pw = getpwnam("nobody")) == NULL)
		cr_skip_test("no user nobody");
	snprintf(path, sizeof(path), "%s/db", tmpdir);
	write_file(path, "x");
	cr_assert_eq(proc_chown_for("nobody", path), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_uid, pw->pw_uid);
	cr_assert_eq(st.st_gid, pw->pw_gid);
	snprintf(path, sizeof(path), "%s/db-wal", tmpdir);
	cr_assert_eq(proc_chown_for("nobody", path), 0, "missing is fine");
	cr_assert_eq(proc_chown_for("no-such-user-qr", path), -1);
}

/* The daemon is a grandchild in a new session, with stdio on /dev/null. */
Test(proc, daemonize)
{
	struct {
		pid_t	 pid, sid, ppid_child;
		int	 devnull;
	} r;
	int	 p[2], st;
	pid_t	 child;

	cr_assert_eq(pipe(p), 0);
	child = fork();
	cr_assert_neq(child, -1);
	if (child == 0) {
		struct stat	 a, b;

		close(p[0]);
		if (proc_daemonize() != 0)
			_exit(1);
		memset(&r, 0, sizeof(r));
		r.pid = getpid();
		r.sid = getsid(0);
		r.ppid_child = getppid();
		r.devnull = fstat(STDOUT_FILENO, &a) == 0 &&
		    stat("/dev/null", &b) == 0 && a.st_rdev == b.st_rdev &&
		    fstat(STDIN_FILENO, &a) == 0 && a.st_rdev == b.st_rdev;
		if (write(p[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "the starting process exits 0");
	cr_assert_eq(read(p[0], &r, sizeof(r)), (ssize_t)sizeof(r));
	close(p[0]);
	cr_assert_neq(r.pid, child);
	cr_assert_neq(r.sid, getsid(0), "not in a new session");
	cr_assert_neq(r.sid, r.pid, "a session leader could get a tty");
	cr_assert(r.devnull, "stdio not on /dev/null");
}
