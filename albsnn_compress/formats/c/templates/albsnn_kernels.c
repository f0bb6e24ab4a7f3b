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
 * (the float expression is monotone in acc, so the range gives exactly its spikes); after a float
 * sum (float weights, or the first layer) into a range of floats, given as order keys.
 *
 * Layers over spikes have event-driven kernels too (albsnn_conv_bit_events, albsnn_conv_events):
 * spike maps are mostly zeros, and these do work only where an input is not zero, with the same
 * results as the dense kernels bit for bit (see "event-driven layers" below). The exporter picks
 * one per layer.
 *
 * Every public kernel checks its arguments first (NULL pointers, scratch sizes, descriptors whose
 * shapes do not follow from each other) and returns an ALBSNN_ERR_* status without writing
 * anything; the work itself is done by a static function that trusts them. Each buffer is used
 * through a pointer of the type it holds (albsnn_kernels.h): no pointer conversion here changes
 * the type an object is read or written as (a float's bits are read through a union, key_float).
 *
 * Speed on a host: the event kernels' cost is mostly control flow (a loop over the set bits of a word
 * has a data-dependent length, and its exit is a mispredicted branch), so the one-step paths list a
 * word's first events without a branch, keep an output's sums in registers up to its decision and
 * write only the spikes; the compiler vectorizes the float sums and comparisons (no intrinsics).
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

/* One channel's neuron constants: the layer's scalars, or the channel's entries of its per-channel arrays. The
 * membrane update below reads them from here only, so a per-channel setting changes nothing else. */
typedef struct {
    float tau, inv_tau, v_threshold;
} lif_channel;

ALBSNN_INLINE lif_channel channel_of(const albsnn_lif *n, uint32_t c)
{
    lif_channel k;
    k.tau = n->taus != NULL ? n->taus[c] : n->tau;
    k.inv_tau = n->taus != NULL ? n->inv_taus[c] : n->inv_tau;
    k.v_threshold = n->thresholds != NULL ? n->thresholds[c] : n->v_threshold;
    return k;
}

/* x / tau; a power-of-two tau multiplies by its exact reciprocal instead (the same float, faster). */
ALBSNN_INLINE float over_tau(const lif_channel *k, float x) { return k->inv_tau != 0.0f ? x * k->inv_tau : x / k->tau; }

/* The charged membrane of step 0, from V = v_reset: X / tau + v_reset, or X + v_reset without input decay
 * (PyTorch's shortcut, the same value as lif_charge from v_reset). */
ALBSNN_INLINE float lif_rest(const albsnn_lif *n, const lif_channel *k, float x)
{
    return (n->charge == ALBSNN_CHARGE_DECAY_INPUT ? over_tau(k, x) : x) + n->v_reset;
}

/* The charged membrane from the membrane v and the input x, one case per charge rule (CHARGE_C in
 * albsnn_compress/formats/c/plan.py names them), in PyTorch's order of operations. */
ALBSNN_INLINE float lif_charge(const albsnn_lif *n, const lif_channel *k, float v, float x)
{
    switch (n->charge) {
    case ALBSNN_CHARGE_DECAY_INPUT: /* V + (X - (V - v_reset)) / tau */
        return v + over_tau(k, x - (v - n->v_reset));
    case ALBSNN_CHARGE_DECAY: /* V - (V - v_reset) / tau + X */
        return v - over_tau(k, v - n->v_reset) + x;
    case ALBSNN_CHARGE_IF: /* V + X */
        return v + x;
    default:
        break;
    }
    return v;
}

/* The spike decision: h >= v_threshold, or h > v_threshold for a strict threshold. */
ALBSNN_INLINE int lif_fires(const albsnn_lif *n, const lif_channel *k, float h)
{
    return n->strict ? h > k->v_threshold : h >= k->v_threshold;
}

/* The membrane after a spike decision, one case per reset rule of the spiking core (RESET_C in
 * albsnn_compress/formats/c/plan.py names them; a descriptor with another rule is refused). */
ALBSNN_INLINE float lif_reset(const albsnn_lif *n, const lif_channel *k, float h, int spike)
{
    switch (n->reset) {
    case ALBSNN_RESET_HARD: /* H (1 - S) + v_reset S */
        return spike ? n->v_reset : h;
    case ALBSNN_RESET_SOFT: /* H - v_th S */
        return spike ? h - k->v_threshold : h;
    case ALBSNN_RESET_SOFT_DEFERRED: /* H: lif_step subtracts v_th S from the next step's charged membrane */
    case ALBSNN_RESET_NONE:          /* H */
        return h;
    default:
        break;
    }
    return h;
}

/* One neuron of channel c, one step: charge (from *v, or from v_reset at step 0), fire, reset *v; returns the
 * spike. A deferred reset keeps V_t = H_t, so the previous step's spike is lif_fires(*v), recomputed exactly. */
ALBSNN_INLINE int lif_step(const albsnn_lif *n, uint32_t c, uint32_t step, uint32_t index, float *v, float x)
{
    const lif_channel k = channel_of(n, c);
    float h = step == 0u ? lif_rest(n, &k, x) : lif_charge(n, &k, *v, x);
    int spike;
    if (step > 0u && n->reset == ALBSNN_RESET_SOFT_DEFERRED && lif_fires(n, &k, *v)) {
        h = h - k.v_threshold; /* H_t - v_th S_{t-1} */
    }
    spike = lif_fires(n, &k, h);
    ALBSNN_TRACE_LIF(n, step, index, h, spike);
    *v = lif_reset(n, &k, h, spike);
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

/* Leading zeros of a non-zero x: the position of its first set bit, most significant first. */
ALBSNN_INLINE uint32_t lead64(uint64_t x)
{
#if defined(__GNUC__)
    return (uint32_t)__builtin_clzll((unsigned long long)x);
#else
    uint32_t n = 0u;
    if ((x >> 32) == 0u) {
        n += 32u;
        x <<= 32;
    }
    if ((x >> 48) == 0u) {
        n += 16u;
        x <<= 16;
    }
    if ((x >> 56) == 0u) {
        n += 8u;
        x <<= 8;
    }
    if ((x >> 60) == 0u) {
        n += 4u;
        x <<= 4;
    }
    if ((x >> 62) == 0u) {
        n += 2u;
        x <<= 2;
    }
    return (x >> 63) == 0u ? n + 1u : n;
#endif
}

/* Trailing zeros of a non-zero x: the position of its lowest set bit, least significant first. */
ALBSNN_INLINE uint32_t trail64(uint64_t x)
{
#if defined(__GNUC__)
    return (uint32_t)__builtin_ctzll((unsigned long long)x);
#else
    return 63u - lead64(x & (~x + 1u));
#endif
}

/* The number of bits of n: 0 for 0, else 1 + floor(log2 n). */
ALBSNN_INLINE uint32_t bit_length(uint32_t n) { return n == 0u ? 0u : 64u - lead64(n); }

/* -- pixel-major rows (albsnn_kernels.h): the layout the event-driven kernels read ------------------------- */

/* uint64_t words of one row of one plane: the padded pixels' channels, and one spare word (runs are read two
 * words at a time). */
ALBSNN_INLINE uint32_t pm_row_words(const albsnn_tensor *t) { return ALBSNN_WORDS64((t->w + 2u * t->pad) * t->c) + 1u; }

/* uint64_t words of a pixel-major tensor. */
static size_t pm_words(const albsnn_tensor *t) { return (size_t)t->steps * t->h * t->planes * pm_row_words(t); }

/* Row iy of plane b at one step of a pixel-major tensor. */
ALBSNN_INLINE uint64_t *pm_row(const albsnn_tensor *t, uint64_t *x, uint32_t step, uint32_t iy, uint32_t b)
{
    return x + (((size_t)step * t->h + iy) * t->planes + b) * pm_row_words(t);
}

/* ORs n (1..64) bits, least significant first and zero above n, into a row from bit `at` on. */
ALBSNN_INLINE void or_run(uint64_t *row, uint32_t at, uint64_t bits, uint32_t n)
{
    const uint32_t shift = at % 64u;
    uint64_t *w = row + at / 64u;
    w[0] |= bits << shift;
    if (shift + n > 64u) {
        w[1] |= bits >> (64u - shift);
    }
}

static void clear_rows(uint64_t *y, size_t count)
{
    size_t i;
    for (i = 0; i < count; ++i) {
        y[i] = 0u;
    }
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

/* Every size at least 1, at most 31 planes, a divisor (floats have divisor 1); pixel-major rows of bit planes
 * only, and a padding only for them. */
static int tensor_ok(const albsnn_tensor *t)
{
    return t->c > 0u && t->h > 0u && t->w > 0u && t->steps > 0u && t->planes <= 31u && t->divisor > 0u
        && t->pixel_major <= (t->planes > 0u ? 1u : 0u) && t->pad <= (t->pixel_major ? 0xFFFFu : 0u);
}

/* tensor_ok and channel-major: what the kernels that do not read or write pixel-major rows take. */
static int planar_ok(const albsnn_tensor *t) { return tensor_ok(t) && t->pixel_major == 0u; }

/* A neuron layer's constants name a charge and a reset rule the kernels implement, and give per-channel taus
 * with their reciprocals. */
static int lif_ok(const albsnn_lif *n)
{
    return n->charge < ALBSNN_CHARGE_RULES && n->reset < ALBSNN_RESET_RULES && n->strict <= 1u
        && (n->taus == NULL) == (n->inv_taus == NULL);
}

/* Output extent `out` of a window of k at stride s over n inputs padded by pad on both sides. */
static int window_ok(uint32_t n, uint32_t k, uint32_t s, uint32_t pad, uint32_t out)
{
    const uint64_t padded = (uint64_t)n + 2u * (uint64_t)pad;
    return k > 0u && s > 0u && padded >= k && (padded - k) / s + 1u == out;
}

/* What every conv or linear descriptor must satisfy, whatever holds its weights (every kernel). */
static int conv_shape_check(const albsnn_conv *p)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    if (p->scale == NULL || p->bias == NULL) {
        return ALBSNN_ERR_NULL;
    }
    if (!tensor_ok(in) || !tensor_ok(out) || p->groups == 0u || in->c % p->groups != 0u || out->c % p->groups != 0u
        || !window_ok(in->h, p->kernel, p->stride, p->padding, out->h)
        || !window_ok(in->w, p->kernel, p->stride, p->padding, out->w)
        || (in->steps != out->steps && in->steps != 1u)
        || (p->lif == NULL ? out->planes != 0u : out->planes != 1u || out->divisor != 1u || !lif_ok(p->lif))
        || (p->fires != NULL && (p->lif == NULL || out->steps != 1u))
        || (out->pixel_major && p->fires == NULL) /* pixel-major spikes come from the one-step paths */
        || (in->pixel_major && (p->groups != 1u || in->pad != p->padding))) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    return ALBSNN_OK;
}

/* A descriptor with sign bits or float weights (the float and 1-bit kernels). */
static int conv_check(const albsnn_conv *p)
{
    return p->bits == NULL && p->weight == NULL ? ALBSNN_ERR_NULL : conv_shape_check(p);
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

/* y = y * scale + bias in place, n values: one channel's row (vectorizable: no pointer can alias). */
static void row_affine(float *ALBSNN_RESTRICT y, float scale, float bias, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; ++i) {
        y[i] = y[i] * scale + bias;
    }
}

/* y[c] = y[c] * scale[c] + bias[c] in place, n channels of one output. */
static void channels_affine(float *ALBSNN_RESTRICT y, const float *ALBSNN_RESTRICT scale, const float *ALBSNN_RESTRICT bias,
                            uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; ++i) {
        y[i] = y[i] * scale[i] + bias[i];
    }
}

/* The charged membranes of step 0 in place, h = lif_rest(x) with channel constants k, n values (vectorizable). */
static void row_rest(const albsnn_lif *lif, const lif_channel *k, float *ALBSNN_RESTRICT x, uint32_t n)
{
    const float inv_tau = k->inv_tau, tau = k->tau, v_reset = lif->v_reset;
    uint32_t i;
    if (lif->charge != ALBSNN_CHARGE_DECAY_INPUT) {
        for (i = 0; i < n; ++i) {
            x[i] = x[i] + v_reset;
        }
    } else if (inv_tau != 0.0f) {
        for (i = 0; i < n; ++i) {
            x[i] = x[i] * inv_tau + v_reset;
        }
    } else {
        for (i = 0; i < n; ++i) {
            x[i] = x[i] / tau + v_reset;
        }
    }
}

/* The charged membranes of step 0 in place: `channels` rows of n values, channel c0 first; one long row when
 * every channel has the same tau. */
static void rows_rest(const albsnn_lif *lif, uint32_t c0, uint32_t channels, float *x, uint32_t n)
{
    uint32_t c;
    if (lif->taus == NULL) {
        const lif_channel k = channel_of(lif, c0);
        row_rest(lif, &k, x, channels * n);
        return;
    }
    for (c = 0; c < channels; ++c) {
        const lif_channel k = channel_of(lif, c0 + c);
        row_rest(lif, &k, x + (size_t)c * n, n);
    }
}

/* Writes the spikes (lif_fires) of n charged membranes of channel c into a cleared plane from element `at`
 * on, 32 at a time (no branch per neuron). */
static void row_spikes(const albsnn_lif *lif, uint32_t c, const float *h, uint32_t n, uint32_t *plane, uint32_t at)
{
    const lif_channel k = channel_of(lif, c);
    uint32_t i0, i;
    for (i0 = 0; i0 < n; i0 += 32u) {
        const uint32_t count = n - i0 < 32u ? n - i0 : 32u;
        uint32_t bits = 0u;
        for (i = 0; i < count; ++i) {
            const int spike = lif_fires(lif, &k, h[i0 + i]);
            ALBSNN_TRACE_LIF(lif, 0u, at + i0 + i, h[i0 + i], spike);
            bits = (bits << 1) | (uint32_t)spike;
        }
        if (bits != 0u) {
            or_bits(plane, at + i0, bits, count);
        }
    }
}

/* With one time step the exporter folds the affine and the neuron after a float sum into a range of the
 * sum's order keys (the chain is monotone in acc): fires[2co] <= key(acc) <= fires[2co+1], key(f) the bits
 * of f as a signed integer with the magnitude bits of a negative f flipped, so that keys order as the
 * floats do, -0 just below +0. key_float gives the float of a key, and the kernels compare the sums as
 * floats, lo <= acc <= hi: the same decisions, because -0 and +0 give the same spike (a range never
 * separates them) and a NaN fails both comparisons (as it fails the threshold). */
ALBSNN_INLINE float key_float(int32_t key)
{
    union {
        uint32_t u;
        float f;
    } v;
    v.u = (uint32_t)key;
    v.u ^= (0u - (v.u >> 31)) >> 1;
    return v.f;
}

#ifdef ALBSNN_TRACE
/* The charged membrane of a one-step neuron that a firing range decided, for the trace: acc through the
 * affine and the charge from rest, as the float path computes it. */
static float traced_rest(const albsnn_conv *p, uint32_t co, float acc)
{
    const lif_channel k = channel_of(p->lif, co);
    return lif_rest(p->lif, &k, acc * p->scale[co] + p->bias[co]);
}
#endif

/* 1 << (31 - i): element i of a run of 32 at bit 31 - i, as in a plane (a row's spikes without a variable shift). */
static const uint32_t run_bit[32] = {
    0x80000000u, 0x40000000u, 0x20000000u, 0x10000000u, 0x8000000u, 0x4000000u, 0x2000000u, 0x1000000u,
    0x800000u,   0x400000u,   0x200000u,   0x100000u,   0x80000u,   0x40000u,   0x20000u,   0x10000u,
    0x8000u,     0x4000u,     0x2000u,     0x1000u,     0x800u,     0x400u,     0x200u,     0x100u,
    0x80u,       0x40u,       0x20u,       0x10u,       0x8u,       0x4u,       0x2u,       0x1u};

/* Writes the spikes of an output row's float sums (acc[co][ox], n columns; channel co fires iff lo <= acc <= hi,
 * its firing range) into a cleared pixel-major row: 64 channels of 64 columns at a time, each column's channels
 * decided together (the comparisons vectorize across columns) and stored as one run. `at`: the row's first
 * element in a channel (for the trace). */
static void row_fire_pixels(const albsnn_conv *p, const float *acc, uint32_t n, uint64_t *row, uint32_t at)
{
    const uint32_t c = p->out.c, pad = p->out.pad;
    uint64_t pixels[64];
    uint32_t i0, i, co0, co;
#ifndef ALBSNN_TRACE
    (void)at;
#endif
    for (i0 = 0; i0 < n; i0 += 64u) {
        const uint32_t count = n - i0 < 64u ? n - i0 : 64u;
        for (co0 = 0; co0 < c; co0 += 64u) {
            const uint32_t width = c - co0 < 64u ? c - co0 : 64u;
            for (i = 0; i < count; ++i) {
                pixels[i] = 0u;
            }
            for (co = co0; co < co0 + width; ++co) {
                const float lo = key_float(p->fires[2u * co]), hi = key_float(p->fires[2u * co + 1u]);
                const float *sums = acc + (size_t)co * n + i0;
                for (i = 0; i < count; ++i) {
                    pixels[i] |= (uint64_t)((sums[i] >= lo) & (sums[i] <= hi)) << (co - co0);
                }
#ifdef ALBSNN_TRACE
                for (i = 0; i < count; ++i) {
                    ALBSNN_TRACE_LIF(p->lif, 0u, co * p->out.h * p->out.w + at + i0 + i, traced_rest(p, co, sums[i]),
                                     (int)((pixels[i] >> (co - co0)) & 1u));
                }
#endif
            }
            for (i = 0; i < count; ++i) {
                if (pixels[i] != 0u) {
                    or_run(row, (i0 + i + pad) * c + co0, pixels[i], width);
                }
            }
        }
    }
}

/* Writes the spikes of n float sums of channel co (fire iff lo <= acc <= hi, its firing range) into a
 * cleared plane from element `at` on, 32 at a time (the comparisons vectorize). */
static void row_fire_range(const albsnn_conv *p, uint32_t co, const float *acc, uint32_t n, uint32_t *plane, uint32_t at)
{
    const float lo = key_float(p->fires[2u * co]), hi = key_float(p->fires[2u * co + 1u]);
    uint32_t i0, i;
    for (i0 = 0; i0 < n; i0 += 32u) {
        const uint32_t count = n - i0 < 32u ? n - i0 : 32u;
        uint32_t bits = 0u;
        if (count == 32u) {
            for (i = 0; i < 32u; ++i) {
                bits |= (0u - (uint32_t)((acc[i0 + i] >= lo) & (acc[i0 + i] <= hi))) & run_bit[i];
            }
        } else {
            for (i = 0; i < count; ++i) {
                bits |= (0u - (uint32_t)((acc[i0 + i] >= lo) & (acc[i0 + i] <= hi))) & run_bit[i];
            }
        }
#ifdef ALBSNN_TRACE
        for (i = 0; i < count; ++i) {
            ALBSNN_TRACE_LIF(p->lif, 0u, at + i0 + i, traced_rest(p, co, acc[i0 + i]), (int)((bits >> (31u - i)) & 1u));
        }
#endif
        if (bits != 0u) {
            or_bits(plane, at + i0, bits >> (32u - count), count);
        }
    }
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
    const float *ALBSNN_RESTRICT r1 = row + 1, *ALBSNN_RESTRICT r2 = row + 2;
    size_t i; /* size_t: i + 1 cannot wrap, so the compiler loads contiguous vectors */
    for (i = 0; i < n; ++i) {
        float a = acc[i];
        a += w0 * row[i];
        a += w1 * r1[i];
        a += w2 * r2[i];
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

/* Code i of k-bit two's complement fields packed least significant first (albsnn_code_conv): its field f, sign
 * extended as (f ^ 2^(k-1)) - 2^(k-1) (no shift of a negative number, no conversion out of range). */
ALBSNN_INLINE int32_t code_at(const uint8_t *codes, uint32_t bits, size_t i)
{
    const size_t at = i * bits;
    const uint32_t half = 1u << (bits - 1u), field = ((uint32_t)codes[at >> 3] >> (at & 7u)) & (2u * half - 1u);
    return (int32_t)(field ^ half) - (int32_t)half;
}

/* acc += the k taps of one kernel row of codes (codes w0 to w0 + k - 1) times an input row, in kx order: the float
 * kernel's arithmetic with w = code (the scale multiplies the sums afterwards). */
static void row_codes(float *acc, const float *row, const albsnn_code_conv *c, uint32_t w0, uint32_t n, uint32_t stride)
{
    const uint32_t k = c->conv.kernel;
    uint32_t kx;
    if (k == 3u && stride == 1u) {
        float w[3];
        for (kx = 0; kx < 3u; ++kx) {
            w[kx] = (float)code_at(c->codes, c->code_bits, w0 + kx);
        }
        row_taps3(acc, row, w, n);
        return;
    }
    for (kx = 0; kx < k; ++kx) {
        row_axpy(acc, row + kx, (float)code_at(c->codes, c->code_bits, w0 + kx), n, stride);
    }
}

/* acc[co][ox] of output row oy at one step over bit planes: sum over (ky, kx, c), in that order, of
 * w * x, the order of albsnn_conv_events (which adds the same terms, skipping the zeros); with codes c (NULL:
 * the descriptor's weights) w is the code, and the sums are integers. */
static void conv_row_bits(const albsnn_conv *p, const albsnn_code_conv *c, const void *x, uint32_t step, uint32_t oy,
                          float *row, float *acc)
{
    const albsnn_tensor *in = &p->in;
    const uint32_t k = p->kernel, s = p->stride, pad = p->padding, wo = p->out.w;
    const uint32_t cin = in->c / p->groups, cout = p->out.c / p->groups;
    uint32_t g, cl, ky, col, kx;
    for (g = 0; g < p->groups; ++g) {
        for (ky = 0; ky < k; ++ky) {
            const int32_t iy = (int32_t)(oy * s + ky) - (int32_t)pad;
            if (iy < 0 || iy >= (int32_t)in->h) {
                continue; /* zero padding adds nothing */
            }
            for (kx = 0; kx < k; ++kx) {
                for (cl = 0; cl < cin; ++cl) {
                    load_row(in, x, step, g * cin + cl, (uint32_t)iy, row + pad);
                    for (col = 0; col < cout; ++col) {
                        const uint32_t co = g * cout + col, w0 = ((co * cin + cl) * k + ky) * k;
                        if (c != NULL) {
                            row_axpy(acc + co * wo, row + kx, (float)code_at(c->codes, c->code_bits, w0 + kx), wo, s);
                        } else if (p->bits != NULL) {
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

/* acc[co][ox] of output row oy at one step: sum over (c, ky, kx), in that order, of w * x; over bit
 * planes over (ky, kx, c) (conv_row_bits). With codes c, w is the code (NULL: the descriptor's weights). */
static void conv_row(const albsnn_conv *p, const albsnn_code_conv *c, const void *x, uint32_t step, uint32_t oy,
                     float *row, float *acc)
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
    if (in->planes > 0u) {
        conv_row_bits(p, c, x, step, oy, row, acc);
        return;
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
                    if (c != NULL) {
                        row_codes(acc + co * wo, row, c, w0, wo, s);
                        continue;
                    }
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

/* The dense float kernel reads channel-major maps (it may write pixel-major spikes: its one-step path). */
static int rows_check(const albsnn_conv *p)
{
    const int status = conv_check(p);
    return status != ALBSNN_OK ? status : p->in.pixel_major ? ALBSNN_ERR_DESCRIPTOR : ALBSNN_OK;
}

size_t albsnn_conv_rows_scratch(const albsnn_conv *p)
{
    return p == NULL || rows_check(p) != ALBSNN_OK ? 0u : rows_scratch(p);
}

/* The dense kernel's work, for the descriptor p and, for k-bit weights, its codes c (else NULL). */
static void conv_rows_run(const albsnn_conv *p, const albsnn_code_conv *c, const void *x, void *y, float *scratch)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, cw = out->c * wo;
    float *row = scratch, *acc = row + in->w + 2u * p->padding, *mem = acc + cw;  /* membranes: several steps only */
    float once = 0.0f;
    uint32_t oy, t, co, ox;
    if (out->pixel_major) {
        clear_rows((uint64_t *)y, pm_words(out));
    } else if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    for (oy = 0; oy < out->h; ++oy) {
        for (t = 0; t < out->steps; ++t) {
            if (p->fires != NULL) { /* one step: the sums' keys against the firing ranges */
                uint64_t *pixels = out->pixel_major ? pm_row(out, (uint64_t *)y, 0u, oy, 0u) : NULL;
                conv_row(p, c, x, 0u, oy, row, acc);
                if (pixels != NULL) { /* a pixel's channels side by side: decided together */
                    row_fire_pixels(p, acc, wo, pixels, oy * wo);
                    continue;
                }
                for (co = 0; co < out->c; ++co) {
                    row_fire_range(p, co, acc + co * wo, wo, (uint32_t *)y, co * hwo + oy * wo);
                }
                continue;
            }
            if (t == 0u || in->steps > 1u) {
                conv_row(p, c, x, step_of(in, t), oy, row, acc);
                for (co = 0; co < out->c; ++co) {
                    row_affine(acc + co * wo, p->scale[co], p->bias[co], wo);
                }
            }
            if (p->lif != NULL && out->steps == 1u) { /* one step: charge the row (vectorizable), then fire */
                rows_rest(p->lif, 0u, out->c, acc, wo);
                for (co = 0; co < out->c; ++co) {
                    row_spikes(p->lif, co, acc + co * wo, wo, (uint32_t *)y, co * hwo + oy * wo);
                }
                continue;
            }
            for (co = 0; co < out->c; ++co) {
                for (ox = 0; ox < wo; ++ox) {
                    const uint32_t i = co * hwo + oy * wo + ox;
                    if (p->lif == NULL) {
                        ((float *)y)[(size_t)t * numel(out) + i] = acc[co * wo + ox];
                    } else if (lif_step(p->lif, co, t, i, out->steps > 1u ? &mem[co * wo + ox] : &once, acc[co * wo + ox])) {
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
    status = rows_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (n_scratch < rows_scratch(p)) {
        return ALBSNN_ERR_SCRATCH;
    }
    conv_rows_run(p, NULL, x, y, scratch);
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

/* The popcount kernel reads and writes channel-major maps only. */
static int popcount_check(const albsnn_conv *p)
{
    const int status = conv_bits_check(p);
    return status != ALBSNN_OK ? status : p->in.pixel_major || p->out.pixel_major ? ALBSNN_ERR_DESCRIPTOR : ALBSNN_OK;
}

size_t albsnn_conv_bits_scratch_words(const albsnn_conv *p)
{
    return p == NULL || popcount_check(p) != ALBSNN_OK ? 0u : bits_scratch_words(p);
}

size_t albsnn_conv_bits_scratch_counts(const albsnn_conv *p)
{
    return p == NULL || popcount_check(p) != ALBSNN_OK ? 0u : bits_scratch_counts(p);
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
                        const lif_channel k = channel_of(p->lif, co);
                        const float h = lif_rest(p->lif, &k, (float)acc[ox] * p->scale[co] + p->bias[co]);
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
                        } else if (lif_step(p->lif, co, t, index, &v, pre)) {
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
    status = popcount_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (n_words < bits_scratch_words(p) || n_counts < bits_scratch_counts(p)) {
        return ALBSNN_ERR_SCRATCH;
    }
    conv_bits_run(p, x, y, words, counts);
    return ALBSNN_OK;
}

/* -- event-driven layers over bit planes: work in proportion to the spikes ----------------------- */

/* A layer over spikes needs its weights only where a spike arrived. These kernels read their input as
 * pixel-major bit rows (the channels of a pixel side by side): as it arrives when the layer before wrote
 * it so (one step, one group: albsnn_kernels.h), else gathered from the channel-major planes once. Then,
 * output by output, they walk the set bits of its receptive field: each is an event (kernel row ky,
 * column kx, input channel c, and its count), and only events cost work. With a firing range they write
 * pixel-major rows too (fire_pixels, events_spikes) where the exporter asks for them. */


/* Binarized weights over bit planes, event by event, 64 output channels per 64-bit word.
 *
 * The kernel first gathers its input into pixel-major bit rows, reading each bit plane once and
 * setting, for each of its events, per (step, group, input row, plane), bit (ix + padding) * C + c
 * for input column ix and channel c of the group (C channels). The receptive field of output ox in such a row is
 * then one run of k * C bits from bit ox * stride * C on, and bit j of that run is the tap
 * (kx, c) = (j / C, j % C). Each set bit is an event; it adds one 64-bit lane mask, the sign bits of
 * that tap's weights for 64 output channels, to bit-sliced counters: word i holds bit i of the 64
 * channels' counts of agreements, agree = sum over events of count * b (b the sign bit). Sixteen
 * masks at a time go through a carry-save adder tree (Harley and Seal), about five AND/XOR/OR per
 * mask for 64 channels; bit plane p of a count map adds its masks at bit p. The integer sum of
 * albsnn_conv_bits follows as acc = 2 agree - n, n the sum of the counts in the receptive field
 * (the same for every channel). With one time step the integer firing range [lo, hi] is decided
 * bit-sliced as well, folded into the counters' start (see "the one-step path" below), and only the
 * spikes are written; otherwise the counts are unpacked and the neurons run as in albsnn_conv_bits.
 *
 * The masks, pixel-major: for each (group, ky, kx, c), ceil(out c per group / 64) 64-bit words of 8
 * bytes, least significant byte first; bit l of word q is the sign bit of output channel 64 q + l of
 * the group (1 = +1), the bits past the group's channels zero. */

#define ALBSNN_TREE 16u /* masks per carry-save tree */

/* The 64-bit mask word at b: 8 bytes, least significant first (compilers merge this into one load). */
ALBSNN_INLINE uint64_t mask_at(const uint8_t *b)
{
    return (uint64_t)b[0] | ((uint64_t)b[1] << 8) | ((uint64_t)b[2] << 16) | ((uint64_t)b[3] << 24)
         | ((uint64_t)b[4] << 32) | ((uint64_t)b[5] << 40) | ((uint64_t)b[6] << 48) | ((uint64_t)b[7] << 56);
}

/* Adds the lanes of m (each 0 or 1) to the bit-sliced counters planes[0..depth). */
ALBSNN_INLINE void lanes_add(uint64_t *planes, uint32_t depth, uint64_t m)
{
    uint32_t i;
    for (i = 0; i < depth; ++i) {
        const uint64_t carry = planes[i] & m;
        planes[i] ^= m;
        m = carry;
    }
}

/* Carry-save adder: a + b + c = low + 2 high, lane by lane. */
#define ALBSNN_CSA(high, low, a, b, c)                                                              \
    do {                                                                                            \
        const uint64_t u_ = (a) ^ (b);                                                              \
        (high) = ((a) & (b)) | (u_ & (c));                                                          \
        (low) = u_ ^ (c);                                                                           \
    } while (0)

/* Adds the 16 masks of d to the counters planes[0..depth) (Harley and Seal's tree): planes 0..3 take
 * the ones, twos, fours and eights (they exist: P >= planes + 4), the sixteens ripple in from plane 4
 * up to `depth`, above which no count reaches. */
static void lanes_add16(uint64_t *planes, uint32_t depth, const uint64_t *d)
{
    uint64_t ones = planes[0], twos = planes[1], fours = planes[2], eights = planes[3];
    uint64_t twos_a, twos_b, fours_a, fours_b, eights_a, eights_b, sixteens;
    ALBSNN_CSA(twos_a, ones, ones, d[0], d[1]);
    ALBSNN_CSA(twos_b, ones, ones, d[2], d[3]);
    ALBSNN_CSA(fours_a, twos, twos, twos_a, twos_b);
    ALBSNN_CSA(twos_a, ones, ones, d[4], d[5]);
    ALBSNN_CSA(twos_b, ones, ones, d[6], d[7]);
    ALBSNN_CSA(fours_b, twos, twos, twos_a, twos_b);
    ALBSNN_CSA(eights_a, fours, fours, fours_a, fours_b);
    ALBSNN_CSA(twos_a, ones, ones, d[8], d[9]);
    ALBSNN_CSA(twos_b, ones, ones, d[10], d[11]);
    ALBSNN_CSA(fours_a, twos, twos, twos_a, twos_b);
    ALBSNN_CSA(twos_a, ones, ones, d[12], d[13]);
    ALBSNN_CSA(twos_b, ones, ones, d[14], d[15]);
    ALBSNN_CSA(fours_b, twos, twos, twos_a, twos_b);
    ALBSNN_CSA(eights_b, fours, fours, fours_a, fours_b);
    ALBSNN_CSA(sixteens, eights, eights, eights_a, eights_b);
    planes[0] = ones;
    planes[1] = twos;
    planes[2] = fours;
    planes[3] = eights;
    if (depth > 4u) { /* else the sixteens are zero: no count reaches 2^depth */
        lanes_add(planes + 4, depth - 4u, sixteens);
    }
}

/* The same tree for 8 masks (the eights ripple in from plane 3) and for 4 (the fours from plane 2). */
static void lanes_add8(uint64_t *planes, uint32_t depth, const uint64_t *d)
{
    uint64_t ones = planes[0], twos = planes[1], fours = planes[2];
    uint64_t twos_a, twos_b, fours_a, fours_b, eights;
    ALBSNN_CSA(twos_a, ones, ones, d[0], d[1]);
    ALBSNN_CSA(twos_b, ones, ones, d[2], d[3]);
    ALBSNN_CSA(fours_a, twos, twos, twos_a, twos_b);
    ALBSNN_CSA(twos_a, ones, ones, d[4], d[5]);
    ALBSNN_CSA(twos_b, ones, ones, d[6], d[7]);
    ALBSNN_CSA(fours_b, twos, twos, twos_a, twos_b);
    ALBSNN_CSA(eights, fours, fours, fours_a, fours_b);
    planes[0] = ones;
    planes[1] = twos;
    planes[2] = fours;
    if (depth > 3u) {
        lanes_add(planes + 3, depth - 3u, eights);
    }
}

static void lanes_add4(uint64_t *planes, uint32_t depth, const uint64_t *d)
{
    uint64_t ones = planes[0], twos = planes[1];
    uint64_t twos_a, twos_b, fours;
    ALBSNN_CSA(twos_a, ones, ones, d[0], d[1]);
    ALBSNN_CSA(twos_b, ones, ones, d[2], d[3]);
    ALBSNN_CSA(fours, twos, twos, twos_a, twos_b);
    planes[0] = ones;
    planes[1] = twos;
    if (depth > 2u) {
        lanes_add(planes + 2, depth - 2u, fours);
    }
}

/* Adds the first `pending` (< 16) masks of d (room for 16): a ripple each for one or two, else the
 * smallest tree that holds them, d padded with zeros. */
static void lanes_flush(uint64_t *planes, uint32_t depth, uint64_t *d, uint32_t pending)
{
    const uint32_t size = pending <= 4u ? 4u : pending <= 8u ? 8u : ALBSNN_TREE;
    uint32_t i;
    if (pending <= 2u) {
        for (i = 0; i < pending; ++i) {
            lanes_add(planes, depth, d[i]);
        }
        return;
    }
    for (i = pending; i < size; ++i) {
        d[i] = 0u;
    }
    if (size == 4u) {
        lanes_add4(planes, depth, d);
    } else if (size == 8u) {
        lanes_add8(planes, depth, d);
    } else {
        lanes_add16(planes, depth, d);
    }
}

/* Lane l's count from its bit-sliced counter. */
ALBSNN_INLINE uint32_t lane_count(const uint64_t *planes, uint32_t depth, uint32_t lane)
{
    uint32_t i, v = 0u;
    for (i = 0; i < depth; ++i) {
        v |= (uint32_t)((planes[i] >> lane) & 1u) << i;
    }
    return v;
}

/* Counter planes: the bits of fan-in * (2^planes - 1), the largest sum, and room for a tree (ones to
 * sixteens) at the top bit plane of the input: planes + 4. */
static uint32_t lane_planes(const albsnn_conv *p)
{
    const uint32_t fan_in = p->in.c / p->groups * p->kernel * p->kernel;
    const uint32_t bits = bit_length(fan_in * ((1u << p->in.planes) - 1u)); /* < 2^31: conv_bits_check */
    return bits < p->in.planes + 4u ? p->in.planes + 4u : bits;
}

/* The output channels' 64-bit words per group. */
ALBSNN_INLINE uint32_t lane_words(const albsnn_conv *p) { return ALBSNN_WORDS64(p->out.c / p->groups); }

/* 64-bit words of one pixel-major bit row, with one word to spare (runs are read two words at a time). */
ALBSNN_INLINE uint32_t pixel_row_words(const albsnn_conv *p)
{
    return ALBSNN_WORDS64((p->in.w + 2u * p->padding) * (p->in.c / p->groups)) + 1u;
}

/* Scratch of albsnn_conv_bit_events, with L = ceil(out c per group / 64) lane words, R the words of
 * a pixel-major bit row (ceil((in.w + 2 padding) * in c per group / 64) + 1) and
 * P = max(planes + 4, bit_length(fan-in * (2^planes - 1))) counter planes. uint64_t: the input as
 * pixel-major bit rows (in.steps * groups * in.h * planes * R), where the k rows of one output row
 * start, per step (in.steps * groups * planes * k), and one output's counters and carry-save tree per
 * lane word (L * (P + 16)). With a firing range (one step) instead fire_scratch_words: the bit rows, the
 * constants of the decision (groups * L * (2 D + 5)) and the state of an output row's outputs
 * (out.w * (L * (D + 17) + 2)), D = max(bit_length(N) + 1, planes + 3) for N = fan-in * (2^planes - 1).
 * int32_t, without a firing range only: one output's integer sums per step (in.steps * out c / groups). */
static size_t fire_scratch_words(const albsnn_conv *p);

/* The scratch words of the input gathered into pixel-major bit rows: none when it is pixel-major already. */
static size_t gathered_words(const albsnn_conv *p)
{
    return p->in.pixel_major ? 0u : (size_t)p->in.steps * p->groups * p->in.h * p->in.planes * pixel_row_words(p);
}

static size_t bit_events_scratch_words(const albsnn_conv *p)
{
    const size_t planes = lane_planes(p), lw = lane_words(p);
    const size_t rows = gathered_words(p) + (size_t)p->in.steps * p->groups * p->in.planes * p->kernel;
    return p->fires != NULL ? fire_scratch_words(p) : rows + lw * (planes + ALBSNN_TREE);
}

static size_t bit_events_scratch_counts(const albsnn_conv *p)
{
    return p->fires != NULL ? 0u : (size_t)p->in.steps * (p->out.c / p->groups);
}

size_t albsnn_conv_bit_events_scratch_words(const albsnn_conv *p)
{
    return p == NULL || conv_bits_check(p) != ALBSNN_OK ? 0u : bit_events_scratch_words(p);
}

size_t albsnn_conv_bit_events_scratch_counts(const albsnn_conv *p)
{
    return p == NULL || conv_bits_check(p) != ALBSNN_OK ? 0u : bit_events_scratch_counts(p);
}

/* The input as pixel-major bit rows, [step][group][input row][plane][R words]: each channel's map of
 * each plane is read once, 64 elements at a time, and every event in it (a set bit: channel c, row iy,
 * column ix) sets bit (ix + padding) * C + c of its pixel-major row (C channels per group). Below 2^16
 * elements per map, rest / w is (rest * ceil(2^32 / w)) >> 32, exactly. */
static void gather_pixels(const albsnn_conv *p, const uint32_t *x, uint64_t *rows)
{
    const albsnn_tensor *in = &p->in;
    const uint32_t cin = in->c / p->groups, row_words = pixel_row_words(p), w = in->w, hw = in->h * w;
    const uint64_t inv_w = ((uint64_t)1 << 32) / w + 1u;
    const int exact = hw < 0x10000u;
    uint32_t ts, b, g, c, j;
    size_t i;
    for (i = 0; i < (size_t)in->steps * p->groups * in->h * in->planes * row_words; ++i) {
        rows[i] = 0u;
    }
    for (ts = 0; ts < in->steps; ++ts) {
        for (b = 0; b < in->planes; ++b) {
            const uint32_t *plane = plane_of(in, x, ts, b);
            for (g = 0; g < p->groups; ++g) {
                uint64_t *group_rows = rows + (((size_t)ts * p->groups + g) * in->h * in->planes + b) * row_words;
                for (c = 0; c < cin; ++c) {
                    const uint32_t start = (g * cin + c) * hw;
                    for (j = 0; j < hw; j += 64u) {
                        uint64_t bits = plane_bits64(plane, start + j, hw - j < 64u ? hw - j : 64u);
                        while (bits != 0u) {
                            const uint32_t lead = lead64(bits), rest = j + lead;
                            const uint32_t iy = exact ? (uint32_t)(((uint64_t)rest * inv_w) >> 32) : rest / w;
                            const uint32_t bit = (rest - iy * w + p->padding) * cin + c;
                            uint64_t *row = group_rows + (size_t)iy * in->planes * row_words;
                            row[bit / 64u] |= (uint64_t)1 << (bit % 64u);
                            bits ^= ((uint64_t)1 << 63) >> lead;
                        }
                    }
                }
            }
        }
    }
}

/* The input as pixel-major bit rows: x itself when it is pixel-major (one group, padded as the conv pads),
 * else gathered into scratch (gathered_words of it). */
static const uint64_t *input_rows(const albsnn_conv *p, const void *x, uint64_t *scratch)
{
    if (p->in.pixel_major) {
        return (const uint64_t *)x;
    }
    gather_pixels(p, (const uint32_t *)x, scratch);
    return scratch;
}

/* n bits (1..64) of a bit row from bit `at` on, least significant first. */
ALBSNN_INLINE uint64_t row_run(const uint64_t *row, uint32_t at, uint32_t n)
{
    const uint32_t shift = at % 64u;
    const uint64_t *w = row + at / 64u;
    return ((w[0] >> shift) | ((w[1] << 1) << (63u - shift))) & (~(uint64_t)0 >> (64u - n));
}

/* What lanes_count needs of a descriptor, computed once per call. */
typedef struct {
    const uint8_t *masks;
    uint32_t k, stride, padding, h, in_planes; /* kernel, stride, padding, input rows and bit planes */
    uint32_t cin, run, lw, row_words, planes;  /* channels per group, k * cin, lane and row words, counter planes */
    size_t tap_bytes;                          /* bytes of one tap's masks: 8 lw */
} lane_layer;

static void lane_layer_of(const albsnn_conv *p, lane_layer *l)
{
    l->masks = p->bits;
    l->k = p->kernel;
    l->stride = p->stride;
    l->padding = p->padding;
    l->h = p->in.h;
    l->in_planes = p->in.planes;
    l->cin = p->in.c / p->groups;
    l->run = l->k * l->cin;
    l->lw = lane_words(p);
    l->row_words = pixel_row_words(p);
    l->planes = lane_planes(p);
    l->tap_bytes = 8u * (size_t)l->lw;
}

/* The counter planes from plane b up that a sum of at most n can reach: bit_length(n) - b, or 0. */
ALBSNN_INLINE uint32_t depth_from(uint32_t n, uint32_t b)
{
    const uint32_t depth = bit_length(n);
    return depth > b ? depth - b : 0u;
}

#define ALBSNN_PADDING_ROW (~(uint64_t)0) /* row_at entry of a kernel row in the zero padding */

/* The counters of one output in group g, one set of `planes` planes per lane word (counters[q * planes]):
 * rows + row_at[b * k + ky] is the bit row of plane b that kernel row ky reads (ALBSNN_PADDING_ROW: zero
 * padding), `first` the bit where the output's run starts in it. Returns n, the sum of the counts in its
 * receptive field. trees: ALBSNN_TREE words per lane word. */
static uint32_t lanes_count(const lane_layer *l, const uint64_t *rows, const uint64_t *row_at, uint32_t first, uint32_t g,
                            uint64_t *counters, uint64_t *trees)
{
    const uint32_t planes = l->planes, lw = l->lw, run = l->run;
    const uint8_t *group_taps = l->masks + (size_t)g * l->k * run * l->tap_bytes; /* [ky][kx][c][lanes] */
    uint32_t ky, b, j, q, i, n = 0u;
    for (i = 0; i < lw * planes; ++i) {
        counters[i] = 0u;
    }
    for (b = 0; b < l->in_planes; ++b) { /* bit plane b of the counts: its events count 2^b, a tree at bit b */
        uint32_t events = 0u, pending = 0u;
        for (ky = 0; ky < l->k; ++ky) {
            const uint64_t at_row = row_at[b * l->k + ky];
            const uint64_t *row = rows + (size_t)at_row;
            const uint8_t *taps = group_taps + (size_t)ky * run * l->tap_bytes;
            if (at_row == ALBSNN_PADDING_ROW) {
                continue; /* zero padding */
            }
            for (j = 0; j < run; j += 64u) {
                uint64_t bits = row_run(row, first + j, run - j < 64u ? run - j : 64u);
                const uint8_t *at = taps + (size_t)j * l->tap_bytes;
                if (lw == 1u) { /* up to 64 output channels: one mask per event */
                    while (bits != 0u) {
                        trees[pending] = mask_at(at + 8u * (size_t)trail64(bits));
                        bits &= bits - 1u;
                        ++events;
                        if (++pending == ALBSNN_TREE) {
                            lanes_add16(counters + b, depth_from(n + (events << b), b), trees);
                            pending = 0u;
                        }
                    }
                    continue;
                }
                while (bits != 0u) {
                    const uint8_t *mask = at + trail64(bits) * l->tap_bytes;
                    bits &= bits - 1u;
                    ++events;
                    for (q = 0; q < lw; ++q) {
                        trees[q * ALBSNN_TREE + pending] = mask_at(mask + 8u * q);
                    }
                    if (++pending == ALBSNN_TREE) {
                        for (q = 0; q < lw; ++q) {
                            lanes_add16(counters + q * planes + b, depth_from(n + (events << b), b), trees + q * ALBSNN_TREE);
                        }
                        pending = 0u;
                    }
                }
            }
        }
        n += events << b;
        for (q = 0; q < lw; ++q) {
            lanes_flush(counters + q * planes + b, depth_from(n, b), trees + q * ALBSNN_TREE, pending);
        }
    }
    return n;
}

/* Where the bit rows that output row oy reads start, per (group, plane, ky), for one step whose rows
 * start at `base`: ALBSNN_PADDING_ROW for a kernel row in the zero padding. */
static void rows_of_output_row(const albsnn_conv *p, const lane_layer *l, size_t base, uint32_t oy, uint64_t *row_at)
{
    uint32_t g, b, ky;
    for (g = 0; g < p->groups; ++g) {
        for (b = 0; b < l->in_planes; ++b) {
            for (ky = 0; ky < l->k; ++ky) {
                const int32_t iy = (int32_t)(oy * l->stride + ky) - (int32_t)l->padding;
                row_at[(g * l->in_planes + b) * l->k + ky] =
                    iy < 0 || iy >= (int32_t)l->h
                        ? ALBSNN_PADDING_ROW
                        : base + (((size_t)g * l->h + (uint32_t)iy) * l->in_planes + b) * l->row_words;
            }
        }
    }
}

/* Several time steps, or no neurons: the counts of each output unpacked, the neurons as in albsnn_conv_bits. */
static void bit_events_run(const albsnn_conv *p, const void *x, void *y, uint64_t *scratch, int32_t *acc)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, groups = p->groups, cout = out->c / groups;
    const uint32_t lw = lane_words(p), planes = lane_planes(p);
    const uint32_t row_starts = groups * in->planes * p->kernel;
    const size_t step_words = (size_t)groups * in->h * in->planes * pixel_row_words(p);
    uint64_t *row_at = scratch + gathered_words(p), *counters = row_at + in->steps * row_starts;
    const uint64_t *rows;
    uint64_t *trees = counters + (size_t)lw * planes;
    uint32_t oy, ts, t, ox, g, q, lane, co;
    lane_layer layer;
    lane_layer_of(p, &layer);
    if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    rows = input_rows(p, x, scratch);
    for (oy = 0; oy < out->h; ++oy) {
        for (ts = 0; ts < in->steps; ++ts) {
            rows_of_output_row(p, &layer, ts * step_words, oy, row_at + (size_t)ts * row_starts);
        }
        for (ox = 0; ox < wo; ++ox) {
            for (g = 0; g < groups; ++g) {
                for (ts = 0; ts < in->steps; ++ts) {
                    const uint64_t *starts = row_at + (size_t)ts * row_starts + g * in->planes * p->kernel;
                    const uint32_t sum = lanes_count(&layer, rows, starts, ox * p->stride * layer.cin, g, counters, trees);
                    const uint32_t depth = bit_length(sum);
                    for (q = 0; q < lw; ++q) {
                        const uint32_t first = q * 64u, lanes = cout - first < 64u ? cout - first : 64u;
                        const uint64_t *agree = counters + (size_t)q * planes;
                        for (lane = 0; lane < lanes; ++lane) { /* the integer sums of this output, per step */
                            acc[(size_t)ts * cout + first + lane] = 2 * (int32_t)lane_count(agree, depth, lane) - (int32_t)sum;
                        }
                    }
                }
                for (lane = 0; lane < cout; ++lane) {
                    const uint32_t index = (g * cout + lane) * hwo + oy * wo + ox;
                    float v = 0.0f, pre = 0.0f;
                    co = g * cout + lane;
                    for (t = 0; t < out->steps; ++t) {
                        if (t == 0u || in->steps > 1u) {
                            pre = (float)acc[(size_t)step_of(in, t) * cout + lane] * p->scale[co] + p->bias[co];
                        }
                        if (p->lif == NULL) {
                            ((float *)y)[(size_t)t * numel(out) + index] = pre;
                        } else if (lif_step(p->lif, co, t, index, &v, pre)) {
                            set_bit((uint32_t *)y + (size_t)t * plane_words(out), index);
                        }
                    }
                }
            }
        }
    }
}

/* The one-step path (a firing range, one time step). Each output's events are listed from the pixel-major
 * rows as in lanes_count, but ALBSNN_UNROLL at a time without a branch per event (a data-dependent
 * loop's exit is a mispredicted branch, and a run word of a sparse map holds a few events): the
 * first events of a word are listed unconditionally, a zero mask standing in for a missing one, and
 * only a denser word loops for the rest.
 *
 * A group of at most 32 output channels fills only part of a word: then S = 64 / L outputs (L the
 * channels rounded up to a power of two, at least 8) share a word, a cell: output ox has lanes
 * [s L, s L + L) of cell ox / S, s = ox % S, and the cell's outputs go through the tree together.
 *
 * The decision folds into the counters. acc = 2 agree - n lies in [-N, N] (N the largest n); with
 * 2^D > 2N + 1 a lane's counters start at 2^D - t1 instead of 0, take 2 agree (an event's mask enters
 * one plane up) and lose n at the end: X = 2^D + acc - t1 lies in [0, 2^(D+1)), so acc >= t1 iff bit D
 * of X is set, one borrow chain per 64 neurons (the sums run modulo 2^(D+1)). A range [lo, hi] open on
 * one side (as the exporter writes them, the chain being monotone) is acc >= lo, or not acc >= hi + 1
 * (an inverted lane); one closed on both sides subtracts hi + 1 - lo from X for a second bit D. */

#define ALBSNN_UNROLL 6u /* events listed per run word without a branch */
#define ALBSNN_DRAIN 48u /* pending masks that are added (by whole trees) before the next word is listed */

/* Pending masks of cell_events: fewer than ALBSNN_DRAIN, then one run word's events (over a count map each
 * listed count times, at least four entries written: a whole word when no count exceeds 4, as after a 2 x 2
 * pool, else 16 columns at a time) and a spare unrolled listing. */
ALBSNN_INLINE size_t listed_capacity(const albsnn_conv *p)
{
    const size_t most = ((size_t)1 << p->in.planes) - 1u;
    return ALBSNN_DRAIN + (p->in.planes == 1u ? 64u : 16u * most > 256u ? 16u * most : 256u) + ALBSNN_UNROLL;
}

/* What the one-step path needs of a layer, computed once per call. */
typedef struct {
    uint32_t depth;          /* D */
    uint32_t lanes, slots;   /* L and S (S = 1, L = 64 above 32 channels per group) */
    uint32_t constant_words; /* per (group, lane word): 2 D + 5 */
    int64_t big;             /* N */
} fire_layer;

static void fire_layer_of(const albsnn_conv *p, fire_layer *f)
{
    const uint32_t fan_in = p->in.c / p->groups * p->kernel * p->kernel, cout = p->out.c / p->groups;
    const uint32_t big = fan_in * ((1u << p->in.planes) - 1u); /* < 2^31: conv_bits_check */
    const uint32_t depth = bit_length(big) + 1u;               /* 2^D > 2N + 1 */
    f->big = big;
    f->depth = depth > p->in.planes + 3u ? depth : p->in.planes + 3u; /* room for a tree at the top plane */
    f->lanes = 64u;
    if (cout <= 32u) {
        for (f->lanes = 8u; f->lanes < cout; f->lanes *= 2u) {
        }
    }
    f->slots = 64u / f->lanes;
    f->constant_words = 2u * f->depth + 5u;
}

/* Scratch of the one-step path: the pixel-major bit rows and where an output row's rows start, per (group,
 * lane word) the constants, then with one lane word one cell's counters (D + 1) and pending masks
 * (listed_capacity), with several lanes_count's counters and trees (L (P + 16)) and one word's D + 1 planes. */
static size_t fire_scratch_words(const albsnn_conv *p)
{
    const size_t lw = lane_words(p);
    fire_layer f;
    fire_layer_of(p, &f);
    return gathered_words(p) + (size_t)p->groups * p->in.planes * p->kernel
         + (size_t)p->groups * lw * f.constant_words + f.depth + 1u
         + (lw == 1u ? listed_capacity(p) : lw * (lane_planes(p) + ALBSNN_TREE));
}

ALBSNN_INLINE int64_t clamp_fire(int64_t v, int64_t big) { return v < -big ? -big : v > big + 1 ? big + 1 : v; }

/* Per (group, lane word): the starting counters 2^D - t1 (D + 1 planes), the inverted lanes, the lanes that
 * hold a channel, the lanes closed on both sides and their t2 - t1 (D + 1 planes); each channel in every slot. */
static void fire_constants(const albsnn_conv *p, const fire_layer *f, uint64_t *constants)
{
    const uint32_t cout = p->out.c / p->groups, lw = lane_words(p), depth = f->depth;
    const int64_t big = f->big;
    uint32_t g, q, lane, slot, i;
    for (g = 0; g < p->groups; ++g) {
        for (q = 0; q < lw; ++q) {
            uint64_t *c = constants + ((size_t)g * lw + q) * f->constant_words, *gap = c + depth + 4u;
            for (i = 0; i < f->constant_words; ++i) {
                c[i] = 0u;
            }
            for (lane = 0; lane < f->lanes && q * 64u + lane < cout; ++lane) {
                const uint32_t co = g * cout + q * 64u + lane;
                const int64_t lo = clamp_fire(p->fires[2u * co], big), hi = clamp_fire((int64_t)p->fires[2u * co + 1u] + 1, big);
                int64_t t1 = lo, t2 = 0;
                uint64_t inverted = 0u, both = 0u, start;
                if (lo >= hi) { /* never: not acc >= -N */
                    t1 = -big;
                    inverted = 1u;
                } else if (hi > big && lo <= -big) { /* always */
                    t1 = -big;
                } else if (lo <= -big) { /* acc <= hi: not acc >= hi + 1 */
                    t1 = hi;
                    inverted = 1u;
                } else if (hi <= big) { /* both sides */
                    t2 = hi;
                    both = 1u;
                }
                start = ((uint64_t)1 << depth) - (uint64_t)t1; /* 2^D - t1 in [0, 2^(D+1)) */
                for (slot = 0; slot < f->slots; ++slot) {
                    const uint32_t at = slot * f->lanes + lane;
                    for (i = 0; i <= depth; ++i) {
                        c[i] |= ((start >> i) & 1u) << at;
                        gap[i] |= (((uint64_t)(t2 - t1) >> i) & 1u & both) << at;
                    }
                    c[depth + 1u] |= inverted << at;
                    c[depth + 2u] |= (uint64_t)1 << at;
                    c[depth + 3u] |= both << at;
                }
            }
        }
    }
}

/* Bit D of x - y for bit-sliced x, y (D + 1 planes each) as a borrow chain; with `planes` the whole difference. */
ALBSNN_INLINE uint64_t top_of_difference(const uint64_t *x, const uint64_t *y, uint32_t depth, uint64_t *planes)
{
    uint64_t borrow = 0u;
    uint32_t i;
    for (i = 0; i < depth; ++i) {
        if (planes != NULL) {
            planes[i] = x[i] ^ y[i] ^ borrow;
        }
        borrow = (~x[i] & (y[i] | borrow)) | (y[i] & borrow);
    }
    if (planes != NULL) {
        planes[depth] = x[depth] ^ y[depth] ^ borrow;
    }
    return x[depth] ^ y[depth] ^ borrow;
}

/* Lists the events of run word `bits` (one lane word: the masks of its taps at `taps`, 8 bytes apart) at
 * out[0..), shifted left by `shift`; returns how many. The first ALBSNN_UNROLL without a branch (the entries
 * past the events are overwritten later), the rest of a denser word in a loop. */
ALBSNN_INLINE uint32_t list_masks(uint64_t bits, const uint8_t *taps, size_t tap_bytes, uint64_t *out, uint32_t shift)
{
    uint32_t i, count = 0u;
    for (i = 0; i < ALBSNN_UNROLL; ++i) {
        const uint64_t some = (uint64_t)(bits != 0u);
        out[i] = (mask_at(taps + tap_bytes * (bits != 0u ? trail64(bits) : 0u)) & ((uint64_t)0u - some)) << shift;
        count += (uint32_t)some;
        bits &= bits - 1u;
    }
    for (; bits != 0u; ++count) {
        out[count] = mask_at(taps + tap_bytes * trail64(bits)) << shift;
        bits &= bits - 1u;
    }
    return count;
}

/* Adds the full trees of pending[0..n) at `counters` (plane b's entry) and moves the rest to the front. */
static uint32_t drain_trees(uint64_t *counters, uint32_t depth, uint64_t *pending, uint32_t n)
{
    uint32_t first = 0u, i;
    for (; first + ALBSNN_TREE <= n; first += ALBSNN_TREE) {
        lanes_add16(counters, depth, pending + first);
    }
    for (i = 0; i < ALBSNN_TREE; ++i) { /* the rest, fewer than a tree */
        pending[i] = pending[first + i];
    }
    return n - first;
}

/* Lists the events of run word `bits` of a count map (the count of an event: its bits in the planes' run words
 * `runs`) as `count` copies of its mask each, at out[0..), shifted left by `shift`: up to four copies without a
 * branch (an average pool of 2 x 2 spikes counts at most 4); returns how many masks. */
ALBSNN_INLINE uint32_t list_counted(uint64_t bits, const uint64_t *runs, uint32_t planes, const uint8_t *taps,
                                    size_t tap_bytes, uint64_t *out, uint32_t shift)
{
    uint32_t n = 0u, b, i;
    while (bits != 0u) {
        const uint32_t bit = trail64(bits);
        const uint64_t mask = mask_at(taps + tap_bytes * bit) << shift;
        uint32_t count = 0u;
        for (b = 0; b < planes; ++b) {
            count |= (uint32_t)((runs[b] >> bit) & 1u) << b;
        }
        out[n] = mask;
        out[n + 1u] = mask;
        out[n + 2u] = mask;
        out[n + 3u] = mask;
        for (i = 4u; i < count; ++i) {
            out[n + i] = mask;
        }
        n += count;
        bits &= bits - 1u;
    }
    return n;
}

/* The events of one cell (outputs first, first + step, ... of `present`) of one lane word into its counters.
 * plane < planes: the events of that bit plane, each mask once, entering at plane + 1 (2^plane agree, twice);
 * plane == planes (a count map): every non-zero count, `count` copies of its mask, entering at plane 1.
 * Adds each output's sum of counts to sums[] (`sums` NULL: not counted). */
static void cell_events(const lane_layer *l, const uint64_t *rows, const uint64_t *starts, const uint8_t *taps,
                        uint32_t plane, uint32_t first, uint32_t step, uint32_t present, uint32_t lanes, uint32_t depth,
                        uint64_t *counters, uint64_t *pending, uint64_t *sums)
{
    const uint32_t k = l->k, run = l->run, planes = l->in_planes, entry = plane < planes ? plane + 1u : 1u;
    const size_t tap_bytes = l->tap_bytes;
    uint64_t runs[31];
    uint32_t slot, ky, j, b, waiting = 0u;
    for (slot = 0; slot < present; ++slot, first += step) {
        const uint32_t shift = slot * lanes;
        uint32_t listed = 0u;
        for (ky = 0; ky < k; ++ky) {
            const uint64_t at_row = starts[(plane < planes ? plane : 0u) * k + ky];
            const uint8_t *row_taps = taps + (size_t)ky * run * tap_bytes;
            if (at_row == ALBSNN_PADDING_ROW) {
                continue; /* zero padding (every plane of a row is padding or none is) */
            }
            for (j = 0; j < run; j += 64u) {
                const uint32_t len = run - j < 64u ? run - j : 64u;
                uint32_t count;
                if (plane < planes) {
                    count = list_masks(row_run(rows + (size_t)at_row, first + j, len), row_taps + (size_t)j * tap_bytes,
                                       tap_bytes, pending + waiting, shift);
                } else {
                    uint64_t any = 0u;
                    uint32_t part;
                    for (b = 0; b < planes; ++b) {
                        runs[b] = row_run(rows + (size_t)starts[b * k + ky], first + j, len);
                        any |= runs[b];
                    }
                    if (planes < 3u || (planes == 3u && (runs[2] & (runs[0] | runs[1])) == 0u)) { /* counts <= 4 */
                        count = list_counted(any, runs, planes, row_taps + (size_t)j * tap_bytes, tap_bytes,
                                             pending + waiting, shift);
                        waiting += count;
                        listed += count;
                        if (waiting >= ALBSNN_DRAIN) {
                            waiting = drain_trees(counters + entry, depth + 1u - entry, pending, waiting);
                        }
                        continue;
                    }
                    for (count = 0u, part = 0u; part < 64u; part += 16u) { /* 16 columns at a time: bounded copies */
                        const uint32_t listed_part = list_counted(any & ((uint64_t)0xFFFFu << part), runs, planes,
                                                                  row_taps + (size_t)j * tap_bytes, tap_bytes,
                                                                  pending + waiting, shift);
                        waiting += listed_part;
                        count += listed_part;
                        if (waiting >= ALBSNN_DRAIN) {
                            waiting = drain_trees(counters + entry, depth + 1u - entry, pending, waiting);
                        }
                    }
                    listed += count;
                    continue;
                }
                waiting += count;
                listed += count;
                if (waiting >= ALBSNN_DRAIN) {
                    waiting = drain_trees(counters + entry, depth + 1u - entry, pending, waiting);
                }
            }
        }
        if (sums != NULL) {
            sums[slot] += (uint64_t)listed << (plane < planes ? plane : 0u);
        }
    }
    waiting = drain_trees(counters + entry, depth + 1u - entry, pending, waiting);
    lanes_flush(counters + entry, depth + 1u - entry, pending, waiting);
}

/* X = 2^D - t1 + 2 agree from lanes_count's agree (counters from 0, P planes up to `depth` of them used) and the
 * constants' start (D + 1 planes): a ripple-carry add, modulo 2^(D+1). */
static void start_plus_agree(const uint64_t *start, const uint64_t *agree, uint32_t used, uint32_t depth, uint64_t *x)
{
    uint64_t carry = 0u;
    uint32_t i;
    for (i = 0; i <= depth; ++i) {
        const uint64_t a = i >= 1u && i - 1u < used ? agree[i - 1u] : 0u; /* 2 agree: one plane up */
        x[i] = start[i] ^ a ^ carry;
        carry = (start[i] & a) | (carry & (start[i] ^ a));
    }
}

/* Writes the spikes of a cell (`present` outputs from column ox0 of row oy, `lanes` lanes each, channels co0
 * to co0 + n of each) into a cleared pixel-major map: output ox0 + s's at bit (ox0 + s + pad) * c + co0. */
static void fire_pixels(const albsnn_tensor *out, uint64_t *y, uint32_t oy, uint32_t ox0, uint32_t present,
                        uint32_t lanes, uint32_t co0, uint32_t n, uint64_t fire)
{
    uint64_t *row = pm_row(out, y, 0u, oy, 0u);
    const uint64_t slot_lanes = lanes == 64u ? ~(uint64_t)0 : ((uint64_t)1 << lanes) - 1u;
    uint32_t s;
    for (s = 0; s < present; ++s) {
        const uint64_t bits = (fire >> (s * lanes)) & slot_lanes;
        if (bits != 0u) {
            or_run(row, (ox0 + s + out->pad) * out->c + co0, bits, n);
        }
    }
}

/* The one-step path of albsnn_conv_bit_events (scratch: fire_scratch_words). */
static void bit_events_fire_run(const albsnn_conv *p, const void *x, void *y, uint64_t *scratch)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, cout = out->c / p->groups, k = p->kernel;
    const uint32_t lw = lane_words(p), row_starts = p->groups * in->planes * k;
    uint64_t *row_at, *constants, *counters, *pending;
    const uint64_t *rows;
    uint32_t oy, g, ox0, q, i, depth, planes_x, slot, slots;
    lane_layer l;
    fire_layer f;
    lane_layer_of(p, &l);
    fire_layer_of(p, &f);
    depth = f.depth;
    planes_x = depth + 1u;
    slots = f.slots;
    row_at = scratch + gathered_words(p);
    constants = row_at + row_starts;
    counters = constants + (size_t)p->groups * lw * f.constant_words; /* one lane word's D + 1 planes */
    pending = counters + planes_x; /* lw = 1: cell_events' masks; else lanes_count's counters and trees */
    fire_constants(p, &f, constants);
    if (out->pixel_major) {
        clear_rows((uint64_t *)y, pm_words(out));
    } else {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    rows = input_rows(p, x, scratch);
    for (oy = 0; oy < out->h; ++oy) {
        rows_of_output_row(p, &l, 0u, oy, row_at);
        for (g = 0; g < p->groups; ++g) {
            const uint64_t *starts = row_at + (size_t)g * in->planes * k;
            const uint64_t *group_constants = constants + (size_t)g * lw * f.constant_words;
            const uint8_t *group_taps = l.masks + (size_t)g * k * l.run * l.tap_bytes; /* [ky][kx][c][lanes] */
            for (ox0 = 0; ox0 < wo; ox0 += slots) {
                const uint32_t present = wo - ox0 < slots ? wo - ox0 : slots;
                uint64_t sums[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u}; /* n of each slot */
                uint32_t used = 0u;
                if (lw == 1u) { /* the cell's counters start at 2^D - t1 and take its events directly */
                    const uint32_t first = ox0 * l.stride * l.cin, step = l.stride * l.cin;
                    uint32_t b;
                    for (i = 0; i < planes_x; ++i) {
                        counters[i] = group_constants[i];
                    }
                    if (in->planes > 1u) { /* a count map: each count once, as copies of its mask */
                        cell_events(&l, rows, starts, group_taps, in->planes, first, step, present, f.lanes, depth, counters,
                                    pending, sums);
                    }
                    for (b = 0; b < in->planes && in->planes == 1u; ++b) {
                        cell_events(&l, rows, starts, group_taps, b, first, step, present, f.lanes, depth, counters, pending,
                                    sums);
                    }
                } else { /* lanes_count's agree from 0, then the start added */
                    sums[0] = lanes_count(&l, rows, starts, ox0 * l.stride * l.cin, g, pending, pending + (size_t)lw * l.planes);
                    used = bit_length((uint32_t)sums[0]);
                }
                { /* X - n: bit D decides */
                    const uint64_t slot_lanes = f.lanes == 64u ? ~(uint64_t)0 : ((uint64_t)1 << f.lanes) - 1u;
                    uint64_t ns[33];
                    for (i = 0; i < planes_x; ++i) {
                        ns[i] = 0u;
                        for (slot = 0; slot < present; ++slot) {
                            ns[i] |= (((uint64_t)0u - ((sums[slot] >> i) & 1u)) & slot_lanes) << (slot * f.lanes);
                        }
                    }
                    for (q = 0; q < lw; ++q) {
                        const uint64_t *c = group_constants + q * f.constant_words;
                        uint64_t diff[33], fire;
                        if (lw > 1u) {
                            start_plus_agree(c, pending + (size_t)q * l.planes, used, depth, counters);
                        }
                        fire = top_of_difference(counters, ns, depth, c[depth + 3u] != 0u ? diff : NULL);
                        fire ^= c[depth + 1u];
                        if (c[depth + 3u] != 0u) { /* closed on both sides: not acc >= t2 */
                            fire &= ~(top_of_difference(diff, c + depth + 4u, depth, NULL) & c[depth + 3u]);
                        }
                        fire &= c[depth + 2u];
                        if (present < slots) {
                            fire &= ((uint64_t)1 << (present * f.lanes)) - 1u;
                        }
#ifdef ALBSNN_TRACE
                        {
                            uint32_t lane;
                            (void)top_of_difference(counters, ns, depth, diff);
                            for (lane = 0; lane < 64u; ++lane) { /* X - n = 2^D + acc - t1 */
                                const uint32_t channel = q * 64u + lane % f.lanes, ox = ox0 + lane / f.lanes;
                                if (((c[depth + 2u] >> lane) & 1u) != 0u && ox < wo) {
                                    const uint32_t co = g * cout + channel;
                                    const int64_t t1 = ((int64_t)1 << depth) - (int64_t)lane_count(c, planes_x, lane);
                                    const int64_t acc = (int64_t)lane_count(diff, planes_x, lane) - ((int64_t)1 << depth) + t1;
                                    const lif_channel kc = channel_of(p->lif, co);
                                    const float h = lif_rest(p->lif, &kc, (float)acc * p->scale[co] + p->bias[co]);
                                    ALBSNN_TRACE_LIF(p->lif, 0u, co * hwo + oy * wo + ox, h, (int)((fire >> lane) & 1u));
                                }
                            }
                        }
#endif
                        if (out->pixel_major) { /* each output's channels of this word: one run of its pixel */
                            fire_pixels(out, (uint64_t *)y, oy, ox0, present, f.lanes, g * cout + q * 64u,
                                        cout - q * 64u < 64u ? cout - q * 64u : 64u, fire);
                            continue;
                        }
                        while (fire != 0u) {
                            const uint32_t lane = trail64(fire);
                            const uint32_t co = g * cout + q * 64u + lane % f.lanes, ox = ox0 + lane / f.lanes;
                            set_bit((uint32_t *)y, co * hwo + oy * wo + ox);
                            fire &= fire - 1u;
                        }
                    }
                }
            }
        }
    }
}

/* Binarized weights (pixel-major lane masks) over bit planes, event by event. x: bit planes; y: floats,
 * or a spike map (uint32_t) with neurons; words and counts: the scratch
 * albsnn_conv_bit_events_scratch_words and _counts size, n_words and n_counts elements long (counts
 * may be NULL when that size is 0). */
int albsnn_conv_bit_events(const albsnn_conv *p, const void *x, void *y, uint64_t *words, size_t n_words,
                           int32_t *counts, size_t n_counts)
{
    int status;
    if (p == NULL || x == NULL || y == NULL || words == NULL) {
        return ALBSNN_ERR_NULL;
    }
    status = conv_bits_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (counts == NULL && bit_events_scratch_counts(p) > 0u) {
        return ALBSNN_ERR_NULL;
    }
    if (n_words < bit_events_scratch_words(p) || n_counts < bit_events_scratch_counts(p)) {
        return ALBSNN_ERR_SCRATCH;
    }
    if (p->fires != NULL) {
        bit_events_fire_run(p, x, y, words);
        return ALBSNN_OK;
    }
    bit_events_run(p, x, y, words, counts);
    return ALBSNN_OK;
}

/* Float weights over bit planes, event by event. The input is gathered into the same pixel-major bit
 * rows as for the 1-bit kernel, and each output sums the weights of the events of its receptive field
 * in (ky, kx, c) order (times the event's value count / divisor over count planes), ALBSNN_BLOCK
 * output channels at a time in registers: for an event of a spike map that is one vector add of the
 * weights, read once, per 4 (SSE) or 16 (AVX-512) channels. albsnn_conv_rows sums a layer over bit
 * planes in the same (ky, kx, c) order, and the inputs that are zero add w * 0 = +-0 to a sum that
 * started at +0.0f, which leaves it unchanged: both kernels give the same floats bit for bit.
 *
 * The weights, pixel-major: [group][ky][kx][c][output channel of the group]. */

#define ALBSNN_BATCH 64u /* events listed before their weights are summed */
#define ALBSNN_BLOCK 32u /* output channels summed in registers */

#define ALBSNN_END_OF_BATCH (~(uint64_t)0) /* closes the list of event positions */

/* 1 << i for the 32 lanes of a block: the spikes of a block as bits without a variable shift (vectorizable). */
static const uint32_t bit_of[32] = {
    0x1u,      0x2u,      0x4u,      0x8u,      0x10u,      0x20u,      0x40u,      0x80u,
    0x100u,    0x200u,    0x400u,    0x800u,    0x1000u,    0x2000u,    0x4000u,    0x8000u,
    0x10000u,  0x20000u,  0x40000u,  0x80000u,  0x100000u,  0x200000u,  0x400000u,  0x800000u,
    0x1000000u, 0x2000000u, 0x4000000u, 0x8000000u, 0x10000000u, 0x20000000u, 0x40000000u, 0x80000000u};

/* One block of `width` (at most ALBSNN_BLOCK) channels from c0 on (a[] in registers): a = start + the weights of the listed
 * events in order (times values[e] unless `spikes`), stored into acc + c0; with lo, the bits of the
 * channels that fire (lo[c] <= a <= hi[c]). */
ALBSNN_INLINE uint32_t events_block(float *ALBSNN_RESTRICT acc, const float *ALBSNN_RESTRICT w, uint32_t cout, uint32_t c0,
                                    const uint64_t *at, const float *values, int spikes, int resume, const float *lo,
                                    const float *hi, uint32_t width)
{
    static const float zeros[ALBSNN_BLOCK] = {0.0f};
    const float *start = resume ? acc + c0 : zeros;
    float a[ALBSNN_BLOCK];
    const uint64_t *e;
    uint32_t i, bits = 0u;
    for (i = 0; i < width; ++i) {
        a[i] = start[i];
    }
    if (spikes) {
        for (e = at; *e != ALBSNN_END_OF_BATCH; ++e) {
            const float *ALBSNN_RESTRICT row = w + (size_t)*e * cout + c0;
            for (i = 0; i < width; ++i) {
                a[i] += row[i];
            }
        }
    } else {
        const float *v = values;
        for (e = at; *e != ALBSNN_END_OF_BATCH; ++e, ++v) {
            const float *ALBSNN_RESTRICT row = w + (size_t)*e * cout + c0;
            const float value = *v;
            for (i = 0; i < width; ++i) {
                a[i] += row[i] * value;
            }
        }
    }
    if (lo != NULL) {
        const float *ALBSNN_RESTRICT low = lo + c0, *ALBSNN_RESTRICT high = hi + c0;
        for (i = 0; i < width; ++i) {
            bits |= (0u - (uint32_t)((a[i] >= low[i]) & (a[i] <= high[i]))) & bit_of[i];
        }
#ifndef ALBSNN_TRACE
        return bits; /* decided: only the trace reads these sums */
#endif
    }
    for (i = 0; i < width; ++i) {
        acc[c0 + i] = a[i];
    }
    return bits;
}

/* acc[co] = (resume ? acc[co] : 0) + the weights of the listed events (rows at[e] of cout floats, the list
 * closed by ALBSNN_END_OF_BATCH), in order, times values[e] unless `spikes` (then the value is 1 and
 * w * 1.0f is w). A block of ALBSNN_BLOCK channels stays in registers from its start to its end; with
 * `lo` (one step, firing ranges as floats: lo[co] <= acc <= hi[co] fires) its spikes are decided there
 * too, bit co % 64 of fired[co / 64]. The list's end is a sentinel, not a count, so that compilers
 * vectorize the sum over the channels of a block and not the loop over the events. */
static void events_sum(float *ALBSNN_RESTRICT acc, const float *ALBSNN_RESTRICT w, uint32_t cout, const uint64_t *at,
                       const float *values, int spikes, int resume, const float *lo, const float *hi, uint64_t *fired)
{
    uint32_t c0;
    for (c0 = 0; c0 < cout; c0 += 64u) {
        if (lo != NULL) {
            fired[c0 / 64u] = 0u;
        }
    }
    for (c0 = 0; c0 + ALBSNN_BLOCK <= cout; c0 += ALBSNN_BLOCK) {
        const uint32_t bits = spikes ? events_block(acc, w, cout, c0, at, values, 1, resume, lo, hi, ALBSNN_BLOCK)
                                     : events_block(acc, w, cout, c0, at, values, 0, resume, lo, hi, ALBSNN_BLOCK);
        if (lo != NULL) {
            fired[c0 / 64u] |= (uint64_t)bits << (c0 % 64u);
        }
    }
    for (; c0 + 8u <= cout; c0 += 8u) { /* what is left, 8 channels at a time */
        const uint32_t bits = spikes ? events_block(acc, w, cout, c0, at, values, 1, resume, lo, hi, 8u)
                                     : events_block(acc, w, cout, c0, at, values, 0, resume, lo, hi, 8u);
        if (lo != NULL) {
            fired[c0 / 64u] |= (uint64_t)bits << (c0 % 64u);
        }
    }
    for (; c0 < cout; ++c0) {
        const uint64_t *e;
        const float *v = values;
        float a = resume ? acc[c0] : 0.0f;
        for (e = at; *e != ALBSNN_END_OF_BATCH; ++e, ++v) {
            const float weight = w[(size_t)*e * cout + c0];
            a += spikes ? weight : weight * *v;
        }
        acc[c0] = a;
        if (lo != NULL) {
            fired[c0 / 64u] |= (uint64_t)((a >= lo[c0]) & (a <= hi[c0])) << (c0 % 64u);
        }
    }
}

/* The sums of output ox (its cout channels of group g, into acc), from the bit rows: rows + row_at[b * k
 * + ky] is the row of plane b that kernel row ky reads (ALBSNN_PADDING_ROW: zero padding). at, values:
 * ALBSNN_BATCH + 1 and ALBSNN_BATCH entries of scratch; value_of[count] = count / divisor. With lo and hi
 * (the group's firing ranges as floats) also the spikes, in fired (events_sum). */
static void events_output(const albsnn_conv *p, const lane_layer *l, const uint64_t *rows, const uint64_t *row_at,
                          uint32_t ox, uint32_t g, float *acc, uint64_t *at, float *values, const float *value_of,
                          const float *lo, const float *hi, uint64_t *fired)
{
    const uint32_t cout = p->out.c / p->groups, first = ox * l->stride * l->cin, run = l->run;
    const int spikes = l->in_planes == 1u && p->in.divisor == 1u;
    const float *weights = p->weight + (size_t)g * l->k * run * cout; /* [ky][kx][c][co] */
    uint64_t runs[31];
    uint32_t ky, j, b, pending = 0u;
    int resume = 0;
    for (ky = 0; ky < l->k; ++ky) {
        if (row_at[ky] == ALBSNN_PADDING_ROW) {
            continue; /* zero padding adds nothing (every plane of a row is padding or none is) */
        }
        for (j = 0; j < run; j += 64u) {
            const uint32_t n = run - j < 64u ? run - j : 64u;
            uint64_t any = 0u;
            for (b = 0; b < l->in_planes; ++b) { /* an event wherever a count is not zero */
                runs[b] = row_run(rows + (size_t)row_at[b * l->k + ky], first + j, n);
                any |= runs[b];
            }
            while (any != 0u) {
                const uint32_t bit = trail64(any);
                uint32_t count = 0u;
                any &= any - 1u;
                if (!spikes) {
                    for (b = 0; b < l->in_planes; ++b) {
                        count |= (uint32_t)((runs[b] >> bit) & 1u) << b;
                    }
                    values[pending] = value_of[count];
                }
                at[pending] = (uint64_t)ky * run + j + bit;
                if (++pending == ALBSNN_BATCH) {
                    at[pending] = ALBSNN_END_OF_BATCH;
                    events_sum(acc, weights, cout, at, values, spikes, resume, NULL, NULL, NULL);
                    resume = 1;
                    pending = 0u;
                }
            }
        }
    }
    at[pending] = ALBSNN_END_OF_BATCH;
    events_sum(acc, weights, cout, at, values, spikes, resume, lo, hi, fired);
}

/* Lists the events of run word `bits` (positions base + bit) from at[n] on: ALBSNN_EVENT_UNROLL of them without
 * a branch (a data-dependent loop's exit is a mispredicted branch, and a word of a sparse map holds a few
 * events; the entries past the events are overwritten later), the rest of a denser word in a loop. With
 * `values` also each event's value, value_of[count], its count's bits in the planes' run words `runs`.
 * Returns how many. */
#define ALBSNN_EVENT_UNROLL 6u

ALBSNN_INLINE uint32_t list_positions(uint64_t bits, uint64_t base, uint64_t *at, const uint64_t *runs, uint32_t planes,
                                      const float *value_of, float *values)
{
    uint32_t i, b, count = 0u;
    for (i = 0; i < ALBSNN_EVENT_UNROLL; ++i) {
        const uint32_t bit = trail64(bits | ((uint64_t)1 << 63)); /* 63 past the last event: a spare entry */
        at[i] = base + bit;
        if (values != NULL) {
            uint32_t c = 0u;
            for (b = 0; b < planes; ++b) {
                c |= (uint32_t)((runs[b] >> bit) & 1u) << b;
            }
            values[i] = value_of[c];
        }
        count += (uint32_t)(bits != 0u);
        bits &= bits - 1u;
    }
    for (; bits != 0u; ++count) {
        const uint32_t bit = trail64(bits);
        at[count] = base + bit;
        if (values != NULL) {
            uint32_t c = 0u;
            for (b = 0; b < planes; ++b) {
                c |= (uint32_t)((runs[b] >> bit) & 1u) << b;
            }
            values[count] = value_of[c];
        }
        bits &= bits - 1u;
    }
    return count;
}

/* The one-step path (a firing range) lists the events of each input row once, into a ring of k row lists (the
 * k rows an output row reads: padded row iy + padding in slot (iy + padding) % k), instead of once per output
 * that reads them (k x k times). A row's list holds the events' bit positions in the padded row, (ix + padding) * C + c, ascending,
 * and where each pixel's events start: the events of output ox in that row are one slice, pixels ox * stride
 * to ox * stride + k. The output copies its k slices, each position made a weight row (ky * k C + the position
 * less the output's first bit, ox * stride * C), into one list and sums it, in (ky, kx, c) order as before. */

/* y[i] = x[i] + shift and y[i] = x[i] for i < n, ALBSNN_CHUNK at a time: the entries up to the next multiple
 * of ALBSNN_CHUNK are copied too (past the end of a slice: scratch that is overwritten later), so that a short
 * slice, the common case, takes one pass of a fixed length, without a mispredicted exit. */
#define ALBSNN_CHUNK 16u

static void shifted_copy(uint64_t *ALBSNN_RESTRICT y, const uint64_t *ALBSNN_RESTRICT x, uint32_t n, uint64_t shift)
{
    uint32_t i, j;
    for (i = 0; i < n; i += ALBSNN_CHUNK) {
        for (j = 0; j < ALBSNN_CHUNK; ++j) {
            y[i + j] = x[i + j] + shift;
        }
    }
}

static void float_copy(float *ALBSNN_RESTRICT y, const float *ALBSNN_RESTRICT x, uint32_t n)
{
    uint32_t i, j;
    for (i = 0; i < n; i += ALBSNN_CHUNK) {
        for (j = 0; j < ALBSNN_CHUNK; ++j) {
            y[i + j] = x[i + j];
        }
    }
}

/* The events of one padded input row of C channels and `pixels` pixels, its planes' rows at rows + row_at[b * k],
 * into list (positions; with `vals` their values, value_of[count]) and starts[px], the first event of pixel
 * px, px = 0..pixels (starts[pixels]: how many), then ALBSNN_CHUNK zeros (what a chunked copy of the last
 * slice reads past it): list and vals hold pixels * C + ALBSNN_CHUNK. The padding bits past the row are zero;
 * below 2^16 bits px = position / C is (position * ceil(2^32 / C)) >> 32, exactly. */
static void list_row(const lane_layer *l, const uint64_t *rows, const uint64_t *row_at, uint32_t pixels,
                     const float *value_of, uint64_t *list, float *vals, uint64_t *starts)
{
    const uint32_t planes = l->in_planes, cin = l->cin, bits = pixels * cin;
    const uint64_t inv_c = ((uint64_t)1 << 32) / cin + 1u;
    const int exact = bits < 0x10000u;
    uint64_t runs[16];
    uint32_t j, b, e, px, n = 0u;
    for (j = 0; j < bits; j += 64u) {
        uint64_t any = 0u;
        for (b = 0; b < planes; ++b) { /* an event wherever a count is not zero */
            runs[b] = rows[(size_t)row_at[b * l->k] + j / 64u];
            any |= runs[b];
        }
        n += vals != NULL ? list_positions(any, j, list + n, runs, planes, value_of, vals + n)
                          : list_positions(any, j, list + n, runs, planes, value_of, NULL);
    }
    for (e = n; e < n + ALBSNN_CHUNK; ++e) { /* over the unrolled listing's spare entries */
        list[e] = 0u;
        if (vals != NULL) {
            vals[e] = 0.0f;
        }
    }
    for (px = 0; px <= pixels; ++px) {
        starts[px] = 0u;
    }
    for (e = 0; e < n; ++e) { /* one past each pixel's last event, then carried over the pixels without one */
        const uint32_t pos = (uint32_t)list[e];
        starts[(exact ? (uint32_t)(((uint64_t)pos * inv_c) >> 32) : pos / cin) + 1u] = e + 1u;
    }
    for (px = 1; px <= pixels; ++px) {
        starts[px] = starts[px] > starts[px - 1u] ? starts[px] : starts[px - 1u];
    }
}

/* A ring of row lists (the one-step path's scratch): slot s's events, values and pixel starts, and which bit
 * row it holds (its offset in the rows, ALBSNN_PADDING_ROW: none). */
typedef struct {
    uint64_t *lists, *starts, *tags;
    float *vals;              /* NULL: spikes (no values) */
    size_t list_size;         /* entries of one slot's list: pixels * C + ALBSNN_CHUNK */
    uint32_t pixels;          /* padded pixels of a row */
} row_ring;

/* The spikes of output ox of group g into fired (events_sum with the group's firing ranges lo, hi; acc: its
 * sums), from the ring: kernel row ky in slot (base + ky) % k unless row_at[ky] (plane 0's) is zero padding.
 * at and values: k k C + ALBSNN_CHUNK entries of scratch each. */
static void events_output_fire(const albsnn_conv *p, const lane_layer *l, const row_ring *ring, const uint64_t *row_at,
                               uint32_t base, uint32_t ox, uint32_t g, float *acc, uint64_t *at, float *values,
                               const float *lo, const float *hi, uint64_t *fired)
{
    const uint32_t cout = p->out.c / p->groups, first = ox * l->stride * l->cin, run = l->run, px = ox * l->stride;
    const float *weights = p->weight + (size_t)g * l->k * run * cout; /* [ky][kx][c][co] */
    uint32_t ky, slot, n = 0u;
    for (ky = 0, slot = base; ky < l->k; ++ky, slot = slot + 1u == l->k ? 0u : slot + 1u) {
        if (row_at[ky] != ALBSNN_PADDING_ROW) { /* zero padding adds nothing */
            const uint64_t *list = ring->lists + slot * ring->list_size, *starts = ring->starts + slot * (ring->pixels + 1u);
            const uint32_t from = (uint32_t)starts[px], count = (uint32_t)starts[px + l->k] - from;
            const uint64_t shift = (uint64_t)ky * run - first; /* modulo 2^64: positions are >= first */
            shifted_copy(at + n, list + from, count, shift);
            if (ring->vals != NULL) {
                float_copy(values + n, ring->vals + slot * ring->list_size + from, count);
            }
            n += count;
        }
    }
    at[n] = ALBSNN_END_OF_BATCH;
    events_sum(acc, weights, cout, at, values, ring->vals == NULL, 0, lo, hi, fired);
}

/* Scratch of albsnn_conv_events. uint64_t: the input as pixel-major bit rows and where an output row's kernel
 * rows start, per step (as albsnn_conv_bit_events); then a batch of event positions and its end (ALBSNN_BATCH +
 * 1), or with a firing range (one step) the ring of k row lists (per slot pixels * C + ALBSNN_CHUNK positions,
 * pixels + 1 pixel starts and a tag; pixels = in.w + 2 padding, C = in c / groups), one output's events and
 * their end (k k C + ALBSNN_CHUNK) and its spikes. floats: one output's sums (out c / groups), with neurons over
 * several steps its membranes, and the batch's values (ALBSNN_BATCH), or with a firing range over counts the
 * ring's values and one output's (k (pixels * C + ALBSNN_CHUNK) + k k C + ALBSNN_CHUNK); the value of every
 * count, count / divisor (2^planes); with a firing range the ranges as floats (2 out c). */
ALBSNN_INLINE uint32_t ring_pixels(const albsnn_conv *p) { return p->in.w + 2u * p->padding; }

ALBSNN_INLINE size_t ring_list_size(const albsnn_conv *p)
{
    return (size_t)ring_pixels(p) * (p->in.c / p->groups) + ALBSNN_CHUNK; /* >= ALBSNN_EVENT_UNROLL spare */
}

/* Whether the events have values other than 1 (counts, or a divisor): then their values are listed too. */
ALBSNN_INLINE int events_valued(const albsnn_conv *p) { return p->in.planes > 1u || p->in.divisor != 1u; }

static size_t events_scratch_words(const albsnn_conv *p)
{
    const size_t k = p->kernel, rows = gathered_words(p) + (size_t)p->in.steps * p->groups * p->in.planes * k;
    if (p->fires == NULL) {
        return rows + ALBSNN_BATCH + 1u;
    }
    return rows + k * (ring_list_size(p) + ring_pixels(p) + 2u) + k * k * (p->in.c / p->groups) + ALBSNN_CHUNK
         + ALBSNN_WORDS64(p->out.c / p->groups);
}

static size_t events_scratch_floats(const albsnn_conv *p)
{
    const size_t k = p->kernel, cout = p->out.c / p->groups, value_of = (size_t)1 << p->in.planes;
    const size_t listed = events_valued(p) ? k * ring_list_size(p) + k * k * (p->in.c / p->groups) + ALBSNN_CHUNK : 0u;
    if (p->fires == NULL) {
        return (p->lif != NULL && p->out.steps > 1u ? 2u : 1u) * cout + ALBSNN_BATCH + value_of;
    }
    return cout + listed + value_of + 2u * (size_t)p->out.c;
}

static int conv_events_check(const albsnn_conv *p)
{
    const int status = conv_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (p->weight == NULL) {
        return ALBSNN_ERR_NULL;
    }
    return p->in.planes == 0u || p->in.planes > 16u ? ALBSNN_ERR_DESCRIPTOR : ALBSNN_OK;
}

size_t albsnn_conv_events_scratch_words(const albsnn_conv *p)
{
    return p == NULL || conv_events_check(p) != ALBSNN_OK ? 0u : events_scratch_words(p);
}

size_t albsnn_conv_events_scratch_floats(const albsnn_conv *p)
{
    return p == NULL || conv_events_check(p) != ALBSNN_OK ? 0u : events_scratch_floats(p);
}

/* The spikes of one output's n channels from co0 on, bit i % 64 of fired[i / 64] for channel co0 + i, into a
 * cleared map: element (co0 + i) * hw + at. */
static void events_spikes(const albsnn_conv *p, uint32_t co0, const float *acc, uint32_t n, const uint64_t *fired,
                          void *y, uint32_t at, uint32_t hw)
{
    uint32_t i0;
#ifdef ALBSNN_TRACE
    uint32_t i;
    for (i = 0; i < n; ++i) {
        ALBSNN_TRACE_LIF(p->lif, 0u, (co0 + i) * hw + at, traced_rest(p, co0 + i, acc[i]), (int)((fired[i / 64u] >> (i % 64u)) & 1u));
    }
#else
    (void)p;
    (void)acc;
#endif
    if (p->out.pixel_major) { /* output (oy, ox) = at: its channels side by side, 64 at a time */
        const albsnn_tensor *out = &p->out;
        uint64_t *row = pm_row(out, (uint64_t *)y, 0u, at / out->w, 0u);
        const uint32_t first = (at % out->w + out->pad) * out->c + co0;
        for (i0 = 0; i0 < n; i0 += 64u) {
            if (fired[i0 / 64u] != 0u) {
                or_run(row, first + i0, fired[i0 / 64u], n - i0 < 64u ? n - i0 : 64u);
            }
        }
        return;
    }
    for (i0 = 0; i0 < n; i0 += 64u) {
        uint64_t bits = fired[i0 / 64u];
        while (bits != 0u) {
            set_bit((uint32_t *)y, (co0 + i0 + trail64(bits)) * hw + at);
            bits &= bits - 1u;
        }
    }
}

/* The value of every count, as value_at computes it: value_of[count] = count / divisor. */
static void count_values(const albsnn_tensor *in, float *value_of)
{
    uint32_t i;
    for (i = 0; i < (1u << in->planes); ++i) {
        value_of[i] = in->divisor == 1u ? (float)i : (float)i / (float)in->divisor;
    }
}

/* The one-step path of albsnn_conv_events (a firing range): per output row and group, the kernel rows that are
 * not in the ring yet are listed into it, then each output sums its slices and decides its spikes. */
static void conv_events_fire_run(const albsnn_conv *p, const void *x, void *y, uint64_t *words, float *floats)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, groups = p->groups, cout = out->c / groups, k = p->kernel;
    const size_t listed = (size_t)k * k * (in->c / groups), ring_lists = k * ring_list_size(p);
    uint64_t *row_at = words + gathered_words(p), *at, *fired;
    float *acc = floats, *values, *value_of, *lo, *hi;
    const uint64_t *rows;
    uint32_t oy, ox, g, ky, slot, i;
    lane_layer layer;
    row_ring ring;
    lane_layer_of(p, &layer);
    ring.pixels = ring_pixels(p);
    ring.list_size = ring_list_size(p);
    ring.lists = row_at + (size_t)groups * in->planes * k;
    ring.starts = ring.lists + ring_lists;
    ring.tags = ring.starts + (size_t)k * (ring.pixels + 1u);
    at = ring.tags + k;
    fired = at + listed + ALBSNN_CHUNK;
    ring.vals = events_valued(p) ? acc + cout : NULL;
    values = ring.vals != NULL ? ring.vals + ring_lists : NULL;
    value_of = acc + cout + (ring.vals != NULL ? ring_lists + listed + ALBSNN_CHUNK : 0u);
    lo = value_of + ((size_t)1 << in->planes);
    hi = lo + out->c;
    for (i = 0; i < out->c; ++i) { /* the firing ranges as floats */
        lo[i] = key_float(p->fires[2u * i]);
        hi[i] = key_float(p->fires[2u * i + 1u]);
    }
    count_values(in, value_of);
    for (slot = 0; slot < k; ++slot) {
        ring.tags[slot] = ALBSNN_PADDING_ROW; /* empty */
    }
    if (out->pixel_major) {
        clear_rows((uint64_t *)y, pm_words(out));
    } else {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    rows = input_rows(p, x, words);
    for (oy = 0; oy < out->h; ++oy) {
        const uint32_t base = oy * layer.stride % k; /* the slot of kernel row 0: padded row oy * stride */
        rows_of_output_row(p, &layer, 0u, oy, row_at);
        for (g = 0; g < groups; ++g) {
            const uint64_t *starts = row_at + (size_t)g * in->planes * k;
            for (ky = 0, slot = base; ky < k; ++ky, slot = slot + 1u == k ? 0u : slot + 1u) {
                if (starts[ky] != ALBSNN_PADDING_ROW && ring.tags[slot] != starts[ky]) {
                    list_row(&layer, rows, starts + ky, ring.pixels, value_of, ring.lists + slot * ring.list_size,
                             ring.vals != NULL ? ring.vals + slot * ring.list_size : NULL,
                             ring.starts + slot * (ring.pixels + 1u));
                    ring.tags[slot] = starts[ky];
                }
            }
            for (ox = 0; ox < wo; ++ox) {
                events_output_fire(p, &layer, &ring, starts, base, ox, g, acc, at, values, lo + g * cout, hi + g * cout,
                                   fired);
                events_spikes(p, g * cout, acc, cout, fired, y, oy * wo + ox, hwo);
            }
        }
    }
}

/* Several time steps, or no neurons: each output's events listed from the bit rows and summed a batch at a time,
 * then the affine and the neurons. */
static void conv_events_run(const albsnn_conv *p, const void *x, void *y, uint64_t *words, float *floats)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, groups = p->groups, cout = out->c / groups;
    const uint32_t row_starts = groups * in->planes * p->kernel;
    const size_t step_words = (size_t)groups * in->h * in->planes * pixel_row_words(p);
    uint64_t *row_at = words + gathered_words(p), *at = row_at + in->steps * row_starts;
    const uint64_t *rows;
    float *acc = floats, *mem = acc + cout; /* membranes: several steps only */
    float *values = acc + (size_t)(p->lif != NULL && out->steps > 1u ? 2u : 1u) * cout;
    float *value_of = values + ALBSNN_BATCH;
    uint32_t oy, t, ox, g, i;
    lane_layer layer;
    lane_layer_of(p, &layer);
    count_values(in, value_of);
    if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    rows = input_rows(p, x, words);
    for (oy = 0; oy < out->h; ++oy) {
        for (t = 0; t < in->steps; ++t) {
            rows_of_output_row(p, &layer, t * step_words, oy, row_at + (size_t)t * row_starts);
        }
        for (ox = 0; ox < wo; ++ox) {
            for (g = 0; g < groups; ++g) {
                for (t = 0; t < out->steps; ++t) {
                    if (t == 0u || in->steps > 1u) {
                        const uint64_t *starts = row_at + (size_t)step_of(in, t) * row_starts + g * in->planes * p->kernel;
                        events_output(p, &layer, rows, starts, ox, g, acc, at, values, value_of, NULL, NULL, NULL);
                        channels_affine(acc, p->scale + g * cout, p->bias + g * cout, cout);
                        if (p->lif != NULL && out->steps == 1u) {
                            /* one step: charge (vectorizable), then only the spikes */
                            rows_rest(p->lif, g * cout, cout, acc, 1u);
                        }
                    }
                    for (i = 0; i < cout; ++i) {
                        const uint32_t index = (g * cout + i) * hwo + oy * wo + ox;
                        if (p->lif != NULL && out->steps == 1u) {
                            const lif_channel k = channel_of(p->lif, g * cout + i);
                            const int spike = lif_fires(p->lif, &k, acc[i]);
                            ALBSNN_TRACE_LIF(p->lif, 0u, index, acc[i], spike);
                            if (spike) {
                                set_bit((uint32_t *)y, index);
                            }
                        } else if (p->lif == NULL) {
                            ((float *)y)[(size_t)t * numel(out) + index] = acc[i];
                        } else if (lif_step(p->lif, g * cout + i, t, index, &mem[i], acc[i])) {
                            set_bit((uint32_t *)y + (size_t)t * plane_words(out), index);
                        }
                    }
                }
            }
        }
    }
}

/* Float weights (pixel-major) over bit planes, event by event. x: bit planes; y: floats, or a spike map
 * (uint32_t) with neurons; words and floats: the scratch albsnn_conv_events_scratch_words and _floats
 * size, n_words and n_floats elements long. */
int albsnn_conv_events(const albsnn_conv *p, const void *x, void *y, uint64_t *words, size_t n_words, float *floats,
                       size_t n_floats)
{
    int status;
    if (p == NULL || x == NULL || y == NULL || words == NULL || floats == NULL) {
        return ALBSNN_ERR_NULL;
    }
    status = conv_events_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (n_words < events_scratch_words(p) || n_floats < events_scratch_floats(p)) {
        return ALBSNN_ERR_SCRATCH;
    }
    if (p->fires != NULL) {
        conv_events_fire_run(p, x, y, words, floats);
        return ALBSNN_OK;
    }
    conv_events_run(p, x, y, words, floats);
    return ALBSNN_OK;
}

/* -- k-bit layers: integer codes ---------------------------------------------------------------- */

/* A k-bit layer (albsnn_code_conv) computes with the weights q * scale[co], q an integer code in [-Q, Q]. Both
 * kernels sum the codes times the inputs and multiply once per output by the channel's scale (the code scale
 * with the batch norm and, over count planes, 1 / divisor folded in), then add the bias:
 *
 *     acc = sum_j q_j x_j,     y = acc * scale + bias.
 *
 * Over bit planes x_j is an integer count (a spike is 1), so acc is an integer: albsnn_conv_code_events adds the
 * codes of the non-zero inputs in int32, count times each, and albsnn_conv_code_rows sums q * count in float,
 * where every partial sum is an integer below 2^24 (the descriptor is refused otherwise) and so exact: both give
 * the same acc, and with one time step the exporter folds the affine and the neuron into an integer range of acc
 * (the event kernel compares integers; the dense one the same floats through their order keys). Over float values
 * (the first layer) albsnn_conv_code_rows is the float kernel with w = q, the scale after the sum. */

/* The largest |acc| over bit planes, fan-in * Q * (2^planes - 1), is below 2^24: integers summed in int32 and in
 * float alike, exactly. Each factor below 2^24 keeps every product below 2^48. */
static int code_sums_exact(const albsnn_code_conv *c)
{
    const albsnn_conv *p = &c->conv;
    const uint64_t limit = (uint64_t)1 << 24;
    const uint64_t factors[4] = {p->in.c / p->groups, (uint64_t)p->kernel * p->kernel,
                                 ((uint64_t)1 << (c->code_bits - 1u)) - 1u, ((uint64_t)1 << p->in.planes) - 1u};
    uint64_t product = 1u;
    uint32_t i;
    for (i = 0; i < 4u; ++i) {
        if (factors[i] >= limit) {
            return 0;
        }
        product *= factors[i];
        if (product >= limit) {
            return 0;
        }
    }
    return 1;
}

/* Codes of 2, 4 or 8 bits and no other weights, a consistent layer, and exact sums over bit planes. */
static int code_check(const albsnn_code_conv *c)
{
    const albsnn_conv *p = &c->conv;
    int status;
    if (c->codes == NULL) {
        return ALBSNN_ERR_NULL;
    }
    status = conv_shape_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (p->bits != NULL || p->weight != NULL || (c->code_bits != 2u && c->code_bits != 4u && c->code_bits != 8u)
        || (p->in.planes > 0u && !code_sums_exact(c))) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    return ALBSNN_OK;
}

/* The dense kernel reads channel-major maps, as albsnn_conv_rows. */
static int code_rows_check(const albsnn_code_conv *c)
{
    const int status = code_check(c);
    return status != ALBSNN_OK ? status : c->conv.in.pixel_major ? ALBSNN_ERR_DESCRIPTOR : ALBSNN_OK;
}

size_t albsnn_conv_code_rows_scratch(const albsnn_code_conv *p)
{
    return p == NULL || code_rows_check(p) != ALBSNN_OK ? 0u : rows_scratch(&p->conv);
}

/* k-bit weights, any input, dense: albsnn_conv_rows with w = code. Over count planes the sums take the counts
 * themselves (the descriptor's divisor is in the scale), so they are the event kernel's integers. */
int albsnn_conv_code_rows(const albsnn_code_conv *p, const void *x, void *y, float *scratch, size_t n_scratch)
{
    albsnn_conv counts;
    int status;
    if (p == NULL || x == NULL || y == NULL || scratch == NULL) {
        return ALBSNN_ERR_NULL;
    }
    status = code_rows_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (n_scratch < rows_scratch(&p->conv)) {
        return ALBSNN_ERR_SCRATCH;
    }
    counts = p->conv;
    counts.in.divisor = 1u;
    conv_rows_run(&counts, p, x, y, scratch);
    return ALBSNN_OK;
}

/* Bytes of one tap's row of codes in the event kernel's order: out c / groups codes of k bits, from a byte of
 * its own. */
ALBSNN_INLINE size_t code_row_bytes(const albsnn_code_conv *c)
{
    return ((size_t)(c->conv.out.c / c->conv.groups) * c->code_bits + 7u) / 8u;
}

/* acc[i] += count * code i of a tap's row of n codes (two's complement fields, least significant first), i < n:
 * two codes a byte at 4 bits, four at 2, unpacked with masks and (f ^ 2^(k-1)) - 2^(k-1) (vectorizable). */
ALBSNN_INLINE void codes_add(int32_t *ALBSNN_RESTRICT acc, const uint8_t *ALBSNN_RESTRICT row, uint32_t bits, uint32_t n,
                             int32_t count)
{
    const uint32_t whole = n - n % (8u / bits); /* the codes of whole bytes */
    size_t j;
    uint32_t i;
    if (bits == 8u) {
        for (j = 0; j < whole; ++j) {
            acc[j] += count * (((int32_t)row[j] ^ 0x80) - 0x80);
        }
    } else if (bits == 4u) {
        for (j = 0; j < whole / 2u; ++j) { /* a loop over bytes, each written out: it vectorizes */
            const int32_t b = row[j];
            int32_t *a = acc + 2u * j;
            a[0] += count * (((b & 0xF) ^ 0x8) - 0x8);
            a[1] += count * (((b >> 4) ^ 0x8) - 0x8);
        }
    } else {
        for (j = 0; j < whole / 4u; ++j) {
            const int32_t b = row[j];
            int32_t *a = acc + 4u * j;
            a[0] += count * (((b & 0x3) ^ 0x2) - 0x2);
            a[1] += count * ((((b >> 2) & 0x3) ^ 0x2) - 0x2);
            a[2] += count * ((((b >> 4) & 0x3) ^ 0x2) - 0x2);
            a[3] += count * (((b >> 6) ^ 0x2) - 0x2);
        }
    }
    for (i = whole; i < n; ++i) { /* the last codes of a row that ends inside a byte */
        acc[i] += count * code_at(row, bits, i);
    }
}

/* The integer sums of output ox of group g (acc[co] for its out c / groups channels): the codes of the events of
 * its receptive field, each count times, from the pixel-major bit rows (rows + row_at[b * k + ky]: the row of plane
 * b that kernel row ky reads; ALBSNN_PADDING_ROW: zero padding). */
static void code_events_output(const albsnn_code_conv *c, const lane_layer *l, const uint64_t *rows,
                               const uint64_t *row_at, uint32_t ox, uint32_t g, int32_t *acc)
{
    const albsnn_conv *p = &c->conv;
    const uint32_t cout = p->out.c / p->groups, first = ox * l->stride * l->cin, run = l->run, bits = c->code_bits;
    const size_t row_bytes = code_row_bytes(c);
    const uint8_t *taps = c->codes + (size_t)g * l->k * run * row_bytes; /* [ky][kx][c][codes of the row] */
    uint64_t runs[31];
    uint32_t ky, j, b, i;
    for (i = 0; i < cout; ++i) {
        acc[i] = 0;
    }
    for (ky = 0; ky < l->k; ++ky) {
        if (row_at[ky] == ALBSNN_PADDING_ROW) {
            continue; /* zero padding adds nothing (every plane of a row is padding or none is) */
        }
        for (j = 0; j < run; j += 64u) {
            const uint32_t n = run - j < 64u ? run - j : 64u;
            uint64_t any = 0u;
            for (b = 0; b < l->in_planes; ++b) { /* an event wherever a count is not zero */
                runs[b] = row_run(rows + (size_t)row_at[b * l->k + ky], first + j, n);
                any |= runs[b];
            }
            while (any != 0u) {
                const uint32_t bit = trail64(any);
                const uint8_t *row = taps + ((size_t)ky * run + j + bit) * row_bytes;
                uint32_t count = 0u;
                any &= any - 1u;
                if (l->in_planes == 1u) { /* a spike: the codes themselves */
                    codes_add(acc, row, bits, cout, 1);
                    continue;
                }
                for (b = 0; b < l->in_planes; ++b) {
                    count |= (uint32_t)((runs[b] >> bit) & 1u) << b;
                }
                codes_add(acc, row, bits, cout, (int32_t)count);
            }
        }
    }
}

/* One time step: the spikes of output `at` (oy * w + ox) of group g, channel co firing iff fires[2co] <= acc <=
 * fires[2co+1] (the affine and the neuron folded into an integer range at export), into a cleared map; 64 channels
 * at a time, stored as one run in a pixel-major row. */
static void code_spikes(const albsnn_conv *p, const int32_t *acc, uint32_t g, uint32_t at, void *y)
{
    const albsnn_tensor *out = &p->out;
    const uint32_t cout = out->c / p->groups, hw = out->h * out->w;
    uint32_t i0, i;
    for (i0 = 0; i0 < cout; i0 += 64u) {
        const uint32_t n = cout - i0 < 64u ? cout - i0 : 64u, co0 = g * cout + i0;
        uint64_t fired = 0u;
        for (i = 0; i < n; ++i) {
            const int32_t *range = p->fires + 2u * (co0 + i);
            fired |= (uint64_t)((acc[i0 + i] >= range[0]) & (acc[i0 + i] <= range[1])) << i;
#ifdef ALBSNN_TRACE
            ALBSNN_TRACE_LIF(p->lif, 0u, (co0 + i) * hw + at, traced_rest(p, co0 + i, (float)acc[i0 + i]),
                             (int)((fired >> i) & 1u));
#endif
        }
        if (out->pixel_major && fired != 0u) { /* the output's channels side by side */
            or_run(pm_row(out, (uint64_t *)y, 0u, at / out->w, 0u), (at % out->w + out->pad) * out->c + co0, fired, n);
            continue;
        }
        for (; fired != 0u; fired &= fired - 1u) {
            set_bit((uint32_t *)y, (co0 + trail64(fired)) * hw + at);
        }
    }
}

/* Output `at` of group g from its integer sums per input step, acc[ts * cout + i]: the affine, then the floats or
 * the neurons over the steps (as albsnn_conv_bit_events' several-step path). */
static void code_outputs(const albsnn_conv *p, const int32_t *acc, uint32_t g, uint32_t at, void *y)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t cout = out->c / p->groups, hw = out->h * out->w;
    uint32_t i, t;
    for (i = 0; i < cout; ++i) {
        const uint32_t co = g * cout + i, index = co * hw + at;
        float v = 0.0f, pre = 0.0f;
        for (t = 0; t < out->steps; ++t) {
            if (t == 0u || in->steps > 1u) {
                pre = (float)acc[(size_t)step_of(in, t) * cout + i] * p->scale[co] + p->bias[co];
            }
            if (p->lif == NULL) {
                ((float *)y)[(size_t)t * numel(out) + index] = pre;
            } else if (lif_step(p->lif, co, t, index, &v, pre)) {
                set_bit((uint32_t *)y + (size_t)t * plane_words(out), index);
            }
        }
    }
}

/* Scratch of albsnn_conv_code_events. uint64_t: the input as pixel-major bit rows (none when it arrives so) and
 * where an output row's kernel rows start, per step, as albsnn_conv_bit_events. int32_t: one output's sums per
 * input step (in.steps * out c / groups). */
static size_t code_events_scratch_words(const albsnn_code_conv *c)
{
    const albsnn_conv *p = &c->conv;
    return gathered_words(p) + (size_t)p->in.steps * p->groups * p->in.planes * p->kernel;
}

static size_t code_events_scratch_counts(const albsnn_code_conv *c)
{
    return (size_t)c->conv.in.steps * (c->conv.out.c / c->conv.groups);
}

/* The event kernel reads bit planes. */
static int code_events_check(const albsnn_code_conv *c)
{
    const int status = code_check(c);
    return status != ALBSNN_OK ? status : c->conv.in.planes == 0u ? ALBSNN_ERR_DESCRIPTOR : ALBSNN_OK;
}

size_t albsnn_conv_code_events_scratch_words(const albsnn_code_conv *p)
{
    return p == NULL || code_events_check(p) != ALBSNN_OK ? 0u : code_events_scratch_words(p);
}

size_t albsnn_conv_code_events_scratch_counts(const albsnn_code_conv *p)
{
    return p == NULL || code_events_check(p) != ALBSNN_OK ? 0u : code_events_scratch_counts(p);
}

/* Each output's integer sums (per input step) from the events of its receptive field, then its spikes by the
 * firing range (one step) or the affine and the neurons. */
static void code_events_run(const albsnn_code_conv *c, const void *x, void *y, uint64_t *words, int32_t *acc)
{
    const albsnn_conv *p = &c->conv;
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, groups = p->groups, cout = out->c / groups;
    const uint32_t row_starts = groups * in->planes * p->kernel;
    const size_t step_words = (size_t)groups * in->h * in->planes * pixel_row_words(p);
    uint64_t *row_at = words + gathered_words(p);
    const uint64_t *rows;
    uint32_t oy, ox, g, ts;
    lane_layer layer;
    lane_layer_of(p, &layer);
    if (out->pixel_major) {
        clear_rows((uint64_t *)y, pm_words(out));
    } else if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    rows = input_rows(p, x, words);
    for (oy = 0; oy < out->h; ++oy) {
        for (ts = 0; ts < in->steps; ++ts) {
            rows_of_output_row(p, &layer, ts * step_words, oy, row_at + (size_t)ts * row_starts);
        }
        for (ox = 0; ox < wo; ++ox) {
            for (g = 0; g < groups; ++g) {
                for (ts = 0; ts < in->steps; ++ts) {
                    const uint64_t *starts = row_at + (size_t)ts * row_starts + g * in->planes * p->kernel;
                    code_events_output(c, &layer, rows, starts, ox, g, acc + (size_t)ts * cout);
                }
                if (p->fires != NULL) {
                    code_spikes(p, acc, g, oy * wo + ox, y);
                } else {
                    code_outputs(p, acc, g, oy * wo + ox, y);
                }
            }
        }
    }
}

/* k-bit weights (pixel-major rows of codes) over bit planes, event by event, with int32 sums. x: channel-major bit
 * planes (uint32_t) or pixel-major rows (uint64_t); y: floats, a spike map (uint32_t), or with a firing range
 * pixel-major rows (uint64_t); words and counts: the scratch albsnn_conv_code_events_scratch_words and _counts
 * size, n_words and n_counts elements long. */
int albsnn_conv_code_events(const albsnn_code_conv *p, const void *x, void *y, uint64_t *words, size_t n_words,
                            int32_t *counts, size_t n_counts)
{
    int status;
    if (p == NULL || x == NULL || y == NULL || words == NULL || counts == NULL) {
        return ALBSNN_ERR_NULL;
    }
    status = code_events_check(p);
    if (status != ALBSNN_OK) {
        return status;
    }
    if (n_words < code_events_scratch_words(p) || n_counts < code_events_scratch_counts(p)) {
        return ALBSNN_ERR_SCRATCH;
    }
    code_events_run(p, x, y, words, counts);
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
    if (!planar_ok(in)) {
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
    if (!planar_ok(in) || !planar_ok(out) || !lif_ok(lif) || numel(in) != numel(out) || out->planes != 1u
        || out->divisor != 1u || (in->steps != out->steps && in->steps != 1u)) {
        return ALBSNN_ERR_DESCRIPTOR;
    }
    clear_words(y, tensor_words(out));
    for (i = 0; i < numel(out); ++i) {
        const uint32_t channel = i / (out->h * out->w);
        float v = 0.0f;
        for (t = 0; t < out->steps; ++t) {
            if (lif_step(lif, channel, t, i, &v, value_at(in, x, t, i))) {
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

/* The bits at even positions of x, counted from the most significant (63, 61, ..., 1), in the low 32
 * bits in the same order: a 2:1 compress. */
ALBSNN_INLINE uint64_t even_bits(uint64_t x)
{
    x = (x >> 1) & UINT64_C(0x5555555555555555);
    x = (x | (x >> 1)) & UINT64_C(0x3333333333333333);
    x = (x | (x >> 2)) & UINT64_C(0x0F0F0F0F0F0F0F0F);
    x = (x | (x >> 4)) & UINT64_C(0x00FF00FF00FF00FF);
    x = (x | (x >> 8)) & UINT64_C(0x0000FFFF0000FFFF);
    return (x | (x >> 16)) & UINT64_C(0x00000000FFFFFFFF);
}

/* 2 x 2 pooling at stride 2 over a spike map whose rows fit a word: the four spikes of each window are
 * compressed to one bit per output (even and odd columns of two rows) and added bit-sliced, so a
 * whole output row of counts (or, for the maximum, of ORs) takes a few dozen word operations. */
static void pool_spikes2(const albsnn_pool *p, const uint32_t *x, uint32_t *y)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w;
    uint32_t t, c, oy, b;
    for (t = 0; t < out->steps; ++t) {
        const uint32_t *plane = plane_of(in, x, t, 0u);
        for (c = 0; c < out->c; ++c) {
            for (oy = 0; oy < out->h; ++oy) {
                const uint32_t at = (c * in->h + 2u * oy) * in->w;
                const uint64_t r0 = plane_bits64(plane, at, in->w), r1 = plane_bits64(plane, at + in->w, in->w);
                uint64_t a, b0, c0, d, s1, s2, k1, k2, k3;
                uint64_t counts[3];
                if (in->w <= 32u) { /* both rows in one word: one compress for the even columns, one for the odd */
                    const uint64_t both = r0 | (r1 >> 32), even = even_bits(both), odd = even_bits(both << 1);
                    a = (even >> 16) << 16; /* as even_bits(r0): column 2 i at bit 31 - i */
                    b0 = (odd >> 16) << 16;
                    c0 = (even & 0xFFFFu) << 16;
                    d = (odd & 0xFFFFu) << 16;
                } else {
                    a = even_bits(r0);
                    b0 = even_bits(r0 << 1);
                    c0 = even_bits(r1);
                    d = even_bits(r1 << 1);
                }
                s1 = a ^ b0;
                s2 = c0 ^ d;
                k1 = a & b0;
                k2 = c0 & d;
                k3 = s1 & s2;
                counts[0] = p->is_max ? (a | b0 | c0 | d) : s1 ^ s2;
                counts[1] = k1 ^ k2 ^ k3;
                counts[2] = (k1 & k2) | (k3 & (k1 ^ k2));
                for (b = 0; b < out->planes && b < 3u; ++b) {
                    const uint32_t bits = (uint32_t)(counts[b] >> (32u - wo)); /* output ox at bit wo - 1 - ox */
                    if (bits != 0u) {
                        or_bits(y + ((size_t)t * out->planes + b) * plane_words(out), (c * out->h + oy) * wo, bits, wo);
                    }
                }
            }
        }
    }
}

/* Pooling of pixel-major spikes into pixel-major counts (the maximum: spikes): a pixel's channels are side by
 * side, so each window adds whole pixels, 64 channels at a time, into bit-sliced counters (the maximum ORs them). */
static void pool_pixels(const albsnn_pool *p, const uint64_t *x, uint64_t *y)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t k = p->kernel, s = p->stride, c = in->c;
    uint64_t counts[31];
    uint32_t t, oy, ox, j, ky, kx, b;
    for (t = 0; t < out->steps; ++t) {
        for (oy = 0; oy < out->h; ++oy) {
            for (ox = 0; ox < out->w; ++ox) {
                for (j = 0; j < c; j += 64u) {
                    const uint32_t n = c - j < 64u ? c - j : 64u;
                    for (b = 0; b < out->planes; ++b) {
                        counts[b] = 0u;
                    }
                    for (ky = 0; ky < k; ++ky) { /* row oy * s + ky of the input's one plane */
                        const uint64_t *row = x + ((size_t)t * in->h + oy * s + ky) * pm_row_words(in);
                        for (kx = 0; kx < k; ++kx) {
                            const uint64_t v = row_run(row, (ox * s + kx + in->pad) * c + j, n);
                            if (p->is_max) {
                                counts[0] |= v;
                            } else {
                                lanes_add(counts, out->planes, v);
                            }
                        }
                    }
                    for (b = 0; b < out->planes; ++b) {
                        if (counts[b] != 0u) {
                            or_run(pm_row(out, y, t, oy, b), (ox + out->pad) * c + j, counts[b], n);
                        }
                    }
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
    if (out->pixel_major) {
        clear_rows((uint64_t *)y, pm_words(out));
        pool_pixels(p, (const uint64_t *)x, (uint64_t *)y);
        return;
    }
    if (out->planes > 0u) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    if (in->planes == 1u && k == 2u && s == 2u && in->w <= 64u && (p->is_max || out->planes >= 3u)) {
        pool_spikes2(p, (const uint32_t *)x, (uint32_t *)y);
        return;
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
        || !window_ok(in->w, p->kernel, p->stride, 0u, out->w)
        || in->pixel_major != out->pixel_major || (in->pixel_major && in->planes != 1u)) { /* pixel-major: spikes in */
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
    if (!planar_ok(in)) {
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
    if (!planar_ok(in)) {
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
