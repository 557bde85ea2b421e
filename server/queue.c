/* queue.c - bounded FIFO of pointers: a ring buffer under one mutex, one condition variable for
 * consumers. Producers never block: the server sizes the queues so that a push cannot find them
 * full (each connection has at most one request queued or in flight), and a failed push is
 * handled by the caller as an error rather than waited out. */
#include <pthread.h>
#include <stdlib.h>

#include "queue.h"

struct pi0_queue {
    pthread_mutex_t mutex;
    pthread_cond_t nonempty;
    void **items;                /* [capacity] ring */
    int capacity, head, count;
    bool shut_down;
};

pi0_status pi0_queue_open(pi0_queue **out, int capacity, pi0_error *err) {
    *out = NULL;
    if (capacity < 1)
        return pi0_fail(err, PI0_ERR_INPUT, "queue capacity is %d, expected >= 1", capacity);
    pi0_queue *q = calloc(1, sizeof *q);
    if (!q) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for a request queue");
    q->items = calloc((size_t)capacity, sizeof *q->items);
    if (!q->items) {
        free(q);
        return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for a queue of %d requests", capacity);
    }
    q->capacity = capacity;
    pthread_mutex_init(&q->mutex, NULL);
    pthread_cond_init(&q->nonempty, NULL);
    *out = q;
    return PI0_OK;
}

void pi0_queue_close(pi0_queue *q) {
    if (!q) return;
    pthread_mutex_destroy(&q->mutex);
    pthread_cond_destroy(&q->nonempty);
    free(q->items);
    free(q);
}

bool pi0_queue_push(pi0_queue *q, void *item) {
    pthread_mutex_lock(&q->mutex);
    bool ok = !q->shut_down && q->count < q->capacity;
    if (ok) {
        q->items[(q->head + q->count) % q->capacity] = item;
        q->count++;
        pthread_cond_signal(&q->nonempty);
    }
    pthread_mutex_unlock(&q->mutex);
    return ok;
}

int pi0_queue_pop(pi0_queue *q, void **items, int max, bool wait) {
    pthread_mutex_lock(&q->mutex);
    while (wait && q->count == 0 && !q->shut_down) pthread_cond_wait(&q->nonempty, &q->mutex);
    int n = 0;
    if (!(wait && q->shut_down)) {
        for (; n < max && q->count > 0; n++) {
            items[n] = q->items[q->head];
            q->head = (q->head + 1) % q->capacity;
            q->count--;
        }
    }
    pthread_mutex_unlock(&q->mutex);
    return n;
}

void pi0_queue_shutdown(pi0_queue *q) {
    pthread_mutex_lock(&q->mutex);
    q->shut_down = true;
    pthread_cond_broadcast(&q->nonempty);
    pthread_mutex_unlock(&q->mutex);
}
