/* prompt.c - openpi's Pi0 prompt tokenization (SERVING_SPEC 3.9): clean the text the way
 * openpi's PaligemmaTokenizer does, then [bos] + encode(cleaned) + encode("\n"), padded or
 * truncated to max_len. Not the pi0.5 layout (state in the text), which pi0c does not serve. */
#include "tokenizer/sp_model.h"

#include <stdlib.h>

/* Python's str.isspace() set, which str.strip() removes (SERVING_SPEC 3.9). */
static bool is_python_space(uint32_t cp) {
    return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F) ||
           cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Decodes the well-formed UTF-8 character s[0, n) exactly (n bytes, no more, no fewer);
 * returns false for anything else, which is then never whitespace. */
static bool decode_exact(const uint8_t *s, size_t n, uint32_t *cp) {
    static const uint8_t lead_mask[5] = { 0, 0x7F, 0x1F, 0x0F, 0x07 };
    static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t want = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
                : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (want == 0 || want != n) return false;
    uint32_t v = s[0] & lead_mask[n];
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return false;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min_cp[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
    *cp = v;
    return true;
}

/* Byte length of the whitespace character at the start of s, or 0. */
static size_t leading_space(const uint8_t *s, size_t len) {
    for (size_t n = 1; n <= 4 && n <= len; n++) {
        uint32_t cp;
        if (decode_exact(s, n, &cp)) return is_python_space(cp) ? n : 0;
    }
    return 0;
}

/* Byte length of the whitespace character that ends s[0, len), or 0. */
static size_t trailing_space(const uint8_t *s, size_t len) {
    for (size_t n = 1; n <= 4 && n <= len; n++) {
        if ((s[len - n] & 0xC0) == 0x80) continue; /* a continuation byte: go further back */
        uint32_t cp;
        return decode_exact(s + len - n, n, &cp) && is_python_space(cp) ? n : 0;
    }
    return 0;
}

int pi0_tokenize_prompt(const pi0_tokenizer *t, const char *prompt, size_t len, int max_len,
                        int32_t *ids, uint8_t *mask, pi0_error *err) {
    if (max_len < 1 || !ids || !mask || (!prompt && len)) {
        pi0_fail(err, PI0_ERR_INPUT, "tokenize_prompt needs max_len >= 1 (got %d), ids, mask "
                 "and the prompt", max_len);
        return -1;
    }
    const uint8_t *s = (const uint8_t *)prompt;
    size_t begin = 0, end = len, n;
    while (begin < end && (n = leading_space(s + begin, end - begin))) begin += n;
    while (end > begin && (n = trailing_space(s + begin, end - begin))) end -= n;

    char *cleaned = malloc(end - begin + 1);
    if (!cleaned) {
        pi0_fail(err, PI0_ERR_NOMEM, "out of memory for a prompt of %zu bytes", len);
        return -1;
    }
    for (size_t i = begin; i < end; i++)
        cleaned[i - begin] = s[i] == '_' || s[i] == '\n' ? ' ' : (char)s[i];

    /* [bos] + encode(cleaned): the text's ids go straight into ids[1 ..]. */
    ids[0] = t->bos_id;
    int n_text = pi0_tokenizer_encode(t, cleaned, end - begin, ids + 1, max_len - 1, err);
    free(cleaned);
    if (n_text < 0) return -1;
    int32_t newline[4];
    int n_newline = pi0_tokenizer_encode(t, "\n", 1, newline, 4, err);
    if (n_newline < 0) return -1;

    /* openpi: if the ids reach max_len keep the first max_len and mark all of them real
     * (the newline is lost); otherwise pad with 0 and mask the padding out. */
    long total = 1L + n_text + n_newline;
    for (int i = 0; i < n_newline && 1 + n_text + i < max_len; i++)
        ids[1 + n_text + i] = newline[i];
    int n_valid = total < max_len ? (int)total : max_len;
    for (int i = 0; i < max_len; i++) {
        if (i >= n_valid) ids[i] = 0;
        mask[i] = i < n_valid;
    }
    return n_valid;
}
