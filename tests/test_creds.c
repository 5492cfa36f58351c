/* creds room: the credential chain over injected environments and shared
   files written under build/ (each test removes its own); the precedence of
   the sources, profile selection, the INI rules, role chains as plans,
   credential_process, ECS and IMDSv2 requests and bodies, STS requests and
   responses, expiry and refresh, errors that name the file and the line,
   and secrets that never reach the logger. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- an injected environment ---- */

typedef struct cr_env {
    const char *name[24];
    const char *value[24];
    int n;
} cr_env;

static const char *cr_getenv(const char *name, void *user_data) {
    const cr_env *e = (const cr_env *)user_data;
    int i;
    for (i = 0; i < e->n; i++)
        if (strcmp(e->name[i], name) == 0) return e->value[i];
    return NULL;
}

static void cr_set(cr_env *e, const char *name, const char *value) {
    e->name[e->n] = name;
    e->value[e->n] = value;
    e->n++;
}

/* ---- a logger that keeps every message ---- */

typedef struct cr_log {
    char text[8192];
    size_t len;
    int count;
} cr_log;

static void cr_log_fn(const char *tag, uint32_t level, uint32_t item, const char *msg, uint32_t line,
                      void *user_data) {
    cr_log *l = (cr_log *)user_data;
    size_t n;
    (void)level; (void)item; (void)line;
    l->count++;
    n = strlen(tag);
    if (l->len + n + 2 < sizeof l->text) memcpy(l->text + l->len, tag, n), l->len += n;
    n = msg ? strlen(msg) : 0;
    if (l->len + n + 2 < sizeof l->text) memcpy(l->text + l->len, msg, n), l->len += n;
    l->text[l->len++] = '\n';
    l->text[l->len] = '\0';
}

/* ---- files under build/ ---- */

static void cr_write(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        CHECK(!"cannot write a test file under build/");
        return;
    }
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

typedef struct cr_case {
    cr_env env;
    cr_log log;
    ssmb_creds_desc desc;
    char cred_path[256], conf_path[256];
} cr_case;

/* A desc over an empty environment and the two files (NULL text: no file). */
static void cr_setup(cr_case *c, const char *name, const char *credentials, const char *config) {
    memset(c, 0, sizeof *c);
    snprintf(c->cred_path, sizeof c->cred_path, "build/creds-%s-credentials", name);
    snprintf(c->conf_path, sizeof c->conf_path, "build/creds-%s-config", name);
    remove(c->cred_path);
    remove(c->conf_path);
    if (credentials) cr_write(c->cred_path, credentials);
    if (config) cr_write(c->conf_path, config);
    c->desc.getenv_fn = cr_getenv;
    c->desc.getenv_user_data = &c->env;
    c->desc.logger.log_fn = cr_log_fn;
    c->desc.logger.user_data = &c->log;
    c->desc.credentials_file = c->cred_path;
    c->desc.config_file = c->conf_path;
    c->desc.no_remote = 1;
}

static void cr_teardown(cr_case *c) {
    remove(c->cred_path);
    remove(c->conf_path);
}

static ssmb_creds_result cr_res;

/* ---- dates, expiry, refresh ---- */

SSMB_TEST(creds_time_parse) {
    int64_t t = 0;
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T12:00:00Z", 20, &t), SSMB_OK);
    CHECK_EQ_INT(t, 1714564800);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T12:00:00.123456Z", 27, &t), SSMB_OK);
    CHECK_EQ_INT(t, 1714564800);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T14:00:00+02:00", 25, &t), SSMB_OK);
    CHECK_EQ_INT(t, 1714564800);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T06:30:00.5-0530", 26, &t), SSMB_OK);
    CHECK_EQ_INT(t, 1714564800);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T13:00:00+01", 22, &t), SSMB_OK);
    CHECK_EQ_INT(t, 1714564800);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T12:00:00", 19, &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01 12:00:00Z", 20, &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-02-30T12:00:00Z", 20, &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T12:00:00.Z", 21, &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T12:00:00+24:00", 25, &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_time_parse("2024-05-01T12:00:00Zjunk", 24, &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_time_parse("tomorrow", 8, &t), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_time_parse(NULL, 0, &t), SSMB_ERR_INVALID_ARG);
}

SSMB_TEST(creds_refresh_rule) {
    ssmb_creds c;
    int64_t exp = 1714564800;
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp), 1); /* empty */
    strcpy(c.access_key_id, "AKIDEXAMPLE");
    strcpy(c.secret_access_key, "secret");
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp + 999999), 0); /* long-term keys */
    c.has_expiration = 1;
    c.expiration = exp;
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp - 3600), 0);
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp - 301), 0);
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp - 300), 1); /* default: 5 minutes before */
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp + 10), 1);
    c.refresh_before_s = 900;
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp - 901), 0);
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp - 899), 1);
    /* a session resumed an hour in: credentials from a 1-hour role expire */
    c.refresh_before_s = 0;
    c.expiration = exp + 3600;
    CHECK_EQ_INT(ssmb_creds_needs_refresh(&c, exp + 3600 - 200), 1);
    CHECK_EQ_INT(ssmb_creds_needs_refresh(NULL, exp), 1);
    ssmb_creds_wipe(&c);
    CHECK_EQ_INT(c.access_key_id[0], 0);
}

/* ---- the sources and their order ---- */

static const char cr_profile_file[] =
    "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = PROFSECRET\n";

SSMB_TEST(creds_precedence_table) {
    static cr_case c;
    /* each row adds a higher source; the highest wins */
    struct row { const char *what; ssmb_creds_source source; ssmb_creds_step step; } rows[6] = {
        {"imds", SSMB_CREDS_SOURCE_IMDS, SSMB_CREDS_STEP_IMDS},
        {"ecs", SSMB_CREDS_SOURCE_ECS, SSMB_CREDS_STEP_ECS},
        {"profile", SSMB_CREDS_SOURCE_PROFILE, SSMB_CREDS_STEP_READY},
        {"webid", SSMB_CREDS_SOURCE_ENV_WEB_IDENTITY, SSMB_CREDS_STEP_WEB_IDENTITY},
        {"env", SSMB_CREDS_SOURCE_ENV, SSMB_CREDS_STEP_READY},
        {"explicit", SSMB_CREDS_SOURCE_EXPLICIT, SSMB_CREDS_STEP_READY},
    };
    int i;
    for (i = 0; i < 6; i++) {
        cr_setup(&c, "prec", i >= 2 ? cr_profile_file : NULL, NULL);
        c.desc.no_remote = 0;
        if (i >= 1) cr_set(&c.env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc");
        if (i >= 3) {
            cr_set(&c.env, "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web");
            cr_set(&c.env, "AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token");
        }
        if (i >= 4) {
            cr_set(&c.env, "AWS_ACCESS_KEY_ID", "AKIDENV");
            cr_set(&c.env, "AWS_SECRET_ACCESS_KEY", "ENVSECRET");
            cr_set(&c.env, "AWS_SESSION_TOKEN", "ENVTOKEN");
        }
        if (i >= 5) {
            c.desc.explicit_creds.access_key_id = ssmb_str_c("AKIDEXPLICIT");
            c.desc.explicit_creds.secret_access_key = ssmb_str_c("EXPSECRET");
        }
        CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
        if (cr_res.source != rows[i].source || cr_res.step != rows[i].step) CHECK(!rows[i].what);
        cr_teardown(&c);
    }
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDEXPLICIT");
    CHECK_EQ_STR(cr_res.creds.secret_access_key, "EXPSECRET");
    CHECK_EQ_STR(cr_res.creds.session_token, "");
    CHECK_EQ_INT(cr_res.creds.refresh_before_s, 300);

    /* environment keys with the token */
    cr_setup(&c, "prec", cr_profile_file, NULL);
    cr_set(&c.env, "AWS_ACCESS_KEY_ID", "AKIDENV");
    cr_set(&c.env, "AWS_SECRET_ACCESS_KEY", "ENVSECRET");
    cr_set(&c.env, "AWS_SESSION_TOKEN", "ENVTOKEN");
    c.desc.refresh_before_s = 600;
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDENV");
    CHECK_EQ_STR(cr_res.creds.session_token, "ENVTOKEN");
    CHECK_EQ_INT(cr_res.creds.refresh_before_s, 600);
    /* an access key alone in the environment is skipped */
    cr_teardown(&c);
    cr_setup(&c, "prec", cr_profile_file, NULL);
    cr_set(&c.env, "AWS_ACCESS_KEY_ID", "AKIDENV");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.source, SSMB_CREDS_SOURCE_PROFILE);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDPROFILE");
    cr_teardown(&c);

    /* nothing at all, and IMDS turned off */
    cr_setup(&c, "prec", NULL, NULL);
    c.desc.no_remote = 0;
    cr_set(&c.env, "AWS_EC2_METADATA_DISABLED", "TRUE");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(cr_res.error.code, SSMB_ERR_CREDENTIALS);
    CHECK(cr_res.error.reason != NULL);
    CHECK_EQ_STR(cr_res.error.file, "");
    cr_teardown(&c);
    /* explicit key without a secret */
    cr_setup(&c, "prec", NULL, NULL);
    c.desc.explicit_creds.access_key_id = ssmb_str_c("AKID");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_INVALID_ARG);
    cr_teardown(&c);
    CHECK_EQ_INT(ssmb_creds_resolve(NULL, &cr_res), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, NULL), SSMB_ERR_INVALID_ARG);
}

SSMB_TEST(creds_profile_selection) {
    static cr_case c;
    static const char creds[] =
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = S1\n"
        "[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = S2\n"
        "[prod]\naws_access_key_id = AKIDPROD\naws_secret_access_key = S3\n";
    static const char config[] = "[default]\nregion = us-east-1\n[profile dev]\nregion = eu-west-1\n";
    cr_setup(&c, "sel", creds, config);
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.profile, "default");
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDDEFAULT");
    CHECK_EQ_STR(cr_res.region, "us-east-1");
    cr_set(&c.env, "AWS_PROFILE", "dev");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.profile, "dev");
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDDEV");
    CHECK_EQ_STR(cr_res.region, "eu-west-1");
    c.desc.profile = "prod"; /* the desc wins over AWS_PROFILE */
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDPROD");
    CHECK_EQ_STR(cr_res.region, "");
    c.desc.profile = "nosuch"; /* a named profile must exist */
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "");
    cr_teardown(&c);
    /* the default profile missing: the chain goes on to IMDS */
    cr_setup(&c, "sel", "[other]\naws_access_key_id = A\naws_secret_access_key = B\n", NULL);
    c.desc.no_remote = 0;
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.step, SSMB_CREDS_STEP_IMDS);
    cr_teardown(&c);
}

SSMB_TEST(creds_shared_file_rules) {
    static cr_case c;
    static const char creds[] =
        "# a comment\r\n"
        "; another\r\n"
        "\r\n"
        "  [ default ]   # trailing comment\r\n"
        "aws_access_key_id=AKIDCREDS\r\n"
        "\taws_session_token_sub = ignored\r\n"
        "[team]\n"
        "aws_secret_access_key = CREDSSECRET ; inline comment\n";
    static const char config[] =
        "[default]\n"
        "aws_access_key_id = AKIDCONFIG\n"
        "aws_secret_access_key = CONFIGSECRET\n"
        "s3 =\n"
        "  max_concurrent_requests = 20\n"
        "  region = nested-must-not-win\n"
        "region = ap-south-1\n"
        "[sso-session corp]\n"
        "region = not-a-profile\n"
        "[team]\n"
        "region = not-the-team-profile\n"
        "[profile team]\n"
        "aws_access_key_id = AKIDTEAM\n"
        "aws_session_token = TEAMTOKEN#not-a-comment\n"
        "[profile   spaced]\n"
        "aws_access_key_id = AKIDSPACED\n"
        "aws_secret_access_key = SPACEDSECRET\n";
    cr_setup(&c, "rules", creds, config);
    /* "  [ default ]" is indented: a continuation line, so it is an error here */
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(cr_res.error.line, 4);
    cr_teardown(&c);
    cr_setup(&c, "rules", strstr(creds, "[ default ]"), config); /* from "[ default ]" on */
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    /* the credentials file wins key by key; the config file fills the rest */
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDCREDS");
    CHECK_EQ_STR(cr_res.creds.secret_access_key, "CONFIGSECRET");
    CHECK_EQ_STR(cr_res.region, "ap-south-1");
    c.desc.profile = "team";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDTEAM");
    CHECK_EQ_STR(cr_res.creds.secret_access_key, "CREDSSECRET");
    CHECK_EQ_STR(cr_res.creds.session_token, "TEAMTOKEN#not-a-comment");
    CHECK_EQ_STR(cr_res.region, "");
    c.desc.profile = "spaced";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDSPACED");
    c.desc.profile = "corp"; /* an sso-session section is not a profile */
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    cr_teardown(&c);
    /* "[profile x]" in the credentials file names a profile "profile x": read past */
    cr_setup(&c, "rules", "[profile dev]\naws_access_key_id = A\naws_secret_access_key = B\n", NULL);
    c.desc.profile = "dev";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    cr_teardown(&c);

    /* paths from the environment, and ~ from HOME */
    cr_setup(&c, "rules", NULL, NULL);
    mkdir("build/creds-home", 0700);
    mkdir("build/creds-home/.aws", 0700);
    cr_write("build/creds-home/.aws/credentials",
             "[default]\naws_access_key_id = AKIDHOME\naws_secret_access_key = H\n");
    c.desc.credentials_file = NULL;
    c.desc.config_file = NULL;
    cr_set(&c.env, "HOME", "build/creds-home");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDHOME");
    cr_write(c.cred_path, "[default]\naws_access_key_id = AKIDVAR\naws_secret_access_key = V\n");
    cr_set(&c.env, "AWS_SHARED_CREDENTIALS_FILE", c.cred_path);
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDVAR");
    c.env.value[c.env.n - 1] = "~/.aws/credentials";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDHOME");
    remove("build/creds-home/.aws/credentials");
    rmdir("build/creds-home/.aws");
    rmdir("build/creds-home");
    cr_teardown(&c);
}

SSMB_TEST(creds_malformed_file_names_file_and_line) {
    static cr_case c;
    struct bad { const char *text; uint32_t line; const char *reason_part; } cases[] = {
        {"[default]\naws_access_key_id = A\njunk line\n", 3, "key = value"},
        {"aws_access_key_id = A\n[default]\n", 1, "before any section"},
        {"[default\naws_access_key_id = A\n", 1, "without ']'"},
        {"[default] x\n", 1, "after ']'"},
        {"[]\n", 1, "empty section"},
        {"[default]\n= value\n", 2, "without a key"},
        {"[default]\n  nested = 1\n", 2, "indented"},
        {"[default]\nduration_seconds = 10\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n"
         "aws_access_key_id = A\naws_secret_access_key = B\n", 2, "duration_seconds"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_setup(&c, "bad", NULL, cases[i].text);
        CHECK(ssmb_creds_resolve(&c.desc, &cr_res) < 0);
        CHECK_EQ_STR(cr_res.error.file, c.conf_path);
        CHECK_EQ_INT(cr_res.error.line, cases[i].line);
        if (!cr_res.error.reason || !strstr(cr_res.error.reason, cases[i].reason_part))
            ssmbt_fail(__FILE__, __LINE__, cr_res.error.reason ? cr_res.error.reason : "no reason");
        cr_teardown(&c);
    }
    /* a NUL byte, and a file over the limit */
    cr_setup(&c, "bad", NULL, NULL);
    {
        FILE *f = fopen(c.cred_path, "wb");
        fwrite("[default]\nx = a\0b\n", 1, 18, f);
        fclose(f);
    }
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_MALFORMED);
    CHECK_EQ_STR(cr_res.error.file, c.cred_path);
    CHECK_EQ_INT(cr_res.error.line, 2);
    cr_write(c.cred_path, cr_profile_file);
    c.desc.max_file_size = 20;
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_LIMIT);
    CHECK_EQ_STR(cr_res.error.file, c.cred_path);
    CHECK_EQ_INT(cr_res.error.line, 0);
    cr_teardown(&c);
    /* a value too long for its field */
    {
        static char big[3000];
        memset(big, 0, sizeof big);
        strcpy(big, "[default]\n\naws_access_key_id = ");
        memset(big + strlen(big), 'K', 200);
        strcat(big, "\naws_secret_access_key = S\n");
        cr_setup(&c, "bad", big, NULL);
        CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_LIMIT);
        CHECK_EQ_INT(cr_res.error.line, 3);
        CHECK_EQ_STR(cr_res.error.file, c.cred_path);
        cr_teardown(&c);
    }
    /* partial keys */
    cr_setup(&c, "bad", "[default]\n\naws_secret_access_key = S\n", NULL);
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(cr_res.error.line, 3);
    cr_teardown(&c);
}

/* ---- role chains, web identity, credential_process ---- */

SSMB_TEST(creds_role_chain_plan) {
    static cr_case c;
    static const char config[] =
        "[profile top]\n"
        "role_arn = arn:aws:iam::111111111111:role/top\n"
        "source_profile = middle\n"
        "role_session_name = me@example\n"
        "external_id = ext-1\n"
        "duration_seconds = 1800\n"
        "region = us-west-2\n"
        "[profile middle]\n"
        "role_arn = arn:aws:iam::222222222222:role/middle\n"
        "source_profile = base\n"
        "[profile base]\n"
        "aws_access_key_id = AKIDBASE\n"
        "aws_secret_access_key = BASESECRET\n"
        "[profile selfie]\n"
        "role_arn = arn:aws:iam::333333333333:role/self\n"
        "source_profile = selfie\n"
        "aws_access_key_id = AKIDSELF\n"
        "aws_secret_access_key = SELFSECRET\n"
        "[profile fromenv]\n"
        "role_arn = arn:aws:iam::444444444444:role/env\n"
        "credential_source = Environment\n"
        "[profile fromec2]\n"
        "role_arn = arn:aws:iam::444444444444:role/ec2\n"
        "credential_source = Ec2InstanceMetadata\n"
        "[profile fromecs]\n"
        "role_arn = arn:aws:iam::444444444444:role/ecs\n"
        "credential_source = EcsContainer\n"
        "[profile viaweb]\n"
        "role_arn = arn:aws:iam::555555555555:role/outer\n"
        "source_profile = web\n"
        "[profile web]\n"
        "role_arn = arn:aws:iam::555555555555:role/web\n"
        "web_identity_token_file = /var/run/secrets/token\n"
        "role_session_name = websess\n"
        "[profile viaproc]\n"
        "role_arn = arn:aws:iam::666666666666:role/proc\n"
        "source_profile = proc\n"
        "[profile proc]\n"
        "credential_process = /usr/bin/get-creds --profile \"x y\"\n";
    cr_setup(&c, "chain", NULL, config);
    c.desc.profile = "top";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.step, SSMB_CREDS_STEP_READY);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDBASE");
    CHECK_EQ_INT(cr_res.role_count, 2);
    CHECK_EQ_STR(cr_res.roles[0].role_arn, "arn:aws:iam::222222222222:role/middle");
    CHECK_EQ_STR(cr_res.roles[0].session_name, "ssmbridge-session");
    CHECK_EQ_STR(cr_res.roles[0].profile, "middle");
    CHECK_EQ_INT(cr_res.roles[0].duration_s, 3600);
    CHECK_EQ_STR(cr_res.roles[1].role_arn, "arn:aws:iam::111111111111:role/top");
    CHECK_EQ_STR(cr_res.roles[1].session_name, "me@example");
    CHECK_EQ_STR(cr_res.roles[1].external_id, "ext-1");
    CHECK_EQ_INT(cr_res.roles[1].duration_s, 1800);
    CHECK_EQ_STR(cr_res.region, "us-west-2");

    c.desc.profile = "selfie";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.access_key_id, "AKIDSELF");
    CHECK_EQ_INT(cr_res.role_count, 1);

    c.desc.profile = "fromenv";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(cr_res.error.line, 21);
    c.desc.profile = "fromec2";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.step, SSMB_CREDS_STEP_IMDS);
    CHECK_EQ_INT(cr_res.role_count, 1);
    CHECK_EQ_STR(cr_res.imds.host, "169.254.169.254");
    c.desc.profile = "fromecs";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    cr_set(&c.env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/creds");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.step, SSMB_CREDS_STEP_ECS);
    CHECK_EQ_STR(cr_res.ecs.url, "http://169.254.170.2/creds");
    CHECK_EQ_STR(cr_res.roles[0].role_arn, "arn:aws:iam::444444444444:role/ecs");
    c.desc.profile = "viaweb";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.step, SSMB_CREDS_STEP_WEB_IDENTITY);
    CHECK_EQ_STR(cr_res.web_identity.role_arn, "arn:aws:iam::555555555555:role/web");
    CHECK_EQ_STR(cr_res.web_identity.token_file, "/var/run/secrets/token");
    CHECK_EQ_STR(cr_res.web_identity.session_name, "websess");
    CHECK_EQ_INT(cr_res.role_count, 1);
    CHECK_EQ_STR(cr_res.roles[0].role_arn, "arn:aws:iam::555555555555:role/outer");
    c.desc.profile = "viaproc";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.step, SSMB_CREDS_STEP_PROCESS);
    CHECK_EQ_STR(cr_res.process_command, "/usr/bin/get-creds --profile \"x y\"");
    CHECK_EQ_INT(cr_res.role_count, 1);
    c.env.n = 0;
    cr_set(&c.env, "AWS_ACCESS_KEY_ID", "AKIDENV");
    cr_set(&c.env, "AWS_SECRET_ACCESS_KEY", "ENVSECRET");
    c.desc.profile = "fromenv"; /* env keys come first in the chain anyway */
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.source, SSMB_CREDS_SOURCE_ENV);
    cr_teardown(&c);
}

SSMB_TEST(creds_role_chain_errors) {
    static cr_case c;
    static const char config[] =
        "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"          /* 1-3 */
        "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = c\n"          /* 4-6 */
        "[profile c]\nrole_arn = arn:aws:iam::1:role/c\nsource_profile = a\n"          /* 7-9 */
        "[profile lonely]\nrole_arn = arn:aws:iam::1:role/l\n"                         /* 10-11 */
        "[profile both]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = k\ncredential_source = Environment\n"
        "[profile k]\naws_access_key_id = AK\naws_secret_access_key = SK\n"            /* 16-18 */
        "[profile ghost]\nrole_arn = arn:aws:iam::1:role/g\nsource_profile = nowhere\n" /* 19-21 */
        "[profile empty]\nregion = x\n"                                                /* 22-23 */
        "[profile toempty]\nrole_arn = arn:aws:iam::1:role/e\nsource_profile = empty\n" /* 24-26 */
        "[profile d1]\nrole_arn = arn:aws:iam::1:role/d1\nsource_profile = d2\n"       /* 27-29 */
        "[profile d2]\nrole_arn = arn:aws:iam::1:role/d2\nsource_profile = d3\n"       /* 30-32 */
        "[profile d3]\nrole_arn = arn:aws:iam::1:role/d3\nsource_profile = k\n"        /* 33-35 */
        "[profile weird]\nrole_arn = arn:aws:iam::1:role/w\ncredential_source = Moon\n"; /* 36-38 */
    cr_setup(&c, "chainerr", NULL, config);
    c.desc.profile = "a";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK(strstr(cr_res.error.reason, "loops") != NULL);
    CHECK_EQ_INT(cr_res.error.line, 9);
    CHECK_EQ_STR(cr_res.error.file, c.conf_path);
    CHECK_EQ_INT(cr_res.role_count, 0); /* the result is wiped on failure */
    c.desc.profile = "lonely";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(cr_res.error.line, 11);
    c.desc.profile = "both";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(cr_res.error.line, 15);
    c.desc.profile = "ghost";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(cr_res.error.line, 21);
    c.desc.profile = "toempty";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(cr_res.error.line, 26);
    c.desc.profile = "weird";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(cr_res.error.line, 38);
    c.desc.profile = "d1";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.role_count, 3);
    CHECK_EQ_STR(cr_res.roles[0].role_arn, "arn:aws:iam::1:role/d3");
    CHECK_EQ_STR(cr_res.roles[2].role_arn, "arn:aws:iam::1:role/d1");
    c.desc.max_chain_depth = 2; /* the depth limit */
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK(strstr(cr_res.error.reason, "deeper") != NULL);
    CHECK_EQ_INT(cr_res.error.line, 35);
    c.desc.max_chain_depth = 3;
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    cr_teardown(&c);
}

SSMB_TEST(creds_web_identity_sources) {
    static cr_case c;
    cr_setup(&c, "webid", NULL, NULL);
    cr_set(&c.env, "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pod");
    cr_set(&c.env, "AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks/token");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.source, SSMB_CREDS_SOURCE_ENV_WEB_IDENTITY);
    CHECK_EQ_INT(cr_res.step, SSMB_CREDS_STEP_WEB_IDENTITY);
    CHECK_EQ_STR(cr_res.web_identity.session_name, "ssmbridge-session");
    cr_set(&c.env, "AWS_ROLE_SESSION_NAME", "pod-7");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.web_identity.session_name, "pod-7");
    CHECK_EQ_STR(cr_res.web_identity.token_file, "/var/run/secrets/eks/token");
    CHECK_EQ_INT(cr_res.web_identity.duration_s, 3600);
    cr_teardown(&c);
    /* the token file helper */
    cr_write("build/creds-token", "eyJhbGciOi.payload.sig\n\n");
    {
        char tok[64];
        size_t n = 0;
        CHECK_EQ_INT(ssmb_creds_read_token_file("build/creds-token", tok, sizeof tok, &n), SSMB_OK);
        CHECK_EQ_STR(tok, "eyJhbGciOi.payload.sig");
        CHECK_EQ_INT(n, 22);
        CHECK_EQ_INT(ssmb_creds_read_token_file("build/creds-token", tok, 10, &n), SSMB_ERR_LIMIT);
        CHECK_EQ_INT(ssmb_creds_read_token_file("build/creds-no-such-token", tok, sizeof tok, &n), SSMB_ERR_IO);
    }
    remove("build/creds-token");
}

SSMB_TEST(creds_process_output) {
    ssmb_creds out;
    const char *good = "{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC\", \"SecretAccessKey\": \"PROC\\/SECRET\","
                       " \"SessionToken\": \"PTOKEN\", \"Expiration\": \"2024-05-01T12:00:00.000Z\"}";
    const char *cases[][2] = {
        {"{\"Version\": 1, \"SecretAccessKey\": \"S\"}", "json"},
        {"{\"Version\": 1, \"AccessKeyId\": \"A\"}", "json"},
        {"{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\"}", "json"},
        {"{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\"}", "unsupported"},
        {"{\"Version\": \"1\", \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\"}", "json"},
        {"{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\", \"Expiration\": \"soon\"}", "date"},
        {"{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\", \"Expiration\": 12}", "json"},
        {"{\"Version\": 1, \"AccessKeyId\": 5, \"SecretAccessKey\": \"S\"}", "json"},
        {"[1, 2]", "json"},
        {"{\"Version\": 1, \"AccessKeyId\": \"A\"", "json"},
        {"", "json"},
    };
    size_t i;
    CHECK_EQ_INT(ssmb_creds_process_parse(good, strlen(good), &out), SSMB_OK);
    CHECK_EQ_STR(out.access_key_id, "AKIDPROC");
    CHECK_EQ_STR(out.secret_access_key, "PROC/SECRET");
    CHECK_EQ_STR(out.session_token, "PTOKEN");
    CHECK_EQ_INT(out.has_expiration, 1);
    CHECK_EQ_INT(out.expiration, 1714564800);
    {
        const char *lt = "{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"SessionToken\":null}";
        CHECK_EQ_INT(ssmb_creds_process_parse(lt, strlen(lt), &out), SSMB_OK);
        CHECK_EQ_INT(out.has_expiration, 0);
        CHECK_EQ_STR(out.session_token, "");
    }
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ssmb_result want = !strcmp(cases[i][1], "json") ? SSMB_ERR_JSON
                           : !strcmp(cases[i][1], "date") ? SSMB_ERR_MALFORMED : SSMB_ERR_UNSUPPORTED;
        ssmb_result got = ssmb_creds_process_parse(cases[i][0], strlen(cases[i][0]), &out);
        if (got != want) {
            char m[160];
            snprintf(m, sizeof m, "case %u: %d", (unsigned)i, (int)got);
            ssmbt_fail(__FILE__, __LINE__, m);
        }
        CHECK_EQ_STR(out.access_key_id, ""); /* wiped */
    }
    {
        static char big[6000];
        size_t n;
        strcpy(big, "{\"Version\":1,\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"SessionToken\":\"");
        n = strlen(big);
        memset(big + n, 'T', 5000);
        strcpy(big + n + 5000, "\"}");
        CHECK_EQ_INT(ssmb_creds_process_parse(big, strlen(big), &out), SSMB_ERR_LIMIT);
    }
}

/* ---- ECS and IMDS ---- */

static ssmb_str cr_view(const char *p, size_t n) {
    ssmb_str v;
    v.ptr = p;
    v.len = n;
    return v;
}

SSMB_TEST(creds_ecs_requests_and_bodies) {
    static cr_case c;
    char buf[1024];
    size_t n = 0;
    ssmb_creds out;
    const char *body = "{\"AccessKeyId\":\"ASIAECS\",\"SecretAccessKey\":\"ECSSECRET\",\"Token\":\"ECSTOKEN\","
                       "\"Expiration\":\"2024-05-01T12:00:00Z\",\"RoleArn\":\"arn:aws:iam::1:role/task\"}";
    cr_setup(&c, "ecs", NULL, NULL);
    c.desc.no_remote = 0;
    cr_set(&c.env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/uuid-1");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.step, SSMB_CREDS_STEP_ECS);
    CHECK_EQ_STR(cr_res.ecs.url, "http://169.254.170.2/v2/credentials/uuid-1");
    CHECK_EQ_INT(ssmb_creds_ecs_request(&cr_res.ecs, ssmb_str_c(""), buf, sizeof buf, &n), SSMB_OK);
    CHECK_EQ_STR(buf, "GET /v2/credentials/uuid-1 HTTP/1.1\r\nHost: 169.254.170.2\r\n"
                      "Accept: application/json\r\n\r\n");
    c.env.n = 0;
    cr_set(&c.env, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:51679/creds?id=1");
    cr_set(&c.env, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "Basic abcd");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.ecs.host, "127.0.0.1");
    CHECK_EQ_INT(cr_res.ecs.port, 51679);
    CHECK_EQ_STR(cr_res.ecs.target, "/creds?id=1");
    CHECK_EQ_STR(cr_res.ecs.auth_token, "Basic abcd");
    CHECK_EQ_INT(ssmb_creds_ecs_request(&cr_res.ecs, ssmb_str_c(cr_res.ecs.auth_token), buf, sizeof buf, &n),
                 SSMB_OK);
    CHECK_EQ_STR(buf, "GET /creds?id=1 HTTP/1.1\r\nHost: 127.0.0.1:51679\r\nAccept: application/json\r\n"
                      "Authorization: Basic abcd\r\n\r\n");
    CHECK_EQ_INT(ssmb_creds_ecs_request(&cr_res.ecs, ssmb_str_c("x\r\nEvil: 1"), buf, sizeof buf, &n),
                 SSMB_ERR_INVALID_ARG);
    cr_set(&c.env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/ecs-token");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.ecs.auth_token_file, "/var/run/ecs-token");
    CHECK_EQ_STR(cr_res.ecs.auth_token, ""); /* the file wins */
    c.env.n = 0;
    cr_set(&c.env, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://evil.example.com/creds");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    c.env.value[0] = "https://creds.example.com/x";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.ecs.https, 1);
    CHECK_EQ_INT(cr_res.ecs.port, 443);
    c.env.value[0] = "http://[fd00:ec2::23]/get";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(ssmb_creds_ecs_request(&cr_res.ecs, ssmb_str_c(""), buf, sizeof buf, &n), SSMB_OK);
    CHECK(strstr(buf, "Host: [fd00:ec2::23]\r\n") != NULL);
    c.env.value[0] = "http://127.evil.example.com/x";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    c.env.value[0] = "http://127.0.0.9/x";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    c.env.value[0] = "ftp://127.0.0.1/x";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_MALFORMED);
    c.env.value[0] = "http://user@127.0.0.1/x";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_MALFORMED);
    c.env.value[0] = "http://127.0.0.1:99999/x";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_MALFORMED);
    cr_teardown(&c);

    CHECK_EQ_INT(ssmb_creds_http_parse(body, strlen(body), &out), SSMB_OK);
    CHECK_EQ_STR(out.access_key_id, "ASIAECS");
    CHECK_EQ_STR(out.session_token, "ECSTOKEN");
    CHECK_EQ_INT(out.expiration, 1714564800);
    {
        const char *bad = "{\"AccessKeyId\":\"ASIAECS\",\"Token\":\"T\"}";
        CHECK_EQ_INT(ssmb_creds_http_parse(bad, strlen(bad), &out), SSMB_ERR_JSON);
        bad = "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2024-13-01T00:00:00Z\"}";
        CHECK_EQ_INT(ssmb_creds_http_parse(bad, strlen(bad), &out), SSMB_ERR_MALFORMED);
    }
}

SSMB_TEST(creds_imds_requests_and_bodies) {
    static cr_case c;
    char buf[1024];
    size_t n = 0;
    ssmb_str role, b;
    uint32_t status = 0;
    ssmb_creds out;
    cr_setup(&c, "imds", NULL, NULL);
    c.desc.no_remote = 0;
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_INT(cr_res.source, SSMB_CREDS_SOURCE_IMDS);
    CHECK_EQ_INT(ssmb_creds_imds_token_request(&cr_res.imds, 0, buf, sizeof buf, &n), SSMB_OK);
    CHECK_EQ_STR(buf, "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                      "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n");
    CHECK_EQ_INT(n, strlen(buf));
    CHECK_EQ_INT(ssmb_creds_imds_token_request(&cr_res.imds, 60, buf, sizeof buf, &n), SSMB_OK);
    CHECK(strstr(buf, "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n") != NULL);
    CHECK_EQ_INT(ssmb_creds_imds_creds_request(&cr_res.imds, ssmb_str_c("TOKEN=="), ssmb_str_c(""), buf, sizeof buf,
                                               &n), SSMB_OK);
    CHECK_EQ_STR(buf, "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                      "X-aws-ec2-metadata-token: TOKEN==\r\n\r\n");
    CHECK_EQ_INT(ssmb_creds_imds_role_parse("my-role\nother\n", 14, &role), SSMB_OK);
    CHECK(role.len == 7 && memcmp(role.ptr, "my-role", 7) == 0);
    CHECK_EQ_INT(ssmb_creds_imds_creds_request(&cr_res.imds, ssmb_str_c("TOKEN=="), role, buf, sizeof buf, &n),
                 SSMB_OK);
    CHECK_EQ_STR(buf, "GET /latest/meta-data/iam/security-credentials/my-role HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                      "X-aws-ec2-metadata-token: TOKEN==\r\n\r\n");
    CHECK_EQ_INT(ssmb_creds_imds_creds_request(&cr_res.imds, ssmb_str_c("T"), ssmb_str_c("../x"), buf, sizeof buf,
                                               &n), SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_creds_imds_creds_request(&cr_res.imds, ssmb_str_c(""), role, buf, sizeof buf, &n),
                 SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_creds_imds_token_request(&cr_res.imds, 0, buf, 10, &n), SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ_INT(n, 102);
    CHECK_EQ_INT(ssmb_creds_imds_role_parse("\n", 1, &role), SSMB_ERR_CREDENTIALS);
    CHECK_EQ_INT(ssmb_creds_imds_role_parse("a/b\n", 4, &role), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_imds_role_parse("a\0b\n", 4, &role), SSMB_ERR_MALFORMED);
    CHECK_EQ_INT(ssmb_creds_imds_creds_request(&cr_res.imds, ssmb_str_c("T"), cr_view("a\0b", 3), buf,
                                               sizeof buf, &n), SSMB_ERR_INVALID_ARG);

    {
        static char full[512];
        const char *imds_body = "{\"Code\":\"Success\",\"LastUpdated\":\"2024-05-01T06:00:00Z\",\"Type\":\"AWS-HMAC\","
                           "\"AccessKeyId\":\"ASIAIMDS\",\"SecretAccessKey\":\"IMDSSECRET\",\"Token\":\"IT\","
                           "\"Expiration\":\"2024-05-01T12:00:00Z\"}";
        const char *resp = full;
        snprintf(full, sizeof full, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %u\r\n\r\n%s",
                 (unsigned)strlen(imds_body), imds_body);
        CHECK_EQ_INT(ssmb_creds_http_body(resp, strlen(resp) - 5, &status, &b), SSMB_AGAIN);
        CHECK_EQ_INT(ssmb_creds_http_body(resp, strlen(resp), &status, &b), SSMB_OK);
        CHECK_EQ_INT(status, 200);
        CHECK_EQ_INT(ssmb_creds_http_parse(b.ptr, b.len, &out), SSMB_OK);
        CHECK_EQ_STR(out.access_key_id, "ASIAIMDS");
        CHECK_EQ_STR(out.session_token, "IT");
        CHECK_EQ_INT(out.expiration, 1714564800);
        resp = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        CHECK_EQ_INT(ssmb_creds_http_body(resp, strlen(resp), &status, &b), SSMB_ERR_HTTP);
        CHECK_EQ_INT(status, 401);
        resp = "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\"}";
        CHECK_EQ_INT(ssmb_creds_http_parse(resp, strlen(resp), &out), SSMB_ERR_AWS_API);
    }
    /* endpoint override, IPv6 mode, turned off */
    cr_set(&c.env, "AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]:8080/");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.imds.host, "fd00:ec2::254");
    CHECK_EQ_INT(cr_res.imds.port, 8080);
    CHECK_EQ_INT(ssmb_creds_imds_token_request(&cr_res.imds, 0, buf, sizeof buf, &n), SSMB_OK);
    CHECK(strstr(buf, "Host: [fd00:ec2::254]:8080\r\n") != NULL);
    c.env.n = 0;
    cr_set(&c.env, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.imds.host, "fd00:ec2::254");
    cr_set(&c.env, "AWS_EC2_METADATA_DISABLED", "true");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    cr_teardown(&c);
}

/* ---- STS ---- */

SSMB_TEST(creds_sts_requests) {
    static char buf[8192];
    static ssmb_creds_web_identity w;
    static ssmb_creds_role role;
    static ssmb_creds base;
    size_t n = 0, need = 0;
    const char *body;
    memset(&w, 0, sizeof w);
    strcpy(w.role_arn, "arn:aws:iam::123456789012:role/pod role");
    strcpy(w.session_name, "s+1");
    CHECK_EQ_INT(ssmb_creds_sts_web_identity_request(&w, ssmb_str_c("a.b/c=d~_-"), "eu-west-1", buf, sizeof buf, &n),
                 SSMB_OK);
    CHECK_EQ_STR(buf, "POST / HTTP/1.1\r\nHost: sts.eu-west-1.amazonaws.com\r\n"
                      "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: 188\r\n\r\n"
                      "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
                      "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpod%20role&RoleSessionName=s%2B1"
                      "&WebIdentityToken=a.b%2Fc%3Dd~_-&DurationSeconds=3600");
    CHECK_EQ_INT(n, strlen(buf));
    body = strstr(buf, "\r\n\r\n") + 4;
    CHECK_EQ_INT(strlen(body), 188);
    CHECK(strstr(buf, "Authorization") == NULL); /* unsigned */
    CHECK_EQ_INT(ssmb_creds_sts_web_identity_request(&w, ssmb_str_c("tok"), "", buf, 50, &need),
                 SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ_INT(ssmb_creds_sts_web_identity_request(&w, ssmb_str_c("tok"), "", buf, sizeof buf, &n), SSMB_OK);
    CHECK_EQ_INT(need, n);
    CHECK(strstr(buf, "Host: sts.amazonaws.com\r\n") != NULL);
    CHECK_EQ_INT(ssmb_creds_sts_web_identity_request(&w, ssmb_str_c("tok"), "eu west", buf, sizeof buf, &n),
                 SSMB_ERR_INVALID_ARG);
    CHECK_EQ_INT(ssmb_creds_sts_web_identity_request(&w, ssmb_str_c(""), "", buf, sizeof buf, &n),
                 SSMB_ERR_INVALID_ARG);

    memset(&role, 0, sizeof role);
    strcpy(role.role_arn, "arn:aws:iam::123456789012:role/admin");
    strcpy(role.session_name, "me@example.com");
    strcpy(role.external_id, "a&b=c");
    role.duration_s = 900;
    memset(&base, 0, sizeof base);
    strcpy(base.access_key_id, "AKIDEXAMPLE");
    strcpy(base.secret_access_key, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    strcpy(base.session_token, "BASETOKEN");
    CHECK_EQ_INT(ssmb_creds_sts_assume_role_request(&role, &base, "us-east-1", 1714564800, buf, sizeof buf, &n),
                 SSMB_OK);
    CHECK_EQ_INT(n, strlen(buf));
    CHECK(strncmp(buf, "POST / HTTP/1.1\r\nHost: sts.us-east-1.amazonaws.com\r\n", 52) == 0);
    CHECK(strstr(buf, "\r\nX-Amz-Date: 20240501T120000Z\r\n") != NULL);
    CHECK(strstr(buf, "\r\nX-Amz-Security-Token: BASETOKEN\r\n") != NULL);
    CHECK(strstr(buf, "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/sts/aws4_request, "
                      "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=") != NULL);
    body = strstr(buf, "\r\n\r\n") + 4;
    CHECK_EQ_STR(body, "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fadmin"
                       "&RoleSessionName=me%40example.com&ExternalId=a%26b%3Dc&DurationSeconds=900");
    {
        char cl[64];
        snprintf(cl, sizeof cl, "\r\nContent-Length: %u\r\n", (unsigned)strlen(body));
        CHECK(strstr(buf, cl) != NULL);
    }
    CHECK(strstr(buf, base.secret_access_key) == NULL);
    /* the signature agrees with the signer run on the same request */
    {
        ssmb_http_header h[2];
        ssmb_sigv4_request req;
        ssmb_sigv4_params p;
        ssmb_sigv4_output so;
        char authz[512], want[600];
        size_t an = 0;
        h[0].name = ssmb_str_c("Host");
        h[0].value = ssmb_str_c("sts.us-east-1.amazonaws.com");
        h[1].name = ssmb_str_c("Content-Type");
        h[1].value = ssmb_str_c("application/x-www-form-urlencoded; charset=utf-8");
        memset(&req, 0, sizeof req);
        req.method = ssmb_str_c("POST");
        req.path = ssmb_str_c("/");
        req.headers = h;
        req.header_count = 2;
        req.body = body;
        req.body_len = strlen(body);
        memset(&p, 0, sizeof p);
        p.creds = ssmb_creds_view(&base);
        p.region = ssmb_str_c("us-east-1");
        p.service = ssmb_str_c("sts");
        p.time = 1714564800;
        CHECK_EQ_INT(ssmb_sigv4_sign(&req, &p, authz, sizeof authz, &an, &so), SSMB_OK);
        snprintf(want, sizeof want, "\r\nAuthorization: %s\r\n", authz);
        CHECK(strstr(buf, want) != NULL);
    }
    base.session_token[0] = '\0';
    CHECK_EQ_INT(ssmb_creds_sts_assume_role_request(&role, &base, "", 1714564800, buf, sizeof buf, &n), SSMB_OK);
    CHECK(strstr(buf, "X-Amz-Security-Token") == NULL);
    CHECK(strstr(buf, "Host: sts.amazonaws.com\r\n") != NULL);
    CHECK(strstr(buf, "/20240501/us-east-1/sts/aws4_request") != NULL);
    CHECK_EQ_INT(ssmb_creds_sts_assume_role_request(&role, &base, "", 1714564800, buf, 100, &need),
                 SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ_INT(need, n);
    base.secret_access_key[0] = '\0';
    CHECK_EQ_INT(ssmb_creds_sts_assume_role_request(&role, &base, "", 1714564800, buf, sizeof buf, &n),
                 SSMB_ERR_INVALID_ARG);
}

SSMB_TEST(creds_sts_responses) {
    ssmb_creds out;
    char code[64];
    const char *good =
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <AssumeRoleResult>\n"
        "    <SourceIdentity>DevUser123</SourceIdentity>\n"
        "    <AssumedRoleUser>\n"
        "      <Arn>arn:aws:sts::123456789012:assumed-role/demo/John</Arn>\n"
        "      <AssumedRoleId>ARO123EXAMPLE123:John</AssumedRoleId>\n"
        "    </AssumedRoleUser>\n"
        "    <Credentials>\n"
        "      <SessionToken>IQoJb3JpZ2luX2Vj&amp;x&#47;y&#x2B;</SessionToken>\n"
        "      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n"
        "      <Expiration>2024-05-01T12:00:00Z</Expiration>\n"
        "      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
        "    </Credentials>\n"
        "    <PackedPolicySize>8</PackedPolicySize>\n"
        "  </AssumeRoleResult>\n"
        "  <ResponseMetadata>\n"
        "    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n"
        "  </ResponseMetadata>\n"
        "</AssumeRoleResponse>\n";
    const char *err =
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <Error>\n    <Type>Sender</Type>\n    <Code>AccessDenied</Code>\n"
        "    <Message>User is not authorized &lt;x&gt;</Message>\n  </Error>\n"
        "  <RequestId>1</RequestId>\n</ErrorResponse>\n";
    const char *junk =
        "<AssumeRoleWithWebIdentityResponse><!-- a comment <Credentials> -->"
        "<AssumeRoleWithWebIdentityResult><Audience a='x>y'>client</Audience>"
        "<Credentials><Nested><AccessKeyId>WRONG</AccessKeyId><Deep><Deeper/></Deep></Nested>"
        "<AccessKeyId> ASIAWEB </AccessKeyId><SecretAccessKey>S</SecretAccessKey>"
        "<SessionToken>T</SessionToken><Expiration>2024-05-01T12:00:00.000Z</Expiration></Credentials>"
        "<Credentials><AccessKeyId>SECOND</AccessKeyId></Credentials>"
        "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
    size_t i;
    CHECK_EQ_INT(ssmb_creds_sts_parse(good, strlen(good), &out, code, sizeof code), SSMB_OK);
    CHECK_EQ_STR(out.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    CHECK_EQ_STR(out.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    CHECK_EQ_STR(out.session_token, "IQoJb3JpZ2luX2Vj&x/y+");
    CHECK_EQ_INT(out.has_expiration, 1);
    CHECK_EQ_INT(out.expiration, 1714564800);
    CHECK_EQ_INT(ssmb_creds_sts_parse(err, strlen(err), &out, code, sizeof code), SSMB_ERR_AWS_API);
    CHECK_EQ_STR(code, "AccessDenied");
    CHECK_EQ_STR(out.access_key_id, "");
    CHECK_EQ_INT(ssmb_creds_sts_parse(junk, strlen(junk), &out, NULL, 0), SSMB_OK);
    CHECK_EQ_STR(out.access_key_id, "ASIAWEB");
    /* every truncation of the good response fails cleanly */
    for (i = 0; i + 1 < strlen(good); i++) {
        ssmb_result r = ssmb_creds_sts_parse(good, i, &out, code, sizeof code);
        if (r == SSMB_OK) {
            CHECK(!"a truncated response parsed");
            break;
        }
        if (r != SSMB_ERR_TRUNCATED && r != SSMB_ERR_MALFORMED) CHECK_EQ_INT(r, SSMB_ERR_TRUNCATED);
    }
    CHECK_EQ_INT(ssmb_creds_sts_parse(good, 300, &out, code, sizeof code), SSMB_ERR_TRUNCATED);
    {
        const char *bad[] = {
            "<A><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey>"
            "<SessionToken>T</SessionToken></Credentials></B>",
            "<A><Credentials><AccessKeyId><![CDATA[A]]></AccessKeyId></Credentials></A>",
            "<!DOCTYPE a><A/>",
            "<A><Credentials><AccessKeyId x=\"1\">A</AccessKeyId></Credentials></A>",
            "<A><Credentials><AccessKeyId>A<b/></AccessKeyId></Credentials></A>",
            "<A><Credentials><AccessKeyId>&bogus;</AccessKeyId></Credentials></A>",
            "<A><Credentials><AccessKeyId>A<!-- c --></AccessKeyId></Credentials></A>",
            "<A><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey>"
            "<SessionToken>T</SessionToken><Expiration>later</Expiration></Credentials></A>",
            "<A><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey></Credentials></A>",
            "<A></A><B></B>",
            "text",
            "<A><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey>"
            "<SessionToken>T</SessionToken></Credentials></A>trailing",
        };
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            ssmb_result r = ssmb_creds_sts_parse(bad[i], strlen(bad[i]), &out, NULL, 0);
            if (r != SSMB_ERR_MALFORMED) {
                char m[64];
                snprintf(m, sizeof m, "bad case %u gave %d", (unsigned)i, (int)r);
                ssmbt_fail(__FILE__, __LINE__, m);
            }
        }
    }
    {
        static char deep[1024];
        strcpy(deep, "");
        for (i = 0; i < 20; i++) strcat(deep, "<a>");
        for (i = 0; i < 20; i++) strcat(deep, "</a>");
        CHECK_EQ_INT(ssmb_creds_sts_parse(deep, strlen(deep), &out, NULL, 0), SSMB_ERR_LIMIT);
    }
}

/* ---- secrets and memory ---- */

typedef struct cr_alloc {
    int allocs, frees;
    int leaked_secret;
} cr_alloc;

static void *cr_alloc_fn(size_t size, void *user_data) {
    ((cr_alloc *)user_data)->allocs++;
    return malloc(size);
}

static void cr_free_fn(void *p, size_t size, void *user_data) {
    cr_alloc *a = (cr_alloc *)user_data;
    size_t i;
    a->frees++;
    for (i = 0; i + 6 <= size; i++)
        if (memcmp((char *)p + i, "SECRET", 6) == 0) a->leaked_secret = 1;
    free(p);
}

SSMB_TEST(creds_secrets_never_logged) {
    static cr_case c;
    cr_alloc a;
    static const char creds[] =
        "[default]\naws_access_key_id = AKIDLOG\naws_secret_access_key = TOPSECRETKEY\n"
        "aws_session_token = TOPSECRETTOKEN\n"
        "[broken]\naws_secret_access_key = TOPSECRETKEY2\n";
    memset(&a, 0, sizeof a);
    cr_setup(&c, "log", creds, "[profile x]\nrole_arn = r\nsource_profile = x\n");
    c.desc.allocator.alloc_fn = cr_alloc_fn;
    c.desc.allocator.free_fn = cr_free_fn;
    c.desc.allocator.user_data = &a;
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    CHECK_EQ_STR(cr_res.creds.secret_access_key, "TOPSECRETKEY");
    c.desc.profile = "broken";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    CHECK(strstr(cr_res.error.reason, "TOPSECRET") == NULL);
    CHECK_EQ_STR(cr_res.creds.secret_access_key, "");
    c.desc.profile = "x";
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_CREDENTIALS);
    c.desc.profile = NULL;
    cr_set(&c.env, "AWS_ACCESS_KEY_ID", "AKIDENV");
    cr_set(&c.env, "AWS_SECRET_ACCESS_KEY", "TOPSECRETENV");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    c.desc.explicit_creds.access_key_id = ssmb_str_c("AKIDX");
    c.desc.explicit_creds.secret_access_key = ssmb_str_c("TOPSECRETX");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_OK);
    cr_write(c.cred_path, "[default]\naws_secret_access_key TOPSECRETBAD\n");
    c.desc.explicit_creds.access_key_id = ssmb_str_c("");
    CHECK_EQ_INT(ssmb_creds_resolve(&c.desc, &cr_res), SSMB_ERR_MALFORMED);
    CHECK(strstr(cr_res.error.reason, "TOPSECRET") == NULL);
    CHECK(c.log.count >= 5);
    CHECK(strstr(c.log.text, "TOPSECRET") == NULL);
    CHECK(strstr(c.log.text, "AKID") == NULL);
    /* one block per resolve, always given back, wiped first */
    CHECK_EQ_INT(a.allocs, 6);
    CHECK_EQ_INT(a.frees, 6);
    CHECK_EQ_INT(a.leaked_secret, 0);
    ssmb_creds_result_wipe(&cr_res);
    CHECK_EQ_INT(cr_res.source, 0);
    cr_teardown(&c);
    /* allocation failure */
    {
        ssmb_creds_desc d;
        memset(&d, 0, sizeof d);
        d.allocator.alloc_fn = cr_alloc_fn;
        CHECK_EQ_INT(ssmb_creds_resolve(&d, &cr_res), SSMB_ERR_INVALID_ARG);
    }
}
