/*
 * test_shm.c - the shared table: layout, key slots, the seqlock under a
 * concurrent writer in another process, and the robust lock surviving a
 * holder that dies. Every test that forks arms an alarm, so a wedged
 * lock fails the test instead of hanging the suite.
 */
#include <sys/wait.h>

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static struct shm	 S;

static void
setup(void)
{
	cr_assert_eq(shm_create(&S, 8, 4), 0);
	alarm(20);	/* watchdog: SIGALRM kills a wedged test */
}

static void
teardown(void)
{
	alarm(0);
	shm_destroy(&S);
}

TestSuite(shm, .init = setup, .fini = teardown, .timeout = 30);

static void
mkhash(unsigned char h[32], int seed)
{
	memset(h, seed, 32);
	h[31] = (unsigned char)(seed * 7 + 1);
}

static void
wait_ok(pid_t pid)
{
	int	 st;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "child did not exit normally (%d)", st);
	cr_assert_eq(WEXITSTATUS(st), 0, "child exit %d", WEXITSTATUS(st));
}

Test(shm, layout)
{
	uintptr_t	 base = (uintptr_t)S.shm_base;

	cr_assert_eq(qr_shm, &S);
	cr_assert_eq(S.shm_hdr->sh_magic, SHM_MAGIC);
	cr_assert_eq(S.shm_hdr->sh_layout, SHM_LAYOUT);
	cr_assert_eq(S.shm_hdr->sh_max_accounts, 8);
	cr_assert_eq(S.shm_hdr->sh_max_keys, 4);
	cr_assert_eq(S.shm_hdr->sh_max_procs, QR_MAX_PROCS);
	cr_assert_gt(S.shm_hdr->sh_started, 0);
	cr_assert_eq(sizeof(struct shm_proc) % 64, 0);
	cr_assert_eq(sizeof(struct shm_acct) % 64, 0);
	cr_assert_eq(sizeof(struct shm_key) % 64, 0);
	cr_assert_eq((uintptr_t)S.shm_procs % 64, 0);
	cr_assert_eq((uintptr_t)S.shm_accts % 64, 0);
	cr_assert_eq((uintptr_t)S.shm_keys % 64, 0);
	/* arrays in order, no overlap, all inside the mapping */
	cr_assert_geq((uintptr_t)S.shm_procs,
	    base + sizeof(struct shm_hdr));
	cr_assert_geq((uintptr_t)S.shm_accts,
	    (uintptr_t)(S.shm_procs + QR_MAX_PROCS));
	cr_assert_geq((uintptr_t)S.shm_keys, (uintptr_t)(S.shm_accts + 8));
	cr_assert_leq((uintptr_t)(S.shm_keys + 4), base + S.shm_size);
	/* the last byte is writable */
	((char *)S.shm_base)[S.shm_size - 1] = 1;
}

Test(shm, bad_sizes)
{
	struct shm	 t;

	cr_assert_eq(shm_create(&t, 0, 4), -1);
	cr_assert_eq(shm_create(&t, 4, 0), -1);
	cr_assert_eq(qr_shm, &S);
}

Test(shm, keys_add_lookup_remove)
{
	unsigned char	 h1[32], h2[32], h3[32];

	mkhash(h1, 1);
	mkhash(h2, 2);
	mkhash(h3, 3);
	cr_assert_eq(shm_key_lookup(&S, h1), -1);
	cr_assert_eq(shm_key_add(&S, 11, h1, "sk-qr-abcdef"), 0);
	cr_assert_eq(shm_key_add(&S, 12, h2, "sk-qr-zzzzzz"), 0);
	cr_assert_eq(S.shm_hdr->sh_keys_high, 2);
	cr_assert_eq(shm_key_lookup(&S, h1), 11);
	cr_assert_eq(shm_key_lookup(&S, h2), 12);
	cr_assert_eq(shm_key_lookup(&S, h3), -1);
	cr_assert_str_eq(S.shm_keys[0].sk_prefix, "sk-qr-abcdef");
	cr_assert_eq(S.shm_keys[0].sk_requests, 1);
	cr_assert_gt(S.shm_keys[0].sk_last_used, 0);
	/* seqlocks are even after writes */
	cr_assert_eq(S.shm_keys[0].sk_seq % 2, 0);
	cr_assert_gt(S.shm_keys[0].sk_seq, 0);

	cr_assert_eq(shm_key_remove(&S, 11), 0);
	cr_assert_eq(shm_key_remove(&S, 11), -1);
	cr_assert_eq(shm_key_lookup(&S, h1), -1);
	cr_assert_eq(shm_key_lookup(&S, h2), 12);

	/* the freed slot is reused, the high mark does not move */
	cr_assert_eq(shm_key_add(&S, 13, h3, "p3"), 0);
	cr_assert_eq(S.shm_keys[0].sk_id, 13);
	cr_assert_eq(S.shm_keys[0].sk_requests, 0);
	cr_assert_eq(S.shm_hdr->sh_keys_high, 2);
	cr_assert_eq(shm_key_lookup(&S, h3), 13);
}

Test(shm, keys_full_and_clear)
{
	unsigned char	 h[32];
	int		 i;

	for (i = 0; i < 4; i++) {
		mkhash(h, 10 + i);
		cr_assert_eq(shm_key_add(&S, 100 + i, h, "p"), 0);
	}
	mkhash(h, 50);
	cr_assert_eq(shm_key_add(&S, 200, h, "p"), -1, "table is full");
	/* re-adding an existing id updates it in place, even when full */
	cr_assert_eq(shm_key_add(&S, 101, h, "new"), 0);
	cr_assert_eq(shm_key_lookup(&S, h), 101);
	mkhash(h, 11);
	cr_assert_eq(shm_key_lookup(&S, h), -1, "old hash of 101 is gone");

	/* retaining none empties the table; freed slots are reused */
	shm_lock(&S);
	shm_keys_retain_locked(&S, NULL, 0);
	shm_unlock(&S);
	mkhash(h, 10);
	cr_assert_eq(shm_key_lookup(&S, h), -1);
	cr_assert_eq(shm_key_add(&S, 300, h, "p"), 0);
	cr_assert_eq(shm_key_lookup(&S, h), 300);
	cr_assert_eq(S.shm_hdr->sh_keys_high, 4, "a freed slot was reused");
}

Test(shm, keys_retain)
{
	static const int64_t	 keep[] = { 101, 103 };
	unsigned char		 h[32];
	int			 i;

	for (i = 0; i < 4; i++) {
		mkhash(h, 10 + i);
		cr_assert_eq(shm_key_add(&S, 100 + i, h, "p"), 0);
	}
	shm_lock(&S);
	shm_keys_retain_locked(&S, keep, nitems(keep));
	shm_unlock(&S);
	for (i = 0; i < 4; i++) {
		mkhash(h, 10 + i);
		cr_assert_eq(shm_key_lookup(&S, h), i == 1 || i == 3 ?
		    100 + i : -1, "key %d", 100 + i);
	}
	for (i = 0; i < 4; i++)
		cr_assert_eq(S.shm_keys[i].sk_seq % 2, 0);
	/* the freed slots take new keys */
	mkhash(h, 60);
	cr_assert_eq(shm_key_add(&S, 200, h, "p"), 0);
	mkhash(h, 61);
	cr_assert_eq(shm_key_add(&S, 201, h, "p"), 0);
	cr_assert_eq(shm_key_lookup(&S, h), 201);
	/* nothing kept: every slot freed */
	shm_lock(&S);
	shm_keys_retain_locked(&S, NULL, 0);
	shm_unlock(&S);
	cr_assert_eq(shm_key_lookup(&S, h), -1);
	mkhash(h, 13);
	cr_assert_eq(shm_key_lookup(&S, h), -1);
}

Test(shm, acct_read_write)
{
	struct shm_acct	 a;

	cr_assert_eq(shm_acct_read(&S, 0, &a), -1, "empty slot");
	cr_assert_eq(shm_acct_read(&S, 8, &a), -1, "out of range");
	S.shm_accts[0].sa_id = 5;
	S.shm_accts[0].sa_state = ACCT_ENABLED;
	shm_acct_write_token(&S, 0, "tok-1", 1000);
	cr_assert_eq(shm_acct_read(&S, 0, &a), 0);
	cr_assert_str_eq(a.sa_token, "tok-1");
	cr_assert_eq(a.sa_expires, 1000);
	cr_assert_eq(a.sa_token_gen, 1);
	shm_acct_write_token(&S, 0, "tok-2", 2000);
	cr_assert_eq(shm_acct_read(&S, 0, &a), 0);
	cr_assert_str_eq(a.sa_token, "tok-2");
	cr_assert_eq(a.sa_token_gen, 2);

	/* a token too long is never published truncated */
	{
		char	 big[SHM_TOKEN_MAX + 10];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		shm_acct_write_token(&S, 0, big, 3000);
		cr_assert_eq(shm_acct_read(&S, 0, &a), 0);
		cr_assert_str_eq(a.sa_token, "");
		cr_assert_eq(a.sa_expires, 0);
	}

	/* a slot stuck mid-write is reported, not spun on for ever */
	S.shm_accts[0].sa_seq++;
	cr_assert_eq(shm_acct_read(&S, 0, &a), -1);
	S.shm_accts[0].sa_seq++;
	cr_assert_eq(shm_acct_read(&S, 0, &a), 0);
}

/*
 * The writer (a child) publishes tokens made of one repeated letter, of
 * a length and letter derived from the expiry; the reader (the parent)
 * checks that every copy it accepts is one whole write.
 */
#define SEQ_WRITES	20000

static size_t
tok_len(int64_t e)
{
	return 64 + (size_t)(e % 1900);
}

static char
tok_char(int64_t e)
{
	return (char)('a' + e % 26);
}

Test(shm, seqlock_never_torn)
{
	struct shm_acct	 a;
	char		 tok[SHM_TOKEN_MAX];
	pid_t		 pid;
	int64_t		 e;
	size_t		 i, n;
	long		 good = 0, reads = 0;
	int		 st;

	S.shm_accts[3].sa_id = 1;
	S.shm_accts[3].sa_state = ACCT_ENABLED;
	shm_acct_write_token(&S, 3, "aaaa", 0);

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		for (e = 1; e <= SEQ_WRITES; e++) {
			n = tok_len(e);
			memset(tok, tok_char(e), n);
			tok[n] = '\0';
			shm_acct_write_token(&S, 3, tok, e);
		}
		_exit(0);
	}
	for (;;) {
		int	 done = waitpid(pid, &st, WNOHANG) == pid;

		reads++;
		if (shm_acct_read(&S, 3, &a) == 0) {
			e = a.sa_expires;
			if (e == 0) {
				cr_assert_str_eq(a.sa_token, "aaaa");
			} else {
				n = strlen(a.sa_token);
				cr_assert_eq(n, tok_len(e),
				    "torn read: len %zu for expiry %ld", n,
				    (long)e);
				for (i = 0; i < n; i++)
					cr_assert_eq(a.sa_token[i], tok_char(e),
					    "torn read at %zu", i);
				good++;
			}
		}
		if (done)
			break;
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_gt(good, 0, "no read succeeded in %ld", reads);
	cr_assert_eq(shm_acct_read(&S, 3, &a), 0);
	cr_assert_eq(a.sa_expires, SEQ_WRITES);
	cr_assert_eq(a.sa_token_gen, SEQ_WRITES + 1);
}

/* A child that takes the lock and exits holding it. */
static pid_t
child_dies_holding(int how)
{
	int	 p[2];
	char	 c;
	pid_t	 pid;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		close(p[0]);
		if (shm_lock(&S) != 0)
			_exit(3);
		/* leave a key slot half-written, as a crash mid-update */
		S.shm_keys[1].sk_seq++;
		S.shm_keys[1].sk_used = 1;
		S.shm_keys[1].sk_id = 77;
		if (write(p[1], "L", 1) != 1)
			_exit(4);
		if (how == 0)
			_exit(0);
		pause();
		_exit(5);
	}
	close(p[1]);
	cr_assert_eq(read(p[0], &c, 1), 1, "child never took the lock");
	close(p[0]);
	if (how == SIGKILL)
		kill(pid, SIGKILL);
	return pid;
}

static void
check_recovered(pid_t pid, int how)
{
	int	 st;
	pid_t	 p2;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	if (how == SIGKILL)
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	else
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	cr_assert_eq(shm_lock(&S), 1, "dead holder not reported");
	/* the half-written slot was repaired */
	cr_assert_eq(S.shm_keys[1].sk_seq % 2, 0);
	cr_assert_eq(S.shm_keys[1].sk_used, 0);
	cr_assert_eq(S.shm_keys[1].sk_id, 0);
	shm_unlock(&S);

	cr_assert_eq(shm_lock(&S), 0, "lock still marked dead");
	shm_unlock(&S);

	/* another process can take it too */
	p2 = fork();
	cr_assert_neq(p2, -1);
	if (p2 == 0) {
		int	 r = shm_lock(&S);

		shm_unlock(&S);
		_exit(r == 0 ? 0 : 1);
	}
	wait_ok(p2);
}

Test(shm, lock_holder_exits)
{
	check_recovered(child_dies_holding(0), 0);
}

Test(shm, lock_holder_killed)
{
	pid_t	 pid = child_dies_holding(SIGKILL);

	check_recovered(pid, SIGKILL);
}

Test(shm, recover_after_reap)
{
	pid_t		 pid;
	int		 st;
	struct shm_acct	 a;

	S.shm_accts[2].sa_id = 9;
	S.shm_accts[2].sa_state = ACCT_ENABLED;
	shm_acct_write_token(&S, 2, "good", 100);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		shm_lock(&S);
		S.shm_accts[2].sa_seq++;	/* dies mid-write */
		memcpy(S.shm_accts[2].sa_token, "bad", 3);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert_eq(shm_acct_read(&S, 2, &a), -1, "odd seq must not read");
	cr_assert_eq(shm_recover(&S), 1);
	cr_assert_eq(shm_acct_read(&S, 2, &a), 0);
	cr_assert_str_eq(a.sa_token, "", "half-written token dropped");
	cr_assert_eq(a.sa_refresh_wanted, 1);
	cr_assert_eq(a.sa_token_gen, 2);
	cr_assert_eq(shm_recover(&S), 0);
}

Test(shm, proc_self)
{
	struct shm_proc	*d, *p;

	shm_proc_set_self(-1);
	d = shm_proc_self();
	cr_assert_not_null(d);
	atomic_fetch_add(&d->sp_requests, 1);	/* always safe */
	cr_assert(d < S.shm_procs || d >= S.shm_procs + QR_MAX_PROCS);
	shm_proc_set_self(3);
	p = shm_proc_self();
	cr_assert_eq(p, &S.shm_procs[3]);
	shm_proc_set_self(QR_MAX_PROCS);
	cr_assert_eq(shm_proc_self(), d);
}
