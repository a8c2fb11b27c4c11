#include "vector_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MP_HAVE_X86 1
#endif

static void dot_rows_plain(const int8_t *matrix, const int8_t *query, int64_t dimensions, int64_t count,
                           int32_t *out) {
    for (int64_t row = 0; row < count; row++) {
        const int8_t *vector = matrix + row * dimensions;
        int32_t sum = 0;
        for (int64_t i = 0; i < dimensions; i++) sum += (int32_t)vector[i] * (int32_t)query[i];
        out[row] = sum;
    }
}

#ifdef MP_HAVE_X86
__attribute__((target("avx2"))) static void dot_rows_avx2(const int8_t *matrix, const int8_t *query,
                                                          int64_t dimensions, int64_t count, int32_t *out) {
    for (int64_t row = 0; row < count; row++) {
        const int8_t *vector = matrix + row * dimensions;
        __m256i sums = _mm256_setzero_si256();
        int64_t i = 0;
        for (; i + 16 <= dimensions; i += 16) {
            // Sign-extend 16 values of each to 16 bits; multiply pairwise and add neighbours into 8 × 32 bits.
            __m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(vector + i)));
            __m256i y = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(query + i)));
            sums = _mm256_add_epi32(sums, _mm256_madd_epi16(x, y));
        }
        __m128i half = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
        half = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0x4e));
        half = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0xb1));
        int32_t sum = _mm_cvtsi128_si32(half);
        for (; i < dimensions; i++) sum += (int32_t)vector[i] * (int32_t)query[i];
        out[row] = sum;
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
        dot_rows_avx2(matrix, query, dimensions, count, out);
        return;
    }
#endif
    dot_rows_plain(matrix, query, dimensions, count, out);
}
