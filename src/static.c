/*
 * static.c - the files of www_dir (the web console) at "/".
 *
 * The path is percent-decoded once, must be a clean relative path (no
 * "." or ".." segments, no backslash, no NUL), and is opened with
 * openat2(RESOLVE_BENEATH) below the www directory, so neither ".." nor
 * a symbolic link can lead out of it; the kernel checks, not a string
 * comparison. Responses carry an ETag from the file's size and mtime and
 * answer If-None-Match with 304. The body goes out with sendfile(2).
 */
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/openat2.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

static const struct {
	const char	*ext;
	const char	*type;
} static_types[] = {
	{ "html", "text/html; charset=utf-8" },
	{ "htm", "text/html; charset=utf-8" },
	{ "css", "text/css; charset=utf-8" },
	{ "js", "text/javascript; charset=utf-8" },
	{ "mjs", "text/javascript; charset=utf-8" },
	{ "json", "application/json" },
	{ "map", "application/json" },
	{ "svg", "image/svg+xml" },
	{ "png", "image/png" },
	{ "jpg", "image/jpeg" },
	{ "jpeg", "image/jpeg" },
	{ "gif", "image/gif" },
	{ "webp", "image/webp" },
	{ "ico", "image/x-icon" },
	{ "txt", "text/plain; charset=utf-8" },
	{ "woff", "font/woff" },
	{ "woff2", "font/woff2" },
	{ "wasm", "application/wasm" },
};

static int	 www_fd = -1;

static const char *
static_type(const char *path)
{
	const char	*dot = strrchr(path, '.');
	size_t		 i;

	if (dot == NULL || strchr(dot, '/') != NULL)
		return "application/octet-stream";
	for (i = 0; i < nitems(static_types); i++)
		if (strcasecmp(dot + 1, static_types[i].ext) == 0)
			return static_types[i].type;
	return "application/octet-stream";
}

/*
 * A clean relative path: no empty, "." or ".." segment, no backslash,
 * no control byte (a decoded %0A must never reach a log line).
 */
static int
static_path_ok(const char *p)
{
	const char	*seg = p, *e;
	size_t		 n;

	if (strchr(p, '\\') != NULL)
		return 0;
	for (e = p; *e != '\0'; e++)
		if ((unsigned char)*e < 0x20 || *e == 0x7f)
			return 0;
	for (;;) {
		e = strchr(seg, '/');
		n = e ? (size_t)(e - seg) : strlen(seg);
		if ((n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (n == 0 && e != NULL)
			return 0;	/* "//" */
		if (e == NULL)
			return 1;
		seg = e + 1;
	}
}

/* Once per worker: without www_dir only the console is missing. */
void
static_init(const char *dir)
{
	if (www_fd != -1)
		close(www_fd);
	www_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (www_fd == -1)
		log_warn("www_dir %s: the console will not be served", dir);
}

static int
static_open(const char *rel)
{
	struct open_how	 how;
	int		 fd;

	if (www_fd == -1) {
		errno = ENOENT;
		return -1;
	}
	memset(&how, 0, sizeof(how));
	how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	fd = (int)syscall(SYS_openat2, www_fd, rel, &how, sizeof(how));
	return fd;
}

static int
etag_match(const char *inm, size_t len, const char *etag)
{
	size_t	 n = strlen(etag), i = 0;

	/* If-None-Match: "a", W/"b", or * */
	while (i < len) {
		while (i < len && (inm[i] == ' ' || inm[i] == ','))
			i++;
		if (i < len && inm[i] == '*')
			return 1;
		if (len - i >= 2 && inm[i] == 'W' && inm[i + 1] == '/')
			i += 2;
		if (len - i >= n && memcmp(inm + i, etag, n) == 0 &&
		    (len - i == n || inm[i + n] == ',' || inm[i + n] == ' '))
			return 1;
		while (i < len && inm[i] != ',')
			i++;
	}
	return 0;
}

void
static_serve(struct conn *c)
{
	struct http_req	*q = c->co_req;
	struct stat	 st;
	char		 path[1024], etag[64], extra[256];
	const char	*inm, *rel;
	size_t		 inmlen;
	int		 n, fd;

	n = pct_decode(q->rq_path, q->rq_path_len, path, sizeof(path) - 16);
	if (n <= 0 || path[0] != '/') {
		router_error(c, 400, NULL, "bad path");
		return;
	}
	if (path[n - 1] == '/')
		strlcpy_qr(path + n, "index.html", sizeof(path) - (size_t)n);
	rel = path + 1;
	if (!static_path_ok(rel)) {
		router_error(c, 404, NULL, "not found");
		return;
	}
	if ((fd = static_open(rel)) == -1) {
		/* what a client can provoke is not worth a log line */
		if (errno != ENOENT && errno != ENOTDIR && errno != EXDEV &&
		    errno != ELOOP && errno != ENAMETOOLONG)
			log_warn("open %s", rel);
		router_error(c, 404, NULL, "not found");
		return;
	}
	if (fstat(fd, &st) == -1) {
		log_warn("fstat %s", rel);
		close(fd);
		router_error(c, 500, NULL, NULL);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		if (S_ISDIR(st.st_mode)) {
			snprintf(extra, sizeof(extra), "Location: %.*s/\r\n",
			    (int)(q->rq_path_len > 200 ? 200 : q->rq_path_len),
			    q->rq_path);
			conn_respond(c, 301, NULL, NULL, 0, extra);
			return;
		}
		router_error(c, 404, NULL, "not found");
		return;
	}
	snprintf(etag, sizeof(etag), "\"%llx-%llx\"",
	    (unsigned long long)st.st_size,
	    (unsigned long long)st.st_mtim.tv_sec * 1000000000ULL +
	    (unsigned long long)st.st_mtim.tv_nsec);
	snprintf(extra, sizeof(extra), "ETag: %s\r\nCache-Control: no-cache\r\n"
	    "X-Content-Type-Options: nosniff\r\n", etag);
	inm = conn_header(c, "If-None-Match", &inmlen);
	if (inm && etag_match(inm, inmlen, etag)) {
		close(fd);
		conn_respond(c, 304, NULL, NULL, 0, extra);
		return;
	}
	conn_respond_file(c, static_type(rel), fd, st.st_size, extra);
}
