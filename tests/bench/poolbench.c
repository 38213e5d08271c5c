/*
 * poolbench.c - how long pool_pick (and its pool_release) takes on a
 * large pool, with several worker processes picking at once, for each
 * strategy. The target is under 1 us per pick with 10,000
 * accounts and 8 workers' worth of concurrent picks.
 *
 *   poolbench [-n accounts] [-p procs,...] [-i picks per process]
 *             [-s strategy]   (defaults: 10000, "1,8", 200000, all)
 *
 * A shared table like the daemon's (shm_create) is filled with ready
 * accounts holding 1 KB tokens; P processes are forked and each loops
 * pick + release. Per strategy and process count it prints
 *   strategy=round_robin accounts=10000 procs=8 ns_per_pick=...
 * where ns_per_pick is each process's CLOCK_MONOTONIC loop time per
 * pick, averaged over the processes (with more processes than CPUs this
 * includes waiting for a CPU), cpu_ns_per_pick the same in CPU time,
 * and picks_per_s the total over the run. The variant cooling=N has all
 * but N/1000 of the accounts cooling down (the probe's worst realistic
 * case: the few ready ones spread out), sticky=1 adds a stickiness key
 * per request (1000 conversations).
 *
 * No network, no daemon: the worker's per-request code, in a loop.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qrelayd.h"

struct result {
	_Atomic int	 go;
	_Atomic int	 ready;
	struct {
		int64_t	 start_ns, end_ns, cpu_ns;
		int64_t	 fails;
	}		 r[64];
};

static struct shm	 S;

static int64_t
ns_of(clockid_t clk)
{
	struct timespec	 ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
fill(uint32_t n)
{
	struct shm_acct_meta	 m;
	char			 label[32], *tok;
	uint32_t		 i;
	int64_t			 exp = now_wall() + 86400;

	if ((tok = malloc(1025)) == NULL)
		err(1, "malloc");
	for (i = 0; i < 1024; i++)
		tok[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i % 36];
	tok[1024] = '\0';
	for (i = 0; i < n; i++) {
		memset(&m, 0, sizeof(m));
		snprintf(label, sizeof(label), "acct-%u", i);
		m.am_id = i + 1;
		m.am_state = ACCT_ENABLED;
		m.am_label = label;
		m.am_region = "us-east-1";
		m.am_profile_arn =
		    "arn:aws:codewhisperer:us-east-1:699475941385:profile/X";
		m.am_proxy = "";
		if (shm_acct_put(&S, &m, tok, exp) != (int)i)
			errx(1, "shm_acct_put %u", i);
		/* a spread of remaining quota for the weighted table */
		atomic_store(&S.shm_accts[i].sa_usage_limit, 50000);
		atomic_store(&S.shm_accts[i].sa_usage_used,
		    (int64_t)((i * 7919) % 49000));
	}
	free(tok);
}

/* all but `ready` accounts (spread evenly) cooling down, or none */
static void
cool(uint32_t n, uint32_t ready)
{
	uint32_t	 i, step = ready > 0 ? n / ready : 0;
	int64_t		 until = ready > 0 ? now_wall() + 3600 : 0;

	for (i = 0; i < n; i++)
		atomic_store(&S.shm_accts[i].sa_cooldown_until,
		    ready > 0 && i % step == step / 2 ? 0 : until);
}

static void
child(struct result *res, int idx, long iters, int sticky)
{
	struct pool_pick	*pp;
	uint64_t		 key = 0;
	int64_t			 c0, fails = 0;
	long			 i;

	if ((pp = malloc(sizeof(*pp))) == NULL)
		_exit(1);
	atomic_fetch_add(&res->ready, 1);
	while (!atomic_load(&res->go))
		;
	c0 = ns_of(CLOCK_PROCESS_CPUTIME_ID);
	res->r[idx].start_ns = ns_of(CLOCK_MONOTONIC);
	for (i = 0; i < iters; i++) {
		if (sticky)
			key = (uint64_t)(i * 7 + idx) % 1000 + 1;
		if (pool_pick(&S, pp, key, NULL, 0) != POOL_OK) {
			fails++;
			continue;
		}
		pool_release(&S, pp->pp_slot, 1, NULL);
	}
	res->r[idx].end_ns = ns_of(CLOCK_MONOTONIC);
	res->r[idx].cpu_ns = ns_of(CLOCK_PROCESS_CPUTIME_ID) - c0;
	res->r[idx].fails = fails;
	_exit(0);
}

static void
run(struct result *res, const char *name, uint32_t n, int procs, long iters,
    uint32_t ready, int sticky)
{
	pid_t		 pid;
	int		 i, status;
	double		 wall = 0, cpu = 0;
	int64_t		 first = INT64_MAX, last = 0, fails = 0;

	memset(res, 0, sizeof(*res));
	for (i = 0; i < procs; i++) {
		if ((pid = fork()) == -1)
			err(1, "fork");
		if (pid == 0)
			child(res, i, iters, sticky);
	}
	while (atomic_load(&res->ready) < procs)
		usleep(1000);
	atomic_store(&res->go, 1);
	for (i = 0; i < procs; i++) {
		if (wait(&status) == -1)
			err(1, "wait");
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			errx(1, "a child failed");
	}
	for (i = 0; i < procs; i++) {
		wall += (double)(res->r[i].end_ns - res->r[i].start_ns) / iters;
		cpu += (double)res->r[i].cpu_ns / iters;
		if (res->r[i].start_ns < first)
			first = res->r[i].start_ns;
		if (res->r[i].end_ns > last)
			last = res->r[i].end_ns;
		fails += res->r[i].fails;
	}
	printf("strategy=%s accounts=%u procs=%d ns_per_pick=%.0f "
	    "cpu_ns_per_pick=%.0f picks_per_s=%.0f", name, n, procs,
	    wall / procs, cpu / procs,
	    (double)procs * iters * 1e9 / (double)(last - first));
	if (ready > 0)
		printf(" cooling=%u", n - ready);
	if (sticky)
		printf(" sticky=1");
	if (fails > 0)
		printf(" failed=%lld", (long long)fails);
	printf("\n");
	fflush(stdout);
}

int
main(int argc, char *argv[])
{
	struct result	*res;
	uint32_t	 n = 10000, ready;
	long		 iters = 200000;
	int		 procs[8], nprocs = 0, ch, st, p, v, only = -1;
	char		*list = NULL, *tok, *save;

	while ((ch = getopt(argc, argv, "n:p:i:s:")) != -1) {
		switch (ch) {
		case 's':
			if ((only = pool_strategy_parse(optarg)) == -1)
				errx(2, "unknown strategy %s", optarg);
			break;
		case 'n':
			n = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'p':
			list = optarg;
			break;
		case 'i':
			iters = strtol(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: poolbench [-n accounts] "
			    "[-p procs,...] [-i picks] [-s strategy]\n");
			return 2;
		}
	}
	if (list == NULL)
		list = strdup("1,8");
	for (tok = strtok_r(list, ",", &save); tok != NULL && nprocs < 8;
	    tok = strtok_r(NULL, ",", &save)) {
		procs[nprocs] = atoi(tok);
		if (procs[nprocs] < 1 || procs[nprocs] > 64)
			errx(2, "procs: 1..64");
		nprocs++;
	}
	if (n < 1000 || iters < 1)
		errx(2, "at least 1000 accounts and 1 pick");

	log_init(1, 0, "poolbench");
	if (shm_create(&S, n, 8) == -1)
		err(1, "shm_create");
	res = mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED)
		err(1, "mmap");
	fill(n);

	/* v 0: all ready; 1: all but n / 1000 cooling down */
	for (v = 0; v < 2; v++) {
		ready = v == 0 ? 0 : n / 1000;
		cool(n, ready);
		for (st = POOL_ROUND_ROBIN; st <= POOL_SEQUENTIAL; st++) {
			if (only != -1 && st != only)
				continue;
			atomic_store(&S.shm_hdr->sh_strategy, st);
			pool_weights_build(&S);
			for (p = 0; p < nprocs; p++)
				run(res, pool_strategy_name(st), n, procs[p],
				    iters, ready, 0);
		}
	}
	if (only != -1 && only != POOL_ROUND_ROBIN)
		goto done;
	cool(n, 0);
	atomic_store(&S.shm_hdr->sh_strategy, POOL_ROUND_ROBIN);
	atomic_store(&S.shm_hdr->sh_sticky_ttl, 60);
	for (p = 0; p < nprocs; p++)
		run(res, "round_robin", n, procs[p], iters, 0, 1);
 done:
	shm_destroy(&S);
	return 0;
}
