/* rope_angle.cuh - the RoPE angle every CUDA kernel uses, computed as rope_cpu.c computes it:
 * pos / 10000^((2/Dh)*i) in fp32, accurate sin and cos. */
#ifndef PI0_OPS_ROPE_ANGLE_CUH
#define PI0_OPS_ROPE_ANGLE_CUH

/* (cos, sin) of angle i (0 <= i < Dh/2) at position pos */
static __device__ __forceinline__ float2 rope_angle(float pos, int i, int Dh) {
    float timescale = powf(10000.0f, (2.0f / (float)Dh) * (float)i), sn, cs;
    sincosf(pos / timescale, &sn, &cs);
    return make_float2(cs, sn);
}

#endif
