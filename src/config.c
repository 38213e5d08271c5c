/*
 * config.c - the configuration: libconfig file -> struct config.
 *
 * The master parses the file at start, for `qrelayd -n`, and on SIGHUP.
 * Reload follows nginx and Dovecot: the caller loads into a fresh
 * struct and swaps it in only when config_load succeeded, so a bad file
 * never disturbs the running daemon. Every key is optional; unknown keys
 * and wrong types are errors (a typo must not pass silently), reported
 * as "file:line: reason". The environment (PORT, DATA_DIR, NO_BROWSER)
 * is applied last, so it wins over the file. Nothing here creates files
 * or binds sockets: the master does that with the result.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "qrelayd.h"

enum cf_kind { K_INT, K_SIZE, K_STR, K_URL, K_REGION, K_DBTYPE, K_LISTEN,
	K_MODELS };

#define F_EMPTY_OK	0x01	/* a string key that may be "" */

struct cf_key {
	const char	*ck_group;	/* NULL: top level */
	const char	*ck_name;
	enum cf_kind	 ck_kind;
	size_t		 ck_off;	/* into struct config */
	size_t		 ck_size;	/* string buffer size */
	long long	 ck_min, ck_max;
	int		 ck_flags;
};

#define FIELD(f)	offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define INT(g, n, f, lo, hi)	{ g, n, K_INT, FIELD(f), lo, hi, 0 }
#define SIZE(g, n, f, lo, hi)	{ g, n, K_SIZE, FIELD(f), lo, hi, 0 }
#define STR(g, n, f, k, fl)	{ g, n, k, FIELD(f), 0, 0, fl }

static const struct cf_key cf_keys[] = {
	{ NULL, "listen", K_LISTEN, 0, 0, 0, 0, 0 },
	{ NULL, "models", K_MODELS, 0, 0, 0, 0, 0 },
	INT(NULL, "workers", cf_workers_conf, 0, QR_MAX_WORKERS),
	STR(NULL, "user", cf_user, K_STR, F_EMPTY_OK),
	STR(NULL, "pid_file", cf_pid_file, K_STR, 0),
	STR(NULL, "log_file", cf_log_file, K_STR, F_EMPTY_OK),
	STR(NULL, "www_dir", cf_www_dir, K_STR, 0),
	INT(NULL, "max_accounts", cf_max_accounts, 1, 1000000),
	INT(NULL, "max_keys", cf_max_keys, 1, 1000000),
	INT(NULL, "shutdown_timeout", cf_shutdown_timeout, 1, 3600),

	STR("database", "type", cf_db_type, K_DBTYPE, 0),
	STR("database", "path", cf_db_path, K_STR, 0),

	STR("upstream", "region", cf_region, K_REGION, 0),
	STR("upstream", "q_endpoint", cf_q_endpoint, K_URL, 0),
	STR("upstream", "oidc_endpoint", cf_oidc_endpoint, K_URL, 0),
	STR("upstream", "kiro_auth_endpoint", cf_kiro_auth_endpoint, K_URL, 0),
	INT("upstream", "connect_timeout", cf_connect_timeout, 1, 600),
	INT("upstream", "first_byte_timeout", cf_first_byte_timeout, 1, 3600),
	INT("upstream", "idle_timeout", cf_idle_timeout, 1, 86400),
	STR("upstream", "start_url", cf_start_url, K_URL, 0),

	INT("refresher", "parallel", cf_refresh_parallel, 1, 64),
	INT("refresher", "usage_interval", cf_usage_interval, 0, 604800),

	SIZE("limits", "max_body", cf_max_body, 1024, 1073741824),
	SIZE("limits", "max_header", cf_max_header, 1024, 1048576),
	INT("limits", "max_headers", cf_max_headers, 1, QR_MAX_HEADERS),
	INT("limits", "header_timeout", cf_header_timeout, 1, 3600),
	INT("limits", "body_timeout", cf_body_timeout, 1, 3600),
	INT("limits", "keepalive_timeout", cf_keepalive_timeout, 1, 3600),
	INT("limits", "send_timeout", cf_send_timeout, 1, 3600),
	INT("limits", "max_connections", cf_max_connections, 1, 1000000),
};

static const char *cf_groups[] = { "database", "upstream", "refresher",
    "limits" };

static void	 cf_err(char *, size_t, const char *, int, const char *, ...)
		    QR_ATTR_PRINTF(5, 6);

/* "file:line: reason" (or "file: reason" when the line is unknown). */
static void
cf_err(char *errbuf, size_t errlen, const char *file, int line,
    const char *fmt, ...)
{
	char	 msg[512];
	va_list	 ap;

	if (errbuf == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(errbuf, errlen, "%s:%d: %s", file, line, msg);
	else
		snprintf(errbuf, errlen, "%s: %s", file, msg);
}

static int
workers_resolve(int conf)
{
	long	 n;

	if (conf > 0)
		return conf;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > QR_MAX_WORKERS)
		n = QR_MAX_WORKERS;
	return (int)n;
}

void
config_defaults(struct config *cf)
{
	memset(cf, 0, sizeof(*cf));
	if (config_parse_listen("127.0.0.1:62311", &cf->cf_listen[0],
	    NULL, 0) == -1)
		fatalx("%s: default listen address", __func__);
	cf->cf_nlisten = 1;
	cf->cf_workers_conf = 0;
	cf->cf_workers = workers_resolve(0);
	strlcpy_qr(cf->cf_pid_file, "var/qrelayd.pid", sizeof(cf->cf_pid_file));
	strlcpy_qr(cf->cf_www_dir, "www", sizeof(cf->cf_www_dir));
	cf->cf_max_accounts = 1024;
	cf->cf_max_keys = 1024;
	cf->cf_shutdown_timeout = 30;
	strlcpy_qr(cf->cf_db_type, "sqlite", sizeof(cf->cf_db_type));
	strlcpy_qr(cf->cf_db_path, "var/qrelayd.db", sizeof(cf->cf_db_path));

	strlcpy_qr(cf->cf_region, "us-east-1", sizeof(cf->cf_region));
	strlcpy_qr(cf->cf_q_endpoint, "https://q.us-east-1.amazonaws.com",
	    sizeof(cf->cf_q_endpoint));
	strlcpy_qr(cf->cf_oidc_endpoint,
	    "https://oidc.us-east-1.amazonaws.com",
	    sizeof(cf->cf_oidc_endpoint));
	strlcpy_qr(cf->cf_kiro_auth_endpoint,
	    "https://prod.us-east-1.auth.desktop.kiro.dev",
	    sizeof(cf->cf_kiro_auth_endpoint));
	cf->cf_connect_timeout = 10;
	cf->cf_first_byte_timeout = 120;
	cf->cf_idle_timeout = 300;
	/* not a host we connect to: the portal the user signs in at */
	strlcpy_qr(cf->cf_start_url, "https://view.awsapps.com/start",
	    sizeof(cf->cf_start_url));
	cf->cf_refresh_parallel = 4;
	cf->cf_usage_interval = 1800;

	cf->cf_max_body = 16777216;
	cf->cf_max_header = 65536;
	cf->cf_max_headers = 100;
	cf->cf_header_timeout = 30;
	cf->cf_body_timeout = 60;
	cf->cf_keepalive_timeout = 75;
	cf->cf_send_timeout = 60;
	cf->cf_max_connections = 10000;
}

int
config_parse_listen(const char *s, struct listen_addr *la, char *err,
    size_t errlen)
{
	struct addrinfo	 hints, *res = NULL;
	struct in_addr	 a4;
	char		 host[INET6_ADDRSTRLEN + 32], port[8];
	const char	*h, *p, *c;
	size_t		 hlen, i;
	int		 bracket = 0, gai;
	const char	*why;

	memset(la, 0, sizeof(*la));
	la->la_fd = -1;
	if (strlen(s) >= sizeof(la->la_text)) {
		why = "too long";
		goto bad;
	}
	if (s[0] == '[') {
		bracket = 1;
		h = s + 1;
		if ((c = strchr(h, ']')) == NULL || c[1] != ':') {
			why = "expected \"[address]:port\"";
			goto bad;
		}
		hlen = (size_t)(c - h);
		p = c + 2;
	} else {
		h = s;
		if ((c = strrchr(s, ':')) == NULL) {
			why = "missing port (expected \"host:port\")";
			goto bad;
		}
		hlen = (size_t)(c - h);
		if (memchr(h, ':', hlen) != NULL) {
			why = "an IPv6 address must be in brackets, "
			    "as \"[::1]:port\"";
			goto bad;
		}
		p = c + 1;
	}
	if (hlen == 0) {
		why = "missing host";
		goto bad;
	}
	if (hlen >= sizeof(host)) {
		why = "host too long";
		goto bad;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (!bracket && strcmp(host, "*") == 0)
		strlcpy_qr(host, "0.0.0.0", sizeof(host));

	for (i = 0; p[i] != '\0'; i++)
		if (!isdigit((unsigned char)p[i]))
			break;
	if (i == 0 || p[i] != '\0' || i > 5 || atoi(p) < 1 || atoi(p) > 65535) {
		why = "port must be a number between 1 and 65535";
		goto bad;
	}
	strlcpy_qr(port, p, sizeof(port));
	/* getaddrinfo takes inet_aton's legacy forms ("10" = 0.0.0.10) */
	if (!bracket && inet_pton(AF_INET, host, &a4) != 1) {
		why = "not a numeric IPv4 address (host names are not resolved)";
		goto bad;
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = bracket ? AF_INET6 : AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	if ((gai = getaddrinfo(host, port, &hints, &res)) != 0) {
		why = bracket ? "not a numeric IPv6 address" :
		    "not a numeric IPv4 address (host names are not resolved)";
		goto bad;
	}
	if (res->ai_addrlen > sizeof(la->la_ss)) {
		freeaddrinfo(res);
		why = "address too long";
		goto bad;
	}
	memcpy(&la->la_ss, res->ai_addr, res->ai_addrlen);
	la->la_sslen = res->ai_addrlen;
	freeaddrinfo(res);
	strlcpy_qr(la->la_text, s, sizeof(la->la_text));
	return 0;

 bad:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "bad listen address \"%.100s\": %s", s, why);
	memset(la, 0, sizeof(*la));
	la->la_fd = -1;
	return -1;
}

int
config_same_listen(const struct listen_addr *a, const struct listen_addr *b)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;

	if (a->la_ss.ss_family != b->la_ss.ss_family)
		return 0;
	switch (a->la_ss.ss_family) {
	case AF_INET:
		a4 = (const struct sockaddr_in *)&a->la_ss;
		b4 = (const struct sockaddr_in *)&b->la_ss;
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	case AF_INET6:
		a6 = (const struct sockaddr_in6 *)&a->la_ss;
		b6 = (const struct sockaddr_in6 *)&b->la_ss;
		return a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		    sizeof(a6->sin6_addr)) == 0;
	default:
		return a->la_sslen == b->la_sslen &&
		    memcmp(&a->la_ss, &b->la_ss, a->la_sslen) == 0;
	}
}

static const char *
cf_file_of(const config_setting_t *s, const struct config *cf)
{
	const char	*f = config_setting_source_file(s);

	return f != NULL ? f : cf->cf_file;
}

static int
cf_listen(struct config *cf, config_setting_t *s, char *errbuf,
    size_t errlen)
{
	config_setting_t	*e;
	const char		*str;
	char			 why[160];
	int			 i, n, j, line;

	cf->cf_nlisten = 0;
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		n = 1;
	else if (config_setting_is_array(s) || config_setting_is_list(s))
		n = config_setting_length(s);
	else {
		cf_err(errbuf, errlen, cf_file_of(s, cf),
		    config_setting_source_line(s),
		    "listen must be a string or a list of strings");
		return -1;
	}
	if (n == 0) {
		cf_err(errbuf, errlen, cf_file_of(s, cf),
		    config_setting_source_line(s),
		    "listen must name at least one address");
		return -1;
	}
	if (n > QR_MAX_LISTEN) {
		cf_err(errbuf, errlen, cf_file_of(s, cf),
		    config_setting_source_line(s),
		    "listen has %d addresses, at most %d are allowed", n,
		    QR_MAX_LISTEN);
		return -1;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_type(s) == CONFIG_TYPE_STRING ? s :
		    config_setting_get_elem(s, (unsigned int)i);
		line = config_setting_source_line(e);
		if (line == 0)
			line = config_setting_source_line(s);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			cf_err(errbuf, errlen, cf_file_of(s, cf), line,
			    "listen must be a string or a list of strings");
			return -1;
		}
		str = config_setting_get_string(e);
		if (config_parse_listen(str, &cf->cf_listen[i], why,
		    sizeof(why)) == -1) {
			cf_err(errbuf, errlen, cf_file_of(s, cf), line, "%s",
			    why);
			return -1;
		}
		for (j = 0; j < i; j++) {
			if (config_same_listen(&cf->cf_listen[j],
			    &cf->cf_listen[i])) {
				cf_err(errbuf, errlen, cf_file_of(s, cf), line,
				    "listen address \"%s\" is given twice",
				    str);
				return -1;
			}
		}
		cf->cf_nlisten = i + 1;
	}
	return 0;
}

/* One models entry's string member: present, a string, fits. */
static const char *
cf_model_str(struct config *cf, config_setting_t *e, const char *member,
    int idx, char *errbuf, size_t errlen)
{
	config_setting_t	*m;
	const char		*v;

	if ((m = config_setting_get_member(e, member)) == NULL) {
		cf_err(errbuf, errlen, cf_file_of(e, cf),
		    config_setting_source_line(e),
		    "models[%d] lacks \"%s\"", idx, member);
		return NULL;
	}
	if (config_setting_type(m) != CONFIG_TYPE_STRING) {
		cf_err(errbuf, errlen, cf_file_of(m, cf),
		    config_setting_source_line(m),
		    "models[%d].%s must be a string", idx, member);
		return NULL;
	}
	v = config_setting_get_string(m);
	if (v[0] == '\0' || strlen(v) >= sizeof(cf->cf_models[0].cm_match)) {
		cf_err(errbuf, errlen, cf_file_of(m, cf),
		    config_setting_source_line(m),
		    "models[%d].%s must be 1 to %zu characters", idx, member,
		    sizeof(cf->cf_models[0].cm_match) - 1);
		return NULL;
	}
	return v;
}

/*
 * models = ( { match = "pattern"; id = "upstream-id"; }, ... );
 * The id goes into the upstream modelId, so it must already have the
 * upstream's form; a bad one is a config error, not a 400 later.
 */
static int
cf_models(struct config *cf, config_setting_t *s, char *errbuf,
    size_t errlen)
{
	config_setting_t	*e, *m;
	const char		*match, *id;
	int			 i, j, n;
	size_t			 k;

	cf->cf_nmodels = 0;
	if (!config_setting_is_list(s) && !(config_setting_is_array(s) &&
	    config_setting_length(s) == 0)) {
		cf_err(errbuf, errlen, cf_file_of(s, cf),
		    config_setting_source_line(s), "models must be a list: "
		    "models = ( { match = \"...\"; id = \"...\"; } );");
		return -1;
	}
	n = config_setting_length(s);
	if (n > QR_MAX_MODELS) {
		cf_err(errbuf, errlen, cf_file_of(s, cf),
		    config_setting_source_line(s),
		    "models has %d entries, at most %d are allowed", n,
		    QR_MAX_MODELS);
		return -1;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned int)i);
		if (!config_setting_is_group(e)) {
			/* a scalar's own line is libconfig's lookahead */
			cf_err(errbuf, errlen, cf_file_of(s, cf),
			    config_setting_source_line(s),
			    "models[%d] must be a group: "
			    "{ match = \"...\"; id = \"...\"; }", i);
			return -1;
		}
		for (j = 0; j < config_setting_length(e); j++) {
			m = config_setting_get_elem(e, (unsigned int)j);
			if (strcmp(config_setting_name(m), "match") != 0 &&
			    strcmp(config_setting_name(m), "id") != 0) {
				cf_err(errbuf, errlen, cf_file_of(m, cf),
				    config_setting_source_line(m),
				    "unknown key \"models[%d].%s\"", i,
				    config_setting_name(m));
				return -1;
			}
		}
		if ((match = cf_model_str(cf, e, "match", i, errbuf,
		    errlen)) == NULL ||
		    (id = cf_model_str(cf, e, "id", i, errbuf, errlen)) == NULL)
			return -1;
		for (k = 0; id[k] != '\0'; k++) {
			if (!isalnum((unsigned char)id[k]) &&
			    strchr("_:.-", id[k]) == NULL) {
				m = config_setting_get_member(e, "id");
				cf_err(errbuf, errlen, cf_file_of(m, cf),
				    config_setting_source_line(m),
				    "models[%d].id \"%s\" may hold only "
				    "letters, digits and _ : . -", i, id);
				return -1;
			}
		}
		strlcpy_qr(cf->cf_models[i].cm_match, match,
		    sizeof(cf->cf_models[i].cm_match));
		strlcpy_qr(cf->cf_models[i].cm_id, id,
		    sizeof(cf->cf_models[i].cm_id));
		cf->cf_nmodels = i + 1;
	}
	return 0;
}

static int
cf_string_ok(const struct cf_key *k, const char *v, const char **why)
{
	size_t	 i;

	if (v[0] == '\0' && !(k->ck_flags & F_EMPTY_OK)) {
		*why = "must not be empty";
		return 0;
	}
	if (strlen(v) >= k->ck_size) {
		*why = "is too long";
		return 0;
	}
	switch (k->ck_kind) {
	case K_URL:
		if ((strncmp(v, "https://", 8) != 0 || v[8] == '\0') &&
		    (strncmp(v, "http://", 7) != 0 || v[7] == '\0')) {
			*why = "must be an http:// or https:// URL";
			return 0;
		}
		break;
	case K_REGION:
		for (i = 0; v[i] != '\0'; i++) {
			if (!islower((unsigned char)v[i]) &&
			    !isdigit((unsigned char)v[i]) && v[i] != '-') {
				*why = "must look like \"us-east-1\"";
				return 0;
			}
		}
		break;
	case K_DBTYPE:
		if (strcmp(v, "sqlite") != 0) {
			*why = "must be \"sqlite\" (the only type supported)";
			return 0;
		}
		break;
	default:
		break;
	}
	return 1;
}

/* One setting s, known as key k, into cf. */
static int
cf_setting(struct config *cf, const struct cf_key *k, config_setting_t *s,
    char *errbuf, size_t errlen)
{
	const char	*file = cf_file_of(s, cf), *why, *v;
	char		 name[64];
	int		 line = config_setting_source_line(s), type;
	long long	 n;

	if (k->ck_kind == K_LISTEN)
		return cf_listen(cf, s, errbuf, errlen);
	if (k->ck_kind == K_MODELS)
		return cf_models(cf, s, errbuf, errlen);
	snprintf(name, sizeof(name), "%s%s%s", k->ck_group ? k->ck_group : "",
	    k->ck_group ? "." : "", k->ck_name);
	type = config_setting_type(s);

	switch (k->ck_kind) {
	case K_INT:
	case K_SIZE:
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
			cf_err(errbuf, errlen, file, line,
			    "%s must be an integer", name);
			return -1;
		}
		n = config_setting_get_int64(s);
		if (n < k->ck_min || n > k->ck_max) {
			cf_err(errbuf, errlen, file, line,
			    "%s must be between %lld and %lld", name,
			    k->ck_min, k->ck_max);
			return -1;
		}
		if (k->ck_kind == K_INT)
			*(int *)(void *)((char *)cf + k->ck_off) = (int)n;
		else
			*(size_t *)(void *)((char *)cf + k->ck_off) = (size_t)n;
		return 0;
	default:
		if (type != CONFIG_TYPE_STRING) {
			cf_err(errbuf, errlen, file, line,
			    "%s must be a string", name);
			return -1;
		}
		v = config_setting_get_string(s);
		if (!cf_string_ok(k, v, &why)) {
			cf_err(errbuf, errlen, file, line, "%s %s", name, why);
			return -1;
		}
		strlcpy_qr((char *)cf + k->ck_off, v, k->ck_size);
		return 0;
	}
}

/* The members of group (NULL: the root) into cf. */
static int
cf_walk(struct config *cf, config_setting_t *grp, const char *group,
    char *errbuf, size_t errlen)
{
	config_setting_t	*s;
	const struct cf_key	*k;
	const char		*name;
	int			 i, n;
	size_t			 j;

	n = config_setting_length(grp);
	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(grp, (unsigned int)i);
		name = config_setting_name(s);
		if (group == NULL) {
			for (j = 0; j < nitems(cf_groups); j++)
				if (strcmp(name, cf_groups[j]) == 0)
					break;
			if (j < nitems(cf_groups)) {
				if (!config_setting_is_group(s)) {
					cf_err(errbuf, errlen,
					    cf_file_of(s, cf),
					    config_setting_source_line(s),
					    "%s must be a group: "
					    "%s = { ... };", name, name);
					return -1;
				}
				if (cf_walk(cf, s, cf_groups[j], errbuf,
				    errlen) == -1)
					return -1;
				continue;
			}
		}
		k = NULL;
		for (j = 0; j < nitems(cf_keys); j++) {
			if (strcmp(cf_keys[j].ck_name, name) != 0)
				continue;
			if ((group == NULL) != (cf_keys[j].ck_group == NULL))
				continue;
			if (group != NULL && strcmp(group,
			    cf_keys[j].ck_group) != 0)
				continue;
			k = &cf_keys[j];
			break;
		}
		if (k == NULL) {
			cf_err(errbuf, errlen, cf_file_of(s, cf),
			    config_setting_source_line(s),
			    "unknown key \"%s%s%s\"", group ? group : "",
			    group ? "." : "", name);
			return -1;
		}
		if (cf_setting(cf, k, s, errbuf, errlen) == -1)
			return -1;
	}
	return 0;
}

int
config_load(struct config *cf, const char *path, char *errbuf, size_t errlen)
{
	config_t	 lc;
	FILE		*fp;
	int		 rv = -1;

	config_defaults(cf);
	if (path == NULL || path[0] == '\0')
		return config_apply_env(cf, errbuf, errlen);

	if (strlcpy_qr(cf->cf_file, path, sizeof(cf->cf_file)) >=
	    sizeof(cf->cf_file)) {
		cf_err(errbuf, errlen, "config", 0, "file name too long");
		return -1;
	}
	/* open it ourselves first: libconfig's I/O error says no why */
	if ((fp = fopen(path, "r")) == NULL) {
		cf_err(errbuf, errlen, path, 0, "%s", strerror(errno));
		return -1;
	}
	fclose(fp);

	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			cf_err(errbuf, errlen, path, 0, "cannot read file");
		else
			cf_err(errbuf, errlen, config_error_file(&lc) ?
			    config_error_file(&lc) : path,
			    config_error_line(&lc), "%s",
			    config_error_text(&lc));
		goto done;
	}
	if (cf_walk(cf, config_root_setting(&lc), NULL, errbuf, errlen) == -1)
		goto done;
	cf->cf_workers = workers_resolve(cf->cf_workers_conf);
	rv = config_apply_env(cf, errbuf, errlen);
 done:
	config_destroy(&lc);
	return rv;
}

/* path = dir + "/" + basename(path) */
static int
env_redir(char *path, size_t size, const char *dir)
{
	char		 out[PATH_MAX];
	const char	*base;
	size_t		 dl = strlen(dir);
	int		 n;

	base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	n = snprintf(out, sizeof(out), "%.*s%s%s", (int)dl, dir,
	    dir[dl - 1] == '/' ? "" : "/", base);
	if (n < 0 || (size_t)n >= sizeof(out) || (size_t)n >= size)
		return -1;
	strlcpy_qr(path, out, size);
	return 0;
}

int
config_apply_env(struct config *cf, char *errbuf, size_t errlen)
{
	struct listen_addr	*la;
	const char		*v, *c;
	char			*end, text[sizeof(la->la_text)];
	long			 port;
	int			 i, n;
	size_t			 hl;

	if ((v = getenv("PORT")) != NULL && v[0] != '\0') {
		errno = 0;
		port = strtol(v, &end, 10);
		if (errno != 0 || *end != '\0' || !isdigit((unsigned char)v[0])
		    || port < 1 || port > 65535) {
			cf_err(errbuf, errlen, "PORT", 0,
			    "must be a number between 1 and 65535");
			return -1;
		}
		for (i = 0; i < cf->cf_nlisten; i++) {
			la = &cf->cf_listen[i];
			if (la->la_ss.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&la->la_ss)->sin6_port =
				    htons((uint16_t)port);
			else
				((struct sockaddr_in *)&la->la_ss)->sin_port =
				    htons((uint16_t)port);
			/* keep the host as written, change the port */
			c = strrchr(la->la_text, ':');
			hl = c != NULL ? (size_t)(c - la->la_text) :
			    strlen(la->la_text);
			n = snprintf(text, sizeof(text), "%.*s:%ld", (int)hl,
			    la->la_text, port);
			if (n < 0 || (size_t)n >= sizeof(text)) {
				cf_err(errbuf, errlen, "PORT", 0,
				    "listen address too long");
				return -1;
			}
			strlcpy_qr(la->la_text, text, sizeof(la->la_text));
		}
	}
	if ((v = getenv("DATA_DIR")) != NULL && v[0] != '\0') {
		if (env_redir(cf->cf_db_path, sizeof(cf->cf_db_path), v) == -1 ||
		    env_redir(cf->cf_pid_file, sizeof(cf->cf_pid_file),
		    v) == -1) {
			cf_err(errbuf, errlen, "DATA_DIR", 0,
			    "path too long");
			return -1;
		}
	}
	if ((v = getenv("NO_BROWSER")) != NULL)
		cf->cf_no_browser = v[0] != '\0' && strcmp(v, "0") != 0;
	return 0;
}
