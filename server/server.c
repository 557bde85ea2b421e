/* server.c - the websocket side of `pi0 serve` (SERVING_SPEC 1): libwebsockets context, the
 * protocol callback, per-connection state, message reassembly and limits, /healthz, and the
 * hand-off to the workers. Everything here runs on the one lws service thread, except
 * pi0_server_stop and the workers' wake-up (lws_cancel_service), which only signal it.
 * Not the inference (worker.c) and not the message contents (src/policy/).
 *
 * A connection's life: handshake -> metadata message -> requests in a FIFO; only the FIFO's head
 * is ever with a worker, so replies leave in request order even when a client sends several
 * requests before reading; the next request is handed over once the head's reply is written.
 * A failure anywhere becomes one text message, then close 1011 (1009 for an oversized message). */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "server.h"
#include "worker.h"

/* openpi's close reason after an error (SERVING_SPEC 1.7); clients match on the code, people
 * read this. */
static const char ERROR_REASON[] = "Internal server error. Traceback included in previous frame.";
enum {
    CLOSE_MESSAGE_TOO_LARGE = 1009,
    CLOSE_INTERNAL_ERROR = 1011,
    MAX_PENDING = 2,             /* requests buffered per connection before reading pauses */
    RX_CHUNK_BYTES = 256 * 1024, /* how much lws hands us per receive callback */
};

typedef enum { CONN_OPEN, CONN_CLOSING } conn_state; /* CLOSING: error text sent, close next */

/* Per-session data (lws allocates it zeroed for every connection, HTTP ones too). */
typedef struct conn {
    struct lws *wsi;
    uint64_t id;
    bool is_ws;                  /* established websocket (on the server's list) */
    struct conn *prev, *next;    /* the server's list of websocket connections */
    conn_state state;
    bool metadata_sent;
    /* the message being reassembled */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    bool rx_discard;             /* after an error: ignore what still arrives */
    bool oversized;              /* discarding an oversized message until its last byte */
    size_t oversized_bytes;      /* its length so far */
    /* requests in arrival order; the head is the one being answered */
    pi0_request *head, *tail;
    int n_pending;
    bool head_submitted, head_done;
    bool rx_paused;
    double wait_start_ms;        /* when this connection began waiting for its next request */
    double prev_total_ms;        /* the last exchange's total (SERVING_SPEC 1.6), < 0 before */
    bool ping_due;               /* keep-alive: send a ping at the next writeable callback */
    bool awaiting_pong;          /* keep-alive: a ping is out and not answered yet */
} conn;

struct pi0_server {
    pi0_server_options opt;
    struct lws_context *context;
    struct lws_vhost *vhost;
    int port;
    volatile sig_atomic_t stop;
    pi0_queue *todo, *done;      /* to the workers, back from them */
    pi0_worker **workers;
    int n_workers;
    atomic_ullong record_counter;
    conn *conns;                 /* websocket connections */
    int n_conns;
    uint64_t next_id;
    const uint8_t *metadata;     /* borrowed from the policy */
    size_t metadata_len;
    lws_retry_bo_t no_validity;  /* switches lws's own keep-alive pings off (see below) */
    struct lws_protocols protocols[2];
};

#define server_log(s, ...) pi0_log_line((s)->opt.log, (s)->opt.log_ctx, __VA_ARGS__)

static pi0_server *server_of(struct lws *wsi) {
    return lws_context_user(lws_get_context(wsi));
}

/* ---- HTTP: /healthz, and plain requests that are not websocket upgrades ------------------- */

/* Writes a whole HTTP response at once; the caller then drops the connection (SERVING_SPEC 1.3:
 * /healthz answers and closes). Written by hand rather than with lws's header helpers, which
 * leave the reason phrase of 426 empty and, while an upgrade is being refused, label the
 * response HTTP/1.0, which websocket clients reject. */
static void http_respond(struct lws *wsi, unsigned status, const char *reason, const char *extra,
                         const char *body) {
    uint8_t buf[LWS_PRE + 1024];
    char *start = (char *)buf + LWS_PRE;
    int n = snprintf(start, sizeof buf - LWS_PRE, "HTTP/1.1 %u %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n%s", status, reason, strlen(body), extra, body);
    if (n > 0 && (size_t)n < sizeof buf - LWS_PRE)
        lws_write(wsi, (uint8_t *)start, (size_t)n, LWS_WRITE_HTTP_HEADERS);
}

static int on_http(struct lws *wsi, const char *path) {
    bool query = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > 0;
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    if (get && !query && path && !strcmp(path, "/healthz"))
        http_respond(wsi, 200, "OK", "", "OK\n");
    else
        http_respond(wsi, 426, "Upgrade Required", "Upgrade: websocket\r\n",
                     "This is a websocket server (openpi policy protocol): connect with a "
                     "websocket client. GET /healthz for status.\n");
    return -1;
}

/* ---- connections ------------------------------------------------------------------------- */

static conn *conn_find(pi0_server *s, uint64_t id) {
    for (conn *c = s->conns; c; c = c->next)
        if (c->id == id) return c;
    return NULL;
}

static void conn_free_requests(conn *c) {
    pi0_request *r = c->head;
    if (r && c->head_submitted && !c->head_done) {
        /* A worker has it: it comes back through the done queue, where it is freed. */
        atomic_store(&r->cancelled, 1);
        r = r->next;
    }
    while (r) {
        pi0_request *next = r->next;
        pi0_request_free(r);
        r = next;
    }
    c->head = c->tail = NULL;
    c->n_pending = 0;
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
}

/* Hands the FIFO's head to the workers, or, if it already failed on this thread, to the writer. */
static void conn_advance(pi0_server *s, conn *c) {
    pi0_request *r = c->head;
    if (!r || c->head_submitted || c->head_done) return;
    if (r->error[0]) {
        c->head_done = true;
        lws_callback_on_writable(c->wsi);
        return;
    }
    r->prev_total_ms = c->prev_total_ms;
    r->queued_ms = pi0_now_ms();
    c->head_submitted = true;
    if (!pi0_queue_push(s->todo, r)) {
        /* Only when shutting down (the queue has room for every connection's request): fail the
         * request instead of losing it. */
        c->head_submitted = false;
        pi0_request_fail(r, CLOSE_INTERNAL_ERROR, "server is shutting down");
        c->head_done = true;
        lws_callback_on_writable(c->wsi);
    }
}

static void conn_enqueue(pi0_server *s, conn *c, pi0_request *r) {
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    c->n_pending++;
    if (c->n_pending >= MAX_PENDING && !c->rx_paused) {
        lws_rx_flow_control(c->wsi, 0);
        c->rx_paused = true;
    }
    conn_advance(s, c);
}

/* A failure found on this thread (text message, oversized message, no memory): it is answered
 * in turn, after the requests before it. Whatever arrives afterwards is ignored. */
static void conn_fail(pi0_server *s, conn *c, int close_code, const char *fmt, ...)
    PI0_PRINTF(4, 5);
static void conn_fail(pi0_server *s, conn *c, int close_code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    c->rx_discard = true;
    server_log(s, "connection %llu: %s", (unsigned long long)c->id, msg);
    pi0_request *r = pi0_request_new(c->id, NULL, 0);
    if (!r) { /* out of memory: close at once without the text message */
        c->state = CONN_CLOSING;
        lws_callback_on_writable(c->wsi);
        return;
    }
    pi0_request_fail(r, close_code, "%s", msg);
    conn_enqueue(s, c, r);
}

static void on_receive(pi0_server *s, conn *c, const uint8_t *in, size_t len) {
    struct lws *wsi = c->wsi;
    const bool first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
    if (c->state != CONN_OPEN) return;
    if (c->oversized) {
        /* Read the oversized message to its end before answering: closing while the client is
         * still sending would reset the connection and lose the error on the client's side. */
        c->oversized_bytes += len;
        if (final && lws_remaining_packet_payload(wsi) == 0) {
            size_t total = c->oversized_bytes;
            c->oversized = false;
            conn_fail(s, c, CLOSE_MESSAGE_TOO_LARGE, "message of %zu bytes is over the server's "
                      "limit of %zu bytes (--max-message-mb)", total, s->opt.max_message_bytes);
        }
        return;
    }
    if (c->rx_discard) return;
    if (first) c->rx_len = 0;
    if (!lws_frame_is_binary(wsi)) {
        /* openpi's server fails on a text message (decoding it raises); so do we. */
        conn_fail(s, c, CLOSE_INTERNAL_ERROR, "received a text message; requests must be binary "
                  "messages holding a msgpack map (openpi_client.msgpack_numpy)");
        return;
    }
    const size_t max = s->opt.max_message_bytes;
    if (len > max - c->rx_len) {
        /* Nothing more is kept: count the bytes until the message ends, then fail (above). */
        c->oversized = true;
        c->oversized_bytes = c->rx_len;
        free(c->rx);
        c->rx = NULL;
        c->rx_len = c->rx_cap = 0;
        on_receive(s, c, in, len);
        return;
    }
    size_t need = c->rx_len + len;
    if (need > c->rx_cap || !c->rx) {
        /* Size the buffer for the whole frame when lws knows it, else grow geometrically. */
        size_t cap = c->rx_len + len + lws_remaining_packet_payload(wsi);
        if (cap < 2 * c->rx_cap) cap = 2 * c->rx_cap;
        if (cap > max) cap = max;
        if (cap < need) cap = need;
        uint8_t *p = realloc(c->rx, cap ? cap : 1);
        if (!p) {
            conn_fail(s, c, CLOSE_INTERNAL_ERROR, "out of memory for a %zu-byte message", need);
            return;
        }
        c->rx = p;
        c->rx_cap = cap;
    }
    if (len) memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!final) return;
    pi0_request *r = pi0_request_new(c->id, c->rx, c->rx_len);
    if (!r) {
        conn_fail(s, c, CLOSE_INTERNAL_ERROR, "out of memory for a request");
        return;
    }
    c->rx = NULL; /* the request owns the message now */
    c->rx_len = c->rx_cap = 0;
    conn_enqueue(s, c, r);
}

/* Writes one message with the LWS_PRE headroom lws needs. Returns false on a socket error. */
static bool ws_send(struct lws *wsi, const void *data, size_t len, enum lws_write_protocol kind) {
    uint8_t *buf = malloc(LWS_PRE + len + 1);
    if (!buf) return false;
    if (len) memcpy(buf + LWS_PRE, data, len);
    int n = lws_write(wsi, buf + LWS_PRE, len, kind);
    free(buf);
    return n >= (int)len;
}

static int on_writeable(pi0_server *s, conn *c) {
    struct lws *wsi = c->wsi;
    if (c->state == CONN_CLOSING) {
        pi0_request *r = c->head;
        int code = r && r->close_code ? r->close_code : CLOSE_INTERNAL_ERROR;
        lws_close_reason(wsi, (enum lws_close_status)code, (uint8_t *)ERROR_REASON,
                         sizeof ERROR_REASON - 1);
        return -1;
    }
    if (!c->metadata_sent) {
        /* SERVING_SPEC 1.4: the metadata map goes first, before any reply. */
        if (!ws_send(wsi, s->metadata, s->metadata_len, LWS_WRITE_BINARY)) return -1;
        c->metadata_sent = true;
        c->wait_start_ms = pi0_now_ms();
        if (c->head_done) lws_callback_on_writable(wsi);
        return 0;
    }
    if (c->ping_due) {
        static const char payload[] = "pi0 keepalive";
        if (!ws_send(wsi, payload, sizeof payload - 1, LWS_WRITE_PING)) return -1;
        c->ping_due = false;
        c->awaiting_pong = true;
        if (c->head_done) lws_callback_on_writable(wsi);
        return 0;
    }
    if (!c->head || !c->head_done) return 0;
    pi0_request *r = c->head;
    if (!r->reply) {
        if (!ws_send(wsi, r->error, strlen(r->error), LWS_WRITE_TEXT)) return -1;
        c->state = CONN_CLOSING; /* then close, on the next writeable callback */
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (!ws_send(wsi, r->reply, r->reply_len, LWS_WRITE_BINARY)) return -1;
    /* prev_total_ms: from when this connection began waiting for the request to now, after the
     * reply went to the socket; reported with the next reply, as openpi does. */
    double now = pi0_now_ms();
    c->prev_total_ms = now - c->wait_start_ms;
    c->wait_start_ms = now;
    c->head = r->next;
    if (!c->head) c->tail = NULL;
    c->n_pending--;
    c->head_submitted = c->head_done = false;
    pi0_request_free(r);
    if (c->rx_paused && c->n_pending < MAX_PENDING) {
        lws_rx_flow_control(wsi, 1);
        c->rx_paused = false;
    }
    conn_advance(s, c);
    return 0;
}

/* The workers pushed finished requests and woke us: route each to its connection. */
static void collect_done(pi0_server *s) {
    pi0_request *batch[64];
    int n;
    while ((n = pi0_queue_pop(s->done, (void **)batch, 64, false)) > 0) {
        for (int k = 0; k < n; k++) {
            pi0_request *r = batch[k];
            conn *c = atomic_load(&r->cancelled) ? NULL : conn_find(s, r->conn_id);
            if (!c || c->head != r) { /* the client left while it was being computed */
                pi0_request_free(r);
                continue;
            }
            c->head_done = true;
            lws_callback_on_writable(c->wsi);
        }
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    conn *c = user;
    pi0_server *s;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(wsi, in);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        s = server_of(wsi);
        if (s->n_conns >= s->opt.max_clients) {
            server_log(s, "refused a connection: %d clients connected (--max-clients %d)",
                       s->n_conns, s->opt.max_clients);
            http_respond(wsi, 503, "Service Unavailable", "", "too many clients connected (the server's --max-clients); "
                                  "try again later\n");
            return -1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        s = server_of(wsi);
        memset(c, 0, sizeof *c);
        c->wsi = wsi;
        c->id = ++s->next_id;
        c->is_ws = true;
        c->prev_total_ms = -1.0;
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        lws_callback_on_writable(wsi); /* the metadata */
        if (s->opt.keepalive_s > 0) lws_set_timer_usecs(wsi, (lws_usec_t)(s->opt.keepalive_s * 1e6));
        return 0;
    case LWS_CALLBACK_TIMER:
        /* Keep-alive as openpi's server does it: a ping every keepalive_s, and a connection whose
         * last ping went unanswered for that long is dropped (SERVING_SPEC 1.8). */
        s = server_of(wsi);
        if (!c || !c->is_ws) return 0;
        if (c->awaiting_pong) {
            server_log(s, "connection %llu: no pong within %g s, closing", (unsigned long long)c->id,
                       s->opt.keepalive_s);
            return -1;
        }
        c->ping_due = true;
        lws_callback_on_writable(wsi);
        lws_set_timer_usecs(wsi, (lws_usec_t)(s->opt.keepalive_s * 1e6));
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c && c->is_ws) c->awaiting_pong = false;
        return 0;
    case LWS_CALLBACK_CLOSED:
        s = server_of(wsi);
        if (!c || !c->is_ws) return 0;
        conn_free_requests(c);
        if (c->prev) c->prev->next = c->next;
        else s->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        c->is_ws = false;
        s->n_conns--;
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!c || !c->is_ws) return -1;
        on_receive(server_of(wsi), c, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!c || !c->is_ws) return -1;
        return on_writeable(server_of(wsi), c);
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        s = server_of(wsi);
        if (s) collect_done(s);
        return 0;
    default:
        return 0;
    }
}

/* ---- the server -------------------------------------------------------------------------- */

static void notify_lws(void *ctx) {
    pi0_server *s = ctx;
    lws_cancel_service(s->context);
}

void pi0_server_close(pi0_server *s) {
    if (!s) return;
    if (s->todo) pi0_queue_shutdown(s->todo);
    for (int i = 0; i < s->n_workers; i++) {
        pi0_worker_join(s->workers[i]);
        long long calls, rows;
        int max_rows;
        pi0_worker_stats(s->workers[i], &calls, &rows, &max_rows);
        if (s->context)
            server_log(s, "worker %d: %lld requests in %lld model calls, largest batch %d", i, rows,
                       calls, max_rows);
    }
    /* Closing the context runs LWS_CALLBACK_CLOSED for every connection, which frees what is not
     * with a worker; requests left in the queues are freed below. */
    if (s->context) lws_context_destroy(s->context);
    pi0_request *r;
    while (s->todo && pi0_queue_pop(s->todo, (void **)&r, 1, false) == 1) pi0_request_free(r);
    while (s->done && pi0_queue_pop(s->done, (void **)&r, 1, false) == 1) pi0_request_free(r);
    for (int i = 0; i < s->n_workers; i++) pi0_worker_close(s->workers[i]);
    free(s->workers);
    pi0_queue_close(s->todo);
    pi0_queue_close(s->done);
    free(s);
}

pi0_status pi0_server_open(pi0_server **out, const pi0_server_options *opt, pi0_error *err) {
    *out = NULL;
    if (opt->n_models < 1 || !opt->models || !opt->policy)
        return pi0_fail(err, PI0_ERR_INPUT, "the server needs a policy and at least one model");
    if (opt->max_clients < 1 || opt->max_batch < 1 || opt->num_steps < 1 ||
        opt->max_message_bytes < 1 || opt->request_timeout_s <= 0 || opt->keepalive_s < 0 ||
        opt->port < 0 ||
        opt->port > 65535)
        return pi0_fail(err, PI0_ERR_INPUT, "bad server options: max clients %d, max batch %d, "
                        "steps %d, max message %zu bytes, timeout %g s, port %d (expected "
                        "positive values and a port in 0..65535)", opt->max_clients,
                        opt->max_batch, opt->num_steps, opt->max_message_bytes,
                        opt->request_timeout_s, opt->port);
    pi0_server *s = calloc(1, sizeof *s);
    if (!s) return pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the server");
    s->opt = *opt;
    atomic_init(&s->record_counter, 0);
    s->metadata = pi0_policy_metadata(opt->policy, &s->metadata_len);
    pi0_status st;
    /* Each connection has at most one request queued or with a worker, so queues of max_clients
     * never fill up; the margin covers connections closing while their request is out. */
    const int capacity = 2 * opt->max_clients + 16;
    if ((st = pi0_queue_open(&s->todo, capacity, err)) != PI0_OK ||
        (st = pi0_queue_open(&s->done, capacity, err)) != PI0_OK)
        goto fail;
    s->workers = calloc((size_t)opt->n_models, sizeof *s->workers);
    if (!s->workers) {
        st = pi0_fail(err, PI0_ERR_NOMEM, "out of memory for the workers");
        goto fail;
    }
    const pi0_worker_config wc = {
        .policy = opt->policy, .in = s->todo, .out = s->done, .max_batch = opt->max_batch,
        .num_steps = opt->num_steps, .request_timeout_ms = opt->request_timeout_s * 1e3,
        .noise_seed = opt->noise_seed, .record_dir = opt->record_dir,
        .record_counter = &s->record_counter, .notify = notify_lws, .notify_ctx = s,
        .log = opt->log, .log_ctx = opt->log_ctx,
    };
    for (int i = 0; i < opt->n_models; i++) {
        if ((st = pi0_worker_open(&s->workers[i], opt->models[i], i, &wc, err)) != PI0_OK) goto fail;
        s->n_workers++;
        if ((st = pi0_worker_warmup(s->workers[i], err)) != PI0_OK) goto fail;
    }

    /* Bind only now that the models are loaded and warm (SERVING_SPEC 1.2). */
    s->protocols[0] = (struct lws_protocols){
        .name = "openpi", .callback = callback, .per_session_data_size = sizeof(conn),
        .rx_buffer_size = RX_CHUNK_BYTES,
    };
    /* lws 4.1's own keep-alive pings are off (a policy without a hang-up time): it builds its ping
     * in the buffer that holds the payload of a client ping still to be answered, so when both
     * sides ping at once (both start their 20 s clocks at the handshake) the client receives a
     * pong with the wrong payload and drops the connection. The keep-alive pings are ours
     * (LWS_CALLBACK_TIMER), sent through the normal write path. */
    s->no_validity = (lws_retry_bo_t){ .secs_since_valid_ping = 0, .secs_since_valid_hangup = 0 };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = opt->port;
    info.iface = opt->host;
    info.protocols = s->protocols;
    info.user = s;
    info.timeout_secs = 10; /* opening and closing handshakes (SERVING_SPEC 1.8) */
    info.pt_serv_buf_size = RX_CHUNK_BYTES;
    info.retry_and_idle_policy = &s->no_validity;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (opt->host && !strchr(opt->host, ':')) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    /* No info.extensions: permessage-deflate is declined, as openpi does. */
    lws_set_log_level(LLL_ERR, NULL);
    s->context = lws_create_context(&info);
    if (!s->context) {
        st = pi0_fail(err, PI0_ERR_IO, "cannot listen on %s:%d (address in use, or not an "
                      "address of this machine?)", opt->host ? opt->host : "0.0.0.0", opt->port);
        goto fail;
    }
    s->vhost = lws_get_vhost_by_name(s->context, "default");
    s->port = s->vhost ? lws_get_vhost_listen_port(s->vhost) : opt->port;
    if (s->port <= 0) {
        st = pi0_fail(err, PI0_ERR_IO, "cannot listen on %s:%d", opt->host ? opt->host : "0.0.0.0",
                      opt->port);
        goto fail;
    }
    for (int i = 0; i < s->n_workers; i++)
        if ((st = pi0_worker_start(s->workers[i], err)) != PI0_OK) goto fail;
    *out = s;
    return PI0_OK;
fail:
    pi0_server_close(s);
    return st;
}

int pi0_server_port(const pi0_server *s) { return s->port; }

void pi0_server_stop(pi0_server *s) {
    s->stop = 1;
    if (s->context) lws_cancel_service(s->context);
}

pi0_status pi0_server_run(pi0_server *s, pi0_error *err) {
    int n = 0;
    while (!s->stop && n >= 0) n = lws_service(s->context, 0);
    if (n < 0 && !s->stop) return pi0_fail(err, PI0_ERR_IO, "the websocket service loop failed");
    server_log(s, "shutting down (%d client%s connected)", s->n_conns, s->n_conns == 1 ? "" : "s");
    return PI0_OK;
}
