/*
 * buf.c - the one growable byte buffer used for requests, responses and
 * JSON text. A buffer has a consumed front (b_off) so a writer can drain
 * it without moving bytes on every write.
 */
#include <stdlib.h>
#include <string.h>

#include "qrelayd.h"

void
buf_init(struct buf *b)
{
	memset(b, 0, sizeof(*b));
}

void
buf_free(struct buf *b)
{
	free(b->b_data);
	buf_init(b);
}

void
buf_reset(struct buf *b)
{
	b->b_len = b->b_off = 0;
}

int
buf_reserve(struct buf *b, size_t n)
{
	size_t	 cap;
	char	*p;

	if (b->b_cap - b->b_len > n)	/* keep room for a NUL */
		return 0;
	if (b->b_off > 0 && b->b_off >= b->b_len / 2) {
		buf_compact(b);
		if (b->b_cap - b->b_len > n)
			return 0;
	}
	if (n > SIZE_MAX / 2 - b->b_len)
		return -1;
	cap = b->b_cap ? b->b_cap : 256;
	while (cap - b->b_len <= n)
		cap *= 2;
	if ((p = realloc(b->b_data, cap)) == NULL)
		return -1;
	b->b_data = p;
	b->b_cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) == -1)
		return -1;
	if (n)
		memcpy(b->b_data + b->b_len, p, n);
	b->b_len += n;
	b->b_data[b->b_len] = '\0';
	return 0;
}

int
buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n + 1) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->b_data + b->b_len, b->b_cap - b->b_len, fmt, ap);
	va_end(ap);
	b->b_len += (size_t)n;
	return 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	b->b_off += n;
	if (b->b_off >= b->b_len)
		b->b_off = b->b_len = 0;
}

void
buf_compact(struct buf *b)
{
	if (b->b_off == 0)
		return;
	memmove(b->b_data, b->b_data + b->b_off, b->b_len - b->b_off);
	b->b_len -= b->b_off;
	b->b_off = 0;
	if (b->b_data)
		b->b_data[b->b_len] = '\0';
}
