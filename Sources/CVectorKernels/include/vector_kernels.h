// Exact similarity over compact (int8) embedding vectors, for recall by meaning (MemProxyStore/Recall).
//
// One kernel, two builds: AVX2 (chosen at run time when the CPU has it; 16 products per instruction) and plain
// C (any CPU). Both compute the same integer dot products, bit for bit.
#ifndef MEMPROXY_VECTOR_KERNELS_H
#define MEMPROXY_VECTOR_KERNELS_H

#include <stdint.h>

/// The dot product of `query` (`dimensions` int8 values) with each of `count` rows of `matrix` (row-major,
/// `dimensions` int8 values per row), written to `out[0..count)`. Values must be in -127…127 (then no sum of up to
/// 65,536 dimensions overflows).
void mp_int8_dot_rows(const int8_t *matrix, const int8_t *query, int64_t dimensions, int64_t count, int32_t *out);

/// The cosine of a unit vector quantized as `query` × `query_scale` with each row quantized as row × `scales[row]`:
/// `dot × scales[row] × query_scale`, into `out[0..count)`. `use_avx2 = 0` forces the plain C build (tests compare
/// the two).
void mp_int8_cosines(const int8_t *matrix, const float *scales, const int8_t *query, float query_scale,
                     int64_t dimensions, int64_t count, int use_avx2, float *out);

/// Whether `mp_int8_dot_rows` and `mp_int8_cosines` use AVX2 on this CPU (for benchmarks and logs).
int mp_vector_kernels_use_avx2(void);

#endif
