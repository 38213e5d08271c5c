/*
 * loadgen.c - a small HTTP/1.1 load client for `make bench`.
 *
 * wrk's latency histogram is not trustworthy on the benchmark machine (its
 * wall clock steps by 1-2 ms), so this client times every request itself
 * with CLOCK_MONOTONIC. One thread, one epoll set, -c non-blocking
 * keep-alive connections, each with at most one request in flight (no
 * pipelining).
 *
 * Closed loop (the default, like `wrk -t1 -cN`, what run.sh uses): each
 * connection sends its next request as soon as the last answer is in;
 * latency runs from the write() of the request to the last byte of the
 * response.
 *
 * Open loop (-r rate): a request is due every 1/rate s on a fixed
 * schedule (a timerfd), whatever the server does; it goes out on a free
 * connection, or waits for one. Its latency runs from the time it was
 * due, not from when it could be written, so a server that falls behind
 * shows as queueing instead of as a lower request rate ("coordinated
 * omission"). Requests due in the measuring window are counted; at the
 * end the client waits up to 5 s for the ones still out, and counts any
 * that never finish as errors.
 *
 * -T times the first byte of the response body instead of the last (time
 * to first byte of a stream). Bodies may be Content-Length or chunked
 * (qrelayd's server-sent events).
 *
 * Usage: loadgen [-h host] -P port [-c conns] [-d secs] [-w warmup_secs]
 *                [-p path] [-m method] [-b bodyfile] [-H "Name: value"]...
 *                [-r rate] [-T]
 * Prints one line:  rps=<n> p50_us=<n> p99_us=<n> errors=<n>
 * and with -r or -T also p90_us, p999_us, max_us and n (requests timed).
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
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE	16384
#define MAX_HDRS	32
#define DRAIN_NS	5000000000ull

/* chunked body decoder states */
enum { CS_SIZE, CS_EXT, CS_DATA, CS_DATA_END, CS_TRAILER };

struct conn {
	int		 c_fd;
	int		 c_connected;
	size_t		 c_wsent;	/* bytes of the request written */
	uint64_t	 c_t0;		/* ns, when the request was written
					 * (open loop: when it was due) */
	uint64_t	 c_tfirst;	/* ns, first body byte, 0 none yet */
	int		 c_busy;	/* a request is out (open loop) */
	struct conn	*c_fnext;	/* free list (open loop) */
	int		 c_infree;
	int		 c_inbody;	/* headers parsed, reading the body */
	long long	 c_left;	/* body bytes still expected */
	int		 c_chunked;
	int		 c_cstate;
	unsigned long long c_csize;	/* chunk bytes left, or being read */
	int		 c_cdigits;
	int		 c_tline;	/* trailer: bytes on this line */
	int		 c_status;
	int		 c_close;	/* server said Connection: close */
	size_t		 c_rlen;	/* header bytes held in c_rbuf */
	char		 c_rbuf[RBUF_SIZE];
};

static struct sockaddr_storage	 g_addr;
static socklen_t		 g_addrlen;
static int			 g_ep;
static char			*g_req;
static size_t			 g_reqlen;
static int			 g_measuring;
static uint64_t			 g_errors;
/* what the errors were, printed to stderr */
enum { E_NONE, E_CONNECT, E_RESET, E_PARSE, E_STATUS, E_UNFINISHED, E_N };
static uint64_t			 g_ekind[E_N];
static const char *const	 g_enames[E_N] = { "", "connect", "reset",
				    "parse", "status", "unfinished" };
static uint64_t			*g_lat;		/* ns */
static size_t			 g_nlat, g_caplat;
static int			 g_ttfb;	/* -T */

/* open loop */
static double			 g_rate;
static int			 g_tfd = -1;
static uint64_t			 g_next;	/* ns, when the next is due */
static uint64_t			 g_interval;
static uint64_t			 g_mstart, g_mend;	/* measuring window */
static uint64_t			*g_q;		/* due times waiting */
static size_t			 g_qhead, g_qlen, g_qcap;
static struct conn		*g_free;
static uint64_t			 g_out;		/* requests out */
static struct conn		 g_timer_tag;	/* marks the timerfd's event */

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

/* Does this request count? Closed loop: completed while measuring; open
 * loop: due inside the measuring window. */
static int
counted(const struct conn *c)
{
	if (g_rate > 0)
		return g_mstart != 0 && c->c_t0 >= g_mstart &&
		    c->c_t0 < g_mend;
	return g_measuring;
}

static void
error_count(const struct conn *c, int kind)
{
	if (c != NULL ? counted(c) : g_measuring) {
		g_errors++;
		g_ekind[kind]++;
	}
}

static int
conn_open(struct conn *c)
{
	struct epoll_event ev;
	int one = 1;

	memset(c, 0, offsetof(struct conn, c_rbuf));
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
free_remove(struct conn *c)
{
	struct conn **pp;

	for (pp = &g_free; *pp != NULL; pp = &(*pp)->c_fnext)
		if (*pp == c) {
			*pp = c->c_fnext;
			break;
		}
	c->c_infree = 0;
}

/* failed: E_NONE, or the kind of error that ended the connection */
static void
conn_reset(struct conn *c, int failed)
{
	if (c->c_infree)
		free_remove(c);
	if (failed)
		error_count(c->c_busy || g_rate == 0 ? c : NULL, failed);
	if (c->c_busy) {
		c->c_busy = 0;
		g_out--;
	}
	if (c->c_fd != -1)
		close(c->c_fd);	/* also removes it from the epoll set */
	c->c_fd = -1;
	/* Reconnect at once; a refused connect shows up as an error event. */
	while (conn_open(c) == -1) {
		error_count(NULL, E_CONNECT);
		usleep(1000);
	}
}

/* Write what is left of the request; switch to EPOLLIN once all is out. */
static void
conn_write(struct conn *c)
{
	struct epoll_event ev;
	ssize_t n;

	if (c->c_wsent == 0 && g_rate == 0)
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
			conn_reset(c, E_RESET);
			return;
		}
		c->c_wsent += (size_t)n;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	epoll_ctl(g_ep, EPOLL_CTL_MOD, c->c_fd, &ev);
}

/* ---- open loop: the schedule --------------------------------------- */

static void
queue_push(uint64_t due)
{
	if (g_qlen == g_qcap) {
		size_t ncap = g_qcap ? g_qcap * 2 : 4096, i;
		uint64_t *n = malloc(ncap * sizeof(*n));

		if (n == NULL) {
			perror("malloc");
			exit(1);
		}
		for (i = 0; i < g_qlen; i++)
			n[i] = g_q[(g_qhead + i) % g_qcap];
		free(g_q);
		g_q = n;
		g_qhead = 0;
		g_qcap = ncap;
	}
	g_q[(g_qhead + g_qlen++) % g_qcap] = due;
}

/* Start the waiting requests on free connections. */
static void
dispatch(void)
{
	struct conn *c;

	while (g_qlen > 0 && (c = g_free) != NULL) {
		g_free = c->c_fnext;
		c->c_infree = 0;
		c->c_t0 = g_q[g_qhead];
		g_qhead = (g_qhead + 1) % g_qcap;
		g_qlen--;
		c->c_busy = 1;
		g_out++;
		conn_write(c);
	}
}

/* A connection is ready for a request: take a waiting one or idle. */
static void
conn_idle(struct conn *c)
{
	struct epoll_event ev;

	ev.events = EPOLLIN;	/* EPOLLOUT would fire all the time */
	ev.data.ptr = c;
	epoll_ctl(g_ep, EPOLL_CTL_MOD, c->c_fd, &ev);
	c->c_fnext = g_free;
	c->c_infree = 1;
	g_free = c;
	dispatch();
}

/* Queue what is due up to now (until stop) and arm the timer for the
 * next one. */
static void
schedule(uint64_t stop)
{
	struct itimerspec its;
	uint64_t now, v;

	/* consume the expiry first: one that comes after the re-arm below
	 * must stay pending, or the loop could sleep through it for good */
	while (read(g_tfd, &v, sizeof(v)) > 0)
		;
	now = now_ns();
	while (g_next <= now && g_next < stop) {
		queue_push(g_next);
		g_next += g_interval;
	}
	dispatch();
	memset(&its, 0, sizeof(its));
	if (g_next < stop) {
		its.it_value.tv_sec = (time_t)(g_next / 1000000000ull);
		its.it_value.tv_nsec = (long)(g_next % 1000000000ull);
	}
	timerfd_settime(g_tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- responses ------------------------------------------------------ */

/*
 * Parse the status line and the headers we care about.  Returns the length
 * of the header block, 0 if incomplete, -1 if unusable.
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
	c->c_chunked = 0;
	c->c_close = c->c_rbuf[7] == '0';
	for (line = strstr(c->c_rbuf, "\r\n"); line != NULL; line = next) {
		line += 2;
		next = strstr(line, "\r\n");
		if (next != NULL)
			*next = '\0';
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			c->c_left = strtoll(line + 15, NULL, 10);
		else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
			if (strcasestr(line + 18, "chunked") == NULL)
				return -1;
			c->c_chunked = 1;
		} else if (strncasecmp(line, "Connection:", 11) == 0)
			c->c_close = strcasestr(line + 11, "close") != NULL;
	}
	if (c->c_chunked) {
		c->c_cstate = CS_SIZE;
		c->c_csize = 0;
		c->c_cdigits = 0;
	} else if (c->c_left < 0) {
		if (c->c_status == 204 || c->c_status == 304)
			c->c_left = 0;
		else
			return -1;
	}
	return end - c->c_rbuf + 4;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Feed chunked body bytes. Returns 1 when the body ended exactly at the
 * end of p, 0 when more is needed, -1 when it is malformed or more than
 * one response came (there is no pipelining).
 */
static int
chunk_feed(struct conn *c, const char *p, size_t n)
{
	size_t i = 0, k;
	int v;

	while (i < n) {
		switch (c->c_cstate) {
		case CS_SIZE:
		case CS_EXT:
			if (p[i] == '\n') {
				if (c->c_cdigits == 0)
					return -1;
				c->c_cstate = c->c_csize == 0 ? CS_TRAILER :
				    CS_DATA;
				c->c_tline = 0;
			} else if (p[i] == '\r' || c->c_cstate == CS_EXT) {
				/* skipped */
			} else if (p[i] == ';') {
				c->c_cstate = CS_EXT;
			} else if ((v = hexval((unsigned char)p[i])) != -1 &&
			    c->c_cdigits < 15) {
				c->c_csize = c->c_csize * 16 + (unsigned)v;
				c->c_cdigits++;
			} else
				return -1;
			i++;
			break;
		case CS_DATA:
			k = n - i < c->c_csize ? n - i : (size_t)c->c_csize;
			c->c_csize -= k;
			i += k;
			if (c->c_csize == 0)
				c->c_cstate = CS_DATA_END;
			break;
		case CS_DATA_END:
			if (p[i] == '\n') {
				c->c_cstate = CS_SIZE;
				c->c_cdigits = 0;
			} else if (p[i] != '\r')
				return -1;
			i++;
			break;
		case CS_TRAILER:
			if (p[i] == '\n') {
				if (c->c_tline == 0)
					return i + 1 == n ? 1 : -1;
				c->c_tline = 0;
			} else if (p[i] != '\r')
				c->c_tline++;
			i++;
			break;
		}
	}
	return 0;
}

static void
conn_done(struct conn *c)
{
	uint64_t t1 = now_ns();

	if (counted(c)) {
		if (c->c_status >= 400) {
			g_errors++;
			g_ekind[E_STATUS]++;
		} else
			record((g_ttfb && c->c_tfirst ? c->c_tfirst : t1) -
			    c->c_t0);
	}
	c->c_wsent = 0;
	c->c_rlen = 0;
	c->c_inbody = 0;
	c->c_tfirst = 0;
	if (c->c_busy) {
		c->c_busy = 0;
		g_out--;
	}
	if (c->c_close) {
		conn_reset(c, 0);
		return;
	}
	if (g_rate > 0)
		conn_idle(c);
	else
		conn_write(c);
}

/* Body bytes arrived: count them down. 1 done, 0 more, -1 bad. */
static int
body_bytes(struct conn *c, const char *p, size_t n)
{
	if (n > 0 && c->c_tfirst == 0)
		c->c_tfirst = now_ns();
	if (c->c_chunked)
		return n > 0 ? chunk_feed(c, p, n) : 0;
	c->c_left -= (long long)n;
	if (c->c_left < 0)	/* more than asked for */
		return -1;
	return c->c_left == 0;
}

static void
conn_read(struct conn *c)
{
	char sink[RBUF_SIZE];
	ssize_t n, hl;
	int rv;

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
			conn_reset(c, c->c_wsent != 0 || c->c_rlen != 0 ?
			    E_RESET : E_NONE);
			return;
		}
		if (!c->c_inbody) {
			c->c_rlen += (size_t)n;
			if ((hl = parse_head(c)) == -1) {
				conn_reset(c, E_PARSE);
				return;
			}
			if (hl == 0)
				continue;
			c->c_inbody = 1;
			rv = body_bytes(c, c->c_rbuf + hl,
			    c->c_rlen - (size_t)hl);
			if (rv == 0 && !c->c_chunked && c->c_left == 0)
				rv = 1;
		} else
			rv = body_bytes(c, sink, (size_t)n);
		if (rv == -1) {
			conn_reset(c, E_PARSE);
			return;
		}
		if (rv == 1) {
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
	    "[-w warmup_secs] [-p path]\n"
	    "               [-m method] [-b bodyfile] [-H \"Name: value\"]... "
	    "[-r rate] [-T]\n");
	exit(2);
}

static char *
read_file(const char *path, size_t *lenp)
{
	FILE *fp;
	char *b = NULL;
	size_t cap = 0, len = 0, n;

	if ((fp = fopen(path, "rb")) == NULL) {
		perror(path);
		exit(1);
	}
	for (;;) {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 131072;
			if ((b = realloc(b, cap)) == NULL) {
				perror("realloc");
				exit(1);
			}
		}
		if ((n = fread(b + len, 1, cap - len, fp)) == 0)
			break;
		len += n;
	}
	fclose(fp);
	*lenp = len;
	return b;
}

static void
build_request(const char *method, const char *path, const char *host,
    const char *port, const char **hdrs, int nhdrs, const char *body,
    size_t blen, int have_body)
{
	size_t cap = 1024 + blen, off;
	int i, n;

	for (i = 0; i < nhdrs; i++)
		cap += strlen(hdrs[i]) + 2;
	if ((g_req = malloc(cap)) == NULL) {
		perror("malloc");
		exit(1);
	}
	n = snprintf(g_req, cap, "%s %s HTTP/1.1\r\nHost: %s:%s\r\n"
	    "User-Agent: qrelay-loadgen\r\nAccept: */*\r\n", method, path,
	    host, port);
	if (n < 0 || (size_t)n >= cap - 64)
		usage();
	off = (size_t)n;
	for (i = 0; i < nhdrs; i++)
		off += (size_t)snprintf(g_req + off, cap - off, "%s\r\n",
		    hdrs[i]);
	if (have_body)
		off += (size_t)snprintf(g_req + off, cap - off,
		    "Content-Length: %zu\r\n", blen);
	memcpy(g_req + off, "\r\n", 2);
	off += 2;
	if (blen > 0)
		memcpy(g_req + off, body, blen);
	g_reqlen = off + blen;
}

int
main(int argc, char *argv[])
{
	const char *host = "127.0.0.1", *port = NULL, *path = "/";
	const char *method = "GET", *bodyfile = NULL, *hdrs[MAX_HDRS];
	struct addrinfo hints, *res;
	struct epoll_event evs[256], tev;
	struct rlimit rl;
	struct conn *conns;
	uint64_t start, mstart = 0, end, stop;
	double secs = 5, warm = 0, elapsed;
	char *body = NULL;
	size_t blen = 0;
	int nconn = 64, ch, i, n, err, nhdrs = 0, extra;

	while ((ch = getopt(argc, argv, "h:P:c:d:w:p:m:b:H:r:T")) != -1) {
		switch (ch) {
		case 'h': host = optarg; break;
		case 'P': port = optarg; break;
		case 'c': nconn = atoi(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'w': warm = atof(optarg); break;
		case 'p': path = optarg; break;
		case 'm': method = optarg; break;
		case 'b': bodyfile = optarg; break;
		case 'H':
			if (nhdrs == MAX_HDRS || strchr(optarg, ':') == NULL)
				usage();
			hdrs[nhdrs++] = optarg;
			break;
		case 'r': g_rate = atof(optarg); break;
		case 'T': g_ttfb = 1; break;
		default: usage();
		}
	}
	if (port == NULL || nconn < 1 || secs <= 0 || warm < 0 || g_rate < 0)
		usage();
	extra = g_rate > 0 || g_ttfb;
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
	if (bodyfile != NULL)
		body = read_file(bodyfile, &blen);
	build_request(method, path, host, port, hdrs, nhdrs, body, blen,
	    bodyfile != NULL);
	free(body);

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
	stop = end;
	if (g_rate > 0) {
		g_interval = (uint64_t)(1e9 / g_rate);
		if (g_interval == 0)
			usage();
		g_tfd = timerfd_create(CLOCK_MONOTONIC,
		    TFD_NONBLOCK | TFD_CLOEXEC);
		if (g_tfd == -1) {
			perror("timerfd_create");
			return 1;
		}
		tev.events = EPOLLIN;
		tev.data.ptr = &g_timer_tag;
		epoll_ctl(g_ep, EPOLL_CTL_ADD, g_tfd, &tev);
		g_mstart = start + (uint64_t)(warm * 1e9);
		g_mend = end;
		g_next = start;
		/* requests out at the end may take a while to finish */
		stop = end + DRAIN_NS;
	}
	for (;;) {
		uint64_t now = now_ns();
		int tmo;

		if (!g_measuring && now >= start + (uint64_t)(warm * 1e9)) {
			g_measuring = 1;
			mstart = now;
		}
		if (now >= stop)
			break;
		if (g_rate > 0 && now >= end && g_out == 0 && g_qlen == 0)
			break;
		tmo = (int)((stop - now) / 1000000) + 1;
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

			if (c == &g_timer_tag)
				continue;	/* schedule() below */
			if (!c->c_connected) {
				if (e & (EPOLLERR | EPOLLHUP)) {
					conn_reset(c, E_CONNECT);
					continue;
				}
				if (e & EPOLLOUT) {
					c->c_connected = 1;
					if (g_rate > 0)
						conn_idle(c);
					else
						conn_write(c);
				}
				continue;
			}
			if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_read(c);
			else if ((e & EPOLLOUT) && (c->c_busy || g_rate == 0))
				conn_write(c);
		}
		if (g_rate > 0)
			schedule(end);
	}
	if (g_rate > 0) {
		/* never answered, or never sent for want of a connection */
		for (; g_qlen > 0; g_qlen--, g_qhead = (g_qhead + 1) % g_qcap)
			if (g_q[g_qhead] >= g_mstart) {
				g_errors++;
				g_ekind[E_UNFINISHED]++;
			}
		for (i = 0; i < nconn; i++)
			if (conns[i].c_busy && counted(&conns[i])) {
				g_errors++;
				g_ekind[E_UNFINISHED]++;
			}
		elapsed = secs;
	} else
		elapsed = (double)(now_ns() - mstart) / 1e9;
	qsort(g_lat, g_nlat, sizeof(*g_lat), cmp_u64);
	printf("rps=%.0f p50_us=%.0f p99_us=%.0f errors=%llu",
	    (double)g_nlat / elapsed, (double)pct(0.50) / 1e3,
	    (double)pct(0.99) / 1e3, (unsigned long long)g_errors);
	if (extra)
		printf(" p90_us=%.0f p999_us=%.0f max_us=%.0f n=%zu",
		    (double)pct(0.90) / 1e3, (double)pct(0.999) / 1e3,
		    g_nlat ? (double)g_lat[g_nlat - 1] / 1e3 : 0.0, g_nlat);
	printf("\n");
	if (g_errors > 0) {
		fprintf(stderr, "loadgen: errors:");
		for (i = 1; i < E_N; i++)
			if (g_ekind[i])
				fprintf(stderr, " %s=%llu", g_enames[i],
				    (unsigned long long)g_ekind[i]);
		fprintf(stderr, "\n");
	}
	return 0;
}
