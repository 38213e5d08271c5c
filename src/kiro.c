/*
 * kiro.c - the Kiro side of the upstream auth: the social-login refresh
 * (accounts signed in with Google or GitHub through Kiro: POST
 * /refreshToken {"refreshToken"} on upstream.kiro_auth_endpoint,
 * answered with an access token, maybe a new refresh token, the profile
 * ARN and its lifetime), and getUsageLimits, the account's credits used
 * and left (reference 5.3), on upstream.q_endpoint.
 *
 * Like oidc.c it builds struct oidc_req requests that either the
 * blocking API or the refresher's multi handle carries; a refused
 * refresh token (400 invalid_grant, "Invalid refresh token provided") is
 * AUTH_REVOKED. Credits are kept x 1000 as integers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qrelayd.h"

static const char *const kiro_request_secrets[] = { "refreshToken", NULL };

int
kiro_req_refresh(struct oidc_req *r, const struct config *cf,
    const char *region, const char *proxy, const char *refresh_token)
{
	struct json_object	*o;

	if ((o = json_object_new_object()) != NULL)
		json_object_object_add(o, "refreshToken",
		    json_object_new_string(refresh_token));
	return oidc_req_post_json(r, cf, cf->cf_kiro_auth_endpoint, region,
	    "/refreshToken", proxy, o, kiro_request_secrets);
}

int
kiro_refresh(const struct config *cf, const char *region, const char *proxy,
    const char *refresh_token, struct auth_tokens *at)
{
	struct oidc_req	 r;
	int		 rv;

	oidc_req_init(&r);
	if (kiro_req_refresh(&r, cf, region, proxy, refresh_token) == 0)
		(void)oidc_req_perform(&r, cf);
	rv = oidc_req_tokens(&r, refresh_token, at);
	oidc_req_free(&r);
	return rv;
}

/* RFC 3986 unreserved bytes pass, the rest is %XX; -1 if out is short. */
static int
kiro_urlenc(const char *s, char *out, size_t outsz)
{
	static const char	 hex[] = "0123456789ABCDEF";
	size_t			 o = 0;
	unsigned char		 c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (o + 4 > outsz)
			return -1;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~')
			out[o++] = (char)c;
		else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

int
kiro_req_usage(struct oidc_req *r, const struct config *cf,
    const char *region, const char *proxy, const char *token,
    const char *profile_arn)
{
	char	 base[256], arn[3 * 160 + 1], url[sizeof(r->or_url)];
	size_t	 n;

	oidc_endpoint_for(cf->cf_q_endpoint, cf->cf_region, region, base,
	    sizeof(base));
	n = strlen(base);
	if (n > 0 && base[n - 1] == '/')
		base[n - 1] = '\0';
	if (profile_arn != NULL && *profile_arn != '\0') {
		if (kiro_urlenc(profile_arn, arn, sizeof(arn)) == -1) {
			snprintf(r->or_error, sizeof(r->or_error),
			    "profile ARN too long");
			return -1;
		}
	} else
		arn[0] = '\0';
	if ((size_t)snprintf(url, sizeof(url), "%s/getUsageLimits?"
	    "origin=AI_EDITOR&resourceType=AGENTIC_REQUEST%s%s", base,
	    arn[0] ? "&profileArn=" : "", arn) >= sizeof(url)) {
		snprintf(r->or_error, sizeof(r->or_error), "URL too long");
		return -1;
	}
	return oidc_req_get(r, url, proxy, token);
}

/* ------------------------------------------------------------------ */
/* the answer                                                            */

static struct json_object *
kiro_get(struct json_object *o, const char *name)
{
	struct json_object	*v;

	if (o != NULL && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, name, &v))
		return v;
	return NULL;
}

static const char *
kiro_str(struct json_object *o, const char *name)
{
	struct json_object	*v = kiro_get(o, name);

	return v != NULL && json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : NULL;
}

/* A number member (or one written as a string) into *d: 1, else 0. */
static int
kiro_num(struct json_object *o, const char *name, double *d)
{
	struct json_object	*v = kiro_get(o, name);
	const char		*s;
	char			*end;

	if (v == NULL)
		return 0;
	if (json_object_is_type(v, json_type_int) ||
	    json_object_is_type(v, json_type_double)) {
		*d = json_object_get_double(v);
		return isfinite(*d);
	}
	if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		*d = strtod(s, &end);
		return end != s && *end == '\0' && isfinite(*d);
	}
	return 0;
}

/* The precise member when there is one, else the integer one. */
static int
kiro_num2(struct json_object *o, const char *precise, const char *plain,
    double *d)
{
	return kiro_num(o, precise, d) || kiro_num(o, plain, d);
}

/* Credits x 1000, never negative, bounded. */
static int64_t
kiro_milli(double d)
{
	if (!(d > 0))
		return 0;
	if (d > 1e15)
		d = 1e15;
	return (int64_t)llround(d * 1000.0);
}

/* An epoch in seconds (some answers give milliseconds). */
static int64_t
kiro_epoch(double d)
{
	if (!(d > 0) || d > 1e14)
		return 0;
	if (d > 1e11)
		d /= 1000.0;
	return (int64_t)d;
}

/* The Kiro shape: usageBreakdownList[], the CREDIT entry or the first. */
static int
kiro_usage_breakdown(struct json_object *root, struct usage_limits *ul)
{
	struct json_object	*list, *bd = NULL, *e, *ft;
	const char		*s;
	double			 used, limit, d;
	size_t			 i, n;

	list = kiro_get(root, "usageBreakdownList");
	if (list == NULL || !json_object_is_type(list, json_type_array) ||
	    (n = json_object_array_length(list)) == 0)
		return -1;
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(list, i);
		if (!json_object_is_type(e, json_type_object))
			continue;
		if (bd == NULL)
			bd = e;
		if ((s = kiro_str(e, "resourceType")) != NULL &&
		    strcmp(s, "CREDIT") == 0) {
			bd = e;
			break;
		}
	}
	if (bd == NULL || !kiro_num2(bd, "usageLimitWithPrecision",
	    "usageLimit", &limit))
		return -1;
	if (!kiro_num2(bd, "currentUsageWithPrecision", "currentUsage",
	    &used))
		used = 0;
	/* an active free trial adds its allowance */
	ft = kiro_get(bd, "freeTrialInfo");
	if ((s = kiro_str(ft, "freeTrialStatus")) != NULL &&
	    strcmp(s, "ACTIVE") == 0) {
		if (kiro_num2(ft, "usageLimitWithPrecision", "usageLimit", &d))
			limit += d;
		if (kiro_num2(ft, "currentUsageWithPrecision", "currentUsage",
		    &d))
			used += d;
	}
	ul->ul_used = kiro_milli(used);
	ul->ul_limit = kiro_milli(limit);
	if (kiro_num(bd, "nextDateReset", &d) ||
	    kiro_num(root, "nextDateReset", &d))
		ul->ul_reset = kiro_epoch(d);
	return 0;
}

/*
 * The awsJson shape of the public service model: limits[] of {type,
 * currentUsage?, currentUsageLimit, totalUsageLimit}, daysUntilReset.
 */
static int
kiro_usage_limits(struct json_object *root, struct usage_limits *ul)
{
	struct json_object	*list, *e;
	double			 used, limit, days;
	int64_t			 now, t;

	list = kiro_get(root, "limits");
	if (list == NULL || !json_object_is_type(list, json_type_array) ||
	    json_object_array_length(list) == 0)
		return -1;
	e = json_object_array_get_idx(list, 0);
	if (!kiro_num(e, "totalUsageLimit", &limit))
		return -1;
	if (!kiro_num2(e, "currentUsage", "currentUsageLimit", &used))
		used = 0;
	ul->ul_used = kiro_milli(used);
	ul->ul_limit = kiro_milli(limit);
	if (kiro_num(root, "nextDateReset", &days))
		ul->ul_reset = kiro_epoch(days);
	else if (kiro_num(root, "daysUntilReset", &days) && days >= 0 &&
	    days < 400) {
		/* midnight UTC of that day */
		now = (int64_t)now_wall();
		t = (now / 86400 + (int64_t)days) * 86400;
		if (t <= now)
			t += 86400;
		ul->ul_reset = t;
	}
	return 0;
}

int
kiro_usage_parse(const char *json, size_t len, struct usage_limits *ul)
{
	struct json_object	*root;
	struct jsonr_err	 je;
	const char		*s;
	int			 rv = -1;

	memset(ul, 0, sizeof(*ul));
	ul->ul_status = 200;
	if ((root = jsonr_parse(json, len, 16, &je)) == NULL ||
	    !json_object_is_type(root, json_type_object)) {
		snprintf(ul->ul_error, sizeof(ul->ul_error),
		    "getUsageLimits: the answer is not a JSON object");
		goto done;
	}
	if (kiro_usage_breakdown(root, ul) == -1 &&
	    kiro_usage_limits(root, ul) == -1) {
		snprintf(ul->ul_error, sizeof(ul->ul_error),
		    "getUsageLimits: no usage limit in the answer");
		goto done;
	}
	if ((s = kiro_str(kiro_get(root, "subscriptionInfo"),
	    "subscriptionTitle")) != NULL)
		strlcpy_qr(ul->ul_subscription, s, sizeof(ul->ul_subscription));
	if ((s = kiro_str(kiro_get(root, "userInfo"), "email")) != NULL)
		strlcpy_qr(ul->ul_email, s, sizeof(ul->ul_email));
	rv = 0;
 done:
	json_object_put(root);
	return rv;
}

void
kiro_usage_error(int status, const struct buf *resp, struct usage_limits *ul)
{
	struct json_object	*o = NULL;
	const char		*reason, *type, *msg, *p;

	memset(ul, 0, sizeof(*ul));
	ul->ul_status = status;
	if (resp != NULL && resp->b_len > 0)
		o = jsonr_parse(resp->b_data, resp->b_len, 16, NULL);
	reason = kiro_str(o, "reason");
	if ((type = kiro_str(o, "__type")) != NULL &&
	    (p = strrchr(type, '#')) != NULL)
		type = p + 1;
	msg = kiro_str(o, "message");
	if (reason == NULL && msg != NULL &&
	    strstr(msg, "TEMPORARILY_SUSPENDED") != NULL)
		reason = "TEMPORARILY_SUSPENDED";
	strlcpy_qr(ul->ul_reason, reason ? reason : type ? type : "",
	    sizeof(ul->ul_reason));
	snprintf(ul->ul_error, sizeof(ul->ul_error), "getUsageLimits: HTTP %d"
	    "%s%.48s%s%.90s", status, ul->ul_reason[0] ? " " : "",
	    ul->ul_reason, msg ? ": " : "", msg ? msg : "");
	json_object_put(o);
}

int
kiro_req_usage_answer(const struct oidc_req *r, struct usage_limits *ul)
{
	if (r->or_status == 0) {
		memset(ul, 0, sizeof(*ul));
		snprintf(ul->ul_error, sizeof(ul->ul_error),
		    "getUsageLimits: %.130s", r->or_error);
		return -1;
	}
	if (r->or_status != 200) {
		kiro_usage_error(r->or_status, &r->or_resp, ul);
		return -1;
	}
	return kiro_usage_parse(r->or_resp.b_data, r->or_resp.b_len, ul);
}
