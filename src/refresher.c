/*
 * refresher.c - the refresher process.
 *
 * It is the one process that will hold refresh tokens and client
 * secrets: it renews account access tokens before they expire and
 * publishes only the short-lived access tokens to the shared table
 * (the upstream clients, OIDC and Kiro, arrive with the relay). Today
 * it keeps the session table clean: expired admin sessions are deleted
 * once a minute. Like every child it stops when the master says so or
 * when its lifeline reaches EOF.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "qrelayd.h"

#define REFRESHER_TICK_MS	5000
#define REFRESHER_SWEEP_MS	60000

int
refresher_main(struct config *cf, int slot, int lifeline_fd)
{
	struct pollfd	 pfd;
	struct timespec	 tick = { REFRESHER_TICK_MS / 1000,
			    (REFRESHER_TICK_MS % 1000) * 1000000 };
	sigset_t	 waitmask;
	sqlite3		*db;
	int64_t		 next_sweep = 0, now;
	char		 b;

	/* Signals are only delivered inside ppoll: a SIGTERM that comes
	 * during a sweep must not wait for the next tick. */
	child_signals_block(&waitmask);

	if ((db = db_open(cf->cf_db_path)) == NULL)
		fatalx("cannot open the database %s", cf->cf_db_path);
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
		if (ppoll(&pfd, 1, &tick, &waitmask) == -1) {
			if (errno == EINTR)
				continue;
			fatal("ppoll");
		}
		if ((pfd.revents & (POLLIN | POLLHUP)) &&
		    read(lifeline_fd, &b, 1) <= 0)
			break;
	}
	db_close(db);
	exit(0);
}
