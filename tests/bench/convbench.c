/*
 * convbench.c - how long converting a Claude-Code-sized request takes:
 * an Anthropic Messages body of about 1 MB (a long system prompt, 30
 * tools with realistic JSON Schemas, 200 turns of tool calls and
 * results, thinking on) goes through anthropic_parse (json-c parse and
 * the IR) and qreq_build (lint and the upstream conversationState),
 * N times; the medians are printed. The target for the whole
 * conversion is 5 ms.
 *
 *   convbench [iterations]          (default 200)
 *   valgrind --tool=callgrind convbench 5   (instruction counts)
 *
 * No network, no daemon: the worker's per-request code, in a loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qrelayd.h"

#define NTOOLS		30
#define NTURNS		200	/* messages: user and assistant */
#define TARGET		(1024 * 1024)

static uint64_t	 rng = 0x9e3779b97f4a7c15ULL;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

static const char *const words[] = {
	"the", "file", "function", "returns", "buffer", "request", "when",
	"error", "config", "worker", "upstream", "test", "struct", "static",
	"int", "len", "size_t", "json", "object", "stream", "token", "model",
	"é", "日本語", "naïve", "→", "\\\"quoted\\\"", "tab\\there", "path/to/x",
};

/* n bytes (about) of JSON-escaped prose with line breaks */
static void
prose(struct buf *b, size_t n)
{
	size_t	 start = b->b_len;
	int	 col = 0;

	while (b->b_len - start < n) {
		buf_puts(b, words[rnd() % nitems(words)]);
		if (++col % 14 == 0)
			buf_puts(b, "\\n");
		else
			buf_puts(b, " ");
	}
}

/* a code-like tool result: numbered lines, indentation, quotes */
static void
code(struct buf *b, size_t n)
{
	size_t	 start = b->b_len;
	int	 line = 1;

	while (b->b_len - start < n) {
		buf_printf(b, "%6d\\t", line++);
		switch (rnd() % 4) {
		case 0:
			buf_puts(b, "\\tif (buf_append(b, \\\"x\\\", 1) == -1)");
			break;
		case 1:
			buf_puts(b, "\\t\\treturn -1;");
			break;
		case 2:
			buf_puts(b, "static int\\nfoo(struct buf *b, size_t n)");
			break;
		default:
			prose(b, 40);
		}
		buf_puts(b, "\\n");
	}
}

static void
tool_schema(struct buf *b, int i)
{
	int	 j, nprops = 3 + i % 6;

	buf_puts(b, "{\"type\":\"object\",\"$schema\":"
	    "\"http://json-schema.org/draft-07/schema#\","
	    "\"additionalProperties\":false,\"properties\":{");
	for (j = 0; j < nprops; j++) {
		if (j > 0)
			buf_puts(b, ",");
		switch (j % 4) {
		case 0:
			buf_printf(b, "\"param_%d\":{\"type\":\"string\","
			    "\"description\":\"", j);
			prose(b, 120);
			buf_puts(b, "\"}");
			break;
		case 1:
			buf_printf(b, "\"count_%d\":{\"type\":\"number\","
			    "\"minimum\":0,\"maximum\":600000,"
			    "\"description\":\"Optional limit\"}", j);
			break;
		case 2:
			buf_printf(b, "\"mode_%d\":{\"type\":\"string\","
			    "\"enum\":[\"content\",\"files_with_matches\","
			    "\"count\"],\"description\":\"Output mode\"}", j);
			break;
		default:
			buf_printf(b, "\"edits_%d\":{\"type\":\"array\","
			    "\"items\":{\"type\":\"object\",\"properties\":{"
			    "\"old_string\":{\"type\":\"string\"},"
			    "\"new_string\":{\"type\":\"string\"},"
			    "\"replace_all\":{\"type\":\"boolean\","
			    "\"default\":false}},\"required\":[\"old_string\","
			    "\"new_string\"]},\"minItems\":1}", j);
		}
	}
	buf_puts(b, "},\"required\":[\"param_0\"]}");
}

static const char *const tool_names[] = {
	"Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit",
	"MultiEdit", "Write", "NotebookEdit", "WebFetch", "TodoWrite",
	"WebSearch", "BashOutput", "KillShell", "SlashCommand",
	"mcp__ide__getDiagnostics", "mcp__ide__executeCode",
	"mcp__github__create_or_update_file", "mcp__github__search_code",
	"mcp__github__get_pull_request_comments_and_review_threads_for_"
	    "the_current_branch",
	"mcp__postgres__query", "mcp__filesystem__read_multiple_files",
	"mcp__filesystem__directory_tree", "mcp__slack__post_message",
	"mcp__linear__create_issue", "mcp__sentry__get_issue_details",
	"mcp__browser__take_screenshot", "mcp__memory__search_nodes",
};

static void
make_request(struct buf *b)
{
	int	 i, t, ncalls = 0, k;
	size_t	 per_turn;

	buf_puts(b, "{\"model\":\"claude-sonnet-4-5-20250929\","
	    "\"max_tokens\":32000,\"stream\":true,"
	    "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":10000},"
	    "\"metadata\":{\"user_id\":\"user_abc_account__session_1\"},"
	    "\"system\":[{\"type\":\"text\",\"text\":\"You are Claude Code, "
	    "Anthropic's official CLI for Claude.\",\"cache_control\":"
	    "{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"");
	prose(b, 14000);
	buf_puts(b, "\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
	    "\"tools\":[");
	for (i = 0; i < NTOOLS; i++) {
		if (i > 0)
			buf_puts(b, ",");
		buf_printf(b, "{\"name\":\"%s\",\"description\":\"",
		    tool_names[i]);
		prose(b, i == 1 ? 9000 : 600 + (size_t)(rnd() % 2000));
		buf_puts(b, "\",\"input_schema\":");
		tool_schema(b, i);
		buf_puts(b, "}");
	}
	buf_puts(b, "],\"messages\":[");
	per_turn = (TARGET - b->b_len) / NTURNS;
	for (t = 0; t < NTURNS; t++) {
		if (t > 0)
			buf_puts(b, ",");
		if (t % 2 == 1) {
			/* assistant: thinking, text, one to three calls */
			buf_puts(b, "{\"role\":\"assistant\",\"content\":["
			    "{\"type\":\"thinking\",\"thinking\":\"");
			prose(b, 200);
			buf_puts(b, "\",\"signature\":\"EqQBCkYIBxgCKkDx\"},"
			    "{\"type\":\"text\",\"text\":\"");
			prose(b, 150);
			buf_puts(b, "\"}");
			ncalls = 1 + (int)(rnd() % 3);
			for (k = 0; k < ncalls; k++) {
				buf_printf(b, ",{\"type\":\"tool_use\","
				    "\"id\":\"toolu_%03d_%d\",\"name\":\"%s\","
				    "\"input\":{\"file_path\":"
				    "\"/home/user/src/file%d.c\",\"command\":\"",
				    t, k, tool_names[(t + k) % NTOOLS], t);
				prose(b, 80);
				buf_puts(b, "\",\"limit\":2000}}");
			}
			buf_puts(b, "]}");
		} else if (t == 0) {
			buf_puts(b, "{\"role\":\"user\",\"content\":[{\"type\":"
			    "\"text\",\"text\":\"<system-reminder>");
			prose(b, 3000);
			buf_puts(b, "</system-reminder>\"},{\"type\":\"text\","
			    "\"text\":\"Refactor the buffer code and run the "
			    "tests.\"}]}");
		} else {
			/* user: the results of the previous turn's calls */
			buf_puts(b, "{\"role\":\"user\",\"content\":[");
			for (k = 0; k < ncalls; k++) {
				buf_printf(b, "%s{\"type\":\"tool_result\","
				    "\"tool_use_id\":\"toolu_%03d_%d\","
				    "\"content\":\"", k ? "," : "", t - 1, k);
				code(b, per_turn * 2 / (size_t)ncalls);
				buf_printf(b, "\"%s}", k == 0 && t % 10 == 0 ?
				    ",\"is_error\":true" : "");
			}
			if (t % 20 == 0) {
				buf_puts(b, ",{\"type\":\"text\",\"text\":\"");
				prose(b, 200);
				buf_puts(b, "\",\"cache_control\":{\"type\":"
				    "\"ephemeral\"}}");
			}
			buf_puts(b, "]}");
		}
	}
	/* the current turn: the results of the last calls */
	buf_puts(b, ",{\"role\":\"user\",\"content\":[");
	for (k = 0; k < ncalls; k++)
		buf_printf(b, "%s{\"type\":\"tool_result\",\"tool_use_id\":"
		    "\"toolu_%03d_%d\",\"content\":\"ok\"}", k ? "," : "",
		    NTURNS - 1, k);
	buf_puts(b, "]}]}");
}

static double
ms_since(clockid_t clk, const struct timespec *a)
{
	struct timespec	 b;

	clock_gettime(clk, &b);
	return (double)(b.tv_sec - a->tv_sec) * 1e3 +
	    (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int
main(int argc, char **argv)
{
	struct config	 cf;
	struct buf	 body, up;
	struct qreq	 q;
	struct qerr	 e;
	struct timespec	 t0, c0;
	struct json_object *chk;
	double		*tp, *tb, *tt, *tc;
	int		 i, n = argc > 1 ? atoi(argv[1]) : 200;

	if (n < 1)
		n = 1;
	log_init(1, 0, "convbench");
	config_defaults(&cf);
	buf_init(&body);
	buf_init(&up);
	make_request(&body);
	if ((tp = calloc((size_t)n, sizeof(double))) == NULL ||
	    (tb = calloc((size_t)n, sizeof(double))) == NULL ||
	    (tt = calloc((size_t)n, sizeof(double))) == NULL ||
	    (tc = calloc((size_t)n, sizeof(double))) == NULL)
		fatal("calloc");

	for (i = 0; i < n; i++) {
		qreq_init(&q, API_ANTHROPIC);
		memset(&e, 0, sizeof(e));
		buf_reset(&up);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (anthropic_parse(&q, body.b_data, body.b_len, &e) == -1)
			fatalx("anthropic_parse: %d %s", e.qe_status, e.qe_msg);
		tp[i] = ms_since(CLOCK_MONOTONIC, &t0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (qreq_build(&q, &cf, NULL, &up, &e) == -1)
			fatalx("qreq_build: %d %s", e.qe_status, e.qe_msg);
		tb[i] = ms_since(CLOCK_MONOTONIC, &t0);
		tt[i] = tp[i] + tb[i];
		/* CPU time too: on a busy machine the wall clock also
		 * counts other processes' turns */
		tc[i] = ms_since(CLOCK_THREAD_CPUTIME_ID, &c0);
		if (i == 0) {
			if ((chk = json_tokener_parse(up.b_data)) == NULL)
				fatalx("the upstream body is not JSON");
			json_object_put(chk);
			printf("request: %zu bytes, %zu messages, %zu tools; "
			    "upstream body %zu bytes\n", body.b_len, q.q_nmsgs,
			    q.q_ntools, up.b_len);
		}
		qreq_free(&q);
	}
	printf("parse (jsonr + anthropic_parse): median %.3f ms\n",
	    median(tp, n));
	printf("build (qreq_build): median %.3f ms\n", median(tb, n));
	printf("convert 1MB: median %.3f ms (%d iterations; target 5 ms)\n",
	    median(tt, n), n);
	printf("convert 1MB, CPU time: median %.3f ms\n", median(tc, n));
	free(tp);
	free(tb);
	free(tt);
	free(tc);
	buf_free(&body);
	buf_free(&up);
	return 0;
}
