/*
 * qrelayctl.c - the administration tool.
 *
 * It reads the same configuration file as qrelayd (and the same
 * environment), so it finds the same database and pid file. It works on
 * the SQLite database directly, as one more process with its own
 * connection, and talks to the running master only through signals:
 * SIGHUP (reload), SIGTERM (stop) and SIGUSR2 (reload keys, accounts
 * and settings from the database). It holds the secrets key, as the
 * refresher does, so it signs accounts in (device authorization) and
 * feeds, imports and exports them itself, blocking, without the
 * daemon. Output is one record a line, fit for scripts; lists get a
 * header line only when stdout is a terminal.
 */
#include <sys/types.h>
#include <sys/stat.h>

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

static const char ctl_proxy_forms[] = "a proxy is http://, https://, "
    "socks5:// or socks5h://[user:password@]host[:port]";

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
	    "  account login [-l label] [-p proxy] [-r region] "
	    "[-u start-url]\n"
	    "                  sign in through AWS device authorization "
	    "and add it\n"
	    "  account feed [-c] [file|-]  add accounts, one a line\n"
	    "  account import file|-  add the accounts of a JSON export\n"
	    "  account export [-s [-f]]  write the accounts as JSON\n"
	    "  account set ID [-c max-concurrency] [-l label] "
	    "[-m rpm] [-p proxy | -P]\n"
	    "  account list    list upstream accounts\n"
	    "  account rm ID   delete an upstream account\n"
	    "  account enable ID, account disable ID\n"
	    "  account refresh ID  renew its access token now and wait\n"
	    "  set [NAME VALUE]  show the settings, or change one "
	    "(poolStrategy ...)\n");
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

/* Keys, accounts and settings live in the master's shared table: ask
 * it to reload them, when it runs. Without a daemon there is nothing
 * to do: it reads the database at its start. */
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

/* A field of a tab-separated line: no tab, newline or terminal
 * escape may leak in. */
static void
ctl_fieldf(FILE *fp, const char *s)
{
	if (*s == '\0') {
		fputc('-', fp);
		return;
	}
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, fp);
}

static void
ctl_field(const char *s)
{
	ctl_fieldf(stdout, s);
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

/* Credits are kept x 1000. */
static const char *
ctl_credits(int64_t v, char out[32])
{
	snprintf(out, 32, "%lld.%03lld", (long long)(v / 1000),
	    (long long)(v % 1000));
	return out;
}

static int
ctl_account_print(const struct db_account *a, void *arg)
{
	char		 t[32], c1[32], c2[32], px[SHM_PROXY_MAX];
	const char	*state;
	int64_t		 until;

	state = shm_acct_state_name(db_account_state(a, now_wall(), &until));
	printf("%lld\t", (long long)a->a_id);
	ctl_field(a->a_type);
	fputc('\t', stdout);
	ctl_field(a->a_label);
	printf("\t%s\t%s\t%s\t", state, a->a_enabled ? "yes" : "no",
	    ctl_time(a->a_expires, t));
	ctl_field(a->a_last_error);
	fputc('\t', stdout);
	ctl_field(a->a_region);
	fputc('\t', stdout);
	/* a hint of the refresh token, never more */
	ctl_field(a->a_refresh_hint);
	/* the pool's columns come last: scripts that cut the first nine
	 * keep working */
	printf("\t%s\t", ctl_time(until, t));
	if (a->a_usage_checked == 0)
		fputc('-', stdout);
	else if (a->a_usage_limit == 0)
		printf("%s/-", ctl_credits(a->a_usage_used, c1));
	else
		printf("%s/%s", ctl_credits(a->a_usage_used, c1),
		    ctl_credits(a->a_usage_limit, c2));
	printf("\t%s\t", ctl_time(a->a_usage_reset, t));
	if (a->a_max_inflight == 0 && a->a_rpm == 0)
		fputc('-', stdout);
	else {
		if (a->a_max_inflight != 0)
			printf("%d/", a->a_max_inflight);
		else
			fputs("-/", stdout);
		if (a->a_rpm != 0)
			printf("%d", a->a_rpm);
		else
			fputc('-', stdout);
	}
	fputc('\t', stdout);
	db_proxy_mask(a->a_proxy, px, sizeof(px));
	ctl_field(px);
	/* the counters, as the daemon last wrote them (credits x 1e6) */
	printf("\t%lld\t%lld\t%lld\t%lld\t%.3f\n",
	    (long long)a->a_counters.ac_requests,
	    (long long)a->a_counters.ac_failures,
	    (long long)a->a_counters.ac_tokens_in,
	    (long long)a->a_counters.ac_tokens_out,
	    (double)a->a_counters.ac_credits / 1e6);
	return 0;
}

static int
ctl_account_list(const char *unused)
{
	if (isatty(STDOUT_FILENO))
		printf("ID\tTYPE\tLABEL\tSTATE\tENABLED\tEXPIRES\tLAST_ERROR"
		    "\tREGION\tREFRESH_TOKEN\tUNTIL\tUSAGE\tRESET\tCAPS"
		    "\tPROXY\n");
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
	struct db_account_patch	 ap;
	int64_t			 id = ctl_parse_id(arg);

	db_account_patch_init(&ap);
	ap.ap_enabled = enabled;
	return ctl_changed(db_account_update(ctl_db, id, &ap), "account", id);
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

/* ---- account set */

#define CTL_CAP_MAX	1000000	/* as db_account_update takes */

static int
ctl_parse_int(const char *s, int min, int max, const char *what)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		die("%s is a number from %d to %d", what, min, max);
	return (int)v;
}

static int
ctl_account_set(const char *unused)
{
	struct db_account_patch	 ap;
	int64_t			 id;
	int			 ch, n = 0;

	db_account_patch_init(&ap);
	optind = 0;
	while ((ch = getopt(ctl_argc, ctl_argv, "c:l:m:p:P")) != -1) {
		switch (ch) {
		case 'c':
			ap.ap_max_inflight = ctl_parse_int(optarg, 0,
			    CTL_CAP_MAX, "the concurrency cap (-c)");
			break;
		case 'l':
			ap.ap_label = optarg;
			break;
		case 'm':
			ap.ap_rpm = ctl_parse_int(optarg, 0, CTL_CAP_MAX,
			    "the requests per minute (-m)");
			break;
		case 'p':
		case 'P':
			if (ap.ap_proxy != NULL)
				usage();
			ap.ap_proxy = ch == 'p' ? optarg : "";
			break;
		default:
			usage();
		}
		n++;
	}
	if (optind + 1 != ctl_argc || n == 0)
		usage();
	id = ctl_parse_id(ctl_argv[optind]);
	if (ap.ap_label != NULL && !db_account_label_ok(ap.ap_label))
		die("a label is at most 127 bytes, no control characters");
	/* never echo the proxy back: it may hold a password */
	if (ap.ap_proxy != NULL && !db_account_proxy_ok(ap.ap_proxy))
		die("%s", ctl_proxy_forms);
	return ctl_changed(db_account_update(ctl_db, id, &ap), "account", id);
}

/* ---- account feed, import, export */

#define CTL_INPUT_MAX	(64 << 20)

static const char *const ctl_json_secrets[] = { "accessToken",
	"refreshToken", "clientSecret", NULL };

/* The whole of path ("-": stdin) in b, NUL-terminated. It holds
 * secrets: the caller zeroes it with ctl_input_free. */
static void
ctl_input_read(const char *path, struct buf *b)
{
	struct stat	 sb;
	ssize_t		 r;
	int		 fd = STDIN_FILENO;

	buf_init(b);
	if (strcmp(path, "-") != 0 &&
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		die("%s: %s", path, strerror(errno));
	/* a file's size up front: no realloc leaves a copy behind */
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    sb.st_size < CTL_INPUT_MAX &&
	    buf_reserve(b, (size_t)sb.st_size + 1) == -1)
		die("out of memory");
	for (;;) {
		if (buf_reserve(b, 1) == -1)
			die("out of memory");
		r = read(fd, b->b_data + b->b_len, b->b_cap - b->b_len - 1);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			die("%s: %s", path, strerror(errno));
		if (r == 0)
			break;
		if ((b->b_len += (size_t)r) > CTL_INPUT_MAX)
			die("%s: larger than %d bytes", path, CTL_INPUT_MAX);
	}
	b->b_data[b->b_len] = '\0';
	if (fd != STDIN_FILENO)
		close(fd);
}

static void
ctl_input_free(struct buf *b)
{
	if (b->b_data != NULL)
		explicit_bzero(b->b_data, b->b_cap);
	buf_free(b);
}

/* What became of a line of a feed: the names of the API's report. */
enum ctl_outcome { CO_ADD = 0, CO_ADDED, CO_DUPLICATE, CO_INVALID,
	CO_REFUSED, CO_FAILED };
static const char *const ctl_outcomes[] = { "pending", "added",
	"duplicate", "invalid", "refused", "failed" };

struct ctl_line {
	int			 cl_no;		/* from 1 */
	struct json_object	*cl_o;
	struct db_account_new	 cl_an;
	struct auth_tokens	 cl_at;		/* -c: the renewal */
	int			 cl_outcome;
	int64_t			 cl_id;		/* added, or duplicated */
	int			 cl_dup_line;	/* or: an earlier line's */
	char			 cl_why[192];
};

/* Is cl's refresh token in the database? */
static void
ctl_feed_dup(struct ctl_line *cl)
{
	int64_t		 id;

	if ((id = db_account_find_refresh(ctl_db,
	    cl->cl_an.an_refresh_token)) == -1)
		die("cannot read the accounts");
	if (id > 0) {
		cl->cl_outcome = CO_DUPLICATE;
		cl->cl_id = id;
	}
}

/* By refresh token, then by line: the first line of a token first. */
static int
ctl_line_cmp(const void *a, const void *b)
{
	const struct ctl_line	*x = *(const struct ctl_line *const *)a;
	const struct ctl_line	*y = *(const struct ctl_line *const *)b;
	int			 r;

	if ((r = strcmp(x->cl_an.an_refresh_token,
	    y->cl_an.an_refresh_token)) != 0)
		return r;
	return (x->cl_no > y->cl_no) - (x->cl_no < y->cl_no);
}

/*
 * Duplicates among the lines and against the database. Sorted, not
 * each line against all before it: a feed of 10,000 tokens that
 * share a long prefix would be 50 million comparisons.
 */
static void
ctl_feed_dups(struct ctl_line *lines, int n)
{
	struct ctl_line	**v, *first;
	int		 i, j, m = 0;

	if ((v = calloc((size_t)n + 1, sizeof(*v))) == NULL)
		die("out of memory");
	for (i = 0; i < n; i++)
		if (lines[i].cl_outcome == CO_ADD)
			v[m++] = &lines[i];
	qsort(v, (size_t)m, sizeof(*v), ctl_line_cmp);
	for (i = 0; i < m; i = j) {
		first = v[i];
		ctl_feed_dup(first);
		for (j = i + 1; j < m && strcmp(v[j]->cl_an.an_refresh_token,
		    first->cl_an.an_refresh_token) == 0; j++) {
			v[j]->cl_outcome = CO_DUPLICATE;
			if (first->cl_outcome == CO_DUPLICATE)
				v[j]->cl_id = first->cl_id;
			else
				v[j]->cl_dup_line = first->cl_no;
		}
	}
	free(v);
}

/* -c: renew the token once, as the refresher would, before it is
 * stored. A renewal may rotate the token: the new one is kept. */
static void
ctl_feed_check(struct ctl_line *cl)
{
	struct db_account_new	*an = &cl->cl_an;
	struct auth_tokens	*at = &cl->cl_at;
	int			 r;

	if (strcmp(an->an_type, "idc") == 0)
		r = oidc_refresh(&ctl_cf, an->an_region, an->an_proxy,
		    an->an_client_id, an->an_client_secret,
		    an->an_refresh_token, at);
	else
		r = kiro_refresh(&ctl_cf, an->an_region, an->an_proxy,
		    an->an_refresh_token, at);
	if (r != AUTH_OK) {
		cl->cl_outcome = r == AUTH_REVOKED ? CO_REFUSED : CO_FAILED;
		strlcpy_qr(cl->cl_why, at->at_error, sizeof(cl->cl_why));
		return;
	}
	an->an_access_token = at->at_access;
	an->an_expires = at->at_expires;
	if (at->at_refresh != NULL)
		an->an_refresh_token = at->at_refresh;
	if ((an->an_profile_arn == NULL || *an->an_profile_arn == '\0') &&
	    at->at_profile_arn[0] != '\0')
		an->an_profile_arn = at->at_profile_arn;
}

/*
 * Lines are parsed and looked up first, renewed (-c) outside any
 * transaction since that waits on the network, then added in one
 * transaction: a feed is stored whole or not at all.
 */
static int
ctl_account_feed(const char *unused)
{
	struct buf		 in;
	struct ctl_line		*lines, *cl;
	const char		*path = "-";
	char			*p, *next;
	int			 ch, check = 0, i, n = 0, no, nlines = 1;
	int			 counts[nitems(ctl_outcomes)];
	int64_t			 id;

	optind = 0;
	while ((ch = getopt(ctl_argc, ctl_argv, "c")) != -1) {
		switch (ch) {
		case 'c':
			check = 1;
			break;
		default:
			usage();
		}
	}
	if (optind < ctl_argc)
		path = ctl_argv[optind++];
	if (optind != ctl_argc)
		usage();
	if (secret_init(ctl_cf.cf_db_path, 1) == -1)
		die("no secrets key beside %s", ctl_cf.cf_db_path);
	ctl_input_read(path, &in);
	for (p = in.b_data; (p = strchr(p, '\n')) != NULL; p++)
		nlines++;
	if ((lines = calloc((size_t)nlines, sizeof(*lines))) == NULL)
		die("out of memory");

	for (p = in.b_data, no = 1; p != NULL; p = next, no++) {
		if ((next = strchr(p, '\n')) != NULL)
			*next++ = '\0';
		p[strcspn(p, "\r")] = '\0';
		p += strspn(p, " \t");
		if (*p == '\0' || *p == '#')
			continue;
		cl = &lines[n++];
		cl->cl_no = no;
		if (db_account_parse(p, &cl->cl_o, &cl->cl_an, cl->cl_why,
		    sizeof(cl->cl_why)) == -1) {
			cl->cl_outcome = CO_INVALID;
			continue;
		}
		if (cl->cl_an.an_region == NULL || *cl->cl_an.an_region == '\0')
			cl->cl_an.an_region = ctl_cf.cf_region;
	}
	ctl_feed_dups(lines, n);
	for (i = 0; check && i < n; i++)
		if (lines[i].cl_outcome == CO_ADD)
			ctl_feed_check(&lines[i]);

	if (db_begin(ctl_db, __func__) == -1)
		die("cannot write the database: %s", sqlite3_errmsg(ctl_db));
	for (i = 0; i < n; i++) {
		cl = &lines[i];
		if (cl->cl_outcome != CO_ADD)
			continue;
		/* the daemon may have added it since we looked */
		ctl_feed_dup(cl);
		if (cl->cl_outcome != CO_ADD)
			continue;
		if ((id = db_account_add(ctl_db, &cl->cl_an)) == -1) {
			/* an I/O error may have rolled it all back: then
			 * the next rows would be committed one by one */
			if (sqlite3_get_autocommit(ctl_db))
				die("cannot write the database; no account "
				    "was added");
			cl->cl_outcome = CO_FAILED;
			strlcpy_qr(cl->cl_why, "the database refused it",
			    sizeof(cl->cl_why));
		} else {
			cl->cl_outcome = CO_ADDED;
			cl->cl_id = id;
		}
	}
	if (db_commit(ctl_db, __func__) == -1)
		die("cannot write the database; no account was added");

	memset(counts, 0, sizeof(counts));
	for (i = 0; i < n; i++) {
		cl = &lines[i];
		counts[cl->cl_outcome]++;
		printf("line %d: %s", cl->cl_no, ctl_outcomes[cl->cl_outcome]);
		if (cl->cl_outcome == CO_ADDED)
			printf(" id %lld\n", (long long)cl->cl_id);
		else if (cl->cl_outcome == CO_DUPLICATE && cl->cl_dup_line)
			printf(" of line %d\n", cl->cl_dup_line);
		else if (cl->cl_outcome == CO_DUPLICATE)
			printf(" of id %lld\n", (long long)cl->cl_id);
		else {
			fputs(": ", stdout);
			ctl_field(cl->cl_why);
			fputc('\n', stdout);
		}
		if (cl->cl_o != NULL) {
			oidc_json_scrub(cl->cl_o, ctl_json_secrets);
			json_object_put(cl->cl_o);
		}
		oidc_tokens_free(&cl->cl_at);
	}
	free(lines);
	ctl_input_free(&in);
	fprintf(stderr, "qrelayctl: added %d, duplicates %d, not added %d\n",
	    counts[CO_ADDED], counts[CO_DUPLICATE],
	    n - counts[CO_ADDED] - counts[CO_DUPLICATE]);
	if (counts[CO_ADDED] > 0)
		ctl_notify_tables();
	return n == counts[CO_ADDED] + counts[CO_DUPLICATE] ? 0 : 1;
}

static int
ctl_account_import(const char *path)
{
	struct buf		 in;
	struct json_object	*rep = NULL, *e, *v;
	const char		*status;
	char			 err[256];
	size_t			 i, n;
	int			 r, dup, added = 0, bad = 0;

	if (secret_init(ctl_cf.cf_db_path, 1) == -1)
		die("no secrets key beside %s", ctl_cf.cf_db_path);
	ctl_input_read(path, &in);
	r = db_accounts_import(ctl_db, in.b_data, in.b_len,
	    ctl_cf.cf_max_accounts, &rep, err, sizeof(err));
	ctl_input_free(&in);
	if (r != 0)
		die("%s: %s; nothing was imported", path, err);
	n = json_object_array_length(rep);
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(rep, i);
		status = json_object_object_get_ex(e, "status", &v) ?
		    json_object_get_string(v) : "failed";
		printf("entry %d: ", json_object_object_get_ex(e, "index", &v) ?
		    json_object_get_int(v) : (int)i);
		ctl_field(status);
		dup = strcmp(status, "duplicate") == 0;
		if (strcmp(status, "added") == 0)
			added++;
		else if (!dup)
			bad++;
		if (json_object_object_get_ex(e, "id", &v))
			printf(dup ? " of id %lld" : " id %lld",
			    (long long)json_object_get_int64(v));
		else if (json_object_object_get_ex(e, "error", &v)) {
			fputs(": ", stdout);
			ctl_field(json_object_get_string(v));
		}
		fputc('\n', stdout);
	}
	json_object_put(rep);
	if (added > 0)
		ctl_notify_tables();
	return bad > 0;
}

static int
ctl_account_export(const char *unused)
{
	struct buf	 out;
	int		 ch, secrets = 0, force = 0;

	optind = 0;
	while ((ch = getopt(ctl_argc, ctl_argv, "fs")) != -1) {
		switch (ch) {
		case 'f':
			force = 1;
			break;
		case 's':
			secrets = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != ctl_argc)
		usage();
	if (secrets && !force && isatty(STDOUT_FILENO))
		die("refusing to write secrets to a terminal: redirect the "
		    "output, or add -f");
	if (secrets && secret_init(ctl_cf.cf_db_path, 0) == -1)
		die("no secrets key beside %s", ctl_cf.cf_db_path);
	buf_init(&out);
	if (db_accounts_export(ctl_db, secrets, &out) == -1)
		die("cannot export the accounts");
	fwrite(out.b_data, 1, out.b_len, stdout);
	if (out.b_len == 0 || out.b_data[out.b_len - 1] != '\n')
		fputc('\n', stdout);
	fflush(stdout);
	ctl_input_free(&out);
	return 0;
}

/* ---- account login: AWS device authorization */

static volatile sig_atomic_t ctl_stopped;

static void
ctl_on_stop(int sig)
{
	ctl_stopped = 1;
}

/* Sleep s seconds, or until ^C. */
static void
ctl_nap(int s)
{
	int64_t	 end = now_ms() + (int64_t)s * 1000;

	while (!ctl_stopped && now_ms() < end)
		usleep(100 * 1000);
}

static int
ctl_account_login(const char *unused)
{
	struct oidc_client	 oc;
	struct oidc_device	 od;
	struct auth_tokens	 at;
	struct db_account_new	 an;
	struct sigaction	 sa;
	const char		*region = ctl_cf.cf_region, *proxy = NULL;
	const char		*start_url = ctl_cf.cf_start_url, *label = NULL;
	const char		*why = NULL;
	char			 err[256];
	int			 ch, cached, interval, r, rv = 1;
	int64_t			 id;

	memset(&oc, 0, sizeof(oc));
	memset(&od, 0, sizeof(od));
	memset(&at, 0, sizeof(at));
	optind = 0;
	while ((ch = getopt(ctl_argc, ctl_argv, "l:p:r:u:")) != -1) {
		switch (ch) {
		case 'l': label = optarg; break;
		case 'p': proxy = optarg; break;
		case 'r': region = optarg; break;
		case 'u': start_url = optarg; break;
		default: usage();
		}
	}
	if (optind != ctl_argc)
		usage();
	if (label != NULL && !db_account_label_ok(label))
		die("a label is at most 127 bytes, no control characters");
	if (!db_account_region_ok(region))
		die("bad region: %s", region);
	if (proxy != NULL && !db_account_proxy_ok(proxy))
		die("%s", ctl_proxy_forms);
	if (secret_init(ctl_cf.cf_db_path, 1) == -1)
		die("no secrets key beside %s", ctl_cf.cf_db_path);
	/* no SA_RESTART: ^C ends a wait at once, and we clean up */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ctl_on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* The registration (about 90 days) is kept for the next login and
	 * the refresher's device jobs; one the upstream no longer knows
	 * is replaced, once. */
	for (cached = oidc_client_load(ctl_db, region, &oc) == 1;;
	    cached = 0) {
		if (!cached) {
			if (oidc_register(&ctl_cf, region, proxy, &oc, err,
			    sizeof(err)) != AUTH_OK)
				die("cannot register a client: %s", err);
			if (oidc_client_store(ctl_db, region, &oc) == -1)
				fprintf(stderr, "qrelayctl: cannot keep the "
				    "client registration\n");
		}
		if (oidc_device_start(&ctl_cf, region, proxy, &oc, start_url,
		    &od, err, sizeof(err)) == AUTH_OK)
			break;
		if (!cached)
			die("cannot start the device authorization: %s", err);
		oidc_client_free(&oc);
	}
	fputs("Open this address in a browser and sign in:\n\n    ", stderr);
	ctl_fieldf(stderr, od.od_uri_complete[0] ? od.od_uri_complete :
	    od.od_uri);
	fputs("\n\nThe page should show the code ", stderr);
	ctl_fieldf(stderr, od.od_user_code);
	fprintf(stderr, ".\nqrelayctl: waiting for the approval, at most %lld "
	    "s (^C stops)\n", (long long)(od.od_expires - now_wall()));

	for (interval = od.od_interval > 0 ? od.od_interval : 5;;) {
		ctl_nap(interval);
		if (ctl_stopped) {
			why = "interrupted";
			break;
		}
		if (now_wall() >= od.od_expires) {
			why = "the code expired before it was approved";
			break;
		}
		oidc_tokens_free(&at);
		r = oidc_device_poll(&ctl_cf, region, proxy, &oc, &od, &at);
		if (r == AUTH_OK || r == AUTH_PENDING)
			;
		else if (r == AUTH_SLOW_DOWN)
			interval += 5;
		else if (r == AUTH_EXPIRED)
			why = "the code expired";
		else if (r == AUTH_DENIED)
			why = "the sign-in was denied";
		else if (at.at_status == 0 || at.at_status >= 500)
			/* a hiccup must not lose a sign-in in progress */
			fprintf(stderr, "qrelayctl: %s; polling again\n",
			    at.at_error);
		else
			why = at.at_error[0] ? at.at_error : "refused";
		if (r == AUTH_OK || why != NULL)
			break;
	}
	if (why == NULL && at.at_refresh == NULL)
		why = "the answer holds no refresh token";
	if (why != NULL) {
		fprintf(stderr, "qrelayctl: no account added: ");
		ctl_fieldf(stderr, why);
		fputc('\n', stderr);
		goto done;
	}
	memset(&an, 0, sizeof(an));
	an.an_type = "idc";
	an.an_label = label;
	an.an_region = region;
	an.an_client_id = oc.oc_client_id;
	an.an_client_secret = oc.oc_client_secret;
	an.an_refresh_token = at.at_refresh;
	an.an_enabled = 1;
	an.an_proxy = proxy;
	an.an_profile_arn = at.at_profile_arn;
	an.an_access_token = at.at_access;
	an.an_expires = at.at_expires;
	if ((id = db_account_add(ctl_db, &an)) == -1) {
		fprintf(stderr, "qrelayctl: cannot add the account\n");
		goto done;
	}
	/* stdout holds the id alone, as for account add */
	printf("%lld\n", (long long)id);
	fprintf(stderr, "qrelayctl: account %lld added\n", (long long)id);
	ctl_notify_tables();
	rv = 0;
 done:
	oidc_tokens_free(&at);
	oidc_device_free(&od);
	oidc_client_free(&oc);
	return rv;
}

/* ---- settings */

/* The settings rows, as GET /v2/settings shows them. */
static int
ctl_settings_show(const char *unused)
{
	struct json_object	*o;

	if ((o = db_settings_json(ctl_db)) == NULL)
		die("cannot read the settings");
	json_object_object_foreach(o, name, v) {
		ctl_field(name);
		fputc('\t', stdout);
		ctl_field(json_object_get_string(v));
		fputc('\n', stdout);
	}
	json_object_put(o);
	return 0;
}

/*
 * VALUE is taken as JSON (30, true), else as a string (weighted), and
 * checked as PUT /v2/settings checks it. SIGUSR2, not SIGHUP: the
 * master reloads the settings with the tables, and a setting should
 * not also bring in a configuration file someone is still editing.
 */
static int
ctl_set(const char *unused)
{
	struct json_object	*v;
	char			 out[256];
	int			 r;

	if (ctl_argc != 3)
		usage();
	if ((v = json_tokener_parse(ctl_argv[2])) == NULL &&
	    (v = json_object_new_string(ctl_argv[2])) == NULL)
		die("out of memory");
	r = db_setting_check(ctl_argv[1], v, out, sizeof(out));
	json_object_put(v);
	if (r == 0)
		die("no setting named %s", ctl_argv[1]);
	if (r == -1)
		die("%s", out);
	if (db_setting_set(ctl_db, ctl_argv[1], out) == -1)
		die("cannot store the setting");
	ctl_notify_tables();
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
	{ "account",	"login", -1, 1, ctl_account_login },
	{ "account",	"feed", -1, 1, ctl_account_feed },
	{ "account",	"import", 1, 1, ctl_account_import },
	{ "account",	"export", -1, 1, ctl_account_export },
	{ "account",	"set", -1, 1, ctl_account_set },
	{ "set",	NULL,	0, 1, ctl_settings_show },
	{ "set",	NULL,	-1, 1, ctl_set },
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
