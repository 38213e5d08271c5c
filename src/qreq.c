/*
 * qreq.c - the request between the client APIs and the upstream.
 *
 * A worker handling POST /v1/chat/completions or /v1/messages parses the
 * body here (qreq_parse_json), lets openai.c or anthropic.c fill a
 * struct qreq from it, and then calls qreq_build, which is both the
 * linter and the writer of the upstream conversationState (see
 * upstream-protocol.md §2). Everything runs in the worker, per request,
 * with no I/O: the result is a byte buffer the relay sends upstream.
 *
 * The upstream answers "Improperly formed request." without saying why,
 * so qreq_build mends what has one clear meaning and rejects the rest
 * with a 400 that names the rule and the message:
 *  - adjacent messages of one role are merged (text joined by a blank
 *    line); a conversation that opens with the assistant gets an empty
 *    user turn before it;
 *  - the last message becomes currentMessage; a trailing assistant
 *    message (prefill) goes to history and "Continue" is sent, unless it
 *    holds tool calls, which then have no results: 400;
 *  - an empty user turn says "Continue", or "Tool results provided."
 *    when it carries tool results; assistant text may stay "";
 *  - a tool call whose result the next user turn lacks gets an error
 *    result ("tool result missing"), since the client evidently went on
 *    without it; a tool result that answers no call of the assistant
 *    turn just before it, a duplicate call id and a second result for
 *    one call are 400s;
 *  - tool and call names the upstream would refuse (over 64 bytes or
 *    outside [a-zA-Z0-9_-]) are shortened to a stable 63-byte form and
 *    mapped back on the way out (qreq_tool_client_name); invalid call
 *    ids are rewritten the same way on both sides of the pairing.
 * The system prompt and the thinking request are prepended to the first
 * user turn (§2.7).
 *
 * The writer escapes strings straight into the output buffer and
 * serialises each borrowed JSON Schema or tool input once, so a 1 MB
 * request converts in about a millisecond (tests/bench/convbench.c).
 */
#include <ctype.h>
#include <endian.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "qrelayd.h"

#define QR_TOOL_NAME_MAX	64	/* upstream ToolName / ToolUseId */
#define QR_TOOL_PREFIX		54	/* + "_" + 8 hex = 63 */
#define QR_DESC_MAX		10000	/* bytes; the upstream allows 10240 */
#define QR_IMAGES_MAX		10	/* per message */
#define QR_IMAGE_MAX		10000000 /* decoded bytes */
#define QR_IMAGE_TOKENS		1600	/* a full-size image, as Claude counts */
#define QR_THINK_MIN		1024
#define QR_THINK_MAX		24576
#define QR_THINK_DEFAULT	20000
#define QR_ORIGIN		"AI_EDITOR"

static const char qr_invalid[] = "invalid_request_error";
static const char no_result[] = "Tool result missing: the client sent "
    "no result for this call.";
static const char placeholder_desc[] = "A tool used earlier in this "
    "conversation.";
static const char empty_schema[] = "{\"type\":\"object\",\"properties\":{}}";

/* ------------------------------------------------------------------ */
/* the struct and its helpers                                           */

void
qreq_init(struct qreq *q, int api)
{
	memset(q, 0, sizeof(*q));
	q->q_api = api;
	buf_init(&q->q_system);
}

void
qreq_free(struct qreq *q)
{
	size_t	 i;

	if (q->q_root != NULL)
		json_object_put(q->q_root);
	for (i = 0; i < q->q_nowned; i++)
		free(q->q_owned[i]);
	free(q->q_owned);
	for (i = 0; i < q->q_nmsgs; i++)
		free(q->q_msgs[i].qm_parts);
	free(q->q_msgs);
	free(q->q_tools);
	for (i = 0; i < 2 * q->q_ntool_map; i++)
		free(q->q_tool_map[i]);
	free(q->q_tool_map);
	buf_free(&q->q_system);
	memset(q, 0, sizeof(*q));
}

/* Room for one more element of size sz in *arr (n used, *cap room). */
static int
grow(void *arr, size_t n, size_t *cap, size_t sz)
{
	void	**p = arr, *np;
	size_t	 nc;

	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : 8;
	if (nc > SIZE_MAX / sz || (np = realloc(*p, nc * sz)) == NULL)
		return -1;
	*p = np;
	*cap = nc;
	return 0;
}

/* The returned pointer lives until the next qreq_add_msg. */
struct qmsg *
qreq_add_msg(struct qreq *q, int role)
{
	struct qmsg	*m;

	if (grow(&q->q_msgs, q->q_nmsgs, &q->q_msgs_cap, sizeof(*m)) == -1)
		return NULL;
	m = &q->q_msgs[q->q_nmsgs];
	memset(m, 0, sizeof(*m));
	m->qm_role = role;
	m->qm_index = (int)q->q_nmsgs;
	q->q_nmsgs++;
	return m;
}

struct qpart *
qreq_add_part(struct qreq *q, struct qmsg *m, int kind)
{
	struct qpart	*p;

	if (grow(&m->qm_parts, m->qm_nparts, &m->qm_cap, sizeof(*p)) == -1)
		return NULL;
	p = &m->qm_parts[m->qm_nparts++];
	memset(p, 0, sizeof(*p));
	p->qp_kind = kind;
	return p;
}

struct qtool *
qreq_add_tool(struct qreq *q)
{
	struct qtool	*t;

	if (grow(&q->q_tools, q->q_ntools, &q->q_tools_cap, sizeof(*t)) == -1)
		return NULL;
	t = &q->q_tools[q->q_ntools++];
	memset(t, 0, sizeof(*t));
	return t;
}

const char *
qreq_strdup(struct qreq *q, const char *s, size_t n)
{
	char	*d;

	if (grow(&q->q_owned, q->q_nowned, &q->q_owned_cap,
	    sizeof(char *)) == -1 || (d = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	q->q_owned[q->q_nowned++] = d;
	return d;
}

void
qerr_set(struct qerr *e, int status, const char *type, const char *fmt, ...)
{
	va_list	 ap;

	if (e == NULL)
		return;
	e->qe_status = status;
	strlcpy_qr(e->qe_type, type, sizeof(e->qe_type));
	va_start(ap, fmt);
	vsnprintf(e->qe_msg, sizeof(e->qe_msg), fmt, ap);
	va_end(ap);
}

/* The usual client fault: 400 invalid_request_error; returns -1. */
int
qerr_bad(struct qerr *e, const char *fmt, ...)
{
	char	 msg[sizeof(e->qe_msg)];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	qerr_set(e, 400, "invalid_request_error", "%s", msg);
	return -1;
}

/* A member, or NULL when absent; JSON null reads as absent, as it does
 * to the real APIs ("system": null is no system). */
struct json_object *
qjson_get(struct json_object *o, const char *key)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

/* Append o as compact JSON (slashes left alone). */
int
qjson_append(struct buf *out, struct json_object *o)
{
	const char	*s;
	size_t		 n;

	if (o == NULL || (s = json_object_to_json_string_length(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
	    &n)) == NULL)
		return -1;
	return buf_append(out, s, n);
}

/* An image media type -> the upstream's format, NULL: unsupported. */
const char *
qreq_image_format(const char *mime, size_t len)
{
	static const char *const map[][2] = {
		{ "image/png", "png" }, { "image/jpeg", "jpeg" },
		{ "image/jpg", "jpeg" }, { "image/gif", "gif" },
		{ "image/webp", "webp" },
	};
	size_t	 i;

	for (i = 0; i < nitems(map); i++)
		if (strcaseeq_n(mime, len, map[i][0]))
			return map[i][1];
	return NULL;
}

/* 500, out of memory; returns -1. */
int
qerr_nomem(struct qerr *e)
{
	qerr_set(e, 500, "api_error", "out of memory");
	return -1;
}

/*
 * RFC 8259, strictly, by jsonr.c (a 1 MB body in well under a
 * millisecond, where json-c's tokener took four), into the json-c tree
 * everything else reads; the depth cap keeps a hostile body small.
 * UTF-8 is not checked here but where strings are written upstream
 * (jw_esc), which costs almost nothing there.
 */
int
qreq_parse_json(struct qreq *q, const char *body, size_t len,
    struct qerr *e)
{
	struct json_object	*o;
	struct jsonr_err	 je;

	o = jsonr_parse(body, len, QR_JSON_DEPTH, &je);
	switch (je.je_code) {
	case JSONR_OK:
		break;
	case JSONR_TOOBIG:
		qerr_set(e, 413, "request_too_large", "request body too large");
		return -1;
	case JSONR_NOMEM:
		qerr_nomem(e);
		return -1;
	case JSONR_EMPTY:
		qerr_set(e, 400, qr_invalid, "request body is empty");
		return -1;
	case JSONR_DEPTH:
		qerr_set(e, 400, qr_invalid, "request body: JSON nested "
		    "deeper than %d levels", QR_JSON_DEPTH);
		return -1;
	default:
		qerr_set(e, 400, qr_invalid, "request body is not valid JSON: "
		    "%s at byte %zu", je.je_msg, je.je_off);
		return -1;
	}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		qerr_set(e, 400, qr_invalid,
		    "request body must be a JSON object");
		return -1;
	}
	if (q->q_root != NULL)
		json_object_put(q->q_root);
	q->q_root = o;
	return 0;
}

/* ------------------------------------------------------------------ */
/* models                                                               */

/*
 * The names clients use, lower case, and the upstream modelId (§6).
 * Entries with a display name are what GET /v1/models lists; created
 * is the release date (the one in the id where it has one).
 */
static const struct model_name {
	const char	*mn_name;
	const char	*mn_id;
	const char	*mn_display;	/* NULL: accepted, not listed */
	int64_t		 mn_created;
} model_names[] = {
	{ "claude-opus-4-6", "claude-opus-4.6", "Claude Opus 4.6", 1770249600 },
	{ "claude-opus-4.6", "claude-opus-4.6", NULL, 0 },
	{ "claude-sonnet-4-6", "claude-sonnet-4.6", "Claude Sonnet 4.6",
	    1771286400 },
	{ "claude-sonnet-4.6", "claude-sonnet-4.6", NULL, 0 },
	{ "claude-opus-4-5", "claude-opus-4.5", "Claude Opus 4.5", 1761955200 },
	{ "claude-opus-4-5-20251101", "claude-opus-4.5", "Claude Opus 4.5",
	    1761955200 },
	{ "claude-opus-4.5", "claude-opus-4.5", NULL, 0 },
	{ "claude-4.5-opus-high", "claude-opus-4.5", "Claude Opus 4.5 (high)",
	    1759104000 },
	{ "claude-4.5-opus-low", "claude-opus-4.5", "Claude Opus 4.5 (low)",
	    1759104000 },
	{ "claude-sonnet-4-5", "claude-sonnet-4.5", "Claude Sonnet 4.5",
	    1759104000 },
	{ "claude-sonnet-4-5-20250929", "claude-sonnet-4.5",
	    "Claude Sonnet 4.5", 1759104000 },
	{ "claude-sonnet-4.5", "claude-sonnet-4.5", "Claude Sonnet 4.5",
	    1759104000 },
	{ "claude-sonnet-4-20250514", "claude-sonnet-4", "Claude Sonnet 4",
	    1747180800 },
	{ "claude-sonnet-4", "claude-sonnet-4", NULL, 0 },
	{ "claude-sonnet-4-0", "claude-sonnet-4", NULL, 0 },
	{ "claude-4-sonnet", "claude-sonnet-4", NULL, 0 },
	{ "claude-3-7-sonnet-20250219", "claude-3.7-sonnet",
	    "Claude Sonnet 3.7", 1739923200 },
	{ "claude-3-7-sonnet-latest", "claude-3.7-sonnet", NULL, 0 },
	{ "claude-3.7-sonnet", "claude-3.7-sonnet", NULL, 0 },
	/* the upstream has no Sonnet 3.5: its successor answers */
	{ "claude-sonnet-3.5", "claude-sonnet-4.5", "Claude Sonnet (3.5 name)",
	    1759104000 },
	{ "claude-3-5-sonnet-20241022", "claude-sonnet-4.5", NULL, 0 },
	{ "claude-3-5-sonnet-latest", "claude-sonnet-4.5", NULL, 0 },
	{ "claude-haiku-4-5", "claude-haiku-4.5", "Claude Haiku 4.5",
	    1759276800 },
	{ "claude-haiku-4-5-20251001", "claude-haiku-4.5", "Claude Haiku 4.5",
	    1759276800 },
	{ "claude-haiku-4.5", "claude-haiku-4.5", "Claude Haiku 4.5",
	    1759104000 },
	{ "claude-3-5-haiku-20241022", "claude-haiku-4.5", NULL, 0 },
	{ "claude-3-5-haiku-latest", "claude-haiku-4.5", NULL, 0 },
	{ "auto", "auto", "Auto (the upstream chooses)", 1735689600 },
	/* the older internal ids, still accepted upstream */
	{ "claude_sonnet_4_5_20250929_v1_0", "CLAUDE_SONNET_4_5_20250929_V1_0",
	    NULL, 0 },
	{ "claude_sonnet_4_20250514_v1_0", "CLAUDE_SONNET_4_20250514_V1_0",
	    NULL, 0 },
	{ "claude_3_7_sonnet_20250219_v1_0", "CLAUDE_3_7_SONNET_20250219_V1_0",
	    NULL, 0 },
};

#define MODEL_CONFIG_CREATED	1735689600	/* config entries: no date */

/*
 * The version a name carries, "claude-opus-4-6" or "claude-4.5-opus":
 * the first number of one or two digits, and the next such number when
 * only a '-' or '.' separates them. Dates (8 digits) are not versions.
 */
static void
model_version(const char *s, int *maj, int *min)
{
	size_t	 n;

	*maj = -1;
	*min = 0;
	while (*s != '\0') {
		if (!isdigit((unsigned char)*s)) {
			s++;
			continue;
		}
		for (n = 0; isdigit((unsigned char)s[n]); n++)
			;
		if (n <= 2) {
			*maj = atoi(s);
			s += n;
			if ((*s == '-' || *s == '.') &&
			    isdigit((unsigned char)s[1])) {
				for (n = 1; isdigit((unsigned char)s[n]); n++)
					;
				if (n <= 3)
					*min = atoi(s + 1);
			}
			return;
		}
		s += n;
	}
}

/* A name no list knows, by family (as kiro.rs does, §6). */
static const char *
model_family(const char *name)
{
	int	 maj, min, newer;

	model_version(name, &maj, &min);
	newer = maj > 4 || (maj == 4 && min >= 6);
	if (strcasestr(name, "opus") != NULL)
		return newer ? "claude-opus-4.6" : "claude-opus-4.5";
	if (strcasestr(name, "sonnet") != NULL)
		return newer ? "claude-sonnet-4.6" : "claude-sonnet-4.5";
	if (strcasestr(name, "haiku") != NULL)
		return "claude-haiku-4.5";
	return NULL;
}

int
qreq_model_resolve(const struct config *cf, const char *client, char *out,
    size_t outlen)
{
	const char	*id = NULL;
	size_t		 i;
	int		 n;

	if (client == NULL || client[0] == '\0')
		return -1;
	for (i = 0; cf != NULL && i < (size_t)cf->cf_nmodels; i++) {
		if (strcasecmp(cf->cf_models[i].cm_match, client) == 0 ||
		    fnmatch(cf->cf_models[i].cm_match, client,
		    FNM_CASEFOLD) == 0) {
			id = cf->cf_models[i].cm_id;
			break;
		}
	}
	for (i = 0; id == NULL && i < nitems(model_names); i++)
		if (strcasecmp(model_names[i].mn_name, client) == 0)
			id = model_names[i].mn_id;
	if (id == NULL && (id = model_family(client)) == NULL)
		return -1;
	n = snprintf(out, outlen, "%s", id);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int
model_listed(struct json_object *data, const char *name)
{
	struct json_object	*m, *id;
	size_t			 i, n = json_object_array_length(data);

	for (i = 0; i < n; i++) {
		m = json_object_array_get_idx(data, i);
		if (json_object_object_get_ex(m, "id", &id) &&
		    strcasecmp(json_object_get_string(id), name) == 0)
			return 1;
	}
	return 0;
}

static int
model_add(struct json_object *data, int api, const char *name,
    const char *display, int64_t created)
{
	struct json_object	*m;
	char			 iso[32];

	if (model_listed(data, name))
		return 0;
	if ((m = json_object_new_object()) == NULL)
		return -1;
	if (api == API_OPENAI) {
		json_object_object_add(m, "id", json_object_new_string(name));
		json_object_object_add(m, "object",
		    json_object_new_string("model"));
		json_object_object_add(m, "created",
		    json_object_new_int64(created));
		json_object_object_add(m, "owned_by",
		    json_object_new_string("anthropic"));
	} else {
		json_object_object_add(m, "type",
		    json_object_new_string("model"));
		json_object_object_add(m, "id", json_object_new_string(name));
		json_object_object_add(m, "display_name",
		    json_object_new_string(display));
		if (fmt_iso8601(created, iso) == NULL)
			strlcpy_qr(iso, "2025-01-01T00:00:00Z", sizeof(iso));
		json_object_object_add(m, "created_at",
		    json_object_new_string(iso));
	}
	return json_object_array_add(data, m);
}

/* The config's exact names first (what the operator chose to offer),
 * then the built-in list. Patterns are not names, so not listed. */
struct json_object *
qreq_models_json(const struct config *cf, int api)
{
	struct json_object	*root, *data;
	const char		*match;
	size_t			 i, n;

	if ((root = json_object_new_object()) == NULL ||
	    (data = json_object_new_array()) == NULL) {
		json_object_put(root);
		return NULL;
	}
	for (i = 0; cf != NULL && i < (size_t)cf->cf_nmodels; i++) {
		match = cf->cf_models[i].cm_match;
		if (strpbrk(match, "*?[\\") != NULL)
			continue;
		if (model_add(data, api, match, match,
		    MODEL_CONFIG_CREATED) == -1)
			goto fail;
	}
	for (i = 0; i < nitems(model_names); i++) {
		if (model_names[i].mn_display == NULL)
			continue;
		if (model_add(data, api, model_names[i].mn_name,
		    model_names[i].mn_display, model_names[i].mn_created) == -1)
			goto fail;
	}
	if (api == API_OPENAI) {
		json_object_object_add(root, "object",
		    json_object_new_string("list"));
		json_object_object_add(root, "data", data);
	} else {
		json_object_object_add(root, "data", data);
		json_object_object_add(root, "has_more",
		    json_object_new_boolean(0));
		n = json_object_array_length(data);
		json_object_object_add(root, "first_id", n == 0 ? NULL :
		    json_object_get(json_object_object_get(
		    json_object_array_get_idx(data, 0), "id")));
		json_object_object_add(root, "last_id", n == 0 ? NULL :
		    json_object_get(json_object_object_get(
		    json_object_array_get_idx(data, n - 1), "id")));
	}
	return root;
 fail:
	json_object_put(data);
	json_object_put(root);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* tool names                                                           */

static int
name_char_ok(int c)
{
	return isalnum(c) || c == '_' || c == '-';
}

static int
tool_name_ok(const char *s)
{
	size_t	 i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= QR_TOOL_NAME_MAX || !name_char_ok((unsigned char)s[i]))
			return 0;
	return i > 0;
}

/*
 * The name the upstream sees: s itself when valid, else the first 54
 * bytes with every other byte made '_', "_", and 8 hex digits of the
 * SHA-256 of the whole name (kiro.rs's form). Stable across requests,
 * so a conversation's history keeps matching its tool list.
 */
static const char *
tool_name_up(const char *s, char out[QR_TOOL_NAME_MAX])
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen;
	size_t		 i;

	if (tool_name_ok(s))
		return s;
	for (i = 0; s[i] != '\0' && i < QR_TOOL_PREFIX; i++)
		out[i] = name_char_ok((unsigned char)s[i]) ? s[i] : '_';
	out[i++] = '_';
	if (EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL) != 1)
		memset(md, 0, 4);
	hex_encode(md, 4, out + i);	/* NUL-terminated */
	return out;
}

static int
tool_map_add(struct qreq *q, const char *up, const char *client)
{
	char	**m;
	size_t	 i;

	for (i = 0; i < q->q_ntool_map; i++)
		if (strcmp(q->q_tool_map[2 * i], up) == 0)
			return 0;
	if ((m = reallocarray(q->q_tool_map, 2 * (q->q_ntool_map + 1),
	    sizeof(*m))) == NULL)
		return -1;
	q->q_tool_map = m;
	m[2 * q->q_ntool_map] = strdup(up);
	m[2 * q->q_ntool_map + 1] = strdup(client);
	q->q_ntool_map++;
	if (m[2 * q->q_ntool_map - 2] == NULL ||
	    m[2 * q->q_ntool_map - 1] == NULL)
		return -1;
	return 0;
}

const char *
qreq_tool_client_name(const struct qreq *q, const char *up)
{
	size_t	 i;

	for (i = 0; up != NULL && i < q->q_ntool_map; i++)
		if (strcmp(q->q_tool_map[2 * i], up) == 0)
			return q->q_tool_map[2 * i + 1];
	return up;
}

/* ------------------------------------------------------------------ */
/* the JSON writer                                                      */

/* Errors are sticky: write everything, check once. */
struct jw {
	struct buf	*w_b;
	int		 w_err;
};

static void
jw_raw(struct jw *w, const char *s, size_t n)
{
	if (!w->w_err && buf_append(w->w_b, s, n) == -1)
		w->w_err = 1;
}

static void
jw_lit(struct jw *w, const char *s)
{
	jw_raw(w, s, strlen(s));
}

/* Bytes a JSON string needs escaped: 'u' for \u00XX, else the letter
 * after the backslash. */
static const char esc_tab[256] = {
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r',
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
	'u', 'u', 'u', 'u', 0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\',
};

#define ESC_BLOCK	4096	/* input bytes per reservation */
#define ONES		0x0101010101010101ULL
#define HIGHS		0x8080808080808080ULL

/*
 * Of 8 bytes (little-endian), the high bit of each lane that does not
 * copy as it is: non-ASCII, a control, '"' or '\\'. Lanes above a marked
 * one may be marked falsely (a borrow), the lowest mark never is.
 */
static uint64_t
esc_mask8(uint64_t x)
{
	uint64_t	 q = x ^ (ONES * '"'), bs = x ^ (ONES * '\\');

	return (x | ((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) |
	    ((bs - ONES) & ~bs)) & HIGHS;
}

/* The length of the valid UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), 0 if it is not one. */
static size_t
utf8_seq(const unsigned char *p, const unsigned char *end)
{
	size_t		 n, i;
	unsigned char	 lo = 0x80, hi = 0xbf;

	if (*p >= 0xc2 && *p <= 0xdf)
		n = 2;
	else if (*p >= 0xe0 && *p <= 0xef) {
		n = 3;
		if (*p == 0xe0)
			lo = 0xa0;
		else if (*p == 0xed)
			hi = 0x9f;
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 4;
		if (*p == 0xf0)
			lo = 0x90;
		else if (*p == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/*
 * The inside of a JSON string. Text is most of a request, so this
 * writes in place, 16 bytes at a time (SSE2; else 8, as a word) where
 * nothing needs escaping: each block is stored whole and only the
 * pointers stop at the first byte that needs care, with room for the
 * worst case (6 bytes out per byte in) reserved once per block. json-c
 * does not check UTF-8 (its check would cost a third of the parse), so
 * it is checked here, where every byte passes anyway: a byte that
 * starts no valid sequence becomes U+FFFD.
 */
static void
jw_esc(struct jw *w, const char *s, size_t n)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p = (const unsigned char *)s, *end = p + n;
	const unsigned char	*bend;
	struct buf		*b = w->w_b;
	char			*o;
	uint64_t		 x, m;
	size_t			 blk, k;
	unsigned char		 c;
#ifdef __SSE2__
	const __m128i		 quote = _mm_set1_epi8('"');
	const __m128i		 bslash = _mm_set1_epi8('\\');
	const __m128i		 ctl = _mm_set1_epi8(0x1f);
	__m128i			 v;
	unsigned		 mask;
#endif

	while (p < end && !w->w_err) {
		blk = (size_t)(end - p) < ESC_BLOCK ? (size_t)(end - p) :
		    ESC_BLOCK;
		if (buf_reserve(b, (blk + 4) * 6) == -1) {
			w->w_err = 1;
			return;
		}
		o = b->b_data + b->b_len;
		bend = p + blk;
		while (p < bend) {
#ifdef __SSE2__
			if (bend - p >= 16) {
				/* a lane's high bit: '"', '\\', a control,
				 * or not ASCII */
				v = _mm_loadu_si128((const __m128i *)
				    (const void *)p);
				_mm_storeu_si128((__m128i *)(void *)o, v);
				mask = (unsigned)_mm_movemask_epi8(_mm_or_si128(
				    _mm_or_si128(_mm_cmpeq_epi8(v, quote),
				    _mm_cmpeq_epi8(v, bslash)), _mm_or_si128(
				    _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v), v)));
				if (mask == 0) {
					o += 16;
					p += 16;
					continue;
				}
				k = (size_t)__builtin_ctz(mask);
				o += k;
				p += k;
			} else
#endif
			if (bend - p >= 8 && BYTE_ORDER == LITTLE_ENDIAN) {
				/* copy all 8, keep those before the first
				 * lane that needs care (room: see above) */
				memcpy(&x, p, 8);
				memcpy(o, p, 8);
				if ((m = esc_mask8(x)) == 0) {
					o += 8;
					p += 8;
					continue;
				}
				k = (size_t)__builtin_ctzll(m) / 8;
				o += k;
				p += k;
			}
			c = *p;
			if (c >= 0x80) {	/* may run past bend */
				if ((k = utf8_seq(p, end)) == 0) {
					memcpy(o, "\xef\xbf\xbd", 3);
					o += 3;
					p++;
				} else {
					memcpy(o, p, k);
					o += k;
					p += k;
				}
				continue;
			}
			p++;
			if (esc_tab[c] == 0) {
				*o++ = (char)c;
				continue;
			}
			*o++ = '\\';
			if ((*o++ = esc_tab[c]) == 'u') {
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[c >> 4];
				*o++ = hex[c & 15];
			}
		}
		b->b_len = (size_t)(o - b->b_data);
		b->b_data[b->b_len] = '\0';
	}
}

static void
jw_str(struct jw *w, const char *s, size_t n)
{
	jw_raw(w, "\"", 1);
	jw_esc(w, s, n);
	jw_raw(w, "\"", 1);
}

static void
jw_cstr(struct jw *w, const char *s)
{
	jw_str(w, s, strlen(s));
}

/* A borrowed json-c value, serialised once, compact. */
static void
jw_json(struct jw *w, struct json_object *o, const char *dflt)
{
	const char	*s;
	size_t		 n;

	if (o == NULL) {
		jw_lit(w, dflt);
		return;
	}
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	if (s == NULL) {
		w->w_err = 1;
		return;
	}
	/*
	 * json-c copies string bytes as they came, and the reader lets
	 * invalid UTF-8 through: mend it here as jw_esc mends text. Bytes
	 * of 0x80 and above only occur inside strings, so each bad one
	 * can become U+FFFD in place.
	 */
	{
		const unsigned char	*p = (const unsigned char *)s;
		const unsigned char	*end = p + n, *run = p;
		size_t			 k;

		while (p < end) {
			if (*p < 0x80) {
				p++;
				continue;
			}
			if ((k = utf8_seq(p, end)) != 0) {
				p += k;
				continue;
			}
			jw_raw(w, (const char *)run, (size_t)(p - run));
			jw_lit(w, "\xef\xbf\xbd");
			run = ++p;
		}
		jw_raw(w, (const char *)run, (size_t)(end - run));
	}
}

/* ------------------------------------------------------------------ */
/* the linter                                                           */

/* One upstream message: client messages [t_first, t_end) of one role
 * (t_first == t_end: a turn we made up). */
struct turn {
	int		 t_role;
	size_t		 t_first, t_end;
	size_t		 t_miss, t_nmiss;	/* b_missing: calls unanswered */
	size_t		 t_nresults;
	size_t		 t_ntext;
	size_t		 t_nimages;
	size_t		 t_nuses;
};

struct use_ref {
	const struct qpart *ur_part;
	int		 ur_msg;		/* qm_index */
};

struct build {
	struct qreq	*b_q;
	struct turn	*b_turns;
	size_t		 b_nturns;
	int		 b_prefill;	/* the last turn is the assistant's */
	const struct qpart **b_missing;
	size_t		 b_nmissing;
	const char	**b_place;	/* history tool names lacking a spec */
	size_t		 b_nplace;
	struct buf	 b_prefix;	/* thinking tags and system text */
	size_t		 b_size;	/* rough output size */
};

#define TURN_PARTS(q, t, m, p)						\
	for ((m) = &(q)->q_msgs[(t)->t_first];				\
	    (m) < &(q)->q_msgs[(t)->t_end]; (m)++)			\
		for ((p) = (m)->qm_parts; (p) < (m)->qm_parts +	\
		    (m)->qm_nparts; (p)++)

static int
cmp_use(const void *a, const void *b)
{
	return strcmp(((const struct use_ref *)a)->ur_part->qp_tool_id,
	    ((const struct use_ref *)b)->ur_part->qp_tool_id);
}

static int
cmp_icase(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* Case-insensitive order, ties broken by bytes: equal names end up
 * next to each other, and bsearch with cmp_icase still works. */
static int
cmp_names(const void *a, const void *b)
{
	int	 c = cmp_icase(a, b);

	return c != 0 ? c : strcmp(*(const char *const *)a,
	    *(const char *const *)b);
}

/* Merge same-role neighbours; a user turn first. */
static int
build_turns(struct build *bd, struct qerr *e)
{
	struct qreq	*q = bd->b_q;
	struct turn	*t;
	size_t		 i, nuser = 0;

	for (i = 0; i < q->q_nmsgs; i++)
		if (q->q_msgs[i].qm_role == QROLE_USER)
			nuser++;
	if (nuser == 0) {
		qerr_set(e, 400, qr_invalid, q->q_nmsgs == 0 ?
		    "messages: at least one message is required" :
		    "messages: at least one user message is required");
		return -1;
	}
	if ((bd->b_turns = calloc(q->q_nmsgs + 1, sizeof(*t))) == NULL) {
		qerr_nomem(e);
		return -1;
	}
	if (q->q_msgs[0].qm_role != QROLE_USER) {
		t = &bd->b_turns[bd->b_nturns++];
		t->t_role = QROLE_USER;
	}
	for (i = 0; i < q->q_nmsgs; i++) {
		if (q->q_msgs[i].qm_role != QROLE_USER &&
		    q->q_msgs[i].qm_role != QROLE_ASSISTANT) {
			qerr_set(e, 400, qr_invalid, "messages[%d]: unknown role",
			    q->q_msgs[i].qm_index);
			return -1;
		}
		t = bd->b_nturns > 0 ? &bd->b_turns[bd->b_nturns - 1] : NULL;
		if (t != NULL && t->t_role == q->q_msgs[i].qm_role) {
			t->t_end = i + 1;
			continue;
		}
		t = &bd->b_turns[bd->b_nturns++];
		t->t_role = q->q_msgs[i].qm_role;
		t->t_first = i;
		t->t_end = i + 1;
	}
	bd->b_prefill = bd->b_turns[bd->b_nturns - 1].t_role ==
	    QROLE_ASSISTANT;
	return 0;
}

/* base64 (standard alphabet, padded, no spaces) -> decoded length, or
 * -1 when it is not valid. */
static ssize_t
b64_len(const char *s, size_t n)
{
	size_t	 i, pad = 0;
	int	 c;

	if (n == 0 || n % 4 != 0)
		return -1;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	for (i = 0; i < n - pad; i++) {
		c = (unsigned char)s[i];
		if (!isalnum(c) && c != '+' && c != '/')
			return -1;
	}
	return (ssize_t)(n / 4 * 3 - pad);
}

static const char *
image_sniff(const unsigned char *p, size_t n)
{
	if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "png";
	if (n >= 3 && memcmp(p, "\xff\xd8\xff", 3) == 0)
		return "jpeg";
	if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 ||
	    memcmp(p, "GIF89a", 6) == 0))
		return "gif";
	if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP",
	    4) == 0)
		return "webp";
	return NULL;
}

/* The declared format, the base64, the size and the magic bytes. */
static int
lint_image(struct qpart *p, int idx, struct qerr *e)
{
	static const char *const fmts[] = { "png", "jpeg", "gif", "webp" };
	unsigned char	 head[16];
	const char	*fmt = p->qp_image_format, *got;
	size_t		 i, len = p->qp_image_len;
	ssize_t		 dlen;
	int		 hn;

	if (fmt != NULL && strcasecmp(fmt, "jpg") == 0)
		fmt = p->qp_image_format = "jpeg";
	for (i = 0; fmt != NULL && i < nitems(fmts); i++)
		if (strcasecmp(fmt, fmts[i]) == 0)
			break;
	if (fmt == NULL || i == nitems(fmts)) {
		qerr_set(e, 400, qr_invalid, "messages[%d]: image type "
		    "\"image/%.40s\" is not supported (png, jpeg, gif, webp)",
		    idx, fmt != NULL ? fmt : "");
		return -1;
	}
	p->qp_image_format = fmts[i];	/* lower case */
	if (p->qp_image_b64 == NULL || len == 0) {
		qerr_set(e, 400, qr_invalid, "messages[%d]: image has no data",
		    idx);
		return -1;
	}
	if ((dlen = b64_len(p->qp_image_b64, len)) < 0) {
		qerr_set(e, 400, qr_invalid, "messages[%d]: image data is not "
		    "valid base64", idx);
		return -1;
	}
	if (dlen > QR_IMAGE_MAX) {
		qerr_set(e, 400, qr_invalid, "messages[%d]: image is %zd bytes, "
		    "more than the %d allowed", idx, dlen, QR_IMAGE_MAX);
		return -1;
	}
	hn = EVP_DecodeBlock(head, (const unsigned char *)p->qp_image_b64,
	    (int)(len < 16 ? len : 16));
	if (hn < 0)
		hn = 0;
	if ((size_t)hn > (size_t)dlen)
		hn = (int)dlen;
	if ((got = image_sniff(head, (size_t)hn)) == NULL) {
		qerr_set(e, 400, qr_invalid, "messages[%d]: image data is not "
		    "a png, jpeg, gif or webp image", idx);
		return -1;
	}
	if (strcmp(got, p->qp_image_format) != 0) {
		qerr_set(e, 400, qr_invalid, "messages[%d]: image declared as "
		    "image/%s but its data is %s (IMAGE_MIME_MISMATCH)", idx,
		    p->qp_image_format, got);
		return -1;
	}
	return 0;
}

/* Counts per turn, images, and the tool-call rules. */
static int
lint(struct build *bd, struct qerr *e)
{
	struct qreq	*q = bd->b_q;
	struct turn	*t, *prev;
	struct qmsg	*m;
	struct qpart	*p;
	struct use_ref	*uses = NULL;
	const struct qpart **pu = NULL;
	unsigned char	*done = NULL;
	size_t		 i, j, nuses = 0, cap = 0, npu;
	int		 rv = -1;

	for (t = bd->b_turns; t < bd->b_turns + bd->b_nturns; t++) {
		TURN_PARTS(q, t, m, p) {
			bd->b_size += p->qp_text_len + p->qp_image_len + 64;
			switch (p->qp_kind) {
			case QP_TEXT:
				if (p->qp_text_len > 0)
					t->t_ntext++;
				break;
			case QP_THINKING:
				if (t->t_role == QROLE_ASSISTANT &&
				    p->qp_text_len > 0)
					t->t_ntext++;
				break;
			case QP_IMAGE:
				if (t->t_role != QROLE_USER)
					break;
				if (lint_image(p, m->qm_index, e) == -1)
					goto done;
				if (++t->t_nimages > QR_IMAGES_MAX) {
					qerr_set(e, 400, qr_invalid,
					    "messages[%d]: more than %d images "
					    "in one message", m->qm_index,
					    QR_IMAGES_MAX);
					goto done;
				}
				break;
			case QP_TOOL_USE:
				if (t->t_role != QROLE_ASSISTANT)
					break;
				if (p->qp_tool_id == NULL ||
				    p->qp_tool_id[0] == '\0' ||
				    p->qp_tool_name == NULL ||
				    p->qp_tool_name[0] == '\0') {
					qerr_set(e, 400, qr_invalid,
					    "messages[%d]: tool_use needs an id "
					    "and a name", m->qm_index);
					goto done;
				}
				if (nuses == cap && grow(&uses, nuses, &cap,
				    sizeof(*uses)) == -1)
					goto nomem;
				uses[nuses].ur_part = p;
				uses[nuses++].ur_msg = m->qm_index;
				t->t_nuses++;
				break;
			case QP_TOOL_RESULT:
				if (t->t_role != QROLE_USER)
					break;
				if (p->qp_tool_id == NULL ||
				    p->qp_tool_id[0] == '\0') {
					qerr_set(e, 400, qr_invalid,
					    "messages[%d]: tool_result needs a "
					    "tool_use_id", m->qm_index);
					goto done;
				}
				t->t_nresults++;
				break;
			}
		}
	}

	/* tool_use ids are unique in the conversation */
	if (nuses > 1)
		qsort(uses, nuses, sizeof(*uses), cmp_use);
	for (i = 1; i < nuses; i++) {
		if (cmp_use(&uses[i - 1], &uses[i]) == 0) {
			qerr_set(e, 400, qr_invalid, "messages[%d]: duplicate "
			    "tool_use id \"%.64s\"", uses[i].ur_msg,
			    uses[i].ur_part->qp_tool_id);
			goto done;
		}
	}
	if ((bd->b_missing = calloc(nuses + 1, sizeof(*bd->b_missing))) ==
	    NULL || (pu = calloc(nuses + 1, sizeof(*pu))) == NULL ||
	    (done = calloc(nuses + 1, 1)) == NULL)
		goto nomem;

	/* every result answers a call of the assistant turn just before */
	for (t = bd->b_turns; t < bd->b_turns + bd->b_nturns; t++) {
		if (t->t_role != QROLE_USER)
			continue;
		prev = t > bd->b_turns ? t - 1 : NULL;
		npu = 0;
		if (prev != NULL && prev->t_nuses > 0) {
			TURN_PARTS(q, prev, m, p)
				if (p->qp_kind == QP_TOOL_USE)
					pu[npu++] = p;
			memset(done, 0, npu);
		}
		TURN_PARTS(q, t, m, p) {
			if (p->qp_kind != QP_TOOL_RESULT)
				continue;
			for (j = 0; j < npu; j++)
				if (strcmp(pu[j]->qp_tool_id,
				    p->qp_tool_id) == 0)
					break;
			if (j == npu) {
				qerr_set(e, 400, qr_invalid, "messages[%d]: "
				    "tool_result for tool_use_id \"%.64s\" "
				    "answers no tool_use of the assistant "
				    "message just before it", m->qm_index,
				    p->qp_tool_id);
				goto done;
			}
			if (done[j]) {
				qerr_set(e, 400, qr_invalid, "messages[%d]: "
				    "second tool_result for tool_use_id "
				    "\"%.64s\"", m->qm_index, p->qp_tool_id);
				goto done;
			}
			done[j] = 1;
		}
		t->t_miss = bd->b_nmissing;
		for (j = 0; j < npu; j++)
			if (!done[j])
				bd->b_missing[bd->b_nmissing++] = pu[j];
		t->t_nmiss = bd->b_nmissing - t->t_miss;
	}
	/* a prefill with calls: nothing could have answered them */
	t = &bd->b_turns[bd->b_nturns - 1];
	if (bd->b_prefill && t->t_nuses > 0) {
		TURN_PARTS(q, t, m, p) {
			if (p->qp_kind != QP_TOOL_USE)
				continue;
			qerr_set(e, 400, qr_invalid, "messages[%d]: tool_use "
			    "\"%.64s\" has no tool_result: the last message "
			    "must be a user message carrying the results",
			    m->qm_index, p->qp_tool_id);
			goto done;
		}
	}
	rv = 0;
	goto done;
 nomem:
	qerr_nomem(e);
 done:
	free(uses);
	free(pu);
	free(done);
	return rv;
}

/*
 * Two names for one tool upstream: equal, or equal but for case when
 * both go upstream as they are (the upstream compares names ignoring
 * case). A name that must be renamed is renamed from its exact bytes, so
 * "A.b" and "a.b" become two different upstream names.
 */
static int
same_tool(const char *a, const char *b)
{
	return strcmp(a, b) == 0 || (strcasecmp(a, b) == 0 &&
	    tool_name_ok(a) && tool_name_ok(b));
}

static int
tool_declared(const char *const *names, size_t n, const char *name)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (same_tool(names[i], name))
			return 1;
	return 0;
}

/* Tool specs: names valid and unique; history names without a spec get
 * a placeholder, which the upstream insists on (§2.4). */
static int
lint_tools(struct build *bd, struct qerr *e)
{
	struct qreq	*q = bd->b_q;
	const char	**names = NULL, **used = NULL;
	struct turn	*t;
	struct qmsg	*m;
	struct qpart	*p;
	size_t		 i, nused = 0, cap = 0;
	int		 rv = -1;

	if ((names = calloc(q->q_ntools + 1, sizeof(*names))) == NULL)
		goto nomem;
	for (i = 0; i < q->q_ntools; i++) {
		if (q->q_tools[i].qt_name == NULL ||
		    q->q_tools[i].qt_name[0] == '\0') {
			qerr_set(e, 400, qr_invalid, "tools[%zu]: name is "
			    "required", i);
			goto done;
		}
		names[i] = q->q_tools[i].qt_name;
	}
	if (q->q_ntools > 1)
		qsort(names, q->q_ntools, sizeof(*names), cmp_names);
	for (i = 1; i < q->q_ntools; i++) {
		if (strcmp(names[i - 1], names[i]) == 0) {
			qerr_set(e, 400, qr_invalid, "tools: the name "
			    "\"%.64s\" is used twice", names[i]);
			goto done;
		}
	}
	for (t = bd->b_turns; t < bd->b_turns + bd->b_nturns; t++) {
		if (t->t_nuses == 0)
			continue;
		TURN_PARTS(q, t, m, p) {
			if (p->qp_kind != QP_TOOL_USE)
				continue;
			if (tool_declared(names, q->q_ntools, p->qp_tool_name))
				continue;
			if (nused == cap && grow(&used, nused, &cap,
			    sizeof(*used)) == -1)
				goto nomem;
			used[nused++] = p->qp_tool_name;
		}
	}
	if (nused > 0) {
		/* names the same but for case sit together, exact
		 * duplicates next to each other */
		qsort(used, nused, sizeof(*used), cmp_names);
		for (i = 0; i < nused; i++)
			if (bd->b_nplace == 0 || !same_tool(used[i],
			    used[bd->b_nplace - 1]))
				used[bd->b_nplace++] = used[i];
		bd->b_place = used;
		used = NULL;
	}
	rv = 0;
	goto done;
 nomem:
	qerr_nomem(e);
 done:
	free(names);
	free(used);
	return rv;
}

/* §2.7: the thinking tags, then the system text. */
static int
build_prefix(struct build *bd)
{
	struct qreq	*q = bd->b_q;
	struct buf	*b = &bd->b_prefix;
	int		 n, rv = 0;

	if (q->q_thinking == QTH_ENABLED) {
		n = q->q_thinking_budget > 0 ? q->q_thinking_budget :
		    QR_THINK_DEFAULT;
		if (n < QR_THINK_MIN)
			n = QR_THINK_MIN;
		if (n > QR_THINK_MAX)
			n = QR_THINK_MAX;
		rv |= buf_printf(b, "<thinking_mode>enabled</thinking_mode>"
		    "<max_thinking_length>%d</max_thinking_length>", n);
	} else if (q->q_thinking == QTH_ADAPTIVE) {
		rv |= buf_printf(b, "<thinking_mode>adaptive</thinking_mode>"
		    "<thinking_effort>%s</thinking_effort>",
		    q->q_effort != NULL && q->q_effort[0] != '\0' ?
		    q->q_effort : "high");
	}
	if (q->q_system.b_len > 0) {
		if (b->b_len > 0)
			rv |= buf_puts(b, "\n");
		rv |= buf_append(b, q->q_system.b_data, q->q_system.b_len);
	}
	/* The upstream has no tool_choice: say it in words instead. */
	if (q->q_ntools > 0 && q->q_tool_choice != QTC_AUTO) {
		if (b->b_len > 0)
			rv |= buf_puts(b, "\n\n");
		if (q->q_tool_choice == QTC_NONE)
			rv |= buf_puts(b, "Do not call any tool in this "
			    "response; answer with text only.");
		else if (q->q_tool_choice == QTC_ANY ||
		    q->q_tool_choice_name == NULL)
			rv |= buf_puts(b, "You must call at least one of the "
			    "available tools in this response.");
		else
			rv |= buf_printf(b, "You must call the tool \"%s\" in "
			    "this response.", q->q_tool_choice_name);
	}
	return rv;
}

/* ------------------------------------------------------------------ */
/* the writer                                                           */

static void
write_id(struct jw *w, const char *id)
{
	char	 s[QR_TOOL_NAME_MAX];

	jw_cstr(w, tool_name_up(id, s));
}

static void
write_result(struct jw *w, const char *id, const char *text, size_t len,
    int error)
{
	jw_lit(w, "{\"toolUseId\":");
	write_id(w, id);
	jw_lit(w, ",\"content\":[{\"text\":");
	jw_str(w, text != NULL ? text : "", text != NULL ? len : 0);
	jw_lit(w, error ? "}],\"status\":\"error\"}" :
	    "}],\"status\":\"success\"}");
}

static void
write_spec(struct jw *w, const char *name, const char *desc,
    struct json_object *schema, struct qreq *q)
{
	char		 s[QR_TOOL_NAME_MAX];
	const char	*up = tool_name_up(name, s);
	size_t		 n;

	if (up != name && tool_map_add(q, up, name) == -1)
		w->w_err = 1;
	if (desc == NULL || desc[0] == '\0')
		desc = name;
	n = strlen(desc);
	if (n > QR_DESC_MAX) {
		n = QR_DESC_MAX;
		while (n > 0 && ((unsigned char)desc[n] & 0xc0) == 0x80)
			n--;	/* not inside a UTF-8 sequence */
	}
	jw_lit(w, "{\"toolSpecification\":{\"name\":");
	jw_cstr(w, up);
	jw_lit(w, ",\"description\":");
	jw_str(w, desc, n);
	jw_lit(w, ",\"inputSchema\":{\"json\":");
	jw_json(w, schema != NULL && json_object_is_type(schema,
	    json_type_object) ? schema : NULL, empty_schema);
	jw_lit(w, "}}}");
}

/* A user turn; t NULL for the "Continue" after a prefill. */
static void
write_user(struct jw *w, struct build *bd, const struct turn *t,
    int first, int current)
{
	struct qreq	*q = bd->b_q;
	struct qmsg	*m;
	struct qpart	*p;
	size_t		 i, n = 0;
	int		 ctx;

	jw_lit(w, "{\"userInputMessage\":{\"content\":\"");
	if (first && bd->b_prefix.b_len > 0) {
		jw_esc(w, bd->b_prefix.b_data, bd->b_prefix.b_len);
		jw_esc(w, "\n\n", 2);
	}
	if (t != NULL && t->t_ntext > 0) {
		TURN_PARTS(q, t, m, p) {
			if (p->qp_kind != QP_TEXT || p->qp_text_len == 0)
				continue;
			if (n++ > 0)
				jw_esc(w, "\n\n", 2);
			jw_esc(w, p->qp_text, p->qp_text_len);
		}
	} else if (t != NULL && t->t_nresults + t->t_nmiss > 0)
		jw_lit(w, "Tool results provided.");
	else
		jw_lit(w, "Continue");
	jw_lit(w, "\"");

	ctx = (t != NULL && t->t_nresults + t->t_nmiss > 0) ||
	    (current && q->q_ntools + bd->b_nplace > 0);
	if (ctx)
		jw_lit(w, ",\"userInputMessageContext\":{");
	if (t != NULL && t->t_nresults + t->t_nmiss > 0) {
		jw_lit(w, "\"toolResults\":[");
		n = 0;
		TURN_PARTS(q, t, m, p) {
			if (p->qp_kind != QP_TOOL_RESULT)
				continue;
			if (n++ > 0)
				jw_lit(w, ",");
			write_result(w, p->qp_tool_id, p->qp_text,
			    p->qp_text_len, p->qp_tool_error);
		}
		for (i = 0; i < t->t_nmiss; i++) {
			if (n++ > 0)
				jw_lit(w, ",");
			write_result(w, bd->b_missing[t->t_miss + i]->qp_tool_id,
			    no_result, sizeof(no_result) - 1, 1);
		}
		jw_lit(w, "]");
	}
	if (current && q->q_ntools + bd->b_nplace > 0) {
		if (t != NULL && t->t_nresults + t->t_nmiss > 0)
			jw_lit(w, ",");
		jw_lit(w, "\"tools\":[");
		for (i = 0; i < q->q_ntools; i++) {
			if (i > 0)
				jw_lit(w, ",");
			write_spec(w, q->q_tools[i].qt_name,
			    q->q_tools[i].qt_description,
			    q->q_tools[i].qt_schema, q);
		}
		for (i = 0; i < bd->b_nplace; i++) {
			if (i > 0 || q->q_ntools > 0)
				jw_lit(w, ",");
			write_spec(w, bd->b_place[i], placeholder_desc, NULL, q);
		}
		jw_lit(w, "]");
	}
	if (ctx)
		jw_lit(w, "}");

	if (t != NULL && t->t_nimages > 0) {
		jw_lit(w, ",\"images\":[");
		n = 0;
		TURN_PARTS(q, t, m, p) {
			if (p->qp_kind != QP_IMAGE)
				continue;
			if (n++ > 0)
				jw_lit(w, ",");
			jw_lit(w, "{\"format\":\"");
			jw_lit(w, p->qp_image_format);
			jw_lit(w, "\",\"source\":{\"bytes\":\"");
			jw_raw(w, p->qp_image_b64, p->qp_image_len);
			jw_lit(w, "\"}}");
		}
		jw_lit(w, "]");
	}
	jw_lit(w, ",\"modelId\":");
	jw_cstr(w, q->q_upstream_model);
	jw_lit(w, ",\"origin\":\"" QR_ORIGIN "\"}}");
}

static void
write_assistant(struct jw *w, struct build *bd, const struct turn *t)
{
	struct qreq	*q = bd->b_q;
	struct qmsg	*m;
	struct qpart	*p;
	char		 s[QR_TOOL_NAME_MAX];
	const char	*up;
	size_t		 n = 0;

	jw_lit(w, "{\"assistantResponseMessage\":{\"content\":\"");
	TURN_PARTS(q, t, m, p) {
		if (p->qp_kind != QP_THINKING || p->qp_text_len == 0)
			continue;
		jw_lit(w, "<thinking>");
		jw_esc(w, p->qp_text, p->qp_text_len);
		jw_lit(w, "</thinking>\\n\\n");
	}
	TURN_PARTS(q, t, m, p) {
		if (p->qp_kind != QP_TEXT || p->qp_text_len == 0)
			continue;
		if (n++ > 0)
			jw_esc(w, "\n\n", 2);
		jw_esc(w, p->qp_text, p->qp_text_len);
	}
	jw_lit(w, "\"");
	if (t->t_nuses > 0) {
		jw_lit(w, ",\"toolUses\":[");
		n = 0;
		TURN_PARTS(q, t, m, p) {
			if (p->qp_kind != QP_TOOL_USE)
				continue;
			if (n++ > 0)
				jw_lit(w, ",");
			jw_lit(w, "{\"toolUseId\":");
			write_id(w, p->qp_tool_id);
			jw_lit(w, ",\"name\":");
			up = tool_name_up(p->qp_tool_name, s);
			if (up != p->qp_tool_name && tool_map_add(q, up,
			    p->qp_tool_name) == -1)
				w->w_err = 1;
			jw_cstr(w, up);
			jw_lit(w, ",\"input\":");
			jw_json(w, p->qp_tool_input, "{}");
			jw_lit(w, "}");
		}
		jw_lit(w, "]");
	}
	jw_lit(w, "}}");
}

static void
build_free(struct build *bd)
{
	free(bd->b_turns);
	free(bd->b_missing);
	free(bd->b_place);
	buf_free(&bd->b_prefix);
}

int
qreq_build(struct qreq *q, const struct config *cf, const char *profile_arn,
    struct buf *out, struct qerr *e)
{
	struct build	 bd;
	struct jw	 w = { out, 0 };
	char		 uuid[37];
	size_t		 start = out->b_len, i, nhist;
	int		 rv = -1;

	memset(&bd, 0, sizeof(bd));
	bd.b_q = q;
	buf_init(&bd.b_prefix);
	if (q->q_model == NULL || q->q_model[0] == '\0') {
		qerr_set(e, 400, qr_invalid, "model: required");
		goto done;
	}
	if (qreq_model_resolve(cf, q->q_model, q->q_upstream_model,
	    sizeof(q->q_upstream_model)) == -1) {
		qerr_set(e, 400, qr_invalid, "model: unknown model \"%.100s\"",
		    q->q_model);
		goto done;
	}
	if (build_turns(&bd, e) == -1 || lint(&bd, e) == -1 ||
	    lint_tools(&bd, e) == -1)
		goto done;
	if (build_prefix(&bd) == -1 || uuid4(uuid) == -1) {
		qerr_nomem(e);
		goto done;
	}
	if (buf_reserve(out, bd.b_size + q->q_system.b_len + 4096) == -1) {
		qerr_nomem(e);
		goto done;
	}

	jw_lit(&w, "{\"conversationState\":{\"conversationId\":\"");
	jw_lit(&w, uuid);
	jw_lit(&w, "\",\"chatTriggerType\":\"MANUAL\","
	    "\"agentTaskType\":\"vibe\",\"currentMessage\":");
	nhist = bd.b_prefill ? bd.b_nturns : bd.b_nturns - 1;
	if (bd.b_prefill)
		write_user(&w, &bd, NULL, 0, 1);
	else
		write_user(&w, &bd, &bd.b_turns[nhist], nhist == 0, 1);
	if (nhist > 0) {
		jw_lit(&w, ",\"history\":[");
		for (i = 0; i < nhist; i++) {
			if (i > 0)
				jw_lit(&w, ",");
			if (bd.b_turns[i].t_role == QROLE_USER)
				write_user(&w, &bd, &bd.b_turns[i], i == 0, 0);
			else
				write_assistant(&w, &bd, &bd.b_turns[i]);
		}
		jw_lit(&w, "]");
	}
	jw_lit(&w, "}");
	if (profile_arn != NULL && profile_arn[0] != '\0') {
		jw_lit(&w, ",\"profileArn\":");
		jw_cstr(&w, profile_arn);
	}
	jw_lit(&w, "}");
	if (w.w_err) {
		qerr_nomem(e);
		goto done;
	}
	rv = 0;
 done:
	if (rv == -1 && out->b_len > start) {
		out->b_len = start;
		out->b_data[start] = '\0';
	}
	build_free(&bd);
	return rv;
}

/* ------------------------------------------------------------------ */
/* token counting                                                       */

static int64_t
count_json(struct json_object *o)
{
	const char	*s;
	size_t		 n;

	if (o == NULL)
		return 0;
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	return s != NULL ? tokens_count(s, n) : 0;
}

/* What the model reads: the system text, every text, thinking and
 * result, the calls with their inputs, the tool specs; an image counts
 * as much as a full-size one does. At least 1, as count_tokens says. */
int64_t
qreq_count_tokens(const struct qreq *q)
{
	const struct qmsg	*m;
	const struct qpart	*p;
	const struct qtool	*t;
	int64_t			 n = 0;
	size_t			 i, j;

	if (q->q_system.b_len > 0)
		n += tokens_count(q->q_system.b_data, q->q_system.b_len);
	for (i = 0; i < q->q_nmsgs; i++) {
		m = &q->q_msgs[i];
		for (j = 0; j < m->qm_nparts; j++) {
			p = &m->qm_parts[j];
			switch (p->qp_kind) {
			case QP_TEXT:
			case QP_THINKING:
			case QP_TOOL_RESULT:
				if (p->qp_text != NULL && p->qp_text_len > 0)
					n += tokens_count(p->qp_text,
					    p->qp_text_len);
				break;
			case QP_TOOL_USE:
				if (p->qp_tool_name != NULL)
					n += tokens_count(p->qp_tool_name,
					    strlen(p->qp_tool_name));
				n += count_json(p->qp_tool_input);
				break;
			case QP_IMAGE:
				n += QR_IMAGE_TOKENS;
				break;
			}
		}
	}
	for (i = 0; i < q->q_ntools; i++) {
		t = &q->q_tools[i];
		if (t->qt_name != NULL)
			n += tokens_count(t->qt_name, strlen(t->qt_name));
		if (t->qt_description != NULL)
			n += tokens_count(t->qt_description,
			    strlen(t->qt_description));
		n += count_json(t->qt_schema);
	}
	return n > 0 ? n : 1;
}

/*
 * Once the upstream has the request, only what the answer needs stays:
 * the client's model name and the tool name map. The parsed body, the
 * messages and the tools go, so a long stream holds a few hundred bytes
 * of its request instead of all of it.
 */
int
qreq_shed(struct qreq *q)
{
	char	*model = NULL;
	size_t	 i;

	/* the model may point into what goes: copy it out first */
	if (q->q_model != NULL && (model = strdup(q->q_model)) == NULL)
		return -1;
	if (q->q_root != NULL)
		json_object_put(q->q_root);
	q->q_root = NULL;
	for (i = 0; i < q->q_nowned; i++)
		free(q->q_owned[i]);
	free(q->q_owned);
	q->q_owned = NULL;
	q->q_nowned = q->q_owned_cap = 0;
	for (i = 0; i < q->q_nmsgs; i++)
		free(q->q_msgs[i].qm_parts);
	free(q->q_msgs);
	q->q_msgs = NULL;
	q->q_nmsgs = q->q_msgs_cap = 0;
	free(q->q_tools);
	q->q_tools = NULL;
	q->q_ntools = q->q_tools_cap = 0;
	q->q_tool_choice_name = q->q_effort = NULL;
	buf_free(&q->q_system);
	q->q_model = NULL;
	if (model != NULL) {
		q->q_model = qreq_strdup(q, model, strlen(model));
		free(model);
		if (q->q_model == NULL)
			return -1;
	}
	return 0;
}

/* The renderers' state (openai.c, anthropic.c) is freed the same way. */
void
render_free(struct render *rd)
{
	buf_free(&rd->rd_text);
	buf_free(&rd->rd_thinking);
	buf_free(&rd->rd_args);
	if (rd->rd_acc != NULL)
		json_object_put(rd->rd_acc);
	rd->rd_acc = NULL;
}
