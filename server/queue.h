/* queue.h - a bounded FIFO of pointers shared between threads: the lws thread hands requests to
 * the device workers through one, and the workers hand finished requests back through another.
 * Not a general container: it holds opaque pointers and never owns what they point to. */
#ifndef PI0_SERVER_QUEUE_H
#define PI0_SERVER_QUEUE_H

#include <stdbool.h>

#include "common.h"

typedef struct pi0_queue pi0_queue;

/* A queue of at most capacity items (capacity >= 1). */
pi0_status pi0_queue_open(pi0_queue **out, int capacity, pi0_error *err);
void pi0_queue_close(pi0_queue *q);                 /* NULL is a no-op; items are not freed */

/* Appends item; false when the queue is full or shut down (the caller keeps the item). */
bool pi0_queue_push(pi0_queue *q, void *item);

/* Takes up to max items in FIFO order into items[]. With wait, blocks until at least one item
 * is there or the queue is shut down; without, returns at once. Returns the count (0 when empty
 * without wait, or when shut down). */
int pi0_queue_pop(pi0_queue *q, void **items, int max, bool wait);

/* Wakes every waiting pop, which then returns 0; later pushes fail. Items still queued can be
 * taken with pi0_queue_pop(..., false) to free them. */
void pi0_queue_shutdown(pi0_queue *q);

#endif
