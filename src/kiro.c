/*
 * kiro.c - the Kiro social-login refresh (accounts signed in with Google
 * or GitHub through Kiro): POST /refreshToken {"refreshToken"} on the
 * configured upstream.kiro_auth_endpoint, answered with an access
 * token, maybe a new refresh token, the profile ARN and its lifetime.
 *
 * Like oidc.c it runs only in the refresher, blocking, and shares that
 * file's POST and answer parsing; a refused token (400 invalid_grant,
 * "Invalid refresh token provided") is AUTH_REVOKED.
 */
#include <string.h>

#include "qrelayd.h"

static const char *const kiro_request_secrets[] = { "refreshToken", NULL };

int
kiro_refresh(const struct config *cf, const char *region,
    const char *refresh_token, struct auth_tokens *at)
{
	struct json_object	*o;

	if ((o = json_object_new_object()) != NULL)
		json_object_object_add(o, "refreshToken",
		    json_object_new_string(refresh_token));
	return oidc_post_refresh(cf, cf->cf_kiro_auth_endpoint, region,
	    "/refreshToken", o, kiro_request_secrets, refresh_token, at);
}
