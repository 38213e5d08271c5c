/*
 * test_openai.c - openai.c: Chat Completions bodies into struct qreq,
 * and qev sequences into chat.completion.chunk SSE or one
 * chat.completion body. The SSE output is parsed back and checked the
 * way the OpenAI SDKs read it (same id, tool_calls by index, arguments
 * concatenated, finish_reason, the usage chunk, [DONE]).
 */
#include <string.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static struct qreq	 q;
static struct qerr	 e;

static void
setup(void)
{
	qreq_init(&q, API_OPENAI);
	memset(&e, 0, sizeof(e));
}

static void
teardown(void)
{
	qreq_free(&q);
}

TestSuite(openai, .init = setup, .fini = teardown);

static void
parse_ok(const char *body)
{
	int	 rc = openai_parse(&q, body, strlen(body), &e);

	cr_assert_eq(rc, 0, "parse failed: %d %s: %s", e.qe_status, e.qe_type,
	    e.qe_msg);
}

static void
parse_err(const char *body, const char *want)
{
	int	 rc = openai_parse(&q, body, strlen(body), &e);

	cr_assert_eq(rc, -1, "parse of %s succeeded", body);
	cr_assert_eq(e.qe_status, 400);
	cr_assert_str_eq(e.qe_type, "invalid_request_error");
	cr_assert(strstr(e.qe_msg, want) != NULL, "message \"%s\" lacks \"%s\"",
	    e.qe_msg, want);
}

static struct qpart *
part(size_t m, size_t p)
{
	cr_assert_lt(m, q.q_nmsgs);
	cr_assert_lt(p, q.q_msgs[m].qm_nparts);
	return &q.q_msgs[m].qm_parts[p];
}

static void
assert_text(const struct qpart *p, int kind, const char *want)
{
	cr_assert_eq(p->qp_kind, kind);
	cr_assert_eq(p->qp_text_len, strlen(want), "len %zu for \"%s\"",
	    p->qp_text_len, want);
	cr_assert(memcmp(p->qp_text, want, p->qp_text_len) == 0);
}

/* ---------------------------------------------------------------- */
/* parsing                                                            */

Test(openai, top_level_fields)
{
	parse_ok("{\"model\":\"claude-sonnet-4.5\",\"stream\":true,"
	    "\"stream_options\":{\"include_usage\":true},\"max_tokens\":100,"
	    "\"max_completion_tokens\":200,\"temperature\":0.2,\"n\":1,"
	    "\"unknown_field\":{\"x\":[1]},"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\",\"name\":\"bob\"}]}");
	cr_assert_str_eq(q.q_model, "claude-sonnet-4.5");
	cr_assert_eq(q.q_stream, 1);
	cr_assert_eq(q.q_include_usage, 1);
	cr_assert_eq(q.q_max_tokens, 200);
	cr_assert_eq(q.q_nmsgs, 1);
	cr_assert_eq(q.q_msgs[0].qm_role, QROLE_USER);
	assert_text(part(0, 0), QP_TEXT, "Hi");
	cr_assert_eq(q.q_thinking, QTH_OFF);
	cr_assert_eq(q.q_tool_choice, QTC_AUTO);
}

Test(openai, max_tokens_and_nulls)
{
	parse_ok("{\"model\":\"m\",\"max_tokens\":77,\"stream\":null,"
	    "\"stream_options\":null,\"tools\":null,"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	cr_assert_eq(q.q_max_tokens, 77);
	cr_assert_eq(q.q_stream, 0);
	cr_assert_eq(q.q_ntools, 0);
}

Test(openai, system_and_developer_join)
{
	parse_ok("{\"model\":\"m\",\"messages\":["
	    "{\"role\":\"system\",\"content\":\"Be brief.\"},"
	    "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"A\"},"
	    "{\"type\":\"text\",\"text\":\"B\"}]},"
	    "{\"role\":\"user\",\"content\":\"Q\"},"
	    "{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"Late.\"}]}]}");
	cr_assert_str_eq(q.q_system.b_data, "Be brief.\n\nA\nB\n\nLate.");
	cr_assert_eq(q.q_nmsgs, 1);
}

Test(openai, user_parts_and_images)
{
	parse_ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
	    "{\"type\":\"text\",\"text\":\"What is this?\"},"
	    "{\"type\":\"image_url\",\"image_url\":{\"url\":"
	    "\"data:image/png;base64,iVBORw0KGgo=\",\"detail\":\"high\"}},"
	    "{\"type\":\"text\",\"text\":\"\"},"
	    "{\"type\":\"image_url\",\"image_url\":\"data:image/jpg;base64,/9j/4A==\"},"
	    "{\"type\":\"image_url\",\"image_url\":{\"url\":"
	    "\"data:image/webp;name=x.webp;base64,UklGRg==\"}}]}]}");
	cr_assert_eq(q.q_nmsgs, 1);
	cr_assert_eq(q.q_msgs[0].qm_nparts, 4, "the empty text part is dropped");
	assert_text(part(0, 0), QP_TEXT, "What is this?");
	cr_assert_eq(part(0, 1)->qp_kind, QP_IMAGE);
	cr_assert_str_eq(part(0, 1)->qp_image_format, "png");
	cr_assert_eq(part(0, 1)->qp_image_len, strlen("iVBORw0KGgo="));
	cr_assert(memcmp(part(0, 1)->qp_image_b64, "iVBORw0KGgo=", 12) == 0);
	cr_assert_str_eq(part(0, 2)->qp_image_format, "jpeg");
	cr_assert_eq(part(0, 2)->qp_image_len, 8);
	cr_assert_str_eq(part(0, 3)->qp_image_format, "webp");
	cr_assert(memcmp(part(0, 3)->qp_image_b64, "UklGRg==", 8) == 0);
}

Test(openai, image_errors)
{
	parse_err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
	    "{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"image_url\",\"image_url\":"
	    "{\"url\":\"https://example.com/cat.png\"}}]}]}",
	    "messages[0].content[1].image_url.url: remote image URLs are not "
	    "supported");
}

Test(openai, image_bad_type)
{
	parse_err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
	    "{\"type\":\"image_url\",\"image_url\":{\"url\":"
	    "\"data:image/bmp;base64,Qk0=\"}}]}]}",
	    "messages[0].content[0].image_url.url: unsupported image type "
	    "\"image/bmp\"");
}

Test(openai, image_not_base64)
{
	parse_err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
	    "{\"type\":\"image_url\",\"image_url\":{\"url\":"
	    "\"data:image/png,abc\"}}]}]}", "messages[0].content[0].image_url.url");
}

Test(openai, image_empty_data)
{
	parse_err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
	    "{\"type\":\"image_url\",\"image_url\":{\"url\":"
	    "\"data:image/png;base64,\"}}]}]}", "no image data");
}

Test(openai, assistant_tool_calls_and_tool_results)
{
	struct json_object	*in, *v;

	parse_ok("{\"model\":\"m\",\"messages\":["
	    "{\"role\":\"user\",\"content\":\"weather?\"},"
	    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
	    "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
	    "\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}},"
	    "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":"
	    "\"now\",\"arguments\":\"\"}}]},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":["
	    "{\"type\":\"text\",\"text\":\"12:00\"},{\"type\":\"text\",\"text\":\"UTC\"}]},"
	    "{\"role\":\"user\",\"content\":\"thanks\"},"
	    "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"}],"
	    "\"reasoning_content\":\"think\"},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call_3\",\"content\":\"\"}]}");
	cr_assert_eq(q.q_nmsgs, 6);
	cr_assert_eq(q.q_msgs[1].qm_role, QROLE_ASSISTANT);
	cr_assert_eq(q.q_msgs[1].qm_nparts, 2, "null content adds no text");
	cr_assert_eq(part(1, 0)->qp_kind, QP_TOOL_USE);
	cr_assert_str_eq(part(1, 0)->qp_tool_id, "call_1");
	cr_assert_str_eq(part(1, 0)->qp_tool_name, "get_weather");
	in = part(1, 0)->qp_tool_input;
	cr_assert(json_object_is_type(in, json_type_object));
	cr_assert(json_object_object_get_ex(in, "city", &v));
	cr_assert_str_eq(json_object_get_string(v), "Paris");
	in = part(1, 1)->qp_tool_input;
	cr_assert(json_object_is_type(in, json_type_object));
	cr_assert_eq(json_object_object_length(in), 0, "\"\" is {}");

	/* both tool messages share one user message */
	cr_assert_eq(q.q_msgs[2].qm_role, QROLE_USER);
	cr_assert_eq(q.q_msgs[2].qm_nparts, 2);
	cr_assert_eq(part(2, 0)->qp_kind, QP_TOOL_RESULT);
	cr_assert_str_eq(part(2, 0)->qp_tool_id, "call_1");
	assert_text(part(2, 0), QP_TOOL_RESULT, "sunny");
	cr_assert_str_eq(part(2, 1)->qp_tool_id, "call_2");
	assert_text(part(2, 1), QP_TOOL_RESULT, "12:00\nUTC");

	/* a user message after them is its own message */
	cr_assert_eq(q.q_msgs[3].qm_role, QROLE_USER);
	assert_text(part(3, 0), QP_TEXT, "thanks");
	assert_text(part(4, 0), QP_THINKING, "think");
	assert_text(part(4, 1), QP_TEXT, "ok");
	/* a tool message after an assistant starts a new user message;
	 * empty tool output is allowed */
	cr_assert_eq(q.q_msgs[5].qm_role, QROLE_USER);
	assert_text(part(5, 0), QP_TOOL_RESULT, "");
}

Test(openai, assistant_text_and_tool_calls)
{
	parse_ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
	    "{\"role\":\"assistant\",\"content\":\"Let me check.\",\"tool_calls\":["
	    "{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":{\"k\":1}}}]}]}");
	assert_text(part(1, 0), QP_TEXT, "Let me check.");
	cr_assert_eq(part(1, 1)->qp_kind, QP_TOOL_USE);
	cr_assert_eq(json_object_object_length(part(1, 1)->qp_tool_input), 1);
}

Test(openai, bad_tool_arguments)
{
	parse_err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
	    "{\"role\":\"assistant\",\"tool_calls\":["
	    "{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
	    "\"arguments\":\"{}\"}},"
	    "{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"f\","
	    "\"arguments\":\"{\\\"a\\\":\"}}]}]}",
	    "messages[1].tool_calls[1].function.arguments: not valid JSON");
}

Test(openai, tool_arguments_trailing_and_not_object)
{
	parse_err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
	    "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c1\",\"function\":"
	    "{\"name\":\"f\",\"arguments\":\"{} x\"}}]}]}",
	    "messages[1].tool_calls[0].function.arguments: not valid JSON");
	qreq_free(&q);
	qreq_init(&q, API_OPENAI);
	parse_err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
	    "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c1\",\"function\":"
	    "{\"name\":\"f\",\"arguments\":\"[1,2]\"}}]}]}",
	    "messages[1].tool_calls[0].function.arguments: expected a JSON object");
}

Test(openai, legacy_functions)
{
	parse_ok("{\"model\":\"m\",\"functions\":[{\"name\":\"lookup\","
	    "\"description\":\"Look up\",\"parameters\":{\"type\":\"object\"}}],"
	    "\"function_call\":{\"name\":\"lookup\"},\"messages\":["
	    "{\"role\":\"user\",\"content\":\"a\"},"
	    "{\"role\":\"assistant\",\"content\":null,\"function_call\":"
	    "{\"name\":\"lookup\",\"arguments\":\"{\\\"q\\\":1}\"}},"
	    "{\"role\":\"function\",\"name\":\"lookup\",\"content\":\"found\"}]}");
	cr_assert_eq(q.q_ntools, 1);
	cr_assert_str_eq(q.q_tools[0].qt_name, "lookup");
	cr_assert_str_eq(q.q_tools[0].qt_description, "Look up");
	cr_assert_not_null(q.q_tools[0].qt_schema);
	cr_assert_eq(q.q_tool_choice, QTC_TOOL);
	cr_assert_str_eq(q.q_tool_choice_name, "lookup");
	cr_assert_eq(part(1, 0)->qp_kind, QP_TOOL_USE);
	cr_assert_str_eq(part(1, 0)->qp_tool_name, "lookup");
	cr_assert_eq(part(2, 0)->qp_kind, QP_TOOL_RESULT);
	cr_assert_str_eq(part(2, 0)->qp_tool_id, part(1, 0)->qp_tool_id,
	    "the function result answers the made-up id");
	assert_text(part(2, 0), QP_TOOL_RESULT, "found");
}

Test(openai, function_role_without_call)
{
	parse_err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
	    "{\"role\":\"function\",\"name\":\"f\",\"content\":\"x\"}]}",
	    "messages[1]: a function message without a function_call");
}

Test(openai, tools_and_choice)
{
	static const struct {
		const char	*choice;
		int		 want;
		const char	*name;
	} cases[] = {
		{ "\"auto\"", QTC_AUTO, NULL },
		{ "\"none\"", QTC_NONE, NULL },
		{ "\"required\"", QTC_ANY, NULL },
		{ "{\"type\":\"function\",\"function\":{\"name\":\"b\"}}",
		    QTC_TOOL, "b" },
	};
	char	 body[1024];
	size_t	 i;

	for (i = 0; i < nitems(cases); i++) {
		qreq_free(&q);
		qreq_init(&q, API_OPENAI);
		snprintf(body, sizeof(body), "{\"model\":\"m\",\"tools\":["
		    "{\"type\":\"function\",\"function\":{\"name\":\"a\","
		    "\"description\":\"does a\",\"parameters\":{\"type\":\"object\","
		    "\"properties\":{}}}},"
		    "{\"type\":\"function\",\"function\":{\"name\":\"b\"}}],"
		    "\"tool_choice\":%s,\"messages\":[{\"role\":\"user\","
		    "\"content\":\"x\"}]}", cases[i].choice);
		parse_ok(body);
		cr_assert_eq(q.q_tool_choice, cases[i].want, "case %zu", i);
		if (cases[i].name)
			cr_assert_str_eq(q.q_tool_choice_name, cases[i].name);
	}
	cr_assert_eq(q.q_ntools, 2);
	cr_assert_str_eq(q.q_tools[0].qt_name, "a");
	cr_assert_str_eq(q.q_tools[0].qt_description, "does a");
	cr_assert(json_object_is_type(q.q_tools[0].qt_schema, json_type_object));
	cr_assert_null(q.q_tools[1].qt_description);
	cr_assert_null(q.q_tools[1].qt_schema);
}

Test(openai, thinking_requests)
{
	parse_ok("{\"model\":\"m\",\"reasoning_effort\":\"medium\","
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	cr_assert_eq(q.q_thinking, QTH_ADAPTIVE);
	cr_assert_str_eq(q.q_effort, "medium");
	qreq_free(&q);
	qreq_init(&q, API_OPENAI);
	parse_ok("{\"model\":\"m\",\"reasoning_effort\":\"high\",\"thinking\":"
	    "{\"type\":\"enabled\",\"budget_tokens\":4096},"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	cr_assert_eq(q.q_thinking, QTH_ENABLED);
	cr_assert_eq(q.q_thinking_budget, 4096);
	qreq_free(&q);
	qreq_init(&q, API_OPENAI);
	parse_ok("{\"model\":\"m\",\"reasoning_effort\":\"low\",\"thinking\":"
	    "{\"type\":\"disabled\"},"
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	cr_assert_eq(q.q_thinking, QTH_OFF);
	qreq_free(&q);
	qreq_init(&q, API_OPENAI);
	parse_err("{\"model\":\"m\",\"reasoning_effort\":\"max\","
	    "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
	    "reasoning_effort: unknown value \"max\"");
}

/* one body per rule: the 400 names the field */
Test(openai, bad_requests)
{
	static const struct {
		const char	*body, *want;
	} cases[] = {
		{ "[1,2]", "must be a JSON object" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		    "model: required" },
		{ "{\"model\":5,\"messages\":[]}", "model: expected a non-empty string" },
		{ "{\"model\":\"m\"}", "messages: required" },
		{ "{\"model\":\"m\",\"messages\":{}}", "messages: expected an array" },
		{ "{\"model\":\"m\",\"messages\":[]}", "messages: must not be empty" },
		{ "{\"model\":\"m\",\"messages\":[\"hi\"]}",
		    "messages[0]: expected an object" },
		{ "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
		    "messages[0].role: required" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
		  "{\"role\":\"assistant\",\"content\":\"b\"},"
		  "{\"role\":\"bot\",\"content\":\"c\"}]}",
		    "messages[2].role: unknown role \"bot\"" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":7}]}",
		    "messages[0].role: expected a string" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}",
		    "messages[0].content: empty" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}",
		    "messages[0].content: empty" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
		    "messages[0].content: required" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":42}]}",
		    "messages[0].content: expected a string or an array" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
		  "[{\"type\":\"input_audio\"}]}]}",
		    "messages[0].content[0].type: unsupported part type" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
		  "[{\"type\":\"text\",\"text\":3}]}]}",
		    "messages[0].content[0].text: expected a string" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"\"}]}",
		    "messages[0].content: empty" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":"
		  "[{\"type\":\"image_url\"}]}]}",
		    "messages[0].content[0].type: expected \"text\"" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
		  "{\"role\":\"assistant\",\"content\":null}]}",
		    "messages[1]: an assistant message needs content or tool_calls" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
		  "{\"role\":\"assistant\",\"tool_calls\":{}}]}",
		    "messages[1].tool_calls: expected an array" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
		  "{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]}",
		    "messages[1].tool_calls[0].id: required" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
		  "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"function\":{}}]}]}",
		    "messages[1].tool_calls[0].name: required" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
		    "messages[0].tool_call_id: required" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\","
		  "\"content\":5}]}", "messages[0].content: expected a string" },
		{ "{\"model\":\"m\",\"stream\":\"yes\",\"messages\":[{\"role\":\"user\","
		  "\"content\":\"x\"}]}", "stream: expected a boolean" },
		{ "{\"model\":\"m\",\"stream_options\":{\"include_usage\":1},\"messages\":"
		  "[{\"role\":\"user\",\"content\":\"x\"}]}",
		    "stream_options.include_usage: expected a boolean" },
		{ "{\"model\":\"m\",\"max_tokens\":-5,\"messages\":[{\"role\":\"user\","
		  "\"content\":\"x\"}]}", "max_tokens: expected a positive integer" },
		{ "{\"model\":\"m\",\"max_completion_tokens\":\"9\",\"messages\":"
		  "[{\"role\":\"user\",\"content\":\"x\"}]}",
		    "max_completion_tokens: expected a positive integer" },
		{ "{\"model\":\"m\",\"tools\":{},\"messages\":[{\"role\":\"user\","
		  "\"content\":\"x\"}]}", "tools: expected an array" },
		{ "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":"
		  "{\"name\":\"a\"}},{\"type\":\"custom\",\"custom\":{}}],\"messages\":"
		  "[{\"role\":\"user\",\"content\":\"x\"}]}",
		    "tools[1].type: unsupported tool type \"custom\"" },
		{ "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":"
		  "{\"description\":\"d\"}}],\"messages\":[{\"role\":\"user\","
		  "\"content\":\"x\"}]}", "tools[0].function.name: required" },
		{ "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":"
		  "{\"name\":\"a\",\"parameters\":\"x\"}}],\"messages\":[{\"role\":"
		  "\"user\",\"content\":\"x\"}]}", "tools[0].function.parameters" },
		{ "{\"model\":\"m\",\"tool_choice\":\"sometimes\",\"messages\":"
		  "[{\"role\":\"user\",\"content\":\"x\"}]}",
		    "tool_choice: unknown value \"sometimes\"" },
		{ "{\"model\":\"m\",\"tool_choice\":{\"type\":\"function\"},\"messages\":"
		  "[{\"role\":\"user\",\"content\":\"x\"}]}",
		    "tool_choice.function: expected an object" },
		{ "{\"model\":\"m\",\"thinking\":{\"type\":\"sometimes\"},\"messages\":"
		  "[{\"role\":\"user\",\"content\":\"x\"}]}",
		    "thinking.type: unknown value" },
		{ "{\"model\":\"m\",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":"
		  "\"many\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		    "thinking.budget_tokens" },
	};
	size_t	 i;

	for (i = 0; i < nitems(cases); i++) {
		qreq_free(&q);
		qreq_init(&q, API_OPENAI);
		memset(&e, 0, sizeof(e));
		parse_err(cases[i].body, cases[i].want);
	}
}

/* ---------------------------------------------------------------- */
/* rendering                                                          */

static struct qev
ev_text(int type, const char *s)
{
	struct qev	 v;

	memset(&v, 0, sizeof(v));
	v.qv_type = type;
	v.qv_text = s;
	v.qv_len = strlen(s);
	return v;
}

static struct qev
ev_tool(int type, int index, const char *id, const char *name,
    const char *args)
{
	struct qev	 v;

	memset(&v, 0, sizeof(v));
	v.qv_type = type;
	v.qv_tool_index = index;
	v.qv_tool_id = id;
	v.qv_tool_name = name;
	v.qv_text = args;
	v.qv_len = args ? strlen(args) : 0;
	return v;
}

static void
feed(struct render *rd, struct qev v, struct buf *out)
{
	cr_assert_eq(openai_render_event(rd, &v, out), 0);
}

/* The SSE events of out, as the SDKs read them: each "data: X\n\n". */
struct sse {
	char	*ev[256];
	size_t	 n;
};

static void
sse_split(const struct buf *out, struct sse *s)
{
	const char	*p = out->b_data, *end = out->b_data + out->b_len, *sep;

	s->n = 0;
	while (p < end) {
		sep = strstr(p, "\n\n");
		cr_assert_not_null(sep, "unterminated SSE event at %s", p);
		cr_assert_lt(s->n, nitems(s->ev));
		s->ev[s->n++] = strndup(p, (size_t)(sep - p));
		p = sep + 2;
	}
}

static void
sse_free(struct sse *s)
{
	size_t	 i;

	for (i = 0; i < s->n; i++)
		free(s->ev[i]);
}

static struct json_object *
sse_json(const char *ev)
{
	struct json_object	*o;

	cr_assert(strncmp(ev, "data: ", 6) == 0, "not a data line: %s", ev);
	cr_assert(strchr(ev, '\n') == NULL, "one line per event: %s", ev);
	o = json_tokener_parse(ev + 6);
	cr_assert_not_null(o, "not JSON: %s", ev);
	return o;
}

static struct json_object *
jget(struct json_object *o, const char *key)
{
	struct json_object	*v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
	    json_object_to_json_string(o));
	return v;
}

static int
jhas(struct json_object *o, const char *key)
{
	return json_object_object_get_ex(o, key, NULL);
}

static void
init_q(const char *body)
{
	qreq_free(&q);
	qreq_init(&q, API_OPENAI);
	parse_ok(body);
}

Test(openai, stream_full_sequence)
{
	struct render		 rd;
	struct buf		 out, content, reasoning, args[2];
	struct sse		 s;
	struct json_object	*o, *c, *d, *v, *tcs, *tc, *fn, *parsed;
	const char		*id = NULL, *finish = NULL;
	int64_t			 created = 0;
	size_t			 i, j, nfinish = 0;
	int			 idx, saw_usage = 0;
	char			*tool_ids[2] = { NULL, NULL };
	char			*tool_names[2] = { NULL, NULL };

	init_q("{\"model\":\"claude-x\",\"stream\":true,\"stream_options\":"
	    "{\"include_usage\":true},\"messages\":[{\"role\":\"user\","
	    "\"content\":\"hi\"}]}");
	buf_init(&out);
	openai_render_init(&rd, &q);
	rd.rd_usage.u_in = 10;
	cr_assert_eq(openai_render_start(&rd, &out), 0);
	feed(&rd, ev_text(QEV_THINKING, "Let me "), &out);
	feed(&rd, ev_text(QEV_THINKING, "think."), &out);
	feed(&rd, ev_text(QEV_TEXT, "Hel"), &out);
	feed(&rd, ev_text(QEV_TEXT, ""), &out);
	feed(&rd, ev_text(QEV_TEXT, "lo \"w\"\n"), &out);
	feed(&rd, ev_tool(QEV_TOOL_START, 0, "tooluse_A1", "get_weather", NULL),
	    &out);
	feed(&rd, ev_tool(QEV_TOOL_ARGS, 0, "tooluse_A1", NULL, "{\"ci"), &out);
	feed(&rd, ev_tool(QEV_TOOL_ARGS, 0, "tooluse_A1", NULL, "ty\":\"Par"),
	    &out);
	feed(&rd, ev_tool(QEV_TOOL_ARGS, 0, "tooluse_A1", NULL, "is\"}"), &out);
	feed(&rd, ev_tool(QEV_TOOL_STOP, 0, "tooluse_A1", NULL, NULL), &out);
	feed(&rd, ev_tool(QEV_TOOL_START, 1, "tooluse_B2", "now", NULL), &out);
	feed(&rd, ev_tool(QEV_TOOL_STOP, 1, "tooluse_B2", NULL, NULL), &out);
	cr_assert_eq(openai_render_ping(&rd, &out), 0);
	rd.rd_usage.u_out = 5;
	cr_assert_eq(openai_render_finish(&rd, QSTOP_TOOL_USE, &out), 0);

	buf_init(&content);
	buf_init(&reasoning);
	buf_init(&args[0]);
	buf_init(&args[1]);
	sse_split(&out, &s);
	cr_assert_gt(s.n, 3);
	cr_assert_str_eq(s.ev[s.n - 1], "data: [DONE]");
	for (i = 0; i + 1 < s.n; i++) {
		if (strcmp(s.ev[i], ": ping") == 0)
			continue;
		o = sse_json(s.ev[i]);
		cr_assert_str_eq(json_object_get_string(jget(o, "object")),
		    "chat.completion.chunk");
		cr_assert_str_eq(json_object_get_string(jget(o, "model")),
		    "claude-x");
		if (id == NULL) {
			id = strdup(json_object_get_string(jget(o, "id")));
			created = json_object_get_int64(jget(o, "created"));
			cr_assert(strncmp(id, "chatcmpl-", 9) == 0);
			cr_assert_gt(strlen(id), 20);
			cr_assert_gt(created, 1600000000);
		}
		cr_assert_str_eq(json_object_get_string(jget(o, "id")), id);
		cr_assert_eq(json_object_get_int64(jget(o, "created")), created);
		c = jget(o, "choices");
		v = jget(o, "usage");
		if (json_object_array_length(c) == 0) {
			/* the usage chunk: last before [DONE] */
			cr_assert_eq(i, s.n - 2);
			cr_assert_eq(json_object_get_int64(jget(v,
			    "prompt_tokens")), 10);
			cr_assert_eq(json_object_get_int64(jget(v,
			    "completion_tokens")), 5);
			cr_assert_eq(json_object_get_int64(jget(v,
			    "total_tokens")), 15);
			saw_usage = 1;
			json_object_put(o);
			continue;
		}
		cr_assert(json_object_is_type(v, json_type_null),
		    "usage is null in chunk %zu", i);
		cr_assert_eq(json_object_array_length(c), 1);
		c = json_object_array_get_idx(c, 0);
		cr_assert_eq(json_object_get_int(jget(c, "index")), 0);
		d = jget(c, "delta");
		v = jget(c, "finish_reason");
		if (i == 0) {
			cr_assert_str_eq(json_object_get_string(jget(d, "role")),
			    "assistant");
			cr_assert_str_eq(json_object_get_string(jget(d,
			    "content")), "");
		} else
			cr_assert(!jhas(d, "role"));
		if (!json_object_is_type(v, json_type_null)) {
			nfinish++;
			finish = strdup(json_object_get_string(v));
			cr_assert_eq(json_object_object_length(d), 0);
		}
		if (i > 0 && jhas(d, "content"))
			buf_puts(&content, json_object_get_string(jget(d,
			    "content")));
		if (jhas(d, "reasoning_content"))
			buf_puts(&reasoning, json_object_get_string(jget(d,
			    "reasoning_content")));
		if (jhas(d, "tool_calls")) {
			tcs = jget(d, "tool_calls");
			for (j = 0; j < json_object_array_length(tcs); j++) {
				tc = json_object_array_get_idx(tcs, j);
				idx = json_object_get_int(jget(tc, "index"));
				cr_assert(idx == 0 || idx == 1);
				fn = jget(tc, "function");
				if (jhas(tc, "id")) {
					cr_assert_null(tool_ids[idx],
					    "id only on the first fragment");
					tool_ids[idx] = strdup(
					    json_object_get_string(jget(tc, "id")));
					cr_assert_str_eq(json_object_get_string(
					    jget(tc, "type")), "function");
					tool_names[idx] = strdup(
					    json_object_get_string(jget(fn, "name")));
				} else {
					cr_assert_not_null(tool_ids[idx],
					    "fragment before the start");
					cr_assert(!jhas(fn, "name"));
				}
				buf_puts(&args[idx], json_object_get_string(
				    jget(fn, "arguments")));
			}
		}
		json_object_put(o);
	}
	cr_assert(saw_usage);
	cr_assert_eq(nfinish, 1);
	cr_assert_str_eq(finish, "tool_calls");
	cr_assert_str_eq(content.b_data, "Hello \"w\"\n");
	cr_assert_str_eq(reasoning.b_data, "Let me think.");
	cr_assert_str_eq(tool_ids[0], "tooluse_A1");
	cr_assert_str_eq(tool_names[0], "get_weather");
	cr_assert_str_eq(tool_ids[1], "tooluse_B2");
	cr_assert_str_eq(tool_names[1], "now");
	parsed = json_tokener_parse(args[0].b_data);
	cr_assert_not_null(parsed, "arguments join to JSON: %s", args[0].b_data);
	cr_assert_str_eq(json_object_get_string(jget(parsed, "city")), "Paris");
	json_object_put(parsed);
	cr_assert_str_eq(args[1].b_data, "{}", "no input: \"{}\"");
	cr_assert(strstr(out.b_data, "\n: ping\n\n") != NULL);

	sse_free(&s);
	buf_free(&content);
	buf_free(&reasoning);
	buf_free(&args[0]);
	buf_free(&args[1]);
	buf_free(&out);
	render_free(&rd);
	free((char *)id);
	free((char *)finish);
	for (idx = 0; idx < 2; idx++) {
		free(tool_ids[idx]);
		free(tool_names[idx]);
	}
}

/* the finish chunk's reason, a stream without include_usage */
static char *
stream_finish_reason(int stop, int with_tool)
{
	struct render		 rd;
	struct buf		 out;
	struct sse		 s;
	struct json_object	*o, *c;
	char			*r;
	size_t			 i;

	init_q("{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":"
	    "\"user\",\"content\":\"hi\"}]}");
	buf_init(&out);
	openai_render_init(&rd, &q);
	feed(&rd, ev_text(QEV_TEXT, "partial"), &out);
	if (with_tool)
		feed(&rd, ev_tool(QEV_TOOL_START, 0, "t1", "f", NULL), &out);
	cr_assert_eq(openai_render_finish(&rd, stop, &out), 0);
	sse_split(&out, &s);
	cr_assert_str_eq(s.ev[s.n - 1], "data: [DONE]");
	for (i = 0; i + 1 < s.n; i++) {
		o = sse_json(s.ev[i]);
		cr_assert(!jhas(o, "usage"), "no usage without include_usage");
		json_object_put(o);
	}
	o = sse_json(s.ev[s.n - 2]);
	c = json_object_array_get_idx(jget(o, "choices"), 0);
	r = strdup(json_object_get_string(jget(c, "finish_reason")));
	json_object_put(o);
	if (with_tool) {
		/* the unfinished call was closed with "{}" */
		o = sse_json(s.ev[s.n - 3]);
		c = json_object_array_get_idx(jget(o, "choices"), 0);
		c = json_object_array_get_idx(jget(jget(c, "delta"),
		    "tool_calls"), 0);
		cr_assert_str_eq(json_object_get_string(jget(jget(c, "function"),
		    "arguments")), "{}");
		json_object_put(o);
	}
	sse_free(&s);
	buf_free(&out);
	render_free(&rd);
	return r;
}

Test(openai, stream_finish_reasons)
{
	static const struct {
		int		 stop, tool;
		const char	*want;
	} cases[] = {
		{ QSTOP_END_TURN, 0, "stop" },
		{ QSTOP_NONE, 0, "stop" },
		{ QSTOP_MAX_TOKENS, 0, "length" },
		{ QSTOP_CONTEXT, 0, "length" },
		{ QSTOP_TOOL_USE, 1, "tool_calls" },
		{ QSTOP_END_TURN, 1, "tool_calls" },
		{ QSTOP_MAX_TOKENS, 1, "length" },
	};
	size_t	 i;
	char	*r;

	for (i = 0; i < nitems(cases); i++) {
		r = stream_finish_reason(cases[i].stop, cases[i].tool);
		cr_assert_str_eq(r, cases[i].want, "case %zu", i);
		free(r);
	}
}

Test(openai, stream_error_event)
{
	struct render		 rd;
	struct buf		 out;
	struct sse		 s;
	struct qev		 err;
	struct json_object	*o, *eo;

	init_q("{\"model\":\"m\",\"stream\":true,\"stream_options\":"
	    "{\"include_usage\":true},\"messages\":[{\"role\":\"user\","
	    "\"content\":\"hi\"}]}");
	buf_init(&out);
	openai_render_init(&rd, &q);
	cr_assert_eq(openai_render_start(&rd, &out), 0);
	feed(&rd, ev_text(QEV_TEXT, "Hello"), &out);
	memset(&err, 0, sizeof(err));
	err.qv_type = QEV_ERROR;
	err.qv_status = 429;
	err.qv_err_type = "rate_limit_error";
	err.qv_err_msg = "Too many requests";
	feed(&rd, err, &out);
	cr_assert_eq(rd.rd_err_status, 429);
	feed(&rd, ev_text(QEV_TEXT, "after"), &out);
	cr_assert_eq(openai_render_finish(&rd, QSTOP_ERROR, &out), 0);
	cr_assert(strstr(out.b_data, "after") == NULL);
	cr_assert(strstr(out.b_data, "[DONE]") == NULL);
	sse_split(&out, &s);
	cr_assert_eq(s.n, 3);
	o = sse_json(s.ev[2]);
	eo = jget(o, "error");
	cr_assert_str_eq(json_object_get_string(jget(eo, "message")),
	    "Too many requests");
	cr_assert_str_eq(json_object_get_string(jget(eo, "type")),
	    "rate_limit_exceeded");
	cr_assert(json_object_is_type(jget(eo, "code"), json_type_null));
	json_object_put(o);
	sse_free(&s);
	buf_free(&out);
	render_free(&rd);
}

Test(openai, stream_error_stop_without_event)
{
	struct render		 rd;
	struct buf		 out;
	struct sse		 s;
	struct json_object	*o;

	init_q("{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":"
	    "\"user\",\"content\":\"hi\"}]}");
	buf_init(&out);
	openai_render_init(&rd, &q);
	feed(&rd, ev_text(QEV_TEXT, "Hel"), &out);
	cr_assert_eq(openai_render_finish(&rd, QSTOP_ERROR, &out), 0);
	cr_assert(strstr(out.b_data, "[DONE]") == NULL);
	sse_split(&out, &s);
	cr_assert_eq(s.n, 3, "role chunk, text, error");
	o = sse_json(s.ev[2]);
	cr_assert_str_eq(json_object_get_string(jget(jget(o, "error"), "type")),
	    "server_error");
	json_object_put(o);
	sse_free(&s);
	buf_free(&out);
	render_free(&rd);
}

Test(openai, stream_ids_differ)
{
	struct render	 a, b;

	init_q("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	openai_render_init(&a, &q);
	openai_render_init(&b, &q);
	cr_assert(strncmp(a.rd_id, "chatcmpl-", 9) == 0);
	cr_assert_str_neq(a.rd_id, b.rd_id);
	render_free(&a);
	render_free(&b);
}

static struct json_object *
body_render(const char *events, int stop, int *rc)
{
	struct render		 rd;
	struct buf		 out;
	struct json_object	*o;
	const char		*p;

	init_q("{\"model\":\"claude-y\",\"messages\":[{\"role\":\"user\","
	    "\"content\":\"hi\"}]}");
	buf_init(&out);
	openai_render_init(&rd, &q);
	rd.rd_usage.u_in = 7;
	cr_assert_eq(openai_render_start(&rd, &out), 0);
	/* a tiny script: T text, R reasoning, S tool start, A args, E end,
	 * X error */
	for (p = events; *p; p++) {
		switch (*p) {
		case 'T':
			feed(&rd, ev_text(QEV_TEXT, "ab"), &out);
			break;
		case 'R':
			feed(&rd, ev_text(QEV_THINKING, "hm"), &out);
			break;
		case 'S':
			feed(&rd, ev_tool(QEV_TOOL_START, rd.rd_ntools,
			    rd.rd_ntools ? "id2" : "id1", "f", NULL), &out);
			break;
		case 'A':
			feed(&rd, ev_tool(QEV_TOOL_ARGS, rd.rd_ntools - 1, NULL,
			    NULL, p[1] == 'A' ? "{\"x\":" : "1}"), &out);
			break;
		case 'E':
			feed(&rd, ev_tool(QEV_TOOL_STOP, rd.rd_ntools - 1, NULL,
			    NULL, NULL), &out);
			break;
		case 'X': {
			struct qev err;

			memset(&err, 0, sizeof(err));
			err.qv_type = QEV_ERROR;
			err.qv_status = 503;
			err.qv_err_msg = "upstream overloaded";
			feed(&rd, err, &out);
			break;
		}
		}
	}
	cr_assert_eq(openai_render_ping(&rd, &out), 0);
	cr_assert_eq(out.b_len, 0, "non-stream writes nothing before finish");
	rd.rd_usage.u_out = 3;
	*rc = openai_render_finish(&rd, stop, &out);
	o = json_tokener_parse(out.b_data);
	cr_assert_not_null(o, "body is JSON: %s", out.b_data);
	buf_free(&out);
	render_free(&rd);
	return o;
}

Test(openai, body_text_and_reasoning)
{
	struct json_object	*o, *c, *m, *u;
	int			 rc;

	o = body_render("RRTTT", QSTOP_END_TURN, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(json_object_get_string(jget(o, "object")),
	    "chat.completion");
	cr_assert(strncmp(json_object_get_string(jget(o, "id")), "chatcmpl-",
	    9) == 0);
	cr_assert_str_eq(json_object_get_string(jget(o, "model")), "claude-y");
	c = json_object_array_get_idx(jget(o, "choices"), 0);
	cr_assert_eq(json_object_get_int(jget(c, "index")), 0);
	cr_assert_str_eq(json_object_get_string(jget(c, "finish_reason")), "stop");
	m = jget(c, "message");
	cr_assert_str_eq(json_object_get_string(jget(m, "role")), "assistant");
	cr_assert_str_eq(json_object_get_string(jget(m, "content")), "ababab");
	cr_assert_str_eq(json_object_get_string(jget(m, "reasoning_content")),
	    "hmhm");
	cr_assert(!jhas(m, "tool_calls"));
	u = jget(o, "usage");
	cr_assert_eq(json_object_get_int(jget(u, "prompt_tokens")), 7);
	cr_assert_eq(json_object_get_int(jget(u, "completion_tokens")), 3);
	cr_assert_eq(json_object_get_int(jget(u, "total_tokens")), 10);
	json_object_put(o);
}

Test(openai, body_tool_calls)
{
	struct json_object	*o, *c, *m, *tcs, *tc, *fn;
	int			 rc;

	o = body_render("SAAESE", QSTOP_TOOL_USE, &rc);
	cr_assert_eq(rc, 0);
	c = json_object_array_get_idx(jget(o, "choices"), 0);
	cr_assert_str_eq(json_object_get_string(jget(c, "finish_reason")),
	    "tool_calls");
	m = jget(c, "message");
	cr_assert(json_object_is_type(jget(m, "content"), json_type_null),
	    "content is null when there are only tool calls");
	cr_assert(!jhas(m, "reasoning_content"));
	tcs = jget(m, "tool_calls");
	cr_assert_eq(json_object_array_length(tcs), 2);
	tc = json_object_array_get_idx(tcs, 0);
	cr_assert_str_eq(json_object_get_string(jget(tc, "id")), "id1");
	cr_assert_str_eq(json_object_get_string(jget(tc, "type")), "function");
	fn = jget(tc, "function");
	cr_assert_str_eq(json_object_get_string(jget(fn, "name")), "f");
	cr_assert(json_object_is_type(jget(fn, "arguments"), json_type_string));
	cr_assert_str_eq(json_object_get_string(jget(fn, "arguments")),
	    "{\"x\":1}");
	tc = json_object_array_get_idx(tcs, 1);
	cr_assert_str_eq(json_object_get_string(jget(tc, "id")), "id2");
	cr_assert_str_eq(json_object_get_string(jget(jget(tc, "function"),
	    "arguments")), "{}", "an unfinished call without input gets {}");
	json_object_put(o);
}

Test(openai, body_truncated_is_length)
{
	struct json_object	*o, *c;
	int			 rc;

	o = body_render("T", QSTOP_MAX_TOKENS, &rc);
	cr_assert_eq(rc, 0);
	c = json_object_array_get_idx(jget(o, "choices"), 0);
	cr_assert_str_eq(json_object_get_string(jget(c, "finish_reason")),
	    "length");
	json_object_put(o);
	o = body_render("", QSTOP_END_TURN, &rc);
	c = json_object_array_get_idx(jget(o, "choices"), 0);
	cr_assert_str_eq(json_object_get_string(jget(jget(c, "message"),
	    "content")), "", "no text, no tools: empty string");
	json_object_put(o);
}

Test(openai, body_errors)
{
	struct json_object	*o, *eo;
	int			 rc;

	o = body_render("TX", QSTOP_ERROR, &rc);
	cr_assert_eq(rc, 503);
	eo = jget(o, "error");
	cr_assert_str_eq(json_object_get_string(jget(eo, "message")),
	    "upstream overloaded");
	cr_assert_str_eq(json_object_get_string(jget(eo, "type")),
	    "server_error");
	cr_assert(json_object_is_type(jget(eo, "param"), json_type_null));
	cr_assert(!jhas(o, "choices"));
	json_object_put(o);

	o = body_render("T", QSTOP_ERROR, &rc);
	cr_assert_eq(rc, 502);
	cr_assert(jhas(o, "error"));
	json_object_put(o);
}

/* accumulation stays linear: 200k deltas must not take quadratic time */
Test(openai, body_many_deltas, .timeout = 10)
{
	struct render		 rd;
	struct buf		 out;
	struct json_object	*o, *c;
	size_t			 i;

	init_q("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	buf_init(&out);
	openai_render_init(&rd, &q);
	for (i = 0; i < 200000; i++)
		feed(&rd, ev_text(QEV_TEXT, "0123456789"), &out);
	cr_assert_eq(openai_render_finish(&rd, QSTOP_END_TURN, &out), 0);
	o = json_tokener_parse(out.b_data);
	c = json_object_array_get_idx(jget(o, "choices"), 0);
	cr_assert_eq(json_object_get_string_len(jget(jget(c, "message"),
	    "content")), 2000000);
	json_object_put(o);
	buf_free(&out);
	render_free(&rd);
}

Test(openai, error_json_types)
{
	static const struct {
		int		 status;
		const char	*type;
	} cases[] = {
		{ 400, "invalid_request_error" }, { 401, "authentication_error" },
		{ 402, "insufficient_quota" }, { 403, "permission_error" },
		{ 404, "invalid_request_error" }, { 413, "invalid_request_error" },
		{ 429, "rate_limit_exceeded" }, { 500, "server_error" },
		{ 502, "server_error" }, { 529, "server_error" },
	};
	struct json_object	*o, *eo;
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		o = openai_error_json(cases[i].status, NULL, "msg");
		eo = jget(o, "error");
		cr_assert_str_eq(json_object_get_string(jget(eo, "type")),
		    cases[i].type, "status %d", cases[i].status);
		cr_assert_str_eq(json_object_get_string(jget(eo, "message")),
		    "msg");
		cr_assert(json_object_is_type(jget(eo, "param"),
		    json_type_null));
		cr_assert(json_object_is_type(jget(eo, "code"), json_type_null));
		json_object_put(o);
	}
	o = openai_error_json(400, "my_type", "m");
	cr_assert_str_eq(json_object_get_string(jget(jget(o, "error"), "type")),
	    "my_type");
	json_object_put(o);
}

/* Tool names the upstream uses (shortened by qreq_build) go back to the
 * client's names in both modes. */
Test(openai, tool_names_mapped_back)
{
	struct render	 rd;
	struct buf	 out;
	int		 stream;

	for (stream = 0; stream < 2; stream++) {
		init_q(stream ? "{\"model\":\"m\",\"stream\":true,\"messages\":"
		    "[{\"role\":\"user\",\"content\":\"x\"}]}" :
		    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
		    "\"content\":\"x\"}]}");
		cr_assert_not_null(q.q_tool_map = calloc(2, sizeof(char *)));
		q.q_tool_map[0] = strdup("short_1a2b3c4d");
		q.q_tool_map[1] = strdup("a_client_tool_name_far_too_long_for_"
		    "the_upstream_limit_of_sixty_four_bytes");
		q.q_ntool_map = 1;
		buf_init(&out);
		openai_render_init(&rd, &q);
		feed(&rd, ev_tool(QEV_TOOL_START, 0, "t1", "short_1a2b3c4d",
		    NULL), &out);
		feed(&rd, ev_tool(QEV_TOOL_START, 1, "t2", "plain", NULL), &out);
		cr_assert_geq(openai_render_finish(&rd, QSTOP_TOOL_USE, &out), 0);
		cr_assert(strstr(out.b_data, "\"name\":\"a_client_tool_name_far_"
		    "too_long_for_the_upstream_limit_of_sixty_four_bytes\"") !=
		    NULL, "%s", out.b_data);
		cr_assert(strstr(out.b_data, "\"name\":\"plain\"") != NULL);
		cr_assert(strstr(out.b_data, "short_1a2b3c4d") == NULL);
		buf_free(&out);
		render_free(&rd);
	}
}
