/* ssmbridge.h - v0.1.0 - AWS Systems Manager Session Manager client in one header
   - MIT or public domain (Unlicense), see end of file

   DO THIS:
       #define SSMBRIDGE_IMPLEMENTATION
       #include "ssmbridge.h"
   in exactly ONE C or C++ file. Every other file includes "ssmbridge.h" alone.
   Link the TLS backend you compile in (default BearSSL: -lbearssl).

   FEATURE OVERVIEW
   ================
   ssmbridge speaks the AWS Systems Manager Session Manager protocol: the
   binary ClientMessage data channel over a WebSocket, the SigV4-signed AWS
   JSON API and everything in between. It is built in layers; stop at any:

     L0 primitives   pure functions over caller buffers: SHA-256 (portable C
                     and x86-64 SHA-NI, chosen at run time), HMAC-SHA256,
                     base64, hex, UUIDs, checked size math, AWS SigV4, JSON
                     (jsmn underneath) and the ClientMessage codec with its
                     payloads (acknowledge, handshake, size, flag, ...).
     L1 sans-I/O     the data channel, the connection, the API exchanges:
                     bytes in, bytes out, time passed in.
     L2 TLS          BearSSL (default), mbedTLS, or none.
     L3 engine       non-blocking sockets driven by the host's poll loop.

   Nothing blocks except ssmb_engine_wait(), which only the host calls.
   Nothing allocates except through the allocator you give, and only when
   an object is created or opened. Nothing prints. There is no global state
   (one stated exception: see THREADING).

   QUICK START: PRIMITIVES
   =======================
       uint8_t digest[32];
       ssmb_sha256("abc", 3, digest);

       // A ClientMessage carrying keystrokes:
       ssmb_msg m = {0};
       m.type = ssmb_str_c(SSMB_MSG_INPUT_STREAM_DATA);
       m.schema_version = 1;
       m.created_date_ms = now_ms_since_epoch;
       m.sequence_number = next_seq++;
       m.message_id = some_uuid;               // ssmb_uuid_v4(random16, &id)
       m.payload_type = SSMB_PAYLOAD_OUTPUT;
       m.payload = (const uint8_t *)"ls\r"; m.payload_size = 3;
       uint8_t frame[256]; size_t n;
       if (ssmb_msg_encode(&m, frame, sizeof frame, &n) == SSMB_OK) send_binary(frame, n);

   COMPILE-TIME OPTIONS
   ====================
     SSMBRIDGE_IMPLEMENTATION  compile the implementation (one TU)
     SSMBRIDGE_STATIC          every function static (implementation in the same TU)
     SSMB_API / SSMB_APIDEF    declaration / definition decorators (default extern / empty)
     SSMB_ASSERT(c)            API-misuse assertions (default assert(); never for network input)
     SSMB_MALLOC / SSMB_FREE   default allocator, both or neither (default malloc/free)
     SSMB_USE_BEARSSL          TLS through BearSSL (the default)
     SSMB_USE_MBEDTLS          TLS through mbedTLS
     SSMB_NO_TLS               no TLS library: the host's transport secures the bytes
     SSMB_NO_SOCKETS           leave out the L3 engine (L0 and L1 only)
     SSMB_NO_SHA_NI            leave out the x86-64 SHA-NI SHA-256 path

   MEMORY
   ======
   L0 functions never allocate: they write into buffers you pass. A function
   that writes text or bytes returns SSMB_ERR_BUFFER_TOO_SMALL when the buffer
   is short and, where it has a size out-parameter, stores the size it needs.

   TIME AND RANDOMNESS
   ===================
   No L0 function reads a clock or a random source. SigV4 takes the signing
   time as an argument; UUIDs are made from 16 random bytes you supply.

   THREADING
   =========
   No threads are created. L0 functions are reentrant. The one static the
   library ever writes is a memo of the CPU's features (reading them with
   CPUID costs microseconds under virtualisation, more than hashing a
   message): it is written with the same value by every writer through an
   atomic store, and ssmb_sha256_init_impl() bypasses it entirely.

   ERRORS AND LOGGING
   ==================
   Every fallible function returns ssmb_result: 0 is success, positive values
   are "try again" (SSMB_AGAIN) or "closed" (SSMB_CLOSED), negative values are
   errors. ssmb_result_str() names each one. Malformed input from the network
   always gets a negative result, never a crash, an over-read, an abort or
   output on a terminal.

   LIMITS
   ======
     SSMB_SIGV4_MAX_HEADERS    headers a SigV4 request may sign (default 64)
     SSMB_SIGV4_MAX_QUERY      query parameters a SigV4 request may carry (default 128)
     SSMB_JSON_MAX_DEPTH       nesting depth of the JSON writer (default 32)

   RECENT CHANGES
   ==============
     0.1.0  L0 primitives: SHA-256, HMAC, base64, hex, UUID, SigV4, JSON,
            ClientMessage codec and payloads.

   LICENSE
   =======
   See the end of the file.
*/
#ifndef SSMBRIDGE_H_INCLUDED
#define SSMBRIDGE_H_INCLUDED
// >>api

#include <stddef.h>
#include <stdint.h>

#define SSMB_VERSION_MAJOR 0
#define SSMB_VERSION_MINOR 1
#define SSMB_VERSION_PATCH 0
#define SSMB_VERSION_STRING "0.1.0"

#if defined(SSMBRIDGE_STATIC)
#  if defined(__GNUC__) || defined(__clang__)
#    define SSMB__STATIC_ATTR static __attribute__((unused))
#  else
#    define SSMB__STATIC_ATTR static
#  endif
#  ifndef SSMB_API
#    define SSMB_API SSMB__STATIC_ATTR
#  endif
#  ifndef SSMB_APIDEF
#    define SSMB_APIDEF SSMB__STATIC_ATTR
#  endif
#else
#  ifndef SSMB_API
#    define SSMB_API extern
#  endif
#  ifndef SSMB_APIDEF
#    define SSMB_APIDEF
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- results ------------------------------------------------------------
   Sign-split: 0 ok, positive = not an error, negative = error. Numbers are
   stable; the enum is 32 bits wide everywhere. */
typedef enum ssmb_result {
    SSMB_OK = 0,
    SSMB_AGAIN = 1,                 /* no progress until I/O or a deadline */
    SSMB_CLOSED = 2,                /* an orderly close has completed */

    SSMB_ERR_INVALID_ARG = -1,      /* API misuse: NULL where not allowed, bad value */
    SSMB_ERR_INVALID_STATE = -2,    /* call not allowed in the object's state */
    SSMB_ERR_NOMEM = -3,            /* the allocator returned NULL */
    SSMB_ERR_BUFFER_TOO_SMALL = -4, /* output buffer short; needed size in the out-parameter */
    SSMB_ERR_LIMIT = -5,            /* input exceeds a configured or compile-time maximum */
    SSMB_ERR_UNSUPPORTED = -6,      /* feature not compiled in or not available on this CPU */
    SSMB_ERR_OVERFLOW = -7,         /* size arithmetic would overflow */
    SSMB_ERR_TRUNCATED = -8,        /* input ends before a complete item */
    SSMB_ERR_MALFORMED = -9,        /* bad encoding: base64, hex, UUID, UTF-8, number */

    SSMB_ERR_IO = -20,
    SSMB_ERR_DNS = -21,
    SSMB_ERR_TIMEOUT = -22,
    SSMB_ERR_CONNECT = -23,
    SSMB_ERR_PROXY = -24,

    SSMB_ERR_TLS = -30,
    SSMB_ERR_TLS_CERT = -31,
    SSMB_ERR_NO_RANDOM = -32,

    SSMB_ERR_HTTP = -40,
    SSMB_ERR_WS_PROTOCOL = -41,
    SSMB_ERR_SSM_PROTOCOL = -42,    /* a ClientMessage or payload breaks the protocol */
    SSMB_ERR_JSON = -43,            /* JSON malformed, or a key missing or of the wrong type */
    SSMB_ERR_AUTH = -44,
    SSMB_ERR_DIGEST = -45,          /* ClientMessage PayloadDigest does not match the payload */
    SSMB_ERR_AWS_API = -46,         /* the AWS API answered with an error body */
    SSMB_ERR_CREDENTIALS = -47,

    SSMB_ERR_INTERNAL = -99,
    SSMB__RESULT_FORCE_32 = 0x7fffffff
} ssmb_result;

/* A static, never-NULL name for a result ("SSMB_ERR_DIGEST: ..."). */
SSMB_API const char *ssmb_result_str(ssmb_result r);
/* The library version, SSMB_VERSION_STRING. */
SSMB_API const char *ssmb_version(void);

/* ---- small value types --------------------------------------------------- */

/* A view of bytes owned by someone else; not NUL-terminated. */
typedef struct ssmb_str {
    const char *ptr;
    size_t len;
} ssmb_str;

/* A view of a NUL-terminated C string (NULL gives the empty view). */
SSMB_API ssmb_str ssmb_str_c(const char *s);
/* 1 when the view equals the C string exactly. */
SSMB_API int ssmb_str_eq(ssmb_str a, const char *s);

/* A UUID in RFC 4122 byte order (the order of the hex digits in its text). */
typedef struct ssmb_uuid {
    uint8_t b[16];
} ssmb_uuid;

/* ---- util: checked sizes, base64, hex, UUID ------------------------------ */

/* *out = a + b (a * b); SSMB_ERR_OVERFLOW, *out untouched, when it would wrap. */
SSMB_API ssmb_result ssmb_size_add(size_t a, size_t b, size_t *out);
SSMB_API ssmb_result ssmb_size_mul(size_t a, size_t b, size_t *out);

/* Standard base64 with '=' padding (RFC 4648 §4), the form Go's JSON uses
   for []byte. Encoded length of n bytes, 0 on overflow. */
SSMB_API size_t ssmb_base64_encoded_len(size_t n);
/* Writes the text and a NUL when it fits (cap >= len + 1); *out_len = text
   length (needed length on SSMB_ERR_BUFFER_TOO_SMALL). */
SSMB_API ssmb_result ssmb_base64_encode(const void *in, size_t n, char *out, size_t cap, size_t *out_len);
/* Strict decode: length a multiple of 4, only the 64 letters, '=' only as
   final padding, unused bits zero. SSMB_ERR_MALFORMED otherwise. */
SSMB_API ssmb_result ssmb_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);

/* Lower-case hex of n bytes: 2n characters and a NUL (cap >= 2n + 1). */
SSMB_API ssmb_result ssmb_hex_encode(const void *in, size_t n, char *out, size_t cap);
/* Hex (either case) of even length to bytes; *out_len = n / 2. */
SSMB_API ssmb_result ssmb_hex_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);

/* A version-4 UUID from 16 random bytes (sets the version and variant bits). */
SSMB_API void ssmb_uuid_v4(const uint8_t random16[16], ssmb_uuid *out);
/* Canonical text: 36 lower-case characters 8-4-4-4-12 and a NUL. */
SSMB_API void ssmb_uuid_format(const ssmb_uuid *id, char out[37]);
/* Parses the canonical 36-character form (either case). */
SSMB_API ssmb_result ssmb_uuid_parse(const char *text, size_t len, ssmb_uuid *out);
/* The ClientMessage wire form (PROTOCOL.md §2.2): the two 8-byte halves
   swapped, bytes inside each half kept in order. from_wire undoes it. */
SSMB_API void ssmb_uuid_to_wire(const ssmb_uuid *id, uint8_t wire[16]);
SSMB_API void ssmb_uuid_from_wire(const uint8_t wire[16], ssmb_uuid *out);

/* ---- sha256 --------------------------------------------------------------- */

typedef enum ssmb_sha256_impl {
    SSMB_SHA256_AUTO = 0,       /* the fastest this CPU runs */
    SSMB_SHA256_PORTABLE = 1,   /* plain C, always available */
    SSMB_SHA256_SHA_NI = 2,     /* x86-64 SHA extensions */
    SSMB__SHA256_IMPL_FORCE_32 = 0x7fffffff
} ssmb_sha256_impl;

/* Streaming context; plain data, copy it to fork a hash. */
typedef struct ssmb_sha256_ctx {
    uint32_t state[8];
    uint64_t total;       /* bytes hashed so far */
    uint8_t block[64];    /* invariant: total % 64 bytes of a partial block */
    uint32_t impl;        /* a resolved ssmb_sha256_impl, never AUTO */
} ssmb_sha256_ctx;

/* Starts a hash with the fastest implementation this CPU runs. */
SSMB_API void ssmb_sha256_init(ssmb_sha256_ctx *ctx);
/* Starts a hash with a chosen implementation; SSMB_ERR_UNSUPPORTED when it is
   not compiled in or the CPU lacks it. AUTO does what ssmb_sha256_init does. */
SSMB_API ssmb_result ssmb_sha256_init_impl(ssmb_sha256_ctx *ctx, ssmb_sha256_impl impl);
SSMB_API void ssmb_sha256_update(ssmb_sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest; the context must be initialised again before reuse. */
SSMB_API void ssmb_sha256_final(ssmb_sha256_ctx *ctx, uint8_t out[32]);
/* One-shot SHA-256. */
SSMB_API void ssmb_sha256(const void *data, size_t len, uint8_t out[32]);
/* 1 when the implementation is compiled in and this CPU runs it. */
SSMB_API int ssmb_sha256_impl_available(ssmb_sha256_impl impl);
/* What AUTO resolves to on this CPU. */
SSMB_API ssmb_sha256_impl ssmb_sha256_best_impl(void);
/* A static name: "portable", "sha-ni". */
SSMB_API const char *ssmb_sha256_impl_name(ssmb_sha256_impl impl);

/* ---- hmac ----------------------------------------------------------------- */

typedef struct ssmb_hmac_sha256_ctx {
    ssmb_sha256_ctx inner;
    ssmb_sha256_ctx outer;
} ssmb_hmac_sha256_ctx;

SSMB_API void ssmb_hmac_sha256_init(ssmb_hmac_sha256_ctx *ctx, const void *key, size_t key_len);
SSMB_API void ssmb_hmac_sha256_update(ssmb_hmac_sha256_ctx *ctx, const void *data, size_t len);
SSMB_API void ssmb_hmac_sha256_final(ssmb_hmac_sha256_ctx *ctx, uint8_t out[32]);
/* One-shot HMAC-SHA256 (RFC 2104). */
SSMB_API void ssmb_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, uint8_t out[32]);
/* Constant-time comparison of n bytes: 1 when equal. */
SSMB_API int ssmb_equal_ct(const void *a, const void *b, size_t n);

/* ---- sigv4 ---------------------------------------------------------------
   AWS Signature Version 4, each stage a function. The signing time is an
   argument (seconds since the Unix epoch, UTC); nothing reads a clock.
   None of these functions allocates; the signers keep their working state
   on the stack (about 10 KB with the default SSMB_SIGV4_MAX_* limits).
   Common results: SSMB_ERR_INVALID_ARG for a NULL argument, an empty access
   key (or, where a signature is made, secret), a region or service with characters other than letters,
   digits, '-', '_', '.', a time outside 1970..9999, a path not starting with
   '/', no Host header, or an X-Amz-Date header that is not the signing time;
   SSMB_ERR_MALFORMED for a method or header name that is not an RFC 7230
   token, a header value with control characters (a line break is allowed
   only as obsolete folding: CRLF or LF followed by a space or tab, signed
   like a space), or a '%' in the query (or, with
   SSMB_SIGV4_SINGLE_ENCODE_PATH, the path) not followed by two hex digits;
   SSMB_ERR_LIMIT for more than SSMB_SIGV4_MAX_HEADERS headers, more than
   SSMB_SIGV4_MAX_QUERY query parameters, or a path whose "." / ".."
   resolution holds more than 128 segments; SSMB_ERR_BUFFER_TOO_SMALL with
   the needed length (without the NUL) in *out_len. */

typedef struct ssmb_http_header {
    ssmb_str name;
    ssmb_str value;
} ssmb_http_header;

typedef struct ssmb_aws_credentials {
    ssmb_str access_key_id;
    ssmb_str secret_access_key;
    ssmb_str session_token;     /* empty for long-term keys */
} ssmb_aws_credentials;

enum {
    SSMB_SIGV4_NO_PATH_NORMALIZE = 1u << 0,  /* keep "." / ".." / "//" in the path (S3) */
    SSMB_SIGV4_SINGLE_ENCODE_PATH = 1u << 1, /* encode the path once, not twice (S3) */
    SSMB_SIGV4_SIGN_BODY_HEADER = 1u << 2,   /* add and sign x-amz-content-sha256 (header signing) */
    SSMB_SIGV4_OMIT_SESSION_TOKEN = 1u << 3, /* token sent but not signed (presigned forms) */
    SSMB_SIGV4_PRESIGNED = 1u << 4           /* ssmb_sigv4_canonical_request: the presigned-URL
                                                (query) form; ssmb_sigv4_presign sets it itself */
};

/* The request as it will be sent. Path: the canonical URI normalises "."
   and ".." and empty segments, then URI-encodes the path as given once more
   (the AWS-generic rule: "%3A" signs as "%253A", a raw space as "%20");
   SSMB_SIGV4_SINGLE_ENCODE_PATH decodes %XX first, so it is encoded once.
   Query: split on '&', name and value decoded and re-encoded (RFC 3986
   unreserved characters kept, '+' is a plain character), sorted. Headers:
   every one given is signed, and Host MUST be among them: SigV4 always signs
   it, and the library does not derive it (take it from the URL: the
   authority, with the port only when it is not the default). */
typedef struct ssmb_sigv4_request {
    ssmb_str method;                    /* "GET", "POST" */
    ssmb_str path;                      /* as sent; empty means "/" */
    ssmb_str query;                     /* as sent, without the '?' */
    const ssmb_http_header *headers;    /* headers to sign; Host among them */
    size_t header_count;
    const void *body;                   /* hashed for the payload hash */
    size_t body_len;
    ssmb_str payload_hash;              /* optional: lower-case hex or "UNSIGNED-PAYLOAD" (at most
                                           64 visible characters); overrides body */
} ssmb_sigv4_request;

typedef struct ssmb_sigv4_params {
    ssmb_aws_credentials creds;
    ssmb_str region;                    /* "us-east-1" */
    ssmb_str service;                   /* "ssm", "ssmmessages", "kms", "sts" */
    int64_t time;                       /* signing time, Unix seconds UTC */
    uint32_t flags;                     /* SSMB_SIGV4_* */
    uint32_t expires;                   /* presigned URLs: X-Amz-Expires, seconds (0 = 900,
                                           at most 604800) */
} ssmb_sigv4_params;

/* "YYYYMMDDTHHMMSSZ" and a NUL for a Unix time (years 1970..9999);
   SSMB_ERR_INVALID_ARG outside that range. */
SSMB_API ssmb_result ssmb_amz_date(int64_t unix_seconds, char out[17]);
/* Parses "20150830T123600Z" or "2015-08-30T12:36:00Z" (years 1970..9999,
   real calendar days, no leap second); SSMB_ERR_MALFORMED otherwise. */
SSMB_API ssmb_result ssmb_amz_date_parse(const char *text, size_t len, int64_t *unix_seconds);

/* Stage 1: the canonical request text, with a NUL. The signer's own headers
   (X-Amz-Date, X-Amz-Security-Token unless omitted, X-Amz-Content-Sha256
   when asked) are included unless the request already carries them. With
   SSMB_SIGV4_PRESIGNED: the presigned-URL form instead (no headers added;
   X-Amz-Algorithm, -Credential, -Date, -Expires, -Security-Token unless
   omitted, and -SignedHeaders join the query). out may be NULL with cap 0
   to learn the size. */
SSMB_API ssmb_result ssmb_sigv4_canonical_request(const ssmb_sigv4_request *req, const ssmb_sigv4_params *p,
                                                  char *out, size_t cap, size_t *out_len);
/* Stage 2: the string to sign from the canonical request's SHA-256. */
SSMB_API ssmb_result ssmb_sigv4_string_to_sign(const ssmb_sigv4_params *p, const uint8_t creq_sha256[32],
                                               char *out, size_t cap, size_t *out_len);
/* Stage 3: the signing key, HMAC chain over date, region, service. */
SSMB_API ssmb_result ssmb_sigv4_signing_key(const ssmb_sigv4_params *p, uint8_t key[32]);
/* Stage 4: the signature, 64 lower-case hex characters and a NUL. */
SSMB_API void ssmb_sigv4_signature(const uint8_t key[32], const char *string_to_sign, size_t len, char out[65]);

/* Everything a signed request must add, in one call. */
typedef struct ssmb_sigv4_output {
    char amz_date[17];          /* X-Amz-Date value */
    char signature[65];
    char content_sha256[65];    /* the payload hash used (x-amz-content-sha256 when signed) */
} ssmb_sigv4_output;

/* Header signing: writes the Authorization value ("AWS4-HMAC-SHA256
   Credential=..., SignedHeaders=..., Signature=...") with a NUL. The caller
   sends it with X-Amz-Date (out->amz_date), with temporary credentials
   X-Amz-Security-Token, and with SSMB_SIGV4_SIGN_BODY_HEADER
   x-amz-content-sha256 (out->content_sha256). Streams the canonical request
   into SHA-256: no scratch buffer, no allocation. out may be NULL. A short
   buffer is reported before any hashing. */
SSMB_API ssmb_result ssmb_sigv4_sign(const ssmb_sigv4_request *req, const ssmb_sigv4_params *p,
                                     char *authorization, size_t cap, size_t *out_len, ssmb_sigv4_output *out);
/* Query (presigned URL) signing: writes the complete query string to send
   (the request's own query as given, then X-Amz-Algorithm, -Credential,
   -Date, -SignedHeaders, -Expires, -Security-Token and -Signature), with a
   NUL. The request's query must not carry those names already
   (SSMB_ERR_INVALID_ARG). The payload hash is the body's (or payload_hash,
   e.g. "UNSIGNED-PAYLOAD"); SSMB_SIGV4_SIGN_BODY_HEADER has no effect. */
SSMB_API ssmb_result ssmb_sigv4_presign(const ssmb_sigv4_request *req, const ssmb_sigv4_params *p,
                                        char *query, size_t cap, size_t *out_len, ssmb_sigv4_output *out);

/* ---- json ----------------------------------------------------------------
   Reading: jsmn (system header) tokenises into storage you give; typed
   helpers return views into the text. Writing: a small writer with correct
   escaping into a caller buffer. */

typedef enum ssmb_json_type {
    SSMB_JSON_UNDEFINED = 0,
    SSMB_JSON_OBJECT = 1,
    SSMB_JSON_ARRAY = 2,
    SSMB_JSON_STRING = 3,
    SSMB_JSON_PRIMITIVE = 4,    /* number, true, false, null */
    SSMB__JSON_TYPE_FORCE_32 = 0x7fffffff
} ssmb_json_type;

/* Storage for one token; opaque. */
typedef struct ssmb_json_token {
    int32_t opaque_[4];
} ssmb_json_token;

/* A parsed document. Token 0 is the root value. */
typedef struct ssmb_json {
    const char *text;
    size_t len;
    ssmb_json_token *tokens;
    int32_t count;
} ssmb_json;

/* SSMB_ERR_JSON for malformed or truncated text or trailing garbage,
   SSMB_ERR_LIMIT when max_tokens is too few or the text is over 2 GiB. */
SSMB_API ssmb_result ssmb_json_parse(ssmb_json *doc, const char *text, size_t len,
                                     ssmb_json_token *tokens, size_t max_tokens);
SSMB_API ssmb_json_type ssmb_json_kind(const ssmb_json *doc, int32_t tok);
/* Children: members of an object, elements of an array; 0 otherwise. */
SSMB_API int32_t ssmb_json_size(const ssmb_json *doc, int32_t tok);
/* Value token of key in object tok, or -1. Keys compare after unescaping. */
SSMB_API int32_t ssmb_json_find(const ssmb_json *doc, int32_t obj, const char *key);
/* Token of element i of array tok, or -1. */
SSMB_API int32_t ssmb_json_at(const ssmb_json *doc, int32_t arr, int32_t i);
/* The raw text of any value (a string without its quotes, escapes intact). */
SSMB_API ssmb_str ssmb_json_raw(const ssmb_json *doc, int32_t tok);
/* A string value's raw view; SSMB_ERR_JSON when tok is not a string. */
SSMB_API ssmb_result ssmb_json_get_str(const ssmb_json *doc, int32_t tok, ssmb_str *out);
/* Integer values (no fraction, no exponent); SSMB_ERR_JSON otherwise,
   SSMB_ERR_OVERFLOW when out of range. */
SSMB_API ssmb_result ssmb_json_get_i64(const ssmb_json *doc, int32_t tok, int64_t *out);
SSMB_API ssmb_result ssmb_json_get_u32(const ssmb_json *doc, int32_t tok, uint32_t *out);
SSMB_API ssmb_result ssmb_json_get_bool(const ssmb_json *doc, int32_t tok, int *out);
SSMB_API int ssmb_json_is_null(const ssmb_json *doc, int32_t tok);
/* Decodes the escapes of a raw string view into UTF-8 (\uXXXX with
   surrogate pairs); writes a NUL when it fits. SSMB_ERR_MALFORMED for bad
   escapes or lone surrogates. */
SSMB_API ssmb_result ssmb_json_unescape(ssmb_str raw, char *out, size_t cap, size_t *out_len);

#ifndef SSMB_JSON_MAX_DEPTH
#define SSMB_JSON_MAX_DEPTH 32
#endif

/* The writer keeps a sticky error: write freely, check once at finish. */
typedef struct ssmb_json_writer {
    char *buf;
    size_t cap;
    size_t len;                 /* bytes the output needs so far (may exceed cap) */
    uint32_t depth;
    uint32_t need_comma;        /* bit d: depth d has a value already */
    uint32_t after_key;         /* 1 right after a key */
    int32_t error;              /* first ssmb_result error, or 0 */
} ssmb_json_writer;

SSMB_API void ssmb_json_writer_init(ssmb_json_writer *w, char *buf, size_t cap);
SSMB_API void ssmb_json_writer_begin_object(ssmb_json_writer *w);
SSMB_API void ssmb_json_writer_end_object(ssmb_json_writer *w);
SSMB_API void ssmb_json_writer_begin_array(ssmb_json_writer *w);
SSMB_API void ssmb_json_writer_end_array(ssmb_json_writer *w);
SSMB_API void ssmb_json_writer_key(ssmb_json_writer *w, const char *key, size_t len);
/* A string value, escaped (", \, control characters); invalid UTF-8 sets
   SSMB_ERR_MALFORMED. */
SSMB_API void ssmb_json_writer_string(ssmb_json_writer *w, const char *s, size_t len);
SSMB_API void ssmb_json_writer_i64(ssmb_json_writer *w, int64_t v);
SSMB_API void ssmb_json_writer_u64(ssmb_json_writer *w, uint64_t v);
SSMB_API void ssmb_json_writer_bool(ssmb_json_writer *w, int v);
SSMB_API void ssmb_json_writer_null(ssmb_json_writer *w);
/* Raw JSON text inserted as one value (the caller vouches for it). */
SSMB_API void ssmb_json_writer_raw(ssmb_json_writer *w, const char *json, size_t len);
/* The sticky error, or SSMB_ERR_BUFFER_TOO_SMALL (needed size in *out_len),
   or SSMB_ERR_INVALID_STATE for unbalanced nesting; writes a NUL when it fits. */
SSMB_API ssmb_result ssmb_json_writer_finish(ssmb_json_writer *w, size_t *out_len);

/* ---- msg: the ClientMessage codec (PROTOCOL.md §2) ----------------------- */

#define SSMB_MSG_HEADER_SIZE 120u           /* payload offset */
#define SSMB_MSG_HEADER_LENGTH 116u         /* value of the HeaderLength field */
#define SSMB_MSG_TYPE_MAX 32u

#define SSMB_MSG_INPUT_STREAM_DATA "input_stream_data"
#define SSMB_MSG_OUTPUT_STREAM_DATA "output_stream_data"
#define SSMB_MSG_ACKNOWLEDGE "acknowledge"
#define SSMB_MSG_CHANNEL_CLOSED "channel_closed"
#define SSMB_MSG_START_PUBLICATION "start_publication"
#define SSMB_MSG_PAUSE_PUBLICATION "pause_publication"

typedef enum ssmb_payload_type {
    SSMB_PAYLOAD_NONE = 0,
    SSMB_PAYLOAD_OUTPUT = 1,
    SSMB_PAYLOAD_ERROR = 2,
    SSMB_PAYLOAD_SIZE = 3,
    SSMB_PAYLOAD_PARAMETER = 4,
    SSMB_PAYLOAD_HANDSHAKE_REQUEST = 5,
    SSMB_PAYLOAD_HANDSHAKE_RESPONSE = 6,
    SSMB_PAYLOAD_HANDSHAKE_COMPLETE = 7,
    SSMB_PAYLOAD_ENC_CHALLENGE_REQUEST = 8,
    SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE = 9,
    SSMB_PAYLOAD_FLAG = 10,
    SSMB_PAYLOAD_STDERR = 11,
    SSMB_PAYLOAD_EXIT_CODE = 12,
    SSMB__PAYLOAD_FORCE_32 = 0x7fffffff
} ssmb_payload_type;

enum { SSMB_MSG_FLAG_SYN = 1, SSMB_MSG_FLAG_FIN = 2 };

/* Flag payload values (PayloadType 10, PROTOCOL.md §2.9). */
enum {
    SSMB_FLAG_DISCONNECT_TO_PORT = 1,
    SSMB_FLAG_TERMINATE_SESSION = 2,
    SSMB_FLAG_CONNECT_TO_PORT_ERROR = 3
};

/* One ClientMessage. Decoding fills every field with views into the frame;
   encoding reads type, schema_version, created_date_ms, sequence_number,
   flags, message_id, payload_type and the payload, and computes the rest. */
typedef struct ssmb_msg {
    ssmb_str type;              /* e.g. "output_stream_data"; NULs and spaces trimmed */
    uint32_t header_length;     /* 116 on the wire */
    uint32_t schema_version;
    uint64_t created_date_ms;   /* Unix epoch milliseconds */
    int64_t sequence_number;
    uint64_t flags;             /* SSMB_MSG_FLAG_* */
    ssmb_uuid message_id;       /* RFC 4122 order (the wire swaps halves) */
    uint8_t payload_digest[32];
    uint32_t payload_type;      /* ssmb_payload_type */
    uint32_t payload_length;    /* as the header declares it */
    const uint8_t *payload;
    size_t payload_size;        /* bytes actually carried */
} ssmb_msg;

/* Frame size for a payload: 120 + n (SSMB_ERR_OVERFLOW past 4 GiB). */
SSMB_API ssmb_result ssmb_msg_frame_size(size_t payload_size, size_t *out);
/* Encodes header and payload; computes the digest. Type longer than 32 bytes
   or empty: SSMB_ERR_INVALID_ARG. *out_len = frame size (also on
   SSMB_ERR_BUFFER_TOO_SMALL). */
SSMB_API ssmb_result ssmb_msg_encode(const ssmb_msg *m, uint8_t *out, size_t cap, size_t *out_len);
/* Writes only the 120-byte header for m->payload (zero copy: place the
   payload at out + 120 yourself, or send it separately). */
SSMB_API ssmb_result ssmb_msg_encode_header(const ssmb_msg *m, uint8_t out[SSMB_MSG_HEADER_SIZE]);
/* Bounds-checked decode. Never trusts HeaderLength or PayloadLength:
   SSMB_ERR_TRUNCATED when the frame is shorter than 120 bytes, and
   SSMB_ERR_SSM_PROTOCOL when HeaderLength is not 116 or PayloadLength
   disagrees with the bytes carried. Does not check the digest. */
SSMB_API ssmb_result ssmb_msg_decode(const uint8_t *frame, size_t len, ssmb_msg *out);
/* The reference validation rules (PROTOCOL.md §2.4), in order:
   publication messages pass; SSMB_ERR_SSM_PROTOCOL for a zero HeaderLength,
   an empty MessageType or a zero CreatedDate; SSMB_ERR_DIGEST when the
   payload is non-empty and its SHA-256 differs from the digest. */
SSMB_API ssmb_result ssmb_msg_validate(const ssmb_msg *m);
/* 1 when the message's type equals the string. */
SSMB_API int ssmb_msg_type_is(const ssmb_msg *m, const char *type);

/* ---- payloads carried in ClientMessages --------------------------------- */

/* acknowledge (PROTOCOL.md §3.2) */
typedef struct ssmb_ack {
    ssmb_str message_type;          /* AcknowledgedMessageType (raw JSON string view) */
    ssmb_uuid message_id;           /* AcknowledgedMessageId */
    int64_t sequence_number;        /* AcknowledgedMessageSequenceNumber */
    int is_sequential;              /* IsSequentialMessage */
} ssmb_ack;
SSMB_API ssmb_result ssmb_ack_build(const ssmb_ack *ack, char *out, size_t cap, size_t *out_len);
SSMB_API ssmb_result ssmb_ack_parse(const void *json, size_t len, ssmb_ack *out);

/* OpenDataChannelInput, the first (text) frame (PROTOCOL.md §4.2) */
typedef struct ssmb_open_data_channel {
    ssmb_str token_value;
    ssmb_uuid request_id;
    ssmb_uuid client_id;
    ssmb_str client_version;        /* empty: the key is left out */
} ssmb_open_data_channel;
SSMB_API ssmb_result ssmb_open_data_channel_build(const ssmb_open_data_channel *in, char *out, size_t cap,
                                                  size_t *out_len);

/* HandshakeRequest (PROTOCOL.md §5.2); views into the JSON */
typedef struct ssmb_handshake_request {
    ssmb_str agent_version;
    int has_session_type;
    ssmb_str session_type;          /* "Standard_Stream", "Port", ... */
    ssmb_str properties;            /* raw JSON of Properties ("null" or an object) */
    int has_kms;
    ssmb_str kms_key_id;
    ssmb_str kms_challenge;         /* empty when the agent sent none (§6.6) */
    uint32_t unknown_actions;       /* actions of types this library does not know */
} ssmb_handshake_request;
SSMB_API ssmb_result ssmb_handshake_request_parse(const void *json, size_t len, ssmb_handshake_request *out);

enum { SSMB_ACTION_SUCCESS = 1, SSMB_ACTION_FAILED = 2, SSMB_ACTION_UNSUPPORTED = 3 };

typedef struct ssmb_processed_action {
    ssmb_str action_type;
    uint32_t status;                /* SSMB_ACTION_* */
    ssmb_str result_json;           /* raw JSON; empty writes null */
    ssmb_str error;                 /* empty writes "" */
} ssmb_processed_action;

/* HandshakeResponse (PROTOCOL.md §5.3) */
typedef struct ssmb_handshake_response {
    ssmb_str client_version;
    const ssmb_processed_action *actions;
    size_t action_count;
    const ssmb_str *errors;         /* none writes null */
    size_t error_count;
} ssmb_handshake_response;
SSMB_API ssmb_result ssmb_handshake_response_build(const ssmb_handshake_response *in, char *out, size_t cap,
                                                   size_t *out_len);

/* HandshakeComplete (PROTOCOL.md §5.4) */
typedef struct ssmb_handshake_complete {
    int64_t time_to_complete_ns;
    ssmb_str customer_message;      /* raw JSON string view; see ssmb_json_unescape */
} ssmb_handshake_complete;
SSMB_API ssmb_result ssmb_handshake_complete_parse(const void *json, size_t len, ssmb_handshake_complete *out);

/* EncChallengeRequest / EncChallengeResponse: {"Challenge":"<base64>"} (§6.5) */
SSMB_API ssmb_result ssmb_challenge_build(const uint8_t *bytes, size_t n, char *out, size_t cap, size_t *out_len);
SSMB_API ssmb_result ssmb_challenge_parse(const void *json, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Size (PayloadType 3): {"cols":N,"rows":M} (§7.2) */
SSMB_API ssmb_result ssmb_terminal_size_build(uint32_t cols, uint32_t rows, char *out, size_t cap, size_t *out_len);

/* Flag (PayloadType 10): exactly 4 bytes, big-endian (§2.9) */
SSMB_API void ssmb_flag_encode(uint32_t flag, uint8_t out[4]);
SSMB_API ssmb_result ssmb_flag_decode(const void *payload, size_t len, uint32_t *flag);

/* channel_closed (PROTOCOL.md §8.2); views into the JSON */
typedef struct ssmb_channel_closed {
    ssmb_str message_id;
    ssmb_str created_date;          /* epoch milliseconds as a decimal string */
    ssmb_str destination_id;
    ssmb_str session_id;
    ssmb_str message_type;
    int64_t schema_version;
    ssmb_str output;                /* reason text, raw JSON string view; may be empty */
} ssmb_channel_closed;
SSMB_API ssmb_result ssmb_channel_closed_parse(const void *json, size_t len, ssmb_channel_closed *out);

/* ExitCode (PayloadType 12): the text "EXIT_CODE: <n>" (§7.2) */
SSMB_API ssmb_result ssmb_exit_code_parse(const void *payload, size_t len, int32_t *code);

/* >>api-ws (RFC 6455 framing: declarations go here) */

/* >>api-http (HTTP/1.1: declarations go here) */

#ifdef __cplusplus
} /* extern "C" */
#endif
#endif /* SSMBRIDGE_H_INCLUDED */

/* ========================================================================== */
/*                              IMPLEMENTATION                                */
/* ========================================================================== */
#if defined(SSMBRIDGE_IMPLEMENTATION) && !defined(SSMBRIDGE_IMPLEMENTATION_INCLUDED)
#define SSMBRIDGE_IMPLEMENTATION_INCLUDED

// >>config
#if (defined(SSMB_USE_BEARSSL) + defined(SSMB_USE_MBEDTLS) + defined(SSMB_NO_TLS)) > 1
#error "ssmbridge.h: define at most one of SSMB_USE_BEARSSL, SSMB_USE_MBEDTLS, SSMB_NO_TLS"
#endif
#if !defined(SSMB_USE_MBEDTLS) && !defined(SSMB_NO_TLS) && !defined(SSMB_USE_BEARSSL)
#define SSMB_USE_BEARSSL
#endif
#if defined(SSMB_MALLOC) != defined(SSMB_FREE)
#error "ssmbridge.h: define both SSMB_MALLOC and SSMB_FREE, or neither"
#endif
#ifndef SSMB_MALLOC
#include <stdlib.h>
#define SSMB_MALLOC(sz) malloc(sz)
#define SSMB_FREE(p) free(p)
#endif
#ifndef SSMB_ASSERT
#include <assert.h>
#define SSMB_ASSERT(c) assert(c)
#endif
#ifndef SSMB_SIGV4_MAX_HEADERS
#define SSMB_SIGV4_MAX_HEADERS 64
#endif
#ifndef SSMB_SIGV4_MAX_QUERY
#define SSMB_SIGV4_MAX_QUERY 128
#endif

#include <string.h>

#if !defined(SSMB_NO_SHA_NI) && (defined(__x86_64__) || defined(_M_X64)) && \
    (defined(__GNUC__) || defined(__clang__))
#define SSMB__HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define SSMB__HAVE_SHA_NI 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SSMB__LIKELY(x) __builtin_expect(!!(x), 1)
#define SSMB__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SSMB__LIKELY(x) (x)
#define SSMB__UNLIKELY(x) (x)
#endif

#define SSMB__MIN(a, b) ((a) < (b) ? (a) : (b))
#define SSMB__COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

// >>util
/* Byte order: the ClientMessage is big-endian (PROTOCOL.md §2.1). */
static uint32_t ssmb__load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static void ssmb__store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static void ssmb__store_be64(uint8_t *p, uint64_t v) {
    ssmb__store_be32(p, (uint32_t)(v >> 32));
    ssmb__store_be32(p + 4, (uint32_t)v);
}

SSMB_APIDEF ssmb_str ssmb_str_c(const char *s) {
    ssmb_str r;
    r.ptr = s ? s : "";
    r.len = s ? strlen(s) : 0;
    return r;
}

SSMB_APIDEF int ssmb_str_eq(ssmb_str a, const char *s) {
    size_t n = s ? strlen(s) : 0;
    return a.len == n && (n == 0 || memcmp(a.ptr, s, n) == 0);
}

SSMB_APIDEF ssmb_result ssmb_size_add(size_t a, size_t b, size_t *out) {
    if (b > (size_t)-1 - a) return SSMB_ERR_OVERFLOW;
    *out = a + b;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > (size_t)-1 / a) return SSMB_ERR_OVERFLOW;
    *out = a * b;
    return SSMB_OK;
}

static const char ssmb__b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

SSMB_APIDEF size_t ssmb_base64_encoded_len(size_t n) {
    size_t groups = n / 3 + (n % 3 != 0);
    if (groups > (size_t)-1 / 4) return 0;
    return groups * 4;
}

SSMB_APIDEF ssmb_result ssmb_base64_encode(const void *in, size_t n, char *out, size_t cap, size_t *out_len) {
    const uint8_t *p = (const uint8_t *)in;
    size_t need = ssmb_base64_encoded_len(n), i, o = 0;
    if (n != 0 && need == 0) return SSMB_ERR_OVERFLOW;
    if (out_len) *out_len = need;
    if (!out || cap < need + 1) return SSMB_ERR_BUFFER_TOO_SMALL;
    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) | p[i + 2];
        out[o++] = ssmb__b64_alphabet[v >> 18];
        out[o++] = ssmb__b64_alphabet[(v >> 12) & 63];
        out[o++] = ssmb__b64_alphabet[(v >> 6) & 63];
        out[o++] = ssmb__b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = ssmb__b64_alphabet[v >> 18];
        out[o++] = ssmb__b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);
        out[o++] = ssmb__b64_alphabet[v >> 18];
        out[o++] = ssmb__b64_alphabet[(v >> 12) & 63];
        out[o++] = ssmb__b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return SSMB_OK;
}

/* 0..63 for a base64 letter, -1 otherwise. */
static int ssmb__b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

SSMB_APIDEF ssmb_result ssmb_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len) {
    size_t pad = 0, need, i, o = 0;
    if (n % 4 != 0) return SSMB_ERR_MALFORMED;
    if (n >= 1 && in[n - 1] == '=') pad++;
    if (n >= 2 && in[n - 2] == '=') pad++;
    need = n / 4 * 3 - pad;
    if (out_len) *out_len = need;
    for (i = 0; i < n; i += 4) {
        int v[4], k, last = (i + 4 == n);
        for (k = 0; k < 4; k++) {
            int is_pad = last && k >= 4 - (int)pad;
            v[k] = is_pad ? 0 : ssmb__b64_value(in[i + (size_t)k]);
            if (v[k] < 0) return SSMB_ERR_MALFORMED;
        }
        /* RFC 4648 §3.5: the bits a padded group leaves unused must be zero. */
        if (last && pad == 1 && (v[2] & 3) != 0) return SSMB_ERR_MALFORMED;
        if (last && pad == 2 && (v[1] & 15) != 0) return SSMB_ERR_MALFORMED;
        {
            uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
            uint8_t bytes[3];
            size_t take = last ? 3 - pad : 3;
            bytes[0] = (uint8_t)(w >> 16);
            bytes[1] = (uint8_t)(w >> 8);
            bytes[2] = (uint8_t)w;
            if (o + take > cap || !out) return SSMB_ERR_BUFFER_TOO_SMALL;
            memcpy(out + o, bytes, take);
            o += take;
        }
    }
    return SSMB_OK;
}

static const char ssmb__hex_digits[] = "0123456789abcdef";

SSMB_APIDEF ssmb_result ssmb_hex_encode(const void *in, size_t n, char *out, size_t cap) {
    const uint8_t *p = (const uint8_t *)in;
    size_t i;
    if (n > ((size_t)-1 - 1) / 2) return SSMB_ERR_OVERFLOW;
    if (!out || cap < 2 * n + 1) return SSMB_ERR_BUFFER_TOO_SMALL;
    for (i = 0; i < n; i++) {
        out[2 * i] = ssmb__hex_digits[p[i] >> 4];
        out[2 * i + 1] = ssmb__hex_digits[p[i] & 15];
    }
    out[2 * n] = '\0';
    return SSMB_OK;
}

static int ssmb__hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

SSMB_APIDEF ssmb_result ssmb_hex_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *out_len) {
    size_t i;
    if (n % 2 != 0) return SSMB_ERR_MALFORMED;
    if (out_len) *out_len = n / 2;
    for (i = 0; i < n; i += 2) {
        int hi = ssmb__hex_value(in[i]), lo = ssmb__hex_value(in[i + 1]);
        if (hi < 0 || lo < 0) return SSMB_ERR_MALFORMED;
    }
    if (n / 2 > cap || (!out && n != 0)) return SSMB_ERR_BUFFER_TOO_SMALL;
    for (i = 0; i < n; i += 2) out[i / 2] = (uint8_t)(ssmb__hex_value(in[i]) << 4 | ssmb__hex_value(in[i + 1]));
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_uuid_v4(const uint8_t random16[16], ssmb_uuid *out) {
    memcpy(out->b, random16, 16);
    out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x40); /* version 4 */
    out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

SSMB_APIDEF void ssmb_uuid_format(const ssmb_uuid *id, char out[37]) {
    size_t i, o = 0;
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = ssmb__hex_digits[id->b[i] >> 4];
        out[o++] = ssmb__hex_digits[id->b[i] & 15];
    }
    out[o] = '\0';
}

SSMB_APIDEF ssmb_result ssmb_uuid_parse(const char *text, size_t len, ssmb_uuid *out) {
    size_t i, o = 0;
    ssmb_uuid id;
    if (len != 36) return SSMB_ERR_MALFORMED;
    for (i = 0; i < 36;) {
        int hi, lo;
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-') return SSMB_ERR_MALFORMED;
            i++;
            continue;
        }
        hi = ssmb__hex_value(text[i]);
        lo = ssmb__hex_value(text[i + 1]);
        if (hi < 0 || lo < 0) return SSMB_ERR_MALFORMED;
        id.b[o++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    *out = id;
    return SSMB_OK;
}

/* PROTOCOL.md §2.2: the wire carries the UUID as "least significant long
   first": bytes 8..15, then bytes 0..7, each half in its own order. */
SSMB_APIDEF void ssmb_uuid_to_wire(const ssmb_uuid *id, uint8_t wire[16]) {
    memcpy(wire, id->b + 8, 8);
    memcpy(wire + 8, id->b, 8);
}

SSMB_APIDEF void ssmb_uuid_from_wire(const uint8_t wire[16], ssmb_uuid *out) {
    memcpy(out->b, wire + 8, 8);
    memcpy(out->b + 8, wire, 8);
}

SSMB_APIDEF int ssmb_equal_ct(const void *a, const void *b, size_t n) {
    const volatile uint8_t *x = (const volatile uint8_t *)a, *y = (const volatile uint8_t *)b;
    uint8_t acc = 0;
    size_t i;
    for (i = 0; i < n; i++) acc = (uint8_t)(acc | (x[i] ^ y[i]));
    return acc == 0;
}

// >>sha256
/* FIPS 180-4 §4.2.2 round constants. */
static const uint32_t ssmb__sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static const uint32_t ssmb__sha256_h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                            0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

#define SSMB__ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* Portable compression of nblocks 64-byte blocks. */
static void ssmb__sha256_blocks_portable(uint32_t state[8], const uint8_t *data, size_t nblocks) {
    while (nblocks--) {
        uint32_t w[64], a, b, c, d, e, f, g, h;
        int t;
        for (t = 0; t < 16; t++) w[t] = ssmb__load_be32(data + 4 * t);
        for (t = 16; t < 64; t++) {
            uint32_t s0 = SSMB__ROTR(w[t - 15], 7) ^ SSMB__ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = SSMB__ROTR(w[t - 2], 17) ^ SSMB__ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        a = state[0]; b = state[1]; c = state[2]; d = state[3];
        e = state[4]; f = state[5]; g = state[6]; h = state[7];
        for (t = 0; t < 64; t++) {
            uint32_t t1 = h + (SSMB__ROTR(e, 6) ^ SSMB__ROTR(e, 11) ^ SSMB__ROTR(e, 25)) + ((e & f) ^ (~e & g)) +
                          ssmb__sha256_k[t] + w[t];
            uint32_t t2 = (SSMB__ROTR(a, 2) ^ SSMB__ROTR(a, 13) ^ SSMB__ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g; g = f; f = e; e = d + t1;
            d = c; c = b; b = a; a = t1 + t2;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
        data += 64;
    }
}

/* >>sha256-ni (the x86-64 SHA extensions path goes here) */

static ssmb_sha256_impl ssmb__sha256_detect(void) {
    return SSMB_SHA256_PORTABLE;
}

static void ssmb__sha256_blocks(ssmb_sha256_ctx *ctx, const uint8_t *data, size_t nblocks) {
    ssmb__sha256_blocks_portable(ctx->state, data, nblocks);
}

SSMB_APIDEF int ssmb_sha256_impl_available(ssmb_sha256_impl impl) {
    if (impl == SSMB_SHA256_AUTO || impl == SSMB_SHA256_PORTABLE) return 1;
    return impl == SSMB_SHA256_SHA_NI && ssmb__sha256_detect() == SSMB_SHA256_SHA_NI;
}

SSMB_APIDEF ssmb_sha256_impl ssmb_sha256_best_impl(void) { return ssmb__sha256_detect(); }

SSMB_APIDEF const char *ssmb_sha256_impl_name(ssmb_sha256_impl impl) {
    switch (impl) {
    case SSMB_SHA256_AUTO: return "auto";
    case SSMB_SHA256_PORTABLE: return "portable";
    case SSMB_SHA256_SHA_NI: return "sha-ni";
    default: return "unknown";
    }
}

SSMB_APIDEF ssmb_result ssmb_sha256_init_impl(ssmb_sha256_ctx *ctx, ssmb_sha256_impl impl) {
    if (impl == SSMB_SHA256_AUTO) impl = ssmb__sha256_detect();
    if (!ssmb_sha256_impl_available(impl)) return SSMB_ERR_UNSUPPORTED;
    memcpy(ctx->state, ssmb__sha256_h0, sizeof ctx->state);
    ctx->total = 0;
    ctx->impl = (uint32_t)impl;
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_sha256_init(ssmb_sha256_ctx *ctx) { (void)ssmb_sha256_init_impl(ctx, SSMB_SHA256_AUTO); }

SSMB_APIDEF void ssmb_sha256_update(ssmb_sha256_ctx *ctx, const void *data, size_t len) {
    const uint8_t *p = (const uint8_t *)data;
    size_t used = (size_t)(ctx->total & 63);
    ctx->total += len;
    if (used) {
        size_t take = SSMB__MIN(64 - used, len);
        memcpy(ctx->block + used, p, take);
        p += take;
        len -= take;
        if (used + take < 64) return;
        ssmb__sha256_blocks(ctx, ctx->block, 1);
    }
    if (len >= 64) {
        ssmb__sha256_blocks(ctx, p, len / 64);
        p += len & ~(size_t)63;
        len &= 63;
    }
    if (len) memcpy(ctx->block, p, len);
}

SSMB_APIDEF void ssmb_sha256_final(ssmb_sha256_ctx *ctx, uint8_t out[32]) {
    uint64_t bits = ctx->total * 8;
    size_t used = (size_t)(ctx->total & 63);
    int i;
    /* FIPS 180-4 §5.1.1: 0x80, zeros, then the bit length big-endian. */
    ctx->block[used++] = 0x80;
    if (used > 56) {
        memset(ctx->block + used, 0, 64 - used);
        ssmb__sha256_blocks(ctx, ctx->block, 1);
        used = 0;
    }
    memset(ctx->block + used, 0, 56 - used);
    ssmb__store_be64(ctx->block + 56, bits);
    ssmb__sha256_blocks(ctx, ctx->block, 1);
    for (i = 0; i < 8; i++) ssmb__store_be32(out + 4 * i, ctx->state[i]);
}

SSMB_APIDEF void ssmb_sha256(const void *data, size_t len, uint8_t out[32]) {
    ssmb_sha256_ctx ctx;
    ssmb_sha256_init(&ctx);
    ssmb_sha256_update(&ctx, data, len);
    ssmb_sha256_final(&ctx, out);
}

// >>hmac
/* RFC 2104: H((K ^ opad) || H((K ^ ipad) || m)), keys over 64 bytes hashed first. */
SSMB_APIDEF void ssmb_hmac_sha256_init(ssmb_hmac_sha256_ctx *ctx, const void *key, size_t key_len) {
    uint8_t k[64], pad[64];
    size_t i;
    memset(k, 0, sizeof k);
    if (key_len > 64) ssmb_sha256(key, key_len, k);
    else if (key_len) memcpy(k, key, key_len);
    for (i = 0; i < 64; i++) pad[i] = (uint8_t)(k[i] ^ 0x36);
    ssmb_sha256_init(&ctx->inner);
    ssmb_sha256_update(&ctx->inner, pad, 64);
    for (i = 0; i < 64; i++) pad[i] = (uint8_t)(k[i] ^ 0x5c);
    ssmb_sha256_init(&ctx->outer);
    ssmb_sha256_update(&ctx->outer, pad, 64);
}

SSMB_APIDEF void ssmb_hmac_sha256_update(ssmb_hmac_sha256_ctx *ctx, const void *data, size_t len) {
    ssmb_sha256_update(&ctx->inner, data, len);
}

SSMB_APIDEF void ssmb_hmac_sha256_final(ssmb_hmac_sha256_ctx *ctx, uint8_t out[32]) {
    uint8_t inner[32];
    ssmb_sha256_final(&ctx->inner, inner);
    ssmb_sha256_update(&ctx->outer, inner, 32);
    ssmb_sha256_final(&ctx->outer, out);
}

SSMB_APIDEF void ssmb_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, uint8_t out[32]) {
    ssmb_hmac_sha256_ctx ctx;
    ssmb_hmac_sha256_init(&ctx, key, key_len);
    ssmb_hmac_sha256_update(&ctx, msg, msg_len);
    ssmb_hmac_sha256_final(&ctx, out);
}

// >>sigv4
/* AWS Signature Version 4. The steps, as AWS numbers them: 1 canonical
   request, 2 string to sign, 3 signing key, 4 signature. The signer never
   stores the canonical request: it is streamed into SHA-256 while it is
   built (a "sink" takes the text: a caller buffer, a hash, an HMAC, or any
   mix). Sorting works on small index arrays on the stack. */

#if SSMB_SIGV4_MAX_HEADERS < 1 || SSMB_SIGV4_MAX_HEADERS > 4096 || SSMB_SIGV4_MAX_QUERY < 1 || \
    SSMB_SIGV4_MAX_QUERY > 4096
#error "ssmbridge.h: SSMB_SIGV4_MAX_HEADERS and SSMB_SIGV4_MAX_QUERY must be between 1 and 4096"
#endif

#define SSMB__SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SSMB__SIGV4_MAX_TIME INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define SSMB__SIGV4_DEFAULT_EXPIRES 900u           /* presigned URL lifetime when none is given */
#define SSMB__SIGV4_MAX_EXPIRES 604800u            /* seven days, the longest AWS accepts */
#define SSMB__SIGV4_MAX_PATH_DEPTH 128             /* segments kept while removing "." and ".." */
#define SSMB__SIGV4_ADDED_HEADERS 3                /* x-amz-date, -security-token, -content-sha256 */
#define SSMB__SIGV4_ADDED_PARAMS 6                 /* X-Amz-Algorithm ... X-Amz-SignedHeaders */
#define SSMB__SIGV4_HEADER_SLOTS (SSMB_SIGV4_MAX_HEADERS + SSMB__SIGV4_ADDED_HEADERS)
#define SSMB__SIGV4_PARAM_SLOTS (SSMB_SIGV4_MAX_QUERY + SSMB__SIGV4_ADDED_PARAMS)

/* ---- sink: where generated text goes ---- */

/* invariant: the first min(len, cap) bytes of buf hold the text so far; len
   counts every byte produced, also those past cap (saturating), so a short
   buffer still learns the size it needs. */
typedef struct ssmb__sink {
    char *buf;
    size_t cap;
    size_t len;
    ssmb_sha256_ctx *hash;      /* optional: every byte is also hashed */
    ssmb_hmac_sha256_ctx *mac;  /* optional: every byte is also MACed */
} ssmb__sink;

static void ssmb__sink_init(ssmb__sink *s, char *buf, size_t cap) {
    s->buf = buf;
    s->cap = buf ? cap : 0;
    s->len = 0;
    s->hash = NULL;
    s->mac = NULL;
}

static void ssmb__put(ssmb__sink *s, const char *p, size_t n) {
    if (n == 0) return;
    if (s->hash) ssmb_sha256_update(s->hash, p, n);
    if (s->mac) ssmb_hmac_sha256_update(s->mac, p, n);
    if (s->len < s->cap) memcpy(s->buf + s->len, p, SSMB__MIN(n, s->cap - s->len));
    s->len = n > (size_t)-1 - s->len ? (size_t)-1 : s->len + n;
}

static void ssmb__put_c(ssmb__sink *s, char c) { ssmb__put(s, &c, 1); }
static void ssmb__put_z(ssmb__sink *s, const char *z) { ssmb__put(s, z, strlen(z)); }
static void ssmb__put_str(ssmb__sink *s, ssmb_str v) { ssmb__put(s, v.ptr, v.len); }

/* Ends the text with a NUL when text and NUL fit; *out_len = text length. */
static ssmb_result ssmb__sink_finish(ssmb__sink *s, size_t *out_len) {
    if (out_len) *out_len = s->len;
    if (s->len >= s->cap) return SSMB_ERR_BUFFER_TOO_SMALL;
    s->buf[s->len] = '\0';
    return SSMB_OK;
}

/* ---- character classes and URI encoding ---- */

/* RFC 3986 §2.3 unreserved characters: the only ones SigV4 never encodes. */
static int ssmb__is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

/* RFC 7230 §3.2.6 tchar: what a method or a header name is made of. */
static int ssmb__is_tchar(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static unsigned char ssmb__ascii_lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

static int ssmb__str_valid(ssmb_str s) { return s.ptr != NULL || s.len == 0; }

static int ssmb__is_token(ssmb_str s) {
    size_t i;
    if (s.len == 0 || !s.ptr) return 0;
    for (i = 0; i < s.len; i++)
        if (!ssmb__is_tchar((unsigned char)s.ptr[i])) return 0;
    return 1;
}

/* 1 when every '%' in the text starts a %XX escape (RFC 3986 §2.1). */
static int ssmb__pct_valid(const char *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (p[i] != '%') continue;
        if (i + 2 >= n || ssmb__hex_value(p[i + 1]) < 0 || ssmb__hex_value(p[i + 2]) < 0) return 0;
        i += 2;
    }
    return 1;
}

static unsigned char ssmb__pct_byte(const char *p) {
    return (unsigned char)(ssmb__hex_value(p[1]) << 4 | ssmb__hex_value(p[2]));
}

static void ssmb__put_pct(ssmb__sink *s, unsigned char b) {
    static const char upper[] = "0123456789ABCDEF";
    char e[3];
    e[0] = '%';
    e[1] = upper[b >> 4];
    e[2] = upper[b & 15];
    ssmb__put(s, e, 3);
}

/* SigV4 URI encoding: unreserved bytes as they are, every other byte as %XX
   with upper-case hex. decode: the text is already percent-encoded (as sent,
   escapes checked beforehand), so each %XX is decoded first and the result
   is the canonical single encoding. keep_slash: a literal '/' stays (paths).
   Runs of bytes that need no change are written in one piece. */
static void ssmb__put_uri(ssmb__sink *s, const char *p, size_t n, int decode, int keep_slash) {
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned char b = (unsigned char)p[i];
        size_t next = i + 1;
        if (ssmb__is_unreserved(b) || (keep_slash && b == '/')) {
            i++;
            continue;
        }
        if (decode && b == '%') {
            b = ssmb__pct_byte(p + i);
            next = i + 3;
        }
        ssmb__put(s, p + run, i - run);
        if (ssmb__is_unreserved(b)) ssmb__put_c(s, (char)b);
        else ssmb__put_pct(s, b);
        i = run = next;
    }
    ssmb__put(s, p + run, n - run);
}

/* Produces the URI-encoded form of a text one character at a time, so two
   texts can be compared in encoded order without storing either. */
typedef struct ssmb__uri_iter {
    const char *p, *end;
    int decode;
    char pending[2];
    int npending;
} ssmb__uri_iter;

static void ssmb__uri_iter_init(ssmb__uri_iter *it, ssmb_str text, int decode) {
    it->p = text.ptr;
    it->end = text.ptr + text.len;
    it->decode = decode;
    it->npending = 0;
}

/* The next encoded character, or -1 at the end. */
static int ssmb__uri_iter_next(ssmb__uri_iter *it) {
    static const char upper[] = "0123456789ABCDEF";
    unsigned char b;
    if (it->npending) return (unsigned char)it->pending[2 - it->npending--];
    if (it->p == it->end) return -1;
    b = (unsigned char)*it->p++;
    if (it->decode && b == '%') {
        b = ssmb__pct_byte(it->p - 1);
        it->p += 2;
    }
    if (ssmb__is_unreserved(b)) return b;
    it->pending[0] = upper[b >> 4];
    it->pending[1] = upper[b & 15];
    it->npending = 2;
    return '%';
}

/* Byte order of the encoded forms of a and b. */
static int ssmb__uri_compare(ssmb_str a, int decode_a, ssmb_str b, int decode_b) {
    ssmb__uri_iter x, y;
    ssmb__uri_iter_init(&x, a, decode_a);
    ssmb__uri_iter_init(&y, b, decode_b);
    for (;;) {
        int cx = ssmb__uri_iter_next(&x), cy = ssmb__uri_iter_next(&y);
        if (cx != cy) return cx < cy ? -1 : 1;
        if (cx < 0) return 0;
    }
}

/* ---- stable sort of small index arrays ---- */

typedef int (*ssmb__compare_fn)(const void *ctx, uint16_t a, uint16_t b);

/* Bottom-up merge sort; tmp holds n more indices. Stable: equal keys keep
   their order, which SigV4 needs for repeated header names. */
static void ssmb__sort_indices(uint16_t *idx, uint16_t *tmp, size_t n, ssmb__compare_fn cmp, const void *ctx) {
    size_t width, lo;
    for (width = 1; width < n; width *= 2) {
        for (lo = 0; lo < n; lo += 2 * width) {
            size_t mid = SSMB__MIN(lo + width, n), hi = SSMB__MIN(lo + 2 * width, n);
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) tmp[o++] = cmp(ctx, idx[j], idx[i]) < 0 ? idx[j++] : idx[i++];
            while (i < mid) tmp[o++] = idx[i++];
            while (j < hi) tmp[o++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

/* ---- dates ---- */

static int ssmb__is_leap_year(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int ssmb__days_in_month(int64_t y, int m) {
    static const uint8_t days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return days[m - 1] + (m == 2 && ssmb__is_leap_year(y));
}

/* Days from 1970-01-01 to January 1st of year y (y >= 1970), counting the
   leap years 1970..y-1 as those up to y-1 minus those up to 1969. */
static int64_t ssmb__days_before_year(int64_t y) {
    int64_t leap_days = ((y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400) - (1969 / 4 - 1969 / 100 + 1969 / 400);
    return 365 * (y - 1970) + leap_days;
}

static void ssmb__put_digits(char *out, int64_t v, int width) {
    while (width-- > 0) {
        out[width] = (char)('0' + v % 10);
        v /= 10;
    }
}

SSMB_APIDEF ssmb_result ssmb_amz_date(int64_t unix_seconds, char out[17]) {
    int64_t days, secs, year, day_of_year;
    int month = 1;
    if (!out || unix_seconds < 0 || unix_seconds > SSMB__SIGV4_MAX_TIME) return SSMB_ERR_INVALID_ARG;
    days = unix_seconds / 86400;
    secs = unix_seconds % 86400;
    /* 366 days a year underestimates the year by at most about 17 here. */
    year = 1970 + days / 366;
    while (ssmb__days_before_year(year + 1) <= days) year++;
    day_of_year = days - ssmb__days_before_year(year);
    while (day_of_year >= ssmb__days_in_month(year, month)) day_of_year -= ssmb__days_in_month(year, month++);
    ssmb__put_digits(out, year, 4);
    ssmb__put_digits(out + 4, month, 2);
    ssmb__put_digits(out + 6, day_of_year + 1, 2);
    out[8] = 'T';
    ssmb__put_digits(out + 9, secs / 3600, 2);
    ssmb__put_digits(out + 11, secs / 60 % 60, 2);
    ssmb__put_digits(out + 13, secs % 60, 2);
    out[15] = 'Z';
    out[16] = '\0';
    return SSMB_OK;
}

/* 1 when text matches pattern: 'd' stands for one digit, anything else for
   itself. */
static int ssmb__match_pattern(const char *text, size_t len, const char *pattern) {
    size_t i;
    if (len != strlen(pattern)) return 0;
    for (i = 0; i < len; i++) {
        if (pattern[i] == 'd' ? (text[i] < '0' || text[i] > '9') : text[i] != pattern[i]) return 0;
    }
    return 1;
}

static int ssmb__read_digits(const char *p, int width) {
    int v = 0;
    while (width-- > 0) v = v * 10 + (*p++ - '0');
    return v;
}

SSMB_APIDEF ssmb_result ssmb_amz_date_parse(const char *text, size_t len, int64_t *unix_seconds) {
    /* Field offsets: year, month, day, hour, minute, second. */
    static const uint8_t basic[6] = {0, 4, 6, 9, 11, 13}, extended[6] = {0, 5, 8, 11, 14, 17};
    const uint8_t *at;
    int y, mo, d, h, mi, s;
    if (!text || !unix_seconds) return SSMB_ERR_INVALID_ARG;
    if (ssmb__match_pattern(text, len, "ddddddddTddddddZ")) at = basic;
    else if (ssmb__match_pattern(text, len, "dddd-dd-ddTdd:dd:ddZ")) at = extended;
    else return SSMB_ERR_MALFORMED;
    y = ssmb__read_digits(text + at[0], 4);
    mo = ssmb__read_digits(text + at[1], 2);
    d = ssmb__read_digits(text + at[2], 2);
    h = ssmb__read_digits(text + at[3], 2);
    mi = ssmb__read_digits(text + at[4], 2);
    s = ssmb__read_digits(text + at[5], 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > ssmb__days_in_month(y, mo) || h > 23 || mi > 59 || s > 59)
        return SSMB_ERR_MALFORMED;
    d -= 1;
    while (--mo >= 1) d += ssmb__days_in_month(y, mo);
    *unix_seconds = (ssmb__days_before_year(y) + d) * 86400 + h * 3600 + mi * 60 + s;
    return SSMB_OK;
}

/* ---- parameters ---- */

/* Byte range tests eight bytes at a time (session tokens run to a
   kilobyte): a high bit in (x - n * ones) & ~x marks a byte below n (n <=
   128), one in (x + (127 - m) * ones) | x a byte above m (m <= 127). A
   borrow or carry leaves only a byte that already counts, so "none" is
   exact; the remaining bytes are tested one by one. */
#define SSMB__BYTES_ONES UINT64_C(0x0101010101010101)
#define SSMB__BYTES_HIGHS UINT64_C(0x8080808080808080)

/* 1 when some byte of s is below n. */
static int ssmb__any_below(ssmb_str s, unsigned n) {
    uint64_t hit = 0, x;
    size_t i = 0;
    for (; i + 8 <= s.len; i += 8) {
        memcpy(&x, s.ptr + i, 8);
        hit |= (x - SSMB__BYTES_ONES * n) & ~x;
    }
    hit &= SSMB__BYTES_HIGHS;
    for (; i < s.len; i++) hit |= (unsigned char)s.ptr[i] < n;
    return hit != 0;
}

/* 1 when some byte of s is above m. */
static int ssmb__any_above(ssmb_str s, unsigned m) {
    uint64_t hit = 0, x;
    size_t i = 0;
    for (; i + 8 <= s.len; i += 8) {
        memcpy(&x, s.ptr + i, 8);
        hit |= (x + SSMB__BYTES_ONES * (127 - m)) | x;
    }
    hit &= SSMB__BYTES_HIGHS;
    for (; i < s.len; i++) hit |= (unsigned char)s.ptr[i] > m;
    return hit != 0;
}

/* Region and service go into the credential scope between '/': letters,
   digits, '-', '_' and '.' only ("us-east-1", "ssmmessages"). */
static int ssmb__sigv4_scope_part_ok(ssmb_str s) {
    size_t i;
    if (s.len == 0 || !s.ptr) return 0;
    for (i = 0; i < s.len; i++)
        if (!ssmb__is_unreserved((unsigned char)s.ptr[i]) || s.ptr[i] == '~') return 0;
    return 1;
}

/* Visible ASCII (0x21..0x7e) without the characters in `banned`. */
static int ssmb__is_visible(ssmb_str s, const char *banned) {
    if (!ssmb__str_valid(s) || ssmb__any_below(s, 0x21) || ssmb__any_above(s, 0x7e)) return 0;
    for (; *banned && s.len; banned++)
        if (memchr(s.ptr, *banned, s.len)) return 0;
    return 1;
}

/* What the string to sign needs: time, region, service. */
static ssmb_result ssmb__sigv4_check_scope(const ssmb_sigv4_params *p, char amz_date[17]) {
    if (!p || !ssmb__sigv4_scope_part_ok(p->region) || !ssmb__sigv4_scope_part_ok(p->service))
        return SSMB_ERR_INVALID_ARG;
    return ssmb_amz_date(p->time, amz_date);
}

/* The access key id sits in "Credential=<id>/<scope>, "; the token is sent
   as a header value or a query parameter. */
static ssmb_result ssmb__sigv4_check_identity(const ssmb_sigv4_params *p) {
    if (p->creds.access_key_id.len == 0 || !ssmb__is_visible(p->creds.access_key_id, "/,="))
        return SSMB_ERR_INVALID_ARG;
    return ssmb__is_visible(p->creds.session_token, "") ? SSMB_OK : SSMB_ERR_INVALID_ARG;
}

static ssmb_result ssmb__sigv4_check_secret(const ssmb_sigv4_params *p) {
    return p->creds.secret_access_key.len && p->creds.secret_access_key.ptr ? SSMB_OK : SSMB_ERR_INVALID_ARG;
}

/* "<yyyymmdd>/<region>/<service>/aws4_request"; slash is "/" or, inside a
   query parameter, "%2F" (region and service need no encoding). */
static void ssmb__sigv4_put_scope(ssmb__sink *s, const ssmb_sigv4_params *p, const char *amz_date,
                                  const char *slash) {
    ssmb__put(s, amz_date, 8);
    ssmb__put_z(s, slash);
    ssmb__put_str(s, p->region);
    ssmb__put_z(s, slash);
    ssmb__put_str(s, p->service);
    ssmb__put_z(s, slash);
    ssmb__put_z(s, "aws4_request");
}

/* ---- the request, prepared for signing ---- */

typedef struct ssmb__sigv4_header {
    ssmb_str name;
    ssmb_str value;
} ssmb__sigv4_header;

/* How a query parameter's value is written. */
enum {
    SSMB__PARAM_AS_SENT = 0,        /* a piece of the request's query: decode, then encode */
    SSMB__PARAM_TEXT = 1,           /* plain text: encode */
    SSMB__PARAM_CREDENTIAL = 2,     /* "<access key id>/<scope>" */
    SSMB__PARAM_SIGNED_HEADERS = 3  /* the signed header list */
};

typedef struct ssmb__sigv4_param {
    ssmb_str name;
    ssmb_str value;
    int kind;
} ssmb__sigv4_param;

/* Everything one signing needs, validated, with headers and query
   parameters sorted; text stays in the caller's request. */
typedef struct ssmb__sigv4 {
    const ssmb_sigv4_request *req;
    const ssmb_sigv4_params *p;
    int presigned;                  /* canonical request of the query (presigned URL) form */
    char amz_date[17];
    char payload_hash[65];
    size_t payload_hash_len;
    char expires[12];
    int path_has_dots;              /* a "." or ".." segment: path_seg holds what survives */
    size_t path_seg[SSMB__SIGV4_MAX_PATH_DEPTH];
    size_t path_seg_count;
    ssmb__sigv4_header header[SSMB__SIGV4_HEADER_SLOTS];
    uint16_t header_order[SSMB__SIGV4_HEADER_SLOTS];
    uint8_t header_repeats[SSMB__SIGV4_HEADER_SLOTS]; /* in sorted order: same name as the one before */
    size_t header_count;
    ssmb__sigv4_param param[SSMB__SIGV4_PARAM_SLOTS];
    uint16_t param_order[SSMB__SIGV4_PARAM_SLOTS];
    size_t param_count;
} ssmb__sigv4;

static ssmb_result ssmb__sigv4_prepare_payload(ssmb__sigv4 *c) {
    const ssmb_sigv4_request *req = c->req;
    uint8_t digest[32];
    if (req->payload_hash.len) {
        /* "UNSIGNED-PAYLOAD", "STREAMING-..." or lower-case hex: one visible word. */
        if (req->payload_hash.len > 64 || !ssmb__is_visible(req->payload_hash, "")) return SSMB_ERR_INVALID_ARG;
        memcpy(c->payload_hash, req->payload_hash.ptr, req->payload_hash.len);
        c->payload_hash[req->payload_hash.len] = '\0';
        c->payload_hash_len = req->payload_hash.len;
        return SSMB_OK;
    }
    if (!req->body && req->body_len) return SSMB_ERR_INVALID_ARG;
    ssmb_sha256(req->body, req->body_len, digest);
    c->payload_hash_len = 64;
    return ssmb_hex_encode(digest, 32, c->payload_hash, sizeof c->payload_hash);
}

static ssmb_result ssmb__sigv4_prepare_expires(ssmb__sigv4 *c) {
    uint32_t e = c->p->expires ? c->p->expires : SSMB__SIGV4_DEFAULT_EXPIRES, t;
    int width = 1;
    if (e > SSMB__SIGV4_MAX_EXPIRES) return SSMB_ERR_INVALID_ARG;
    for (t = e; t >= 10; t /= 10) width++;
    ssmb__put_digits(c->expires, e, width);
    c->expires[width] = '\0';
    return SSMB_OK;
}

/* ---- canonical URI ---- */

/* Length of the path segment that starts at offset i (up to the next '/'). */
static size_t ssmb__segment_len(ssmb_str path, size_t i) {
    const char *slash = (const char *)memchr(path.ptr + i, '/', path.len - i);
    return slash ? (size_t)(slash - (path.ptr + i)) : path.len - i;
}

static int ssmb__is_dot_segment(const char *p, size_t n) {
    return (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
}

/* Remembers the segments that survive "." and ".." (RFC 3986 §5.2.4, with
   empty segments dropped as well). Only paths with dot segments need this. */
static ssmb_result ssmb__sigv4_resolve_dots(ssmb__sigv4 *c) {
    ssmb_str path = c->req->path;
    size_t i, n;
    for (i = 1; i <= path.len; i += n + 1) {
        n = ssmb__segment_len(path, i);
        if (n == 0 || (n == 1 && path.ptr[i] == '.')) continue;
        if (n == 2 && path.ptr[i] == '.' && path.ptr[i + 1] == '.') {
            if (c->path_seg_count) c->path_seg_count--;
            continue;
        }
        if (c->path_seg_count == SSMB__SIGV4_MAX_PATH_DEPTH) return SSMB_ERR_LIMIT;
        c->path_seg[c->path_seg_count++] = i;
    }
    return SSMB_OK;
}

static ssmb_result ssmb__sigv4_prepare_path(ssmb__sigv4 *c) {
    ssmb_str path = c->req->path;
    size_t i, n;
    c->path_has_dots = 0;
    c->path_seg_count = 0;
    if (!ssmb__str_valid(path)) return SSMB_ERR_INVALID_ARG;
    if (path.len == 0) return SSMB_OK;
    if (path.ptr[0] != '/') return SSMB_ERR_INVALID_ARG;
    if ((c->p->flags & SSMB_SIGV4_SINGLE_ENCODE_PATH) && !ssmb__pct_valid(path.ptr, path.len))
        return SSMB_ERR_MALFORMED;
    if (c->p->flags & SSMB_SIGV4_NO_PATH_NORMALIZE) return SSMB_OK;
    for (i = 1; i <= path.len && !c->path_has_dots; i += n + 1) {
        n = ssmb__segment_len(path, i);
        c->path_has_dots = ssmb__is_dot_segment(path.ptr + i, n);
    }
    return c->path_has_dots ? ssmb__sigv4_resolve_dots(c) : SSMB_OK;
}

/* One segment of the canonical URI. The AWS-generic rule encodes the path as
   sent once more ("double encoding": "%3A" becomes "%253A"); S3's rule
   (SSMB_SIGV4_SINGLE_ENCODE_PATH) decodes it first, so it is encoded once. */
static void ssmb__sigv4_put_segment(ssmb__sink *s, const ssmb__sigv4 *c, size_t at, size_t n) {
    ssmb__put_c(s, '/');
    ssmb__put_uri(s, c->req->path.ptr + at, n, (c->p->flags & SSMB_SIGV4_SINGLE_ENCODE_PATH) != 0, 0);
}

/* SigV4 step 1, canonical URI. Normalised: empty, "." and ".." segments
   removed; a trailing '/' kept when a segment precedes it; "/" at least. */
static void ssmb__sigv4_put_path(ssmb__sink *s, const ssmb__sigv4 *c) {
    ssmb_str path = c->req->path;
    size_t i, n, written = 0;
    if (path.len == 0) {
        ssmb__put_c(s, '/');
        return;
    }
    if (c->p->flags & SSMB_SIGV4_NO_PATH_NORMALIZE) {
        ssmb__put_uri(s, path.ptr, path.len, (c->p->flags & SSMB_SIGV4_SINGLE_ENCODE_PATH) != 0, 1);
        return;
    }
    if (c->path_has_dots) {
        for (written = 0; written < c->path_seg_count; written++) {
            size_t at = c->path_seg[written];
            ssmb__sigv4_put_segment(s, c, at, ssmb__segment_len(path, at));
        }
    } else {
        for (i = 1; i <= path.len; i += n + 1) {
            n = ssmb__segment_len(path, i);
            if (n == 0) continue;
            ssmb__sigv4_put_segment(s, c, i, n);
            written++;
        }
    }
    if (written == 0 || path.ptr[path.len - 1] == '/') ssmb__put_c(s, '/');
}

/* ---- canonical headers ---- */

/* Byte order of the lower-case forms of two header names. */
static int ssmb__compare_lower(ssmb_str a, ssmb_str b) {
    size_t i, n = SSMB__MIN(a.len, b.len);
    for (i = 0; i < n; i++) {
        int d = ssmb__ascii_lower((unsigned char)a.ptr[i]) - ssmb__ascii_lower((unsigned char)b.ptr[i]);
        if (d != 0) return d;
    }
    return (a.len > b.len) - (a.len < b.len);
}

static int ssmb__name_is(ssmb_str name, const char *lower) {
    return name.len == strlen(lower) && ssmb__compare_lower(name, ssmb_str_c(lower)) == 0;
}

/* Space, tab, CR or LF (one comparison decides for every byte above ' '). */
static int ssmb__is_fold_space(char c) {
    return (unsigned char)c <= ' ' && (c == ' ' || c == '\t' || c == '\r' || c == '\n');
}

static ssmb_str ssmb__trim(ssmb_str v) {
    while (v.len && ssmb__is_fold_space(v.ptr[0])) v.ptr++, v.len--;
    while (v.len && ssmb__is_fold_space(v.ptr[v.len - 1])) v.len--;
    return v;
}

/* A header value may hold visible characters, spaces and tabs; a line
   break only as obsolete line folding, CRLF or LF followed by a space or a
   tab (RFC 7230 §3.2.4), which signs like a space. */
static int ssmb__sigv4_value_ok(ssmb_str v) {
    size_t i;
    for (i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.ptr[i];
        if (ch > 0x20 && ch != 0x7f) continue;
        if (ch == '\r') {
            if (i + 1 >= v.len || v.ptr[i + 1] != '\n') return 0;
        } else if (ch == '\n') {
            if (i + 1 >= v.len || (v.ptr[i + 1] != ' ' && v.ptr[i + 1] != '\t')) return 0;
        } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static void ssmb__sigv4_add_header(ssmb__sigv4 *c, ssmb_str name, ssmb_str value) {
    c->header[c->header_count].name = name;
    c->header[c->header_count].value = value;
    c->header_order[c->header_count] = (uint16_t)c->header_count;
    c->header_count++;
}

enum { SSMB__SEEN_HOST = 1, SSMB__SEEN_DATE = 2, SSMB__SEEN_TOKEN = 4, SSMB__SEEN_CONTENT_SHA256 = 8 };

/* Notes the headers the signer would otherwise add. A given X-Amz-Date
   must be the signing time, or the signature could never verify. */
static ssmb_result ssmb__sigv4_note_header(const ssmb__sigv4 *c, const ssmb_http_header *h, unsigned *seen) {
    if (ssmb__name_is(h->name, "host")) {
        *seen |= SSMB__SEEN_HOST;
    } else if (ssmb__name_is(h->name, "x-amz-date")) {
        ssmb_str v = ssmb__trim(h->value);
        if (v.len != 16 || memcmp(v.ptr, c->amz_date, 16) != 0) return SSMB_ERR_INVALID_ARG;
        *seen |= SSMB__SEEN_DATE;
    } else if (ssmb__name_is(h->name, "x-amz-security-token")) {
        *seen |= SSMB__SEEN_TOKEN;
    } else if (ssmb__name_is(h->name, "x-amz-content-sha256")) {
        *seen |= SSMB__SEEN_CONTENT_SHA256;
    }
    return SSMB_OK;
}

static void ssmb__sigv4_add_signer_headers(ssmb__sigv4 *c, unsigned seen) {
    const ssmb_sigv4_params *p = c->p;
    ssmb_str v;
    if (!(seen & SSMB__SEEN_DATE)) {
        v.ptr = c->amz_date;
        v.len = 16;
        ssmb__sigv4_add_header(c, ssmb_str_c("x-amz-date"), v);
    }
    if (p->creds.session_token.len && !(p->flags & SSMB_SIGV4_OMIT_SESSION_TOKEN) && !(seen & SSMB__SEEN_TOKEN))
        ssmb__sigv4_add_header(c, ssmb_str_c("x-amz-security-token"), p->creds.session_token);
    if ((p->flags & SSMB_SIGV4_SIGN_BODY_HEADER) && !(seen & SSMB__SEEN_CONTENT_SHA256)) {
        v.ptr = c->payload_hash;
        v.len = c->payload_hash_len;
        ssmb__sigv4_add_header(c, ssmb_str_c("x-amz-content-sha256"), v);
    }
}

static int ssmb__sigv4_header_cmp(const void *ctx, uint16_t a, uint16_t b) {
    const ssmb__sigv4 *c = (const ssmb__sigv4 *)ctx;
    return ssmb__compare_lower(c->header[a].name, c->header[b].name);
}

static ssmb_result ssmb__sigv4_collect_headers(ssmb__sigv4 *c) {
    const ssmb_sigv4_request *req = c->req;
    uint16_t tmp[SSMB__SIGV4_HEADER_SLOTS];
    unsigned seen = 0;
    size_t i;
    if (req->header_count > SSMB_SIGV4_MAX_HEADERS) return SSMB_ERR_LIMIT;
    if (req->header_count && !req->headers) return SSMB_ERR_INVALID_ARG;
    c->header_count = 0;
    for (i = 0; i < req->header_count; i++) {
        const ssmb_http_header *h = &req->headers[i];
        ssmb_result r;
        if (!ssmb__str_valid(h->name) || !ssmb__str_valid(h->value)) return SSMB_ERR_INVALID_ARG;
        if (!ssmb__is_token(h->name) || !ssmb__sigv4_value_ok(h->value)) return SSMB_ERR_MALFORMED;
        r = ssmb__sigv4_note_header(c, h, &seen);
        if (r != SSMB_OK) return r;
        ssmb__sigv4_add_header(c, h->name, h->value);
    }
    /* SigV4 signs Host always; the caller gives it, as it will be sent. */
    if (!(seen & SSMB__SEEN_HOST)) return SSMB_ERR_INVALID_ARG;
    if (!c->presigned) ssmb__sigv4_add_signer_headers(c, seen);
    ssmb__sort_indices(c->header_order, tmp, c->header_count, ssmb__sigv4_header_cmp, c);
    for (i = 0; i < c->header_count; i++)
        c->header_repeats[i] = i > 0 && ssmb__sigv4_header_cmp(c, c->header_order[i - 1], c->header_order[i]) == 0;
    return SSMB_OK;
}

/* A header name in lower case; encoded: URI-encoded as well (for the
   X-Amz-SignedHeaders parameter). */
static void ssmb__sigv4_put_lower(ssmb__sink *s, ssmb_str name, int encoded) {
    char chunk[64];
    size_t i = 0;
    while (i < name.len) {
        size_t k, n = SSMB__MIN(sizeof chunk, name.len - i);
        for (k = 0; k < n; k++) chunk[k] = (char)ssmb__ascii_lower((unsigned char)name.ptr[i + k]);
        if (encoded) ssmb__put_uri(s, chunk, n, 0, 0);
        else ssmb__put(s, chunk, n);
        i += n;
    }
}

/* SigV4 step 1, canonical header value: trimmed, every inner run of spaces,
   tabs and folded line breaks written as one space. */
static void ssmb__sigv4_put_value(ssmb__sink *s, ssmb_str v) {
    size_t i = 0, start;
    int first = 1;
    if (!ssmb__any_below(v, 0x21)) { /* nothing to trim or fold */
        ssmb__put_str(s, v);
        return;
    }
    for (;;) {
        while (i < v.len && ssmb__is_fold_space(v.ptr[i])) i++;
        if (i == v.len) return;
        start = i;
        while (i < v.len && !ssmb__is_fold_space(v.ptr[i])) i++;
        if (!first) ssmb__put_c(s, ' ');
        ssmb__put(s, v.ptr + start, i - start);
        first = 0;
    }
}

/* SigV4 step 1, canonical headers: "name:value\n" sorted by name; a repeated
   name gives one line with its values joined by ',' in the order given. */
static void ssmb__sigv4_put_headers(ssmb__sink *s, const ssmb__sigv4 *c) {
    size_t i = 0;
    while (i < c->header_count) {
        const ssmb__sigv4_header *h = &c->header[c->header_order[i++]];
        ssmb__sigv4_put_lower(s, h->name, 0);
        ssmb__put_c(s, ':');
        ssmb__sigv4_put_value(s, h->value);
        while (i < c->header_count && c->header_repeats[i]) {
            ssmb__put_c(s, ',');
            ssmb__sigv4_put_value(s, c->header[c->header_order[i++]].value);
        }
        ssmb__put_c(s, '\n');
    }
}

/* The signed header list: the distinct lower-case names joined by ';'. */
static void ssmb__sigv4_put_signed_headers(ssmb__sink *s, const ssmb__sigv4 *c, int encoded) {
    size_t i;
    for (i = 0; i < c->header_count; i++) {
        if (c->header_repeats[i]) continue;
        if (i > 0) ssmb__put_z(s, encoded ? "%3B" : ";");
        ssmb__sigv4_put_lower(s, c->header[c->header_order[i]].name, encoded);
    }
}

/* ---- canonical query ---- */

/* The parameters presigning adds (PROTOCOL.md §4.1 lists the same names as
   the marks of an already presigned URL). */
static const char *const ssmb__sigv4_presign_names[] = {
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-Security-Token", "X-Amz-SignedHeaders", "X-Amz-Signature"};

static int ssmb__sigv4_is_presign_name(ssmb_str name) {
    size_t i;
    for (i = 0; i < SSMB__COUNT_OF(ssmb__sigv4_presign_names); i++)
        if (ssmb__uri_compare(name, 1, ssmb_str_c(ssmb__sigv4_presign_names[i]), 0) == 0) return 1;
    return 0;
}

static void ssmb__sigv4_add_param(ssmb__sigv4 *c, ssmb_str name, ssmb_str value, int kind) {
    c->param[c->param_count].name = name;
    c->param[c->param_count].value = value;
    c->param[c->param_count].kind = kind;
    c->param_order[c->param_count] = (uint16_t)c->param_count;
    c->param_count++;
}

/* One "name=value" piece of the query as sent; without '=' the value is
   empty. '+' is an ordinary character here (RFC 3986), not a space. */
static ssmb_result ssmb__sigv4_add_query_piece(ssmb__sigv4 *c, const char *p, size_t n) {
    const char *eq = (const char *)memchr(p, '=', n);
    ssmb_str name, value;
    if (!ssmb__pct_valid(p, n)) return SSMB_ERR_MALFORMED;
    if (c->param_count == SSMB_SIGV4_MAX_QUERY) return SSMB_ERR_LIMIT;
    name.ptr = p;
    name.len = eq ? (size_t)(eq - p) : n;
    value.ptr = eq ? eq + 1 : p + n;
    value.len = eq ? n - name.len - 1 : 0;
    if (c->presigned && ssmb__sigv4_is_presign_name(name)) return SSMB_ERR_INVALID_ARG;
    ssmb__sigv4_add_param(c, name, value, SSMB__PARAM_AS_SENT);
    return SSMB_OK;
}

static void ssmb__sigv4_add_presign_params(ssmb__sigv4 *c) {
    const ssmb_sigv4_params *p = c->p;
    ssmb_str none, date;
    none.ptr = "";
    none.len = 0;
    date.ptr = c->amz_date;
    date.len = 16;
    ssmb__sigv4_add_param(c, ssmb_str_c("X-Amz-Algorithm"), ssmb_str_c(SSMB__SIGV4_ALGORITHM), SSMB__PARAM_TEXT);
    ssmb__sigv4_add_param(c, ssmb_str_c("X-Amz-Credential"), none, SSMB__PARAM_CREDENTIAL);
    ssmb__sigv4_add_param(c, ssmb_str_c("X-Amz-Date"), date, SSMB__PARAM_TEXT);
    ssmb__sigv4_add_param(c, ssmb_str_c("X-Amz-Expires"), ssmb_str_c(c->expires), SSMB__PARAM_TEXT);
    if (p->creds.session_token.len && !(p->flags & SSMB_SIGV4_OMIT_SESSION_TOKEN))
        ssmb__sigv4_add_param(c, ssmb_str_c("X-Amz-Security-Token"), p->creds.session_token, SSMB__PARAM_TEXT);
    ssmb__sigv4_add_param(c, ssmb_str_c("X-Amz-SignedHeaders"), none, SSMB__PARAM_SIGNED_HEADERS);
}

/* Sorted by encoded name, then encoded value. The presigning parameters
   never share a name with another, so only request pieces compare values. */
static int ssmb__sigv4_param_cmp(const void *ctx, uint16_t a, uint16_t b) {
    const ssmb__sigv4 *c = (const ssmb__sigv4 *)ctx;
    const ssmb__sigv4_param *x = &c->param[a], *y = &c->param[b];
    int as_sent_x = x->kind == SSMB__PARAM_AS_SENT, as_sent_y = y->kind == SSMB__PARAM_AS_SENT;
    int d = ssmb__uri_compare(x->name, as_sent_x, y->name, as_sent_y);
    if (d != 0 || !as_sent_x || !as_sent_y) return d;
    return ssmb__uri_compare(x->value, 1, y->value, 1);
}

/* SigV4 step 1, canonical query: split on '&' (empty pieces dropped). */
static ssmb_result ssmb__sigv4_collect_query(ssmb__sigv4 *c) {
    ssmb_str q = c->req->query;
    uint16_t tmp[SSMB__SIGV4_PARAM_SLOTS];
    size_t i = 0;
    if (!ssmb__str_valid(q)) return SSMB_ERR_INVALID_ARG;
    c->param_count = 0;
    while (i < q.len) {
        const char *amp = (const char *)memchr(q.ptr + i, '&', q.len - i);
        size_t end = amp ? (size_t)(amp - q.ptr) : q.len;
        if (end > i) {
            ssmb_result r = ssmb__sigv4_add_query_piece(c, q.ptr + i, end - i);
            if (r != SSMB_OK) return r;
        }
        i = end + 1;
    }
    if (c->presigned) ssmb__sigv4_add_presign_params(c);
    ssmb__sort_indices(c->param_order, tmp, c->param_count, ssmb__sigv4_param_cmp, c);
    return SSMB_OK;
}

/* X-Amz-Credential: "<access key id>/<scope>", encoded. */
static void ssmb__sigv4_put_credential_param(ssmb__sink *s, const ssmb__sigv4 *c) {
    ssmb_str id = c->p->creds.access_key_id;
    ssmb__put_uri(s, id.ptr, id.len, 0, 0);
    ssmb__put_z(s, "%2F");
    ssmb__sigv4_put_scope(s, c->p, c->amz_date, "%2F");
}

static void ssmb__sigv4_put_query(ssmb__sink *s, const ssmb__sigv4 *c) {
    size_t i;
    for (i = 0; i < c->param_count; i++) {
        const ssmb__sigv4_param *q = &c->param[c->param_order[i]];
        int as_sent = q->kind == SSMB__PARAM_AS_SENT;
        if (i > 0) ssmb__put_c(s, '&');
        ssmb__put_uri(s, q->name.ptr, q->name.len, as_sent, 0);
        ssmb__put_c(s, '=');
        if (q->kind == SSMB__PARAM_CREDENTIAL) ssmb__sigv4_put_credential_param(s, c);
        else if (q->kind == SSMB__PARAM_SIGNED_HEADERS) ssmb__sigv4_put_signed_headers(s, c, 1);
        else ssmb__put_uri(s, q->value.ptr, q->value.len, as_sent, 0);
    }
}

/* ---- the four steps ---- */

static ssmb_result ssmb__sigv4_prepare(ssmb__sigv4 *c, const ssmb_sigv4_request *req, const ssmb_sigv4_params *p,
                                       int presigned) {
    ssmb_result r;
    if (!req || !p) return SSMB_ERR_INVALID_ARG;
    c->req = req;
    c->p = p;
    c->presigned = presigned;
    r = ssmb__sigv4_check_scope(p, c->amz_date);
    if (r == SSMB_OK) r = ssmb__sigv4_check_identity(p);
    if (r == SSMB_OK && !ssmb__str_valid(req->method)) r = SSMB_ERR_INVALID_ARG;
    if (r == SSMB_OK && !ssmb__is_token(req->method)) r = SSMB_ERR_MALFORMED;
    if (r == SSMB_OK) r = ssmb__sigv4_prepare_payload(c);
    if (r == SSMB_OK && presigned) r = ssmb__sigv4_prepare_expires(c);
    if (r == SSMB_OK) r = ssmb__sigv4_prepare_path(c);
    if (r == SSMB_OK) r = ssmb__sigv4_collect_headers(c);
    if (r == SSMB_OK) r = ssmb__sigv4_collect_query(c);
    return r;
}

/* SigV4 step 1: method, canonical URI, canonical query, canonical headers,
   signed header list, payload hash; one per line. */
static void ssmb__sigv4_put_canonical(ssmb__sink *s, const ssmb__sigv4 *c) {
    ssmb__put_str(s, c->req->method);
    ssmb__put_c(s, '\n');
    ssmb__sigv4_put_path(s, c);
    ssmb__put_c(s, '\n');
    ssmb__sigv4_put_query(s, c);
    ssmb__put_c(s, '\n');
    ssmb__sigv4_put_headers(s, c);
    ssmb__put_c(s, '\n');
    ssmb__sigv4_put_signed_headers(s, c, 0);
    ssmb__put_c(s, '\n');
    ssmb__put(s, c->payload_hash, c->payload_hash_len);
}

/* SigV4 step 2: algorithm, time, credential scope, hex SHA-256 of the
   canonical request; one per line. */
static void ssmb__sigv4_put_string_to_sign(ssmb__sink *s, const ssmb_sigv4_params *p, const char *amz_date,
                                           const uint8_t creq_sha256[32]) {
    char hex[65];
    (void)ssmb_hex_encode(creq_sha256, 32, hex, sizeof hex);
    ssmb__put_z(s, SSMB__SIGV4_ALGORITHM "\n");
    ssmb__put(s, amz_date, 16);
    ssmb__put_c(s, '\n');
    ssmb__sigv4_put_scope(s, p, amz_date, "/");
    ssmb__put_c(s, '\n');
    ssmb__put(s, hex, 64);
}

static void ssmb__wipe(void *p, size_t n) {
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--) *v++ = 0;
}

/* SigV4 step 3: kDate = HMAC("AWS4" + secret, yyyymmdd), then HMAC with
   the region, the service and "aws4_request" in turn. */
static void ssmb__sigv4_derive_key(const ssmb_sigv4_params *p, const char *amz_date, uint8_t key[32]) {
    ssmb_str secret = p->creds.secret_access_key;
    uint8_t k_secret[64], a[32], b[32];
    size_t k_len = 32;
    if (secret.len <= sizeof k_secret - 4) {
        memcpy(k_secret, "AWS4", 4);
        memcpy(k_secret + 4, secret.ptr, secret.len);
        k_len = 4 + secret.len;
    } else {
        /* RFC 2104 §2: HMAC replaces a key longer than a block by its hash;
           hashing the two parts here spares a copy of the whole secret. */
        ssmb_sha256_ctx h;
        ssmb_sha256_init(&h);
        ssmb_sha256_update(&h, "AWS4", 4);
        ssmb_sha256_update(&h, secret.ptr, secret.len);
        ssmb_sha256_final(&h, k_secret);
        ssmb__wipe(&h, sizeof h);
    }
    ssmb_hmac_sha256(k_secret, k_len, amz_date, 8, a);
    ssmb_hmac_sha256(a, 32, p->region.ptr, p->region.len, b);
    ssmb_hmac_sha256(b, 32, p->service.ptr, p->service.len, a);
    ssmb_hmac_sha256(a, 32, "aws4_request", 12, key);
    ssmb__wipe(k_secret, sizeof k_secret);
    ssmb__wipe(a, sizeof a);
    ssmb__wipe(b, sizeof b);
}

/* Steps 1 to 4 without storing any of the texts: the canonical request
   streams into SHA-256, the string to sign into the HMAC. */
static void ssmb__sigv4_compute(const ssmb__sigv4 *c, char signature[65]) {
    ssmb_sha256_ctx hash;
    ssmb_hmac_sha256_ctx mac;
    ssmb__sink s;
    uint8_t digest[32], key[32];
    ssmb_sha256_init(&hash);
    ssmb__sink_init(&s, NULL, 0);
    s.hash = &hash;
    ssmb__sigv4_put_canonical(&s, c);
    ssmb_sha256_final(&hash, digest);
    ssmb__sigv4_derive_key(c->p, c->amz_date, key);
    ssmb_hmac_sha256_init(&mac, key, 32);
    ssmb__sink_init(&s, NULL, 0);
    s.mac = &mac;
    ssmb__sigv4_put_string_to_sign(&s, c->p, c->amz_date, digest);
    ssmb_hmac_sha256_final(&mac, digest);
    (void)ssmb_hex_encode(digest, 32, signature, 65);
    ssmb__wipe(key, sizeof key);
    ssmb__wipe(&mac, sizeof mac);
}

static void ssmb__sigv4_put_authorization(ssmb__sink *s, const ssmb__sigv4 *c, const char *signature) {
    ssmb__put_z(s, SSMB__SIGV4_ALGORITHM " Credential=");
    ssmb__put_str(s, c->p->creds.access_key_id);
    ssmb__put_c(s, '/');
    ssmb__sigv4_put_scope(s, c->p, c->amz_date, "/");
    ssmb__put_z(s, ", SignedHeaders=");
    ssmb__sigv4_put_signed_headers(s, c, 0);
    ssmb__put_z(s, ", Signature=");
    ssmb__put(s, signature, 64);
}

/* The query to send: the request's own, then the presigning parameters in
   the order aws-c-auth writes them, the signature last. The session token is
   sent even when SSMB_SIGV4_OMIT_SESSION_TOKEN keeps it out of the signature. */
static void ssmb__sigv4_put_presigned_query(ssmb__sink *s, const ssmb__sigv4 *c, const char *signature) {
    ssmb_str q = c->req->query, token = c->p->creds.session_token;
    ssmb__put_str(s, q);
    if (q.len && q.ptr[q.len - 1] != '&') ssmb__put_c(s, '&');
    ssmb__put_z(s, "X-Amz-Algorithm=" SSMB__SIGV4_ALGORITHM "&X-Amz-Credential=");
    ssmb__sigv4_put_credential_param(s, c);
    ssmb__put_z(s, "&X-Amz-Date=");
    ssmb__put(s, c->amz_date, 16);
    ssmb__put_z(s, "&X-Amz-SignedHeaders=");
    ssmb__sigv4_put_signed_headers(s, c, 1);
    ssmb__put_z(s, "&X-Amz-Expires=");
    ssmb__put_z(s, c->expires);
    if (token.len) {
        ssmb__put_z(s, "&X-Amz-Security-Token=");
        ssmb__put_uri(s, token.ptr, token.len, 0, 0);
    }
    ssmb__put_z(s, "&X-Amz-Signature=");
    ssmb__put(s, signature, 64);
}

static void ssmb__sigv4_fill_output(const ssmb__sigv4 *c, const char *signature, ssmb_sigv4_output *out) {
    if (!out) return;
    memcpy(out->amz_date, c->amz_date, sizeof out->amz_date);
    memcpy(out->signature, signature, sizeof out->signature);
    memcpy(out->content_sha256, c->payload_hash, c->payload_hash_len + 1);
}

typedef void (*ssmb__sigv4_writer)(ssmb__sink *s, const ssmb__sigv4 *c, const char *signature);

/* Shared by sign and presign: size check first (a counting pass, nothing
   hashed), then the signature, then the text. */
static ssmb_result ssmb__sigv4_sign_into(ssmb__sigv4 *c, ssmb__sigv4_writer writer, char *out, size_t cap,
                                         size_t *out_len, ssmb_sigv4_output *result) {
    char signature[65];
    ssmb__sink s;
    memset(signature, '0', 64);
    signature[64] = '\0';
    ssmb__sink_init(&s, NULL, 0);
    writer(&s, c, signature);
    if (out_len) *out_len = s.len;
    if (!out || cap <= s.len) return SSMB_ERR_BUFFER_TOO_SMALL;
    ssmb__sigv4_compute(c, signature);
    ssmb__sink_init(&s, out, cap);
    writer(&s, c, signature);
    ssmb__sigv4_fill_output(c, signature, result);
    return ssmb__sink_finish(&s, out_len);
}

SSMB_APIDEF ssmb_result ssmb_sigv4_canonical_request(const ssmb_sigv4_request *req, const ssmb_sigv4_params *p,
                                                     char *out, size_t cap, size_t *out_len) {
    ssmb__sigv4 c;
    ssmb__sink s;
    ssmb_result r = ssmb__sigv4_prepare(&c, req, p, p && (p->flags & SSMB_SIGV4_PRESIGNED));
    if (r != SSMB_OK) return r;
    ssmb__sink_init(&s, out, cap);
    ssmb__sigv4_put_canonical(&s, &c);
    return ssmb__sink_finish(&s, out_len);
}

SSMB_APIDEF ssmb_result ssmb_sigv4_string_to_sign(const ssmb_sigv4_params *p, const uint8_t creq_sha256[32],
                                                  char *out, size_t cap, size_t *out_len) {
    char amz_date[17];
    ssmb__sink s;
    ssmb_result r = ssmb__sigv4_check_scope(p, amz_date);
    if (r != SSMB_OK) return r;
    if (!creq_sha256) return SSMB_ERR_INVALID_ARG;
    ssmb__sink_init(&s, out, cap);
    ssmb__sigv4_put_string_to_sign(&s, p, amz_date, creq_sha256);
    return ssmb__sink_finish(&s, out_len);
}

SSMB_APIDEF ssmb_result ssmb_sigv4_signing_key(const ssmb_sigv4_params *p, uint8_t key[32]) {
    char amz_date[17];
    ssmb_result r = ssmb__sigv4_check_scope(p, amz_date);
    if (r != SSMB_OK) return r;
    if (!key || ssmb__sigv4_check_secret(p) != SSMB_OK) return SSMB_ERR_INVALID_ARG;
    ssmb__sigv4_derive_key(p, amz_date, key);
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_sigv4_signature(const uint8_t key[32], const char *string_to_sign, size_t len, char out[65]) {
    uint8_t mac[32];
    ssmb_hmac_sha256(key, 32, string_to_sign, len, mac);
    (void)ssmb_hex_encode(mac, 32, out, 65);
}

SSMB_APIDEF ssmb_result ssmb_sigv4_sign(const ssmb_sigv4_request *req, const ssmb_sigv4_params *p,
                                        char *authorization, size_t cap, size_t *out_len, ssmb_sigv4_output *out) {
    ssmb__sigv4 c;
    ssmb_result r = ssmb__sigv4_prepare(&c, req, p, 0);
    if (r == SSMB_OK) r = ssmb__sigv4_check_secret(p);
    if (r != SSMB_OK) return r;
    return ssmb__sigv4_sign_into(&c, ssmb__sigv4_put_authorization, authorization, cap, out_len, out);
}

SSMB_APIDEF ssmb_result ssmb_sigv4_presign(const ssmb_sigv4_request *req, const ssmb_sigv4_params *p,
                                           char *query, size_t cap, size_t *out_len, ssmb_sigv4_output *out) {
    ssmb__sigv4 c;
    ssmb_result r = ssmb__sigv4_prepare(&c, req, p, 1);
    if (r == SSMB_OK) r = ssmb__sigv4_check_secret(p);
    if (r != SSMB_OK) return r;
    return ssmb__sigv4_sign_into(&c, ssmb__sigv4_put_presigned_query, query, cap, out_len, out);
}

// >>json
/* (the JSON implementation goes here) */

// >>http
/* (the HTTP/1.1 implementation goes here) */

// >>ws
/* (the RFC 6455 implementation goes here) */

// >>msg
/* (the ClientMessage implementation goes here) */

// >>public
static const char *ssmb__result_name(ssmb_result r) {
    switch (r) {
    case SSMB_OK: return "SSMB_OK";
    case SSMB_AGAIN: return "SSMB_AGAIN: no progress until I/O or a deadline";
    case SSMB_CLOSED: return "SSMB_CLOSED: closed in order";
    case SSMB_ERR_INVALID_ARG: return "SSMB_ERR_INVALID_ARG: invalid argument";
    case SSMB_ERR_INVALID_STATE: return "SSMB_ERR_INVALID_STATE: not allowed in this state";
    case SSMB_ERR_NOMEM: return "SSMB_ERR_NOMEM: out of memory";
    case SSMB_ERR_BUFFER_TOO_SMALL: return "SSMB_ERR_BUFFER_TOO_SMALL: output buffer too small";
    case SSMB_ERR_LIMIT: return "SSMB_ERR_LIMIT: input exceeds a limit";
    case SSMB_ERR_UNSUPPORTED: return "SSMB_ERR_UNSUPPORTED: not supported here";
    case SSMB_ERR_OVERFLOW: return "SSMB_ERR_OVERFLOW: size arithmetic overflow";
    case SSMB_ERR_TRUNCATED: return "SSMB_ERR_TRUNCATED: input ends early";
    case SSMB_ERR_MALFORMED: return "SSMB_ERR_MALFORMED: malformed encoding";
    case SSMB_ERR_IO: return "SSMB_ERR_IO: I/O error";
    case SSMB_ERR_DNS: return "SSMB_ERR_DNS: name resolution failed";
    case SSMB_ERR_TIMEOUT: return "SSMB_ERR_TIMEOUT: timed out";
    case SSMB_ERR_CONNECT: return "SSMB_ERR_CONNECT: connection refused or unreachable";
    case SSMB_ERR_PROXY: return "SSMB_ERR_PROXY: proxy refused the tunnel";
    case SSMB_ERR_TLS: return "SSMB_ERR_TLS: TLS failure";
    case SSMB_ERR_TLS_CERT: return "SSMB_ERR_TLS_CERT: TLS certificate refused";
    case SSMB_ERR_NO_RANDOM: return "SSMB_ERR_NO_RANDOM: no random source";
    case SSMB_ERR_HTTP: return "SSMB_ERR_HTTP: HTTP error";
    case SSMB_ERR_WS_PROTOCOL: return "SSMB_ERR_WS_PROTOCOL: WebSocket protocol error";
    case SSMB_ERR_SSM_PROTOCOL: return "SSMB_ERR_SSM_PROTOCOL: Session Manager protocol error";
    case SSMB_ERR_JSON: return "SSMB_ERR_JSON: malformed or unexpected JSON";
    case SSMB_ERR_AUTH: return "SSMB_ERR_AUTH: authentication failed";
    case SSMB_ERR_DIGEST: return "SSMB_ERR_DIGEST: payload digest mismatch";
    case SSMB_ERR_AWS_API: return "SSMB_ERR_AWS_API: AWS API error";
    case SSMB_ERR_CREDENTIALS: return "SSMB_ERR_CREDENTIALS: no usable credentials";
    case SSMB_ERR_INTERNAL: return "SSMB_ERR_INTERNAL: internal error";
    default: return "unknown ssmb_result";
    }
}

SSMB_APIDEF const char *ssmb_result_str(ssmb_result r) { return ssmb__result_name(r); }

SSMB_APIDEF const char *ssmb_version(void) { return SSMB_VERSION_STRING; }

#endif /* SSMBRIDGE_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the ssmbridge authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication in perpetuity for the benefit of the public at
large and to the detriment of our heirs and successors. We intend this
dedication to be an overt act of relinquishment in perpetuity of all present
and future rights to this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
