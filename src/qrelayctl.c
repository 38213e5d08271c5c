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
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include "qrelayd.h"

#define PW_MIN		8

static struct config	 ctl_cf;
static const char	*ctl_file;	/* NULL: built-in defaults */
static sqlite3		*ctl_db;
static int		 ctl_argc;	/* the words after a command taking */
static char		**ctl_argv;	/* options of its own */

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
	    "  account add idc|social [-d] [-l label] [-r region] "
	    "[-c client-id]\n"
	    "                  [-p profile-arn] [-j credential-file]\n"
	    "                  add an upstream account; the refresh token "
	    "and client\n"
	    "                  secret come from QRELAY_REFRESH_TOKEN and "
	    "QRELAY_CLIENT_SECRET,\n"
	    "                  the credential file, or stdin (one a line)\n"
	    "  account list    list upstream accounts\n"
	    "  account rm ID   delete an upstream account\n"
	    "  account enable ID, account disable ID\n"
	    "  account refresh ID  renew its access token now and wait\n");
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

/* Read a secret from the terminal with echo off. The first call saves
 * the terminal's state, and ^C with echo off must not leave it so. */
static int
ctl_prompt(const char *prompt, char *out, size_t outsz)
{
	struct termios		 noecho;
	struct sigaction	 sa;
	int			 r;

	if (!ctl_tio_saved) {
		if (tcgetattr(STDIN_FILENO, &ctl_tio) == -1)
			die("tcgetattr: %s", strerror(errno));
		ctl_tio_saved = 1;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = ctl_tio_restore;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
		sigaction(SIGQUIT, &sa, NULL);
	}
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
	int			 rv = 1;

	if (isatty(STDIN_FILENO)) {
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

/* The outcome r (1 changed, 0 no such row, -1) of a change to the
 * key or account id: tell the daemon, or die saying why not. */
static int
ctl_changed(int r, const char *what, int64_t id)
{
	switch (r) {
	case 1:
		ctl_notify_tables();
		return 0;
	case 0:
		die("no %s with id %lld", what, (long long)id);
	default:
		die("cannot change the %s", what);
	}
}

static int
ctl_key_rm(const char *arg)
{
	int64_t	 id = ctl_parse_id(arg);

	return ctl_changed(db_key_delete(ctl_db, id), "key", id);
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
	fputc('\t', stdout);
	ctl_field(a->a_region);
	fputc('\t', stdout);
	/* a hint of the refresh token, never more */
	ctl_field(a->a_refresh_hint);
	fputc('\n', stdout);
	return 0;
}

static int
ctl_account_list(const char *unused)
{
	if (isatty(STDOUT_FILENO))
		printf("ID\tTYPE\tLABEL\tSTATE\tENABLED\tEXPIRES\tLAST_ERROR"
		    "\tREGION\tREFRESH_TOKEN\n");
	if (db_account_list(ctl_db, ctl_account_print, NULL) != 0)
		die("cannot read the accounts");
	return 0;
}

/* A secret from the environment (then removed from it), or NULL. */
static char *
ctl_secret_env(const char *name)
{
	const char	*v = getenv(name);
	char		*s;

	if (v == NULL || *v == '\0')
		return NULL;
	if ((s = strdup(v)) == NULL)
		die("out of memory");
	explicit_bzero((char *)v, strlen(v));
	unsetenv(name);
	return s;
}

/* A secret as one line of stdin, prompted for without echo on a tty. */
static char *
ctl_secret_stdin(const char *what)
{
	char	 line[DB_ACCOUNT_SECRET_MAX + 2], prompt[64];
	char	*s;
	int	 r;

	if (isatty(STDIN_FILENO)) {
		snprintf(prompt, sizeof(prompt), "%s: ", what);
		r = ctl_prompt(prompt, line, sizeof(line));
	} else
		r = ctl_read_line(STDIN_FILENO, line, sizeof(line));
	if (r == -1 || line[0] == '\0') {
		explicit_bzero(line, sizeof(line));
		die("cannot read the %s from stdin (one line, at most %d "
		    "bytes)", what, DB_ACCOUNT_SECRET_MAX);
	}
	s = strdup(line);
	explicit_bzero(line, sizeof(line));
	if (s == NULL)
		die("out of memory");
	return s;
}

static struct json_object *
ctl_read_json(const char *path)
{
	struct json_object	*o;

	if ((o = json_object_from_file(path)) == NULL ||
	    !json_object_is_type(o, json_type_object))
		die("%s: not a JSON object", path);
	return o;
}

static char *
ctl_json_dup(struct json_object *o, const char *name)
{
	struct json_object	*v;
	char			*s;

	if (!json_object_object_get_ex(o, name, &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0)
		return NULL;
	if ((s = strdup(json_object_get_string(v))) == NULL)
		die("out of memory");
	return s;
}

/*
 * The Kiro IDE's credential file (kiro-auth-token.json): refreshToken,
 * authMethod ("social", or "IdC"/"builder-id"), profileArn, region and,
 * for IdC, clientId/clientSecret there or in the sibling file named by
 * clientIdHash.
 */
struct ctl_cred {
	char	*cr_type, *cr_refresh, *cr_client_id, *cr_client_secret;
	char	*cr_profile_arn, *cr_region;
};

static void
ctl_cred_free(struct ctl_cred *cr)
{
	secret_free(cr->cr_refresh, 0);
	secret_free(cr->cr_client_secret, 0);
	free(cr->cr_type);
	free(cr->cr_client_id);
	free(cr->cr_profile_arn);
	free(cr->cr_region);
	memset(cr, 0, sizeof(*cr));
}

static void
ctl_cred_read(const char *path, struct ctl_cred *cr)
{
	static const char *const secrets[] = { "accessToken", "refreshToken",
		"clientSecret", NULL };
	struct json_object	*o, *o2;
	char			*method, *hash, sib[PATH_MAX], dir[PATH_MAX];
	char			*slash;

	o = ctl_read_json(path);
	cr->cr_refresh = ctl_json_dup(o, "refreshToken");
	cr->cr_profile_arn = ctl_json_dup(o, "profileArn");
	cr->cr_region = ctl_json_dup(o, "region");
	cr->cr_client_id = ctl_json_dup(o, "clientId");
	cr->cr_client_secret = ctl_json_dup(o, "clientSecret");
	method = ctl_json_dup(o, "authMethod");
	hash = ctl_json_dup(o, "clientIdHash");
	oidc_json_scrub(o, secrets);
	json_object_put(o);
	if (method != NULL && strcasecmp(method, "social") != 0)
		cr->cr_type = strdup("idc");
	else if (method != NULL)
		cr->cr_type = strdup("social");
	if (hash != NULL && cr->cr_client_secret == NULL) {
		if (strchr(hash, '/') != NULL || hash[0] == '.')
			die("%s: bad clientIdHash", path);
		strlcpy_qr(dir, path, sizeof(dir));
		if ((slash = strrchr(dir, '/')) != NULL)
			*slash = '\0';
		else
			strlcpy_qr(dir, ".", sizeof(dir));
		if ((size_t)snprintf(sib, sizeof(sib), "%s/%s.json", dir,
		    hash) >= sizeof(sib))
			die("%s: path too long", path);
		o2 = ctl_read_json(sib);
		free(cr->cr_client_id);
		cr->cr_client_id = ctl_json_dup(o2, "clientId");
		cr->cr_client_secret = ctl_json_dup(o2, "clientSecret");
		oidc_json_scrub(o2, secrets);
		json_object_put(o2);
	}
	free(method);
	free(hash);
	if (cr->cr_refresh == NULL)
		die("%s: no refreshToken", path);
}

static int
ctl_account_add(const char *unused)
{
	struct db_account_new	 an;
	struct ctl_cred		 cr;
	const char		*cred = NULL;
	int64_t			 id;
	int			 ch, idc;

	memset(&an, 0, sizeof(an));
	memset(&cr, 0, sizeof(cr));
	an.an_enabled = 1;
	optind = 0;	/* glibc: start over, from ctl_argv[1] */
	while ((ch = getopt(ctl_argc, ctl_argv, "c:dj:l:p:r:")) != -1) {
		switch (ch) {
		case 'c': an.an_client_id = optarg; break;
		case 'd': an.an_enabled = 0; break;
		case 'j': cred = optarg; break;
		case 'l': an.an_label = optarg; break;
		case 'p': an.an_profile_arn = optarg; break;
		case 'r': an.an_region = optarg; break;
		default: usage();
		}
	}
	if (cred != NULL)
		ctl_cred_read(cred, &cr);
	if (optind < ctl_argc)
		an.an_type = ctl_argv[optind++];
	else if (cr.cr_type != NULL)
		an.an_type = cr.cr_type;
	if (optind != ctl_argc || an.an_type == NULL)
		usage();
	if (strcmp(an.an_type, "idc") != 0 && strcmp(an.an_type, "social") != 0)
		die("the type is idc or social, not %s", an.an_type);
	idc = strcmp(an.an_type, "idc") == 0;
	if (an.an_client_id == NULL)
		an.an_client_id = cr.cr_client_id;
	if (an.an_profile_arn == NULL)
		an.an_profile_arn = cr.cr_profile_arn;
	if (an.an_region == NULL)
		an.an_region = cr.cr_region ? cr.cr_region : ctl_cf.cf_region;
	if (idc && (an.an_client_id == NULL || *an.an_client_id == '\0'))
		die("an idc account needs a client id (-c)");
	if (!idc && an.an_client_id != NULL)
		die("a social account takes no client id");
	if (an.an_label != NULL && !db_account_label_ok(an.an_label))
		die("a label is at most 127 bytes, no control characters");
	if (!db_account_region_ok(an.an_region))
		die("bad region: %s", an.an_region);
	if (secret_init(ctl_cf.cf_db_path, 1) == -1)
		die("no secrets key beside %s", ctl_cf.cf_db_path);

	/* secrets: the credential file, the environment, or stdin; never
	 * the command line, where ps shows them to every user */
	if ((an.an_refresh_token = cr.cr_refresh) == NULL &&
	    (an.an_refresh_token = cr.cr_refresh =
	    ctl_secret_env("QRELAY_REFRESH_TOKEN")) == NULL)
		an.an_refresh_token = cr.cr_refresh =
		    ctl_secret_stdin("refresh token");
	if (idc && (an.an_client_secret = cr.cr_client_secret) == NULL &&
	    (an.an_client_secret = cr.cr_client_secret =
	    ctl_secret_env("QRELAY_CLIENT_SECRET")) == NULL)
		an.an_client_secret = cr.cr_client_secret =
		    ctl_secret_stdin("client secret");
	if (!idc)
		an.an_client_secret = NULL;
	if (strlen(an.an_refresh_token) > DB_ACCOUNT_SECRET_MAX ||
	    (an.an_client_secret &&
	    strlen(an.an_client_secret) > DB_ACCOUNT_SECRET_MAX))
		die("a secret is longer than %d bytes", DB_ACCOUNT_SECRET_MAX);
	id = db_account_add(ctl_db, &an);
	ctl_cred_free(&cr);
	if (id == -1)
		die("cannot add the account");
	/* stdout holds the id alone: ID=$(qrelayctl account add ...) */
	printf("%lld\n", (long long)id);
	fprintf(stderr, "qrelayctl: account %lld added\n", (long long)id);
	ctl_notify_tables();
	return 0;
}

static int
ctl_account_rm(const char *arg)
{
	int64_t	 id = ctl_parse_id(arg);

	return ctl_changed(db_account_delete(ctl_db, id), "account", id);
}

static int
ctl_account_set_enabled(const char *arg, int enabled)
{
	int64_t	 id = ctl_parse_id(arg);

	return ctl_changed(db_account_update(ctl_db, id, enabled, NULL),
	    "account", id);
}

static int
ctl_account_enable(const char *arg)
{
	return ctl_account_set_enabled(arg, 1);
}

static int
ctl_account_disable(const char *arg)
{
	return ctl_account_set_enabled(arg, 0);
}

/*
 * The refresher renews; qrelayctl only asks (a flag in the row, then
 * SIGUSR2 to the master, which loads the flag into the shared table and
 * wakes the refresher) and waits for the flag to be answered.
 */
static int
ctl_account_refresh(const char *arg)
{
	struct db_account	 a;
	int64_t			 id = ctl_parse_id(arg), deadline;
	int			 wait_s, r;
	char			 t[32];

	switch (db_account_request_refresh(ctl_db, id)) {
	case 1:
		break;
	case 0:
		die("no account with id %lld", (long long)id);
	default:
		die("cannot change the account");
	}
	if (ctl_pid() == 0) {
		fprintf(stderr, "qrelayctl: qrelayd is not running; account "
		    "%lld will be renewed when it starts\n", (long long)id);
		return 0;
	}
	ctl_notify_tables();
	wait_s = ctl_cf.cf_connect_timeout + ctl_cf.cf_first_byte_timeout + 10;
	deadline = now_ms() + (int64_t)wait_s * 1000;
	for (;;) {
		if ((r = db_account_get(ctl_db, id, &a)) != 1)
			die("account %lld is gone", (long long)id);
		if (!a.a_refresh_requested)
			break;
		if (now_ms() > deadline)
			die("account %lld: no answer from the refresher within "
			    "%d seconds", (long long)id, wait_s);
		usleep(100 * 1000);
	}
	if (a.a_last_error[0] != '\0') {
		fprintf(stderr, "qrelayctl: account %lld: ", (long long)id);
		fflush(stderr);
		ctl_field(a.a_last_error);	/* stdout: scripts see it */
		fputc('\n', stdout);
		return 1;
	}
	printf("%lld\t%s\n", (long long)id, ctl_time(a.a_expires, t));
	return 0;
}

static const struct ctl_cmd {
	const char	*cm_word;
	const char	*cm_sub;	/* second word, or NULL */
	int		 cm_arg;	/* takes one more word; -1: any */
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
	{ "account",	"add",	-1, 1, ctl_account_add },
	{ "account",	"list",	0, 1, ctl_account_list },
	{ "account",	"rm",	1, 1, ctl_account_rm },
	{ "account",	"enable", 1, 1, ctl_account_enable },
	{ "account",	"disable", 1, 1, ctl_account_disable },
	{ "account",	"refresh", 1, 1, ctl_account_refresh },
};

int
main(int argc, char *argv[])
{
	const struct ctl_cmd	*cm = NULL;
	char			 defpath[PATH_MAX], errbuf[512];
	size_t			 i;
	int			 ch, rv, nw;

	/* "+": stop at the command word; a command may have options */
	while ((ch = getopt(argc, argv, "+f:")) != -1) {
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
		nw = 1 + (ctl_cmds[i].cm_sub != NULL) +
		    (ctl_cmds[i].cm_arg > 0 ? ctl_cmds[i].cm_arg : 0);
		if (strcmp(argv[0], ctl_cmds[i].cm_word) == 0 &&
		    (argc == nw || (ctl_cmds[i].cm_arg == -1 && argc > nw)) &&
		    (ctl_cmds[i].cm_sub == NULL ||
		    strcmp(argv[1], ctl_cmds[i].cm_sub) == 0)) {
			cm = &ctl_cmds[i];
			/* getopt again from the sub-command on */
			ctl_argc = argc - nw + 1;
			ctl_argv = argv + nw - 1;
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
	rv = cm->cm_fn(cm->cm_arg > 0 ? argv[argc - 1] : NULL);
	db_close(ctl_db);
	if (fflush(stdout) == EOF || ferror(stdout))
		die("stdout: %s", strerror(errno));
	return rv;
}
