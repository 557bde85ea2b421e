/* nvml.h - board power and driver version of an NVIDIA GPU, for `pi0 bench`.
 * NVML (libnvidia-ml.so.1, installed with the driver) is loaded at run time with dlopen, so
 * the pi0 binary builds and runs where it is absent: then pi0_nvml_open fails with a reason.
 * Not part of libpi0: only the CLI measures power.
 *
 *   pi0_nvml *nv; char why[128];
 *   if (pi0_nvml_open(&nv, 0, why, sizeof why) == 0) {
 *       pi0_nvml_power_start(nv);   ...timed loop...   pi0_nvml_power_stop(nv, &w);
 *   }
 *   pi0_nvml_close(nv); */
#ifndef PI0_CLI_NVML_H
#define PI0_CLI_NVML_H

#include <stddef.h>

typedef struct pi0_nvml pi0_nvml;

/* Loads NVML and looks up GPU `index` (NVML's enumeration, which matches CUDA's when
 * CUDA_DEVICE_ORDER=PCI_BUS_ID or there is one GPU). Returns 0 and sets *out, or -1 with
 * *out = NULL and a short reason in why ("NVML not found", ...). */
int pi0_nvml_open(pi0_nvml **out, int index, char *why, size_t why_size);
void pi0_nvml_close(pi0_nvml *nv); /* NULL is a no-op; stops a running sampler */

const char *pi0_nvml_gpu_name(const pi0_nvml *nv);       /* "" when unknown */
const char *pi0_nvml_driver_version(const pi0_nvml *nv); /* "" when unknown */

/* Starts a helper thread that reads the board power every ~10 ms. Returns 0, or -1 when
 * the thread cannot start or a sampler is already running. */
int pi0_nvml_power_start(pi0_nvml *nv);
/* Stops the sampler; *mean_w = mean board power in watts over the samples taken and
 * *n_samples their count. Returns 0, or -1 when no sample was read (then *mean_w = 0). */
int pi0_nvml_power_stop(pi0_nvml *nv, double *mean_w, int *n_samples);

#endif
