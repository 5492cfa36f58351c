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
     L3 engine       non-blocking sockets driven by the host's poll loop;
                     sessions (credentials, StartSession, the data channel,
                     reconnection through ResumeSession) and port forwards.

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

   QUICK START: A SESSION (run a command, get its exit code)
   =========================================================
       ssmb_desc d = {0};                      // zero is default everywhere
       ssmb_engine *eng;
       ssmb_engine_create(&d, &eng);
       ssmb_session_desc sd = {0};             // region, keys, endpoint: the AWS chain
       ssmb_document doc;
       sd.target = "i-0123456789abcdef0";
       ssmb_document_command(&sd, &doc, "uptime");
       ssmb_session s;
       int code = -1;
       ssmb_session_start(eng, &sd, now_ms(), &s);
       for (int done = 0; !done;) {
           ssmb_engine_wait(eng, 1000);        // or poll/epoll over ssmb_engine_fds
           ssmb_engine_tick(eng, now_ms());
           ssmb_event ev;
           while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {
               if (ev.type == SSMB_EVENT_SESSION_OUTPUT) fwrite(ev.data, 1, ev.len, stdout);
               if (ev.type == SSMB_EVENT_SESSION_EXIT) code = ev.exit_code;
               if (ev.type == SSMB_EVENT_SESSION_CLOSED) done = 1;
           }
       }
   A shell: no document, ssmb_session_send for keystrokes, ssmb_session_resize.
   A port forward: ssmb_document_port_forward, then ssmb_forward_open on a
   local address. See the session and forward sections below.

   QUICK START: POLL LOOP (a WebSocket through the engine)
   ======================================================
       ssmb_desc d = {0};                      // zero is default everywhere
       ssmb_engine *eng;
       ssmb_engine_create(&d, &eng);           // loads the system CA bundle
       ssmb_conn_desc c = {0};
       c.url = "wss://example.com/socket";
       ssmb_ws ws;
       ssmb_engine_ws_open(eng, &c, NULL, now_ms(), &ws);
       for (;;) {
           ssmb_engine_wait(eng, 1000);        // or your own poll/epoll
           ssmb_engine_tick(eng, now_ms());
           ssmb_event ev;
           while (ssmb_engine_next_event(eng, &ev) == SSMB_OK) {
               if (ev.type == SSMB_EVENT_WS_MESSAGE) use(ev.piece.data, ev.piece.len);
               if (ev.type == SSMB_EVENT_WS_CLOSED) goto done;
           }
       }

   QUICK START: YOUR OWN TRANSPORT (sans-I/O)
   ==========================================
   ssmb_conn speaks TLS, the HTTP upgrade and WebSocket over bytes you move:
   see the comment above ssmb_conn_create for the loop. With
   SSMB_TLS_EXTERNAL your transport provides the security (a TLS stack you
   already have, a serial link inside a VPN).

   TLS BACKENDS
   ============
   BearSSL (default, -lbearssl): allocates nothing; its engine maps directly
   onto the conn's buffers. mbedTLS (SSMB_USE_MBEDTLS, -lmbedtls -lmbedx509
   -lmbedcrypto): its own allocations follow your mbedTLS configuration (the
   library never touches mbedTLS's process-wide allocator hook). None
   (SSMB_NO_TLS): only SSMB_TLS_EXTERNAL conns. Certificates are always
   verified: the chain to your trust anchors, the host name, the validity at
   the time your utc hook gives. There is no switch to turn that off.

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
     SSMB_JSON_MAX_DEPTH       nesting depth of JSON read and written (default 32, at most 32)

   RECENT CHANGES
   ==============
     0.1.0  L0 primitives: SHA-256, HMAC, base64, hex, UUID, SigV4, JSON,
            ClientMessage codec and payloads, WebSocket framing, HTTP/1.1;
            TLS through BearSSL or mbedTLS; the sans-I/O WebSocket
            connection and data channel; the poll engine with its resolver
            and proxy support; KMS session encryption; credential sources;
            sessions with reconnection, credential steps run by the
            engine, port forwards (smux and basic), typed documents,
            metrics.

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
/* Writes the text, and a NUL after it when there is room (the rule of every
   text writer here); *out_len = text length, also on SSMB_ERR_BUFFER_TOO_SMALL. */
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
/* The digests of two messages at once: with SHA-NI their common whole
   blocks run interleaved (the rounds of one fill the other's latency),
   about 1.5 times the speed of two ssmb_sha256 calls; otherwise it is
   those. */
SSMB_API void ssmb_sha256_pair(const void *a, size_t len_a, const void *b, size_t len_b, uint8_t out_a[32],
                               uint8_t out_b[32]);
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

/* Accepts exactly one complete RFC 8259 value (whitespace around it).
   SSMB_ERR_JSON for malformed or truncated text or trailing garbage,
   SSMB_ERR_LIMIT when max_tokens is too few, nesting is deeper than
   SSMB_JSON_MAX_DEPTH or the text is over 2 GiB. Work is bounded by the
   text length and max_tokens. */
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
   escapes or lone surrogates; SSMB_ERR_BUFFER_TOO_SMALL when the bytes do
   not fit. *out_len = decoded length (without the NUL) in both cases. */
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
    uint32_t need_comma;        /* bit d: the container at depth d + 1 has a member already */
    uint32_t after_key;         /* 1 right after a key */
    int32_t error;              /* first ssmb_result error, or 0 */
    uint32_t in_object;         /* bit d: the container at depth d + 1 is an object */
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
   or SSMB_ERR_INVALID_STATE for unbalanced nesting or an empty document.
   Success when the text fits in cap; a NUL follows when cap has room for it.
   The payload builders below follow the same rule. */
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
   SSMB_ERR_BUFFER_TOO_SMALL). The payload may already sit in out. An empty
   payload encodes, but no peer sends one (PROTOCOL.md §2.5). */
SSMB_API ssmb_result ssmb_msg_encode(const ssmb_msg *m, uint8_t *out, size_t cap, size_t *out_len);
/* Writes only the 120-byte header for m->payload (zero copy: place the
   payload at out + 120 yourself, or send it separately). */
SSMB_API ssmb_result ssmb_msg_encode_header(const ssmb_msg *m, uint8_t out[SSMB_MSG_HEADER_SIZE]);
/* Bounds-checked decode. Never trusts HeaderLength or PayloadLength:
   SSMB_ERR_TRUNCATED when the frame is shorter than 120 bytes, and
   SSMB_ERR_SSM_PROTOCOL when HeaderLength is not 116 or PayloadLength
   disagrees with the bytes carried (stricter than the reference reader,
   PROTOCOL.md §2.3). MessageType has NULs, then ASCII whitespace, trimmed
   from both ends. Does not check the digest. *out is written only on
   success. */
SSMB_API ssmb_result ssmb_msg_decode(const uint8_t *frame, size_t len, ssmb_msg *out);
/* The reference validation rules (PROTOCOL.md §2.4), in order:
   publication messages pass; SSMB_ERR_SSM_PROTOCOL for a zero HeaderLength,
   an empty MessageType or a zero CreatedDate; SSMB_ERR_DIGEST when the
   payload is non-empty and its SHA-256 differs from the digest. */
SSMB_API ssmb_result ssmb_msg_validate(const ssmb_msg *m);
/* 1 when the message's type equals the string. */
SSMB_API int ssmb_msg_type_is(const ssmb_msg *m, const char *type);

/* ---- payloads carried in ClientMessages ---------------------------------
   Parsers take the payload bytes, return views into them, and need the
   root to be an object; a payload of more than 128 JSON tokens gets
   SSMB_ERR_LIMIT (the tokens live on the stack, 2 KiB). A missing required
   key or a value of the wrong type is SSMB_ERR_JSON. Builders write Go's
   exact key order. */

/* acknowledge (PROTOCOL.md §3.2) */
typedef struct ssmb_ack {
    ssmb_str message_type;          /* AcknowledgedMessageType (raw JSON string view) */
    ssmb_uuid message_id;           /* AcknowledgedMessageId */
    int64_t sequence_number;        /* AcknowledgedMessageSequenceNumber */
    int is_sequential;              /* IsSequentialMessage */
} ssmb_ack;
SSMB_API ssmb_result ssmb_ack_build(const ssmb_ack *ack, char *out, size_t cap, size_t *out_len);
/* All four keys required; a bad AcknowledgedMessageId is SSMB_ERR_MALFORMED. */
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
    ssmb_str properties;            /* raw JSON of Properties ("null" or an object; empty when absent) */
    int has_kms;
    ssmb_str kms_key_id;
    ssmb_str kms_challenge;         /* empty when the agent sent none (§6.6) */
    uint32_t unknown_actions;       /* actions of types this library does not know */
} ssmb_handshake_request;
/* AgentVersion and RequestedClientActions (null counts as empty) required. */
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
/* HandshakeTimeToComplete required; CustomerMessage may be absent. */
SSMB_API ssmb_result ssmb_handshake_complete_parse(const void *json, size_t len, ssmb_handshake_complete *out);

/* EncChallengeRequest / EncChallengeResponse: {"Challenge":"<base64>"} (§6.5).
   Parsing decodes strict base64 into out; bad base64, or a JSON escape in
   it, is SSMB_ERR_MALFORMED. */
SSMB_API ssmb_result ssmb_challenge_build(const uint8_t *bytes, size_t n, char *out, size_t cap, size_t *out_len);
SSMB_API ssmb_result ssmb_challenge_parse(const void *json, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Size (PayloadType 3): {"cols":N,"rows":M} (§7.2) */
SSMB_API ssmb_result ssmb_terminal_size_build(uint32_t cols, uint32_t rows, char *out, size_t cap, size_t *out_len);

/* Flag (PayloadType 10): exactly 4 bytes, big-endian (§2.9) */
SSMB_API void ssmb_flag_encode(uint32_t flag, uint8_t out[4]);
/* Any other length: SSMB_ERR_SSM_PROTOCOL. */
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
/* DestinationId and Output may be absent (empty); the other keys are required. */
SSMB_API ssmb_result ssmb_channel_closed_parse(const void *json, size_t len, ssmb_channel_closed *out);

/* ExitCode (PayloadType 12): the text "EXIT_CODE: <n>" (§7.2). Also taken:
   no or several spaces after the colon, trailing whitespace (CR, LF), a
   negative n (a signal), and n from 2^31 to 2^32 - 1 (a Windows status,
   returned as the same 32 bits). Other text: SSMB_ERR_SSM_PROTOCOL; n out
   of that range: SSMB_ERR_OVERFLOW. */
SSMB_API ssmb_result ssmb_exit_code_parse(const void *payload, size_t len, int32_t *code);

/* >>api-ws: RFC 6455 WebSocket framing ------------------------------------
   Pure functions and one caller-owned reader; no I/O, no allocation, no
   clock, no random source (mask keys and nonces are arguments). */

/* Opcodes (RFC 6455 §5.2). 3-7 and 0xB-0xF are reserved. */
typedef enum ssmb_ws_opcode {
    SSMB_WS_CONTINUATION = 0x0,
    SSMB_WS_TEXT = 0x1,
    SSMB_WS_BINARY = 0x2,
    SSMB_WS_CLOSE = 0x8,
    SSMB_WS_PING = 0x9,
    SSMB_WS_PONG = 0xA,
    SSMB__WS_OPCODE_FORCE_32 = 0x7fffffff
} ssmb_ws_opcode;

/* Close codes (RFC 6455 §7.4.1). 1005 and 1006 are never sent: they only
   report "no code in the close frame" and "connection lost". */
enum {
    SSMB_WS_CLOSE_NORMAL = 1000,
    SSMB_WS_CLOSE_GOING_AWAY = 1001,
    SSMB_WS_CLOSE_PROTOCOL_ERROR = 1002,
    SSMB_WS_CLOSE_UNSUPPORTED_DATA = 1003,
    SSMB_WS_CLOSE_NO_STATUS = 1005,
    SSMB_WS_CLOSE_ABNORMAL = 1006,
    SSMB_WS_CLOSE_INVALID_DATA = 1007,
    SSMB_WS_CLOSE_POLICY = 1008,
    SSMB_WS_CLOSE_TOO_BIG = 1009,
    SSMB_WS_CLOSE_INTERNAL_ERROR = 1011
};

#define SSMB_WS_MAX_HEADER_SIZE 14u         /* 2 + 8-byte length + 4-byte mask key */
#define SSMB_WS_MAX_CONTROL_PAYLOAD 125u    /* RFC 6455 §5.5 */
#define SSMB_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 §1.3 */

/* One frame header as it is on the wire. */
typedef struct ssmb_ws_frame_header {
    uint8_t fin;            /* 1 on the last frame of a message */
    uint8_t rsv;            /* RSV1..RSV3 as bits 2..0 (RSV1 = 4) */
    uint8_t opcode;         /* ssmb_ws_opcode, or a reserved value */
    uint8_t masked;         /* 1 when a mask key follows the length */
    uint8_t mask_key[4];    /* zero when not masked */
    uint64_t payload_len;   /* < 2^63 */
    uint32_t header_len;    /* bytes of the header on the wire, 2..14 */
} ssmb_ws_frame_header;

/* Writes a frame header: FIN, opcode, the mask bit and key (mask_key NULL
   for an unmasked frame; a client masks every frame, RFC 6455 §5.3) and the
   length in its minimal form (7, 16 or 64 bits, §5.2). *out_len = 2..14.
   SSMB_ERR_INVALID_ARG for a reserved opcode, a control frame longer than
   125 bytes or without FIN (§5.5), or a length of 2^63 or more. */
SSMB_API ssmb_result ssmb_ws_frame_header_encode(uint32_t opcode, int fin, uint64_t payload_len,
                                                 const uint8_t *mask_key, uint8_t out[SSMB_WS_MAX_HEADER_SIZE],
                                                 size_t *out_len);
/* Header and payload in one buffer; the payload is copied and masked on the
   way (payload and out must not overlap). *out_len = frame size, also on
   SSMB_ERR_BUFFER_TOO_SMALL. Same argument rules as the header encoder. */
SSMB_API ssmb_result ssmb_ws_frame_write(uint32_t opcode, int fin, const void *payload, size_t n,
                                         const uint8_t *mask_key, uint8_t *out, size_t cap, size_t *out_len);
/* Parses a frame header at the start of in: SSMB_OK (out->header_len bytes
   consumed), SSMB_AGAIN when in holds only part of it, SSMB_ERR_WS_PROTOCOL
   when the 64-bit length has its most significant bit set (§5.2). Reports
   RSV bits, opcode and mask as they are; the rules about them are the
   reader's. Non-minimal length encodings are accepted. */
SSMB_API ssmb_result ssmb_ws_frame_header_parse(const uint8_t *in, size_t len, ssmb_ws_frame_header *out);

/* XORs n bytes in place with the mask key (RFC 6455 §5.3), starting at key
   byte offset % 4, so a payload masked in pieces passes the count of bytes
   before each piece. Masking twice restores the data. Word-at-a-time
   (16 bytes per step with SSE2, 8 without). */
SSMB_API void ssmb_ws_mask(uint8_t *data, size_t n, const uint8_t key[4], size_t offset);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (§4.2.2): base64(SHA-1(key
   + SSMB_WS_GUID)), 28 characters and a NUL. */
SSMB_API ssmb_result ssmb_ws_accept_key(const char *client_key_b64, size_t len, char out[29]);
/* Sec-WebSocket-Key from 16 random bytes (§4.1): 24 characters and a NUL. */
SSMB_API void ssmb_ws_client_key(const uint8_t random16[16], char out[25]);

/* 1 when a close frame may carry this code (§7.4): 1000-1003, 1007-1014,
   3000-4999. 1004-1006, 1015 and everything else are refused. */
SSMB_API int ssmb_ws_close_code_valid(uint32_t code);
/* Close payload (§5.5.1): 2-byte code and a UTF-8 reason. code 0 writes an
   empty payload (then the reason must be empty too). *out_len = 0..125.
   SSMB_ERR_INVALID_ARG for a code that may not be sent, a reason without a
   code, a reason over 123 bytes or not UTF-8. */
SSMB_API ssmb_result ssmb_ws_close_payload_build(uint32_t code, const char *reason, size_t reason_len,
                                                 uint8_t out[SSMB_WS_MAX_CONTROL_PAYLOAD], size_t *out_len);
/* Reads a close payload: an empty one gives code 1005 and an empty reason.
   SSMB_ERR_WS_PROTOCOL for 1 byte, over 125 bytes or a code that may not
   be sent; SSMB_ERR_MALFORMED when the reason is not UTF-8 (close 1007). */
SSMB_API ssmb_result ssmb_ws_close_payload_parse(const uint8_t *payload, size_t len, uint32_t *code,
                                                 ssmb_str *reason);

/* Reader flag: the peer is a client, so its frames must be masked. Without
   it the reader is a client's: frames from the server must not be masked. */
enum { SSMB_WS_READ_FROM_CLIENT = 1u << 0 };

/* Piece flags. */
enum {
    SSMB_WS_MESSAGE_START = 1u << 0,    /* first piece of a message */
    SSMB_WS_MESSAGE_END = 1u << 1       /* last piece of a message */
};

/* One piece of a message, as the reader hands it out. */
typedef struct ssmb_ws_piece {
    uint8_t *data;          /* unmasked payload bytes: into your input for text and
                               binary, into the reader for control frames; valid
                               until the next call (and while your input lives) */
    size_t len;             /* may be 0 on a START or END piece */
    uint32_t opcode;        /* the message's: TEXT, BINARY, CLOSE, PING or PONG */
    uint32_t flags;         /* SSMB_WS_MESSAGE_*; control frames are START|END */
    uint32_t close_code;    /* CLOSE: the peer's code, 1005 when it sent none */
    ssmb_str close_reason;  /* CLOSE: the reason, valid UTF-8, may be empty */
} ssmb_ws_piece;

/* Incremental message reader. Caller-owned plain data: set it up with
   ssmb_ws_reader_init, then feed it bytes in pieces of any size. It keeps no
   pointer into your input between calls. */
typedef struct ssmb_ws_reader {
    uint64_t max_message_size;  /* text/binary message limit, 0 = none (close 1009) */
    uint32_t flags;             /* SSMB_WS_READ_* */
    uint32_t close_code;        /* after an error: the code to close with (1002, 1007, 1009) */
    /* private; read-only for the caller */
    ssmb_ws_frame_header frame; /* frame being read */
    uint64_t frame_done;        /* payload bytes of it read; invariant: <= frame.payload_len */
    uint64_t message_size;      /* payload bytes of the open text/binary message */
    uint32_t message_opcode;    /* TEXT or BINARY while a message is open, else 0 */
    uint32_t utf8_state;        /* UTF-8 check carried across pieces and fragments */
    uint32_t state;             /* header, data, control or closed */
    int32_t error;              /* sticky ssmb_result, 0 while healthy */
    uint8_t header[SSMB_WS_MAX_HEADER_SIZE];
    uint8_t header_have;        /* invariant: < the header size the first two bytes give */
    uint8_t control_have;       /* invariant: <= frame.payload_len <= 125 */
    uint8_t control[SSMB_WS_MAX_CONTROL_PAYLOAD]; /* control payload, gathered whole */
} ssmb_ws_reader;

/* flags: SSMB_WS_READ_*; max_message_size: 0 = no limit. */
SSMB_API void ssmb_ws_reader_init(ssmb_ws_reader *r, uint32_t flags, uint64_t max_message_size);
/* Reads from in[0..len) and returns at most one piece:
     SSMB_OK      *piece is set; *consumed bytes of in were used.
     SSMB_AGAIN   all of in was used (*consumed == len); feed more.
     SSMB_CLOSED  a close frame was handed out earlier; nothing is read.
     negative     SSMB_ERR_WS_PROTOCOL (or SSMB_ERR_LIMIT for a message over
                  max_message_size); r->close_code says what to close with.
                  The error is sticky.
   Call again with the rest of in while it returns SSMB_OK. Text and binary
   payload stays in in (masked bytes are unmasked there, in place), so a
   message of any size streams through without being gathered. Rules (RFC
   6455 §5): RSV bits 0, no reserved opcode, control frames of at most 125
   bytes and never fragmented, continuation only inside a message and no new
   message inside one, masking by role, 64-bit lengths below 2^63, text and
   close reasons valid UTF-8 (checked across pieces; close 1007), close
   payloads not 1 byte and with a valid code. Non-minimal length encodings
   are accepted (the sender breaks a MUST, but nothing is ambiguous). */
SSMB_API ssmb_result ssmb_ws_read(ssmb_ws_reader *r, uint8_t *in, size_t len, size_t *consumed,
                                  ssmb_ws_piece *piece);

/* >>api-http: HTTP/1.1 request writer and response parser ----------------
   Zero-copy: parsed names and values are views into your input. Nothing
   allocates. Lines end in CRLF (RFC 9112 §2.2); a bare LF is refused. */

#define SSMB_HTTP_DEFAULT_MAX_HEAD 16384u   /* response head limit when 0 is given */

/* A request head: request line, Host, your headers in order, then
   Content-Length when has_body. */
typedef struct ssmb_http_request {
    ssmb_str method;                    /* a token: "GET", "POST" */
    ssmb_str target;                    /* origin form "/path?query": visible ASCII, no spaces */
    ssmb_str host;                      /* Host value (required; not again in headers) */
    const ssmb_http_header *headers;    /* names are tokens; values without CR, LF, NUL, controls */
    size_t header_count;
    uint32_t has_body;                  /* 1: writes Content-Length: body_len */
    const void *body;                   /* copied after the head when not NULL */
    size_t body_len;
} ssmb_http_request;

/* Writes the request (and body) into out, with a NUL when it fits.
   *out_len = bytes written, or needed on SSMB_ERR_BUFFER_TOO_SMALL.
   SSMB_ERR_INVALID_ARG for a name that is not a token or a value with CR,
   LF, NUL or another control character (header injection). */
SSMB_API ssmb_result ssmb_http_request_write(const ssmb_http_request *req, char *out, size_t cap, size_t *out_len);
/* The WebSocket opening request (RFC 6455 §4.1): GET target, Host, Upgrade:
   websocket, Connection: Upgrade, Sec-WebSocket-Key, your extra headers
   (Authorization, X-Amz-Date, ...) in order, Sec-WebSocket-Version: 13.
   Results as ssmb_http_request_write. */
SSMB_API ssmb_result ssmb_http_upgrade_request_write(ssmb_str target, ssmb_str host, ssmb_str ws_key,
                                                     const ssmb_http_header *extra, size_t extra_count,
                                                     char *out, size_t cap, size_t *out_len);

/* A parsed response head; every view points into the parsed input. */
typedef struct ssmb_http_response {
    uint32_t minor_version;             /* HTTP/1.0 or HTTP/1.1 */
    uint32_t status;                    /* 100..599 */
    ssmb_str reason;                    /* may be empty */
    const ssmb_http_header *headers;    /* your array; values trimmed of SP/HTAB */
    size_t header_count;
    size_t head_len;                    /* bytes through the blank line; the body follows */
} ssmb_http_response;

/* Parses a response head from the start of in. Stateless: call it again
   with the grown buffer (every prefix is safe). SSMB_OK when the blank line
   is in; SSMB_AGAIN before; SSMB_ERR_HTTP for a malformed status line or
   header line (obsolete line folding, space before the colon, controls in a
   value); SSMB_ERR_LIMIT for more than max_headers headers or a head over
   max_head bytes (0 = SSMB_HTTP_DEFAULT_MAX_HEAD). Work is bounded by
   max_head per call. */
SSMB_API ssmb_result ssmb_http_response_parse(const char *in, size_t len, ssmb_http_header *headers,
                                              size_t max_headers, size_t max_head, ssmb_http_response *out);
/* The next header named name (ASCII case-insensitive) after `after` (NULL:
   from the first), or NULL. */
SSMB_API const ssmb_http_header *ssmb_http_header_find(const ssmb_http_response *r, const char *name,
                                                       const ssmb_http_header *after);
/* 1 when the comma-separated list holds token (case-insensitive, OWS
   around elements ignored; RFC 9110 §5.6.1). */
SSMB_API int ssmb_http_token_list_contains(ssmb_str list, const char *token);
/* 1 when any header named name lists token ("Connection: keep-alive, Upgrade"). */
SSMB_API int ssmb_http_header_has_token(const ssmb_http_response *r, const char *name, const char *token);
/* Content-Length (RFC 9110 §8.6): *present = 0 when absent. Values are
   strict decimal digits; repeated headers or list elements must agree.
   SSMB_ERR_HTTP when malformed or conflicting, SSMB_ERR_OVERFLOW past 2^64-1. */
SSMB_API ssmb_result ssmb_http_content_length(const ssmb_http_response *r, int *present, uint64_t *length);
/* The WebSocket opening response (RFC 6455 §4.1): HTTP/1.1 101, Upgrade:
   websocket, Connection listing Upgrade, exactly one Sec-WebSocket-Accept
   equal to expected_accept (see ssmb_ws_accept_key), and no
   Sec-WebSocket-Extensions (none is ever offered). SSMB_ERR_HTTP otherwise;
   r->status tells a refusal (401, 403, ...) apart. A subprotocol is left to
   the caller. */
SSMB_API ssmb_result ssmb_http_check_ws_upgrade(const ssmb_http_response *r, const char *expected_accept);

#define SSMB_HTTP_CHUNK_LINE_MAX 4096u      /* bytes of one chunk-size line, CRLF included */
#define SSMB_HTTP_TRAILER_MAX 16384u        /* bytes of the trailer section, final CRLF included */

/* Chunked transfer coding decoder (RFC 9112 §7.1); caller-owned plain data. */
typedef struct ssmb_http_chunked {
    uint64_t max_body;      /* data byte limit, 0 = none */
    uint64_t total;         /* data bytes announced so far */
    uint64_t remaining;     /* data bytes left in the current chunk */
    uint32_t state;         /* private */
    uint32_t line_len;      /* private: bytes of the current size line or trailer section */
    int32_t error;          /* sticky ssmb_result, 0 while healthy */
} ssmb_http_chunked;

SSMB_API void ssmb_http_chunked_init(ssmb_http_chunked *c, uint64_t max_body);
/* Decodes from in[0..len), in pieces of any size:
     SSMB_OK      *data is a view of data bytes in in; *consumed bytes used.
     SSMB_AGAIN   all of in used, no data; feed more.
     SSMB_CLOSED  the body ended (last chunk and trailers read); bytes after
                  *consumed belong to what follows the body.
     negative     SSMB_ERR_HTTP malformed, SSMB_ERR_OVERFLOW chunk size past
                  64 bits, SSMB_ERR_LIMIT over max_body, a size line over
                  SSMB_HTTP_CHUNK_LINE_MAX or trailers over SSMB_HTTP_TRAILER_MAX.
                  Sticky.
   Chunk extensions are ignored and trailer fields skipped. */
SSMB_API ssmb_result ssmb_http_chunked_read(ssmb_http_chunked *c, const char *in, size_t len, size_t *consumed,
                                            ssmb_str *data);

/* ---- hooks the host gives ------------------------------------------------
   Every object below takes these in its desc; zero means the default. */

/* Memory. free_fn gets the size that was asked for, so pools, slabs and
   arenas need no headers. Both functions or neither. */
typedef struct ssmb_allocator {
    void *(*alloc_fn)(size_t size, void *user_data);
    void (*free_fn)(void *ptr, size_t size, void *user_data);
    void *user_data;
} ssmb_allocator;

enum { SSMB_LOG_ERROR = 0, SSMB_LOG_WARN = 1, SSMB_LOG_INFO = 2, SSMB_LOG_DEBUG = 3 };

/* What a log line is about (stable numbers; 1-19 the conn, 20-39 the
   engine). */
enum {
    SSMB_LOGITEM_NONE = 0,
    SSMB_LOGITEM_DESC_INVALID = 1,      /* a desc field is missing or wrong; msg names it */
    SSMB_LOGITEM_CONN_OPEN = 2,
    SSMB_LOGITEM_CONN_CLOSED = 3,
    SSMB_LOGITEM_CONN_FAILED = 4,
    SSMB_LOGITEM_UPGRADE_REFUSED = 5,   /* the HTTP upgrade got another answer than 101 */
    SSMB_LOGITEM_TLS_FAILED = 6,
    SSMB_LOGITEM_WS_PROTOCOL = 7,       /* the peer broke RFC 6455 */
    SSMB_LOGITEM_TIMEOUT = 8
};

/* Logging, off by default. item is an SSMB_LOGITEM_* number; msg is a short
   text (never a secret: keys, tokens and signatures are not logged). */
typedef struct ssmb_logger {
    void (*log_fn)(const char *tag, uint32_t level, uint32_t item, const char *msg, uint32_t line,
                   void *user_data);
    void *user_data;
} ssmb_logger;

/* Cryptographically secure random bytes: SSMB_OK, or an error when none can
   be had (then nothing that needs them starts: SSMB_ERR_NO_RANDOM). */
typedef ssmb_result (*ssmb_random_fn)(void *buf, size_t len, void *user_data);
/* Wall-clock time, seconds since the Unix epoch, UTC: SigV4 dates and
   certificate validity. */
typedef int64_t (*ssmb_utc_fn)(void *user_data);

/* The defaults: getrandom(2) (or /dev/urandom) and time(). */
SSMB_API ssmb_result ssmb_random_system(void *buf, size_t len, void *user_data);
SSMB_API int64_t ssmb_utc_system(void *user_data);

/* Reads one environment variable: its value, or NULL when unset. Objects
   that consult the environment take one of these, so tests and embedded
   hosts can give a table; ssmb_getenv_system calls getenv. */
typedef const char *(*ssmb_getenv_fn)(const char *name, void *user_data);
SSMB_API const char *ssmb_getenv_system(const char *name, void *user_data);

/* ---- channel: the Session Manager data channel, sans-I/O (L1) -------------
   The state machine between a WebSocket (whole messages in, whole messages
   out) and the session logic, for either end: the client (what users run)
   or the agent (the simulated far end of tests and of the local emulator).
   It numbers and acknowledges stream messages, retransmits on an RTT-based
   timeout, puts early messages back in order, runs the handshake (§5),
   honours pause/start_publication (§8.1) and reports channel_closed (§8.2).
   Section numbers (§) are those of PROTOCOL.md.

   KMS session encryption (§6) needs a KMS call the channel cannot make
   (sans-I/O): the client gets SSMB_CHANNEL_EVENT_KMS_REQUEST, calls
   GenerateDataKey (ssmb_api_generate_data_key_write) and answers with
   ssmb_channel_kms_key or ssmb_channel_kms_failed; the agent role gets
   SSMB_CHANNEL_EVENT_KMS_DECRYPT for the client's blob and answers the
   same way after KMS Decrypt. From then on the payload types of §6.4 are
   sealed and opened inside the channel (AES-256-GCM from the TLS backend:
   under SSMB_NO_TLS the client refuses KMSEncryption, §5.3) and the
   agent's EncChallengeRequest is answered (§6.5); events carry plaintext.

   The loop:
       ssmb_channel_start(ch, now);
       on every WebSocket message:  ssmb_channel_recv(ch, data, len, is_text, now);
                                    then ssmb_channel_poll until SSMB_AGAIN
       to write:    while (ssmb_channel_next_frame(ch, &f, &n) == SSMB_OK) {
                        send f as one binary message; ssmb_channel_frame_sent(ch, now); }
       timers:      ssmb_channel_tick(ch, now) by ssmb_channel_next_deadline(ch)
       application: ssmb_channel_send(ch, SSMB_PAYLOAD_OUTPUT, bytes, n, &taken)
   After a new WebSocket replaces a lost one: send ssmb_channel_open_frame's
   text first, then call ssmb_channel_reconnected (§4.5: nothing resets).

   Every in-order message is acknowledged when it arrives (§3.3). Back-
   pressure is yours: while you leave its events unpolled, recv says
   SSMB_AGAIN, so you stop reading the socket and the peer slows down.
   Messages that come early are acknowledged and kept while the reorder
   buffer has room, else dropped unacknowledged (the peer sends them again).

   One allocation at create; nothing after it allocates unless
   reorder_buffer_max_bytes lets the reorder store grow (after a loss,
   until the gap is filled) (with the mbedTLS
   backend, mbedTLS itself allocates inside each KMS seal and open, see the
   kms section). The session keys live in that block and are wiped with it.
   Nothing here reads a clock (now_ms is your monotonic milliseconds;
   CreatedDate comes from utc_fn, read once at start) or prints. A hostile
   peer can make it drop frames (counted in the metrics) but never
   allocate, loop or crash. */

typedef struct ssmb_channel ssmb_channel;

typedef enum ssmb_channel_role {
    SSMB_CHANNEL_CLIENT = 0,        /* sends input_stream_data, answers the handshake */
    SSMB_CHANNEL_AGENT = 1,         /* sends output_stream_data, asks for the handshake */
    SSMB__CHANNEL_ROLE_FORCE_32 = 0x7fffffff
} ssmb_channel_role;

/* Whether a payload's SHA-256 is checked on receipt (§2.4 rule 4). */
typedef enum ssmb_digest_check {
    SSMB_DIGEST_CHECK_DEFAULT = 0,  /* the reference's choice: the client checks, the agent does not */
    SSMB_DIGEST_CHECK_ON = 1,
    SSMB_DIGEST_CHECK_OFF = 2,
    SSMB__DIGEST_CHECK_FORCE_32 = 0x7fffffff
} ssmb_digest_check;

#define SSMB_CHANNEL_CLIENT_VERSION "1.2.764.0"     /* §14 item 10: the minimum AWS supports */
#define SSMB_CHANNEL_AGENT_VERSION "3.3.987.0"
#define SSMB_CHANNEL_MAX_PAYLOAD 32768u
#define SSMB_CHANNEL_VERSION_MAX 47u                /* longest version string kept */
#define SSMB_CHANNEL_PROPERTIES_MAX 1023u           /* longest Properties JSON kept */
#define SSMB_CHANNEL_TEXT_MAX 511u                  /* longest CustomerMessage / close reason kept */
#define SSMB_CHANNEL_KMS_BLOB_MAX 1024u             /* longest KMS CiphertextBlob taken: its base64
                                                       must fit the HandshakeResponse (the KMS model
                                                       allows SSMB_API_CIPHERTEXT_MAX) */

typedef struct ssmb_channel_desc {
    uint32_t role;                      /* ssmb_channel_role, default SSMB_CHANNEL_CLIENT */
    ssmb_allocator allocator;           /* default SSMB_MALLOC / SSMB_FREE */
    ssmb_logger logger;                 /* default silent */
    ssmb_random_fn random_fn;           /* MessageIds, ClientId, RequestIds; default ssmb_random_system */
    void *random_user_data;
    ssmb_utc_fn utc_fn;                 /* wall clock for CreatedDate, read once by ssmb_channel_start
                                           and then advanced with now_ms; default ssmb_utc_system */
    void *utc_user_data;
    uint64_t start_epoch_ms;            /* default 0 (use utc_fn): CreatedDate at ssmb_channel_start */
    const char *client_version;         /* default SSMB_CHANNEL_CLIENT_VERSION; copied */
    const char *agent_version;          /* agent role: default SSMB_CHANNEL_AGENT_VERSION; copied */
    const char *session_type;           /* agent role: SessionType of its HandshakeRequest;
                                           default NULL: no handshake, output starts at once (§5.1) */
    const char *session_properties;     /* agent role: Properties JSON (default null); copied */
    const char *kms_key_id;             /* agent role: also request KMSEncryption (default none; needs
                                           ssmb_kms_supported()); with an agent_version of 3.3.808.0 or
                                           later the request carries a random Challenge (§6.6) */
    const char *customer_message;       /* agent role: HandshakeComplete's CustomerMessage (default "") */
    uint32_t payload_size;              /* outgoing data is cut into payloads of this many bytes,
                                           default 1024 (§3.6), at most SSMB_CHANNEL_MAX_PAYLOAD */
    uint32_t send_buffer_bytes;         /* frames queued or awaiting an ack, default 16384 (raised
                                           to hold at least one full frame and a handshake message) */
    uint32_t send_buffer_messages;      /* default 32 */
    uint32_t reorder_buffer_bytes;      /* payloads that arrived ahead of order, default 8192 */
    uint32_t reorder_buffer_messages;   /* default 16 */
    uint32_t reorder_buffer_max_bytes;  /* default 0: the store keeps its size; larger: it grows on
                                           demand up to this many bytes while messages wait out of
                                           order, and is given back when it empties */
    uint32_t reorder_buffer_max_messages; /* the most payloads it grows to hold (default 4096 when
                                           it may grow) */
    uint32_t max_frame;                 /* longer incoming frames are dropped, default 16384 + 120 + 28
                                           (an encrypted payload is SSMB_KMS_OVERHEAD longer, §6.3) */
    uint32_t max_resend_attempts;       /* then the channel gives up, default 3000 (§3.5) */
    uint32_t digest_check;              /* ssmb_digest_check, default SSMB_DIGEST_CHECK_DEFAULT */
    uint32_t decrypt_in_place;          /* 1: the frames you pass to ssmb_channel_recv may be rewritten:
                                           KMS-encrypted payloads are opened where they lie and no
                                           decryption buffer (max_frame bytes) is allocated */
} ssmb_channel_desc;

typedef enum ssmb_channel_event_type {
    SSMB_CHANNEL_EVENT_NONE = 0,
    SSMB_CHANNEL_EVENT_READY = 1,       /* the session type is known; data may be sent now */
    SSMB_CHANNEL_EVENT_DATA = 2,        /* stream payload bytes, in order */
    SSMB_CHANNEL_EVENT_EXIT_CODE = 3,   /* ExitCode payload (NonInteractiveCommands) */
    SSMB_CHANNEL_EVENT_FLAG = 4,        /* Flag payload (§2.9), e.g. ConnectToPortError */
    SSMB_CHANNEL_EVENT_PAUSED = 5,      /* pause_publication: sending is held */
    SSMB_CHANNEL_EVENT_RESUMED = 6,     /* start_publication: sending goes on */
    SSMB_CHANNEL_EVENT_CLOSED = 7,      /* the channel is over (the last event) */
    SSMB_CHANNEL_EVENT_HANDSHAKE_RESPONSE = 8, /* agent role: the client answered the handshake */
    SSMB_CHANNEL_EVENT_KMS_REQUEST = 9, /* client role: call KMS GenerateDataKey (§6.2) with KeyId
                                           kms_key_id, NumberOfBytes 64, EncryptionContext
                                           aws:ssm:SessionId, aws:ssm:TargetId and, when kms_challenge
                                           is not empty, aws:ssm:RandomChallenge = kms_challenge (§6.6);
                                           then ssmb_channel_kms_key or ssmb_channel_kms_failed. The
                                           HandshakeResponse waits for it (the client has no handshake
                                           timeout, §5.5; the agent gives up after 15 s) */
    SSMB_CHANNEL_EVENT_KMS_DECRYPT = 10, /* agent role: call KMS Decrypt for the CiphertextBlob in
                                           data/len (valid until you answer) with the same context
                                           (aws:ssm:RandomChallenge = kms_challenge when not empty);
                                           then ssmb_channel_kms_key or ssmb_channel_kms_failed */
    SSMB__CHANNEL_EVENT_FORCE_32 = 0x7fffffff
} ssmb_channel_event_type;

/* One event. String views are NUL-terminated and live as long as the
   channel; data is valid until the next ssmb_channel_poll or
   ssmb_channel_recv (it may point into the frame you passed to recv). */
typedef struct ssmb_channel_event {
    uint32_t type;                      /* ssmb_channel_event_type */
    uint32_t payload_type;              /* DATA: the message's ssmb_payload_type (client role: Output,
                                           StdErr, ...; agent role: Output, Size, ...) */
    const uint8_t *data;                /* DATA, EXIT_CODE: the payload */
    size_t len;
    int64_t sequence_number;            /* DATA, EXIT_CODE, FLAG: the message's */
    int32_t exit_code;                  /* EXIT_CODE: the number of "EXIT_CODE: <n>" */
    uint32_t flag;                      /* FLAG: SSMB_FLAG_* */
    int32_t result;                     /* CLOSED: SSMB_CLOSED after channel_closed, else the error
                                           (SSMB_ERR_TIMEOUT: resend limit); EXIT_CODE and FLAG: the
                                           parse result; HANDSHAKE_RESPONSE: SSMB_OK or the failure */
    uint32_t terminate_session;         /* CLOSED: 1 when you should call the TerminateSession API (§3.5) */
    ssmb_str session_type;              /* READY: as negotiated, "Standard_Stream" without handshake */
    ssmb_str properties;                /* READY: the Properties JSON, or empty */
    ssmb_str agent_version;             /* READY: the agent's (empty without handshake) */
    ssmb_str client_version;            /* HANDSHAKE_RESPONSE: the client's */
    ssmb_str message;                   /* READY: CustomerMessage; CLOSED: the reason; HANDSHAKE_RESPONSE:
                                           the first action error */
    ssmb_str kms_key_id;                /* KMS_REQUEST, KMS_DECRYPT: the KMSKeyId of the handshake */
    ssmb_str kms_challenge;             /* KMS_REQUEST, KMS_DECRYPT: the §6.6 Challenge text for the
                                           encryption context, or empty (leave the entry out) */
} ssmb_channel_event;

/* Counters since create. "Frames" are whole ClientMessages. */
typedef struct ssmb_channel_metrics {
    uint64_t frames_in, bytes_in;       /* every message passed to recv */
    uint64_t frames_out, bytes_out;     /* every frame sent: acks and retransmissions too */
    uint64_t data_in, data_bytes_in;    /* stream messages handled in order; their payload bytes */
    uint64_t data_out, data_bytes_out;  /* stream messages queued (each counted once); payload bytes */
    uint64_t acks_in, acks_out;
    uint64_t retransmissions;
    uint64_t duplicates;                /* stream messages seen before (acknowledged again) */
    uint64_t reordered;                 /* arrived ahead of order and kept */
    uint64_t dropped_invalid;           /* undecodable, §2.4 rules 1-3, negative sequence number */
    uint64_t dropped_digest;            /* §2.4 rule 4 */
    uint64_t dropped_oversize;          /* longer than max_frame */
    uint64_t dropped_no_room;           /* no room to keep it or to acknowledge it: not acknowledged */
    uint64_t discarded;                 /* agent role: client data before the handshake ended (§5.1) */
    uint64_t bad_payloads;              /* handled, but its payload could not be parsed */
    uint64_t ignored;                   /* unknown types, acks for unknown sequence numbers */
    uint64_t rtt_us, rttvar_us, rto_us; /* the estimator now (§3.5) */
    uint64_t handshake_us;              /* client: HandshakeRequest to HandshakeComplete; agent:
                                           start to HandshakeResponse; 0 without handshake */
} ssmb_channel_metrics;

/* Bytes of the one allocation ssmb_channel_create would make for desc
   (0 when desc is invalid). */
SSMB_API size_t ssmb_channel_memory_size(const ssmb_channel_desc *desc);
/* Allocates everything, draws the ClientId. SSMB_ERR_INVALID_ARG for a bad
   desc (the log names the field), SSMB_ERR_NOMEM, SSMB_ERR_NO_RANDOM. */
SSMB_API ssmb_result ssmb_channel_create(const ssmb_channel_desc *desc, ssmb_channel **out);
/* Wipes and frees it; calls nothing back. */
SSMB_API void ssmb_channel_destroy(ssmb_channel *ch);
/* Starts the clock (reads utc_fn once); the agent role queues its
   HandshakeRequest. Every other call but create, destroy and the queries
   needs it first (SSMB_ERR_INVALID_STATE). */
SSMB_API ssmb_result ssmb_channel_start(ssmb_channel *ch, uint64_t now_ms);

/* One complete WebSocket message. Binary (and text, as the reference reads
   it) is a ClientMessage; a text message that is not one may be a bare JSON
   start/pause_publication or channel_closed (§13 item 2). Bad frames are
   dropped and counted, never an error. Events it causes may point into
   frame: keep it until you polled them. SSMB_AGAIN: events of an earlier
   message still wait (or kept messages are due): poll, then pass this
   message again. Even then, messages that cause no event at once are taken:
   acknowledgements, repeats, and messages that came early (kept when the
   reorder store has room, else dropped unacknowledged to come again), so a
   transport that can read ahead of a waiting message may pass them.
   SSMB_CLOSED (or the sticky error) once the channel is
   over. */
SSMB_API ssmb_result ssmb_channel_recv(ssmb_channel *ch, const uint8_t *frame, size_t len, int is_text,
                                       uint64_t now_ms);
/* The next event: SSMB_OK, SSMB_AGAIN (none), SSMB_CLOSED (none, and over). */
SSMB_API ssmb_result ssmb_channel_poll(ssmb_channel *ch, ssmb_channel_event *ev);
/* 1 while events not yet polled point into the last frame passed to recv:
   keep that memory unchanged until this says 0. */
SSMB_API int ssmb_channel_borrows(const ssmb_channel *ch);
/* 1 when ssmb_channel_poll has an event now (one queued, or a kept message
   next in order): a loop that stopped polling for a while polls again
   without waiting for its sockets. */
SSMB_API int ssmb_channel_has_events(const ssmb_channel *ch);

/* The next frame to send as one binary message: acknowledgements first,
   then retransmissions, then new messages. It stays the same (and valid)
   until ssmb_channel_frame_sent says it went out, or a reconnect drops it.
   SSMB_AGAIN: none now; SSMB_CLOSED (or the sticky error) once over. */
SSMB_API ssmb_result ssmb_channel_next_frame(ssmb_channel *ch, const uint8_t **frame, size_t *len);
/* The frame from ssmb_channel_next_frame was handed to the transport. */
SSMB_API ssmb_result ssmb_channel_frame_sent(ssmb_channel *ch, uint64_t now_ms);

/* Queues application data (client: Output; agent: Output, StdErr or
   ExitCode), cut into payloads of payload_size. Takes what fits
   (*accepted): SSMB_OK when that is anything (len 0 sends nothing, §2.5);
   SSMB_AGAIN when nothing fits, before READY (§5.1, §14 item 8) or while
   paused (§8.1). Never drops data. Handshake and acknowledge payload
   types are the channel's own: SSMB_ERR_INVALID_ARG. */
SSMB_API ssmb_result ssmb_channel_send(ssmb_channel *ch, uint32_t payload_type, const void *data, size_t len,
                                       size_t *accepted);
/* The most payload bytes (up to payload_size) one message could take now:
   a send of at most this much is taken whole (the 28 bytes encryption adds
   are counted, §6.3). 0 while send says AGAIN. */
SSMB_API size_t ssmb_channel_send_space(const ssmb_channel *ch);

/* Zero-copy sending, for bytes that come from elsewhere in pieces (a
   socket's, read straight into the send buffer): send_places gives up to
   max places, each for one payload of up to cap bytes (cap <= payload_size),
   to be written where data points, in the order they will go; 0 when send
   would say AGAIN or there is no room. send_commit(ch, n) queues the next
   place with its first n bytes (1..cap) as one message of payload_type,
   encrypted and digested as send does. Places not committed are given back
   by the next call that gives places or queues anything: commit them with
   no other call on ch in between. commit: SSMB_ERR_INVALID_STATE with no
   place left, SSMB_ERR_INVALID_ARG for n out of range. */
typedef struct ssmb_send_place {
    uint8_t *data;
    size_t cap;
} ssmb_send_place;
SSMB_API size_t ssmb_channel_send_places(ssmb_channel *ch, uint32_t payload_type, ssmb_send_place *places,
                                         size_t max);
SSMB_API ssmb_result ssmb_channel_send_commit(ssmb_channel *ch, size_t n);
/* A Size message {"cols":N,"rows":M} (§7.2); SSMB_AGAIN as for send. */
SSMB_API ssmb_result ssmb_channel_send_size(ssmb_channel *ch, uint32_t cols, uint32_t rows);
/* A Flag message, 4 bytes big-endian (§2.9); SSMB_AGAIN as for send. */
SSMB_API ssmb_result ssmb_channel_send_flag(ssmb_channel *ch, uint32_t flag);

/* Runs the retransmission timers; after max_resend_attempts the channel
   closes with SSMB_ERR_TIMEOUT (and says to call TerminateSession). */
SSMB_API ssmb_result ssmb_channel_tick(ssmb_channel *ch, uint64_t now_ms);
/* When ssmb_channel_tick must next run, or SSMB_NO_DEADLINE. */
SSMB_API uint64_t ssmb_channel_next_deadline(const ssmb_channel *ch);
/* A new WebSocket replaced the old one (§4.5): every unacknowledged frame
   is due again at once; counters and buffers carry on. A pause ends (the
   service announces it again on the new connection if it lasts). */
SSMB_API ssmb_result ssmb_channel_reconnected(ssmb_channel *ch, uint64_t now_ms);
/* The OpenDataChannelInput text (§4.2) with this channel's ClientId and
   ClientVersion and a fresh RequestId; NUL-terminated when it fits. */
SSMB_API ssmb_result ssmb_channel_open_frame(ssmb_channel *ch, const char *token, char *out, size_t cap,
                                             size_t *out_len);

SSMB_API void ssmb_channel_get_metrics(const ssmb_channel *ch, ssmb_channel_metrics *out);
/* SSMB_OK while open; SSMB_CLOSED after channel_closed; else the error. */
SSMB_API ssmb_result ssmb_channel_last_error(const ssmb_channel *ch);
/* 1 once READY was queued (data may be sent). */
SSMB_API int ssmb_channel_is_ready(const ssmb_channel *ch);

/* The answer to KMS_REQUEST (client) or KMS_DECRYPT (agent): the 64-byte
   Plaintext data key (n must be SSMB_KMS_DATA_KEY_SIZE) and the
   CiphertextBlob (1..SSMB_CHANNEL_KMS_BLOB_MAX bytes; the agent's must be
   the one of its event). The channel copies the two 32-byte keys into its
   own memory (wiped by destroy); wipe your copy. Client: queues the
   HandshakeResponse with {"KMSCipherTextKey":...,"KMSCipherTextHash":null}
   (and "ChallengeAcknowledgement":true when kms_challenge was given, §6.6)
   and encrypts from now on. Agent: sends the EncChallengeRequest (§6.5)
   and waits 15 s for the answer; HandshakeComplete follows a correct one.
   SSMB_ERR_INVALID_STATE when no such event is waiting; SSMB_ERR_INVALID_ARG
   for a wrong size or blob; SSMB_ERR_LIMIT for a blob that is too long;
   SSMB_AGAIN when there is no room to send (drain frames, call again).
   Allocates nothing (mbedTLS: see the kms section). */
SSMB_API ssmb_result ssmb_channel_kms_key(ssmb_channel *ch, const uint8_t *plaintext, size_t n,
                                          const uint8_t *ciphertext_blob, size_t blob_len, uint64_t now_ms);
/* The KMS call failed (error: a short text for the peer and the log, NULL
   allowed). Client: the HandshakeResponse says KMSEncryption Failed with
   "Failed to process action KMSEncryption: <error>" (§5.3) and the agent
   ends the session. Agent: the channel closes (SSMB_ERR_AUTH). Same state
   rules and SSMB_AGAIN as ssmb_channel_kms_key. */
SSMB_API ssmb_result ssmb_channel_kms_failed(ssmb_channel *ch, const char *error, uint64_t now_ms);
/* 1 once the session keys are in use (payloads of §6.4 are encrypted). */
SSMB_API int ssmb_channel_encrypted(const ssmb_channel *ch);

/* The retransmission timeout estimator (§3.5, RFC 6298 with the reference
   constants), in integer nanoseconds: RTTVAR from the old RTT, then RTT,
   then RTO = RTT + max(10 ms, 4 RTTVAR) capped at 1 s, each truncated. */
typedef struct ssmb_rto {
    int64_t rtt_ns;                     /* initially 100 ms */
    int64_t rttvar_ns;                  /* initially 0 */
    int64_t rto_ns;                     /* initially 200 ms */
} ssmb_rto;
SSMB_API void ssmb_rto_init(ssmb_rto *r);
SSMB_API void ssmb_rto_sample(ssmb_rto *r, int64_t sample_ns);

/* Version gates (§7.6): 1 when a > b, both dotted decimal with the same
   number of parts; any parse error gives 0. */
SSMB_API int ssmb_version_gt(const char *a, const char *b);

typedef enum ssmb_agent_feature {
    SSMB_AGENT_TERMINATE_FLAG = 1,      /* Flag TerminateSession understood: agent > 2.3.722.0 */
    SSMB_AGENT_MUX = 2,                 /* smux port forwarding: agent > 3.0.196.0 */
    SSMB_AGENT_NO_SMUX_KEEPALIVE = 3,   /* the client turns smux keep-alive off: agent > 3.1.1511.0 */
    SSMB__AGENT_FEATURE_FORCE_32 = 0x7fffffff
} ssmb_agent_feature;
/* The client-side decision for an AgentVersion (NULL or empty: 0). */
SSMB_API int ssmb_agent_has(const char *agent_version, uint32_t feature);

/* Log items of the channel (40-59). */
enum {
    SSMB_LOGITEM_CHANNEL_DROPPED = 40,  /* an incoming frame was dropped; msg says why */
    SSMB_LOGITEM_CHANNEL_HANDSHAKE = 41,
    SSMB_LOGITEM_CHANNEL_CLOSED = 42,
    SSMB_LOGITEM_CHANNEL_GAVE_UP = 43,  /* max_resend_attempts reached */
    SSMB_LOGITEM_SESSION = 60           /* a session's progress and failures (sessions, forwards) */
};

/* ---- smux: multiplexed port-forwarding streams, sans-I/O (L0 codec, L1) ---
   Port forwarding with an agent newer than 3.0.196.0 (§7.3, §7.6) carries
   many TCP connections over the one data channel with smux protocol
   version 1 (§7.4). The Output payloads of the channel, in both directions,
   are an arbitrary cutting of one continuous smux byte stream: a frame may
   span payloads and a payload may hold several frames. Frames: an 8-byte
   header (ver = 1, cmd, uint16 length and uint32 stream id, both
   little-endian, §14 item 11) and length data bytes.

   The multiplexer is the client end of that stream (the server role is the
   agent's end, for tests and emulators). The loop:
       every channel DATA event:  ssmb_smux_feed(mux, data, len, &used, now);
                                  keep data[used..len) while it says SSMB_AGAIN
       then:        ssmb_smux_poll until SSMB_AGAIN; read the streams it names
       to write:    p = ssmb_smux_out_buf(mux, &n); ssmb_channel_send(ch, Output,
                    p, n, &taken); ssmb_smux_out_ack(mux, taken)
       timers:      ssmb_smux_tick(mux, now) by ssmb_smux_next_deadline(mux)
       per local connection: ssmb_smux_open, _write, _read, _close.

   Back-pressure (v1 has no window updates): each stream has a receive
   buffer of fixed size. When the frame being read belongs to a stream whose
   buffer is full, feed stops and says SSMB_AGAIN; it takes the rest after
   that stream was read (or closed). Nothing is dropped, nothing grows. A
   stream nobody reads therefore stalls every stream, as in the reference.

   No half-close (§16): a FIN from either side ends the stream both ways.
   After the peer's FIN, writes say SSMB_CLOSED and the data already
   received stays readable; ssmb_smux_close then sends our FIN (as the
   reference does) and frees the slot. Frames for unknown or already closed
   stream ids are skipped and counted, never an error.

   One allocation at create; nothing after it allocates. Nothing here reads
   a clock (now_ms is your monotonic milliseconds) or prints. */

typedef struct ssmb_smux ssmb_smux;

#define SSMB_SMUX_VERSION 1u                /* the protocol version byte (§7.4) */
#define SSMB_SMUX_HEADER_SIZE 8u
#define SSMB_SMUX_MAX_DATA 32768u           /* most data bytes in one PSH frame */
#define SSMB_SMUX_FIRST_CLIENT_ID 3u        /* then 5, 7, ... (§7.4) */

typedef enum ssmb_smux_cmd {
    SSMB_SMUX_SYN = 0,                  /* open a stream */
    SSMB_SMUX_FIN = 1,                  /* end a stream (both ways, §16) */
    SSMB_SMUX_PSH = 2,                  /* data */
    SSMB_SMUX_NOP = 3,                  /* keep-alive, stream id 0 */
    SSMB__SMUX_CMD_FORCE_32 = 0x7fffffff
} ssmb_smux_cmd;

typedef struct ssmb_smux_header {
    uint32_t version;                   /* always SSMB_SMUX_VERSION after a successful parse */
    uint32_t cmd;                       /* ssmb_smux_cmd */
    uint32_t length;                    /* data bytes that follow the header */
    uint32_t stream_id;
} ssmb_smux_header;

/* L0: one frame into out. Data only with PSH (at most SSMB_SMUX_MAX_DATA
   bytes, else SSMB_ERR_LIMIT); SYN, FIN and NOP carry none
   (SSMB_ERR_INVALID_ARG). *out_len = the frame length, also on
   SSMB_ERR_BUFFER_TOO_SMALL. */
SSMB_API ssmb_result ssmb_smux_frame_encode(uint32_t cmd, uint32_t stream_id, const void *data, size_t len,
                                            uint8_t *out, size_t cap, size_t *out_len);
/* L0: the header at the start of in. SSMB_AGAIN when fewer than 8 bytes;
   SSMB_ERR_MALFORMED for another version, an unknown cmd (UPD, 4, is
   version 2 only) or data on SYN, FIN or NOP; SSMB_ERR_LIMIT for a length
   over SSMB_SMUX_MAX_DATA. *out is filled on SSMB_OK and on the errors. */
SSMB_API ssmb_result ssmb_smux_header_parse(const uint8_t *in, size_t len, ssmb_smux_header *out);

typedef enum ssmb_smux_role {
    SSMB_SMUX_CLIENT = 0,               /* opens odd stream ids from 3; ignores SYNs from the peer */
    SSMB_SMUX_SERVER = 1,               /* accepts the peer's SYNs; opens even ids from 2 */
    SSMB__SMUX_ROLE_FORCE_32 = 0x7fffffff
} ssmb_smux_role;

typedef struct ssmb_smux_desc {
    uint32_t role;                      /* ssmb_smux_role, default SSMB_SMUX_CLIENT */
    ssmb_allocator allocator;           /* default SSMB_MALLOC / SSMB_FREE */
    uint32_t max_streams;               /* streams open at once, default 16, at most 1024 */
    uint32_t stream_buffer_bytes;       /* receive buffer of each stream, default 16384 */
    uint32_t output_buffer_bytes;       /* frames waiting for ssmb_smux_out_buf, default 65536
                                           (raised to hold one full PSH frame and the control reserve) */
    uint32_t max_frame_data;            /* data bytes per PSH frame sent, default and at most 32768 */
    uint32_t keepalive;                 /* 1: send NOPs and enforce the receive timeout; default 0.
                                           The client's rule (§7.4): on unless the agent is newer than
                                           3.1.1511.0, i.e. !ssmb_agent_has(v, SSMB_AGENT_NO_SMUX_KEEPALIVE) */
    uint32_t keepalive_interval_ms;     /* a NOP this often, default 10000 */
    uint32_t keepalive_timeout_ms;      /* nothing received this long ends the mux, default 30000 */
} ssmb_smux_desc;

typedef enum ssmb_smux_event_type {
    SSMB_SMUX_EVENT_NONE = 0,
    SSMB_SMUX_EVENT_OPENED = 1,         /* server role: the peer opened stream_id */
    SSMB_SMUX_EVENT_DATA = 2,           /* stream_id has bytes to read (read until SSMB_AGAIN) */
    SSMB_SMUX_EVENT_CLOSED = 3,         /* the peer ended stream_id (FIN); its unread data stays
                                           readable; call ssmb_smux_close to free it */
    SSMB_SMUX_EVENT_ERROR = 4,          /* the mux is over: protocol error or timeout (the last event) */
    SSMB__SMUX_EVENT_FORCE_32 = 0x7fffffff
} ssmb_smux_event_type;

typedef struct ssmb_smux_event {
    uint32_t type;                      /* ssmb_smux_event_type */
    uint32_t stream_id;                 /* OPENED, DATA, CLOSED */
    size_t available;                   /* DATA, CLOSED: bytes readable now */
    int32_t result;                     /* ERROR: the sticky error */
} ssmb_smux_event;

/* Counters since create. */
typedef struct ssmb_smux_metrics {
    uint64_t frames_in, bytes_in;       /* whole frames parsed; bytes taken by feed */
    uint64_t frames_out, bytes_out;     /* frames queued; bytes acknowledged by out_ack */
    uint64_t data_in, data_out;         /* PSH data bytes stored for streams; queued for the peer */
    uint64_t opened_local, opened_peer; /* SYNs sent; SYNs accepted */
    uint64_t fins_in, fins_out;
    uint64_t nops_in, nops_out;
    uint64_t ignored;                   /* frames for unknown or ended streams, unwanted SYNs */
    uint64_t ignored_bytes;             /* their data bytes, skipped */
    uint64_t refused;                   /* server role: SYNs beyond max_streams, answered with FIN */
} ssmb_smux_metrics;

/* Bytes of the one allocation ssmb_smux_create would make (0: bad desc). */
SSMB_API size_t ssmb_smux_memory_size(const ssmb_smux_desc *desc);
/* SSMB_ERR_INVALID_ARG for a bad desc, SSMB_ERR_NOMEM. */
SSMB_API ssmb_result ssmb_smux_create(const ssmb_smux_desc *desc, ssmb_smux **out);
/* Wipes and frees it. */
SSMB_API void ssmb_smux_destroy(ssmb_smux *mux);

/* Takes bytes of the incoming smux stream (*consumed of them). SSMB_OK: all
   taken. SSMB_AGAIN: a stream's receive buffer is full (back-pressure):
   read it, then feed data[*consumed..len) again. A protocol error ends the
   mux (sticky, also returned here): SSMB_ERR_MALFORMED (version, cmd,
   data on a control frame) or SSMB_ERR_LIMIT (length over 32768). The
   first call to feed or tick starts the keep-alive clock; any bytes passed
   count as received, and time spent stalled on a full stream buffer does
   not count as silence. */
SSMB_API ssmb_result ssmb_smux_feed(ssmb_smux *mux, const void *data, size_t len, size_t *consumed,
                                    uint64_t now_ms);
/* The next event: SSMB_OK; SSMB_AGAIN (none); the sticky error after the
   ERROR event was taken. */
SSMB_API ssmb_result ssmb_smux_poll(ssmb_smux *mux, ssmb_smux_event *ev);

/* The bytes waiting to go to the peer (NULL and 0 when none, or after an
   error). They stay valid until the next call that changes the mux. */
SSMB_API const uint8_t *ssmb_smux_out_buf(ssmb_smux *mux, size_t *len);
/* n of those bytes were sent (n <= len; SSMB_ERR_INVALID_ARG otherwise). */
SSMB_API ssmb_result ssmb_smux_out_ack(ssmb_smux *mux, size_t n);

/* Opens a stream (queues SYN): *stream_id the new id. SSMB_AGAIN when the
   output has no room; SSMB_ERR_LIMIT when max_streams are open or the ids
   ran out. */
SSMB_API ssmb_result ssmb_smux_open(ssmb_smux *mux, uint32_t *stream_id);
/* Queues PSH frames of at most max_frame_data bytes; takes what fits
   (*accepted). SSMB_OK when that is anything or len is 0; SSMB_AGAIN when
   nothing fits (drain the output); SSMB_CLOSED after the peer's FIN;
   SSMB_ERR_INVALID_STATE for a stream id not open here. */
SSMB_API ssmb_result ssmb_smux_write(ssmb_smux *mux, uint32_t stream_id, const void *data, size_t len,
                                     size_t *accepted);
/* A write of at most this many bytes now is taken whole (0: drain first). */
SSMB_API size_t ssmb_smux_write_space(const ssmb_smux *mux);
/* Zero-copy writing: len data bytes (1..max_frame_data) the caller placed
   right after out become a PSH frame of the stream, its header written at
   out; the caller sends the SSMB_SMUX_HEADER_SIZE + len bytes itself, next
   after the mux's own output. Only while the mux has no output waiting
   (ssmb_smux_out_buf gives nothing), so frames keep their order:
   SSMB_AGAIN otherwise. Other results as ssmb_smux_write. */
SSMB_API ssmb_result ssmb_smux_write_header(ssmb_smux *mux, uint32_t stream_id, size_t len,
                                            uint8_t out[SSMB_SMUX_HEADER_SIZE]);
/* Ends a stream (queues FIN after its queued data) and frees its slot;
   unread data is discarded, later frames for it are skipped. SSMB_AGAIN
   when the output has no room for the FIN (8 bytes; a reserve is kept). */
SSMB_API ssmb_result ssmb_smux_close(ssmb_smux *mux, uint32_t stream_id);

/* Copies received bytes: SSMB_OK (*n > 0 unless cap is 0), SSMB_AGAIN (none yet),
   SSMB_CLOSED (none left and the peer ended the stream). */
SSMB_API ssmb_result ssmb_smux_read(ssmb_smux *mux, uint32_t stream_id, void *buf, size_t cap, size_t *n);
/* Zero-copy: the next contiguous received bytes (results as for read);
   valid until the next call that changes the mux. Then consume n <= len. */
SSMB_API ssmb_result ssmb_smux_peek(ssmb_smux *mux, uint32_t stream_id, const uint8_t **data, size_t *len);
SSMB_API ssmb_result ssmb_smux_consume(ssmb_smux *mux, uint32_t stream_id, size_t n);
/* Received bytes waiting in a stream (0 for unknown ids). */
SSMB_API size_t ssmb_smux_available(const ssmb_smux *mux, uint32_t stream_id);

/* Keep-alive (when enabled): queues a NOP when one is due, and ends the
   mux with SSMB_ERR_TIMEOUT when nothing was received for
   keepalive_timeout_ms. Returns SSMB_OK or the sticky error. */
SSMB_API ssmb_result ssmb_smux_tick(ssmb_smux *mux, uint64_t now_ms);
/* When tick must next run: SSMB_NO_DEADLINE without keep-alive or after
   an error, 0 before the clock started. */
SSMB_API uint64_t ssmb_smux_next_deadline(const ssmb_smux *mux);

SSMB_API void ssmb_smux_get_metrics(const ssmb_smux *mux, ssmb_smux_metrics *out);
/* SSMB_OK while usable, else the sticky error. */
SSMB_API ssmb_result ssmb_smux_last_error(const ssmb_smux *mux);
/* Streams open now (including those the peer ended but not yet closed). */
SSMB_API uint32_t ssmb_smux_stream_count(const ssmb_smux *mux);

/* ---- url ----------------------------------------------------------------- */

/* A parsed absolute URL; views into the text. */
typedef struct ssmb_url {
    ssmb_str scheme;        /* "wss", "ws", "https", "http" (as written) */
    ssmb_str host;          /* without brackets for IPv6 literals */
    uint16_t port;          /* the URL's, or the scheme's default */
    uint8_t secure;         /* 1 for wss and https */
    uint8_t ipv6_literal;   /* 1 when host was [bracketed] */
    ssmb_str target;        /* path and query, "/" when the URL has none */
    ssmb_str path;          /* target up to '?' */
    ssmb_str query;         /* after '?', without it; may be empty */
} ssmb_url;

/* Parses scheme://host[:port][/path][?query] for the four schemes above.
   No user info, no fragment. SSMB_ERR_MALFORMED otherwise. */
SSMB_API ssmb_result ssmb_url_parse(const char *text, size_t len, ssmb_url *out);

/* ---- api: the AWS JSON 1.1 calls, sans-I/O (L1) ---------------------------
   StartSession, ResumeSession, TerminateSession (service ssm) and KMS
   GenerateDataKey (service kms), PROTOCOL.md §9: requests are written whole
   (head and body) into your buffer, signed with SigV4; responses are parsed
   from a complete HTTP response in your buffer. No I/O, no clock (the
   signing time is an argument), no allocation, no global state; nothing is
   logged. STS is not a JSON 1.1 service (it speaks the query protocol) and
   is left to the credentials code. Stack: a writer uses about 12 KB (most
   of it SigV4's), a parser about 10 KB (JSON tokens, header views). */

#define SSMB_API_MAX_RETRIES 3u          /* PROTOCOL.md §9: the reference retries 3 times */
#define SSMB_API_DATA_KEY_SIZE 64u       /* GenerateDataKey NumberOfBytes (PROTOCOL.md §6.2) */
#define SSMB_API_SESSION_ID_MAX 96u      /* SessionId, the model's maximum (characters) */
#define SSMB_API_TOKEN_MAX 4096u         /* TokenValue bytes accepted (the model says 300; real
                                            tokens are not held to it, so this is only a bound) */
#define SSMB_API_STREAM_URL_MAX 2048u    /* StreamUrl bytes accepted */
#define SSMB_API_KEY_ID_MAX 2048u        /* KMS KeyId, the model's maximum */
#define SSMB_API_CIPHERTEXT_MAX 6144u    /* KMS CiphertextBlob bytes, the model's maximum */

/* Where a resolved endpoint came from. */
enum {
    SSMB_API_ENDPOINT_DEFAULT = 0,      /* built from service, region, partition, FIPS */
    SSMB_API_ENDPOINT_ARGUMENT = 1,     /* endpoint_url below */
    SSMB_API_ENDPOINT_ENV_SERVICE = 2,  /* AWS_ENDPOINT_URL_<SERVICE> */
    SSMB_API_ENDPOINT_ENV_GLOBAL = 3    /* AWS_ENDPOINT_URL */
};

typedef struct ssmb_api_endpoint_desc {
    const char *service;        /* "ssm", "kms", "sts", "ssmmessages": lower-case letters, digits, '-' */
    const char *region;         /* "us-east-1"; needed unless an override applies */
    const char *endpoint_url;   /* explicit override (a --endpoint-url); NULL or "" = none */
    uint32_t fips;              /* 1: the FIPS endpoint (see below); also on when getenv_fn gives
                                   AWS_USE_FIPS_ENDPOINT = "true" (any case) */
    ssmb_getenv_fn getenv_fn;   /* NULL: no environment is consulted */
    void *getenv_user_data;
} ssmb_api_endpoint_desc;

/* The endpoint URL of a service, with a NUL. The first that applies wins:
     1. endpoint_url;
     2. AWS_ENDPOINT_URL_<SERVICE> (the service upper-cased, '-' as '_':
        AWS_ENDPOINT_URL_SSM, _KMS, _STS, _SSMMESSAGES), then
        AWS_ENDPOINT_URL; both skipped when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
        is "true" (any case). An empty value counts as unset;
     3. https://<service>.<region>.amazonaws.com, or .amazonaws.com.cn for
        regions starting "cn-". With fips, the FIPS endpoints the AWS SDKs'
        endpoint table lists: kms-fips.<region>.amazonaws.com in every
        region outside China; ssm-fips.<region> in us-east-1, us-east-2,
        us-west-1, us-west-2, ca-central-1, ca-west-1; sts-fips.<region> in
        the four US ones; in us-gov-* the regional ssm and sts hosts, which
        are FIPS endpoints already. Anything else with fips (ssmmessages,
        China) is SSMB_ERR_UNSUPPORTED: give an override. So are regions of
        the partitions with other DNS suffixes (us-iso*, eu-isoe*, eusc-*).
   An override is copied as given and must be an http:// or https:// URL
   without query (else SSMB_ERR_INVALID_ARG: a bad override is never skipped
   silently). The region must be one DNS label (letters, digits, '-').
   KMS has its own endpoint: resolve "kms", never reuse the SSM one
   (PROTOCOL.md §16). *source (optional) gets an SSMB_API_ENDPOINT_*.
   SSMB_ERR_BUFFER_TOO_SMALL with the needed length in *out_len. */
SSMB_API ssmb_result ssmb_api_endpoint_resolve(const ssmb_api_endpoint_desc *d, char *out, size_t cap,
                                               size_t *out_len, uint32_t *source);

/* What every request needs. Strings are NUL-terminated; nothing is kept. */
typedef struct ssmb_api_call {
    const char *endpoint;       /* resolved URL, http(s)://host[:port][/path], no query */
    const char *region;         /* signing region */
    ssmb_aws_credentials creds; /* a session token adds X-Amz-Security-Token (signed) */
    int64_t time;               /* signing time, Unix seconds UTC */
    const char *user_agent;     /* NULL: "ssmbridge/" SSMB_VERSION_STRING */
} ssmb_api_call;

/* One StartSession parameter: a name and its list of values. */
typedef struct ssmb_api_parameter {
    const char *name;
    const char *const *values;
    size_t value_count;
} ssmb_api_parameter;

/* StartSession's request (PROTOCOL.md §9); limits are the model's, in
   characters (UTF-8 code points). */
typedef struct ssmb_api_start_session {
    const char *target;                     /* required, 1-400 */
    const char *document_name;              /* NULL or "": omitted; else ^[a-zA-Z0-9_\-.:/]{3,128}$ */
    const ssmb_api_parameter *parameters;   /* omitted when parameter_count is 0; names unique */
    size_t parameter_count;
    const char *reason;                     /* NULL or "": omitted; else 1-256 */
} ssmb_api_start_session;

/* GenerateDataKey's request (PROTOCOL.md §6.2, §6.6). */
typedef struct ssmb_api_data_key_request {
    const char *key_id;             /* required, 1-2048: KMSKeyId of the session's parameters */
    const char *session_id;         /* aws:ssm:SessionId, required */
    const char *target_id;          /* aws:ssm:TargetId: the StartSession Target, required */
    const char *random_challenge;   /* aws:ssm:RandomChallenge; NULL or "": omitted */
} ssmb_api_data_key_request;

/* The request writers. Each writes the whole HTTP/1.1 request into out:
       POST <endpoint path> HTTP/1.1
       Host, Content-Type: application/x-amz-json-1.1, X-Amz-Target,
       X-Amz-Date, X-Amz-Security-Token (temporary credentials only),
       User-Agent, Authorization, Content-Length, then the JSON body,
   signed with SigV4 (service ssm or kms) over content-type, host,
   x-amz-date, x-amz-target and, with a token, x-amz-security-token, as the
   AWS SDKs sign (tests/vectors/sigv4-ssm). A NUL follows when it fits.
   *out_len = request length, also on SSMB_ERR_BUFFER_TOO_SMALL (out may be
   NULL to learn it). SSMB_ERR_INVALID_ARG for a NULL or empty required
   argument, a limit broken, a bad endpoint, or header text with control
   characters; SSMB_ERR_MALFORMED for text that is not UTF-8; SigV4's own
   results otherwise. The Authorization value is wiped from the stack. */
SSMB_API ssmb_result ssmb_api_start_session_write(const ssmb_api_call *call, const ssmb_api_start_session *args,
                                                  char *out, size_t cap, size_t *out_len);
/* ResumeSession / TerminateSession {"SessionId": ...} (1-96 characters). */
SSMB_API ssmb_result ssmb_api_resume_session_write(const ssmb_api_call *call, const char *session_id, char *out,
                                                   size_t cap, size_t *out_len);
SSMB_API ssmb_result ssmb_api_terminate_session_write(const ssmb_api_call *call, const char *session_id, char *out,
                                                      size_t cap, size_t *out_len);
/* KMS GenerateDataKey {KeyId, NumberOfBytes: 64, EncryptionContext}. */
SSMB_API ssmb_result ssmb_api_generate_data_key_write(const ssmb_api_call *call,
                                                      const ssmb_api_data_key_request *args, char *out, size_t cap,
                                                      size_t *out_len);
/* Any JSON 1.1 call with a body you made: service is the SigV4 name
   ("ssm"), amz_target the X-Amz-Target ("AmazonSSM.StartSession"). body
   must not overlap out. */
SSMB_API ssmb_result ssmb_api_request_write(const ssmb_api_call *call, const char *service, const char *amz_target,
                                            const char *body, size_t body_len, char *out, size_t cap,
                                            size_t *out_len);

/* A parsed response. Views point into the buffer given to the parser. */
typedef struct ssmb_api_response {
    uint32_t status;            /* HTTP status */
    uint32_t retryable;         /* 1: worth retrying (ssmb_api_is_retryable) */
    ssmb_str body;              /* the body, de-chunked */
    ssmb_str request_id;        /* x-amzn-RequestId, may be empty */
    ssmb_str error_type;        /* AWS error type, namespace removed ("TargetNotConnected") */
    ssmb_str error_message;     /* the error's message or Message, may be empty */
    size_t response_len;        /* bytes of the input the response took */
} ssmb_api_response;

/* Parses one complete HTTP response from in[0..len). The buffer is
   rewritten: a chunked body is decoded in place (moved to follow the head)
   and the string values read are unescaped in place, so afterwards the body
   is no longer the JSON text received. Framing: Transfer-Encoding: chunked,
   else Content-Length, else the rest of the input; bytes after the response
   are left alone (response_len says where it ended).
     SSMB_OK               a 2xx status; out->body is the body.
     SSMB_ERR_AWS_API      an AWS error body: out->error_type is its __type
                           (or, failing that, the x-amzn-ErrorType header)
                           with any "namespace#" prefix and ":..." suffix
                           removed, out->error_message its "message" (or
                           "Message").
     SSMB_ERR_HTTP         any other status outside 2xx, or a bad framing
                           (Transfer-Encoding other than chunked, or beside
                           Content-Length); out->status tells.
     SSMB_ERR_TRUNCATED    the head or body is incomplete.
     SSMB_ERR_UNSUPPORTED  a Content-Encoding other than identity.
     SSMB_ERR_LIMIT        more than 64 header fields or a head over 16 KiB.
   out->retryable is set for every status. */
SSMB_API ssmb_result ssmb_api_response_parse(char *in, size_t len, ssmb_api_response *out);

/* 1 for a retryable failure: HTTP 429 and every 5xx, and the throttling and
   transient error types ThrottlingException, Throttling, ThrottledException,
   RequestThrottledException, RequestThrottled, TooManyRequestsException,
   RequestLimitExceeded, ProvisionedThroughputExceededException,
   BandwidthLimitExceeded, SlowDown, PriorRequestNotComplete,
   TransactionInProgressException, EC2ThrottledException, RequestTimeout,
   RequestTimeoutException (error_type without namespace). */
SSMB_API int ssmb_api_is_retryable(uint32_t status, ssmb_str error_type);
/* The wait before retry number retries_done + 1, in milliseconds, as the
   reference plugin's retryer (PROTOCOL.md §9): 2^retries_done x a value in
   [1000, 1500) taken from random_value (any 32-bit random number, scaled
   without modulo bias): 1000-1499, 2000-2998, 4000-5996. -1 = give up: retries_done
   has reached SSMB_API_MAX_RETRIES. */
SSMB_API int64_t ssmb_api_retry_delay_ms(uint32_t retries_done, uint32_t random_value);

/* Which StreamUrl hosts a session may be sent to. A zero policy accepts the
   AWS hosts below in any region. */
typedef struct ssmb_api_stream_policy {
    const char *region;         /* NULL: any region; else the host must name this region */
    const char *custom_host;    /* with allow_custom: one more host accepted, compared exactly
                                   (ASCII case aside), without brackets or port */
    uint32_t allow_custom;      /* 1: accept custom_host (a local emulator, an endpoint you run) */
    uint32_t allow_plain_ws;    /* 1: ws:// is accepted, for custom_host only */
} ssmb_api_stream_policy;

/* Security check of a StreamUrl before a session goes to it (a forged
   StartSession response must not redirect the session). Accepted: wss://
   (port 443) to
     ssmmessages.<region>.amazonaws.com            (also private DNS of a VPC endpoint)
     ssmmessages.<region>.amazonaws.com.cn         (regions cn-*)
     ssmmessages-fips.<region>.amazonaws.com       (us-east-1, us-east-2, us-west-1, us-west-2, us-gov-*)
     vpce-<id>.ssmmessages.<region>.vpce.amazonaws.com[.cn]
                                                   (an interface VPC endpoint's own names, with
                                                   or without its zone: <id> letters, digits, '-')
   where <region> is one DNS label (and equals policy->region when given),
   and .cn goes with cn-* regions only; or, with allow_custom, custom_host
   exactly (any port, and ws:// too with allow_plain_ws). Host names compare
   ASCII case-insensitively; user info, fragments, IP literals (unless they
   are custom_host) and a trailing dot are refused. SSMB_OK, or
   SSMB_ERR_SSM_PROTOCOL for any other URL; SSMB_ERR_INVALID_ARG for NULL
   url or policy. */
SSMB_API ssmb_result ssmb_api_stream_url_check(const char *url, size_t len, const ssmb_api_stream_policy *policy);

/* StartSession / ResumeSession / TerminateSession results: views into the
   response buffer, unescaped. */
typedef struct ssmb_api_session {
    ssmb_str session_id;
    ssmb_str token_value;
    ssmb_str stream_url;
} ssmb_api_session;

/* The call parsers: ssmb_api_response_parse, then the body's fields. On top
   of its results: SSMB_ERR_JSON for a body that is not a JSON object, or a
   field missing, empty, null or not a string; SSMB_ERR_LIMIT for a field over
   its SSMB_API_*_MAX; SSMB_ERR_SSM_PROTOCOL for a StreamUrl refused by
   policy (NULL: the zero policy). */
/* SessionId, TokenValue and StreamUrl are all required. */
SSMB_API ssmb_result ssmb_api_start_session_parse(char *in, size_t len, const ssmb_api_stream_policy *policy,
                                                  ssmb_api_response *resp, ssmb_api_session *out);
/* No (or an empty) TokenValue means the session timed out (PROTOCOL.md
   §4.5): SSMB_CLOSED, out->token_value empty. The reference reconnects to
   the original StreamUrl; out->stream_url is set only when the response has
   one that passes policy, and is empty otherwise (never an error). */
SSMB_API ssmb_result ssmb_api_resume_session_parse(char *in, size_t len, const ssmb_api_stream_policy *policy,
                                                   ssmb_api_response *resp, ssmb_api_session *out);
/* out->session_id when the response names it. */
SSMB_API ssmb_result ssmb_api_terminate_session_parse(char *in, size_t len, ssmb_api_response *resp,
                                                      ssmb_api_session *out);

/* GenerateDataKey's result. Set ciphertext and ciphertext_cap before the
   call (SSMB_API_CIPHERTEXT_MAX bytes always suffice). */
typedef struct ssmb_api_data_key {
    uint8_t *ciphertext;                        /* in: your buffer for CiphertextBlob */
    size_t ciphertext_cap;                      /* in */
    size_t ciphertext_len;                      /* out (the size needed on SSMB_ERR_BUFFER_TOO_SMALL) */
    uint8_t plaintext[SSMB_API_DATA_KEY_SIZE];  /* out: the data key; wipe it when done */
    ssmb_str key_id;                            /* out: the key's ARN, may be empty */
} ssmb_api_data_key;

/* CiphertextBlob and Plaintext are base64 (required), decoded into out;
   the Plaintext text in the buffer is wiped once decoded. SSMB_ERR_MALFORMED
   for bad base64 or a Plaintext that is not exactly 64 bytes;
   SSMB_ERR_BUFFER_TOO_SMALL when the ciphertext does not fit. out->plaintext
   is zero after any failure. */
SSMB_API ssmb_result ssmb_api_generate_data_key_parse(char *in, size_t len, ssmb_api_response *resp,
                                                      ssmb_api_data_key *out);

/* ---- trust: certificate authorities for TLS ------------------------------
   Immutable once made; share one between any number of conns and engines
   (it must outlive them). Verification is always on: there is no way to
   turn it off. The chain must reach an anchor, every certificate must be
   valid at the configured UTC time, and the server name must be one of the
   certificate's DNS names (dNSName SANs, else the CN): neither backend
   matches IP-address SANs. TLS 1.2 is the version spoken. */

#define SSMB_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

typedef struct ssmb_trust ssmb_trust;

/* Trust anchors from PEM text (one or more CERTIFICATE blocks; anything
   between blocks, private keys included, is ignored; a certificate that
   does not decode is skipped). SSMB_ERR_MALFORMED when no certificate can
   be read, SSMB_ERR_NOMEM, SSMB_ERR_INVALID_ARG for a half allocator,
   SSMB_ERR_UNSUPPORTED under SSMB_NO_TLS. Allocates: with BearSSL, one
   block from a holding everything; with mbedTLS, only the ssmb_trust
   struct and a passing copy of the text come from a, while mbedTLS
   allocates the parsed certificates itself (mbedtls_calloc, as the host's
   mbedTLS build is configured). */
SSMB_API ssmb_result ssmb_trust_create(const ssmb_allocator *a, const void *pem, size_t len, ssmb_trust **out);
/* The same from a file (NULL: SSMB_SYSTEM_CA_BUNDLE). Reads the file: call
   it while setting up, not from inside the loop. SSMB_ERR_IO when it cannot
   be read, SSMB_ERR_LIMIT when it is over 16 MiB. The file's bytes are held
   (through a) only during the call. */
SSMB_API ssmb_result ssmb_trust_load(const ssmb_allocator *a, const char *path, ssmb_trust **out);
/* Certificates kept (skipped ones not counted); 0 for NULL. */
SSMB_API size_t ssmb_trust_count(const ssmb_trust *t);
/* Frees through the allocator that made it; NULL is ignored. */
SSMB_API void ssmb_trust_destroy(ssmb_trust *t);
/* "bearssl", "mbedtls" or "none": the backend compiled in. */
SSMB_API const char *ssmb_tls_backend(void);

/* ---- kms: session encryption (PROTOCOL.md §6) -----------------------------
   AES-256-GCM over Session Manager payloads, keyed from the 64 bytes of a
   KMS GenerateDataKey Plaintext. An encrypted payload is
   nonce (12) || ciphertext || tag (16): 28 bytes longer than the plaintext,
   no additional authenticated data (§6.3).

   The cipher comes from the compiled-in TLS backend: BearSSL (AES-NI and
   PCLMUL when the CPU has them, constant-time portable code otherwise) or
   mbedTLS (mbedtls_gcm_*; its setkey allocates the AES context through
   mbedtls_calloc for the length of each call, as the host's mbedTLS build
   is configured, and a failure there is SSMB_ERR_NOMEM). Under SSMB_NO_TLS
   every function that encrypts or decrypts returns SSMB_ERR_UNSUPPORTED;
   the key split, the payload-type rules, the nonce counter and the
   ActionResult builder work in every configuration.

   Nothing here reads a clock or a random source: nonces are arguments
   (the client draws 12 fresh random bytes per payload; the agent uses the
   counter below). Nothing allocates (but see mbedTLS above). Key
   schedules live on the stack for one call and are wiped before it
   returns; the keys themselves stay in your ssmb_kms_keys until
   ssmb_kms_keys_clear. Tags are compared in constant time; a payload whose
   tag does not match is SSMB_ERR_AUTH and its output is wiped, never
   returned. Input and output may overlap (in place works). */

#define SSMB_KMS_DATA_KEY_SIZE 64u      /* GenerateDataKey NumberOfBytes (§6.2) */
#define SSMB_KMS_KEY_SIZE 32u           /* one AES-256 key, half the data key */
#define SSMB_KMS_NONCE_SIZE 12u
#define SSMB_KMS_TAG_SIZE 16u
#define SSMB_KMS_OVERHEAD 28u           /* nonce + tag */
#define SSMB_KMS_CHALLENGE_SIZE 64u     /* random bytes of an EncChallengeRequest (§6.5) */
#define SSMB_KMS_CHALLENGE_MAX 256u     /* longest challenge plaintext taken */

/* One side's session keys. Plain data with the same layout in every
   configuration (copy it freely); zero it (or call ssmb_kms_keys_clear)
   and it is unusable (SSMB_ERR_INVALID_STATE) until ssmb_kms_keys_init. */
typedef struct ssmb_kms_keys {
    uint8_t send_key[32];       /* encrypts what this side sends */
    uint8_t recv_key[32];       /* decrypts what this side receives */
    uint32_t role;              /* ssmb_channel_role */
    uint32_t ready;             /* 1 after ssmb_kms_keys_init */
    /* The backend's AES and GHASH code for this CPU, chosen once by
       ssmb_kms_keys_init (asking the CPU costs microseconds under
       virtualisation, more than sealing a payload); opaque, NULL when the
       backend chooses by itself. */
    const void *aes_impl;
    void (*ghash_impl)(void);
} ssmb_kms_keys;

/* Splits the data key (§6.2): bytes 0-31 carry agent -> client, bytes
   32-63 client -> agent. So SSMB_CHANNEL_CLIENT sends with 32-63 and
   receives with 0-31; SSMB_CHANNEL_AGENT the other way round.
   SSMB_ERR_INVALID_ARG for NULL, a role that is neither, or len != 64. */
SSMB_API ssmb_result ssmb_kms_keys_init(ssmb_kms_keys *k, uint32_t role, const void *data_key, size_t len);
/* Wipes the keys (NULL is ignored). */
SSMB_API void ssmb_kms_keys_clear(ssmb_kms_keys *k);
/* 1 when this build can encrypt (a TLS backend is compiled in). */
SSMB_API int ssmb_kms_supported(void);

/* §6.4: 1 when a payload of this type is encrypted by `role` when it sends
   (client: Output; agent: Output, StdErr, ExitCode), and when it must be
   decrypted by `role` when it arrives (client: Output, StdErr, ExitCode;
   agent: Output). Handshake payloads, Size and Flag are always clear. */
SSMB_API int ssmb_kms_encrypts(uint32_t role, uint32_t payload_type);
SSMB_API int ssmb_kms_decrypts(uint32_t role, uint32_t payload_type);

/* AES-256-GCM in the §6.3 layout with a raw 32-byte key (key_len != 32:
   SSMB_ERR_INVALID_ARG). These two ask the CPU for its AES support on
   every call; ssmb_kms_keys asks once. Seal writes nonce || ciphertext || tag, len + 28
   bytes; *out_len is that size, also on SSMB_ERR_BUFFER_TOO_SMALL.
   SSMB_ERR_LIMIT past GCM's 2^36 - 32 bytes, SSMB_ERR_OVERFLOW when
   len + 28 wraps. */
SSMB_API ssmb_result ssmb_aes256_gcm_seal(const uint8_t *key, size_t key_len, const uint8_t nonce[12],
                                          const void *plain, size_t len, uint8_t *out, size_t cap,
                                          size_t *out_len);
/* Open takes nonce || ciphertext || tag and writes the plaintext, len - 28
   bytes (*out_len, also on SSMB_ERR_BUFFER_TOO_SMALL). SSMB_ERR_TRUNCATED
   when len < 28; SSMB_ERR_AUTH when the tag does not match (any change to
   nonce, ciphertext or tag, or the wrong key): the output bytes are then
   zeroed and *out_len is 0. */
SSMB_API ssmb_result ssmb_aes256_gcm_open(const uint8_t *key, size_t key_len, const void *in, size_t len,
                                          uint8_t *out, size_t cap, size_t *out_len);

/* The same with this side's send key / receive key. */
SSMB_API ssmb_result ssmb_kms_encrypt_payload(const ssmb_kms_keys *k, const void *plain, size_t len,
                                              const uint8_t nonce[12], uint8_t *out, size_t cap, size_t *out_len);
SSMB_API ssmb_result ssmb_kms_decrypt_payload(const ssmb_kms_keys *k, const void *in, size_t len, uint8_t *out,
                                              size_t cap, size_t *out_len);

/* The encryption challenge (§6.5), client side: takes the
   EncChallengeRequest payload {"Challenge":"<base64>"}, decrypts it with
   the receive key and writes the EncChallengeResponse payload: the same
   plaintext encrypted with the send key and nonce (12 fresh random
   bytes). JSON and base64 errors as ssmb_challenge_parse;
   SSMB_ERR_TRUNCATED, SSMB_ERR_AUTH as ssmb_aes256_gcm_open; SSMB_ERR_LIMIT
   for a challenge longer than SSMB_KMS_CHALLENGE_MAX. The text is written
   as ssmb_challenge_build writes it (*out_len, NUL when it fits). */
SSMB_API ssmb_result ssmb_kms_challenge_answer(const ssmb_kms_keys *k, const void *request_json, size_t len,
                                               const uint8_t nonce[12], char *out, size_t cap, size_t *out_len);
/* Agent side: the EncChallengeRequest payload for n random bytes (the
   agent sends SSMB_KMS_CHALLENGE_SIZE; at most SSMB_KMS_CHALLENGE_MAX),
   encrypted with the send key and nonce. */
SSMB_API ssmb_result ssmb_kms_challenge_request(const ssmb_kms_keys *k, const uint8_t *challenge, size_t n,
                                                const uint8_t nonce[12], char *out, size_t cap, size_t *out_len);
/* Agent side: SSMB_OK when the EncChallengeResponse payload decrypts with
   the receive key to exactly the n challenge bytes (compared in constant
   time); SSMB_ERR_AUTH when the tag or the bytes differ; JSON, base64 and
   length errors as for ssmb_kms_challenge_answer. */
SSMB_API ssmb_result ssmb_kms_challenge_verify(const ssmb_kms_keys *k, const uint8_t *challenge, size_t n,
                                               const void *response_json, size_t len);

/* The KMSEncryption ActionResult of the HandshakeResponse (§5.3):
   {"KMSCipherTextKey":"<base64 of the CiphertextBlob bytes>",
   "KMSCipherTextHash":null} and, when challenge_acknowledged (the data key
   was generated with the aws:ssm:RandomChallenge context, §6.6),
   ,"ChallengeAcknowledgement":true before the closing brace. An empty blob
   is SSMB_ERR_INVALID_ARG. Text rules as every builder (*out_len, NUL). */
SSMB_API ssmb_result ssmb_kms_action_result_build(const void *ciphertext_blob, size_t n, int challenge_acknowledged,
                                                  char *out, size_t cap, size_t *out_len);
/* Agent side: reads that ActionResult. KMSCipherTextKey is required and is
   decoded into blob (strict base64, SSMB_ERR_MALFORMED otherwise);
   ChallengeAcknowledgement may be absent (0). */
SSMB_API ssmb_result ssmb_kms_action_result_parse(const void *json, size_t len, uint8_t *blob, size_t cap,
                                                  size_t *blob_len, int *challenge_acknowledged);

/* The agent's nonces (§6.3): a 96-bit counter kept as three 32-bit words,
   emitted little-endian word by word, then incremented by one (word 0
   first, carrying into words 1 and 2, wrapping after all ones). */
typedef struct ssmb_kms_nonce_counter {
    uint32_t word[3];
} ssmb_kms_nonce_counter;
/* Starts from 12 random bytes read as three little-endian words, so the
   first nonce equals them. */
SSMB_API void ssmb_kms_nonce_init(ssmb_kms_nonce_counter *c, const uint8_t random12[12]);
/* Writes the current nonce and advances the counter. */
SSMB_API void ssmb_kms_nonce_next(ssmb_kms_nonce_counter *c, uint8_t nonce[12]);

/* ---- conn: one WebSocket connection, sans-I/O (L1) -------------------------
   Bytes in, bytes out, time passed in; no sockets, no callbacks. TLS runs
   inside (or your transport secures the bytes), then the HTTP upgrade
   (SigV4-signed for AWS unless the URL is presigned, PROTOCOL.md §4.1),
   then WebSocket messages both ways, pings, and dead-peer detection.

   The loop, BearSSL style:
       ssmb_conn_start(c, now);
       for (;;) {
           unsigned w = ssmb_conn_wants(c);
           if (w & SSMB_WANT_CLOSED) break;
           if (w & SSMB_WANT_WRITE) { p = ssmb_conn_send_buf(c, &n); n = write(fd, p, n); ssmb_conn_send_ack(c, n); }
           if (w & SSMB_WANT_READ)  { p = ssmb_conn_recv_buf(c, &cap); n = read(fd, p, cap);
                                      n > 0 ? ssmb_conn_recv_ack(c, n, now) : ssmb_conn_recv_eof(c, now); }
           while (ssmb_conn_recv_message(c, &piece) == SSMB_OK) use(piece);
           ssmb_conn_tick(c, now);  // timers; sleep until ssmb_conn_next_deadline(c)
       }
   Nothing here allocates after ssmb_conn_create. */

typedef struct ssmb_conn ssmb_conn;

typedef enum ssmb_tls_mode {
    SSMB_TLS_AUTO = 0,          /* compiled-in TLS for wss://, none for ws:// */
    SSMB_TLS_INTERNAL = 1,      /* compiled-in TLS whatever the scheme */
    SSMB_TLS_EXTERNAL = 2,      /* none: your transport secures the bytes */
    SSMB__TLS_MODE_FORCE_32 = 0x7fffffff
} ssmb_tls_mode;

typedef struct ssmb_conn_desc {
    const char *url;                    /* ws:// or wss:// (required); copied */
    uint32_t tls_mode;                  /* ssmb_tls_mode */
    const ssmb_trust *trust;            /* CAs for internal TLS (required then); must outlive the conn */
    const char *server_name;            /* name the certificate must carry (default: the URL's host) */
    /* SigV4 signing of the upgrade: on when credentials are given and the
       URL carries no X-Amz-* signature parameters (PROTOCOL.md §4.1). */
    ssmb_aws_credentials credentials;   /* copied; never logged */
    const char *region;                 /* required when signing */
    const char *sign_service;           /* default "ssmmessages" */
    const ssmb_http_header *extra_headers; /* sent on the upgrade request; copied */
    uint32_t extra_header_count;
    uint32_t handshake_timeout_ms;      /* TLS and upgrade, default 45000 */
    uint32_t ping_interval_ms;          /* default 30000; a ping after this long without sending */
    uint32_t idle_timeout_ms;           /* no byte from the peer for this long: closed with
                                           SSMB_ERR_TIMEOUT (dead peer); default 90000 */
    uint32_t close_timeout_ms;          /* wait for the peer's close frame, default 3000 */
    uint64_t max_message_size;          /* incoming text/binary limit, default 16 MiB (close 1009) */
    uint32_t buffer_size;               /* each way, when TLS is not internal: default 16384 */
    ssmb_allocator allocator;
    ssmb_logger logger;
    ssmb_random_fn random_fn;           /* default ssmb_random_system */
    void *random_user_data;
    ssmb_utc_fn utc_fn;                 /* default ssmb_utc_system */
    void *utc_user_data;
    /* Request mode, for the AWS API calls: no WebSocket. url is http:// or
       https://; request (request_len bytes, a whole HTTP/1.1 request, e.g.
       from ssmb_api_start_session_write) is sent once TLS is up, and the
       response is gathered whole: head, then Content-Length or chunked
       body (at most response_max bytes, default 65536; more is
       SSMB_ERR_LIMIT). Then the conn is CLOSED with SSMB_CLOSED and
       ssmb_conn_response hands the response out. Nothing is signed here
       (the request is). */
    const void *request;
    size_t request_len;
    uint32_t response_max;
} ssmb_conn_desc;

enum {
    SSMB_WANT_READ = 1u << 0,   /* give it bytes from the transport */
    SSMB_WANT_WRITE = 1u << 1,  /* it has bytes for the transport */
    SSMB_WANT_TIMER = 1u << 2,  /* call ssmb_conn_tick by ssmb_conn_next_deadline */
    SSMB_WANT_CLOSED = 1u << 3  /* finished: close the transport, destroy the conn */
};

#define SSMB_NO_DEADLINE UINT64_MAX

typedef enum ssmb_conn_state {
    SSMB_CONN_IDLE = 0,         /* created, not started */
    SSMB_CONN_HANDSHAKE = 1,    /* TLS handshake and HTTP upgrade */
    SSMB_CONN_OPEN = 2,         /* messages flow */
    SSMB_CONN_CLOSING = 3,      /* a close frame was sent or received */
    SSMB_CONN_CLOSED = 4,       /* done; see ssmb_conn_last_error */
    SSMB__CONN_STATE_FORCE_32 = 0x7fffffff
} ssmb_conn_state;

/* Allocates everything the connection will ever need (TLS buffers, copies
   of the URL, credentials and headers). SSMB_ERR_INVALID_ARG names a missing
   or bad desc field in the log; SSMB_ERR_NOMEM. */
SSMB_API ssmb_result ssmb_conn_create(const ssmb_conn_desc *desc, ssmb_conn **out);
/* Frees it; calls nothing back. Secrets are wiped first. */
SSMB_API void ssmb_conn_destroy(ssmb_conn *c);
/* Begins the TLS handshake and queues the upgrade request. Reads the UTC
   clock and the random source once each. */
SSMB_API ssmb_result ssmb_conn_start(ssmb_conn *c, uint64_t now_ms);

/* Where bytes from the transport go (zero copy): write up to *cap bytes,
   then ssmb_conn_recv_ack. NULL when it cannot take any now. */
SSMB_API uint8_t *ssmb_conn_recv_buf(ssmb_conn *c, size_t *cap);
SSMB_API ssmb_result ssmb_conn_recv_ack(ssmb_conn *c, size_t n, uint64_t now_ms);
/* The copying form: takes what fits, *consumed says how much. */
SSMB_API ssmb_result ssmb_conn_feed(ssmb_conn *c, const void *data, size_t len, size_t *consumed,
                                    uint64_t now_ms);
/* The transport reached end of file (or failed): the conn closes. */
SSMB_API void ssmb_conn_recv_eof(ssmb_conn *c, uint64_t now_ms);
/* Bytes for the transport: send up to *len, then ssmb_conn_send_ack. NULL
   when there are none. */
SSMB_API const uint8_t *ssmb_conn_send_buf(ssmb_conn *c, size_t *len);
SSMB_API void ssmb_conn_send_ack(ssmb_conn *c, size_t n);

/* SSMB_WANT_* bits. */
SSMB_API unsigned ssmb_conn_wants(ssmb_conn *c);
/* Runs due timers: handshake timeout, pings, dead-peer detection, close
   timeout. */
SSMB_API ssmb_result ssmb_conn_tick(ssmb_conn *c, uint64_t now_ms);
/* When ssmb_conn_tick must next run, on your monotonic clock, or
   SSMB_NO_DEADLINE. */
SSMB_API uint64_t ssmb_conn_next_deadline(const ssmb_conn *c);
SSMB_API ssmb_conn_state ssmb_conn_get_state(const ssmb_conn *c);

/* The next piece of an incoming text or binary message (control frames are
   handled inside: pings answered, closes completed):
     SSMB_OK      *piece set; its data is valid until the next call on c
     SSMB_AGAIN   nothing now
     SSMB_CLOSED  the connection is closed (ssmb_conn_last_error says why)
   Large messages come in several pieces (SSMB_WS_MESSAGE_START/END); until
   you take a piece the conn reads no further (back-pressure). */
SSMB_API ssmb_result ssmb_conn_recv_message(ssmb_conn *c, ssmb_ws_piece *piece);
/* Payload bytes one frame can carry now (0 while the handshake runs or the
   output is full). */
SSMB_API size_t ssmb_conn_send_space(ssmb_conn *c);
/* Sends data as one frame of a text or binary message, masked. Takes at
   most ssmb_conn_send_space() bytes (*accepted says how many); the message
   ends when final is 1 and all of data was taken. Later calls continue it
   (pass the same opcode). SSMB_AGAIN when nothing fits now. */
SSMB_API ssmb_result ssmb_conn_send_message(ssmb_conn *c, uint32_t opcode, const void *data, size_t len,
                                            int final, size_t *accepted);
/* Starts the close handshake (RFC 6455 §7): code 0 sends no code. */
SSMB_API ssmb_result ssmb_conn_close(ssmb_conn *c, uint32_t code, const char *reason, uint64_t now_ms);
/* Why it closed: SSMB_CLOSED for a clean close, else the error (sticky).
   *detail: the TLS backend's code, the HTTP status, or the WebSocket close
   code. */
SSMB_API ssmb_result ssmb_conn_last_error(const ssmb_conn *c, int32_t *detail);
/* The close code and reason the peer sent (1005 and empty when none). */
SSMB_API uint32_t ssmb_conn_peer_close(const ssmb_conn *c, ssmb_str *reason);
/* Request mode: the whole response (head and body, chunked bodies decoded
   in place) once the conn closed with SSMB_CLOSED; else SSMB_AGAIN while it
   runs, or its error. */
SSMB_API ssmb_result ssmb_conn_response(const ssmb_conn *c, const uint8_t **data, size_t *len);

/* ---- creds: AWS credential sources ---------------------------------------
   The credential chain, in this order (the first that applies wins):
     1. explicit keys in the desc;
     2. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
        AWS_SESSION_TOKEN;
     3. web identity from the environment: AWS_ROLE_ARN and
        AWS_WEB_IDENTITY_TOKEN_FILE (AWS_ROLE_SESSION_NAME optional);
     4. the profile (desc.profile, else AWS_PROFILE, else "default") in the
        shared files: ~/.aws/credentials ([name] sections) and ~/.aws/config
        ([default] and [profile name]); AWS_SHARED_CREDENTIALS_FILE and
        AWS_CONFIG_FILE move them. The credentials file wins over the config
        file key by key. In a profile: role_arn (with source_profile,
        credential_source or web_identity_token_file) first, then
        aws_access_key_id + aws_secret_access_key, then credential_process;
     5. ECS containers: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on
        http://169.254.170.2) or AWS_CONTAINER_CREDENTIALS_FULL_URI, with
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or _TOKEN;
     6. EC2 instance metadata (IMDSv2) unless AWS_EC2_METADATA_DISABLED is
        "true"; AWS_EC2_METADATA_SERVICE_ENDPOINT moves it.
   ssmb_creds_resolve reads only the environment (through getenv_fn) and the
   two small files; it never opens a socket, runs a program or reads a clock.
   What needs the network or a process comes back as a plan: the base step
   (credentials ready, or a process, web identity, ECS or IMDS step) and then
   the roles to assume in order. The request builders and response parsers
   below do each step's bytes; the engine moves them. Secrets are never
   logged; ssmb_creds_result_wipe and ssmb_creds_wipe clear them. */

#define SSMB_CREDS_KEY_MAX 128u         /* bytes of an access key id or a secret key, NUL included */
#define SSMB_CREDS_TOKEN_MAX 4096u      /* bytes of a session token, NUL included */
#define SSMB_CREDS_TEXT_MAX 1024u       /* bytes of a path, command, URL or ARN, NUL included */
#define SSMB_CREDS_NAME_MAX 128u        /* bytes of a profile, role session name, region, NUL included */
#define SSMB_CREDS_MAX_ROLES 8u         /* roles in one chain (source_profile depth limit) */
#define SSMB_CREDS_DEFAULT_FILE_MAX 65536u
#define SSMB_CREDS_DEFAULT_REFRESH_S 300u
#define SSMB_CREDS_DEFAULT_DURATION_S 3600u

/* Credentials with their own storage (NUL-terminated texts). */
typedef struct ssmb_creds {
    char access_key_id[SSMB_CREDS_KEY_MAX];
    char secret_access_key[SSMB_CREDS_KEY_MAX];   /* secret: never logged */
    char session_token[SSMB_CREDS_TOKEN_MAX];     /* secret; "" for long-term keys */
    int64_t expiration;                           /* Unix seconds UTC, when has_expiration */
    uint32_t has_expiration;
    uint32_t refresh_before_s;                    /* refresh this long before expiry (0 = 300) */
} ssmb_creds;

/* Views for the signer (ssmb_sigv4_params.creds); valid while c lives. */
SSMB_API ssmb_aws_credentials ssmb_creds_view(const ssmb_creds *c);
/* Overwrites every byte. */
SSMB_API void ssmb_creds_wipe(ssmb_creds *c);
/* 1 when c must be fetched again before signing at now_utc: empty, or
   expiring within c->refresh_before_s (default 5 minutes). Credentials
   without an expiry never need it. */
SSMB_API int ssmb_creds_needs_refresh(const ssmb_creds *c, int64_t now_utc);
/* ISO 8601 date-time as AWS writes expirations: "2024-05-01T12:00:00Z",
   with optional fractional seconds ("...:00.123Z") and an offset in place of
   Z ("+02:00", "-0530"). SSMB_ERR_MALFORMED otherwise. */
SSMB_API ssmb_result ssmb_creds_time_parse(const char *text, size_t len, int64_t *unix_seconds);

/* Where a problem was found: code, file and 1-based line (0 when not about a
   line, file "" when not about a file), and a short static reason. */
typedef struct ssmb_creds_error {
    ssmb_result code;
    uint32_t line;
    const char *reason;                 /* static text, never NULL after an error, never a secret */
    char file[SSMB_CREDS_TEXT_MAX];
} ssmb_creds_error;

typedef enum ssmb_creds_source {
    SSMB_CREDS_SOURCE_NONE = 0,
    SSMB_CREDS_SOURCE_EXPLICIT = 1,
    SSMB_CREDS_SOURCE_ENV = 2,
    SSMB_CREDS_SOURCE_ENV_WEB_IDENTITY = 3,
    SSMB_CREDS_SOURCE_PROFILE = 4,
    SSMB_CREDS_SOURCE_ECS = 5,
    SSMB_CREDS_SOURCE_IMDS = 6,
    SSMB__CREDS_SOURCE_FORCE_32 = 0x7fffffff
} ssmb_creds_source;

/* The first thing to do. */
typedef enum ssmb_creds_step {
    SSMB_CREDS_STEP_READY = 0,          /* result.creds holds the base credentials */
    SSMB_CREDS_STEP_PROCESS = 1,        /* run result.process_command, parse with ssmb_creds_process_parse */
    SSMB_CREDS_STEP_WEB_IDENTITY = 2,   /* STS AssumeRoleWithWebIdentity with result.web_identity */
    SSMB_CREDS_STEP_ECS = 3,            /* GET result.ecs, parse with ssmb_creds_http_parse */
    SSMB_CREDS_STEP_IMDS = 4,           /* the IMDSv2 exchange on result.imds */
    SSMB__CREDS_STEP_FORCE_32 = 0x7fffffff
} ssmb_creds_step;

/* One STS AssumeRole call: the credentials so far sign it. */
typedef struct ssmb_creds_role {
    char role_arn[SSMB_CREDS_TEXT_MAX];
    char session_name[SSMB_CREDS_NAME_MAX];     /* role_session_name, default "ssmbridge-session" */
    char external_id[SSMB_CREDS_TEXT_MAX + 256]; /* "" when none (STS allows 1224 bytes) */
    uint32_t duration_s;                        /* duration_seconds, default 3600 */
    char profile[SSMB_CREDS_NAME_MAX];          /* the profile that named the role */
} ssmb_creds_role;

typedef struct ssmb_creds_web_identity {
    char role_arn[SSMB_CREDS_TEXT_MAX];
    char token_file[SSMB_CREDS_TEXT_MAX];       /* read it before each call (it is rotated) */
    char session_name[SSMB_CREDS_NAME_MAX];     /* default "ssmbridge-session" */
    uint32_t duration_s;                        /* default 3600 */
} ssmb_creds_web_identity;

/* An ECS container endpoint, split for the connection and the request. */
typedef struct ssmb_creds_ecs {
    char url[SSMB_CREDS_TEXT_MAX];              /* the full URL */
    char host[SSMB_CREDS_NAME_MAX * 2];         /* without brackets */
    uint16_t port;
    uint32_t https;                             /* 1: TLS to the endpoint */
    char target[SSMB_CREDS_TEXT_MAX];           /* path and query */
    char auth_token[SSMB_CREDS_TOKEN_MAX];      /* secret: AWS_CONTAINER_AUTHORIZATION_TOKEN or "" */
    char auth_token_file[SSMB_CREDS_TEXT_MAX];  /* wins over auth_token; read before each request */
} ssmb_creds_ecs;

/* The instance metadata endpoint (default 169.254.169.254 port 80). */
typedef struct ssmb_creds_imds {
    char host[SSMB_CREDS_NAME_MAX * 2];         /* without brackets */
    uint16_t port;
} ssmb_creds_imds;

/* What the chain found. Large (about 40 KB): keep it off small stacks.
   Plain data; copy it freely, wipe it when done. */
typedef struct ssmb_creds_result {
    ssmb_creds_source source;
    ssmb_creds_step step;
    ssmb_creds creds;                           /* READY: the base credentials */
    char profile[SSMB_CREDS_NAME_MAX];          /* the profile read (also when it gave nothing) */
    char region[SSMB_CREDS_NAME_MAX];           /* the profile's region, or "" */
    char process_command[SSMB_CREDS_TEXT_MAX];  /* PROCESS: the command line, for a shell */
    ssmb_creds_web_identity web_identity;       /* WEB_IDENTITY */
    ssmb_creds_ecs ecs;                         /* ECS */
    ssmb_creds_imds imds;                       /* IMDS */
    uint32_t role_count;                        /* then AssumeRole roles[0], roles[1], ... in order */
    ssmb_creds_role roles[SSMB_CREDS_MAX_ROLES];
    ssmb_creds_error error;                     /* set when resolve fails */
} ssmb_creds_result;

/* Zero means default everywhere. */
typedef struct ssmb_creds_desc {
    ssmb_allocator allocator;           /* one block for reading the files, freed before return */
    ssmb_logger logger;                 /* which source was chosen, never a secret */
    ssmb_getenv_fn getenv_fn;           /* default ssmb_getenv_system */
    void *getenv_user_data;
    ssmb_aws_credentials explicit_creds; /* used first when access_key_id is not empty */
    const char *profile;                /* default AWS_PROFILE, then "default" */
    const char *credentials_file;       /* default AWS_SHARED_CREDENTIALS_FILE, then ~/.aws/credentials */
    const char *config_file;            /* default AWS_CONFIG_FILE, then ~/.aws/config */
    uint32_t max_file_size;             /* bytes per file, default SSMB_CREDS_DEFAULT_FILE_MAX */
    uint32_t refresh_before_s;          /* copied into creds, default 300 */
    uint32_t max_chain_depth;           /* roles, default and at most SSMB_CREDS_MAX_ROLES */
    uint32_t no_files;                  /* 1: skip the shared files */
    uint32_t no_remote;                 /* 1: skip ECS and IMDS (nothing found is then an error) */
} ssmb_creds_desc;

/* Walks the chain. SSMB_OK with result->step and the plan; otherwise a
   negative result with result->error set: SSMB_ERR_CREDENTIALS (a profile
   missing or unusable, a role chain that loops or is too deep, partial
   keys), SSMB_ERR_MALFORMED (a file line that cannot be read, a bad
   variable), SSMB_ERR_LIMIT (a file or value too large), SSMB_ERR_IO (a file
   that opens but cannot be read), SSMB_ERR_NOMEM, SSMB_ERR_INVALID_ARG. A
   missing file is no error. The shared files are read (for the region)
   whichever source wins, so a malformed file is an error even beside
   explicit or environment keys, as with the AWS command line tools. */
SSMB_API ssmb_result ssmb_creds_resolve(const ssmb_creds_desc *desc, ssmb_creds_result *result);
SSMB_API void ssmb_creds_result_wipe(ssmb_creds_result *r);

/* Reads a small file (a web identity or ECS token) into out with a NUL,
   trailing whitespace removed; SSMB_ERR_IO when it cannot be read,
   SSMB_ERR_LIMIT when it does not fit in cap. */
SSMB_API ssmb_result ssmb_creds_read_token_file(const char *path, char *out, size_t cap, size_t *out_len);

/* credential_process output: {"Version": 1, "AccessKeyId", "SecretAccessKey",
   "SessionToken" (optional), "Expiration" (optional, ISO 8601)}.
   SSMB_ERR_JSON for malformed JSON or a key missing or of the wrong type,
   SSMB_ERR_UNSUPPORTED for another Version, SSMB_ERR_MALFORMED for a bad
   date, SSMB_ERR_LIMIT for a value too long. out is wiped on failure. */
SSMB_API ssmb_result ssmb_creds_process_parse(const char *text, size_t len, ssmb_creds *out);
/* ECS and IMDS bodies: {"AccessKeyId", "SecretAccessKey", "Token",
   "Expiration"} (and "Code", which must be "Success" when present:
   SSMB_ERR_AWS_API otherwise). Results as ssmb_creds_process_parse. */
SSMB_API ssmb_result ssmb_creds_http_parse(const char *text, size_t len, ssmb_creds *out);
/* A whole HTTP response: SSMB_OK and *body when the status is 200 and the
   body is complete (Content-Length, or all that follows the head);
   SSMB_AGAIN for more; SSMB_ERR_HTTP with *status for another status or a
   malformed head. */
SSMB_API ssmb_result ssmb_creds_http_body(const char *in, size_t len, uint32_t *status, ssmb_str *body);

/* ECS: GET target, Host, Accept: application/json, Authorization:
   auth_token when not empty. Results as ssmb_http_request_write. */
SSMB_API ssmb_result ssmb_creds_ecs_request(const ssmb_creds_ecs *e, ssmb_str auth_token, char *out, size_t cap,
                                            size_t *out_len);
/* IMDSv2: PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds
   (ttl_s, 0 = 21600); then GET /latest/meta-data/iam/security-credentials/
   (role empty: the role list) or .../<role> with X-aws-ec2-metadata-token. */
SSMB_API ssmb_result ssmb_creds_imds_token_request(const ssmb_creds_imds *m, uint32_t ttl_s, char *out, size_t cap,
                                                   size_t *out_len);
SSMB_API ssmb_result ssmb_creds_imds_creds_request(const ssmb_creds_imds *m, ssmb_str token, ssmb_str role,
                                                   char *out, size_t cap, size_t *out_len);
/* The first role name of a role list body; SSMB_ERR_CREDENTIALS when empty,
   SSMB_ERR_MALFORMED for characters other than letters, digits and
   "+=,.@_-". */
SSMB_API ssmb_result ssmb_creds_imds_role_parse(const char *text, size_t len, ssmb_str *role);

/* STS query protocol, POST / to sts.<region>.amazonaws.com (sts.amazonaws.com
   when region is empty, signed for us-east-1), form body
   Action=...&Version=2011-06-15&... with every value URL-encoded.
   AssumeRole is SigV4-signed with base at now_utc; AssumeRoleWithWebIdentity
   is not signed and carries the token. Results as ssmb_http_request_write,
   plus the signer's. */
SSMB_API ssmb_result ssmb_creds_sts_assume_role_request(const ssmb_creds_role *role, const ssmb_creds *base,
                                                        const char *region, int64_t now_utc, char *out,
                                                        size_t cap, size_t *out_len);
SSMB_API ssmb_result ssmb_creds_sts_web_identity_request(const ssmb_creds_web_identity *w, ssmb_str token,
                                                         const char *region, char *out, size_t cap,
                                                         size_t *out_len);
/* An STS response body (AssumeRoleResponse or
   AssumeRoleWithWebIdentityResponse): Credentials/AccessKeyId,
   SecretAccessKey, SessionToken, Expiration. A tiny tag matcher, not an XML
   parser: it finds the first <Credentials> element and the four elements
   directly inside it, skips other elements, comments and processing
   instructions, decodes the five predefined entities and numeric character
   references, and refuses CDATA, DOCTYPE, attributes on these elements,
   unbalanced tags and nesting deeper than 16. SSMB_ERR_AWS_API for an
   <ErrorResponse> (error_code gets <Code> when not NULL), SSMB_ERR_TRUNCATED
   when the text ends early, SSMB_ERR_MALFORMED otherwise. */
SSMB_API ssmb_result ssmb_creds_sts_parse(const char *text, size_t len, ssmb_creds *out, char *error_code,
                                          size_t error_code_cap);

/* ---- engine: sockets, timers, and your poll loop (L3) ----------------------
   The engine owns non-blocking sockets and the connections on them. Drive
   it in one of two ways:
     1. ssmb_engine_tick(eng, now) on every turn of your loop, sleeping for
        ssmb_engine_timeout_ms (or let ssmb_engine_wait sleep in poll());
     2. ssmb_engine_fds -> your poll/epoll/kqueue -> ssmb_engine_process.
   Events come back through desc.event_fn (called only from inside
   process/tick, on your thread) or, without it, from ssmb_engine_next_event.
   Inside an event callback you may send, close and query; you may not
   destroy the engine or call process/tick (SSMB_ERR_INVALID_STATE).
   Name resolution never blocks: /etc/hosts, then DNS over UDP to the
   servers of /etc/resolv.conf (or your resolve_fn). HTTPS proxies are
   reached with CONNECT (HTTPS_PROXY / https_proxy, NO_PROXY / no_proxy).
   The engine never reads a clock: now_ms is your monotonic milliseconds. */
#if !defined(SSMB_NO_SOCKETS)

typedef struct ssmb_engine ssmb_engine;

/* A WebSocket inside an engine: slot and generation. A stale handle gets
   SSMB_ERR_INVALID_STATE, never freed memory. {0} is never a valid handle. */
typedef struct ssmb_ws {
    uint32_t id;
} ssmb_ws;

/* A session and a port-forward listener in an engine (see below), handles
   of the same kind. */
typedef struct ssmb_session {
    uint32_t id;
} ssmb_session;
typedef struct ssmb_forward {
    uint32_t id;
} ssmb_forward;

enum { SSMB_POLLIN = 0x001, SSMB_POLLOUT = 0x004, SSMB_POLLERR = 0x008, SSMB_POLLHUP = 0x010 };

/* The library's own pollfd (the public header needs no <poll.h>). */
typedef struct ssmb_pollfd {
    int32_t fd;
    uint16_t events;    /* SSMB_POLLIN / SSMB_POLLOUT wanted */
    uint16_t revents;   /* what your poll reported */
} ssmb_pollfd;

typedef enum ssmb_event_type {
    SSMB_EVENT_NONE = 0,
    SSMB_EVENT_WS_OPEN = 1,         /* upgrade done; messages may be sent */
    SSMB_EVENT_WS_MESSAGE = 2,      /* a piece of an incoming message */
    SSMB_EVENT_WS_WRITABLE = 3,     /* send space came back after SSMB_AGAIN */
    SSMB_EVENT_WS_CLOSED = 4,       /* finished; the handle is dead after this */
    SSMB_EVENT_SESSION_STATE = 10,  /* sessions: see ssmb_session_start */
    SSMB_EVENT_SESSION_OUTPUT = 11,
    SSMB_EVENT_SESSION_STDERR = 12,
    SSMB_EVENT_SESSION_EXIT = 13,
    SSMB_EVENT_SESSION_WRITABLE = 14,
    SSMB_EVENT_SESSION_CLOSED = 15,
    SSMB_EVENT_FORWARD_OPEN = 16,   /* a forward accepted a connection (ev.detail: its number) */
    SSMB_EVENT_FORWARD_CLOSE = 17,  /* that connection ended */
    SSMB__EVENT_TYPE_FORCE_32 = 0x7fffffff
} ssmb_event_type;

typedef struct ssmb_event {
    uint32_t type;          /* ssmb_event_type */
    ssmb_ws ws;
    void *user_data;        /* what ssmb_engine_ws_open was given */
    int32_t result;         /* WS_CLOSED: SSMB_CLOSED when clean, else the error */
    int32_t detail;         /* errno, TLS code, HTTP status or close code */
    ssmb_ws_piece piece;    /* WS_MESSAGE: valid until the next engine call */
    ssmb_session session;   /* SESSION_* and FORWARD_*: the session */
    ssmb_forward forward;   /* FORWARD_* */
    uint32_t state;         /* SESSION_STATE: the new ssmb_session_state */
    int32_t exit_code;      /* SESSION_EXIT */
    const uint8_t *data;    /* SESSION_OUTPUT, SESSION_STDERR: valid until the next engine call */
    size_t len;
    ssmb_str message;       /* SESSION_CLOSED: the reason (channel_closed's output, an AWS error) */
} ssmb_event;

/* Counters of one session (and the engine's sum for SSMB_SESSION {0}). */
typedef struct ssmb_session_metrics {
    uint64_t sessions_started, sessions_open;   /* engine totals (ssmb_engine_metrics only) */
    uint64_t messages_in, messages_out;         /* ClientMessages, acknowledgements included */
    uint64_t bytes_in, bytes_out;               /* session data (payload bytes) each way */
    uint64_t retransmissions;
    uint64_t reconnects;
    uint64_t rtt_us, rto_us;                    /* the estimator now */
    uint64_t handshake_us;                      /* HandshakeRequest to HandshakeComplete */
    uint64_t connect_ms;                        /* start to READY */
} ssmb_session_metrics;

/* An address a resolver found. */
typedef struct ssmb_address {
    uint32_t family;        /* 4 or 6 */
    uint8_t bytes[16];      /* network order; IPv4 in the first 4 */
} ssmb_address;

/* Optional: resolve host yourself (the text lives only during the call),
   then call ssmb_engine_resolved(eng, request, ...) later (or from inside
   this call). */
typedef ssmb_result (*ssmb_resolve_fn)(ssmb_engine *eng, uint32_t request, const char *host, void *user_data);

typedef struct ssmb_desc {
    ssmb_allocator allocator;
    ssmb_logger logger;
    ssmb_random_fn random_fn;           /* default ssmb_random_system */
    void *random_user_data;
    ssmb_utc_fn utc_fn;                 /* default ssmb_utc_system */
    void *utc_user_data;
    const ssmb_trust *trust;            /* CAs; default: loaded at create from ca_file */
    const char *ca_file;                /* default SSMB_SYSTEM_CA_BUNDLE */
    const char *https_proxy;            /* NULL: HTTPS_PROXY or https_proxy; "": no proxy */
    const char *no_proxy;               /* NULL: NO_PROXY or no_proxy */
    uint32_t max_connections;           /* default 16 */
    uint32_t connect_timeout_ms;        /* TCP connect and proxy tunnel, default 10000 */
    uint32_t dns_timeout_ms;            /* default 5000 */
    const char *resolv_conf;            /* default "/etc/resolv.conf" */
    const char *hosts_file;             /* default "/etc/hosts" */
    ssmb_resolve_fn resolve_fn;         /* optional: the host resolves names */
    void *resolve_user_data;
    void (*event_fn)(ssmb_engine *eng, const ssmb_event *ev, void *user_data);
    void *event_user_data;
    /* Optional: told when a descriptor's interest changes (events 0: stop
       watching it; it may be closed right after), so epoll users never
       rescan. */
    void (*fd_change_fn)(int32_t fd, uint32_t events, void *user_data);
    void *fd_change_user_data;
    const char *dns_servers;            /* "ip[:port][,ip[:port]...]" instead of resolv.conf's
                                           nameservers (IPv6 in brackets when a port follows) */
    uint32_t max_sessions;              /* default 8; each uses up to 2 connections at a time */
    ssmb_getenv_fn getenv_fn;           /* sessions' environment (credentials, region, endpoints);
                                           default ssmb_getenv_system */
    void *getenv_user_data;
    /* Optional: a session's counters every metrics_interval_ms (default
       10000) while it runs, and once more when it closes. */
    void (*metrics_fn)(ssmb_engine *eng, ssmb_session s, const ssmb_session_metrics *m, void *user_data);
    void *metrics_user_data;
    uint32_t metrics_interval_ms;
} ssmb_desc;

/* Allocates the engine and its connection slots; loads the CA file unless
   desc.trust is given. */
SSMB_API ssmb_result ssmb_engine_create(const ssmb_desc *desc, ssmb_engine **out);
/* Closes every socket and frees everything; calls nothing back. */
SSMB_API void ssmb_engine_destroy(ssmb_engine *eng);
/* The resolved copy of the desc (defaults filled in). */
SSMB_API const ssmb_desc *ssmb_engine_desc(const ssmb_engine *eng);

/* Opens a WebSocket: resolve, connect (through the proxy if one applies),
   TLS, upgrade. The conn desc's allocator, logger, random and clock are
   the engine's; its trust defaults to the engine's. Allocates the
   connection now; SSMB_ERR_LIMIT when max_connections are open. Returned
   at once: SSMB_ERR_MALFORMED URL, SSMB_ERR_PROXY for a malformed proxy
   setting, the conn's own refusals, SSMB_ERR_NOMEM. Anything later comes
   as WS_CLOSED: SSMB_ERR_DNS (detail: the DNS RCODE, 3 for no such name),
   SSMB_ERR_CONNECT (detail: errno), SSMB_ERR_TIMEOUT (DNS, connect or
   tunnel), SSMB_ERR_PROXY (detail: the proxy's HTTP status), then the
   conn's. Addresses are tried in turn: the hosts file's in its order, DNS
   answers IPv4 first. The proxy applies to wss:// only. */
SSMB_API ssmb_result ssmb_engine_ws_open(ssmb_engine *eng, const ssmb_conn_desc *desc, void *user_data,
                                         uint64_t now_ms, ssmb_ws *out);
/* As ssmb_conn_send_message / ssmb_conn_send_space; before WS_OPEN a send
   gets SSMB_AGAIN. After a send that took less than given (or
   SSMB_AGAIN), WS_WRITABLE comes once there is room, and until then no
   further piece of an incoming message is handed out for this WebSocket:
   a host that forwards what it receives never holds more than one piece. */
SSMB_API ssmb_result ssmb_engine_ws_send(ssmb_engine *eng, ssmb_ws ws, uint32_t opcode, const void *data,
                                         size_t len, int final, size_t *accepted);
SSMB_API size_t ssmb_engine_ws_send_space(ssmb_engine *eng, ssmb_ws ws);
/* Starts the close handshake; WS_CLOSED follows. */
SSMB_API ssmb_result ssmb_engine_ws_close(ssmb_engine *eng, ssmb_ws ws, uint32_t code, const char *reason,
                                          uint64_t now_ms);
/* Drops the connection at once, without a close handshake; no event. */
SSMB_API void ssmb_engine_ws_abort(ssmb_engine *eng, ssmb_ws ws);
/* The conn inside (for queries such as ssmb_conn_last_error), or NULL. */
SSMB_API ssmb_conn *ssmb_engine_ws_conn(ssmb_engine *eng, ssmb_ws ws);

/* The descriptors and the events each wants. cap 0 only counts (*count). */
SSMB_API ssmb_result ssmb_engine_fds(ssmb_engine *eng, ssmb_pollfd *out, size_t cap, size_t *count);
/* Does the work for descriptors your poll found ready (n may be 0: timers
   only). Never blocks. */
SSMB_API ssmb_result ssmb_engine_process(ssmb_engine *eng, const ssmb_pollfd *ready, size_t n, uint64_t now_ms);
/* process() with every descriptor tried. */
SSMB_API ssmb_result ssmb_engine_tick(ssmb_engine *eng, uint64_t now_ms);
/* How long you may sleep: 0 now, -1 no timer, at most max_ms (when >= 0). */
SSMB_API int ssmb_engine_timeout_ms(ssmb_engine *eng, uint64_t now_ms, int max_ms);
/* The one call that blocks: poll() on the engine's descriptors for at most
   max_ms (retried on EINTR). Only you call it; the library never does. It
   has no clock: timers are measured from the now_ms of the last process
   or tick. With nothing to wait for and max_ms < 0 it returns at once. */
SSMB_API ssmb_result ssmb_engine_wait(ssmb_engine *eng, int max_ms);
/* The next event when no event_fn is set: SSMB_OK or SSMB_AGAIN
   (SSMB_ERR_INVALID_STATE with event_fn). Take events until SSMB_AGAIN
   before you sleep: a connection reads on only once its pieces are taken.
   Events of several connections come round robin; a piece's data is valid
   until the next engine call, and WS_CLOSED makes the handle stale. */
SSMB_API ssmb_result ssmb_engine_next_event(ssmb_engine *eng, ssmb_event *out);
/* Completes a resolve_fn request: n addresses (0: the name does not exist). */
SSMB_API ssmb_result ssmb_engine_resolved(ssmb_engine *eng, uint32_t request, const ssmb_address *addrs, size_t n);
/* 1 when a NO_PROXY list exempts host from the proxy: comma-separated
   entries, "*" for every host, or a name that matches the host itself or,
   with or without a leading ".", any name under it; case-insensitive. */
SSMB_API int ssmb_no_proxy_match(const char *no_proxy, const char *host);

/* ---- session: Session Manager sessions inside the engine (L3) -------------
   A session is the whole client: credentials from the chain (or yours),
   StartSession (or your SessionId + StreamUrl + TokenValue), the
   WebSocket to the StreamUrl, the data channel with its handshake, and the
   session type's behaviour. When the WebSocket is lost, or the service
   closes it (it does every hour or so), the session calls ResumeSession
   and reconnects with its sequence state intact (PROTOCOL.md §4.5); the
   host sees SSMB_SESSION_RECONNECTING then SSMB_SESSION_READY again and
   loses no byte. Events come through the engine's event_fn or
   ssmb_engine_next_event, with ev.session set:
       SESSION_STATE     ev.state changed
       SESSION_OUTPUT    ev.data, ev.len: remote output (stdout, shell, port bytes)
       SESSION_STDERR    ev.data, ev.len: NonInteractiveCommands stderr
       SESSION_EXIT      ev.exit_code: the remote command's exit code
       SESSION_WRITABLE  room came back after a short ssmb_session_send
       SESSION_CLOSED    the last event: ev.result (SSMB_CLOSED: the session
                         ended normally), ev.message: the reason; the handle
                         is stale after it
   Data of an event is valid until the next engine call. A session's
   memory (its channel, buffers, the WebSocket's conn) is allocated when it
   starts and freed when SESSION_CLOSED is handed out; the steady state
   allocates nothing. */

typedef enum ssmb_session_state {
    SSMB_SESSION_NONE = 0,
    SSMB_SESSION_CREDENTIALS = 1,       /* the credential chain runs (files, STS, ECS, IMDS) */
    SSMB_SESSION_STARTING = 2,          /* StartSession */
    SSMB_SESSION_CONNECTING = 3,        /* WebSocket to the StreamUrl, OpenDataChannelInput */
    SSMB_SESSION_HANDSHAKE = 4,         /* the agent's handshake (§5) */
    SSMB_SESSION_READY = 5,             /* data flows */
    SSMB_SESSION_RECONNECTING = 6,      /* ResumeSession and a new WebSocket (§4.5) */
    SSMB_SESSION_CLOSING = 7,           /* TerminateSession, the WebSocket's close */
    SSMB_SESSION_CLOSED = 8,
    SSMB__SESSION_STATE_FORCE_32 = 0x7fffffff
} ssmb_session_state;

typedef struct ssmb_session_desc {
    /* Start a new session (StartSession) ... */
    const char *target;                 /* instance or managed node id */
    const char *document_name;          /* NULL: the default shell document */
    const ssmb_api_parameter *parameters;
    uint32_t parameter_count;
    const char *reason;
    /* ... or attach to one that exists (all three, target optional). */
    const char *session_id;
    const char *stream_url;
    const char *token_value;
    /* Where and as whom. */
    const char *region;                 /* NULL: AWS_REGION, AWS_DEFAULT_REGION, the profile's */
    const char *profile;                /* NULL: AWS_PROFILE, then "default" */
    const char *endpoint_url;           /* SSM API; NULL: AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL,
                                           then https://ssm.<region>.amazonaws.com */
    const char *kms_endpoint_url;       /* NULL: AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL, the default */
    ssmb_aws_credentials credentials;   /* explicit keys; empty: the credential chain */
    /* A StreamUrl must be an AWS ssmmessages host (PROTOCOL.md §16). With
       allow_custom_stream_host, the host of the SSM endpoint you gave is
       accepted too (a local emulator); wss:// unless the endpoint is
       http://. */
    uint32_t allow_custom_stream_host;
    const char *client_version;         /* HandshakeResponse; default SSMB_CHANNEL_CLIENT_VERSION */
    uint32_t payload_size;              /* outgoing payloads, default 1024 (§3.6), up to 32768 */
    uint32_t send_buffer_bytes;         /* default: the channel's (16 KiB); more carries more per round
                                           trip (bulk transfers: 256 KiB and up) */
    uint32_t reorder_buffer_bytes;      /* most bytes kept of messages that came ahead of a lost
                                           one, default 1 MiB; the store starts at the channel's
                                           8 KiB and grows only while a gap waits to be filled */
    uint32_t cols, rows;                /* first terminal size sent once ready (0: none) */
    uint32_t no_reconnect;              /* 1: a lost WebSocket ends the session */
    uint32_t reconnect_timeout_ms;      /* give up reconnecting after this long, default 120000 */
    uint32_t terminate_timeout_ms;      /* ssmb_session_terminate's deadline, default 5000 */
    void *user_data;                    /* in every event of the session */
} ssmb_session_desc;

/* Read-only facts of a session, views valid while the session lives. */
typedef struct ssmb_session_info {
    uint32_t state;                     /* ssmb_session_state */
    ssmb_str session_id;
    ssmb_str target;
    ssmb_str session_type;              /* "Standard_Stream", "InteractiveCommands",
                                           "NonInteractiveCommands", "Port"; empty before READY */
    ssmb_str agent_version;
    ssmb_str region;
    uint32_t port_mux;                  /* Port: 1 smux (agent > 3.0.196.0), 0 basic */
    uint32_t encrypted;                 /* 1: KMS session encryption is on (§6) */
    int32_t exit_code;                  /* -1 until SESSION_EXIT */
    ssmb_session_metrics metrics;
} ssmb_session_info;

/* Starts a session: takes copies of the desc's strings, resolves
   credentials and endpoints now (a malformed credentials file, a bad
   endpoint or a missing region is refused here with the file and line in
   the log), then works from process/tick. SSMB_ERR_LIMIT when
   max_sessions are open. Everything later comes as events. */
SSMB_API ssmb_result ssmb_session_start(ssmb_engine *eng, const ssmb_session_desc *desc, uint64_t now_ms,
                                        ssmb_session *out);
/* Input for the remote (keystrokes, stdin, port bytes), cut into payloads.
   Takes what fits (*accepted); SSMB_AGAIN when nothing fits now (before
   READY, while the service paused publication, or the buffer is full):
   SESSION_WRITABLE follows. Never drops data. For a Port session with a
   forward, the forward owns the data: SSMB_ERR_INVALID_STATE. */
SSMB_API ssmb_result ssmb_session_send(ssmb_engine *eng, ssmb_session s, const void *data, size_t len,
                                       size_t *accepted);
/* Bytes one send could take now. */
SSMB_API size_t ssmb_session_send_space(ssmb_engine *eng, ssmb_session s);
/* A terminal size (§7.2); kept and sent once possible. */
SSMB_API ssmb_result ssmb_session_resize(ssmb_engine *eng, ssmb_session s, uint32_t cols, uint32_t rows);
/* Ends the session for good: a TerminateSession flag to agents that know
   it, the TerminateSession call, the WebSocket's close; SESSION_CLOSED
   comes within terminate_timeout_ms. */
SSMB_API ssmb_result ssmb_session_terminate(ssmb_engine *eng, ssmb_session s, uint64_t now_ms);
/* Closes the data channel without TerminateSession (the session can be
   resumed elsewhere until the service times it out). */
SSMB_API ssmb_result ssmb_session_detach(ssmb_engine *eng, ssmb_session s, uint64_t now_ms);
SSMB_API ssmb_result ssmb_session_get_info(ssmb_engine *eng, ssmb_session s, ssmb_session_info *out);
/* The engine's totals over every session it ran. */
SSMB_API void ssmb_engine_metrics(ssmb_engine *eng, ssmb_session_metrics *out);
/* Terminates every session, then keeps going until they are closed or
   deadline_ms (your clock) passes; 1 when all are closed. Call it from your
   loop until it says 1 (or the deadline passed), then destroy the engine. */
SSMB_API int ssmb_engine_shutdown(ssmb_engine *eng, uint64_t now_ms, uint64_t deadline_ms);

/* Typed documents: fill desc->document_name and desc->parameters from
   values you give, with storage that must live until ssmb_session_start
   returns. Port numbers as decimal text, as the documents want them. */
typedef struct ssmb_document {
    ssmb_api_parameter params[4];
    const char *values[4];
    char text[4][16];
} ssmb_document;
/* AWS-StartPortForwardingSession: portNumber (remote), localPortNumber
   (0: omitted). */
SSMB_API void ssmb_document_port_forward(ssmb_session_desc *desc, ssmb_document *doc, uint16_t remote_port,
                                         uint16_t local_port);
/* AWS-StartPortForwardingSessionToRemoteHost: host, portNumber, localPortNumber. */
SSMB_API void ssmb_document_port_forward_remote(ssmb_session_desc *desc, ssmb_document *doc, const char *host,
                                                uint16_t remote_port, uint16_t local_port);
/* AWS-StartSSHSession: portNumber (0: 22). */
SSMB_API void ssmb_document_ssh(ssmb_session_desc *desc, ssmb_document *doc, uint16_t port);
/* AWS-StartInteractiveCommand / AWS-StartNonInteractiveCommand: command. */
SSMB_API void ssmb_document_interactive_command(ssmb_session_desc *desc, ssmb_document *doc, const char *command);
SSMB_API void ssmb_document_command(ssmb_session_desc *desc, ssmb_document *doc, const char *command);

/* ---- forward: a local listener for a Port session ------------------------
   Listens on a local address and carries every accepted connection over
   the session: one smux stream each when the agent multiplexes (agent >
   3.0.196.0, §7.4, §7.6), else basic mode (§7.3: one connection at a time;
   the next waits in the kernel's backlog until the current one ends).
   Events FORWARD_OPEN / FORWARD_CLOSE (ev.forward, ev.detail: the
   connection's number) when one is accepted and when it ends, if asked
   for. The listener's descriptor is among the engine's. */

typedef struct ssmb_forward_desc {
    const char *listen;                 /* "host:port" (IPv6 as "[::1]:port"; port 0: any free one)
                                           or "unix:/path" (the path is removed first and at close);
                                           default "127.0.0.1:0" */
    uint32_t max_connections;           /* at once, default 64; further ones are refused */
    uint32_t buffer_size;               /* per connection each way, default 16384 */
    uint32_t events;                    /* 1: FORWARD_OPEN and FORWARD_CLOSE events */
} ssmb_forward_desc;

/* Binds and listens now (SSMB_ERR_CONNECT with errno in the log for an
   address in use or not allowed); connections are accepted once the
   session is READY. One forward per session. */
SSMB_API ssmb_result ssmb_forward_open(ssmb_engine *eng, ssmb_session s, const ssmb_forward_desc *desc,
                                       ssmb_forward *out);
/* The bound address as text ("127.0.0.1:40123", "[::1]:8080", "unix:/path"). */
SSMB_API ssmb_result ssmb_forward_address(ssmb_engine *eng, ssmb_forward f, char *out, size_t cap);
/* Stops listening and closes its connections (their streams end with FIN). */
SSMB_API void ssmb_forward_close(ssmb_engine *eng, ssmb_forward f);

#endif /* !SSMB_NO_SOCKETS */

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

#if defined(__GNUC__) || defined(__clang__)
#define SSMB__MAYBE_UNUSED __attribute__((unused))
#else
#define SSMB__MAYBE_UNUSED
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
    if (!out || cap < need) return SSMB_ERR_BUFFER_TOO_SMALL;
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
    if (o < cap) out[o] = '\0';
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

// >>memory
/* The desc's allocator, or SSMB_MALLOC/SSMB_FREE when it is all zero. */
static void *ssmb__alloc(const ssmb_allocator *a, size_t n) {
    if (a && a->alloc_fn) return a->alloc_fn(n, a->user_data);
    return SSMB_MALLOC(n);
}

static void ssmb__free(const ssmb_allocator *a, void *p, size_t n) {
    if (!p) return;
    if (a && a->free_fn) a->free_fn(p, n, a->user_data);
    else SSMB_FREE(p);
}

/* Zero-is-default: both functions or neither (STYLE: an allocator is whole). */
static int ssmb__allocator_valid(const ssmb_allocator *a) {
    return (a->alloc_fn == NULL) == (a->free_fn == NULL);
}

/* Overwrites secrets before memory goes back (the volatile stops the
   compiler from removing the stores). */
static void ssmb__wipe(void *p, size_t n) {
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--) *v++ = 0;
}

/* Frees an object that holds its own allocator and size (conn, channel,
   smux): both are copied out, then everything is wiped and freed. */
static void ssmb__free_object(void *obj, const ssmb_allocator *its_allocator, size_t its_size) {
    ssmb_allocator alloc = *its_allocator;
    ssmb__wipe(obj, its_size);
    ssmb__free(&alloc, obj, its_size);
}

// >>log
/* Every room logs through this: nothing when the host set no log_fn; the
   tag names the object ("ssmb.conn", "ssmb.channel"). Never pass a secret. */
static void ssmb__log(const ssmb_logger *l, const char *tag, uint32_t level, uint32_t item, const char *msg,
                      uint32_t line) {
    if (l && l->log_fn) l->log_fn(tag, level, item, msg, line, l->user_data);
}

// >>platform
/* The default hooks: randomness from the kernel, wall-clock time, the
   process environment. */
#include <stdlib.h>
#if defined(__linux__)
#include <sys/random.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <time.h>

SSMB_APIDEF ssmb_result ssmb_random_system(void *buf, size_t len, void *user_data) {
    uint8_t *p = (uint8_t *)buf;
    (void)user_data;
#if defined(__linux__)
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        p += n;
        len -= (size_t)n;
    }
    if (len == 0) return SSMB_OK;
#endif
    {
        FILE *f = fopen("/dev/urandom", "rb");
        size_t got = f ? fread(p, 1, len, f) : 0;
        if (f) fclose(f);
        return got == len ? SSMB_OK : SSMB_ERR_NO_RANDOM;
    }
}

SSMB_APIDEF int64_t ssmb_utc_system(void *user_data) {
    (void)user_data;
    return (int64_t)time(NULL);
}

SSMB_APIDEF const char *ssmb_getenv_system(const char *name, void *user_data) {
    (void)user_data;
    return name ? getenv(name) : NULL;
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
/* FIPS 180-4 §4.1.2: the four sigma functions, Ch and Maj. */
#define SSMB__BSIG0(x) (SSMB__ROTR(x, 2) ^ SSMB__ROTR(x, 13) ^ SSMB__ROTR(x, 22))
#define SSMB__BSIG1(x) (SSMB__ROTR(x, 6) ^ SSMB__ROTR(x, 11) ^ SSMB__ROTR(x, 25))
#define SSMB__SSIG0(x) (SSMB__ROTR(x, 7) ^ SSMB__ROTR(x, 18) ^ ((x) >> 3))
#define SSMB__SSIG1(x) (SSMB__ROTR(x, 17) ^ SSMB__ROTR(x, 19) ^ ((x) >> 10))
#define SSMB__CH(e, f, g) ((g) ^ ((e) & ((f) ^ (g))))
#define SSMB__MAJ(a, b, c) (((a) & (b)) | ((c) & ((a) | (b))))

/* The message schedule (FIPS 180-4 §6.2.2 step 1) kept as a ring of 16
   words: ring word j holds the latest W[t] with t = j (mod 16), and W[t]
   overwrites W[t - 16] in place. */
#define SSMB__W_LOAD(w, j) (w[j])
#define SSMB__W_NEXT(w, j) \
    (w[j] += SSMB__SSIG1(w[((j) + 14) & 15]) + w[((j) + 9) & 15] + SSMB__SSIG0(w[((j) + 1) & 15]))

/* One round, round number t. Instead of shifting eight variables, the caller
   rotates the names it passes: afterwards h holds the new a and d the new e. */
#define SSMB__ROUND(a, b, c, d, e, f, g, h, t, W)                                               \
    do {                                                                                       \
        uint32_t ssmb__t1 = h + SSMB__BSIG1(e) + SSMB__CH(e, f, g) + ssmb__sha256_k[t] + W;     \
        d += ssmb__t1;                                                                         \
        h = ssmb__t1 + SSMB__BSIG0(a) + SSMB__MAJ(a, b, c);                                    \
    } while (0)

/* Rounds t..t+7 using ring words j..j+7; eight rounds bring the names back. */
#define SSMB__ROUNDS8(t, j, WORD)                                            \
    do {                                                                     \
        SSMB__ROUND(a, b, c, d, e, f, g, h, (t) + 0, WORD(w, (j) + 0));      \
        SSMB__ROUND(h, a, b, c, d, e, f, g, (t) + 1, WORD(w, (j) + 1));      \
        SSMB__ROUND(g, h, a, b, c, d, e, f, (t) + 2, WORD(w, (j) + 2));      \
        SSMB__ROUND(f, g, h, a, b, c, d, e, (t) + 3, WORD(w, (j) + 3));      \
        SSMB__ROUND(e, f, g, h, a, b, c, d, (t) + 4, WORD(w, (j) + 4));      \
        SSMB__ROUND(d, e, f, g, h, a, b, c, (t) + 5, WORD(w, (j) + 5));      \
        SSMB__ROUND(c, d, e, f, g, h, a, b, (t) + 6, WORD(w, (j) + 6));      \
        SSMB__ROUND(b, c, d, e, f, g, h, a, (t) + 7, WORD(w, (j) + 7));      \
    } while (0)
/* Sixteen rounds walk the whole ring once. Every index is a constant, which
   lets the compiler keep the words in registers. */
#define SSMB__ROUNDS16(t, WORD)           \
    do {                                  \
        SSMB__ROUNDS8((t), 0, WORD);      \
        SSMB__ROUNDS8((t) + 8, 8, WORD);  \
    } while (0)

/* Portable compression of nblocks 64-byte blocks (FIPS 180-4 §6.2.2). */
static void ssmb__sha256_blocks_portable(uint32_t state[8], const uint8_t *data, size_t nblocks) {
    while (nblocks--) {
        uint32_t w[16], a, b, c, d, e, f, g, h;
        int j;
        for (j = 0; j < 16; j++) w[j] = ssmb__load_be32(data + 4 * j);
        a = state[0]; b = state[1]; c = state[2]; d = state[3];
        e = state[4]; f = state[5]; g = state[6]; h = state[7];
        SSMB__ROUNDS16(0, SSMB__W_LOAD);
        SSMB__ROUNDS16(16, SSMB__W_NEXT);
        SSMB__ROUNDS16(32, SSMB__W_NEXT);
        SSMB__ROUNDS16(48, SSMB__W_NEXT);
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
        data += 64;
    }
}

#if SSMB__HAVE_SHA_NI
/* >>sha256-ni: the x86-64 SHA extensions. sha256rnds2 runs two rounds on a
   state split across two registers, {A,B,E,F} and {C,D,G,H} (Intel SDM,
   SHA256RNDS2), with W+K for the two rounds in the low 64 bits of its third
   operand. sha256msg1/msg2 compute the message schedule four words at a time.
   The functions are compiled for these extensions on their own, so the rest
   of the program needs no special flags; they only run after CPUID said yes. */
#define SSMB__NI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* Four rounds of the state pair (ab, cd) with message words m (W[i..i+3])
   and constants K[i..i+3]: two rounds on the low half of W+K, then two on
   the high half moved down. */
#define SSMB__NI_ROUNDS4_OF(ab, cd, m, i)                                                      \
    do {                                                                                       \
        __m128i ssmb__k = _mm_loadu_si128((const __m128i *)(const void *)(ssmb__sha256_k + (i))); \
        __m128i ssmb__wk = _mm_add_epi32(m, ssmb__k);                                          \
        cd = _mm_sha256rnds2_epu32(cd, ab, ssmb__wk);                                          \
        ab = _mm_sha256rnds2_epu32(ab, cd, _mm_shuffle_epi32(ssmb__wk, 0x0e));                 \
    } while (0)
#define SSMB__NI_ROUNDS4(m, i) SSMB__NI_ROUNDS4_OF(abef, cdgh, m, i)

/* W[i..i+3] from the four previous groups, written over the oldest (m0 holds
   W[i-16..i-13], m1 W[i-12..], m2 W[i-8..], m3 W[i-4..]): msg1 adds
   sigma0(W[t-15]) to W[t-16], alignr supplies W[t-7], msg2 adds sigma1(W[t-2]). */
#define SSMB__NI_SCHEDULE(m0, m1, m2, m3) \
    (m0 = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(m0, m1), _mm_alignr_epi8(m3, m2, 4)), m3))

SSMB__NI_TARGET static __m128i ssmb__ni_load_words(const uint8_t *p) {
    /* Bytes to big-endian 32-bit words. */
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    return _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), swap);
}

/* {A..H} words to the two-register form sha256rnds2 works on, and back. */
SSMB__NI_TARGET static void ssmb__ni_state_in(const uint32_t state[8], __m128i *abef, __m128i *cdgh) {
    /* Lanes listed from lane 0 up. */
    __m128i badc = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(const void *)state), 0xb1); /* {B,A,D,C} */
    __m128i hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(const void *)(state + 4)), 0x1b); /* {H,G,F,E} */
    *abef = _mm_alignr_epi8(badc, hgfe, 8);    /* {F,E,B,A} */
    *cdgh = _mm_blend_epi16(hgfe, badc, 0xf0); /* {H,G,D,C} */
}

SSMB__NI_TARGET static void ssmb__ni_state_out(__m128i abef, __m128i cdgh, uint32_t state[8]) {
    __m128i abef_rev = _mm_shuffle_epi32(abef, 0x1b); /* {A,B,E,F} */
    __m128i ghcd = _mm_shuffle_epi32(cdgh, 0xb1);     /* {G,H,C,D} */
    _mm_storeu_si128((__m128i *)(void *)state, _mm_blend_epi16(abef_rev, ghcd, 0xf0));
    _mm_storeu_si128((__m128i *)(void *)(state + 4), _mm_alignr_epi8(ghcd, abef_rev, 8));
}

SSMB__NI_TARGET static void ssmb__sha256_blocks_ni(uint32_t state[8], const uint8_t *data, size_t nblocks) {
    __m128i abef, cdgh;
    ssmb__ni_state_in(state, &abef, &cdgh);
    while (nblocks--) {
        __m128i abef_in = abef, cdgh_in = cdgh;
        __m128i m0 = ssmb__ni_load_words(data), m1 = ssmb__ni_load_words(data + 16);
        __m128i m2 = ssmb__ni_load_words(data + 32), m3 = ssmb__ni_load_words(data + 48);
        SSMB__NI_ROUNDS4(m0, 0);
        SSMB__NI_ROUNDS4(m1, 4);
        SSMB__NI_ROUNDS4(m2, 8);
        SSMB__NI_ROUNDS4(m3, 12);
        SSMB__NI_SCHEDULE(m0, m1, m2, m3); SSMB__NI_ROUNDS4(m0, 16);
        SSMB__NI_SCHEDULE(m1, m2, m3, m0); SSMB__NI_ROUNDS4(m1, 20);
        SSMB__NI_SCHEDULE(m2, m3, m0, m1); SSMB__NI_ROUNDS4(m2, 24);
        SSMB__NI_SCHEDULE(m3, m0, m1, m2); SSMB__NI_ROUNDS4(m3, 28);
        SSMB__NI_SCHEDULE(m0, m1, m2, m3); SSMB__NI_ROUNDS4(m0, 32);
        SSMB__NI_SCHEDULE(m1, m2, m3, m0); SSMB__NI_ROUNDS4(m1, 36);
        SSMB__NI_SCHEDULE(m2, m3, m0, m1); SSMB__NI_ROUNDS4(m2, 40);
        SSMB__NI_SCHEDULE(m3, m0, m1, m2); SSMB__NI_ROUNDS4(m3, 44);
        SSMB__NI_SCHEDULE(m0, m1, m2, m3); SSMB__NI_ROUNDS4(m0, 48);
        SSMB__NI_SCHEDULE(m1, m2, m3, m0); SSMB__NI_ROUNDS4(m1, 52);
        SSMB__NI_SCHEDULE(m2, m3, m0, m1); SSMB__NI_ROUNDS4(m2, 56);
        SSMB__NI_SCHEDULE(m3, m0, m1, m2); SSMB__NI_ROUNDS4(m3, 60);
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
        data += 64;
    }
    ssmb__ni_state_out(abef, cdgh, state);
}

/* Four rounds of each message: the schedule of both, then their rounds. */
#define SSMB__NI_X2_STEP(m0, m1, m2, m3, n0, n1, n2, n3, i) \
    do {                                                    \
        SSMB__NI_SCHEDULE(m0, m1, m2, m3);                  \
        SSMB__NI_SCHEDULE(n0, n1, n2, n3);                  \
        SSMB__NI_ROUNDS4_OF(abef, cdgh, m0, i);             \
        SSMB__NI_ROUNDS4_OF(abef2, cdgh2, n0, i);           \
    } while (0)

/* Two messages' blocks side by side: each sha256rnds2 waits for the one
   before it of the same message, so the other message's fill the gap. */
SSMB__NI_TARGET static void ssmb__sha256_blocks_ni_x2(uint32_t sa[8], const uint8_t *a, uint32_t sb[8],
                                                      const uint8_t *b, size_t nblocks) {
    __m128i abef, cdgh, abef2, cdgh2;
    ssmb__ni_state_in(sa, &abef, &cdgh);
    ssmb__ni_state_in(sb, &abef2, &cdgh2);
    while (nblocks--) {
        __m128i abef_in = abef, cdgh_in = cdgh, abef2_in = abef2, cdgh2_in = cdgh2;
        __m128i m0 = ssmb__ni_load_words(a), m1 = ssmb__ni_load_words(a + 16);
        __m128i m2 = ssmb__ni_load_words(a + 32), m3 = ssmb__ni_load_words(a + 48);
        __m128i n0 = ssmb__ni_load_words(b), n1 = ssmb__ni_load_words(b + 16);
        __m128i n2 = ssmb__ni_load_words(b + 32), n3 = ssmb__ni_load_words(b + 48);
        SSMB__NI_ROUNDS4_OF(abef, cdgh, m0, 0);
        SSMB__NI_ROUNDS4_OF(abef2, cdgh2, n0, 0);
        SSMB__NI_ROUNDS4_OF(abef, cdgh, m1, 4);
        SSMB__NI_ROUNDS4_OF(abef2, cdgh2, n1, 4);
        SSMB__NI_ROUNDS4_OF(abef, cdgh, m2, 8);
        SSMB__NI_ROUNDS4_OF(abef2, cdgh2, n2, 8);
        SSMB__NI_ROUNDS4_OF(abef, cdgh, m3, 12);
        SSMB__NI_ROUNDS4_OF(abef2, cdgh2, n3, 12);
        SSMB__NI_X2_STEP(m0, m1, m2, m3, n0, n1, n2, n3, 16);
        SSMB__NI_X2_STEP(m1, m2, m3, m0, n1, n2, n3, n0, 20);
        SSMB__NI_X2_STEP(m2, m3, m0, m1, n2, n3, n0, n1, 24);
        SSMB__NI_X2_STEP(m3, m0, m1, m2, n3, n0, n1, n2, 28);
        SSMB__NI_X2_STEP(m0, m1, m2, m3, n0, n1, n2, n3, 32);
        SSMB__NI_X2_STEP(m1, m2, m3, m0, n1, n2, n3, n0, 36);
        SSMB__NI_X2_STEP(m2, m3, m0, m1, n2, n3, n0, n1, 40);
        SSMB__NI_X2_STEP(m3, m0, m1, m2, n3, n0, n1, n2, 44);
        SSMB__NI_X2_STEP(m0, m1, m2, m3, n0, n1, n2, n3, 48);
        SSMB__NI_X2_STEP(m1, m2, m3, m0, n1, n2, n3, n0, 52);
        SSMB__NI_X2_STEP(m2, m3, m0, m1, n2, n3, n0, n1, 56);
        SSMB__NI_X2_STEP(m3, m0, m1, m2, n3, n0, n1, n2, 60);
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
        abef2 = _mm_add_epi32(abef2, abef2_in);
        cdgh2 = _mm_add_epi32(cdgh2, cdgh2_in);
        a += 64;
        b += 64;
    }
    ssmb__ni_state_out(abef, cdgh, sa);
    ssmb__ni_state_out(abef2, cdgh2, sb);
}

/* CPUID leaf 7 EBX bit 29 is SHA; leaf 1 ECX bit 19 is SSE4.1, bit 9 SSSE3. */
static int ssmb__cpu_has_sha_ni(void) {
    unsigned eax, ebx, ecx, edx;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    if (!(ecx & (1u << 19)) || !(ecx & (1u << 9))) return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & (1u << 29)) != 0;
}

/* The one static the library writes (see THREADING in the header): 0 while
   unknown, otherwise the best ssmb_sha256_impl. Every writer stores the same
   value, so relaxed atomics suffice. */
static int ssmb__sha256_best_memo;

static ssmb_sha256_impl ssmb__sha256_detect(void) {
    int best = __atomic_load_n(&ssmb__sha256_best_memo, __ATOMIC_RELAXED);
    if (SSMB__UNLIKELY(best == 0)) {
        best = ssmb__cpu_has_sha_ni() ? (int)SSMB_SHA256_SHA_NI : (int)SSMB_SHA256_PORTABLE;
        __atomic_store_n(&ssmb__sha256_best_memo, best, __ATOMIC_RELAXED);
    }
    return (ssmb_sha256_impl)best;
}
#else
static ssmb_sha256_impl ssmb__sha256_detect(void) { return SSMB_SHA256_PORTABLE; }
#endif

static void ssmb__sha256_blocks(ssmb_sha256_ctx *ctx, const uint8_t *data, size_t nblocks) {
#if SSMB__HAVE_SHA_NI
    if (ctx->impl == (uint32_t)SSMB_SHA256_SHA_NI) {
        ssmb__sha256_blocks_ni(ctx->state, data, nblocks);
        return;
    }
#endif
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
    if (len == 0) return; /* (NULL, 0) is a valid empty update */
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

/* The whole blocks both have together, then each one's rest on its own. */
SSMB_APIDEF void ssmb_sha256_pair(const void *a, size_t len_a, const void *b, size_t len_b, uint8_t out_a[32],
                                  uint8_t out_b[32]) {
    const uint8_t *pa = (const uint8_t *)a, *pb = (const uint8_t *)b;
    ssmb_sha256_ctx ca, cb;
    size_t whole = 0;
    memset(&ca, 0, sizeof ca);
    memset(&cb, 0, sizeof cb);
    ssmb_sha256_init(&ca);
    ssmb_sha256_init(&cb);
#if SSMB__HAVE_SHA_NI
    if (ca.impl == (uint32_t)SSMB_SHA256_SHA_NI && len_a >= 64 && len_b >= 64) {
        whole = SSMB__MIN(len_a, len_b) & ~(size_t)63;
        ssmb__sha256_blocks_ni_x2(ca.state, pa, cb.state, pb, whole / 64);
        ca.total = cb.total = whole;
    }
#endif
    ssmb_sha256_update(&ca, pa + whole, len_a - whole);
    ssmb_sha256_update(&cb, pb + whole, len_b - whole);
    ssmb_sha256_final(&ca, out_a);
    ssmb_sha256_final(&cb, out_b);
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
/* Reading: jsmn (https://github.com/zserge/jsmn, tested with 1.1.0) from the
   system include path tokenises; JSMN_STATIC makes its functions static to
   this translation unit, so no jsmn_ symbol is exported. jsmn is lenient
   (it accepts "[1 2]", "{a:1}", "tru", several roots...), so every token
   stream it returns is checked against the RFC 8259 grammar before the
   caller sees it. Writing: a small writer with a sticky error. */
#if defined(JSMN_PARENT_LINKS)
#error "ssmbridge.h: jsmn must be used without JSMN_PARENT_LINKS (it changes the token layout)"
#endif
#ifndef JSMN_STATIC
#define JSMN_STATIC
#endif
#include <jsmn.h>

#if SSMB_JSON_MAX_DEPTH < 1 || SSMB_JSON_MAX_DEPTH > 32
#error "ssmbridge.h: SSMB_JSON_MAX_DEPTH must be 1..32 (the writer keeps one bit per level)"
#endif

/* ssmb_json_token is opaque storage for exactly one jsmntok_t; the storage
   is only ever read and written as jsmntok_t. */
struct ssmb__json_align_public { char c; ssmb_json_token t; };
struct ssmb__json_align_jsmn { char c; jsmntok_t t; };
typedef char ssmb__json_token_size_check[sizeof(ssmb_json_token) >= sizeof(jsmntok_t) ? 1 : -1];
typedef char ssmb__json_token_align_check[offsetof(struct ssmb__json_align_public, t) >=
                                                  offsetof(struct ssmb__json_align_jsmn, t) ? 1 : -1];

static const jsmntok_t *ssmb__json_tokens(const ssmb_json *doc) {
    return (const jsmntok_t *)(const void *)doc->tokens;
}

/* Token i of the document, or NULL when i is out of range. */
static const jsmntok_t *ssmb__json_tok(const ssmb_json *doc, int32_t i) {
    if (!doc || !doc->tokens || i < 0 || i >= doc->count) return NULL;
    return ssmb__json_tokens(doc) + i;
}

static int ssmb__json_is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Text a token covers: a string's token excludes its quotes, this includes them. */
static size_t ssmb__json_tok_begin(const jsmntok_t *t) {
    return (size_t)(t->type == JSMN_STRING ? t->start - 1 : t->start);
}
static size_t ssmb__json_tok_finish(const jsmntok_t *t) {
    return (size_t)(t->type == JSMN_STRING ? t->end + 1 : t->end);
}

/* The text between two tokens holds whitespace and exactly the separator
   the grammar expects there (sep 0: none). */
static int ssmb__json_gap_ok(const char *s, size_t from, size_t to, char sep) {
    while (from < to && ssmb__json_is_ws(s[from])) from++;
    if (sep) {
        if (from >= to || s[from] != sep) return 0;
        from++;
        while (from < to && ssmb__json_is_ws(s[from])) from++;
    }
    return from == to;
}

static int ssmb__json_digits(const char *s, size_t n, size_t *i) {
    size_t start = *i;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') (*i)++;
    return *i > start;
}

/* RFC 8259 §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int ssmb__json_number_ok(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i < n && s[i] == '0') i++;
    else if (!ssmb__json_digits(s, n, &i)) return 0;
    if (i < n && s[i] == '.') {
        i++;
        if (!ssmb__json_digits(s, n, &i)) return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (!ssmb__json_digits(s, n, &i)) return 0;
    }
    return i == n;
}

static int ssmb__json_text_is(const char *s, size_t n, const char *lit) {
    size_t k = strlen(lit);
    return n == k && memcmp(s, lit, k) == 0;
}

static int ssmb__json_primitive_ok(const char *s, size_t n) {
    return ssmb__json_text_is(s, n, "true") || ssmb__json_text_is(s, n, "false") ||
           ssmb__json_text_is(s, n, "null") || ssmb__json_number_ok(s, n);
}

/* jsmn checks the escapes; RFC 8259 §7 also forbids raw control characters. */
static int ssmb__json_string_ok(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) return 0;
    return 1;
}

/* Grammar check over jsmn's tokens, in document order. Invariant: pos is
   the end of the text already accounted for; open[] holds the containers
   not yet closed, items[] how many children (keys and values) each has. */
typedef struct ssmb__json_checker {
    const char *s;
    const jsmntok_t *t;
    size_t pos;
    int32_t depth;
    int32_t open[SSMB_JSON_MAX_DEPTH];
    int32_t items[SSMB_JSON_MAX_DEPTH];
} ssmb__json_checker;

static int ssmb__json_top_is_object(const ssmb__json_checker *c) {
    return c->t[c->open[c->depth - 1]].type == JSMN_OBJECT;
}

/* Closes the innermost container: nothing but whitespace before its
   closing bracket, and no key left without a value. */
static int ssmb__json_close(ssmb__json_checker *c) {
    const jsmntok_t *t = &c->t[c->open[c->depth - 1]];
    if (ssmb__json_top_is_object(c) && c->items[c->depth - 1] % 2 != 0) return 0;
    if (!ssmb__json_gap_ok(c->s, c->pos, (size_t)t->end - 1, 0)) return 0;
    c->pos = (size_t)t->end;
    c->depth--;
    return 1;
}

/* The separator before the next child: ':' before a member's value, ','
   before every later member or element, nothing before the first. */
static char ssmb__json_separator(const ssmb__json_checker *c) {
    int32_t items;
    if (c->depth == 0) return 0;
    items = c->items[c->depth - 1];
    if (ssmb__json_top_is_object(c) && items % 2 == 1) return ':';
    return items > 0 ? ',' : 0;
}

/* Checks token i's own text and opens it when it is a container. */
static ssmb_result ssmb__json_enter(ssmb__json_checker *c, int32_t i) {
    const jsmntok_t *t = &c->t[i];
    size_t n = (size_t)(t->end - t->start);
    switch (t->type) {
    case JSMN_OBJECT:
    case JSMN_ARRAY:
        if (c->depth == SSMB_JSON_MAX_DEPTH) return SSMB_ERR_LIMIT;
        c->open[c->depth] = i;
        c->items[c->depth] = 0;
        c->depth++;
        c->pos = (size_t)t->start + 1;
        return SSMB_OK;
    case JSMN_STRING:
        if (!ssmb__json_string_ok(c->s + t->start, n)) return SSMB_ERR_JSON;
        break;
    case JSMN_PRIMITIVE:
        if (!ssmb__json_primitive_ok(c->s + t->start, n)) return SSMB_ERR_JSON;
        break;
    default:
        return SSMB_ERR_JSON;
    }
    c->pos = ssmb__json_tok_finish(t);
    return SSMB_OK;
}

static ssmb_result ssmb__json_check_token(ssmb__json_checker *c, int32_t i) {
    const jsmntok_t *t = &c->t[i];
    size_t begin = ssmb__json_tok_begin(t);
    while (c->depth > 0 && (size_t)c->t[c->open[c->depth - 1]].end <= begin)
        if (!ssmb__json_close(c)) return SSMB_ERR_JSON;
    if (c->depth == 0 && i > 0) return SSMB_ERR_JSON; /* a second root value */
    if (!ssmb__json_gap_ok(c->s, c->pos, begin, ssmb__json_separator(c))) return SSMB_ERR_JSON;
    if (c->depth > 0) {
        int32_t *items = &c->items[c->depth - 1];
        if (ssmb__json_top_is_object(c) && *items % 2 == 0 && t->type != JSMN_STRING) return SSMB_ERR_JSON;
        (*items)++;
    }
    return ssmb__json_enter(c, i);
}

static ssmb_result ssmb__json_check(const char *s, size_t len, const jsmntok_t *t, int32_t n) {
    ssmb__json_checker c;
    int32_t i;
    c.s = s;
    c.t = t;
    c.pos = 0;
    c.depth = 0;
    for (i = 0; i < n; i++) {
        ssmb_result r = ssmb__json_check_token(&c, i);
        if (r != SSMB_OK) return r;
    }
    while (c.depth > 0)
        if (!ssmb__json_close(&c)) return SSMB_ERR_JSON;
    return ssmb__json_gap_ok(s, c.pos, len, 0) ? SSMB_OK : SSMB_ERR_JSON;
}

/* Work is bounded: jsmn makes one pass over the text, with backward scans
   over at most max_tokens tokens at each ',' and closing bracket; the check
   is one pass over the tokens and the text. */
SSMB_APIDEF ssmb_result ssmb_json_parse(ssmb_json *doc, const char *text, size_t len, ssmb_json_token *tokens,
                                        size_t max_tokens) {
    jsmn_parser p;
    int n;
    ssmb_result r;
    if (!doc || (!text && len) || (!tokens && max_tokens)) return SSMB_ERR_INVALID_ARG;
    doc->text = text;
    doc->len = len;
    doc->tokens = tokens;
    doc->count = 0;
    if (len > (size_t)INT32_MAX || max_tokens == 0) return SSMB_ERR_LIMIT;
    if (max_tokens > (size_t)INT32_MAX) max_tokens = (size_t)INT32_MAX;
    jsmn_init(&p);
    n = jsmn_parse(&p, text, len, (jsmntok_t *)(void *)tokens, (unsigned int)max_tokens);
    if (n == JSMN_ERROR_NOMEM) return SSMB_ERR_LIMIT;
    if (n <= 0) return SSMB_ERR_JSON;
    r = ssmb__json_check(text, len, (const jsmntok_t *)(const void *)tokens, (int32_t)n);
    if (r == SSMB_OK) doc->count = (int32_t)n;
    return r;
}

SSMB_APIDEF ssmb_json_type ssmb_json_kind(const ssmb_json *doc, int32_t tok) {
    const jsmntok_t *t = ssmb__json_tok(doc, tok);
    if (!t) return SSMB_JSON_UNDEFINED;
    switch (t->type) {
    case JSMN_OBJECT: return SSMB_JSON_OBJECT;
    case JSMN_ARRAY: return SSMB_JSON_ARRAY;
    case JSMN_STRING: return SSMB_JSON_STRING;
    case JSMN_PRIMITIVE: return SSMB_JSON_PRIMITIVE;
    default: return SSMB_JSON_UNDEFINED;
    }
}

SSMB_APIDEF int32_t ssmb_json_size(const ssmb_json *doc, int32_t tok) {
    ssmb_json_type k = ssmb_json_kind(doc, tok);
    if (k != SSMB_JSON_OBJECT && k != SSMB_JSON_ARRAY) return 0;
    return ssmb__json_tok(doc, tok)->size; /* jsmn: members of an object, elements of an array */
}

/* Index just past the subtree of token i: its descendants are exactly the
   following tokens that start before it ends. */
static int32_t ssmb__json_skip(const ssmb_json *doc, int32_t i) {
    const jsmntok_t *t = ssmb__json_tokens(doc);
    int32_t j = i + 1;
    while (j < doc->count && t[j].start < t[i].end) j++;
    return j;
}

SSMB_APIDEF ssmb_str ssmb_json_raw(const ssmb_json *doc, int32_t tok) {
    const jsmntok_t *t = ssmb__json_tok(doc, tok);
    ssmb_str s;
    s.ptr = t ? doc->text + t->start : "";
    s.len = t ? (size_t)(t->end - t->start) : 0;
    return s;
}

/* UTF-8 encoding of a code point below U+110000 (RFC 3629 §3); its length. */
static size_t ssmb__utf8_put(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Four hex digits at raw[at..at+4) as a number, -1 when absent or bad. */
static int32_t ssmb__json_hex4(ssmb_str raw, size_t at) {
    int32_t v = 0;
    size_t k;
    if (at > raw.len || raw.len - at < 4) return -1;
    for (k = 0; k < 4; k++) {
        int h = ssmb__hex_value(raw.ptr[at + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* \uXXXX at *i (just past the "\u"); code points above U+FFFF come as a
   UTF-16 surrogate pair, and a lone surrogate is malformed (RFC 8259 §7). */
static ssmb_result ssmb__json_unescape_u(ssmb_str raw, size_t *i, uint8_t out[4], size_t *n) {
    int32_t cp = ssmb__json_hex4(raw, *i), lo;
    if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff)) return SSMB_ERR_MALFORMED;
    *i += 4;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (raw.len - *i < 2 || raw.ptr[*i] != '\\' || raw.ptr[*i + 1] != 'u') return SSMB_ERR_MALFORMED;
        lo = ssmb__json_hex4(raw, *i + 2);
        if (lo < 0xdc00 || lo > 0xdfff) return SSMB_ERR_MALFORMED;
        *i += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    *n = ssmb__utf8_put((uint32_t)cp, out);
    return SSMB_OK;
}

/* Decodes the character at raw[*i] (one byte, or one escape) into out[0..*n). */
static ssmb_result ssmb__json_unescape_unit(ssmb_str raw, size_t *i, uint8_t out[4], size_t *n) {
    char c = raw.ptr[*i];
    *n = 1;
    if (c != '\\') {
        out[0] = (uint8_t)c;
        (*i)++;
        return SSMB_OK;
    }
    if (raw.len - *i < 2) return SSMB_ERR_MALFORMED;
    c = raw.ptr[*i + 1];
    *i += 2;
    switch (c) {
    case '"': case '\\': case '/': out[0] = (uint8_t)c; return SSMB_OK;
    case 'b': out[0] = '\b'; return SSMB_OK;
    case 'f': out[0] = '\f'; return SSMB_OK;
    case 'n': out[0] = '\n'; return SSMB_OK;
    case 'r': out[0] = '\r'; return SSMB_OK;
    case 't': out[0] = '\t'; return SSMB_OK;
    case 'u': return ssmb__json_unescape_u(raw, i, out, n);
    default: return SSMB_ERR_MALFORMED;
    }
}

SSMB_APIDEF ssmb_result ssmb_json_unescape(ssmb_str raw, char *out, size_t cap, size_t *out_len) {
    size_t i = 0, o = 0;
    if ((!raw.ptr && raw.len) || (!out && cap)) return SSMB_ERR_INVALID_ARG;
    while (i < raw.len) {
        uint8_t unit[4];
        size_t n;
        ssmb_result r = ssmb__json_unescape_unit(raw, &i, unit, &n);
        if (r != SSMB_OK) return r;
        if (n <= cap - SSMB__MIN(o, cap)) memcpy(out + o, unit, n);
        o += n; /* never more than raw.len: every escape is longer than its bytes */
    }
    if (out_len) *out_len = o;
    if (o > cap) return SSMB_ERR_BUFFER_TOO_SMALL;
    if (o < cap) out[o] = '\0';
    return SSMB_OK;
}

/* A raw JSON string equals the C string once its escapes are decoded. */
static int ssmb__json_raw_eq(ssmb_str raw, const char *key) {
    size_t n = strlen(key), i = 0, k = 0;
    if (!memchr(raw.ptr, '\\', raw.len)) return raw.len == n && memcmp(raw.ptr, key, n) == 0;
    while (i < raw.len) {
        uint8_t unit[4];
        size_t m;
        if (ssmb__json_unescape_unit(raw, &i, unit, &m) != SSMB_OK) return 0;
        if (m > n - k || memcmp(unit, key + k, m) != 0) return 0;
        k += m;
    }
    return k == n;
}

/* Members are key/value token pairs; each value's subtree is skipped. */
SSMB_APIDEF int32_t ssmb_json_find(const ssmb_json *doc, int32_t obj, const char *key) {
    int32_t m, k, members;
    if (!key || ssmb_json_kind(doc, obj) != SSMB_JSON_OBJECT) return -1;
    members = ssmb_json_size(doc, obj);
    for (m = 0, k = obj + 1; m < members && k + 1 < doc->count; m++) {
        if (ssmb__json_raw_eq(ssmb_json_raw(doc, k), key)) return k + 1;
        k = ssmb__json_skip(doc, k + 1);
    }
    return -1;
}

SSMB_APIDEF int32_t ssmb_json_at(const ssmb_json *doc, int32_t arr, int32_t i) {
    int32_t k, pos;
    if (ssmb_json_kind(doc, arr) != SSMB_JSON_ARRAY || i < 0 || i >= ssmb_json_size(doc, arr)) return -1;
    for (k = 0, pos = arr + 1; k < i && pos < doc->count; k++) pos = ssmb__json_skip(doc, pos);
    return pos < doc->count ? pos : -1;
}

SSMB_APIDEF ssmb_result ssmb_json_get_str(const ssmb_json *doc, int32_t tok, ssmb_str *out) {
    if (!out) return SSMB_ERR_INVALID_ARG;
    if (ssmb_json_kind(doc, tok) != SSMB_JSON_STRING) return SSMB_ERR_JSON;
    *out = ssmb_json_raw(doc, tok);
    return SSMB_OK;
}

/* Strict integer text -?(0|[1-9][0-9]*): sign and magnitude. SSMB_ERR_JSON
   for anything else (a fraction, an exponent), SSMB_ERR_OVERFLOW past 2^64 - 1. */
static ssmb_result ssmb__json_integer(const ssmb_json *doc, int32_t tok, int *neg, uint64_t *mag) {
    ssmb_str s = ssmb_json_raw(doc, tok);
    size_t i;
    uint64_t v = 0;
    int over = 0;
    if (ssmb_json_kind(doc, tok) != SSMB_JSON_PRIMITIVE) return SSMB_ERR_JSON;
    *neg = s.len > 0 && s.ptr[0] == '-';
    i = (size_t)*neg;
    if (i >= s.len || (s.ptr[i] == '0' && s.len - i > 1)) return SSMB_ERR_JSON;
    for (; i < s.len; i++) {
        unsigned d = (unsigned)(unsigned char)s.ptr[i] - '0';
        if (d > 9) return SSMB_ERR_JSON;
        if (v > (UINT64_MAX - d) / 10) over = 1;
        v = v * 10 + d;
    }
    if (over) return SSMB_ERR_OVERFLOW;
    *mag = v;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_json_get_i64(const ssmb_json *doc, int32_t tok, int64_t *out) {
    int neg = 0;
    uint64_t mag = 0;
    ssmb_result r = out ? ssmb__json_integer(doc, tok, &neg, &mag) : SSMB_ERR_INVALID_ARG;
    if (r != SSMB_OK) return r;
    if (mag > (uint64_t)INT64_MAX + (uint64_t)neg) return SSMB_ERR_OVERFLOW;
    if (!neg) *out = (int64_t)mag;
    else *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_json_get_u32(const ssmb_json *doc, int32_t tok, uint32_t *out) {
    int neg = 0;
    uint64_t mag = 0;
    ssmb_result r = out ? ssmb__json_integer(doc, tok, &neg, &mag) : SSMB_ERR_INVALID_ARG;
    if (r != SSMB_OK) return r;
    if (mag > UINT32_MAX || (neg && mag != 0)) return SSMB_ERR_OVERFLOW;
    *out = (uint32_t)mag;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_json_get_bool(const ssmb_json *doc, int32_t tok, int *out) {
    ssmb_str s = ssmb_json_raw(doc, tok);
    if (!out) return SSMB_ERR_INVALID_ARG;
    if (ssmb_json_kind(doc, tok) != SSMB_JSON_PRIMITIVE) return SSMB_ERR_JSON;
    if (ssmb__json_text_is(s.ptr, s.len, "true")) *out = 1;
    else if (ssmb__json_text_is(s.ptr, s.len, "false")) *out = 0;
    else return SSMB_ERR_JSON;
    return SSMB_OK;
}

SSMB_APIDEF int ssmb_json_is_null(const ssmb_json *doc, int32_t tok) {
    ssmb_str s = ssmb_json_raw(doc, tok);
    return ssmb_json_kind(doc, tok) == SSMB_JSON_PRIMITIVE && ssmb__json_text_is(s.ptr, s.len, "null");
}

/* ---- writer ----
   Invariant: depth open containers; for the container at depth d (1-based)
   bit d-1 of need_comma says it has a member already and bit d-1 of
   in_object says it is an object. len counts every byte the output needs,
   also past cap; bytes are stored only while they fit. */

static void ssmb__jw_fail(ssmb_json_writer *w, ssmb_result r) {
    if (w->error == 0) w->error = (int32_t)r;
}

static void ssmb__jw_put(ssmb_json_writer *w, const char *s, size_t n) {
    if (w->error || n == 0) return;
    if (n > (size_t)-1 - w->len) {
        ssmb__jw_fail(w, SSMB_ERR_OVERFLOW);
        return;
    }
    if (w->buf && w->len + n <= w->cap) memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void ssmb__jw_putc(ssmb_json_writer *w, char c) { ssmb__jw_put(w, &c, 1); }

static uint32_t ssmb__jw_level_bit(const ssmb_json_writer *w) { return 1u << (w->depth - 1); }

/* What a value needs before it; 0 when it must not be written: a second
   root value, a member value without its key. */
static int ssmb__jw_begin_value(ssmb_json_writer *w) {
    uint32_t bit;
    if (w->error) return 0;
    if (w->depth == 0) {
        if (w->len > 0) ssmb__jw_fail(w, SSMB_ERR_INVALID_STATE);
        return w->error == 0;
    }
    bit = ssmb__jw_level_bit(w);
    if (w->in_object & bit) {
        if (!w->after_key) ssmb__jw_fail(w, SSMB_ERR_INVALID_STATE);
        w->after_key = 0;
        return w->error == 0;
    }
    if (w->need_comma & bit) ssmb__jw_putc(w, ',');
    w->need_comma |= bit;
    return w->error == 0;
}

/* Length of the UTF-8 sequence starting at p (RFC 3629 §4: no overlong
   forms, no surrogates, nothing above U+10FFFF), 0 when invalid. */
static size_t ssmb__utf8_seq(const unsigned char *p, size_t n) {
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len, k;
    if (p[0] < 0x80) return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) len = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef) len = 3;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4) len = 4;
    else return 0;
    if (p[0] == 0xe0) lo = 0xa0;
    if (p[0] == 0xed) hi = 0x9f;
    if (p[0] == 0xf0) lo = 0x90;
    if (p[0] == 0xf4) hi = 0x8f;
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (k = 2; k < len; k++)
        if ((p[k] & 0xc0) != 0x80) return 0;
    return len;
}

static int ssmb__utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = ssmb__utf8_seq(p + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

/* RFC 8259 §7: '"', '\' and the control characters must be escaped.
   Go's encoding/json also escapes <, > and & (and U+2028, U+2029); those
   never occur in the protocol's values, and both forms mean the same. */
static void ssmb__jw_escape(ssmb_json_writer *w, unsigned char c) {
    char u[6];
    switch (c) {
    case '"': ssmb__jw_put(w, "\\\"", 2); return;
    case '\\': ssmb__jw_put(w, "\\\\", 2); return;
    case '\b': ssmb__jw_put(w, "\\b", 2); return;
    case '\f': ssmb__jw_put(w, "\\f", 2); return;
    case '\n': ssmb__jw_put(w, "\\n", 2); return;
    case '\r': ssmb__jw_put(w, "\\r", 2); return;
    case '\t': ssmb__jw_put(w, "\\t", 2); return;
    default: break;
    }
    u[0] = '\\';
    u[1] = 'u';
    u[2] = '0';
    u[3] = '0';
    u[4] = ssmb__hex_digits[c >> 4];
    u[5] = ssmb__hex_digits[c & 15];
    ssmb__jw_put(w, u, 6);
}

/* A quoted, escaped string; runs that need no escape are copied whole. */
static void ssmb__jw_quoted(ssmb_json_writer *w, const char *s, size_t n) {
    size_t i, run = 0;
    if (!s && n) {
        ssmb__jw_fail(w, SSMB_ERR_INVALID_ARG);
        return;
    }
    if (!ssmb__utf8_valid(s, n)) {
        ssmb__jw_fail(w, SSMB_ERR_MALFORMED);
        return;
    }
    if (n == 0) {
        ssmb__jw_put(w, "\"\"", 2);
        return;
    }
    ssmb__jw_putc(w, '"');
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        ssmb__jw_put(w, s + run, i - run);
        ssmb__jw_escape(w, c);
        run = i + 1;
    }
    ssmb__jw_put(w, s + run, n - run);
    ssmb__jw_putc(w, '"');
}

SSMB_APIDEF void ssmb_json_writer_init(ssmb_json_writer *w, char *buf, size_t cap) {
    memset(w, 0, sizeof *w);
    w->buf = buf;
    w->cap = buf ? cap : 0;
}

static void ssmb__jw_open(ssmb_json_writer *w, char bracket, int is_object) {
    uint32_t bit;
    if (!ssmb__jw_begin_value(w)) return;
    if (w->depth >= SSMB_JSON_MAX_DEPTH) {
        ssmb__jw_fail(w, SSMB_ERR_LIMIT);
        return;
    }
    ssmb__jw_putc(w, bracket);
    w->depth++;
    bit = ssmb__jw_level_bit(w);
    w->need_comma &= ~bit;
    if (is_object) w->in_object |= bit;
    else w->in_object &= ~bit;
}

static void ssmb__jw_close(ssmb_json_writer *w, char bracket, int is_object) {
    if (w->error) return;
    if (w->depth == 0 || w->after_key || ((w->in_object & ssmb__jw_level_bit(w)) != 0) != (is_object != 0)) {
        ssmb__jw_fail(w, SSMB_ERR_INVALID_STATE);
        return;
    }
    ssmb__jw_putc(w, bracket);
    w->depth--;
}

SSMB_APIDEF void ssmb_json_writer_begin_object(ssmb_json_writer *w) { ssmb__jw_open(w, '{', 1); }
SSMB_APIDEF void ssmb_json_writer_end_object(ssmb_json_writer *w) { ssmb__jw_close(w, '}', 1); }
SSMB_APIDEF void ssmb_json_writer_begin_array(ssmb_json_writer *w) { ssmb__jw_open(w, '[', 0); }
SSMB_APIDEF void ssmb_json_writer_end_array(ssmb_json_writer *w) { ssmb__jw_close(w, ']', 0); }

SSMB_APIDEF void ssmb_json_writer_key(ssmb_json_writer *w, const char *key, size_t len) {
    uint32_t bit;
    if (w->error) return;
    if (w->depth == 0 || !(w->in_object & ssmb__jw_level_bit(w)) || w->after_key) {
        ssmb__jw_fail(w, SSMB_ERR_INVALID_STATE);
        return;
    }
    bit = ssmb__jw_level_bit(w);
    if (w->need_comma & bit) ssmb__jw_putc(w, ',');
    w->need_comma |= bit;
    ssmb__jw_quoted(w, key, len);
    ssmb__jw_putc(w, ':');
    w->after_key = 1;
}

SSMB_APIDEF void ssmb_json_writer_string(ssmb_json_writer *w, const char *s, size_t len) {
    if (ssmb__jw_begin_value(w)) ssmb__jw_quoted(w, s, len);
}

/* Decimal digits of a magnitude, with a sign; exact for the whole 64-bit range. */
static void ssmb__jw_integer(ssmb_json_writer *w, int neg, uint64_t mag) {
    char tmp[21];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + (int)(mag % 10));
        mag /= 10;
    } while (mag);
    if (neg) tmp[--i] = '-';
    ssmb__jw_put(w, tmp + i, sizeof tmp - i);
}

SSMB_APIDEF void ssmb_json_writer_i64(ssmb_json_writer *w, int64_t v) {
    /* 0 - (uint64_t)v is the magnitude even for INT64_MIN. */
    if (ssmb__jw_begin_value(w)) ssmb__jw_integer(w, v < 0, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

SSMB_APIDEF void ssmb_json_writer_u64(ssmb_json_writer *w, uint64_t v) {
    if (ssmb__jw_begin_value(w)) ssmb__jw_integer(w, 0, v);
}

SSMB_APIDEF void ssmb_json_writer_bool(ssmb_json_writer *w, int v) {
    if (ssmb__jw_begin_value(w)) ssmb__jw_put(w, v ? "true" : "false", v ? 4 : 5);
}

SSMB_APIDEF void ssmb_json_writer_null(ssmb_json_writer *w) {
    if (ssmb__jw_begin_value(w)) ssmb__jw_put(w, "null", 4);
}

SSMB_APIDEF void ssmb_json_writer_raw(ssmb_json_writer *w, const char *json, size_t len) {
    if (!json || len == 0) {
        ssmb__jw_fail(w, SSMB_ERR_INVALID_ARG);
        return;
    }
    if (ssmb__jw_begin_value(w)) ssmb__jw_put(w, json, len);
}

SSMB_APIDEF ssmb_result ssmb_json_writer_finish(ssmb_json_writer *w, size_t *out_len) {
    if (out_len) *out_len = w->len;
    if (w->error) return (ssmb_result)w->error;
    if (w->depth != 0 || w->after_key || w->len == 0) return SSMB_ERR_INVALID_STATE;
    if (!w->buf || w->len > w->cap) return SSMB_ERR_BUFFER_TOO_SMALL;
    if (w->len < w->cap) w->buf[w->len] = '\0';
    return SSMB_OK;
}

/* Shorthands for the payload builders and readers. */
static void ssmb__jw_key(ssmb_json_writer *w, const char *key) { ssmb_json_writer_key(w, key, strlen(key)); }

static void ssmb__jw_member_str(ssmb_json_writer *w, const char *key, ssmb_str value) {
    ssmb__jw_key(w, key);
    ssmb_json_writer_string(w, value.ptr, value.len);
}

static ssmb_str ssmb__str_empty(void) { return ssmb_str_c(""); }

/* A string member that must be present. */
static ssmb_result ssmb__json_req_str(const ssmb_json *doc, int32_t obj, const char *key, ssmb_str *out) {
    int32_t v = ssmb_json_find(doc, obj, key);
    return v < 0 ? SSMB_ERR_JSON : ssmb_json_get_str(doc, v, out);
}

/* A string member that may be absent or null (then empty). */
static ssmb_result ssmb__json_opt_str(const ssmb_json *doc, int32_t obj, const char *key, ssmb_str *out) {
    int32_t v = ssmb_json_find(doc, obj, key);
    *out = ssmb__str_empty();
    if (v < 0 || ssmb_json_is_null(doc, v)) return SSMB_OK;
    return ssmb_json_get_str(doc, v, out);
}

static ssmb_result ssmb__json_req_i64(const ssmb_json *doc, int32_t obj, const char *key, int64_t *out) {
    int32_t v = ssmb_json_find(doc, obj, key);
    return v < 0 ? SSMB_ERR_JSON : ssmb_json_get_i64(doc, v, out);
}

static ssmb_result ssmb__json_req_bool(const ssmb_json *doc, int32_t obj, const char *key, int *out) {
    int32_t v = ssmb_json_find(doc, obj, key);
    return v < 0 ? SSMB_ERR_JSON : ssmb_json_get_bool(doc, v, out);
}

// >>http
/* HTTP/1.1 message syntax (RFC 9112) and field rules (RFC 9110). */

/* RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
   "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. */
static int ssmb__http_is_tchar(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int ssmb__http_is_token(ssmb_str s) {
    size_t i;
    if (s.len == 0) return 0;
    for (i = 0; i < s.len; i++)
        if (!ssmb__http_is_tchar((uint8_t)s.ptr[i])) return 0;
    return 1;
}

/* RFC 9110 §5.5: field values are VCHAR, obs-text, SP and HTAB; no CR, LF,
   NUL or other control character, which is what stops header injection. */
static int ssmb__http_is_text(ssmb_str s) {
    size_t i;
    for (i = 0; i < s.len; i++) {
        uint8_t c = (uint8_t)s.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
    }
    return 1;
}

static int ssmb__http_is_ows(char c) { return c == ' ' || c == '\t'; }

static ssmb_str ssmb__http_trim(ssmb_str s) {
    while (s.len && ssmb__http_is_ows(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len && ssmb__http_is_ows(s.ptr[s.len - 1])) s.len--;
    return s;
}

static char ssmb__http_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

/* ASCII case-insensitive equality of a view and a C string. */
static int ssmb__http_ieq(ssmb_str a, const char *b) {
    size_t i, n = strlen(b);
    if (a.len != n) return 0;
    for (i = 0; i < n; i++)
        if (ssmb__http_lower(a.ptr[i]) != ssmb__http_lower(b[i])) return 0;
    return 1;
}

/* ---- request writer ----------------------------------------------------- */

/* Output with a sticky error; len counts every byte asked for, even past cap. */
typedef struct ssmb__http_out {
    char *buf;
    size_t cap;
    size_t len;
    ssmb_result error;
} ssmb__http_out;

static void ssmb__http_put(ssmb__http_out *o, const void *p, size_t n) {
    size_t end;
    if (o->error || n == 0) return;
    if (ssmb_size_add(o->len, n, &end) != SSMB_OK) {
        o->error = SSMB_ERR_OVERFLOW;
        return;
    }
    if (o->buf && end <= o->cap) memcpy(o->buf + o->len, p, n);
    o->len = end;
}

static void ssmb__http_puts(ssmb__http_out *o, const char *s) { ssmb__http_put(o, s, strlen(s)); }

static void ssmb__http_put_u64(ssmb__http_out *o, uint64_t v) {
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ssmb__http_put(o, digits + sizeof digits - n, n);
}

/* "Name: value\r\n"; refuses a name that is no token or a value with controls. */
static void ssmb__http_put_header(ssmb__http_out *o, ssmb_str name, ssmb_str value) {
    if (!ssmb__http_is_token(name) || !ssmb__http_is_text(value)) o->error = SSMB_ERR_INVALID_ARG;
    ssmb__http_put(o, name.ptr, name.len);
    ssmb__http_put(o, ": ", 2);
    ssmb__http_put(o, value.ptr, value.len);
    ssmb__http_put(o, "\r\n", 2);
}

static void ssmb__http_put_headers(ssmb__http_out *o, const ssmb_http_header *h, size_t n) {
    size_t i;
    if (n && !h) o->error = SSMB_ERR_INVALID_ARG;
    for (i = 0; i < n && !o->error; i++) ssmb__http_put_header(o, h[i].name, h[i].value);
}

/* RFC 9112 §3: method SP request-target SP HTTP-version CRLF, then Host
   (§3.2: every HTTP/1.1 request carries it). The target is origin form:
   visible ASCII without spaces. */
static void ssmb__http_put_request_line(ssmb__http_out *o, ssmb_str method, ssmb_str target, ssmb_str host) {
    size_t i;
    if (!ssmb__http_is_token(method) || target.len == 0 || host.len == 0) o->error = SSMB_ERR_INVALID_ARG;
    for (i = 0; i < target.len; i++)
        if ((uint8_t)target.ptr[i] <= 0x20 || (uint8_t)target.ptr[i] >= 0x7f) o->error = SSMB_ERR_INVALID_ARG;
    ssmb__http_put(o, method.ptr, method.len);
    ssmb__http_put(o, " ", 1);
    ssmb__http_put(o, target.ptr, target.len);
    ssmb__http_puts(o, " HTTP/1.1\r\n");
    ssmb__http_put_header(o, ssmb_str_c("Host"), host);
}

/* Ends the output: result, *out_len, and a NUL when it fits. */
static ssmb_result ssmb__http_finish(ssmb__http_out *o, size_t *out_len) {
    if (o->error) return o->error;
    *out_len = o->len;
    if (!o->buf || o->len > o->cap) return SSMB_ERR_BUFFER_TOO_SMALL;
    if (o->len < o->cap) o->buf[o->len] = '\0';
    return SSMB_OK;
}

static void ssmb__http_out_init(ssmb__http_out *o, char *out, size_t cap) {
    o->buf = out;
    o->cap = out ? cap : 0;
    o->len = 0;
    o->error = SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_http_request_write(const ssmb_http_request *req, char *out, size_t cap, size_t *out_len) {
    ssmb__http_out o;
    ssmb__http_out_init(&o, out, cap);
    ssmb__http_put_request_line(&o, req->method, req->target, req->host);
    ssmb__http_put_headers(&o, req->headers, req->header_count);
    if (req->has_body) {
        ssmb__http_puts(&o, "Content-Length: ");
        ssmb__http_put_u64(&o, (uint64_t)req->body_len);
        ssmb__http_puts(&o, "\r\n");
    }
    ssmb__http_puts(&o, "\r\n");
    if (req->has_body && req->body) ssmb__http_put(&o, req->body, req->body_len);
    return ssmb__http_finish(&o, out_len);
}

SSMB_APIDEF ssmb_result ssmb_http_upgrade_request_write(ssmb_str target, ssmb_str host, ssmb_str ws_key,
                                                        const ssmb_http_header *extra, size_t extra_count,
                                                        char *out, size_t cap, size_t *out_len) {
    ssmb__http_out o;
    ssmb__http_out_init(&o, out, cap);
    if (ws_key.len == 0) o.error = SSMB_ERR_INVALID_ARG;
    /* RFC 6455 §4.1 items 1-9, in the order of the example in §1.3. */
    ssmb__http_put_request_line(&o, ssmb_str_c("GET"), target, host);
    ssmb__http_puts(&o, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    ssmb__http_put_header(&o, ssmb_str_c("Sec-WebSocket-Key"), ws_key);
    ssmb__http_put_headers(&o, extra, extra_count);
    ssmb__http_puts(&o, "Sec-WebSocket-Version: 13\r\n\r\n");
    return ssmb__http_finish(&o, out_len);
}

/* ---- response parser ---------------------------------------------------- */

/* Finds the line starting at pos: *eol = index of its CR. SSMB_AGAIN when
   no LF is in yet; SSMB_ERR_HTTP for an LF without CR before it. */
static ssmb_result ssmb__http_line(const char *in, size_t pos, size_t end, size_t *eol) {
    const char *lf = (const char *)memchr(in + pos, '\n', end - pos);
    size_t at;
    if (!lf) return SSMB_AGAIN;
    at = (size_t)(lf - in);
    if (at == pos || in[at - 1] != '\r') return SSMB_ERR_HTTP;
    *eol = at - 1;
    return SSMB_OK;
}

/* RFC 9112 §4: HTTP-version SP 3DIGIT SP reason-phrase. A missing reason
   with its SP ("HTTP/1.1 200") is taken as an empty reason. */
static ssmb_result ssmb__http_status_line(const char *s, size_t n, ssmb_http_response *out) {
    ssmb_str reason;
    size_t i;
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ') return SSMB_ERR_HTTP;
    for (i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9') return SSMB_ERR_HTTP;
    out->minor_version = (uint32_t)(s[7] - '0');
    out->status = (uint32_t)((s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0'));
    if (out->status < 100 || out->status > 599) return SSMB_ERR_HTTP; /* RFC 9110 §15 */
    if (n > 12 && s[12] != ' ') return SSMB_ERR_HTTP;
    reason.ptr = s + SSMB__MIN(n, (size_t)13);
    reason.len = n > 13 ? n - 13 : 0;
    if (!ssmb__http_is_text(reason)) return SSMB_ERR_HTTP;
    out->reason = reason;
    return SSMB_OK;
}

/* RFC 9112 §5: field-name ":" OWS field-value OWS. The name must be a
   token, which refuses both obsolete line folding (§5.2: a line starting
   with SP or HTAB) and whitespace before the colon (§5.1). */
static ssmb_result ssmb__http_header_line(const char *s, size_t n, ssmb_http_header *h) {
    const char *colon = (const char *)memchr(s, ':', n);
    ssmb_str name, value;
    if (!colon) return SSMB_ERR_HTTP;
    name.ptr = s;
    name.len = (size_t)(colon - s);
    value.ptr = colon + 1;
    value.len = n - name.len - 1;
    value = ssmb__http_trim(value);
    if (!ssmb__http_is_token(name) || !ssmb__http_is_text(value)) return SSMB_ERR_HTTP;
    h->name = name;
    h->value = value;
    return SSMB_OK;
}

/* Parses the lines that fit in in[0..end); SSMB_AGAIN when the blank line
   is not among them. */
static ssmb_result ssmb__http_parse_head(const char *in, size_t end, ssmb_http_header *headers, size_t max_headers,
                                         ssmb_http_response *out) {
    size_t pos, eol;
    ssmb_result rc = ssmb__http_line(in, 0, end, &eol);
    if (rc != SSMB_OK) return rc;
    if ((rc = ssmb__http_status_line(in, eol, out)) != SSMB_OK) return rc;
    for (pos = eol + 2;; pos = eol + 2) {
        if ((rc = ssmb__http_line(in, pos, end, &eol)) != SSMB_OK) return rc;
        if (eol == pos) break;
        if (out->header_count == max_headers) return SSMB_ERR_LIMIT;
        rc = ssmb__http_header_line(in + pos, eol - pos, &headers[out->header_count]);
        if (rc != SSMB_OK) return rc;
        out->header_count++;
    }
    out->head_len = eol + 2;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_http_response_parse(const char *in, size_t len, ssmb_http_header *headers,
                                                 size_t max_headers, size_t max_head, ssmb_http_response *out) {
    size_t end;
    ssmb_result rc;
    memset(out, 0, sizeof *out);
    out->reason.ptr = "";
    out->headers = headers;
    if (!headers) max_headers = 0;
    if (max_head == 0) max_head = SSMB_HTTP_DEFAULT_MAX_HEAD;
    if (len == 0) return SSMB_AGAIN;
    /* Anything that does not start like a status line fails at once. */
    if (memcmp(in, "HTTP/1.", SSMB__MIN(len, (size_t)7)) != 0) return SSMB_ERR_HTTP;
    end = SSMB__MIN(len, max_head);
    rc = ssmb__http_parse_head(in, end, headers, max_headers, out);
    if (rc == SSMB_AGAIN && len > max_head) return SSMB_ERR_LIMIT;
    return rc;
}

/* ---- header helpers ----------------------------------------------------- */

SSMB_APIDEF const ssmb_http_header *ssmb_http_header_find(const ssmb_http_response *r, const char *name,
                                                          const ssmb_http_header *after) {
    size_t i = after ? (size_t)(after - r->headers) + 1 : 0;
    for (; i < r->header_count; i++)
        if (ssmb__http_ieq(r->headers[i].name, name)) return &r->headers[i];
    return NULL;
}

/* Cuts the next element off a comma-separated list (RFC 9110 §5.6.1),
   trimmed; 0 when the list is used up. Empty elements come out empty. */
static int ssmb__http_next_element(ssmb_str *list, ssmb_str *element) {
    const char *comma;
    if (!list->ptr) return 0;
    comma = (const char *)memchr(list->ptr, ',', list->len);
    element->ptr = list->ptr;
    element->len = comma ? (size_t)(comma - list->ptr) : list->len;
    *element = ssmb__http_trim(*element);
    if (comma) {
        list->len -= (size_t)(comma - list->ptr) + 1;
        list->ptr = comma + 1;
    } else {
        list->ptr = NULL;
    }
    return 1;
}

SSMB_APIDEF int ssmb_http_token_list_contains(ssmb_str list, const char *token) {
    ssmb_str element;
    while (ssmb__http_next_element(&list, &element))
        if (ssmb__http_ieq(element, token)) return 1;
    return 0;
}

SSMB_APIDEF int ssmb_http_header_has_token(const ssmb_http_response *r, const char *name, const char *token) {
    const ssmb_http_header *h = NULL;
    while ((h = ssmb_http_header_find(r, name, h)) != NULL)
        if (ssmb_http_token_list_contains(h->value, token)) return 1;
    return 0;
}

/* 1*DIGIT into a uint64; SSMB_ERR_HTTP for anything else (no sign, no
   space, not empty), SSMB_ERR_OVERFLOW past 2^64-1. */
static ssmb_result ssmb__http_parse_u64(ssmb_str s, uint64_t *out) {
    uint64_t v = 0;
    size_t i;
    if (s.len == 0) return SSMB_ERR_HTTP;
    for (i = 0; i < s.len; i++) {
        uint64_t d = (uint64_t)(s.ptr[i] - '0');
        if (s.ptr[i] < '0' || s.ptr[i] > '9') return SSMB_ERR_HTTP;
        if (v > (UINT64_MAX - d) / 10) return SSMB_ERR_OVERFLOW;
        v = v * 10 + d;
    }
    *out = v;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_http_content_length(const ssmb_http_response *r, int *present, uint64_t *length) {
    const ssmb_http_header *h = NULL;
    uint64_t first = 0, v;
    int seen = 0;
    ssmb_result rc;
    /* RFC 9110 §8.6: repeated values ("42, 42" or two lines) may be taken as
       one when they agree; any disagreement is an error. */
    while ((h = ssmb_http_header_find(r, "Content-Length", h)) != NULL) {
        ssmb_str list = h->value, element;
        while (ssmb__http_next_element(&list, &element)) {
            if ((rc = ssmb__http_parse_u64(element, &v)) != SSMB_OK) return rc;
            if (seen && v != first) return SSMB_ERR_HTTP;
            first = v;
            seen = 1;
        }
    }
    *present = seen;
    *length = first;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_http_check_ws_upgrade(const ssmb_http_response *r, const char *expected_accept) {
    const ssmb_http_header *upgrade = ssmb_http_header_find(r, "Upgrade", NULL);
    const ssmb_http_header *accept = ssmb_http_header_find(r, "Sec-WebSocket-Accept", NULL);
    /* RFC 6455 §4.1, the client's checks of the server's handshake, 1-5. */
    if (r->status != 101 || r->minor_version != 1) return SSMB_ERR_HTTP;
    if (!upgrade || ssmb_http_header_find(r, "Upgrade", upgrade) || !ssmb__http_ieq(upgrade->value, "websocket"))
        return SSMB_ERR_HTTP;
    if (!ssmb_http_header_has_token(r, "Connection", "Upgrade")) return SSMB_ERR_HTTP;
    if (!accept || ssmb_http_header_find(r, "Sec-WebSocket-Accept", accept) ||
        !ssmb_str_eq(accept->value, expected_accept))
        return SSMB_ERR_HTTP;
    if (ssmb_http_header_find(r, "Sec-WebSocket-Extensions", NULL)) return SSMB_ERR_HTTP;
    return SSMB_OK;
}

/* ---- chunked transfer coding (RFC 9112 §7.1) ------------------------------
     chunked-body = *chunk last-chunk trailer-section CRLF
     chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
     last-chunk   = 1*("0") [ chunk-ext ] CRLF
   A byte-at-a-time state machine for the lines, bulk views for the data. */
enum {
    SSMB__CHUNK_SIZE_FIRST = 0, /* expecting the first hex digit */
    SSMB__CHUNK_SIZE,           /* more hex digits, BWS, ';' or CR */
    SSMB__CHUNK_SIZE_BWS,       /* after BWS: more BWS, ';' or CR */
    SSMB__CHUNK_EXT,            /* extension text, ignored up to CR */
    SSMB__CHUNK_SIZE_LF,
    SSMB__CHUNK_DATA,
    SSMB__CHUNK_DATA_CR,
    SSMB__CHUNK_DATA_LF,
    SSMB__CHUNK_TRAILER_START,  /* start of a trailer line or the final CRLF */
    SSMB__CHUNK_TRAILER,        /* inside a trailer line, skipped up to CR */
    SSMB__CHUNK_TRAILER_LF,
    SSMB__CHUNK_END_LF,
    SSMB__CHUNK_DONE
};

SSMB_APIDEF void ssmb_http_chunked_init(ssmb_http_chunked *c, uint64_t max_body) {
    memset(c, 0, sizeof *c);
    c->max_body = max_body;
}

/* The size line is complete: start the chunk's data, or the trailers. */
static ssmb_result ssmb__chunk_size_done(ssmb_http_chunked *c) {
    c->line_len = 0;
    if (c->remaining == 0) {
        c->state = SSMB__CHUNK_TRAILER_START;
        return SSMB_OK;
    }
    if (c->max_body && c->remaining > c->max_body - c->total) return SSMB_ERR_LIMIT;
    c->total += c->remaining;
    c->state = SSMB__CHUNK_DATA;
    return SSMB_OK;
}

/* One byte of a chunk-size line before its CR. */
static ssmb_result ssmb__chunk_size_byte(ssmb_http_chunked *c, uint8_t ch) {
    int d = ssmb__hex_value((char)ch);
    if (c->state == SSMB__CHUNK_SIZE_FIRST || (c->state == SSMB__CHUNK_SIZE && d >= 0)) {
        if (d < 0) return SSMB_ERR_HTTP;
        if (c->remaining >> 60) return SSMB_ERR_OVERFLOW;
        c->remaining = c->remaining << 4 | (uint64_t)d;
        c->state = SSMB__CHUNK_SIZE;
    } else if (c->state == SSMB__CHUNK_EXT) {
        if (ch == '\r') c->state = SSMB__CHUNK_SIZE_LF;
        else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return SSMB_ERR_HTTP;
    } else if (ch == ' ' || ch == '\t') { /* §7.1.1: BWS before ';' */
        c->state = SSMB__CHUNK_SIZE_BWS;
    } else if (ch == ';') {
        c->state = SSMB__CHUNK_EXT;
    } else if (ch == '\r') {
        c->state = SSMB__CHUNK_SIZE_LF;
    } else {
        return SSMB_ERR_HTTP;
    }
    return SSMB_OK;
}

/* One byte of a trailer line before its CR; trailers are skipped. */
static ssmb_result ssmb__chunk_trailer_byte(ssmb_http_chunked *c, uint8_t ch) {
    if (ch == '\r') {
        c->state = c->state == SSMB__CHUNK_TRAILER_START ? SSMB__CHUNK_END_LF : SSMB__CHUNK_TRAILER_LF;
        return SSMB_OK;
    }
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return SSMB_ERR_HTTP;
    c->state = SSMB__CHUNK_TRAILER;
    return SSMB_OK;
}

/* Expects one byte, then moves on to next. */
static ssmb_result ssmb__chunk_expect(ssmb_http_chunked *c, uint8_t ch, uint8_t want, uint32_t next) {
    if (ch != want) return SSMB_ERR_HTTP;
    c->state = next;
    if (next == SSMB__CHUNK_SIZE_FIRST) {
        c->remaining = 0;
        c->line_len = 0;
    }
    return SSMB_OK;
}

/* One byte outside chunk data. line_len counts the bytes of the current
   size line (CRLF included) or of the whole trailer section. */
static ssmb_result ssmb__chunk_byte(ssmb_http_chunked *c, uint8_t ch) {
    uint32_t limit = c->state >= SSMB__CHUNK_TRAILER_START ? SSMB_HTTP_TRAILER_MAX : SSMB_HTTP_CHUNK_LINE_MAX;
    if (++c->line_len > limit) return SSMB_ERR_LIMIT;
    switch (c->state) {
    case SSMB__CHUNK_SIZE_FIRST:
    case SSMB__CHUNK_SIZE:
    case SSMB__CHUNK_SIZE_BWS:
    case SSMB__CHUNK_EXT: return ssmb__chunk_size_byte(c, ch);
    case SSMB__CHUNK_SIZE_LF:
        if (ch != '\n') return SSMB_ERR_HTTP;
        return ssmb__chunk_size_done(c);
    case SSMB__CHUNK_DATA_CR: return ssmb__chunk_expect(c, ch, '\r', SSMB__CHUNK_DATA_LF);
    case SSMB__CHUNK_DATA_LF: return ssmb__chunk_expect(c, ch, '\n', SSMB__CHUNK_SIZE_FIRST);
    case SSMB__CHUNK_TRAILER_START:
    case SSMB__CHUNK_TRAILER: return ssmb__chunk_trailer_byte(c, ch);
    case SSMB__CHUNK_TRAILER_LF: return ssmb__chunk_expect(c, ch, '\n', SSMB__CHUNK_TRAILER_START);
    case SSMB__CHUNK_END_LF: return ssmb__chunk_expect(c, ch, '\n', SSMB__CHUNK_DONE);
    default: return SSMB_ERR_INTERNAL;
    }
}

SSMB_APIDEF ssmb_result ssmb_http_chunked_read(ssmb_http_chunked *c, const char *in, size_t len, size_t *consumed,
                                               ssmb_str *data) {
    size_t i = 0;
    ssmb_result rc = SSMB_AGAIN;
    data->ptr = "";
    data->len = 0;
    *consumed = 0;
    if (c->error) return (ssmb_result)c->error;
    if (c->state == SSMB__CHUNK_DONE) return SSMB_CLOSED;
    while (i < len && rc == SSMB_AGAIN) {
        if (c->state == SSMB__CHUNK_DATA) {
            size_t take = c->remaining < len - i ? (size_t)c->remaining : len - i;
            data->ptr = in + i;
            data->len = take;
            c->remaining -= take;
            if (c->remaining == 0) c->state = SSMB__CHUNK_DATA_CR;
            i += take;
            rc = SSMB_OK;
        } else if ((rc = ssmb__chunk_byte(c, (uint8_t)in[i++])) == SSMB_OK) {
            rc = c->state == SSMB__CHUNK_DONE ? SSMB_CLOSED : SSMB_AGAIN;
        }
    }
    *consumed = i;
    if (rc < 0) c->error = (int32_t)rc;
    return rc;
}

// >>ws
/* RFC 6455 §5.2 base framing:
     byte 0: FIN (0x80), RSV1-3 (0x70), opcode (0x0f)
     byte 1: MASK (0x80), length (0x7f): 0-125 as is, 126 = a 16-bit length
             follows, 127 = a 64-bit length follows (most significant bit 0)
     then the 4-byte mask key when MASK is set, then the payload. */

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define SSMB__WS_SSE2 1
#else
#define SSMB__WS_SSE2 0
#endif

static int ssmb__ws_opcode_known(uint32_t op) { return op <= SSMB_WS_BINARY || (op >= SSMB_WS_CLOSE && op <= SSMB_WS_PONG); }

static int ssmb__ws_is_control(uint32_t op) { return (op & 0x8) != 0; }

static uint64_t ssmb__ws_load_be64(const uint8_t *p) {
    return ((uint64_t)ssmb__load_be32(p) << 32) | ssmb__load_be32(p + 4);
}

/* Header size the first two bytes announce. */
static size_t ssmb__ws_header_size(uint8_t byte1) {
    size_t n = 2;
    if ((byte1 & 0x7f) == 126) n += 2;
    if ((byte1 & 0x7f) == 127) n += 8;
    if (byte1 & 0x80) n += 4;
    return n;
}

static ssmb_result ssmb__ws_check_encode(uint32_t opcode, int fin, uint64_t payload_len) {
    if (!ssmb__ws_opcode_known(opcode) || payload_len >> 63) return SSMB_ERR_INVALID_ARG;
    /* RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented. */
    if (ssmb__ws_is_control(opcode) && (!fin || payload_len > SSMB_WS_MAX_CONTROL_PAYLOAD)) return SSMB_ERR_INVALID_ARG;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_ws_frame_header_encode(uint32_t opcode, int fin, uint64_t payload_len,
                                                    const uint8_t *mask_key, uint8_t out[SSMB_WS_MAX_HEADER_SIZE],
                                                    size_t *out_len) {
    size_t n = 2;
    ssmb_result rc = ssmb__ws_check_encode(opcode, fin, payload_len);
    if (rc != SSMB_OK) return rc;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    out[1] = mask_key ? 0x80 : 0;
    if (payload_len <= 125) {
        out[1] |= (uint8_t)payload_len;
    } else if (payload_len <= 0xffff) { /* §5.2: the minimal form MUST be used */
        out[1] |= 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        n = 4;
    } else {
        out[1] |= 127;
        ssmb__store_be64(out + 2, payload_len);
        n = 10;
    }
    if (mask_key) {
        memcpy(out + n, mask_key, 4);
        n += 4;
    }
    *out_len = n;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_ws_frame_header_parse(const uint8_t *in, size_t len, ssmb_ws_frame_header *out) {
    size_t need, at = 2;
    uint64_t payload_len;
    if (len < 2) return SSMB_AGAIN;
    payload_len = in[1] & 0x7f;
    /* §5.2: the most significant bit of a 64-bit length MUST be 0; refuse it
       as soon as that byte is in, before the mask key arrives. */
    if (payload_len == 127 && len > 2 && (in[2] & 0x80)) return SSMB_ERR_WS_PROTOCOL;
    need = ssmb__ws_header_size(in[1]);
    if (len < need) return SSMB_AGAIN;
    if (payload_len == 126) {
        payload_len = ((uint64_t)in[2] << 8) | in[3];
        at = 4;
    } else if (payload_len == 127) {
        payload_len = ssmb__ws_load_be64(in + 2);
        at = 10;
    }
    out->fin = (uint8_t)(in[0] >> 7);
    out->rsv = (uint8_t)((in[0] >> 4) & 7);
    out->opcode = (uint8_t)(in[0] & 0x0f);
    out->masked = (uint8_t)(in[1] >> 7);
    memset(out->mask_key, 0, 4);
    if (out->masked) memcpy(out->mask_key, in + at, 4);
    out->payload_len = payload_len;
    out->header_len = (uint32_t)need;
    return SSMB_OK;
}

#if SSMB__WS_SSE2
/* The SSE2 part of ssmb__ws_xor: 64 bytes per loop, then 16. k is the key
   rotated to the start and repeated to 16 bytes. Returns the bytes done. */
static size_t ssmb__ws_xor_sse2(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t k[16]) {
    __m128i vk = _mm_loadu_si128((const __m128i *)(const void *)k);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 48));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, vk));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 16), _mm_xor_si128(b, vk));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 32), _mm_xor_si128(c, vk));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 48), _mm_xor_si128(d, vk));
    }
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, vk));
    }
    return i;
}
#endif

/* dst[i] = src[i] ^ key[(offset + i) % 4]; dst == src masks in place (RFC
   6455 §5.3). Partly overlapping buffers are not allowed. SSE2 (every
   x86-64) takes the bulk; 8-byte words through memcpy do the rest, and all
   of it elsewhere. On 16 KiB on an x86-64 server core: about 50 GiB/s with
   SSE2, 13-20 GiB/s with words alone (gcc -O2 does not vectorise them). */
static void ssmb__ws_xor(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], size_t offset) {
    uint8_t k[16];
    uint64_t k8;
    size_t i = 0, j;
    for (j = 0; j < 16; j++) k[j] = key[(offset + j) & 3];
#if SSMB__WS_SSE2
    i = ssmb__ws_xor_sse2(dst, src, n, k);
#endif
    memcpy(&k8, k, 8); /* i is a multiple of 8 here, so k[0..7] lines up */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k8;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) dst[i] = (uint8_t)(src[i] ^ k[i & 3]);
}

SSMB_APIDEF void ssmb_ws_mask(uint8_t *data, size_t n, const uint8_t key[4], size_t offset) {
    ssmb__ws_xor(data, data, n, key, offset);
}

SSMB_APIDEF ssmb_result ssmb_ws_frame_write(uint32_t opcode, int fin, const void *payload, size_t n,
                                            const uint8_t *mask_key, uint8_t *out, size_t cap, size_t *out_len) {
    uint8_t header[SSMB_WS_MAX_HEADER_SIZE];
    size_t header_len, total;
    ssmb_result rc = ssmb_ws_frame_header_encode(opcode, fin, n, mask_key, header, &header_len);
    if (rc != SSMB_OK) return rc;
    if (ssmb_size_add(header_len, n, &total) != SSMB_OK) return SSMB_ERR_OVERFLOW;
    *out_len = total;
    if (!out || cap < total) return SSMB_ERR_BUFFER_TOO_SMALL;
    memcpy(out, header, header_len);
    if (n == 0) return SSMB_OK;
    if (mask_key) ssmb__ws_xor(out + header_len, (const uint8_t *)payload, n, mask_key, 0);
    else memcpy(out + header_len, payload, n);
    return SSMB_OK;
}

/* ---- UTF-8, checked incrementally ----------------------------------------
   Unicode §3.9 table 3-7: the lead byte fixes how many continuation bytes
   follow and the range of the first of them, which is what keeps out
   overlong forms, surrogates (ED A0..BF) and code points past U+10FFFF (F4
   90..). Later continuation bytes are 80..BF. State: 0 between code points,
   else need | lo << 8 | hi << 16 for the next byte. */
#define SSMB__WS_UTF8_BAD 0xffffffffu

static uint32_t ssmb__ws_utf8_expect(uint32_t need, uint32_t lo, uint32_t hi) { return need | lo << 8 | hi << 16; }

static uint32_t ssmb__ws_utf8_lead(uint8_t c) {
    if (c < 0x80) return 0;
    if (c >= 0xc2 && c <= 0xdf) return ssmb__ws_utf8_expect(1, 0x80, 0xbf);
    if (c == 0xe0) return ssmb__ws_utf8_expect(2, 0xa0, 0xbf);
    if (c == 0xed) return ssmb__ws_utf8_expect(2, 0x80, 0x9f);
    if (c >= 0xe1 && c <= 0xef) return ssmb__ws_utf8_expect(2, 0x80, 0xbf);
    if (c == 0xf0) return ssmb__ws_utf8_expect(3, 0x90, 0xbf);
    if (c >= 0xf1 && c <= 0xf3) return ssmb__ws_utf8_expect(3, 0x80, 0xbf);
    if (c == 0xf4) return ssmb__ws_utf8_expect(3, 0x80, 0x8f);
    return SSMB__WS_UTF8_BAD;
}

static uint32_t ssmb__ws_utf8_step(uint32_t state, uint8_t c) {
    uint32_t need = state & 0xff;
    if (need == 0) return ssmb__ws_utf8_lead(c);
    if (c < ((state >> 8) & 0xff) || c > ((state >> 16) & 0xff)) return SSMB__WS_UTF8_BAD;
    return need == 1 ? 0 : ssmb__ws_utf8_expect(need - 1, 0x80, 0xbf);
}

/* Bytes before the first 8-byte word with a non-ASCII byte in it. */
static size_t ssmb__ws_ascii_words(const uint8_t *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
    }
    return i;
}

/* Advances *state over p[0..n); 0 when still valid, -1 at the first bad byte. */
static int ssmb__ws_utf8_feed(uint32_t *state, const uint8_t *p, size_t n) {
    uint32_t st = *state;
    size_t i = 0;
    while (i < n) {
        if (st == 0) i += ssmb__ws_ascii_words(p + i, n - i);
        if (i == n) break;
        st = ssmb__ws_utf8_step(st, p[i++]);
        if (st == SSMB__WS_UTF8_BAD) return -1;
    }
    *state = st;
    return 0;
}

static int ssmb__ws_utf8_valid(const uint8_t *p, size_t n) {
    uint32_t st = 0;
    return ssmb__ws_utf8_feed(&st, p, n) == 0 && st == 0;
}

/* ---- SHA-1 (FIPS 180-4 §6.1), only for Sec-WebSocket-Accept ------------- */
typedef struct ssmb__ws_sha1 {
    uint32_t h[5];
    uint64_t total;     /* bytes hashed */
    uint8_t block[64];  /* invariant: total % 64 bytes of a partial block */
} ssmb__ws_sha1;

static uint32_t ssmb__ws_rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

/* §4.2.1: one constant per 20 rounds. */
static const uint32_t ssmb__ws_sha1_k[4] = {0x5a827999, 0x6ed9eba1, 0x8f1bbcdc, 0xca62c1d6};

/* §4.1.1: Ch for rounds 0-19, Maj for 40-59, Parity otherwise. */
static uint32_t ssmb__ws_sha1_f(int t, uint32_t b, uint32_t c, uint32_t d) {
    if (t < 20) return (b & c) | (~b & d);
    if (t >= 40 && t < 60) return (b & c) | (b & d) | (c & d);
    return b ^ c ^ d;
}

/* §6.1.2: one 64-byte block. */
static void ssmb__ws_sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    int t;
    for (t = 0; t < 16; t++) w[t] = ssmb__load_be32(p + 4 * t);
    for (t = 16; t < 80; t++) w[t] = ssmb__ws_rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    for (t = 0; t < 80; t++) {
        uint32_t tmp = ssmb__ws_rol(a, 5) + ssmb__ws_sha1_f(t, b, c, d) + e + ssmb__ws_sha1_k[t / 20] + w[t];
        e = d; d = c; c = ssmb__ws_rol(b, 30); b = a; a = tmp;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void ssmb__ws_sha1_init(ssmb__ws_sha1 *s) {
    s->h[0] = 0x67452301; s->h[1] = 0xefcdab89; s->h[2] = 0x98badcfe; s->h[3] = 0x10325476; s->h[4] = 0xc3d2e1f0;
    s->total = 0;
}

static void ssmb__ws_sha1_update(ssmb__ws_sha1 *s, const uint8_t *p, size_t n) {
    while (n > 0) {
        size_t used = (size_t)(s->total & 63), take = SSMB__MIN(64 - used, n);
        memcpy(s->block + used, p, take);
        s->total += take;
        p += take;
        n -= take;
        if (used + take == 64) ssmb__ws_sha1_block(s->h, s->block);
    }
}

static void ssmb__ws_sha1_final(ssmb__ws_sha1 *s, uint8_t out[20]) {
    static const uint8_t zeros[64] = {0};
    uint8_t tail = 0x80, len_be[8];
    uint64_t bits = s->total * 8;
    int i;
    /* §5.1.1: 0x80, zeros up to 56 mod 64, the bit length big-endian. */
    ssmb__store_be64(len_be, bits);
    ssmb__ws_sha1_update(s, &tail, 1);
    ssmb__ws_sha1_update(s, zeros, (size_t)((56 - (s->total & 63)) & 63));
    ssmb__ws_sha1_update(s, len_be, 8);
    for (i = 0; i < 5; i++) ssmb__store_be32(out + 4 * i, s->h[i]);
}

SSMB_APIDEF ssmb_result ssmb_ws_accept_key(const char *client_key_b64, size_t len, char out[29]) {
    ssmb__ws_sha1 s;
    uint8_t digest[20];
    if (!client_key_b64 && len) return SSMB_ERR_INVALID_ARG;
    ssmb__ws_sha1_init(&s);
    ssmb__ws_sha1_update(&s, (const uint8_t *)client_key_b64, len);
    ssmb__ws_sha1_update(&s, (const uint8_t *)SSMB_WS_GUID, sizeof SSMB_WS_GUID - 1);
    ssmb__ws_sha1_final(&s, digest);
    return ssmb_base64_encode(digest, 20, out, 29, NULL);
}

SSMB_APIDEF void ssmb_ws_client_key(const uint8_t random16[16], char out[25]) {
    (void)ssmb_base64_encode(random16, 16, out, 25, NULL);
}

/* ---- close payloads (RFC 6455 §5.5.1, §7.4) ------------------------------ */
SSMB_APIDEF int ssmb_ws_close_code_valid(uint32_t code) {
    /* §7.4.1 defines 1000-1011 (1004-1006 never on the wire); 1012-1014 are
       IANA registered since; 3000-4999 belong to libraries and applications. */
    if (code >= 1000 && code <= 1003) return 1;
    if (code >= 1007 && code <= 1014) return 1;
    return code >= 3000 && code <= 4999;
}

SSMB_APIDEF ssmb_result ssmb_ws_close_payload_build(uint32_t code, const char *reason, size_t reason_len,
                                                    uint8_t out[SSMB_WS_MAX_CONTROL_PAYLOAD], size_t *out_len) {
    if (reason_len && !reason) return SSMB_ERR_INVALID_ARG;
    if (code == 0) {
        *out_len = 0;
        return reason_len ? SSMB_ERR_INVALID_ARG : SSMB_OK;
    }
    if (!ssmb_ws_close_code_valid(code) || reason_len > SSMB_WS_MAX_CONTROL_PAYLOAD - 2) return SSMB_ERR_INVALID_ARG;
    if (!ssmb__ws_utf8_valid((const uint8_t *)reason, reason_len)) return SSMB_ERR_INVALID_ARG;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (reason_len) memcpy(out + 2, reason, reason_len);
    *out_len = 2 + reason_len;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_ws_close_payload_parse(const uint8_t *payload, size_t len, uint32_t *code,
                                                    ssmb_str *reason) {
    uint32_t c;
    reason->ptr = "";
    reason->len = 0;
    if (len == 0) { /* §7.1.5: no status code in the frame */
        *code = SSMB_WS_CLOSE_NO_STATUS;
        return SSMB_OK;
    }
    if (len == 1 || len > SSMB_WS_MAX_CONTROL_PAYLOAD) return SSMB_ERR_WS_PROTOCOL;
    c = (uint32_t)payload[0] << 8 | payload[1];
    if (!ssmb_ws_close_code_valid(c)) return SSMB_ERR_WS_PROTOCOL;
    /* §5.5.1 / §8.1: the reason is UTF-8. */
    if (!ssmb__ws_utf8_valid(payload + 2, len - 2)) return SSMB_ERR_MALFORMED;
    *code = c;
    reason->ptr = (const char *)payload + 2;
    reason->len = len - 2;
    return SSMB_OK;
}

/* ---- the message reader ---------------------------------------------------
   States: HEADER gathers up to 14 header bytes in r->header; DATA hands out
   text/binary payload as views into the input; CONTROL gathers a control
   payload (<= 125 bytes) in r->control and hands it out whole; CLOSED after
   a close frame went out. Errors are sticky in r->error. */
enum { SSMB__WS_HEADER = 0, SSMB__WS_DATA = 1, SSMB__WS_CONTROL = 2, SSMB__WS_CLOSED = 3 };

SSMB_APIDEF void ssmb_ws_reader_init(ssmb_ws_reader *r, uint32_t flags, uint64_t max_message_size) {
    memset(r, 0, sizeof *r);
    r->flags = flags;
    r->max_message_size = max_message_size;
}

static ssmb_result ssmb__ws_fail(ssmb_ws_reader *r, ssmb_result rc, uint32_t close_code) {
    r->error = (int32_t)rc;
    r->close_code = close_code;
    return rc;
}

/* The rules the first two header bytes decide (RFC 6455 §5.2-§5.5). */
static ssmb_result ssmb__ws_check_start(ssmb_ws_reader *r, uint8_t byte0, uint8_t byte1) {
    uint32_t op = byte0 & 0x0fu, len7 = byte1 & 0x7fu;
    int fin = byte0 >> 7, masked = byte1 >> 7, from_client = (r->flags & SSMB_WS_READ_FROM_CLIENT) != 0;
    if (byte0 & 0x70) return SSMB_ERR_WS_PROTOCOL;               /* §5.2: RSV without an extension */
    if (!ssmb__ws_opcode_known(op)) return SSMB_ERR_WS_PROTOCOL; /* §5.2: reserved opcode */
    if (masked != from_client) return SSMB_ERR_WS_PROTOCOL;      /* §5.1: clients mask, servers do not */
    if (ssmb__ws_is_control(op)) {                               /* §5.5 */
        if (!fin || len7 > SSMB_WS_MAX_CONTROL_PAYLOAD) return SSMB_ERR_WS_PROTOCOL;
        if (op == SSMB_WS_CLOSE && len7 == 1) return SSMB_ERR_WS_PROTOCOL; /* §5.5.1: code is 2 bytes */
        return SSMB_OK;
    }
    /* §5.4: a continuation needs an open message, a new message needs none. */
    if ((op == SSMB_WS_CONTINUATION) != (r->message_opcode != 0)) return SSMB_ERR_WS_PROTOCOL;
    return SSMB_OK;
}

/* The whole header is in r->frame: apply the size limit, enter the frame. */
static ssmb_result ssmb__ws_begin_frame(ssmb_ws_reader *r) {
    const ssmb_ws_frame_header *f = &r->frame;
    r->header_have = 0;
    r->frame_done = 0;
    if (ssmb__ws_is_control(f->opcode)) {
        r->control_have = 0;
        r->state = SSMB__WS_CONTROL;
        return SSMB_OK;
    }
    if (f->opcode != SSMB_WS_CONTINUATION) {
        r->message_opcode = f->opcode;
        r->message_size = 0;
        r->utf8_state = 0;
    }
    if (r->max_message_size && f->payload_len > r->max_message_size - r->message_size)
        return ssmb__ws_fail(r, SSMB_ERR_LIMIT, SSMB_WS_CLOSE_TOO_BIG);
    r->message_size += f->payload_len;
    r->state = SSMB__WS_DATA;
    return SSMB_OK;
}

/* Copies input into r->header until it holds want bytes or the input ends. */
static void ssmb__ws_gather_header(ssmb_ws_reader *r, size_t want, const uint8_t **in, size_t *len, size_t *used) {
    size_t take = SSMB__MIN(want - r->header_have, *len);
    memcpy(r->header + r->header_have, *in, take);
    r->header_have = (uint8_t)(r->header_have + take);
    *in += take;
    *len -= take;
    *used += take;
}

/* Gathers header bytes; SSMB_OK once the frame has begun. The rules that
   the first two bytes decide fail before the rest of the header arrives. */
static ssmb_result ssmb__ws_read_header(ssmb_ws_reader *r, const uint8_t *in, size_t len, size_t *used) {
    ssmb_result rc;
    if (r->header_have < 2) {
        ssmb__ws_gather_header(r, 2, &in, &len, used);
        if (r->header_have < 2) return SSMB_AGAIN;
        if (ssmb__ws_check_start(r, r->header[0], r->header[1]) != SSMB_OK)
            return ssmb__ws_fail(r, SSMB_ERR_WS_PROTOCOL, SSMB_WS_CLOSE_PROTOCOL_ERROR);
    }
    ssmb__ws_gather_header(r, ssmb__ws_header_size(r->header[1]), &in, &len, used);
    rc = ssmb_ws_frame_header_parse(r->header, r->header_have, &r->frame);
    if (rc < 0) return ssmb__ws_fail(r, SSMB_ERR_WS_PROTOCOL, SSMB_WS_CLOSE_PROTOCOL_ERROR);
    if (rc == SSMB_AGAIN) return SSMB_AGAIN;
    return ssmb__ws_begin_frame(r);
}

/* Hands out the next text/binary piece, unmasked in place. */
static ssmb_result ssmb__ws_read_data(ssmb_ws_reader *r, uint8_t *in, size_t len, size_t *used, ssmb_ws_piece *piece) {
    ssmb_ws_frame_header *f = &r->frame;
    uint64_t left = f->payload_len - r->frame_done;
    size_t take = left < len ? (size_t)left : len;
    int message_ends;
    if (take == 0 && left > 0) return SSMB_AGAIN;
    if (f->masked) ssmb__ws_xor(in, in, take, f->mask_key, (size_t)(r->frame_done & 3));
    message_ends = f->fin && take == left;
    if (r->message_opcode == SSMB_WS_TEXT) { /* §8.1: text is UTF-8, also across fragments */
        if (ssmb__ws_utf8_feed(&r->utf8_state, in, take) != 0 || (message_ends && r->utf8_state != 0))
            return ssmb__ws_fail(r, SSMB_ERR_WS_PROTOCOL, SSMB_WS_CLOSE_INVALID_DATA);
    }
    piece->data = in;
    piece->len = take;
    piece->opcode = r->message_opcode;
    if (f->opcode != SSMB_WS_CONTINUATION && r->frame_done == 0) piece->flags |= SSMB_WS_MESSAGE_START;
    if (message_ends) piece->flags |= SSMB_WS_MESSAGE_END;
    r->frame_done += take;
    *used += take;
    if (r->frame_done == f->payload_len) r->state = SSMB__WS_HEADER;
    if (message_ends) r->message_opcode = 0;
    return SSMB_OK;
}

/* Gathers a control payload; hands it out whole. */
static ssmb_result ssmb__ws_read_control(ssmb_ws_reader *r, const uint8_t *in, size_t len, size_t *used,
                                         ssmb_ws_piece *piece) {
    ssmb_ws_frame_header *f = &r->frame;
    size_t have = r->control_have, take = SSMB__MIN((size_t)f->payload_len - have, len);
    ssmb_result rc;
    if (f->masked) ssmb__ws_xor(r->control + have, in, take, f->mask_key, have);
    else memcpy(r->control + have, in, take);
    r->control_have = (uint8_t)(have + take);
    *used += take;
    if (r->control_have < f->payload_len) return SSMB_AGAIN;
    piece->data = r->control;
    piece->len = r->control_have;
    piece->opcode = f->opcode;
    piece->flags = SSMB_WS_MESSAGE_START | SSMB_WS_MESSAGE_END;
    r->state = SSMB__WS_HEADER;
    if (f->opcode != SSMB_WS_CLOSE) return SSMB_OK;
    rc = ssmb_ws_close_payload_parse(r->control, r->control_have, &piece->close_code, &piece->close_reason);
    if (rc == SSMB_ERR_MALFORMED) return ssmb__ws_fail(r, SSMB_ERR_WS_PROTOCOL, SSMB_WS_CLOSE_INVALID_DATA);
    if (rc != SSMB_OK) return ssmb__ws_fail(r, SSMB_ERR_WS_PROTOCOL, SSMB_WS_CLOSE_PROTOCOL_ERROR);
    r->state = SSMB__WS_CLOSED;
    return SSMB_OK;
}

static void ssmb__ws_piece_clear(ssmb_ws_piece *piece) {
    memset(piece, 0, sizeof *piece);
    piece->close_reason.ptr = "";
}

SSMB_APIDEF ssmb_result ssmb_ws_read(ssmb_ws_reader *r, uint8_t *in, size_t len, size_t *consumed,
                                     ssmb_ws_piece *piece) {
    size_t used = 0;
    ssmb_result rc;
    ssmb__ws_piece_clear(piece);
    *consumed = 0;
    if (r->error) return (ssmb_result)r->error;
    if (r->state == SSMB__WS_CLOSED) return SSMB_CLOSED;
    /* With no input nothing can be pending: an empty frame goes out in the
       call that completes its header. */
    if (len == 0) return SSMB_AGAIN;
    for (;;) {
        if (r->state == SSMB__WS_HEADER) {
            rc = ssmb__ws_read_header(r, in + used, len - used, &used);
            if (rc == SSMB_OK) continue;
        } else if (r->state == SSMB__WS_DATA) {
            rc = ssmb__ws_read_data(r, in + used, len - used, &used, piece);
            /* an empty fragment in the middle of a message says nothing */
            if (rc == SSMB_OK && piece->len == 0 && piece->flags == 0) {
                ssmb__ws_piece_clear(piece);
                continue;
            }
        } else {
            rc = ssmb__ws_read_control(r, in + used, len - used, &used, piece);
        }
        break;
    }
    *consumed = used;
    return rc;
}

// >>msg
/* Header field offsets (PROTOCOL.md §2.1); all integers big-endian. */
enum {
    SSMB__MSG_OFF_HEADER_LENGTH = 0,
    SSMB__MSG_OFF_TYPE = 4,
    SSMB__MSG_OFF_SCHEMA_VERSION = 36,
    SSMB__MSG_OFF_CREATED_DATE = 40,
    SSMB__MSG_OFF_SEQUENCE = 48,
    SSMB__MSG_OFF_FLAGS = 56,
    SSMB__MSG_OFF_MESSAGE_ID = 64,
    SSMB__MSG_OFF_DIGEST = 80,
    SSMB__MSG_OFF_PAYLOAD_TYPE = 112,
    SSMB__MSG_OFF_PAYLOAD_LENGTH = 116
};

static uint64_t ssmb__load_be64(const uint8_t *p) {
    return ((uint64_t)ssmb__load_be32(p) << 32) | ssmb__load_be32(p + 4);
}

/* Two's complement without relying on implementation-defined conversion. */
static int64_t ssmb__u64_to_i64(uint64_t u) {
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

SSMB_APIDEF ssmb_result ssmb_msg_frame_size(size_t payload_size, size_t *out) {
    if (!out) return SSMB_ERR_INVALID_ARG;
    if ((uint64_t)payload_size > 0xffffffffu) return SSMB_ERR_OVERFLOW; /* PayloadLength is 32 bits */
    return ssmb_size_add(SSMB_MSG_HEADER_SIZE, payload_size, out);
}

/* What every encoder refuses: a MessageType that is empty or longer than
   its 32-byte field, a missing payload, a payload PayloadLength cannot hold. */
static ssmb_result ssmb__msg_check(const ssmb_msg *m) {
    if (!m || !m->type.ptr || m->type.len == 0 || m->type.len > SSMB_MSG_TYPE_MAX) return SSMB_ERR_INVALID_ARG;
    if (!m->payload && m->payload_size) return SSMB_ERR_INVALID_ARG;
    if ((uint64_t)m->payload_size > 0xffffffffu) return SSMB_ERR_OVERFLOW;
    return SSMB_OK;
}

/* The 120-byte header but for its digest (PROTOCOL.md §2.5): HeaderLength
   116, the type padded with spaces. */
static void ssmb__msg_write_fields(const ssmb_msg *m, uint8_t *out) {
    ssmb__store_be32(out + SSMB__MSG_OFF_HEADER_LENGTH, SSMB_MSG_HEADER_LENGTH);
    memset(out + SSMB__MSG_OFF_TYPE, ' ', SSMB_MSG_TYPE_MAX);
    memcpy(out + SSMB__MSG_OFF_TYPE, m->type.ptr, m->type.len);
    ssmb__store_be32(out + SSMB__MSG_OFF_SCHEMA_VERSION, m->schema_version);
    ssmb__store_be64(out + SSMB__MSG_OFF_CREATED_DATE, m->created_date_ms);
    ssmb__store_be64(out + SSMB__MSG_OFF_SEQUENCE, (uint64_t)m->sequence_number);
    ssmb__store_be64(out + SSMB__MSG_OFF_FLAGS, m->flags);
    ssmb_uuid_to_wire(&m->message_id, out + SSMB__MSG_OFF_MESSAGE_ID);
    ssmb__store_be32(out + SSMB__MSG_OFF_PAYLOAD_TYPE, m->payload_type);
    ssmb__store_be32(out + SSMB__MSG_OFF_PAYLOAD_LENGTH, (uint32_t)m->payload_size);
}

/* The whole header for the payload bytes at payload: digest = SHA-256(payload). */
static void ssmb__msg_write_header(const ssmb_msg *m, const uint8_t *payload, uint8_t *out) {
    ssmb__msg_write_fields(m, out);
    ssmb_sha256(payload, m->payload_size, out + SSMB__MSG_OFF_DIGEST);
}

SSMB_APIDEF ssmb_result ssmb_msg_encode_header(const ssmb_msg *m, uint8_t out[SSMB_MSG_HEADER_SIZE]) {
    ssmb_result r = ssmb__msg_check(m);
    if (r != SSMB_OK) return r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    ssmb__msg_write_header(m, m->payload, out);
    return SSMB_OK;
}

/* The payload is copied first and hashed where it landed, so a payload
   that already sits in out (anywhere) is encoded correctly. */
SSMB_APIDEF ssmb_result ssmb_msg_encode(const ssmb_msg *m, uint8_t *out, size_t cap, size_t *out_len) {
    size_t need = 0;
    ssmb_result r = ssmb__msg_check(m);
    if (r == SSMB_OK) r = ssmb_msg_frame_size(m->payload_size, &need);
    if (r != SSMB_OK) return r;
    if (out_len) *out_len = need;
    if (!out || cap < need) return SSMB_ERR_BUFFER_TOO_SMALL;
    if (m->payload_size && m->payload != out + SSMB_MSG_HEADER_SIZE)
        memmove(out + SSMB_MSG_HEADER_SIZE, m->payload, m->payload_size);
    ssmb__msg_write_header(m, out + SSMB_MSG_HEADER_SIZE, out);
    return SSMB_OK;
}

/* \t \n \v \f \r and space: the ASCII part of Go's strings.TrimSpace. */
static int ssmb__msg_is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* PROTOCOL.md §2.3 step 1: NULs off both ends, then whitespace off both
   ends (so a NUL inside spaces stays, as in the reference). */
static ssmb_str ssmb__msg_trim_type(const uint8_t *field) {
    size_t b = 0, e = SSMB_MSG_TYPE_MAX;
    ssmb_str s;
    while (b < e && field[b] == 0) b++;
    while (e > b && field[e - 1] == 0) e--;
    while (b < e && ssmb__msg_is_space(field[b])) b++;
    while (e > b && ssmb__msg_is_space(field[e - 1])) e--;
    s.ptr = (const char *)field + b;
    s.len = e - b;
    return s;
}

/* Every header field at its fixed offset; frame holds at least 120 bytes. */
static void ssmb__msg_read_fields(const uint8_t *frame, size_t len, ssmb_msg *m) {
    m->header_length = ssmb__load_be32(frame + SSMB__MSG_OFF_HEADER_LENGTH);
    m->type = ssmb__msg_trim_type(frame + SSMB__MSG_OFF_TYPE);
    m->schema_version = ssmb__load_be32(frame + SSMB__MSG_OFF_SCHEMA_VERSION);
    m->created_date_ms = ssmb__load_be64(frame + SSMB__MSG_OFF_CREATED_DATE);
    m->sequence_number = ssmb__u64_to_i64(ssmb__load_be64(frame + SSMB__MSG_OFF_SEQUENCE));
    m->flags = ssmb__load_be64(frame + SSMB__MSG_OFF_FLAGS);
    ssmb_uuid_from_wire(frame + SSMB__MSG_OFF_MESSAGE_ID, &m->message_id);
    memcpy(m->payload_digest, frame + SSMB__MSG_OFF_DIGEST, 32);
    m->payload_type = ssmb__load_be32(frame + SSMB__MSG_OFF_PAYLOAD_TYPE);
    m->payload_length = ssmb__load_be32(frame + SSMB__MSG_OFF_PAYLOAD_LENGTH);
    m->payload = frame + SSMB_MSG_HEADER_SIZE;
    m->payload_size = len - SSMB_MSG_HEADER_SIZE;
}

/* Deliberately stricter than the reference reader, which takes the payload
   from HeaderLength + 4 to the end of the frame whatever HeaderLength and
   PayloadLength say (PROTOCOL.md §2.3): here both must describe the frame
   exactly. Every frame in the shared vectors does. *out is written only on
   success. */
SSMB_APIDEF ssmb_result ssmb_msg_decode(const uint8_t *frame, size_t len, ssmb_msg *out) {
    ssmb_msg m;
    if (!out || (!frame && len)) return SSMB_ERR_INVALID_ARG;
    if (len < SSMB_MSG_HEADER_SIZE) return SSMB_ERR_TRUNCATED;
    if (ssmb__load_be32(frame + SSMB__MSG_OFF_HEADER_LENGTH) != SSMB_MSG_HEADER_LENGTH) return SSMB_ERR_SSM_PROTOCOL;
    if ((uint64_t)ssmb__load_be32(frame + SSMB__MSG_OFF_PAYLOAD_LENGTH) != (uint64_t)(len - SSMB_MSG_HEADER_SIZE))
        return SSMB_ERR_SSM_PROTOCOL;
    ssmb__msg_read_fields(frame, len, &m);
    *out = m;
    return SSMB_OK;
}

SSMB_APIDEF int ssmb_msg_type_is(const ssmb_msg *m, const char *type) {
    return m && type && ssmb_str_eq(m->type, type);
}

/* PROTOCOL.md §2.4, in the reference's order. The digest is checked when
   either length is non-zero (a decoded frame has both equal). */
SSMB_APIDEF ssmb_result ssmb_msg_validate(const ssmb_msg *m) {
    uint8_t digest[32];
    if (!m || (!m->type.ptr && m->type.len)) return SSMB_ERR_INVALID_ARG;
    if (ssmb_msg_type_is(m, SSMB_MSG_START_PUBLICATION) || ssmb_msg_type_is(m, SSMB_MSG_PAUSE_PUBLICATION))
        return SSMB_OK; /* rule 0: no further check at all */
    if (m->header_length == 0 || m->type.len == 0 || m->created_date_ms == 0) return SSMB_ERR_SSM_PROTOCOL;
    if (m->payload_length == 0 && m->payload_size == 0) return SSMB_OK;
    if (!m->payload && m->payload_size) return SSMB_ERR_INVALID_ARG;
    ssmb_sha256(m->payload, m->payload_size, digest);
    return memcmp(digest, m->payload_digest, 32) == 0 ? SSMB_OK : SSMB_ERR_DIGEST;
}

/* ---- payloads ----
   Payload JSON is parsed with its tokens on the stack. The largest payload
   the protocol defines (a HandshakeRequest with port properties and KMS)
   needs about 30 tokens; a payload needing more than SSMB__PAYLOAD_TOKENS
   gets SSMB_ERR_LIMIT. */
#define SSMB__PAYLOAD_TOKENS 128

/* Parses a payload whose root must be an object. */
static ssmb_result ssmb__payload_open(ssmb_json *doc, ssmb_json_token *tokens, const void *json, size_t len) {
    ssmb_result r;
    if (!json && len) return SSMB_ERR_INVALID_ARG;
    r = ssmb_json_parse(doc, (const char *)json, len, tokens, SSMB__PAYLOAD_TOKENS);
    if (r == SSMB_OK && ssmb_json_kind(doc, 0) != SSMB_JSON_OBJECT) r = SSMB_ERR_JSON;
    return r;
}

/* A UUID in a JSON string (escapes allowed); SSMB_ERR_MALFORMED unless it
   is the canonical 36-character form. */
static ssmb_result ssmb__json_str_uuid(ssmb_str raw, ssmb_uuid *out) {
    char text[37];
    size_t n = 0;
    if (ssmb_json_unescape(raw, text, sizeof text, &n) != SSMB_OK) return SSMB_ERR_MALFORMED;
    return ssmb_uuid_parse(text, n, out);
}

/* §3.2: keys in Go's order, which the agent's struct also uses. */
SSMB_APIDEF ssmb_result ssmb_ack_build(const ssmb_ack *ack, char *out, size_t cap, size_t *out_len) {
    ssmb_json_writer w;
    char id[37];
    if (!ack) return SSMB_ERR_INVALID_ARG;
    ssmb_uuid_format(&ack->message_id, id);
    ssmb_json_writer_init(&w, out, cap);
    ssmb_json_writer_begin_object(&w);
    ssmb__jw_member_str(&w, "AcknowledgedMessageType", ack->message_type);
    ssmb__jw_member_str(&w, "AcknowledgedMessageId", ssmb_str_c(id));
    ssmb__jw_key(&w, "AcknowledgedMessageSequenceNumber");
    ssmb_json_writer_i64(&w, ack->sequence_number);
    ssmb__jw_key(&w, "IsSequentialMessage");
    ssmb_json_writer_bool(&w, ack->is_sequential);
    ssmb_json_writer_end_object(&w);
    return ssmb_json_writer_finish(&w, out_len);
}

/* All four keys are required (both Go senders always write them). */
SSMB_APIDEF ssmb_result ssmb_ack_parse(const void *json, size_t len, ssmb_ack *out) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    ssmb_ack a;
    ssmb_str id;
    ssmb_result r = out ? ssmb__payload_open(&doc, tokens, json, len) : SSMB_ERR_INVALID_ARG;
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "AcknowledgedMessageType", &a.message_type);
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "AcknowledgedMessageId", &id);
    if (r == SSMB_OK) r = ssmb__json_str_uuid(id, &a.message_id);
    if (r == SSMB_OK) r = ssmb__json_req_i64(&doc, 0, "AcknowledgedMessageSequenceNumber", &a.sequence_number);
    if (r == SSMB_OK) r = ssmb__json_req_bool(&doc, 0, "IsSequentialMessage", &a.is_sequential);
    if (r == SSMB_OK) *out = a;
    return r;
}

/* §4.2: MessageSchemaVersion is always "1.0"; Go's struct order. */
SSMB_APIDEF ssmb_result ssmb_open_data_channel_build(const ssmb_open_data_channel *in, char *out, size_t cap,
                                                     size_t *out_len) {
    ssmb_json_writer w;
    char request_id[37], client_id[37];
    if (!in) return SSMB_ERR_INVALID_ARG;
    ssmb_uuid_format(&in->request_id, request_id);
    ssmb_uuid_format(&in->client_id, client_id);
    ssmb_json_writer_init(&w, out, cap);
    ssmb_json_writer_begin_object(&w);
    ssmb__jw_member_str(&w, "MessageSchemaVersion", ssmb_str_c("1.0"));
    ssmb__jw_member_str(&w, "RequestId", ssmb_str_c(request_id));
    ssmb__jw_member_str(&w, "TokenValue", in->token_value);
    ssmb__jw_member_str(&w, "ClientId", ssmb_str_c(client_id));
    if (in->client_version.len) ssmb__jw_member_str(&w, "ClientVersion", in->client_version);
    ssmb_json_writer_end_object(&w);
    return ssmb_json_writer_finish(&w, out_len);
}

/* §5.2 SessionType parameters: Properties is kept as raw JSON, an object or
   null (empty view when absent). */
static ssmb_result ssmb__handshake_session_type(const ssmb_json *doc, int32_t params, ssmb_handshake_request *h) {
    int32_t props;
    ssmb_result r;
    if (ssmb_json_kind(doc, params) != SSMB_JSON_OBJECT) return SSMB_ERR_JSON;
    r = ssmb__json_req_str(doc, params, "SessionType", &h->session_type);
    if (r != SSMB_OK) return r;
    props = ssmb_json_find(doc, params, "Properties");
    if (props >= 0 && ssmb_json_kind(doc, props) != SSMB_JSON_OBJECT && !ssmb_json_is_null(doc, props))
        return SSMB_ERR_JSON;
    h->properties = props >= 0 ? ssmb_json_raw(doc, props) : ssmb__str_empty();
    h->has_session_type = 1;
    return SSMB_OK;
}

/* §5.2 / §6.6 KMSEncryption parameters: the key id, and a Challenge from
   agents since 3.3.808.0. */
static ssmb_result ssmb__handshake_kms(const ssmb_json *doc, int32_t params, ssmb_handshake_request *h) {
    ssmb_result r;
    if (ssmb_json_kind(doc, params) != SSMB_JSON_OBJECT) return SSMB_ERR_JSON;
    r = ssmb__json_req_str(doc, params, "KMSKeyId", &h->kms_key_id);
    if (r == SSMB_OK) r = ssmb__json_opt_str(doc, params, "Challenge", &h->kms_challenge);
    if (r == SSMB_OK) h->has_kms = 1;
    return r;
}

/* One RequestedClientActions entry; a repeated action overwrites the
   earlier one, an unknown one is only counted. */
static ssmb_result ssmb__handshake_action(const ssmb_json *doc, int32_t action, ssmb_handshake_request *h) {
    ssmb_str type;
    int32_t params;
    ssmb_result r;
    if (ssmb_json_kind(doc, action) != SSMB_JSON_OBJECT) return SSMB_ERR_JSON;
    r = ssmb__json_req_str(doc, action, "ActionType", &type);
    if (r != SSMB_OK) return r;
    params = ssmb_json_find(doc, action, "ActionParameters");
    if (ssmb_str_eq(type, "SessionType")) return ssmb__handshake_session_type(doc, params, h);
    if (ssmb_str_eq(type, "KMSEncryption")) return ssmb__handshake_kms(doc, params, h);
    h->unknown_actions++;
    return SSMB_OK;
}

static void ssmb__handshake_request_clear(ssmb_handshake_request *h) {
    memset(h, 0, sizeof *h);
    h->agent_version = h->session_type = h->properties = ssmb__str_empty();
    h->kms_key_id = h->kms_challenge = ssmb__str_empty();
}

/* AgentVersion and RequestedClientActions (an array, null taken as empty)
   are required. */
SSMB_APIDEF ssmb_result ssmb_handshake_request_parse(const void *json, size_t len, ssmb_handshake_request *out) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    ssmb_handshake_request h;
    int32_t actions, i, n = 0;
    ssmb_result r = out ? ssmb__payload_open(&doc, tokens, json, len) : SSMB_ERR_INVALID_ARG;
    if (r != SSMB_OK) return r;
    ssmb__handshake_request_clear(&h);
    r = ssmb__json_req_str(&doc, 0, "AgentVersion", &h.agent_version);
    actions = ssmb_json_find(&doc, 0, "RequestedClientActions");
    if (r == SSMB_OK && ssmb_json_kind(&doc, actions) == SSMB_JSON_ARRAY) n = ssmb_json_size(&doc, actions);
    else if (r == SSMB_OK && !ssmb_json_is_null(&doc, actions)) r = SSMB_ERR_JSON;
    for (i = 0; i < n && r == SSMB_OK; i++) r = ssmb__handshake_action(&doc, ssmb_json_at(&doc, actions, i), &h);
    if (r == SSMB_OK) *out = h;
    return r;
}

/* One ProcessedClientActions entry: all four keys always, ActionResult null
   and Error "" when unused, as Go writes them (§5.3). */
static void ssmb__jw_processed_action(ssmb_json_writer *w, const ssmb_processed_action *a) {
    ssmb_json_writer_begin_object(w);
    ssmb__jw_member_str(w, "ActionType", a->action_type);
    ssmb__jw_key(w, "ActionStatus");
    ssmb_json_writer_u64(w, a->status);
    ssmb__jw_key(w, "ActionResult");
    if (a->result_json.len) ssmb_json_writer_raw(w, a->result_json.ptr, a->result_json.len);
    else ssmb_json_writer_null(w);
    ssmb__jw_member_str(w, "Error", a->error);
    ssmb_json_writer_end_object(w);
}

/* §5.3: ProcessedClientActions is [] when empty (the reference starts from
   an empty slice), Errors is null when there are none (a nil slice). */
SSMB_APIDEF ssmb_result ssmb_handshake_response_build(const ssmb_handshake_response *in, char *out, size_t cap,
                                                      size_t *out_len) {
    ssmb_json_writer w;
    size_t i;
    if (!in || (!in->actions && in->action_count) || (!in->errors && in->error_count)) return SSMB_ERR_INVALID_ARG;
    ssmb_json_writer_init(&w, out, cap);
    ssmb_json_writer_begin_object(&w);
    ssmb__jw_member_str(&w, "ClientVersion", in->client_version);
    ssmb__jw_key(&w, "ProcessedClientActions");
    ssmb_json_writer_begin_array(&w);
    for (i = 0; i < in->action_count; i++) ssmb__jw_processed_action(&w, &in->actions[i]);
    ssmb_json_writer_end_array(&w);
    ssmb__jw_key(&w, "Errors");
    if (in->error_count == 0) ssmb_json_writer_null(&w);
    else ssmb_json_writer_begin_array(&w);
    for (i = 0; i < in->error_count; i++) ssmb_json_writer_string(&w, in->errors[i].ptr, in->errors[i].len);
    if (in->error_count) ssmb_json_writer_end_array(&w);
    ssmb_json_writer_end_object(&w);
    return ssmb_json_writer_finish(&w, out_len);
}

/* HandshakeTimeToComplete (nanoseconds) is required; CustomerMessage may be
   absent or null (then empty). */
SSMB_APIDEF ssmb_result ssmb_handshake_complete_parse(const void *json, size_t len, ssmb_handshake_complete *out) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    ssmb_handshake_complete c;
    ssmb_result r = out ? ssmb__payload_open(&doc, tokens, json, len) : SSMB_ERR_INVALID_ARG;
    if (r == SSMB_OK) r = ssmb__json_req_i64(&doc, 0, "HandshakeTimeToComplete", &c.time_to_complete_ns);
    if (r == SSMB_OK) r = ssmb__json_opt_str(&doc, 0, "CustomerMessage", &c.customer_message);
    if (r == SSMB_OK) *out = c;
    return r;
}

/* §6.5: Challenge is a Go []byte, so standard padded base64 in a string.
   Base64 never needs a JSON escape, so the text is written directly. */
SSMB_APIDEF ssmb_result ssmb_challenge_build(const uint8_t *bytes, size_t n, char *out, size_t cap,
                                             size_t *out_len) {
    static const char head[] = "{\"Challenge\":\"", tail[] = "\"}";
    size_t b64 = ssmb_base64_encoded_len(n), need;
    if (!bytes && n) return SSMB_ERR_INVALID_ARG;
    if ((n && b64 == 0) || ssmb_size_add(b64, sizeof head - 1 + sizeof tail - 1, &need) != SSMB_OK)
        return SSMB_ERR_OVERFLOW;
    if (out_len) *out_len = need;
    if (!out || cap < need) return SSMB_ERR_BUFFER_TOO_SMALL;
    memcpy(out, head, sizeof head - 1);
    /* cap - head >= b64 + 2 here; the NUL base64 adds lands where tail goes. */
    if (n) (void)ssmb_base64_encode(bytes, n, out + sizeof head - 1, cap - (sizeof head - 1), NULL);
    memcpy(out + sizeof head - 1 + b64, tail, sizeof tail - 1);
    if (need < cap) out[need] = '\0';
    return SSMB_OK;
}

/* Challenge is required; the base64 must be strict and escape-free
   (SSMB_ERR_MALFORMED otherwise). */
SSMB_APIDEF ssmb_result ssmb_challenge_parse(const void *json, size_t len, uint8_t *out, size_t cap,
                                             size_t *out_len) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    ssmb_str b64;
    ssmb_result r = ssmb__payload_open(&doc, tokens, json, len);
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "Challenge", &b64);
    if (r != SSMB_OK) return r;
    if (memchr(b64.ptr, '\\', b64.len)) return SSMB_ERR_MALFORMED;
    return ssmb_base64_decode(b64.ptr, b64.len, out, cap, out_len);
}

/* §7.2: lower-case keys, cols first. */
SSMB_APIDEF ssmb_result ssmb_terminal_size_build(uint32_t cols, uint32_t rows, char *out, size_t cap,
                                                 size_t *out_len) {
    ssmb_json_writer w;
    ssmb_json_writer_init(&w, out, cap);
    ssmb_json_writer_begin_object(&w);
    ssmb__jw_key(&w, "cols");
    ssmb_json_writer_u64(&w, cols);
    ssmb__jw_key(&w, "rows");
    ssmb_json_writer_u64(&w, rows);
    ssmb_json_writer_end_object(&w);
    return ssmb_json_writer_finish(&w, out_len);
}

SSMB_APIDEF void ssmb_flag_encode(uint32_t flag, uint8_t out[4]) { ssmb__store_be32(out, flag); }

/* §2.9: exactly four bytes; any other length is SSMB_ERR_SSM_PROTOCOL. */
SSMB_APIDEF ssmb_result ssmb_flag_decode(const void *payload, size_t len, uint32_t *flag) {
    if (!flag || (!payload && len)) return SSMB_ERR_INVALID_ARG;
    if (len != 4) return SSMB_ERR_SSM_PROTOCOL;
    *flag = ssmb__load_be32((const uint8_t *)payload);
    return SSMB_OK;
}

/* §8.2: MessageId, CreatedDate (a string), SessionId, MessageType and
   SchemaVersion (a number) are required; DestinationId and Output may be
   absent or null (then empty). */
SSMB_APIDEF ssmb_result ssmb_channel_closed_parse(const void *json, size_t len, ssmb_channel_closed *out) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    ssmb_channel_closed c;
    ssmb_result r = out ? ssmb__payload_open(&doc, tokens, json, len) : SSMB_ERR_INVALID_ARG;
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "MessageId", &c.message_id);
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "CreatedDate", &c.created_date);
    if (r == SSMB_OK) r = ssmb__json_opt_str(&doc, 0, "DestinationId", &c.destination_id);
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "SessionId", &c.session_id);
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "MessageType", &c.message_type);
    if (r == SSMB_OK) r = ssmb__json_req_i64(&doc, 0, "SchemaVersion", &c.schema_version);
    if (r == SSMB_OK) r = ssmb__json_opt_str(&doc, 0, "Output", &c.output);
    if (r == SSMB_OK) *out = c;
    return r;
}

/* Decimal digits s[i..end) into *v, saturating above 2^32 (overflow shows
   as *v > 0xffffffff). 0 when empty or not all digits. */
static int ssmb__exit_code_digits(const char *s, size_t i, size_t end, uint64_t *v) {
    if (i == end) return 0;
    for (*v = 0; i < end; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return 0;
        if (*v <= 0xffffffffu) *v = *v * 10 + d;
    }
    return 1;
}

/* §7.2: the agent writes "EXIT_CODE: " and strconv.Itoa of the status,
   negative when the command died by a signal. Tolerated besides: any run of
   spaces or tabs after the colon, trailing whitespace (CR, LF, ...), and
   Windows DWORD statuses 2^31..2^32-1, returned as the same 32 bits
   (3221225477 gives -1073741819). Other text: SSMB_ERR_SSM_PROTOCOL; a
   number outside -2^31..2^32-1: SSMB_ERR_OVERFLOW. */
SSMB_APIDEF ssmb_result ssmb_exit_code_parse(const void *payload, size_t len, int32_t *code) {
    static const char prefix[] = "EXIT_CODE:";
    const char *s = (const char *)payload;
    size_t i = sizeof prefix - 1, end = len;
    uint64_t v = 0;
    int neg;
    if (!code || (!payload && len)) return SSMB_ERR_INVALID_ARG;
    if (len < i || memcmp(s, prefix, i) != 0) return SSMB_ERR_SSM_PROTOCOL;
    while (end > i && ssmb__msg_is_space((uint8_t)s[end - 1])) end--;
    while (i < end && (s[i] == ' ' || s[i] == '\t')) i++;
    neg = i < end && s[i] == '-';
    if (!ssmb__exit_code_digits(s, i + (size_t)neg, end, &v)) return SSMB_ERR_SSM_PROTOCOL;
    if (v > (neg ? 0x80000000u : 0xffffffffu)) return SSMB_ERR_OVERFLOW;
    if (neg) *code = v == 0x80000000u ? INT32_MIN : -(int32_t)v;
    else *code = v > (uint64_t)INT32_MAX ? (int32_t)((int64_t)v - 0x100000000) : (int32_t)v;
    return SSMB_OK;
}

// >>channel
/* The Session Manager data channel (PROTOCOL.md §3, §5, §8), sans-I/O, for
   the client and the agent end. One allocation holds the struct, the send
   ring (encoded frames awaiting their first send or their ack), the reorder
   store (payloads that arrived ahead of order) and the ack queue. */

/* Payload room a handshake message may use: a HandshakeResponse of
   SSMB__CHAN_MAX_ACTIONS actions with names and errors cut to size,
   nothing to escape and a KMS ActionResult of the longest blob taken
   (about 1.5 KB) stays well under it. */
#define SSMB__CHAN_CONTROL_MAX 3072u
#define SSMB__CHAN_ACK_FRAME_MAX 384u       /* an acknowledge frame: 120 + about 200 bytes of JSON */
#define SSMB__CHAN_EVENTS 8u                /* events waiting for ssmb_channel_poll */
#define SSMB__CHAN_RANDOM_POOL 256u         /* random bytes drawn at once for MessageIds */
#define SSMB__CHAN_REORDER_WINDOW 4096      /* messages further ahead than this are not kept */
#define SSMB__CHAN_MAX_ACTIONS 4u           /* handshake actions answered (agents send 1 or 2) */
#define SSMB__CHAN_ERROR_MAX 160u           /* one action's error text */
#define SSMB__CHAN_HANDSHAKE_MS 15000u      /* agent: wait for the HandshakeResponse, and with KMS
                                               for the EncChallengeResponse (§5.5) */
#define SSMB__CHAN_KMS_ID_MAX 511u          /* longest KMSKeyId kept (an alias ARN is about 310) */
#define SSMB__CHAN_KMS_CHALLENGE_MAX 127u   /* longest §6.6 Challenge text kept (agents send 24) */
#define SSMB__CHAN_KMS_RESULT_MAX 1500u     /* the KMSEncryption ActionResult with the longest blob */
#define SSMB__CHAN_MAX_QUEUE 65536u         /* most messages a buffer may be sized for */
#define SSMB__CHAN_MAX_SAMPLE_NS ((int64_t)3600 * 1000000000) /* RTT samples are capped at an hour */

/* Send ring entry states. Unsent entries are always a suffix of the ring. */
enum { SSMB__CHAN_UNSENT = 0, SSMB__CHAN_INFLIGHT = 1, SSMB__CHAN_RESEND = 2, SSMB__CHAN_ACKED = 3 };
/* KMS (§6): nothing asked or refused; an event waits for the host's KMS
   call; agent: the EncChallengeRequest is out; the keys are in use. */
enum { SSMB__CHAN_KMS_NONE = 0, SSMB__CHAN_KMS_WAIT_KEY = 1, SSMB__CHAN_KMS_CHALLENGE = 2, SSMB__CHAN_KMS_ON = 3 };
/* What an event's data points into (ev_borrowed). */
enum { SSMB__CHAN_EV_OWN = 0, SSMB__CHAN_EV_FRAME = 1, SSMB__CHAN_EV_PLAIN = 2 };
enum { SSMB__CHAN_IDLE = 0, SSMB__CHAN_OPEN = 1, SSMB__CHAN_OVER = 2 };
/* What ssmb_channel_next_frame handed out last. */
enum { SSMB__CHAN_CUR_NONE = 0, SSMB__CHAN_CUR_ACK = 1, SSMB__CHAN_CUR_ENTRY = 2 };

/* One sequenced outgoing message (its sequence number follows from its
   place in the ring). */
typedef struct ssmb__chan_entry {
    uint64_t sent_ms;       /* the latest transmission */
    uint32_t off, len;      /* the frame in send_bytes */
    uint32_t attempts;      /* retransmissions so far */
    uint32_t state;         /* SSMB__CHAN_UNSENT ... */
} ssmb__chan_entry;

/* An acknowledgement waiting to go out. */
typedef struct ssmb__chan_ack {
    int64_t seq;
    ssmb_uuid id;
} ssmb__chan_ack;

/* A payload that arrived ahead of order. */
typedef struct ssmb__chan_slot {
    int64_t seq;
    uint32_t off, len;      /* in reorder_bytes */
    uint32_t payload_type;
    uint32_t live;          /* 0: handled, its bytes wait to be packed away */
} ssmb__chan_slot;

/* The answers to one HandshakeRequest, in the request's order. */
typedef struct ssmb__chan_answer {
    ssmb_processed_action actions[SSMB__CHAN_MAX_ACTIONS];
    char names[SSMB__CHAN_MAX_ACTIONS][SSMB_CHANNEL_VERSION_MAX + 1];
    char errors[SSMB__CHAN_MAX_ACTIONS][SSMB__CHAN_ERROR_MAX];
    size_t count;
} ssmb__chan_answer;

/* The desc with its defaults filled in. */
typedef struct ssmb__chan_cfg {
    uint32_t role, payload_size, max_frame, max_attempts, check_digest;
    uint32_t send_msgs, reorder_msgs, ack_cap;
    uint32_t reorder_max_msgs;          /* the store may grow to these (>= the initial sizes) */
    size_t reorder_max_bytes;
    uint32_t kms;                       /* 1: this channel may encrypt (a KMS key may come) */
    uint32_t in_place;                  /* 1: incoming payloads are decrypted where they lie */
    size_t send_bytes, reorder_bytes, plain_bytes;
} ssmb__chan_cfg;

/* Where the parts sit inside the one allocation. */
typedef struct ssmb__chan_layout {
    size_t send_bytes, send, reorder, slots, acks, plain, total;
} ssmb__chan_layout;

struct ssmb_channel {
    size_t mem_size;                    /* the one allocation, for free_fn */
    ssmb_allocator alloc;
    ssmb_logger logger;
    ssmb_random_fn random_fn;
    void *random_user_data;
    ssmb_utc_fn utc_fn;
    void *utc_user_data;
    uint64_t start_epoch_ms;
    ssmb__chan_cfg cfg;

    uint32_t state;                     /* SSMB__CHAN_IDLE, _OPEN, _OVER */
    ssmb_result error;                  /* SSMB_OK while open; SSMB_CLOSED or the error after */
    int ready;                          /* READY queued: data may be sent */
    int paused;                         /* pause_publication seen (§8.1) */
    int handshake_seen;                 /* client: a HandshakeRequest arrived */
    int handshake_asked;                /* agent: a HandshakeRequest was queued */
    uint64_t now, epoch_ms, now_base;   /* CreatedDate = epoch_ms + (now - now_base) */
    uint64_t handshake_start;
    ssmb_uuid client_id;

    /* The send ring: entry i (0 <= i < send_count) is
       send[(send_front + i) % send_msgs] and carries sequence send_base + i.
       Entries [0, send_sent) went out at least once. */
    uint8_t *send_bytes;
    ssmb__chan_entry *send;
    uint32_t send_front, send_count, send_sent, resend_count;
    int64_t send_base;
    /* A frame sealed by ssmb_channel_send may wait for its digest until
       the next one comes, so that the two are hashed as a pair
       (ssmb_sha256_pair); ssmb_channel_next_frame computes a waiting one
       before it hands anything out. */
    int pair_digests;
    uint8_t *digest_waiting;            /* that frame, or NULL */
    /* Places given by ssmb_channel_send_places, not yet committed: the
       next at place_off, each place_stride bytes after the one before. */
    uint32_t place_left, place_off, place_stride, place_type;
    size_t place_cap;
    int place_enc;
    uint32_t cur_kind;                  /* SSMB__CHAN_CUR_*: the frame handed out */
    int64_t cur_seq;                    /* ... when it is an entry */

    /* Incoming: the next sequence number to handle, and the reorder store:
       slots in the order of their bytes, which are appended at reorder_used
       (<= reorder_cap). A handled slot is marked dead; dead bytes are packed
       away when room is needed. The store is the one inside the allocation,
       or a larger one of its own (grown, grown_size) while it needs it. */
    int64_t expected;
    uint8_t *reorder_bytes;
    ssmb__chan_slot *slots;
    uint32_t slot_count, slot_cap, dead_slots;
    size_t reorder_used, reorder_cap, reorder_dead;
    uint8_t *inline_reorder;
    ssmb__chan_slot *inline_slots;
    void *grown;
    size_t grown_size;
    int32_t held_slot;                  /* a slot an event still points into, or -1 */

    ssmb__chan_ack *acks;               /* ring: acks[(ack_front + i) % ack_cap] */
    uint32_t ack_front, ack_count;
    size_t ack_frame_len;               /* 0: ack_frame not built for acks[ack_front] */
    uint8_t ack_frame[SSMB__CHAN_ACK_FRAME_MAX];

    ssmb_channel_event events[SSMB__CHAN_EVENTS];
    uint8_t ev_borrowed[SSMB__CHAN_EVENTS];  /* SSMB__CHAN_EV_*: where its data points */
    uint32_t ev_front, ev_count, borrowed;
    uint32_t plain_held;                /* events whose data sits in plain (at most one) */
    int on_wire;                        /* handling a payload that sits in the caller's frame */
    int in_plain;                       /* handling a payload decrypted into plain */
    uint64_t hs_deadline;               /* agent: when waiting for the client ends (§5.5), or none */

    ssmb_rto rto;
    ssmb_channel_metrics m;
    uint8_t pool[SSMB__CHAN_RANDOM_POOL];
    size_t pool_used;                   /* invariant: <= SSMB__CHAN_RANDOM_POOL */

    /* Client: its own version and the agent's; agent: the other way round. */
    char client_version[SSMB_CHANNEL_VERSION_MAX + 1];
    char agent_version[SSMB_CHANNEL_VERSION_MAX + 1];
    char session_type[SSMB_CHANNEL_VERSION_MAX + 1];
    char properties[SSMB_CHANNEL_PROPERTIES_MAX + 1];
    char kms_key_id[SSMB__CHAN_KMS_ID_MAX + 1];
    char message[SSMB_CHANNEL_TEXT_MAX + 1];    /* CustomerMessage */
    char reason[SSMB_CHANNEL_TEXT_MAX + 1];     /* why the channel ended */

    /* KMS session encryption (§6). The keys are plain data in this block,
       wiped with it by destroy. */
    uint32_t kms_state;                 /* SSMB__CHAN_KMS_* */
    ssmb_kms_keys kms;
    ssmb_kms_nonce_counter nonces;      /* agent: its nonce counter (§6.3) */
    char kms_challenge[SSMB__CHAN_KMS_CHALLENGE_MAX + 1];  /* the §6.6 Challenge text */
    ssmb__chan_answer answer;           /* client: the HandshakeResponse waiting for the key */
    size_t kms_action;                  /* client: the KMSEncryption entry in answer */
    char kms_result[SSMB__CHAN_KMS_RESULT_MAX];            /* client: its ActionResult text */
    uint8_t kms_blob[SSMB_CHANNEL_KMS_BLOB_MAX];           /* agent: the client's CiphertextBlob */
    size_t kms_blob_len;
    uint8_t kms_secret[SSMB_KMS_CHALLENGE_SIZE];           /* agent: the challenge bytes (§6.5) */
    uint8_t *plain;                     /* decrypted incoming payloads: plain_bytes */
};

static void ssmb__chan_handle(ssmb_channel *ch, uint32_t type, const uint8_t *p, size_t n, int64_t seq);

/* ---- logging, text ---- */

#define SSMB__CHAN_LOG(ch, level, item, msg) \
    ssmb__log(&(ch)->logger, "ssmb.channel", (level), (item), (msg), (uint32_t)__LINE__)

/* Length of s[0..n) without a UTF-8 sequence cut short at its end. */
static size_t ssmb__chan_utf8_whole(const char *s, size_t n) {
    size_t i = n, tail = 0, need;
    unsigned char lead;
    while (i > 0 && tail < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        tail++;
    }
    if (i == 0) return n;
    lead = (unsigned char)s[i - 1];
    need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return tail + 1 >= need ? n : i - 1;
}

/* A raw JSON string value decoded into dst (cap bytes with the NUL), cut
   at a character boundary when it is too long; empty when undecodable. */
static void ssmb__chan_copy_json(char *dst, size_t cap, ssmb_str raw) {
    ssmb_str v = raw;
    size_t n = 0;
    int tries;
    if (v.len > cap - 1) v.len = cap - 1;
    for (tries = 0; tries < 12; tries++) { /* a cut may split an escape: back off */
        if (ssmb_json_unescape(v, dst, cap, &n) == SSMB_OK) {
            dst[v.len < raw.len ? ssmb__chan_utf8_whole(dst, n) : n] = '\0';
            return;
        }
        if (v.len == 0) break;
        v.len--;
    }
    dst[0] = '\0';
}

/* dst = a then b, cut to fit; bytes of b outside printable ASCII, quotes
   and backslashes become '?' (peer text echoed into our JSON stays valid
   UTF-8 and never grows when escaped). */
static void ssmb__chan_join(char *dst, size_t cap, const char *a, ssmb_str b) {
    size_t n = SSMB__MIN(strlen(a), cap - 1), i;
    memcpy(dst, a, n);
    for (i = 0; i < b.len && n < cap - 1; i++) {
        unsigned char c = (unsigned char)b.ptr[i];
        dst[n++] = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
    }
    dst[n] = '\0';
}

/* A C string of at most max printable ASCII characters (NULL is fine). */
static int ssmb__chan_ascii_ok(const char *s, size_t max) {
    size_t i;
    if (!s) return 1;
    for (i = 0; s[i]; i++)
        if (i >= max || (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) return 0;
    return 1;
}

static void ssmb__chan_copy_c(char *dst, size_t cap, const char *s) {
    size_t n = s ? SSMB__MIN(strlen(s), cap - 1) : 0;
    if (n) memcpy(dst, s, n);
    dst[n] = '\0';
}

/* ---- randomness and time ---- */

/* n (at most 16) fresh bytes from the pool; 0 when the source failed.
   The bytes are used once and wiped from the pool. */
static int ssmb__chan_draw(ssmb_channel *ch, uint8_t *out, size_t n) {
    if (ch->pool_used + n > SSMB__CHAN_RANDOM_POOL) {
        if (ch->random_fn(ch->pool, sizeof ch->pool, ch->random_user_data) != SSMB_OK) return 0;
        ch->pool_used = 0;
    }
    memcpy(out, ch->pool + ch->pool_used, n);
    ssmb__wipe(ch->pool + ch->pool_used, n);
    ch->pool_used += n;
    return 1;
}

/* A fresh version-4 MessageId from the pool; 0 when the source failed. */
static int ssmb__chan_uuid(ssmb_channel *ch, ssmb_uuid *out) {
    uint8_t b[16];
    if (!ssmb__chan_draw(ch, b, sizeof b)) return 0;
    ssmb_uuid_v4(b, out);
    return 1;
}

/* CreatedDate (§2.1): epoch milliseconds, never zero (§14 item 4). */
static uint64_t ssmb__chan_created(const ssmb_channel *ch) {
    return ch->epoch_ms + (ch->now > ch->now_base ? ch->now - ch->now_base : 0);
}

static uint64_t ssmb__chan_since(const ssmb_channel *ch, uint64_t t) { return ch->now > t ? ch->now - t : 0; }

/* ---- events ---- */

/* A cleared event at the back of the queue; NULL when full. The last place
   is kept for CLOSED, so the end is always reported. */
static ssmb_channel_event *ssmb__chan_push(ssmb_channel *ch, uint32_t type) {
    ssmb_channel_event *ev;
    uint32_t limit = type == SSMB_CHANNEL_EVENT_CLOSED ? SSMB__CHAN_EVENTS : SSMB__CHAN_EVENTS - 1;
    uint32_t at = (ch->ev_front + ch->ev_count) % SSMB__CHAN_EVENTS;
    int payload = type == SSMB_CHANNEL_EVENT_DATA || type == SSMB_CHANNEL_EVENT_EXIT_CODE;
    uint8_t where = !payload ? SSMB__CHAN_EV_OWN
                    : ch->in_plain ? SSMB__CHAN_EV_PLAIN
                    : ch->on_wire ? SSMB__CHAN_EV_FRAME
                                  : SSMB__CHAN_EV_OWN;
    if (ch->ev_count >= limit) return NULL;
    ch->ev_count++;
    ch->ev_borrowed[at] = where;
    ch->borrowed += where == SSMB__CHAN_EV_FRAME;
    ch->plain_held += where == SSMB__CHAN_EV_PLAIN;
    ev = &ch->events[at];
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->session_type = ev->properties = ev->agent_version = ssmb__str_empty();
    ev->client_version = ev->message = ev->kms_key_id = ev->kms_challenge = ssmb__str_empty();
    return ev;
}

/* The end: sticky result, a CLOSED event, nothing sent any more. */
static void ssmb__chan_close(ssmb_channel *ch, ssmb_result why, const char *reason, int terminate) {
    ssmb_channel_event *ev;
    if (ch->state == SSMB__CHAN_OVER) return;
    ch->state = SSMB__CHAN_OVER;
    ch->error = why;
    if (reason != ch->reason) ssmb__chan_copy_c(ch->reason, sizeof ch->reason, reason);
    ev = ssmb__chan_push(ch, SSMB_CHANNEL_EVENT_CLOSED);
    if (ev) {
        ev->result = why;
        ev->terminate_session = (uint32_t)terminate;
        ev->message = ssmb_str_c(ch->reason);
    }
    SSMB__CHAN_LOG(ch, why < 0 ? SSMB_LOG_WARN : SSMB_LOG_INFO, SSMB_LOGITEM_CHANNEL_CLOSED,
                   ch->reason[0] ? ch->reason : "channel closed (no reason given)");
}

/* Sending becomes possible: the session type is known (§5.1, §11). */
static void ssmb__chan_become_ready(ssmb_channel *ch) {
    ssmb_channel_event *ev;
    if (ch->ready) return;
    ch->ready = 1;
    ev = ssmb__chan_push(ch, SSMB_CHANNEL_EVENT_READY);
    if (!ev) return;
    ev->session_type = ssmb_str_c(ch->session_type);
    ev->properties = ssmb_str_c(ch->properties);
    ev->agent_version = ssmb_str_c(ch->agent_version);
    ev->message = ssmb_str_c(ch->message);
}

/* The peer's stream message type, and ours. */
static const char *ssmb__chan_peer_type(const ssmb_channel *ch) {
    return ch->cfg.role == SSMB_CHANNEL_CLIENT ? SSMB_MSG_OUTPUT_STREAM_DATA : SSMB_MSG_INPUT_STREAM_DATA;
}

static const char *ssmb__chan_own_type(const ssmb_channel *ch) {
    return ch->cfg.role == SSMB_CHANNEL_CLIENT ? SSMB_MSG_INPUT_STREAM_DATA : SSMB_MSG_OUTPUT_STREAM_DATA;
}

/* ---- the send ring ---- */

static ssmb__chan_entry *ssmb__chan_at(const ssmb_channel *ch, uint32_t i) {
    return &ch->send[(ch->send_front + i) % ch->cfg.send_msgs];
}

/* The entry of a sequence number, or NULL when it is not in the ring. */
static ssmb__chan_entry *ssmb__chan_entry_of(const ssmb_channel *ch, int64_t seq) {
    if (seq < ch->send_base || seq - ch->send_base >= (int64_t)ch->send_count) return NULL;
    return ssmb__chan_at(ch, (uint32_t)(seq - ch->send_base));
}

/* Free room in the ring: *at_end bytes after the newest frame (up to the
   oldest or the end), *at_start bytes before the oldest when the newest
   can wrap to offset 0. Frames never straddle the end. */
static void ssmb__chan_room(const ssmb_channel *ch, size_t *at_end, size_t *at_start, size_t *end) {
    const ssmb__chan_entry *first, *last;
    *at_start = 0;
    *end = 0;
    if (ch->send_count == ch->cfg.send_msgs) {
        *at_end = 0;
        return;
    }
    if (ch->send_count == 0) {
        *at_end = ch->cfg.send_bytes;
        return;
    }
    first = ssmb__chan_at(ch, 0);
    last = ssmb__chan_at(ch, ch->send_count - 1);
    *end = (size_t)last->off + last->len;
    if (last->off < first->off) { /* wrapped: the gap lies between them */
        *at_end = first->off - *end;
    } else {
        *at_end = ch->cfg.send_bytes - *end;
        *at_start = first->off;
    }
}

/* Contiguous room for an n-byte frame; NULL when the ring is full. */
static uint8_t *ssmb__chan_reserve(ssmb_channel *ch, size_t n, uint32_t *off) {
    size_t at_end, at_start, end;
    ch->place_left = 0; /* given places may overlap what is reserved now */
    ssmb__chan_room(ch, &at_end, &at_start, &end);
    if (n <= at_end) *off = (uint32_t)end;
    else if (n <= at_start) *off = 0;
    else return NULL;
    return ch->send_bytes + *off;
}

/* The largest frame a reserve would take now. */
static size_t ssmb__chan_largest_room(const ssmb_channel *ch) {
    size_t at_end, at_start, end;
    ssmb__chan_room(ch, &at_end, &at_start, &end);
    return at_end > at_start ? at_end : at_start;
}

static uint32_t ssmb__chan_frame_payload_len(const uint8_t *frame) {
    return ssmb__load_be32(frame + SSMB__MSG_OFF_PAYLOAD_LENGTH);
}

/* The digest of the frame that waits for one, alone. */
static void ssmb__chan_digest_flush(ssmb_channel *ch) {
    uint8_t *f = ch->digest_waiting;
    if (!f) return;
    ssmb_sha256(f + SSMB_MSG_HEADER_SIZE, ssmb__chan_frame_payload_len(f), f + SSMB__MSG_OFF_DIGEST);
    ch->digest_waiting = NULL;
}

/* frame (its fields written) gets its digest: a short one at once, else
   with the waiting one, else it waits in turn. */
static void ssmb__chan_digest(ssmb_channel *ch, uint8_t *frame) {
    uint8_t *w = ch->digest_waiting;
    uint32_t n = ssmb__chan_frame_payload_len(frame);
    if (n < 64) { /* not a whole block: nothing to pair */
        ssmb_sha256(frame + SSMB_MSG_HEADER_SIZE, n, frame + SSMB__MSG_OFF_DIGEST);
    } else if (w) {
        ssmb_sha256_pair(w + SSMB_MSG_HEADER_SIZE, ssmb__chan_frame_payload_len(w), frame + SSMB_MSG_HEADER_SIZE, n,
                         w + SSMB__MSG_OFF_DIGEST, frame + SSMB__MSG_OFF_DIGEST);
        ch->digest_waiting = NULL;
    } else {
        ch->digest_waiting = frame;
    }
}

/* Encodes a reserved frame whose n payload bytes already sit at dst + 120
   and appends it as the next sequence number (§3.1: one counter for every
   stream message). The agent marks sequence 0 with SYN (§2.8). */
static ssmb_result ssmb__chan_seal(ssmb_channel *ch, uint8_t *dst, uint32_t off, uint32_t payload_type, size_t n) {
    ssmb_msg m;
    ssmb__chan_entry *e;
    size_t len = 0;
    memset(&m, 0, sizeof m);
    m.type = ssmb_str_c(ssmb__chan_own_type(ch));
    m.schema_version = 1;
    m.created_date_ms = ssmb__chan_created(ch);
    m.sequence_number = ch->send_base + (int64_t)ch->send_count;
    m.flags = ch->cfg.role == SSMB_CHANNEL_AGENT && m.sequence_number == 0 ? SSMB_MSG_FLAG_SYN : 0;
    m.payload_type = payload_type;
    m.payload = dst + SSMB_MSG_HEADER_SIZE;
    m.payload_size = n;
    if (!ssmb__chan_uuid(ch, &m.message_id)) return SSMB_ERR_NO_RANDOM;
    if (ch->pair_digests) {
        ssmb__msg_write_fields(&m, dst);
        len = SSMB_MSG_HEADER_SIZE + n;
        ssmb__chan_digest(ch, dst);
    } else if (ssmb_msg_encode(&m, dst, SSMB_MSG_HEADER_SIZE + n, &len) != SSMB_OK) {
        return SSMB_ERR_INTERNAL;
    }
    e = ssmb__chan_at(ch, ch->send_count++);
    memset(e, 0, sizeof *e);
    e->off = off;
    e->len = (uint32_t)len;
    ch->m.data_out++;
    ch->m.data_bytes_out += n;
    return SSMB_OK;
}

/* 1 when this side seals payloads of this type now (§6.4). */
static int ssmb__chan_encrypts(const ssmb_channel *ch, uint32_t payload_type) {
    return ch->kms.ready == 1 && ssmb_kms_encrypts(ch->cfg.role, payload_type);
}

/* A nonce for one sealed payload (§6.3): the client draws 12 random
   bytes, the agent takes its counter's next value. */
static int ssmb__chan_nonce(ssmb_channel *ch, uint8_t nonce[12]) {
    if (ch->cfg.role == SSMB_CHANNEL_CLIENT) return ssmb__chan_draw(ch, nonce, 12);
    ssmb_kms_nonce_next(&ch->nonces, nonce);
    return 1;
}

/* Where a frame's plain payload goes: after the header, and after the
   nonce when it is encrypted in place (§6.3: nonce || ciphertext || tag). */
static size_t ssmb__chan_plain_at(int enc) {
    return SSMB_MSG_HEADER_SIZE + (enc ? SSMB_KMS_NONCE_SIZE : 0);
}

/* Seals a reserved frame whose n plain payload bytes sit at
   dst + ssmb__chan_plain_at(enc): encrypted first when enc. */
static ssmb_result ssmb__chan_seal_plain(ssmb_channel *ch, uint8_t *dst, uint32_t off, uint32_t payload_type, size_t n,
                                         int enc) {
    uint8_t nonce[12];
    size_t got = 0;
    ssmb_result r;
    if (!enc) return ssmb__chan_seal(ch, dst, off, payload_type, n);
    if (!ssmb__chan_nonce(ch, nonce)) return SSMB_ERR_NO_RANDOM;
    r = ssmb_kms_encrypt_payload(&ch->kms, dst + ssmb__chan_plain_at(1), n, nonce, dst + SSMB_MSG_HEADER_SIZE,
                                 n + SSMB_KMS_OVERHEAD, &got);
    return r == SSMB_OK ? ssmb__chan_seal(ch, dst, off, payload_type, got) : r;
}

/* Queues one stream message (n > 0). SSMB_AGAIN when it does not fit.
   With encryption on, the payload becomes nonce || ciphertext || tag,
   sealed in place in the ring (§6.3: 28 bytes more). */
static ssmb_result ssmb__chan_enqueue(ssmb_channel *ch, uint32_t payload_type, const void *payload, size_t n) {
    uint32_t off = 0;
    int enc = ssmb__chan_encrypts(ch, payload_type);
    uint8_t *dst = ssmb__chan_reserve(ch, SSMB_MSG_HEADER_SIZE + n + (enc ? SSMB_KMS_OVERHEAD : 0), &off);
    if (!dst) return SSMB_AGAIN;
    memcpy(dst + ssmb__chan_plain_at(enc), payload, n);
    return ssmb__chan_seal_plain(ch, dst, off, payload_type, n, enc);
}

/* Acknowledged entries leave from the front, except the one handed out
   (its bytes stay valid until ssmb_channel_frame_sent). */
static void ssmb__chan_reclaim(ssmb_channel *ch) {
    while (ch->send_count && ssmb__chan_at(ch, 0)->state == SSMB__CHAN_ACKED &&
           !(ch->cur_kind == SSMB__CHAN_CUR_ENTRY && ch->cur_seq == ch->send_base)) {
        ch->send_front = (ch->send_front + 1) % ch->cfg.send_msgs;
        ch->send_count--;
        ch->send_sent--;
        ch->send_base++;
    }
}

/* A failure of our own (no random bytes, an encoder refusal) ends it. */
static void ssmb__chan_fail(ssmb_channel *ch, ssmb_result r) {
    if (r < 0) ssmb__chan_close(ch, r, ssmb_result_str(r), 0);
}

/* ---- acknowledgements out (§3.2) ---- */

/* Queues an ack for a stream message; duplicates of one already queued are
   folded. 0 when the queue is full. */
static int ssmb__chan_queue_ack(ssmb_channel *ch, const ssmb_msg *m) {
    uint32_t i;
    ssmb__chan_ack *a;
    for (i = 0; i < ch->ack_count; i++)
        if (ch->acks[(ch->ack_front + i) % ch->cfg.ack_cap].seq == m->sequence_number) return 1;
    if (ch->ack_count == ch->cfg.ack_cap) return 0;
    a = &ch->acks[(ch->ack_front + ch->ack_count++) % ch->cfg.ack_cap];
    a->seq = m->sequence_number;
    a->id = m->message_id;
    return 1;
}

/* The frame for the oldest queued ack (§3.2): type acknowledge, sequence 0,
   flags SYN|FIN, payload type 0, a fresh MessageId, Go's key order. */
static ssmb_result ssmb__chan_build_ack(ssmb_channel *ch) {
    const ssmb__chan_ack *a = &ch->acks[ch->ack_front];
    uint8_t *json = ch->ack_frame + SSMB_MSG_HEADER_SIZE;
    ssmb_ack p;
    ssmb_msg m;
    size_t n = 0;
    p.message_type = ssmb_str_c(ssmb__chan_peer_type(ch));
    p.message_id = a->id;
    p.sequence_number = a->seq;
    p.is_sequential = 1;
    if (ssmb_ack_build(&p, (char *)json, sizeof ch->ack_frame - SSMB_MSG_HEADER_SIZE, &n) != SSMB_OK)
        return SSMB_ERR_INTERNAL;
    memset(&m, 0, sizeof m);
    m.type = ssmb_str_c(SSMB_MSG_ACKNOWLEDGE);
    m.schema_version = 1;
    m.created_date_ms = ssmb__chan_created(ch);
    m.flags = SSMB_MSG_FLAG_SYN | SSMB_MSG_FLAG_FIN;
    m.payload_type = SSMB_PAYLOAD_NONE;
    m.payload = json;
    m.payload_size = n;
    if (!ssmb__chan_uuid(ch, &m.message_id)) return SSMB_ERR_NO_RANDOM;
    return ssmb_msg_encode(&m, ch->ack_frame, sizeof ch->ack_frame, &ch->ack_frame_len);
}

/* ---- acknowledgements in, RTT (§3.2, §3.5) ---- */

SSMB_APIDEF void ssmb_rto_init(ssmb_rto *r) {
    if (!r) return;
    r->rtt_ns = 100000000;      /* DefaultRoundTripTime */
    r->rttvar_ns = 0;
    r->rto_ns = 200000000;      /* DefaultTransmissionTimeout */
}

/* RFC 6298 §2.3 with alpha 1/8, beta 1/4, K 4, G 10 ms and a 1 s cap, in
   the reference's order (RTTVAR uses the old RTT). Integer nanoseconds,
   truncated; the reference's float64 differs by under 2 ns. */
SSMB_APIDEF void ssmb_rto_sample(ssmb_rto *r, int64_t sample_ns) {
    int64_t delta, four;
    if (!r) return;
    if (sample_ns < 0) sample_ns = 0;
    if (sample_ns > SSMB__CHAN_MAX_SAMPLE_NS) sample_ns = SSMB__CHAN_MAX_SAMPLE_NS;
    delta = r->rtt_ns > sample_ns ? r->rtt_ns - sample_ns : sample_ns - r->rtt_ns;
    r->rttvar_ns = (3 * r->rttvar_ns + delta) / 4;
    r->rtt_ns = (7 * r->rtt_ns + sample_ns) / 8;
    four = 4 * r->rttvar_ns;
    r->rto_ns = r->rtt_ns + (four > 10000000 ? four : 10000000);
    if (r->rto_ns > 1000000000) r->rto_ns = 1000000000;
}

/* Only AcknowledgedMessageSequenceNumber matters (§3.2). Karn's rule: a
   retransmitted message gives no RTT sample (the reference takes one). */
static void ssmb__chan_on_ack(ssmb_channel *ch, const ssmb_msg *m) {
    ssmb_ack a;
    ssmb__chan_entry *e;
    if (ssmb_ack_parse(m->payload, m->payload_size, &a) != SSMB_OK) {
        ch->m.bad_payloads++;
        return;
    }
    ch->m.acks_in++;
    e = ssmb__chan_entry_of(ch, a.sequence_number);
    if (!e || (e->state != SSMB__CHAN_INFLIGHT && e->state != SSMB__CHAN_RESEND)) {
        ch->m.ignored++; /* unknown, already acked, or never sent: a no-op */
        return;
    }
    if (e->attempts == 0) ssmb_rto_sample(&ch->rto, (int64_t)SSMB__MIN(ssmb__chan_since(ch, e->sent_ms), 3600000u) * 1000000);
    if (e->state == SSMB__CHAN_RESEND) ch->resend_count--;
    e->state = SSMB__CHAN_ACKED;
    ssmb__chan_reclaim(ch);
}

/* ---- retransmission timers (§3.5) ---- */

/* Whole milliseconds after the last send at which an entry is due: the
   reference resends when now - sent > RTO. */
static uint64_t ssmb__chan_due_ms(const ssmb_channel *ch) { return (uint64_t)(ch->rto.rto_ns / 1000000) + 1; }

static void ssmb__chan_give_up(ssmb_channel *ch) {
    int client = ch->cfg.role == SSMB_CHANNEL_CLIENT;
    SSMB__CHAN_LOG(ch, SSMB_LOG_ERROR, SSMB_LOGITEM_CHANNEL_GAVE_UP, "max_resend_attempts reached");
    ssmb__chan_close(ch, SSMB_ERR_TIMEOUT,
                     client ? "no acknowledgement after max_resend_attempts retransmissions: call TerminateSession"
                            : "no acknowledgement after max_resend_attempts retransmissions",
                     client);
}

/* Marks every in-flight entry whose timeout expired (not only the oldest,
   unlike the reference); gives up past max_resend_attempts. Nothing is
   resent while paused (§8.1, as the agent does). */
static void ssmb__chan_timers(ssmb_channel *ch) {
    uint32_t i;
    if (!ch->ready && ch->hs_deadline != SSMB_NO_DEADLINE && ch->now >= ch->hs_deadline) {
        ssmb__chan_close(ch, SSMB_ERR_TIMEOUT,
                         ch->kms_state == SSMB__CHAN_KMS_CHALLENGE
                             ? "no EncChallengeResponse within 15 s (PROTOCOL.md 5.5)"
                             : "no HandshakeResponse within 15 s (PROTOCOL.md 5.5)",
                         0);
        return;
    }
    if (ch->paused) return;
    for (i = 0; i < ch->send_sent; i++) {
        ssmb__chan_entry *e = ssmb__chan_at(ch, i);
        if (e->state != SSMB__CHAN_INFLIGHT || ssmb__chan_since(ch, e->sent_ms) < ssmb__chan_due_ms(ch)) continue;
        if (e->attempts >= ch->cfg.max_attempts) {
            ssmb__chan_give_up(ch);
            return;
        }
        e->state = SSMB__CHAN_RESEND;
        ch->resend_count++;
    }
}

/* ---- outgoing frames ---- */

/* Picks the next frame: acks, then retransmissions, then new messages. */
static void ssmb__chan_choose(ssmb_channel *ch) {
    uint32_t i;
    if (ch->ack_count) {
        ch->cur_kind = SSMB__CHAN_CUR_ACK;
        return;
    }
    if (ch->paused) return;
    for (i = 0; ch->resend_count && i < ch->send_sent; i++) {
        if (ssmb__chan_at(ch, i)->state == SSMB__CHAN_RESEND) {
            ch->cur_kind = SSMB__CHAN_CUR_ENTRY;
            ch->cur_seq = ch->send_base + (int64_t)i;
            return;
        }
    }
    if (ch->send_sent < ch->send_count) {
        ch->cur_kind = SSMB__CHAN_CUR_ENTRY;
        ch->cur_seq = ch->send_base + (int64_t)ch->send_sent;
    }
}

/* The entry handed out went out (or went out again). */
static void ssmb__chan_entry_sent(ssmb_channel *ch, ssmb__chan_entry *e) {
    if (e->state == SSMB__CHAN_UNSENT) {
        ch->send_sent++;
    } else if (e->state == SSMB__CHAN_RESEND) {
        ch->resend_count--;
        e->attempts++;
        ch->m.retransmissions++;
    }
    if (e->state != SSMB__CHAN_ACKED) e->state = SSMB__CHAN_INFLIGHT;
    e->sent_ms = ch->now;
    ch->m.frames_out++;
    ch->m.bytes_out += e->len;
}

/* ---- the handshake, client side (§5.2, §5.3, §5.4) ---- */

static int ssmb__chan_known_session_type(ssmb_str t) {
    return ssmb_str_eq(t, "Standard_Stream") || ssmb_str_eq(t, "InteractiveCommands") ||
           ssmb_str_eq(t, "NonInteractiveCommands") || ssmb_str_eq(t, "Port");
}

/* SessionType: the four types the reference knows. The reference runs the
   three shell types with one handler; the name is kept as sent here, so a
   NonInteractiveCommands session can be told apart. */
static void ssmb__chan_session_action(ssmb_channel *ch, const ssmb_handshake_request *req,
                                      ssmb_processed_action *a, char *err) {
    a->status = SSMB_ACTION_FAILED;
    if (!ssmb__chan_known_session_type(req->session_type)) {
        ssmb__chan_join(err, SSMB__CHAN_ERROR_MAX, "Failed to process action SessionType: Unknown session type ",
                        req->session_type);
        return;
    }
    if (req->properties.len > SSMB_CHANNEL_PROPERTIES_MAX) {
        ssmb__chan_join(err, SSMB__CHAN_ERROR_MAX,
                        "Failed to process action SessionType: Properties longer than 1023 bytes", ssmb__str_empty());
        return;
    }
    ssmb__chan_join(ch->session_type, sizeof ch->session_type, "", req->session_type);
    memcpy(ch->properties, req->properties.ptr, req->properties.len);
    ch->properties[req->properties.len] = '\0';
    a->status = SSMB_ACTION_SUCCESS;
}

/* KMSEncryption (§5.3, §6.2): the data key comes from the host's KMS
   GenerateDataKey, so the answer stays open (status 0) and the response
   waits for ssmb_channel_kms_key or ssmb_channel_kms_failed. Without
   AES-GCM in this build the action fails at once and the agent ends the
   session. */
static void ssmb__chan_kms_action(ssmb_channel *ch, const ssmb_handshake_request *req, ssmb_processed_action *a,
                                  char *err, size_t k) {
    const char *why = NULL;
    a->status = SSMB_ACTION_FAILED;
    if (!ch->cfg.kms) why = "KMS session encryption is not supported by this build";
    else if (req->kms_key_id.len == 0 || req->kms_key_id.len > SSMB__CHAN_KMS_ID_MAX)
        why = "KMSKeyId empty or too long";
    else if (req->kms_challenge.len > SSMB__CHAN_KMS_CHALLENGE_MAX) why = "Challenge too long";
    if (why) {
        ssmb__chan_join(err, SSMB__CHAN_ERROR_MAX, "Failed to process action KMSEncryption: ", ssmb_str_c(why));
        return;
    }
    ssmb__chan_copy_json(ch->kms_key_id, sizeof ch->kms_key_id, req->kms_key_id);
    ssmb__chan_copy_json(ch->kms_challenge, sizeof ch->kms_challenge, req->kms_challenge);
    a->status = 0; /* decided by the host's KMS call */
    ch->kms_state = SSMB__CHAN_KMS_WAIT_KEY;
    ch->kms_action = k;
}

/* One ProcessedClientAction. Unknown actions say Unsupported (3); the
   reference leaves the status 0 there, which the agent also refuses. */
static void ssmb__chan_one_action(ssmb_channel *ch, const ssmb_handshake_request *req, ssmb_str type,
                                  ssmb__chan_answer *ans) {
    size_t k = ans->count++;
    ssmb_processed_action *a = &ans->actions[k];
    memset(a, 0, sizeof *a);
    ans->errors[k][0] = '\0';
    ssmb__chan_join(ans->names[k], sizeof ans->names[k], "", type);
    if (ssmb_str_eq(type, "SessionType")) {
        ssmb__chan_session_action(ch, req, a, ans->errors[k]);
    } else if (ssmb_str_eq(type, "KMSEncryption")) {
        ssmb__chan_kms_action(ch, req, a, ans->errors[k], k);
    } else {
        a->status = SSMB_ACTION_UNSUPPORTED;
        ssmb__chan_join(ans->errors[k], SSMB__CHAN_ERROR_MAX, "Unsupported action type ", type);
    }
    a->action_type = ssmb_str_c(ans->names[k]);
    a->result_json = ssmb__str_empty();
    a->error = ssmb_str_c(ans->errors[k]);
}

/* Walks RequestedClientActions in order (the L0 parser already checked the
   shape; it keeps values, not the order). */
static void ssmb__chan_process_actions(ssmb_channel *ch, const uint8_t *p, size_t n,
                                       const ssmb_handshake_request *req, ssmb__chan_answer *ans) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    int32_t list, i, count = 0;
    ans->count = 0;
    if (ssmb_json_parse(&doc, (const char *)p, n, tokens, SSMB__PAYLOAD_TOKENS) != SSMB_OK) return;
    list = ssmb_json_find(&doc, 0, "RequestedClientActions");
    if (ssmb_json_kind(&doc, list) == SSMB_JSON_ARRAY) count = ssmb_json_size(&doc, list);
    for (i = 0; i < count && ans->count < SSMB__CHAN_MAX_ACTIONS; i++) {
        ssmb_str type = ssmb__str_empty();
        (void)ssmb_json_get_str(&doc, ssmb_json_find(&doc, ssmb_json_at(&doc, list, i), "ActionType"), &type);
        ssmb__chan_one_action(ch, req, type, ans);
    }
}

/* A handshake message's JSON goes straight into a reserved frame; the
   room was checked before its trigger was acknowledged. */
static uint8_t *ssmb__chan_reserve_control(ssmb_channel *ch, uint32_t *off) {
    uint8_t *dst = ssmb__chan_reserve(ch, SSMB_MSG_HEADER_SIZE + SSMB__CHAN_CONTROL_MAX, off);
    if (!dst) SSMB__CHAN_LOG(ch, SSMB_LOG_WARN, SSMB_LOGITEM_CHANNEL_HANDSHAKE, "no room for a handshake message");
    return dst;
}

/* HandshakeResponse (§5.3): ClientVersion, the actions, Errors null. */
static void ssmb__chan_send_response(ssmb_channel *ch, const ssmb__chan_answer *ans) {
    ssmb_handshake_response resp;
    uint32_t off = 0;
    size_t n = 0;
    uint8_t *dst = ssmb__chan_reserve_control(ch, &off);
    ssmb_result r;
    if (!dst) return;
    memset(&resp, 0, sizeof resp);
    resp.client_version = ssmb_str_c(ch->client_version);
    resp.actions = ans->actions;
    resp.action_count = ans->count;
    r = ssmb_handshake_response_build(&resp, (char *)dst + SSMB_MSG_HEADER_SIZE, SSMB__CHAN_CONTROL_MAX, &n);
    if (r == SSMB_OK) r = ssmb__chan_seal(ch, dst, off, SSMB_PAYLOAD_HANDSHAKE_RESPONSE, n);
    ssmb__chan_fail(ch, r);
}

/* The host must call KMS before the response can go (§6.2). */
static void ssmb__chan_ask_kms(ssmb_channel *ch) {
    ssmb_channel_event *ev = ssmb__chan_push(ch, SSMB_CHANNEL_EVENT_KMS_REQUEST);
    if (!ev) return; /* cannot happen: a message is handled only with room for its events */
    ev->kms_key_id = ssmb_str_c(ch->kms_key_id);
    ev->kms_challenge = ssmb_str_c(ch->kms_challenge);
    ev->agent_version = ssmb_str_c(ch->agent_version);
    SSMB__CHAN_LOG(ch, SSMB_LOG_INFO, SSMB_LOGITEM_CHANNEL_HANDSHAKE, "KMSEncryption asked: waiting for the data key");
}

/* Records AgentVersion and the session type, answers every action. The
   answer is kept in the channel: with KMSEncryption it waits for the key.
   A further HandshakeRequest while KMS is asked for or on is ignored (the
   keys are the session's). */
static void ssmb__chan_on_handshake_request(ssmb_channel *ch, const uint8_t *p, size_t n) {
    ssmb_handshake_request req;
    if (ssmb_handshake_request_parse(p, n, &req) != SSMB_OK) {
        ch->m.bad_payloads++;
        SSMB__CHAN_LOG(ch, SSMB_LOG_WARN, SSMB_LOGITEM_CHANNEL_HANDSHAKE, "HandshakeRequest unreadable");
        return;
    }
    if (ch->kms_state != SSMB__CHAN_KMS_NONE) {
        ch->m.ignored++;
        return;
    }
    if (!ch->handshake_seen) ch->handshake_start = ch->now;
    ch->handshake_seen = 1;
    ssmb__chan_copy_json(ch->agent_version, sizeof ch->agent_version, req.agent_version);
    ssmb__chan_process_actions(ch, p, n, &req, &ch->answer);
    if (ch->kms_state == SSMB__CHAN_KMS_WAIT_KEY) ssmb__chan_ask_kms(ch);
    else ssmb__chan_send_response(ch, &ch->answer);
}

/* §6.5, client: decrypt the agent's challenge with the first-half key,
   seal it again with the second-half key and a fresh nonce. A challenge
   that does not open means the two sides hold different keys: the session
   cannot work, so the channel ends (and the service side is told to end
   it too). */
static void ssmb__chan_on_challenge_request(ssmb_channel *ch, const uint8_t *p, size_t n) {
    uint32_t off = 0;
    size_t len = 0;
    uint8_t nonce[12], *dst;
    ssmb_result r;
    if (ch->kms_state != SSMB__CHAN_KMS_ON) {
        ch->m.ignored++; /* KMS was refused or not asked for */
        return;
    }
    dst = ssmb__chan_reserve_control(ch, &off);
    if (!dst) return;
    if (!ssmb__chan_draw(ch, nonce, sizeof nonce)) {
        ssmb__chan_fail(ch, SSMB_ERR_NO_RANDOM);
        return;
    }
    r = ssmb_kms_challenge_answer(&ch->kms, p, n, nonce, (char *)dst + SSMB_MSG_HEADER_SIZE, SSMB__CHAN_CONTROL_MAX,
                                  &len);
    if (r == SSMB_OK) {
        ssmb__chan_fail(ch, ssmb__chan_seal(ch, dst, off, SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE, len));
        return;
    }
    ssmb__wipe(dst, SSMB_MSG_HEADER_SIZE + SSMB__CHAN_CONTROL_MAX);
    ssmb__chan_close(ch, r == SSMB_ERR_AUTH ? SSMB_ERR_AUTH : SSMB_ERR_SSM_PROTOCOL,
                     r == SSMB_ERR_AUTH ? "EncChallengeRequest does not decrypt with the KMS data key: the agent "
                                          "holds another key (PROTOCOL.md 6.5)"
                                        : "EncChallengeRequest unreadable (PROTOCOL.md 6.5)",
                     1);
}

/* §5.4: the session starts; without an accepted SessionType the reference
   fails ("unable to determine SessionType"), and so does this. */
static void ssmb__chan_on_handshake_complete(ssmb_channel *ch, const uint8_t *p, size_t n) {
    ssmb_handshake_complete c;
    if (ssmb_handshake_complete_parse(p, n, &c) != SSMB_OK) {
        ch->m.bad_payloads++;
        return;
    }
    if (ch->ready) {
        ch->m.ignored++;
        return;
    }
    if (!ch->session_type[0]) {
        ssmb__chan_close(ch, SSMB_ERR_SSM_PROTOCOL, "HandshakeComplete without an accepted SessionType", 0);
        return;
    }
    ssmb__chan_copy_json(ch->message, sizeof ch->message, c.customer_message);
    ch->m.handshake_us = ssmb__chan_since(ch, ch->handshake_start) * 1000;
    ssmb__chan_become_ready(ch);
}

/* ---- the handshake, agent side ---- */

/* 1 when version a is b or later (same number of parts, §7.6). */
static int ssmb__chan_version_ge(const char *a, const char *b) {
    return ssmb_version_gt(a, b) || strcmp(a, b) == 0;
}

/* §6.6: agents from 3.3.808.0 send a Challenge with KMSEncryption, the
   standard base64 of 16 random bytes; older ones none. 0: no random. */
static int ssmb__chan_make_challenge(ssmb_channel *ch) {
    uint8_t b[16];
    ch->kms_challenge[0] = '\0';
    if (!ssmb__chan_version_ge(ch->agent_version, "3.3.808.0")) return 1;
    if (ch->random_fn(b, sizeof b, ch->random_user_data) != SSMB_OK) return 0;
    (void)ssmb_base64_encode(b, sizeof b, ch->kms_challenge, sizeof ch->kms_challenge, NULL);
    return 1;
}

/* HandshakeRequest (§5.2): SessionType first, then KMSEncryption. */
static ssmb_result ssmb__chan_send_request(ssmb_channel *ch) {
    ssmb_json_writer w;
    uint32_t off = 0;
    size_t n = 0;
    uint8_t *dst = ssmb__chan_reserve_control(ch, &off);
    ssmb_result r;
    if (!dst) return SSMB_ERR_INTERNAL;
    ssmb_json_writer_init(&w, (char *)dst + SSMB_MSG_HEADER_SIZE, SSMB__CHAN_CONTROL_MAX);
    ssmb_json_writer_begin_object(&w);
    ssmb__jw_member_str(&w, "AgentVersion", ssmb_str_c(ch->agent_version));
    ssmb__jw_key(&w, "RequestedClientActions");
    ssmb_json_writer_begin_array(&w);
    ssmb_json_writer_begin_object(&w);
    ssmb__jw_member_str(&w, "ActionType", ssmb_str_c("SessionType"));
    ssmb__jw_key(&w, "ActionParameters");
    ssmb_json_writer_begin_object(&w);
    ssmb__jw_member_str(&w, "SessionType", ssmb_str_c(ch->session_type));
    ssmb__jw_key(&w, "Properties");
    if (ch->properties[0]) ssmb_json_writer_raw(&w, ch->properties, strlen(ch->properties));
    else ssmb_json_writer_null(&w);
    ssmb_json_writer_end_object(&w);
    ssmb_json_writer_end_object(&w);
    if (ch->kms_key_id[0]) {
        ssmb_json_writer_begin_object(&w);
        ssmb__jw_member_str(&w, "ActionType", ssmb_str_c("KMSEncryption"));
        ssmb__jw_key(&w, "ActionParameters");
        ssmb_json_writer_begin_object(&w);
        ssmb__jw_member_str(&w, "KMSKeyId", ssmb_str_c(ch->kms_key_id));
        if (ch->kms_challenge[0]) ssmb__jw_member_str(&w, "Challenge", ssmb_str_c(ch->kms_challenge));
        ssmb_json_writer_end_object(&w);
        ssmb_json_writer_end_object(&w);
    }
    ssmb_json_writer_end_array(&w);
    ssmb_json_writer_end_object(&w);
    r = ssmb_json_writer_finish(&w, &n);
    return r == SSMB_OK ? ssmb__chan_seal(ch, dst, off, SSMB_PAYLOAD_HANDSHAKE_REQUEST, n) : r;
}

/* HandshakeComplete (§5.4): HandshakeTimeToComplete in nanoseconds. */
static ssmb_result ssmb__chan_send_complete(ssmb_channel *ch) {
    ssmb_json_writer w;
    uint32_t off = 0;
    size_t n = 0;
    uint8_t *dst = ssmb__chan_reserve_control(ch, &off);
    ssmb_result r;
    if (!dst) return SSMB_ERR_INTERNAL;
    ssmb_json_writer_init(&w, (char *)dst + SSMB_MSG_HEADER_SIZE, SSMB__CHAN_CONTROL_MAX);
    ssmb_json_writer_begin_object(&w);
    ssmb__jw_key(&w, "HandshakeTimeToComplete");
    ssmb_json_writer_u64(&w, ch->m.handshake_us * 1000);
    ssmb__jw_member_str(&w, "CustomerMessage", ssmb_str_c(ch->message));
    ssmb_json_writer_end_object(&w);
    r = ssmb_json_writer_finish(&w, &n);
    return r == SSMB_OK ? ssmb__chan_seal(ch, dst, off, SSMB_PAYLOAD_HANDSHAKE_COMPLETE, n) : r;
}

/* A successful KMSEncryption action (§5.3): its ActionResult carries the
   CiphertextBlob, and maybe ChallengeAcknowledgement (§6.6). Kept for the
   KMS_DECRYPT event. */
static ssmb_result ssmb__chan_take_blob(ssmb_channel *ch, const ssmb_json *doc, int32_t a) {
    ssmb_str raw = ssmb_json_raw(doc, ssmb_json_find(doc, a, "ActionResult"));
    int acked = 0;
    ssmb_result r = ssmb_kms_action_result_parse(raw.ptr, raw.len, ch->kms_blob, sizeof ch->kms_blob,
                                                 &ch->kms_blob_len, &acked);
    if (r == SSMB_OK && ch->kms_blob_len == 0) r = SSMB_ERR_JSON;
    if (r != SSMB_OK) {
        ch->kms_blob_len = 0;
        ssmb__chan_copy_c(ch->reason, sizeof ch->reason,
                          "KMSEncryption ActionResult without a usable KMSCipherTextKey");
        return SSMB_ERR_SSM_PROTOCOL;
    }
    if (!acked) ch->kms_challenge[0] = '\0'; /* Decrypt without aws:ssm:RandomChallenge (§6.6) */
    return SSMB_OK;
}

/* One ProcessedClientAction as the agent checks it: status 1 or failure. */
static ssmb_result ssmb__chan_check_action(ssmb_channel *ch, const ssmb_json *doc, int32_t a, int *first) {
    uint32_t status = 0;
    ssmb_str err, type;
    if (ssmb_json_kind(doc, a) != SSMB_JSON_OBJECT ||
        ssmb_json_get_u32(doc, ssmb_json_find(doc, a, "ActionStatus"), &status) != SSMB_OK)
        return SSMB_ERR_JSON;
    if (status == SSMB_ACTION_SUCCESS && ch->kms_key_id[0] &&
        ssmb_json_get_str(doc, ssmb_json_find(doc, a, "ActionType"), &type) == SSMB_OK &&
        ssmb_str_eq(type, "KMSEncryption"))
        return ssmb__chan_take_blob(ch, doc, a);
    if (status == SSMB_ACTION_SUCCESS) return SSMB_OK;
    if (*first && ssmb__json_opt_str(doc, a, "Error", &err) == SSMB_OK) {
        ssmb__chan_copy_json(ch->reason, sizeof ch->reason, err);
        *first = 0;
    }
    return SSMB_ERR_SSM_PROTOCOL;
}

/* Reads a HandshakeResponse: ClientVersion, and every action's status. */
static ssmb_result ssmb__chan_read_response(ssmb_channel *ch, const uint8_t *p, size_t n) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    ssmb_str version;
    int32_t list, i, count = 0;
    int first = 1;
    ssmb_result r = ssmb__payload_open(&doc, tokens, p, n), worst = SSMB_OK;
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "ClientVersion", &version);
    if (r != SSMB_OK) return r;
    ssmb__chan_copy_json(ch->client_version, sizeof ch->client_version, version);
    list = ssmb_json_find(&doc, 0, "ProcessedClientActions");
    if (ssmb_json_kind(&doc, list) == SSMB_JSON_ARRAY) count = ssmb_json_size(&doc, list);
    else if (!ssmb_json_is_null(&doc, list)) return SSMB_ERR_JSON;
    for (i = 0; i < count; i++) {
        r = ssmb__chan_check_action(ch, &doc, ssmb_json_at(&doc, list, i), &first);
        if (r == SSMB_ERR_JSON) return r;
        if (r != SSMB_OK) worst = r;
    }
    if (worst == SSMB_OK && ch->kms_key_id[0] && ch->kms_blob_len == 0) {
        ssmb__chan_copy_c(ch->reason, sizeof ch->reason, "the client did not answer KMSEncryption");
        worst = SSMB_ERR_SSM_PROTOCOL;
    }
    return worst;
}

/* The agent accepts the client only when every action succeeded (§5.3),
   then sends HandshakeComplete and may send data. */
static void ssmb__chan_on_handshake_response(ssmb_channel *ch, const uint8_t *p, size_t n) {
    ssmb_channel_event *ev;
    ssmb_result r;
    if (!ch->handshake_asked || ch->ready || ch->kms_state != SSMB__CHAN_KMS_NONE) {
        ch->m.ignored++;
        return;
    }
    ch->reason[0] = '\0';
    r = ssmb__chan_read_response(ch, p, n);
    if (r == SSMB_ERR_JSON || r == SSMB_ERR_LIMIT) ch->m.bad_payloads++;
    ch->m.handshake_us = ssmb__chan_since(ch, ch->handshake_start) * 1000;
    ev = ssmb__chan_push(ch, SSMB_CHANNEL_EVENT_HANDSHAKE_RESPONSE);
    if (ev) {
        ev->result = r;
        ev->client_version = ssmb_str_c(ch->client_version);
        ev->message = ssmb_str_c(ch->reason);
    }
    if (r != SSMB_OK) {
        ssmb__chan_close(ch, SSMB_ERR_SSM_PROTOCOL, ch->reason[0] ? ch->reason : "handshake refused", 0);
        return;
    }
    ch->hs_deadline = SSMB_NO_DEADLINE;
    if (ch->kms_key_id[0]) { /* §6: the host decrypts the blob with KMS first */
        ch->kms_state = SSMB__CHAN_KMS_WAIT_KEY;
        ev = ssmb__chan_push(ch, SSMB_CHANNEL_EVENT_KMS_DECRYPT);
        if (ev) {
            ev->data = ch->kms_blob;
            ev->len = ch->kms_blob_len;
            ev->kms_key_id = ssmb_str_c(ch->kms_key_id);
            ev->kms_challenge = ssmb_str_c(ch->kms_challenge);
            ev->client_version = ssmb_str_c(ch->client_version);
        }
        return;
    }
    r = ssmb__chan_send_complete(ch);
    if (r != SSMB_OK) ssmb__chan_fail(ch, r);
    else ssmb__chan_become_ready(ch);
}

/* §6.5, agent: the client's answer must open with the client-to-agent key
   to exactly the 64 bytes sent; then HandshakeComplete. */
static void ssmb__chan_on_challenge_response(ssmb_channel *ch, const uint8_t *p, size_t n) {
    ssmb_result r;
    if (ch->kms_state != SSMB__CHAN_KMS_CHALLENGE) {
        ch->m.discarded++;
        return;
    }
    r = ssmb_kms_challenge_verify(&ch->kms, ch->kms_secret, sizeof ch->kms_secret, p, n);
    ssmb__wipe(ch->kms_secret, sizeof ch->kms_secret);
    if (r != SSMB_OK) {
        ch->kms_state = SSMB__CHAN_KMS_NONE;
        ssmb__chan_close(ch, SSMB_ERR_AUTH,
                         r == SSMB_ERR_AUTH ? "EncChallengeResponse does not match the challenge: the client "
                                              "holds another key (PROTOCOL.md 6.5)"
                                            : "EncChallengeResponse unreadable (PROTOCOL.md 6.5)",
                         0);
        return;
    }
    ch->kms_state = SSMB__CHAN_KMS_ON;
    ch->hs_deadline = SSMB_NO_DEADLINE;
    r = ssmb__chan_send_complete(ch);
    if (r != SSMB_OK) ssmb__chan_fail(ch, r);
    else ssmb__chan_become_ready(ch);
}

/* ---- stream payloads, in order ---- */

static void ssmb__chan_on_data(ssmb_channel *ch, uint32_t type, const uint8_t *p, size_t n, int64_t seq) {
    ssmb_channel_event *ev;
    /* §5.1, §11: without a handshake the first Output names the session. */
    if (ch->cfg.role == SSMB_CHANNEL_CLIENT && !ch->ready && !ch->handshake_seen && type == SSMB_PAYLOAD_OUTPUT) {
        ssmb__chan_copy_c(ch->session_type, sizeof ch->session_type, "Standard_Stream");
        ssmb__chan_become_ready(ch);
    }
    ev = ssmb__chan_push(ch, SSMB_CHANNEL_EVENT_DATA);
    if (!ev) return; /* cannot happen: a message is handled only with room for its events */
    ev->payload_type = type;
    ev->data = p;
    ev->len = n;
    ev->sequence_number = seq;
}

/* ExitCode (§7.2), "EXIT_CODE: <n>", apart from the output. */
static void ssmb__chan_on_exit_code(ssmb_channel *ch, const uint8_t *p, size_t n, int64_t seq) {
    ssmb_channel_event *ev = ssmb__chan_push(ch, SSMB_CHANNEL_EVENT_EXIT_CODE);
    if (!ev) return;
    ev->payload_type = SSMB_PAYLOAD_EXIT_CODE;
    ev->result = ssmb_exit_code_parse(p, n, &ev->exit_code);
    ev->data = p;
    ev->len = n;
    ev->sequence_number = seq;
    if (ev->result != SSMB_OK) ch->m.bad_payloads++;
}

/* Flag (§2.9): four bytes, big-endian. */
static void ssmb__chan_on_flag(ssmb_channel *ch, const uint8_t *p, size_t n, int64_t seq) {
    ssmb_channel_event *ev = ssmb__chan_push(ch, SSMB_CHANNEL_EVENT_FLAG);
    if (!ev) return;
    ev->payload_type = SSMB_PAYLOAD_FLAG;
    ev->result = ssmb_flag_decode(p, n, &ev->flag);
    ev->sequence_number = seq;
    if (ev->result != SSMB_OK) ch->m.bad_payloads++;
}

/* §6.4: with the keys in use, the payload types the peer seals are opened
   into plain (the event then points there). A payload that does not open
   (cut short, altered, another key) ends the channel: it was acknowledged
   already, and skipping it would corrupt the stream. 0 then. */
static int ssmb__chan_open_payload(ssmb_channel *ch, uint32_t type, const uint8_t **p, size_t *n) {
    size_t got = 0;
    ssmb_result r;
    /* In place: the host said its frames may be rewritten (the reorder store's are the channel's). */
    uint8_t *out = ch->cfg.in_place ? (uint8_t *)(uintptr_t)*p : ch->plain;
    size_t cap = ch->cfg.in_place ? *n : ch->cfg.plain_bytes;
    if (ch->kms.ready != 1 || !ssmb_kms_decrypts(ch->cfg.role, type)) return 1;
    r = out ? ssmb_kms_decrypt_payload(&ch->kms, *p, *n, out, cap, &got) : SSMB_ERR_INTERNAL;
    if (r != SSMB_OK) {
        ssmb__chan_close(ch, r == SSMB_ERR_NOMEM || r == SSMB_ERR_INTERNAL ? r : SSMB_ERR_AUTH,
                         "an encrypted payload does not decrypt with the KMS data key (PROTOCOL.md 6.3)",
                         ch->cfg.role == SSMB_CHANNEL_CLIENT);
        return 0;
    }
    *p = out;
    *n = got;
    ch->in_plain = !ch->cfg.in_place;
    return 1;
}

static void ssmb__chan_handle_client(ssmb_channel *ch, uint32_t type, const uint8_t *p, size_t n, int64_t seq) {
    if ((type == SSMB_PAYLOAD_EXIT_CODE || type == SSMB_PAYLOAD_OUTPUT || type == SSMB_PAYLOAD_STDERR) &&
        !ssmb__chan_open_payload(ch, type, &p, &n))
        return;
    switch (type) {
    case SSMB_PAYLOAD_HANDSHAKE_REQUEST: ssmb__chan_on_handshake_request(ch, p, n); break;
    case SSMB_PAYLOAD_HANDSHAKE_COMPLETE: ssmb__chan_on_handshake_complete(ch, p, n); break;
    case SSMB_PAYLOAD_ENC_CHALLENGE_REQUEST: ssmb__chan_on_challenge_request(ch, p, n); break;
    case SSMB_PAYLOAD_EXIT_CODE: ssmb__chan_on_exit_code(ch, p, n, seq); break;
    case SSMB_PAYLOAD_FLAG: ssmb__chan_on_flag(ch, p, n, seq); break;
    default: ssmb__chan_on_data(ch, type, p, n, seq); break;
    }
}

/* §5.1 agent gating: before the handshake ended, client data other than
   the handshake's own is acknowledged and dropped. */
static void ssmb__chan_handle_agent(ssmb_channel *ch, uint32_t type, const uint8_t *p, size_t n, int64_t seq) {
    if (type == SSMB_PAYLOAD_HANDSHAKE_RESPONSE) ssmb__chan_on_handshake_response(ch, p, n);
    else if (type == SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE && !ch->ready) ssmb__chan_on_challenge_response(ch, p, n);
    else if (!ch->ready) ch->m.discarded++;
    else if (type == SSMB_PAYLOAD_FLAG) ssmb__chan_on_flag(ch, p, n, seq);
    else if (ssmb__chan_open_payload(ch, type, &p, &n)) ssmb__chan_on_data(ch, type, p, n, seq);
}

/* Every in-order payload comes here, from the wire or from the reorder
   store alike (the reference misroutes kept handshake messages, §3.3). */
static void ssmb__chan_handle(ssmb_channel *ch, uint32_t type, const uint8_t *p, size_t n, int64_t seq) {
    ch->m.data_in++;
    ch->m.data_bytes_in += n;
    if (ch->cfg.role == SSMB_CHANNEL_CLIENT) ssmb__chan_handle_client(ch, type, p, n, seq);
    else ssmb__chan_handle_agent(ch, type, p, n, seq);
    ch->in_plain = 0;
}

/* ---- the reorder store ---- */

static int32_t ssmb__chan_slot_find(const ssmb_channel *ch, int64_t seq) {
    uint32_t i;
    if (ch->slot_count == ch->dead_slots) return -1; /* nothing kept (the usual case) */
    for (i = 0; i < ch->slot_count; i++)
        if (ch->slots[i].live && ch->slots[i].seq == seq) return (int32_t)i;
    return -1;
}

/* Copies the live slots and their bytes, packed, to slots and bytes (which
   may be where they are: everything only moves down). */
static void ssmb__chan_pack_to(ssmb_channel *ch, ssmb__chan_slot *slots, uint8_t *bytes) {
    uint32_t i, n = 0;
    size_t at = 0;
    for (i = 0; i < ch->slot_count; i++) {
        ssmb__chan_slot s = ch->slots[i];
        if (!s.live) continue;
        if (s.len) memmove(bytes + at, ch->reorder_bytes + s.off, s.len);
        s.off = (uint32_t)at;
        slots[n++] = s;
        at += s.len;
    }
    ch->slot_count = n;
    ch->reorder_used = at;
    ch->dead_slots = 0;
    ch->reorder_dead = 0;
}

/* Gives a grown store back (wiped: it held session payloads). */
static void ssmb__chan_drop_grown(ssmb_channel *ch) {
    if (!ch->grown) return;
    ssmb__wipe(ch->grown, ch->grown_size);
    ssmb__free(&ch->alloc, ch->grown, ch->grown_size);
    ch->grown = NULL;
    ch->grown_size = 0;
}

/* A store of its own for at least live + need bytes and one more slot:
   twice the size it had, within the configured maxima. 0 when that is
   not allowed or there is no memory (the message is then dropped and the
   peer sends it again). */
static int ssmb__chan_grow(ssmb_channel *ch, size_t need) {
    size_t live = ch->reorder_used - ch->reorder_dead, bytes = ch->reorder_cap * 2, slot_bytes, total;
    uint32_t slots = ch->slot_cap * 2;
    void *mem;
    if (live + need > ch->cfg.reorder_max_bytes || ch->slot_count - ch->dead_slots >= ch->cfg.reorder_max_msgs)
        return 0;
    if (bytes < live + need) bytes = live + need;
    if (bytes > ch->cfg.reorder_max_bytes) bytes = ch->cfg.reorder_max_bytes;
    if (slots > ch->cfg.reorder_max_msgs) slots = ch->cfg.reorder_max_msgs;
    if (bytes <= ch->reorder_cap && slots <= ch->slot_cap) return 0; /* as large as it may be */
    slot_bytes = ((size_t)slots * sizeof(ssmb__chan_slot) + 15) & ~(size_t)15;
    total = slot_bytes + bytes;
    mem = ssmb__alloc(&ch->alloc, total);
    if (!mem) return 0;
    ssmb__chan_pack_to(ch, (ssmb__chan_slot *)mem, (uint8_t *)mem + slot_bytes);
    ssmb__chan_drop_grown(ch);
    ch->grown = mem;
    ch->grown_size = total;
    ch->slots = (ssmb__chan_slot *)mem;
    ch->reorder_bytes = (uint8_t *)mem + slot_bytes;
    ch->slot_cap = slots;
    ch->reorder_cap = bytes;
    return 1;
}

/* Room at the end of the store for need bytes and a slot: packs the dead
   bytes away (at once when half of it is dead, which keeps packing to once
   per half a store of appends), else grows, else packs what it can. Nothing
   moves while an event points into a slot. */
static int ssmb__chan_make_room(ssmb_channel *ch, size_t need) {
    size_t live = ch->reorder_used - ch->reorder_dead;
    int can_pack = ch->slot_count - ch->dead_slots < ch->slot_cap && live + need <= ch->reorder_cap;
    if (ch->slot_count < ch->slot_cap && need <= ch->reorder_cap - ch->reorder_used) return 1;
    if (ch->held_slot >= 0) return 0;
    if (!(can_pack && 2 * ch->reorder_dead >= ch->reorder_cap) && ssmb__chan_grow(ch, need)) return 1;
    if (!can_pack) return 0;
    ssmb__chan_pack_to(ch, ch->slots, ch->reorder_bytes);
    return 1;
}

/* Keeps a payload that came early; 0 when it is too far ahead or does not
   fit (then it is not acknowledged and the peer sends it again). */
static int ssmb__chan_keep(ssmb_channel *ch, const ssmb_msg *m) {
    ssmb__chan_slot *s;
    if (m->sequence_number - ch->expected > SSMB__CHAN_REORDER_WINDOW) return 0;
    if (!ssmb__chan_make_room(ch, m->payload_size)) return 0;
    s = &ch->slots[ch->slot_count++];
    s->seq = m->sequence_number;
    s->off = (uint32_t)ch->reorder_used;
    s->len = (uint32_t)m->payload_size;
    s->payload_type = m->payload_type;
    s->live = 1;
    if (m->payload_size) memcpy(ch->reorder_bytes + s->off, m->payload, m->payload_size);
    ch->reorder_used += m->payload_size;
    return 1;
}

/* A handled slot: dead, and dropped at once from the end of the store.
   An empty store starts over, in the allocation's own store again. */
static void ssmb__chan_release(ssmb_channel *ch, int32_t i) {
    ch->slots[i].live = 0;
    ch->dead_slots++;
    ch->reorder_dead += ch->slots[i].len;
    while (ch->slot_count && !ch->slots[ch->slot_count - 1].live) {
        ch->slot_count--;
        ch->dead_slots--;
        ch->reorder_used -= ch->slots[ch->slot_count].len;
        ch->reorder_dead -= ch->slots[ch->slot_count].len;
    }
    /* Lookups walk every slot: once most are dead, they are packed away. */
    if (ch->dead_slots > 16 && 2 * ch->dead_slots > ch->slot_count && ch->held_slot < 0)
        ssmb__chan_pack_to(ch, ch->slots, ch->reorder_bytes);
    if (ch->slot_count || !ch->grown) return;
    ssmb__chan_drop_grown(ch);
    ch->slots = ch->inline_slots;
    ch->reorder_bytes = ch->inline_reorder;
    ch->slot_cap = ch->cfg.reorder_msgs;
    ch->reorder_cap = ch->cfg.reorder_bytes;
}

static void ssmb__chan_release_held(ssmb_channel *ch) {
    if (ch->held_slot >= 0) ssmb__chan_release(ch, ch->held_slot);
    ch->held_slot = -1;
}

/* Kept payloads that are now next in order, one at a time while nothing
   waits to be polled. The slot stays until the event is consumed. */
static void ssmb__chan_advance(ssmb_channel *ch) {
    while (ch->ev_count == 0 && ch->state == SSMB__CHAN_OPEN) {
        int32_t i = ssmb__chan_slot_find(ch, ch->expected);
        ssmb__chan_slot s;
        if (i < 0) return;
        s = ch->slots[i];
        ch->expected++;
        ssmb__chan_handle(ch, s.payload_type, ch->reorder_bytes + s.off, s.len, s.seq);
        if (ch->ev_count) ch->held_slot = i;
        else ssmb__chan_release(ch, i);
    }
}

/* ---- incoming frames ---- */

static void ssmb__chan_drop(ssmb_channel *ch, uint64_t *counter, const char *why) {
    (*counter)++;
    SSMB__CHAN_LOG(ch, SSMB_LOG_DEBUG, SSMB_LOGITEM_CHANNEL_DROPPED, why);
}

/* Room to acknowledge it, and for the handshake message it will cause. */
static int ssmb__chan_can_accept(const ssmb_channel *ch, uint32_t type) {
    int reply = ch->cfg.role == SSMB_CHANNEL_CLIENT
                    ? type == SSMB_PAYLOAD_HANDSHAKE_REQUEST || type == SSMB_PAYLOAD_ENC_CHALLENGE_REQUEST
                    : type == SSMB_PAYLOAD_HANDSHAKE_RESPONSE || type == SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE;
    if (ch->ack_count == ch->cfg.ack_cap) return 0;
    return !reply || ssmb__chan_largest_room(ch) >= SSMB_MSG_HEADER_SIZE + SSMB__CHAN_CONTROL_MAX;
}

static void ssmb__chan_on_ahead(ssmb_channel *ch, const ssmb_msg *m) {
    if (ssmb__chan_slot_find(ch, m->sequence_number) >= 0) {
        ch->m.duplicates++;
        (void)ssmb__chan_queue_ack(ch, m);
        return;
    }
    if (ch->ack_count == ch->cfg.ack_cap || !ssmb__chan_keep(ch, m)) {
        ssmb__chan_drop(ch, &ch->m.dropped_no_room, "ahead of order, no room to keep it");
        return;
    }
    (void)ssmb__chan_queue_ack(ch, m);
    ch->m.reordered++;
}

/* §3.3 with its recommendations: in order -> acknowledged, then handled;
   early -> kept and acknowledged when there is room, else dropped; seen
   before -> acknowledged again (a lost ack would otherwise stall a peer
   that resends only its oldest message). */
static void ssmb__chan_on_stream(ssmb_channel *ch, const ssmb_msg *m) {
    int64_t seq = m->sequence_number;
    if (seq < 0) {
        ssmb__chan_drop(ch, &ch->m.dropped_invalid, "negative sequence number");
    } else if (seq < ch->expected) {
        ch->m.duplicates++;
        (void)ssmb__chan_queue_ack(ch, m);
    } else if (seq > ch->expected) {
        ssmb__chan_on_ahead(ch, m);
    } else if (!ssmb__chan_can_accept(ch, m->payload_type)) {
        ssmb__chan_drop(ch, &ch->m.dropped_no_room, "no room to acknowledge or answer");
    } else {
        (void)ssmb__chan_queue_ack(ch, m); /* before acting on it (§3.3, §14 item 6) */
        ch->expected++;
        ch->on_wire = 1;
        ssmb__chan_handle(ch, m->payload_type, m->payload, m->payload_size, seq);
        ch->on_wire = 0;
    }
}

/* §8.2: not acknowledged; an unreadable payload still ends the session. */
static void ssmb__chan_on_closed(ssmb_channel *ch, const uint8_t *p, size_t n) {
    ssmb_channel_closed c;
    if (ssmb_channel_closed_parse(p, n, &c) == SSMB_OK) {
        ssmb__chan_copy_json(ch->reason, sizeof ch->reason, c.output);
    } else {
        ch->m.bad_payloads++;
        ch->reason[0] = '\0';
    }
    ssmb__chan_close(ch, SSMB_CLOSED, ch->reason, 0);
}

/* §8.1: pause holds new data and retransmissions; start resumes. */
static void ssmb__chan_on_publication(ssmb_channel *ch, int start) {
    if (ch->paused == !start) return;
    ch->paused = !start;
    (void)ssmb__chan_push(ch, start ? SSMB_CHANNEL_EVENT_RESUMED : SSMB_CHANNEL_EVENT_PAUSED);
}

/* §13 item 2: the control messages may come as bare JSON text, e.g.
   {"MessageType":"channel_closed","Output":"..."}. 1 when it was one. */
static int ssmb__chan_text_control(ssmb_channel *ch, const uint8_t *text, size_t len) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    ssmb_str type, output;
    int32_t t;
    if (ssmb__payload_open(&doc, tokens, text, len) != SSMB_OK) return 0;
    t = ssmb_json_find(&doc, 0, "MessageType");
    if (t < 0) t = ssmb_json_find(&doc, 0, "messageType");
    if (t < 0 || ssmb_json_get_str(&doc, t, &type) != SSMB_OK) return 0;
    if (ssmb_str_eq(type, SSMB_MSG_START_PUBLICATION) || ssmb_str_eq(type, SSMB_MSG_PAUSE_PUBLICATION)) {
        ssmb__chan_on_publication(ch, ssmb_str_eq(type, SSMB_MSG_START_PUBLICATION));
        return 1;
    }
    if (!ssmb_str_eq(type, SSMB_MSG_CHANNEL_CLOSED)) return 0;
    if (ssmb__json_opt_str(&doc, 0, "Output", &output) != SSMB_OK) output = ssmb__str_empty();
    ssmb__chan_copy_json(ch->reason, sizeof ch->reason, output);
    ssmb__chan_close(ch, SSMB_CLOSED, ch->reason, 0);
    return 1;
}

/* §2.4 rules 1-3, and rule 4 (the digest) when configured. */
static ssmb_result ssmb__chan_validate(const ssmb_channel *ch, const ssmb_msg *m) {
    ssmb_msg head;
    if (ch->cfg.check_digest) return ssmb_msg_validate(m);
    head = *m;
    head.payload_length = 0;
    head.payload_size = 0;
    return ssmb_msg_validate(&head);
}

static void ssmb__chan_dispatch(ssmb_channel *ch, const ssmb_msg *m) {
    if (ssmb_msg_type_is(m, ssmb__chan_peer_type(ch))) ssmb__chan_on_stream(ch, m);
    else if (ssmb_msg_type_is(m, SSMB_MSG_ACKNOWLEDGE)) ssmb__chan_on_ack(ch, m);
    else if (ssmb_msg_type_is(m, SSMB_MSG_CHANNEL_CLOSED)) ssmb__chan_on_closed(ch, m->payload, m->payload_size);
    else ch->m.ignored++; /* §2.6: unknown types are ignored, not acknowledged */
}

static void ssmb__chan_input(ssmb_channel *ch, const uint8_t *frame, size_t len, int is_text) {
    ssmb_msg m;
    ssmb_result r;
    if (ssmb_msg_decode(frame, len, &m) != SSMB_OK) {
        if (!is_text || !ssmb__chan_text_control(ch, frame, len))
            ssmb__chan_drop(ch, &ch->m.dropped_invalid, "undecodable frame");
        return;
    }
    /* §2.4 rule 0, §13 item 3: publication messages are never validated
       and never acknowledged. */
    if (ssmb_msg_type_is(&m, SSMB_MSG_START_PUBLICATION) || ssmb_msg_type_is(&m, SSMB_MSG_PAUSE_PUBLICATION)) {
        ssmb__chan_on_publication(ch, ssmb_msg_type_is(&m, SSMB_MSG_START_PUBLICATION));
        return;
    }
    r = ssmb__chan_validate(ch, &m);
    if (r == SSMB_ERR_DIGEST) ssmb__chan_drop(ch, &ch->m.dropped_digest, "payload digest mismatch");
    else if (r != SSMB_OK) ssmb__chan_drop(ch, &ch->m.dropped_invalid, "frame breaks PROTOCOL.md 2.4");
    else ssmb__chan_dispatch(ch, &m);
}

/* ---- create, destroy ---- */

/* Text the JSON writer takes (valid UTF-8 of at most max bytes). */
static int ssmb__chan_text_ok(const char *s, size_t max) {
    ssmb_json_writer w;
    if (!s) return 1;
    if (strlen(s) > max) return 0;
    ssmb_json_writer_init(&w, NULL, 0);
    ssmb_json_writer_string(&w, s, strlen(s));
    return w.error != SSMB_ERR_MALFORMED;
}

/* Properties for the agent's HandshakeRequest: a JSON object or null. */
static int ssmb__chan_properties_ok(const char *s) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    if (!s || !*s) return 1;
    if (strlen(s) > SSMB_CHANNEL_PROPERTIES_MAX) return 0;
    if (ssmb_json_parse(&doc, s, strlen(s), tokens, SSMB__PAYLOAD_TOKENS) != SSMB_OK) return 0;
    return ssmb_json_kind(&doc, 0) == SSMB_JSON_OBJECT || ssmb_json_is_null(&doc, 0);
}

static int ssmb__chan_desc_ok(const ssmb_channel_desc *d) {
    if (d->role > SSMB_CHANNEL_AGENT || d->digest_check > SSMB_DIGEST_CHECK_OFF) return 0;
    if (!ssmb__allocator_valid(&d->allocator) || d->payload_size > SSMB_CHANNEL_MAX_PAYLOAD) return 0;
    if (d->send_buffer_messages > SSMB__CHAN_MAX_QUEUE || d->reorder_buffer_messages > SSMB__CHAN_MAX_QUEUE ||
        d->reorder_buffer_max_messages > SSMB__CHAN_MAX_QUEUE)
        return 0;
    if (!ssmb__chan_ascii_ok(d->client_version, SSMB_CHANNEL_VERSION_MAX) ||
        !ssmb__chan_ascii_ok(d->agent_version, SSMB_CHANNEL_VERSION_MAX) ||
        !ssmb__chan_ascii_ok(d->session_type, SSMB_CHANNEL_VERSION_MAX) || !ssmb__chan_ascii_ok(d->kms_key_id, 255))
        return 0;
    /* An agent asking for KMS must be able to encrypt (§6). */
    if (d->role == SSMB_CHANNEL_AGENT && d->kms_key_id && *d->kms_key_id && !ssmb_kms_supported()) return 0;
    return ssmb__chan_text_ok(d->customer_message, SSMB_CHANNEL_TEXT_MAX) &&
           ssmb__chan_properties_ok(d->session_properties);
}

static uint32_t ssmb__chan_or(uint32_t v, uint32_t def) { return v ? v : def; }

static void ssmb__chan_defaults(const ssmb_channel_desc *d, ssmb__chan_cfg *c) {
    size_t least;
    c->role = d->role;
    c->payload_size = ssmb__chan_or(d->payload_size, 1024);
    c->max_frame = ssmb__chan_or(d->max_frame, 16384 + SSMB_MSG_HEADER_SIZE + SSMB_KMS_OVERHEAD);
    c->max_attempts = ssmb__chan_or(d->max_resend_attempts, 3000);
    c->send_msgs = ssmb__chan_or(d->send_buffer_messages, 32);
    c->reorder_msgs = ssmb__chan_or(d->reorder_buffer_messages, 16);
    c->ack_cap = c->reorder_msgs + 32;
    c->reorder_bytes = ssmb__chan_or(d->reorder_buffer_bytes, 8192);
    c->reorder_max_bytes = d->reorder_buffer_max_bytes > c->reorder_bytes ? d->reorder_buffer_max_bytes : c->reorder_bytes;
    c->reorder_max_msgs = d->reorder_buffer_max_messages ? d->reorder_buffer_max_messages
                          : c->reorder_max_bytes > c->reorder_bytes ? SSMB__CHAN_REORDER_WINDOW
                                                                    : c->reorder_msgs;
    if (c->reorder_max_msgs < c->reorder_msgs) c->reorder_max_msgs = c->reorder_msgs;
    /* The client may be asked for KMS by any agent; the agent asks when
       configured to. Incoming payloads are opened into a buffer of their
       largest size, outgoing ones grow by 28 bytes (§6.3). */
    c->kms = ssmb_kms_supported() &&
             (d->role == SSMB_CHANNEL_CLIENT || (d->kms_key_id != NULL && d->kms_key_id[0] != '\0'));
    c->in_place = d->decrypt_in_place != 0;
    c->plain_bytes =
        c->kms && !c->in_place && c->max_frame > SSMB_MSG_HEADER_SIZE ? c->max_frame - SSMB_MSG_HEADER_SIZE : 0;
    /* room for one full data frame and for any handshake message */
    least = SSMB_MSG_HEADER_SIZE + (c->payload_size + SSMB_KMS_OVERHEAD > SSMB__CHAN_CONTROL_MAX
                                        ? c->payload_size + SSMB_KMS_OVERHEAD
                                        : SSMB__CHAN_CONTROL_MAX);
    c->send_bytes = ssmb__chan_or(d->send_buffer_bytes, 16384);
    if (c->send_bytes < least) c->send_bytes = least;
    c->check_digest = d->digest_check == SSMB_DIGEST_CHECK_ON ||
                      (d->digest_check == SSMB_DIGEST_CHECK_DEFAULT && d->role == SSMB_CHANNEL_CLIENT);
}

/* Appends an n-byte part, 16-aligned; 0 on overflow. */
static int ssmb__chan_part(size_t *at, size_t n, size_t *off) {
    size_t start = (*at + 15) & ~(size_t)15;
    if (start < *at || ssmb_size_add(start, n, at) != SSMB_OK) return 0;
    *off = start;
    return 1;
}

static int ssmb__chan_measure(const ssmb__chan_cfg *c, ssmb__chan_layout *l) {
    size_t at = sizeof(ssmb_channel), entries = 0, slots = 0, acks = 0;
    if (ssmb_size_mul(c->send_msgs, sizeof(ssmb__chan_entry), &entries) != SSMB_OK ||
        ssmb_size_mul(c->reorder_msgs, sizeof(ssmb__chan_slot), &slots) != SSMB_OK ||
        ssmb_size_mul(c->ack_cap, sizeof(ssmb__chan_ack), &acks) != SSMB_OK)
        return 0;
    if (!ssmb__chan_part(&at, c->send_bytes, &l->send_bytes) || !ssmb__chan_part(&at, entries, &l->send) ||
        !ssmb__chan_part(&at, c->reorder_bytes, &l->reorder) || !ssmb__chan_part(&at, slots, &l->slots) ||
        !ssmb__chan_part(&at, acks, &l->acks) || !ssmb__chan_part(&at, c->plain_bytes, &l->plain))
        return 0;
    l->total = at;
    return 1;
}

static void ssmb__chan_strings(ssmb_channel *ch, const ssmb_channel_desc *d) {
    const char *cv = d->client_version && *d->client_version ? d->client_version : SSMB_CHANNEL_CLIENT_VERSION;
    const char *av = d->agent_version && *d->agent_version ? d->agent_version : SSMB_CHANNEL_AGENT_VERSION;
    if (d->role == SSMB_CHANNEL_CLIENT) {
        ssmb__chan_copy_c(ch->client_version, sizeof ch->client_version, cv);
        return;
    }
    ssmb__chan_copy_c(ch->agent_version, sizeof ch->agent_version, av);
    ssmb__chan_copy_c(ch->session_type, sizeof ch->session_type, d->session_type);
    ssmb__chan_copy_c(ch->properties, sizeof ch->properties, d->session_properties);
    ssmb__chan_copy_c(ch->kms_key_id, sizeof ch->kms_key_id, d->kms_key_id);
    ssmb__chan_copy_c(ch->message, sizeof ch->message, d->customer_message);
}

static void ssmb__chan_init(ssmb_channel *ch, const ssmb_channel_desc *d, const ssmb__chan_cfg *c,
                            const ssmb__chan_layout *l) {
    uint8_t *base = (uint8_t *)ch;
    memset(ch, 0, l->total);
    ch->mem_size = l->total;
    ch->alloc = d->allocator;
    ch->logger = d->logger;
    ch->random_fn = d->random_fn ? d->random_fn : ssmb_random_system;
    ch->random_user_data = d->random_user_data;
    ch->utc_fn = d->utc_fn ? d->utc_fn : ssmb_utc_system;
    ch->utc_user_data = d->utc_user_data;
    ch->start_epoch_ms = d->start_epoch_ms;
    ch->cfg = *c;
    ch->send_bytes = base + l->send_bytes;
    ch->send = (ssmb__chan_entry *)(void *)(base + l->send);
    ch->reorder_bytes = ch->inline_reorder = base + l->reorder;
    ch->slots = ch->inline_slots = (ssmb__chan_slot *)(void *)(base + l->slots);
    ch->slot_cap = c->reorder_msgs;
    ch->reorder_cap = c->reorder_bytes;
    ch->acks = (ssmb__chan_ack *)(void *)(base + l->acks);
    ch->held_slot = -1;
    ch->pool_used = SSMB__CHAN_RANDOM_POOL;
    ch->hs_deadline = SSMB_NO_DEADLINE;
    ch->plain = c->plain_bytes ? base + l->plain : NULL;
    ssmb_rto_init(&ch->rto);
    ssmb__chan_strings(ch, d);
}

SSMB_APIDEF size_t ssmb_channel_memory_size(const ssmb_channel_desc *desc) {
    ssmb__chan_cfg c;
    ssmb__chan_layout l;
    if (!desc || !ssmb__chan_desc_ok(desc)) return 0;
    ssmb__chan_defaults(desc, &c);
    return ssmb__chan_measure(&c, &l) ? l.total : 0;
}

SSMB_APIDEF ssmb_result ssmb_channel_create(const ssmb_channel_desc *d, ssmb_channel **out) {
    ssmb__chan_cfg c;
    ssmb__chan_layout l;
    ssmb_channel *ch;
    if (!out) return SSMB_ERR_INVALID_ARG;
    *out = NULL;
    if (!d) return SSMB_ERR_INVALID_ARG;
    if (!ssmb__chan_desc_ok(d)) {
        ssmb__log(&d->logger, "ssmb.channel", SSMB_LOG_ERROR, SSMB_LOGITEM_DESC_INVALID,
                  "ssmb_channel_desc: role, allocator, payload_size, a buffer size, a version, "
                  "session_type, session_properties, customer_message or kms_key_id (needs AES-GCM) invalid",
                  (uint32_t)__LINE__);
        return SSMB_ERR_INVALID_ARG;
    }
    ssmb__chan_defaults(d, &c);
    if (!ssmb__chan_measure(&c, &l)) return SSMB_ERR_OVERFLOW;
    ch = (ssmb_channel *)ssmb__alloc(&d->allocator, l.total);
    if (!ch) return SSMB_ERR_NOMEM;
    ssmb__chan_init(ch, d, &c, &l);
    if (!ssmb__chan_uuid(ch, &ch->client_id)) { /* one ClientId per run (§4.2) */
        ssmb__free(&d->allocator, ch, l.total);
        return SSMB_ERR_NO_RANDOM;
    }
    *out = ch;
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_channel_destroy(ssmb_channel *ch) {
    if (!ch) return;
    ssmb__chan_drop_grown(ch);
    ssmb__free_object(ch, &ch->alloc, ch->mem_size); /* session payloads are wiped with it */
}

/* The agent opens with its HandshakeRequest, or is ready at once. */
static ssmb_result ssmb__chan_start_agent(ssmb_channel *ch) {
    ssmb_result r;
    if (!ch->session_type[0]) {
        ssmb__chan_copy_c(ch->session_type, sizeof ch->session_type, "Standard_Stream");
        ssmb__chan_become_ready(ch);
        return SSMB_OK;
    }
    ch->handshake_asked = 1;
    ch->handshake_start = ch->now;
    ch->hs_deadline = ch->now + SSMB__CHAN_HANDSHAKE_MS;
    if (ch->kms_key_id[0] && !ssmb__chan_make_challenge(ch)) r = SSMB_ERR_NO_RANDOM;
    else r = ssmb__chan_send_request(ch);
    ssmb__chan_fail(ch, r);
    return r;
}

SSMB_APIDEF ssmb_result ssmb_channel_start(ssmb_channel *ch, uint64_t now_ms) {
    if (!ch) return SSMB_ERR_INVALID_ARG;
    if (ch->state != SSMB__CHAN_IDLE) return SSMB_ERR_INVALID_STATE;
    ch->now = ch->now_base = now_ms;
    if (ch->start_epoch_ms) {
        ch->epoch_ms = ch->start_epoch_ms;
    } else {
        int64_t utc = ch->utc_fn(ch->utc_user_data);
        ch->epoch_ms = utc > 0 ? (uint64_t)utc * 1000 : 1; /* never zero (§14 item 4) */
    }
    ch->state = SSMB__CHAN_OPEN;
    return ch->cfg.role == SSMB_CHANNEL_AGENT ? ssmb__chan_start_agent(ch) : SSMB_OK;
}

/* ---- input, events ---- */

/* Poll first when a waiting event still points into the caller's last
   frame or into the decryption buffer (one payload at a time), when a
   kept payload is next in order, or when one message's events (three at
   most) might not fit. */
static int ssmb__chan_busy(ssmb_channel *ch) {
    if (ch->ev_count == 0) ssmb__chan_release_held(ch);
    return ch->borrowed || ch->plain_held || ch->ev_count > SSMB__CHAN_EVENTS - 4 ||
           ssmb__chan_slot_find(ch, ch->expected) >= 0;
}

/* While events wait, a message that causes none now is still taken:
   acknowledgements, repeats (acknowledged again), and messages that came
   early (kept when the reorder store has room, else dropped). A peer that
   waits for us to take its data before it reads ours would otherwise wait
   for us while we wait for its acks. 0: it must wait (SSMB_AGAIN): the
   next message in order (back-pressure) and other message types. */
static int ssmb__chan_take_busy(ssmb_channel *ch, const uint8_t *frame, size_t len) {
    ssmb_msg m;
    ssmb_result r;
    if (len > ch->cfg.max_frame || ssmb_msg_decode(frame, len, &m) != SSMB_OK) return 0;
    if (ssmb_msg_type_is(&m, ssmb__chan_peer_type(ch))) {
        if (m.sequence_number == ch->expected && ssmb__chan_slot_find(ch, m.sequence_number) < 0) return 0;
    } else if (!ssmb_msg_type_is(&m, SSMB_MSG_ACKNOWLEDGE)) {
        return 0;
    }
    ch->m.frames_in++;
    ch->m.bytes_in += len;
    r = ssmb__chan_validate(ch, &m);
    if (r == SSMB_ERR_DIGEST) ssmb__chan_drop(ch, &ch->m.dropped_digest, "payload digest mismatch");
    else if (r != SSMB_OK) ssmb__chan_drop(ch, &ch->m.dropped_invalid, "frame breaks PROTOCOL.md 2.4");
    else if (m.sequence_number == ch->expected && ssmb_msg_type_is(&m, ssmb__chan_peer_type(ch))) {
        ch->m.duplicates++; /* kept already */
        (void)ssmb__chan_queue_ack(ch, &m);
    } else {
        ssmb__chan_dispatch(ch, &m);
    }
    return 1;
}

SSMB_APIDEF ssmb_result ssmb_channel_recv(ssmb_channel *ch, const uint8_t *frame, size_t len, int is_text,
                                          uint64_t now_ms) {
    if (!ch || (!frame && len)) return SSMB_ERR_INVALID_ARG;
    if (ch->state == SSMB__CHAN_IDLE) return SSMB_ERR_INVALID_STATE;
    if (ch->state == SSMB__CHAN_OVER) return ch->error;
    if (ssmb__chan_busy(ch)) {
        ch->now = now_ms;
        return ssmb__chan_take_busy(ch, frame, len) ? SSMB_OK : SSMB_AGAIN;
    }
    ch->now = now_ms;
    ch->m.frames_in++;
    ch->m.bytes_in += len;
    if (len > ch->cfg.max_frame) ssmb__chan_drop(ch, &ch->m.dropped_oversize, "frame longer than max_frame");
    else ssmb__chan_input(ch, frame, len, is_text);
    return SSMB_OK;
}

SSMB_APIDEF int ssmb_channel_borrows(const ssmb_channel *ch) { return ch && ch->borrowed != 0; }

SSMB_APIDEF int ssmb_channel_has_events(const ssmb_channel *ch) {
    if (!ch) return 0;
    return ch->ev_count > 0 || (ch->state == SSMB__CHAN_OPEN && ssmb__chan_slot_find(ch, ch->expected) >= 0);
}

SSMB_APIDEF ssmb_result ssmb_channel_poll(ssmb_channel *ch, ssmb_channel_event *ev) {
    if (!ch || !ev) return SSMB_ERR_INVALID_ARG;
    if (ch->state == SSMB__CHAN_IDLE) return SSMB_ERR_INVALID_STATE;
    if (ch->ev_count == 0) {
        ssmb__chan_release_held(ch);
        ssmb__chan_advance(ch);
    }
    if (ch->ev_count) {
        *ev = ch->events[ch->ev_front];
        ch->borrowed -= ch->ev_borrowed[ch->ev_front] == SSMB__CHAN_EV_FRAME;
        ch->plain_held -= ch->ev_borrowed[ch->ev_front] == SSMB__CHAN_EV_PLAIN;
        ch->ev_front = (ch->ev_front + 1) % SSMB__CHAN_EVENTS;
        ch->ev_count--;
        return SSMB_OK;
    }
    memset(ev, 0, sizeof *ev);
    return ch->state == SSMB__CHAN_OVER ? SSMB_CLOSED : SSMB_AGAIN;
}

/* ---- output ---- */

SSMB_APIDEF ssmb_result ssmb_channel_next_frame(ssmb_channel *ch, const uint8_t **frame, size_t *len) {
    ssmb__chan_entry *e;
    ssmb_result r;
    if (!ch || !frame || !len) return SSMB_ERR_INVALID_ARG;
    *frame = NULL;
    *len = 0;
    if (ch->state == SSMB__CHAN_IDLE) return SSMB_ERR_INVALID_STATE;
    if (ch->state == SSMB__CHAN_OVER) return ch->error;
    ssmb__chan_digest_flush(ch); /* no frame goes out without its digest */
    if (ch->cur_kind == SSMB__CHAN_CUR_NONE) ssmb__chan_choose(ch);
    if (ch->cur_kind == SSMB__CHAN_CUR_ACK) {
        if (!ch->ack_frame_len && (r = ssmb__chan_build_ack(ch)) != SSMB_OK) {
            ssmb__chan_fail(ch, r);
            return ch->error;
        }
        *frame = ch->ack_frame;
        *len = ch->ack_frame_len;
        return SSMB_OK;
    }
    e = ch->cur_kind == SSMB__CHAN_CUR_ENTRY ? ssmb__chan_entry_of(ch, ch->cur_seq) : NULL;
    if (!e) return SSMB_AGAIN;
    *frame = ch->send_bytes + e->off;
    *len = e->len;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_channel_frame_sent(ssmb_channel *ch, uint64_t now_ms) {
    ssmb__chan_entry *e;
    if (!ch) return SSMB_ERR_INVALID_ARG;
    if (ch->cur_kind == SSMB__CHAN_CUR_NONE) return SSMB_ERR_INVALID_STATE;
    ch->now = now_ms;
    if (ch->cur_kind == SSMB__CHAN_CUR_ACK) {
        ch->ack_front = (ch->ack_front + 1) % ch->cfg.ack_cap;
        ch->ack_count--;
        ch->m.acks_out++;
        ch->m.frames_out++;
        ch->m.bytes_out += ch->ack_frame_len;
        ch->ack_frame_len = 0;
    } else if ((e = ssmb__chan_entry_of(ch, ch->cur_seq)) != NULL) {
        ssmb__chan_entry_sent(ch, e);
    }
    ch->cur_kind = SSMB__CHAN_CUR_NONE;
    ssmb__chan_reclaim(ch);
    return SSMB_OK;
}

/* SSMB_OK when data may be queued now, else why not (§5.1, §8.1). */
static ssmb_result ssmb__chan_can_send(const ssmb_channel *ch) {
    if (ch->state == SSMB__CHAN_IDLE) return SSMB_ERR_INVALID_STATE;
    if (ch->state == SSMB__CHAN_OVER) return ch->error;
    return ch->ready && !ch->paused ? SSMB_OK : SSMB_AGAIN;
}

/* Payload types the channel sends by itself. */
static int ssmb__chan_own_payload(uint32_t t) {
    return t == SSMB_PAYLOAD_NONE || (t >= SSMB_PAYLOAD_HANDSHAKE_REQUEST && t <= SSMB_PAYLOAD_ENC_CHALLENGE_RESPONSE);
}

SSMB_APIDEF ssmb_result ssmb_channel_send(ssmb_channel *ch, uint32_t payload_type, const void *data, size_t len,
                                          size_t *accepted) {
    const uint8_t *p = (const uint8_t *)data;
    size_t done = 0;
    ssmb_result r;
    if (accepted) *accepted = 0;
    if (!ch || (!data && len) || ssmb__chan_own_payload(payload_type)) return SSMB_ERR_INVALID_ARG;
    r = ssmb__chan_can_send(ch);
    ch->pair_digests = 1; /* digests in pairs, within this call and with the next one */
    while (r == SSMB_OK && done < len) { /* never an empty payload (§2.5) */
        size_t n = SSMB__MIN(len - done, (size_t)ch->cfg.payload_size);
        r = ssmb__chan_enqueue(ch, payload_type, p + done, n);
        if (r == SSMB_OK) done += n;
    }
    ch->pair_digests = 0;
    if (accepted) *accepted = done;
    if (r < 0 && ch->state == SSMB__CHAN_OPEN) ssmb__chan_fail(ch, r);
    if (r < 0 || r == SSMB_CLOSED) return r;
    return done > 0 || (r == SSMB_OK && len == 0) ? SSMB_OK : SSMB_AGAIN;
}

SSMB_APIDEF size_t ssmb_channel_send_space(const ssmb_channel *ch) {
    size_t room, head = SSMB_MSG_HEADER_SIZE;
    if (!ch || ssmb__chan_can_send(ch) != SSMB_OK) return 0;
    if (ssmb__chan_encrypts(ch, SSMB_PAYLOAD_OUTPUT)) head += SSMB_KMS_OVERHEAD;
    room = ssmb__chan_largest_room(ch);
    return room > head ? SSMB__MIN(room - head, (size_t)ch->cfg.payload_size) : 0;
}

SSMB_APIDEF size_t ssmb_channel_send_places(ssmb_channel *ch, uint32_t payload_type, ssmb_send_place *places,
                                            size_t max) {
    size_t at_end, at_start, end, room, head, stride, count, i;
    uint32_t base;
    if (!ch) return 0;
    ch->place_left = 0;
    if (!places || !max || ssmb__chan_own_payload(payload_type) || ssmb__chan_can_send(ch) != SSMB_OK) return 0;
    ch->place_enc = ssmb__chan_encrypts(ch, payload_type);
    head = SSMB_MSG_HEADER_SIZE + (ch->place_enc ? SSMB_KMS_OVERHEAD : 0);
    stride = head + ch->cfg.payload_size;
    ssmb__chan_room(ch, &at_end, &at_start, &end);
    /* as ssmb__chan_reserve: after the newest frame, else from offset 0 */
    room = at_end >= stride || at_end >= at_start ? at_end : at_start;
    base = room == at_end ? (uint32_t)end : 0;
    if (room <= head) return 0;
    count = SSMB__MIN(room / stride, (size_t)(ch->cfg.send_msgs - ch->send_count));
    ch->place_cap = ch->cfg.payload_size;
    if (count == 0) { /* one shorter place, as send_space says */
        count = ch->send_count < ch->cfg.send_msgs;
        ch->place_cap = room - head;
        stride = room;
    }
    count = SSMB__MIN(count, max);
    for (i = 0; i < count; i++) {
        places[i].data = ch->send_bytes + base + i * stride + ssmb__chan_plain_at(ch->place_enc);
        places[i].cap = ch->place_cap;
    }
    ch->place_left = (uint32_t)count;
    ch->place_off = base;
    ch->place_stride = (uint32_t)stride;
    ch->place_type = payload_type;
    return count;
}

SSMB_APIDEF ssmb_result ssmb_channel_send_commit(ssmb_channel *ch, size_t n) {
    uint32_t off;
    ssmb_result r;
    if (!ch) return SSMB_ERR_INVALID_ARG;
    if (ch->state == SSMB__CHAN_OVER) return ch->error;
    if (!ch->place_left) return SSMB_ERR_INVALID_STATE;
    if (n == 0 || n > ch->place_cap) return SSMB_ERR_INVALID_ARG;
    off = ch->place_off;
    ch->place_off += ch->place_stride;
    ch->place_left--;
    ch->pair_digests = 1; /* as send: digests in pairs */
    r = ssmb__chan_seal_plain(ch, ch->send_bytes + off, off, ch->place_type, n, ch->place_enc);
    ch->pair_digests = 0;
    if (r < 0) {
        ch->place_left = 0;
        if (ch->state == SSMB__CHAN_OPEN) ssmb__chan_fail(ch, r);
    }
    return r;
}

/* One small control payload, whole or not at all. */
static ssmb_result ssmb__chan_send_small(ssmb_channel *ch, uint32_t type, const void *p, size_t n) {
    ssmb_result r;
    if (!ch) return SSMB_ERR_INVALID_ARG;
    r = ssmb__chan_can_send(ch);
    if (r == SSMB_OK) r = ssmb__chan_enqueue(ch, type, p, n);
    if (r < 0 && ch->state == SSMB__CHAN_OPEN) ssmb__chan_fail(ch, r);
    return r;
}

SSMB_APIDEF ssmb_result ssmb_channel_send_size(ssmb_channel *ch, uint32_t cols, uint32_t rows) {
    char json[64];
    size_t n = 0;
    if (ssmb_terminal_size_build(cols, rows, json, sizeof json, &n) != SSMB_OK) return SSMB_ERR_INTERNAL;
    return ssmb__chan_send_small(ch, SSMB_PAYLOAD_SIZE, json, n);
}

SSMB_APIDEF ssmb_result ssmb_channel_send_flag(ssmb_channel *ch, uint32_t flag) {
    uint8_t bytes[4];
    ssmb_flag_encode(flag, bytes);
    return ssmb__chan_send_small(ch, SSMB_PAYLOAD_FLAG, bytes, sizeof bytes);
}

/* ---- time, reconnects, queries ---- */

SSMB_APIDEF ssmb_result ssmb_channel_tick(ssmb_channel *ch, uint64_t now_ms) {
    if (!ch) return SSMB_ERR_INVALID_ARG;
    if (ch->state == SSMB__CHAN_IDLE) return SSMB_ERR_INVALID_STATE;
    if (ch->state == SSMB__CHAN_OVER) return ch->error;
    ch->now = now_ms;
    ssmb__chan_timers(ch);
    return ch->state == SSMB__CHAN_OVER ? ch->error : SSMB_OK;
}

SSMB_APIDEF uint64_t ssmb_channel_next_deadline(const ssmb_channel *ch) {
    uint64_t best = SSMB_NO_DEADLINE;
    uint32_t i;
    if (!ch || ch->state != SSMB__CHAN_OPEN) return best;
    if (!ch->ready) best = ch->hs_deadline;
    if (ch->paused) return best;
    for (i = 0; i < ch->send_sent; i++) {
        const ssmb__chan_entry *e = ssmb__chan_at(ch, i);
        if (e->state == SSMB__CHAN_INFLIGHT && e->sent_ms + ssmb__chan_due_ms(ch) < best)
            best = e->sent_ms + ssmb__chan_due_ms(ch);
    }
    return best;
}

/* §4.5: the old socket took whatever was in flight with it. A new
   connection starts unpaused (a lasting pause is announced again). */
SSMB_APIDEF ssmb_result ssmb_channel_reconnected(ssmb_channel *ch, uint64_t now_ms) {
    uint32_t i;
    if (!ch) return SSMB_ERR_INVALID_ARG;
    if (ch->state == SSMB__CHAN_IDLE) return SSMB_ERR_INVALID_STATE;
    if (ch->state == SSMB__CHAN_OVER) return ch->error;
    ch->now = now_ms;
    ch->cur_kind = SSMB__CHAN_CUR_NONE;
    ch->ack_frame_len = 0;
    for (i = 0; i < ch->send_sent; i++) {
        ssmb__chan_entry *e = ssmb__chan_at(ch, i);
        if (e->state != SSMB__CHAN_INFLIGHT) continue;
        e->state = SSMB__CHAN_RESEND;
        ch->resend_count++;
    }
    ssmb__chan_on_publication(ch, 1);
    ssmb__chan_reclaim(ch);
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_channel_open_frame(ssmb_channel *ch, const char *token, char *out, size_t cap,
                                                size_t *out_len) {
    ssmb_open_data_channel o;
    if (!ch || !token) return SSMB_ERR_INVALID_ARG;
    memset(&o, 0, sizeof o);
    o.token_value = ssmb_str_c(token);
    o.client_id = ch->client_id;
    o.client_version = ssmb_str_c(ch->cfg.role == SSMB_CHANNEL_CLIENT ? ch->client_version : "");
    if (!ssmb__chan_uuid(ch, &o.request_id)) return SSMB_ERR_NO_RANDOM; /* fresh per (re)connect (§4.2) */
    return ssmb_open_data_channel_build(&o, out, cap, out_len);
}

SSMB_APIDEF void ssmb_channel_get_metrics(const ssmb_channel *ch, ssmb_channel_metrics *out) {
    if (!out) return;
    if (!ch) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = ch->m;
    out->rtt_us = (uint64_t)ch->rto.rtt_ns / 1000;
    out->rttvar_us = (uint64_t)ch->rto.rttvar_ns / 1000;
    out->rto_us = (uint64_t)ch->rto.rto_ns / 1000;
}

SSMB_APIDEF ssmb_result ssmb_channel_last_error(const ssmb_channel *ch) {
    if (!ch) return SSMB_ERR_INVALID_ARG;
    return ch->state == SSMB__CHAN_OVER ? ch->error : SSMB_OK;
}

SSMB_APIDEF int ssmb_channel_is_ready(const ssmb_channel *ch) { return ch && ch->ready; }

/* ---- KMS: the host's answers (§6.2, §6.5) ---- */

/* SSMB_OK when a KMS event waits for its answer and a handshake message
   fits in the ring. */
static ssmb_result ssmb__chan_kms_answerable(ssmb_channel *ch, uint64_t now_ms) {
    if (ch->state == SSMB__CHAN_IDLE) return SSMB_ERR_INVALID_STATE;
    if (ch->state == SSMB__CHAN_OVER) return ch->error;
    if (ch->kms_state != SSMB__CHAN_KMS_WAIT_KEY) return SSMB_ERR_INVALID_STATE;
    ch->now = now_ms;
    return ssmb__chan_largest_room(ch) >= SSMB_MSG_HEADER_SIZE + SSMB__CHAN_CONTROL_MAX ? SSMB_OK : SSMB_AGAIN;
}

/* Client: the KMSEncryption answer, then the HandshakeResponse (§5.3). */
static ssmb_result ssmb__chan_client_key(ssmb_channel *ch, const uint8_t *key, const uint8_t *blob, size_t blob_len) {
    ssmb_processed_action *a = &ch->answer.actions[ch->kms_action];
    size_t rn = 0;
    ssmb_result r = ssmb_kms_action_result_build(blob, blob_len, ch->kms_challenge[0] != '\0', ch->kms_result,
                                                 sizeof ch->kms_result, &rn);
    if (r == SSMB_OK) r = ssmb_kms_keys_init(&ch->kms, SSMB_CHANNEL_CLIENT, key, SSMB_KMS_DATA_KEY_SIZE);
    if (r != SSMB_OK) return r;
    a->status = SSMB_ACTION_SUCCESS;
    a->result_json = ssmb_str_c(ch->kms_result);
    /* §6.4: encryption starts with the successful response */
    ch->kms_state = SSMB__CHAN_KMS_ON;
    ssmb__chan_send_response(ch, &ch->answer);
    return ch->state == SSMB__CHAN_OVER ? ch->error : SSMB_OK;
}

/* Agent: the keys from KMS Decrypt, then the EncChallengeRequest (§6.5):
   64 random bytes sealed with the agent-to-client key; 15 s for the
   answer (§5.5). */
static ssmb_result ssmb__chan_agent_key(ssmb_channel *ch, const uint8_t *key, const uint8_t *blob, size_t blob_len) {
    uint8_t seed[12], nonce[12], *dst;
    uint32_t off = 0;
    size_t n = 0;
    ssmb_result r;
    if (blob_len != ch->kms_blob_len || !ssmb_equal_ct(blob, ch->kms_blob, blob_len)) return SSMB_ERR_INVALID_ARG;
    if (ch->random_fn(seed, sizeof seed, ch->random_user_data) != SSMB_OK ||
        ch->random_fn(ch->kms_secret, sizeof ch->kms_secret, ch->random_user_data) != SSMB_OK)
        return SSMB_ERR_NO_RANDOM;
    r = ssmb_kms_keys_init(&ch->kms, SSMB_CHANNEL_AGENT, key, SSMB_KMS_DATA_KEY_SIZE);
    if (r != SSMB_OK) return r;
    ssmb_kms_nonce_init(&ch->nonces, seed);
    ssmb_kms_nonce_next(&ch->nonces, nonce);
    dst = ssmb__chan_reserve_control(ch, &off);
    r = dst ? ssmb_kms_challenge_request(&ch->kms, ch->kms_secret, sizeof ch->kms_secret, nonce,
                                         (char *)dst + SSMB_MSG_HEADER_SIZE, SSMB__CHAN_CONTROL_MAX, &n)
            : SSMB_ERR_INTERNAL;
    if (r == SSMB_OK) r = ssmb__chan_seal(ch, dst, off, SSMB_PAYLOAD_ENC_CHALLENGE_REQUEST, n);
    if (r != SSMB_OK) {
        ssmb_kms_keys_clear(&ch->kms);
        return r;
    }
    ch->kms_state = SSMB__CHAN_KMS_CHALLENGE;
    ch->hs_deadline = ch->now + SSMB__CHAN_HANDSHAKE_MS;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_channel_kms_key(ssmb_channel *ch, const uint8_t *plaintext, size_t n,
                                             const uint8_t *ciphertext_blob, size_t blob_len, uint64_t now_ms) {
    ssmb_result r;
    if (!ch || !plaintext || n != SSMB_KMS_DATA_KEY_SIZE || !ciphertext_blob || blob_len == 0)
        return SSMB_ERR_INVALID_ARG;
    if (blob_len > SSMB_CHANNEL_KMS_BLOB_MAX) return SSMB_ERR_LIMIT;
    r = ssmb__chan_kms_answerable(ch, now_ms);
    if (r != SSMB_OK) return r;
    r = ch->cfg.role == SSMB_CHANNEL_CLIENT ? ssmb__chan_client_key(ch, plaintext, ciphertext_blob, blob_len)
                                            : ssmb__chan_agent_key(ch, plaintext, ciphertext_blob, blob_len);
    if (r == SSMB_ERR_NO_RANDOM || r == SSMB_ERR_INTERNAL) ssmb__chan_fail(ch, r);
    return r;
}

SSMB_APIDEF ssmb_result ssmb_channel_kms_failed(ssmb_channel *ch, const char *error, uint64_t now_ms) {
    ssmb_processed_action *a;
    ssmb_result r;
    if (!ch) return SSMB_ERR_INVALID_ARG;
    r = ssmb__chan_kms_answerable(ch, now_ms);
    if (r != SSMB_OK) return r;
    ch->kms_state = SSMB__CHAN_KMS_NONE;
    if (ch->cfg.role == SSMB_CHANNEL_AGENT) {
        ssmb__chan_join(ch->reason, sizeof ch->reason, "KMS Decrypt of the client's data key failed: ",
                        ssmb_str_c(error ? error : ""));
        ssmb__chan_close(ch, SSMB_ERR_AUTH, ch->reason, 0);
        return SSMB_OK;
    }
    /* §5.3: status Failed, Error "Failed to process action KMSEncryption:
       <reason>"; the agent then ends the session. */
    a = &ch->answer.actions[ch->kms_action];
    a->status = SSMB_ACTION_FAILED;
    ssmb__chan_join(ch->answer.errors[ch->kms_action], SSMB__CHAN_ERROR_MAX, "Failed to process action KMSEncryption: ",
                    ssmb_str_c(error && *error ? error : "KMS GenerateDataKey failed"));
    a->error = ssmb_str_c(ch->answer.errors[ch->kms_action]);
    ssmb__chan_send_response(ch, &ch->answer);
    return ch->state == SSMB__CHAN_OVER ? ch->error : SSMB_OK;
}

SSMB_APIDEF int ssmb_channel_encrypted(const ssmb_channel *ch) { return ch && ch->kms.ready == 1; }

/* ---- version gates (§7.6) ---- */

/* One dotted part as Go's strconv.Atoi reads it: an optional sign, then
   decimal digits, within int64. */
static int ssmb__version_part(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = n > 0 && s[0] == '-';
    uint64_t v = 0, limit;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) i = 1;
    if (i == n) return 0;
    limit = (uint64_t)INT64_MAX + (uint64_t)neg;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (limit - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = !neg ? (int64_t)v : v > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)v;
    return 1;
}

/* Same number of parts, every part a number, a > b at the first part
   that differs; the reference's rule (PLUGIN versionutil). */
SSMB_APIDEF int ssmb_version_gt(const char *a, const char *b) {
    int cmp = 0;
    if (!a || !b) return 0;
    for (;;) {
        size_t na = strcspn(a, "."), nb = strcspn(b, ".");
        int64_t va, vb;
        if (!ssmb__version_part(a, na, &va) || !ssmb__version_part(b, nb, &vb)) return 0;
        if (cmp == 0 && va != vb) cmp = va > vb ? 1 : -1;
        a += na;
        b += nb;
        if (*a != *b) return 0; /* one has more parts */
        if (*a == '\0') return cmp > 0;
        a++;
        b++;
    }
}

SSMB_APIDEF int ssmb_agent_has(const char *agent_version, uint32_t feature) {
    switch (feature) {
    case SSMB_AGENT_TERMINATE_FLAG: return ssmb_version_gt(agent_version, "2.3.722.0");
    case SSMB_AGENT_MUX: return ssmb_version_gt(agent_version, "3.0.196.0");
    case SSMB_AGENT_NO_SMUX_KEEPALIVE: return ssmb_version_gt(agent_version, "3.1.1511.0");
    default: return 0;
    }
}

// >>smux
/* smux protocol version 1 (PROTOCOL.md §7.4, §16), sans-I/O. One
   allocation holds the struct, the stream slots, their receive rings and
   the output buffer. */

#define SSMB__SMUX_MAX_STREAMS 1024u        /* bounds the per-frame slot search */
#define SSMB__SMUX_MIN_CHUNK 256u           /* a PSH cut shorter than this waits for room */
#define SSMB__SMUX_NO_SLOT 0xffffffffu

/* Slot states. A slot is free, open both ways, or ended by the peer's FIN
   (data may still wait to be read). */
enum { SSMB__SMUX_FREE = 0, SSMB__SMUX_OPEN = 1, SSMB__SMUX_PEER_FIN = 2 };
/* Pending event bits of a slot, reported lowest first. */
enum { SSMB__SMUX_EV_OPENED = 1u, SSMB__SMUX_EV_DATA = 2u, SSMB__SMUX_EV_CLOSED = 4u };
/* What the input parser is inside. */
enum { SSMB__SMUX_IN_HEADER = 0, SSMB__SMUX_IN_DATA = 1 };

/* One stream. Its receive ring: rx[(rx_head + i) % rx_cap] for
   i < rx_count (invariant: rx_count <= rx_cap). */
typedef struct ssmb__smux_slot {
    uint32_t id;
    uint32_t state;                     /* SSMB__SMUX_FREE ... */
    uint32_t events;                    /* SSMB__SMUX_EV_* not yet polled */
    uint32_t queued;                    /* 1 while on the event list */
    uint32_t next;                      /* event list link */
    uint8_t *rx;
    size_t rx_head, rx_count;
} ssmb__smux_slot;

/* The desc with its defaults filled in. */
typedef struct ssmb__smux_cfg {
    uint32_t role, max_streams, max_data, keepalive, interval_ms, timeout_ms;
    size_t rx_cap, out_cap, reserve;
} ssmb__smux_cfg;

struct ssmb_smux {
    size_t mem_size;                    /* the one allocation, for free_fn */
    ssmb_allocator alloc;
    ssmb__smux_cfg cfg;
    ssmb_result error;                  /* SSMB_OK, or the sticky error */
    int error_told;                     /* the ERROR event was polled */
    uint32_t next_id;                   /* the next id ssmb_smux_open tries */
    uint32_t open_count;
    ssmb__smux_slot *slots;

    /* Input: a header being gathered, or the data of a PSH being stored
       into in_slot (SSMB__SMUX_NO_SLOT: being skipped). */
    uint32_t in_state;
    uint8_t in_hdr[SSMB_SMUX_HEADER_SIZE];
    size_t in_have;
    size_t in_left;                     /* data bytes of the current PSH still to come */
    uint32_t in_slot, in_id;

    /* Output: out[out_rd, out_wr) waits for the caller
       (invariant: out_rd <= out_wr <= out_cap). */
    uint8_t *out;
    size_t out_rd, out_wr;

    /* Events: a list of slots with pending bits, head first. */
    uint32_t ev_head, ev_tail;

    /* Keep-alive (§7.4), once the clock started. */
    int clock_started;
    uint64_t last_rx, next_nop;

    ssmb_smux_metrics m;
};

/* ---- the frame codec (§7.4) ---- */

static void ssmb__smux_put_header(uint8_t *p, uint32_t cmd, uint32_t id, size_t len) {
    p[0] = (uint8_t)SSMB_SMUX_VERSION;
    p[1] = (uint8_t)cmd;
    p[2] = (uint8_t)(len & 0xff);       /* little-endian, unlike the ClientMessage (§14 item 11) */
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)(id & 0xff);
    p[5] = (uint8_t)(id >> 8);
    p[6] = (uint8_t)(id >> 16);
    p[7] = (uint8_t)(id >> 24);
}

SSMB_APIDEF ssmb_result ssmb_smux_frame_encode(uint32_t cmd, uint32_t stream_id, const void *data, size_t len,
                                               uint8_t *out, size_t cap, size_t *out_len) {
    if (!out_len || (!data && len) || cmd > SSMB_SMUX_NOP) return SSMB_ERR_INVALID_ARG;
    *out_len = 0;
    if (cmd != SSMB_SMUX_PSH && len) return SSMB_ERR_INVALID_ARG;
    if (len > SSMB_SMUX_MAX_DATA) return SSMB_ERR_LIMIT;
    *out_len = SSMB_SMUX_HEADER_SIZE + len;
    if (!out || cap < *out_len) return SSMB_ERR_BUFFER_TOO_SMALL;
    ssmb__smux_put_header(out, cmd, stream_id, len);
    if (len) memcpy(out + SSMB_SMUX_HEADER_SIZE, data, len);
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_smux_header_parse(const uint8_t *in, size_t len, ssmb_smux_header *out) {
    if (!out || (!in && len)) return SSMB_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (len < SSMB_SMUX_HEADER_SIZE) return SSMB_AGAIN;
    out->version = in[0];
    out->cmd = in[1];
    out->length = (uint32_t)in[2] | ((uint32_t)in[3] << 8);
    out->stream_id = (uint32_t)in[4] | ((uint32_t)in[5] << 8) | ((uint32_t)in[6] << 16) | ((uint32_t)in[7] << 24);
    if (out->version != SSMB_SMUX_VERSION || out->cmd > SSMB_SMUX_NOP) return SSMB_ERR_MALFORMED;
    if (out->cmd != SSMB_SMUX_PSH && out->length) return SSMB_ERR_MALFORMED; /* the reference reads none */
    if (out->length > SSMB_SMUX_MAX_DATA) return SSMB_ERR_LIMIT;
    return SSMB_OK;
}

/* ---- slots and events ---- */

static ssmb__smux_slot *ssmb__smux_find(const ssmb_smux *mux, uint32_t id) {
    uint32_t i;
    if (id == 0) return NULL;
    for (i = 0; i < mux->cfg.max_streams; i++)
        if (mux->slots[i].state != SSMB__SMUX_FREE && mux->slots[i].id == id) return &mux->slots[i];
    return NULL;
}

static ssmb__smux_slot *ssmb__smux_free_slot(const ssmb_smux *mux) {
    uint32_t i;
    for (i = 0; i < mux->cfg.max_streams; i++)
        if (mux->slots[i].state == SSMB__SMUX_FREE) return &mux->slots[i];
    return NULL;
}

static uint32_t ssmb__smux_index(const ssmb_smux *mux, const ssmb__smux_slot *s) {
    return (uint32_t)(s - mux->slots);
}

/* Marks an event on a slot; the slot joins the list once. */
static void ssmb__smux_raise(ssmb_smux *mux, ssmb__smux_slot *s, uint32_t bit) {
    uint32_t at = ssmb__smux_index(mux, s);
    s->events |= bit;
    if (s->queued) return;
    s->queued = 1;
    s->next = SSMB__SMUX_NO_SLOT;
    if (mux->ev_tail == SSMB__SMUX_NO_SLOT) mux->ev_head = at;
    else mux->slots[mux->ev_tail].next = at;
    mux->ev_tail = at;
}

static void ssmb__smux_pop_head(ssmb_smux *mux) {
    ssmb__smux_slot *s = &mux->slots[mux->ev_head];
    s->queued = 0;
    mux->ev_head = s->next;
    if (mux->ev_head == SSMB__SMUX_NO_SLOT) mux->ev_tail = SSMB__SMUX_NO_SLOT;
}

/* A slot taken for id: empty ring, open both ways. A freed slot may still
   sit on the event list; it keeps its place there. */
static void ssmb__smux_claim(ssmb_smux *mux, ssmb__smux_slot *s, uint32_t id) {
    s->id = id;
    s->state = SSMB__SMUX_OPEN;
    s->events = 0;
    s->rx_head = s->rx_count = 0;
    mux->open_count++;
}

static void ssmb__smux_release(ssmb_smux *mux, ssmb__smux_slot *s) {
    s->state = SSMB__SMUX_FREE;
    s->events = 0;
    s->rx_head = s->rx_count = 0;
    mux->open_count--;
}

static void ssmb__smux_fail(ssmb_smux *mux, ssmb_result why) {
    if (mux->error == SSMB_OK) mux->error = why;
}

/* ---- output ---- */

static size_t ssmb__smux_out_free(const ssmb_smux *mux) {
    return mux->cfg.out_cap - (mux->out_wr - mux->out_rd);
}

/* Appends one frame; the caller checked the room. Pending bytes move to
   the front when the tail is short. */
static void ssmb__smux_emit(ssmb_smux *mux, uint32_t cmd, uint32_t id, const void *data, size_t len) {
    size_t need = SSMB_SMUX_HEADER_SIZE + len;
    SSMB_ASSERT(need <= ssmb__smux_out_free(mux));
    if (mux->out_wr + need > mux->cfg.out_cap) {
        memmove(mux->out, mux->out + mux->out_rd, mux->out_wr - mux->out_rd);
        mux->out_wr -= mux->out_rd;
        mux->out_rd = 0;
    }
    ssmb__smux_put_header(mux->out + mux->out_wr, cmd, id, len);
    if (len) memcpy(mux->out + mux->out_wr + SSMB_SMUX_HEADER_SIZE, data, len);
    mux->out_wr += need;
    mux->m.frames_out++;
}

/* A control frame (SYN, FIN, NOP) may use the reserve; 0 when no room. */
static int ssmb__smux_control(ssmb_smux *mux, uint32_t cmd, uint32_t id) {
    if (ssmb__smux_out_free(mux) < SSMB_SMUX_HEADER_SIZE) return 0;
    ssmb__smux_emit(mux, cmd, id, NULL, 0);
    if (cmd == SSMB_SMUX_FIN) mux->m.fins_out++;
    if (cmd == SSMB_SMUX_NOP) mux->m.nops_out++;
    if (cmd == SSMB_SMUX_SYN) mux->m.opened_local++;
    return 1;
}

/* Data bytes the next PSH frame may carry: the room left above the control
   reserve, less its header, at most max_frame_data. */
static size_t ssmb__smux_psh_room(const ssmb_smux *mux) {
    size_t free_bytes = ssmb__smux_out_free(mux);
    if (free_bytes < mux->cfg.reserve + SSMB_SMUX_HEADER_SIZE + 1) return 0;
    return SSMB__MIN(free_bytes - mux->cfg.reserve - SSMB_SMUX_HEADER_SIZE, (size_t)mux->cfg.max_data);
}

/* ---- input (§7.4: one continuous byte stream) ---- */

/* A SYN from the peer: the server role takes new ids (refusing with FIN
   when every slot is busy); the client role never expects one. */
static void ssmb__smux_on_syn(ssmb_smux *mux, uint32_t id) {
    ssmb__smux_slot *s;
    if (mux->cfg.role != SSMB_SMUX_SERVER || id == 0 || ssmb__smux_find(mux, id)) {
        mux->m.ignored++;
        return;
    }
    s = ssmb__smux_free_slot(mux);
    if (!s) {
        mux->m.refused++;
        ssmb__smux_control(mux, SSMB_SMUX_FIN, id);
        return;
    }
    ssmb__smux_claim(mux, s, id);
    mux->m.opened_peer++;
    ssmb__smux_raise(mux, s, SSMB__SMUX_EV_OPENED);
}

/* A FIN ends the stream both ways (§16); what was received stays. */
static void ssmb__smux_on_fin(ssmb_smux *mux, uint32_t id) {
    ssmb__smux_slot *s = ssmb__smux_find(mux, id);
    if (!s || s->state != SSMB__SMUX_OPEN) {
        mux->m.ignored++;
        return;
    }
    mux->m.fins_in++;
    s->state = SSMB__SMUX_PEER_FIN;
    ssmb__smux_raise(mux, s, SSMB__SMUX_EV_CLOSED);
}

/* The PSH's data goes to an open stream, or is skipped. */
static void ssmb__smux_on_psh(ssmb_smux *mux, uint32_t id, uint32_t len) {
    ssmb__smux_slot *s = ssmb__smux_find(mux, id);
    mux->in_left = len;
    mux->in_id = id;
    mux->in_slot = SSMB__SMUX_NO_SLOT;
    if (s && s->state == SSMB__SMUX_OPEN) mux->in_slot = ssmb__smux_index(mux, s);
    else mux->m.ignored++;
    if (len) mux->in_state = SSMB__SMUX_IN_DATA;
}

static ssmb_result ssmb__smux_on_header(ssmb_smux *mux) {
    ssmb_smux_header h;
    ssmb_result r = ssmb_smux_header_parse(mux->in_hdr, SSMB_SMUX_HEADER_SIZE, &h);
    mux->in_have = 0;
    if (r != SSMB_OK) return r;
    mux->m.frames_in++;
    switch (h.cmd) {
    case SSMB_SMUX_SYN: ssmb__smux_on_syn(mux, h.stream_id); break;
    case SSMB_SMUX_FIN: ssmb__smux_on_fin(mux, h.stream_id); break;
    case SSMB_SMUX_PSH: ssmb__smux_on_psh(mux, h.stream_id, h.length); break;
    default: mux->m.nops_in++; break; /* keep-alive: nothing to answer in v1 */
    }
    return SSMB_OK;
}

/* The stream the current PSH fills, or NULL when its data is skipped (it
   may have been closed meanwhile). */
static ssmb__smux_slot *ssmb__smux_in_target(const ssmb_smux *mux) {
    ssmb__smux_slot *s;
    if (mux->in_slot == SSMB__SMUX_NO_SLOT) return NULL;
    s = &mux->slots[mux->in_slot];
    return s->state == SSMB__SMUX_OPEN && s->id == mux->in_id ? s : NULL;
}

/* Copies up to n bytes into the ring; returns how many fit. */
static size_t ssmb__smux_ring_put(const ssmb_smux *mux, ssmb__smux_slot *s, const uint8_t *p, size_t n) {
    size_t cap = mux->cfg.rx_cap, done = 0;
    n = SSMB__MIN(n, cap - s->rx_count);
    while (done < n) {
        size_t at = (s->rx_head + s->rx_count) % cap;
        size_t part = SSMB__MIN(n - done, cap - at);
        memcpy(s->rx + at, p + done, part);
        s->rx_count += part;
        done += part;
    }
    return done;
}

/* Data bytes of the current PSH: stored, or skipped. Returns the bytes
   taken; 0 means the target's buffer is full (back-pressure). */
static size_t ssmb__smux_in_data(ssmb_smux *mux, const uint8_t *p, size_t n) {
    ssmb__smux_slot *s = ssmb__smux_in_target(mux);
    size_t take = SSMB__MIN(n, mux->in_left);
    if (s) {
        take = ssmb__smux_ring_put(mux, s, p, take);
        if (take) {
            mux->m.data_in += take;
            ssmb__smux_raise(mux, s, SSMB__SMUX_EV_DATA);
        }
    } else {
        mux->m.ignored_bytes += take;
    }
    mux->in_left -= take;
    if (mux->in_left == 0) mux->in_state = SSMB__SMUX_IN_HEADER;
    return take;
}

/* Header bytes gathered; a complete header is acted on. */
static ssmb_result ssmb__smux_in_header(ssmb_smux *mux, const uint8_t *p, size_t n, size_t *took) {
    size_t take = SSMB__MIN(n, SSMB_SMUX_HEADER_SIZE - mux->in_have);
    memcpy(mux->in_hdr + mux->in_have, p, take);
    mux->in_have += take;
    *took = take;
    return mux->in_have == SSMB_SMUX_HEADER_SIZE ? ssmb__smux_on_header(mux) : SSMB_OK;
}

/* Every pass takes at least one byte or stops, so the work is linear. */
static ssmb_result ssmb__smux_input(ssmb_smux *mux, const uint8_t *p, size_t len, size_t *consumed) {
    size_t at = 0;
    while (at < len) {
        size_t took = 0;
        if (mux->in_state == SSMB__SMUX_IN_HEADER) {
            ssmb_result r = ssmb__smux_in_header(mux, p + at, len - at, &took);
            at += took;
            if (r != SSMB_OK) {
                *consumed = at;
                return r;
            }
            continue;
        }
        took = ssmb__smux_in_data(mux, p + at, len - at);
        if (took == 0) break;
        at += took;
    }
    *consumed = at;
    return at < len ? SSMB_AGAIN : SSMB_OK;
}

/* ---- create, destroy ---- */

static uint32_t ssmb__smux_or(uint32_t v, uint32_t def) { return v ? v : def; }

static int ssmb__smux_desc_ok(const ssmb_smux_desc *d) {
    return d->role <= SSMB_SMUX_SERVER && ssmb__allocator_valid(&d->allocator) &&
           d->max_streams <= SSMB__SMUX_MAX_STREAMS && d->max_frame_data <= SSMB_SMUX_MAX_DATA && d->keepalive <= 1;
}

static void ssmb__smux_defaults(const ssmb_smux_desc *d, ssmb__smux_cfg *c) {
    size_t least;
    c->role = d->role;
    c->max_streams = ssmb__smux_or(d->max_streams, 16);
    c->max_data = ssmb__smux_or(d->max_frame_data, SSMB_SMUX_MAX_DATA);
    c->keepalive = d->keepalive;
    c->interval_ms = ssmb__smux_or(d->keepalive_interval_ms, 10000);
    c->timeout_ms = ssmb__smux_or(d->keepalive_timeout_ms, 30000);
    c->rx_cap = ssmb__smux_or(d->stream_buffer_bytes, 16384);
    /* room for every stream's FIN and a NOP even when data filled the rest */
    c->reserve = SSMB_SMUX_HEADER_SIZE * ((size_t)c->max_streams + 2);
    least = SSMB_SMUX_HEADER_SIZE + c->max_data + c->reserve;
    c->out_cap = ssmb__smux_or(d->output_buffer_bytes, 65536);
    if (c->out_cap < least) c->out_cap = least;
}

/* Appends an n-byte part at a 16-aligned offset; 0 on overflow. */
static int ssmb__smux_part(size_t *at, size_t n, size_t *off) {
    size_t start = (*at + 15) & ~(size_t)15;
    if (start < *at || ssmb_size_add(start, n, at) != SSMB_OK) return 0;
    *off = start;
    return 1;
}

/* The struct, the slots, then every ring and the output. */
static int ssmb__smux_measure(const ssmb__smux_cfg *c, size_t *slots_off, size_t *rx_off, size_t *out_off,
                              size_t *total) {
    size_t at = sizeof(ssmb_smux), n = 0;
    if (ssmb_size_mul(c->max_streams, sizeof(ssmb__smux_slot), &n) != SSMB_OK ||
        !ssmb__smux_part(&at, n, slots_off))
        return 0;
    if (ssmb_size_mul(c->max_streams, c->rx_cap, &n) != SSMB_OK || !ssmb__smux_part(&at, n, rx_off)) return 0;
    if (!ssmb__smux_part(&at, c->out_cap, out_off)) return 0;
    *total = at;
    return 1;
}

static void ssmb__smux_init(ssmb_smux *mux, const ssmb_smux_desc *d, const ssmb__smux_cfg *c, size_t slots_off,
                            size_t rx_off, size_t out_off, size_t total) {
    uint8_t *base = (uint8_t *)mux;
    uint32_t i;
    memset(mux, 0, total);
    mux->mem_size = total;
    mux->alloc = d->allocator;
    mux->cfg = *c;
    mux->slots = (ssmb__smux_slot *)(void *)(base + slots_off);
    for (i = 0; i < c->max_streams; i++) mux->slots[i].rx = base + rx_off + (size_t)i * c->rx_cap;
    mux->out = base + out_off;
    mux->in_slot = SSMB__SMUX_NO_SLOT;
    mux->ev_head = mux->ev_tail = SSMB__SMUX_NO_SLOT;
    mux->next_id = c->role == SSMB_SMUX_SERVER ? 2u : SSMB_SMUX_FIRST_CLIENT_ID; /* §7.4 */
}

SSMB_APIDEF size_t ssmb_smux_memory_size(const ssmb_smux_desc *desc) {
    ssmb__smux_cfg c;
    size_t a, b, o, total;
    if (!desc || !ssmb__smux_desc_ok(desc)) return 0;
    ssmb__smux_defaults(desc, &c);
    return ssmb__smux_measure(&c, &a, &b, &o, &total) ? total : 0;
}

SSMB_APIDEF ssmb_result ssmb_smux_create(const ssmb_smux_desc *d, ssmb_smux **out) {
    ssmb__smux_cfg c;
    size_t slots_off, rx_off, out_off, total;
    ssmb_smux *mux;
    if (!out) return SSMB_ERR_INVALID_ARG;
    *out = NULL;
    if (!d || !ssmb__smux_desc_ok(d)) return SSMB_ERR_INVALID_ARG;
    ssmb__smux_defaults(d, &c);
    if (!ssmb__smux_measure(&c, &slots_off, &rx_off, &out_off, &total)) return SSMB_ERR_OVERFLOW;
    mux = (ssmb_smux *)ssmb__alloc(&d->allocator, total);
    if (!mux) return SSMB_ERR_NOMEM;
    ssmb__smux_init(mux, d, &c, slots_off, rx_off, out_off, total);
    *out = mux;
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_smux_destroy(ssmb_smux *mux) {
    if (mux) ssmb__free_object(mux, &mux->alloc, mux->mem_size); /* forwarded bytes are wiped with it */
}

/* ---- input, events ---- */

static void ssmb__smux_clock(ssmb_smux *mux, uint64_t now_ms) {
    if (mux->clock_started) return;
    mux->clock_started = 1;
    mux->last_rx = now_ms;
    mux->next_nop = now_ms + mux->cfg.interval_ms;
}

SSMB_APIDEF ssmb_result ssmb_smux_feed(ssmb_smux *mux, const void *data, size_t len, size_t *consumed,
                                       uint64_t now_ms) {
    ssmb_result r;
    if (consumed) *consumed = 0;
    if (!mux || !consumed || (!data && len)) return SSMB_ERR_INVALID_ARG;
    if (mux->error != SSMB_OK) return mux->error;
    ssmb__smux_clock(mux, now_ms);
    if (len) mux->last_rx = now_ms;
    r = ssmb__smux_input(mux, (const uint8_t *)data, len, consumed);
    mux->m.bytes_in += *consumed;
    if (r < 0) ssmb__smux_fail(mux, r);
    return r;
}

/* The lowest pending bit of the head slot as an event; 0 when the head had
   nothing left to say (it leaves the list). */
static int ssmb__smux_take_event(ssmb_smux *mux, ssmb_smux_event *ev) {
    ssmb__smux_slot *s = &mux->slots[mux->ev_head];
    uint32_t bit = s->events & (0u - s->events);
    if (!bit) {
        ssmb__smux_pop_head(mux);
        return 0;
    }
    s->events &= ~bit;
    if (!s->events) ssmb__smux_pop_head(mux);
    if (bit == SSMB__SMUX_EV_DATA && s->rx_count == 0) return 0; /* already read */
    ev->type = bit == SSMB__SMUX_EV_OPENED ? SSMB_SMUX_EVENT_OPENED
               : bit == SSMB__SMUX_EV_DATA ? SSMB_SMUX_EVENT_DATA
                                           : SSMB_SMUX_EVENT_CLOSED;
    ev->stream_id = s->id;
    ev->available = s->rx_count;
    return 1;
}

SSMB_APIDEF ssmb_result ssmb_smux_poll(ssmb_smux *mux, ssmb_smux_event *ev) {
    if (!mux || !ev) return SSMB_ERR_INVALID_ARG;
    memset(ev, 0, sizeof *ev);
    if (mux->error != SSMB_OK) {
        if (mux->error_told) return mux->error;
        mux->error_told = 1;
        ev->type = SSMB_SMUX_EVENT_ERROR;
        ev->result = mux->error;
        return SSMB_OK;
    }
    while (mux->ev_head != SSMB__SMUX_NO_SLOT)
        if (ssmb__smux_take_event(mux, ev)) return SSMB_OK;
    return SSMB_AGAIN;
}

/* ---- output ---- */

SSMB_APIDEF const uint8_t *ssmb_smux_out_buf(ssmb_smux *mux, size_t *len) {
    if (len) *len = 0;
    if (!mux || !len || mux->error != SSMB_OK || mux->out_rd == mux->out_wr) return NULL;
    *len = mux->out_wr - mux->out_rd;
    return mux->out + mux->out_rd;
}

SSMB_APIDEF ssmb_result ssmb_smux_out_ack(ssmb_smux *mux, size_t n) {
    if (!mux || n > mux->out_wr - mux->out_rd) return SSMB_ERR_INVALID_ARG;
    mux->out_rd += n;
    mux->m.bytes_out += n;
    if (mux->out_rd == mux->out_wr) mux->out_rd = mux->out_wr = 0;
    return SSMB_OK;
}

/* ---- streams ---- */

/* The next id of our parity not in use; 0 when the ids ran out. */
static uint32_t ssmb__smux_take_id(ssmb_smux *mux) {
    while (mux->next_id >= 2 && mux->next_id <= 0xfffffffeu) {
        uint32_t id = mux->next_id;
        mux->next_id = id + 2 < id ? 0 : id + 2;
        if (!ssmb__smux_find(mux, id)) return id;
    }
    return 0;
}

SSMB_APIDEF ssmb_result ssmb_smux_open(ssmb_smux *mux, uint32_t *stream_id) {
    ssmb__smux_slot *s;
    uint32_t id;
    if (stream_id) *stream_id = 0;
    if (!mux || !stream_id) return SSMB_ERR_INVALID_ARG;
    if (mux->error != SSMB_OK) return mux->error;
    s = ssmb__smux_free_slot(mux);
    if (!s) return SSMB_ERR_LIMIT;
    if (ssmb__smux_out_free(mux) < SSMB_SMUX_HEADER_SIZE) return SSMB_AGAIN;
    id = ssmb__smux_take_id(mux);
    if (!id) return SSMB_ERR_LIMIT;
    ssmb__smux_control(mux, SSMB_SMUX_SYN, id);
    ssmb__smux_claim(mux, s, id);
    *stream_id = id;
    return SSMB_OK;
}

/* A cut of the remaining data is worth a frame when it is whole or at
   least SSMB__SMUX_MIN_CHUNK bytes (tiny frames waste the channel). */
static size_t ssmb__smux_cut(const ssmb_smux *mux, size_t remaining) {
    size_t room = ssmb__smux_psh_room(mux);
    if (room >= remaining) return remaining;
    return room >= SSMB__SMUX_MIN_CHUNK ? room : 0;
}

SSMB_APIDEF ssmb_result ssmb_smux_write(ssmb_smux *mux, uint32_t stream_id, const void *data, size_t len,
                                        size_t *accepted) {
    const uint8_t *p = (const uint8_t *)data;
    ssmb__smux_slot *s;
    size_t done = 0, n;
    if (accepted) *accepted = 0;
    if (!mux || !accepted || (!data && len)) return SSMB_ERR_INVALID_ARG;
    if (mux->error != SSMB_OK) return mux->error;
    s = ssmb__smux_find(mux, stream_id);
    if (!s) return SSMB_ERR_INVALID_STATE;
    if (s->state == SSMB__SMUX_PEER_FIN) return SSMB_CLOSED; /* no half-close (§16) */
    while (done < len && (n = ssmb__smux_cut(mux, len - done)) > 0) {
        ssmb__smux_emit(mux, SSMB_SMUX_PSH, stream_id, p + done, n);
        done += n;
    }
    mux->m.data_out += done;
    *accepted = done;
    return done || !len ? SSMB_OK : SSMB_AGAIN;
}

SSMB_APIDEF ssmb_result ssmb_smux_write_header(ssmb_smux *mux, uint32_t stream_id, size_t len,
                                               uint8_t out[SSMB_SMUX_HEADER_SIZE]) {
    ssmb__smux_slot *s;
    if (!mux || !out || len == 0 || len > mux->cfg.max_data) return SSMB_ERR_INVALID_ARG;
    if (mux->error != SSMB_OK) return mux->error;
    s = ssmb__smux_find(mux, stream_id);
    if (!s) return SSMB_ERR_INVALID_STATE;
    if (s->state == SSMB__SMUX_PEER_FIN) return SSMB_CLOSED;
    if (mux->out_rd != mux->out_wr) return SSMB_AGAIN;
    ssmb__smux_put_header(out, SSMB_SMUX_PSH, stream_id, len);
    mux->m.frames_out++;
    mux->m.data_out += len;
    mux->m.bytes_out += SSMB_SMUX_HEADER_SIZE + len;
    return SSMB_OK;
}

SSMB_APIDEF size_t ssmb_smux_write_space(const ssmb_smux *mux) {
    size_t total = 0, free_bytes;
    if (!mux || mux->error != SSMB_OK) return 0;
    free_bytes = ssmb__smux_out_free(mux);
    /* whole frames of max_data, then one shorter frame */
    while (free_bytes >= mux->cfg.reserve + SSMB_SMUX_HEADER_SIZE + 1) {
        size_t n = SSMB__MIN(free_bytes - mux->cfg.reserve - SSMB_SMUX_HEADER_SIZE, (size_t)mux->cfg.max_data);
        if (n < mux->cfg.max_data && n < SSMB__SMUX_MIN_CHUNK) break;
        total += n;
        free_bytes -= n + SSMB_SMUX_HEADER_SIZE;
    }
    return total;
}

SSMB_APIDEF ssmb_result ssmb_smux_close(ssmb_smux *mux, uint32_t stream_id) {
    ssmb__smux_slot *s;
    if (!mux) return SSMB_ERR_INVALID_ARG;
    if (mux->error != SSMB_OK) return mux->error;
    s = ssmb__smux_find(mux, stream_id);
    if (!s) return SSMB_ERR_INVALID_STATE;
    if (!ssmb__smux_control(mux, SSMB_SMUX_FIN, stream_id)) return SSMB_AGAIN;
    ssmb__smux_release(mux, s);
    return SSMB_OK;
}

/* The stream to read: SSMB_OK with data waiting, else why not. */
static ssmb_result ssmb__smux_readable(ssmb_smux *mux, uint32_t stream_id, ssmb__smux_slot **out) {
    ssmb__smux_slot *s;
    *out = NULL;
    if (mux->error != SSMB_OK) return mux->error;
    s = ssmb__smux_find(mux, stream_id);
    if (!s) return SSMB_ERR_INVALID_STATE;
    *out = s;
    if (s->rx_count) return SSMB_OK;
    return s->state == SSMB__SMUX_PEER_FIN ? SSMB_CLOSED : SSMB_AGAIN;
}

SSMB_APIDEF ssmb_result ssmb_smux_peek(ssmb_smux *mux, uint32_t stream_id, const uint8_t **data, size_t *len) {
    ssmb__smux_slot *s;
    ssmb_result r;
    if (data) *data = NULL;
    if (len) *len = 0;
    if (!mux || !data || !len) return SSMB_ERR_INVALID_ARG;
    r = ssmb__smux_readable(mux, stream_id, &s);
    if (r != SSMB_OK) return r;
    *data = s->rx + s->rx_head;
    *len = SSMB__MIN(s->rx_count, mux->cfg.rx_cap - s->rx_head);
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_smux_consume(ssmb_smux *mux, uint32_t stream_id, size_t n) {
    ssmb__smux_slot *s;
    if (!mux) return SSMB_ERR_INVALID_ARG;
    if (mux->error != SSMB_OK) return mux->error;
    s = ssmb__smux_find(mux, stream_id);
    if (!s) return SSMB_ERR_INVALID_STATE;
    if (n > s->rx_count) return SSMB_ERR_INVALID_ARG;
    s->rx_head = (s->rx_head + n) % mux->cfg.rx_cap;
    s->rx_count -= n;
    if (s->rx_count == 0) s->rx_head = 0;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_smux_read(ssmb_smux *mux, uint32_t stream_id, void *buf, size_t cap, size_t *n) {
    uint8_t *dst = (uint8_t *)buf;
    ssmb__smux_slot *s;
    ssmb_result r;
    if (n) *n = 0;
    if (!mux || !n || (!buf && cap)) return SSMB_ERR_INVALID_ARG;
    r = ssmb__smux_readable(mux, stream_id, &s);
    if (r != SSMB_OK) return r;
    while (*n < cap && s->rx_count) { /* at most two pieces: the ring wraps once */
        size_t part = SSMB__MIN(SSMB__MIN(s->rx_count, mux->cfg.rx_cap - s->rx_head), cap - *n);
        memcpy(dst + *n, s->rx + s->rx_head, part);
        ssmb_smux_consume(mux, stream_id, part);
        *n += part;
    }
    return SSMB_OK;
}

SSMB_APIDEF size_t ssmb_smux_available(const ssmb_smux *mux, uint32_t stream_id) {
    const ssmb__smux_slot *s = mux ? ssmb__smux_find(mux, stream_id) : NULL;
    return s ? s->rx_count : 0;
}

/* ---- keep-alive (§7.4: NOP every 10 s, 30 s without input ends it) ---- */

/* Input waits for a stream buffer that is full: the silence is ours, not
   the peer's, so it does not count (the reference's mux exempts the same
   case). */
static int ssmb__smux_stalled(const ssmb_smux *mux) {
    const ssmb__smux_slot *s;
    if (mux->in_state != SSMB__SMUX_IN_DATA) return 0;
    s = ssmb__smux_in_target(mux);
    return s && s->rx_count == mux->cfg.rx_cap;
}

SSMB_APIDEF ssmb_result ssmb_smux_tick(ssmb_smux *mux, uint64_t now_ms) {
    if (!mux) return SSMB_ERR_INVALID_ARG;
    if (mux->error != SSMB_OK) return mux->error;
    ssmb__smux_clock(mux, now_ms);
    if (!mux->cfg.keepalive) return SSMB_OK;
    if (ssmb__smux_stalled(mux)) mux->last_rx = now_ms;
    if (now_ms >= mux->last_rx + mux->cfg.timeout_ms) {
        ssmb__smux_fail(mux, SSMB_ERR_TIMEOUT);
        return mux->error;
    }
    if (now_ms >= mux->next_nop) {
        ssmb__smux_control(mux, SSMB_SMUX_NOP, 0); /* a full output is traffic enough: skipped */
        mux->next_nop = now_ms + mux->cfg.interval_ms;
    }
    return SSMB_OK;
}

SSMB_APIDEF uint64_t ssmb_smux_next_deadline(const ssmb_smux *mux) {
    uint64_t timeout;
    if (!mux || mux->error != SSMB_OK || !mux->cfg.keepalive) return SSMB_NO_DEADLINE;
    if (!mux->clock_started) return 0;
    timeout = mux->last_rx + mux->cfg.timeout_ms;
    return SSMB__MIN(timeout, mux->next_nop);
}

SSMB_APIDEF void ssmb_smux_get_metrics(const ssmb_smux *mux, ssmb_smux_metrics *out) {
    if (!out) return;
    if (!mux) memset(out, 0, sizeof *out);
    else *out = mux->m;
}

SSMB_APIDEF ssmb_result ssmb_smux_last_error(const ssmb_smux *mux) {
    return mux ? mux->error : SSMB_ERR_INVALID_ARG;
}

SSMB_APIDEF uint32_t ssmb_smux_stream_count(const ssmb_smux *mux) { return mux ? mux->open_count : 0; }

// >>url
/* Absolute ws/wss/http/https URLs (RFC 3986 §3, the parts a client needs):
   no user info, no fragment, nothing outside visible ASCII. */
static int ssmb__url_scheme(ssmb_url *u, const char *t, size_t len, size_t *at) {
    static const char *const names[] = {"wss", "ws", "https", "http"};
    static const uint16_t ports[] = {443, 80, 443, 80};
    size_t i, k;
    for (i = 0; i < 4; i++) {
        size_t n = strlen(names[i]);
        if (len < n + 3 || memcmp(t + n, "://", 3) != 0) continue;
        for (k = 0; k < n && ssmb__ascii_lower((unsigned char)t[k]) == (unsigned char)names[i][k]; k++) {}
        if (k < n) continue;
        u->scheme.ptr = t;
        u->scheme.len = n;
        u->port = ports[i];
        u->secure = (uint8_t)(i % 2 == 0);
        *at = n + 3;
        return 1;
    }
    return 0;
}

static int ssmb__url_host_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* ":port" after the host, 1..65535, or nothing. */
static int ssmb__url_port(ssmb_url *u, const char *p, size_t n) {
    uint32_t v = 0;
    size_t i;
    if (n == 0) return 1;
    if (p[0] != ':' || n == 1 || n > 6) return 0;
    for (i = 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    if (v == 0 || v > 65535) return 0;
    u->port = (uint16_t)v;
    return 1;
}

static int ssmb__url_authority(ssmb_url *u, const char *p, size_t n) {
    size_t i = 0;
    if (n > 0 && p[0] == '[') {
        for (i = 1; i < n && p[i] != ']'; i++)
            if (!(ssmb__hex_value(p[i]) >= 0 || p[i] == ':' || p[i] == '.')) return 0;
        if (i == n || i < 3) return 0;
        u->host.ptr = p + 1;
        u->host.len = i - 1;
        u->ipv6_literal = 1;
        i++;
    } else {
        while (i < n && ssmb__url_host_char((unsigned char)p[i])) i++;
        if (i == 0) return 0;
        u->host.ptr = p;
        u->host.len = i;
    }
    return ssmb__url_port(u, p + i, n - i);
}

/* Path and query: visible ASCII only; '#' (a fragment) is refused. */
static int ssmb__url_target(ssmb_url *u, const char *p, size_t n) {
    size_t i, q = n;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '#') return 0;
        if (c == '?' && q == n) q = i;
    }
    if (n == 0) {
        u->target = u->path = ssmb_str_c("/");
        u->query = ssmb_str_c("");
        return 1;
    }
    if (p[0] != '/') return 0; /* "host?query" has no origin-form target */
    u->target.ptr = u->path.ptr = p;
    u->target.len = n;
    u->path.len = q;
    u->query.ptr = p + (q < n ? q + 1 : n);
    u->query.len = q < n ? n - q - 1 : 0;
    return 1;
}

SSMB_APIDEF ssmb_result ssmb_url_parse(const char *text, size_t len, ssmb_url *out) {
    ssmb_url u;
    size_t at = 0, end;
    if (!text || !out) return SSMB_ERR_INVALID_ARG;
    memset(&u, 0, sizeof u);
    if (!ssmb__url_scheme(&u, text, len, &at)) return SSMB_ERR_MALFORMED;
    end = at;
    while (end < len && text[end] != '/' && text[end] != '?' && text[end] != '#') end++;
    if (!ssmb__url_authority(&u, text + at, end - at)) return SSMB_ERR_MALFORMED;
    if (!ssmb__url_target(&u, text + end, len - end)) return SSMB_ERR_MALFORMED;
    *out = u;
    return SSMB_OK;
}

// >>api-calls
/* The AWS JSON 1.1 protocol (PROTOCOL.md §9): POST, a JSON body, the
   operation in X-Amz-Target, SigV4 over the headers the SDKs sign. */

#define SSMB__API_MAX_HEADERS 64
#define SSMB__API_MAX_TOKENS 256
#define SSMB__API_AUTHZ_MAX 1024
#define SSMB__API_HOST_MAX 300
#define SSMB__API_TARGET_MAX 400u
#define SSMB__API_REASON_MAX 256u

/* ---- names ---- */

static int ssmb__api_lower_alnum(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* One DNS label of letters, digits and '-' (either case), 1-63 long, no '-'
   at either end. */
static int ssmb__api_label_ok(const char *p, size_t n) {
    size_t i;
    if (n == 0 || n > 63 || p[0] == '-' || p[n - 1] == '-') return 0;
    for (i = 0; i < n; i++)
        if (!ssmb__api_lower_alnum(ssmb__ascii_lower((unsigned char)p[i])) && p[i] != '-') return 0;
    return 1;
}

static int ssmb__api_ieq(const char *a, size_t n, const char *b) {
    size_t i;
    if (strlen(b) != n) return 0;
    for (i = 0; i < n; i++)
        if (ssmb__ascii_lower((unsigned char)a[i]) != ssmb__ascii_lower((unsigned char)b[i])) return 0;
    return 1;
}

static int ssmb__api_has_prefix(const char *s, size_t n, const char *prefix) {
    size_t k = strlen(prefix);
    return n >= k && ssmb__api_ieq(s, k, prefix);
}

static int ssmb__api_in(const char *region, size_t n, const char *const *list, size_t count) {
    size_t i;
    for (i = 0; i < count; i++)
        if (ssmb__api_ieq(region, n, list[i])) return 1;
    return 0;
}

/* The US commercial regions, where ssm, sts (and kms) have <service>-fips. */
static int ssmb__api_us_region(const char *region, size_t n) {
    static const char *const regions[] = {"us-east-1", "us-east-2", "us-west-1", "us-west-2"};
    return ssmb__api_in(region, n, regions, sizeof regions / sizeof regions[0]);
}

static int ssmb__api_china_region(const char *region, size_t n) { return ssmb__api_has_prefix(region, n, "cn-"); }

/* ---- endpoints ---- */

/* An override: http(s)://host[:port][/path], no query. */
static int ssmb__api_override_ok(const char *text) {
    ssmb_url u;
    if (ssmb_url_parse(text, strlen(text), &u) != SSMB_OK) return 0;
    return ssmb__api_has_prefix(u.scheme.ptr, u.scheme.len, "http") && u.query.len == 0 &&
           u.target.ptr[u.target.len - 1] != '?';
}

static ssmb_result ssmb__api_copy_text(const char *text, char *out, size_t cap, size_t *out_len) {
    ssmb__sink s;
    ssmb__sink_init(&s, out, cap);
    ssmb__put_z(&s, text);
    return ssmb__sink_finish(&s, out_len);
}

static const char *ssmb__api_env(const ssmb_api_endpoint_desc *d, const char *name) {
    const char *v = d->getenv_fn(name, d->getenv_user_data);
    return v && v[0] ? v : NULL;
}

/* AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL; NULL when neither. */
static const char *ssmb__api_env_override(const ssmb_api_endpoint_desc *d, uint32_t *source) {
    char name[64];
    const char *v;
    size_t i, k = strlen("AWS_ENDPOINT_URL_"), n = strlen(d->service);
    if (!d->getenv_fn) return NULL;
    v = ssmb__api_env(d, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    if (v && ssmb__api_ieq(v, strlen(v), "true")) return NULL;
    memcpy(name, "AWS_ENDPOINT_URL_", k);
    for (i = 0; i < n; i++) {
        char c = d->service[i];
        name[k + i] = c == '-' ? '_' : (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    name[k + n] = '\0';
    *source = SSMB_API_ENDPOINT_ENV_SERVICE;
    if ((v = ssmb__api_env(d, name)) != NULL) return v;
    *source = SSMB_API_ENDPOINT_ENV_GLOBAL;
    return ssmb__api_env(d, "AWS_ENDPOINT_URL");
}

/* Partitions outside aws and aws-cn (us-iso-*, us-isob-*, eu-isoe-*,
   eusc-*) use other DNS suffixes: not built here. */
static int ssmb__api_other_partition(const char *region, size_t n) {
    size_t i;
    if (ssmb__api_has_prefix(region, n, "eusc-")) return 1;
    for (i = 0; i + 4 <= n; i++)
        if (region[i] == '-' && ssmb__api_has_prefix(region + i + 1, n - i - 1, "iso")) return 1;
    return 0;
}

enum { SSMB__API_FIPS_NONE = 0, SSMB__API_FIPS_HOST = 1, SSMB__API_FIPS_PLAIN = 2 };

/* The FIPS endpoint as the SDKs' endpoint table gives it: <service>-fips,
   or in GovCloud the regional host of ssm and sts (FIPS already). */
static int ssmb__api_fips_form(const char *service, const char *region, size_t n) {
    static const char *const canada[] = {"ca-central-1", "ca-west-1"};
    int gov = ssmb__api_has_prefix(region, n, "us-gov-"), us = ssmb__api_us_region(region, n);
    if (strcmp(service, "kms") == 0)
        return ssmb__api_china_region(region, n) ? SSMB__API_FIPS_NONE : SSMB__API_FIPS_HOST;
    if (strcmp(service, "ssm") == 0 && (us || ssmb__api_in(region, n, canada, 2))) return SSMB__API_FIPS_HOST;
    if (strcmp(service, "sts") == 0 && us) return SSMB__API_FIPS_HOST;
    if ((strcmp(service, "ssm") == 0 || strcmp(service, "sts") == 0) && gov) return SSMB__API_FIPS_PLAIN;
    return SSMB__API_FIPS_NONE;
}

/* The fips flag, or AWS_USE_FIPS_ENDPOINT=true. */
static int ssmb__api_fips_wanted(const ssmb_api_endpoint_desc *d) {
    const char *v = d->getenv_fn ? ssmb__api_env(d, "AWS_USE_FIPS_ENDPOINT") : NULL;
    return d->fips || (v && ssmb__api_ieq(v, strlen(v), "true"));
}

/* https://<service>[-fips].<region>.amazonaws.com[.cn] */
static ssmb_result ssmb__api_default_endpoint(const ssmb_api_endpoint_desc *d, char *out, size_t cap,
                                              size_t *out_len) {
    ssmb__sink s;
    size_t rn = d->region ? strlen(d->region) : 0;
    int fips = SSMB__API_FIPS_NONE;
    if (!ssmb__api_label_ok(d->region, rn)) return SSMB_ERR_INVALID_ARG;
    if (ssmb__api_other_partition(d->region, rn)) return SSMB_ERR_UNSUPPORTED;
    if (ssmb__api_fips_wanted(d) && (fips = ssmb__api_fips_form(d->service, d->region, rn)) == SSMB__API_FIPS_NONE)
        return SSMB_ERR_UNSUPPORTED;
    ssmb__sink_init(&s, out, cap);
    ssmb__put_z(&s, "https://");
    ssmb__put_z(&s, d->service);
    if (fips == SSMB__API_FIPS_HOST) ssmb__put_z(&s, "-fips");
    ssmb__put_c(&s, '.');
    ssmb__put_z(&s, d->region);
    ssmb__put_z(&s, ssmb__api_china_region(d->region, rn) ? ".amazonaws.com.cn" : ".amazonaws.com");
    return ssmb__sink_finish(&s, out_len);
}

static int ssmb__api_service_ok(const char *service) {
    size_t i, n = service ? strlen(service) : 0;
    if (n == 0 || n > 40 || service[0] == '-') return 0;
    for (i = 0; i < n; i++)
        if (!ssmb__api_lower_alnum((unsigned char)service[i]) && service[i] != '-') return 0;
    return 1;
}

SSMB_APIDEF ssmb_result ssmb_api_endpoint_resolve(const ssmb_api_endpoint_desc *d, char *out, size_t cap,
                                                  size_t *out_len, uint32_t *source) {
    uint32_t from = SSMB_API_ENDPOINT_ARGUMENT;
    const char *url;
    size_t n = 0;
    ssmb_result r;
    if (!d || !out_len || !ssmb__api_service_ok(d->service)) return SSMB_ERR_INVALID_ARG;
    url = d->endpoint_url && d->endpoint_url[0] ? d->endpoint_url : ssmb__api_env_override(d, &from);
    if (url && !ssmb__api_override_ok(url)) return SSMB_ERR_INVALID_ARG;
    if (!url) from = SSMB_API_ENDPOINT_DEFAULT;
    r = url ? ssmb__api_copy_text(url, out, cap, &n) : ssmb__api_default_endpoint(d, out, cap, &n);
    if (r == SSMB_OK || r == SSMB_ERR_BUFFER_TOO_SMALL) *out_len = n;
    if (r == SSMB_OK && source) *source = from;
    return r;
}

/* ---- request bodies ---- */

/* UTF-8 code points in a string (continuation bytes not counted). */
static size_t ssmb__api_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static int ssmb__api_given(const char *s) { return s && s[0]; }

static int ssmb__api_chars_within(const char *s, size_t lo, size_t hi) {
    size_t n;
    if (!s) return 0;
    n = ssmb__api_chars(s);
    return n >= lo && n <= hi;
}

/* ^[a-zA-Z0-9_\-.:/]{3,128}$ */
static int ssmb__api_document_name_ok(const char *s) {
    size_t i, n = strlen(s);
    if (n < 3 || n > 128) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!ssmb__api_lower_alnum(ssmb__ascii_lower(c)) && !strchr("_-.:/", c)) return 0;
    }
    return 1;
}

static int ssmb__api_parameter_ok(const ssmb_api_parameter *p, const ssmb_api_parameter *earlier, size_t count) {
    size_t i;
    if (!ssmb__api_given(p->name) || (p->value_count && !p->values)) return 0;
    for (i = 0; i < p->value_count; i++)
        if (!p->values[i]) return 0;
    for (i = 0; i < count; i++)
        if (strcmp(earlier[i].name, p->name) == 0) return 0;
    return 1;
}

static ssmb_result ssmb__api_start_session_check(const ssmb_api_start_session *s) {
    size_t i;
    if (!s || !ssmb__api_chars_within(s->target, 1, SSMB__API_TARGET_MAX)) return SSMB_ERR_INVALID_ARG;
    if (ssmb__api_given(s->document_name) && !ssmb__api_document_name_ok(s->document_name))
        return SSMB_ERR_INVALID_ARG;
    if (ssmb__api_given(s->reason) && !ssmb__api_chars_within(s->reason, 1, SSMB__API_REASON_MAX))
        return SSMB_ERR_INVALID_ARG;
    if (s->parameter_count && !s->parameters) return SSMB_ERR_INVALID_ARG;
    for (i = 0; i < s->parameter_count; i++)
        if (!ssmb__api_parameter_ok(&s->parameters[i], s->parameters, i)) return SSMB_ERR_INVALID_ARG;
    return SSMB_OK;
}

static void ssmb__api_member(ssmb_json_writer *w, const char *key, const char *value) {
    ssmb__jw_member_str(w, key, ssmb_str_c(value));
}

/* {"Target":...,"DocumentName":...,"Parameters":{"n":["v",...]},"Reason":...} */
static void ssmb__api_start_session_body(ssmb_json_writer *w, const void *args) {
    const ssmb_api_start_session *s = (const ssmb_api_start_session *)args;
    size_t i, k;
    ssmb_json_writer_begin_object(w);
    ssmb__api_member(w, "Target", s->target);
    if (ssmb__api_given(s->document_name)) ssmb__api_member(w, "DocumentName", s->document_name);
    if (s->parameter_count) {
        ssmb__jw_key(w, "Parameters");
        ssmb_json_writer_begin_object(w);
        for (i = 0; i < s->parameter_count; i++) {
            ssmb__jw_key(w, s->parameters[i].name);
            ssmb_json_writer_begin_array(w);
            for (k = 0; k < s->parameters[i].value_count; k++)
                ssmb_json_writer_string(w, s->parameters[i].values[k], strlen(s->parameters[i].values[k]));
            ssmb_json_writer_end_array(w);
        }
        ssmb_json_writer_end_object(w);
    }
    if (ssmb__api_given(s->reason)) ssmb__api_member(w, "Reason", s->reason);
    ssmb_json_writer_end_object(w);
}

/* {"SessionId":...} */
static void ssmb__api_session_id_body(ssmb_json_writer *w, const void *args) {
    ssmb_json_writer_begin_object(w);
    ssmb__api_member(w, "SessionId", (const char *)args);
    ssmb_json_writer_end_object(w);
}

/* {"KeyId":...,"NumberOfBytes":64,"EncryptionContext":{...}} (PROTOCOL.md §6.2, §6.6) */
static void ssmb__api_data_key_body(ssmb_json_writer *w, const void *args) {
    const ssmb_api_data_key_request *k = (const ssmb_api_data_key_request *)args;
    ssmb_json_writer_begin_object(w);
    ssmb__api_member(w, "KeyId", k->key_id);
    ssmb__jw_key(w, "NumberOfBytes");
    ssmb_json_writer_u64(w, SSMB_API_DATA_KEY_SIZE);
    ssmb__jw_key(w, "EncryptionContext");
    ssmb_json_writer_begin_object(w);
    ssmb__api_member(w, "aws:ssm:SessionId", k->session_id);
    ssmb__api_member(w, "aws:ssm:TargetId", k->target_id);
    if (ssmb__api_given(k->random_challenge)) ssmb__api_member(w, "aws:ssm:RandomChallenge", k->random_challenge);
    ssmb_json_writer_end_object(w);
    ssmb_json_writer_end_object(w);
}

static ssmb_result ssmb__api_data_key_check(const ssmb_api_data_key_request *k) {
    if (!k || !ssmb__api_chars_within(k->key_id, 1, SSMB_API_KEY_ID_MAX)) return SSMB_ERR_INVALID_ARG;
    if (!ssmb__api_chars_within(k->session_id, 1, SSMB_API_SESSION_ID_MAX)) return SSMB_ERR_INVALID_ARG;
    if (!ssmb__api_chars_within(k->target_id, 1, SSMB__API_TARGET_MAX)) return SSMB_ERR_INVALID_ARG;
    return SSMB_OK;
}

/* ---- request head ---- */

typedef void (*ssmb__api_body_fn)(ssmb_json_writer *w, const void *args);

/* Host header value: the host, bracketed when IPv6, with a port that is
   not the scheme's default. */
static ssmb_result ssmb__api_host(const ssmb_url *u, char *out, size_t cap, ssmb_str *host) {
    ssmb__sink s;
    ssmb__sink_init(&s, out, cap);
    if (u->ipv6_literal) ssmb__put_c(&s, '[');
    ssmb__put_str(&s, u->host);
    if (u->ipv6_literal) ssmb__put_c(&s, ']');
    if (u->port != (u->secure ? 443 : 80)) {
        char digits[6];
        size_t i = sizeof digits;
        uint32_t p = u->port;
        do {
            digits[--i] = (char)('0' + p % 10);
            p /= 10;
        } while (p);
        ssmb__put_c(&s, ':');
        ssmb__put(&s, digits + i, sizeof digits - i);
    }
    host->ptr = out;
    return ssmb__sink_finish(&s, &host->len) == SSMB_OK ? SSMB_OK : SSMB_ERR_INVALID_ARG;
}

static ssmb_result ssmb__api_call_check(const ssmb_api_call *c, ssmb_url *u) {
    if (!c || !c->endpoint || !c->region || !ssmb__api_override_ok(c->endpoint)) return SSMB_ERR_INVALID_ARG;
    return ssmb_url_parse(c->endpoint, strlen(c->endpoint), u);
}

static ssmb_str ssmb__api_view(const char *p, size_t n) {
    ssmb_str v;
    v.ptr = p;
    v.len = n;
    return v;
}

static void ssmb__api_header(ssmb_http_header *h, size_t *n, const char *name, ssmb_str value) {
    h[*n].name = ssmb_str_c(name);
    h[*n].value = value;
    (*n)++;
}

/* What the head is built from: the call, the operation, the body (or, to
   learn the size, only its length with a stand-in payload hash). */
typedef struct ssmb__api_op {
    const ssmb_api_call *call;
    const char *service;
    const char *amz_target;
    const char *body;           /* NULL: sizing pass */
    size_t body_len;
} ssmb__api_op;

/* SigV4 over POST, the path, Host, Content-Type and X-Amz-Target, as the
   SDKs sign JSON 1.1 calls; the signer adds X-Amz-Date and the token. */
static ssmb_result ssmb__api_sign(const ssmb__api_op *op, const ssmb_url *u, ssmb_str host, char *authz, size_t cap,
                                  size_t *authz_len, ssmb_sigv4_output *o) {
    static const char stand_in[] = "0000000000000000000000000000000000000000000000000000000000000000";
    ssmb_http_header h[3];
    ssmb_sigv4_request req;
    ssmb_sigv4_params p;
    size_t n = 0;
    ssmb_result r;
    memset(&req, 0, sizeof req);
    memset(&p, 0, sizeof p);
    ssmb__api_header(h, &n, "Host", host);
    ssmb__api_header(h, &n, "Content-Type", ssmb_str_c("application/x-amz-json-1.1"));
    ssmb__api_header(h, &n, "X-Amz-Target", ssmb_str_c(op->amz_target));
    req.method = ssmb_str_c("POST");
    req.path = u->path;
    req.headers = h;
    req.header_count = n;
    req.body = op->body;
    req.body_len = op->body_len;
    if (!op->body) req.payload_hash = ssmb_str_c(stand_in);
    p.creds = op->call->creds;
    p.region = ssmb_str_c(op->call->region);
    p.service = ssmb_str_c(op->service);
    p.time = op->call->time;
    r = ssmb_sigv4_sign(&req, &p, authz, cap, authz_len, o);
    return r == SSMB_ERR_BUFFER_TOO_SMALL ? SSMB_ERR_LIMIT : r;
}

/* Signs and writes the head (through the blank line) into out[0..cap):
   Host, Content-Type, X-Amz-Target, X-Amz-Date, X-Amz-Security-Token,
   User-Agent, Authorization, Content-Length. */
static ssmb_result ssmb__api_head(const ssmb__api_op *op, const ssmb_url *u, char *out, size_t cap, size_t *len) {
    char host[SSMB__API_HOST_MAX], authz[SSMB__API_AUTHZ_MAX];
    const char *agent = op->call->user_agent ? op->call->user_agent : "ssmbridge/" SSMB_VERSION_STRING;
    ssmb_http_header h[8];
    ssmb_sigv4_output o;
    ssmb_http_request hr;
    size_t n = 0, an = 0;
    ssmb_result r;
    memset(&hr, 0, sizeof hr);
    if ((r = ssmb__api_host(u, host, sizeof host, &hr.host)) != SSMB_OK) return r;
    if ((r = ssmb__api_sign(op, u, hr.host, authz, sizeof authz, &an, &o)) != SSMB_OK) return r;
    ssmb__api_header(h, &n, "Content-Type", ssmb_str_c("application/x-amz-json-1.1"));
    ssmb__api_header(h, &n, "X-Amz-Target", ssmb_str_c(op->amz_target));
    ssmb__api_header(h, &n, "X-Amz-Date", ssmb_str_c(o.amz_date));
    if (op->call->creds.session_token.len)
        ssmb__api_header(h, &n, "X-Amz-Security-Token", op->call->creds.session_token);
    ssmb__api_header(h, &n, "User-Agent", ssmb_str_c(agent));
    ssmb__api_header(h, &n, "Authorization", ssmb__api_view(authz, an));
    hr.method = ssmb_str_c("POST");
    hr.target = u->path;
    hr.headers = h;
    hr.header_count = n;
    hr.has_body = 1;
    hr.body_len = op->body_len;
    r = ssmb_http_request_write(&hr, out, cap, len);
    ssmb__wipe(authz, sizeof authz);
    ssmb__wipe(&o, sizeof o);
    return r;
}

/* The head's size, learned with a stand-in payload hash: nothing in the
   head depends on the body's bytes, only on its length. */
static ssmb_result ssmb__api_head_size(const ssmb__api_op *op, const ssmb_url *u, size_t *len) {
    ssmb__api_op sizing = *op;
    ssmb_result r;
    sizing.body = NULL;
    r = ssmb__api_head(&sizing, u, NULL, 0, len);
    return r == SSMB_ERR_BUFFER_TOO_SMALL ? SSMB_OK : (r == SSMB_OK ? SSMB_ERR_INTERNAL : r);
}

/* The body's size from a writer with no buffer. */
static ssmb_result ssmb__api_body_size(ssmb__api_body_fn fn, const void *args, size_t *len) {
    ssmb_json_writer w;
    ssmb_result r;
    ssmb_json_writer_init(&w, NULL, 0);
    fn(&w, args);
    r = ssmb_json_writer_finish(&w, len);
    return r == SSMB_ERR_BUFFER_TOO_SMALL ? SSMB_OK : (r == SSMB_OK ? SSMB_ERR_INTERNAL : r);
}

/* Lays out [head][body]: the body is written (or copied) first, at its
   final place, then signed, then the head goes in front of it. */
static ssmb_result ssmb__api_write(ssmb__api_op *op, ssmb__api_body_fn fn, const void *args, char *out, size_t cap,
                                   size_t *out_len) {
    ssmb_url u;
    size_t head = 0, total, n = 0;
    ssmb_result r;
    if (!out_len) return SSMB_ERR_INVALID_ARG;
    if ((r = ssmb__api_call_check(op->call, &u)) != SSMB_OK) return SSMB_ERR_INVALID_ARG;
    if (fn && (r = ssmb__api_body_size(fn, args, &op->body_len)) != SSMB_OK) return r;
    if ((r = ssmb__api_head_size(op, &u, &head)) != SSMB_OK) return r;
    if (ssmb_size_add(head, op->body_len, &total) != SSMB_OK) return SSMB_ERR_OVERFLOW;
    *out_len = total;
    if (!out || cap < total) return SSMB_ERR_BUFFER_TOO_SMALL;
    if (fn) {
        ssmb_json_writer w;
        ssmb_json_writer_init(&w, out + head, op->body_len);
        fn(&w, args);
        if (ssmb_json_writer_finish(&w, &n) != SSMB_OK || n != op->body_len) return SSMB_ERR_INTERNAL;
    } else if (op->body_len) {
        memcpy(out + head, op->body, op->body_len);
    }
    op->body = out + head;
    if ((r = ssmb__api_head(op, &u, out, head, &n)) != SSMB_OK) return r;
    if (n != head) return SSMB_ERR_INTERNAL;
    if (total < cap) out[total] = '\0';
    return SSMB_OK;
}

static ssmb_result ssmb__api_write_op(const ssmb_api_call *call, const char *service, const char *amz_target,
                                      ssmb__api_body_fn fn, const void *args, char *out, size_t cap,
                                      size_t *out_len) {
    ssmb__api_op op;
    op.call = call;
    op.service = service;
    op.amz_target = amz_target;
    op.body = NULL;
    op.body_len = 0;
    return ssmb__api_write(&op, fn, args, out, cap, out_len);
}

SSMB_APIDEF ssmb_result ssmb_api_request_write(const ssmb_api_call *call, const char *service, const char *amz_target,
                                               const char *body, size_t body_len, char *out, size_t cap,
                                               size_t *out_len) {
    ssmb__api_op op;
    if (!service || !amz_target || (!body && body_len)) return SSMB_ERR_INVALID_ARG;
    op.call = call;
    op.service = service;
    op.amz_target = amz_target;
    op.body = body ? body : "";
    op.body_len = body_len;
    return ssmb__api_write(&op, NULL, NULL, out, cap, out_len);
}

SSMB_APIDEF ssmb_result ssmb_api_start_session_write(const ssmb_api_call *call, const ssmb_api_start_session *args,
                                                     char *out, size_t cap, size_t *out_len) {
    ssmb_result r = ssmb__api_start_session_check(args);
    if (r != SSMB_OK) return r;
    return ssmb__api_write_op(call, "ssm", "AmazonSSM.StartSession", ssmb__api_start_session_body, args, out, cap,
                              out_len);
}

static ssmb_result ssmb__api_session_op(const ssmb_api_call *call, const char *amz_target, const char *session_id,
                                        char *out, size_t cap, size_t *out_len) {
    if (!ssmb__api_chars_within(session_id, 1, SSMB_API_SESSION_ID_MAX)) return SSMB_ERR_INVALID_ARG;
    return ssmb__api_write_op(call, "ssm", amz_target, ssmb__api_session_id_body, session_id, out, cap, out_len);
}

SSMB_APIDEF ssmb_result ssmb_api_resume_session_write(const ssmb_api_call *call, const char *session_id, char *out,
                                                      size_t cap, size_t *out_len) {
    return ssmb__api_session_op(call, "AmazonSSM.ResumeSession", session_id, out, cap, out_len);
}

SSMB_APIDEF ssmb_result ssmb_api_terminate_session_write(const ssmb_api_call *call, const char *session_id, char *out,
                                                         size_t cap, size_t *out_len) {
    return ssmb__api_session_op(call, "AmazonSSM.TerminateSession", session_id, out, cap, out_len);
}

SSMB_APIDEF ssmb_result ssmb_api_generate_data_key_write(const ssmb_api_call *call,
                                                         const ssmb_api_data_key_request *args, char *out, size_t cap,
                                                         size_t *out_len) {
    ssmb_result r = ssmb__api_data_key_check(args);
    if (r != SSMB_OK) return r;
    return ssmb__api_write_op(call, "kms", "TrentService.GenerateDataKey", ssmb__api_data_key_body, args, out, cap,
                              out_len);
}

/* ---- retries ---- */

SSMB_APIDEF int ssmb_api_is_retryable(uint32_t status, ssmb_str error_type) {
    static const char *const types[] = {"ThrottlingException",
                                        "Throttling",
                                        "ThrottledException",
                                        "RequestThrottledException",
                                        "RequestThrottled",
                                        "TooManyRequestsException",
                                        "RequestLimitExceeded",
                                        "ProvisionedThroughputExceededException",
                                        "BandwidthLimitExceeded",
                                        "SlowDown",
                                        "PriorRequestNotComplete",
                                        "TransactionInProgressException",
                                        "EC2ThrottledException",
                                        "RequestTimeout",
                                        "RequestTimeoutException"};
    size_t i;
    if (status == 429 || (status >= 500 && status <= 599)) return 1;
    if (!ssmb__str_valid(error_type)) return 0;
    for (i = 0; i < sizeof types / sizeof types[0]; i++)
        if (ssmb_str_eq(error_type, types[i])) return 1;
    return 0;
}

SSMB_APIDEF int64_t ssmb_api_retry_delay_ms(uint32_t retries_done, uint32_t random_value) {
    uint64_t base = 1000u + (((uint64_t)random_value * 500u) >> 32);
    if (retries_done >= SSMB_API_MAX_RETRIES) return -1;
    return (int64_t)(base << retries_done);
}

/* ---- responses ---- */

/* Decodes a chunked body in place: data moves down to in[start..). */
static ssmb_result ssmb__api_dechunk(char *in, size_t start, size_t len, size_t *body_len, size_t *end) {
    ssmb_http_chunked c;
    size_t pos = start, w = start;
    ssmb_http_chunked_init(&c, 0);
    for (;;) {
        size_t used = 0;
        ssmb_str data;
        ssmb_result r = ssmb_http_chunked_read(&c, in + pos, len - pos, &used, &data);
        pos += used;
        if (r == SSMB_OK) {
            if (data.len) memmove(in + w, data.ptr, data.len);
            w += data.len;
        } else if (r == SSMB_CLOSED) {
            *body_len = w - start;
            *end = pos;
            return SSMB_OK;
        } else {
            return r == SSMB_AGAIN ? SSMB_ERR_TRUNCATED : r;
        }
    }
}

/* RFC 9112 §6.3: chunked, else Content-Length, else up to the end. */
static ssmb_result ssmb__api_body(char *in, size_t len, const ssmb_http_response *h, ssmb_api_response *out) {
    const ssmb_http_header *te = ssmb_http_header_find(h, "Transfer-Encoding", NULL);
    const ssmb_http_header *ce = ssmb_http_header_find(h, "Content-Encoding", NULL);
    size_t start = h->head_len, n = len - start, end = len;
    uint64_t cl = 0;
    int has_cl = 0;
    ssmb_result r = ssmb_http_content_length(h, &has_cl, &cl);
    if (r != SSMB_OK) return SSMB_ERR_HTTP;
    if (ce && !ssmb__http_ieq(ce->value, "identity")) return SSMB_ERR_UNSUPPORTED;
    if (te) {
        if (has_cl || ssmb_http_header_find(h, "Transfer-Encoding", te) || !ssmb__http_ieq(te->value, "chunked"))
            return SSMB_ERR_HTTP;
        if ((r = ssmb__api_dechunk(in, start, len, &n, &end)) != SSMB_OK) return r;
    } else if (has_cl) {
        if (cl > (uint64_t)(len - start)) return SSMB_ERR_TRUNCATED;
        n = (size_t)cl;
        end = start + n;
    }
    out->body.ptr = in + start;
    out->body.len = n;
    out->response_len = end;
    return SSMB_OK;
}

/* Length of the escape at raw[i] (a backslash): 2, 6, or 12 for a
   surrogate pair; what is left when it runs out (then decoding fails). */
static size_t ssmb__api_escape_len(ssmb_str raw, size_t i) {
    const char *p = raw.ptr + i;
    size_t left = raw.len - i;
    if (left < 2 || p[1] != 'u') return left < 2 ? left : 2;
    if (left < 6) return left;
    if (left >= 12 && (p[2] == 'd' || p[2] == 'D') && p[3] && strchr("89abAB", p[3]) && p[6] == '\\' && p[7] == 'u')
        return 12;
    return 6;
}

/* Decodes a string value's escapes where it lies in base (never longer). */
static ssmb_result ssmb__api_unescape(char *base, ssmb_str *v) {
    char *w;
    size_t i = 0, n = 0;
    if (!memchr(v->ptr, '\\', v->len)) return SSMB_OK;
    w = base + (v->ptr - base);
    while (i < v->len) {
        char unit[16];
        size_t k, got = 0;
        ssmb_str piece;
        if (v->ptr[i] != '\\') {
            w[n++] = v->ptr[i++];
            continue;
        }
        k = ssmb__api_escape_len(*v, i);
        piece.ptr = v->ptr + i;
        piece.len = k;
        if (ssmb_json_unescape(piece, unit, sizeof unit, &got) != SSMB_OK || got > k) return SSMB_ERR_MALFORMED;
        memcpy(w + n, unit, got);
        n += got;
        i += k;
    }
    v->len = n;
    return SSMB_OK;
}

/* "aws.ns#Type:http://..." -> "Type" (the JSON 1.1 error type rules). */
static ssmb_str ssmb__api_error_name(ssmb_str t) {
    const char *colon = t.len ? (const char *)memchr(t.ptr, ':', t.len) : NULL;
    const char *hash;
    if (colon) t.len = (size_t)(colon - t.ptr);
    hash = t.len ? (const char *)memchr(t.ptr, '#', t.len) : NULL;
    if (hash) {
        t.len -= (size_t)(hash + 1 - t.ptr);
        t.ptr = hash + 1;
    }
    return t;
}

/* A string member; absent or null gives an empty view. */
static ssmb_result ssmb__api_string(char *base, const ssmb_json *doc, int32_t obj, const char *key, ssmb_str *out) {
    ssmb_result r = ssmb__json_opt_str(doc, obj, key, out);
    if (r != SSMB_OK) return SSMB_ERR_JSON;
    return ssmb__api_unescape(base, out) == SSMB_OK ? SSMB_OK : SSMB_ERR_JSON;
}

/* The error body's __type and message (or Message), else x-amzn-ErrorType. */
static void ssmb__api_error_fields(char *in, const ssmb_http_response *h, ssmb_api_response *out) {
    ssmb_json_token toks[SSMB__API_MAX_TOKENS];
    ssmb_json doc;
    ssmb_str type = ssmb__str_empty(), msg = ssmb__str_empty();
    const ssmb_http_header *hdr;
    if (ssmb_json_parse(&doc, out->body.ptr, out->body.len, toks, SSMB__API_MAX_TOKENS) == SSMB_OK &&
        ssmb_json_kind(&doc, 0) == SSMB_JSON_OBJECT) {
        if (ssmb__api_string(in, &doc, 0, "__type", &type) != SSMB_OK) type = ssmb__str_empty();
        if (ssmb__api_string(in, &doc, 0, "message", &msg) != SSMB_OK || msg.len == 0)
            if (ssmb__api_string(in, &doc, 0, "Message", &msg) != SSMB_OK) msg = ssmb__str_empty();
    }
    if (type.len == 0 && (hdr = ssmb_http_header_find(h, "x-amzn-ErrorType", NULL)) != NULL) type = hdr->value;
    out->error_type = ssmb__api_error_name(type);
    out->error_message = msg;
}

SSMB_APIDEF ssmb_result ssmb_api_response_parse(char *in, size_t len, ssmb_api_response *out) {
    ssmb_http_header headers[SSMB__API_MAX_HEADERS];
    ssmb_http_response h;
    const ssmb_http_header *rid;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    out->body = out->request_id = out->error_type = out->error_message = ssmb__str_empty();
    if (!in) return SSMB_ERR_INVALID_ARG;
    r = ssmb_http_response_parse(in, len, headers, SSMB__API_MAX_HEADERS, 0, &h);
    if (r != SSMB_OK) return r == SSMB_AGAIN ? SSMB_ERR_TRUNCATED : r;
    out->status = h.status;
    if ((rid = ssmb_http_header_find(&h, "x-amzn-RequestId", NULL)) != NULL) out->request_id = rid->value;
    if ((r = ssmb__api_body(in, len, &h, out)) != SSMB_OK) return r;
    if (h.status >= 200 && h.status <= 299) return SSMB_OK;
    ssmb__api_error_fields(in, &h, out);
    out->retryable = (uint32_t)ssmb_api_is_retryable(h.status, out->error_type);
    return out->error_type.len ? SSMB_ERR_AWS_API : SSMB_ERR_HTTP;
}

/* ---- StreamUrl hosts ---- */

/* Splits host into at most 8 dot-separated labels; 0 for an empty label. */
static size_t ssmb__api_labels(ssmb_str host, ssmb_str labels[8]) {
    size_t n = 0, i = 0, start = 0;
    for (i = 0; i <= host.len; i++) {
        if (i < host.len && host.ptr[i] != '.') continue;
        if (n == 8 || i == start) return 0;
        labels[n].ptr = host.ptr + start;
        labels[n++].len = i - start;
        start = i + 1;
    }
    return n;
}

static int ssmb__api_label_is(ssmb_str l, const char *want) { return ssmb__api_ieq(l.ptr, l.len, want); }

/* <region>.amazonaws.com or <region>.amazonaws.com.cn at labels[at..n):
   the region one DNS label (the policy's when it names one), .cn exactly
   for cn-* regions. */
static int ssmb__api_region_suffix(const ssmb_str *l, size_t at, size_t n, const char *vpce, const char *region) {
    size_t k = at + 1;
    int cn;
    if (at >= n || !ssmb__api_label_ok(l[at].ptr, l[at].len)) return 0;
    if (region && !ssmb__api_ieq(l[at].ptr, l[at].len, region)) return 0;
    if (vpce) {
        if (k >= n || !ssmb__api_label_is(l[k], vpce)) return 0;
        k++;
    }
    cn = ssmb__api_china_region(l[at].ptr, l[at].len);
    if (n != k + 2 + (size_t)cn) return 0;
    return ssmb__api_label_is(l[k], "amazonaws") && ssmb__api_label_is(l[k + 1], "com") &&
           (!cn || ssmb__api_label_is(l[k + 2], "cn"));
}

static int ssmb__api_aws_stream_host(ssmb_str host, const char *region) {
    ssmb_str l[8];
    size_t n = ssmb__api_labels(host, l);
    if (n < 4) return 0;
    if (ssmb__api_label_is(l[0], "ssmmessages")) return ssmb__api_region_suffix(l, 1, n, NULL, region);
    if (ssmb__api_label_is(l[0], "ssmmessages-fips"))
        return (ssmb__api_us_region(l[1].ptr, l[1].len) || ssmb__api_has_prefix(l[1].ptr, l[1].len, "us-gov-")) &&
               ssmb__api_region_suffix(l, 1, n, NULL, region);
    if (ssmb__api_has_prefix(l[0].ptr, l[0].len, "vpce-") && l[0].len > 5 && ssmb__api_label_ok(l[0].ptr, l[0].len))
        return ssmb__api_label_is(l[1], "ssmmessages") && ssmb__api_region_suffix(l, 2, n, "vpce", region);
    return 0;
}

SSMB_APIDEF ssmb_result ssmb_api_stream_url_check(const char *url, size_t len, const ssmb_api_stream_policy *policy) {
    ssmb_url u;
    int wss, custom;
    if (!url || !policy) return SSMB_ERR_INVALID_ARG;
    if (ssmb_url_parse(url, len, &u) != SSMB_OK || u.host.len == 0) return SSMB_ERR_SSM_PROTOCOL;
    wss = u.secure && ssmb__api_ieq(u.scheme.ptr, u.scheme.len, "wss");
    custom = policy->allow_custom && ssmb__api_given(policy->custom_host) &&
             ssmb__api_ieq(u.host.ptr, u.host.len, policy->custom_host);
    if (custom && (wss || (policy->allow_plain_ws && ssmb__api_ieq(u.scheme.ptr, u.scheme.len, "ws"))))
        return SSMB_OK;
    if (!wss || u.port != 443 || u.ipv6_literal) return SSMB_ERR_SSM_PROTOCOL;
    return ssmb__api_aws_stream_host(u.host, policy->region) ? SSMB_OK : SSMB_ERR_SSM_PROTOCOL;
}

/* ---- the call parsers ---- */

typedef struct ssmb__api_reply {
    ssmb_json doc;
    ssmb_json_token toks[SSMB__API_MAX_TOKENS];
} ssmb__api_reply;

/* The response, then its body as a JSON object. */
static ssmb_result ssmb__api_reply_parse(char *in, size_t len, ssmb_api_response *resp, ssmb__api_reply *rp) {
    ssmb_result r;
    if (!resp) return SSMB_ERR_INVALID_ARG;
    if ((r = ssmb_api_response_parse(in, len, resp)) != SSMB_OK) return r;
    r = ssmb_json_parse(&rp->doc, resp->body.ptr, resp->body.len, rp->toks, SSMB__API_MAX_TOKENS);
    if (r != SSMB_OK) return r == SSMB_ERR_LIMIT ? SSMB_ERR_LIMIT : SSMB_ERR_JSON;
    return ssmb_json_kind(&rp->doc, 0) == SSMB_JSON_OBJECT ? SSMB_OK : SSMB_ERR_JSON;
}

/* A string field: required ones must be present and not empty. */
static ssmb_result ssmb__api_field(char *in, const ssmb__api_reply *rp, const char *key, int required, size_t max,
                                   ssmb_str *out) {
    ssmb_result r = ssmb__api_string(in, &rp->doc, 0, key, out);
    if (r != SSMB_OK) return r;
    if (required && out->len == 0) return SSMB_ERR_JSON;
    return out->len > max ? SSMB_ERR_LIMIT : SSMB_OK;
}

static void ssmb__api_session_clear(ssmb_api_session *out) {
    out->session_id = out->token_value = out->stream_url = ssmb__str_empty();
}

static const ssmb_api_stream_policy *ssmb__api_policy(const ssmb_api_stream_policy *p, ssmb_api_stream_policy *zero) {
    memset(zero, 0, sizeof *zero);
    return p ? p : zero;
}

/* The three fields StartSession and ResumeSession answer with; required:
   each must be present (StartSession) or may be absent (ResumeSession). */
static ssmb_result ssmb__api_session_fields(char *in, size_t len, ssmb_api_response *resp, int required,
                                            ssmb_api_session *s) {
    ssmb__api_reply rp;
    ssmb_result r;
    if ((r = ssmb__api_reply_parse(in, len, resp, &rp)) != SSMB_OK) return r;
    if ((r = ssmb__api_field(in, &rp, "SessionId", required, SSMB_API_SESSION_ID_MAX, &s->session_id)) != SSMB_OK ||
        (r = ssmb__api_field(in, &rp, "TokenValue", required, SSMB_API_TOKEN_MAX, &s->token_value)) != SSMB_OK)
        return r;
    return ssmb__api_field(in, &rp, "StreamUrl", required, SSMB_API_STREAM_URL_MAX, &s->stream_url);
}

SSMB_APIDEF ssmb_result ssmb_api_start_session_parse(char *in, size_t len, const ssmb_api_stream_policy *policy,
                                                     ssmb_api_response *resp, ssmb_api_session *out) {
    ssmb_api_stream_policy zero;
    ssmb_api_session s;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    ssmb__api_session_clear(out);
    if ((r = ssmb__api_session_fields(in, len, resp, 1, &s)) != SSMB_OK) return r;
    r = ssmb_api_stream_url_check(s.stream_url.ptr, s.stream_url.len, ssmb__api_policy(policy, &zero));
    if (r != SSMB_OK) return r;
    *out = s;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_api_resume_session_parse(char *in, size_t len, const ssmb_api_stream_policy *policy,
                                                      ssmb_api_response *resp, ssmb_api_session *out) {
    ssmb_api_stream_policy zero;
    ssmb_api_session s;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    ssmb__api_session_clear(out);
    if ((r = ssmb__api_session_fields(in, len, resp, 0, &s)) != SSMB_OK) return r;
    if (s.stream_url.len &&
        ssmb_api_stream_url_check(s.stream_url.ptr, s.stream_url.len, ssmb__api_policy(policy, &zero)) != SSMB_OK)
        s.stream_url = ssmb__str_empty();
    *out = s;
    return s.token_value.len ? SSMB_OK : SSMB_CLOSED;
}

SSMB_APIDEF ssmb_result ssmb_api_terminate_session_parse(char *in, size_t len, ssmb_api_response *resp,
                                                         ssmb_api_session *out) {
    ssmb__api_reply rp;
    ssmb_str id;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    ssmb__api_session_clear(out);
    if ((r = ssmb__api_reply_parse(in, len, resp, &rp)) != SSMB_OK) return r;
    if ((r = ssmb__api_field(in, &rp, "SessionId", 0, SSMB_API_SESSION_ID_MAX, &id)) != SSMB_OK) return r;
    out->session_id = id;
    return SSMB_OK;
}

/* CiphertextBlob into the caller's buffer (the size it needs is set even
   when it does not fit). */
static ssmb_result ssmb__api_ciphertext(ssmb_str b64, ssmb_api_data_key *out) {
    size_t n = 0;
    ssmb_result r;
    if (b64.len > ssmb_base64_encoded_len(SSMB_API_CIPHERTEXT_MAX)) return SSMB_ERR_LIMIT;
    r = ssmb_base64_decode(b64.ptr, b64.len, out->ciphertext, out->ciphertext ? out->ciphertext_cap : 0, &n);
    out->ciphertext_len = n;
    return r;
}

/* Plaintext: exactly 64 bytes. */
static ssmb_result ssmb__api_plaintext(ssmb_str b64, ssmb_api_data_key *out) {
    size_t n = 0;
    ssmb_result r = SSMB_ERR_MALFORMED;
    if (b64.len == ssmb_base64_encoded_len(SSMB_API_DATA_KEY_SIZE))
        r = ssmb_base64_decode(b64.ptr, b64.len, out->plaintext, sizeof out->plaintext, &n);
    if (r == SSMB_OK && n != SSMB_API_DATA_KEY_SIZE) r = SSMB_ERR_MALFORMED;
    return r == SSMB_OK ? SSMB_OK : SSMB_ERR_MALFORMED;
}

/* The fields; the Plaintext text (as received, escapes and all) is wiped
   from the buffer whatever happens once it is found. */
static ssmb_result ssmb__api_data_key_fields(char *in, const ssmb__api_reply *rp, ssmb_api_data_key *out) {
    ssmb_str blob, plain, key, raw;
    size_t big = ssmb_base64_encoded_len(SSMB_API_CIPHERTEXT_MAX) + 1;
    ssmb_result r = ssmb__api_field(in, rp, "Plaintext", 1, big, &plain);
    if (r != SSMB_OK) return r;
    raw = ssmb_json_raw(&rp->doc, ssmb_json_find(&rp->doc, 0, "Plaintext"));
    r = ssmb__api_field(in, rp, "CiphertextBlob", 1, big, &blob);
    if (r == SSMB_OK) r = ssmb__api_field(in, rp, "KeyId", 0, SSMB_API_KEY_ID_MAX, &key);
    if (r == SSMB_OK) r = ssmb__api_ciphertext(blob, out);
    if (r == SSMB_OK) r = ssmb__api_plaintext(plain, out);
    if (r == SSMB_OK) out->key_id = key;
    ssmb__wipe(in + (raw.ptr - in), raw.len);
    return r;
}

SSMB_APIDEF ssmb_result ssmb_api_generate_data_key_parse(char *in, size_t len, ssmb_api_response *resp,
                                                         ssmb_api_data_key *out) {
    ssmb__api_reply rp;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    ssmb__wipe(out->plaintext, sizeof out->plaintext);
    out->ciphertext_len = 0;
    out->key_id = ssmb__str_empty();
    r = ssmb__api_reply_parse(in, len, resp, &rp);
    if (r == SSMB_OK) r = ssmb__api_data_key_fields(in, &rp, out);
    if (r != SSMB_OK) ssmb__wipe(out->plaintext, sizeof out->plaintext);
    return r;
}

// >>tls
/* The TLS backend contract: one backend is compiled in (>>tls-bearssl,
   >>tls-mbedtls or >>tls-none) and each defines struct ssmb__tls and the
   functions below. The shape is BearSSL's engine: four directions, each a
   buffer that is taken and then acknowledged, so nothing blocks and no
   layer copies more than it must.
     net_in   ciphertext from the transport   ssmb__tls_net_in_buf  / _ack
     net_out  ciphertext for the transport    ssmb__tls_net_out_buf / _ack
     app_in   plaintext for the conn          ssmb__tls_app_in_buf  / _ack
     app_out  plaintext the conn sends        ssmb__tls_app_out_buf / _ack
   A _buf call returns NULL (and 0) when that direction cannot move now; a
   backend may do its work (decrypting, handshake steps) inside these calls.
   ssmb__tls_flush seals what app_out holds into records at once. The conn
   keeps calling them until none makes progress. A backend need not use
   every call, hence SSMB__MAYBE_UNUSED. */
typedef struct ssmb__tls ssmb__tls;

typedef struct ssmb__tls_config {
    const ssmb_trust *trust;        /* anchors the chain must reach */
    const char *server_name;        /* SNI, and the name the certificate must carry (an IP
                                       literal: no SNI, an iPAddress SAN) */
    int64_t now_utc;                /* certificate validity is checked at this time */
    ssmb_random_fn random_fn;       /* seeds and nonces */
    void *random_user_data;
} ssmb__tls_config;

/* Bytes for one struct ssmb__tls with all its buffers (one allocation),
   for a connection to server_name (a server named by IP needs more). */
static SSMB__MAYBE_UNUSED size_t ssmb__tls_size(const char *server_name);
/* t points at ssmb__tls_size(cfg->server_name) bytes aligned for any type; starts the
   handshake (the ClientHello waits in net_out). SSMB_ERR_INVALID_ARG (no
   trust, or a server name empty or over 255 bytes), SSMB_ERR_NO_RANDOM,
   SSMB_ERR_NOMEM (mbedTLS's own allocations), SSMB_ERR_TLS,
   SSMB_ERR_UNSUPPORTED. After a failure nothing is held, and
   ssmb__tls_free is still harmless. t must not move once initialised. */
static SSMB__MAYBE_UNUSED ssmb_result ssmb__tls_init(ssmb__tls *t, const ssmb__tls_config *cfg);
/* Releases what the backend holds outside t and wipes the keys. */
static SSMB__MAYBE_UNUSED void ssmb__tls_free(ssmb__tls *t);
static SSMB__MAYBE_UNUSED uint8_t *ssmb__tls_net_in_buf(ssmb__tls *t, size_t *cap);
static SSMB__MAYBE_UNUSED void ssmb__tls_net_in_ack(ssmb__tls *t, size_t n);
static SSMB__MAYBE_UNUSED const uint8_t *ssmb__tls_net_out_buf(ssmb__tls *t, size_t *len);
static SSMB__MAYBE_UNUSED void ssmb__tls_net_out_ack(ssmb__tls *t, size_t n);
static SSMB__MAYBE_UNUSED uint8_t *ssmb__tls_app_in_buf(ssmb__tls *t, size_t *len);
static SSMB__MAYBE_UNUSED void ssmb__tls_app_in_ack(ssmb__tls *t, size_t n);
static SSMB__MAYBE_UNUSED uint8_t *ssmb__tls_app_out_buf(ssmb__tls *t, size_t *cap);
static SSMB__MAYBE_UNUSED void ssmb__tls_app_out_ack(ssmb__tls *t, size_t n);
static SSMB__MAYBE_UNUSED void ssmb__tls_flush(ssmb__tls *t);
/* Sends close_notify. */
static SSMB__MAYBE_UNUSED void ssmb__tls_close(ssmb__tls *t);
/* 1 once the handshake has completed (application data may flow). */
static SSMB__MAYBE_UNUSED int ssmb__tls_handshake_done(const ssmb__tls *t);
/* SSMB_OK while healthy; SSMB_CLOSED once both close_notify alerts have
   passed and ours has left net_out; SSMB_ERR_TLS_CERT when the certificate
   was refused; SSMB_ERR_TLS for any other failure. *detail: the backend's
   own error code (BR_ERR_*, or the negative mbedTLS code). After a failure
   net_out may still hold an alert for the peer. */
static SSMB__MAYBE_UNUSED ssmb_result ssmb__tls_error(const ssmb__tls *t, int32_t *detail);

#if defined(SSMB_USE_BEARSSL) || defined(SSMB_USE_MBEDTLS)
/* ---- servers named by IP address ----------------------------------------
   A server reached by an IPv4 or IPv6 literal gets no SNI (RFC 6066 §3:
   SNI carries DNS names only) and its certificate must carry the address
   as an iPAddress subjectAltName, 4 or 16 bytes (RFC 5280 §4.2.1.6; RFC
   6125 §3.1.3.2). Neither BearSSL's minimal engine nor mbedTLS 2.28 matches
   those, so each backend checks them itself; a DNS name or CN spelling
   the address is not accepted in its place. */

/* One decimal part of dotted IPv4 text at s[*i]: 1..3 digits up to 255,
   without a leading zero (inet_pton refuses those too: "010" could mean
   octal elsewhere). */
static int ssmb__ip4_part(const char *s, size_t len, size_t *i, uint8_t *out) {
    unsigned v = 0;
    size_t start = *i;
    while (*i < len && *i - start < 3 && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (unsigned)(s[*i] - '0');
        (*i)++;
    }
    if (*i == start || v > 255 || (s[start] == '0' && *i - start > 1)) return 0;
    *out = (uint8_t)v;
    return 1;
}

/* The whole of s[0, len) as a dotted-quad IPv4 address. */
static int ssmb__ip4_parse(const char *s, size_t len, uint8_t out[4]) {
    size_t i = 0;
    int k;
    for (k = 0; k < 4; k++) {
        if (k > 0 && (i >= len || s[i++] != '.')) return 0;
        if (!ssmb__ip4_part(s, len, &i, out + k)) return 0;
    }
    return i == len;
}

static int ssmb__hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One group of IPv6 text at s[*i]: 1..4 hex digits, into out[0..1]. */
static int ssmb__ip6_group(const char *s, size_t len, size_t *i, uint8_t *out) {
    unsigned v = 0;
    size_t start = *i;
    int h;
    while (*i < len && *i - start < 4 && (h = ssmb__hex_digit(s[*i])) >= 0) {
        v = v * 16 + (unsigned)h;
        (*i)++;
    }
    if (*i == start) return 0;
    out[0] = (uint8_t)(v >> 8);
    out[1] = (uint8_t)v;
    return 1;
}

/* Spreads the n bytes read around a "::" at `gap` (-1: none) to 16. */
static int ssmb__ip6_expand(uint8_t out[16], size_t n, long gap) {
    size_t tail;
    if (gap < 0) return n == 16;
    if (n >= 16) return 0; /* "::" stands for one group at least */
    tail = n - (size_t)gap;
    memmove(out + 16 - tail, out + gap, tail);
    memset(out + gap, 0, 16 - n);
    return 1;
}

/* The whole of s[0, len) as IPv6 text (RFC 4291 §2.2): groups, one "::",
   an IPv4 tail; no zone ("%eth0"). */
static int ssmb__ip6_parse(const char *s, size_t len, uint8_t out[16]) {
    size_t i = 0, n = 0;
    long gap = -1;
    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        gap = 0;
        i = 2;
    }
    while (i < len) {
        if (!memchr(s + i, ':', len - i) && memchr(s + i, '.', len - i)) { /* the IPv4 tail ends the text */
            if (n > 12 || !ssmb__ip4_parse(s + i, len - i, out + n)) return 0;
            n += 4;
            break;
        }
        if (n >= 16 || !ssmb__ip6_group(s, len, &i, out + n)) return 0;
        n += 2;
        if (i == len) break;
        if (s[i++] != ':' || i == len) return 0;
        if (s[i] == ':') {
            if (gap >= 0) return 0;
            gap = (long)n;
            i++;
        }
    }
    return ssmb__ip6_expand(out, n, gap);
}

/* The address bytes when `name` is an IPv4 or IPv6 literal: 4, 16, or 0
   for a name that is neither (a DNS name). */
static size_t ssmb__tls_ip_literal(const char *name, uint8_t out[16]) {
    size_t len = strlen(name);
    if (ssmb__ip4_parse(name, len, out)) return 4;
    if (memchr(name, ':', len) && ssmb__ip6_parse(name, len, out)) return 16;
    return 0;
}
#endif

// >>tls-bearssl
/* ---- shared by the BearSSL and mbedTLS backends --------------------------
   Argument checks, the default random source and reading a trust file;
   the BearSSL backend itself follows below. */
#if defined(SSMB_USE_BEARSSL) || defined(SSMB_USE_MBEDTLS)

/* Largest file ssmb_trust_load reads (Debian's whole bundle is ~220 KB). */
#define SSMB__TRUST_FILE_MAX ((size_t)16 << 20)

/* Verification needs anchors and a name to check. 255 bytes is the
   longest DNS name (RFC 1035 §2.3.4) and what BearSSL can hold. */
static ssmb_result ssmb__tls_check_config(const ssmb__tls_config *cfg) {
    size_t n;
    if (!cfg || !cfg->trust || !cfg->server_name) return SSMB_ERR_INVALID_ARG;
    n = strlen(cfg->server_name);
    if (n == 0 || n > 255) return SSMB_ERR_INVALID_ARG;
    return ssmb_trust_count(cfg->trust) > 0 ? SSMB_OK : SSMB_ERR_INVALID_ARG;
}

static ssmb_random_fn ssmb__tls_random_fn(const ssmb__tls_config *cfg) {
    return cfg->random_fn ? cfg->random_fn : ssmb_random_system;
}

/* The common checks of ssmb_trust_create: *out is cleared first. */
static ssmb_result ssmb__trust_args(const ssmb_allocator *a, const void *pem, size_t len, ssmb_trust **out) {
    if (!out) return SSMB_ERR_INVALID_ARG;
    *out = NULL;
    if (a && !ssmb__allocator_valid(a)) return SSMB_ERR_INVALID_ARG;
    return (pem || len == 0) ? SSMB_OK : SSMB_ERR_INVALID_ARG;
}

/* A trust keeps a copy of the allocator that made it (all zero: defaults). */
static void ssmb__trust_keep_allocator(ssmb_allocator *dst, const ssmb_allocator *a) {
    if (a) *dst = *a;
    else memset(dst, 0, sizeof *dst);
}

/* Size of an open file, from the start. A first byte is read before
   seeking so that a directory (which fopen accepts on Linux) fails as
   unreadable rather than reporting a size. */
static ssmb_result ssmb__trust_file_size(FILE *f, size_t *size) {
    long n;
    if (fgetc(f) == EOF && ferror(f)) return SSMB_ERR_IO;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) return SSMB_ERR_IO;
    if ((unsigned long)n > SSMB__TRUST_FILE_MAX) return SSMB_ERR_LIMIT;
    *size = (size_t)n;
    return SSMB_OK;
}

/* The whole file in one allocation of *size bytes (none when it is empty). */
static ssmb_result ssmb__trust_read_file(const ssmb_allocator *a, const char *path, uint8_t **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    ssmb_result r;
    *data = NULL;
    *size = 0;
    if (!f) return SSMB_ERR_IO;
    r = ssmb__trust_file_size(f, size);
    if (r == SSMB_OK && *size > 0) {
        *data = (uint8_t *)ssmb__alloc(a, *size);
        if (!*data) r = SSMB_ERR_NOMEM;
        else if (fread(*data, 1, *size, f) != *size) r = SSMB_ERR_IO;
    }
    fclose(f);
    if (r != SSMB_OK) {
        ssmb__free(a, *data, *size);
        *data = NULL;
    }
    return r;
}

SSMB_APIDEF ssmb_result ssmb_trust_load(const ssmb_allocator *a, const char *path, ssmb_trust **out) {
    uint8_t *data;
    size_t size;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    *out = NULL;
    if (a && !ssmb__allocator_valid(a)) return SSMB_ERR_INVALID_ARG;
    r = ssmb__trust_read_file(a, path ? path : SSMB_SYSTEM_CA_BUNDLE, &data, &size);
    if (r != SSMB_OK) return r;
    r = ssmb_trust_create(a, data, size, out);
    ssmb__free(a, data, size);
    return r;
}
#endif

#if defined(SSMB_USE_BEARSSL)
#include <bearssl.h>

/* ---- trust anchors (BearSSL) ---------------------------------------------
   BearSSL validates a chain against br_x509_trust_anchor records: the
   subject DN and public key of each CA (bearssl_x509.h). They are decoded
   from the PEM in two passes over the text, one measuring and one filling,
   so that everything lives in ONE allocation:
       [struct ssmb_trust][anchors[count]][DN and key bytes]
   BearSSL itself allocates nothing. */
struct ssmb_trust {
    ssmb_allocator alloc;           /* the allocator that made the block */
    size_t block_size;              /* bytes of the block, for free_fn */
    size_t count;                   /* anchors */
    size_t skipped;                 /* CERTIFICATE blocks that did not decode */
    br_x509_trust_anchor *anchors;  /* count entries inside the block */
};

/* Where the anchor array starts: just past the struct, rounded up to the
   anchor's alignment (measured with offsetof: C99 has no alignof). */
typedef struct ssmb__ta_align {
    char c;
    br_x509_trust_anchor ta;
} ssmb__ta_align;

static size_t ssmb__trust_anchor_offset(void) {
    size_t align = offsetof(ssmb__ta_align, ta);
    return (sizeof(struct ssmb_trust) + align - 1) / align * align;
}

/* One pass over PEM text. The PEM decoder's output streams into the X.509
   decoder, whose subject DN streams into the byte area. When measuring
   (bytes == NULL) only sizes are counted; when filling, nothing is written
   past what the measuring pass found. A certificate's DN is taken before
   the decoder knows whether the certificate is good, so a bad one rolls
   `used` back to where it began. */
typedef struct ssmb__ta_walk {
    br_pem_decoder_context pem;
    br_x509_decoder_context x509;
    br_x509_trust_anchor *anchors;  /* filling: max_count entries */
    uint8_t *bytes;                 /* filling: bytes_cap bytes */
    size_t max_count, bytes_cap;
    size_t count, skipped;          /* anchors kept, certificates skipped */
    size_t used;                    /* bytes of the kept anchors, then of the current one */
    size_t cert_start;              /* `used` when the current certificate began */
    int in_cert;                    /* inside a CERTIFICATE block */
    int lost;                       /* filling: a byte of this certificate found no room */
} ssmb__ta_walk;

static void ssmb__ta_walk_init(ssmb__ta_walk *w, br_x509_trust_anchor *anchors, size_t max_count, uint8_t *bytes,
                               size_t bytes_cap) {
    memset(w, 0, sizeof *w);
    w->anchors = anchors;
    w->max_count = max_count;
    w->bytes = bytes;
    w->bytes_cap = bytes_cap;
}

/* Accounts for n bytes of the current certificate. Filling, it copies them
   and returns where they went; measuring, it returns NULL. Invariant when
   filling: used <= bytes_cap. */
static uint8_t *ssmb__ta_append(ssmb__ta_walk *w, const void *src, size_t n) {
    uint8_t *dst;
    if (!w->bytes) {
        w->used += n; /* cannot wrap: these bytes are a part of the PEM's own bytes */
        return NULL;
    }
    if (n > w->bytes_cap - w->used) {
        w->lost = 1;
        return NULL;
    }
    dst = w->bytes + w->used;
    if (n) memcpy(dst, src, n);
    w->used += n;
    return dst;
}

static void ssmb__ta_dn(void *ctx, const void *buf, size_t len) {
    (void)ssmb__ta_append((ssmb__ta_walk *)ctx, buf, len);
}

static void ssmb__ta_der(void *ctx, const void *buf, size_t len) {
    br_x509_decoder_push(&((ssmb__ta_walk *)ctx)->x509, buf, len);
}

/* Forgets the current certificate, if any, as one that did not decode. */
static void ssmb__ta_drop(ssmb__ta_walk *w) {
    if (!w->in_cert) return;
    w->in_cert = 0;
    w->skipped++;
    w->used = w->cert_start;
}

/* Only CERTIFICATE blocks (RFC 7468 §5.1); keys and the rest pass by.
   BearSSL 0.6 leaves the trailing dashes in the name when the line ends in
   CR LF ("CERTIFICATE-----"), so those are allowed. */
static int ssmb__ta_is_cert(const char *name) {
    static const char label[] = "CERTIFICATE";
    if (strncmp(name, label, sizeof label - 1) != 0) return 0;
    for (name += sizeof label - 1; *name == '-'; name++) continue;
    return *name == '\0';
}

static void ssmb__ta_begin(ssmb__ta_walk *w) {
    ssmb__ta_drop(w);
    if (!ssmb__ta_is_cert(br_pem_decoder_name(&w->pem))) {
        br_pem_decoder_setdest(&w->pem, NULL, NULL);
        return;
    }
    w->in_cert = 1;
    w->cert_start = w->used;
    w->lost = 0;
    br_x509_decoder_init(&w->x509, ssmb__ta_dn, w);
    br_pem_decoder_setdest(&w->pem, ssmb__ta_der, w);
}

/* Copies the key after the DN and records the anchor. 0 for a key type
   BearSSL does not know, or (filling) when something found no room. The
   decoder's key points into the decoder, hence the copy. */
static int ssmb__ta_keep(ssmb__ta_walk *w, const br_x509_pkey *pk) {
    br_x509_trust_anchor ta;
    memset(&ta, 0, sizeof ta);
    ta.dn.len = w->used - w->cert_start;
    /* A CA anchor may sign chains; any other is trusted only as the very
       server certificate it is ("direct trust", bearssl_x509.h). */
    ta.flags = br_x509_decoder_isCA(&w->x509) ? BR_X509_TA_CA : 0;
    ta.pkey.key_type = pk->key_type;
    if (pk->key_type == BR_KEYTYPE_RSA) {
        ta.pkey.key.rsa.nlen = pk->key.rsa.nlen;
        ta.pkey.key.rsa.elen = pk->key.rsa.elen;
        ta.pkey.key.rsa.n = ssmb__ta_append(w, pk->key.rsa.n, pk->key.rsa.nlen);
        ta.pkey.key.rsa.e = ssmb__ta_append(w, pk->key.rsa.e, pk->key.rsa.elen);
    } else if (pk->key_type == BR_KEYTYPE_EC) {
        ta.pkey.key.ec.curve = pk->key.ec.curve;
        ta.pkey.key.ec.qlen = pk->key.ec.qlen;
        ta.pkey.key.ec.q = ssmb__ta_append(w, pk->key.ec.q, pk->key.ec.qlen);
    } else {
        return 0;
    }
    if (w->bytes) {
        if (w->lost || w->count >= w->max_count) return 0;
        ta.dn.data = w->bytes + w->cert_start;
        w->anchors[w->count] = ta;
    }
    w->count++;
    return 1;
}

static void ssmb__ta_end(ssmb__ta_walk *w) {
    const br_x509_pkey *pk;
    if (!w->in_cert) return;
    pk = br_x509_decoder_get_pkey(&w->x509);
    if (!pk || !ssmb__ta_keep(w, pk)) {
        ssmb__ta_drop(w);
        return;
    }
    w->in_cert = 0;
}

/* A block that failed to decode. BearSSL 0.6 keeps the bytes it decoded
   before the error and hands them to the next object; a fresh decoder
   forgets them, and it starts at a line start since the failing line is
   consumed (bearssl_pem.h, BR_PEM_ERROR). */
static void ssmb__ta_error(ssmb__ta_walk *w) {
    ssmb__ta_drop(w);
    br_pem_decoder_init(&w->pem);
}

/* br_pem_decoder_push stops at each event and takes nothing more until the
   event is read (bearssl_pem.h), so every round reads one. */
static void ssmb__ta_push(ssmb__ta_walk *w, const uint8_t *p, size_t len) {
    while (len > 0) {
        size_t n = br_pem_decoder_push(&w->pem, p, len);
        int event = br_pem_decoder_event(&w->pem);
        p += n;
        len -= n;
        if (event == BR_PEM_BEGIN_OBJ) ssmb__ta_begin(w);
        else if (event == BR_PEM_END_OBJ) ssmb__ta_end(w);
        else if (event == BR_PEM_ERROR) ssmb__ta_error(w);
        else if (n == 0) break; /* neither progress nor event: not expected, but never spin */
    }
}

static void ssmb__ta_run(ssmb__ta_walk *w, const uint8_t *text, size_t len) {
    br_pem_decoder_init(&w->pem);
    ssmb__ta_push(w, text, len);
    /* The decoder acts at line ends: a last line without its newline
       would stay pending. */
    ssmb__ta_push(w, (const uint8_t *)"\n", 1);
    ssmb__ta_drop(w); /* a block the text cut short */
}

/* The second pass, into one block of `size` bytes holding `count` anchors
   and `bytes` bytes of DNs and keys (the first pass's findings). */
static ssmb_result ssmb__trust_fill(const ssmb_allocator *a, ssmb__ta_walk *w, const uint8_t *text, size_t len,
                                    size_t size, size_t count, size_t bytes, ssmb_trust **out) {
    ssmb_trust *t = (ssmb_trust *)ssmb__alloc(a, size);
    uint8_t *base = (uint8_t *)t;
    if (!t) return SSMB_ERR_NOMEM;
    memset(t, 0, sizeof *t);
    ssmb__trust_keep_allocator(&t->alloc, a);
    t->block_size = size;
    t->anchors = (br_x509_trust_anchor *)(void *)(base + ssmb__trust_anchor_offset());
    ssmb__ta_walk_init(w, t->anchors, count, (uint8_t *)(t->anchors + count), bytes);
    ssmb__ta_run(w, text, len);
    if (w->count != count || w->used != bytes) { /* the same text decodes the same way */
        ssmb__free(a, t, size);
        return SSMB_ERR_INTERNAL;
    }
    t->count = count;
    t->skipped = w->skipped;
    *out = t;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_trust_create(const ssmb_allocator *a, const void *pem, size_t len, ssmb_trust **out) {
    ssmb__ta_walk w;
    size_t count, bytes, size;
    ssmb_result r = ssmb__trust_args(a, pem, len, out);
    if (r != SSMB_OK) return r;
    ssmb__ta_walk_init(&w, NULL, 0, NULL, 0);
    ssmb__ta_run(&w, (const uint8_t *)pem, len);
    if (w.count == 0) return SSMB_ERR_MALFORMED;
    count = w.count;
    bytes = w.used;
    if (ssmb_size_mul(count, sizeof(br_x509_trust_anchor), &size) != SSMB_OK ||
        ssmb_size_add(size, ssmb__trust_anchor_offset(), &size) != SSMB_OK ||
        ssmb_size_add(size, bytes, &size) != SSMB_OK)
        return SSMB_ERR_OVERFLOW;
    return ssmb__trust_fill(a, &w, (const uint8_t *)pem, len, size, count, bytes, out);
}

SSMB_APIDEF size_t ssmb_trust_count(const ssmb_trust *t) { return t ? t->count : 0; }

SSMB_APIDEF void ssmb_trust_destroy(ssmb_trust *t) {
    ssmb_allocator a;
    if (!t) return;
    a = t->alloc;
    ssmb__free(&a, t, t->block_size);
}

SSMB_APIDEF const char *ssmb_tls_backend(void) { return "bearssl"; }

/* ---- the iPAddress check (BearSSL) ---------------------------------------
   BearSSL's X.509 engines never look at iPAddress names and its decoder
   does not expose subjectAltName, so for a server named by IP the minimal
   engine runs with no name to check (the chain, anchors, validity and key
   usage are all still checked by it) and a wrapper around it keeps the
   end-entity certificate's bytes as they stream past, then reads its
   subjectAltName with the small DER walker below. */

/* Largest end-entity certificate kept for the check; a larger one is
   refused (real server certificates are 1-3 KiB). */
#define SSMB__BR_LEAF_MAX 4096 /* the end-entity certificate of a server named by IP (local endpoints) */

/* A DER element's contents: [p, p + len), always inside the buffer read. */
typedef struct ssmb__der {
    const uint8_t *p;
    size_t len;
} ssmb__der;

/* A definite length at d (short form, or long form of 1..4 bytes). */
static int ssmb__der_length(ssmb__der *d, size_t *len) {
    size_t n, i;
    uint8_t first;
    if (d->len < 1) return 0;
    first = d->p[0];
    d->p++;
    d->len--;
    if (first < 0x80) {
        *len = first;
        return 1;
    }
    n = first & 0x7Fu; /* 0: indefinite, not DER */
    if (n == 0 || n > 4 || n > d->len) return 0;
    for (*len = 0, i = 0; i < n; i++) *len = (*len << 8) | d->p[i];
    d->p += n;
    d->len -= n;
    return 1;
}

/* Takes the next element off the front of d: its tag (one-byte tags only,
   which is all a certificate uses up to the SANs) and its contents. 0 when
   it is malformed or runs past d. */
static int ssmb__der_next(ssmb__der *d, uint8_t *tag, ssmb__der *body) {
    size_t len;
    if (d->len < 1 || (d->p[0] & 0x1Fu) == 0x1Fu) return 0;
    *tag = d->p[0];
    d->p++;
    d->len--;
    if (!ssmb__der_length(d, &len) || len > d->len) return 0;
    body->p = d->p;
    body->len = len;
    d->p += len;
    d->len -= len;
    return 1;
}

/* The contents of the next element when it has tag `want`. */
static int ssmb__der_expect(ssmb__der *d, uint8_t want, ssmb__der *body) {
    uint8_t tag;
    return ssmb__der_next(d, &tag, body) && tag == want;
}

/* GeneralNames (RFC 5280 §4.2.1.6): 1 when one is the iPAddress [7]
   (context-specific, primitive: 0x87) with exactly these bytes. */
static int ssmb__der_names_have_ip(ssmb__der names, const uint8_t *ip, size_t ip_len) {
    ssmb__der name;
    uint8_t tag;
    while (names.len > 0) {
        if (!ssmb__der_next(&names, &tag, &name)) return 0;
        if (tag == 0x87 && name.len == ip_len && memcmp(name.p, ip, ip_len) == 0) return 1;
    }
    return 0;
}

/* One Extension { extnID, critical DEFAULT FALSE, extnValue }: 1 when it
   is subjectAltName (2.5.29.17) and names the address. */
static int ssmb__der_ext_has_ip(ssmb__der ext, const uint8_t *ip, size_t ip_len) {
    static const uint8_t san_oid[] = {0x55, 0x1D, 0x11};
    ssmb__der oid, value, names;
    uint8_t tag;
    if (!ssmb__der_expect(&ext, 0x06, &oid)) return 0;
    if (oid.len != sizeof san_oid || memcmp(oid.p, san_oid, sizeof san_oid) != 0) return 0;
    if (!ssmb__der_next(&ext, &tag, &value)) return 0;
    if (tag == 0x01 && !ssmb__der_next(&ext, &tag, &value)) return 0; /* past `critical` */
    if (tag != 0x04 || !ssmb__der_expect(&value, 0x30, &names)) return 0;
    return ssmb__der_names_have_ip(names, ip, ip_len);
}

/* 1 when the DER certificate cert[0, len) carries the iPAddress
   subjectAltName ip[0, ip_len); 0 when it does not, or is malformed
   (every read stays inside cert). Certificate → tbsCertificate → the
   extensions, explicitly tagged [3] (0xA3), after the other fields. */
static int ssmb__der_cert_has_ip(const uint8_t *cert, size_t len, const uint8_t *ip, size_t ip_len) {
    ssmb__der d, c, tbs, field, exts, ext;
    uint8_t tag;
    d.p = cert;
    d.len = len;
    if (!ssmb__der_expect(&d, 0x30, &c) || !ssmb__der_expect(&c, 0x30, &tbs)) return 0;
    do {
        if (!ssmb__der_next(&tbs, &tag, &field)) return 0; /* no extensions at all */
    } while (tag != 0xA3);
    if (!ssmb__der_expect(&field, 0x30, &exts)) return 0;
    while (exts.len > 0) {
        if (!ssmb__der_expect(&exts, 0x30, &ext)) return 0;
        if (ssmb__der_ext_has_ip(ext, ip, ip_len)) return 1;
    }
    return 0;
}

/* Wraps the minimal engine for a server named by IP. BearSSL calls
   through `vtable`, the first field, so the context is the struct. */
typedef struct ssmb__br_ipx {
    const br_x509_class *vtable;
    br_x509_minimal_context *inner;  /* does all the chain validation */
    uint8_t ip[16];
    size_t ip_len;                   /* 4 or 16 */
    uint32_t certs;                  /* certificates started in this chain */
    int too_big;                     /* the end-entity certificate exceeded the buffer */
    int refused;                     /* the chain passed but the address is not named */
    size_t leaf_len;
    uint8_t *leaf;                   /* SSMB__BR_LEAF_MAX bytes after the ssmb__tls (see ssmb__tls_size) */
} ssmb__br_ipx;

static ssmb__br_ipx *ssmb__br_ipx_of(const br_x509_class **ctx) { return (ssmb__br_ipx *)(void *)ctx; }

static const br_x509_class **ssmb__br_ipx_inner(const br_x509_class **ctx) {
    return &ssmb__br_ipx_of(ctx)->inner->vtable;
}

/* The engine hands over the SNI name, empty here; the minimal engine gets
   NULL: no DNS name is to be matched. */
static void ssmb__br_ipx_start_chain(const br_x509_class **ctx, const char *server_name) {
    ssmb__br_ipx *x = ssmb__br_ipx_of(ctx);
    (void)server_name;
    x->certs = 0;
    x->too_big = 0;
    x->refused = 0;
    x->leaf_len = 0;
    (*ssmb__br_ipx_inner(ctx))->start_chain(ssmb__br_ipx_inner(ctx), NULL);
}

static void ssmb__br_ipx_start_cert(const br_x509_class **ctx, uint32_t length) {
    ssmb__br_ipx *x = ssmb__br_ipx_of(ctx);
    x->certs++;
    if (x->certs == 1 && length > SSMB__BR_LEAF_MAX) x->too_big = 1;
    (*ssmb__br_ipx_inner(ctx))->start_cert(ssmb__br_ipx_inner(ctx), length);
}

/* The server's own certificate comes first (RFC 5246 §7.4.2). */
static void ssmb__br_ipx_append(const br_x509_class **ctx, const unsigned char *buf, size_t len) {
    ssmb__br_ipx *x = ssmb__br_ipx_of(ctx);
    if (x->certs == 1 && !x->too_big) {
        if (len > SSMB__BR_LEAF_MAX - x->leaf_len) {
            x->too_big = 1;
        } else {
            memcpy(x->leaf + x->leaf_len, buf, len);
            x->leaf_len += len;
        }
    }
    (*ssmb__br_ipx_inner(ctx))->append(ssmb__br_ipx_inner(ctx), buf, len);
}

static void ssmb__br_ipx_end_cert(const br_x509_class **ctx) {
    (*ssmb__br_ipx_inner(ctx))->end_cert(ssmb__br_ipx_inner(ctx));
}

/* The chain's own verdict first; only a chain that passed is then held to
   the address. The refusal is BearSSL's code for a name mismatch. */
static unsigned ssmb__br_ipx_end_chain(const br_x509_class **ctx) {
    ssmb__br_ipx *x = ssmb__br_ipx_of(ctx);
    unsigned err = (*ssmb__br_ipx_inner(ctx))->end_chain(ssmb__br_ipx_inner(ctx));
    if (err != 0) return err;
    if (x->too_big) {
        x->refused = 1;
        return BR_ERR_X509_LIMIT_EXCEEDED;
    }
    if (!ssmb__der_cert_has_ip(x->leaf, x->leaf_len, x->ip, x->ip_len)) {
        x->refused = 1;
        return BR_ERR_X509_BAD_SERVER_NAME;
    }
    return 0;
}

/* No key from a refused chain, should the engine ask regardless. */
static const br_x509_pkey *ssmb__br_ipx_get_pkey(const br_x509_class *const *ctx, unsigned *usages) {
    const ssmb__br_ipx *x = (const ssmb__br_ipx *)(const void *)ctx;
    const br_x509_class *const *inner = &x->inner->vtable;
    return x->refused ? NULL : (*inner)->get_pkey(inner, usages);
}

static const br_x509_class ssmb__br_ipx_class = {
    sizeof(ssmb__br_ipx),     ssmb__br_ipx_start_chain, ssmb__br_ipx_start_cert, ssmb__br_ipx_append,
    ssmb__br_ipx_end_cert,    ssmb__br_ipx_end_chain,   ssmb__br_ipx_get_pkey,
};

/* ---- the TLS engine (BearSSL) --------------------------------------------
   One block: the client context, the X.509 validator and the record
   buffer (BR_SSL_BUFSIZE_BIDI: a record each way, so sending never waits
   for receiving). The engine keeps pointers into the block: it must not
   move once initialised. The contract maps one to one onto BearSSL's
   sans-I/O engine (bearssl_ssl.h): net_in = recvrec, net_out = sendrec,
   app_in = recvapp, app_out = sendapp. */
struct ssmb__tls {
    br_ssl_client_context sc;
    br_x509_minimal_context xc;
    ssmb__br_ipx ipx;               /* in use only for a server named by IP */
    int handshake_seen;             /* application data could flow once (sticky) */
    unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
};

/* A server named by IP gets room for its certificate after the struct. */
static size_t ssmb__tls_size(const char *server_name) {
    uint8_t ip[16];
    return sizeof(ssmb__tls) + (server_name && ssmb__tls_ip_literal(server_name, ip) ? SSMB__BR_LEAF_MAX : 0);
}

/* BearSSL counts days from January 1st of year 0 (proleptic Gregorian,
   bearssl_x509.h), so 1970-01-01 is day 719528. */
static void ssmb__br_set_time(br_x509_minimal_context *xc, int64_t now_utc) {
    int64_t days = now_utc / 86400, secs = now_utc % 86400;
    if (secs < 0) {
        secs += 86400;
        days -= 1;
    }
    days += 719528;
    if (days < 0) days = 0;
    if (days > (int64_t)UINT32_MAX) days = (int64_t)UINT32_MAX;
    br_x509_minimal_set_time(xc, (uint32_t)days, (uint32_t)secs);
}

/* 32 bytes from the config's source. BearSSL adds them to what it gets
   from the OS when it was built with an OS seeder (bearssl_ssl.h,
   br_ssl_engine_inject_entropy); they suffice without one. */
static ssmb_result ssmb__br_seed(ssmb__tls *t, const ssmb__tls_config *cfg) {
    uint8_t seed[32];
    ssmb_result r = ssmb__tls_random_fn(cfg)(seed, sizeof seed, cfg->random_user_data);
    if (r == SSMB_OK) br_ssl_engine_inject_entropy(&t->sc.eng, seed, sizeof seed);
    ssmb__wipe(seed, sizeof seed);
    return r == SSMB_OK ? SSMB_OK : SSMB_ERR_NO_RANDOM;
}

/* The name for SNI, which also turns on the minimal engine's check of
   the certificate against it (dNSName SANs, else the CN). A server named
   by IP gets no SNI, and the wrapper checks its iPAddress SANs instead. */
static const char *ssmb__br_sni(ssmb__tls *t, const char *server_name) {
    ssmb__br_ipx *x = &t->ipx;
    x->ip_len = ssmb__tls_ip_literal(server_name, x->ip);
    if (x->ip_len == 0) return server_name;
    x->vtable = &ssmb__br_ipx_class;
    x->inner = &t->xc;
    x->leaf = (uint8_t *)(t + 1);
    br_ssl_engine_set_x509(&t->sc.eng, &x->vtable);
    return NULL;
}

/* The full profile's suites (ssl_client_full.c), in its order but for
   one change: with AES and GHASH in hardware (AES-NI and PCLMULQDQ, or
   POWER8) the AES-GCM suites come before ChaCha20-Poly1305, which the
   profile puts first for machines without them. BearSSL's engine picks
   the hardware implementations at run time (br_ssl_engine_set_default_aes_gcm);
   the server follows the client's order unless it enforces its own. On
   x86-64 with AES-NI, AES-128-GCM is several times faster than ChaCha20. */
static void ssmb__br_suites(br_ssl_engine_context *eng) {
    static const uint16_t suites[] = {
        BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,   BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,   BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,   BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
        BR_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,   BR_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
        BR_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,      BR_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
        BR_TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,      BR_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
        BR_TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256,    BR_TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256,
        BR_TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384,    BR_TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384,
        BR_TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256,    BR_TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256,
        BR_TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384,    BR_TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384,
        BR_TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA,       BR_TLS_ECDH_RSA_WITH_AES_128_CBC_SHA,
        BR_TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA,       BR_TLS_ECDH_RSA_WITH_AES_256_CBC_SHA,
        BR_TLS_RSA_WITH_AES_128_GCM_SHA256,           BR_TLS_RSA_WITH_AES_256_GCM_SHA384,
        BR_TLS_RSA_WITH_AES_128_CBC_SHA256,           BR_TLS_RSA_WITH_AES_256_CBC_SHA256,
        BR_TLS_RSA_WITH_AES_128_CBC_SHA,              BR_TLS_RSA_WITH_AES_256_CBC_SHA,
        BR_TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA,     BR_TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
        BR_TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA,      BR_TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA,
        BR_TLS_RSA_WITH_3DES_EDE_CBC_SHA,
    };
    int hw = (br_aes_x86ni_ctr_get_vtable() != NULL && br_ghash_pclmul_get() != 0) ||
             (br_aes_pwr8_ctr_get_vtable() != NULL && br_ghash_pwr8_get() != 0);
    if (hw) br_ssl_engine_set_suites(eng, suites, sizeof suites / sizeof suites[0]);
}

static ssmb_result ssmb__tls_init(ssmb__tls *t, const ssmb__tls_config *cfg) {
    ssmb_result r = ssmb__tls_check_config(cfg);
    t->handshake_seen = 0;
    if (r != SSMB_OK) return r;
    br_ssl_client_init_full(&t->sc, &t->xc, cfg->trust->anchors, cfg->trust->count);
    ssmb__br_suites(&t->sc.eng);
    /* TLS 1.2 only: 1.0 and 1.1 are deprecated (RFC 8996) and BearSSL 0.6
       has no 1.3. */
    br_ssl_engine_set_versions(&t->sc.eng, BR_TLS12, BR_TLS12);
    br_ssl_engine_set_buffer(&t->sc.eng, t->iobuf, sizeof t->iobuf, 1);
    ssmb__br_set_time(&t->xc, cfg->now_utc);
    r = ssmb__br_seed(t, cfg);
    if (r != SSMB_OK) return r;
    if (!br_ssl_client_reset(&t->sc, ssmb__br_sni(t, cfg->server_name), 0)) return SSMB_ERR_TLS;
    return SSMB_OK;
}

static void ssmb__tls_free(ssmb__tls *t) { ssmb__wipe(t, sizeof *t); }

/* Once SENDAPP or RECVAPP shows, the handshake is over; the flags come and
   go after that (a record being sent hides SENDAPP), hence the note. */
static void ssmb__br_note(ssmb__tls *t) {
    if (br_ssl_engine_current_state(&t->sc.eng) & (BR_SSL_SENDAPP | BR_SSL_RECVAPP)) t->handshake_seen = 1;
}

static uint8_t *ssmb__tls_net_in_buf(ssmb__tls *t, size_t *cap) { return br_ssl_engine_recvrec_buf(&t->sc.eng, cap); }

static void ssmb__tls_net_in_ack(ssmb__tls *t, size_t n) {
    if (n == 0) return;
    br_ssl_engine_recvrec_ack(&t->sc.eng, n);
    ssmb__br_note(t);
}

static const uint8_t *ssmb__tls_net_out_buf(ssmb__tls *t, size_t *len) {
    return br_ssl_engine_sendrec_buf(&t->sc.eng, len);
}

static void ssmb__tls_net_out_ack(ssmb__tls *t, size_t n) {
    if (n == 0) return;
    br_ssl_engine_sendrec_ack(&t->sc.eng, n);
    ssmb__br_note(t);
}

static uint8_t *ssmb__tls_app_in_buf(ssmb__tls *t, size_t *len) { return br_ssl_engine_recvapp_buf(&t->sc.eng, len); }

static void ssmb__tls_app_in_ack(ssmb__tls *t, size_t n) {
    if (n == 0) return;
    br_ssl_engine_recvapp_ack(&t->sc.eng, n);
    ssmb__br_note(t);
}

static uint8_t *ssmb__tls_app_out_buf(ssmb__tls *t, size_t *cap) { return br_ssl_engine_sendapp_buf(&t->sc.eng, cap); }

/* A full buffer becomes a record at once; less waits for the flush. */
static void ssmb__tls_app_out_ack(ssmb__tls *t, size_t n) {
    if (n == 0) return;
    br_ssl_engine_sendapp_ack(&t->sc.eng, n);
    ssmb__br_note(t);
}

static void ssmb__tls_flush(ssmb__tls *t) {
    br_ssl_engine_flush(&t->sc.eng, 0);
    ssmb__br_note(t);
}

/* close_notify goes out; the engine then waits for the peer's and
   discards application data meanwhile (RFC 5246 §7.2.1). */
static void ssmb__tls_close(ssmb__tls *t) { br_ssl_engine_close(&t->sc.eng); }

static int ssmb__tls_handshake_done(const ssmb__tls *t) {
    return t->handshake_seen || (br_ssl_engine_current_state(&t->sc.eng) & (BR_SSL_SENDAPP | BR_SSL_RECVAPP)) != 0;
}

/* The error stays until reset (bearssl_ssl.h); X.509 codes are the 32..63
   range (bearssl_x509.h). */
static ssmb_result ssmb__tls_error(const ssmb__tls *t, int32_t *detail) {
    int err = br_ssl_engine_last_error(&t->sc.eng);
    if (detail) *detail = err;
    if (err == BR_ERR_OK) return br_ssl_engine_current_state(&t->sc.eng) == BR_SSL_CLOSED ? SSMB_CLOSED : SSMB_OK;
    return (err >= BR_ERR_X509_OK && err < 64) ? SSMB_ERR_TLS_CERT : SSMB_ERR_TLS;
}
#endif

// >>tls-mbedtls
#if defined(SSMB_USE_MBEDTLS)
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

/* ---- trust anchors (mbedTLS) ---------------------------------------------
   An mbedtls_x509_crt chain. Only this struct comes from the ssmb
   allocator: mbedTLS allocates the certificates itself with its own
   mbedtls_calloc, as the host's mbedTLS build is configured. */
struct ssmb_trust {
    ssmb_allocator alloc;           /* the allocator that made this struct */
    size_t count;                   /* certificates parsed */
    /* mbedtls_ssl_conf_ca_chain takes a non-const chain though it only
       reads it; the pointer (to `first`) spares a const cast. */
    mbedtls_x509_crt *chain;
    mbedtls_x509_crt first;
};

/* mbedtls_x509_crt_parse takes text as PEM only when it contains this
   header, and as one DER certificate otherwise; ssmb_trust_create reads
   PEM only, like the BearSSL backend. */
static int ssmb__mbed_has_pem_cert(const void *text, size_t len) {
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    const uint8_t *p = (const uint8_t *)text;
    size_t n = sizeof begin - 1, i;
    for (i = 0; i + n <= len; i++) {
        if (p[i] == '-' && memcmp(p + i, begin, n) == 0) return 1;
    }
    return 0;
}

static size_t ssmb__mbed_chain_count(const mbedtls_x509_crt *c) {
    size_t n = 0;
    for (; c; c = c->next) n += c->raw.len > 0;
    return n;
}

/* mbedTLS reads PEM only from NUL-terminated text (x509_crt.h,
   mbedtls_x509_crt_parse), so the text is copied once. Certificates that
   fail to parse are skipped; the call fails only when none parses. */
static ssmb_result ssmb__mbed_parse_pem(ssmb_trust *t, const ssmb_allocator *a, const void *pem, size_t len) {
    size_t n;
    int rc;
    uint8_t *text;
    if (ssmb_size_add(len, 1, &n) != SSMB_OK) return SSMB_ERR_OVERFLOW;
    text = (uint8_t *)ssmb__alloc(a, n);
    if (!text) return SSMB_ERR_NOMEM;
    memcpy(text, pem, len);
    text[len] = 0;
    rc = mbedtls_x509_crt_parse(t->chain, text, n);
    ssmb__free(a, text, n);
    if (rc == MBEDTLS_ERR_X509_ALLOC_FAILED) return SSMB_ERR_NOMEM;
    t->count = ssmb__mbed_chain_count(t->chain);
    return t->count > 0 ? SSMB_OK : SSMB_ERR_MALFORMED;
}

SSMB_APIDEF ssmb_result ssmb_trust_create(const ssmb_allocator *a, const void *pem, size_t len, ssmb_trust **out) {
    ssmb_trust *t;
    ssmb_result r = ssmb__trust_args(a, pem, len, out);
    if (r != SSMB_OK) return r;
    if (!ssmb__mbed_has_pem_cert(pem, len)) return SSMB_ERR_MALFORMED;
    t = (ssmb_trust *)ssmb__alloc(a, sizeof *t);
    if (!t) return SSMB_ERR_NOMEM;
    memset(t, 0, sizeof *t);
    ssmb__trust_keep_allocator(&t->alloc, a);
    t->chain = &t->first;
    mbedtls_x509_crt_init(t->chain);
    r = ssmb__mbed_parse_pem(t, a, pem, len);
    if (r != SSMB_OK) {
        ssmb_trust_destroy(t);
        return r;
    }
    *out = t;
    return SSMB_OK;
}

SSMB_APIDEF size_t ssmb_trust_count(const ssmb_trust *t) { return t ? t->count : 0; }

SSMB_APIDEF void ssmb_trust_destroy(ssmb_trust *t) {
    ssmb_allocator a;
    if (!t) return;
    mbedtls_x509_crt_free(t->chain);
    a = t->alloc;
    ssmb__free(&a, t, sizeof *t);
}

SSMB_APIDEF const char *ssmb_tls_backend(void) { return "mbedtls"; }

/* ---- the TLS engine (mbedTLS) --------------------------------------------
   mbedTLS wants a transport to call; it gets two rings of ciphertext
   instead (mbedtls_ssl_set_bio), and an empty or full ring answers
   WANT_READ / WANT_WRITE. The contract calls then run the handshake,
   mbedtls_ssl_read and mbedtls_ssl_write over those rings: app_in is a
   record decrypted ahead into a buffer, app_out collects plaintext that
   becomes records when it is full or flushed (BearSSL's sendapp rules).
   mbedTLS keeps its own record buffers (allocated by mbedTLS in
   mbedtls_ssl_setup), so the rings need not hold a whole record; 17 KiB
   keeps the transport's reads and writes large. Written for mbedTLS 2.28,
   whose context fields (out_left) are public. */
#define SSMB__MBED_NET 17408
/* A record's largest plaintext: 2^14 bytes (RFC 5246 §6.2.1). */
#define SSMB__MBED_PLAIN 16384

/* Invariants: len <= SSMB__MBED_NET, head < SSMB__MBED_NET, head == 0 when
   len == 0; the bytes are buf[head..] wrapping round to buf[0..]. */
typedef struct ssmb__mbed_ring {
    size_t head, len;
    uint8_t buf[SSMB__MBED_NET];
} ssmb__mbed_ring;

struct ssmb__tls {
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    ssmb_random_fn random_fn;
    void *random_user_data;
    int64_t now_utc;
    uint8_t ip[16];             /* a server named by IP: the address it must carry */
    size_t ip_len;              /* 4 or 16; 0 for a DNS name */
    int32_t err;                /* sticky mbedTLS error; 0 while healthy */
    uint8_t handshake_done;
    uint8_t flush_asked;        /* app_out is to become records however little it holds */
    uint8_t close_asked, close_sent, peer_closed;
    size_t in_head, in_len;     /* plaintext not yet taken: app_in[in_head, in_head + in_len) */
    size_t out_len;             /* plaintext not yet in records: app_out[0, out_len) */
    size_t out_retry;           /* length of the write that got WANT_WRITE; 0: none */
    ssmb__mbed_ring net_in, net_out;
    uint8_t app_in[SSMB__MBED_PLAIN];
    uint8_t app_out[SSMB__MBED_PLAIN];
};

static size_t ssmb__tls_size(const char *server_name) {
    (void)server_name;
    return sizeof(ssmb__tls);
}

/* ---- rings ---- */

/* The contiguous bytes at the head. */
static uint8_t *ssmb__ring_data(ssmb__mbed_ring *r, size_t *n) {
    *n = SSMB__MIN(r->len, SSMB__MBED_NET - r->head);
    return r->buf + r->head;
}

/* The contiguous room after the last byte. */
static uint8_t *ssmb__ring_room(ssmb__mbed_ring *r, size_t *n) {
    size_t tail = (r->head + r->len) % SSMB__MBED_NET;
    if (r->len == SSMB__MBED_NET) *n = 0;
    else if (tail >= r->head) *n = SSMB__MBED_NET - tail;
    else *n = r->head - tail;
    return r->buf + tail;
}

static void ssmb__ring_consume(ssmb__mbed_ring *r, size_t n) {
    n = SSMB__MIN(n, r->len);
    r->head = (r->head + n) % SSMB__MBED_NET;
    r->len -= n;
    if (r->len == 0) r->head = 0;
}

/* Appends up to n bytes (clamped to the room, keeping the invariants). */
static void ssmb__ring_produce(ssmb__mbed_ring *r, size_t n) { r->len += SSMB__MIN(n, SSMB__MBED_NET - r->len); }

static size_t ssmb__ring_put(ssmb__mbed_ring *r, const uint8_t *src, size_t n) {
    size_t done = 0, room;
    while (done < n) {
        uint8_t *p = ssmb__ring_room(r, &room);
        if (room == 0) break;
        room = SSMB__MIN(room, n - done);
        memcpy(p, src + done, room);
        ssmb__ring_produce(r, room);
        done += room;
    }
    return done;
}

static size_t ssmb__ring_get(ssmb__mbed_ring *r, uint8_t *dst, size_t n) {
    size_t done = 0, have;
    while (done < n) {
        const uint8_t *p = ssmb__ring_data(r, &have);
        if (have == 0) break;
        have = SSMB__MIN(have, n - done);
        memcpy(dst + done, p, have);
        ssmb__ring_consume(r, have);
        done += have;
    }
    return done;
}

/* ---- what mbedTLS calls ---- */

/* The transport (mbedtls_ssl_set_bio). A ring holds less than INT_MAX
   bytes, so the counts fit the int results. */
static int ssmb__mbed_send(void *ctx, const unsigned char *buf, size_t len) {
    size_t n;
    if (len == 0) return 0;
    n = ssmb__ring_put(&((ssmb__tls *)ctx)->net_out, buf, len);
    return n ? (int)n : MBEDTLS_ERR_SSL_WANT_WRITE;
}

static int ssmb__mbed_recv(void *ctx, unsigned char *buf, size_t len) {
    size_t n;
    if (len == 0) return 0;
    n = ssmb__ring_get(&((ssmb__tls *)ctx)->net_in, buf, len);
    return n ? (int)n : MBEDTLS_ERR_SSL_WANT_READ;
}

static int ssmb__mbed_random(void *ctx, unsigned char *out, size_t len) {
    const ssmb__tls *t = (const ssmb__tls *)ctx;
    return t->random_fn(out, len, t->random_user_data) == SSMB_OK ? 0 : MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
}

/* Seconds since the Unix epoch of a time mbedTLS has parsed and checked
   (x509.c, x509_date_is_valid); dates before 1970 come out negative. */
static int64_t ssmb__mbed_unix_time(const mbedtls_x509_time *tm) {
    int64_t days = ssmb__days_before_year(tm->year) + (tm->day - 1);
    int m;
    for (m = 1; m < tm->mon; m++) days += ssmb__days_in_month(tm->year, m);
    return days * 86400 + (int64_t)tm->hour * 3600 + tm->min * 60 + tm->sec;
}

/* 1 when the certificate has an iPAddress subjectAltName with exactly
   these bytes. mbedTLS 2.28 lists every SAN entry raw, tagged as in the
   DER (iPAddress: context-specific [7], 0x87), though it decodes only some
   kinds (x509_crt.h, subject_alt_names). */
static int ssmb__mbed_names_ip(const mbedtls_x509_crt *crt, const uint8_t *ip, size_t ip_len) {
    const mbedtls_x509_sequence *s;
    const int tag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS;
    for (s = &crt->subject_alt_names; s; s = s->next) {
        if (s->buf.tag == tag && s->buf.p && s->buf.len == ip_len && memcmp(s->buf.p, ip, ip_len) == 0) return 1;
    }
    return 0;
}

/* Validity at the configured time, not at mbedTLS's clock: mbedTLS sets
   EXPIRED and FUTURE from time() for every certificate of the chain, the
   trusted root included, then calls this for each (mbedtls_ssl_conf_verify)
   before it judges the flags. The two flags are replaced by the verdict
   at now_utc; every other flag stays. For a server named by IP, mbedTLS
   has no name to check (none was set), so the server's own certificate
   (depth 0) is held to the address here, with mbedTLS's name-mismatch
   flag when it does not carry it. */
static int ssmb__mbed_verify(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    const ssmb__tls *t = (const ssmb__tls *)ctx;
    *flags &= ~(uint32_t)(MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE);
    if (t->now_utc < ssmb__mbed_unix_time(&crt->valid_from)) *flags |= MBEDTLS_X509_BADCERT_FUTURE;
    if (t->now_utc > ssmb__mbed_unix_time(&crt->valid_to)) *flags |= MBEDTLS_X509_BADCERT_EXPIRED;
    if (depth == 0 && t->ip_len && !ssmb__mbed_names_ip(crt, t->ip, t->ip_len))
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* ---- the steps ---- */

/* Keeps the first real failure; WANT_READ / WANT_WRITE only mean "later". */
static void ssmb__mbed_check(ssmb__tls *t, int rc) {
    if (rc >= 0 || rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return;
    if (t->err == 0) t->err = rc;
}

/* Both close_notify alerts have passed and the last byte has left. */
static int ssmb__mbed_closed(const ssmb__tls *t) {
    return t->close_sent && t->peer_closed && t->ssl.out_left == 0 && t->net_out.len == 0;
}

/* Turns app_out into records: when it is full, or once flushed. A write
   that got WANT_WRITE has built its record, and mbedtls_ssl_write must be
   called again with the same length: with bytes pending it only flushes
   them and reports that length written (ssl_msg.c, ssl_write_real). So a
   fresh write never starts while another record's bytes are pending. */
static void ssmb__mbed_send_app(ssmb__tls *t) {
    while (t->err == 0 && t->out_len > 0 && (t->flush_asked || t->out_len == SSMB__MBED_PLAIN)) {
        size_t n = t->out_retry ? t->out_retry : t->out_len;
        int rc;
        if (!t->out_retry && t->ssl.out_left) return;
        rc = mbedtls_ssl_write(&t->ssl, t->app_out, n);
        if (rc <= 0) {
            if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) t->out_retry = n;
            ssmb__mbed_check(t, rc);
            return;
        }
        t->out_retry = 0;
        memmove(t->app_out, t->app_out + rc, t->out_len - (size_t)rc);
        t->out_len -= (size_t)rc;
    }
    if (t->out_len == 0) t->flush_asked = 0;
}

/* Decrypts the next record once the last one has been taken. While we
   close, data is dropped, as BearSSL does, so the peer's close_notify
   can be reached. */
static void ssmb__mbed_recv_app(ssmb__tls *t) {
    int rc;
    if (t->err || t->peer_closed || t->in_len > 0) return;
    rc = mbedtls_ssl_read(&t->ssl, t->app_in, sizeof t->app_in);
    if (rc > 0 && !t->close_asked) {
        t->in_head = 0;
        t->in_len = (size_t)rc;
    } else if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        t->peer_closed = 1;
        t->close_asked = 1; /* answered with ours (RFC 5246 §7.2.1) */
    } else {
        ssmb__mbed_check(t, rc);
    }
}

/* close_notify once asked for and the plaintext before it is in records.
   mbedtls_ssl_close_notify only flushes when older bytes are pending
   (ssl_msg.c), so it waits until none are. WANT_WRITE means the alert is
   built and pending. */
static void ssmb__mbed_send_close(ssmb__tls *t) {
    int rc;
    if (t->err || !t->close_asked || t->close_sent) return;
    if (t->out_len > 0 || t->out_retry || t->ssl.out_left) return;
    rc = mbedtls_ssl_close_notify(&t->ssl);
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_WANT_WRITE) t->close_sent = 1;
    else ssmb__mbed_check(t, rc);
}

/* Pushes on the rest of a record no write is waiting on (an alert, the
   close_notify): with bytes pending, a zero-length mbedtls_ssl_write only
   flushes them (ssl_msg.c, ssl_write_real). */
static void ssmb__mbed_push_pending(ssmb__tls *t) {
    if (t->err || t->out_retry || t->ssl.out_left == 0) return;
    ssmb__mbed_check(t, mbedtls_ssl_write(&t->ssl, t->app_out, 0));
}

/* Moves everything that can move now; every contract call ends here. */
static void ssmb__mbed_pump(ssmb__tls *t) {
    if (t->err || ssmb__mbed_closed(t)) return;
    if (!t->handshake_done) {
        int rc = mbedtls_ssl_handshake(&t->ssl);
        if (rc != 0) {
            ssmb__mbed_check(t, rc);
            return;
        }
        t->handshake_done = 1;
    }
    ssmb__mbed_send_app(t);
    ssmb__mbed_recv_app(t);
    ssmb__mbed_send_close(t);
    ssmb__mbed_push_pending(t);
}

/* ---- the contract ---- */

static ssmb_result ssmb__mbed_configure(ssmb__tls *t, const ssmb__tls_config *cfg) {
    mbedtls_ssl_config *c = &t->conf;
    t->random_fn = ssmb__tls_random_fn(cfg);
    t->random_user_data = cfg->random_user_data;
    t->now_utc = cfg->now_utc;
    t->ip_len = ssmb__tls_ip_literal(cfg->server_name, t->ip);
    if (mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        return SSMB_ERR_TLS;
    /* TLS 1.2 at least: 1.0 and 1.1 are deprecated (RFC 8996). */
    mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(c, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(c, cfg->trust->chain, NULL);
    mbedtls_ssl_conf_verify(c, ssmb__mbed_verify, t);
    mbedtls_ssl_conf_rng(c, ssmb__mbed_random, t);
    return SSMB_OK;
}

static ssmb_result ssmb__mbed_start(ssmb__tls *t, const char *server_name) {
    int rc = mbedtls_ssl_setup(&t->ssl, &t->conf);
    /* A DNS name goes into SNI and is what the certificate must carry
       (dNSName SANs, else the CN). mbedTLS 2.28 would match an IP literal
       against those too and send it as SNI, so one is never set: the
       verify callback checks the iPAddress SANs instead. */
    if (rc == 0 && t->ip_len == 0) rc = mbedtls_ssl_set_hostname(&t->ssl, server_name);
    if (rc == MBEDTLS_ERR_SSL_ALLOC_FAILED) return SSMB_ERR_NOMEM;
    if (rc != 0) return SSMB_ERR_TLS;
    mbedtls_ssl_set_bio(&t->ssl, t, ssmb__mbed_send, ssmb__mbed_recv, NULL);
    ssmb__mbed_pump(t); /* the ClientHello */
    if (t->err == MBEDTLS_ERR_ENTROPY_SOURCE_FAILED) return SSMB_ERR_NO_RANDOM;
    return t->err ? SSMB_ERR_TLS : SSMB_OK;
}

/* On failure nothing stays held (and ssmb__tls_free is still safe). */
static ssmb_result ssmb__tls_init(ssmb__tls *t, const ssmb__tls_config *cfg) {
    ssmb_result r;
    memset(t, 0, sizeof *t);
    mbedtls_ssl_init(&t->ssl);
    mbedtls_ssl_config_init(&t->conf);
    r = ssmb__tls_check_config(cfg);
    if (r == SSMB_OK) r = ssmb__mbed_configure(t, cfg);
    if (r == SSMB_OK) r = ssmb__mbed_start(t, cfg->server_name);
    if (r != SSMB_OK) ssmb__tls_free(t);
    return r;
}

/* mbedtls_ssl_free wipes the keys and frees mbedTLS's buffers; the wipe
   takes the plaintext and leaves t all zero, so a second free is harmless. */
static void ssmb__tls_free(ssmb__tls *t) {
    mbedtls_ssl_free(&t->ssl);
    mbedtls_ssl_config_free(&t->conf);
    ssmb__wipe(t, sizeof *t);
}

static uint8_t *ssmb__tls_net_in_buf(ssmb__tls *t, size_t *cap) {
    uint8_t *p = ssmb__ring_room(&t->net_in, cap);
    if (t->err || ssmb__mbed_closed(t)) *cap = 0;
    return *cap ? p : NULL;
}

static void ssmb__tls_net_in_ack(ssmb__tls *t, size_t n) {
    ssmb__ring_produce(&t->net_in, n);
    ssmb__mbed_pump(t);
}

/* Still given after a failure: the alert mbedTLS sent may go out. */
static const uint8_t *ssmb__tls_net_out_buf(ssmb__tls *t, size_t *len) {
    const uint8_t *p = ssmb__ring_data(&t->net_out, len);
    return *len ? p : NULL;
}

static void ssmb__tls_net_out_ack(ssmb__tls *t, size_t n) {
    ssmb__ring_consume(&t->net_out, n);
    ssmb__mbed_pump(t);
}

static uint8_t *ssmb__tls_app_in_buf(ssmb__tls *t, size_t *len) {
    if (t->in_len == 0) ssmb__mbed_pump(t);
    *len = t->in_len;
    return t->in_len ? t->app_in + t->in_head : NULL;
}

static void ssmb__tls_app_in_ack(ssmb__tls *t, size_t n) {
    n = SSMB__MIN(n, t->in_len);
    t->in_head += n;
    t->in_len -= n;
    if (t->in_len == 0) {
        t->in_head = 0;
        ssmb__mbed_pump(t);
    }
}

static uint8_t *ssmb__tls_app_out_buf(ssmb__tls *t, size_t *cap) {
    *cap = 0;
    if (!t->handshake_done || t->err || t->close_asked) return NULL;
    *cap = SSMB__MBED_PLAIN - t->out_len;
    return *cap ? t->app_out + t->out_len : NULL;
}

static void ssmb__tls_app_out_ack(ssmb__tls *t, size_t n) {
    t->out_len += SSMB__MIN(n, SSMB__MBED_PLAIN - t->out_len);
    ssmb__mbed_pump(t);
}

static void ssmb__tls_flush(ssmb__tls *t) {
    if (t->out_len > 0) t->flush_asked = 1;
    ssmb__mbed_pump(t);
}

/* Plaintext already given still goes out first; plaintext not yet taken
   is dropped, as BearSSL does once closing. */
static void ssmb__tls_close(ssmb__tls *t) {
    t->close_asked = 1;
    t->flush_asked = t->out_len > 0;
    t->in_len = 0;
    t->in_head = 0;
    ssmb__mbed_pump(t);
}

static int ssmb__tls_handshake_done(const ssmb__tls *t) { return t->handshake_done; }

/* mbedTLS codes are negative: -(high-level part + low-level part), the
   high part in bits 7..14, X.509's being 0x2080..0x3000 (error.h). */
static int ssmb__mbed_cert_error(int32_t code) {
    uint32_t high = (0u - (uint32_t)code) & 0x7F80u;
    return high >= 0x2080u && high <= 0x3000u;
}

static ssmb_result ssmb__tls_error(const ssmb__tls *t, int32_t *detail) {
    if (detail) *detail = t->err;
    if (t->err == 0) return ssmb__mbed_closed(t) ? SSMB_CLOSED : SSMB_OK;
    return ssmb__mbed_cert_error(t->err) ? SSMB_ERR_TLS_CERT : SSMB_ERR_TLS;
}
#endif

// >>tls-none
/* No TLS library: internal TLS cannot be had (conns run with
   SSMB_TLS_EXTERNAL: the host's transport secures the bytes). Every call
   reports SSMB_ERR_UNSUPPORTED; the conn never moves bytes through it. */
#if defined(SSMB_NO_TLS)
struct ssmb__tls {
    int32_t unused;
};
struct ssmb_trust {
    int32_t unused;
};

static size_t ssmb__tls_size(const char *server_name) {
    (void)server_name;
    return sizeof(ssmb__tls);
}
static ssmb_result ssmb__tls_init(ssmb__tls *t, const ssmb__tls_config *cfg) {
    (void)t;
    (void)cfg;
    return SSMB_ERR_UNSUPPORTED;
}
static void ssmb__tls_free(ssmb__tls *t) { (void)t; }
static uint8_t *ssmb__tls_net_in_buf(ssmb__tls *t, size_t *cap) {
    (void)t;
    *cap = 0;
    return NULL;
}
static void ssmb__tls_net_in_ack(ssmb__tls *t, size_t n) { (void)t; (void)n; }
static const uint8_t *ssmb__tls_net_out_buf(ssmb__tls *t, size_t *len) {
    (void)t;
    *len = 0;
    return NULL;
}
static void ssmb__tls_net_out_ack(ssmb__tls *t, size_t n) { (void)t; (void)n; }
static uint8_t *ssmb__tls_app_in_buf(ssmb__tls *t, size_t *len) {
    (void)t;
    *len = 0;
    return NULL;
}
static void ssmb__tls_app_in_ack(ssmb__tls *t, size_t n) { (void)t; (void)n; }
static uint8_t *ssmb__tls_app_out_buf(ssmb__tls *t, size_t *cap) {
    (void)t;
    *cap = 0;
    return NULL;
}
static void ssmb__tls_app_out_ack(ssmb__tls *t, size_t n) { (void)t; (void)n; }
static void ssmb__tls_flush(ssmb__tls *t) { (void)t; }
static void ssmb__tls_close(ssmb__tls *t) { (void)t; }
static int ssmb__tls_handshake_done(const ssmb__tls *t) { (void)t; return 0; }
static ssmb_result ssmb__tls_error(const ssmb__tls *t, int32_t *detail) {
    (void)t;
    if (detail) *detail = 0;
    return SSMB_ERR_UNSUPPORTED;
}

SSMB_APIDEF ssmb_result ssmb_trust_create(const ssmb_allocator *a, const void *pem, size_t len, ssmb_trust **out) {
    (void)a;
    (void)pem;
    (void)len;
    if (out) *out = NULL;
    return SSMB_ERR_UNSUPPORTED;
}
SSMB_APIDEF ssmb_result ssmb_trust_load(const ssmb_allocator *a, const char *path, ssmb_trust **out) {
    (void)a;
    (void)path;
    if (out) *out = NULL;
    return SSMB_ERR_UNSUPPORTED;
}
SSMB_APIDEF size_t ssmb_trust_count(const ssmb_trust *t) {
    (void)t;
    return 0;
}
SSMB_APIDEF void ssmb_trust_destroy(ssmb_trust *t) { (void)t; }
SSMB_APIDEF const char *ssmb_tls_backend(void) { return "none"; }
#endif

// >>kms
/* KMS session encryption (PROTOCOL.md §6): AES-256-GCM from the TLS
   backend, the key split, the payload-type rules, the challenge and the
   agent's nonce counter. Each call sets up the cipher on its own stack
   and wipes it before returning, so ssmb_kms_keys stays plain data. */

/* GCM's bound on one message: 2^32 - 2 blocks of 16 bytes (SP 800-38D). */
#define SSMB__GCM_MAX_LEN ((uint64_t)0xFFFFFFFE * 16u)

/* Which code the backend runs (BearSSL: its AES-NI vtable and PCLMUL
   GHASH, or NULL for the portable ones); kept in ssmb_kms_keys. */
typedef struct ssmb__gcm_choice {
    const void *aes;
    void (*ghash)(void);
} ssmb__gcm_choice;

#if defined(SSMB_USE_BEARSSL)
/* <bearssl.h> is included by >>tls-bearssl. AES-NI with PCLMUL GHASH when
   the CPU has them, else the constant-time 64-bit code. */
#define SSMB__KMS_HAVE_GCM 1

typedef struct ssmb__gcm {
    br_aes_gen_ctr_keys aes;
    br_gcm_context gcm;
} ssmb__gcm;

/* Both getters run CPUID; the answers are kept in ssmb_kms_keys. NULL
   means the portable code. (void (*)(void) holds any function pointer.) */
static void ssmb__gcm_pick(ssmb__gcm_choice *c) {
    c->aes = (const void *)br_aes_x86ni_ctr_get_vtable();
    c->ghash = (void (*)(void))br_ghash_pclmul_get();
}

static void ssmb__gcm_setup(ssmb__gcm *g, const ssmb__gcm_choice *c, const uint8_t key[32],
                            const uint8_t nonce[12]) {
    const br_block_ctr_class *ni = (const br_block_ctr_class *)c->aes;
    br_ghash gh = c->ghash ? (br_ghash)c->ghash : br_ghash_ctmul64;
    if (ni) ni->init(&g->aes.vtable, key, 32);
    else br_aes_ct64_ctr_init(&g->aes.c_ct64, key, 32);
    br_gcm_init(&g->gcm, &g->aes.vtable, gh);
    br_gcm_reset(&g->gcm, nonce, 12);
    br_gcm_flip(&g->gcm);
}

/* Encrypts buf in place and writes the tag. */
static ssmb_result ssmb__gcm_seal(const ssmb__gcm_choice *c, const uint8_t key[32], const uint8_t nonce[12],
                                  uint8_t *buf, size_t len, uint8_t tag[16]) {
    ssmb__gcm g;
    ssmb__gcm_setup(&g, c, key, nonce);
    br_gcm_run(&g.gcm, 1, buf, len);
    br_gcm_get_tag(&g.gcm, tag);
    ssmb__wipe(&g, sizeof g);
    return SSMB_OK;
}

/* Decrypts buf in place; SSMB_ERR_AUTH when the tag differs
   (br_gcm_check_tag compares in constant time). */
static ssmb_result ssmb__gcm_open(const ssmb__gcm_choice *c, const uint8_t key[32], const uint8_t nonce[12],
                                  uint8_t *buf, size_t len, const uint8_t tag[16]) {
    ssmb__gcm g;
    uint32_t ok;
    ssmb__gcm_setup(&g, c, key, nonce);
    br_gcm_run(&g.gcm, 0, buf, len);
    ok = br_gcm_check_tag(&g.gcm, tag);
    ssmb__wipe(&g, sizeof g);
    return ok ? SSMB_OK : SSMB_ERR_AUTH;
}

#elif defined(SSMB_USE_MBEDTLS)
#include <mbedtls/gcm.h>
#define SSMB__KMS_HAVE_GCM 1

/* mbedTLS picks AES-NI and PCLMUL by itself. */
static void ssmb__gcm_pick(ssmb__gcm_choice *c) {
    c->aes = NULL;
    c->ghash = NULL;
}

static ssmb_result ssmb__gcm_mbed_error(int rc) {
    if (rc == MBEDTLS_ERR_GCM_AUTH_FAILED) return SSMB_ERR_AUTH;
    if (rc == MBEDTLS_ERR_CIPHER_ALLOC_FAILED) return SSMB_ERR_NOMEM;
    return SSMB_ERR_INTERNAL;
}

static ssmb_result ssmb__gcm_seal(const ssmb__gcm_choice *c, const uint8_t key[32], const uint8_t nonce[12],
                                  uint8_t *buf, size_t len, uint8_t tag[16]) {
    mbedtls_gcm_context g;
    int rc;
    (void)c;
    mbedtls_gcm_init(&g);
    rc = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 256);
    if (rc == 0) rc = mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, len, nonce, 12, NULL, 0, buf, buf, 16, tag);
    mbedtls_gcm_free(&g);
    return rc == 0 ? SSMB_OK : ssmb__gcm_mbed_error(rc);
}

/* mbedtls_gcm_auth_decrypt compares the tag in constant time and zeroes
   the output when it differs. */
static ssmb_result ssmb__gcm_open(const ssmb__gcm_choice *c, const uint8_t key[32], const uint8_t nonce[12],
                                  uint8_t *buf, size_t len, const uint8_t tag[16]) {
    mbedtls_gcm_context g;
    int rc;
    (void)c;
    mbedtls_gcm_init(&g);
    rc = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 256);
    if (rc == 0) rc = mbedtls_gcm_auth_decrypt(&g, len, nonce, 12, NULL, 0, tag, 16, buf, buf);
    mbedtls_gcm_free(&g);
    return rc == 0 ? SSMB_OK : ssmb__gcm_mbed_error(rc);
}

#elif defined(SSMB_NO_TLS)
#define SSMB__KMS_HAVE_GCM 0

static void ssmb__gcm_pick(ssmb__gcm_choice *c) {
    c->aes = NULL;
    c->ghash = NULL;
}

static ssmb_result ssmb__gcm_seal(const ssmb__gcm_choice *c, const uint8_t key[32], const uint8_t nonce[12],
                                  uint8_t *buf, size_t len, uint8_t tag[16]) {
    (void)c;
    (void)key;
    (void)nonce;
    (void)buf;
    (void)len;
    (void)tag;
    return SSMB_ERR_UNSUPPORTED;
}
static ssmb_result ssmb__gcm_open(const ssmb__gcm_choice *c, const uint8_t key[32], const uint8_t nonce[12],
                                  uint8_t *buf, size_t len, const uint8_t tag[16]) {
    (void)c;
    (void)key;
    (void)nonce;
    (void)buf;
    (void)len;
    (void)tag;
    return SSMB_ERR_UNSUPPORTED;
}
#else
#error "invalid TLS backend"
#endif

SSMB_APIDEF int ssmb_kms_supported(void) { return SSMB__KMS_HAVE_GCM; }

/* ---- the cipher in the §6.3 layout ---- */

static ssmb_result ssmb__aes256_gcm_seal(const ssmb__gcm_choice *c, const uint8_t *key, size_t key_len,
                                        const uint8_t nonce[12], const void *plain, size_t len, uint8_t *out,
                                        size_t cap, size_t *out_len) {
    uint8_t n12[12];
    size_t need;
    ssmb_result r;
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    if (!key || key_len != 32 || !nonce || (!plain && len)) return SSMB_ERR_INVALID_ARG;
    if ((uint64_t)len > SSMB__GCM_MAX_LEN) return SSMB_ERR_LIMIT;
    if (ssmb_size_add(len, 28, &need) != SSMB_OK) return SSMB_ERR_OVERFLOW;
    if (out_len) *out_len = need;
    if (!out || cap < need) return SSMB_ERR_BUFFER_TOO_SMALL;
    memcpy(n12, nonce, 12); /* the nonce or the plaintext may sit where the output goes */
    if (len) memmove(out + 12, plain, len);
    memcpy(out, n12, 12);
    r = ssmb__gcm_seal(c, key, n12, out + 12, len, out + 12 + len);
    if (r != SSMB_OK) ssmb__wipe(out, need);
    return r;
}

static ssmb_result ssmb__aes256_gcm_open(const ssmb__gcm_choice *c, const uint8_t *key, size_t key_len,
                                        const void *in, size_t len, uint8_t *out, size_t cap, size_t *out_len) {
    const uint8_t *p = (const uint8_t *)in;
    uint8_t n12[12], tag[16];
    size_t n;
    ssmb_result r;
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    if (!key || key_len != 32 || (!in && len)) return SSMB_ERR_INVALID_ARG;
    if (len < 28) return SSMB_ERR_TRUNCATED;
    n = len - 28;
    if ((uint64_t)n > SSMB__GCM_MAX_LEN) return SSMB_ERR_LIMIT;
    if (out_len) *out_len = n;
    if ((!out && n) || cap < n) return SSMB_ERR_BUFFER_TOO_SMALL;
    /* Nonce and tag first: the plaintext may overwrite them (in place). */
    memcpy(n12, p, 12);
    memcpy(tag, p + 12 + n, 16);
    if (n) memmove(out, p + 12, n);
    r = ssmb__gcm_open(c, key, n12, out, n, tag);
    if (r != SSMB_OK) {
        if (n) ssmb__wipe(out, n);
        if (out_len) *out_len = 0;
    }
    return r;
}

SSMB_APIDEF ssmb_result ssmb_aes256_gcm_seal(const uint8_t *key, size_t key_len, const uint8_t nonce[12],
                                             const void *plain, size_t len, uint8_t *out, size_t cap,
                                             size_t *out_len) {
    ssmb__gcm_choice c;
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    ssmb__gcm_pick(&c);
    return ssmb__aes256_gcm_seal(&c, key, key_len, nonce, plain, len, out, cap, out_len);
}

SSMB_APIDEF ssmb_result ssmb_aes256_gcm_open(const uint8_t *key, size_t key_len, const void *in, size_t len,
                                             uint8_t *out, size_t cap, size_t *out_len) {
    ssmb__gcm_choice c;
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    ssmb__gcm_pick(&c);
    return ssmb__aes256_gcm_open(&c, key, key_len, in, len, out, cap, out_len);
}

/* ---- session keys (§6.2) ---- */

SSMB_APIDEF ssmb_result ssmb_kms_keys_init(ssmb_kms_keys *k, uint32_t role, const void *data_key, size_t len) {
    const uint8_t *d = (const uint8_t *)data_key;
    if (!k || !d || len != SSMB_KMS_DATA_KEY_SIZE) return SSMB_ERR_INVALID_ARG;
    if (role != SSMB_CHANNEL_CLIENT && role != SSMB_CHANNEL_AGENT) return SSMB_ERR_INVALID_ARG;
    /* Bytes 0-31 carry agent -> client, bytes 32-63 client -> agent. */
    memcpy(k->send_key, role == SSMB_CHANNEL_CLIENT ? d + 32 : d, 32);
    memcpy(k->recv_key, role == SSMB_CHANNEL_CLIENT ? d : d + 32, 32);
    k->role = role;
    k->ready = 1;
    {
        ssmb__gcm_choice c;
        ssmb__gcm_pick(&c);
        k->aes_impl = c.aes;
        k->ghash_impl = c.ghash;
    }
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_kms_keys_clear(ssmb_kms_keys *k) {
    if (k) ssmb__wipe(k, sizeof *k);
}

/* §6.4. Each side encrypts what the other decrypts. */
SSMB_APIDEF int ssmb_kms_encrypts(uint32_t role, uint32_t payload_type) {
    if (payload_type == SSMB_PAYLOAD_OUTPUT) return role == SSMB_CHANNEL_CLIENT || role == SSMB_CHANNEL_AGENT;
    if (payload_type == SSMB_PAYLOAD_STDERR || payload_type == SSMB_PAYLOAD_EXIT_CODE)
        return role == SSMB_CHANNEL_AGENT;
    return 0;
}

SSMB_APIDEF int ssmb_kms_decrypts(uint32_t role, uint32_t payload_type) {
    if (role == SSMB_CHANNEL_CLIENT) return ssmb_kms_encrypts(SSMB_CHANNEL_AGENT, payload_type);
    if (role == SSMB_CHANNEL_AGENT) return ssmb_kms_encrypts(SSMB_CHANNEL_CLIENT, payload_type);
    return 0;
}

SSMB_APIDEF ssmb_result ssmb_kms_encrypt_payload(const ssmb_kms_keys *k, const void *plain, size_t len,
                                                 const uint8_t nonce[12], uint8_t *out, size_t cap,
                                                 size_t *out_len) {
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    if (!k) return SSMB_ERR_INVALID_ARG;
    if (k->ready != 1) return SSMB_ERR_INVALID_STATE;
    {
        ssmb__gcm_choice c;
        c.aes = k->aes_impl;
        c.ghash = k->ghash_impl;
        return ssmb__aes256_gcm_seal(&c, k->send_key, 32, nonce, plain, len, out, cap, out_len);
    }
}

SSMB_APIDEF ssmb_result ssmb_kms_decrypt_payload(const ssmb_kms_keys *k, const void *in, size_t len, uint8_t *out,
                                                 size_t cap, size_t *out_len) {
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    if (!k) return SSMB_ERR_INVALID_ARG;
    if (k->ready != 1) return SSMB_ERR_INVALID_STATE;
    {
        ssmb__gcm_choice c;
        c.aes = k->aes_impl;
        c.ghash = k->ghash_impl;
        return ssmb__aes256_gcm_open(&c, k->recv_key, 32, in, len, out, cap, out_len);
    }
}

/* ---- the encryption challenge (§6.5) ---- */

/* Reads {"Challenge":"<base64>"} and decrypts it with the receive key into
   plain (SSMB_KMS_CHALLENGE_MAX bytes). */
static ssmb_result ssmb__kms_challenge_open(const ssmb_kms_keys *k, const void *json, size_t len, uint8_t *plain,
                                            size_t *plain_len) {
    uint8_t sealed[SSMB_KMS_CHALLENGE_MAX + SSMB_KMS_OVERHEAD];
    size_t n = 0;
    ssmb_result r = ssmb_challenge_parse(json, len, sealed, sizeof sealed, &n);
    if (r == SSMB_ERR_BUFFER_TOO_SMALL) return SSMB_ERR_LIMIT;
    if (r == SSMB_OK) r = ssmb_kms_decrypt_payload(k, sealed, n, plain, SSMB_KMS_CHALLENGE_MAX, plain_len);
    ssmb__wipe(sealed, sizeof sealed);
    return r;
}

/* Encrypts n challenge bytes with the send key into {"Challenge":"..."}. */
static ssmb_result ssmb__kms_challenge_seal(const ssmb_kms_keys *k, const uint8_t *plain, size_t n,
                                            const uint8_t nonce[12], char *out, size_t cap, size_t *out_len) {
    uint8_t sealed[SSMB_KMS_CHALLENGE_MAX + SSMB_KMS_OVERHEAD];
    size_t sn = 0;
    ssmb_result r = ssmb_kms_encrypt_payload(k, plain, n, nonce, sealed, sizeof sealed, &sn);
    if (r == SSMB_OK) r = ssmb_challenge_build(sealed, sn, out, cap, out_len);
    ssmb__wipe(sealed, sizeof sealed);
    return r;
}

SSMB_APIDEF ssmb_result ssmb_kms_challenge_answer(const ssmb_kms_keys *k, const void *request_json, size_t len,
                                                  const uint8_t nonce[12], char *out, size_t cap,
                                                  size_t *out_len) {
    uint8_t plain[SSMB_KMS_CHALLENGE_MAX];
    size_t n = 0;
    ssmb_result r;
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    if (!k || !nonce) return SSMB_ERR_INVALID_ARG;
    if (k->ready != 1) return SSMB_ERR_INVALID_STATE;
    r = ssmb__kms_challenge_open(k, request_json, len, plain, &n);
    if (r == SSMB_OK) r = ssmb__kms_challenge_seal(k, plain, n, nonce, out, cap, out_len);
    ssmb__wipe(plain, sizeof plain);
    return r;
}

SSMB_APIDEF ssmb_result ssmb_kms_challenge_request(const ssmb_kms_keys *k, const uint8_t *challenge, size_t n,
                                                   const uint8_t nonce[12], char *out, size_t cap,
                                                   size_t *out_len) {
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    if (!k || !nonce || (!challenge && n)) return SSMB_ERR_INVALID_ARG;
    if (k->ready != 1) return SSMB_ERR_INVALID_STATE;
    if (n > SSMB_KMS_CHALLENGE_MAX) return SSMB_ERR_LIMIT;
    return ssmb__kms_challenge_seal(k, challenge, n, nonce, out, cap, out_len);
}

SSMB_APIDEF ssmb_result ssmb_kms_challenge_verify(const ssmb_kms_keys *k, const uint8_t *challenge, size_t n,
                                                  const void *response_json, size_t len) {
    uint8_t plain[SSMB_KMS_CHALLENGE_MAX];
    size_t got = 0;
    ssmb_result r;
    if (!SSMB__KMS_HAVE_GCM) return SSMB_ERR_UNSUPPORTED;
    if (!k || (!challenge && n)) return SSMB_ERR_INVALID_ARG;
    if (k->ready != 1) return SSMB_ERR_INVALID_STATE;
    if (n > SSMB_KMS_CHALLENGE_MAX) return SSMB_ERR_LIMIT;
    r = ssmb__kms_challenge_open(k, response_json, len, plain, &got);
    /* The length is public (it shows in the payload); the bytes are not. */
    if (r == SSMB_OK && (got != n || !ssmb_equal_ct(plain, challenge, n))) r = SSMB_ERR_AUTH;
    ssmb__wipe(plain, sizeof plain);
    return r;
}

/* ---- the KMSEncryption ActionResult (§5.3, §6.6) ---- */

SSMB_APIDEF ssmb_result ssmb_kms_action_result_build(const void *ciphertext_blob, size_t n, int challenge_acknowledged,
                                                     char *out, size_t cap, size_t *out_len) {
    static const char head[] = "{\"KMSCipherTextKey\":\"", tail[] = "\",\"KMSCipherTextHash\":null",
                      ack[] = ",\"ChallengeAcknowledgement\":true", end[] = "}";
    size_t b64 = ssmb_base64_encoded_len(n), fixed, need, o;
    if (!ciphertext_blob || n == 0) return SSMB_ERR_INVALID_ARG;
    fixed = sizeof head - 1 + sizeof tail - 1 + sizeof end - 1 + (challenge_acknowledged ? sizeof ack - 1 : 0);
    if (b64 == 0 || ssmb_size_add(b64, fixed, &need) != SSMB_OK) return SSMB_ERR_OVERFLOW;
    if (out_len) *out_len = need;
    if (!out || cap < need) return SSMB_ERR_BUFFER_TOO_SMALL;
    memcpy(out, head, sizeof head - 1);
    o = sizeof head - 1;
    (void)ssmb_base64_encode(ciphertext_blob, n, out + o, cap - o, NULL);
    o += b64;
    memcpy(out + o, tail, sizeof tail - 1);
    o += sizeof tail - 1;
    if (challenge_acknowledged) {
        memcpy(out + o, ack, sizeof ack - 1);
        o += sizeof ack - 1;
    }
    memcpy(out + o, end, sizeof end - 1);
    if (need < cap) out[need] = '\0';
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_kms_action_result_parse(const void *json, size_t len, uint8_t *blob, size_t cap,
                                                     size_t *blob_len, int *challenge_acknowledged) {
    ssmb_json_token tokens[SSMB__PAYLOAD_TOKENS];
    ssmb_json doc;
    ssmb_str b64;
    int32_t v;
    int ack = 0;
    ssmb_result r = ssmb__payload_open(&doc, tokens, json, len);
    if (r == SSMB_OK) r = ssmb__json_req_str(&doc, 0, "KMSCipherTextKey", &b64);
    if (r != SSMB_OK) return r;
    v = ssmb_json_find(&doc, 0, "ChallengeAcknowledgement");
    if (v >= 0 && !ssmb_json_is_null(&doc, v)) {
        r = ssmb_json_get_bool(&doc, v, &ack);
        if (r != SSMB_OK) return r;
    }
    if (memchr(b64.ptr, '\\', b64.len)) return SSMB_ERR_MALFORMED;
    r = ssmb_base64_decode(b64.ptr, b64.len, blob, cap, blob_len);
    if (r == SSMB_OK && challenge_acknowledged) *challenge_acknowledged = ack;
    return r;
}

/* ---- the agent's nonce counter (§6.3) ---- */

SSMB_APIDEF void ssmb_kms_nonce_init(ssmb_kms_nonce_counter *c, const uint8_t random12[12]) {
    int i;
    for (i = 0; i < 3; i++) {
        const uint8_t *p = random12 + 4 * i;
        c->word[i] = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    }
}

SSMB_APIDEF void ssmb_kms_nonce_next(ssmb_kms_nonce_counter *c, uint8_t nonce[12]) {
    int i;
    for (i = 0; i < 3; i++) {
        uint32_t w = c->word[i];
        nonce[4 * i] = (uint8_t)w;
        nonce[4 * i + 1] = (uint8_t)(w >> 8);
        nonce[4 * i + 2] = (uint8_t)(w >> 16);
        nonce[4 * i + 3] = (uint8_t)(w >> 24);
    }
    /* Plus one, word 0 lowest; a word that wraps to 0 carries. */
    for (i = 0; i < 3; i++) {
        c->word[i] = (uint32_t)(c->word[i] + 1u);
        if (c->word[i] != 0) break;
    }
}

// >>conn
/* The sans-I/O WebSocket connection: TLS (internal or the host's), the
   HTTP upgrade, then frames both ways. Everything it owns lives in one
   allocation made by ssmb_conn_create; nothing after that allocates. */

#define SSMB__CONN_HEAD_MAX 8192u       /* the upgrade request, later the response head */
#define SSMB__CONN_NAME_MAX 255u        /* a server name (DNS's limit) */
#define SSMB__CONN_MAX_RESPONSE_HEADERS 48u
#define SSMB__CONN_MASK_POOL 256u       /* random bytes drawn at once for mask keys */
#define SSMB__CONN_SIGNER_HEADERS 3u    /* X-Amz-Date, X-Amz-Security-Token, Authorization */
#define SSMB__CONN_AUTHZ_MAX 640u

/* A control frame waiting for room in the output (at most one of each). */
typedef struct ssmb__conn_ctl {
    uint8_t pending;
    uint8_t len;
    uint8_t payload[SSMB_WS_MAX_CONTROL_PAYLOAD];
} ssmb__conn_ctl;

/* Request mode: how far the response's framing has been followed. */
typedef struct ssmb__conn_body {
    int head_done;                      /* the head parsed; the fields below are set */
    int framing;                        /* 0 until the end of input, 1 Content-Length, 2 chunked */
    size_t at;                          /* body bytes of resp already followed */
    size_t head_len;
    uint64_t length;                    /* Content-Length */
    ssmb_http_chunked chunked;
} ssmb__conn_body;

struct ssmb_conn {
    size_t mem_size;                    /* the one allocation, for free_fn */
    ssmb_allocator alloc;
    ssmb_logger logger;
    ssmb_random_fn random_fn;
    void *random_user_data;
    ssmb_utc_fn utc_fn;
    void *utc_user_data;
    const ssmb_trust *trust;

    ssmb_url url;                       /* views into url_text */
    char *url_text;
    char *server_name;
    char *region;
    char *service;
    ssmb_aws_credentials creds;         /* views into this block; wiped on destroy */
    ssmb_http_header *headers;          /* the user's extra headers, then room for the signer's */
    uint32_t extra_count;
    int sign;                           /* 1: SigV4-sign the upgrade (PROTOCOL.md §4.1) */

    uint32_t handshake_timeout_ms, ping_interval_ms, idle_timeout_ms, close_timeout_ms;
    uint64_t max_message_size;

    ssmb_conn_state state;
    ssmb_result error;                  /* SSMB_OK while healthy, SSMB_CLOSED or an error at the end */
    int32_t detail;

    int tls_on;
    ssmb__tls *tls;
    /* Without internal TLS, plain buffers. Invariants: rd <= wr <= cap. */
    uint8_t *in;
    size_t in_cap, in_rd, in_wr;
    uint8_t *out;
    size_t out_cap, out_rd, out_wr;

    char *head;                         /* SSMB__CONN_HEAD_MAX bytes */
    size_t head_len;                    /* request bytes, later response bytes gathered */
    size_t request_sent;                /* request bytes moved to the output */
    int request_done;
    uint32_t head_match;                /* bytes of "\r\n\r\n" matched at the end of head */
    char expected_accept[29];

    ssmb_ws_reader reader;
    size_t piece_ack;                   /* input bytes behind the piece handed out last */
    int message_open;                   /* an outgoing message awaits its final frame */
    uint32_t message_opcode;
    ssmb__conn_ctl ping, pong, close_frame;
    int close_sent, close_received;
    uint32_t peer_close_code;
    size_t peer_reason_len;
    char peer_reason[SSMB_WS_MAX_CONTROL_PAYLOAD];
    uint8_t mask_pool[SSMB__CONN_MASK_POOL];
    size_t mask_used;                   /* invariant: <= SSMB__CONN_MASK_POOL */

    uint64_t now;                       /* the latest time the host gave */
    uint64_t handshake_deadline, last_recv, last_send, close_deadline;

    /* Request mode: the request sits in head; the response gathers in resp. */
    int request_mode;
    size_t head_cap;                    /* SSMB__CONN_HEAD_MAX, or the request's length */
    uint8_t *resp;
    size_t resp_cap, resp_len;
    ssmb__conn_body body;
};

/* Everything that can move without the host; defined after its parts. */
static void ssmb__conn_pump(ssmb_conn *c);

#define SSMB__LOG(c, level, item, msg) ssmb__log(&(c)->logger, "ssmb.conn", (level), (item), (msg), (uint32_t)__LINE__)

/* ---- layout: one allocation, measured then carved ---- */

typedef struct ssmb__arena {
    uint8_t *base;      /* NULL while measuring */
    size_t used;
    int overflow;
} ssmb__arena;

static void *ssmb__arena_take(ssmb__arena *a, size_t n, size_t align) {
    size_t at = (a->used + (align - 1)) & ~(align - 1), end;
    if (at < a->used || ssmb_size_add(at, n, &end) != SSMB_OK) {
        a->overflow = 1;
        return NULL;
    }
    a->used = end;
    return a->base ? a->base + at : NULL;
}

/* A NUL-terminated copy of n bytes of s. */
static char *ssmb__arena_strn(ssmb__arena *a, const char *s, size_t n) {
    char *p = (char *)ssmb__arena_take(a, n + 1, 1);
    if (p) {
        if (n) memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static ssmb_str ssmb__arena_view(ssmb__arena *a, ssmb_str v) {
    ssmb_str r;
    r.ptr = ssmb__arena_strn(a, v.ptr ? v.ptr : "", v.len);
    r.len = v.len;
    if (!r.ptr) r.ptr = "";
    return r;
}

static const char *ssmb__or(const char *s, const char *def) { return s && *s ? s : def; }

/* Copies of everything the desc points at, and the buffers. With a NULL
   base only the size is measured (c is then a scratch struct). */
static void ssmb__conn_layout(ssmb__arena *a, const ssmb_conn_desc *d, const ssmb_url *url, ssmb_conn *c) {
    uint32_t i;
    const char *service = ssmb__or(d->sign_service, "ssmmessages");
    (void)ssmb__arena_take(a, sizeof(ssmb_conn), 16);
    c->url_text = ssmb__arena_strn(a, d->url, strlen(d->url));
    c->server_name = d->server_name && *d->server_name
                         ? ssmb__arena_strn(a, d->server_name, strlen(d->server_name))
                         : ssmb__arena_strn(a, url->host.ptr, url->host.len);
    c->region = ssmb__arena_strn(a, ssmb__or(d->region, ""), strlen(ssmb__or(d->region, "")));
    c->service = ssmb__arena_strn(a, service, strlen(service));
    c->creds.access_key_id = ssmb__arena_view(a, d->credentials.access_key_id);
    c->creds.secret_access_key = ssmb__arena_view(a, d->credentials.secret_access_key);
    c->creds.session_token = ssmb__arena_view(a, d->credentials.session_token);
    c->headers = (ssmb_http_header *)ssmb__arena_take(
        a, sizeof(ssmb_http_header) * ((size_t)d->extra_header_count + SSMB__CONN_SIGNER_HEADERS), 8);
    for (i = 0; i < d->extra_header_count; i++) {
        ssmb_str name = ssmb__arena_view(a, d->extra_headers[i].name);
        ssmb_str value = ssmb__arena_view(a, d->extra_headers[i].value);
        if (c->headers) {
            c->headers[i].name = name;
            c->headers[i].value = value;
        }
    }
    c->head = (char *)ssmb__arena_take(a, c->head_cap, 1);
    if (c->request_mode) c->resp = (uint8_t *)ssmb__arena_take(a, c->resp_cap, 16);
    if (c->tls_on) {
        char name[SSMB__CONN_NAME_MAX + 1];
        ssmb_str host = d->server_name && *d->server_name ? ssmb_str_c(d->server_name) : url->host;
        size_t n = SSMB__MIN(host.len, SSMB__CONN_NAME_MAX);
        memcpy(name, host.ptr, n);
        name[n] = '\0';
        c->tls = (ssmb__tls *)ssmb__arena_take(a, ssmb__tls_size(name), 16);
    } else {
        c->in = (uint8_t *)ssmb__arena_take(a, c->in_cap, 16);
        c->out = (uint8_t *)ssmb__arena_take(a, c->out_cap, 16);
    }
}

/* ---- create, destroy ---- */

static ssmb_result ssmb__conn_check_desc(const ssmb_conn_desc *d, ssmb_url *url, int *tls_on) {
    uint32_t i;
    if (!d->url || ssmb_url_parse(d->url, strlen(d->url), url) != SSMB_OK) return SSMB_ERR_INVALID_ARG;
    /* http(s) only for a request, ws(s) only for a WebSocket */
    if ((url->scheme.len > 3) != (d->request != NULL)) return SSMB_ERR_INVALID_ARG;
    if (d->request && d->request_len == 0) return SSMB_ERR_INVALID_ARG;
    if (!ssmb__allocator_valid(&d->allocator)) return SSMB_ERR_INVALID_ARG;
    if (d->tls_mode > SSMB_TLS_EXTERNAL) return SSMB_ERR_INVALID_ARG;
    *tls_on = d->tls_mode == SSMB_TLS_INTERNAL || (d->tls_mode == SSMB_TLS_AUTO && url->secure);
    if (*tls_on && strcmp(ssmb_tls_backend(), "none") == 0) return SSMB_ERR_UNSUPPORTED;
    if (*tls_on && !d->trust) return SSMB_ERR_INVALID_ARG;
    if (d->credentials.access_key_id.len &&
        (!d->credentials.secret_access_key.len || !d->region || !*d->region))
        return SSMB_ERR_INVALID_ARG;
    if (d->extra_header_count && !d->extra_headers) return SSMB_ERR_INVALID_ARG;
    for (i = 0; i < d->extra_header_count; i++)
        if (!d->extra_headers[i].name.ptr || (!d->extra_headers[i].value.ptr && d->extra_headers[i].value.len))
            return SSMB_ERR_INVALID_ARG;
    return SSMB_OK;
}

/* PROTOCOL.md §4.1: a StreamUrl that already carries a signature is sent
   as it is; any other is signed when there are credentials. */
static int ssmb__url_is_presigned(ssmb_str query) {
    static const char *const names[] = {"X-Amz-Algorithm=", "X-Amz-Credential=", "X-Amz-Date=",
                                        "X-Amz-Expires=", "X-Amz-SignedHeaders=", "X-Amz-Signature=",
                                        "X-Amz-Security-Token="};
    size_t at = 0, i;
    while (at < query.len) {
        size_t end = at;
        while (end < query.len && query.ptr[end] != '&') end++;
        for (i = 0; i < SSMB__COUNT_OF(names); i++) {
            size_t n = strlen(names[i]), k;
            if (end - at < n) continue;
            for (k = 0; k < n && ssmb__ascii_lower((unsigned char)query.ptr[at + k]) ==
                                     ssmb__ascii_lower((unsigned char)names[i][k]);
                 k++) {}
            if (k == n) return 1;
        }
        at = end + 1;
    }
    return 0;
}

static void ssmb__conn_settings(ssmb_conn *c, const ssmb_conn_desc *d) {
    c->alloc = d->allocator;
    c->logger = d->logger;
    c->random_fn = d->random_fn ? d->random_fn : ssmb_random_system;
    c->random_user_data = d->random_user_data;
    c->utc_fn = d->utc_fn ? d->utc_fn : ssmb_utc_system;
    c->utc_user_data = d->utc_user_data;
    c->trust = d->trust;
    c->extra_count = d->extra_header_count;
    c->handshake_timeout_ms = d->handshake_timeout_ms ? d->handshake_timeout_ms : 45000;
    c->ping_interval_ms = d->ping_interval_ms ? d->ping_interval_ms : 30000;
    c->idle_timeout_ms = d->idle_timeout_ms ? d->idle_timeout_ms : 90000;
    c->close_timeout_ms = d->close_timeout_ms ? d->close_timeout_ms : 3000;
    c->max_message_size = d->max_message_size ? d->max_message_size : ((uint64_t)16 << 20);
    c->in_cap = c->out_cap = d->buffer_size ? d->buffer_size : 16384;
    c->request_mode = d->request != NULL;
    c->head_cap = c->request_mode ? d->request_len : SSMB__CONN_HEAD_MAX;
    c->resp_cap = d->response_max ? d->response_max : 65536;
    c->state = SSMB_CONN_IDLE;
    c->peer_close_code = SSMB_WS_CLOSE_NO_STATUS;
    c->mask_used = SSMB__CONN_MASK_POOL;
}

SSMB_APIDEF ssmb_result ssmb_conn_create(const ssmb_conn_desc *d, ssmb_conn **out) {
    ssmb_conn scratch, *c;
    ssmb__arena a;
    ssmb_url url;
    int tls_on = 0;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    *out = NULL;
    if (!d) return SSMB_ERR_INVALID_ARG;
    r = ssmb__conn_check_desc(d, &url, &tls_on);
    if (r != SSMB_OK) {
        ssmb__log(&d->logger, "ssmb.conn", SSMB_LOG_ERROR, SSMB_LOGITEM_DESC_INVALID,
                  "ssmb_conn_desc: url, tls_mode, trust, credentials/region or extra_headers invalid",
                  (uint32_t)__LINE__);
        return r;
    }
    memset(&scratch, 0, sizeof scratch);
    scratch.tls_on = tls_on;
    ssmb__conn_settings(&scratch, d);
    memset(&a, 0, sizeof a);
    ssmb__conn_layout(&a, d, &url, &scratch);
    if (a.overflow) return SSMB_ERR_OVERFLOW;
    c = (ssmb_conn *)ssmb__alloc(&d->allocator, a.used);
    if (!c) return SSMB_ERR_NOMEM;
    memset(c, 0, a.used);
    c->tls_on = tls_on;
    ssmb__conn_settings(c, d);
    a.base = (uint8_t *)c;
    a.used = 0;
    ssmb__conn_layout(&a, d, &url, c);
    c->mem_size = a.used;
    (void)ssmb_url_parse(c->url_text, strlen(c->url_text), &c->url);
    c->sign = c->creds.access_key_id.len != 0 && !ssmb__url_is_presigned(c->url.query);
    if (c->request_mode) {
        memcpy(c->head, d->request, d->request_len);
        c->head_len = d->request_len;
        c->sign = 0; /* the request comes signed */
    }
    *out = c;
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_conn_destroy(ssmb_conn *c) {
    if (!c) return;
    if (c->tls_on && c->state != SSMB_CONN_IDLE) ssmb__tls_free(c->tls);
    ssmb__free_object(c, &c->alloc, c->mem_size); /* credentials, keys and plaintext are wiped with it */
}

/* ---- the four byte directions, with or without internal TLS ---- */

static uint8_t *ssmb__conn_app_in(ssmb_conn *c, size_t *len) {
    if (c->tls_on) return ssmb__tls_app_in_buf(c->tls, len);
    *len = c->in_wr - c->in_rd;
    return *len ? c->in + c->in_rd : NULL;
}

static void ssmb__conn_app_in_ack(ssmb_conn *c, size_t n) {
    if (n == 0) return;
    if (c->tls_on) {
        ssmb__tls_app_in_ack(c->tls, n);
        return;
    }
    c->in_rd += n;
    if (c->in_rd == c->in_wr) c->in_rd = c->in_wr = 0;
}

static uint8_t *ssmb__conn_app_out(ssmb_conn *c, size_t *cap) {
    if (c->tls_on) return ssmb__tls_app_out_buf(c->tls, cap);
    if (c->out_rd > 0) { /* keep the free room contiguous */
        memmove(c->out, c->out + c->out_rd, c->out_wr - c->out_rd);
        c->out_wr -= c->out_rd;
        c->out_rd = 0;
    }
    *cap = c->out_cap - c->out_wr;
    return *cap ? c->out + c->out_wr : NULL;
}

static void ssmb__conn_app_out_ack(ssmb_conn *c, size_t n) {
    if (c->tls_on) ssmb__tls_app_out_ack(c->tls, n);
    else c->out_wr += n;
}

static const uint8_t *ssmb__conn_net_out(ssmb_conn *c, size_t *len) {
    if (c->tls_on) {
        if (c->state == SSMB_CONN_IDLE) {
            *len = 0;
            return NULL;
        }
        ssmb__tls_flush(c->tls); /* seal what was written since the last call */
        return ssmb__tls_net_out_buf(c->tls, len);
    }
    *len = c->out_wr - c->out_rd;
    return *len ? c->out + c->out_rd : NULL;
}

/* ---- ending ---- */

static void ssmb__conn_finish(ssmb_conn *c, ssmb_result why, int32_t detail) {
    if (c->state == SSMB_CONN_CLOSED) return;
    if (c->error == SSMB_OK) {
        c->error = why;
        c->detail = detail;
    }
    c->state = SSMB_CONN_CLOSED;
    if (c->error < 0) SSMB__LOG(c, SSMB_LOG_WARN, SSMB_LOGITEM_CONN_FAILED, ssmb_result_str(c->error));
    else SSMB__LOG(c, SSMB_LOG_INFO, SSMB_LOGITEM_CONN_CLOSED, "connection closed");
}

/* Queues a close frame and waits for the peer's (RFC 6455 §7.1.2). */
static void ssmb__conn_begin_close(ssmb_conn *c, uint32_t code, const char *reason, size_t reason_len) {
    size_t n = 0;
    if (c->close_sent || c->close_frame.pending) return;
    if (ssmb_ws_close_payload_build(code, reason, reason_len, c->close_frame.payload, &n) != SSMB_OK)
        (void)ssmb_ws_close_payload_build(0, NULL, 0, c->close_frame.payload, &n);
    c->close_frame.len = (uint8_t)n;
    c->close_frame.pending = 1;
    c->state = SSMB_CONN_CLOSING;
    c->close_deadline = c->now + c->close_timeout_ms;
}

/* A protocol failure: say why in a close frame, then stop. */
static void ssmb__conn_fail_ws(ssmb_conn *c, ssmb_result why, uint32_t close_code) {
    if (c->error == SSMB_OK) {
        c->error = why;
        c->detail = (int32_t)close_code;
    }
    SSMB__LOG(c, SSMB_LOG_WARN, SSMB_LOGITEM_WS_PROTOCOL, ssmb_result_str(why));
    ssmb__conn_begin_close(c, close_code, NULL, 0);
}

/* ---- output: frames, masked with keys from a random pool ---- */

static int ssmb__conn_mask_key(ssmb_conn *c, uint8_t key[4]) {
    if (c->mask_used + 4 > SSMB__CONN_MASK_POOL) {
        if (c->random_fn(c->mask_pool, sizeof c->mask_pool, c->random_user_data) != SSMB_OK) return 0;
        c->mask_used = 0;
    }
    memcpy(key, c->mask_pool + c->mask_used, 4);
    c->mask_used += 4;
    return 1;
}

/* Header bytes of a masked client frame carrying payload bytes. */
static size_t ssmb__conn_frame_overhead(size_t payload) {
    return 2 + 4 + (payload <= 125 ? 0 : payload <= 65535 ? 2 : 8);
}

/* Writes one frame carrying as much of data as fits (control frames go
   whole or not at all). *taken: payload bytes written. */
static ssmb_result ssmb__conn_write_frame(ssmb_conn *c, uint32_t opcode, int fin, const uint8_t *data, size_t len,
                                          size_t *taken) {
    size_t cap = 0, take = len, n = 0;
    uint8_t key[4], *dst = ssmb__conn_app_out(c, &cap);
    *taken = 0;
    if (!dst || cap < ssmb__conn_frame_overhead(0) + (len ? 1 : 0)) return SSMB_AGAIN;
    if (cap < ssmb__conn_frame_overhead(len) + len) {
        if (opcode >= SSMB_WS_CLOSE) return SSMB_AGAIN;
        take = cap - ssmb__conn_frame_overhead(cap);
        if (take == 0) return SSMB_AGAIN;
        fin = 0;
    }
    if (!ssmb__conn_mask_key(c, key)) {
        ssmb__conn_finish(c, SSMB_ERR_NO_RANDOM, 0);
        return SSMB_ERR_NO_RANDOM;
    }
    if (ssmb_ws_frame_write(opcode, fin, data, take, key, dst, cap, &n) != SSMB_OK) return SSMB_ERR_INTERNAL;
    ssmb__conn_app_out_ack(c, n);
    c->last_send = c->now;
    *taken = take;
    return SSMB_OK;
}

static int ssmb__conn_send_ctl(ssmb_conn *c, ssmb__conn_ctl *ctl, uint32_t opcode) {
    size_t taken;
    if (!ctl->pending) return 1;
    if (ssmb__conn_write_frame(c, opcode, 1, ctl->payload, ctl->len, &taken) != SSMB_OK) return 0;
    ctl->pending = 0;
    return 1;
}

/* Pending control frames go out before any data (RFC 6455 §5.4 lets them
   sit between fragments). After both close frames the connection is done. */
static void ssmb__conn_send_controls(ssmb_conn *c) {
    if (!ssmb__conn_send_ctl(c, &c->pong, SSMB_WS_PONG)) return;
    if (!ssmb__conn_send_ctl(c, &c->ping, SSMB_WS_PING)) return;
    if (c->close_frame.pending) {
        if (!ssmb__conn_send_ctl(c, &c->close_frame, SSMB_WS_CLOSE)) return;
        c->close_sent = 1;
        if (c->tls_on) ssmb__tls_flush(c->tls);
    }
    if (c->close_sent && c->close_received) ssmb__conn_finish(c, SSMB_CLOSED, (int32_t)c->peer_close_code);
}

/* ---- the opening handshake (RFC 6455 §4.1, PROTOCOL.md §4.1) ---- */

/* Host header value: the host, bracketed when IPv6, with a port that is
   not the scheme's default. */
static ssmb_result ssmb__conn_host_header(const ssmb_conn *c, char *out, size_t cap, size_t *len) {
    ssmb__sink s;
    uint16_t def = c->url.secure ? 443 : 80;
    ssmb__sink_init(&s, out, cap);
    if (c->url.ipv6_literal) ssmb__put_c(&s, '[');
    ssmb__put_str(&s, c->url.host);
    if (c->url.ipv6_literal) ssmb__put_c(&s, ']');
    if (c->url.port != def) {
        char digits[8];
        int i = 7;
        uint32_t p = c->url.port;
        digits[7] = '\0';
        do {
            digits[--i] = (char)('0' + p % 10);
            p /= 10;
        } while (p);
        ssmb__put_c(&s, ':');
        ssmb__put_z(&s, digits + i);
    }
    return ssmb__sink_finish(&s, len) == SSMB_OK ? SSMB_OK : SSMB_ERR_LIMIT;
}

/* SigV4 for the upgrade: GET, the StreamUrl's path and query, Host, empty
   body, service ssmmessages (PROTOCOL.md §4.1). Adds X-Amz-Date, the
   security token and Authorization after the user's headers. */
static ssmb_result ssmb__conn_sign(ssmb_conn *c, ssmb_str host, int64_t utc, char *date, char *authz,
                                   size_t authz_cap, uint32_t *count) {
    ssmb_http_header host_header;
    ssmb_sigv4_request req;
    ssmb_sigv4_params p;
    ssmb_sigv4_output o;
    size_t n = 0;
    ssmb_result r;
    memset(&req, 0, sizeof req);
    memset(&p, 0, sizeof p);
    host_header.name = ssmb_str_c("Host");
    host_header.value = host;
    req.method = ssmb_str_c("GET");
    req.path = c->url.path;
    req.query = c->url.query;
    req.headers = &host_header;
    req.header_count = 1;
    p.creds = c->creds;
    p.region = ssmb_str_c(c->region);
    p.service = ssmb_str_c(c->service);
    p.time = utc;
    r = ssmb_sigv4_sign(&req, &p, authz, authz_cap, &n, &o);
    if (r != SSMB_OK) return r == SSMB_ERR_BUFFER_TOO_SMALL ? SSMB_ERR_LIMIT : r;
    memcpy(date, o.amz_date, 17);
    c->headers[(*count)].name = ssmb_str_c("X-Amz-Date");
    c->headers[(*count)++].value = ssmb_str_c(date);
    if (c->creds.session_token.len) {
        c->headers[(*count)].name = ssmb_str_c("X-Amz-Security-Token");
        c->headers[(*count)++].value = c->creds.session_token;
    }
    c->headers[(*count)].name = ssmb_str_c("Authorization");
    c->headers[(*count)].value.ptr = authz;
    c->headers[(*count)++].value.len = n;
    return SSMB_OK;
}

/* The whole request goes into head now; it is copied to the output once
   TLS is ready. The signer's header values live on this stack frame only
   until the request is written. */
static ssmb_result ssmb__conn_write_request(ssmb_conn *c, int64_t utc, const uint8_t key_random[16]) {
    char host[300], date[17], authz[SSMB__CONN_AUTHZ_MAX], key[25];
    size_t host_len = 0;
    uint32_t count = c->extra_count;
    ssmb_str hv;
    ssmb_result r = ssmb__conn_host_header(c, host, sizeof host, &host_len);
    if (r != SSMB_OK) return r;
    hv.ptr = host;
    hv.len = host_len;
    ssmb_ws_client_key(key_random, key);
    if (ssmb_ws_accept_key(key, 24, c->expected_accept) != SSMB_OK) return SSMB_ERR_INTERNAL;
    if (c->sign && (r = ssmb__conn_sign(c, hv, utc, date, authz, sizeof authz, &count)) != SSMB_OK) return r;
    r = ssmb_http_upgrade_request_write(c->url.target, hv, ssmb_str_c(key), c->headers, count, c->head,
                                        SSMB__CONN_HEAD_MAX, &c->head_len);
    ssmb__wipe(authz, sizeof authz);
    if (r == SSMB_ERR_BUFFER_TOO_SMALL) return SSMB_ERR_LIMIT;
    return r;
}

SSMB_APIDEF ssmb_result ssmb_conn_start(ssmb_conn *c, uint64_t now_ms) {
    uint8_t rnd[16];
    int64_t utc;
    ssmb_result r;
    if (!c) return SSMB_ERR_INVALID_ARG;
    if (c->state != SSMB_CONN_IDLE) return SSMB_ERR_INVALID_STATE;
    c->now = c->last_recv = c->last_send = now_ms;
    c->handshake_deadline = now_ms + c->handshake_timeout_ms;
    ssmb_ws_reader_init(&c->reader, 0, c->max_message_size);
    utc = c->utc_fn(c->utc_user_data);
    if (c->random_fn(rnd, sizeof rnd, c->random_user_data) != SSMB_OK) r = SSMB_ERR_NO_RANDOM;
    else r = c->request_mode ? SSMB_OK : ssmb__conn_write_request(c, utc, rnd);
    if (r == SSMB_OK && c->tls_on) {
        ssmb__tls_config cfg;
        cfg.trust = c->trust;
        cfg.server_name = c->server_name;
        cfg.now_utc = utc;
        cfg.random_fn = c->random_fn;
        cfg.random_user_data = c->random_user_data;
        r = ssmb__tls_init(c->tls, &cfg);
    }
    c->state = SSMB_CONN_HANDSHAKE;
    if (r != SSMB_OK) {
        ssmb__conn_finish(c, r, 0);
        return r;
    }
    ssmb__conn_pump(c);
    return SSMB_OK;
}

/* Moves the request into the output as room allows. */
static void ssmb__conn_send_request(ssmb_conn *c) {
    size_t cap = 0, n;
    uint8_t *dst = ssmb__conn_app_out(c, &cap);
    if (!dst) return;
    n = SSMB__MIN(cap, c->head_len - c->request_sent);
    memcpy(dst, c->head + c->request_sent, n);
    ssmb__conn_app_out_ack(c, n);
    c->request_sent += n;
    if (c->request_sent < c->head_len) return;
    c->request_done = 1;
    c->head_len = 0; /* head now gathers the response */
    if (c->tls_on) ssmb__tls_flush(c->tls);
}

/* Copies response bytes into head up to the blank line, no further: what
   follows is WebSocket frames and stays in the input. 1 when complete. */
static int ssmb__conn_gather_head(ssmb_conn *c) {
    static const char end[] = "\r\n\r\n";
    size_t len = 0, i;
    uint8_t *in = ssmb__conn_app_in(c, &len);
    if (!in) return 0;
    for (i = 0; i < len && c->head_match < 4; i++) {
        if (c->head_len == SSMB__CONN_HEAD_MAX) break;
        c->head[c->head_len++] = (char)in[i];
        c->head_match = in[i] == (uint8_t)end[c->head_match] ? c->head_match + 1 : (in[i] == '\r' ? 1u : 0u);
    }
    ssmb__conn_app_in_ack(c, i);
    return c->head_match == 4;
}

static void ssmb__conn_check_response(ssmb_conn *c) {
    ssmb_http_header headers[SSMB__CONN_MAX_RESPONSE_HEADERS];
    ssmb_http_response resp;
    ssmb_result r = ssmb_http_response_parse(c->head, c->head_len, headers, SSMB__COUNT_OF(headers),
                                             SSMB__CONN_HEAD_MAX, &resp);
    if (r != SSMB_OK) {
        ssmb__conn_finish(c, r == SSMB_ERR_LIMIT ? SSMB_ERR_LIMIT : SSMB_ERR_HTTP, 0);
        return;
    }
    if (ssmb_http_check_ws_upgrade(&resp, c->expected_accept) != SSMB_OK) {
        /* 401/403: the service refused the signature or the token. */
        ssmb_result why = resp.status == 401 || resp.status == 403 ? SSMB_ERR_AUTH : SSMB_ERR_HTTP;
        SSMB__LOG(c, SSMB_LOG_ERROR, SSMB_LOGITEM_UPGRADE_REFUSED, "WebSocket upgrade refused");
        ssmb__conn_finish(c, why, (int32_t)resp.status);
        return;
    }
    c->state = SSMB_CONN_OPEN;
    c->last_recv = c->last_send = c->now;
    SSMB__LOG(c, SSMB_LOG_INFO, SSMB_LOGITEM_CONN_OPEN, "WebSocket open");
}

/* ---- request mode: one HTTP exchange, the response gathered whole ---- */

/* Follows the response's framing over what resp holds: 1 when it is
   complete, 0 for more, or the conn finished with an error. */
static int ssmb__conn_body_done(ssmb_conn *c) {
    ssmb__conn_body *b = &c->body;
    if (!b->head_done) {
        ssmb_http_header headers[SSMB__CONN_MAX_RESPONSE_HEADERS];
        ssmb_http_response r;
        int present = 0;
        ssmb_result pr = ssmb_http_response_parse((const char *)c->resp, c->resp_len, headers,
                                                  SSMB__COUNT_OF(headers), 0, &r);
        if (pr == SSMB_AGAIN) return 0;
        if (pr == SSMB_OK && ssmb_http_header_has_token(&r, "Transfer-Encoding", "chunked")) b->framing = 2;
        else if (pr == SSMB_OK) pr = ssmb_http_content_length(&r, &present, &b->length);
        if (pr != SSMB_OK) {
            ssmb__conn_finish(c, pr == SSMB_ERR_LIMIT ? SSMB_ERR_LIMIT : SSMB_ERR_HTTP, 0);
            return 0;
        }
        if (present) b->framing = 1;
        b->head_done = 1;
        b->head_len = b->at = r.head_len;
        c->detail = (int32_t)r.status;
        ssmb_http_chunked_init(&b->chunked, c->resp_cap);
    }
    if (b->framing == 1) return c->resp_len - b->head_len >= b->length;
    while (b->framing == 2 && b->at < c->resp_len) {
        size_t used = 0;
        ssmb_str data;
        ssmb_result cr = ssmb_http_chunked_read(&b->chunked, (const char *)c->resp + b->at, c->resp_len - b->at,
                                                &used, &data);
        b->at += used;
        if (cr == SSMB_CLOSED) return 1;
        if (cr < 0) {
            ssmb__conn_finish(c, cr == SSMB_ERR_LIMIT ? SSMB_ERR_LIMIT : SSMB_ERR_HTTP, 0);
            return 0;
        }
        if (cr == SSMB_AGAIN) break;
    }
    return 0; /* framing 0: the response ends with the connection */
}

static void ssmb__conn_read_response(ssmb_conn *c) {
    size_t len = 0, n;
    uint8_t *in;
    while ((in = ssmb__conn_app_in(c, &len)) != NULL && c->state == SSMB_CONN_HANDSHAKE) {
        n = SSMB__MIN(len, c->resp_cap - c->resp_len);
        if (n == 0) {
            ssmb__conn_finish(c, SSMB_ERR_LIMIT, 0);
            return;
        }
        memcpy(c->resp + c->resp_len, in, n);
        c->resp_len += n;
        ssmb__conn_app_in_ack(c, n);
        if (ssmb__conn_body_done(c)) {
            int32_t status = c->detail;
            c->detail = 0;
            ssmb__conn_finish(c, SSMB_CLOSED, status);
        }
    }
}

SSMB_APIDEF ssmb_result ssmb_conn_response(const ssmb_conn *c, const uint8_t **data, size_t *len) {
    if (!c || !data || !len || !c->request_mode) return SSMB_ERR_INVALID_ARG;
    *data = NULL;
    *len = 0;
    if (c->state != SSMB_CONN_CLOSED) return SSMB_AGAIN;
    if (c->error != SSMB_CLOSED) return c->error;
    *data = c->resp;
    *len = c->resp_len;
    return SSMB_OK;
}

static void ssmb__conn_handshake(ssmb_conn *c) {
    if (c->tls_on && !ssmb__tls_handshake_done(c->tls)) return;
    if (!c->request_done) ssmb__conn_send_request(c);
    if (!c->request_done) return;
    if (c->request_mode) ssmb__conn_read_response(c);
    else if (ssmb__conn_gather_head(c)) ssmb__conn_check_response(c);
    else if (c->head_len == SSMB__CONN_HEAD_MAX) ssmb__conn_finish(c, SSMB_ERR_LIMIT, 0);
}

/* TLS ended or failed underneath. */
static void ssmb__conn_check_tls(ssmb_conn *c) {
    int32_t detail = 0;
    ssmb_result r;
    if (!c->tls_on || c->state == SSMB_CONN_IDLE || c->state == SSMB_CONN_CLOSED) return;
    r = ssmb__tls_error(c->tls, &detail);
    if (r == SSMB_OK) return;
    if (r == SSMB_CLOSED && c->request_mode) {
        ssmb_conn_recv_eof(c, c->now); /* close_notify ends a response as the end of the stream does */
        return;
    }
    if (r == SSMB_CLOSED) {
        int clean = c->close_sent && c->close_received;
        ssmb__conn_finish(c, clean ? SSMB_CLOSED : SSMB_ERR_IO, clean ? (int32_t)c->peer_close_code : 1006);
        return;
    }
    SSMB__LOG(c, SSMB_LOG_ERROR, SSMB_LOGITEM_TLS_FAILED, ssmb_result_str(r));
    ssmb__conn_finish(c, r, detail);
}

/* Everything that can move without the host: called after every input,
   output, timer and send. */
static void ssmb__conn_pump(ssmb_conn *c) {
    if (c->state == SSMB_CONN_HANDSHAKE) ssmb__conn_handshake(c);
    if (c->state == SSMB_CONN_OPEN || c->state == SSMB_CONN_CLOSING) ssmb__conn_send_controls(c);
    ssmb__conn_check_tls(c);
}

/* ---- input ---- */

static void ssmb__conn_ack_piece(ssmb_conn *c) {
    if (c->piece_ack) {
        ssmb__conn_app_in_ack(c, c->piece_ack);
        c->piece_ack = 0;
    }
}

SSMB_APIDEF uint8_t *ssmb_conn_recv_buf(ssmb_conn *c, size_t *cap) {
    if (!c || !cap) return NULL;
    *cap = 0;
    if (c->state == SSMB_CONN_IDLE || c->state == SSMB_CONN_CLOSED) return NULL;
    ssmb__conn_ack_piece(c);
    if (c->tls_on) return ssmb__tls_net_in_buf(c->tls, cap);
    if (c->in_rd > 0 && c->in_wr == c->in_cap) { /* slide the unread bytes down */
        memmove(c->in, c->in + c->in_rd, c->in_wr - c->in_rd);
        c->in_wr -= c->in_rd;
        c->in_rd = 0;
    }
    *cap = c->in_cap - c->in_wr;
    return *cap ? c->in + c->in_wr : NULL;
}

SSMB_APIDEF ssmb_result ssmb_conn_recv_ack(ssmb_conn *c, size_t n, uint64_t now_ms) {
    size_t cap = 0;
    if (!c) return SSMB_ERR_INVALID_ARG;
    if (n > 0 && (!ssmb_conn_recv_buf(c, &cap) || n > cap)) return SSMB_ERR_INVALID_ARG;
    c->now = now_ms;
    if (n > 0) {
        c->last_recv = now_ms;
        if (c->tls_on) ssmb__tls_net_in_ack(c->tls, n);
        else c->in_wr += n;
    }
    ssmb__conn_pump(c);
    return c->error < 0 ? c->error : SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_conn_feed(ssmb_conn *c, const void *data, size_t len, size_t *consumed,
                                       uint64_t now_ms) {
    const uint8_t *p = (const uint8_t *)data;
    size_t done = 0;
    ssmb_result r = SSMB_OK;
    if (!c || (!data && len)) return SSMB_ERR_INVALID_ARG;
    while (done < len && r == SSMB_OK) {
        size_t cap = 0, n;
        uint8_t *dst = ssmb_conn_recv_buf(c, &cap);
        if (!dst) break;
        n = SSMB__MIN(cap, len - done);
        memcpy(dst, p + done, n);
        r = ssmb_conn_recv_ack(c, n, now_ms);
        done += n;
    }
    if (consumed) *consumed = done;
    if (r != SSMB_OK) return r;
    return done < len ? SSMB_AGAIN : SSMB_OK;
}

SSMB_APIDEF void ssmb_conn_recv_eof(ssmb_conn *c, uint64_t now_ms) {
    if (!c || c->state == SSMB_CONN_CLOSED) return;
    c->now = now_ms;
    if (c->request_mode) {
        if (c->state == SSMB_CONN_HANDSHAKE) ssmb__conn_read_response(c);
        if (c->state == SSMB_CONN_CLOSED) return;
        if (c->body.head_done && c->body.framing == 0) { /* the body ran to the end of the stream */
            int32_t status = c->detail;
            c->detail = 0;
            ssmb__conn_finish(c, SSMB_CLOSED, status);
        } else {
            ssmb__conn_finish(c, SSMB_ERR_TRUNCATED, 0);
        }
        return;
    }
    if (c->close_sent || c->close_received) ssmb__conn_finish(c, SSMB_CLOSED, (int32_t)c->peer_close_code);
    else ssmb__conn_finish(c, SSMB_ERR_IO, SSMB_WS_CLOSE_ABNORMAL); /* RFC 6455 §7.1.5: 1006 */
}

/* A control frame from the peer (RFC 6455 §5.5). */
static void ssmb__conn_on_control(ssmb_conn *c, const ssmb_ws_piece *p) {
    if (p->opcode == SSMB_WS_PING) {
        memcpy(c->pong.payload, p->data, p->len); /* only the latest ping needs its pong */
        c->pong.len = (uint8_t)p->len;
        c->pong.pending = 1;
    } else if (p->opcode == SSMB_WS_CLOSE) {
        c->close_received = 1;
        c->peer_close_code = p->close_code;
        c->peer_reason_len = SSMB__MIN(p->close_reason.len, sizeof c->peer_reason);
        memcpy(c->peer_reason, p->close_reason.ptr, c->peer_reason_len);
        /* Echo the code back (§5.5.1); none for 1005, which is never sent. */
        if (p->close_code == SSMB_WS_CLOSE_NO_STATUS) ssmb__conn_begin_close(c, 0, NULL, 0);
        else ssmb__conn_begin_close(c, p->close_code, NULL, 0);
    }
    ssmb__conn_pump(c);
}

SSMB_APIDEF ssmb_result ssmb_conn_recv_message(ssmb_conn *c, ssmb_ws_piece *piece) {
    if (!c || !piece) return SSMB_ERR_INVALID_ARG;
    ssmb__conn_ack_piece(c);
    for (;;) {
        size_t len = 0, used = 0;
        uint8_t *in;
        ssmb_result r;
        if (c->state == SSMB_CONN_CLOSED) return SSMB_CLOSED;
        if (c->state != SSMB_CONN_OPEN && c->state != SSMB_CONN_CLOSING) return SSMB_AGAIN;
        in = ssmb__conn_app_in(c, &len);
        if (!in) {
            ssmb__conn_pump(c);
            return c->state == SSMB_CONN_CLOSED ? SSMB_CLOSED : SSMB_AGAIN;
        }
        r = ssmb_ws_read(&c->reader, in, len, &used, piece);
        if (r == SSMB_AGAIN || r == SSMB_CLOSED) {
            ssmb__conn_app_in_ack(c, r == SSMB_CLOSED ? len : used); /* nothing counts after a close */
            continue;
        }
        if (r < 0) {
            ssmb__conn_app_in_ack(c, len);
            ssmb__conn_fail_ws(c, r, c->reader.close_code);
            ssmb__conn_pump(c);
            return r;
        }
        if (piece->opcode == SSMB_WS_TEXT || piece->opcode == SSMB_WS_BINARY) {
            c->piece_ack = used; /* the piece points into the input: ack it on the next call */
            return SSMB_OK;
        }
        ssmb__conn_app_in_ack(c, used); /* control payloads are held by the reader */
        ssmb__conn_on_control(c, piece);
    }
}

/* ---- output ---- */

SSMB_APIDEF const uint8_t *ssmb_conn_send_buf(ssmb_conn *c, size_t *len) {
    if (!c || !len) return NULL;
    *len = 0;
    return ssmb__conn_net_out(c, len);
}

SSMB_APIDEF void ssmb_conn_send_ack(ssmb_conn *c, size_t n) {
    size_t len = 0;
    if (!c || n == 0 || !ssmb__conn_net_out(c, &len) || n > len) return;
    if (c->tls_on) ssmb__tls_net_out_ack(c->tls, n);
    else c->out_rd += n;
    if (!c->tls_on && c->out_rd == c->out_wr) c->out_rd = c->out_wr = 0;
    if (c->state != SSMB_CONN_CLOSED) ssmb__conn_pump(c);
}

SSMB_APIDEF size_t ssmb_conn_send_space(ssmb_conn *c) {
    size_t cap = 0;
    if (!c || c->state != SSMB_CONN_OPEN) return 0;
    ssmb__conn_pump(c);
    if (c->state != SSMB_CONN_OPEN || c->pong.pending || c->ping.pending) return 0;
    if (!ssmb__conn_app_out(c, &cap) || cap <= ssmb__conn_frame_overhead(cap)) return 0;
    return cap - ssmb__conn_frame_overhead(cap);
}

SSMB_APIDEF ssmb_result ssmb_conn_send_message(ssmb_conn *c, uint32_t opcode, const void *data, size_t len,
                                               int final, size_t *accepted) {
    size_t taken = 0;
    ssmb_result r;
    if (accepted) *accepted = 0;
    if (!c || (!data && len) || (opcode != SSMB_WS_TEXT && opcode != SSMB_WS_BINARY)) return SSMB_ERR_INVALID_ARG;
    if (c->message_open && opcode != c->message_opcode) return SSMB_ERR_INVALID_ARG;
    if (c->state == SSMB_CONN_CLOSING || c->state == SSMB_CONN_CLOSED) return SSMB_CLOSED;
    if (c->state != SSMB_CONN_OPEN) return SSMB_ERR_INVALID_STATE;
    ssmb__conn_pump(c);
    if (c->pong.pending || c->ping.pending) return SSMB_AGAIN;
    r = ssmb__conn_write_frame(c, c->message_open ? (uint32_t)SSMB_WS_CONTINUATION : opcode, final,
                               (const uint8_t *)data, len, &taken);
    if (r != SSMB_OK) return r;
    c->message_open = !(final && taken == len);
    c->message_opcode = opcode;
    if (accepted) *accepted = taken;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_conn_close(ssmb_conn *c, uint32_t code, const char *reason, uint64_t now_ms) {
    uint8_t probe[SSMB_WS_MAX_CONTROL_PAYLOAD];
    size_t n, reason_len = reason ? strlen(reason) : 0;
    if (!c) return SSMB_ERR_INVALID_ARG;
    if (ssmb_ws_close_payload_build(code, reason, reason_len, probe, &n) != SSMB_OK) return SSMB_ERR_INVALID_ARG;
    c->now = now_ms;
    if (c->state == SSMB_CONN_CLOSED || c->state == SSMB_CONN_CLOSING) return SSMB_OK;
    if (c->state != SSMB_CONN_OPEN) {
        ssmb__conn_finish(c, SSMB_CLOSED, 0);
        return SSMB_OK;
    }
    ssmb__conn_begin_close(c, code, reason, reason_len);
    ssmb__conn_pump(c);
    return SSMB_OK;
}

/* ---- timers and queries ---- */

SSMB_APIDEF ssmb_result ssmb_conn_tick(ssmb_conn *c, uint64_t now_ms) {
    if (!c) return SSMB_ERR_INVALID_ARG;
    c->now = now_ms;
    if (c->state == SSMB_CONN_HANDSHAKE && now_ms >= c->handshake_deadline) {
        ssmb__conn_finish(c, SSMB_ERR_TIMEOUT, 0);
    } else if (c->state == SSMB_CONN_OPEN && now_ms - c->last_recv >= c->idle_timeout_ms) {
        SSMB__LOG(c, SSMB_LOG_WARN, SSMB_LOGITEM_TIMEOUT, "no data from the peer within idle_timeout_ms");
        ssmb__conn_finish(c, SSMB_ERR_TIMEOUT, SSMB_WS_CLOSE_ABNORMAL);
    } else if (c->state == SSMB_CONN_OPEN && now_ms - c->last_send >= c->ping_interval_ms && !c->ping.pending) {
        /* PROTOCOL.md §4.3: the reference pings with "keepalive". */
        memcpy(c->ping.payload, "keepalive", 9);
        c->ping.len = 9;
        c->ping.pending = 1;
        c->last_send = now_ms;
    } else if (c->state == SSMB_CONN_CLOSING && now_ms >= c->close_deadline) {
        ssmb__conn_finish(c, c->close_received ? SSMB_CLOSED : SSMB_ERR_TIMEOUT, (int32_t)c->peer_close_code);
    }
    if (c->state != SSMB_CONN_CLOSED && c->state != SSMB_CONN_IDLE) ssmb__conn_pump(c);
    return c->error < 0 ? c->error : SSMB_OK;
}

SSMB_APIDEF uint64_t ssmb_conn_next_deadline(const ssmb_conn *c) {
    uint64_t idle, ping;
    if (!c) return SSMB_NO_DEADLINE;
    switch (c->state) {
    case SSMB_CONN_HANDSHAKE: return c->handshake_deadline;
    case SSMB_CONN_CLOSING: return c->close_deadline;
    case SSMB_CONN_OPEN:
        idle = c->last_recv + c->idle_timeout_ms;
        ping = c->last_send + c->ping_interval_ms;
        return SSMB__MIN(idle, ping);
    default: return SSMB_NO_DEADLINE;
    }
}

SSMB_APIDEF unsigned ssmb_conn_wants(ssmb_conn *c) {
    unsigned w = 0;
    size_t n = 0;
    if (!c) return SSMB_WANT_CLOSED;
    if (ssmb__conn_net_out(c, &n) && n) w |= SSMB_WANT_WRITE;
    if (c->state == SSMB_CONN_CLOSED) return w ? w : (unsigned)SSMB_WANT_CLOSED;
    if (c->state != SSMB_CONN_IDLE && c->piece_ack == 0) {
        size_t cap = 0;
        if (ssmb_conn_recv_buf(c, &cap) && cap) w |= SSMB_WANT_READ;
    }
    if (ssmb_conn_next_deadline(c) != SSMB_NO_DEADLINE) w |= SSMB_WANT_TIMER;
    return w;
}

SSMB_APIDEF ssmb_conn_state ssmb_conn_get_state(const ssmb_conn *c) { return c ? c->state : SSMB_CONN_CLOSED; }

SSMB_APIDEF ssmb_result ssmb_conn_last_error(const ssmb_conn *c, int32_t *detail) {
    if (detail) *detail = c ? c->detail : 0;
    return c ? c->error : SSMB_ERR_INVALID_ARG;
}

SSMB_APIDEF uint32_t ssmb_conn_peer_close(const ssmb_conn *c, ssmb_str *reason) {
    if (reason) {
        reason->ptr = c ? c->peer_reason : "";
        reason->len = c ? c->peer_reason_len : 0;
    }
    return c ? c->peer_close_code : (uint32_t)SSMB_WS_CLOSE_NO_STATUS;
}

// >>creds
/* The credential chain (see the declarations for the order). Everything here
   is sans-I/O except reading the two shared files and token files, which
   are small and bounded; the environment comes only through getenv_fn. The
   one allocation is the block the files are read into, wiped and freed
   before ssmb_creds_resolve returns. */
#include <stdlib.h>

#define SSMB__CREDS_JSON_TOKENS 128
#define SSMB__CREDS_XML_DEPTH 16
#define SSMB__CREDS_DEFAULT_SESSION "ssmbridge-session"

/* ---- values ---- */

SSMB_APIDEF ssmb_aws_credentials ssmb_creds_view(const ssmb_creds *c) {
    ssmb_aws_credentials v;
    memset(&v, 0, sizeof v);
    if (!c) return v;
    v.access_key_id = ssmb_str_c(c->access_key_id);
    v.secret_access_key = ssmb_str_c(c->secret_access_key);
    v.session_token = ssmb_str_c(c->session_token);
    return v;
}

SSMB_APIDEF void ssmb_creds_wipe(ssmb_creds *c) {
    if (c) ssmb__wipe(c, sizeof *c);
}

SSMB_APIDEF int ssmb_creds_needs_refresh(const ssmb_creds *c, int64_t now_utc) {
    int64_t before;
    if (!c || !c->access_key_id[0] || !c->secret_access_key[0]) return 1;
    if (!c->has_expiration) return 0;
    before = c->refresh_before_s ? (int64_t)c->refresh_before_s : (int64_t)SSMB_CREDS_DEFAULT_REFRESH_S;
    return now_utc >= c->expiration - before;
}

/* "YYYY-MM-DDTHH:MM:SS", optional ".fraction", then "Z" or an offset. The
   fraction is dropped (expiry is kept to the second, rounded down). */
SSMB_APIDEF ssmb_result ssmb_creds_time_parse(const char *text, size_t len, int64_t *unix_seconds) {
    char basic[21];
    size_t i = 19;
    int64_t t, offset = 0;
    if (!text || !unix_seconds) return SSMB_ERR_INVALID_ARG;
    if (len < 20 || !ssmb__match_pattern(text, 19, "dddd-dd-ddTdd:dd:dd")) return SSMB_ERR_MALFORMED;
    if (text[i] == '.') {
        size_t digits = 0;
        for (i++; i < len && text[i] >= '0' && text[i] <= '9'; i++) digits++;
        if (digits == 0 || digits > 12) return SSMB_ERR_MALFORMED;
    }
    if (i + 1 == len && (text[i] == 'Z' || text[i] == 'z')) {
        offset = 0;
    } else if (i < len && (text[i] == '+' || text[i] == '-')) {
        const char *o = text + i + 1;
        size_t n = len - i - 1;
        int64_t h, m;
        if (ssmb__match_pattern(o, n, "dd:dd") || ssmb__match_pattern(o, n, "dddd")) {
            h = ssmb__read_digits(o, 2);
            m = ssmb__read_digits(o + (n == 5 ? 3 : 2), 2);
        } else if (ssmb__match_pattern(o, n, "dd")) {
            h = ssmb__read_digits(o, 2);
            m = 0;
        } else {
            return SSMB_ERR_MALFORMED;
        }
        if (h > 23 || m > 59) return SSMB_ERR_MALFORMED;
        offset = (h * 60 + m) * 60 * (text[i] == '-' ? -1 : 1);
    } else {
        return SSMB_ERR_MALFORMED;
    }
    memcpy(basic, text, 19);
    basic[19] = 'Z';
    basic[20] = '\0';
    if (ssmb_amz_date_parse(basic, 20, &t) != SSMB_OK) return SSMB_ERR_MALFORMED;
    *unix_seconds = t - offset; /* local time minus its offset is UTC */
    return SSMB_OK;
}

/* Copies v with a NUL; 0 when it does not fit. */
static int ssmb__creds_copy(char *dst, size_t cap, ssmb_str v) {
    if (v.len >= cap) return 0;
    if (v.len) memcpy(dst, v.ptr, v.len);
    dst[v.len] = '\0';
    return 1;
}

static ssmb_str ssmb__creds_sv(const char *p, size_t n) {
    ssmb_str v;
    v.ptr = p;
    v.len = n;
    return v;
}

static int ssmb__creds_ieq(ssmb_str a, const char *b) {
    size_t i, n = strlen(b);
    if (a.len != n) return 0;
    for (i = 0; i < n; i++)
        if (ssmb__ascii_lower((unsigned char)a.ptr[i]) != ssmb__ascii_lower((unsigned char)b[i])) return 0;
    return 1;
}

static int ssmb__creds_eq(ssmb_str a, ssmb_str b) {
    return a.len == b.len && (a.len == 0 || !memcmp(a.ptr, b.ptr, a.len));
}

/* 1 when the text is free of control characters (header values, file names). */
static int ssmb__creds_printable(ssmb_str v) {
    size_t i;
    for (i = 0; i < v.len; i++)
        if ((unsigned char)v.ptr[i] < 0x20 || v.ptr[i] == 0x7f) return 0;
    return 1;
}

/* ---- JSON bodies: credential_process output, ECS and IMDS ---- */

/* The string under key into dst (unescaped); SSMB_ERR_JSON when absent or
   not a string unless optional (then dst is ""). */
static ssmb_result ssmb__creds_json_str(const ssmb_json *doc, const char *key, int optional, char *dst, size_t cap,
                                        int *present) {
    int32_t tok = ssmb_json_find(doc, 0, key);
    ssmb_str raw;
    size_t n = 0;
    ssmb_result r;
    dst[0] = '\0';
    if (present) *present = 0;
    if (tok < 0 || (optional && ssmb_json_is_null(doc, tok))) return optional ? SSMB_OK : SSMB_ERR_JSON;
    if (ssmb_json_get_str(doc, tok, &raw) != SSMB_OK) return SSMB_ERR_JSON;
    r = ssmb_json_unescape(raw, dst, cap, &n);
    if (r == SSMB_ERR_BUFFER_TOO_SMALL || n >= cap) {
        ssmb__wipe(dst, cap);
        return SSMB_ERR_LIMIT;
    }
    if (r != SSMB_OK) return SSMB_ERR_JSON;
    if (present) *present = 1;
    return SSMB_OK;
}

/* Shared by both body forms: token_key names the session token's key. */
static ssmb_result ssmb__creds_json_parse(const char *text, size_t len, ssmb_creds *out, int process) {
    ssmb_json_token toks[SSMB__CREDS_JSON_TOKENS];
    ssmb_json doc;
    char date[64];
    int has_date = 0;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    ssmb__wipe(out, sizeof *out);
    if (!text) return SSMB_ERR_INVALID_ARG;
    r = ssmb_json_parse(&doc, text, len, toks, SSMB__COUNT_OF(toks));
    if (r != SSMB_OK) return r;
    if (ssmb_json_kind(&doc, 0) != SSMB_JSON_OBJECT) return SSMB_ERR_JSON;
    if (process) {
        int64_t version = 0;
        int32_t v = ssmb_json_find(&doc, 0, "Version");
        if (v < 0 || ssmb_json_get_i64(&doc, v, &version) != SSMB_OK) return SSMB_ERR_JSON;
        if (version != 1) return SSMB_ERR_UNSUPPORTED;
    } else {
        char code[64];
        int has_code = 0;
        r = ssmb__creds_json_str(&doc, "Code", 1, code, sizeof code, &has_code);
        if (r == SSMB_ERR_LIMIT || (r == SSMB_OK && has_code && strcmp(code, "Success") != 0)) return SSMB_ERR_AWS_API;
        if (r != SSMB_OK) return r;
    }
    r = ssmb__creds_json_str(&doc, "AccessKeyId", 0, out->access_key_id, sizeof out->access_key_id, NULL);
    if (r == SSMB_OK)
        r = ssmb__creds_json_str(&doc, "SecretAccessKey", 0, out->secret_access_key, sizeof out->secret_access_key,
                                 NULL);
    if (r == SSMB_OK)
        r = ssmb__creds_json_str(&doc, process ? "SessionToken" : "Token", 1, out->session_token,
                                 sizeof out->session_token, NULL);
    if (r == SSMB_OK) {
        r = ssmb__creds_json_str(&doc, "Expiration", 1, date, sizeof date, &has_date);
        if (r == SSMB_ERR_LIMIT) r = SSMB_ERR_MALFORMED; /* no date is that long */
    }
    if (r == SSMB_OK && (!out->access_key_id[0] || !out->secret_access_key[0])) r = SSMB_ERR_JSON;
    if (r == SSMB_OK && has_date) {
        if (ssmb_creds_time_parse(date, strlen(date), &out->expiration) != SSMB_OK) r = SSMB_ERR_MALFORMED;
        else out->has_expiration = 1;
    }
    if (r != SSMB_OK) ssmb__wipe(out, sizeof *out);
    return r;
}

SSMB_APIDEF ssmb_result ssmb_creds_process_parse(const char *text, size_t len, ssmb_creds *out) {
    return ssmb__creds_json_parse(text, len, out, 1);
}

SSMB_APIDEF ssmb_result ssmb_creds_http_parse(const char *text, size_t len, ssmb_creds *out) {
    return ssmb__creds_json_parse(text, len, out, 0);
}

SSMB_APIDEF ssmb_result ssmb_creds_http_body(const char *in, size_t len, uint32_t *status, ssmb_str *body) {
    ssmb_http_header headers[32];
    ssmb_http_response resp;
    uint64_t cl = 0;
    int present = 0;
    ssmb_result r;
    if (!in || !status || !body) return SSMB_ERR_INVALID_ARG;
    *status = 0;
    body->ptr = NULL;
    body->len = 0;
    r = ssmb_http_response_parse(in, len, headers, SSMB__COUNT_OF(headers), 0, &resp);
    if (r == SSMB_AGAIN) return SSMB_AGAIN;
    if (r != SSMB_OK) return SSMB_ERR_HTTP;
    *status = resp.status;
    if (resp.status != 200) return SSMB_ERR_HTTP;
    if (ssmb_http_header_find(&resp, "Transfer-Encoding", NULL)) return SSMB_ERR_HTTP; /* not used by these services */
    if (ssmb_http_content_length(&resp, &present, &cl) != SSMB_OK) return SSMB_ERR_HTTP;
    if (present && cl > (uint64_t)(len - resp.head_len)) return SSMB_AGAIN;
    body->ptr = in + resp.head_len;
    body->len = present ? (size_t)cl : len - resp.head_len;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_creds_read_token_file(const char *path, char *out, size_t cap, size_t *out_len) {
    FILE *f;
    size_t n;
    ssmb_result r;
    if (!path || !out || cap == 0) return SSMB_ERR_INVALID_ARG;
    out[0] = '\0';
    if (out_len) *out_len = 0;
    f = fopen(path, "rb");
    if (!f) return SSMB_ERR_IO;
    n = fread(out, 1, cap - 1, f);
    r = ferror(f) ? SSMB_ERR_IO : (n == cap - 1 && fgetc(f) != EOF) ? SSMB_ERR_LIMIT : SSMB_OK;
    fclose(f);
    if (r != SSMB_OK) {
        ssmb__wipe(out, cap);
        return r;
    }
    while (n && ((unsigned char)out[n - 1] <= ' ')) n--;
    out[n] = '\0';
    if (out_len) *out_len = n;
    return SSMB_OK;
}

/* ---- HTTP requests: ECS, IMDSv2 ---- */

/* "host" or "[v6]" and ":port" when not the scheme's default, for Host. */
static ssmb_result ssmb__creds_host_header(const char *host, uint16_t port, int https, char *out, size_t cap) {
    ssmb__sink s;
    char digits[8];
    int v6 = strchr(host, ':') != NULL, i = 7;
    ssmb__sink_init(&s, out, cap);
    if (v6) ssmb__put_c(&s, '[');
    ssmb__put_z(&s, host);
    if (v6) ssmb__put_c(&s, ']');
    if (port != (https ? 443 : 80)) {
        unsigned v = port;
        digits[i] = '\0';
        do digits[--i] = (char)('0' + v % 10); while ((v /= 10) != 0);
        ssmb__put_c(&s, ':');
        ssmb__put_z(&s, digits + i);
    }
    return ssmb__sink_finish(&s, NULL) == SSMB_OK ? SSMB_OK : SSMB_ERR_LIMIT;
}

SSMB_APIDEF ssmb_result ssmb_creds_ecs_request(const ssmb_creds_ecs *e, ssmb_str auth_token, char *out, size_t cap,
                                               size_t *out_len) {
    char host[SSMB_CREDS_NAME_MAX * 2 + 16];
    ssmb_http_header h[2];
    ssmb_http_request req;
    if (!e || !e->host[0] || !ssmb__str_valid(auth_token)) return SSMB_ERR_INVALID_ARG;
    if (ssmb__creds_host_header(e->host, e->port, (int)e->https, host, sizeof host) != SSMB_OK)
        return SSMB_ERR_INVALID_ARG;
    memset(&req, 0, sizeof req);
    req.method = ssmb_str_c("GET");
    req.target = ssmb_str_c(e->target[0] ? e->target : "/");
    req.host = ssmb_str_c(host);
    h[0].name = ssmb_str_c("Accept");
    h[0].value = ssmb_str_c("application/json");
    h[1].name = ssmb_str_c("Authorization");
    h[1].value = auth_token;
    req.headers = h;
    req.header_count = auth_token.len ? 2 : 1;
    return ssmb_http_request_write(&req, out, cap, out_len);
}

static ssmb_result ssmb__creds_imds_write(const ssmb_creds_imds *m, const char *method, ssmb_str target,
                                          const ssmb_http_header *h, char *out, size_t cap, size_t *out_len) {
    char host[SSMB_CREDS_NAME_MAX * 2 + 16];
    ssmb_http_request req;
    if (!m || !m->host[0]) return SSMB_ERR_INVALID_ARG;
    if (ssmb__creds_host_header(m->host, m->port ? m->port : 80, 0, host, sizeof host) != SSMB_OK)
        return SSMB_ERR_INVALID_ARG;
    memset(&req, 0, sizeof req);
    req.method = ssmb_str_c(method);
    req.target = target;
    req.host = ssmb_str_c(host);
    req.headers = h;
    req.header_count = 1;
    return ssmb_http_request_write(&req, out, cap, out_len);
}

SSMB_APIDEF ssmb_result ssmb_creds_imds_token_request(const ssmb_creds_imds *m, uint32_t ttl_s, char *out, size_t cap,
                                                      size_t *out_len) {
    char digits[12];
    int i = 11;
    ssmb_http_header h;
    uint32_t v = ttl_s ? ttl_s : 21600u;
    digits[i] = '\0';
    do digits[--i] = (char)('0' + v % 10); while ((v /= 10) != 0);
    h.name = ssmb_str_c("X-aws-ec2-metadata-token-ttl-seconds");
    h.value = ssmb_str_c(digits + i);
    return ssmb__creds_imds_write(m, "PUT", ssmb_str_c("/latest/api/token"), &h, out, cap, out_len);
}

/* IAM role names: letters, digits and "+=,.@_-". */
static int ssmb__creds_role_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("+=,.@_-", c) != NULL);
}

SSMB_APIDEF ssmb_result ssmb_creds_imds_creds_request(const ssmb_creds_imds *m, ssmb_str token, ssmb_str role,
                                                      char *out, size_t cap, size_t *out_len) {
    static const char base[] = "/latest/meta-data/iam/security-credentials/";
    char target[sizeof base + SSMB_CREDS_NAME_MAX];
    ssmb_http_header h;
    size_t i;
    if (!ssmb__str_valid(token) || !ssmb__str_valid(role) || token.len == 0) return SSMB_ERR_INVALID_ARG;
    if (role.len >= SSMB_CREDS_NAME_MAX) return SSMB_ERR_LIMIT;
    for (i = 0; i < role.len; i++)
        if (!ssmb__creds_role_char(role.ptr[i])) return SSMB_ERR_INVALID_ARG;
    memcpy(target, base, sizeof base - 1);
    if (role.len) memcpy(target + sizeof base - 1, role.ptr, role.len);
    h.name = ssmb_str_c("X-aws-ec2-metadata-token");
    h.value = token;
    return ssmb__creds_imds_write(m, "GET", ssmb__creds_sv(target, sizeof base - 1 + role.len), &h, out, cap,
                                  out_len);
}

SSMB_APIDEF ssmb_result ssmb_creds_imds_role_parse(const char *text, size_t len, ssmb_str *role) {
    size_t i = 0, n;
    if (!text || !role) return SSMB_ERR_INVALID_ARG;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) i++;
    for (n = 0; i + n < len && text[i + n] != '\r' && text[i + n] != '\n'; n++) {
        if (!ssmb__creds_role_char(text[i + n])) return SSMB_ERR_MALFORMED;
    }
    if (n == 0) return SSMB_ERR_CREDENTIALS;
    if (n >= SSMB_CREDS_NAME_MAX) return SSMB_ERR_LIMIT;
    role->ptr = text + i;
    role->len = n;
    return SSMB_OK;
}

/* ---- STS: AssumeRole, AssumeRoleWithWebIdentity (query protocol) ---- */

static void ssmb__creds_form(ssmb__sink *s, const char *name, const char *value) {
    ssmb__put_c(s, '&');
    ssmb__put_z(s, name);
    ssmb__put_c(s, '=');
    ssmb__put_uri(s, value, strlen(value), 0, 0);
}

static void ssmb__creds_form_u32(ssmb__sink *s, const char *name, uint32_t v) {
    char digits[12];
    int i = 11;
    digits[i] = '\0';
    do digits[--i] = (char)('0' + v % 10); while ((v /= 10) != 0);
    ssmb__creds_form(s, name, digits + i);
}

/* The form body; with web identity set, AssumeRoleWithWebIdentity. */
static void ssmb__creds_sts_body(ssmb__sink *s, const ssmb_creds_role *role, const ssmb_creds_web_identity *w,
                                 ssmb_str token) {
    ssmb__put_z(s, w ? "Action=AssumeRoleWithWebIdentity" : "Action=AssumeRole");
    ssmb__creds_form(s, "Version", "2011-06-15");
    if (w) {
        ssmb__creds_form(s, "RoleArn", w->role_arn);
        ssmb__creds_form(s, "RoleSessionName", w->session_name[0] ? w->session_name : SSMB__CREDS_DEFAULT_SESSION);
        ssmb__put_z(s, "&WebIdentityToken=");
        ssmb__put_uri(s, token.ptr, token.len, 0, 0);
        ssmb__creds_form_u32(s, "DurationSeconds", w->duration_s ? w->duration_s : SSMB_CREDS_DEFAULT_DURATION_S);
    } else {
        ssmb__creds_form(s, "RoleArn", role->role_arn);
        ssmb__creds_form(s, "RoleSessionName",
                         role->session_name[0] ? role->session_name : SSMB__CREDS_DEFAULT_SESSION);
        if (role->external_id[0]) ssmb__creds_form(s, "ExternalId", role->external_id);
        ssmb__creds_form_u32(s, "DurationSeconds",
                             role->duration_s ? role->duration_s : SSMB_CREDS_DEFAULT_DURATION_S);
    }
}

/* "sts.<region>.amazonaws.com", or the global name; SSMB_ERR_INVALID_ARG for
   a region with other characters than letters, digits and '-'. */
static ssmb_result ssmb__creds_sts_host(const char *region, char *host, size_t cap) {
    ssmb__sink s;
    size_t i, n = region ? strlen(region) : 0;
    for (i = 0; i < n; i++) {
        char c = region[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return SSMB_ERR_INVALID_ARG;
    }
    ssmb__sink_init(&s, host, cap);
    ssmb__put_z(&s, "sts.");
    if (n) {
        ssmb__put_z(&s, region);
        ssmb__put_c(&s, '.');
    }
    ssmb__put_z(&s, "amazonaws.com");
    return ssmb__sink_finish(&s, NULL) == SSMB_OK ? SSMB_OK : SSMB_ERR_INVALID_ARG;
}

/* Head (with Content-Length) then the body streamed after it; the body is
   produced twice (measured, then written) so nothing is gathered first. */
static ssmb_result ssmb__creds_sts_write(ssmb_http_request *req, const ssmb_creds_role *role,
                                         const ssmb_creds_web_identity *w, ssmb_str token, size_t body_len, char *out,
                                         size_t cap, size_t *out_len) {
    size_t head = 0, total;
    ssmb__sink s;
    ssmb_result r;
    req->has_body = 1;
    req->body = NULL;
    req->body_len = body_len;
    r = ssmb_http_request_write(req, out, cap, &head);
    if (r != SSMB_OK && r != SSMB_ERR_BUFFER_TOO_SMALL) return r;
    if (ssmb_size_add(head, body_len, &total) != SSMB_OK) return SSMB_ERR_OVERFLOW;
    if (out_len) *out_len = total;
    if (!out || total >= cap) return SSMB_ERR_BUFFER_TOO_SMALL;
    ssmb__sink_init(&s, out + head, cap - head);
    ssmb__creds_sts_body(&s, role, w, token);
    return ssmb__sink_finish(&s, NULL);
}

SSMB_APIDEF ssmb_result ssmb_creds_sts_assume_role_request(const ssmb_creds_role *role, const ssmb_creds *base,
                                                           const char *region, int64_t now_utc, char *out,
                                                           size_t cap, size_t *out_len) {
    char host[SSMB_CREDS_NAME_MAX + 32], authz[512], hash_hex[65];
    uint8_t hash[32];
    ssmb_sha256_ctx ctx;
    ssmb__sink s;
    ssmb_http_header sign_h[2], h[5];
    ssmb_sigv4_request sreq;
    ssmb_sigv4_params p;
    ssmb_sigv4_output so;
    ssmb_http_request req;
    size_t n = 0;
    ssmb_result r;
    if (!role || !base || !role->role_arn[0] || !base->access_key_id[0] || !base->secret_access_key[0])
        return SSMB_ERR_INVALID_ARG;
    r = ssmb__creds_sts_host(region, host, sizeof host);
    if (r != SSMB_OK) return r;
    ssmb_sha256_init(&ctx);
    ssmb__sink_init(&s, NULL, 0);
    s.hash = &ctx;
    ssmb__creds_sts_body(&s, role, NULL, ssmb_str_c(NULL));
    ssmb_sha256_final(&ctx, hash);
    ssmb_hex_encode(hash, 32, hash_hex, sizeof hash_hex);
    sign_h[0].name = ssmb_str_c("Host");
    sign_h[0].value = ssmb_str_c(host);
    sign_h[1].name = ssmb_str_c("Content-Type");
    sign_h[1].value = ssmb_str_c("application/x-www-form-urlencoded; charset=utf-8");
    memset(&sreq, 0, sizeof sreq);
    sreq.method = ssmb_str_c("POST");
    sreq.path = ssmb_str_c("/");
    sreq.headers = sign_h;
    sreq.header_count = 2;
    sreq.payload_hash = ssmb_str_c(hash_hex);
    memset(&p, 0, sizeof p);
    p.creds = ssmb_creds_view(base);
    p.region = ssmb_str_c(region && region[0] ? region : "us-east-1");
    p.service = ssmb_str_c("sts");
    p.time = now_utc;
    r = ssmb_sigv4_sign(&sreq, &p, authz, sizeof authz, &n, &so);
    if (r != SSMB_OK) return r == SSMB_ERR_BUFFER_TOO_SMALL ? SSMB_ERR_LIMIT : r;
    h[0] = sign_h[1];
    h[1].name = ssmb_str_c("X-Amz-Date");
    h[1].value = ssmb_str_c(so.amz_date);
    h[2].name = ssmb_str_c("Authorization");
    h[2].value = ssmb_str_c(authz);
    h[3].name = ssmb_str_c("X-Amz-Security-Token");
    h[3].value = ssmb_str_c(base->session_token);
    memset(&req, 0, sizeof req);
    req.method = ssmb_str_c("POST");
    req.target = ssmb_str_c("/");
    req.host = ssmb_str_c(host);
    req.headers = h;
    req.header_count = base->session_token[0] ? 4 : 3;
    r = ssmb__creds_sts_write(&req, role, NULL, ssmb_str_c(NULL), s.len, out, cap, out_len);
    ssmb__wipe(authz, sizeof authz);
    return r;
}

SSMB_APIDEF ssmb_result ssmb_creds_sts_web_identity_request(const ssmb_creds_web_identity *w, ssmb_str token,
                                                            const char *region, char *out, size_t cap,
                                                            size_t *out_len) {
    char host[SSMB_CREDS_NAME_MAX + 32];
    ssmb__sink s;
    ssmb_http_header h[1];
    ssmb_http_request req;
    ssmb_result r;
    if (!w || !w->role_arn[0] || !ssmb__str_valid(token) || token.len == 0) return SSMB_ERR_INVALID_ARG;
    r = ssmb__creds_sts_host(region, host, sizeof host);
    if (r != SSMB_OK) return r;
    ssmb__sink_init(&s, NULL, 0);
    ssmb__creds_sts_body(&s, NULL, w, token);
    h[0].name = ssmb_str_c("Content-Type");
    h[0].value = ssmb_str_c("application/x-www-form-urlencoded; charset=utf-8");
    memset(&req, 0, sizeof req);
    req.method = ssmb_str_c("POST");
    req.target = ssmb_str_c("/");
    req.host = ssmb_str_c(host);
    req.headers = h;
    req.header_count = 1;
    return ssmb__creds_sts_write(&req, NULL, w, token, s.len, out, cap, out_len);
}

/* ---- STS responses: a bounded tag matcher ---- */

typedef struct ssmb__creds_xml {
    ssmb_str stack[SSMB__CREDS_XML_DEPTH];
    uint32_t depth;
    int32_t creds_depth;        /* depth of the open <Credentials>, -1 when none is open */
    int creds_done;             /* the first <Credentials> has closed */
    int in_error;               /* root is <ErrorResponse> */
    const char *value_start;    /* content of the open field element */
    int field;                  /* which field is open: 1..4 key, secret, token, expiration; 5 error code */
    int got[6];
} ssmb__creds_xml;

/* "#65" or "#x41" (the text between '&' and ';'): a Unicode scalar value. */
static int ssmb__creds_xml_charref(ssmb_str ref, uint32_t *cp) {
    size_t k = 1;
    int hex;
    if (ref.len < 2 || ref.len > 9 || ref.ptr[0] != '#') return 0;
    hex = ref.ptr[1] == 'x';
    if (hex) k++;
    if (k == ref.len) return 0;
    *cp = 0;
    for (; k < ref.len; k++) {
        int d = hex ? ssmb__hex_value(ref.ptr[k]) : (ref.ptr[k] >= '0' && ref.ptr[k] <= '9') ? ref.ptr[k] - '0' : -1;
        if (d < 0) return 0;
        *cp = *cp * (hex ? 16u : 10u) + (uint32_t)d;
    }
    return *cp != 0 && *cp <= 0x10ffff && !(*cp >= 0xd800 && *cp <= 0xdfff);
}

/* Decodes entity and character references of v into dst with a NUL; 0 on
   a bad reference or when it does not fit. */
static int ssmb__creds_xml_text(ssmb_str v, char *dst, size_t cap) {
    size_t i = 0, o = 0;
    while (i < v.len) {
        uint32_t cp = (unsigned char)v.ptr[i];
        int ref = v.ptr[i] == '&';
        if (ref) {
            const char *semi = (const char *)memchr(v.ptr + i, ';', v.len - i);
            ssmb_str name;
            if (!semi) return 0;
            name = ssmb__creds_sv(v.ptr + i + 1, (size_t)(semi - v.ptr) - i - 1);
            if (ssmb_str_eq(name, "lt")) cp = '<';
            else if (ssmb_str_eq(name, "gt")) cp = '>';
            else if (ssmb_str_eq(name, "amp")) cp = '&';
            else if (ssmb_str_eq(name, "quot")) cp = '"';
            else if (ssmb_str_eq(name, "apos")) cp = '\'';
            else if (!ssmb__creds_xml_charref(name, &cp)) return 0;
            i = (size_t)(semi - v.ptr) + 1;
        } else {
            i++;
        }
        if (o + 5 > cap) return 0;
        if (!ref || cp < 0x80) {
            dst[o++] = (char)cp; /* raw bytes of UTF-8 text are kept as they are */
        } else if (cp < 0x800) {
            dst[o++] = (char)(0xc0 | (cp >> 6));
            dst[o++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            dst[o++] = (char)(0xe0 | (cp >> 12));
            dst[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            dst[o++] = (char)(0x80 | (cp & 0x3f));
        } else {
            dst[o++] = (char)(0xf0 | (cp >> 18));
            dst[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            dst[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            dst[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    dst[o] = '\0';
    return 1;
}

static int ssmb__creds_xml_name_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':';
}

/* Finds needle in [p, end); NULL when absent. */
static const char *ssmb__creds_find(const char *p, const char *end, const char *needle) {
    size_t n = strlen(needle);
    for (; p + n <= end; p++)
        if (memcmp(p, needle, n) == 0) return p;
    return NULL;
}

/* Which field an element directly inside the open <Credentials> (or
   <Error>) is; 0 for others. */
static int ssmb__creds_xml_field(const ssmb__creds_xml *x, ssmb_str name) {
    if (x->creds_depth >= 0 && (int32_t)x->depth == x->creds_depth + 1) {
        if (ssmb_str_eq(name, "AccessKeyId")) return 1;
        if (ssmb_str_eq(name, "SecretAccessKey")) return 2;
        if (ssmb_str_eq(name, "SessionToken")) return 3;
        if (ssmb_str_eq(name, "Expiration")) return 4;
    }
    if (x->in_error && x->depth >= 2 && ssmb_str_eq(x->stack[x->depth - 1], "Error") && ssmb_str_eq(name, "Code"))
        return 5;
    return 0;
}

/* One value element closed: copy its text where it belongs. */
static ssmb_result ssmb__creds_xml_value(ssmb__creds_xml *x, ssmb_str v, ssmb_creds *out, char *code, size_t code_cap) {
    char date[64];
    int ok = 1;
    v = ssmb__trim(v);
    switch (x->field) {
    case 1: ok = ssmb__creds_xml_text(v, out->access_key_id, sizeof out->access_key_id); break;
    case 2: ok = ssmb__creds_xml_text(v, out->secret_access_key, sizeof out->secret_access_key); break;
    case 3: ok = ssmb__creds_xml_text(v, out->session_token, sizeof out->session_token); break;
    case 4:
        ok = ssmb__creds_xml_text(v, date, sizeof date) &&
             ssmb_creds_time_parse(date, strlen(date), &out->expiration) == SSMB_OK;
        out->has_expiration = (uint32_t)ok;
        break;
    case 5:
        if (code && code_cap && !ssmb__creds_xml_text(v, code, code_cap)) code[0] = '\0';
        break;
    default: break;
    }
    if (!ok) return SSMB_ERR_MALFORMED;
    x->got[x->field] = 1;
    return SSMB_OK;
}

/* One tag at p (p[0] == '<'); *next is after it. */
static ssmb_result ssmb__creds_xml_tag(ssmb__creds_xml *x, const char *p, const char *end, const char **next,
                                       ssmb_creds *out, char *code, size_t code_cap) {
    const char *q, *name;
    int closing = 0, self_closing = 0, attrs = 0;
    ssmb_str n;
    if (x->field && end - p >= 2 && (p[1] == '?' || p[1] == '!')) return SSMB_ERR_MALFORMED; /* inside a value */
    if (end - p >= 2 && p[1] == '?') {
        q = ssmb__creds_find(p + 2, end, "?>");
        if (!q) return SSMB_ERR_TRUNCATED;
        *next = q + 2;
        return SSMB_OK;
    }
    if (end - p >= 4 && !memcmp(p, "<!--", 4)) {
        q = ssmb__creds_find(p + 4, end, "-->");
        if (!q) return SSMB_ERR_TRUNCATED;
        *next = q + 3;
        return SSMB_OK;
    }
    if (end - p >= 2 && p[1] == '!') return SSMB_ERR_MALFORMED; /* CDATA, DOCTYPE: not used by STS */
    q = p + 1;
    if (q < end && *q == '/') closing = 1, q++;
    name = q;
    while (q < end && ssmb__creds_xml_name_char(*q)) q++;
    if (q == end) return SSMB_ERR_TRUNCATED;
    n = ssmb__creds_sv(name, (size_t)(q - name));
    if (n.len == 0) return SSMB_ERR_MALFORMED;
    for (; q < end && *q != '>'; q++) { /* attributes, skipped (quoted values may hold '>') */
        if (*q == '"' || *q == '\'') {
            const char *close = (const char *)memchr(q + 1, *q, (size_t)(end - q - 1));
            if (!close) return SSMB_ERR_TRUNCATED;
            q = close;
            attrs = 1;
        } else if (*q == '/' && !closing) {
            self_closing = 1;
        } else if (*q == '<') {
            return SSMB_ERR_MALFORMED;
        } else if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n') {
            if (self_closing || closing) return SSMB_ERR_MALFORMED;
            attrs = 1;
        }
    }
    if (q == end) return SSMB_ERR_TRUNCATED;
    *next = q + 1;
    if (closing) {
        ssmb_result r = SSMB_OK;
        if (attrs || x->depth == 0 || !ssmb__creds_eq(x->stack[x->depth - 1], n)) return SSMB_ERR_MALFORMED;
        if (x->field) {
            r = ssmb__creds_xml_value(x, ssmb__creds_sv(x->value_start, (size_t)(p - x->value_start)), out, code,
                                      code_cap);
            x->field = 0;
        }
        x->depth--;
        if (x->creds_depth >= 0 && (int32_t)x->depth == x->creds_depth) {
            x->creds_depth = -1;
            x->creds_done = 1;
        }
        return r;
    }
    if (x->field) return SSMB_ERR_MALFORMED; /* an element inside a value */
    if (self_closing) return SSMB_OK;
    if (x->depth == SSMB__CREDS_XML_DEPTH) return SSMB_ERR_LIMIT;
    if (x->depth == 0 && ssmb_str_eq(n, "ErrorResponse")) x->in_error = 1;
    x->field = x->creds_done ? 0 : ssmb__creds_xml_field(x, n);
    if (x->field && attrs) return SSMB_ERR_MALFORMED;
    if (x->field) x->value_start = *next;
    if (!x->creds_done && x->creds_depth < 0 && ssmb_str_eq(n, "Credentials") && !x->in_error)
        x->creds_depth = (int32_t)x->depth;
    x->stack[x->depth++] = n;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_creds_sts_parse(const char *text, size_t len, ssmb_creds *out, char *error_code,
                                             size_t error_code_cap) {
    ssmb__creds_xml x;
    const char *p, *end;
    int seen_root = 0;
    ssmb_result r = SSMB_OK;
    if (!out) return SSMB_ERR_INVALID_ARG;
    ssmb__wipe(out, sizeof *out);
    if (error_code && error_code_cap) error_code[0] = '\0';
    if (!text) return SSMB_ERR_INVALID_ARG;
    memset(&x, 0, sizeof x);
    x.creds_depth = -1;
    p = text;
    end = text + len;
    while (p < end && r == SSMB_OK) {
        const char *lt = (const char *)memchr(p, '<', (size_t)(end - p));
        if (!lt) {
            for (; p < end; p++) /* only whitespace may follow the root */
                if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
                    r = x.depth ? SSMB_ERR_TRUNCATED : SSMB_ERR_MALFORMED;
            break;
        }
        if (x.depth == 0) { /* text outside the root must be whitespace */
            for (; p < lt; p++)
                if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') r = SSMB_ERR_MALFORMED;
            if (r != SSMB_OK) break;
            if (seen_root && lt + 1 < end && lt[1] != '?' && lt[1] != '!') {
                r = SSMB_ERR_MALFORMED; /* a second root */
                break;
            }
        }
        r = ssmb__creds_xml_tag(&x, lt, end, &p, out, error_code, error_code_cap);
        if (x.depth) seen_root = 1;
    }
    if (r == SSMB_OK && (x.depth || !seen_root)) r = SSMB_ERR_TRUNCATED;
    if (r == SSMB_OK && x.in_error) r = SSMB_ERR_AWS_API;
    if (r == SSMB_OK && !(x.got[1] && x.got[2] && x.got[3] && out->access_key_id[0] && out->secret_access_key[0]))
        r = SSMB_ERR_MALFORMED;
    if (r != SSMB_OK) ssmb__wipe(out, sizeof *out);
    return r;
}

/* ---- the shared files: an INI reader with the AWS rules ----
   Lines end in LF (a CR before it is dropped). Blank lines and lines whose
   first visible character is '#' or ';' are comments. "[name]" opens a
   section (a comment may follow the ']'); in the config file only
   "[default]" and "[profile name]" are profiles, other sections (sso-session,
   services) are read past. "key = value": key and value trimmed, a '#' or
   ';' after whitespace in the value starts a comment. A line that starts
   with a space or a tab continues the setting above it (nested
   sub-settings such as "s3 =" followed by indented lines): it is skipped,
   and a value is the text of its own line. Later settings win over earlier
   ones; the credentials file wins over the config file. */

typedef struct ssmb__creds_file {
    const char *path;       /* for errors; NULL when there is no file */
    const char *text;       /* NULL when the file is absent */
    size_t len;
    int config;             /* 1: the config file's section rules */
} ssmb__creds_file;

enum { SSMB__INI_SKIP = 0, SSMB__INI_SECTION = 1, SSMB__INI_SETTING = 2, SSMB__INI_NESTED = 3 };

typedef struct ssmb__ini_line {
    int kind;
    int profile;            /* SECTION: 1 when it names a profile (name is set) */
    ssmb_str name;          /* SECTION: the profile name; SETTING: the key */
    ssmb_str value;         /* SETTING */
} ssmb__ini_line;

static int ssmb__creds_blank(char c) { return c == ' ' || c == '\t'; }

/* Parses one line (without its LF); *reason set when malformed. */
static int ssmb__ini_parse_line(const ssmb__creds_file *f, ssmb_str raw, ssmb__ini_line *out, const char **reason) {
    ssmb_str t;
    size_t i;
    memset(out, 0, sizeof *out);
    if (raw.len && raw.ptr[raw.len - 1] == '\r') raw.len--;
    if (memchr(raw.ptr, '\0', raw.len)) return *reason = "NUL byte in the line", 0;
    t = ssmb__trim(raw);
    if (t.len == 0 || t.ptr[0] == '#' || t.ptr[0] == ';') return 1;
    if (ssmb__creds_blank(raw.ptr[0])) {
        out->kind = SSMB__INI_NESTED;
        return 1;
    }
    if (t.ptr[0] == '[') {
        const char *close = (const char *)memchr(t.ptr, ']', t.len);
        ssmb_str rest, name;
        if (!close) return *reason = "section header without ']'", 0;
        rest = ssmb__trim(ssmb__creds_sv(close + 1, t.len - (size_t)(close + 1 - t.ptr)));
        if (rest.len && rest.ptr[0] != '#' && rest.ptr[0] != ';') return *reason = "text after ']'", 0;
        name = ssmb__trim(ssmb__creds_sv(t.ptr + 1, (size_t)(close - t.ptr) - 1));
        if (name.len == 0) return *reason = "empty section name", 0;
        out->kind = SSMB__INI_SECTION;
        if (!f->config) {
            out->profile = 1;
            out->name = name;
        } else if (ssmb_str_eq(name, "default")) {
            out->profile = 1;
            out->name = name;
        } else if (name.len > 7 && !memcmp(name.ptr, "profile", 7) && ssmb__creds_blank(name.ptr[7])) {
            out->profile = 1;
            out->name = ssmb__trim(ssmb__creds_sv(name.ptr + 8, name.len - 8));
        }
        for (i = 0; out->profile && i < out->name.len; i++)
            if (ssmb__creds_blank(out->name.ptr[i])) out->profile = 0; /* not a valid profile name: read past */
        return 1;
    }
    {
        const char *eq = (const char *)memchr(t.ptr, '=', t.len);
        ssmb_str v;
        if (!eq) return *reason = "expected 'key = value'", 0;
        out->name = ssmb__trim(ssmb__creds_sv(t.ptr, (size_t)(eq - t.ptr)));
        if (out->name.len == 0) return *reason = "setting without a key", 0;
        v = ssmb__trim(ssmb__creds_sv(eq + 1, t.len - (size_t)(eq + 1 - t.ptr)));
        for (i = 1; i < v.len; i++)
            if ((v.ptr[i] == '#' || v.ptr[i] == ';') && ssmb__creds_blank(v.ptr[i - 1])) {
                v.len = i;
                break;
            }
        out->value = ssmb__trim(v);
        out->kind = SSMB__INI_SETTING;
    }
    return 1;
}

/* Walks the file line by line: *pos and *line advance. 0 at the end. */
static int ssmb__ini_next(const ssmb__creds_file *f, size_t *pos, uint32_t *line, ssmb_str *raw) {
    const char *nl;
    if (!f->text || *pos >= f->len) return 0;
    nl = (const char *)memchr(f->text + *pos, '\n', f->len - *pos);
    raw->ptr = f->text + *pos;
    raw->len = nl ? (size_t)(nl - raw->ptr) : f->len - *pos;
    *pos += raw->len + (nl ? 1 : 0);
    (*line)++;
    return 1;
}

/* The whole file once: the first malformed line's number and reason. */
static int ssmb__ini_check(const ssmb__creds_file *f, uint32_t *bad_line, const char **reason) {
    size_t pos = 0;
    uint32_t line = 0;
    int in_section = 0, has_setting = 0;
    ssmb_str raw;
    ssmb__ini_line l;
    while (ssmb__ini_next(f, &pos, &line, &raw)) {
        *bad_line = line;
        if (!ssmb__ini_parse_line(f, raw, &l, reason)) return 0;
        if (l.kind == SSMB__INI_SECTION) in_section = 1, has_setting = 0;
        else if (l.kind == SSMB__INI_SETTING && !in_section) return *reason = "setting before any section", 0;
        else if (l.kind == SSMB__INI_SETTING) has_setting = 1;
        else if (l.kind == SSMB__INI_NESTED && !has_setting)
            return *reason = "indented line without a setting above it", 0;
    }
    return 1;
}

/* The last value of key in profile's sections of f; *line its line. */
static int ssmb__ini_get(const ssmb__creds_file *f, ssmb_str profile, const char *key, ssmb_str *value,
                         uint32_t *line_out) {
    size_t pos = 0;
    uint32_t line = 0;
    int in_profile = 0, found = 0;
    const char *reason = NULL;
    ssmb_str raw;
    ssmb__ini_line l;
    while (ssmb__ini_next(f, &pos, &line, &raw)) {
        if (!ssmb__ini_parse_line(f, raw, &l, &reason)) return 0; /* checked before: not reached */
        if (l.kind == SSMB__INI_SECTION) in_profile = l.profile && ssmb__creds_eq(l.name, profile);
        else if (l.kind == SSMB__INI_SETTING && in_profile && ssmb__creds_ieq(l.name, key)) {
            *value = l.value;
            *line_out = line;
            found = 1;
        }
    }
    return found;
}

static int ssmb__ini_has_profile(const ssmb__creds_file *f, ssmb_str profile) {
    size_t pos = 0;
    uint32_t line = 0;
    const char *reason = NULL;
    ssmb_str raw;
    ssmb__ini_line l;
    while (ssmb__ini_next(f, &pos, &line, &raw))
        if (ssmb__ini_parse_line(f, raw, &l, &reason) && l.kind == SSMB__INI_SECTION && l.profile &&
            ssmb__creds_eq(l.name, profile))
            return 1;
    return 0;
}

/* ---- the chain ---- */

typedef struct ssmb__creds_val {
    ssmb_str v;
    const ssmb__creds_file *file;   /* NULL: not set */
    uint32_t line;
} ssmb__creds_val;

typedef struct ssmb__creds_ctx {
    const ssmb_creds_desc *d;
    ssmb_creds_result *r;
    ssmb__creds_file files[2];      /* credentials, then config */
    char paths[2][SSMB_CREDS_TEXT_MAX];
    ssmb_str visited[SSMB_CREDS_MAX_ROLES + 1];
    uint32_t max_depth;
} ssmb__creds_ctx;

static void ssmb__creds_log(const ssmb__creds_ctx *c, uint32_t level, const char *msg) {
    ssmb__log(&c->d->logger, "ssmb.creds", level, SSMB_LOGITEM_NONE, msg, (uint32_t)__LINE__);
}

/* Records the error (file and line when about one) and returns code. */
static ssmb_result ssmb__creds_fail(ssmb__creds_ctx *c, ssmb_result code, const ssmb__creds_file *f, uint32_t line,
                                   const char *reason) {
    ssmb_creds_error *e = &c->r->error;
    size_t n = f && f->path ? strlen(f->path) : 0;
    e->code = code;
    e->line = f ? line : 0;
    e->reason = reason;
    if (n >= sizeof e->file) n = sizeof e->file - 1;
    if (n) memcpy(e->file, f->path, n);
    e->file[n] = '\0';
    ssmb__creds_log(c, SSMB_LOG_ERROR, reason);
    return code;
}

static ssmb_result ssmb__creds_fail_at(ssmb__creds_ctx *c, ssmb_result code, const ssmb__creds_val *v,
                                      const char *reason) {
    return ssmb__creds_fail(c, code, v->file, v->line, reason);
}

/* The environment variable, or NULL when unset or empty. */
static const char *ssmb__creds_env(const ssmb__creds_ctx *c, const char *name) {
    const char *v = c->d->getenv_fn ? c->d->getenv_fn(name, c->d->getenv_user_data) : ssmb_getenv_system(name, NULL);
    return v && v[0] ? v : NULL;
}

/* key of profile: the credentials file first, then the config file. */
static int ssmb__creds_get(const ssmb__creds_ctx *c, ssmb_str profile, const char *key, ssmb__creds_val *out) {
    int i;
    memset(out, 0, sizeof *out);
    for (i = 0; i < 2; i++)
        if (ssmb__ini_get(&c->files[i], profile, key, &out->v, &out->line)) {
            out->file = &c->files[i];
            return 1;
        }
    return 0;
}

static int ssmb__creds_has_profile(const ssmb__creds_ctx *c, ssmb_str profile) {
    return ssmb__ini_has_profile(&c->files[0], profile) || ssmb__ini_has_profile(&c->files[1], profile);
}

/* Copies a file value; SSMB_ERR_LIMIT naming its line when too long. */
static ssmb_result ssmb__creds_take(ssmb__creds_ctx *c, const ssmb__creds_val *v, char *dst, size_t cap) {
    if (!v->file) {
        dst[0] = '\0';
        return SSMB_OK;
    }
    if (!ssmb__creds_copy(dst, cap, v->v)) return ssmb__creds_fail_at(c, SSMB_ERR_LIMIT, v, "value too long");
    return SSMB_OK;
}

static ssmb_result ssmb__creds_take_env(ssmb__creds_ctx *c, const char *value, char *dst, size_t cap,
                                        const char *reason) {
    if (!ssmb__creds_copy(dst, cap, ssmb_str_c(value))) return ssmb__creds_fail(c, SSMB_ERR_LIMIT, NULL, 0, reason);
    return SSMB_OK;
}

static ssmb_result ssmb__creds_set_keys(ssmb__creds_ctx *c, ssmb_aws_credentials k, const char *reason) {
    ssmb_creds *cr = &c->r->creds;
    if (!ssmb__creds_copy(cr->access_key_id, sizeof cr->access_key_id, k.access_key_id) ||
        !ssmb__creds_copy(cr->secret_access_key, sizeof cr->secret_access_key, k.secret_access_key) ||
        !ssmb__creds_copy(cr->session_token, sizeof cr->session_token, k.session_token)) {
        ssmb__wipe(cr, sizeof *cr);
        return ssmb__creds_fail(c, SSMB_ERR_LIMIT, NULL, 0, reason);
    }
    c->r->step = SSMB_CREDS_STEP_READY;
    return SSMB_OK;
}

/* A decimal duration in 900..43200 (STS's range). */
static ssmb_result ssmb__creds_duration(ssmb__creds_ctx *c, const ssmb__creds_val *v, uint32_t *out) {
    uint32_t n = 0;
    size_t i;
    *out = SSMB_CREDS_DEFAULT_DURATION_S;
    if (!v->file) return SSMB_OK;
    for (i = 0; i < v->v.len && i < 6; i++) {
        if (v->v.ptr[i] < '0' || v->v.ptr[i] > '9') break;
        n = n * 10 + (uint32_t)(v->v.ptr[i] - '0');
    }
    if (i == 0 || i != v->v.len || n < 900 || n > 43200)
        return ssmb__creds_fail_at(c, SSMB_ERR_MALFORMED, v, "duration_seconds is not a number from 900 to 43200");
    *out = n;
    return SSMB_OK;
}

/* scheme://host[:port][/target] into the parts; 0 when malformed. */
static int ssmb__creds_url(ssmb_str u, uint32_t *https, char *host, size_t host_cap, uint16_t *port, char *target,
                           size_t target_cap) {
    size_t i = 0, hs, he;
    uint32_t p = 0;
    if (u.len >= 7 && ssmb__creds_ieq(ssmb__creds_sv(u.ptr, 7), "http://")) *https = 0, i = 7;
    else if (u.len >= 8 && ssmb__creds_ieq(ssmb__creds_sv(u.ptr, 8), "https://")) *https = 1, i = 8;
    else return 0;
    if (!ssmb__creds_printable(u) || memchr(u.ptr, ' ', u.len)) return 0;
    if (i < u.len && u.ptr[i] == '[') {
        hs = ++i;
        while (i < u.len && u.ptr[i] != ']') i++;
        if (i == u.len) return 0;
        he = i++;
    } else {
        hs = i;
        while (i < u.len && !strchr(":/?#@", u.ptr[i])) i++;
        he = i;
    }
    if (he == hs || (i < u.len && u.ptr[i] == '@')) return 0;
    if (i < u.len && u.ptr[i] == ':') {
        size_t d = ++i;
        while (i < u.len && u.ptr[i] >= '0' && u.ptr[i] <= '9' && p <= 65535) p = p * 10 + (uint32_t)(u.ptr[i++] - '0');
        if (i == d || p == 0 || p > 65535) return 0;
    } else {
        p = *https ? 443 : 80;
    }
    if (i < u.len && u.ptr[i] != '/' && u.ptr[i] != '?') return 0;
    *port = (uint16_t)p;
    if (!ssmb__creds_copy(host, host_cap, ssmb__creds_sv(u.ptr + hs, he - hs))) return 0;
    {
        ssmb_str t = ssmb__creds_sv(u.ptr + i, u.len - i);
        const char *hash = (const char *)memchr(t.ptr, '#', t.len);
        if (hash) t.len = (size_t)(hash - t.ptr);
        if (t.len == 0) t = ssmb_str_c("/");
        if (t.ptr[0] == '?') return 0;
        return ssmb__creds_copy(target, target_cap, t);
    }
}

/* Plain-HTTP full URIs may only reach the container agent or this host. */
static int ssmb__creds_ecs_host_ok(const char *host) {
    size_t i, dots = 0;
    if (!strncmp(host, "127.", 4)) { /* 127.0.0.0/8, written as a dotted address */
        for (i = 0; host[i]; i++) {
            if (host[i] == '.') dots++;
            else if (host[i] < '0' || host[i] > '9') return 0;
        }
        return dots == 3;
    }
    return !strcmp(host, "169.254.170.2") || !strcmp(host, "169.254.170.23") || !strcmp(host, "fd00:ec2::23") ||
           !strcmp(host, "localhost") || !strcmp(host, "::1");
}

/* ECS from the environment: SSMB_AGAIN when it does not apply. */
static ssmb_result ssmb__creds_ecs(ssmb__creds_ctx *c) {
    ssmb_creds_ecs *e = &c->r->ecs;
    const char *rel = ssmb__creds_env(c, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = ssmb__creds_env(c, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *tok = ssmb__creds_env(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    const char *tok_file = ssmb__creds_env(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    ssmb_result r;
    if (!rel && !full) return SSMB_AGAIN;
    memset(e, 0, sizeof *e);
    if (rel) {
        ssmb__sink s;
        if (rel[0] != '/' || !ssmb__creds_printable(ssmb_str_c(rel)) || strchr(rel, ' ') ||
            !ssmb__creds_copy(e->target, sizeof e->target, ssmb_str_c(rel)))
            return ssmb__creds_fail(c, SSMB_ERR_MALFORMED, NULL, 0,
                                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a path");
        ssmb__sink_init(&s, e->url, sizeof e->url);
        ssmb__put_z(&s, "http://169.254.170.2");
        ssmb__put_z(&s, rel);
        if (ssmb__sink_finish(&s, NULL) != SSMB_OK)
            return ssmb__creds_fail(c, SSMB_ERR_LIMIT, NULL, 0, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI too long");
        memcpy(e->host, "169.254.170.2", 14);
        e->port = 80;
    } else {
        if (!ssmb__creds_url(ssmb_str_c(full), &e->https, e->host, sizeof e->host, &e->port, e->target,
                             sizeof e->target) ||
            !ssmb__creds_copy(e->url, sizeof e->url, ssmb_str_c(full)))
            return ssmb__creds_fail(c, SSMB_ERR_MALFORMED, NULL, 0, "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL");
        if (!e->https && !ssmb__creds_ecs_host_ok(e->host))
            return ssmb__creds_fail(c, SSMB_ERR_CREDENTIALS, NULL, 0,
                                    "AWS_CONTAINER_CREDENTIALS_FULL_URI over http must name a loopback or ECS address");
    }
    if (tok_file) {
        r = ssmb__creds_take_env(c, tok_file, e->auth_token_file, sizeof e->auth_token_file,
                                 "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE too long");
        if (r != SSMB_OK) return r;
    } else if (tok) {
        if (!ssmb__creds_printable(ssmb_str_c(tok)))
            return ssmb__creds_fail(c, SSMB_ERR_MALFORMED, NULL, 0,
                                    "AWS_CONTAINER_AUTHORIZATION_TOKEN holds control characters");
        r = ssmb__creds_take_env(c, tok, e->auth_token, sizeof e->auth_token,
                                 "AWS_CONTAINER_AUTHORIZATION_TOKEN too long");
        if (r != SSMB_OK) return r;
    }
    c->r->step = SSMB_CREDS_STEP_ECS;
    return SSMB_OK;
}

/* IMDS: SSMB_AGAIN when turned off. */
static ssmb_result ssmb__creds_imds(ssmb__creds_ctx *c) {
    ssmb_creds_imds *m = &c->r->imds;
    const char *off = ssmb__creds_env(c, "AWS_EC2_METADATA_DISABLED");
    const char *ep = ssmb__creds_env(c, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = ssmb__creds_env(c, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    if (off && ssmb__creds_ieq(ssmb_str_c(off), "true")) return SSMB_AGAIN;
    memset(m, 0, sizeof *m);
    m->port = 80;
    if (ep) {
        uint32_t https = 0;
        char target[SSMB_CREDS_TEXT_MAX];
        if (!ssmb__creds_url(ssmb_str_c(ep), &https, m->host, sizeof m->host, &m->port, target, sizeof target) ||
            https)
            return ssmb__creds_fail(c, SSMB_ERR_MALFORMED, NULL, 0,
                                    "AWS_EC2_METADATA_SERVICE_ENDPOINT is not an http:// URL");
    } else if (mode && ssmb__creds_ieq(ssmb_str_c(mode), "IPv6")) {
        memcpy(m->host, "fd00:ec2::254", 14);
    } else {
        memcpy(m->host, "169.254.169.254", 16);
    }
    c->r->step = SSMB_CREDS_STEP_IMDS;
    return SSMB_OK;
}

/* credential_source: where a role's first credentials come from. */
static ssmb_result ssmb__creds_credential_source(ssmb__creds_ctx *c, const ssmb__creds_val *cs) {
    ssmb_result r;
    if (ssmb_str_eq(cs->v, "Environment")) {
        const char *id = ssmb__creds_env(c, "AWS_ACCESS_KEY_ID"), *secret = ssmb__creds_env(c, "AWS_SECRET_ACCESS_KEY");
        ssmb_aws_credentials k;
        if (!id || !secret)
            return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, cs,
                                       "credential_source Environment, but the AWS_ACCESS_KEY_ID and "
                                       "AWS_SECRET_ACCESS_KEY variables are not both set");
        k.access_key_id = ssmb_str_c(id);
        k.secret_access_key = ssmb_str_c(secret);
        k.session_token = ssmb_str_c(ssmb__creds_env(c, "AWS_SESSION_TOKEN"));
        return ssmb__creds_set_keys(c, k, "environment credentials too long");
    }
    if (ssmb_str_eq(cs->v, "Ec2InstanceMetadata")) {
        r = ssmb__creds_imds(c);
        if (r == SSMB_AGAIN)
            return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, cs,
                                       "credential_source Ec2InstanceMetadata, but AWS_EC2_METADATA_DISABLED is true");
        return r;
    }
    if (ssmb_str_eq(cs->v, "EcsContainer")) {
        r = ssmb__creds_ecs(c);
        if (r == SSMB_AGAIN)
            return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, cs,
                                       "credential_source EcsContainer, but no AWS_CONTAINER_CREDENTIALS_* variable");
        return r;
    }
    return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, cs,
                               "credential_source is not Environment, Ec2InstanceMetadata or EcsContainer");
}

/* Appends the profile's role to the plan (after its source was resolved). */
static ssmb_result ssmb__creds_add_role(ssmb__creds_ctx *c, ssmb_str profile, const ssmb__creds_val *arn) {
    ssmb_creds_role *role;
    ssmb__creds_val v;
    ssmb_result r;
    if (c->r->role_count >= SSMB_CREDS_MAX_ROLES)
        return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, arn, "role chain longer than SSMB_CREDS_MAX_ROLES");
    role = &c->r->roles[c->r->role_count++];
    r = ssmb__creds_take(c, arn, role->role_arn, sizeof role->role_arn);
    if (r == SSMB_OK && !role->role_arn[0]) r = ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, arn, "empty role_arn");
    if (r == SSMB_OK) {
        ssmb__creds_get(c, profile, "role_session_name", &v);
        r = ssmb__creds_take(c, &v, role->session_name, sizeof role->session_name);
    }
    if (r == SSMB_OK && !role->session_name[0])
        memcpy(role->session_name, SSMB__CREDS_DEFAULT_SESSION, sizeof SSMB__CREDS_DEFAULT_SESSION);
    if (r == SSMB_OK) {
        ssmb__creds_get(c, profile, "external_id", &v);
        r = ssmb__creds_take(c, &v, role->external_id, sizeof role->external_id);
    }
    if (r == SSMB_OK) {
        ssmb__creds_get(c, profile, "duration_seconds", &v);
        r = ssmb__creds_duration(c, &v, &role->duration_s);
    }
    if (r == SSMB_OK && !ssmb__creds_copy(role->profile, sizeof role->profile, profile))
        r = ssmb__creds_fail_at(c, SSMB_ERR_LIMIT, arn, "profile name too long");
    return r;
}

/* The profile's own keys (aws_access_key_id + aws_secret_access_key):
   SSMB_OK when set, SSMB_AGAIN when neither is, an error for one alone. */
static ssmb_result ssmb__creds_profile_keys(ssmb__creds_ctx *c, ssmb_str name) {
    ssmb__creds_val id, secret, token;
    ssmb_creds *cr = &c->r->creds;
    ssmb_result r;
    int has_id = ssmb__creds_get(c, name, "aws_access_key_id", &id) && id.v.len;
    int has_secret = ssmb__creds_get(c, name, "aws_secret_access_key", &secret) && secret.v.len;
    if (!has_id && !has_secret) return SSMB_AGAIN;
    if (!has_id || !has_secret)
        return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, has_id ? &id : &secret,
                                   "aws_access_key_id and aws_secret_access_key must be set together");
    ssmb__creds_get(c, name, "aws_session_token", &token);
    r = ssmb__creds_take(c, &id, cr->access_key_id, sizeof cr->access_key_id);
    if (r == SSMB_OK) r = ssmb__creds_take(c, &secret, cr->secret_access_key, sizeof cr->secret_access_key);
    if (r == SSMB_OK) r = ssmb__creds_take(c, &token, cr->session_token, sizeof cr->session_token);
    if (r != SSMB_OK) ssmb__wipe(cr, sizeof *cr);
    else c->r->step = SSMB_CREDS_STEP_READY;
    return r;
}

/* Resolves profile name at chain depth: SSMB_OK with the plan, SSMB_AGAIN
   when the profile holds no credentials, or an error. */
static ssmb_result ssmb__creds_profile(ssmb__creds_ctx *c, ssmb_str name, uint32_t depth) {
    ssmb__creds_val arn, src, cs, web, proc;
    ssmb_result r;
    uint32_t i;
    c->visited[depth] = name;
    if (ssmb__creds_get(c, name, "role_arn", &arn)) {
        int has_src = ssmb__creds_get(c, name, "source_profile", &src);
        int has_cs = ssmb__creds_get(c, name, "credential_source", &cs);
        int has_web = ssmb__creds_get(c, name, "web_identity_token_file", &web);
        if (has_src && has_cs)
            return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, &cs,
                                       "source_profile and credential_source are both set");
        if ((has_src || has_cs) && depth >= c->max_depth)
            return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, has_src ? &src : &cs,
                                       "role chain deeper than max_chain_depth");
        if (has_src) {
            if (ssmb__creds_eq(src.v, name)) { /* a role over the profile's own keys */
                r = ssmb__creds_profile_keys(c, name);
                if (r == SSMB_AGAIN)
                    r = ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, &src,
                                            "source_profile names its own profile, which has no keys");
            } else {
                for (i = 0; i <= depth; i++)
                    if (ssmb__creds_eq(c->visited[i], src.v))
                        return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, &src, "source_profile chain loops");
                if (!ssmb__creds_has_profile(c, src.v))
                    return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, &src,
                                               "source_profile names a profile that does not exist");
                r = ssmb__creds_profile(c, src.v, depth + 1);
                if (r == SSMB_AGAIN)
                    r = ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, &src,
                                            "source_profile names a profile without credentials");
            }
            return r != SSMB_OK ? r : ssmb__creds_add_role(c, name, &arn);
        }
        if (has_cs) {
            r = ssmb__creds_credential_source(c, &cs);
            return r != SSMB_OK ? r : ssmb__creds_add_role(c, name, &arn);
        }
        if (has_web) {
            ssmb_creds_web_identity *w = &c->r->web_identity;
            ssmb__creds_val v;
            r = ssmb__creds_take(c, &arn, w->role_arn, sizeof w->role_arn);
            if (r == SSMB_OK) r = ssmb__creds_take(c, &web, w->token_file, sizeof w->token_file);
            if (r == SSMB_OK && (!w->role_arn[0] || !w->token_file[0]))
                r = ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, &web, "empty role_arn or web_identity_token_file");
            if (r == SSMB_OK) {
                ssmb__creds_get(c, name, "role_session_name", &v);
                r = ssmb__creds_take(c, &v, w->session_name, sizeof w->session_name);
            }
            if (r == SSMB_OK && !w->session_name[0])
                memcpy(w->session_name, SSMB__CREDS_DEFAULT_SESSION, sizeof SSMB__CREDS_DEFAULT_SESSION);
            if (r == SSMB_OK) {
                ssmb__creds_get(c, name, "duration_seconds", &v);
                r = ssmb__creds_duration(c, &v, &w->duration_s);
            }
            if (r == SSMB_OK) c->r->step = SSMB_CREDS_STEP_WEB_IDENTITY;
            return r;
        }
        return ssmb__creds_fail_at(c, SSMB_ERR_CREDENTIALS, &arn,
                                   "role_arn without source_profile, credential_source or web_identity_token_file");
    }
    r = ssmb__creds_profile_keys(c, name);
    if (r != SSMB_AGAIN) return r;
    if (ssmb__creds_get(c, name, "credential_process", &proc) && proc.v.len) {
        r = ssmb__creds_take(c, &proc, c->r->process_command, sizeof c->r->process_command);
        if (r == SSMB_OK) c->r->step = SSMB_CREDS_STEP_PROCESS;
        return r;
    }
    return SSMB_AGAIN;
}

/* path: the desc's, the variable's ("~/" from HOME), or HOME + rel; "" when
   there is none (no HOME). */
static ssmb_result ssmb__creds_path(ssmb__creds_ctx *c, const char *given, const char *var, const char *rel,
                                    char *out) {
    const char *p = given && given[0] ? given : ssmb__creds_env(c, var);
    const char *home = ssmb__creds_env(c, "HOME");
    ssmb__sink s;
    ssmb__sink_init(&s, out, SSMB_CREDS_TEXT_MAX);
    if (p && p[0] == '~' && p[1] == '/') {
        if (!home) {
            out[0] = '\0';
            return SSMB_OK;
        }
        ssmb__put_z(&s, home);
        ssmb__put_z(&s, p + 1);
    } else if (p) {
        ssmb__put_z(&s, p);
    } else if (home) {
        ssmb__put_z(&s, home);
        ssmb__put_z(&s, rel);
    }
    if (ssmb__sink_finish(&s, NULL) != SSMB_OK)
        return ssmb__creds_fail(c, SSMB_ERR_LIMIT, NULL, 0, "file path too long");
    return SSMB_OK;
}

/* Reads file i into buf (cap bytes, one more than the limit); an absent
   file leaves text NULL. Then checks every line. */
static ssmb_result ssmb__creds_load(ssmb__creds_ctx *c, int i, char *buf, size_t cap) {
    ssmb__creds_file *f = &c->files[i];
    const char *reason = NULL;
    uint32_t line = 0;
    FILE *fp;
    size_t n;
    int err;
    f->path = c->paths[i];
    f->config = i == 1;
    if (!c->paths[i][0]) return SSMB_OK;
    fp = fopen(c->paths[i], "rb");
    if (!fp) return SSMB_OK; /* a missing file is no error, as in the AWS tools */
    n = fread(buf, 1, cap, fp);
    err = ferror(fp);
    fclose(fp);
    if (err) return ssmb__creds_fail(c, SSMB_ERR_IO, f, 0, "the file cannot be read");
    if (n == cap) return ssmb__creds_fail(c, SSMB_ERR_LIMIT, f, 0, "the file is larger than max_file_size");
    f->text = buf;
    f->len = n;
    if (!ssmb__ini_check(f, &line, &reason)) return ssmb__creds_fail(c, SSMB_ERR_MALFORMED, f, line, reason);
    return SSMB_OK;
}

static ssmb_result ssmb__creds_walk(ssmb__creds_ctx *c, char *block, size_t file_cap) {
    const ssmb_creds_desc *d = c->d;
    ssmb_creds_result *res = c->r;
    const char *profile = d->profile && d->profile[0] ? d->profile : ssmb__creds_env(c, "AWS_PROFILE");
    int named = profile != NULL;
    ssmb_result r;
    if (!profile) profile = "default";
    if (!ssmb__creds_copy(res->profile, sizeof res->profile, ssmb_str_c(profile)))
        return ssmb__creds_fail(c, SSMB_ERR_LIMIT, NULL, 0, "profile name too long");
    if (block) {
        r = ssmb__creds_load(c, 0, block, file_cap);
        if (r == SSMB_OK) r = ssmb__creds_load(c, 1, block + file_cap, file_cap);
        if (r != SSMB_OK) return r;
    }
    {
        ssmb__creds_val region;
        if (ssmb__creds_get(c, ssmb_str_c(res->profile), "region", &region)) {
            r = ssmb__creds_take(c, &region, res->region, sizeof res->region);
            if (r != SSMB_OK) return r;
        }
    }
    /* 1. explicit keys */
    if (d->explicit_creds.access_key_id.len) {
        if (!d->explicit_creds.secret_access_key.len)
            return ssmb__creds_fail(c, SSMB_ERR_INVALID_ARG, NULL, 0, "explicit_creds without a secret access key");
        res->source = SSMB_CREDS_SOURCE_EXPLICIT;
        ssmb__creds_log(c, SSMB_LOG_INFO, "credentials: explicit (ssmb_creds_desc.explicit_creds)");
        return ssmb__creds_set_keys(c, d->explicit_creds, "explicit_creds too long");
    }
    /* 2. environment keys */
    {
        const char *id = ssmb__creds_env(c, "AWS_ACCESS_KEY_ID"), *secret = ssmb__creds_env(c, "AWS_SECRET_ACCESS_KEY");
        if (id && secret) {
            ssmb_aws_credentials k;
            k.access_key_id = ssmb_str_c(id);
            k.secret_access_key = ssmb_str_c(secret);
            k.session_token = ssmb_str_c(ssmb__creds_env(c, "AWS_SESSION_TOKEN"));
            res->source = SSMB_CREDS_SOURCE_ENV;
            ssmb__creds_log(c, SSMB_LOG_INFO, "credentials: environment (AWS_ACCESS_KEY_ID)");
            return ssmb__creds_set_keys(c, k, "environment credentials too long");
        }
    }
    /* 3. web identity from the environment */
    {
        const char *arn = ssmb__creds_env(c, "AWS_ROLE_ARN"), *file = ssmb__creds_env(c, "AWS_WEB_IDENTITY_TOKEN_FILE");
        const char *session = ssmb__creds_env(c, "AWS_ROLE_SESSION_NAME");
        if (arn && file) {
            ssmb_creds_web_identity *w = &res->web_identity;
            res->source = SSMB_CREDS_SOURCE_ENV_WEB_IDENTITY;
            r = ssmb__creds_take_env(c, arn, w->role_arn, sizeof w->role_arn, "AWS_ROLE_ARN too long");
            if (r == SSMB_OK)
                r = ssmb__creds_take_env(c, file, w->token_file, sizeof w->token_file,
                                         "AWS_WEB_IDENTITY_TOKEN_FILE too long");
            if (r == SSMB_OK)
                r = ssmb__creds_take_env(c, session ? session : SSMB__CREDS_DEFAULT_SESSION, w->session_name,
                                         sizeof w->session_name, "AWS_ROLE_SESSION_NAME too long");
            w->duration_s = SSMB_CREDS_DEFAULT_DURATION_S;
            res->step = SSMB_CREDS_STEP_WEB_IDENTITY;
            ssmb__creds_log(c, SSMB_LOG_INFO, "credentials: web identity (AWS_ROLE_ARN)");
            return r;
        }
    }
    /* 4. the profile */
    if (ssmb__creds_has_profile(c, ssmb_str_c(res->profile))) {
        res->source = SSMB_CREDS_SOURCE_PROFILE;
        r = ssmb__creds_profile(c, ssmb_str_c(res->profile), 0);
        if (r != SSMB_AGAIN) {
            if (r == SSMB_OK) ssmb__creds_log(c, SSMB_LOG_INFO, "credentials: shared profile");
            return r;
        }
        res->source = SSMB_CREDS_SOURCE_NONE;
    } else if (named) {
        return ssmb__creds_fail(c, SSMB_ERR_CREDENTIALS, NULL, 0,
                                "the selected profile is in neither shared file (AWS_PROFILE or desc.profile)");
    }
    /* 5. ECS, 6. IMDS */
    if (!d->no_remote) {
        r = ssmb__creds_ecs(c);
        if (r != SSMB_AGAIN) {
            res->source = SSMB_CREDS_SOURCE_ECS;
            if (r == SSMB_OK) ssmb__creds_log(c, SSMB_LOG_INFO, "credentials: ECS container endpoint");
            return r;
        }
        r = ssmb__creds_imds(c);
        if (r != SSMB_AGAIN) {
            res->source = SSMB_CREDS_SOURCE_IMDS;
            if (r == SSMB_OK) ssmb__creds_log(c, SSMB_LOG_INFO, "credentials: EC2 instance metadata");
            return r;
        }
    }
    return ssmb__creds_fail(c, SSMB_ERR_CREDENTIALS, NULL, 0, "no credentials found in any source");
}

SSMB_APIDEF ssmb_result ssmb_creds_resolve(const ssmb_creds_desc *desc, ssmb_creds_result *result) {
    ssmb__creds_ctx c;
    size_t file_cap = 0, block_size = 0;
    char *block = NULL;
    ssmb_result r;
    if (!result) return SSMB_ERR_INVALID_ARG;
    ssmb__wipe(result, sizeof *result);
    if (!desc || !ssmb__allocator_valid(&desc->allocator)) {
        result->error.code = SSMB_ERR_INVALID_ARG;
        result->error.reason = "desc is NULL or its allocator has only one function";
        return SSMB_ERR_INVALID_ARG;
    }
    memset(&c, 0, sizeof c);
    c.d = desc;
    c.r = result;
    c.max_depth = desc->max_chain_depth && desc->max_chain_depth < SSMB_CREDS_MAX_ROLES ? desc->max_chain_depth
                                                                                         : SSMB_CREDS_MAX_ROLES;
    c.files[0].path = c.paths[0];
    c.files[1].path = c.paths[1];
    c.files[1].config = 1;
    if (!desc->no_files) {
        r = ssmb__creds_path(&c, desc->credentials_file, "AWS_SHARED_CREDENTIALS_FILE", "/.aws/credentials",
                             c.paths[0]);
        if (r == SSMB_OK) r = ssmb__creds_path(&c, desc->config_file, "AWS_CONFIG_FILE", "/.aws/config", c.paths[1]);
        if (r != SSMB_OK) return r;
        file_cap = (size_t)(desc->max_file_size ? desc->max_file_size : SSMB_CREDS_DEFAULT_FILE_MAX) + 1;
        if (ssmb_size_mul(file_cap, 2, &block_size) != SSMB_OK) return SSMB_ERR_OVERFLOW;
        block = (char *)ssmb__alloc(&desc->allocator, block_size);
        if (!block) return ssmb__creds_fail(&c, SSMB_ERR_NOMEM, NULL, 0, "no memory to read the shared files");
    }
    r = ssmb__creds_walk(&c, block, file_cap);
    if (block) {
        ssmb__wipe(block, block_size);
        ssmb__free(&desc->allocator, block, block_size);
    }
    result->creds.refresh_before_s = desc->refresh_before_s ? desc->refresh_before_s : SSMB_CREDS_DEFAULT_REFRESH_S;
    if (r != SSMB_OK) {
        ssmb_creds_error keep = result->error;
        ssmb_creds_result_wipe(result);
        result->error = keep;
        if (!result->error.code) result->error.code = r;
    }
    return r;
}

SSMB_APIDEF void ssmb_creds_result_wipe(ssmb_creds_result *r) {
    if (r) ssmb__wipe(r, sizeof *r);
}

// >>socket
/* Non-blocking sockets with no process-wide side effects: SOCK_NONBLOCK and
   SOCK_CLOEXEC at creation (a host that forks and execs leaks nothing), and
   MSG_NOSIGNAL on every send, so a peer that resets never raises SIGPIPE. */
#if !defined(SSMB_NO_SOCKETS)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__STRICT_ANSI__) && !defined(__cplusplus) && !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(_GNU_SOURCE)
int kill(pid_t pid, int sig); /* POSIX; strict C99 headers hide it (used for credential_process) */
#endif
extern char **environ; /* POSIX: the process's environment, for credential_process */

/* O_CLOEXEC is POSIX 2008, so a strict C99 compile does not declare it;
   glibc always has the bit underneath. */
#if defined(O_CLOEXEC)
#define SSMB__O_CLOEXEC O_CLOEXEC
#elif defined(__O_CLOEXEC)
#define SSMB__O_CLOEXEC __O_CLOEXEC
#else
#define SSMB__O_CLOEXEC 0
#endif

#if defined(MSG_NOSIGNAL)
#define SSMB__MSG_NOSIGNAL MSG_NOSIGNAL
#else
#define SSMB__MSG_NOSIGNAL 0
#endif

/* 1 for the errors that only mean "not now" on a non-blocking socket. */
static int ssmb__net_again(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

/* A socket of the family, non-blocking and close-on-exec; -1 on failure. */
static int ssmb__net_socket(int family, int type) {
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    return socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
    int fd = socket(family, type, 0);
    if (fd < 0) return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
#if defined(SO_NOSIGPIPE)
    {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
    }
#endif
    return fd;
#endif
}

/* The socket address for an ssmb_address and a port; its length, 0 for an
   unknown family. */
static socklen_t ssmb__net_sockaddr(const ssmb_address *a, uint16_t port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    if (a->family == 4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        memcpy(&s4->sin_addr, a->bytes, 4);
        return (socklen_t)sizeof *s4;
    }
    if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        memcpy(&s6->sin6_addr, a->bytes, 16);
        return (socklen_t)sizeof *s6;
    }
    return 0;
}

/* Starts connecting a socket of type to a:port. SSMB_OK: connected at once;
   SSMB_AGAIN: in progress (wait for POLLOUT); else SSMB_ERR_CONNECT with
   *err the errno. *fd is -1 on failure. */
static ssmb_result ssmb__net_connect(const ssmb_address *a, uint16_t port, int type, int *fd, int *err) {
    struct sockaddr_storage ss;
    socklen_t sl = ssmb__net_sockaddr(a, port, &ss);
    int rc;
    *err = EAFNOSUPPORT;
    *fd = sl ? ssmb__net_socket(a->family == 4 ? AF_INET : AF_INET6, type) : -1;
    if (*fd < 0) {
        if (sl) *err = errno;
        return SSMB_ERR_CONNECT;
    }
    if (type == SOCK_STREAM) {
        int one = 1; /* WebSocket frames are small and latency matters */
        setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    do rc = connect(*fd, (struct sockaddr *)(void *)&ss, sl);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) return SSMB_OK;
    *err = errno;
    if (*err == EINPROGRESS) return SSMB_AGAIN;
    close(*fd);
    *fd = -1;
    return SSMB_ERR_CONNECT;
}

/* How a non-blocking connect ended: 0 connected, an errno when it failed,
   -1 while it is still in progress. getpeername tells a finished connect
   from one still running, whatever readiness the host reported. */
static int ssmb__net_connect_status(int fd) {
    int e = 0;
    socklen_t el = (socklen_t)sizeof e;
    struct sockaddr_storage ss;
    socklen_t sl = (socklen_t)sizeof ss;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) return errno;
    if (e != 0) return e;
    if (getpeername(fd, (struct sockaddr *)(void *)&ss, &sl) == 0) return 0;
    return errno == ENOTCONN ? -1 : errno;
}

/* Text of an IPv4 or IPv6 address (no brackets, no zone) into *out. */
static int ssmb__net_ip(ssmb_str s, ssmb_address *out) {
    char text[48];
    if (s.len == 0 || s.len >= sizeof text) return 0;
    memcpy(text, s.ptr, s.len);
    text[s.len] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, text, out->bytes) == 1) {
        out->family = 4;
        return 1;
    }
    if (inet_pton(AF_INET6, text, out->bytes) == 1) {
        out->family = 6;
        return 1;
    }
    return 0;
}

/* A port: 1 to 65535 in decimal digits. */
static int ssmb__net_port(ssmb_str s, uint16_t *port) {
    uint32_t v = 0;
    size_t i;
    if (s.len == 0 || s.len > 5) return 0;
    for (i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9') return 0;
        v = v * 10 + (uint32_t)(s.ptr[i] - '0');
    }
    if (v == 0 || v > 65535) return 0;
    *port = (uint16_t)v;
    return 1;
}

/* Splits "host", "host:port", "[v6]" or "[v6]:port" (RFC 3986 §3.2.2: an
   IPv6 literal takes brackets when a port follows). An unbracketed text
   with more than one colon is an IPv6 address without a port. */
static int ssmb__net_hostport(ssmb_str s, ssmb_str *host, uint16_t *port) {
    const char *colon;
    if (s.len && s.ptr[0] == '[') {
        const char *end = (const char *)memchr(s.ptr, ']', s.len);
        size_t after;
        if (!end) return 0;
        host->ptr = s.ptr + 1;
        host->len = (size_t)(end - s.ptr) - 1;
        after = (size_t)(end - s.ptr) + 1;
        if (after == s.len) return host->len > 0;
        if (s.ptr[after] != ':') return 0;
        s.ptr += after + 1;
        s.len -= after + 1;
        return host->len > 0 && ssmb__net_port(s, port);
    }
    colon = (const char *)memchr(s.ptr, ':', s.len);
    *host = s;
    if (!colon || memchr(colon + 1, ':', s.len - (size_t)(colon - s.ptr) - 1)) return s.len > 0;
    host->len = (size_t)(colon - s.ptr);
    s.ptr = colon + 1;
    s.len = host->len < s.len ? s.len - host->len - 1 : 0;
    return host->len > 0 && ssmb__net_port(s, port);
}

static int ssmb__net_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The next field of a line: skips blanks, takes up to the next blank. */
static ssmb_str ssmb__net_field(ssmb_str *rest) {
    ssmb_str f;
    while (rest->len && ssmb__net_blank(rest->ptr[0])) {
        rest->ptr++;
        rest->len--;
    }
    f.ptr = rest->ptr;
    f.len = 0;
    while (f.len < rest->len && !ssmb__net_blank(rest->ptr[f.len])) f.len++;
    rest->ptr += f.len;
    rest->len -= f.len;
    return f;
}

/* The next element of a comma-separated list, trimmed; 0 at the end. */
static int ssmb__net_item(ssmb_str *rest, ssmb_str *item) {
    const char *comma;
    if (rest->len == 0) return 0;
    comma = (const char *)memchr(rest->ptr, ',', rest->len);
    item->ptr = rest->ptr;
    item->len = comma ? (size_t)(comma - rest->ptr) : rest->len;
    rest->ptr += item->len + (comma ? 1 : 0);
    rest->len -= item->len + (comma ? 1 : 0);
    *item = ssmb__trim(*item);
    return 1;
}

/* ASCII case-insensitive equality of two views. */
static int ssmb__net_ieq(ssmb_str a, ssmb_str b) {
    size_t i;
    if (a.len != b.len) return 0;
    for (i = 0; i < a.len; i++)
        if (ssmb__http_lower(a.ptr[i]) != ssmb__http_lower(b.ptr[i])) return 0;
    return 1;
}

/* A host name without the one trailing dot a fully qualified name may carry. */
static ssmb_str ssmb__net_host(ssmb_str s) {
    if (s.len > 1 && s.ptr[s.len - 1] == '.') s.len--;
    return s;
}

#define SSMB__LINE_MAX 512u         /* longer lines of hosts and resolv.conf are skipped */
#define SSMB__TEXT_FILE_MAX (4u << 20) /* bytes of a configuration file read at most */

/* Told each line of a file (without its line break); returns 1 to stop. */
typedef int (*ssmb__net_line_fn)(ssmb_str line, void *ctx);

static ssmb_str ssmb__net_view(const char *p, size_t n) {
    ssmb_str s;
    s.ptr = p;
    s.len = n;
    return s;
}

/* Adds the bytes of one read to the line being gathered; 1 when fn stopped.
   invariant: *have <= SSMB__LINE_MAX, or SSMB__LINE_MAX + 1 for a line too
   long, which is skipped up to its end. */
static int ssmb__net_lines_feed(const char *p, size_t n, char *line, size_t *have, ssmb__net_line_fn fn, void *ctx) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (p[i] == '\n') {
            int stop = *have <= SSMB__LINE_MAX && fn(ssmb__net_view(line, *have), ctx);
            *have = 0;
            if (stop) return 1;
        } else if (*have < SSMB__LINE_MAX) {
            line[(*have)++] = p[i];
        } else {
            *have = SSMB__LINE_MAX + 1;
        }
    }
    return 0;
}

/* Calls fn for each line of the file at path until fn returns 1. Reads
   through fixed buffers: no allocation, and at most SSMB__TEXT_FILE_MAX
   bytes. SSMB_ERR_IO when the file cannot be opened. */
static ssmb_result ssmb__net_read_lines(const char *path, ssmb__net_line_fn fn, void *ctx) {
    char chunk[1024], line[SSMB__LINE_MAX];
    size_t have = 0, total = 0;
    int stopped = 0, fd = open(path, O_RDONLY | SSMB__O_CLOEXEC);
    if (fd < 0) return SSMB_ERR_IO;
#if SSMB__O_CLOEXEC == 0
    fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
    while (!stopped && total < SSMB__TEXT_FILE_MAX) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        total += (size_t)n;
        stopped = ssmb__net_lines_feed(chunk, (size_t)n, line, &have, fn, ctx);
    }
    close(fd);
    if (!stopped && have > 0 && have <= SSMB__LINE_MAX) fn(ssmb__net_view(line, have), ctx); /* no final line break */
    return SSMB_OK;
}
#endif /* !SSMB_NO_SOCKETS */

// >>resolve
/* Name resolution that never blocks: IP literals, then the hosts file, then
   DNS over UDP (RFC 1035) to the name servers of resolv.conf, an A and an
   AAAA question to one server at a time. The pieces here are pure: the
   engine owns the sockets and the clock. Names are looked up as given (no
   search list). */
#if !defined(SSMB_NO_SOCKETS)

#define SSMB__MAX_ADDRS 8       /* addresses kept per name, IPv4 first */
#define SSMB__MAX_NS 3          /* resolv.conf(5): MAXNS name servers */
#define SSMB__DNS_PORT 53
#define SSMB__DNS_MSG_MAX 512   /* RFC 1035 §4.2.1: UDP carries 512 bytes (no EDNS is offered) */
#define SSMB__DNS_NAME_MAX 253  /* text form of a name at most 255 wire bytes (RFC 1035 §2.3.4) */
#define SSMB__DNS_MAX_RECORDS 64 /* answer records looked at */
#define SSMB__DNS_MAX_CHAIN 8   /* CNAMEs followed inside one answer */

enum { SSMB__DNS_A = 1, SSMB__DNS_CNAME = 5, SSMB__DNS_AAAA = 28, SSMB__DNS_IN = 1 };

/* A name server: address and port. */
typedef struct ssmb__endpoint {
    ssmb_address addr;
    uint16_t port;
} ssmb__endpoint;

/* ---- hosts file ---- */

typedef struct ssmb__hosts_search {
    ssmb_str host;          /* normalised: no trailing dot */
    ssmb_address *out;
    size_t max, n;
} ssmb__hosts_search;

/* One line of hosts(5): address, canonical name, aliases; '#' starts a comment. */
static int ssmb__hosts_line(ssmb_str line, void *ctx) {
    ssmb__hosts_search *hs = (ssmb__hosts_search *)ctx;
    const char *hash = (const char *)memchr(line.ptr, '#', line.len);
    ssmb_address a;
    ssmb_str name;
    if (hash) line.len = (size_t)(hash - line.ptr);
    if (!ssmb__net_ip(ssmb__net_field(&line), &a)) return 0;
    while ((name = ssmb__net_field(&line)).len) {
        if (!ssmb__net_ieq(ssmb__net_host(name), hs->host)) continue;
        hs->out[hs->n++] = a;
        break;
    }
    return hs->n == hs->max;
}

/* Every address the hosts file gives host, in file order (at most max). */
static size_t ssmb__hosts_lookup(const char *path, ssmb_str host, ssmb_address *out, size_t max) {
    ssmb__hosts_search hs;
    hs.host = ssmb__net_host(host);
    hs.out = out;
    hs.max = max;
    hs.n = 0;
    if (max) ssmb__net_read_lines(path, ssmb__hosts_line, &hs);
    return hs.n;
}

/* RFC 6761 §6.3: "localhost" and names under it are the loopback, whatever
   DNS would say. */
static size_t ssmb__net_localhost(ssmb_str host, ssmb_address *out, size_t max) {
    static const char suffix[] = ".localhost";
    size_t n = sizeof suffix - 1;
    host = ssmb__net_host(host);
    if (max < 2) return 0;
    if (!ssmb__net_ieq(host, ssmb__net_view(suffix + 1, n - 1)) &&
        !(host.len > n && ssmb__net_ieq(ssmb__net_view(host.ptr + host.len - n, n), ssmb__net_view(suffix, n))))
        return 0;
    memset(out, 0, 2 * sizeof *out);
    out[0].family = 4;
    out[0].bytes[0] = 127;
    out[0].bytes[3] = 1;
    out[1].family = 6;
    out[1].bytes[15] = 1;
    return 2;
}

/* ---- name servers ---- */

typedef struct ssmb__ns_list {
    ssmb__endpoint *out;
    size_t n;
} ssmb__ns_list;

/* "nameserver ADDRESS" lines of resolv.conf(5) (lines of comments, with '#'
   or ';', and other keywords say nothing here).
   Link-local servers with a zone ("fe80::1%eth0") are skipped. */
static int ssmb__resolv_line(ssmb_str line, void *ctx) {
    ssmb__ns_list *l = (ssmb__ns_list *)ctx;
    ssmb_str key = ssmb__net_field(&line);
    ssmb__endpoint *e = &l->out[l->n];
    if (!ssmb__net_ieq(key, ssmb_str_c("nameserver"))) return 0;
    if (!ssmb__net_ip(ssmb__net_field(&line), &e->addr)) return 0;
    e->port = SSMB__DNS_PORT;
    return ++l->n == SSMB__MAX_NS;
}

/* The servers of resolv.conf; with none (or no file) the local host, as
   resolv.conf(5) says. */
static size_t ssmb__resolv_conf(const char *path, ssmb__endpoint out[SSMB__MAX_NS]) {
    ssmb__ns_list l;
    l.out = out;
    l.n = 0;
    ssmb__net_read_lines(path, ssmb__resolv_line, &l);
    if (l.n == 0) {
        memset(out, 0, sizeof *out);
        out[0].addr.family = 4;
        out[0].addr.bytes[0] = 127;
        out[0].addr.bytes[3] = 1;
        out[0].port = SSMB__DNS_PORT;
        l.n = 1;
    }
    return l.n;
}

/* desc.dns_servers: "ip[:port][,ip[:port]...]", IPv6 in brackets when a
   port follows. SSMB_ERR_INVALID_ARG for anything else or too many. */
static ssmb_result ssmb__dns_servers_parse(const char *text, ssmb__endpoint out[SSMB__MAX_NS], size_t *n) {
    ssmb_str rest = ssmb_str_c(text), item, host;
    *n = 0;
    while (ssmb__net_item(&rest, &item)) {
        uint16_t port = SSMB__DNS_PORT;
        if (*n == SSMB__MAX_NS || !ssmb__net_hostport(item, &host, &port)) return SSMB_ERR_INVALID_ARG;
        if (!ssmb__net_ip(host, &out[*n].addr)) return SSMB_ERR_INVALID_ARG;
        out[(*n)++].port = port;
    }
    return *n ? SSMB_OK : SSMB_ERR_INVALID_ARG;
}

/* ---- DNS messages (RFC 1035 §4.1) ---- */

static uint16_t ssmb__dns_get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static void ssmb__dns_put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Host name characters: letters, digits, '-' and '_' (RFC 952, RFC 1123
   §2.1; '_' for service names). */
static int ssmb__dns_label_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The question name in wire form (§3.1: length-prefixed labels of 1-63
   bytes, a zero byte, 255 bytes in all); its length, 0 when host is no
   valid name. */
static size_t ssmb__dns_name_write(ssmb_str host, uint8_t *out) {
    size_t o = 0, i = 0;
    host = ssmb__net_host(host);
    if (host.len == 0 || host.len > SSMB__DNS_NAME_MAX) return 0;
    while (i < host.len) {
        size_t start = i;
        while (i < host.len && host.ptr[i] != '.') {
            if (!ssmb__dns_label_char(host.ptr[i])) return 0;
            i++;
        }
        if (i == start || i - start > 63) return 0;
        out[o++] = (uint8_t)(i - start);
        memcpy(out + o, host.ptr + start, i - start);
        o += i - start;
        i++; /* the dot */
    }
    if (host.ptr[host.len - 1] == '.') return 0; /* "a..": an empty last label */
    out[o++] = 0;
    return o;
}

/* A query (§4.1.1 header with RD set, §4.1.2 one question, class IN) into
   out[SSMB__DNS_MSG_MAX]; its length, 0 for a name that cannot be asked. */
static size_t ssmb__dns_query_write(uint16_t id, ssmb_str host, uint16_t qtype, uint8_t *out) {
    size_t n;
    memset(out, 0, 12);
    ssmb__dns_put16(out, id);
    out[2] = 0x01;                  /* RD: recursion desired */
    out[5] = 1;                     /* QDCOUNT */
    n = ssmb__dns_name_write(host, out + 12);
    if (n == 0) return 0;
    ssmb__dns_put16(out + 12 + n, qtype);
    ssmb__dns_put16(out + 14 + n, SSMB__DNS_IN);
    return 16 + n;
}

/* Reads the name at pos (§4.1.4: labels, possibly ending in a pointer to an
   earlier name) into out[SSMB__DNS_NAME_MAX + 1] as lower-case text without
   the root dot; *next = the offset after the name where it is written.
   Pointer hops are bounded, so a loop in a hostile message ends. 0 when
   malformed. */
static int ssmb__dns_name_read(const uint8_t *m, size_t n, size_t pos, char *out, size_t *next) {
    size_t o = 0, hops = 0, i;
    int jumped = 0;
    for (;;) {
        uint8_t len;
        if (pos >= n) return 0;
        len = m[pos];
        if ((len & 0xc0) == 0xc0) {
            if (pos + 1 >= n || ++hops > 32) return 0;
            if (!jumped) *next = pos + 2;
            jumped = 1;
            pos = ((size_t)(len & 0x3f) << 8) | m[pos + 1];
            continue;
        }
        if (len & 0xc0) return 0; /* 01 and 10: label types nobody uses (RFC 6891 §5) */
        if (len == 0) break;
        if (pos + 1 + len > n || o + (o ? 1u : 0u) + len > SSMB__DNS_NAME_MAX) return 0;
        if (o) out[o++] = '.';
        for (i = 0; i < len; i++) {
            char c = (char)m[pos + 1 + i];
            if (c <= ' ' || c == '.' || (uint8_t)c >= 0x7f) return 0; /* no host name holds these */
            out[o++] = ssmb__http_lower(c);
        }
        pos += 1u + len;
    }
    if (!jumped) *next = pos + 1;
    out[o] = '\0';
    return 1;
}

/* An answer record (§4.1.3), by offsets into the message. */
typedef struct ssmb__dns_rr {
    uint32_t owner;         /* offset of the owner name */
    uint16_t type;
    uint16_t rdlen;
    uint32_t rdata;         /* offset of the data */
} ssmb__dns_rr;

/* Walks the answer section from pos: at most max records into rr. */
static int ssmb__dns_answers(const uint8_t *m, size_t n, size_t pos, size_t count, ssmb__dns_rr *rr, size_t *got) {
    char name[SSMB__DNS_NAME_MAX + 1];
    size_t i;
    for (i = 0; i < count && i < SSMB__DNS_MAX_RECORDS; i++) {
        size_t at = pos;
        if (!ssmb__dns_name_read(m, n, at, name, &pos) || pos + 10 > n) return 0;
        rr[i].owner = (uint32_t)at;
        rr[i].type = ssmb__dns_get16(m + pos);
        rr[i].rdlen = ssmb__dns_get16(m + pos + 8);
        rr[i].rdata = (uint32_t)(pos + 10);
        if (ssmb__dns_get16(m + pos + 2) != SSMB__DNS_IN) rr[i].type = 0; /* other classes: ignored */
        pos += 10u + rr[i].rdlen;
        if (pos > n) return 0;
    }
    *got = i;
    return 1;
}

/* 1 when the owner name of the record is name. */
static int ssmb__dns_owner_is(const uint8_t *m, size_t n, const ssmb__dns_rr *rr, const char *name) {
    char owner[SSMB__DNS_NAME_MAX + 1];
    size_t next;
    return ssmb__dns_name_read(m, n, rr->owner, owner, &next) && strcmp(owner, name) == 0;
}

/* Follows CNAMEs from name inside the answer (RFC 1034 §3.6.2: a server
   that resolves an alias puts the chain before the addresses). */
static int ssmb__dns_follow(const uint8_t *m, size_t n, const ssmb__dns_rr *rr, size_t count, char *name) {
    size_t step, i, next;
    for (step = 0; step < SSMB__DNS_MAX_CHAIN; step++) {
        for (i = 0; i < count; i++)
            if (rr[i].type == SSMB__DNS_CNAME && ssmb__dns_owner_is(m, n, &rr[i], name)) break;
        if (i == count) return 1;
        if (!ssmb__dns_name_read(m, n, rr[i].rdata, name, &next)) return 0;
    }
    return 0; /* a chain this long is a loop or an attack */
}

/* What one datagram said about a question. */
typedef enum ssmb__dns_outcome {
    SSMB__DNS_IGNORE = 0,   /* not an answer to it (other id, other question, not a response) */
    SSMB__DNS_ANSWER = 1,   /* addresses (possibly none: the name has no record of the type) */
    SSMB__DNS_NXDOMAIN = 2, /* the name does not exist */
    SSMB__DNS_FAILED = 3,   /* the server failed or sent nonsense: ask the next */
    SSMB__DNS_TRUNCATED = 4 /* TC: the answer does not fit in UDP */
} ssmb__dns_outcome;

/* The question section must be exactly ours (id, name, type and class). */
static int ssmb__dns_question_is(const uint8_t *m, size_t n, ssmb_str host, uint16_t qtype, size_t *end) {
    char name[SSMB__DNS_NAME_MAX + 1];
    ssmb_str want = ssmb__net_host(host);
    if (ssmb__dns_get16(m + 4) != 1 || !ssmb__dns_name_read(m, n, 12, name, end) || *end + 4 > n) return 0;
    if (!ssmb__net_ieq(ssmb_str_c(name), want)) return 0;
    if (ssmb__dns_get16(m + *end) != qtype || ssmb__dns_get16(m + *end + 2) != SSMB__DNS_IN) return 0;
    *end += 4;
    return 1;
}

/* The addresses of type qtype the answer gives name. */
static size_t ssmb__dns_collect(const uint8_t *m, size_t n, const ssmb__dns_rr *rr, size_t count, const char *name,
                                uint16_t qtype, ssmb_address *out, size_t max) {
    size_t i, got = 0, len = qtype == SSMB__DNS_A ? 4 : 16;
    for (i = 0; i < count && got < max; i++) {
        if (rr[i].type != qtype || rr[i].rdlen != len || !ssmb__dns_owner_is(m, n, &rr[i], name)) continue;
        memset(&out[got], 0, sizeof out[got]);
        out[got].family = qtype == SSMB__DNS_A ? 4 : 6;
        memcpy(out[got].bytes, m + rr[i].rdata, len);
        got++;
    }
    return got;
}

/* Reads a response to query id about host (§4.1.1): the header flags, the
   question, then the answers with CNAMEs followed. */
static ssmb__dns_outcome ssmb__dns_reply_read(const uint8_t *m, size_t n, uint16_t id, ssmb_str host, uint16_t qtype,
                                              ssmb_address *out, size_t max, size_t *got, uint32_t *rcode) {
    ssmb__dns_rr rr[SSMB__DNS_MAX_RECORDS];
    char name[SSMB__DNS_NAME_MAX + 1];
    size_t pos, count;
    *got = 0;
    if (ssmb__net_host(host).len > SSMB__DNS_NAME_MAX) return SSMB__DNS_IGNORE; /* never asked */
    if (n < 12 || ssmb__dns_get16(m) != id) return SSMB__DNS_IGNORE;
    if (!(m[2] & 0x80) || (m[2] & 0x78)) return SSMB__DNS_IGNORE; /* QR = 1, OPCODE = 0 (QUERY) */
    if (!ssmb__dns_question_is(m, n, host, qtype, &pos)) return SSMB__DNS_IGNORE;
    if (m[2] & 0x02) return SSMB__DNS_TRUNCATED;
    *rcode = m[3] & 0x0fu;
    if (*rcode == 3) return SSMB__DNS_NXDOMAIN;
    if (*rcode != 0) return SSMB__DNS_FAILED;
    if (!ssmb__dns_answers(m, n, pos, ssmb__dns_get16(m + 6), rr, &count)) return SSMB__DNS_FAILED;
    memcpy(name, host.ptr, ssmb__net_host(host).len);
    name[ssmb__net_host(host).len] = '\0';
    for (pos = 0; name[pos]; pos++) name[pos] = ssmb__http_lower(name[pos]);
    if (!ssmb__dns_follow(m, n, rr, count, name)) return SSMB__DNS_FAILED;
    *got = ssmb__dns_collect(m, n, rr, count, name, qtype, out, max);
    return SSMB__DNS_ANSWER;
}
#endif /* !SSMB_NO_SOCKETS */

// >>proxy
/* HTTPS proxies: the tunnel is opened with CONNECT (RFC 9110 §9.3.6), then
   TLS and the upgrade run inside it as if the socket went straight to the
   server. The proxy's address comes from desc.https_proxy or the
   HTTPS_PROXY / https_proxy environment variables, in the form
   http://[user[:password]@]host[:port] (the scheme may be left out; port 80
   when none is given); hosts that NO_PROXY / no_proxy names go direct. */
#if !defined(SSMB_NO_SOCKETS)

#define SSMB__PROXY_USERINFO_MAX 384   /* bytes of user:password after percent-decoding */
#define SSMB__PROXY_REPLY_MAX 4096     /* bytes of the proxy's response head */

/* The proxy an engine uses; strings live in the engine's block. */
typedef struct ssmb__proxy {
    int state;              /* 0 none, 1 usable, -1 malformed (opens through it fail) */
    char *host;             /* without brackets */
    uint16_t port;
    char *auth;             /* "Basic ..." or "" (RFC 7617) */
} ssmb__proxy;

/* 1 when host equals entry or is a name under it (entry may start with "."
   or "*."), ignoring case and a trailing dot; "*" covers everything. */
static int ssmb__no_proxy_entry(ssmb_str entry, ssmb_str host) {
    ssmb_str h;
    uint16_t port;
    if (entry.len == 1 && entry.ptr[0] == '*') return 1;
    if (entry.len >= 2 && entry.ptr[0] == '*' && entry.ptr[1] == '.')
        entry = ssmb__net_view(entry.ptr + 1, entry.len - 1); /* "*.example.com" as ".example.com" */
    if (entry.len && entry.ptr[0] == '.') entry = ssmb__net_view(entry.ptr + 1, entry.len - 1);
    if (ssmb__net_hostport(entry, &h, &port)) entry = h; /* a port, if any, is not compared */
    entry = ssmb__net_host(entry);
    if (entry.len == 0 || entry.len > host.len) return 0;
    if (!ssmb__net_ieq(entry, ssmb__net_view(host.ptr + host.len - entry.len, entry.len))) return 0;
    return entry.len == host.len || host.ptr[host.len - entry.len - 1] == '.';
}

SSMB_APIDEF int ssmb_no_proxy_match(const char *no_proxy, const char *host) {
    ssmb_str rest = ssmb_str_c(no_proxy), entry, h = ssmb_str_c(host);
    if (h.len >= 2 && h.ptr[0] == '[' && h.ptr[h.len - 1] == ']') h = ssmb__net_view(h.ptr + 1, h.len - 2);
    h = ssmb__net_host(h);
    if (h.len == 0) return 0;
    while (ssmb__net_item(&rest, &entry))
        if (entry.len && ssmb__no_proxy_entry(entry, h)) return 1;
    return 0;
}

/* RFC 3986 §2.1 percent-decoding of the user information; 0 when a '%' is
   not followed by two hex digits or the result does not fit. */
static int ssmb__percent_decode(ssmb_str s, char *out, size_t cap, size_t *len) {
    size_t i, o = 0;
    for (i = 0; i < s.len; i++) {
        int c = (uint8_t)s.ptr[i];
        if (c == '%') {
            int hi = i + 2 < s.len ? ssmb__hex_value(s.ptr[i + 1]) : -1;
            int lo = hi >= 0 ? ssmb__hex_value(s.ptr[i + 2]) : -1;
            if (lo < 0) return 0;
            c = hi * 16 + lo;
            i += 2;
        }
        if (o == cap) return 0;
        out[o++] = (char)c;
    }
    *len = o;
    return 1;
}

static int ssmb__proxy_has(ssmb_str s, const char *needle) {
    size_t i, n = strlen(needle);
    for (i = 0; i + n <= s.len; i++)
        if (memcmp(s.ptr + i, needle, n) == 0) return 1;
    return 0;
}

/* Bytes the parsed forms of a proxy text need next to it: host and the
   Proxy-Authorization value. */
static size_t ssmb__proxy_space(size_t text_len) {
    return text_len + 1 + 6 + ssmb_base64_encoded_len(SSMB__PROXY_USERINFO_MAX) + 1;
}

/* "Basic " and base64(user:password) into p->auth (RFC 7617 §2). */
static int ssmb__proxy_auth(ssmb__proxy *p, ssmb_str userinfo) {
    char plain[SSMB__PROXY_USERINFO_MAX];
    size_t n = 0, b64 = 0;
    int ok = ssmb__percent_decode(userinfo, plain, sizeof plain, &n);
    memcpy(p->auth, "Basic ", 6);
    ok = ok && ssmb_base64_encode(plain, n, p->auth + 6, ssmb_base64_encoded_len(SSMB__PROXY_USERINFO_MAX) + 1,
                                  &b64) == SSMB_OK;
    p->auth[ok ? 6 + b64 : 0] = '\0';
    ssmb__wipe(plain, sizeof plain);
    return ok;
}

/* Parses a proxy text into p (host and auth buffers sized by
   ssmb__proxy_space). An empty text means no proxy. */
static void ssmb__proxy_parse(ssmb__proxy *p, const char *text) {
    ssmb_str s = ssmb__trim(ssmb_str_c(text)), host;
    const char *at, *sep = NULL;
    size_t i;
    p->state = 0;
    p->port = 80;
    p->auth[0] = '\0';
    if (s.len == 0) return;
    p->state = -1;
    if (s.len >= 7 && ssmb__net_ieq(ssmb__net_view(s.ptr, 7), ssmb_str_c("http://")))
        s = ssmb__net_view(s.ptr + 7, s.len - 7);
    else if (ssmb__proxy_has(s, "://")) return; /* https://, socks5://: not spoken here */
    for (i = 0; i < s.len && !sep; i++)
        if (s.ptr[i] == '/' || s.ptr[i] == '?' || s.ptr[i] == '#') sep = s.ptr + i;
    if (sep) s.len = (size_t)(sep - s.ptr); /* a path after the authority says nothing */
    at = NULL;
    for (i = 0; i < s.len; i++) /* the last '@' ends the user information */
        if (s.ptr[i] == '@') at = s.ptr + i;
    if (at && at > s.ptr && !ssmb__proxy_auth(p, ssmb__net_view(s.ptr, (size_t)(at - s.ptr)))) return;
    if (at) s = ssmb__net_view(at + 1, s.len - (size_t)(at + 1 - s.ptr));
    if (!ssmb__net_hostport(s, &host, &p->port)) return;
    if (s.ptr[0] != '[' && memchr(host.ptr, ':', host.len)) return; /* IPv6 takes brackets (RFC 3986 §3.2.2) */
    for (i = 0; i < host.len; i++)
        if ((uint8_t)host.ptr[i] <= ' ' || (uint8_t)host.ptr[i] >= 0x7f) return;
    memcpy(p->host, host.ptr, host.len);
    p->host[host.len] = '\0';
    p->state = 1;
}

/* The CONNECT request for target ("host:port", authority form) into out. */
static ssmb_result ssmb__proxy_request(const ssmb__proxy *p, const char *target, char *out, size_t cap,
                                       size_t *len) {
    ssmb_http_header auth;
    ssmb_http_request req;
    memset(&req, 0, sizeof req);
    req.method = ssmb_str_c("CONNECT");
    req.target = ssmb_str_c(target);
    req.host = req.target; /* RFC 9110 §7.2: Host is the target's authority */
    if (p->auth[0]) {
        auth.name = ssmb_str_c("Proxy-Authorization");
        auth.value = ssmb_str_c(p->auth);
        req.headers = &auth;
        req.header_count = 1;
    }
    return ssmb_http_request_write(&req, out, cap, len);
}

/* Reads the proxy's reply head from in[0..len): SSMB_OK with *head_len when
   a 2xx came (the tunnel is open; bytes after the head are the server's),
   SSMB_AGAIN for more, SSMB_ERR_PROXY with *status otherwise. */
static ssmb_result ssmb__proxy_reply(const char *in, size_t len, size_t *head_len, int32_t *status) {
    ssmb_http_header headers[32];
    ssmb_http_response resp;
    ssmb_result r = ssmb_http_response_parse(in, len, headers, SSMB__COUNT_OF(headers), SSMB__PROXY_REPLY_MAX, &resp);
    *status = 0;
    if (r == SSMB_AGAIN && len < SSMB__PROXY_REPLY_MAX) return SSMB_AGAIN;
    if (r != SSMB_OK) return SSMB_ERR_PROXY;
    *status = (int32_t)resp.status;
    if (resp.status < 200 || resp.status > 299) return SSMB_ERR_PROXY;
    *head_len = resp.head_len; /* §9.3.6: a 2xx reply to CONNECT has no body */
    return SSMB_OK;
}
#endif /* !SSMB_NO_SOCKETS */

// >>engine
/* The poll engine: slots of connections, each going through name
   resolution, TCP connect, the proxy tunnel when one applies, and then the
   conn pumped between its socket and the host. One descriptor per slot at a
   time (the DNS socket, then the TCP socket), so the host's poll set is at
   most max_connections long. Memory: one block at create (engine, slots,
   poll scratch, strings), and per open the conn plus a setup block that is
   freed once the conn runs. */
#if !defined(SSMB_NO_SOCKETS)

#define SSMB__MAX_SLOTS 65535u      /* a handle holds the slot index in 16 bits */
#define SSMB__FWD_MAX_CONNS 64u     /* connections of one forward at once */
#define SSMB__IO_ROUNDS 16          /* socket reads or writes per slot per call, for fairness */
#define SSMB__STAGE_CAP 65536u      /* a burst's records, sent with one call (ssmb__eng_stage) */
#define SSMB__EVENT_ROUNDS 4        /* deliver-and-flush rounds per slot per call */

/* Where a slot is in its life. */
enum {
    SSMB__SLOT_FREE = 0,
    SSMB__SLOT_RESOLVE_HOOK = 1,    /* the host's resolve_fn has the name */
    SSMB__SLOT_RESOLVE_DNS = 2,     /* questions out to a name server */
    SSMB__SLOT_ADDRESSED = 3,       /* addresses known: connects on the next process or tick */
    SSMB__SLOT_CONNECTING = 4,      /* TCP connect in progress */
    SSMB__SLOT_TUNNEL = 5,          /* CONNECT to the proxy */
    SSMB__SLOT_RUNNING = 6,         /* the conn runs over the socket */
    SSMB__SLOT_DONE = 7             /* finished; WS_CLOSED not yet handed out */
};

/* A DNS lookup: one server at a time, both questions at once. */
typedef struct ssmb__dns_lookup {
    uint32_t server;                /* index of the server being asked */
    uint16_t id[2];                 /* query ids of the A and AAAA questions */
    uint8_t answered[2];
    uint8_t timed_out;              /* a server stayed silent */
    uint64_t server_deadline;       /* invariant: <= deadline */
    uint64_t deadline;              /* of the whole lookup */
    ssmb_address found[2][SSMB__MAX_ADDRS / 2];
    uint32_t nfound[2];
} ssmb__dns_lookup;

/* What an open needs until its conn runs. */
typedef struct ssmb__setup {
    char name[SSMB__DNS_NAME_MAX + 1];      /* to resolve: the server's name, or the proxy's */
    char target[SSMB__DNS_NAME_MAX + 10];   /* CONNECT target "host:port" or "[v6]:port" */
    uint16_t port;                          /* to connect to */
    uint8_t proxied;
    uint8_t timed_out;                      /* the last connect attempt timed out */
    int32_t last_errno;
    ssmb_address addrs[SSMB__MAX_ADDRS];
    uint32_t naddrs, next_addr;             /* invariant: next_addr <= naddrs <= SSMB__MAX_ADDRS */
    ssmb__dns_lookup dns;
    size_t io_len, io_sent;                 /* invariant: io_sent <= io_len <= sizeof io */
    uint8_t reply;                          /* 1 once the CONNECT request is out */
    uint8_t io[SSMB__PROXY_REPLY_MAX];      /* a DNS datagram, the CONNECT request, then its reply */
} ssmb__setup;

typedef struct ssmb__slot {
    uint32_t gen;                   /* 1..65535, bumped when the slot is freed */
    uint32_t phase;                 /* SSMB__SLOT_* */
    int fd;                         /* -1 when none */
    int told_fd;                    /* what the host last heard: descriptor and interest */
    uint16_t told_events;
    uint8_t opened;                 /* the upgrade is done (WS_OPEN queued or handed out) */
    uint8_t pending_open;
    uint8_t want_writable;          /* a send came back short: pieces wait for WS_WRITABLE */
    uint8_t pending_writable;
    uint8_t eof;                    /* the socket ended or failed: no more socket I/O */
    uint8_t eof_told;               /* the conn heard of it (once its input was read) */
    int32_t result, detail;         /* DONE: what WS_CLOSED reports */
    uint64_t deadline;              /* RESOLVE_HOOK, CONNECTING, TUNNEL */
    void *user_data;
    uint32_t owner;                 /* 0: the host's; else the session (index + 1) that reads its events */
    ssmb_conn *conn;                /* from open until WS_CLOSED */
    ssmb__setup *setup;             /* from open until the conn starts */
    uint8_t *stage;                 /* sealed records gathered for one send (SSMB__STAGE_CAP, made
                                       at the first burst); they go out before the conn's next bytes */
    size_t stage_off, stage_len;    /* unsent: stage[stage_off..stage_len) */
} ssmb__slot;

typedef struct ssmb__sess ssmb__sess;

struct ssmb_engine {
    ssmb_desc desc;                 /* defaults filled in; strings point into this block */
    size_t block_size;
    uint8_t *strings;               /* the copied strings, to the end of the block (wiped on free:
                                       the proxy text and its Basic value carry a password) */
    ssmb_trust *own_trust;          /* loaded from ca_file when desc.trust was not given */
    ssmb_result trust_error;        /* why none could be loaded, for opens that need one */
    ssmb__proxy proxy;
    ssmb__endpoint ns[SSMB__MAX_NS];
    uint32_t nns;
    uint32_t nslots;
    ssmb__slot *slots;
    struct pollfd *pfd;             /* scratch for tick and wait, npoll long */
    ssmb_pollfd *ready;             /* scratch for tick, npoll long */
    size_t npoll;
    uint32_t next_slot;             /* where ssmb_engine_next_event looks first (round robin) */
    uint64_t now;                   /* the last now_ms given */
    int in_event;                   /* inside event_fn: no process, tick or destroy */
    ssmb__sess **sessions;          /* max_sessions entries, NULL when free */
    uint32_t *session_gen;          /* the last generation of each session entry */
    uint64_t sessions_started;
};

/* Sessions (>>session below) take their turn in process and tick. */
static void ssmb__sessions_work(ssmb_engine *eng, const ssmb_pollfd *ready, size_t nready, uint64_t now);
static size_t ssmb__fwds_fds(ssmb_engine *eng, ssmb_pollfd *out, size_t cap, int tell);
static size_t ssmb__eng_poll_forwards(ssmb_engine *eng, size_t n);
static int ssmb__sessions_next_event(ssmb_engine *eng, ssmb_event *out);
static uint64_t ssmb__sessions_deadline(const ssmb_engine *eng);
static void ssmb__sess_reap(ssmb_engine *eng);

/* ---- create and destroy ---- */

/* The first non-empty of two environment variables, else "". */
static const char *ssmb__eng_env2(const char *a, const char *b) {
    const char *v = getenv(a);
    if (!v || !*v) v = getenv(b);
    return v ? v : "";
}

static void ssmb__eng_desc_defaults(ssmb_desc *d) {
    if (!d->random_fn) d->random_fn = ssmb_random_system;
    if (!d->utc_fn) d->utc_fn = ssmb_utc_system;
    if (!d->ca_file) d->ca_file = SSMB_SYSTEM_CA_BUNDLE;
    if (!d->https_proxy) d->https_proxy = ssmb__eng_env2("HTTPS_PROXY", "https_proxy");
    if (!d->no_proxy) d->no_proxy = ssmb__eng_env2("NO_PROXY", "no_proxy");
    if (!d->resolv_conf) d->resolv_conf = "/etc/resolv.conf";
    if (!d->hosts_file) d->hosts_file = "/etc/hosts";
    if (!d->max_connections) d->max_connections = 16;
    if (!d->max_sessions) d->max_sessions = 8;
    if (d->max_sessions > 0xffffu) d->max_sessions = 0xffffu;
    if (!d->getenv_fn) d->getenv_fn = ssmb_getenv_system;
    if (!d->metrics_interval_ms) d->metrics_interval_ms = 10000;
    if (d->max_connections > SSMB__MAX_SLOTS) d->max_connections = SSMB__MAX_SLOTS;
    if (!d->connect_timeout_ms) d->connect_timeout_ms = 10000;
    if (!d->dns_timeout_ms) d->dns_timeout_ms = 5000;
}

/* The desc's strings the engine keeps its own copies of. */
static const char **ssmb__eng_desc_string(ssmb_desc *d, int i) {
    switch (i) {
    case 0: return &d->ca_file;
    case 1: return &d->https_proxy;
    case 2: return &d->no_proxy;
    case 3: return &d->resolv_conf;
    case 4: return &d->hosts_file;
    case 5: return &d->dns_servers;
    default: return NULL;
    }
}

static size_t ssmb__eng_align16(size_t n) { return (n + 15u) & ~(size_t)15u; }

/* Descriptors the engine may poll at once: slots, then every session's
   forward (its listener and connections). */
static size_t ssmb__eng_npoll(const ssmb_desc *d) {
    return (size_t)d->max_connections + (size_t)d->max_sessions * (1u + SSMB__FWD_MAX_CONNS);
}

/* Bytes of the block: engine, slots, poll scratch, strings. */
static ssmb_result ssmb__eng_size(ssmb_desc *d, size_t *size) {
    size_t n = d->max_connections, total, i, np = ssmb__eng_npoll(d);
    const char **s;
    total = ssmb__eng_align16(sizeof(ssmb_engine)) + ssmb__eng_align16(n * sizeof(ssmb__slot)) +
            ssmb__eng_align16(np * sizeof(struct pollfd)) + ssmb__eng_align16(np * sizeof(ssmb_pollfd)) +
            ssmb__eng_align16(d->max_sessions * sizeof(ssmb__sess *)) + ssmb__eng_align16(d->max_sessions * 4u);
    for (i = 0; (s = ssmb__eng_desc_string(d, (int)i)) != NULL; i++)
        if (*s && ssmb_size_add(total, strlen(*s) + 1, &total) != SSMB_OK) return SSMB_ERR_OVERFLOW;
    return ssmb_size_add(total, ssmb__proxy_space(strlen(d->https_proxy)), size);
}

/* Hands out the next n bytes of the block. */
static void *ssmb__eng_take(uint8_t **cursor, size_t n) {
    void *p = *cursor;
    *cursor += n;
    return p;
}

/* Places everything in the block and copies the strings in. */
static void ssmb__eng_place(ssmb_engine *eng, const ssmb_desc *d, size_t size) {
    uint8_t *cur = (uint8_t *)eng + ssmb__eng_align16(sizeof *eng);
    size_t n = d->max_connections, i;
    const char **s;
    memset(eng, 0, size);
    eng->desc = *d;
    eng->block_size = size;
    eng->nslots = (uint32_t)n;
    eng->slots = (ssmb__slot *)ssmb__eng_take(&cur, ssmb__eng_align16(n * sizeof(ssmb__slot)));
    eng->npoll = ssmb__eng_npoll(d);
    eng->pfd = (struct pollfd *)ssmb__eng_take(&cur, ssmb__eng_align16(eng->npoll * sizeof(struct pollfd)));
    eng->ready = (ssmb_pollfd *)ssmb__eng_take(&cur, ssmb__eng_align16(eng->npoll * sizeof(ssmb_pollfd)));
    eng->sessions = (ssmb__sess **)ssmb__eng_take(&cur, ssmb__eng_align16(d->max_sessions * sizeof(ssmb__sess *)));
    eng->session_gen = (uint32_t *)ssmb__eng_take(&cur, ssmb__eng_align16(d->max_sessions * 4u));
    eng->strings = cur;
    for (i = 0; (s = ssmb__eng_desc_string(&eng->desc, (int)i)) != NULL; i++) {
        if (!*s) continue;
        *s = (const char *)memcpy(ssmb__eng_take(&cur, strlen(*s) + 1), *s, strlen(*s) + 1);
    }
    eng->proxy.host = (char *)ssmb__eng_take(&cur, strlen(eng->desc.https_proxy) + 1);
    eng->proxy.auth = (char *)cur;
    for (i = 0; i < n; i++) {
        eng->slots[i].gen = 1;
        eng->slots[i].fd = -1;
        eng->slots[i].told_fd = -1;
    }
}

/* Proxy, name servers and trust anchors. */
static ssmb_result ssmb__eng_setup(ssmb_engine *eng, int ca_file_given) {
    ssmb_desc *d = &eng->desc;
    ssmb_result r;
    size_t n = 0;
    ssmb__proxy_parse(&eng->proxy, d->https_proxy);
    if (d->dns_servers && *d->dns_servers) {
        r = ssmb__dns_servers_parse(d->dns_servers, eng->ns, &n);
        if (r != SSMB_OK) return r;
    } else {
        n = ssmb__resolv_conf(d->resolv_conf, eng->ns);
    }
    eng->nns = (uint32_t)n;
    if (d->trust) return SSMB_OK;
    r = ssmb_trust_load(&d->allocator, d->ca_file, &eng->own_trust);
    if (r != SSMB_OK && ca_file_given) return r;
    eng->trust_error = r;
    d->trust = eng->own_trust;
    return SSMB_OK;
}

static void ssmb__eng_free(ssmb_engine *eng) {
    ssmb_allocator a = eng->desc.allocator;
    if (eng->own_trust) ssmb_trust_destroy(eng->own_trust);
    ssmb__wipe(eng->strings, (size_t)((uint8_t *)eng + eng->block_size - eng->strings));
    ssmb__free(&a, eng, eng->block_size);
}

SSMB_APIDEF ssmb_result ssmb_engine_create(const ssmb_desc *desc, ssmb_engine **out) {
    ssmb_desc d;
    ssmb_engine *eng;
    size_t size = 0;
    ssmb_result r;
    if (!out) return SSMB_ERR_INVALID_ARG;
    *out = NULL;
    if (!desc || !ssmb__allocator_valid(&desc->allocator)) return SSMB_ERR_INVALID_ARG;
    d = *desc;
    ssmb__eng_desc_defaults(&d);
    if (ssmb__eng_size(&d, &size) != SSMB_OK) return SSMB_ERR_OVERFLOW;
    eng = (ssmb_engine *)ssmb__alloc(&d.allocator, size);
    if (!eng) return SSMB_ERR_NOMEM;
    ssmb__eng_place(eng, &d, size);
    r = ssmb__eng_setup(eng, desc->ca_file != NULL);
    if (r != SSMB_OK) {
        ssmb__eng_free(eng);
        return r;
    }
    *out = eng;
    return SSMB_OK;
}

SSMB_APIDEF const ssmb_desc *ssmb_engine_desc(const ssmb_engine *eng) { return eng ? &eng->desc : NULL; }

/* ---- slots and handles ---- */

static ssmb_ws ssmb__slot_handle(const ssmb_engine *eng, const ssmb__slot *s) {
    ssmb_ws ws;
    ws.id = (s->gen << 16) | (uint32_t)(s - eng->slots + 1);
    return ws;
}

/* The slot a handle names, or NULL for {0}, a stale or a foreign handle. */
static ssmb__slot *ssmb__slot_of(ssmb_engine *eng, ssmb_ws ws) {
    uint32_t index = ws.id & 0xffffu;
    ssmb__slot *s;
    if (!eng || index == 0 || index > eng->nslots) return NULL;
    s = &eng->slots[index - 1];
    return s->phase != SSMB__SLOT_FREE && s->gen == ws.id >> 16 ? s : NULL;
}

/* Closes the slot's socket; with tell, the host hears first that the
   descriptor is gone (before its number can be reused). */
static void ssmb__slot_close_fd(ssmb_engine *eng, ssmb__slot *s, int tell) {
    if (s->fd < 0) return;
    if (s->told_fd == s->fd) {
        if (tell && s->told_events && eng->desc.fd_change_fn)
            eng->desc.fd_change_fn(s->fd, 0, eng->desc.fd_change_user_data);
        s->told_fd = -1;
        s->told_events = 0;
    }
    close(s->fd);
    s->fd = -1;
}

static void ssmb__slot_drop_setup(ssmb_engine *eng, ssmb__slot *s) {
    if (s->setup) ssmb__free(&eng->desc.allocator, s->setup, sizeof *s->setup);
    s->setup = NULL;
}

/* Ends a slot whose conn never ran (or is given up): WS_CLOSED reports r. */
static void ssmb__slot_fail(ssmb_engine *eng, ssmb__slot *s, ssmb_result r, int32_t detail) {
    ssmb__slot_close_fd(eng, s, 1);
    ssmb__slot_drop_setup(eng, s);
    s->phase = SSMB__SLOT_DONE;
    s->result = (int32_t)r;
    s->detail = detail;
}

/* Frees everything the slot holds; its handle goes stale. */
static void ssmb__slot_release(ssmb_engine *eng, ssmb__slot *s, int tell) {
    uint32_t gen = s->gen == 0xffffu ? 1u : s->gen + 1u;
    ssmb__slot_close_fd(eng, s, tell);
    ssmb__slot_drop_setup(eng, s);
    if (s->stage) ssmb__free(&eng->desc.allocator, s->stage, SSMB__STAGE_CAP);
    if (s->conn) ssmb_conn_destroy(s->conn);
    memset(s, 0, sizeof *s);
    s->gen = gen;
    s->fd = -1;
    s->told_fd = -1;
}

/* ---- the conn over its socket ---- */

/* Socket bytes into the conn, until it takes no more or the socket has none. */
static void ssmb__eng_pump_in(ssmb__slot *s, uint64_t now) {
    int round;
    /* A session may hold a piece across turns (it reads it in place): no
       read may move the input under it until the session takes the next. */
    if (s->owner && !(ssmb_conn_wants(s->conn) & SSMB_WANT_READ)) return;
    for (round = 0; round < SSMB__IO_ROUNDS && !s->eof; round++) {
        size_t cap = 0;
        uint8_t *buf = ssmb_conn_recv_buf(s->conn, &cap);
        ssize_t n;
        if (!buf || cap == 0) return;
        n = recv(s->fd, buf, cap, 0);
        if (n > 0) {
            ssmb_conn_recv_ack(s->conn, (size_t)n, now);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && ssmb__net_again(errno)) return;
        s->eof = 1; /* end of file, or a reset: the conn hears of it once it read what came before */
    }
}

/* The staged records onto the socket; 1 once none wait. */
static int ssmb__eng_unstage(ssmb__slot *s) {
    while (s->stage_len > s->stage_off && !s->eof) {
        ssize_t n = send(s->fd, s->stage + s->stage_off, s->stage_len - s->stage_off, SSMB__MSG_NOSIGNAL);
        if (n > 0) {
            s->stage_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && ssmb__net_again(errno)) return 0;
        s->eof = 1;
    }
    s->stage_off = s->stage_len = 0;
    return !s->eof;
}

/* The conn's sealed bytes into the stage, as far as they fit: a burst of
   records then costs one send, not one each (on loopback each send also
   runs the receiver's side of TCP and wakes it). 1 when the conn has none
   left; 0 when the stage is full or cannot be had (then pump_out sends). */
static int ssmb__eng_stage(ssmb_engine *eng, ssmb__slot *s) {
    if (s->eof) return 0;
    if (!s->stage) {
        s->stage = (uint8_t *)ssmb__alloc(&eng->desc.allocator, SSMB__STAGE_CAP);
        if (!s->stage) return 0;
    }
    for (;;) {
        size_t len = 0, room = SSMB__STAGE_CAP - s->stage_len;
        const uint8_t *p = ssmb_conn_send_buf(s->conn, &len);
        if (!p || len == 0) return 1;
        if (room < len) return 0;
        memcpy(s->stage + s->stage_len, p, len);
        s->stage_len += len;
        ssmb_conn_send_ack(s->conn, len);
    }
}

/* The conn's bytes onto the socket (after what was staged), until it has
   none or the socket is full. */
static void ssmb__eng_pump_out(ssmb__slot *s) {
    int round;
    if (!ssmb__eng_unstage(s)) return;
    for (round = 0; round < SSMB__IO_ROUNDS && !s->eof; round++) {
        size_t len = 0;
        const uint8_t *p = ssmb_conn_send_buf(s->conn, &len);
        ssize_t n;
        if (!p || len == 0) return;
        n = send(s->fd, p, len, SSMB__MSG_NOSIGNAL);
        if (n > 0) {
            ssmb_conn_send_ack(s->conn, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && ssmb__net_again(errno)) return;
        s->eof = 1;
    }
}

/* After I/O: WS_OPEN once the upgrade is done, WS_WRITABLE once send space
   is back, and the socket closed once the conn is finished. */
static void ssmb__eng_run_check(ssmb_engine *eng, ssmb__slot *s) {
    ssmb_conn_state state = ssmb_conn_get_state(s->conn);
    int32_t detail = 0;
    ssmb_result last = ssmb_conn_last_error(s->conn, &detail);
    /* A close that completed cleanly means the upgrade had been done, even
       when both came in one read. */
    if (!s->opened && (state == SSMB_CONN_OPEN || state == SSMB_CONN_CLOSING ||
                       (state == SSMB_CONN_CLOSED && last == SSMB_CLOSED))) {
        s->opened = 1;
        s->pending_open = 1;
    }
    if (s->want_writable && ssmb_conn_send_space(s->conn) > 0) {
        s->want_writable = 0;
        s->pending_writable = 1;
    }
    /* Finished (and nothing staged waits); or closed with output the dead socket will never take. */
    if (((ssmb_conn_wants(s->conn) & SSMB_WANT_CLOSED) && (s->stage_len == s->stage_off || s->eof)) ||
        (state == SSMB_CONN_CLOSED && s->eof)) {
        ssmb__slot_close_fd(eng, s, 1);
        s->phase = SSMB__SLOT_DONE;
        s->result = (int32_t)last;
        s->detail = detail;
    }
}

static void ssmb__eng_run_work(ssmb_engine *eng, ssmb__slot *s, unsigned revents, uint64_t now) {
    if (revents & (SSMB_POLLIN | SSMB_POLLERR | SSMB_POLLHUP)) ssmb__eng_pump_in(s, now);
    ssmb__eng_pump_out(s);
    if (ssmb_conn_next_deadline(s->conn) <= now) {
        ssmb_conn_tick(s->conn, now);
        ssmb__eng_pump_out(s); /* a ping or a close the timers queued */
    }
    ssmb__eng_run_check(eng, s);
}

/* The tunnel (or the direct socket) is up: the conn starts its TLS
   handshake and upgrade. */
static void ssmb__slot_begin(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb_result r = ssmb_conn_start(s->conn, now);
    ssmb__slot_drop_setup(eng, s);
    if (r < 0) {
        int32_t detail = 0;
        ssmb_result last = ssmb_conn_last_error(s->conn, &detail);
        ssmb__slot_fail(eng, s, last < 0 ? last : r, detail);
        return;
    }
    s->phase = SSMB__SLOT_RUNNING;
    ssmb__eng_run_work(eng, s, 0, now);
}

/* ---- the proxy tunnel ---- */

static void ssmb__tunnel_send(ssmb_engine *eng, ssmb__slot *s) {
    ssmb__setup *st = s->setup;
    while (st->io_sent < st->io_len) {
        ssize_t n = send(s->fd, st->io + st->io_sent, st->io_len - st->io_sent, SSMB__MSG_NOSIGNAL);
        if (n > 0) {
            st->io_sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && ssmb__net_again(errno)) return;
        ssmb__slot_fail(eng, s, SSMB_ERR_PROXY, 0);
        return;
    }
    st->reply = 1;
    st->io_len = 0;
}

static void ssmb__tunnel_recv(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb__setup *st = s->setup;
    size_t head = 0;
    int32_t status = 0;
    ssmb_result r;
    ssize_t n;
    do n = recv(s->fd, st->io + st->io_len, sizeof st->io - st->io_len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && ssmb__net_again(errno)) return;
    if (n <= 0) {
        ssmb__slot_fail(eng, s, SSMB_ERR_PROXY, 0); /* closed before it answered */
        return;
    }
    st->io_len += (size_t)n;
    r = ssmb__proxy_reply((const char *)st->io, st->io_len, &head, &status);
    if (r == SSMB_AGAIN) return;
    /* Nothing may follow the head: TLS (or the upgrade) speaks first, so
       early bytes mean a proxy that does not tunnel. */
    if (r == SSMB_OK && head != st->io_len) r = SSMB_ERR_PROXY;
    if (r != SSMB_OK) ssmb__slot_fail(eng, s, SSMB_ERR_PROXY, status);
    else ssmb__slot_begin(eng, s, now);
}

static void ssmb__tunnel_work(ssmb_engine *eng, ssmb__slot *s, unsigned revents, uint64_t now) {
    if (revents && !s->setup->reply) ssmb__tunnel_send(eng, s);
    if (revents && s->phase == SSMB__SLOT_TUNNEL && s->setup->reply) ssmb__tunnel_recv(eng, s, now);
    if (s->phase == SSMB__SLOT_TUNNEL && now >= s->deadline) ssmb__slot_fail(eng, s, SSMB_ERR_TIMEOUT, 0);
}

static void ssmb__tunnel_start(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb__setup *st = s->setup;
    if (ssmb__proxy_request(&eng->proxy, st->target, (char *)st->io, sizeof st->io, &st->io_len) != SSMB_OK) {
        ssmb__slot_fail(eng, s, SSMB_ERR_PROXY, 0);
        return;
    }
    st->io_sent = 0;
    st->reply = 0;
    s->phase = SSMB__SLOT_TUNNEL;
    s->deadline = now + eng->desc.connect_timeout_ms;
    ssmb__tunnel_work(eng, s, SSMB_POLLOUT, now);
}

/* ---- connecting ---- */

static void ssmb__slot_connected(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    if (s->setup->proxied) ssmb__tunnel_start(eng, s, now);
    else ssmb__slot_begin(eng, s, now);
}

/* Tries the addresses in turn until a connect starts; when none is left,
   WS_CLOSED says why the last one failed. */
static void ssmb__slot_connect_next(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb__setup *st = s->setup;
    ssmb__slot_close_fd(eng, s, 1);
    while (st->next_addr < st->naddrs) {
        int err = 0;
        ssmb_result r = ssmb__net_connect(&st->addrs[st->next_addr++], st->port, SOCK_STREAM, &s->fd, &err);
        if (r == SSMB_OK) {
            ssmb__slot_connected(eng, s, now);
            return;
        }
        if (r == SSMB_AGAIN) {
            s->phase = SSMB__SLOT_CONNECTING;
            s->deadline = now + eng->desc.connect_timeout_ms;
            return;
        }
        st->last_errno = err;
        st->timed_out = 0;
    }
    ssmb__slot_fail(eng, s, st->timed_out ? SSMB_ERR_TIMEOUT : SSMB_ERR_CONNECT, st->last_errno);
}

static void ssmb__slot_connect_work(ssmb_engine *eng, ssmb__slot *s, unsigned revents, uint64_t now) {
    ssmb__setup *st = s->setup;
    int status = revents ? ssmb__net_connect_status(s->fd) : -1;
    if (status == 0) {
        ssmb__slot_connected(eng, s, now);
    } else if (status > 0) {
        st->last_errno = status;
        st->timed_out = 0;
        ssmb__slot_connect_next(eng, s, now);
    } else if (now >= s->deadline) {
        st->last_errno = ETIMEDOUT;
        st->timed_out = 1;
        ssmb__slot_connect_next(eng, s, now);
    }
}

/* ---- resolving ---- */

/* The lookup is over: IPv4 addresses first, then IPv6. */
static void ssmb__dns_finish(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb__setup *st = s->setup;
    ssmb__dns_lookup *d = &st->dns;
    uint32_t q, i;
    st->naddrs = 0;
    for (q = 0; q < 2; q++)
        for (i = 0; i < d->nfound[q]; i++) st->addrs[st->naddrs++] = d->found[q][i];
    ssmb__slot_close_fd(eng, s, 1);
    if (st->naddrs == 0) ssmb__slot_fail(eng, s, SSMB_ERR_DNS, 0);
    else ssmb__slot_connect_next(eng, s, now);
}

/* Opens a UDP socket connected to the current server (so only its
   datagrams come back) and sends both questions with fresh random ids. */
static ssmb_result ssmb__dns_send(ssmb_engine *eng, ssmb__slot *s) {
    ssmb__setup *st = s->setup;
    ssmb__dns_lookup *d = &st->dns;
    const ssmb__endpoint *ns = &eng->ns[d->server];
    uint8_t rnd[4];
    int q, err = 0;
    ssmb__slot_close_fd(eng, s, 1);
    if (eng->desc.random_fn(rnd, sizeof rnd, eng->desc.random_user_data) != SSMB_OK) return SSMB_ERR_NO_RANDOM;
    if (ssmb__net_connect(&ns->addr, ns->port, SOCK_DGRAM, &s->fd, &err) != SSMB_OK) return SSMB_ERR_IO;
    for (q = 0; q < 2; q++) {
        size_t n;
        d->id[q] = ssmb__dns_get16(rnd + 2 * q);
        d->answered[q] = 0;
        d->nfound[q] = 0;
        n = ssmb__dns_query_write(d->id[q], ssmb_str_c(st->name), q ? SSMB__DNS_AAAA : SSMB__DNS_A, st->io);
        if (send(s->fd, st->io, n, SSMB__MSG_NOSIGNAL) != (ssize_t)n) return SSMB_ERR_IO;
    }
    return SSMB_OK;
}

/* Asks the current server, or the next one that can be asked; when none is
   left, the lookup failed. Each server gets an equal share of
   dns_timeout_ms. */
static void ssmb__dns_ask(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb__dns_lookup *d = &s->setup->dns;
    uint64_t share = eng->desc.dns_timeout_ms / eng->nns;
    for (; d->server < eng->nns; d->server++) {
        ssmb_result r = ssmb__dns_send(eng, s);
        if (r == SSMB_ERR_NO_RANDOM) break;
        if (r != SSMB_OK) continue;
        d->server_deadline = SSMB__MIN(now + (share ? share : 1), d->deadline);
        return;
    }
    if (d->server < eng->nns) ssmb__slot_fail(eng, s, SSMB_ERR_NO_RANDOM, 0);
    else ssmb__slot_fail(eng, s, d->timed_out ? SSMB_ERR_TIMEOUT : SSMB_ERR_DNS, 0);
}

static void ssmb__dns_next(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    s->setup->dns.server++;
    ssmb__dns_ask(eng, s, now);
}

static void ssmb__dns_apply(ssmb_engine *eng, ssmb__slot *s, int q, ssmb__dns_outcome o, size_t got,
                            uint32_t rcode, uint64_t now) {
    ssmb__dns_lookup *d = &s->setup->dns;
    switch (o) {
    case SSMB__DNS_ANSWER:
        d->answered[q] = 1;
        d->nfound[q] = (uint32_t)got;
        if (d->answered[0] && d->answered[1]) ssmb__dns_finish(eng, s, now);
        break;
    case SSMB__DNS_NXDOMAIN: ssmb__slot_fail(eng, s, SSMB_ERR_DNS, (int32_t)rcode); break;
    case SSMB__DNS_TRUNCATED: ssmb__slot_fail(eng, s, SSMB_ERR_DNS, 0); break; /* no TCP fallback */
    default: ssmb__dns_next(eng, s, now); break;
    }
}

/* One datagram: an answer to one of the two questions, or ignored. */
static void ssmb__dns_datagram(ssmb_engine *eng, ssmb__slot *s, size_t n, uint64_t now) {
    ssmb__setup *st = s->setup;
    ssmb__dns_lookup *d = &st->dns;
    int q;
    for (q = 0; q < 2; q++) {
        uint32_t rcode = 0;
        size_t got = 0;
        ssmb__dns_outcome o;
        if (d->answered[q]) continue;
        o = ssmb__dns_reply_read(st->io, n, d->id[q], ssmb_str_c(st->name), q ? SSMB__DNS_AAAA : SSMB__DNS_A,
                                 d->found[q], SSMB__MAX_ADDRS / 2, &got, &rcode);
        if (o == SSMB__DNS_IGNORE) continue;
        ssmb__dns_apply(eng, s, q, o, got, rcode, now);
        return;
    }
}

static void ssmb__dns_read(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    int round;
    for (round = 0; round < SSMB__IO_ROUNDS && s->phase == SSMB__SLOT_RESOLVE_DNS; round++) {
        ssize_t n = recv(s->fd, s->setup->io, sizeof s->setup->io, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && ssmb__net_again(errno)) return;
        if (n < 0) { /* ICMP unreachable: nobody serves DNS there */
            ssmb__dns_next(eng, s, now);
            return;
        }
        ssmb__dns_datagram(eng, s, (size_t)n, now);
    }
}

static void ssmb__dns_work(ssmb_engine *eng, ssmb__slot *s, unsigned revents, uint64_t now) {
    ssmb__dns_lookup *d = &s->setup->dns;
    if (revents) ssmb__dns_read(eng, s, now);
    if (s->phase != SSMB__SLOT_RESOLVE_DNS || now < d->server_deadline) return;
    if (d->nfound[0] + d->nfound[1] > 0) { /* one question answered with addresses: enough */
        ssmb__dns_finish(eng, s, now);
        return;
    }
    d->timed_out = 1;
    if (now >= d->deadline) ssmb__slot_fail(eng, s, SSMB_ERR_TIMEOUT, 0);
    else ssmb__dns_next(eng, s, now);
}

static void ssmb__dns_start(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb__dns_lookup *d = &s->setup->dns;
    memset(d, 0, sizeof *d);
    d->deadline = now + eng->desc.dns_timeout_ms;
    s->phase = SSMB__SLOT_RESOLVE_DNS;
    if (ssmb__dns_query_write(0, ssmb_str_c(s->setup->name), SSMB__DNS_A, s->setup->io) == 0) {
        ssmb__slot_fail(eng, s, SSMB_ERR_DNS, 0); /* no name DNS could be asked about */
        return;
    }
    ssmb__dns_ask(eng, s, now);
}

/* The host's resolve_fn; it may answer with ssmb_engine_resolved from
   inside the call, or later. */
static void ssmb__eng_resolve_hook(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb_ws ws = ssmb__slot_handle(eng, s);
    ssmb_result r;
    s->phase = SSMB__SLOT_RESOLVE_HOOK;
    s->deadline = now + eng->desc.dns_timeout_ms;
    r = eng->desc.resolve_fn(eng, ws.id, s->setup->name, eng->desc.resolve_user_data);
    if (ssmb__slot_of(eng, ws) != s) return; /* aborted from inside */
    if (r < 0 && s->phase == SSMB__SLOT_RESOLVE_HOOK) ssmb__slot_fail(eng, s, SSMB_ERR_DNS, (int32_t)r);
    else if (s->phase == SSMB__SLOT_ADDRESSED) ssmb__slot_connect_next(eng, s, now);
}

/* IP literal, then the host's resolver, or the hosts file, "localhost",
   and DNS. */
static void ssmb__eng_resolve_start(ssmb_engine *eng, ssmb__slot *s, uint64_t now) {
    ssmb__setup *st = s->setup;
    ssmb_str name = ssmb_str_c(st->name);
    size_t n = ssmb__net_ip(name, &st->addrs[0]) ? 1 : 0;
    if (n == 0 && eng->desc.resolve_fn) {
        ssmb__eng_resolve_hook(eng, s, now);
        return;
    }
    if (n == 0) n = ssmb__hosts_lookup(eng->desc.hosts_file, name, st->addrs, SSMB__MAX_ADDRS);
    if (n == 0) n = ssmb__net_localhost(name, st->addrs, SSMB__MAX_ADDRS);
    if (n == 0) {
        ssmb__dns_start(eng, s, now);
        return;
    }
    st->naddrs = (uint32_t)n;
    ssmb__slot_connect_next(eng, s, now);
}

SSMB_APIDEF ssmb_result ssmb_engine_resolved(ssmb_engine *eng, uint32_t request, const ssmb_address *addrs, size_t n) {
    ssmb_ws ws;
    ssmb__slot *s;
    size_t i;
    ws.id = request;
    s = ssmb__slot_of(eng, ws);
    if (!s || s->phase != SSMB__SLOT_RESOLVE_HOOK) return SSMB_ERR_INVALID_STATE;
    if (n && !addrs) return SSMB_ERR_INVALID_ARG;
    for (i = 0; i < n && s->setup->naddrs < SSMB__MAX_ADDRS; i++)
        if (addrs[i].family == 4 || addrs[i].family == 6) s->setup->addrs[s->setup->naddrs++] = addrs[i];
    if (s->setup->naddrs == 0) ssmb__slot_fail(eng, s, SSMB_ERR_DNS, 0);
    else s->phase = SSMB__SLOT_ADDRESSED; /* connects when it next has the time */
    return SSMB_OK;
}

/* ---- opening ---- */

/* 1 when the connection goes through the proxy: a secure URL whose host
   NO_PROXY does not exempt. */
static int ssmb__eng_wants_proxy(const ssmb_engine *eng, const ssmb_url *u) {
    char host[SSMB__DNS_NAME_MAX + 1];
    if (eng->proxy.state == 0 || !u->secure) return 0;
    memcpy(host, u->host.ptr, u->host.len);
    host[u->host.len] = '\0';
    return !ssmb_no_proxy_match(eng->desc.no_proxy, host);
}

/* Decimal text of a port after p; returns the end. */
static char *ssmb__eng_put_port(char *p, uint16_t port) {
    char digits[5];
    int n = 0;
    do {
        digits[n++] = (char)('0' + port % 10);
        port = (uint16_t)(port / 10);
    } while (port);
    while (n) *p++ = digits[--n];
    *p = '\0';
    return p;
}

/* What to resolve and connect to: the server itself, or the proxy with the
   server as the CONNECT target (RFC 9110 §9.3.6: authority form, an IPv6
   literal in brackets). */
static void ssmb__eng_route(const ssmb_engine *eng, ssmb__setup *st, const ssmb_url *u, int proxied) {
    char *t = st->target;
    ssmb_str name = proxied ? ssmb_str_c(eng->proxy.host) : u->host;
    memcpy(st->name, name.ptr, name.len);
    st->name[name.len] = '\0';
    st->port = proxied ? eng->proxy.port : u->port;
    st->proxied = (uint8_t)proxied;
    if (u->ipv6_literal) *t++ = '[';
    memcpy(t, u->host.ptr, u->host.len);
    t += u->host.len;
    if (u->ipv6_literal) *t++ = ']';
    *t++ = ':';
    ssmb__eng_put_port(t, u->port);
}

/* Everything an open can refuse before it takes a slot. */
static ssmb_result ssmb__eng_open_check(const ssmb_engine *eng, const ssmb_conn_desc *desc, const ssmb_url *u,
                                    int *proxied) {
    int tls = desc->tls_mode == SSMB_TLS_INTERNAL || (desc->tls_mode == SSMB_TLS_AUTO && u->secure);
    if (u->host.len == 0 || u->host.len > SSMB__DNS_NAME_MAX) return SSMB_ERR_INVALID_ARG;
    *proxied = ssmb__eng_wants_proxy(eng, u);
    if (*proxied && (eng->proxy.state < 0 || strlen(eng->proxy.host) > SSMB__DNS_NAME_MAX)) return SSMB_ERR_PROXY;
    if (tls && !desc->trust && !eng->desc.trust && eng->trust_error < 0) return eng->trust_error;
    return SSMB_OK;
}

static ssmb__slot *ssmb__slot_free_one(ssmb_engine *eng) {
    uint32_t i;
    for (i = 0; i < eng->nslots; i++)
        if (eng->slots[i].phase == SSMB__SLOT_FREE) return &eng->slots[i];
    return NULL;
}

/* The setup block and the conn (with the engine's hooks). */
static ssmb_result ssmb__slot_open(ssmb_engine *eng, ssmb__slot *s, const ssmb_conn_desc *desc) {
    ssmb_conn_desc cd = *desc;
    ssmb_result r;
    s->setup = (ssmb__setup *)ssmb__alloc(&eng->desc.allocator, sizeof *s->setup);
    if (!s->setup) return SSMB_ERR_NOMEM;
    memset(s->setup, 0, sizeof *s->setup);
    cd.allocator = eng->desc.allocator;
    cd.logger = eng->desc.logger;
    cd.random_fn = eng->desc.random_fn;
    cd.random_user_data = eng->desc.random_user_data;
    cd.utc_fn = eng->desc.utc_fn;
    cd.utc_user_data = eng->desc.utc_user_data;
    if (!cd.trust) cd.trust = eng->desc.trust;
    r = ssmb_conn_create(&cd, &s->conn);
    if (r != SSMB_OK) {
        s->conn = NULL;
        ssmb__slot_drop_setup(eng, s);
    }
    return r;
}

static ssmb_result ssmb__eng_open(ssmb_engine *eng, const ssmb_conn_desc *desc, void *user_data, uint32_t owner,
                                  uint64_t now_ms, ssmb_ws *out) {
    ssmb_url url;
    ssmb__slot *s;
    ssmb_result r;
    int proxied = 0;
    r = ssmb_url_parse(desc->url, strlen(desc->url), &url);
    if (r == SSMB_OK) r = ssmb__eng_open_check(eng, desc, &url, &proxied);
    if (r != SSMB_OK) return r;
    s = ssmb__slot_free_one(eng);
    if (!s) return SSMB_ERR_LIMIT;
    r = ssmb__slot_open(eng, s, desc);
    if (r != SSMB_OK) return r;
    ssmb__eng_route(eng, s->setup, &url, proxied);
    s->user_data = user_data;
    s->owner = owner;
    s->phase = SSMB__SLOT_ADDRESSED; /* taken; resolve_start sets the real phase */
    eng->now = now_ms;
    *out = ssmb__slot_handle(eng, s);
    ssmb__eng_resolve_start(eng, s, now_ms);
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_engine_ws_open(ssmb_engine *eng, const ssmb_conn_desc *desc, void *user_data,
                                            uint64_t now_ms, ssmb_ws *out) {
    if (out) out->id = 0;
    if (!eng || !desc || !desc->url || !out || desc->request) return SSMB_ERR_INVALID_ARG;
    return ssmb__eng_open(eng, desc, user_data, 0, now_ms, out);
}

/* A connection whose events a session reads (request mode or its WebSocket). */
static ssmb_result ssmb__eng_open_internal(ssmb_engine *eng, const ssmb_conn_desc *desc, uint32_t owner,
                                           uint64_t now, ssmb_ws *out) {
    out->id = 0;
    return ssmb__eng_open(eng, desc, NULL, owner, now, out);
}

/* ---- using an open WebSocket ---- */

SSMB_APIDEF ssmb_result ssmb_engine_ws_send(ssmb_engine *eng, ssmb_ws ws, uint32_t opcode, const void *data,
                                            size_t len, int final, size_t *accepted) {
    ssmb__slot *s = ssmb__slot_of(eng, ws);
    size_t taken = 0;
    ssmb_result r;
    if (accepted) *accepted = 0;
    if (!s) return SSMB_ERR_INVALID_STATE;
    if (len && !data) return SSMB_ERR_INVALID_ARG;
    if (s->phase == SSMB__SLOT_RUNNING || s->phase == SSMB__SLOT_DONE)
        r = ssmb_conn_send_message(s->conn, opcode, data, len, final, &taken);
    else
        r = SSMB_AGAIN; /* not open yet: WS_OPEN, then WS_WRITABLE */
    if (r == SSMB_AGAIN || (r == SSMB_OK && taken < len)) s->want_writable = 1;
    if (accepted) *accepted = taken;
    return r;
}

SSMB_APIDEF size_t ssmb_engine_ws_send_space(ssmb_engine *eng, ssmb_ws ws) {
    ssmb__slot *s = ssmb__slot_of(eng, ws);
    return s && s->phase == SSMB__SLOT_RUNNING ? ssmb_conn_send_space(s->conn) : 0;
}

SSMB_APIDEF ssmb_result ssmb_engine_ws_close(ssmb_engine *eng, ssmb_ws ws, uint32_t code, const char *reason,
                                             uint64_t now_ms) {
    ssmb__slot *s = ssmb__slot_of(eng, ws);
    if (!s) return SSMB_ERR_INVALID_STATE;
    if (s->phase == SSMB__SLOT_DONE) return SSMB_OK;
    if (s->phase == SSMB__SLOT_RUNNING && s->opened) return ssmb_conn_close(s->conn, code, reason, now_ms);
    ssmb__slot_fail(eng, s, SSMB_CLOSED, 0); /* before the upgrade there is nobody to say goodbye to */
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_engine_ws_abort(ssmb_engine *eng, ssmb_ws ws) {
    ssmb__slot *s = ssmb__slot_of(eng, ws);
    if (s) ssmb__slot_release(eng, s, 1);
}

SSMB_APIDEF ssmb_conn *ssmb_engine_ws_conn(ssmb_engine *eng, ssmb_ws ws) {
    ssmb__slot *s = ssmb__slot_of(eng, ws);
    return s ? s->conn : NULL;
}

/* ---- events ---- */

/* The socket ended: the conn hears of it once it has read what came before
   (a peer's close frame and the end of the stream often arrive together,
   and the frame is only read when its piece is asked for). */
static void ssmb__eng_give_eof(ssmb_engine *eng, ssmb__slot *s) {
    if (s->phase != SSMB__SLOT_RUNNING || !s->eof || s->eof_told) return;
    s->eof_told = 1;
    ssmb_conn_recv_eof(s->conn, eng->now);
    ssmb__eng_run_check(eng, s);
}

/* The next event of one slot, in order: open, writable, pieces of
   messages, closed. Pieces wait while the host's last send came back short,
   so a host that forwards what it receives never holds more than one piece
   (back-pressure). Handing out WS_CLOSED frees the slot. */
static int ssmb__slot_event(ssmb_engine *eng, ssmb__slot *s, ssmb_event *ev) {
    memset(ev, 0, sizeof *ev);
    ev->ws = ssmb__slot_handle(eng, s);
    ev->user_data = s->user_data;
    if (s->pending_open) {
        s->pending_open = 0;
        ev->type = SSMB_EVENT_WS_OPEN;
    } else if (s->pending_writable) {
        s->pending_writable = 0;
        ev->type = SSMB_EVENT_WS_WRITABLE;
    } else if (s->opened && (!s->want_writable || s->owner) && ssmb_conn_recv_message(s->conn, &ev->piece) == SSMB_OK) {
        /* (a session always reads: the acknowledgements it gets free the window its sends wait for) */
        ev->type = SSMB_EVENT_WS_MESSAGE;
    } else {
        ssmb__eng_give_eof(eng, s);
        if (s->phase == SSMB__SLOT_DONE) {
            ev->type = SSMB_EVENT_WS_CLOSED;
            ev->result = s->result;
            ev->detail = s->detail;
            ssmb__slot_release(eng, s, 1);
        }
    }
    return ev->type != SSMB_EVENT_NONE;
}

/* Calls event_fn for each event of the slot, until it has none or the
   callback freed it. */
static void ssmb__eng_deliver(ssmb_engine *eng, ssmb__slot *s) {
    uint32_t gen = s->gen;
    ssmb_event ev;
    if (s->owner) return; /* a session reads it */
    while (s->gen == gen && s->phase != SSMB__SLOT_FREE && ssmb__slot_event(eng, s, &ev)) {
        eng->in_event = 1;
        eng->desc.event_fn(eng, &ev, eng->desc.event_user_data);
        eng->in_event = 0;
    }
}

SSMB_APIDEF ssmb_result ssmb_engine_next_event(ssmb_engine *eng, ssmb_event *out) {
    uint32_t k;
    if (!eng || !out) return SSMB_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (eng->desc.event_fn) return SSMB_ERR_INVALID_STATE;
    for (k = 0; k < eng->nslots; k++) {
        uint32_t i = (eng->next_slot + k) % eng->nslots;
        ssmb__slot *s = &eng->slots[i];
        if (s->phase == SSMB__SLOT_FREE || s->owner || !ssmb__slot_event(eng, s, out)) continue;
        eng->next_slot = (i + 1) % eng->nslots; /* one event per slot per round */
        return SSMB_OK;
    }
    if (ssmb__sessions_next_event(eng, out)) return SSMB_OK;
    ssmb__sess_reap(eng);
    return SSMB_AGAIN;
}

/* ---- descriptors, interest and time ---- */

/* The poll events the slot's descriptor wants now. */
static uint16_t ssmb__eng_interest(const ssmb__slot *s) {
    unsigned w;
    if (s->fd < 0) return 0;
    switch (s->phase) {
    case SSMB__SLOT_RESOLVE_DNS: return SSMB_POLLIN;
    case SSMB__SLOT_CONNECTING: return SSMB_POLLOUT;
    case SSMB__SLOT_TUNNEL: return s->setup->reply ? SSMB_POLLIN : SSMB_POLLOUT;
    case SSMB__SLOT_RUNNING:
        if (s->eof) return 0;
        w = ssmb_conn_wants(s->conn);
        if (s->stage_len > s->stage_off) w |= SSMB_WANT_WRITE;
        return (uint16_t)(((w & SSMB_WANT_READ) ? SSMB_POLLIN : 0) | ((w & SSMB_WANT_WRITE) ? SSMB_POLLOUT : 0));
    default: return 0;
    }
}

/* 1 when the host's picture of the slot's descriptor is out of date. */
static int ssmb__eng_stale(const ssmb__slot *s) {
    uint16_t ev = ssmb__eng_interest(s);
    if (ev == 0 && s->told_events == 0) return 0;
    return s->told_fd != s->fd || s->told_events != ev;
}

static void ssmb__eng_told(ssmb__slot *s) {
    s->told_fd = s->fd;
    s->told_events = ssmb__eng_interest(s);
}

/* fd_change_fn for every descriptor whose interest changed. */
static void ssmb__eng_tell_all(ssmb_engine *eng) {
    uint32_t i;
    if (!eng->desc.fd_change_fn) return;
    (void)ssmb__fwds_fds(eng, NULL, 0, 1);
    for (i = 0; i < eng->nslots; i++) {
        ssmb__slot *s = &eng->slots[i];
        if (s->fd < 0 || !ssmb__eng_stale(s)) continue;
        ssmb__eng_told(s);
        eng->desc.fd_change_fn(s->fd, s->told_events, eng->desc.fd_change_user_data);
    }
}

/* When the slot next needs the engine: 0 for work waiting now. */
static uint64_t ssmb__slot_deadline(const ssmb__slot *s) {
    uint64_t d;
    switch (s->phase) {
    case SSMB__SLOT_FREE: return SSMB_NO_DEADLINE;
    case SSMB__SLOT_RESOLVE_DNS: d = s->setup->dns.server_deadline; break;
    case SSMB__SLOT_RUNNING: d = ssmb_conn_next_deadline(s->conn); break;
    case SSMB__SLOT_RESOLVE_HOOK:
    case SSMB__SLOT_CONNECTING:
    case SSMB__SLOT_TUNNEL: d = s->deadline; break;
    default: return 0; /* ADDRESSED: connect; DONE: WS_CLOSED to hand out */
    }
    if (s->pending_open || s->pending_writable || ssmb__eng_stale(s)) return 0;
    if (s->phase == SSMB__SLOT_RUNNING && s->eof && !s->eof_told) return 0;
    if (s->phase == SSMB__SLOT_RUNNING && s->want_writable && ssmb_conn_send_space(s->conn) > 0) return 0;
    return d;
}

static uint64_t ssmb__eng_next_deadline(const ssmb_engine *eng) {
    uint64_t best = SSMB_NO_DEADLINE;
    uint32_t i;
    for (i = 0; i < eng->nslots && best > 0; i++) best = SSMB__MIN(best, ssmb__slot_deadline(&eng->slots[i]));
    return best > 0 ? SSMB__MIN(best, ssmb__sessions_deadline(eng)) : best;
}

SSMB_APIDEF int ssmb_engine_timeout_ms(ssmb_engine *eng, uint64_t now_ms, int max_ms) {
    uint64_t d = eng ? ssmb__eng_next_deadline(eng) : SSMB_NO_DEADLINE, wait;
    if (d == SSMB_NO_DEADLINE) return max_ms >= 0 ? max_ms : -1;
    wait = d > now_ms ? d - now_ms : 0;
    if (max_ms >= 0 && wait > (uint64_t)max_ms) wait = (uint64_t)max_ms;
    return wait > 0x7fffffffu ? 0x7fffffff : (int)wait;
}

SSMB_APIDEF ssmb_result ssmb_engine_fds(ssmb_engine *eng, ssmb_pollfd *out, size_t cap, size_t *count) {
    size_t total = 0;
    uint32_t i;
    if (!eng || !count || (cap && !out)) return SSMB_ERR_INVALID_ARG;
    for (i = 0; i < eng->nslots; i++) {
        uint16_t ev = ssmb__eng_interest(&eng->slots[i]);
        if (!ev) continue;
        if (total < cap) {
            out[total].fd = eng->slots[i].fd;
            out[total].events = ev;
            out[total].revents = 0;
        }
        total++;
    }
    total += ssmb__fwds_fds(eng, total < cap ? out + total : NULL, total < cap ? cap - total : 0, 0);
    *count = total;
    if (cap == 0) return SSMB_OK;
    if (total > cap) return SSMB_ERR_BUFFER_TOO_SMALL;
    if (!eng->desc.fd_change_fn) /* the host now knows them all (fd_change_fn keeps its own account) */
        for (i = 0; i < eng->nslots; i++) ssmb__eng_told(&eng->slots[i]);
    return SSMB_OK;
}

/* The poll(2) set of every descriptor with interest, in eng->pfd. */
static size_t ssmb__eng_poll_list(ssmb_engine *eng) {
    size_t n = 0;
    uint32_t i;
    for (i = 0; i < eng->nslots; i++) {
        uint16_t ev = ssmb__eng_interest(&eng->slots[i]);
        if (!ev) continue;
        eng->pfd[n].fd = eng->slots[i].fd;
        eng->pfd[n].events = (short)(((ev & SSMB_POLLIN) ? POLLIN : 0) | ((ev & SSMB_POLLOUT) ? POLLOUT : 0));
        eng->pfd[n].revents = 0;
        n++;
    }
    return ssmb__eng_poll_forwards(eng, n);
}

/* The forwards' descriptors after the slots' in eng->pfd (eng->ready is
   the scratch for their interest). */
static size_t ssmb__eng_poll_forwards(ssmb_engine *eng, size_t n) {
    size_t k, i;
    k = ssmb__fwds_fds(eng, eng->ready, eng->npoll - n, 0);
    for (i = 0; i < k && n < eng->npoll; i++, n++) {
        eng->pfd[n].fd = eng->ready[i].fd;
        eng->pfd[n].events = (short)(((eng->ready[i].events & SSMB_POLLIN) ? POLLIN : 0) |
                                     ((eng->ready[i].events & SSMB_POLLOUT) ? POLLOUT : 0));
        eng->pfd[n].revents = 0;
    }
    return n;
}

/* The descriptors poll(2) found ready, as ssmb_pollfd, in eng->ready. */
static size_t ssmb__eng_ready_list(ssmb_engine *eng, size_t n) {
    size_t i, k = 0;
    for (i = 0; i < n; i++) {
        short re = eng->pfd[i].revents;
        if (!re) continue;
        eng->ready[k].fd = eng->pfd[i].fd;
        eng->ready[k].events = 0;
        eng->ready[k].revents = (uint16_t)(((re & POLLIN) ? SSMB_POLLIN : 0) | ((re & POLLOUT) ? SSMB_POLLOUT : 0) |
                                           ((re & POLLERR) ? SSMB_POLLERR : 0) | ((re & POLLHUP) ? SSMB_POLLHUP : 0));
        k++;
    }
    return k;
}

/* What the host's poll reported for fd. */
static unsigned ssmb__eng_revents(const ssmb_pollfd *ready, size_t n, int fd) {
    size_t i;
    if (fd < 0) return 0;
    for (i = 0; i < n; i++)
        if (ready[i].fd == fd) return ready[i].revents & (SSMB_POLLIN | SSMB_POLLOUT | SSMB_POLLERR | SSMB_POLLHUP);
    return 0;
}

/* ---- process, tick, wait ---- */

static void ssmb__slot_work(ssmb_engine *eng, ssmb__slot *s, unsigned revents, uint64_t now) {
    switch (s->phase) {
    case SSMB__SLOT_RESOLVE_HOOK:
        if (now >= s->deadline) ssmb__slot_fail(eng, s, SSMB_ERR_TIMEOUT, 0);
        break;
    case SSMB__SLOT_RESOLVE_DNS: ssmb__dns_work(eng, s, revents, now); break;
    case SSMB__SLOT_ADDRESSED: ssmb__slot_connect_next(eng, s, now); break;
    case SSMB__SLOT_CONNECTING: ssmb__slot_connect_work(eng, s, revents, now); break;
    case SSMB__SLOT_TUNNEL: ssmb__tunnel_work(eng, s, revents, now); break;
    case SSMB__SLOT_RUNNING: ssmb__eng_run_work(eng, s, revents, now); break;
    default: break;
    }
}

/* One slot's turn: its I/O and timers, then (with event_fn) its events,
   and what the callbacks sent goes out at once. */
static void ssmb__slot_step(ssmb_engine *eng, ssmb__slot *s, unsigned revents, uint64_t now) {
    uint32_t gen = s->gen;
    int round;
    ssmb__slot_work(eng, s, revents, now);
    for (round = 0; round < SSMB__EVENT_ROUNDS && eng->desc.event_fn && !s->owner; round++) {
        ssmb__eng_deliver(eng, s);
        if (s->gen != gen || s->phase != SSMB__SLOT_RUNNING) return;
        ssmb__eng_run_work(eng, s, 0, now);
        if (!s->pending_open && !s->pending_writable && s->phase == SSMB__SLOT_RUNNING) return;
    }
}

SSMB_APIDEF ssmb_result ssmb_engine_process(ssmb_engine *eng, const ssmb_pollfd *ready, size_t n, uint64_t now_ms) {
    uint32_t i;
    if (!eng || (n && !ready)) return SSMB_ERR_INVALID_ARG;
    if (eng->in_event) return SSMB_ERR_INVALID_STATE;
    eng->now = now_ms;
    for (i = 0; i < eng->nslots; i++) {
        ssmb__slot *s = &eng->slots[i];
        if (s->phase != SSMB__SLOT_FREE) ssmb__slot_step(eng, s, ssmb__eng_revents(ready, n, s->fd), now_ms);
    }
    ssmb__sessions_work(eng, ready, n, now_ms);
    ssmb__eng_tell_all(eng);
    return SSMB_OK;
}

/* A poll with no wait finds what is ready; poll(2) with a zero timeout
   never blocks. */
SSMB_APIDEF ssmb_result ssmb_engine_tick(ssmb_engine *eng, uint64_t now_ms) {
    size_t n, k = 0;
    if (!eng) return SSMB_ERR_INVALID_ARG;
    if (eng->in_event) return SSMB_ERR_INVALID_STATE;
    n = ssmb__eng_poll_list(eng);
    if (n && poll(eng->pfd, (nfds_t)n, 0) > 0) k = ssmb__eng_ready_list(eng, n);
    return ssmb_engine_process(eng, eng->ready, k, now_ms);
}

/* It has no clock: the sleep is measured from the now_ms of the last
   process or tick, which the host calls just before. */
SSMB_APIDEF ssmb_result ssmb_engine_wait(ssmb_engine *eng, int max_ms) {
    size_t n;
    uint32_t i;
    int t;
    if (!eng) return SSMB_ERR_INVALID_ARG;
    if (eng->in_event) return SSMB_ERR_INVALID_STATE;
    n = ssmb__eng_poll_list(eng);
    if (!eng->desc.fd_change_fn)
        for (i = 0; i < eng->nslots; i++) ssmb__eng_told(&eng->slots[i]);
    t = ssmb_engine_timeout_ms(eng, eng->now, max_ms);
    if (n == 0 && t < 0) return SSMB_OK; /* nothing could ever wake it */
    while (poll(eng->pfd, (nfds_t)n, t) < 0)
        if (errno != EINTR) return SSMB_ERR_IO;
    return SSMB_OK;
}


// >>session
/* Sessions: the credential chain, the API calls, the data WebSocket and
   the channel, joined. A session owns engine slots (marked with its
   number, so their events never reach the host) for one API call at a time
   and for its WebSocket. Its memory: one block at start (the session with
   copies of the desc's strings, the frame buffer), the channel, the
   WebSocket's conn; an API call borrows a request buffer until its conn
   took the request, and the response only while it is read. */

#define SSMB__SESS_TOKEN_MAX (SSMB_API_TOKEN_MAX + 1)
#define SSMB__SESS_ENDPOINT_MAX 512u
#define SSMB__SESS_REASON_MAX 256u
#define SSMB__SESS_REQUEST_MAX 16384u   /* an API request (StartSession with parameters, STS) */
#define SSMB__SESS_STATES 8u            /* state changes waiting for the host */
#define SSMB__SESS_ROUNDS 64            /* WebSocket events a session reads per turn */

/* The forward of a Port session (>>portfwd below). */
typedef struct ssmb__fwd ssmb__fwd;
static void ssmb__fwd_work(ssmb_engine *eng, ssmb__sess *s, const ssmb_pollfd *ready, size_t nready, uint64_t now);
static int ssmb__fwd_take(ssmb_engine *eng, ssmb__fwd *f, uint64_t now);
static void ssmb__fwd_hand(ssmb_engine *eng, ssmb__sess *s, const uint8_t *data, size_t len, uint64_t now);
static void ssmb__fwd_free(ssmb_engine *eng, ssmb__fwd *f);
static int ssmb__fwd_due(const ssmb__sess *s);
static int ssmb__fwd_pending(const ssmb__fwd *f);
static int ssmb__fwd_next_event(ssmb__sess *s, ssmb_event *ev);
static int ssmb__sess_is_port(const ssmb__sess *s);
static int ssmb__sess_next_channel_only(ssmb_engine *eng, ssmb__sess *s, ssmb_event *ev);

/* The API call in flight (one at a time). */
enum {
    SSMB__CALL_NONE = 0,
    SSMB__CALL_START = 1,
    SSMB__CALL_RESUME = 2,
    SSMB__CALL_TERMINATE = 3,
    SSMB__CALL_STS_ROLE = 4,            /* credential steps: STS AssumeRole */
    SSMB__CALL_STS_WEB = 5,             /* AssumeRoleWithWebIdentity */
    SSMB__CALL_ECS = 6,
    SSMB__CALL_IMDS_TOKEN = 7,          /* IMDSv2: token, role, credentials, in this order */
    SSMB__CALL_IMDS_ROLE = 8,
    SSMB__CALL_IMDS_CREDS = 9,
    SSMB__CALL_OPEN_WS = 10,            /* not a call: attach once credentials are ready */
    SSMB__CALL_DATA_KEY = 11            /* KMS GenerateDataKey for the handshake (§6.2) */
};
#define SSMB__SESS_PROC_MAX 65536u      /* credential_process output kept */

struct ssmb__sess {
    size_t mem_size;
    uint32_t index, gen;
    uint32_t state;                     /* ssmb_session_state */
    void *user_data;
    ssmb_channel *ch;
    ssmb_ws ws;                         /* the data WebSocket, {0} when none */
    uint8_t ws_open;                    /* the upgrade is done and the open frame went out */
    uint8_t reconnect;                  /* the next WS_OPEN is a reconnect (§4.5) */
    uint8_t terminate;                  /* TerminateSession is wanted */
    uint8_t no_reconnect;
    uint8_t size_pending;               /* a terminal size waits to be sent */
    uint8_t want_writable, pending_writable;
    uint8_t exit_pending, closed_pending, closed_told;
    int32_t exit_code;
    uint32_t cols, rows;
    /* the API call */
    uint32_t call_kind;
    ssmb_ws call_ws;
    uint32_t call_retries;
    uint64_t call_due;                  /* when to send it (SSMB_NO_DEADLINE: not waiting) */
    /* timers */
    uint64_t started_at, ready_at, reconnect_deadline, close_deadline, metrics_due;
    uint32_t reconnect_attempt, reconnect_timeout_ms, terminate_timeout_ms;
    uint64_t reconnects;
    /* state changes for the host (a ring) */
    uint32_t states[SSMB__SESS_STATES];
    uint32_t states_head, states_count;
    /* the incoming message being gathered, and the outgoing frame's progress */
    uint8_t *frame;
    size_t frame_len, frame_cap;
    uint8_t frame_held;                 /* complete, waiting for the channel */
    const uint8_t *msg;                 /* the complete message: the piece itself (read in place) or frame */
    size_t msg_len;
    uint8_t frame_skip;                 /* too long: dropped until its end */
    uint8_t more_in;                    /* the last turn stopped with pieces perhaps waiting */
    size_t out_sent;
    /* the end */
    ssmb_result result;
    char reason[SSMB__SESS_REASON_MAX];
    /* who, where */
    ssmb_creds creds;
    char region[SSMB_CREDS_NAME_MAX];
    char ssm_endpoint[SSMB__SESS_ENDPOINT_MAX];
    char custom_host[SSMB__DNS_NAME_MAX + 1];
    uint32_t allow_plain_ws;
    char session_id[SSMB_API_SESSION_ID_MAX + 1];
    char *token;                        /* TokenValue and StreamUrl, in ident */
    char *stream_url;
    char *ident;                        /* allocated to their size when they come (StartSession,
                                           ResumeSession, attach); wiped and freed when replaced */
    size_t ident_size;
    char session_type[32];
    char agent_version[SSMB_CHANNEL_VERSION_MAX + 1];
    /* StartSession's arguments, copied */
    ssmb_api_start_session start;
    ssmb_api_parameter *params;
    char *target;
    ssmb__fwd *fwd;                     /* the forward of a Port session, or NULL */
    /* the credential chain */
    uint8_t explicit_creds;             /* the desc gave keys (in creds; the chain never runs again) */
    char profile[SSMB_CREDS_NAME_MAX];
    ssmb_creds_result *plan;            /* while the chain runs */
    uint32_t role_next, after_creds;
    char imds_token[128], imds_role[128];
    int proc_pid, proc_fd;              /* credential_process, its standard output */
    uint16_t proc_told;                 /* what fd_change_fn last heard of proc_fd */
    char *proc_out;                     /* SSMB__SESS_PROC_MAX bytes while it runs */
    size_t proc_len;
    uint64_t proc_deadline;
    int64_t creds_at;                   /* UTC when the chain last delivered */
    /* KMS session encryption (§6): the channel's request, the call's endpoint */
    uint8_t kms_wanted;                 /* KMS_REQUEST came: GenerateDataKey once the call slot is free */
    char kms_key_id[SSMB__CHAN_KMS_ID_MAX + 1];
    char kms_challenge[SSMB__CHAN_KMS_CHALLENGE_MAX + 1];
    char *kms_endpoint;                 /* the desc's kms_endpoint_url (copied), or NULL */
};

#define SSMB__SLOG(eng, level, msg) \
    ssmb__log(&(eng)->desc.logger, "ssmb.session", (level), SSMB_LOGITEM_SESSION, (msg), (uint32_t)__LINE__)

/* ---- handles ---- */

static ssmb_session ssmb__sess_handle(const ssmb__sess *s) {
    ssmb_session h;
    h.id = (s->gen << 16) | (s->index + 1u);
    return h;
}

static ssmb__sess *ssmb__sess_of(ssmb_engine *eng, ssmb_session h) {
    uint32_t i = (h.id & 0xffffu), gen = h.id >> 16;
    ssmb__sess *s;
    if (!eng || i == 0 || i > eng->desc.max_sessions) return NULL;
    s = eng->sessions[i - 1];
    return s && s->gen == gen && s->state != SSMB_SESSION_NONE ? s : NULL;
}

/* ---- state and ending ---- */

static void ssmb__sess_set_state(ssmb__sess *s, uint32_t state) {
    if (s->state == state) return;
    s->state = state;
    if (s->states_count == SSMB__SESS_STATES) { /* the host is far behind: keep the newest */
        s->states_head = (s->states_head + 1) % SSMB__SESS_STATES;
        s->states_count--;
    }
    s->states[(s->states_head + s->states_count) % SSMB__SESS_STATES] = state;
    s->states_count++;
}

static void ssmb__sess_reason(ssmb__sess *s, const char *a, const char *b, size_t b_len) {
    ssmb__sink k;
    size_t n = 0;
    ssmb__sink_init(&k, s->reason, sizeof s->reason - 1);
    ssmb__put_z(&k, a);
    if (b && b_len) ssmb__put(&k, b, SSMB__MIN(b_len, sizeof s->reason / 2));
    if (ssmb__sink_finish(&k, &n) != SSMB_OK) n = sizeof s->reason - 1;
    s->reason[n] = '\0';
}

/* The session is over from now on: close what is open, say why once. */
static void ssmb__sess_end(ssmb_engine *eng, ssmb__sess *s, ssmb_result why, const char *reason) {
    if (s->state == SSMB_SESSION_CLOSED) return;
    if (s->result == SSMB_OK) {
        s->result = why;
        if (reason && !s->reason[0]) ssmb__sess_reason(s, reason, NULL, 0);
    }
    if (s->ws.id) {
        ssmb_channel_event ce;
        /* Events that point into the WebSocket's input go with it (the session failed). */
        while (s->ch && ssmb_channel_borrows(s->ch) && ssmb_channel_poll(s->ch, &ce) == SSMB_OK) {}
        ssmb_engine_ws_abort(eng, s->ws);
    }
    if (s->call_ws.id) ssmb_engine_ws_abort(eng, s->call_ws);
    s->ws.id = s->call_ws.id = 0;
    s->frame_held = 0;
    s->call_kind = SSMB__CALL_NONE;
    ssmb__sess_set_state(s, SSMB_SESSION_CLOSED);
    s->closed_pending = 1;
    if (why < 0) SSMB__SLOG(eng, SSMB_LOG_WARN, ssmb_result_str(why));
    else SSMB__SLOG(eng, SSMB_LOG_INFO, "session closed");
}

/* The data channel is over (channel_closed, the resend limit, or the host
   ended it): TerminateSession when wanted, then the WebSocket's close. */
static void ssmb__sess_begin_closing(ssmb_engine *eng, ssmb__sess *s, ssmb_result why, uint64_t now) {
    if (s->state == SSMB_SESSION_CLOSING || s->state == SSMB_SESSION_CLOSED) return;
    if (s->result == SSMB_OK) s->result = why;
    ssmb__sess_set_state(s, SSMB_SESSION_CLOSING);
    s->close_deadline = now + s->terminate_timeout_ms;
    if (s->call_ws.id) ssmb_engine_ws_abort(eng, s->call_ws);
    s->call_ws.id = 0;
    s->call_kind = s->terminate && s->session_id[0] ? SSMB__CALL_TERMINATE : SSMB__CALL_NONE;
    s->call_retries = 0;
    s->call_due = now;
    if (s->ws.id && ssmb_engine_ws_close(eng, s->ws, SSMB_WS_CLOSE_NORMAL, NULL, now) != SSMB_OK) {
        ssmb_engine_ws_abort(eng, s->ws);
        s->ws.id = 0;
    }
}

/* ---- credentials: the chain, with its network and process steps ----
   ssmb_creds_resolve reads the environment and the files and says what is
   left to do; the steps run here without blocking: STS AssumeRole (and
   AssumeRoleWithWebIdentity), the ECS container endpoint, the IMDSv2
   exchange (token, role, credentials) as API calls of the session, and
   credential_process as a child whose output is read from the poll loop.
   The chain runs again before a call when the credentials expire within
   their refresh window, so a ResumeSession an hour in signs with fresh
   ones. */

static ssmb_str ssmb__sess_view(const char *p, size_t n) {
    ssmb_str v;
    v.ptr = p;
    v.len = n;
    return v;
}

static ssmb_result ssmb__sess_open_ws(ssmb_engine *eng, ssmb__sess *s, uint64_t now);

/* The call in flight goes again after the API's backoff with jitter. */
static void ssmb__sess_retry_later(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    uint32_t rnd = 0;
    (void)eng->desc.random_fn(&rnd, sizeof rnd, eng->desc.random_user_data);
    s->call_due = now + (uint64_t)ssmb_api_retry_delay_ms(s->call_retries++, rnd);
}

static void ssmb__sess_creds_fail(ssmb_engine *eng, ssmb__sess *s, ssmb_result r, const char *why) {
    ssmb__sess_reason(s, "credentials: ", why, strlen(why));
    ssmb__sess_end(eng, s, r < 0 ? r : SSMB_ERR_CREDENTIALS, NULL);
}

static void ssmb__fwd_tell(ssmb_engine *eng, int fd, uint32_t events);

static void ssmb__sess_proc_close(ssmb_engine *eng, ssmb__sess *s) {
    if (s->proc_fd < 0) return;
    if (s->proc_told) ssmb__fwd_tell(eng, s->proc_fd, 0);
    close(s->proc_fd);
    s->proc_fd = -1;
    s->proc_told = 0;
}

static void ssmb__sess_plan_free(ssmb_engine *eng, ssmb__sess *s) {
    if (!s->plan) return;
    ssmb_creds_result_wipe(s->plan);
    ssmb__free(&eng->desc.allocator, s->plan, sizeof *s->plan);
    s->plan = NULL;
}

static void ssmb__sess_proc_stop(ssmb_engine *eng, ssmb__sess *s) {
    ssmb__sess_proc_close(eng, s);
    if (s->proc_pid > 0) {
        kill(s->proc_pid, SIGKILL);
        (void)waitpid(s->proc_pid, NULL, 0); /* killed: it is gone at once */
    }
    s->proc_pid = 0;
    if (s->proc_out) {
        ssmb__wipe(s->proc_out, SSMB__SESS_PROC_MAX);
        ssmb__free(&eng->desc.allocator, s->proc_out, SSMB__SESS_PROC_MAX);
        s->proc_out = NULL;
    }
}

/* The chain is done: the credentials are the session's, the waiting call goes. */
static void ssmb__sess_creds_ready(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    ssmb_creds_wipe(&s->creds);
    s->creds = s->plan->creds;
    s->creds_at = eng->desc.utc_fn(eng->desc.utc_user_data);
    if (!s->region[0] && s->plan->region[0] && strlen(s->plan->region) < sizeof s->region)
        strcpy(s->region, s->plan->region);
    ssmb__sess_plan_free(eng, s);
    s->call_kind = s->after_creds;
    s->after_creds = SSMB__CALL_NONE;
    s->call_retries = 0;
    s->call_due = now;
    if (s->call_kind == SSMB__CALL_OPEN_WS) { /* attach: the WebSocket is signed with them */
        ssmb_result r;
        s->call_kind = SSMB__CALL_NONE;
        r = ssmb__sess_open_ws(eng, s, now);
        if (r != SSMB_OK) ssmb__sess_end(eng, s, r, "cannot open the data channel's WebSocket");
        return;
    }
    if (s->state == SSMB_SESSION_CREDENTIALS && s->call_kind == SSMB__CALL_START)
        ssmb__sess_set_state(s, SSMB_SESSION_STARTING);
}

/* Runs credential_process: `sh -c command` (posix_spawn: no fork of a
   large host), its standard output to a pipe, the environment inherited. */
static ssmb_result ssmb__sess_proc_start(ssmb_engine *eng, ssmb__sess *s) {
    int fds[2], rc;
    pid_t pid = 0;
    char sh[] = "/bin/sh", dash_c[] = "-c";
    char *argv[4];
    posix_spawn_file_actions_t fa;
    if (!s->proc_out) s->proc_out = (char *)ssmb__alloc(&eng->desc.allocator, SSMB__SESS_PROC_MAX);
    if (!s->proc_out) return SSMB_ERR_NOMEM;
    if (pipe(fds) != 0) return SSMB_ERR_IO;
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    argv[0] = sh;
    argv[1] = dash_c;
    argv[2] = s->plan->process_command;
    argv[3] = NULL;
    rc = posix_spawn_file_actions_init(&fa);
    if (rc == 0) {
        rc = posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        if (rc == 0) rc = posix_spawn_file_actions_addclose(&fa, fds[1]);
        if (rc == 0) rc = posix_spawn(&pid, sh, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
    }
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return SSMB_ERR_IO;
    }
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    s->proc_fd = fds[0];
    s->proc_pid = pid;
    s->proc_len = 0;
    return SSMB_OK;
}

/* The next step of the plan. */
static void ssmb__sess_creds_next(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    ssmb_creds_result *p = s->plan;
    uint32_t kind = SSMB__CALL_NONE;
    switch (p->step) {
    case SSMB_CREDS_STEP_READY:
        if (s->role_next >= p->role_count) {
            ssmb__sess_creds_ready(eng, s, now);
            return;
        }
        kind = SSMB__CALL_STS_ROLE;
        break;
    case SSMB_CREDS_STEP_WEB_IDENTITY: kind = SSMB__CALL_STS_WEB; break;
    case SSMB_CREDS_STEP_ECS: kind = SSMB__CALL_ECS; break;
    case SSMB_CREDS_STEP_IMDS: kind = s->imds_token[0] ? SSMB__CALL_IMDS_ROLE : SSMB__CALL_IMDS_TOKEN; break;
    case SSMB_CREDS_STEP_PROCESS:
        if (ssmb__sess_proc_start(eng, s) != SSMB_OK) ssmb__sess_creds_fail(eng, s, SSMB_ERR_IO, "credential_process cannot be started");
        s->proc_deadline = now + 60000;
        return;
    default: ssmb__sess_creds_fail(eng, s, SSMB_ERR_CREDENTIALS, "unknown step"); return;
    }
    s->call_kind = kind;
    s->call_retries = 0;
    s->call_due = now;
}

/* Resolves the chain now (environment, files) and starts its steps;
   `after` is the call to make with the result. */
static ssmb_result ssmb__sess_creds_begin(ssmb_engine *eng, ssmb__sess *s, uint32_t after, uint64_t now) {
    ssmb_creds_desc cd;
    ssmb_result r;
    memset(&cd, 0, sizeof cd);
    cd.allocator = eng->desc.allocator;
    cd.logger = eng->desc.logger;
    cd.getenv_fn = eng->desc.getenv_fn;
    cd.getenv_user_data = eng->desc.getenv_user_data;
    if (s->explicit_creds) cd.explicit_creds = ssmb_creds_view(&s->creds);
    cd.profile = s->profile[0] ? s->profile : NULL;
    ssmb__sess_plan_free(eng, s);
    s->plan = (ssmb_creds_result *)ssmb__alloc(&eng->desc.allocator, sizeof *s->plan);
    if (!s->plan) return SSMB_ERR_NOMEM;
    r = ssmb_creds_resolve(&cd, s->plan);
    if (r == SSMB_OK && !s->region[0] && s->plan->region[0] && strlen(s->plan->region) < sizeof s->region)
        strcpy(s->region, s->plan->region); /* the profile's region, needed before the chain ends */
    if (r != SSMB_OK) {
        char where[SSMB__SESS_REASON_MAX];
        ssmb__sink k;
        size_t n = 0;
        ssmb__sink_init(&k, where, sizeof where - 1);
        ssmb__put_z(&k, s->plan->error.reason ? s->plan->error.reason : ssmb_result_str(r));
        if (s->plan->error.file[0]) {
            char line[16];
            ssmb__put_z(&k, " (");
            ssmb__put_z(&k, s->plan->error.file);
            if (s->plan->error.line) {
                ssmb__put_z(&k, " line ");
                ssmb__eng_put_port(line, (uint16_t)SSMB__MIN(s->plan->error.line, 65535u));
                ssmb__put_z(&k, line);
            }
            ssmb__put_z(&k, ")");
        }
        if (ssmb__sink_finish(&k, &n) != SSMB_OK) n = sizeof where - 1;
        where[n] = '\0';
        ssmb__sess_reason(s, "credentials: ", where, n);
        SSMB__SLOG(eng, SSMB_LOG_ERROR, s->reason);
        ssmb__sess_plan_free(eng, s);
        return r;
    }
    s->role_next = 0;
    s->imds_token[0] = s->imds_role[0] = '\0';
    s->after_creds = after;
    s->call_kind = SSMB__CALL_NONE;
    ssmb__sess_creds_next(eng, s, now);
    return SSMB_OK;
}

/* credential_process: its output gathered, then parsed once it ends. */
static void ssmb__sess_proc_work(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    ssize_t n;
    int status = 0;
    if (s->proc_pid <= 0) return;
    while (s->proc_fd >= 0) {
        if (s->proc_len == SSMB__SESS_PROC_MAX) {
            ssmb__sess_proc_stop(eng, s);
            ssmb__sess_creds_fail(eng, s, SSMB_ERR_LIMIT, "credential_process printed too much");
            return;
        }
        n = read(s->proc_fd, s->proc_out + s->proc_len, SSMB__SESS_PROC_MAX - s->proc_len);
        if (n > 0) {
            s->proc_len += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        ssmb__sess_proc_close(eng, s);
    }
    if (now >= s->proc_deadline) {
        ssmb__sess_proc_stop(eng, s);
        ssmb__sess_creds_fail(eng, s, SSMB_ERR_TIMEOUT, "credential_process ran longer than 60 s");
        return;
    }
    if (s->proc_fd >= 0 || waitpid(s->proc_pid, &status, WNOHANG) == 0) return;
    s->proc_pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ssmb__sess_creds_fail(eng, s, SSMB_ERR_CREDENTIALS, "credential_process failed (non-zero exit status)");
        return;
    }
    if (ssmb_creds_process_parse(s->proc_out, s->proc_len, &s->plan->creds) != SSMB_OK) {
        ssmb__sess_creds_fail(eng, s, SSMB_ERR_CREDENTIALS, "credential_process printed no valid credentials JSON");
        return;
    }
    ssmb__sess_proc_stop(eng, s);
    s->plan->step = SSMB_CREDS_STEP_READY;
    ssmb__sess_creds_next(eng, s, now);
}

/* The URL and bytes of a credential step's request. */
static ssmb_result ssmb__sess_creds_request(ssmb_engine *eng, ssmb__sess *s, char *url, size_t url_cap, char *buf,
                                            size_t cap, size_t *len) {
    ssmb_creds_result *p = s->plan;
    int64_t utc = eng->desc.utc_fn(eng->desc.utc_user_data);
    char token[SSMB_CREDS_TOKEN_MAX];
    size_t tn = 0;
    ssmb_result r = SSMB_OK;
    const char *region = s->region[0] ? s->region : p->region;
    if (s->call_kind == SSMB__CALL_STS_ROLE || s->call_kind == SSMB__CALL_STS_WEB) {
        ssmb_api_endpoint_desc ed;
        memset(&ed, 0, sizeof ed);
        ed.service = "sts";
        ed.region = region[0] ? region : "us-east-1";
        ed.getenv_fn = eng->desc.getenv_fn;
        ed.getenv_user_data = eng->desc.getenv_user_data;
        r = ssmb_api_endpoint_resolve(&ed, url, url_cap, &tn, NULL);
        if (r != SSMB_OK) return r;
        if (s->call_kind == SSMB__CALL_STS_ROLE)
            return ssmb_creds_sts_assume_role_request(&p->roles[s->role_next], &p->creds, region, utc, buf, cap, len);
        r = ssmb_creds_read_token_file(p->web_identity.token_file, token, sizeof token, &tn);
        if (r == SSMB_OK)
            r = ssmb_creds_sts_web_identity_request(&p->web_identity, ssmb__sess_view(token, tn), region, buf, cap, len);
        ssmb__wipe(token, sizeof token);
        return r;
    }
    if (s->call_kind == SSMB__CALL_ECS) {
        if (strlen(p->ecs.url) >= url_cap) return SSMB_ERR_LIMIT;
        strcpy(url, p->ecs.url);
        if (p->ecs.auth_token_file[0]) r = ssmb_creds_read_token_file(p->ecs.auth_token_file, token, sizeof token, &tn);
        else tn = strlen(strcpy(token, p->ecs.auth_token));
        if (r == SSMB_OK) r = ssmb_creds_ecs_request(&p->ecs, ssmb__sess_view(token, tn), buf, cap, len);
        ssmb__wipe(token, sizeof token);
        return r;
    }
    /* IMDS: http://host:port/ */
    {
        ssmb__sink k;
        char port[8];
        size_t n = 0;
        int v6 = strchr(p->imds.host, ':') != NULL;
        ssmb__sink_init(&k, url, url_cap - 1);
        ssmb__put_z(&k, v6 ? "http://[" : "http://");
        ssmb__put_z(&k, p->imds.host);
        ssmb__put_z(&k, v6 ? "]:" : ":");
        ssmb__eng_put_port(port, p->imds.port);
        ssmb__put_z(&k, port);
        ssmb__put_z(&k, "/");
        if (ssmb__sink_finish(&k, &n) != SSMB_OK) return SSMB_ERR_LIMIT;
        url[n] = '\0';
    }
    if (s->call_kind == SSMB__CALL_IMDS_TOKEN) return ssmb_creds_imds_token_request(&p->imds, 0, buf, cap, len);
    return ssmb_creds_imds_creds_request(&p->imds, ssmb_str_c(s->imds_token),
                                         ssmb_str_c(s->call_kind == SSMB__CALL_IMDS_CREDS ? s->imds_role : ""), buf,
                                         cap, len);
}

/* A credential step's response. */
static void ssmb__sess_creds_done(ssmb_engine *eng, ssmb__sess *s, char *resp, size_t len, uint64_t now) {
    ssmb_creds_result *p = s->plan;
    uint32_t kind = s->call_kind, status = 0, keep = p->creds.refresh_before_s;
    ssmb_str body;
    ssmb_creds got;
    ssmb_result r = ssmb_creds_http_body(resp, len, &status, &body);
    s->call_kind = SSMB__CALL_NONE;
    memset(&got, 0, sizeof got);
    if (r == SSMB_OK && (kind == SSMB__CALL_STS_ROLE || kind == SSMB__CALL_STS_WEB)) {
        r = ssmb_creds_sts_parse(body.ptr, body.len, &got, NULL, 0);
    } else if (r == SSMB_OK && kind == SSMB__CALL_ECS) {
        r = ssmb_creds_http_parse(body.ptr, body.len, &got);
    } else if (r == SSMB_OK && kind == SSMB__CALL_IMDS_TOKEN) {
        if (body.len == 0 || body.len >= sizeof s->imds_token) r = SSMB_ERR_MALFORMED;
        else {
            memcpy(s->imds_token, body.ptr, body.len);
            s->imds_token[body.len] = '\0';
        }
    } else if (r == SSMB_OK && kind == SSMB__CALL_IMDS_ROLE) {
        ssmb_str role;
        r = ssmb_creds_imds_role_parse(body.ptr, body.len, &role);
        if (r == SSMB_OK && role.len >= sizeof s->imds_role) r = SSMB_ERR_LIMIT;
        if (r == SSMB_OK) {
            memcpy(s->imds_role, role.ptr, role.len);
            s->imds_role[role.len] = '\0';
        }
    } else if (r == SSMB_OK && kind == SSMB__CALL_IMDS_CREDS) {
        r = ssmb_creds_http_parse(body.ptr, body.len, &got);
    }
    if (r != SSMB_OK) {
        static const char *const names[] = {"STS AssumeRole failed", "STS AssumeRoleWithWebIdentity failed",
                                            "the ECS container endpoint failed", "IMDS token request failed",
                                            "IMDS role request failed", "IMDS credentials request failed"};
        ssmb_creds_wipe(&got);
        ssmb__sess_creds_fail(eng, s, r == SSMB_ERR_HTTP ? SSMB_ERR_CREDENTIALS : r, names[kind - SSMB__CALL_STS_ROLE]);
        return;
    }
    if (kind == SSMB__CALL_IMDS_TOKEN || kind == SSMB__CALL_IMDS_ROLE) {
        s->call_kind = kind + 1u; /* token, then role, then credentials */
        s->call_retries = 0;
        s->call_due = now;
        return;
    }
    got.refresh_before_s = keep;
    ssmb_creds_wipe(&p->creds);
    p->creds = got;
    ssmb_creds_wipe(&got);
    if (kind == SSMB__CALL_STS_ROLE) s->role_next++;
    p->step = SSMB_CREDS_STEP_READY;
    ssmb__sess_creds_next(eng, s, now);
}

/* ---- KMS: the data key of an encrypted session (PROTOCOL.md §6.2) ---- */

static ssmb_result ssmb__sess_data_key_request(ssmb_engine *eng, ssmb__sess *s, char *url, size_t url_cap, char *buf,
                                               size_t cap, size_t *len) {
    ssmb_api_call call;
    ssmb_api_data_key_request args;
    ssmb_api_endpoint_desc ed;
    size_t n = 0;
    ssmb_result r;
    memset(&ed, 0, sizeof ed);
    ed.service = "kms"; /* never the SSM endpoint (PROTOCOL.md §16) */
    ed.region = s->region;
    ed.endpoint_url = s->kms_endpoint;
    ed.getenv_fn = eng->desc.getenv_fn;
    ed.getenv_user_data = eng->desc.getenv_user_data;
    r = ssmb_api_endpoint_resolve(&ed, url, url_cap, &n, NULL);
    if (r != SSMB_OK) return r;
    memset(&call, 0, sizeof call);
    call.endpoint = url;
    call.region = s->region;
    call.creds = ssmb_creds_view(&s->creds);
    call.time = eng->desc.utc_fn(eng->desc.utc_user_data);
    memset(&args, 0, sizeof args);
    args.key_id = s->kms_key_id;
    args.session_id = s->session_id;
    args.target_id = s->target;
    args.random_challenge = s->kms_challenge;
    return ssmb_api_generate_data_key_write(&call, &args, buf, cap, len);
}

static void ssmb__sess_data_key_done(ssmb_engine *eng, ssmb__sess *s, char *resp, size_t len, uint64_t now) {
    uint8_t blob[SSMB_CHANNEL_KMS_BLOB_MAX];
    ssmb_api_response ar;
    ssmb_api_data_key dk;
    ssmb_result r;
    memset(&ar, 0, sizeof ar);
    memset(&dk, 0, sizeof dk);
    dk.ciphertext = blob;
    dk.ciphertext_cap = sizeof blob;
    r = ssmb_api_generate_data_key_parse(resp, len, &ar, &dk);
    if (r < 0 && ar.retryable && s->call_retries < SSMB_API_MAX_RETRIES) {
        ssmb__sess_retry_later(eng, s, now);
        return;
    }
    s->call_kind = SSMB__CALL_NONE;
    if (r == SSMB_OK) {
        r = ssmb_channel_kms_key(s->ch, dk.plaintext, sizeof dk.plaintext, blob, dk.ciphertext_len, now);
    } else {
        char why[SSMB__SESS_REASON_MAX];
        ssmb__sink k;
        size_t n = 0;
        ssmb__sink_init(&k, why, sizeof why - 1);
        ssmb__put_z(&k, "GenerateDataKey failed: ");
        if (r == SSMB_ERR_AWS_API) {
            ssmb__put(&k, ar.error_type.ptr, SSMB__MIN(ar.error_type.len, 64));
            ssmb__put_z(&k, ": ");
            ssmb__put(&k, ar.error_message.ptr, SSMB__MIN(ar.error_message.len, 128));
        } else {
            ssmb__put_z(&k, ssmb_result_str(r));
        }
        if (ssmb__sink_finish(&k, &n) != SSMB_OK) n = sizeof why - 1;
        why[n] = '\0';
        SSMB__SLOG(eng, SSMB_LOG_ERROR, why);
        (void)ssmb_channel_kms_failed(s->ch, why, now);
    }
    ssmb__wipe(&dk, sizeof dk);
    ssmb__wipe(blob, sizeof blob);
}

/* ---- API calls ---- */

static ssmb_result ssmb__sess_call_write(ssmb_engine *eng, ssmb__sess *s, char *buf, size_t cap, size_t *len) {
    ssmb_api_call call;
    memset(&call, 0, sizeof call);
    call.endpoint = s->ssm_endpoint;
    call.region = s->region;
    call.creds = ssmb_creds_view(&s->creds);
    call.time = eng->desc.utc_fn(eng->desc.utc_user_data);
    switch (s->call_kind) {
    case SSMB__CALL_START: return ssmb_api_start_session_write(&call, &s->start, buf, cap, len);
    case SSMB__CALL_RESUME: return ssmb_api_resume_session_write(&call, s->session_id, buf, cap, len);
    default: return ssmb_api_terminate_session_write(&call, s->session_id, buf, cap, len);
    }
}

static ssmb_result ssmb__eng_open_internal(ssmb_engine *eng, const ssmb_conn_desc *desc, uint32_t owner,
                                           uint64_t now, ssmb_ws *out);

/* Writes the request and opens its connection (the conn copies it). */
static ssmb_result ssmb__sess_call_send(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    ssmb_conn_desc cd;
    size_t len = 0;
    ssmb_result r;
    char url[SSMB_CREDS_TEXT_MAX];
    char *buf = (char *)ssmb__alloc(&eng->desc.allocator, SSMB__SESS_REQUEST_MAX);
    if (!buf) return SSMB_ERR_NOMEM;
    if (s->call_kind == SSMB__CALL_DATA_KEY) {
        r = ssmb__sess_data_key_request(eng, s, url, sizeof url, buf, SSMB__SESS_REQUEST_MAX, &len);
    } else if (s->call_kind >= SSMB__CALL_STS_ROLE) {
        r = ssmb__sess_creds_request(eng, s, url, sizeof url, buf, SSMB__SESS_REQUEST_MAX, &len);
    } else {
        r = ssmb__sess_call_write(eng, s, buf, SSMB__SESS_REQUEST_MAX, &len);
        strcpy(url, s->ssm_endpoint);
    }
    if (r == SSMB_OK) {
        memset(&cd, 0, sizeof cd);
        cd.url = url;
        cd.request = buf;
        cd.request_len = len;
        r = ssmb__eng_open_internal(eng, &cd, s->index + 1u, now, &s->call_ws);
    }
    ssmb__wipe(buf, SSMB__SESS_REQUEST_MAX); /* it carries a session token and a signature */
    ssmb__free(&eng->desc.allocator, buf, SSMB__SESS_REQUEST_MAX);
    s->call_due = SSMB_NO_DEADLINE;
    return r;
}

static ssmb_result ssmb__sess_open_ws(ssmb_engine *eng, ssmb__sess *s, uint64_t now);

static void ssmb__sess_drop_ident(ssmb_engine *eng, ssmb__sess *s) {
    if (!s->ident) return;
    ssmb__wipe(s->ident, s->ident_size); /* the token is a secret */
    ssmb__free(&eng->desc.allocator, s->ident, s->ident_size);
    s->ident = s->token = s->stream_url = NULL;
    s->ident_size = 0;
}

/* A new TokenValue, and the StreamUrl (an empty one keeps the old). */
static ssmb_result ssmb__sess_set_ident(ssmb_engine *eng, ssmb__sess *s, ssmb_str token, ssmb_str url) {
    size_t size;
    char *block;
    if (!url.len && s->stream_url) url = ssmb_str_c(s->stream_url);
    size = token.len + url.len + 2;
    block = (char *)ssmb__alloc(&eng->desc.allocator, size);
    if (!block) return SSMB_ERR_NOMEM;
    memcpy(block, token.ptr, token.len);
    block[token.len] = '\0';
    memcpy(block + token.len + 1, url.ptr, url.len); /* before the old block goes: url may point into it */
    block[token.len + 1 + url.len] = '\0';
    ssmb__sess_drop_ident(eng, s);
    s->ident = s->token = block;
    s->stream_url = block + token.len + 1;
    s->ident_size = size;
    return SSMB_OK;
}

/* What the StartSession or ResumeSession answer gave. */
static ssmb_result ssmb__sess_take_session(ssmb_engine *eng, ssmb__sess *s, const ssmb_api_session *v, int resume) {
    if (!resume) {
        memcpy(s->session_id, v->session_id.ptr, v->session_id.len);
        s->session_id[v->session_id.len] = '\0';
    }
    return ssmb__sess_set_ident(eng, s, v->token_value, v->stream_url);
}

static void ssmb__sess_policy(const ssmb__sess *s, ssmb_api_stream_policy *p) {
    memset(p, 0, sizeof *p);
    p->custom_host = s->custom_host;
    p->allow_custom = s->custom_host[0] != '\0';
    p->allow_plain_ws = s->allow_plain_ws;
}

/* A call's response, whole in resp. */
static void ssmb__sess_call_done(ssmb_engine *eng, ssmb__sess *s, char *resp, size_t len, uint64_t now) {
    ssmb_api_response ar;
    ssmb_api_session v;
    ssmb_api_stream_policy policy;
    ssmb_result r;
    uint32_t kind = s->call_kind;
    memset(&ar, 0, sizeof ar);
    if (kind == SSMB__CALL_DATA_KEY) {
        ssmb__sess_data_key_done(eng, s, resp, len, now);
        return;
    }
    if (kind >= SSMB__CALL_STS_ROLE) {
        ssmb__sess_creds_done(eng, s, resp, len, now);
        return;
    }
    ssmb__sess_policy(s, &policy);
    memset(&v, 0, sizeof v);
    if (kind == SSMB__CALL_START) r = ssmb_api_start_session_parse(resp, len, &policy, &ar, &v);
    else if (kind == SSMB__CALL_RESUME) r = ssmb_api_resume_session_parse(resp, len, &policy, &ar, &v);
    else r = ssmb_api_terminate_session_parse(resp, len, &ar, NULL);
    if (r < 0 && ar.retryable && s->call_retries < SSMB_API_MAX_RETRIES && kind != SSMB__CALL_TERMINATE) {
        ssmb__sess_retry_later(eng, s, now);
        SSMB__SLOG(eng, SSMB_LOG_INFO, "API call retried (throttled or 5xx)");
        return;
    }
    s->call_kind = SSMB__CALL_NONE;
    if (kind == SSMB__CALL_TERMINATE) return; /* CLOSING goes on either way */
    if (r == SSMB_CLOSED) {
        ssmb__sess_end(eng, s, SSMB_ERR_SSM_PROTOCOL, "ResumeSession: the session has timed out");
        return;
    }
    if (r < 0) {
        if (r == SSMB_ERR_AWS_API) {
            char head[96];
            size_t n = SSMB__MIN(ar.error_type.len, sizeof head - 3);
            if (n) memcpy(head, ar.error_type.ptr, n);
            memcpy(head + n, ": ", 3);
            ssmb__sess_reason(s, head, ar.error_message.ptr, ar.error_message.len);
        } else if (r == SSMB_ERR_SSM_PROTOCOL) {
            ssmb__sess_reason(s, "StreamUrl refused: not an ssmmessages host of AWS", NULL, 0);
        } else {
            ssmb__sess_reason(s, kind == SSMB__CALL_START ? "StartSession failed: " : "ResumeSession failed: ",
                              ssmb_result_str(r), strlen(ssmb_result_str(r)));
        }
        ssmb__sess_end(eng, s, r, NULL);
        return;
    }
    r = ssmb__sess_take_session(eng, s, &v, kind == SSMB__CALL_RESUME);
    if (r == SSMB_OK) r = ssmb__sess_open_ws(eng, s, now);
    if (r != SSMB_OK) ssmb__sess_end(eng, s, r, "cannot open the data channel's WebSocket");
}

/* The call's connection ended: its response, or why not. */
static void ssmb__sess_call_finished(ssmb_engine *eng, ssmb__sess *s, ssmb__slot *slot, uint64_t now) {
    const uint8_t *data = NULL;
    size_t len = 0;
    ssmb_result r = ssmb_conn_response(slot->conn, &data, &len);
    char *copy = NULL;
    if (r == SSMB_OK) {
        copy = (char *)ssmb__alloc(&eng->desc.allocator, len + 1);
        if (copy) memcpy(copy, data, len);
        else r = SSMB_ERR_NOMEM;
    } else if (slot->result < 0) {
        r = (ssmb_result)slot->result;
    }
    ssmb__slot_release(eng, slot, 1);
    s->call_ws.id = 0;
    if (r == SSMB_OK) {
        ssmb__sess_call_done(eng, s, copy, len, now);
        ssmb__free(&eng->desc.allocator, copy, len + 1);
        return;
    }
    if (s->call_kind == SSMB__CALL_TERMINATE) {
        s->call_kind = SSMB__CALL_NONE;
        return;
    }
    if (s->call_kind == SSMB__CALL_DATA_KEY && (s->call_retries >= SSMB_API_MAX_RETRIES ||
                                                (r != SSMB_ERR_IO && r != SSMB_ERR_TIMEOUT && r != SSMB_ERR_CONNECT))) {
        s->call_kind = SSMB__CALL_NONE;
        (void)ssmb_channel_kms_failed(s->ch, "cannot reach the KMS endpoint", now);
        return;
    }
    if (s->call_retries < SSMB_API_MAX_RETRIES && (r == SSMB_ERR_IO || r == SSMB_ERR_TIMEOUT || r == SSMB_ERR_CONNECT)) {
        ssmb__sess_retry_later(eng, s, now);
        return;
    }
    ssmb__sess_reason(s, s->call_kind >= SSMB__CALL_STS_ROLE ? "credentials: cannot reach the credentials endpoint: "
                                                             : "cannot reach the SSM endpoint: ",
                      ssmb_result_str(r), strlen(ssmb_result_str(r)));
    ssmb__sess_end(eng, s, r, NULL);
}

static void ssmb__sess_call_work(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    ssmb__slot *slot;
    if (s->call_kind == SSMB__CALL_NONE && s->kms_wanted) {
        s->kms_wanted = 0;
        s->call_kind = SSMB__CALL_DATA_KEY;
        s->call_retries = 0;
        s->call_due = now;
    }
    if (s->call_kind == SSMB__CALL_NONE) return;
    if (!s->call_ws.id) {
        ssmb_result r;
        if (now < s->call_due) return;
        int64_t utc = eng->desc.utc_fn(eng->desc.utc_user_data);
        /* Fresh credentials that are already inside their refresh window are used as they are
           (the source has nothing newer): the chain runs again at most once a minute. */
        if ((s->call_kind <= SSMB__CALL_TERMINATE || s->call_kind == SSMB__CALL_DATA_KEY) && !s->explicit_creds &&
            ssmb_creds_needs_refresh(&s->creds, utc) && utc - s->creds_at >= 60) {
            SSMB__SLOG(eng, SSMB_LOG_INFO, "credentials expire soon: the chain runs again");
            r = ssmb__sess_creds_begin(eng, s, s->call_kind, now);
            if (r != SSMB_OK) ssmb__sess_end(eng, s, r, NULL);
            return;
        }
        r = ssmb__sess_call_send(eng, s, now);
        if (r == SSMB_OK) return;
        if (s->call_kind == SSMB__CALL_TERMINATE) {
            s->call_kind = SSMB__CALL_NONE;
            return;
        }
        if (s->call_kind == SSMB__CALL_DATA_KEY) {
            s->call_kind = SSMB__CALL_NONE;
            (void)ssmb_channel_kms_failed(s->ch, "GenerateDataKey cannot be written (KMSKeyId, region or endpoint)",
                                          now);
            return;
        }
        ssmb__sess_reason(s, "cannot send the API request: ", ssmb_result_str(r), strlen(ssmb_result_str(r)));
        ssmb__sess_end(eng, s, r, NULL);
        return;
    }
    slot = ssmb__slot_of(eng, s->call_ws);
    if (!slot) {
        s->call_ws.id = 0;
        s->call_due = now;
        return;
    }
    if (slot->phase == SSMB__SLOT_DONE) ssmb__sess_call_finished(eng, s, slot, now);
}

/* ---- the data WebSocket ---- */

static ssmb_result ssmb__sess_open_ws(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    ssmb_conn_desc cd;
    memset(&cd, 0, sizeof cd);
    cd.url = s->stream_url;
    cd.credentials = ssmb_creds_view(&s->creds);
    cd.region = s->region;
    cd.sign_service = "ssmmessages";
    s->ws_open = 0;
    s->frame_len = 0;
    s->frame_held = s->frame_skip = 0;
    s->out_sent = 0;
    if (s->state != SSMB_SESSION_RECONNECTING) ssmb__sess_set_state(s, SSMB_SESSION_CONNECTING);
    return ssmb__eng_open_internal(eng, &cd, s->index + 1u, now, &s->ws);
}

/* PROTOCOL.md §4.2: the first frame is the OpenDataChannelInput text; after
   a reconnect everything unacknowledged goes again (§4.5). */
static void ssmb__sess_on_open(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    char text[SSMB__SESS_TOKEN_MAX + 512];
    size_t n = 0, taken = 0;
    ssmb_result r = ssmb_channel_open_frame(s->ch, s->token, text, sizeof text, &n);
    if (r == SSMB_OK) r = ssmb_engine_ws_send(eng, s->ws, SSMB_WS_TEXT, text, n, 1, &taken);
    ssmb__wipe(text, sizeof text);
    if (r != SSMB_OK || taken != n) {
        ssmb__sess_end(eng, s, r < 0 ? r : SSMB_ERR_LIMIT, "cannot send OpenDataChannelInput");
        return;
    }
    s->ws_open = 1;
    if (s->reconnect) {
        (void)ssmb_channel_reconnected(s->ch, now);
        s->reconnect = 0;
        s->reconnect_attempt = 0;
        s->reconnects++;
    }
    ssmb__sess_set_state(s, ssmb_channel_is_ready(s->ch) ? SSMB_SESSION_READY : SSMB_SESSION_HANDSHAKE);
}

/* The WebSocket is gone while the session should go on: ResumeSession and
   a new one, with a growing pause between attempts. */
static void ssmb__sess_lost(ssmb_engine *eng, ssmb__sess *s, ssmb_result why, uint64_t now) {
    uint64_t pause;
    s->ws.id = 0;
    s->ws_open = 0;
    if (s->state == SSMB_SESSION_CLOSING) {
        if (s->call_kind == SSMB__CALL_NONE) ssmb__sess_end(eng, s, s->result ? s->result : SSMB_CLOSED, NULL);
        return;
    }
    if (s->no_reconnect || ssmb_channel_last_error(s->ch) != SSMB_OK ||
        (!s->session_id[0] && s->state != SSMB_SESSION_READY)) {
        ssmb__sess_end(eng, s, why < 0 ? why : SSMB_ERR_IO, "the data channel's WebSocket closed");
        return;
    }
    if (s->state != SSMB_SESSION_RECONNECTING) s->reconnect_deadline = now + s->reconnect_timeout_ms;
    if (now >= s->reconnect_deadline) {
        ssmb__sess_end(eng, s, SSMB_ERR_TIMEOUT, "reconnecting took longer than reconnect_timeout_ms");
        return;
    }
    ssmb__sess_set_state(s, SSMB_SESSION_RECONNECTING);
    SSMB__SLOG(eng, SSMB_LOG_INFO, "WebSocket lost: ResumeSession");
    s->reconnect = 1;
    pause = s->reconnect_attempt == 0 ? 0 : SSMB__MIN((uint64_t)250 << SSMB__MIN(s->reconnect_attempt, 5u), 8000);
    s->reconnect_attempt++;
    s->call_kind = SSMB__CALL_RESUME;
    s->call_retries = 0;
    s->call_due = now + pause;
}

/* Hands the channel the gathered message; 0 while it must wait. */
static int ssmb__sess_give_frame(ssmb__sess *s, uint64_t now) {
    ssmb_result r = ssmb_channel_recv(s->ch, s->msg, s->msg_len, 0, now);
    if (r == SSMB_AGAIN) {
        s->frame_held = 1;
        return 0;
    }
    s->frame_held = 0;
    return 1;
}

/* A message in one piece is read where it lies (the conn keeps it until
   the next piece is asked for); one in several pieces is gathered in
   frame, made at its first use. */
static void ssmb__sess_piece(ssmb_engine *eng, ssmb__sess *s, const ssmb_ws_piece *p, uint64_t now) {
    uint32_t whole = SSMB_WS_MESSAGE_START | SSMB_WS_MESSAGE_END;
    if ((p->flags & whole) == whole) {
        s->msg = p->data;
        s->msg_len = p->len;
        if (p->opcode == SSMB_WS_TEXT) (void)ssmb_channel_recv(s->ch, s->msg, s->msg_len, 1, now);
        else (void)ssmb__sess_give_frame(s, now);
        return;
    }
    if (p->flags & SSMB_WS_MESSAGE_START) {
        s->frame_len = 0;
        s->frame_skip = 0;
        if (!s->frame) s->frame = (uint8_t *)ssmb__alloc(&eng->desc.allocator, s->frame_cap);
    }
    if (!s->frame) s->frame_skip = 1; /* no memory: the message is lost, as a dropped one (it comes again) */
    if (!s->frame_skip && p->len > s->frame_cap - s->frame_len) s->frame_skip = 1; /* the channel drops it too */
    if (!s->frame_skip && p->len) {
        memcpy(s->frame + s->frame_len, p->data, p->len);
        s->frame_len += p->len;
    }
    if (!(p->flags & SSMB_WS_MESSAGE_END)) return;
    if (s->frame_skip) {
        s->frame_skip = 0;
        s->frame_len = 0;
        return;
    }
    s->msg = s->frame;
    s->msg_len = s->frame_len;
    s->frame_len = 0;
    /* Text messages that are not ClientMessages (§13 item 2) are the channel's to judge. */
    if (p->opcode == SSMB_WS_TEXT) (void)ssmb_channel_recv(s->ch, s->msg, s->msg_len, 1, now);
    else (void)ssmb__sess_give_frame(s, now);
}

/* Reads the WebSocket's events while the channel can take messages. */
static void ssmb__sess_ws_in(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    ssmb__slot *slot;
    ssmb_event ev;
    int rounds;
    if (ssmb__fwd_pending(s->fwd)) { /* its bytes point into the channel's last event */
        s->more_in = 1;               /* read on as soon as the forward took them */
        return;
    }
    if (s->frame_held && !ssmb__sess_give_frame(s, now)) return;
    s->more_in = 0;
    for (rounds = 0; rounds < SSMB__SESS_ROUNDS && s->ws.id; rounds++) {
        if (ssmb_channel_borrows(s->ch)) { /* its events point into the message: no new one yet */
            s->more_in = 1;
            return;
        }
        slot = ssmb__slot_of(eng, s->ws);
        if (!slot || !ssmb__slot_event(eng, slot, &ev)) return;
        switch (ev.type) {
        case SSMB_EVENT_WS_OPEN: ssmb__sess_on_open(eng, s, now); break;
        case SSMB_EVENT_WS_MESSAGE:
            ssmb__sess_piece(eng, s, &ev.piece, now);
            if (s->frame_held) return;
            if (s->fwd) { /* the forward takes the message's events before the next one */
                ssmb_event unused;
                while (!ssmb__fwd_pending(s->fwd) && ssmb__sess_next_channel_only(eng, s, &unused)) {}
                if (ssmb__fwd_pending(s->fwd)) return;
            }
            break;
        case SSMB_EVENT_WS_CLOSED: ssmb__sess_lost(eng, s, (ssmb_result)ev.result, now); return;
        default: break;
        }
    }
    s->more_in = rounds == SSMB__SESS_ROUNDS; /* pieces may wait in the conn: come back at once */
}

/* Frames of the channel out to the WebSocket; a frame larger than the
   room goes out as a fragmented message (out_sent remembers how far). */
static void ssmb__sess_ws_out(ssmb_engine *eng, ssmb__sess *s, uint64_t now) {
    const uint8_t *f;
    size_t n, sent = 0;
    int flushes = 0;
    ssmb__slot *slot = s->ws.id ? ssmb__slot_of(eng, s->ws) : NULL;
    if (!slot || !s->ws_open) return;
    /* The session tries to send on every turn: the slot's "writable again"
       is taken here (left waiting, it would keep the engine's timeout at 0
       while the session does not read, and the host's loop would spin). */
    slot->pending_writable = 0;
    while (ssmb_channel_next_frame(s->ch, &f, &n) == SSMB_OK) {
        size_t taken = 0;
        ssmb_result r = ssmb_engine_ws_send(eng, s->ws, SSMB_WS_BINARY, f + s->out_sent, n - s->out_sent, 1, &taken);
        if (r < 0) return; /* the WebSocket is failing: WS_CLOSED follows */
        s->out_sent += taken;
        sent += taken;
        if (s->out_sent < n) {
            /* The record is full: into the stage (onto the socket when that
               is full), and on with the frames (bounded, as the engine's rounds). */
            if (flushes++ == SSMB__IO_ROUNDS || slot->phase != SSMB__SLOT_RUNNING || slot->eof) break;
            if (!ssmb__eng_stage(eng, slot)) ssmb__eng_pump_out(slot);
            if (ssmb_engine_ws_send_space(eng, s->ws) == 0) break;
            continue;
        }
        s->out_sent = 0;
        (void)ssmb_channel_frame_sent(s->ch, now);
    }
    /* The last record goes now, not after another poll: with a burst's
       records in the stage, behind them in the same send. */
    if (sent && slot->phase == SSMB__SLOT_RUNNING) {
        if (slot->stage_len > slot->stage_off) (void)ssmb__eng_stage(eng, slot);
        ssmb__eng_pump_out(slot);
    }
}

/* ---- the session's turn ---- */

static void ssmb__sess_metrics(ssmb__sess *s, ssmb_session_metrics *m) {
    ssmb_channel_metrics cm;
    memset(m, 0, sizeof *m);
    if (!s->ch) return;
    ssmb_channel_get_metrics(s->ch, &cm);
    m->messages_in = cm.frames_in;
    m->messages_out = cm.frames_out;
    m->bytes_in = cm.data_bytes_in;
    m->bytes_out = cm.data_bytes_out;
    m->retransmissions = cm.retransmissions;
    m->reconnects = s->reconnects;
    m->rtt_us = cm.rtt_us;
    m->rto_us = cm.rto_us;
    m->handshake_us = cm.handshake_us;
    m->connect_ms = s->ready_at ? s->ready_at - s->started_at : 0;
}

static void ssmb__sess_report_metrics(ssmb_engine *eng, ssmb__sess *s) {
    ssmb_session_metrics m;
    if (!eng->desc.metrics_fn) return;
    ssmb__sess_metrics(s, &m);
    eng->in_event = 1;
    eng->desc.metrics_fn(eng, ssmb__sess_handle(s), &m, eng->desc.metrics_user_data);
    eng->in_event = 0;
}

static void ssmb__sess_work(ssmb_engine *eng, ssmb__sess *s, const ssmb_pollfd *ready, size_t nready,
                            uint64_t now) {
    if (s->state == SSMB_SESSION_CLOSED) return;
    ssmb__sess_proc_work(eng, s, now);
    if (s->state == SSMB_SESSION_CLOSED) return;
    ssmb__sess_call_work(eng, s, now);
    if (s->state == SSMB_SESSION_CLOSED) return;
    ssmb__sess_ws_in(eng, s, now);
    if (s->fwd && s->state != SSMB_SESSION_CLOSED) {
        ssmb_event ev;
        int round;
        /* The forward reads the channel's events itself (none of them is the host's but the
           session's own); once the sockets took its bytes, the next messages can come in. */
        for (round = 0; round < 4 && s->state != SSMB_SESSION_CLOSED; round++) {
            while (!ssmb__fwd_pending(s->fwd) && ssmb__sess_next_channel_only(eng, s, &ev)) {}
            ssmb__fwd_work(eng, s, ready, round == 0 ? nready : 0, now);
            if (ssmb__fwd_pending(s->fwd) || !s->more_in || s->state == SSMB_SESSION_CLOSED) break;
            ssmb__sess_ws_in(eng, s, now);
        }
    }
    if (s->state == SSMB_SESSION_CLOSED) return;
    if (now >= ssmb_channel_next_deadline(s->ch)) (void)ssmb_channel_tick(s->ch, now);
    if (s->size_pending && ssmb_channel_is_ready(s->ch) && ssmb_channel_send_size(s->ch, s->cols, s->rows) == SSMB_OK)
        s->size_pending = 0;
    ssmb__sess_ws_out(eng, s, now);
    if (s->want_writable && ssmb_channel_send_space(s->ch) > 0) {
        s->want_writable = 0;
        s->pending_writable = 1;
    }
    if (s->state == SSMB_SESSION_CLOSING && now >= s->close_deadline)
        ssmb__sess_end(eng, s, s->result ? s->result : SSMB_CLOSED, NULL);
    if (s->state == SSMB_SESSION_CLOSING && !s->ws.id && s->call_kind == SSMB__CALL_NONE)
        ssmb__sess_end(eng, s, s->result ? s->result : SSMB_CLOSED, NULL);
    if (eng->desc.metrics_fn && s->state != SSMB_SESSION_CLOSED && now >= s->metrics_due) {
        s->metrics_due = now + eng->desc.metrics_interval_ms;
        ssmb__sess_report_metrics(eng, s);
    }
}

static uint64_t ssmb__sess_deadline(const ssmb__sess *s) {
    uint64_t d = SSMB_NO_DEADLINE;
    if (s->states_count || s->pending_writable || s->exit_pending || s->closed_pending || ssmb__fwd_due(s)) return 0;
    /* a message waits for the channel (the host takes events until none are left before it
       sleeps, so the channel can take it now), or the last turn ran out of rounds */
    if ((s->more_in || s->frame_held) && !ssmb__fwd_pending(s->fwd) && !ssmb_channel_borrows(s->ch)) return 0;
    if (s->fwd && !ssmb__fwd_pending(s->fwd) && ssmb_channel_has_events(s->ch)) return 0; /* kept messages are due */
    if (s->state == SSMB_SESSION_CLOSED) return SSMB_NO_DEADLINE;
    if (s->call_kind != SSMB__CALL_NONE && !s->call_ws.id) d = s->call_due;
    if (s->proc_pid > 0) d = SSMB__MIN(d, s->proc_fd >= 0 ? s->proc_deadline : s->started_at); /* reap it now */
    d = SSMB__MIN(d, ssmb_channel_next_deadline(s->ch));
    if (s->state == SSMB_SESSION_CLOSING) d = SSMB__MIN(d, s->close_deadline);
    if (s->size_pending && ssmb_channel_is_ready(s->ch)) d = 0;
    return d;
}

/* ---- events for the host ---- */

static int ssmb__sess_channel_event(ssmb_engine *eng, ssmb__sess *s, const ssmb_channel_event *ce,
                                    ssmb_event *ev, uint64_t now);

/* A forward session's channel events, taken by the session itself (the
   forward gets the data); 1 when one was taken. */
static int ssmb__sess_next_channel_only(ssmb_engine *eng, ssmb__sess *s, ssmb_event *ev) {
    ssmb_channel_event ce;
    if (!s->ch || ssmb_channel_poll(s->ch, &ce) != SSMB_OK) return 0;
    (void)ssmb__sess_channel_event(eng, s, &ce, ev, eng->now);
    return 1;
}

static void ssmb__sess_event_base(ssmb__sess *s, ssmb_event *ev, uint32_t type) {
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->session = ssmb__sess_handle(s);
    ev->user_data = s->user_data;
}

/* v into out with a NUL, cut to fit. */
static void ssmb__sess_copy(char *out, size_t cap, ssmb_str v) {
    size_t n = SSMB__MIN(v.len, cap - 1);
    if (n) memcpy(out, v.ptr, n);
    out[n] = '\0';
}

/* A channel event as the host's; 0 when it is the session's own. */
static int ssmb__sess_channel_event(ssmb_engine *eng, ssmb__sess *s, const ssmb_channel_event *ce,
                                    ssmb_event *ev, uint64_t now) {
    switch (ce->type) {
    case SSMB_CHANNEL_EVENT_READY:
        ssmb__sess_copy(s->session_type, sizeof s->session_type, ce->session_type);
        ssmb__sess_copy(s->agent_version, sizeof s->agent_version, ce->agent_version);
        if (!s->ready_at) s->ready_at = now ? now : 1;
        ssmb__sess_set_state(s, SSMB_SESSION_READY);
        return 0;
    case SSMB_CHANNEL_EVENT_DATA:
        if (ce->payload_type != SSMB_PAYLOAD_OUTPUT && ce->payload_type != SSMB_PAYLOAD_STDERR) return 0;
        if (s->fwd && ssmb__sess_is_port(s)) { /* the forward's bytes (it keeps what it cannot take yet) */
            ssmb__fwd_hand(eng, s, ce->data, ce->len, now);
            return 0;
        }
        ssmb__sess_event_base(s, ev, ce->payload_type == SSMB_PAYLOAD_STDERR ? (uint32_t)SSMB_EVENT_SESSION_STDERR
                                                                             : (uint32_t)SSMB_EVENT_SESSION_OUTPUT);
        ev->data = ce->data;
        ev->len = ce->len;
        return ce->len > 0;
    case SSMB_CHANNEL_EVENT_EXIT_CODE:
        if (ce->result != SSMB_OK) return 0;
        s->exit_code = ce->exit_code;
        ssmb__sess_event_base(s, ev, SSMB_EVENT_SESSION_EXIT);
        ev->exit_code = ce->exit_code;
        return 1;
    case SSMB_CHANNEL_EVENT_CLOSED:
        if (ce->message.len) ssmb__sess_reason(s, "", ce->message.ptr, ce->message.len);
        if (ce->terminate_session) s->terminate = 1;
        ssmb__sess_begin_closing(eng, s, (ssmb_result)ce->result, now);
        return 0;
    case SSMB_CHANNEL_EVENT_KMS_REQUEST:
        ssmb__sess_copy(s->kms_key_id, sizeof s->kms_key_id, ce->kms_key_id);
        ssmb__sess_copy(s->kms_challenge, sizeof s->kms_challenge, ce->kms_challenge);
        s->kms_wanted = 1;
        return 0;
    default: return 0; /* flags, pauses: the channel acts on them */
    }
}

/* The session's next event for the host, in order: state changes,
   writable, channel events (output, standard error, exit), closed. */
static int ssmb__sess_next_event(ssmb_engine *eng, ssmb__sess *s, ssmb_event *ev) {
    ssmb_channel_event ce;
    if (s->states_count) {
        ssmb__sess_event_base(s, ev, SSMB_EVENT_SESSION_STATE);
        ev->state = s->states[s->states_head];
        s->states_head = (s->states_head + 1) % SSMB__SESS_STATES;
        s->states_count--;
        return 1;
    }
    if (s->pending_writable) {
        s->pending_writable = 0;
        ssmb__sess_event_base(s, ev, SSMB_EVENT_SESSION_WRITABLE);
        return 1;
    }
    if (s->fwd && ssmb__fwd_next_event(s, ev)) return 1;
    /* While the forward holds bytes of a channel event, the channel waits. */
    while (s->ch && !ssmb__fwd_pending(s->fwd) && ssmb_channel_poll(s->ch, &ce) == SSMB_OK) {
        if (ssmb__sess_channel_event(eng, s, &ce, ev, eng->now)) return 1;
        if (s->states_count) return ssmb__sess_next_event(eng, s, ev);
    }
    if (s->closed_pending && !s->closed_told) {
        s->closed_told = 1;
        ssmb__sess_event_base(s, ev, SSMB_EVENT_SESSION_CLOSED);
        ev->result = (int32_t)(s->result ? s->result : SSMB_CLOSED);
        ev->message = ssmb_str_c(s->reason);
        return 1;
    }
    return 0;
}

static void ssmb__sess_free(ssmb_engine *eng, ssmb__sess *s);

/* Frees sessions whose SESSION_CLOSED the host has had. */
static void ssmb__sess_reap(ssmb_engine *eng) {
    uint32_t i;
    for (i = 0; i < eng->desc.max_sessions; i++) {
        ssmb__sess *s = eng->sessions[i];
        if (s && s->closed_told) {
            if (eng->desc.metrics_fn) ssmb__sess_report_metrics(eng, s);
            ssmb__sess_free(eng, s);
        }
    }
}

/* Every session's turn, and with event_fn its events. */
static void ssmb__sessions_work(ssmb_engine *eng, const ssmb_pollfd *ready, size_t nready, uint64_t now) {
    uint32_t i;
    for (i = 0; i < eng->desc.max_sessions; i++) {
        ssmb__sess *s = eng->sessions[i];
        int round;
        if (!s) continue;
        ssmb__sess_work(eng, s, ready, nready, now);
        for (round = 0; round < SSMB__EVENT_ROUNDS && eng->desc.event_fn; round++) {
            ssmb_event ev;
            int any = 0;
            while (ssmb__sess_next_event(eng, s, &ev)) {
                any = 1;
                eng->in_event = 1;
                eng->desc.event_fn(eng, &ev, eng->desc.event_user_data);
                eng->in_event = 0;
            }
            if (!any) break;
            ssmb__sess_work(eng, s, ready, nready, now); /* what the callbacks sent goes out now */
        }
    }
    ssmb__sess_reap(eng);
}

static int ssmb__sessions_next_event(ssmb_engine *eng, ssmb_event *out) {
    uint32_t i;
    for (i = 0; i < eng->desc.max_sessions; i++) {
        ssmb__sess *s = eng->sessions[i];
        if (s && !s->closed_told && ssmb__sess_next_event(eng, s, out)) return 1;
    }
    return 0;
}

static uint64_t ssmb__sessions_deadline(const ssmb_engine *eng) {
    uint64_t best = SSMB_NO_DEADLINE;
    uint32_t i;
    for (i = 0; i < eng->desc.max_sessions && best > 0; i++)
        if (eng->sessions[i]) best = SSMB__MIN(best, ssmb__sess_deadline(eng->sessions[i]));
    return best;
}

/* ---- start ---- */

static size_t ssmb__zlen(const char *s) { return s ? strlen(s) : 0; }

/* Copies of StartSession's strings, measured then carved like the conn. */
static void ssmb__sess_layout(ssmb__arena *a, const ssmb_session_desc *d, ssmb__sess *s) {
    uint32_t i;
    size_t k;
    (void)ssmb__arena_take(a, sizeof(ssmb__sess), 16);
    s->target = ssmb__arena_strn(a, d->target ? d->target : "", ssmb__zlen(d->target));
    s->kms_endpoint = d->kms_endpoint_url && *d->kms_endpoint_url
                          ? ssmb__arena_strn(a, d->kms_endpoint_url, strlen(d->kms_endpoint_url))
                          : NULL;
    s->start.target = s->target;
    s->start.document_name = d->document_name ? ssmb__arena_strn(a, d->document_name, strlen(d->document_name)) : NULL;
    s->start.reason = d->reason ? ssmb__arena_strn(a, d->reason, strlen(d->reason)) : NULL;
    s->params = (ssmb_api_parameter *)ssmb__arena_take(a, sizeof(ssmb_api_parameter) * (d->parameter_count + 1u), 8);
    for (i = 0; i < d->parameter_count; i++) {
        const ssmb_api_parameter *p = &d->parameters[i];
        const char **values = (const char **)ssmb__arena_take(a, sizeof(char *) * (p->value_count + 1u), 8);
        const char *name = ssmb__arena_strn(a, p->name ? p->name : "", ssmb__zlen(p->name));
        for (k = 0; k < p->value_count; k++) {
            const char *v = ssmb__arena_strn(a, p->values[k] ? p->values[k] : "", ssmb__zlen(p->values[k]));
            if (values) values[k] = v;
        }
        if (s->params) {
            s->params[i].name = name;
            s->params[i].values = values;
            s->params[i].value_count = p->value_count;
        }
    }
    s->start.parameters = s->params;
    s->start.parameter_count = d->parameter_count;
}

static ssmb_result ssmb__sess_check_desc(const ssmb_session_desc *d) {
    uint32_t i;
    int attach = d->session_id || d->stream_url || d->token_value;
    if (attach && (!d->session_id || !d->stream_url || !d->token_value)) return SSMB_ERR_INVALID_ARG;
    if (!attach && (!d->target || !*d->target)) return SSMB_ERR_INVALID_ARG;
    if (attach && (strlen(d->session_id) > SSMB_API_SESSION_ID_MAX || strlen(d->token_value) > SSMB_API_TOKEN_MAX ||
                   strlen(d->stream_url) > SSMB_API_STREAM_URL_MAX))
        return SSMB_ERR_LIMIT;
    if (d->parameter_count && !d->parameters) return SSMB_ERR_INVALID_ARG;
    for (i = 0; i < d->parameter_count; i++)
        if (!d->parameters[i].name || (d->parameters[i].value_count && !d->parameters[i].values))
            return SSMB_ERR_INVALID_ARG;
    if (d->payload_size > SSMB_CHANNEL_MAX_PAYLOAD) return SSMB_ERR_INVALID_ARG;
    return SSMB_OK;
}

/* Region: the desc, AWS_REGION, AWS_DEFAULT_REGION, then the profile's. */
static void ssmb__sess_region(ssmb_engine *eng, ssmb__sess *s, const ssmb_session_desc *d, const char *profile_region) {
    const char *r = d->region;
    if (!r || !*r) r = eng->desc.getenv_fn("AWS_REGION", eng->desc.getenv_user_data);
    if (!r || !*r) r = eng->desc.getenv_fn("AWS_DEFAULT_REGION", eng->desc.getenv_user_data);
    if ((!r || !*r) && profile_region) r = profile_region;
    if (r && strlen(r) < sizeof s->region) strcpy(s->region, r);
}

/* The SSM endpoint, and the StreamUrl host a custom endpoint allows. */
static ssmb_result ssmb__sess_endpoint(ssmb_engine *eng, ssmb__sess *s, const ssmb_session_desc *d) {
    ssmb_api_endpoint_desc ed;
    ssmb_url u;
    size_t n = 0;
    uint32_t source = 0;
    ssmb_result r;
    memset(&ed, 0, sizeof ed);
    ed.service = "ssm";
    ed.region = s->region;
    ed.endpoint_url = d->endpoint_url;
    ed.getenv_fn = eng->desc.getenv_fn;
    ed.getenv_user_data = eng->desc.getenv_user_data;
    r = ssmb_api_endpoint_resolve(&ed, s->ssm_endpoint, sizeof s->ssm_endpoint, &n, &source);
    if (r != SSMB_OK) return r;
    if (!d->allow_custom_stream_host || source == SSMB_API_ENDPOINT_DEFAULT) return SSMB_OK;
    if (ssmb_url_parse(s->ssm_endpoint, n, &u) != SSMB_OK || u.host.len >= sizeof s->custom_host)
        return SSMB_ERR_INVALID_ARG;
    memcpy(s->custom_host, u.host.ptr, u.host.len);
    s->custom_host[u.host.len] = '\0';
    s->allow_plain_ws = !u.secure;
    return SSMB_OK;
}

static ssmb_result ssmb__sess_channel(ssmb_engine *eng, ssmb__sess *s, const ssmb_session_desc *d) {
    ssmb_channel_desc cd;
    memset(&cd, 0, sizeof cd);
    cd.role = SSMB_CHANNEL_CLIENT;
    cd.allocator = eng->desc.allocator;
    cd.logger = eng->desc.logger;
    cd.random_fn = eng->desc.random_fn;
    cd.random_user_data = eng->desc.random_user_data;
    cd.utc_fn = eng->desc.utc_fn;
    cd.utc_user_data = eng->desc.utc_user_data;
    cd.client_version = d->client_version;
    cd.payload_size = d->payload_size;
    cd.send_buffer_bytes = d->send_buffer_bytes;
    if (d->send_buffer_bytes) /* as many messages as the bytes hold at the payload size */
        cd.send_buffer_messages = d->send_buffer_bytes / (d->payload_size ? d->payload_size : 1024u) + 4u;
    cd.reorder_buffer_max_bytes = d->reorder_buffer_bytes ? d->reorder_buffer_bytes : 1024u * 1024u;
    cd.max_frame = (uint32_t)s->frame_cap;
    cd.decrypt_in_place = 1; /* messages are read in the conn's input or the session's own buffer */
    return ssmb_channel_create(&cd, &s->ch);
}

static void ssmb__sess_free(ssmb_engine *eng, ssmb__sess *s) {
    if (s->ws.id) ssmb_engine_ws_abort(eng, s->ws);
    if (s->call_ws.id) ssmb_engine_ws_abort(eng, s->call_ws);
    if (s->ch) ssmb_channel_destroy(s->ch);
    if (s->fwd) ssmb__fwd_free(eng, s->fwd);
    ssmb__sess_drop_ident(eng, s);
    if (s->frame) {
        ssmb__wipe(s->frame, s->frame_cap);
        ssmb__free(&eng->desc.allocator, s->frame, s->frame_cap);
    }
    ssmb__sess_plan_free(eng, s);
    ssmb__sess_proc_stop(eng, s);
    eng->sessions[s->index] = NULL;
    ssmb__free_object(s, &eng->desc.allocator, s->mem_size); /* keys and the token are wiped with it */
}

/* The desc's keys and profile, kept for the chain's later runs. */
static ssmb_result ssmb__sess_keep_identity(ssmb__sess *s, const ssmb_session_desc *d) {
    const ssmb_aws_credentials *c = &d->credentials;
    if (c->access_key_id.len >= sizeof s->creds.access_key_id ||
        c->secret_access_key.len >= sizeof s->creds.secret_access_key ||
        c->session_token.len >= sizeof s->creds.session_token || (d->profile && strlen(d->profile) >= sizeof s->profile))
        return SSMB_ERR_LIMIT;
    s->explicit_creds = c->access_key_id.len != 0;
    if (c->access_key_id.len) memcpy(s->creds.access_key_id, c->access_key_id.ptr, c->access_key_id.len);
    if (c->secret_access_key.len) memcpy(s->creds.secret_access_key, c->secret_access_key.ptr, c->secret_access_key.len);
    if (c->session_token.len) memcpy(s->creds.session_token, c->session_token.ptr, c->session_token.len);
    if (d->profile) strcpy(s->profile, d->profile);
    return SSMB_OK;
}

static ssmb_result ssmb__sess_setup(ssmb_engine *eng, ssmb__sess *s, const ssmb_session_desc *d, uint64_t now) {
    ssmb_result r = ssmb__sess_keep_identity(s, d);
    if (r != SSMB_OK) return r;
    ssmb__sess_region(eng, s, d, NULL);
    r = ssmb__sess_creds_begin(eng, s, SSMB__CALL_NONE, now);
    if (r != SSMB_OK) return r;
    if (!s->region[0] && !d->stream_url) {
        SSMB__SLOG(eng, SSMB_LOG_ERROR, "no region: set desc.region, AWS_REGION or the profile's region");
        return SSMB_ERR_INVALID_ARG;
    }
    if (!d->stream_url || d->endpoint_url) {
        r = ssmb__sess_endpoint(eng, s, d);
        if (r != SSMB_OK) {
            SSMB__SLOG(eng, SSMB_LOG_ERROR, "the SSM endpoint cannot be formed (endpoint_url, region)");
            return r;
        }
    }
    r = ssmb__sess_channel(eng, s, d);
    if (r == SSMB_OK) r = ssmb_channel_start(s->ch, now);
    if (r != SSMB_OK) return r;
    s->no_reconnect = d->no_reconnect != 0;
    s->reconnect_timeout_ms = d->reconnect_timeout_ms ? d->reconnect_timeout_ms : 120000;
    s->terminate_timeout_ms = d->terminate_timeout_ms ? d->terminate_timeout_ms : 5000;
    s->cols = d->cols;
    s->rows = d->rows;
    s->size_pending = d->cols && d->rows;
    s->exit_code = -1;
    s->started_at = now;
    s->metrics_due = now + eng->desc.metrics_interval_ms;
    if (d->stream_url) { /* attach: the StreamUrl passes the same check as StartSession's */
        ssmb_api_stream_policy policy;
        ssmb__sess_policy(s, &policy);
        if (ssmb_api_stream_url_check(d->stream_url, strlen(d->stream_url), &policy) != SSMB_OK) {
            SSMB__SLOG(eng, SSMB_LOG_ERROR, "StreamUrl refused: not an ssmmessages host of AWS");
            return SSMB_ERR_SSM_PROTOCOL;
        }
        strcpy(s->session_id, d->session_id);
        if (ssmb__sess_set_ident(eng, s, ssmb_str_c(d->token_value), ssmb_str_c(d->stream_url)) != SSMB_OK)
            return SSMB_ERR_NOMEM;
    }
    /* What comes once the credentials are there (now, or after the chain's steps). */
    if (s->plan) {
        s->after_creds = d->stream_url ? SSMB__CALL_OPEN_WS : SSMB__CALL_START;
        return SSMB_OK;
    }
    if (d->stream_url) return ssmb__sess_open_ws(eng, s, now);
    ssmb__sess_set_state(s, SSMB_SESSION_STARTING);
    s->call_kind = SSMB__CALL_START;
    s->call_due = now;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_session_start(ssmb_engine *eng, const ssmb_session_desc *d, uint64_t now_ms,
                                           ssmb_session *out) {
    ssmb__sess scratch, *s;
    ssmb__arena a;
    size_t frame_cap;
    uint32_t i;
    ssmb_result r;
    if (out) out->id = 0;
    if (!eng || !d || !out) return SSMB_ERR_INVALID_ARG;
    if (eng->in_event) return SSMB_ERR_INVALID_STATE;
    r = ssmb__sess_check_desc(d);
    if (r != SSMB_OK) {
        SSMB__SLOG(eng, SSMB_LOG_ERROR, "ssmb_session_desc: target, attach fields, parameters or payload_size invalid");
        return r;
    }
    for (i = 0; i < eng->desc.max_sessions && eng->sessions[i]; i++) {}
    if (i == eng->desc.max_sessions) return SSMB_ERR_LIMIT;
    /* the agent's messages: payloads as large as ours or 16 KiB, and the 120-byte header (§2.1) */
    frame_cap = (d->payload_size > 16384u ? d->payload_size : 16384u) + 120u;
    memset(&scratch, 0, sizeof scratch);
    memset(&a, 0, sizeof a);
    ssmb__sess_layout(&a, d, &scratch);
    if (a.overflow) return SSMB_ERR_OVERFLOW;
    s = (ssmb__sess *)ssmb__alloc(&eng->desc.allocator, a.used);
    if (!s) return SSMB_ERR_NOMEM;
    memset(s, 0, a.used);
    a.base = (uint8_t *)s;
    a.used = 0;
    ssmb__sess_layout(&a, d, s);
    s->mem_size = a.used;
    s->frame_cap = frame_cap;
    s->index = i;
    s->gen = eng->session_gen[i] = eng->session_gen[i] == 0xffffu ? 1u : eng->session_gen[i] + 1u;
    s->user_data = d->user_data;
    s->proc_fd = -1;
    s->state = SSMB_SESSION_CREDENTIALS;
    eng->sessions[i] = s;
    eng->now = now_ms;
    r = ssmb__sess_setup(eng, s, d, now_ms);
    if (r != SSMB_OK) {
        ssmb__sess_free(eng, s);
        return r;
    }
    eng->sessions_started++;
    *out = ssmb__sess_handle(s);
    return SSMB_OK;
}

/* ---- using a session ---- */

SSMB_APIDEF ssmb_result ssmb_session_send(ssmb_engine *eng, ssmb_session h, const void *data, size_t len,
                                          size_t *accepted) {
    ssmb__sess *s = ssmb__sess_of(eng, h);
    ssmb_result r;
    if (accepted) *accepted = 0;
    if (!s || (!data && len)) return SSMB_ERR_INVALID_ARG;
    if (s->state == SSMB_SESSION_CLOSING || s->state == SSMB_SESSION_CLOSED) return SSMB_CLOSED;
    if (s->fwd) return SSMB_ERR_INVALID_STATE;
    r = ssmb_channel_send(s->ch, SSMB_PAYLOAD_OUTPUT, data, len, accepted);
    if (r == SSMB_AGAIN || (r == SSMB_OK && accepted && *accepted < len)) s->want_writable = 1;
    if (r == SSMB_OK) ssmb__sess_ws_out(eng, s, eng->now);
    return r;
}

SSMB_APIDEF size_t ssmb_session_send_space(ssmb_engine *eng, ssmb_session h) {
    ssmb__sess *s = ssmb__sess_of(eng, h);
    if (!s || s->state == SSMB_SESSION_CLOSING || s->state == SSMB_SESSION_CLOSED) return 0;
    return ssmb_channel_send_space(s->ch);
}

SSMB_APIDEF ssmb_result ssmb_session_resize(ssmb_engine *eng, ssmb_session h, uint32_t cols, uint32_t rows) {
    ssmb__sess *s = ssmb__sess_of(eng, h);
    if (!s || !cols || !rows || cols > 0xffffu || rows > 0xffffu) return SSMB_ERR_INVALID_ARG;
    s->cols = cols;
    s->rows = rows;
    s->size_pending = 1;
    if (ssmb_channel_is_ready(s->ch) && ssmb_channel_send_size(s->ch, cols, rows) == SSMB_OK) {
        s->size_pending = 0;
        ssmb__sess_ws_out(eng, s, eng->now);
    }
    return SSMB_OK;
}

/* §2.9, §7.6: agents newer than 2.3.722.0 understand a TerminateSession flag. */
static void ssmb__sess_flag_terminate(ssmb_engine *eng, ssmb__sess *s) {
    if (!ssmb_channel_is_ready(s->ch) || !ssmb_agent_has(s->agent_version, SSMB_AGENT_TERMINATE_FLAG)) return;
    if (ssmb_channel_send_flag(s->ch, SSMB_FLAG_TERMINATE_SESSION) == SSMB_OK) ssmb__sess_ws_out(eng, s, eng->now);
}

/* The session cannot go on (s->reason says why): end it for good. */
static void ssmb__sess_terminate_now(ssmb_engine *eng, ssmb__sess *s) {
    s->terminate = 1;
    ssmb__sess_flag_terminate(eng, s);
    ssmb__sess_begin_closing(eng, s, SSMB_ERR_SSM_PROTOCOL, eng->now);
}

SSMB_APIDEF ssmb_result ssmb_session_terminate(ssmb_engine *eng, ssmb_session h, uint64_t now_ms) {
    ssmb__sess *s = ssmb__sess_of(eng, h);
    if (!s) return SSMB_ERR_INVALID_ARG;
    if (s->state == SSMB_SESSION_CLOSING || s->state == SSMB_SESSION_CLOSED) return SSMB_OK;
    eng->now = now_ms;
    s->terminate = 1;
    ssmb__sess_flag_terminate(eng, s);
    if (!s->reason[0]) ssmb__sess_reason(s, "terminated by the host", NULL, 0);
    ssmb__sess_begin_closing(eng, s, SSMB_CLOSED, now_ms);
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_session_detach(ssmb_engine *eng, ssmb_session h, uint64_t now_ms) {
    ssmb__sess *s = ssmb__sess_of(eng, h);
    if (!s) return SSMB_ERR_INVALID_ARG;
    if (s->state == SSMB_SESSION_CLOSING || s->state == SSMB_SESSION_CLOSED) return SSMB_OK;
    eng->now = now_ms;
    s->terminate = 0;
    if (!s->reason[0]) ssmb__sess_reason(s, "detached by the host", NULL, 0);
    ssmb__sess_begin_closing(eng, s, SSMB_CLOSED, now_ms);
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_session_get_info(ssmb_engine *eng, ssmb_session h, ssmb_session_info *out) {
    ssmb__sess *s = ssmb__sess_of(eng, h);
    if (!out) return SSMB_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (!s) return SSMB_ERR_INVALID_ARG;
    out->state = s->state;
    out->session_id = ssmb_str_c(s->session_id);
    out->target = ssmb_str_c(s->target);
    out->session_type = ssmb_str_c(s->session_type);
    out->agent_version = ssmb_str_c(s->agent_version);
    out->region = ssmb_str_c(s->region);
    out->port_mux = strcmp(s->session_type, "Port") == 0 && ssmb_agent_has(s->agent_version, SSMB_AGENT_MUX);
    out->exit_code = s->exit_code;
    out->encrypted = (uint32_t)ssmb_channel_encrypted(s->ch);
    ssmb__sess_metrics(s, &out->metrics);
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_engine_metrics(ssmb_engine *eng, ssmb_session_metrics *out) {
    uint32_t i;
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!eng) return;
    out->sessions_started = eng->sessions_started;
    for (i = 0; i < eng->desc.max_sessions; i++) {
        ssmb_session_metrics m;
        if (!eng->sessions[i]) continue;
        ssmb__sess_metrics(eng->sessions[i], &m);
        out->sessions_open++;
        out->messages_in += m.messages_in;
        out->messages_out += m.messages_out;
        out->bytes_in += m.bytes_in;
        out->bytes_out += m.bytes_out;
        out->retransmissions += m.retransmissions;
        out->reconnects += m.reconnects;
    }
}

SSMB_APIDEF int ssmb_engine_shutdown(ssmb_engine *eng, uint64_t now_ms, uint64_t deadline_ms) {
    uint32_t i;
    int open = 0;
    if (!eng || eng->in_event) return 0;
    for (i = 0; i < eng->desc.max_sessions; i++) {
        ssmb__sess *s = eng->sessions[i];
        if (!s) continue;
        if (now_ms >= deadline_ms) {
            ssmb__sess_free(eng, s);
            continue;
        }
        open = 1;
        if (s->state != SSMB_SESSION_CLOSING && s->state != SSMB_SESSION_CLOSED)
            (void)ssmb_session_terminate(eng, ssmb__sess_handle(s), now_ms);
        if (s->state == SSMB_SESSION_CLOSED && !eng->desc.event_fn) { /* nobody pulls: let it go */
            ssmb__sess_free(eng, s);
            open = 0;
        }
    }
    if (open && now_ms < deadline_ms) (void)ssmb_engine_tick(eng, now_ms);
    for (i = 0; i < eng->desc.max_sessions; i++)
        if (eng->sessions[i]) return 0;
    return 1;
}

/* ---- typed documents (PROTOCOL.md §7.7) ---- */

static void ssmb__doc_param(ssmb_document *doc, uint32_t *n, const char *name, const char *value) {
    doc->values[*n] = value;
    doc->params[*n].name = name;
    doc->params[*n].values = &doc->values[*n];
    doc->params[*n].value_count = 1;
    (*n)++;
}

static const char *ssmb__doc_port(ssmb_document *doc, uint32_t slot, uint16_t port) {
    char *t = doc->text[slot];
    ssmb__eng_put_port(t, port);
    return t;
}

static void ssmb__doc_finish(ssmb_session_desc *d, ssmb_document *doc, const char *name, uint32_t n) {
    d->document_name = name;
    d->parameters = doc->params;
    d->parameter_count = n;
}

/* A port document: host (NULL: none), portNumber, localPortNumber (0: none). */
static void ssmb__doc_ports(ssmb_session_desc *d, ssmb_document *doc, const char *name, const char *host,
                            uint16_t remote_port, uint16_t local_port) {
    uint32_t n = 0;
    if (!d || !doc) return;
    memset(doc, 0, sizeof *doc);
    if (host) ssmb__doc_param(doc, &n, "host", host);
    ssmb__doc_param(doc, &n, "portNumber", ssmb__doc_port(doc, 0, remote_port));
    if (local_port) ssmb__doc_param(doc, &n, "localPortNumber", ssmb__doc_port(doc, 1, local_port));
    ssmb__doc_finish(d, doc, name, n);
}

/* A command document: its one parameter, command. */
static void ssmb__doc_command(ssmb_session_desc *d, ssmb_document *doc, const char *name, const char *command) {
    uint32_t n = 0;
    if (!d || !doc) return;
    memset(doc, 0, sizeof *doc);
    ssmb__doc_param(doc, &n, "command", command ? command : "");
    ssmb__doc_finish(d, doc, name, n);
}

SSMB_APIDEF void ssmb_document_port_forward(ssmb_session_desc *d, ssmb_document *doc, uint16_t remote_port,
                                            uint16_t local_port) {
    ssmb__doc_ports(d, doc, "AWS-StartPortForwardingSession", NULL, remote_port, local_port);
}

SSMB_APIDEF void ssmb_document_port_forward_remote(ssmb_session_desc *d, ssmb_document *doc, const char *host,
                                                   uint16_t remote_port, uint16_t local_port) {
    ssmb__doc_ports(d, doc, "AWS-StartPortForwardingSessionToRemoteHost", host ? host : "", remote_port,
                    local_port);
}

SSMB_APIDEF void ssmb_document_ssh(ssmb_session_desc *d, ssmb_document *doc, uint16_t port) {
    ssmb__doc_ports(d, doc, "AWS-StartSSHSession", NULL, port ? port : 22, 0);
}

SSMB_APIDEF void ssmb_document_interactive_command(ssmb_session_desc *d, ssmb_document *doc, const char *command) {
    ssmb__doc_command(d, doc, "AWS-StartInteractiveCommand", command);
}

SSMB_APIDEF void ssmb_document_command(ssmb_session_desc *d, ssmb_document *doc, const char *command) {
    ssmb__doc_command(d, doc, "AWS-StartNonInteractiveCommand", command);
}

// >>portfwd
/* Forwards: a local listener bound to a Port session. Its descriptors are
   the engine's too (after the slots'). Each accepted connection becomes
   an smux stream (mux mode) or, one at a time, the session's byte stream
   itself (basic mode, §7.3). Bytes move without a copy of the forward's
   own: socket reads go straight into the mux or the channel, and what the
   agent sends is written from the mux's stream buffer (mux) or the
   channel's event (basic) into the socket, consumed only as far as the
   socket took it (back-pressure both ways). */

#define SSMB__FWD_EVENTS 16u
#define SSMB__FWD_READ_MAX 65536u   /* bytes read from a socket at a time */
#define SSMB__FWD_READ_ROUNDS 8     /* reads from one socket per turn, while each fills the read */
#define SSMB__FWD_PLACES 64         /* messages one read may fill in place */

typedef struct ssmb__fwd_conn {
    int fd;                         /* -1: free */
    uint16_t told_events;
    int told_fd;
    uint32_t number;                /* for FORWARD_* events */
    uint32_t stream;                /* mux mode: its smux stream */
    uint8_t peer_ended;             /* mux: the agent's FIN came; close once its bytes are written */
} ssmb__fwd_conn;

struct ssmb__fwd {
    size_t mem_size;
    uint32_t gen;
    int lfd;                        /* the listener */
    int told_lfd;
    uint16_t told_levents;
    char path[108];                 /* a Unix socket's, removed at close */
    char address[128];              /* what it is bound to, as text */
    uint32_t max_conns, events;
    int mode;                       /* -1 until the session is ready; 0 basic; 1 mux */
    ssmb_smux *mux;
    uint32_t next_number;
    uint32_t active;                /* basic mode: the connection in use + 1, else 0 */
    const uint8_t *pend;            /* agent bytes not yet taken (into the channel's event) */
    size_t pend_len;
    uint32_t ev_type[SSMB__FWD_EVENTS], ev_number[SSMB__FWD_EVENTS];
    uint32_t ev_head, ev_count;
    ssmb__fwd_conn conns[SSMB__FWD_MAX_CONNS];
    uint8_t scratch[SSMB__FWD_READ_MAX];
};

static void ssmb__fwd_event(ssmb__fwd *f, uint32_t type, uint32_t number) {
    uint32_t at;
    if (!f->events) return;
    if (f->ev_count == SSMB__FWD_EVENTS) { /* the host is far behind: keep the newest */
        f->ev_head = (f->ev_head + 1) % SSMB__FWD_EVENTS;
        f->ev_count--;
    }
    at = (f->ev_head + f->ev_count) % SSMB__FWD_EVENTS;
    f->ev_type[at] = type;
    f->ev_number[at] = number;
    f->ev_count++;
}

static void ssmb__fwd_tell(ssmb_engine *eng, int fd, uint32_t events) {
    if (eng->desc.fd_change_fn && fd >= 0) eng->desc.fd_change_fn(fd, events, eng->desc.fd_change_user_data);
}

static void ssmb__fwd_conn_close(ssmb_engine *eng, ssmb__fwd *f, ssmb__fwd_conn *c) {
    uint32_t index = (uint32_t)(c - f->conns);
    if (c->fd < 0) return;
    if (c->told_events) ssmb__fwd_tell(eng, c->fd, 0);
    close(c->fd);
    ssmb__fwd_event(f, SSMB_EVENT_FORWARD_CLOSE, c->number);
    c->fd = c->told_fd = -1;
    c->told_events = 0;
    if (f->mode == 1 && !c->peer_ended) (void)ssmb_smux_close(f->mux, c->stream); /* FIN: §7.4, §16 */
    c->peer_ended = 0;
    if (f->active == index + 1u) f->active = 0;
}

/* ---- binding ---- */

/* "host:port", "[v6]:port" or "unix:/path" into a socket address. */
static ssmb_result ssmb__fwd_address(const char *text, struct sockaddr_storage *sa, socklen_t *len, char *path,
                                     size_t path_cap) {
    char host[64];
    const char *colon;
    unsigned long port;
    char *end;
    size_t hl;
    memset(sa, 0, sizeof *sa);
    if (strncmp(text, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)sa;
        size_t n = strlen(text + 5);
        if (n == 0 || n >= sizeof un->sun_path || n >= path_cap) return SSMB_ERR_INVALID_ARG;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, text + 5, n + 1);
        memcpy(path, text + 5, n + 1);
        *len = (socklen_t)sizeof *un;
        return SSMB_OK;
    }
    colon = strrchr(text, ':');
    if (!colon || colon == text) return SSMB_ERR_INVALID_ARG;
    hl = (size_t)(colon - text);
    if (text[0] == '[') {
        if (hl < 3 || text[hl - 1] != ']') return SSMB_ERR_INVALID_ARG;
        text++;
        hl -= 2;
    }
    if (hl >= sizeof host) return SSMB_ERR_INVALID_ARG;
    memcpy(host, text, hl);
    host[hl] = '\0';
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port > 65535 || errno) return SSMB_ERR_INVALID_ARG;
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)sa)->sin_addr) == 1) {
        ((struct sockaddr_in *)sa)->sin_family = AF_INET;
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
        *len = (socklen_t)sizeof(struct sockaddr_in);
        return SSMB_OK;
    }
    if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)sa)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)sa)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
        *len = (socklen_t)sizeof(struct sockaddr_in6);
        return SSMB_OK;
    }
    return SSMB_ERR_INVALID_ARG; /* names are not resolved here: give an address */
}

/* The bound address as text, after bind (port 0 becomes the real one). */
static void ssmb__fwd_describe(ssmb__fwd *f) {
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char host[INET6_ADDRSTRLEN], port[8];
    uint16_t p;
    if (f->path[0]) {
        snprintf(f->address, sizeof f->address, "unix:%s", f->path);
        return;
    }
    if (getsockname(f->lfd, (struct sockaddr *)&sa, &len) != 0) return;
    if (sa.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof host);
        p = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof host);
        p = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    }
    ssmb__eng_put_port(port, p);
    snprintf(f->address, sizeof f->address, sa.ss_family == AF_INET ? "%s:%s" : "[%s]:%s", host, port);
}

static ssmb_result ssmb__fwd_listen(ssmb_engine *eng, ssmb__fwd *f, const char *text) {
    struct sockaddr_storage sa;
    socklen_t len = 0;
    int one = 1;
    ssmb_result r = ssmb__fwd_address(text, &sa, &len, f->path, sizeof f->path);
    if (r != SSMB_OK) {
        SSMB__SLOG(eng, SSMB_LOG_ERROR, "forward: listen must be host:port, [v6]:port or unix:/path");
        return r;
    }
    f->lfd = ssmb__net_socket(sa.ss_family, SOCK_STREAM);
    if (f->lfd < 0) return SSMB_ERR_IO;
    if (f->path[0]) (void)unlink(f->path);
    else (void)setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(f->lfd, (struct sockaddr *)&sa, len) != 0 || listen(f->lfd, 64) != 0) {
        SSMB__SLOG(eng, SSMB_LOG_ERROR, "forward: cannot bind or listen (address in use or not allowed)");
        close(f->lfd);
        f->lfd = -1;
        f->path[0] = '\0';
        return SSMB_ERR_CONNECT;
    }
    ssmb__fwd_describe(f);
    return SSMB_OK;
}

static void ssmb__fwd_free(ssmb_engine *eng, ssmb__fwd *f) {
    uint32_t i;
    for (i = 0; i < f->max_conns; i++)
        if (f->conns[i].fd >= 0) {
            if (f->conns[i].told_events) ssmb__fwd_tell(eng, f->conns[i].fd, 0);
            close(f->conns[i].fd);
        }
    if (f->lfd >= 0) {
        if (f->told_levents) ssmb__fwd_tell(eng, f->lfd, 0);
        close(f->lfd);
    }
    if (f->path[0]) (void)unlink(f->path);
    if (f->mux) ssmb_smux_destroy(f->mux);
    ssmb__free_object(f, &eng->desc.allocator, f->mem_size); /* forwarded bytes are wiped with it */
}

static int ssmb__sess_is_port(const ssmb__sess *s) { return strcmp(s->session_type, "Port") == 0; }

/* Once the session is ready: basic or mux, as the agent's version says (§7.6). */
static void ssmb__fwd_choose(ssmb_engine *eng, ssmb__sess *s, ssmb__fwd *f) {
    ssmb_smux_desc md;
    if (f->mode >= 0 || s->state != SSMB_SESSION_READY) return;
    if (!ssmb__sess_is_port(s)) {
        ssmb__sess_reason(s, "a forward needs a Port session; the session is ", s->session_type,
                          strlen(s->session_type));
        ssmb__sess_terminate_now(eng, s);
        return;
    }
    f->mode = ssmb_agent_has(s->agent_version, SSMB_AGENT_MUX) ? 1 : 0;
    if (f->mode == 0) return;
    memset(&md, 0, sizeof md);
    md.role = SSMB_SMUX_CLIENT;
    md.allocator = eng->desc.allocator;
    md.max_streams = f->max_conns;
    md.keepalive = !ssmb_agent_has(s->agent_version, SSMB_AGENT_NO_SMUX_KEEPALIVE);
    if (ssmb_smux_create(&md, &f->mux) != SSMB_OK) {
        ssmb__sess_reason(s, "forward: no memory for the multiplexer", NULL, 0);
        ssmb__sess_terminate_now(eng, s);
    }
}

/* ---- moving bytes ---- */

static ssmb__fwd_conn *ssmb__fwd_by_stream(ssmb__fwd *f, uint32_t stream) {
    uint32_t i;
    for (i = 0; i < f->max_conns; i++)
        if (f->conns[i].fd >= 0 && f->conns[i].stream == stream) return &f->conns[i];
    return NULL;
}

/* Writes what the mux holds for a stream into its socket. */
static void ssmb__fwd_mux_to_socket(ssmb_engine *eng, ssmb__fwd *f, ssmb__fwd_conn *c) {
    for (;;) {
        const uint8_t *p;
        size_t n = 0;
        ssize_t w;
        ssmb_result r = ssmb_smux_peek(f->mux, c->stream, &p, &n);
        if (r == SSMB_CLOSED || (r == SSMB_AGAIN && c->peer_ended)) {
            c->peer_ended = 1;
            (void)ssmb_smux_close(f->mux, c->stream);
            ssmb__fwd_conn_close(eng, f, c);
            return;
        }
        if (r != SSMB_OK || n == 0) return;
        w = send(c->fd, p, n, SSMB__MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && (ssmb__net_again(errno) || errno == EINTR)) return;
            ssmb__fwd_conn_close(eng, f, c);
            return;
        }
        (void)ssmb_smux_consume(f->mux, c->stream, (size_t)w);
    }
}

/* The agent's bytes (a channel Output event) into the forward. 1 when all
   were taken; else the rest waits in pend (the channel event stays). */
static int ssmb__fwd_take(ssmb_engine *eng, ssmb__fwd *f, uint64_t now) {
    while (f->pend_len) {
        size_t used = 0;
        if (f->mode == 1) {
            ssmb_result r = ssmb_smux_feed(f->mux, f->pend, f->pend_len, &used, now);
            f->pend += used;
            f->pend_len -= used;
            if (r < 0) f->pend_len = 0; /* the mux is over; its ERROR event ends the session */
            if (r != SSMB_OK && used == 0) break;
        } else {
            ssmb__fwd_conn *c = f->active ? &f->conns[f->active - 1] : NULL;
            ssize_t w;
            if (!c) break; /* no connection yet: the bytes wait for one (§7.3) */
            w = send(c->fd, f->pend, f->pend_len, SSMB__MSG_NOSIGNAL);
            if (w < 0 && (ssmb__net_again(errno) || errno == EINTR)) break;
            if (w <= 0) {
                ssmb__fwd_conn_close(eng, f, c);
                break;
            }
            f->pend += w;
            f->pend_len -= (size_t)w;
        }
    }
    return f->pend_len == 0;
}

/* Mux events: data for streams, FINs from the agent, the end of the mux. */
static void ssmb__fwd_mux_events(ssmb_engine *eng, ssmb__sess *s, ssmb__fwd *f) {
    ssmb_smux_event ev;
    while (f->mux && ssmb_smux_poll(f->mux, &ev) == SSMB_OK) {
        ssmb__fwd_conn *c = ssmb__fwd_by_stream(f, ev.stream_id);
        if (ev.type == SSMB_SMUX_EVENT_ERROR) {
            ssmb__sess_reason(s, "port forwarding: the multiplexed stream broke (", ssmb_result_str((ssmb_result)ev.result),
                              strlen(ssmb_result_str((ssmb_result)ev.result)));
            ssmb__sess_terminate_now(eng, s);
            return;
        }
        if (!c) continue;
        if (ev.type == SSMB_SMUX_EVENT_CLOSED) c->peer_ended = 1;
        ssmb__fwd_mux_to_socket(eng, f, c);
    }
}

/* The mux's output into the channel as Output payloads. */
static void ssmb__fwd_mux_out(ssmb__sess *s, ssmb__fwd *f) {
    const uint8_t *p;
    size_t n = 0, taken = 0, room;
    while (f->mux && (p = ssmb_smux_out_buf(f->mux, &n)) != NULL && n) {
        room = ssmb_channel_send_space(s->ch); /* a send of at most this much is taken whole */
        if (room == 0) return;
        if (ssmb_channel_send(s->ch, SSMB_PAYLOAD_OUTPUT, p, SSMB__MIN(n, room), &taken) != SSMB_OK || taken == 0)
            return;
        (void)ssmb_smux_out_ack(f->mux, taken);
    }
}

/* A read that gave nothing: the end of the socket or an error gets FIN
   (mux) or DisconnectToPort (basic, §7.3); one that would block, nothing. */
static void ssmb__fwd_read_ended(ssmb_engine *eng, ssmb__sess *s, ssmb__fwd *f, ssmb__fwd_conn *c, ssize_t n) {
    if (n < 0 && (ssmb__net_again(errno) || errno == EINTR)) return;
    if (f->mode == 0) (void)ssmb_channel_send_flag(s->ch, SSMB_FLAG_DISCONNECT_TO_PORT);
    ssmb__fwd_conn_close(eng, f, c);
}

/* A socket's bytes read straight into the channel's send buffer, one
   message per place (each one mux frame in mux mode): no copy on the way.
   -1 when not now (the mux's own output waits, or no place), else as
   ssmb__fwd_socket_in. */
static int ssmb__fwd_socket_in_placed(ssmb_engine *eng, ssmb__sess *s, ssmb__fwd *f, ssmb__fwd_conn *c) {
    ssmb_send_place places[SSMB__FWD_PLACES];
    struct iovec iov[SSMB__FWD_PLACES];
    size_t head = f->mode == 1 ? SSMB_SMUX_HEADER_SIZE : 0, count, used = 0, ask = 0, left, i, out_len = 0;
    ssize_t n;
    if (f->mode == 1 && ssmb_smux_out_buf(f->mux, &out_len)) return -1;
    count = ssmb_channel_send_places(s->ch, SSMB_PAYLOAD_OUTPUT, places, SSMB__FWD_PLACES);
    /* as many whole places as SSMB__FWD_READ_MAX holds: an even number for
       16 KiB payloads, so that their digests pair (ssmb_sha256_pair) */
    if (count && places[0].cap <= SSMB__FWD_READ_MAX) count = SSMB__MIN(count, SSMB__FWD_READ_MAX / places[0].cap);
    for (i = 0; i < count && places[i].cap > head; i++, used++) {
        iov[i].iov_base = places[i].data + head;
        iov[i].iov_len = SSMB__MIN(places[i].cap - head, (size_t)SSMB_SMUX_MAX_DATA);
        ask += iov[i].iov_len;
    }
    if (used == 0) return -1;
    n = readv(c->fd, iov, (int)used);
    if (n <= 0) {
        ssmb__fwd_read_ended(eng, s, f, c, n);
        return 0;
    }
    for (i = 0, left = (size_t)n; i < used && left; i++) {
        size_t m = SSMB__MIN(left, iov[i].iov_len);
        if (head && ssmb_smux_write_header(f->mux, c->stream, m, places[i].data) != SSMB_OK) break;
        if (ssmb_channel_send_commit(s->ch, head + m) != SSMB_OK) break;
        left -= m;
    }
    return (size_t)n == ask;
}

/* A socket's bytes to the agent, as far as there is room. 1 when the read
   filled what was asked (more may be waiting), else 0. */
static int ssmb__fwd_socket_in(ssmb_engine *eng, ssmb__sess *s, ssmb__fwd *f, ssmb__fwd_conn *c) {
    size_t room = f->mode == 1 ? ssmb_smux_write_space(f->mux) : ssmb_channel_send_space(s->ch);
    ssize_t n;
    size_t taken = 0, ask = SSMB__MIN(room, sizeof f->scratch);
    int placed;
    if (room == 0) return 0;
    placed = ssmb__fwd_socket_in_placed(eng, s, f, c);
    if (placed >= 0) return placed;
    /* through the mux's output (behind what waits there) */
    n = recv(c->fd, f->scratch, ask, 0);
    if (n <= 0) {
        ssmb__fwd_read_ended(eng, s, f, c, n);
        return 0;
    }
    if (f->mode == 1) (void)ssmb_smux_write(f->mux, c->stream, f->scratch, (size_t)n, &taken);
    else (void)ssmb_channel_send(s->ch, SSMB_PAYLOAD_OUTPUT, f->scratch, (size_t)n, &taken);
    return (size_t)n == ask;
}

static void ssmb__fwd_accept(ssmb__fwd *f) {
    uint32_t i;
    int fd;
    for (i = 0; i < f->max_conns && f->conns[i].fd >= 0; i++) {}
    fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) return;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return;
    }
    if (i == f->max_conns || (f->mode == 0 && f->active)) { /* full: refused */
        close(fd);
        return;
    }
    if (f->mode == 1 && ssmb_smux_open(f->mux, &f->conns[i].stream) != SSMB_OK) {
        close(fd);
        return;
    }
    f->conns[i].fd = fd;
    f->conns[i].number = ++f->next_number;
    f->conns[i].peer_ended = 0;
    if (f->mode == 0) f->active = i + 1u;
    ssmb__fwd_event(f, SSMB_EVENT_FORWARD_OPEN, f->conns[i].number);
}

/* The agent's bytes as far as the sockets take them: the mux's streams
   into their sockets, which makes room for the bytes still waiting, whose
   frames may fill the streams again; until nothing moves. */
static void ssmb__fwd_drain(ssmb_engine *eng, ssmb__sess *s, ssmb__fwd *f, uint64_t now) {
    int round;
    for (round = 0; round < 8 && s->state != SSMB_SESSION_CLOSED; round++) {
        size_t before = f->pend_len;
        uint32_t i;
        ssmb__fwd_mux_events(eng, s, f);
        for (i = 0; f->mode == 1 && i < f->max_conns; i++)
            if (f->conns[i].fd >= 0) ssmb__fwd_mux_to_socket(eng, f, &f->conns[i]);
        if (f->pend_len) (void)ssmb__fwd_take(eng, f, now);
        if (f->pend_len == 0 || f->pend_len == before) break;
    }
}

/* The forward's part of the session's turn. */
static void ssmb__fwd_work(ssmb_engine *eng, ssmb__sess *s, const ssmb_pollfd *ready, size_t nready, uint64_t now) {
    ssmb__fwd *f = s->fwd;
    uint32_t i;
    if (!f) return;
    ssmb__fwd_choose(eng, s, f);
    if (f->mode < 0 || s->state == SSMB_SESSION_CLOSED) return;
    /* A socket with more than one read's worth is read again (the mux's
       output moved into the channel in between): a turn carries a burst of
       messages, not one per poll (fewer wake-ups on both ends, and the
       agent acknowledges them together). */
    for (i = 0; i < f->max_conns; i++) {
        ssmb__fwd_conn *c = &f->conns[i];
        unsigned re = c->fd >= 0 ? ssmb__eng_revents(ready, nready, c->fd) : 0;
        int round;
        if (c->fd < 0 || !(re & (SSMB_POLLIN | SSMB_POLLHUP | SSMB_POLLERR))) continue;
        for (round = 0; round < SSMB__FWD_READ_ROUNDS && (round == 0 || s->state == SSMB_SESSION_READY); round++) {
            if (!ssmb__fwd_socket_in(eng, s, f, c) || c->fd < 0) break;
            if (f->mode == 1) ssmb__fwd_mux_out(s, f);
        }
    }
    ssmb__fwd_drain(eng, s, f, now);
    if (s->state == SSMB_SESSION_CLOSED || s->state == SSMB_SESSION_CLOSING) return;
    if (ssmb__eng_revents(ready, nready, f->lfd) & SSMB_POLLIN) ssmb__fwd_accept(f);
    ssmb__fwd_mux_out(s, f);
    if (f->mux && ssmb_smux_next_deadline(f->mux) <= now) (void)ssmb_smux_tick(f->mux, now);
}

/* The poll events a forward's descriptors want, one by one. */
static uint16_t ssmb__fwd_conn_interest(const ssmb__sess *s, const ssmb__fwd *f, const ssmb__fwd_conn *c) {
    uint16_t ev = 0;
    size_t room = f->mode == 1 ? ssmb_smux_write_space(f->mux) : ssmb_channel_send_space(s->ch);
    if (room > 0 && s->state == SSMB_SESSION_READY) ev |= SSMB_POLLIN;
    if (f->mode == 1 && ssmb_smux_available(f->mux, c->stream) > 0) ev |= SSMB_POLLOUT;
    if (f->mode == 0 && f->pend_len && f->active == (uint32_t)(c - f->conns) + 1u) ev |= SSMB_POLLOUT;
    return ev;
}

static uint16_t ssmb__fwd_listen_interest(const ssmb__sess *s, const ssmb__fwd *f) {
    uint32_t used = 0, i;
    if (f->mode < 0 || s->state != SSMB_SESSION_READY || (f->mode == 0 && f->active)) return 0;
    for (i = 0; i < f->max_conns; i++) used += f->conns[i].fd >= 0;
    return used < f->max_conns ? (uint16_t)SSMB_POLLIN : (uint16_t)0;
}

/* One descriptor of a forward (or credential_process): fd_change_fn hears
   of a change of interest when tell, out gets it (while there is room)
   when it wants anything; *total counts those that do. */
static void ssmb__fd_report(ssmb_engine *eng, int fd, uint16_t ev, uint16_t *told, int tell, ssmb_pollfd *out,
                            size_t cap, size_t *total) {
    if (tell && ev != *told) {
        *told = ev;
        ssmb__fwd_tell(eng, fd, ev);
    }
    if (!ev) return;
    if (*total < cap && out) {
        out[*total].fd = fd;
        out[*total].events = ev;
        out[*total].revents = 0;
    }
    (*total)++;
}

/* Every forward descriptor with interest: into out (up to cap), counted.
   With tell, fd_change_fn hears of the changes instead. */
static size_t ssmb__fwds_fds(ssmb_engine *eng, ssmb_pollfd *out, size_t cap, int tell) {
    size_t total = 0;
    uint32_t i, k;
    for (i = 0; i < eng->desc.max_sessions; i++) {
        ssmb__sess *s = eng->sessions[i];
        ssmb__fwd *f = s ? s->fwd : NULL;
        if (s && s->proc_fd >= 0) /* credential_process's output */
            ssmb__fd_report(eng, s->proc_fd, SSMB_POLLIN, &s->proc_told, tell, out, cap, &total);
        if (!f) continue;
        ssmb__fd_report(eng, f->lfd, ssmb__fwd_listen_interest(s, f), &f->told_levents, tell, out, cap, &total);
        for (k = 0; k < f->max_conns; k++) {
            ssmb__fwd_conn *c = &f->conns[k];
            if (c->fd >= 0)
                ssmb__fd_report(eng, c->fd, ssmb__fwd_conn_interest(s, f, c), &c->told_events, tell, out, cap,
                                &total);
        }
    }
    return total;
}

/* Forward work waiting for no descriptor: mux output and room for it. */
static int ssmb__fwd_due(const ssmb__sess *s) {
    const ssmb__fwd *f = s->fwd;
    size_t n = 0;
    if (!f || f->mode < 0) return f && s->state == SSMB_SESSION_READY;
    if (f->ev_count) return 1;
    if (f->mux && ssmb_smux_out_buf((ssmb_smux *)f->mux, &n) && n && ssmb_channel_send_space(s->ch) > 0) return 1;
    return 0;
}

static void ssmb__fwd_hand(ssmb_engine *eng, ssmb__sess *s, const uint8_t *data, size_t len, uint64_t now) {
    ssmb__fwd *f = s->fwd;
    ssmb__fwd_choose(eng, s, f);
    f->pend = data;
    f->pend_len = len;
    if (f->mode >= 0) (void)ssmb__fwd_take(eng, f, now);
}

static int ssmb__fwd_pending(const ssmb__fwd *f) { return f && f->pend_len; }

static int ssmb__fwd_next_event(ssmb__sess *s, ssmb_event *ev) {
    ssmb__fwd *f = s->fwd;
    if (!f->ev_count) return 0;
    ssmb__sess_event_base(s, ev, f->ev_type[f->ev_head]);
    ev->forward.id = ev->session.id;
    ev->detail = (int32_t)f->ev_number[f->ev_head];
    f->ev_head = (f->ev_head + 1) % SSMB__FWD_EVENTS;
    f->ev_count--;
    return 1;
}

/* ---- public ---- */

static ssmb__fwd *ssmb__fwd_of(ssmb_engine *eng, ssmb_forward h, ssmb__sess **owner) {
    ssmb_session sh;
    ssmb__sess *s;
    sh.id = h.id;
    s = ssmb__sess_of(eng, sh);
    if (!s || !s->fwd) return NULL;
    if (owner) *owner = s;
    return s->fwd;
}

SSMB_APIDEF ssmb_result ssmb_forward_open(ssmb_engine *eng, ssmb_session h, const ssmb_forward_desc *desc,
                                          ssmb_forward *out) {
    ssmb__sess *s = ssmb__sess_of(eng, h);
    ssmb__fwd *f;
    ssmb_result r;
    uint32_t i;
    if (out) out->id = 0;
    if (!s || !out) return SSMB_ERR_INVALID_ARG;
    if (s->fwd || s->state == SSMB_SESSION_CLOSING || s->state == SSMB_SESSION_CLOSED) return SSMB_ERR_INVALID_STATE;
    f = (ssmb__fwd *)ssmb__alloc(&eng->desc.allocator, sizeof *f);
    if (!f) return SSMB_ERR_NOMEM;
    memset(f, 0, sizeof *f);
    f->mem_size = sizeof *f;
    f->lfd = f->told_lfd = -1;
    f->mode = -1;
    f->max_conns = desc && desc->max_connections ? SSMB__MIN(desc->max_connections, SSMB__FWD_MAX_CONNS)
                                                 : SSMB__FWD_MAX_CONNS;
    f->events = desc && desc->events;
    for (i = 0; i < SSMB__FWD_MAX_CONNS; i++) f->conns[i].fd = f->conns[i].told_fd = -1;
    r = ssmb__fwd_listen(eng, f, desc && desc->listen && *desc->listen ? desc->listen : "127.0.0.1:0");
    if (r != SSMB_OK) {
        ssmb__fwd_free(eng, f);
        return r;
    }
    s->fwd = f;
    out->id = h.id;
    return SSMB_OK;
}

SSMB_APIDEF ssmb_result ssmb_forward_address(ssmb_engine *eng, ssmb_forward h, char *out, size_t cap) {
    ssmb__fwd *f = ssmb__fwd_of(eng, h, NULL);
    size_t n;
    if (!f || !out) return SSMB_ERR_INVALID_ARG;
    n = strlen(f->address);
    if (n >= cap) return SSMB_ERR_BUFFER_TOO_SMALL;
    memcpy(out, f->address, n + 1);
    return SSMB_OK;
}

SSMB_APIDEF void ssmb_forward_close(ssmb_engine *eng, ssmb_forward h) {
    ssmb__sess *s = NULL;
    ssmb__fwd *f = ssmb__fwd_of(eng, h, &s);
    if (!f) return;
    ssmb__fwd_free(eng, f);
    s->fwd = NULL;
}

SSMB_APIDEF void ssmb_engine_destroy(ssmb_engine *eng) {
    uint32_t i;
    if (!eng || eng->in_event) return; /* from inside event_fn: refused (it returns nothing to say so) */
    for (i = 0; i < eng->desc.max_sessions; i++)
        if (eng->sessions[i]) ssmb__sess_free(eng, eng->sessions[i]);
    for (i = 0; i < eng->nslots; i++)
        if (eng->slots[i].phase != SSMB__SLOT_FREE) ssmb__slot_release(eng, &eng->slots[i], 0);
    ssmb__eng_free(eng);
}
#endif /* !SSMB_NO_SOCKETS */


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
