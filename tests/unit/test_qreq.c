/*
 * test_qreq.c - the upstream request builder and linter: history rules
 * (merging, leading and trailing assistant turns, empty content),
 * system and thinking prefixes, tools (specs, shortened names and their
 * round trip, placeholders, descriptions), tool calls and results (what
 * is repaired, what is rejected), images, model resolution (built-in,
 * config exact and pattern, family defaults, unknown), the models
 * setting of the config file, GET /v1/models, the JSON body parser and
 * token counting. The IR is filled by hand, so no client parser is
 * needed; every build's output is parsed back and checked by path.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <json-c/json_pointer.h>

#include "qrelayd.h"

static struct qreq	 q;
static struct qerr	 e;
static struct buf	 out;
static struct config	 cf;
static struct json_object *res;	/* the last build's output, parsed */
static int		 nkeep;
static char		 cfpath[64];

static void
setup(void)
{
	qreq_init(&q, API_ANTHROPIC);
	q.q_root = json_object_new_object();	/* owns what tests borrow */
	q.q_model = "claude-sonnet-4-5";
	memset(&e, 0, sizeof(e));
	buf_init(&out);
	config_defaults(&cf);
	res = NULL;
	cfpath[0] = '\0';
}

static void
teardown(void)
{
	qreq_free(&q);
	buf_free(&out);
	json_object_put(res);
	if (cfpath[0] != '\0')
		unlink(cfpath);
}

TestSuite(qreq, .init = setup, .fini = teardown);

/* ---- filling the IR ---- */

static struct json_object *
keep(const char *json)
{
	struct json_object	*o;
	char			 k[16];

	if (json == NULL)
		return NULL;
	o = json_tokener_parse(json);
	cr_assert_not_null(o, "bad test JSON %s", json);
	snprintf(k, sizeof(k), "k%d", nkeep++);
	json_object_object_add(q.q_root, k, o);
	return o;
}

static struct qmsg *
msg(int role)
{
	struct qmsg	*m = qreq_add_msg(&q, role);

	cr_assert_not_null(m);
	return m;
}

static struct qmsg *
msg_text(int role, const char *s)
{
	struct qmsg	*m = msg(role);
	struct qpart	*p = qreq_add_part(&q, m, QP_TEXT);

	cr_assert_not_null(p);
	p->qp_text = s;
	p->qp_text_len = strlen(s);
	return m;
}

static void
add_text(struct qmsg *m, int kind, const char *s)
{
	struct qpart	*p = qreq_add_part(&q, m, kind);

	p->qp_text = s;
	p->qp_text_len = strlen(s);
}

static void
add_use(struct qmsg *m, const char *id, const char *name, const char *input)
{
	struct qpart	*p = qreq_add_part(&q, m, QP_TOOL_USE);

	p->qp_tool_id = id;
	p->qp_tool_name = name;
	p->qp_tool_input = keep(input);
}

static void
add_result(struct qmsg *m, const char *id, const char *text, int err)
{
	struct qpart	*p = qreq_add_part(&q, m, QP_TOOL_RESULT);

	p->qp_tool_id = id;
	p->qp_text = text;
	p->qp_text_len = strlen(text);
	p->qp_tool_error = err;
}

static void
add_image(struct qmsg *m, const char *fmt, const char *b64)
{
	struct qpart	*p = qreq_add_part(&q, m, QP_IMAGE);

	p->qp_image_format = fmt;
	p->qp_image_b64 = b64;
	p->qp_image_len = strlen(b64);
}

static struct qtool *
tool(const char *name, const char *desc, const char *schema)
{
	struct qtool	*t = qreq_add_tool(&q);

	cr_assert_not_null(t);
	t->qt_name = name;
	t->qt_description = desc;
	t->qt_schema = keep(schema);
	return t;
}

/* ---- building and looking ---- */

static void
build_ok(const char *arn)
{
	int	 rv = qreq_build(&q, &cf, arn, &out, &e);

	cr_assert_eq(rv, 0, "build failed: %d %s", e.qe_status, e.qe_msg);
	json_object_put(res);
	res = json_tokener_parse(out.b_data);
	cr_assert_not_null(res, "output is not JSON: %.300s", out.b_data);
}

/* Expects a 400 whose message holds each of the NULL-ended words. */
static void
build_400(const char *word, ...)
{
	va_list		 ap;
	const char	*w;
	size_t		 before = out.b_len;

	cr_assert_eq(qreq_build(&q, &cf, NULL, &out, &e), -1,
	    "built: %.300s", out.b_data);
	cr_assert_eq(e.qe_status, 400);
	cr_assert_str_eq(e.qe_type, "invalid_request_error");
	cr_assert_eq(out.b_len, before, "a rejected build wrote output");
	va_start(ap, word);
	for (w = word; w != NULL; w = va_arg(ap, const char *))
		cr_assert_not_null(strstr(e.qe_msg, w), "\"%s\" not in \"%s\"",
		    w, e.qe_msg);
	va_end(ap);
}

static struct json_object *
at(const char *ptr)
{
	struct json_object	*o = NULL;

	if (json_pointer_get(res, ptr, &o) != 0)
		return NULL;
	return o;
}

static const char *
str_at(const char *ptr)
{
	struct json_object	*o = at(ptr);

	cr_assert_not_null(o, "no %s in %.400s", ptr, out.b_data);
	cr_assert(json_object_is_type(o, json_type_string), "%s", ptr);
	return json_object_get_string(o);
}

static size_t
len_at(const char *ptr)
{
	struct json_object	*o = at(ptr);

	cr_assert_not_null(o, "no %s in %.400s", ptr, out.b_data);
	return json_object_array_length(o);
}

#define CS	"/conversationState"
#define CUR	CS "/currentMessage/userInputMessage"
#define H(i)	CS "/history/" #i

/* ---- the basic shape ---- */

Test(qreq, minimal_body)
{
	const char	*id;

	msg_text(QROLE_USER, "Hello");
	build_ok("arn:aws:codewhisperer:us-east-1:123456789012:profile/ABC");
	cr_assert_str_eq(str_at(CUR "/content"), "Hello");
	cr_assert_str_eq(str_at(CUR "/modelId"), "claude-sonnet-4.5");
	cr_assert_str_eq(str_at(CUR "/origin"), "AI_EDITOR");
	cr_assert_str_eq(str_at(CS "/chatTriggerType"), "MANUAL");
	cr_assert_str_eq(str_at(CS "/agentTaskType"), "vibe");
	id = str_at(CS "/conversationId");
	cr_assert_eq(strlen(id), 36);
	cr_assert_eq(id[14], '4');
	cr_assert_null(at(CS "/history"), "empty history is omitted");
	cr_assert_null(at(CUR "/userInputMessageContext"));
	cr_assert_str_eq(str_at("/profileArn"),
	    "arn:aws:codewhisperer:us-east-1:123456789012:profile/ABC");
	cr_assert_str_eq(q.q_upstream_model, "claude-sonnet-4.5");
}

Test(qreq, no_profile_arn)
{
	msg_text(QROLE_USER, "Hello");
	build_ok("");
	cr_assert_null(at("/profileArn"));
}

Test(qreq, escaping_round_trips)
{
	const char	*s = "quote \" backslash \\ nl\n tab\t ctl\x01\x1f "
	    "utf8 \xc3\xa9\xe2\x82\xac </script>";

	msg_text(QROLE_USER, s);
	build_ok(NULL);
	cr_assert_str_eq(str_at(CUR "/content"), s);
}

Test(qreq, invalid_utf8_replaced)
{
	/* a lone continuation, a truncated sequence, an overlong '/', a
	 * surrogate, then valid 2-, 3- and 4-byte sequences */
	msg_text(QROLE_USER, "a\x80" "b\xe2\x82" "c\xc0\xaf" "d\xed\xa0\x80"
	    "e\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 and a long ASCII tail \xff");
	build_ok(NULL);
	cr_assert_str_eq(str_at(CUR "/content"), "a\xef\xbf\xbd" "b"
	    "\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd" "d"
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "e\xc3\xa9\xe2\x82\xac"
	    "\xf0\x9f\x98\x80 and a long ASCII tail \xef\xbf\xbd");
}

Test(qreq, escaping_every_byte_at_every_alignment)
{
	char		 s[300];
	const char	*got;
	int		 i, off;

	/* every ASCII byte, shifted so each lands on each 8-byte lane */
	for (off = 0; off < 8; off++) {
		for (i = 0; i < off; i++)
			s[i] = 'x';
		for (i = 1; i < 128; i++)
			s[off + i - 1] = (char)i;
		s[off + 127] = '\0';
		qreq_free(&q);
		qreq_init(&q, API_ANTHROPIC);
		q.q_model = "auto";
		msg_text(QROLE_USER, s);
		buf_reset(&out);
		build_ok(NULL);
		got = str_at(CUR "/content");
		cr_assert_str_eq(got, s, "offset %d", off);
	}
}

Test(qreq, appends_to_existing_output)
{
	buf_puts(&out, "");
	msg_text(QROLE_USER, "x");
	cr_assert_eq(qreq_build(&q, &cf, NULL, &out, &e), 0);
	cr_assert_eq(out.b_data[0], '{');
}

/* ---- history rules ---- */

Test(qreq, merges_same_role_neighbours)
{
	msg_text(QROLE_USER, "a");
	msg_text(QROLE_USER, "b");
	msg_text(QROLE_ASSISTANT, "c");
	msg_text(QROLE_ASSISTANT, "d");
	msg_text(QROLE_USER, "e");
	msg_text(QROLE_USER, "f");
	build_ok(NULL);
	cr_assert_eq(len_at(CS "/history"), 2);
	cr_assert_str_eq(str_at(H(0) "/userInputMessage/content"), "a\n\nb");
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/content"),
	    "c\n\nd");
	cr_assert_str_eq(str_at(CUR "/content"), "e\n\nf");
}

Test(qreq, model_on_every_history_user_message)
{
	msg_text(QROLE_USER, "a");
	msg_text(QROLE_ASSISTANT, "b");
	msg_text(QROLE_USER, "c");
	msg_text(QROLE_ASSISTANT, "d");
	msg_text(QROLE_USER, "e");
	build_ok(NULL);
	cr_assert_eq(len_at(CS "/history"), 4);
	cr_assert_str_eq(str_at(H(0) "/userInputMessage/modelId"),
	    "claude-sonnet-4.5");
	cr_assert_str_eq(str_at(H(2) "/userInputMessage/origin"), "AI_EDITOR");
	cr_assert_null(at(H(1) "/assistantResponseMessage/modelId"));
	cr_assert_null(at(H(1) "/assistantResponseMessage/toolUses"));
}

Test(qreq, leading_assistant_gets_a_user_turn)
{
	msg_text(QROLE_ASSISTANT, "I am ready.");
	msg_text(QROLE_USER, "go");
	build_ok(NULL);
	cr_assert_eq(len_at(CS "/history"), 2);
	cr_assert_str_eq(str_at(H(0) "/userInputMessage/content"), "Continue");
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/content"),
	    "I am ready.");
	cr_assert_str_eq(str_at(CUR "/content"), "go");
}

Test(qreq, trailing_assistant_prefill_goes_to_history)
{
	msg_text(QROLE_USER, "Write a haiku");
	msg_text(QROLE_ASSISTANT, "Autumn");
	build_ok(NULL);
	cr_assert_eq(len_at(CS "/history"), 2);
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/content"),
	    "Autumn");
	cr_assert_str_eq(str_at(CUR "/content"), "Continue");
}

Test(qreq, trailing_assistant_with_tool_use_rejected)
{
	struct qmsg	*m;

	msg_text(QROLE_USER, "list files");
	m = msg_text(QROLE_ASSISTANT, "ok");
	add_use(m, "toolu_1", "Bash", "{\"command\":\"ls\"}");
	build_400("messages[1]", "toolu_1", "no tool_result", NULL);
}

Test(qreq, empty_user_content)
{
	msg(QROLE_USER);
	build_ok(NULL);
	cr_assert_str_eq(str_at(CUR "/content"), "Continue");
}

Test(qreq, empty_assistant_content_stays_empty)
{
	msg_text(QROLE_USER, "a");
	msg(QROLE_ASSISTANT);
	msg_text(QROLE_USER, "b");
	build_ok(NULL);
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/content"), "");
}

Test(qreq, thinking_in_history)
{
	struct qmsg	*m;

	msg_text(QROLE_USER, "2+2?");
	m = msg(QROLE_ASSISTANT);
	add_text(m, QP_THINKING, "add them");
	add_text(m, QP_TEXT, "4");
	msg_text(QROLE_USER, "thanks");
	build_ok(NULL);
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/content"),
	    "<thinking>add them</thinking>\n\n4");
}

Test(qreq, no_messages_rejected)
{
	build_400("messages", "at least one message", NULL);
}

Test(qreq, no_user_message_rejected)
{
	msg_text(QROLE_ASSISTANT, "hi");
	build_400("messages", "user message", NULL);
}

Test(qreq, unknown_role_rejected)
{
	msg_text(QROLE_USER, "a");
	msg_text(7, "b");
	build_400("messages[1]", "role", NULL);
}

/* ---- system and thinking ---- */

Test(qreq, system_prepended_to_only_message)
{
	buf_puts(&q.q_system, "Be brief.");
	msg_text(QROLE_USER, "Hi");
	build_ok(NULL);
	cr_assert_str_eq(str_at(CUR "/content"), "Be brief.\n\nHi");
}

Test(qreq, system_prepended_to_first_history_message)
{
	buf_puts(&q.q_system, "Be brief.");
	msg_text(QROLE_USER, "Hi");
	msg_text(QROLE_ASSISTANT, "Hello");
	msg_text(QROLE_USER, "Bye");
	build_ok(NULL);
	cr_assert_str_eq(str_at(H(0) "/userInputMessage/content"),
	    "Be brief.\n\nHi");
	cr_assert_str_eq(str_at(CUR "/content"), "Bye");
}

Test(qreq, thinking_enabled_budget_clamped)
{
	static const struct { int in, want; } cases[] = {
		{ 0, 20000 }, { 500, 1024 }, { 8000, 8000 }, { 100000, 24576 },
	};
	char	 want[256];
	size_t	 i;

	msg_text(QROLE_USER, "Hi");
	buf_puts(&q.q_system, "Sys");
	q.q_thinking = QTH_ENABLED;
	for (i = 0; i < nitems(cases); i++) {
		q.q_thinking_budget = cases[i].in;
		buf_reset(&out);
		build_ok(NULL);
		snprintf(want, sizeof(want), "<thinking_mode>enabled"
		    "</thinking_mode><max_thinking_length>%d"
		    "</max_thinking_length>\nSys\n\nHi", cases[i].want);
		cr_assert_str_eq(str_at(CUR "/content"), want);
	}
}

/* The upstream has no tool_choice: the instruction goes into words. */
Test(qreq, tool_choice_in_words)
{
	static const struct { int tc; const char *name, *want; } cases[] = {
		{ QTC_AUTO, NULL, "Hi" },
		{ QTC_NONE, NULL, "Do not call any tool in this response; "
		    "answer with text only.\n\nHi" },
		{ QTC_ANY, NULL, "You must call at least one of the available "
		    "tools in this response.\n\nHi" },
		{ QTC_TOOL, "get_weather", "You must call the tool "
		    "\"get_weather\" in this response.\n\nHi" },
	};
	size_t	 i;

	msg_text(QROLE_USER, "Hi");
	tool("get_weather", "Weather", "{\"type\":\"object\"}");
	for (i = 0; i < nitems(cases); i++) {
		q.q_tool_choice = cases[i].tc;
		q.q_tool_choice_name = cases[i].name;
		buf_reset(&out);
		build_ok(NULL);
		cr_assert_str_eq(str_at(CUR "/content"), cases[i].want);
	}
}

Test(qreq, thinking_adaptive)
{
	msg_text(QROLE_USER, "Hi");
	q.q_thinking = QTH_ADAPTIVE;
	q.q_effort = "medium";
	build_ok(NULL);
	cr_assert_str_eq(str_at(CUR "/content"), "<thinking_mode>adaptive"
	    "</thinking_mode><thinking_effort>medium</thinking_effort>\n\nHi");
}

/* ---- tools ---- */

static const char long_name[] = "mcp__a_very_long_server_name_for_testing__"
    "and_an_even_longer_tool_name_that_goes_past_the_limit";

Test(qreq, tool_specs_on_current_message_only)
{
	tool("Bash", "Run a command", "{\"type\":\"object\",\"properties\":"
	    "{\"command\":{\"type\":\"string\"}},\"required\":[\"command\"]}");
	tool("Empty", "", NULL);
	msg_text(QROLE_USER, "a");
	msg_text(QROLE_ASSISTANT, "b");
	msg_text(QROLE_USER, "c");
	build_ok(NULL);
	cr_assert_eq(len_at(CUR "/userInputMessageContext/tools"), 2);
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/tools/0/"
	    "toolSpecification/name"), "Bash");
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/tools/0/"
	    "toolSpecification/inputSchema/json/required/0"), "command");
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/tools/1/"
	    "toolSpecification/description"), "Empty");
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/tools/1/"
	    "toolSpecification/inputSchema/json/type"), "object");
	cr_assert_null(at(H(0) "/userInputMessage/userInputMessageContext"));
}

Test(qreq, long_description_trimmed_on_utf8_boundary)
{
	char		*d = malloc(20001);
	const char	*got;
	size_t		 i;

	/* "é" is 2 bytes; an odd offset makes byte 10000 a continuation */
	d[0] = 'x';
	for (i = 1; i + 1 < 20000; i += 2)
		memcpy(d + i, "\xc3\xa9", 2);
	d[i] = '\0';
	tool("T", qreq_strdup(&q, d, strlen(d)), NULL);
	free(d);
	msg_text(QROLE_USER, "a");
	build_ok(NULL);
	got = str_at(CUR "/userInputMessageContext/tools/0/"
	    "toolSpecification/description");
	cr_assert_leq(strlen(got), 10000);
	cr_assert_geq(strlen(got), 9998);
	cr_assert_str_eq(got + strlen(got) - 2, "\xc3\xa9");
}

static int
up_name_ok(const char *s)
{
	size_t	 i;

	for (i = 0; s[i] != '\0'; i++)
		if (!(s[i] == '_' || s[i] == '-' || (s[i] >= 'a' && s[i] <= 'z')
		    || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9')))
			return 0;
	return i > 0 && i <= 64;
}

Test(qreq, long_tool_names_shortened_and_mapped_back)
{
	struct qmsg	*m;
	const char	*up, *up2, *up3;
	char		 first[128];

	tool(long_name, "d", NULL);
	tool("mcp__srv.tool", "d", NULL);
	tool(
	    "exactly_64_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	    "d", NULL);
	msg_text(QROLE_USER, "a");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "toolu_1", long_name, "{\"x\":1}");
	m = msg(QROLE_USER);
	add_result(m, "toolu_1", "done", 0);
	build_ok(NULL);

	up = str_at(CUR "/userInputMessageContext/tools/0/toolSpecification/"
	    "name");
	cr_assert_eq(strlen(up), 63);
	cr_assert(up_name_ok(up), "%s", up);
	cr_assert_eq(strncmp(up, long_name, 54), 0);
	cr_assert_eq(up[54], '_');
	cr_assert_str_eq(qreq_tool_client_name(&q, up), long_name);
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/toolUses/0/"
	    "name"), up, "history uses the same short name");

	up2 = str_at(CUR "/userInputMessageContext/tools/1/toolSpecification/"
	    "name");
	cr_assert(up_name_ok(up2), "%s", up2);
	cr_assert_eq(strncmp(up2, "mcp__srv_tool_", 14), 0, "%s", up2);
	cr_assert_str_eq(qreq_tool_client_name(&q, up2), "mcp__srv.tool");

	up3 = str_at(CUR "/userInputMessageContext/tools/2/toolSpecification/"
	    "name");
	cr_assert_eq(strlen(up3), 64, "a valid 64-byte name is kept");
	cr_assert_str_eq(qreq_tool_client_name(&q, "Bash"), "Bash",
	    "unknown names map to themselves");

	/* stable: the next request gets the same name */
	strlcpy_qr(first, up, sizeof(first));
	buf_reset(&out);
	build_ok(NULL);
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/tools/0/"
	    "toolSpecification/name"), first);
	cr_assert_eq(q.q_ntool_map, 2, "no duplicate map entries");
}

Test(qreq, placeholder_specs_for_history_tools)
{
	struct qmsg	*m;

	tool("Read", "Read a file", NULL);
	msg_text(QROLE_USER, "a");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "t1", "read", "{}");	/* case differs: has a spec */
	add_use(m, "t2", "Grep", "{}");
	add_use(m, "t3", "grep", "{}");	/* one placeholder for both */
	m = msg(QROLE_USER);
	add_result(m, "t1", "r1", 0);
	add_result(m, "t2", "r2", 0);
	add_result(m, "t3", "r3", 0);
	build_ok(NULL);
	cr_assert_eq(len_at(CUR "/userInputMessageContext/tools"), 2);
	cr_assert_eq(strcasecmp(str_at(CUR "/userInputMessageContext/tools/1/"
	    "toolSpecification/name"), "grep"), 0);
	cr_assert_not_null(at(CUR "/userInputMessageContext/tools/1/"
	    "toolSpecification/inputSchema/json"));
}

Test(qreq, duplicate_tool_names_rejected)
{
	tool("Bash", "a", NULL);
	tool("Bash", "b", NULL);
	msg_text(QROLE_USER, "a");
	build_400("tools", "Bash", "twice", NULL);
}

Test(qreq, tool_without_name_rejected)
{
	tool("", "a", NULL);
	msg_text(QROLE_USER, "a");
	build_400("tools[0]", "name", NULL);
}

/* ---- tool calls and results ---- */

Test(qreq, tool_round_trip)
{
	struct qmsg	*m;

	tool("Bash", "Run", NULL);
	msg_text(QROLE_USER, "list");
	m = msg_text(QROLE_ASSISTANT, "Let me look.");
	add_use(m, "toolu_01", "Bash", "{\"command\":\"ls -l\"}");
	add_use(m, "toolu_02", "Bash", NULL);
	m = msg(QROLE_USER);
	add_result(m, "toolu_01", "a.txt", 0);
	add_result(m, "toolu_02", "boom", 1);
	build_ok(NULL);
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/content"),
	    "Let me look.");
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/toolUses/0/"
	    "toolUseId"), "toolu_01");
	cr_assert_str_eq(str_at(H(1) "/assistantResponseMessage/toolUses/0/"
	    "input/command"), "ls -l");
	cr_assert(json_object_is_type(at(H(1) "/assistantResponseMessage/"
	    "toolUses/1/input"), json_type_object));
	cr_assert_str_eq(str_at(CUR "/content"), "Tool results provided.");
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/toolResults/0/"
	    "toolUseId"), "toolu_01");
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/toolResults/0/"
	    "content/0/text"), "a.txt");
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/toolResults/0/"
	    "status"), "success");
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/toolResults/1/"
	    "status"), "error");
	cr_assert_eq(len_at(CUR "/userInputMessageContext/tools"), 1);
}

Test(qreq, results_in_history_and_openai_style_split)
{
	struct qmsg	*m;

	/* OpenAI: one "tool" message per result, then user text: merged */
	msg_text(QROLE_USER, "q");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "call_a", "f", "{}");
	add_use(m, "call_b", "f", "{}");
	add_result(msg(QROLE_USER), "call_a", "ra", 0);
	add_result(msg(QROLE_USER), "call_b", "rb", 0);
	msg_text(QROLE_USER, "and now?");
	msg_text(QROLE_ASSISTANT, "done");
	msg_text(QROLE_USER, "bye");
	build_ok(NULL);
	cr_assert_eq(len_at(CS "/history"), 4);
	cr_assert_str_eq(str_at(H(2) "/userInputMessage/content"), "and now?");
	cr_assert_eq(len_at(H(2) "/userInputMessage/userInputMessageContext/"
	    "toolResults"), 2);
	cr_assert_null(at(H(2) "/userInputMessage/userInputMessageContext/"
	    "tools"), "tools only on the current message");
	cr_assert_eq(len_at(CUR "/userInputMessageContext/tools"), 1,
	    "placeholder for f");
}

Test(qreq, missing_result_repaired)
{
	struct qmsg	*m;

	msg_text(QROLE_USER, "q");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "t1", "f", "{}");
	add_use(m, "t2", "f", "{}");
	m = msg(QROLE_USER);
	add_result(m, "t1", "r1", 0);
	add_text(m, QP_TEXT, "stop, do something else");
	build_ok(NULL);
	cr_assert_eq(len_at(CUR "/userInputMessageContext/toolResults"), 2);
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/toolResults/1/"
	    "toolUseId"), "t2");
	cr_assert_str_eq(str_at(CUR "/userInputMessageContext/toolResults/1/"
	    "status"), "error");
	cr_assert_not_null(strstr(str_at(CUR "/userInputMessageContext/"
	    "toolResults/1/content/0/text"), "missing"));
	cr_assert_str_eq(str_at(CUR "/content"), "stop, do something else");
}

Test(qreq, result_without_call_rejected)
{
	struct qmsg	*m;

	msg_text(QROLE_USER, "q");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "t1", "f", "{}");
	m = msg(QROLE_USER);
	add_result(m, "t1", "r1", 0);
	add_result(m, "t9", "r9", 0);
	build_400("messages[2]", "t9", "tool_result", NULL);
}

Test(qreq, result_for_an_older_turn_rejected)
{
	struct qmsg	*m;

	msg_text(QROLE_USER, "q");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "t1", "f", "{}");
	add_result(msg(QROLE_USER), "t1", "r1", 0);
	msg_text(QROLE_ASSISTANT, "ok");
	add_result(msg(QROLE_USER), "t1", "again", 0);
	build_400("messages[4]", "t1", NULL);
}

Test(qreq, result_in_first_message_rejected)
{
	add_result(msg(QROLE_USER), "t1", "r1", 0);
	build_400("messages[0]", "t1", NULL);
}

Test(qreq, duplicate_tool_use_ids_rejected)
{
	struct qmsg	*m;

	msg_text(QROLE_USER, "q");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "same", "f", "{}");
	add_result(msg(QROLE_USER), "same", "r", 0);
	m = msg(QROLE_ASSISTANT);
	add_use(m, "same", "f", "{}");
	add_result(msg(QROLE_USER), "same", "r", 0);
	build_400("duplicate tool_use id", "same", NULL);
}

Test(qreq, second_result_for_one_call_rejected)
{
	struct qmsg	*m;

	msg_text(QROLE_USER, "q");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "t1", "f", "{}");
	m = msg(QROLE_USER);
	add_result(m, "t1", "r", 0);
	add_result(m, "t1", "r", 0);
	build_400("messages[2]", "second tool_result", NULL);
}

Test(qreq, invalid_call_ids_rewritten_on_both_sides)
{
	struct qmsg	*m;
	const char	*a, *b;

	msg_text(QROLE_USER, "q");
	m = msg(QROLE_ASSISTANT);
	add_use(m, "call.with.dots", "f", "{}");
	add_result(msg(QROLE_USER), "call.with.dots", "r", 0);
	build_ok(NULL);
	a = str_at(H(1) "/assistantResponseMessage/toolUses/0/toolUseId");
	b = str_at(CUR "/userInputMessageContext/toolResults/0/toolUseId");
	cr_assert(up_name_ok(a), "%s", a);
	cr_assert_str_eq(a, b);
}

/* ---- images ---- */

/* 1x1 PNG, and the first bytes of a JPEG, GIF and WebP */
static const char png_b64[] = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf"
    "FcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
static const char jpeg_b64[] = "/9j/4AAQSkZJRgABAQAAAQABAAD/";
static const char gif_b64[] = "R0lGODlhAQABAAAAACw=";
static const char webp_b64[] = "UklGRiQAAABXRUJQVlA4IBgAAAA=";

Test(qreq, images_written)
{
	struct qmsg	*m = msg_text(QROLE_USER, "what is this?");

	add_image(m, "png", png_b64);
	add_image(m, "jpg", jpeg_b64);
	add_image(m, "GIF", gif_b64);
	add_image(m, "webp", webp_b64);
	build_ok(NULL);
	cr_assert_eq(len_at(CUR "/images"), 4);
	cr_assert_str_eq(str_at(CUR "/images/0/format"), "png");
	cr_assert_str_eq(str_at(CUR "/images/0/source/bytes"), png_b64);
	cr_assert_str_eq(str_at(CUR "/images/1/format"), "jpeg");
	cr_assert_str_eq(str_at(CUR "/images/2/format"), "gif");
	cr_assert_str_eq(str_at(CUR "/images/3/format"), "webp");
	cr_assert_null(at(CUR "/userInputMessageContext/images"));
}

Test(qreq, image_only_message_says_continue)
{
	add_image(msg(QROLE_USER), "png", png_b64);
	build_ok(NULL);
	cr_assert_str_eq(str_at(CUR "/content"), "Continue");
	cr_assert_eq(len_at(CUR "/images"), 1);
}

Test(qreq, ten_images_ok_eleven_rejected)
{
	struct qmsg	*m = msg_text(QROLE_USER, "x");
	int		 i;

	for (i = 0; i < 10; i++)
		add_image(m, "png", png_b64);
	build_ok(NULL);
	cr_assert_eq(len_at(CUR "/images"), 10);
	add_image(m, "png", png_b64);
	build_400("messages[0]", "10 images", NULL);
}

Test(qreq, eleven_images_across_merged_messages_rejected)
{
	struct qmsg	*m = msg_text(QROLE_USER, "x");
	int		 i;

	for (i = 0; i < 6; i++)
		add_image(m, "png", png_b64);
	m = msg(QROLE_USER);
	for (i = 0; i < 5; i++)
		add_image(m, "png", png_b64);
	build_400("10 images", NULL);
}

Test(qreq, image_bad_base64_rejected)
{
	add_image(msg_text(QROLE_USER, "x"), "png", "iVBORw0KGgo*AAANSUhE");
	build_400("messages[0]", "base64", NULL);
}

Test(qreq, image_bad_padding_rejected)
{
	add_image(msg_text(QROLE_USER, "x"), "png", "iVBORw0KGgoAAA=A");
	build_400("base64", NULL);
}

Test(qreq, image_too_large_rejected)
{
	size_t	 n = 13333336;	/* 10,000,002 bytes decoded */
	char	*b = malloc(n + 1);

	memcpy(b, png_b64, 12);
	memset(b + 12, 'A', n - 12);
	b[n] = '\0';
	add_image(msg_text(QROLE_USER, "x"), "png", qreq_strdup(&q, b, n));
	free(b);
	build_400("messages[0]", "10000000", NULL);
}

Test(qreq, image_at_limit_accepted)
{
	size_t	 n = 13333332;	/* 9,999,999 bytes decoded */
	char	*b = malloc(n + 1);

	memcpy(b, png_b64, 12);
	memset(b + 12, 'A', n - 12);
	b[n] = '\0';
	add_image(msg_text(QROLE_USER, "x"), "png", qreq_strdup(&q, b, n));
	free(b);
	build_ok(NULL);
	cr_assert_eq(strlen(str_at(CUR "/images/0/source/bytes")), n);
}

Test(qreq, image_mime_mismatch_rejected)
{
	add_image(msg_text(QROLE_USER, "x"), "png", jpeg_b64);
	build_400("messages[0]", "image/png", "jpeg", "IMAGE_MIME_MISMATCH",
	    NULL);
}

Test(qreq, image_unknown_bytes_rejected)
{
	add_image(msg_text(QROLE_USER, "x"), "png", "aGVsbG8gd29ybGQh");
	build_400("not a png, jpeg, gif or webp", NULL);
}

Test(qreq, image_unsupported_type_rejected)
{
	add_image(msg_text(QROLE_USER, "x"), "bmp", png_b64);
	build_400("image/bmp", "not supported", NULL);
}

Test(qreq, image_in_history_kept)
{
	struct qmsg	*m = msg_text(QROLE_USER, "see");

	add_image(m, "png", png_b64);
	msg_text(QROLE_ASSISTANT, "a dot");
	msg_text(QROLE_USER, "thanks");
	build_ok(NULL);
	cr_assert_eq(len_at(H(0) "/userInputMessage/images"), 1);
	cr_assert_null(at(CUR "/images"));
}

/* ---- models ---- */

static void
expect_model(const char *client, const char *want)
{
	char	 got[128];

	cr_assert_eq(qreq_model_resolve(&cf, client, got, sizeof(got)), 0,
	    "%s did not resolve", client);
	cr_assert_str_eq(got, want, "%s -> %s, want %s", client, got, want);
}

static void
expect_unknown(const char *client)
{
	char	 got[128];

	cr_assert_eq(qreq_model_resolve(&cf, client, got, sizeof(got)), -1,
	    "%s resolved", client);
}

Test(qreq, models_builtin)
{
	expect_model("claude-sonnet-4.5", "claude-sonnet-4.5");
	expect_model("claude-sonnet-4-5", "claude-sonnet-4.5");
	expect_model("claude-sonnet-4-5-20250929", "claude-sonnet-4.5");
	expect_model("claude-4.5-opus-high", "claude-opus-4.5");
	expect_model("claude-4.5-opus-low", "claude-opus-4.5");
	expect_model("claude-sonnet-3.5", "claude-sonnet-4.5");
	expect_model("claude-haiku-4-5", "claude-haiku-4.5");
	expect_model("claude-sonnet-4-20250514", "claude-sonnet-4");
	expect_model("claude-3-7-sonnet-20250219", "claude-3.7-sonnet");
	expect_model("claude-opus-4-6", "claude-opus-4.6");
	expect_model("auto", "auto");
	expect_model("claude-opus-4.5", "claude-opus-4.5");
	expect_model("CLAUDE-SONNET-4-5", "claude-sonnet-4.5");
	expect_model("claude_sonnet_4_5_20250929_v1_0",
	    "CLAUDE_SONNET_4_5_20250929_V1_0");
}

Test(qreq, models_family_defaults)
{
	expect_model("claude-opus-5-5", "claude-opus-4.6");
	expect_model("claude-opus-4-7", "claude-opus-4.6");
	expect_model("claude-opus-4-1-20250805", "claude-opus-4.5");
	expect_model("claude-opus-4-20250514", "claude-opus-4.5");
	expect_model("claude-3-opus-20240229", "claude-opus-4.5");
	expect_model("claude-sonnet-4-6-thinking", "claude-sonnet-4.6");
	expect_model("claude-sonnet-5", "claude-sonnet-4.6");
	expect_model("claude-sonnet-4-5-latest", "claude-sonnet-4.5");
	expect_model("claude-haiku-9", "claude-haiku-4.5");
	expect_model("Claude-Opus-Next", "claude-opus-4.5");
}

Test(qreq, models_unknown)
{
	expect_unknown("gpt-4o");
	expect_unknown("foo");
	expect_unknown("");
	expect_unknown(NULL);
	q.q_model = "gpt-4o";
	msg_text(QROLE_USER, "hi");
	build_400("model: unknown model \"gpt-4o\"", NULL);
}

static void
load_conf(const char *text, int expect_ok, char *err, size_t errlen)
{
	FILE	*fp;
	int	 fd;

	strlcpy_qr(cfpath, "/tmp/qr-test-qreq.XXXXXX", sizeof(cfpath));
	cr_assert_neq(fd = mkstemp(cfpath), -1);
	cr_assert_not_null(fp = fdopen(fd, "w"));
	fputs(text, fp);
	fclose(fp);
	err[0] = '\0';
	cr_assert_eq(config_load(&cf, cfpath, err, errlen), expect_ok ? 0 : -1,
	    "config_load: %s", err);
}

Test(qreq, models_from_config)
{
	char	 err[512];

	load_conf("models = (\n"
	    "  { match = \"claude-opus-5*\"; id = \"claude-opus-4.6\"; },\n"
	    "  { match = \"gpt-4o\"; id = \"claude-sonnet-4.5\"; },\n"
	    "  { match = \"claude-sonnet-4-5\"; id = \"CLAUDE_SONNET_4_5_20250929_V1_0\"; },\n"
	    "  { match = \"*-fast\"; id = \"claude-haiku-4.5\"; }\n"
	    ");\n", 1, err, sizeof(err));
	cr_assert_eq(cf.cf_nmodels, 4);
	expect_model("claude-opus-5-1-20260101", "claude-opus-4.6");
	expect_model("GPT-4O", "claude-sonnet-4.5");
	expect_model("claude-sonnet-4-5", "CLAUDE_SONNET_4_5_20250929_V1_0");
	expect_model("mine-fast", "claude-haiku-4.5");
	expect_model("claude-sonnet-4-5-20250929", "claude-sonnet-4.5");
	expect_unknown("gpt-5");
}

static void
conf_error(const char *text, int line, const char *reason)
{
	char	 err[512], want[512];

	load_conf(text, 0, err, sizeof(err));
	snprintf(want, sizeof(want), "%s:%d: %s", cfpath, line, reason);
	cr_assert_str_eq(err, want);
}

Test(qreq, models_config_errors)
{
	conf_error("models = \"x\";\n", 1, "models must be a list: "
	    "models = ( { match = \"...\"; id = \"...\"; } );");
	conf_error("models = (\n  \"x\"\n);\n", 1, "models[0] must be a "
	    "group: { match = \"...\"; id = \"...\"; }");
	conf_error("models = (\n { match = \"a\"; id = \"b\"; },\n"
	    " { match = \"a\";\n   id = \"bad id\"; }\n);\n", 4,
	    "models[1].id \"bad id\" may hold only letters, digits and "
	    "_ : . -");
	conf_error("models = (\n { match = \"a\"; }\n);\n", 2,
	    "models[0] lacks \"id\"");
	conf_error("models = (\n { match = \"a\"; id = \"b\";\n"
	    "   extra = 1; }\n);\n", 3, "unknown key \"models[0].extra\"");
	conf_error("models = (\n { match = 5; id = \"b\"; }\n);\n", 2,
	    "models[0].match must be a string");
	conf_error("models = (\n { match = \"\"; id = \"b\"; }\n);\n", 2,
	    "models[0].match must be 1 to 127 characters");
}

Test(qreq, models_config_too_many)
{
	struct buf	 b;
	char		 err[512], want[512];
	int		 i;

	buf_init(&b);
	buf_puts(&b, "models = (\n");
	for (i = 0; i <= QR_MAX_MODELS; i++)
		buf_printf(&b, "%s{ match = \"m%d\"; id = \"auto\"; }\n",
		    i ? "," : "", i);
	buf_puts(&b, ");\n");
	load_conf(b.b_data, 0, err, sizeof(err));
	buf_free(&b);
	snprintf(want, sizeof(want), "%s:1: models has 65 entries, at most "
	    "64 are allowed", cfpath);
	cr_assert_str_eq(err, want);
}

Test(qreq, models_json_openai)
{
	struct json_object	*o, *d, *m, *v;
	char			 err[512];
	size_t			 i;
	int			 saw_conf = 0, saw_pattern = 0, saw_sonnet = 0;

	load_conf("models = ( { match = \"my-model\"; id = \"auto\"; },\n"
	    "{ match = \"x-*\"; id = \"auto\"; } );\n", 1, err, sizeof(err));
	o = qreq_models_json(&cf, API_OPENAI);
	cr_assert_not_null(o);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o,
	    "object")), "list");
	d = json_object_object_get(o, "data");
	cr_assert_gt(json_object_array_length(d), 5);
	for (i = 0; i < json_object_array_length(d); i++) {
		m = json_object_array_get_idx(d, i);
		cr_assert_str_eq(json_object_get_string(json_object_object_get(
		    m, "object")), "model");
		cr_assert(json_object_object_get_ex(m, "created", &v) &&
		    json_object_get_int64(v) > 0);
		cr_assert_not_null(json_object_object_get(m, "owned_by"));
		v = json_object_object_get(m, "id");
		saw_conf |= strcmp(json_object_get_string(v), "my-model") == 0;
		saw_pattern |= strcmp(json_object_get_string(v), "x-*") == 0;
		saw_sonnet |= strcmp(json_object_get_string(v),
		    "claude-sonnet-4-5-20250929") == 0;
	}
	cr_assert(saw_conf && saw_sonnet && !saw_pattern);
	json_object_put(o);
}

Test(qreq, models_json_anthropic)
{
	struct json_object	*o, *d, *m;
	size_t			 n;
	char			 name[128];

	o = qreq_models_json(&cf, API_ANTHROPIC);
	cr_assert_not_null(o);
	d = json_object_object_get(o, "data");
	n = json_object_array_length(d);
	cr_assert_gt(n, 5);
	m = json_object_array_get_idx(d, 0);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(m,
	    "type")), "model");
	cr_assert_not_null(json_object_object_get(m, "display_name"));
	cr_assert_eq(strlen(json_object_get_string(json_object_object_get(m,
	    "created_at"))), 20);
	cr_assert_eq(json_object_get_boolean(json_object_object_get(o,
	    "has_more")), 0);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o,
	    "first_id")), json_object_get_string(json_object_object_get(m,
	    "id")));
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o,
	    "last_id")), json_object_get_string(json_object_object_get(
	    json_object_array_get_idx(d, n - 1), "id")));
	/* every listed name resolves */
	cr_assert_eq(qreq_model_resolve(&cf, json_object_get_string(
	    json_object_object_get(m, "id")), name, sizeof(name)), 0);
	json_object_put(o);
}

/* ---- the body parser ---- */

static void
parse_400(const char *body, size_t len, const char *want_prefix)
{
	struct qreq	 r;

	qreq_init(&r, API_OPENAI);
	memset(&e, 0, sizeof(e));
	cr_assert_eq(qreq_parse_json(&r, body, len, &e), -1, "parsed %.60s",
	    body);
	cr_assert_eq(e.qe_status, 400);
	cr_assert_str_eq(e.qe_type, "invalid_request_error");
	cr_assert_eq(strncmp(e.qe_msg, want_prefix, strlen(want_prefix)), 0,
	    "\"%s\" does not start \"%s\"", e.qe_msg, want_prefix);
	cr_assert_null(r.q_root);
	qreq_free(&r);
}

Test(qreq, parse_ok)
{
	struct qreq	 r;
	const char	*b = " {\"model\":\"x\",\"messages\":[]} \n";

	qreq_init(&r, API_OPENAI);
	cr_assert_eq(qreq_parse_json(&r, b, strlen(b), &e), 0, "%s",
	    e.qe_msg);
	cr_assert_not_null(r.q_root);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(
	    r.q_root, "model")), "x");
	qreq_free(&r);
}

Test(qreq, parse_depth_10000)
{
	size_t	 n = 10000, i;
	char	*b = malloc(2 * n + 16);

	b[0] = '{';
	memcpy(b + 1, "\"a\":", 4);
	for (i = 0; i < n; i++)
		b[5 + i] = '[';
	for (i = 0; i < n; i++)
		b[5 + n + i] = ']';
	b[5 + 2 * n] = '}';
	parse_400(b, 6 + 2 * n, "request body: JSON nested deeper than 128 "
	    "levels");
	cr_assert_str_eq(e.qe_msg, "request body: JSON nested deeper than "
	    "128 levels");
	free(b);
}

Test(qreq, parse_malformed)
{
	parse_400("{\"a\":1,}", 8, "request body is not valid JSON: ");
	cr_assert_not_null(strstr(e.qe_msg, " at byte 7"), "%s", e.qe_msg);
	parse_400("{\"a\":", 5, "request body is not valid JSON: unexpected "
	    "end of data at byte 5");
	parse_400("{\"a\":1} x", 9, "request body is not valid JSON: ");
	parse_400("{\"a\":1}\0", 8, "request body is not valid JSON: ");
	parse_400("", 0, "request body is empty");
	parse_400("[1,2]", 5, "request body must be a JSON object");
	parse_400("123", 3, "request body must be a JSON object");
	parse_400("\"s\"", 3, "request body must be a JSON object");
}

/* ---- helpers and counting ---- */

Test(qreq, strdup_and_growth)
{
	const char	*s = qreq_strdup(&q, "abcdef", 3);
	struct qmsg	*m;
	int		 i;

	cr_assert_str_eq(s, "abc");
	for (i = 0; i < 1000; i++) {
		m = msg(i % 2 ? QROLE_ASSISTANT : QROLE_USER);
		cr_assert_eq(m->qm_index, i);
		add_text(m, QP_TEXT, "t");
	}
	cr_assert_eq(q.q_nmsgs, 1000);
	msg_text(QROLE_USER, "last");
	build_ok(NULL);
	cr_assert_eq(len_at(CS "/history"), 1000);
}

Test(qreq, qerr_set_formats)
{
	qerr_set(&e, 400, "invalid_request_error", "messages[%d]: %s", 3,
	    "bad");
	cr_assert_eq(e.qe_status, 400);
	cr_assert_str_eq(e.qe_msg, "messages[3]: bad");
}

Test(qreq, count_tokens_sums_every_part)
{
	struct qmsg	*m;
	struct json_object *in, *sch;
	const char	*s;
	size_t		 n;
	int64_t		 want = 0;

	cr_assert_eq(tokens_init(), 0);
	cr_assert_eq(qreq_count_tokens(&q), 1, "an empty request counts 1");
	buf_puts(&q.q_system, "You are a helpful assistant.");
	want += tokens_count(q.q_system.b_data, q.q_system.b_len);
	s = "Please list the files in the current directory.";
	msg_text(QROLE_USER, s);
	want += tokens_count(s, strlen(s));
	m = msg(QROLE_ASSISTANT);
	add_text(m, QP_THINKING, "The user wants ls.");
	want += tokens_count("The user wants ls.", 18);
	add_use(m, "t1", "Bash", "{\"command\":\"ls -la /home/user\"}");
	in = m->qm_parts[1].qp_tool_input;
	s = json_object_to_json_string_length(in, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	want += tokens_count("Bash", 4) + tokens_count(s, n);
	add_result(msg(QROLE_USER), "t1", "total 0\ndrwxr-xr-x 2 user user",
	    0);
	want += tokens_count("total 0\ndrwxr-xr-x 2 user user", 30);
	tool("Bash", "Runs a shell command and returns its output.",
	    "{\"type\":\"object\",\"properties\":{\"command\":{\"type\":"
	    "\"string\"}}}");
	sch = q.q_tools[0].qt_schema;
	s = json_object_to_json_string_length(sch, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	want += tokens_count("Bash", 4) + tokens_count("Runs a shell command "
	    "and returns its output.", 44) + tokens_count(s, n);
	cr_assert_gt(want, 20);
	cr_assert_eq(qreq_count_tokens(&q), want);
}
