/*
 * fuzz_accounts.c - libFuzzer target for what the pool reads from
 * outside: a feed line or import entry (db_account_parse: JSON, a Kiro
 * credential file, "clientId:clientSecret:refreshToken", a bare
 * token), a getUsageLimits answer (kiro_usage_parse) and the OIDC
 * answers of a refresh, a device poll, a registration and a device
 * start. The first byte picks the HTTP status the answers are read
 * with (200 or an error). Invariants are checked with abort():
 *  - a parse that fails says why, and the why never holds the refresh
 *    token it was given;
 *  - an account that parses has a type of "idc" or "social" and a
 *    refresh token;
 *  - an AUTH_OK refresh has an access token.
 */
#include <stdlib.h>
#include <string.h>

#include "qrelayd.h"

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);
const char *__ubsan_default_options(void);

const char *
__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

static void
fuzz_line(const char *data, size_t len)
{
	struct json_object	*o = NULL;
	struct db_account_new	 an;
	char			*line, err[256];

	if ((line = malloc(len + 1)) == NULL)
		return;
	memcpy(line, data, len);
	line[len] = '\0';
	memset(&an, 0, sizeof(an));
	err[0] = '\0';
	if (db_account_parse(line, &o, &an, err, sizeof(err)) == 0) {
		if (an.an_type == NULL || (strcmp(an.an_type, "idc") != 0 &&
		    strcmp(an.an_type, "social") != 0))
			abort();
		if (an.an_refresh_token == NULL || *an.an_refresh_token == '\0')
			abort();
	} else {
		if (err[0] == '\0')
			abort();
		/* tokens of 12 or more bytes never show in the reason */
		if (an.an_refresh_token != NULL &&
		    strlen(an.an_refresh_token) >= 12 &&
		    strstr(err, an.an_refresh_token) != NULL)
			abort();
	}
	json_object_put(o);
	free(line);
}

static void
fuzz_answers(int status, const char *data, size_t len)
{
	struct usage_limits	 ul;
	struct auth_tokens	 at;
	struct oidc_client	 oc;
	struct oidc_device	 od;
	struct buf		 b;
	char			 err[256];

	memset(&ul, 0, sizeof(ul));
	(void)kiro_usage_parse(data, len, &ul);

	buf_init(&b);
	if (buf_append(&b, data, len) == -1 || buf_append(&b, "", 1) == -1) {
		buf_free(&b);
		return;
	}
	b.b_len--;
	memset(&at, 0, sizeof(at));
	if (oidc_parse_answer(status, &b, "fuzz-refresh-token", &at) ==
	    AUTH_OK && (at.at_access == NULL || *at.at_access == '\0'))
		abort();
	oidc_tokens_free(&at);
	memset(&at, 0, sizeof(at));
	(void)oidc_parse_poll(status, &b, &at);
	oidc_tokens_free(&at);
	memset(&oc, 0, sizeof(oc));
	(void)oidc_parse_register(status, &b, &oc, err, sizeof(err));
	oidc_client_free(&oc);
	memset(&od, 0, sizeof(od));
	(void)oidc_parse_device(status, &b, &od, err, sizeof(err));
	oidc_device_free(&od);
	buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int	 statuses[] = { 200, 400, 401, 403, 429, 500 };

	if (size < 1)
		return 0;
	fuzz_line((const char *)data + 1, size - 1);
	fuzz_answers(statuses[data[0] % nitems(statuses)],
	    (const char *)data + 1, size - 1);
	return 0;
}
