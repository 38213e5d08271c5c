/*
 * tokbench.c - how long tokens_count() takes on a prompt of a given size
 * (100 KB unless -s says otherwise), built by repeating the files named
 * (tests/tokenizer/corpus/english.txt and code.txt unless some are).
 * Prints the median, min and max of -n runs (CLOCK_MONOTONIC); the
 * vocabulary is loaded before the clock starts, as the master does it
 * before forking. Under callgrind, run with -n 1 and
 * --toggle-collect=tokens_count to count one call's instructions.
 */
#include <sys/types.h>

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qrelayd.h"

static int
cmp_double(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
append_file(struct buf *b, const char *path)
{
	FILE	*fp;
	char	 chunk[8192];
	size_t	 n;

	if ((fp = fopen(path, "rb")) == NULL)
		err(1, "%s", path);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		if (buf_append(b, chunk, n) == -1)
			err(1, NULL);
	fclose(fp);
}

int
main(int argc, char *argv[])
{
	static const char *defaults[] = {
		"tests/tokenizer/corpus/english.txt",
		"tests/tokenizer/corpus/code.txt",
	};
	struct buf	 src, prompt;
	struct timespec	 t0, t1;
	const char	**files;
	const char	*e;
	double		*ms;
	size_t		 size = 100 * 1024, n;
	int64_t		 count = 0;
	int		 runs = 101, nfiles, ch, i;

	while ((ch = getopt(argc, argv, "n:s:")) != -1) {
		switch (ch) {
		case 'n':
			runs = (int)strtol(optarg, NULL, 10);
			break;
		case 's':
			size = strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: tokbench [-n runs] [-s bytes] "
			    "[file ...]\n");
			return 1;
		}
	}
	if (runs < 1 || size == 0)
		errx(1, "bad -n or -s");
	files = argc > optind ? (const char **)(argv + optind) : defaults;
	nfiles = argc > optind ? argc - optind : (int)nitems(defaults);

	buf_init(&src);
	buf_init(&prompt);
	for (i = 0; i < nfiles; i++)
		append_file(&src, files[i]);
	if (src.b_len == 0)
		errx(1, "no text");
	while (prompt.b_len < size) {
		n = src.b_len < size - prompt.b_len ? src.b_len :
		    size - prompt.b_len;
		/* Cut on a character boundary. */
		while (n > 0 && n < src.b_len &&
		    ((unsigned char)src.b_data[n] & 0xc0) == 0x80)
			n--;
		if (n == 0)
			break;
		if (buf_append(&prompt, src.b_data, n) == -1)
			err(1, NULL);
	}

	if (tokens_init() == -1)
		errx(1, "tokens_init failed");
	if ((ms = calloc((size_t)runs, sizeof(*ms))) == NULL)
		err(1, NULL);
	for (i = 0; i < runs; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		count = tokens_count(prompt.b_data, prompt.b_len);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	}
	qsort(ms, (size_t)runs, sizeof(*ms), cmp_double);
	e = nfiles == 1 ? files[0] : "files";
	printf("tokens_count: %zu bytes (%s%s), %lld tokens, %d runs: "
	    "median %.3f ms, min %.3f ms, max %.3f ms\n", prompt.b_len, e,
	    nfiles == 1 ? "" : " mixed", (long long)count, runs,
	    ms[runs / 2], ms[0], ms[runs - 1]);
	free(ms);
	buf_free(&src);
	buf_free(&prompt);
	return 0;
}
