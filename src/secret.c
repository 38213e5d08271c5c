/*
 * secret.c - secrets at rest: the refresh tokens, client secrets and
 * access tokens of the upstream accounts are stored encrypted in SQLite.
 *
 * The key is 32 random bytes kept outside the database, in a 0600 file
 * beside it (<dbdir>/qrelayd.key, 64 hex digits), so a copy of the
 * database alone hands out no credential. The master reads (or, at the
 * first start, creates) it before it forks and before it drops
 * privileges; the children inherit the key in memory and never open the
 * file. qrelayctl reads it the same way.
 *
 * A stored value is: version byte 1, a 12-byte random nonce, the
 * AES-256-GCM ciphertext, the 16-byte tag. The column name is the
 * associated data, so a blob moved to another column fails to decrypt.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "qrelayd.h"

#define SECRET_VERSION		1
#define SECRET_NONCE_LEN	12
#define SECRET_TAG_LEN		16
#define SECRET_OVERHEAD		(1 + SECRET_NONCE_LEN + SECRET_TAG_LEN)
#define SECRET_MAX_PLAIN	(64 * 1024)

static unsigned char	 secret_key[SECRET_KEY_LEN];
static int		 secret_have_key;

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

void
secret_set_key(const unsigned char key[SECRET_KEY_LEN])
{
	memcpy(secret_key, key, SECRET_KEY_LEN);
	secret_have_key = 1;
}

void
secret_forget(void)
{
	explicit_bzero(secret_key, sizeof(secret_key));
	secret_have_key = 0;
}

static int
secret_unhex(const char *s, unsigned char *out, size_t n)
{
	size_t	 i;
	int	 hi, lo;

	for (i = 0; i < n; i++) {
		hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]);
		lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

static int
secret_read_file(const char *path)
{
	struct stat	 st;
	char		 text[2 * SECRET_KEY_LEN + 2];
	unsigned char	 key[SECRET_KEY_LEN];
	ssize_t		 n;
	int		 fd, rv = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto done;
	if (st.st_mode & 077)
		log_warnx("%s: %s is readable by others; chmod 600 it",
		    __func__, path);
	n = read(fd, text, sizeof(text));
	if (n < 2 * SECRET_KEY_LEN || (n > 2 * SECRET_KEY_LEN &&
	    text[2 * SECRET_KEY_LEN] != '\n') ||
	    secret_unhex(text, key, sizeof(key)) == -1) {
		log_warnx("%s: %s: not a key (64 hex digits)", __func__, path);
		errno = EINVAL;
		goto done;
	}
	secret_set_key(key);
	rv = 0;
 done:
	explicit_bzero(text, sizeof(text));
	explicit_bzero(key, sizeof(key));
	close(fd);
	return rv;
}

/*
 * A new key goes to a temporary file first and is then linked to its
 * name: link(2) fails when the name exists, so two processes creating
 * the key at once (the daemon and qrelayctl) agree on one, and a reader
 * never sees a half-written file.
 */
static int
secret_create_file(const char *path)
{
	char		 tmp[PATH_MAX], text[2 * SECRET_KEY_LEN + 2];
	unsigned char	 key[SECRET_KEY_LEN];
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
	if (random_bytes(key, sizeof(key)) == -1)
		goto done;
	hex_encode(key, sizeof(key), text);
	text[2 * SECRET_KEY_LEN] = '\n';
	if (fchmod(fd, 0600) == -1 ||
	    write(fd, text, 2 * SECRET_KEY_LEN + 1) != 2 * SECRET_KEY_LEN + 1 ||
	    fsync(fd) == -1) {
		log_warn("%s: %s", __func__, tmp);
		goto done;
	}
	if (link(tmp, path) == -1) {
		if (errno != EEXIST)
			log_warn("%s: link %s", __func__, path);
		goto done;	/* someone else's key wins: read it */
	}
	log_info("created the secrets key %s", path);
	rv = 0;
 done:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	explicit_bzero(text, sizeof(text));
	explicit_bzero(key, sizeof(key));
	return rv;
}

int
secret_init(const char *db_path, int create)
{
	char		 path[PATH_MAX];
	unsigned char	 key[SECRET_KEY_LEN];

	if (strcmp(db_path, ":memory:") == 0) {
		/* a database that dies with the process: so does its key */
		if (random_bytes(key, sizeof(key)) == -1)
			return -1;
		secret_set_key(key);
		explicit_bzero(key, sizeof(key));
		return 0;
	}
	if (secret_key_path(db_path, path, sizeof(path)) == -1) {
		log_warnx("%s: %s: path too long", __func__, db_path);
		return -1;
	}
	if (secret_read_file(path) == 0)
		return 0;
	if (errno != ENOENT || !create) {
		log_warn("%s: cannot read %s", __func__, path);
		return -1;
	}
	(void)secret_create_file(path);
	if (secret_read_file(path) == -1) {
		log_warn("%s: cannot read %s", __func__, path);
		return -1;
	}
	return 0;
}

int
secret_ready(void)
{
	return secret_have_key;
}

int
secret_encrypt(const char *plain, const char *aad, struct buf *out)
{
	EVP_CIPHER_CTX	*ctx = NULL;
	unsigned char	*p;
	size_t		 len = strlen(plain);
	int		 n, rv = -1;

	buf_reset(out);
	if (!secret_have_key || len > SECRET_MAX_PLAIN ||
	    buf_reserve(out, len + SECRET_OVERHEAD) == -1)
		return -1;
	p = (unsigned char *)out->b_data;
	p[0] = SECRET_VERSION;
	if (random_bytes(p + 1, SECRET_NONCE_LEN) == -1)
		return -1;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, secret_key,
	    p + 1) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad,
	    (int)strlen(aad)) != 1 ||
	    EVP_EncryptUpdate(ctx, p + 1 + SECRET_NONCE_LEN, &n,
	    (const unsigned char *)plain, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, p + 1 + SECRET_NONCE_LEN + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SECRET_TAG_LEN,
	    p + 1 + SECRET_NONCE_LEN + len) != 1)
		goto done;
	out->b_len = len + SECRET_OVERHEAD;
	rv = 0;
 done:
	EVP_CIPHER_CTX_free(ctx);
	return rv;
}

char *
secret_decrypt(const void *blob, size_t len, const char *aad)
{
	const unsigned char	*p = blob;
	EVP_CIPHER_CTX		*ctx = NULL;
	unsigned char		 tag[SECRET_TAG_LEN];
	char			*plain = NULL;
	size_t			 clen;
	int			 n, ok = 0;

	if (!secret_have_key || p == NULL || len < SECRET_OVERHEAD ||
	    p[0] != SECRET_VERSION || len - SECRET_OVERHEAD > SECRET_MAX_PLAIN)
		return NULL;
	clen = len - SECRET_OVERHEAD;
	if ((plain = malloc(clen + 1)) == NULL)
		return NULL;
	memcpy(tag, p + 1 + SECRET_NONCE_LEN + clen, sizeof(tag));
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, secret_key,
	    p + 1) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad,
	    (int)strlen(aad)) != 1 ||
	    EVP_DecryptUpdate(ctx, (unsigned char *)plain, &n,
	    p + 1 + SECRET_NONCE_LEN, (int)clen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, sizeof(tag),
	    tag) != 1 ||
	    EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + n, &n) != 1)
		goto done;
	plain[clen] = '\0';
	/* a secret with a NUL inside would be cut short: not ours */
	ok = strlen(plain) == clen;
 done:
	EVP_CIPHER_CTX_free(ctx);
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
