/*
 * pool.c - picking an upstream account for a request, and the health
 * the workers learn about accounts (cooldowns, quotas, suspension).
 *
 * Runs in the workers, on every relayed request, and touches only the
 * shared table: no lock, no database. A pick takes the account's caps
 * (in-flight count, requests per minute) with atomics, then copies its
 * token under the slot's seqlock into the caller's struct pool_pick, so
 * a worker never sees half of a token the refresher is writing.
 *
 * Strategies (sh_strategy), each O(1) expected:
 *  - round_robin: a shared cursor (sh_rr_next), then a forward probe to
 *    the first slot that can serve;
 *  - random: a random start, then the same probe;
 *  - least_inflight: an exact scan up to 64 slots; beyond that the best
 *    (fewest in flight, then least recently used) of 8 random samples,
 *    "the power of d choices": near the optimum at a fixed cost;
 *  - weighted: a draw in the cumulative table the refresher publishes
 *    (pool_weights_build: remaining quota), binary-searched; a few more
 *    draws when the drawn slot cannot serve, then round robin;
 *  - sequential: the slot at sh_seq_hint while it can serve; the hint
 *    moves forward when it cannot, and back to the lowest ready slot
 *    at each pool_weights_build.
 * Only when the probe finds nothing is the whole table scanned, to tell
 * the caller why (POOL_BUSY, POOL_LIMITED with a retry time, POOL_NONE).
 * Before the strategy, a stickiness key (a conversation) takes the
 * account of its entry in shm_sticky again while that account serves.
 *
 * A pool where most accounts cannot serve (thousands cooling down or
 * exhausted) would make every probe walk them. Each process therefore
 * keeps a private bitmap of slots it found not ready; probes skip them
 * with one test per 64 slots. The bitmap is forgotten every wall-clock
 * second and whenever a slot is written under the lock (sh_changes: a
 * reload, a new token, a person's enable), so an account that comes
 * back is seen within a second; the scan of the failure path ignores
 * the bitmap, so it never turns a servable pool into an error.
 *
 * When the upstream says "bearer token invalid", the worker flags the
 * slot and wakes the refresher with SIGUSR2. The refresher keeps the
 * signal blocked except while it sleeps in ppoll, and sets no flag of
 * its own: it rescans every slot each time it wakes, so a wake-up that
 * arrives while it is busy stays pending and is never lost.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qrelayd.h"

#define POOL_MIN_VALID		60	/* seconds a picked token must still live */
#define POOL_READ_TRIES		100	/* seqlock copy attempts */
#define POOL_EXACT_MAX		64	/* least_inflight: scan all up to this */
#define POOL_SAMPLES		8	/* least_inflight: else sample this many */
#define POOL_DRAWS		4	/* weighted: draws before probing */
#define POOL_STICKY_PROBES	4	/* sticky entries looked at per key */
#define POOL_BACKOFF_MAX	300	/* seconds, 429 backoff ceiling */
#define POOL_RETRY_AFTER_MAX	86400	/* a Retry-After beyond is nonsense */
#define POOL_BM_WORDS		((1000000 + 63) / 64)	/* shm_create's max */

/* cand() verdicts */
#define C_OK		0
#define C_NOTREADY	1
#define C_EXCLUDED	2
#define C_CAPPED	3

struct pick_ctx {
	struct shm		*c_shm;
	struct pool_pick	*c_pp;
	const int		*c_ex;
	int			 c_nex;
	uint32_t		 c_high;
	int64_t			 c_now;		/* wall seconds */
	int64_t			 c_now_us;	/* monotonic, 0 not read yet */
	int64_t			 c_rpm_t;	/* GCRA interval taken, undo */
};

static const char *const pool_names[] = {
	[POOL_ROUND_ROBIN] = "round_robin",
	[POOL_LEAST_INFLIGHT] = "least_inflight",
	[POOL_RANDOM] = "random",
	[POOL_WEIGHTED] = "weighted",
	[POOL_SEQUENTIAL] = "sequential",
};

/* per process: PRNG and the not-ready bitmap */
static uint64_t		 pool_rng;
static int		 pool_atfork_set;
static uint64_t		 pool_bm[POOL_BM_WORDS];
static uint32_t		 pool_bm_used;		/* words that may be set */
static int64_t		 pool_bm_now;
static uint32_t		 pool_bm_gen;

const char *
pool_strategy_name(int st)
{
	if (st < 0 || (size_t)st >= nitems(pool_names))
		return "unknown";
	return pool_names[st];
}

int
pool_strategy_parse(const char *name)
{
	size_t	 i;

	if (name == NULL)
		return -1;
	for (i = 0; i < nitems(pool_names); i++)
		if (strcmp(name, pool_names[i]) == 0)
			return (int)i;
	return -1;
}

/* ---- per-process randomness ---- */

static void
pool_rng_forget(void)
{
	pool_rng = 0;		/* a forked child must not replay the parent */
}

/* xorshift64*: a pick needs spread, not secrecy; seeded from the DRBG. */
static uint64_t
rng_next(void)
{
	uint64_t	 x = pool_rng;

	if (x == 0) {
		if (!pool_atfork_set) {
			pool_atfork_set = 1;
			(void)pthread_atfork(NULL, NULL, pool_rng_forget);
		}
		if (random_bytes(&x, sizeof(x)) == -1 || x == 0)
			x = ((uint64_t)now_us() * 0x9e3779b97f4a7c15ULL ^
			    (uint64_t)getpid()) | 1;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	pool_rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* uniform below n (Lemire's multiply-shift, no division) */
static uint64_t
rng_below(uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next() * n) >> 64);
}

/* ---- the not-ready bitmap ---- */

static void
bm_epoch(struct shm *s, int64_t now)
{
	uint32_t	 gen = atomic_load_explicit(&s->shm_hdr->sh_changes,
			    memory_order_relaxed);

	if (now == pool_bm_now && gen == pool_bm_gen)
		return;
	memset(pool_bm, 0, (size_t)pool_bm_used * sizeof(pool_bm[0]));
	pool_bm_used = 0;
	pool_bm_now = now;
	pool_bm_gen = gen;
}

static void
bm_mark(uint32_t slot)
{
	uint32_t	 w = slot >> 6;

	pool_bm[w] |= 1ULL << (slot & 63);
	if (w >= pool_bm_used)
		pool_bm_used = w + 1;
}

static void
bm_clear(uint32_t slot)
{
	uint64_t	 bit = 1ULL << (slot & 63);

	if (pool_bm[slot >> 6] & bit)
		pool_bm[slot >> 6] &= ~bit;
}

static int
bm_test(uint32_t slot)
{
	return (pool_bm[slot >> 6] >> (slot & 63)) & 1;
}

/* The first slot in [i, end) not marked, or end. */
static uint32_t
bm_next(uint32_t i, uint32_t end)
{
	uint64_t	 w;

	while (i < end) {
		w = ~pool_bm[i >> 6] >> (i & 63);
		if (w != 0) {
			i += (uint32_t)__builtin_ctzll(w);
			return i < end ? i : end;
		}
		i = (i | 63) + 1;
	}
	return end;
}

/* ---- one slot ---- */

/*
 * Read on live slots too, where sa_expires and sa_token race with the
 * refresher: only as a hint, the seqlock copy of acct_copy decides. The
 * hot cache line (cooldown, exhausted) is looked at first, since that
 * is what rules most unusable slots out.
 */
int
pool_acct_ready(const struct shm_acct *a, int64_t now)
{
	return atomic_load_explicit(&a->sa_cooldown_until,
	    memory_order_relaxed) <= now &&
	    atomic_load_explicit(&a->sa_exhausted_until,
	    memory_order_relaxed) <= now &&
	    atomic_load_explicit(&a->sa_state, memory_order_relaxed) ==
	    ACCT_ENABLED &&
	    __atomic_load_n(&a->sa_expires, __ATOMIC_RELAXED) >
	    now + POOL_MIN_VALID &&
	    __atomic_load_n(&a->sa_token[0], __ATOMIC_RELAXED) != '\0';
}

int
pool_acct_state(const struct shm_acct *a, int64_t now, int64_t *until)
{
	int32_t	 st = atomic_load(&a->sa_state);
	int64_t	 cu, eu, u = 0;

	if (st == ACCT_ENABLED) {
		cu = atomic_load(&a->sa_cooldown_until);
		eu = atomic_load(&a->sa_exhausted_until);
		if (eu > now) {
			st = ACCT_EXHAUSTED;
			u = eu;
		} else if (cu > now) {
			st = ACCT_COOLDOWN;
			u = cu;
		}
	}
	if (until != NULL)
		*until = u;
	return st;
}

static int
excluded(const struct pick_ctx *c, uint32_t slot)
{
	int	 i;

	for (i = 0; i < c->c_nex; i++)
		if (c->c_ex[i] == (int)slot)
			return 1;
	return 0;
}

static int64_t
ctx_now_us(struct pick_ctx *c)
{
	if (c->c_now_us == 0)
		c->c_now_us = now_us();
	return c->c_now_us;
}

/* GCRA: interval T = 60 s / rpm, burst tolerance 60 s - T, so rpm
 * requests may come at once and then one every T. */
static int64_t
gcra_interval(int32_t rpm)
{
	return 60000000 / rpm > 0 ? 60000000 / rpm : 1;
}

/* 1 when the caps would let one more request in (no side effect). */
static int
caps_peek(struct pick_ctx *c, struct shm_acct *a)
{
	int32_t	 max, rpm;
	int64_t	 t, tat, now;

	max = atomic_load_explicit(&a->sa_max_inflight, memory_order_relaxed);
	if (max > 0 && atomic_load_explicit(&a->sa_inflight,
	    memory_order_relaxed) >= max)
		return 0;
	rpm = atomic_load_explicit(&a->sa_rpm, memory_order_relaxed);
	if (rpm > 0) {
		t = gcra_interval(rpm);
		now = ctx_now_us(c);
		tat = atomic_load_explicit(&a->sa_rpm_tat,
		    memory_order_relaxed);
		if (tat > now && tat - now > 60000000 - t)
			return 0;
	}
	return 1;
}

/*
 * Takes one in-flight place and one request of the minute: in-flight
 * first (fetch_add, given back when over the cap), then the GCRA in one
 * CAS loop; when the second fails the first is given back, so a failure
 * leaves nothing taken.
 */
static int
caps_take(struct pick_ctx *c, struct shm_acct *a)
{
	int32_t	 max, rpm;
	int64_t	 t, tat, base, now;

	c->c_rpm_t = 0;
	max = atomic_load_explicit(&a->sa_max_inflight, memory_order_relaxed);
	if (atomic_fetch_add_explicit(&a->sa_inflight, 1,
	    memory_order_acq_rel) + 1 > max && max > 0) {
		atomic_fetch_sub_explicit(&a->sa_inflight, 1,
		    memory_order_release);
		return -1;
	}
	rpm = atomic_load_explicit(&a->sa_rpm, memory_order_relaxed);
	if (rpm <= 0)
		return 0;
	t = gcra_interval(rpm);
	now = ctx_now_us(c);
	tat = atomic_load_explicit(&a->sa_rpm_tat, memory_order_relaxed);
	do {
		base = tat > now ? tat : now;
		if (base - now > 60000000 - t) {
			atomic_fetch_sub_explicit(&a->sa_inflight, 1,
			    memory_order_release);
			return -1;
		}
	} while (!atomic_compare_exchange_weak_explicit(&a->sa_rpm_tat, &tat,
	    base + t, memory_order_acq_rel, memory_order_relaxed));
	c->c_rpm_t = t;
	return 0;
}

static void
caps_undo(struct pick_ctx *c, struct shm_acct *a)
{
	atomic_fetch_sub_explicit(&a->sa_inflight, 1, memory_order_release);
	if (c->c_rpm_t > 0)
		atomic_fetch_sub_explicit(&a->sa_rpm_tat, c->c_rpm_t,
		    memory_order_relaxed);
	c->c_rpm_t = 0;
}

_Static_assert(sizeof(((struct pool_pick *)0)->pp_region) ==
    sizeof(((struct shm_acct *)0)->sa_region) &&
    sizeof(((struct pool_pick *)0)->pp_profile_arn) ==
    sizeof(((struct shm_acct *)0)->sa_profile_arn) &&
    sizeof(((struct pool_pick *)0)->pp_proxy) ==
    sizeof(((struct shm_acct *)0)->sa_proxy) &&
    sizeof(((struct pool_pick *)0)->pp_token) ==
    sizeof(((struct shm_acct *)0)->sa_token), "pick and slot differ");

/* src up to its NUL, bounded (it may be torn mid-write): its length */
static size_t
copy_str(char *dst, const char *src, size_t size)
{
	size_t	 len = strnlen(src, size - 1);

	memcpy(dst, src, len);
	dst[len] = '\0';
	return len;
}

/*
 * A seqlock copy (as shm_acct_read, see there) of only what the request
 * needs, straight into pp: the token up to its NUL rather than the whole
 * 3 KB slot, since on a large pool the slot is rarely in cache.
 */
static int
acct_copy(struct shm_acct *a, struct pool_pick *pp, int64_t now)
{
	uint32_t	 seq;
	int64_t		 id, expires;
	int32_t		 st;
	size_t		 len = 0;
	int		 tries;

	/* before the copy: a refresh landing meanwhile shows as changed */
	pp->pp_token_gen = atomic_load_explicit(&a->sa_token_gen,
	    memory_order_acquire);
	for (tries = 0; tries < POOL_READ_TRIES; tries++) {
		seq = atomic_load_explicit(&a->sa_seq, memory_order_acquire);
		if (seq & 1) {
			shm_relax();
			continue;
		}
		st = atomic_load_explicit(&a->sa_state, memory_order_relaxed);
		id = a->sa_id;
		expires = a->sa_expires;
		len = copy_str(pp->pp_token, a->sa_token, sizeof(pp->pp_token));
		copy_str(pp->pp_region, a->sa_region, sizeof(pp->pp_region));
		copy_str(pp->pp_profile_arn, a->sa_profile_arn,
		    sizeof(pp->pp_profile_arn));
		copy_str(pp->pp_proxy, a->sa_proxy, sizeof(pp->pp_proxy));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&a->sa_seq, memory_order_relaxed) !=
		    seq) {
			shm_relax();
			continue;
		}
		if (id == 0 || st != ACCT_ENABLED || len == 0 ||
		    expires <= now + POOL_MIN_VALID)
			break;
		pp->pp_id = id;
		return 0;
	}
	explicit_bzero(pp->pp_token, len + 1);
	return -1;
}

/* Whether slot could serve this request now; marks the not-ready. */
static int
cand(struct pick_ctx *c, uint32_t slot)
{
	struct shm_acct	*a = &c->c_shm->shm_accts[slot];

	/* the slot's other lines are fetched while the hot one is read */
	__builtin_prefetch(&a->sa_state);
	__builtin_prefetch(&a->sa_expires);
	__builtin_prefetch(a->sa_token);
	if (!pool_acct_ready(a, c->c_now)) {
		bm_mark(slot);
		return C_NOTREADY;
	}
	bm_clear(slot);
	if (excluded(c, slot))
		return C_EXCLUDED;
	if (!caps_peek(c, a))
		return C_CAPPED;
	return C_OK;
}

/* Takes the caps and copies the account into the pick: 0, or with
 * nothing taken C_CAPPED (capped meanwhile) or C_NOTREADY. */
static int
take(struct pick_ctx *c, uint32_t slot)
{
	struct shm_acct	*a = &c->c_shm->shm_accts[slot];

	if (caps_take(c, a) == -1)
		return C_CAPPED;
	if (acct_copy(a, c->c_pp, c->c_now) == -1) {
		caps_undo(c, a);
		bm_mark(slot);
		return C_NOTREADY;
	}
	c->c_pp->pp_slot = (int)slot;
	if (atomic_load_explicit(&a->sa_last_used, memory_order_relaxed) !=
	    c->c_now)
		atomic_store_explicit(&a->sa_last_used, c->c_now,
		    memory_order_relaxed);
	return 0;
}

static void
untake(struct pick_ctx *c, uint32_t slot)
{
	caps_undo(c, &c->c_shm->shm_accts[slot]);
	explicit_bzero(c->c_pp->pp_token, sizeof(c->c_pp->pp_token));
	c->c_pp->pp_slot = -1;
}

/*
 * Forward from start, wrapping, to the first slot that can serve, and
 * take it. *first_ready (when not NULL) gets the first slot met that
 * is ready, capped or excluded or not, for the sequential hint.
 */
static int
probe(struct pick_ctx *c, uint32_t start, int *first_ready)
{
	uint32_t	 lo[2], hi[2], j;
	int		 r, seg;

	lo[0] = start;
	hi[0] = c->c_high;
	lo[1] = 0;
	hi[1] = start;
	for (seg = 0; seg < 2; seg++) {
		for (j = bm_next(lo[seg], hi[seg]); j < hi[seg];
		    j = bm_next(j + 1, hi[seg])) {
			r = cand(c, j);
			if (r == C_NOTREADY)
				continue;
			if (first_ready != NULL && *first_ready < 0)
				*first_ready = (int)j;
			if (r == C_OK && take(c, j) == 0)
				return (int)j;
		}
	}
	return -1;
}

static int
pick_round_robin(struct pick_ctx *c)
{
	uint32_t	 start;

	start = atomic_fetch_add_explicit(&c->c_shm->shm_hdr->sh_rr_next, 1,
	    memory_order_relaxed) % c->c_high;
	return probe(c, start, NULL);
}

static int
pick_random(struct pick_ctx *c)
{
	return probe(c, (uint32_t)rng_below(c->c_high), NULL);
}

/* a better than b: fewer in flight, then used longer ago */
static int
less_loaded(struct shm *s, uint32_t a, uint32_t b)
{
	int32_t	 ia, ib;

	ia = atomic_load_explicit(&s->shm_accts[a].sa_inflight,
	    memory_order_relaxed);
	ib = atomic_load_explicit(&s->shm_accts[b].sa_inflight,
	    memory_order_relaxed);
	if (ia != ib)
		return ia < ib;
	return atomic_load_explicit(&s->shm_accts[a].sa_last_used,
	    memory_order_relaxed) < atomic_load_explicit(
	    &s->shm_accts[b].sa_last_used, memory_order_relaxed);
}

/*
 * Beyond POOL_EXACT_MAX slots: POOL_SAMPLES random slots (the first
 * not known to be unready from a random start), ranked on their hot
 * cache line alone, which is fetched for all of them at once; only the
 * best ones are then looked at in full.
 */
static int
least_sampled(struct pick_ctx *c)
{
	struct shm_acct	*a;
	uint32_t	 smp[POOL_SAMPLES], j, t;
	int32_t		 infl[POOL_SAMPLES], ti;
	int64_t		 used[POOL_SAMPLES], tu;
	int		 n = 0, k, i;

	for (k = 0; k < POOL_SAMPLES; k++) {
		j = bm_next((uint32_t)rng_below(c->c_high), c->c_high);
		if (j == c->c_high && (j = bm_next(0, c->c_high)) == c->c_high)
			break;
		smp[n++] = j;
		__builtin_prefetch(&c->c_shm->shm_accts[j].sa_inflight);
	}
	for (k = 0; k < n; k++) {
		a = &c->c_shm->shm_accts[smp[k]];
		if (atomic_load_explicit(&a->sa_cooldown_until,
		    memory_order_relaxed) > c->c_now ||
		    atomic_load_explicit(&a->sa_exhausted_until,
		    memory_order_relaxed) > c->c_now) {
			bm_mark(smp[k]);
			smp[k--] = smp[--n];
			continue;
		}
		infl[k] = atomic_load_explicit(&a->sa_inflight,
		    memory_order_relaxed);
		used[k] = atomic_load_explicit(&a->sa_last_used,
		    memory_order_relaxed);
		/* insertion: fewer in flight first, then used longer ago */
		for (i = k; i > 0 && (infl[i] < infl[i - 1] ||
		    (infl[i] == infl[i - 1] && used[i] < used[i - 1])); i--) {
			t = smp[i], smp[i] = smp[i - 1], smp[i - 1] = t;
			ti = infl[i], infl[i] = infl[i - 1], infl[i - 1] = ti;
			tu = used[i], used[i] = used[i - 1], used[i - 1] = tu;
		}
	}
	for (k = 0; k < n; k++)
		if (cand(c, smp[k]) == C_OK && take(c, smp[k]) == C_OK)
			return (int)smp[k];
	return probe(c, (uint32_t)rng_below(c->c_high), NULL);
}

static int
pick_least_inflight(struct pick_ctx *c)
{
	uint32_t	 j;
	int		 best = -1;

	if (c->c_high > POOL_EXACT_MAX)
		return least_sampled(c);
	for (j = 0; j < c->c_high; j++)
		if (cand(c, j) == C_OK && (best < 0 ||
		    less_loaded(c->c_shm, j, (uint32_t)best)))
			best = (int)j;
	if (best >= 0 && take(c, (uint32_t)best) == C_OK)
		return best;
	return probe(c, (uint32_t)rng_below(c->c_high), NULL);
}

static int
pick_weighted(struct pick_ctx *c)
{
	struct shm		*s = c->c_shm;
	struct shm_weight	*w;
	uint64_t		 total, r;
	uint32_t		 cur, n, lo, hi, mid, slot;
	int			 d;

	cur = atomic_load_explicit(&s->shm_hdr->sh_wt_cur,
	    memory_order_acquire) & 1;
	n = __atomic_load_n(&s->shm_hdr->sh_wt_n[cur], __ATOMIC_RELAXED);
	if (n > s->shm_hdr->sh_max_accounts)
		n = s->shm_hdr->sh_max_accounts;
	if ((w = s->shm_weights[cur]) == NULL || n == 0 ||
	    (total = w[n - 1].sw_cum) == 0)
		return pick_round_robin(c);
	for (d = 0; d < POOL_DRAWS; d++) {
		r = rng_below(total);
		/* the first entry whose running sum passes r */
		lo = 0;
		hi = n - 1;
		while (lo < hi) {
			mid = lo + (hi - lo) / 2;
			if (w[mid].sw_cum > r)
				hi = mid;
			else
				lo = mid + 1;
		}
		slot = w[lo].sw_slot;
		if (slot < c->c_high && !bm_test(slot) &&
		    cand(c, slot) == C_OK &&
		    take(c, slot) == 0)
			return (int)slot;
	}
	return pick_round_robin(c);
}

static int
pick_sequential(struct pick_ctx *c)
{
	_Atomic uint32_t	*hintp = &c->c_shm->shm_hdr->sh_seq_hint;
	uint32_t		 hint, start;
	int			 r, slot, first = -1;

	hint = atomic_load_explicit(hintp, memory_order_relaxed);
	if (hint >= c->c_high)
		hint = 0;
	if ((r = cand(c, hint)) == C_OK && (r = take(c, hint)) == C_OK)
		return (int)hint;
	start = hint + 1 < c->c_high ? hint + 1 : 0;
	slot = probe(c, start, &first);
	/* only a hint that cannot serve at all moves on; a capped or
	 * excluded one is used again as soon as it can */
	if (r == C_NOTREADY && first >= 0 && (uint32_t)first != hint)
		(void)atomic_compare_exchange_strong(hintp, &hint,
		    (uint32_t)first);
	return slot;
}

/*
 * Nothing found by the strategy: look at every slot, exactly (not
 * through the bitmap), to take one that became ready meanwhile or to
 * say why none can serve.
 */
static int
pick_failed(struct pick_ctx *c)
{
	struct shm_acct	*a;
	int64_t		 cu, eu, back, retry_at = 0;
	uint32_t	 j;
	int		 busy = 0, limited = 0, r;

	for (j = 0; j < c->c_high; j++) {
		a = &c->c_shm->shm_accts[j];
		if (atomic_load_explicit(&a->sa_state, memory_order_relaxed) !=
		    ACCT_ENABLED ||
		    __atomic_load_n(&a->sa_token[0], __ATOMIC_RELAXED) ==
		    '\0' || __atomic_load_n(&a->sa_expires, __ATOMIC_RELAXED) <=
		    c->c_now + POOL_MIN_VALID)
			continue;
		cu = atomic_load_explicit(&a->sa_cooldown_until,
		    memory_order_relaxed);
		eu = atomic_load_explicit(&a->sa_exhausted_until,
		    memory_order_relaxed);
		if (cu > c->c_now || eu > c->c_now) {
			back = cu > eu ? cu : eu;
			if (!limited || back < retry_at)
				retry_at = back;
			limited = 1;
			continue;
		}
		if (excluded(c, j))
			continue;
		if (!caps_peek(c, a) || (r = take(c, j)) == C_CAPPED) {
			busy = 1;
			continue;
		}
		if (r == C_OK)
			return POOL_OK;
	}
	if (busy)
		return POOL_BUSY;
	if (limited) {
		c->c_pp->pp_retry_at = retry_at;
		return POOL_LIMITED;
	}
	return POOL_NONE;
}

/* ---- stickiness ---- */

static uint32_t
sticky_hash(uint64_t key)
{
	/* splitmix64's finaliser: callers' keys need not be well mixed */
	key ^= key >> 30;
	key *= 0xbf58476d1ce4e5b9ULL;
	key ^= key >> 27;
	key *= 0x94d049bb133111ebULL;
	key ^= key >> 31;
	return (uint32_t)key & (SHM_STICKY - 1);
}

/*
 * The entry of key: ss_key doubles as its sequence (zeroed while the
 * entry is rewritten), so a torn read is seen and taken for a miss.
 * Returns the entry's index or -1; *slot and *id what it holds.
 */
static int
sticky_find(struct shm *s, uint64_t key, int64_t now, int32_t ttl,
    int32_t *slot, int64_t *id)
{
	struct shm_sticky	*e;
	uint32_t		 h = sticky_hash(key), i;
	int64_t			 used;

	for (i = 0; i < POOL_STICKY_PROBES; i++) {
		e = &s->shm_sticky[(h + i) & (SHM_STICKY - 1)];
		if (atomic_load_explicit(&e->ss_key, memory_order_acquire) !=
		    key)
			continue;
		*slot = atomic_load_explicit(&e->ss_slot, memory_order_relaxed);
		*id = atomic_load_explicit(&e->ss_id, memory_order_relaxed);
		used = atomic_load_explicit(&e->ss_used, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&e->ss_key, memory_order_relaxed) !=
		    key || used + ttl < now)
			return -1;
		return (int)((h + i) & (SHM_STICKY - 1));
	}
	return -1;
}

/* (Re)binds key to the picked account: its own entry, else a free,
 * expired or the oldest of the probed entries. Racing writers can only
 * lose a binding, which costs a fresh pick. */
static void
sticky_store(struct shm *s, uint64_t key, int64_t now, int32_t ttl,
    const struct pool_pick *pp)
{
	struct shm_sticky	*e, *victim = NULL;
	uint32_t		 h = sticky_hash(key), i;
	uint64_t		 k;
	int64_t			 used, oldest = INT64_MAX;

	for (i = 0; i < POOL_STICKY_PROBES; i++) {
		e = &s->shm_sticky[(h + i) & (SHM_STICKY - 1)];
		k = atomic_load_explicit(&e->ss_key, memory_order_relaxed);
		if (k == key) {
			victim = e;
			break;
		}
		used = atomic_load_explicit(&e->ss_used, memory_order_relaxed);
		if (k == 0 || used + ttl < now)
			used = INT64_MIN;	/* free or expired: best */
		if (used < oldest) {
			oldest = used;
			victim = e;
		}
	}
	e = victim;
	atomic_store_explicit(&e->ss_key, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&e->ss_slot, pp->pp_slot, memory_order_relaxed);
	atomic_store_explicit(&e->ss_id, pp->pp_id, memory_order_relaxed);
	atomic_store_explicit(&e->ss_used, now, memory_order_relaxed);
	atomic_store_explicit(&e->ss_key, key, memory_order_release);
}

/* ---- the API ---- */

int
pool_pick(struct shm *s, struct pool_pick *pp, uint64_t key,
    const int *exclude, int nexclude)
{
	struct shm_hdr		*h = s->shm_hdr;
	struct pick_ctx		 c;
	struct shm_sticky	*e;
	int64_t			 sid;
	int32_t			 ttl, sslot;
	int			 slot = -1, rv, ent;

	pp->pp_slot = -1;
	pp->pp_id = 0;
	pp->pp_retry_at = 0;
	memset(&c, 0, sizeof(c));
	c.c_shm = s;
	c.c_pp = pp;
	c.c_ex = exclude;
	c.c_nex = exclude != NULL && nexclude > 0 ? nexclude : 0;
	c.c_high = atomic_load_explicit(&h->sh_accts_high,
	    memory_order_acquire);
	if (c.c_high > h->sh_max_accounts)
		c.c_high = h->sh_max_accounts;
	if (c.c_high > POOL_BM_WORDS * 64)
		c.c_high = POOL_BM_WORDS * 64;
	if (c.c_high == 0)
		return POOL_NONE;
	c.c_now = (int64_t)now_wall();
	bm_epoch(s, c.c_now);

	ttl = atomic_load_explicit(&h->sh_sticky_ttl, memory_order_relaxed);
	if (key == 0 || s->shm_sticky == NULL)
		ttl = 0;
	if (ttl > 0 && (ent = sticky_find(s, key, c.c_now, ttl, &sslot,
	    &sid)) >= 0 && sslot >= 0 && (uint32_t)sslot < c.c_high &&
	    cand(&c, (uint32_t)sslot) == C_OK &&
	    take(&c, (uint32_t)sslot) == 0) {
		if (pp->pp_id == sid) {
			e = &s->shm_sticky[ent];
			if (atomic_load_explicit(&e->ss_used,
			    memory_order_relaxed) != c.c_now)
				atomic_store_explicit(&e->ss_used, c.c_now,
				    memory_order_relaxed);
			return POOL_OK;
		}
		untake(&c, (uint32_t)sslot);	/* the slot was reused */
	}

	switch (atomic_load_explicit(&h->sh_strategy, memory_order_relaxed)) {
	case POOL_LEAST_INFLIGHT:
		slot = pick_least_inflight(&c);
		break;
	case POOL_RANDOM:
		slot = pick_random(&c);
		break;
	case POOL_WEIGHTED:
		slot = pick_weighted(&c);
		break;
	case POOL_SEQUENTIAL:
		slot = pick_sequential(&c);
		break;
	default:
		slot = pick_round_robin(&c);
		break;
	}
	if (slot < 0 && (rv = pick_failed(&c)) != POOL_OK)
		return rv;
	if (ttl > 0)
		sticky_store(s, key, c.c_now, ttl, pp);
	return POOL_OK;
}

void
pool_release(struct shm *s, int slot, int ok, const char *error)
{
	struct shm_acct	*a;
	int32_t		 n;

	if (slot < 0 || (uint32_t)slot >= s->shm_hdr->sh_max_accounts)
		return;
	a = &s->shm_accts[slot];
	/* never below zero, even if a reload reset the slot meanwhile */
	n = atomic_load_explicit(&a->sa_inflight, memory_order_relaxed);
	while (n > 0 && !atomic_compare_exchange_weak_explicit(&a->sa_inflight,
	    &n, n - 1, memory_order_acq_rel, memory_order_relaxed))
		;
	atomic_fetch_add_explicit(&a->sa_requests, 1, memory_order_relaxed);
	if (ok) {
		if (atomic_load_explicit(&a->sa_cooldown_streak,
		    memory_order_relaxed) != 0)
			atomic_store_explicit(&a->sa_cooldown_streak, 0,
			    memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&a->sa_errors, 1, memory_order_relaxed);
	if (error != NULL && *error != '\0')
		(void)shm_acct_set_error(s, (uint32_t)slot, 0, error);
}

void
pool_account_usage(struct shm *s, int slot, int64_t tokens_in,
    int64_t tokens_out, double credits)
{
	struct shm_acct	*a;

	if (slot < 0 || (uint32_t)slot >= s->shm_hdr->sh_max_accounts)
		return;
	a = &s->shm_accts[slot];
	if (tokens_in > 0)
		atomic_fetch_add_explicit(&a->sa_tokens_in,
		    (uint64_t)tokens_in, memory_order_relaxed);
	if (tokens_out > 0)
		atomic_fetch_add_explicit(&a->sa_tokens_out,
		    (uint64_t)tokens_out, memory_order_relaxed);
	if (credits > 0 && isfinite(credits) && credits < 1e12)
		atomic_fetch_add_explicit(&a->sa_credits,
		    (uint64_t)llround(credits * 1e6), memory_order_relaxed);
}

/* *p = max(*p, v) */
static void
store_max(_Atomic int64_t *p, int64_t v)
{
	int64_t	 cur = atomic_load_explicit(p, memory_order_relaxed);

	while (cur < v && !atomic_compare_exchange_weak_explicit(p, &cur, v,
	    memory_order_relaxed, memory_order_relaxed))
		;
}

void
pool_cooldown(struct shm *s, int slot, int retry_after)
{
	struct shm_acct	*a;
	int32_t		 streak;
	int64_t		 backoff, wait;

	if (slot < 0 || (uint32_t)slot >= s->shm_hdr->sh_max_accounts)
		return;
	a = &s->shm_accts[slot];
	streak = atomic_fetch_add_explicit(&a->sa_cooldown_streak, 1,
	    memory_order_relaxed) + 1;
	/* 1 s, 2 s, 4 s ... up to POOL_BACKOFF_MAX on 429s in a row */
	backoff = streak > 9 ? POOL_BACKOFF_MAX : (int64_t)1 << (streak - 1);
	if (backoff > POOL_BACKOFF_MAX)
		backoff = POOL_BACKOFF_MAX;
	if (retry_after > POOL_RETRY_AFTER_MAX)
		retry_after = POOL_RETRY_AFTER_MAX;
	wait = retry_after > backoff ? retry_after : backoff;
	/* whole seconds: one more, so the rest lasts at least wait, never
	 * the few milliseconds left of the current second */
	store_max(&a->sa_cooldown_until, (int64_t)now_wall() + wait + 1);
}

/* 00:00 UTC on the first of the month after now */
static int64_t
next_month(int64_t now)
{
	struct tm	 tm;
	time_t		 t = (time_t)now;

	if (gmtime_r(&t, &tm) == NULL)
		return now + 30 * 86400;
	tm.tm_sec = tm.tm_min = tm.tm_hour = 0;
	tm.tm_mday = 1;
	if (++tm.tm_mon == 12) {
		tm.tm_mon = 0;
		tm.tm_year++;
	}
	tm.tm_isdst = 0;
	return (int64_t)timegm(&tm);
}

void
pool_exhausted(struct shm *s, int slot, const char *reason)
{
	struct shm_acct	*a;
	int64_t		 now = (int64_t)now_wall(), until;

	if (slot < 0 || (uint32_t)slot >= s->shm_hdr->sh_max_accounts)
		return;
	a = &s->shm_accts[slot];
	until = atomic_load_explicit(&a->sa_usage_reset, memory_order_relaxed);
	if (until <= now)
		until = next_month(now);
	store_max(&a->sa_exhausted_until, until);
	(void)shm_acct_set_error(s, (uint32_t)slot, 0,
	    reason != NULL && *reason != '\0' ? reason : "quota exhausted");
	/* flag first, then wake: the refresher reads flags after waking */
	atomic_store(&a->sa_usage_wanted, 1);
	pool_wake_refresher(s);
}

void
pool_suspend(struct shm *s, int slot, const char *reason)
{
	struct shm_acct	*a;
	int64_t		 id;
	int32_t		 st;

	if (slot < 0 || (uint32_t)slot >= s->shm_hdr->sh_max_accounts)
		return;
	a = &s->shm_accts[slot];
	id = __atomic_load_n(&a->sa_id, __ATOMIC_RELAXED);
	st = atomic_load(&a->sa_state);
	if (id == 0)
		return;
	/* a person's "disabled" stands; set_state re-checks under the lock */
	if (st == ACCT_ENABLED || st == ACCT_REFRESH_FAILED)
		(void)shm_acct_set_state(s, (uint32_t)slot, id, st,
		    ACCT_SUSPENDED);
	(void)shm_acct_set_error(s, (uint32_t)slot, id,
	    reason != NULL && *reason != '\0' ? reason :
	    "TEMPORARILY_SUSPENDED");
}

void
pool_wake_refresher(struct shm *s)
{
	struct shm_proc	*sp;
	uint32_t	 i;
	int32_t		 pid;

	for (i = 0; i < s->shm_hdr->sh_max_procs; i++) {
		sp = &s->shm_procs[i];
		if (sp->sp_role != ROLE_REFRESHER ||
		    (pid = atomic_load(&sp->sp_pid)) <= 0)
			continue;
		if (kill(pid, SIGUSR2) == -1 && errno != ESRCH)
			log_warn("%s: kill %d", __func__, (int)pid);
	}
}

void
pool_want_refresh(struct shm *s, int slot)
{
	struct shm_acct	*a;
	int32_t		 none = 0;

	if (slot < 0 || (uint32_t)slot >= s->shm_hdr->sh_max_accounts)
		return;
	a = &s->shm_accts[slot];
	/* an admin's forced refresh is not downgraded to a wanted one */
	(void)atomic_compare_exchange_strong(&a->sa_refresh_wanted, &none,
	    SHM_REFRESH_WANTED);
	/* flag first, then wake: the refresher reads flags after waking */
	pool_wake_refresher(s);
}

int
pool_token_changed(struct shm *s, int slot, uint32_t gen)
{
	if (slot < 0 || (uint32_t)slot >= s->shm_hdr->sh_max_accounts)
		return 1;
	return atomic_load_explicit(&s->shm_accts[slot].sa_token_gen,
	    memory_order_acquire) != gen;
}

/*
 * The weighted table: weight = remaining credits (limit - used) where
 * the usage is known; an account whose usage is not known yet weighs
 * the mean of the known ones (1 when none is known), so a new account
 * is neither starved nor flooded; exhausted and disabled ones weigh 0.
 * Written into the buffer workers are not reading, then published by
 * flipping sh_wt_cur. Under sh_lock only to keep two builders apart.
 * Also puts the sequential hint back on the lowest ready slot.
 */
void
pool_weights_build(struct shm *s)
{
	struct shm_hdr		*h = s->shm_hdr;
	struct shm_acct		*a;
	struct shm_weight	*w;
	int64_t			 now = (int64_t)now_wall(), lim, used;
	int64_t			 wt, mean;
	uint64_t		 sum = 0, cum = 0;
	uint32_t		 high, j, n = 0, known = 0, next, first = 0;
	int			 found = 0;

	high = atomic_load_explicit(&h->sh_accts_high, memory_order_acquire);
	if (high > h->sh_max_accounts)
		high = h->sh_max_accounts;
	shm_lock(s);
	for (j = 0; j < high; j++) {
		a = &s->shm_accts[j];
		if (!found && pool_acct_ready(a, now)) {
			first = j;
			found = 1;
		}
		if (atomic_load(&a->sa_state) != ACCT_ENABLED ||
		    atomic_load(&a->sa_exhausted_until) > now)
			continue;
		lim = atomic_load(&a->sa_usage_limit);
		used = atomic_load(&a->sa_usage_used);
		if (lim > 0 && lim > used) {
			sum += (uint64_t)(lim - used);
			known++;
		}
	}
	mean = known > 0 ? (int64_t)(sum / known) : 1;
	if (mean < 1)
		mean = 1;
	next = (atomic_load(&h->sh_wt_cur) & 1) ^ 1;
	if ((w = s->shm_weights[next]) != NULL) {
		for (j = 0; j < high; j++) {
			a = &s->shm_accts[j];
			if (atomic_load(&a->sa_state) != ACCT_ENABLED ||
			    atomic_load(&a->sa_exhausted_until) > now)
				continue;
			lim = atomic_load(&a->sa_usage_limit);
			used = atomic_load(&a->sa_usage_used);
			if (lim <= 0)
				wt = mean;
			else if (lim > used)
				wt = lim - used;
			else
				continue;
			cum += (uint64_t)wt;
			w[n].sw_slot = j;
			w[n].sw_pad = 0;
			w[n].sw_cum = cum;
			n++;
		}
		__atomic_store_n(&h->sh_wt_n[next], n, __ATOMIC_RELAXED);
		atomic_store_explicit(&h->sh_wt_cur, next, memory_order_release);
	}
	atomic_store(&h->sh_seq_hint, first);
	shm_unlock(s);
}
