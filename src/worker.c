/*
 * worker.c - a worker process: one epoll loop serving many connections.
 *
 * The listeners are shared by every worker and registered with
 * EPOLLEXCLUSIVE, so a new connection wakes one worker, not all. Each
 * connection is a small state machine (head, body, handling, writing,
 * lingering close) driven by edge-triggered events. Timeouts live in one
 * list per kind of wait; every list has a fixed timeout, so appending at
 * the tail keeps it sorted and expiry only ever looks at the heads.
 *
 * A connection holds no buffers while it idles between requests, so
 * thousands of idle keep-alive clients cost a few hundred bytes each.
 * Once the master asks (SIGTERM, or EOF on the lifeline) the worker
 * stops accepting, lets the requests in flight finish within
 * shutdown_timeout, and exits.
 */
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

enum { TL_HEAD, TL_BODY, TL_IDLE, TL_WRITE, TL_LINGER, TL_SLOW, TL_FAST,
	TL_N };

struct evsrc {
	int	 es_kind;	/* enum ev_kind */
	int	 es_fd;
};

struct tlist {
	struct conn	*tl_head, *tl_tail;
	int64_t		 tl_ms;
};

static struct {
	struct config	*cf;
	int		 epfd;
	struct evsrc	 listeners[QR_MAX_LISTEN];
	int		 nlisteners;
	int		 accepting;
	uint64_t	 accepted;	/* connections, for the reorder */
	int64_t		 accept_resume;	/* ms; after EMFILE */
	int64_t		 accept_warned;	/* ms; last EMFILE message */
	struct evsrc	 lifeline;
	int		 draining;
	int		 drain_wanted;	/* lifeline EOF seen in this batch */
	int64_t		 drain_deadline;
	int64_t		 now;		/* ms, once per loop turn */
	size_t		 nconns;
	uint64_t	 next_id;
	struct tlist	 tl[TL_N];
	struct http_req	 scratch;	/* parse target until a head is whole */
	char		 rbuf[65536];	/* read scratch */
	int		 log_fd;
	struct conn	*dead;		/* closed this turn, freed at its end */
} W;

static struct worker_ctx	 wctx;
struct worker_ctx		*qr_wctx = &wctx;

static void	 conn_drive(struct conn *);
static void	 conn_close(struct conn *);
static void	 conn_fail(struct conn *, int);

/* ---- timers --------------------------------------------------------- */

static void
timer_del(struct conn *c)
{
	struct tlist	*l;

	if (c->co_tlist < 0)
		return;
	l = &W.tl[c->co_tlist];
	if (c->co_tprev)
		c->co_tprev->co_tnext = c->co_tnext;
	else
		l->tl_head = c->co_tnext;
	if (c->co_tnext)
		c->co_tnext->co_tprev = c->co_tprev;
	else
		l->tl_tail = c->co_tprev;
	c->co_tprev = c->co_tnext = NULL;
	c->co_tlist = -1;
}

static void
timer_set(struct conn *c, int list)
{
	struct tlist	*l = &W.tl[list];

	timer_del(c);
	c->co_deadline = W.now + l->tl_ms;
	c->co_tlist = list;
	c->co_tprev = l->tl_tail;
	if (l->tl_tail)
		l->tl_tail->co_tnext = c;
	else
		l->tl_head = c;
	l->tl_tail = c;
}

static int
timer_wait_ms(void)
{
	int64_t	 next = W.now + 1000;
	int	 i;

	for (i = 0; i < TL_N; i++)
		if (W.tl[i].tl_head && W.tl[i].tl_head->co_deadline < next)
			next = W.tl[i].tl_head->co_deadline;
	if (W.accept_resume && W.accept_resume < next)
		next = W.accept_resume;
	if (upstream_deadline() && upstream_deadline() < next)
		next = upstream_deadline();
	return next <= W.now ? 0 : (int)(next - W.now);
}

static void
conn_timeout(struct conn *c)
{
	switch (c->co_state) {
	case CS_HEAD:
		/* a silent client is just closed; a slow one is told why */
		if (buf_unread_len(&c->co_in) == 0) {
			conn_close(c);
			return;
		}
		/* FALLTHROUGH */
	case CS_BODY:
		log_debug("%s: timeout reading the request", c->co_peer_text);
		conn_fail(c, 408);
		conn_drive(c);
		return;
	case CS_HANDLING:
		if (c->co_relay != NULL && relay_tick(c) == 0)
			return;
		if (c->co_job >= 0) {
			admin_job_tick(c);
			return;
		}
		conn_close(c);
		return;
	default:
		conn_close(c);
	}
}

static void
timer_expire(void)
{
	struct conn	*c;
	int		 i;

	for (i = 0; i < TL_N; i++) {
		while ((c = W.tl[i].tl_head) != NULL &&
		    c->co_deadline <= W.now) {
			timer_del(c);
			conn_timeout(c);
		}
	}
}

/* ---- listeners ------------------------------------------------------ */

static void
listeners_enable(int on)
{
	struct epoll_event	 ev;
	int			 i;

	if (on == W.accepting)
		return;
	for (i = 0; i < W.nlisteners; i++) {
		if (on) {
			memset(&ev, 0, sizeof(ev));
			ev.events = EPOLLIN | EPOLLEXCLUSIVE;
			ev.data.ptr = &W.listeners[i];
			if (epoll_ctl(W.epfd, EPOLL_CTL_ADD,
			    W.listeners[i].es_fd, &ev) == -1)
				log_warn("epoll_ctl add listener");
		} else
			epoll_ctl(W.epfd, EPOLL_CTL_DEL, W.listeners[i].es_fd,
			    NULL);
	}
	W.accepting = on;
}

static void
conn_new(int fd, struct sockaddr_storage *ss)
{
	struct conn		*c;
	struct epoll_event	 ev;
	int			 one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->co_kind = EV_CONN;
	c->co_fd = fd;
	c->co_id = ++W.next_id;
	c->co_tlist = -1;
	c->co_file_fd = -1;
	c->co_job = -1;
	c->co_state = CS_HEAD;
	c->co_peer = *ss;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr,
		    c->co_peer_text, sizeof(c->co_peer_text));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr,
		    c->co_peer_text, sizeof(c->co_peer_text));
	else
		strlcpy_qr(c->co_peer_text, "unix", sizeof(c->co_peer_text));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_warn("epoll_ctl add");
		close(fd);
		free(c);
		return;
	}
	W.nconns++;
	atomic_fetch_add(&shm_proc_self()->sp_conns_total, 1);
	atomic_fetch_add(&shm_proc_self()->sp_conns_active, 1);
	timer_set(c, TL_HEAD);
	conn_drive(c);
}

static void
accept_ready(struct evsrc *l)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	int			 fd, n;

	for (n = 0; n < 64 && W.accepting; n++) {
		sl = sizeof(ss);
		fd = accept4(l->es_fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* back off instead of spinning on the event;
				 * say so once in a while, not every 100 ms */
				if (W.now - W.accept_warned >= 10000) {
					log_warn("accept");
					W.accept_warned = W.now;
				}
				listeners_enable(0);
				W.accept_resume = W.now + 100;
			}
			return;
		}
		conn_new(fd, &ss);
		if (W.nconns >= (size_t)W.cf->cf_max_connections) {
			listeners_enable(0);
			return;
		}
		/*
		 * EPOLLEXCLUSIVE wakes the first waiter in the listener's
		 * queue, which is the same worker again and again; going to
		 * the back of the queue now and then spreads new connections
		 * over the workers (nginx's ngx_reorder_accept_events).
		 */
		if (++W.accepted % 16 == 0) {
			listeners_enable(0);
			listeners_enable(1);
		}
	}
}

/* ---- connections ---------------------------------------------------- */

static void
conn_release_request(struct conn *c)
{
	if (c->co_relay != NULL) {
		relay_free(c->co_relay);
		c->co_relay = NULL;
	}
	c->co_stream = 0;
	free(c->co_req);
	c->co_req = NULL;
	if (c->co_file_fd != -1)
		close(c->co_file_fd);
	c->co_file_fd = -1;
	c->co_job = -1;
	buf_free(&c->co_head);
	buf_free(&c->co_body);
	c->co_status = 0;
	c->co_resp_bytes = 0;
	c->co_req_bytes = 0;
	c->co_key_id = 0;
}

/*
 * Close now, free at the end of the loop turn: a later event of the same
 * epoll batch, or a relay finishing in the same turn, may still hold c.
 */
static void
conn_close(struct conn *c)
{
	if (c->co_dead)
		return;
	timer_del(c);
	conn_release_request(c);
	close(c->co_fd);	/* also removes it from the epoll set */
	buf_free(&c->co_in);
	buf_free(&c->co_out);
	c->co_dead = 1;
	c->co_dnext = W.dead;
	W.dead = c;
	W.nconns--;
	atomic_fetch_sub(&shm_proc_self()->sp_conns_active, 1);
	if (!W.draining && !W.accepting && W.accept_resume == 0 &&
	    W.nconns < (size_t)W.cf->cf_max_connections)
		listeners_enable(1);
}

/* One record per request to the logger; never blocks. */
static void
conn_log(struct conn *c)
{
	struct log_rec		 r;
	struct http_req		*q = c->co_req;
	struct timespec		 ts;

	memset(&r, 0, sizeof(r));
	clock_gettime(CLOCK_REALTIME, &ts);
	r.lr_time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	r.lr_duration_us = now_us() - c->co_req_start_us;
	r.lr_status = c->co_status;
	r.lr_pid = (int32_t)getpid();
	r.lr_key_id = c->co_key_id;
	/* a request refused before it was whole: what was read of it */
	r.lr_bytes_in = (int64_t)(c->co_req_bytes ? c->co_req_bytes :
	    c->co_head.b_len + c->co_body.b_len);
	r.lr_bytes_out = (int64_t)c->co_resp_bytes;
	if (q) {
		size_t	 n;

		n = q->rq_method_len < sizeof(r.lr_method) - 1 ?
		    q->rq_method_len : sizeof(r.lr_method) - 1;
		memcpy(r.lr_method, q->rq_method_s, n);
		/* the path only: a query string may carry a secret */
		n = q->rq_path_len < sizeof(r.lr_path) - 1 ?
		    q->rq_path_len : sizeof(r.lr_path) - 1;
		memcpy(r.lr_path, q->rq_path, n);
	}
	strlcpy_qr(r.lr_client_ip, c->co_peer_text, sizeof(r.lr_client_ip));
	if (c->co_relay != NULL)
		relay_log(c, &r);
	logger_send(W.log_fd, &r);
}

/* The response is out: log it, then wait for the next request or close. */
static int
conn_finish(struct conn *c)
{
	struct shm_proc	*sp = shm_proc_self();

	atomic_fetch_add(&sp->sp_requests, 1);
	atomic_fetch_add(&sp->sp_bytes_out, c->co_resp_bytes);
	if (c->co_status >= 500)
		atomic_fetch_add(&sp->sp_status_5xx, 1);
	else if (c->co_status >= 400)
		atomic_fetch_add(&sp->sp_status_4xx, 1);
	if (c->co_req != NULL)
		conn_log(c);
	conn_release_request(c);
	if (!c->co_keep_alive || W.draining) {
		/*
		 * Lingering close: stop writing, read and drop what the
		 * client still sends for a moment, so the kernel does not
		 * answer it with a reset that destroys our last response.
		 */
		shutdown(c->co_fd, SHUT_WR);
		c->co_state = CS_CLOSING;
		buf_free(&c->co_in);
		timer_set(c, TL_LINGER);
		return 0;
	}
	c->co_state = CS_HEAD;
	if (buf_unread_len(&c->co_in) > 0) {
		timer_set(c, TL_HEAD);
	} else {
		buf_free(&c->co_in);
		timer_set(c, TL_IDLE);
	}
	if (c->co_out.b_cap > 16384)
		buf_free(&c->co_out);
	return 0;
}

/* Queue the head; returns -1 (and turns the answer into a bare 500
 * that closes) when memory runs out. */
static int
conn_respond_head(struct conn *c, int status, const char *ctype,
    int64_t len, const char *extra)
{
	size_t	 before = c->co_out.b_len;

	if (status >= 400 && c->co_state == CS_BODY)
		c->co_keep_alive = 0;	/* the rest of the body is unread */
	if (status == 204 || status == 304)
		len = -2;		/* these carry no length */
	c->co_status = status;
	c->co_state = CS_WRITING;
	timer_set(c, TL_WRITE);
	if (http_write_head(&c->co_out, status, ctype, len, c->co_keep_alive,
	    extra) == -1) {
		log_warnx("%s: out of memory", __func__);
		c->co_out.b_len = before;
		c->co_keep_alive = 0;
		c->co_status = 500;
		return -1;
	}
	c->co_resp_bytes += c->co_out.b_len - before;
	return 0;
}

static int
conn_is_head(struct conn *c)
{
	return c->co_req != NULL && c->co_req->rq_method == HTTP_HEAD;
}

void
conn_respond(struct conn *c, int status, const char *ctype, const void *body,
    size_t len, const char *extra)
{
	if (conn_respond_head(c, status, ctype, (int64_t)len, extra) == -1 ||
	    conn_is_head(c) || len == 0)
		return;
	if (buf_append(&c->co_out, body, len) == -1) {
		c->co_keep_alive = 0;	/* a short body: the client sees it */
		return;
	}
	c->co_resp_bytes += len;
}

void
conn_respond_file(struct conn *c, const char *ctype, int fd, off_t size,
    const char *extra)
{
	if (conn_respond_head(c, 200, ctype, (int64_t)size, extra) == -1 ||
	    conn_is_head(c)) {
		close(fd);
		return;
	}
	c->co_file_fd = fd;
	c->co_file_off = 0;
	c->co_file_end = size;
	c->co_resp_bytes += (size_t)size;
}

void
conn_respond_json(struct conn *c, int status, struct json_object *o,
    const char *extra)
{
	const char	*s;
	size_t		 n = 0;

	s = json_object_to_json_string_length(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	conn_respond(c, status, "application/json", s ? s : "", s ? n : 0,
	    extra);
	json_object_put(o);
}

const char *
conn_header(struct conn *c, const char *name, size_t *len)
{
	const struct http_hdr	*h;

	if (c->co_req == NULL || (h = http_header(c->co_req, name)) == NULL)
		return NULL;
	if (len)
		*len = h->h_value_len;
	return h->h_value;
}

/* A request we cannot serve: answer and close. */
static void
conn_fail(struct conn *c, int status)
{
	c->co_keep_alive = 0;
	router_error(c, status, NULL, NULL);
}

/*
 * Parse what co_in holds. Returns 1 when the state changed (a request
 * was dispatched or failed), 0 when more bytes are needed.
 */
static int
conn_parse(struct conn *c)
{
	struct http_req	*q;
	size_t		 len, consumed;
	int		 r;

	if (c->co_state == CS_HEAD) {
		len = buf_unread_len(&c->co_in);
		if (len == 0)
			return 0;
		r = http_parse_request(buf_unread(&c->co_in), len, &W.scratch,
		    (size_t)W.cf->cf_max_headers);
		if (r == 0) {
			if (len > W.cf->cf_max_header) {
				conn_fail(c, 431);
				return 1;
			}
			return 0;
		}
		if (r < 0 || (size_t)r > W.cf->cf_max_header) {
			conn_fail(c, r < 0 ? -r : 431);
			return 1;
		}
		/* Copy the head out so co_in may move while the body comes;
		 * only the headers used: a held stream keeps it for long. */
		if ((q = malloc(HTTP_REQ_SIZE(W.scratch.rq_nhdrs))) == NULL ||
		    buf_append(&c->co_head, buf_unread(&c->co_in),
		    (size_t)r) == -1) {
			free(q);
			conn_fail(c, 500);
			return 1;
		}
		memcpy(q, &W.scratch, HTTP_REQ_SIZE(W.scratch.rq_nhdrs));
		http_req_rebase(q, buf_unread(&c->co_in), c->co_head.b_data);
		c->co_req = q;
		buf_consume(&c->co_in, (size_t)r);
		c->co_req_start_us = now_us();
		c->co_keep_alive = q->rq_keep_alive && !W.draining;
		atomic_fetch_add(&shm_proc_self()->sp_bytes_in, (uint64_t)r);

		/* over max_body is refused before anything else is asked */
		c->co_body_max = W.cf->cf_max_body;
		if (q->rq_content_length > (int64_t)c->co_body_max) {
			conn_fail(c, 413);
			return 1;
		}
		if (q->rq_content_length > 0 || q->rq_chunked) {
			c->co_state = CS_BODY;
			http_chunked_init(&c->co_chunked);
			timer_set(c, TL_BODY);
		} else {
			c->co_state = CS_HANDLING;
			timer_del(c);
		}
		/* the gate answers from the head alone, and may lower the
		 * body limit (the login body, taken without a session) */
		if (router_gate(c) == -1)
			return 1;	/* refused before any body */
		if (q->rq_content_length > (int64_t)c->co_body_max) {
			conn_fail(c, 413);
			return 1;
		}
		if (c->co_state == CS_HANDLING) {
			c->co_req_bytes = c->co_head.b_len;
			router_dispatch(c);
			return 1;
		}
		if (q->rq_expect_continue && buf_unread_len(&c->co_in) == 0)
			buf_puts(&c->co_out, "HTTP/1.1 100 Continue\r\n\r\n");
		return 1;
	}

	/* CS_BODY */
	q = c->co_req;
	len = buf_unread_len(&c->co_in);
	if (q->rq_chunked) {
		if (len == 0)
			return 0;
		r = http_chunked_feed(&c->co_chunked, buf_unread(&c->co_in),
		    len, &consumed, &c->co_body, c->co_body_max);
		buf_consume(&c->co_in, consumed);
		atomic_fetch_add(&shm_proc_self()->sp_bytes_in, consumed);
		if (r < 0) {
			conn_fail(c, -r);
			return 1;
		}
		if (r == 0)
			return 0;
	} else {
		size_t	 need = (size_t)q->rq_content_length - c->co_body.b_len;

		if (len > need)
			len = need;
		if (len && buf_append(&c->co_body, buf_unread(&c->co_in),
		    len) == -1) {
			conn_fail(c, 500);
			return 1;
		}
		buf_consume(&c->co_in, len);
		atomic_fetch_add(&shm_proc_self()->sp_bytes_in, len);
		if (c->co_body.b_len < (size_t)q->rq_content_length)
			return 0;
	}
	c->co_state = CS_HANDLING;
	timer_del(c);
	if (buf_unread_len(&c->co_in) == 0)
		buf_free(&c->co_in);	/* a long stream need not keep it */
	c->co_req_bytes = c->co_head.b_len + c->co_body.b_len;
	router_dispatch(c);
	return 1;
}

/*
 * Read what the socket has. Returns 1 when bytes arrived, 0 when the
 * socket is drained (EAGAIN), -1 when the peer is gone or an error.
 */
static int
conn_fill(struct conn *c)
{
	ssize_t	 n;

	n = read(c->co_fd, W.rbuf, sizeof(W.rbuf));
	if (n > 0) {
		if (c->co_state == CS_CLOSING)
			return 1;	/* lingering: drop it */
		if (buf_append(&c->co_in, W.rbuf, (size_t)n) == -1)
			return -1;
		if (c->co_state == CS_HEAD && c->co_tlist == TL_IDLE)
			timer_set(c, TL_HEAD);
		else if (c->co_state == CS_BODY)
			timer_set(c, TL_BODY);
		return 1;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	return -1;
}

/*
 * Write what is queued: the buffer, then any file. Returns 1 when all is
 * out, 0 when the socket is full, -1 on error.
 */
static int
conn_flush(struct conn *c)
{
	ssize_t	 n;

	while (buf_unread_len(&c->co_out) > 0) {
		n = write(c->co_fd, buf_unread(&c->co_out),
		    buf_unread_len(&c->co_out));
		if (n == -1) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf_consume(&c->co_out, (size_t)n);
		c->co_progress = W.now;
		/* a 100 Continue goes out while the body timer runs */
		if (c->co_state == CS_WRITING)
			timer_set(c, TL_WRITE);
	}
	while (c->co_file_fd != -1 && c->co_file_off < c->co_file_end) {
		n = sendfile(c->co_fd, c->co_file_fd, &c->co_file_off,
		    (size_t)(c->co_file_end - c->co_file_off));
		if (n == -1) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return -1;	/* file shrank under us */
		timer_set(c, TL_WRITE);
	}
	return 1;
}

/* Run the connection as far as it can go without blocking. */
static void
conn_drive(struct conn *c)
{
	int	 r;

	if (c->co_dead)
		return;
	for (;;) {
		switch (c->co_state) {
		case CS_WRITING:
			if ((r = conn_flush(c)) == -1) {
				conn_close(c);
				return;
			}
			if (r == 0)
				return;
			conn_finish(c);
			continue;
		case CS_HANDLING:
			/* the handler drives it on; a relay streams meanwhile */
			if (c->co_relay == NULL)
				return;
			if ((c->co_revents & (EPOLLRDHUP | EPOLLHUP |
			    EPOLLERR)) || c->co_broken) {
				log_debug("%s: client went away mid-request",
				    c->co_peer_text);
				conn_close(c);
				return;
			}
			if ((r = conn_flush(c)) == -1) {
				conn_close(c);
				return;
			}
			if (r == 1)
				relay_drained(c);
			return;
		case CS_CLOSING: {
			int	 reads = 0;

			/* drop what comes, up to 1 MB: a client that keeps
			 * sending after our last answer is not worth more */
			while ((r = conn_fill(c)) == 1 && ++reads < 16)
				;
			if (r != 0)
				conn_close(c);
			return;
		}
		default:	/* CS_HEAD, CS_BODY */
			if (conn_parse(c))
				continue;
			/* a 100 Continue may be waiting */
			if (buf_unread_len(&c->co_out) > 0 &&
			    conn_flush(c) == -1) {
				conn_close(c);
				return;
			}
			if ((r = conn_fill(c)) == -1) {
				if (c->co_state == CS_BODY)
					log_debug("%s: client went away "
					    "mid-body", c->co_peer_text);
				conn_close(c);
				return;
			}
			if (r == 0)
				return;
		}
	}
}

void
conn_kick(struct conn *c)
{
	conn_drive(c);
}

void
conn_timer(struct conn *c, int which)
{
	if (which == CT_SLOW)
		timer_set(c, TL_SLOW);
	else if (which == CT_FAST)
		timer_set(c, TL_FAST);
	else
		timer_del(c);
}

int
conn_stream_begin(struct conn *c, int status, const char *ctype,
    const char *extra)
{
	size_t	 before = c->co_out.b_len;
	int64_t	 len = -1;

	c->co_stream = 1;
	if (c->co_req != NULL && c->co_req->rq_minor == 0) {
		/* no chunked coding in HTTP/1.0: the close ends the body */
		c->co_keep_alive = 0;
		c->co_stream = 2;
		len = -2;
	}
	c->co_status = status;
	c->co_progress = W.now;
	if (http_write_head(&c->co_out, status, ctype, len, c->co_keep_alive,
	    extra) == -1) {
		c->co_out.b_len = before;
		c->co_broken = 1;
		return -1;
	}
	c->co_resp_bytes += c->co_out.b_len - before;
	return 0;
}

int
conn_stream_write(struct conn *c, const void *p, size_t len)
{
	size_t	 before = c->co_out.b_len;
	int	 r;

	if (c->co_broken)
		return -1;
	if (len == 0)
		return 0;
	r = c->co_stream == 1 ? http_write_chunk(&c->co_out, p, len) :
	    buf_append(&c->co_out, p, len);
	if (r == -1) {
		c->co_out.b_len = before;
		c->co_broken = 1;
		return -1;
	}
	c->co_resp_bytes += c->co_out.b_len - before;
	return 0;
}

/* Out at once, as far as the socket takes it: the caller flushes once
 * per batch of events, not once per event. */
int
conn_stream_flush(struct conn *c)
{
	if (c->co_broken)
		return -1;
	if (conn_flush(c) == -1) {
		c->co_broken = 1;
		return -1;
	}
	return 0;
}

void
conn_stream_end(struct conn *c)
{
	size_t	 before = c->co_out.b_len;

	if (c->co_stream == 1 && !c->co_broken &&
	    http_write_chunk(&c->co_out, NULL, 0) == -1)
		c->co_broken = 1;
	c->co_resp_bytes += c->co_out.b_len - before;
	if (c->co_broken)
		c->co_keep_alive = 0;
	c->co_state = CS_WRITING;
	timer_set(c, TL_WRITE);
}

/* ---- the loop ------------------------------------------------------- */

static void
worker_drain(void)
{
	struct conn	*c, *next;
	int		 i;

	if (W.draining)
		return;
	W.draining = 1;
	W.drain_deadline = W.now + (int64_t)W.cf->cf_shutdown_timeout * 1000;
	atomic_store(&shm_proc_self()->sp_draining, 1);
	listeners_enable(0);
	for (i = 0; i < W.nlisteners; i++)
		close(W.listeners[i].es_fd);
	W.nlisteners = 0;
	/* idle keep-alive connections have nothing in flight */
	for (c = W.tl[TL_IDLE].tl_head; c != NULL; c = next) {
		next = c->co_tnext;
		conn_close(c);
	}
	log_debug("draining %zu connections", W.nconns);
}

int
worker_main(struct config *cf, int slot, int lifeline_fd, int log_fd)
{
	struct epoll_event	 evs[256], ev;
	struct conn		*c;
	sigset_t		 waitmask;
	int			 i, n;
	char			 b;

	/* a worker seals new accounts' secrets but never opens them: only
	 * the master and the refresher keep the private key */
	secret_forget_private();

	memset(&W, 0, sizeof(W));
	W.cf = cf;
	W.log_fd = log_fd;
	W.now = now_ms();
	W.tl[TL_HEAD].tl_ms = (int64_t)cf->cf_header_timeout * 1000;
	W.tl[TL_BODY].tl_ms = (int64_t)cf->cf_body_timeout * 1000;
	W.tl[TL_IDLE].tl_ms = (int64_t)cf->cf_keepalive_timeout * 1000;
	W.tl[TL_WRITE].tl_ms = (int64_t)cf->cf_send_timeout * 1000;
	W.tl[TL_LINGER].tl_ms = 2000;
	W.tl[TL_SLOW].tl_ms = RELAY_TICK_MS;
	W.tl[TL_FAST].tl_ms = 100;

	wctx.wc_cf = cf;
	wctx.wc_log_fd = log_fd;
	wctx.wc_slot = slot;
	if ((wctx.wc_db = db_open(cf->cf_db_path)) == NULL)
		fatalx("cannot open the database %s", cf->cf_db_path);
	static_init(cf->cf_www_dir);

	/* Signals are only delivered inside epoll_pwait: no lost wake-up. */
	child_signals_block(&waitmask);

	if ((W.epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	for (i = 0; i < cf->cf_nlisten; i++) {
		W.listeners[i].es_kind = EV_LISTENER;
		W.listeners[i].es_fd = cf->cf_listen[i].la_fd;
	}
	W.nlisteners = cf->cf_nlisten;
	listeners_enable(1);
	W.lifeline.es_kind = EV_LIFELINE;
	W.lifeline.es_fd = lifeline_fd;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &W.lifeline;
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, lifeline_fd, &ev) == -1)
		fatal("epoll_ctl lifeline");
	if (upstream_init(W.epfd) == -1)
		fatalx("cannot set up the upstream client");

	for (;;) {
		if (qr_child_quit == 2)
			exit(0);
		if (qr_child_quit == 1 || W.drain_wanted)
			worker_drain();
		if (qr_child_reopen) {
			qr_child_reopen = 0;
			log_reopen();
		}
		if (W.draining && (W.nconns == 0 || W.now > W.drain_deadline))
			break;

		n = epoll_pwait(W.epfd, evs, nitems(evs), timer_wait_ms(),
		    &waitmask);
		W.now = now_ms();
		if (n == -1) {
			if (errno != EINTR)
				fatal("epoll_pwait");
			n = 0;
		}
		for (i = 0; i < n; i++) {
			int	 kind = *(int *)evs[i].data.ptr;

			if (kind == EV_CONN) {
				c = evs[i].data.ptr;
				c->co_revents = evs[i].events;
				conn_drive(c);
			} else if (kind == EV_CURL) {
				upstream_event(evs[i].data.ptr,
				    evs[i].events);
			} else if (kind == EV_LISTENER) {
				accept_ready(evs[i].data.ptr);
			} else if (kind == EV_LIFELINE) {
				/* not now: later events of this batch
				 * may point at connections it closes */
				if (read(lifeline_fd, &b, 1) <= 0) {
					epoll_ctl(W.epfd, EPOLL_CTL_DEL,
					    lifeline_fd, NULL);
					W.drain_wanted = 1;
				}
			}
		}
		if (W.accept_resume && W.now >= W.accept_resume) {
			W.accept_resume = 0;
			if (!W.draining)
				listeners_enable(1);
		}
		timer_expire();
		upstream_timers(W.now);
		while ((c = W.dead) != NULL) {
			W.dead = c->co_dnext;
			free(c);
		}
		upstream_reap();
	}
	log_debug("worker done");
	upstream_fini();
	db_close(wctx.wc_db);
	exit(0);
}
