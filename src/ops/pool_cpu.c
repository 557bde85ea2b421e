/* pool_cpu.c - a fixed set of worker threads that run numbered tasks for the CPU ops.
 * Threads are started once (at model open), so running a model starts none. It is not a
 * general scheduler: one job at a time, tasks claimed from a shared counter, the caller
 * works too and returns when every task is done. */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include "ops/ops_cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct pi0_pool {
    int n_threads;               /* workers + the caller */
    int n_started;               /* workers actually running */
    pthread_t *workers;          /* [n_threads - 1], owned */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;      /* a new job (generation changed) or quit */
    pthread_cond_t done_cv;      /* a worker finished the current job */
    unsigned generation;         /* incremented per job, under mu */
    int n_checked_in;            /* workers done with the current job, under mu */
    bool quit;
    /* the current job: written under mu before the generation changes */
    void (*fn)(void *ctx, int task);
    void *ctx;
    int n_tasks;
    atomic_int next;             /* next unclaimed task */
};

static void run_tasks(pi0_pool *p) {
    for (;;) {
        int t = atomic_fetch_add(&p->next, 1);
        if (t >= p->n_tasks) return;
        p->fn(p->ctx, t);
    }
}

static void *worker_main(void *arg) {
    pi0_pool *p = arg;
    unsigned seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p);
        pthread_mutex_lock(&p->mu);
        if (++p->n_checked_in == p->n_started) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pi0_status pi0_pool_open(pi0_pool **out, int n_threads, pi0_error *err) {
    *out = NULL;
    if (n_threads < 0)
        return pi0_fail(err, PI0_ERR_INPUT, "thread count is %d, expected >= 0 (0 = one per core)",
                        n_threads);
    if (n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
    }
    pi0_pool *p = calloc(1, sizeof *p);
    if (!p) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the thread pool");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next, 0);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            pi0_pool_close(p);
            return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for %d threads", n_threads);
        }
        for (int i = 0; i < n_threads - 1; i++) {
            int rc = pthread_create(&p->workers[i], NULL, worker_main, p);
            if (rc != 0) {
                pi0_pool_close(p);
                return pi0_fail(err, PI0_ERR_NOMEM, "starting worker thread %d of %d failed (%d)",
                                i + 1, n_threads - 1, rc);
            }
            p->n_started++;
        }
    }
    *out = p;
    return PI0_OK;
}

void pi0_pool_close(pi0_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->workers);
    free(p);
}

int pi0_pool_size(const pi0_pool *p) { return p ? p->n_started + 1 : 1; }

void pi0_pool_run(pi0_pool *p, int n_tasks, void (*fn)(void *ctx, int task), void *ctx) {
    if (!p || p->n_started == 0 || n_tasks <= 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    p->n_checked_in = 0;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p);

    pthread_mutex_lock(&p->mu);
    while (p->n_checked_in < p->n_started) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
