/* tokenizer.h - the PaliGemma SentencePiece tokenizer (BPE with byte fallback) and openpi's
 * Pi0 prompt layout (SERVING_SPEC 3.9, 5). Reads the .model protobuf itself. */
#ifndef PI0_TOKENIZER_H
#define PI0_TOKENIZER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pi0_tokenizer pi0_tokenizer;

/* Loads a SentencePiece model file; refuses models whose settings differ from PaliGemma's
 * (BPE, byte fallback, identity normalizer, no dummy prefix, no whitespace collapsing). */
pi0_status pi0_tokenizer_open(pi0_tokenizer **out, const char *path, pi0_error *err);
pi0_status pi0_tokenizer_load(pi0_tokenizer **out, const uint8_t *data, size_t len,
                              pi0_error *err);
void pi0_tokenizer_close(pi0_tokenizer *t);            /* NULL is a no-op */
int pi0_tokenizer_vocab_size(const pi0_tokenizer *t);

/* encode(text) without special tokens (SERVING_SPEC 5.3). Writes up to max_ids ids and returns
 * how many the text has (which may be more than max_ids), or -1 with err set. Invalid UTF-8
 * is not an error: as in SentencePiece, each malformed byte becomes U+FFFD, which is then
 * encoded like any other character (through byte fallback if it is not a piece). */
int pi0_tokenizer_encode(const pi0_tokenizer *t, const char *text, size_t len, int32_t *ids,
                         int max_ids, pi0_error *err);

/* openpi's Pi0 prompt: clean (strip, '_' and '\n' to ' '), [bos] + encode + encode("\n"),
 * padded with 0 or truncated to max_len; mask 1 for real tokens. Returns the number of
 * valid tokens, or -1 with err set. */
int pi0_tokenize_prompt(const pi0_tokenizer *t, const char *prompt, size_t len, int max_len,
                        int32_t *ids, uint8_t *mask, pi0_error *err);

#ifdef __cplusplus
}
#endif
#endif
