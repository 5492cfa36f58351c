/* util room: checked sizes, base64, hex, UUID and its wire form. */
#include "../ssmbridge.h"
#include "ssmb_test.h"

SSMB_TEST(util_size_math) {
    size_t r = 7;
    CHECK(ssmb_size_add(1, 2, &r) == SSMB_OK && r == 3);
    CHECK(ssmb_size_add((size_t)-1, 1, &r) == SSMB_ERR_OVERFLOW && r == 3);
    CHECK(ssmb_size_add((size_t)-2, 1, &r) == SSMB_OK && r == (size_t)-1);
    CHECK(ssmb_size_mul((size_t)-1 / 2 + 1, 2, &r) == SSMB_ERR_OVERFLOW);
    CHECK(ssmb_size_mul(0, (size_t)-1, &r) == SSMB_OK && r == 0);
    CHECK(ssmb_size_mul(1u << 16, 1u << 15, &r) == SSMB_OK && r == ((size_t)1 << 31));
}

/* RFC 4648 §10 test vectors. */
SSMB_TEST(util_base64_rfc4648) {
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    size_t i, n;
    long ok = 0;
    for (i = 0; i < 7; i++) {
        char out[16];
        uint8_t back[16];
        int good = ssmb_base64_encode(plain[i], strlen(plain[i]), out, sizeof out, &n) == SSMB_OK &&
                   n == strlen(coded[i]) && strcmp(out, coded[i]) == 0 &&
                   ssmb_base64_decode(coded[i], strlen(coded[i]), back, sizeof back, &n) == SSMB_OK &&
                   n == strlen(plain[i]) && memcmp(back, plain[i], n) == 0;
        ok += CHECK(good);
    }
    ssmbt_report("base64 rfc4648", ok, 7, "cases");
}

SSMB_TEST(util_base64_bad_input) {
    uint8_t out[64];
    size_t n = 0;
    char small[4];
    CHECK(ssmb_base64_decode("Zg=", 3, out, sizeof out, &n) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_base64_decode("Z===", 4, out, sizeof out, &n) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_base64_decode("Zh==", 4, out, sizeof out, &n) == SSMB_ERR_MALFORMED); /* unused bits set */
    CHECK(ssmb_base64_decode("Zm9=", 4, out, sizeof out, &n) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_base64_decode("Zg==Zg==", 8, out, sizeof out, &n) == SSMB_ERR_MALFORMED); /* pad mid-text */
    CHECK(ssmb_base64_decode("Zm 9", 4, out, sizeof out, &n) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_base64_decode("Zm9v", 4, out, 2, &n) == SSMB_ERR_BUFFER_TOO_SMALL && n == 3);
    CHECK(ssmb_base64_encode("foo", 3, small, 3, &n) == SSMB_ERR_BUFFER_TOO_SMALL && n == 4);
    CHECK(ssmb_base64_encode("foo", 3, small, sizeof small, &n) == SSMB_OK && n == 4 && memcmp(small, "Zm9v", 4) == 0);
}

SSMB_TEST(util_base64_roundtrip) {
    uint8_t in[300], back[300];
    char text[512];
    size_t len, n, i;
    for (i = 0; i < sizeof in; i++) in[i] = (uint8_t)(i * 37 + 11);
    for (len = 0; len <= sizeof in; len++) {
        if (!CHECK(ssmb_base64_encode(in, len, text, sizeof text, &n) == SSMB_OK)) break;
        if (!CHECK(ssmb_base64_decode(text, n, back, sizeof back, &n) == SSMB_OK && n == len)) break;
        if (!CHECK_EQ_MEM(back, in, len)) break;
    }
}

SSMB_TEST(util_hex) {
    char out[9];
    uint8_t b[4];
    size_t n;
    CHECK(ssmb_hex_encode("\x01\xab\xff\x00", 4, out, sizeof out) == SSMB_OK && strcmp(out, "01abff00") == 0);
    CHECK(ssmb_hex_encode("\x01\xab\xff\x00", 4, out, 8) == SSMB_ERR_BUFFER_TOO_SMALL);
    CHECK(ssmb_hex_decode("01ABff00", 8, b, sizeof b, &n) == SSMB_OK && n == 4 && memcmp(b, "\x01\xab\xff\x00", 4) == 0);
    CHECK(ssmb_hex_decode("abc", 3, b, sizeof b, &n) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_hex_decode("zz", 2, b, sizeof b, &n) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_hex_decode("0011223344", 10, b, sizeof b, &n) == SSMB_ERR_BUFFER_TOO_SMALL);
}

/* PROTOCOL.md §2.2 worked examples (reference plugin and RUST test UUIDs). */
SSMB_TEST(util_uuid_wire_swap) {
    ssmb_uuid id, back;
    uint8_t wire[16];
    char text[37];
    CHECK(ssmb_uuid_parse("dd01e56b-ff48-483e-a508-b5f073f31b16", 36, &id) == SSMB_OK);
    ssmb_uuid_to_wire(&id, wire);
    CHECK_EQ_MEM(wire, "\xa5\x08\xb5\xf0\x73\xf3\x1b\x16\xdd\x01\xe5\x6b\xff\x48\x48\x3e", 16);
    ssmb_uuid_from_wire(wire, &back);
    CHECK_EQ_MEM(back.b, id.b, 16);
    ssmb_uuid_format(&back, text);
    CHECK_EQ_STR(text, "dd01e56b-ff48-483e-a508-b5f073f31b16");
    CHECK(ssmb_uuid_parse("00010203-0405-0607-0809-0A0B0C0D0E0F", 36, &id) == SSMB_OK);
    ssmb_uuid_to_wire(&id, wire);
    CHECK_EQ_MEM(wire, "\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x00\x01\x02\x03\x04\x05\x06\x07", 16);
}

SSMB_TEST(util_uuid_v4_and_bad_text) {
    uint8_t rnd[16];
    ssmb_uuid id;
    char text[37];
    memset(rnd, 0xff, sizeof rnd);
    ssmb_uuid_v4(rnd, &id);
    ssmb_uuid_format(&id, text);
    CHECK_EQ_STR(text, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    CHECK(ssmb_uuid_parse("dd01e56b-ff48-483e-a508-b5f073f31b1", 35, &id) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_uuid_parse("dd01e56b+ff48-483e-a508-b5f073f31b16", 36, &id) == SSMB_ERR_MALFORMED);
    CHECK(ssmb_uuid_parse("dd01e56b-ff48-483e-a508-b5f073f31bg6", 36, &id) == SSMB_ERR_MALFORMED);
}

SSMB_TEST(util_result_strings) {
    CHECK(strncmp(ssmb_result_str(SSMB_ERR_DIGEST), "SSMB_ERR_DIGEST", 15) == 0);
    CHECK(ssmb_result_str((ssmb_result)-1234) != NULL);
    CHECK_EQ_STR(ssmb_version(), SSMB_VERSION_STRING);
}
