/*
 * test_pool.c - account selection over the shared table, the account
 * slot writers of shm.c, and the worker -> refresher wake-up.
 */
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

static struct shm	 S;

static void
setup(void)
{
	log_init(1, 0, "test");
	cr_assert_eq(shm_create(&S, 8, 8), 0);
}

static void
teardown(void)
{
	shm_destroy(&S);
}

TestSuite(pool, .init = setup, .fini = teardown);

/* An account in a slot, with a token valid for ttl seconds. */
static int
add(int64_t id, int32_t state, const char *tok, int64_t ttl)
{
	struct shm_acct_meta	 m = { id, state, "label", "us-east-1",
				    "arn:aws:codewhisperer:us-east-1:1:profile/X" };
	int			 slot;

	slot = shm_acct_put(&S, &m, NULL, 0);
	cr_assert_geq(slot, 0);
	if (tok != NULL)
		cr_assert_eq(shm_acct_set_token(&S, (uint32_t)slot, id, tok,
		    now_wall() + ttl, NULL), 0);
	return slot;
}

Test(pool, empty_table_has_nothing)
{
	struct pool_pick	 pp;

	cr_assert_eq(pool_pick(&S, &pp, -1), -1);
}

Test(pool, picks_only_ready_accounts)
{
	struct pool_pick	 pp;
	int			 i, ok;

	add(1, ACCT_DISABLED, "tok-disabled", 3600);
	add(2, ACCT_ENABLED, NULL, 0);			/* no token yet */
	add(3, ACCT_ENABLED, "tok-expiring", 30);	/* < 60 s left */
	ok = add(4, ACCT_ENABLED, "tok-good", 3600);
	for (i = 0; i < 10; i++) {
		cr_assert_eq(pool_pick(&S, &pp, -1), 0);
		cr_assert_eq(pp.pp_id, 4);
		cr_assert_eq(pp.pp_slot, ok);
		cr_assert_str_eq(pp.pp_token, "tok-good");
		cr_assert_str_eq(pp.pp_region, "us-east-1");
		cr_assert_str_eq(pp.pp_profile_arn,
		    "arn:aws:codewhisperer:us-east-1:1:profile/X");
		pool_release(&S, pp.pp_slot, 1, NULL);
	}
	/* excluding the only good one leaves none */
	cr_assert_eq(pool_pick(&S, &pp, ok), -1);
	/* a cooldown takes it out too */
	atomic_store(&S.shm_accts[ok].sa_cooldown_until, now_wall() + 30);
	cr_assert_eq(pool_pick(&S, &pp, -1), -1);
}

Test(pool, round_robin_and_inflight)
{
	struct pool_pick	 pp;
	int			 a, b, i, seen_a = 0, seen_b = 0;

	a = add(10, ACCT_ENABLED, "tok-a", 3600);
	b = add(11, ACCT_ENABLED, "tok-b", 3600);
	for (i = 0; i < 10; i++) {
		cr_assert_eq(pool_pick(&S, &pp, -1), 0);
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
	/* exclusion moves to the other */
	for (i = 0; i < 4; i++) {
		cr_assert_eq(pool_pick(&S, &pp, a), 0);
		cr_assert_eq(pp.pp_slot, b);
	}
}

Test(pool, put_keeps_live_token_and_states)
{
	struct shm_acct_meta	 m = { 20, ACCT_ENABLED, "new label", "eu-west-1",
				    "" };
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
	struct shm_acct_meta	 m = { 30, ACCT_ENABLED, "", "", "" };
	struct pool_pick	 pp;
	int64_t			 keep[] = { 31 };
	int			 slot;

	slot = shm_acct_put(&S, &m, "tok-stored", now_wall() + 3600);
	cr_assert_eq(pool_pick(&S, &pp, -1), 0);
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
	cr_assert_eq(pool_pick(&S, &pp, -1), -1);
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
	cr_assert_eq(pool_pick(&S, &pp, -1), 0);
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
	cr_assert_eq(pool_pick(&S, &pp, -1), 0);
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
	cr_assert_eq(pool_pick(&S, &pp, -1), 0);
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
	pool_want_refresh(&S, 8);
	cr_assert_eq(pool_token_changed(&S, 8, 0), 1);
}
