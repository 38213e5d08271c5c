/*
 * anthropic.c - the Anthropic Messages API: client bodies in, responses
 * out.
 *
 * Runs inside a worker. anthropic_parse turns a POST /v1/messages body
 * into the API-neutral struct qreq (strings borrowed from the parsed
 * body, q_root), which qreq_build then lints and writes upstream. The
 * renderers turn the qev events the upstream stream interpreter emits
 * into what the client expects: SSE events (message_start,
 * content_block_*, message_delta, message_stop) as they come, or one
 * message JSON at the end.
 *
 * Parsing is strict about what it reads and blind to what it does not:
 * new Claude Code releases add top-level fields and block keys
 * (context_management, output_config, cache_control, citations, ...)
 * faster than any list, so only wrong types and missing essentials get
 * a 400, worded like the real API's ("messages.2.role: ...").
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "qrelayd.h"

#define ANT_INVALID		"invalid_request_error"
#define ANT_IMAGE_MAX		(5 * 1024 * 1024) /* decoded bytes, as the API */
/* JSON paths in messages, as the real API words them: "messages.N",
 * ".content.M", the block's type tag (".tool_result"), a tool_result's
 * ".content.K"; each buffer fits the one it extends. */
#define ANT_PATH_MSG		32
#define ANT_PATH_BLK		64
#define ANT_PATH_SUB		96
#define ANT_PATH_TR		136
#define ANT_ID_CHARS		22

/* rd_block_kind */
enum { BK_NONE = 0, BK_TEXT, BK_THINKING, BK_TOOL };

/* rd_flags */
#define RF_ANSWER		0x01	/* a text or tool_use block began */
#define RF_ERROR		0x02	/* an ERROR event came; the rest is moot */

/* ------------------------------------------------------------------ */
/* parsing                                                             */

/* String member; *s NULL when absent and not required. */
static int
ant_str(struct json_object *o, const char *key, const char *path,
    int required, const char **s, size_t *len, struct qerr *e)
{
	struct json_object	*v;
	const char		*dot = path[0] != '\0' ? "." : "";

	*s = NULL;
	if (len != NULL)
		*len = 0;
	if ((v = qjson_get(o, key)) == NULL) {
		if (required)
			return qerr_bad(e, "%s%s%s: Field required", path, dot,
			    key);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return qerr_bad(e, "%s%s%s: Input should be a valid string",
		    path, dot, key);
	*s = json_object_get_string(v);
	if (len != NULL)
		*len = (size_t)json_object_get_string_len(v);
	return 0;
}

static int
ant_system_add(struct qreq *q, const char *s, size_t len)
{
	if (len == 0)
		return 0;
	if (q->q_system.b_len > 0 && buf_append(&q->q_system, "\n\n", 2) == -1)
		return -1;
	return buf_append(&q->q_system, s, len);
}

/* The top-level system, or the content of a role "system" message: a
 * string or a list of text blocks (cache_control and the like ignored). */
static int
ant_system(struct qreq *q, struct json_object *v, const char *path,
    struct qerr *e)
{
	struct json_object	*blk;
	char			 p[ANT_PATH_SUB];
	const char		*s, *type;
	size_t			 i, n, len;

	if (json_object_is_type(v, json_type_string)) {
		if (ant_system_add(q, json_object_get_string(v),
		    (size_t)json_object_get_string_len(v)) == -1)
			goto nomem;
		return 0;
	}
	if (!json_object_is_type(v, json_type_array))
		return qerr_bad(e, "%s: Input should be a valid string or a "
		    "list of text blocks", path);
	n = json_object_array_length(v);
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s.%zu", path, i);
		blk = json_object_array_get_idx(v, i);
		if (!json_object_is_type(blk, json_type_object))
			return qerr_bad(e, "%s: Input should be a valid "
			    "dictionary", p);
		if (ant_str(blk, "type", p, 1, &type, NULL, e) == -1)
			return -1;
		if (strcmp(type, "text") != 0)
			return qerr_bad(e, "%s.type: Input should be 'text'", p);
		if (ant_str(blk, "text", p, 1, &s, &len, e) == -1)
			return -1;
		if (ant_system_add(q, s, len) == -1)
			goto nomem;
	}
	return 0;
 nomem:
	qerr_nomem(e);
	return -1;
}

/* An image block (in a message or inside a tool_result). */
static int
ant_image(struct qreq *q, struct qmsg *m, struct json_object *blk,
    const char *path, struct qerr *e)
{
	struct json_object	*src;
	struct qpart		*qp;
	const char		*stype, *mtype, *data, *fmt = NULL;
	size_t			 len;

	if ((src = qjson_get(blk, "source")) == NULL)
		return qerr_bad(e, "%s.source: Field required", path);
	if (!json_object_is_type(src, json_type_object))
		return qerr_bad(e, "%s.source: Input should be a valid "
		    "dictionary", path);
	if (ant_str(src, "type", path, 1, &stype, NULL, e) == -1)
		return -1;
	if (strcmp(stype, "url") == 0)
		return qerr_bad(e, "%s.source: URL image sources are not "
		    "supported; send the image as base64", path);
	if (strcmp(stype, "base64") != 0)
		return qerr_bad(e, "%s.source.type: image source type '%s' is "
		    "not supported; send the image as base64", path, stype);
	if (ant_str(src, "media_type", path, 1, &mtype, NULL, e) == -1)
		return -1;
	if ((fmt = qreq_image_format(mtype, strlen(mtype))) == NULL)
		return qerr_bad(e, "%s.source.base64.media_type: Input should "
		    "be 'image/jpeg', 'image/png', 'image/gif' or "
		    "'image/webp'", path);
	if (ant_str(src, "data", path, 1, &data, &len, e) == -1)
		return -1;
	if (len == 0)
		return qerr_bad(e, "%s.source.base64.data: image data is empty",
		    path);
	if (len / 4 * 3 > ANT_IMAGE_MAX)
		return qerr_bad(e, "%s.source.base64: image exceeds 5 MB "
		    "maximum: %zu bytes > %d bytes", path, len / 4 * 3,
		    ANT_IMAGE_MAX);
	if ((qp = qreq_add_part(q, m, QP_IMAGE)) == NULL)
		goto nomem;
	qp->qp_image_format = fmt;
	qp->qp_image_b64 = data;
	qp->qp_image_len = len;
	return 0;
 nomem:
	qerr_nomem(e);
	return -1;
}

/* tool_result: its text blocks joined by "\n" become the result; its
 * images follow it as image parts of the same message, since the
 * upstream carries images only on the user turn. */
static int
ant_tool_result(struct qreq *q, struct qmsg *m, struct json_object *blk,
    const char *path, struct qerr *e)
{
	struct json_object	*c, *err, *sub;
	struct qpart		*qp;
	struct buf		 joined;
	char			 p[ANT_PATH_TR];
	const char		*id, *type, *s, *text = "";
	size_t			 i, n = 0, len, text_len = 0, ntext = 0;
	int			 nimages = 0, rc = -1;

	buf_init(&joined);
	if (ant_str(blk, "tool_use_id", path, 1, &id, NULL, e) == -1)
		goto done;
	if ((err = qjson_get(blk, "is_error")) != NULL &&
	    !json_object_is_type(err, json_type_boolean)) {
		qerr_bad(e, "%s.is_error: Input should be a valid boolean",
		    path);
		goto done;
	}
	if ((c = qjson_get(blk, "content")) == NULL) {
		/* no content: an empty result */
	} else if (json_object_is_type(c, json_type_string)) {
		text = json_object_get_string(c);
		text_len = (size_t)json_object_get_string_len(c);
	} else if (json_object_is_type(c, json_type_array)) {
		n = json_object_array_length(c);
		for (i = 0; i < n; i++) {
			snprintf(p, sizeof(p), "%s.content.%zu", path, i);
			sub = json_object_array_get_idx(c, i);
			if (!json_object_is_type(sub, json_type_object)) {
				qerr_bad(e, "%s: Input should be a valid "
				    "dictionary", p);
				goto done;
			}
			if (ant_str(sub, "type", p, 1, &type, NULL, e) == -1)
				goto done;
			if (strcmp(type, "image") == 0) {
				nimages++;
				continue;
			}
			if (strcmp(type, "text") != 0) {
				qerr_bad(e, "%s.type: content block type '%s' "
				    "is not supported in a tool_result", p,
				    type);
				goto done;
			}
			if (ant_str(sub, "text", p, 1, &s, &len, e) == -1)
				goto done;
			if (ntext++ == 0) {
				text = s;
				text_len = len;
				continue;
			}
			/* two or more: join them in a copy */
			if (ntext == 2 && buf_append(&joined, text,
			    text_len) == -1)
				goto nomem;
			if (buf_append(&joined, "\n", 1) == -1 ||
			    buf_append(&joined, s, len) == -1)
				goto nomem;
		}
		if (ntext > 1) {
			if ((text = qreq_strdup(q, joined.b_data,
			    joined.b_len)) == NULL)
				goto nomem;
			text_len = joined.b_len;
		}
	} else {
		qerr_bad(e, "%s.content: Input should be a valid string or a "
		    "list of content blocks", path);
		goto done;
	}

	if ((qp = qreq_add_part(q, m, QP_TOOL_RESULT)) == NULL)
		goto nomem;
	qp->qp_tool_id = id;
	qp->qp_text = text;
	qp->qp_text_len = text_len;
	qp->qp_tool_error = err != NULL && json_object_get_boolean(err);

	/* qp may move as parts are added: images only after it is whole */
	for (i = 0; nimages > 0 && i < n; i++) {
		sub = json_object_array_get_idx(c, i);
		if (ant_str(sub, "type", path, 1, &type, NULL, e) == -1)
			goto done;
		if (strcmp(type, "image") != 0)
			continue;
		snprintf(p, sizeof(p), "%s.content.%zu.image", path, i);
		if (ant_image(q, m, sub, p, e) == -1)
			goto done;
	}
	rc = 0;
	goto done;
 nomem:
	qerr_nomem(e);
 done:
	buf_free(&joined);
	return rc;
}

static int
ant_block(struct qreq *q, struct qmsg *m, struct json_object *blk,
    const char *path, struct qerr *e)
{
	struct json_object	*input;
	struct qpart		*qp;
	char			 tp[ANT_PATH_SUB];
	const char		*type, *s, *id, *name;
	size_t			 len;

	if (!json_object_is_type(blk, json_type_object))
		return qerr_bad(e, "%s: Input should be a valid dictionary",
		    path);
	if (ant_str(blk, "type", path, 1, &type, NULL, e) == -1)
		return -1;
	if (strlen(type) < 32)
		snprintf(tp, sizeof(tp), "%s.%s", path, type);
	else
		strlcpy_qr(tp, path, sizeof(tp));

	if (strcmp(type, "text") == 0) {
		if (ant_str(blk, "text", tp, 1, &s, &len, e) == -1)
			return -1;
		/* The real API refuses empty text blocks; some clients
		 * send them beside a tool_use, so drop them instead. */
		if (len == 0)
			return 0;
		if ((qp = qreq_add_part(q, m, QP_TEXT)) == NULL)
			goto nomem;
		qp->qp_text = s;
		qp->qp_text_len = len;
		return 0;
	}
	if (strcmp(type, "image") == 0)
		return ant_image(q, m, blk, tp, e);
	if (strcmp(type, "tool_use") == 0) {
		if (ant_str(blk, "id", tp, 1, &id, NULL, e) == -1 ||
		    ant_str(blk, "name", tp, 1, &name, NULL, e) == -1)
			return -1;
		if ((input = qjson_get(blk, "input")) == NULL)
			return qerr_bad(e, "%s.input: Field required", tp);
		if (!json_object_is_type(input, json_type_object))
			return qerr_bad(e, "%s.input: Input should be a valid "
			    "dictionary", tp);
		if ((qp = qreq_add_part(q, m, QP_TOOL_USE)) == NULL)
			goto nomem;
		qp->qp_tool_id = id;
		qp->qp_tool_name = name;
		qp->qp_tool_input = input;
		return 0;
	}
	if (strcmp(type, "tool_result") == 0)
		return ant_tool_result(q, m, blk, tp, e);
	if (strcmp(type, "thinking") == 0) {
		/* the signature only means something to Anthropic */
		if (ant_str(blk, "thinking", tp, 1, &s, &len, e) == -1)
			return -1;
		if (len == 0)
			return 0;
		if ((qp = qreq_add_part(q, m, QP_THINKING)) == NULL)
			goto nomem;
		qp->qp_text = s;
		qp->qp_text_len = len;
		return 0;
	}
	if (strcmp(type, "redacted_thinking") == 0)
		return 0;	/* opaque to anyone but Anthropic */
	/* document, search_result, server_tool_use, *_tool_result of
	 * server tools, container_upload, ...: the upstream has no place
	 * for them, and dropping them would change the meaning. */
	return qerr_bad(e, "%s.type: content block type '%s' is not "
	    "supported", path, type);
 nomem:
	qerr_nomem(e);
	return -1;
}

static int
ant_messages(struct qreq *q, struct json_object *msgs, struct qerr *e)
{
	struct json_object	*mo, *c;
	struct qmsg		*m;
	char			 p[ANT_PATH_MSG], bp[ANT_PATH_BLK];
	const char		*role;
	size_t			 i, j, n, nb;
	int			 qrole;

	if (!json_object_is_type(msgs, json_type_array))
		return qerr_bad(e, "messages: Input should be a valid list");
	if ((n = json_object_array_length(msgs)) == 0)
		return qerr_bad(e, "messages: at least one message is required");
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "messages.%zu", i);
		mo = json_object_array_get_idx(msgs, i);
		if (!json_object_is_type(mo, json_type_object))
			return qerr_bad(e, "%s: Input should be a valid "
			    "dictionary", p);
		if (ant_str(mo, "role", p, 1, &role, NULL, e) == -1)
			return -1;
		if ((c = qjson_get(mo, "content")) == NULL)
			return qerr_bad(e, "%s.content: Field required", p);
		snprintf(bp, sizeof(bp), "%s.content", p);

		/* Claude Code puts role "system" entries among the
		 * messages; they join the system prompt in order. */
		if (strcmp(role, "system") == 0) {
			if (ant_system(q, c, bp, e) == -1)
				return -1;
			continue;
		}
		if (strcmp(role, "user") == 0)
			qrole = QROLE_USER;
		else if (strcmp(role, "assistant") == 0)
			qrole = QROLE_ASSISTANT;
		else
			return qerr_bad(e, "%s.role: Input should be 'user' or "
			    "'assistant'", p);

		if (json_object_is_type(c, json_type_string)) {
			nb = (size_t)json_object_get_string_len(c);
		} else if (json_object_is_type(c, json_type_array)) {
			nb = json_object_array_length(c);
		} else
			return qerr_bad(e, "%s: Input should be a valid string "
			    "or a list of content blocks", bp);
		if (nb == 0) {
			/* an empty final assistant turn is no prefill */
			if (qrole == QROLE_ASSISTANT && i == n - 1)
				continue;
			goto empty;
		}
		if ((m = qreq_add_msg(q, qrole)) == NULL)
			goto nomem;
		if (json_object_is_type(c, json_type_string)) {
			struct qpart	*qp;

			if ((qp = qreq_add_part(q, m, QP_TEXT)) == NULL)
				goto nomem;
			qp->qp_text = json_object_get_string(c);
			qp->qp_text_len = nb;
			continue;
		}
		for (j = 0; j < nb; j++) {
			snprintf(bp, sizeof(bp), "%s.content.%zu", p, j);
			if (ant_block(q, m, json_object_array_get_idx(c, j),
			    bp, e) == -1)
				return -1;
		}
		if (m->qm_nparts == 0)
			goto empty;
	}
	return 0;
 empty:
	return qerr_bad(e, "messages.%zu: all messages must have non-empty "
	    "content except for the optional final assistant message", i);
 nomem:
	qerr_nomem(e);
	return -1;
}

static int
ant_tools(struct qreq *q, struct json_object *tools, struct qerr *e)
{
	struct json_object	*t, *schema;
	struct qtool		*qt;
	char			 p[ANT_PATH_MSG];
	const char		*type, *name, *desc;
	size_t			 i, n;

	if (!json_object_is_type(tools, json_type_array))
		return qerr_bad(e, "tools: Input should be a valid list");
	n = json_object_array_length(tools);
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "tools.%zu", i);
		t = json_object_array_get_idx(tools, i);
		if (!json_object_is_type(t, json_type_object))
			return qerr_bad(e, "%s: Input should be a valid "
			    "dictionary", p);
		if (ant_str(t, "type", p, 0, &type, NULL, e) == -1)
			return -1;
		/*
		 * Server and Anthropic-defined tools (web_search_*,
		 * web_fetch_*, code_execution_*, bash_*, text_editor_*,
		 * computer_*, memory_*) carry a versioned type and no
		 * input_schema; the upstream can neither run them nor
		 * declare them, so they are skipped, as peers do.
		 */
		if (type != NULL && strcmp(type, "custom") != 0)
			continue;
		if (ant_str(t, "name", p, 1, &name, NULL, e) == -1 ||
		    ant_str(t, "description", p, 0, &desc, NULL, e) == -1)
			return -1;
		if (name[0] == '\0')
			return qerr_bad(e, "%s.name: String should have at "
			    "least 1 character", p);
		if ((schema = qjson_get(t, "input_schema")) == NULL)
			return qerr_bad(e, "%s.input_schema: Field required", p);
		if (!json_object_is_type(schema, json_type_object))
			return qerr_bad(e, "%s.input_schema: Input should be a "
			    "valid dictionary", p);
		if ((qt = qreq_add_tool(q)) == NULL) {
			qerr_nomem(e);
			return -1;
		}
		qt->qt_name = name;
		qt->qt_description = desc;
		qt->qt_schema = schema;
	}
	return 0;
}

static int
ant_tool_choice(struct qreq *q, struct json_object *tc, struct qerr *e)
{
	const char	*type, *name;

	if (!json_object_is_type(tc, json_type_object))
		return qerr_bad(e, "tool_choice: Input should be a valid "
		    "dictionary");
	if (ant_str(tc, "type", "tool_choice", 1, &type, NULL, e) == -1)
		return -1;
	if (strcmp(type, "auto") == 0)
		q->q_tool_choice = QTC_AUTO;
	else if (strcmp(type, "any") == 0)
		q->q_tool_choice = QTC_ANY;
	else if (strcmp(type, "none") == 0)
		q->q_tool_choice = QTC_NONE;
	else if (strcmp(type, "tool") == 0) {
		if (ant_str(tc, "name", "tool_choice", 1, &name, NULL,
		    e) == -1)
			return -1;
		q->q_tool_choice = QTC_TOOL;
		q->q_tool_choice_name = name;
	} else
		return qerr_bad(e, "tool_choice.type: Input tag '%s' found "
		    "using 'type' does not match any of the expected tags: "
		    "'auto', 'any', 'tool', 'none'", type);
	return 0;
}

static int
ant_thinking(struct qreq *q, struct json_object *th, struct qerr *e)
{
	struct json_object	*b;
	const char		*type;
	int64_t			 budget;

	if (!json_object_is_type(th, json_type_object))
		return qerr_bad(e, "thinking: Input should be a valid "
		    "dictionary");
	if (ant_str(th, "type", "thinking", 1, &type, NULL, e) == -1)
		return -1;
	if (strcmp(type, "disabled") == 0) {
		q->q_thinking = QTH_OFF;
	} else if (strcmp(type, "adaptive") == 0) {
		q->q_thinking = QTH_ADAPTIVE;
	} else if (strcmp(type, "enabled") == 0) {
		if ((b = qjson_get(th, "budget_tokens")) == NULL)
			return qerr_bad(e, "thinking.enabled.budget_tokens: "
			    "Field required");
		if (!json_object_is_type(b, json_type_int))
			return qerr_bad(e, "thinking.enabled.budget_tokens: "
			    "Input should be a valid integer");
		budget = json_object_get_int64(b);
		if (budget < 1)
			return qerr_bad(e, "thinking.enabled.budget_tokens: "
			    "Input should be greater than or equal to 1");
		/* qreq_build clamps it to what the upstream takes */
		q->q_thinking = QTH_ENABLED;
		q->q_thinking_budget = budget > INT_MAX ? INT_MAX :
		    (int)budget;
	} else
		return qerr_bad(e, "thinking.type: Input tag '%s' found using "
		    "'type' does not match any of the expected tags: "
		    "'enabled', 'disabled', 'adaptive'", type);
	return 0;
}

/* output_config.effort: the upstream's thinking tag knows low, medium
 * and high; "max" asks for the most, so high. Anything else is a value
 * newer than this code and is left to the default. */
static void
ant_effort(struct qreq *q, struct json_object *oc)
{
	struct json_object	*v;
	const char		*s;

	if (!json_object_is_type(oc, json_type_object) ||
	    (v = qjson_get(oc, "effort")) == NULL ||
	    !json_object_is_type(v, json_type_string))
		return;
	s = json_object_get_string(v);
	if (strcmp(s, "low") == 0 || strcmp(s, "medium") == 0 ||
	    strcmp(s, "high") == 0)
		q->q_effort = s;
	else if (strcmp(s, "max") == 0)
		q->q_effort = "high";
}

int
anthropic_parse(struct qreq *q, const char *body, size_t len, struct qerr *e)
{
	struct json_object	*root, *v;
	const char		*model;

	q->q_api = API_ANTHROPIC;
	if (qreq_parse_json(q, body, len, e) == -1)
		return -1;
	root = q->q_root;
	if (!json_object_is_type(root, json_type_object))
		return qerr_bad(e, "Input should be a JSON object");

	if (ant_str(root, "model", "", 1, &model, NULL, e) == -1)
		return -1;
	if (model[0] == '\0')
		return qerr_bad(e, "model: String should have at least 1 "
		    "character");
	q->q_model = model;

	if ((v = qjson_get(root, "max_tokens")) != NULL) {
		if (!json_object_is_type(v, json_type_int))
			return qerr_bad(e, "max_tokens: Input should be a valid "
			    "integer");
		if ((q->q_max_tokens = json_object_get_int64(v)) < 1)
			return qerr_bad(e, "max_tokens: Input should be greater "
			    "than or equal to 1");
	}
	if ((v = qjson_get(root, "stream")) != NULL) {
		if (!json_object_is_type(v, json_type_boolean))
			return qerr_bad(e, "stream: Input should be a valid "
			    "boolean");
		q->q_stream = json_object_get_boolean(v);
	}
	/* the top-level system comes before any role "system" message */
	if ((v = qjson_get(root, "system")) != NULL &&
	    ant_system(q, v, "system", e) == -1)
		return -1;
	if ((v = qjson_get(root, "messages")) == NULL)
		return qerr_bad(e, "messages: Field required");
	if (ant_messages(q, v, e) == -1)
		return -1;
	if ((v = qjson_get(root, "tools")) != NULL && ant_tools(q, v, e) == -1)
		return -1;
	if ((v = qjson_get(root, "tool_choice")) != NULL &&
	    ant_tool_choice(q, v, e) == -1)
		return -1;
	if ((v = qjson_get(root, "thinking")) != NULL &&
	    ant_thinking(q, v, e) == -1)
		return -1;
	if ((v = qjson_get(root, "output_config")) != NULL)
		ant_effort(q, v);
	/* temperature, top_p, top_k, stop_sequences, metadata,
	 * service_tier, container, mcp_servers, context_management, ...:
	 * nothing upstream to carry them, and refusing would break new
	 * clients. */
	return 0;
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

const char *
anthropic_error_type(int status)
{
	switch (status) {
	case 400:
		return "invalid_request_error";
	case 401:
		return "authentication_error";
	case 402:
		return "billing_error";
	case 403:
		return "permission_error";
	case 404:
		return "not_found_error";
	case 413:
		return "request_too_large";
	case 429:
		return "rate_limit_error";
	case 504:
		return "timeout_error";
	case 529:
		return "overloaded_error";
	}
	if (status >= 400 && status < 500)
		return "invalid_request_error";
	return "api_error";
}

struct json_object *
anthropic_error_json(int status, const char *type, const char *message)
{
	struct json_object	*o, *err;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	if ((err = json_object_new_object()) == NULL) {
		json_object_put(o);
		return NULL;
	}
	json_object_object_add(o, "type", json_object_new_string("error"));
	json_object_object_add(err, "type", json_object_new_string(
	    type != NULL ? type : anthropic_error_type(status)));
	json_object_object_add(err, "message", json_object_new_string(
	    message != NULL ? message : ""));
	json_object_object_add(o, "error", err);
	return o;
}

/* ------------------------------------------------------------------ */
/* rendering                                                           */

static const char *
ant_stop_reason(const struct render *rd, int stop)
{
	switch (stop) {
	case QSTOP_END_TURN:
		return "end_turn";
	case QSTOP_TOOL_USE:
		return "tool_use";
	case QSTOP_MAX_TOKENS:
		return "max_tokens";
	case QSTOP_CONTEXT:
		return "model_context_window_exceeded";
	}
	return rd->rd_ntools > 0 ? "tool_use" : "end_turn";
}

/* "event: X\ndata: <json>\n\n"; takes o. */
static int
ant_sse(struct buf *out, const char *event, struct json_object *o)
{
	int	 rc = -1;

	if (o == NULL)
		return -1;
	if (buf_printf(out, "event: %s\ndata: ", event) != -1 &&
	    qjson_append(out, o) != -1 &&
	    buf_append(out, "\n\n", 2) != -1)
		rc = 0;
	json_object_put(o);
	return rc;
}

/* s as a JSON string: json-c does the escaping. */
static int
ant_append_jstr(struct buf *out, const char *s, size_t len)
{
	struct json_object	*js;
	int			 rc;

	if (len > INT_MAX ||
	    (js = json_object_new_string_len(s, (int)len)) == NULL)
		return -1;
	rc = qjson_append(out, js);
	json_object_put(js);
	return rc;
}

/* The hot path: one delta, the JSON around the fragment written by
 * hand so that each costs one small json-c string. */
static int
ant_sse_delta(struct render *rd, struct buf *out, const char *dtype,
    const char *field, const char *s, size_t len)
{
	if (buf_printf(out, "event: content_block_delta\ndata: "
	    "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":"
	    "{\"type\":\"%s\",\"%s\":", rd->rd_block, dtype, field) == -1 ||
	    ant_append_jstr(out, s, len) == -1 ||
	    buf_puts(out, "}}\n\n") == -1)
		return -1;
	return 0;
}

static struct json_object *
ant_usage_json(const struct render *rd, int64_t out_tokens)
{
	struct json_object	*u;

	if ((u = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(u, "input_tokens",
	    json_object_new_int64(rd->rd_usage.u_in));
	json_object_object_add(u, "output_tokens",
	    json_object_new_int64(out_tokens));
	json_object_object_add(u, "cache_creation_input_tokens",
	    json_object_new_int64(0));
	json_object_object_add(u, "cache_read_input_tokens",
	    json_object_new_int64(0));
	return u;
}

static struct json_object *
ant_tool_block(const struct render *rd, const char *id, const char *name)
{
	struct json_object	*b;
	const char		*client;

	if (name == NULL)
		name = "";
	if ((client = qreq_tool_client_name(rd->rd_q, name)) == NULL)
		client = name;
	if ((b = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(b, "type", json_object_new_string("tool_use"));
	json_object_object_add(b, "id",
	    json_object_new_string(id != NULL ? id : ""));
	json_object_object_add(b, "name", json_object_new_string(client));
	json_object_object_add(b, "input", json_object_new_object());
	return b;
}

/* The whole text or thinking block now that it is over. */
static int
ant_acc_flush(struct render *rd)
{
	struct json_object	*b;
	struct buf		*src;
	const char		*type, *field;

	if (rd->rd_block_kind == BK_TEXT) {
		src = &rd->rd_text;
		type = field = "text";
	} else {
		src = &rd->rd_thinking;
		type = field = "thinking";
	}
	if (src->b_len > INT_MAX || (b = json_object_new_object()) == NULL)
		return -1;
	json_object_object_add(b, "type", json_object_new_string(type));
	json_object_object_add(b, field, json_object_new_string_len(
	    src->b_len > 0 ? src->b_data : "", (int)src->b_len));
	if (rd->rd_block_kind == BK_THINKING)
		json_object_object_add(b, "signature",
		    json_object_new_string(""));
	buf_reset(src);
	if (json_object_array_add(rd->rd_acc, b) == -1) {
		json_object_put(b);
		return -1;
	}
	return 0;
}

/* The tool's input from its concatenated argument fragments. */
static int
ant_acc_tool_input(struct render *rd)
{
	struct json_object	*b, *in = NULL;
	struct json_tokener	*tok;
	size_t			 n;

	n = json_object_array_length(rd->rd_acc);
	if (n == 0 || (b = json_object_array_get_idx(rd->rd_acc,
	    n - 1)) == NULL)
		return -1;
	if (rd->rd_args.b_len > 0 && rd->rd_args.b_len <= INT_MAX &&
	    (tok = json_tokener_new_ex(QR_JSON_DEPTH)) != NULL) {
		in = json_tokener_parse_ex(tok, rd->rd_args.b_data,
		    (int)rd->rd_args.b_len);
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(in);
			in = NULL;
		}
		json_tokener_free(tok);
	}
	if (rd->rd_args.b_len > 0 && !json_object_is_type(in,
	    json_type_object)) {
		log_warnx("%s: %s: tool arguments (%zu bytes) are not a JSON "
		    "object; sending {}", __func__, rd->rd_id,
		    rd->rd_args.b_len);
		json_object_put(in);
		in = NULL;
	}
	if (in == NULL && (in = json_object_new_object()) == NULL)
		return -1;
	buf_reset(&rd->rd_args);
	json_object_object_add(b, "input", in);
	return 0;
}

static int
ant_block_stop(struct render *rd, struct buf *out)
{
	int	 rc = 0;

	if (rd->rd_block == -1)
		return 0;
	if (rd->rd_stream)
		rc = buf_printf(out, "event: content_block_stop\ndata: "
		    "{\"type\":\"content_block_stop\",\"index\":%d}\n\n",
		    rd->rd_block);
	else if (rd->rd_block_kind == BK_TOOL)
		rc = ant_acc_tool_input(rd);
	else
		rc = ant_acc_flush(rd);
	rd->rd_block = -1;
	rd->rd_block_kind = BK_NONE;
	return rc == -1 ? -1 : 0;
}

static int
ant_block_start(struct render *rd, int kind, const struct qev *ev,
    struct buf *out)
{
	struct json_object	*o, *b = NULL;

	if (ant_block_stop(rd, out) == -1)
		return -1;
	rd->rd_block = rd->rd_nblocks++;
	rd->rd_block_kind = kind;
	if (kind != BK_THINKING)
		rd->rd_flags |= RF_ANSWER;
	if (kind == BK_TOOL) {
		rd->rd_ntools++;
		if ((b = ant_tool_block(rd, ev->qv_tool_id,
		    ev->qv_tool_name)) == NULL)
			return -1;
	}
	if (!rd->rd_stream) {
		/* a tool block holds its place now; text at its stop */
		if (b != NULL && json_object_array_add(rd->rd_acc, b) == -1) {
			json_object_put(b);
			return -1;
		}
		return 0;
	}
	switch (kind) {
	case BK_TEXT:
		return buf_printf(out, "event: content_block_start\ndata: "
		    "{\"type\":\"content_block_start\",\"index\":%d,"
		    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}"
		    "\n\n", rd->rd_block) == -1 ? -1 : 0;
	case BK_THINKING:
		return buf_printf(out, "event: content_block_start\ndata: "
		    "{\"type\":\"content_block_start\",\"index\":%d,"
		    "\"content_block\":{\"type\":\"thinking\",\"thinking\":"
		    "\"\",\"signature\":\"\"}}\n\n", rd->rd_block) == -1 ?
		    -1 : 0;
	}
	if ((o = json_object_new_object()) == NULL) {
		json_object_put(b);
		return -1;
	}
	json_object_object_add(o, "type",
	    json_object_new_string("content_block_start"));
	json_object_object_add(o, "index", json_object_new_int(rd->rd_block));
	json_object_object_add(o, "content_block", b);
	return ant_sse(out, "content_block_start", o);
}

static void
ant_new_id(char *id, size_t size)
{
	static const char	 alpha[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	    "abcdefghijkmnopqrstuvwxyz";	/* base58, as Anthropic's */
	unsigned char		 r[ANT_ID_CHARS];
	char			 s[ANT_ID_CHARS + 1];
	size_t			 i;

	if (random_bytes(r, sizeof(r)) == -1) {
		/* unique enough for an id the client only echoes */
		snprintf(id, size, "msg_01%016llx",
		    (unsigned long long)now_us());
		return;
	}
	for (i = 0; i < sizeof(r); i++)
		s[i] = alpha[r[i] % (sizeof(alpha) - 1)];
	s[i] = '\0';
	snprintf(id, size, "msg_01%s", s);
}

void
anthropic_render_init(struct render *rd, const struct qreq *q)
{
	memset(rd, 0, sizeof(*rd));
	rd->rd_api = API_ANTHROPIC;
	rd->rd_stream = q->q_stream;
	rd->rd_q = q;
	rd->rd_created = now_wall();
	rd->rd_block = -1;
	buf_init(&rd->rd_text);
	buf_init(&rd->rd_thinking);
	buf_init(&rd->rd_args);
	ant_new_id(rd->rd_id, sizeof(rd->rd_id));
}

static const char *
ant_model(const struct render *rd)
{
	return rd->rd_q != NULL && rd->rd_q->q_model != NULL ?
	    rd->rd_q->q_model : "";
}

int
anthropic_render_start(struct render *rd, struct buf *out)
{
	struct json_object	*o, *m;

	if (rd->rd_started)
		return 0;
	rd->rd_started = 1;
	if (!rd->rd_stream) {
		if (rd->rd_acc == NULL &&
		    (rd->rd_acc = json_object_new_array()) == NULL)
			return -1;
		return 0;
	}
	if ((o = json_object_new_object()) == NULL)
		return -1;
	if ((m = json_object_new_object()) == NULL) {
		json_object_put(o);
		return -1;
	}
	json_object_object_add(o, "type", json_object_new_string(
	    "message_start"));
	json_object_object_add(m, "id", json_object_new_string(rd->rd_id));
	json_object_object_add(m, "type", json_object_new_string("message"));
	json_object_object_add(m, "role", json_object_new_string("assistant"));
	json_object_object_add(m, "model", json_object_new_string(
	    ant_model(rd)));
	json_object_object_add(m, "content", json_object_new_array());
	json_object_object_add(m, "stop_reason", NULL);
	json_object_object_add(m, "stop_sequence", NULL);
	/* output_tokens 1, as the real API's first count */
	json_object_object_add(m, "usage", ant_usage_json(rd, 1));
	json_object_object_add(o, "message", m);
	return ant_sse(out, "message_start", o);
}

int
anthropic_render_ping(struct render *rd, struct buf *out)
{
	if (!rd->rd_stream || (rd->rd_flags & RF_ERROR))
		return 0;
	return buf_puts(out, "event: ping\ndata: {\"type\": \"ping\"}\n\n") ==
	    -1 ? -1 : 0;
}

/* The error as the client sees it: an error event in a stream, the
 * body (kept in rd_text until finish) otherwise. */
static int
ant_render_error(struct render *rd, int status, const char *type,
    const char *msg, struct buf *out)
{
	struct json_object	*o;

	if (status < 400)
		status = 500;
	if (type == NULL)
		type = anthropic_error_type(status);
	rd->rd_flags |= RF_ERROR;
	rd->rd_err_status = status;
	if (rd->rd_stream) {
		if (ant_block_stop(rd, out) == -1)
			return -1;
		return ant_sse(out, "error",
		    anthropic_error_json(status, type, msg));
	}
	/* what was said so far is not worth a partial answer */
	rd->rd_block = -1;
	rd->rd_block_kind = BK_NONE;
	buf_reset(&rd->rd_text);
	if ((o = anthropic_error_json(status, type, msg)) == NULL)
		return -1;
	if (qjson_append(&rd->rd_text, o) == -1) {
		json_object_put(o);
		return -1;
	}
	json_object_put(o);
	return 0;
}

int
anthropic_render_event(struct render *rd, const struct qev *ev,
    struct buf *out)
{
	if (rd->rd_flags & RF_ERROR)
		return 0;
	if (!rd->rd_started && anthropic_render_start(rd, out) == -1)
		return -1;

	switch (ev->qv_type) {
	case QEV_TEXT:
		if (ev->qv_len == 0)
			return 0;
		if (rd->rd_block_kind != BK_TEXT &&
		    ant_block_start(rd, BK_TEXT, ev, out) == -1)
			return -1;
		if (!rd->rd_stream)
			return buf_append(&rd->rd_text, ev->qv_text,
			    ev->qv_len);
		return ant_sse_delta(rd, out, "text_delta", "text",
		    ev->qv_text, ev->qv_len);
	case QEV_THINKING:
		if (ev->qv_len == 0)
			return 0;
		if (rd->rd_block_kind != BK_THINKING &&
		    ant_block_start(rd, BK_THINKING, ev, out) == -1)
			return -1;
		if (!rd->rd_stream)
			return buf_append(&rd->rd_thinking, ev->qv_text,
			    ev->qv_len);
		return ant_sse_delta(rd, out, "thinking_delta", "thinking",
		    ev->qv_text, ev->qv_len);
	case QEV_TOOL_START:
		return ant_block_start(rd, BK_TOOL, ev, out);
	case QEV_TOOL_ARGS:
		if (rd->rd_block_kind != BK_TOOL) {
			log_warnx("%s: %s: tool arguments outside a tool call",
			    __func__, rd->rd_id);
			return 0;
		}
		if (ev->qv_len == 0)
			return 0;
		if (!rd->rd_stream)
			return buf_append(&rd->rd_args, ev->qv_text,
			    ev->qv_len);
		return ant_sse_delta(rd, out, "input_json_delta",
		    "partial_json", ev->qv_text, ev->qv_len);
	case QEV_TOOL_STOP:
		if (rd->rd_block_kind != BK_TOOL)
			return 0;
		return ant_block_stop(rd, out);
	case QEV_ERROR:
		return ant_render_error(rd, ev->qv_status, ev->qv_err_type,
		    ev->qv_err_msg, out);
	}
	return 0;
}

static int
ant_finish_message(struct render *rd, int stop, struct buf *out)
{
	struct json_object	*m;
	int			 rc;

	if ((m = json_object_new_object()) == NULL)
		return -1;
	json_object_object_add(m, "id", json_object_new_string(rd->rd_id));
	json_object_object_add(m, "type", json_object_new_string("message"));
	json_object_object_add(m, "role", json_object_new_string("assistant"));
	json_object_object_add(m, "model", json_object_new_string(
	    ant_model(rd)));
	json_object_object_add(m, "content", rd->rd_acc);
	rd->rd_acc = NULL;	/* m owns it now */
	json_object_object_add(m, "stop_reason", json_object_new_string(
	    ant_stop_reason(rd, stop)));
	json_object_object_add(m, "stop_sequence", NULL);
	json_object_object_add(m, "usage", ant_usage_json(rd,
	    rd->rd_usage.u_out));
	rc = qjson_append(out, m);
	json_object_put(m);
	return rc;
}

int
anthropic_render_finish(struct render *rd, int stop, struct buf *out)
{
	struct json_object	*o, *d;

	if (!(rd->rd_flags & RF_ERROR) && stop == QSTOP_ERROR &&
	    ant_render_error(rd, 500, NULL, "The upstream response failed.",
	    out) == -1)
		return -1;
	if (rd->rd_flags & RF_ERROR) {
		if (rd->rd_stream)
			return 0;
		if (buf_append(out, rd->rd_text.b_data,
		    rd->rd_text.b_len) == -1)
			return -1;
		return rd->rd_err_status;
	}
	if (!rd->rd_started && anthropic_render_start(rd, out) == -1)
		return -1;
	if (ant_block_stop(rd, out) == -1)
		return -1;
	/* Thinking alone (or nothing) still gets a text block: clients
	 * look for one, and peers send it (reference section 7.2). */
	if (!(rd->rd_flags & RF_ANSWER)) {
		if (ant_block_start(rd, BK_TEXT, NULL, out) == -1 ||
		    ant_block_stop(rd, out) == -1)
			return -1;
	}
	if (!rd->rd_stream)
		return ant_finish_message(rd, stop, out);

	if ((o = json_object_new_object()) == NULL)
		return -1;
	if ((d = json_object_new_object()) == NULL) {
		json_object_put(o);
		return -1;
	}
	json_object_object_add(o, "type", json_object_new_string(
	    "message_delta"));
	json_object_object_add(d, "stop_reason", json_object_new_string(
	    ant_stop_reason(rd, stop)));
	json_object_object_add(d, "stop_sequence", NULL);
	json_object_object_add(o, "delta", d);
	json_object_object_add(o, "usage", ant_usage_json(rd,
	    rd->rd_usage.u_out));
	if (ant_sse(out, "message_delta", o) == -1)
		return -1;
	return buf_puts(out, "event: message_stop\ndata: "
	    "{\"type\":\"message_stop\"}\n\n") == -1 ? -1 : 0;
}
