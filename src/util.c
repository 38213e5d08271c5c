/*
 * util.c - small helpers shared by every process: clocks, descriptors,
 * randomness, hashing, paths and the few string functions libc lacks.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "qrelayd.h"

int64_t
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

time_t
now_wall(void)
{
	return time(NULL);
}

int
set_nonblock(int fd)
{
	int	 fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ? -1 : 0;
}

int
random_bytes(void *p, size_t n)
{
	/* OpenSSL's DRBG: seeded from getrandom(2), reseeded after fork,
	 * and no system call per id on the request path */
	if (n > INT_MAX || RAND_bytes(p, (int)n) != 1)
		return -1;
	return 0;
}

void
hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

int
ct_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

int
mkdir_p(const char *path, mode_t mode)
{
	char	 tmp[PATH_MAX], *p;

	if (strlcpy_qr(tmp, path, sizeof(tmp)) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

size_t
strlcpy_qr(char *dst, const char *src, size_t dsize)
{
	size_t	 n = strlen(src);

	if (dsize > 0) {
		size_t	 c = n < dsize - 1 ? n : dsize - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

int
strcaseeq_n(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s into out (NUL-terminated). Refuses NUL bytes and bad
 * escapes; returns the decoded length or -1. */
int
pct_decode(const char *s, size_t n, char *out, size_t outsz)
{
	size_t	 i, o = 0;
	int	 hi, lo, c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '%') {
			if (n - i < 3)
				return -1;
			if ((hi = hexval(s[i + 1])) == -1 ||
			    (lo = hexval(s[i + 2])) == -1)
				return -1;
			c = hi << 4 | lo;
			i += 2;
		}
		if (c == '\0' || o + 1 >= outsz)
			return -1;
		out[o++] = (char)c;
	}
	if (outsz == 0)
		return -1;
	out[o] = '\0';
	return (int)o;
}

/* ISO 8601 UTC ("2026-11-26T14:27:19Z"); NULL for t <= 0 ("never"). */
const char *
fmt_iso8601(int64_t t, char out[32])
{
	struct tm	 tm;
	time_t		 tt = (time_t)t;

	if (t <= 0 || gmtime_r(&tt, &tm) == NULL)
		return NULL;
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return out;
}

void
fmt_rfc1123(time_t t, char out[40])
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}


/* A random (version 4) UUID in its 36-character text form. */
int
uuid4(char out[37])
{
	unsigned char	 u[16];
	char		 hex[33];

	if (random_bytes(u, sizeof(u)) == -1)
		return -1;
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	hex_encode(u, sizeof(u), hex);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8,
	    hex + 12, hex + 16, hex + 20);
	return 0;
}
