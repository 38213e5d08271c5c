/*
 * oidc.c - the AWS SSO OIDC client (IAM Identity Center and Builder ID
 * accounts): the refresh_token grant of CreateToken, and the one JSON
 * POST both upstream auth clients (this and kiro.c) use.
 *
 * Only the refresher calls it, one account at a time, with a blocking
 * libcurl easy handle bounded by the configured timeouts: the workers
 * never wait on it. The host comes from the configuration alone
 * (upstream.oidc_endpoint), so tests can point it at a fake; for an
 * account in another region the configured region is swapped for the
 * account's where the endpoint names it.
 *
 * Nothing here logs: the refresher decides what to say, and the texts
 * left in at_error never quote a token.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "qrelayd.h"

#define AUTH_RESP_MAX		(64 * 1024)
#define AUTH_DEFAULT_TTL	3600	/* seconds, when expiresIn is absent */
#define AUTH_USER_AGENT		"qrelay/" QR_VERSION

void
oidc_tokens_free(struct auth_tokens *at)
{
	secret_free(at->at_access, 0);
	secret_free(at->at_refresh, 0);
	at->at_access = at->at_refresh = NULL;
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

struct oidc_sink {
	struct buf	*os_buf;
	int		 os_over;
};

static size_t
oidc_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct oidc_sink	*os = arg;
	size_t			 n = size * nmemb;

	if (os->os_buf->b_len + n > AUTH_RESP_MAX) {
		os->os_over = 1;
		return 0;	/* aborts the transfer */
	}
	if (buf_append(os->os_buf, ptr, n) == -1)
		return 0;
	return n;
}

int
oidc_http_post(const struct config *cf, const char *url, const char *body,
    int *status, struct buf *resp, char *err, size_t errsz)
{
	CURL			*h;
	struct curl_slist	*hdrs = NULL, *nh;
	struct oidc_sink	 os = { resp, 0 };
	char			 ebuf[CURL_ERROR_SIZE] = "";
	long			 code = 0;
	CURLcode		 rc;
	int			 rv = -1;

	*status = 0;
	buf_reset(resp);
	if ((h = curl_easy_init()) == NULL) {
		snprintf(err, errsz, "curl_easy_init failed");
		return -1;
	}
	if ((nh = curl_slist_append(hdrs, "Content-Type: application/json")) ==
	    NULL)
		goto oom;
	hdrs = nh;
	if ((nh = curl_slist_append(hdrs, "Accept: application/json")) == NULL)
		goto oom;
	hdrs = nh;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)strlen(body));
	curl_easy_setopt(h, CURLOPT_USERAGENT, AUTH_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)cf->cf_connect_timeout);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)cf->cf_first_byte_timeout);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, oidc_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &os);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	if ((rc = curl_easy_perform(h)) != CURLE_OK) {
		if (os.os_over)
			snprintf(err, errsz, "answer larger than %d bytes",
			    AUTH_RESP_MAX);
		else
			snprintf(err, errsz, "%s", ebuf[0] ? ebuf :
			    curl_easy_strerror(rc));
		goto done;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	*status = (int)code;
	if (buf_append(resp, "", 1) == -1)	/* NUL for the JSON parser */
		goto oom;
	resp->b_len--;
	rv = 0;
	goto done;
 oom:
	snprintf(err, errsz, "out of memory");
 done:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return rv;
}

static const char *const oidc_token_names[] = { "accessToken",
	"refreshToken", NULL };
static const char *const oidc_request_secrets[] = { "clientSecret",
	"refreshToken", NULL };

static const char *
oidc_jstr(struct json_object *o, const char *name)
{
	struct json_object	*v;

	if (o != NULL && json_object_object_get_ex(o, name, &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

/* Copies an upstream text into at_error, unless it quotes a secret. */
static void
oidc_error_text(struct auth_tokens *at, const char *what, const char *text,
    const char *secret)
{
	if (text == NULL || *text == '\0' ||
	    (secret != NULL && *secret != '\0' && strstr(text, secret)))
		snprintf(at->at_error, sizeof(at->at_error), "%s", what);
	else
		snprintf(at->at_error, sizeof(at->at_error), "%s: %.90s",
		    what, text);
}

/*
 * The answer of either refresh endpoint, 200 or not. A refused
 * refresh token (invalid_grant: revoked, expired or unknown; or an
 * OIDC client that is no longer valid) is AUTH_REVOKED: no retry can
 * help. Anything else that is not a token is AUTH_FAILED.
 */
int
oidc_parse_answer(int status, const struct buf *resp,
    const char *refresh_token, struct auth_tokens *at)
{
	struct json_object	*o = NULL, *v;
	const char		*code, *msg, *s;
	int64_t			 ttl = AUTH_DEFAULT_TTL;
	int			 rv = AUTH_FAILED;

	at->at_status = status;
	if (resp->b_len > 0)
		o = json_tokener_parse(resp->b_data);
	if (status != 200) {
		code = oidc_jstr(o, "error");
		if (code == NULL && (code = oidc_jstr(o, "__type")) != NULL &&
		    (s = strrchr(code, '#')) != NULL)
			code = s + 1;
		msg = oidc_jstr(o, "error_description");
		if (msg == NULL)
			msg = oidc_jstr(o, "message");
		if (code != NULL && (strcasecmp(code, "invalid_grant") == 0 ||
		    strcasecmp(code, "InvalidGrantException") == 0 ||
		    strcasecmp(code, "invalid_client") == 0 ||
		    strcasecmp(code, "InvalidClientException") == 0))
			rv = AUTH_REVOKED;
		else if (msg != NULL && strcasestr(msg,
		    "invalid refresh token") != NULL)
			rv = AUTH_REVOKED;
		{
			char	 what[64];

			snprintf(what, sizeof(what), "HTTP %d%s%.40s", status,
			    code ? " " : "", code ? code : "");
			oidc_error_text(at, what, msg, refresh_token);
		}
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
	if (json_object_object_get_ex(o, "expiresIn", &v) &&
	    (json_object_is_type(v, json_type_int) ||
	    json_object_is_type(v, json_type_double)))
		ttl = json_object_get_int64(v);
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

/* POST body to url and interpret the answer (enum auth_result). */
int
oidc_exchange(const struct config *cf, const char *url, const char *body,
    const char *refresh_token, struct auth_tokens *at)
{
	struct buf	 resp;
	char		 err[128];
	int		 status, rv;

	memset(at, 0, sizeof(*at));
	buf_init(&resp);
	if (oidc_http_post(cf, url, body, &status, &resp, err,
	    sizeof(err)) == -1) {
		snprintf(at->at_error, sizeof(at->at_error), "%s", err);
		rv = AUTH_FAILED;
	} else
		rv = oidc_parse_answer(status, &resp, refresh_token, at);
	if (resp.b_data != NULL)
		explicit_bzero(resp.b_data, resp.b_cap);
	buf_free(&resp);
	return rv;
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

int
oidc_post_refresh(const struct config *cf, const char *endpoint,
    const char *region, const char *path, struct json_object *o,
    const char *const *secret_names, const char *refresh_token,
    struct auth_tokens *at)
{
	char	 base[256], url[300];
	char	*body;
	int	 rv;

	memset(at, 0, sizeof(*at));
	oidc_endpoint_for(endpoint, cf->cf_region, region, base, sizeof(base));
	snprintf(url, sizeof(url), "%s%s", base,
	    base[0] && base[strlen(base) - 1] == '/' ? path + 1 : path);
	if (o == NULL || (body = oidc_json_body(o, secret_names)) == NULL) {
		snprintf(at->at_error, sizeof(at->at_error), "out of memory");
		return AUTH_FAILED;
	}
	rv = oidc_exchange(cf, url, body, refresh_token, at);
	secret_free(body, 0);
	return rv;
}

int
oidc_refresh(const struct config *cf, const char *region,
    const char *client_id, const char *client_secret,
    const char *refresh_token, struct auth_tokens *at)
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
	return oidc_post_refresh(cf, cf->cf_oidc_endpoint, region, "/token", o,
	    oidc_request_secrets, refresh_token, at);
}
