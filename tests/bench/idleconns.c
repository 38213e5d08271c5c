/*
 * idleconns.c - hold N idle HTTP/1.1 keep-alive connections open, for the
 * memory part of `make bench`.
 *
 * Each connection sends one GET /healthz and reads the whole response, so
 * the server has really accepted it and set it up as a keep-alive client
 * (not merely a socket sitting in the accept queue).  Then every
 * connection stays idle until SIGTERM/SIGINT, or until stdin reaches EOF
 * when stdin is a pipe or socket.  "open=<n> failed=<m>" is printed (and
 * flushed) once all connections are set up.
 *
 * Connections are set up in waves of at most WAVE at a time so the
 * listen backlog never overflows.
 *
 * Usage: idleconns [-h host] -P port [-n conns] [-p path]
 */

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAVE		256
#define TIMEOUT_MS	10000

struct ic {
	int	ic_fd;
	int	ic_state;	/* 0 connecting, 1 reading, 2 done, -1 failed */
	size_t	ic_rlen;
	char	ic_rbuf[1024];
};

static volatile sig_atomic_t	 g_stop;

static void
on_signal(int sig)
{
	g_stop = 1;
}

/* 1 when a complete response with a 2xx status is in the buffer. */
static int
response_done(struct ic *c)
{
	char *end, *cl;
	long len;

	end = memmem(c->ic_rbuf, c->ic_rlen, "\r\n\r\n", 4);
	if (end == NULL)
		return 0;
	*end = '\0';
	if (strncmp(c->ic_rbuf, "HTTP/1.1 2", 10) != 0)
		return -1;
	if ((cl = strcasestr(c->ic_rbuf, "\r\nContent-Length:")) == NULL)
		return -1;
	len = strtol(cl + 17, NULL, 10);
	*end = '\r';
	return (size_t)(end + 4 - c->ic_rbuf) + (size_t)len <= c->ic_rlen ?
	    1 : 0;
}

int
main(int argc, char *argv[])
{
	const char *host = "127.0.0.1", *port = NULL, *path = "/healthz";
	struct addrinfo hints, *res;
	struct epoll_event ev, evs[WAVE];
	struct sigaction sa;
	struct rlimit rl;
	struct stat st;
	struct ic *cs;
	char req[512];
	size_t reqlen;
	int nconn = 10000, ch, i, n, ep, one = 1, err;
	int next = 0, pending, opened = 0, failed = 0;

	while ((ch = getopt(argc, argv, "h:P:n:p:")) != -1) {
		switch (ch) {
		case 'h': host = optarg; break;
		case 'P': port = optarg; break;
		case 'n': nconn = atoi(optarg); break;
		case 'p': path = optarg; break;
		default: goto usage;
		}
	}
	if (port == NULL || nconn < 1)
		goto usage;

	/* The soft limit is often 1024; the hard one here is 20,000. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			perror("setrlimit");
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)nconn + 16) {
		fprintf(stderr, "idleconns: open-file limit %llu is below %d\n",
		    (unsigned long long)rl.rlim_cur, nconn + 16);
		return 1;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((err = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "idleconns: %s: %s\n", host, gai_strerror(err));
		return 1;
	}
	reqlen = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n"
	    "Host: %s:%s\r\nUser-Agent: qrelay-idleconns\r\n\r\n",
	    path, host, port);
	if ((cs = calloc((size_t)nconn, sizeof(*cs))) == NULL ||
	    (ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("idleconns");
		return 1;
	}

	while (next < nconn && !g_stop) {
		int first = next;

		/* One wave: connect, send, read the response, then park. */
		for (pending = 0; pending < WAVE && next < nconn; next++) {
			struct ic *c = &cs[next];

			c->ic_fd = socket(res->ai_family, SOCK_STREAM |
			    SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (c->ic_fd == -1) {
				perror("socket");
				c->ic_state = -1;
				failed++;
				continue;
			}
			setsockopt(c->ic_fd, IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof(one));
			if (connect(c->ic_fd, res->ai_addr, res->ai_addrlen) ==
			    -1 && errno != EINPROGRESS) {
				close(c->ic_fd);
				c->ic_fd = -1;
				c->ic_state = -1;
				failed++;
				continue;
			}
			ev.events = EPOLLOUT;
			ev.data.ptr = c;
			epoll_ctl(ep, EPOLL_CTL_ADD, c->ic_fd, &ev);
			pending++;
		}
		while (pending > 0 && !g_stop) {
			n = epoll_wait(ep, evs, WAVE, TIMEOUT_MS);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				break;	/* timed out: the rest count as failed */
			for (i = 0; i < n; i++) {
				struct ic *c = evs[i].data.ptr;
				ssize_t r;
				int done;

				if (c->ic_state == 0) {
					if ((evs[i].events & (EPOLLERR |
					    EPOLLHUP)) || write(c->ic_fd, req,
					    reqlen) != (ssize_t)reqlen)
						goto fail;
					c->ic_state = 1;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_MOD, c->ic_fd,
					    &ev);
					continue;
				}
				r = read(c->ic_fd, c->ic_rbuf + c->ic_rlen,
				    sizeof(c->ic_rbuf) - 1 - c->ic_rlen);
				if (r == -1 && errno == EAGAIN)
					continue;
				if (r <= 0)
					goto fail;
				c->ic_rlen += (size_t)r;
				if ((done = response_done(c)) == 0)
					continue;
				if (done == -1)
					goto fail;
				/* Park it: no longer watched, kept open. */
				epoll_ctl(ep, EPOLL_CTL_DEL, c->ic_fd, NULL);
				c->ic_state = 2;
				opened++;
				pending--;
				continue;
fail:
				close(c->ic_fd);
				c->ic_fd = -1;
				c->ic_state = -1;
				failed++;
				pending--;
			}
		}
		for (i = first; i < next; i++) {
			if (cs[i].ic_state == 0 || cs[i].ic_state == 1) {
				close(cs[i].ic_fd);
				cs[i].ic_state = -1;
				failed++;
			}
		}
	}
	freeaddrinfo(res);
	printf("open=%d failed=%d\n", opened, failed);
	fflush(stdout);

	/* Hold.  Watch stdin only if it can really reach EOF on demand. */
	if (fstat(STDIN_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) ||
	    S_ISSOCK(st.st_mode))) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		char b[64];

		while (!g_stop) {
			if (poll(&pfd, 1, -1) == 1 &&
			    read(STDIN_FILENO, b, sizeof(b)) <= 0)
				break;
		}
	} else {
		while (!g_stop)
			pause();
	}
	return 0;

usage:
	fprintf(stderr, "usage: idleconns [-h host] -P port [-n conns] "
	    "[-p path]\n");
	return 2;
}
