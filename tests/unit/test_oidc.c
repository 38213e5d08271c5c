/*
 * test_oidc.c - the upstream auth and usage answers (oidc.c, kiro.c):
 * getUsageLimits in both shapes, the device flow's CreateToken codes,
 * RegisterClient and StartDeviceAuthorization, the requests as built
 * (no network), and the registered client kept in the settings.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qrelayd.h"

static struct buf	 B;

static void
setup(void)
{
	log_init(1, 0, "test");
	buf_init(&B);
}

static void
teardown(void)
{
	buf_free(&B);
}

TestSuite(oidc, .init = setup, .fini = teardown);

static const struct buf *
body(const char *s)
{
	buf_reset(&B);
	buf_puts(&B, s);
	return &B;
}

static void
config(struct config *cf)
{
	config_defaults(cf);
	strlcpy_qr(cf->cf_region, "us-east-1", sizeof(cf->cf_region));
	strlcpy_qr(cf->cf_oidc_endpoint, "https://oidc.us-east-1.example",
	    sizeof(cf->cf_oidc_endpoint));
	strlcpy_qr(cf->cf_q_endpoint, "https://q.us-east-1.example/",
	    sizeof(cf->cf_q_endpoint));
	strlcpy_qr(cf->cf_kiro_auth_endpoint, "https://auth.example",
	    sizeof(cf->cf_kiro_auth_endpoint));
	strlcpy_qr(cf->cf_start_url, "https://view.awsapps.com/start",
	    sizeof(cf->cf_start_url));
}

/* ------------------------------------------------------------------ */
/* getUsageLimits                                                        */

#define KIRO_USAGE \
	"{\"daysUntilReset\":12,\"nextDateReset\":1767225600.0," \
	"\"limits\":[],\"subscriptionInfo\":{\"subscriptionTitle\":" \
	"\"KIRO PRO+\",\"type\":\"Q_DEVELOPER_STANDALONE_PRO_PLUS\"}," \
	"\"userInfo\":{\"email\":\"a@example.com\",\"userId\":\"d-1\"}," \
	"\"usageBreakdownList\":[{\"resourceType\":\"CREDIT\"," \
	"\"usageLimit\":1000,\"usageLimitWithPrecision\":1000.0," \
	"\"currentUsage\":12,\"currentUsageWithPrecision\":12.3456," \
	"\"nextDateReset\":1767225600.0%s}]}"

Test(oidc, usage_kiro_shape)
{
	struct usage_limits	 ul;
	char			 j[2048];

	snprintf(j, sizeof(j), KIRO_USAGE, "");
	cr_assert_eq(kiro_usage_parse(j, strlen(j), &ul), 0, "%s",
	    ul.ul_error);
	cr_assert_eq(ul.ul_used, 12346, "used x1000 rounded: %lld",
	    (long long)ul.ul_used);
	cr_assert_eq(ul.ul_limit, 1000000);
	cr_assert_eq(ul.ul_reset, 1767225600);
	cr_assert_str_eq(ul.ul_subscription, "KIRO PRO+");
	cr_assert_str_eq(ul.ul_email, "a@example.com");
}

Test(oidc, usage_free_trial_counts_when_active)
{
	struct usage_limits	 ul;
	char			 j[2048];

	snprintf(j, sizeof(j), KIRO_USAGE, ",\"freeTrialInfo\":{"
	    "\"freeTrialStatus\":\"ACTIVE\",\"usageLimitWithPrecision\":500.0,"
	    "\"currentUsageWithPrecision\":100.5}");
	cr_assert_eq(kiro_usage_parse(j, strlen(j), &ul), 0);
	cr_assert_eq(ul.ul_limit, 1500000);
	cr_assert_eq(ul.ul_used, 112846);

	snprintf(j, sizeof(j), KIRO_USAGE, ",\"freeTrialInfo\":{"
	    "\"freeTrialStatus\":\"EXPIRED\",\"usageLimitWithPrecision\":500.0,"
	    "\"currentUsageWithPrecision\":100.5}");
	cr_assert_eq(kiro_usage_parse(j, strlen(j), &ul), 0);
	cr_assert_eq(ul.ul_limit, 1000000, "an expired trial adds nothing");
	cr_assert_eq(ul.ul_used, 12346);
}

Test(oidc, usage_picks_the_credit_entry_and_plain_numbers)
{
	static const char j[] = "{\"usageBreakdownList\":["
	    "{\"resourceType\":\"OTHER\",\"usageLimit\":5,\"currentUsage\":5},"
	    "{\"resourceType\":\"CREDIT\",\"usageLimit\":50,"
	    "\"currentUsage\":7}],\"nextDateReset\":1767225600000}";
	struct usage_limits	 ul;

	cr_assert_eq(kiro_usage_parse(j, strlen(j), &ul), 0);
	cr_assert_eq(ul.ul_limit, 50000);
	cr_assert_eq(ul.ul_used, 7000);
	cr_assert_eq(ul.ul_reset, 1767225600, "milliseconds taken as such");
	cr_assert_str_eq(ul.ul_subscription, "");
}

Test(oidc, usage_awsjson_shape)
{
	static const char j[] = "{\"limits\":[{\"type\":\"AGENTIC_REQUEST\","
	    "\"currentUsageLimit\":30,\"totalUsageLimit\":50,"
	    "\"percentUsed\":60.0}],\"daysUntilReset\":3}";
	struct usage_limits	 ul;
	int64_t			 now = now_wall();

	cr_assert_eq(kiro_usage_parse(j, strlen(j), &ul), 0, "%s",
	    ul.ul_error);
	cr_assert_eq(ul.ul_used, 30000);
	cr_assert_eq(ul.ul_limit, 50000);
	cr_assert_eq(ul.ul_reset % 86400, 0, "midnight UTC");
	cr_assert(ul.ul_reset > now + 2 * 86400 &&
	    ul.ul_reset <= now + 4 * 86400, "in about three days");
}

Test(oidc, usage_bad_answers)
{
	static const char *const bad[] = {
		"", "not json", "[1,2]", "{\"usageBreakdownList\":\"x\"}",
		"{\"usageBreakdownList\":[]}", "{\"limits\":[{}]}",
		"{\"usageBreakdownList\":[{\"currentUsage\":1}]}",
		"{\"usageBreakdownList\":[{\"usageLimit\":1}",
	};
	struct usage_limits	 ul;
	size_t			 i;

	for (i = 0; i < nitems(bad); i++) {
		cr_assert_eq(kiro_usage_parse(bad[i], strlen(bad[i]), &ul), -1,
		    "accepted %s", bad[i]);
		cr_assert_neq(ul.ul_error[0], '\0');
	}
}

Test(oidc, usage_errors)
{
	struct usage_limits	 ul;

	kiro_usage_error(403, body("{\"__type\":\"com.amazon.aws."
	    "codewhisperer#AccessDeniedException\",\"message\":\"Your User ID "
	    "temporarily is suspended.\",\"reason\":\"TEMPORARILY_SUSPENDED\"}"),
	    &ul);
	cr_assert_eq(ul.ul_status, 403);
	cr_assert_str_eq(ul.ul_reason, "TEMPORARILY_SUSPENDED");
	cr_assert(strstr(ul.ul_error, "suspended") != NULL, "%s",
	    ul.ul_error);

	kiro_usage_error(403, body("{\"message\":\"The bearer token included "
	    "in the request is invalid.\",\"reason\":null}"), &ul);
	cr_assert_str_eq(ul.ul_reason, "");
	cr_assert(strstr(ul.ul_error, "HTTP 403") != NULL, "%s", ul.ul_error);

	kiro_usage_error(500, body("oops"), &ul);
	cr_assert_eq(ul.ul_status, 500);
	cr_assert_str_eq(ul.ul_reason, "");
}

/* ------------------------------------------------------------------ */
/* the device flow                                                       */

Test(oidc, poll_codes)
{
	static const struct {
		const char	*body;
		int		 status, want;
	} cases[] = {
		{ "{\"error\":\"authorization_pending\",\"error_description\":"
		    "\"Authorization pending\"}", 400, AUTH_PENDING },
		{ "{\"error\":\"slow_down\"}", 400, AUTH_SLOW_DOWN },
		{ "{\"error\":\"expired_token\"}", 400, AUTH_EXPIRED },
		{ "{\"error\":\"access_denied\"}", 400, AUTH_DENIED },
		{ "{\"__type\":\"com.amazonaws.ssooidc#"
		    "AuthorizationPendingException\",\"message\":\"\"}", 400,
		    AUTH_PENDING },
		{ "{\"__type\":\"SlowDownException\"}", 400, AUTH_SLOW_DOWN },
		{ "{\"__type\":\"x#ExpiredTokenException\"}", 400,
		    AUTH_EXPIRED },
		{ "{\"__type\":\"x#AccessDeniedException\"}", 400,
		    AUTH_DENIED },
		/* a refused grant here blames no refresh token of ours */
		{ "{\"error\":\"invalid_grant\"}", 400, AUTH_FAILED },
		{ "{\"error\":\"invalid_client\"}", 401, AUTH_FAILED },
		{ "{\"error\":\"server_error\"}", 500, AUTH_FAILED },
		{ "not json", 400, AUTH_FAILED },
		{ "", 502, AUTH_FAILED },
	};
	struct auth_tokens	 at;
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		memset(&at, 0, sizeof(at));
		cr_assert_eq(oidc_parse_poll(cases[i].status,
		    body(cases[i].body), &at), cases[i].want, "case %zu: %s",
		    i, cases[i].body);
		cr_assert_null(at.at_access);
		cr_assert_neq(at.at_error[0], '\0', "case %zu: no error text",
		    i);
		cr_assert_eq(at.at_status, cases[i].status);
	}
}

Test(oidc, poll_approved)
{
	struct auth_tokens	 at;

	memset(&at, 0, sizeof(at));
	cr_assert_eq(oidc_parse_poll(200, body("{\"accessToken\":\"AT\","
	    "\"tokenType\":\"Bearer\",\"expiresIn\":3600,"
	    "\"refreshToken\":\"RT\"}"), &at), AUTH_OK);
	cr_assert_str_eq(at.at_access, "AT");
	cr_assert_str_eq(at.at_refresh, "RT");
	cr_assert_geq(at.at_expires, now_wall() + 3599);
	oidc_tokens_free(&at);

	/* an account without a refresh token cannot be kept */
	memset(&at, 0, sizeof(at));
	cr_assert_eq(oidc_parse_poll(200, body("{\"accessToken\":\"AT\"}"),
	    &at), AUTH_FAILED);
	cr_assert_null(at.at_access);
}

Test(oidc, register_answer)
{
	struct oidc_client	 oc;
	char			 err[200];

	cr_assert_eq(oidc_parse_register(200, body("{\"clientId\":\"cid\","
	    "\"clientSecret\":\"csec\",\"clientIdIssuedAt\":1,"
	    "\"clientSecretExpiresAt\":4102444800}"), &oc, err, sizeof(err)),
	    AUTH_OK, "%s", err);
	cr_assert_str_eq(oc.oc_client_id, "cid");
	cr_assert_str_eq(oc.oc_client_secret, "csec");
	cr_assert_eq(oc.oc_expires, 4102444800);
	oidc_client_free(&oc);
	cr_assert_null(oc.oc_client_secret);

	cr_assert_eq(oidc_parse_register(200, body("{\"clientId\":\"cid\"}"),
	    &oc, err, sizeof(err)), AUTH_FAILED);
	cr_assert_null(oc.oc_client_secret);
	cr_assert_eq(oidc_parse_register(400, body("{\"error\":"
	    "\"invalid_client_metadata\",\"error_description\":\"bad type\"}"),
	    &oc, err, sizeof(err)), AUTH_FAILED);
	cr_assert(strstr(err, "invalid_client_metadata") != NULL, "%s", err);
}

Test(oidc, device_answer)
{
	struct oidc_device	 od;
	char			 err[200];

	cr_assert_eq(oidc_parse_device(200, body("{\"deviceCode\":\"DC\","
	    "\"userCode\":\"ABCD-EFGH\",\"verificationUri\":\"https://v\","
	    "\"verificationUriComplete\":\"https://v?user_code=ABCD-EFGH\","
	    "\"expiresIn\":600,\"interval\":1}"), &od, err, sizeof(err)),
	    AUTH_OK, "%s", err);
	cr_assert_str_eq(od.od_device_code, "DC");
	cr_assert_str_eq(od.od_user_code, "ABCD-EFGH");
	cr_assert_str_eq(od.od_uri, "https://v");
	cr_assert_str_eq(od.od_uri_complete, "https://v?user_code=ABCD-EFGH");
	cr_assert_eq(od.od_interval, 1);
	cr_assert(od.od_expires >= now_wall() + 599);
	oidc_device_free(&od);

	/* defaults: interval 5 */
	cr_assert_eq(oidc_parse_device(200, body("{\"deviceCode\":\"DC\","
	    "\"userCode\":\"U\",\"verificationUri\":\"https://v\"}"), &od,
	    err, sizeof(err)), AUTH_OK);
	cr_assert_eq(od.od_interval, 5);
	oidc_device_free(&od);

	cr_assert_eq(oidc_parse_device(200, body("{\"userCode\":\"U\"}"), &od,
	    err, sizeof(err)), AUTH_FAILED);
	cr_assert_null(od.od_device_code);
	cr_assert_eq(oidc_parse_device(401, body("{\"error\":"
	    "\"invalid_client\"}"), &od, err, sizeof(err)), AUTH_FAILED);
	cr_assert(strstr(err, "401") != NULL, "%s", err);
}

/* ------------------------------------------------------------------ */
/* the requests as built                                                 */

static struct json_object *
req_json(const struct oidc_req *r)
{
	struct json_object	*o;

	cr_assert_not_null(r->or_body);
	o = json_tokener_parse(r->or_body);
	cr_assert_not_null(o, "not JSON: %s", r->or_body);
	return o;
}

static const char *
jstr(struct json_object *o, const char *k)
{
	struct json_object	*v;

	cr_assert(json_object_object_get_ex(o, k, &v), "no %s", k);
	return json_object_get_string(v);
}

Test(oidc, requests_built)
{
	struct config		*cf = calloc(1, sizeof(*cf));
	struct oidc_client	 oc = { "cid", (char *)"csec", 0 };
	struct oidc_device	 od;
	struct oidc_req		 r;
	struct json_object	*o, *v;

	cr_assert_not_null(cf);
	config(cf);
	memset(&od, 0, sizeof(od));
	od.od_device_code = (char *)"DEVCODE";

	oidc_req_init(&r);
	cr_assert_eq(oidc_req_register(&r, cf, "eu-west-1", NULL), 0);
	cr_assert_str_eq(r.or_url,
	    "https://oidc.eu-west-1.example/client/register");
	cr_assert_str_eq(r.or_proxy, "");
	o = req_json(&r);
	cr_assert_str_eq(jstr(o, "clientType"), "public");
	cr_assert_str_eq(jstr(o, "clientName"), "qrelay");
	cr_assert(json_object_object_get_ex(o, "grantTypes", &v));
	cr_assert_eq(json_object_array_length(v), 2);
	cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v,
	    0)), "urn:ietf:params:oauth:grant-type:device_code");
	cr_assert(json_object_object_get_ex(o, "scopes", &v));
	cr_assert_eq(json_object_array_length(v), 3);
	json_object_put(o);
	oidc_req_free(&r);

	oidc_req_init(&r);
	cr_assert_eq(oidc_req_device_start(&r, cf, "", "socks5://p:1", &oc,
	    ""), 0);
	cr_assert_str_eq(r.or_url,
	    "https://oidc.us-east-1.example/device_authorization");
	cr_assert_str_eq(r.or_proxy, "socks5://p:1");
	o = req_json(&r);
	cr_assert_str_eq(jstr(o, "startUrl"), "https://view.awsapps.com/start");
	cr_assert_str_eq(jstr(o, "clientSecret"), "csec");
	json_object_put(o);
	oidc_req_free(&r);

	oidc_req_init(&r);
	cr_assert_eq(oidc_req_device_poll(&r, cf, NULL, NULL, &oc, &od), 0);
	cr_assert_str_eq(r.or_url, "https://oidc.us-east-1.example/token");
	o = req_json(&r);
	cr_assert_str_eq(jstr(o, "grantType"),
	    "urn:ietf:params:oauth:grant-type:device_code");
	cr_assert_str_eq(jstr(o, "deviceCode"), "DEVCODE");
	json_object_put(o);
	oidc_req_free(&r);

	oidc_req_init(&r);
	cr_assert_eq(kiro_req_usage(&r, cf, "", "http://u:p@h:8",
	    "ACCESS", "arn:aws:codewhisperer:us-east-1:1:profile/X Y"), 0);
	cr_assert_str_eq(r.or_url, "https://q.us-east-1.example/getUsageLimits"
	    "?origin=AI_EDITOR&resourceType=AGENTIC_REQUEST&profileArn="
	    "arn%3Aaws%3Acodewhisperer%3Aus-east-1%3A1%3Aprofile%2FX%20Y");
	cr_assert_null(r.or_body, "a GET");
	cr_assert_str_eq(r.or_bearer, "ACCESS");
	cr_assert_str_eq(r.or_proxy, "http://u:p@h:8");
	oidc_req_free(&r);

	oidc_req_init(&r);
	cr_assert_eq(kiro_req_refresh(&r, cf, "", NULL, "RTOKEN"), 0);
	cr_assert_str_eq(r.or_url, "https://auth.example/refreshToken");
	o = req_json(&r);
	cr_assert_str_eq(jstr(o, "refreshToken"), "RTOKEN");
	json_object_put(o);
	oidc_req_free(&r);
	free(cf);
}

/* A request that never got an answer reads as a transport failure. */
Test(oidc, transport_failure_answers)
{
	struct oidc_req		 r;
	struct auth_tokens	 at;
	struct usage_limits	 ul;

	oidc_req_init(&r);
	snprintf(r.or_error, sizeof(r.or_error), "Connection refused");
	cr_assert_eq(oidc_req_tokens(&r, "RT", &at), AUTH_FAILED);
	cr_assert_str_eq(at.at_error, "Connection refused");
	cr_assert_eq(oidc_req_poll(&r, &at), AUTH_FAILED);
	cr_assert_eq(kiro_req_usage_answer(&r, &ul), -1);
	cr_assert_eq(ul.ul_status, 0);
	cr_assert(strstr(ul.ul_error, "Connection refused") != NULL);
	oidc_req_free(&r);
}

/* ------------------------------------------------------------------ */
/* the registered client in the settings                                 */

Test(oidc, client_kept_sealed)
{
	struct oidc_client	 oc, got;
	char			 dir[] = "/tmp/test_oidc.XXXXXX", path[300];
	char			 val[16384];
	sqlite3			*db;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/qrelay.db", dir);
	cr_assert_eq(secret_init(path, 1), 0);
	cr_assert_not_null(db = db_open(path));
	cr_assert_eq(db_migrate(db), 0);

	cr_assert_eq(oidc_client_load(db, "us-east-1", &got), 0, "none yet");
	memset(&oc, 0, sizeof(oc));
	strlcpy_qr(oc.oc_client_id, "client-1", sizeof(oc.oc_client_id));
	oc.oc_client_secret = strdup("CLIENT-SECRET-VALUE-123");
	oc.oc_expires = now_wall() + 90 * 86400;
	cr_assert_eq(oidc_client_store(db, "us-east-1", &oc), 0);
	cr_assert_eq(db_setting_get(db, "oidc_client:us-east-1", val,
	    sizeof(val)), 1);
	cr_assert_null(strstr(val, "CLIENT-SECRET"), "stored in clear: %s",
	    val);
	cr_assert_eq(oidc_client_load(db, "us-east-1", &got), 1);
	cr_assert_str_eq(got.oc_client_id, "client-1");
	cr_assert_str_eq(got.oc_client_secret, "CLIENT-SECRET-VALUE-123");
	oidc_client_free(&got);
	cr_assert_eq(oidc_client_load(db, "eu-west-1", &got), 0,
	    "per region");

	/* about to expire: registered anew */
	oc.oc_expires = now_wall() + 60;
	cr_assert_eq(oidc_client_store(db, "us-east-1", &oc), 0);
	cr_assert_eq(oidc_client_load(db, "us-east-1", &got), 0);
	oc.oc_expires = now_wall() + 86400;
	cr_assert_eq(oidc_client_store(db, "us-east-1", &oc), 0);
	cr_assert_eq(oidc_client_forget(db, "us-east-1"), 0);
	cr_assert_eq(oidc_client_load(db, "us-east-1", &got), 0);
	oidc_client_free(&oc);

	/* a process without the private key cannot open it */
	oc.oc_client_secret = strdup("S2");
	oc.oc_expires = now_wall() + 86400;
	cr_assert_eq(oidc_client_store(db, "us-east-1", &oc), 0);
	secret_forget_private();
	cr_assert_eq(oidc_client_load(db, "us-east-1", &got), 0);
	oidc_client_free(&oc);
	db_close(db);
	secret_forget();
	snprintf(val, sizeof(val), "rm -rf %s", dir);
	cr_assert_eq(system(val), 0);
}
