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
 * 2^p times their own sum); one multiply by the folded scale follows per output.
 */
#include "albsnn_kernels.h"

#define ALBSNN_WORDS(n) (((n) + 31u) / 32u)

#ifdef ALBSNN_TRACE
#define ALBSNN_TRACE_LIF(n, t, i, h, s) albsnn_trace((n)->trace_id, (t), (i), (h), (s))
#else
#define ALBSNN_TRACE_LIF(n, t, i, h, s) ((void)(n), (void)(t), (void)(i), (void)(h), (void)(s))
#endif

/* -- neurons ---------------------------------------------------------------------------------- */

/* The membrane after a spike decision, one case per reset rule of the spiking core. */
static float lif_reset(const albsnn_lif *n, float h, int spike)
{
    switch (n->reset) {
/*@RESET_CASES@*/
    default:
        break;
    }
    return h;
}

/* One neuron, one step: charge (from *v, or from v_reset at step 0), fire, reset *v; returns the spike. */
static int lif_step(const albsnn_lif *n, uint32_t step, uint32_t index, float *v, float x)
{
    /* step 0: V = v_reset, so H = X / tau + v_reset (PyTorch's shortcut, the same value) */
    const float h = step == 0u ? x / n->tau + n->v_reset : *v + (x - (*v - n->v_reset)) / n->tau;
    const int spike = h >= n->v_threshold;
    ALBSNN_TRACE_LIF(n, step, index, h, spike);
    *v = lif_reset(n, h, spike);
    return spike;
}

/* -- tensors ---------------------------------------------------------------------------------- */

static uint32_t numel(const albsnn_tensor *t) { return t->c * t->h * t->w; }

static uint32_t plane_words(const albsnn_tensor *t) { return ALBSNN_WORDS(numel(t)); }

static uint32_t step_of(const albsnn_tensor *t, uint32_t step) { return t->steps == 1u ? 0u : step; }

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

static uint32_t bit_at(const uint32_t *plane, uint32_t i) { return (plane[i >> 5] >> (31u - (i & 31u))) & 1u; }

static void set_bit(uint32_t *plane, uint32_t i) { plane[i >> 5] |= 0x80000000u >> (i & 31u); }

static const uint32_t *plane_of(const albsnn_tensor *t, const uint32_t *x, uint32_t step, uint32_t plane)
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

static uint32_t popcount32(uint32_t x)
{
#if defined(__GNUC__) && defined(__POPCNT__)
    return (uint32_t)__builtin_popcount(x);
#else
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0F0F0F0Fu;
    x += x >> 8;
    x += x >> 16;
    return x & 0x3Fu;
#endif
}

/* -- input -------------------------------------------------------------------------------------- */

void albsnn_normalize(const float *pixels, const float *mean, const float *std, const albsnn_tensor *out, float *y)
{
    const uint32_t hw = out->h * out->w;
    uint32_t c, i;
    for (c = 0; c < out->c; ++c) {
        for (i = 0; i < hw; ++i) {
            y[c * hw + i] = (pixels[c * hw + i] - mean[c]) / std[c];
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
    } else {
        for (j = 0; j < t->w; ++j) {
            row[j] = value_at(t, x, step, start + j);
        }
    }
}

static void row_axpy(float *restrict acc, const float *restrict row, float w, uint32_t n, uint32_t stride)
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

/* acc += row or acc -= row: a binary weight times an analog row, without multiplying. */
static void row_add(float *restrict acc, const float *restrict row, int plus, uint32_t n, uint32_t stride)
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

/* Any weights, any input; scratch: in.w + 2 padding + 2 out.c out.w floats. */
void albsnn_conv_rows(const albsnn_conv *p, const void *x, void *y, float *scratch)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t wo = out->w, hwo = out->h * wo, cw = out->c * wo;
    float *row = scratch, *acc = row + in->w + 2u * p->padding, *mem = acc + cw;
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
                    } else if (lif_step(p->lif, t, i, &mem[co * wo + ox], acc[co * wo + ox])) {
                        set_bit((uint32_t *)y + (size_t)t * plane_words(out), i);
                    }
                }
            }
        }
    }
}

/* -- binarized layers over bit planes: AND + popcount ------------------------------------------ */

/* n (1..32) packed weight bits from bit `start` on, left-aligned in a word, the rest zero. */
static uint32_t weight_bits(const uint8_t *bits, uint32_t start, uint32_t n)
{
    const uint8_t *p = bits + (start >> 3);
    const uint32_t skip = start & 7u, bytes = (skip + n + 7u) >> 3;
    uint64_t v = 0u;
    uint32_t i;
    if (skip == 0u && n == 32u) {
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
    }
    for (i = 0; i < bytes; ++i) {
        v = (v << 8) | p[i];
    }
    v <<= 64u - 8u * bytes + skip;
    return (uint32_t)(v >> 32) & ~(0xFFFFFFFFu >> n);
}

/* n (1..32) bits of a plane from element `start` on, right-aligned. */
static uint32_t plane_bits(const uint32_t *plane, uint32_t start, uint32_t n)
{
    const uint32_t word = start >> 5, skip = start & 31u;
    uint64_t v = (uint64_t)plane[word] << 32;
    if (skip + n > 32u) {
        v |= plane[word + 1u];
    }
    return (uint32_t)((v << skip) >> (64u - n));
}

typedef struct {
    uint32_t *dst;
    uint64_t pending;  /* the last `count` bits written, not yet a full word */
    uint32_t count;
} bit_writer;

static void put_bits(bit_writer *w, uint32_t bits, uint32_t n)
{
    w->pending = (w->pending << n) | bits;
    w->count += n;
    if (w->count >= 32u) {
        w->count -= 32u;
        *w->dst++ = (uint32_t)(w->pending >> w->count);
        w->pending &= ((uint64_t)1u << w->count) - 1u;
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

/* The receptive field of output (oy, ox) in group g, bits in (c, ky, kx) order: the weights' order. */
static void gather_patch(const albsnn_conv *p, const uint32_t *plane, uint32_t g, uint32_t oy, uint32_t ox, uint32_t *patch, uint32_t words)
{
    const albsnn_tensor *in = &p->in;
    const uint32_t k = p->kernel, cin = in->c / p->groups;
    const int32_t iy0 = (int32_t)(oy * p->stride) - (int32_t)p->padding;
    const int32_t ix0 = (int32_t)(ox * p->stride) - (int32_t)p->padding;
    /* kx in [lo, hi) falls inside the row */
    const int32_t lo = ix0 < 0 ? -ix0 : 0;
    const int32_t hi = ix0 + (int32_t)k > (int32_t)in->w ? (int32_t)in->w - ix0 : (int32_t)k;
    bit_writer w;
    uint32_t c, ky;
    w.dst = patch;
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
        *w.dst++ = (uint32_t)(w.pending << (32u - w.count));
    }
    while (w.dst < patch + words) {
        *w.dst++ = 0u;
    }
}

/* Binarized weights over bit planes. scratch: words + steps planes (1 + words) uint32, words = ceil(fan-in / 32). */
void albsnn_conv_bits(const albsnn_conv *p, const uint32_t *x, void *y, uint32_t *scratch)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t k = p->kernel, cout = out->c / p->groups, fan_in = in->c / p->groups * k * k;
    const uint32_t words = ALBSNN_WORDS(fan_in), hwo = out->h * out->w, patches = in->steps * in->planes;
    /* a linear layer's input is its receptive field already */
    const int direct = in->h == 1u && in->w == 1u && k == 1u && p->padding == 0u && p->groups == 1u;
    uint32_t *wrow = scratch, *ones = wrow + words, *patch = ones + patches;
    uint32_t oy, ox, g, j, col, t, b, i;
    if (p->lif != NULL) {
        clear_words((uint32_t *)y, tensor_words(out));
    }
    for (oy = 0; oy < out->h; ++oy) {
        for (ox = 0; ox < out->w; ++ox) {
            for (g = 0; g < p->groups; ++g) {
                for (j = 0; j < patches; ++j) {
                    const uint32_t *plane = x + (size_t)j * plane_words(in);
                    const uint32_t *field = direct ? plane : patch + (size_t)j * words;
                    if (!direct) {
                        gather_patch(p, plane, g, oy, ox, patch + (size_t)j * words, words);
                    }
                    ones[j] = 0u;
                    for (i = 0; i < words; ++i) {
                        ones[j] += popcount32(field[i]);
                    }
                }
                for (col = 0; col < cout; ++col) {
                    const uint32_t co = g * cout + col, index = co * hwo + oy * out->w + ox;
                    float v = 0.0f, pre = 0.0f;
                    for (i = 0; i < words; ++i) {
                        const uint32_t n = fan_in - 32u * i < 32u ? fan_in - 32u * i : 32u;
                        wrow[i] = weight_bits(p->bits, co * fan_in + 32u * i, n);
                    }
                    for (t = 0; t < out->steps; ++t) {
                        if (t == 0u || in->steps > 1u) {
                            int32_t acc = 0;
                            for (b = 0; b < in->planes; ++b) {
                                const uint32_t slot = step_of(in, t) * in->planes + b;
                                const uint32_t *field = direct ? x + (size_t)slot * plane_words(in) : patch + (size_t)slot * words;
                                uint32_t agree = 0u;
                                for (i = 0; i < words; ++i) {
                                    agree += popcount32(wrow[i] & field[i]);
                                }
                                acc += ((int32_t)(2u * agree) - (int32_t)ones[slot]) * (int32_t)(1u << b);
                            }
                            pre = (float)acc * p->scale[co] + p->bias[co];
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

/* -- element-wise layers, pooling and the head --------------------------------------------------- */

/* A batch norm that no conv or linear layer precedes: y = x * scale + bias per channel (y may be x). */
void albsnn_affine(const albsnn_tensor *in, const void *x, const float *scale, const float *bias, float *y)
{
    const uint32_t hw = in->h * in->w;
    uint32_t t, c, i;
    for (t = 0; t < in->steps; ++t) {
        for (c = 0; c < in->c; ++c) {
            for (i = c * hw; i < (c + 1u) * hw; ++i) {
                y[(size_t)t * numel(in) + i] = value_at(in, x, t, i) * scale[c] + bias[c];
            }
        }
    }
}

/* A neuron layer that does not follow a conv or linear layer. */
void albsnn_lif_layer(const albsnn_tensor *in, const void *x, const albsnn_lif *lif, const albsnn_tensor *out, uint32_t *y)
{
    uint32_t i, t;
    clear_words(y, tensor_words(out));
    for (i = 0; i < numel(out); ++i) {
        float v = 0.0f;
        for (t = 0; t < out->steps; ++t) {
            if (lif_step(lif, t, i, &v, value_at(in, x, t, i))) {
                set_bit(y + (size_t)t * plane_words(out), i);
            }
        }
    }
}

/* Average or max pooling without padding; over bit planes the average keeps the window's count. */
void albsnn_pool2d(const albsnn_pool *p, const void *x, void *y)
{
    const albsnn_tensor *in = &p->in, *out = &p->out;
    const uint32_t k = p->kernel, s = p->stride;
    uint32_t t, c, oy, ox, ky, kx;
    if (out->planes > 0u) {
        clear_words((uint32_t *)y, tensor_words(out));
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

/* Global average pooling: [steps][c][h][w] -> [steps][c] floats. */
void albsnn_gap(const albsnn_tensor *in, const void *x, float *y)
{
    const uint32_t hw = in->h * in->w;
    uint32_t t, c, i;
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
}

/* The logits: the time-mean of the last layer (a layer before any neuron is the same at every step). */
void albsnn_step_mean(const albsnn_tensor *in, const void *x, float *logits)
{
    uint32_t c, t;
    for (c = 0; c < numel(in); ++c) {
        float sum = value_at(in, x, 0u, c);
        for (t = 1; t < in->steps; ++t) {
            sum += value_at(in, x, t, c);
        }
        logits[c] = in->steps == 1u ? sum : sum / (float)in->steps;
    }
}
