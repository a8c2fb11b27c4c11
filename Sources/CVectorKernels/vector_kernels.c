#include "vector_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MP_HAVE_X86 1
#endif

static void dot_rows_plain(const int8_t *matrix, const int8_t *query, int64_t dimensions, int64_t count,
                           const float *scales, float scale, int32_t *dots, float *cosines) {
    for (int64_t row = 0; row < count; row++) {
        const int8_t *vector = matrix + row * dimensions;
        int32_t sum = 0;
        for (int64_t i = 0; i < dimensions; i++) sum += (int32_t)vector[i] * (int32_t)query[i];
        if (dots) dots[row] = sum;
        if (cosines) cosines[row] = (float)sum * scales[row] * scale;
    }
}

#ifdef MP_HAVE_X86
/// Sums the eight 32-bit lanes of `v`.
__attribute__((target("avx2"))) static inline int32_t sum_lanes(__m256i v) {
    __m128i half = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    half = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0x4e));
    half = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0xb1));
    return _mm_cvtsi128_si32(half);
}

__attribute__((target("avx2"))) static void dot_rows_avx2(const int8_t *matrix, const int8_t *query,
                                                          int64_t dimensions, int64_t count, const float *scales,
                                                          float scale, int32_t *dots, float *cosines) {
    // 32 products per step: maddubs multiplies unsigned by signed bytes, so the query's absolute values are the
    // unsigned side and each row value takes the query value's sign (q·r = |q|·(sign(q)·r)). Adjacent products are
    // summed into 16 bits (at most 2·127·127 = 32,258: no saturation), then pairs of those into 32 bits.
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t wide = dimensions / 32 * 32;
    for (int64_t row = 0; row < count; row++) {
        const int8_t *vector = matrix + row * dimensions;
        __m256i sums = _mm256_setzero_si256();
        for (int64_t i = 0; i < wide; i += 32) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(query + i));
            __m256i r = _mm256_loadu_si256((const __m256i *)(vector + i));
            __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(r, q));
            sums = _mm256_add_epi32(sums, _mm256_madd_epi16(pairs, ones));
        }
        int32_t sum = sum_lanes(sums);
        for (int64_t i = wide; i < dimensions; i++) sum += (int32_t)vector[i] * (int32_t)query[i];
        if (dots) dots[row] = sum;
        if (cosines) cosines[row] = (float)sum * scales[row] * scale;
    }
}
#endif

int mp_vector_kernels_use_avx2(void) {
#ifdef MP_HAVE_X86
    // Reads what the compiler runtime's CPU probe found at load time: cheap enough for every call.
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

void mp_int8_dot_rows(const int8_t *matrix, const int8_t *query, int64_t dimensions, int64_t count, int32_t *out) {
#ifdef MP_HAVE_X86
    if (mp_vector_kernels_use_avx2()) {
        dot_rows_avx2(matrix, query, dimensions, count, 0, 0, out, 0);
        return;
    }
#endif
    dot_rows_plain(matrix, query, dimensions, count, 0, 0, out, 0);
}

void mp_int8_cosines(const int8_t *matrix, const float *scales, const int8_t *query, float query_scale,
                     int64_t dimensions, int64_t count, int use_avx2, float *out) {
#ifdef MP_HAVE_X86
    if (use_avx2 && mp_vector_kernels_use_avx2()) {
        dot_rows_avx2(matrix, query, dimensions, count, scales, query_scale, 0, out);
        return;
    }
#endif
    dot_rows_plain(matrix, query, dimensions, count, scales, query_scale, 0, out);
}
