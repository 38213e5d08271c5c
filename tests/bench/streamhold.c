/*
 * streamhold.c - hold many slow streaming requests open at once and check
 * that every one of them arrives whole (tests/bench/relay.sh, part d).
 *
 * Opens -n connections to qrelayd, each sending the same streaming
 * /v1/messages request (-b body, -H headers), at most -k of them at a
 * time waiting for their response head so the listen queue is not
 * flooded; each connection carries one request and is closed when its
 * stream ends. Every stream is read as it comes: HTTP/1.1 chunked,
 * then Anthropic server-sent events, and is good only if it is a 200
 * whose events run message_start ... message_stop with no error event,
 * a message_delta saying end_turn, and text deltas that spell exactly
 * the -x text frames benchq sends (BENCHQ_TEXT, as in benchq.c).
 *
 *   streamhold -P port -n streams -b bodyfile [-H "Name: value"]...
 *              [-k pending] [-x textframes] [-t timeout_secs]
 *
 * Prints one line: streams= ok= failed= peak= ramp_s= total_s= and the
 * failures by kind; exits 0 when every stream was good. peak is the most
 * streams that were open (head received, end not yet) at one time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#define BENCHQ_TEXT	"Frame %d of the benchq answer. "
#define HEAD_MAX	8192
#define LINE_MAX_	2048
#define MAX_HDRS	16

enum { S_CONNECT, S_HEAD, S_BODY, S_DONE };
enum { CS_SIZE, CS_EXT, CS_DATA, CS_DATA_END, CS_TRAILER };
enum { F_CONNECT, F_STATUS, F_PROTO, F_EVENTS, F_TEXT, F_TIMEOUT, F_NKINDS };

static const char *const fail_names[F_NKINDS] = { "connect", "status",
	"protocol", "events", "text", "timeout" };

struct conn {
	int		 c_fd;
	int		 c_state;
	size_t		 c_wsent;
	char		*c_head;	/* response head until parsed */
	size_t		 c_hlen;
	int		 c_chunked;
	long long	 c_left;	/* Content-Length body left */
	int		 c_cstate;
	unsigned long long c_csize;
	int		 c_cdigits, c_tline;
	char		 c_line[LINE_MAX_];
	size_t		 c_llen;
	char		 c_event[32];
	int		 c_nevents;
	int		 c_ndeltas;
	int		 c_end_turn;
	int		 c_stopped;	/* message_stop seen */
	size_t		 c_textoff;	/* text matched so far */
	int		 c_fail;	/* F_* + 1, 0 good so far */
};

static struct sockaddr_in g_addr;
static int		 g_ep;
static char		*g_req;
static size_t		 g_reqlen;
static char		*g_text;	/* what the deltas must spell */
static size_t		 g_textlen;
static unsigned long	 g_ok, g_failed, g_fails[F_NKINDS];
static long		 g_open, g_peak, g_pending;
static struct conn	*g_conns;
static int		 g_n, g_next;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
conn_end(struct conn *c, int fail)
{
	if (c->c_state == S_DONE)
		return;
	if (c->c_state == S_CONNECT || c->c_state == S_HEAD)
		g_pending--;
	else
		g_open--;
	if (fail == 0 && c->c_fail)
		fail = c->c_fail;
	if (fail) {
		g_failed++;
		g_fails[fail - 1]++;
	} else
		g_ok++;
	c->c_state = S_DONE;
	close(c->c_fd);
	free(c->c_head);
	c->c_head = NULL;
}

static void
conn_start(struct conn *c)
{
	struct epoll_event ev;
	int one = 1;

	c->c_state = S_CONNECT;
	g_pending++;
	c->c_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (c->c_fd == -1) {
		perror("streamhold: socket");
		g_pending--;
		g_failed++;
		g_fails[F_CONNECT]++;
		c->c_state = S_DONE;
		return;
	}
	setsockopt(c->c_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->c_fd, (struct sockaddr *)&g_addr, sizeof(g_addr)) ==
	    -1 && errno != EINPROGRESS) {
		conn_end(c, F_CONNECT + 1);
		return;
	}
	ev.events = EPOLLOUT | EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->c_fd, &ev) == -1)
		conn_end(c, F_CONNECT + 1);
}

static void
start_more(int kmax)
{
	while (g_next < g_n && g_pending < kmax)
		conn_start(&g_conns[g_next++]);
}

static void
mark(struct conn *c, int fail)
{
	if (c->c_fail == 0)
		c->c_fail = fail + 1;
}

/* One SSE line (without its newline). */
static void
sse_line(struct conn *c, char *line, size_t len)
{
	const char *p, *q;

	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (len == 0) {		/* the end of an event */
		if (c->c_event[0] == '\0')
			return;
		if (strcmp(c->c_event, "ping") != 0) {
			if (c->c_nevents == 0 &&
			    strcmp(c->c_event, "message_start") != 0)
				mark(c, F_EVENTS);
			if (c->c_stopped || strcmp(c->c_event, "error") == 0)
				mark(c, F_EVENTS);
			if (strcmp(c->c_event, "message_stop") == 0)
				c->c_stopped = 1;
			c->c_nevents++;
		}
		c->c_event[0] = '\0';
		return;
	}
	if (strncmp(line, "event: ", 7) == 0) {
		snprintf(c->c_event, sizeof(c->c_event), "%s", line + 7);
		return;
	}
	if (strncmp(line, "data: ", 6) != 0)
		return;
	if (strcmp(c->c_event, "message_delta") == 0 &&
	    strstr(line, "\"end_turn\"") != NULL)
		c->c_end_turn = 1;
	if (strcmp(c->c_event, "content_block_delta") != 0)
		return;
	c->c_ndeltas++;
	if ((p = strstr(line, "\"text_delta\",\"text\":\"")) == NULL) {
		mark(c, F_TEXT);
		return;
	}
	p += 21;
	if ((q = strchr(p, '"')) == NULL ||
	    c->c_textoff + (size_t)(q - p) > g_textlen ||
	    memcmp(g_text + c->c_textoff, p, (size_t)(q - p)) != 0) {
		mark(c, F_TEXT);
		return;
	}
	c->c_textoff += (size_t)(q - p);
}

static void
sse_feed(struct conn *c, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n') {
			c->c_line[c->c_llen] = '\0';
			sse_line(c, c->c_line, c->c_llen);
			c->c_llen = 0;
		} else if (c->c_llen < LINE_MAX_ - 1)
			c->c_line[c->c_llen++] = p[i];
		else
			mark(c, F_PROTO);
	}
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

/* Chunked body bytes: 1 at the end of the body, 0 more, -1 bad. */
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
			sse_feed(c, p + i, k);
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

/* The whole stream is in: was it all there? */
static void
conn_finish(struct conn *c)
{
	if (c->c_llen != 0)
		mark(c, F_PROTO);
	if (!c->c_stopped || !c->c_end_turn)
		mark(c, F_EVENTS);
	if (c->c_textoff != g_textlen)
		mark(c, F_TEXT);
	conn_end(c, 0);
}

static int
body(struct conn *c, const char *p, size_t n)
{
	if (c->c_chunked)
		return chunk_feed(c, p, n);
	sse_feed(c, p, n);
	c->c_left -= (long long)n;
	return c->c_left < 0 ? -1 : c->c_left == 0;
}

/* Parse the head in c_head; the rest of it is body. */
static int
parse_head(struct conn *c, size_t *hl)
{
	char *end, *line, *next;

	if ((end = memmem(c->c_head, c->c_hlen, "\r\n\r\n", 4)) == NULL)
		return c->c_hlen >= HEAD_MAX ? -1 : 0;
	*hl = (size_t)(end - c->c_head) + 4;
	*end = '\0';
	if (strncmp(c->c_head, "HTTP/1.1 200", 12) != 0)
		return -2;
	c->c_left = -1;
	for (line = strstr(c->c_head, "\r\n"); line != NULL; line = next) {
		line += 2;
		next = strstr(line, "\r\n");
		if (next != NULL)
			*next = '\0';
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			c->c_left = strtoll(line + 15, NULL, 10);
		else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
		    strcasestr(line, "chunked") != NULL)
			c->c_chunked = 1;
	}
	if (!c->c_chunked && c->c_left < 0)
		return -1;
	return 1;
}

static void
conn_read(struct conn *c)
{
	static char buf[65536];
	size_t hl;
	ssize_t n;
	int rv;

	for (;;) {
		n = read(c->c_fd, buf, sizeof(buf));
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_end(c, F_PROTO + 1);
			return;
		}
		if (c->c_state == S_HEAD) {
			if ((c->c_head = realloc(c->c_head, c->c_hlen +
			    (size_t)n + 1)) == NULL) {
				perror("streamhold: realloc");
				exit(1);
			}
			memcpy(c->c_head + c->c_hlen, buf, (size_t)n);
			c->c_hlen += (size_t)n;
			rv = parse_head(c, &hl);
			if (rv == 0)
				continue;
			if (rv < 0) {
				conn_end(c, (rv == -2 ? F_STATUS : F_PROTO) +
				    1);
				return;
			}
			g_pending--;
			if (++g_open > g_peak)
				g_peak = g_open;
			c->c_state = S_BODY;
			rv = body(c, c->c_head + hl, c->c_hlen - hl);
			free(c->c_head);
			c->c_head = NULL;
		} else
			rv = body(c, buf, (size_t)n);
		if (rv == -1) {
			conn_end(c, F_PROTO + 1);
			return;
		}
		if (rv == 1) {
			conn_finish(c);
			return;
		}
	}
}

static void
conn_write(struct conn *c)
{
	struct epoll_event ev;
	ssize_t n;

	while (c->c_wsent < g_reqlen) {
		n = write(c->c_fd, g_req + c->c_wsent, g_reqlen - c->c_wsent);
		if (n == -1) {
			if (errno == EAGAIN)
				return;
			conn_end(c, (c->c_wsent ? F_PROTO : F_CONNECT) + 1);
			return;
		}
		c->c_wsent += (size_t)n;
	}
	c->c_state = S_HEAD;
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	epoll_ctl(g_ep, EPOLL_CTL_MOD, c->c_fd, &ev);
}

static char *
read_file(const char *path, size_t *lenp)
{
	FILE *fp;
	char *b;
	long len;

	if ((fp = fopen(path, "rb")) == NULL || fseek(fp, 0, SEEK_END) ||
	    (len = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) ||
	    (b = malloc((size_t)len + 1)) == NULL ||
	    fread(b, 1, (size_t)len, fp) != (size_t)len) {
		perror(path);
		exit(1);
	}
	fclose(fp);
	*lenp = (size_t)len;
	return b;
}

static void
usage(void)
{
	fprintf(stderr, "usage: streamhold -P port -n streams -b bodyfile "
	    "[-H \"Name: value\"]... [-k pending] [-x textframes] "
	    "[-t timeout_secs]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	const char *hdrs[MAX_HDRS], *bodyfile = NULL;
	struct epoll_event evs[512];
	struct rlimit rl;
	double t0, tramp = 0, timeout = 120;
	char *bodyb, piece[128];
	size_t blen, cap, off;
	int port = 0, kmax = 256, nframes = 8, nhdrs = 0, ch, i, n;

	while ((ch = getopt(argc, argv, "P:n:b:H:k:x:t:")) != -1) {
		switch (ch) {
		case 'P': port = atoi(optarg); break;
		case 'n': g_n = atoi(optarg); break;
		case 'b': bodyfile = optarg; break;
		case 'H':
			if (nhdrs == MAX_HDRS)
				usage();
			hdrs[nhdrs++] = optarg;
			break;
		case 'k': kmax = atoi(optarg); break;
		case 'x': nframes = atoi(optarg); break;
		case 't': timeout = atof(optarg); break;
		default: usage();
		}
	}
	if (port <= 0 || g_n < 1 || bodyfile == NULL || kmax < 1 ||
	    nframes < 1)
		usage();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)g_n + 16) {
		fprintf(stderr, "streamhold: RLIMIT_NOFILE %llu is too low "
		    "for %d streams\n", (unsigned long long)rl.rlim_cur, g_n);
		return 1;
	}

	/* the text the deltas must spell */
	g_text = malloc((size_t)nframes * sizeof(piece));
	if (g_text == NULL)
		return 1;
	for (i = 0; i < nframes; i++) {
		n = snprintf(piece, sizeof(piece), BENCHQ_TEXT, i);
		memcpy(g_text + g_textlen, piece, (size_t)n);
		g_textlen += (size_t)n;
	}

	bodyb = read_file(bodyfile, &blen);
	cap = 1024 + blen;
	for (i = 0; i < nhdrs; i++)
		cap += strlen(hdrs[i]) + 2;
	if ((g_req = malloc(cap)) == NULL)
		return 1;
	off = (size_t)snprintf(g_req, cap, "POST /v1/messages HTTP/1.1\r\n"
	    "Host: 127.0.0.1:%d\r\nUser-Agent: qrelay-streamhold\r\n"
	    "Accept: text/event-stream\r\n", port);
	for (i = 0; i < nhdrs; i++)
		off += (size_t)snprintf(g_req + off, cap - off, "%s\r\n",
		    hdrs[i]);
	off += (size_t)snprintf(g_req + off, cap - off,
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", blen);
	memcpy(g_req + off, bodyb, blen);
	g_reqlen = off + blen;
	free(bodyb);

	memset(&g_addr, 0, sizeof(g_addr));
	g_addr.sin_family = AF_INET;
	g_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_addr.sin_port = htons((uint16_t)port);
	if ((g_ep = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    (g_conns = calloc((size_t)g_n, sizeof(*g_conns))) == NULL) {
		perror("streamhold");
		return 1;
	}

	t0 = now_s();
	start_more(kmax);
	while (g_ok + g_failed < (unsigned long)g_n) {
		double left = t0 + timeout - now_s();

		if (left <= 0)
			break;
		n = epoll_wait(g_ep, evs, 512, (int)(left * 1000) + 1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			perror("streamhold: epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c->c_state == S_DONE)
				continue;
			if (c->c_state == S_CONNECT) {
				if (evs[i].events & (EPOLLERR | EPOLLHUP))
					conn_end(c, F_CONNECT + 1);
				else if (evs[i].events & EPOLLOUT)
					conn_write(c);
				continue;
			}
			conn_read(c);
		}
		start_more(kmax);
		if (tramp == 0 && g_next == g_n && g_pending == 0)
			tramp = now_s() - t0;
	}
	for (i = 0; i < g_n; i++)
		if (g_conns[i].c_state != S_DONE &&
		    (g_conns[i].c_state != S_CONNECT || i < g_next))
			conn_end(&g_conns[i], F_TIMEOUT + 1);
	g_fails[F_TIMEOUT] += (unsigned long)(g_n - g_next);
	g_failed += (unsigned long)(g_n - g_next);

	printf("streams=%d ok=%lu failed=%lu peak=%ld ramp_s=%.2f "
	    "total_s=%.2f", g_n, g_ok, g_failed, g_peak, tramp,
	    now_s() - t0);
	for (i = 0; i < F_NKINDS; i++)
		if (g_fails[i])
			printf(" %s=%lu", fail_names[i], g_fails[i]);
	printf("\n");
	return g_ok == (unsigned long)g_n ? 0 : 1;
}
