/* serve.c - `pi0 serve`: load a checkpoint, its norm stats and the PaliGemma tokenizer, warm the
 * model up, then serve openpi's websocket protocol (a drop-in for openpi's serve_policy.py; see
 * docs/SERVING.md). This file checks flags and files and reports what is missing; the server
 * itself is server/. SIGINT and SIGTERM stop it cleanly. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "cli.h"
#include "common.h"
#include "pi0.h"
#include "policy/policy.h"
#include "server.h"
#include "tokenizer/tokenizer.h"

enum { MAX_DEVICES = 16 };

/* The signal handler's only way to the server. */
static pi0_server *volatile running_server;

static void on_signal(int sig) {
    (void)sig;
    if (running_server) pi0_server_stop(running_server);
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "pi0 serve: %s\n", line);
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The checkpoint needs both files that openpi's converter writes; say which one is missing. */
static bool check_model_dir(const char *dir) {
    if (!is_dir(dir)) {
        fprintf(stderr, "pi0 serve: --model %s: no such directory (expected a converted openpi "
                "checkpoint: model.safetensors + config.json, see docs/SERVING.md)\n", dir);
        return false;
    }
    static const char *const files[] = { "config.json", "model.safetensors" };
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (!is_file(path)) {
            fprintf(stderr, "pi0 serve: %s not found: openpi's "
                    "examples/convert_jax_model_to_pytorch.py writes model.safetensors and "
                    "config.json from a JAX checkpoint (--checkpoint_dir CKPT --config_name "
                    "CONFIG --output_path %s; see docs/SERVING.md)\n", path, dir);
            return false;
        }
    }
    return true;
}

/* --tokenizer, else the usual places: beside the model, then openpi's download cache. */
static pi0_status open_tokenizer(pi0_tokenizer **tok, const char *flag, const char *model,
                                 pi0_error *err) {
    if (flag) return pi0_tokenizer_open(tok, flag, err);
    char candidates[3][4096];
    int n = 0;
    snprintf(candidates[n++], sizeof candidates[0], "%s/paligemma_tokenizer.model", model);
    const char *data_home = getenv("OPENPI_DATA_HOME"), *home = getenv("HOME");
    if (data_home && *data_home)
        snprintf(candidates[n++], sizeof candidates[0], "%s/big_vision/paligemma_tokenizer.model",
                 data_home);
    if (home && *home)
        snprintf(candidates[n++], sizeof candidates[0],
                 "%s/.cache/openpi/big_vision/paligemma_tokenizer.model", home);
    for (int i = 0; i < n; i++)
        if (is_file(candidates[i])) return pi0_tokenizer_open(tok, candidates[i], err);
    /* None there: let the tokenizer say what to download, naming the first place we looked. */
    return pi0_tokenizer_open(tok, candidates[0], err);
}

int pi0_cmd_serve(int argc, char **argv) {
    const char *model = NULL, *preset = NULL, *norm_stats = NULL, *tokenizer_path = NULL,
               *default_prompt = NULL, *host = "0.0.0.0", *backend = NULL, *record = NULL;
    int port = 8000, max_batch = 0, max_clients = 64, threads = 0, num_steps = 10;
    double max_message_mb = 64, timeout_s = 30, keepalive_s = 20;
    uint64_t noise_seed = 0;
    pi0_int_list devices = { 1, { 0 } };
    const char *devices_text = NULL;
    char policy_help[256] = "robot preset (required):";
    for (const char *const *p = pi0_policy_preset_names(); *p; p++)
        snprintf(policy_help + strlen(policy_help), sizeof policy_help - strlen(policy_help),
                 " %s", *p);
    const pi0_arg args[] = {
        { "--model", PI0_ARG_STRING, &model, "DIR", "converted checkpoint: model.safetensors + config.json (required)" },
        { "--policy", PI0_ARG_STRING, &preset, "NAME", policy_help },
        { "--norm-stats", PI0_ARG_STRING, &norm_stats, "FILE", "norm_stats.json (default: DIR/assets/<asset id>/norm_stats.json)" },
        { "--tokenizer", PI0_ARG_STRING, &tokenizer_path, "FILE", "paligemma_tokenizer.model (default: DIR/, then ~/.cache/openpi/big_vision/)" },
        { "--default-prompt", PI0_ARG_STRING, &default_prompt, "TEXT", "prompt for requests without one" },
        { "--host", PI0_ARG_STRING, &host, "ADDR", "bind address (default 0.0.0.0)" },
        { "--port", PI0_ARG_INT, &port, "N", "port (default 8000; 0 = any free port)" },
        { "--backend", PI0_ARG_STRING, &backend, "cpu|cuda", "backend (default cuda when built, else cpu)" },
        { "--devices", PI0_ARG_STRING, &devices_text, "LIST", "CUDA devices, one model and worker each (default 0)" },
        { "--max-batch", PI0_ARG_INT, &max_batch, "N", "requests per model call (default 8 on cuda, 1 on cpu)" },
        { "--max-message-mb", PI0_ARG_FLOAT, &max_message_mb, "X", "largest request in MiB, fractions allowed (default 64)" },
        { "--max-clients", PI0_ARG_INT, &max_clients, "N", "concurrent connections (default 64)" },
        { "--request-timeout-s", PI0_ARG_FLOAT, &timeout_s, "X", "fail requests queued longer (default 30)" },
        { "--keepalive-s", PI0_ARG_FLOAT, &keepalive_s, "X", "ping clients this often, drop them after as long unanswered (default 20; 0 = off)" },
        { "--num-steps", PI0_ARG_INT, &num_steps, "N", "Euler steps (default 10, as openpi)" },
        { "--noise-seed", PI0_ARG_U64, &noise_seed, "N", "seed of the sampling noise (default 0)" },
        { "--record", PI0_ARG_STRING, &record, "DIR", "write each request's model inputs and actions here" },
        { "--threads", PI0_ARG_INT, &threads, "N", "CPU threads (default 0 = one per core)" },
    };
    int prc = pi0_args_parse("serve", "pi0 serve --model DIR --policy NAME [flags]", args,
                             PI0_N_ARGS(args), argc, argv);
    if (prc != PI0_ARGS_OK) return prc == PI0_ARGS_HELP ? 0 : 2;

    if (!model || !preset) {
        fprintf(stderr, "pi0 serve: %s is required (see pi0 serve --help)\n",
                !model ? "--model" : "--policy");
        return 2;
    }
    bool known = false;
    for (const char *const *p = pi0_policy_preset_names(); *p; p++) known |= !strcmp(*p, preset);
    if (!known) {
        fprintf(stderr, "pi0 serve: --policy is '%s', expected one of:%s\n", preset,
                policy_help + strlen("robot preset (required):"));
        return 2;
    }
    pi0_backend be = pi0_backend_built(PI0_BACKEND_CUDA) ? PI0_BACKEND_CUDA : PI0_BACKEND_CPU;
    if (backend && !strcmp(backend, "cpu")) be = PI0_BACKEND_CPU;
    else if (backend && !strcmp(backend, "cuda")) be = PI0_BACKEND_CUDA;
    else if (backend) {
        fprintf(stderr, "pi0 serve: --backend is '%s', expected cpu or cuda\n", backend);
        return 2;
    }
    if (devices_text && !pi0_int_list_parse("serve", "--devices", devices_text, &devices)) return 2;
    if (devices.n > MAX_DEVICES) {
        fprintf(stderr, "pi0 serve: --devices lists %d devices, at most %d\n", devices.n,
                MAX_DEVICES);
        return 2;
    }
    if (be == PI0_BACKEND_CPU) devices.n = 1; /* one CPU model; its threads use every core */
    if (max_batch == 0) max_batch = be == PI0_BACKEND_CUDA ? 8 : 1;
    if (max_batch < 1 || max_clients < 1 || num_steps < 1 || num_steps > 1000 || port < 0 ||
        port > 65535 || !(max_message_mb > 0) || !(timeout_s > 0) || !(keepalive_s >= 0) ||
        threads < 0) {
        fprintf(stderr, "pi0 serve: bad value: --max-batch %d, --max-clients %d, --num-steps %d "
                "(1..1000), --port %d (0..65535), --max-message-mb %g, --request-timeout-s %g, "
                "--keepalive-s %g, --threads %d; counts and limits must be positive\n", max_batch,
                max_clients, num_steps, port, max_message_mb, timeout_s, keepalive_s, threads);
        return 2;
    }
    if (norm_stats && !is_file(norm_stats)) {
        fprintf(stderr, "pi0 serve: --norm-stats %s: no such file\n", norm_stats);
        return 2;
    }
    if (!check_model_dir(model)) return 2;
    if (record && !is_dir(record) && mkdir(record, 0777) != 0) {
        fprintf(stderr, "pi0 serve: --record %s: cannot create the directory: %s\n", record,
                strerror(errno));
        return 2;
    }

    pi0_error err;
    pi0_tokenizer *tok = NULL;
    pi0_policy *policy = NULL;
    pi0_model *models[MAX_DEVICES] = { 0 };
    pi0_server *server = NULL;
    int rc = 1;
    char config_path[4096];
    snprintf(config_path, sizeof config_path, "%s/config.json", model);
    pi0_dims dims;
    if (pi0_dims_load(&dims, config_path, &err) != PI0_OK) {
        fprintf(stderr, "pi0 serve: %s\n", err.msg);
        return 1;
    }
    /* The small files first, so that a missing one is reported before the long weights load. */
    if (open_tokenizer(&tok, tokenizer_path, model, &err) != PI0_OK) {
        fprintf(stderr, "pi0 serve: %s\n", err.msg);
        goto done;
    }
    if (dims.llm.vocab_size > 0 && pi0_tokenizer_vocab_size(tok) > dims.llm.vocab_size) {
        fprintf(stderr, "pi0 serve: the tokenizer has %d pieces but the model's vocabulary has "
                "%d: wrong --tokenizer for this checkpoint?\n", pi0_tokenizer_vocab_size(tok),
                dims.llm.vocab_size);
        goto done;
    }
    const pi0_policy_options popt = {
        .preset = preset, .norm_stats_path = norm_stats, .model_dir = model, .tokenizer = tok,
        .default_prompt = default_prompt, .action_horizon = dims.action_horizon,
        .action_dim = dims.action_dim, .max_token_len = dims.max_token_len,
        .image_size = dims.image_size,
    };
    if (pi0_policy_open(&policy, &popt, &err) != PI0_OK) {
        fprintf(stderr, "pi0 serve: %s\n", err.msg);
        goto done;
    }
    for (int i = 0; i < devices.n; i++) {
        pi0_options opt = pi0_options_default();
        opt.model_dir = model;
        opt.backend = be;
        opt.max_batch = max_batch;
        opt.n_threads = threads;
        opt.device = devices.v[i];
        opt.log = log_line;
        if (pi0_model_open(&models[i], &opt, &err) != PI0_OK) {
            fprintf(stderr, "pi0 serve: %s\n", err.msg);
            goto done;
        }
        log_line(NULL, pi0_model_device_name(models[i]));
    }
    const pi0_server_options sopt = {
        .host = host, .port = port,
        .max_message_bytes = (size_t)(max_message_mb * 1024 * 1024) > 0
                                 ? (size_t)(max_message_mb * 1024 * 1024) : 1,
        .max_clients = max_clients, .request_timeout_s = timeout_s, .keepalive_s = keepalive_s,
        .max_batch = max_batch,
        .num_steps = num_steps, .noise_seed = noise_seed, .record_dir = record, .policy = policy,
        .models = models, .n_models = devices.n, .log = log_line,
    };
    if (pi0_server_open(&server, &sopt, &err) != PI0_OK) {
        fprintf(stderr, "pi0 serve: %s\n", err.msg);
        goto done;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    running_server = server;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "pi0 serve: %s policy, %s backend, max batch %d: listening on ws://%s:%d\n",
            preset, pi0_backend_name(be), max_batch, host, pi0_server_port(server));
    fflush(stderr);
    rc = pi0_server_run(server, &err) == PI0_OK ? 0 : 1;
    if (rc) fprintf(stderr, "pi0 serve: %s\n", err.msg);
done:
    /* Until the server is closed, further signals are caught and ignored: a second Ctrl-C must
     * not cut the shutdown short (the workers finish their model call first). */
    running_server = NULL;
    pi0_server_close(server);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    for (int i = 0; i < devices.n; i++) pi0_model_close(models[i]);
    pi0_policy_close(policy);
    pi0_tokenizer_close(tok);
    return rc;
}
