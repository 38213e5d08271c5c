/*
 * benchq.c - a small, fast fake Amazon Q upstream for the relay
 * benchmarks (tests/bench/relay.sh).
 *
 * tests/fake/fakeq.py plays the upstream faithfully but is Python: at a
 * thousand requests a second, or with ten thousand streams open, it
 * would be what is measured. This one is a single-threaded epoll loop
 * with canned answers, so that the difference between "through qrelayd"
 * and "straight to the upstream" is qrelayd's own cost.
 *
 * It speaks HTTP/1.1 with keep-alive and Content-Length request bodies
 * (what libcurl sends) and answers:
 *   POST /token, POST /refreshToken   a token JSON (accessToken bench-at)
 *   POST /generateAssistantResponse   200, a chunked
 *       application/vnd.amazon.eventstream: -n assistantResponseEvent
 *       frames, a meteringEvent and a contextUsageEvent, with real CRCs
 *       (zlib crc32); 403 with the upstream's "bearer token" message when
 *       the Authorization is not "Bearer bench-at"
 *   anything else                     404
 * A request whose body contains the -S marker gets a slow stream: the
 * head and the first frame at once, then one frame every -D ms, timed
 * with one FIFO of deadlines (every slow stream waits the same delay,
 * so the FIFO is also deadline order). Everything else is answered in
 * one write.
 *
 *   benchq [-p port] [-f portfile] [-n textframes] [-D delay_ms]
 *          [-S marker] [-w bodyfile] [-G streams]
 *
 * -G N holds the slow streams after their first frame until N of them
 * are open at once (or two minutes have passed), then paces them all:
 * however long the client takes to open them, all N are held together.
 *
 * -w FILE saves the body of the first assistant request, so that the
 * benchmark can send the very same upstream body straight here. On
 * SIGTERM or SIGINT it prints its counters to stderr and exits.
 *
 * The text of frame i is the BENCHQ_TEXT format below; streamhold.c
 * checks the streams it receives against the same format.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
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
#include <zlib.h>

#define BENCHQ_TEXT	"Frame %d of the benchq answer. "
#define MAX_HEAD	65536
#define MAX_BODY	(64 * 1024 * 1024)
#define MAX_FRAMES	1000
#define GATE_MAX_NS	(120 * 1000000000ull)	/* -G waits no longer */

struct tlist {
	struct conn	*tl_head, *tl_tail;
};

struct conn {
	int		 c_fd;
	char		*c_in;		/* request bytes */
	size_t		 c_inlen, c_incap;
	size_t		 c_need;	/* head + body, 0 until the head is in */
	size_t		 c_headlen;
	char		*c_out;		/* response bytes not yet written */
	size_t		 c_outlen, c_outoff, c_outcap;
	int		 c_epout;	/* EPOLLOUT asked for */
	int		 c_close;	/* close once c_out is written */
	int		 c_stop;	/* take no further request */
	int		 c_streaming;	/* a slow stream is under way */
	int		 c_frame;	/* next frame to send */
	uint64_t	 c_due;		/* ns, when the next frame goes */
	struct conn	*c_tprev, *c_tnext;
	struct tlist	*c_list;	/* the list c is on, or NULL */
};

struct frame {
	char		*f_data;	/* the frame as one HTTP chunk */
	size_t		 f_len;
};

static int		 g_ep;
static struct frame	 g_frames[MAX_FRAMES + 2];
static int		 g_nframes;
static char		*g_fast;	/* the whole 200 response at once */
static size_t		 g_fastlen;
static uint64_t		 g_delay_ns;
static const char	*g_marker;
static const char	*g_bodyfile;
static struct tlist	 g_timers;	/* slow streams, next frame due */
static struct tlist	 g_gated;	/* slow streams held at the gate */
static long		 g_gate;	/* -G: open the gate at this many */
static long		 g_slow_open;	/* slow streams under way */
static uint64_t		 g_gate_until;	/* ns, the gate opens anyway */
static volatile sig_atomic_t g_quit;

static unsigned long long st_conns, st_token, st_fast, st_slow, st_403,
    st_404, st_bad, st_open, st_maxopen;

static const char STREAM_HEAD[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/vnd.amazon.eventstream\r\n"
    "Transfer-Encoding: chunked\r\n"
    "x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n"
    "\r\n";
static const char TERMINATOR[] = "0\r\n\r\n";
static const char TOKEN_JSON[] =
    "{\"accessToken\":\"bench-at\",\"expiresIn\":3600,"
    "\"tokenType\":\"Bearer\"}";
static const char DENIED_JSON[] =
    "{\"message\":\"The bearer token included in the request is invalid.\","
    "\"reason\":null}";

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n)) == NULL) {
		perror("benchq: realloc");
		exit(1);
	}
	return p;
}

static void
put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* A string header (type 7): name length, name, 7, value length, value. */
static size_t
put_header(unsigned char *p, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	p[0] = (unsigned char)nl;
	memcpy(p + 1, name, nl);
	p[1 + nl] = 7;
	p[2 + nl] = (unsigned char)(vl >> 8);
	p[3 + nl] = (unsigned char)vl;
	memcpy(p + 4 + nl, value, vl);
	return 4 + nl + vl;
}

/* One event frame, wrapped as one HTTP chunk, appended to g_frames. */
static void
add_frame(const char *event, const char *payload)
{
	unsigned char	 msg[4096];
	size_t		 hl = 0, pl = strlen(payload), total;
	struct frame	*f = &g_frames[g_nframes++];
	char		 size[16];
	int		 sl;

	hl += put_header(msg + 12 + hl, ":event-type", event);
	hl += put_header(msg + 12 + hl, ":content-type", "application/json");
	hl += put_header(msg + 12 + hl, ":message-type", "event");
	total = 12 + hl + pl + 4;
	if (total > sizeof(msg)) {
		fprintf(stderr, "benchq: frame too large\n");
		exit(1);
	}
	put_be32(msg, (uint32_t)total);
	put_be32(msg + 4, (uint32_t)hl);
	put_be32(msg + 8, (uint32_t)crc32(0, msg, 8));
	memcpy(msg + 12 + hl, payload, pl);
	put_be32(msg + total - 4, (uint32_t)crc32(0, msg, (uInt)(total - 4)));
	sl = snprintf(size, sizeof(size), "%zx\r\n", total);
	f->f_len = (size_t)sl + total + 2;
	f->f_data = xrealloc(NULL, f->f_len);
	memcpy(f->f_data, size, (size_t)sl);
	memcpy(f->f_data + sl, msg, total);
	memcpy(f->f_data + sl + total, "\r\n", 2);
}

static void
make_frames(int ntext)
{
	char	 text[128], payload[256];
	size_t	 off;
	int	 i;

	for (i = 0; i < ntext; i++) {
		snprintf(text, sizeof(text), BENCHQ_TEXT, i);
		snprintf(payload, sizeof(payload), "{\"content\":\"%s\"}", text);
		add_frame("assistantResponseEvent", payload);
	}
	add_frame("meteringEvent",
	    "{\"unit\":\"credit\",\"unitPlural\":\"credits\","
	    "\"usage\":0.0169543708291874}");
	add_frame("contextUsageEvent", "{\"contextUsagePercentage\":1.25}");

	g_fastlen = sizeof(STREAM_HEAD) - 1 + sizeof(TERMINATOR) - 1;
	for (i = 0; i < g_nframes; i++)
		g_fastlen += g_frames[i].f_len;
	g_fast = xrealloc(NULL, g_fastlen);
	memcpy(g_fast, STREAM_HEAD, sizeof(STREAM_HEAD) - 1);
	off = sizeof(STREAM_HEAD) - 1;
	for (i = 0; i < g_nframes; i++) {
		memcpy(g_fast + off, g_frames[i].f_data, g_frames[i].f_len);
		off += g_frames[i].f_len;
	}
	memcpy(g_fast + off, TERMINATOR, sizeof(TERMINATOR) - 1);
}

static void
out_add(struct conn *c, const void *p, size_t n)
{
	if (c->c_outlen + n > c->c_outcap) {
		c->c_outcap = c->c_outlen + n > 4096 ? c->c_outlen + n : 4096;
		c->c_out = xrealloc(c->c_out, c->c_outcap);
	}
	memcpy(c->c_out + c->c_outlen, p, n);
	c->c_outlen += n;
}

static void
respond(struct conn *c, int status, const char *reason, const char *ctype,
    const char *body)
{
	char	 head[256];
	int	 n;

	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", status,
	    reason, ctype, strlen(body),
	    c->c_close ? "Connection: close\r\n" : "");
	out_add(c, head, (size_t)n);
	out_add(c, body, strlen(body));
}

static void
timer_unlink(struct conn *c)
{
	struct tlist	*l = c->c_list;

	if (l == NULL)
		return;
	if (c->c_tprev != NULL)
		c->c_tprev->c_tnext = c->c_tnext;
	else
		l->tl_head = c->c_tnext;
	if (c->c_tnext != NULL)
		c->c_tnext->c_tprev = c->c_tprev;
	else
		l->tl_tail = c->c_tprev;
	c->c_tprev = c->c_tnext = NULL;
	c->c_list = NULL;
}

static void
list_append(struct tlist *l, struct conn *c)
{
	c->c_tprev = l->tl_tail;
	c->c_tnext = NULL;
	if (l->tl_tail != NULL)
		l->tl_tail->c_tnext = c;
	else
		l->tl_head = c;
	l->tl_tail = c;
	c->c_list = l;
}

/* Every slow stream waits the same delay: appending keeps the order. */
static void
timer_add(struct conn *c)
{
	c->c_due = now_ns() + g_delay_ns;
	list_append(&g_timers, c);
}

/* Start the clocks of every stream held at the gate. */
static void
gate_open(void)
{
	struct conn	*c;

	while ((c = g_gated.tl_head) != NULL) {
		timer_unlink(c);
		timer_add(c);
	}
	g_gate = 0;
}

static void
conn_close(struct conn *c)
{
	if (c->c_streaming)
		g_slow_open--;
	timer_unlink(c);
	close(c->c_fd);
	free(c->c_in);
	free(c->c_out);
	free(c);
	st_open--;
}

static void
set_epout(struct conn *c, int on)
{
	struct epoll_event ev;

	if (c->c_epout == on)
		return;
	ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
	ev.data.ptr = c;
	epoll_ctl(g_ep, EPOLL_CTL_MOD, c->c_fd, &ev);
	c->c_epout = on;
}

/* Write what is pending. Returns -1 when c was closed. */
static int
conn_flush(struct conn *c)
{
	ssize_t	 n;

	while (c->c_outoff < c->c_outlen) {
		n = write(c->c_fd, c->c_out + c->c_outoff,
		    c->c_outlen - c->c_outoff);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				set_epout(c, 1);
				return 0;
			}
			conn_close(c);
			return -1;
		}
		c->c_outoff += (size_t)n;
	}
	c->c_outoff = c->c_outlen = 0;
	set_epout(c, 0);
	if (c->c_close && !c->c_streaming) {
		conn_close(c);
		return -1;
	}
	return 0;
}

static void
save_body(const char *body, size_t len)
{
	FILE	*fp;
	char	 tmp[4096];

	snprintf(tmp, sizeof(tmp), "%s.tmp", g_bodyfile);
	if ((fp = fopen(tmp, "wb")) == NULL ||
	    fwrite(body, 1, len, fp) != len || fclose(fp) != 0 ||
	    rename(tmp, g_bodyfile) == -1)
		perror("benchq: -w");
	g_bodyfile = NULL;
}

static const char *
find_header(const char *head, size_t headlen, const char *name)
{
	const char	*p = head, *end = head + headlen;
	size_t		 nl = strlen(name);

	while (p < end && (p = memmem(p, (size_t)(end - p), "\r\n", 2)) !=
	    NULL) {
		p += 2;
		if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 &&
		    p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			return p;
		}
	}
	return NULL;
}

/* Answer the request at the front of c_in (c_need bytes). */
static void
handle(struct conn *c)
{
	const char	*h = c->c_in, *body = c->c_in + c->c_headlen;
	size_t		 blen = c->c_need - c->c_headlen;
	const char	*auth;

	if (strncmp(h, "POST /token ", 12) == 0 ||
	    strncmp(h, "POST /refreshToken ", 19) == 0) {
		st_token++;
		respond(c, 200, "OK", "application/json", TOKEN_JSON);
		return;
	}
	if (strncmp(h, "POST /generateAssistantResponse ", 32) != 0) {
		st_404++;
		respond(c, 404, "Not Found", "application/json",
		    "{\"message\":\"no such route in benchq\"}");
		return;
	}
	auth = find_header(h, c->c_headlen, "Authorization");
	if (auth == NULL || strncmp(auth, "Bearer bench-at\r", 16) != 0) {
		st_403++;
		respond(c, 403, "Forbidden", "application/json", DENIED_JSON);
		return;
	}
	if (g_bodyfile != NULL)
		save_body(body, blen);
	if (g_marker == NULL || memmem(body, blen, g_marker,
	    strlen(g_marker)) == NULL) {
		st_fast++;
		out_add(c, g_fast, g_fastlen);
		return;
	}
	st_slow++;
	out_add(c, STREAM_HEAD, sizeof(STREAM_HEAD) - 1);
	out_add(c, g_frames[0].f_data, g_frames[0].f_len);
	c->c_streaming = 1;
	c->c_frame = 1;
	g_slow_open++;
	if (g_gate > 0) {
		if (g_gated.tl_head == NULL)
			g_gate_until = now_ns() + GATE_MAX_NS;
		list_append(&g_gated, c);
		if (g_slow_open >= g_gate)
			gate_open();
	} else
		timer_add(c);
}

/*
 * Parse the head once it is all in: sets c_headlen and c_need. Returns
 * -1 for a request we cannot take (answered with 400 and a close).
 */
static int
parse_head(struct conn *c)
{
	char		*end;
	const char	*v;
	long long	 cl = 0;

	if ((end = memmem(c->c_in, c->c_inlen, "\r\n\r\n", 4)) == NULL) {
		if (c->c_inlen > MAX_HEAD)
			return -1;
		return 0;
	}
	c->c_headlen = (size_t)(end - c->c_in) + 4;
	if (find_header(c->c_in, c->c_headlen, "Transfer-Encoding") != NULL)
		return -1;
	if ((v = find_header(c->c_in, c->c_headlen, "Content-Length")) != NULL)
		cl = strtoll(v, NULL, 10);
	if (cl < 0 || cl > MAX_BODY)
		return -1;
	if ((v = find_header(c->c_in, c->c_headlen, "Connection")) != NULL &&
	    strncasecmp(v, "close", 5) == 0)
		c->c_close = 1;
	if ((v = find_header(c->c_in, c->c_headlen, "Expect")) != NULL &&
	    strncasecmp(v, "100-continue", 12) == 0)
		out_add(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	c->c_need = c->c_headlen + (size_t)cl;
	return 0;
}

/* Answer every complete request in c_in (one at a time while a slow
 * stream runs). Returns -1 when c was closed. */
static int
process(struct conn *c)
{
	while (!c->c_streaming && !c->c_stop) {
		if (c->c_need == 0) {
			if (parse_head(c) == -1) {
				st_bad++;
				c->c_close = c->c_stop = 1;
				respond(c, 400, "Bad Request",
				    "application/json",
				    "{\"message\":\"benchq: bad request\"}");
				break;
			}
			if (c->c_need == 0)
				break;
		}
		if (c->c_inlen < c->c_need)
			break;
		handle(c);
		if (c->c_close)
			c->c_stop = 1;
		memmove(c->c_in, c->c_in + c->c_need, c->c_inlen - c->c_need);
		c->c_inlen -= c->c_need;
		c->c_need = c->c_headlen = 0;
	}
	return conn_flush(c);
}

static void
conn_read(struct conn *c)
{
	ssize_t	 n;

	for (;;) {
		if (c->c_incap - c->c_inlen < 16384) {
			c->c_incap = c->c_incap ? c->c_incap * 2 : 32768;
			if (c->c_need > c->c_incap)
				c->c_incap = c->c_need + 16384;
			c->c_in = xrealloc(c->c_in, c->c_incap);
		}
		n = read(c->c_fd, c->c_in + c->c_inlen,
		    c->c_incap - c->c_inlen);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->c_inlen += (size_t)n;
		if ((size_t)n < 16384)
			break;
	}
	process(c);
}

static void
do_accept(int lfd)
{
	struct epoll_event	 ev;
	struct conn		*c;
	int			 fd, one = 1;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				perror("benchq: accept");
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->c_fd = fd;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			perror("benchq: epoll_ctl");
			close(fd);
			free(c);
			continue;
		}
		st_conns++;
		if (++st_open > st_maxopen)
			st_maxopen = st_open;
	}
}

/* Send the frames that are due; the end of a stream frees the conn for
 * its next request. */
static void
run_timers(void)
{
	uint64_t	 now = now_ns();
	struct conn	*c;

	if (g_gate > 0 && g_gated.tl_head != NULL && now >= g_gate_until)
		gate_open();
	while ((c = g_timers.tl_head) != NULL && c->c_due <= now) {
		timer_unlink(c);
		out_add(c, g_frames[c->c_frame].f_data,
		    g_frames[c->c_frame].f_len);
		if (++c->c_frame == g_nframes) {
			out_add(c, TERMINATOR, sizeof(TERMINATOR) - 1);
			c->c_streaming = 0;
			g_slow_open--;
			process(c);	/* flushes; may take the next request */
		} else {
			timer_add(c);
			conn_flush(c);
		}
	}
}

static void
on_signal(int sig)
{
	g_quit = 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: benchq [-p port] [-f portfile] "
	    "[-n textframes] [-D delay_ms] [-S marker] [-w bodyfile]\n"
	    "              [-G streams]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in	 sin;
	socklen_t		 slen = sizeof(sin);
	struct epoll_event	 evs[512], ev;
	struct sigaction	 sa;
	struct rlimit		 rl;
	const char		*portfile = NULL;
	int			 port = 0, ntext = 8, ch, lfd, one = 1, i, n;
	double			 delay_ms = 1000;

	while ((ch = getopt(argc, argv, "p:f:n:D:S:w:G:")) != -1) {
		switch (ch) {
		case 'p': port = atoi(optarg); break;
		case 'f': portfile = optarg; break;
		case 'n': ntext = atoi(optarg); break;
		case 'D': delay_ms = atof(optarg); break;
		case 'S': g_marker = optarg; break;
		case 'w': g_bodyfile = optarg; break;
		case 'G': g_gate = atol(optarg); break;
		default: usage();
		}
	}
	if (ntext < 1 || ntext > MAX_FRAMES || delay_ms < 0 || port < 0 ||
	    port > 65535)
		usage();
	g_delay_ns = (uint64_t)(delay_ms * 1e6);
	make_frames(ntext);

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1) {
		perror("benchq: socket");
		return 1;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 65535) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &slen) == -1) {
		perror("benchq: bind/listen");
		return 1;
	}
	if ((g_ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("benchq: epoll_create1");
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(g_ep, EPOLL_CTL_ADD, lfd, &ev);
	if (portfile != NULL) {
		char	 tmp[4096];
		FILE	*fp;

		snprintf(tmp, sizeof(tmp), "%s.tmp", portfile);
		if ((fp = fopen(tmp, "w")) == NULL ||
		    fprintf(fp, "%d\n", ntohs(sin.sin_port)) < 0 ||
		    fclose(fp) != 0 || rename(tmp, portfile) == -1) {
			perror("benchq: port file");
			return 1;
		}
	} else
		printf("%d\n", ntohs(sin.sin_port));
	fflush(stdout);

	while (!g_quit) {
		uint64_t next = 0, now = now_ns();
		int tmo = -1;

		if (g_timers.tl_head != NULL)
			next = g_timers.tl_head->c_due;
		if (g_gated.tl_head != NULL && (next == 0 || g_gate_until < next))
			next = g_gate_until;
		if (next != 0)
			tmo = next <= now ? 0 : (int)((next - now + 999999) / 1000000);
		n = epoll_wait(g_ep, evs, (int)(sizeof(evs) / sizeof(evs[0])),
		    tmo);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			perror("benchq: epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c == NULL) {
				do_accept(lfd);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_read(c);
			else if (evs[i].events & EPOLLOUT)
				conn_flush(c);
		}
		if (g_timers.tl_head != NULL || g_gated.tl_head != NULL)
			run_timers();
	}
	fprintf(stderr, "benchq: connections=%llu max_open=%llu token=%llu "
	    "fast_streams=%llu slow_streams=%llu denied_403=%llu "
	    "not_found=%llu bad=%llu\n", st_conns, st_maxopen, st_token,
	    st_fast, st_slow, st_403, st_404, st_bad);
	return 0;
}
