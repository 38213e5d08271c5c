/*
 * tokcount.c - print tokens_count() of each file named, as
 * "<count>\t<file>", for compare.sh to set beside count.js.
 */
#include <sys/types.h>

#include <err.h>
#include <stdio.h>
#include <stdlib.h>

#include "qrelayd.h"

int
main(int argc, char *argv[])
{
	FILE	*fp;
	char	*data;
	long	 len;
	int	 i;

	if (tokens_init() == -1)
		errx(1, "tokens_init failed");
	for (i = 1; i < argc; i++) {
		if ((fp = fopen(argv[i], "rb")) == NULL)
			err(1, "%s", argv[i]);
		if (fseek(fp, 0, SEEK_END) == -1 || (len = ftell(fp)) < 0 ||
		    fseek(fp, 0, SEEK_SET) == -1)
			err(1, "%s", argv[i]);
		if ((data = malloc((size_t)len + 1)) == NULL)
			err(1, NULL);
		if (fread(data, 1, (size_t)len, fp) != (size_t)len)
			errx(1, "%s: short read", argv[i]);
		fclose(fp);
		printf("%lld\t%s\n", (long long)tokens_count(data, (size_t)len),
		    argv[i]);
		free(data);
	}
	return 0;
}
