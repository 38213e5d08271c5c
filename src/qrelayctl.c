/*
 * qrelayctl.c - the administration tool.
 *
 * It reads the same configuration file as qrelayd (and the same
 * environment), so it finds the same database and pid file. It works on
 * the SQLite database directly, as one more process with its own
 * connection, and talks to the running master only through signals:
 * SIGHUP (reload), SIGTERM (stop) and SIGUSR2 (reload keys and accounts
 * from the database). Output is one record a line, fit for scripts;
 * lists get a header line only when stdout is a terminal.
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "qrelayd.h"

#define PW_MIN		8

static struct config	 ctl_cf;
static const char	*ctl_file;	/* NULL: built-in defaults */
static sqlite3		*ctl_db;

QR_ATTR_NORETURN static void
usage(void)
{
	fprintf(stderr,
	    "usage: qrelayctl [-f file] command\n"
	    "commands:\n"
	    "  status          is qrelayd running; keys, accounts, log rows\n"
	    "  reload          reread the configuration (SIGHUP)\n"
	    "  stop            stop qrelayd gracefully and wait for it\n"
	    "  passwd          set the admin password (terminal or stdin)\n"
	    "  key add NAME    create a client API key, printed once\n"
	    "  key list        list client API keys\n"
	    "  key rm ID       delete a client API key\n"
	    "  account list    list upstream accounts\n");
	exit(2);
}

QR_ATTR_PRINTF(1, 2) QR_ATTR_NORETURN static void
die(const char *fmt, ...)
{
	va_list	 ap;

	fputs("qrelayctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
ctl_open_db(void)
{
	if ((ctl_db = db_open(ctl_cf.cf_db_path)) == NULL)
		die("cannot open the database %s", ctl_cf.cf_db_path);
	if (db_migrate(ctl_db) == -1)
		die("cannot use the database %s", ctl_cf.cf_db_path);
}

/* The master's pid, or 0 when it does not run. */
static pid_t
ctl_pid(void)
{
	return proc_pidfile_read(ctl_cf.cf_pid_file);
}

static pid_t
ctl_pid_required(void)
{
	pid_t	 pid;

	if ((pid = ctl_pid()) == 0)
		die("qrelayd is not running (no live pid in %s)",
		    ctl_cf.cf_pid_file);
	return pid;
}

static void
ctl_signal(pid_t pid, int sig)
{
	if (kill(pid, sig) == -1)
		die("kill %d: %s", (int)pid, strerror(errno));
}

/* Keys and accounts live in the master's shared table: ask it to
 * reload them, when it runs. Without a daemon there is nothing to do. */
static void
ctl_notify_tables(void)
{
	pid_t	 pid;

	if ((pid = ctl_pid()) != 0 && kill(pid, SIGUSR2) == -1)
		fprintf(stderr, "qrelayctl: cannot tell qrelayd (pid %d): %s; "
		    "run qrelayctl reload\n", (int)pid, strerror(errno));
}

/* ISO 8601 UTC, "-" for never. */
static const char *
ctl_time(int64_t t, char out[32])
{
	return fmt_iso8601(t, out) ? out : "-";
}

/* A field of a tab-separated line: no tab or newline may leak in. */
static void
ctl_field(const char *s)
{
	if (*s == '\0') {
		fputc('-', stdout);
		return;
	}
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s,
		    stdout);
}

/* ---- status */

struct ctl_counts {
	int64_t		 cc_keys;
	int64_t		 cc_accounts;
	struct {
		char	 st_name[32];
		int64_t	 st_n;
	}		 cc_states[16];
	int		 cc_nstates;
};

static int
ctl_count_key(const struct db_key *k, void *arg)
{
	((struct ctl_counts *)arg)->cc_keys++;
	return 0;
}

static int
ctl_count_account(const struct db_account *a, void *arg)
{
	struct ctl_counts	*cc = arg;
	int			 i;

	cc->cc_accounts++;
	for (i = 0; i < cc->cc_nstates; i++)
		if (strcmp(cc->cc_states[i].st_name, a->a_state) == 0)
			break;
	if (i == cc->cc_nstates) {
		if (i == (int)nitems(cc->cc_states))
			return 0;	/* more states than we show */
		strlcpy_qr(cc->cc_states[i].st_name, a->a_state,
		    sizeof(cc->cc_states[i].st_name));
		cc->cc_nstates++;
	}
	cc->cc_states[i].st_n++;
	return 0;
}

static int
ctl_status(const char *unused)
{
	struct ctl_counts	 cc;
	pid_t			 pid = ctl_pid();
	int64_t			 logs;
	int			 i;

	memset(&cc, 0, sizeof(cc));
	if (db_key_list(ctl_db, ctl_count_key, &cc) != 0 ||
	    db_account_list(ctl_db, ctl_count_account, &cc) != 0 ||
	    (logs = db_logs_count(ctl_db)) == -1)
		die("cannot read the database");
	printf("running %s\n", pid != 0 ? "yes" : "no");
	if (pid != 0)
		printf("pid %d\n", (int)pid);
	printf("config %s\n", ctl_file != NULL ? ctl_file : "-");
	printf("database %s\n", ctl_cf.cf_db_path);
	printf("keys %lld\n", (long long)cc.cc_keys);
	printf("accounts %lld\n", (long long)cc.cc_accounts);
	for (i = 0; i < cc.cc_nstates; i++) {
		printf("accounts_");
		ctl_field(cc.cc_states[i].st_name);
		printf(" %lld\n", (long long)cc.cc_states[i].st_n);
	}
	printf("request_logs %lld\n", (long long)logs);
	/* like other status commands: 1 when the daemon is not running */
	return pid != 0 ? 0 : 1;
}

/* ---- reload, stop */

static int
ctl_reload(const char *unused)
{
	ctl_signal(ctl_pid_required(), SIGHUP);
	return 0;
}

static int
ctl_stop(const char *unused)
{
	pid_t	 pid = ctl_pid_required();
	int64_t	 deadline;
	int	 wait_s = ctl_cf.cf_shutdown_timeout + 5;

	ctl_signal(pid, SIGTERM);
	deadline = now_ms() + (int64_t)wait_s * 1000;
	while (now_ms() < deadline) {
		if (kill(pid, 0) == -1 && errno == ESRCH)
			return 0;
		usleep(100 * 1000);
	}
	die("qrelayd (pid %d) still running after %d seconds", (int)pid,
	    wait_s);
}

/* ---- passwd */

static struct termios	 ctl_tio;
static volatile sig_atomic_t ctl_tio_saved;

static void
ctl_tio_restore(int sig)
{
	if (ctl_tio_saved)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_tio);
	if (sig != 0)
		_exit(1);
}

/* One line from fd, byte by byte: no stdio buffer keeps a copy of the
 * password. 0, or -1 (EOF before anything, error, too long). */
static int
ctl_read_line(int fd, char *out, size_t outsz)
{
	size_t	 n = 0;
	ssize_t	 r;
	char	 c;

	for (;;) {
		if ((r = read(fd, &c, 1)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0 || c == '\n')
			break;
		if (n + 1 >= outsz)
			return -1;
		out[n++] = c;
	}
	if (r == 0 && n == 0)
		return -1;
	if (n > 0 && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	return 0;
}

static int
ctl_prompt(const char *prompt, char *out, size_t outsz)
{
	struct termios	 noecho;
	int		 r;

	fputs(prompt, stderr);
	fflush(stderr);
	noecho = ctl_tio;
	noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	noecho.c_lflag |= ICANON;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho) == -1)
		return -1;
	r = ctl_read_line(STDIN_FILENO, out, outsz);
	ctl_tio_restore(0);
	fputc('\n', stderr);
	return r;
}

static int
ctl_passwd(const char *unused)
{
	char			 pw[AUTH_PASSWORD_MAX + 2], again[sizeof(pw)];
	char			 hash[AUTH_HASH_MAX];
	struct sigaction	 sa;
	int			 rv = 1;

	if (isatty(STDIN_FILENO)) {
		if (tcgetattr(STDIN_FILENO, &ctl_tio) == -1)
			die("tcgetattr: %s", strerror(errno));
		/* ^C with echo off must not leave the terminal so */
		ctl_tio_saved = 1;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = ctl_tio_restore;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
		sigaction(SIGQUIT, &sa, NULL);
		if (ctl_prompt("New admin password: ", pw, sizeof(pw)) == -1 ||
		    ctl_prompt("Retype it: ", again, sizeof(again)) == -1) {
			fprintf(stderr, "qrelayctl: cannot read the password\n");
			goto done;
		}
		if (strcmp(pw, again) != 0) {
			fprintf(stderr, "qrelayctl: the passwords differ\n");
			goto done;
		}
	} else if (ctl_read_line(STDIN_FILENO, pw, sizeof(pw)) == -1) {
		fprintf(stderr, "qrelayctl: cannot read the password from "
		    "stdin (one line, at most %d bytes)\n", AUTH_PASSWORD_MAX);
		goto done;
	}
	if (strlen(pw) < PW_MIN) {
		fprintf(stderr, "qrelayctl: the password needs at least %d "
		    "characters\n", PW_MIN);
		goto done;
	}
	if (strlen(pw) > AUTH_PASSWORD_MAX) {
		fprintf(stderr, "qrelayctl: the password is longer than %d "
		    "bytes\n", AUTH_PASSWORD_MAX);
		goto done;
	}
	if (auth_password_hash(pw, hash, sizeof(hash)) == -1) {
		fprintf(stderr, "qrelayctl: cannot hash the password\n");
		goto done;
	}
	/* Workers read the hash at each login: nothing to signal. */
	if (db_admin_password_set(ctl_db, hash) == -1) {
		fprintf(stderr, "qrelayctl: cannot store the password\n");
		goto done;
	}
	fprintf(stderr, "qrelayctl: admin password changed; admin sessions "
	    "ended\n");
	rv = 0;
 done:
	explicit_bzero(pw, sizeof(pw));
	explicit_bzero(again, sizeof(again));
	explicit_bzero(hash, sizeof(hash));
	return rv;
}

/* ---- keys */

static int
ctl_key_add(const char *name)
{
	char		 key[128], prefix[SHM_KEY_PREFIX + 1];
	unsigned char	 hash[32];
	int64_t		 id;

	if (auth_key_generate(key, sizeof(key), hash, prefix) == -1)
		die("cannot generate a key");
	if ((id = db_key_add(ctl_db, name, hash, prefix)) == -1) {
		explicit_bzero(key, sizeof(key));
		die("cannot add the key (a name is 1 to 127 bytes, no "
		    "control characters)");
	}
	/* stdout holds the key alone: KEY=$(qrelayctl key add ci) */
	printf("%s\n", key);
	fflush(stdout);
	explicit_bzero(key, sizeof(key));
	fprintf(stderr, "qrelayctl: key %lld added; it is shown only this "
	    "once\n", (long long)id);
	ctl_notify_tables();
	return 0;
}

static int
ctl_key_print(const struct db_key *k, void *arg)
{
	char	 t[32];

	printf("%lld\t", (long long)k->k_id);
	ctl_field(k->k_name);
	printf("\t%s...\t", k->k_prefix);
	printf("%s\t", ctl_time(k->k_created, t));
	printf("%s\n", ctl_time(k->k_last_used, t));
	return 0;
}

static int
ctl_key_list(const char *unused)
{
	if (isatty(STDOUT_FILENO))
		printf("ID\tNAME\tPREFIX\tCREATED\tLAST_USED\n");
	if (db_key_list(ctl_db, ctl_key_print, NULL) != 0)
		die("cannot read the keys");
	return 0;
}

static int64_t
ctl_parse_id(const char *s)
{
	char		*end;
	long long	 id;

	errno = 0;
	id = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || id <= 0) {
		fprintf(stderr, "qrelayctl: bad id: %s\n", s);
		usage();
	}
	return id;
}

static int
ctl_key_rm(const char *arg)
{
	int64_t	 id = ctl_parse_id(arg);

	switch (db_key_delete(ctl_db, id)) {
	case 1:
		ctl_notify_tables();
		return 0;
	case 0:
		die("no key with id %lld", (long long)id);
	default:
		die("cannot delete the key");
	}
}

/* ---- accounts */

static int
ctl_account_print(const struct db_account *a, void *arg)
{
	char	 t[32];

	printf("%lld\t", (long long)a->a_id);
	ctl_field(a->a_type);
	fputc('\t', stdout);
	ctl_field(a->a_label);
	fputc('\t', stdout);
	ctl_field(a->a_state);
	printf("\t%s\t%s\t", a->a_enabled ? "yes" : "no",
	    ctl_time(a->a_expires, t));
	ctl_field(a->a_last_error);
	fputc('\n', stdout);
	return 0;
}

static int
ctl_account_list(const char *unused)
{
	if (isatty(STDOUT_FILENO))
		printf("ID\tTYPE\tLABEL\tSTATE\tENABLED\tEXPIRES\tLAST_ERROR\n");
	if (db_account_list(ctl_db, ctl_account_print, NULL) != 0)
		die("cannot read the accounts");
	return 0;
}

static const struct ctl_cmd {
	const char	*cm_word;
	const char	*cm_sub;	/* second word, or NULL */
	int		 cm_arg;	/* takes one more word */
	int		 cm_db;		/* opens the database */
	int		 (*cm_fn)(const char *);
} ctl_cmds[] = {
	{ "status",	NULL,	0, 1, ctl_status },
	{ "reload",	NULL,	0, 0, ctl_reload },
	{ "stop",	NULL,	0, 0, ctl_stop },
	{ "passwd",	NULL,	0, 1, ctl_passwd },
	{ "key",	"add",	1, 1, ctl_key_add },
	{ "key",	"list",	0, 1, ctl_key_list },
	{ "key",	"rm",	1, 1, ctl_key_rm },
	{ "account",	"list",	0, 1, ctl_account_list },
};

int
main(int argc, char *argv[])
{
	const struct ctl_cmd	*cm = NULL;
	char			 defpath[PATH_MAX], errbuf[512];
	size_t			 i;
	int			 ch, rv, nw;

	while ((ch = getopt(argc, argv, "f:")) != -1) {
		switch (ch) {
		case 'f':
			ctl_file = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	/* check the words before touching anything */
	for (i = 0; i < nitems(ctl_cmds) && argc > 0; i++) {
		nw = 1 + (ctl_cmds[i].cm_sub != NULL) + ctl_cmds[i].cm_arg;
		if (strcmp(argv[0], ctl_cmds[i].cm_word) == 0 && argc == nw &&
		    (ctl_cmds[i].cm_sub == NULL ||
		    strcmp(argv[1], ctl_cmds[i].cm_sub) == 0)) {
			cm = &ctl_cmds[i];
			break;
		}
	}
	if (cm == NULL)
		usage();

	/* db.c and the others report through log.c: stderr, no syslog */
	log_init(1, 0, "qrelayctl");
	if (ctl_file == NULL) {
		/* the default file is optional, as for qrelayd */
		snprintf(defpath, sizeof(defpath), "%s/qrelayd.conf",
		    QR_SYSCONFDIR);
		if (access(defpath, F_OK) == 0)
			ctl_file = defpath;
	}
	/* config_load applies PORT, DATA_DIR, ... as qrelayd does */
	if (config_load(&ctl_cf, ctl_file, errbuf, sizeof(errbuf)) == -1)
		die("%s", errbuf);
	if (cm->cm_db)
		ctl_open_db();
	rv = cm->cm_fn(cm->cm_arg ? argv[argc - 1] : NULL);
	db_close(ctl_db);
	if (fflush(stdout) == EOF || ferror(stdout))
		die("stdout: %s", strerror(errno));
	return rv;
}
