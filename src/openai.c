/*
 * openai.c - the OpenAI Chat Completions face of the relay.
 *
 * A worker calls openai_parse on a /v1/chat/completions body to get the
 * API-neutral struct qreq that qreq_build turns into the upstream
 * request, and drives a struct render with the qev events the upstream
 * stream interpreter (eventstream.c) emits: chat.completion.chunk SSE
 * for streams, one chat.completion body otherwise. Nothing here does
 * I/O; bytes go to a struct buf the caller writes out.
 *
 * Strings of the parsed request stay borrowed from q_root. The one
 * place the tree is changed: a tool call's arguments arrive as a JSON
 * string, and the object parsed from it replaces that string in the
 * tree, so q_root owns it like everything else.
 *
 * Error streams: an ERROR event writes one data line {"error":{...}}
 * (the SDKs raise on it) and nothing follows, not even [DONE], so a
 * client that ignores the error line still sees an unfinished stream
 * rather than a clean end.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qrelayd.h"

#define OA_BAD_REQUEST	"invalid_request_error"
#define OA_STREAM_FAILED "the upstream stream failed"

/* Parse state across the messages array. */
struct oa_parse {
	ssize_t		 op_tool_msg;	/* user msg of the tool results just
					 * seen, -1: the last was no tool */
	const char	*op_legacy_id;	/* id given to the last function_call */
	unsigned	 op_nlegacy;
};

static int
oa_is(struct json_object *v, enum json_type t)
{
	return v != NULL && json_object_is_type(v, t);
}

/* An optional string member: *s NULL when absent; -1 when not a string. */
static int
oa_opt_str(struct json_object *o, const char *key, const char *path,
    const char **s, size_t *len, struct qerr *e)
{
	struct json_object	*v;

	*s = NULL;
	if (len)
		*len = 0;
	if ((v = qjson_get(o, key)) == NULL)
		return 0;
	if (!oa_is(v, json_type_string))
		return qerr_bad(e, "%s%s: expected a string", path, key);
	*s = json_object_get_string(v);
	if (len)
		*len = (size_t)json_object_get_string_len(v);
	return 0;
}

static int
oa_opt_bool(struct json_object *o, const char *key, const char *path,
    int *out, struct qerr *e)
{
	struct json_object	*v;

	if ((v = qjson_get(o, key)) == NULL)
		return 0;
	if (!oa_is(v, json_type_boolean))
		return qerr_bad(e, "%s%s: expected a boolean", path, key);
	*out = json_object_get_boolean(v);
	return 0;
}

/*
 * Text-only content (system, developer, assistant, tool): a string or an
 * array of text parts (and refusal parts for the assistant), joined with
 * "\n" when there are several. *out is NULL when content is absent.
 */
static int
oa_text_content(struct qreq *q, struct json_object *c, const char *path,
    int refusal_ok, const char **out, size_t *outlen, struct qerr *e)
{
	struct json_object	*part, *t;
	struct buf		 b;
	const char		*type, *first = NULL;
	size_t			 i, n, len, firstlen = 0, nseen = 0;
	int			 rc = -1;

	*out = NULL;
	*outlen = 0;
	if (c == NULL)
		return 0;
	if (oa_is(c, json_type_string)) {
		*out = json_object_get_string(c);
		*outlen = (size_t)json_object_get_string_len(c);
		return 0;
	}
	if (!oa_is(c, json_type_array))
		return qerr_bad(e, "%s: expected a string or an array of parts",
		    path);
	buf_init(&b);
	n = json_object_array_length(c);
	for (i = 0; i < n; i++) {
		part = json_object_array_get_idx(c, i);
		if (!oa_is(part, json_type_object)) {
			qerr_bad(e, "%s[%zu]: expected an object", path, i);
			goto done;
		}
		if (oa_opt_str(part, "type", "", &type, NULL, e) == -1)
			type = NULL;
		if (type == NULL || (strcmp(type, "text") != 0 &&
		    !(refusal_ok && strcmp(type, "refusal") == 0))) {
			qerr_bad(e, "%s[%zu].type: expected \"text\"%s", path, i,
			    refusal_ok ? " or \"refusal\"" : "");
			goto done;
		}
		t = qjson_get(part, type);
		if (!oa_is(t, json_type_string)) {
			qerr_bad(e, "%s[%zu].%s: expected a string", path, i,
			    type);
			goto done;
		}
		if ((len = (size_t)json_object_get_string_len(t)) == 0)
			continue;
		/* one part needs no copy; join only when there are more */
		if (nseen++ == 0) {
			first = json_object_get_string(t);
			firstlen = len;
			continue;
		}
		if ((b.b_len == 0 && buf_append(&b, first, firstlen) == -1) ||
		    buf_append(&b, "\n", 1) == -1 ||
		    buf_append(&b, json_object_get_string(t), len) == -1) {
			qerr_nomem(e);
			goto done;
		}
	}
	if (nseen == 1) {
		*out = first;
		*outlen = firstlen;
	} else if (nseen > 1) {
		if ((*out = qreq_strdup(q, b.b_data, b.b_len)) == NULL) {
			qerr_nomem(e);
			goto done;
		}
		*outlen = b.b_len;
	} else {
		*out = "";
	}
	rc = 0;
 done:
	buf_free(&b);
	return rc;
}

static int
oa_image(struct qreq *q, struct qmsg *m, struct json_object *part,
    const char *path, struct qerr *e)
{
	struct json_object	*iu, *u;
	struct qpart		*p;
	const char		*url, *comma, *semi, *fmt, *b64;
	size_t			 len, mlen;

	iu = qjson_get(part, "image_url");
	if (oa_is(iu, json_type_object))
		u = qjson_get(iu, "url");
	else
		u = iu;		/* some clients send the URL itself */
	if (!oa_is(u, json_type_string))
		return qerr_bad(e, "%s.image_url.url: expected a string", path);
	url = json_object_get_string(u);
	len = (size_t)json_object_get_string_len(u);
	if (strncasecmp(url, "http://", 7) == 0 ||
	    strncasecmp(url, "https://", 8) == 0)
		return qerr_bad(e, "%s.image_url.url: remote image URLs are not "
		    "supported (the upstream cannot fetch them); send a "
		    "data: URL with the base64 bytes", path);
	if (strncasecmp(url, "data:", 5) != 0)
		return qerr_bad(e, "%s.image_url.url: expected a data: URL", path);
	if ((comma = memchr(url, ',', len)) == NULL ||
	    comma - url < 12 ||
	    strncasecmp(comma - 7, ";base64", 7) != 0)
		return qerr_bad(e, "%s.image_url.url: expected "
		    "data:<media type>;base64,<data>", path);
	semi = memchr(url + 5, ';', (size_t)(comma - url - 5));
	mlen = (size_t)(semi - url - 5);
	if ((fmt = qreq_image_format(url + 5, mlen)) == NULL)
		return qerr_bad(e, "%s.image_url.url: unsupported image type "
		    "\"%.*s\" (png, jpeg, gif, webp)", path,
		    (int)(mlen > 64 ? 64 : mlen), url + 5);
	b64 = comma + 1;
	if (b64 == url + len)
		return qerr_bad(e, "%s.image_url.url: no image data", path);
	if ((p = qreq_add_part(q, m, QP_IMAGE)) == NULL)
		return qerr_nomem(e);
	p->qp_image_format = fmt;
	p->qp_image_b64 = b64;
	p->qp_image_len = (size_t)(url + len - b64);
	return 0;
}

static int
oa_user(struct qreq *q, struct json_object *msg, size_t i, struct qerr *e)
{
	struct json_object	*c, *part;
	struct qmsg		*m;
	struct qpart		*p;
	const char		*type;
	char			 path[64];
	size_t			 j, n;

	if ((m = qreq_add_msg(q, QROLE_USER)) == NULL)
		return qerr_nomem(e);
	if ((c = qjson_get(msg, "content")) == NULL)
		return qerr_bad(e, "messages[%zu].content: required", i);
	if (oa_is(c, json_type_string)) {
		if (json_object_get_string_len(c) == 0)
			return qerr_bad(e, "messages[%zu].content: empty", i);
		if ((p = qreq_add_part(q, m, QP_TEXT)) == NULL)
			return qerr_nomem(e);
		p->qp_text = json_object_get_string(c);
		p->qp_text_len = (size_t)json_object_get_string_len(c);
		return 0;
	}
	if (!oa_is(c, json_type_array))
		return qerr_bad(e, "messages[%zu].content: expected a string or "
		    "an array of parts", i);
	n = json_object_array_length(c);
	for (j = 0; j < n; j++) {
		snprintf(path, sizeof(path), "messages[%zu].content[%zu]", i, j);
		part = json_object_array_get_idx(c, j);
		if (!oa_is(part, json_type_object))
			return qerr_bad(e, "%s: expected an object", path);
		if (oa_opt_str(part, "type", "", &type, NULL, e) == -1)
			return qerr_bad(e, "%s.type: expected a string", path);
		if (type == NULL)
			return qerr_bad(e, "%s.type: required", path);
		if (strcmp(type, "text") == 0) {
			struct json_object *t = qjson_get(part, "text");

			if (!oa_is(t, json_type_string))
				return qerr_bad(e, "%s.text: expected a string",
				    path);
			if (json_object_get_string_len(t) == 0)
				continue;
			if ((p = qreq_add_part(q, m, QP_TEXT)) == NULL)
				return qerr_nomem(e);
			p->qp_text = json_object_get_string(t);
			p->qp_text_len = (size_t)json_object_get_string_len(t);
		} else if (strcmp(type, "image_url") == 0) {
			if (oa_image(q, m, part, path, e) == -1)
				return -1;
		} else
			return qerr_bad(e, "%s.type: unsupported part type "
			    "\"%.32s\" (text, image_url)", path, type);
	}
	if (m->qm_nparts == 0)
		return qerr_bad(e, "messages[%zu].content: empty", i);
	return 0;
}

/*
 * A tool call's arguments: a JSON string (or, from lax clients, already
 * an object) that must hold an object. The parsed object replaces the
 * string in the tree, which then owns it.
 */
static int
oa_tool_args(struct json_object *fn, const char *path,
    struct json_object **out, struct qerr *e)
{
	struct json_tokener	*tok;
	struct json_object	*a, *parsed;
	enum json_tokener_error	 jerr;
	const char		*s;
	size_t			 len, end;

	a = qjson_get(fn, "arguments");
	if (oa_is(a, json_type_object)) {
		*out = a;
		return 0;
	}
	if (a != NULL && !oa_is(a, json_type_string))
		return qerr_bad(e, "%s.function.arguments: expected a string",
		    path);
	s = a ? json_object_get_string(a) : "";
	len = a ? (size_t)json_object_get_string_len(a) : 0;
	while (len > 0 && strchr(" \t\r\n", s[len - 1]) != NULL)
		len--;
	if (len == 0) {		/* a call without arguments */
		if ((parsed = json_object_new_object()) == NULL)
			return qerr_nomem(e);
	} else {
		if ((tok = json_tokener_new_ex(QR_JSON_DEPTH)) == NULL)
			return qerr_nomem(e);
		/* len + 1 takes the NUL too, so a bare number ends */
		parsed = json_tokener_parse_ex(tok, s, (int)len + 1);
		jerr = json_tokener_get_error(tok);
		end = json_tokener_get_parse_end(tok);
		json_tokener_free(tok);
		if (parsed == NULL || jerr != json_tokener_success ||
		    end < len) {
			json_object_put(parsed);
			return qerr_bad(e, "%s.function.arguments: not valid "
			    "JSON (%s)", path, parsed == NULL ?
			    json_tokener_error_desc(jerr) : "trailing data");
		}
		if (!json_object_is_type(parsed, json_type_object)) {
			json_object_put(parsed);
			return qerr_bad(e, "%s.function.arguments: expected a "
			    "JSON object", path);
		}
	}
	if (json_object_object_add(fn, "arguments", parsed) == -1) {
		json_object_put(parsed);
		return qerr_nomem(e);
	}
	*out = parsed;
	return 0;
}

static int
oa_tool_use(struct qreq *q, struct qmsg *m, const char *id,
    struct json_object *fn, const char *path, struct qerr *e)
{
	struct json_object	*input = NULL;
	struct qpart		*p;
	const char		*name;
	size_t			 nlen;

	if (oa_opt_str(fn, "name", path, &name, &nlen, e) == -1)
		return -1;
	if (name == NULL || nlen == 0)
		return qerr_bad(e, "%s.name: required", path);
	if (oa_tool_args(fn, path, &input, e) == -1)
		return -1;
	if ((p = qreq_add_part(q, m, QP_TOOL_USE)) == NULL)
		return qerr_nomem(e);
	p->qp_tool_id = id;
	p->qp_tool_name = name;
	p->qp_tool_input = input;
	return 0;
}

static int
oa_assistant(struct qreq *q, struct json_object *msg, size_t i,
    struct oa_parse *st, struct qerr *e)
{
	struct json_object	*tcs, *tc, *fn;
	struct qmsg		*m;
	struct qpart		*p;
	const char		*s, *id, *type;
	char			 path[80], lid[32];
	size_t			 j, n, len;

	if ((m = qreq_add_msg(q, QROLE_ASSISTANT)) == NULL)
		return qerr_nomem(e);
	/* reasoning echoed back by clients that keep it (DeepSeek style) */
	snprintf(path, sizeof(path), "messages[%zu].", i);
	if (oa_opt_str(msg, "reasoning_content", path, &s, &len, e) == -1)
		return -1;
	if (len > 0) {
		if ((p = qreq_add_part(q, m, QP_THINKING)) == NULL)
			return qerr_nomem(e);
		p->qp_text = s;
		p->qp_text_len = len;
	}
	snprintf(path, sizeof(path), "messages[%zu].content", i);
	if (oa_text_content(q, qjson_get(msg, "content"), path, 1, &s, &len,
	    e) == -1)
		return -1;
	if (len > 0) {
		if ((p = qreq_add_part(q, m, QP_TEXT)) == NULL)
			return qerr_nomem(e);
		p->qp_text = s;
		p->qp_text_len = len;
	}
	if ((tcs = qjson_get(msg, "tool_calls")) != NULL) {
		if (!oa_is(tcs, json_type_array))
			return qerr_bad(e, "messages[%zu].tool_calls: expected "
			    "an array", i);
		n = json_object_array_length(tcs);
		for (j = 0; j < n; j++) {
			snprintf(path, sizeof(path),
			    "messages[%zu].tool_calls[%zu]", i, j);
			tc = json_object_array_get_idx(tcs, j);
			if (!oa_is(tc, json_type_object))
				return qerr_bad(e, "%s: expected an object", path);
			if (oa_opt_str(tc, "type", "", &type, NULL, e) == -1)
				return qerr_bad(e, "%s.type: expected a string",
				    path);
			if (type != NULL && strcmp(type, "function") != 0)
				return qerr_bad(e, "%s.type: unsupported tool "
				    "call type \"%.32s\"", path, type);
			if (oa_opt_str(tc, "id", "", &id, &len, e) == -1)
				return qerr_bad(e, "%s.id: expected a string",
				    path);
			if (id == NULL || len == 0)
				return qerr_bad(e, "%s.id: required", path);
			fn = qjson_get(tc, "function");
			if (!oa_is(fn, json_type_object))
				return qerr_bad(e, "%s.function: expected an "
				    "object", path);
			if (oa_tool_use(q, m, id, fn, path, e) == -1)
				return -1;
		}
	}
	/* legacy functions API: one call per turn, ids made up here and
	 * handed to the function-role answer that follows */
	if ((fn = qjson_get(msg, "function_call")) != NULL) {
		snprintf(path, sizeof(path), "messages[%zu].function_call", i);
		if (!oa_is(fn, json_type_object))
			return qerr_bad(e, "%s: expected an object", path);
		snprintf(lid, sizeof(lid), "call_legacy_%u", st->op_nlegacy++);
		if ((id = qreq_strdup(q, lid, strlen(lid))) == NULL)
			return qerr_nomem(e);
		st->op_legacy_id = id;
		if (oa_tool_use(q, m, id, fn, path, e) == -1)
			return -1;
	}
	if (m->qm_nparts == 0)
		return qerr_bad(e, "messages[%zu]: an assistant message needs "
		    "content or tool_calls", i);
	return 0;
}

/* tool and function roles: results join the user message of the tool
 * messages right before them, so one turn answers all its calls */
static int
oa_tool_result(struct qreq *q, struct json_object *msg, size_t i,
    int legacy, struct oa_parse *st, struct qerr *e)
{
	struct qmsg		*m;
	struct qpart		*p;
	const char		*id, *text;
	char			 path[64];
	size_t			 len;

	snprintf(path, sizeof(path), "messages[%zu].", i);
	if (legacy) {
		if (st->op_legacy_id == NULL)
			return qerr_bad(e, "messages[%zu]: a function message "
			    "without a function_call before it", i);
		id = st->op_legacy_id;
		st->op_legacy_id = NULL;
	} else {
		if (oa_opt_str(msg, "tool_call_id", path, &id, &len, e) == -1)
			return -1;
		if (id == NULL || len == 0)
			return qerr_bad(e, "messages[%zu].tool_call_id: required",
			    i);
	}
	snprintf(path, sizeof(path), "messages[%zu].content", i);
	if (oa_text_content(q, qjson_get(msg, "content"), path, 0, &text, &len,
	    e) == -1)
		return -1;
	if (st->op_tool_msg >= 0)
		m = &q->q_msgs[st->op_tool_msg];
	else {
		if ((m = qreq_add_msg(q, QROLE_USER)) == NULL)
			return qerr_nomem(e);
		st->op_tool_msg = m - q->q_msgs;
	}
	if ((p = qreq_add_part(q, m, QP_TOOL_RESULT)) == NULL)
		return qerr_nomem(e);
	p->qp_tool_id = id;
	p->qp_text = text ? text : "";
	p->qp_text_len = len;
	return 0;
}

static int
oa_system(struct qreq *q, struct json_object *msg, size_t i, struct qerr *e)
{
	const char	*text;
	char		 path[64];
	size_t		 len;

	snprintf(path, sizeof(path), "messages[%zu].content", i);
	if (oa_text_content(q, qjson_get(msg, "content"), path, 0, &text, &len,
	    e) == -1)
		return -1;
	if (text == NULL)
		return qerr_bad(e, "%s: required", path);
	if (len == 0)
		return qerr_bad(e, "%s: empty", path);
	if ((q->q_system.b_len > 0 &&
	    buf_append(&q->q_system, "\n\n", 2) == -1) ||
	    buf_append(&q->q_system, text, len) == -1)
		return qerr_nomem(e);
	return 0;
}

static int
oa_messages(struct qreq *q, struct json_object *msgs, struct qerr *e)
{
	struct oa_parse		 st = { -1, NULL, 0 };
	struct json_object	*msg;
	const char		*role;
	char			 path[32];
	size_t			 i, n;
	int			 tool;

	n = json_object_array_length(msgs);
	for (i = 0; i < n; i++) {
		msg = json_object_array_get_idx(msgs, i);
		if (!oa_is(msg, json_type_object))
			return qerr_bad(e, "messages[%zu]: expected an object", i);
		snprintf(path, sizeof(path), "messages[%zu].", i);
		if (oa_opt_str(msg, "role", path, &role, NULL, e) == -1)
			return -1;
		if (role == NULL)
			return qerr_bad(e, "messages[%zu].role: required", i);
		tool = strcmp(role, "tool") == 0 || strcmp(role, "function") == 0;
		if (!tool)
			st.op_tool_msg = -1;
		if (strcmp(role, "user") == 0) {
			if (oa_user(q, msg, i, e) == -1)
				return -1;
		} else if (strcmp(role, "assistant") == 0) {
			if (oa_assistant(q, msg, i, &st, e) == -1)
				return -1;
		} else if (strcmp(role, "system") == 0 ||
		    strcmp(role, "developer") == 0) {
			if (oa_system(q, msg, i, e) == -1)
				return -1;
		} else if (tool) {
			if (oa_tool_result(q, msg, i, role[0] == 'f', &st,
			    e) == -1)
				return -1;
		} else
			return qerr_bad(e, "messages[%zu].role: unknown role "
			    "\"%.32s\"", i, role);
	}
	return 0;
}

/* {name, description, parameters}: tools[i].function or functions[i] */
static int
oa_function_spec(struct qreq *q, struct json_object *fn, const char *path,
    struct qerr *e)
{
	struct json_object	*params;
	struct qtool		*t;
	const char		*name, *desc;
	size_t			 len;

	if (!oa_is(fn, json_type_object))
		return qerr_bad(e, "%s: expected an object", path);
	if (oa_opt_str(fn, "name", "", &name, &len, e) == -1)
		return qerr_bad(e, "%s.name: expected a string", path);
	if (name == NULL || len == 0)
		return qerr_bad(e, "%s.name: required", path);
	if (oa_opt_str(fn, "description", "", &desc, NULL, e) == -1)
		return qerr_bad(e, "%s.description: expected a string", path);
	params = qjson_get(fn, "parameters");
	if (params != NULL && !oa_is(params, json_type_object))
		return qerr_bad(e, "%s.parameters: expected a JSON Schema object",
		    path);
	if ((t = qreq_add_tool(q)) == NULL)
		return qerr_nomem(e);
	t->qt_name = name;
	t->qt_description = desc;
	t->qt_schema = params;
	return 0;
}

static int
oa_tools(struct qreq *q, struct json_object *root, struct qerr *e)
{
	struct json_object	*tools, *t;
	const char		*type;
	char			 path[48];
	size_t			 i, n;

	if ((tools = qjson_get(root, "tools")) != NULL) {
		if (!oa_is(tools, json_type_array))
			return qerr_bad(e, "tools: expected an array");
		n = json_object_array_length(tools);
		for (i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "tools[%zu]", i);
			t = json_object_array_get_idx(tools, i);
			if (!oa_is(t, json_type_object))
				return qerr_bad(e, "%s: expected an object", path);
			if (oa_opt_str(t, "type", "", &type, NULL, e) == -1)
				return qerr_bad(e, "%s.type: expected a string",
				    path);
			if (type != NULL && strcmp(type, "function") != 0)
				return qerr_bad(e, "%s.type: unsupported tool "
				    "type \"%.32s\" (function)", path, type);
			strlcpy_qr(path + strlen(path), ".function",
			    sizeof(path) - strlen(path));
			if (oa_function_spec(q, qjson_get(t, "function"), path,
			    e) == -1)
				return -1;
		}
	}
	if ((tools = qjson_get(root, "functions")) != NULL) {
		if (!oa_is(tools, json_type_array))
			return qerr_bad(e, "functions: expected an array");
		n = json_object_array_length(tools);
		for (i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "functions[%zu]", i);
			if (oa_function_spec(q,
			    json_object_array_get_idx(tools, i), path, e) == -1)
				return -1;
		}
	}
	return 0;
}

/* tool_choice, or the legacy function_call: "auto" "none" "required"
 * or {"type":"function","function":{"name"}} ({"name"} for legacy) */
static int
oa_tool_choice(struct qreq *q, struct json_object *root, struct qerr *e)
{
	struct json_object	*tc, *fn;
	const char		*key = "tool_choice", *s, *name;
	size_t			 len;

	if ((tc = qjson_get(root, key)) == NULL) {
		key = "function_call";
		if ((tc = qjson_get(root, key)) == NULL)
			return 0;
	}
	if (oa_is(tc, json_type_string)) {
		s = json_object_get_string(tc);
		if (strcmp(s, "auto") == 0)
			q->q_tool_choice = QTC_AUTO;
		else if (strcmp(s, "none") == 0)
			q->q_tool_choice = QTC_NONE;
		else if (strcmp(s, "required") == 0 && key[0] == 't')
			q->q_tool_choice = QTC_ANY;
		else
			return qerr_bad(e, "%s: unknown value \"%.32s\"", key, s);
		return 0;
	}
	if (!oa_is(tc, json_type_object))
		return qerr_bad(e, "%s: expected a string or an object", key);
	fn = key[0] == 't' ? qjson_get(tc, "function") : tc;
	if (!oa_is(fn, json_type_object))
		return qerr_bad(e, "%s.function: expected an object", key);
	if (oa_opt_str(fn, "name", "", &name, &len, e) == -1 ||
	    name == NULL || len == 0)
		return qerr_bad(e, "%s%s.name: expected a string", key,
		    key[0] == 't' ? ".function" : "");
	q->q_tool_choice = QTC_TOOL;
	q->q_tool_choice_name = name;
	return 0;
}

/* reasoning_effort, then the thinking extension some clients send the
 * Anthropic way ({"type":"enabled","budget_tokens":N}), which wins */
static int
oa_thinking(struct qreq *q, struct json_object *root, struct qerr *e)
{
	static const struct {
		const char	*name, *effort;
	} efforts[] = {
		{ "none", NULL }, { "minimal", "low" }, { "low", "low" },
		{ "medium", "medium" }, { "high", "high" }, { "xhigh", "high" },
	};
	struct json_object	*th, *b;
	const char		*s;
	size_t			 i;
	int64_t			 budget;

	if (oa_opt_str(root, "reasoning_effort", "", &s, NULL, e) == -1)
		return -1;
	if (s != NULL) {
		for (i = 0; i < nitems(efforts); i++)
			if (strcmp(s, efforts[i].name) == 0)
				break;
		if (i == nitems(efforts))
			return qerr_bad(e, "reasoning_effort: unknown value "
			    "\"%.32s\" (low, medium, high)", s);
		q->q_effort = efforts[i].effort;
		q->q_thinking = s[0] == 'n' ? QTH_OFF : QTH_ADAPTIVE;
	}
	if ((th = qjson_get(root, "thinking")) == NULL)
		return 0;
	if (!oa_is(th, json_type_object))
		return qerr_bad(e, "thinking: expected an object");
	if (oa_opt_str(th, "type", "thinking.", &s, NULL, e) == -1)
		return -1;
	if (s == NULL)
		return qerr_bad(e, "thinking.type: required");
	if (strcmp(s, "disabled") == 0)
		q->q_thinking = QTH_OFF;
	else if (strcmp(s, "adaptive") == 0)
		q->q_thinking = QTH_ADAPTIVE;
	else if (strcmp(s, "enabled") == 0) {
		q->q_thinking = QTH_ENABLED;
		if ((b = qjson_get(th, "budget_tokens")) != NULL) {
			if (!oa_is(b, json_type_int) ||
			    (budget = json_object_get_int64(b)) < 0 ||
			    budget > INT_MAX)
				return qerr_bad(e, "thinking.budget_tokens: "
				    "expected a positive integer");
			q->q_thinking_budget = (int)budget;
		}
	} else
		return qerr_bad(e, "thinking.type: unknown value \"%.32s\"", s);
	return 0;
}

/*
 * A Chat Completions body into q (qreq_init'ed by the caller with
 * API_OPENAI). -1 with e filled: 400 invalid_request_error naming the
 * field, or 500 when memory ran out.
 */
int
openai_parse(struct qreq *q, const char *body, size_t len, struct qerr *e)
{
	struct json_object	*root, *v, *so;
	const char		*key;
	int64_t			 n;

	if (qreq_parse_json(q, body, len, e) == -1)
		return -1;
	root = q->q_root;
	if (!oa_is(root, json_type_object))
		return qerr_bad(e, "the body must be a JSON object");

	if ((v = qjson_get(root, "model")) == NULL)
		return qerr_bad(e, "model: required");
	if (!oa_is(v, json_type_string) || json_object_get_string_len(v) == 0)
		return qerr_bad(e, "model: expected a non-empty string");
	q->q_model = json_object_get_string(v);

	if (oa_opt_bool(root, "stream", "", &q->q_stream, e) == -1)
		return -1;
	if ((so = qjson_get(root, "stream_options")) != NULL) {
		if (!oa_is(so, json_type_object))
			return qerr_bad(e, "stream_options: expected an object");
		if (oa_opt_bool(so, "include_usage", "stream_options.",
		    &q->q_include_usage, e) == -1)
			return -1;
	}
	key = "max_completion_tokens";
	if ((v = qjson_get(root, key)) == NULL)
		v = qjson_get(root, key = "max_tokens");
	if (v != NULL) {
		if (!oa_is(v, json_type_int) ||
		    (n = json_object_get_int64(v)) <= 0)
			return qerr_bad(e, "%s: expected a positive integer", key);
		q->q_max_tokens = n;
	}
	if (oa_tools(q, root, e) == -1 || oa_tool_choice(q, root, e) == -1 ||
	    oa_thinking(q, root, e) == -1)
		return -1;

	if ((v = qjson_get(root, "messages")) == NULL)
		return qerr_bad(e, "messages: required");
	if (!oa_is(v, json_type_array))
		return qerr_bad(e, "messages: expected an array");
	if (json_object_array_length(v) == 0)
		return qerr_bad(e, "messages: must not be empty");
	return oa_messages(q, v, e);
}

/* ------------------------------------------------------------------ */
/* rendering                                                           */

void
openai_render_init(struct render *rd, const struct qreq *q)
{
	unsigned char	 rnd[12];

	memset(rd, 0, sizeof(*rd));
	rd->rd_api = API_OPENAI;
	rd->rd_stream = q->q_stream;
	rd->rd_q = q;
	rd->rd_block = -1;
	rd->rd_tool_args = -1;
	buf_init(&rd->rd_text);
	buf_init(&rd->rd_thinking);
	buf_init(&rd->rd_args);
	if (random_bytes(rnd, sizeof(rnd)) == -1) {
		int64_t t = now_us();	/* unique enough for an id */

		memset(rnd, 0, sizeof(rnd));
		memcpy(rnd, &t, sizeof(t));
	}
	memcpy(rd->rd_id, "chatcmpl-", 9);
	hex_encode(rnd, sizeof(rnd), rd->rd_id + 9);
	rd->rd_created = now_wall();
}

static int
oa_write_json(struct buf *out, struct json_object *o)
{
	int		 rc;

	rc = qjson_append(out, o);
	if (o != NULL)
		json_object_put(o);
	return rc;
}

/* "data: <json>\n\n"; takes o */
static int
oa_sse(struct buf *out, struct json_object *o)
{
	if (o == NULL || buf_append(out, "data: ", 6) == -1) {
		json_object_put(o);
		return -1;
	}
	if (oa_write_json(out, o) == -1)
		return -1;
	return buf_append(out, "\n\n", 2);
}

static struct json_object *
oa_usage(const struct render *rd)
{
	struct json_object	*u;

	if ((u = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(u, "prompt_tokens",
	    json_object_new_int64(rd->rd_usage.u_in));
	json_object_object_add(u, "completion_tokens",
	    json_object_new_int64(rd->rd_usage.u_out));
	json_object_object_add(u, "total_tokens",
	    json_object_new_int64(rd->rd_usage.u_in + rd->rd_usage.u_out));
	return u;
}

/* The fields every chat.completion(.chunk) starts with. */
static struct json_object *
oa_head(const struct render *rd, const char *object)
{
	struct json_object	*o;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(o, "id", json_object_new_string(rd->rd_id));
	json_object_object_add(o, "object", json_object_new_string(object));
	json_object_object_add(o, "created",
	    json_object_new_int64(rd->rd_created));
	json_object_object_add(o, "model",
	    json_object_new_string(rd->rd_q->q_model ? rd->rd_q->q_model : ""));
	return o;
}

/* A chunk of one choice with delta (taken) and finish (NULL: null);
 * delta NULL: the usage chunk, choices []. */
static struct json_object *
oa_chunk(const struct render *rd, struct json_object *delta,
    const char *finish)
{
	struct json_object	*o, *choices, *c;

	if ((o = oa_head(rd, "chat.completion.chunk")) == NULL ||
	    (choices = json_object_new_array()) == NULL) {
		json_object_put(o);
		json_object_put(delta);
		return NULL;
	}
	json_object_object_add(o, "choices", choices);
	if (delta != NULL) {
		if ((c = json_object_new_object()) == NULL) {
			json_object_put(o);
			json_object_put(delta);
			return NULL;
		}
		json_object_array_add(choices, c);
		json_object_object_add(c, "index", json_object_new_int(0));
		json_object_object_add(c, "delta", delta);
		json_object_object_add(c, "logprobs", NULL);
		json_object_object_add(c, "finish_reason",
		    finish ? json_object_new_string(finish) : NULL);
	}
	if (rd->rd_q->q_include_usage)
		json_object_object_add(o, "usage",
		    delta != NULL ? NULL : oa_usage(rd));
	return o;
}

/* a delta of one string member */
static struct json_object *
oa_delta_str(const char *key, const char *s, size_t len)
{
	struct json_object	*d;

	if ((d = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(d, key, json_object_new_string_len(s, (int)len));
	return d;
}

int
openai_render_start(struct render *rd, struct buf *out)
{
	struct json_object	*d;

	if (!rd->rd_stream || rd->rd_started)
		return 0;
	rd->rd_started = 1;
	if ((d = json_object_new_object()) == NULL)
		return -1;
	json_object_object_add(d, "role", json_object_new_string("assistant"));
	json_object_object_add(d, "content", json_object_new_string(""));
	return oa_sse(out, oa_chunk(rd, d, NULL));
}

/* delta.tool_calls[{index, ...}]: the start (id, name) when id is set,
 * else one fragment of arguments */
static int
oa_tool_delta(struct render *rd, int index, const char *id, const char *name,
    const char *args, size_t len, struct buf *out)
{
	struct json_object	*d, *tcs, *tc, *fn;

	d = json_object_new_object();
	tcs = json_object_new_array();
	tc = json_object_new_object();
	fn = json_object_new_object();
	if (d == NULL || tcs == NULL || tc == NULL || fn == NULL) {
		json_object_put(d);
		json_object_put(tcs);
		json_object_put(tc);
		json_object_put(fn);
		return -1;
	}
	json_object_object_add(d, "tool_calls", tcs);
	json_object_array_add(tcs, tc);
	json_object_object_add(tc, "index", json_object_new_int(index));
	if (id != NULL) {
		json_object_object_add(tc, "id", json_object_new_string(id));
		json_object_object_add(tc, "type",
		    json_object_new_string("function"));
		json_object_object_add(fn, "name", json_object_new_string(name));
	}
	json_object_object_add(fn, "arguments",
	    json_object_new_string_len(args, (int)len));
	json_object_object_add(tc, "function", fn);
	return oa_sse(out, oa_chunk(rd, d, NULL));
}

static const char *
oa_client_tool_name(const struct render *rd, const char *upstream)
{
	const char	*name;

	if (upstream == NULL)
		return "";
	name = qreq_tool_client_name(rd->rd_q, upstream);
	return name ? name : upstream;
}

/* A call whose input never came is sent as "{}" so that the joined
 * arguments stay parseable JSON. */
static int
oa_stream_close_tool(struct render *rd, struct buf *out)
{
	int	 rc = 0;

	if (rd->rd_tool_args == 0)
		rc = oa_tool_delta(rd, rd->rd_ntools - 1, NULL, NULL, "{}", 2,
		    out);
	rd->rd_tool_args = -1;
	return rc;
}

static int
oa_error_line(struct render *rd, int status, const char *msg,
    struct buf *out)
{
	rd->rd_err_status = status > 0 ? status : 502;
	return oa_sse(out, openai_error_json(rd->rd_err_status, NULL, msg));
}

static int
oa_stream_event(struct render *rd, const struct qev *ev, struct buf *out)
{
	int	 index;

	if (ev->qv_type == QEV_ERROR)
		return oa_error_line(rd, ev->qv_status, ev->qv_err_msg ?
		    ev->qv_err_msg : OA_STREAM_FAILED, out);
	if (openai_render_start(rd, out) == -1)
		return -1;
	index = ev->qv_tool_index >= 0 ? ev->qv_tool_index : rd->rd_ntools - 1;
	switch (ev->qv_type) {
	case QEV_TEXT:
	case QEV_THINKING:
		if (ev->qv_len == 0)
			return 0;
		return oa_sse(out, oa_chunk(rd, oa_delta_str(
		    ev->qv_type == QEV_TEXT ? "content" : "reasoning_content",
		    ev->qv_text, ev->qv_len), NULL));
	case QEV_TOOL_START:
		if (oa_stream_close_tool(rd, out) == -1)
			return -1;
		rd->rd_ntools++;
		rd->rd_tool_args = 0;
		return oa_tool_delta(rd, ev->qv_tool_index >= 0 ?
		    ev->qv_tool_index : rd->rd_ntools - 1,
		    ev->qv_tool_id ? ev->qv_tool_id : "",
		    oa_client_tool_name(rd, ev->qv_tool_name), "", 0, out);
	case QEV_TOOL_ARGS:
		if (ev->qv_len == 0)
			return 0;
		if (rd->rd_tool_args >= 0)
			rd->rd_tool_args += (int64_t)ev->qv_len;
		return oa_tool_delta(rd, index, NULL, NULL, ev->qv_text,
		    ev->qv_len, out);
	case QEV_TOOL_STOP:
		return oa_stream_close_tool(rd, out);
	}
	return 0;
}

/* non-stream: the open tool call gets its arguments string */
static int
oa_acc_close_tool(struct render *rd)
{
	struct json_object	*tc, *fn;
	size_t			 n;

	if (rd->rd_tool_args < 0)
		return 0;
	rd->rd_tool_args = -1;
	if (rd->rd_acc == NULL || (n = json_object_array_length(rd->rd_acc)) == 0)
		return 0;
	tc = json_object_array_get_idx(rd->rd_acc, n - 1);
	if (!json_object_object_get_ex(tc, "function", &fn))
		return -1;
	if (rd->rd_args.b_len == 0)
		return json_object_object_add(fn, "arguments",
		    json_object_new_string("{}"));
	return json_object_object_add(fn, "arguments",
	    json_object_new_string_len(rd->rd_args.b_data,
	    (int)rd->rd_args.b_len));
}

static int
oa_acc_event(struct render *rd, const struct qev *ev)
{
	struct json_object	*tc, *fn;

	switch (ev->qv_type) {
	case QEV_TEXT:
		return buf_append(&rd->rd_text, ev->qv_text, ev->qv_len);
	case QEV_THINKING:
		return buf_append(&rd->rd_thinking, ev->qv_text, ev->qv_len);
	case QEV_TOOL_START:
		if (oa_acc_close_tool(rd) == -1)
			return -1;
		if (rd->rd_acc == NULL &&
		    (rd->rd_acc = json_object_new_array()) == NULL)
			return -1;
		if ((tc = json_object_new_object()) == NULL)
			return -1;
		if ((fn = json_object_new_object()) == NULL ||
		    json_object_array_add(rd->rd_acc, tc) == -1) {
			json_object_put(tc);
			json_object_put(fn);
			return -1;
		}
		json_object_object_add(tc, "id", json_object_new_string(
		    ev->qv_tool_id ? ev->qv_tool_id : ""));
		json_object_object_add(tc, "type",
		    json_object_new_string("function"));
		json_object_object_add(tc, "function", fn);
		json_object_object_add(fn, "name", json_object_new_string(
		    oa_client_tool_name(rd, ev->qv_tool_name)));
		rd->rd_ntools++;
		rd->rd_tool_args = 0;
		buf_reset(&rd->rd_args);
		return 0;
	case QEV_TOOL_ARGS:
		if (rd->rd_tool_args < 0)
			return 0;
		rd->rd_tool_args += (int64_t)ev->qv_len;
		return buf_append(&rd->rd_args, ev->qv_text, ev->qv_len);
	case QEV_TOOL_STOP:
		return oa_acc_close_tool(rd);
	case QEV_ERROR:
		/* the body becomes an error: keep its message in rd_text */
		rd->rd_err_status = ev->qv_status > 0 ? ev->qv_status : 502;
		buf_reset(&rd->rd_text);
		return buf_puts(&rd->rd_text, ev->qv_err_msg ?
		    ev->qv_err_msg : OA_STREAM_FAILED);
	}
	return 0;
}

int
openai_render_event(struct render *rd, const struct qev *ev, struct buf *out)
{
	if (rd->rd_err_status)
		return 0;		/* nothing follows an error */
	if (rd->rd_stream)
		return oa_stream_event(rd, ev, out);
	return oa_acc_event(rd, ev);
}

int
openai_render_ping(struct render *rd, struct buf *out)
{
	if (!rd->rd_stream)
		return 0;
	return buf_append(out, ": ping\n\n", 8);
}

/* A tool call made is what the client must act on, whatever the
 * upstream said about the turn. */
static const char *
oa_finish_reason(const struct render *rd, int stop)
{
	switch (stop) {
	case QSTOP_TOOL_USE:
		return "tool_calls";
	case QSTOP_MAX_TOKENS:
	case QSTOP_CONTEXT:
		return "length";
	default:
		return rd->rd_ntools > 0 ? "tool_calls" : "stop";
	}
}

static int
oa_stream_finish(struct render *rd, int stop, struct buf *out)
{
	struct json_object	*d;

	if (rd->rd_err_status)
		return 0;
	if (stop == QSTOP_ERROR)
		return oa_error_line(rd, 502, OA_STREAM_FAILED, out);
	if (openai_render_start(rd, out) == -1 ||
	    oa_stream_close_tool(rd, out) == -1)
		return -1;
	if ((d = json_object_new_object()) == NULL ||
	    oa_sse(out, oa_chunk(rd, d, oa_finish_reason(rd, stop))) == -1)
		return -1;
	if (rd->rd_q->q_include_usage &&
	    oa_sse(out, oa_chunk(rd, NULL, NULL)) == -1)
		return -1;
	return buf_append(out, "data: [DONE]\n\n", 14);
}

static int
oa_body_finish(struct render *rd, int stop, struct buf *out)
{
	struct json_object	*o, *choices, *c, *m;
	int			 status;

	if (rd->rd_err_status || stop == QSTOP_ERROR) {
		status = rd->rd_err_status ? rd->rd_err_status : 502;
		if (oa_write_json(out, openai_error_json(status, NULL,
		    rd->rd_err_status ? rd->rd_text.b_data :
		    OA_STREAM_FAILED)) == -1)
			return -1;
		return status;
	}
	if (oa_acc_close_tool(rd) == -1)
		return -1;
	if ((o = oa_head(rd, "chat.completion")) == NULL)
		return -1;
	choices = json_object_new_array();
	c = json_object_new_object();
	m = json_object_new_object();
	json_object_object_add(o, "choices", choices);
	if (choices == NULL || c == NULL || m == NULL ||
	    json_object_array_add(choices, c) == -1) {
		json_object_put(o);
		json_object_put(c);
		json_object_put(m);
		return -1;
	}
	json_object_object_add(c, "index", json_object_new_int(0));
	json_object_object_add(c, "message", m);
	json_object_object_add(m, "role", json_object_new_string("assistant"));
	if (rd->rd_text.b_len > 0)
		json_object_object_add(m, "content", json_object_new_string_len(
		    rd->rd_text.b_data, (int)rd->rd_text.b_len));
	else
		json_object_object_add(m, "content", rd->rd_ntools > 0 ? NULL :
		    json_object_new_string(""));
	if (rd->rd_thinking.b_len > 0)
		json_object_object_add(m, "reasoning_content",
		    json_object_new_string_len(rd->rd_thinking.b_data,
		    (int)rd->rd_thinking.b_len));
	if (rd->rd_acc != NULL && json_object_array_length(rd->rd_acc) > 0)
		json_object_object_add(m, "tool_calls",
		    json_object_get(rd->rd_acc));
	json_object_object_add(c, "logprobs", NULL);
	json_object_object_add(c, "finish_reason",
	    json_object_new_string(oa_finish_reason(rd, stop)));
	json_object_object_add(o, "usage", oa_usage(rd));
	return oa_write_json(out, o);
}

int
openai_render_finish(struct render *rd, int stop, struct buf *out)
{
	if (rd->rd_stream)
		return oa_stream_finish(rd, stop, out);
	return oa_body_finish(rd, stop, out);
}

/* The types the OpenAI API and the SDKs' users see by status. */
const char *
openai_error_type(int status)
{
	switch (status) {
	case 401:
		return "authentication_error";
	case 402:
		return "insufficient_quota";
	case 403:
		return "permission_error";
	case 429:
		return "rate_limit_exceeded";
	default:
		return status >= 500 ? "server_error" : OA_BAD_REQUEST;
	}
}

struct json_object *
openai_error_json(int status, const char *type, const char *message)
{
	struct json_object	*o, *err;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	if ((err = json_object_new_object()) == NULL) {
		json_object_put(o);
		return NULL;
	}
	json_object_object_add(o, "error", err);
	json_object_object_add(err, "message",
	    json_object_new_string(message ? message : "error"));
	json_object_object_add(err, "type",
	    json_object_new_string(type ? type : openai_error_type(status)));
	json_object_object_add(err, "param", NULL);
	json_object_object_add(err, "code", NULL);
	return o;
}
