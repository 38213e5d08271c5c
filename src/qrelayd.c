/*
 * qrelayd.c - main, options and the master process.
 *
 * The master reads the configuration, prepares everything that must exist
 * before fork (the database schema, the shared table, the listeners, the
 * log pipe), drops privileges and then only supervises: it forks the
 * workers, the refresher and the logger, restarts any that dies (with a
 * doubling backoff), and acts on signals. It never touches a client.
 *
 * Signals are blocked in the master and taken synchronously with
 * sigtimedwait(2), so there is no handler state to get wrong; children
 * get the default mask back and install their own handlers.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

struct child {
	pid_t		 ch_pid;	/* 0: slot free */
	int		 ch_role;
	uint32_t	 ch_gen;
	int		 ch_lifeline;	/* master's write end */
	int64_t		 ch_started;	/* ms */
	int		 ch_stopping;	/* told to stop: do not respawn */
	int		 ch_backoff;	/* seconds before the next respawn */
	int64_t		 ch_respawn_at;	/* ms; 0 = none pending */
};

static struct child	 children[QR_MAX_PROCS];	/* [0] is the master */
static struct config	*cf;			/* the running configuration */
static struct shm	 shm;
static uint32_t		 generation = 1;
static int		 log_pipe[2] = { -1, -1 };
static int		 foreground;
static const char	*role_names[] = { "none", "master", "worker",
			    "refresher", "logger" };

static void		 usage(void) QR_ATTR_NORETURN;
static void		 open_browser(void);
static int		 listeners_open(struct config *, struct config *);
static void		 listeners_close_unused(struct config *, struct config *);
static int		 spawn(int slot);
static int		 slot_alloc(int role);
static void		 start_generation(void);
static void		 stop_children(uint32_t gen_below, int sig, int roles);
static void		 reap(int stopping);
static int		 master_reload(void);
static void		 master_reload_tables(void);
static int		 prepare_storage(struct config *, int print_password);
static void		 master_shutdown(int fast);

/*
 * In the foreground on a desktop, open the console the way the system we
 * re-create does; NO_BROWSER (or no display) says not to.
 */
static void
open_browser(void)
{
	char	 url[128];
	sigset_t none;

	if (cf->cf_no_browser || cf->cf_nlisten == 0 ||
	    (getenv("DISPLAY") == NULL && getenv("WAYLAND_DISPLAY") == NULL))
		return;
	snprintf(url, sizeof(url), "http://%s/", cf->cf_listen[0].la_text);
	switch (fork()) {
	case -1:
		log_warn("open browser");
		return;
	case 0:
		sigemptyset(&none);	/* the browser gets a clean slate */
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		execlp("xdg-open", "xdg-open", url, (char *)NULL);
		_exit(127);
	}
	/* reaped with the other children; not in the table, so ignored */
}

static void
usage(void)
{
	fprintf(stderr, "usage: qrelayd [-dnv] [-f file]\n");
	exit(1);
}

int
main(int argc, char *argv[])
{
	const char	*file = NULL;
	char		 errbuf[512], defpath[PATH_MAX];
	int		 ch, check = 0, verbose = 0, sig, i;
	sigset_t	 set;
	siginfo_t	 info;
	struct timespec	 ts;
	int64_t		 next, now;

	proc_title_init(argc, argv);
	while ((ch = getopt(argc, argv, "df:nv")) != -1) {
		switch (ch) {
		case 'd': foreground = 1; break;
		case 'f': file = optarg; break;
		case 'n': check = 1; break;
		case 'v': verbose++; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (file == NULL) {
		/* The default file is optional: every key has a default. */
		snprintf(defpath, sizeof(defpath), "%s/qrelayd.conf",
		    QR_SYSCONFDIR);
		if (access(defpath, F_OK) == 0)
			file = defpath;
	}

	if ((cf = calloc(1, sizeof(*cf))) == NULL) {
		perror("qrelayd: calloc");
		exit(1);
	}
	if (config_load(cf, file, errbuf, sizeof(errbuf)) == -1) {
		fprintf(stderr, "qrelayd: %s\n", errbuf);
		exit(1);
	}
	if (check) {
		fprintf(stderr, "qrelayd: configuration %s is valid\n",
		    file ? file : "(built-in defaults)");
		exit(0);
	}

	log_init(foreground, verbose, "master");
	if (cf->cf_log_file[0] && log_open_file(cf->cf_log_file) == -1)
		fatal("%s", cf->cf_log_file);
	if (proc_pidfile_read(cf->cf_pid_file) > 0) {
		log_warnx("already running (pid file %s)", cf->cf_pid_file);
		exit(1);
	}
	if (prepare_storage(cf, 1) == -1)
		exit(1);
	if (listeners_open(cf, NULL) == -1)
		exit(1);
	if (!foreground && proc_daemonize() == -1)
		fatal("daemonize");

	if (shm_create(&shm, (uint32_t)cf->cf_max_accounts,
	    (uint32_t)cf->cf_max_keys) == -1)
		fatal("shared table");
	master_reload_tables();
	/* once, here: the workers share the tables copy-on-write */
	if (tokens_init() == -1)
		fatalx("cannot load the tokenizer's vocabulary");

	/* Both ends stay open here so a restarted logger loses nothing. */
	if (pipe2(log_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
		fatal("pipe");
	/* ~30 ms of records at 50k requests/s fit in 1 MB, the largest an
	 * unprivileged process may ask for; root may have more */
	if (fcntl(log_pipe[1], F_SETPIPE_SZ, 8 << 20) == -1)
		fcntl(log_pipe[1], F_SETPIPE_SZ, 1 << 20);

	if (proc_drop_privileges(cf->cf_user) == -1)
		fatalx("cannot drop privileges to user %s", cf->cf_user);
	if (proc_pidfile_write(cf->cf_pid_file) == -1)
		log_warn("pid file %s", cf->cf_pid_file);

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	children[0].ch_pid = getpid();
	children[0].ch_role = ROLE_MASTER;
	atomic_store(&shm.shm_hdr->sh_master_pid, (int32_t)getpid());
	shm.shm_procs[0].sp_pid = getpid();
	shm.shm_procs[0].sp_role = ROLE_MASTER;
	shm.shm_procs[0].sp_started = now_wall();
	shm.shm_procs[0].sp_gen = generation;
	shm_proc_set_self(0);
	proc_title_set("master");

	start_generation();
	for (i = 0; i < cf->cf_nlisten; i++)
		log_info("ready: listening on %s (%d workers), console at "
		    "http://%s/", cf->cf_listen[i].la_text, cf->cf_workers,
		    cf->cf_listen[i].la_text);
	if (foreground)
		open_browser();

	for (;;) {
		/* Sleep until a signal or the next pending respawn. */
		now = now_ms();
		next = now + 1000;
		for (i = 1; i < QR_MAX_PROCS; i++)
			if (children[i].ch_respawn_at &&
			    children[i].ch_respawn_at < next)
				next = children[i].ch_respawn_at;
		ts.tv_sec = (next - now) / 1000;
		ts.tv_nsec = ((next - now) % 1000) * 1000000;
		if (next < now)
			ts.tv_sec = ts.tv_nsec = 0;
		sig = sigtimedwait(&set, &info, &ts);
		switch (sig) {
		case SIGCHLD:
			reap(0);
			break;
		case SIGHUP:
			master_reload();
			break;
		case SIGTERM:
			master_shutdown(0);
			break;
		case SIGINT:
		case SIGQUIT:
			master_shutdown(1);
			break;
		case SIGUSR1:
			log_info("reopening the log file");
			log_reopen();
			for (i = 1; i < QR_MAX_PROCS; i++)
				if (children[i].ch_pid > 0)
					kill(children[i].ch_pid, SIGUSR1);
			break;
		case SIGUSR2:
			master_reload_tables();
			break;
		}
		now = now_ms();
		for (i = 1; i < QR_MAX_PROCS; i++) {
			if (children[i].ch_respawn_at == 0 ||
			    children[i].ch_respawn_at > now)
				continue;
			children[i].ch_respawn_at = 0;
			spawn(i);
		}
	}
}

/*
 * The database is created and migrated by the master, before any child
 * opens it; the data directory is handed to the unprivileged user.
 */
static int
prepare_storage(struct config *c, int print_password)
{
	char	 dir[PATH_MAX];
	sqlite3	*db;
	int	 rv = -1;

	strlcpy_qr(dir, c->cf_db_path, sizeof(dir));
	if (mkdir_p(dirname(dir), 0700) == -1) {
		log_warn("mkdir %s", dir);
		return -1;
	}
	proc_chown_for(c->cf_user, dir);
	strlcpy_qr(dir, c->cf_pid_file, sizeof(dir));
	if (mkdir_p(dirname(dir), 0700) == -1) {
		log_warn("mkdir %s", dir);
		return -1;
	}
	proc_chown_for(c->cf_user, dir);
	if ((db = db_open(c->cf_db_path)) == NULL)
		return -1;
	if (db_migrate(db) == -1 ||
	    db_ensure_admin_password(db, print_password) == -1)
		goto done;
	/* the secrets key is read before privileges go; children
	 * inherit it in memory and never open the file (workers keep
	 * only its public half, the logger nothing) */
	if (secret_init(c->cf_db_path, 1) == -1)
		goto done;
	/* accounts from before refresh tokens were hashed: duplicates of
	 * them are found from now on */
	if (db_accounts_hash_backfill(db) == -1)
		log_warnx("could not hash the refresh tokens of old accounts");
	rv = 0;
 done:
	db_close(db);
	if (rv == 0) {
		char	 p[PATH_MAX + 8];

		if (secret_key_path(c->cf_db_path, p, sizeof(p)) == 0)
			proc_chown_for(c->cf_user, p);

		proc_chown_for(c->cf_user, c->cf_db_path);
		snprintf(p, sizeof(p), "%s-wal", c->cf_db_path);
		proc_chown_for(c->cf_user, p);
		snprintf(p, sizeof(p), "%s-shm", c->cf_db_path);
		proc_chown_for(c->cf_user, p);
	}
	return rv;
}

/*
 * Keys, accounts and the pool settings are rebuilt from SQLite, the
 * durable truth: at start, before the first fork, and on SIGUSR2
 * (qrelayctl changed the database) and SIGHUP. The refresher is woken
 * to renew what the reload brought in (new accounts, qrelayctl account
 * refresh).
 */
static void
master_reload_tables(void)
{
	sqlite3	*db;

	if ((db = db_open(cf->cf_db_path)) == NULL) {
		log_warnx("reload tables: cannot open %s", cf->cf_db_path);
		return;
	}
	if (db_keys_load_shm(db, &shm) == -1)
		log_warnx("reload tables: keys not reloaded");
	else
		log_info("client keys reloaded from the database");
	if (db_accounts_load_shm(db, &shm) == -1)
		log_warnx("reload tables: accounts not fully reloaded");
	else
		log_info("accounts reloaded from the database");
	if (db_settings_load_shm(db, &shm) == -1)
		log_warnx("reload tables: settings not reloaded");
	db_close(db);
	pool_weights_build(&shm);
	pool_wake_refresher(&shm);
}

/*
 * Bind the listeners of ncf. Sockets whose address the old configuration
 * already had are moved over instead of bound again, so a reload never
 * refuses a connection.
 */
static int
listeners_open(struct config *ncf, struct config *ocf)
{
	struct listen_addr	*la;
	int			 i, j, fd, on = 1;

	for (i = 0; i < ncf->cf_nlisten; i++) {
		la = &ncf->cf_listen[i];
		la->la_fd = -1;
		for (j = 0; ocf && j < ocf->cf_nlisten; j++) {
			if (ocf->cf_listen[j].la_fd != -1 &&
			    config_same_listen(la, &ocf->cf_listen[j])) {
				la->la_fd = ocf->cf_listen[j].la_fd;
				break;
			}
		}
		if (la->la_fd != -1)
			continue;
		fd = socket(la->la_ss.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			log_warn("socket %s", la->la_text);
			goto fail;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (la->la_ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on,
			    sizeof(on));
		if (bind(fd, (struct sockaddr *)&la->la_ss, la->la_sslen) == -1 ||
		    listen(fd, 4096) == -1) {
			log_warn("listen %s", la->la_text);
			close(fd);
			goto fail;
		}
		la->la_fd = fd;
	}
	return 0;
 fail:
	/* close only what this call bound */
	for (i = 0; i < ncf->cf_nlisten; i++) {
		la = &ncf->cf_listen[i];
		if (la->la_fd == -1)
			continue;
		for (j = 0; ocf && j < ocf->cf_nlisten; j++)
			if (ocf->cf_listen[j].la_fd == la->la_fd)
				break;
		if (!ocf || j == ocf->cf_nlisten)
			close(la->la_fd);
		la->la_fd = -1;
	}
	return -1;
}

/* After a reload: close the old sockets the new configuration dropped. */
static void
listeners_close_unused(struct config *ncf, struct config *ocf)
{
	int	 i, j;

	for (j = 0; j < ocf->cf_nlisten; j++) {
		for (i = 0; i < ncf->cf_nlisten; i++)
			if (ncf->cf_listen[i].la_fd == ocf->cf_listen[j].la_fd)
				break;
		if (i == ncf->cf_nlisten && ocf->cf_listen[j].la_fd != -1)
			close(ocf->cf_listen[j].la_fd);
	}
}

static int
slot_alloc(int role)
{
	int	 i;

	for (i = 1; i < QR_MAX_PROCS; i++) {
		if (children[i].ch_pid == 0 && children[i].ch_respawn_at == 0) {
			memset(&children[i], 0, sizeof(children[i]));
			children[i].ch_role = role;
			children[i].ch_gen = generation;
			children[i].ch_lifeline = -1;
			/* a new process, not a restart of the last one here */
			atomic_store(&shm.shm_procs[i].sp_restarts, 0);
			return i;
		}
	}
	log_warnx("process table full");
	return -1;
}

static void
start_generation(void)
{
	int	 i, s;

	for (i = 0; i < cf->cf_workers; i++)
		if ((s = slot_alloc(ROLE_WORKER)) != -1)
			spawn(s);
	if ((s = slot_alloc(ROLE_LOGGER)) != -1)
		spawn(s);
	if ((s = slot_alloc(ROLE_REFRESHER)) != -1)
		spawn(s);
}

static int
spawn(int slot)
{
	struct child	*ch = &children[slot];
	struct shm_proc	*sp = &shm.shm_procs[slot];
	int		 lp[2], i;
	uint32_t	 restarts;
	pid_t		 pid;

	if (pipe2(lp, O_CLOEXEC) == -1) {
		log_warn("spawn %s: pipe", role_names[ch->ch_role]);
		ch->ch_respawn_at = now_ms() + 1000;
		return -1;
	}
	switch ((pid = fork())) {
	case -1:
		log_warn("spawn %s: fork", role_names[ch->ch_role]);
		close(lp[0]);
		close(lp[1]);
		ch->ch_respawn_at = now_ms() + 1000;
		return -1;
	case 0:
		break;
	default:
		close(lp[0]);
		ch->ch_pid = pid;
		ch->ch_lifeline = lp[1];
		ch->ch_started = now_ms();
		ch->ch_stopping = 0;
		atomic_store(&sp->sp_pid, (int32_t)pid);
		return 0;
	}

	/* child: only its own lifeline may stay open */
	close(lp[1]);
	for (i = 1; i < QR_MAX_PROCS; i++)
		if (i != slot && children[i].ch_lifeline != -1 &&
		    children[i].ch_pid != 0)
			close(children[i].ch_lifeline);
	/* a respawn keeps the count reap() just raised */
	restarts = atomic_load(&sp->sp_restarts);
	memset(sp, 0, sizeof(*sp));
	atomic_store(&sp->sp_restarts, restarts);
	atomic_store(&sp->sp_pid, (int32_t)getpid());
	sp->sp_role = ch->ch_role;
	sp->sp_gen = ch->ch_gen;
	sp->sp_started = now_wall();
	shm_proc_set_self(slot);
	child_signals();
	log_setproc(role_names[ch->ch_role]);
	proc_title_set("%s", role_names[ch->ch_role]);

	switch (ch->ch_role) {
	case ROLE_WORKER:
		close(log_pipe[0]);
		worker_main(cf, slot, lp[0], log_pipe[1]);
	case ROLE_LOGGER:
		secret_forget();	/* it never touches a secret */
		tokens_fini();		/* nor counts a token */
		close(log_pipe[1]);
		for (i = 0; i < cf->cf_nlisten; i++)
			close(cf->cf_listen[i].la_fd);
		logger_main(cf, slot, lp[0], log_pipe[0]);
	case ROLE_REFRESHER:
		tokens_fini();
		close(log_pipe[0]);
		close(log_pipe[1]);
		for (i = 0; i < cf->cf_nlisten; i++)
			close(cf->cf_listen[i].la_fd);
		refresher_main(cf, slot, lp[0]);
	}
	_exit(QR_EXIT_FATAL);
}

/*
 * Reap every child that exited. A child of the running generation that
 * was not told to stop is restarted: at once if it had run a while, else
 * after a doubling delay (1 s .. 60 s) so a crash loop cannot spin.
 */
static void
reap(int stopping)
{
	struct child	*ch;
	pid_t		 pid;
	int		 status, i, lived;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 1; i < QR_MAX_PROCS; i++)
			if (children[i].ch_pid == pid)
				break;
		if (i == QR_MAX_PROCS)
			continue;
		ch = &children[i];
		if (ch->ch_lifeline != -1)
			close(ch->ch_lifeline);
		ch->ch_lifeline = -1;
		ch->ch_pid = 0;
		atomic_store(&shm.shm_procs[i].sp_pid, 0);
		lived = (int)((now_ms() - ch->ch_started) / 1000);

		if (WIFSIGNALED(status)) {
			log_warnx("%s %d killed by signal %d",
			    role_names[ch->ch_role], (int)pid, WTERMSIG(status));
			/* it may have died inside a write to the table */
			if (shm_recover(&shm) == 1)
				log_warnx("repaired shared table slots left "
				    "half-written");
		}
		else if (WEXITSTATUS(status) != 0 || !ch->ch_stopping)
			log_warnx("%s %d exited with status %d",
			    role_names[ch->ch_role], (int)pid,
			    WEXITSTATUS(status));
		else
			log_debug("%s %d exited", role_names[ch->ch_role],
			    (int)pid);

		if (stopping || ch->ch_stopping || ch->ch_gen != generation)
			continue;
		if (WIFEXITED(status) && WEXITSTATUS(status) == QR_EXIT_FATAL) {
			log_warnx("%s exited fatally; not restarting it",
			    role_names[ch->ch_role]);
			continue;
		}
		if (lived >= 10)
			ch->ch_backoff = 0;
		ch->ch_respawn_at = now_ms() + (int64_t)ch->ch_backoff * 1000;
		if (ch->ch_respawn_at == 0)
			ch->ch_respawn_at = 1;
		atomic_fetch_add(&shm.shm_procs[i].sp_restarts, 1);
		log_info("restarting %s%s", role_names[ch->ch_role],
		    ch->ch_backoff ? " after a delay" : "");
		ch->ch_backoff = ch->ch_backoff ? ch->ch_backoff * 2 : 1;
		if (ch->ch_backoff > 60)
			ch->ch_backoff = 60;
	}
}

/* Tell children of generations below gen_below (0: all) to stop. */
static void
stop_children(uint32_t gen_below, int sig, int roles)
{
	int	 i;

	for (i = 1; i < QR_MAX_PROCS; i++) {
		struct child	*ch = &children[i];

		if (gen_below && ch->ch_gen >= gen_below)
			continue;
		if (!(roles & (1 << ch->ch_role)))
			continue;
		ch->ch_respawn_at = 0;
		if (ch->ch_pid <= 0)
			continue;
		ch->ch_stopping = 1;
		atomic_store(&shm.shm_procs[i].sp_draining, 1);
		kill(ch->ch_pid, sig);
	}
}

/*
 * SIGHUP: parse the new file into a fresh struct; on error keep running
 * on the old one. Else start a new generation and let the old drain.
 */
static int
master_reload(void)
{
	struct config	*ncf;
	char		 err[512];
	const char	*file = cf->cf_file[0] ? cf->cf_file : NULL;
	int		 i, free_slots;

	if ((ncf = calloc(1, sizeof(*ncf))) == NULL) {
		log_warn("reload");
		return -1;
	}
	if (config_load(ncf, file, err, sizeof(err)) == -1) {
		log_warnx("reload refused, keeping the running configuration: %s",
		    err);
		free(ncf);
		return -1;
	}
	if (ncf->cf_max_accounts != cf->cf_max_accounts ||
	    ncf->cf_max_keys != cf->cf_max_keys)
		log_warnx("reload: max_accounts and max_keys take effect at "
		    "the next start");
	if (strcmp(ncf->cf_db_path, cf->cf_db_path) != 0 ||
	    strcmp(ncf->cf_pid_file, cf->cf_pid_file) != 0 ||
	    strcmp(ncf->cf_user, cf->cf_user) != 0) {
		log_warnx("reload refused: database, pid_file and user take "
		    "effect only at a restart");
		free(ncf);
		return -1;
	}
	/* old generations still draining hold their slots */
	for (free_slots = 0, i = 1; i < QR_MAX_PROCS; i++)
		if (children[i].ch_pid == 0 && children[i].ch_respawn_at == 0)
			free_slots++;
	if (free_slots < ncf->cf_workers + 2) {
		log_warnx("reload refused: %d process slots free, %d needed; "
		    "older generations are still draining", free_slots,
		    ncf->cf_workers + 2);
		free(ncf);
		return -1;
	}
	if (listeners_open(ncf, cf) == -1) {
		log_warnx("reload refused, keeping the running configuration");
		free(ncf);
		return -1;
	}
	if (ncf->cf_log_file[0] && strcmp(ncf->cf_log_file, cf->cf_log_file))
		log_open_file(ncf->cf_log_file);
	listeners_close_unused(ncf, cf);
	free(cf);
	cf = ncf;
	generation++;
	atomic_store(&shm.shm_hdr->sh_generation, generation);
	shm.shm_procs[0].sp_gen = generation;
	master_reload_tables();
	start_generation();
	stop_children(generation, SIGTERM, ~0);
	log_info("configuration reloaded (generation %u, %d workers)",
	    generation, cf->cf_workers);
	return 0;
}

/*
 * SIGTERM: workers finish what they serve (bounded by shutdown_timeout),
 * then the logger drains the pipe, then we go. SIGINT/SIGQUIT: now.
 */
static void
master_shutdown(int fast)
{
	int64_t		 deadline;
	int		 i, alive, phase;
	sigset_t	 set;
	siginfo_t	 info;
	struct timespec	 ts = { 0, 50 * 1000000 };

	log_info("%s stop requested", fast ? "fast" : "graceful");
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	/* phase 0: workers (and refresher); phase 1: the logger */
	for (phase = 0; phase < 2; phase++) {
		int	 roles = phase == 0 ?
		    (1 << ROLE_WORKER | 1 << ROLE_REFRESHER) : 1 << ROLE_LOGGER;

		stop_children(0, fast ? SIGINT : SIGTERM, roles);
		deadline = now_ms() + (fast ? 2000 :
		    (int64_t)cf->cf_shutdown_timeout * 1000 + 2000);
		for (;;) {
			reap(1);
			for (alive = 0, i = 1; i < QR_MAX_PROCS; i++)
				if (children[i].ch_pid > 0 &&
				    (roles & (1 << children[i].ch_role)))
					alive++;
			if (alive == 0)
				break;
			if (now_ms() > deadline) {
				log_warnx("%d processes did not stop in time; "
				    "killing them", alive);
				for (i = 1; i < QR_MAX_PROCS; i++)
					if (children[i].ch_pid > 0 &&
					    (roles & (1 << children[i].ch_role)))
						kill(children[i].ch_pid, SIGKILL);
				deadline = now_ms() + 5000;
			}
			sigtimedwait(&set, &info, &ts);
		}
	}
	unlink(cf->cf_pid_file);
	log_info("stopped");
	exit(0);
}
