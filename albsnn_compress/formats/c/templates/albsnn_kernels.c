/* albsnn_kernels.c: the layer kernels every exported model shares.
 *
 * Written by albsnn-compress. Plain C99: no allocation, no library calls; every buffer is a
 * slice of the model's one static arena. Float arithmetic follows PyTorch's order of operations
 * where that decides a spike (batch norm is folded into one scale and bias per channel at
 * export). Build with -ffp-contract=off (the default of -std=c99) so that no multiply-add is
 * fused: a fused one rounds differently and moves threshold ties.
 *
 * Binarized layers over spikes (albsnn_conv_bits) never multiply in their inner loop: the weights
 * w_j = alpha * (2 b_j - 1) stay packed, one bit each, and over spikes s_j in {0, 1}
 *
 *     sum_j w_j s_j = alpha * (2 * popcount(b & s) - popcount(s))
 *
 * summed as integers over the receptive field (count maps of several bit planes p add
 * 2^p times their own sum); one multiply by the folded scale follows per output. With one time
 * step, scale, bias and the neuron fold further into an integer range of acc in which it fires
 * (the float expression is monotone in acc, so the range gives exactly its spikes).
 *
 * Every public kernel checks its arguments first (NULL pointers, scratch sizes, descriptors whose
 * shapes do not follow from each other) and returns an ALBSNN_ERR_* status without writing
 * anything; the work itself is done by a static function that trusts them. Each buffer is used
 * through a pointer of the type it holds (albsnn_kernels.h): no pointer conversion here changes
 * the type an object is read or written as.
 */
#include "albsnn_kernels.h"

/* The small helpers of the inner loops are inlined even at -Os (a call per popcount or bit would
 * cost more than the work on a Cortex-M4). */
#if defined(__GNUC__)
#define ALBSNN_INLINE static inline __attribute__((always_inline))
#else
#define ALBSNN_INLINE static inline
#endif

/* restrict is C99; C++ has none (the folder also compiles as C++), GNU C++ spells it __restrict. */
#if !defined(__cplusplus)
#define ALBSNN_RESTRICT restrict
#elif defined(__GNUC__)
#define ALBSNN_RESTRICT __restrict
#else
#define ALBSNN_RESTRICT
#endif

#define ALBSNN_WORDS(n) (((n) + 31u) / 32u)
#define ALBSNN_WORDS64(n) (((n) + 63u) / 64u)

#ifdef ALBSNN_TRACE
#define ALBSNN_TRACE_LIF(n, t, i, h, s) albsnn_trace((n)->trace_id, (t), (i), (h), (s))
#else
#define ALBSNN_TRACE_LIF(n, t, i, h, s) ((void)(n), (void)(t), (void)(i), (void)(h), (void)(s))
#endif

/* -- neurons ---------------------------------------------------------------------------------- */

/* The membrane after a spike decision, one case per reset rule of the spiking core (RESET_C in
 * albsnn_compress/formats/c/plan.py names them; a descriptor with another rule is refused). */
ALBSNN_INLINE float lif_reset(const albsnn_lif *n, float h, int spike)
{
    switch (n->reset) {
    case ALBSNN_RESET_HARD: /* H (1 - S) + v_reset S */
        return spike ? n->v_reset : h;
    case ALBSNN_RESET_SOFT: /* H - v_th S */
        return spike ? h - n->v_threshold : h;
    default:
        break;
    }
    return h;
}

/* x / tau; a power-of-two tau multiplies by its exact reciprocal instead (the same float, faster). */
ALBSNN_INLINE float over_tau(const albsnn_lif *n, float x) { return n->tau_is_pow2 ? x * n->inv_tau : x / n->tau; }

/* One neuron, one step: charge (from *v, or from v_reset at step 0), fire, reset *v; returns the spike. */
ALBSNN_INLINE int lif_step(const albsnn_lif *n, uint32_t step, uint32_t index, float *v, float x)
{
    /* step 0: V = v_reset, so H = X / tau + v_reset (PyTorch's shortcut, the same value) */
    const float h = step == 0u ? over_tau(n, x) + n->v_reset : *v + over_tau(n, x - (*v - n->v_reset));
    const int spike = h >= n->v_threshold;
    ALBSNN_TRACE_LIF(n, step, index, h, spike);
    *v = lif_reset(n, h, spike);
    return spike;
}

/* -- tensors ---------------------------------------------------------------------------------- */

ALBSNN_INLINE uint32_t numel(const albsnn_tensor *t) { return t->c * t->h * t->w; }

ALBSNN_INLINE uint32_t plane_words(const albsnn_tensor *t) { return ALBSNN_WORDS(numel(t)); }

ALBSNN_INLINE uint32_t step_of(const albsnn_tensor *t, uint32_t step) { return t->steps == 1u ? 0u : step; }

static size_t tensor_words(const albsnn_tensor *t)
{
    return t->planes == 0u ? (size_t)t->steps * numel(t) : (size_t)t->steps * t->planes * plane_words(t);
}

static void clear_words(uint32_t *y, size_t count)
{
    size_t i;
    for (i = 0; i < count; ++i) {
        y[i] = 0u;
    }
}

ALBSNN_INLINE uint32_t bit_at(const uint32_t *plane, uint32_t i) { return (plane[i >> 5] >> (31u - (i & 31u))) & 1u; }

ALBSNN_INLINE void set_bit(uint32_t *plane, uint32_t i) { plane[i >> 5] |= 0x80000000u >> (i & 31u); }

/* OR n (1..32) right-aligned bits, first bit first, into a plane from element `start` on. */
ALBSNN_INLINE void or_bits(uint32_t *plane, uint32_t start, uint32_t bits, uint32_t n)
{
    const uint32_t word = start >> 5, skip = start & 31u;
    const uint64_t v = ((uint64_t)bits << (64u - n)) >> skip;
    plane[word] |= (uint32_t)(v >> 32);
    if (skip + n > 32u) {
        plane[word + 1u] |= (uint32_t)v;
    }
}

/* Collects consecutive output bits and ORs them into a plane 32 at a time. */
typedef struct {
    uint32_t *plane;
    uint32_t start, run, count;
} bit_run;

ALBSNN_INLINE void run_push(bit_run *r, uint32_t bit)
{
    r->run = (r->run << 1) | bit;
    if (++r->count == 32u) {
        or_bits(r->plane, r->start, r->run, 32u);
        r->start += 32u;
        r->run = 0u;
        r->count = 0u;
    }
}

static void run_flush(bit_run *r)
{
    if (r->count > 0u) {
        or_bits(r->plane, r->start, r->run, r->count);
    }
}

ALBSNN_INLINE const uint32_t *plane_of(const albsnn_tensor *t, const uint32_t *x, uint32_t step, uint32_t plane)
{
    return x + ((size_t)step_of(t, step) * t->planes + plane) * plane_words(t);
}

/* The count at element i of a bit-plane tensor. */
static uint32_t count_at(const albsnn_tensor *t, const uint32_t *x, uint32_t step, uint32_t i)
{
    uint32_t b, count = 0u;
    for (b = 0; b < t->planes; ++b) {
        count |= bit_at(plane_of(t, x, step, b), i) << b;
    }
    return count;
}

static void write_count(const albsnn_tensor *t, uint32_t *y, uint32_t step, uint32_t i, uint32_t count)
{
    uint32_t b;
    for (b = 0; b < t->planes; ++b) {
        if ((count >> b) & 1u) {
            set_bit(y + ((size_t)step * t->planes + b) * plane_words(t), i);
        }
    }
}

/* The value of element i: a float, or count / divisor (the float PyTorch holds there). */
static float value_at(const albsnn_tensor *t, const void *x, uint32_t step, uint32_t i)
{
    uint32_t count;
    if (t->planes == 0u) {
        return ((const float *)x)[(size_t)step_of(t, step) * numel(t) + i];
    }
    count = count_at(t, (const uint32_t *)x, step, i);
    return t->divisor == 1u ? (float)count : (float)count / (float)t->divisor;
}

/* -- argument checks ---------------------------------------------------------------------------- */

/* Every size at least 1, at most 31 planes, a divisor (floats have divisor 1). */
static int tensor_ok(const albsnn_tensor *t)
{
    return t->c > 0u && t->h > 0u && t->w > 0u && t->steps > 0u && t->planes <= 31u && t->divisor > 0u;
}

/* A neuron layer's constants name a reset rule the kernels implement. */
static int lif_ok(const albsnn_lif *n) { return n->reset < ALBSNN_RESET_RULES; }

/* Output extent `out` of a window of k at stride s over n inputs padded by pad on both sides. */
static int window_ok(uint32_t n, uint32_t k, uint32_t s, uint32_t pad, uint32_t out)
{
    const uint64_t padded = (uint64_t)n + 2u * (uint64_t)pad;
    return k > 0u && s > 0u && padded >= k && (padded - k) / s + 1u == out;
}

/* What every conv or linear descriptor must satisfy (both kernels). */
static int conv_check(const albsnn_conv *p)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    if (p->scale == NULL || p->bias == NULL || (p->bits == NULL && p->weight == NULL)) {
        return ALBSNN_ERR_NULL;
    }
    if (!tensor_ok(in) || !tensor_ok(out) || p->groups == 0u || in->c % p->groups != 0u || out->c % p->groups != 0u
        || !window_ok(in->h, p->kernel, p->stride, p->padding, out->h)
        || !window_ok(in->w, p->kernel, p->stride, p->padding, out->w)
        || (in->steps != out->steps && in->steps != 1u)
        || (p->lif == NULL ? out->planes != 0u : out->planes != 1u || out->divisor != 1u || !lif_ok(p->lif))
        || (p->fires != NULL && (p->lif == NULL || out->steps != 1u))) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    return ALBSNN_OK;
}

/* The popcount kernel also needs sign bits over bit planes, and integer sums that cannot overflow:
 * |acc| <= fan-in * (2^planes - 1). */
static int conv_bits_check(const albsnn_conv *p)
{
    const int status = conv_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (p->bits == NULL) {
        return ALBSNN_ERR_NULL;
    }
    if (p->in.planes == 0u || p->kernel > 0xFFFFu
        || ((uint64_t)(p->in.c / p->groups) * p->kernel * p->kernel << p->in.planes) > 0x7FFFFFFFu) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    return ALBSNN_OK;
}

/* -- input -------------------------------------------------------------------------------------- */

int albsnn_normalize(const float *pixels, const float *mean, const float *std, const albsnn_tensor *out, float *y)
{
    uint32_t hw, c, i;
    if (pixels == NULL || mean == NULL || std == NULL || out == NULL || y == NULL) {
        return ALBSNN_ERR_NULL;
    }
    if (!tensor_ok(out) || out->planes != 0u) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    hw = out->h * out->w;
    for (c = 0; c < out->c; ++c) {
        for (i = 0; i < hw; ++i) {
            y[c * hw + i] = (pixels[c * hw + i] - mean[c]) / std[c];
        }
    }
    return ALBSNN_OK;
}

/* -- convolution and linear layers, one output row at a time ------------------------------------ */

static void load_row(const albsnn_tensor *t, const void *x, uint32_t step, uint32_t c, uint32_t iy, float *row)
{
    const uint32_t start = (c * t->h + iy) * t->w;
    uint32_t j;
    if (t->planes == 0u) {
        const float *src = (const float *)x + (size_t)step_of(t, step) * numel(t) + start;
        for (j = 0; j < t->w; ++j) {
            row[j] = src[j];
        }
    } else if (t->planes == 1u && t->divisor == 1u) {
        const uint32_t *plane = plane_of(t, (const uint32_t *)x, step, 0u);
        for (j = 0; j < t->w; ++j) {
            row[j] = (float)bit_at(plane, start + j);
        }
    } else {
        for (j = 0; j < t->w; ++j) {
            row[j] = value_at(t, x, step, start + j);
        }
    }
}

static void row_axpy(float *ALBSNN_RESTRICT acc, const float *ALBSNN_RESTRICT row, float w, uint32_t n, uint32_t stride)
{
    uint32_t i;
    if (stride == 1u) {
        for (i = 0; i < n; ++i) {
            acc[i] += w * row[i];
        }
    } else {
        for (i = 0; i < n; ++i) {
            acc[i] += w * row[i * stride];
        }
    }
}

/* The three taps of a 3-wide kernel row at stride 1, added in kx order (one load and store of acc). */
static void row_taps3(float *ALBSNN_RESTRICT acc, const float *ALBSNN_RESTRICT row, const float *ALBSNN_RESTRICT w, uint32_t n)
{
    const float w0 = w[0], w1 = w[1], w2 = w[2];
    uint32_t i;
    for (i = 0; i < n; ++i) {
        float a = acc[i];
        a += w0 * row[i];
        a += w1 * row[i + 1u];
        a += w2 * row[i + 2u];
        acc[i] = a;
    }
}

/* acc += row or acc -= row: a binary weight times an analog row, without multiplying. */
static void row_add(float *ALBSNN_RESTRICT acc, const float *ALBSNN_RESTRICT row, int plus, uint32_t n, uint32_t stride)
{
    uint32_t i;
    if (plus) {
        for (i = 0; i < n; ++i) {
            acc[i] += row[i * stride];
        }
    } else {
        for (i = 0; i < n; ++i) {
            acc[i] -= row[i * stride];
        }
    }
}

static int sign_bit(const uint8_t *bits, uint32_t i) { return (bits[i >> 3] >> (7u - (i & 7u))) & 1u; }

/* acc[co][ox] of output row oy at one step: sum over (c, ky, kx), in that order, of w * x. */
static void conv_row(const albsnn_conv *p, const void *x, uint32_t step, uint32_t oy, float *row, float *acc)
{
    const albsnn_tensor *in = &p->in;
    const uint32_t k = p->kernel, s = p->stride, pad = p->padding, wo = p->out.w;
    const uint32_t cin = in->c / p->groups, cout = p->out.c / p->groups;
    uint32_t g, cl, ky, col, kx, j;
    for (j = 0; j < p->out.c * wo; ++j) {
        acc[j] = 0.0f;
    }
    for (j = 0; j < pad; ++j) {
        row[j] = 0.0f;
        row[pad + in->w + j] = 0.0f;
    }
    for (g = 0; g < p->groups; ++g) {
        for (cl = 0; cl < cin; ++cl) {
            for (ky = 0; ky < k; ++ky) {
                const int32_t iy = (int32_t)(oy * s + ky) - (int32_t)pad;
                if (iy < 0 || iy >= (int32_t)in->h) {
                    continue;  /* zero padding adds nothing */
                }
                load_row(in, x, step, g * cin + cl, (uint32_t)iy, row + pad);
                for (col = 0; col < cout; ++col) {
                    const uint32_t co = g * cout + col, w0 = ((co * cin + cl) * k + ky) * k;
                    if (p->bits == NULL && k == 3u && s == 1u) {
                        row_taps3(acc + co * wo, row, p->weight + w0, wo);
                        continue;
                    }
                    for (kx = 0; kx < k; ++kx) {
                        if (p->bits != NULL) {
                            row_add(acc + co * wo, row + kx, sign_bit(p->bits, w0 + kx), wo, s);
                        } else {
                            row_axpy(acc + co * wo, row + kx, p->weight[w0 + kx], wo, s);
                        }
                    }
                }
            }
        }
    }
}

/* Scratch of albsnn_conv_rows: one padded input row, one output row of sums, and with neurons over
 * several steps one output row of membranes. */
static size_t rows_scratch(const albsnn_conv *p)
{
    const size_t rows = p->lif != NULL && p->out.steps > 1u ? 2u : 1u;
    return (size_t)p->in.w + 2u * (size_t)p->padding + rows * (size_t)p->out.c * p->out.w;
}

size_t albsnn_conv_rows_scratch(const albsnn_conv *p)
{
    return p == NULL || conv_check(p) != ALBSNN_OK ? 0u : rows_scratch(p);
}

static void conv_rows_run(const albsnn_conv *p, const void *x, void *y, float *scratch)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, cw = out->c * wo;
    float *row = scratch, *acc = row + in->w + 2u * p->padding, *mem = acc + cw;  /* membranes: several steps only */
    float once = 0.0f;
    uint32_t oy, t, co, ox;
    if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    for (oy = 0; oy < out->h; ++oy) {
        for (t = 0; t < out->steps; ++t) {
            if (t == 0u || in->steps > 1u) {
                conv_row(p, x, step_of(in, t), oy, row, acc);
                for (co = 0; co < out->c; ++co) {
                    for (ox = 0; ox < wo; ++ox) {
                        acc[co * wo + ox] = acc[co * wo + ox] * p->scale[co] + p->bias[co];
                    }
                }
            }
            for (co = 0; co < out->c; ++co) {
                for (ox = 0; ox < wo; ++ox) {
                    const uint32_t i = co * hwo + oy * wo + ox;
                    if (p->lif == NULL) {
                        ((float *)y)[(size_t)t * numel(out) + i] = acc[co * wo + ox];
                    } else if (lif_step(p->lif, t, i, out->steps > 1u ? &mem[co * wo + ox] : &once, acc[co * wo + ox])) {
                        set_bit((uint32_t *)y + (size_t)t * plane_words(out), i);
                    }
                }
            }
        }
    }
}

/* Any weights, any input: x and y are floats, or bit planes (uint32_t) where the descriptor says so. */
int albsnn_conv_rows(const albsnn_conv *p, const void *x, void *y, float *scratch, size_t n_scratch)
{
    int status;
    if (p == NULL || x == NULL || y == NULL || scratch == NULL) {
        return ALBSNN_ERR_NULL;
    }
    status = conv_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (n_scratch < rows_scratch(p)) {
        return ALBSNN_ERR_SCRATCH;
    }
    conv_rows_run(p, x, y, scratch);
    return ALBSNN_OK;
}

/* -- binarized layers over bit planes: AND + popcount ------------------------------------------ */

/* Popcounts of many words are summed in two stages: partial(x) per word, added up for at most
 * PARTIALS words, then total() of the sum. With a popcount instruction partial is the popcount and
 * total the identity; without one (Cortex-M4, x86 without -mpopcnt) partial leaves each byte's
 * count (0..8) in that byte, so 31 words add up without carries and the horizontal sum of the
 * bytes is done once per 31 words instead of once per word. */
#if defined(__GNUC__) && defined(__POPCNT__)
#define PARTIALS 0xFFFFFFFFu
ALBSNN_INLINE uint64_t partial(uint64_t x) { return (uint64_t)__builtin_popcountll(x); }
ALBSNN_INLINE uint32_t total(uint64_t sum) { return (uint32_t)sum; }
#elif UINTPTR_MAX > 0xFFFFFFFFu
#define PARTIALS 31u
ALBSNN_INLINE uint64_t partial(uint64_t x)
{
    x = x - ((x >> 1) & UINT64_C(0x5555555555555555));
    x = (x & UINT64_C(0x3333333333333333)) + ((x >> 2) & UINT64_C(0x3333333333333333));
    return (x + (x >> 4)) & UINT64_C(0x0F0F0F0F0F0F0F0F);
}
ALBSNN_INLINE uint32_t total(uint64_t sum)
{
    sum = (sum & UINT64_C(0x00FF00FF00FF00FF)) + ((sum >> 8) & UINT64_C(0x00FF00FF00FF00FF));
    sum += sum >> 16;
    sum += sum >> 32;
    return (uint32_t)sum & 0xFFFFu;
}
#else /* a 32-bit core: the same on the two halves, so that no carry runs between them */
#define PARTIALS 31u
ALBSNN_INLINE uint32_t byte_counts32(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (x + (x >> 4)) & 0x0F0F0F0Fu;
}
ALBSNN_INLINE uint32_t byte_sum32(uint32_t x)
{
    x = (x & 0x00FF00FFu) + ((x >> 8) & 0x00FF00FFu);
    return (x + (x >> 16)) & 0xFFFFu;
}
ALBSNN_INLINE uint64_t partial(uint64_t x)
{
    return ((uint64_t)byte_counts32((uint32_t)(x >> 32)) << 32) | byte_counts32((uint32_t)x);
}
ALBSNN_INLINE uint32_t total(uint64_t sum) { return byte_sum32((uint32_t)(sum >> 32)) + byte_sum32((uint32_t)sum); }
#endif

ALBSNN_INLINE uint32_t popcount64(uint64_t x) { return total(partial(x)); }

/* n (1..32) packed weight bits from bit `start` on, left-aligned in a word, the rest zero. */
static uint32_t weight_bits32(const uint8_t *bits, uint32_t start, uint32_t n)
{
    const uint8_t *p = bits + (start >> 3);
    const uint32_t skip = start & 7u, bytes = (skip + n + 7u) >> 3;
    uint64_t v = 0u;
    uint32_t i;
    for (i = 0; i < bytes; ++i) {
        v = (v << 8) | p[i];
    }
    v <<= 64u - 8u * bytes + skip;
    return n == 32u ? (uint32_t)(v >> 32) : (uint32_t)(v >> 32) & ~(0xFFFFFFFFu >> n);
}

/* n (1..64) packed weight bits from bit `start` on, left-aligned, the rest zero. */
static uint64_t weight_bits64(const uint8_t *bits, uint32_t start, uint32_t n)
{
    if ((start & 7u) == 0u && n == 64u) {
        const uint8_t *p = bits + (start >> 3);
        return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) | ((uint64_t)p[3] << 32)
             | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) | ((uint64_t)p[6] << 8) | (uint64_t)p[7];
    }
    if (n <= 32u) {
        return (uint64_t)weight_bits32(bits, start, n) << 32;
    }
    return ((uint64_t)weight_bits32(bits, start, 32u) << 32) | weight_bits32(bits, start + 32u, n - 32u);
}

/* n (1..32) bits of a plane from element `start` on, right-aligned. */
ALBSNN_INLINE uint32_t plane_bits(const uint32_t *plane, uint32_t start, uint32_t n)
{
    const uint32_t word = start >> 5, skip = start & 31u;
    uint64_t v = (uint64_t)plane[word] << 32;
    if (skip + n > 32u) {
        v |= plane[word + 1u];
    }
    return (uint32_t)((v << skip) >> (64u - n));
}

/* n (1..64) bits of a plane from element `start` on, left-aligned, the rest zero. */
ALBSNN_INLINE uint64_t plane_bits64(const uint32_t *plane, uint32_t start, uint32_t n)
{
    if (n <= 32u) {
        return (uint64_t)plane_bits(plane, start, n) << (64u - n);
    }
    return ((uint64_t)plane_bits(plane, start, 32u) << 32) | ((uint64_t)plane_bits(plane, start + 32u, n - 32u) << (64u - n));
}

/* Receptive fields are stored word-major: word i of output ox's field is field[i * outputs + ox],
 * so that one weight word meets the same word of every output's field in a contiguous run. */
typedef struct {
    uint64_t *dst;
    uint32_t step;     /* words between consecutive words of one field */
    uint64_t pending;  /* the last `count` (< 64) bits written, not yet a full word */
    uint32_t count;
} bit_writer;

static void put_word(bit_writer *w, uint64_t word)
{
    *w->dst = word;
    w->dst += w->step;
}

/* Append n (0..32) right-aligned bits. */
static void put_bits(bit_writer *w, uint32_t bits, uint32_t n)
{
    const uint32_t room = 64u - w->count;
    if (n < room) {
        w->pending = (w->pending << n) | bits;
        w->count += n;
    } else {
        const uint32_t rest = n - room;  /* bits left over for the next word, < 32 */
        put_word(w, (w->pending << room) | (bits >> rest));
        w->pending = bits & ((1u << rest) - 1u);
        w->count = rest;
    }
}

static void put_zeros(bit_writer *w, uint32_t n)
{
    for (; n > 32u; n -= 32u) {
        put_bits(w, 0u, 32u);
    }
    put_bits(w, 0u, n);
}

static void put_plane_bits(bit_writer *w, const uint32_t *plane, uint32_t start, uint32_t n)
{
    for (; n > 32u; n -= 32u, start += 32u) {
        put_bits(w, plane_bits(plane, start, 32u), 32u);
    }
    if (n > 0u) {
        put_bits(w, plane_bits(plane, start, n), n);
    }
}

/* The receptive field of output (oy, ox) in group g, bits in (c, ky, kx) order (the weights' order),
 * element by element: the path for input rows wider than a word. */
static void gather_patch(const albsnn_conv *p, const uint32_t *plane, uint32_t g, uint32_t oy, uint32_t ox, uint64_t *field, uint32_t words)
{
    const albsnn_tensor *in = &p->in;
    const uint32_t k = p->kernel, cin = in->c / p->groups;
    const int32_t iy0 = (int32_t)(oy * p->stride) - (int32_t)p->padding;
    const int32_t ix0 = (int32_t)(ox * p->stride) - (int32_t)p->padding;
    /* kx in [lo, hi) falls inside the row */
    const int32_t lo = ix0 < 0 ? -ix0 : 0;
    const int32_t hi = ix0 + (int32_t)k > (int32_t)in->w ? (int32_t)in->w - ix0 : (int32_t)k;
    uint64_t *const end = field + (size_t)words * p->out.w;
    bit_writer w;
    uint32_t c, ky;
    w.dst = field;
    w.step = p->out.w;
    w.pending = 0u;
    w.count = 0u;
    for (c = g * cin; c < (g + 1u) * cin; ++c) {
        for (ky = 0; ky < k; ++ky) {
            const int32_t iy = iy0 + (int32_t)ky;
            if (iy < 0 || iy >= (int32_t)in->h || hi <= lo) {
                put_zeros(&w, k);
                continue;
            }
            put_zeros(&w, (uint32_t)lo);
            put_plane_bits(&w, plane, (c * in->h + (uint32_t)iy) * in->w + (uint32_t)(ix0 + lo), (uint32_t)(hi - lo));
            put_zeros(&w, k - (uint32_t)hi);
        }
    }
    if (w.count > 0u) {
        put_word(&w, w.pending << (64u - w.count));
    }
    while (w.dst < end) {
        put_word(&w, 0u);
    }
}

/* A linear layer's receptive field is its whole input plane: copy it into 64-bit words. */
static void copy_plane(const uint32_t *plane, uint32_t plane_words32, uint64_t *field, uint32_t words)
{
    uint32_t i;
    for (i = 0; i < words; ++i) {
        const uint32_t lo = 2u * i + 1u < plane_words32 ? plane[2u * i + 1u] : 0u;
        field[i] = ((uint64_t)plane[2u * i] << 32) | lo;
    }
}

/* The receptive fields of every output of row oy (group g, one plane), word-major.
 * A padded input row of at most 64 bits is read once per (c, ky) and each output takes its k taps
 * with a shift and a mask; wider rows go element by element through gather_patch. */
static void gather_row(const albsnn_conv *p, const uint32_t *plane, uint32_t g, uint32_t oy, uint64_t *fields, uint32_t words)
{
    const albsnn_tensor *in = &p->in;
    const uint32_t k = p->kernel, s = p->stride, pad = p->padding, wo = p->out.w, cin = in->c / p->groups;
    const uint64_t top = k <= 64u ? ~(uint64_t)0 << (64u - k) : 0u;  /* the first k bits of a word (k <= 64 here) */
    uint32_t ox, c, ky, i;
    if (in->w + 2u * pad > 64u) {
        for (ox = 0; ox < wo; ++ox) {
            gather_patch(p, plane, g, oy, ox, fields + ox, words);
        }
        return;
    }
    for (i = 0; i < words * wo; ++i) {
        fields[i] = 0u;
    }
    for (c = 0; c < cin; ++c) {
        for (ky = 0; ky < k; ++ky) {
            const int32_t iy = (int32_t)(oy * s + ky) - (int32_t)pad;
            const uint32_t at = (c * k + ky) * k, bit = at & 63u;
            uint64_t *word = fields + (size_t)(at >> 6) * wo;
            uint64_t row;
            if (iy < 0 || iy >= (int32_t)in->h) {
                continue;  /* zero padding: the fields are zero there already */
            }
            /* the padded row, left-aligned: column j of the padded row is bit 63 - j */
            row = plane_bits64(plane, ((g * cin + c) * in->h + (uint32_t)iy) * in->w, in->w) >> pad;
            /* output ox's taps are the k bits from bit ox * s on; they go to bits [bit, bit + k) of its field */
            if (bit + k <= 64u) {
                const uint64_t mask = top >> bit;
                for (ox = 0; ox < wo; ++ox) {
                    word[ox] |= ((row << (ox * s)) >> bit) & mask;
                }
            } else {  /* the taps straddle two words */
                const uint64_t mask0 = ~(uint64_t)0 >> bit, mask1 = top << (64u - bit);
                for (ox = 0; ox < wo; ++ox) {
                    const uint64_t r = row << (ox * s);
                    word[ox] |= (r >> bit) & mask0;
                    word[wo + ox] |= (r << (64u - bit)) & mask1;
                }
            }
        }
    }
}

/* agree[ox] = popcount(w & field ox) over `words` words for the n word-major fields;
 * sums: n uint64 of scratch. */
static void popcount_dots(const uint64_t *w, const uint64_t *fields, uint32_t words, uint32_t n, int32_t *agree, uint64_t *sums)
{
    uint32_t i, ox, first;
    for (ox = 0; ox < n; ++ox) {
        agree[ox] = 0u;
    }
    for (first = 0; first < words; first += PARTIALS) {
        const uint32_t last = words - first < PARTIALS ? words : first + PARTIALS;
        for (ox = 0; ox < n; ++ox) {
            sums[ox] = 0u;
        }
        for (i = first; i < last; ++i) {
            const uint64_t wi = w[i];
            const uint64_t *word = fields + (size_t)i * n;
            for (ox = 0; ox < n; ++ox) {
                sums[ox] += partial(wi & word[ox]);
            }
        }
        for (ox = 0; ox < n; ++ox) {
            agree[ox] += (int32_t)total(sums[ox]);
        }
    }
}

/* Scratch of albsnn_conv_bits, with words = ceil(fan-in / 64) and fields = out.w * in.steps * in.planes
 * receptive fields per output row. uint64_t: a weight row (words), one partial sum per output (out.w),
 * the receptive fields (words * fields). int32_t: their popcounts (fields), popcount(w & field) per
 * output (out.w) and the integer sums per step and output (out.w * in.steps). */
static size_t bits_scratch_words(const albsnn_conv *p)
{
    const size_t words = ALBSNN_WORDS64((size_t)(p->in.c / p->groups) * p->kernel * p->kernel);
    return words * (1u + (size_t)p->out.w * p->in.steps * p->in.planes) + p->out.w;
}

static size_t bits_scratch_counts(const albsnn_conv *p)
{
    return (size_t)p->out.w * p->in.steps * p->in.planes + (size_t)p->out.w * (1u + p->in.steps);
}

size_t albsnn_conv_bits_scratch_words(const albsnn_conv *p)
{
    return p == NULL || conv_bits_check(p) != ALBSNN_OK ? 0u : bits_scratch_words(p);
}

size_t albsnn_conv_bits_scratch_counts(const albsnn_conv *p)
{
    return p == NULL || conv_bits_check(p) != ALBSNN_OK ? 0u : bits_scratch_counts(p);
}

/* Binarized weights over bit planes, one output row at a time (the row's receptive fields first). */
static void conv_bits_run(const albsnn_conv *p, const uint32_t *x, void *y, uint64_t *scratch, int32_t *counts)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t k = p->kernel, cout = out->c / p->groups, fan_in = in->c / p->groups * k * k;
    const uint32_t words = ALBSNN_WORDS64(fan_in), wo = out->w, hwo = out->h * wo, patches = in->steps * in->planes;
    const int direct = in->h == 1u && in->w == 1u && k == 1u && p->padding == 0u && p->groups == 1u;
    uint64_t *wrow = scratch, *sums = wrow + words, *patch = sums + wo;
    int32_t *ones = counts, *agree = ones + wo * patches, *acc = agree + wo;
    uint32_t oy, ox, g, j, col, t, b, i, ts;
    if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    for (oy = 0; oy < out->h; ++oy) {
        for (g = 0; g < p->groups; ++g) {
            /* patch: [step][plane][word][ox]; ones: [step][plane][ox] */
            for (j = 0; j < patches; ++j) {
                const uint32_t *plane = x + (size_t)j * plane_words(in);
                uint64_t *fields = patch + (size_t)j * words * wo;
                if (direct) {
                    copy_plane(plane, plane_words(in), fields, words);
                } else {
                    gather_row(p, plane, g, oy, fields, words);
                }
                for (ox = 0; ox < wo; ++ox) {
                    ones[j * wo + ox] = 0u;
                }
                for (i = 0; i < words; ++i) {
                    for (ox = 0; ox < wo; ++ox) {
                        ones[j * wo + ox] += (int32_t)popcount64(fields[(size_t)i * wo + ox]);
                    }
                }
            }
            for (col = 0; col < cout; ++col) {
                const uint32_t co = g * cout + col;
                for (i = 0; i < words; ++i) {
                    const uint32_t n = fan_in - 64u * i < 64u ? fan_in - 64u * i : 64u;
                    wrow[i] = weight_bits64(p->bits, co * fan_in + 64u * i, n);
                }
                /* acc = sum over planes b of 2^b (2 popcount(w & x_b) - popcount(x_b)), per step and output */
                for (ts = 0; ts < in->steps; ++ts) {
                    for (ox = 0; ox < wo; ++ox) {
                        acc[ts * wo + ox] = 0;
                    }
                    for (b = 0; b < in->planes; ++b) {
                        const uint32_t slot = ts * in->planes + b;
                        popcount_dots(wrow, patch + (size_t)slot * words * wo, words, wo, agree, sums);
                        for (ox = 0; ox < wo; ++ox) {
                            acc[ts * wo + ox] += (2 * agree[ox] - ones[slot * wo + ox]) * (int32_t)(1u << b);
                        }
                    }
                }
                if (p->fires != NULL) {  /* one step: the neuron fires iff acc lies in [lo, hi] */
                    const int32_t lo = p->fires[2u * co], hi = p->fires[2u * co + 1u];
                    bit_run spikes;
                    spikes.plane = (uint32_t *)y;
                    spikes.start = co * hwo + oy * wo;
                    spikes.run = 0u;
                    spikes.count = 0u;
                    for (ox = 0; ox < wo; ++ox) {
                        const int spike = acc[ox] >= lo && acc[ox] <= hi;
#ifdef ALBSNN_TRACE
                        const float h = over_tau(p->lif, (float)acc[ox] * p->scale[co] + p->bias[co]) + p->lif->v_reset;
                        ALBSNN_TRACE_LIF(p->lif, 0u, co * hwo + oy * wo + ox, h, spike);
#endif
                        run_push(&spikes, (uint32_t)spike);
                    }
                    run_flush(&spikes);
                    continue;
                }
                for (ox = 0; ox < wo; ++ox) {
                    const uint32_t index = co * hwo + oy * wo + ox;
                    float v = 0.0f, pre = 0.0f;
                    for (t = 0; t < out->steps; ++t) {
                        if (t == 0u || in->steps > 1u) {
                            pre = (float)acc[step_of(in, t) * wo + ox] * p->scale[co] + p->bias[co];
                        }
                        if (p->lif == NULL) {
                            ((float *)y)[(size_t)t * numel(out) + index] = pre;
                        } else if (lif_step(p->lif, t, index, &v, pre)) {
                            set_bit((uint32_t *)y + (size_t)t * plane_words(out), index);
                        }
                    }
                }
            }
        }
    }
}

/* x: bit planes; y: floats, or a spike map (uint32_t) with neurons; words and counts: the scratch
 * albsnn_conv_bits_scratch_words and _counts size, n_words and n_counts elements long. */
int albsnn_conv_bits(const albsnn_conv *p, const uint32_t *x, void *y, uint64_t *words, size_t n_words, int32_t *counts,
                     size_t n_counts)
{
    int status;
    if (p == NULL || x == NULL || y == NULL || words == NULL || counts == NULL) {
        return ALBSNN_ERR_NULL;
    }
    status = conv_bits_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (n_words < bits_scratch_words(p) || n_counts < bits_scratch_counts(p)) {
        return ALBSNN_ERR_SCRATCH;
    }
    conv_bits_run(p, x, y, words, counts);
    return ALBSNN_OK;
}

/* -- element-wise layers, pooling and the head --------------------------------------------------- */

/* A batch norm that no conv or linear layer precedes: y = x * scale + bias per channel (y may be x). */
int albsnn_affine(const albsnn_tensor *in, const void *x, const float *scale, const float *bias, float *y)
{
    uint32_t hw, t, c, i;
    if (in == NULL || x == NULL || scale == NULL || bias == NULL || y == NULL) {
        return ALBSNN_ERR_NULL;
    }
    if (!tensor_ok(in)) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    hw = in->h * in->w;
    for (t = 0; t < in->steps; ++t) {
        for (c = 0; c < in->c; ++c) {
            for (i = c * hw; i < (c + 1u) * hw; ++i) {
                y[(size_t)t * numel(in) + i] = value_at(in, x, t, i) * scale[c] + bias[c];
            }
        }
    }
    return ALBSNN_OK;
}

/* A neuron layer that does not follow a conv or linear layer. */
int albsnn_lif_layer(const albsnn_tensor *in, const void *x, const albsnn_lif *lif, const albsnn_tensor *out, uint32_t *y)
{
    uint32_t i, t;
    if (in == NULL || x == NULL || lif == NULL || out == NULL || y == NULL) {
        return ALBSNN_ERR_NULL;
    }
    if (!tensor_ok(in) || !tensor_ok(out) || !lif_ok(lif) || numel(in) != numel(out) || out->planes != 1u
        || out->divisor != 1u || (in->steps != out->steps && in->steps != 1u)) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    clear_words(y, tensor_words(out));
    for (i = 0; i < numel(out); ++i) {
        float v = 0.0f;
        for (t = 0; t < out->steps; ++t) {
            if (lif_step(lif, t, i, &v, value_at(in, x, t, i))) {
                set_bit(y + (size_t)t * plane_words(out), i);
            }
        }
    }
    return ALBSNN_OK;
}

/* Pooling over a spike map whose rows fit a word: each window's spikes counted with popcounts. */
static void pool_spikes(const albsnn_pool *p, const uint32_t *x, uint32_t *y)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t k = p->kernel, s = p->stride;
    uint32_t counts[64];
    uint32_t t, c, oy, ox, ky, b;
    for (t = 0; t < out->steps; ++t) {
        const uint32_t *plane = plane_of(in, x, t, 0u);
        for (c = 0; c < out->c; ++c) {
            for (oy = 0; oy < out->h; ++oy) {
                for (ox = 0; ox < out->w; ++ox) {
                    counts[ox] = 0u;
                }
                for (ky = 0; ky < k; ++ky) {
                    const uint64_t row = plane_bits64(plane, (c * in->h + oy * s + ky) * in->w, in->w);
                    for (ox = 0; ox < out->w; ++ox) {
                        counts[ox] += popcount64((row << (ox * s)) >> (64u - k));
                    }
                }
                for (b = 0; b < out->planes; ++b) {
                    bit_run bits;
                    bits.plane = y + ((size_t)t * out->planes + b) * plane_words(out);
                    bits.start = (c * out->h + oy) * out->w;
                    bits.run = 0u;
                    bits.count = 0u;
                    for (ox = 0; ox < out->w; ++ox) {
                        /* the max of spikes is whether any spiked */
                        const uint32_t count = p->is_max ? (counts[ox] > 0u) : counts[ox];
                        run_push(&bits, (count >> b) & 1u);
                    }
                    run_flush(&bits);
                }
            }
        }
    }
}

/* Average or max pooling without padding; over bit planes the average keeps the window's count. */
static void pool_run(const albsnn_pool *p, const void *x, void *y)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t k = p->kernel, s = p->stride;
    uint32_t t, c, oy, ox, ky, kx;
    if (out->planes > 0u) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    if (in->planes == 1u && in->w <= 64u && out->w <= 64u) {
        pool_spikes(p, (const uint32_t *)x, (uint32_t *)y);
        return;
    }
    for (t = 0; t < out->steps; ++t) {
        for (c = 0; c < out->c; ++c) {
            for (oy = 0; oy < out->h; ++oy) {
                for (ox = 0; ox < out->w; ++ox) {
                    const uint32_t first = (c * in->h + oy * s) * in->w + ox * s, index = (c * out->h + oy) * out->w + ox;
                    float sum = 0.0f, top = value_at(in, x, t, first);
                    uint32_t count = 0u;
                    for (ky = 0; ky < k; ++ky) {
                        for (kx = 0; kx < k; ++kx) {
                            const uint32_t i = first + ky * in->w + kx;
                            if (in->planes > 0u) {
                                const uint32_t n = count_at(in, (const uint32_t *)x, t, i);
                                count = p->is_max ? (n > count ? n : count) : count + n;
                            } else {
                                const float v = value_at(in, x, t, i);
                                sum += v;
                                top = v > top ? v : top;
                            }
                        }
                    }
                    if (in->planes > 0u) {
                        write_count(out, (uint32_t *)y, t, index, count);
                    } else {
                        ((float *)y)[(size_t)t * numel(out) + index] = p->is_max ? top : sum / (float)(k * k);
                    }
                }
            }
        }
    }
}

/* x and y: floats, or bit planes (uint32_t) where the descriptor says so. */
int albsnn_pool2d(const albsnn_pool *p, const void *x, void *y)
{
    const albsnn_tensor *in, *out;
    if (p == NULL || x == NULL || y == NULL) {
        return ALBSNN_ERR_NULL;
    }
    in = &p->in;
    out = &p->out;
    if (!tensor_ok(in) || !tensor_ok(out) || out->c != in->c || out->steps != in->steps
        || (in->planes == 0u) != (out->planes == 0u) || !window_ok(in->h, p->kernel, p->stride, 0u, out->h)
        || !window_ok(in->w, p->kernel, p->stride, 0u, out->w)) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    pool_run(p, x, y);
    return ALBSNN_OK;
}

/* Global average pooling: [steps][c][h][w] -> [steps][c] floats. */
int albsnn_gap(const albsnn_tensor *in, const void *x, float *y)
{
    uint32_t hw, t, c, i;
    if (in == NULL || x == NULL || y == NULL) {
        return ALBSNN_ERR_NULL;
    }
    if (!tensor_ok(in)) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    hw = in->h * in->w;
    for (t = 0; t < in->steps; ++t) {
        for (c = 0; c < in->c; ++c) {
            float sum = 0.0f;
            uint32_t count = 0u;
            for (i = c * hw; i < (c + 1u) * hw; ++i) {
                if (in->planes > 0u) {
                    count += count_at(in, (const uint32_t *)x, t, i);
                } else {
                    sum += value_at(in, x, t, i);
                }
            }
            if (in->planes > 0u) {
                sum = in->divisor == 1u ? (float)count : (float)count / (float)in->divisor;
            }
            y[(size_t)t * in->c + c] = sum / (float)hw;
        }
    }
    return ALBSNN_OK;
}

/* The logits: the time-mean of the last layer (a layer before any neuron is the same at every step). */
int albsnn_step_mean(const albsnn_tensor *in, const void *x, float *logits)
{
    uint32_t c, t;
    if (in == NULL || x == NULL || logits == NULL) {
        return ALBSNN_ERR_NULL;
    }
    if (!tensor_ok(in)) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    for (c = 0; c < numel(in); ++c) {
        float sum = value_at(in, x, 0u, c);
        for (t = 1; t < in->steps; ++t) {
            sum += value_at(in, x, t, c);
        }
        logits[c] = in->steps == 1u ? sum : sum / (float)in->steps;
    }
    return ALBSNN_OK;
}
