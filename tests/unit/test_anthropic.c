/*
 * test_anthropic.c - unit tests for anthropic.c: parsing Messages bodies
 * into struct qreq (every block type, system forms, role "system"
 * entries, thinking, unknown fields, errors naming the field), and the
 * renderers: SSE streams parsed back and checked event by event, the
 * non-streaming message, errors.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static struct qreq	 q;
static struct qerr	 qe;

static void
setup(void)
{
	qreq_init(&q, API_ANTHROPIC);
	memset(&qe, 0, sizeof(qe));
}

static void
teardown(void)
{
	qreq_free(&q);
}

static int
parse(const char *body)
{
	return anthropic_parse(&q, body, strlen(body), &qe);
}

static int
part_is(const struct qpart *p, int kind, const char *text)
{
	return p->qp_kind == kind && p->qp_text_len == strlen(text) &&
	    memcmp(p->qp_text, text, p->qp_text_len) == 0;
}

static void
fresh(void)
{
	qreq_free(&q);
	qreq_init(&q, API_ANTHROPIC);
}

static void
expect_bad(const char *body, const char *msg)
{
	fresh();
	cr_assert_eq(parse(body), -1, "accepted: %s", body);
	cr_expect_eq(qe.qe_status, 400);
	cr_expect_str_eq(qe.qe_type, "invalid_request_error");
	if (msg != NULL)
		cr_expect(strstr(qe.qe_msg, msg) != NULL,
		    "message \"%s\" lacks \"%s\"", qe.qe_msg, msg);
}

/* ------------------------------------------------------------------ */
/* parsing                                                             */

TestSuite(ant_parse, .init = setup, .fini = teardown);

Test(ant_parse, minimal)
{
	cr_assert_eq(parse("{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":"
	    "1024,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}"), 0,
	    "%s", qe.qe_msg);
	cr_expect_eq(q.q_api, API_ANTHROPIC);
	cr_expect_str_eq(q.q_model, "claude-sonnet-4-5");
	cr_expect_eq(q.q_max_tokens, 1024);
	cr_expect_eq(q.q_stream, 0);
	cr_expect_eq(q.q_system.b_len, 0);
	cr_expect_eq(q.q_thinking, QTH_OFF);
	cr_expect_eq(q.q_tool_choice, QTC_AUTO);
	cr_assert_eq(q.q_nmsgs, 1);
	cr_expect_eq(q.q_msgs[0].qm_role, QROLE_USER);
	cr_assert_eq(q.q_msgs[0].qm_nparts, 1);
	cr_expect(part_is(&q.q_msgs[0].qm_parts[0], QP_TEXT, "Hi"));
}

Test(ant_parse, stream_and_no_max_tokens)
{
	cr_assert_eq(parse("{\"model\":\"m\",\"stream\":true,\"messages\":"
	    "[{\"role\":\"user\",\"content\":\"x\"}]}"), 0, "%s", qe.qe_msg);
	cr_expect_eq(q.q_stream, 1);
	cr_expect_eq(q.q_max_tokens, 0);
}

Test(ant_parse, system_string_and_role_system_entries)
{
	cr_assert_eq(parse("{\"model\":\"m\",\"max_tokens\":5,"
	    "\"system\":\"A\",\"messages\":["
	    "{\"role\":\"system\",\"content\":\"B\"},"
	    "{\"role\":\"user\",\"content\":\"u1\"},"
	    "{\"role\":\"system\",\"content\":[{\"type\":\"text\","
	    "\"text\":\"C\",\"cache_control\":{\"type\":\"ephemeral\"}}]},"
	    "{\"role\":\"assistant\",\"content\":\"a1\"},"
	    "{\"role\":\"user\",\"content\":\"u2\"}]}"), 0, "%s", qe.qe_msg);
	cr_assert_eq(q.q_system.b_len, strlen("A\n\nB\n\nC"));
	cr_expect(memcmp(q.q_system.b_data, "A\n\nB\n\nC", 7) == 0);
	cr_assert_eq(q.q_nmsgs, 3);
	cr_expect_eq(q.q_msgs[0].qm_role, QROLE_USER);
	cr_expect_eq(q.q_msgs[1].qm_role, QROLE_ASSISTANT);
	cr_expect(part_is(&q.q_msgs[2].qm_parts[0], QP_TEXT, "u2"));
}

Test(ant_parse, system_blocks)
{
	cr_assert_eq(parse("{\"model\":\"m\",\"system\":["
	    "{\"type\":\"text\",\"text\":\"You are Claude Code.\","
	    "\"cache_control\":{\"type\":\"ephemeral\"}},"
	    "{\"type\":\"text\",\"text\":\"Be brief.\"}],"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"), 0,
	    "%s", qe.qe_msg);
	cr_expect_str_eq(q.q_system.b_data, "You are Claude Code.\n\nBe brief.");
	expect_bad("{\"model\":\"m\",\"system\":[{\"type\":\"image\"}],"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
	    "system.0.type");
	expect_bad("{\"model\":\"m\",\"system\":5,"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
	    "system:");
}

Test(ant_parse, every_block_type)
{
	const struct qmsg	*m;
	const struct qpart	*p;

	cr_assert_eq(parse("{\"model\":\"m\",\"max_tokens\":10,\"messages\":["
	    "{\"role\":\"user\",\"content\":["
	    "{\"type\":\"text\",\"text\":\"look\",\"cache_control\":"
	    "{\"type\":\"ephemeral\"}},"
	    "{\"type\":\"image\",\"source\":{\"type\":\"base64\","
	    "\"media_type\":\"image/jpeg\",\"data\":\"QUJD\"}}]},"
	    "{\"role\":\"assistant\",\"content\":["
	    "{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"sig\"},"
	    "{\"type\":\"redacted_thinking\",\"data\":\"xx\"},"
	    "{\"type\":\"text\",\"text\":\"ok\",\"citations\":null},"
	    "{\"type\":\"tool_use\",\"id\":\"tooluse_1\",\"name\":\"get\","
	    "\"input\":{\"a\":1}}]},"
	    "{\"role\":\"user\",\"content\":["
	    "{\"type\":\"tool_result\",\"tool_use_id\":\"tooluse_1\","
	    "\"content\":\"42\",\"is_error\":true}]}]}"), 0, "%s", qe.qe_msg);
	cr_assert_eq(q.q_nmsgs, 3);

	m = &q.q_msgs[0];
	cr_assert_eq(m->qm_nparts, 2);
	cr_expect(part_is(&m->qm_parts[0], QP_TEXT, "look"));
	p = &m->qm_parts[1];
	cr_expect_eq(p->qp_kind, QP_IMAGE);
	cr_expect_str_eq(p->qp_image_format, "jpeg");
	cr_expect_eq(p->qp_image_len, 4);
	cr_expect(memcmp(p->qp_image_b64, "QUJD", 4) == 0);

	m = &q.q_msgs[1];
	cr_assert_eq(m->qm_nparts, 3, "redacted_thinking is skipped");
	cr_expect(part_is(&m->qm_parts[0], QP_THINKING, "hmm"));
	cr_expect(part_is(&m->qm_parts[1], QP_TEXT, "ok"));
	p = &m->qm_parts[2];
	cr_expect_eq(p->qp_kind, QP_TOOL_USE);
	cr_expect_str_eq(p->qp_tool_id, "tooluse_1");
	cr_expect_str_eq(p->qp_tool_name, "get");
	cr_assert(json_object_is_type(p->qp_tool_input, json_type_object));
	cr_expect_eq(json_object_get_int(json_object_object_get(
	    p->qp_tool_input, "a")), 1);

	m = &q.q_msgs[2];
	cr_assert_eq(m->qm_nparts, 1);
	p = &m->qm_parts[0];
	cr_expect(part_is(p, QP_TOOL_RESULT, "42"));
	cr_expect_str_eq(p->qp_tool_id, "tooluse_1");
	cr_expect_eq(p->qp_tool_error, 1);
}

Test(ant_parse, tool_result_blocks)
{
	const struct qmsg	*m;

	cr_assert_eq(parse("{\"model\":\"m\",\"messages\":["
	    "{\"role\":\"user\",\"content\":\"go\"},"
	    "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\","
	    "\"id\":\"t1\",\"name\":\"n\",\"input\":{}},{\"type\":\"tool_use\","
	    "\"id\":\"t2\",\"name\":\"n\",\"input\":{}}]},"
	    "{\"role\":\"user\",\"content\":["
	    "{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":["
	    "{\"type\":\"text\",\"text\":\"line1\"},"
	    "{\"type\":\"image\",\"source\":{\"type\":\"base64\","
	    "\"media_type\":\"image/png\",\"data\":\"iVBO\"}},"
	    "{\"type\":\"text\",\"text\":\"line2\"}]},"
	    "{\"type\":\"tool_result\",\"tool_use_id\":\"t2\"},"
	    "{\"type\":\"text\",\"text\":\"\"}]}]}"), 0, "%s", qe.qe_msg);
	m = &q.q_msgs[2];
	cr_assert_eq(m->qm_nparts, 3, "result, its image, empty result");
	cr_expect(part_is(&m->qm_parts[0], QP_TOOL_RESULT, "line1\nline2"));
	cr_expect_str_eq(m->qm_parts[0].qp_tool_id, "t1");
	cr_expect_eq(m->qm_parts[0].qp_tool_error, 0);
	cr_expect_eq(m->qm_parts[1].qp_kind, QP_IMAGE);
	cr_expect_str_eq(m->qm_parts[1].qp_image_format, "png");
	cr_expect(part_is(&m->qm_parts[2], QP_TOOL_RESULT, ""));
	cr_expect_str_eq(m->qm_parts[2].qp_tool_id, "t2");
}

Test(ant_parse, tools_and_choice)
{
	cr_assert_eq(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"}],\"tools\":["
	    "{\"name\":\"Bash\",\"description\":\"Run\",\"input_schema\":"
	    "{\"type\":\"object\",\"properties\":{}},\"cache_control\":"
	    "{\"type\":\"ephemeral\"}},"
	    "{\"type\":\"web_search_20250305\",\"name\":\"web_search\","
	    "\"max_uses\":5},"
	    "{\"type\":\"custom\",\"name\":\"Read\",\"input_schema\":"
	    "{\"type\":\"object\"}}],"
	    "\"tool_choice\":{\"type\":\"tool\",\"name\":\"Bash\","
	    "\"disable_parallel_tool_use\":true}}"), 0, "%s", qe.qe_msg);
	cr_assert_eq(q.q_ntools, 2, "the server tool is skipped");
	cr_expect_str_eq(q.q_tools[0].qt_name, "Bash");
	cr_expect_str_eq(q.q_tools[0].qt_description, "Run");
	cr_expect(json_object_is_type(q.q_tools[0].qt_schema,
	    json_type_object));
	cr_expect_str_eq(q.q_tools[1].qt_name, "Read");
	cr_expect_null(q.q_tools[1].qt_description);
	cr_expect_eq(q.q_tool_choice, QTC_TOOL);
	cr_expect_str_eq(q.q_tool_choice_name, "Bash");
}

Test(ant_parse, tool_choice_kinds)
{
	static const struct { const char *t; int v; } tc[] = {
		{ "auto", QTC_AUTO }, { "any", QTC_ANY }, { "none", QTC_NONE },
	};
	char	 body[256];
	size_t	 i;

	for (i = 0; i < nitems(tc); i++) {
		snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":"
		    "[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":"
		    "{\"type\":\"%s\"}}", tc[i].t);
		cr_assert_eq(parse(body), 0, "%s", qe.qe_msg);
		cr_expect_eq(q.q_tool_choice, tc[i].v, "%s", tc[i].t);
		fresh();
	}
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"}],\"tool_choice\":{\"type\":\"tool\"}}",
	    "tool_choice.name: Field required");
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"}],\"tool_choice\":{\"type\":\"some\"}}",
	    "tool_choice.type");
}

Test(ant_parse, thinking_enabled)
{
	cr_assert_eq(parse("{\"model\":\"m\",\"max_tokens\":32000,"
	    "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":10000},"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"), 0,
	    "%s", qe.qe_msg);
	cr_expect_eq(q.q_thinking, QTH_ENABLED);
	cr_expect_eq(q.q_thinking_budget, 10000);
}

Test(ant_parse, thinking_adaptive_with_effort)
{
	cr_assert_eq(parse("{\"model\":\"claude-opus-5-5\",\"thinking\":"
	    "{\"type\":\"adaptive\"},\"output_config\":{\"effort\":\"medium\","
	    "\"format\":null},\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"}]}"), 0, "%s", qe.qe_msg);
	cr_expect_eq(q.q_thinking, QTH_ADAPTIVE);
	cr_assert_not_null(q.q_effort);
	cr_expect_str_eq(q.q_effort, "medium");
}

Test(ant_parse, thinking_disabled_and_bad)
{
	cr_assert_eq(parse("{\"model\":\"m\",\"thinking\":{\"type\":"
	    "\"disabled\"},\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"}]}"), 0, "%s", qe.qe_msg);
	cr_expect_eq(q.q_thinking, QTH_OFF);
	expect_bad("{\"model\":\"m\",\"thinking\":{\"type\":\"maybe\"},"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
	    "thinking.type");
	expect_bad("{\"model\":\"m\",\"thinking\":{\"type\":\"enabled\"},"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
	    "thinking.enabled.budget_tokens: Field required");
	expect_bad("{\"model\":\"m\",\"thinking\":{\"type\":\"enabled\","
	    "\"budget_tokens\":\"many\"},\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"}]}", "thinking.enabled.budget_tokens");
}

Test(ant_parse, unknown_fields_ignored)
{
	cr_assert_eq(parse("{\"model\":\"claude-opus-5-5\",\"max_tokens\":"
	    "32000,\"context_management\":{\"edits\":[{\"type\":"
	    "\"clear_thinking_20251015\"}]},\"metadata\":{\"user_id\":\"u\"},"
	    "\"service_tier\":\"auto\",\"container\":null,\"mcp_servers\":[],"
	    "\"temperature\":1,\"stop_sequences\":[\"X\"],\"betas\":[\"b\"],"
	    "\"future_field\":{\"deep\":[1,2,3]},"
	    "\"messages\":[{\"role\":\"user\",\"id\":\"ignored\",\"content\":"
	    "[{\"type\":\"text\",\"text\":\"hi\",\"cache_control\":{\"type\":"
	    "\"ephemeral\",\"ttl\":\"1h\"},\"whatever\":7}]}]}"), 0,
	    "%s", qe.qe_msg);
	cr_assert_eq(q.q_nmsgs, 1);
	cr_expect(part_is(&q.q_msgs[0].qm_parts[0], QP_TEXT, "hi"));
}

Test(ant_parse, final_empty_assistant_dropped)
{
	cr_assert_eq(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"\"}]}"),
	    0, "%s", qe.qe_msg);
	cr_expect_eq(q.q_nmsgs, 1);
}

Test(ant_parse, errors_name_the_field)
{
	const char	*u = "{\"role\":\"user\",\"content\":\"x\"}";
	char		 body[512];

	expect_bad("{\"model\":\"m\",\"max_tokens\":1}",
	    "messages: Field required");
	expect_bad("{\"model\":\"m\",\"messages\":{}}",
	    "messages: Input should be a valid list");
	expect_bad("{\"model\":\"m\",\"messages\":[]}", "messages:");
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[%s,"
	    "{\"role\":\"assistant\",\"content\":\"a\"},{\"role\":\"tool\","
	    "\"content\":\"x\"}]}", u);
	expect_bad(body,
	    "messages.2.role: Input should be 'user' or 'assistant'");
	expect_bad("{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
	    "messages.0.role: Field required");
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
	    "messages.0.content: Field required");
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"\"}]}", "messages.0: all messages must have "
	    "non-empty content");
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":[]}]}", "messages.0:");
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":[{\"type\":\"text\",\"text\":\"\"}]}]}",
	    "messages.0:");
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":5}]}", "messages.0.content:");
	expect_bad("{\"model\":\"m\",\"messages\":[5]}",
	    "messages.0: Input should be a valid dictionary");
	snprintf(body, sizeof(body), "{\"messages\":[%s]}", u);
	expect_bad(body, "model: Field required");
	snprintf(body, sizeof(body), "{\"model\":7,\"messages\":[%s]}", u);
	expect_bad(body, "model: Input should be a valid string");
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"max_tokens\":\"9\","
	    "\"messages\":[%s]}", u);
	expect_bad(body, "max_tokens: Input should be a valid integer");
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"max_tokens\":0,"
	    "\"messages\":[%s]}", u);
	expect_bad(body, "max_tokens: Input should be greater than");
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"max_tokens\":1.5,"
	    "\"messages\":[%s]}", u);
	expect_bad(body, "max_tokens");
	snprintf(body, sizeof(body), "{\"model\":\"m\",\"stream\":\"yes\","
	    "\"messages\":[%s]}", u);
	expect_bad(body, "stream: Input should be a valid boolean");
	expect_bad("[1,2]", "JSON object");
	expect_bad("{\"model\":", NULL);
}

Test(ant_parse, block_errors)
{
	char		 body[512];
	const char	*pre = "{\"model\":\"m\",\"messages\":[{\"role\":"
	    "\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":"
	    "\"y\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
	    "\"text\":\"z\"},";

#define BLK(b)	(snprintf(body, sizeof(body), "%s%s]}]}", pre, (b)), body)
	expect_bad(BLK("{\"type\":\"document\",\"source\":{}}"),
	    "messages.2.content.1.type: content block type 'document' is "
	    "not supported");
	expect_bad(BLK("{\"type\":\"search_result\"}"), "'search_result'");
	expect_bad(BLK("{\"text\":\"no type\"}"),
	    "messages.2.content.1.type: Field required");
	expect_bad(BLK("{\"type\":\"image\",\"source\":{\"type\":\"url\","
	    "\"url\":\"https://example.com/a.png\"}}"),
	    "messages.2.content.1.image.source");
	expect_bad(BLK("{\"type\":\"image\",\"source\":{\"type\":\"base64\","
	    "\"media_type\":\"image/bmp\",\"data\":\"QUJD\"}}"),
	    "messages.2.content.1.image.source.base64.media_type");
	expect_bad(BLK("{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\"}"),
	    "messages.2.content.1.tool_use.input: Field required");
	expect_bad(BLK("{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\","
	    "\"input\":\"{}\"}"), "tool_use.input: Input should be a valid "
	    "dictionary");
	expect_bad(BLK("{\"type\":\"tool_result\",\"content\":\"r\"}"),
	    "messages.2.content.1.tool_result.tool_use_id: Field required");
	expect_bad(BLK("{\"type\":\"tool_result\",\"tool_use_id\":\"t\","
	    "\"content\":[{\"type\":\"document\"}]}"),
	    "messages.2.content.1.tool_result.content.0.type");
	expect_bad(BLK("{\"type\":\"text\",\"text\":5}"),
	    "messages.2.content.1.text.text: Input should be a valid string");
	expect_bad(BLK("7"), "messages.2.content.1: Input should be a valid "
	    "dictionary");
#undef BLK
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"}],\"tools\":[{\"name\":\"a\"}]}",
	    "tools.0.input_schema: Field required");
	expect_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"x\"}],\"tools\":{}}", "tools:");
}

Test(ant_parse, image_too_big)
{
	size_t	 n = 7 * 1024 * 1024 + 100, off;
	char	*body = malloc(n + 256);
	char	*p;

	cr_assert_not_null(body);
	off = (size_t)sprintf(body, "{\"model\":\"m\",\"messages\":[{\"role\":"
	    "\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":"
	    "\"base64\",\"media_type\":\"image/png\",\"data\":\"");
	p = body + off;
	memset(p, 'A', n);
	strcpy(p + n, "\"}}]}]}");
	expect_bad(body, "image exceeds 5 MB");
	free(body);
}

/* ------------------------------------------------------------------ */
/* rendering                                                           */

struct sse {
	char			 name[64];
	struct json_object	*data;
};

static struct sse	 ev[64];
static size_t		 nev;
static struct render	 rd;
static struct buf	 out;

static void
rsetup(void)
{
	setup();
	q.q_model = "claude-sonnet-4-5";
	nev = 0;
	buf_init(&out);
}

static void
rteardown(void)
{
	size_t	 i;

	for (i = 0; i < nev; i++)
		json_object_put(ev[i].data);
	buf_free(&rd.rd_text);
	buf_free(&rd.rd_thinking);
	buf_free(&rd.rd_args);
	json_object_put(rd.rd_acc);
	buf_free(&out);
	teardown();
}

/* Splits out into SSE events; every data line must be JSON whose type
 * is the event's name. */
static void
sse_parse(void)
{
	char	*s, *end, *nl;

	cr_assert_not_null(out.b_data);
	s = out.b_data;
	while (*s != '\0') {
		cr_assert_lt(nev, nitems(ev));
		end = strstr(s, "\n\n");
		cr_assert_not_null(end, "unterminated event: %s", s);
		*end = '\0';
		cr_assert_eq(strncmp(s, "event: ", 7), 0, "bad line: %s", s);
		nl = strchr(s, '\n');
		cr_assert_not_null(nl);
		*nl = '\0';
		strlcpy_qr(ev[nev].name, s + 7, sizeof(ev[nev].name));
		cr_assert_eq(strncmp(nl + 1, "data: ", 6), 0);
		ev[nev].data = json_tokener_parse(nl + 7);
		cr_assert_not_null(ev[nev].data, "bad JSON: %s", nl + 7);
		cr_assert_str_eq(json_object_get_string(json_object_object_get(
		    ev[nev].data, "type")), ev[nev].name);
		nev++;
		s = end + 2;
	}
}

/* value at a dotted path ("delta.type") */
static struct json_object *
jget(struct json_object *o, const char *path)
{
	char	 key[64], *dot;

	while (o != NULL && *path != '\0') {
		strlcpy_qr(key, path, sizeof(key));
		if ((dot = strchr(key, '.')) != NULL)
			*dot = '\0';
		path += strlen(key);
		if (*path == '.')
			path++;
		if (json_object_is_type(o, json_type_array))
			o = json_object_array_get_idx(o, (size_t)atoi(key));
		else
			o = json_object_object_get(o, key);
	}
	return o;
}

static const char *
jstr(struct json_object *o, const char *path)
{
	struct json_object	*v = jget(o, path);

	return v != NULL ? json_object_get_string(v) : "(absent)";
}

static int64_t
jint(struct json_object *o, const char *path)
{
	return json_object_get_int64(jget(o, path));
}

static void
send_ev(int type, const char *text, const char *id, const char *name)
{
	struct qev	 e;

	memset(&e, 0, sizeof(e));
	e.qv_type = type;
	e.qv_text = text;
	e.qv_len = text != NULL ? strlen(text) : 0;
	e.qv_tool_id = id;
	e.qv_tool_name = name;
	cr_assert_eq(anthropic_render_event(&rd, &e, &out), 0);
}

static void
send_error(int status, const char *type, const char *msg)
{
	struct qev	 e;

	memset(&e, 0, sizeof(e));
	e.qv_type = QEV_ERROR;
	e.qv_status = status;
	e.qv_err_type = type;
	e.qv_err_msg = msg;
	cr_assert_eq(anthropic_render_event(&rd, &e, &out), 0);
}

static void
expect_names(const char *const *names, size_t n)
{
	size_t	 i;

	cr_assert_eq(nev, n, "%zu events, expected %zu", nev, n);
	for (i = 0; i < n; i++)
		cr_expect_str_eq(ev[i].name, names[i], "event %zu", i);
}

TestSuite(ant_render, .init = rsetup, .fini = rteardown);

Test(ant_render, stream_thinking_text_tool)
{
	static const char *const names[] = {
		"message_start",
		"content_block_start", "content_block_delta",
		"content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta", "ping",
		"content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta",
		"content_block_delta", "content_block_stop",
		"message_delta", "message_stop",
	};
	struct json_object	*in;
	char			 args[64];

	q.q_stream = 1;
	anthropic_render_init(&rd, &q);
	cr_expect_eq(strncmp(rd.rd_id, "msg_", 4), 0);
	rd.rd_usage.u_in = 42;
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	send_ev(QEV_THINKING, "Let me", NULL, NULL);
	send_ev(QEV_THINKING, " think", NULL, NULL);
	send_ev(QEV_TEXT, "Hello \"you\"\n", NULL, NULL);
	cr_assert_eq(anthropic_render_ping(&rd, &out), 0);
	send_ev(QEV_TEXT, "caf\xc3\xa9", NULL, NULL);
	send_ev(QEV_TOOL_START, NULL, "tooluse_AbC", "get_weather");
	send_ev(QEV_TOOL_ARGS, "{\"city\":", "tooluse_AbC", NULL);
	send_ev(QEV_TOOL_ARGS, "\"Paris\"}", "tooluse_AbC", NULL);
	send_ev(QEV_TOOL_STOP, NULL, "tooluse_AbC", NULL);
	rd.rd_usage.u_out = 17;
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_TOOL_USE, &out), 0);
	sse_parse();
	expect_names(names, nitems(names));

	cr_expect_str_eq(jstr(ev[0].data, "message.id"), rd.rd_id);
	cr_expect_str_eq(jstr(ev[0].data, "message.model"),
	    "claude-sonnet-4-5");
	cr_expect_str_eq(jstr(ev[0].data, "message.role"), "assistant");
	cr_expect_eq(json_object_array_length(jget(ev[0].data,
	    "message.content")), 0);
	cr_expect_null(jget(ev[0].data, "message.stop_reason"));
	cr_expect_eq(jint(ev[0].data, "message.usage.input_tokens"), 42);
	cr_expect_eq(jint(ev[0].data, "message.usage.output_tokens"), 1);

	cr_expect_eq(jint(ev[1].data, "index"), 0);
	cr_expect_str_eq(jstr(ev[1].data, "content_block.type"), "thinking");
	cr_expect_str_eq(jstr(ev[1].data, "content_block.signature"), "");
	cr_expect_str_eq(jstr(ev[2].data, "delta.type"), "thinking_delta");
	cr_expect_str_eq(jstr(ev[2].data, "delta.thinking"), "Let me");
	cr_expect_str_eq(jstr(ev[3].data, "delta.thinking"), " think");
	cr_expect_eq(jint(ev[4].data, "index"), 0);

	cr_expect_eq(jint(ev[5].data, "index"), 1);
	cr_expect_str_eq(jstr(ev[5].data, "content_block.type"), "text");
	cr_expect_str_eq(jstr(ev[6].data, "delta.type"), "text_delta");
	cr_expect_str_eq(jstr(ev[6].data, "delta.text"), "Hello \"you\"\n");
	cr_expect_eq(jint(ev[6].data, "index"), 1);
	cr_expect_str_eq(jstr(ev[8].data, "delta.text"), "caf\xc3\xa9");
	cr_expect_eq(jint(ev[9].data, "index"), 1);

	cr_expect_eq(jint(ev[10].data, "index"), 2);
	cr_expect_str_eq(jstr(ev[10].data, "content_block.type"), "tool_use");
	cr_expect_str_eq(jstr(ev[10].data, "content_block.id"),
	    "tooluse_AbC");
	cr_expect_str_eq(jstr(ev[10].data, "content_block.name"),
	    "get_weather");
	cr_expect(json_object_is_type(jget(ev[10].data,
	    "content_block.input"), json_type_object));
	cr_expect_str_eq(jstr(ev[11].data, "delta.type"), "input_json_delta");
	snprintf(args, sizeof(args), "%s%s",
	    jstr(ev[11].data, "delta.partial_json"),
	    jstr(ev[12].data, "delta.partial_json"));
	in = json_tokener_parse(args);
	cr_assert_not_null(in, "args %s", args);
	cr_expect_str_eq(jstr(in, "city"), "Paris");
	json_object_put(in);
	cr_expect_eq(jint(ev[13].data, "index"), 2);

	cr_expect_str_eq(jstr(ev[14].data, "delta.stop_reason"), "tool_use");
	cr_expect(json_object_object_get_ex(jget(ev[14].data, "delta"),
	    "stop_sequence", &in) && in == NULL);
	cr_expect_eq(jint(ev[14].data, "usage.output_tokens"), 17);
	cr_expect_eq(jint(ev[14].data, "usage.input_tokens"), 42);
}

Test(ant_render, stream_text_end_turn)
{
	q.q_stream = 1;
	anthropic_render_init(&rd, &q);
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	send_ev(QEV_TEXT, "Hi", NULL, NULL);
	send_ev(QEV_TEXT, "", NULL, NULL);	/* nothing to say: no event */
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_END_TURN, &out), 0);
	sse_parse();
	cr_assert_eq(nev, 6);
	cr_expect_str_eq(ev[2].name, "content_block_delta");
	cr_expect_str_eq(ev[3].name, "content_block_stop");
	cr_expect_str_eq(jstr(ev[4].data, "delta.stop_reason"), "end_turn");
}

Test(ant_render, stream_thinking_only_gets_text_block)
{
	static const char *const names[] = {
		"message_start", "content_block_start", "content_block_delta",
		"content_block_stop", "content_block_start",
		"content_block_stop", "message_delta", "message_stop",
	};

	q.q_stream = 1;
	anthropic_render_init(&rd, &q);
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	send_ev(QEV_THINKING, "only thoughts", NULL, NULL);
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_MAX_TOKENS, &out), 0);
	sse_parse();
	expect_names(names, nitems(names));
	cr_expect_str_eq(jstr(ev[4].data, "content_block.type"), "text");
	cr_expect_eq(jint(ev[4].data, "index"), 1);
	cr_expect_eq(jint(ev[5].data, "index"), 1);
	cr_expect_str_eq(jstr(ev[6].data, "delta.stop_reason"), "max_tokens");
}

Test(ant_render, stream_context_stop)
{
	q.q_stream = 1;
	anthropic_render_init(&rd, &q);
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	send_ev(QEV_TEXT, "x", NULL, NULL);
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_CONTEXT, &out), 0);
	sse_parse();
	cr_assert_eq(nev, 6);
	cr_expect_str_eq(jstr(ev[4].data, "delta.stop_reason"),
	    "model_context_window_exceeded");
}

Test(ant_render, stream_error)
{
	static const char *const names[] = {
		"message_start", "content_block_start", "content_block_delta",
		"content_block_stop", "error",
	};

	q.q_stream = 1;
	anthropic_render_init(&rd, &q);
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	send_ev(QEV_TEXT, "partial", NULL, NULL);
	send_error(429, "rate_limit_error", "Too many requests");
	send_ev(QEV_TEXT, "after", NULL, NULL);	/* ignored */
	cr_assert_eq(anthropic_render_ping(&rd, &out), 0);
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_ERROR, &out), 0);
	sse_parse();
	expect_names(names, nitems(names));
	cr_expect_str_eq(jstr(ev[4].data, "error.type"), "rate_limit_error");
	cr_expect_str_eq(jstr(ev[4].data, "error.message"),
	    "Too many requests");
}

Test(ant_render, ping_bytes)
{
	q.q_stream = 1;
	anthropic_render_init(&rd, &q);
	cr_assert_eq(anthropic_render_ping(&rd, &out), 0);
	cr_expect_str_eq(out.b_data, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
}

Test(ant_render, nonstream_message)
{
	struct json_object	*m, *c;
	char			 id[64];

	anthropic_render_init(&rd, &q);
	strlcpy_qr(id, rd.rd_id, sizeof(id));
	rd.rd_usage.u_in = 100;
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	cr_expect_eq(out.b_len, 0);
	send_ev(QEV_THINKING, "Let ", NULL, NULL);
	send_ev(QEV_THINKING, "me think", NULL, NULL);
	send_ev(QEV_TEXT, "Hello", NULL, NULL);
	send_ev(QEV_TEXT, " world", NULL, NULL);
	send_ev(QEV_TOOL_START, NULL, "tooluse_1", "get_weather");
	send_ev(QEV_TOOL_ARGS, "{\"city\":", "tooluse_1", NULL);
	send_ev(QEV_TOOL_ARGS, "\"Paris\"}", "tooluse_1", NULL);
	send_ev(QEV_TOOL_STOP, NULL, "tooluse_1", NULL);
	send_ev(QEV_TOOL_START, NULL, "tooluse_2", "broken");
	send_ev(QEV_TOOL_ARGS, "{\"a\":", "tooluse_2", NULL);
	send_ev(QEV_TOOL_STOP, NULL, "tooluse_2", NULL);
	send_ev(QEV_TEXT, "after", NULL, NULL);
	cr_expect_eq(out.b_len, 0, "nothing before finish");
	rd.rd_usage.u_out = 33;
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_TOOL_USE, &out), 0);

	m = json_tokener_parse(out.b_data);
	cr_assert_not_null(m, "%s", out.b_data);
	cr_expect_str_eq(jstr(m, "id"), id);
	cr_expect_str_eq(jstr(m, "type"), "message");
	cr_expect_str_eq(jstr(m, "role"), "assistant");
	cr_expect_str_eq(jstr(m, "model"), "claude-sonnet-4-5");
	cr_expect_str_eq(jstr(m, "stop_reason"), "tool_use");
	cr_expect(json_object_object_get_ex(m, "stop_sequence", &c) &&
	    c == NULL);
	cr_expect_eq(jint(m, "usage.input_tokens"), 100);
	cr_expect_eq(jint(m, "usage.output_tokens"), 33);
	c = jget(m, "content");
	cr_assert_eq(json_object_array_length(c), 5);
	cr_expect_str_eq(jstr(c, "0.type"), "thinking");
	cr_expect_str_eq(jstr(c, "0.thinking"), "Let me think");
	cr_expect_str_eq(jstr(c, "0.signature"), "");
	cr_expect_str_eq(jstr(c, "1.type"), "text");
	cr_expect_str_eq(jstr(c, "1.text"), "Hello world");
	cr_expect_str_eq(jstr(c, "2.type"), "tool_use");
	cr_expect_str_eq(jstr(c, "2.id"), "tooluse_1");
	cr_expect_str_eq(jstr(c, "2.name"), "get_weather");
	cr_expect_str_eq(jstr(c, "2.input.city"), "Paris");
	cr_expect_str_eq(jstr(c, "3.id"), "tooluse_2");
	cr_expect(json_object_is_type(jget(c, "3.input"), json_type_object));
	cr_expect_eq(json_object_object_length(jget(c, "3.input")), 0,
	    "invalid args give {}");
	cr_expect_str_eq(jstr(c, "4.text"), "after");
	json_object_put(m);
}

Test(ant_render, nonstream_thinking_only)
{
	struct json_object	*m;

	anthropic_render_init(&rd, &q);
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	send_ev(QEV_THINKING, "hmm", NULL, NULL);
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_MAX_TOKENS, &out), 0);
	m = json_tokener_parse(out.b_data);
	cr_assert_not_null(m);
	cr_assert_eq(json_object_array_length(jget(m, "content")), 2);
	cr_expect_str_eq(jstr(m, "content.1.type"), "text");
	cr_expect_str_eq(jstr(m, "content.1.text"), "");
	cr_expect_str_eq(jstr(m, "stop_reason"), "max_tokens");
	json_object_put(m);
}

Test(ant_render, nonstream_error)
{
	struct json_object	*m;

	anthropic_render_init(&rd, &q);
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	send_ev(QEV_TEXT, "partial", NULL, NULL);
	send_error(529, NULL, "Overloaded");
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_ERROR, &out), 529);
	m = json_tokener_parse(out.b_data);
	cr_assert_not_null(m, "%s", out.b_data);
	cr_expect_str_eq(jstr(m, "type"), "error");
	cr_expect_str_eq(jstr(m, "error.type"), "overloaded_error");
	cr_expect_str_eq(jstr(m, "error.message"), "Overloaded");
	cr_expect_null(jget(m, "content"));
	json_object_put(m);
}

Test(ant_render, error_stop_without_event)
{
	struct json_object	*m;

	anthropic_render_init(&rd, &q);
	cr_assert_eq(anthropic_render_start(&rd, &out), 0);
	cr_assert_eq(anthropic_render_finish(&rd, QSTOP_ERROR, &out), 500);
	m = json_tokener_parse(out.b_data);
	cr_assert_not_null(m);
	cr_expect_str_eq(jstr(m, "error.type"), "api_error");
	json_object_put(m);
}

/* ------------------------------------------------------------------ */
/* error shapes                                                        */

Test(ant_error, types)
{
	static const struct { int st; const char *t; } tab[] = {
		{ 400, "invalid_request_error" }, { 401, "authentication_error" },
		{ 402, "billing_error" }, { 403, "permission_error" },
		{ 404, "not_found_error" }, { 413, "request_too_large" },
		{ 429, "rate_limit_error" }, { 500, "api_error" },
		{ 502, "api_error" }, { 503, "api_error" },
		{ 504, "timeout_error" }, { 529, "overloaded_error" },
	};
	size_t	 i;

	for (i = 0; i < nitems(tab); i++)
		cr_expect_str_eq(anthropic_error_type(tab[i].st), tab[i].t,
		    "%d", tab[i].st);
}

Test(ant_error, json)
{
	struct json_object	*o;

	o = anthropic_error_json(401, NULL, "invalid x-api-key");
	cr_assert_not_null(o);
	cr_expect_str_eq(jstr(o, "type"), "error");
	cr_expect_str_eq(jstr(o, "error.type"), "authentication_error");
	cr_expect_str_eq(jstr(o, "error.message"), "invalid x-api-key");
	json_object_put(o);
	o = anthropic_error_json(400, "not_found_error", "m");
	cr_expect_str_eq(jstr(o, "error.type"), "not_found_error");
	json_object_put(o);
}
