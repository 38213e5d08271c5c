/*
 * pool.c - picking an upstream account for a request.
 *
 * Runs in the workers, on every relayed request, and touches only the
 * shared table: no lock, no database. A pick is a seqlock-consistent
 * copy of an account slot (shm_acct_read), so a worker never sees half
 * of a token the refresher is writing. The policy today is plain
 * round-robin over the accounts that are enabled and hold a token valid
 * for at least another POOL_MIN_VALID seconds; quotas, cooldowns and
 * failover weights arrive with the full pool policy.
 *
 * When the upstream says "bearer token invalid", the worker flags the
 * slot and wakes the refresher with SIGUSR2. The refresher keeps the
 * signal blocked except while it sleeps in ppoll, and sets no flag of
 * its own: it rescans every slot each time it wakes, so a wake-up that
 * arrives while it is busy stays pending and is never lost.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

#define POOL_MIN_VALID	60	/* seconds a picked token must still live */

static _Atomic uint32_t	 pool_next;	/* round-robin cursor, per process */

int
pool_acct_ready(const struct shm_acct *a, int64_t now)
{
	return a->sa_state == ACCT_ENABLED && a->sa_token[0] != '\0' &&
	    a->sa_expires > now + POOL_MIN_VALID &&
	    atomic_load_explicit(&a->sa_cooldown_until,
	    memory_order_relaxed) <= now;
}

int
pool_pick(struct shm *s, struct pool_pick *pp, int exclude_slot)
{
	struct shm_acct	*a, copy;
	uint32_t	 high, start, i, slot;
	int64_t		 now = now_wall();
	int		 rv = -1;

	high = atomic_load_explicit(&s->shm_hdr->sh_accts_high,
	    memory_order_acquire);
	if (high > s->shm_hdr->sh_max_accounts)
		high = s->shm_hdr->sh_max_accounts;
	if (high == 0)
		return -1;
	start = atomic_fetch_add_explicit(&pool_next, 1,
	    memory_order_relaxed) % high;
	for (i = 0; i < high; i++) {
		slot = (start + i) % high;
		if ((int)slot == exclude_slot)
			continue;
		a = &s->shm_accts[slot];
		/* cheap looks first: most slots are skipped without a copy */
		if (atomic_load_explicit(&a->sa_state, memory_order_relaxed) !=
		    ACCT_ENABLED)
			continue;
		if (shm_acct_read(s, slot, &copy) == -1 ||
		    !pool_acct_ready(&copy, now))
			continue;
		atomic_fetch_add(&a->sa_inflight, 1);
		memset(pp, 0, sizeof(*pp));
		pp->pp_slot = (int)slot;
		pp->pp_id = copy.sa_id;
		pp->pp_token_gen = atomic_load_explicit(&a->sa_token_gen,
		    memory_order_acquire);
		memcpy(pp->pp_token, copy.sa_token, sizeof(pp->pp_token));
		memcpy(pp->pp_region, copy.sa_region, sizeof(pp->pp_region));
		memcpy(pp->pp_profile_arn, copy.sa_profile_arn,
		    sizeof(pp->pp_profile_arn));
		rv = 0;
		break;
	}
	explicit_bzero(copy.sa_token, sizeof(copy.sa_token));
	return rv;
}

void
pool_release(struct shm *s, int slot, int ok, const char *error)
{
	struct shm_acct	*a;

	if (slot < 0 || (uint32_t)slot >= s->shm_hdr->sh_max_accounts)
		return;
	a = &s->shm_accts[slot];
	/* never below zero, even if a reload reset the slot meanwhile */
	{
		int32_t	 n = atomic_load(&a->sa_inflight);

		while (n > 0 && !atomic_compare_exchange_weak(&a->sa_inflight,
		    &n, n - 1))
			;
	}
	atomic_fetch_add_explicit(&a->sa_requests, 1, memory_order_relaxed);
	if (ok)
		return;
	atomic_fetch_add_explicit(&a->sa_errors, 1, memory_order_relaxed);
	if (error != NULL && *error != '\0')
		(void)shm_acct_set_error(s, (uint32_t)slot, 0, error);
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
