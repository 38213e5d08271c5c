/*
 * shm.c - the shared table: one anonymous shared mapping the master
 * creates before the first fork, so every child inherits it at the same
 * address. It holds a header (with the pool settings), one slot per
 * process (counters), the account slots (access tokens the refresher
 * publishes; caps, health, usage and counters of the pool), the client
 * API key slots (hashes only), the pool's stickiness table and weighted
 * table (pool.c), and the jobs workers hand to the refresher.
 *
 * The slots are plain data, padded to cache lines, with no pointers.
 * Concurrency, after Apache's scoreboard and Linux's seqlock.h:
 *  - counters are C11 atomics, each with one writer where possible;
 *  - writers of a slot's fields serialise on sh_lock, a process-shared
 *    robust mutex: a holder that dies (kill -9) does not wedge the
 *    others; the next locker gets EOWNERDEAD, marks the mutex consistent
 *    and repairs any slot the dead holder left half-written;
 *  - readers (workers on every request) never take the lock: each slot
 *    has a sequence counter, odd while a write is in progress, and the
 *    reader copies the slot between two reads of it, retrying a bounded
 *    number of times (a writer that died mid-write leaves it odd until
 *    the next locker repairs it, so an unbounded loop could spin for
 *    ever). A key lookup that gives up on a slot waits for its writer on
 *    the lock instead, since missing a live key would refuse a client.
 *
 * The master calls shm_recover() after reaping a child, so a slot the
 * child left half-written is repaired at once, not at the next write.
 */
#include <sys/mman.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

#define SHM_ALIGN		64
#define SHM_READ_TRIES		100	/* seqlock read attempts */
#define SHM_ALIGN_UP(n)		(((n) + SHM_ALIGN - 1) & ~(size_t)(SHM_ALIGN - 1))

struct shm		*qr_shm;

static int		 shm_self_slot = -1;
static struct shm_proc	 shm_dummy_proc;	/* counters go here when unset */

static void	 shm_repair(struct shm *);

/* In a spin: let the sibling hyperthread (the writer, maybe) run. */
void
shm_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/*
 * Seqlock, as Linux's write_seqcount_begin/end: the writer (holding
 * sh_lock, so there is only one) makes the sequence odd, orders that
 * store before its data stores, writes, then publishes an even value
 * with release semantics.
 */
static void
seq_write_begin(_Atomic uint32_t *seq)
{
	uint32_t	 s = atomic_load_explicit(seq, memory_order_relaxed);

	atomic_store_explicit(seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void
seq_write_end(_Atomic uint32_t *seq)
{
	uint32_t	 s = atomic_load_explicit(seq, memory_order_relaxed);

	atomic_store_explicit(seq, s + 1, memory_order_release);
}

/* read_seqbegin: the sequence, or an odd value while a write runs. */
static uint32_t
seq_read_begin(_Atomic uint32_t *seq)
{
	return atomic_load_explicit(seq, memory_order_acquire);
}

/* read_seqretry: 1 when the copy made since begin may be torn. */
static int
seq_read_retry(_Atomic uint32_t *seq, uint32_t start)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(seq, memory_order_relaxed) != start;
}

int
shm_create(struct shm *s, uint32_t max_accounts, uint32_t max_keys)
{
	pthread_mutexattr_t	 ma;
	size_t			 off_procs, off_accts, off_keys, off_sticky;
	size_t			 off_wt, off_jobs, size;
	void			*base;
	int			 rv;

	memset(s, 0, sizeof(*s));
	if (max_accounts == 0 || max_accounts > 1000000 ||
	    max_keys == 0 || max_keys > 1000000) {
		errno = EINVAL;
		return -1;
	}
	off_procs = SHM_ALIGN_UP(sizeof(struct shm_hdr));
	off_accts = SHM_ALIGN_UP(off_procs +
	    QR_MAX_PROCS * sizeof(struct shm_proc));
	off_keys = SHM_ALIGN_UP(off_accts +
	    (size_t)max_accounts * sizeof(struct shm_acct));
	off_sticky = SHM_ALIGN_UP(off_keys +
	    (size_t)max_keys * sizeof(struct shm_key));
	off_wt = SHM_ALIGN_UP(off_sticky +
	    SHM_STICKY * sizeof(struct shm_sticky));
	off_jobs = SHM_ALIGN_UP(off_wt +
	    2 * (size_t)max_accounts * sizeof(struct shm_weight));
	size = SHM_ALIGN_UP(off_jobs + SHM_JOBS * sizeof(struct shm_job));

	/* anonymous and zero-filled: an all-zero slot is a free slot */
	base = mmap(NULL, size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return -1;

	s->shm_base = base;
	s->shm_size = size;
	s->shm_hdr = base;
	s->shm_procs = (struct shm_proc *)((char *)base + off_procs);
	s->shm_accts = (struct shm_acct *)((char *)base + off_accts);
	s->shm_keys = (struct shm_key *)((char *)base + off_keys);
	s->shm_sticky = (struct shm_sticky *)((char *)base + off_sticky);
	s->shm_weights[0] = (struct shm_weight *)((char *)base + off_wt);
	s->shm_weights[1] = s->shm_weights[0] + max_accounts;
	s->shm_jobs = (struct shm_job *)((char *)base + off_jobs);

	s->shm_hdr->sh_magic = SHM_MAGIC;
	s->shm_hdr->sh_layout = SHM_LAYOUT;
	s->shm_hdr->sh_max_accounts = max_accounts;
	s->shm_hdr->sh_max_keys = max_keys;
	s->shm_hdr->sh_max_procs = QR_MAX_PROCS;
	s->shm_hdr->sh_started = (int64_t)now_wall();
	/* the pool settings' defaults until the database's are loaded */
	atomic_store(&s->shm_hdr->sh_strategy, POOL_ROUND_ROBIN);
	atomic_store(&s->shm_hdr->sh_queue_ms, 10000);
	atomic_store(&s->shm_hdr->sh_max_attempts, 3);
	atomic_store(&s->shm_hdr->sh_master_pid, (int32_t)getpid());

	if ((rv = pthread_mutexattr_init(&ma)) != 0)
		goto fail;
	if ((rv = pthread_mutexattr_setpshared(&ma,
	    PTHREAD_PROCESS_SHARED)) != 0 ||
	    (rv = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST)) != 0 ||
	    (rv = pthread_mutex_init(&s->shm_hdr->sh_lock, &ma)) != 0) {
		pthread_mutexattr_destroy(&ma);
		goto fail;
	}
	pthread_mutexattr_destroy(&ma);
	qr_shm = s;
	return 0;

 fail:
	munmap(base, size);
	memset(s, 0, sizeof(*s));
	errno = rv;
	return -1;
}

void
shm_destroy(struct shm *s)
{
	if (s->shm_base == NULL)
		return;
	/* The mutex is not destroyed: children may still map it. */
	munmap(s->shm_base, s->shm_size);
	if (qr_shm == s)
		qr_shm = NULL;
	memset(s, 0, sizeof(*s));
}

int
shm_lock(struct shm *s)
{
	int	 rv;

	rv = pthread_mutex_lock(&s->shm_hdr->sh_lock);
	if (rv == 0)
		return 0;
	if (rv != EOWNERDEAD)
		fatalx("%s: pthread_mutex_lock: %s", __func__, strerror(rv));
	/*
	 * The holder died inside a critical section. The mutex is ours
	 * now; make it usable again, then repair what it protected.
	 */
	if ((rv = pthread_mutex_consistent(&s->shm_hdr->sh_lock)) != 0)
		fatalx("%s: pthread_mutex_consistent: %s", __func__,
		    strerror(rv));
	shm_repair(s);
	log_warnx("%s: the holder of the shared lock died; recovered",
	    __func__);
	return 1;
}

void
shm_unlock(struct shm *s)
{
	int	 rv;

	/* every locked write may have made an account usable again */
	atomic_fetch_add_explicit(&s->shm_hdr->sh_changes, 1,
	    memory_order_release);
	if ((rv = pthread_mutex_unlock(&s->shm_hdr->sh_lock)) != 0)
		fatalx("%s: pthread_mutex_unlock: %s", __func__, strerror(rv));
}

int
shm_recover(struct shm *s)
{
	int	 r;

	r = shm_lock(s);
	shm_unlock(s);
	return r;
}

static void
key_clear(struct shm_key *k)
{
	atomic_store_explicit(&k->sk_used, 0, memory_order_relaxed);
	k->sk_id = 0;
	memset(k->sk_hash, 0, sizeof(k->sk_hash));
	memset(k->sk_prefix, 0, sizeof(k->sk_prefix));
	atomic_store_explicit(&k->sk_requests, 0, memory_order_relaxed);
	atomic_store_explicit(&k->sk_last_used, 0, memory_order_relaxed);
}

/*
 * Called with sh_lock held after EOWNERDEAD. Only a writer holding the
 * lock makes a sequence odd, so every odd sequence is a write the dead
 * holder did not finish: we cannot tell how far it got, so the slot's
 * protected fields are cleared (a key slot is freed and reloaded from
 * SQLite on the next reload; an account loses its token and asks the
 * refresher for a new one) and the sequence made even again.
 */
static void
shm_repair(struct shm *s)
{
	struct shm_hdr	*h = s->shm_hdr;
	uint32_t	 i, n, seq;

	n = atomic_load(&h->sh_keys_high);
	if (n > h->sh_max_keys) {
		log_warnx("%s: key high mark %u out of range", __func__, n);
		atomic_store(&h->sh_keys_high, h->sh_max_keys);
	}
	n = atomic_load(&h->sh_accts_high);
	if (n > h->sh_max_accounts) {
		log_warnx("%s: account high mark %u out of range", __func__, n);
		atomic_store(&h->sh_accts_high, h->sh_max_accounts);
	}

	for (i = 0; i < h->sh_max_keys; i++) {
		struct shm_key	*k = &s->shm_keys[i];

		seq = atomic_load(&k->sk_seq);
		if ((seq & 1) == 0)
			continue;
		log_warnx("%s: key slot %u was half-written; cleared",
		    __func__, i);
		key_clear(k);
		atomic_store_explicit(&k->sk_seq, seq + 1,
		    memory_order_release);
	}
	for (i = 0; i < h->sh_max_accounts; i++) {
		struct shm_acct	*a = &s->shm_accts[i];

		seq = atomic_load(&a->sa_seq);
		if ((seq & 1) == 0)
			continue;
		log_warnx("%s: account slot %u was half-written; token "
		    "dropped", __func__, i);
		explicit_bzero(a->sa_token, sizeof(a->sa_token));
		a->sa_expires = 0;
		atomic_store_explicit(&a->sa_seq, seq + 1,
		    memory_order_release);
		atomic_fetch_add(&a->sa_token_gen, 1);
		atomic_store(&a->sa_refresh_wanted, 1);
	}
}

/*
 * Copies account slot `slot` into out without blocking.
 *
 * The memcpy below may run while the refresher writes the slot: that is
 * a data race in the C11 sense, as in every seqlock reader (Linux's
 * included). It is harmless because the copy is thrown away unless the
 * sequence was even and unchanged around it, and the fences order the
 * copy between the two sequence loads. ASan/UBSan do not object; TSan
 * would, and is not used on this code.
 */
int
shm_acct_read(struct shm *s, uint32_t slot, struct shm_acct *out)
{
	struct shm_acct	*a;
	uint32_t	 seq;
	int		 tries;

	if (slot >= s->shm_hdr->sh_max_accounts)
		return -1;
	a = &s->shm_accts[slot];
	for (tries = 0; tries < SHM_READ_TRIES; tries++) {
		seq = seq_read_begin(&a->sa_seq);
		if (seq & 1) {
			shm_relax();
			continue;
		}
		memcpy(out, a, sizeof(*out));
		if (seq_read_retry(&a->sa_seq, seq)) {
			shm_relax();
			continue;
		}
		/* the copy is consistent; the token is NUL-terminated */
		out->sa_token[sizeof(out->sa_token) - 1] = '\0';
		if (out->sa_id == 0 || out->sa_state == ACCT_EMPTY)
			return -1;
		return 0;
	}
	return -1;
}

void
shm_acct_write_token(struct shm *s, uint32_t slot, const char *tok,
    int64_t expires)
{
	struct shm_acct	*a;
	size_t		 len = strlen(tok);

	if (slot >= s->shm_hdr->sh_max_accounts) {
		log_warnx("%s: slot %u out of range", __func__, slot);
		return;
	}
	if (len >= sizeof(a->sa_token)) {
		/* never publish a truncated token: publish none instead,
		 * so workers ask for a refresh rather than fail upstream */
		log_warnx("%s: slot %u: token of %zu bytes is too long",
		    __func__, slot, len);
		len = 0;
		expires = 0;
	}
	a = &s->shm_accts[slot];
	shm_lock(s);
	seq_write_begin(&a->sa_seq);
	memcpy(a->sa_token, tok, len);
	explicit_bzero(a->sa_token + len, sizeof(a->sa_token) - len);
	a->sa_expires = expires;
	seq_write_end(&a->sa_seq);
	/* after the seqlock, so a waiter that sees the new generation
	 * reads the new token */
	atomic_fetch_add_explicit(&a->sa_token_gen, 1, memory_order_release);
	atomic_store(&a->sa_refresh_wanted, 0);
	shm_unlock(s);
}

/* ---- account slots ---- */

static int
id_cmp(const void *a, const void *b)
{
	int64_t	 x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

const char *
shm_acct_state_name(int32_t st)
{
	static const char *const names[] = {
		[ACCT_EMPTY] = "empty", [ACCT_ENABLED] = "enabled",
		[ACCT_DISABLED] = "disabled", [ACCT_COOLDOWN] = "coolingDown",
		[ACCT_EXHAUSTED] = "exhausted", [ACCT_SUSPENDED] = "suspended",
		[ACCT_REFRESH_FAILED] = "refreshFailed",
	};

	if (st < 0 || (size_t)st >= nitems(names))
		return "unknown";
	return names[st];
}

void
shm_acct_counters(const struct shm_acct *a, struct acct_counters *ac)
{
	ac->ac_requests = (int64_t)atomic_load_explicit(&a->sa_requests,
	    memory_order_relaxed);
	ac->ac_failures = (int64_t)atomic_load_explicit(&a->sa_errors,
	    memory_order_relaxed);
	ac->ac_tokens_in = (int64_t)atomic_load_explicit(&a->sa_tokens_in,
	    memory_order_relaxed);
	ac->ac_tokens_out = (int64_t)atomic_load_explicit(&a->sa_tokens_out,
	    memory_order_relaxed);
	ac->ac_credits = (int64_t)atomic_load_explicit(&a->sa_credits,
	    memory_order_relaxed);
}

int
shm_job_claim(struct shm *s, int kind)
{
	struct shm_job	*j;
	char		 id[37];
	int		 i, rv = -1;

	if (uuid4(id) == -1)
		return -1;
	shm_lock(s);
	for (i = 0; i < SHM_JOBS; i++) {
		j = &s->shm_jobs[i];
		if (atomic_load(&j->sj_state) != SJ_FREE)
			continue;
		memset((char *)j + sizeof(j->sj_state), 0,
		    sizeof(*j) - sizeof(j->sj_state));
		j->sj_kind = kind;
		memcpy(j->sj_id, id, sizeof(j->sj_id));
		j->sj_created = (int64_t)now_wall();
		atomic_store(&j->sj_state, SJ_CLAIMED);
		rv = i;
		break;
	}
	shm_unlock(s);
	return rv;
}

int
shm_job_find(struct shm *s, const char *id)
{
	int	 i;

	for (i = 0; i < SHM_JOBS; i++)
		if (atomic_load(&s->shm_jobs[i].sj_state) != SJ_FREE &&
		    strncmp(s->shm_jobs[i].sj_id, id,
		    sizeof(s->shm_jobs[i].sj_id)) == 0)
			return i;
	return -1;
}

int
shm_job_path(const char *db_path, const char *id, const char *what,
    char *out, size_t outsz)
{
	const char	*slash;
	size_t		 i, dirlen;
	int		 n;

	/* the id is ours (uuid4), but it also comes back in URLs */
	for (i = 0; id[i] != '\0'; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'a' && id[i] <= 'f') || id[i] == '-'))
			return -1;
	if (i != 36)
		return -1;
	if (strcmp(db_path, ":memory:") == 0)
		db_path = P_tmpdir "/x";
	if ((slash = strrchr(db_path, '/')) == NULL)
		n = snprintf(out, outsz, "job-%s.%s", id, what);
	else {
		dirlen = (size_t)(slash - db_path);
		n = snprintf(out, outsz, "%.*s/job-%s.%s", (int)dirlen,
		    db_path, id, what);
	}
	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

int
shm_job_write(const char *db_path, const char *id, const char *what,
    const void *data, size_t len)
{
	char	 path[PATH_MAX], tmp[PATH_MAX + 8];
	ssize_t	 w;
	size_t	 off = 0;
	int	 fd;

	if (shm_job_path(db_path, id, what, path, sizeof(path)) == -1)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* O_EXCL: the id is new, so a file already there is not ours */
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		log_warn("%s: %s", __func__, tmp);
		return -1;
	}
	while (off < len) {
		if ((w = write(fd, (const char *)data + off, len - off)) ==
		    -1) {
			if (errno == EINTR)
				continue;
			log_warn("%s: %s", __func__, tmp);
			close(fd);
			unlink(tmp);
			return -1;
		}
		off += (size_t)w;
	}
	/* whole or not at all: the reader never sees half a file */
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		log_warn("%s: %s", __func__, path);
		unlink(tmp);
		return -1;
	}
	return 0;
}

static uint32_t
acct_high(struct shm *s)
{
	uint32_t	 high = atomic_load_explicit(&s->shm_hdr->sh_accts_high,
			    memory_order_acquire);

	return high > s->shm_hdr->sh_max_accounts ?
	    s->shm_hdr->sh_max_accounts : high;
}

/* sa_id is written under the seqlock and sh_lock; a plain scan is a
 * hint that the callers confirm (under the lock, or by a seqlock copy). */
int
shm_acct_find(struct shm *s, int64_t id)
{
	uint32_t	 i, high = acct_high(s);

	for (i = 0; i < high; i++)
		if (atomic_load(&s->shm_accts[i].sa_state) != ACCT_EMPTY &&
		    s->shm_accts[i].sa_id == id)
			return (int)i;
	return -1;
}

static int
ix_cmp(const void *a, const void *b)
{
	const struct shm_acct_ixe	*x = a, *y = b;

	return (x->ie_id > y->ie_id) - (x->ie_id < y->ie_id);
}

int
shm_acct_ix_build(struct shm *s, struct shm_acct_ix *ix)
{
	uint32_t	 i, high = acct_high(s);

	memset(ix, 0, sizeof(*ix));
	if (high == 0)
		return 0;
	if ((ix->ix_e = calloc(high, sizeof(*ix->ix_e))) == NULL)
		return -1;
	for (i = 0; i < high; i++)
		if (atomic_load(&s->shm_accts[i].sa_state) != ACCT_EMPTY) {
			ix->ix_e[ix->ix_n].ie_id = s->shm_accts[i].sa_id;
			ix->ix_e[ix->ix_n++].ie_slot = i;
		}
	qsort(ix->ix_e, ix->ix_n, sizeof(*ix->ix_e), ix_cmp);
	return 0;
}

int
shm_acct_ix_find(struct shm *s, const struct shm_acct_ix *ix, int64_t id)
{
	struct shm_acct_ixe	 key, *e;

	if (ix == NULL || ix->ix_e == NULL)
		return shm_acct_find(s, id);
	key.ie_id = id;
	e = bsearch(&key, ix->ix_e, ix->ix_n, sizeof(*ix->ix_e), ix_cmp);
	return e != NULL ? (int)e->ie_slot : -1;
}

void
shm_acct_ix_free(struct shm_acct_ix *ix)
{
	free(ix->ix_e);
	memset(ix, 0, sizeof(*ix));
}

static void
acct_copy_str(char *dst, size_t dstsz, const char *src)
{
	memset(dst, 0, dstsz);
	strlcpy_qr(dst, src != NULL ? src : "", dstsz);
}

int
shm_acct_put(struct shm *s, const struct shm_acct_meta *m, const char *tok,
    int64_t expires)
{
	int	 r;

	shm_lock(s);
	r = shm_acct_put_locked(s, m, tok, expires);
	shm_unlock(s);
	return r;
}

int
shm_acct_put_locked(struct shm *s, const struct shm_acct_meta *m,
    const char *tok, int64_t expires)
{
	return shm_acct_put_ix_locked(s, NULL, m, tok, expires);
}

/*
 * A free slot for a new account: below ix_free (the slots before it
 * are known to be taken) up to the high mark, else a new one. A slot a
 * deleted account's requests still run on is taken only when nothing
 * else is free.
 */
static uint32_t
acct_free_slot(struct shm *s, struct shm_acct_ix *ix)
{
	struct shm_hdr	*h = s->shm_hdr;
	struct shm_acct	*a;
	uint32_t	 i, high, busy = UINT32_MAX;

	high = atomic_load(&h->sh_accts_high);
	for (i = ix != NULL ? ix->ix_free : 0; i < high; i++) {
		a = &s->shm_accts[i];
		if (atomic_load(&a->sa_state) != ACCT_EMPTY)
			continue;
		if (atomic_load(&a->sa_inflight) == 0) {
			if (ix != NULL)
				ix->ix_free = i + 1;
			return i;
		}
		if (busy == UINT32_MAX)
			busy = i;
	}
	if (ix != NULL)
		ix->ix_free = high;
	if (high < h->sh_max_accounts)
		return high;
	return busy;
}

int
shm_acct_put_ix_locked(struct shm *s, struct shm_acct_ix *ix,
    const struct shm_acct_meta *m, const char *tok, int64_t expires)
{
	struct shm_hdr	*h = s->shm_hdr;
	struct shm_acct	*a;
	uint32_t	 high, slot;
	int32_t		 cur;
	int		 fresh, found;

	high = atomic_load(&h->sh_accts_high);
	if ((found = shm_acct_ix_find(s, ix, m->am_id)) >= 0 &&
	    s->shm_accts[found].sa_id == m->am_id &&
	    atomic_load(&s->shm_accts[found].sa_state) != ACCT_EMPTY)
		slot = (uint32_t)found;
	else if ((slot = acct_free_slot(s, ix)) == UINT32_MAX)
		return -1;
	a = &s->shm_accts[slot];
	cur = atomic_load(&a->sa_state);
	fresh = cur == ACCT_EMPTY || a->sa_id != m->am_id;
	seq_write_begin(&a->sa_seq);
	if (fresh) {
		/* sa_inflight stays: requests of a deleted account that
		 * still run give their count back to this slot */
		a->sa_id = m->am_id;
		explicit_bzero(a->sa_token, sizeof(a->sa_token));
		a->sa_expires = 0;
		if (tok != NULL && strlen(tok) < sizeof(a->sa_token)) {
			memcpy(a->sa_token, tok, strlen(tok));
			a->sa_expires = expires;
		}
		memset(a->sa_last_error, 0, sizeof(a->sa_last_error));
		atomic_store(&a->sa_refresh_wanted, 0);
		atomic_store(&a->sa_usage_wanted, 0);
		atomic_store(&a->sa_rpm_tat, 0);
		/* what the refresher last persisted goes on */
		atomic_store(&a->sa_cooldown_until, m->am_cooldown_until);
		atomic_store(&a->sa_cooldown_streak, 0);
		atomic_store(&a->sa_exhausted_until, 0);
		atomic_store(&a->sa_last_used, 0);
		atomic_store(&a->sa_usage_checked, 0);
		atomic_store(&a->sa_requests,
		    (uint64_t)m->am_counters.ac_requests);
		atomic_store(&a->sa_errors,
		    (uint64_t)m->am_counters.ac_failures);
		atomic_store(&a->sa_tokens_in,
		    (uint64_t)m->am_counters.ac_tokens_in);
		atomic_store(&a->sa_tokens_out,
		    (uint64_t)m->am_counters.ac_tokens_out);
		atomic_store(&a->sa_credits,
		    (uint64_t)m->am_counters.ac_credits);
	}
	acct_copy_str(a->sa_label, sizeof(a->sa_label), m->am_label);
	acct_copy_str(a->sa_region, sizeof(a->sa_region), m->am_region);
	acct_copy_str(a->sa_profile_arn, sizeof(a->sa_profile_arn),
	    m->am_profile_arn);
	acct_copy_str(a->sa_proxy, sizeof(a->sa_proxy), m->am_proxy);
	atomic_store(&a->sa_max_inflight, m->am_max_inflight > 0 ?
	    m->am_max_inflight : 0);
	atomic_store(&a->sa_rpm, m->am_rpm > 0 ? m->am_rpm : 0);
	/* the database's usage when it is newer than what the slot has */
	if (m->am_usage_checked > atomic_load(&a->sa_usage_checked)) {
		atomic_store(&a->sa_usage_used, m->am_usage_used);
		atomic_store(&a->sa_usage_limit, m->am_usage_limit);
		atomic_store(&a->sa_usage_reset, m->am_usage_reset);
		atomic_store(&a->sa_usage_checked, m->am_usage_checked);
	}
	/*
	 * States: a reload brings what a person did (enable, disable) and
	 * what the refresher kept (suspended, exhausted); what workers just
	 * learnt and the refresher has not written yet stays.
	 */
	if (m->am_reset_health) {
		atomic_store(&a->sa_cooldown_until, 0);
		atomic_store(&a->sa_cooldown_streak, 0);
		atomic_store(&a->sa_exhausted_until, m->am_exhausted_until);
		atomic_store(&a->sa_state, m->am_state);
		memset(a->sa_last_error, 0, sizeof(a->sa_last_error));
	} else {
		if (m->am_exhausted_until > atomic_load(&a->sa_exhausted_until))
			atomic_store(&a->sa_exhausted_until,
			    m->am_exhausted_until);
		if (fresh || m->am_state == ACCT_DISABLED ||
		    cur == ACCT_DISABLED || m->am_state == ACCT_SUSPENDED)
			atomic_store(&a->sa_state, m->am_state);
	}
	seq_write_end(&a->sa_seq);
	if (fresh)
		atomic_fetch_add_explicit(&a->sa_token_gen, 1,
		    memory_order_release);
	if (slot >= high)
		atomic_store_explicit(&h->sh_accts_high, slot + 1,
		    memory_order_release);
	return (int)slot;
}

static void
acct_clear(struct shm_acct *a)
{
	seq_write_begin(&a->sa_seq);
	atomic_store(&a->sa_state, ACCT_EMPTY);
	a->sa_id = 0;
	explicit_bzero(a->sa_token, sizeof(a->sa_token));
	a->sa_expires = 0;
	memset(a->sa_label, 0, sizeof(a->sa_label));
	memset(a->sa_region, 0, sizeof(a->sa_region));
	memset(a->sa_profile_arn, 0, sizeof(a->sa_profile_arn));
	memset(a->sa_proxy, 0, sizeof(a->sa_proxy));
	memset(a->sa_last_error, 0, sizeof(a->sa_last_error));
	atomic_store(&a->sa_refresh_wanted, 0);
	atomic_store(&a->sa_usage_wanted, 0);
	seq_write_end(&a->sa_seq);
	/* a worker waiting on the token learns it is gone */
	atomic_fetch_add_explicit(&a->sa_token_gen, 1, memory_order_release);
}

int
shm_acct_remove(struct shm *s, int64_t id)
{
	uint32_t	 i, high;
	int		 rv = -1;

	shm_lock(s);
	high = atomic_load(&s->shm_hdr->sh_accts_high);
	for (i = 0; i < high; i++) {
		struct shm_acct	*a = &s->shm_accts[i];

		if (atomic_load(&a->sa_state) == ACCT_EMPTY || a->sa_id != id)
			continue;
		acct_clear(a);
		rv = 0;
		break;
	}
	shm_unlock(s);
	return rv;
}

void
shm_accts_retain_locked(struct shm *s, const int64_t *ids, size_t n)
{
	uint32_t	 i, high;

	high = atomic_load(&s->shm_hdr->sh_accts_high);
	for (i = 0; i < high; i++) {
		struct shm_acct	*a = &s->shm_accts[i];

		if (atomic_load(&a->sa_state) == ACCT_EMPTY || (n > 0 &&
		    bsearch(&a->sa_id, ids, n, sizeof(*ids), id_cmp) != NULL))
			continue;
		acct_clear(a);
	}
}

/* The slot, locked, if it holds id (0: any account); else NULL, unlocked. */
static struct shm_acct *
acct_lock_id(struct shm *s, uint32_t slot, int64_t id)
{
	struct shm_acct	*a;

	if (slot >= s->shm_hdr->sh_max_accounts)
		return NULL;
	a = &s->shm_accts[slot];
	shm_lock(s);
	if (atomic_load(&a->sa_state) == ACCT_EMPTY ||
	    (id != 0 && a->sa_id != id)) {
		shm_unlock(s);
		return NULL;
	}
	return a;
}

int
shm_acct_set_token(struct shm *s, uint32_t slot, int64_t id, const char *tok,
    int64_t expires, const char *profile_arn)
{
	struct shm_acct	*a;
	size_t		 len = strlen(tok);

	if (len >= SHM_TOKEN_MAX) {
		log_warnx("%s: slot %u: token of %zu bytes is too long",
		    __func__, slot, len);
		len = 0;
		expires = 0;
	}
	if ((a = acct_lock_id(s, slot, id)) == NULL)
		return -1;
	seq_write_begin(&a->sa_seq);
	memcpy(a->sa_token, tok, len);
	explicit_bzero(a->sa_token + len, sizeof(a->sa_token) - len);
	a->sa_expires = expires;
	if (profile_arn != NULL && *profile_arn != '\0')
		acct_copy_str(a->sa_profile_arn, sizeof(a->sa_profile_arn),
		    profile_arn);
	memset(a->sa_last_error, 0, sizeof(a->sa_last_error));
	seq_write_end(&a->sa_seq);
	atomic_fetch_add_explicit(&a->sa_token_gen, 1, memory_order_release);
	atomic_store(&a->sa_refresh_wanted, 0);
	shm_unlock(s);
	return 0;
}

int
shm_acct_set_error(struct shm *s, uint32_t slot, int64_t id, const char *err)
{
	struct shm_acct	*a;

	if ((a = acct_lock_id(s, slot, id)) == NULL)
		return -1;
	seq_write_begin(&a->sa_seq);
	acct_copy_str(a->sa_last_error, sizeof(a->sa_last_error), err);
	seq_write_end(&a->sa_seq);
	shm_unlock(s);
	return 0;
}

int
shm_acct_set_state(struct shm *s, uint32_t slot, int64_t id, int32_t from,
    int32_t to)
{
	struct shm_acct	*a;
	int		 rv = -1;

	if ((a = acct_lock_id(s, slot, id)) == NULL)
		return -1;
	if (from == -1 || atomic_load(&a->sa_state) == from) {
		atomic_store(&a->sa_state, to);
		rv = 0;
	}
	shm_unlock(s);
	return rv;
}

int
shm_key_add(struct shm *s, int64_t id, const unsigned char hash[32],
    const char *prefix)
{
	int	 rv;

	shm_lock(s);
	rv = shm_key_add_locked(s, id, hash, prefix);
	shm_unlock(s);
	return rv;
}

int
shm_key_add_locked(struct shm *s, int64_t id, const unsigned char hash[32],
    const char *prefix)
{
	struct shm_hdr	*h = s->shm_hdr;
	struct shm_key	*k;
	uint32_t	 i, high, free_slot = UINT32_MAX;
	int		 rv = -1;

	high = atomic_load(&h->sh_keys_high);
	for (i = 0; i < high; i++) {
		k = &s->shm_keys[i];
		if (atomic_load(&k->sk_used)) {
			if (k->sk_id == id) {	/* re-added: update in place */
				free_slot = i;
				break;
			}
		} else if (free_slot == UINT32_MAX)
			free_slot = i;
	}
	if (free_slot == UINT32_MAX) {
		if (high >= h->sh_max_keys)
			goto done;
		free_slot = high;
	}
	k = &s->shm_keys[free_slot];
	seq_write_begin(&k->sk_seq);
	if (!atomic_load_explicit(&k->sk_used, memory_order_relaxed) ||
	    k->sk_id != id) {
		atomic_store_explicit(&k->sk_requests, 0, memory_order_relaxed);
		atomic_store_explicit(&k->sk_last_used, 0, memory_order_relaxed);
	}
	k->sk_id = id;
	memcpy(k->sk_hash, hash, sizeof(k->sk_hash));
	memset(k->sk_prefix, 0, sizeof(k->sk_prefix));
	strlcpy_qr(k->sk_prefix, prefix != NULL ? prefix : "",
	    sizeof(k->sk_prefix));
	atomic_store_explicit(&k->sk_used, 1, memory_order_relaxed);
	seq_write_end(&k->sk_seq);
	/* publish the slot to scanners only once it is complete */
	if (free_slot >= high)
		atomic_store_explicit(&h->sh_keys_high, free_slot + 1,
		    memory_order_release);
	rv = 0;
 done:
	return rv;
}

int
shm_key_remove(struct shm *s, int64_t id)
{
	struct shm_key	*k;
	uint32_t	 i, high;
	int		 rv = -1;

	shm_lock(s);
	high = atomic_load(&s->shm_hdr->sh_keys_high);
	for (i = 0; i < high; i++) {
		k = &s->shm_keys[i];
		if (!atomic_load(&k->sk_used) || k->sk_id != id)
			continue;
		seq_write_begin(&k->sk_seq);
		key_clear(k);
		seq_write_end(&k->sk_seq);
		rv = 0;
		break;
	}
	shm_unlock(s);
	return rv;
}

void
shm_keys_retain_locked(struct shm *s, const int64_t *ids, size_t n)
{
	struct shm_key	*k;
	uint32_t	 i, high;

	high = atomic_load(&s->shm_hdr->sh_keys_high);
	for (i = 0; i < high; i++) {
		k = &s->shm_keys[i];
		if (!atomic_load(&k->sk_used) || (n > 0 &&
		    bsearch(&k->sk_id, ids, n, sizeof(*ids), id_cmp) != NULL))
			continue;
		seq_write_begin(&k->sk_seq);
		key_clear(k);
		seq_write_end(&k->sk_seq);
	}
}

/*
 * The id of the key whose SHA-256 is hash, or -1. Lock-free: each slot
 * is read under its seqlock (see shm_acct_read about the copy), and the
 * hash is compared in constant time. A slot still contended after
 * SHM_READ_TRIES reads is skipped: a key being rewritten at this very
 * moment may fail once, which is better than a worker that blocks.
 */
int64_t
shm_key_lookup(struct shm *s, const unsigned char hash[32])
{
	struct shm_key	*k;
	unsigned char	 h[32];
	int64_t		 id = -1;
	uint32_t	 i, high, seq;
	int		 used = 0, tries;

	high = atomic_load_explicit(&s->shm_hdr->sh_keys_high,
	    memory_order_acquire);
	if (high > s->shm_hdr->sh_max_keys)
		high = s->shm_hdr->sh_max_keys;
	for (i = 0; i < high; i++) {
		k = &s->shm_keys[i];
		for (tries = 0; tries < SHM_READ_TRIES; tries++) {
			seq = seq_read_begin(&k->sk_seq);
			if (seq & 1) {
				shm_relax();
				continue;
			}
			used = atomic_load_explicit(&k->sk_used,
			    memory_order_relaxed);
			id = k->sk_id;
			memcpy(h, k->sk_hash, sizeof(h));
			if (!seq_read_retry(&k->sk_seq, seq))
				break;
			shm_relax();
		}
		if (tries == SHM_READ_TRIES) {
			/* a writer was preempted mid-write (or died): wait
			 * for it on the lock rather than miss a live key */
			shm_lock(s);
			used = atomic_load(&k->sk_used);
			id = k->sk_id;
			memcpy(h, k->sk_hash, sizeof(h));
			shm_unlock(s);
		}
		if (!used)
			continue;
		if (!ct_equal(h, hash, sizeof(h)))
			continue;
		atomic_fetch_add_explicit(&k->sk_requests, 1,
		    memory_order_relaxed);
		atomic_store_explicit(&k->sk_last_used, (int64_t)now_wall(),
		    memory_order_relaxed);
		return id;
	}
	return -1;
}

struct shm_proc *
shm_proc_self(void)
{
	if (qr_shm == NULL || shm_self_slot < 0 ||
	    shm_self_slot >= QR_MAX_PROCS)
		return &shm_dummy_proc;
	return &qr_shm->shm_procs[shm_self_slot];
}

void
shm_proc_set_self(int slot)
{
	shm_self_slot = (slot >= 0 && slot < QR_MAX_PROCS) ? slot : -1;
}
