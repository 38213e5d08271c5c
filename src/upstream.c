/*
 * upstream.c - the worker's libcurl multi handle, driven by its epoll loop.
 *
 * One multi handle per worker, made after fork. libcurl tells us which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
 * (CURLMOPT_TIMERFUNCTION); the worker's epoll loop hands the events
 * back with curl_multi_socket_action, so thousands of upstream transfers
 * share the loop that serves the clients (curl's hiperfifo example shows
 * the pattern). Finished transfers go to relay_done, which owns them.
 *
 * A socket libcurl drops is not freed at once: an event for it may still
 * sit later in the same epoll batch. It waits on a list until the end of
 * the loop turn (upstream_reap).
 */
#include <sys/epoll.h>

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "qrelayd.h"

struct usock {
	int		 us_kind;	/* EV_CURL: first, see enum ev_kind */
	curl_socket_t	 us_fd;
	int		 us_dead;
	struct usock	*us_next;	/* dead list */
};

#define UPSTREAM_SPARE	32	/* easy handles kept for the next requests */

static struct {
	CURLM		*multi;
	int		 epfd;
	int64_t		 deadline;	/* ms monotonic, 0 none */
	int		 running;
	struct usock	*dead;
	CURL		*spare[UPSTREAM_SPARE];
	int		 nspare;
} U;

static int
upstream_socket_cb(CURL *easy, curl_socket_t fd, int what, void *arg,
    void *sockp)
{
	struct usock		*u = sockp;
	struct epoll_event	 ev;

	if (what == CURL_POLL_REMOVE) {
		if (u != NULL) {
			/* curl may already have closed fd: ENOENT/EBADF are
			 * fine, the kernel dropped it from the set then */
			epoll_ctl(U.epfd, EPOLL_CTL_DEL, fd, NULL);
			curl_multi_assign(U.multi, fd, NULL);
			u->us_dead = 1;
			u->us_next = U.dead;
			U.dead = u;
		}
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (u == NULL) {
		if ((u = calloc(1, sizeof(*u))) == NULL) {
			log_warnx("%s: out of memory", __func__);
			return -1;
		}
		u->us_kind = EV_CURL;
		u->us_fd = fd;
		ev.data.ptr = u;
		if (epoll_ctl(U.epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
			log_warn("%s: epoll_ctl add", __func__);
			free(u);
			return -1;
		}
		curl_multi_assign(U.multi, fd, u);
		return 0;
	}
	ev.data.ptr = u;
	if (epoll_ctl(U.epfd, EPOLL_CTL_MOD, fd, &ev) == -1) {
		log_warn("%s: epoll_ctl mod", __func__);
		return -1;
	}
	return 0;
}

/* 0 ms means "now": a deadline of 1 is due whatever the loop's idea of
 * the time (a fresh now_ms() could be a millisecond past the loop's
 * W.now, and the loop would sleep that millisecond first). */
static int
upstream_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	if (timeout_ms < 0)
		U.deadline = 0;
	else if (timeout_ms == 0)
		U.deadline = 1;
	else
		U.deadline = now_ms() + timeout_ms;
	return 0;
}

/* Hand every finished transfer to its relay. */
static void
upstream_check_done(void)
{
	CURLMsg	*m;
	int	 left;

	while ((m = curl_multi_info_read(U.multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		relay_done(m->easy_handle, (int)m->data.result);
	}
}

int
upstream_init(int epfd)
{
	memset(&U, 0, sizeof(U));
	U.epfd = epfd;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	if ((U.multi = curl_multi_init()) == NULL)
		return -1;
	curl_multi_setopt(U.multi, CURLMOPT_SOCKETFUNCTION,
	    upstream_socket_cb);
	curl_multi_setopt(U.multi, CURLMOPT_TIMERFUNCTION, upstream_timer_cb);
	/* keep warm connections to the upstream between requests */
	curl_multi_setopt(U.multi, CURLMOPT_MAXCONNECTS, 256L);
	return 0;
}

void
upstream_fini(void)
{
	while (U.nspare > 0)
		curl_easy_cleanup(U.spare[--U.nspare]);
	if (U.multi != NULL)
		curl_multi_cleanup(U.multi);
	U.multi = NULL;
	upstream_reap();
}

/* An easy handle with default options: a used one when there is one
 * (curl_easy_reset is cheaper than a new handle), else a new one. */
void *
upstream_easy_get(void)
{
	CURL	*e;

	if (U.nspare == 0)
		return curl_easy_init();
	e = U.spare[--U.nspare];
	curl_easy_reset(e);
	return e;
}

/* Give back a handle already out of the multi handle. */
void
upstream_easy_put(void *e)
{
	if (U.nspare < UPSTREAM_SPARE)
		U.spare[U.nspare++] = e;
	else
		curl_easy_cleanup(e);
}

void *
upstream_multi(void)
{
	return U.multi;
}

void
upstream_event(void *src, uint32_t events)
{
	struct usock	*u = src;
	int		 action = 0;

	if (u->us_dead)
		return;
	if (events & EPOLLIN)
		action |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		action |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		action |= CURL_CSELECT_ERR;
	curl_multi_socket_action(U.multi, u->us_fd, action, &U.running);
	upstream_check_done();
}

int64_t
upstream_deadline(void)
{
	return U.deadline;
}

/* Also run each loop turn for transfers that ended outside an event
 * (a paused one resumed and finished, say). */
void
upstream_timers(int64_t now)
{
	if (U.multi == NULL)
		return;
	if (U.deadline && now >= U.deadline) {
		U.deadline = 0;
		curl_multi_socket_action(U.multi, CURL_SOCKET_TIMEOUT, 0,
		    &U.running);
	}
	upstream_check_done();
}

void
upstream_reap(void)
{
	struct usock	*u;

	while ((u = U.dead) != NULL) {
		U.dead = u->us_next;
		free(u);
	}
}
