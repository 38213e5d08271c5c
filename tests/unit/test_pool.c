/*
 * test_pool.c - account selection over the shared table: the five
 * strategies, the caps (in flight, requests per minute), cooldown,
 * exhaustion, suspension, exclusion, stickiness, the answers when no
 * account can serve, concurrent picks from several processes; also the
 * account slot writers of shm.c and the worker -> refresher wake-up.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qrelayd.h"

#define NSLOTS	256

static struct shm	 S;

static void
setup(void)
{
	log_init(1, 0, "test");
	cr_assert_eq(shm_create(&S, NSLOTS, 8), 0);
}

static void
teardown(void)
{
	shm_destroy(&S);
}

TestSuite(pool, .init = setup, .fini = teardown);

/* An account in a slot, with a token valid for ttl seconds. */
static int
add_caps(int64_t id, int32_t state, const char *tok, int64_t ttl,
    int32_t max_inflight, int32_t rpm)
{
	struct shm_acct_meta	 m = {
		.am_id = id, .am_state = state, .am_label = "label",
		.am_region = "us-east-1",
		.am_profile_arn = "arn:aws:codewhisperer:us-east-1:1:profile/X",
		.am_proxy = "socks5://127.0.0.1:1080",
		.am_max_inflight = max_inflight, .am_rpm = rpm,
	};
	int			 slot;

	slot = shm_acct_put(&S, &m, NULL, 0);
	cr_assert_geq(slot, 0);
	if (tok != NULL)
		cr_assert_eq(shm_acct_set_token(&S, (uint32_t)slot, id, tok,
		    now_wall() + ttl, NULL), 0);
	return slot;
}

static int
add(int64_t id, int32_t state, const char *tok, int64_t ttl)
{
	return add_caps(id, state, tok, ttl, 0, 0);
}

/* n ready accounts, ids 1000.. */
static void
add_ready(int n)
{
	char	 tok[32];
	int	 i;

	for (i = 0; i < n; i++) {
		snprintf(tok, sizeof(tok), "tok-%d", i);
		cr_assert_eq(add(1000 + i, ACCT_ENABLED, tok, 3600), i);
	}
}

static void
strategy(int st)
{
	atomic_store(&S.shm_hdr->sh_strategy, st);
}

static int
pick(struct pool_pick *pp)
{
	return pool_pick(&S, pp, 0, NULL, 0);
}

/* pick and release at once: the slot, or the (negative) answer */
static int
pick_rel(uint64_t key, const int *ex, int nex)
{
	struct pool_pick	 pp;
	int			 r;

	if ((r = pool_pick(&S, &pp, key, ex, nex)) != POOL_OK)
		return r;
	cr_assert_geq(pp.pp_slot, 0);
	pool_release(&S, pp.pp_slot, 1, NULL);
	return pp.pp_slot;
}

static void
set_usage(int slot, int64_t used, int64_t limit)
{
	atomic_store(&S.shm_accts[slot].sa_usage_used, used);
	atomic_store(&S.shm_accts[slot].sa_usage_limit, limit);
}

Test(pool, strategy_names)
{
	int	 i;

	for (i = POOL_ROUND_ROBIN; i <= POOL_SEQUENTIAL; i++)
		cr_assert_eq(pool_strategy_parse(pool_strategy_name(i)), i);
	cr_assert_str_eq(pool_strategy_name(POOL_ROUND_ROBIN), "round_robin");
	cr_assert_str_eq(pool_strategy_name(POOL_LEAST_INFLIGHT),
	    "least_inflight");
	cr_assert_eq(pool_strategy_parse("weighted"), POOL_WEIGHTED);
	cr_assert_eq(pool_strategy_parse("Weighted"), -1);
	cr_assert_eq(pool_strategy_parse(""), -1);
	cr_assert_eq(pool_strategy_parse(NULL), -1);
}

Test(pool, empty_table_has_nothing)
{
	struct pool_pick	 pp;

	cr_assert_eq(pick(&pp), POOL_NONE);
	cr_assert_eq(pp.pp_slot, -1);
}

Test(pool, picks_only_ready_accounts)
{
	struct pool_pick	 pp;
	int			 i, ok, st;

	add(1, ACCT_DISABLED, "tok-disabled", 3600);
	add(2, ACCT_ENABLED, NULL, 0);			/* no token yet */
	add(3, ACCT_ENABLED, "tok-expiring", 30);	/* < 60 s left */
	add(5, ACCT_SUSPENDED, "tok-suspended", 3600);
	ok = add(4, ACCT_ENABLED, "tok-good", 3600);
	for (st = POOL_ROUND_ROBIN; st <= POOL_SEQUENTIAL; st++) {
		strategy(st);
		for (i = 0; i < 10; i++) {
			cr_assert_eq(pick(&pp), POOL_OK, "strategy %d", st);
			cr_assert_eq(pp.pp_id, 4);
			cr_assert_eq(pp.pp_slot, ok);
			cr_assert_str_eq(pp.pp_token, "tok-good");
			cr_assert_str_eq(pp.pp_region, "us-east-1");
			cr_assert_str_eq(pp.pp_profile_arn,
			    "arn:aws:codewhisperer:us-east-1:1:profile/X");
			cr_assert_str_eq(pp.pp_proxy, "socks5://127.0.0.1:1080");
			cr_assert_eq(pp.pp_token_gen,
			    atomic_load(&S.shm_accts[ok].sa_token_gen));
			cr_assert_geq(atomic_load(&S.shm_accts[ok].sa_last_used),
			    now_wall() - 1);
			pool_release(&S, pp.pp_slot, 1, NULL);
		}
	}
	/* excluding the only good one leaves none */
	cr_assert_eq(pool_pick(&S, &pp, 0, &ok, 1), POOL_NONE);
	/* a cooldown takes it out too, and says until when */
	atomic_store(&S.shm_accts[ok].sa_cooldown_until, now_wall() + 30);
	cr_assert_eq(pick(&pp), POOL_LIMITED);
	cr_assert_eq(pp.pp_retry_at, atomic_load(
	    &S.shm_accts[ok].sa_cooldown_until));
}

Test(pool, round_robin_spreads_evenly)
{
	int	 count[4] = { 0 }, i, s;

	add_ready(4);
	strategy(POOL_ROUND_ROBIN);
	for (i = 0; i < 400; i++) {
		s = pick_rel(0, NULL, 0);
		cr_assert(s >= 0 && s < 4, "pick %d", s);
		count[s]++;
	}
	for (i = 0; i < 4; i++)
		cr_assert_eq(count[i], 100, "slot %d: %d", i, count[i]);
}

Test(pool, release_counts_and_never_goes_negative)
{
	struct pool_pick	 pp;
	int			 a, b, i, seen_a = 0, seen_b = 0;

	a = add(10, ACCT_ENABLED, "tok-a", 3600);
	b = add(11, ACCT_ENABLED, "tok-b", 3600);
	for (i = 0; i < 10; i++) {
		cr_assert_eq(pick(&pp), POOL_OK);
		if (pp.pp_slot == a)
			seen_a++;
		else if (pp.pp_slot == b)
			seen_b++;
	}
	cr_assert_eq(seen_a, 5, "round robin: a %d b %d", seen_a, seen_b);
	cr_assert_eq(seen_b, 5);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_inflight), 5);
	for (i = 0; i < 5; i++)
		pool_release(&S, a, i != 0, i == 0 ? "HTTP 500" : NULL);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_inflight), 0);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_requests), 5);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_errors), 1);
	cr_assert_str_eq(S.shm_accts[a].sa_last_error, "HTTP 500");
	/* an extra release never goes below zero */
	pool_release(&S, a, 1, NULL);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_inflight), 0);
	/* usage counters */
	pool_account_usage(&S, a, 100, 20, 0.017);
	pool_account_usage(&S, a, 5, 1, 0.5);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_tokens_in), 105);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_tokens_out), 21);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_credits), 517000);
	pool_account_usage(&S, -1, 1, 1, 1);	/* ignored */
}

Test(pool, least_inflight_picks_least_loaded)
{
	struct pool_pick	 pp;
	int			 i;

	add_ready(3);
	strategy(POOL_LEAST_INFLIGHT);
	atomic_store(&S.shm_accts[0].sa_inflight, 3);
	atomic_store(&S.shm_accts[1].sa_inflight, 1);
	atomic_store(&S.shm_accts[2].sa_inflight, 2);
	cr_assert_eq(pick(&pp), POOL_OK);
	cr_assert_eq(pp.pp_slot, 1);		/* 3 1 2 -> 3 2 2 */
	cr_assert_eq(pick(&pp), POOL_OK);
	/* tie between 1 and 2: the one used longer ago (2, never) */
	cr_assert_eq(pp.pp_slot, 2);		/* 3 2 3 */
	cr_assert_eq(pick(&pp), POOL_OK);
	cr_assert_eq(pp.pp_slot, 1);		/* 3 3 3 */
	/* from here it stays level */
	for (i = 0; i < 30; i++)
		cr_assert_eq(pick(&pp), POOL_OK);
	for (i = 0; i < 3; i++)
		cr_assert_eq(atomic_load(&S.shm_accts[i].sa_inflight), 13,
		    "slot %d", i);
}

/* Beyond 64 slots: the best of 8 samples. Half the pool carries load;
 * the loaded half wins only when all 8 samples fall in it (1/256). */
Test(pool, least_inflight_samples_on_large_pools)
{
	int	 i, s, idle = 0;

	add_ready(200);
	strategy(POOL_LEAST_INFLIGHT);
	for (i = 0; i < 100; i++)
		atomic_store(&S.shm_accts[i].sa_inflight, 10);
	for (i = 0; i < 2000; i++) {
		s = pick_rel(0, NULL, 0);
		cr_assert_geq(s, 0);
		if (s >= 100)
			idle++;
	}
	cr_assert_geq(idle, 1900, "idle picked %d of 2000", idle);
}

Test(pool, random_spreads)
{
	int	 count[4] = { 0 }, i, s;

	add_ready(4);
	strategy(POOL_RANDOM);
	for (i = 0; i < 8000; i++) {
		s = pick_rel(0, NULL, 0);
		cr_assert(s >= 0 && s < 4);
		count[s]++;
	}
	/* 2000 expected each, sd ~39 */
	for (i = 0; i < 4; i++)
		cr_assert(count[i] > 1800 && count[i] < 2200, "slot %d: %d",
		    i, count[i]);
}

Test(pool, weighted_follows_remaining_quota)
{
	int	 count[3] = { 0 }, i, s;

	add_ready(3);
	strategy(POOL_WEIGHTED);
	set_usage(0, 250000, 1000000);		/* 750 credits left */
	set_usage(1, 750000, 1000000);		/* 250 left */
	set_usage(2, 1000000, 1000000);		/* none left: weight 0 */
	pool_weights_build(&S);
	for (i = 0; i < 10000; i++) {
		s = pick_rel(0, NULL, 0);
		cr_assert(s >= 0 && s < 3);
		count[s]++;
	}
	/* 3:1; 7500 expected, sd ~43 */
	cr_assert(count[0] > 7300 && count[0] < 7700, "%d %d %d", count[0],
	    count[1], count[2]);
	cr_assert_eq(count[2], 0);

	/* an account of unknown usage weighs the mean of the known ones */
	set_usage(2, 0, 0);
	set_usage(0, 700, 1000);		/* 300 */
	set_usage(1, 900, 1000);		/* 100 */
	pool_weights_build(&S);			/* 2 weighs 200 */
	memset(count, 0, sizeof(count));
	for (i = 0; i < 12000; i++)
		count[pick_rel(0, NULL, 0)]++;
	cr_assert(count[0] > 5700 && count[0] < 6300, "%d %d %d", count[0],
	    count[1], count[2]);
	cr_assert(count[2] > 3700 && count[2] < 4300, "%d %d %d", count[0],
	    count[1], count[2]);

	/* exhausted weighs 0 in the next table; until then it is not
	 * ready anyway */
	atomic_store(&S.shm_accts[0].sa_exhausted_until, now_wall() + 3600);
	pool_weights_build(&S);
	cr_assert_eq(S.shm_hdr->sh_wt_n[atomic_load(&S.shm_hdr->sh_wt_cur)],
	    2);
	for (i = 0; i < 100; i++)
		cr_assert_neq(pick_rel(0, NULL, 0), 0);
}

Test(pool, weighted_without_table_or_drawn_capped_falls_back)
{
	struct pool_pick	 pp;
	int			 i, s, a;

	add_ready(2);
	strategy(POOL_WEIGHTED);
	/* no table published yet: round robin */
	cr_assert_neq(pick_rel(0, NULL, 0), pick_rel(0, NULL, 0));
	/* all the weight on slot 0, which is at its cap: slot 1 serves */
	set_usage(0, 0, 1000000);
	set_usage(1, 999999, 1000000);
	pool_weights_build(&S);
	atomic_store(&S.shm_accts[0].sa_max_inflight, 1);
	cr_assert_eq(pick(&pp), POOL_OK);
	a = pp.pp_slot;
	cr_assert_eq(a, 0);
	for (i = 0; i < 20; i++) {
		s = pick_rel(0, NULL, 0);
		cr_assert_eq(s, 1);
	}
	pool_release(&S, a, 1, NULL);
	cr_assert_eq(pick_rel(0, NULL, 0), 0);
}

Test(pool, sequential_sticks_moves_and_comes_back)
{
	int	 i;

	add_ready(3);
	strategy(POOL_SEQUENTIAL);
	pool_weights_build(&S);
	for (i = 0; i < 20; i++)
		cr_assert_eq(pick_rel(0, NULL, 0), 0);
	/* the first cools down: the second takes over, and keeps it */
	pool_cooldown(&S, 0, 30);
	for (i = 0; i < 20; i++)
		cr_assert_eq(pick_rel(0, NULL, 0), 1);
	cr_assert_eq(atomic_load(&S.shm_hdr->sh_seq_hint), 1);
	/* the first recovers; the hint stays until the next rebuild */
	atomic_store(&S.shm_accts[0].sa_cooldown_until, 0);
	cr_assert_eq(pick_rel(0, NULL, 0), 1);
	pool_weights_build(&S);
	for (i = 0; i < 20; i++)
		cr_assert_eq(pick_rel(0, NULL, 0), 0);
	/* exhausted first and second: the third */
	atomic_store(&S.shm_accts[0].sa_usage_reset, now_wall() + 3600);
	pool_exhausted(&S, 0, "MONTHLY_REQUEST_COUNT");
	pool_exhausted(&S, 1, "MONTHLY_REQUEST_COUNT");
	for (i = 0; i < 10; i++)
		cr_assert_eq(pick_rel(0, NULL, 0), 2);
	/* a capped first slot lends to the next without moving the hint */
	atomic_store(&S.shm_accts[0].sa_exhausted_until, 0);
	atomic_store(&S.shm_accts[1].sa_exhausted_until, 0);
	pool_weights_build(&S);
	atomic_store(&S.shm_accts[0].sa_max_inflight, 1);
	{
		struct pool_pick	 pp;

		cr_assert_eq(pick(&pp), POOL_OK);
		cr_assert_eq(pp.pp_slot, 0);
		/* 1, or 2 while this process still remembers 1 as not
		 * ready (the bitmap, for up to a second) */
		cr_assert_neq(pick_rel(0, NULL, 0), 0);
		cr_assert_eq(atomic_load(&S.shm_hdr->sh_seq_hint), 0);
		pool_release(&S, pp.pp_slot, 1, NULL);
		cr_assert_eq(pick_rel(0, NULL, 0), 0);
	}
}

Test(pool, inflight_cap_busy_then_ok)
{
	struct pool_pick	 p1, p2, p3;
	int			 st;

	add_caps(1, ACCT_ENABLED, "tok", 3600, 2, 0);
	for (st = POOL_ROUND_ROBIN; st <= POOL_SEQUENTIAL; st++) {
		strategy(st);
		pool_weights_build(&S);
		cr_assert_eq(pick(&p1), POOL_OK);
		cr_assert_eq(pick(&p2), POOL_OK);
		cr_assert_eq(pick(&p3), POOL_BUSY, "strategy %d", st);
		cr_assert_eq(p3.pp_slot, -1);
		cr_assert_eq(atomic_load(&S.shm_accts[0].sa_inflight), 2);
		pool_release(&S, p1.pp_slot, 1, NULL);
		cr_assert_eq(pick(&p3), POOL_OK);
		pool_release(&S, p2.pp_slot, 1, NULL);
		pool_release(&S, p3.pp_slot, 1, NULL);
		cr_assert_eq(atomic_load(&S.shm_accts[0].sa_inflight), 0);
	}
}

Test(pool, rpm_cap_and_nothing_leaks_on_failure)
{
	struct pool_pick	 pp;
	int			 slot;

	slot = add_caps(1, ACCT_ENABLED, "tok", 3600, 1, 2);
	cr_assert_eq(pick(&pp), POOL_OK);
	/* in-flight cap reached: busy, and nothing of the minute taken */
	cr_assert_eq(pick(&pp), POOL_BUSY);
	pool_release(&S, slot, 1, NULL);
	cr_assert_eq(pick(&pp), POOL_OK);	/* the second of the minute */
	pool_release(&S, slot, 1, NULL);
	cr_assert_eq(pick(&pp), POOL_BUSY);	/* rpm 2: a third must wait */
	/* the failed rpm take gave its in-flight place back */
	cr_assert_eq(atomic_load(&S.shm_accts[slot].sa_inflight), 0);
	/* one every 30 s after the burst: move the clock by hand */
	atomic_fetch_sub(&S.shm_accts[slot].sa_rpm_tat, 30000000);
	cr_assert_eq(pick(&pp), POOL_OK);
	pool_release(&S, slot, 1, NULL);
	cr_assert_eq(pick(&pp), POOL_BUSY);
}

Test(pool, capped_account_is_skipped_for_another)
{
	int	 i, a;

	a = add_caps(1, ACCT_ENABLED, "tok-a", 3600, 0, 1);
	add(2, ACCT_ENABLED, "tok-b", 3600);
	cr_assert_eq(pick_rel(0, NULL, 0), a);
	for (i = 0; i < 10; i++)
		cr_assert_neq(pick_rel(0, NULL, 0), a);
}

Test(pool, cooldown_backs_off_and_honours_retry_after)
{
	int64_t	 now = now_wall(), until;
	int	 slot, i;
	static const int64_t expect[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256,
		300, 300, 300 };

	slot = add(1, ACCT_ENABLED, "tok", 3600);
	for (i = 0; i < (int)nitems(expect); i++) {
		pool_cooldown(&S, slot, 0);
		until = atomic_load(&S.shm_accts[slot].sa_cooldown_until);
		cr_assert(until >= now + expect[i] && until <= now + expect[i] +
		    1, "streak %d: %lld", i + 1, (long long)(until - now));
		/* let the next one start from now again */
		atomic_store(&S.shm_accts[slot].sa_cooldown_until, 0);
	}
	cr_assert_eq(atomic_load(&S.shm_accts[slot].sa_cooldown_streak), 12);
	/* a success resets the streak */
	pool_release(&S, slot, 1, NULL);
	cr_assert_eq(atomic_load(&S.shm_accts[slot].sa_cooldown_streak), 0);
	/* Retry-After longer than the backoff wins */
	now = now_wall();
	pool_cooldown(&S, slot, 120);
	until = atomic_load(&S.shm_accts[slot].sa_cooldown_until);
	cr_assert(until >= now + 120 && until <= now + 121);
	/* a shorter one later never shortens it */
	pool_cooldown(&S, slot, 0);
	cr_assert_eq(atomic_load(&S.shm_accts[slot].sa_cooldown_until), until);
	{
		int64_t	 u;

		cr_assert_eq(pool_acct_state(&S.shm_accts[slot], now_wall(),
		    &u), ACCT_COOLDOWN);
		cr_assert_eq(u, until);
		cr_assert_eq(pool_acct_ready(&S.shm_accts[slot], now_wall()),
		    0);
		cr_assert_eq(pool_acct_state(&S.shm_accts[slot], until, &u),
		    ACCT_ENABLED);
		cr_assert_eq(u, 0);
	}
}

Test(pool, exhausted_until_reset_or_next_month)
{
	struct pool_pick	 pp;
	struct tm		 tm;
	time_t			 t;
	int64_t			 now = now_wall(), until;
	int			 a, b;

	a = add(1, ACCT_ENABLED, "tok-a", 3600);
	b = add(2, ACCT_ENABLED, "tok-b", 3600);
	atomic_store(&S.shm_accts[a].sa_usage_reset, now + 5000);
	pool_exhausted(&S, a, "MONTHLY_REQUEST_COUNT");
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_exhausted_until),
	    now + 5000);
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_usage_wanted), 1);
	cr_assert_str_eq(S.shm_accts[a].sa_last_error, "MONTHLY_REQUEST_COUNT");
	cr_assert_eq(pool_acct_state(&S.shm_accts[a], now, &until),
	    ACCT_EXHAUSTED);
	cr_assert_eq(until, now + 5000);

	/* unknown (or past) reset: 00:00 UTC on the 1st of next month */
	atomic_store(&S.shm_accts[b].sa_usage_reset, now - 10);
	pool_exhausted(&S, b, NULL);
	until = atomic_load(&S.shm_accts[b].sa_exhausted_until);
	cr_assert_gt(until, now);
	cr_assert_leq(until - now, 31 * 86400);
	t = (time_t)until;
	gmtime_r(&t, &tm);
	cr_assert_eq(tm.tm_mday, 1);
	cr_assert_eq(tm.tm_hour + tm.tm_min + tm.tm_sec, 0);
	t = (time_t)now;
	{
		struct tm	 tn;

		gmtime_r(&t, &tn);
		cr_assert_eq(tm.tm_mon, (tn.tm_mon + 1) % 12);
	}
	cr_assert_str_eq(S.shm_accts[b].sa_last_error, "quota exhausted");

	/* both out: limited, back at the sooner of the two */
	cr_assert_eq(pick(&pp), POOL_LIMITED);
	cr_assert_eq(pp.pp_retry_at, now + 5000 < until ? now + 5000 : until);
}

Test(pool, suspended_is_out_and_disabled_stays)
{
	struct pool_pick	 pp;
	int			 a, b;

	a = add(1, ACCT_ENABLED, "tok-a", 3600);
	b = add(2, ACCT_DISABLED, "tok-b", 3600);
	pool_suspend(&S, a, "TEMPORARILY_SUSPENDED: abuse");
	cr_assert_eq(atomic_load(&S.shm_accts[a].sa_state), ACCT_SUSPENDED);
	cr_assert_str_eq(S.shm_accts[a].sa_last_error,
	    "TEMPORARILY_SUSPENDED: abuse");
	cr_assert_eq(pool_acct_state(&S.shm_accts[a], now_wall(), NULL),
	    ACCT_SUSPENDED);
	cr_assert_eq(pick(&pp), POOL_NONE);
	pool_suspend(&S, b, "x");
	cr_assert_eq(atomic_load(&S.shm_accts[b].sa_state), ACCT_DISABLED);
	pool_suspend(&S, 200, "x");		/* empty slot: nothing */
	cr_assert_eq(atomic_load(&S.shm_accts[200].sa_state), ACCT_EMPTY);
}

Test(pool, exclude_list)
{
	struct pool_pick	 pp;
	int			 ex[3] = { 0, 1, 2 }, i, st;

	add_ready(3);
	for (st = POOL_ROUND_ROBIN; st <= POOL_SEQUENTIAL; st++) {
		strategy(st);
		pool_weights_build(&S);
		for (i = 0; i < 20; i++)
			cr_assert_eq(pick_rel(0, ex, 2), 2, "strategy %d", st);
		cr_assert_eq(pool_pick(&S, &pp, 0, ex, 3), POOL_NONE);
	}
	/* excluded ready ones count as unavailable: the cooling one says
	 * when to come back */
	atomic_store(&S.shm_accts[2].sa_cooldown_until, now_wall() + 40);
	cr_assert_eq(pool_pick(&S, &pp, 0, ex, 2), POOL_LIMITED);
	cr_assert_eq(pp.pp_retry_at, atomic_load(
	    &S.shm_accts[2].sa_cooldown_until));
	/* ... and a capped one says busy */
	atomic_store(&S.shm_accts[2].sa_cooldown_until, 0);
	atomic_store(&S.shm_accts[2].sa_max_inflight, 1);
	atomic_store(&S.shm_accts[2].sa_inflight, 1);
	cr_assert_eq(pool_pick(&S, &pp, 0, ex, 2), POOL_BUSY);
}

Test(pool, limited_retry_at_is_the_soonest)
{
	struct pool_pick	 pp;
	int64_t			 now = now_wall();

	add_ready(4);
	atomic_store(&S.shm_accts[0].sa_cooldown_until, now + 30);
	atomic_store(&S.shm_accts[1].sa_cooldown_until, now + 10);
	/* cooling and exhausted: back when both are over */
	atomic_store(&S.shm_accts[1].sa_exhausted_until, now + 50);
	atomic_store(&S.shm_accts[2].sa_exhausted_until, now + 20);
	atomic_store(&S.shm_accts[3].sa_state, ACCT_DISABLED);
	cr_assert_eq(pick(&pp), POOL_LIMITED);
	cr_assert_eq(pp.pp_retry_at, now + 20);
	/* a capped account that could serve makes it busy, not limited */
	atomic_store(&S.shm_accts[3].sa_state, ACCT_ENABLED);
	atomic_store(&S.shm_accts[3].sa_rpm, 1);
	cr_assert_eq(pick_rel(0, NULL, 0), 3);
	cr_assert_eq(pick(&pp), POOL_BUSY);
}

static struct shm_sticky *
sticky_entry(uint64_t key)
{
	int	 i;

	for (i = 0; i < SHM_STICKY; i++)
		if (atomic_load(&S.shm_sticky[i].ss_key) == key)
			return &S.shm_sticky[i];
	return NULL;
}

Test(pool, sticky_keeps_the_account_while_it_serves)
{
	struct shm_sticky	*e;
	int			 i, s, first, other;

	add_ready(4);
	strategy(POOL_ROUND_ROBIN);
	/* off: the key is ignored */
	cr_assert_neq(pick_rel(42, NULL, 0), pick_rel(42, NULL, 0));
	cr_assert_null(sticky_entry(42));

	atomic_store(&S.shm_hdr->sh_sticky_ttl, 60);
	first = pick_rel(42, NULL, 0);
	for (i = 0; i < 20; i++)
		cr_assert_eq(pick_rel(42, NULL, 0), first);
	/* other conversations still spread */
	other = pick_rel(43, NULL, 0);
	cr_assert_neq(pick_rel(44, NULL, 0), other);
	/* the account cools down: the conversation moves, and stays */
	pool_cooldown(&S, first, 60);
	s = pick_rel(42, NULL, 0);
	cr_assert_neq(s, first);
	atomic_store(&S.shm_accts[first].sa_cooldown_until, 0);
	for (i = 0; i < 10; i++)
		cr_assert_eq(pick_rel(42, NULL, 0), s);
	/* excluded (this request failed on it): moves too */
	cr_assert_neq(pick_rel(42, &s, 1), s);
	s = pick_rel(42, NULL, 0);
	/* an expired binding is forgotten */
	cr_assert_not_null(e = sticky_entry(42));
	cr_assert_eq(atomic_load(&e->ss_slot), s);
	atomic_store(&e->ss_used, now_wall() - 61);
	atomic_store(&S.shm_hdr->sh_rr_next, (uint32_t)(s + 1) % 4);
	cr_assert_neq(pick_rel(42, NULL, 0), s);
	/* a slot that now holds another account is not taken for it */
	s = pick_rel(42, NULL, 0);
	e = sticky_entry(42);
	atomic_store(&e->ss_id, 999999);
	atomic_store(&S.shm_hdr->sh_rr_next, (uint32_t)(s + 1) % 4);
	cr_assert_neq(pick_rel(42, NULL, 0), s);
	cr_assert_eq(atomic_load(&S.shm_accts[s].sa_inflight), 0);
	/* ttl back to 0: off again, round robin spreads the key */
	atomic_store(&S.shm_hdr->sh_sticky_ttl, 0);
	{
		int	 seen = 0;

		for (i = 0; i < 8; i++)
			seen |= 1 << pick_rel(42, NULL, 0);
		cr_assert_geq(__builtin_popcount(seen), 3, "seen %#x", seen);
	}
}

/*
 * Four processes, each holding up to two picks at once, hammer a
 * capped account (and a second one, so that probing runs too); each
 * counts, in shared memory, how many picks on the capped one are held
 * at once. That count must never pass the cap.
 */
struct hammer {
	_Atomic int	 holders;
	_Atomic int	 max;
	_Atomic int	 ok;
	_Atomic int	 busy;
};

static void
hammer_hold(struct hammer *sh, const struct pool_pick *pp)
{
	int	 h, m;

	if (pp->pp_slot != 0)
		return;
	h = atomic_fetch_add(&sh->holders, 1) + 1;
	m = atomic_load(&sh->max);
	while (h > m && !atomic_compare_exchange_weak(&sh->max, &m, h))
		;
}

static void
hammer(struct hammer *sh)
{
	struct pool_pick	 pp[2];
	int			 n, k, got;

	for (n = 0; n < 10000; n++) {
		got = 0;
		for (k = 0; k < 2; k++) {
			if (pool_pick(&S, &pp[got], 0, NULL, 0) != POOL_OK) {
				atomic_fetch_add(&sh->busy, 1);
				continue;
			}
			atomic_fetch_add(&sh->ok, 1);
			hammer_hold(sh, &pp[got++]);
		}
		sched_yield();		/* hold them a while: others come in */
		while (got-- > 0) {
			if (pp[got].pp_slot == 0)
				atomic_fetch_sub(&sh->holders, 1);
			pool_release(&S, pp[got].pp_slot, 1, NULL);
		}
	}
}

Test(pool, concurrent_picks_never_pass_the_cap)
{
	struct hammer	*sh;
	pid_t		 pid[4];
	int		 i, status, cap = 3;

	add_caps(1, ACCT_ENABLED, "tok-capped", 3600, cap, 0);
	add_caps(2, ACCT_ENABLED, "tok-other", 3600, 1, 0);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(sh, MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	strategy(POOL_ROUND_ROBIN);
	for (i = 0; i < 4; i++) {
		if ((pid[i] = fork()) == 0) {
			hammer(sh);
			_exit(0);
		}
		cr_assert_gt(pid[i], 0);
	}
	for (i = 0; i < 4; i++) {
		cr_assert_eq(waitpid(pid[i], &status, 0), pid[i]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	cr_assert_leq(atomic_load(&sh->max), cap, "max holders %d",
	    atomic_load(&sh->max));
	cr_assert_gt(atomic_load(&sh->max), 1);
	cr_assert_gt(atomic_load(&sh->busy), 0);
	cr_assert_eq(atomic_load(&sh->ok) + atomic_load(&sh->busy), 80000);
	cr_assert_eq(atomic_load(&S.shm_accts[0].sa_inflight), 0);
	cr_assert_eq(atomic_load(&S.shm_accts[1].sa_inflight), 0);
	cr_assert_eq(atomic_load(&S.shm_accts[0].sa_requests) +
	    atomic_load(&S.shm_accts[1].sa_requests),
	    (uint64_t)atomic_load(&sh->ok));
	munmap(sh, sizeof(*sh));
}

/* Most of a large pool cooling down: the probe still finds the few
 * ready ones, through the bitmap, and the retry time is right when
 * they go too. */
Test(pool, large_pool_mostly_cooling)
{
	struct pool_pick	 pp;
	int64_t			 now = now_wall();
	int			 i, s, st;

	add_ready(NSLOTS);
	for (i = 0; i < NSLOTS; i++)
		if (i != 17 && i != 200)
			atomic_store(&S.shm_accts[i].sa_cooldown_until,
			    now + 100 + i);
	for (st = POOL_ROUND_ROBIN; st <= POOL_SEQUENTIAL; st++) {
		strategy(st);
		pool_weights_build(&S);
		for (i = 0; i < 200; i++) {
			s = pick_rel(0, NULL, 0);
			cr_assert(s == 17 || s == 200, "strategy %d: %d", st,
			    s);
		}
	}
	atomic_store(&S.shm_accts[17].sa_cooldown_until, now + 5);
	atomic_store(&S.shm_accts[200].sa_exhausted_until, now + 7);
	cr_assert_eq(pick(&pp), POOL_LIMITED);
	cr_assert_eq(pp.pp_retry_at, now + 5);
	/* one comes back (as an admin's reset would do): found at once,
	 * though this process marked it not ready a moment ago */
	atomic_store(&S.shm_accts[200].sa_exhausted_until, 0);
	strategy(POOL_ROUND_ROBIN);
	cr_assert_eq(pick_rel(0, NULL, 0), 200);
}

Test(pool, put_keeps_live_token_and_states)
{
	struct shm_acct_meta	 m = { .am_id = 20, .am_state = ACCT_ENABLED,
				    .am_label = "new label",
				    .am_region = "eu-west-1",
				    .am_profile_arn = "" };
	struct shm_acct		 a;
	int			 slot, again;
	uint32_t		 gen;

	slot = add(20, ACCT_ENABLED, "tok-live", 3600);
	gen = atomic_load(&S.shm_accts[slot].sa_token_gen);
	/* a reload with an older token from the database keeps the live one */
	again = shm_acct_put(&S, &m, "tok-old", 100);
	cr_assert_eq(again, slot);
	cr_assert_eq(shm_acct_read(&S, (uint32_t)slot, &a), 0);
	cr_assert_str_eq(a.sa_token, "tok-live");
	cr_assert_str_eq(a.sa_label, "new label");
	cr_assert_str_eq(a.sa_region, "eu-west-1");
	cr_assert_eq(atomic_load(&S.shm_accts[slot].sa_token_gen), gen);
	/* a live state survives a reload of an enabled account ... */
	cr_assert_eq(shm_acct_set_state(&S, (uint32_t)slot, 20, ACCT_ENABLED,
	    ACCT_REFRESH_FAILED), 0);
	shm_acct_put(&S, &m, NULL, 0);
	cr_assert_eq(S.shm_accts[slot].sa_state, ACCT_REFRESH_FAILED);
	/* ... but disabling and enabling are taken */
	m.am_state = ACCT_DISABLED;
	shm_acct_put(&S, &m, NULL, 0);
	cr_assert_eq(S.shm_accts[slot].sa_state, ACCT_DISABLED);
	m.am_state = ACCT_ENABLED;
	shm_acct_put(&S, &m, NULL, 0);
	cr_assert_eq(S.shm_accts[slot].sa_state, ACCT_ENABLED);
	/* set_state only from the given state */
	cr_assert_eq(shm_acct_set_state(&S, (uint32_t)slot, 20,
	    ACCT_REFRESH_FAILED, ACCT_ENABLED), -1);
	/* a token for another id is refused (the slot was reused) */
	cr_assert_eq(shm_acct_set_token(&S, (uint32_t)slot, 99, "x", 1, NULL),
	    -1);
	cr_assert_eq(shm_acct_find(&S, 20), slot);
	cr_assert_eq(shm_acct_find(&S, 99), -1);
}

Test(pool, new_slot_takes_stored_token_and_retain_frees)
{
	struct shm_acct_meta	 m = { .am_id = 30, .am_state = ACCT_ENABLED,
				    .am_label = "", .am_region = "",
				    .am_profile_arn = "" };
	struct pool_pick	 pp;
	int64_t			 keep[] = { 31 };
	int			 slot;

	slot = shm_acct_put(&S, &m, "tok-stored", now_wall() + 3600);
	cr_assert_eq(pick(&pp), POOL_OK);
	cr_assert_str_eq(pp.pp_token, "tok-stored");
	pool_release(&S, pp.pp_slot, 1, NULL);
	m.am_id = 31;
	shm_acct_put(&S, &m, "tok-31", now_wall() + 3600);
	shm_lock(&S);
	shm_accts_retain_locked(&S, keep, 1);
	shm_unlock(&S);
	cr_assert_eq(shm_acct_find(&S, 30), -1);
	cr_assert_eq(S.shm_accts[slot].sa_state, ACCT_EMPTY);
	cr_assert_eq(S.shm_accts[slot].sa_token[0], '\0');
	cr_assert_neq(shm_acct_find(&S, 31), -1);
	cr_assert_eq(shm_acct_remove(&S, 31), 0);
	cr_assert_eq(shm_acct_remove(&S, 31), -1);
	cr_assert_eq(pick(&pp), POOL_NONE);
}

/*
 * The 403 path: a worker calls pool_want_refresh and waits for the
 * slot's token generation to move. The child plays the refresher: it
 * registers as one, keeps SIGUSR2 blocked (as refresher.c does outside
 * ppoll) and answers each wake-up by publishing a token for the flagged
 * slot.
 */
Test(pool, want_refresh_wakes_refresher_and_token_changes)
{
	struct pool_pick	 pp;
	sigset_t		 set;
	struct timespec		 ts = { 5, 0 };
	pid_t			 pid;
	uint32_t		 gen;
	int			 slot, status, i;

	slot = add(40, ACCT_ENABLED, "tok-before", 3600);
	cr_assert_eq(pick(&pp), POOL_OK);
	gen = pp.pp_token_gen;
	pool_release(&S, pp.pp_slot, 1, NULL);
	cr_assert_eq(pool_token_changed(&S, slot, gen), 0);

	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);	/* the child inherits it */
	if ((pid = fork()) == 0) {
		S.shm_procs[1].sp_role = ROLE_REFRESHER;
		atomic_store(&S.shm_procs[1].sp_pid, (int32_t)getpid());
		for (i = 0; i < 2; i++) {
			if (sigtimedwait(&set, NULL, &ts) != SIGUSR2)
				_exit(3);
			if (atomic_load(&S.shm_accts[slot].sa_refresh_wanted) !=
			    SHM_REFRESH_WANTED)
				_exit(4);
			shm_acct_set_token(&S, (uint32_t)slot, 40,
			    i == 0 ? "tok-after" : "tok-third",
			    now_wall() + 3600, NULL);
		}
		_exit(0);
	}
	cr_assert_gt(pid, 0);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	/* wait until the child registered: a signal sent before that
	 * would find no refresher (the real one scans at start) */
	for (i = 0; i < 500 && atomic_load(&S.shm_procs[1].sp_pid) == 0; i++)
		usleep(10000);
	cr_assert_neq(atomic_load(&S.shm_procs[1].sp_pid), 0);

	pool_want_refresh(&S, slot);
	for (i = 0; i < 500 && !pool_token_changed(&S, slot, gen); i++)
		usleep(10000);
	cr_assert(pool_token_changed(&S, slot, gen), "no new token");
	cr_assert_eq(atomic_load(&S.shm_accts[slot].sa_refresh_wanted), 0);
	cr_assert_eq(pick(&pp), POOL_OK);
	cr_assert_str_eq(pp.pp_token, "tok-after");
	gen = pp.pp_token_gen;
	pool_release(&S, pp.pp_slot, 1, NULL);

	/* a second 403 on the new token: one more round */
	pool_want_refresh(&S, slot);
	for (i = 0; i < 500 && !pool_token_changed(&S, slot, gen); i++)
		usleep(10000);
	cr_assert(pool_token_changed(&S, slot, gen));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "refresher child status %d", status);
	cr_assert_eq(pick(&pp), POOL_OK);
	cr_assert_str_eq(pp.pp_token, "tok-third");
}

Test(pool, forced_flag_is_not_downgraded)
{
	int	 slot = add(50, ACCT_ENABLED, "tok", 3600);

	atomic_store(&S.shm_accts[slot].sa_refresh_wanted, SHM_REFRESH_FORCED);
	pool_want_refresh(&S, slot);	/* no refresher: just the flag */
	cr_assert_eq(atomic_load(&S.shm_accts[slot].sa_refresh_wanted),
	    SHM_REFRESH_FORCED);
	/* out of range slots are ignored, and count as changed */
	pool_want_refresh(&S, -1);
	pool_want_refresh(&S, NSLOTS);
	cr_assert_eq(pool_token_changed(&S, NSLOTS, 0), 1);
}
