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
 * Layers over spikes have event-driven kernels too (albsnn_conv_bit_events, albsnn_conv_events):
 * spike maps are mostly zeros, and these do work only where an input is not zero, with the same
 * results as the dense kernels bit for bit (see "event-driven layers" below). The exporter picks
 * one per layer.
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

/* acc[co][ox] of output row oy at one step over bit planes: sum over (ky, kx, c), in that order, of
 * w * x, the order of albsnn_conv_events (which adds the same terms, skipping the zeros). */
static void conv_row_bits(const albsnn_conv *p, const void *x, uint32_t step, uint32_t oy, float *row, float *acc)
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

/* acc[co][ox] of output row oy at one step: sum over (c, ky, kx), in that order, of w * x; over bit
 * planes over (ky, kx, c) (conv_row_bits). */
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
    if (in->planes > 0u) {
        conv_row_bits(p, x, step, oy, row, acc);
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

/* -- event-driven layers over bit planes: work in proportion to the spikes ----------------------- */

/* A layer over spikes needs its weights only where a spike arrived. These kernels gather each input
 * bit plane once into pixel-major bit rows (the channels of a pixel side by side) and then, output by
 * output, walk the set bits of its receptive field: each is an event (kernel row ky, column kx, input
 * channel c, and its count), and only events cost work. */

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
 * (the same for every channel). With one time step the integer firing range [lo, hi] is compared
 * bit-sliced as well (lo <= 2 agree - n <= hi, 64 neurons at a time) and only the spikes are
 * written; otherwise the counts are unpacked and the neurons run as in albsnn_conv_bits.
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
 * start, per step (in.steps * groups * planes * k), one output's counters and carry-save tree per lane
 * word (L * (P + 16)) and, with a firing range, the bit-sliced bounds (groups * L * (2 (P + 2) + 2)).
 * int32_t, without a firing range only: one output's integer sums per step (in.steps * out c / groups). */
static size_t bit_events_scratch_words(const albsnn_conv *p)
{
    const size_t planes = lane_planes(p), lw = lane_words(p);
    const size_t rows = (size_t)p->in.steps * p->groups * p->in.h * p->in.planes * pixel_row_words(p)
                      + (size_t)p->in.steps * p->groups * p->in.planes * p->kernel;
    const size_t bounds = p->fires != NULL ? (size_t)p->groups * lw * (2u * (planes + 2u) + 2u) : 0u;
    return rows + lw * (planes + ALBSNN_TREE) + bounds;
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

/* The firing ranges of every 64-channel word, bit-sliced in Q = P + 2 planes: lo[Q], hi[Q], then
 * two flags (whether any lane's lo, hi can fail), per word. X = 2 agree - n lies in (-2^P, 2^P),
 * so clamping the bounds to the Q-bit range [-2^(Q-1), 2^(Q-1)) changes no decision; each bound is
 * stored offset by 2^(Q-1), so that signed order is unsigned order. */
static void lane_bounds(const albsnn_conv *p, uint32_t planes, uint64_t *bounds)
{
    const uint32_t q_planes = planes + 2u, cout = p->out.c / p->groups, lw = lane_words(p);
    const int64_t half = (int64_t)1 << (q_planes - 1u);
    uint32_t word, lane, i;
    for (word = 0; word < p->groups * lw; ++word) {
        uint64_t *lo = bounds + (size_t)word * (2u * q_planes + 2u), *hi = lo + q_planes, *flags = hi + q_planes;
        const uint32_t g = word / lw, first = (word % lw) * 64u;
        for (i = 0; i < 2u * q_planes + 2u; ++i) {
            lo[i] = 0u;
        }
        for (lane = 0; lane < 64u && first + lane < cout; ++lane) {
            const uint32_t co = g * cout + first + lane;
            int64_t low = p->fires[2u * co], high = p->fires[2u * co + 1u];
            low = low < -half ? -half : low >= half ? half - 1 : low;
            high = high < -half ? -half : high >= half ? half - 1 : high;
            for (i = 0; i < q_planes; ++i) {
                lo[i] |= (((uint64_t)(low + half) >> i) & 1u) << lane;
                hi[i] |= (((uint64_t)(high + half) >> i) & 1u) << lane;
            }
            flags[0] |= (uint64_t)(low > -half);
            flags[1] |= (uint64_t)(high < half - 1);
        }
    }
}

/* The lanes whose 2 agree - n lies in their range: agree from `depth` counter planes, n the sum of
 * counts, the bounds as lane_bounds stores them. Borrow chains run from bit 0 up: x = 2 agree - n
 * (two's complement, its sign bit flipped at the top), x - lo and hi - x; no borrow out means >=. */
static uint64_t lanes_fire(const uint64_t *agree, uint32_t depth, uint32_t n, const uint64_t *bounds, uint32_t q_planes)
{
    const uint64_t *lo = bounds, *hi = bounds + q_planes, *flags = hi + q_planes;
    const int low = flags[0] != 0u, high = flags[1] != 0u;
    uint64_t borrow = 0u, below = 0u, above = 0u;
    uint32_t i;
    for (i = 0; i < q_planes; ++i) {
        const uint64_t a = i >= 1u && i - 1u < depth ? agree[i - 1u] : 0u; /* 2 agree: shifted by one */
        const uint64_t m = i < 32u ? (uint64_t)0u - (uint64_t)((n >> i) & 1u) : 0u;
        uint64_t u = a ^ m ^ borrow;
        borrow = (~a & m) | (~(a ^ m) & borrow);
        if (i == q_planes - 1u) {
            u = ~u; /* offset binary: signed order becomes unsigned order */
        }
        if (low) {
            below = (~u & lo[i]) | (~(u ^ lo[i]) & below); /* borrow of u - lo */
        }
        if (high) {
            above = (~hi[i] & u) | (~(hi[i] ^ u) & above); /* borrow of hi - u */
        }
    }
    return ~below & ~above;
}

/* floor(n / d) for a divisor d > 0 with inv = floor((2^32 - 1) / d): the product is at most 2 short. */
ALBSNN_INLINE uint32_t div_by(uint32_t n, uint32_t d, uint64_t inv)
{
    uint32_t q = (uint32_t)(((uint64_t)n * inv) >> 32);
    while (n - q * d >= d) {
        ++q;
    }
    return q;
}

/* The input as pixel-major bit rows, [step][group][input row][plane][R words]: each plane of each
 * step is read once, 64 elements at a time, and every event (a set bit: channel c, row iy, column ix)
 * sets bit (ix + padding) * C + c of its row (C channels per group). */
static void gather_pixels(const albsnn_conv *p, const uint32_t *x, uint64_t *rows)
{
    const albsnn_tensor *in = &p->in;
    const uint32_t cin = in->c / p->groups, row_words = pixel_row_words(p), hw = in->h * in->w;
    const uint32_t region = cin * hw; /* one group's channels */
    const uint64_t inv_hw = 0xFFFFFFFFu / hw, inv_w = 0xFFFFFFFFu / in->w;
    uint32_t ts, b, g, j;
    size_t i;
    for (i = 0; i < (size_t)in->steps * p->groups * in->h * in->planes * row_words; ++i) {
        rows[i] = 0u;
    }
    for (ts = 0; ts < in->steps; ++ts) {
        for (b = 0; b < in->planes; ++b) {
            const uint32_t *plane = plane_of(in, x, ts, b);
            for (g = 0; g < p->groups; ++g) {
                uint64_t *group_rows = rows + ((size_t)ts * p->groups + g) * in->h * in->planes * row_words;
                for (j = 0; j < region; j += 64u) {
                    const uint32_t n = region - j < 64u ? region - j : 64u;
                    uint64_t bits = plane_bits64(plane, g * region + j, n);
                    uint32_t base = j;
                    while (bits != 0u) {
                        const uint32_t lead = lead64(bits), at = base + lead;
                        const uint32_t c = div_by(at, hw, inv_hw), rest = at - c * hw, iy = div_by(rest, in->w, inv_w);
                        const uint32_t bit = (rest - iy * in->w + p->padding) * cin + c;
                        uint64_t *row = group_rows + ((size_t)iy * in->planes + b) * row_words;
                        row[bit / 64u] |= (uint64_t)1 << (bit % 64u);
                        bits = (bits << lead) << 1;
                        base += lead + 1u;
                    }
                }
            }
        }
    }
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

static void bit_events_run(const albsnn_conv *p, const uint32_t *x, void *y, uint64_t *scratch, int32_t *acc)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, groups = p->groups, cout = out->c / groups;
    const uint32_t lw = lane_words(p), planes = lane_planes(p), q_planes = planes + 2u;
    const uint32_t row_starts = groups * in->planes * p->kernel;
    const size_t step_words = (size_t)groups * in->h * in->planes * pixel_row_words(p);
    uint64_t *rows = scratch, *row_at = rows + in->steps * step_words, *counters = row_at + in->steps * row_starts;
    uint64_t *trees = counters + (size_t)lw * planes, *bounds = trees + (size_t)lw * ALBSNN_TREE;
    uint32_t oy, ts, t, ox, g, q, lane, co;
    lane_layer layer;
    lane_layer_of(p, &layer);
    if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    if (p->fires != NULL) {
        lane_bounds(p, planes, bounds);
    }
    gather_pixels(p, x, rows);
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
                        if (p->fires != NULL) { /* one step: bit-sliced range check, then only the spikes */
                            const uint64_t *range = bounds + (size_t)(g * lw + q) * (2u * q_planes + 2u);
                            uint64_t fire = lanes_fire(agree, depth, sum, range, q_planes);
                            fire &= lanes == 64u ? ~(uint64_t)0 : ((uint64_t)1 << lanes) - 1u;
#ifdef ALBSNN_TRACE
                            for (lane = 0; lane < lanes; ++lane) {
                                const int32_t a = 2 * (int32_t)lane_count(agree, depth, lane) - (int32_t)sum;
                                lif_channel k;
                                co = g * cout + first + lane;
                                k = channel_of(p->lif, co);
                                ALBSNN_TRACE_LIF(p->lif, 0u, co * hwo + oy * wo + ox,
                                                 lif_rest(p->lif, &k, (float)a * p->scale[co] + p->bias[co]),
                                                 (int)((fire >> lane) & 1u));
                            }
#endif
                            while (fire != 0u) {
                                co = g * cout + first + trail64(fire);
                                set_bit((uint32_t *)y, co * hwo + oy * wo + ox);
                                fire &= fire - 1u;
                            }
                            continue;
                        }
                        for (lane = 0; lane < lanes; ++lane) { /* the integer sums of this output, per step */
                            acc[(size_t)ts * cout + first + lane] = 2 * (int32_t)lane_count(agree, depth, lane) - (int32_t)sum;
                        }
                    }
                }
                if (p->fires != NULL) {
                    continue;
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

/* Binarized weights (pixel-major lane masks) over bit planes, event by event. x: bit planes; y: floats,
 * or a spike map (uint32_t) with neurons; words and counts: the scratch
 * albsnn_conv_bit_events_scratch_words and _counts size, n_words and n_counts elements long (counts
 * may be NULL when that size is 0). */
int albsnn_conv_bit_events(const albsnn_conv *p, const uint32_t *x, void *y, uint64_t *words, size_t n_words,
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

/* acc[co] += the weights of the listed events (rows at[e] of cout floats, the list closed by
 * ALBSNN_END_OF_BATCH), in order, times values[e] unless `spikes` (then the value is 1 and w * 1.0f is w).
 * The list's end is a sentinel, not a count, so that compilers vectorize the sum over the channels of
 * a block (in registers) and not the loop over the events. */
static void events_sum(float *ALBSNN_RESTRICT acc, const float *ALBSNN_RESTRICT w, uint32_t cout, const uint64_t *at,
                       const float *values, int spikes)
{
    uint32_t c0, i;
    for (c0 = 0; c0 + ALBSNN_BLOCK <= cout; c0 += ALBSNN_BLOCK) {
        float a[ALBSNN_BLOCK];
        const uint64_t *e;
        const float *v = values;
        for (i = 0; i < ALBSNN_BLOCK; ++i) {
            a[i] = acc[c0 + i];
        }
        if (spikes) {
            for (e = at; *e != ALBSNN_END_OF_BATCH; ++e) {
                const float *ALBSNN_RESTRICT row = w + (size_t)*e * cout + c0;
                for (i = 0; i < ALBSNN_BLOCK; ++i) {
                    a[i] += row[i];
                }
            }
        } else {
            for (e = at; *e != ALBSNN_END_OF_BATCH; ++e, ++v) {
                const float *ALBSNN_RESTRICT row = w + (size_t)*e * cout + c0;
                const float value = *v;
                for (i = 0; i < ALBSNN_BLOCK; ++i) {
                    a[i] += row[i] * value;
                }
            }
        }
        for (i = 0; i < ALBSNN_BLOCK; ++i) {
            acc[c0 + i] = a[i];
        }
    }
    for (; c0 < cout; ++c0) {
        const uint64_t *e;
        const float *v = values;
        float a = acc[c0];
        for (e = at; *e != ALBSNN_END_OF_BATCH; ++e, ++v) {
            const float weight = w[(size_t)*e * cout + c0];
            a += spikes ? weight : weight * *v;
        }
        acc[c0] = a;
    }
}

/* The sums of output ox (its cout channels of group g, into acc), from the bit rows: rows + row_at[b * k
 * + ky] is the row of plane b that kernel row ky reads (ALBSNN_PADDING_ROW: zero padding). at, values:
 * ALBSNN_BATCH + 1 and ALBSNN_BATCH entries of scratch; value_of[count] = count / divisor. */
static void events_output(const albsnn_conv *p, const lane_layer *l, const uint64_t *rows, const uint64_t *row_at,
                          uint32_t ox, uint32_t g, float *acc, uint64_t *at, float *values, const float *value_of)
{
    const uint32_t cout = p->out.c / p->groups, first = ox * l->stride * l->cin, run = l->run;
    const int spikes = l->in_planes == 1u && p->in.divisor == 1u;
    const float *weights = p->weight + (size_t)g * l->k * run * cout; /* [ky][kx][c][co] */
    uint64_t runs[31];
    uint32_t ky, j, b, i, pending = 0u;
    for (i = 0; i < cout; ++i) {
        acc[i] = 0.0f;
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
                    events_sum(acc, weights, cout, at, values, spikes);
                    pending = 0u;
                }
            }
        }
    }
    at[pending] = ALBSNN_END_OF_BATCH;
    events_sum(acc, weights, cout, at, values, spikes);
}

/* Scratch of albsnn_conv_events. uint64_t: the input as pixel-major bit rows and where an output row's
 * kernel rows start, per step (as albsnn_conv_bit_events), and a batch of event positions and its end
 * (ALBSNN_BATCH + 1). floats: one output's sums (out c / groups), with neurons over several steps its
 * membranes, the batch's values (ALBSNN_BATCH) and the value of every count, count / divisor (2^planes). */
static size_t events_scratch_words(const albsnn_conv *p)
{
    return (size_t)p->in.steps * p->groups * p->in.h * p->in.planes * pixel_row_words(p)
         + (size_t)p->in.steps * p->groups * p->in.planes * p->kernel + ALBSNN_BATCH + 1u;
}

static size_t events_scratch_floats(const albsnn_conv *p)
{
    const size_t sums = p->lif != NULL && p->out.steps > 1u ? 2u : 1u;
    return sums * (p->out.c / p->groups) + ALBSNN_BATCH + ((size_t)1 << p->in.planes);
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
    return p->in.planes == 0u || p->in.planes > 16u || p->fires != NULL ? ALBSNN_ERR_DESCRIPTOR : ALBSNN_OK;
}

size_t albsnn_conv_events_scratch_words(const albsnn_conv *p)
{
    return p == NULL || conv_events_check(p) != ALBSNN_OK ? 0u : events_scratch_words(p);
}

size_t albsnn_conv_events_scratch_floats(const albsnn_conv *p)
{
    return p == NULL || conv_events_check(p) != ALBSNN_OK ? 0u : events_scratch_floats(p);
}

static void conv_events_run(const albsnn_conv *p, const uint32_t *x, void *y, uint64_t *words, float *floats)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, groups = p->groups, cout = out->c / groups;
    const uint32_t row_starts = groups * in->planes * p->kernel;
    const size_t step_words = (size_t)groups * in->h * in->planes * pixel_row_words(p);
    uint64_t *rows = words, *row_at = rows + in->steps * step_words, *at = row_at + in->steps * row_starts;
    float *acc = floats, *mem = acc + cout; /* membranes: several steps only */
    float *values = acc + (size_t)(p->lif != NULL && out->steps > 1u ? 2u : 1u) * cout;
    float *value_of = values + ALBSNN_BATCH;
    uint32_t oy, t, ox, g, i;
    lane_layer layer;
    lane_layer_of(p, &layer);
    for (i = 0; i < (1u << in->planes); ++i) { /* as value_at computes it */
        value_of[i] = in->divisor == 1u ? (float)i : (float)i / (float)in->divisor;
    }
    if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    gather_pixels(p, x, rows);
    for (oy = 0; oy < out->h; ++oy) {
        for (t = 0; t < in->steps; ++t) {
            rows_of_output_row(p, &layer, t * step_words, oy, row_at + (size_t)t * row_starts);
        }
        for (ox = 0; ox < wo; ++ox) {
            for (g = 0; g < groups; ++g) {
                for (t = 0; t < out->steps; ++t) {
                    if (t == 0u || in->steps > 1u) {
                        const uint64_t *starts = row_at + (size_t)step_of(in, t) * row_starts + g * in->planes * p->kernel;
                        events_output(p, &layer, rows, starts, ox, g, acc, at, values, value_of);
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
int albsnn_conv_events(const albsnn_conv *p, const uint32_t *x, void *y, uint64_t *words, size_t n_words, float *floats,
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
    conv_events_run(p, x, y, words, floats);
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
                const uint64_t a = even_bits(r0), b0 = even_bits(r0 << 1), c0 = even_bits(r1), d = even_bits(r1 << 1);
                const uint64_t s1 = a ^ b0, s2 = c0 ^ d, k1 = a & b0, k2 = c0 & d, k3 = s1 & s2;
                uint64_t counts[3];
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

/* Average or max pooling without padding; over bit planes the average keeps the window's count. */
static void pool_run(const albsnn_pool *p, const void *x, void *y)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t k = p->kernel, s = p->stride;
    uint32_t t, c, oy, ox, ky, kx;
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
