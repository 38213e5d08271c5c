/*
 * secret.c - secrets at rest: the refresh tokens, client secrets and
 * access tokens of the upstream accounts are stored sealed in SQLite.
 *
 * Sealing is public-key: the key file beside the database
 * (<dbdir>/qrelayd.key, 0600, a PEM PKCS#8 X25519 private key) gives a
 * static key pair. Anyone holding the public key can seal; only the
 * private key opens. The master reads (or, at the first start, creates)
 * the file before it forks and before it drops privileges; the children
 * inherit both halves in memory and never open the file. Each worker
 * calls secret_forget_private() first thing after the fork: it may store
 * a new account (POST /v2/accounts) but can never read a refresh token
 * or client secret back, as the design wants. The master keeps the
 * private key (it opens the access tokens when it loads the accounts
 * into the shared table) and so does the refresher (it renews tokens).
 * qrelayctl reads the file like the master and keeps both halves.
 *
 * A stored value is: version byte 2, the 32-byte ephemeral X25519
 * public key, a 12-byte random nonce, the AES-256-GCM ciphertext, the
 * 16-byte tag. The AES key is HKDF-SHA256 of the X25519 shared secret,
 * its info binding the ephemeral and the static public keys and the
 * column name, so a blob moved to another column fails to open. The
 * header (version, ephemeral key, nonce) is the GCM associated data.
 *
 * The key file of version 1 (64 hex digits of an AES key) is replaced
 * by a new one at start when no account row exists; with account rows
 * it is refused, since those rows cannot be opened any more.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>

#include "qrelayd.h"

#define SECRET_VERSION		2
#define SECRET_PUB_LEN		32	/* X25519 public key */
#define SECRET_NONCE_LEN	12
#define SECRET_TAG_LEN		16
#define SECRET_HDR_LEN		(1 + SECRET_PUB_LEN + SECRET_NONCE_LEN)
#define SECRET_OVERHEAD		(SECRET_HDR_LEN + SECRET_TAG_LEN)
#define SECRET_MAX_PLAIN	(64 * 1024)
#define SECRET_AAD_MAX		128
#define SECRET_FILE_MAX		4096
#define SECRET_FILE_OLD		1	/* secret_read_file: a version 1 key */
#define SECRET_INFO_LABEL	"qrelay secret v2"

static unsigned char	 secret_priv[SECRET_KEY_LEN];
static unsigned char	 secret_pub[SECRET_PUB_LEN];
static int		 secret_have_priv, secret_have_pub;

int
secret_key_path(const char *db_path, char *out, size_t outsz)
{
	char	 dir[PATH_MAX];

	if (strlcpy_qr(dir, db_path, sizeof(dir)) >= sizeof(dir))
		return -1;
	if ((size_t)snprintf(out, outsz, "%s/qrelayd.key", dirname(dir)) >=
	    outsz)
		return -1;
	return 0;
}

int
secret_set_key(const unsigned char key[SECRET_KEY_LEN])
{
	EVP_PKEY	*pk;
	size_t		 len = sizeof(secret_pub);
	int		 rv = -1;

	secret_forget();
	if ((pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, key,
	    SECRET_KEY_LEN)) == NULL ||
	    EVP_PKEY_get_raw_public_key(pk, secret_pub, &len) != 1 ||
	    len != sizeof(secret_pub))
		goto done;
	memcpy(secret_priv, key, SECRET_KEY_LEN);
	secret_have_priv = secret_have_pub = 1;
	rv = 0;
 done:
	EVP_PKEY_free(pk);	/* clears its copy of the private key */
	return rv;
}

void
secret_forget_private(void)
{
	explicit_bzero(secret_priv, sizeof(secret_priv));
	secret_have_priv = 0;
}

void
secret_forget(void)
{
	secret_forget_private();
	explicit_bzero(secret_pub, sizeof(secret_pub));
	secret_have_pub = 0;
}

/* Never prompt for a passphrase: the key file has none. */
static int
secret_no_pass(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

static int
secret_old_format(const char *text, ssize_t n)
{
	return (n == 2 * SECRET_KEY_LEN || (n == 2 * SECRET_KEY_LEN + 1 &&
	    text[n - 1] == '\n')) &&
	    strspn(text, "0123456789abcdefABCDEF") == 2 * SECRET_KEY_LEN;
}

/* 0, SECRET_FILE_OLD for a version 1 key, or -1 with errno set. */
static int
secret_read_file(const char *path)
{
	struct stat	 st;
	char		 text[SECRET_FILE_MAX + 1];
	unsigned char	 key[SECRET_KEY_LEN];
	EVP_PKEY	*pk = NULL;
	BIO		*bio = NULL;
	size_t		 len = sizeof(key);
	ssize_t		 n;
	int		 fd, rv = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto done;
	if (st.st_mode & 077)
		log_warnx("%s: %s is readable by others; chmod 600 it",
		    __func__, path);
	if ((n = read(fd, text, SECRET_FILE_MAX)) == -1)
		goto done;
	text[n] = '\0';
	if (secret_old_format(text, n)) {
		rv = SECRET_FILE_OLD;
		goto done;
	}
	if ((bio = BIO_new_mem_buf(text, (int)n)) == NULL ||
	    (pk = PEM_read_bio_PrivateKey(bio, NULL, secret_no_pass,
	    NULL)) == NULL || EVP_PKEY_id(pk) != EVP_PKEY_X25519 ||
	    EVP_PKEY_get_raw_private_key(pk, key, &len) != 1 ||
	    len != sizeof(key) || secret_set_key(key) == -1) {
		log_warnx("%s: %s: not an X25519 private key (PEM)",
		    __func__, path);
		errno = EINVAL;
		goto done;
	}
	rv = 0;
 done:
	EVP_PKEY_free(pk);
	BIO_free(bio);
	explicit_bzero(text, sizeof(text));
	explicit_bzero(key, sizeof(key));
	close(fd);
	return rv;
}

/*
 * A new key goes to a temporary file first and is then linked to its
 * name: link(2) fails when the name exists, so two processes creating
 * the key at once (the daemon and qrelayctl) agree on one, and a reader
 * never sees a half-written file. A version 1 key is replaced with
 * rename(2) instead, under the lock secret_replace_old holds.
 */
static int
secret_create_file(const char *path, int replace)
{
	char		 tmp[PATH_MAX];
	EVP_PKEY_CTX	*ctx = NULL;
	EVP_PKEY	*pk = NULL;
	BIO		*bio = NULL;
	mode_t		 oldmask;
	int		 fd = -1, rv = -1;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >=
	    sizeof(tmp))
		return -1;
	oldmask = umask(077);
	fd = mkstemp(tmp);
	umask(oldmask);
	if (fd == -1) {
		log_warn("%s: mkstemp %s", __func__, tmp);
		return -1;
	}
	if ((ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL)) == NULL ||
	    EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pk) != 1 ||
	    (bio = BIO_new_fd(fd, BIO_NOCLOSE)) == NULL) {
		log_warnx("%s: cannot make a key", __func__);
		goto done;
	}
	if (fchmod(fd, 0600) == -1 || PEM_write_bio_PrivateKey(bio, pk, NULL,
	    NULL, 0, NULL, NULL) != 1 || BIO_flush(bio) != 1 ||
	    fsync(fd) == -1) {
		log_warn("%s: %s", __func__, tmp);
		goto done;
	}
	if (replace) {
		if (rename(tmp, path) == -1) {
			log_warn("%s: rename %s", __func__, path);
			goto done;
		}
	} else if (link(tmp, path) == -1) {
		if (errno != EEXIST)
			log_warn("%s: link %s", __func__, path);
		goto done;	/* someone else's key wins: read it */
	} else
		log_info("created the secrets key %s", path);
	rv = 0;
 done:
	BIO_free(bio);
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(ctx);
	if (fd != -1)
		close(fd);
	unlink(tmp);	/* ENOENT after a rename */
	return rv;
}

/* 1 when the database has an account row, 0 when not, -1 unknown. */
static int
secret_db_has_accounts(const char *db_path)
{
	static const char *const q[] = {
		"SELECT EXISTS (SELECT 1 FROM sqlite_master"
		" WHERE type = 'table' AND name = 'accounts')",
		"SELECT EXISTS (SELECT 1 FROM accounts)"
	};
	struct stat	 st;
	sqlite3		*db = NULL;
	sqlite3_stmt	*s;
	size_t		 i;
	int		 r = 1;

	if (stat(db_path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	for (i = 0; i < nitems(q) && r == 1; i++) {
		if (sqlite3_prepare_v2(db, q[i], -1, &s, NULL) != SQLITE_OK)
			r = -1;
		else {
			r = sqlite3_step(s) == SQLITE_ROW ?
			    sqlite3_column_int(s, 0) : -1;
			sqlite3_finalize(s);
		}
	}
	sqlite3_close(db);
	return r;
}

/*
 * A version 1 key file sealed nothing this version can open. With no
 * account row it is replaced; with rows, refused: the rows are lost to
 * this version and the admin has to decide. The lock on the old file
 * and the inode check keep two processes from replacing it twice.
 */
static int
secret_replace_old(const char *db_path, const char *path)
{
	struct stat	 sa, sb;
	int		 fd, r, rv = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return -1;
	if (flock(fd, LOCK_EX) == -1 || fstat(fd, &sa) == -1)
		goto done;
	if (stat(path, &sb) == -1 || sa.st_dev != sb.st_dev ||
	    sa.st_ino != sb.st_ino) {
		rv = 0;		/* replaced while we waited: read it */
		goto done;
	}
	if ((r = secret_db_has_accounts(db_path)) != 0) {
		if (r == 1)
			log_warnx("%s is a key of the old format (an AES key) "
			    "and %s has accounts stored with it, which this "
			    "version cannot read: remove them (qrelayctl "
			    "account rm ID), then start again to get a new "
			    "key, and add them again", path, db_path);
		else
			log_warnx("%s is a key of the old format and %s "
			    "cannot be read to check that it has no accounts",
			    path, db_path);
		goto done;
	}
	if (secret_create_file(path, 1) == -1)
		goto done;
	log_info("replaced the old-format key %s with a new key (no "
	    "account used it)", path);
	rv = 0;
 done:
	close(fd);
	return rv;
}

int
secret_init(const char *db_path, int create)
{
	char		 path[PATH_MAX];
	unsigned char	 key[SECRET_KEY_LEN];
	int		 r;

	secret_forget();
	if (strcmp(db_path, ":memory:") == 0) {
		/* a database that dies with the process: so does its key */
		r = random_bytes(key, sizeof(key)) == -1 ? -1 :
		    secret_set_key(key);
		explicit_bzero(key, sizeof(key));
		return r;
	}
	if (secret_key_path(db_path, path, sizeof(path)) == -1) {
		log_warnx("%s: %s: path too long", __func__, db_path);
		return -1;
	}
	if ((r = secret_read_file(path)) == 0)
		return 0;
	if (r == SECRET_FILE_OLD) {
		if (!create) {
			log_warnx("%s: %s is a key of the old format",
			    __func__, path);
			return -1;
		}
		if (secret_replace_old(db_path, path) == -1)
			return -1;
	} else if (errno != ENOENT || !create) {
		if (errno != EINVAL)
			log_warn("%s: cannot read %s", __func__, path);
		return -1;
	} else
		(void)secret_create_file(path, 0);
	if (secret_read_file(path) != 0) {
		log_warnx("%s: cannot read %s", __func__, path);
		return -1;
	}
	return 0;
}

int
secret_ready(void)
{
	return secret_have_pub;
}

int
secret_has_private(void)
{
	return secret_have_priv;
}

/* X25519 of mine and the peer's public key. */
static int
secret_dh(EVP_PKEY *mine, const unsigned char peer_pub[SECRET_PUB_LEN],
    unsigned char out[32])
{
	EVP_PKEY	*peer;
	EVP_PKEY_CTX	*ctx = NULL;
	size_t		 len = 32;
	int		 rv = -1;

	if ((peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL,
	    peer_pub, SECRET_PUB_LEN)) == NULL)
		return -1;
	/* OpenSSL refuses an all-zero result (a small-order peer key) */
	if ((ctx = EVP_PKEY_CTX_new(mine, NULL)) != NULL &&
	    EVP_PKEY_derive_init(ctx) == 1 &&
	    EVP_PKEY_derive_set_peer(ctx, peer) == 1 &&
	    EVP_PKEY_derive(ctx, out, &len) == 1 && len == 32)
		rv = 0;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	return rv;
}

/* The AES key: HKDF-SHA256(shared, info = label | eph | static | aad). */
static int
secret_kdf(const unsigned char shared[32],
    const unsigned char eph_pub[SECRET_PUB_LEN], const char *aad,
    unsigned char key[32])
{
	unsigned char	 info[sizeof(SECRET_INFO_LABEL) - 1 +
			    2 * SECRET_PUB_LEN + SECRET_AAD_MAX], *p = info;
	EVP_PKEY_CTX	*ctx;
	size_t		 alen = strlen(aad), len = 32;
	int		 rv = -1;

	if (alen > SECRET_AAD_MAX)
		return -1;
	memcpy(p, SECRET_INFO_LABEL, sizeof(SECRET_INFO_LABEL) - 1);
	p += sizeof(SECRET_INFO_LABEL) - 1;
	memcpy(p, eph_pub, SECRET_PUB_LEN);
	p += SECRET_PUB_LEN;
	memcpy(p, secret_pub, SECRET_PUB_LEN);
	p += SECRET_PUB_LEN;
	memcpy(p, aad, alen);
	p += alen;
	if ((ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL)) != NULL &&
	    EVP_PKEY_derive_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) == 1 &&
	    EVP_PKEY_CTX_set1_hkdf_key(ctx, shared, 32) == 1 &&
	    EVP_PKEY_CTX_add1_hkdf_info(ctx, info, (int)(p - info)) == 1 &&
	    EVP_PKEY_derive(ctx, key, &len) == 1 && len == 32)
		rv = 0;
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

int
secret_encrypt(const char *plain, const char *aad, struct buf *out)
{
	EVP_PKEY_CTX	*kctx = NULL;
	EVP_PKEY	*eph = NULL;
	EVP_CIPHER_CTX	*ctx = NULL;
	unsigned char	 shared[32], key[32], *p;
	size_t		 len = strlen(plain), plen = SECRET_PUB_LEN;
	int		 n, rv = -1;

	buf_reset(out);
	if (!secret_have_pub || len > SECRET_MAX_PLAIN ||
	    buf_reserve(out, len + SECRET_OVERHEAD) == -1)
		return -1;
	p = (unsigned char *)out->b_data;
	p[0] = SECRET_VERSION;
	if ((kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL)) == NULL ||
	    EVP_PKEY_keygen_init(kctx) != 1 ||
	    EVP_PKEY_keygen(kctx, &eph) != 1 ||
	    EVP_PKEY_get_raw_public_key(eph, p + 1, &plen) != 1 ||
	    plen != SECRET_PUB_LEN ||
	    secret_dh(eph, secret_pub, shared) == -1 ||
	    secret_kdf(shared, p + 1, aad, key) == -1 ||
	    random_bytes(p + 1 + SECRET_PUB_LEN, SECRET_NONCE_LEN) == -1)
		goto done;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key,
	    p + 1 + SECRET_PUB_LEN) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &n, p, SECRET_HDR_LEN) != 1 ||
	    EVP_EncryptUpdate(ctx, p + SECRET_HDR_LEN, &n,
	    (const unsigned char *)plain, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, p + SECRET_HDR_LEN + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SECRET_TAG_LEN,
	    p + SECRET_HDR_LEN + len) != 1)
		goto done;
	out->b_len = len + SECRET_OVERHEAD;
	rv = 0;
 done:
	EVP_CIPHER_CTX_free(ctx);
	EVP_PKEY_free(eph);
	EVP_PKEY_CTX_free(kctx);
	explicit_bzero(shared, sizeof(shared));
	explicit_bzero(key, sizeof(key));
	return rv;
}

char *
secret_decrypt(const void *blob, size_t len, const char *aad)
{
	const unsigned char	*p = blob;
	EVP_PKEY		*priv = NULL;
	EVP_CIPHER_CTX		*ctx = NULL;
	unsigned char		 tag[SECRET_TAG_LEN], shared[32], key[32];
	char			*plain = NULL;
	size_t			 clen;
	int			 n, ok = 0;

	if (!secret_have_priv) {
		/* a worker: it seals, it never opens */
		if (secret_have_pub)
			log_warnx("%s: this process holds no private key",
			    __func__);
		return NULL;
	}
	if (p == NULL || len < SECRET_OVERHEAD || p[0] != SECRET_VERSION ||
	    len - SECRET_OVERHEAD > SECRET_MAX_PLAIN)
		return NULL;
	clen = len - SECRET_OVERHEAD;
	if ((plain = malloc(clen + 1)) == NULL)
		return NULL;
	memcpy(tag, p + SECRET_HDR_LEN + clen, sizeof(tag));
	if ((priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL,
	    secret_priv, sizeof(secret_priv))) == NULL ||
	    secret_dh(priv, p + 1, shared) == -1 ||
	    secret_kdf(shared, p + 1, aad, key) == -1)
		goto done;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key,
	    p + 1 + SECRET_PUB_LEN) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &n, p, SECRET_HDR_LEN) != 1 ||
	    EVP_DecryptUpdate(ctx, (unsigned char *)plain, &n,
	    p + SECRET_HDR_LEN, (int)clen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, sizeof(tag),
	    tag) != 1 ||
	    EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + n, &n) != 1)
		goto done;
	plain[clen] = '\0';
	/* a secret with a NUL inside would be cut short: not ours */
	ok = strlen(plain) == clen;
 done:
	EVP_CIPHER_CTX_free(ctx);
	EVP_PKEY_free(priv);
	explicit_bzero(shared, sizeof(shared));
	explicit_bzero(key, sizeof(key));
	if (!ok) {
		secret_free(plain, clen + 1);
		return NULL;
	}
	return plain;
}

void
secret_free(char *s, size_t n)
{
	if (s == NULL)
		return;
	explicit_bzero(s, n ? n : strlen(s));
	free(s);
}

void
secret_hint(const char *s, char out[SECRET_HINT_MAX])
{
	size_t	 len = strlen(s), n;

	/* a few characters at most, and never a quarter of a short one */
	n = len / 4;
	if (n > SECRET_HINT_LEN)
		n = SECRET_HINT_LEN;
	for (len = 0; len < n; len++)	/* tokens are ASCII; keep it so */
		out[len] = s[len] > 0x20 && s[len] < 0x7f ? s[len] : '*';
	/* U+2026 HORIZONTAL ELLIPSIS */
	memcpy(out + n, "\xe2\x80\xa6", 4);
}
