/*
 * oidc.c - the AWS SSO OIDC client (IAM Identity Center and Builder ID
 * accounts): the refresh_token grant of CreateToken, the device
 * authorization (RegisterClient, StartDeviceAuthorization, CreateToken
 * with the device code), and the request machinery both upstream auth
 * clients (this and kiro.c) share.
 *
 * Each call is a struct oidc_req: a builder writes its URL, its JSON
 * body or bearer token and the account's proxy; the transport is either
 * oidc_req_perform (a blocking easy handle, for qrelayctl and the
 * blocking API below) or the refresher's curl multi handle, which runs
 * many at once and hands each finished request back to the answer
 * parsers here. So every request is built one way and read one way,
 * whoever carries it. The workers never wait on any of this.
 *
 * The host comes from the configuration alone (upstream.oidc_endpoint),
 * so tests can point it at a fake; for an account in another region the
 * configured region is swapped for the account's where the endpoint
 * names it.
 *
 * Nothing here logs: the callers decide what to say, and the texts left
 * in at_error / err never quote a token or a client secret.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "qrelayd.h"

#define AUTH_RESP_MAX		(64 * 1024)
#define AUTH_DEFAULT_TTL	3600	/* seconds, when expiresIn is absent */
#define AUTH_USER_AGENT		"qrelay/" QR_VERSION
#define AUTH_JSON_DEPTH		16
#define OIDC_CLIENT_NAME	"qrelay"
#define OIDC_DEVICE_GRANT	"urn:ietf:params:oauth:grant-type:device_code"
#define OIDC_CLIENT_MIN_LEFT	3600	/* s a stored client must still live */
#define OIDC_SETTING_MAX	16384

static const char *const oidc_token_names[] = { "accessToken",
	"refreshToken", "idToken", NULL };
static const char *const oidc_request_secrets[] = { "clientSecret",
	"refreshToken", "deviceCode", NULL };
static const char *const oidc_client_secrets[] = { "clientSecret", NULL };
static const char *const oidc_device_secrets[] = { "deviceCode", NULL };

void
oidc_tokens_free(struct auth_tokens *at)
{
	secret_free(at->at_access, 0);
	secret_free(at->at_refresh, 0);
	at->at_access = at->at_refresh = NULL;
}

void
oidc_client_free(struct oidc_client *oc)
{
	secret_free(oc->oc_client_secret, 0);
	oc->oc_client_secret = NULL;
}

void
oidc_device_free(struct oidc_device *od)
{
	secret_free(od->od_device_code, 0);
	od->od_device_code = NULL;
}

void
oidc_endpoint_for(const char *configured, const char *cf_region,
    const char *region, char *out, size_t outsz)
{
	const char	*p;
	size_t		 n = strlen(cf_region);

	if (region == NULL || *region == '\0' || n == 0 ||
	    strcmp(region, cf_region) == 0 ||
	    (p = strstr(configured, cf_region)) == NULL) {
		strlcpy_qr(out, configured, outsz);
		return;
	}
	snprintf(out, outsz, "%.*s%s%s", (int)(p - configured), configured,
	    region, p + n);
}

/* ------------------------------------------------------------------ */
/* JSON helpers                                                          */

static const char *
oidc_jstr(struct json_object *o, const char *name)
{
	struct json_object	*v;

	if (o != NULL && json_object_object_get_ex(o, name, &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

/* An integer member (a JSON number), else dflt. */
static int64_t
oidc_jint(struct json_object *o, const char *name, int64_t dflt)
{
	struct json_object	*v;

	if (o != NULL && json_object_object_get_ex(o, name, &v) &&
	    (json_object_is_type(v, json_type_int) ||
	    json_object_is_type(v, json_type_double)))
		return json_object_get_int64(v);
	return dflt;
}

/* Zero the string members names (NULL-terminated list) of o. */
void
oidc_json_scrub(struct json_object *o, const char *const *names)
{
	const char	*s;

	for (; *names != NULL; names++)
		if ((s = oidc_jstr(o, *names)) != NULL)
			explicit_bzero((char *)s, strlen(s));
}

/*
 * The text of a request object holding secrets, in a copy the caller
 * frees with secret_free; json-c's own copies are zeroed and o is put.
 */
char *
oidc_json_body(struct json_object *o, const char *const *secret_names)
{
	const char	*s = json_object_to_json_string_ext(o,
			    JSON_C_TO_STRING_PLAIN);
	char		*copy = s != NULL ? strdup(s) : NULL;

	if (s != NULL)
		explicit_bzero((char *)s, strlen(s));
	oidc_json_scrub(o, secret_names);
	json_object_put(o);
	return copy;
}

/* An answer body parsed strictly; NULL when empty or not JSON. */
static struct json_object *
oidc_parse_body(const struct buf *resp)
{
	if (resp == NULL || resp->b_len == 0)
		return NULL;
	return jsonr_parse(resp->b_data, resp->b_len, AUTH_JSON_DEPTH, NULL);
}

/* Copies an upstream text into out, unless it quotes a secret. */
static void
oidc_error_text(char *out, size_t outsz, const char *what, const char *text,
    const char *secret)
{
	if (text == NULL || *text == '\0' ||
	    (secret != NULL && *secret != '\0' && strstr(text, secret)))
		snprintf(out, outsz, "%s", what);
	else
		snprintf(out, outsz, "%s: %.90s", what, text);
}

/*
 * The error code of a non-200 OIDC answer: "error" (the OAuth shape),
 * else the exception name of "__type" after its '#'. msg gets the
 * description. Either may be NULL.
 */
static const char *
oidc_error_code(struct json_object *o, const char **msg)
{
	const char	*code, *s;

	code = oidc_jstr(o, "error");
	if (code == NULL && (code = oidc_jstr(o, "__type")) != NULL &&
	    (s = strrchr(code, '#')) != NULL)
		code = s + 1;
	*msg = oidc_jstr(o, "error_description");
	if (*msg == NULL)
		*msg = oidc_jstr(o, "message");
	return code;
}

/* "HTTP 400 invalid_grant: text" into out, never quoting secret. */
static void
oidc_http_error(char *out, size_t outsz, int status, const char *code,
    const char *msg, const char *secret)
{
	char	 what[64];

	snprintf(what, sizeof(what), "HTTP %d%s%.40s", status,
	    code ? " " : "", code ? code : "");
	oidc_error_text(out, outsz, what, msg, secret);
}

/*
 * The answer of either refresh endpoint (and of the device flow's last
 * CreateToken), 200 or not. A refused refresh token (invalid_grant:
 * revoked, expired or unknown; or an OIDC client that is no longer
 * valid) is AUTH_REVOKED: no retry can help. Anything else that is not
 * a token is AUTH_FAILED.
 */
int
oidc_parse_answer(int status, const struct buf *resp,
    const char *refresh_token, struct auth_tokens *at)
{
	struct json_object	*o;
	const char		*code, *msg, *s;
	int64_t			 ttl;
	int			 rv = AUTH_FAILED;

	at->at_status = status;
	o = oidc_parse_body(resp);
	if (status != 200) {
		code = oidc_error_code(o, &msg);
		if (code != NULL && (strcasecmp(code, "invalid_grant") == 0 ||
		    strcasecmp(code, "InvalidGrantException") == 0 ||
		    strcasecmp(code, "invalid_client") == 0 ||
		    strcasecmp(code, "InvalidClientException") == 0))
			rv = AUTH_REVOKED;
		else if (msg != NULL && strcasestr(msg,
		    "invalid refresh token") != NULL)
			rv = AUTH_REVOKED;
		oidc_http_error(at->at_error, sizeof(at->at_error), status,
		    code, msg, refresh_token);
		goto done;
	}
	if ((s = oidc_jstr(o, "accessToken")) == NULL || *s == '\0') {
		snprintf(at->at_error, sizeof(at->at_error),
		    "HTTP 200 without an accessToken");
		goto done;
	}
	if ((at->at_access = strdup(s)) == NULL) {
		snprintf(at->at_error, sizeof(at->at_error), "out of memory");
		goto done;
	}
	if ((s = oidc_jstr(o, "refreshToken")) != NULL && *s != '\0' &&
	    (at->at_refresh = strdup(s)) == NULL) {
		oidc_tokens_free(at);
		snprintf(at->at_error, sizeof(at->at_error), "out of memory");
		goto done;
	}
	if ((s = oidc_jstr(o, "profileArn")) != NULL)
		strlcpy_qr(at->at_profile_arn, s, sizeof(at->at_profile_arn));
	ttl = oidc_jint(o, "expiresIn", AUTH_DEFAULT_TTL);
	if (ttl <= 0 || ttl > 366 * 86400)
		ttl = AUTH_DEFAULT_TTL;
	at->at_expires = (int64_t)now_wall() + ttl;
	rv = AUTH_OK;
 done:
	/* json-c's copies of the tokens */
	if (o != NULL)
		oidc_json_scrub(o, oidc_token_names);
	json_object_put(o);
	return rv;
}

/*
 * A device flow poll's answer: the pending, slow-down, expired and
 * denied codes (OAuth names, or the exception names of the AWS SDK
 * shape), else what oidc_parse_answer says, where a refused grant is a
 * plain failure: there is no refresh token of ours to blame.
 */
int
oidc_parse_poll(int status, const struct buf *resp, struct auth_tokens *at)
{
	static const struct {
		const char	*oauth, *aws;
		int		 result;
	} codes[] = {
		{ "authorization_pending", "AuthorizationPendingException",
		    AUTH_PENDING },
		{ "slow_down", "SlowDownException", AUTH_SLOW_DOWN },
		{ "expired_token", "ExpiredTokenException", AUTH_EXPIRED },
		{ "access_denied", "AccessDeniedException", AUTH_DENIED },
	};
	struct json_object	*o;
	const char		*code, *msg;
	size_t			 i;
	int			 rv;

	if (status != 200) {
		o = oidc_parse_body(resp);
		code = oidc_error_code(o, &msg);
		for (i = 0; code != NULL && i < nitems(codes); i++)
			if (strcasecmp(code, codes[i].oauth) == 0 ||
			    strcasecmp(code, codes[i].aws) == 0) {
				at->at_status = status;
				oidc_http_error(at->at_error,
				    sizeof(at->at_error), status, code, msg,
				    NULL);
				json_object_put(o);
				return codes[i].result;
			}
		json_object_put(o);
	}
	rv = oidc_parse_answer(status, resp, NULL, at);
	if (rv == AUTH_REVOKED)
		rv = AUTH_FAILED;
	if (rv == AUTH_OK && at->at_refresh == NULL) {
		oidc_tokens_free(at);
		snprintf(at->at_error, sizeof(at->at_error),
		    "HTTP 200 without a refreshToken");
		rv = AUTH_FAILED;
	}
	return rv;
}

int
oidc_parse_register(int status, const struct buf *resp,
    struct oidc_client *oc, char *err, size_t errsz)
{
	struct json_object	*o = oidc_parse_body(resp);
	const char		*id, *sec, *code, *msg;
	int			 rv = AUTH_FAILED;

	memset(oc, 0, sizeof(*oc));
	if (status != 200) {
		code = oidc_error_code(o, &msg);
		oidc_http_error(err, errsz, status, code, msg, NULL);
		goto done;
	}
	id = oidc_jstr(o, "clientId");
	sec = oidc_jstr(o, "clientSecret");
	if (id == NULL || *id == '\0' || sec == NULL || *sec == '\0' ||
	    strlen(id) >= sizeof(oc->oc_client_id)) {
		snprintf(err, errsz, "RegisterClient: no usable clientId and "
		    "clientSecret in the answer");
		goto done;
	}
	if ((oc->oc_client_secret = strdup(sec)) == NULL) {
		snprintf(err, errsz, "out of memory");
		goto done;
	}
	strlcpy_qr(oc->oc_client_id, id, sizeof(oc->oc_client_id));
	/* no expiry stated: assume the usual ninety days */
	oc->oc_expires = oidc_jint(o, "clientSecretExpiresAt", 0);
	if (oc->oc_expires <= 0)
		oc->oc_expires = (int64_t)now_wall() + 90 * 86400;
	rv = AUTH_OK;
 done:
	if (o != NULL)
		oidc_json_scrub(o, oidc_client_secrets);
	json_object_put(o);
	return rv;
}

int
oidc_parse_device(int status, const struct buf *resp,
    struct oidc_device *od, char *err, size_t errsz)
{
	struct json_object	*o = oidc_parse_body(resp);
	const char		*dc, *uc, *uri, *uric, *code, *msg;
	int64_t			 ttl, iv;
	int			 rv = AUTH_FAILED;

	memset(od, 0, sizeof(*od));
	if (status != 200) {
		code = oidc_error_code(o, &msg);
		oidc_http_error(err, errsz, status, code, msg, NULL);
		goto done;
	}
	dc = oidc_jstr(o, "deviceCode");
	uc = oidc_jstr(o, "userCode");
	uri = oidc_jstr(o, "verificationUri");
	uric = oidc_jstr(o, "verificationUriComplete");
	if (dc == NULL || *dc == '\0' || uc == NULL || *uc == '\0' ||
	    strlen(uc) >= sizeof(od->od_user_code) || uri == NULL ||
	    *uri == '\0' || strlen(uri) >= sizeof(od->od_uri) ||
	    (uric != NULL && strlen(uric) >= sizeof(od->od_uri_complete))) {
		snprintf(err, errsz, "StartDeviceAuthorization: no usable "
		    "deviceCode, userCode and verificationUri in the answer");
		goto done;
	}
	if ((od->od_device_code = strdup(dc)) == NULL) {
		snprintf(err, errsz, "out of memory");
		goto done;
	}
	strlcpy_qr(od->od_user_code, uc, sizeof(od->od_user_code));
	strlcpy_qr(od->od_uri, uri, sizeof(od->od_uri));
	strlcpy_qr(od->od_uri_complete, uric ? uric : "",
	    sizeof(od->od_uri_complete));
	ttl = oidc_jint(o, "expiresIn", 600);
	if (ttl <= 0 || ttl > 86400)
		ttl = 600;
	iv = oidc_jint(o, "interval", 5);
	if (iv <= 0 || iv > 300)
		iv = 5;
	od->od_expires = (int64_t)now_wall() + ttl;
	od->od_interval = (int)iv;
	rv = AUTH_OK;
 done:
	if (o != NULL)
		oidc_json_scrub(o, oidc_device_secrets);
	json_object_put(o);
	return rv;
}

/* ------------------------------------------------------------------ */
/* requests                                                              */

void
oidc_req_init(struct oidc_req *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->or_resp);
}

static void
oidc_slist_free(struct curl_slist *l)
{
	struct curl_slist	*p;

	/* one of them may carry the bearer token */
	for (p = l; p != NULL; p = p->next)
		if (p->data != NULL)
			explicit_bzero(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

void
oidc_req_free(struct oidc_req *r)
{
	if (r->or_easy != NULL)
		curl_easy_cleanup(r->or_easy);
	r->or_easy = NULL;
	oidc_slist_free(r->or_hdrs);
	r->or_hdrs = NULL;
	secret_free(r->or_body, 0);
	secret_free(r->or_bearer, 0);
	r->or_body = r->or_bearer = NULL;
	if (r->or_resp.b_data != NULL)
		explicit_bzero(r->or_resp.b_data, r->or_resp.b_cap);
	buf_free(&r->or_resp);
}

/*
 * POST o (put here, its secret_names zeroed) as JSON to path under the
 * configured endpoint, for region, through proxy.
 */
int
oidc_req_post_json(struct oidc_req *r, const struct config *cf,
    const char *endpoint, const char *region, const char *path,
    const char *proxy, struct json_object *o,
    const char *const *secret_names)
{
	char	 base[256];

	oidc_endpoint_for(endpoint, cf->cf_region, region, base, sizeof(base));
	snprintf(r->or_url, sizeof(r->or_url), "%s%s", base,
	    base[0] && base[strlen(base) - 1] == '/' ? path + 1 : path);
	strlcpy_qr(r->or_proxy, proxy ? proxy : "", sizeof(r->or_proxy));
	if (o == NULL || (r->or_body = oidc_json_body(o, secret_names)) ==
	    NULL) {
		snprintf(r->or_error, sizeof(r->or_error), "out of memory");
		return -1;
	}
	return 0;
}

/* A GET of url with a bearer token (kiro.c's getUsageLimits). */
int
oidc_req_get(struct oidc_req *r, const char *url, const char *proxy,
    const char *token)
{
	strlcpy_qr(r->or_url, url, sizeof(r->or_url));
	strlcpy_qr(r->or_proxy, proxy ? proxy : "", sizeof(r->or_proxy));
	if (token != NULL && (r->or_bearer = strdup(token)) == NULL) {
		snprintf(r->or_error, sizeof(r->or_error), "out of memory");
		return -1;
	}
	return 0;
}

static struct json_object *
oidc_client_object(const struct oidc_client *oc)
{
	struct json_object	*o;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(o, "clientId",
	    json_object_new_string(oc->oc_client_id));
	json_object_object_add(o, "clientSecret",
	    json_object_new_string(oc->oc_client_secret ?
	    oc->oc_client_secret : ""));
	return o;
}

int
oidc_req_refresh(struct oidc_req *r, const struct config *cf,
    const char *region, const char *proxy, const char *client_id,
    const char *client_secret, const char *refresh_token)
{
	struct json_object	*o;

	if ((o = json_object_new_object()) != NULL) {
		json_object_object_add(o, "clientId",
		    json_object_new_string(client_id));
		json_object_object_add(o, "clientSecret",
		    json_object_new_string(client_secret));
		json_object_object_add(o, "grantType",
		    json_object_new_string("refresh_token"));
		json_object_object_add(o, "refreshToken",
		    json_object_new_string(refresh_token));
	}
	return oidc_req_post_json(r, cf, cf->cf_oidc_endpoint, region, "/token",
	    proxy, o, oidc_request_secrets);
}

int
oidc_req_register(struct oidc_req *r, const struct config *cf,
    const char *region, const char *proxy)
{
	static const char *const scopes[] = { "codewhisperer:completions",
		"codewhisperer:analysis", "codewhisperer:conversations" };
	struct json_object	*o, *a;
	size_t			 i;

	if ((o = json_object_new_object()) != NULL) {
		json_object_object_add(o, "clientName",
		    json_object_new_string(OIDC_CLIENT_NAME));
		json_object_object_add(o, "clientType",
		    json_object_new_string("public"));
		a = json_object_new_array();
		for (i = 0; i < nitems(scopes); i++)
			json_object_array_add(a,
			    json_object_new_string(scopes[i]));
		json_object_object_add(o, "scopes", a);
		a = json_object_new_array();
		json_object_array_add(a,
		    json_object_new_string(OIDC_DEVICE_GRANT));
		json_object_array_add(a,
		    json_object_new_string("refresh_token"));
		json_object_object_add(o, "grantTypes", a);
	}
	return oidc_req_post_json(r, cf, cf->cf_oidc_endpoint, region,
	    "/client/register", proxy, o, oidc_request_secrets);
}

int
oidc_req_device_start(struct oidc_req *r, const struct config *cf,
    const char *region, const char *proxy, const struct oidc_client *oc,
    const char *start_url)
{
	struct json_object	*o;

	if ((o = oidc_client_object(oc)) != NULL)
		json_object_object_add(o, "startUrl", json_object_new_string(
		    start_url && *start_url ? start_url : cf->cf_start_url));
	return oidc_req_post_json(r, cf, cf->cf_oidc_endpoint, region,
	    "/device_authorization", proxy, o, oidc_request_secrets);
}

int
oidc_req_device_poll(struct oidc_req *r, const struct config *cf,
    const char *region, const char *proxy, const struct oidc_client *oc,
    const struct oidc_device *od)
{
	struct json_object	*o;

	if ((o = oidc_client_object(oc)) != NULL) {
		json_object_object_add(o, "grantType",
		    json_object_new_string(OIDC_DEVICE_GRANT));
		json_object_object_add(o, "deviceCode",
		    json_object_new_string(od->od_device_code ?
		    od->od_device_code : ""));
	}
	return oidc_req_post_json(r, cf, cf->cf_oidc_endpoint, region, "/token",
	    proxy, o, oidc_request_secrets);
}

static size_t
oidc_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct oidc_req	*r = arg;
	size_t		 n = size * nmemb;

	if (r->or_resp.b_len + n > AUTH_RESP_MAX) {
		r->or_over = 1;
		return 0;	/* aborts the transfer */
	}
	if (buf_append(&r->or_resp, ptr, n) == -1)
		return 0;
	return n;
}

void *
oidc_req_easy(struct oidc_req *r, const struct config *cf)
{
	struct curl_slist	*hdrs = NULL, *nh;
	char			*auth = NULL;
	CURL			*h;

	buf_reset(&r->or_resp);
	r->or_status = 0;
	r->or_over = 0;
	r->or_ebuf[0] = '\0';
	if ((h = curl_easy_init()) == NULL) {
		snprintf(r->or_error, sizeof(r->or_error),
		    "curl_easy_init failed");
		return NULL;
	}
	if ((nh = curl_slist_append(hdrs, "Accept: application/json")) ==
	    NULL)
		goto oom;
	hdrs = nh;
	if (r->or_body != NULL) {
		if ((nh = curl_slist_append(hdrs,
		    "Content-Type: application/json")) == NULL)
			goto oom;
		hdrs = nh;
	}
	if (r->or_bearer != NULL) {
		if (asprintf(&auth, "Authorization: Bearer %s",
		    r->or_bearer) == -1) {
			auth = NULL;
			goto oom;
		}
		nh = curl_slist_append(hdrs, auth);
		secret_free(auth, 0);
		if (nh == NULL)
			goto oom;
		hdrs = nh;
	}
	curl_easy_setopt(h, CURLOPT_URL, r->or_url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (r->or_body != NULL) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->or_body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)strlen(r->or_body));
	} else
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	/* "" is direct, whatever the environment says */
	curl_easy_setopt(h, CURLOPT_PROXY, r->or_proxy);
	curl_easy_setopt(h, CURLOPT_USERAGENT, AUTH_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
	    (long)cf->cf_connect_timeout);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)cf->cf_first_byte_timeout);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, oidc_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->or_ebuf);
	curl_easy_setopt(h, CURLOPT_PRIVATE, r);
	r->or_easy = h;
	r->or_hdrs = hdrs;
	return h;
 oom:
	snprintf(r->or_error, sizeof(r->or_error), "out of memory");
	oidc_slist_free(hdrs);
	curl_easy_cleanup(h);
	return NULL;
}

void
oidc_req_finish(struct oidc_req *r, int curl_code)
{
	long	 code = 0;

	r->or_status = 0;
	if (curl_code != CURLE_OK) {
		if (r->or_over)
			snprintf(r->or_error, sizeof(r->or_error),
			    "answer larger than %d bytes", AUTH_RESP_MAX);
		else
			snprintf(r->or_error, sizeof(r->or_error), "%.150s",
			    r->or_ebuf[0] ? r->or_ebuf :
			    curl_easy_strerror((CURLcode)curl_code));
		return;
	}
	curl_easy_getinfo(r->or_easy, CURLINFO_RESPONSE_CODE, &code);
	/* NUL for whoever reads it as a string */
	if (buf_append(&r->or_resp, "", 1) == -1) {
		snprintf(r->or_error, sizeof(r->or_error), "out of memory");
		return;
	}
	r->or_resp.b_len--;
	r->or_status = (int)code;
}

int
oidc_req_perform(struct oidc_req *r, const struct config *cf)
{
	CURLcode	 rc;

	if (r->or_easy == NULL && oidc_req_easy(r, cf) == NULL)
		return -1;
	rc = curl_easy_perform(r->or_easy);
	oidc_req_finish(r, (int)rc);
	return r->or_status != 0 ? 0 : -1;
}

/* A transport failure as an auth answer: AUTH_FAILED, or 0 if none. */
static int
oidc_req_transport(const struct oidc_req *r, struct auth_tokens *at)
{
	memset(at, 0, sizeof(*at));
	if (r->or_status != 0)
		return 0;
	snprintf(at->at_error, sizeof(at->at_error), "%s",
	    r->or_error[0] ? r->or_error : "no answer");
	return AUTH_FAILED;
}

int
oidc_req_tokens(const struct oidc_req *r, const char *refresh_token,
    struct auth_tokens *at)
{
	int	 rv;

	if ((rv = oidc_req_transport(r, at)) != 0)
		return rv;
	return oidc_parse_answer(r->or_status, &r->or_resp, refresh_token,
	    at);
}

int
oidc_req_poll(const struct oidc_req *r, struct auth_tokens *at)
{
	int	 rv;

	if ((rv = oidc_req_transport(r, at)) != 0)
		return rv;
	return oidc_parse_poll(r->or_status, &r->or_resp, at);
}

int
oidc_req_client(const struct oidc_req *r, struct oidc_client *oc, char *err,
    size_t errsz)
{
	if (r->or_status == 0) {
		memset(oc, 0, sizeof(*oc));
		snprintf(err, errsz, "RegisterClient: %.130s", r->or_error);
		return AUTH_FAILED;
	}
	return oidc_parse_register(r->or_status, &r->or_resp, oc, err, errsz);
}

int
oidc_req_device(const struct oidc_req *r, struct oidc_device *od, char *err,
    size_t errsz)
{
	if (r->or_status == 0) {
		memset(od, 0, sizeof(*od));
		snprintf(err, errsz, "StartDeviceAuthorization: %.120s",
		    r->or_error);
		return AUTH_FAILED;
	}
	return oidc_parse_device(r->or_status, &r->or_resp, od, err, errsz);
}

/* ------------------------------------------------------------------ */
/* the blocking API                                                      */

int
oidc_refresh(const struct config *cf, const char *region, const char *proxy,
    const char *client_id, const char *client_secret,
    const char *refresh_token, struct auth_tokens *at)
{
	struct oidc_req	 r;
	int		 rv;

	oidc_req_init(&r);
	if (oidc_req_refresh(&r, cf, region, proxy, client_id, client_secret,
	    refresh_token) == 0)
		(void)oidc_req_perform(&r, cf);
	rv = oidc_req_tokens(&r, refresh_token, at);
	oidc_req_free(&r);
	return rv;
}

int
oidc_register(const struct config *cf, const char *region,
    const char *proxy, struct oidc_client *oc, char *err, size_t errsz)
{
	struct oidc_req	 r;
	int		 rv;

	oidc_req_init(&r);
	if (oidc_req_register(&r, cf, region, proxy) == 0)
		(void)oidc_req_perform(&r, cf);
	rv = oidc_req_client(&r, oc, err, errsz);
	oidc_req_free(&r);
	return rv;
}

int
oidc_device_start(const struct config *cf, const char *region,
    const char *proxy, const struct oidc_client *oc, const char *start_url,
    struct oidc_device *od, char *err, size_t errsz)
{
	struct oidc_req	 r;
	int		 rv;

	oidc_req_init(&r);
	if (oidc_req_device_start(&r, cf, region, proxy, oc, start_url) == 0)
		(void)oidc_req_perform(&r, cf);
	rv = oidc_req_device(&r, od, err, errsz);
	oidc_req_free(&r);
	return rv;
}

int
oidc_device_poll(const struct config *cf, const char *region,
    const char *proxy, const struct oidc_client *oc,
    const struct oidc_device *od, struct auth_tokens *at)
{
	struct oidc_req	 r;
	int		 rv;

	oidc_req_init(&r);
	if (oidc_req_device_poll(&r, cf, region, proxy, oc, od) == 0)
		(void)oidc_req_perform(&r, cf);
	rv = oidc_req_poll(&r, at);
	oidc_req_free(&r);
	return rv;
}

/* ------------------------------------------------------------------ */
/* the registered client, kept in the settings                          */

static void
oidc_client_setting(const char *region, char *out, size_t outsz)
{
	snprintf(out, outsz, "oidc_client:%s", region);
}

int
oidc_client_load(sqlite3 *db, const char *region, struct oidc_client *oc)
{
	struct json_object	*o = NULL;
	char			 name[64], *val = NULL, *plain = NULL;
	unsigned char		*blob = NULL;
	const char		*id, *sealed;
	size_t			 slen;
	int			 r, n, rv = -1;

	memset(oc, 0, sizeof(*oc));
	oidc_client_setting(region, name, sizeof(name));
	if ((val = malloc(OIDC_SETTING_MAX)) == NULL)
		return -1;
	if ((r = db_setting_get(db, name, val, OIDC_SETTING_MAX)) != 1) {
		rv = r == 0 ? 0 : -1;
		goto done;
	}
	if ((o = jsonr_parse(val, strlen(val), 4, NULL)) == NULL ||
	    (id = oidc_jstr(o, "clientId")) == NULL ||
	    strlen(id) >= sizeof(oc->oc_client_id) ||
	    (sealed = oidc_jstr(o, "clientSecretSealed")) == NULL) {
		rv = 0;		/* not ours to read: register anew */
		goto done;
	}
	oc->oc_expires = oidc_jint(o, "expiresAt", 0);
	if (oc->oc_expires < (int64_t)now_wall() + OIDC_CLIENT_MIN_LEFT) {
		rv = 0;
		goto done;
	}
	slen = strlen(sealed);
	if ((blob = malloc(slen / 4 * 3 + 3)) == NULL)
		goto done;
	if (slen % 4 != 0 || (n = EVP_DecodeBlock(blob,
	    (const unsigned char *)sealed, (int)slen)) < 0) {
		rv = 0;
		goto done;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes */
	if (slen >= 1 && sealed[slen - 1] == '=')
		n--;
	if (slen >= 2 && sealed[slen - 2] == '=')
		n--;
	if ((plain = secret_decrypt(blob, (size_t)n, SECRET_AAD_CLIENT)) ==
	    NULL) {
		rv = 0;
		goto done;
	}
	strlcpy_qr(oc->oc_client_id, id, sizeof(oc->oc_client_id));
	oc->oc_client_secret = plain;
	plain = NULL;
	rv = 1;
 done:
	json_object_put(o);
	free(blob);
	free(val);
	return rv;
}

int
oidc_client_store(sqlite3 *db, const char *region,
    const struct oidc_client *oc)
{
	struct json_object	*o;
	struct buf		 sealed;
	char			 name[64], *b64 = NULL;
	const char		*text;
	int			 rv = -1;

	buf_init(&sealed);
	oidc_client_setting(region, name, sizeof(name));
	if (oc->oc_client_secret == NULL ||
	    secret_encrypt(oc->oc_client_secret, SECRET_AAD_CLIENT,
	    &sealed) == -1)
		goto done;
	if ((b64 = malloc(4 * ((sealed.b_len + 2) / 3) + 1)) == NULL)
		goto done;
	EVP_EncodeBlock((unsigned char *)b64,
	    (const unsigned char *)sealed.b_data, (int)sealed.b_len);
	if ((o = json_object_new_object()) == NULL)
		goto done;
	json_object_object_add(o, "clientId",
	    json_object_new_string(oc->oc_client_id));
	json_object_object_add(o, "clientSecretSealed",
	    json_object_new_string(b64));
	json_object_object_add(o, "expiresAt",
	    json_object_new_int64(oc->oc_expires));
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (text != NULL && strlen(text) < OIDC_SETTING_MAX)
		rv = db_setting_set(db, name, text);
	json_object_put(o);
 done:
	free(b64);
	buf_free(&sealed);
	return rv;
}

int
oidc_client_forget(sqlite3 *db, const char *region)
{
	char	 name[64];

	oidc_client_setting(region, name, sizeof(name));
	return db_setting_set(db, name, "");
}
