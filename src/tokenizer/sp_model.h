/* sp_model.h - the loaded SentencePiece model as the tokenizer's own files share it: the
 * piece table, the piece -> id hash, the special ids. Internal to src/tokenizer/; users
 * include tokenizer.h. Loaded by sp_model.c, read by bpe.c and prompt.c. */
#ifndef PI0_SP_MODEL_H
#define PI0_SP_MODEL_H

#include "tokenizer/tokenizer.h"

/* SentencePiece.Type (sentencepiece_model.proto; SERVING_SPEC 5.1). */
enum {
    PI0_SP_NORMAL = 1,
    PI0_SP_UNKNOWN = 2,
    PI0_SP_CONTROL = 3,
    PI0_SP_USER_DEFINED = 4,
    PI0_SP_UNUSED = 5,
    PI0_SP_BYTE = 6,
};

typedef struct {
    uint32_t offset, len; /* bytes of the piece in pi0_tokenizer.text */
    float score;          /* BPE merge priority: larger merges first */
    uint8_t type;         /* PI0_SP_* */
} pi0_sp_piece;

/* One hash slot per distinct piece text. SentencePiece keeps two maps: "normal" pieces (NORMAL,
 * USER_DEFINED, UNUSED), the only ones merges may form, and "reserved" ones (UNKNOWN, CONTROL,
 * BYTE), looked up first when a symbol becomes an id. The same text may sit in both. */
typedef struct {
    uint32_t hash;
    int32_t normal_id;   /* -1: none */
    int32_t reserved_id; /* -1: none */
} pi0_sp_slot;

struct pi0_tokenizer {
    int n_pieces;
    pi0_sp_piece *pieces;   /* [n_pieces], owned, in id order */
    char *text;             /* owned: the bytes of every piece, back to back */
    pi0_sp_slot *slots;     /* [slot_mask + 1], owned; empty slots have both ids -1 */
    uint32_t slot_mask;
    int unk_id;             /* the one UNKNOWN piece */
    int bos_id;             /* the CONTROL piece named by trainer_spec.bos_piece */
    int32_t byte_ids[256];  /* id of <0xHH> for each byte value */
    int n_unused;           /* UNUSED pieces: encode re-segments them (SERVING_SPEC 5.3 step 4) */
    /* USER_DEFINED pieces are matched longest-first at every position. Their distinct byte
     * lengths, longest first, and which first bytes they can start with, keep that cheap. */
    int n_user_lens;
    uint32_t *user_lens;    /* [n_user_lens], owned */
    uint8_t user_first[256];
};

/* Id of the normal piece (NORMAL, USER_DEFINED, UNUSED) spelled s[0, len), or -1. */
int pi0_sp_find_normal(const pi0_tokenizer *t, const char *s, size_t len);

/* SentencePiece's PieceToId: the reserved piece spelled s, else the normal one, else unk_id. */
int pi0_sp_piece_to_id(const pi0_tokenizer *t, const char *s, size_t len);

/* Byte length of the longest USER_DEFINED piece that s[0, len) starts with, or 0. */
size_t pi0_sp_match_user(const pi0_tokenizer *t, const char *s, size_t len);

#endif
