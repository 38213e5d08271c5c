/*
 * fuzz_request.c - libFuzzer target for the request path: openai.c,
 * anthropic.c and qreq.c. The input is a client body, given to both
 * parsers as it is. A body that parses is counted (qreq_count_tokens)
 * and built (qreq_build); a build is answered by both renderers,
 * streaming and not, with a made-up upstream answer that calls the
 * request's own tools by their upstream names, so that the names are
 * mapped back. Which answer (tools, a cut, an error, nothing) comes from
 * a hash of the input.
 *
 * Checked with abort(): a refusal carries a 4xx/5xx status, a type and
 * a message, and a failed build leaves the output as it was; a build is
 * strict JSON (and UTF-8) with conversationState.currentMessage.
 * userInputMessage.content a string, a history alternating user and
 * assistant, valid tool names and ids, every call answered by the next
 * user turn and declared in tools; rendered output is JSON (or SSE
 * carrying JSON) naming the tools by the client's names. Leaks are
 * LeakSanitizer's, at every input and at exit.
 *
 * QR_FUZZ_SKIP="utf8,undeclared" turns off the UTF-8 check of the
 * upstream body and the declared-tools check (both found bugs once, now
 * fixed; seeds-request/crash-* replay them); QR_FUZZ_VERBOSE=1 prints
 * what became of each input, for choosing seeds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qrelayd.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int	 LLVMFuzzerInitialize(int *, char ***);
const char *__ubsan_default_options(void);

/* Undefined behaviour is a finding, not a warning to scroll past. */
const char *
__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

#define PARSE_DEPTH	512	/* the output nests deeper than the input */
#define MAX_CALLS	3	/* tool calls in the made-up answer */
#define TOOL_NAME_MAX	64

static struct config	 cf;
static int		 skip_utf8;	/* QR_FUZZ_SKIP=utf8 */
static int		 skip_undeclared; /* QR_FUZZ_SKIP=undeclared */
static int		 verbose;	/* QR_FUZZ_VERBOSE=1 */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char	*s;

	config_defaults(&cf);
	/* a pattern and an exact name, as an operator might add */
	strlcpy_qr(cf.cf_models[0].cm_match, "my-*",
	    sizeof(cf.cf_models[0].cm_match));
	strlcpy_qr(cf.cf_models[0].cm_id, "claude-sonnet-4.5",
	    sizeof(cf.cf_models[0].cm_id));
	strlcpy_qr(cf.cf_models[1].cm_match, "gpt-4o",
	    sizeof(cf.cf_models[1].cm_match));
	strlcpy_qr(cf.cf_models[1].cm_id, "claude-haiku-4.5",
	    sizeof(cf.cf_models[1].cm_id));
	cf.cf_nmodels = 2;
	/* the renderers warn about odd arguments; not on the terminal */
	if (log_open_file("/dev/null") == -1)
		abort();
	if (tokens_init() == -1)
		abort();
	/* QR_FUZZ_SKIP="utf8,undeclared" runs past known findings */
	if ((s = getenv("QR_FUZZ_SKIP")) != NULL) {
		skip_utf8 = strstr(s, "utf8") != NULL;
		skip_undeclared = strstr(s, "undeclared") != NULL;
	}
	/* QR_FUZZ_VERBOSE=1 says what became of each input (seed triage) */
	verbose = (s = getenv("QR_FUZZ_VERBOSE")) != NULL && s[0] == '1';
	return 0;
}

/* ------------------------------------------------------------------ */
/* helpers                                                              */

/* s[0..n) as exactly one strict JSON value, or NULL. */
static struct json_object *
parse_exact(const char *s, size_t n)
{
	struct json_tokener	*tok;
	struct json_object	*o;

	if (n > INT_MAX || (tok = json_tokener_new_ex(PARSE_DEPTH)) == NULL)
		abort();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != n)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

static struct json_object *
get(struct json_object *o, const char *key, enum json_type t)
{
	struct json_object	*v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, t))
		return NULL;
	return v;
}

/* As get, but the member must be there. */
static struct json_object *
need(struct json_object *o, const char *key, enum json_type t)
{
	struct json_object	*v;

	if ((v = get(o, key, t)) == NULL)
		abort();
	return v;
}

static const char *
need_str(struct json_object *o, const char *key)
{
	return json_object_get_string(need(o, key, json_type_string));
}

/* The upstream's ToolName / ToolUseId: [a-zA-Z0-9_-]{1,64}. */
static int
name_ok(const char *s)
{
	size_t	 i;

	for (i = 0; s[i] != '\0'; i++) {
		if (i >= TOOL_NAME_MAX)
			return 0;
		if (!(s[i] >= 'a' && s[i] <= 'z') &&
		    !(s[i] >= 'A' && s[i] <= 'Z') &&
		    !(s[i] >= '0' && s[i] <= '9') && s[i] != '_' && s[i] != '-')
			return 0;
	}
	return i > 0;
}

static void
need_name(struct json_object *o, const char *key)
{
	if (!name_ok(need_str(o, key)))
		abort();
}

/* RFC 3629 UTF-8. */
static int
utf8_ok(const unsigned char *p, size_t n)
{
	size_t		 i = 0, k, j;
	unsigned char	 lo, hi;

	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xbf;
		if (p[i] >= 0xc2 && p[i] <= 0xdf)
			k = 2;
		else if (p[i] >= 0xe0 && p[i] <= 0xef) {
			k = 3;
			if (p[i] == 0xe0)
				lo = 0xa0;
			if (p[i] == 0xed)
				hi = 0x9f;
		} else if (p[i] >= 0xf0 && p[i] <= 0xf4) {
			k = 4;
			if (p[i] == 0xf0)
				lo = 0x90;
			if (p[i] == 0xf4)
				hi = 0x8f;
		} else
			return 0;
		if (n - i < k || p[i + 1] < lo || p[i + 1] > hi)
			return 0;
		for (j = 2; j < k; j++)
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
		i += k;
	}
	return 1;
}

static size_t
ncodepoints(const char *s)
{
	size_t	 n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

static void
check_err(const struct qerr *e)
{
	if (e->qe_status < 400 || e->qe_status > 599 ||
	    e->qe_type[0] == '\0' || e->qe_msg[0] == '\0' ||
	    memchr(e->qe_type, '\0', sizeof(e->qe_type)) == NULL ||
	    memchr(e->qe_msg, '\0', sizeof(e->qe_msg)) == NULL)
		abort();
}

/* ------------------------------------------------------------------ */
/* the upstream body                                                    */

/* A user message; its toolResults ids go to ids[] (*n of them). */
static void
check_user(struct json_object *m, const char *model, const char **ids,
    size_t *n, size_t max)
{
	struct json_object	*u, *ctx, *a, *r, *c, *img;
	const char		*s;
	size_t			 i, len;

	u = need(m, "userInputMessage", json_type_object);
	need(u, "content", json_type_string);
	if (strcmp(need_str(u, "modelId"), model) != 0)
		abort();
	need(u, "origin", json_type_string);
	*n = 0;
	if ((ctx = get(u, "userInputMessageContext", json_type_object)) !=
	    NULL) {
		if (json_object_object_length(ctx) == 0)
			abort();
		if ((a = get(ctx, "toolResults", json_type_array)) != NULL) {
			len = json_object_array_length(a);
			if (len == 0)
				abort();
			for (i = 0; i < len; i++) {
				r = json_object_array_get_idx(a, i);
				need_name(r, "toolUseId");
				s = need_str(r, "status");
				if (strcmp(s, "success") != 0 &&
				    strcmp(s, "error") != 0)
					abort();
				c = need(r, "content", json_type_array);
				if (json_object_array_length(c) == 0)
					abort();
				need(json_object_array_get_idx(c, 0), "text",
				    json_type_string);
				if (*n == max)
					abort();
				ids[(*n)++] = need_str(r, "toolUseId");
			}
		}
	}
	if ((a = get(u, "images", json_type_array)) != NULL) {
		len = json_object_array_length(a);
		if (len == 0)
			abort();
		for (i = 0; i < len; i++) {
			img = json_object_array_get_idx(a, i);
			s = need_str(img, "format");
			if (strcmp(s, "png") != 0 && strcmp(s, "jpeg") != 0 &&
			    strcmp(s, "gif") != 0 && strcmp(s, "webp") != 0)
				abort();
			need(need(img, "source", json_type_object), "bytes",
			    json_type_string);
		}
	}
}

static int
has_id(const char **ids, size_t n, const char *id)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(ids[i], id) == 0)
			return 1;
	return 0;
}

/*
 * The body qreq_build wrote, against what the upstream takes (§2) and
 * what qreq.c promises: turns alternate, each call is answered by the
 * next user turn and by nothing else, ids are unique, and every name a
 * call uses is declared in currentMessage's tools (case aside, as
 * kiro.rs compares them).
 */
static void
check_build(const struct qreq *q, const char *body, size_t len,
    const char *arn)
{
	struct json_object	*root, *cs, *cur, *u, *ctx, *tools, *hist, *h;
	struct json_object	*a, *tu, *spec;
	const char		**uses, **res, **all, **names;
	const char		*model = q->q_upstream_model;
	size_t			 nuses = 0, nres = 0, nall = 0, nnames = 0, max;
	size_t			 i, j, k, nh, nt;

	if (!skip_utf8 && !utf8_ok((const unsigned char *)body, len))
		abort();
	if ((root = parse_exact(body, len)) == NULL ||
	    !json_object_is_type(root, json_type_object))
		abort();
	if (arn != NULL && strcmp(need_str(root, "profileArn"), arn) != 0)
		abort();
	if (arn == NULL && get(root, "profileArn", json_type_string) != NULL)
		abort();
	if (model[0] == '\0')
		abort();
	cs = need(root, "conversationState", json_type_object);
	if (strlen(need_str(cs, "conversationId")) != 36)
		abort();
	if (strcmp(need_str(cs, "chatTriggerType"), "MANUAL") != 0)
		abort();
	cur = need(cs, "currentMessage", json_type_object);
	/* the invariant the brief names, spelled out */
	u = need(cur, "userInputMessage", json_type_object);
	need(u, "content", json_type_string);

	/* room for every id: no more than the body has bytes / 10 */
	max = len / 10 + 1;
	uses = calloc(max, sizeof(*uses));
	res = calloc(max, sizeof(*res));
	all = calloc(max, sizeof(*all));
	names = calloc(max, sizeof(*names));
	if (uses == NULL || res == NULL || all == NULL || names == NULL)
		abort();

	/* the tools declared */
	if ((ctx = get(u, "userInputMessageContext", json_type_object)) !=
	    NULL && (tools = get(ctx, "tools", json_type_array)) != NULL) {
		nt = json_object_array_length(tools);
		if (nt == 0)
			abort();
		for (i = 0; i < nt; i++) {
			spec = need(json_object_array_get_idx(tools, i),
			    "toolSpecification", json_type_object);
			need_name(spec, "name");
			/* 1-10240 characters (code points, as Smithy
			 * counts; a bad byte became one U+FFFD) */
			if (ncodepoints(need_str(spec, "description")) == 0 ||
			    ncodepoints(need_str(spec, "description")) > 10240)
				abort();
			need(need(spec, "inputSchema", json_type_object),
			    "json", json_type_object);
			if (nnames == max)
				abort();
			names[nnames++] = need_str(spec, "name");
		}
	}

	/* history: user, assistant, user, ..., assistant; then current */
	nh = 0;
	if ((hist = get(cs, "history", json_type_array)) != NULL) {
		nh = json_object_array_length(hist);
		if (nh == 0 || nh % 2 != 0)
			abort();
	} else if (json_object_object_get_ex(cs, "history", NULL))
		abort();
	for (i = 0; i <= nh; i++) {
		h = i < nh ? json_object_array_get_idx(hist, i) : cur;
		if (json_object_object_length(h) != 1)
			abort();
		if (i % 2 == 0) {
			check_user(h, model, res, &nres, max);
			/* the results answer the calls just before, all */
			if (nres != nuses)
				abort();
			for (j = 0; j < nres; j++)
				if (!has_id(uses, nuses, res[j]) ||
				    has_id(res, j, res[j]))
					abort();
			nuses = 0;
			continue;
		}
		a = need(h, "assistantResponseMessage", json_type_object);
		need(a, "content", json_type_string);
		if ((tu = get(a, "toolUses", json_type_array)) == NULL) {
			if (json_object_object_get_ex(a, "toolUses", NULL))
				abort();
			continue;
		}
		if ((k = json_object_array_length(tu)) == 0)
			abort();
		for (j = 0; j < k; j++) {
			h = json_object_array_get_idx(tu, j);
			need_name(h, "toolUseId");
			need_name(h, "name");
			need(h, "input", json_type_object);
			if (has_id(all, nall, need_str(h, "toolUseId")))
				abort();	/* ids are unique */
			if (nall == max || nuses == max)
				abort();
			all[nall++] = uses[nuses++] = need_str(h, "toolUseId");
			for (nt = 0; nt < nnames; nt++)
				if (strcasecmp(names[nt], need_str(h,
				    "name")) == 0)
					break;
			if (nt == nnames && !skip_undeclared)
				abort();	/* a call of an undeclared tool */
		}
	}
	free(uses);
	free(res);
	free(all);
	free(names);
	json_object_put(root);
}

/* ------------------------------------------------------------------ */
/* the answer                                                           */

struct answer {
	const char	*a_up[MAX_CALLS];	/* upstream names called */
	const char	*a_client[MAX_CALLS];	/* what the client must see */
	int		 a_ncalls;
	int		 a_variant;
};

enum { V_TOOLS, V_CUT, V_ERROR, V_EMPTY, V_NVARIANTS };

/* Calls of the request's tools: renamed ones first (the mapping back is
 * what is fuzzed), then declared ones, then one nobody declared. */
static void
answer_plan(const struct qreq *q, uint32_t h, struct answer *an)
{
	size_t	 i;

	memset(an, 0, sizeof(*an));
	an->a_variant = (int)(h % V_NVARIANTS);
	for (i = 0; i < q->q_ntool_map && an->a_ncalls < MAX_CALLS; i++) {
		/* the map: valid upstream names of names that were not */
		if (!name_ok(q->q_tool_map[2 * i]) ||
		    name_ok(q->q_tool_map[2 * i + 1]) ||
		    strcmp(qreq_tool_client_name(q, q->q_tool_map[2 * i]),
		    q->q_tool_map[2 * i + 1]) != 0)
			abort();
		an->a_up[an->a_ncalls] = q->q_tool_map[2 * i];
		an->a_client[an->a_ncalls++] = q->q_tool_map[2 * i + 1];
	}
	for (i = 0; i < q->q_ntools && an->a_ncalls < MAX_CALLS; i++) {
		if (!name_ok(q->q_tools[i].qt_name))
			continue;
		an->a_up[an->a_ncalls] = q->q_tools[i].qt_name;
		an->a_client[an->a_ncalls++] = qreq_tool_client_name(q,
		    q->q_tools[i].qt_name);
	}
	if (an->a_ncalls < MAX_CALLS) {
		an->a_up[an->a_ncalls] = "no_such_tool";
		an->a_client[an->a_ncalls++] = qreq_tool_client_name(q,
		    "no_such_tool");
	}
}

static void
emit(struct render *rd, const struct qev *ev, struct buf *out)
{
	int	 rc;

	rc = rd->rd_api == API_OPENAI ? openai_render_event(rd, ev, out) :
	    anthropic_render_event(rd, ev, out);
	if (rc != 0)
		abort();
}

static void
ev_text(struct render *rd, int type, const char *s, struct buf *out)
{
	struct qev	 ev;

	memset(&ev, 0, sizeof(ev));
	ev.qv_type = type;
	ev.qv_text = s;
	ev.qv_len = strlen(s);
	ev.qv_tool_index = -1;
	emit(rd, &ev, out);
}

/* Plays the answer; returns the number of calls started and the stop. */
static int
answer_play(struct render *rd, const struct answer *an, struct buf *out,
    int *stop)
{
	static const char *const ids[MAX_CALLS] = { "tooluse_0",
	    "tooluse_1", "tooluse_2" };
	static const char *const args[] = { "{\"path\":", "\"a \\u00e9\"",
	    "}" };
	struct qev	 ev;
	int		 i, started = 0;
	size_t		 j;

	if (rd->rd_api == API_OPENAI) {
		if (openai_render_start(rd, out) != 0 ||
		    openai_render_ping(rd, out) != 0)
			abort();
	} else if (anthropic_render_start(rd, out) != 0 ||
	    anthropic_render_ping(rd, out) != 0)
		abort();
	*stop = QSTOP_END_TURN;
	if (an->a_variant == V_EMPTY)
		return 0;
	ev_text(rd, QEV_THINKING, "Let me look.", out);
	ev_text(rd, QEV_TEXT, "Sure \"x\" \xc3\xa9\n", out);
	for (i = 0; i < an->a_ncalls; i++) {
		memset(&ev, 0, sizeof(ev));
		ev.qv_type = QEV_TOOL_START;
		ev.qv_tool_id = ids[i];
		ev.qv_tool_name = an->a_up[i];
		ev.qv_tool_index = i;
		emit(rd, &ev, out);
		started++;
		for (j = 0; j < nitems(args); j++) {
			if (an->a_variant == V_CUT && i == an->a_ncalls - 1 &&
			    j == 1)
				break;
			ev.qv_type = QEV_TOOL_ARGS;
			ev.qv_text = args[j];
			ev.qv_len = strlen(args[j]);
			emit(rd, &ev, out);
		}
		if (an->a_variant == V_CUT && i == an->a_ncalls - 1) {
			*stop = QSTOP_MAX_TOKENS;
			return started;
		}
		ev.qv_type = QEV_TOOL_STOP;
		ev.qv_text = NULL;
		ev.qv_len = 0;
		emit(rd, &ev, out);
		if (an->a_variant == V_ERROR) {
			memset(&ev, 0, sizeof(ev));
			ev.qv_type = QEV_ERROR;
			ev.qv_status = 429;
			ev.qv_err_type = "rate_limit_error";
			ev.qv_err_msg = "Too many requests";
			ev.qv_tool_index = -1;
			emit(rd, &ev, out);
			/* nothing after an error may show */
			ev_text(rd, QEV_TEXT, "AFTER-ERROR", out);
			*stop = QSTOP_ERROR;
			return started;
		}
	}
	*stop = QSTOP_TOOL_USE;
	return started;
}

/* A tool name the client saw: it must be the planned one. */
static void
saw_tool(const struct answer *an, int *nseen, const char *name)
{
	if (*nseen >= an->a_ncalls || name == NULL ||
	    strcmp(name, an->a_client[*nseen]) != 0)
		abort();
	(*nseen)++;
}

/* OpenAI SSE: data lines of JSON, ": ping", [DONE] last unless an
 * error line ended it. */
static void
check_openai_stream(const struct answer *an, int started, const char *s,
    size_t len)
{
	struct json_object	*o, *ch, *d, *tcs, *tc, *fn;
	const char		*p = s, *end = s + len, *sep, *nm;
	int			 nseen = 0, done = 0, err = 0;

	while (p < end) {
		if ((sep = memmem(p, (size_t)(end - p), "\n\n", 2)) == NULL)
			abort();	/* every event ends with a blank line */
		if (done || err)
			abort();	/* nothing after [DONE] or an error */
		if ((size_t)(sep - p) == 6 && memcmp(p, ": ping", 6) == 0) {
			p = sep + 2;
			continue;
		}
		if (sep - p < 6 || memcmp(p, "data: ", 6) != 0)
			abort();
		p += 6;
		if (sep - p == 6 && memcmp(p, "[DONE]", 6) == 0) {
			done = 1;
			p = sep + 2;
			continue;
		}
		if ((o = parse_exact(p, (size_t)(sep - p))) == NULL)
			abort();
		if (get(o, "error", json_type_object) != NULL) {
			need_str(need(o, "error", json_type_object), "message");
			err = 1;
		} else {
			ch = need(o, "choices", json_type_array);
			if (json_object_array_length(ch) > 0 &&
			    (d = get(json_object_array_get_idx(ch, 0), "delta",
			    json_type_object)) != NULL &&
			    (tcs = get(d, "tool_calls", json_type_array)) !=
			    NULL) {
				tc = json_object_array_get_idx(tcs, 0);
				fn = need(tc, "function", json_type_object);
				need(fn, "arguments", json_type_string);
				if (get(tc, "id", json_type_string) != NULL) {
					nm = need_str(fn, "name");
					saw_tool(an, &nseen, nm);
				}
			}
		}
		json_object_put(o);
		p = sep + 2;
	}
	if (nseen != started)
		abort();
	if (an->a_variant == V_ERROR ? (!err || done) : (err || !done))
		abort();
}

/* Anthropic SSE: "event: X\ndata: {"type":"X",...}", an error event
 * last when there is one. */
static void
check_anthropic_stream(const struct answer *an, int started,
    const char *s, size_t len)
{
	struct json_object	*o, *cb;
	const char		*p = s, *end = s + len, *sep, *nl;
	char			 ev[64];
	int			 nseen = 0, err = 0, stopped = 0;
	size_t			 n;

	while (p < end) {
		if ((sep = memmem(p, (size_t)(end - p), "\n\n", 2)) == NULL)
			abort();
		if (err || stopped)
			abort();
		if (memcmp(p, "event: ", 7) != 0 ||
		    (nl = memchr(p, '\n', (size_t)(sep - p))) == NULL)
			abort();
		n = (size_t)(nl - p - 7);
		if (n == 0 || n >= sizeof(ev))
			abort();
		memcpy(ev, p + 7, n);
		ev[n] = '\0';
		p = nl + 1;
		if (sep - p < 6 || memcmp(p, "data: ", 6) != 0)
			abort();
		p += 6;
		if ((o = parse_exact(p, (size_t)(sep - p))) == NULL)
			abort();
		if (strcmp(need_str(o, "type"), ev) != 0)
			abort();
		if (strcmp(ev, "error") == 0)
			err = 1;
		else if (strcmp(ev, "message_stop") == 0)
			stopped = 1;
		else if (strcmp(ev, "content_block_start") == 0) {
			cb = need(o, "content_block", json_type_object);
			if (strcmp(need_str(cb, "type"), "tool_use") == 0)
				saw_tool(an, &nseen, need_str(cb, "name"));
		}
		json_object_put(o);
		p = sep + 2;
	}
	if (nseen != started)
		abort();
	if (an->a_variant == V_ERROR ? (!err || stopped) : (err || !stopped))
		abort();
}

static void
check_openai_body(const struct answer *an, int started, int rc,
    const char *s, size_t len)
{
	struct json_object	*o, *m, *tcs, *fn;
	size_t			 i, n;
	int			 nseen = 0;

	if ((o = parse_exact(s, len)) == NULL)
		abort();
	if (an->a_variant == V_ERROR) {
		if (rc != 429)
			abort();
		need_str(need(o, "error", json_type_object), "message");
		json_object_put(o);
		return;
	}
	if (rc != 0)
		abort();
	m = need(json_object_array_get_idx(need(o, "choices",
	    json_type_array), 0), "message", json_type_object);
	if ((tcs = get(m, "tool_calls", json_type_array)) != NULL) {
		n = json_object_array_length(tcs);
		for (i = 0; i < n; i++) {
			fn = need(json_object_array_get_idx(tcs, i),
			    "function", json_type_object);
			need(fn, "arguments", json_type_string);
			saw_tool(an, &nseen, need_str(fn, "name"));
		}
	}
	if (nseen != started)
		abort();
	json_object_put(o);
}

static void
check_anthropic_body(const struct answer *an, int started, int rc,
    const char *s, size_t len)
{
	struct json_object	*o, *c, *b;
	size_t			 i, n;
	int			 nseen = 0;

	if ((o = parse_exact(s, len)) == NULL)
		abort();
	if (an->a_variant == V_ERROR) {
		if (rc != 429)
			abort();
		need_str(need(o, "error", json_type_object), "message");
		json_object_put(o);
		return;
	}
	if (rc != 0)
		abort();
	c = need(o, "content", json_type_array);
	n = json_object_array_length(c);
	if (n == 0)
		abort();
	for (i = 0; i < n; i++) {
		b = json_object_array_get_idx(c, i);
		if (strcmp(need_str(b, "type"), "tool_use") != 0)
			continue;
		need(b, "input", json_type_object);
		saw_tool(an, &nseen, need_str(b, "name"));
	}
	if (nseen != started)
		abort();
	json_object_put(o);
}

static void
render_one(const struct qreq *q, int api, int stream, int64_t tokens,
    const struct answer *an)
{
	struct render	 rd;
	struct buf	 out;
	int		 started, stop, rc;

	buf_init(&out);
	if (api == API_OPENAI)
		openai_render_init(&rd, q);
	else
		anthropic_render_init(&rd, q);
	rd.rd_stream = stream;
	rd.rd_usage.u_in = tokens;
	started = answer_play(&rd, an, &out, &stop);
	rd.rd_usage.u_out = 7;
	rc = api == API_OPENAI ? openai_render_finish(&rd, stop, &out) :
	    anthropic_render_finish(&rd, stop, &out);
	if (rc < 0)
		abort();
	if (stream && rc != 0)
		abort();
	if (stream && api == API_OPENAI)
		check_openai_stream(an, started, out.b_data, out.b_len);
	else if (stream)
		check_anthropic_stream(an, started, out.b_data, out.b_len);
	else if (api == API_OPENAI)
		check_openai_body(an, started, rc, out.b_data, out.b_len);
	else
		check_anthropic_body(an, started, rc, out.b_data, out.b_len);
	render_free(&rd);
	buf_free(&out);
}

/* ------------------------------------------------------------------ */

static void
one_api(int api, const uint8_t *data, size_t size, uint32_t h)
{
	static const char	 prefix[] = "PREFIX";
	struct qreq		 q;
	struct qerr		 e;
	struct answer		 an;
	struct buf		 out;
	const char		*arn;
	int64_t			 tokens;
	int			 rc;

	qreq_init(&q, api);
	memset(&e, 0, sizeof(e));
	rc = api == API_OPENAI ?
	    openai_parse(&q, (const char *)data, size, &e) :
	    anthropic_parse(&q, (const char *)data, size, &e);
	if (rc != 0) {
		if (rc != -1)
			abort();
		check_err(&e);
		if (verbose)
			fprintf(stderr, "%s: parse: %d %s: %s\n", api ==
			    API_OPENAI ? "openai" : "anthropic", e.qe_status,
			    e.qe_type, e.qe_msg);
		qreq_free(&q);
		return;
	}
	if (q.q_api != api || q.q_root == NULL || q.q_model == NULL)
		abort();
	if ((tokens = qreq_count_tokens(&q)) < 1)
		abort();

	/* a failed build leaves what was in the buffer before it */
	arn = h & 0x100 ? "arn:aws:codewhisperer:us-east-1:1:profile/P" :
	    NULL;
	buf_init(&out);
	if (buf_append(&out, prefix, sizeof(prefix) - 1) == -1)
		abort();
	memset(&e, 0, sizeof(e));
	rc = qreq_build(&q, &cf, arn, &out, &e);
	if (rc != 0) {
		if (rc != -1 || out.b_len != sizeof(prefix) - 1 ||
		    memcmp(out.b_data, prefix, out.b_len) != 0)
			abort();
		check_err(&e);
		if (verbose)
			fprintf(stderr, "%s: build: %d %s: %s\n", api ==
			    API_OPENAI ? "openai" : "anthropic", e.qe_status,
			    e.qe_type, e.qe_msg);
		buf_free(&out);
		qreq_free(&q);
		return;
	}
	if (out.b_len <= sizeof(prefix) - 1 ||
	    memcmp(out.b_data, prefix, sizeof(prefix) - 1) != 0)
		abort();
	check_build(&q, out.b_data + sizeof(prefix) - 1,
	    out.b_len - (sizeof(prefix) - 1), arn);
	if (verbose)
		fprintf(stderr, "%s: built %zu bytes, %lld tokens, %zu renamed "
		    "tools\n", api == API_OPENAI ? "openai" : "anthropic",
		    out.b_len - (sizeof(prefix) - 1), (long long)tokens,
		    q.q_ntool_map);
	buf_free(&out);

	/* the count does not change with the build */
	if (qreq_count_tokens(&q) != tokens)
		abort();

	answer_plan(&q, h, &an);
	render_one(&q, API_OPENAI, 1, tokens, &an);
	render_one(&q, API_OPENAI, 0, tokens, &an);
	render_one(&q, API_ANTHROPIC, 1, tokens, &an);
	render_one(&q, API_ANTHROPIC, 0, tokens, &an);
	qreq_free(&q);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t	 h = 2166136261u;	/* FNV-1a */
	size_t		 i;

	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	one_api(API_OPENAI, data, size, h);
	one_api(API_ANTHROPIC, data, size, h >> 9);
	return 0;
}
