/*
 * test_config.c - configuration loading: defaults, the shipped file, a
 * full file, every kind of error with its file:line, the environment
 * overrides and listen address parsing. Each Criterion test runs in its
 * own process, so setenv() here does not leak between tests.
 */
#include <netinet/in.h>
#include <arpa/inet.h>

#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "qrelayd.h"

static char	 tmpdir[64];
static char	 cfpath[128];

static void
setup(void)
{
	unsetenv("PORT");
	unsetenv("DATA_DIR");
	unsetenv("NO_BROWSER");
	strlcpy_qr(tmpdir, "/tmp/qr-test-config.XXXXXX", sizeof(tmpdir));
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(cfpath, sizeof(cfpath), "%s/qrelayd.conf", tmpdir);
}

static void
teardown(void)
{
	unlink(cfpath);
	rmdir(tmpdir);
}

TestSuite(config, .init = setup, .fini = teardown);

static void
write_conf(const char *text)
{
	FILE	*fp = fopen(cfpath, "w");

	cr_assert_not_null(fp);
	cr_assert_geq(fputs(text, fp), 0);
	cr_assert_eq(fclose(fp), 0);
}

/* Loads text; expects failure with exactly "cfpath:line: reason". */
static void
expect_error(const char *text, int line, const char *reason)
{
	struct config	 cf;
	char		 err[512], want[512];

	write_conf(text);
	err[0] = '\0';
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), -1,
	    "accepted: %s", text);
	snprintf(want, sizeof(want), "%s:%d: %s", cfpath, line, reason);
	cr_assert_str_eq(err, want, "for: %s", text);
}

static int
port_of(const struct listen_addr *la)
{
	if (la->la_ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&la->la_ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&la->la_ss)->sin_port);
}

static void
check_defaults(const struct config *cf)
{
	const struct sockaddr_in *sin;

	cr_assert_eq(cf->cf_nlisten, 1);
	cr_assert_str_eq(cf->cf_listen[0].la_text, "127.0.0.1:62311");
	cr_assert_eq(cf->cf_listen[0].la_fd, -1);
	sin = (const struct sockaddr_in *)&cf->cf_listen[0].la_ss;
	cr_assert_eq(sin->sin_family, AF_INET);
	cr_assert_eq(ntohs(sin->sin_port), 62311);
	cr_assert_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	cr_assert_eq(cf->cf_listen[0].la_sslen, sizeof(struct sockaddr_in));
	cr_assert_eq(cf->cf_workers_conf, 0);
	cr_assert_geq(cf->cf_workers, 1);
	cr_assert_leq(cf->cf_workers, QR_MAX_WORKERS);
	cr_assert_str_eq(cf->cf_user, "");
	cr_assert_str_eq(cf->cf_pid_file, "var/qrelayd.pid");
	cr_assert_str_eq(cf->cf_log_file, "");
	cr_assert_str_eq(cf->cf_www_dir, "www");
	cr_assert_eq(cf->cf_max_accounts, 1024);
	cr_assert_eq(cf->cf_max_keys, 1024);
	cr_assert_eq(cf->cf_shutdown_timeout, 30);
	cr_assert_str_eq(cf->cf_db_type, "sqlite");
	cr_assert_str_eq(cf->cf_db_path, "var/qrelayd.db");
	cr_assert_str_eq(cf->cf_region, "us-east-1");
	cr_assert_str_eq(cf->cf_q_endpoint, "https://q.us-east-1.amazonaws.com");
	cr_assert_str_eq(cf->cf_oidc_endpoint,
	    "https://oidc.us-east-1.amazonaws.com");
	cr_assert_str_eq(cf->cf_kiro_auth_endpoint,
	    "https://prod.us-east-1.auth.desktop.kiro.dev");
	cr_assert_eq(cf->cf_connect_timeout, 10);
	cr_assert_eq(cf->cf_first_byte_timeout, 120);
	cr_assert_eq(cf->cf_idle_timeout, 300);
	cr_assert_eq(cf->cf_max_body, 16777216);
	cr_assert_eq(cf->cf_max_header, 65536);
	cr_assert_eq(cf->cf_max_headers, 100);
	cr_assert_eq(cf->cf_header_timeout, 30);
	cr_assert_eq(cf->cf_body_timeout, 60);
	cr_assert_eq(cf->cf_keepalive_timeout, 75);
	cr_assert_eq(cf->cf_send_timeout, 60);
	cr_assert_eq(cf->cf_max_connections, 10000);
	cr_assert_eq(cf->cf_no_browser, 0);
}

Test(config, defaults)
{
	struct config	 cf;
	char		 err[256];

	cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), 0);
	cr_assert_str_eq(cf.cf_file, "");
	check_defaults(&cf);
	cr_assert_eq(config_load(&cf, "", err, sizeof(err)), 0);
	check_defaults(&cf);
	config_defaults(&cf);
	check_defaults(&cf);
}

Test(config, empty_file_is_defaults)
{
	struct config	 cf;
	char		 err[256];

	write_conf("# nothing\n");
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cf.cf_file, cfpath);
	check_defaults(&cf);
}

/* etc/qrelayd.conf as shipped gives exactly the built-in defaults. */
Test(config, shipped_file_is_defaults)
{
	struct config	 a, b;
	char		 err[256], path[PATH_MAX], src[PATH_MAX];

	snprintf(path, sizeof(path), "etc/qrelayd.conf");
	if (access(path, R_OK) == -1) {
		strlcpy_qr(src, __FILE__, sizeof(src));
		snprintf(path, sizeof(path), "%s/../../etc/qrelayd.conf",
		    dirname(src));
	}
	cr_assert_eq(config_load(&a, path, err, sizeof(err)), 0, "%s", err);
	check_defaults(&a);
	config_defaults(&b);
	strlcpy_qr(b.cf_file, a.cf_file, sizeof(b.cf_file));
	cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
}

Test(config, full_file)
{
	struct config	 cf;
	char		 err[256];

	write_conf(
	    "listen = [ \"0.0.0.0:8080\", \"[::1]:8081\", \"*:8082\" ];\n"
	    "workers = 3;\n"
	    "user = \"nobody\";\n"
	    "pid_file = \"/run/q.pid\";\n"
	    "log_file = \"/var/log/q.log\";\n"
	    "www_dir = \"/srv/www\";\n"
	    "max_accounts = 10;\n"
	    "max_keys = 20L;\n"
	    "shutdown_timeout = 5;\n"
	    "database = { type = \"sqlite\"; path = \"/data/q.db\"; };\n"
	    "upstream = {\n"
	    "  region = \"eu-central-1\";\n"
	    "  q_endpoint = \"http://127.0.0.1:9000\";\n"
	    "  oidc_endpoint = \"http://127.0.0.1:9001\";\n"
	    "  kiro_auth_endpoint = \"http://127.0.0.1:9002\";\n"
	    "  connect_timeout = 2; first_byte_timeout = 3; idle_timeout = 4;\n"
	    "};\n"
	    "limits = {\n"
	    "  max_body = 2147483647L / 2;\n"
	    "};\n");
	/* libconfig has no arithmetic: that was a parse error on line 19 */
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), -1);
	cr_assert(strncmp(err, cfpath, strlen(cfpath)) == 0 &&
	    strstr(err, ":19: ") != NULL, "%s", err);

	write_conf(
	    "listen = [ \"0.0.0.0:8080\", \"[::1]:8081\", \"*:8082\" ];\n"
	    "workers = 3;\n"
	    "user = \"nobody\";\n"
	    "pid_file = \"/run/q.pid\";\n"
	    "log_file = \"/var/log/q.log\";\n"
	    "www_dir = \"/srv/www\";\n"
	    "max_accounts = 10;\n"
	    "max_keys = 20L;\n"
	    "shutdown_timeout = 5;\n"
	    "database = { type = \"sqlite\"; path = \"/data/q.db\"; };\n"
	    "upstream = {\n"
	    "  region = \"eu-central-1\";\n"
	    "  q_endpoint = \"http://127.0.0.1:9000\";\n"
	    "  oidc_endpoint = \"http://127.0.0.1:9001\";\n"
	    "  kiro_auth_endpoint = \"http://127.0.0.1:9002\";\n"
	    "  connect_timeout = 2; first_byte_timeout = 3; idle_timeout = 4;\n"
	    "};\n"
	    "limits = {\n"
	    "  max_body = 1073741824L; max_header = 2048; max_headers = 128;\n"
	    "  header_timeout = 5; body_timeout = 6; keepalive_timeout = 7;\n"
	    "  send_timeout = 8; max_connections = 9;\n"
	    "};\n");
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cf.cf_nlisten, 3);
	cr_assert_str_eq(cf.cf_listen[0].la_text, "0.0.0.0:8080");
	cr_assert_str_eq(cf.cf_listen[1].la_text, "[::1]:8081");
	cr_assert_eq(cf.cf_listen[1].la_ss.ss_family, AF_INET6);
	cr_assert_eq(port_of(&cf.cf_listen[1]), 8081);
	cr_assert_eq(((struct sockaddr_in *)&cf.cf_listen[2].la_ss)->
	    sin_addr.s_addr, htonl(INADDR_ANY));
	cr_assert_eq(cf.cf_workers, 3);
	cr_assert_eq(cf.cf_workers_conf, 3);
	cr_assert_str_eq(cf.cf_user, "nobody");
	cr_assert_str_eq(cf.cf_pid_file, "/run/q.pid");
	cr_assert_str_eq(cf.cf_log_file, "/var/log/q.log");
	cr_assert_str_eq(cf.cf_www_dir, "/srv/www");
	cr_assert_eq(cf.cf_max_accounts, 10);
	cr_assert_eq(cf.cf_max_keys, 20);
	cr_assert_eq(cf.cf_shutdown_timeout, 5);
	cr_assert_str_eq(cf.cf_db_path, "/data/q.db");
	cr_assert_str_eq(cf.cf_region, "eu-central-1");
	cr_assert_str_eq(cf.cf_q_endpoint, "http://127.0.0.1:9000");
	cr_assert_str_eq(cf.cf_oidc_endpoint, "http://127.0.0.1:9001");
	cr_assert_str_eq(cf.cf_kiro_auth_endpoint, "http://127.0.0.1:9002");
	cr_assert_eq(cf.cf_connect_timeout, 2);
	cr_assert_eq(cf.cf_first_byte_timeout, 3);
	cr_assert_eq(cf.cf_idle_timeout, 4);
	cr_assert_eq(cf.cf_max_body, 1073741824);
	cr_assert_eq(cf.cf_max_header, 2048);
	cr_assert_eq(cf.cf_max_headers, 128);
	cr_assert_eq(cf.cf_header_timeout, 5);
	cr_assert_eq(cf.cf_body_timeout, 6);
	cr_assert_eq(cf.cf_keepalive_timeout, 7);
	cr_assert_eq(cf.cf_send_timeout, 8);
	cr_assert_eq(cf.cf_max_connections, 9);
}

Test(config, listen_single_string)
{
	struct config	 cf;
	char		 err[256];

	write_conf("listen = \"[::]:9999\";\n");
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cf.cf_nlisten, 1);
	cr_assert_eq(cf.cf_listen[0].la_ss.ss_family, AF_INET6);
	cr_assert_eq(port_of(&cf.cf_listen[0]), 9999);
	write_conf("listen = ( \"127.0.0.1:1\", \"127.0.0.2:1\" );\n");
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cf.cf_nlisten, 2);
}

Test(config, errors_with_line)
{
	expect_error("workers = 65;\n", 1,
	    "workers must be between 0 and 64");
	expect_error("\n\nworkers = -1;\n", 3,
	    "workers must be between 0 and 64");
	expect_error("# c\nworkers = \"4\";\n", 2, "workers must be an integer");
	expect_error("workers = 1.5;\n", 1, "workers must be an integer");
	expect_error("wrokers = 4;\n", 1, "unknown key \"wrokers\"");
	expect_error("upstream = {\n  regoin = \"x\";\n};\n", 2,
	    "unknown key \"upstream.regoin\"");
	expect_error("upstream = 3;\n", 1,
	    "upstream must be a group: upstream = { ... };");
	expect_error("region = \"us-east-1\";\n", 1,
	    "unknown key \"region\"");
	expect_error("limits = { workers = 3; };\n", 1,
	    "unknown key \"limits.workers\"");
	expect_error("database = {\n type = \"mysql\";\n};\n", 2,
	    "database.type must be \"sqlite\" (the only type supported)");
	expect_error("database = { path = \"\"; };\n", 1,
	    "database.path must not be empty");
	expect_error("pid_file = \"\";\n", 1, "pid_file must not be empty");
	expect_error("user = 0;\n", 1, "user must be a string");
	expect_error("limits = {\n\n max_headers = 129;\n};\n", 3,
	    "limits.max_headers must be between 1 and 128");
	expect_error("limits = { max_body = 10000000000L; };\n", 1,
	    "limits.max_body must be between 1024 and 1073741824");
	expect_error("max_accounts = 0;\n", 1,
	    "max_accounts must be between 1 and 1000000");
	expect_error("upstream = { q_endpoint = \"ftp://x\"; };\n", 1,
	    "upstream.q_endpoint must be an http:// or https:// URL");
	expect_error("upstream = { oidc_endpoint = \"https://\"; };\n", 1,
	    "upstream.oidc_endpoint must be an http:// or https:// URL");
	expect_error("upstream = { region = \"US EAST\"; };\n", 1,
	    "upstream.region must look like \"us-east-1\"");
	expect_error("listen = [ \"127.0.0.1\" ];\n", 1,
	    "bad listen address \"127.0.0.1\": missing port "
	    "(expected \"host:port\")");
	/* libconfig dates a value by the token after it: keep it on line */
	expect_error("listen = (\n \"127.0.0.1:1\",\n \"localhost:2\" );\n", 3,
	    "bad listen address \"localhost:2\": not a numeric IPv4 "
	    "address (host names are not resolved)");
	expect_error("listen = [ \"127.0.0.1:1\", \"127.0.0.1:1\" ];\n", 1,
	    "listen address \"127.0.0.1:1\" is given twice");
	expect_error("listen = [ ];\n", 1,
	    "listen must name at least one address");
	expect_error("listen = 80;\n", 1,
	    "listen must be a string or a list of strings");
	expect_error("listen = ( \"127.0.0.1:1\", 2 );\n", 1,
	    "listen must be a string or a list of strings");
}

Test(config, parse_error)
{
	struct config	 cf;
	char		 err[256], want[256];

	write_conf("workers = 2;\nworkers = ;\n");
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: ", cfpath);
	cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);

	/* a key given twice is refused by libconfig */
	write_conf("workers = 2;\nworkers = 3;\n");
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), -1);
	cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
}

Test(config, missing_file)
{
	struct config	 cf;
	char		 err[256], want[256];

	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: No such file or directory", cfpath);
	cr_assert_str_eq(err, want);
	/* no errbuf is fine too */
	cr_assert_eq(config_load(&cf, cfpath, NULL, 0), -1);
}

Test(config, env_port)
{
	struct config	 cf;
	char		 err[256];

	setenv("PORT", "8080", 1);
	cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(port_of(&cf.cf_listen[0]), 8080);
	cr_assert_str_eq(cf.cf_listen[0].la_text, "127.0.0.1:8080");

	/* env wins over the file, for every listener, IPv6 included */
	write_conf("listen = [ \"127.0.0.1:1\", \"[::1]:2\" ];\n");
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(port_of(&cf.cf_listen[0]), 8080);
	cr_assert_eq(port_of(&cf.cf_listen[1]), 8080);
	cr_assert_str_eq(cf.cf_listen[1].la_text, "[::1]:8080");
	cr_assert_eq(cf.cf_listen[1].la_ss.ss_family, AF_INET6);

	setenv("PORT", "", 1);	/* empty = unset */
	cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(port_of(&cf.cf_listen[0]), 62311);
}

Test(config, env_port_bad)
{
	static const char *bad[] = { "0", "65536", "abc", "80x", "-1", " 80" };
	struct config	 cf;
	char		 err[256];
	size_t		 i;

	for (i = 0; i < nitems(bad); i++) {
		setenv("PORT", bad[i], 1);
		cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), -1,
		    "PORT=%s accepted", bad[i]);
		cr_assert_str_eq(err, "PORT: must be a number between 1 and "
		    "65535");
	}
}

Test(config, env_data_dir_and_no_browser)
{
	struct config	 cf;
	char		 err[256];

	setenv("DATA_DIR", "/srv/qrelay", 1);
	setenv("NO_BROWSER", "1", 1);
	cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cf.cf_db_path, "/srv/qrelay/qrelayd.db");
	cr_assert_str_eq(cf.cf_pid_file, "/srv/qrelay/qrelayd.pid");
	cr_assert_eq(cf.cf_no_browser, 1);

	setenv("DATA_DIR", "data/", 1);
	setenv("NO_BROWSER", "0", 1);
	write_conf("pid_file = \"run.pid\";\n"
	    "database = { path = \"/a/b/c.db\"; };\n");
	cr_assert_eq(config_load(&cf, cfpath, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cf.cf_db_path, "data/c.db");
	cr_assert_str_eq(cf.cf_pid_file, "data/run.pid");
	cr_assert_eq(cf.cf_no_browser, 0);
	/* DATA_DIR only moves paths, it creates nothing */
	cr_assert_eq(access("data", F_OK), -1);

	setenv("NO_BROWSER", "", 1);
	cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), 0);
	cr_assert_eq(cf.cf_no_browser, 0);
	setenv("NO_BROWSER", "yes", 1);
	cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), 0);
	cr_assert_eq(cf.cf_no_browser, 1);
}

Test(config, parse_listen_good)
{
	struct listen_addr	 la;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&la.la_ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&la.la_ss;
	char			 err[256];

	cr_assert_eq(config_parse_listen("10.1.2.3:65535", &la, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(sin->sin_family, AF_INET);
	cr_assert_eq(ntohs(sin->sin_port), 65535);
	cr_assert_eq(ntohl(sin->sin_addr.s_addr), 0x0a010203);
	cr_assert_eq(la.la_fd, -1);
	cr_assert_str_eq(la.la_text, "10.1.2.3:65535");

	cr_assert_eq(config_parse_listen("*:80", &la, err, sizeof(err)), 0);
	cr_assert_eq(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	cr_assert_str_eq(la.la_text, "*:80");

	cr_assert_eq(config_parse_listen("[::]:80", &la, err, sizeof(err)), 0);
	cr_assert_eq(sin6->sin6_family, AF_INET6);
	cr_assert(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	cr_assert_eq(la.la_sslen, sizeof(struct sockaddr_in6));

	cr_assert_eq(config_parse_listen("[::1]:62311", &la, err,
	    sizeof(err)), 0);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	cr_assert_eq(ntohs(sin6->sin6_port), 62311);
}

Test(config, parse_listen_bad)
{
	static const char *bad[] = { "", ":80", "127.0.0.1", "127.0.0.1:",
	    "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:80x",
	    "127.0.0.1:+80", "127.0.0.1:0000080", "::1:80", "[::1]80",
	    "[::1", "[]:80", "localhost:80", "[127.0.0.1]:80", "10:80",
	    "1.2.3:80", "[::1]:", "[zz::1]:80", "256.0.0.1:80",
	    "127.0.0.1:80 ",
	    "[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:1]:8080" };
	struct listen_addr	 la;
	char			 err[256];
	size_t			 i;

	for (i = 0; i < nitems(bad); i++) {
		err[0] = '\0';
		cr_assert_eq(config_parse_listen(bad[i], &la, err,
		    sizeof(err)), -1, "accepted \"%s\"", bad[i]);
		cr_assert(strncmp(err, "bad listen address \"", 20) == 0,
		    "%s", err);
		cr_assert_eq(la.la_fd, -1);
	}
}

Test(config, same_listen)
{
	struct listen_addr	 a, b;

	cr_assert_eq(config_parse_listen("127.0.0.1:80", &a, NULL, 0), 0);
	cr_assert_eq(config_parse_listen("127.0.0.1:80", &b, NULL, 0), 0);
	cr_assert(config_same_listen(&a, &b));
	cr_assert_eq(config_parse_listen("127.0.0.1:81", &b, NULL, 0), 0);
	cr_assert_not(config_same_listen(&a, &b));
	cr_assert_eq(config_parse_listen("127.0.0.2:80", &b, NULL, 0), 0);
	cr_assert_not(config_same_listen(&a, &b));
	cr_assert_eq(config_parse_listen("[::1]:80", &b, NULL, 0), 0);
	cr_assert_not(config_same_listen(&a, &b));
	cr_assert_eq(config_parse_listen("[0::1]:80", &a, NULL, 0), 0);
	cr_assert(config_same_listen(&a, &b), "same address, other text");
}
