/* test_util.h - what the C tests share: CHECK and its counters, the closing "N passed, N failed"
 * line, a table of named rows (--list, --seed, one row by name), rel_l2, typed copies of
 * safetensors tensors, and temporary directories.
 * Header only: CMake builds every tests/test_*.c as a program of its own, so shared test code
 * cannot live in a .c file there. Include it once per test, after any feature-test macros. */
#ifndef PI0_TEST_UTIL_H
#define PI0_TEST_UTIL_H

#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#if defined(__GNUC__)
#define TEST_MAYBE_UNUSED __attribute__((unused))
#else
#define TEST_MAYBE_UNUSED
#endif

/* ---- checks and the summary --------------------------------------------------------------- */

/* Checks made and failed so far (CHECK, test_tally). A test remembers n_failed before a group
 * of checks to tell whether that group passed. */
static int n_checks TEST_MAYBE_UNUSED, n_failed TEST_MAYBE_UNUSED;

/* One check; on failure one line "FAIL file:line: message" (the message as printf arguments). */
#define CHECK(cond, ...)                                  \
    do {                                                  \
        n_checks++;                                       \
        if (!(cond)) {                                    \
            n_failed++;                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);   \
            printf(__VA_ARGS__);                          \
            printf("\n");                                 \
        }                                                 \
    } while (0)

/* "PASS message" or "FAIL message": whether no check failed since n_failed was `before`. */
#define REPORT(before, ...)                                    \
    do {                                                       \
        printf("%s ", n_failed == (before) ? "PASS" : "FAIL"); \
        printf(__VA_ARGS__);                                   \
        printf("\n");                                          \
    } while (0)

/* Counts one check whose PASS/FAIL line the caller prints itself; returns ok. */
static inline bool test_tally(bool ok) {
    n_checks++;
    if (!ok) n_failed++;
    return ok;
}

/* The closing line; returns the exit status: 1 if anything failed, else 0. */
static inline int test_summary(int passed, int failed) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* The closing line over CHECK's counters. */
static inline int test_summary_checks(void) { return test_summary(n_checks - n_failed, n_failed); }

/* ---- a table of named rows ---------------------------------------------------------------- */

typedef struct {
    const char *name;
    bool (*fn)(void);            /* true: passed */
} test_row;

/* Reads the command line of a row test: --list prints the row names (returns false: nothing
 * to run), --seed N sets *seed (when seed is not NULL), anything else names the one row to
 * run (*only; NULL: every row). */
static inline bool test_rows_args(int argc, char **argv, const test_row *rows, int n_rows,
                                  const char **only, uint64_t *seed) {
    *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list")) {
            for (int r = 0; r < n_rows; r++) printf("%s\n", rows[r].name);
            return false;
        } else if (seed && !strcmp(argv[i], "--seed") && i + 1 < argc) {
            *seed = strtoull(argv[++i], NULL, 0);
        } else {
            *only = argv[i];
        }
    }
    return true;
}

/* Runs every row, or only the one named `only`. A row fails when it returns false or when a
 * CHECK inside it fails. print_rows: a line "PASS name" or "FAIL name" after each row (false
 * for rows that print their own lines). Ends with the summary line over rows. Returns the exit
 * status: 0 all passed, 1 some failed, 2 no row is named `only` (prog names the test). */
static inline int test_rows_run(const char *prog, const test_row *rows, int n_rows,
                                const char *only, bool print_rows) {
    int failed = 0, ran = 0;
    for (int i = 0; i < n_rows; i++) {
        if (only && strcmp(only, rows[i].name)) continue;
        ran++;
        int before = n_failed;
        bool ok = rows[i].fn() && n_failed == before;
        if (print_rows) printf("%s %s\n", ok ? "PASS" : "FAIL", rows[i].name);
        failed += !ok;
    }
    if (!ran) {
        fprintf(stderr, "%s: no row named '%s' (see --list)\n", prog, only);
        return 2;
    }
    return test_summary(ran - failed, failed);
}

/* ---- numbers ------------------------------------------------------------------------------ */

/* ||x - ref|| / ||ref|| in double over the elements whose row (index / row_len) has keep[row]
 * set (keep NULL: every element); ||x - ref|| when that part of ref is all zero. */
static inline double test_rel_l2_rows(const float *x, const float *ref, size_t n, size_t row_len,
                                      const uint8_t *keep) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (keep && !keep[i / row_len]) continue;
        double dlt = (double)x[i] - ref[i];
        num += dlt * dlt;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double test_rel_l2(const float *x, const float *ref, size_t n) {
    return test_rel_l2_rows(x, ref, n, 1, NULL);
}

/* ---- files -------------------------------------------------------------------------------- */

/* A malloc'd copy of tensor `name` of f (file names f in messages), which must have this dtype
 * and ndim; its shape goes into shape[ndim]. Copied because data in a file may be unaligned.
 * NULL, with a line on stderr, when it is missing, of another dtype or rank, or memory ran out. */
static inline void *test_tensor_copy(const pi0_safetensors *f, const char *file, const char *name,
                                     pi0_dtype dtype, int ndim, int64_t *shape) {
    const pi0_st_tensor *t = pi0_safetensors_find(f, name);
    if (!t || t->dtype != dtype || t->ndim != ndim) {
        fprintf(stderr, "%s: tensor %s missing or not %s with %d dims\n", file, name,
                pi0_dtype_name(dtype), ndim);
        return NULL;
    }
    void *p = malloc(t->n_bytes ? t->n_bytes : 1);
    if (!p) {
        fprintf(stderr, "%s: out of memory for tensor %s\n", file, name);
        return NULL;
    }
    memcpy(p, t->data, t->n_bytes);
    for (int i = 0; i < ndim; i++) shape[i] = t->shape[i];
    return p;
}

/* Makes a new empty directory /tmp/<prefix>XXXXXX and writes its path into path[size].
 * Returns false, with a line on stderr, when it cannot. */
static inline bool test_temp_dir(char *path, size_t size, const char *prefix) {
    if (snprintf(path, size, "/tmp/%sXXXXXX", prefix) >= (int)size || !mkdtemp(path)) {
        fprintf(stderr, "cannot make a temporary directory /tmp/%sXXXXXX\n", prefix);
        return false;
    }
    return true;
}

/* Removes path and, if it is a directory, everything below it (links are removed, never
 * followed). Complains on stderr about what it could not remove. */
static inline void test_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(path);
        struct dirent *e;
        while (dir && (e = readdir(dir))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[4096];
            if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) < (int)sizeof child)
                test_remove_tree(child);
        }
        if (dir) closedir(dir);
        if (rmdir(path) != 0) fprintf(stderr, "cannot remove directory %s\n", path);
    } else if (unlink(path) != 0) {
        fprintf(stderr, "cannot remove %s\n", path);
    }
}

#endif
