/*
 * loadgen.c - a small closed-loop HTTP/1.1 load client for `make bench`.
 *
 * wrk's latency histogram is not trustworthy on the benchmark machine (its
 * wall clock steps by 1-2 ms), so this client times every request itself
 * with CLOCK_MONOTONIC, from the write() of the request to the last byte
 * of the response.  One thread, one epoll set, -c non-blocking keep-alive
 * connections, each with at most one request in flight (no pipelining),
 * like `wrk -t1 -cN`.
 *
 * Usage: loadgen [-h host] -P port [-c conns] [-d secs] [-w warmup_secs]
 *                [-p path]
 * Prints one line:  rps=<n> p50_us=<n> p99_us=<n> errors=<n>
 * errors counts failed connects, resets, unparsable responses and
 * responses with a status >= 400.  Only responses completed inside the
 * measuring window (after the warm-up) are counted.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE	16384

struct conn {
	int		 c_fd;
	int		 c_connected;
	size_t		 c_wsent;	/* bytes of the request written */
	uint64_t	 c_t0;		/* ns, when the request was written */
	char		 c_rbuf[RBUF_SIZE];
	size_t		 c_rlen;	/* header bytes held in c_rbuf */
	int		 c_inbody;	/* headers parsed, reading the body */
	long long	 c_left;	/* body bytes still expected */
	int		 c_status;
	int		 c_close;	/* server said Connection: close */
};

static struct sockaddr_storage	 g_addr;
static socklen_t		 g_addrlen;
static int			 g_ep;
static char			 g_req[1024];
static size_t			 g_reqlen;
static int			 g_measuring;
static uint64_t			 g_errors;
static uint64_t			*g_lat;		/* ns */
static size_t			 g_nlat, g_caplat;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
record(uint64_t ns)
{
	if (g_nlat == g_caplat) {
		size_t ncap = g_caplat ? g_caplat * 2 : 1 << 20;
		uint64_t *n = realloc(g_lat, ncap * sizeof(*n));

		if (n == NULL) {
			perror("realloc");
			exit(1);
		}
		g_lat = n;
		g_caplat = ncap;
	}
	g_lat[g_nlat++] = ns;
}

static void
error_count(void)
{
	if (g_measuring)
		g_errors++;
}

static int
conn_open(struct conn *c)
{
	struct epoll_event ev;
	int one = 1;

	memset(c, 0, offsetof(struct conn, c_rbuf));
	c->c_rlen = 0;
	c->c_fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (c->c_fd == -1) {
		perror("socket");
		return -1;
	}
	setsockopt(c->c_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->c_fd, (struct sockaddr *)&g_addr, g_addrlen) == -1 &&
	    errno != EINPROGRESS) {
		close(c->c_fd);
		c->c_fd = -1;
		return -1;
	}
	ev.events = EPOLLOUT | EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->c_fd, &ev) == -1) {
		perror("epoll_ctl");
		exit(1);
	}
	return 0;
}

static void
conn_reset(struct conn *c, int failed)
{
	if (failed)
		error_count();
	if (c->c_fd != -1)
		close(c->c_fd);	/* also removes it from the epoll set */
	c->c_fd = -1;
	/* Reconnect at once; a refused connect shows up as an error event. */
	while (conn_open(c) == -1) {
		error_count();
		usleep(1000);
	}
}

/* Write what is left of the request; switch to EPOLLIN once all is out. */
static void
conn_write(struct conn *c)
{
	struct epoll_event ev;
	ssize_t n;

	if (c->c_wsent == 0)
		c->c_t0 = now_ns();
	while (c->c_wsent < g_reqlen) {
		n = write(c->c_fd, g_req + c->c_wsent, g_reqlen - c->c_wsent);
		if (n == -1) {
			if (errno == EAGAIN) {
				ev.events = EPOLLOUT | EPOLLIN;
				ev.data.ptr = c;
				epoll_ctl(g_ep, EPOLL_CTL_MOD, c->c_fd, &ev);
				return;
			}
			conn_reset(c, 1);
			return;
		}
		c->c_wsent += (size_t)n;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	epoll_ctl(g_ep, EPOLL_CTL_MOD, c->c_fd, &ev);
}

/*
 * Parse the status line and the headers we care about.  Returns the length
 * of the header block, 0 if incomplete, -1 if unusable (chunked bodies are
 * not supported: the benchmark targets all send Content-Length).
 */
static ssize_t
parse_head(struct conn *c)
{
	char *end, *line, *next;

	end = memmem(c->c_rbuf, c->c_rlen, "\r\n\r\n", 4);
	if (end == NULL)
		return c->c_rlen >= RBUF_SIZE ? -1 : 0;
	*end = '\0';
	if (strncmp(c->c_rbuf, "HTTP/1.", 7) != 0 || strlen(c->c_rbuf) < 12)
		return -1;
	c->c_status = atoi(c->c_rbuf + 9);
	c->c_left = -1;
	c->c_close = c->c_rbuf[7] == '0';
	for (line = strstr(c->c_rbuf, "\r\n"); line != NULL; line = next) {
		line += 2;
		next = strstr(line, "\r\n");
		if (next != NULL)
			*next = '\0';
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			c->c_left = strtoll(line + 15, NULL, 10);
		else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0)
			return -1;
		else if (strncasecmp(line, "Connection:", 11) == 0)
			c->c_close = strcasestr(line + 11, "close") != NULL;
	}
	if (c->c_left < 0)
		return -1;
	return end - c->c_rbuf + 4;
}

static void
conn_done(struct conn *c)
{
	uint64_t t1 = now_ns();

	if (g_measuring) {
		if (c->c_status >= 400)
			g_errors++;
		else
			record(t1 - c->c_t0);
	}
	c->c_wsent = 0;
	c->c_rlen = 0;
	c->c_inbody = 0;
	if (c->c_close) {
		conn_reset(c, 0);
		return;
	}
	conn_write(c);
}

static void
conn_read(struct conn *c)
{
	char sink[RBUF_SIZE];
	ssize_t n, hl;
	size_t extra;

	for (;;) {
		if (!c->c_inbody) {
			n = read(c->c_fd, c->c_rbuf + c->c_rlen,
			    RBUF_SIZE - c->c_rlen);
		} else
			n = read(c->c_fd, sink, sizeof(sink));
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			/* Closed while idle between requests is not an error. */
			conn_reset(c, c->c_wsent != 0 || c->c_rlen != 0);
			return;
		}
		if (!c->c_inbody) {
			c->c_rlen += (size_t)n;
			if ((hl = parse_head(c)) == -1) {
				conn_reset(c, 1);
				return;
			}
			if (hl == 0)
				continue;
			c->c_inbody = 1;
			extra = c->c_rlen - (size_t)hl;
		} else
			extra = (size_t)n;
		c->c_left -= (long long)extra;
		if (c->c_left < 0) {	/* more than asked for */
			conn_reset(c, 1);
			return;
		}
		if (c->c_left == 0) {
			conn_done(c);
			return;
		}
	}
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t
pct(double p)
{
	size_t i;

	if (g_nlat == 0)
		return 0;
	i = (size_t)(p * (double)(g_nlat - 1) + 0.5);
	return g_lat[i];
}

static void
usage(void)
{
	fprintf(stderr, "usage: loadgen [-h host] -P port [-c conns] [-d secs] "
	    "[-w warmup_secs] [-p path]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	const char *host = "127.0.0.1", *port = NULL, *path = "/";
	struct addrinfo hints, *res;
	struct epoll_event evs[256];
	struct rlimit rl;
	struct conn *conns;
	uint64_t start, mstart = 0, end;
	double secs = 5, warm = 0, elapsed;
	int nconn = 64, ch, i, n, err;

	while ((ch = getopt(argc, argv, "h:P:c:d:w:p:")) != -1) {
		switch (ch) {
		case 'h': host = optarg; break;
		case 'P': port = optarg; break;
		case 'c': nconn = atoi(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'w': warm = atof(optarg); break;
		case 'p': path = optarg; break;
		default: usage();
		}
	}
	if (port == NULL || nconn < 1 || secs <= 0 || warm < 0)
		usage();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((err = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "loadgen: %s: %s\n", host, gai_strerror(err));
		return 1;
	}
	memcpy(&g_addr, res->ai_addr, res->ai_addrlen);
	g_addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	g_reqlen = (size_t)snprintf(g_req, sizeof(g_req),
	    "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: qrelay-loadgen\r\n"
	    "Accept: */*\r\n\r\n", path, host, port);
	if (g_reqlen >= sizeof(g_req))
		usage();

	if ((g_ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("epoll_create1");
		return 1;
	}
	if ((conns = calloc((size_t)nconn, sizeof(*conns))) == NULL) {
		perror("calloc");
		return 1;
	}
	for (i = 0; i < nconn; i++) {
		conns[i].c_fd = -1;
		if (conn_open(&conns[i]) == -1) {
			fprintf(stderr, "loadgen: cannot connect\n");
			return 1;
		}
	}

	start = now_ns();
	if (warm == 0) {
		g_measuring = 1;
		mstart = start;
	}
	end = start + (uint64_t)((warm + secs) * 1e9);
	for (;;) {
		uint64_t now = now_ns();
		int tmo;

		if (!g_measuring && now >= start + (uint64_t)(warm * 1e9)) {
			g_measuring = 1;
			mstart = now;
		}
		if (now >= end)
			break;
		tmo = (int)((end - now) / 1000000) + 1;
		if (!g_measuring) {
			uint64_t w = start + (uint64_t)(warm * 1e9) - now;
			tmo = (int)(w / 1000000) + 1;
		}
		n = epoll_wait(g_ep, evs, 256, tmo);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			uint32_t e = evs[i].events;

			if (!c->c_connected) {
				if (e & (EPOLLERR | EPOLLHUP)) {
					conn_reset(c, 1);
					continue;
				}
				if (e & EPOLLOUT) {
					c->c_connected = 1;
					conn_write(c);
				}
				continue;
			}
			if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_read(c);
			else if (e & EPOLLOUT)
				conn_write(c);
		}
	}
	elapsed = (double)(now_ns() - mstart) / 1e9;
	qsort(g_lat, g_nlat, sizeof(*g_lat), cmp_u64);
	printf("rps=%.0f p50_us=%.0f p99_us=%.0f errors=%llu\n",
	    (double)g_nlat / elapsed, (double)pct(0.50) / 1e3,
	    (double)pct(0.99) / 1e3, (unsigned long long)g_errors);
	return 0;
}
