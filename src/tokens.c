/*
 * tokens.c - counting Claude tokens here, without asking the upstream.
 *
 * The upstream tells how full the context window is only at the end of a
 * stream (contextUsageEvent) and never for count_tokens, so input tokens
 * are otherwise counted locally, the way the npm package
 * @anthropic-ai/tokenizer counts them: NFKC-normalise the text, split it
 * around the special tokens, cut each stretch into pieces with the
 * GPT-2 style pattern of claude.json (pat_str), and merge the bytes of
 * each piece by the byte-pair ranks of claude.json. The vocabulary is
 * that file, built into the binary by tokens-data.S.
 *
 * Process model: the master calls tokens_init() before it forks, so the
 * tables (about 4 MB) are shared copy-on-write by every worker and never
 * written again. tokens_count() may come first (tests, a worker started
 * without the master's help): it then loads the tables itself, once.
 * Scratch buffers are kept per thread, so a count allocates only when an
 * input is larger than any before it; very large ones are given back.
 *
 * The pattern is matched by hand rather than by a regex engine: it is
 * fixed (loading fails if claude.json's pat_str is not the one matched
 * here), and PCRE2's JIT takes longer only to split 100 KB of English
 * (0.7 ms) than this file takes to count it (0.4 ms). The Unicode facts
 * (NFKC, general categories, White_Space) come from utf8proc at load
 * time, not from tables of ours.
 */
#include <sys/types.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <utf8proc.h>

#include "qrelayd.h"

/* claude.json, with a NUL after it (tokens-data.S). */
extern const char tokens_json_start[];
extern const char tokens_json_end[];

/* The only pre-tokenizer pattern tokens_stretch() implements. */
#define TOK_PATTERN	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+" \
			"| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

#define TOK_NONE	UINT32_MAX	/* no such token: ranks above all */
#define TOK_NSPECIAL	16
#define TOK_SPECIAL_LEN	32
#ifndef TOK_SMALL_MAX		/* longer pieces merge through a heap */
#define TOK_SMALL_MAX	32
#endif
#define TOK_KEEP	(1024 * 1024)	/* scratch kept between counts */
#define TOK_SLACK	8	/* zero bytes after a text, for word loads */

#define TOK_NFKC	(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT)

/* What a code point is to the pattern. */
enum tok_class { TC_SPACE, TC_LETTER, TC_NUMBER, TC_OTHER };
#define TC_MASK		0x03
#define TC_INERT	0x04	/* NFKC leaves it and its left alone */

struct tok_slot {
	uint64_t	 ts_head;	/* the first 8 bytes, zero-padded */
	uint32_t	 ts_hash;
	uint32_t	 ts_rank;
	uint32_t	 ts_off;	/* of the bytes, in tv_bytes */
	uint32_t	 ts_len;	/* 0: a free slot */
};

static struct tok_vocab {
	unsigned char	*tv_bytes;	/* every token's bytes, back to back */
	struct tok_slot	*tv_slots;	/* open addressing, linear probing */
	uint32_t	 tv_mask;
	int		 tv_shift;	/* hash >> tv_shift: the first slot */
	uint32_t	 tv_maxlen;	/* the longest token */
	uint32_t	*tv_rank2;	/* two-byte tokens, by (b0 << 8 | b1) */
	int		 tv_lead;	/* first byte of every special, or -1 */
	uint8_t		*tv_bmp;	/* enum tok_class | TC_INERT, for BMP */
	char		 tv_special[TOK_NSPECIAL][TOK_SPECIAL_LEN];
	size_t		 tv_special_len[TOK_NSPECIAL];
	size_t		 tv_nspecial;
	int		 tv_ready;
} vocab;

static pthread_once_t	 tokens_once = PTHREAD_ONCE_INIT;

/*
 * A part of a long piece as it merges, in a list; parts are named by
 * the byte they start at. A part merged into its left neighbour is dead.
 */
struct tok_part {
	uint32_t	 tp_rank;	/* of this part joined with the next */
	uint32_t	 tp_prev;
	uint32_t	 tp_next;	/* TOK_NONE: the last; TOK_DEAD: gone */
};
#define TOK_DEAD	(TOK_NONE - 1)

struct tok_scratch {
	struct buf	 sc_text;	/* the normalised input */
	struct buf	 sc_ucs;	/* code points of a run NFKC may change */
	struct buf	 sc_fix;	/* a run with bad UTF-8 replaced */
	struct buf	 sc_parts;	/* struct tok_part[] */
	struct buf	 sc_heap;	/* uint64_t[]: rank << 32 | part */
};

static __thread struct tok_scratch scratch;

static void	 tokens_load(void);
static void	 tokens_noop(void);
static int	 tokens_parse_ranks(const char *, size_t);
static void	 tokens_insert(uint32_t, size_t, uint32_t);
static uint32_t	 tokens_hash(const unsigned char *, size_t, uint64_t);
static uint32_t	 tokens_rank(const unsigned char *, size_t);
static int	 tokens_class(utf8proc_int32_t);
static int	 tokens_build_bmp(void);
static int	 tokens_nfkc(struct tok_scratch *, const unsigned char *,
		    size_t);
static int	 tokens_nfkc_run(struct tok_scratch *, const unsigned char *,
		    size_t);
static int64_t	 tokens_text(struct tok_scratch *, const unsigned char *,
		    size_t);
static int64_t	 tokens_stretch(struct tok_scratch *, const unsigned char *,
		    size_t);
static int64_t	 tokens_piece(struct tok_scratch *, const unsigned char *,
		    size_t);
static int64_t	 tokens_bpe_small(const unsigned char *, size_t);
static int64_t	 tokens_bpe_heap(struct tok_scratch *, const unsigned char *,
		    size_t);
static void	 tokens_trim(struct buf *);

int
tokens_init(void)
{
	pthread_once(&tokens_once, tokens_load);
	return vocab.tv_ready ? 0 : -1;
}

/*
 * For a process that never counts (the logger, the refresher): give back
 * the tables it inherited, a few MB that would otherwise stay mapped.
 * tokens_count then falls back to its estimate.
 */
void
tokens_fini(void)
{
	pthread_once(&tokens_once, tokens_noop);
	vocab.tv_ready = 0;
	free(vocab.tv_bytes);
	free(vocab.tv_slots);
	free(vocab.tv_rank2);
	free(vocab.tv_bmp);
	vocab.tv_bytes = NULL;
	vocab.tv_slots = NULL;
	vocab.tv_rank2 = NULL;
	vocab.tv_bmp = NULL;
}

/*
 * Tokens in utf8[0..len), as countTokens() of the npm package says:
 * special tokens in the text ("<EOT>" ...) count as one each, as its
 * encode(text, "all") does. Invalid UTF-8 counts as U+FFFD per bad
 * byte. Never fails: without memory (or vocabulary) it falls back to
 * the usual guess of four bytes a token.
 */
int64_t
tokens_count(const char *utf8, size_t len)
{
	struct tok_scratch	*sc = &scratch;
	int64_t			 n;

	if (utf8 == NULL || len == 0)
		return 0;
	if (tokens_init() == -1 ||
	    tokens_nfkc(sc, (const unsigned char *)utf8, len) == -1 ||
	    (n = tokens_text(sc, (const unsigned char *)sc->sc_text.b_data,
	    sc->sc_text.b_len)) == -1)
		n = (int64_t)(len + 3) / 4;
	tokens_trim(&sc->sc_text);
	tokens_trim(&sc->sc_ucs);
	tokens_trim(&sc->sc_fix);
	tokens_trim(&sc->sc_parts);
	tokens_trim(&sc->sc_heap);
	return n;
}

static void
tokens_trim(struct buf *b)
{
	if (b->b_cap > TOK_KEEP)
		buf_free(b);
	else
		buf_reset(b);
}

/* ------------------------------------------------------------------ */
/* The vocabulary                                                       */

static void
tokens_load(void)
{
	struct json_tokener	*tok;
	struct json_object	*root, *o;
	const char		*s;
	size_t			 i;

	if ((tok = json_tokener_new()) == NULL) {
		log_warn("%s", __func__);
		return;
	}
	root = json_tokener_parse_ex(tok, tokens_json_start,
	    (int)(tokens_json_end - tokens_json_start));
	json_tokener_free(tok);
	if (root == NULL) {
		log_warnx("%s: the embedded claude.json does not parse",
		    __func__);
		return;
	}
	if (!json_object_object_get_ex(root, "pat_str", &o) ||
	    (s = json_object_get_string(o)) == NULL ||
	    strcmp(s, TOK_PATTERN) != 0) {
		log_warnx("%s: claude.json has a pattern tokens.c does not "
		    "implement", __func__);
		goto done;
	}
	if (json_object_object_get_ex(root, "special_tokens", &o) &&
	    json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, name, val) {
			(void)val;
			if (vocab.tv_nspecial == TOK_NSPECIAL ||
			    strlen(name) == 0 ||
			    strlen(name) >= TOK_SPECIAL_LEN) {
				log_warnx("%s: special token skipped", __func__);
				continue;
			}
			i = vocab.tv_nspecial++;
			strlcpy_qr(vocab.tv_special[i], name, TOK_SPECIAL_LEN);
			vocab.tv_special_len[i] = strlen(name);
		}
	}
	if (!json_object_object_get_ex(root, "bpe_ranks", &o) ||
	    !json_object_is_type(o, json_type_string) ||
	    tokens_parse_ranks(json_object_get_string(o),
	    (size_t)json_object_get_string_len(o)) == -1)
		goto done;
	if (tokens_build_bmp() == -1)
		goto done;
	vocab.tv_lead = vocab.tv_nspecial > 0 ?
	    (unsigned char)vocab.tv_special[0][0] : -1;
	for (i = 1; i < vocab.tv_nspecial; i++)
		if ((unsigned char)vocab.tv_special[i][0] != vocab.tv_lead)
			vocab.tv_lead = -1;
	vocab.tv_ready = 1;
 done:
	json_object_put(root);
}

/*
 * bpe_ranks is tiktoken's compact form: lines of "! <first rank>
 * <base64> <base64> ...", each token ranked one above the one before.
 */
static int
tokens_parse_ranks(const char *s, size_t len)
{
	const char	*p, *end = s + len, *eol, *f, *fe;
	char		*ep;
	size_t		 nfield = 0, nslot, off = 0;
	unsigned long	 rank;
	int		 n, bits;

	for (p = s; p < end; p++)
		if (*p == ' ' || *p == '\n')
			nfield++;
	for (nslot = 1024, bits = 10; nslot < 2 * (nfield + 1); nslot *= 2)
		bits++;
	/* Base64 only shrinks; the slack is for tokens_head(). */
	if ((vocab.tv_bytes = calloc(1, len + 4 + TOK_SLACK)) == NULL ||
	    (vocab.tv_slots = calloc(nslot, sizeof(*vocab.tv_slots))) == NULL ||
	    (vocab.tv_rank2 = malloc(65536 * sizeof(uint32_t))) == NULL) {
		log_warn("%s", __func__);
		goto fail;
	}
	memset(vocab.tv_rank2, 0xff, 65536 * sizeof(uint32_t));	/* TOK_NONE */
	vocab.tv_mask = (uint32_t)(nslot - 1);
	vocab.tv_shift = 32 - bits;

	for (p = s; p < end; p = eol + 1) {
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		if (eol == p)
			continue;
		/* The first field only marks the compact form. */
		if ((f = memchr(p, ' ', (size_t)(eol - p))) == NULL)
			goto bad;
		rank = strtoul(f + 1, &ep, 10);
		if (ep == f + 1 || ep > eol)
			goto bad;
		for (f = ep; f < eol; f = fe) {
			while (f < eol && *f == ' ')
				f++;
			if (f == eol)
				break;
			for (fe = f; fe < eol && *fe != ' '; fe++)
				;
			n = EVP_DecodeBlock(vocab.tv_bytes + off,
			    (const unsigned char *)f, (int)(fe - f));
			if (n <= 0 || rank >= TOK_NONE)
				goto bad;
			if (fe[-1] == '=')
				n -= fe[-2] == '=' ? 2 : 1;
			if (n <= 0)
				goto bad;
			tokens_insert((uint32_t)off, (size_t)n, (uint32_t)rank);
			off += (size_t)n;
			rank++;
		}
	}
	if (off == 0)
		goto bad;
	return 0;
 bad:
	log_warnx("%s: claude.json: bpe_ranks is malformed", __func__);
 fail:
	free(vocab.tv_bytes);
	free(vocab.tv_slots);
	free(vocab.tv_rank2);
	vocab.tv_bytes = NULL;
	vocab.tv_slots = NULL;
	vocab.tv_rank2 = NULL;
	return -1;
}

/*
 * The first len bytes of p (at most 8) in a word, the rest zero. It
 * reads 8 bytes: every text searched has TOK_SLACK bytes after its end.
 */
static inline uint64_t
tokens_head(const unsigned char *p, size_t len)
{
	uint64_t	 w;

	memcpy(&w, p, sizeof(w));
	if (len < 8) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		w &= ~(~(uint64_t)0 >> (8 * len));
#else
		w &= ((uint64_t)1 << (8 * len)) - 1;
#endif
	}
	return w;
}

static void
tokens_insert(uint32_t off, size_t len, uint32_t rank)
{
	const unsigned char	*p = vocab.tv_bytes + off;
	struct tok_slot		*ts;
	uint64_t		 head = tokens_head(p, len);
	uint32_t		 h = tokens_hash(p, len, head), i;

	for (i = h >> vocab.tv_shift;; i = (i + 1) & vocab.tv_mask) {
		ts = &vocab.tv_slots[i];
		if (ts->ts_len == 0)
			break;
		/* A repeated token: the later rank wins, as in tiktoken. */
		if (ts->ts_hash == h && ts->ts_len == len &&
		    memcmp(vocab.tv_bytes + ts->ts_off, p, len) == 0)
			break;
	}
	ts->ts_head = head;
	ts->ts_hash = h;
	ts->ts_rank = rank;
	ts->ts_off = off;
	ts->ts_len = (uint32_t)len;
	if (len > vocab.tv_maxlen)
		vocab.tv_maxlen = (uint32_t)len;
	if (len == 2)
		vocab.tv_rank2[p[0] << 8 | p[1]] = rank;
}

/*
 * Keys are mostly a few bytes: one multiply for each 8, and the high
 * bits of the product (which depend on every input bit) pick the slot.
 */
static inline uint32_t
tokens_hash(const unsigned char *p, size_t len, uint64_t head)
{
	uint64_t	 h = (head ^ len) * 0x9e3779b97f4a7c15ULL;
	size_t		 i;

	for (i = 8; i < len; i += 8)
		h = (h ^ (h >> 29) ^ tokens_head(p + i, len - i)) *
		    0xbf58476d1ce4e5b9ULL;
	return (uint32_t)(h >> 32);
}

static inline uint32_t
tokens_rank(const unsigned char *p, size_t len)
{
	const struct tok_slot	*ts;
	uint64_t		 head;
	uint32_t		 h, i;

	if (len == 2)
		return vocab.tv_rank2[p[0] << 8 | p[1]];
	if (len > vocab.tv_maxlen)
		return TOK_NONE;
	head = tokens_head(p, len);
	h = tokens_hash(p, len, head);
	for (i = h >> vocab.tv_shift;; i = (i + 1) & vocab.tv_mask) {
		ts = &vocab.tv_slots[i];
		if (ts->ts_len == 0)
			return TOK_NONE;
		if (ts->ts_hash == h && ts->ts_len == len &&
		    ts->ts_head == head && (len <= 8 ||
		    memcmp(vocab.tv_bytes + ts->ts_off + 8, p + 8,
		    len - 8) == 0))
			return ts->ts_rank;
	}
}

/* \s is Unicode White_Space: Zs, Zl, Zp and the controls \t..\r, NEL. */
static int
tokens_class(utf8proc_int32_t cp)
{
	switch (utf8proc_category(cp)) {
	case UTF8PROC_CATEGORY_LU:
	case UTF8PROC_CATEGORY_LL:
	case UTF8PROC_CATEGORY_LT:
	case UTF8PROC_CATEGORY_LM:
	case UTF8PROC_CATEGORY_LO:
		return TC_LETTER;
	case UTF8PROC_CATEGORY_ND:
	case UTF8PROC_CATEGORY_NL:
	case UTF8PROC_CATEGORY_NO:
		return TC_NUMBER;
	case UTF8PROC_CATEGORY_ZS:
	case UTF8PROC_CATEGORY_ZL:
	case UTF8PROC_CATEGORY_ZP:
		return TC_SPACE;
	case UTF8PROC_CATEGORY_CC:
		if ((cp >= 0x09 && cp <= 0x0d) || cp == 0x85)
			return TC_SPACE;
		return TC_OTHER;
	default:
		return TC_OTHER;
	}
}

/*
 * The class of every BMP code point, and whether NFKC may skip it: a
 * character NFKC maps to itself, of combining class 0, and never after
 * the first place in a canonical decomposition (so nothing before it can
 * compose with it) splits the text into parts that normalise alone.
 * Worked out from utf8proc at load time, not written down here.
 */
static int
tokens_build_bmp(void)
{
	utf8proc_int32_t	 d[32], cp;
	utf8proc_ssize_t	 n, k;
	uint8_t			*second;
	int			 bc;

	if ((vocab.tv_bmp = calloc(65536, 1)) == NULL ||
	    (second = calloc(65536, 1)) == NULL) {
		log_warn("%s", __func__);
		free(vocab.tv_bmp);
		vocab.tv_bmp = NULL;
		return -1;
	}
	for (cp = 0; cp < 65536; cp++) {
		bc = 0;
		n = utf8proc_decompose_char(cp, d, (utf8proc_ssize_t)nitems(d),
		    UTF8PROC_DECOMPOSE, &bc);
		for (k = 1; k < n && k < (utf8proc_ssize_t)nitems(d); k++)
			if (d[k] < 65536)
				second[d[k]] = 1;
	}
	for (cp = 0; cp < 65536; cp++) {
		vocab.tv_bmp[cp] = (uint8_t)tokens_class(cp);
		if (cp >= 0xd800 && cp <= 0xdfff)	/* not in UTF-8 */
			continue;
		if (second[cp] || utf8proc_get_property(cp)->combining_class)
			continue;
		bc = 0;
		n = utf8proc_decompose_char(cp, d, (utf8proc_ssize_t)nitems(d),
		    TOK_NFKC, &bc);
		if (n > 1 && n <= (utf8proc_ssize_t)nitems(d))
			n = utf8proc_normalize_utf32(d, n, TOK_NFKC);
		if (n == 1 && d[0] == cp)
			vocab.tv_bmp[cp] |= TC_INERT;
	}
	free(second);
	return 0;
}

/* ------------------------------------------------------------------ */
/* NFKC                                                                 */

/*
 * NFKC of the input into sc_text, as the package's
 * text.normalize("NFKC"). The text splits before every inert character
 * (TC_INERT: all of ASCII, most of the BMP) into parts that normalise
 * alone; inert characters are copied, and only runs of the others, with
 * the character before them (a combining mark may join it), go through
 * utf8proc.
 */
static int
tokens_nfkc(struct tok_scratch *sc, const unsigned char *in, size_t len)
{
	struct buf		*t = &sc->sc_text;
	utf8proc_int32_t	 cp;
	utf8proc_ssize_t	 l;
	uint64_t		 w;
	size_t			 i = 0, j, prev = SIZE_MAX, seg;

	buf_reset(t);
	if (buf_reserve(t, len) == -1)
		return -1;
	while (i < len) {
		for (j = i; j + 8 <= len; j += 8) {	/* ASCII, a word at a time */
			memcpy(&w, in + j, sizeof(w));
			if (w & 0x8080808080808080ULL)
				break;
		}
		for (; j < len && in[j] < 0x80; j++)
			;
		memcpy(t->b_data + t->b_len, in + i, j - i);
		t->b_len += j - i;
		if (j > i)
			prev = j - 1;
		if ((i = j) == len)
			break;
		l = utf8proc_iterate(in + i, (utf8proc_ssize_t)(len - i), &cp);
		if (l > 0 && cp < 65536 && (vocab.tv_bmp[cp] & TC_INERT)) {
			memcpy(t->b_data + t->b_len, in + i, (size_t)l);
			t->b_len += (size_t)l;
			prev = i;
			i += (size_t)l;
			continue;
		}
		/* The run, from the character before, to the next inert one. */
		seg = i;
		if (prev != SIZE_MAX) {
			t->b_len -= i - prev;
			seg = prev;
		}
		for (j = i + (l > 0 ? (size_t)l : 1); j < len; j += (size_t)l) {
			if (in[j] < 0x80)
				break;
			l = utf8proc_iterate(in + j,
			    (utf8proc_ssize_t)(len - j), &cp);
			if (l <= 0)
				l = 1;
			else if (cp < 65536 && (vocab.tv_bmp[cp] & TC_INERT))
				break;
		}
		if (tokens_nfkc_run(sc, in + seg, j - seg) == -1 ||
		    buf_reserve(t, len - j) == -1)
			return -1;
		prev = SIZE_MAX;
		i = j;
	}
	if (buf_reserve(t, TOK_SLACK) == -1)
		return -1;
	memset(t->b_data + t->b_len, 0, TOK_SLACK);
	return 0;
}

static int
tokens_nfkc_run(struct tok_scratch *sc, const unsigned char *s, size_t len)
{
	struct buf		*u = &sc->sc_ucs, *f = &sc->sc_fix;
	utf8proc_int32_t	*ucs, cp;
	utf8proc_ssize_t	 n, need = (utf8proc_ssize_t)len, l;
	size_t			 i;

	for (;;) {
		buf_reset(u);
		/* reencode writes a NUL past the end: one more. */
		if (buf_reserve(u, ((size_t)need + 1) * sizeof(*ucs)) == -1)
			return -1;
		ucs = (utf8proc_int32_t *)(void *)u->b_data;
		n = utf8proc_decompose_custom(s, (utf8proc_ssize_t)len, ucs,
		    need, TOK_NFKC, NULL, NULL);
		if (n == UTF8PROC_ERROR_INVALIDUTF8 && s != (unsigned char *)
		    f->b_data) {
			/* As a decoder would: U+FFFD for each bad byte. */
			buf_reset(f);
			if (buf_reserve(f, 3 * len) == -1)
				return -1;
			for (i = 0; i < len; i += (size_t)l) {
				l = utf8proc_iterate(s + i,
				    (utf8proc_ssize_t)(len - i), &cp);
				if (l <= 0) {
					memcpy(f->b_data + f->b_len,
					    "\xef\xbf\xbd", 3);
					f->b_len += 3;
					l = 1;
				} else {
					memcpy(f->b_data + f->b_len, s + i,
					    (size_t)l);
					f->b_len += (size_t)l;
				}
			}
			s = (const unsigned char *)f->b_data;
			len = f->b_len;
			need = (utf8proc_ssize_t)len;
			continue;
		}
		if (n < 0)
			return -1;
		if (n <= need)
			break;
		need = n;
	}
	if ((n = utf8proc_reencode(ucs, n, TOK_NFKC)) < 0)
		return -1;
	return buf_append(&sc->sc_text, ucs, (size_t)n);
}

/* ------------------------------------------------------------------ */
/* Splitting                                                            */

/* The special token at s[i], or -1. */
static int
tokens_special_at(const unsigned char *s, size_t len, size_t i)
{
	size_t	 k, best = 0;
	int	 found = -1;

	for (k = 0; k < vocab.tv_nspecial; k++)
		if (vocab.tv_special_len[k] <= len - i &&
		    vocab.tv_special_len[k] > best &&
		    memcmp(s + i, vocab.tv_special[k],
		    vocab.tv_special_len[k]) == 0) {
			best = vocab.tv_special_len[k];
			found = (int)k;
		}
	return found;
}

/*
 * The special tokens split the text first, leftmost first, and each
 * counts as one token; the pattern never sees across them. Claude's all
 * begin with '<', so memchr finds the places to look.
 */
static int64_t
tokens_text(struct tok_scratch *sc, const unsigned char *s, size_t len)
{
	const unsigned char	*p;
	size_t			 cur = 0, i = 0;
	int64_t			 total = 0, n;
	int			 k;

	while (vocab.tv_nspecial > 0 && i < len) {
		if (vocab.tv_lead >= 0) {
			if ((p = memchr(s + i, vocab.tv_lead, len - i)) == NULL)
				break;
			i = (size_t)(p - s);
		}
		if ((k = tokens_special_at(s, len, i)) == -1) {
			i++;
			continue;
		}
		if ((n = tokens_stretch(sc, s + cur, i - cur)) == -1)
			return -1;
		total += n + 1;
		cur = i = i + vocab.tv_special_len[k];
	}
	if ((n = tokens_stretch(sc, s + cur, len - cur)) == -1)
		return -1;
	return total + n;
}

/* The class of the character at s[i] and its length in bytes. */
static inline size_t
tokens_char(const unsigned char *s, size_t len, size_t i, int *cls)
{
	utf8proc_int32_t	 cp;
	utf8proc_ssize_t	 l;

	if (s[i] < 0x80) {
		*cls = vocab.tv_bmp[s[i]] & TC_MASK;
		return 1;
	}
	l = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &cp);
	if (l <= 0) {		/* not after tokens_nfkc() */
		*cls = TC_OTHER;
		return 1;
	}
	*cls = cp < 65536 ? vocab.tv_bmp[cp] & TC_MASK : tokens_class(cp);
	return (size_t)l;
}

/*
 * The pieces of TOK_PATTERN, leftmost-first as a backtracking engine
 * finds them; every character is in one of the four classes, so the
 * pieces tile the text:
 *   's 't 're 've 'm 'll 'd     (case-sensitive, nothing after needed)
 *   " "? letters+ | " "? digits+ | " "? others+
 *   whitespace+ not followed by a non-space: a run before a word keeps
 *   its last character for the word (or, if it is not " ", alone)
 *   whitespace+                 (a lone space character before a word)
 */
static int64_t
tokens_stretch(struct tok_scratch *sc, const unsigned char *s, size_t len)
{
	size_t		 i = 0, j, end, last, l;
	int64_t		 total = 0, n;
	int		 cls, want;

	while (i < len) {
		if (s[i] == '\'' && i + 1 < len) {
			l = 0;
			switch (s[i + 1]) {
			case 's': case 't': case 'm': case 'd':
				l = 2;
				break;
			case 'r': case 'v':
				if (i + 2 < len && s[i + 2] == 'e')
					l = 3;
				break;
			case 'l':
				if (i + 2 < len && s[i + 2] == 'l')
					l = 3;
				break;
			}
			if (l > 0) {
				if ((n = tokens_piece(sc, s + i, l)) == -1)
					return -1;
				total += n;
				i += l;
				continue;
			}
		}
		j = i + tokens_char(s, len, i, &cls);
		want = cls;
		if (s[i] == ' ') {
			if (j < len) {
				l = tokens_char(s, len, j, &want);
				if (want != TC_SPACE)
					j += l;
			} else
				want = TC_SPACE;
		}
		if (want != TC_SPACE) {
			while (j < len &&
			    (l = tokens_char(s, len, j, &cls)) > 0 &&
			    cls == want)
				j += l;
			end = j;
		} else {
			last = i;
			for (j = i; j < len; j += l) {
				l = tokens_char(s, len, j, &cls);
				if (cls != TC_SPACE)
					break;
				last = j;
			}
			if (j == len || last == i)
				end = j;
			else
				end = last;
		}
		if ((n = tokens_piece(sc, s + i, end - i)) == -1)
			return -1;
		total += n;
		i = end;
	}
	return total;
}

/* ------------------------------------------------------------------ */
/* Byte-pair merging                                                    */

static int64_t
tokens_piece(struct tok_scratch *sc, const unsigned char *p, size_t len)
{
	if (len == 1 || tokens_rank(p, len) != TOK_NONE)
		return 1;
	if (len <= TOK_SMALL_MAX)
		return tokens_bpe_small(p, len);
	return tokens_bpe_heap(sc, p, len);
}

/*
 * tiktoken's merge loop: join the adjacent pair of lowest rank (the
 * leftmost of equals) until no pair is a token. Quadratic, and the
 * fastest way for the short pieces that are nearly all of them.
 * pos[k] is where part k starts; rank[k] is that of parts k and k+1.
 */
static int64_t
tokens_bpe_small(const unsigned char *p, size_t len)
{
	uint32_t	 pos[TOK_SMALL_MAX + 1], rank[TOK_SMALL_MAX + 1];
	uint32_t	 min;
	size_t		 m = len + 1, i, best;

	for (i = 0; i + 1 < len; i++) {
		pos[i] = (uint32_t)i;
		rank[i] = tokens_rank(p + i, 2);
	}
	pos[len - 1] = (uint32_t)(len - 1);
	pos[len] = (uint32_t)len;
	rank[len - 1] = rank[len] = TOK_NONE;
	for (;;) {
		min = TOK_NONE;
		best = 0;
		for (i = 0; i + 2 < m; i++)
			if (rank[i] < min) {
				min = rank[i];
				best = i;
			}
		if (min == TOK_NONE)
			break;
		memmove(pos + best + 1, pos + best + 2,
		    (m - best - 2) * sizeof(*pos));
		memmove(rank + best + 1, rank + best + 2,
		    (m - best - 2) * sizeof(*rank));
		m--;
		rank[best] = best + 2 < m ? tokens_rank(p + pos[best],
		    pos[best + 2] - pos[best]) : TOK_NONE;
		if (best > 0)
			rank[best - 1] = tokens_rank(p + pos[best - 1],
			    pos[best + 1] - pos[best - 1]);
	}
	return (int64_t)(m - 1);
}

/* A min-heap of rank << 32 | start: lower rank, then further left. */
static void
tokens_heap_push(uint64_t *heap, size_t *n, uint64_t key)
{
	size_t	 i = (*n)++;

	while (i > 0 && key < heap[(i - 1) / 2]) {
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = key;
}

static uint64_t
tokens_heap_pop(uint64_t *heap, size_t *n)
{
	uint64_t	 top = heap[0], x = heap[--*n];
	size_t		 i = 0, c;

	while ((c = 2 * i + 1) < *n) {
		if (c + 1 < *n && heap[c + 1] < heap[c])
			c++;
		if (x <= heap[c])
			break;
		heap[i] = heap[c];
		i = c;
	}
	heap[i] = x;
	return top;
}

/*
 * The same merges for a long piece (a page of text without a space, a
 * long run of one character) in O(n log n): the parts form a list, and
 * a heap of (rank, start) finds the lowest pair, leftmost of equals,
 * so the merges are tiktoken's, in its order. Entries are not removed
 * when a pair changes; one whose part is dead or whose rank is no
 * longer the part's is skipped when it comes up.
 */
static int64_t
tokens_bpe_heap(struct tok_scratch *sc, const unsigned char *p, size_t len)
{
	struct tok_part	*tp;
	uint64_t	*heap, key;
	uint32_t	 a, b, nx, rank;
	size_t		 i, n = 0, parts = len;

	if (len >= TOK_DEAD)
		return -1;
	buf_reset(&sc->sc_parts);
	buf_reset(&sc->sc_heap);
	/* At most len pairs at first and two new ones per merge. */
	if (buf_reserve(&sc->sc_parts, len * sizeof(*tp)) == -1 ||
	    buf_reserve(&sc->sc_heap, 3 * len * sizeof(*heap)) == -1)
		return -1;
	tp = (struct tok_part *)(void *)sc->sc_parts.b_data;
	heap = (uint64_t *)(void *)sc->sc_heap.b_data;
	for (i = 0; i < len; i++) {
		tp[i].tp_rank = i + 1 < len ? tokens_rank(p + i, 2) : TOK_NONE;
		tp[i].tp_prev = i > 0 ? (uint32_t)(i - 1) : TOK_NONE;
		tp[i].tp_next = i + 1 < len ? (uint32_t)(i + 1) : TOK_NONE;
		if (tp[i].tp_rank != TOK_NONE)
			tokens_heap_push(heap, &n,
			    (uint64_t)tp[i].tp_rank << 32 | i);
	}
	while (n > 0) {
		key = tokens_heap_pop(heap, &n);
		a = (uint32_t)key;
		rank = (uint32_t)(key >> 32);
		if (tp[a].tp_next == TOK_DEAD || tp[a].tp_rank != rank)
			continue;	/* stale */
		b = tp[a].tp_next;
		nx = tp[b].tp_next;
		tp[b].tp_next = TOK_DEAD;
		tp[a].tp_next = nx;
		if (nx != TOK_NONE)
			tp[nx].tp_prev = a;
		parts--;
		/* a's pair is now a+nx, and its left neighbour's grew. */
		tp[a].tp_rank = TOK_NONE;
		if (nx != TOK_NONE) {
			b = tp[nx].tp_next;
			tp[a].tp_rank = tokens_rank(p + a,
			    (b == TOK_NONE ? len : b) - a);
			if (tp[a].tp_rank != TOK_NONE)
				tokens_heap_push(heap, &n,
				    (uint64_t)tp[a].tp_rank << 32 | a);
		}
		if ((b = tp[a].tp_prev) != TOK_NONE) {
			tp[b].tp_rank = tokens_rank(p + b,
			    (nx == TOK_NONE ? len : nx) - b);
			if (tp[b].tp_rank != TOK_NONE)
				tokens_heap_push(heap, &n,
				    (uint64_t)tp[b].tp_rank << 32 | b);
		}
	}
	return (int64_t)parts;
}

/* pthread_once's routine for tokens_fini: never load after it. */
static void
tokens_noop(void)
{
}
