/* nvml.c - the few NVML calls `pi0 bench` needs, loaded with dlopen.
 * We declare the functions ourselves instead of including nvml.h, so building pi0 needs no
 * NVIDIA headers, and running it needs no driver unless power is wanted. The sampler is one
 * helper thread polling nvmlDeviceGetPowerUsage; it is not a profiler (no clocks, no energy
 * counters). */
#define _POSIX_C_SOURCE 200809L
#include "nvml.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* NVML's ABI: nvmlReturn_t is an int enum with 0 = NVML_SUCCESS; nvmlDevice_t is an opaque
 * pointer. Power is in milliwatts. */
typedef int nvml_return;
typedef struct nvml_device_st *nvml_device;

enum { NVML_NAME_BYTES = 96, NVML_DRIVER_BYTES = 80, SAMPLE_PERIOD_NS = 10 * 1000 * 1000 };

struct pi0_nvml {
    void *lib;                                       /* owned: dlopen handle */
    nvml_return (*init)(void);
    nvml_return (*shutdown)(void);
    nvml_return (*get_handle)(unsigned int index, nvml_device *dev);
    nvml_return (*get_power)(nvml_device dev, unsigned int *milliwatts);
    nvml_return (*get_name)(nvml_device dev, char *name, unsigned int length);
    nvml_return (*get_driver)(char *version, unsigned int length);
    int initialized;                                 /* init succeeded: shutdown on close */
    nvml_device dev;
    char name[NVML_NAME_BYTES];
    char driver[NVML_DRIVER_BYTES];

    /* the sampler: the thread writes sum/count, the caller reads them after join */
    pthread_t thread;
    int running;
    atomic_int stop;
    double sum_w;
    int n_samples;
};

static void *load_symbol(void *lib, const char *name, int *missing) {
    void *p = dlsym(lib, name);
    if (!p) *missing = 1;
    return p;
}

int pi0_nvml_open(pi0_nvml **out, int index, char *why, size_t why_size) {
    *out = NULL;
    pi0_nvml *nv = calloc(1, sizeof *nv);
    if (!nv) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    nv->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nv->lib) {
        snprintf(why, why_size, "NVML not found");
        goto fail;
    }
    int missing = 0;
    /* Function pointers through void * (POSIX guarantees the conversion works for dlsym). */
    *(void **)&nv->init = load_symbol(nv->lib, "nvmlInit_v2", &missing);
    *(void **)&nv->shutdown = load_symbol(nv->lib, "nvmlShutdown", &missing);
    *(void **)&nv->get_handle = load_symbol(nv->lib, "nvmlDeviceGetHandleByIndex_v2", &missing);
    *(void **)&nv->get_power = load_symbol(nv->lib, "nvmlDeviceGetPowerUsage", &missing);
    *(void **)&nv->get_name = load_symbol(nv->lib, "nvmlDeviceGetName", &missing);
    *(void **)&nv->get_driver = load_symbol(nv->lib, "nvmlSystemGetDriverVersion", &missing);
    if (missing) {
        snprintf(why, why_size, "NVML too old (a function is missing)");
        goto fail;
    }
    nvml_return r = nv->init();
    if (r != 0) {
        snprintf(why, why_size, "nvmlInit_v2 failed (NVML error %d)", r);
        goto fail;
    }
    nv->initialized = 1;
    if (index < 0 || (r = nv->get_handle((unsigned int)index, &nv->dev)) != 0) {
        snprintf(why, why_size, "no GPU %d in NVML (NVML error %d)", index, r);
        goto fail;
    }
    if (nv->get_name(nv->dev, nv->name, sizeof nv->name) != 0) nv->name[0] = '\0';
    if (nv->get_driver(nv->driver, sizeof nv->driver) != 0) nv->driver[0] = '\0';
    nv->name[sizeof nv->name - 1] = '\0';
    nv->driver[sizeof nv->driver - 1] = '\0';
    /* One read now, so a GPU that does not report power is found before the timed loop. */
    unsigned int mw;
    if ((r = nv->get_power(nv->dev, &mw)) != 0) {
        snprintf(why, why_size, "GPU %d does not report power (NVML error %d)", index, r);
        goto fail;
    }
    *out = nv;
    return 0;
fail:
    pi0_nvml_close(nv);
    return -1;
}

void pi0_nvml_close(pi0_nvml *nv) {
    if (!nv) return;
    if (nv->running) {
        double w;
        int n;
        pi0_nvml_power_stop(nv, &w, &n);
    }
    if (nv->initialized) nv->shutdown();
    if (nv->lib) dlclose(nv->lib);
    free(nv);
}

const char *pi0_nvml_gpu_name(const pi0_nvml *nv) { return nv ? nv->name : ""; }
const char *pi0_nvml_driver_version(const pi0_nvml *nv) { return nv ? nv->driver : ""; }

static void *sampler_main(void *arg) {
    pi0_nvml *nv = arg;
    const struct timespec period = { 0, SAMPLE_PERIOD_NS };
    while (!atomic_load(&nv->stop)) {
        unsigned int mw;
        if (nv->get_power(nv->dev, &mw) == 0) {
            nv->sum_w += mw / 1000.0;
            nv->n_samples++;
        }
        nanosleep(&period, NULL);
    }
    return NULL;
}

int pi0_nvml_power_start(pi0_nvml *nv) {
    if (!nv || nv->running) return -1;
    nv->sum_w = 0.0;
    nv->n_samples = 0;
    atomic_store(&nv->stop, 0);
    if (pthread_create(&nv->thread, NULL, sampler_main, nv) != 0) return -1;
    nv->running = 1;
    return 0;
}

int pi0_nvml_power_stop(pi0_nvml *nv, double *mean_w, int *n_samples) {
    *mean_w = 0.0;
    *n_samples = 0;
    if (!nv || !nv->running) return -1;
    atomic_store(&nv->stop, 1);
    pthread_join(nv->thread, NULL);
    nv->running = 0;
    if (nv->n_samples == 0) return -1;
    *mean_w = nv->sum_w / nv->n_samples;
    *n_samples = nv->n_samples;
    return 0;
}
